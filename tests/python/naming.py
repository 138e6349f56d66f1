"""Channel names of this pytest process: every one starts with NAME_PREFIX, so the tests never touch
the segments of another run, of another test, or of the C tests."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # tests/python/naming.py -> the repository

NAME_PREFIX = f"pytest/{os.getpid()}/"

_counter = itertools.count()


def unique_name(tag: str) -> str:
    """A channel name used nowhere else (for tests that cannot take the ``channel`` fixture, such as
    hypothesis tests)."""
    return f"{NAME_PREFIX}{tag}/{next(_counter)}"
