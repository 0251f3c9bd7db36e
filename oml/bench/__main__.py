"""``python -m oml.bench``: the bench without the rest of the ``oml`` command."""

from __future__ import annotations

import sys

from oml.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
