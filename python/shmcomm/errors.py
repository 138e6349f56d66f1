"""The exceptions of shmcomm. Every one is an :class:`SHMError`; the leaves also inherit the matching
builtin, so ``except TimeoutError`` or ``except ValueError`` work as a Python user expects."""

from __future__ import annotations


class SHMError(Exception):
    """Base class of every shmcomm error. ``code`` is the libshm error code (negative) or 0."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class SHMValueError(SHMError, ValueError):
    """An argument has the right type but a wrong value (a size out of range, a negative timeout)."""


class SHMTypeError(SHMError, TypeError):
    """An argument has the wrong type (a str where a buffer is needed, a float where an int is)."""


class SHMConnectionError(SHMError, ConnectionError):
    """A segment cannot be created or attached (missing, foreign, incompatible, no permission)."""


class SHMTimeoutError(SHMError, TimeoutError):
    """A blocking operation exceeded its timeout."""


class SHMBufferFullError(SHMError, BlockingIOError):
    """A non-blocking send found no room (lossless channels and work queues)."""


class SHMSerializationError(SHMError, ValueError):
    """An object could not be serialized, or received bytes could not be deserialized."""


class SHMNameError(SHMValueError):
    """A channel name is invalid (empty, too long, control characters, '.' or '..' components)."""


class SHMMessageSizeError(SHMValueError):
    """A message is larger than the channel's slot_size."""


class SHMClosedError(SHMError, ValueError):
    """The endpoint was closed (like an operation on a closed file)."""


class SHMPermissionError(SHMConnectionError, PermissionError):
    """The OS refused access to the segment (it belongs to another user)."""


class SHMNoSpaceError(SHMConnectionError):
    """The shared-memory filesystem (/dev/shm) has no room for the segment."""


class SHMStaleViewError(SHMError):
    """A zero-copy view was overwritten by the publisher while it was in use."""


class SHMPeerDeadError(SHMConnectionError):
    """The peer a call waited on died: the Replier that took the request, or every Replier."""


class SHMSequenceError(SHMError, RuntimeError):
    """Calls out of order: a Replier send() with no request received, a Requester recv() with no
    request sent."""


class SHMSchemaError(SHMConnectionError):
    """STREAM: the stream's schema (field names, dtypes, shapes) is not the one the reader expects."""


class SHMWriterDeadError(SHMPeerDeadError):
    """STREAM: the stream's writer died (every frame it committed was read first). A restarted
    writer is picked up by the next read."""


class SHMReaderDeadError(SHMPeerDeadError):
    """STREAM: a reader of the stream died (reported once to the writer; the next write proceeds)."""


class SHMChecksumError(SHMError):
    """STREAM: a frame's checksum does not match its data: the shared memory was corrupted."""


class SHMMetadataWrittenError(SHMError, RuntimeError):
    """STREAM: the stream's metadata was already written; it is write-once."""


class SHMFrameReleasedError(SHMClosedError):
    """STREAM: a frame (or loan) was used after release; its memory belongs to the stream again."""


class SHMStreamClosedError(SHMClosedError, EOFError):
    """STREAM: the writer closed the stream (end of stream). A new writer is picked up by the next read."""


__all__ = [
    "SHMError",
    "SHMValueError",
    "SHMTypeError",
    "SHMConnectionError",
    "SHMTimeoutError",
    "SHMBufferFullError",
    "SHMSerializationError",
    "SHMNameError",
    "SHMMessageSizeError",
    "SHMClosedError",
    "SHMPermissionError",
    "SHMNoSpaceError",
    "SHMStaleViewError",
    "SHMPeerDeadError",
    "SHMSequenceError",
    "SHMSchemaError",
    "SHMWriterDeadError",
    "SHMReaderDeadError",
    "SHMChecksumError",
    "SHMMetadataWrittenError",
    "SHMFrameReleasedError",
    "SHMStreamClosedError",
]
