"""Serialization of messages: ``"pickle"`` (default), ``"msgpack"`` (``pip install shmcomm[msgpack]``)
and ``"raw"`` (bytes-like objects pass through untouched)."""

from __future__ import annotations

import pickle
from typing import Any, Callable, Tuple

from .errors import SHMSerializationError, SHMTypeError

METHODS = ("pickle", "msgpack", "raw")


def _msgpack() -> Any:
    try:
        import msgpack  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise SHMSerializationError(
            'serialization="msgpack" needs the msgpack package: pip install "shmcomm[msgpack]"'
        ) from exc
    return msgpack


def _raw_dumps(obj: Any) -> Any:
    try:
        memoryview(obj)
    except TypeError:
        raise SHMSerializationError(
            f'serialization="raw" sends bytes-like objects only, not {type(obj).__name__}; '
            'use serialization="pickle" for arbitrary objects'
        ) from None
    return obj


def codec(method: str) -> Tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """The (dumps, loads) pair of a serialization method; a clear error for an unknown one."""
    if method == "pickle":
        return (lambda obj: pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)), pickle.loads
    if method == "msgpack":
        mp = _msgpack()
        return (lambda obj: mp.packb(obj, use_bin_type=True)), (lambda data: mp.unpackb(data, raw=False))
    if method in ("raw", "bytes"):
        return _raw_dumps, bytes
    raise SHMSerializationError(
        f"unknown serialization {method!r}: use one of {', '.join(repr(m) for m in METHODS)}"
    )


def serialize(obj: Any, method: str = "pickle") -> bytes:
    """Serializes ``obj`` to bytes with ``method``. Raises :class:`SHMSerializationError`."""
    dumps, _ = codec(method)
    try:
        return bytes(dumps(obj))
    except SHMSerializationError:
        raise
    except Exception as exc:
        raise SHMSerializationError(f"cannot serialize {type(obj).__name__} with {method}: {exc}") from exc


def deserialize(data: Any, method: str = "pickle") -> Any:
    """Turns bytes made by :func:`serialize` back into an object."""
    _, loads = codec(method)
    try:
        size = memoryview(data).nbytes
    except TypeError:
        raise SHMTypeError(f"deserialize needs bytes (or a bytes-like object), not {type(data).__name__}") from None
    try:
        return loads(data)
    except Exception as exc:
        raise SHMSerializationError(f"cannot deserialize {size} bytes with {method}: {exc}") from exc


__all__ = ["serialize", "deserialize", "codec", "METHODS"]
