"""The multiclass Perceptron as an oml plugin: on a mistake, +lr·x to the true class and
-lr·x to the predicted one.

>>> model = Perceptron()
>>> for x, y in [({"a": 1.0}, "up"), ({"a": -1.0}, "down")] * 5:
...     model.learn_one(x, y)
>>> model.predict_one({"a": 2.0})
'up'
"""

from __future__ import annotations

import math

import numpy as np
from river import base

from oml.learner import Learner, ModelState, StateError, check_features, check_label, label_sort_key


class Perceptron(base.Classifier, Learner):
    """Multiclass Perceptron with one weight vector and bias per class.

    Parameters
    ----------
    lr
        Step size of each correction.
    """

    state_version = 1

    def __init__(self, lr: float = 1.0) -> None:
        self.lr = lr
        self._weights: dict[object, dict[object, float]] = {}  # class -> feature -> weight
        self._bias: dict[object, float] = {}
        self._n_updates = 0

    @property
    def _multiclass(self) -> bool:
        return True

    @property
    def n_updates(self) -> int:
        return self._n_updates

    def _scores(self, x: dict) -> tuple[dict[object, float], float]:
        """Each class's score, as (scores, scale): the true score is scores[c] · scale.

        The scale is 1 unless a raw score overflows: with features near 1e160, w·x reaches
        ±inf (and NaN where +inf meets -inf), which would make every probability NaN. Then the
        scores are computed on w / max|w| and x / max|x|, which keeps them finite and in the
        same order, and the scale carries the factor (itself possibly inf).
        """
        raw = {
            c: self._bias[c] + sum(w.get(f, 0.0) * v for f, v in x.items())
            for c, w in self._weights.items()
        }
        if all(map(math.isfinite, raw.values())):
            return raw, 1.0
        sw = max((abs(v) for w in self._weights.values() for v in w.values()), default=0.0) or 1.0
        sx = max((abs(v) for v in x.values()), default=0.0) or 1.0
        scaled = {
            c: self._bias[c] / sw / sx + sum((w.get(f, 0.0) / sw) * (v / sx) for f, v in x.items())
            for c, w in self._weights.items()
        }
        return scaled, sw * sx

    def predict_proba_one(self, x: dict) -> dict:
        check_features(x)
        scores, scale = self._scores(x)
        if not scores:
            return {}
        top = max(scores.values())
        # in label order, so the sum is the same however the classes were first met; a gap
        # times an infinite scale is an infinitely worse class (0), a tie with the top stays 1
        exp = {
            c: 1.0 if scores[c] == top else math.exp((scores[c] - top) * scale)
            for c in sorted(scores, key=label_sort_key)
        }
        total = sum(exp.values())
        return {c: e / total for c, e in exp.items()}

    def predict_one(self, x: dict) -> object:
        check_features(x)
        scores, _ = self._scores(x)
        if not scores:
            return None
        # ties go to the lowest class in oml's label order
        return max(sorted(scores, key=label_sort_key), key=lambda c: scores[c])

    def learn_one(self, x: dict, y: object) -> None:
        check_features(x)
        y = check_label(y)
        self._weights.setdefault(y, {})
        self._bias.setdefault(y, 0.0)
        predicted = self.predict_one(x)
        if predicted == y:
            return
        for sign, c in ((1.0, y), (-1.0, predicted)):
            w = self._weights[c]
            for f, v in x.items():
                w[f] = w.get(f, 0.0) + sign * self.lr * v
            self._bias[c] += sign * self.lr
        self._n_updates += 1

    def export_state(self) -> ModelState:
        labels = sorted(self._weights, key=label_sort_key)
        features = sorted({f for w in self._weights.values() for f in w}, key=str)
        W = np.array([[self._weights[c].get(f, 0.0) for f in features] for c in labels])
        return ModelState(
            algorithm=type(self).algorithm,
            version=self.state_version,
            params=self._get_params(),
            features=features,
            labels=labels,
            arrays={
                "weights": W.reshape(len(labels), len(features)),
                "bias": np.array([self._bias[c] for c in labels]),
            },
            n_updates=self._n_updates,
        )

    @classmethod
    def import_state(cls, state: ModelState) -> Perceptron:
        W, b = state.arrays.get("weights"), state.arrays.get("bias")
        k, d = len(state.labels), len(state.features)
        if W is None or b is None or W.shape != (k, d) or b.shape != (k,):
            raise StateError(f"perceptron state needs weights ({k}, {d}) and bias ({k},)")
        model = cls(**state.params)
        for i, c in enumerate(state.labels):
            model._weights[c] = dict(zip(state.features, W[i].tolist(), strict=True))
            model._bias[c] = float(b[i])
        model._n_updates = state.n_updates
        return model
