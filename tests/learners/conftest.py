"""Install the example plugin before this folder's tests are collected, so the battery
discovers it through the registry exactly like any third-party learner."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[2] / "examples" / "oml-perceptron"


def _ensure_plugin_installed() -> None:
    try:
        importlib.metadata.distribution("oml-perceptron")
        return
    except importlib.metadata.PackageNotFoundError:
        pass
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", str(PLUGIN)],
        check=True,
    )
    importlib.invalidate_caches()


_ensure_plugin_installed()
