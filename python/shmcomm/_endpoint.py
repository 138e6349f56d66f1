"""What every shmcomm endpoint shares: the handle's life cycle (close twice is fine, context manager,
closed at interpreter exit), timeouts in slices so Ctrl-C stays responsive, and argument checks."""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from typing import Any, Callable, Optional, Tuple, TypeVar

from . import _binding as b
from .errors import SHMClosedError, SHMTypeError, SHMValueError
from .log import logger

# A blocking call waits in C for at most this long before Python gets control back (signals, close).
SLICE_NS = 100_000_000

_live: "weakref.WeakSet[Endpoint]" = weakref.WeakSet()
_E = TypeVar("_E", bound="Endpoint")


@atexit.register
def _close_all() -> None:
    # Creators unlink their segments at interpreter exit, even if the user forgot to close.
    for endpoint in list(_live):
        try:
            endpoint.close()
        except Exception:  # pragma: no cover - best effort at exit
            pass


def timeout_to_ns(timeout: Optional[float], what: str = "timeout") -> int:
    """None -> -1 (forever); a number of seconds >= 0 -> nanoseconds."""
    if timeout is None:
        return -1
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise SHMTypeError(f"{what} must be a number of seconds or None, not {type(timeout).__name__}")
    if not timeout >= 0:  # also catches NaN
        raise SHMValueError(f"{what} must be >= 0 seconds or None (wait forever), got {timeout!r}")
    if timeout >= 1e9:  # beyond 31 years (and inf): the same as waiting forever
        return -1
    return int(timeout * 1e9)


def check_int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SHMTypeError(f"{what} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise SHMValueError(f"{what} must be between {low} and {high}, got {value}")
    return value


def check_name(name: Any) -> bytes:
    if not isinstance(name, str):
        raise SHMTypeError(f"channel name must be a str, not {type(name).__name__}")
    if "\x00" in name:
        b.raise_error(b.ENAME, f"invalid channel name {name!r}", "it contains a NUL character")
    try:
        return name.encode("utf-8")
    except UnicodeEncodeError:
        b.raise_error(b.ENAME, f"invalid channel name {name!r}", "it is not valid Unicode (a lone surrogate)")


class Endpoint:
    """Base of Publisher, Subscriber and the other endpoints."""

    _handle: Any
    _busy: int

    def __init__(self, name: str) -> None:
        self.name = name
        self._handle = None
        self._busy = 0
        # The last timeout converted and its value in ns, as one tuple so a reader never pairs one
        # call's timeout with another's ns. Hot paths read it inline: `ns = last[1] if timeout is
        # last[0] else self._ns(timeout)`.
        self._last: Tuple[Any, int] = (None, -1)
        self._waiting_thread = 0  # the thread inside _call_waiting, 0 if none
        self._close_done = False
        _live.add(self)

    def _ns(self, timeout: Optional[float]) -> int:
        """timeout_to_ns, remembered: loops pass the same timeout object every call, and the
        conversion with its checks costs more than the C call it guards."""
        last = self._last
        if timeout is last[0]:
            return last[1]
        ns = timeout_to_ns(timeout)
        self._last = (timeout, ns)
        return ns

    # -- life cycle --------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._handle is None

    def _closed_error(self) -> SHMClosedError:
        return SHMClosedError(
            f"{type(self).__name__} {self.name!r} is closed; create a new one to use the channel again",
            b.ECLOSED,
        )

    def _require(self) -> Any:
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        return handle

    def _before_close(self) -> None:
        """Hook: release what depends on the mapping (views) before it goes away."""

    def _close_handle(self, handle: Any) -> None:
        """Hook: releases the C handle (each endpoint class knows its close function)."""
        raise NotImplementedError

    def close(self) -> None:
        """Closes the endpoint. Safe to call twice; a call blocked in another thread ends within
        0.1 s with SHMClosedError."""
        handle = self._handle
        if handle is None:
            return
        self._handle = None
        deadline = time.monotonic() + 5.0
        # Another thread inside a C call with this handle: let it finish. Not when the waiting call
        # is this thread's own (close() from a signal handler that interrupted it).
        if self._waiting_thread != threading.get_ident():
            while self._busy and time.monotonic() < deadline:
                time.sleep(0.001)
        self._before_close()
        self._close_handle(handle)
        self._close_done = True
        logger.debug("closed %r", self)

    def _wait_closed(self) -> None:
        """Returns once a close() begun in another thread has released the C handle (at most 5 s)."""
        deadline = time.monotonic() + 5.0
        while not self._close_done and time.monotonic() < deadline:
            time.sleep(0.001)

    def __enter__(self: _E) -> _E:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    # -- waiting ------------------------------------------------------------------------------
    def _call_waiting(self, call: Callable[[Any, int], int], timeout_ns: int) -> int:
        """Runs call(handle, slice_ns) until it stops timing out or timeout_ns is spent (-1 =
        forever), in slices of at most SLICE_NS so signals and close() are noticed."""
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        self._busy += 1
        self._waiting_thread = threading.get_ident()
        try:
            if 0 <= timeout_ns <= SLICE_NS:
                return call(handle, timeout_ns)
            deadline = time.monotonic_ns() + timeout_ns if timeout_ns > 0 else None
            while True:
                left = SLICE_NS if deadline is None else min(SLICE_NS, deadline - time.monotonic_ns())
                rc = call(handle, max(left, 0))
                if rc != b.ETIMEDOUT:
                    return rc
                if deadline is not None and left < SLICE_NS:
                    return rc
                if self._handle is None:
                    raise self._closed_error()
        finally:
            self._busy -= 1
            self._waiting_thread = 0
