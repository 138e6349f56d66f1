"""The benchmark suite (benchmarks/suite.py, ``python -m shmcomm bench``) runs end to end in its quick
mode on shmcomm alone: every shmcomm workload is measured, the JSON is valid, no message is lost, and
it stays short. No timing assertion on the numbers themselves: benchmarks measure, tests do not."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from naming import REPO
from procs import child_env

# Every shmcomm measurement of the suite: (group, case, library, variant).
EXPECTED = (
    [("latency", case, "shmcomm", v) for case in ("64 B", "4 KiB", "pickled dict") for v in ("busy", "blocking")]
    + [("latency", "64 B", "shmcomm", "futex"), ("idle", "idle receiver, 1 s", "shmcomm", "blocking")]
    + [("throughput", "64 B", "shmcomm", v) for v in ("single", "batch")]
    + [("frames", size, "shmcomm", v) for size in ("1 MiB", "6 MiB")
       for v in ("one-copy", "one-copy+read", "copy-out", "zero-copy", "zero-copy+read")]
    + [("fanout", f"{k} subscriber{'s' if k > 1 else ''}", "shmcomm", "blocking") for k in (1, 2, 4)]
    + [("reqrep", "64 B", "shmcomm", v) for v in ("blocking", "busy-wait")]
    + [("pushpull", f"{k} puller{'s' if k > 1 else ''}", "shmcomm", v) for k in (1, 2) for v in ("single", "batch")]
)
C_EXPECTED = (
    [("floors", f"cache line ping-pong ({k} line{'s' if k > 1 else ''})", "C", "busy") for k in (1, 2)]
    + [("floors", f"memcpy {s} MiB", "C", "1 thread") for s in (1, 6)]
    + [("c", "latency 64 B", "shmcomm C", v) for v in ("busy", "blocking")]
    + [("c", "throughput 64 B", "shmcomm C", v) for v in ("single", "batch")]
)


def _bench_command() -> list:
    """`python -m shmcomm bench` when the command line has the subcommand, else the module itself."""
    probe = subprocess.run([sys.executable, "-m", "shmcomm", "bench", "--help"], capture_output=True, text=True,
                           timeout=60, cwd=REPO, env=child_env())
    if probe.returncode == 0 and "--quick" in probe.stdout:
        return [sys.executable, "-m", "shmcomm", "bench"]
    return [sys.executable, "-m", "shmcomm.bench"]


def _shm_names() -> set:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


@pytest.mark.timeout(240)
def test_quick_suite_on_shmcomm(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    charts = tmp_path / "charts"
    before = _shm_names()
    cmd = _bench_command() + ["--quick", "--libs", "shmcomm", "--json", str(out), "--plot", str(charts)]
    # Bounded by the timeouts above; how long it takes is the suite's business, not a pass/fail verdict.
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=220, cwd=REPO, env=child_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    doc = json.loads(out.read_text())
    assert doc["machine"]["cpus_online"] >= 1 and doc["command"]
    got = {(r["group"], r["case"], r["library"], r["variant"]): r for r in doc["results"]}
    expected = list(EXPECTED)
    if shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc"):
        expected += C_EXPECTED
    missing = [k for k in expected if k not in got]
    assert not missing, f"workloads missing from the JSON: {missing}"
    for key in expected:
        r = got[key]
        assert r["ok"], (key, [run.get("error") for run in r["runs"]])
        assert r["loss"] == 0, (key, r["loss"])
        assert r["runs"] and all(run.get("loss", 0) == 0 for run in r["runs"]), key
    # the report: Markdown tables and the targets, on stdout
    assert "### Targets" in proc.stdout and "| shmcomm |" in proc.stdout
    assert {t["target"] for t in doc["targets"]}
    # charts when matplotlib is there, a clear message when it is not
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in proc.stderr
    else:
        assert {"frames.png", "latency.png", "throughput.png"} <= {p.name for p in charts.glob("*.png")}
    # nothing of the run left in /dev/shm
    left = sorted(n for n in _shm_names() - before if "shmbench" in n)
    assert not left, left


def test_bench_says_what_to_do_without_a_checkout(tmp_path: Path) -> None:
    env = child_env({"SHMCOMM_BENCHMARKS": str(tmp_path / "nowhere")})
    code = ("import sys; from pathlib import Path; import shmcomm.bench as b; "
            "b.find_suite = lambda start=None: None; sys.exit(b.main(['--quick']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO,
                          env=env)
    assert proc.returncode == 2
    assert "benchmarks/" in proc.stderr and "checkout" in proc.stderr
