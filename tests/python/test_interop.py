"""C and Python talk to each other, in both directions: examples/c/pub_example -> shmcomm.Subscriber,
and shmcomm.Publisher -> examples/c/sub_example, each 1000 messages with their content checked."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

import pytest

from procs import child_env, wait_until
from shmcomm import Publisher, Subscriber

COUNT = 1000


def example(c_build: Path, name: str) -> Path:
    path = c_build / "examples" / "c" / name
    assert path.is_file(), f"{name} was not built by meson (looked for {path})"
    return path


@pytest.mark.timeout(90)
@pytest.mark.parametrize("rate", ["0", None], ids=["as_fast_as_read", "default_rate"])
def test_c_publisher_to_python_subscriber(c_build: Path, channel: str, rate: Optional[str]) -> None:
    count = COUNT if rate == "0" else 200  # the default rate is 1 kHz
    args = [str(example(c_build, "pub_example")), channel, str(count)] + ([rate] if rate else [])
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        with Subscriber(channel, timeout_connect=10.0, serialization="raw") as sub:
            received = []
            for _ in range(count):
                message = sub.recv_bytes(timeout=10.0)
                assert message is not None, f"only {len(received)} messages; pub_example: {proc.poll()}"
                received.append(message)
            assert received == [b"hello %d" % i for i in range(count)]
            stats = sub.stats()
            assert stats["received"] == count and stats["dropped"] == 0 and stats["lossless"] is True
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, f"pub_example exit {proc.returncode}: {err}"
            assert sub.recv_bytes(timeout=0) is None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("lossless", [True, False], ids=["lossless", "overwrite"])
def test_python_publisher_to_c_subscriber(c_build: Path, channel: str, lossless: bool) -> None:
    with Publisher(channel, num_slots=64 if lossless else 1024, slot_size=64, lossless=lossless) as pub:
        proc = subprocess.Popen([str(example(c_build, "sub_example")), channel, str(COUNT)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
        try:
            wait_until(lambda: pub.stats()["subscribers"] == 1 or proc.poll() is not None, 20,
                       "sub_example attaches")
            assert proc.poll() is None, f"sub_example exited early: {proc.communicate()}"
            for i in range(COUNT):
                # overwrite mode never waits: the ring (1024 slots) holds all 1000 messages anyway
                assert pub.send_bytes(b"hello %d" % i, block=lossless, timeout=10.0) is True
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"sub_example exit {proc.returncode}: {err}"
    assert out.splitlines() == [f"hello {i}" for i in range(COUNT)]


@pytest.mark.timeout(60)
def test_python_raw_serialization_reaches_c_unchanged(c_build: Path, channel: str) -> None:
    """With serialization="raw", the C side sees exactly the bytes Python sent."""
    with Publisher(channel, slot_size=64, lossless=True, serialization="raw") as pub:
        proc = subprocess.Popen([str(example(c_build, "sub_example")), channel, "2"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
        try:
            wait_until(lambda: pub.stats()["subscribers"] == 1 or proc.poll() is not None, 20,
                       "sub_example attaches")
            pub.send(b"raw text")
            pub.send(bytearray(b"more text"))
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.splitlines() == ["raw text", "more text"]
