"""STREAM: typed frames (camera images, point clouds, tensors) from one :class:`StreamWriter` to any
number of :class:`StreamReader` processes, in shared memory, without copies.

A stream declares its schema once: named fields, each a dtype and a shape (:class:`Field`). Readers
find it in the segment (and may insist on one). A writer fills a frame in place (:meth:`StreamWriter.loan`
hands out numpy arrays over the segment) or copies arrays in (:meth:`StreamWriter.write`); a reader
gets a :class:`Frame` whose fields are numpy arrays (or memoryviews) over the segment, valid until the
frame is released. Two modes:

- ``lossless=True``: every reader gets every frame, in order; the writer waits for the slowest live
  reader (dead ones are reaped, and reported with ``raise_on_reader_death``).
- ``lossless=False`` (default): the writer never waits; readers that fall behind skip frames, and
  :meth:`StreamReader.latest` gives the newest. A frame a reader holds is never overwritten.

Also: a write-once metadata block (``metadata=b'{"fx": 600}'``), per-frame sequence numbers,
timestamps, used sizes and an optional checksum, control messages from readers back to the writer,
the reader registry (:meth:`StreamWriter.readers`), and :func:`describe_stream` for inspection.
numpy is needed only for the array views (imported when first used); ``Frame.view()`` and
``FrameLoan.view()`` give memoryviews without it. See docs/stream.md.
"""

from __future__ import annotations

import time
import weakref
from typing import (TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence,
                    Tuple, Union)

from . import _binding as b
from ._endpoint import Endpoint, check_int, check_name, timeout_to_ns
from ._io import MODES
from .errors import (SHMBufferFullError, SHMClosedError, SHMConnectionError, SHMError,
                     SHMFrameReleasedError, SHMMessageSizeError, SHMSchemaError, SHMStreamClosedError,
                     SHMTimeoutError, SHMTypeError, SHMValueError, SHMWriterDeadError)
from .log import logger
from .pubsub import _close_mapping, _prune

if TYPE_CHECKING:
    import numpy
    from numpy.typing import NDArray

ffi, lib = b.ffi, b.lib

# dtype name -> (libshm code, itemsize, numpy dtype name). bf16 has no numpy dtype: its arrays are
# ml_dtypes.bfloat16 when ml_dtypes is installed, else uint16 (the raw bits).
DTYPES: Dict[str, Tuple[int, int, str]] = {
    "bool": (lib.SHMC_DTYPE_BOOL, 1, "bool"),
    "i8": (lib.SHMC_DTYPE_I8, 1, "int8"),
    "i16": (lib.SHMC_DTYPE_I16, 2, "int16"),
    "i32": (lib.SHMC_DTYPE_I32, 4, "int32"),
    "i64": (lib.SHMC_DTYPE_I64, 8, "int64"),
    "u8": (lib.SHMC_DTYPE_U8, 1, "uint8"),
    "u16": (lib.SHMC_DTYPE_U16, 2, "uint16"),
    "u32": (lib.SHMC_DTYPE_U32, 4, "uint32"),
    "u64": (lib.SHMC_DTYPE_U64, 8, "uint64"),
    "f16": (lib.SHMC_DTYPE_F16, 2, "float16"),
    "bf16": (lib.SHMC_DTYPE_BF16, 2, "bfloat16"),
    "f32": (lib.SHMC_DTYPE_F32, 4, "float32"),
    "f64": (lib.SHMC_DTYPE_F64, 8, "float64"),
}
_BY_CODE = {code: name for name, (code, _, _) in DTYPES.items()}
_ALIASES = {numpy_name: name for name, (_, _, numpy_name) in DTYPES.items()}
_ALIASES.update({"bool_": "bool", "b1": "bool", "?": "bool", "uint8": "u8"})
MAX_FIELDS = lib.SHMC_STREAM_MAX_FIELDS
MAX_DIMS = lib.SHMC_STREAM_MAX_DIMS
NAME_BYTES = lib.SHMC_STREAM_NAME_CAP - 1

_np_module: Any = None


def _numpy() -> Any:
    """numpy, imported on first use: the rest of shmcomm works without it."""
    global _np_module
    if _np_module is None:
        try:
            import numpy
        except ImportError:  # pragma: no cover - numpy is a dependency of the package
            raise ImportError("numpy arrays over stream frames need numpy (pip install numpy); "
                              "without it use frame.view(name), a memoryview") from None
        _np_module = numpy
    return _np_module


def _dtype_name(dtype: Any) -> str:
    """The canonical name ("u8", "f32", ...) of a dtype given as that name, a numpy name or a numpy dtype."""
    if isinstance(dtype, str):
        key = dtype.strip().lower()
        if key in DTYPES:
            return key
        if key in _ALIASES:
            return _ALIASES[key]
        try:
            return _ALIASES[_numpy().dtype(key).name]
        except Exception:
            pass
    else:
        try:
            name = _numpy().dtype(dtype).name
        except Exception:
            name = ""
        if name in _ALIASES:
            return _ALIASES[name]
    raise SHMValueError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)} (or the numpy names "
                        "uint8, float32, ...)")


def numpy_dtype(dtype: str) -> "numpy.dtype[Any]":
    """The numpy dtype of a stream dtype name ("bf16": ml_dtypes.bfloat16 if installed, else uint16)."""
    np = _numpy()
    if dtype == "bf16":
        try:
            import ml_dtypes  # type: ignore[import-not-found]
            return np.dtype(ml_dtypes.bfloat16)  # type: ignore[no-any-return]
        except ImportError:
            return np.dtype("uint16")  # type: ignore[no-any-return]
    return np.dtype(DTYPES[dtype][2])  # type: ignore[no-any-return]


class Field(NamedTuple):
    """One field of a stream's schema: a name, a dtype ("u8", "f32", ... see :data:`DTYPES`) and a
    shape (``()`` for a scalar). ``offset`` (from the frame's start, a multiple of 64) and ``nbytes``
    (its capacity) are filled in by the library when it reports a schema."""

    name: str
    dtype: str
    shape: Tuple[int, ...] = ()
    offset: int = -1
    nbytes: int = -1

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype][1]

    @property
    def capacity(self) -> int:
        """Bytes of a full field: itemsize x the product of the shape."""
        n = self.itemsize
        for d in self.shape:
            n *= d
        return n

    @property
    def row_bytes(self) -> int:
        """Bytes of one entry along the first axis (a variable-length field is a number of rows)."""
        n = self.itemsize
        for d in self.shape[1:]:
            n *= d
        return n

    def describe(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        return f"{self.name}:{self.dtype}[{dims}]"


SchemaLike = Union[Sequence[Union[Field, Tuple[Any, ...]]], Mapping[str, Any]]


def field(name: str, dtype: Any, shape: Union[int, Sequence[int]] = ()) -> Field:
    """A schema field: ``field("rgb", "u8", (1080, 1920, 3))``; ``shape`` may be an int (a vector)."""
    return _check_field(name, dtype, shape)


def _check_field(name: Any, dtype: Any, shape: Any = ()) -> Field:
    if not isinstance(name, str):
        raise SHMTypeError(f"a field name must be a str, not {type(name).__name__}")
    raw = name.encode("utf-8", "surrogatepass")
    if not raw or len(raw) > NAME_BYTES or b"\x00" in raw:
        raise SHMValueError(f"field name {name!r} must have 1 to {NAME_BYTES} bytes of UTF-8 and no NUL")
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise SHMTypeError(f"the shape of field {name!r} must be a tuple of ints, not {shape!r}") from None
    if len(dims) > MAX_DIMS:
        raise SHMValueError(f"field {name!r} has {len(dims)} dimensions; at most {MAX_DIMS}")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise SHMValueError(f"the shape of field {name!r} must hold ints >= 1, got {dims!r}")
    return Field(name, _dtype_name(dtype), dims)


def make_schema(schema: SchemaLike) -> Tuple[Field, ...]:
    """A schema from fields, ``(name, dtype, shape)`` tuples, or a mapping ``{name: (dtype, shape)}``."""
    items: List[Any]
    if isinstance(schema, Mapping):
        items = []
        for name, spec in schema.items():
            if isinstance(spec, tuple) and len(spec) == 2:
                items.append((name, spec[0], spec[1]))
            else:
                items.append((name, spec, ()))
    elif isinstance(schema, (list, tuple)):
        items = list(schema)
    else:
        raise SHMTypeError(f"a schema is a list of fields or a dict {{name: (dtype, shape)}}, not "
                           f"{type(schema).__name__}")
    fields = []
    for item in items:
        if isinstance(item, Field):
            fields.append(_check_field(item.name, item.dtype, item.shape))
        elif isinstance(item, tuple) and len(item) in (2, 3):
            fields.append(_check_field(*item))
        else:
            raise SHMTypeError(f"a schema field is a Field or (name, dtype[, shape]), not {item!r}")
    if not 1 <= len(fields) <= MAX_FIELDS:
        raise SHMValueError(f"a schema has 1 to {MAX_FIELDS} fields, got {len(fields)}")
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise SHMValueError(f"field names must be unique: {names}")
    return tuple(fields)


def _to_c(fields: Sequence[Field]) -> Any:
    arr = ffi.new("shmc_stream_field_t[]", len(fields))
    for i, f in enumerate(fields):
        name = f.name.encode("utf-8", "surrogatepass")
        ffi.memmove(arr[i].name, name, len(name))
        arr[i].dtype = DTYPES[f.dtype][0]
        arr[i].ndim = len(f.shape)
        for d, size in enumerate(f.shape):
            arr[i].shape[d] = size
    return arr


def _from_c(arr: Any, n: int) -> Tuple[Field, ...]:
    out = []
    for i in range(n):
        f = arr[i]
        out.append(Field(ffi.string(f.name).decode("utf-8", "replace"), _BY_CODE.get(f.dtype, "?"),
                         tuple(int(f.shape[d]) for d in range(f.ndim)), int(f.offset), int(f.capacity)))
    return tuple(out)


def describe_schema(fields: Sequence[Field]) -> str:
    return ", ".join(f.describe() for f in fields)


class ControlMessage(NamedTuple):
    """A control message from a reader: its ``reader_id`` (registry index), ``pid``, ``type`` and ``data``."""

    reader_id: int
    pid: int
    type: int
    data: bytes


class _Layout:
    """What frames of one schema look like in memory: per field, the numpy dtype and full shape."""

    def __init__(self, fields: Tuple[Field, ...]) -> None:
        self.fields = fields
        self.index = {f.name: i for i, f in enumerate(fields)}
        self.span = max(f.offset + f.nbytes for f in fields)  # bytes from a frame's data to its end
        self._dtypes: Optional[List[Any]] = None

    def dtypes(self) -> List[Any]:
        if self._dtypes is None:
            self._dtypes = [numpy_dtype(f.dtype) for f in self.fields]
        return self._dtypes

    def lookup(self, name: str) -> int:
        try:
            return self.index[name]
        except KeyError:
            raise KeyError(f"no field {name!r} in this stream; its fields: {', '.join(self.index)}") from None

    def array(self, raw: Any, i: int, nbytes: int, writable: bool) -> "NDArray[Any]":
        f = self.fields[i]
        dtype = self.dtypes()[i]
        array = _numpy().frombuffer(raw, dtype=dtype, count=nbytes // f.itemsize, offset=f.offset)
        if nbytes == f.nbytes:
            array = array.reshape(f.shape)
        elif f.shape and nbytes % f.row_bytes == 0:
            array = array.reshape((nbytes // f.row_bytes,) + f.shape[1:])
        if not writable:
            array.flags.writeable = False
        return array  # type: ignore[no-any-return]


class _FrameData:
    """A frame's memory: field access as numpy arrays or memoryviews, until released."""

    _layout: _Layout
    _raw: Any
    _sizes: List[int]
    _arrays: Dict[str, Any]
    _views: List[memoryview]
    _writable: bool
    sequence: int

    def _released_error(self) -> SHMFrameReleasedError:
        raise NotImplementedError

    def _check(self) -> Any:
        raw = self._raw
        if raw is None:
            raise self._released_error()
        return raw

    def __getitem__(self, name: str) -> "NDArray[Any]":
        """Field ``name`` as a numpy array over the segment (no copy)."""
        array = self._arrays.get(name)
        if array is not None and self._raw is not None:
            return array  # type: ignore[no-any-return]
        raw = self._check()
        i = self._layout.lookup(name)
        array = self._layout.array(raw, i, self._sizes[i], self._writable)
        self._arrays[name] = array
        return array

    def view(self, name: str) -> memoryview:
        """Field ``name`` as a memoryview of bytes over the segment (no numpy needed). It is released
        with the frame: using it afterwards raises ValueError."""
        raw = self._check()
        i = self._layout.lookup(name)
        f = self._layout.fields[i]
        view = memoryview(raw)[f.offset:f.offset + self._sizes[i]]
        if not self._writable:
            view = view.toreadonly()
        self._views.append(view)
        return view

    def arrays(self) -> Dict[str, "NDArray[Any]"]:
        """Every field as a numpy array."""
        return {f.name: self[f.name] for f in self._layout.fields}

    def keys(self) -> List[str]:
        return [f.name for f in self._layout.fields]

    def __contains__(self, name: object) -> bool:
        return name in self._layout.index

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    @property
    def sizes(self) -> Dict[str, int]:
        """Bytes used in each field."""
        self._check()
        return {f.name: self._sizes[i] for i, f in enumerate(self._layout.fields)}

    @property
    def released(self) -> bool:
        return self._raw is None

    def _invalidate(self) -> None:
        self._raw = None
        self._arrays.clear()
        for view in self._views:
            try:
                view.release()
            except BufferError:  # something made from it (a numpy array) still uses it
                pass
        self._views.clear()


class Frame(_FrameData):
    """A frame read from a stream, in place: ``frame["rgb"]`` is a read-only numpy array over the
    segment, ``frame.view("rgb")`` a memoryview. Valid until :meth:`release` (or the end of the ``with``
    block); then every access through the frame raises :class:`SHMFrameReleasedError`, and its
    memoryviews raise ValueError. numpy arrays taken from it keep pointing at the segment, whose memory
    the writer reuses: copy what you keep (``frame["rgb"].copy()``).

    ``sequence`` (0, 1, 2... per writer), ``timestamp_ns`` (CLOCK_MONOTONIC unless the writer gave its
    own), ``nbytes`` (used bytes), ``sizes`` (per field), ``dropped`` (frames skipped just before this
    one), ``checksum`` (0 unless the stream has checksums, verified before the frame was handed out).
    """

    def __init__(self, reader: "StreamReader", cframe: Any) -> None:
        layout = reader._layout
        self._reader = reader
        self._layout = layout
        self._writable = False
        raw = ffi.buffer(cframe.data, layout.span)
        self._raw = raw
        reader._exports.append(weakref.ref(raw))
        lens = cframe.field_nbytes
        self._sizes = [lens[i] for i in range(len(layout.fields))]
        self._arrays = {}
        self._views = []
        self.sequence = int(cframe.seq)
        self.timestamp_ns = int(cframe.timestamp_ns)
        self.nbytes = int(cframe.nbytes)
        self.dropped = int(cframe.dropped)
        self.checksum = int(cframe.checksum)

    def _released_error(self) -> SHMFrameReleasedError:
        return SHMFrameReleasedError(
            f"frame {self.sequence} of stream {self._reader.name!r} was released; its memory belongs to "
            "the stream again. Copy what you need before release (frame['field'].copy()).", b.ECLOSED)

    def release(self) -> None:
        """Gives the frame back to the stream (safe to call twice)."""
        if self._raw is None:
            return
        self._invalidate()
        self._reader._release_frame(self)

    def __enter__(self) -> "Frame":
        self._check()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._raw is None else f"{self.nbytes} bytes"
        return f"<Frame {self.sequence} of {self._reader.name!r} {state}>"


class FrameLoan(_FrameData):
    """A frame lent by :meth:`StreamWriter.loan`: fill ``loan["rgb"][...] = ...`` (writable numpy
    arrays over the segment) or ``loan.view(name)``, then :meth:`commit`. As a context manager it
    commits on success and cancels on an exception."""

    def __init__(self, writer: "StreamWriter", cframe: Any) -> None:
        layout = writer._layout
        self._writer = writer
        self._layout = layout
        self._writable = True
        raw = ffi.buffer(cframe.data, layout.span)
        self._raw = raw
        writer._exports.append(weakref.ref(raw))
        self._sizes = [f.nbytes for f in layout.fields]
        self._arrays = {}
        self._views = []
        self.sequence = int(cframe.seq)

    def _released_error(self) -> SHMFrameReleasedError:
        return SHMFrameReleasedError(
            f"loan {self.sequence} of stream {self._writer.name!r} was committed or cancelled; loan "
            "the next frame", b.ECLOSED)

    def commit(self, timestamp_ns: Optional[int] = None, *, rows: Optional[Mapping[str, int]] = None,
               sizes: Optional[Mapping[str, int]] = None) -> int:
        """Publishes the frame; returns its sequence number. ``timestamp_ns`` defaults to now
        (CLOCK_MONOTONIC, as ``time.monotonic_ns()``). A field may be used in part: ``rows`` gives
        the entries used along its first axis, ``sizes`` the bytes (default: the whole field)."""
        self._check()
        writer = self._writer
        lens = writer._lens_for(rows, sizes)
        ts = _timestamp(timestamp_ns)
        handle = writer._require()
        self._invalidate()
        writer._loan = None
        b.check(lib.shmc_stream_writer_commit(handle, ts, lens), f"commit on stream {writer.name!r}")
        writer._next_seq = self.sequence + 1
        return self.sequence

    def cancel(self) -> None:
        """Gives the frame back unpublished."""
        if self._raw is None:
            return
        self._invalidate()
        writer = self._writer
        writer._loan = None
        handle = writer._handle
        if handle is not None:
            b.check(lib.shmc_stream_writer_cancel(handle), f"cancel on stream {writer.name!r}")

    def __enter__(self) -> "FrameLoan":
        self._check()
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if self._raw is None:
            return
        if exc_type is None:
            self.commit()
        else:
            self.cancel()

    def __repr__(self) -> str:
        state = "done" if self._raw is None else "open"
        return f"<FrameLoan {self.sequence} of {self._writer.name!r} {state}>"


def _timestamp(timestamp_ns: Optional[int]) -> int:
    if timestamp_ns is None:
        return 0
    if isinstance(timestamp_ns, bool) or not isinstance(timestamp_ns, int):
        raise SHMTypeError(f"timestamp_ns must be an int (nanoseconds) or None, not {type(timestamp_ns).__name__}")
    if not 0 < timestamp_ns < (1 << 64):
        raise SHMValueError(f"timestamp_ns must be between 1 and 2**64 - 1 (None = now), got {timestamp_ns}")
    return timestamp_ns


def _stats(s: Any) -> Dict[str, Any]:
    return {"readers": s.readers, "writer_alive": bool(s.writer_alive), "num_slots": s.num_slots,
            "frame_capacity": s.frame_capacity, "frames": s.frames, "dropped": s.dropped,
            "next_seq": s.next_seq}


def _reader_dict(r: Any) -> Dict[str, Any]:
    return {"reader_id": int(r.reader_id), "pid": int(r.pid), "alive": bool(r.alive),
            "holding": bool(r.holding), "heartbeat_age_s": r.heartbeat_age_ns / 1e9,
            "frames_seen": int(r.frames_seen), "last_seq": int(r.last_seq) if r.frames_seen else None,
            "dropped": int(r.dropped), "cursor": None if r.cursor == (1 << 64) - 1 else int(r.cursor),
            "control_pending": int(r.control_pending)}


class StreamWriter(Endpoint):
    """Creates stream ``name`` with ``schema`` and writes frames to it (one writer per stream).

    ``schema``: a list of :class:`Field` / ``(name, dtype, shape)`` tuples, or ``{name: (dtype, shape)}``.
    ``lossless``: every reader gets every frame (writes wait for the slowest live reader) instead of
    the latest-frame default (writes never wait). ``num_slots``: frames in the ring (default 4 lossless,
    ``max_readers + 2`` otherwise, the least there). ``max_readers``: readers attached at once.
    ``metadata``: bytes written once now (or later with :meth:`set_metadata`), at most
    ``metadata_capacity``. ``control_capacity``: bytes of each reader's control ring. ``checksum``: each
    frame carries an XXH64 of its data, verified by readers. ``raise_on_reader_death``: a write after a
    reader died raises :class:`SHMReaderDeadError` once (default: in lossless mode). ``mode``: 0o600,
    0o660 or 0o666.
    """

    def __init__(self, name: str, schema: SchemaLike, *, lossless: bool = False,
                 num_slots: Optional[int] = None, max_readers: int = 4, metadata: Optional[Any] = None,
                 metadata_capacity: int = 4096, control_capacity: int = 4096, checksum: bool = False,
                 raise_on_reader_death: Optional[bool] = None, mode: int = 0o600) -> None:
        super().__init__(name)
        self._loan: Optional[FrameLoan] = None
        self._exports: List[Any] = []
        self._next_seq = 0
        raw_name = check_name(name)
        fields = make_schema(schema)
        check_int(max_readers, "max_readers", 1, 253)
        if num_slots is not None:
            check_int(num_slots, "num_slots", 2, 65536)
            if not lossless and num_slots < max_readers + 2:
                raise SHMValueError(f"num_slots={num_slots} is too few for max_readers={max_readers} in "
                                    f"latest-frame mode (each reader may hold a frame): use at least "
                                    f"{max_readers + 2}, or lossless=True")
        check_int(metadata_capacity, "metadata_capacity", 0, 16 << 20)
        check_int(control_capacity, "control_capacity", 64, 16 << 20)
        if control_capacity % 8:
            raise SHMValueError(f"control_capacity must be a multiple of 8, got {control_capacity}")
        if isinstance(mode, bool) or not isinstance(mode, int) or mode not in MODES:
            raise SHMValueError(f"mode must be 0o600, 0o660 or 0o666, got {mode!r}")
        self.lossless = bool(lossless)
        if raise_on_reader_death is None:
            raise_on_reader_death = self.lossless
        flags = MODES[mode]
        flags |= lib.SHMC_LOSSLESS if lossless else 0
        flags |= lib.SHMC_STREAM_CHECKSUM if checksum else 0
        flags |= lib.SHMC_STREAM_READER_DEATH if raise_on_reader_death else 0
        opts = ffi.new("shmc_stream_options_t *")
        lib.shmc_stream_options_init(opts)
        opts.num_slots = num_slots or 0
        opts.max_readers = max_readers
        opts.flags = flags
        opts.metadata_cap = metadata_capacity
        opts.control_cap = control_capacity
        out = ffi.new("shmc_stream_writer_t **")
        rc = lib.shmc_stream_writer_open(raw_name, _to_c(fields), len(fields), opts, out)
        if rc:
            self._open_failed(rc)
        self._handle = out[0]
        self._layout = _Layout(self._read_schema(lib.shmc_stream_writer_schema))
        n = len(fields)
        self._cframe = ffi.new("shmc_stream_frame_t *")
        self._cframe.size = ffi.sizeof("shmc_stream_frame_t")
        self._ptrs = ffi.new("void *[]", n)
        self._lens = ffi.new("uint64_t[]", n)
        self.checksum = bool(checksum)
        self.metadata_capacity = metadata_capacity
        logger.debug("StreamWriter %r open: %s", name, describe_schema(self._layout.fields))
        if metadata is not None:
            self.set_metadata(metadata)

    def _open_failed(self, rc: int) -> None:
        what = f"cannot create StreamWriter {self.name!r}"
        hints = {
            b.EBUSY: "another process is writing this stream (one writer per stream): stop it, or use "
                     "another name; a dead writer's stream is replaced by itself",
            b.ENAME: "use a non-empty name without control characters or '.'/'..' components",
            b.ENOSPC: "free /dev/shm (python -m shmcomm clean) or enlarge it (Docker: --shm-size=1g); a "
                      "stream needs num_slots x the frame size",
            b.EACCES: "the stream belongs to another user",
            b.EMSGSIZE: "a frame of this schema would exceed 1 GiB",
            b.EINVAL: "check num_slots, max_readers and the capacities",
        }
        b.raise_error(rc, what, hints.get(rc, ""))

    def _read_schema(self, fn: Any) -> Tuple[Field, ...]:
        arr = ffi.new("shmc_stream_field_t[]", MAX_FIELDS)
        count = ffi.new("uint32_t *")
        b.check(fn(self._require(), arr, MAX_FIELDS, count), f"schema of {self.name!r}")
        return _from_c(arr, int(count[0]))

    @property
    def schema(self) -> Tuple[Field, ...]:
        """The fields, with their offsets and capacities."""
        return self._layout.fields

    def _lens_for(self, rows: Optional[Mapping[str, int]], sizes: Optional[Mapping[str, int]]) -> Any:
        """The C lengths array for a commit (NULL: every field full)."""
        if not rows and not sizes:
            return ffi.NULL
        fields = self._layout.fields
        lens = self._lens
        for i, f in enumerate(fields):
            lens[i] = f.nbytes
        for mapping, per in ((rows, True), (sizes, False)):
            for name, value in (mapping or {}).items():
                i = self._layout.lookup(name)
                f = fields[i]
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise SHMValueError(f"{'rows' if per else 'sizes'}[{name!r}] must be an int >= 0")
                n = value * f.row_bytes if per else value
                if n > f.nbytes:
                    raise SHMMessageSizeError(
                        f"field {name!r} holds at most {f.nbytes} bytes ({f.describe()}); {n} asked", b.EMSGSIZE)
                lens[i] = n
        return lens

    def loan(self, timeout: Optional[float] = None) -> FrameLoan:
        """Lends the next frame for writing in place (see :class:`FrameLoan`). Lossless: waits up to
        ``timeout`` seconds (None: forever; 0: raise SHMBufferFullError at once) for the slowest reader."""
        if self._loan is not None:
            raise SHMError(f"stream {self.name!r} already has a loan open: commit or cancel it first", b.EINVAL)
        if len(self._exports) > 64:
            _prune(self._exports)
        cframe = self._cframe
        rc = self._wait(lambda h, t: lib.shmc_stream_writer_loan(h, cframe, t), timeout)
        if rc:
            self._write_failed(rc, timeout)
        self._loan = FrameLoan(self, cframe)
        return self._loan

    def _wait(self, call: Any, timeout: Optional[float]) -> int:
        handle = self._require()
        ns = timeout_to_ns(timeout)
        self._busy += 1
        rc: int = call(handle, 0)  # the common case: one C call
        self._busy -= 1
        if rc == b.EAGAIN and ns:
            rc = self._call_waiting(call, ns)
        return rc

    def _write_failed(self, rc: int, timeout: Optional[float]) -> None:
        if rc == b.EAGAIN:
            raise SHMBufferFullError(f"stream {self.name!r} is full: its slowest reader has not released "
                                     "the oldest frame (lossless mode); pass a timeout to wait", rc)
        if rc == b.ETIMEDOUT:
            raise SHMTimeoutError(f"stream {self.name!r} stayed full for {timeout} s: its slowest reader "
                                  "holds the oldest frame (lossless mode)", rc)
        if rc == b.EREADERDEAD:
            b.raise_error(rc, f"a reader of stream {self.name!r} died (reaped; nothing was written)",
                          "the next write proceeds; see readers() and stats()['readers_died']")
        b.raise_error(rc, f"write on stream {self.name!r} failed")

    def write(self, arrays: Mapping[str, Any], timestamp_ns: Optional[int] = None,
              timeout: Optional[float] = None) -> int:
        """Writes a frame with one copy: ``arrays`` maps every field name to a buffer (numpy array,
        bytes, memoryview...) of at most its capacity (a smaller one uses part of the field). Returns
        the frame's sequence number. Waits as :meth:`loan`."""
        if self._loan is not None:
            raise SHMError(f"stream {self.name!r} has a loan open: commit or cancel it first", b.EINVAL)
        fields = self._layout.fields
        if len(arrays) != len(fields):
            missing = [f.name for f in fields if f.name not in arrays]
            extra = [k for k in arrays if k not in self._layout.index]
            raise SHMValueError(f"write() needs exactly the fields of stream {self.name!r}: missing "
                                f"{missing}, unknown {extra}")
        ptrs, lens = self._ptrs, self._lens
        keep = []
        for i, f in enumerate(fields):
            try:
                data = arrays[f.name]
            except KeyError:
                raise SHMValueError(f"write() misses field {f.name!r} of stream {self.name!r}") from None
            dtype = getattr(data, "dtype", None)
            if dtype is not None and dtype != self._layout.dtypes()[i]:
                raise SHMTypeError(f"field {f.name!r} is {f.dtype} ({self._layout.dtypes()[i]}), got an "
                                   f"array of {dtype}; convert it with .astype()")
            try:
                buf = ffi.from_buffer(data)
            except TypeError:
                raise SHMTypeError(f"field {f.name!r} needs a bytes-like object or numpy array, not "
                                   f"{type(data).__name__}") from None
            except ValueError:
                raise SHMValueError(f"field {f.name!r} needs a C-contiguous buffer: pass "
                                    "numpy.ascontiguousarray(x)") from None
            n = len(buf)
            if n > f.nbytes:
                raise SHMMessageSizeError(f"field {f.name!r} holds at most {f.nbytes} bytes ({f.describe()}); "
                                          f"got {n}: create the stream with a larger shape", b.EMSGSIZE)
            ptrs[i] = buf
            lens[i] = n
            keep.append(buf)
        ts = _timestamp(timestamp_ns)
        rc = self._wait(lambda h, t: lib.shmc_stream_writer_write(h, ptrs, lens, ts, t), timeout)
        if rc:
            self._write_failed(rc, timeout)
        seq = self._next_seq
        self._next_seq = seq + 1
        return seq

    def set_metadata(self, data: Any) -> None:
        """Writes the stream's metadata (bytes-like, or a str as UTF-8); once only: a second call
        raises :class:`SHMMetadataWrittenError`."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        try:
            buf = ffi.from_buffer(data)
        except TypeError:
            raise SHMTypeError(f"metadata must be bytes-like or a str, not {type(data).__name__}") from None
        rc = lib.shmc_stream_writer_set_metadata(self._require(), buf, len(buf))
        if rc == b.EMSGSIZE:
            b.raise_error(rc, f"metadata of {len(buf)} bytes for stream {self.name!r}",
                          f"metadata_capacity is {self.metadata_capacity}: create the stream with a larger one")
        if rc == b.EWRITTEN:
            b.raise_error(rc, f"cannot set the metadata of stream {self.name!r} again",
                          "it is write-once; create a new stream for new metadata")
        b.check(rc, f"set_metadata on {self.name!r}")

    @property
    def metadata(self) -> Optional[bytes]:
        """The metadata written, or None."""
        return describe_stream(self.name).get("_metadata_raw")

    def poll_control(self, max_messages: int = 256) -> List[ControlMessage]:
        """The control messages readers have sent (oldest first, readers in turn), at most
        ``max_messages``; never waits."""
        check_int(max_messages, "max_messages", 1, 1 << 20)
        handle = self._require()
        rid, pid, typ = ffi.new("uint32_t *"), ffi.new("int32_t *"), ffi.new("uint32_t *")
        length = ffi.new("size_t *")
        cap = 1 << 16
        buf = ffi.new("char[]", cap)
        out: List[ControlMessage] = []
        while len(out) < max_messages:
            rc = lib.shmc_stream_writer_poll_control(handle, rid, pid, typ, buf, cap, length)
            if rc == b.EAGAIN:
                break
            if rc == b.ETRUNC:
                cap = int(length[0])
                buf = ffi.new("char[]", cap)
                continue
            if rc == b.EBADSEG:
                logger.warning("stream %r: a reader's control ring was corrupt; its messages were dropped",
                               self.name)
                continue
            b.check(rc, f"poll_control on {self.name!r}")
            out.append(ControlMessage(int(rid[0]), int(pid[0]), int(typ[0]), ffi.buffer(buf, length[0])[:]))
        return out

    def readers(self) -> List[Dict[str, Any]]:
        """The registered readers: ``reader_id``, ``pid``, ``alive``, ``holding`` (a frame),
        ``heartbeat_age_s``, ``frames_seen``, ``last_seq``, ``dropped``, ``cursor``, ``control_pending``."""
        arr = ffi.new("shmc_stream_reader_info_t[]", 254)
        count = ffi.new("uint32_t *")
        b.check(lib.shmc_stream_writer_readers(self._require(), arr, 254, count), f"readers of {self.name!r}")
        return [_reader_dict(arr[i]) for i in range(min(int(count[0]), 254))]

    def reap(self, stale_after: Optional[float] = None) -> int:
        """Removes dead readers now (also done by itself every 0.1 s), and with ``stale_after`` (seconds)
        evicts live readers whose heartbeat is older: the writer stops waiting for them, and they
        resume at the newest frame. Returns how many were removed."""
        ns = 0 if stale_after is None else timeout_to_ns(stale_after, "stale_after")
        reaped = ffi.new("uint32_t *")
        b.check(lib.shmc_stream_writer_reap(self._require(), max(ns, 0), reaped), f"reap on {self.name!r}")
        return int(reaped[0])

    def stats(self) -> Dict[str, Any]:
        """``frames`` written, ``next_seq``, ``readers`` (live), ``readers_died``, ``readers_evicted``,
        ``dropped`` (ring positions given up because readers held their slot), ``control_received``."""
        s = ffi.new("shmc_stream_stats_t *")
        s.size = ffi.sizeof("shmc_stream_stats_t")
        b.check(lib.shmc_stream_writer_stats(self._require(), s), f"stats of {self.name!r}")
        out = _stats(s)
        out.update(name=self.name, lossless=self.lossless, readers_died=s.readers_died,
                   readers_evicted=s.readers_evicted, control_received=s.control_received)
        return out

    def _before_close(self) -> None:
        if self._loan is not None:
            self._loan._invalidate()  # the C close cancels an open loan
            self._loan = None

    def _close_handle(self, handle: Any) -> None:
        _close_mapping(handle, self._exports, lib.shmc_stream_writer_detach, lib.shmc_stream_writer_close,
                       self.name)

    def __repr__(self) -> str:
        if self.closed:
            return f"<StreamWriter {self.name!r} closed>"
        s = self.stats()
        return (f"<StreamWriter {self.name!r} {describe_schema(self.schema)} lossless={self.lossless} "
                f"frames={s['frames']} readers={s['readers']}>")


class StreamReader(Endpoint):
    """Attaches to stream ``name``, waiting up to ``timeout_connect`` seconds for its writer.

    With ``schema`` (as for :class:`StreamWriter`) the stream must have exactly those fields, else
    :class:`SHMSchemaError`; without, the reader takes the stream's schema (:attr:`schema`) and keeps
    insisting on it when the writer restarts. ``spin_us``: how long a read busy-waits before sleeping.
    """

    def __init__(self, name: str, schema: Optional[SchemaLike] = None, *, timeout_connect: float = 5.0,
                 spin_us: int = 50) -> None:
        super().__init__(name)
        self._frame: Optional[Frame] = None
        self._exports: List[Any] = []
        raw_name = check_name(name)
        expected = make_schema(schema) if schema is not None else None
        connect_ns = timeout_to_ns(timeout_connect, "timeout_connect")
        if connect_ns < 0:
            raise SHMValueError("timeout_connect must be a number of seconds >= 0")
        check_int(spin_us, "spin_us", 0, 1_000_000)
        self.timeout_connect = timeout_connect
        opts = ffi.new("shmc_stream_reader_options_t *")
        lib.shmc_stream_reader_options_init(opts)
        opts.spin_us = spin_us
        # Python moves to a restarted writer itself, once no array points into the old segment.
        opts.flags = lib.SHMC_STREAM_MANUAL_FOLLOW
        out = ffi.new("shmc_stream_reader_t **")
        cfields = _to_c(expected) if expected else ffi.NULL
        nfields = len(expected) if expected else 0
        deadline = time.monotonic_ns() + connect_ns
        while True:  # in slices, so Ctrl-C works while we wait for the writer
            opts.connect_timeout_ns = max(0, min(100_000_000, deadline - time.monotonic_ns()))
            rc = lib.shmc_stream_reader_open(raw_name, cfields, nfields, opts, out)
            if rc != b.ENOENT or time.monotonic_ns() >= deadline:
                break
        if rc:
            self._open_failed(rc, expected)
        self._handle = out[0]
        arr = ffi.new("shmc_stream_field_t[]", MAX_FIELDS)
        count = ffi.new("uint32_t *")
        b.check(lib.shmc_stream_reader_schema(self._handle, arr, MAX_FIELDS, count), f"schema of {name!r}")
        self._layout = _Layout(_from_c(arr, int(count[0])))
        self._cframe = ffi.new("shmc_stream_frame_t *")
        self._cframe.size = ffi.sizeof("shmc_stream_frame_t")
        self._acquire = lib.shmc_stream_reader_acquire
        self._acquire_latest = lib.shmc_stream_reader_acquire_latest
        logger.debug("StreamReader %r attached: %s", name, describe_schema(self._layout.fields))

    def _open_failed(self, rc: int, expected: Optional[Tuple[Field, ...]]) -> None:
        if rc == b.ENOENT:
            b.raise_error(rc, f"no StreamWriter named {self.name!r} after {self.timeout_connect} s",
                          "start the StreamWriter first or raise timeout_connect")
        if rc == b.ESCHEMA and expected is not None:
            try:
                found = describe_schema(describe_stream(self.name)["fields"])
            except SHMError:
                found = "(unreadable)"
            raise SHMSchemaError(f"stream {self.name!r} has the schema {found}, but this reader expects "
                                 f"{describe_schema(expected)}: fix the schema on one side, or open the "
                                 "reader without schema= and read stream.schema", rc)
        if rc == b.EPEERS:
            b.raise_error(rc, f"cannot attach to stream {self.name!r}",
                          "max_readers readers are attached already: raise the writer's max_readers")
        b.raise_error(rc, f"cannot attach to stream {self.name!r}",
                      "remove a corrupt segment with python -m shmcomm clean" if rc == b.EBADSEG else "")

    @property
    def schema(self) -> Tuple[Field, ...]:
        """The stream's fields, with their offsets and capacities."""
        return self._layout.fields

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The next frame in order (frames overwritten before this reader got to them are skipped and
        counted in ``frame.dropped``), or None if none came within ``timeout`` seconds (None: wait
        forever; 0: do not wait). Release it (``with reader.read() as frame:``) before the next read.
        Raises :class:`SHMWriterDeadError` once every frame of a dead writer was read, and
        :class:`SHMStreamClosedError` once the writer closed the stream; a restarted writer is
        picked up by the next read."""
        return self._read(self._acquire, timeout)

    def latest(self, timeout: Optional[float] = 0) -> Optional[Frame]:
        """The newest frame not seen yet (older unread ones are skipped), or None within ``timeout``
        (default: do not wait)."""
        return self._read(self._acquire_latest, timeout)

    def _read(self, acquire: Any, timeout: Optional[float]) -> Optional[Frame]:
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        if self._frame is not None:
            raise SHMError(f"frame {self._frame.sequence} of stream {self.name!r} is still held: release it "
                           "(frame.release(), or read inside `with reader.read() as frame:`) first", b.EINVAL)
        ns = self._ns(timeout)
        cframe = self._cframe
        if len(self._exports) > 64:
            _prune(self._exports)
        while True:
            self._busy += 1
            rc: int = acquire(handle, cframe, 0)
            self._busy -= 1
            if rc == b.EAGAIN and ns:
                rc = self._call_waiting(lambda h, t: acquire(h, cframe, t), ns)
            if rc == 0:
                frame = Frame(self, cframe)
                self._frame = frame
                return frame
            if rc in (b.EAGAIN, b.ETIMEDOUT):
                return None
            if rc in (b.EWRITERDEAD, b.ECLOSED) and self._follow():
                continue
            self._read_failed(rc)

    def _follow(self) -> bool:
        """Moves to a restarted writer's segment, if there is one. Arrays of earlier frames may live
        on: libshm keeps the old segment's address range reserved (reading zeros) until close."""
        rc = lib.shmc_stream_reader_follow(self._require())
        if rc == 1:
            logger.info("stream %r: following a restarted writer", self.name)
            return True
        if rc == b.ESCHEMA:
            raise SHMSchemaError(f"the restarted writer of stream {self.name!r} uses another schema than "
                                 f"{describe_schema(self.schema)}; open a new StreamReader for it", rc)
        return False

    def _read_failed(self, rc: int) -> None:
        if rc == b.EWRITERDEAD:
            raise SHMWriterDeadError(f"the writer of stream {self.name!r} died (every frame it committed "
                                     "was read); a restarted writer is picked up by the next read", rc)
        if rc == b.ECLOSED and self._handle is not None:
            raise SHMStreamClosedError(f"the writer closed stream {self.name!r} (every frame was read); a "
                                       "new writer is picked up by the next read", rc)
        if rc == b.ECHECKSUM:
            b.raise_error(rc, f"a frame of stream {self.name!r} failed its checksum and was skipped",
                          "the shared memory was overwritten by something else; the next read goes on")
        if rc == b.EINVAL and self._frame is not None:
            raise SHMError(f"a frame of {self.name!r} is still held: release it first", rc)
        b.raise_error(rc, f"read on stream {self.name!r} failed")

    def _release_frame(self, frame: Frame) -> None:
        if self._frame is frame:
            self._frame = None
        handle = self._handle
        if handle is None:
            return
        rc = lib.shmc_stream_reader_release(handle)
        if rc == b.ESTALE:
            logger.warning("stream %r: this reader was evicted by the writer while it held frame %d; the "
                           "frame may have been overwritten while in use", self.name, frame.sequence)
            return
        b.check(rc, f"release on stream {self.name!r}")

    def release(self) -> None:
        """Releases the frame held, if any."""
        if self._frame is not None:
            self._frame.release()

    def __iter__(self) -> Iterator[Frame]:
        """Yields every frame in order (each released when the next is asked for) until the writer
        closes the stream or this reader is closed."""
        while True:
            self.release()
            try:
                frame = self.read(timeout=None)
            except (SHMStreamClosedError, SHMClosedError):
                return
            if frame is None:  # pragma: no cover - read(None) waits
                continue
            yield frame

    @property
    def metadata(self) -> Optional[bytes]:
        """The stream's metadata, or None while the writer has not written it."""
        data = ffi.new("const void **")
        length = ffi.new("size_t *")
        rc = lib.shmc_stream_reader_metadata(self._require(), data, length)
        if rc == b.EAGAIN:
            return None
        b.check(rc, f"metadata of {self.name!r}")
        result: bytes = ffi.buffer(data[0], length[0])[:]
        return result

    def wait_metadata(self, timeout: Optional[float] = 5.0) -> bytes:
        """The metadata, waiting up to ``timeout`` seconds for the writer to write it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            data = self.metadata
            if data is not None:
                return data
            if deadline is not None and time.monotonic() >= deadline:
                raise SHMTimeoutError(f"stream {self.name!r} has no metadata after {timeout} s", b.ETIMEDOUT)
            time.sleep(0.001)

    def send_control(self, type: int, data: Any = b"") -> None:
        """Sends a control message (``type`` an int 0 .. 2**32 - 2, ``data`` bytes-like) to the writer,
        which gets it from :meth:`StreamWriter.poll_control`. Raises SHMBufferFullError if the writer
        has not polled the earlier ones and the ring is full. Never waits."""
        check_int(type, "type", 0, (1 << 32) - 2)
        try:
            buf = ffi.from_buffer(data)
        except TypeError:
            raise SHMTypeError(f"control data must be bytes-like, not {type.__class__.__name__}") from None
        rc = lib.shmc_stream_reader_send_control(self._require(), type, buf, len(buf))
        if rc == b.EAGAIN:
            raise SHMBufferFullError(f"the control ring of this reader of {self.name!r} is full: the writer "
                                     "has not polled its messages (poll_control)", rc)
        if rc == b.EMSGSIZE:
            b.raise_error(rc, f"control message of {len(buf)} bytes on {self.name!r}",
                          "at most control_capacity / 2 - 16 bytes: raise the writer's control_capacity")
        b.check(rc, f"send_control on {self.name!r}")

    @property
    def writer_alive(self) -> bool:
        """True while the writer's process lives."""
        return bool(lib.shmc_stream_reader_writer_alive(self._require()))

    def stats(self) -> Dict[str, Any]:
        """``frames`` received, ``dropped`` (skipped), ``next_seq`` (the writer's), ``reconnects``,
        ``checksum_failures``, ``control_sent``, ``readers``, ``writer_alive``."""
        s = ffi.new("shmc_stream_stats_t *")
        s.size = ffi.sizeof("shmc_stream_stats_t")
        b.check(lib.shmc_stream_reader_stats(self._require(), s), f"stats of {self.name!r}")
        out = _stats(s)
        out.update(name=self.name, reconnects=s.reconnects, checksum_failures=s.checksum_failures,
                   control_sent=s.control_sent)
        return out

    def _before_close(self) -> None:
        if self._frame is not None:
            self._frame._invalidate()
            self._frame = None

    def _close_handle(self, handle: Any) -> None:
        _close_mapping(handle, self._exports, lib.shmc_stream_reader_detach, lib.shmc_stream_reader_close,
                       self.name)

    def __repr__(self) -> str:
        if self.closed:
            return f"<StreamReader {self.name!r} closed>"
        s = self.stats()
        return (f"<StreamReader {self.name!r} {describe_schema(self.schema)} frames={s['frames']} "
                f"dropped={s['dropped']} writer_alive={s['writer_alive']}>")


_STATES = {1: "ready", 2: "closed", 3: "replaced"}


def describe_stream(name: str) -> Dict[str, Any]:
    """A read-only look at stream ``name`` (never joins it): its ``fields``, ``metadata`` (text, or
    ``"hex:..."`` when not UTF-8; None if unwritten), ``frames`` (committed), ``last_frame_age_s``,
    the writer (``writer_pid``, ``writer_alive``), ``readers`` (as :meth:`StreamWriter.readers`),
    geometry and state. Raises SHMConnectionError if there is no such stream."""
    raw_name = check_name(name)
    info = ffi.new("shmc_stream_info_t *")
    info.size = ffi.sizeof("shmc_stream_info_t")
    fields = ffi.new("shmc_stream_field_t[]", MAX_FIELDS)
    readers = ffi.new("shmc_stream_reader_info_t[]", 254)
    nreaders = ffi.new("uint32_t *")
    cap = 1 << 16
    for _ in range(2):
        meta = ffi.new("char[]", cap)
        rc = lib.shmc_stream_inspect(raw_name, info, fields, MAX_FIELDS, readers, 254, nreaders, meta, cap)
        if rc == b.ENOENT:
            b.raise_error(rc, f"no stream named {name!r}", "list the channels with python -m shmcomm ls")
        if rc == b.EAGAIN:
            raise SHMConnectionError(f"stream {name!r} is being created (or its writer died creating it): "
                                     "look again in a moment", rc)
        b.check(rc, f"cannot inspect stream {name!r}")
        if info.metadata_len <= cap:
            break
        cap = int(info.metadata_len)
    raw_meta = ffi.buffer(meta, info.metadata_len)[:] if info.metadata_written else None
    text: Optional[str] = None
    if raw_meta is not None:
        try:
            text = raw_meta.decode("utf-8")
        except UnicodeDecodeError:
            text = "hex:" + raw_meta.hex()
    last = int(info.last_timestamp_ns)
    return {
        "name": name,
        "os_name": _os_name(name),
        "state": _STATES.get(int(info.state), "unknown"),
        "writer_pid": int(info.writer_pid),
        "writer_alive": bool(info.writer_alive),
        "lossless": bool(info.flags & lib.SHMC_LOSSLESS),
        "checksum": bool(info.flags & lib.SHMC_STREAM_CHECKSUM),
        "num_slots": int(info.num_slots),
        "max_readers": int(info.max_readers),
        "frame_capacity": int(info.frame_capacity),
        "frames": int(info.frames),
        "last_timestamp_ns": last,
        "last_frame_age_s": (time.monotonic_ns() - last) / 1e9 if info.frames else None,
        "fields": list(_from_c(fields, int(info.nfields))),
        "metadata": text,
        "metadata_bytes": int(info.metadata_len),
        "metadata_capacity": int(info.metadata_cap),
        "control_capacity": int(info.control_cap),
        "readers": [_reader_dict(readers[i]) for i in range(min(int(nreaders[0]), 254))],
        "segment_bytes": int(info.segment_bytes),
        "session_id": f"{int(info.session_id):016x}",
        "_metadata_raw": raw_meta,
    }


def _os_name(name: str) -> str:
    out = ffi.new("char[]", 256)
    b.check(lib.shmc_os_name(check_name(name), lib.SHMC_PATTERN_STREAM, out, 256), f"invalid name {name!r}")
    result: str = ffi.string(out).decode()
    return result


def stream_info_json(desc: Mapping[str, Any]) -> Dict[str, Any]:
    """describe_stream()'s result in plain JSON types (fields as dicts, no raw bytes)."""
    out = {k: v for k, v in desc.items() if not k.startswith("_")}
    out["fields"] = [{"name": f.name, "dtype": f.dtype, "shape": list(f.shape), "offset": f.offset,
                      "nbytes": f.nbytes} for f in desc["fields"]]
    return out


def format_stream(desc: Mapping[str, Any]) -> str:
    """describe_stream()'s result as text (what ``python -m shmcomm inspect NAME`` prints)."""
    mode = "lossless" if desc["lossless"] else "latest-frame"
    writer = (f"pid {desc['writer_pid']} ({'alive' if desc['writer_alive'] else 'DEAD'})"
              if desc["writer_pid"] else "none")
    age = desc["last_frame_age_s"]
    lines = [
        f"stream {desc['name']!r} ({desc['os_name']}): {desc['state']}, {mode}"
        + (", checksums" if desc["checksum"] else ""),
        f"  writer: {writer}",
        f"  frames: {desc['frames']} written" + (f", last {age:.3f} s ago" if age is not None else ""),
        f"  ring: {desc['num_slots']} slots of {desc['frame_capacity']} bytes, up to {desc['max_readers']} readers",
        "  fields:",
    ]
    for f in desc["fields"]:
        shape = "x".join(str(d) for d in f.shape) or "scalar"
        lines.append(f"    {f.name:<20} {f.dtype:<5} {shape:<20} {f.nbytes} bytes at +{f.offset}")
    meta = desc["metadata"]
    if meta is None:
        lines.append("  metadata: (not written)")
    else:
        shown = meta if len(meta) <= 200 else meta[:200] + "..."
        lines.append(f"  metadata ({desc['metadata_bytes']} bytes): {shown}")
    readers = desc["readers"]
    lines.append(f"  readers: {len(readers)}")
    for r in readers:
        last = "-" if r["last_seq"] is None else str(r["last_seq"])
        lines.append(f"    #{r['reader_id']} pid {r['pid']} {'alive' if r['alive'] else 'DEAD'}, "
                     f"heartbeat {r['heartbeat_age_s']:.3f} s ago, frames {r['frames_seen']} (last {last}), "
                     f"dropped {r['dropped']}" + (", holding a frame" if r["holding"] else "")
                     + (f", {r['control_pending']} control bytes pending" if r["control_pending"] else ""))
    return "\n".join(lines)


__all__ = ["StreamWriter", "StreamReader", "Frame", "FrameLoan", "Field", "ControlMessage", "field",
           "make_schema", "describe_stream", "format_stream", "stream_info_json", "DTYPES", "numpy_dtype"]
