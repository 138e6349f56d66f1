#!/usr/bin/env python3
"""REQ/REP round-trip benchmark: shmcomm vs pyzmq REQ/REP (ipc://) vs multiprocessing.Pipe (duplex).

Process A (the requester) sends a 64-byte request carrying a sequence number; process B (the
replier) receives it and sends it back as the 64-byte reply; A checks that the reply carries the
sequence number of its request and records the round trip with time.perf_counter_ns. The report
gives p50 / p99 / p99.9 of the round trip and of one-way = round trip / 2, in microseconds.

* shmcomm: Requester.request_bytes(payload, timeout) (one C call for timeouts up to 0.1 s) against a
  Replier loop of reply_and_recv_bytes (the reply and the next receive in one C call, as serve() does).
* pyzmq: a REQ socket (A, connects) and a REP socket (B, binds) over ipc://.
* mp.Pipe: multiprocessing.Pipe(duplex=True), send_bytes / recv_bytes_into, as a baseline.

Variants say how the two sides wait: "blocking" (the library's own wait), "busy-wait" (poll with a
zero timeout in a loop); shmcomm also gets "blocking-5s" (request_bytes with its default 5 s
timeout) and "blocking-nospin" (Requester(spin_us=0)).

Run ``python benchmarks/bench_reqrep.py --help``; see benchmarks/README.md.
"""

from __future__ import annotations

import array
import multiprocessing as mp
import shutil
import sys
import tempfile
import time

from _common import (MSG_SIZE, SEQ, SPIN_CHECK_MASK, TAIL, BaseAdapter, BenchError, BenchTimeout,
                     ZmqEndpoint, _cell, _fmt, _ratio, add_process_options, add_repeats,
                     add_run_options, argument_parser, check_libraries, exit_status, failed_note,
                     json_doc, load_average, measure, met, multiprocessing_version, parse_cores,
                     parse_libs, parse_variants, report_header, rtt_result, run_group, selected,
                     shmcomm_version, skipped_row, summarize, table_row, without_samples,
                     write_json, zmq_version)

LIBS = ("shmcomm", "zmq", "pipe")
LIB_LABEL = {"shmcomm": "shmcomm", "zmq": "pyzmq REQ/REP ipc://", "pipe": "mp.Pipe duplex"}
LIB_VARIANTS = {
    "shmcomm": ("blocking", "blocking-5s", "blocking-nospin", "busy-wait"),
    "zmq": ("blocking", "busy-wait"),
    "pipe": ("blocking", "busy-wait"),
}
REF_VARIANT = {"blocking-5s": "blocking", "blocking-nospin": "blocking"}  # shmcomm row to compare with
TARGET_FACTOR = 10  # target: shmcomm p50 <= 1/10 of pyzmq's


class _Adapter(BaseAdapter):
    """Role A is the requester, B the replier. run() -> A: {"rtt_ns": bytes}; B: {"served": n, ...}.
    The loops are written out per library with everything bound to locals, so the numbers measure
    the library and not this file. Every wait is bounded by p["timeout"] (mp.Pipe's blocking
    receive excepted, see PipeAdapter) or, for shmcomm's request_bytes, by p["request_timeout"]."""

    def __init__(self, role: str, workload: str, variant: str, p: dict, data: dict):
        super().__init__(role, workload, variant, p, data)
        self.total = p["warmup"] + p["rounds"]

    def run(self) -> dict:
        if self.role == "A":
            rtt = self.request_loop(self.total)
            return {"rtt_ns": rtt[self.p["warmup"]:].tobytes()}
        return self.reply_loop(self.total)


def _reply_result(served, disorder, first_bad, expired=0) -> dict:
    return {"served": served, "disorder": disorder, "first_bad": first_bad, "expired": expired}


# ---- shmcomm ---------------------------------------------------------------------------------


class ShmcommAdapter(_Adapter):
    def setup(self):
        from shmcomm import Replier, Requester

        self.req = self.rep = None
        if self.role == "B":
            self.rep = Replier(self.p["name"], num_slots=self.p["depth"], slot_size=MSG_SIZE)
        else:
            spin = {"spin_us": 0} if self.variant == "blocking-nospin" else {}
            self.req = Requester(self.p["name"], timeout_connect=self.timeout, **spin)

    def close(self):
        for ep in (self.req, self.rep):
            if ep is not None:
                ep.close()

    def request_loop(self, total):
        now, pack, unpack = time.perf_counter_ns, SEQ.pack, SEQ.unpack_from
        tail = TAIL
        rtt = array.array("q", bytes(8 * total))
        if self.variant == "busy-wait":
            # Polls with recv_bytes(0): the cheapest poll (two C arguments).
            send, recv = self.req.send_bytes, self.req.recv_bytes
            rtmo, t_end = self.p["request_timeout"], [None]
            for i in range(total):
                msg = pack(i) + tail
                t0 = now()
                send(msg, rtmo)
                r = recv(0)
                spins = 0
                while r is None:
                    spins += 1
                    if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                        raise BenchTimeout(f"no reply for request {i}")
                    r = recv(0)
                t_end[0] = None
                t1 = now()
                rtt[i] = t1 - t0
                if unpack(r, 0)[0] != i or len(r) != MSG_SIZE:
                    raise BenchError(f"bad reply to request {i}: seq {unpack(r, 0)[0]}, {len(r)} bytes")
            return rtt
        request = self.req.request_bytes
        if self.variant == "blocking-5s":  # the library's default timeout (5 s): not the one-call path
            for i in range(total):
                msg = pack(i) + tail
                t0 = now()
                r = request(msg)
                t1 = now()
                rtt[i] = t1 - t0
                if unpack(r, 0)[0] != i or len(r) != MSG_SIZE:
                    raise BenchError(f"bad reply to request {i}: seq {unpack(r, 0)[0]}, {len(r)} bytes")
            return rtt
        rtmo = self.p["request_timeout"]  # <= 0.1 s: request_bytes is one C call
        for i in range(total):
            msg = pack(i) + tail
            t0 = now()
            r = request(msg, rtmo)  # raises SHMTimeoutError after rtmo
            t1 = now()
            rtt[i] = t1 - t0
            if unpack(r, 0)[0] != i or len(r) != MSG_SIZE:
                raise BenchError(f"bad reply to request {i}: seq {unpack(r, 0)[0]}, {len(r)} bytes")
        return rtt

    def reply_loop(self, total):
        # reply_and_recv_bytes: the reply to request i and the wait for request i + 1 in one C call
        # (what Replier.serve() uses). A reply whose requester gave up is discarded and counted by
        # the replier's stats()["expired"].
        serve, send, unpack = self.rep.reply_and_recv_bytes, self.rep.send_bytes, SEQ.unpack_from
        poll = self.rep.recv_bytes  # busy-wait: after the reply, poll with the cheapest call
        tmo, busy, t_end = self.timeout, self.variant == "busy-wait", [None]
        disorder, first_bad = 0, None
        reply = b""
        for i in range(total):
            if busy:
                m = serve(reply, 0)
                spins = 0
                while m is None:
                    spins += 1
                    if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                        raise BenchTimeout(f"no request {i}")
                    m = poll(0)
                t_end[0] = None
            else:
                m = serve(reply, tmo)
                if m is None:
                    raise BenchTimeout(f"no request {i}")
            reply = m
            if unpack(m, 0)[0] != i:
                disorder += 1
                if first_bad is None:
                    first_bad = (i, unpack(m, 0)[0])
        send(reply)  # the last reply
        expired = self.rep.stats()["expired"]
        return _reply_result(total, disorder, first_bad, expired)


# ---- pyzmq -----------------------------------------------------------------------------------


class ZmqAdapter(ZmqEndpoint, _Adapter):
    """REQ (A, connects) / REP (B, binds) over ipc://; RCVTIMEO/SNDTIMEO bound every wait."""

    def setup(self):
        self.zmq_open("REQ" if self.role == "A" else "REP", bind=self.role == "B")

    def request_loop(self, total):
        Again, NOBLOCK = self.zmq.Again, self.zmq.NOBLOCK
        send, recv_into = self.sock.send, self.sock.recv_into
        now, pack, unpack = time.perf_counter_ns, SEQ.pack, SEQ.unpack_from
        tail, buf = TAIL, bytearray(MSG_SIZE)
        rtt = array.array("q", bytes(8 * total))
        busy, t_end = self.variant == "busy-wait", [None]
        for i in range(total):
            msg = pack(i) + tail
            t0 = now()
            try:
                send(msg)
            except Again:
                raise BenchTimeout(f"send of request {i} timed out") from None
            if busy:
                spins = 0
                while True:
                    try:
                        n = recv_into(buf, flags=NOBLOCK)
                        break
                    except Again:
                        spins += 1
                        if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                            raise BenchTimeout(f"no reply for request {i}") from None
                t_end[0] = None
            else:
                try:
                    n = recv_into(buf)  # RCVTIMEO bounds it
                except Again:
                    raise BenchTimeout(f"no reply for request {i}") from None
            t1 = now()
            rtt[i] = t1 - t0
            if unpack(buf, 0)[0] != i or n != MSG_SIZE:
                raise BenchError(f"bad reply to request {i}: seq {unpack(buf, 0)[0]}, {n} bytes")
        return rtt

    def reply_loop(self, total):
        Again, NOBLOCK = self.zmq.Again, self.zmq.NOBLOCK
        send, recv, unpack = self.sock.send, self.sock.recv, SEQ.unpack_from
        busy, t_end = self.variant == "busy-wait", [None]
        disorder, first_bad = 0, None
        for i in range(total):
            if busy:
                spins = 0
                while True:
                    try:
                        m = recv(NOBLOCK)
                        break
                    except Again:
                        spins += 1
                        if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                            raise BenchTimeout(f"no request {i}") from None
                t_end[0] = None
            else:
                try:
                    m = recv()
                except Again:
                    raise BenchTimeout(f"no request {i}") from None
            send(m)
            if unpack(m, 0)[0] != i:
                disorder += 1
                if first_bad is None:
                    first_bad = (i, unpack(m, 0)[0])
        return _reply_result(total, disorder, first_bad)


# ---- multiprocessing.Pipe --------------------------------------------------------------------


class PipeAdapter(_Adapter):
    """multiprocessing.Pipe(duplex=True) (a Unix socket pair) created by the orchestrator; A and B
    each get one end. busy-wait: poll(0) in a loop; blocking: recv_bytes(_into) blocks in read(),
    which has no timeout: bounded by the watchdog and by EOF when the peer dies."""

    def setup(self):
        self.conn = self.data["conn"]

    def close(self):
        self.conn.close()

    def request_loop(self, total):
        send, recv_into, poll = self.conn.send_bytes, self.conn.recv_bytes_into, self.conn.poll
        now, pack, unpack = time.perf_counter_ns, SEQ.pack, SEQ.unpack_from
        tail, buf = TAIL, bytearray(MSG_SIZE)
        rtt = array.array("q", bytes(8 * total))
        busy, t_end = self.variant == "busy-wait", [None]
        for i in range(total):
            msg = pack(i) + tail
            t0 = now()
            send(msg)
            if busy:
                spins = 0
                while not poll(0):
                    spins += 1
                    if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                        raise BenchTimeout(f"no reply for request {i}")
                t_end[0] = None
            n = recv_into(buf)
            t1 = now()
            rtt[i] = t1 - t0
            if unpack(buf, 0)[0] != i or n != MSG_SIZE:
                raise BenchError(f"bad reply to request {i}: seq {unpack(buf, 0)[0]}, {n} bytes")
        return rtt

    def reply_loop(self, total):
        send, recv, poll, unpack = self.conn.send_bytes, self.conn.recv_bytes, self.conn.poll, SEQ.unpack_from
        busy, t_end = self.variant == "busy-wait", [None]
        disorder, first_bad = 0, None
        for i in range(total):
            if busy:
                spins = 0
                while not poll(0):
                    spins += 1
                    if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                        raise BenchTimeout(f"no request {i}")
                t_end[0] = None
            m = recv()
            send(m)
            if unpack(m, 0)[0] != i:
                disorder += 1
                if first_bad is None:
                    first_bad = (i, unpack(m, 0)[0])
        return _reply_result(total, disorder, first_bad)


ADAPTERS = {"shmcomm": ShmcommAdapter, "zmq": ZmqAdapter, "pipe": PipeAdapter}


# ---------------------------------------------------------------------------------------------
# Orchestrator
# ---------------------------------------------------------------------------------------------


def run_one(ctx, lib, variant, p) -> dict:
    """One measurement (fresh processes A and B). Never raises."""
    data, to_close = {}, []
    if lib == "pipe":
        end_a, end_b = ctx.Pipe(duplex=True)
        data = {"A": {"conn": end_a}, "B": {"conn": end_b}}
        to_close = [end_a, end_b]
    r = run_group(ctx, ADAPTERS[lib], "reqrep", variant, p, ["A", "B"], data,
                  go_order=["B", "A"], to_close=to_close)
    out = {k: v for k, v in r.items() if k != "results"}
    if not r.get("ok"):
        return out
    res = r["results"]
    out.update(rtt_result(res["A"]["rtt_ns"]))
    b = res["B"]
    total = p["warmup"] + p["rounds"]
    # A raises on the first reply that does not carry its request's sequence number, so reaching
    # here means every reply matched; B must have seen every request exactly once, in order.
    out["loss"] = total - b["served"]
    out.update({"replier_disorder": b["disorder"], "replier_first_bad": b["first_bad"],
                "replies_expired": b["expired"]})
    if out["loss"] or b["disorder"] or b["expired"]:
        out["ok"] = False
        out["error"] = (f"INVALID: replier served {b['served']} of {total}, out of order {b['disorder']}"
                        f" (first {b['first_bad']}), replies discarded {b['expired']}")
    return out


# (version, None) if importable and usable, else (None, reason)
CHECKS = {"shmcomm": lambda: shmcomm_version("Requester", "Replier"), "zmq": zmq_version,
          "pipe": multiprocessing_version}


COLS = ("rtt_p50_us", "rtt_p99_us", "rtt_p999_us", "p50_us", "p99_us", "p999_us")


def render_table(results: dict, order: list, skipped: dict) -> str:
    lines = [
        "| library | variant | round trip p50 µs | round trip p99 µs | round trip p99.9 µs "
        "| one-way p50 µs | one-way p99 µs | one-way p99.9 µs | p50 vs shmcomm | p99 vs shmcomm | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for lib in order:
        if lib in skipped:
            lines.append(skipped_row(LIB_LABEL[lib], skipped[lib], lines[1].count("|") - 1))
            continue
        for variant in LIB_VARIANTS[lib]:
            runs = results.get((lib, variant))
            if runs is None:
                continue
            ref = results.get(("shmcomm", REF_VARIANT.get(variant, variant)), [])
            s = {k: summarize(runs, k) for k in COLS}
            rs = {k: summarize(ref, k) for k in ("rtt_p50_us", "rtt_p99_us")}
            notes = [failed_note(runs) or "loss 0"]
            lines.append(table_row([
                LIB_LABEL[lib], variant, *(_cell(s[k], _fmt) for k in COLS),
                _ratio(s["rtt_p50_us"], rs["rtt_p50_us"]), _ratio(s["rtt_p99_us"], rs["rtt_p99_us"]),
            ], notes))
    return "\n".join(lines)


def target_checks(results: dict) -> list:
    """The target 'shmcomm p50 <= 1/10 of pyzmq's', per variant and best against best."""
    def med(lib, variant):
        s = summarize(results.get((lib, variant), []), "rtt_p50_us")
        return s["median"] if s else None

    checks = []
    pairs = [("blocking", "blocking", "blocking vs blocking"),
             ("busy-wait", "busy-wait", "busy-wait vs busy-wait")]
    shm_best = min(((med("shmcomm", v), v) for v in LIB_VARIANTS["shmcomm"] if med("shmcomm", v)), default=None)
    zmq_best = min(((med("zmq", v), v) for v in LIB_VARIANTS["zmq"] if med("zmq", v)), default=None)
    for sv, zv, what in pairs:
        s, z = med("shmcomm", sv), med("zmq", zv)
        if s is not None and z is not None:
            checks.append({"what": what, "shmcomm_variant": sv, "zmq_variant": zv, "shmcomm_p50_us": s,
                           "zmq_p50_us": z, "ratio": s / z, "met": s * TARGET_FACTOR <= z})
    if shm_best and zmq_best:
        s, sv = shm_best
        z, zv = zmq_best
        checks.append({"what": f"best vs best (shmcomm {sv}, pyzmq {zv})", "shmcomm_variant": sv,
                       "zmq_variant": zv, "shmcomm_p50_us": s, "zmq_p50_us": z, "ratio": s / z,
                       "met": s * TARGET_FACTOR <= z})
    return checks


def render_targets(checks: list) -> str:
    if not checks:
        return "_target not evaluated: shmcomm or pyzmq has no successful run_"
    lines = [f"Target: shmcomm round-trip p50 <= 1/{TARGET_FACTOR} of pyzmq's (ratio shmcomm ÷ pyzmq"
             f" <= {1 / TARGET_FACTOR:.2f}).\n",
             "| comparison | shmcomm p50 µs (round trip) | pyzmq p50 µs (round trip) | shmcomm ÷ pyzmq "
             "| pyzmq ÷ shmcomm | met |",
             "|---|---:|---:|---:|---:|---|"]
    for c in checks:
        lines.append(f"| {c['what']} | {_fmt(c['shmcomm_p50_us'])} | {_fmt(c['zmq_p50_us'])} "
                     f"| {c['ratio']:.3f} | ×{1 / c['ratio']:.1f} | {met(c['met'])} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argument_parser(__doc__, LIBS)
    ap.add_argument("--variants", default="all",
                    help="comma-separated subset of blocking,blocking-5s,blocking-nospin,busy-wait (default: all)")
    add_repeats(ap, rounds="round trips")
    ap.add_argument("--depth", type=int, default=16, help="shmcomm Replier num_slots (default 16, its default)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 repeat, 2000 rounds, 200 warm-up")
    add_process_options(ap, "cores for requester A and replier B, e.g. 0,1; 'none' disables pinning (default 0,1)")
    ap.add_argument("--request-timeout", type=float, default=0.1,
                    help="timeout passed to shmcomm's request_bytes in the blocking variants (default 0.1 s:"
                         " up to 0.1 s request_bytes is one C call)")
    add_run_options(ap, "write all raw numbers (incl. every round-trip sample) here", samples=True)
    a = ap.parse_args(argv)
    if a.quick:
        a.repeats, a.rounds, a.warmup = 1, 2_000, 200
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    libs = parse_libs(args.only, LIBS)
    if libs is None:
        return 2
    want_variants = parse_variants(args.variants)
    try:
        cores = parse_cores(args.cores, 2)
    except ValueError:
        print("--cores needs core numbers (A,B) or 'none'", file=sys.stderr)
        return 2
    if args.rounds < 1 or args.warmup < 0 or args.repeats < 1:
        print("--rounds and --repeats must be >= 1, --warmup >= 0", file=sys.stderr)
        return 2
    run_timeout = args.run_timeout or (60.0 + (args.rounds + args.warmup) / 500)

    cmd, info = report_header("shmcomm REQ/REP benchmark")
    print(f"- pinning: requester A on {cores[0] if cores else '-'}, replier B on {cores[1] if cores else '-'};"
          f" start method {args.start_method}")
    print(f"- request and reply {MSG_SIZE} B; {args.rounds} timed round trips after {args.warmup} warm-up;"
          f" repeats {args.repeats}; shmcomm Replier num_slots {args.depth}; request_bytes timeout"
          f" {args.request_timeout} s (blocking variants); wait bound {args.timeout} s, watchdog"
          f" {run_timeout:.0f} s per measurement")
    versions, skipped = check_libraries(libs, CHECKS, LIB_LABEL)

    p = {
        "rounds": args.rounds, "warmup": args.warmup, "depth": args.depth, "timeout": args.timeout,
        "request_timeout": args.request_timeout, "setup_timeout": max(30.0, 3 * args.timeout),
        "run_timeout": run_timeout, "role_cores": {"A": cores[0], "B": cores[1]} if cores else None,
        "ipc_dir": tempfile.mkdtemp(prefix="shmbench-"),  # for zmq's ipc:// files
    }
    ctx = mp.get_context(args.start_method)
    results: dict = {}
    t_start = time.monotonic()
    for rep in range(args.repeats):  # interleaved: repeat 1 of everything, then repeat 2...
        for lib, variant in selected(libs, skipped, LIB_VARIANTS, want_variants):
            r = measure(lambda: run_one(ctx, lib, variant, p), rep, args.repeats,
                        f"{LIB_LABEL[lib]:>20} {variant:<15}",
                        lambda r: (f"round trip p50 {r['rtt_p50_us']:.2f} µs p99 {r['rtt_p99_us']:.2f} µs"
                                   f" p99.9 {r['rtt_p999_us']:.2f} µs, loss {r['loss']}"))
            results.setdefault((lib, variant), []).append(r)
    elapsed = time.monotonic() - t_start
    shutil.rmtree(p["ipc_dir"], ignore_errors=True)

    checks = target_checks(results)
    print("## Results\n")
    print(render_table(results, libs, skipped))
    print()
    print("Round trip = request sent to reply received, measured by the requester (perf_counter_ns);"
          " one-way = round trip / 2. Cells: median over repeats (min–max). 'vs shmcomm' = this row's"
          " round trip ÷ shmcomm's of the same variant (blocking-5s and blocking-nospin compare with"
          " shmcomm blocking): above ×1 means slower than shmcomm. 'loss 0': every reply carried its"
          " request's sequence number and the replier saw every request once, in order.")
    print("\n## Target\n")
    print(render_targets(checks))
    print(f"\n_total {elapsed:.0f} s; load average at end: {load_average()}_")

    if args.json:
        doc = json_doc("reqrep", cmd, args, info, versions, skipped, p, elapsed, targets=checks, results=[])
        for (lib, variant), runs in results.items():
            if args.no_samples:
                runs = without_samples(runs)
            doc["results"].append({
                "library": lib, "variant": variant, "runs": runs,
                "summary": {k: summarize(runs, k) for k in COLS + ("rtt_mean_us", "mean_us")},
            })
        write_json(args.json, doc)
    return exit_status(r for runs in results.values() for r in runs)


if __name__ == "__main__":
    sys.exit(main())
