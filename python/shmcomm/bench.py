"""``python -m shmcomm bench``: runs the benchmark suite of a source checkout (benchmarks/suite.py).

The suite measures shmcomm next to the libraries a user would otherwise pick (pyzmq, multiprocessing,
faster-fifo, iceoryx2, shm-comm, zerobuffer-ipc) and the hardware floors (C programs compiled on the
fly), and prints a Markdown report with a summary of the targets. It lives in the repository, not in
the wheel: run this from a checkout (or point SHMCOMM_BENCHMARKS at its benchmarks/ directory).

Options: ``--quick`` (a short run for tests and CI), ``--json FILE``, ``--plot DIR`` (PNG charts,
with matplotlib), ``--only WORKLOAD[,...]``, ``--libs LIB[,...]``, ``--repeats N``; ``--help`` lists
them all.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence

SUITE = "suite.py"


def find_suite(start: Optional[Sequence[Path]] = None) -> Optional[Path]:
    """The benchmarks/ directory holding suite.py: SHMCOMM_BENCHMARKS, then next to the package in a
    source checkout (python/shmcomm -> ../../benchmarks), then the current directory and its parents."""
    candidates: List[Path] = []
    override = os.environ.get("SHMCOMM_BENCHMARKS")
    if override:
        candidates.append(Path(override))
    if start is None:
        here = Path(__file__).resolve().parent
        cwd = Path.cwd().resolve()
        start = [here.parent.parent, *([cwd] + list(cwd.parents))]
    for base in start:
        candidates += [base / "benchmarks", base]
    for c in candidates:
        if (c / SUITE).is_file() and (c / "_common.py").is_file():
            return c
    return None


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the suite with ``argv`` (the arguments after ``bench``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    where = find_suite()
    if where is None:
        print("shmcomm bench: the benchmark suite is not part of the installed package; it lives in the "
              "repository's benchmarks/ directory. Run this from a checkout of shmcomm (cd into it), or "
              "set SHMCOMM_BENCHMARKS=/path/to/shmcomm/benchmarks; the peers it compares with install "
              "with `pip install -r benchmarks/requirements.txt`.", file=sys.stderr)
        return 2
    path = str(where)
    if path not in sys.path:
        sys.path.insert(0, path)  # the worker processes inherit sys.path, and import from there too
    suite = importlib.import_module("suite")
    status: int = suite.main(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
