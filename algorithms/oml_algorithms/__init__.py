"""oml's built-in learners: Passive-Aggressive (:mod:`.pa`) and Soft Confidence-Weighted
(:mod:`.scw`) classifiers and a PA regressor, each with a batch "bank" (:mod:`.bank`).

The service reaches them only through the ``oml.algorithms`` entry points (``pa``,
``pa-regressor``, ``scw``), exactly as it reaches a third-party plugin.
"""
