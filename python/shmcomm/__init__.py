"""shmcomm: shared-memory inter-process communication for one machine.

PUB/SUB (:class:`Publisher`, :class:`Subscriber`) with microsecond latency between processes, in
Python and C. See https://github.com/ (README) and docs/ for the guide.
"""

from __future__ import annotations

from . import errors, serialize
from ._binding import lib as _lib
from .errors import (
    SHMBufferFullError,
    SHMClosedError,
    SHMConnectionError,
    SHMError,
    SHMMessageSizeError,
    SHMNameError,
    SHMNoSpaceError,
    SHMPermissionError,
    SHMSerializationError,
    SHMStaleViewError,
    SHMTimeoutError,
)
from .log import logger
from .pubsub import MessageView, Publisher, PublisherLoan, Subscriber
from .segments import SegmentInfo, clean, force_unlink, list_segments, os_name, segment_info

__version__ = "0.1.0"


def library_version() -> str:
    """The version of the loaded libshm, as "major.minor.patch"."""
    v = _lib.shmc_version()
    return f"{v >> 16}.{(v >> 8) & 255}.{v & 255}"


__all__ = [
    "Publisher",
    "Subscriber",
    "PublisherLoan",
    "MessageView",
    "force_unlink",
    "list_segments",
    "segment_info",
    "clean",
    "os_name",
    "SegmentInfo",
    "serialize",
    "logger",
    "library_version",
    "__version__",
    *errors.__all__,
]
