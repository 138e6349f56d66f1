"""The libFuzzer targets of tests/fuzz/ (segments with arbitrary bytes in every field: no crash, no
out-of-bounds access under ASan+UBSan, no hang, only SHMC_E* codes), in the default pytest run:

- every input kept in tests/fuzz/crashes/ (bugs found earlier) is replayed and must pass now;
- a bounded fuzzing run, about a minute over both targets, must end cleanly and leave no segment.

clang with its libFuzzer runtime is required: without it these tests fail (never skip) and say what
to install. tests/fuzz/README.md explains long runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

from naming import REPO

FUZZ_DIR = REPO / "tests" / "fuzz"
TARGETS = {"fuzz_segment": "segment", "fuzz_raw": "raw"}  # target -> its seed corpus under corpus/
SECONDS_PER_TARGET = 27  # both targets: about a minute of fuzzing in all
ARTIFACT_PREFIXES = ("crash-", "leak-", "timeout-", "oom-", "slow-unit-")
INSTALL_HINT = ("the fuzz tests need clang and its libFuzzer/sanitizer runtime: on Debian/Ubuntu "
                "'apt-get install clang libclang-rt-14-dev' (libclang-rt-N-dev for clang-N)")


def fuzz_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "abort_on_error=1:halt_on_error=1:detect_leaks=1:allocator_may_return_null=1"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
    return env


@pytest.fixture(scope="module")
def fuzz_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fuzz_build")
    try:
        proc = subprocess.run(["sh", str(FUZZ_DIR / "build.sh"), str(out)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail("tests/fuzz/build.sh did not finish within 300 s", pytrace=False)
    if proc.returncode != 0:
        hint = "" if "apt-get install" in proc.stdout else f"\n{INSTALL_HINT}"
        pytest.fail(f"tests/fuzz/build.sh failed (exit {proc.returncode}):\n{proc.stdout[-10000:]}{hint}",
                    pytrace=False)
    for target in TARGETS:
        assert (out / target).is_file(), proc.stdout
    return out


def fuzz_segments(pid: int) -> List[str]:
    """Segments that the fuzzing process `pid` created (names fuzz/<pid>/n and fuzzraw/<pid>/n)."""
    if not os.path.isdir("/dev/shm"):
        return []
    marks = (f"_fuzz+2f{pid}+2f", f"_fuzzraw+2f{pid}+2f")
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith("shmcomm_") and any(m in n for m in marks))


def remove(names: List[str]) -> None:
    for name in names:
        try:
            os.unlink(os.path.join("/dev/shm", name))
        except OSError:
            pass


def run_target(binary: Path, args: List[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([str(binary), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=str(cwd), env=fuzz_env())
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        remove(fuzz_segments(proc.pid))
        pytest.fail(f"{binary.name} did not finish within {timeout:.0f} s:\n{out[-10000:]}", pytrace=False)
    leaked = fuzz_segments(proc.pid)
    remove(leaked)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out)
    result.leaked = leaked  # type: ignore[attr-defined]
    return result


def findings(directory: Path) -> List[Path]:
    return sorted(p for p in directory.iterdir() if p.name.startswith(ARTIFACT_PREFIXES))


@pytest.mark.timeout(300)
def test_fuzz_crash_inputs_are_fixed(fuzz_build: Path, tmp_path: Path) -> None:
    """Inputs of tests/fuzz/crashes/<target>/ (bugs the fuzzer found) must run cleanly now."""
    failed = []
    for target in TARGETS:
        directory = FUZZ_DIR / "crashes" / target
        inputs = sorted(p for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []
        for path in inputs:
            proc = run_target(fuzz_build / target, ["-timeout=5", "-rss_limit_mb=2048", str(path)], tmp_path,
                              timeout=60)
            if proc.returncode != 0:
                failed.append(f"--- {target} {path.relative_to(REPO)} (exit {proc.returncode}):\n"
                              f"{proc.stdout[-4000:]}")
    assert not failed, "inputs that crash or hang libshm (tests/fuzz/README.md):\n" + "\n".join(failed)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_bounded_fuzz_run(fuzz_build: Path, tmp_path: Path, target: str) -> None:
    """About half a minute per target: exit status 0, no crash/timeout/leak file, no segment left."""
    corpus = tmp_path / "corpus"  # new inputs go here, never into the repository's seeds
    corpus.mkdir()
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    seeds = FUZZ_DIR / "corpus" / TARGETS[target]
    args = [f"-max_total_time={SECONDS_PER_TARGET}", "-timeout=5", "-rss_limit_mb=2048",
            "-print_final_stats=1", f"-artifact_prefix={artifacts}/", str(corpus), str(seeds)]
    proc = run_target(fuzz_build / target, args, tmp_path, timeout=SECONDS_PER_TARGET + 120)
    found = findings(artifacts) + findings(tmp_path)
    assert proc.returncode == 0 and not found, (
        f"{target} found a bug (exit {proc.returncode}); inputs: {[str(p) for p in found]}\n"
        f"keep the input in tests/fuzz/crashes/{target}/ and see tests/fuzz/README.md\n{proc.stdout[-15000:]}")
    assert re.search(r"Done \d+ runs", proc.stdout), proc.stdout[-5000:]
    leaked = proc.leaked  # type: ignore[attr-defined]
    assert not leaked, f"{target} left shared-memory segments behind: {leaked}"
    done = re.findall(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+).*exec/s: (\d+)", proc.stdout)
    if done:
        runs, cov, features, rate = done[-1]
        print(f"{target}: {runs} runs, {rate} exec/s, cov {cov}, ft {features}")
    shutil.rmtree(corpus, ignore_errors=True)
