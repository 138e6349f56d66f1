#!/usr/bin/env python3
"""PUSH/PULL work-queue throughput benchmark: shmcomm vs multiprocessing.Queue vs faster-fifo.

One pusher process sends N 64-byte items (an 8-byte sequence number and filler) as fast as each
library's lossless, blocking send allows; 1 or 2 puller processes take them. Every puller records
which sequence numbers it got; the orchestrator checks that the pullers together got every item
exactly once (no loss, no duplicate) and that each puller got its items in queue order. Throughput is
items/s from the first item taken by any puller to the end-of-stream marker (one per puller, queued
after the N items).

* shmcomm: Pusher / Puller. "single": send_bytes / recv_bytes; "single-into": send_bytes / recv_into
  (a preallocated bytearray); "batch": send_many_bytes / recv_many_bytes (256 per call).
* mp.Queue: multiprocessing.Queue(maxsize=depth), put / get (pickles every item; a feeder thread in
  the pusher writes to a pipe).
* faster-fifo: faster_fifo.Queue sized for `depth` items, with a raw-bytes codec (dumps=loads=bytes,
  no pickling, as shmcomm's *_bytes calls): "single": put / get; "batch": put_many / get_many (256).

Run ``python benchmarks/bench_pipeline.py --help``; see benchmarks/README.md.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import sys
import time

from _common import (MSG_SIZE, SEQ, TAIL, BaseAdapter, BenchTimeout, _cell, _fmt_rate, _ratio,
                     add_process_options, add_repeats, add_run_options, argument_parser,
                     check_libraries, exit_status, failed_note, json_doc, load_average, measure,
                     met, multiprocessing_version, package_version, parse_cores, parse_libs,
                     parse_variants, report_header, run_group, selected, shmcomm_version,
                     skipped_row, summarize, table_row, write_json)

LIBS = ("shmcomm", "mpqueue", "fasterfifo")
LIB_LABEL = {"shmcomm": "shmcomm", "mpqueue": "mp.Queue", "fasterfifo": "faster-fifo"}
LIB_VARIANTS = {
    "shmcomm": ("single", "single-into", "batch"),
    "mpqueue": ("single",),
    "fasterfifo": ("single", "batch"),
}
API = {
    ("shmcomm", "single"): "send_bytes / recv_bytes",
    ("shmcomm", "single-into"): "send_bytes / recv_into",
    ("shmcomm", "batch"): "send_many_bytes / recv_many_bytes",
    ("mpqueue", "single"): "put / get",
    ("fasterfifo", "single"): "put / get",
    ("fasterfifo", "batch"): "put_many / get_many",
}
REF_VARIANT = {"single-into": "single"}  # shmcomm row each row is compared with
PULLER_COUNTS = (1, 2)
STOP = (1 << 64) - 1  # sequence number of the end-of-stream marker (one per puller, after the N items)
STOP_MSG = SEQ.pack(STOP) + TAIL
WAIT = 0.2  # pullers wait in slices of this many seconds, to notice that the stream ended
TARGET_MPQ = 5.0  # targets: shmcomm >= 5x mp.Queue, and > faster-fifo


def _roles(pullers: int) -> list:
    return ["P"] + [f"C{i + 1}" for i in range(pullers)]


class _Adapter(BaseAdapter):
    """Role P pushes n items then one STOP per puller; roles C1, C2... pull (the workload is the
    number of pullers). run() -> P: send times; C*: what the puller got (see _pull_result). The loops
    are written out per library with everything bound to locals. Every wait is bounded: pushes by
    p["timeout"]; pulls wait in WAIT slices and give up after p["timeout"] seconds without progress."""

    def __init__(self, role: str, workload: int, variant: str, p: dict, data: dict):
        super().__init__(role, workload, variant, p, data)
        self.pullers = workload
        self.n, self.batch = p["n_msgs"], p["batch"]
        self.stops = data.get("stops")  # shared counter of STOP markers taken (pullers only)

    def run(self) -> dict:
        return self.push(self.n) if self.role == "P" else self.pull(self.n)

    # helpers for the slow paths (not per item)
    def _stream_over(self, t_end: list, last: int) -> bool:
        """After an empty WAIT slice: True when every STOP was taken (by other pullers), raises
        BenchTimeout after p["timeout"] s without progress."""
        if self.stops.value >= self.pullers:
            return True
        now = time.monotonic()
        if t_end[0] is None or t_end[1] != last:
            t_end[0], t_end[1] = now + self.timeout, last
            return False
        if now > t_end[0]:
            raise BenchTimeout(f"puller {self.role}: no item for {self.timeout} s (last seq {last})")
        return False

    def _took_stops(self, k: int) -> None:
        with self.stops.get_lock():
            self.stops.value += k


def _slow(seq: int, n: int, seen: bytearray, st: list) -> None:
    """An item that is not the next in queue order for this puller. st = [disorder, dup, bad, first
    anomalies]."""
    if len(st[3]) < 20:
        st[3].append(seq)
    if seq >= n:
        st[2] += 1  # not a sequence number we sent
    elif seen[seq]:
        st[1] += 1  # this puller got it twice
    else:
        seen[seq] = 1
        st[0] += 1  # got it after a later one


def _pull_result(seen, st, t_first, t_stop, stops) -> dict:
    return {"seen": bytes(seen), "distinct": seen.count(1), "disorder": st[0], "dup": st[1],
            "bad": st[2], "anomalies": st[3], "t_first": t_first, "t_stop": t_stop, "stops": stops}


# ---- shmcomm ---------------------------------------------------------------------------------


class ShmcommAdapter(_Adapter):
    def setup(self):
        from shmcomm import Puller, Pusher

        self.ep = None
        if self.role == "P":
            self.ep = Pusher(self.p["name"], num_slots=self.p["depth"], slot_size=MSG_SIZE)
        else:
            self.ep = Puller(self.p["name"], timeout_connect=self.timeout)

    def close(self):
        if self.ep is not None:
            self.ep.close()

    def push(self, n):
        send, pack, now = self.ep.send_bytes, SEQ.pack, time.perf_counter_ns
        tail, tmo, batch = TAIL, self.timeout, self.batch
        t0 = now()
        if self.variant == "batch":
            send_many = self.ep.send_many_bytes
            for start in range(0, n, batch):
                send_many([pack(i) + tail for i in range(start, min(n, start + batch))],
                          block=True, timeout=tmo)  # raises SHMTimeoutError after tmo
        else:
            for i in range(n):
                msg = pack(i) + tail
                send(msg, block=True, timeout=tmo)  # raises SHMTimeoutError after tmo
        t1 = now()
        for _ in range(self.pullers):
            send(STOP_MSG, block=True, timeout=tmo)
        return {"send_t0": t0, "send_t1": t1}

    def pull(self, n):
        unpack, now = SEQ.unpack_from, time.perf_counter_ns
        seen, st, last, t_first, t_stop, stops, t_end = bytearray(n), [0, 0, 0, []], -1, None, None, 0, [None, None]
        if self.variant == "batch":
            recv_many, batch = self.ep.recv_many_bytes, self.batch
            while True:
                got = recv_many(batch, WAIT)
                if not got:
                    if self._stream_over(t_end, last):
                        break
                    continue
                if t_first is None:
                    t_first = now()
                for m in got:
                    seq = unpack(m, 0)[0]
                    if last < seq < n:
                        seen[seq] = 1
                        last = seq
                    elif seq == STOP:
                        stops += 1
                    else:
                        _slow(seq, n, seen, st)
                if stops:
                    t_stop = now()
                    self._took_stops(stops)
                    break
        elif self.variant == "single-into":
            recv_into, buf = self.ep.recv_into, bytearray(MSG_SIZE)
            while True:
                if recv_into(buf, WAIT) is None:
                    if self._stream_over(t_end, last):
                        break
                    continue
                seq = unpack(buf, 0)[0]
                if last < seq < n:
                    seen[seq] = 1
                    last = seq
                    if t_first is None:
                        t_first = now()
                elif seq == STOP:
                    t_stop, stops = now(), 1
                    self._took_stops(1)
                    break
                else:
                    _slow(seq, n, seen, st)
        else:
            recv = self.ep.recv_bytes
            while True:
                m = recv(WAIT)
                if m is None:
                    if self._stream_over(t_end, last):
                        break
                    continue
                seq = unpack(m, 0)[0]
                if last < seq < n:
                    seen[seq] = 1
                    last = seq
                    if t_first is None:
                        t_first = now()
                elif seq == STOP:
                    t_stop, stops = now(), 1
                    self._took_stops(1)
                    break
                else:
                    _slow(seq, n, seen, st)
        return _pull_result(seen, st, t_first, t_stop, stops)


# ---- multiprocessing.Queue and faster-fifo ---------------------------------------------------


class QueueAdapter(_Adapter):
    """multiprocessing.Queue or faster_fifo.Queue, created by the orchestrator and handed to every
    process. Both raise queue.Full / queue.Empty when a timed put / get runs out."""

    def setup(self):
        self.q = self.data["queue"]

    def close(self):
        if self.role == "P" and hasattr(self.q, "cancel_join_thread"):
            # mp.Queue: every item is through once the pullers took the end markers (the pusher only
            # closes after the orchestrator got every result); a failed run must not hang here
            self.q.cancel_join_thread()

    def push(self, n):
        put, pack, now = self.q.put, SEQ.pack, time.perf_counter_ns
        tail, tmo, batch = TAIL, self.timeout, self.batch
        t0 = now()
        try:
            if self.variant == "batch":
                put_many = self.q.put_many
                for start in range(0, n, batch):
                    put_many([pack(i) + tail for i in range(start, min(n, start + batch))], True, tmo)
            else:
                for i in range(n):
                    msg = pack(i) + tail
                    put(msg, True, tmo)
            t1 = now()
            for _ in range(self.pullers):
                put(STOP_MSG, True, tmo)
        except queue.Full:
            raise BenchTimeout(f"put blocked for {tmo} s (pullers stuck?)") from None
        return {"send_t0": t0, "send_t1": t1}

    def pull(self, n):
        unpack, now, Empty = SEQ.unpack_from, time.perf_counter_ns, queue.Empty
        seen, st, last, t_first, t_stop, stops, t_end = bytearray(n), [0, 0, 0, []], -1, None, None, 0, [None, None]
        if self.variant == "batch":
            get_many, batch = self.q.get_many, self.batch
            while True:
                try:
                    got = get_many(True, WAIT, batch)
                except Empty:
                    if self._stream_over(t_end, last):
                        break
                    continue
                if t_first is None:
                    t_first = now()
                for m in got:
                    seq = unpack(m, 0)[0]
                    if last < seq < n:
                        seen[seq] = 1
                        last = seq
                    elif seq == STOP:
                        stops += 1
                    else:
                        _slow(seq, n, seen, st)
                if stops:
                    t_stop = now()
                    self._took_stops(stops)
                    break
        else:
            get = self.q.get
            while True:
                try:
                    m = get(True, WAIT)
                except Empty:
                    if self._stream_over(t_end, last):
                        break
                    continue
                seq = unpack(m, 0)[0]
                if last < seq < n:
                    seen[seq] = 1
                    last = seq
                    if t_first is None:
                        t_first = now()
                elif seq == STOP:
                    t_stop, stops = now(), 1
                    self._took_stops(1)
                    break
                else:
                    _slow(seq, n, seen, st)
        return _pull_result(seen, st, t_first, t_stop, stops)


ADAPTERS = {"shmcomm": ShmcommAdapter, "mpqueue": QueueAdapter, "fasterfifo": QueueAdapter}


# ---------------------------------------------------------------------------------------------
# Orchestrator
# ---------------------------------------------------------------------------------------------


def make_queue(ctx, lib, depth):
    if lib == "mpqueue":
        return ctx.Queue(maxsize=depth)
    import faster_fifo

    # 8-byte length header + 64-byte item per message: room for exactly `depth` items. bytes() as
    # codec: items travel as raw bytes, no pickling (bytes(b) returns b itself for a bytes object).
    return faster_fifo.Queue(max_size_bytes=depth * (MSG_SIZE + 8), loads=bytes, dumps=bytes)


def run_one(ctx, lib, variant, pullers, p) -> dict:
    """One measurement (fresh pusher and pullers). Never raises."""
    roles = _roles(pullers)
    stops = ctx.Value("i", 0)
    data = {r: {"stops": stops} for r in roles[1:]}
    data["P"] = {}
    q = None
    if lib != "shmcomm":
        try:
            q = make_queue(ctx, lib, p["depth"])
        except Exception as e:  # noqa: BLE001
            return {"ok": False, "error": f"cannot create the queue: {type(e).__name__}: {e}"}
        for r in roles:
            data[r]["queue"] = q
    cores = p["cores"]
    q_p = dict(p, n_msgs=p["n_by_lib"][lib],
               role_cores={r: cores[i] for i, r in enumerate(roles)} if cores else None)
    try:
        r = run_group(ctx, ADAPTERS[lib], pullers, variant, q_p, roles, data, go_order=roles[::-1])
    finally:
        if lib == "mpqueue" and q is not None:
            q.close()  # the orchestrator never puts: no feeder thread to join
    out = {k: v for k, v in r.items() if k != "results"}
    if not r.get("ok"):
        return out
    res, n = r["results"], q_p["n_msgs"]
    pulls = [res[c] for c in roles[1:]]
    total = 0
    for x in pulls:
        total += int.from_bytes(x.pop("seen"), "little")  # per-item counts add up without carries
    combined = total.to_bytes(n, "little")
    missing = combined.count(0)
    distinct = n - missing
    dup = sum(x["dup"] for x in pulls) + (sum(x["distinct"] for x in pulls) - distinct)
    out.update({
        "items": n, "received": sum(x["distinct"] + x["dup"] for x in pulls),
        "loss": missing, "dup": dup,
        "disorder": sum(x["disorder"] for x in pulls), "bad": sum(x["bad"] for x in pulls),
        "stops_taken": sum(x["stops"] for x in pulls),
        "per_puller": [{k: v for k, v in x.items()} for x in pulls],
        "split": [x["distinct"] for x in pulls],
        "send_seconds": (res["P"]["send_t1"] - res["P"]["send_t0"]) / 1e9,
    })
    firsts = [x["t_first"] for x in pulls if x["t_first"] is not None]
    ends = [x["t_stop"] for x in pulls if x["t_stop"] is not None]
    dt = (max(ends) - min(firsts)) if firsts and ends else 0
    out["msgs_per_s"] = n / (dt / 1e9) if dt > 0 else 0.0
    if missing or dup or out["disorder"] or out["bad"] or out["stops_taken"] != pullers:
        out["ok"] = False
        out["error"] = (f"INVALID: lost {missing}, duplicated {dup}, out of queue order {out['disorder']},"
                        f" foreign {out['bad']} of {n}; end markers taken {out['stops_taken']}/{pullers}")
    return out


# (version, None) if importable and usable, else (None, reason)
CHECKS = {"shmcomm": lambda: shmcomm_version("Pusher", "Puller"), "mpqueue": multiprocessing_version,
          "fasterfifo": lambda: package_version("faster_fifo", "faster-fifo")}


def render_table(results: dict, order: list, skipped: dict, counts: list) -> str:
    head = "| library | variant | calls |"
    sep = "|---|---|---|"
    for k in counts:
        head += f" {k} puller{'s' if k > 1 else ''} msgs/s | vs shmcomm |"
        sep += "---:|---:|"
        if k > 1:
            head += " split |"
            sep += "---|"
    lines = [head + " notes |", sep + "---|"]
    for lib in order:
        if lib in skipped:
            lines.append(skipped_row(LIB_LABEL[lib], skipped[lib], sep.count("|")))
            continue
        for variant in LIB_VARIANTS[lib]:
            if not any((lib, variant, k) in results for k in counts):
                continue
            cells, notes = [LIB_LABEL[lib], variant, f"`{API[(lib, variant)]}`"], []
            for k in counts:
                runs = results.get((lib, variant, k), [])
                ref = results.get(("shmcomm", REF_VARIANT.get(variant, variant), k), [])
                s, rs = summarize(runs, "msgs_per_s"), summarize(ref, "msgs_per_s")
                cells += [_cell(s, _fmt_rate), _ratio(s, rs)]
                if k > 1:
                    shares = [r["split"] for r in runs if r.get("ok")]
                    cells.append(", ".join("/".join(f"{100 * c / sum(sp):.0f}" for c in sp) for sp in shares)
                                 + " %" if shares else "–")
                note = failed_note(runs, f"{k}p: ")
                if note:
                    notes.append(note)
            if all(r.get("ok") for k in counts for r in results.get((lib, variant, k), [])):
                notes.append("loss 0, dup 0")
            lines.append(table_row(cells, notes))
    return "\n".join(lines)


def target_checks(results: dict, counts: list) -> list:
    def med(lib, variant, k):
        s = summarize(results.get((lib, variant, k), []), "msgs_per_s")
        return s["median"] if s else None

    def best(lib, k):
        return max(((med(lib, v, k), v) for v in LIB_VARIANTS[lib] if med(lib, v, k)), default=None)

    checks = []
    for k in counts:
        for peer, factor, strict, pairs in (
            ("mpqueue", TARGET_MPQ, False, [("single", "single")]),
            ("fasterfifo", 1.0, True, [("single", "single"), ("batch", "batch")]),
        ):
            cands = [(sv, pv, f"shmcomm {sv} vs {LIB_LABEL[peer]} {pv}") for sv, pv in pairs]
            bs, bp = best("shmcomm", k), best(peer, k)
            if bs and bp:
                cands.append((bs[1], bp[1], f"best vs best (shmcomm {bs[1]}, {LIB_LABEL[peer]} {bp[1]})"))
            for sv, pv, what in cands:
                s, q = med("shmcomm", sv, k), med(peer, pv, k)
                if s is None or q is None:
                    continue
                ratio = s / q
                checks.append({"pullers": k, "what": what, "peer": peer, "shmcomm_variant": sv,
                               "peer_variant": pv, "shmcomm_msgs_per_s": s, "peer_msgs_per_s": q,
                               "ratio": ratio, "target": (f"> {factor:g}x" if strict else f">= {factor:g}x"),
                               "met": ratio > factor if strict else ratio >= factor})
    return checks


def render_targets(checks: list) -> str:
    if not checks:
        return "_targets not evaluated: a library has no successful run_"
    lines = ["Targets: shmcomm >= 5× mp.Queue; shmcomm > faster-fifo (ratio = shmcomm msgs/s ÷ peer msgs/s).\n",
             "| pullers | comparison | shmcomm msgs/s | peer msgs/s | shmcomm ÷ peer | target | met |",
             "|---:|---|---:|---:|---:|---|---|"]
    for c in checks:
        lines.append(f"| {c['pullers']} | {c['what']} | {_fmt_rate(c['shmcomm_msgs_per_s'])} "
                     f"| {_fmt_rate(c['peer_msgs_per_s'])} | ×{c['ratio']:.2f} | {c['target']} "
                     f"| {met(c['met'])} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argument_parser(__doc__, LIBS)
    ap.add_argument("--variants", default="all",
                    help="comma-separated subset of single,single-into,batch (default: all)")
    ap.add_argument("--pullers", default="1,2", help="puller counts to run, e.g. 1,2 (default 1,2)")
    add_repeats(ap)
    ap.add_argument("--messages", type=int, default=1_000_000, help="items per measurement (default 1000000)")
    ap.add_argument("--mpqueue-messages", type=int, default=200_000,
                    help="items per measurement for mp.Queue, which is slow enough that --messages would"
                         " take minutes (default 200000; at most --messages)")
    ap.add_argument("--depth", type=int, default=1024,
                    help="queue depth in items for every library (default 1024)")
    ap.add_argument("--batch", type=int, default=256, help="items per call in the batch variants (default 256)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 repeat, 100000 items (mp.Queue 50000)")
    add_process_options(ap, "cores of the pusher, puller 1, puller 2 (the last one given repeats: the"
                            " default 0,1 puts both pullers on core 1); 'none' disables pinning")
    add_run_options(ap, "write all raw numbers here", samples=False)
    a = ap.parse_args(argv)
    if a.quick:
        a.repeats, a.messages, a.mpqueue_messages = 1, 100_000, 50_000
    a.mpqueue_messages = min(a.mpqueue_messages, a.messages)
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    libs = parse_libs(args.only, LIBS)
    if libs is None:
        return 2
    want_variants = parse_variants(args.variants)
    try:
        counts = [int(x) for x in args.pullers.split(",") if x.strip()]
        if not counts or any(k < 1 for k in counts):
            raise ValueError
    except ValueError:
        print("--pullers needs puller counts >= 1, e.g. 1,2", file=sys.stderr)
        return 2
    try:
        cores = parse_cores(args.cores, 1 + max(counts))
    except ValueError:
        print("--cores needs core numbers (pusher,puller1[,puller2]) or 'none'", file=sys.stderr)
        return 2
    if args.messages < 2 or args.mpqueue_messages < 2 or args.repeats < 1 or args.batch < 1 or args.depth < args.batch:
        print("--messages >= 2, --repeats >= 1, --batch >= 1 and --depth >= --batch needed", file=sys.stderr)
        return 2
    run_timeout = args.run_timeout or (60.0 + args.messages / 10_000)

    cmd, info = report_header("shmcomm PUSH/PULL benchmark")
    if cores:
        pin = (f"pusher on core {cores[0]}; "
               + ", ".join(f"puller {i} on core {c}" for i, c in enumerate(cores[1:], 1)))
        if len(set(cores[1:])) < len(cores) - 1:
            pin += " (pullers that share a core are time-sliced on it by the kernel)"
    else:
        pin = "none (the kernel schedules every process)"
    print(f"- pinning: {pin}; start method {args.start_method}")
    print(f"- item size {MSG_SIZE} B; {args.messages} items per measurement (mp.Queue:"
          f" {args.mpqueue_messages}); pullers {counts};"
          f" repeats {args.repeats}; queue depth {args.depth} items; batch {args.batch} items per call;"
          f" wait bound {args.timeout} s, watchdog {run_timeout:.0f} s per measurement")
    versions, skipped = check_libraries(libs, CHECKS, LIB_LABEL)

    n_by_lib = {lib: args.mpqueue_messages if lib == "mpqueue" else args.messages for lib in LIBS}
    p = {"n_by_lib": n_by_lib, "depth": args.depth, "batch": args.batch, "timeout": args.timeout,
         "setup_timeout": max(30.0, 3 * args.timeout), "run_timeout": run_timeout, "cores": cores}
    ctx = mp.get_context(args.start_method)
    results: dict = {}
    t_start = time.monotonic()
    for rep in range(args.repeats):  # interleaved: repeat 1 of everything, then repeat 2...
        for k in counts:
            for lib, variant in selected(libs, skipped, LIB_VARIANTS, want_variants):
                r = measure(lambda: run_one(ctx, lib, variant, k, p), rep, args.repeats,
                            f"{k} puller{'s' if k > 1 else ' '} {LIB_LABEL[lib]:>11} {variant:<11}",
                            lambda r: (f"{r['msgs_per_s']:,.0f} msgs/s, loss {r['loss']}, dup {r['dup']}"
                                       + (f", split {'/'.join(map(str, r['split']))}" if k > 1 else "")))
                results.setdefault((lib, variant, k), []).append(r)
    elapsed = time.monotonic() - t_start

    checks = target_checks(results, counts)
    print("## Results\n")
    print(render_table(results, libs, skipped, counts))
    print()
    print("msgs/s = items taken by all pullers together, from the first item any puller took to the"
          " last end-of-stream marker. Cells: median over repeats (min–max). 'vs shmcomm' = this row ÷"
          " shmcomm's row of the same variant (single-into compares with shmcomm single): below ×1 means"
          " slower than shmcomm. 'split' = share of the items each puller took, per repeat. 'loss 0, dup"
          " 0': in every repeat the pullers together got every item exactly once, each in queue order.")
    print("\n## Targets\n")
    print(render_targets(checks))
    print(f"\n_total {elapsed:.0f} s; load average at end: {load_average()}_")

    if args.json:
        doc = json_doc("pipeline", cmd, args, info, versions, skipped, p, elapsed, targets=checks, results=[])
        for (lib, variant, k), runs in results.items():
            doc["results"].append({"library": lib, "variant": variant, "pullers": k, "calls": API[(lib, variant)],
                                   "runs": runs, "summary": {"msgs_per_s": summarize(runs, "msgs_per_s")}})
        write_json(args.json, doc)
    return exit_status(r for runs in results.values() for r in runs)


if __name__ == "__main__":
    sys.exit(main())
