"""Helpers for tests that run real separate processes.

Child processes are started with the 'spawn' context (a fresh interpreter: nothing of the parent's
shmcomm state is inherited). Their targets live here, in an importable module, and report back
through multiprocessing queues; every wait has a deadline so a bug fails a test instead of hanging it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import struct
import sys
import textwrap
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

CTX = mp.get_context("spawn")
SEQ = struct.Struct("<Q")
PAIR = struct.Struct("<QQ")  # (publisher id, sequence number)


def pattern_payload(seq: int, size: int) -> bytes:
    """A payload that is its 8-byte sequence number repeated: any tear (bytes of two messages, or a
    half-written one) makes it inconsistent."""
    reps, rest = divmod(size, 8)
    word = SEQ.pack(seq)
    return word * reps + word[:rest]


def check_pattern(payload: bytes) -> Optional[int]:
    """The sequence number of a pattern payload, or None if the payload is torn."""
    if len(payload) < 8:
        return None
    seq = SEQ.unpack_from(payload)[0]
    return seq if payload == pattern_payload(seq, len(payload)) else None


class Children:
    """Starts spawn-context processes; on exit kills (SIGKILL) and reaps those still running, so a
    failing test never leaves processes behind."""

    def __init__(self) -> None:
        self.procs: List[Any] = []

    def start(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        proc = CTX.Process(target=target, args=args, kwargs=kwargs, daemon=True)
        proc.start()
        self.procs.append(proc)
        return proc

    def __enter__(self) -> "Children":
        return self

    def __exit__(self, *exc: Any) -> None:
        for proc in self.procs:
            if proc.exitcode is None and proc.pid is not None:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            proc.join(timeout=10)



def read_across_takeover(recv: Any, first: List[int], count: int) -> List[int]:
    """Reads pattern items with ``recv(timeout)`` until ``count`` of generation 2 arrived, after a
    single writer of generation 1 was killed and a new one took the channel over: the rest of
    generation 1 goes on ``first`` (none may come after a generation-2 item), generation 2's
    sequence numbers are returned. Every item must be whole."""
    second: List[int] = []
    while len(second) < count:
        item = recv(10.0)
        assert item is not None, "nothing from the new writer"
        seq = check_pattern(item)
        assert seq is not None, f"torn item across the takeover: {item[:32]!r}..."
        if seq >> 32 == 1:
            assert not second, "an item of the first writer after the new one's"
            first.append(seq & 0xFFFFFFFF)
        else:
            assert seq >> 32 == 2, f"item of generation {seq >> 32}"
            second.append(seq & 0xFFFFFFFF)
    return second

def get(queue: Any, timeout: float, what: str, kind: Optional[str] = None) -> Dict[str, Any]:
    """The next event from a child (a dict with a "kind"), with a deadline and a clear failure; a
    child's reported exception is raised here with its traceback."""
    import queue as queue_module

    try:
        item = queue.get(timeout=timeout)
    except queue_module.Empty:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None
    if item.get("kind") == "error":
        raise AssertionError(f"a child process failed while we waited for {what}:\n{item['error']}")
    if kind is not None and item.get("kind") != kind:
        raise AssertionError(f"expected a {kind!r} event ({what}), got {item!r}")
    return item


def join(proc: Any, timeout: float, what: str) -> int:
    proc.join(timeout)
    if proc.exitcode is None:
        raise AssertionError(f"{what} (pid {proc.pid}) still running after {timeout} s")
    return int(proc.exitcode)


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.002) -> None:
    """Polls a condition (something another process changes) until it holds, or fails."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(interval)


def _run(events: Any, body: Callable[[], None]) -> None:
    """Runs a child's body; an exception goes to the parent as an "error" event."""
    try:
        body()
    except BaseException:
        events.put({"kind": "error", "error": "".join(traceback.format_exception(*sys.exc_info()))})
        raise SystemExit(1)


# ---- targets ------------------------------------------------------------------------------------
# Each reports through one queue, ``events``: {"kind": "ready" | "result" | ..., ...}, or "error".

def lossless_subscriber(name: str, index: int, count: int, events: Any,
                        timeout_connect: float = 10.0) -> None:
    """Receives ``count`` sequence-numbered messages, checking each is the next one (from 0)."""
    def body() -> None:
        from shmcomm import Subscriber

        with Subscriber(name, timeout_connect=timeout_connect) as sub:
            events.put({"kind": "ready", "index": index, "pid": os.getpid()})
            buf = bytearray(64)
            received = out_of_order = 0
            first = last = None
            for expected in range(count):
                n = sub.recv_into(buf, timeout=10.0)
                if n is None:
                    break
                seq = SEQ.unpack_from(buf)[0]
                if first is None:
                    first = seq
                out_of_order += seq != expected
                last = seq
                received += 1
            stats = sub.stats()
            events.put({"kind": "result", "index": index, "received": received,
                        "out_of_order": out_of_order, "first": first, "last": last,
                        "dropped": stats["dropped"], "stats_received": stats["received"]})
    _run(events, body)


def slow_subscriber(name: str, size: int, events: Any, total_q: Any) -> None:
    """Overwrite mode, sleeps after every message. Checks every payload in full (no tear) and that
    sequence numbers strictly increase; every 10th read uses latest(). After 300 reads it tells the
    publisher to stop, learns how many were published, and reads on until the last one."""
    def body() -> None:
        from shmcomm import Subscriber

        with Subscriber(name, timeout_connect=10.0, serialization="raw") as sub:
            events.put({"kind": "ready"})
            torn = not_increasing = reads = 0
            previous = -1
            total = None
            while total is None or previous != total - 1:
                latest = reads % 10 == 9
                payload = sub.latest_bytes(timeout=10.0) if latest else sub.recv_bytes(timeout=10.0)
                if payload is None:
                    raise AssertionError(f"no message within 10 s (last sequence number {previous}, "
                                         f"published {total})")
                reads += 1
                seq = check_pattern(payload)
                if seq is None or len(payload) != size:
                    torn += 1
                    continue
                not_increasing += seq <= previous
                previous = seq
                if reads == 300:
                    events.put({"kind": "progress", "reads": reads})
                    total = int(total_q.get(timeout=30))
                time.sleep(0.0005)
            stats = sub.stats()
            events.put({"kind": "result", "reads": reads, "torn": torn, "not_increasing": not_increasing,
                        "last": previous, "received": stats["received"], "dropped": stats["dropped"],
                        "skipped": stats["skipped"]})
    _run(events, body)


def stalling_subscriber(name: str, stall_after: int, hold_view: bool, events: Any) -> None:
    """Receives ``stall_after`` messages, then stops reading (optionally holding a zero-copy view,
    which pins its slot in lossless mode), says so and waits to be killed."""
    def body() -> None:
        from shmcomm import Subscriber

        sub = Subscriber(name, timeout_connect=10.0)
        events.put({"kind": "ready", "pid": os.getpid()})
        for _ in range(stall_after):
            if sub.recv_bytes(timeout=10.0) is None:
                raise AssertionError("the publisher stopped before we stalled")
        view = sub.recv_view(timeout=10.0) if hold_view else None
        events.put({"kind": "stalled", "holding_view": view is not None})
        time.sleep(120)  # the parent SIGKILLs us long before
    _run(events, body)


def lossless_publisher(name: str, count: int, num_slots: int, subscribers: int, go: Any, done: Any,
                       events: Any) -> None:
    """Lossless publisher of ``count`` sequence-numbered 64-byte messages (block=True, 20 s timeout
    per send), started once ``go`` is set and ``subscribers`` are attached. Stays until ``done``."""
    def body() -> None:
        from shmcomm import Publisher

        with Publisher(name, num_slots=num_slots, slot_size=64, lossless=True) as pub:
            events.put({"kind": "ready", "pid": os.getpid()})
            if not go.wait(30):
                raise AssertionError("never told to go")
            wait_until(lambda: pub.stats()["subscribers"] >= subscribers, 30, "subscribers attach")
            payload = bytearray(64)
            start = time.monotonic()
            for seq in range(count):
                SEQ.pack_into(payload, 0, seq)
                pub.send_bytes(payload, block=True, timeout=20.0)
            events.put({"kind": "result", "sent": count, "seconds": time.monotonic() - start,
                        "subscribers": pub.stats()["subscribers"]})
            if not done.wait(60):
                raise AssertionError("the parent never said it was done")
    _run(events, body)


def pattern_publisher(name: str, size: int, generation: int, count: Optional[int], events: Any,
                      linger: Any, single_writer: bool = False) -> None:
    """Lossless publisher of pattern payloads whose sequence number is (generation << 32) | seq:
    ``count`` of them, or forever (until killed) if count is None. Starts sending once a subscriber
    is attached; stays until ``linger`` is set."""
    def body() -> None:
        from shmcomm import Publisher

        with Publisher(name, num_slots=16, slot_size=size, serialization="raw", lossless=True,
                       single_writer=single_writer) as pub:
            events.put({"kind": "ready", "pid": os.getpid(), "generation": generation})
            wait_until(lambda: pub.stats()["subscribers"] >= 1, 30, "a subscriber attaches")
            seq = 0
            while count is None or seq < count:
                pub.send_bytes(pattern_payload((generation << 32) | seq, size), block=True, timeout=30.0)
                seq += 1
            events.put({"kind": "result", "sent": seq})
            if not linger.wait(30):
                raise AssertionError("the parent never let us go")
    _run(events, body)


def multi_publisher(name: str, pub_id: int, count: int, go: Any, done: Any, events: Any) -> None:
    """One of several publishers on one lossless channel: sends (pub_id, seq) pairs."""
    def body() -> None:
        from shmcomm import Publisher

        with Publisher(name, num_slots=256, slot_size=64, lossless=True) as pub:
            events.put({"kind": "ready", "pub_id": pub_id})
            if not go.wait(30):
                raise AssertionError("never told to go")
            for seq in range(count):
                pub.send_bytes(PAIR.pack(pub_id, seq), block=True, timeout=20.0)
            events.put({"kind": "result", "pub_id": pub_id, "sent": count})
            if not done.wait(60):
                raise AssertionError("the parent never said it was done")
    _run(events, body)


def crashing_publisher(name: str, events: Any, num_slots: int = 8, slot_size: int = 256,
                       mode: int = 0o600) -> None:
    """Creates a Publisher, publishes one message, says so and waits to be SIGKILLed."""
    def body() -> None:
        from shmcomm import Publisher

        pub = Publisher(name, num_slots=num_slots, slot_size=slot_size, mode=mode)
        pub.send_bytes(b"before the crash")
        events.put({"kind": "ready", "pid": os.getpid()})
        time.sleep(120)
    _run(events, body)


def live_publisher(name: str, events: Any, stop: Any) -> None:
    """A publisher that stays alive (sending one "hello") until ``stop`` is set."""
    def body() -> None:
        from shmcomm import Publisher

        with Publisher(name) as pub:
            pub.send("hello")
            events.put({"kind": "ready", "pid": os.getpid()})
            stop.wait(60)
    _run(events, body)


def as_nobody(name: str, what: str, events: Any) -> None:
    """Drops root (uid/gid 65534), then opens a ``what`` ('subscriber' or 'publisher') on the
    channel and reports the outcome (its exception's type, base classes and message)."""
    def body() -> None:
        import shmcomm

        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        try:
            if what == "subscriber":
                with shmcomm.Subscriber(name, timeout_connect=1.0) as sub:
                    events.put({"kind": "attached"})
                    events.put({"kind": "result", "ok": True, "message": sub.recv(timeout=10.0)})
            else:
                with shmcomm.Publisher(name):
                    events.put({"kind": "result", "ok": True})
        except Exception as exc:
            events.put({"kind": "result", "ok": False, "type": type(exc).__name__,
                        "mro": [c.__name__ for c in type(exc).__mro__], "message": str(exc)})
    _run(events, body)


def kill_and_wait_zombie(pid: int, timeout: float = 10.0) -> None:
    """SIGKILLs pid and waits (without reaping it) until it is a zombie."""
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: process_state(pid) in ("Z", None), timeout, f"pid {pid} dies")


def process_state(pid: int) -> Optional[str]:
    """The state letter of /proc/<pid>/stat (R, S, Z, ...), None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def python_snippet(code: str) -> List[str]:
    """argv running a dedented snippet with this interpreter."""
    return [sys.executable, "-c", textwrap.dedent(code)]


def child_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("SHMCOMM_LOG_LEVEL", None)
    if extra:
        env.update(extra)
    return env


# ---- PUSH/PULL targets --------------------------------------------------------------------------

STOP = b"STOP"  # a work item no pusher sends as data (data items are 8 or 16 bytes): "stop pulling"


def pair_pusher(name: str, pusher_id: int, count: int, batch: int, num_slots: int, go: Any, done: Any,
                events: Any) -> None:
    """One of several pushers on a work queue: pushes (pusher_id, seq) pairs for seq in range(count),
    ``batch`` at a time with send_many_bytes, once ``go`` is set. Stays until ``done``."""
    def body() -> None:
        from shmcomm import Pusher

        with Pusher(name, num_slots=num_slots, slot_size=64, serialization="raw") as push:
            events.put({"kind": "ready", "pusher_id": pusher_id, "pid": os.getpid()})
            if not go.wait(30):
                raise AssertionError("never told to go")
            for start in range(0, count, batch):
                items = [PAIR.pack(pusher_id, seq) for seq in range(start, min(count, start + batch))]
                if push.send_many_bytes(items, timeout=30.0) != len(items):
                    raise AssertionError("send_many_bytes queued only part of a batch")
            events.put({"kind": "result", "pusher_id": pusher_id, "sent": push.stats()["sent"]})
            if not done.wait(60):
                raise AssertionError("the parent never said it was done")
    _run(events, body)


def pair_puller(name: str, index: int, events: Any) -> None:
    """A competing puller: takes items in batches (recv_many_bytes) until it gets a STOP item; reports
    every data item it took, in the order it took them, and how many STOP items it took."""
    def body() -> None:
        from shmcomm import Puller

        with Puller(name, timeout_connect=10.0, serialization="raw") as pull:
            events.put({"kind": "ready", "index": index, "pid": os.getpid()})
            items: List[bytes] = []
            stops = 0
            while not stops:
                batch = pull.recv_many_bytes(256, timeout=30.0)
                if not batch:
                    raise AssertionError(f"puller {index}: nothing within 30 s after {len(items)} items")
                for item in batch:
                    if item == STOP:
                        stops += 1
                    else:
                        items.append(item)
            stats = pull.stats()
            events.put({"kind": "result", "index": index, "items": b"".join(items), "count": len(items),
                        "stops": stops, "received": stats["received"], "dropped": stats["dropped"]})
    _run(events, body)


def stream_pusher(name: str, num_slots: int, finish: Any, extra: int, done: Any, events: Any) -> None:
    """Pushes 8-byte sequence numbers 0, 1, 2, ... until ``finish`` is set, then ``extra`` more, then one
    STOP item; reports how many it pushed; stays until ``done``."""
    def body() -> None:
        from shmcomm import Pusher

        with Pusher(name, num_slots=num_slots, slot_size=64, serialization="raw") as push:
            events.put({"kind": "ready", "pid": os.getpid()})
            seq = 0
            end = None
            while end is None or seq < end:
                if end is None and seq % 64 == 0 and finish.is_set():
                    end = seq + extra
                    continue
                push.send_bytes(SEQ.pack(seq), timeout=30.0)
                seq += 1
            push.send_bytes(STOP, timeout=30.0)
            events.put({"kind": "result", "sent": seq, "stats_sent": push.stats()["sent"]})
            if not done.wait(60):
                raise AssertionError("the parent never said it was done")
    _run(events, body)


def reporting_puller(name: str, path: str, events: Any) -> None:
    """Takes items one at a time and appends each to the file ``path`` (one write(2) per item) as soon as
    recv returns, so that the file holds every item taken, except at most the one taken when the
    process is killed. Stops at a STOP item and reports its stats."""
    def body() -> None:
        from shmcomm import Puller

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            with Puller(name, timeout_connect=10.0, serialization="raw") as pull:
                events.put({"kind": "ready", "pid": os.getpid()})
                taken = 0
                while True:
                    item = pull.recv_bytes(timeout=30.0)
                    if item is None:
                        raise AssertionError(f"nothing to pull within 30 s after {taken} items")
                    if item == STOP:
                        break
                    os.write(fd, item)
                    taken += 1
                stats = pull.stats()
                events.put({"kind": "result", "taken": taken, "received": stats["received"],
                            "restored": stats["restored"], "dropped": stats["dropped"]})
        finally:
            os.close(fd)
    _run(events, body)


def pattern_pusher(name: str, generation: int, size: int, num_slots: int, events: Any,
                   count: Optional[int] = None, finish: Any = None, extra: int = 0, stops: int = 0,
                   linger: Any = None, single_writer: bool = False) -> None:
    """Pushes pattern payloads whose sequence number is (generation << 32) | seq: ``count`` of them;
    or, with ``finish``, until it is set and then ``extra`` more; or forever (until killed). Then
    ``stops`` STOP items, a report, and it stays until ``linger`` is set."""
    def body() -> None:
        from shmcomm import Pusher

        with Pusher(name, num_slots=num_slots, slot_size=size, serialization="raw",
                    single_writer=single_writer) as push:
            events.put({"kind": "ready", "pid": os.getpid(), "generation": generation})
            seq = 0
            end = count
            while end is None or seq < end:
                if finish is not None and end is None and seq % 16 == 0 and finish.is_set():
                    end = seq + extra
                    continue
                push.send_bytes(pattern_payload((generation << 32) | seq, size), timeout=30.0)
                seq += 1
            for _ in range(stops):
                push.send_bytes(STOP, timeout=30.0)
            events.put({"kind": "result", "generation": generation, "sent": seq})
            if linger is not None and not linger.wait(60):
                raise AssertionError("the parent never let us go")
    _run(events, body)


def pattern_puller(name: str, index: int, size: int, progress: Any, events: Any) -> None:
    """Takes pattern items one at a time until a STOP item, checking each is whole (not torn) and has
    the expected size; counts the items of generation 1 in the shared ``progress`` value; reports the
    sequence numbers it took, in order."""
    def body() -> None:
        from shmcomm import Puller

        with Puller(name, timeout_connect=10.0, serialization="raw") as pull:
            events.put({"kind": "ready", "index": index})
            seqs: List[int] = []
            torn = 0
            while True:
                item = pull.recv_bytes(timeout=30.0)
                if item is None:
                    raise AssertionError(f"puller {index}: nothing within 30 s after {len(seqs)} items")
                if item == STOP:
                    break
                seq = check_pattern(item)
                if seq is None or len(item) != size:
                    torn += 1
                    continue
                seqs.append(seq)
                if seq >> 32 == 1:
                    with progress.get_lock():
                        progress.value += 1
            stats = pull.stats()
            events.put({"kind": "result", "index": index, "seqs": seqs, "torn": torn,
                        "received": stats["received"], "dropped": stats["dropped"]})
    _run(events, body)


def waiting_puller(name: str, count: int, timeout_connect: float, events: Any) -> None:
    """Says it is starting, then opens a Puller (waiting up to ``timeout_connect`` for the Pusher) and
    takes ``count`` items (pickle), which it reports."""
    def body() -> None:
        from shmcomm import Puller

        events.put({"kind": "starting", "pid": os.getpid()})
        with Puller(name, timeout_connect=timeout_connect) as pull:
            events.put({"kind": "attached"})
            items = [pull.recv(timeout=30.0) for _ in range(count)]
            events.put({"kind": "result", "items": items, "received": pull.stats()["received"]})
    _run(events, body)


# ---- REQ/REP targets ----------------------------------------------------------------------------

STOP_REQUEST = "stop serving"  # a request that makes loop_replier and holding_replier answer and stop


def _serve_until_stop(rep: Any, index: int, events: Any) -> None:
    """Answers every request ``r`` with ("reply", index, r) until a STOP_REQUEST (answered "bye"); then
    reports the replier's stats."""
    while True:
        request = rep.recv(timeout=30.0)
        if request is None:
            raise AssertionError(f"replier {index}: no request within 30 s")
        if request == STOP_REQUEST:
            rep.send("bye")
            break
        rep.send(("reply", index, request))
    stats = rep.stats()
    events.put({"kind": "result", "index": index, "received": stats["received"], "sent": stats["sent"],
                "expired": stats["expired"]})


def loop_replier(name: str, index: int, events: Any, hold_first: Any = None) -> None:
    """A Replier (recv/send loop) answering ("reply", index, request) until a STOP_REQUEST. With
    ``hold_first``, it says when it has taken its first request and answers it only once
    ``hold_first`` is set."""
    def body() -> None:
        from shmcomm import Replier

        with Replier(name, num_slots=16, slot_size=1024) as rep:
            events.put({"kind": "ready", "index": index, "pid": os.getpid()})
            if hold_first is not None:
                request = rep.recv(timeout=30.0)
                if request is None:
                    raise AssertionError(f"replier {index}: no first request within 30 s")
                events.put({"kind": "first", "index": index})
                if not hold_first.wait(30):
                    raise AssertionError("never told to answer the first request")
                if not rep.send(("reply", index, request)):
                    raise AssertionError("the requester of the first request stopped waiting")
            _serve_until_stop(rep, index, events)
    _run(events, body)


def requester_client(name: str, rid: int, count: int, events: Any) -> None:
    """A Requester making ``count`` requests (rid, seq); checks each reply is ("reply", <replier>,
    (rid, seq)); reports how many were wrong and how many each replier answered."""
    def body() -> None:
        from shmcomm import Requester

        with Requester(name, timeout_connect=10.0) as req:
            events.put({"kind": "ready", "rid": rid})
            wrong: List[Any] = []
            by_replier: Dict[int, int] = {}
            for seq in range(count):
                reply = req.request((rid, seq), timeout=30.0)
                if not (isinstance(reply, tuple) and len(reply) == 3 and reply[0] == "reply"
                        and reply[2] == (rid, seq)):
                    wrong.append((seq, reply))
                    continue
                by_replier[reply[1]] = by_replier.get(reply[1], 0) + 1
            stats = req.stats()
            events.put({"kind": "result", "rid": rid, "wrong": wrong[:10], "wrong_count": len(wrong),
                        "by_replier": by_replier, "sent": stats["sent"], "received": stats["received"],
                        "expired": stats["expired"]})
    _run(events, body)


def holding_replier(name: str, then: str, events: Any, commands: Any = None) -> None:
    """A Replier that takes one request and holds it. then="die": SIGKILLs itself while holding it.
    then="answer": reports the request, waits for "answer" on ``commands``, answers it and reports
    whether the reply was delivered, then serves as loop_replier until a STOP_REQUEST."""
    def body() -> None:
        from shmcomm import Replier

        with Replier(name, num_slots=16, slot_size=1024) as rep:
            events.put({"kind": "ready", "pid": os.getpid()})
            request = rep.recv(timeout=30.0)
            if request is None:
                raise AssertionError("no request within 30 s")
            if then == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            events.put({"kind": "got", "request": request})
            command = commands.get(timeout=30)
            if command != "answer":
                raise AssertionError(f"unexpected command {command!r}")
            delivered = rep.send(("reply", 0, request))
            events.put({"kind": "answered", "delivered": delivered})
            _serve_until_stop(rep, 0, events)
    _run(events, body)


def serving_replier(name: str, events: Any, stop: Any) -> None:
    """Replier.serve(handler) answering ("served", request); a second thread closes the replier when
    ``stop`` is set, which ends serve(); reports how many it served. Or the parent terminates it."""
    def body() -> None:
        import threading

        from shmcomm import Replier

        rep = Replier(name, num_slots=16, slot_size=1024)

        def closer() -> None:
            stop.wait(60)
            rep.close()

        thread = threading.Thread(target=closer)
        thread.start()
        events.put({"kind": "ready", "pid": os.getpid()})
        served = rep.serve(lambda request: ("served", request))
        # serve() returns once the replier reads as closed; close() may still be releasing it.
        thread.join(30)
        events.put({"kind": "result", "served": served, "closed": rep.closed,
                    "closer_done": not thread.is_alive()})
    _run(events, body)


def echo_replier(name: str, num_slots: int, slot_size: int, events: Any) -> None:
    """A raw Replier that answers every request with its bytes reversed, until an empty request;
    reports its stats (``payload_pool`` included)."""
    def body() -> None:
        from shmcomm import Replier

        with Replier(name, num_slots=num_slots, slot_size=slot_size, serialization="raw") as rep:
            events.put({"kind": "ready", "pid": os.getpid()})
            while True:
                request = rep.recv_bytes(timeout=30.0)
                if request is None:
                    raise AssertionError("echo replier: no request within 30 s")
                rep.send_bytes(request[::-1])
                if not request:
                    break
            events.put({"kind": "result", **rep.stats()})
    _run(events, body)


def victim_requester(name: str, events: Any) -> None:
    """A Requester that sends one request and, with it pending, waits to be SIGKILLed."""
    def body() -> None:
        from shmcomm import Requester

        req = Requester(name, timeout_connect=10.0)
        req.send(("victim", 0))
        events.put({"kind": "sent", "pid": os.getpid()})
        time.sleep(120)
    _run(events, body)


# ---- crash matrix targets (tests/python/test_crash_matrix.py) -----------------------------------
# Victims are SIGKILLed by the parent at random instants while they send or receive in a tight loop.
# They report only through shared counters (a RawArray, no lock a dead process could hold) and, for
# pullers, an append-only file; a victim's queue carries its "loaded" event or its failure. Victims
# pay the interpreter start-up and the import before the parent says ``go``, so the next victim can
# start while the current one runs. Survivors are never killed: they report through ``events``.

CM_DONE, CM_TORN, CM_BAD, CM_ATTACHED = 0, 1, 2, 3  # indices into a victim's counters
CM_COUNTERS = 4
CM_BATCH = 4  # the most items a victim sends or receives in one call: what one kill can catch in flight
REPLY_BIT = 1 << 63  # a reply is the pattern of its request's sequence number with this bit set


def cm_reply(seq: int, size: int) -> bytes:
    """The reply to the pattern request ``seq``: a pattern payload too, so a torn reply shows."""
    return pattern_payload(seq | REPLY_BIT, size)


def _cm_victim(events: Any, go: Any, loop: Callable[[], None]) -> None:
    def body() -> None:
        import shmcomm  # noqa: F401  (the import is paid before "go")

        events.put({"kind": "loaded", "pid": os.getpid()})
        if not go.wait(300):
            raise AssertionError("never told to go")
        loop()
    _run(events, body)


def cm_victim_publisher(name: str, gen: int, size: int, num_slots: int, seed: int, counters: Any,
                        events: Any, go: Any) -> None:
    """Joins a lossless channel as one more publisher and publishes pattern payloads numbered
    (gen << 32) | n as fast as it can, by send_bytes, by a loan written in two halves then committed,
    or by send_many_bytes batches of up to CM_BATCH, in a seeded random mix. counters[CM_DONE] is the
    number of messages whose send returned."""
    def loop() -> None:
        import random

        from shmcomm import Publisher

        rng = random.Random(seed)
        base, half = gen << 32, size // 2
        with Publisher(name, num_slots=num_slots, slot_size=size, serialization="raw", lossless=True) as pub:
            counters[CM_ATTACHED] = 1
            seq = 0
            while True:
                how = rng.randrange(3)
                if how == 0:
                    pub.send_bytes(pattern_payload(base | seq, size), block=True, timeout=60.0)
                    n = 1
                elif how == 1:
                    payload = pattern_payload(base | seq, size)
                    loan = pub.loan(size, block=True, timeout=60.0)
                    assert loan.data is not None
                    loan.data[:half] = payload[:half]
                    loan.data[half:] = payload[half:]
                    loan.commit()
                    n = 1
                else:
                    n = rng.randint(2, CM_BATCH)
                    batch = [pattern_payload(base | (seq + i), size) for i in range(n)]
                    if pub.send_many_bytes(batch, block=True, timeout=60.0) != n:
                        raise AssertionError("send_many_bytes published only part of a batch")
                seq += n
                counters[CM_DONE] = seq
    _cm_victim(events, go, loop)


def cm_victim_subscriber(name: str, size: int, seed: int, counters: Any, events: Any, go: Any) -> None:
    """Attaches to a lossless channel with one publisher and receives as fast as it can, by
    recv_bytes, recv_into or recv_view (held while checked), in a seeded random mix. Counts torn
    payloads (CM_TORN) and sequence numbers that do not follow the previous one (CM_BAD)."""
    def loop() -> None:
        import random

        from shmcomm import Subscriber

        rng = random.Random(seed)
        buf = bytearray(size)
        with Subscriber(name, timeout_connect=10.0, serialization="raw") as sub:
            counters[CM_ATTACHED] = 1
            last = None
            while True:
                how = rng.randrange(3)
                if how == 0:
                    payload = sub.recv_bytes(timeout=60.0)
                elif how == 1:
                    n = sub.recv_into(buf, timeout=60.0)
                    payload = None if n is None else bytes(buf[:n])
                else:
                    view = sub.recv_view(timeout=60.0)
                    payload = None
                    if view is not None:
                        payload = bytes(view.data)
                        if not view.release():
                            counters[CM_BAD] += 1  # a lossless view must never go stale
                if payload is None:
                    raise AssertionError(f"no message within 60 s after {counters[CM_DONE]}")
                seq = check_pattern(payload)
                if seq is None or len(payload) != size:
                    counters[CM_TORN] += 1
                    continue
                if last is not None and seq != last + 1:
                    counters[CM_BAD] += 1
                last = seq
                counters[CM_DONE] += 1
    _cm_victim(events, go, loop)


def cm_victim_requester(name: str, rid: int, size: int, counters: Any, events: Any, go: Any) -> None:
    """Requests (rid << 32) | n for n = 0, 1, 2, ... as fast as it can, checking every reply is whole
    (CM_TORN) and answers that very request (CM_BAD). counters[CM_DONE]: requests answered."""
    def loop() -> None:
        from shmcomm import Requester

        with Requester(name, timeout_connect=10.0, serialization="raw") as req:
            counters[CM_ATTACHED] = 1
            seq = 0
            while True:
                s = (rid << 32) | seq
                reply = req.request_bytes(pattern_payload(s, size), timeout=60.0)
                if check_pattern(reply) is None or len(reply) != size:
                    counters[CM_TORN] += 1
                elif reply != cm_reply(s, size):
                    counters[CM_BAD] += 1
                seq += 1
                counters[CM_DONE] = seq
    _cm_victim(events, go, loop)


def cm_victim_replier(name: str, size: int, num_slots: int, seed: int, counters: Any, events: Any,
                      go: Any) -> None:
    """Joins a service as one more Replier and answers pattern requests as fast as it can, with
    reply_and_recv_bytes or recv_bytes + send_bytes in a seeded random mix. Counts torn requests
    (CM_TORN); counters[CM_DONE]: requests taken."""
    def loop() -> None:
        import random

        from shmcomm import Replier

        rng = random.Random(seed)
        with Replier(name, num_slots=num_slots, slot_size=size, serialization="raw") as rep:
            counters[CM_ATTACHED] = 1
            reply = b""
            while True:
                if rng.randrange(2):
                    request = rep.reply_and_recv_bytes(reply, timeout=60.0)
                else:
                    if reply:
                        rep.send_bytes(reply)
                    request = rep.recv_bytes(timeout=60.0)
                if request is None:
                    raise AssertionError(f"no request within 60 s after {counters[CM_DONE]}")
                seq = check_pattern(request)
                if seq is None or len(request) != size:
                    counters[CM_TORN] += 1
                    reply = b"torn request"
                    continue
                for _ in range(rng.randrange(8)):  # a handler that works on the request a while
                    if check_pattern(request) != seq:
                        counters[CM_TORN] += 1
                reply = cm_reply(seq, size)
                counters[CM_DONE] += 1
    _cm_victim(events, go, loop)


def cm_victim_pusher(name: str, gen: int, size: int, num_slots: int, seed: int, counters: Any,
                     events: Any, go: Any) -> None:
    """Joins a work queue as one more Pusher and pushes pattern items (gen << 32) | n as fast as it
    can, singly or in send_many_bytes batches of up to CM_BATCH. counters[CM_DONE]: items whose send
    returned."""
    def loop() -> None:
        import random

        from shmcomm import Pusher

        rng = random.Random(seed)
        base = gen << 32
        with Pusher(name, num_slots=num_slots, slot_size=size, serialization="raw") as push:
            counters[CM_ATTACHED] = 1
            seq = 0
            while True:
                if rng.randrange(2):
                    push.send_bytes(pattern_payload(base | seq, size), timeout=60.0)
                    n = 1
                else:
                    n = rng.randint(2, CM_BATCH)
                    batch = [pattern_payload(base | (seq + i), size) for i in range(n)]
                    if push.send_many_bytes(batch, timeout=60.0) != n:
                        raise AssertionError("send_many_bytes queued only part of a batch")
                seq += n
                counters[CM_DONE] = seq
    _cm_victim(events, go, loop)


def cm_victim_puller(name: str, size: int, path: str, seed: int, counters: Any, events: Any,
                     go: Any) -> None:
    """A competing Puller taking items as fast as it can, singly or in recv_many_bytes batches of up
    to CM_BATCH, appending the sequence numbers of each call's items to ``path`` in one write(2):
    killed, it loses at most the items of one call (taken, not yet written)."""
    def loop() -> None:
        import random

        from shmcomm import Puller

        rng = random.Random(seed)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with Puller(name, timeout_connect=10.0, serialization="raw") as pull:
            counters[CM_ATTACHED] = 1
            while True:
                if rng.randrange(2):
                    item = pull.recv_bytes(timeout=60.0)
                    items = [] if item is None else [item]
                else:
                    items = pull.recv_many_bytes(rng.randint(2, CM_BATCH), timeout=60.0)
                if not items:
                    raise AssertionError(f"nothing to pull within 60 s after {counters[CM_DONE]}")
                out = []
                for item in items:
                    seq = check_pattern(item)
                    if seq is None or len(item) != size:
                        counters[CM_TORN] += 1  # includes a STOP item, which no victim may take
                        continue
                    out.append(SEQ.pack(seq))
                os.write(fd, b"".join(out))
                counters[CM_DONE] += len(items)
    _cm_victim(events, go, loop)


def cm_publisher(name: str, size: int, num_slots: int, progress: Any, finish: Any, events: Any,
                 linger: Any) -> None:
    """The surviving publisher: creates a lossless channel, waits for a subscriber, then publishes
    pattern payloads 0, 1, 2, ... (generation 0) until ``finish``, then one STOP message. progress[0]:
    messages sent. Stays until ``linger``."""
    def body() -> None:
        from shmcomm import Publisher

        with Publisher(name, num_slots=num_slots, slot_size=size, serialization="raw", lossless=True) as pub:
            events.put({"kind": "ready", "who": "publisher", "pid": os.getpid()})
            wait_until(lambda: pub.stats()["subscribers"] >= 1, 30, "a subscriber attaches")
            seq = 0
            while seq % 64 or not finish.is_set():
                pub.send_bytes(pattern_payload(seq, size), block=True, timeout=60.0)
                seq += 1
                progress[0] = seq
            pub.send_bytes(STOP, block=True, timeout=60.0)
            events.put({"kind": "result", "who": "publisher", "sent": seq, "stats_sent": pub.stats()["sent"]})
            if not linger.wait(120):
                raise AssertionError("the parent never let us go")
    _run(events, body)


class GenerationCheck:
    """Checks received pattern payloads of ``size`` bytes: each whole, and per generation (seq >> 32)
    numbered 0, 1, 2, ... without gap or repeat. report() gives counts, expected (the next number
    per generation), torn, gaps, repeats and the first anomalies."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.expected: Dict[int, int] = {}
        self.counts: Dict[int, int] = {}
        self.torn = self.gaps = self.repeats = 0
        self.anomalies: List[Any] = []

    def take(self, payload: bytes) -> bool:
        """Checks one payload; False if it is torn."""
        seq = check_pattern(payload)
        if seq is None or len(payload) != self.size:
            self.torn += 1
            if len(self.anomalies) < 20:
                self.anomalies.append(("torn", len(payload), payload[:24].hex()))
            return False
        gen, n = seq >> 32, seq & 0xFFFFFFFF
        exp = self.expected.get(gen, 0)
        if n != exp:
            if n < exp:
                self.repeats += 1
            else:
                self.gaps += 1
            if len(self.anomalies) < 20:
                self.anomalies.append(("gap" if n > exp else "repeat", gen, exp, n))
        self.expected[gen] = max(exp, n + 1)
        self.counts[gen] = self.counts.get(gen, 0) + 1
        return True

    def report(self) -> Dict[str, Any]:
        return {"counts": self.counts, "expected": self.expected, "torn": self.torn, "gaps": self.gaps,
                "repeats": self.repeats, "anomalies": self.anomalies}


def cm_subscriber(name: str, size: int, progress: Any, events: Any) -> None:
    """The surviving subscriber: receives until a STOP message, checking every payload is whole and
    that, per generation (seq >> 32), numbers run 0, 1, 2, ... without gap or repeat."""
    def body() -> None:
        from shmcomm import Subscriber

        with Subscriber(name, timeout_connect=10.0, serialization="raw") as sub:
            events.put({"kind": "ready", "who": "subscriber", "pid": os.getpid()})
            check = GenerationCheck(size)
            while True:
                payload = sub.recv_bytes(timeout=60.0)
                if payload is None:
                    raise AssertionError(f"no message within 60 s after {progress[0]}")
                if payload == STOP:
                    break
                if check.take(payload):
                    progress[0] += 1
            stats = sub.stats()
            events.put({"kind": "result", "who": "subscriber", **check.report(),
                        "received": stats["received"], "dropped": stats["dropped"],
                        "skipped": stats["skipped"]})
    _run(events, body)


def cm_replier(name: str, size: int, num_slots: int, progress: Any, events: Any) -> None:
    """The surviving Replier: creates the service and answers pattern requests (rid << 32) | n with
    cm_reply until a STOP request (answered b"BYE"). Per requester it counts the requests taken and
    checks their numbers increase; ``consecutive`` is False for a requester if any number was
    skipped (taken by another replier, or lost)."""
    def body() -> None:
        from shmcomm import Replier

        with Replier(name, num_slots=num_slots, slot_size=size, serialization="raw") as rep:
            events.put({"kind": "ready", "who": "replier", "pid": os.getpid()})
            last: Dict[int, int] = {}
            counts: Dict[int, int] = {}
            skips: Dict[int, int] = {}
            torn = repeats = 0
            anomalies: List[Any] = []
            reply = b""
            while True:
                request = rep.reply_and_recv_bytes(reply, timeout=60.0)
                if request is None:
                    raise AssertionError(f"no request within 60 s after {progress[0]}")
                if request == STOP:
                    rep.send_bytes(b"BYE")
                    break
                seq = check_pattern(request)
                if seq is None or len(request) != size:
                    torn += 1
                    if len(anomalies) < 20:
                        anomalies.append(("torn", len(request), request[:24].hex()))
                    reply = b"torn request"
                    continue
                rid, n = seq >> 32, seq & 0xFFFFFFFF
                prev = last.get(rid, -1)
                if n <= prev:
                    repeats += 1
                    if len(anomalies) < 20:
                        anomalies.append(("repeat", rid, prev, n))
                elif n != prev + 1:
                    skips[rid] = skips.get(rid, 0) + 1
                last[rid] = max(prev, n)
                counts[rid] = counts.get(rid, 0) + 1
                reply = cm_reply(seq, size)
                progress[0] += 1
            stats = rep.stats()
            events.put({"kind": "result", "who": "replier", "counts": counts, "last": last, "skips": skips,
                        "torn": torn, "repeats": repeats, "anomalies": anomalies,
                        "received": stats["received"], "sent": stats["sent"], "expired": stats["expired"]})
    _run(events, body)


def cm_requester(name: str, rid: int, size: int, progress: Any, finish: Any, events: Any) -> None:
    """A surviving Requester: requests (rid << 32) | n for n = 0, 1, 2, ... until ``finish``. A
    request that fails with SHMPeerDeadError (its Replier was killed) is sent again, up to 100 times;
    any other error fails. Checks every reply is whole and answers that very request."""
    def body() -> None:
        from shmcomm import Requester, SHMPeerDeadError

        with Requester(name, timeout_connect=10.0, serialization="raw") as req:
            events.put({"kind": "ready", "who": f"requester {rid}", "pid": os.getpid()})
            seq = retries = torn = wrong = 0
            messages: List[str] = []
            anomalies: List[Any] = []
            while seq % 16 or not finish.is_set():
                s = (rid << 32) | seq
                payload = pattern_payload(s, size)
                for attempt in range(101):
                    try:
                        reply = req.request_bytes(payload, timeout=60.0)
                        break
                    except SHMPeerDeadError as exc:
                        if attempt == 100:
                            raise
                        retries += 1
                        if len(messages) < 3:
                            messages.append(str(exc))
                if check_pattern(reply) is None or len(reply) != size:
                    torn += 1
                    if len(anomalies) < 20:
                        anomalies.append(("torn", seq, len(reply), reply[:24].hex()))
                elif reply != cm_reply(s, size):
                    wrong += 1
                    if len(anomalies) < 20:
                        anomalies.append(("wrong", seq, check_pattern(reply)))
                seq += 1
                progress[0] = seq
            stats = req.stats()
            events.put({"kind": "result", "who": f"requester {rid}", "rid": rid, "answered": seq,
                        "retries": retries, "messages": messages, "torn": torn, "wrong": wrong,
                        "anomalies": anomalies, "sent": stats["sent"], "received": stats["received"],
                        "expired": stats["expired"]})
    _run(events, body)


def cm_pusher(name: str, size: int, num_slots: int, extra: int, stops: int, progress: Any, finish: Any,
              events: Any, linger: Any) -> None:
    """The surviving Pusher: creates the work queue and pushes pattern items 0, 1, 2, ... (generation
    0) until ``finish``, then ``extra`` more, then ``stops`` STOP items. progress[0]: items pushed.
    Stays until ``linger``."""
    def body() -> None:
        from shmcomm import Pusher

        with Pusher(name, num_slots=num_slots, slot_size=size, serialization="raw") as push:
            events.put({"kind": "ready", "who": "pusher", "pid": os.getpid()})
            seq = 0
            end = None
            while end is None or seq < end:
                if end is None and seq % 64 == 0 and finish.is_set():
                    end = seq + extra
                    continue
                push.send_bytes(pattern_payload(seq, size), timeout=60.0)
                seq += 1
                progress[0] = seq
            for _ in range(stops):
                push.send_bytes(STOP, timeout=60.0)
            events.put({"kind": "result", "who": "pusher", "sent": seq, "stats_sent": push.stats()["sent"]})
            if not linger.wait(120):
                raise AssertionError("the parent never let us go")
    _run(events, body)


def cm_puller(name: str, index: int, size: int, progress: Any, events: Any) -> None:
    """A surviving Puller: takes items one at a time until a STOP item, checking each is whole, and
    counts how often it took each item per generation (a zlib-compressed byte per sequence number)."""
    def body() -> None:
        import zlib

        from shmcomm import Puller

        with Puller(name, timeout_connect=10.0, serialization="raw") as pull:
            events.put({"kind": "ready", "who": f"puller {index}", "pid": os.getpid()})
            seen: Dict[int, bytearray] = {}
            torn = 0
            anomalies: List[Any] = []
            while True:
                item = pull.recv_bytes(timeout=60.0)
                if item is None:
                    raise AssertionError(f"puller {index}: nothing within 60 s after {progress[0]} items")
                if item == STOP:
                    break
                seq = check_pattern(item)
                if seq is None or len(item) != size:
                    torn += 1
                    if len(anomalies) < 20:
                        anomalies.append(("torn", len(item), item[:24].hex()))
                    continue
                gen, n = seq >> 32, seq & 0xFFFFFFFF
                counts = seen.get(gen)
                if counts is None:
                    counts = seen[gen] = bytearray()
                if n >= len(counts):
                    counts.extend(bytes(max(n + 1 - len(counts), 4096)))
                if counts[n] < 255:
                    counts[n] += 1
                progress[0] += 1
            stats = pull.stats()
            events.put({"kind": "result", "who": f"puller {index}", "index": index, "torn": torn,
                        "anomalies": anomalies,
                        "seen": {gen: zlib.compress(bytes(c)) for gen, c in seen.items()},
                        "received": stats["received"], "dropped": stats["dropped"],
                        "restored": stats["restored"]})
    _run(events, body)


# ---- the crash matrix, PAIR -----------------------------------------------------------------------

def cm_pair_survivor(name: str, role: str, size: int, num_slots: int, progress: Any, finish: Any,
                     events: Any) -> None:
    """The surviving side of a pair (disconnect_behavior "never"): writes pattern messages 0, 1, 2, ...
    (generation 0) whenever its queue has room, and reads the victims' messages, checking each is
    whole and that per generation (one per victim) numbers run 0, 1, 2, ... without gap or repeat.
    progress[0]: rounds of its loop, each a write attempt and a read with a 1 ms timeout (it is never
    stuck in a call). After ``finish`` it reads what the last victim left, then reports."""
    def body() -> None:
        from shmcomm import Pair, SHMBufferFullError

        with Pair(name, role=role, disconnect_behavior="never", num_slots=num_slots, slot_size=size,
                  serialization="raw") as pair:
            events.put({"kind": "ready", "who": "survivor", "pid": os.getpid()})
            seq = 0
            check = GenerationCheck(size)
            while not finish.is_set():
                try:
                    pair.send_bytes(pattern_payload(seq, size), block=False)
                    seq += 1
                except SHMBufferFullError:
                    pass  # no victim reads now: the queue keeps what it has for the next one
                for payload in pair.recv_many_bytes(CM_BATCH, timeout=0.001):
                    check.take(payload)
                progress[0] += 1
            while True:  # what the last victim wrote before it was killed
                rest = pair.recv_many_bytes(64, timeout=0.5)
                if not rest:
                    break
                for payload in rest:
                    check.take(payload)
            s = pair.stats()
            events.put({"kind": "result", "who": "survivor", "sent": seq, **check.report(),
                        "received": check.expected, "drops": s["drops"], "reconnections": s["reconnections"]})
    _run(events, body)


def cm_victim_pair(name: str, role: str, gen: int, size: int, num_slots: int, path: str, seed: int,
                   counters: Any, events: Any, go: Any) -> None:
    """A side of a pair killed again and again: writes pattern messages (gen << 32) | n, singly or
    in send_many_bytes batches of up to CM_BATCH (counters[CM_DONE]: messages whose write returned),
    and after each write takes up to CM_BATCH of the survivor's messages, appending their numbers to
    ``path`` in one write(2) (killed, it loses at most the messages of one call). Counts torn
    messages (CM_TORN) and messages of another generation than the survivor's (CM_BAD)."""
    def loop() -> None:
        import random

        from shmcomm import Pair

        rng = random.Random(seed)
        base = gen << 32
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with Pair(name, role=role, disconnect_behavior="never", num_slots=num_slots, slot_size=size,
                  serialization="raw") as pair:
            counters[CM_ATTACHED] = 1
            seq = 0
            while True:
                if rng.randrange(2):
                    pair.send_bytes(pattern_payload(base | seq, size), timeout=60.0)
                    n = 1
                else:
                    n = rng.randint(2, CM_BATCH)
                    batch = [pattern_payload(base | (seq + i), size) for i in range(n)]
                    if pair.send_many_bytes(batch, timeout=60.0) != n:
                        raise AssertionError("send_many_bytes wrote only part of a batch")
                seq += n
                counters[CM_DONE] = seq
                out = []
                for item in pair.recv_many_bytes(rng.randint(1, CM_BATCH), timeout=0):
                    got = check_pattern(item)
                    if got is None or len(item) != size:
                        counters[CM_TORN] += 1
                    elif got >> 32:
                        counters[CM_BAD] += 1
                    else:
                        out.append(SEQ.pack(got))
                os.write(fd, b"".join(out))
    _cm_victim(events, go, loop)
