"""Bytes-like objects on their way into C: one ``ffi.from_buffer`` on the fast path, and when it
refuses an object, the error that says what to pass instead."""

from __future__ import annotations

from typing import Any, Optional

from . import _binding as b
from .errors import SHMError, SHMTypeError, SHMValueError

ffi = b.ffi

REFUSED = (TypeError, ValueError, BufferError)  # what ffi.from_buffer raises for an unusable object


def as_buffer(payload: Any, what: str = "send_bytes") -> Any:
    """A cdata view of any C-contiguous bytes-like object (bytes, bytearray, memoryview, numpy)."""
    try:
        return ffi.from_buffer(payload)
    except REFUSED as exc:
        raise buffer_error(payload, what, False, exc) from None


def as_writable(buffer: Any, what: str) -> Any:
    """A cdata view of a writable, C-contiguous buffer (bytearray, memoryview, numpy array)."""
    try:
        return ffi.from_buffer(buffer, require_writable=True)
    except REFUSED as exc:
        raise buffer_error(buffer, what, True, exc) from None


def buffer_error(obj: Any, what: str, writable: bool, exc: Optional[BaseException] = None) -> SHMError:
    """The exception for an object ``what`` (a method name) cannot use as its buffer."""
    kind = type(obj).__name__
    try:
        view = memoryview(obj)
    except TypeError:
        if writable:
            return SHMTypeError(f"{what} needs a writable buffer (bytearray, memoryview, numpy array), not {kind}")
        hint = "; use send() to serialize other objects" if what == "send_bytes" else ""
        return SHMTypeError(f"{what} needs a bytes-like object (bytes, bytearray, memoryview, numpy array), "
                            f"not {kind}{hint}")
    if writable and view.readonly:
        return SHMTypeError(f"{what} needs a writable buffer; this {kind} is read-only")
    if not view.c_contiguous:
        return SHMValueError(f"{what} needs a C-contiguous buffer; pass numpy.ascontiguousarray(x)")
    return SHMValueError(f"{what} cannot use this {kind} as a buffer ({exc}); pass a bytearray or a "
                         "C-contiguous numpy array")
