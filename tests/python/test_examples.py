"""The Python examples run as a user would run them: a publisher and a subscriber, each its own
process, and their output says every message / frame arrived."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import List, Tuple

import pytest

from naming import REPO
from procs import child_env

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
