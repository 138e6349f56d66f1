"""STREAM across real processes: 1080p RGB at 60 fps for 10 s with every frame verified (lossless), a
slow reader on a latest-frame stream, C and Python in both directions, SIGKILL of the writer (death
reported after its last frame, a restarted writer picked up) and of a reader (the lossless writer
reports it once and goes on), control messages and metadata across processes, schema mismatch.

The writers are the examples (examples/stream_camera.py, examples/c/stream_camera.c), which pace
themselves; these tests assert completeness and order, never speed (rates are printed)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest

from naming import REPO
from procs import child_env, wait_until
from shmcomm import (SHMReaderDeadError, SHMSchemaError, SHMStreamClosedError, SHMWriterDeadError,
                     StreamReader, StreamWriter)

EXAMPLES = REPO / "examples"


def camera(name: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(EXAMPLES / "stream_camera.py"), "--name", name, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())


def finish(proc: subprocess.Popen, timeout: float = 60) -> Tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def base_image(shape: Tuple[int, ...]) -> np.ndarray:
    return (np.arange(int(np.prod(shape)), dtype=np.uint32) % 256).astype(np.uint8).reshape(shape)


def verify(frame: object, base: np.ndarray) -> bool:
    k = frame.sequence  # type: ignore[attr-defined]
    return (int(frame["frame_id"]) == k  # type: ignore[index]
            and np.array_equal(frame["rgb"], base + np.uint8(13 * k % 256)))  # type: ignore[index]


@pytest.mark.timeout(120)
def test_1080p_rgb_60fps_for_10s_lossless_every_frame_verified(channel: str) -> None:
    frames = 600  # 10 s at 60 fps
    proc = camera(channel, "--frames", str(frames), "--fps", "60", "--width", "1920", "--height", "1080",
                  "--lossless", "--readers", "1", "--wait", "30", "--quiet")
    try:
        with StreamReader(channel, timeout_connect=30) as reader:
            assert reader.schema[0].shape == (1080, 1920, 3)
            base = base_image((1080, 1920, 3))
            received: List[int] = []
            bad: List[int] = []
            start = time.monotonic()
            for frame in reader:  # ends when the camera closes the stream
                if not verify(frame, base):
                    bad.append(frame.sequence)
                received.append(frame.sequence)
            elapsed = time.monotonic() - start
            stats = reader.stats()
        rc, out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, err
    assert received == list(range(frames)), f"missing or out of order: {sorted(set(range(frames)) - set(received))[:10]}"
    assert bad == [] and stats["dropped"] == 0 and stats["frames"] == frames
    print(f"\n1080p RGB lossless: {frames} frames verified in {elapsed:.2f} s = {frames / elapsed:.1f} fps "
          f"({frames * 1920 * 1080 * 3 / elapsed / 1e9:.2f} GB/s); camera: {out.strip().splitlines()[-1][:80]}")


@pytest.mark.timeout(90)
def test_latest_frame_slow_reader_skips_and_writer_never_waits(channel: str) -> None:
    frames = 2000
    proc = camera(channel, "--frames", str(frames), "--fps", "2000", "--width", "64", "--height", "48",
                  "--readers", "1", "--wait", "30", "--quiet")
    try:
        with StreamReader(channel, timeout_connect=30) as reader:
            base = base_image((48, 64, 3))
            seen: List[int] = []
            corrupt = 0
            while not seen or seen[-1] < frames - 1:
                frame = reader.latest(timeout=10)
                assert frame is not None, f"no frame within 10 s after {seen[-1:]}"
                with frame:
                    time.sleep(0.003)  # slow work while holding: the frame must stay intact
                    corrupt += not verify(frame, base)
                    seen.append(frame.sequence)
            stats = reader.stats()
        rc, out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The camera writes with timeout 0 in this mode: exit status 0 means no write ever had to wait.
    assert rc == 0, err
    assert f"done, {frames} frames" in out
    assert corrupt == 0
    assert seen == sorted(set(seen))  # strictly increasing
    assert stats["frames"] == len(seen) and stats["dropped"] == frames - len(seen) - seen[0]
    assert len(seen) < frames
    print(f"\nslow latest-frame reader: {len(seen)} frames read, {stats['dropped']} skipped, all intact")


@pytest.mark.timeout(90)
def test_sigkill_writer_reported_then_restart_picked_up(channel: str) -> None:
    first = camera(channel, "--frames", "1000000", "--fps", "500", "--width", "32", "--height", "24",
                   "--lossless", "--readers", "1", "--wait", "30", "--quiet")
    second = None
    try:
        with StreamReader(channel, timeout_connect=30) as reader:
            base = base_image((24, 32, 3))
            for k in range(50):
                with reader.read(timeout=10) as frame:  # type: ignore[union-attr]
                    assert frame.sequence == k and verify(frame, base)
                    kept = frame["rgb"]  # an array kept past release, into the first segment
            os.kill(first.pid, signal.SIGKILL)
            first.wait(30)
            # Every frame it committed is still read, then its death is reported.
            last = 49
            with pytest.raises(SHMWriterDeadError, match="died"):
                while True:
                    frame = reader.read(timeout=10)
                    assert frame is not None
                    with frame:
                        assert frame.sequence == last + 1 and verify(frame, base)
                        last = frame.sequence
            assert reader.writer_alive is False
            with pytest.raises(SHMWriterDeadError):
                reader.read(timeout=0)
            # A new camera replaces the dead one's stream; the reader follows it, from its first frame.
            second = camera(channel, "--frames", "20", "--fps", "0", "--width", "32", "--height", "24",
                            "--lossless", "--wait", "30", "--quiet")
            deadline = time.monotonic() + 30
            while True:
                try:
                    frame = reader.read(timeout=1)
                    break
                except SHMWriterDeadError:
                    assert time.monotonic() < deadline, "the restarted camera was never picked up"
                    time.sleep(0.01)
            assert frame is not None
            with frame:
                assert frame.sequence == 0 and verify(frame, base)
            for k in range(1, 20):
                with reader.read(timeout=10) as frame:  # type: ignore[union-attr]
                    assert frame.sequence == k and verify(frame, base)
            assert reader.stats()["reconnects"] == 1 and reader.metadata is not None
            # Following the restart retired the first segment's mapping: the kept array reads
            # zeros instead of faulting.
            assert int(kept.sum()) == 0
            with pytest.raises(SHMStreamClosedError):
                reader.read(timeout=10)
        rc, out, err = finish(second)
        assert rc == 0, err
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.timeout(90)
def test_sigkill_reader_reported_to_lossless_writer(channel: str) -> None:
    schema = [("rgb", "u8", (24, 32, 3)), ("frame_id", "u64"), ("exposure_us", "f32")]
    with StreamWriter(channel, schema, lossless=True, num_slots=4, metadata=b"{}") as writer:
        consumer = subprocess.Popen([sys.executable, str(EXAMPLES / "stream_consumer.py"), "--name", channel,
                                     "--slow", "100", "--quiet"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=child_env())
        try:
            wait_until(lambda: len(writer.readers()) == 1 or consumer.poll() is not None, 30, "the reader attaches")
            base = base_image((24, 32, 3))
            for k in range(5):  # the consumer takes frame 0, then sleeps: 4 slots fill up
                with writer.loan(timeout=10) as loan:
                    np.add(base, np.uint8(13 * k), out=loan["rgb"])
                    loan["frame_id"][...] = k
            wait_until(lambda: writer.readers()[0]["frames_seen"] == 1, 30, "the reader read frame 0")
            # It asked for another exposure through its control ring.
            wait_until(lambda: bool(writer.poll_control()), 30, "a control message")
            pid = writer.readers()[0]["pid"]
            assert pid == consumer.pid
            with pytest.raises(Exception) as full:
                writer.loan(timeout=0)
            assert "full" in str(full.value)
            os.kill(consumer.pid, signal.SIGKILL)
            consumer.wait(30)
            with pytest.raises(SHMReaderDeadError, match="died"):
                writer.loan(timeout=10)
            with writer.loan(timeout=0) as loan:  # reported once; the writer goes on
                loan["frame_id"][...] = 5
            assert writer.stats()["readers_died"] == 1 and writer.readers() == []
        finally:
            if consumer.poll() is None:
                consumer.kill()
                consumer.wait()


def c_example(c_build: Path, name: str) -> Path:
    path = c_build / "examples" / "c" / name
    assert path.is_file(), f"{name} was not built by meson (looked for {path})"
    return path


@pytest.mark.timeout(90)
def test_c_camera_to_python_reader(c_build: Path, channel: str) -> None:
    frames = 200
    proc = subprocess.Popen([str(c_example(c_build, "stream_camera")), channel, str(frames), "320", "240"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        wrong = [("rgb", "u8", (240, 320, 4)), ("frame_id", "u64"), ("exposure_us", "f32")]
        deadline = time.monotonic() + 30
        while True:  # the schema is checked as soon as the stream exists
            try:
                StreamReader(channel, wrong, timeout_connect=0.1)
            except SHMSchemaError as exc:
                assert "u8[240,320,3]" in str(exc) and "u8[240,320,4]" in str(exc)
                break
            except Exception:
                assert time.monotonic() < deadline
        right = [("rgb", "u8", (240, 320, 3)), ("frame_id", "u64"), ("exposure_us", "f32")]
        with StreamReader(channel, right, timeout_connect=30) as reader:
            assert b'"width": 320' in reader.wait_metadata(10)
            reader.send_control(1, np.float32(1234.0).tobytes())
            base = base_image((240, 320, 3))
            got = []
            exposures = set()
            for frame in reader:
                assert verify(frame, base), f"frame {frame.sequence} is wrong"
                exposures.add(float(frame["exposure_us"]))
                got.append(frame.sequence)
        rc, out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, err
    assert got == list(range(frames))
    assert "set exposure 1234 us" in out and 1234.0 in exposures


@pytest.mark.timeout(90)
def test_python_writer_to_c_reader(c_build: Path, channel: str) -> None:
    frames = 200
    schema = [("rgb", "u8", (120, 160, 3)), ("frame_id", "u64"), ("exposure_us", "f32")]
    with StreamWriter(channel, schema, lossless=True, metadata=b'{"from": "python"}') as writer:
        proc = subprocess.Popen([str(c_example(c_build, "stream_reader")), channel, str(frames)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
        try:
            wait_until(lambda: len(writer.readers()) == 1 or proc.poll() is not None, 30, "stream_reader attaches")
            base = base_image((120, 160, 3))
            for k in range(frames):
                writer.write({"rgb": base + np.uint8(13 * k % 256), "frame_id": np.uint64(k),
                              "exposure_us": np.float32(0)}, timeout=10)
            rc, out, err = finish(proc)
            control = writer.poll_control()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert rc == 0, err
    assert f"stream_reader: {frames} frames verified, dropped 0" in out
    assert 'metadata {"from": "python"}' in out
    assert [(m.type, np.frombuffer(m.data, np.float32)[0]) for m in control] == [(1, 2500.0)]


@pytest.mark.timeout(60)
def test_examples_help_and_missing_camera(channel: str) -> None:
    for script in ("stream_camera.py", "stream_consumer.py"):
        proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--help"], capture_output=True, text=True,
                              timeout=60, env=child_env())
        assert proc.returncode == 0 and "--name" in proc.stdout
    proc = subprocess.run([sys.executable, str(EXAMPLES / "stream_consumer.py"), "--name", channel, "--wait",
                           "0.2"], capture_output=True, text=True, timeout=60, env=child_env())
    assert proc.returncode == 2 and "start the StreamWriter first" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_camera_and_consumer_examples_with_control(channel: str) -> None:
    camera_proc = camera(channel, "--frames", "60", "--fps", "200", "--width", "64", "--height", "48",
                         "--lossless", "--readers", "1", "--wait", "30")
    consumer = subprocess.run([sys.executable, str(EXAMPLES / "stream_consumer.py"), "--name", channel,
                               "--wait", "30"], capture_output=True, text=True, timeout=90, env=child_env())
    rc, out, err = finish(camera_proc)
    assert rc == 0, err
    assert consumer.returncode == 0, consumer.stderr
    assert re.search(r"set exposure 2500 us", out)
    assert "consumer: done, received=60 verified=60 dropped=0 in_order=True last=59" in consumer.stdout
    assert "'fx': 600.0" in consumer.stdout
