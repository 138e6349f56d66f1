"""PUB/SUB: broadcast. Every Subscriber has its own cursor and sees every message published after it
attached, in order. By default slow subscribers skip old messages (counted as dropped) and the
publisher never blocks; with ``lossless=True`` publishers wait for the slowest live subscriber."""

from __future__ import annotations

import weakref
from array import array
from typing import Any, Dict, Iterator, List, Optional, Sequence

from . import _binding as b
from ._endpoint import Endpoint, check_int, check_name, timeout_to_ns
from .errors import (SHMBufferFullError, SHMClosedError, SHMError, SHMSerializationError,
                     SHMStaleViewError, SHMTimeoutError, SHMTypeError, SHMValueError)
from .log import logger
from .serialize import codec

ffi, lib = b.ffi, b.lib

_EAGAIN, _ETIMEDOUT = b.EAGAIN, b.ETIMEDOUT
_MODES = {0o600: 0, 0o660: lib.SHMC_SHARE_GROUP, 0o666: lib.SHMC_SHARE_ALL}


def _as_buffer(payload: Any) -> Any:
    """A cdata view of any C-contiguous bytes-like object (bytes, bytearray, memoryview, numpy)."""
    try:
        return ffi.from_buffer(payload)
    except TypeError:
        raise SHMTypeError(
            f"send_bytes needs a bytes-like object (bytes, bytearray, memoryview, numpy array), not "
            f"{type(payload).__name__}; use send() to serialize other objects"
        ) from None
    except ValueError as exc:
        raise SHMValueError(f"send_bytes needs a C-contiguous buffer ({exc}); pass numpy.ascontiguousarray(x)") from None


def _writable_nbytes(buffer: Any) -> int:
    """The size in bytes of a writable, C-contiguous buffer; a clear error for anything else."""
    try:
        view = memoryview(buffer)
    except TypeError:
        raise SHMTypeError(f"recv_into needs a writable buffer, not {type(buffer).__name__}") from None
    if view.readonly:
        raise SHMTypeError(f"recv_into needs a writable buffer; this {type(buffer).__name__} is read-only")
    if not view.c_contiguous:
        raise SHMValueError("recv_into needs a C-contiguous buffer; pass numpy.ascontiguousarray(x)")
    return view.nbytes


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


class Publisher(Endpoint):
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
        raw_name = check_name(name)
        check_int(num_slots, "num_slots", 2, 1 << 24)
        check_int(slot_size, "slot_size", 1, 1 << 30)
        check_int(max_peers, "max_peers", 2, 254)
        if mode not in _MODES:
            raise SHMValueError(f"mode must be 0o600, 0o660 or 0o666, got {mode!r}")
        self._dumps, _ = codec(serialization)
        self.serialization = serialization
        self.num_slots = num_slots
        self.slot_size = slot_size
        self.lossless = bool(lossless)
        opts = ffi.new("shmc_pub_options_t *")
        lib.shmc_pub_options_init(opts)
        opts.num_slots, opts.slot_size, opts.max_peers = num_slots, slot_size, max_peers
        opts.flags = (lib.SHMC_LOSSLESS if lossless else 0) | _MODES[mode]
        out = ffi.new("shmc_pub_t **")
        rc = lib.shmc_pub_open(raw_name, opts, out)
        if rc:
            self._open_failed(rc)
        self._handle = out[0]
        self._send = lib.shmc_pub_send
        self._try_send = lib.shmc_pub_try_send
        logger.debug("publisher %r open (num_slots=%d slot_size=%d lossless=%s)", name, num_slots,
                     slot_size, self.lossless)

    def _open_failed(self, rc: int) -> None:
        what = f"cannot create Publisher {self.name!r}"
        hints = {
            b.EMISMATCH: "a live publisher already uses this channel with another num_slots, slot_size, "
                         "lossless or max_peers: use the same values or another channel name",
            b.ENAME: "use a non-empty name without control characters or '.'/'..' components",
            b.ENOSPC: "free /dev/shm (python -m shmcomm clean) or enlarge it (Docker: --shm-size=1g)",
            b.EACCES: "the channel belongs to another user: run as that user, or have it created "
                      "with mode=0o660 and share a group",
            b.EBADSEG: "the name holds a corrupt or foreign segment whose creator is alive: stop it, or "
                       "remove the segment with shmcomm.force_unlink() / python -m shmcomm clean",
            b.EVERSION: "a live process of another shmcomm version owns the channel: use the same "
                        "shmcomm version in every process",
            b.EPEERS: "too many processes use this channel: raise max_peers",
            b.EINVAL: "check num_slots * slot_size (at most 1 TiB in all)",
        }
        b.raise_error(rc, what, hints.get(rc, ""))

    def _require(self) -> Any:
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        return handle

    def send(self, data: Any, *, block: bool = False, timeout: Optional[float] = None) -> bool:
        """Serializes ``data`` and publishes it. Returns True once published.

        In lossless mode a full ring raises :class:`SHMBufferFullError` unless ``block=True``, which
        waits up to ``timeout`` seconds (None: forever) and then raises :class:`SHMTimeoutError`.
        """
        try:
            payload = self._dumps(data)
        except SHMError:
            raise
        except Exception as exc:
            raise SHMSerializationError(
                f"cannot serialize {type(data).__name__} with {self.serialization}: {exc}") from exc
        return self.send_bytes(payload, block=block, timeout=timeout)

    def send_bytes(self, payload: Any, *, block: bool = False, timeout: Optional[float] = None) -> bool:
        """Publishes a bytes-like object (bytes, bytearray, memoryview, numpy array) with one copy."""
        # bytes go to C as they are; other buffers through ffi.from_buffer (which costs ~0.5 us).
        buf = payload if payload.__class__ is bytes else _as_buffer(payload)
        size = len(buf)
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        ns = self._ns(timeout) if block else 0  # validated before anything is sent
        # First without waiting, whatever `block` says: the common case costs one C call.
        self._busy += 1
        rc = self._try_send(handle, buf, size)  # raises only for bad argument types, checked above
        self._busy -= 1
        if rc == _EAGAIN and ns:
            rc = self._send_waiting(buf, size, ns)
        if rc:
            self._send_failed(rc, size, timeout)
        return True

    def send_many_bytes(self, payloads: Sequence[Any], *, block: bool = False,
                        timeout: Optional[float] = None) -> int:
        """Publishes a batch of bytes-like messages in one C call (the fast path for throughput).
        Returns how many were published: all of them, unless a lossless channel filled up (then
        SHMBufferFullError / SHMTimeoutError is raised with ``.sent`` set)."""
        try:
            lengths = array("Q", map(len, payloads))
            data = b"".join(payloads)
        except TypeError:
            raise SHMTypeError("send_many_bytes needs a sequence of bytes-like objects") from None
        count = len(lengths)
        if count == 0:
            return 0
        lens = ffi.from_buffer("uint64_t[]", lengths)
        sent = ffi.new("size_t *")
        send_many = lib.shmc_pub_send_many
        ns = timeout_to_ns(timeout) if block else 0
        rc = self._call_waiting(lambda h, t: send_many(h, data, lens, count, sent, t), ns)
        if rc:
            try:
                self._send_failed(rc, max(lengths), timeout)
            except SHMError as exc:
                exc.sent = int(sent[0])  # type: ignore[attr-defined]
                raise
        return count

    def _send_waiting(self, buf: Any, size: int, timeout_ns: int) -> int:
        send = self._send
        return self._call_waiting(lambda h, ns: send(h, buf, size, ns), timeout_ns)

    def _send_failed(self, rc: int, size: int, timeout: Optional[float]) -> None:
        if rc == b.EMSGSIZE:
            b.raise_error(rc, f"cannot publish {size} bytes on {self.name!r}",
                          f"slot_size is {self.slot_size}: create the Publisher with a larger slot_size")
        if rc == b.EAGAIN:
            raise SHMBufferFullError(
                f"channel {self.name!r} is full: its slowest subscriber has not read the oldest "
                "message (lossless mode); send with block=True to wait", rc)
        if rc == b.ETIMEDOUT:
            raise SHMTimeoutError(
                f"channel {self.name!r} stayed full for {timeout} s: its slowest subscriber is not "
                "reading (lossless mode)", rc)
        b.raise_error(rc, f"send on {self.name!r} failed")

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
        s = ffi.new("shmc_stats_t *")
        s.size = ffi.sizeof("shmc_stats_t")
        b.check(lib.shmc_pub_stats(self._require(), s), f"stats of {self.name!r}")
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


class Subscriber(Endpoint):
    """Attaches to channel ``name``, waiting up to ``timeout_connect`` seconds for its Publisher.

    Each Subscriber has a private cursor. ``spin_us`` is how long a receive busy-waits before it
    sleeps on a futex (raise it for the lowest latency, 0 to save CPU).
    """

    def __init__(self, name: str, timeout_connect: float = 5.0, serialization: str = "pickle", *,
                 spin_us: int = 50) -> None:
        super().__init__(name)
        self._view: Optional[MessageView] = None
        self._exports: List[Any] = []  # weak references to view buffers arrays may still use
        raw_name = check_name(name)
        connect_ns = timeout_to_ns(timeout_connect, "timeout_connect")
        if connect_ns < 0:
            raise SHMValueError("timeout_connect must be a number of seconds >= 0")
        check_int(spin_us, "spin_us", 0, 1_000_000)
        _, self._loads = codec(serialization)
        self.serialization = serialization
        self.timeout_connect = timeout_connect
        opts = ffi.new("shmc_sub_options_t *")
        lib.shmc_sub_options_init(opts)
        opts.spin_us = spin_us
        out = ffi.new("shmc_sub_t **")
        self._open(raw_name, opts, out, connect_ns)
        self._handle = out[0]
        self._next = lib.shmc_sub_next
        self._next_latest = lib.shmc_sub_next_latest
        self._pending: Optional[bytes] = None  # a message recv_into could not fit, delivered next
        self._refresh_buffer()
        logger.debug("subscriber %r attached", name)

    def _open(self, raw_name: bytes, opts: Any, out: Any, connect_ns: int) -> None:
        import time

        deadline = time.monotonic_ns() + connect_ns
        while True:  # in slices, so Ctrl-C works while we wait for the publisher
            opts.connect_timeout_ns = max(0, min(100_000_000, deadline - time.monotonic_ns()))
            rc = lib.shmc_sub_open(raw_name, opts, out)
            if rc != b.ENOENT or time.monotonic_ns() >= deadline:
                break
        if rc == b.ENOENT:
            b.raise_error(rc, f"no publisher named {self.name!r} after {self.timeout_connect} s",
                          "start the Publisher first or raise timeout_connect")
        if rc:
            b.raise_error(rc, f"cannot subscribe to {self.name!r}",
                          "remove a corrupt segment with python -m shmcomm clean" if rc == b.EBADSEG else "")

    def _refresh_buffer(self) -> None:
        """Maps the subscriber's own C receive buffer (it moves only when a restarted publisher
        uses larger slots)."""
        pointer = ffi.new("const void **")
        cap = ffi.new("size_t *")
        b.check(lib.shmc_sub_buffer(self._handle, pointer, cap), f"buffer of {self.name!r}")
        self._cap = int(cap[0])
        self._buffer = ffi.buffer(pointer[0], self._cap)
        self._view_all = memoryview(self._buffer)

    def _receive(self, fn: Any, timeout: Optional[float]) -> Optional[int]:
        """One message into the C buffer with fn (next or next_latest): its size, or None.
        Every line here costs on this hot path: keep it lean."""
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        ns = 0 if timeout == 0 else self._ns(timeout)  # validates, also when a message is ready
        self._busy += 1
        n = fn(handle, 0)  # first without waiting: the common case costs one C call
        self._busy -= 1
        if n == _EAGAIN and ns:
            n = self._call_waiting(fn, ns)
        if n >= 0:
            if n > self._cap:
                self._refresh_buffer()
            return n
        if n == _EAGAIN or n == _ETIMEDOUT:
            return None
        return self._receive_failed(n)

    def _receive_failed(self, rc: int) -> None:
        if rc in (b.EAGAIN, b.ETIMEDOUT):
            return None
        if rc == b.EINVAL and self._view is not None:
            raise SHMError(f"{self.name!r} has a MessageView open: release it before receiving again", rc)
        b.raise_error(rc, f"receive on {self.name!r} failed")

    def recv(self, timeout: Optional[float] = None) -> Any:
        """The next message, deserialized; None if none arrived within ``timeout`` seconds
        (None: wait forever; 0: do not wait)."""
        if self._pending is not None:
            return self._deserialize(self._take_pending())
        n = self._receive(self._next, timeout)
        return None if n is None else self._deserialize(self._buffer[0:n])

    def _deserialize(self, data: bytes) -> Any:
        try:
            return self._loads(data)
        except Exception as exc:
            raise SHMSerializationError(
                f"cannot deserialize a {len(data)}-byte message on {self.name!r} with {self.serialization}: "
                f"{exc}; does the publisher use the same serialization?") from exc

    def recv_bytes(self, timeout: Optional[float] = None) -> Optional[bytes]:
        """The next message as bytes; None on timeout."""
        if self._pending is not None:
            return self._take_pending()
        n = self._receive(self._next, timeout)
        return None if n is None else self._buffer[0:n]

    def _take_pending(self) -> bytes:
        pending, self._pending = self._pending, None
        assert pending is not None
        return pending

    def recv_into(self, buffer: Any, timeout: Optional[float] = None) -> Optional[int]:
        """Copies the next message into a writable buffer (bytearray, memoryview, numpy array) and
        returns its size; None on timeout. If the buffer is too small, ValueError is raised and the
        message is kept: the next receive returns it."""
        capacity = len(buffer) if buffer.__class__ is bytearray else _writable_nbytes(buffer)
        if self._pending is not None:
            source: Any = self._pending
            n = len(source)
        else:
            received = self._receive(self._next, timeout)
            if received is None:
                return None
            n, source = received, self._buffer
        if n > capacity:
            self._pending = bytes(source[0:n])
            raise SHMValueError(f"recv_into: the message has {n} bytes but the buffer only {capacity}; "
                             "it is kept and returned by the next receive")
        ffi.memmove(buffer, source, n)
        self._pending = None
        return n

    def recv_many_bytes(self, max_messages: int = 64, timeout: Optional[float] = None) -> List[bytes]:
        """Up to ``max_messages`` messages in one call; waits up to ``timeout`` for the first only.
        An empty list on timeout."""
        check_int(max_messages, "max_messages", 1, 1 << 20)
        cap = self._cap * max_messages
        cbuf = ffi.new("char[]", cap)
        lens = ffi.new("size_t[]", max_messages)
        count = ffi.new("size_t *")
        rc = self._call_waiting(
            lambda h, t: lib.shmc_sub_recv_many(h, cbuf, cap, lens, max_messages, count, t),
            timeout_to_ns(timeout))
        if rc:
            self._receive_failed(rc)
            return []
        out, offset, data = [], 0, ffi.buffer(cbuf)
        for i in range(count[0]):
            out.append(data[offset:offset + lens[i]])
            offset += lens[i]
        return out

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
            return self._receive_failed(rc)
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

    def _require(self) -> Any:
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        return handle

    def stats(self) -> Dict[str, Any]:
        """received + dropped + skipped = messages published since this subscriber attached.
        ``local_tail`` is the subscriber's cursor (the next position it reads)."""
        s = ffi.new("shmc_stats_t *")
        s.size = ffi.sizeof("shmc_stats_t")
        b.check(lib.shmc_sub_stats(self._require(), s), f"stats of {self.name!r}")
        out = _stats_dict(s)
        out.update(name=self.name, local_tail=s.cursor, received=s.received, dropped=s.dropped,
                   skipped=s.skipped, reconnects=s.reconnects, lag=max(0, s.head - s.cursor))
        return out

    def __iter__(self) -> Iterator[Any]:
        """Yields messages as they arrive, until the subscriber is closed."""
        while True:
            try:
                message = self.recv(timeout=None)
            except SHMClosedError:
                return
            yield message

    def __repr__(self) -> str:
        if self.closed:
            return f"<Subscriber {self.name!r} closed>"
        s = self.stats()
        return (f"<Subscriber {self.name!r} local_tail={s['local_tail']} received={s['received']} "
                f"dropped={s['dropped']} publisher_alive={s['publisher_alive']}>")


__all__ = ["Publisher", "Subscriber", "PublisherLoan", "MessageView"]
