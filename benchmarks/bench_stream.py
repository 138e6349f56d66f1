#!/usr/bin/env python3
"""Frame streaming benchmark: shmcomm STREAM vs ZeroBuffer (zerobuffer-ipc), SHMX and pyzmq, for 1 MiB
and 6 MiB (1080p RGB) frames, in one run, with the machine's single-thread memcpy bandwidth measured
in the same run as the yardstick.

Two processes (pinned to different cores when there are two): a writer sends N frames as fast as the
library allows, a reader receives them, checks the sequence number stamped in each frame's first 8
bytes, and reports frames/s from its first to its last frame. Paths:

* one-copy: the writer copies a prepared frame (a numpy array) into the library (shmcomm
  ``StreamWriter.write``, ZeroBuffer ``write_frame``, SHMX ``append_stream``, zmq ``send``); the reader
  looks at it in place (shmcomm ``read``, ZeroBuffer ``read_frame``, SHMX ``get_latest_frame``, zmq
  ``recv(copy=False)``).
* zero-copy: the writer writes the frame in place and touches only its first 8 bytes (shmcomm
  ``loan``/``commit``, ZeroBuffer ``get_frame_buffer``/``commit_frame``); the reader as above. This is
  the cost of the library itself, per frame.

Every library runs lossless (every frame reaches the reader; lost or reordered frames fail the run)
except SHMX, which only has latest-frame reading: its row is the writer's publish rate, with the
number of distinct frames its reader saw. Medians of --repeats runs.

    python benchmarks/bench_stream.py                       # everything, 3 repeats
    python benchmarks/bench_stream.py --sizes 6 --repeats 5 --libs shmcomm,zerobuffer
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import struct
import sys
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

MIB = 1 << 20
SEQ = struct.Struct("<Q")
CTX = mp.get_context("spawn")
LIBS = ("shmcomm", "zerobuffer", "shmx", "zmq")
PATHS = {"shmcomm": ("one-copy", "zero-copy"), "zerobuffer": ("one-copy", "zero-copy"),
         "shmx": ("one-copy",), "zmq": ("one-copy",)}
LABEL = {"shmcomm": "shmcomm STREAM", "zerobuffer": "ZeroBuffer", "shmx": "SHMX", "zmq": "pyzmq ipc://"}
TIMEOUT = 20.0


def pin(core: int) -> None:
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) >= 2:
        os.sched_setaffinity(0, {cores[core % len(cores)]})


def frame_source(size: int) -> Any:
    import numpy as np

    return (np.arange(size, dtype=np.uint32) % 251).astype(np.uint8)


def memcpy_gbps(size: int, seconds: float = 0.3) -> float:
    """Single-thread memcpy bandwidth for frames of `size` bytes, as a ring writes them: numpy copyto
    of one source frame into 8 destination frames in turn (the working set of an 8-slot ring), warm.
    Measured by every writer on its own core just before it streams, so the yardstick shares the
    run's conditions (machine load included)."""
    import numpy as np

    src = frame_source(size)
    dsts = [np.empty(size, np.uint8) for _ in range(8)]
    for d in dsts:
        np.copyto(d, src)
    samples = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end or len(samples) < 5:
        t0 = time.perf_counter()
        for _ in range(8):
            np.copyto(dsts[i % 8], src)
            i += 1
        samples.append(8 * size / (time.perf_counter() - t0) / 1e9)
    return statistics.median(samples)


# ---- workers: each returns a result dict; the reader's has count, t_first, t_last ------------------

def shmcomm_writer(name: str, size: int, frames: int, path: str, ready: Any, go: Any) -> Dict[str, Any]:
    copy = memcpy_gbps(size)
    import numpy as np
    from shmcomm import StreamWriter

    src = frame_source(size)
    stamp = src[:8].view(np.uint64)
    with StreamWriter(name, [("data", "u8", size)], lossless=True, num_slots=8, max_readers=1) as w:
        ready.set()
        go.wait(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while not w.readers():
            if time.monotonic() > deadline:
                raise TimeoutError("no reader")
            time.sleep(0.001)
        t0 = time.perf_counter()
        if path == "one-copy":
            write = w.write
            arrays = {"data": src}
            for seq in range(frames):
                stamp[0] = seq
                write(arrays, timeout=TIMEOUT)
        else:
            loan = w.loan
            for seq in range(frames):
                frame = loan(timeout=TIMEOUT)
                frame["data"][:8].view(np.uint64)[0] = seq
                frame.commit()
        t1 = time.perf_counter()
        deadline = time.monotonic() + TIMEOUT
        # Until the reader has seen every frame, or has left (one call: it may leave between two).
        while time.monotonic() < deadline:
            readers = w.readers()
            if not readers or readers[0]["frames_seen"] >= frames:
                break
            time.sleep(0.001)
    return {"writer_s": t1 - t0, "memcpy_gbps": copy}


def shmcomm_reader(name: str, size: int, frames: int, path: str, ready: Any, go: Any) -> Dict[str, Any]:
    import numpy as np
    from shmcomm import StreamReader

    ready.wait(TIMEOUT)
    with StreamReader(name, timeout_connect=TIMEOUT, spin_us=int(os.environ.get("BENCH_SPIN_US", "50"))) as r:
        go.set()
        read = r.read
        bad = 0
        t_first = 0.0
        for seq in range(frames):
            frame = read(timeout=TIMEOUT)
            if frame is None:
                raise TimeoutError(f"frame {seq} never came")
            if seq == 0:
                t_first = time.perf_counter()
            got = int(frame["data"][:8].view(np.uint64)[0])
            bad += got != seq
            frame.release()
        t_last = time.perf_counter()
    return {"count": frames, "bad": bad, "t_first": t_first, "t_last": t_last}


def zerobuffer_writer(name: str, size: int, frames: int, path: str, ready: Any, go: Any) -> Dict[str, Any]:
    copy = memcpy_gbps(size)
    import numpy as np
    from zerobuffer import Writer

    src = frame_source(size)
    stamp = src[:8].view(np.uint64)
    data = memoryview(src)
    ready.wait(TIMEOUT)  # the ZeroBuffer reader creates the buffer
    with Writer(name) as w:
        go.set()
        t0 = time.perf_counter()
        if path == "one-copy":
            write = w.write_frame
            for seq in range(frames):
                stamp[0] = seq
                write(data)
        else:
            get, commit = w.get_frame_buffer, w.commit_frame
            for seq in range(frames):
                buf = get(size)
                buf[:8] = SEQ.pack(seq)
                commit()
        t1 = time.perf_counter()
        time.sleep(0.5)  # let the reader finish before the writer disconnects
    return {"writer_s": t1 - t0, "memcpy_gbps": copy}


def zerobuffer_reader(name: str, size: int, frames: int, path: str, ready: Any, go: Any) -> Dict[str, Any]:
    from zerobuffer import BufferConfig, Reader

    with Reader(name, BufferConfig(metadata_size=1024, payload_size=8 * (size + 64))) as r:
        ready.set()
        go.wait(TIMEOUT)
        bad = 0
        t_first = 0.0
        for seq in range(frames):
            frame = r.read_frame(timeout=TIMEOUT)
            if frame is None:
                raise TimeoutError(f"frame {seq} never came")
            if seq == 0:
                t_first = time.perf_counter()
            bad += SEQ.unpack_from(frame.data)[0] != seq
            r.release_frame(frame)
        t_last = time.perf_counter()
    return {"count": frames, "bad": bad, "t_first": t_first, "t_last": t_last}


def shmx_writer(name: str, size: int, frames: int, path: str, ready: Any, go: Any) -> Dict[str, Any]:
    copy = memcpy_gbps(size)
    import shmx

    # SHMX's append_stream takes only `bytes`: one prepared object is sent every time (its best case:
    # no per-frame bytes object), with the sequence number in a second, 8-byte stream.
    payload = frame_source(size).tobytes()
    server = shmx.Server()
    specs = [shmx.create_stream_spec(1, "data", shmx.DT_U8, 1, 1), shmx.create_stream_spec(2, "seq", shmx.DT_U64, 1, 8)]
    if not server.create(name, slots=8, reader_slots=4, frame_bytes_cap=size + 4096, streams=specs):
        raise RuntimeError("shmx: create failed")
    try:
        ready.set()
        go.wait(TIMEOUT)
        t0 = time.perf_counter()
        for seq in range(frames):
            frame = server.begin_frame()
            server.append_stream(frame, 1, payload, size)
            server.append_stream(frame, 2, SEQ.pack(seq), 1)
            server.publish_frame(frame, float(seq))
        t1 = time.perf_counter()
        time.sleep(0.3)
    finally:
        server.destroy()
    return {"writer_s": t1 - t0, "memcpy_gbps": copy}


def shmx_reader(name: str, size: int, frames: int, path: str, ready: Any, go: Any) -> Dict[str, Any]:
    import shmx

    ready.wait(TIMEOUT)
    client = shmx.Client()
    deadline = time.monotonic() + TIMEOUT
    while not client.open(name):
        if time.monotonic() > deadline:
            raise TimeoutError("shmx: cannot open")
        time.sleep(0.001)
    go.set()
    seen = 0
    last = -1
    deadline = time.monotonic() + TIMEOUT
    while last < frames - 1 and time.monotonic() < deadline:
        frame = client.get_latest_frame()
        if frame is None:
            continue
        seq = SEQ.unpack_from(frame["seq"]["data"])[0]
        if seq != last:
            seen += 1
            last = seq
    client.close()
    return {"distinct": seen, "last": last}


def zmq_writer(name: str, size: int, frames: int, path: str, ready: Any, go: Any) -> Dict[str, Any]:
    copy = memcpy_gbps(size)
    import numpy as np
    import zmq

    src = frame_source(size)
    stamp = src[:8].view(np.uint64)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 8)
    sock.bind(f"ipc://{name}")
    ready.set()
    go.wait(TIMEOUT)
    t0 = time.perf_counter()
    for seq in range(frames):
        stamp[0] = seq
        sock.send(src, copy=True)  # the frame is reused: zmq must copy it (as every one-copy path)
    t1 = time.perf_counter()
    time.sleep(0.3)
    sock.close(linger=5000)
    ctx.term()
    return {"writer_s": t1 - t0, "memcpy_gbps": copy}


def zmq_reader(name: str, size: int, frames: int, path: str, ready: Any, go: Any) -> Dict[str, Any]:
    import zmq

    ready.wait(TIMEOUT)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, 8)
    sock.setsockopt(zmq.RCVTIMEO, int(TIMEOUT * 1000))
    sock.connect(f"ipc://{name}")
    go.set()
    bad = 0
    t_first = 0.0
    for seq in range(frames):
        msg = sock.recv(copy=False)
        if seq == 0:
            t_first = time.perf_counter()
        bad += SEQ.unpack_from(msg.buffer)[0] != seq
    t_last = time.perf_counter()
    sock.close()
    ctx.term()
    return {"count": frames, "bad": bad, "t_first": t_first, "t_last": t_last}


WORKERS: Dict[str, Tuple[Callable[..., Dict[str, Any]], Callable[..., Dict[str, Any]]]] = {
    "shmcomm": (shmcomm_writer, shmcomm_reader),
    "zerobuffer": (zerobuffer_writer, zerobuffer_reader),
    "shmx": (shmx_writer, shmx_reader),
    "zmq": (zmq_writer, zmq_reader),
}


def _run(fn: Callable[..., Dict[str, Any]], core: int, out: Any, *args: Any) -> None:
    try:
        pin(core)
        out.put(fn(*args))
    except BaseException:
        out.put({"error": traceback.format_exc()})


def leftovers(name: str) -> None:
    """Removes what a run leaves behind: SHMX keeps its segment after destroy(), ZeroBuffer its named
    semaphores, pyzmq its ipc:// socket file (shmcomm unlinks its own segment at close)."""
    base = name.rsplit("/", 1)[-1]
    for path in (f"/dev/shm/{base}", f"/dev/shm/sem.sem-r-{base}", f"/dev/shm/sem.sem-w-{base}", name):
        if "bench-stream" in path:
            try:
                os.unlink(path)
            except OSError:
                pass


def run_once(lib: str, path: str, size: int, frames: int, tag: str) -> Dict[str, Any]:
    name = {"shmcomm": f"bench/stream/{os.getpid()}/{tag}", "zmq": f"/tmp/bench-stream-{os.getpid()}-{tag}"}.get(
        lib, f"bench-stream-{os.getpid()}-{tag}")
    ready, go = CTX.Event(), CTX.Event()
    wq, rq = CTX.Queue(), CTX.Queue()
    writer_fn, reader_fn = WORKERS[lib]
    writer = CTX.Process(target=_run, args=(writer_fn, 0, wq, name, size, frames, path, ready, go))
    reader = CTX.Process(target=_run, args=(reader_fn, 1, rq, name, size, frames, path, ready, go))
    reader.start()
    writer.start()
    try:
        w = wq.get(timeout=TIMEOUT * 3)
        r = rq.get(timeout=TIMEOUT * 3)
    finally:
        for p in (writer, reader):
            p.join(TIMEOUT)
            if p.exitcode is None:
                p.kill()
                p.join()
        leftovers(name)
    for side, result in (("writer", w), ("reader", r)):
        if "error" in result:
            raise RuntimeError(f"{lib} {path} {side} failed:\n{result['error']}")
    if lib == "shmx":
        rate = frames / w["writer_s"]
        return {"fps": rate, "memcpy_gbps": w["memcpy_gbps"],
                "note": f"latest-frame: reader saw {r['distinct']} of {frames} frames"}
    if r["bad"]:
        raise RuntimeError(f"{lib} {path}: {r['bad']} frames out of order or lost")
    return {"fps": (r["count"] - 1) / (r["t_last"] - r["t_first"]), "memcpy_gbps": w["memcpy_gbps"]}


def available(lib: str) -> Optional[str]:
    module = {"shmcomm": "shmcomm", "zerobuffer": "zerobuffer", "shmx": "shmx", "zmq": "zmq"}[lib]
    try:
        __import__(module)
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def version(lib: str) -> str:
    from importlib import metadata

    dist = {"shmcomm": "shmcomm", "zerobuffer": "zerobuffer-ipc", "shmx": "shmx", "zmq": "pyzmq"}[lib]
    try:
        return metadata.version(dist)
    except Exception:
        if lib == "shmcomm":
            import shmcomm

            return shmcomm.__version__ + " (source tree)"
        return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,6", help="frame sizes in MiB, comma-separated (default 1,6)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bytes", type=int, default=1536, help="MiB per run per size (frames = this / size)")
    parser.add_argument("--libs", default=",".join(LIBS))
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--report", help="print the table of an earlier --json file and exit")
    args = parser.parse_args()
    if args.report:
        with open(args.report) as f:
            print(report(json.load(f)["results"]))
        return 0
    sizes = [int(float(s) * MIB) for s in args.sizes.split(",")]
    libs = [lib for lib in args.libs.split(",") if lib]
    skipped = {lib: why for lib in libs if (why := available(lib))}

    print(f"# bench_stream: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.platform()}")
    print("# " + ", ".join(f"{LABEL[lib]} {version(lib)}" for lib in libs if lib not in skipped))
    for lib, why in skipped.items():
        print(f"# skipped {LABEL[lib]}: {why}")
    results: List[Dict[str, Any]] = []
    for size in sizes:
        frames = max(50, args.bytes * MIB // size)
        copies: List[float] = []
        first = len(results)
        for lib in libs:
            if lib in skipped:
                continue
            for path in PATHS[lib]:
                runs, ratios, notes = [], [], []
                for rep in range(args.repeats):
                    try:
                        r = run_once(lib, path, size, frames, f"{lib}-{path}-{size}-{rep}")
                    except Exception as exc:
                        notes.append(str(exc).splitlines()[-1])
                        continue
                    runs.append(r["fps"])
                    copies.append(r["memcpy_gbps"])
                    ratios.append(r["fps"] * size / 1e9 / r["memcpy_gbps"])
                    if "note" in r:
                        notes.append(r["note"])
                fps = statistics.median(runs) if runs else 0.0
                results.append({"lib": lib, "path": path, "size": size, "fps": fps, "gbps": fps * size / 1e9,
                                "vs_memcpy": statistics.median(ratios) if ratios else 0.0,
                                "runs": runs, "notes": notes[-1:] if notes else []})
                print(f"#   {LABEL[lib]:<15} {path:<10} {size / MIB:g} MiB: {fps:9.1f} frames/s "
                      f"{fps * size / 1e9:6.2f} GB/s  {notes[-1] if notes else ''}", flush=True)
        copy = statistics.median(copies) if copies else 0.0
        results.insert(first, {"lib": "memcpy", "path": "single thread", "size": size, "fps": copy * 1e9 / size,
                               "gbps": copy, "vs_memcpy": 1.0})
    print()
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "skipped": skipped}, f, indent=2)
    return 0


def report(results: List[Dict[str, Any]]) -> str:
    lines = ["| frame | library | path | frames/s | GB/s | vs memcpy (same run) | vs ZeroBuffer (same path) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in results:
        size = r["size"]
        zb = next((x for x in results if x["lib"] == "zerobuffer" and x["size"] == size and x["path"] == r["path"]),
                  None)
        copy = next(x for x in results if x["lib"] == "memcpy" and x["size"] == size)
        # median GB/s over the median of the memcpy bandwidths every writer measured in this run
        vs_copy = f"{r['gbps'] / copy['gbps']:.2f}x" if r["lib"] != "memcpy" and r["fps"] and copy["gbps"] else ""
        vs_zb = f"{r['fps'] / zb['fps']:.1f}x" if zb and zb["fps"] and r["lib"] != "zerobuffer" and r["fps"] else ""
        label = "memcpy (1 thread)" if r["lib"] == "memcpy" else LABEL[r["lib"]]
        note = f" ({r['notes'][0]})" if r.get("notes") else ""
        fps = f"{r['fps']:.0f}" if r["fps"] else "failed"
        lines.append(f"| {size / MIB:g} MiB | {label} | {r['path']}{note} | {fps} | {r['gbps']:.2f} | "
                     f"{vs_copy} | {vs_zb} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
