#!/usr/bin/env python3
"""A synthetic camera: streams RGB frames into shared memory with a StreamWriter, written in place.

    python examples/stream_camera.py --name cam --frames 300 --fps 30 --width 640 --height 480
    python examples/stream_consumer.py --name cam          # in another terminal

Frame k's pixels are a test pattern a reader can check (byte i of the image is (i + 13 k) mod 256),
its ``frame_id`` field is k, and the camera's intrinsics go into the stream's write-once metadata as
JSON. Readers may send control messages back: type 1 with a float32 sets the exposure, which the
camera then stamps into each frame's ``exposure_us`` field.

--lossless waits for the slowest reader (every reader gets every frame); the default never waits and
readers take the latest frame. --readers N waits (up to --wait seconds) for N readers before the first
frame; at the end the camera waits until its readers have read every frame (or left), then closes
the stream, which they see as its end.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time

import numpy as np

from shmcomm import SHMReaderDeadError, SHMTimeoutError, StreamWriter

SET_EXPOSURE = 1


def pattern(height: int, width: int) -> np.ndarray:
    """Frame 0's image; frame k is this plus 13 k (mod 256)."""
    return (np.arange(height * width * 3, dtype=np.uint32) % 256).astype(np.uint8).reshape(height, width, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="camera/front")
    parser.add_argument("--frames", type=int, default=300, help="frames to write (default 300)")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate; 0 = as fast as possible")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--lossless", action="store_true", help="every reader gets every frame")
    parser.add_argument("--readers", type=int, default=0, help="wait for this many readers first")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for readers (start and end)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    schema = [("rgb", "u8", (args.height, args.width, 3)), ("frame_id", "u64"), ("exposure_us", "f32")]
    intrinsics = {"width": args.width, "height": args.height, "fx": 600.0, "fy": 600.0,
                  "cx": args.width / 2, "cy": args.height / 2, "encoding": "rgb8"}
    base = pattern(args.height, args.width)
    exposure = 1000.0
    with StreamWriter(args.name, schema, lossless=args.lossless, metadata=json.dumps(intrinsics),
                      num_slots=8 if args.lossless else None) as cam:
        print(f"camera: streaming {args.frames} frames of {args.width}x{args.height} to {args.name!r} "
              f"({'lossless' if args.lossless else 'latest-frame'})", flush=True)
        deadline = time.monotonic() + args.wait
        while len(cam.readers()) < args.readers:
            if time.monotonic() > deadline:
                print(f"camera: only {len(cam.readers())} of {args.readers} readers came", file=sys.stderr)
                return 1
            time.sleep(0.005)
        start = time.monotonic()
        k = 0  # the frame's number, which is also its sequence number in the stream
        while k < args.frames:
            for msg in cam.poll_control():
                if msg.type == SET_EXPOSURE and len(msg.data) == 4:
                    exposure = struct.unpack("<f", msg.data)[0]
                    print(f"camera: reader {msg.reader_id} (pid {msg.pid}) set exposure {exposure:.0f} us",
                          flush=True)
            try:
                # Latest-frame mode never waits for readers: timeout 0 would raise if it had to.
                with cam.loan(timeout=args.wait if args.lossless else 0) as frame:  # in place
                    np.add(base, np.uint8(13 * k % 256), out=frame["rgb"])
                    frame["frame_id"][...] = k
                    frame["exposure_us"][...] = exposure
            except SHMTimeoutError:
                print(f"camera: no reader released a frame for {args.wait} s; stopping", file=sys.stderr)
                return 1
            except SHMReaderDeadError as exc:  # lossless: a reader died; the next frame goes on
                print(f"camera: {exc}", flush=True)
                continue
            if not args.quiet and k % 100 == 0:
                print(f"camera: frame {k}", flush=True)
            k += 1
            if args.fps > 0:
                pause = start + k / args.fps - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        elapsed = time.monotonic() - start
        # Let the readers finish before the stream closes (they see its end once they have read it all).
        deadline = time.monotonic() + args.wait
        while any(r["alive"] and r["last_seq"] != args.frames - 1 for r in cam.readers()):
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        print(f"camera: done, {args.frames} frames in {elapsed:.2f} s ({args.frames / elapsed:.1f} fps), "
              f"stats {cam.stats()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
