#!/usr/bin/env python3
"""Frames (1 MiB by default) against the depth of the channel: shmcomm and iceoryx2 side by side.

The suite measures frames at one depth (suite.FRAME_DEPTH slots or buffers for every library). A
ring reuses its slots in turn, so a writer of depth-d frames of s bytes touches d * s bytes of
destination, plus the source frame: at 1 MiB and depth 4 that is 5 MiB, more than this machine's
caches keep, and every copy goes out to memory. This runs the suite's own frames measurement
(suite.run_python, loops.SuiteAdapter: fresh pinned processes, every sequence number checked) at
several depths, repeats interleaved, and prints medians (min-max) with the same-depth ratio.

Run: SHMCOMM_LIBRARY=... PYTHONPATH=python python benchmarks/experiments/frame_depth.py
     [--depths 2,4,8] [--variants one-copy,zero-copy] [--size-kib 1024] [--repeats 3] [--json FILE]
To compare two builds of shmcomm, run it once per build (SHMCOMM_LIBRARY and PYTHONPATH of each).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import suite  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depths", default="2,4,8")
    ap.add_argument("--variants", default="one-copy,zero-copy")
    ap.add_argument("--libs", default="shmcomm,iceoryx2")
    ap.add_argument("--size-kib", type=int, default=1024, help="frame size in KiB (default 1024)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=1.5)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    depths = [int(x) for x in args.depths.split(",")]
    variants, libs = args.variants.split(","), args.libs.split(",")
    size = args.size_kib * 1024
    label = f"{args.size_kib // 1024} MiB" if args.size_kib % 1024 == 0 else f"{args.size_kib} KiB"
    p = suite.params(False, args.duration, 10.0, [0, 1], args.repeats)
    ctx = mp.get_context("forkserver")
    rates: dict = {}
    try:
        for rep in range(args.repeats):
            for depth in depths:
                for variant in variants:
                    for lib in libs:
                        m = {"group": "frames", "case": label, "lib": lib, "variant": variant,
                             "kind": "frames", "size": size, "depth": depth}
                        r = suite.run_python(ctx, m, p)
                        if not r.get("ok"):
                            print(f"{lib} {variant} depth {depth}: {r.get('error')}", file=sys.stderr)
                            continue
                        rates.setdefault((depth, variant, lib), []).append(r["frames_per_s"])
                        print(f"[{rep + 1}/{args.repeats}] depth {depth} {variant} {lib}: "
                              f"{r['frames_per_s']:,.0f} frames/s", file=sys.stderr)
    finally:
        shutil.rmtree(p["ipc_dir"], ignore_errors=True)
        suite.cleanup_segments()
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\n1 frame = {label}; frames/s, median of {args.repeats} (min-max); "
          f"ratio = {libs[0]} / {libs[-1]} at the same depth\n")
    print("| depth | path | " + " | ".join(libs) + " | ratio |")
    print("|---:|---|" + "---:|" * len(libs) + "---:|")
    for depth in depths:
        for variant in variants:
            cells = []
            for lib in libs:
                v = rates.get((depth, variant, lib))
                cells.append(f"{med[(depth, variant, lib)]:,.0f} ({min(v):,.0f}–{max(v):,.0f})" if v else "–")
            a, b = med.get((depth, variant, libs[0])), med.get((depth, variant, libs[-1]))
            print(f"| {depth} | {variant} | " + " | ".join(cells) + f" | {a / b:.2f} |" if a and b else " | – |")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"size": size, "repeats": args.repeats,
             "frames_per_s": [{"depth": d, "variant": v, "lib": lib, "repeats": x} for (d, v, lib), x in rates.items()]},
            indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
