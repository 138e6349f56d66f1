"""REQ/REP: request/reply. Any number of Requesters, in any number of processes, talk to one Replier
or to several Repliers that share the requests; each reply goes back to the Requester that asked. A
reply that arrives after its request timed out is discarded, never handed to a later request. A
Requester whose Replier dies while handling its request fails at once with
:class:`SHMPeerDeadError` instead of waiting out its timeout."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional

from . import _binding as b
from ._endpoint import SLICE_NS
from ._buffers import as_buffer
from ._io import Receiver
from .errors import (SHMBufferFullError, SHMClosedError, SHMSequenceError, SHMTimeoutError,
                     SHMTypeError)

ffi, lib = b.ffi, b.lib

_EAGAIN, _ETIMEDOUT, _EEXPIRED = b.EAGAIN, b.ETIMEDOUT, b.EEXPIRED


def _stats_dict(s: Any) -> Dict[str, Any]:
    return {
        "num_slots": s.num_slots,
        "slot_size": s.slot_size,
        "requests": s.head,
        "queued": max(0, s.head - s.tail),
        "repliers": s.publishers,
        "requesters": s.subscribers,
        "payload_pool": bool(s.flags & lib.SHMC_PAYLOAD_POOL),
    }


class Replier(Receiver):
    """Creates service ``name`` (or joins it as one more Replier sharing the requests) and answers
    requests: ``recv()`` a request, then ``send()`` its reply; or ``serve(handler)``.

    ``num_slots`` is the depth of the request queue, ``slot_size`` the largest request or reply.
    """

    def __init__(self, name: str, num_slots: int = 16, slot_size: int = 8192,
                 serialization: str = "pickle", *, max_peers: int = 64, mode: int = 0o600) -> None:
        super().__init__(name)
        self._open_keeper("rep", "Replier", num_slots, slot_size, serialization, max_peers, mode)
        self._next = lib.shmc_rep_next
        self._recv = lib.shmc_rep_recv
        self._buffer_fn = lib.shmc_rep_buffer
        self._recv_many = None
        self._reply = lib.shmc_rep_send
        self._reply_next = lib.shmc_rep_reply_next
        self._refresh_buffer()

    def recv_many_bytes(self, max_messages: int = 64, timeout: Optional[float] = None) -> List[bytes]:
        raise SHMSequenceError("a Replier answers one request at a time: use recv() then send()",
                               b.ESEQUENCE)

    def recv_packed(self, buffer: Any, sizes: Any, timeout: Optional[float] = None) -> int:
        raise SHMSequenceError("a Replier answers one request at a time: use recv_into() or recv(), "
                               "then send()", b.ESEQUENCE)

    def send(self, data: Any) -> bool:
        """Serializes ``data`` and sends it as the reply to the request received last. True if
        delivered; False if its Requester no longer waits (it timed out or died): the reply is
        discarded. Never blocks."""
        return self.send_bytes(self._serialize(data))

    def send_bytes(self, payload: Any) -> bool:
        """Sends a bytes-like reply to the request received last (see :meth:`send`)."""
        buf = payload if payload.__class__ is bytes else as_buffer(payload)
        rc = self._reply(self._require(), buf, len(buf))
        if rc == 0:
            return True
        if rc == _EEXPIRED:
            return False
        if rc == b.ESEQUENCE:
            b.raise_error(rc, f"send on Replier {self.name!r}", "call recv() first: every reply answers "
                          "the request received last, and each request gets one reply")
        if rc == b.EMSGSIZE:
            b.raise_error(rc, f"cannot reply {len(buf)} bytes on {self.name!r}",
                          f"slot_size is {self.slot_size}: create the Replier with a larger slot_size")
        b.raise_error(rc, f"send on Replier {self.name!r} failed")

    def serve(self, handler: Callable[[Any], Any], *, raw: bool = False) -> int:
        """Answers requests with ``handler(request)`` until the Replier is closed (from another
        thread or a signal handler); returns how many requests were served. With ``raw=True`` the
        handler gets and returns bytes. An exception in the handler stops serving and propagates
        (the request it was handling is left to time out at its Requester)."""
        if not callable(handler):
            raise SHMTypeError(f"serve needs a callable handler(request) -> reply, not {type(handler).__name__}")
        served = 0
        reply: Any = b""
        while True:
            try:
                request = self.reply_and_recv_bytes(reply, SLICE_NS / 1e9)
            except SHMClosedError:
                self._wait_closed()
                return served
            reply = b""
            if request is None:
                if self.closed:
                    self._wait_closed()
                    return served
                continue
            reply = handler(request) if raw else self._serialize(handler(self._deserialize(request)))
            served += 1

    def reply_and_recv_bytes(self, reply: Any, timeout: Optional[float] = None) -> Optional[bytes]:
        """Answers the request received last with ``reply`` (bytes-like; discarded if its Requester
        stopped waiting) and waits up to ``timeout`` for the next request, in one C call: the
        serving loop's fast path. With no request received yet, only receives. None on timeout."""
        buf = reply if reply.__class__ is bytes else as_buffer(reply)
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        ns = self._ns(timeout)
        self._busy += 1
        n = self._reply_next(handle, buf, len(buf), 0)  # the reply, then the next request if ready
        self._busy -= 1
        if n == _EAGAIN and ns:
            n = self._call_waiting(self._next, ns)  # replied already: only wait now
        if n >= 0:
            if n > self._cap:
                self._refresh_buffer()
            request: bytes = self._buffer[0:n]
            return request
        self._receive_failed(n)
        return None

    def _close_handle(self, handle: Any) -> None:
        lib.shmc_rep_close(handle)

    def stats(self) -> Dict[str, Any]:
        """received (requests handed to this replier), sent (replies delivered), expired (requests
        skipped and replies discarded because their requester stopped waiting)."""
        s = self._c_stats(lib.shmc_rep_stats)
        out = _stats_dict(s)
        out.update(name=self.name, received=s.received, sent=s.sent, expired=s.expired,
                   restored=s.restored)
        return out

    def __repr__(self) -> str:
        if self.closed:
            return f"<Replier {self.name!r} closed>"
        s = self.stats()
        return f"<Replier {self.name!r} received={s['received']} sent={s['sent']} expired={s['expired']}>"


class Requester(Receiver):
    """Attaches to service ``name``, waiting up to ``timeout_connect`` seconds for a Replier, and
    sends requests: ``request(data, timeout)``, or ``send()`` then ``recv()``."""

    def __init__(self, name: str, timeout_connect: float = 5.0, serialization: str = "pickle", *,
                 spin_us: int = 50) -> None:
        super().__init__(name)
        self._open_follower("req", "Replier", timeout_connect, serialization, spin_us)
        self._next = lib.shmc_req_next
        self._recv = lib.shmc_req_recv
        self._buffer_fn = lib.shmc_req_buffer
        self._recv_many = None
        self._request = lib.shmc_req_request
        self._send = lib.shmc_req_send
        self._refresh_buffer()

    def recv_many_bytes(self, max_messages: int = 64, timeout: Optional[float] = None) -> List[bytes]:
        raise SHMSequenceError("a Requester gets one reply per request: use recv()", b.ESEQUENCE)

    def recv_packed(self, buffer: Any, sizes: Any, timeout: Optional[float] = None) -> int:
        raise SHMSequenceError("a Requester gets one reply per request: use recv_into() or recv()",
                               b.ESEQUENCE)

    def send(self, data: Any, timeout: Optional[float] = None) -> bool:
        """Serializes ``data`` and sends it as a request; ``recv()`` waits for its reply. A request
        still pending is given up first (its reply, if it comes, is discarded). Waits up to
        ``timeout`` for room in the request queue. Returns True."""
        return self.send_bytes(self._serialize(data), timeout)

    def send_bytes(self, payload: Any, timeout: Optional[float] = None) -> bool:
        """Sends a bytes-like request (see :meth:`send`)."""
        buf = payload if payload.__class__ is bytes else as_buffer(payload)
        size = len(buf)
        send = self._send
        rc = self._call_waiting(lambda h, t: send(h, buf, size, t), self._ns(timeout))
        if rc == _EAGAIN or rc == _ETIMEDOUT:
            self._queue_full(rc, timeout)
        if rc:
            self._failed(rc, size, timeout)
        return True

    def _queue_full(self, rc: int, timeout: Optional[float]) -> None:
        what = (f"the request queue of {self.name!r} is full: the Repliers are not keeping up; "
                "nothing was sent")
        if timeout == 0:
            raise SHMBufferFullError(f"{what}; pass a timeout to wait for room", rc)
        raise SHMTimeoutError(f"{what} (it stayed full for {timeout} s)", rc)

    def _failed(self, rc: int, size: int, timeout: Optional[float]) -> None:
        if rc == b.ETIMEDOUT or rc == b.EAGAIN:
            raise SHMTimeoutError(f"no reply from {self.name!r} within {timeout} s; the request was "
                                  "given up (a late reply is discarded)", rc)
        if rc == b.EMSGSIZE:
            b.raise_error(rc, f"cannot send a {size}-byte request to {self.name!r}",
                          "the Replier's slot_size is smaller: create it with a larger slot_size")
        self._receive_failed(rc)

    def _receive_failed(self, rc: int) -> None:
        if rc in (b.EAGAIN, b.ETIMEDOUT):
            return None
        hints = {
            b.EPEERDEAD: "the Replier died before answering: restart it and send the request again",
            b.ECLOSED: "the Replier closed the service: start one and send the request again",
            b.ESEQUENCE: "send a request first: recv() waits for the reply to the request sent last",
        }
        b.raise_error(rc, f"request to {self.name!r} failed", hints.get(rc, ""))

    def request(self, data: Any, timeout: Optional[float] = 5.0) -> Any:
        """Sends ``data`` and returns the deserialized reply. Raises :class:`SHMTimeoutError` if no
        reply arrives within ``timeout`` seconds (the request is then given up), and
        :class:`SHMPeerDeadError` as soon as the Replier handling it dies."""
        return self._deserialize(self.request_bytes(self._serialize(data), timeout))

    def request_bytes(self, payload: Any, timeout: Optional[float] = 5.0) -> bytes:
        """Like :meth:`request`, with bytes-like request and bytes reply (no serialization)."""
        buf = payload if payload.__class__ is bytes else as_buffer(payload)
        size = len(buf)
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        ns = self._ns(timeout)
        # One C call, waiting at most a slice (a reply usually comes in microseconds); a request
        # that times out stays pending, so a longer wait goes on in slices (Ctrl-C, close()).
        first = ns if 0 <= ns <= SLICE_NS else SLICE_NS
        deadline = time.monotonic_ns() + ns if first != ns and ns > 0 else 0
        self._busy += 1
        n = self._request(handle, buf, size, first)
        self._busy -= 1
        if n == _EAGAIN:
            self._queue_full(n, timeout)
        if n == _ETIMEDOUT and first != ns:
            n = self._call_waiting(self._next, -1 if ns < 0 else max(0, deadline - time.monotonic_ns()))
        if n == _ETIMEDOUT:
            lib.shmc_req_cancel(handle)  # given up: a late reply is discarded
        if n < 0:
            self._failed(n, size, timeout)
        if n > self._cap:
            self._refresh_buffer()
        reply: bytes = self._buffer[0:n]
        return reply

    def cancel(self) -> None:
        """Gives up the pending request: its reply, if it ever comes, is discarded."""
        b.check(lib.shmc_req_cancel(self._require()), f"cancel on {self.name!r}")

    @property
    def replier_alive(self) -> bool:
        """True while at least one Replier process of the service is alive."""
        return bool(lib.shmc_req_replier_alive(self._require()))

    def _close_handle(self, handle: Any) -> None:
        lib.shmc_req_close(handle)

    def stats(self) -> Dict[str, Any]:
        """sent (requests), received (replies), expired (requests given up: timeout or cancel)."""
        s = self._c_stats(lib.shmc_req_stats)
        out = _stats_dict(s)
        out.update(name=self.name, sent=s.sent, received=s.received, expired=s.expired,
                   reconnects=s.reconnects)
        return out

    def __repr__(self) -> str:
        if self.closed:
            return f"<Requester {self.name!r} closed>"
        s = self.stats()
        return f"<Requester {self.name!r} sent={s['sent']} received={s['received']}>"


__all__ = ["Replier", "Requester"]
