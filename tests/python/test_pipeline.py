"""PUSH/PULL (shmcomm.Pusher / shmcomm.Puller): the reference API, a full queue, batches, and real
processes: several pushers and pullers moving 200,000 items (each exactly once), pullers and pushers
SIGKILLed mid-stream, a restarted pusher, a puller started before its pusher, and bad input.

Every step across processes is synchronised through queues, events or files, and every wait has a
deadline."""

from __future__ import annotations

import inspect
import os
import pickle
import signal
import threading
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

import shmcomm
from procs import (CTX, PAIR, SEQ, STOP, Children, check_pattern, get, join, pair_puller, pair_pusher,
                   pattern_puller, pattern_pusher, read_across_takeover, reporting_puller, stream_pusher,
                   wait_until, waiting_puller)
from shmcomm import (Puller, Pusher, SHMBufferFullError, SHMClosedError, SHMConnectionError,
                     SHMError, SHMMessageSizeError, SHMNameError, SHMSerializationError,
                     SHMTimeoutError, SHMTypeError, SHMValueError)


def defaults(func: Any) -> Dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(func).parameters.items()
            if p.default is not inspect.Parameter.empty}


# ---- the reference API ----------------------------------------------------------------------------

def test_reference_signatures_and_defaults() -> None:
    assert list(inspect.signature(Pusher).parameters)[:4] == ["name", "num_slots", "slot_size",
                                                              "serialization"]
    assert defaults(Pusher).items() >= {"num_slots": 128, "slot_size": 4096,
                                        "serialization": "pickle"}.items()
    send = inspect.signature(Pusher.send).parameters
    assert send["block"].kind is inspect.Parameter.KEYWORD_ONLY and send["block"].default is True
    assert send["timeout"].kind is inspect.Parameter.KEYWORD_ONLY and send["timeout"].default is None
    assert list(inspect.signature(Puller).parameters)[:3] == ["name", "timeout_connect", "serialization"]
    assert defaults(Puller).items() >= {"timeout_connect": 5.0, "serialization": "pickle"}.items()
    assert defaults(Puller.recv) == {"timeout": None}
    assert defaults(Puller.recv_bytes) == {"timeout": None}
    assert shmcomm.Pusher is Pusher and shmcomm.Puller is Puller
    assert {"Pusher", "Puller"} <= set(shmcomm.__all__)


def test_default_geometry_send_recv_stats_and_close(channel: str) -> None:
    with Pusher(channel) as push:
        assert push.serialization == "pickle"
        stats = push.stats()
        assert stats["num_slots"] == 128 and stats["slot_size"] == 4096
        with Puller(channel) as pull:
            assert pull.serialization == "pickle" and pull.timeout_connect == 5.0
            assert pull.recv(timeout=0) is None
            assert pull.recv(timeout=0.05) is None  # None on timeout, not an exception
            assert pull.recv_bytes(timeout=0) is None
            message = {"pose": (1.0, 2.0), "id": 7, "tags": ["a", "b"]}
            assert push.send(message) is True
            assert push.send([1, 2, 3], block=True, timeout=1.0) is True
            assert push.send("third", block=False) is True
            assert pull.recv(timeout=5.0) == message
            stats = push.stats()
            assert stats["sent"] == 3 and stats["head"] == 3 and stats["tail"] == 1
            assert stats["queued"] == 2 and stats["pushers"] == 1 and stats["pullers"] == 1
            assert stats["name"] == channel
            pstats = pull.stats()
            assert pstats["received"] == 1 and pstats["dropped"] == 0 and pstats["restored"] == 0
            assert pstats["queued"] == 2 and pstats["name"] == channel
            assert pull.recv(timeout=5.0) == [1, 2, 3]
            # recv_bytes gives the serialized bytes of a pickled item
            assert pickle.loads(pull.recv_bytes(timeout=5.0)) == "third"
            assert pull.pusher_alive is True
            assert channel in repr(push) and channel in repr(pull)
        assert pull.closed
        with pytest.raises(SHMClosedError):
            pull.recv(timeout=0)
        with pytest.raises(SHMClosedError):
            pull.stats()
        pull.close()  # twice is fine
        # The pusher counts no puller once the puller closed.
        assert push.stats()["pullers"] == 0
    assert push.closed and "closed" in repr(push)
    with pytest.raises(SHMClosedError, match="closed"):
        push.send("late")
    with pytest.raises(SHMClosedError):
        push.send_bytes(b"late")
    push.close()


def test_single_writer_queue_refuses_a_second_live_pusher_and_keeps_order(channel: str) -> None:
    with Pusher(channel, num_slots=8, slot_size=64, single_writer=True) as push:
        with pytest.raises(SHMConnectionError, match="single_writer"):
            Pusher(channel, num_slots=8, slot_size=64, single_writer=True)
        with pytest.raises(SHMError, match="single_writer"):  # every pusher must agree on it
            Pusher(channel, num_slots=8, slot_size=64)
        with Puller(channel, serialization="raw") as a, Puller(channel, serialization="raw") as b:
            records = np.arange(40, dtype="<u8")
            sent, got = 0, []
            while sent < 40 or len(got) < 40:  # 40 items through 8 slots, two pullers taking turns
                if sent < 40:
                    try:
                        sent += push.send_packed(records[sent:], 8, block=False)
                    except SHMBufferFullError as full:  # the queue is full: what went is in .sent
                        sent += full.sent  # type: ignore[attr-defined]
                for puller in (a, b):
                    item = puller.recv_bytes(timeout=0)
                    if item is not None:
                        got.append(int.from_bytes(item, "little"))
            assert sorted(got) == list(range(40))  # each item exactly once
        assert push.stats()["single_writer"] is True


@pytest.mark.timeout(120)
def test_single_writer_pusher_killed_mid_stream_is_taken_over_with_nothing_lost(channel: str) -> None:
    size = 256
    events1, events2, linger = CTX.Queue(), CTX.Queue(), CTX.Event()
    with Children() as kids:
        first = kids.start(pattern_pusher, channel, 1, size, 16, events1, None, None, 0, 0, None, True)
        get(events1, 30, "the first pusher", "ready")
        with Puller(channel, timeout_connect=10.0, serialization="raw") as pull:
            gen1: List[int] = []
            while len(gen1) < 1000:
                item = pull.recv_bytes(timeout=10.0)
                assert item is not None, "nothing from the first pusher"
                seq = check_pattern(item)
                assert seq is not None and seq >> 32 == 1, f"torn or foreign item: {item[:32]!r}"
                gen1.append(seq & 0xFFFFFFFF)
            os.kill(first.pid, signal.SIGKILL)  # mid-stream: it pushes as fast as we take
            assert join(first, 10, "killed pusher") == -signal.SIGKILL
            # A new single writer takes the same queue over: what the first queued is still there.
            second = kids.start(pattern_pusher, channel, 2, size, 16, events2, 300, None, 0, 0, linger, True)
            get(events2, 30, "the new pusher", "ready")
            gen2 = read_across_takeover(pull.recv_bytes, gen1, 300)
            assert gen1 == list(range(len(gen1)))  # every completed item of the first, once, in order
            assert gen2 == list(range(300))
            stats = pull.stats()
            assert stats["reconnects"] == 0 and stats["single_writer"] is True, stats
            assert stats["dropped"] <= 1, stats  # at most the item the first died writing
            assert get(events2, 30, "the new pusher's report", "result")["sent"] == 300
            linger.set()
            assert join(second, 20, "new pusher") == 0


def test_send_bytes_takes_any_bytes_like_object(channel: str) -> None:
    with Pusher(channel, num_slots=8, slot_size=256, serialization="raw") as push, \
            Puller(channel, serialization="raw") as pull:
        payloads = [b"bytes", bytearray(b"bytearray"), memoryview(b"memoryview"),
                    np.arange(16, dtype=np.uint32), b""]
        for payload in payloads:
            assert push.send_bytes(payload) is True
        for payload in payloads:
            assert pull.recv_bytes(timeout=5.0) == bytes(memoryview(payload))
        assert push.send(b"raw passes through") is True
        assert pull.recv(timeout=5.0) == b"raw passes through"
        with pytest.raises(SHMSerializationError, match="raw"):
            push.send({"not": "bytes"})
        with pytest.raises(SHMTypeError, match="bytes-like"):
            push.send_bytes("a str")  # type: ignore[arg-type]
        assert pull.recv_bytes(timeout=0) is None  # nothing of the refused sends


def test_items_queued_before_a_puller_attaches_are_not_lost(channel: str) -> None:
    with Pusher(channel, num_slots=8, slot_size=64) as push:
        for i in range(5):
            push.send(i)
        with Puller(channel, timeout_connect=1.0) as pull:
            assert [pull.recv(timeout=5.0) for _ in range(5)] == list(range(5))
            assert pull.recv(timeout=0) is None


def test_two_pullers_in_one_process_share_the_items(channel: str) -> None:
    with Pusher(channel, num_slots=64, slot_size=64) as push, Puller(channel) as a, Puller(channel) as b:
        for i in range(40):
            push.send(i)
        got_a = [a.recv(timeout=5.0) for _ in range(20)]
        got_b = [b.recv(timeout=5.0) for _ in range(20)]
        assert a.recv(timeout=0) is None and b.recv(timeout=0) is None
        assert got_a == list(range(20)) and got_b == list(range(20, 40))  # FIFO, each item once
        assert push.stats()["pullers"] == 2


def test_items_queued_when_the_last_pusher_closes_are_still_delivered(channel: str) -> None:
    with Pusher(channel, num_slots=8, slot_size=64) as push, Puller(channel) as pull:
        for i in range(3):
            push.send(i)
        push.close()  # the last pusher: the queue is closed, what is queued is drained
        assert [pull.recv(timeout=5.0) for _ in range(3)] == [0, 1, 2]
        assert pull.recv(timeout=0.05) is None
        assert pull.pusher_alive is False


def test_puller_follows_a_new_pusher_with_larger_slots(channel: str) -> None:
    with Pusher(channel, num_slots=8, slot_size=64, serialization="raw") as first, \
            Puller(channel, serialization="raw") as pull:
        first.send_bytes(b"small")
        assert pull.recv_bytes(timeout=5.0) == b"small"
        first.close()
        with Pusher(channel, num_slots=8, slot_size=8192, serialization="raw") as second:
            big = bytes(range(256)) * 20
            second.send_bytes(big)
            assert pull.recv_bytes(timeout=10.0) == big  # its receive buffer grew
            assert pull.stats()["reconnects"] == 1 and pull.stats()["slot_size"] == 8192


@pytest.mark.timeout(30)  # bounds the iteration (it waits with no timeout of its own)
def test_context_managers_and_iteration(channel: str) -> None:
    with Pusher(channel, num_slots=16, slot_size=64) as push:
        assert isinstance(push, Pusher)
        with Puller(channel) as pull:
            assert isinstance(pull, Puller)
            for i in range(5):
                push.send(i)
            got = []
            for item in pull:
                got.append(item)
                if len(got) == 5:
                    break
            assert got == list(range(5))

            # Iteration waits for items and ends when the puller is closed from another thread.
            collected: List[Any] = []
            errors: List[BaseException] = []

            def iterate() -> None:
                try:
                    for item in pull:
                        collected.append(item)
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

            thread = threading.Thread(target=iterate, daemon=True)
            thread.start()
            for i in range(5, 8):
                push.send(i)
            wait_until(lambda: len(collected) == 3, 10, "the iterating thread took 3 items")
            pull.close()
            thread.join(10)
            assert not thread.is_alive(), "iteration did not end when the puller was closed"
            assert errors == [] and collected == [5, 6, 7]
        assert pull.closed
    assert push.closed


# ---- full queue, batches, recv_into ---------------------------------------------------------------

def test_full_queue_without_puller_raises_buffer_full_or_timeout(channel: str) -> None:
    with Pusher(channel, num_slots=4, slot_size=64) as push:
        for i in range(4):
            assert push.send(i, block=False) is True
        with pytest.raises(SHMBufferFullError) as info:
            push.send(4, block=False)
        assert isinstance(info.value, BlockingIOError) and isinstance(info.value, SHMError)
        assert "full" in str(info.value) and channel in str(info.value)
        with pytest.raises(SHMBufferFullError):
            push.send_bytes(b"x", block=False)
        with pytest.raises(SHMTimeoutError) as tinfo:
            push.send(4, timeout=0.2)
        assert isinstance(tinfo.value, TimeoutError) and "0.2" in str(tinfo.value)
        with pytest.raises(SHMTimeoutError):
            push.send_bytes(b"x", block=True, timeout=0.05)
        stats = push.stats()
        assert stats["sent"] == 4 and stats["queued"] == 4 and stats["pullers"] == 0
        with Puller(channel, timeout_connect=1.0) as pull:
            assert [pull.recv(timeout=5.0) for _ in range(4)] == [0, 1, 2, 3]  # nothing of the refused
            assert pull.recv(timeout=0) is None
            assert push.send(4, block=False) is True  # room again
            assert pull.recv(timeout=5.0) == 4


def test_send_many_bytes_and_recv_many_bytes(channel: str) -> None:
    with Pusher(channel, num_slots=8, slot_size=64, serialization="raw") as push, \
            Puller(channel, serialization="raw") as pull:
        assert push.send_many_bytes([b"a", bytearray(b"bb"), memoryview(b"ccc")]) == 3
        assert push.send_many_bytes([]) == 0
        assert pull.recv_many_bytes(10, timeout=5.0) == [b"a", b"bb", b"ccc"]
        assert pull.recv_many_bytes(10, timeout=0) == []
        assert pull.recv_many_bytes(10, timeout=0.05) == []

        # A batch larger than the queue: what fits is queued, the error says how many.
        items = [b"item %d" % i for i in range(12)]
        with pytest.raises(SHMBufferFullError) as info:
            push.send_many_bytes(items, block=False)
        assert info.value.sent == 8  # type: ignore[attr-defined]
        assert pull.recv_many_bytes(5, timeout=5.0) == items[:5]
        assert pull.recv_many_bytes(64, timeout=5.0) == items[5:8]
        with pytest.raises(SHMTimeoutError) as tinfo:
            push.send_many_bytes(items, timeout=0.1)
        assert tinfo.value.sent == 8  # type: ignore[attr-defined]
        assert pull.recv_many_bytes(64, timeout=5.0) == items[:8]
        with pytest.raises(SHMMessageSizeError, match="slot_size"):
            push.send_many_bytes([b"ok", b"x" * 65])
        assert pull.recv_bytes(timeout=0) is None  # an oversize batch queues nothing
        with pytest.raises(SHMTypeError):
            push.send_many_bytes(["not bytes"])  # type: ignore[list-item]


def test_send_many_and_recv_many_serialize(channel: str) -> None:
    with Pusher(channel, num_slots=16, slot_size=256) as push, Puller(channel) as pull:
        items = [{"a": 1}, [2, 3], "four", None, 5.5]
        assert push.send_many(items) == len(items)
        assert pull.recv_many(64, timeout=5.0) == items


def test_recv_into_a_small_buffer_raises_and_keeps_the_message(channel: str) -> None:
    with Pusher(channel, num_slots=8, slot_size=256, serialization="raw") as push, \
            Puller(channel, serialization="raw") as pull:
        first, second = b"x" * 40, b"second"
        push.send_bytes(first)
        push.send_bytes(second)
        small = bytearray(16)
        with pytest.raises(ValueError) as info:
            pull.recv_into(small, timeout=5.0)
        assert isinstance(info.value, SHMValueError)
        assert "40" in str(info.value) and "16" in str(info.value)
        assert small == bytearray(16)  # untouched
        # The message is kept: the next receive returns it, then the following one.
        big = bytearray(64)
        assert pull.recv_into(big, timeout=0) == 40 and bytes(big[:40]) == first
        assert pull.recv_bytes(timeout=5.0) == second

        push.send_bytes(first)
        with pytest.raises(ValueError):
            pull.recv_into(memoryview(bytearray(8)), timeout=5.0)
        assert pull.recv_bytes(timeout=0) == first  # also kept for recv_bytes
        push.send_bytes(np.arange(8, dtype=np.uint16).tobytes())
        array = np.zeros(8, dtype=np.uint16)
        assert pull.recv_into(array, timeout=5.0) == 16
        assert array.tolist() == list(range(8))
        assert pull.recv_into(bytearray(8), timeout=0) is None


# ---- real processes --------------------------------------------------------------------------------

@pytest.mark.timeout(150)
def test_two_pusher_processes_and_three_puller_processes_move_200k_items_exactly_once(channel: str) -> None:
    per_pusher, pushers, pullers = 100_000, 2, 3
    num_slots = 512
    push_events, pull_events, go, done = CTX.Queue(), CTX.Queue(), CTX.Event(), CTX.Event()
    with Children() as kids:
        push_procs = [kids.start(pair_pusher, channel, i, per_pusher, 256, num_slots, go, done, push_events)
                      for i in range(pushers)]
        assert sorted(get(push_events, 30, "a pusher", "ready")["pusher_id"]
                      for _ in push_procs) == [0, 1]
        pull_procs = [kids.start(pair_puller, channel, i, pull_events) for i in range(pullers)]
        assert sorted(get(pull_events, 30, "a puller", "ready")["index"] for _ in pull_procs) == [0, 1, 2]
        # The parent joins as a third pusher: it pushes the STOP items once the data is all queued.
        with Pusher(channel, num_slots=num_slots, slot_size=64, serialization="raw") as stopper:
            stats = stopper.stats()
            assert stats["pushers"] == pushers + 1 and stats["pullers"] == pullers
            go.set()
            sent = [get(push_events, 60, "a pusher's report", "result") for _ in push_procs]
            assert all(s["sent"] == per_pusher for s in sent), sent
            # Each puller stops at its first STOP, but one batch may hold several: push more until
            # every puller has had one (deterministic: no puller but the remaining ones takes any).
            pushed = stopper.send_many_bytes([STOP] * pullers, timeout=30.0)
            reports: List[Dict[str, Any]] = []
            while len(reports) < pullers:
                reports.append(get(pull_events, 60, "a puller's report", "result"))
                outstanding = pushed - sum(r["stops"] for r in reports)
                remaining = pullers - len(reports)
                if outstanding < remaining:
                    pushed += stopper.send_many_bytes([STOP] * (remaining - outstanding), timeout=30.0)
            done.set()
            for proc in push_procs + pull_procs:
                assert join(proc, 20, "pusher/puller") == 0
    total = per_pusher * pushers
    everything: Counter = Counter()
    for report in reports:
        items = [PAIR.unpack_from(report["items"], i) for i in range(0, len(report["items"]), PAIR.size)]
        assert len(items) == report["count"]
        assert report["received"] == report["count"] + report["stops"]
        assert report["dropped"] == 0
        # FIFO per pusher within each puller's list.
        last: Dict[int, int] = defaultdict(lambda: -1)
        for pusher_id, seq in items:
            assert pusher_id in (0, 1), pusher_id
            assert seq > last[pusher_id], \
                f"puller {report['index']}: pusher {pusher_id}'s {seq} after {last[pusher_id]}"
            last[pusher_id] = seq
        everything.update(items)
    duplicated = [item for item, n in everything.items() if n > 1]
    assert not duplicated, f"{len(duplicated)} items received twice, e.g. {duplicated[:5]}"
    expected = {(p, s) for p in range(pushers) for s in range(per_pusher)}
    missing = expected - set(everything)
    assert not missing, f"{len(missing)} items lost, e.g. {sorted(missing)[:5]}"
    assert set(everything) == expected and sum(everything.values()) == total


def _records(path: Path) -> List[int]:
    """The 8-byte sequence numbers a reporting_puller wrote (a torn last record is not one)."""
    data = path.read_bytes() if path.exists() else b""
    return [SEQ.unpack_from(data, i)[0] for i in range(0, len(data) - len(data) % SEQ.size, SEQ.size)]


@pytest.mark.timeout(150)
def test_pullers_sigkilled_mid_stream_lose_nothing_but_what_they_had_not_reported(
        channel: str, tmp_path: Path) -> None:
    kills, num_slots, per_victim = 10, 16, 200
    events, survivor_events = CTX.Queue(), CTX.Queue()
    finish, done = CTX.Event(), CTX.Event()
    survivor_path = tmp_path / "survivor"
    victim_paths = [tmp_path / f"victim{k}" for k in range(kills)]
    with Children() as kids:
        # After `finish` the pusher pushes 2000 more items (over a hundred laps of the 16-slot ring),
        # so every slot a killed puller held has been given back and taken before the STOP item.
        pusher = kids.start(stream_pusher, channel, num_slots, finish, 2000, done, events)
        get(events, 30, "the pusher", "ready")
        survivor = kids.start(reporting_puller, channel, str(survivor_path), survivor_events)
        get(survivor_events, 30, "the surviving puller", "ready")
        for k, path in enumerate(victim_paths):
            # A queue of its own: a process killed while its queue's feeder thread holds the queue's
            # lock would leave that lock held for every later writer.
            victim_events = CTX.Queue()
            victim = kids.start(reporting_puller, channel, str(path), victim_events)
            get(victim_events, 30, f"puller {k} to be killed", "ready")
            wait_until(lambda: path.exists() and path.stat().st_size >= per_victim * SEQ.size, 30,
                       f"puller {k} to be killed has taken {per_victim} items")
            os.kill(victim.pid, signal.SIGKILL)  # mid-stream: it takes items as fast as it can
            assert join(victim, 10, f"killed puller {k}") == -signal.SIGKILL
        finish.set()
        sent = get(events, 60, "the pusher to finish (it must not deadlock on dead pullers)", "result")
        report = get(survivor_events, 60, "the survivor's report", "result")
        done.set()
        assert join(pusher, 20, "pusher") == 0
        assert join(survivor, 20, "surviving puller") == 0
    total = sent["sent"]
    assert sent["stats_sent"] == total + 1  # + the STOP item
    survivor_items = _records(survivor_path)
    assert report["taken"] == len(survivor_items) and report["dropped"] == 0
    assert report["received"] == report["taken"] + 1
    reported: Counter = Counter(survivor_items)
    for path in victim_paths:
        items = _records(path)
        assert len(items) >= per_victim
        reported.update(items)
    duplicated = sorted(seq for seq, n in reported.items() if n > 1)
    assert not duplicated, f"{len(duplicated)} items taken twice: {duplicated[:10]}"
    assert all(0 <= seq < total for seq in reported), "an item nobody pushed"
    unreported = total - len(reported)
    assert 0 <= unreported <= kills, (
        f"{unreported} of {total} items were never reported; each of the {kills} killed pullers may "
        f"have taken at most one it had not reported yet (restored: {report['restored']})")


@pytest.mark.timeout(120)
def test_pusher_sigkilled_mid_stream_leaves_the_other_pusher_and_the_pullers_working(channel: str) -> None:
    size, num_slots, pullers = 1024, 32, 2
    events_a, events_b, pull_events = CTX.Queue(), CTX.Queue(), CTX.Queue()
    finish, linger = CTX.Event(), CTX.Event()
    progress = CTX.Value("Q", 0)
    with Children() as kids:
        # Pusher 1 (the creator of the queue) pushes until killed; pusher 2 until told to finish.
        a = kids.start(pattern_pusher, channel, 1, size, num_slots, events_a)
        get(events_a, 30, "the pusher to be killed", "ready")
        b = kids.start(pattern_pusher, channel, 2, size, num_slots, events_b, None, finish, 2000, pullers,
                       linger)
        get(events_b, 30, "the surviving pusher", "ready")
        procs = [kids.start(pattern_puller, channel, i, size, progress, pull_events) for i in range(pullers)]
        for _ in procs:
            get(pull_events, 30, "a puller", "ready")
        wait_until(lambda: progress.value >= 3000, 30, "the pullers took 3000 items of pusher 1")
        os.kill(a.pid, signal.SIGKILL)  # mid-stream: it pushes 1 KiB items as fast as they are taken
        assert join(a, 10, "killed pusher") == -signal.SIGKILL
        finish.set()
        sent_b = get(events_b, 60, "the surviving pusher's report", "result")["sent"]
        reports = [get(pull_events, 60, "a puller's report", "result") for _ in procs]
        linger.set()
        assert join(b, 20, "surviving pusher") == 0
        for proc in procs:
            assert join(proc, 20, "puller") == 0
    by_generation: Dict[int, Counter] = {1: Counter(), 2: Counter()}
    for report in reports:
        assert report["torn"] == 0, f"puller {report['index']} received {report['torn']} torn items"
        last = {1: -1, 2: -1}
        for seq in report["seqs"]:
            generation, n = seq >> 32, seq & 0xFFFFFFFF
            assert generation in (1, 2)
            assert n > last[generation], f"pusher {generation}: {n} after {last[generation]}"
            last[generation] = n
            by_generation[generation][n] += 1
        assert report["received"] == len(report["seqs"]) + 1  # + its STOP item
    for generation, counts in by_generation.items():
        assert all(n == 1 for n in counts.values()), f"pusher {generation}: an item taken twice"
    # The surviving pusher's items: every one, exactly once.
    assert sorted(by_generation[2]) == list(range(sent_b))
    # The killed pusher's: a gap-free prefix (at most the one it was writing is lost, and skipped).
    got_a = sorted(by_generation[1])
    assert len(got_a) >= 3000 and got_a == list(range(len(got_a)))
    assert sum(r["dropped"] for r in reports) <= 1


@pytest.mark.timeout(120)
def test_restarted_pusher_is_followed_by_an_attached_puller(channel: str) -> None:
    size, num_slots = 512, 16
    events1, events2, linger = CTX.Queue(), CTX.Queue(), CTX.Event()
    with Children() as kids:
        first = kids.start(pattern_pusher, channel, 1, size, num_slots, events1)  # pushes until killed
        get(events1, 30, "the first pusher", "ready")
        with Puller(channel, timeout_connect=10.0, serialization="raw") as pull:
            seqs = []
            for _ in range(1000):
                item = pull.recv_bytes(timeout=10.0)
                assert item is not None, f"no item of the first pusher within 10 s after {len(seqs)}"
                seq = check_pattern(item)
                assert seq is not None and len(item) == size, f"torn item: {item[:32]!r}"
                seqs.append(seq)
            assert seqs == [(1 << 32) | n for n in range(1000)]
            assert pull.pusher_alive

            os.kill(first.pid, signal.SIGKILL)
            assert join(first, 10, "killed pusher") == -signal.SIGKILL
            # What was queued is still delivered, whole and in order.
            while True:
                item = pull.recv_bytes(timeout=0.5)
                if item is None:
                    break
                seq = check_pattern(item)
                assert seq is not None and len(item) == size, f"torn item after the kill: {item[:32]!r}"
                assert seq == seqs[-1] + 1
                seqs.append(seq)
            wait_until(lambda: not pull.pusher_alive, 10, "the puller sees its pusher is dead")

            # A new pusher process on the same name: the same Puller follows it.
            second = kids.start(pattern_pusher, channel, 2, size, num_slots, events2, 500, None, 0, 0, linger)
            get(events2, 30, "the restarted pusher", "ready")
            seqs2 = []
            for _ in range(500):
                item = pull.recv_bytes(timeout=10.0)
                assert item is not None, f"no item of the restarted pusher within 10 s after {len(seqs2)}"
                seq = check_pattern(item)
                assert seq is not None and len(item) == size
                seqs2.append(seq)
            assert seqs2 == [(2 << 32) | n for n in range(500)]
            assert pull.recv_bytes(timeout=0) is None
            stats = pull.stats()
            assert stats["reconnects"] == 1, stats
            assert pull.pusher_alive and stats["pushers"] == 1
            assert get(events2, 30, "the restarted pusher's report", "result")["sent"] == 500
            linger.set()
            assert join(second, 20, "restarted pusher") == 0


@pytest.mark.timeout(60)
def test_puller_started_before_the_pusher_waits_for_it(channel: str) -> None:
    events = CTX.Queue()
    with Children() as kids:
        proc = kids.start(waiting_puller, channel, 3, 30.0, events)
        get(events, 30, "the puller to start", "starting")
        with pytest.raises(SHMConnectionError):
            Puller(channel, timeout_connect=0)  # no queue yet: the child is waiting for one
        with Pusher(channel, num_slots=8, slot_size=256) as push:
            get(events, 30, "the waiting puller to attach", "attached")
            for i in range(3):
                push.send({"item": i})
            result = get(events, 30, "the puller's report", "result")
            assert join(proc, 20, "puller") == 0
    assert result["items"] == [{"item": i} for i in range(3)]
    assert result["received"] == 3


def test_puller_on_a_missing_queue_says_to_start_the_pusher(channel: str) -> None:
    with pytest.raises(SHMConnectionError) as info:
        Puller(channel, timeout_connect=0.2)
    assert isinstance(info.value, ConnectionError)
    message = str(info.value)
    assert "start the Pusher" in message, message
    assert channel in message and "0.2" in message, message
    with pytest.raises(SHMConnectionError, match="start the Pusher"):
        Puller(channel, timeout_connect=0)


def test_a_second_pusher_with_other_geometry_is_refused(channel: str) -> None:
    with Pusher(channel, num_slots=8, slot_size=64):
        with pytest.raises(SHMConnectionError, match="num_slots"):
            Pusher(channel, num_slots=16, slot_size=64)
        with Pusher(channel, num_slots=8, slot_size=64) as second:  # the same geometry joins
            assert second.stats()["pushers"] == 2


# ---- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [123, None, b"bytes", ["list"]], ids=repr)
def test_names_must_be_str(bad: Any) -> None:
    with pytest.raises(SHMTypeError, match="str"):
        Pusher(bad)
    with pytest.raises(SHMTypeError, match="str"):
        Puller(bad, timeout_connect=0)


@pytest.mark.parametrize("bad", ["", "..", "a/../b", "x\x00y", "line\nbreak"], ids=repr)
def test_invalid_names_are_refused(bad: str) -> None:
    with pytest.raises(SHMNameError):
        Pusher(bad)
    with pytest.raises(SHMNameError):
        Puller(bad, timeout_connect=0)


@pytest.mark.parametrize("kwargs, error", [
    ({"num_slots": 1}, SHMValueError),
    ({"num_slots": -5}, SHMValueError),
    ({"num_slots": 2 ** 25}, SHMValueError),
    ({"num_slots": 64.0}, SHMTypeError),
    ({"num_slots": "64"}, SHMTypeError),
    ({"num_slots": True}, SHMTypeError),
    ({"slot_size": 0}, SHMValueError),
    ({"slot_size": (1 << 30) + 1}, SHMValueError),
    ({"slot_size": None}, SHMTypeError),
    ({"slot_size": 4096.0}, SHMTypeError),
    ({"max_peers": 1}, SHMValueError),
    ({"mode": 0o644}, SHMValueError),
], ids=lambda v: repr(v) if isinstance(v, dict) else v.__name__)
def test_bad_pusher_geometry_is_refused(channel: str, kwargs: dict, error: type) -> None:
    with pytest.raises(error) as info:
        Pusher(channel, **kwargs)
    assert next(iter(kwargs)) in str(info.value), str(info.value)
    assert not os.path.exists(os.path.join("/dev/shm", shmcomm.os_name(channel, "pipeline")))


@pytest.mark.parametrize("timeout, error", [(-1, SHMValueError), (float("nan"), SHMValueError),
                                            ("1", SHMTypeError), ([1], SHMTypeError),
                                            (True, SHMTypeError)], ids=repr)
def test_bad_timeouts_are_refused(channel: str, timeout: Any, error: type) -> None:
    with Pusher(channel, num_slots=4, slot_size=64) as push, Puller(channel) as pull:
        push.send("kept")
        for call in (lambda: pull.recv(timeout=timeout), lambda: pull.recv_bytes(timeout=timeout),
                     lambda: pull.recv_into(bytearray(64), timeout=timeout),
                     lambda: pull.recv_many_bytes(4, timeout=timeout),
                     lambda: push.send("x", timeout=timeout),
                     lambda: push.send_bytes(b"x", timeout=timeout),
                     lambda: push.send_many_bytes([b"x"], timeout=timeout)):
            with pytest.raises(error, match="timeout"):
                call()
        assert pull.recv(timeout=1.0) == "kept"  # nothing taken by the refused calls
        assert pull.recv(timeout=0) is None  # nor queued
        with pytest.raises(error, match="timeout_connect"):
            Puller(channel, timeout_connect=timeout)


def test_bad_arguments_to_calls_are_refused(channel: str) -> None:
    with Pusher(channel, num_slots=4, slot_size=64) as push, Puller(channel) as pull:
        with pytest.raises(SHMMessageSizeError) as info:
            push.send_bytes(b"x" * 65)
        assert "slot_size" in str(info.value) and "64" in str(info.value) and "65" in str(info.value)
        with pytest.raises(SHMMessageSizeError, match="slot_size"):
            push.send(list(range(100)))
        with pytest.raises(SHMValueError, match="max_messages"):
            pull.recv_many_bytes(0, timeout=0)
        with pytest.raises(SHMTypeError, match="max_messages"):
            pull.recv_many_bytes(2.0, timeout=0)  # type: ignore[arg-type]
        with pytest.raises(SHMTypeError, match="writable"):
            pull.recv_into(b"read-only", timeout=0)
        with pytest.raises(SHMTypeError, match="spin_us"):
            Puller(channel, spin_us=1.5)  # type: ignore[arg-type]
        with pytest.raises(SHMValueError, match="spin_us"):
            Puller(channel, spin_us=-1)
        assert pull.recv(timeout=0) is None


@pytest.mark.parametrize("method", ["json", "", None])
def test_unknown_serialization_lists_the_choices(channel: str, method: Any) -> None:
    for make in (lambda: Pusher(channel, serialization=method),
                 lambda: Puller(channel, timeout_connect=0, serialization=method)):
        with pytest.raises(SHMSerializationError) as info:
            make()
        assert all(choice in str(info.value) for choice in ("pickle", "msgpack", "raw")), str(info.value)


def test_close_from_another_thread_ends_a_send_packed_waiting_on_a_full_queue(channel: str) -> None:
    with Pusher(channel, num_slots=4, slot_size=8) as push:
        outcome: List[Any] = []

        def send() -> None:
            try:
                outcome.append(push.send_packed(np.arange(16, dtype=np.uint64), 8))
            except Exception as exc:
                outcome.append(exc)

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        wait_until(lambda: push._waiting_thread == thread.ident, 10, "the batch waits for room")
        push.close()
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], SHMClosedError), outcome


def test_send_many_spanning_several_wait_slices_sends_each_item_once(channel: str, monkeypatch) -> None:
    """A batch sent into a full queue waits in slices; a slice that times out has sent part of the
    batch, and the next slice must go on from there, not send those items again."""
    import threading

    import shmcomm._endpoint as endpoint

    monkeypatch.setattr(endpoint, "SLICE_NS", 1_000_000)  # 1 ms slices: many of them time out
    with Pusher(channel, num_slots=8, slot_size=64, serialization="raw") as push, \
            Puller(channel, serialization="raw") as pull:
        got: list = []

        def slow_puller() -> None:
            while len(got) < 100:
                message = pull.recv_bytes(timeout=5.0)
                if message is None:
                    return
                got.append(int.from_bytes(message, "little"))
                threading.Event().wait(0.002)  # slower than the pusher: the queue stays full

        thread = threading.Thread(target=slow_puller)
        thread.start()
        assert push.send_many_bytes([i.to_bytes(8, "little") for i in range(100)], timeout=30.0) == 100
        thread.join(timeout=60)
        assert got == list(range(100))
        assert pull.recv_bytes(timeout=0.2) is None  # nothing sent twice
