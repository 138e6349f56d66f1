"""The command line, python -m shmcomm: version, ls (--json), inspect (--json, every peer), top
(plain and rich, non-interactive and under Ctrl-C in a terminal), clean --dry-run, echo, pub, demo,
bench (forwarded to shmcomm.bench), and shmc_segment_peers under it (real processes, a corrupt
registry)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Dict, List, Tuple

import pytest

import shmcomm
from procs import CTX, Children, child_env, crashing_publisher, get, join, wait_until
from shmcomm import Publisher, Subscriber
from shmcomm._binding import lib
from shmcomm.segments import segment_peers


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
    for command in ("demo", "ls", "inspect", "top", "clean", "echo", "pub", "bench", "version"):
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
        assert row[4:6] == ["1pub+1sub", "1"]  # live peers by role, messages
        assert "8x256" in row and shmcomm.os_name(channel) in row
        header = proc.stdout.splitlines()[0]
        assert header.split()[:6] == ["CHANNEL", "PATTERN", "STATE", "CREATOR", "PEERS", "MESSAGES"]


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
        assert [(p["role"], p["pid"], p["alive"]) for p in entry["peers"]] == [
            ("publisher", os.getpid(), True)]
    after = json.loads(cli("ls", "--json").stdout)
    assert shmcomm.os_name(channel) not in [e["os_name"] for e in after]


def _inspect_fields(stdout: str) -> Dict[str, str]:
    """The "key: value" lines of inspect's first block (the peers table follows a blank line)."""
    header = stdout.split("\n\n")[0]
    return dict(re.match(r"\s*(\w+): (.*)", line).groups() for line in header.splitlines())  # type: ignore


@pytest.mark.parametrize("by", ["channel", "os_name"])
def test_inspect(channel: str, by: str) -> None:
    with Publisher(channel, num_slots=8, slot_size=256) as pub:
        pub.send(1)
        pub.send(2)
        target = channel if by == "channel" else shmcomm.os_name(channel)
        proc = cli("inspect", target)
        assert proc.returncode == 0, proc.stderr
        fields = _inspect_fields(proc.stdout)
        assert fields["channel"] == channel and fields["os_name"] == shmcomm.os_name(channel)
        assert fields["num_slots"] == "8" and fields["slot_size"] == "256" and fields["head"] == "2"
        assert fields["stale"] == "False" and fields["creator_pid"] == str(os.getpid())
        assert fields["layout_version"] == str(lib.SHMC_LAYOUT_VERSION) and fields["flags"] == "none"
        as_json = json.loads(cli("inspect", target, "--json").stdout)
        assert len(as_json) == 1  # a list: one entry per segment of the channel
        assert as_json[0]["channel"] == channel and as_json[0]["head"] == 2
        assert as_json[0]["peers"][0]["role"] == "publisher"


SUBSCRIBER_CHILD = """
import sys
from shmcomm import Subscriber
sub = Subscriber(sys.argv[1], timeout_connect=20.0)
assert sub.recv(timeout=20.0) == "first"
print("ready", flush=True)
sys.stdin.readline()  # stays attached, reading nothing more, until killed
"""


def test_inspect_shows_each_peer_with_its_lag_and_a_dead_one(channel: str) -> None:
    with Publisher(channel, num_slots=8, slot_size=256) as pub:
        child = subprocess.Popen([sys.executable, "-c", SUBSCRIBER_CHILD, channel], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, env=child_env())
        try:
            wait_until(lambda: pub.stats()["subscribers"] == 1, 30, "the child subscriber attaches")
            pub.send("first")
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            for i in range(20):  # the child reads none of these: 12 of them are overwritten for it
                pub.send(i)
            peers = {p.role: p for p in segment_peers(shmcomm.os_name(channel))}
            assert set(peers) == {"publisher", "subscriber"}
            sub = peers["subscriber"]
            assert sub.pid == child.pid and sub.alive and sub.cursor == 1
            assert sub.lag == 20 and sub.overrun == 12 and sub.count is None
            assert peers["publisher"].pid == os.getpid() and peers["publisher"].count == 21
            assert peers["publisher"].lag is None and peers["subscriber"].heartbeat_age >= 0

            proc = cli("inspect", channel)
            assert proc.returncode == 0, proc.stderr
            table = proc.stdout.split("\n\n")[1].splitlines()
            assert table[1].split() == ["ENTRY", "PID", "ROLE", "STATE", "HEARTBEAT", "CURSOR", "LAG",
                                        "OVERRUN", "COUNT"]
            rows = {r.split()[2]: r.split() for r in table[2:]}
            assert rows["subscriber"][1] == str(child.pid) and rows["subscriber"][3] == "alive"
            assert rows["subscriber"][5:9] == ["1", "20", "12", "-"]
            assert rows["publisher"][5:9] == ["-", "-", "-", "21"]

            child.kill()  # SIGKILL: its entry stays until a publisher reaps it (this one sends no more)
            child.wait(timeout=30)
            peers = {p.role: p for p in segment_peers(shmcomm.os_name(channel))}
            assert peers["subscriber"].pid == child.pid and not peers["subscriber"].alive
            assert peers["publisher"].alive
            dead_row = [r for r in cli("inspect", channel).stdout.splitlines() if str(child.pid) in r]
            assert dead_row and dead_row[0].split()[2:4] == ["subscriber", "dead"]
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


def test_segment_peers_reads_a_corrupt_registry_without_trusting_it(channel: str) -> None:
    """Garbage in every registry entry (owners, pids, cursors, heartbeats): the entries are reported
    as they are, bounded by the registry's size, and nothing is written to the segment."""
    import random

    with Publisher(channel, num_slots=4, slot_size=64, max_peers=8):
        with open(os.path.join("/dev/shm", shmcomm.os_name(channel)), "rb") as f:
            image = bytearray(f.read())
    copy = shmcomm.os_name(channel + "/copy")
    path = os.path.join("/dev/shm", copy)
    rng = random.Random(7)
    image[512:512 + 8 * 64] = bytes(rng.getrandbits(8) for _ in range(8 * 64))  # the registry
    for i in range(0, 8, 2):  # half the entries: a valid role, a nonsense pid
        image[512 + i * 64:512 + i * 64 + 8] = ((rng.getrandbits(31) << 32) | 2).to_bytes(8, "little")
    with open(path, "wb") as f:
        f.write(image)
    try:
        before = bytes(image)
        peers = segment_peers(copy)
        assert 4 <= len(peers) <= 8
        assert all(p.role in ("publisher", "subscriber") and p.heartbeat_age >= 0 for p in peers)
        with open(path, "rb") as f:
            assert f.read() == before  # read-only
        proc = cli("inspect", copy)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    finally:
        shmcomm.force_unlink(copy)


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


# ---- top ------------------------------------------------------------------------------------------

def _top_frames(stdout: str) -> List[List[str]]:
    """Splits top's non-terminal output into frames (each starts with its title line)."""
    frames: List[List[str]] = []
    for line in stdout.splitlines():
        if line.strip().startswith("shmcomm top:"):
            frames.append([])
        elif frames and line.strip():
            frames[-1].append(line)
    return frames


def test_top_plain_refreshes_n_times_and_shows_each_channel(channel: str) -> None:
    with Publisher(channel, num_slots=8, slot_size=256) as pub, Subscriber(channel):
        for i in range(10):  # the subscriber reads none
            pub.send(i)
        proc = cli("top", "--iterations", "2", "--interval", "0.05", "--ui", "plain")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout  # no escape codes when the output is not a terminal
    frames = _top_frames(proc.stdout)
    assert len(frames) == 2, proc.stdout
    for frame in frames:
        assert frame[0].split() == ["CHANNEL", "PATTERN", "STATE", "PEERS", "MSG/S", "MESSAGES", "LAG",
                                    "OVERRUN", "DEAD", "SLOTS"]
        row = [line.split() for line in frame if line.startswith(channel + " ")]
        assert len(row) == 1, frame
        # nothing was published between refreshes: 0 msg/s; lag 10, 2 more than the ring of 8 holds
        assert row[0][1:] == ["pubsub", "live", "1pub+1sub", "0", "10", "10", "2", "0", "8x256"]


def test_top_rates_are_head_deltas_over_the_time_between_refreshes(channel: str) -> None:
    from shmcomm.segments import segment_info
    from shmcomm.top import Sample, table_rows

    with Publisher(channel, num_slots=8, slot_size=256) as pub:
        name = shmcomm.os_name(channel)
        before = Sample(segment_info(name), at=100.0)
        for i in range(50):
            pub.send(i)
        after = Sample(segment_info(name), at=100.5)
        row = next(r for r in table_rows({name: before}, {name: after}) if r[0] == channel)
        assert row[4:6] == ["100", "50"]  # 50 messages in 0.5 s
        assert table_rows({}, {name: after})[0][4] == "-"  # no earlier sample: no rate yet
        for i in range(2000):
            pub.send(i)
        later = Sample(segment_info(name), at=101.5)
        assert next(r for r in table_rows({name: after}, {name: later}) if r[0] == channel)[4] == "2.0k"


def test_top_rich_table(channel: str) -> None:
    pytest.importorskip("rich")
    with Publisher(channel, num_slots=8, slot_size=256):
        proc = cli("top", "--once", "--interval", "0.05", "--ui", "rich")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip().startswith(channel + " ")]
    assert rows and rows[0][1:4] == ["pubsub", "live", "1pub+0sub"], proc.stdout


def test_top_rejects_bad_options() -> None:
    for args in (["--interval", "0"], ["--iterations", "-1"]):
        proc = cli("top", *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "--interval must be > 0" in proc.stderr or "--iterations must be >= 0" in proc.stderr


def _run_in_terminal_until_ctrl_c(args: List[str], shown: str) -> Tuple[int, str]:
    """Runs the CLI on a pseudo-terminal, waits until its output contains `shown`, presses Ctrl-C
    (SIGINT to its process group, as a terminal does) and returns its exit code and output."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))  # rows, columns
    proc = subprocess.Popen([sys.executable, "-m", "shmcomm", *args], stdin=slave, stdout=slave,
                            stderr=slave, env=child_env(), start_new_session=True)
    os.close(slave)
    output = b""
    try:
        deadline = time.monotonic() + 60
        while shown.encode() not in output:
            assert time.monotonic() < deadline, f"{shown!r} never appeared in:\n{output.decode(errors='replace')}"
            if select.select([master], [], [], 1.0)[0]:
                output += os.read(master, 65536)
        os.killpg(proc.pid, signal.SIGINT)
        while True:  # drain until the terminal closes (the process exited)
            if select.select([master], [], [], 1.0)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
            assert time.monotonic() < deadline + 30, "still running after Ctrl-C"
        return proc.wait(timeout=30), output.decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("ui", ["plain", "rich"])
def test_top_in_a_terminal_redraws_in_place_and_ends_cleanly_on_ctrl_c(channel: str, ui: str) -> None:
    if ui == "rich":
        pytest.importorskip("rich")
    with Publisher(channel, num_slots=8, slot_size=256):
        code, output = _run_in_terminal_until_ctrl_c(["top", "--interval", "0.05", "--ui", ui],
                                                     channel)
    assert code == 0, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    if ui == "plain":
        assert "\x1b[H\x1b[2J" in output  # redrawn in place


def test_echo_ends_cleanly_on_ctrl_c(channel: str) -> None:
    with Publisher(channel):
        code, output = _run_in_terminal_until_ctrl_c(["echo", channel], "echo: listening on")
    assert code == 130, output
    assert "Traceback" not in output, output


# ---- bench ----------------------------------------------------------------------------------------

def test_bench_forwards_every_argument_to_the_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from shmcomm.cli import main

    calls: List[List[str]] = []
    fake = types.ModuleType("shmcomm.bench")
    fake.main = lambda argv: calls.append(argv) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "shmcomm.bench", fake)
    assert main(["bench", "--plot", "out", "--help", "-x"]) == 7
    assert calls == [["--plot", "out", "--help", "-x"]]


def test_bench_without_the_suite_says_so(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from shmcomm.cli import main

    monkeypatch.setitem(sys.modules, "shmcomm.bench", None)  # import fails as if bench.py were absent
    assert main(["bench", "--plot"]) == 1
    assert "the benchmark suite is not installed" in capsys.readouterr().err
