#!/usr/bin/env python3
"""The shmcomm benchmark suite: every workload, shmcomm and its peers measured in one run, with the
hardware floors, as Markdown, JSON and PNG charts (also ``python -m shmcomm bench``).

Workloads (--only, comma-separated):
  floors      C: one-way latency over one shared cache line (and two), memcpy bandwidth of 1 and 6 MiB
  c           shmcomm C to C, 64 B: ping-pong latency (busy, blocking), throughput (single, batch);
              also on SHMC_SINGLE_WRITER channels ("-sw": busy-sw, single-sw, batch-sw)
  latency     Python ping-pong one-way latency, 64 B, 4 KiB and a pickled small dict, busy-wait and
              blocking receive (shmcomm also "futex": spin_us=0, every wait sleeps)
  idle        CPU used by a receiver blocked for one second with nothing to receive
  throughput  64 B one-way, lossless, single calls and batch calls (lists; and for shmcomm "packed":
              send_packed/recv_packed records on a single_writer channel)
  frames      1 MiB and 6 MiB frames: one-copy, copy-out and zero-copy paths, with and without reading them
  fanout      one publisher, 1, 2 and 4 subscribers (blocking receive), 64 B
  reqrep      REQ/REP round trip, 64 B (bench_reqrep.py's adapters)
  pushpull    PUSH/PULL with 1 and 2 pullers, single and batch calls (bench_pipeline.py's adapters)
  stream      benchmarks/bench_stream.py (STREAM), run as it is when it exists; not in --quick unless named
  pair        benchmarks/bench_pair.py (PAIR), run as it is when it exists; not in --quick unless named

Peers (--libs): pyzmq (ipc:// and tcp://127.0.0.1), multiprocessing.Pipe and Queue, faster-fifo,
iceoryx2, shm-comm, zerobuffer-ipc, each where it supports the workload; a peer that does not import
is skipped with a note. Every measurement starts fresh processes pinned to different cores, checks
every sequence number and reports loss; repeats are interleaved; cells are medians (min–max).
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import shlex
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import _fmt, _fmt_rate, load_average, machine_info, rtt_result, run_group  # noqa: E402
from transports import LABEL, LIBS, library_version, make_queue  # noqa: E402

WORKLOADS = ("floors", "c", "latency", "idle", "throughput", "frames", "fanout", "reqrep", "pushpull", "stream", "pair")
# Scripts of other patterns, run as they are (subprocess) when they exist: their report is included.
EXTERNAL = {"stream": ("bench_stream.py", "STREAM frames"), "pair": ("bench_pair.py", "PAIR")}
MIB = 1 << 20
FRAME_SIZES = (1 * MIB, 6 * MIB)
FRAME_DEPTH = 4  # slots (or buffers) of every library's frame channel
FANOUT = (1, 2, 4)
PAYLOADS = (("64 B", "bytes", 64), ("4 KiB", "bytes", 4096), ("pickled dict", "pickle", 256))

# Which library runs which variant of which workload (absent: not supported, not run).
LATENCY_VARIANTS = {lib: ("busy", "blocking") for lib in LIBS}
LATENCY_VARIANTS["shmcomm"] = ("busy", "blocking", "futex")
STREAM_RX = {"shmcomm": "poll", "zmq-ipc": "poll", "zmq-tcp": "poll", "iceoryx2": "poll", "shm_comm": "poll",
             "fasterfifo": "poll", "pipe": "wait", "mpqueue": "wait", "zerobuffer": "wait"}
STREAM_VARIANTS = {lib: ("single",) for lib in LIBS}
STREAM_VARIANTS["fasterfifo"] = ("single", "batch")
# packed: shmcomm's send_packed/recv_packed, 64-byte records in one numpy buffer per call, on a
# single_writer=True channel (the sender is the channel's only publisher)
STREAM_VARIANTS["shmcomm"] = ("single", "batch", "packed")
# C to C; "-sw": the channels are SHMC_SINGLE_WRITER (one writer each, claims without a locked instruction)
C_LATENCY = ("busy", "blocking", "busy-sw")
C_THROUGHPUT = ("single", "batch", "single-sw", "batch-sw")
# one-copy: the producer copies the frame in, the consumer looks at it in place (the target's "copy
# path", bounded by one memcpy); copy-out: and the consumer copies it into its own buffer;
# zero-copy: the producer writes into a loaned slot (only the sequence number), the consumer looks.
ZC = ("one-copy", "one-copy+read", "copy-out", "zero-copy", "zero-copy+read")
FRAME_VARIANTS = {"shmcomm": ZC, "iceoryx2": ZC, "zerobuffer": ZC, "zmq-ipc": ZC[:3], "pipe": ("copy-out",),
                  "shm_comm": ("copy-out",)}
FANOUT_LIBS = ("shmcomm", "iceoryx2", "zmq-ipc")
IDLE_LIBS = ("shmcomm", "zmq-ipc", "iceoryx2", "pipe", "zerobuffer")
REQREP = (("shmcomm", "blocking"), ("shmcomm", "busy-wait"), ("zmq", "blocking"), ("pipe", "blocking"))
PUSHPULL = (("shmcomm", "single"), ("shmcomm", "batch"), ("mpqueue", "single"), ("fasterfifo", "single"),
            ("fasterfifo", "batch"))
RR_LIB = {"shmcomm": "shmcomm", "zmq": "zmq-ipc", "pipe": "pipe"}


# ---------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------


class Progress:
    """A plain-text progress bar on stderr (one line per measurement), or rich's if installed and
    stderr is a terminal."""

    def __init__(self, total: int, quiet: bool = False):
        self.total, self.done, self.quiet, self.t0 = total, 0, quiet, time.monotonic()
        self.rich = None
        if not quiet and sys.stderr.isatty():
            try:
                from rich.progress import Progress as RichProgress

                self.rich = RichProgress(transient=True)
                self.rich.start()
                self.task = self.rich.add_task("benchmarks", total=total)
            except ImportError:
                self.rich = None

    def step(self, what: str, result: str) -> None:
        self.done += 1
        if self.quiet:
            return
        if self.rich is not None:
            self.rich.update(self.task, advance=1, description=what[:50])
            self.rich.console.print(f"{what}: {result}")
            return
        width = 24
        filled = int(width * self.done / max(1, self.total))
        bar = "#" * filled + "." * (width - filled)
        el = time.monotonic() - self.t0
        print(f"[{bar}] {self.done:>3}/{self.total} {el:5.0f} s  {what}: {result}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.rich is not None:
            self.rich.stop()


# ---------------------------------------------------------------------------------------------
# One measurement
# ---------------------------------------------------------------------------------------------


def _free_ports(n: int) -> list:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def run_python(ctx, m: dict, p: dict) -> dict:
    """One measurement of loops.SuiteAdapter: fresh processes, pinned, synchronised; never raises."""
    from loops import SuiteAdapter

    kind, lib = m["kind"], m["lib"]
    w = {"kind": kind, "lib": lib, "size": m["size"], "payload": m.get("payload", "bytes"),
         "lossless": m.get("lossless", True), "blocking": m["variant"] in ("blocking", "futex") or kind in ("fanout", "idle"),
         "spin_us": 0 if m["variant"] == "futex" else 50, "rx": STREAM_RX.get(lib), "fanout": m.get("fanout")}
    if kind == "stream" and lib == "shmcomm" and m["variant"] == "packed":
        w["single_writer"] = True
    if kind == "frames":
        w["depth"] = m.get("depth", FRAME_DEPTH)
        w["busy"] = True  # frame receivers poll where the library can (iceoryx2 can only poll)
    # Lossless everywhere the library can be, except where it is not needed: a ping-pong has one
    # message in flight (shmcomm and shm-comm use their PUB/SUB in overwrite mode there); pyzmq's PUB
    # drops at its high-water mark by design (fan-out reports that loss instead of failing).
    if kind == "latency" and lib in ("shmcomm", "shm_comm"):
        w["lossless"] = False
    if kind == "fanout" and lib.startswith("zmq"):
        w["lossless"] = False
    subs = m.get("fanout") or 1
    roles = ["A", "B"] if kind != "fanout" else ["A"] + [f"S{i + 1}" for i in range(subs)]
    q = dict(p)
    if lib == "zmq-tcp":
        q["tcp_ports"] = dict(zip(("a2b", "b2a", "tp"), _free_ports(3)))
    if kind == "fanout" and lib.startswith("zmq"):
        q["timeout"] = 1.0  # a lossy PUB may drop the end marker: subscribers give up after 1 s
    cores = p["cores"]
    q["role_cores"] = ({r: (cores[0] if r == "A" else cores[1]) for r in roles} if cores else None)
    data, to_close, queues = {r: {} for r in roles}, [], []
    channels = ("a2b", "b2a") if kind == "latency" else ("tp",)
    if lib == "pipe":
        for ch in channels:
            rx, tx = ctx.Pipe(duplex=False)
            src, dst = ("A", "B") if ch in ("a2b", "tp") else ("B", "A")
            data[src][ch] = {"conn": tx}
            data[dst][ch] = {"conn": rx}
            to_close += [rx, tx]
    elif lib in ("mpqueue", "fasterfifo"):
        for ch in channels:
            try:
                qu = make_queue(ctx, lib, {"depth": p["depth"], "size": m["size"]})
            except Exception as e:  # noqa: BLE001
                return {"ok": False, "error": f"cannot create the queue: {type(e).__name__}: {e}"}
            queues.append(qu)
            for r in roles:
                data[r][ch] = {"queue": qu}
    try:
        g = run_group(ctx, SuiteAdapter, w, m["variant"], q, roles, data, go_order=roles[::-1],
                      to_close=to_close)
    finally:
        for qu in queues:
            if lib == "mpqueue":
                qu.close()
    out = {k: v for k, v in g.items() if k != "results"}
    if not g.get("ok"):
        return out
    res = g["results"]
    if kind == "latency":
        a = res["A"]
        r = rtt_result(a["rtt_ns"])
        if not p.get("samples"):
            r.pop("samples_rtt_ns", None)
        out.update(r)
        out["rounds"] = a["rounds"]
        out["loss"] = 0  # A stops at the first echo with a wrong sequence number
        if "pickle_rt_ns" in a:
            out["pickle_rt_us"] = a["pickle_rt_ns"] / 1000
        return out
    if kind == "idle":
        out.update(res["B"])
        out["loss"] = 0
        return out
    sent = res["A"]["sent"]
    rx = [res[r] for r in roles[1:]]
    for x in rx:
        x["loss"] = sent - x["count"]
        dt = (x["t_last"] - x["t_first"]) / 1e9 if x["t_first"] is not None else 0
        x["msgs_per_s"] = (x["count"] - 1) / dt if dt > 0 and x["count"] > 1 else 0.0
    out["sent"] = sent
    out["received"] = [x["count"] for x in rx]
    out["loss"] = sum(x["loss"] for x in rx)
    out["disorder"] = sum(x["disorder"] for x in rx)
    out["msgs_per_s"] = min(x["msgs_per_s"] for x in rx)
    if kind == "fanout":
        out["per_subscriber_msgs_per_s"] = [x["msgs_per_s"] for x in rx]
        firsts = [x["t_first"] for x in rx if x["t_first"] is not None]
        dt = (max(x["t_last"] for x in rx) - min(firsts)) / 1e9 if firsts else 0
        out["deliveries_per_s"] = sum(x["count"] for x in rx) / dt if dt > 0 else 0.0
    if kind == "frames":
        out["frames_per_s"] = out.pop("msgs_per_s")
        out["bytes_per_s"] = out["frames_per_s"] * m["size"]
    if w["lossless"] and (out["loss"] or out["disorder"]):
        out["ok"] = False
        out["error"] = f"INVALID: lost {out['loss']}, out of order {out['disorder']} of {sent} (lossless)"
    if not w["lossless"]:
        out["lossy_by_design"] = True
    return out


def run_c(cprog, m: dict, p: dict) -> dict:
    cores = p["cores"] or [-1, -1]
    v = m["variant"]
    if m["kind"] == "floor-latency":
        return cprog.run("floors", ["pingpong", p["c_rounds"], cores[0], cores[1], m["lines"]], 120)
    if m["kind"] == "floor-memcpy":
        return cprog.run("floors", ["memcpy", m["size"], p["c_seconds"]], 120)
    if m["kind"] == "c-latency":
        return cprog.run("shmc", ["latency", p["c_rounds"], cores[0], cores[1], v], 120)
    r = cprog.run("shmc", ["throughput", p["c_messages"], cores[0], cores[1], v], 180)
    return r


def run_reqrep(ctx, m: dict, p: dict) -> dict:
    import bench_reqrep

    q = {"rounds": p["rr_rounds"], "warmup": p["rr_warmup"], "depth": 16, "timeout": p["timeout"],
         "request_timeout": 0.1, "setup_timeout": p["setup_timeout"], "run_timeout": p["run_timeout"],
         "role_cores": {"A": p["cores"][0], "B": p["cores"][1]} if p["cores"] else None,
         "ipc_dir": p["ipc_dir"]}
    r = bench_reqrep.run_one(ctx, m["rrlib"], m["variant"], q)
    if not p.get("samples"):
        r.pop("samples_rtt_ns", None)
    return r


def run_pushpull(ctx, m: dict, p: dict) -> dict:
    import bench_pipeline

    n = p["pp_messages"] if m["pplib"] != "mpqueue" else max(2, p["pp_messages"] // 5)
    cores = p["cores"]
    q = {"n_by_lib": {m["pplib"]: n}, "depth": 1024, "batch": p["batch"], "timeout": p["timeout"],
         "setup_timeout": p["setup_timeout"], "run_timeout": p["run_timeout"],
         "cores": [cores[0], cores[1], cores[1]] if cores else None}
    r = bench_pipeline.run_one(ctx, m["pplib"], m["variant"], m["pullers"], q)
    for x in r.get("per_puller", []):
        x.pop("anomalies", None)
    return r


def _without_samples(o):
    """A JSON document without its per-message samples (keys starting with "samples")."""
    if isinstance(o, dict):
        return {k: _without_samples(v) for k, v in o.items() if not k.startswith("samples")}
    if isinstance(o, list):
        return [_without_samples(x) for x in o]
    return o


def run_external(m: dict, p: dict, libs: list) -> dict:
    """Runs another pattern's benchmark script as it is (a subprocess, bounded in time); its Markdown
    report and JSON become this measurement's result."""
    import subprocess

    fd, out = tempfile.mkstemp(prefix="shmbench-ext-", suffix=".json")
    os.close(fd)
    q = p["quick"]
    if m["workload"] == "stream":
        theirs = {"shmcomm": "shmcomm", "zerobuffer": "zerobuffer", "zmq-ipc": "zmq"}
        chosen = [t for mine, t in theirs.items() if mine in libs] + ["shmx"]
        args = ["--repeats", "1" if q else str(p["repeats"]), "--libs", ",".join(chosen)]
        if q:
            args += ["--bytes", "512"]
    else:
        chosen = ["pair", "pubsub"] + (["zmq"] if "zmq-ipc" in libs else [])
        args = ["--only", ",".join(chosen)] + (["--quick"] if q else ["--repeats", str(p["repeats"])])
    cmd = [sys.executable, str(HERE / m["script"]), *args, "--json", out]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=p["external_timeout"], cwd=str(HERE.parent))
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"{m['script']} did not finish within {p['external_timeout']:.0f} s"}
    finally:
        pass
    try:
        doc = json.loads(Path(out).read_text()) if os.path.getsize(out) else None
    except (OSError, ValueError):
        doc = None
    finally:
        try:
            os.unlink(out)
        except OSError:
            pass
    if doc is not None and not p.get("samples"):
        doc = _without_samples(doc)
    shown = [f"benchmarks/{m['script']}", *args, "--json", "FILE"]
    r = {"ok": proc.returncode == 0, "command": shlex.join(shown), "markdown": proc.stdout, "json": doc}
    if proc.returncode:
        r["error"] = f"{m['script']} exited with {proc.returncode}: {proc.stderr.strip()[-300:]}"
    return r


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------


def plan(workloads: list, libs: list) -> list:
    """Every measurement of one repeat, in report order: dicts with group, case, lib, variant and
    what the runner needs."""
    ms = []
    if "floors" in workloads:
        ms += [{"group": "floors", "case": f"cache line ping-pong ({k} line{'s' if k > 1 else ''})", "lib": "C",
                "variant": "busy", "kind": "floor-latency", "lines": k} for k in (1, 2)]
        ms += [{"group": "floors", "case": f"memcpy {s // MIB} MiB", "lib": "C", "variant": "1 thread",
                "kind": "floor-memcpy", "size": s} for s in FRAME_SIZES]
    if "c" in workloads and "shmcomm" in libs:
        ms += [{"group": "c", "case": "latency 64 B", "lib": "shmcomm C", "variant": v, "kind": "c-latency"}
               for v in C_LATENCY]
        ms += [{"group": "c", "case": "throughput 64 B", "lib": "shmcomm C", "variant": v, "kind": "c-throughput"}
               for v in C_THROUGHPUT]
    if "latency" in workloads:
        for case, payload, size in PAYLOADS:
            for lib in libs:
                for v in LATENCY_VARIANTS[lib]:
                    if v == "futex" and case != "64 B":
                        continue
                    ms.append({"group": "latency", "case": case, "lib": lib, "variant": v, "kind": "latency",
                               "payload": payload, "size": size})
    if "idle" in workloads:
        ms += [{"group": "idle", "case": "idle receiver, 1 s", "lib": lib, "variant": "blocking", "kind": "idle",
                "size": 64} for lib in libs if lib in IDLE_LIBS]
    if "throughput" in workloads:
        ms += [{"group": "throughput", "case": "64 B", "lib": lib, "variant": v, "kind": "stream", "size": 64}
               for lib in libs for v in STREAM_VARIANTS[lib]]
    if "frames" in workloads:
        for size in FRAME_SIZES:
            ms += [{"group": "frames", "case": f"{size // MIB} MiB", "lib": lib, "variant": v, "kind": "frames",
                    "size": size} for lib in libs if lib in FRAME_VARIANTS for v in FRAME_VARIANTS[lib]]
    if "fanout" in workloads:
        ms += [{"group": "fanout", "case": f"{k} subscriber{'s' if k > 1 else ''}", "lib": lib, "variant": "blocking",
                "kind": "fanout", "size": 64, "fanout": k} for lib in libs if lib in FANOUT_LIBS for k in FANOUT]
    if "reqrep" in workloads:
        ms += [{"group": "reqrep", "case": "64 B", "lib": RR_LIB[rl], "rrlib": rl, "variant": v, "kind": "reqrep"}
               for rl, v in REQREP if RR_LIB[rl] in libs]
    if "pushpull" in workloads:
        ms += [{"group": "pushpull", "case": f"{k} puller{'s' if k > 1 else ''}", "lib": pl, "pplib": pl,
                "variant": v, "kind": "pushpull", "pullers": k}
               for k in (1, 2) for pl, v in PUSHPULL if pl in libs]
    for wl in ("stream", "pair"):
        script, label = EXTERNAL[wl]
        if wl in workloads and (HERE / script).is_file():
            ms.append({"group": "external", "case": label, "lib": "shmcomm", "variant": script, "kind": "external",
                       "workload": wl, "script": script})
    return ms


def describe(m: dict, r: dict) -> str:
    if not r.get("ok"):
        return f"FAILED: {r.get('error')}"
    k = m["kind"]
    if k == "external":
        return "done (its report is included)"
    if "p50_us" in r:
        return f"one-way p50 {r['p50_us']:.3f} µs p99 {r['p99_us']:.3f} µs"
    if k == "floor-memcpy":
        return f"{r['bytes_per_s'] / 1e9:.2f} GB/s"
    if k == "frames":
        return f"{r['frames_per_s']:,.0f} frames/s ({r['bytes_per_s'] / 1e9:.2f} GB/s), loss {r['loss']}"
    if k == "idle":
        return f"CPU {100 * r['cpu_fraction']:.2f} % of a core"
    if "msgs_per_s" in r:
        return f"{r['msgs_per_s']:,.0f} msgs/s, loss {r.get('loss', 0)}"
    return "ok"


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


def key_of(m: dict) -> tuple:
    return (m["group"], m["case"], m["lib"], m["variant"])


def summarize(runs: list, key: str):
    vals = [r[key] for r in runs if r.get("ok") and isinstance(r.get(key), (int, float))]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


METRICS = ("p50_us", "p99_us", "p999_us", "rtt_p50_us", "rtt_p99_us", "msgs_per_s", "frames_per_s",
           "bytes_per_s", "deliveries_per_s", "cpu_fraction", "pickle_rt_us", "loss")


class Results:
    def __init__(self):
        self.runs: dict = {}
        self.meta: dict = {}

    def add(self, m: dict, r: dict) -> None:
        k = key_of(m)
        self.meta.setdefault(k, m)
        self.runs.setdefault(k, []).append(r)

    def med(self, group, case, lib, variant, metric):
        s = summarize(self.runs.get((group, case, lib, variant), []), metric)
        return None if s is None else s["median"]

    def stat(self, k, metric):
        return summarize(self.runs.get(k, []), metric)

    def keys(self, group, case=None):
        return [k for k in self.runs if k[0] == group and (case is None or k[1] == case)]


def cell(s, fmt=_fmt) -> str:
    if s is None:
        return "–"
    if s["n"] == 1 or s["min"] == s["max"]:
        return fmt(s["median"])
    return f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"


def ratio(a, b) -> str:
    if a is None or b is None or not b:
        return "n/a"
    return f"×{a / b:.2f}"


def notes(runs: list) -> str:
    bad = [r for r in runs if not r.get("ok")]
    out = []
    if bad:
        out.append(f"{len(bad)}/{len(runs)} failed ({bad[0].get('error', '?')})")
    good = [r for r in runs if r.get("ok")]
    if good and "loss" in good[0]:
        loss = sum(r.get("loss", 0) or 0 for r in good)
        if any(r.get("lossy_by_design") for r in good):
            out.append(f"loss {loss} (lossy by design: PUB drops at its high-water mark)")
        else:
            out.append(f"loss {loss}")
    return "; ".join(out).replace("|", "/")


def _gb(v):
    return "–" if v is None else f"{v / 1e9:.2f}"


def render(res: Results, floors: dict) -> str:
    L = []
    # floors and C
    if res.keys("floors") or res.keys("c"):
        L += ["### Floors and C to C", "", "| measurement | variant | result | notes |", "|---|---|---:|---|"]
        for k in res.keys("floors") + res.keys("c"):
            runs = res.runs[k]
            if "memcpy" in k[1]:
                val = cell(res.stat(k, "bytes_per_s"), _gb) + " GB/s"
            elif "latency" in k[1] or "ping-pong" in k[1]:
                val = cell(res.stat(k, "p50_us"), lambda v: f"{v:.3f}") + " µs one-way p50; p99 " + \
                    cell(res.stat(k, "p99_us"), lambda v: f"{v:.3f}") + " µs"
            else:
                val = cell(res.stat(k, "msgs_per_s"), _fmt_rate) + " msgs/s"
            L.append(f"| {k[2]}: {k[1]} | {k[3]} | {val} | {notes(runs)} |")
        L.append("")
    # latency
    for case, _, _ in PAYLOADS:
        ks = res.keys("latency", case)
        if not ks:
            continue
        L += [f"### Ping-pong latency, {case} (one-way = round trip / 2, µs)", "",
              "| library | receive | p50 | p99 | p99.9 | p50 vs shmcomm | p50 vs floor | rounds | notes |",
              "|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for k in ks:
            ref_v = "blocking" if k[3] == "futex" else k[3]
            ref = res.med("latency", case, "shmcomm", ref_v, "p50_us")
            p50 = res.med(*k, "p50_us")
            extra = ""
            if case == "pickled dict" and res.med(*k, "pickle_rt_us"):
                extra = f"; pickle's own cost {res.med(*k, 'pickle_rt_us'):.2f} µs per round trip"
            L.append(f"| {LABEL.get(k[2], k[2])} | {k[3]} | {cell(res.stat(k, 'p50_us'))} | {cell(res.stat(k, 'p99_us'))}"
                     f" | {cell(res.stat(k, 'p999_us'))} | {ratio(p50, ref)} | {ratio(p50, floors.get('latency'))}"
                     f" | {_fmt(res.med(*k, 'rounds'), 0) if res.med(*k, 'rounds') else '–'} | {notes(res.runs[k])}{extra} |")
        L.append("")
    ks = res.keys("idle")
    if ks:
        L += ["### Idle receiver (blocked in its receive for 1 s, nothing sent)", "",
              "| library | CPU, % of one core | notes |", "|---|---:|---|"]
        for k in ks:
            s = res.stat(k, "cpu_fraction")
            L.append(f"| {LABEL.get(k[2], k[2])} | {cell(s, lambda v: f'{100 * v:.2f}')} | {notes(res.runs[k])} |")
        L.append("")
    ks = res.keys("throughput")
    if ks:
        L += ["### Throughput, 64 B one-way (lossless; msgs/s counted by the receiver)", "",
              "| library | calls | msgs/s | vs shmcomm single | vs shmcomm same calls | receiver | notes |",
              "|---|---|---:|---:|---:|---|---|"]
        ref1 = res.med("throughput", "64 B", "shmcomm", "single", "msgs_per_s")
        for k in ks:
            v = res.med(*k, "msgs_per_s")
            refv = res.med("throughput", "64 B", "shmcomm", k[3], "msgs_per_s")
            L.append(f"| {LABEL.get(k[2], k[2])} | {k[3]} | {cell(res.stat(k, 'msgs_per_s'), _fmt_rate)} | {ratio(v, ref1)}"
                     f" | {ratio(v, refv)} | {'busy-wait poll' if STREAM_RX.get(k[2]) == 'poll' and k[3] == 'single' else 'blocking'}"
                     f" | {notes(res.runs[k])} |")
        L.append("")
    for size in FRAME_SIZES:
        case = f"{size // MIB} MiB"
        ks = res.keys("frames", case)
        if not ks:
            continue
        mc = floors.get(f"memcpy {size // MIB} MiB")
        L += [f"### Frames, {case} (lossless, depth {FRAME_DEPTH})", "",
              "| library | path | frames/s | GB/s | vs memcpy | vs shmcomm same path | notes |",
              "|---|---|---:|---:|---:|---:|---|"]
        for k in ks:
            v = res.med(*k, "bytes_per_s")
            ref = res.med("frames", case, "shmcomm", k[3], "bytes_per_s")
            L.append(f"| {LABEL.get(k[2], k[2])} | {k[3]} | {cell(res.stat(k, 'frames_per_s'), lambda x: f'{x:,.0f}')}"
                     f" | {cell(res.stat(k, 'bytes_per_s'), _gb)} | {ratio(v, mc)} | {ratio(v, ref)} | {notes(res.runs[k])} |")
        L.append("")
    ks = res.keys("fanout")
    if ks:
        L += ["### Fan-out, 64 B (slowest subscriber's msgs/s; subscribers share one core)", "",
              "| library | subscribers | slowest subscriber msgs/s | deliveries/s (all) | vs shmcomm | notes |",
              "|---|---:|---:|---:|---:|---|"]
        for k in ks:
            v = res.med(*k, "msgs_per_s")
            ref = res.med("fanout", k[1], "shmcomm", k[3], "msgs_per_s")
            L.append(f"| {LABEL.get(k[2], k[2])} | {k[1].split()[0]} | {cell(res.stat(k, 'msgs_per_s'), _fmt_rate)}"
                     f" | {cell(res.stat(k, 'deliveries_per_s'), _fmt_rate)} | {ratio(v, ref)} | {notes(res.runs[k])} |")
        L.append("")
    ks = res.keys("reqrep")
    if ks:
        L += ["### REQ/REP round trip, 64 B (µs)", "",
              "| library | variant | round trip p50 | p99 | one-way p50 | vs shmcomm | notes |",
              "|---|---|---:|---:|---:|---:|---|"]
        for k in ks:
            v = res.med(*k, "rtt_p50_us")
            ref = res.med("reqrep", "64 B", "shmcomm", "busy-wait" if k[3] == "busy-wait" else "blocking", "rtt_p50_us")
            L.append(f"| {LABEL.get(k[2], k[2])} | {k[3]} | {cell(res.stat(k, 'rtt_p50_us'))} | {cell(res.stat(k, 'rtt_p99_us'))}"
                     f" | {cell(res.stat(k, 'p50_us'))} | {ratio(v, ref)} | {notes(res.runs[k])} |")
        L.append("")
    ks = res.keys("pushpull")
    if ks:
        L += ["### PUSH/PULL, 64 B work items (every item exactly once)", "",
              "| library | calls | pullers | msgs/s | vs shmcomm same calls | notes |", "|---|---|---:|---:|---:|---|"]
        for k in ks:
            v = res.med(*k, "msgs_per_s")
            ref = res.med("pushpull", k[1], "shmcomm", k[3], "msgs_per_s")
            L.append(f"| {LABEL.get(k[2], k[2])} | {k[3]} | {k[1].split()[0]} | {cell(res.stat(k, 'msgs_per_s'), _fmt_rate)}"
                     f" | {ratio(v, ref)} | {notes(res.runs[k])} |")
        L.append("")
    for k in res.keys("external"):
        r = res.runs[k][-1]
        L += [f"### {k[1]}: benchmarks/{k[3]} (run by the suite as it is)", ""]
        if r.get("command"):
            L += [f"`python {r['command']}`", ""]
        if not r.get("ok"):
            L += [f"FAILED: {r.get('error')}", ""]
        body = [ln for ln in (r.get("markdown") or "").splitlines() if not ln.startswith("raw numbers:")]
        notes_block = [ln.lstrip("#").rstrip() for ln in body if ln.startswith("#")]
        if notes_block:  # the script's own header and progress lines ("# ..."), kept as they are
            L += ["```", *notes_block, "```", ""]
        L += [ln for ln in body if not ln.startswith("#")] + [""]
    return "\n".join(L)


def floor_values(res: Results) -> dict:
    f = {}
    lat = [res.med("floors", f"cache line ping-pong ({k} line{'s' if k > 1 else ''})", "C", "busy", "p50_us")
           for k in (1, 2)]
    lat = [x for x in lat if x]
    if lat:
        f["latency"] = min(lat)
        f["latency_1line"] = lat[0]
    for s in FRAME_SIZES:
        v = res.med("floors", f"memcpy {s // MIB} MiB", "C", "1 thread", "bytes_per_s")
        if v:
            f[f"memcpy {s // MIB} MiB"] = v
    return f


def targets(res: Results, floors: dict) -> list:
    """The issue's targets as ratios measured in this run: (target, measured, value, limit, met)."""
    T = []
    lat = lambda lib, v, met="p50_us", case="64 B": res.med("latency", case, lib, v, met)  # noqa: E731

    def add(what, a, b, limit, op, how):
        if a is None or b is None or not b:
            T.append({"target": what, "measured": how, "value": None, "limit": limit, "met": None})
            return
        val = a / b
        T.append({"target": what, "measured": how, "value": val, "limit": limit,
                  "met": val <= limit if op == "<=" else val >= limit})

    s_busy = lat("shmcomm", "busy")
    add("Py 64 B busy-wait p50 ≤ 0.3× iceoryx2", s_busy, lat("iceoryx2", "busy"), 0.3, "<=", "shmcomm ÷ iceoryx2, busy-wait")
    add("Py 64 B busy-wait p50 ≤ 1/30 pyzmq ipc://", s_busy, lat("zmq-ipc", "busy"), 1 / 30, "<=",
        "shmcomm ÷ pyzmq ipc://, busy-wait")
    add("Py 64 B busy-wait p99 ≤ 3× p50", lat("shmcomm", "busy", "p99_us"), s_busy, 3.0, "<=", "shmcomm p99 ÷ p50")
    s_blk = lat("shmcomm", "blocking")
    add("Py 64 B blocking p50 ≤ 0.5× pyzmq ipc:// blocking", s_blk, lat("zmq-ipc", "blocking"), 0.5, "<=",
        "shmcomm ÷ pyzmq, blocking (spin then futex)")
    add("Py 64 B blocking p50 ≤ 0.5× iceoryx2 event wait", s_blk, lat("iceoryx2", "blocking"), 0.5, "<=",
        "shmcomm ÷ iceoryx2, blocking")
    add("Py 64 B futex-only p50 ≤ 0.5× pyzmq ipc:// blocking", lat("shmcomm", "futex"), lat("zmq-ipc", "blocking"),
        0.5, "<=", "shmcomm spin_us=0 ÷ pyzmq blocking")
    idle = res.med("idle", "idle receiver, 1 s", "shmcomm", "blocking", "cpu_fraction")
    T.append({"target": "idle receiver uses no CPU", "measured": "CPU fraction of a core (≤ 1 %)", "value": idle,
              "limit": 0.01, "met": None if idle is None else idle <= 0.01})
    tp = lambda lib, v: res.med("throughput", "64 B", lib, v, "msgs_per_s")  # noqa: E731
    t1 = tp("shmcomm", "single")
    tb = max([x for x in (tp("shmcomm", "batch"), tp("shmcomm", "packed")) if x] or [0]) or None
    add("Py 64 B single calls ≥ 1,500,000 msgs/s", t1, 1_500_000, 1.0, ">=", "shmcomm single ÷ 1.5 M")
    add("Py 64 B batch calls ≥ 10,000,000 msgs/s", tb, 10_000_000, 1.0, ">=",
        "shmcomm best batch (lists or packed records) ÷ 10 M")
    add("Py 64 B throughput ≥ 5× iceoryx2 (single vs single)", t1, tp("iceoryx2", "single"), 5.0, ">=",
        "shmcomm single ÷ iceoryx2")
    add("Py 64 B throughput ≥ 3× pyzmq ipc:// (single vs single)", t1, tp("zmq-ipc", "single"), 3.0, ">=",
        "shmcomm single ÷ pyzmq ipc://")
    best = max([x for x in (t1, tb) if x] or [0]) or None
    add("Py 64 B throughput ≥ 5× iceoryx2 (best vs best)", best, tp("iceoryx2", "single"), 5.0, ">=",
        "shmcomm best ÷ iceoryx2")
    add("Py 64 B throughput ≥ 3× pyzmq ipc:// (best vs best)", best, tp("zmq-ipc", "single"), 3.0, ">=",
        "shmcomm best ÷ pyzmq ipc://")
    for size in FRAME_SIZES:
        case = f"{size // MIB} MiB"
        fr = lambda lib, v: res.med("frames", case, lib, v, "bytes_per_s")  # noqa: E731
        add(f"{case} one-copy path ≥ 0.8× memcpy", fr("shmcomm", "one-copy"), floors.get(f"memcpy {case}"), 0.8, ">=",
            "shmcomm one-copy GB/s ÷ memcpy GB/s")
        add(f"{case} one-copy path ≥ iceoryx2", fr("shmcomm", "one-copy"), fr("iceoryx2", "one-copy"), 1.0, ">=",
            "shmcomm one-copy ÷ iceoryx2 one-copy")
        add(f"{case} zero-copy ≥ 1.5× iceoryx2", fr("shmcomm", "zero-copy"), fr("iceoryx2", "zero-copy"), 1.5, ">=",
            "shmcomm zero-copy ÷ iceoryx2 zero-copy")
    c_lat = min([x for x in (res.med("c", "latency 64 B", "shmcomm C", v, "p50_us") for v in ("busy", "busy-sw"))
                 if x] or [0]) or None
    add("C 64 B p50 within 2× cache-line floor", c_lat, floors.get("latency"), 2.0, "<=",
        "shmcomm C busy p50 (best of default and single-writer channels) ÷ best cache-line floor")
    c_tp = max([x for x in (res.med("c", "throughput 64 B", "shmcomm C", v, "msgs_per_s") for v in C_THROUGHPUT)
                if x] or [0]) or None
    add("C 64 B ≥ 20,000,000 msgs/s", c_tp, 20_000_000, 1.0, ">=", "shmcomm C best ÷ 20 M")
    pk = res.med("latency", "pickled dict", "shmcomm", "busy", "rtt_p50_us")
    raw = res.med("latency", "64 B", "shmcomm", "busy", "rtt_p50_us")
    cost = res.med("latency", "pickled dict", "shmcomm", "busy", "pickle_rt_us")
    add("pickled dict round trip ≤ 1.3× (64 B round trip + pickle)", pk, (raw + cost) if raw and cost else None, 1.3,
        "<=", "shmcomm busy, round trips")
    return T


def render_summary(res: Results, floors: dict) -> str:
    """The headline numbers: shmcomm next to its closest peers and the floors (medians of this run)."""
    rows = []

    def peer_best(group, case, variant, metric, higher):
        best = None
        for k in res.keys(group, case):
            if k[2] == "shmcomm" or (variant and k[3] != variant):
                continue
            v = res.med(*k, metric)
            if v and (best is None or (v > best[0] if higher else v < best[0])):
                best = (v, f"{LABEL.get(k[2], k[2])}{'' if variant else ' ' + k[3]}")
        return best

    def add(what, v, fmt, group, case, variant, metric, higher, floor=None):
        if v is None:
            return
        pb = peer_best(group, case, variant, metric, higher)
        peer = "–" if pb is None else f"{pb[1]} {fmt(pb[0])}"
        r = "–" if pb is None else (f"×{pb[0] / v:.1f} faster" if not higher else f"×{v / pb[0]:.1f}")
        rows.append(f"| {what} | {fmt(v)} | {peer} | {r} | {floor or '–'} |")

    us = lambda v: f"{v:.2f} µs"  # noqa: E731
    fl = floors.get("latency")
    for v in ("busy", "blocking"):
        add(f"one-way latency p50, 64 B, {v}", res.med("latency", "64 B", "shmcomm", v, "p50_us"), us, "latency",
            "64 B", v, "p50_us", False, f"cache line {fl:.3f} µs" if fl else None)
    add("one-way latency p50, pickled dict, busy", res.med("latency", "pickled dict", "shmcomm", "busy", "p50_us"), us,
        "latency", "pickled dict", "busy", "p50_us", False)
    for v in ("single", "batch", "packed"):
        add(f"throughput 64 B, {v} calls", res.med("throughput", "64 B", "shmcomm", v, "msgs_per_s"), _fmt_rate,
            "throughput", "64 B", None, "msgs_per_s", True)
    for size in FRAME_SIZES:
        case = f"{size // MIB} MiB"
        mc = floors.get(f"memcpy {case}")
        add(f"frames {case}, one-copy", res.med("frames", case, "shmcomm", "one-copy", "bytes_per_s"),
            lambda x: f"{x / 1e9:.2f} GB/s", "frames", case, "one-copy", "bytes_per_s", True,
            f"memcpy {mc / 1e9:.2f} GB/s" if mc else None)
        add(f"frames {case}, zero-copy (frames/s)", res.med("frames", case, "shmcomm", "zero-copy", "frames_per_s"),
            lambda x: f"{x:,.0f}", "frames", case, "zero-copy", "frames_per_s", True)
    add("REQ/REP round trip p50", res.med("reqrep", "64 B", "shmcomm", "blocking", "rtt_p50_us"), us, "reqrep", "64 B",
        "blocking", "rtt_p50_us", False)
    add("PUSH/PULL 1 puller, batch", res.med("pushpull", "1 puller", "shmcomm", "batch", "msgs_per_s"), _fmt_rate,
        "pushpull", "1 puller", None, "msgs_per_s", True)
    for v, label in (("busy", ""), ("busy-sw", ", single-writer channels")):
        c = res.med("c", "latency 64 B", "shmcomm C", v, "p50_us")
        if c:
            rows.append(f"| C to C one-way latency p50, 64 B{label} | {c:.3f} µs | – | – | "
                        f"{f'cache line {fl:.3f} µs' if fl else '–'} |")
    ct = [res.med("c", "throughput 64 B", "shmcomm C", v, "msgs_per_s") for v in C_THROUGHPUT]
    ct = [x for x in ct if x]
    if ct:
        rows.append(f"| C to C throughput 64 B (best of single/batch, one or many writers) | {_fmt_rate(max(ct))} "
                    "| – | – | – |")
    if not rows:
        return ""
    return "\n".join(["### Summary (shmcomm, its best peer in the same run, the floors)", "",
                      "| workload | shmcomm | best peer | shmcomm vs peer | floor |", "|---|---:|---|---:|---|", *rows]) + "\n"


def render_targets(T: list) -> str:
    L = ["### Targets (ratios measured in this run)", "", "| target | ratio | limit | met |", "|---|---:|---:|---|"]
    for t in T:
        v = "–" if t["value"] is None else (f"{t['value']:.3f}" if t["value"] < 10 else f"{t['value']:.1f}")
        lim = f"{t['limit']:.3g}"
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
        L.append(f"| {t['target']} ({t['measured']}) | {v} | {lim} | {met} |")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------------------------


def plot(res: Results, floors: dict, out_dir: str) -> list:
    """PNG charts with matplotlib; returns the files written (raises ImportError without it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    files = []

    def save(fig, name):
        path = os.path.join(out_dir, name)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)

    def color(lib):
        return "#d62728" if lib.startswith("shmcomm") else "#1f77b4"

    # latency: one panel per payload, bars = lib/variant p50, whiskers to p99
    cases = [c for c, _, _ in PAYLOADS if res.keys("latency", c)]
    if cases:
        fig, axes = plt.subplots(len(cases), 1, figsize=(9, 3.2 * len(cases)), squeeze=False)
        for ax, case in zip(axes[:, 0], cases):
            ks = res.keys("latency", case)
            names = [f"{LABEL.get(k[2], k[2])} {k[3]}" for k in ks]
            p50 = [res.med(*k, "p50_us") or 0 for k in ks]
            p99 = [res.med(*k, "p99_us") or 0 for k in ks]
            y = range(len(ks))
            ax.barh(y, p50, color=[color(k[2]) for k in ks])
            ax.errorbar(p50, y, xerr=[[0] * len(ks), [max(0, b - a) for a, b in zip(p50, p99)]], fmt="none",
                        ecolor="gray", capsize=2)
            ax.set_yticks(list(y), names, fontsize=7)
            ax.set_xscale("log")
            if floors.get("latency"):
                ax.axvline(floors["latency"], color="green", ls="--", label="cache-line floor (C)")
                ax.legend(fontsize=7)
            ax.invert_yaxis()
            ax.set_title(f"one-way latency, {case}: p50 (bar) to p99 (whisker), µs, log scale", fontsize=9)
        save(fig, "latency.png")
    ks = res.keys("throughput")
    if ks:
        fig, ax = plt.subplots(figsize=(9, 0.35 * len(ks) + 1.2))
        vals = [res.med(*k, "msgs_per_s") or 0 for k in ks]
        ax.barh(range(len(ks)), vals, color=[color(k[2]) for k in ks])
        ax.set_yticks(range(len(ks)), [f"{LABEL.get(k[2], k[2])} {k[3]}" for k in ks], fontsize=7)
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_title("throughput, 64 B, lossless: msgs/s (log scale)", fontsize=9)
        save(fig, "throughput.png")
    sizes = [s for s in FRAME_SIZES if res.keys("frames", f"{s // MIB} MiB")]
    if sizes:
        fig, axes = plt.subplots(len(sizes), 1, figsize=(9, 3.4 * len(sizes)), squeeze=False)
        for ax, size in zip(axes[:, 0], sizes):
            case = f"{size // MIB} MiB"
            ks = res.keys("frames", case)
            vals = [(res.med(*k, "bytes_per_s") or 0) / 1e9 for k in ks]
            ax.barh(range(len(ks)), vals, color=[color(k[2]) for k in ks])
            ax.set_yticks(range(len(ks)), [f"{LABEL.get(k[2], k[2])} {k[3]}" for k in ks], fontsize=7)
            mc = floors.get(f"memcpy {case}")
            if mc:
                ax.axvline(mc / 1e9, color="green", ls="--", label="memcpy, 1 thread (C)")
                ax.legend(fontsize=7)
            ax.set_xscale("log")
            ax.invert_yaxis()
            ax.set_title(f"frames of {case}: GB/s moved (log scale)", fontsize=9)
        save(fig, "frames.png")
    ks = res.keys("fanout")
    if ks:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for lib in dict.fromkeys(k[2] for k in ks):
            xs, ys = [], []
            for n in FANOUT:
                v = res.med("fanout", f"{n} subscriber{'s' if n > 1 else ''}", lib, "blocking", "msgs_per_s")
                if v:
                    xs.append(n)
                    ys.append(v)
            ax.plot(xs, ys, marker="o", label=LABEL.get(lib, lib), color=color(lib) if lib == "shmcomm" else None)
        ax.set_xticks(list(FANOUT))
        ax.set_yscale("log")
        ax.set_xlabel("subscribers")
        ax.set_ylabel("slowest subscriber, msgs/s")
        ax.legend(fontsize=7)
        ax.set_title("fan-out, 64 B", fontsize=9)
        save(fig, "fanout.png")
    return files


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m shmcomm bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="all", help=f"workloads, comma-separated: {','.join(WORKLOADS)} (default all)")
    ap.add_argument("--libs", default="all",
                    help=f"libraries, comma-separated: {','.join(LIBS)} (default all; shmcomm is always useful)")
    ap.add_argument("--quick", action="store_true", help="a short run (1 repeat, short durations) for tests and CI")
    ap.add_argument("--repeats", type=int, default=None, help="repeats of every measurement (default 3; --quick 1)")
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds per measurement loop (default 1.5; --quick 0.15); every loop is also bounded in count")
    ap.add_argument("--cores", default="0,1", help="cores of the two sides (default 0,1); 'none': no pinning")
    ap.add_argument("--timeout", type=float, default=5.0, help="bound of every single wait, s (default 5)")
    ap.add_argument("--json", metavar="FILE", help="write every number (machine, versions, every repeat) here")
    ap.add_argument("--plot", metavar="DIR", help="write PNG charts here (needs matplotlib)")
    ap.add_argument("--markdown", metavar="FILE", help="also write the Markdown report here")
    ap.add_argument("--samples", action="store_true", help="keep every latency sample in the JSON")
    ap.add_argument("--start-method", choices=("spawn", "forkserver", "fork"), default="forkserver",
                    help="how worker processes start (default forkserver: a fresh process per measurement,"
                         " forked from a clean server; spawn is slower, fork inherits the driver's imports)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    ap.add_argument("--from-json", metavar="FILE",
                    help="measure nothing: render the report (and --plot charts) of an earlier --json FILE")
    a = ap.parse_args(argv)
    if a.repeats is None:
        a.repeats = 1 if a.quick else 3
    if a.duration is None:
        a.duration = 0.15 if a.quick else 1.5
    return a


def _select(text: str, universe: tuple, what: str):
    if text == "all":
        return list(universe)
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    alias = {"zmq": ["zmq-ipc", "zmq-tcp"], "pyzmq": ["zmq-ipc", "zmq-tcp"], "shm-comm": ["shm_comm"],
             "faster-fifo": ["fasterfifo"], "zerobuffer-ipc": ["zerobuffer"], "mp.Pipe": ["pipe"],
             "mp.Queue": ["mpqueue"]}
    out = []
    for c in chosen:
        out += alias.get(c, [c])
    bad = [x for x in out if x not in universe]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)}; choose from {', '.join(universe)}")
    return [x for x in universe if x in out]


def cleanup_segments() -> list:
    """Removes what this run may have left in /dev/shm (our channels, iceoryx2's and zerobuffer's
    files) when no process uses them any more. Returns the names removed."""
    removed = []
    base = "/dev/shm"
    if not os.path.isdir(base):
        return removed
    mine = f"shmbench_{os.getpid()}_"
    for n in os.listdir(base):
        dead_c = False
        if "shmbench_c_" in n:  # a C benchmark interrupted before it closed its channel
            pid = n.split("shmbench_c_", 1)[1].split("_", 1)[0]
            dead_c = pid.isdigit() and not os.path.exists(f"/proc/{pid}")
        if mine in n or n.startswith("iox2_") or dead_c:
            try:
                os.unlink(os.path.join(base, n))
                removed.append(n)
            except OSError:
                pass
    return removed


def report_from_json(args) -> int:
    """The Markdown report and charts of an earlier run, from its JSON."""
    doc = json.loads(Path(args.from_json).read_text())
    res = Results()
    for e in doc["results"]:
        m = {"group": e["group"], "case": e["case"], "lib": e["library"], "variant": e["variant"], "kind": e["kind"]}
        for r in e["runs"]:
            res.add(m, r)
    floors = floor_values(res)
    info, p = doc["machine"], doc["params"]
    cores = p.get("cores")
    head = [
        "## shmcomm benchmark suite", "",
        f"- command: `{doc['command']}` (cwd `{doc.get('cwd', '?')}`), {doc['timestamp']}",
        f"- CPU: {info['cpu']} ({info['cpus_online']} online, allowed {info['cpus_allowed']}"
        f"{', virtual machine' if info['virtualized'] else ''}); kernel {info['kernel']}; {info['python']}",
        f"- pinning: sender/requester/pusher on core {cores[0] if cores else '-'}, receivers on core "
        f"{cores[1] if cores else '-'}; {doc['args']['repeats']} repeat(s), interleaved; {p['duration']} s per loop",
        f"- load average at start {doc['load_average_start']}, at end {doc['load_average_end']}; the run took"
        f" {doc['elapsed_s']:.0f} s",
        "- versions: " + "; ".join(f"{LABEL.get(k, k)} {v}" for k, v in doc["versions"].items()),
    ]
    if doc.get("skipped"):
        head.append("- skipped: " + "; ".join(f"{LABEL.get(k, k)} ({v})" for k, v in doc["skipped"].items()))
    head.append("- cells: median over repeats (min–max); latency one-way = round trip / 2")
    report = ("\n".join(head) + "\n\n" + render(res, floors) + "\n" + render_summary(res, floors) + "\n"
              + render_targets(targets(res, floors)))
    print(report)
    if args.markdown:
        Path(args.markdown).write_text(report)
    if args.plot:
        try:
            print(f"charts: {', '.join(plot(res, floors, args.plot))}", file=sys.stderr)
        except ImportError:
            print("charts: matplotlib is not installed; no PNG written", file=sys.stderr)
    return 0


def params(q: bool, d: float, timeout: float, cores, repeats: int, samples: bool = False) -> dict:
    """The measurement parameters every workload reads: q = --quick, d = seconds per measured loop.
    The caller removes p["ipc_dir"] when done."""
    return {
        "rounds": 2_000 if q else 100_000, "warmup": 200 if q else 2_000, "min_rounds": 200 if q else 2_000,
        "duration": d, "n_msgs": 200_000 if q else 5_000_000, "n_frames": 50 if q else 100_000,
        "depth": 1024, "batch": 256, "packed": 512, "timeout": timeout, "setup_timeout": max(30.0, 3 * timeout),
        "run_timeout": 60.0 + 10 * d, "cores": cores, "ipc_dir": tempfile.mkdtemp(prefix="shmbench-"),
        "samples": samples, "idle_s": 0.3 if q else 1.0,
        "c_rounds": 20_000 if q else 200_000, "c_messages": 1_000_000 if q else 10_000_000,
        "c_seconds": 0.1 if q else 0.5,
        "rr_rounds": 1_000 if q else 20_000, "rr_warmup": 100 if q else 2_000,
        "pp_messages": 50_000 if q else 300_000,
        "quick": q, "repeats": repeats, "external_timeout": 300.0 if q else 1800.0,
    }


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.from_json:
        return report_from_json(args)
    workloads = _select(args.only, WORKLOADS, "workload")
    if args.quick and args.only == "all":  # the other patterns' scripts have their own smoke tests
        workloads = [w for w in workloads if w not in EXTERNAL]
    libs = _select(args.libs, LIBS, "library")
    cores = None if args.cores.lower() == "none" else [int(c) for c in args.cores.split(",")][:2]
    if cores is not None and len(cores) < 2:
        cores = [cores[0], cores[0]]
    cmd = shlex.join([sys.executable] + (sys.argv if argv is None else ["-m", "shmcomm", "bench", *argv]))
    info = machine_info()
    load_start = load_average()

    versions, skipped = {}, {}
    for lib in libs:
        v, why = library_version(lib)
        if v is None:
            skipped[lib] = why
        else:
            versions[lib] = v
    if "shmcomm" in skipped:
        print(f"shmcomm itself is not importable: {skipped['shmcomm']}", file=sys.stderr)
        return 2
    run_libs = [lib for lib in libs if lib not in skipped]
    for lib, why in skipped.items():
        print(f"note: {LABEL[lib]} skipped ({why}); pip install -r benchmarks/requirements.txt", file=sys.stderr)

    d = args.duration
    p = params(args.quick, d, args.timeout, cores, args.repeats, args.samples)
    ms = plan(workloads, run_libs)
    ctx = mp.get_context(args.start_method)
    cprog = None
    if any(m["kind"].startswith(("floor", "c-")) for m in ms):
        from cbench import CPrograms

        cprog = CPrograms()
        for what, err in cprog.errors.items():
            print(f"note: C benchmarks ({what}) unavailable: {err}", file=sys.stderr)
    res = Results()
    n_ext = sum(1 for m in ms if m["kind"] == "external")
    prog = Progress((len(ms) - n_ext) * args.repeats + n_ext, args.quiet)
    t_start = time.monotonic()
    try:
        for rep in range(args.repeats):  # interleaved: repeat 1 of everything, then repeat 2...
            for m in ms:
                if m["kind"] == "external" and rep:
                    continue  # the script repeats its own measurements
                t0 = time.monotonic()
                kind = m["kind"]
                try:
                    if kind.startswith(("floor", "c-")):
                        r = run_c(cprog, m, p)
                    elif kind == "reqrep":
                        r = run_reqrep(ctx, m, p)
                    elif kind == "pushpull":
                        r = run_pushpull(ctx, m, p)
                    elif kind == "external":
                        r = run_external(m, p, run_libs)
                    else:
                        r = run_python(ctx, m, p)
                except Exception as e:  # noqa: BLE001 - a broken measurement fails its row only
                    r = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                r["repeat"], r["wall_s"] = rep, round(time.monotonic() - t0, 3)
                res.add(m, r)
                prog.step(f"[{rep + 1}/{args.repeats}] {m['group']} {m['case']} {LABEL.get(m['lib'], m['lib'])} {m['variant']}",
                          describe(m, r))
    except KeyboardInterrupt:
        print("interrupted: reporting what was measured", file=sys.stderr)
    finally:
        prog.close()
        if cprog is not None:
            cprog.cleanup()
        shutil.rmtree(p["ipc_dir"], ignore_errors=True)
        cleanup_segments()
    elapsed = time.monotonic() - t_start

    floors = floor_values(res)
    tg = targets(res, floors)
    head = [
        "## shmcomm benchmark suite", "",
        f"- command: `{cmd}` (cwd `{os.getcwd()}`)",
        f"- CPU: {info['cpu']} ({info['cpus_online']} online, allowed {info['cpus_allowed']}"
        f"{', virtual machine' if info['virtualized'] else ''}); kernel {info['kernel']}; {info['python']}",
        f"- pinning: sender/requester/pusher on core {cores[0] if cores else '-'}, receivers on core "
        f"{cores[1] if cores else '-'}; {args.repeats} repeat(s), interleaved; {d} s per loop; start method {args.start_method}",
        f"- load average at start {load_start}, at end {load_average()}; the run took {elapsed:.0f} s",
        "- versions: " + "; ".join(f"{LABEL[k]} {v}" for k, v in versions.items()),
    ]
    if skipped:
        head.append("- skipped: " + "; ".join(f"{LABEL[k]} ({v})" for k, v in skipped.items()))
    head.append("- cells: median over repeats (min–max); latency one-way = round trip / 2")
    # the summary and the targets last: what a terminal shows when the run ends
    report = ("\n".join(head) + "\n\n" + render(res, floors) + "\n" + render_summary(res, floors) + "\n"
              + render_targets(tg))
    print(report)
    if args.markdown:
        Path(args.markdown).write_text(report)
    failed = [(k, r) for k, runs in res.runs.items() for r in runs if not r.get("ok")]
    if args.json:
        doc = {
            "suite": "shmcomm benchmarks", "command": cmd, "argv": sys.argv, "cwd": os.getcwd(), "args": vars(args),
            "machine": info, "load_average_start": load_start, "load_average_end": load_average(),
            "versions": versions, "skipped": skipped, "params": {k: v for k, v in p.items() if k != "tcp_ports"},
            "elapsed_s": elapsed, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "floors": floors, "targets": tg, "results": [],
        }
        for k, runs in res.runs.items():
            m = res.meta[k]
            doc["results"].append({
                "group": k[0], "case": k[1], "library": k[2], "variant": k[3], "kind": m["kind"],
                "ok": all(r.get("ok") for r in runs),
                "loss": sum((r.get("loss") or 0) for r in runs if r.get("ok")),
                "lossy_by_design": any(r.get("lossy_by_design") for r in runs),
                "summary": {mt: s for mt in METRICS if (s := res.stat(k, mt)) is not None},
                "runs": runs,
            })
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o))
        print(f"\nJSON: {args.json}", file=sys.stderr)
    if args.plot:
        try:
            files = plot(res, floors, args.plot)
            print(f"charts: {', '.join(files)}", file=sys.stderr)
        except ImportError:
            print("charts: matplotlib is not installed (pip install matplotlib, or pip install .[bench]);"
                  " no PNG written", file=sys.stderr)
    if failed:
        print(f"{len(failed)} measurement(s) failed; their rows say why", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
