"""Loads libshm with cffi in ABI mode. The cdef is the public header itself (the part between
SHMC_CDEF_BEGIN and SHMC_CDEF_END), so the binding and the C ABI cannot drift apart."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, NoReturn, Type

from cffi import FFI

from . import errors as _e

EXPECTED_VERSION = 0x000100  # the libshm version this binding was written for

_PACKAGE_DIR = Path(__file__).resolve().parent
_HEADER_CANDIDATES = [
    _PACKAGE_DIR / "include" / "shmcomm.h",  # installed wheel
    _PACKAGE_DIR.parent.parent / "include" / "shmcomm.h",  # source tree (python/shmcomm)
]


def _library_names() -> List[str]:
    if sys.platform == "win32":
        return ["shm.dll", "libshm.dll"]
    if sys.platform == "darwin":
        return ["libshm.dylib"]
    return ["libshm.so", "libshm.so.0"]


def read_cdef(header: Path) -> str:
    """The FFI section of shmcomm.h, ready for ffi.cdef (export macros removed)."""
    text = header.read_text(encoding="utf-8")
    match = re.search(r"/\* SHMC_CDEF_BEGIN \*/(.*)/\* SHMC_CDEF_END \*/", text, re.S)
    if not match:
        raise ImportError(f"{header} has no SHMC_CDEF_BEGIN/END section: not a shmcomm header")
    return match.group(1).replace("SHMC_API ", "")


def _find_header() -> Path:
    override = os.environ.get("SHMCOMM_HEADER")
    candidates = [Path(override)] if override else _HEADER_CANDIDATES
    for path in candidates:
        if path.is_file():
            return path
    raise ImportError("shmcomm: cannot find shmcomm.h; looked in " + ", ".join(map(str, candidates)))


def _load(ffi: FFI) -> Any:
    tried = []
    override = os.environ.get("SHMCOMM_LIBRARY")
    paths = [Path(override)] if override else [_PACKAGE_DIR / n for n in _library_names()]
    for path in paths:
        if not path.exists():
            tried.append(f"{path} (missing)")
            continue
        try:
            return ffi.dlopen(str(path))
        except OSError as exc:
            tried.append(f"{path} ({exc})")
    raise ImportError(
        "shmcomm: cannot load libshm; tried " + "; ".join(tried) +
        ". Install the package with `pip install .` (it builds libshm), or set SHMCOMM_LIBRARY "
        "to the path of a built libshm."
    )


ffi = FFI()
HEADER_PATH = _find_header()
ffi.cdef(read_cdef(HEADER_PATH))
lib = _load(ffi)

_version = lib.shmc_version()
if _version >> 8 != EXPECTED_VERSION >> 8:
    raise ImportError(
        f"shmcomm: libshm version {_version >> 16}.{(_version >> 8) & 255}.{_version & 255} does not match "
        f"this binding ({EXPECTED_VERSION >> 16}.{(EXPECTED_VERSION >> 8) & 255}); reinstall shmcomm so both "
        "come from the same build, or point SHMCOMM_LIBRARY at the matching library."
    )

# Error codes, by name, straight from the header's enum.
OK = lib.SHMC_OK
EINVAL = lib.SHMC_EINVAL
ENAME = lib.SHMC_ENAME
ENOENT = lib.SHMC_ENOENT
EACCES = lib.SHMC_EACCES
ENOSPC = lib.SHMC_ENOSPC
ETIMEDOUT = lib.SHMC_ETIMEDOUT
EAGAIN = lib.SHMC_EAGAIN
EMSGSIZE = lib.SHMC_EMSGSIZE
ETRUNC = lib.SHMC_ETRUNC
ECLOSED = lib.SHMC_ECLOSED
EBADSEG = lib.SHMC_EBADSEG
EVERSION = lib.SHMC_EVERSION
EMISMATCH = lib.SHMC_EMISMATCH
EPEERS = lib.SHMC_EPEERS
ESTALE = lib.SHMC_ESTALE
EPEERDEAD = lib.SHMC_EPEERDEAD
EEXPIRED = lib.SHMC_EEXPIRED
ESEQUENCE = lib.SHMC_ESEQUENCE
ESCHEMA = lib.SHMC_ESCHEMA
EWRITERDEAD = lib.SHMC_EWRITERDEAD
EREADERDEAD = lib.SHMC_EREADERDEAD
EBUSY = lib.SHMC_EBUSY
ECHECKSUM = lib.SHMC_ECHECKSUM
EWRITTEN = lib.SHMC_EWRITTEN

_EXCEPTION_FOR: Dict[int, Type[_e.SHMError]] = {
    EINVAL: _e.SHMValueError,
    ENAME: _e.SHMNameError,
    ENOENT: _e.SHMConnectionError,
    EACCES: _e.SHMPermissionError,
    ENOSPC: _e.SHMNoSpaceError,
    ETIMEDOUT: _e.SHMTimeoutError,
    EAGAIN: _e.SHMBufferFullError,
    EMSGSIZE: _e.SHMMessageSizeError,
    ECLOSED: _e.SHMClosedError,
    EBADSEG: _e.SHMConnectionError,
    EVERSION: _e.SHMConnectionError,
    EMISMATCH: _e.SHMConnectionError,
    EPEERS: _e.SHMConnectionError,
    ESTALE: _e.SHMStaleViewError,
    EPEERDEAD: _e.SHMPeerDeadError,
    ESEQUENCE: _e.SHMSequenceError,
    ESCHEMA: _e.SHMSchemaError,
    EWRITERDEAD: _e.SHMWriterDeadError,
    EREADERDEAD: _e.SHMReaderDeadError,
    EBUSY: _e.SHMConnectionError,
    ECHECKSUM: _e.SHMChecksumError,
    EWRITTEN: _e.SHMMetadataWrittenError,
}


def strerror(code: int) -> str:
    message: str = ffi.string(lib.shmc_strerror(code)).decode()
    return message


def raise_error(code: int, what: str, hint: str = "") -> NoReturn:
    """Raises the exception for a negative libshm code: '<what>: <library message>[; <hint>]'."""
    message = f"{what}: {strerror(code)}"
    if code in (lib.SHMC_EOS, EACCES, ENOSPC):
        err = lib.shmc_last_os_error()
        if err:
            message += f" ({os.strerror(err)})"
    if hint:
        message += f"; {hint}"
    raise _EXCEPTION_FOR.get(code, _e.SHMError)(message, code)


def check(code: int, what: str, hint: str = "") -> int:
    if code < 0:
        raise_error(code, what, hint)
    return code
