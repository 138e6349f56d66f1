"""The C test suites (meson test): as built, under AddressSanitizer + UndefinedBehaviorSanitizer, and
the concurrent suite under ThreadSanitizer. Part of the default pytest run: one command runs every test."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import find_tool, meson_build, run_logged, tool_env

# Markers in a sanitizer runtime's output that mean "could not start here", not "found a bug".
TSAN_ASLR_MARKERS = ("unexpected memory mapping", "ThreadSanitizer: failed to", "personality",
                     "FATAL: ThreadSanitizer: unsupported VMA range")


def meson_test(build: Path, extra: List[str], env: Dict[str, str], timeout: float,
               wrapper: List[str] = ()) -> subprocess.CompletedProcess:
    meson = find_tool("meson")
    assert meson is not None
    cmd = [*wrapper, meson, "test", "-C", str(build), "--print-errorlogs", *extra]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, env=tool_env(env))


def assert_passed(proc: subprocess.CompletedProcess, what: str, build: Path) -> None:
    log = build / "meson-logs" / "testlog.txt"
    details = log.read_text(errors="replace")[-20000:] if log.exists() else ""
    assert proc.returncode == 0, f"{what} failed:\n{proc.stdout[-10000:]}\n--- testlog.txt ---\n{details}"
    assert " Fail: " not in proc.stdout and "Ok:" in proc.stdout, proc.stdout


def linked_sanitizers(binary: Path) -> str:
    ldd = shutil.which("ldd")
    return subprocess.run([ldd, str(binary)], capture_output=True, text=True, timeout=30).stdout if ldd else ""


@pytest.mark.timeout(300)
def test_c_unit_and_concurrent_suites(c_build: Path) -> None:
    proc = meson_test(c_build, [], {}, timeout=280)
    assert_passed(proc, "meson test", c_build)


@pytest.mark.timeout(420)
def test_c_suites_under_address_and_undefined_behavior_sanitizers(tmp_path_factory: pytest.TempPathFactory) -> None:
    build = meson_build(tmp_path_factory.mktemp("c_asan"),
                        ["-Db_sanitize=address,undefined", "-Db_lundef=false", "-Dbuildtype=debug", "-Db_lto=false"])
    linked = linked_sanitizers(build / "tests" / "c" / "test_pubsub")
    assert "libasan" in linked and "libubsan" in linked, f"not a sanitizer build:\n{linked}"
    env = {"ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1:abort_on_error=1",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    proc = meson_test(build, [], env, timeout=300)
    assert_passed(proc, "meson test under ASan+UBSan", build)


@pytest.mark.timeout(420)
def test_concurrent_suite_under_thread_sanitizer(tmp_path_factory: pytest.TempPathFactory) -> None:
    build = meson_build(tmp_path_factory.mktemp("c_tsan"),
                        ["-Db_sanitize=thread", "-Db_lundef=false", "-Dbuildtype=debug", "-Db_lto=false"])
    assert "libtsan" in linked_sanitizers(build / "tests" / "c" / "test_ring"), "not a TSan build"
    env = {"TSAN_OPTIONS": "halt_on_error=1:second_deadlock_stack=1"}
    proc = meson_test(build, ["--suite", "concurrent"], env, timeout=300)
    if proc.returncode != 0 and any(m in proc.stdout + _log(build) for m in TSAN_ASLR_MARKERS):
        # Older TSan runtimes cannot start with this kernel's address-space randomisation: run the
        # same tests with ASLR off for the test processes (setarch -R), as the sanitizer FAQ says.
        setarch = shutil.which("setarch")
        assert setarch, f"TSan cannot start (ASLR) and setarch is missing:\n{proc.stdout[-5000:]}"
        proc = meson_test(build, ["--suite", "concurrent"], env, timeout=300,
                          wrapper=[setarch, platform.machine(), "-R"])
    assert_passed(proc, "meson test --suite concurrent under TSan", build)


def _log(build: Path) -> str:
    log = build / "meson-logs" / "testlog.txt"
    return log.read_text(errors="replace") if log.exists() else ""


def test_meson_is_available() -> None:
    """The C side needs meson and ninja (in the [test] extra); a clear failure if they are missing."""
    assert find_tool("meson") and find_tool("ninja"), "pip install '.[test]' brings meson and ninja"
    run_logged([find_tool("meson"), "--version"], "meson --version", 60)


def test_leak_sanitizer_reports_a_planted_leak(tmp_path: Path) -> None:
    """The ASan run above counts on LeakSanitizer: prove it is active here (it silently does nothing
    where ptrace is forbidden), with the same options, on a program that leaks on purpose."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed (apt-get install gcc)"
    source = tmp_path / "leak.c"
    source.write_text("#include <stdlib.h>\nint main(void) { void *volatile p = malloc(100); p = 0; return 0; }\n")
    exe = tmp_path / "leak"
    subprocess.run([cc, "-fsanitize=address", "-g", str(source), "-o", str(exe)], check=True, timeout=120)
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60,
                          env=tool_env({"ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1:abort_on_error=1"}))
    assert proc.returncode != 0 and "LeakSanitizer: detected memory leaks" in proc.stderr, proc.stderr
