"""oml's built-in learners: Passive-Aggressive (:mod:`.pa`) and Soft Confidence-Weighted
(:mod:`.scw`) classifiers and a PA regressor.

Each learner's module holds the learner and its bank (many models as rows of numpy arrays), as
River's ``linear_model/pa.py`` holds the PA family.  What they share sits in private modules, each
importing only those before it: :mod:`._core` (numeric helpers and checks), :mod:`._linear` (the
one-model machinery: columns, input reading, classes, state), :mod:`._bank` (the bank machinery:
rows, columns, stages, state) and :mod:`._classifier_bank` (the classifier banks' classes).

The service reaches them only through the ``oml.algorithms`` entry points (``pa``,
``pa-regressor``, ``scw``), exactly as it reaches a third-party plugin.
"""
