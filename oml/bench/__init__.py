"""``oml bench``: evaluate learners on real data the way the service runs them.

The pieces, each a small module (user guide: docs/bench-guide.md):

- :mod:`oml.bench.datasets` finds a data set (data directory, cache, or its public origin) and
  checks it is the one it claims to be;
- :mod:`oml.bench.contenders` builds what is compared: registered algorithms, the River and
  scikit-learn baselines, and the published reference figures;
- :mod:`oml.bench.prequential` runs the test-then-train protocol (passes, label delay, timing);
- :mod:`oml.bench.metrics` turns predictions into per-pass figures;
- :mod:`oml.bench.evaluate` runs every contender over one data set into a report;
- :mod:`oml.bench.targets` checks a report against the figures the built-in learners must reach;
- :mod:`oml.bench.report` prints the table and writes the JSON and the learning-curve plot;
- :mod:`oml.bench.speed` times predict + learn per event on synthetic data;
- :mod:`oml.bench.cli` is the ``oml bench`` command.
"""
