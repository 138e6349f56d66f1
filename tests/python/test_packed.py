"""Packed batches (send_packed / recv_packed) and the one-copy recv_into, with real separate processes
where it matters: 200,000 sequence-numbered records through PUB/SUB, each checked in order; the same
through a work queue shared by two puller processes, each record taken exactly once; 1 MiB frames
received with one copy into numpy arrays, bytearrays and memoryviews. In one process: interop with
send_bytes/recv_bytes both ways, int sizes and uint64 arrays, every bad argument (nothing sent,
nothing consumed), a buffer too small for the next message (kept, even when the publisher laps the
ring), timeouts, full channels (``.sent``), and waits that span several slices.

Every step across processes is synchronised through queues and events, and every wait has a deadline;
nothing sleeps and hopes, and nothing asserts on timing."""

from __future__ import annotations

import os
import threading
from array import array
from typing import Any, Callable, List

import numpy as np
import pytest

from procs import CTX, Children, _run, check_pattern, get, join, pattern_publisher, wait_until
from shmcomm import (Pair, Publisher, Puller, Pusher, Replier, Requester, SHMBufferFullError,
                     SHMClosedError, SHMMessageSizeError, SHMSequenceError, SHMTimeoutError,
                     SHMTypeError, SHMValueError, Subscriber)

RECORD = 64  # bytes: eight uint64 words, the sequence number and seven words derived from it
WORDS = RECORD // 8
SENTINEL = np.uint64(2**64 - 1)  # a record with this sequence number: "stop pulling"


def records_of(seq: np.ndarray) -> np.ndarray:
    """The records of sequence numbers ``seq``: word 0 is the number, word j is 7 * seq + j (modulo
    2**64), so a torn record, or one copied from the wrong place, does not check."""
    out = np.empty((len(seq), WORDS), dtype=np.uint64)
    out[:, 0] = seq
    out[:, 1:] = seq[:, None] * np.uint64(7) + np.arange(1, WORDS, dtype=np.uint64)
    return out


def records(start: int, count: int) -> np.ndarray:
    """``count`` records from sequence number ``start``."""
    return records_of(np.arange(start, start + count, dtype=np.uint64))


def check_records(block: np.ndarray) -> np.ndarray:
    """The sequence numbers of a (n, WORDS) uint64 array of records; fails on a torn record."""
    seq = block[:, 0]
    expected = seq[:, None] * np.uint64(7) + np.arange(1, WORDS, dtype=np.uint64)
    bad = np.nonzero((block[:, 1:] != expected).any(axis=1))[0]
    assert bad.size == 0, f"{bad.size} torn records, the first with sequence number {seq[bad[0]]}"
    return seq


# ---- child processes (spawned: they import this module) -------------------------------------------

def packed_publisher(name: str, total: int, go: Any, events: Any) -> None:
    """Lossless publisher of ``total`` records with send_packed, in batches of 1000 with an int size
    and of 777 with a uint64 array of sizes, once a subscriber is attached and ``go`` is set."""
    def body() -> None:
        with Publisher(name, num_slots=1024, slot_size=RECORD, lossless=True) as pub:
            events.put({"kind": "ready", "pid": os.getpid()})
            if not go.wait(30):
                raise AssertionError("never told to go")
            wait_until(lambda: pub.stats()["subscribers"] >= 1, 30, "the subscriber attaches")
            sent = batch = 0
            while sent < total:
                n = min(total - sent, 1000 if batch % 2 == 0 else 777)
                sizes: Any = RECORD if batch % 2 == 0 else np.full(n, RECORD, dtype=np.uint64)
                assert pub.send_packed(records(sent, n), sizes, block=True, timeout=30.0) == n
                sent += n
                batch += 1
            events.put({"kind": "result", "sent": sent, "batches": batch})
            if not go.wait(60):  # pragma: no cover - the parent sets go before it reads
                raise AssertionError("unreachable")
            # Stay until the subscriber has read everything (it closes, then we may unlink).
            wait_until(lambda: pub.stats()["subscribers"] == 0, 60, "the subscriber is done")
    _run(events, body)


def packed_puller(name: str, index: int, events: Any) -> None:
    """A competing puller: recv_packed until a SENTINEL record; reports the sequence numbers it took,
    in the order it took them."""
    def body() -> None:
        with Puller(name, timeout_connect=30.0) as pull:
            events.put({"kind": "ready", "index": index, "pid": os.getpid()})
            buffer = np.empty((256, WORDS), dtype=np.uint64)
            sizes = np.empty(256, dtype=np.uint64)
            taken: List[np.ndarray] = []
            while True:
                n = pull.recv_packed(buffer, sizes, timeout=30.0)
                if n == 0:
                    raise AssertionError(f"puller {index}: nothing within 30 s after "
                                         f"{sum(len(t) for t in taken)} records")
                assert (sizes[:n] == RECORD).all(), sizes[:n]
                seq = check_records(buffer[:n]).copy()
                if seq[-1] == SENTINEL:
                    assert (seq[:-1] != SENTINEL).all()
                    taken.append(seq[:-1])
                    break
                assert (seq != SENTINEL).all(), "a record after the sentinel"
                taken.append(seq)
            events.put({"kind": "result", "index": index, "seq": np.concatenate(taken).tobytes()})
    _run(events, body)


# ---- across processes ---------------------------------------------------------------------------------

@pytest.mark.timeout(180)
def test_200k_records_publisher_process_to_subscriber_in_order(channel: str) -> None:
    total = 200_000
    events, go = CTX.Queue(), CTX.Event()
    with Children() as kids:
        proc = kids.start(packed_publisher, channel, total, go, events)
        get(events, 60, "the publisher", "ready")
        buffer = np.empty((500, WORDS), dtype=np.uint64)  # not a divisor of the sender's batches
        sizes = array("Q", bytes(8 * 500))
        with Subscriber(channel, timeout_connect=30.0) as sub:
            go.set()
            received = 0
            while received < total:
                n = sub.recv_packed(buffer, sizes, timeout=30.0)
                assert n > 0, f"nothing within 30 s after {received} records"
                assert list(sizes[:n]) == [RECORD] * n
                seq = check_records(buffer[:n])
                assert (seq == np.arange(received, received + n, dtype=np.uint64)).all(), \
                    f"out of order at {received}: {seq[:8]}"
                received += n
            result = get(events, 60, "the publisher's report", "result")
            assert result["sent"] == total and received == total
            assert sub.recv_packed(buffer, sizes, timeout=0) == 0  # nothing more, nothing twice
            stats = sub.stats()
            assert stats["received"] == total and stats["dropped"] == 0
        assert join(proc, 60, "the publisher") == 0


@pytest.mark.timeout(180)
def test_work_queue_of_200k_records_two_puller_processes_each_record_exactly_once(channel: str) -> None:
    total = 200_000
    events = CTX.Queue()
    with Children() as kids, Pusher(channel, num_slots=512, slot_size=RECORD) as push:
        procs = [kids.start(packed_puller, channel, i, events) for i in range(2)]
        for _ in procs:
            get(events, 60, "a puller", "ready")
        wait_until(lambda: push.stats()["pullers"] >= 2, 30, "both pullers attach")
        sent = 0
        while sent < total:
            n = min(total - sent, 4096)
            assert push.send_packed(records(sent, n), RECORD, timeout=30.0) == n
            sent += n
        sentinel = records_of(np.array([SENTINEL], dtype=np.uint64))
        results = []
        for _ in procs:  # one sentinel at a time: the puller that takes it stops and reports
            assert push.send_packed(sentinel, RECORD, timeout=30.0) == 1
            results.append(get(events, 60, "a puller's report", "result"))
        for proc in procs:
            assert join(proc, 30, "a puller") == 0
    taken = [np.frombuffer(r["seq"], dtype=np.uint64) for r in results]
    for seq in taken:
        assert (np.diff(seq.astype(np.int64)) > 0).all(), "a puller took records out of queue order"
    everything = np.sort(np.concatenate(taken))
    assert everything.size == total, f"{everything.size} records taken for {total} pushed"
    assert (everything == np.arange(total, dtype=np.uint64)).all(), "a record lost or taken twice"


@pytest.mark.timeout(120)
def test_recv_into_1_mib_frames_from_another_process_with_one_copy(channel: str) -> None:
    """Frames of 1 MiB from a publisher process, received straight into numpy arrays, a bytearray
    and a memoryview, each checked in full."""
    size, count = 1 << 20, 40
    events, linger = CTX.Queue(), CTX.Event()
    with Children() as kids:
        proc = kids.start(pattern_publisher, channel, size, 0, count, events, linger)
        get(events, 60, "the publisher", "ready")
        targets: List[Any] = [np.empty(size // 8, dtype=np.uint64), bytearray(size),
                              memoryview(bytearray(size + 64))[32:32 + size]]
        with Subscriber(channel, timeout_connect=30.0) as sub:
            for seq in range(count):
                target = targets[seq % len(targets)]
                assert sub.recv_into(target, timeout=30.0) == size
                assert check_pattern(bytes(target)) == seq
            get(events, 60, "the publisher's report", "result")
            assert sub.recv_into(targets[0], timeout=0) is None
        linger.set()
        assert join(proc, 60, "the publisher") == 0


# ---- interop with the one-message calls -------------------------------------------------------------

def test_send_packed_arrives_as_ordinary_messages_and_send_bytes_through_recv_packed(channel: str) -> None:
    with Publisher(channel, num_slots=64, slot_size=128) as pub, Subscriber(channel) as sub:
        data = b"a" + b"bc" + b"" + b"def" + b"x" * 128
        assert pub.send_packed(data, array("Q", [1, 2, 0, 3, 128])) == 5
        assert [sub.recv_bytes(timeout=0) for _ in range(5)] == [b"a", b"bc", b"", b"def", b"x" * 128]
        assert pub.send_packed(np.arange(6, dtype=np.uint16), 4) == 3  # three 4-byte messages
        assert [np.frombuffer(sub.recv_bytes(timeout=0) or b"", np.uint16).tolist() for _ in range(3)] == \
            [[0, 1], [2, 3], [4, 5]]
        for message in (b"one", b"", b"three", bytes(range(100))):
            pub.send_bytes(message)
        buffer, sizes = bytearray(256), np.zeros(8, dtype=np.uint64)
        assert sub.recv_packed(buffer, sizes, timeout=0) == 4
        assert sizes[:4].tolist() == [3, 0, 5, 100]
        assert bytes(buffer[:108]) == b"one" + b"three" + bytes(range(100))
        assert sub.recv_packed(buffer, sizes, timeout=0) == 0
        assert sub.stats()["received"] == 12


def test_int_sizes_numpy_sizes_and_array_sizes_on_every_sender(channel: str) -> None:
    """send_packed and recv_packed on Publisher/Subscriber, Pusher/Puller and a Pair, with each kind
    of sizes; numpy integer scalars count as int sizes."""
    pub_ch, push_ch, pair_ch = channel + "/pub", channel + "/push", channel + "/pair"
    with Publisher(pub_ch, slot_size=256, lossless=True) as pub, Subscriber(pub_ch) as sub, \
            Pusher(push_ch, slot_size=256) as push, Puller(push_ch) as pull, \
            Pair(pair_ch, role="master", slot_size=256) as master, Pair(pair_ch, role="slave") as slave:
        for sender, receiver in ((pub, sub), (push, pull), (master, slave), (slave, master)):
            block = records(0, 12)
            for sizes in (RECORD, np.int64(RECORD), np.uint64(RECORD), array("Q", [RECORD] * 12),
                          np.full(12, RECORD, dtype=np.uint64), np.full((3, 4), RECORD, dtype=np.uint64),
                          memoryview(array("Q", [RECORD] * 12))):
                assert sender.send_packed(block, sizes) == 12
                out, got = np.zeros((16, WORDS), dtype=np.uint64), np.zeros(16, dtype=np.uint64)
                assert receiver.recv_packed(out, got, timeout=5.0) == 12, type(sizes)
                assert (check_records(out[:12]) == np.arange(12)).all() and (got[:12] == RECORD).all()
            # Messages of different sizes, and a bytes object as data.
            assert sender.send_packed(b"0123456789", np.array([4, 0, 6], dtype=np.uint64)) == 3
            assert [receiver.recv_bytes(timeout=5.0) for _ in range(3)] == [b"0123", b"", b"456789"]
            # An empty batch sends nothing.
            assert sender.send_packed(b"", RECORD) == 0
            assert sender.send_packed(b"", array("Q")) == 0
            assert receiver.recv_bytes(timeout=0) is None


def test_a_batch_larger_than_the_size_window_of_int_sizes(channel: str) -> None:
    """An int size goes to C as a window of repeated sizes (PACKED_WINDOW at most); a batch beyond it
    takes several C calls and arrives whole and in order."""
    from shmcomm._io import PACKED_WINDOW

    count = PACKED_WINDOW + 4321
    with Pusher(channel, num_slots=1 << 17, slot_size=8) as push, Puller(channel) as pull:
        assert push.send_packed(np.arange(count, dtype=np.uint64), 8, block=False) == count
        out, sizes = np.empty(count + 10, dtype=np.uint64), np.empty(count + 10, dtype=np.uint64)
        assert pull.recv_packed(out, sizes, timeout=5.0) == count
        assert (out[:count] == np.arange(count, dtype=np.uint64)).all() and (sizes[:count] == 8).all()


# ---- bad input: a clear error, nothing sent, nothing consumed ------------------------------------------

BAD_SEND = [
    ("a str", 1, SHMTypeError, "bytes-like"),
    (12345, 1, SHMTypeError, "bytes-like"),
    (np.arange(16, dtype=np.uint8)[::2], 1, SHMValueError, "contiguous"),
    (memoryview(bytearray(16))[::2], 1, SHMValueError, "contiguous"),
    (b"abc", 2, SHMValueError, "whole number"),
    (b"abc", 0, SHMValueError, "> 0"),
    (b"abc", -3, SHMValueError, "> 0"),
    (b"x" * 130, 65, SHMMessageSizeError, "slot_size"),
    (b"abc", 1.0, SHMTypeError, "sizes"),
    (b"abc", True, SHMTypeError, "sizes"),
    (b"abc", "3", SHMTypeError, "sizes"),
    (b"abc", [1, 2], SHMTypeError, "sizes"),
    (b"abc", array("I", [1, 2]), SHMTypeError, "uint64"),
    (b"abc", np.array([1, 2], dtype=np.int64), SHMTypeError, "uint64"),
    (b"abc", np.array([1.0, 2.0]), SHMTypeError, "uint64"),
    (b"abc", np.array([1, 2], dtype=">u8"), SHMTypeError, "uint64"),
    (b"abc", np.array([1, 0, 2, 0], dtype=np.uint64)[::2], SHMValueError, "contiguous"),
    (b"abc", array("Q", [1, 1]), SHMValueError, "add up to 2 bytes but data has 3"),
    (b"abc", array("Q", [1, 1, 1, 1]), SHMValueError, "add up to 4"),
    (b"abc", array("Q"), SHMValueError, "empty"),
    (b"x" * 100, array("Q", [30, 70]), SHMMessageSizeError, "message 1"),
    # Sizes whose sum wraps around 2**64 to data's size: refused for the huge one, nothing read.
    (b"x" * 64, array("Q", [32, 32, 2**64 - 64, 64]), SHMMessageSizeError, "message 2"),
]


@pytest.mark.parametrize("data, sizes, error, words", BAD_SEND, ids=[f"{i}" for i in range(len(BAD_SEND))])
def test_bad_send_packed_arguments_say_what_to_do_and_send_nothing(channel: str, data: Any, sizes: Any,
                                                                     error: type, words: str) -> None:
    for make in (lambda: (Publisher(channel, slot_size=64), lambda: Subscriber(channel)),
                 lambda: (Pusher(channel, slot_size=64), lambda: Puller(channel))):
        sender, make_receiver = make()
        with sender, make_receiver() as receiver:
            with pytest.raises(error, match=words):
                sender.send_packed(data, sizes)
            assert receiver.recv_bytes(timeout=0) is None
            assert sender.stats()["sent"] == 0


@pytest.mark.parametrize("buffer, sizes, error, words", [
    (b"read-only", np.zeros(4, dtype=np.uint64), SHMTypeError, "writable"),
    (memoryview(bytearray(64)).toreadonly(), np.zeros(4, dtype=np.uint64), SHMTypeError, "writable"),
    ("a str", np.zeros(4, dtype=np.uint64), SHMTypeError, "writable buffer"),
    (None, np.zeros(4, dtype=np.uint64), SHMTypeError, "writable buffer"),
    (np.zeros(64, dtype=np.uint8)[::2], np.zeros(4, dtype=np.uint64), SHMValueError, "contiguous"),
    (bytearray(0), np.zeros(4, dtype=np.uint64), SHMValueError, "room"),
    (bytearray(64), np.zeros(0, dtype=np.uint64), SHMValueError, "room"),
    (bytearray(64), bytes(32), SHMTypeError, "uint64"),
    (bytearray(64), 4, SHMTypeError, "sizes"),
    (bytearray(64), [0, 0], SHMTypeError, "sizes"),
    (bytearray(64), bytearray(32), SHMTypeError, "uint64"),
    (bytearray(64), np.zeros(4, dtype=np.int32), SHMTypeError, "uint64"),
    (bytearray(64), np.zeros(4, dtype=np.float64), SHMTypeError, "uint64"),
    (bytearray(64), np.zeros(8, dtype=np.uint64)[::2], SHMValueError, "contiguous"),
    (bytearray(64), memoryview(array("Q", [0, 0])).toreadonly(), SHMTypeError, "writable"),
], ids=lambda value: type(value).__name__)
def test_bad_recv_packed_arguments_say_what_to_do_and_consume_nothing(channel: str, buffer: Any, sizes: Any,
                                                                        error: type, words: str) -> None:
    with Pusher(channel, slot_size=64) as push, Puller(channel) as pull:
        push.send_bytes(b"kept")
        with pytest.raises(error, match=words):
            pull.recv_packed(buffer, sizes, timeout=0)
        assert pull.recv_bytes(timeout=0) == b"kept"


@pytest.mark.parametrize("timeout, error", [(-1, SHMValueError), (float("nan"), SHMValueError),
                                            ("1", SHMTypeError), (True, SHMTypeError)], ids=repr)
def test_bad_timeouts_of_packed_calls_are_refused(channel: str, timeout: Any, error: type) -> None:
    with Publisher(channel, slot_size=64, lossless=True) as pub, Subscriber(channel) as sub:
        pub.send_bytes(b"kept")
        with pytest.raises(error, match="timeout"):
            sub.recv_packed(bytearray(64), np.zeros(4, dtype=np.uint64), timeout=timeout)
        with pytest.raises(error, match="timeout"):
            pub.send_packed(b"x" * 8, 8, block=True, timeout=timeout)
        assert sub.recv_bytes(timeout=0) == b"kept" and sub.recv_bytes(timeout=0) is None


def test_closed_endpoints_and_request_reply_refuse_packed_calls(channel: str) -> None:
    pub, sub = Publisher(channel), Subscriber(channel)
    sub.close()
    pub.close()
    with pytest.raises(SHMClosedError, match="closed"):
        pub.send_packed(b"x" * 8, 8)
    with pytest.raises(SHMClosedError, match="closed"):
        sub.recv_packed(bytearray(8), np.zeros(1, dtype=np.uint64))
    service = channel + "/rr"
    with Replier(service) as rep, Requester(service) as req:
        for endpoint in (rep, req):
            with pytest.raises(SHMSequenceError, match="recv_into"):
                endpoint.recv_packed(bytearray(8), np.zeros(1, dtype=np.uint64), timeout=0)


# ---- a buffer too small, timeouts, a full channel --------------------------------------------------------

def test_recv_packed_keeps_a_first_message_too_large_and_leaves_later_ones_queued(channel: str) -> None:
    with Pusher(channel, slot_size=256) as push, Puller(channel) as pull:
        for size in (100, 100, 100, 10):
            push.send_bytes(bytes([size]) * size)
        sizes = np.zeros(8, dtype=np.uint64)
        small = bytearray(64)
        with pytest.raises(SHMValueError, match="100 bytes but the buffer only 64") as info:
            pull.recv_packed(small, sizes, timeout=5.0)
        assert "kept" in str(info.value)
        assert small == bytearray(64)  # untouched
        with pytest.raises(ValueError):  # still kept
            pull.recv_packed(np.zeros(8, dtype=np.uint8), sizes, timeout=5.0)
        room = bytearray(250)  # the kept one and one more fit; the third one waits for the next call
        assert pull.recv_packed(room, sizes, timeout=5.0) == 2
        assert sizes[:2].tolist() == [100, 100] and bytes(room[:200]) == bytes([100]) * 200
        assert pull.recv_packed(room, sizes, timeout=5.0) == 2
        assert sizes[:2].tolist() == [100, 10]
        assert pull.recv_packed(room, sizes, timeout=0) == 0
        assert pull.stats()["received"] == 4


def _kept_by(how: str, sub: Subscriber, size: int) -> None:
    """Receives with a buffer one byte too small for the next message (``size`` bytes): raises."""
    small: Any = {"recv_packed": bytearray(size - 1), "numpy": np.zeros(size - 1, dtype=np.uint8),
                  "memoryview": memoryview(bytearray(size))[1:], "bytearray": bytearray(size - 1)}[how]
    with pytest.raises(SHMValueError, match=f"{size} bytes but the buffer only {size - 1}"):
        if how == "recv_packed":
            sub.recv_packed(small, np.zeros(4, dtype=np.uint64), timeout=5.0)
        else:
            sub.recv_into(small, timeout=5.0)


def _next_message(how: str, sub: Subscriber) -> Any:
    if how == "recv_bytes":
        return sub.recv_bytes(timeout=5.0)
    if how == "recv_view":
        with sub.recv_view(timeout=5.0) as view:  # type: ignore[union-attr]
            return bytes(view)
    if how == "recv_many_bytes":
        return sub.recv_many_bytes(8, timeout=5.0)[0]
    if how == "recv_into":
        buffer = np.zeros(1 << 16, dtype=np.uint8)
        n = sub.recv_into(buffer, timeout=5.0)
        return None if n is None else buffer[:n].tobytes()
    buffer, sizes = bytearray(1 << 16), np.zeros(1, dtype=np.uint64)
    assert sub.recv_packed(buffer, sizes, timeout=5.0) == 1
    return bytes(buffer[:int(sizes[0])])


@pytest.mark.parametrize("size", [100, 40_000])
@pytest.mark.parametrize("then", ["recv_bytes", "recv_view", "recv_many_bytes", "recv_into", "recv_packed"])
@pytest.mark.parametrize("how", ["recv_packed", "numpy", "memoryview", "bytearray"])
def test_a_kept_message_survives_the_publisher_lapping_the_ring(channel: str, how: str, then: str,
                                                                 size: int) -> None:
    """Overwrite mode: the message a buffer was too small for is taken out of the ring when the error is
    raised, so a publisher that laps the ring meanwhile cannot overwrite it. The next receive, of any
    kind, gets it; then the subscriber goes on with the oldest messages still in the ring."""
    with Publisher(channel, num_slots=4, slot_size=size) as pub, Subscriber(channel) as sub:
        kept = (bytes(range(256)) * (size // 256 + 1))[:size]
        pub.send_bytes(kept)
        _kept_by(how, sub, size)
        _kept_by(how, sub, size)  # still kept
        for i in range(10):  # more than num_slots: the ring is lapped
            pub.send_bytes(bytes([i]) * 8)
        assert _next_message(then, sub) == kept
        rest = []
        while (message := sub.recv_bytes(timeout=0)) is not None:
            rest.append(message[0])
        assert rest and rest == sorted(rest) and rest[-1] == 9, rest
        stats = sub.stats()
        assert stats["received"] == 1 + len(rest) and stats["received"] + stats["dropped"] == 11


def test_recv_packed_and_recv_into_return_nothing_on_timeout(channel: str) -> None:
    with Publisher(channel, slot_size=64) as pub, Subscriber(channel) as sub:
        buffer, sizes = np.zeros(64, dtype=np.uint8), np.zeros(4, dtype=np.uint64)
        assert sub.recv_packed(buffer, sizes, timeout=0) == 0
        assert sub.recv_packed(buffer, sizes, timeout=0.05) == 0
        assert sub.recv_into(buffer, timeout=0.05) is None and sub.recv_into(bytearray(8), timeout=0) is None
        assert not buffer.any() and not sizes.any()
        pub.send_bytes(b"late")
        assert sub.recv_packed(buffer, sizes, timeout=5.0) == 1 and sizes[0] == 4


def test_a_full_lossless_channel_raises_with_sent(channel: str) -> None:
    with Publisher(channel, num_slots=4, slot_size=RECORD, lossless=True) as pub, Subscriber(channel) as sub:
        with pytest.raises(SHMBufferFullError, match="block=True") as full:
            pub.send_packed(records(0, 10), RECORD)
        assert full.value.sent == 4  # type: ignore[attr-defined]
        with pytest.raises(SHMTimeoutError) as late:
            pub.send_packed(records(4, 6), np.full(6, RECORD, dtype=np.uint64), block=True, timeout=0.05)
        assert late.value.sent == 0  # type: ignore[attr-defined]
        out, sizes = np.zeros((8, WORDS), dtype=np.uint64), np.zeros(8, dtype=np.uint64)
        assert sub.recv_packed(out, sizes, timeout=0) == 4
        assert (check_records(out[:4]) == np.arange(4)).all()
        assert pub.send_packed(records(4, 4), RECORD) == 4  # room again: the rest goes on
        assert sub.recv_packed(out, sizes, timeout=0) == 4 and (check_records(out[:4]) == np.arange(4, 8)).all()


@pytest.mark.parametrize("sizes", ["int", "array"])
def test_send_packed_spanning_several_wait_slices_sends_each_record_once(channel: str, monkeypatch: Any,
                                                                          sizes: str) -> None:
    """A batch sent into a full queue waits in slices; a slice that times out has sent part of the
    batch, and the next slice must go on from there, not send those records again."""
    import shmcomm._endpoint as endpoint

    monkeypatch.setattr(endpoint, "SLICE_NS", 1_000_000)  # 1 ms slices: many of them time out
    count = 200
    with Pusher(channel, num_slots=8, slot_size=RECORD) as push, Puller(channel) as pull:
        got: List[int] = []
        stop = threading.Event()

        def slow_puller() -> None:
            out = np.zeros((1, WORDS), dtype=np.uint64)
            one = np.zeros(1, dtype=np.uint64)
            while len(got) < count and not stop.is_set():
                if pull.recv_packed(out, one, timeout=5.0) == 0:
                    return
                got.append(int(check_records(out)[0]))
                stop.wait(0.001)  # slower than the pusher: the queue stays full

        thread = threading.Thread(target=slow_puller)
        thread.start()
        try:
            lens: Any = RECORD if sizes == "int" else np.full(count, RECORD, dtype=np.uint64)
            assert push.send_packed(records(0, count), lens, timeout=30.0) == count
            thread.join(timeout=60)
        finally:
            stop.set()
            thread.join(timeout=10)
        assert got == list(range(count))
        assert pull.recv_bytes(timeout=0.2) is None  # nothing sent twice


# ---- recv_into: one copy, every kind of buffer -------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda n: bytearray(n), lambda n: np.zeros(n, dtype=np.uint8),
                                  lambda n: memoryview(bytearray(n)), lambda n: np.zeros(n // 8, dtype=np.uint64),
                                  lambda n: memoryview(bytearray(n)).cast("B", (n // 16, 16))],
                         ids=["bytearray", "numpy", "memoryview", "numpy uint64", "2-d memoryview"])
@pytest.mark.parametrize("size", [64, 4096, 40_000])
def test_recv_into_every_kind_of_buffer_and_size(channel: str, make: Callable[[int], Any], size: int) -> None:
    with Pusher(channel, slot_size=size) as push, Puller(channel) as pull:
        message = (bytes(range(251)) * (size // 251 + 1))[:size]
        push.send_bytes(message)
        push.send_bytes(message[:10])
        target = make(size)
        assert pull.recv_into(target, timeout=5.0) == size and bytes(target) == message
        assert pull.recv_into(target, timeout=5.0) == 10 and bytes(target)[:10] == message[:10]
        push.send_bytes(message)
        with pytest.raises(SHMValueError, match=f"{size} bytes but the buffer only {size - 16}"):
            pull.recv_into(make(size - 16), timeout=5.0)
        again = make(size)
        assert pull.recv_into(again, timeout=0) == size and bytes(again) == message  # kept
        assert pull.recv_into(again, timeout=0) is None
