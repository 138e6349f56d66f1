"""PUB/SUB: broadcast. Every Subscriber has its own cursor and sees every message published after it
attached, in order. By default slow subscribers skip old messages (counted as dropped) and the
publisher never blocks; with ``lossless=True`` publishers wait for the slowest live subscriber."""

from __future__ import annotations

import weakref
from typing import Any, Dict, List, Optional, Sequence

from . import _binding as b
from ._endpoint import check_int, timeout_to_ns
from ._io import Receiver, Sender
from .errors import SHMClosedError, SHMError, SHMStaleViewError
from .log import logger

ffi, lib = b.ffi, b.lib


def _stats_dict(s: Any) -> Dict[str, Any]:
    return {
        "num_slots": s.num_slots,
        "slot_size": s.slot_size,
        "lossless": bool(s.flags & lib.SHMC_LOSSLESS),
        "head": s.head,
        "msg_count": s.head,
        "publishers": s.publishers,
        "subscribers": s.subscribers,
        "publisher_alive": bool(s.publisher_alive),
    }


class PublisherLoan:
    """A slot lent by :meth:`Publisher.loan`: fill ``data`` in place, then ``commit()``. As a context
    manager it commits on success and gives the slot back unpublished on an exception."""

    def __init__(self, publisher: "Publisher", pointer: Any, nbytes: int) -> None:
        self._publisher = publisher
        self._nbytes = nbytes
        raw = ffi.buffer(pointer, nbytes)
        self._raw: Any = raw
        self.data: Optional[memoryview] = memoryview(raw)
        publisher._exports.append(weakref.ref(raw))

    def numpy(self, dtype: Any = "uint8", shape: Any = None) -> Any:
        """A writable numpy array viewing the slot (no copy)."""
        import numpy as np

        self._view()
        array = np.frombuffer(self._raw, dtype=dtype)
        return array if shape is None else array.reshape(shape)

    def _view(self) -> memoryview:
        if self.data is None:
            raise SHMClosedError("this loan was already committed or cancelled", b.ECLOSED)
        return self.data

    def _finish(self) -> Any:
        self._view()
        self.data = self._raw = None
        return self._publisher._require()

    def commit(self, nbytes: Optional[int] = None) -> None:
        """Publishes the first ``nbytes`` bytes (all of them by default)."""
        n = self._nbytes if nbytes is None else check_int(nbytes, "nbytes", 0, self._nbytes)
        b.check(lib.shmc_pub_commit(self._finish(), n), f"commit on {self._publisher.name!r}")
        self._publisher._loan = None

    def cancel(self) -> None:
        """Gives the slot back unpublished (subscribers count its position as dropped)."""
        b.check(lib.shmc_pub_cancel(self._finish()), f"cancel on {self._publisher.name!r}")
        self._publisher._loan = None

    def __enter__(self) -> "PublisherLoan":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if self.data is None:
            return
        if exc_type is None:
            self.commit()
        else:
            self.cancel()


class Publisher(Sender):
    """Creates channel ``name`` (or joins it as one more publisher) and publishes to it.

    ``num_slots`` is the ring depth, ``slot_size`` the largest message in bytes. ``lossless=True``
    makes sends wait (with ``block=True``) for the slowest live subscriber instead of overwriting.
    ``mode`` is the segment's permission: 0o600 (default, this user), 0o660 (group) or 0o666.
    """

    def __init__(self, name: str, num_slots: int = 64, slot_size: int = 4096,
                 serialization: str = "pickle", *, lossless: bool = False, max_peers: int = 64,
                 mode: int = 0o600) -> None:
        super().__init__(name)
        self._loan: Optional[PublisherLoan] = None
        self._exports: List[Any] = []  # weak references to loan buffers arrays may still use
        self.lossless = bool(lossless)
        self._open_keeper("pub", "Publisher", num_slots, slot_size, serialization, max_peers, mode,
                          lib.SHMC_LOSSLESS if lossless else 0)
        self._send = lib.shmc_pub_send
        self._try_send = lib.shmc_pub_try_send
        self._send_many = lib.shmc_pub_send_many

    def send(self, data: Any, *, block: bool = False, timeout: Optional[float] = None) -> bool:
        """Serializes ``data`` and publishes it. Returns True once published.

        In lossless mode a full ring raises :class:`SHMBufferFullError` unless ``block=True``, which
        waits up to ``timeout`` seconds (None: forever) and then raises :class:`SHMTimeoutError`.
        """
        return self._send_payload(self._serialize(data), block, timeout)

    def send_bytes(self, payload: Any, *, block: bool = False, timeout: Optional[float] = None) -> bool:
        """Publishes a bytes-like object (bytes, bytearray, memoryview, numpy array) with one copy."""
        return self._send_payload(payload, block, timeout)

    def send_many_bytes(self, payloads: Sequence[Any], *, block: bool = False,
                        timeout: Optional[float] = None) -> int:
        """Publishes a batch of bytes-like messages in one C call (the fast path for throughput).
        Returns how many were published: all of them, unless a lossless channel filled up (then
        SHMBufferFullError / SHMTimeoutError is raised with ``.sent`` set)."""
        return self._send_many_payloads(payloads, block, timeout)

    def _full_message(self) -> str:
        return (f"channel {self.name!r} is full: its slowest subscriber has not read the oldest "
                "message (lossless mode)")

    def loan(self, nbytes: Optional[int] = None, *, block: bool = False,
             timeout: Optional[float] = None) -> PublisherLoan:
        """Lends the next slot for writing in place (zero copy): ``loan.data`` is a writable
        memoryview of ``nbytes`` (default slot_size) bytes. Commit it, or use it as a context manager."""
        n = self.slot_size if nbytes is None else check_int(nbytes, "nbytes", 0, self.slot_size)
        if self._loan is not None:
            raise SHMError(f"{self.name!r} already has a loan open: commit or cancel it first", b.EINVAL)
        if len(self._exports) > 64:
            _prune(self._exports)
        pointer = ffi.new("void **")
        cap = ffi.new("size_t *")
        ns = timeout_to_ns(timeout) if block else 0
        rc = self._call_waiting(lambda h, t: lib.shmc_pub_loan(h, pointer, cap, t), ns)
        if rc:
            self._send_failed(rc, n, timeout)
        self._loan = PublisherLoan(self, pointer[0], n)
        return self._loan

    def _before_close(self) -> None:
        if self._loan is not None:
            self._loan.data = self._loan._raw = None  # the C close cancels an open loan
            self._loan = None

    def _close_handle(self, handle: Any) -> None:
        _close_mapping(handle, self._exports, lib.shmc_pub_detach, lib.shmc_pub_close, self.name)

    def stats(self) -> Dict[str, Any]:
        """Ring statistics: head/msg_count (messages published on the channel), sent (by this
        publisher), subscribers, publishers, geometry."""
        s = self._c_stats(lib.shmc_pub_stats)
        out = _stats_dict(s)
        out.update(name=self.name, sent=s.sent, drop_count=0)
        return out

    def __repr__(self) -> str:
        if self.closed:
            return f"<Publisher {self.name!r} closed>"
        s = self.stats()
        return (f"<Publisher {self.name!r} num_slots={s['num_slots']} slot_size={s['slot_size']} "
                f"lossless={s['lossless']} sent={s['sent']} subscribers={s['subscribers']}>")


class MessageView:
    """A received message seen in place, without a copy (from :meth:`Subscriber.recv_view`).

    ``data`` is a read-only memoryview into the channel, valid until ``release()`` (or the end of the
    ``with`` block). In overwrite mode the publisher may lap it meanwhile: ``release()`` then returns
    False, and the ``with`` block raises :class:`SHMStaleViewError`, so torn data is never silent.
    """

    def __init__(self, subscriber: "Subscriber", pointer: Any, nbytes: int) -> None:
        self._subscriber = subscriber
        raw = ffi.buffer(pointer, nbytes)
        self._raw: Any = raw
        self.data: Optional[memoryview] = memoryview(raw).toreadonly()
        self.nbytes = nbytes
        # Anything made from this view (memoryviews, numpy arrays) keeps `raw` alive: while the weak
        # reference lives, the segment must stay mapped.
        subscriber._exports.append(weakref.ref(raw))

    def __len__(self) -> int:
        return self.nbytes

    def __bytes__(self) -> bytes:
        return bytes(self._view())

    def _view(self) -> memoryview:
        if self.data is None:
            raise SHMClosedError("this message view was released; its memory belongs to the channel again",
                                 b.ECLOSED)
        return self.data

    def numpy(self, dtype: Any = "uint8", shape: Any = None) -> Any:
        """A read-only numpy array viewing the message (no copy), valid until release."""
        import numpy as np

        self._view()
        array = np.frombuffer(self._raw, dtype=dtype)
        array.flags.writeable = False
        return array if shape is None else array.reshape(shape)

    def release(self) -> bool:
        """Gives the slot back. True if the data stayed intact while it was viewed. numpy arrays made
        from the view keep pointing into the channel: do not use them after release (the memory is
        reused), though it stays mapped for as long as they live."""
        view = self.data
        if view is None:
            return True
        self.data = self._raw = None
        sub = self._subscriber
        sub._view = None
        handle = sub._handle
        if handle is None:
            return True
        rc = lib.shmc_sub_release(handle)
        if rc == b.ESTALE:
            return False
        b.check(rc, f"release on {sub.name!r}")
        return True

    def __enter__(self) -> "MessageView":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        intact = self.release()
        if not intact and exc_type is None:
            raise SHMStaleViewError(
                f"the message viewed on {self._subscriber.name!r} was overwritten while in use: its data "
                "may be torn. Use Publisher(lossless=True), or copy it out with recv_bytes()", b.ESTALE)


def _prune(exports: List[Any]) -> None:
    """Drops the weak references whose views (and everything made from them) are gone."""
    exports[:] = [ref for ref in exports if ref() is not None]


# Subscribers closed while buffers made from their views were alive: detached from their channel,
# still mapped, unmapped by _unmap_parked() once nothing refers to their memory any more.
_parked: List[Any] = []


def _unmap_parked() -> None:
    for entry in list(_parked):
        handle, exports, close = entry
        _prune(exports)
        if not exports:
            _parked.remove(entry)
            close(handle)


def _close_mapping(handle: Any, exports: List[Any], detach: Any, close: Any, name: str) -> None:
    """Closes an endpoint's handle; if buffers made from its loans or views are still alive, leaves the
    channel now and unmaps the segment only once they are gone (never a dangling view)."""
    _prune(exports)
    if exports:
        detach(handle)
        _parked.append((handle, exports, close))
        logger.debug("%r left its channel; its memory stays mapped while views of it live", name)
    else:
        close(handle)
    _unmap_parked()


class Subscriber(Receiver):
    """Attaches to channel ``name``, waiting up to ``timeout_connect`` seconds for its Publisher.

    Each Subscriber has a private cursor. ``spin_us`` is how long a receive busy-waits before it
    sleeps on a futex (raise it for the lowest latency, 0 to save CPU).
    """

    def __init__(self, name: str, timeout_connect: float = 5.0, serialization: str = "pickle", *,
                 spin_us: int = 50) -> None:
        super().__init__(name)
        self._view: Optional[MessageView] = None
        self._exports: List[Any] = []  # weak references to view buffers arrays may still use
        self._open_follower("sub", "Publisher", timeout_connect, serialization, spin_us)
        self._next = lib.shmc_sub_next
        self._next_latest = lib.shmc_sub_next_latest
        self._buffer_fn = lib.shmc_sub_buffer
        self._recv_many = lib.shmc_sub_recv_many
        self._refresh_buffer()
        logger.debug("subscriber %r attached", name)

    def _receive_failed(self, rc: int) -> None:
        if rc in (b.EAGAIN, b.ETIMEDOUT):
            return None
        if rc == b.EINVAL and self._view is not None:
            raise SHMError(f"{self.name!r} has a MessageView open: release it before receiving again", rc)
        super()._receive_failed(rc)

    def latest(self, timeout: Optional[float] = 0) -> Any:
        """The newest message not seen yet (older unread ones are skipped and counted), deserialized;
        None if there is none within ``timeout`` (default: do not wait)."""
        self._pending = None  # older than anything latest() returns
        n = self._receive(self._next_latest, timeout)
        return None if n is None else self._deserialize(self._buffer[0:n])

    def latest_bytes(self, timeout: Optional[float] = 0) -> Optional[bytes]:
        """Like :meth:`latest`, as bytes."""
        self._pending = None
        n = self._receive(self._next_latest, timeout)
        return None if n is None else self._buffer[0:n]

    def recv_view(self, timeout: Optional[float] = None) -> Optional[MessageView]:
        """The next message as a zero-copy :class:`MessageView` into the channel, or None on timeout.
        Release it (or use ``with``) before receiving again."""
        if self._view is not None:
            raise SHMError(f"{self.name!r} has a MessageView open: release it before receiving again",
                           b.EINVAL)
        if len(self._exports) > 64:
            _prune(self._exports)
        pointer = ffi.new("const void **")
        lenp = ffi.new("size_t *")
        rc = self._call_waiting(lambda h, t: lib.shmc_sub_loan(h, pointer, lenp, t), timeout_to_ns(timeout))
        if rc:
            self._receive_failed(rc)
            return None
        self._view = MessageView(self, pointer[0], int(lenp[0]))
        return self._view

    def _before_close(self) -> None:
        if self._view is not None:
            self._view.data = self._view._raw = None
            self._view = None

    def _close_handle(self, handle: Any) -> None:
        _close_mapping(handle, self._exports, lib.shmc_sub_detach, lib.shmc_sub_close, self.name)

    @property
    def publisher_alive(self) -> bool:
        """True while at least one publisher process of the channel is alive."""
        return bool(lib.shmc_sub_publisher_alive(self._require()))

    def stats(self) -> Dict[str, Any]:
        """received + dropped + skipped = messages published since this subscriber attached.
        ``local_tail`` is the subscriber's cursor (the next position it reads)."""
        s = self._c_stats(lib.shmc_sub_stats)
        out = _stats_dict(s)
        out.update(name=self.name, local_tail=s.cursor, received=s.received, dropped=s.dropped,
                   skipped=s.skipped, reconnects=s.reconnects, lag=max(0, s.head - s.cursor))
        return out

    def __repr__(self) -> str:
        if self.closed:
            return f"<Subscriber {self.name!r} closed>"
        s = self.stats()
        return (f"<Subscriber {self.name!r} local_tail={s['local_tail']} received={s['received']} "
                f"dropped={s['dropped']} publisher_alive={s['publisher_alive']}>")


__all__ = ["Publisher", "Subscriber", "PublisherLoan", "MessageView"]
