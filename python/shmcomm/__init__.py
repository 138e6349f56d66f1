"""shmcomm: shared-memory inter-process communication for one machine.

PUB/SUB (:class:`Publisher`, :class:`Subscriber`), REQ/REP (:class:`Requester`, :class:`Replier`)
and PUSH/PULL (:class:`Pusher`, :class:`Puller`) with microsecond latency between processes, in
Python and C. See the README and docs/ for the guide.
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
    SHMPeerDeadError,
    SHMPermissionError,
    SHMSequenceError,
    SHMSerializationError,
    SHMStaleViewError,
    SHMTimeoutError,
    SHMTypeError,
    SHMValueError,
)
from .log import logger
from .pipeline import Puller, Pusher
from .pubsub import MessageView, Publisher, PublisherLoan, Subscriber
from .reqrep import Replier, Requester
from .segments import SegmentInfo, clean, force_unlink, list_segments, os_name, segment_info

__version__ = "0.1.0"


def library_version() -> str:
    """The version of the loaded libshm, as "major.minor.patch"."""
    v = _lib.shmc_version()
    return f"{v >> 16}.{(v >> 8) & 255}.{v & 255}"


__all__ = [
    "Publisher",
    "Subscriber",
    "Requester",
    "Replier",
    "Pusher",
    "Puller",
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
