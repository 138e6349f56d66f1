"""Share numpy arrays (camera-like frames) between processes, received without a copy.

    # terminal 1
    python examples/numpy_sharing.py subscriber
    # terminal 2
    python examples/numpy_sharing.py publisher

The publisher first sends a small description of the frames (shape, dtype, count) as an ordinary
pickled message, then each frame with ``send_bytes(array)`` (one copy, straight from the array's
memory into shared memory). The channel is lossless: the publisher waits for the subscriber instead
of overwriting a frame it has not read yet.

The subscriber reads each frame with ``recv_view()``: ``view.numpy(dtype, shape)`` is an array
*inside* the shared memory, no copy at all. It stays valid until the view is released (the end of the
``with`` block), so use it there, or copy what you keep (``array.copy()``).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from shmcomm import Publisher, SHMError, Subscriber


def make_frame(index: int, shape: tuple) -> np.ndarray:
    """A frame whose every pixel depends on its position and on the frame index (so a frame that
    arrived wrong, or mixed with another one, is noticed)."""
    height, width, channels = shape
    rows = np.arange(height, dtype=np.uint16).reshape(height, 1, 1)
    cols = np.arange(width, dtype=np.uint16).reshape(1, width, 1)
    planes = np.arange(channels, dtype=np.uint16).reshape(1, 1, channels)
    return ((rows + 2 * cols + 3 * planes + index) % 256).astype(np.uint8)


def run_publisher(args: argparse.Namespace) -> int:
    shape = (args.height, args.width, 3)
    frame_bytes = int(np.prod(shape))
    with Publisher(args.name, num_slots=8, slot_size=frame_bytes, lossless=True) as pub:
        print(f"publisher: waiting up to {args.wait:g} s for a subscriber on {args.name!r}", flush=True)
        deadline = time.monotonic() + args.wait
        while pub.stats()["subscribers"] == 0:
            if time.monotonic() > deadline:
                print("publisher: no subscriber came", file=sys.stderr)
                return 1
            time.sleep(0.01)
        pub.send({"shape": shape, "dtype": "uint8", "frames": args.frames}, block=True, timeout=args.wait)
        start = time.perf_counter()
        for index in range(args.frames):
            frame = make_frame(index, shape)
            pub.send_bytes(frame, block=True, timeout=args.wait)  # any C-contiguous array
        elapsed = time.perf_counter() - start
        megabytes = args.frames * frame_bytes / 1e6
        print(f"publisher: sent {args.frames} frames of {shape} ({megabytes:.1f} MB) in {elapsed:.3f} s",
              flush=True)
    return 0


def check_frame(frame: np.ndarray, index: int) -> bool:
    # frame is a read-only array inside shared memory: compare it in place, no copy.
    return bool(np.array_equal(frame, make_frame(index, frame.shape)))


def run_subscriber(args: argparse.Namespace) -> int:
    with Subscriber(args.name, timeout_connect=args.wait) as sub:
        meta = sub.recv(timeout=args.wait)
        if meta is None:
            print("subscriber: no frame description came", file=sys.stderr)
            return 1
        shape, dtype, frames = tuple(meta["shape"]), np.dtype(meta["dtype"]), meta["frames"]
        print(f"subscriber: expecting {frames} frames of {shape} {dtype}", flush=True)
        intact = 0
        for index in range(frames):
            view = sub.recv_view(timeout=args.wait)
            if view is None:
                print(f"subscriber: frame {index} did not come", file=sys.stderr)
                return 1
            with view:  # releases the slot at the end of the block
                frame = view.numpy(dtype, shape)  # zero copy: a view of the shared memory
                ok = check_frame(frame, index)
                mean = float(frame.mean())
                del frame  # the array must not outlive the view
            intact += ok
            print(f"subscriber: frame {index} {'ok' if ok else 'CORRUPT'} mean={mean:.2f}", flush=True)
        print(f"subscriber: done, {intact}/{frames} frames intact", flush=True)
        return 0 if intact == frames else 1


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["publisher", "subscriber"])
    parser.add_argument("--name", default="examples/frames", help="channel name")
    parser.add_argument("--frames", type=int, default=100, help="frames to send")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the other side")
    args = parser.parse_args(argv)
    try:
        return run_publisher(args) if args.mode == "publisher" else run_subscriber(args)
    except SHMError as exc:  # every shmcomm error says what happened and what to do
        print(f"{args.mode}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
