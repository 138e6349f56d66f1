"""The Python examples run as a user would run them: a publisher and a subscriber, each its own
process, and their output says every message / frame arrived."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from naming import REPO
from procs import child_env, wait_until

EXAMPLES = REPO / "examples"


def run_pair(script: str, channel: str, common: List[str], subscriber_first: bool,
             timeout: float = 60) -> Tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """Starts both sides of an example (in either order) and waits for both."""
    def start(mode: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(EXAMPLES / script), mode, "--name", channel,
                                 "--wait", "20", *common], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=child_env())

    order = ["subscriber", "publisher"] if subscriber_first else ["publisher", "subscriber"]
    procs = {}
    try:
        for mode in order:
            procs[mode] = start(mode)
        results = {}
        for mode, proc in procs.items():
            out, err = proc.communicate(timeout=timeout)
            results[mode] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    return results["publisher"], results["subscriber"]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("subscriber_first", [True, False], ids=["subscriber_first", "publisher_first"])
def test_simple_pubsub(channel: str, subscriber_first: bool) -> None:
    count = 25
    pub, sub = run_pair("simple_pubsub.py", channel, ["--count", str(count), "--rate", "200"],
                        subscriber_first)
    assert pub.returncode == 0, pub.stderr
    assert sub.returncode == 0, sub.stderr
    sent = re.findall(r"^publisher: sent seq=(\d+)$", pub.stdout, re.M)
    assert sent == [str(i) for i in range(count)]
    assert f"publisher: done, {count} messages sent" in pub.stdout
    received = re.findall(r"^subscriber: received seq=(\d+) text='hello (\d+)' latency=\d+us$", sub.stdout, re.M)
    assert received == [(str(i), str(i)) for i in range(count)], sub.stdout
    assert f"subscriber: done, received={count} dropped=0" in sub.stdout


def test_simple_pubsub_publisher_without_subscriber_gives_up(channel: str) -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLES / "simple_pubsub.py"), "publisher", "--name", channel,
                           "--wait", "0.3"], capture_output=True, text=True, timeout=60, env=child_env())
    assert proc.returncode == 1
    assert "no subscriber came" in proc.stderr


def test_simple_pubsub_subscriber_without_publisher_explains(channel: str) -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLES / "simple_pubsub.py"), "subscriber", "--name", channel,
                           "--wait", "0.3"], capture_output=True, text=True, timeout=60, env=child_env())
    assert proc.returncode == 2
    assert "start the Publisher first or raise timeout_connect" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.timeout(90)
@pytest.mark.parametrize("subscriber_first", [True, False], ids=["subscriber_first", "publisher_first"])
def test_numpy_sharing(channel: str, subscriber_first: bool) -> None:
    frames = 30
    pub, sub = run_pair("numpy_sharing.py", channel,
                        ["--frames", str(frames), "--width", "320", "--height", "240"], subscriber_first)
    assert pub.returncode == 0, pub.stderr
    assert sub.returncode == 0, sub.stdout + sub.stderr
    assert f"publisher: sent {frames} frames of (240, 320, 3)" in pub.stdout
    assert "subscriber: expecting 30 frames of (240, 320, 3) uint8" in sub.stdout
    oks = re.findall(r"^subscriber: frame (\d+) ok mean=[\d.]+$", sub.stdout, re.M)
    assert oks == [str(i) for i in range(frames)], sub.stdout
    assert f"subscriber: done, {frames}/{frames} frames intact" in sub.stdout
    assert "outlive" not in sub.stderr  # no view outlived its message (shmcomm would warn)


def test_examples_have_docstrings_and_help() -> None:
    for script in ("simple_pubsub.py", "numpy_sharing.py"):
        proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--help"], capture_output=True,
                              text=True, timeout=60, env=child_env())
        assert proc.returncode == 0 and "publisher" in proc.stdout and "subscriber" in proc.stdout


def start_example(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(EXAMPLES / script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())


def finish(proc: subprocess.Popen, timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("server_first", [True, False], ids=["server_first", "client_first"])
def test_reqrep_example_two_clients(channel: str, server_first: bool) -> None:
    count = 200
    common = ["--name", channel, "--wait", "20"]
    server_args = ["server", "--count", str(2 * count), *common]
    client_args = ["client", "--count", str(count), *common]
    if server_first:
        server = start_example("reqrep_example.py", *server_args)
        clients = [start_example("reqrep_example.py", *client_args) for _ in range(2)]
    else:
        clients = [start_example("reqrep_example.py", *client_args) for _ in range(2)]
        server = start_example("reqrep_example.py", *server_args)
    results = [finish(c) for c in clients]
    served = finish(server)
    for result in results:
        assert result.returncode == 0, result.stderr
        assert f"client: done, {count} replies checked" in result.stdout
        assert re.search(r"^client: 0 \+ 1000 = 1000 \(server pid \d+\)$", result.stdout, re.M)
    assert served.returncode == 0, served.stderr
    assert f"server: done, {2 * count} requests served" in served.stdout


def test_reqrep_example_client_without_server_explains(channel: str) -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLES / "reqrep_example.py"), "client", "--name", channel,
                           "--wait", "0.3"], capture_output=True, text=True, timeout=60, env=child_env())
    assert proc.returncode == 2
    assert "start the Replier first or raise timeout_connect" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.timeout(120)
def test_work_queue_example(channel: str) -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLES / "work_queue.py"), "--workers", "3", "--jobs", "3000",
                           "--name", channel], capture_output=True, text=True, timeout=100, env=child_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "producer: 3000 jobs done by 3 workers" in proc.stdout
    assert "producer: missing=0 done twice=0" in proc.stdout


# ---- PAIR: pair_master.py / pair_slave.py / pair_reconnect.py / c/pair_example ----------------------

PAIR_STATS = re.compile(r"^(master|slave): stats master_pid=(\d+) slave_pid=(\d+) m2s_write_count=(\d+) "
                        r"m2s_read_count=(\d+) s2m_write_count=(\d+) s2m_read_count=(\d+) drops=0 "
                        r"reconnections=0 remote_state=\w+$", re.M)


def check_pair_master(result: subprocess.CompletedProcess, count: int) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    got = re.findall(r"^master: sent 'hello (\d+)', got 'ACK hello (\d+)'$", result.stdout, re.M)
    assert got == [(str(i), str(i)) for i in range(count)], result.stdout
    assert f"master: done, {count} replies" in result.stdout
    stats = PAIR_STATS.search(result.stdout)
    assert stats and stats.group(1) == "master", result.stdout
    # its own counts are exact: it wrote `count` and read `count` replies
    assert stats.group(4) == str(count) and stats.group(7) == str(count), stats.group(0)


def check_pair_slave(result: subprocess.CompletedProcess, count: int) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    got = re.findall(r"^slave: got 'hello (\d+)', answered$", result.stdout, re.M)
    assert got == [str(i) for i in range(count)], result.stdout
    assert f"slave: done, {count} messages answered" in result.stdout
    stats = PAIR_STATS.search(result.stdout)
    assert stats and stats.group(1) == "slave", result.stdout
    assert stats.group(5) == str(count) and stats.group(6) == str(count), stats.group(0)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("slave_first", [True, False], ids=["slave_first", "master_first"])
def test_pair_master_and_slave_examples(channel: str, slave_first: bool) -> None:
    count = 20
    order = ["pair_slave.py", "pair_master.py"] if slave_first else ["pair_master.py", "pair_slave.py"]
    procs = {script: start_example(script, channel, str(count), "--wait", "20") for script in order}
    results = {script: finish(proc) for script, proc in procs.items()}
    check_pair_master(results["pair_master.py"], count)
    check_pair_slave(results["pair_slave.py"], count)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("c_role", ["slave", "master"], ids=["python_master_c_slave", "c_master_python_slave"])
def test_pair_examples_python_and_c(c_build: Path, channel: str, c_role: str) -> None:
    count = 20
    exe = c_build / "examples" / "c" / "pair_example"
    assert exe.is_file(), f"pair_example was not built by meson (looked for {exe})"
    c_proc = subprocess.Popen([str(exe), c_role, channel, str(count)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=child_env())
    py_proc = start_example("pair_master.py" if c_role == "slave" else "pair_slave.py", channel, str(count),
                            "--wait", "20")
    py, c = finish(py_proc), finish(c_proc)
    if c_role == "slave":
        check_pair_master(py, count)
        check_pair_slave(c, count)
    else:
        check_pair_master(c, count)
        check_pair_slave(py, count)


class Lines:
    """Collects a process's stdout lines in a thread, so a test can wait for one with a deadline."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: List[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 30) -> None:
        wait_until(lambda: any(re.search(pattern, line) for line in list(self.lines)), timeout,
                   f"a line matching {pattern!r}; got {self.lines[-5:]}")


@pytest.mark.timeout(120)
def test_pair_reconnect_example(channel: str) -> None:
    """The slave hears the first master, which is then SIGKILLed; a second master starts, and the slave
    says it reconnected and exits after hearing it. The ticks of each master arrive in order."""
    slave = start_example("pair_reconnect.py", "slave", "--name", channel, "--reconnections", "1", "--wait", "30")
    masters = []
    try:
        out = Lines(slave)
        masters.append(start_example("pair_reconnect.py", "master", "--name", channel, "--rate", "200"))
        out.wait_for(r"^slave: got 'tick 5 from pid")
        masters[0].send_signal(signal.SIGKILL)
        masters[0].wait(10)
        masters.append(start_example("pair_reconnect.py", "master", "--name", channel, "--rate", "200"))
        assert slave.wait(60) == 0, "\n".join(out.lines) + (slave.stderr.read() if slave.stderr else "")
        out.thread.join(10)
        masters[1].send_signal(signal.SIGINT)  # Ctrl-C: it closes its queue (nothing left behind)
        assert masters[1].wait(20) == 130
    finally:
        for proc in [slave, *masters]:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()
    lines = out.lines
    new_pid = masters[1].pid
    assert any(f"reconnected to the new master (pid {new_pid}), reconnections=1" in line for line in lines), lines
    assert lines[-1].startswith("slave: done, heard the new master after 1 reconnection"), lines
    by_master: Dict[int, List[int]] = {}
    for tick, pid in re.findall(r"^slave: got 'tick (\d+) from pid (\d+)'$", "\n".join(lines), re.M):
        by_master.setdefault(int(pid), []).append(int(tick))
    assert set(by_master) == {masters[0].pid, new_pid}, by_master.keys()
    for pid, got in by_master.items():
        assert got == list(range(len(got))), f"ticks of master {pid} out of order or missing: {got}"
