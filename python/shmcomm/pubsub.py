"""PUB/SUB: broadcast. Every Subscriber has its own cursor and sees every message published after it
attached, in order. By default slow subscribers skip old messages (counted as dropped) and the
publisher never blocks; with ``lossless=True`` publishers wait for the slowest live subscriber."""

from __future__ import annotations

import weakref
from typing import Any, Dict, List, Optional, Sequence

from . import _binding as b
from ._endpoint import check_int
from ._io import Receiver, Sender, with_block_default
from .errors import SHMClosedError, SHMError, SHMStaleViewError
from .log import logger

ffi, lib = b.ffi, b.lib
_EAGAIN = b.EAGAIN
_pub_loan, _pub_commit = lib.shmc_pub_loan, lib.shmc_pub_commit
_sub_loan, _sub_release = lib.shmc_sub_loan, lib.shmc_sub_release


def _stats_dict(s: Any) -> Dict[str, Any]:
    return {
        "num_slots": s.num_slots,
        "slot_size": s.slot_size,
        "lossless": bool(s.flags & lib.SHMC_LOSSLESS),
        "single_writer": bool(s.flags & lib.SHMC_SINGLE_WRITER),
        "payload_pool": bool(s.flags & lib.SHMC_PAYLOAD_POOL),
        "head": s.head,
        "msg_count": s.head,
        "publishers": s.publishers,
        "subscribers": s.subscribers,
        "publisher_alive": bool(s.publisher_alive),
    }


def _nbytes_arg(nbytes: Optional[int], limit: int) -> int:
    """A loan's size argument: ``limit`` for None, else an int in 0..limit (the common case costs
    one test; anything else gets check_int's error)."""
    if nbytes is None:
        return limit
    if nbytes.__class__ is int and 0 <= nbytes <= limit:
        return nbytes
    return check_int(nbytes, "nbytes", 0, limit)


class PublisherLoan:
    """A slot lent by :meth:`Publisher.loan`: fill ``data`` in place, then ``commit()``. As a context
    manager it commits on success and gives the slot back unpublished on an exception."""

    __slots__ = ("_publisher", "_nbytes", "data")

    def __init__(self, publisher: "Publisher", data: memoryview, nbytes: int) -> None:
        self._publisher = publisher
        self._nbytes = nbytes
        self.data: Optional[memoryview] = data

    def numpy(self, dtype: Any = "uint8", shape: Any = None) -> Any:
        """A writable numpy array viewing the slot (no copy)."""
        import numpy as np

        array = np.frombuffer(self._view(), dtype=dtype)
        return array if shape is None else array.reshape(shape)

    def _view(self) -> memoryview:
        if self.data is None:
            raise SHMClosedError("this loan was already committed or cancelled", b.ECLOSED)
        return self.data

    def _finish(self) -> Any:
        """Ends the loan on the Python side; the publisher's handle, for the C call that ends it."""
        if self.data is None:
            raise SHMClosedError("this loan was already committed or cancelled", b.ECLOSED)
        self.data = None
        publisher = self._publisher
        publisher._loan = None
        handle = publisher._handle
        if handle is None:
            raise publisher._closed_error()
        return handle

    def commit(self, nbytes: Optional[int] = None) -> None:
        """Publishes the first ``nbytes`` bytes (all of them by default)."""
        n = _nbytes_arg(nbytes, self._nbytes)
        handle = self._finish()
        publisher = self._publisher
        publisher._busy += 1
        rc = _pub_commit(handle, n)
        publisher._busy -= 1
        if rc:
            b.raise_error(rc, f"commit on {publisher.name!r}")

    def cancel(self) -> None:
        """Gives the slot back unpublished (subscribers count its position as dropped)."""
        handle = self._finish()
        publisher = self._publisher
        publisher._busy += 1
        rc = lib.shmc_pub_cancel(handle)
        publisher._busy -= 1
        if rc:
            b.raise_error(rc, f"cancel on {publisher.name!r}")

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
    ``single_writer=True`` declares this Publisher the channel's only one: another live Publisher
    of the name gets :class:`SHMConnectionError`, one opened after this one died takes the channel
    over (subscribers read on, nothing they had is lost), and batches go faster (no locked
    instruction per message). Every Publisher of a channel must agree on it.
    ``mode`` is the segment's permission: 0o600 (default, this user), 0o660 (group) or 0o666.
    """

    def __init__(self, name: str, num_slots: int = 64, slot_size: int = 4096,
                 serialization: str = "pickle", *, lossless: bool = False, single_writer: bool = False,
                 max_peers: int = 64, mode: int = 0o600) -> None:
        super().__init__(name)
        self._loan: Optional[PublisherLoan] = None
        self._exports: List[Any] = []  # weak references to loan buffers arrays may still use
        self._prune_at = _PRUNE_AT
        self._slots: Dict[Any, memoryview] = {}  # see _slot_view
        self._slot_out = (ffi.new("void **"), ffi.new("size_t *"))  # shmc_pub_loan's out-parameters
        self.lossless, self.single_writer = bool(lossless), bool(single_writer)
        self._open_keeper("pub", "Publisher", num_slots, slot_size, serialization, max_peers, mode,
                          (lib.SHMC_LOSSLESS if lossless else 0) | (lib.SHMC_SINGLE_WRITER if single_writer else 0))
        self._send = lib.shmc_pub_send
        self._try_send = lib.shmc_pub_try_send
        self._send_many = lib.shmc_pub_send_many

    def send(self, data: Any, *, block: bool = False, timeout: Optional[float] = None) -> bool:
        """Serializes ``data`` and publishes it. Returns True once published.

        In lossless mode a full ring raises :class:`SHMBufferFullError` unless ``block=True``, which
        waits up to ``timeout`` seconds (None: forever) and then raises :class:`SHMTimeoutError`.
        """
        return self.send_bytes(self._serialize(data), block=block, timeout=timeout)

    send_bytes = with_block_default(
        Sender.send_bytes, False, "Publisher.send_bytes",
        """Publishes a bytes-like object (bytes, bytearray, memoryview, numpy array) with one copy.
        Returns True once published; a full lossless ring as :meth:`send`.""")

    def send_many_bytes(self, payloads: Sequence[Any], *, block: bool = False,
                        timeout: Optional[float] = None) -> int:
        """Publishes a batch of bytes-like messages in one C call (the fast path for throughput).
        Returns how many were published: all of them, unless a lossless channel filled up (then
        SHMBufferFullError / SHMTimeoutError is raised with ``.sent`` set)."""
        return self._send_many_payloads(payloads, block, timeout)

    def send_packed(self, data: Any, sizes: Any, *, block: bool = False, timeout: Optional[float] = None) -> int:
        """Publishes a batch of messages packed back to back in ``data`` (any C-contiguous bytes-like
        object: bytes, bytearray, memoryview, numpy array) in one C call, with no Python object per
        message: the fast path for arrays of fixed-size records. ``sizes`` is an int (every message
        has that many bytes; data's size must be a multiple of it) or a buffer of uint64 with one
        size per message (``array('Q')``, a numpy.uint64 array) adding up to data's size. Each is
        an ordinary message for any subscriber. Returns how many were published; a full lossless
        ring raises as :meth:`send_many_bytes` does, with ``.sent`` set."""
        return self._send_packed(data, sizes, block, timeout)

    def _full_message(self) -> str:
        return (f"channel {self.name!r} is full: its slowest subscriber has not read the oldest "
                "message (lossless mode)")

    def loan(self, nbytes: Optional[int] = None, *, block: bool = False,
             timeout: Optional[float] = None) -> PublisherLoan:
        """Lends the next slot for writing in place (zero copy): ``loan.data`` is a writable
        memoryview of ``nbytes`` (default slot_size) bytes. Commit it, or use it as a context manager."""
        n = _nbytes_arg(nbytes, self.slot_size)
        if self._loan is not None:
            raise SHMError(f"{self.name!r} already has a loan open: commit or cancel it first", b.EINVAL)
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        if block:
            last = self._last
            ns = last[1] if timeout is last[0] else self._ns(timeout)
        else:
            ns = 0
        slot, cap = self._slot_out
        self._busy += 1
        rc = _pub_loan(handle, slot, cap, 0)  # first without waiting: the common case is one C call
        self._busy -= 1
        if rc:
            if rc == _EAGAIN and ns:
                rc = self._call_waiting(self._loan_waiting, ns)
            if rc:
                self._send_failed(rc, n, timeout)
        loan = self._loan = PublisherLoan(self, _slot_view(self, slot[0], n, False), n)
        return loan

    def _loan_waiting(self, handle: Any, timeout_ns: int) -> int:
        rc: int = _pub_loan(handle, self._slot_out[0], self._slot_out[1], timeout_ns)
        return rc

    def _before_close(self) -> None:
        if self._loan is not None:
            self._loan.data = None  # the C close cancels an open loan
            self._loan = None
        self._slots.clear()  # what users still hold of the slots is in _exports

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

    __slots__ = ("_subscriber", "_loaned", "data", "nbytes")

    def __init__(self, subscriber: "Subscriber", data: memoryview, loaned: bool = True) -> None:
        self._subscriber = subscriber
        self._loaned = loaned  # False: a message kept in Python memory (see Subscriber.recv_view)
        self.data: Optional[memoryview] = data
        self.nbytes = len(data)

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

        array = np.frombuffer(self._view(), dtype=dtype)  # read-only, as the view
        return array if shape is None else array.reshape(shape)

    def release(self) -> bool:
        """Gives the slot back. True if the data stayed intact while it was viewed. numpy arrays made
        from the view keep pointing into the channel: do not use them after release (the memory is
        reused), though it stays mapped for as long as they live."""
        if self.data is None:
            return True
        self.data = None
        sub = self._subscriber
        sub._view = None
        handle = sub._handle
        if handle is None or not self._loaned:
            return True
        sub._busy += 1
        rc = _sub_release(handle)
        sub._busy -= 1
        if rc == 0:
            return True
        if rc == b.ESTALE:
            return False
        b.raise_error(rc, f"release on {sub.name!r}")

    def __enter__(self) -> "MessageView":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        intact = self.release()
        if not intact and exc_type is None:
            raise SHMStaleViewError(
                f"the message viewed on {self._subscriber.name!r} was overwritten while in use: its data "
                "may be torn. Use Publisher(lossless=True), or copy it out with recv_bytes()", b.ESTALE)


# Loans and views register their buffers here; the dead references are dropped once the list reaches
# _PRUNE_AT entries, or twice as many as were alive at the last pruning (so a program that keeps many
# arrays alive does not pay for a full scan at every call).
_PRUNE_AT = 64


# Slot views. A cffi buffer, a memoryview of it and its weak reference cost about 1 µs, as much as
# the C call that lends the slot, so each slot's are made once, kept in endpoint._slots under the
# slot's address, and every loan or view gets a slice of its own (a caller that releases theirs ends
# only theirs). The entry is made again when it is shorter than what the C call lent. A subscriber
# that follows a restarted publisher leaves its entries of the old segment behind: libshm keeps that
# range reserved (zero pages) until close, so no later mapping reuses those addresses, and
# _SLOTS_MAX bounds how many such entries pile up.
_SLOTS_MAX = 1024


def _slot_view(endpoint: Any, pointer: Any, nbytes: int, readonly: bool) -> memoryview:
    """A fresh memoryview of the ``nbytes`` bytes the C library lent at ``pointer``."""
    slots: Dict[Any, memoryview] = endpoint._slots
    base = slots.get(pointer)
    if base is None or len(base) < nbytes:
        if len(slots) >= _SLOTS_MAX:
            slots.clear()
        raw = ffi.buffer(pointer, nbytes)
        base = memoryview(raw).toreadonly() if readonly else memoryview(raw)
        # Whatever is made from a slice (memoryviews, numpy arrays) keeps `raw` alive: while the
        # weak reference lives, the segment must stay mapped.
        _export(endpoint, raw)
        slots[pointer] = base
    return base[:nbytes]


def _export(endpoint: Any, raw: Any) -> None:
    """Records that ``raw`` (a buffer into the endpoint's mapping) was handed out."""
    exports = endpoint._exports
    if len(exports) >= endpoint._prune_at:
        _prune(exports)
        endpoint._prune_at = max(_PRUNE_AT, 2 * len(exports))
    exports.append(weakref.ref(raw))


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
        self._prune_at = _PRUNE_AT
        self._slots: Dict[Any, memoryview] = {}  # see _slot_view
        self._view_out = (ffi.new("const void **"), ffi.new("size_t *"))  # shmc_sub_loan's out-parameters
        self._open_follower("sub", "Publisher", timeout_connect, serialization, spin_us)
        self._next = lib.shmc_sub_next
        self._recv = lib.shmc_sub_recv
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
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        last = self._last
        ns = last[1] if timeout is last[0] else self._ns(timeout)
        if self._pending is not None:  # a message recv_into could not fit comes first, from memory
            kept = self._take_pending()
            view = self._view = MessageView(self, memoryview(kept), loaned=False)
            return view
        data, size = self._view_out
        self._busy += 1
        rc = _sub_loan(handle, data, size, 0)  # first without waiting: the common case is one C call
        self._busy -= 1
        if rc:
            if rc == _EAGAIN and ns:
                rc = self._call_waiting(self._loan_waiting, ns)
            if rc:
                self._receive_failed(rc)
                return None
        view = self._view = MessageView(self, _slot_view(self, data[0], size[0], True))
        return view

    def _loan_waiting(self, handle: Any, timeout_ns: int) -> int:
        rc: int = _sub_loan(handle, self._view_out[0], self._view_out[1], timeout_ns)
        return rc

    def _before_close(self) -> None:
        if self._view is not None:
            self._view.data = None
            self._view = None
        self._slots.clear()  # what users still hold of the slots is in _exports

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
