"""The send and receive halves every endpoint shares, written once: bytes-like payloads in, one C call
per message on the fast path, waiting in slices, the endpoint's own receive buffer, serialization,
batches (lists of messages, or packed back to back in one buffer), and the errors with what to do
about them. Publisher/Pusher/Pair send with :class:`Sender`; Subscriber/Puller/Pair/Replier/Requester
receive with :class:`Receiver`."""

from __future__ import annotations

import numbers
import time
import types
from array import array
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, TypeVar, cast

from . import _binding as b
from ._buffers import REFUSED, as_buffer, as_writable, buffer_error, uint64_view
from ._endpoint import Endpoint, check_int, check_name, timeout_to_ns
from .errors import (SHMBufferFullError, SHMClosedError, SHMError, SHMMessageSizeError,
                     SHMSerializationError, SHMTimeoutError, SHMTypeError, SHMValueError)
from .log import logger
from .serialize import codec

ffi, lib = b.ffi, b.lib
_from_buffer = ffi.from_buffer

_EAGAIN, _ETIMEDOUT, _ETRUNC = b.EAGAIN, b.ETIMEDOUT, b.ETRUNC
# Batch buffers that C fills: no need to zero them first (ffi.new would, at every call).
_uninitialized = ffi.new_allocator(should_clear_after_alloc=False)
# send_packed with an int size passes C a window of this many repeated sizes per call (so a huge
# batch of tiny messages needs no size array as large as itself).
PACKED_WINDOW = 1 << 16
_F = TypeVar("_F", bound=Callable[..., Any])
# recv_into a bytearray smaller than this: the message goes through the own buffer (two copies), which
# measured faster than one copy through ffi.from_buffer up to about 16 KiB (per call, raw calls in a
# loop: 1.6 against 2.1 us at 64 B, 2.8 against 2.8 at 16 KiB, 11.1 against 9.6 at 64 KiB).
SMALL_BYTEARRAY = 16384
MODES = {0o600: 0, 0o660: lib.SHMC_SHARE_GROUP, 0o666: lib.SHMC_SHARE_ALL}

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
                     "lossless, single_writer or max_peers: use the same values or another channel name",
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
        b.EBUSY: f"the channel was created with single_writer=True and its {role.lower()} is alive: "
                 f"close that {role}, or leave single_writer off in every {role} to have several",
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

    def __init__(self, name: str) -> None:
        super().__init__(name)
        # Out-parameters of the hot calls, allocated once (ffi.new costs more than the C call):
        # messages sent by a batch, and the size or count of what a receive got.
        self._sent = ffi.new("size_t *")
        self._got = ffi.new("size_t *")

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


def with_block_default(method: _F, block: bool, qualname: str, doc: str) -> _F:
    """``method`` (a Sender method with a ``block`` keyword) again, with another default for
    ``block`` and its own docstring: the same code object, so a class keeps its documented default
    (Publisher: False, Pusher: True) while its hot path stays one Python frame per call."""
    function: Any = method
    copy = types.FunctionType(function.__code__, function.__globals__, function.__name__,
                              function.__defaults__, function.__closure__)
    copy.__kwdefaults__ = {**function.__kwdefaults__, "block": block}
    copy.__annotations__ = dict(function.__annotations__)
    copy.__module__, copy.__qualname__, copy.__doc__ = function.__module__, qualname, doc
    return cast(_F, copy)


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
    _fixed_lens: Optional[Tuple[int, Any, Any]] = None  # send_packed's (size, array('Q'), cdata) window

    def send_bytes(self, payload: Any, *, block: bool = True, timeout: Optional[float] = None) -> bool:
        """Queues a bytes-like object (bytes, bytearray, memoryview, numpy array) with one copy."""
        # The hot path: each line here costs about a tenth of the C call, so there are few of them.
        # bytes go to C as they are; other buffers through ffi.from_buffer (which costs ~0.5 us).
        buf = payload if payload.__class__ is bytes else as_buffer(payload)
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        if block:  # the timeout is validated before anything is sent
            last = self._last
            ns = last[1] if timeout is last[0] else self._ns(timeout)
        else:
            ns = 0
        # First without waiting, whatever `block` says: the common case costs one C call.
        self._busy += 1
        rc = self._try_send(handle, buf, len(buf))
        self._busy -= 1
        if rc:
            self._send_waiting(rc, buf, ns, timeout)
        return True

    def _send_waiting(self, rc: int, buf: Any, ns: int, timeout: Optional[float]) -> None:
        """send_bytes after a first try that failed: waits up to ns for room if the channel was full,
        then raises what went wrong."""
        size = len(buf)
        if rc == _EAGAIN and ns:
            send = self._send
            rc = self._call_waiting(lambda h, t: send(h, buf, size, t), ns)
        if rc:
            self._send_failed(rc, size, timeout)

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
        return self._send_batch(ffi.from_buffer(data), count, ffi.from_buffer("uint64_t[]", lengths), 0,
                                block, timeout)

    def _send_packed(self, data: Any, sizes: Any, block: bool, timeout: Optional[float]) -> int:
        """send_packed: the messages back to back in ``data``; ``sizes`` an int (every message has
        that many bytes) or a buffer of uint64 (one size per message). Everything is checked before
        anything is sent; then one C call sends the batch (one per PACKED_WINDOW messages with an
        int size)."""
        dbuf = as_buffer(data, "send_packed")
        nbytes = len(dbuf)
        if sizes.__class__ is not int:
            if isinstance(sizes, bool):
                raise SHMTypeError("send_packed: sizes must be an int (every message that size) or a buffer of "
                                   "uint64 (array('Q') or a numpy.uint64 array), not bool")
            if isinstance(sizes, numbers.Integral):  # numpy integers
                sizes = int(sizes)
        if sizes.__class__ is int:
            count = self._fixed_size_count(sizes, nbytes)
            if count == 0:
                return 0
            window = self._fixed_lens
            need = min(count, PACKED_WINDOW)
            if window is None or window[0] != sizes or len(window[1]) < need:
                lengths = array("Q", [sizes]) * need
                window = self._fixed_lens = (sizes, lengths, ffi.from_buffer("uint64_t[]", lengths))
            return self._send_batch(dbuf, count, window[2], sizes, block, timeout)
        view = uint64_view(sizes, "send_packed", writable=False)
        count = view.nbytes // 8
        if count:
            self._check_sizes(view, nbytes)
        elif nbytes:
            raise SHMValueError(f"send_packed: sizes is empty but data has {nbytes} bytes; give one size "
                                "per message")
        else:
            return 0
        return self._send_batch(dbuf, count, ffi.from_buffer("uint64_t[]", view), 0, block, timeout)

    def _fixed_size_count(self, size: int, nbytes: int) -> int:
        """How many ``size``-byte messages ``nbytes`` of data hold; an error unless a whole number."""
        if size <= 0:
            raise SHMValueError(f"send_packed: an int size is the size of every message in bytes and must "
                                f"be > 0, got {size}")
        if size > self.slot_size:
            raise SHMMessageSizeError(f"cannot send {size}-byte messages on {self.name!r}: slot_size is "
                                      f"{self.slot_size}; create the channel with a larger slot_size", b.EMSGSIZE)
        count, rest = divmod(nbytes, size)
        if rest:
            raise SHMValueError(f"send_packed: data has {nbytes} bytes, not a whole number of {size}-byte "
                                "messages; for messages of different sizes pass sizes as a uint64 array")
        return count

    def _check_sizes(self, view: memoryview, nbytes: int) -> None:
        """The sizes must describe data exactly, since C reads message i at the sum of the sizes before
        it: each at most slot_size (which also keeps their sum from wrapping around 2**64), and
        their sum equal to data's size. numpy does both at C speed."""
        import numpy as np

        values = np.frombuffer(view, dtype=np.uint64)
        largest = int(values.max())
        if largest > self.slot_size:
            raise SHMMessageSizeError(
                f"cannot send message {int(values.argmax())} of the batch ({largest} bytes) on {self.name!r}: "
                f"slot_size is {self.slot_size}; create the channel with a larger slot_size (nothing was sent)",
                b.EMSGSIZE)
        total = int(values.sum())
        if total != nbytes:
            raise SHMValueError(f"send_packed: the sizes add up to {total} bytes but data has {nbytes}; they "
                                "must describe data exactly (nothing was sent)")

    def _send_batch(self, dbuf: Any, count: int, lens: Any, size: int, block: bool,
                    timeout: Optional[float]) -> int:
        """Sends ``count`` messages packed back to back in ``dbuf``. ``lens`` holds one uint64 size per
        message, or, when ``size`` > 0, that size repeated: a window for at most len(lens) messages a
        C call. Each call first tries without waiting; a long wait goes on in slices from where the
        last one stopped. On failure the exception carries ``.sent``."""
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        ns = self._ns(timeout) if block else 0
        deadline = time.monotonic_ns() + ns if ns > 0 else 0
        send_many, sent = self._send_many, self._sent
        window = len(lens) if size else count
        done = 0
        while True:
            todo = min(window, count - done)
            chunk = dbuf + done * size if size else dbuf
            self._busy += 1
            rc = send_many(handle, chunk, lens, todo, sent, 0)
            self._busy -= 1
            k = int(sent[0])
            if rc == _EAGAIN and ns:
                left = -1 if ns < 0 else max(0, deadline - time.monotonic_ns())
                rc, k = self._send_rest_waiting(chunk, lens, size, todo, k, left)
            done += k
            if rc or done == count:
                break
            if self._handle is None:  # closed between two windows (size > 0, more than len(lens))
                raise self._closed_error()
        if rc:
            if rc == _EAGAIN and block:
                rc = _ETIMEDOUT  # the time ran out between messages: a timeout, not "full"
            largest = (size or max(ffi.unpack(lens, count))) if rc == b.EMSGSIZE else 0
            try:
                self._send_failed(rc, largest, timeout)
            except SHMError as exc:
                exc.sent = done  # type: ignore[attr-defined]
                raise
        return count

    def _send_rest_waiting(self, chunk: Any, lens: Any, size: int, todo: int, done: int,
                           ns: int) -> Tuple[int, int]:
        """Waits (in slices, up to ns) to send the rest of a chunk whose first ``done`` messages went
        out: (the return code, how many of the chunk were sent in all)."""
        send_many, sent = self._send_many, self._sent
        progress = [done, done * size if size else sum(ffi.unpack(lens, done))]  # messages, bytes

        def send_rest(handle: Any, slice_ns: int) -> int:
            # A slice that times out has sent some messages already: the next one goes on from
            # there (starting over would send those again).
            n, offset = progress
            rc: int = send_many(handle, chunk + offset, lens if size else lens + n, todo - n, sent, slice_ns)
            k = int(sent[0])
            progress[0] = n + k
            progress[1] = offset + (k * size if size else sum(ffi.unpack(lens + n, k)))
            return rc

        rc = self._call_waiting(send_rest, ns)
        return rc, progress[0]

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
    """Receiving half. Subclasses set ``_next`` (handle, timeout_ns) -> size or error, into the
    endpoint's own C buffer; ``_buffer_fn`` (handle, void**, size_t*), which maps that buffer;
    ``_recv`` (handle, buf, cap, len*, timeout_ns), which receives into a buffer of the caller's;
    ``_recv_many`` (handle, buf, cap, lens, max, count*, timeout_ns), or None where batches make no
    sense; and ``_loads``."""

    _loads: Callable[[Any], Any]
    serialization: str
    _next: Any
    _buffer_fn: Any
    _recv: Any
    _recv_many: Any
    _cap: int
    _buffer: Any
    _pending: Optional[bytes] = None  # a message a buffer of the caller's could not hold, delivered next
    _batch: Optional[Tuple[int, int, Any, Any, Any]] = None  # recv_many_bytes' (max, cap, buf, lens, view)

    def _refresh_buffer(self) -> None:
        """Maps the endpoint's own C receive buffer (it moves only when a restarted keeper uses
        larger slots)."""
        pointer = ffi.new("const void **")
        cap = ffi.new("size_t *")
        b.check(self._buffer_fn(self._handle, pointer, cap), f"buffer of {self.name!r}")
        self._cap = int(cap[0])
        self._buffer = ffi.buffer(pointer[0], self._cap)

    def _receive(self, fn: Any, timeout: Optional[float]) -> Optional[int]:
        """One message into the own C buffer with fn: its size, or None on timeout.
        Every line here costs on this hot path: keep it lean."""
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        last = self._last
        ns = last[1] if timeout is last[0] else self._ns(timeout)  # validated, also when a message is ready
        self._busy += 1
        n: int = fn(handle, 0)  # first without waiting: the common case costs one C call
        self._busy -= 1
        if n < 0 or n > self._cap:
            return self._received_late(fn, n, ns)
        return n

    def _received_late(self, fn: Any, n: int, ns: int) -> Optional[int]:
        """_receive after a first try that got nothing (n < 0: waits up to ns, or raises what went
        wrong), or a message larger than the own buffer as last mapped (it grew: map it again)."""
        if n < 0:
            if n == _EAGAIN and ns:
                n = self._call_waiting(fn, ns)
            if n < 0:
                if n != _EAGAIN and n != _ETIMEDOUT:
                    self._receive_failed(n)
                return None
        if n > self._cap:
            self._refresh_buffer()
        return n

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
        # _receive, written out: the hottest receive saves a Python call.
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        last = self._last
        ns = last[1] if timeout is last[0] else self._ns(timeout)
        self._busy += 1
        size: int = self._next(handle, 0)
        self._busy -= 1
        if size < 0 or size > self._cap:
            late = self._received_late(self._next, size, ns)
            if late is None:
                return None
            size = late
        message: bytes = self._buffer[0:size]
        return message

    def recv_into(self, buffer: Any, timeout: Optional[float] = None) -> Optional[int]:
        """Copies the next message into a writable buffer (bytearray, memoryview, numpy array) and
        returns its size; None on timeout. One copy, from the channel straight into ``buffer``. If
        the buffer is too small, ValueError is raised and the message is kept: the next receive
        returns it."""
        if buffer.__class__ is bytearray and len(buffer) < SMALL_BYTEARRAY:
            # Into the own buffer, then copied out: two C calls that convert few arguments and no
            # cffi object for the bytearray cost less than the second copy of so few bytes.
            if self._pending is not None and self._handle is not None:
                return self._deliver_into(buffer, self._take_pending(), "recv_into")
            size = self._receive(self._next, timeout)
            if size is None:
                return None
            if size > len(buffer):
                return self._deliver_into(buffer, self._buffer[0:size], "recv_into")  # keeps it, raises
            ffi.memmove(buffer, self._buffer, size)
            return size
        try:
            target = _from_buffer(buffer, require_writable=True)
        except REFUSED:
            raise buffer_error(buffer, "recv_into", True) from None
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        if self._pending is not None:
            return self._deliver_into(target, self._take_pending(), "recv_into")
        last = self._last
        ns = last[1] if timeout is last[0] else self._ns(timeout)
        got = self._got
        self._busy += 1
        rc = self._recv(handle, target, len(target), got, 0)  # first without waiting
        self._busy -= 1
        if rc:
            return self._recv_into_waiting(rc, target, ns, timeout)
        n: int = got[0]
        return n

    def _recv_into_waiting(self, rc: int, target: Any, ns: int, timeout: Optional[float]) -> Optional[int]:
        """recv_into after a first try that got nothing: waits up to ns; a message too large for the
        buffer is kept (see _keep_too_large)."""
        got, cap = self._got, len(target)
        if rc == _EAGAIN and ns:
            recv = self._recv
            rc = self._call_waiting(lambda h, t: recv(h, target, cap, got, t), ns)
        if rc == 0:
            n: int = got[0]
            return n
        if rc == _ETRUNC:
            message = self._keep_too_large(timeout)
            return None if message is None else self._deliver_into(target, message, "recv_into")
        if rc != _EAGAIN and rc != _ETIMEDOUT:
            self._receive_failed(rc)
        return None

    def _keep_too_large(self, timeout: Optional[float]) -> Optional[bytes]:
        """After SHMC_ETRUNC (the next message does not fit a caller's buffer; C left it queued):
        takes it into the own buffer now, so it is kept even if a publisher laps it (overwrite mode)
        before the next receive. Returns the next message (another one if a competing Puller or
        Replier took that one meanwhile), or None if none came within ``timeout``."""
        n = self._receive(self._next, timeout)
        return None if n is None else self._buffer[0:n]

    def _deliver_into(self, target: Any, message: bytes, what: str) -> int:
        """Copies a message taken out of turn into ``target``; if it does not fit, keeps it for the
        next receive and raises."""
        n = len(message)
        if n > len(target):
            self._pending = message
            raise SHMValueError(f"{what}: the next message on {self.name!r} has {n} bytes but the buffer only "
                                f"{len(target)}; it is kept and returned by the next receive (pass a buffer of "
                                f"at least {n} bytes)")
        ffi.memmove(target, message, n)
        return n

    def recv_many_bytes(self, max_messages: int = 64, timeout: Optional[float] = None) -> List[bytes]:
        """Up to ``max_messages`` messages in one call; waits up to ``timeout`` for the first only.
        An empty list on timeout."""
        check_int(max_messages, "max_messages", 1, 1 << 20)
        if self._pending is not None:
            if self._handle is None:
                raise self._closed_error()
            return [self._take_pending()]  # a message recv_into could not fit comes first
        batch = self._batch
        if batch is None or batch[0] != max_messages or batch[1] != self._cap:
            # Kept for the next call (most callers use one batch size): C fills it, no zeroing.
            cap = self._cap * max_messages
            cbuf = _uninitialized("char[]", cap)
            batch = self._batch = (max_messages, self._cap, cbuf, ffi.new("size_t[]", max_messages),
                                   ffi.buffer(cbuf, cap))
        _, _, cbuf, lens, data = batch
        rc = self._receive_batch(cbuf, len(data), lens, max_messages, timeout)
        if rc <= 0:
            if rc == _ETRUNC:  # a restarted keeper's larger first message: alone, into the own buffer
                n = self._receive(self._next, 0)
                return [] if n is None else [self._buffer[0:n]]
            return []
        if rc == 1:
            return [data[0:lens[0]]]
        out = []
        offset = 0
        for size in ffi.unpack(lens, rc):
            end = offset + size
            out.append(data[offset:end])
            offset = end
        return out

    def _receive_batch(self, cbuf: Any, cap: int, lens: Any, max_messages: int, timeout: Optional[float]) -> int:
        """Up to max_messages messages into cbuf[cap], their sizes in lens; waits up to timeout for the
        first. Returns how many (> 0), 0 on timeout, or SHMC_ETRUNC if the first does not fit (it
        stays queued, its size in lens[0]); raises other errors."""
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        last = self._last
        ns = last[1] if timeout is last[0] else self._ns(timeout)
        recv_many, count = self._recv_many, self._got
        self._busy += 1
        rc: int = recv_many(handle, cbuf, cap, lens, max_messages, count, 0)  # first without waiting
        self._busy -= 1
        if rc == _EAGAIN and ns:
            rc = self._call_waiting(lambda h, t: recv_many(h, cbuf, cap, lens, max_messages, count, t), ns)
        if rc == 0:
            n: int = count[0]
            return n
        if rc == _ETRUNC:
            return rc
        if rc != _EAGAIN and rc != _ETIMEDOUT:
            self._receive_failed(rc)
        return 0

    def recv_packed(self, buffer: Any, sizes: Any, timeout: Optional[float] = None) -> int:
        """Receives up to ``len(sizes)`` messages in one C call, packed back to back into ``buffer``
        (a writable C-contiguous buffer: bytearray, numpy array, memoryview), and writes their sizes
        into ``sizes`` (a writable buffer of uint64: ``array('Q', bytes(8 * n))`` or
        ``numpy.empty(n, numpy.uint64)``). Returns how many; 0 if none came within ``timeout``
        seconds (which applies to the first message only; None: wait forever).

        No Python object is made per message: the fast path for arrays of fixed-size records. If the
        first message does not fit in ``buffer``, ValueError is raised and the message is kept for
        the next receive; a later message that does not fit in the room left stays queued for the
        next call."""
        target = as_writable(buffer, "recv_packed")
        cap = len(target)
        view = uint64_view(sizes, "recv_packed", writable=True)
        room = view.nbytes // 8
        if not cap or not room:
            raise SHMValueError(f"recv_packed needs room for at least one message: buffer has {cap} bytes "
                                f"and sizes {room} entries")
        lens = ffi.from_buffer("size_t[]", view, require_writable=True)
        if self._pending is not None and self._handle is not None:
            return self._pending_packed(target, lens, room)
        n = self._receive_batch(target, cap, lens, room, timeout)
        if n == _ETRUNC:
            message = self._keep_too_large(timeout)
            if message is None:
                return 0
            lens[0] = self._deliver_into(target, message, "recv_packed")
            return 1
        return n

    def _pending_packed(self, target: Any, lens: Any, room: int) -> int:
        """recv_packed with a kept message: it comes first, then what else is queued and fits."""
        first = self._deliver_into(target, self._take_pending(), "recv_packed")
        lens[0] = first
        handle = self._handle
        if room == 1 or handle is None:
            return 1
        self._busy += 1
        rc = self._recv_many(handle, target + first, len(target) - first, lens + 1, room - 1, self._got, 0)
        self._busy -= 1
        more: int = self._got[0] if rc == 0 else 0  # anything else is seen by the next receive
        return 1 + more

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
