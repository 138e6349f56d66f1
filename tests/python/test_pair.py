"""PAIR (shmcomm.Pair): the ESHM two-way channel between a master and a slave, with real separate
processes: roles (auto, explicit, refused), the two-way exchange and its API, full queues and sizes, a
slave started before its master, remote liveness (dead, stale under SIGSTOP, idle without the
heartbeat thread), statistics, SIGKILL of either side mid-stream and the restarted process, the three
disconnect behaviours, and C and Python on one pair in both directions.

Every step across processes is synchronised through queues, events, shared values or files, and every
wait has a deadline; nothing sleeps and hopes, and nothing asserts on timing."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

import shmcomm
from naming import REPO
from pair_procs import early_slave, echo, flapping_slave, holder, numbered_writer, recording_reader
from procs import CTX, SEQ, Children, check_pattern, child_env, get, join, pattern_payload, wait_until
from shmcomm import (DisconnectBehavior, Pair, PairRole, SHMBufferFullError, SHMClosedError,
                     SHMConnectionError, SHMMessageSizeError, SHMPeerDeadError, SHMSerializationError,
                     SHMTimeoutError, SHMTypeError, SHMValueError)


# ---- helpers --------------------------------------------------------------------------------------

def kill(proc: Any) -> None:
    """SIGKILLs a child and reaps it (so its pid is gone, not a zombie)."""
    os.kill(proc.pid, signal.SIGKILL)
    join(proc, 10, "the killed child")


def unlink_role(name: str, role: str) -> None:
    """Removes the queue of ``role`` that a SIGKILLed process left behind (nobody took the role over,
    so nobody else will). Called only for roles whose holder was killed."""
    shmcomm.force_unlink(shmcomm.os_name(name, "pair-m2s" if role == "master" else "pair-s2m"))


def seqs_of(path: Path) -> List[int]:
    data = path.read_bytes() if path.exists() else b""
    return [SEQ.unpack_from(data, i)[0] for i in range(0, len(data), 8)]


def messages(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name.split(".")[0] == "shmcomm"]


# ---- roles ----------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_auto_roles_first_master_then_slave_then_refused(channel: str) -> None:
    # The first one is SIGKILLed while it waits on its event: a multiprocessing Event a killed process
    # waited on can hang set(), so it gets one of its own, never set.
    # Its queue too: a child killed while its queue's feeder thread holds the queue's lock leaves that
    # lock held for every later writer.
    events, stop, first_stop, first_events = CTX.Queue(), CTX.Event(), CTX.Event(), CTX.Queue()
    with Children() as kids:
        first = kids.start(holder, channel, "auto", first_events, first_stop)
        assert get(first_events, 20, "the first process opens", "ready")["role"] == "master"
        kids.start(holder, channel, PairRole.AUTO, events, stop)
        assert get(events, 20, "the second process opens", "ready")["role"] == "slave"
        kids.start(holder, channel, "auto", events, stop)
        third = get(events, 20, "the third process is refused", "refused")
        assert third["type"] == "SHMConnectionError"
        assert "both roles are held by live processes" in third["message"], third["message"]
        assert channel in third["message"]
        # An explicit role held by a live process is refused too, whichever way it is given.
        with pytest.raises(SHMConnectionError, match="the master role is held by live processes"):
            Pair(channel, "master")
        with pytest.raises(SHMConnectionError, match="the slave role is held by live processes"):
            Pair(channel, PairRole.SLAVE)
        with pytest.raises(SHMConnectionError, match="both roles are held"):
            Pair(channel)
        # The master dies: its role is free again, and "master" (any case) takes it over.
        kill(first)
        with Pair(channel, "MASTER") as master:
            assert master.role == "master" and master.get_role() is PairRole.MASTER
            assert master.wait_for_remote(10)
        stop.set()
        for proc in kids.procs[1:]:
            assert join(proc, 20, "a holder") == 0


def test_a_held_role_is_not_explained_as_too_many_peers(channel: str) -> None:
    """The refusal says the role is held and what to do; not the library's generic SHMC_EPEERS text
    ("too many processes attached to the channel (raise max_peers)"): Pair has no max_peers.
    (pair.py _open_failed passes SHMC_EPEERS to b.raise_error, which prepends shmc_strerror.)"""
    with Pair(channel, "master"), Pair(channel, "slave"):
        with pytest.raises(SHMConnectionError) as info:
            Pair(channel)
    assert "both roles are held" in str(info.value)
    assert "max_peers" not in str(info.value), str(info.value)


def test_roles_given_as_pair_role_or_str_in_any_case(channel: str) -> None:
    with Pair(channel, PairRole.SLAVE) as slave, Pair(channel, "Master") as master:
        assert slave.role == "slave" and slave.get_role() is PairRole.SLAVE
        assert master.role == "master" and master.get_role() is PairRole.MASTER
        assert master.disconnect_behavior is DisconnectBehavior.ON_TIMEOUT
    with Pair(channel, disconnect_behavior=DisconnectBehavior.NEVER) as p:
        assert p.role == "master" and p.disconnect_behavior is DisconnectBehavior.NEVER
    with Pair(channel, disconnect_behavior="Immediately") as p:
        assert p.disconnect_behavior is DisconnectBehavior.IMMEDIATELY


@pytest.mark.parametrize("kwargs, error, match", [
    ({"role": "boss"}, SHMValueError, r"role must be one of 'master', 'slave', 'auto'.*got 'boss'"),
    ({"role": 1}, SHMTypeError, "role must be a str or PairRole, not int"),
    ({"role": None}, SHMTypeError, "role must be a str or PairRole, not NoneType"),
    ({"disconnect_behavior": "sometimes"}, SHMValueError,
     r"disconnect_behavior must be one of 'immediately', 'on_timeout', 'never'"),
    ({"disconnect_behavior": 2}, SHMTypeError, "disconnect_behavior must be a str or DisconnectBehavior"),
    ({"stale_threshold": 0}, SHMValueError, "stale_threshold must be a number of seconds > 0"),
    ({"stale_threshold": -1.0}, SHMValueError, "stale_threshold must be >= 0 seconds"),
    ({"stale_threshold": float("nan")}, SHMValueError, "stale_threshold"),
    ({"stale_threshold": "0.1"}, SHMTypeError, "stale_threshold must be a number of seconds"),
    ({"stale_threshold": None}, SHMTypeError, "stale_threshold must be a number of seconds, not None"),
    ({"reconnect_wait": -0.5}, SHMValueError, "reconnect_wait must be >= 0 seconds"),
    ({"reconnect_retry_interval": 0}, SHMValueError, "reconnect_retry_interval must be a number of seconds > 0"),
    ({"max_reconnect_attempts": -1}, SHMValueError, "max_reconnect_attempts must be between 0 and"),
    ({"max_reconnect_attempts": 2.5}, SHMTypeError, "max_reconnect_attempts must be an int"),
    ({"num_slots": 1}, SHMValueError, "num_slots must be between 2 and"),
    ({"slot_size": 0}, SHMValueError, "slot_size must be between 1 and"),
    ({"use_threads": 1}, SHMTypeError, "use_threads must be a bool, not int"),
    ({"spin_us": -1}, SHMValueError, "spin_us must be between 0 and"),
    ({"mode": 0o644}, SHMValueError, "mode must be 0o600, 0o660 or 0o666"),
    ({"serialization": "json"}, SHMSerializationError, "unknown serialization 'json'"),
], ids=lambda v: str(v) if not isinstance(v, dict) else ",".join(v))
def test_bad_arguments_are_refused_with_clear_messages(channel: str, kwargs: Dict[str, Any], error: Any,
                                                       match: str) -> None:
    with pytest.raises(error, match=match):
        Pair(channel, **kwargs)
    assert not shmcomm.list_segments() or all(channel not in s.channel for s in shmcomm.list_segments())


def test_bad_names_are_refused(channel: str) -> None:
    with pytest.raises(shmcomm.SHMNameError):
        Pair("")
    with pytest.raises(shmcomm.SHMNameError):
        Pair("a/../b")
    with pytest.raises(SHMTypeError, match="channel name must be a str"):
        Pair(b"bytes")  # type: ignore[arg-type]


# ---- the exchange -------------------------------------------------------------------------------

EXCHANGED = {
    "pickle": [{"pose": (1.0, 2.5), "id": 7}, ["a", None, 3], "text", 2**70, b"\x00bytes"],
    "msgpack": [{"pose": [1.0, 2.5], "id": 7}, ["a", None, 3], "text", -5, b"\x00bytes"],
    "raw": [b"first", b"", b"\x00\xff" * 100, b"last"],
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("serialization", ["pickle", "msgpack", "raw"])
def test_two_way_exchange_in_order_exactly_once(channel: str, serialization: str) -> None:
    """The parent (master) sends through every send call and reads through every receive call; a
    slave process echoes each message unchanged (raw bytes), so every message crosses both ways."""
    objects = EXCHANGED[serialization]
    rounds = 30
    total = len(objects) + rounds + 4 + 6
    events, done = CTX.Queue(), CTX.Event()
    with Children() as kids, Pair(channel, "master", serialization=serialization) as pair:
        assert pair.serialization == serialization and pair.role == "master"
        assert pair.try_read() is None  # nothing yet (the slave is not even there)
        assert not pair.is_remote_alive()
        slave = kids.start(echo, channel, "slave", total, events, done)
        ready = get(events, 20, "the echoing slave opens", "ready")
        assert ready["role"] == "slave"
        assert pair.wait_for_remote(10) and pair.remote_pid == slave.pid

        # write / read: objects, in order
        for obj in objects:
            pair.write(obj)
        assert [pair.read(timeout=10.0) for _ in objects] == objects
        # one at a time, interleaved, and try_read polling
        for i in range(rounds):
            pair.send(pair_item(serialization, i), timeout=5.0)
            if i % 2:
                assert pair.read(timeout=10.0) == pair_item(serialization, i)
            else:  # busy-polling with try_read, as ESHM users do
                box: List[Any] = []
                wait_until(lambda: box.append(pair.try_read()) or box[-1] is not None, 10,
                           f"try_read returns echo {i}", interval=0)
                assert box[-1] == pair_item(serialization, i)
        assert pair.try_read() is None
        # bytes: send_bytes / recv_bytes / recv_into (bytes cross unchanged whatever serialization)
        assert pair.send_bytes(b"raw one") is True
        assert pair.send_bytes(bytearray(b"raw two")) is True
        assert pair.recv_bytes(timeout=10.0) == b"raw one"
        buf = bytearray(32)
        assert pair.recv_into(buf, timeout=10.0) == 7 and bytes(buf[:7]) == b"raw two"
        pair.send_bytes(memoryview(b"0123456789"))
        small = bytearray(4)
        with pytest.raises(SHMValueError, match="kept"):
            pair.recv_into(small, timeout=10.0)  # too small: the message is kept for the next receive
        assert pair.read_bytes(timeout=10.0) == b"0123456789"
        pair.send_bytes(b"")
        assert pair.read_bytes(timeout=10.0) == b""
        # batches
        batch = [b"batch %d" % i for i in range(6)]
        assert pair.send_many_bytes(batch) == 6
        got_batch: List[bytes] = []
        while len(got_batch) < 6:
            more = pair.recv_many_bytes(16, timeout=10.0)
            assert more, f"the batch stopped after {got_batch}"
            got_batch += more
        assert got_batch == batch
        # empty: try_read None, read raises SHMTimeoutError, recv returns None
        assert pair.try_read() is None
        assert pair.recv(timeout=0.05) is None
        with pytest.raises(SHMTimeoutError, match="no message from the slave"):
            pair.read(timeout=0.05)
        with pytest.raises(SHMTimeoutError):
            pair.read_bytes(timeout=0)
        assert get(events, 20, "the slave's last echo", "echoed")["echoed"] == total
        done.set()
        result = get(events, 20, "the slave's report", "result")
        assert result["echoed"] == total
        stats = pair.stats()
        assert stats["m2s_write_count"] == total and stats["s2m_read_count"] == total
        assert stats["drops"] == 0 and stats["reconnections"] == 0
        assert join(slave, 20, "the slave") == 0
    assert pair.closed


def pair_item(serialization: str, i: int) -> Any:
    return b"item %d" % i if serialization == "raw" else {"i": i, "sq": [i * i]}


def test_context_manager_close_twice_and_use_after_close(channel: str) -> None:
    with Pair(channel, "master") as pair:
        assert isinstance(pair, Pair) and channel in repr(pair) and "role=master" in repr(pair)
    assert pair.closed and "closed" in repr(pair)
    pair.close()  # twice is fine
    for call in (lambda: pair.write("x"), lambda: pair.read(timeout=0), lambda: pair.try_read(),
                 lambda: pair.send_bytes(b"x"), lambda: pair.recv_bytes(timeout=0), pair.stats,
                 pair.is_remote_alive, lambda: pair.send_many_bytes([b"x"]),
                 lambda: pair.recv_many_bytes(4, timeout=0), lambda: pair.remote_pid):
        with pytest.raises(SHMClosedError, match="closed"):
            call()


def test_message_larger_than_slot_size_and_full_queue(channel: str) -> None:
    with Pair(channel, "master", num_slots=4, slot_size=64, serialization="raw") as pair:
        with pytest.raises(SHMMessageSizeError, match="slot_size is 64"):
            pair.send_bytes(b"x" * 65)
        with pytest.raises(SHMMessageSizeError):
            pair.write(b"y" * 1000)
        pair.send_bytes(b"x" * 64)  # exactly slot_size fits
        for i in range(3):
            pair.send_bytes(b"%d" % i, block=False)
        with pytest.raises(SHMBufferFullError, match="the queue to the slave is full"):
            pair.send_bytes(b"no room", block=False)
        with pytest.raises(SHMTimeoutError, match="the queue to the slave is full"):
            pair.write(b"no room", timeout=0.05)
        with pytest.raises(SHMBufferFullError) as info:
            pair.send_many_bytes([b"a", b"b"], block=False)
        assert getattr(info.value, "sent", 0) == 0
        # What was queued is there, exactly once, for the slave.
        with Pair(channel, "slave", serialization="raw") as slave:
            assert [slave.read_bytes(timeout=5.0) for _ in range(4)] == [b"x" * 64, b"0", b"1", b"2"]
            assert slave.try_read() is None


@pytest.mark.timeout(60)
def test_recv_many_bytes_as_the_first_receive(channel: str) -> None:
    """recv_many_bytes works before any single receive (the slave's first call here). Today it fails:
    Receiver.recv_many_bytes sizes its buffer as self._cap * max_messages, and Pair._cap stays 0
    until a single receive refreshed it, so C answers SHMC_ETRUNC ("receive buffer smaller than the
    message")."""
    events, stop = CTX.Queue(), CTX.Event()
    with Children() as kids, Pair(channel, "slave", serialization="raw") as slave:
        master = kids.start(holder, channel, "master", events, stop, send=[b"m%d" % i for i in range(5)])
        get(events, 20, "the master opens and writes", "ready")
        try:
            assert slave.wait_for_remote(10)  # attached to the master's queue, whose messages wait
            got = slave.recv_many_bytes(16, timeout=10.0)
            while len(got) < 5:
                more = slave.recv_many_bytes(16, timeout=10.0)
                assert more, got
                got += more
            assert got == [b"m%d" % i for i in range(5)]
        finally:
            stop.set()
            join(master, 20, "the master")


def test_recv_packed_and_recv_into_from_a_master_process(channel: str) -> None:
    """The slave's first receive is a recv_packed (the master's queue is found by the call itself);
    then recv_into with one copy, where a buffer too small keeps the message; then the rest packed.
    And the other way: send_packed from this side arrives as ordinary messages at the remote."""
    events, stop = CTX.Queue(), CTX.Event()
    sent = [bytes([i]) * (10 + i) for i in range(6)]
    with Children() as kids, Pair(channel, "slave", serialization="raw") as slave:
        master = kids.start(holder, channel, "master", events, stop, send=sent)
        get(events, 20, "the master opens and writes", "ready")
        try:
            assert slave.wait_for_remote(10)
            buffer, sizes = bytearray(64), array("Q", bytes(8 * 2))
            assert slave.recv_packed(buffer, sizes, timeout=10.0) == 2
            assert list(sizes) == [10, 11] and bytes(buffer[:21]) == sent[0] + sent[1]
            with pytest.raises(SHMValueError, match="12 bytes but the buffer only 5"):
                slave.recv_into(np.zeros(5, dtype=np.uint8), timeout=10.0)
            frame = np.zeros(64, dtype=np.uint8)
            assert slave.recv_into(frame, timeout=10.0) == 12 and frame[:12].tobytes() == sent[2]
            got: List[bytes] = []
            rest, lens = np.zeros(256, dtype=np.uint8), np.zeros(8, dtype=np.uint64)
            while len(got) < 3:
                n = slave.recv_packed(rest, lens, timeout=10.0)
                assert n, got
                offsets = np.concatenate([[0], np.cumsum(lens[:n])]).astype(int)
                got += [rest[offsets[i]:offsets[i + 1]].tobytes() for i in range(n)]
            assert got == sent[3:]
            assert slave.recv_packed(rest, lens, timeout=0) == 0
            assert slave.stats()["m2s_read_count"] == 6
        finally:
            stop.set()
            join(master, 20, "the master")


def test_each_side_has_its_own_slot_size(channel: str) -> None:
    """num_slots/slot_size are those of the queue a side writes: a slave with large slots sends a
    message larger than the master's own slots, and the master receives it."""
    with Pair(channel, "master", slot_size=64, serialization="raw") as master, \
            Pair(channel, "slave", slot_size=8192, serialization="raw") as slave:
        big = bytes(range(256)) * 20
        slave.send_bytes(big)
        assert master.read_bytes(timeout=5.0) == big
        with pytest.raises(SHMMessageSizeError):
            master.send_bytes(big)


@pytest.mark.timeout(60)
def test_slave_started_before_master(channel: str) -> None:
    events, done = CTX.Queue(), CTX.Event()
    with Children() as kids:
        slave = kids.start(early_slave, channel, 5, 3, events, done)
        ready = get(events, 20, "the slave opens and queues its messages", "ready")
        assert ready["before"] == {"alive": False, "state": "none"}
        with Pair(channel) as master:  # auto: the master role is free
            assert master.role == "master"
            assert [master.read(timeout=10.0) for _ in range(5)] == [("s2m", i) for i in range(5)]
            for i in range(3):
                master.write(("m2s", i))
            result = get(events, 20, "the slave reads the master's messages", "result")
            assert result["got"] == [("m2s", i) for i in range(3)]
            assert result["stats"]["master_pid"] == os.getpid()
            assert result["stats"]["reconnections"] == 0  # the first master is no reconnection
            assert master.remote_pid == slave.pid
            assert master.try_read() is None
            done.set()
            assert join(slave, 20, "the slave") == 0


# ---- liveness -------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_remote_alive_dead_and_stale_under_sigstop(channel: str) -> None:
    events, stop = CTX.Queue(), CTX.Event()
    with Children() as kids, Pair(channel, "master", stale_threshold=0.2, reconnect_wait=60) as master:
        assert master.is_remote_alive() is False
        assert master.stats()["remote_state"] == "none" and master.remote_pid == 0
        assert master.wait_for_remote(0.05) is False
        slave = kids.start(holder, channel, "slave", events, stop)
        get(events, 20, "the slave opens", "ready")
        assert master.wait_for_remote(10) is True
        assert master.is_remote_alive() is True and master.remote_pid == slave.pid
        assert master.stats()["remote_state"] == "connected"

        os.kill(slave.pid, signal.SIGSTOP)  # alive, but its heartbeat stops
        try:
            wait_until(lambda: not master.is_remote_alive() and master.stats()["remote_state"] == "stale",
                       10, "the stopped slave is seen stale")
            stats = master.stats()
            assert stats["slave_alive"] is False and stats["slave_heartbeat"] >= 0.2
        finally:
            os.kill(slave.pid, signal.SIGCONT)
        wait_until(master.is_remote_alive, 10, "the resumed slave is alive again")
        assert master.stats()["remote_state"] == "connected"
        assert master.stats()["reconnections"] == 0  # the same process: no reconnection

        kill(slave)
        wait_until(lambda: not master.is_remote_alive() and master.stats()["remote_state"] == "gone",
                   10, "the killed slave is seen gone")
        assert master.stats()["slave_alive"] is False
    unlink_role(channel, "slave")


@pytest.mark.timeout(60)
def test_without_heartbeat_thread_idle_is_stale_and_calling_is_alive(channel: str) -> None:
    events, stop, busy = CTX.Queue(), CTX.Event(), CTX.Event()
    threshold = 1.0  # generous: the busy slave beats every ~5 ms, so only a stall of 1 s could fail it
    with Children() as kids, Pair(channel, "master", stale_threshold=threshold, reconnect_wait=60) as master:
        slave = kids.start(holder, channel, "slave", events, stop, busy=busy, use_threads=False)
        get(events, 20, "the slave opens", "ready")
        wait_until(lambda: master.stats()["remote_state"] == "stale", 20, "the idle slave is seen stale")
        assert master.is_remote_alive() is False
        busy.set()
        wait_until(master.is_remote_alive, 10, "the calling slave is alive")
        # It stays alive while it keeps calling: observed over twice the threshold.
        seen = []
        assert master.stats()["slave_heartbeat"] is not None
        end = time.monotonic() + 2 * threshold
        while time.monotonic() < end:
            seen.append(master.is_remote_alive())
            time.sleep(0.02)
        assert all(seen), f"the busy slave was seen stale {seen.count(False)} times out of {len(seen)}"
        stop.set()
        assert join(slave, 20, "the slave") == 0
        wait_until(lambda: master.stats()["remote_state"] == "gone", 10, "the closed slave is seen gone")


# ---- statistics -----------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_stats_pids_liveness_heartbeats_and_counts_per_direction(channel: str) -> None:
    count = 120
    events, done = CTX.Queue(), CTX.Event()
    with Children() as kids, Pair(channel, "master") as master:
        stats = master.stats()
        assert stats["role"] == "master" and stats["name"] == channel
        assert stats["master_pid"] == os.getpid() and stats["slave_pid"] == 0
        assert stats["master_alive"] is True and stats["slave_alive"] is False
        assert stats["master_heartbeat"] is not None and stats["slave_heartbeat"] is None
        assert stats["remote_state"] == "none" and stats["remote_gone_for"] == 0
        assert master.get_stats.__func__ is Pair.stats  # type: ignore[attr-defined]

        slave = kids.start(echo, channel, "slave", count, events, done)
        get(events, 20, "the slave opens", "ready")
        for i in range(count):
            master.write(i)
            assert master.read(timeout=10.0) == i
        # At rest (the slave's last write returned): every count is final. (In flight, a write count
        # may lag: see test_the_remote_never_sees_fewer_writes_than_it_read.)
        get(events, 20, "the slave's last echo", "echoed")
        stats = master.stats()
        assert stats["master_pid"] == os.getpid() and stats["slave_pid"] == slave.pid
        assert stats["master_alive"] is True and stats["slave_alive"] is True
        assert stats["master_heartbeat"] >= 0 and stats["slave_heartbeat"] >= 0
        assert stats["m2s_write_count"] == count and stats["m2s_read_count"] == count
        assert stats["s2m_write_count"] == count and stats["s2m_read_count"] == count
        assert stats["drops"] == 0 and stats["reconnections"] == 0 and stats["reconnect_attempts"] == 0
        assert stats["remote_state"] == "connected"
        done.set()
        theirs = get(events, 20, "the slave's stats", "result")["stats"]  # its view, at rest
        assert theirs["role"] == "slave"
        assert theirs["master_pid"] == os.getpid() and theirs["slave_pid"] == slave.pid
        assert theirs["master_alive"] is True and theirs["slave_alive"] is True
        assert theirs["master_heartbeat"] is not None and theirs["slave_heartbeat"] is not None
        assert theirs["m2s_write_count"] == count and theirs["m2s_read_count"] == count
        assert theirs["s2m_write_count"] == count and theirs["s2m_read_count"] == count
        assert theirs["drops"] == 0 and theirs["reconnections"] == 0
        assert join(slave, 20, "the slave") == 0


# ---- SIGKILL and restart --------------------------------------------------------------------------

SIZE = 64


@pytest.mark.timeout(90)
def test_master_killed_mid_stream_then_a_new_master(channel: str, caplog: pytest.LogCaptureFixture) -> None:
    """The slave (this process, on_timeout) reads a numbered stream; the master is SIGKILLed while it
    writes; a new master comes. The slave gets every message the dead master fully wrote (its count of
    returned writes, plus at most the one whose write had committed when it died), whole and in order,
    none twice, then all of the new master's, and says it reconnected."""
    # The killed child has a queue and an event of its own (see test_auto_roles_first_master_then_slave_then_refused).
    events, linger, first_events, first_linger = CTX.Queue(), CTX.Event(), CTX.Queue(), CTX.Event()
    progress = [CTX.Value("q", 0, lock=False), CTX.Value("q", 0, lock=False)]
    kill_after, new_count = 300, 100
    caplog.set_level(logging.INFO, logger="shmcomm")
    with Children() as kids, Pair(channel, "slave", serialization="raw", reconnect_wait=30) as slave:
        first = kids.start(numbered_writer, channel, "master", 0, SIZE, progress[0], first_events, first_linger)
        get(first_events, 20, "the first master opens", "ready")
        # Seen alive once before it dies (a remote only ever read from is not counted: see
        # test_a_restarted_master_the_slave_only_read_from_is_a_reconnection).
        assert slave.wait_for_remote(10)
        seqs: Dict[int, List[int]] = {0: [], 1: []}
        written_at_death = -1
        second = None
        while len(seqs[1]) < new_count:
            payload = slave.read_bytes(timeout=20.0)
            seq = check_pattern(payload)
            assert seq is not None and len(payload) == SIZE, f"torn message: {payload[:24].hex()}"
            seqs[seq >> 32].append(seq & 0xFFFFFFFF)
            if second is None and len(seqs[0]) == kill_after:
                kill(first)  # it is writing as fast as we read: killed mid-stream
                written_at_death = progress[0].value
                assert slave.stats()["reconnections"] == 0
                second = kids.start(numbered_writer, channel, "master", 1, SIZE, progress[1], events, linger,
                                    count=new_count)
                assert get(events, 20, "the new master opens", "ready")["pid"] == second.pid
        assert get(events, 20, "the new master's report", "result")["written"] == new_count
        old = seqs[0]
        assert old == list(range(len(old))), "the dead master's messages are not 0, 1, 2, ... in order"
        assert written_at_death <= len(old) <= written_at_death + 1, (written_at_death, len(old))
        assert seqs[1] == list(range(new_count))
        stats = slave.stats()
        assert stats["reconnections"] == 1 and stats["remote_state"] == "connected", (stats, first.pid, second.pid)
        assert stats["master_pid"] == second.pid and slave.remote_pid == second.pid
        assert stats["drops"] <= 1  # a message the master died while writing is dropped, never torn
        assert stats["m2s_write_count"] == new_count  # counted since the current master started
        assert slave.try_read() is None
        linger.set()
        assert join(second, 20, "the new master") == 0
    log = messages(caplog)
    assert any("is back: reconnected to the new process" in m and f"pid {second.pid}" in m for m in log), log


@pytest.mark.timeout(90)
def test_slave_killed_mid_stream_then_a_new_slave(channel: str, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The master (this process) writes a numbered stream from a thread; the slave records each message
    it read in a file and is SIGKILLed mid-stream; a new slave reads the rest. Nothing is lost but at
    most the one message the dead slave had taken and not yet recorded; nothing comes twice.

    The writer holds the last part of the stream back until the first slave is dead: a writer fast
    enough to finish before the kill would leave the new slave nothing to read."""
    total, kill_after, held_back = 800, 200, 400
    events, linger, first_events, first_linger = CTX.Queue(), CTX.Event(), CTX.Queue(), CTX.Event()
    files = [tmp_path / "first", tmp_path / "second"]
    caplog.set_level(logging.INFO, logger="shmcomm")
    with Children() as kids, Pair(channel, "master", serialization="raw", num_slots=16, slot_size=SIZE,
                                  reconnect_wait=30) as master:
        first = kids.start(recording_reader, channel, "slave", SIZE, total - 1, str(files[0]), first_events,
                           first_linger)
        get(first_events, 20, "the first slave opens", "ready")
        assert master.wait_for_remote(10)
        errors: List[BaseException] = []
        killed = threading.Event()

        def write_all() -> None:
            try:
                for seq in range(total):
                    if seq == total - held_back and not killed.wait(30):
                        raise AssertionError("the first slave was never killed")
                    master.send_bytes(pattern_payload(seq, SIZE), timeout=30.0)
            except BaseException as exc:  # reported below
                errors.append(exc)

        writer = threading.Thread(target=write_all, daemon=True)
        writer.start()
        try:
            wait_until(lambda: len(seqs_of(files[0])) >= kill_after, 20, f"the slave read {kill_after}")
            kill(first)
            killed.set()
            recorded = seqs_of(files[0])
            second = kids.start(recording_reader, channel, "slave", SIZE, total - 1, str(files[1]), events,
                                linger)
            get(events, 20, "the new slave opens", "ready")
            result = get(events, 30, "the new slave reads to the end", "result")
        finally:
            writer.join(40)
        assert not writer.is_alive() and errors == [], errors
        # The handle is ours again (the writer thread is done).
        after = seqs_of(files[1])
        assert recorded == list(range(len(recorded))), "the dead slave's reads are not 0, 1, 2, ..."
        assert after and after == list(range(after[0], total)), "the new slave's reads are not contiguous"
        lost = after[0] - len(recorded)
        assert lost in (0, 1), f"{lost} messages lost (at most the one in the dead slave's hands)"
        stats = master.stats()
        assert stats["reconnections"] == 1 and master.remote_pid == second.pid
        assert stats["slave_pid"] == second.pid and stats["remote_state"] == "connected"
        assert stats["m2s_write_count"] == total
        assert stats["m2s_read_count"] == len(after)  # counted since the current slave started
        assert result["stats"]["m2s_read_count"] == len(after) and result["stats"]["drops"] == 0
        linger.set()
        assert join(second, 20, "the new slave") == 0
    log = messages(caplog)
    assert any("is back: reconnected to the new process" in m and f"pid {second.pid}" in m for m in log), log


@pytest.mark.timeout(60)
def test_a_restarted_master_the_slave_only_read_from_is_a_reconnection(
        channel: str, caplog: pytest.LogCaptureFixture) -> None:
    """The slave only reads (no stats, no is_remote_alive, no write) while the first master lives: the
    new master is still a reconnection, and the log says so. (The C side notes a remote only when it
    looks at it on a timer or on request, not when it reads its queue; a remote only read from is
    never 'seen', so its successor is taken for the first one.)"""
    caplog.set_level(logging.INFO, logger="shmcomm")
    events, stops, first_events = CTX.Queue(), [CTX.Event(), CTX.Event()], CTX.Queue()
    with Children() as kids, Pair(channel, "slave", serialization="raw", reconnect_wait=30) as slave:
        first = kids.start(holder, channel, "master", first_events, stops[0], send=[b"a0", b"a1"])
        get(first_events, 20, "the first master opens and writes", "ready")
        assert [slave.read_bytes(timeout=10.0) for _ in range(2)] == [b"a0", b"a1"]
        kill(first)
        second = kids.start(holder, channel, "master", events, stops[1], send=[b"b0"])
        try:
            get(events, 20, "the new master opens and writes", "ready")
            assert slave.read_bytes(timeout=10.0) == b"b0"
            stats = slave.stats()
            assert stats["master_pid"] == second.pid
            assert stats["reconnections"] == 1, (
                f"a new master (pid {second.pid}) after the first (pid {first.pid}) is not counted: {stats}")
            log = messages(caplog)
            assert any("reconnected" in m for m in log), log
        finally:
            stops[1].set()
            assert join(second, 20, "the new master") == 0


@pytest.mark.timeout(60)
def test_immediately_reports_a_remote_that_was_only_read_from(channel: str) -> None:
    """The master's only call while the slave lives is one read that returns its message; the slave
    is then SIGKILLed. With "immediately" the next read must raise SHMPeerDeadError (the remote had
    been there: it wrote to us), not time out."""
    events, stop = CTX.Queue(), CTX.Event()
    with Children() as kids, Pair(channel, "master", serialization="raw",
                                  disconnect_behavior="immediately") as master:
        slave = kids.start(holder, channel, "slave", events, stop, send=[b"only"])
        get(events, 20, "the slave opens and writes", "ready")
        assert master.read_bytes(timeout=10.0) == b"only"
        kill(slave)
        try:
            with pytest.raises(SHMPeerDeadError):
                master.read(timeout=3.0)
            stats = master.stats()
            assert stats["slave_pid"] == slave.pid and stats["remote_state"] == "gone", stats
        finally:
            unlink_role(channel, "slave")


# ---- disconnect behaviours ------------------------------------------------------------------------

def start_slave_and_kill(kids: Children, channel: str, master: Pair, send: List[bytes]) -> Any:
    """A slave process queues ``send`` for the master, is seen alive, then is SIGKILLed."""
    events, stop = CTX.Queue(), CTX.Event()
    slave = kids.start(holder, channel, "slave", events, stop, send=send)
    get(events, 20, "the slave opens", "ready")
    assert master.wait_for_remote(10)
    kill(slave)
    return slave


@pytest.mark.timeout(60)
def test_immediately_raises_peer_dead_after_queued_messages(channel: str) -> None:
    with Children() as kids, Pair(channel, "master", serialization="raw",
                                  disconnect_behavior="immediately") as master:
        start_slave_and_kill(kids, channel, master, [b"a", b"b", b"c"])
        # What the dead slave queued is read first ...
        assert [master.read_bytes(timeout=10.0) for _ in range(3)] == [b"a", b"b", b"c"]
        # ... then reads fail at once (long before this timeout would end) and so do writes.
        with pytest.raises(SHMPeerDeadError, match=r"cannot read from pair .*the slave \(pid \d+\) is gone"):
            master.read(timeout=30.0)
        with pytest.raises(SHMPeerDeadError, match="cannot write to pair"):
            master.write(b"x", timeout=30.0)
        with pytest.raises(SHMPeerDeadError):
            master.send_bytes(b"x", block=False)
        assert master.stats()["remote_state"] == "gone"
    unlink_role(channel, "slave")


@pytest.mark.timeout(60)
def test_on_timeout_gives_up_after_reconnect_wait_then_picks_up_a_restart(channel: str) -> None:
    with Children() as kids, Pair(channel, "master", serialization="raw", reconnect_wait=0.3,
                                  max_reconnect_attempts=0) as master:
        assert master.disconnect_behavior is DisconnectBehavior.ON_TIMEOUT
        start_slave_and_kill(kids, channel, master, [b"queued"])
        assert master.read_bytes(timeout=10.0) == b"queued"
        with pytest.raises(SHMPeerDeadError, match="has been gone for .* and did not come back"):
            master.read(timeout=30.0)
        assert master.stats()["remote_state"] == "gave_up"
        with pytest.raises(SHMPeerDeadError, match="cannot write to pair"):
            master.write(b"x", timeout=30.0)
        # A slave that comes back later is still picked up.
        events, stop = CTX.Queue(), CTX.Event()
        again = kids.start(holder, channel, "slave", events, stop, send=[b"back"])
        get(events, 20, "the new slave opens", "ready")
        assert master.read_bytes(timeout=10.0) == b"back"
        assert master.is_remote_alive() and master.remote_pid == again.pid
        stats = master.stats()
        assert stats["reconnections"] == 1 and stats["remote_state"] == "connected"
        assert stats["reconnect_attempts"] == 0 and stats["remote_gone_for"] == 0
        stop.set()
        assert join(again, 20, "the new slave") == 0


@pytest.mark.timeout(60)
def test_on_timeout_gives_up_after_max_reconnect_attempts(channel: str) -> None:
    with Children() as kids, Pair(channel, "master", reconnect_wait=60, reconnect_retry_interval=0.02,
                                  max_reconnect_attempts=3) as master:
        start_slave_and_kill(kids, channel, master, [])
        with pytest.raises(SHMPeerDeadError, match=r"did not come back after \d+ attempts") as info:
            master.read(timeout=30.0)  # gives up after 3 attempts (~0.06 s), long before 60 s
        stats = master.stats()
        assert stats["remote_state"] == "gave_up" and stats["reconnect_attempts"] >= 3
        assert stats["remote_gone_for"] < 60
        assert "restart it" in str(info.value)
    unlink_role(channel, "slave")


@pytest.mark.timeout(60)
def test_never_times_out_and_queues_writes_for_the_next_slave(channel: str) -> None:
    with Children() as kids, Pair(channel, "master", disconnect_behavior="never", reconnect_wait=0.05,
                                  max_reconnect_attempts=1, num_slots=4) as master:
        start_slave_and_kill(kids, channel, master, [])
        # Long past reconnect_wait and max_reconnect_attempts: "never" does not give up.
        wait_until(lambda: master.stats()["remote_gone_for"] > 0.3, 10, "the slave has been gone a while")
        assert master.stats()["remote_state"] == "gone"
        with pytest.raises(SHMTimeoutError):
            master.read(timeout=0.1)
        assert master.try_read() is None
        for i in range(4):
            master.write(("queued", i), timeout=1.0)
        with pytest.raises(SHMBufferFullError):
            master.send(("no room", 4), block=False)
        with pytest.raises(SHMTimeoutError):
            master.write(("no room", 4), timeout=0.1)
        # A new slave reads what was queued meanwhile.
        events, done = CTX.Queue(), CTX.Event()
        new = kids.start(echo, channel, "slave", 4, events, done)
        get(events, 20, "the new slave opens", "ready")
        assert [master.read(timeout=10.0) for _ in range(4)] == [("queued", i) for i in range(4)]
        get(events, 20, "the new slave's last echo", "echoed")
        assert master.stats()["reconnections"] == 1 and master.remote_pid == new.pid
        done.set()
        assert get(events, 20, "the new slave's report", "result")["stats"]["m2s_read_count"] == 4
        assert join(new, 20, "the new slave") == 0


# ---- C and Python on one pair ---------------------------------------------------------------------

C_ECHO = r"""
#include "shmcomm.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* usage: echo NAME master|slave COUNT: answers COUNT messages m with "echo: " m, prints its stats */
int main(int argc, char **argv)
{
    if (argc != 4) return 1;
    shmc_pair_options_t o;
    shmc_pair_options_init(&o);
    o.role = strcmp(argv[2], "master") == 0 ? SHMC_PAIR_MASTER : SHMC_PAIR_SLAVE;
    shmc_pair_t *p = NULL;
    int rc = shmc_pair_open(argv[1], &o, &p);
    if (rc) {
        fprintf(stderr, "open: %s\n", shmc_strerror(rc));
        return 2;
    }
    printf("ready role=%d\n", shmc_pair_role(p));
    fflush(stdout);
    long count = atol(argv[3]);
    char in[4096], out[4200];
    long behind = 0;
    for (long i = 0; i < count; i++) {
        size_t len = 0;
        rc = shmc_pair_read(p, in, sizeof in, &len, 20000000000ll);
        if (rc) {
            fprintf(stderr, "read %ld: %s\n", i, shmc_strerror(rc));
            return 3;
        }
        /* The remote's write count must cover every message we read (it counts them). */
        shmc_pair_stats_t now;
        memset(&now, 0, sizeof now);
        now.size = sizeof now;
        if (shmc_pair_stats(p, &now) == 0) {
            uint64_t writes = o.role == SHMC_PAIR_MASTER ? now.s2m_write_count : now.m2s_write_count;
            uint64_t reads = o.role == SHMC_PAIR_MASTER ? now.s2m_read_count : now.m2s_read_count;
            behind += writes < reads;
        }
        memcpy(out, "echo: ", 6);
        memcpy(out + 6, in, len);
        rc = shmc_pair_write(p, out, len + 6, 20000000000ll);
        if (rc) {
            fprintf(stderr, "write %ld: %s\n", i, shmc_strerror(rc));
            return 4;
        }
    }
    shmc_pair_stats_t s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    rc = shmc_pair_stats(p, &s);
    printf("done rc=%d master_pid=%d slave_pid=%d m2s_write=%llu m2s_read=%llu s2m_write=%llu "
           "s2m_read=%llu drops=%llu reconnections=%llu behind=%ld\n", rc, s.master_pid, s.slave_pid,
           (unsigned long long)s.m2s_write_count, (unsigned long long)s.m2s_read_count,
           (unsigned long long)s.s2m_write_count, (unsigned long long)s.s2m_read_count,
           (unsigned long long)s.drops, (unsigned long long)s.reconnections, behind);
    shmc_pair_close(p);
    return 0;
}
"""


def library_path() -> Path:
    """The libshm this Python process loaded: SHMCOMM_LIBRARY, or the one inside the package."""
    override = os.environ.get("SHMCOMM_LIBRARY")
    if override:
        return Path(override).resolve()
    package = Path(shmcomm.__file__).resolve().parent
    for name in ("libshm.so", "libshm.so.0", "libshm.dylib"):
        if (package / name).exists():
            return package / name
    pytest.fail(f"no libshm found in {package} and SHMCOMM_LIBRARY is not set", pytrace=False)


@pytest.fixture(scope="module")
def c_echo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C echo program, compiled against include/shmcomm.h and the libshm Python uses."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc or sys.platform == "win32":
        pytest.fail("no C compiler (cc, gcc or clang) on PATH: the C/Python PAIR tests need one",
                    pytrace=False)
    work = tmp_path_factory.mktemp("pair_c")
    source = work / "echo.c"
    source.write_text(C_ECHO)
    lib = library_path()
    # Link against a private copy of the name, whatever the soname is, and find it there at run time.
    libdir = work / "lib"
    libdir.mkdir()
    for alias in ("libshm.so", "libshm.so.0"):
        (libdir / alias).symlink_to(lib)
    exe = work / "echo"
    proc = subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(REPO / "include"),
                           str(source), "-L", str(libdir), "-lshm", f"-Wl,-rpath,{libdir}", "-o", str(exe)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"compiling the C echo failed:\n{proc.stdout}{proc.stderr}"
    return exe


def exchange_with_c(pair: Pair, proc: subprocess.Popen, count: int) -> None:
    for i in range(count):
        message = b"message %d from python" % i
        pair.send_bytes(message, timeout=10.0)
        reply = pair.recv_bytes(timeout=10.0)
        assert reply is not None, f"no echo of message {i}; the C side: {proc.poll()}"
        assert reply == b"echo: " + message


@pytest.mark.timeout(60)
@pytest.mark.parametrize("c_role", ["master", "slave"], ids=["c_master_python_slave", "python_master_c_slave"])
def test_c_and_python_over_one_pair(channel: str, c_echo: Path, c_role: str) -> None:
    count = 300
    py_role = "slave" if c_role == "master" else "master"
    with Pair(channel, py_role, serialization="raw") as pair:
        proc = subprocess.Popen([str(c_echo), channel, c_role, str(count)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=child_env())
        try:
            # Seen alive before the exchange: a fast exchange alone may never be observed (see
            # test_immediately_reports_a_remote_that_was_only_read_from).
            assert pair.wait_for_remote(10), f"the C side did not come: {proc.poll()}"
            exchange_with_c(pair, proc, count)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        assert proc.returncode == 0, f"the C side failed (exit {proc.returncode}): {err}"
        lines = out.splitlines()
        assert lines[0] == f"ready role={0 if c_role == 'master' else 1}"
        fields = dict(kv.split("=") for kv in lines[1].split()[1:])
        me, it = os.getpid(), proc.pid
        assert fields["rc"] == "0"
        assert int(fields["master_pid"]) == (it if c_role == "master" else me)
        assert int(fields["slave_pid"]) == (me if c_role == "master" else it)
        # C read and wrote `count` each way; its own reads are counted exactly.
        c_reads = "m2s_read" if c_role == "slave" else "s2m_read"
        c_writes = "s2m_write" if c_role == "slave" else "m2s_write"
        py_writes = "m2s_write" if c_role == "slave" else "s2m_write"
        assert int(fields[c_reads]) == count and int(fields[c_writes]) == count
        assert fields["drops"] == "0" and fields["reconnections"] == "0"
        stats = pair.stats()
        assert stats[f"{c_role}_pid"] == it and stats["reconnections"] == 0 and stats["drops"] == 0
        assert stats[py_writes + "_count"] == count and stats[c_writes + "_count"] == count
        assert stats[c_reads + "_count"] == count
        # The C side closed: its queue is drained and it is seen gone, not stale.
        wait_until(lambda: pair.stats()["remote_state"] == "gone", 10, "the closed C side is seen gone")
        assert pair.try_read() is None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("c_role", ["master", "slave"], ids=["c_master_python_slave", "python_master_c_slave"])
def test_the_remote_never_sees_fewer_writes_than_it_read(channel: str, c_echo: Path, c_role: str) -> None:
    """stats(): a side that has read message N sees the remote's write count >= N. The C echo checks
    this after every read of a lockstep exchange (the moment the writer's wake-up made the message
    readable) and counts the reads where the remote's count was still behind."""
    count = 2000
    with Pair(channel, "slave" if c_role == "master" else "master", serialization="raw") as pair:
        proc = subprocess.Popen([str(c_echo), channel, c_role, str(count)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=child_env())
        try:
            exchange_with_c(pair, proc, count)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        assert proc.returncode == 0, f"the C side failed (exit {proc.returncode}): {err}"
        fields = dict(kv.split("=") for kv in out.splitlines()[1].split()[1:])
        py_writes = "m2s_write" if c_role == "slave" else "s2m_write"
        assert fields["behind"] == "0", (
            f"{fields['behind']} of {count} reads saw the remote's write count behind the messages read "
            f"(final: {py_writes}={fields[py_writes]}); the writer stores its count after publishing "
            "and waking the reader (libshm/primitives/writer.c shmi_writer_publish)")
        assert int(fields[py_writes]) == count
        wait_until(lambda: pair.stats()["remote_state"] == "gone", 10, "the closed C side is seen gone")


@pytest.mark.timeout(60)
def test_a_remote_that_closes_is_never_taken_for_a_new_process(channel: str) -> None:
    """One slave process opens and closes its side 500 times while the master watches (is_remote_alive,
    stats). It is the same process throughout: the master must never count a reconnection, and must
    never report slave pid 0 once it has seen the slave. (pair.c live_writer reads the writer entry's
    owner twice: once in shmi_registry_live_role, once for the pid; a writer leaving in between is
    seen as a live writer with pid 0 and start time 0: a 'new process'.)"""
    events = CTX.Queue()
    with Children() as kids, Pair(channel, "master", reconnect_wait=60) as master:
        slave = kids.start(flapping_slave, channel, 500, events)
        assert get(events, 20, "the slave starts", "ready")["pid"] == slave.pid
        alive = zero_after_seen = 0
        seen = 0
        while events.empty():
            alive += master.is_remote_alive()
            pid = master.stats()["slave_pid"]
            assert pid in (0, slave.pid), f"slave pid {pid}: neither none nor the slave's"
            seen = seen or pid
            zero_after_seen += seen and pid == 0
        get(events, 20, "the slave's end", "result")
        assert join(slave, 20, "the slave") == 0
        stats = master.stats()
        assert alive > 0, "the master never saw the slave alive"
        assert zero_after_seen == 0, (f"the master reported slave pid 0 {zero_after_seen} times after seeing "
                                      f"pid {slave.pid}; reconnections={stats['reconnections']}")
        assert stats["reconnections"] == 0, f"{stats['reconnections']} reconnections to the same process"
