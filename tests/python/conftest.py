"""Fixtures shared by the Python tests.

- ``channel`` / ``new_channel``: unique channel names (pid + test name + counter), so tests never see
  each other's segments, nor those of another pytest run or of the C tests.
- an autouse check that fails a test which leaves one of its segments in /dev/shm behind;
- ``c_build``: the meson project (libshm, C tests, C examples) built once per session;
- a per-test time limit (the ``timeout`` marker, default 120 s) so a bug fails instead of hanging,
  used when pytest-timeout is not installed.
"""

from __future__ import annotations

import faulthandler
import gc
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Set

import pytest

import shmcomm
from naming import NAME_PREFIX, REPO, unique_name

SHM_DIR = "/dev/shm"
DEFAULT_TIMEOUT = 120.0


# ---- channel names ------------------------------------------------------------------------------

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")[:40]


@pytest.fixture
def new_channel(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Makes unique channel names for this test: ``new_channel("tag")``."""
    base = _slug(request.node.name)

    def make(tag: str = "ch") -> str:
        return unique_name(f"{base}/{tag}")

    return make


@pytest.fixture
def channel(new_channel: Callable[[str], str]) -> str:
    """A channel name no other test, process or run uses."""
    return new_channel("ch")


def is_ours(os_name: str) -> bool:
    """True for segments of channels named by this pytest process."""
    if _encoded_prefix() in os_name:
        return True
    try:
        return shmcomm.segment_info(os_name).channel.startswith(NAME_PREFIX)
    except Exception:
        return False


def _encoded_prefix() -> str:
    # The OS name of "pytest/<pid>/x" minus the "x": how our prefix looks in /dev/shm.
    return shmcomm.os_name(NAME_PREFIX + "x")[:-1]


def shm_names() -> Set[str]:
    if not os.path.isdir(SHM_DIR):
        return set()
    return {n for n in os.listdir(SHM_DIR) if n.startswith("shmcomm_")}


@pytest.fixture(autouse=True)
def no_leaked_segments() -> Iterator[None]:
    """Fails the test if a segment it created (one of our channel names) is still in /dev/shm."""
    before = shm_names()
    yield
    gc.collect()  # endpoints that are unreachable close (and unlink) in __del__
    leaked = sorted(n for n in shm_names() - before if is_ours(n))
    for name in leaked:  # do not let one leak cascade into the next tests
        try:
            os.unlink(os.path.join(SHM_DIR, name))
        except OSError:
            pass
    if leaked:
        pytest.fail(f"the test left {len(leaked)} shared-memory segment(s) behind: {leaked}", pytrace=False)


# ---- building the C side ------------------------------------------------------------------------

def find_tool(name: str) -> Optional[str]:
    """A tool installed next to this Python (a venv's bin/) first, then on PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def tool_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment for meson/ninja: this Python's bin/ first on PATH (meson looks ninja up)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    if extra:
        env.update(extra)
    return env


def require_meson() -> List[str]:
    meson, ninja = find_tool("meson"), find_tool("ninja")
    missing = [n for n, p in (("meson", meson), ("ninja", ninja)) if p is None]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found (next to {sys.executable} or on PATH): the C tests, "
            "interop tests and sanitizer builds need them. Install the test extra: "
            "pip install '.[test]'", pytrace=False)
    assert meson is not None and ninja is not None
    return [meson, ninja]


def run_logged(cmd: List[str], what: str, timeout: float, env: Optional[Dict[str, str]] = None,
               cwd: Optional[str] = None) -> subprocess.CompletedProcess:
    """Runs cmd, failing the test with its output if it fails or exceeds timeout."""
    try:
        proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout, env=env or tool_env(), cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"{what} did not finish within {timeout} s: {' '.join(map(str, cmd))}\n{out[-20000:]}",
                    pytrace=False)
    if proc.returncode != 0:
        pytest.fail(f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n"
                    f"{proc.stdout[-20000:]}", pytrace=False)
    return proc


def meson_build(build_dir: Path, options: List[str], timeout: float = 240.0) -> Path:
    meson, ninja = require_meson()
    if not (build_dir / "build.ninja").exists():
        run_logged([meson, "setup", str(build_dir), str(REPO), *options], "meson setup", timeout)
    run_logged([ninja, "-C", str(build_dir)], "ninja (building libshm, C tests and examples)", timeout)
    return build_dir


@pytest.fixture(scope="session")
def c_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The meson build of the repository (library, C tests, C examples), built once per session."""
    return meson_build(tmp_path_factory.mktemp("c_build"), [])


# ---- time limits --------------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    if not pluginmanager.hasplugin("timeout"):
        # pyproject.toml configures pytest-timeout; without it, accept the option silently.
        parser.addini("timeout_func_only", "used by pytest-timeout when installed", type="bool",
                      default=False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "timeout(seconds): fail the test after this many seconds "
                                       f"(default {DEFAULT_TIMEOUT:.0f})")


class TimeLimitExceeded(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    if item.config.pluginmanager.hasplugin("timeout") or not hasattr(signal, "SIGALRM"):
        yield
        return
    marker = item.get_closest_marker("timeout")
    seconds = float(marker.args[0]) if marker else DEFAULT_TIMEOUT

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeLimitExceeded(f"{item.nodeid} exceeded its time limit of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    # If the test is stuck where Python cannot run the handler, dump every thread and exit.
    faulthandler.dump_traceback_later(seconds + 30, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()
