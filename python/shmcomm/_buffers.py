"""Bytes-like objects on their way into C: one ``ffi.from_buffer`` on the fast path, and when it
refuses an object, the error that says what to pass instead. Also the size arrays of packed batches
(``send_packed`` / ``recv_packed``): buffers of native uint64, checked before C reads or writes them."""

from __future__ import annotations

import sys
from typing import Any, Optional

from . import _binding as b
from .errors import SHMError, SHMTypeError, SHMValueError

ffi = b.ffi

REFUSED = (TypeError, ValueError, BufferError)  # what ffi.from_buffer raises for an unusable object

# memoryview formats of a native 8-byte unsigned int: array('Q') is "Q", a numpy.uint64 array "L"
# where C's long has 8 bytes (Linux, macOS) and "Q" where it has 4 (Windows).
_NATIVE_ORDER = "@=" + ("<" if sys.byteorder == "little" else ">!")
_UINT64_FORMATS = ("Q", "L") if ffi.sizeof("unsigned long") == 8 else ("Q",)
# recv_packed lets C write sizes (size_t) straight into the caller's uint64 buffer.
SIZE_T_IS_UINT64 = ffi.sizeof("size_t") == 8

SIZES_HINT = "array('Q', bytes(8 * n)) or numpy.empty(n, numpy.uint64)"


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


def uint64_view(sizes: Any, what: str, writable: bool) -> memoryview:
    """The memoryview of a C-contiguous buffer of native uint64 (array('Q'), numpy.uint64 array),
    or an error that says what to pass."""
    kind = type(sizes).__name__
    try:
        view = memoryview(sizes)
    except TypeError:
        wanted = SIZES_HINT if writable else "an int (every message that size) or a buffer of uint64 " \
                                             "(array('Q') or a numpy.uint64 array)"
        raise SHMTypeError(f"{what}: sizes must be {wanted}, not {kind}") from None
    fmt = view.format
    if fmt[:1] in _NATIVE_ORDER:
        fmt = fmt[1:]
    if view.itemsize != 8 or fmt not in _UINT64_FORMATS:
        raise SHMTypeError(f"{what}: sizes must hold native uint64 values (array('Q') or a numpy.uint64 "
                           f"array), not items of format {view.format!r} (itemsize {view.itemsize})")
    if writable and view.readonly:
        raise SHMTypeError(f"{what}: sizes must be writable (the sizes of the messages received are "
                           f"written into it): pass {SIZES_HINT}")
    if not view.c_contiguous:
        raise SHMValueError(f"{what}: sizes must be C-contiguous; pass numpy.ascontiguousarray(sizes)")
    if writable and not SIZE_T_IS_UINT64:  # pragma: no cover - 32-bit builds only
        raise SHMError(f"{what} needs a 64-bit build of shmcomm (size_t of 8 bytes); use recv_many_bytes")
    return view
