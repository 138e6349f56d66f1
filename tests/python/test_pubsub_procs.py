"""PUB/SUB across real processes: many subscribers, slow ones, crashes (SIGKILL) of subscribers and
publishers mid-stream, publisher restarts, several publishers on one channel.

Every step is synchronised through queues and events, and every wait has a deadline."""

from __future__ import annotations

import os
import signal
from collections import defaultdict

import pytest

from procs import (CTX, PAIR, SEQ, Children, check_pattern, get, join, kill_and_wait_zombie,
                   lossless_publisher, lossless_subscriber, multi_publisher, pattern_payload,
                   pattern_publisher, process_state, read_across_takeover, slow_subscriber,
                   stalling_subscriber, wait_until)
from shmcomm import Publisher, SHMConnectionError, SHMError, Subscriber


@pytest.mark.timeout(150)
def test_three_subscriber_processes_each_receive_100k_messages_in_order(channel: str) -> None:
    count, subscribers = 100_000, 3
    events = CTX.Queue()
    with Publisher(channel, num_slots=1024, slot_size=64, lossless=True) as pub, Children() as kids:
        procs = [kids.start(lossless_subscriber, channel, i, count, events) for i in range(subscribers)]
        ready = [get(events, 30, "a subscriber to attach", "ready") for _ in procs]
        assert sorted(r["index"] for r in ready) == [0, 1, 2]
        assert pub.stats()["subscribers"] == subscribers  # all attached before the first message
        payload = bytearray(64)
        for seq in range(count):
            SEQ.pack_into(payload, 0, seq)
            assert pub.send_bytes(payload, block=True, timeout=20.0) is True
        reports = sorted((get(events, 60, "a subscriber's report", "result") for _ in procs),
                         key=lambda r: r["index"])
        for proc in procs:
            assert join(proc, 20, "subscriber") == 0
        assert pub.stats()["sent"] == count
    for report in reports:
        assert report == {"kind": "result", "index": report["index"], "received": count, "out_of_order": 0,
                          "first": 0, "last": count - 1, "dropped": 0, "stats_received": count}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("size", [4096, 65536, 3 << 20], ids=["4KiB", "64KiB-payload-pool", "3MiB-streaming-stores"])
def test_slow_subscriber_in_overwrite_mode_sees_no_torn_message_and_counts_every_one(channel: str,
                                                                                   size: int) -> None:
    events, total_q = CTX.Queue(), CTX.Queue()
    with Publisher(channel, num_slots=8, slot_size=size, serialization="raw") as pub, Children() as kids:
        # 64 KiB slots get a payload pool: each message's buffer is chosen at its claim. Messages of
        # 2 MiB and more are copied in with streaming stores (libshm's shmi_ring_copy_in).
        assert pub.stats()["payload_pool"] is (size >= 65536)
        proc = kids.start(slow_subscriber, channel, size, events, total_q)
        get(events, 30, "the subscriber to attach", "ready")
        # Publish as fast as possible (lapping the reader many times) until it has read 300.
        seq = 0
        progress = None
        while progress is None:
            for _ in range(100):
                pub.send_bytes(pattern_payload(seq, size))
                seq += 1
            if not events.empty():
                progress = get(events, 1, "the subscriber's progress", "progress")
            assert seq < 50_000_000, "the subscriber made no progress"
        total_q.put(seq)
        report = get(events, 60, "the subscriber's report", "result")
        assert join(proc, 20, "subscriber") == 0
    assert report["torn"] == 0, report
    assert report["not_increasing"] == 0, report
    assert report["last"] == seq - 1
    assert report["received"] + report["dropped"] + report["skipped"] == seq, report
    # The reader really was lapped and really used latest():
    assert report["dropped"] > 0 and report["skipped"] > 0, report


@pytest.mark.timeout(120)
@pytest.mark.parametrize("hold_view", [False, True], ids=["stalled", "holding_a_view"])
def test_lossless_publisher_finishes_when_a_subscriber_is_killed_mid_stream(channel: str,
                                                                           hold_view: bool) -> None:
    count = 20_000
    events, victim_events, survivor_events = CTX.Queue(), CTX.Queue(), CTX.Queue()
    go, done = CTX.Event(), CTX.Event()
    with Children() as kids:
        publisher = kids.start(lossless_publisher, channel, count, 16, 2, go, done, events)
        get(events, 30, "the publisher", "ready")
        survivor = kids.start(lossless_subscriber, channel, 0, count, survivor_events)
        victim = kids.start(stalling_subscriber, channel, 1000, hold_view, victim_events)
        get(survivor_events, 30, "the surviving subscriber", "ready")
        get(victim_events, 30, "the subscriber to be killed", "ready")
        go.set()
        stalled = get(victim_events, 60, "the victim to stall mid-stream", "stalled")
        assert stalled["holding_view"] == hold_view
        # The victim stopped reading: a lossless publisher is now (or soon) blocked on it.
        os.kill(victim.pid, signal.SIGKILL)
        assert join(victim, 10, "killed subscriber") == -signal.SIGKILL
        sent = get(events, 60, "the publisher to finish (it must reap the dead subscriber)", "result")
        assert sent["sent"] == count
        assert sent["subscribers"] == 1
        report = get(survivor_events, 60, "the survivor's report", "result")
        done.set()
        assert join(publisher, 20, "publisher") == 0
        assert join(survivor, 20, "survivor") == 0
    assert report["received"] == count
    assert report["out_of_order"] == 0 and report["first"] == 0 and report["last"] == count - 1
    assert report["dropped"] == 0


def _receive_generation(sub: Subscriber, generation: int, size: int, count: int, timeout: float) -> list:
    """Receives ``count`` pattern messages, all of ``generation``, checking each in full."""
    seqs = []
    for _ in range(count):
        payload = sub.recv_bytes(timeout=timeout)
        assert payload is not None, f"no message of generation {generation} within {timeout} s"
        seq = check_pattern(payload)
        assert seq is not None and len(payload) == size, f"torn message: {payload[:32]!r}..."
        assert seq >> 32 == generation, f"message of generation {seq >> 32}, expected {generation}"
        seqs.append(seq & 0xFFFFFFFF)
    return seqs


@pytest.mark.timeout(120)
@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
def test_publisher_killed_mid_stream_then_restarted_is_followed_by_the_same_subscriber(
        channel: str, reaped: bool) -> None:
    size = 1024
    events1, events2, linger = CTX.Queue(), CTX.Queue(), CTX.Event()
    with Children() as kids:
        first = kids.start(pattern_publisher, channel, size, 1, None, events1, linger)
        get(events1, 30, "the first publisher", "ready")
        with Subscriber(channel, timeout_connect=10.0, serialization="raw") as sub:
            seqs = _receive_generation(sub, 1, size, 2000, 10.0)
            assert seqs == list(range(2000))
            assert sub.publisher_alive

            if reaped:
                os.kill(first.pid, signal.SIGKILL)  # mid-stream: it sends as fast as we read
                assert join(first, 10, "killed publisher") == -signal.SIGKILL
            else:
                kill_and_wait_zombie(first.pid)
                assert process_state(first.pid) == "Z"

            # What was complete in the ring is delivered, intact and in order; nothing torn.
            while True:
                payload = sub.recv_bytes(timeout=0.2)
                if payload is None:
                    break
                seq = check_pattern(payload)
                assert seq is not None, f"torn message after the crash: {payload[:32]!r}..."
                assert (seq & 0xFFFFFFFF) == seqs[-1] + 1
                seqs.append(seq & 0xFFFFFFFF)
            wait_until(lambda: not sub.publisher_alive, 5.0,
                       "the subscriber sees its publisher is dead" + ("" if reaped else " (a zombie)"))
            assert sub.stats()["publisher_alive"] is False
            if not reaped:
                assert process_state(first.pid) == "Z"  # we really checked against a zombie
                assert join(first, 10, "killed publisher") == -signal.SIGKILL

            # A new publisher process on the same name: the same Subscriber follows it.
            second = kids.start(pattern_publisher, channel, size, 2, 500, events2, linger)
            get(events2, 30, "the restarted publisher", "ready")
            seqs2 = _receive_generation(sub, 2, size, 500, 10.0)
            assert seqs2 == list(range(500))
            stats = sub.stats()
            assert stats["reconnects"] == 1, stats
            assert stats["publisher_alive"] is True and sub.publisher_alive
            assert get(events2, 30, "the restarted publisher's report", "result")["sent"] == 500
            linger.set()
            assert join(second, 20, "restarted publisher") == 0


@pytest.mark.timeout(120)
def test_single_writer_killed_mid_stream_is_taken_over_on_the_same_channel(channel: str) -> None:
    size = 1024
    events1, events2, linger = CTX.Queue(), CTX.Queue(), CTX.Event()
    with Children() as kids:
        first = kids.start(pattern_publisher, channel, size, 1, None, events1, linger, True)
        get(events1, 30, "the first publisher", "ready")
        with Subscriber(channel, timeout_connect=10.0, serialization="raw") as sub:
            seqs = _receive_generation(sub, 1, size, 2000, 10.0)
            assert seqs == list(range(2000))
            # The channel has one writer: a second one is refused while the first lives.
            with pytest.raises(SHMConnectionError, match="single_writer"):
                Publisher(channel, num_slots=16, slot_size=size, lossless=True, single_writer=True)
            os.kill(first.pid, signal.SIGKILL)  # mid-stream: it sends as fast as we read
            assert join(first, 10, "killed publisher") == -signal.SIGKILL

            # A new single writer takes the same channel over: what the first completed is still
            # there, in order and intact, then the second one's messages follow on the same ring.
            second = kids.start(pattern_publisher, channel, size, 2, 500, events2, linger, True)
            get(events2, 30, "the new publisher", "ready")
            seqs2 = read_across_takeover(sub.recv_bytes, seqs, 500)
            assert seqs == list(range(len(seqs)))  # the first's, in order, then none
            assert seqs2 == list(range(500))
            stats = sub.stats()
            assert stats["reconnects"] == 0, stats  # taken over, not replaced by a new generation
            assert stats["dropped"] <= 1, stats     # at most the message the first died writing
            assert stats["single_writer"] is True
            assert get(events2, 30, "the new publisher's report", "result")["sent"] == 500
            linger.set()
            assert join(second, 20, "new publisher") == 0


@pytest.mark.timeout(120)
def test_two_publisher_processes_on_one_channel_keep_their_own_order(channel: str) -> None:
    count = 20_000
    events, go, done = CTX.Queue(), CTX.Event(), CTX.Event()
    with Children() as kids:
        a = kids.start(multi_publisher, channel, 0, count, go, done, events)
        assert get(events, 30, "publisher 0", "ready")["pub_id"] == 0
        with Subscriber(channel, timeout_connect=10.0) as sub:
            b = kids.start(multi_publisher, channel, 1, count, go, done, events)
            assert get(events, 30, "publisher 1", "ready")["pub_id"] == 1
            assert sub.stats()["publishers"] == 2
            go.set()
            expected = defaultdict(int)
            buf = bytearray(64)
            for _ in range(2 * count):
                n = sub.recv_into(buf, timeout=20.0)
                assert n == PAIR.size, "a message went missing (or the wait timed out)"
                pub_id, seq = PAIR.unpack_from(buf)
                assert pub_id in (0, 1)
                assert seq == expected[pub_id], f"publisher {pub_id}: got {seq}, expected {expected[pub_id]}"
                expected[pub_id] += 1
            assert dict(expected) == {0: count, 1: count}
            assert sub.recv_bytes(timeout=0) is None
            assert sub.stats()["dropped"] == 0
            results = [get(events, 30, "a publisher's report", "result") for _ in range(2)]
            assert sorted(r["pub_id"] for r in results) == [0, 1]
            done.set()
            assert join(a, 20, "publisher 0") == 0
            assert join(b, 20, "publisher 1") == 0


def test_errors_in_children_reach_the_parent(channel: str) -> None:
    """The harness itself: a child's failure is reported, not silently lost."""
    events = CTX.Queue()
    with Children() as kids:
        proc = kids.start(lossless_subscriber, channel + "/nobody-publishes", 0, 1, events, 0.1)
        with pytest.raises(AssertionError, match="SHMConnectionError"):
            get(events, 30, "the subscriber's failure")
        assert join(proc, 10, "subscriber") == 1
    assert isinstance(SHMError("x"), Exception)
