"""Prediction and metrics records: batch encoding from columns, both formats, round trips."""

from __future__ import annotations

import io
import json
import math

import fastavro
import numpy as np
import pytest

from oml.codecs import avro
from oml.codecs.errors import MALFORMED, SCHEMA_MISMATCH, CodecError
from oml.codecs.outputs import (
    Metrics,
    MetricsCodec,
    OutputCodecs,
    Prediction,
    PredictionCodec,
    class_name,
)
from oml.config import load_config

FORMATS = ["json", "avro"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_classifier_predictions_round_trip(fmt: str) -> None:
    codec = PredictionCodec(fmt)
    values = codec.encode_batch(
        ["e1", "e2", "e3"],
        ["a", "b", "a"],
        [np.bool_(True), False, None],
        classes=[np.bool_(False), True],
        proba=np.array([[0.25, 0.75], [0.5, 0.5], [0.0, 0.0]]),
        score=np.array([1.5, -0.1, 0.0]),
        n_updates=np.array([4, 0, 7]),
        event_timestamps=np.array([1_700_000_000_000, -1, 3]),
        processed_timestamp=1_700_000_000_500,
        algorithm="scw",
    )
    assert len(values) == 3
    decoded = codec.decode_batch(values)
    assert decoded[0] == Prediction(
        event_id="e1",
        key="a",
        prediction=True,
        proba={"false": 0.25, "true": 0.75},
        score=1.5,
        n_updates=4,
        event_timestamp=1_700_000_000_000,
        processed_timestamp=1_700_000_000_500,
        algorithm="scw",
    )
    assert decoded[1].prediction is False and decoded[1].event_timestamp is None
    assert decoded[2].prediction is None and decoded[2].n_updates == 7
    if fmt == "json":
        assert json.loads(values[1])["proba"] == {"false": 0.5, "true": 0.5}


@pytest.mark.parametrize("fmt", FORMATS)
def test_regressor_and_multiclass_predictions(fmt: str) -> None:
    codec = PredictionCodec(fmt)
    regression = codec.encode_batch(
        ["r"],
        ["k"],
        [np.float64(2.5)],
        score=[2.5],
        n_updates=[1],
        event_timestamps=[0],
        processed_timestamp=1,
        algorithm="pa-regressor",
    )
    (r,) = codec.decode_batch(regression)
    assert (r.prediction, r.proba, r.score) == (2.5, None, 2.5)
    multi = codec.encode_batch(
        ["m"],
        ["k"],
        ["cat"],
        classes=["cat", "dog", 3],
        proba=np.array([[0.5, 0.25, 0.25]]),
        n_updates=[1],
        event_timestamps=[0],
        processed_timestamp=1,
        algorithm="scw",
    )
    (m,) = codec.decode_batch(multi)
    assert m.prediction == "cat" and m.proba == {"cat": 0.5, "dog": 0.25, "3": 0.25}
    assert m.score is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_metrics_round_trip(fmt: str) -> None:
    codec = MetricsCodec(fmt)
    values = codec.encode_batch(
        ["a", "b", None],
        np.array([10, 0, 10]),
        window=1000,
        timestamp=99,
        algorithm="scw",
        accuracy=np.array([0.9, np.nan, 0.9]),
    )
    decoded = codec.decode_batch(values)
    assert decoded == [
        Metrics("a", 10, 1000, accuracy=0.9, timestamp=99, algorithm="scw"),
        Metrics("b", 0, 1000, accuracy=None, timestamp=99, algorithm="scw"),
        Metrics(None, 10, 1000, accuracy=0.9, timestamp=99, algorithm="scw"),
    ]
    regression = codec.encode_batch(
        [None], [4], window=[4], timestamp=1, algorithm="pa", mae=[0.5], rmse=[math.sqrt(0.5)]
    )
    (r,) = codec.decode_batch(regression)
    assert (r.accuracy, r.mae, r.rmse) == (None, 0.5, math.sqrt(0.5))
    assert codec.decode(codec(r)) == r


def test_avro_output_matches_the_shipped_schema() -> None:
    """A consumer reading with prediction.avsc itself (logical types and all) gets the record."""
    value = PredictionCodec("avro").encode_batch(
        ["e"], ["k"], [1], n_updates=[2], event_timestamps=[1000], processed_timestamp=2000,
        algorithm="pa",
    )[0]  # fmt: skip
    schema = fastavro.parse_schema(avro.load_schema(avro.PREDICTION))
    record = fastavro.schemaless_reader(io.BytesIO(value), schema, None)
    assert record["prediction"] == 1 and record["n_updates"] == 2
    assert record["processed_timestamp"].timestamp() == 2.0  # timestamp-millis


def test_json_prediction_shape() -> None:
    value = PredictionCodec().encode_batch(
        ["e"], ["k"], [3], n_updates=[2], event_timestamps=[5], processed_timestamp=6,
        algorithm="pa",
    )[0]  # fmt: skip
    assert json.loads(value) == {
        "event_id": "e",
        "key": "k",
        "prediction": 3,
        "proba": None,
        "score": None,
        "n_updates": 2,
        "event_timestamp": 5,
        "processed_timestamp": 6,
        "algorithm": "pa",
    }


def test_empty_batches() -> None:
    for fmt in FORMATS:
        assert (
            PredictionCodec(fmt).encode_batch(
                [], [], [], n_updates=[], event_timestamps=[], processed_timestamp=0, algorithm=""
            )
            == []
        )
        assert MetricsCodec(fmt).encode_batch([], [], window=1, timestamp=0, algorithm="") == []


def test_decode_errors_carry_the_raw_bytes() -> None:
    for fmt, raw, reason in [
        ("json", b"{nope", MALFORMED),
        ("json", b'{"key": 1}', SCHEMA_MISMATCH),
        ("avro", b"\x02", MALFORMED),
    ]:
        with pytest.raises(CodecError) as info:
            PredictionCodec(fmt).decode(raw)
        assert info.value.reason == reason and info.value.raw == raw


def test_a_record_that_does_not_fit_avro() -> None:
    with pytest.raises(CodecError) as info:
        PredictionCodec("avro")(Prediction("e", "k", prediction=[1, 2]))  # type: ignore[arg-type]
    assert info.value.reason == SCHEMA_MISMATCH


def test_class_names() -> None:
    assert [class_name(c) for c in (True, np.bool_(False), 1, np.int64(2), 0.5, "x")] == [
        "true",
        "false",
        "1",
        "2",
        "0.5",
        "x",
    ]


def test_the_output_codecs_from_the_config() -> None:
    config = load_config(None, {}, {})
    codec = OutputCodecs.from_config(config)
    values = codec.predictions.encode_batch(
        ["e"], ["k"], [1], n_updates=[0], event_timestamps=[1], processed_timestamp=2,
        algorithm="scw",
    )  # fmt: skip
    assert codec.predictions.decode(values[0]).prediction == 1
    metrics = codec.metrics.encode_batch([None], [1], window=10, timestamp=3, algorithm="scw",
                                         accuracy=[1.0])  # fmt: skip
    assert codec.metrics.decode(metrics[0]).accuracy == 1.0


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        MetricsCodec("xml")
