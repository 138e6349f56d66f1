"""REQ/REP (shmcomm.Replier / shmcomm.Requester): the reference API, call sequencing, timeouts and late
replies, serve(), and real processes: many requesters against one or two repliers, repliers and
requesters SIGKILLed mid-request, a restarted replier, C and Python talking to each other, bad input.

Every step across processes is synchronised through queues and events, and every wait has a
deadline."""

from __future__ import annotations

import inspect
import os
import pickle
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest

import shmcomm
from procs import (CTX, STOP_REQUEST, Children, child_env, echo_replier, get, holding_replier, join,
                   loop_replier, requester_client, serving_replier, victim_requester)
from shmcomm import (Replier, Requester, SHMBufferFullError, SHMClosedError, SHMConnectionError,
                     SHMError, SHMMessageSizeError, SHMNameError, SHMPeerDeadError,
                     SHMSequenceError, SHMSerializationError, SHMTimeoutError, SHMTypeError,
                     SHMValueError)


def defaults(func: Any) -> Dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(func).parameters.items()
            if p.default is not inspect.Parameter.empty}


def events_of(queue: Any, count: int, timeout: float, what: str) -> Dict[str, List[Dict[str, Any]]]:
    """``count`` events from a queue several children share, grouped by kind."""
    grouped: Dict[str, List[Dict[str, Any]]] = {}
    for _ in range(count):
        event = get(queue, timeout, what)
        grouped.setdefault(event["kind"], []).append(event)
    return grouped


def served_in_thread(rep: Replier, handler: Any, raw: bool = False) -> tuple:
    """Runs rep.serve(handler) in a thread; returns (thread, outcome list: served count or exception)."""
    outcome: List[Any] = []

    def run() -> None:
        try:
            outcome.append(rep.serve(handler, raw=raw))
        except BaseException as exc:  # reported by the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def stop_serving(rep: Replier, thread: threading.Thread, outcome: List[Any]) -> Any:
    """Closes the replier from this thread: serve() in the other one returns what it served."""
    rep.close()
    thread.join(10)
    assert not thread.is_alive(), "serve() did not return after the Replier was closed"
    assert len(outcome) == 1 and not isinstance(outcome[0], BaseException), outcome
    return outcome[0]


# ---- the reference API ----------------------------------------------------------------------------

def test_reference_signatures_and_defaults() -> None:
    assert list(inspect.signature(Replier).parameters)[:4] == ["name", "num_slots", "slot_size",
                                                               "serialization"]
    assert defaults(Replier).items() >= {"num_slots": 16, "slot_size": 8192,
                                         "serialization": "pickle"}.items()
    assert list(inspect.signature(Requester).parameters)[:3] == ["name", "timeout_connect",
                                                                 "serialization"]
    assert defaults(Requester).items() >= {"timeout_connect": 5.0, "serialization": "pickle"}.items()
    assert defaults(Requester.request) == {"timeout": 5.0}
    assert defaults(Requester.recv) == {"timeout": None}
    assert defaults(Replier.recv) == {"timeout": None}
    assert list(inspect.signature(Replier.send).parameters) == ["self", "data"]
    assert shmcomm.Replier is Replier and shmcomm.Requester is Requester
    assert {"Replier", "Requester"} <= set(shmcomm.__all__)


def test_send_recv_in_one_process_with_defaults(channel: str) -> None:
    with Replier(channel) as rep:
        assert rep.serialization == "pickle"
        stats = rep.stats()
        assert stats["num_slots"] == 16 and stats["slot_size"] == 8192
        assert rep.recv(timeout=0) is None and rep.recv(timeout=0.05) is None  # None on timeout
        with Requester(channel) as req:
            assert req.serialization == "pickle" and req.timeout_connect == 5.0
            assert req.replier_alive is True
            assert req.send({"q": 1}) is True
            assert rep.recv(timeout=5.0) == {"q": 1}
            assert rep.send({"a": 1}) is True
            assert req.recv(timeout=5.0) == {"a": 1}

            # A reply not there yet: recv returns None and the request stays pending.
            assert req.send(["second"]) is True
            assert req.recv(timeout=0) is None
            assert req.recv(timeout=0.05) is None
            assert rep.recv(timeout=5.0) == ["second"]
            assert rep.send("late but awaited") is True
            assert req.recv(timeout=5.0) == "late but awaited"

            # Bytes in both directions (no serialization on that side).
            assert req.send_bytes(b"raw request") is True
            assert rep.recv_bytes(timeout=5.0) == b"raw request"
            assert rep.send_bytes(bytearray(b"raw reply")) is True
            assert req.recv_bytes(timeout=5.0) == b"raw reply"
            req.send("pickled")
            assert pickle.loads(rep.recv_bytes(timeout=5.0)) == "pickled"
            rep.send_bytes(pickle.dumps(("built", "by hand")))
            assert req.recv(timeout=5.0) == ("built", "by hand")
            buf = bytearray(64)
            req.send_bytes(b"into")
            assert rep.recv_into(buf, timeout=5.0) == 4 and bytes(buf[:4]) == b"into"
            assert rep.send_bytes(b"reply into") is True
            assert req.recv_into(buf, timeout=5.0) == 10 and bytes(buf[:10]) == b"reply into"

            rstats, qstats = rep.stats(), req.stats()
            assert rstats["received"] == 5 and rstats["sent"] == 5 and rstats["expired"] == 0
            assert rstats["repliers"] == 1 and rstats["requesters"] == 1 and rstats["name"] == channel
            assert qstats["sent"] == 5 and qstats["received"] == 5 and qstats["expired"] == 0
            assert channel in repr(rep) and channel in repr(req)
        assert req.closed and "closed" in repr(req)
        with pytest.raises(SHMClosedError):
            req.request("x", timeout=1.0)
        with pytest.raises(SHMClosedError):
            req.send("x")
        req.close()  # twice is fine
        assert rep.stats()["requesters"] == 0
    assert rep.closed
    with pytest.raises(SHMClosedError):
        rep.recv(timeout=0)
    with pytest.raises(SHMClosedError):
        rep.send("x")
    rep.close()


@pytest.mark.timeout(30)  # bounds request(timeout=None) below
def test_request_and_serve_stopped_by_close_from_another_thread(channel: str) -> None:
    with Replier(channel, num_slots=8, slot_size=1024) as rep, Requester(channel) as req:
        thread, outcome = served_in_thread(rep, lambda request: {"echo": request})
        for i in range(50):
            assert req.request(i, timeout=5.0) == {"echo": i}  # one C call (timeout > 0.1 s: slices)
            assert req.request(("fast", i), timeout=0.1) == {"echo": ("fast", i)}
        assert pickle.loads(req.request_bytes(pickle.dumps("bytes in"), timeout=5.0)) == {"echo": "bytes in"}
        assert req.request(None, timeout=None) == {"echo": None}
        assert stop_serving(rep, thread, outcome) == 102
        qstats = req.stats()
        assert qstats["sent"] == 102 and qstats["received"] == 102 and qstats["expired"] == 0


def test_serve_raw_handler_gets_and_returns_bytes(channel: str) -> None:
    with Replier(channel, serialization="raw") as rep, Requester(channel, serialization="raw") as req:
        thread, outcome = served_in_thread(rep, lambda request: bytes(request)[::-1], raw=True)
        assert req.request(b"abc", timeout=5.0) == b"cba"
        assert req.request_bytes(bytearray(b"xyz"), timeout=5.0) == b"zyx"
        assert stop_serving(rep, thread, outcome) == 2


def test_request_times_out_and_the_given_up_request_is_skipped(channel: str) -> None:
    with Replier(channel) as rep, Requester(channel) as req:
        with pytest.raises(SHMTimeoutError) as info:
            req.request("slow path", timeout=0.3)  # waits in slices
        assert isinstance(info.value, TimeoutError)
        assert channel in str(info.value) and "0.3" in str(info.value)
        with pytest.raises(SHMTimeoutError):
            req.request("one C call", timeout=0.05)
        with pytest.raises(SHMTimeoutError):
            req.request_bytes(b"bytes", timeout=0.05)
        assert req.stats()["expired"] == 3
        # Nobody waits for these requests any more: the replier never sees them.
        assert rep.recv(timeout=0) is None
        assert rep.stats()["expired"] == 3 and rep.stats()["received"] == 0
        # cancel() gives up a request sent with send().
        req.send("cancelled")
        req.cancel()
        req.cancel()  # no-op with nothing pending
        assert rep.recv(timeout=0) is None
        with pytest.raises(SHMSequenceError):
            req.recv(timeout=0)
        # And the service works on.
        thread, outcome = served_in_thread(rep, lambda request: ("ok", request))
        assert req.request("next", timeout=5.0) == ("ok", "next")
        assert stop_serving(rep, thread, outcome) == 1


def test_request_with_zero_timeout_raises_timeout_instead_of_returning_garbage(channel: str) -> None:
    """timeout=0 means "do not wait" (as everywhere in shmcomm): with no reply ready at once the
    request is given up, and that is a timeout, not a reply."""
    with Replier(channel) as rep, Requester(channel) as req:
        with pytest.raises(SHMTimeoutError):
            reply = req.request_bytes(b"now", timeout=0)
            pytest.fail(f"request_bytes(timeout=0) returned a {len(reply)}-byte 'reply' nobody sent: "
                        f"{reply[:16]!r}...")
        with pytest.raises(SHMTimeoutError):
            req.request("now", timeout=0)
        assert rep.recv(timeout=0) is None  # given up: skipped


def test_send_on_a_full_request_queue_does_not_pretend_it_was_sent(channel: str) -> None:
    with Replier(channel, num_slots=2, slot_size=64) as rep, Requester(channel) as req:
        assert req.send("a") is True
        assert req.send("b") is True  # gives "a" up, but it stays queued (the replier skips it)
        assert rep.stats()["queued"] == 2
        with pytest.raises((SHMBufferFullError, SHMTimeoutError)):
            sent = req.send("c", timeout=0)
            pytest.fail(f"send(timeout=0) on a full request queue returned {sent!r}")
        with pytest.raises(SHMTimeoutError):
            req.send("c", timeout=0.2)
        # Nothing is pending: "c" was never queued (and sending it gave "b" up).
        with pytest.raises(SHMSequenceError):
            req.recv(timeout=0)


def test_send_timeout_on_a_full_request_queue_says_the_queue_is_full(channel: str) -> None:
    with Replier(channel, num_slots=2, slot_size=64), Requester(channel) as req:
        req.send("a")
        req.send("b")
        with pytest.raises(SHMTimeoutError) as info:
            req.send("c", timeout=0.2)
        message = str(info.value).replace(channel, "<name>")
        assert "full" in message or "room" in message, (
            f"the message blames a missing reply for a request that was never queued: {message}")


@pytest.mark.timeout(60)
def test_request_on_a_full_request_queue_honours_its_timeout(channel: str) -> None:
    with Replier(channel, num_slots=2, slot_size=64), Requester(channel) as req:
        req.send("a")
        req.send("b")  # the queue is full and the replier takes nothing
        outcome: List[Any] = []

        def ask() -> None:
            try:
                outcome.append(req.request("c", timeout=0.5))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=ask, daemon=True)
        thread.start()
        thread.join(5)
        hung = thread.is_alive()
        if hung:
            req.close()  # ends the waiting call (SHMClosedError in the thread)
            thread.join(10)
        assert not hung, "request(timeout=0.5) on a full request queue was still waiting after 5 s"
        assert len(outcome) == 1 and isinstance(outcome[0], SHMTimeoutError), outcome


# ---- sequencing ------------------------------------------------------------------------------------

def test_calls_out_of_order_raise_sequence_errors(channel: str) -> None:
    with Replier(channel) as rep, Requester(channel) as req:
        with pytest.raises(SHMSequenceError) as info:
            rep.send("a reply to nothing")
        assert isinstance(info.value, RuntimeError)
        assert "call recv() first" in str(info.value), str(info.value)
        with pytest.raises(SHMSequenceError, match=r"recv\(\) first"):
            rep.send_bytes(b"x")
        with pytest.raises(SHMSequenceError) as info:
            req.recv(timeout=1.0)  # no request sent: fails at once, no waiting
        assert "send a request first" in str(info.value), str(info.value)
        with pytest.raises(SHMSequenceError):
            req.recv_bytes(timeout=0)

        req.send(1)
        assert rep.recv(timeout=5.0) == 1
        assert rep.send(2) is True
        with pytest.raises(SHMSequenceError, match=r"recv\(\) first"):
            rep.send(3)  # each request gets one reply
        assert req.recv(timeout=5.0) == 2
        with pytest.raises(SHMSequenceError):
            req.recv(timeout=0)  # that reply was taken: nothing pending
        assert rep.recv(timeout=0) is None
        with pytest.raises(SHMSequenceError):
            rep.send("after a recv that timed out")
        with pytest.raises(SHMSequenceError):
            rep.recv_many_bytes(4, timeout=0)
        with pytest.raises(SHMSequenceError):
            req.recv_many_bytes(4, timeout=0)


def test_recv_into_a_small_buffer_keeps_the_request_current(channel: str) -> None:
    with Replier(channel, num_slots=4, slot_size=256) as rep, Requester(channel) as req:
        req.send_bytes(b"q" * 40)
        with pytest.raises(ValueError) as info:
            rep.recv_into(bytearray(8), timeout=5.0)
        assert isinstance(info.value, SHMValueError) and "40" in str(info.value)
        assert rep.recv_bytes(timeout=0) == b"q" * 40  # kept
        assert rep.send_bytes(b"answered") is True  # and still the request to answer
        small = bytearray(4)
        with pytest.raises(ValueError):
            req.recv_into(small, timeout=5.0)
        assert req.recv_bytes(timeout=0) == b"answered"  # the reply is kept too


def test_an_oversize_reply_is_refused_and_the_request_can_still_be_answered(channel: str) -> None:
    with Replier(channel, num_slots=4, slot_size=64) as rep, Requester(channel) as req:
        with pytest.raises(SHMMessageSizeError) as info:
            req.send_bytes(b"x" * 65)
        assert "slot_size" in str(info.value) and "65" in str(info.value)
        with pytest.raises(SHMMessageSizeError, match="slot_size"):
            req.request_bytes(b"x" * 65, timeout=1.0)
        req.send_bytes(b"q")
        assert rep.recv_bytes(timeout=5.0) == b"q"
        with pytest.raises(SHMMessageSizeError) as info:
            rep.send_bytes(b"y" * 65)
        assert "slot_size" in str(info.value) and "64" in str(info.value)
        assert rep.send_bytes(b"fits") is True
        assert req.recv_bytes(timeout=5.0) == b"fits"


# ---- real processes --------------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_four_requester_processes_get_exactly_their_own_replies(channel: str) -> None:
    requesters, count = 4, 500
    rep_events, req_events = CTX.Queue(), CTX.Queue()
    with Children() as kids:
        replier = kids.start(loop_replier, channel, 0, rep_events)
        get(rep_events, 30, "the replier", "ready")
        procs = [kids.start(requester_client, channel, rid, count, req_events) for rid in range(requesters)]
        grouped = events_of(req_events, 2 * requesters, 60, "the requesters' reports")
        assert len(grouped["ready"]) == requesters and len(grouped["result"]) == requesters
        for proc in procs:
            assert join(proc, 20, "requester") == 0
        with Requester(channel, timeout_connect=10.0) as req:
            assert req.request(STOP_REQUEST, timeout=30.0) == "bye"
        result = get(rep_events, 30, "the replier's report", "result")
        assert join(replier, 20, "replier") == 0
    for report in grouped["result"]:
        assert report["wrong_count"] == 0, f"requester {report['rid']} got others' replies: {report['wrong']}"
        assert report["by_replier"] == {0: count}
        assert report["sent"] == count and report["received"] == count and report["expired"] == 0
    assert sorted(r["rid"] for r in grouped["result"]) == list(range(requesters))
    total = requesters * count + 1  # + the stop request
    assert result["received"] == total and result["sent"] == total and result["expired"] == 0


@pytest.mark.timeout(120)
def test_large_requests_through_a_payload_pool_reach_a_replier_process_whole(channel: str) -> None:
    """64 KiB slots get a payload pool (docs/memory-layout.md): each request's buffer is chosen when it
    is queued. Three requester threads, requests of many sizes: every reply is its own request
    reversed, so a request read from a buffer another request was written into would show."""
    slot_size, events = 65536, CTX.Queue()
    with Children() as kids:
        replier = kids.start(echo_replier, channel, 8, slot_size, events)
        get(events, 30, "the replier", "ready")
        failures: List[str] = []

        def client(rid: int) -> None:
            with Requester(channel, serialization="raw", timeout_connect=10.0) as req:
                for i in range(150):
                    size = 1 + (rid * 7919 + i * 104729) % slot_size
                    request = bytes([rid, i % 256]) * (size // 2) + bytes(size % 2)
                    reply = req.request_bytes(request, timeout=30.0)
                    if reply != request[::-1]:
                        failures.append(f"requester {rid} request {i}: wrong reply")

        threads = [threading.Thread(target=client, args=(rid,)) for rid in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert not any(t.is_alive() for t in threads)
        with Requester(channel, serialization="raw", timeout_connect=10.0) as req:
            assert req.request_bytes(b"", timeout=30.0) == b""
        result = get(events, 30, "the replier's report", "result")
        assert join(replier, 20, "replier") == 0
    assert failures == []
    assert result["payload_pool"] is True and result["received"] == 3 * 150 + 1, result


@pytest.mark.timeout(120)
def test_two_replier_processes_share_four_requesters(channel: str) -> None:
    requesters, count = 4, 300
    rep_events = [CTX.Queue(), CTX.Queue()]
    req_events, hold_first = CTX.Queue(), CTX.Event()
    with Children() as kids:
        # Each replier holds its first request until both have one: while one holds a request it
        # takes no other, so the others' requests go to the other replier. Both serve some, always.
        repliers = [kids.start(loop_replier, channel, i, rep_events[i], hold_first) for i in range(2)]
        for i in range(2):
            assert get(rep_events[i], 30, f"replier {i}", "ready")["index"] == i
        procs = [kids.start(requester_client, channel, rid, count, req_events) for rid in range(requesters)]
        for i in range(2):
            get(rep_events[i], 30, f"replier {i} to take its first request", "first")
        hold_first.set()
        grouped = events_of(req_events, 2 * requesters, 60, "the requesters' reports")
        for proc in procs:
            assert join(proc, 20, "requester") == 0
        with Requester(channel, timeout_connect=10.0) as req:
            # A replier that answers STOP_REQUEST stops taking requests: the second goes to the other.
            assert req.request(STOP_REQUEST, timeout=30.0) == "bye"
            assert req.request(STOP_REQUEST, timeout=30.0) == "bye"
        results = [get(rep_events[i], 30, f"replier {i}'s report", "result") for i in range(2)]
        for proc in repliers:
            assert join(proc, 20, "replier") == 0
    answered = {0: 0, 1: 0}
    for report in grouped["result"]:
        assert report["wrong_count"] == 0, f"requester {report['rid']} got others' replies: {report['wrong']}"
        assert report["received"] == count and report["expired"] == 0
        assert sum(report["by_replier"].values()) == count
        for index, n in report["by_replier"].items():
            answered[index] += n
    assert sum(r["received"] for r in results) == requesters * count + 2  # + the two stop requests
    for result in results:
        assert result["received"] == answered[result["index"]] + 1, (result, answered)
        assert result["sent"] == result["received"] and result["expired"] == 0
        assert answered[result["index"]] >= 1, f"replier {result['index']} served nothing: {answered}"


@pytest.mark.timeout(60)
def test_timed_out_request_gets_no_late_reply_the_next_request_gets_its_own(channel: str) -> None:
    rep_events, commands = CTX.Queue(), CTX.Queue()
    with Children() as kids:
        replier = kids.start(holding_replier, channel, "answer", rep_events, commands)
        get(rep_events, 30, "the replier", "ready")
        with Requester(channel, timeout_connect=10.0) as req:
            with pytest.raises(SHMTimeoutError):
                req.request("A", timeout=0.3)  # the replier takes A and holds it
            assert get(rep_events, 30, "the replier to report it holds A", "got")["request"] == "A"
            assert req.send("B") is True  # B is pending when A's late reply comes
            commands.put("answer")
            answered = get(rep_events, 30, "the replier to answer A", "answered")
            assert answered["delivered"] is False  # A's requester gave up: discarded
            assert req.recv(timeout=30.0) == ("reply", 0, "B")  # B's reply, never A's
            assert req.request("C", timeout=30.0) == ("reply", 0, "C")
            stats = req.stats()
            assert stats["expired"] == 1 and stats["received"] == 2 and stats["sent"] == 3
            assert req.request(STOP_REQUEST, timeout=30.0) == "bye"
        result = get(rep_events, 30, "the replier's report", "result")
        assert join(replier, 20, "replier") == 0
    assert result["received"] == 4 and result["sent"] == 3 and result["expired"] == 1


@pytest.mark.timeout(60)
def test_requester_started_first_waits_for_a_serving_replier_process(channel: str) -> None:
    events, stop = CTX.Queue(), CTX.Event()
    with pytest.raises(SHMConnectionError) as info:
        Requester(channel, timeout_connect=0.1)
    assert "start the Replier" in str(info.value) and channel in str(info.value), str(info.value)
    with Children() as kids:
        proc = kids.start(serving_replier, channel, events, stop)
        with Requester(channel, timeout_connect=30.0) as req:  # waits until the replier is up
            get(events, 30, "the serving replier", "ready")
            for i in range(20):
                assert req.request(i, timeout=30.0) == ("served", i)
            stop.set()  # a thread in the child closes the replier: serve() returns
            result = get(events, 30, "the replier's report", "result")
            assert join(proc, 20, "replier") == 0
            assert result == {"kind": "result", "served": 20, "closed": True, "closer_done": True}
            # The service is closed: a request fails at once (not after its timeout).
            with pytest.raises(SHMError) as err:
                req.request("nobody serves", timeout=30.0)
            assert isinstance(err.value, (SHMClosedError, SHMPeerDeadError)), repr(err.value)
            assert not req.replier_alive


@pytest.mark.timeout(60)
def test_terminated_serving_replier_process_fails_the_pending_request(channel: str) -> None:
    events, stop = CTX.Queue(), CTX.Event()
    with Children() as kids:
        proc = kids.start(serving_replier, channel, events, stop)
        get(events, 30, "the serving replier", "ready")
        try:
            with Requester(channel, timeout_connect=10.0) as req:
                assert req.request("before", timeout=30.0) == ("served", "before")
                proc.terminate()  # SIGTERM: the process dies without closing anything
                assert join(proc, 20, "terminated replier") == -signal.SIGTERM
                with pytest.raises(SHMPeerDeadError) as info:
                    req.request("after", timeout=30.0)
                assert isinstance(info.value, SHMConnectionError)
                assert not req.replier_alive
        finally:
            # Nobody closed the service: remove its segment as an operator would (shmcomm clean).
            shmcomm.force_unlink(shmcomm.os_name(channel, "reqrep"))


@pytest.mark.timeout(60)
def test_replier_sigkilled_holding_a_request_fails_it_at_once_and_a_new_replier_takes_over(
        channel: str) -> None:
    events1, events2 = CTX.Queue(), CTX.Queue()
    with Children() as kids:
        first = kids.start(holding_replier, channel, "die", events1)  # SIGKILLs itself holding it
        get(events1, 30, "the replier to be killed", "ready")
        with Requester(channel, timeout_connect=10.0) as req:
            with pytest.raises(SHMError) as info:
                req.request("held", timeout=30.0)
            assert not isinstance(info.value, SHMTimeoutError), \
                f"the requester waited out its timeout instead of seeing the replier die: {info.value!r}"
            assert isinstance(info.value, SHMPeerDeadError), repr(info.value)
            assert isinstance(info.value, SHMConnectionError)
            assert "died" in str(info.value), str(info.value)
            assert join(first, 10, "killed replier") == -signal.SIGKILL

            # A new replier process on the same name: the same Requester's next request succeeds.
            second = kids.start(loop_replier, channel, 1, events2)
            get(events2, 30, "the new replier", "ready")
            assert req.request("after the restart", timeout=30.0) == ("reply", 1, "after the restart")
            stats = req.stats()
            assert stats["reconnects"] == 1 and stats["received"] == 1, stats
            assert req.replier_alive
            assert req.request(STOP_REQUEST, timeout=30.0) == "bye"
        get(events2, 30, "the new replier's report", "result")
        assert join(second, 20, "new replier") == 0


@pytest.mark.timeout(60)
def test_replier_keeps_serving_when_requesters_are_sigkilled_mid_request(channel: str) -> None:
    with Replier(channel, num_slots=16, slot_size=1024) as rep, Children() as kids:
        # Victim 1 is killed after the replier took its request.
        events1 = CTX.Queue()
        victim1 = kids.start(victim_requester, channel, events1)
        get(events1, 30, "the first victim's request", "sent")
        assert rep.recv(timeout=30.0) == ("victim", 0)
        os.kill(victim1.pid, signal.SIGKILL)
        assert join(victim1, 10, "killed requester") == -signal.SIGKILL
        delivered = rep.send(("reply", 0, ("victim", 0)))
        assert delivered in (True, False)
        # Victim 2 is killed before any replier took its request.
        events2 = CTX.Queue()
        victim2 = kids.start(victim_requester, channel, events2)
        get(events2, 30, "the second victim's request", "sent")
        os.kill(victim2.pid, signal.SIGKILL)
        assert join(victim2, 10, "killed requester") == -signal.SIGKILL

        thread, outcome = served_in_thread(rep, lambda request: ("reply", 0, request))
        events = CTX.Queue()
        good = kids.start(requester_client, channel, 7, 200, events)
        get(events, 30, "the surviving requester", "ready")
        report = get(events, 60, "the surviving requester's report", "result")
        assert join(good, 20, "requester") == 0
        served = stop_serving(rep, thread, outcome)
    assert report["wrong_count"] == 0, report["wrong"]
    assert report["received"] == 200 and report["by_replier"] == {0: 200}
    assert served in (200, 201)  # victim 2's request is answered into the void, or skipped


# ---- C and Python ----------------------------------------------------------------------------------

def example(c_build: Path, name: str) -> Path:
    path = c_build / "examples" / "c" / name
    assert path.is_file(), f"{name} was not built by meson (looked for {path})"
    return path


def c_answer(request: bytes) -> bytes:
    """What rep_example answers: a number doubled, other text in upper case."""
    return b"%d" % (2 * int(request)) if request.isdigit() else request.upper()


@pytest.mark.timeout(120)
def test_c_replier_to_python_requester(c_build: Path, channel: str) -> None:
    count = 200
    proc = subprocess.Popen([str(example(c_build, "rep_example")), channel, str(count)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        with Requester(channel, timeout_connect=10.0, serialization="raw") as req:
            for i in range(count):
                request = b"hello %d" % i if i % 2 == 0 else b"%d" % i
                if i % 4 < 2:
                    reply = req.request_bytes(request, timeout=10.0)
                else:
                    reply = req.request(request, timeout=10.0)
                assert reply == c_answer(request), f"request {request!r}: reply {reply!r}"
            assert req.stats()["received"] == count
        out, err = proc.communicate(timeout=30)  # it exits once its requester has left
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 0, f"rep_example exit {proc.returncode}: {err}"
    lines = out.splitlines()
    assert lines[0] == f"rep_example: serving {count} requests on '{channel}'"
    assert lines[1:] == [f"rep_example: 'hello {i}' -> 'HELLO {i}'" if i % 2 == 0
                         else f"rep_example: '{i}' -> '{2 * i}'" for i in range(count)]


@pytest.mark.timeout(120)
def test_python_replier_to_c_requester_started_first(c_build: Path, channel: str) -> None:
    count = 200
    # The C requester starts first and waits (up to 10 s) for the service.
    proc = subprocess.Popen([str(example(c_build, "req_example")), channel, str(count)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        with Replier(channel, serialization="raw") as rep:
            for i in range(count):
                request = rep.recv_bytes(timeout=10.0)
                assert request is not None, f"request {i} did not come; req_example: {proc.poll()}"
                assert request == (b"hello %d" % i if i % 2 == 0 else b"%d" % i)
                assert rep.send_bytes(c_answer(request)) is True
            out, err = proc.communicate(timeout=30)
            stats = rep.stats()
            assert stats["received"] == count and stats["sent"] == count and stats["expired"] == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 0, f"req_example exit {proc.returncode}: {err}\n{out}"
    lines = out.splitlines()
    assert lines[0] == f"req_example: sending {count} requests to '{channel}'"
    assert lines[1:-1] == [f"req_example: 'hello {i}' -> 'HELLO {i}'" if i % 2 == 0
                           else f"req_example: '{i}' -> '{2 * i}'" for i in range(count)]
    assert lines[-1] == f"req_example: done, {count} replies right"


@pytest.mark.timeout(60)
def test_c_requester_detects_a_wrong_python_reply(c_build: Path, channel: str) -> None:
    proc = subprocess.Popen([str(example(c_build, "req_example")), channel, "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        with Replier(channel, serialization="raw") as rep:
            assert rep.recv_bytes(timeout=10.0) == b"hello 0"
            assert rep.send_bytes(b"not HELLO 0") is True
            out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 4, f"req_example exit {proc.returncode}: {err}\n{out}"
    assert "WRONG" in out


# ---- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [123, None, b"bytes", ["list"]], ids=repr)
def test_names_must_be_str(bad: Any) -> None:
    with pytest.raises(SHMTypeError, match="str"):
        Replier(bad)
    with pytest.raises(SHMTypeError, match="str"):
        Requester(bad, timeout_connect=0)


@pytest.mark.parametrize("bad", ["", "..", "a/./b", "x\x00y", "tab\there"], ids=repr)
def test_invalid_names_are_refused(bad: str) -> None:
    with pytest.raises(SHMNameError):
        Replier(bad)
    with pytest.raises(SHMNameError):
        Requester(bad, timeout_connect=0)


@pytest.mark.parametrize("kwargs, error", [
    ({"num_slots": 1}, SHMValueError),
    ({"num_slots": 0}, SHMValueError),
    ({"num_slots": 2 ** 25}, SHMValueError),
    ({"num_slots": 16.0}, SHMTypeError),
    ({"num_slots": "16"}, SHMTypeError),
    ({"slot_size": 0}, SHMValueError),
    ({"slot_size": -1}, SHMValueError),
    ({"slot_size": 8192.0}, SHMTypeError),
    ({"slot_size": False}, SHMTypeError),
    ({"max_peers": 255}, SHMValueError),
    ({"mode": "0o600"}, SHMTypeError),  # a str, not the int 0o600
    ({"mode": 0o644}, SHMValueError),
], ids=lambda v: repr(v) if isinstance(v, dict) else v.__name__)
def test_bad_replier_geometry_is_refused(channel: str, kwargs: dict, error: type) -> None:
    with pytest.raises(error) as info:
        Replier(channel, **kwargs)
    assert next(iter(kwargs)) in str(info.value), str(info.value)
    assert not os.path.exists(os.path.join("/dev/shm", shmcomm.os_name(channel, "reqrep")))


@pytest.mark.parametrize("timeout, error", [(-1, SHMValueError), (-0.5, SHMValueError),
                                            (float("nan"), SHMValueError), ("5", SHMTypeError),
                                            ([1], SHMTypeError), (True, SHMTypeError)], ids=repr)
def test_bad_timeouts_are_refused(channel: str, timeout: Any, error: type) -> None:
    with Replier(channel, num_slots=4, slot_size=256) as rep, Requester(channel) as req:
        for call in (lambda: req.request("x", timeout=timeout),
                     lambda: req.request_bytes(b"x", timeout=timeout),
                     lambda: req.send("x", timeout=timeout),
                     lambda: rep.recv(timeout=timeout),
                     lambda: rep.recv_bytes(timeout=timeout)):
            with pytest.raises(error, match="timeout"):
                call()
        assert rep.recv(timeout=0) is None  # nothing was sent by the refused calls
        assert req.stats()["sent"] == 0
        req.send("pending")
        with pytest.raises(error, match="timeout"):
            req.recv(timeout=timeout)
        assert rep.recv(timeout=5.0) == "pending"  # still pending: it can be answered
        assert rep.send("answer") is True
        assert req.recv(timeout=5.0) == "answer"
        with pytest.raises(error, match="timeout_connect"):
            Requester(channel, timeout_connect=timeout)


def test_bad_payloads_and_serialization_are_refused(channel: str) -> None:
    with Replier(channel, num_slots=4, slot_size=256) as rep, \
            Requester(channel, serialization="raw") as req:
        with pytest.raises(SHMTypeError, match="bytes-like"):
            req.send_bytes("a str")  # type: ignore[arg-type]
        with pytest.raises(SHMTypeError, match="bytes-like"):
            req.request_bytes(12, timeout=1.0)  # type: ignore[arg-type]
        with pytest.raises(SHMSerializationError, match="raw"):
            req.request({"not": "bytes"}, timeout=1.0)
        assert rep.recv(timeout=0) is None  # nothing was sent
        req.send(b"ok")
        assert rep.recv_bytes(timeout=5.0) == b"ok"
        with pytest.raises(SHMTypeError, match="bytes-like"):
            rep.send_bytes(["not", "bytes"])  # type: ignore[arg-type]
        with pytest.raises(SHMSerializationError):
            rep.send(lambda: "unpicklable")
        assert rep.send(b"still current") is True  # refused replies leave the request current
        assert pickle.loads(req.recv(timeout=5.0)) == b"still current"
        with pytest.raises(SHMTypeError, match="spin_us"):
            Requester(channel, spin_us="50")  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["json", "PICKLE", None])
def test_unknown_serialization_lists_the_choices(channel: str, method: Any) -> None:
    for make in (lambda: Replier(channel, serialization=method),
                 lambda: Requester(channel, timeout_connect=0, serialization=method)):
        with pytest.raises(SHMSerializationError) as info:
            make()
        assert all(choice in str(info.value) for choice in ("pickle", "msgpack", "raw")), str(info.value)
