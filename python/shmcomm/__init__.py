"""shmcomm: shared-memory inter-process communication for one machine.

PUB/SUB (:class:`Publisher`, :class:`Subscriber`), REQ/REP (:class:`Requester`, :class:`Replier`),
PUSH/PULL (:class:`Pusher`, :class:`Puller`) and PAIR (:class:`Pair`) with microsecond latency between processes, in
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
from .errors import (SHMChecksumError, SHMFrameReleasedError, SHMMetadataWrittenError, SHMReaderDeadError,
                     SHMSchemaError, SHMStreamClosedError, SHMWriterDeadError)
from .log import logger
from .pair import DisconnectBehavior, Pair, PairRole
from .pipeline import Puller, Pusher
from .pubsub import MessageView, Publisher, PublisherLoan, Subscriber
from .reqrep import Replier, Requester
from .stream import (ControlMessage, Field, Frame, FrameLoan, StreamReader, StreamWriter,
                     describe_stream, format_stream)
from .segments import (PeerInfo, SegmentInfo, clean, force_unlink, list_segments, os_name, segment_info,
                       segment_peers)

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
    "Pair",
    "PairRole",
    "DisconnectBehavior",
    "StreamWriter",
    "StreamReader",
    "Frame",
    "FrameLoan",
    "Field",
    "ControlMessage",
    "describe_stream",
    "format_stream",
    "PublisherLoan",
    "MessageView",
    "force_unlink",
    "list_segments",
    "segment_info",
    "clean",
    "os_name",
    "SegmentInfo",
    "segment_peers",
    "PeerInfo",
    "serialize",
    "logger",
    "library_version",
    "__version__",
    *errors.__all__,
]
