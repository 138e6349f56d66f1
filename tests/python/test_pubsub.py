"""PUB/SUB: the shm-comm reference API (constructors, defaults, return values, stats), serialization,
buffers, zero-copy paths, life cycle, garbage, logging. Cross-process behaviour is in
test_pubsub_procs.py; these tests also cross a process boundary where it matters (a spawned child
publisher) but mostly run both ends in one process, which shares nothing but the segment."""

from __future__ import annotations

import gc
import inspect
import logging
import os
import pickle
import queue
import signal
import subprocess
import threading
import time
import weakref

import numpy as np
import pytest

import shmcomm
from procs import CTX, Children, child_env, get, join, live_publisher, python_snippet
from shmcomm import (MessageView, Publisher, PublisherLoan, SHMBufferFullError, SHMClosedError,
                     SHMError, SHMStaleViewError, SHMTimeoutError, Subscriber)


def segment_path(name: str) -> str:
    return os.path.join("/dev/shm", shmcomm.os_name(name))


# ---- the reference API ----------------------------------------------------------------------------

def test_constructor_signatures_match_the_reference_api() -> None:
    pub = inspect.signature(Publisher)
    assert list(pub.parameters)[:4] == ["name", "num_slots", "slot_size", "serialization"]
    assert pub.parameters["num_slots"].default == 64
    assert pub.parameters["slot_size"].default == 4096
    assert pub.parameters["serialization"].default == "pickle"
    sub = inspect.signature(Subscriber)
    assert list(sub.parameters)[:3] == ["name", "timeout_connect", "serialization"]
    assert sub.parameters["timeout_connect"].default == 5.0
    assert sub.parameters["serialization"].default == "pickle"
    for method, params in [(Publisher.send, ["data", "block", "timeout"]),
                           (Publisher.send_bytes, ["payload", "block", "timeout"]),
                           (Subscriber.recv, ["timeout"]), (Subscriber.recv_bytes, ["timeout"])]:
        signature = inspect.signature(method)
        assert list(signature.parameters)[1:] == params, method
    assert inspect.signature(Publisher.send).parameters["block"].default is False
    assert inspect.signature(Publisher.send).parameters["timeout"].default is None
    assert inspect.signature(Subscriber.recv).parameters["timeout"].default is None


def test_defaults_create_the_reference_geometry(channel: str) -> None:
    with Publisher(channel) as pub, Subscriber(channel) as sub:
        for stats in (pub.stats(), sub.stats()):
            assert stats["num_slots"] == 64
            assert stats["slot_size"] == 4096
        assert pub.send({"x": 1}) is True
        assert sub.recv(timeout=1.0) == {"x": 1}


def test_send_and_send_bytes_return_true_recv_returns_none_on_timeout(channel: str) -> None:
    with Publisher(channel) as pub, Subscriber(channel) as sub:
        assert pub.send([1, 2, 3]) is True
        assert pub.send_bytes(pickle.dumps("two")) is True
        assert sub.recv(timeout=1.0) == [1, 2, 3]
        assert sub.recv(timeout=1.0) == "two"
        for call in (sub.recv, sub.recv_bytes):
            start = time.monotonic()
            assert call(timeout=0.05) is None
            elapsed = time.monotonic() - start
            assert 0.04 <= elapsed < 2.0, elapsed  # the timeout is honoured, in both directions
            assert call(timeout=0) is None


def test_stats_dicts(channel: str) -> None:
    with Publisher(channel, num_slots=8, slot_size=128) as pub, Subscriber(channel) as sub:
        for i in range(5):
            pub.send(i)
        assert [sub.recv(timeout=1.0) for _ in range(3)] == [0, 1, 2]
        p, s = pub.stats(), sub.stats()
        assert isinstance(p, dict) and isinstance(s, dict)
        assert p["num_slots"] == s["num_slots"] == 8 and p["slot_size"] == s["slot_size"] == 128
        assert p["msg_count"] == p["head"] == 5 and p["sent"] == 5
        assert p["subscribers"] == s["subscribers"] == 1 and p["publishers"] == 1
        assert s["local_tail"] == 3  # the subscriber's own cursor: the next position it reads
        assert s["received"] == 3 and s["dropped"] == 0 and s["skipped"] == 0
        assert s["publisher_alive"] is True
        sub.recv(timeout=1.0)
        assert sub.stats()["local_tail"] == 4


@pytest.mark.parametrize("num_slots,slot_size,pooled", [(8, 128, False), (8, 65535, False), (8, 65536, True),
                                                       (3, 1 << 20, True), (64, 65536, True),
                                                       (2, 1 << 20, False), (65, 65536, False)])
def test_large_slots_get_a_payload_pool_and_frames_round_trip(channel: str, num_slots: int, slot_size: int,
                                                              pooled: bool) -> None:
    """A payload pool by default for slots of 64 KiB or more and 3..64 of them (docs/memory-layout.md);
    through it, messages of every size arrive whole, by copy and by zero-copy view, on a ring
    lapped several times."""
    with Publisher(channel, num_slots=num_slots, slot_size=slot_size, serialization="raw") as pub, \
            Subscriber(channel, serialization="raw") as sub:
        assert pub.stats()["payload_pool"] is pooled and sub.stats()["payload_pool"] is pooled
        for seq in range(3 * num_slots):
            payload = bytes([seq % 251]) * (1 + seq * 7919 % slot_size)
            pub.send_bytes(payload)
            if seq % 2:
                assert sub.recv_bytes(timeout=1.0) == payload
            else:
                with sub.recv_view(timeout=1.0) as view:
                    assert view.data == payload
        assert sub.stats()["dropped"] == 0


def test_a_subscriber_sees_only_messages_published_after_it_attached(channel: str) -> None:
    with Publisher(channel) as pub:
        pub.send("before")
        with Subscriber(channel) as sub:
            pub.send("after")
            assert sub.recv(timeout=1.0) == "after"
            assert sub.recv(timeout=0) is None


def test_subscribers_are_independent(channel: str) -> None:
    with Publisher(channel) as pub, Subscriber(channel) as a, Subscriber(channel) as b:
        for i in range(10):
            pub.send(i)
        assert [a.recv(timeout=1.0) for _ in range(10)] == list(range(10))
        assert [b.recv(timeout=1.0) for _ in range(10)] == list(range(10))
        assert pub.stats()["subscribers"] == 2


# ---- serialization --------------------------------------------------------------------------------

OBJECTS = {
    "pickle": [{"pose": (1.0, 2.0, 0.5), "id": 7}, [1, "two", 3.0, None], "text", 42, b"bytes",
               {"nested": {"set": {1, 2}, "tuple": (1, (2, 3))}}],
    "msgpack": [{"pose": [1.0, 2.0, 0.5], "id": 7}, [1, "two", 3.0, None], "text", 42, b"bytes",
                {"nested": {"list": [1, 2]}}],
}


@pytest.mark.parametrize("method", ["pickle", "msgpack"])
def test_serialization_round_trips(channel: str, method: str) -> None:
    with Publisher(channel, serialization=method) as pub, Subscriber(channel, serialization=method) as sub:
        for obj in OBJECTS[method]:
            assert pub.send(obj) is True
            assert sub.recv(timeout=1.0) == obj
        # Raw bytes travel untouched whatever the serialization.
        pub.send_bytes(b"\x00\x01raw")
        assert sub.recv_bytes(timeout=1.0) == b"\x00\x01raw"
        for obj in OBJECTS[method]:
            data = shmcomm.serialize.serialize(obj, method)
            assert isinstance(data, bytes)
            assert shmcomm.serialize.deserialize(data, method) == obj


def test_raw_serialization_passes_bytes_through(channel: str) -> None:
    with Publisher(channel, serialization="raw") as pub, Subscriber(channel, serialization="raw") as sub:
        for payload in (b"abc", bytearray(b"def"), memoryview(b"ghi"), np.arange(4, dtype=np.uint8)):
            assert pub.send(payload) is True
            assert sub.recv(timeout=1.0) == bytes(payload)
        with pytest.raises(shmcomm.SHMSerializationError, match="raw"):
            pub.send({"not": "bytes"})


def test_a_message_that_cannot_be_deserialized_raises_a_serialization_error(channel: str) -> None:
    with Publisher(channel) as pub, Subscriber(channel) as sub:
        pub.send_bytes(b"this is not a pickle")
        with pytest.raises(shmcomm.SHMSerializationError, match="deserialize"):
            sub.recv(timeout=1.0)
        pub.send("fine")
        assert sub.recv(timeout=1.0) == "fine"  # the channel goes on


def test_unpicklable_object_raises_a_serialization_error(channel: str) -> None:
    with Publisher(channel) as pub:
        with pytest.raises(shmcomm.SHMSerializationError):
            pub.send(lambda: None)
        assert pub.stats()["sent"] == 0


# ---- buffers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "numpy", "numpy2d", "memoryview_slice"])
def test_send_bytes_accepts_any_contiguous_buffer(channel: str, kind: str) -> None:
    data = np.arange(256, dtype=np.float64)
    payload = {
        "bytes": data.tobytes(),
        "bytearray": bytearray(data.tobytes()),
        "memoryview": memoryview(data.tobytes()),
        "numpy": data,
        "numpy2d": data.reshape(16, 16),
        "memoryview_slice": memoryview(data.tobytes())[8:1000],
    }[kind]
    with Publisher(channel, slot_size=4096) as pub, Subscriber(channel) as sub:
        assert pub.send_bytes(payload) is True
        received = sub.recv_bytes(timeout=1.0)
        assert received == bytes(memoryview(payload).cast("B"))


def test_send_bytes_rejects_non_buffers_and_non_contiguous_arrays(channel: str) -> None:
    with Publisher(channel) as pub, Subscriber(channel) as sub:
        with pytest.raises(TypeError):
            pub.send_bytes("a str is not bytes")
        with pytest.raises(TypeError):
            pub.send_bytes(12345)
        with pytest.raises(ValueError, match="contiguous"):
            pub.send_bytes(np.arange(100)[::2])
        assert sub.recv_bytes(timeout=0) is None  # nothing half-sent
        assert pub.stats()["sent"] == 0


def test_recv_into_bytearray_and_numpy(channel: str) -> None:
    with Publisher(channel) as pub, Subscriber(channel) as sub:
        pub.send_bytes(b"hello")
        buf = bytearray(16)
        assert sub.recv_into(buf, timeout=1.0) == 5
        assert bytes(buf[:5]) == b"hello"
        frame = np.arange(12, dtype=np.int32).reshape(3, 4)
        pub.send_bytes(frame)
        out = np.zeros((3, 4), dtype=np.int32)
        assert sub.recv_into(out, timeout=1.0) == frame.nbytes
        np.testing.assert_array_equal(out, frame)
        assert sub.recv_into(buf, timeout=0.01) is None  # timeout


def test_recv_into_a_too_small_buffer_raises_and_keeps_the_message(channel: str) -> None:
    with Publisher(channel) as pub, Subscriber(channel) as sub:
        pub.send_bytes(b"0123456789")
        pub.send_bytes(b"next")
        small = bytearray(4)
        with pytest.raises(ValueError, match="10 bytes"):
            sub.recv_into(small, timeout=1.0)
        with pytest.raises(ValueError):
            sub.recv_into(np.zeros(2, dtype=np.uint8), timeout=1.0)  # still kept
        big = bytearray(32)
        assert sub.recv_into(big, timeout=1.0) == 10
        assert bytes(big[:10]) == b"0123456789"
        assert sub.recv_bytes(timeout=1.0) == b"next"
        # and kept for recv_bytes / recv as well
        pub.send("object")
        with pytest.raises(ValueError):
            sub.recv_into(bytearray(1), timeout=1.0)
        assert sub.recv(timeout=1.0) == "object"


def test_recv_into_rejects_read_only_buffers(channel: str) -> None:
    with Publisher(channel) as pub, Subscriber(channel) as sub:
        pub.send_bytes(b"x")
        with pytest.raises(TypeError):
            sub.recv_into(b"immutable", timeout=1.0)
        assert sub.recv_bytes(timeout=1.0) == b"x"


# ---- latest -----------------------------------------------------------------------------------------

def test_latest_skips_to_the_newest_and_counts_the_skipped(channel: str) -> None:
    with Publisher(channel, num_slots=16) as pub, Subscriber(channel) as sub:
        assert sub.latest() is None  # default: does not wait
        for i in range(10):
            pub.send(i)
        assert sub.latest() == 9
        assert sub.latest() is None
        stats = sub.stats()
        assert stats["skipped"] == 9 and stats["received"] == 1 and stats["dropped"] == 0
        pub.send(10)
        pub.send(11)
        assert sub.recv(timeout=1.0) == 10  # recv after latest goes on in order
        assert sub.latest_bytes() == pickle.dumps(11, protocol=pickle.HIGHEST_PROTOCOL)
        stats = sub.stats()
        assert stats["received"] + stats["dropped"] + stats["skipped"] == pub.stats()["sent"] == 12


def test_overwrite_mode_drops_the_oldest_and_counts_them(channel: str) -> None:
    with Publisher(channel, num_slots=4, slot_size=64) as pub, Subscriber(channel) as sub:
        for i in range(20):
            pub.send(i)  # never blocks
        got = []
        while True:
            msg = sub.recv(timeout=0)
            if msg is None:
                break
            got.append(msg)
        assert got == sorted(got) and got[-1] == 19 and 1 <= len(got) <= 4
        stats = sub.stats()
        assert stats["received"] == len(got)
        assert stats["received"] + stats["dropped"] == 20


# ---- zero-copy views ---------------------------------------------------------------------------------

def test_recv_view_is_a_zero_copy_view(channel: str) -> None:
    frame = np.arange(64, dtype=np.float32).reshape(8, 8)
    with Publisher(channel, slot_size=1024) as pub, Subscriber(channel) as sub:
        pub.send_bytes(frame)
        view = sub.recv_view(timeout=1.0)
        assert isinstance(view, MessageView)
        assert len(view) == frame.nbytes
        with view:
            array = view.numpy(np.float32, (8, 8))
            np.testing.assert_array_equal(array, frame)
            assert not array.flags.writeable and not array.flags.owndata
            assert view.data is not None and view.data.readonly
            assert bytes(view) == frame.tobytes()
            del array
        assert view.data is None
        with pytest.raises(SHMClosedError):
            view.numpy()
        assert sub.recv_view(timeout=0.01) is None


def test_only_one_view_at_a_time(channel: str) -> None:
    with Publisher(channel) as pub, Subscriber(channel) as sub:
        pub.send_bytes(b"one")
        pub.send_bytes(b"two")
        view = sub.recv_view(timeout=1.0)
        with pytest.raises(SHMError, match="release"):
            sub.recv_view(timeout=0)
        assert view.release() is True
        assert view.release() is True  # twice is fine
        with sub.recv_view(timeout=1.0) as second:
            assert bytes(second) == b"two"


def test_view_overwritten_in_overwrite_mode_is_reported_stale(channel: str) -> None:
    with Publisher(channel, num_slots=4, slot_size=64) as pub, Subscriber(channel) as sub:
        pub.send_bytes(b"A" * 64)
        view = sub.recv_view(timeout=1.0)
        assert bytes(view) == b"A" * 64
        for i in range(10):  # more than num_slots: the viewed slot is reused
            pub.send_bytes(bytes([ord("B") + i]) * 64)
        # It is a view, not a copy: it shows the new bytes, and the release says so.
        assert bytes(view) != b"A" * 64
        with pytest.raises(SHMStaleViewError, match="overwritten"):
            with view:
                pass
        stats = sub.stats()
        assert stats["received"] == 0 and stats["dropped"] >= 1
        # The subscriber goes on with the oldest message still in the ring.
        rest = []
        while (msg := sub.recv_bytes(timeout=0)) is not None:
            rest.append(msg)
        assert rest and rest[-1] == bytes([ord("B") + 9]) * 64
        stats = sub.stats()
        assert stats["received"] + stats["dropped"] == 11


def test_view_release_returns_false_when_overwritten(channel: str) -> None:
    with Publisher(channel, num_slots=2, slot_size=16) as pub, Subscriber(channel) as sub:
        pub.send_bytes(b"first")
        view = sub.recv_view(timeout=1.0)
        for _ in range(5):
            pub.send_bytes(b"later")
        assert view.release() is False


def test_lossless_view_pins_its_slot(channel: str) -> None:
    with Publisher(channel, num_slots=4, slot_size=64, lossless=True) as pub, Subscriber(channel) as sub:
        pub.send_bytes(b"A" * 64)
        view = sub.recv_view(timeout=1.0)
        sent = 0
        with pytest.raises(SHMBufferFullError):
            while sent < 100:
                pub.send_bytes(b"B" * 64)
                sent += 1
        assert sent == 3  # the ring holds num_slots messages; the viewed one is not overwritten
        with pytest.raises(SHMTimeoutError):
            pub.send_bytes(b"C" * 64, block=True, timeout=0.05)
        assert bytes(view) == b"A" * 64
        assert view.release() is True
        assert pub.send_bytes(b"D" * 64) is True
        assert [sub.recv_bytes(timeout=1.0) for _ in range(4)] == [b"B" * 64] * 3 + [b"D" * 64]


def test_view_does_not_outlive_its_subscriber(channel: str) -> None:
    with Publisher(channel) as pub:
        sub = Subscriber(channel)
        pub.send_bytes(b"payload")
        view = sub.recv_view(timeout=1.0)
        sub.close()
        with pytest.raises(SHMClosedError):
            bytes(view)
        assert view.release() is True


def _mapped(os_name: str) -> bool:
    with open("/proc/self/maps") as maps:
        return any(f"/dev/shm/{os_name}" in line for line in maps)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc/self/maps (Linux)")
def test_arrays_from_loans_and_views_keep_the_memory_mapped_until_they_go(channel: str) -> None:
    """Slot buffers are made once per slot and kept: an array made from a loan or a view must still
    keep the segment mapped after close (and read the right bytes), and let it go once it is gone."""
    pub = Publisher(channel, num_slots=4, slot_size=64, lossless=True)
    sub = Subscriber(channel)
    os_name = next(str(s) for s in shmcomm.list_segments() if s.channel == channel)
    loan_array = None
    for i in range(10):  # round the ring twice: every slot's buffers are reused
        loan = pub.loan(8)
        loan_array = loan.numpy(np.uint64)
        loan_array[0] = i
        loan.commit()
        with sub.recv_view(timeout=1.0) as view:
            view_array = view.numpy(np.uint64)
            assert int(view_array[0]) == i
    assert len(sub._slots) <= 4 and len(pub._slots) <= 4
    sub.close()
    pub.close()
    assert _mapped(os_name)  # the arrays still point into it
    assert int(view_array[0]) == 9 and int(loan_array[0]) == 9
    del view_array, loan_array
    gc.collect()
    Publisher(channel, slot_size=64).close()  # any close unmaps what nothing refers to any more
    assert not _mapped(os_name)


def test_an_array_kept_from_a_view_survives_the_subscriber_following_a_restart(channel: str) -> None:
    """A subscriber that follows a restarted publisher leaves the old segment. An array made from
    a view of it, kept past release, must never fault (it used to: the old mapping was unmapped)."""
    code = f"""
        import numpy as np, shmcomm
        pub = shmcomm.Publisher({channel!r}, num_slots=4, slot_size=1 << 16)
        sub = shmcomm.Subscriber({channel!r})
        pub.send_bytes(np.arange(8192, dtype=np.uint64))
        with sub.recv_view(timeout=5) as view:
            kept = view.numpy(np.uint64)
        print(int(kept[:3].sum()), flush=True)
        pub.close()
        pub = shmcomm.Publisher({channel!r}, num_slots=4, slot_size=1 << 16)
        pub.send_bytes(b"second life")
        print(sub.recv_bytes(timeout=5).decode(), sub.stats()["reconnects"], flush=True)
        print(int(kept.sum()), flush=True)  # the old pages were given back: zeros
        sub.close()
        pub.close()
        print(int(kept.sum()), flush=True)  # still mapped while the array lives
    """
    proc = subprocess.run(python_snippet(code), capture_output=True, text=True, env=child_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:4] == ["3", "second life 1", "0", "0"]


def test_a_caller_releasing_its_memoryview_ends_only_its_own(channel: str) -> None:
    with Publisher(channel, num_slots=2, slot_size=16, lossless=True) as pub, Subscriber(channel) as sub:
        for i in range(6):  # three times round the two slots
            with pub.loan(1) as loan:
                with loan.data as mine:  # a memoryview's `with` releases it
                    mine[0] = i
            with sub.recv_view(timeout=1.0) as view:
                with view.data as seen:
                    assert seen[0] == i


# ---- loans ----------------------------------------------------------------------------------------

def test_loan_commit(channel: str) -> None:
    with Publisher(channel, slot_size=256) as pub, Subscriber(channel) as sub:
        loan = pub.loan()
        assert isinstance(loan, PublisherLoan)
        assert loan.data is not None and len(loan.data) == 256 and not loan.data.readonly
        loan.data[:5] = b"hello"
        loan.commit(5)
        assert sub.recv_bytes(timeout=1.0) == b"hello"
        with pytest.raises(SHMClosedError):
            loan.commit()  # once only
        loan = pub.loan(16)
        loan.numpy(np.float64)[:] = [1.5, 2.5]
        loan.commit()
        np.testing.assert_array_equal(np.frombuffer(sub.recv_bytes(timeout=1.0), np.float64), [1.5, 2.5])


def test_loan_cancel_publishes_nothing(channel: str) -> None:
    with Publisher(channel) as pub, Subscriber(channel) as sub:
        loan = pub.loan(8)
        loan.data[:] = b"unseen!!"
        loan.cancel()
        assert sub.recv_bytes(timeout=0.05) is None
        assert sub.stats()["dropped"] == 1  # its position is accounted for
        pub.send_bytes(b"seen")
        assert sub.recv_bytes(timeout=1.0) == b"seen"


def test_loan_as_context_manager(channel: str) -> None:
    with Publisher(channel) as pub, Subscriber(channel) as sub:
        with pub.loan(5) as loan:
            loan.data[:] = b"first"
        assert sub.recv_bytes(timeout=1.0) == b"first"
        with pytest.raises(RuntimeError):
            with pub.loan(5) as loan:
                loan.data[:] = b"never"
                raise RuntimeError("the producer failed half way")
        assert sub.recv_bytes(timeout=0.05) is None
        with pub.loan(4) as loan:
            loan.data[:] = b"next"
        assert sub.recv_bytes(timeout=1.0) == b"next"


def test_one_loan_at_a_time_and_bounded_size(channel: str) -> None:
    with Publisher(channel, slot_size=64) as pub:
        loan = pub.loan(8)
        with pytest.raises(SHMError, match="loan"):
            pub.loan(8)
        loan.cancel()
        with pytest.raises(ValueError):
            pub.loan(65)
        pub.loan(64).cancel()


def test_loan_to_a_subscriber_in_another_process(channel: str) -> None:
    """A loaned, committed slot reaches a subscriber in a separate process."""
    with Publisher(channel, slot_size=64, lossless=True) as pub:
        code = f"""
            import shmcomm
            with shmcomm.Subscriber({channel!r}, timeout_connect=10) as sub:
                print("attached", flush=True)
                print(sub.recv_bytes(timeout=10).decode(), flush=True)
        """
        proc = subprocess.Popen(python_snippet(code), stdout=subprocess.PIPE, text=True, env=child_env())
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "attached"
            with pub.loan(11) as loan:
                loan.data[:] = b"from a loan"
            out, _ = proc.communicate(timeout=20)
        finally:
            proc.kill()
            proc.wait()
        assert out.strip() == "from a loan"
        assert proc.returncode == 0


# ---- life cycle --------------------------------------------------------------------------------------

def test_iteration_stops_when_closed_from_another_thread(channel: str) -> None:
    with Publisher(channel) as pub:
        sub = Subscriber(channel)
        received: "queue.Queue[object]" = queue.Queue()

        def consume() -> None:
            for message in sub:
                received.put(message)
            received.put("iteration ended")

        thread = threading.Thread(target=consume, daemon=True)
        thread.start()
        for i in range(3):
            pub.send(i)
        assert [received.get(timeout=5) for _ in range(3)] == [0, 1, 2]
        sub.close()  # while the thread waits in recv
        assert received.get(timeout=5) == "iteration ended"
        thread.join(timeout=5)
        assert not thread.is_alive()


WAITING_RECEIVES = {
    "recv_into numpy": lambda sub: sub.recv_into(np.zeros(4096, dtype=np.uint8)),
    "recv_into bytearray": lambda sub: sub.recv_into(bytearray(64)),
    "recv_packed": lambda sub: sub.recv_packed(np.zeros(4096, dtype=np.uint8), np.zeros(8, dtype=np.uint64)),
    "recv_view": lambda sub: sub.recv_view(),
    "recv_many_bytes": lambda sub: sub.recv_many_bytes(16),
    "recv_bytes": lambda sub: sub.recv_bytes(),
}


@pytest.mark.parametrize("call", sorted(WAITING_RECEIVES))
def test_close_from_another_thread_ends_a_receive_waiting_forever(channel: str, call: str) -> None:
    with Publisher(channel) as pub:
        sub = Subscriber(channel)
        outcome: "queue.Queue[object]" = queue.Queue()

        def receive() -> None:
            try:
                outcome.put(WAITING_RECEIVES[call](sub))
            except Exception as exc:
                outcome.put(exc)

        thread = threading.Thread(target=receive, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while sub._waiting_thread != thread.ident:  # the receive is in its wait (the slices)
            assert time.monotonic() < deadline, "the receive never started waiting"
            time.sleep(0.001)
        sub.close()
        result = outcome.get(timeout=10)
        assert isinstance(result, SHMClosedError), result
        thread.join(timeout=10)
        assert not thread.is_alive()
        pub.send_bytes(b"after")  # the publisher is unaffected


@pytest.mark.parametrize("call", ["sub.recv_into(np.zeros(4096, dtype=np.uint8))",
                                  "sub.recv_packed(np.zeros(64, dtype=np.uint8), np.zeros(4, dtype=np.uint64))",
                                  "sub.recv_view()", "pub.send_packed(b'x' * 64, 8, block=True)"])
def test_ctrl_c_interrupts_a_waiting_call(channel: str, call: str) -> None:
    """SIGINT reaches a call waiting forever (a full lossless ring for send_packed) within a slice."""
    code = f"""
        import numpy as np
        import shmcomm
        with shmcomm.Publisher({channel!r}, num_slots=2, slot_size=64, lossless=True) as pub, \\
                shmcomm.Subscriber({channel!r}) as sub:
            try:
                if "send_packed" in {call!r}:
                    pub.send_bytes(b"1")
                    pub.send_bytes(b"2")
                print("waiting", flush=True)
                {call}
            except KeyboardInterrupt:
                print("interrupted", flush=True)
    """
    proc = subprocess.Popen(python_snippet(code), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env())
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "waiting"
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "interrupted" in out and proc.returncode == 0, err
    assert not os.path.exists(segment_path(channel))


def test_close_twice_and_use_after_close(channel: str) -> None:
    pub = Publisher(channel)
    sub = Subscriber(channel)
    assert not pub.closed and not sub.closed
    sub.close()
    sub.close()
    pub.close()
    pub.close()
    assert pub.closed and sub.closed
    assert not os.path.exists(segment_path(channel))
    for call in (lambda: pub.send(1), lambda: pub.send_bytes(b"x"), pub.stats, lambda: pub.loan(),
                 lambda: pub.send_bytes(b"x", block=True, timeout=1.0)):
        with pytest.raises(SHMClosedError, match="closed"):
            call()
    for call in (sub.recv, sub.recv_bytes, lambda: sub.recv(timeout=0), lambda: sub.recv_bytes(timeout=1.0),
                 lambda: sub.recv_into(bytearray(8)), sub.latest, sub.recv_view, sub.stats,
                 lambda: sub.publisher_alive):
        with pytest.raises(SHMClosedError, match="closed"):
            call()
    assert issubclass(SHMClosedError, SHMError) and issubclass(SHMClosedError, ValueError)


def test_context_managers(channel: str) -> None:
    with Publisher(channel) as pub:
        assert isinstance(pub, Publisher)
        assert os.path.exists(segment_path(channel))
        with Subscriber(channel) as sub:
            assert isinstance(sub, Subscriber)
            pub.send("x")
            assert sub.recv(timeout=1.0) == "x"
        assert sub.closed
        assert pub.stats()["subscribers"] == 0
    assert pub.closed
    assert not os.path.exists(segment_path(channel))


def test_exception_inside_with_still_closes(channel: str) -> None:
    with pytest.raises(KeyError):
        with Publisher(channel) as pub:
            raise KeyError("boom")
    assert pub.closed and not os.path.exists(segment_path(channel))


def test_repr(channel: str) -> None:
    with Publisher(channel, num_slots=8, slot_size=128) as pub, Subscriber(channel) as sub:
        text = repr(pub)
        assert text.startswith("<Publisher") and repr(channel) in text
        assert "num_slots=8" in text and "slot_size=128" in text
        text = repr(sub)
        assert text.startswith("<Subscriber") and repr(channel) in text and "local_tail=0" in text
    assert repr(pub) == f"<Publisher {channel!r} closed>"
    assert repr(sub) == f"<Subscriber {channel!r} closed>"


def test_subscriber_in_this_process_publisher_in_another(channel: str) -> None:
    events, stop = CTX.Queue(), CTX.Event()
    with Children() as kids:
        proc = kids.start(live_publisher, channel, events, stop)
        ready = get(events, 30, "the publisher", "ready")
        with Subscriber(channel, timeout_connect=10.0) as sub:
            assert sub.publisher_alive
            assert shmcomm.segment_info(shmcomm.os_name(channel)).creator_pid == ready["pid"]
            assert sub.recv(timeout=0) is None  # "hello" was sent before we attached
        stop.set()
        assert join(proc, 20, "publisher") == 0
    assert not os.path.exists(segment_path(channel))


# ---- garbage -------------------------------------------------------------------------------------------

def test_garbage(channel: str) -> None:
    """Publisher and Subscriber leave no reference cycles: dropping the last reference frees them
    at once (soundfile's test_garbage), and the creator's segment goes with it."""
    gc.collect()
    gc.disable()
    try:
        pub = Publisher(channel, slot_size=256)
        sub = Subscriber(channel)
        # Exercise every path that could keep a reference back to its endpoint.
        pub.send({"a": 1})
        sub.recv(timeout=1.0)
        pub.send_bytes(b"x")
        sub.recv_into(bytearray(8), timeout=1.0)
        with pub.loan(4) as loan:
            loan.data[:] = b"loan"
        with sub.recv_view(timeout=1.0) as view:
            bytes(view)
        pub.loan(2).cancel()
        pub.send_bytes(b"y", block=True, timeout=1.0)
        sub.recv_bytes(timeout=1.0)
        repr(pub), repr(sub), pub.stats(), sub.stats()
        pub_ref, sub_ref = weakref.ref(pub), weakref.ref(sub)
        del pub, sub, loan, view
        assert sub_ref() is None, "a reference cycle keeps the Subscriber alive"
        assert pub_ref() is None, "a reference cycle keeps the Publisher alive"
        assert not os.path.exists(segment_path(channel))
    finally:
        gc.enable()
    gc.collect()
    assert pub_ref() is None and sub_ref() is None


def test_garbage_after_use_with_gc(channel: str) -> None:
    pub = Publisher(channel)
    sub = Subscriber(channel)
    refs = [weakref.ref(pub), weakref.ref(sub)]
    del pub, sub
    gc.collect()
    assert [r() for r in refs] == [None, None]


# ---- logging ---------------------------------------------------------------------------------------------

def test_logging_goes_through_the_shmcomm_logger(channel: str, caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("shmcomm")
    assert shmcomm.logger is logger
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)
    with caplog.at_level(logging.DEBUG, logger="shmcomm"):
        with Publisher(channel) as pub, Subscriber(channel) as sub:
            pub.send(1)
            sub.recv(timeout=1.0)
    records = [r for r in caplog.records if r.name.split(".")[0] == "shmcomm"]
    assert records, "nothing was logged at DEBUG"
    assert all(r.name == "shmcomm" or r.name.startswith("shmcomm.") for r in caplog.records
               if channel in r.getMessage())
    text = "\n".join(r.getMessage() for r in records)
    assert channel in text


def test_log_level_from_the_environment(channel: str) -> None:
    code = f"""
        import shmcomm
        with shmcomm.Publisher({channel!r}):
            pass
    """
    proc = subprocess.run(python_snippet(code), capture_output=True, text=True, timeout=60,
                          env=child_env({"SHMCOMM_LOG_LEVEL": "DEBUG"}))
    assert proc.returncode == 0, proc.stderr
    assert "shmcomm" in proc.stderr and channel in proc.stderr and "DEBUG" in proc.stderr
    quiet = subprocess.run(python_snippet(code), capture_output=True, text=True, timeout=60, env=child_env())
    assert quiet.returncode == 0 and quiet.stderr == ""
