"""Stale segments of every pattern (DESIGN rule 6): a keeper (Publisher, Replier, Pusher) killed with
SIGKILL leaves its segment, which ``list_segments()`` reports stale with the dead creator's pid;
``force_unlink()`` and ``python -m shmcomm clean`` remove stale segments and never a live one; a new
keeper of the same name replaces a stale segment (a new session: nothing of the dead one is joined or
delivered), also when several restart at once.

test_segments.py covers PUB/SUB's basics (listing, force_unlink, clean with one live publisher,
replacement with another geometry); this file extends them to REQ/REP and PUSH/PULL and to the cases
between: a channel whose creator died but another keeper lives, followers left on a removed segment,
replacement with the same geometry, concurrent restarts.

Keepers run in real child processes (``python -c``) that report on stdout and wait on stdin; every
wait has a deadline.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

import shmcomm
from procs import child_env, wait_until
from shmcomm import (Publisher, Puller, Pusher, Replier, Requester, SHMError, Subscriber)

SHM_DIR = "/dev/shm"
PATTERNS = ["pubsub", "reqrep", "pipeline"]
KEEPERS = {"pubsub": Publisher, "reqrep": Replier, "pipeline": Pusher}
FOLLOWERS = {"pubsub": Subscriber, "reqrep": Requester, "pipeline": Puller}

# A child process holding keepers: argv = specs "pattern|name|num_slots|slot_size|load". With load,
# it leaves messages in the channel (pubsub: 3 published; reqrep: 1 request queued by a Requester of
# its own; pipeline: 3 items queued). It reports {"pid", "heads"} and then obeys stdin lines:
# "send <text>" (each keeper sends text: publish / push; a Replier ignores it), "stop" (close all, exit 0).
KEEPER_PROCESS = r"""
import json, os, sys
import shmcomm

keepers = {"pubsub": shmcomm.Publisher, "reqrep": shmcomm.Replier, "pipeline": shmcomm.Pusher}
opened, extra = [], []
if sys.stdin.readline().strip() != "go":
    raise SystemExit("expected go")
for spec in sys.argv[1:]:
    pattern, name, num_slots, slot_size, load = spec.split("|")
    ep = keepers[pattern](name, num_slots=int(num_slots), slot_size=int(slot_size))
    if load == "1":
        if pattern == "reqrep":
            req = shmcomm.Requester(name, timeout_connect=5.0)
            req.send("a request of the dead session")
            extra.append(req)
        else:
            for i in range(3):
                ep.send(("dead session", i))
    opened.append((pattern, ep))
def head(pattern, ep):
    s = ep.stats()
    return s["requests"] if pattern == "reqrep" else s["head"]
def keepers_of(pattern, ep):
    s = ep.stats()
    return s.get("publishers", s.get("repliers", s.get("pushers")))
print(json.dumps({"pid": os.getpid(), "heads": [head(p, e) for p, e in opened],
                  "keepers": [keepers_of(p, e) for p, e in opened]}), flush=True)
for line in sys.stdin:
    command, _, arg = line.strip().partition(" ")
    if command == "send":
        for pattern, ep in opened:
            if pattern != "reqrep":
                ep.send(arg)
        print(json.dumps({"sent": arg}), flush=True)
    elif command == "stop":
        break
for ep in extra:
    ep.close()
for _, ep in opened:
    ep.close()
print(json.dumps({"closed": True}), flush=True)
"""


class KeeperProcess:
    """A child process running KEEPER_PROCESS."""

    def __init__(self, specs: Sequence[Tuple[str, str, int, int, bool]], go: bool = True) -> None:
        argv = [sys.executable, "-c", KEEPER_PROCESS,
                *("|".join([p, n, str(k), str(s), "1" if load else "0"]) for p, n, k, s, load in specs)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=child_env(), bufsize=0)
        self._buffer = b""
        self.report: Dict[str, Any] = {}
        if go:
            self.go()
            self.wait_ready()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def go(self) -> None:
        self.tell("go")

    def read(self, timeout: float, what: str) -> Dict[str, Any]:
        """The next JSON line the child prints, within ``timeout`` seconds."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    self.proc.wait(10)
                    err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                    raise AssertionError(f"the keeper process exited ({self.proc.returncode}) before "
                                         f"{what}:\n{err[-5000:]}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def wait_ready(self) -> Dict[str, Any]:
        self.report = self.read(30, "the keeper process to open its keepers")
        return self.report

    def kill(self) -> None:
        """SIGKILL, then reap: the process dies without closing anything."""
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> None:
        self.tell("stop")
        assert self.read(30, "the keeper process to close") == {"closed": True}
        assert self.proc.wait(timeout=10) == 0

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def keepers() -> Iterator[Callable[..., KeeperProcess]]:
    """Starts keeper processes; kills and reaps the ones still running at the end of the test."""
    started: List[KeeperProcess] = []

    def start(*specs: Tuple[str, str, int, int, bool], go: bool = True) -> KeeperProcess:
        kp = KeeperProcess(specs, go=go)
        started.append(kp)
        return kp

    yield start
    for kp in started:
        kp.cleanup()


@pytest.fixture
def remove_afterwards() -> Iterator[List[str]]:
    """OS names to force_unlink at the end of the test, whatever happened (stale segments are not
    anybody's to close)."""
    names: List[str] = []
    yield names
    for name in names:
        try:
            shmcomm.force_unlink(name)
        except SHMError:
            pass


def os_name(name: str, pattern: str) -> str:
    return shmcomm.os_name(name, pattern)


def path_of(name: str, pattern: str) -> str:
    return os.path.join(SHM_DIR, os_name(name, pattern))


def listed(os_name_: str) -> shmcomm.SegmentInfo:
    matches = [s for s in shmcomm.list_segments() if s == os_name_]
    assert len(matches) == 1, f"{os_name_} listed {len(matches)} times"
    return matches[0]


def shmcomm_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shmcomm", *args], capture_output=True, text=True,
                          timeout=60, env=child_env())


def keeper_count(stats: Dict[str, Any]) -> int:
    return stats.get("publishers", stats.get("repliers", stats.get("pushers")))


def follower_sees_keeper_alive(pattern: str, follower: Any) -> bool:
    return {"pubsub": lambda: follower.publisher_alive, "reqrep": lambda: follower.replier_alive,
            "pipeline": lambda: follower.pusher_alive}[pattern]()


LOADED_HEAD = {"pubsub": 3, "reqrep": 1, "pipeline": 3}


# ---- a killed keeper leaves a stale segment ------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["reqrep", "pipeline"])  # pubsub: test_segments.py
def test_a_killed_keeper_is_listed_stale_with_its_dead_pid(new_channel: Callable[[str], str], keepers: Any,
                                                           remove_afterwards: List[str], pattern: str) -> None:
    name = new_channel(pattern)
    seg = os_name(name, pattern)
    remove_afterwards.append(seg)
    kp = keepers((pattern, name, 8, 256, True))
    assert kp.report["heads"] == [LOADED_HEAD[pattern]]
    live = listed(seg)
    assert live.stale is False and live.creator_alive is True and live.creator_pid == kp.pid
    kp.kill()
    info = listed(seg)
    assert info.stale is True, info.as_dict()
    assert info.creator_pid == kp.pid and info.creator_alive is False, info.as_dict()
    assert info.pattern == pattern and info.channel == name and info.error is None, info.as_dict()
    assert info.publishers == 0, info.as_dict()  # no live keeper
    assert info.head == LOADED_HEAD[pattern] and info.num_slots == 8 and info.slot_size == 256
    assert shmcomm.segment_info(seg).as_dict() == info.as_dict()
    # The command line says the same.
    ls = shmcomm_cli("ls", "--json")
    assert ls.returncode == 0, ls.stderr
    entry = [e for e in json.loads(ls.stdout) if e["os_name"] == seg]
    assert len(entry) == 1 and entry[0]["stale"] is True and entry[0]["creator_pid"] == kp.pid, entry
    # force_unlink removes it, once.
    assert shmcomm.force_unlink(seg) is True
    assert not os.path.exists(path_of(name, pattern))
    assert shmcomm.force_unlink(seg) is False
    assert seg not in shmcomm.list_segments()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_channel_whose_creator_died_stays_live_while_another_keeper_lives(
        new_channel: Callable[[str], str], keepers: Any, remove_afterwards: List[str], pattern: str) -> None:
    """Stale means every keeper is dead, not only the creator: clean must not remove a channel a
    second Publisher/Replier/Pusher still serves."""
    name = new_channel(pattern)
    seg = os_name(name, pattern)
    remove_afterwards.append(seg)
    creator = keepers((pattern, name, 8, 256, False))
    second = keepers((pattern, name, 8, 256, False))
    assert second.report["keepers"] == [2]
    creator.kill()
    info = listed(seg)
    assert info.creator_pid == creator.pid and info.creator_alive is False, info.as_dict()
    assert info.stale is False and info.publishers == 1, info.as_dict()
    assert seg not in [str(s) for s in shmcomm.clean(dry_run=True)]
    proc = shmcomm_cli("clean")
    assert proc.returncode == 0, proc.stderr
    assert seg not in proc.stdout and os.path.exists(path_of(name, pattern))
    with FOLLOWERS[pattern](name, timeout_connect=5.0) as follower:
        assert follower_sees_keeper_alive(pattern, follower)
        if pattern != "reqrep":
            second.tell("send from the second keeper")
            assert second.read(30, "the second keeper to send") == {"sent": "from the second keeper"}
            assert follower.recv(timeout=10.0) == "from the second keeper"
    # Once the last keeper dies too, the channel is stale and clean removes it.
    second.kill()
    info = listed(seg)
    assert info.stale is True and info.publishers == 0, info.as_dict()
    proc = shmcomm_cli("clean")
    assert proc.returncode == 0 and seg in proc.stdout, proc.stdout + proc.stderr
    assert not os.path.exists(path_of(name, pattern))


# ---- clean: every stale one, never a live one -----------------------------------------------------------

@pytest.mark.timeout(120)
def test_clean_removes_the_stale_segments_of_every_pattern_and_no_live_one(
        new_channel: Callable[[str], str], keepers: Any, remove_afterwards: List[str]) -> None:
    stale = {p: new_channel("stale-" + p) for p in PATTERNS}
    remote = {p: new_channel("remote-" + p) for p in PATTERNS}  # live, in another process
    local = {p: new_channel("local-" + p) for p in PATTERNS}  # live, in this process
    remove_afterwards.extend(os_name(n, p) for p, n in list(stale.items()) + list(remote.items()))
    dead = keepers(*[(p, n, 8, 256, True) for p, n in stale.items()])
    alive = keepers(*[(p, n, 8, 256, False) for p, n in remote.items()])
    dead.kill()
    ours = [KEEPERS[p](n, num_slots=8, slot_size=256) for p, n in local.items()]
    try:
        # A follower of each stale channel, attached before clean: it must survive the removal.
        orphans = {p: FOLLOWERS[p](n, timeout_connect=1.0) for p, n in stale.items()}
        for p, n in stale.items():
            assert listed(os_name(n, p)).stale is True
        for p, n in list(remote.items()) + list(local.items()):
            assert listed(os_name(n, p)).stale is False
        proc = shmcomm_cli("clean")
        assert proc.returncode == 0, proc.stderr
        for p, n in stale.items():
            assert os_name(n, p) in proc.stdout, proc.stdout
            assert str(dead.pid) in proc.stdout
            assert not os.path.exists(path_of(n, p)), f"stale {p} segment not removed"
        for p, n in list(remote.items()) + list(local.items()):
            assert os_name(n, p) not in proc.stdout, proc.stdout
            assert os.path.exists(path_of(n, p)), f"live {p} segment removed"
        assert not any(str(s) in {os_name(n, p) for p, n in list(remote.items()) + list(local.items())}
                       for s in shmcomm.clean())
        # The live channels still work, from this (third) process.
        for p, n in remote.items():
            with FOLLOWERS[p](n, timeout_connect=5.0) as follower:
                assert follower_sees_keeper_alive(p, follower)
                assert listed(os_name(n, p)).creator_pid == alive.pid
        for (p, n), keeper in zip(local.items(), ours):
            with FOLLOWERS[p](n, timeout_connect=5.0) as follower:
                if p == "reqrep":
                    follower.send("ping")
                    assert keeper.recv(timeout=5.0) == "ping"
                    keeper.send("pong")
                    assert follower.recv(timeout=5.0) == "pong"
                else:
                    keeper.send("still here")
                    assert follower.recv(timeout=5.0) == "still here"
        # The followers left on the removed segments keep a working mapping: they read what is left or
        # nothing, see their keeper dead, raise SHMErrors at worst, and close without a crash.
        for p, follower in orphans.items():
            assert not follower_sees_keeper_alive(p, follower)
            if p == "pipeline":
                assert follower.recv(timeout=0) == ("dead session", 0)  # queued items stay takeable
            elif p == "pubsub":
                assert follower.recv(timeout=0) is None  # published before it attached
            else:
                with pytest.raises(SHMError):
                    follower.request("anyone?", timeout=1.0)
            follower.stats()
            follower.close()
        alive.stop()
        for p, n in remote.items():  # a clean exit unlinks (nothing for clean to do)
            assert not os.path.exists(path_of(n, p))
    finally:
        for keeper in ours:
            keeper.close()


# ---- a new keeper replaces a stale segment --------------------------------------------------------------

@pytest.mark.parametrize("pattern, geometry", [("pubsub", "same"), ("reqrep", "same"), ("reqrep", "other"),
                                               ("pipeline", "same"), ("pipeline", "other")])
def test_a_new_keeper_replaces_a_stale_segment_with_a_new_session(
        new_channel: Callable[[str], str], keepers: Any, remove_afterwards: List[str], pattern: str,
        geometry: str) -> None:
    """Same geometry is the trap: joining the dead session would look fine but continue its head and
    deliver its messages. Other geometry (pubsub: test_segments.py) must not fail with a mismatch."""
    name = new_channel(pattern)
    seg = os_name(name, pattern)
    remove_afterwards.append(seg)
    dead = keepers((pattern, name, 8, 256, True))
    assert dead.report["heads"] == [LOADED_HEAD[pattern]]
    dead.kill()
    assert listed(seg).stale is True
    num_slots, slot_size = (8, 256) if geometry == "same" else (16, 512)
    with KEEPERS[pattern](name, num_slots=num_slots, slot_size=slot_size) as keeper:
        info = listed(seg)
        assert info.stale is False and info.creator_pid == os.getpid() and info.creator_alive, info.as_dict()
        assert info.head == 0, f"the new keeper joined the dead session: {info.as_dict()}"
        assert info.publishers == 1 and (info.num_slots, info.slot_size) == (num_slots, slot_size)
        stats = keeper.stats()
        assert keeper_count(stats) == 1 and stats.get("head", stats.get("requests")) == 0, stats
        with FOLLOWERS[pattern](name, timeout_connect=2.0) as follower:
            if pattern == "reqrep":
                assert keeper.recv(timeout=0) is None  # the dead session's request is gone
                follower.send("new session")
                assert keeper.recv(timeout=5.0) == "new session"
                keeper.send("answered")
                assert follower.recv(timeout=5.0) == "answered"
            else:
                keeper.send("new session")
                assert follower.recv(timeout=5.0) == "new session"  # not ("dead session", 0)
                assert follower.recv(timeout=0) is None
            assert follower.stats()["slot_size"] == slot_size
    assert not os.path.exists(path_of(name, pattern))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_keepers_restarting_together_all_join_one_new_session(
        new_channel: Callable[[str], str], keepers: Any, remove_afterwards: List[str], pattern: str) -> None:
    """Four processes open a keeper on one stale name at the same moment: one replaces the segment and
    the others join it; none may end up alone on a segment that was unlinked under it."""
    name = new_channel(pattern)
    seg = os_name(name, pattern)
    remove_afterwards.append(seg)
    dead = keepers((pattern, name, 8, 256, True))
    dead.kill()
    racers = [keepers((pattern, name, 8, 256, False), go=False) for _ in range(4)]
    for kp in racers:
        kp.go()  # each opens its keeper at once
    reports = [kp.wait_ready() for kp in racers]
    counts = sorted(r["keepers"][0] for r in reports)
    assert reports and all(r["heads"] == [0] for r in reports), reports
    info = listed(seg)
    assert info.stale is False and info.creator_pid in [kp.pid for kp in racers], info.as_dict()
    assert info.publishers == 4, f"{info.publishers} of 4 keepers on the segment; counts at open: {counts}"
    if pattern != "reqrep":
        with FOLLOWERS[pattern](name, timeout_connect=5.0) as follower:
            for i, kp in enumerate(racers):
                kp.tell(f"send racer {i}")
                assert kp.read(30, f"racer {i} to send") == {"sent": f"racer {i}"}
            got = sorted(follower.recv(timeout=10.0) for _ in racers)
            assert got == sorted(f"racer {i}" for i in range(4)), got
    for kp in racers:
        kp.stop()
    assert not os.path.exists(path_of(name, pattern))
