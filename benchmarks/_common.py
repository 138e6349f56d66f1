"""Helpers shared by the benchmarks in this directory (bench_pubsub.py, bench_reqrep.py,
bench_pipeline.py): message format, bounded waits, the adapter base classes, pinning, the process
orchestration, statistics, the command line, the report and the Markdown formatting. Standard
library only: nothing here may import a measured library at module level, because the worker
processes pin themselves to a core before any library starts threads (the pyzmq and version helpers
import theirs when called).

The measured loops themselves (each adapter's send/receive loops, busy-wait included) stay written
out in each script, with everything bound to locals: no per-message call goes through this file.
"""

from __future__ import annotations

import argparse
import array
import gc
import json
import math
import multiprocessing as mp
import os
import platform
import shlex
import statistics
import struct
import shutil
import sys
import tempfile
import time
import traceback

MSG_SIZE = 64
SEQ = struct.Struct("<Q")  # sequence number in the first 8 bytes of every message
SPIN_CHECK_MASK = 0x3FFF  # busy loops look at the clock once every 16384 empty polls

# Every message is built as a fresh `bytes` object (sequence number + filler), as an application
# producing data would.
TAIL = bytes([0xA5]) * (MSG_SIZE - SEQ.size)


class BenchTimeout(Exception):
    """A bounded wait inside a worker ran out."""


class BenchError(Exception):
    """A run produced wrong data (bad echo, bad sequence...)."""


def _tp_check(seq: int, expected: int, st: list) -> int:
    """Slow path for an unexpected sequence number; st = [loss, disorder, first gaps as
    (expected, got)]. Returns the next expected number."""
    if len(st[2]) < 20:
        st[2].append((expected, seq))
    if seq > expected:
        st[0] += seq - expected
        return seq + 1
    st[1] += 1
    return expected


class BaseAdapter:
    """Base of every adapter: built by group_worker() as cls(role, workload, variant, p, data) after
    pinning, then setup(), connect() twice, run() -> result dict, close()."""

    def __init__(self, role: str, workload, variant: str, p: dict, data: dict):
        self.role, self.workload, self.variant, self.p, self.data = role, workload, variant, p, data
        self.timeout = float(p["timeout"])

    def setup(self) -> None:  # create endpoints; the peer may not exist yet
        raise NotImplementedError

    def connect(self) -> None:
        """Runs twice, in lock-step with the peers, after all set up and before "go": a chance to
        finish connecting (iceoryx2 connects ports lazily, on send/receive)."""

    def run(self) -> dict:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _timed_out(self, t_end: list) -> bool:
        """Called once every SPIN_CHECK_MASK+1 empty polls; t_end is a 1-item list (lazy deadline:
        `self.timeout` seconds, armed at the first call)."""
        now = time.monotonic()
        if t_end[0] is None:
            t_end[0] = now + self.timeout
            return False
        return now > t_end[0]


class ZmqEndpoint:
    """Adapter mixin (before the adapter base): one pyzmq socket over ipc:// (a file in
    p["ipc_dir"]); LINGER 2 s, RCVTIMEO/SNDTIMEO = self.timeout bound every wait. close() closes it,
    terminates the context and, on the side that bound, removes the socket file."""

    def zmq_open(self, sock_type: str, bind: bool) -> None:
        """sock_type: a zmq socket type name ("PAIR", "PUSH", "REQ"...); bind: this side binds,
        the other connects (and reconnects by itself until the binder is there)."""
        import zmq

        self.zmq = zmq
        self.ctx = zmq.Context(io_threads=1)
        tmo_ms = int(self.timeout * 1000)
        self.path = os.path.join(self.p["ipc_dir"], f"{self.p['name']}.sock")
        addr = f"ipc://{self.path}"
        s = self.ctx.socket(getattr(zmq, sock_type))
        s.setsockopt(zmq.LINGER, 2000)
        s.setsockopt(zmq.RCVTIMEO, tmo_ms)
        s.setsockopt(zmq.SNDTIMEO, tmo_ms)
        if bind:
            s.bind(addr)
        else:
            s.connect(addr)
        self.sock, self.binder = s, bind

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()
        if self.binder:  # the binder removes its socket file
            try:
                os.unlink(self.path)
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------


def _pin(core) -> str:
    if core is None:
        return "unpinned"
    try:
        os.sched_setaffinity(0, {core})  # before any library starts threads (zmq's I/O thread)
        return f"core {core}"
    except (AttributeError, OSError) as e:
        return f"unpinned ({e})"


def _ctrl_recv(ctrl, timeout: float, what: str):
    if not ctrl.poll(timeout):
        raise BenchTimeout(f"orchestrator did not send {what!r} within {timeout:.0f} s")
    return ctrl.recv()


def group_worker(role, adapter_cls, workload, variant, p, ctrl, data):
    """Entry point of every process of run_group(). The adapter (a class of the calling script) is
    built here, after pinning: adapter_cls(role, workload, variant, p, data) with setup(),
    connect() (twice, in lock-step with the other processes), run() -> result dict, close()."""
    adapter = None
    try:
        pinned = _pin(p["role_cores"].get(role) if p.get("role_cores") else None)
        adapter = adapter_cls(role, workload, variant, p, data)
        adapter.setup()
        gc.collect()
        ctrl.send(("ready", pinned))
        for _ in range(2):
            _ctrl_recv(ctrl, p["setup_timeout"], "connect")
            adapter.connect()
            ctrl.send(("connected", None))
        gc.disable()
        _ctrl_recv(ctrl, p["setup_timeout"], "go")
        result = adapter.run()
        ctrl.send(("result", result))
        gc.enable()
        # keep the endpoints open until the orchestrator has every result (a sender that
        # disappears early could take undelivered messages with it)
        _ctrl_recv(ctrl, p["run_timeout"], "exit")
    except BaseException as e:  # noqa: BLE001 - everything goes back to the orchestrator
        try:
            ctrl.send(("error", f"{role}: {type(e).__name__}: {e}", traceback.format_exc()))
        except Exception:
            pass
    finally:
        if adapter is not None:
            try:
                adapter.close()
            except Exception:
                pass


# ---------------------------------------------------------------------------------------------
# Orchestrator side
# ---------------------------------------------------------------------------------------------


def _stop(procs, grace: float = 3.0):
    """Join the processes this run started; terminate (then kill) any that do not exit."""
    deadline = time.monotonic() + grace
    for pr in procs:
        pr.join(max(0.0, deadline - time.monotonic()))
    for pr in procs:
        if pr.is_alive():
            pr.terminate()
            pr.join(2.0)
        if pr.is_alive():
            pr.kill()
            pr.join(2.0)


def collect(ctrls: dict, timeout, what, grace=None) -> dict:
    """Wait (bounded) for message `what` from every process in ctrls ({role: connection}),
    whichever comes first.

    Returns {role: payload, ...}, or {"error": ..., "traceback": ...} as soon as any process
    reports an error, dies, or the deadline passes. With `grace`, once one process has reported,
    the others get at most `grace` more seconds (a sender stuck on a receiver that gave up must not
    hold the run for the whole watchdog).
    """
    from multiprocessing.connection import wait

    deadline = time.monotonic() + timeout
    pending = {c: role for role, c in ctrls.items()}
    got = {}
    first_at = deadline  # when the first process reported
    while pending:
        if got and grace is not None:  # the peer of a finished process should follow promptly
            deadline = min(deadline, first_at + grace)
        left = deadline - time.monotonic()
        if left <= 0:
            return {"error": f"timeout: process {'/'.join(sorted(pending.values()))} sent no {what!r}"
                             f" within {timeout:.0f} s"}
        for c in wait(list(pending), left):
            role = pending.pop(c)
            try:
                msg = c.recv()
            except (EOFError, OSError):
                return {"error": f"process {role} died before sending {what!r}"}
            if msg[0] != what:
                return {"error": msg[1], "traceback": msg[2] if len(msg) > 2 else ""}
            if not got:
                first_at = time.monotonic()
            got[role] = msg[1]
    return got


_run_counter = 0


def run_group(ctx, adapter_cls, workload, variant, p, roles, data=None, go_order=None,
              to_close=()) -> dict:
    """One measurement with one fresh process per role (each pinned to p["role_cores"][role]):
    all set up and report ready, two lock-step connect rounds, then "go" in go_order (receivers
    first). Returns {"ok": True, "results": {role: result}, "pinning": {...}} or {"ok": False,
    "error": ..., "traceback": ...}. Never raises; every wait is bounded (p["setup_timeout"],
    p["run_timeout"] and a grace of 2 * p["timeout"] + 5 s once the first process reported)."""
    global _run_counter
    _run_counter += 1
    q = dict(p)
    q["name"] = f"shmbench_{os.getpid()}_{_run_counter}"
    data = data or {}
    ctrls, child_ends, procs = {}, [], []
    for role in roles:
        mine, theirs = ctx.Pipe()
        ctrls[role] = mine
        child_ends.append(theirs)
        procs.append(ctx.Process(target=group_worker, name=f"bench-{role}",
                                 args=(role, adapter_cls, workload, variant, q, theirs, data.get(role, {}))))
    out = {"ok": False}
    try:
        for pr in procs:
            pr.daemon = True
            pr.start()
        for c in child_ends + list(to_close):
            c.close()  # the children hold their own copies; EOF now reaches a peer whose partner died
        ready = collect(ctrls, p["setup_timeout"], "ready")
        if "error" in ready:
            out["error"], out["traceback"] = ready["error"], ready.get("traceback", "")
            return out
        out["pinning"] = ready
        for _ in range(2):  # two lock-step rounds of adapter.connect()
            for role in roles:
                ctrls[role].send("connect")
            conn = collect(ctrls, p["setup_timeout"], "connected")
            if "error" in conn:
                out["error"], out["traceback"] = conn["error"], conn.get("traceback", "")
                return out
        for role in go_order or roles:
            ctrls[role].send("go")
        res = collect(ctrls, p["run_timeout"], "result", grace=2 * p["timeout"] + 5)
        if "error" in res:
            out["error"], out["traceback"] = res["error"], res.get("traceback", "")
            return out
        out["results"] = res
        out["ok"] = True
        return out
    except Exception as e:  # noqa: BLE001
        out["error"] = f"{type(e).__name__}: {e}"
        return out
    finally:
        for c in ctrls.values():
            try:
                c.send("exit")
            except Exception:
                pass
        _stop(procs)
        for c in ctrls.values():
            c.close()
        for role, pr in zip(roles, procs):
            if pr.exitcode not in (0, None) and out.get("ok"):
                out.setdefault("warnings", []).append(f"{role} exit code {pr.exitcode}")


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


def _pct(sorted_vals, q):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, math.ceil(q * len(sorted_vals)) - 1))
    return sorted_vals[k]


def rtt_stats(rtt) -> dict:
    """Round-trip statistics in µs (rtt_*) and the same halved (one-way, p50_us...)."""
    s = sorted(rtt)
    us = lambda v: v / 1000.0  # noqa: E731
    out = {
        "n": len(s),
        "rtt_p50_us": us(_pct(s, 0.50)),
        "rtt_p99_us": us(_pct(s, 0.99)),
        "rtt_p999_us": us(_pct(s, 0.999)),
        "rtt_min_us": us(s[0]) if s else float("nan"),
        "rtt_max_us": us(s[-1]) if s else float("nan"),
        "rtt_mean_us": us(statistics.fmean(s)) if s else float("nan"),
    }
    out.update({k[4:]: v / 2 for k, v in out.items() if k.startswith("rtt_")})
    return out


def rtt_result(blob: bytes, round_trip: bool = True) -> dict:
    """Statistics of the round trips in ns that an adapter packed as bytes of an array('q'), and
    the samples themselves ("samples_rtt_ns"). round_trip=False: the one-way figures only."""
    rtt = array.array("q")
    rtt.frombytes(blob)
    out = rtt_stats(rtt)
    if not round_trip:
        out = {k: v for k, v in out.items() if not k.startswith("rtt_")}
    out["samples_rtt_ns"] = rtt.tolist()
    return out


def summarize(runs: list, key: str):
    vals = [r[key] for r in runs if r.get("ok") and r.get(key) is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


# ---------------------------------------------------------------------------------------------
# Environment and formatting
# ---------------------------------------------------------------------------------------------


def machine_info() -> dict:
    cpu, virtualized = "unknown", None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                low = line.lower()
                if low.startswith("model name") and cpu == "unknown":
                    cpu = line.split(":", 1)[1].strip()
                elif low.startswith("flags") and virtualized is None:
                    virtualized = "hypervisor" in low.split(":", 1)[1].split()
    except OSError:
        pass
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        allowed = None
    gov = None
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") as f:
            gov = f.read().strip()
    except OSError:
        pass
    return {
        "cpu": cpu,
        "virtualized": virtualized,
        "cpus_online": os.cpu_count(),
        "cpus_allowed": allowed,
        "scaling_governor": gov,
        "kernel": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
    }


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine_lines(info: dict) -> list:
    """The CPU and kernel lines of a report header."""
    return [
        f"- CPU: {info['cpu']} ({info['cpus_online']} online, allowed {info['cpus_allowed']},"
        f" governor {info['scaling_governor']}"
        f"{', virtual machine (hypervisor flag)' if info['virtualized'] else ''})",
        f"- kernel: {info['kernel']} ({info['machine']}); Python: {info['python']}",
    ]


def shmcomm_version(*attrs, library: bool = True) -> tuple:
    """(version string, None) if shmcomm imports and has attrs, else (None, reason). library: add
    libshm's version and SHMCOMM_LIBRARY."""
    try:
        import shmcomm

        for attr in attrs:
            if not hasattr(shmcomm, attr):
                return None, f"shmcomm has no {attr}"
        ver = getattr(shmcomm, "__version__", "unknown")
        if not library:
            return ver, None
        try:
            ver += f" (libshm {shmcomm.library_version()}"
            ver += f", SHMCOMM_LIBRARY={os.environ['SHMCOMM_LIBRARY']})" if os.environ.get("SHMCOMM_LIBRARY") else ")"
        except Exception:
            pass
        return ver, None
    except Exception as e:  # noqa: BLE001 - ImportError, OSError (missing .so), ...
        return None, f"{type(e).__name__}: {e}"


def zmq_version() -> tuple:
    """(version, None) if pyzmq imports and has Socket.recv_into, else (None, reason)."""
    import zmq

    if not hasattr(zmq.Socket, "recv_into"):
        return None, f"pyzmq {zmq.__version__} lacks Socket.recv_into (needs >= 26.4)"
    return f"pyzmq {zmq.__version__} (libzmq {zmq.zmq_version()})", None


def multiprocessing_version() -> tuple:
    return f"multiprocessing (Python {platform.python_version()})", None


def package_version(module: str, dist: str) -> tuple:
    """Import `module`; (the installed version of distribution `dist` or "unknown", None)."""
    import importlib
    from importlib.metadata import version

    importlib.import_module(module)
    try:
        return version(dist), None
    except Exception:
        return "unknown", None


def check_libraries(libs: list, checks: dict, labels: dict) -> tuple:
    """Run checks[lib]() -> (version, None) or (None, reason) for every library, print a "- label:
    version or reason" line each and a blank line. Returns (versions, skipped) as {lib: text}."""
    versions, skipped = {}, {}
    for lib in libs:
        try:
            ver, why = checks[lib]()
        except Exception as e:  # noqa: BLE001 - ImportError, OSError (missing .so), ...
            ver, why = None, f"{type(e).__name__}: {e}"
        if ver is None:
            skipped[lib] = f"not importable: {why}"
        else:
            versions[lib] = ver
    for lib in libs:
        print(f"- {labels[lib]}: {versions.get(lib) or skipped[lib]}")
    print(flush=True)
    return versions, skipped


def _fmt(v, digits=2):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def _fmt_rate(v):
    if v is None:
        return "–"
    return f"{v / 1e6:.3f} M" if v >= 1e6 else f"{v / 1e3:.1f} k"


def _cell(s, fmt):
    if s is None:
        return "–"
    if s["n"] == 1:
        return fmt(s["median"])
    return f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"


def _ratio(s, ref):
    if s is None or ref is None or not ref["median"]:
        return "n/a"
    return f"×{s['median'] / ref['median']:.2f}"


def table_row(cells: list, notes: list) -> str:
    """A Markdown table row: the cells, then the notes joined by "; " as the last cell."""
    return "| " + " | ".join([*cells, "; ".join(notes).replace("|", "/")]) + " |"


def skipped_row(label: str, reason: str, ncols: int) -> str:
    """The row of a library that could not be imported, in a table of ncols columns."""
    return f"| {label} | – | skipped |" + " |" * (ncols - 4) + f" {reason} |"


def failed_note(runs: list, prefix: str = ""):
    """"{prefix}k/n failed (first error)" if any of runs failed, else None."""
    bad = [r for r in runs if not r.get("ok")]
    if not bad:
        return None
    return f"{prefix}{len(bad)}/{len(runs)} failed ({bad[0].get('error', '?')})"


def met(flag: bool) -> str:
    return "yes" if flag else "**no**"


def parse_cores(text: str, n: int):
    """'none' -> None; 'a,b[,c...]' -> list of n cores (the last given repeats)."""
    if text.lower() == "none":
        return None
    cores = [int(c) for c in text.split(",") if c.strip()]
    if not cores:
        raise ValueError("no core given")
    return (cores + [cores[-1]] * n)[:n]



# ---------------------------------------------------------------------------------------------
# Command line and the run loop
# ---------------------------------------------------------------------------------------------


def argument_parser(doc: str, libs: tuple) -> argparse.ArgumentParser:
    """A parser with the script's docstring as description and --only."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(libs),
                    help=f"comma-separated subset of {','.join(libs)} (default: all)")
    return ap


def add_repeats(ap, rounds: str = None) -> None:
    """--repeats and, with rounds (what a round is called in the help), --rounds and --warmup."""
    ap.add_argument("--repeats", type=int, default=3, help="repetitions of every measurement (default 3)")
    if rounds:
        ap.add_argument("--rounds", type=int, default=20_000, help=f"timed {rounds} (default 20000)")
        ap.add_argument("--warmup", type=int, default=2_000, help="untimed warm-up round trips (default 2000)")


def add_process_options(ap, cores_help: str) -> None:
    """--cores and --timeout."""
    ap.add_argument("--cores", default="0,1", help=cores_help)
    ap.add_argument("--timeout", type=float, default=5.0,
                    help="bound of every single wait inside a worker, seconds (default 5)")


def add_run_options(ap, json_help: str, samples: bool) -> None:
    """--run-timeout, --start-method, --json and, with samples, --no-samples."""
    ap.add_argument("--run-timeout", type=float, default=None,
                    help="watchdog for one whole measurement, seconds (default: derived from sizes)")
    ap.add_argument("--start-method", choices=("spawn", "fork", "forkserver"), default="spawn")
    ap.add_argument("--json", metavar="FILE", help=json_help)
    if samples:
        ap.add_argument("--no-samples", action="store_true", help="leave the per-message samples out of --json")


def parse_libs(text: str, libs: tuple):
    """The libraries named in --only, or None (after saying why on stderr) if one is unknown."""
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in chosen if x not in libs]
    if bad:
        print(f"unknown library in --only: {bad}; choose from {libs}", file=sys.stderr)
        return None
    return chosen


def parse_variants(text: str):
    """--variants: None for "all", else the set of names."""
    return None if text == "all" else {v.strip() for v in text.split(",")}


def selected(libs: list, skipped: dict, lib_variants: dict, want_variants):
    """(lib, variant) of every measurement to run, in report order."""
    for lib in libs:
        if lib in skipped:
            continue
        for variant in lib_variants[lib]:
            if want_variants is not None and variant not in want_variants:
                continue
            yield lib, variant


def measure(run, rep: int, repeats: int, what: str, describe) -> dict:
    """r = run() (one measurement, never raises), stamped with "repeat" and "wall_s"; prints the
    progress line "[rep/repeats] what describe(r)  (wall s)" (or the failure and its traceback) on
    stderr. Returns r."""
    t0 = time.monotonic()
    r = run()
    r["repeat"] = rep
    r["wall_s"] = round(time.monotonic() - t0, 3)
    desc = describe(r) if r.get("ok") else f"FAILED: {r.get('error')}"
    print(f"[{rep + 1}/{repeats}] {what} {desc}  ({r['wall_s']:.1f} s)", file=sys.stderr, flush=True)
    if not r.get("ok") and r.get("traceback"):
        print(r["traceback"], file=sys.stderr)
    return r


# ---------------------------------------------------------------------------------------------
# The two-process ping-pong + throughput scripts (bench_pubsub.py, bench_pair.py)
# ---------------------------------------------------------------------------------------------


def add_pingpong_throughput_args(ap, workloads: tuple, variants_help: str, depth_help: str) -> None:
    """--workloads, --variants, --repeats/--rounds/--warmup, --messages, --depth, --quick, --cores,
    --timeout, --run-timeout, --start-method, --json, --no-samples."""
    ap.add_argument("--workloads", default=",".join(workloads), help="pingpong,throughput (default: both)")
    ap.add_argument("--variants", default="all", help=variants_help)
    add_repeats(ap, rounds="ping-pong round trips")
    ap.add_argument("--messages", type=int, default=1_000_000, help="throughput messages (default 1000000)")
    ap.add_argument("--depth", type=int, default=1024, help=depth_help)
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 repeat, 2000 rounds, 200 warm-up, 100000 messages")
    add_process_options(ap, "cores for process A and B, e.g. 0,1; 'none' disables pinning (default 0,1)")
    add_run_options(ap, "write all raw numbers (incl. every latency sample) here", samples=True)


def apply_quick(a):
    """--quick: 1 repeat, 2000 rounds, 200 warm-up, 100000 messages. Returns a."""
    if a.quick:
        a.repeats, a.rounds, a.warmup, a.messages = 1, 2_000, 200, 100_000
    return a


def pingpong_throughput_plan(args, libs_all: tuple, workloads_all: tuple):
    """(libs, workloads, wanted variants, cores, run timeout) from the arguments, or None after
    saying on stderr what is wrong with them."""
    libs = parse_libs(args.only, libs_all)
    if libs is None:
        return None
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if any(w not in workloads_all for w in workloads):
        print(f"unknown workload in --workloads: {workloads}", file=sys.stderr)
        return None
    cores = None if args.cores.lower() == "none" else [int(c) for c in args.cores.split(",")]
    if cores is not None and len(cores) != 2:
        print("--cores needs two core numbers (A,B) or 'none'", file=sys.stderr)
        return None
    run_timeout = args.run_timeout or (60.0 + args.messages / 20_000 + (args.rounds + args.warmup) / 500)
    return libs, workloads, parse_variants(args.variants), cores, run_timeout


def pingpong_throughput_params(args, cores, run_timeout: float, ipc_dir: str) -> dict:
    """What every worker of these scripts gets."""
    return {"rounds": args.rounds, "warmup": args.warmup, "n_msgs": args.messages, "depth": args.depth,
            "timeout": args.timeout, "setup_timeout": max(30.0, 3 * args.timeout), "run_timeout": run_timeout,
            "cores": cores, "ipc_dir": ipc_dir}


def run_repeats(repeats: int, plan, run_one, label, describe) -> tuple:
    """Runs run_one(lib, variant, wl) for every (lib, variant, wl) of plan, repeats outermost (drifting
    machine load spreads over every row). Returns ({(lib, variant): {wl: [result, ...]}}, seconds)."""
    results: dict = {}
    t_start = time.monotonic()
    for rep in range(repeats):
        for lib, variant, wl in plan:
            r = measure(lambda: run_one(lib, variant, wl), rep, repeats, label(lib, variant, wl),
                        lambda r: describe(r, wl))
            results.setdefault((lib, variant), {}).setdefault(wl, []).append(r)
    return results, time.monotonic() - t_start


def run_pingpong_throughput(args, cores, run_timeout: float, libs: list, skipped: dict, want_variants,
                            workloads: list, spec: tuple, run_one, label) -> tuple:
    """Measures every (library, variant, workload) that a ping-pong/throughput script selected, in fresh
    processes (args.start_method), args.repeats times. spec = (LIB_VARIANTS, VARIANT_WORKLOADS,
    WORKLOADS, describe) of the script; run_one(ctx, lib, workload, variant, p) runs one measurement,
    label(lib, variant, wl) names it. Returns (results, seconds, p) as run_repeats, with the parameters."""
    lib_variants, variant_workloads, all_workloads, describe = spec
    p = pingpong_throughput_params(args, cores, run_timeout,
                                   tempfile.mkdtemp(prefix="shmbench-"))  # for zmq's ipc:// files
    ctx = mp.get_context(args.start_method)
    plan = [(lib, variant, wl) for lib, variant in selected(libs, skipped, lib_variants, want_variants)
            for wl in workloads if wl in variant_workloads.get(variant, all_workloads)]
    try:
        results, elapsed = run_repeats(args.repeats, plan,
                                       lambda lib, variant, wl: run_one(ctx, lib, wl, variant, p), label, describe)
    finally:
        shutil.rmtree(p["ipc_dir"], ignore_errors=True)
    return results, elapsed, p


def results_json(results: dict, no_samples: bool, latency_keys: tuple) -> list:
    """The "results" entries of the JSON document: every run, and the summaries of latency_keys
    (ping-pong) or msgs_per_s (throughput)."""
    out = []
    for (lib, variant), per_wl in results.items():
        entry: dict = {"library": lib, "variant": variant, "summary": {}, "runs": {}}
        for wl, runs in per_wl.items():
            if no_samples:
                runs = without_samples(runs)
            entry["runs"][wl] = runs
            keys = latency_keys if wl == "pingpong" else ("msgs_per_s",)
            entry["summary"][wl] = {k: summarize(runs, k) for k in keys}
        out.append(entry)
    return out


def exit_status(runs) -> int:
    """1 if any of the runs failed, else 0."""
    return 1 if any(not r.get("ok") for r in runs) else 0


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def report_header(title: str, load: bool = True) -> tuple:
    """Print the report's title, command, working directory, machine (and, with load, the load
    average). Returns (command, machine_info())."""
    info = machine_info()
    cmd = shlex.join([sys.executable] + sys.argv)
    print(f"# {title}\n")
    print(f"- command: `{cmd}`")
    print(f"- cwd: `{os.getcwd()}`")
    for line in machine_lines(info):
        print(line)
    if load:
        print(f"- load average at start: {load_average()}")
    return cmd, info


def json_doc(benchmark, cmd: str, args, info: dict, versions: dict, skipped: dict, p: dict,
             elapsed: float, **more) -> dict:
    """The head of a --json document (with "benchmark" first unless it is None), then `more`."""
    doc = {"benchmark": benchmark} if benchmark is not None else {}
    doc.update({
        "command": cmd, "argv": sys.argv, "args": vars(args), "machine": info, "versions": versions,
        "skipped": skipped, "params": p, "message_size": MSG_SIZE, "elapsed_s": elapsed,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    doc.update(more)
    return doc


def write_json(path: str, doc: dict) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(f"\nraw numbers: {path}")


def without_samples(runs: list) -> list:
    """The runs without their per-message samples (--no-samples)."""
    return [{k: v for k, v in r.items() if k != "samples_rtt_ns"} for r in runs]
