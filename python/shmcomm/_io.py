"""The send and receive halves every endpoint shares, written once: bytes-like payloads in, one C call
per message on the fast path, waiting in slices, the endpoint's own receive buffer, serialization,
batches, and the errors with what to do about them. Publisher/Pusher/Requester send with
:class:`Sender`; Subscriber/Puller/Replier receive with :class:`Receiver`."""

from __future__ import annotations

import time
from array import array
from typing import Any, Callable, Iterator, List, Optional, Sequence

from . import _binding as b
from ._endpoint import Endpoint, check_int, check_name, timeout_to_ns
from .errors import (SHMBufferFullError, SHMClosedError, SHMError, SHMSerializationError,
                     SHMTimeoutError, SHMTypeError, SHMValueError)
from .log import logger
from .serialize import codec

ffi, lib = b.ffi, b.lib

_EAGAIN, _ETIMEDOUT = b.EAGAIN, b.ETIMEDOUT
MODES = {0o600: 0, 0o660: lib.SHMC_SHARE_GROUP, 0o666: lib.SHMC_SHARE_ALL}

def as_buffer(payload: Any) -> Any:
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


def writable_nbytes(buffer: Any) -> int:
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


def check_geometry(num_slots: Any, slot_size: Any, max_peers: Any, mode: Any) -> None:
    check_int(num_slots, "num_slots", 2, 1 << 24)
    check_int(slot_size, "slot_size", 1, 1 << 30)
    check_int(max_peers, "max_peers", 2, 254)
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise SHMTypeError(f"mode must be an int (0o600, 0o660 or 0o666), not {type(mode).__name__}")
    if mode not in MODES:
        raise SHMValueError(f"mode must be 0o600, 0o660 or 0o666, got {mode!r}")


def _keeper_open_failed(rc: int, what: str, role: str) -> None:
    """Raises the error of a failed Publisher/Pusher/Replier open, with what to do about it."""
    hints = {
        b.EMISMATCH: f"a live {role.lower()} already uses this channel with another num_slots, slot_size, "
                     "lossless or max_peers: use the same values or another channel name",
        b.ENAME: "use a non-empty name without control characters or '.'/'..' components",
        b.ENOSPC: "free /dev/shm (python -m shmcomm clean) or enlarge it (Docker: --shm-size=1g)",
        b.EACCES: "the channel belongs to another user: run as that user, or have it created "
                  "with mode=0o660 and share a group",
        b.EBADSEG: "the name holds a corrupt or foreign segment that cannot be replaced while its "
                   "creator may be alive: stop the program that made it, or remove the segment with "
                   "shmcomm.force_unlink(os_name) (python -m shmcomm ls shows it)",
        b.EVERSION: "a live process of another shmcomm version owns the channel: use the same "
                    "shmcomm version in every process",
        b.EPEERS: "too many processes use this channel: raise max_peers",
        b.EINVAL: "check num_slots * slot_size (at most 1 TiB in all)",
    }
    b.raise_error(rc, what, hints.get(rc, ""))


def _follower_open(open_fn: Callable[[bytes, Any, Any], int], raw_name: bytes, opts: Any, out: Any,
                  connect_ns: int, name: str, timeout_connect: float, keeper: str) -> None:
    """Opens a Subscriber/Puller/Requester, waiting for its keeper in slices (Ctrl-C works)."""
    deadline = time.monotonic_ns() + connect_ns
    while True:
        opts.connect_timeout_ns = max(0, min(100_000_000, deadline - time.monotonic_ns()))
        rc = open_fn(raw_name, opts, out)
        if rc != b.ENOENT or time.monotonic_ns() >= deadline:
            break
    if rc == b.ENOENT:
        b.raise_error(rc, f"no {keeper.lower()} named {name!r} after {timeout_connect} s",
                      f"start the {keeper} first or raise timeout_connect")
    hints = {
        b.EBADSEG: "stop the program that made it, or remove it with shmcomm.force_unlink(os_name) "
                   "(python -m shmcomm ls shows it)",
        b.EPEERS: f"too many processes are attached: create the {keeper} with a larger max_peers",
        b.EACCES: f"the channel belongs to another user: run as that user, or have the {keeper} "
                  "created with mode=0o660 and share its group",
    }
    if rc:
        b.raise_error(rc, f"cannot attach to {name!r}", hints.get(rc, ""))


def _connect_ns_of(timeout_connect: Any) -> int:
    connect_ns = timeout_to_ns(timeout_connect, "timeout_connect")
    if connect_ns < 0:
        raise SHMValueError(f"timeout_connect must be a number of seconds >= 0, got {timeout_connect!r} "
                            "(opening cannot wait forever: pass a large number instead)")
    return connect_ns


class Channel(Endpoint):
    """An endpoint with a serialization and the statistics call every endpoint has."""

    _dumps: Callable[[Any], bytes]
    _loads: Callable[[Any], Any]
    serialization: str
    num_slots: int
    slot_size: int
    timeout_connect: float

    def _serialize(self, data: Any) -> bytes:
        try:
            return self._dumps(data)
        except SHMError:
            raise
        except Exception as exc:
            raise SHMSerializationError(
                f"cannot serialize {type(data).__name__} with {self.serialization}: {exc}") from exc

    def _open_keeper(self, kind: str, role: str, num_slots: int, slot_size: int, serialization: str,
                     max_peers: int, mode: int, flags: int = 0) -> None:
        """Opens a keeper endpoint (kind "pub", "push" or "rep"; role "Publisher", ...): checks the
        arguments, creates or joins the channel, and raises what to do if that fails."""
        raw_name = check_name(self.name)
        check_geometry(num_slots, slot_size, max_peers, mode)
        self._dumps, self._loads = codec(serialization)
        self.serialization, self.num_slots, self.slot_size = serialization, num_slots, slot_size
        opts = ffi.new(f"shmc_{kind}_options_t *")
        getattr(lib, f"shmc_{kind}_options_init")(opts)
        opts.num_slots, opts.slot_size, opts.max_peers = num_slots, slot_size, max_peers
        opts.flags = flags | MODES[mode]
        out = ffi.new(f"shmc_{kind}_t **")
        rc = getattr(lib, f"shmc_{kind}_open")(raw_name, opts, out)
        if rc:
            _keeper_open_failed(rc, f"cannot create {role} {self.name!r}", role)
        self._handle = out[0]
        logger.debug("%s %r open (num_slots=%d slot_size=%d flags=%d)", role, self.name, num_slots,
                     slot_size, flags)

    def _open_follower(self, kind: str, keeper: str, timeout_connect: float, serialization: str,
                       spin_us: int) -> None:
        """Opens a follower endpoint (kind "sub", "pull" or "req"), waiting up to timeout_connect
        for a ``keeper`` ("Publisher", ...) in slices, and raises what to do if none comes."""
        raw_name = check_name(self.name)
        connect_ns = _connect_ns_of(timeout_connect)
        check_int(spin_us, "spin_us", 0, 1_000_000)
        self._dumps, self._loads = codec(serialization)
        self.serialization, self.timeout_connect = serialization, timeout_connect
        opts = ffi.new(f"shmc_{kind}_options_t *")
        getattr(lib, f"shmc_{kind}_options_init")(opts)
        opts.spin_us = spin_us
        out = ffi.new(f"shmc_{kind}_t **")
        _follower_open(getattr(lib, f"shmc_{kind}_open"), raw_name, opts, out, connect_ns, self.name,
                       timeout_connect, keeper)
        self._handle = out[0]
        logger.debug("%s %r attached", kind, self.name)

    def _c_stats(self, stats_fn: Any) -> Any:
        """The endpoint's shmc_stats_t, filled by stats_fn (shmc_pub_stats, shmc_pull_stats, ...)."""
        s = ffi.new("shmc_stats_t *")
        s.size = ffi.sizeof("shmc_stats_t")
        b.check(stats_fn(self._require(), s), f"stats of {self.name!r}")
        return s


class Sender(Channel):
    """Sending half. Subclasses set ``_try_send`` (handle, buf, len), ``_send`` (handle, buf, len,
    timeout_ns), ``_send_many`` (handle, data, lens, count, sent*, timeout_ns), ``_dumps``,
    ``serialization`` and ``slot_size``, and describe a full channel in ``_full_message``."""

    _dumps: Callable[[Any], bytes]
    serialization: str
    slot_size: int
    _try_send: Any
    _send: Any
    _send_many: Any

    def _send_payload(self, payload: Any, block: bool, timeout: Optional[float]) -> bool:
        """Sends a bytes-like object with one copy; every line costs on this hot path."""
        # bytes go to C as they are; other buffers through ffi.from_buffer (which costs ~0.5 us).
        buf = payload if payload.__class__ is bytes else as_buffer(payload)
        size = len(buf)
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        ns = self._ns(timeout) if block else 0  # validated before anything is sent
        # First without waiting, whatever `block` says: the common case costs one C call.
        self._busy += 1
        rc = self._try_send(handle, buf, size)
        self._busy -= 1
        if rc == _EAGAIN and ns:
            send = self._send
            rc = self._call_waiting(lambda h, t: send(h, buf, size, t), ns)
        if rc:
            self._send_failed(rc, size, timeout)
        return True

    def _send_many_payloads(self, payloads: Sequence[Any], block: bool, timeout: Optional[float]) -> int:
        try:
            if not isinstance(payloads, (list, tuple)):
                payloads = list(payloads)  # an iterator could be read only once
            lengths = array("Q", (memoryview(p).nbytes for p in payloads))
            data = b"".join(payloads)
        except TypeError:
            raise SHMTypeError("send_many_bytes needs a sequence of bytes-like objects") from None
        count = len(lengths)
        if count == 0:
            return 0
        lens = ffi.from_buffer("uint64_t[]", lengths)
        dbuf = ffi.from_buffer(data)
        sent = ffi.new("size_t *")
        send_many = self._send_many
        ns = timeout_to_ns(timeout) if block else 0
        done = [0, 0]  # messages and bytes sent so far, across the slices of a long wait

        def send_rest(handle: Any, slice_ns: int) -> int:
            # A slice that times out has sent some messages already: the next one goes on from
            # there (starting over would send those again).
            rc: int = send_many(handle, dbuf + done[1], lens + done[0], count - done[0], sent, slice_ns)
            n = int(sent[0])
            done[1] += sum(lengths[done[0]:done[0] + n])
            done[0] += n
            return rc

        rc = self._call_waiting(send_rest, ns)
        if rc:
            try:
                self._send_failed(rc, max(lengths), timeout)
            except SHMError as exc:
                exc.sent = done[0]  # type: ignore[attr-defined]
                raise
        return count

    def _full_message(self) -> str:
        return f"channel {self.name!r} is full"

    def _send_failed(self, rc: int, size: int, timeout: Optional[float]) -> None:
        if rc == b.EMSGSIZE:
            b.raise_error(rc, f"cannot send {size} bytes on {self.name!r}",
                          f"slot_size is {self.slot_size}: create the channel with a larger slot_size")
        if rc == b.EAGAIN:
            raise SHMBufferFullError(f"{self._full_message()}; send with block=True to wait", rc)
        if rc == b.ETIMEDOUT:
            raise SHMTimeoutError(f"{self._full_message()}, and stayed so for {timeout} s", rc)
        b.raise_error(rc, f"send on {self.name!r} failed")


class Receiver(Channel):
    """Receiving half, on the endpoint's own C buffer. Subclasses set ``_next`` (handle, timeout_ns)
    -> size or error, ``_buffer_fn`` (handle, void**, size_t*), ``_recv_many`` (handle, buf, cap,
    lens, max, count*, timeout_ns) and ``_loads``."""

    _loads: Callable[[Any], Any]
    serialization: str
    _next: Any
    _buffer_fn: Any
    _recv_many: Any
    _cap: int
    _buffer: Any
    _pending: Optional[bytes] = None  # a message recv_into could not fit, delivered next

    def _refresh_buffer(self) -> None:
        """Maps the endpoint's own C receive buffer (it moves only when a restarted keeper uses
        larger slots)."""
        pointer = ffi.new("const void **")
        cap = ffi.new("size_t *")
        b.check(self._buffer_fn(self._handle, pointer, cap), f"buffer of {self.name!r}")
        self._cap = int(cap[0])
        self._buffer = ffi.buffer(pointer[0], self._cap)

    def _receive(self, fn: Any, timeout: Optional[float]) -> Optional[int]:
        """One message into the C buffer with fn: its size, or None on timeout.
        Every line here costs on this hot path: keep it lean."""
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        ns = self._ns(timeout)  # validates, also when a message is ready
        self._busy += 1
        n: int = fn(handle, 0)  # first without waiting: the common case costs one C call
        self._busy -= 1
        if n == _EAGAIN and ns:
            n = self._call_waiting(fn, ns)
        if n >= 0:
            if n > self._cap:
                self._refresh_buffer()
            return n
        if n == _EAGAIN or n == _ETIMEDOUT:
            return None
        self._receive_failed(n)
        return None

    def _receive_failed(self, rc: int) -> None:
        if rc in (b.EAGAIN, b.ETIMEDOUT):
            return None
        b.raise_error(rc, f"receive on {self.name!r} failed")

    def _deserialize(self, data: bytes) -> Any:
        try:
            return self._loads(data)
        except Exception as exc:
            raise SHMSerializationError(
                f"cannot deserialize a {len(data)}-byte message on {self.name!r} with {self.serialization}: "
                f"{exc}; does the sender use the same serialization?") from exc

    def _take_pending(self) -> bytes:
        pending, self._pending = self._pending, None
        assert pending is not None
        return pending

    def recv(self, timeout: Optional[float] = None) -> Any:
        """The next message, deserialized; None if none arrived within ``timeout`` seconds
        (None: wait forever; 0: do not wait)."""
        if self._pending is not None:
            return self._deserialize(self._take_pending())
        n = self._receive(self._next, timeout)
        return None if n is None else self._deserialize(self._buffer[0:n])

    def recv_bytes(self, timeout: Optional[float] = None) -> Optional[bytes]:
        """The next message as bytes; None on timeout."""
        if self._pending is not None:
            return self._take_pending()
        n = self._receive(self._next, timeout)
        return None if n is None else self._buffer[0:n]

    def recv_into(self, buffer: Any, timeout: Optional[float] = None) -> Optional[int]:
        """Copies the next message into a writable buffer (bytearray, memoryview, numpy array) and
        returns its size; None on timeout. If the buffer is too small, ValueError is raised and the
        message is kept: the next receive returns it."""
        capacity = len(buffer) if buffer.__class__ is bytearray else writable_nbytes(buffer)
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
        recv_many = self._recv_many
        rc = self._call_waiting(lambda h, t: recv_many(h, cbuf, cap, lens, max_messages, count, t),
                                timeout_to_ns(timeout))
        if rc:
            self._receive_failed(rc)
            return []
        sizes = ffi.unpack(lens, count[0])
        data = ffi.buffer(cbuf, sum(sizes))[:]  # one copy out of C, then slices of it
        out, offset = [], 0
        for size in sizes:
            out.append(data[offset:offset + size])
            offset += size
        return out

    def recv_many(self, max_messages: int = 64, timeout: Optional[float] = None) -> List[Any]:
        """Like :meth:`recv_many_bytes`, deserialized."""
        return [self._deserialize(m) for m in self.recv_many_bytes(max_messages, timeout)]

    def __iter__(self) -> Iterator[Any]:
        """Yields messages as they arrive, until the endpoint is closed."""
        while True:
            try:
                message = self.recv(timeout=None)
            except SHMClosedError:
                return
            yield message
