"""The learner tests run on every registered learner, the example plugin included.

The plugin (``examples/oml-perceptron``) is installed by the test setup, never here: the README's
"Tests" section and ``.ci/run`` install it.  A test that needs it asks for :func:`example_plugin`,
which fails with the install command under ``CI=true`` and skips with it otherwise.
"""

from __future__ import annotations

import importlib.metadata
import os

import pytest

INSTALL = "pip install --no-deps ./examples/oml-perceptron"


@pytest.fixture(scope="session")
def example_plugin() -> str:
    """The example plugin's algorithm name, once it is installed."""
    try:
        importlib.metadata.distribution("oml-perceptron")
    except importlib.metadata.PackageNotFoundError:
        message = f"the example plugin oml-perceptron is not installed; run: {INSTALL}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return "perceptron"
