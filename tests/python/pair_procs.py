"""Child-process targets of test_pair.py (PAIR, shmcomm.Pair).

They live in a module of their own, like procs.py, so that a 'spawn' child imports only this module
and shmcomm, not pytest and the test module. Each target reports through one queue, ``events``:
{"kind": "ready" | "result" | ..., ...}, or {"kind": "error"} with the child's traceback (procs._run).
Every wait has a deadline, so a bug fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Optional

from procs import SEQ, _run, check_pattern, pattern_payload


def _stats(pair: Any) -> Dict[str, Any]:
    return dict(pair.stats())


def holder(name: str, role: str, events: Any, stop: Any, send: Optional[List[bytes]] = None,
           busy: Any = None, **options: Any) -> None:
    """Opens one side of the pair (or reports why it could not: {"kind": "refused"}), queues the
    messages of ``send``, says it is ready, then holds the pair until ``stop`` is set. With ``busy``
    (for use_threads=False): idle until ``busy`` is set, then calls is_remote_alive() every 5 ms."""
    def body() -> None:
        from shmcomm import Pair, SHMError

        try:
            pair = Pair(name, role, **options)
        except SHMError as exc:
            events.put({"kind": "refused", "type": type(exc).__name__, "message": str(exc),
                        "pid": os.getpid()})
            return
        with pair:
            for payload in send or []:
                pair.send_bytes(payload, timeout=10.0)
            events.put({"kind": "ready", "role": pair.role, "pid": os.getpid()})
            if busy is None:
                if not stop.wait(60):
                    raise AssertionError("the parent never said stop")
                return
            if not busy.wait(60):
                raise AssertionError("the parent never said to get busy")
            deadline = time.monotonic() + 60
            while not stop.is_set():
                pair.is_remote_alive()  # a call: without the heartbeat thread, the only beat
                if time.monotonic() > deadline:
                    raise AssertionError("the parent never said stop")
                time.sleep(0.005)
    _run(events, body)


def echo(name: str, role: str, count: int, events: Any, done: Any, **options: Any) -> None:
    """Answers each of ``count`` messages (raw bytes) with the same bytes and says so ("echoed"), then
    waits for ``done`` (so the parent's view of it stays 'connected' while it checks) and reports its
    stats, taken then: at rest, when every count is final."""
    def body() -> None:
        from shmcomm import Pair

        with Pair(name, role, serialization="raw", **options) as pair:
            events.put({"kind": "ready", "role": pair.role, "pid": os.getpid()})
            for i in range(count):
                message = pair.read_bytes(timeout=20.0)
                pair.send_bytes(message, timeout=20.0)
            events.put({"kind": "echoed", "echoed": count})  # every write returned: counts are final
            if not done.wait(60):
                raise AssertionError("the parent never said it was done")
            events.put({"kind": "result", "echoed": count, "stats": _stats(pair)})
    _run(events, body)


def early_slave(name: str, writes: int, reads: int, events: Any, done: Any) -> None:
    """A slave started before any master: queues ``writes`` messages ("s2m", i), then reads ``reads``
    messages (waiting for the master to come), reports them and its stats, stays until ``done``."""
    def body() -> None:
        from shmcomm import Pair

        with Pair(name, "slave") as pair:
            before = {"alive": pair.is_remote_alive(), "state": pair.stats()["remote_state"]}
            for i in range(writes):
                pair.write(("s2m", i), timeout=10.0)
            events.put({"kind": "ready", "pid": os.getpid(), "before": before})
            got = [pair.read(timeout=20.0) for _ in range(reads)]
            events.put({"kind": "result", "got": got, "stats": _stats(pair)})
            if not done.wait(60):
                raise AssertionError("the parent never said it was done")
    _run(events, body)


def numbered_writer(name: str, role: str, generation: int, size: int, progress: Any, events: Any,
                    linger: Any, count: Optional[int] = None, **options: Any) -> None:
    """Writes pattern payloads (generation << 32) | seq, seq = 0, 1, ...: ``count`` of them, or
    until killed. ``progress.value`` is the number of writes that returned (updated after each one),
    so a process killed mid-stream has fully written at least that many. Stays until ``linger``."""
    def body() -> None:
        from shmcomm import Pair

        with Pair(name, role, serialization="raw", slot_size=size, num_slots=16, **options) as pair:
            events.put({"kind": "ready", "role": pair.role, "pid": os.getpid()})
            seq = 0
            while count is None or seq < count:
                pair.send_bytes(pattern_payload((generation << 32) | seq, size), timeout=30.0)
                seq += 1
                progress.value = seq
            events.put({"kind": "result", "written": seq, "stats": _stats(pair)})
            if not linger.wait(60):
                raise AssertionError("the parent never let us go")
    _run(events, body)


def recording_reader(name: str, role: str, size: int, last: int, path: str, events: Any, linger: Any,
                     **options: Any) -> None:
    """Reads pattern payloads one at a time and appends each one's sequence number to ``path`` (one
    write(2) per message, right after the read returned): killed, the file holds every message it
    read except at most the one in its hands. Stops after reading number ``last``, reports, stays
    until ``linger``. A torn payload fails."""
    def body() -> None:
        from shmcomm import Pair

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            with Pair(name, role, serialization="raw", **options) as pair:
                events.put({"kind": "ready", "role": pair.role, "pid": os.getpid()})
                while True:
                    payload = pair.read_bytes(timeout=30.0)
                    seq = check_pattern(payload)
                    if seq is None or len(payload) != size:
                        raise AssertionError(f"torn message of {len(payload)} bytes: {payload[:24].hex()}")
                    os.write(fd, SEQ.pack(seq))
                    if seq == last:
                        break
                events.put({"kind": "result", "stats": _stats(pair)})
                if not linger.wait(60):
                    raise AssertionError("the parent never let us go")
        finally:
            os.close(fd)
    _run(events, body)


def flapping_slave(name: str, times: int, events: Any) -> None:
    """Opens and closes the slave side ``times`` times (one process throughout), then reports."""
    def body() -> None:
        from shmcomm import Pair

        events.put({"kind": "ready", "pid": os.getpid()})
        for _ in range(times):
            with Pair(name, "slave", stale_threshold=1.0):
                pass
        events.put({"kind": "result", "times": times})
    _run(events, body)
