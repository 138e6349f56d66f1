#!/usr/bin/env python3
"""A numpy consumer of a camera stream: reads frames in place (no copy) and checks each one.

    python examples/stream_camera.py --name cam --frames 300 &
    python examples/stream_consumer.py --name cam

Every frame's image is compared in full with the test pattern of examples/stream_camera.py (byte i is
(i + 13 k) mod 256 for frame k) and its ``frame_id`` with its sequence number. It reads every frame in
order (the default) or only the newest one (--latest, with --slow seconds of "processing" per frame,
to watch frames being skipped), asks the camera for another exposure through a control message, and
stops at the end of the stream (or after --frames frames).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time

import numpy as np

from shmcomm import SHMConnectionError, SHMError, StreamReader

SET_EXPOSURE = 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="camera/front")
    parser.add_argument("--frames", type=int, default=0, help="stop after this many frames (0: at the end)")
    parser.add_argument("--latest", action="store_true", help="read only the newest frame each time")
    parser.add_argument("--slow", type=float, default=0.0, help="seconds of pretend work per frame")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the camera / a frame")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    try:
        reader = StreamReader(args.name, timeout_connect=args.wait)
    except SHMConnectionError as exc:
        print(f"consumer: {exc}", file=sys.stderr)
        return 2
    with reader:
        intrinsics = json.loads(reader.wait_metadata(args.wait))
        shape = reader.schema[0].shape
        print(f"consumer: {args.name!r} streams {shape} frames, intrinsics {intrinsics}", flush=True)
        reader.send_control(SET_EXPOSURE, struct.pack("<f", 2500.0))
        base = (np.arange(int(np.prod(shape)), dtype=np.uint32) % 256).astype(np.uint8).reshape(shape)
        received = verified = 0
        previous = -1
        in_order = True
        start = time.monotonic()
        while not args.frames or received < args.frames:
            try:
                frame = reader.latest(timeout=args.wait) if args.latest else reader.read(timeout=args.wait)
            except SHMError as exc:  # the end of the stream, or the camera died
                print(f"consumer: {type(exc).__name__}: {exc}", flush=True)
                break
            if frame is None:
                print(f"consumer: no frame for {args.wait} s", file=sys.stderr)
                return 3
            with frame:
                k = frame.sequence
                image = frame["rgb"]  # a read-only view of shared memory
                ok = int(frame["frame_id"]) == k and np.array_equal(image, base + np.uint8(13 * k % 256))
                exposure = float(frame["exposure_us"])
            received += 1
            verified += ok
            in_order = in_order and k > previous
            previous = k
            if not args.quiet and (received % 100 == 1 or not ok):
                print(f"consumer: frame {k} {'ok' if ok else 'CORRUPT'} exposure={exposure:.0f}us "
                      f"dropped={frame.dropped}", flush=True)
            if args.slow:
                time.sleep(args.slow)
        elapsed = time.monotonic() - start
        stats = reader.stats()
        print(f"consumer: done, received={received} verified={verified} dropped={stats['dropped']} "
              f"in_order={in_order} last={previous} ({received / max(elapsed, 1e-9):.1f} fps)", flush=True)
    return 0 if verified == received else 1


if __name__ == "__main__":
    sys.exit(main())
