"""``python -m shmcomm demo``: this process publishes, subscriber processes receive and measure.

Phase 1, throughput: raw 64-byte messages carrying a sequence number, lossless, checked in order.
Phase 2, latency: pickled pose dicts stamped with CLOCK_MONOTONIC (shared by all processes) at about
2 kHz; each subscriber reports the one-way latency it saw.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import struct
import time
from typing import Any, Dict, List

from .pubsub import Publisher, Subscriber

SEQ = struct.Struct("<Q")


def _subscriber(name: str, index: int, messages: int, poses: int, ready: Any, results: Any) -> None:
    result: Dict[str, Any] = {"index": index, "pid": os.getpid()}
    try:
        with Subscriber(name, timeout_connect=10.0, spin_us=200) as sub:
            ready.put(index)
            expected, out_of_order = 0, 0
            buf = bytearray(64)
            first = sub.recv_into(buf, timeout=10.0)
            start = time.perf_counter()
            if first is not None:
                expected = SEQ.unpack_from(buf)[0] + 1
            for _ in range(messages - 1):
                if sub.recv_into(buf, timeout=10.0) is None:
                    break
                seq = SEQ.unpack_from(buf)[0]
                out_of_order += seq != expected
                expected = seq + 1
            elapsed = time.perf_counter() - start
            result.update(received=expected, out_of_order=out_of_order, rate=(expected - 1) / elapsed)
            latencies: List[int] = []
            for _ in range(poses):
                pose = sub.recv(timeout=10.0)
                if pose is None:
                    break
                latencies.append(time.monotonic_ns() - pose["t_ns"])
            latencies.sort()
            if latencies:
                result["p50_us"] = latencies[len(latencies) // 2] / 1000
                result["p99_us"] = latencies[int(len(latencies) * 0.99)] / 1000
            stats = sub.stats()
            result["dropped"] = stats["dropped"]
    except Exception as exc:  # reported by the parent
        result["error"] = f"{type(exc).__name__}: {exc}"
    results.put(result)


def run_demo(messages: int = 200_000, subscribers: int = 2, poses: int = 2000) -> int:
    name = f"demo/{os.getpid()}"
    ctx = mp.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    print(f"shmcomm demo: 1 publisher (pid {os.getpid()}) -> {subscribers} subscriber processes on {name!r}")
    with Publisher(name, num_slots=1024, slot_size=128, lossless=True) as pub:
        procs = [ctx.Process(target=_subscriber, args=(name, i, messages, poses, ready, results))
                 for i in range(subscribers)]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=30)
        payload = bytearray(64)
        start = time.perf_counter()
        for seq in range(messages):
            SEQ.pack_into(payload, 0, seq)
            pub.send_bytes(payload, block=True, timeout=10.0)
        send_rate = messages / (time.perf_counter() - start)
        for _ in range(poses):
            pub.send({"t_ns": time.monotonic_ns(), "x": 1.0, "y": 2.0, "heading": 0.5}, block=True,
                     timeout=10.0)
            until = time.perf_counter() + 0.0005
            while time.perf_counter() < until:
                pass
        reports = sorted((results.get(timeout=60) for _ in procs), key=lambda r: r["index"])
        for p in procs:
            p.join(timeout=10)

    print(f"publisher: {messages:,} x 64 B sent at {send_rate:,.0f} msg/s (lossless: waits for the slowest)")
    print(f"{'subscriber':>10} {'pid':>7} {'received':>9} {'msg/s':>11} {'in order':>8} {'dropped':>7} "
          f"{'p50 µs':>7} {'p99 µs':>7}")
    ok = True
    for r in reports:
        if "error" in r:
            print(f"{r['index']:>10} {r['pid']:>7}  failed: {r['error']}")
            ok = False
            continue
        in_order = r["out_of_order"] == 0 and r["received"] == messages
        ok &= in_order
        print(f"{r['index']:>10} {r['pid']:>7} {r['received']:>9,} {r['rate']:>11,.0f} "
              f"{'yes' if in_order else 'NO':>8} {r['dropped']:>7} {r.get('p50_us', float('nan')):>7.1f} "
              f"{r.get('p99_us', float('nan')):>7.1f}")
    print("latency: one-way, pickled pose dict, blocking receive, publisher paced at ~2 kHz")
    return 0 if ok else 1
