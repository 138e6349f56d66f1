"""The command line, python -m shmcomm: version, ls, ls --json, inspect, clean --dry-run, demo."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

import shmcomm
from procs import CTX, Children, child_env, crashing_publisher, get, join
from shmcomm import Publisher, Subscriber


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shmcomm", *args], capture_output=True, text=True,
                          timeout=timeout, env=child_env())


def test_version() -> None:
    proc = cli("version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"shmcomm {shmcomm.__version__} (libshm {shmcomm.library_version()})"


def test_help_and_bad_command() -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    for command in ("demo", "ls", "inspect", "clean", "version"):
        assert command in proc.stdout
    bad = cli("frobnicate")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_ls_shows_a_live_channel(channel: str) -> None:
    with Publisher(channel, num_slots=8, slot_size=256) as pub, Subscriber(channel):
        pub.send("x")
        proc = cli("ls")
        assert proc.returncode == 0, proc.stderr
        lines = [line for line in proc.stdout.splitlines() if line.startswith(channel + " ")]
        assert len(lines) == 1, proc.stdout
        row = lines[0].split()
        assert row[0] == channel and row[1] == "pubsub" and row[2] == "live"
        assert row[3] == str(os.getpid())
        assert row[4:7] == ["1", "1", "1"]  # publishers, subscribers, messages
        assert "8x256" in row and shmcomm.os_name(channel) in row
        header = proc.stdout.splitlines()[0]
        assert header.split()[:3] == ["CHANNEL", "PATTERN", "STATE"]


def test_ls_json(channel: str) -> None:
    with Publisher(channel, num_slots=8, slot_size=256):
        proc = cli("ls", "--json")
        assert proc.returncode == 0, proc.stderr
        entries = json.loads(proc.stdout)
        assert isinstance(entries, list)
        ours = [e for e in entries if e["os_name"] == shmcomm.os_name(channel)]
        assert len(ours) == 1
        entry = ours[0]
        assert entry["channel"] == channel and entry["pattern"] == "pubsub"
        assert entry["stale"] is False and entry["creator_pid"] == os.getpid()
        assert entry["creator_alive"] is True and entry["publishers"] == 1
        assert entry["num_slots"] == 8 and entry["slot_size"] == 256 and entry["error"] is None
    after = json.loads(cli("ls", "--json").stdout)
    assert shmcomm.os_name(channel) not in [e["os_name"] for e in after]


@pytest.mark.parametrize("by", ["channel", "os_name"])
def test_inspect(channel: str, by: str) -> None:
    with Publisher(channel, num_slots=8, slot_size=256) as pub:
        pub.send(1)
        pub.send(2)
        target = channel if by == "channel" else shmcomm.os_name(channel)
        proc = cli("inspect", target)
        assert proc.returncode == 0, proc.stderr
        fields = dict(re.match(r"\s*(\w+): (.*)", line).groups() for line in proc.stdout.splitlines())
        assert fields["channel"] == channel and fields["os_name"] == shmcomm.os_name(channel)
        assert fields["num_slots"] == "8" and fields["slot_size"] == "256" and fields["head"] == "2"
        assert fields["stale"] == "False" and fields["creator_pid"] == str(os.getpid())
        as_json = json.loads(cli("inspect", target, "--json").stdout)
        assert as_json["channel"] == channel and as_json["head"] == 2


def test_inspect_a_missing_channel(channel: str) -> None:
    proc = cli("inspect", channel)
    assert proc.returncode == 1
    assert channel in proc.stderr and "Traceback" not in proc.stderr


def test_inspect_an_invalid_name() -> None:
    proc = cli("inspect", "a/../b")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "invalid channel name" in proc.stderr


def test_clean_dry_run_shows_a_stale_channel_and_keeps_it(channel: str) -> None:
    events = CTX.Queue()
    with Children() as kids:
        proc = kids.start(crashing_publisher, channel, events)
        pid = get(events, 30, "the publisher", "ready")["pid"]
        os.kill(pid, signal.SIGKILL)
        assert join(proc, 10, "killed publisher") == -signal.SIGKILL
    name = shmcomm.os_name(channel)
    try:
        ls = cli("ls")
        row = [line for line in ls.stdout.splitlines() if line.startswith(channel + " ")]
        assert row and row[0].split()[2] == "stale", ls.stdout
        dry = cli("clean", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"would remove {name} (channel {channel}, creator pid {pid})" in dry.stdout
        assert "live channels are never touched" in dry.stdout
        assert os.path.exists(os.path.join("/dev/shm", name))
    finally:
        shmcomm.force_unlink(name)


@pytest.mark.timeout(120)
def test_demo() -> None:
    proc = cli("demo", "--messages", "20000", timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    channel = re.search(r"on '([^']+)'", lines[0]).group(1)
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["subscriber"])
    in_order = lines[header].split().index("in")  # the "in order" column
    rows = [line.split() for line in lines[header + 1:] if re.match(r"\s*\d+\s", line)]
    assert len(rows) == 2, proc.stdout  # the default: 2 subscriber processes
    for row in rows:
        assert row[2] == "20,000", proc.stdout  # received
        assert row[in_order] == "yes", proc.stdout
        assert row[in_order + 1] == "0", proc.stdout  # dropped
    assert not os.path.exists(os.path.join("/dev/shm", shmcomm.os_name(channel)))  # cleaned up


def _start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "shmcomm", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())


def test_pub_waits_for_a_subscriber_then_publishes(channel: str) -> None:
    proc = _start_cli("pub", channel, "hello", "world", "--wait-for", "1", "--wait", "20")
    try:
        with Subscriber(channel, timeout_connect=20.0) as sub:  # attaches while pub waits for it
            assert sub.recv(timeout=20.0) == "hello"
            assert sub.recv(timeout=20.0) == "world"
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert f"pub: sent 2 message(s) on {channel!r}" in err


def test_echo_prints_what_is_published(channel: str) -> None:
    with Publisher(channel, lossless=True) as pub:
        proc = _start_cli("echo", channel, "--count", "3", "--timeout", "30")
        try:
            assert proc.stderr is not None
            # echo says it listens once it is attached: what is sent from then on reaches it.
            assert "echo: listening on" in proc.stderr.readline()
            assert pub.stats()["subscribers"] == 1
            for message in ({"x": 1}, "text", [1, 2]):
                pub.send(message, block=True, timeout=20.0)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert out.splitlines() == ["{'x': 1}", "'text'", "[1, 2]"]


def test_pub_push_and_echo_pull_move_stdin_lines_raw(channel: str) -> None:
    pusher = _start_cli("pub", channel, "--push", "--raw", "--wait", "30")
    puller = None
    try:
        pusher.stdin.write("first line\nsecond line\n")
        pusher.stdin.close()
        puller = _start_cli("echo", channel, "--pull", "--raw", "--count", "2", "--timeout", "30",
                            "--wait", "30")
        out, err = puller.communicate(timeout=60)
        assert puller.returncode == 0, err
        assert out.splitlines() == ["first line", "second line"]
        pusher.wait(timeout=60)
        assert pusher.returncode == 0, pusher.stderr.read()
    finally:
        for proc in (pusher, puller):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_echo_without_a_channel_explains(channel: str) -> None:
    proc = cli("echo", channel, "--wait", "0.2")
    assert proc.returncode == 1
    assert "start the Publisher first or raise timeout_connect" in proc.stderr
