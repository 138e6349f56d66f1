"""STREAM in one process: schemas, loans and one-copy writes, frames read in place and invalidated on
release, variable-length fields, metadata (write-once), control messages, the reader registry,
lossless and latest-frame behaviour, checksums, inspection, errors. Real processes: test_stream_procs.py."""

from __future__ import annotations

import gc
import weakref
from typing import Callable

import numpy as np
import pytest

import shmcomm
from shmcomm import (SHMBufferFullError, SHMChecksumError, SHMConnectionError, SHMError,
                     SHMFrameReleasedError, SHMMessageSizeError, SHMMetadataWrittenError, SHMSchemaError,
                     SHMStreamClosedError, SHMTimeoutError, SHMTypeError, SHMValueError, StreamReader,
                     StreamWriter)
from shmcomm import _binding as b
from shmcomm.stream import Field, field, make_schema

SCHEMA = [("rgb", "u8", (4, 6, 3)), ("pose", "f32", 7), ("stamp", "f64")]


def fill(loan: shmcomm.FrameLoan, k: int) -> None:
    loan["rgb"][...] = (np.arange(72, dtype=np.uint32).reshape(4, 6, 3) + k) % 256
    loan["pose"][:] = np.arange(7, dtype=np.float32) + k
    loan["stamp"][...] = k / 10


def check(frame: shmcomm.Frame, k: int) -> None:
    assert frame.sequence == k
    assert np.array_equal(frame["rgb"], (np.arange(72).reshape(4, 6, 3) + k) % 256)
    assert np.array_equal(frame["pose"], np.arange(7, dtype=np.float32) + k)
    assert float(frame["stamp"]) == k / 10


def test_schema_forms_and_errors() -> None:
    fields = make_schema(SCHEMA)
    assert fields == make_schema({"rgb": ("uint8", (4, 6, 3)), "pose": (np.float32, 7), "stamp": "float64"})
    assert fields[0] == Field("rgb", "u8", (4, 6, 3)) and fields[1].capacity == 28 and fields[2].shape == ()
    assert field("cloud", "f32", (100, 3)).row_bytes == 12
    with pytest.raises(SHMValueError, match="unknown dtype"):
        make_schema([("x", "complex64", 3)])
    with pytest.raises(SHMValueError, match="unique"):
        make_schema([("x", "u8", 3), ("x", "u8", 3)])
    with pytest.raises(SHMValueError, match="ints >= 1"):
        make_schema([("x", "u8", (0, 3))])
    with pytest.raises(SHMValueError, match="1 to 39 bytes"):
        make_schema([("x" * 40, "u8", 3)])
    with pytest.raises(SHMValueError, match="1 to 64 fields"):
        make_schema([])
    with pytest.raises(SHMTypeError):
        make_schema("rgb")  # type: ignore[arg-type]
    with pytest.raises(SHMValueError, match="at most 8"):
        make_schema([("x", "u8", (1,) * 9)])


def test_loan_write_and_read_in_place(channel: str) -> None:
    with StreamWriter(channel, SCHEMA) as w, StreamReader(channel, SCHEMA) as r:
        assert r.schema == w.schema and [f.offset for f in r.schema] == [0, 128, 192]
        assert r.read(timeout=0) is None
        with w.loan() as loan:
            assert loan.sequence == 0 and loan["rgb"].flags.writeable
            fill(loan, 0)
        assert w.write({"rgb": np.full((4, 6, 3), 9, np.uint8), "pose": np.ones(7, np.float32),
                        "stamp": np.float64(2.5)}, timestamp_ns=123) == 1
        with r.read(timeout=1) as frame:
            check(frame, 0)
            assert not frame["rgb"].flags.writeable
            assert frame.timestamp_ns > 0 and frame.dropped == 0 and frame.nbytes == 72 + 28 + 8
            assert frame.sizes == {"rgb": 72, "pose": 28, "stamp": 8}
            assert set(frame) == {"rgb", "pose", "stamp"} and "rgb" in frame
            assert bytes(frame.view("rgb")) == frame["rgb"].tobytes()
        frame = r.read(timeout=1)
        assert frame is not None and frame.sequence == 1 and frame.timestamp_ns == 123
        assert frame["rgb"].sum() == 9 * 72 and float(frame["stamp"]) == 2.5
        frame.release()
        frame.release()  # twice is fine
        stats = r.stats()
        assert stats["frames"] == 2 and stats["dropped"] == 0 and stats["writer_alive"] is True
        assert w.stats()["frames"] == 2 and w.stats()["readers"] == 1


def test_released_frame_raises(channel: str) -> None:
    with StreamWriter(channel, SCHEMA) as w, StreamReader(channel) as r:
        for k in range(2):
            with w.loan() as loan:
                fill(loan, k)
        frame = r.read(timeout=1)
        assert frame is not None
        view = frame.view("pose")
        array = frame["pose"]
        with pytest.raises(SHMError, match="still held"):
            r.read(timeout=0)
        frame.release()
        assert frame.released
        with pytest.raises(SHMFrameReleasedError, match="was released"):
            frame["pose"]
        with pytest.raises(ValueError):  # SHMFrameReleasedError is a ValueError too
            frame.view("rgb")
        with pytest.raises(ValueError, match="released"):
            view[0]  # the memoryview was released with the frame
        with pytest.raises(SHMFrameReleasedError):
            frame.sizes
        assert array.shape == (7,)  # numpy arrays stay memory-safe views (the segment stays mapped)
        with pytest.raises(SHMFrameReleasedError):
            with frame:
                pass
        with r.read(timeout=1) as second:
            check(second, 1)
        loan = w.loan()
        loan.cancel()
        with pytest.raises(SHMFrameReleasedError, match="committed or cancelled"):
            loan["rgb"]
        with pytest.raises(SHMError, match="loan open"):
            w.loan()
            w.loan()


def test_loan_context_cancels_on_exception(channel: str) -> None:
    with StreamWriter(channel, SCHEMA) as w, StreamReader(channel) as r:
        with pytest.raises(RuntimeError):
            with w.loan() as loan:
                fill(loan, 0)
                raise RuntimeError("boom")
        assert r.read(timeout=0) is None
        with w.loan() as loan:  # the cancelled frame's sequence number is reused
            fill(loan, 0)
        with r.read(timeout=1) as frame:
            check(frame, 0)


def test_variable_length_fields(channel: str) -> None:
    schema = [("points", "f32", (1000, 3)), ("label", "u8", 16)]
    with StreamWriter(channel, schema) as w, StreamReader(channel) as r:
        cloud = np.random.default_rng(1).random((123, 3), dtype=np.float32)
        w.write({"points": cloud, "label": b"lidar"})
        with w.loan() as loan:
            loan["points"][:5] = 1.0
            loan.commit(rows={"points": 5}, sizes={"label": 2})
        with r.read(timeout=1) as frame:
            assert frame["points"].shape == (123, 3) and np.array_equal(frame["points"], cloud)
            assert bytes(frame.view("label")) == b"lidar"
        with r.read(timeout=1) as frame:
            assert frame["points"].shape == (5, 3) and frame.sizes == {"points": 60, "label": 2}
        with pytest.raises(SHMMessageSizeError, match="at most 12000 bytes"):
            w.write({"points": np.zeros((1001, 3), np.float32), "label": b""})
        loan = w.loan()
        with pytest.raises(SHMMessageSizeError):
            loan.commit(rows={"points": 1001})
        loan.cancel()  # a commit that failed leaves the loan open
        with pytest.raises(SHMTypeError, match="convert it"):
            w.write({"points": np.zeros((10, 3), np.float64), "label": b""})
        with pytest.raises(SHMValueError, match="missing"):
            w.write({"points": cloud})
        with pytest.raises(SHMValueError, match="C-contiguous"):
            w.write({"points": np.zeros((10, 6), np.float32)[:, ::2], "label": b""})
        assert r.read(timeout=0) is None  # nothing half-written


def test_metadata_write_once(channel: str) -> None:
    with StreamWriter(channel, SCHEMA, metadata_capacity=64) as w, StreamReader(channel) as r:
        assert r.metadata is None and w.metadata is None
        with pytest.raises(SHMMessageSizeError, match="metadata_capacity is 64"):
            w.set_metadata(b"x" * 65)
        w.set_metadata('{"fx": 600.5}')
        assert r.metadata == b'{"fx": 600.5}' == w.metadata
        assert r.wait_metadata(1) == b'{"fx": 600.5}'
        with pytest.raises(SHMMetadataWrittenError, match="write-once"):
            w.set_metadata(b"again")
        assert r.metadata == b'{"fx": 600.5}'
    with StreamWriter(channel, SCHEMA, metadata=b"\x00\xff") as w2:
        assert shmcomm.describe_stream(channel)["metadata"] == "hex:00ff"


def test_schema_mismatch(channel: str) -> None:
    with StreamWriter(channel, SCHEMA):
        with pytest.raises(SHMSchemaError, match=r"has the schema rgb:u8\[4,6,3\].*expects rgb:u8\[4,6,4\]"):
            StreamReader(channel, [("rgb", "u8", (4, 6, 4)), ("pose", "f32", 7), ("stamp", "f64")],
                         timeout_connect=0)
        with pytest.raises(SHMSchemaError):
            StreamReader(channel, [("rgb", "u8", (4, 6, 3))], timeout_connect=0)
        with pytest.raises(SHMConnectionError):  # SHMSchemaError is a connection error
            StreamReader(channel, {"rgb": ("u8", (4, 6, 3)), "pose": ("f64", 7), "stamp": "f64"},
                         timeout_connect=0)
        with StreamReader(channel, SCHEMA, timeout_connect=0) as r:
            assert len(r.schema) == 3


def test_one_writer_per_stream_and_no_stream(channel: str) -> None:
    with pytest.raises(SHMConnectionError, match="no StreamWriter named"):
        StreamReader(channel, timeout_connect=0.05)
    with StreamWriter(channel, SCHEMA):
        with pytest.raises(SHMConnectionError, match="one writer per stream"):
            StreamWriter(channel, SCHEMA)
    with StreamWriter(channel, [("other", "u16", 3)]) as w:  # the name is free again
        assert w.schema[0].name == "other"


def test_lossless_writer_waits_for_reader(channel: str) -> None:
    with StreamWriter(channel, SCHEMA, lossless=True, num_slots=2) as w, StreamReader(channel) as r:
        for k in range(2):
            with w.loan() as loan:
                fill(loan, k)
        with pytest.raises(SHMBufferFullError, match="slowest reader"):
            w.loan(timeout=0)
        with pytest.raises(SHMTimeoutError):
            w.write({"rgb": np.zeros((4, 6, 3), np.uint8), "pose": np.zeros(7, np.float32),
                     "stamp": np.zeros((), np.float64)}, timeout=0.02)
        with r.read(timeout=1) as frame:
            check(frame, 0)
            with pytest.raises(SHMBufferFullError):
                w.loan(timeout=0)  # the held frame is protected
        with w.loan(timeout=0) as loan:
            fill(loan, 2)
        for k in (1, 2):
            with r.read(timeout=1) as frame:
                check(frame, k)


def test_latest_frame_writer_never_waits_and_held_frame_stays(channel: str) -> None:
    with StreamWriter(channel, SCHEMA, max_readers=2) as w, StreamReader(channel) as r:
        with w.loan(timeout=0) as loan:
            fill(loan, 0)
        held = r.read(timeout=1)
        assert held is not None
        for k in range(1, 50):
            with w.loan(timeout=0) as loan:  # never waits
                fill(loan, k)
        check(held, 0)  # pinned: untouched while the writer went round 4 slots 49 times
        assert w.readers()[0]["holding"] is True
        held.release()
        with r.latest() as frame:
            check(frame, 49)
            assert frame.dropped == 48
        assert r.latest() is None
        assert r.stats()["dropped"] == 48 and w.stats()["dropped"] > 0


def test_control_messages(channel: str) -> None:
    with StreamWriter(channel, SCHEMA, control_capacity=128) as w, \
            StreamReader(channel) as r1, StreamReader(channel) as r2:
        assert w.poll_control() == []
        r1.send_control(1, b"hello")
        r2.send_control(2)
        r1.send_control(3, bytearray(b"x" * 48))
        messages = w.poll_control()
        assert sorted((m.type, m.data) for m in messages) == [(1, b"hello"), (2, b""), (3, b"x" * 48)]
        assert {m.reader_id for m in messages} == {r["reader_id"] for r in w.readers()}
        assert all(m.pid == __import__("os").getpid() for m in messages)
        with pytest.raises(SHMMessageSizeError):
            r1.send_control(4, b"x" * 49)
        with pytest.raises(SHMBufferFullError, match="has not polled"):
            for _ in range(10):
                r1.send_control(5, b"y" * 40)
        assert len(w.poll_control(max_messages=1)) == 1
        assert all(m.type == 5 for m in w.poll_control())
        with pytest.raises(SHMValueError):
            r1.send_control(-1)
        assert r1.stats()["control_sent"] >= 3 and w.stats()["control_received"] >= 4


def test_readers_listing_inspection_and_format(channel: str) -> None:
    with StreamWriter(channel, SCHEMA, metadata=b'{"fx": 1}', checksum=True) as w:
        assert w.readers() == []
        with StreamReader(channel) as r:
            w.write({"rgb": np.zeros((4, 6, 3), np.uint8), "pose": np.zeros(7, np.float32),
                     "stamp": np.zeros((), np.float64)})
            with r.read(timeout=1):
                readers = w.readers()
                assert len(readers) == 1 and readers[0]["alive"] and readers[0]["pid"] == __import__("os").getpid()
            desc = shmcomm.describe_stream(channel)
            assert desc["frames"] == 1 and desc["writer_alive"] and desc["checksum"] and not desc["lossless"]
            assert desc["metadata"] == '{"fx": 1}' and [f.name for f in desc["fields"]] == ["rgb", "pose", "stamp"]
            assert desc["readers"][0]["frames_seen"] == 1 and desc["readers"][0]["last_seq"] == 0
            text = shmcomm.format_stream(desc)
            assert "latest-frame, checksums" in text and "rgb" in text and '{"fx": 1}' in text
            assert f"pid {desc['writer_pid']} (alive)" in text and "frames 1 (last 0)" in text
            import json
            from shmcomm.stream import stream_info_json
            json.dumps(stream_info_json(desc))  # plain JSON for the CLI
            assert w.reap() == 0
    with pytest.raises(SHMConnectionError, match="no stream named"):
        shmcomm.describe_stream(channel)


def test_checksum_verified(channel: str) -> None:
    with StreamWriter(channel, SCHEMA, checksum=True) as w, StreamReader(channel) as r:
        with w.loan() as loan:
            fill(loan, 0)
            data = loan.view("rgb")
        with w.loan() as loan:
            fill(loan, 1)
        with r.read(timeout=1) as frame:
            check(frame, 0)
            whole = frame["rgb"].tobytes() + frame["pose"].tobytes() + frame["stamp"].tobytes()
            assert frame.checksum == b.lib.shmc_stream_checksum(whole, len(whole)) != 0
        # Corrupt frame 2 after its commit, through a view the writer kept (released: use the raw
        # segment instead).
        with pytest.raises(ValueError):
            data[0] = 1
        loan = w.loan()
        fill(loan, 2)
        raw = np.frombuffer(loan._raw, dtype=np.uint8)  # the frame's memory, beyond the loan
        loan.commit()
        raw[5] ^= 0xFF
        with r.read(timeout=1) as frame:
            check(frame, 1)
        with pytest.raises(SHMChecksumError, match="skipped"):
            r.read(timeout=1)
        assert r.read(timeout=0) is None and r.stats()["checksum_failures"] == 1


def test_dtypes(channel: str) -> None:
    schema = [(name, name, 2) for name in ("bool", "i8", "i16", "i32", "i64", "u16", "u32", "u64", "f16",
                                            "bf16", "f32", "f64")]
    with StreamWriter(channel, schema) as w, StreamReader(channel) as r:
        with w.loan() as loan:
            for f in w.schema:
                loan[f.name][...] = 1
        with r.read(timeout=1) as frame:
            for f in r.schema:
                assert frame[f.name].itemsize == f.itemsize and frame[f.name].shape == (2,)
            assert frame["f16"].dtype == np.float16 and frame["bool"].dtype == np.bool_
            assert frame["bf16"].dtype.itemsize == 2


def test_writer_close_ends_the_stream(channel: str) -> None:
    w = StreamWriter(channel, SCHEMA, lossless=True)
    r = StreamReader(channel)
    for k in range(3):
        with w.loan() as loan:
            fill(loan, k)
    w.close()
    seen = [frame.sequence for frame in r]  # iteration stops at the end of the stream
    assert seen == [0, 1, 2]
    with pytest.raises(SHMStreamClosedError, match="closed stream"):
        r.read(timeout=1)
    assert r.writer_alive is False
    r.close()
    r.close()
    with pytest.raises(shmcomm.SHMClosedError):
        r.read()


def test_arrays_outliving_the_reader_stay_readable(channel: str) -> None:
    """A numpy array taken from a frame keeps the segment mapped after the reader closes."""
    with StreamWriter(channel, SCHEMA) as w:
        r = StreamReader(channel)
        with w.loan() as loan:
            fill(loan, 3)
        frame = r.read(timeout=1)
        assert frame is not None
        array = frame["rgb"]
        frame.release()
        r.close()
        del frame
        gc.collect()
        assert array.sum() == ((np.arange(72) + 3) % 256).sum()  # mapped, and nothing reused it
        del array
        gc.collect()


def test_no_reference_cycles(new_channel: Callable[[str], str]) -> None:
    name = new_channel("gc")
    w = StreamWriter(name, SCHEMA)
    r = StreamReader(name)
    with w.loan() as loan:
        fill(loan, 0)
    with r.read(timeout=1) as frame:
        frame["rgb"]
    refs = [weakref.ref(w), weakref.ref(r), weakref.ref(frame)]
    gc.disable()
    try:
        r.close()
        w.close()
        del w, r, frame, loan
        assert [ref() for ref in refs] == [None, None, None]
    finally:
        gc.enable()


def test_argument_errors(channel: str) -> None:
    with pytest.raises(SHMValueError, match="too few"):
        StreamWriter(channel, SCHEMA, num_slots=3, max_readers=2)
    with pytest.raises(SHMValueError):
        StreamWriter(channel, SCHEMA, control_capacity=100)
    with pytest.raises(SHMValueError):
        StreamWriter(channel, SCHEMA, mode=0o777)
    with pytest.raises(SHMTypeError):
        StreamWriter(channel, SCHEMA, max_readers="2")  # type: ignore[arg-type]
    with pytest.raises(shmcomm.SHMNameError):
        StreamWriter("..", SCHEMA)
    with StreamWriter(channel, SCHEMA) as w:
        with pytest.raises(SHMTypeError):
            w.write({"rgb": object(), "pose": b"", "stamp": b""})
        with pytest.raises(SHMValueError):
            w.write({"rgb": b"", "pose": b"", "stamp": b""}, timestamp_ns=-1)
        with pytest.raises(SHMTypeError):
            w.set_metadata(3)
        with StreamReader(channel) as r:
            with pytest.raises(SHMTypeError):
                r.send_control(1, 3)
            assert "StreamReader" in repr(r) and "StreamWriter" in repr(w)
    assert "closed" in repr(w)
