#!/usr/bin/env python3
"""PAIR benchmark: shmcomm.Pair vs shmcomm PUB/SUB ping-pong vs pyzmq PAIR (ipc://), side by side,
compared with ESHM's published figures (its Python wrapper: latency ~100-200 µs, 100K+ messages/s).

Two processes pinned to different cores, 64-byte messages carrying a sequence number:

* ping-pong: A (the master) writes a message, B (the slave) reads it and writes it back; A records
  the round trip with time.perf_counter_ns. Reported: one-way = round trip / 2, p50 / p99 / p99.9 µs.
* throughput (one way): A writes N messages as fast as the lossless blocking write allows, B reads
  and counts them from its first to its last, checking the sequence numbers (loss must be 0).

Variants: "busy-wait" (the reader polls: Pair.try_read() in a loop, ESHM's way), "blocking"
(Pair.read(timeout), the library's own spin-then-sleep wait), and for Pair's throughput "batch"
(send_many_bytes / recv_many_bytes, 256 per call). Pair uses the ESHM calls write() / read() /
try_read() with serialization="raw". The PUB/SUB rows are bench_pubsub.py's own adapters (two
channels, Publisher.send_bytes / Subscriber.recv_into), so the two patterns are measured alike.

Run ``python benchmarks/bench_pair.py --help``; see benchmarks/README.md.
"""

from __future__ import annotations

import array
import sys
import time

from _common import (BaseAdapter, BenchError, BenchTimeout, MSG_SIZE, SEQ, SPIN_CHECK_MASK, TAIL, _cell,
                     _fmt, _fmt_rate, _ratio, _tp_check, add_pingpong_throughput_args, apply_quick,
                     argument_parser, check_libraries, exit_status, failed_note, json_doc,
                     pingpong_throughput_plan, run_pingpong_throughput, report_header, results_json,
                     rtt_result, run_group, shmcomm_version, skipped_row,
                     summarize, table_row, write_json, zmq_version)
from bench_pubsub import ShmcommAdapter as PubSubAdapter
from bench_pubsub import ZmqAdapter

LIBS = ("pair", "pubsub", "zmq")
LIB_LABEL = {"pair": "shmcomm Pair", "pubsub": "shmcomm PUB/SUB", "zmq": "pyzmq PAIR ipc://"}
LIB_VARIANTS = {
    "pair": ("busy-wait", "blocking", "batch"),
    "pubsub": ("busy-wait", "blocking", "batch"),
    "zmq": ("busy-wait", "blocking"),
}
WORKLOADS = ("pingpong", "throughput")
BATCH = 256
VARIANT_WORKLOADS = {"batch": ("throughput",)}
ESHM = {"latency_us": "100–200", "msgs_per_s": "100 k+"}  # ESHM's README, "Typical performance"


class PairAdapter(BaseAdapter):
    """A is the master, B the slave of one Pair. The loops are written out with everything bound to
    locals, so the numbers measure the library and not this file; every wait is bounded."""

    def setup(self):
        from shmcomm import Pair

        role = "master" if self.role == "A" else "slave"
        # Only the writing side's geometry matters for its queue; both use the benchmark's depth.
        self.pair = Pair(self.p["name"], role, num_slots=self.p["depth"], slot_size=MSG_SIZE,
                         serialization="raw", reconnect_wait=self.timeout)

    def connect(self):
        if not self.pair.wait_for_remote(self.timeout):
            raise BenchTimeout("the other side of the pair did not come")

    def close(self):
        self.pair.close()

    def run(self) -> dict:
        p = self.p
        if self.workload == "pingpong":
            total = p["warmup"] + p["rounds"]
            if self.role == "A":
                return {"rtt_ns": self.pp_initiator(total)[p["warmup"]:].tobytes()}
            self.pp_echo(total)
            return {}
        return self.tp_send(p["n_msgs"]) if self.role == "A" else self.tp_recv(p["n_msgs"])

    def pp_initiator(self, total):
        write, read, try_read = self.pair.write, self.pair.read, self.pair.try_read
        now, pack, unpack = time.perf_counter_ns, SEQ.pack, SEQ.unpack_from
        tail = TAIL
        rtt = array.array("q", bytes(8 * total))
        tmo, busy, t_end = self.timeout, self.variant == "busy-wait", [None]
        for i in range(total):
            msg = pack(i) + tail
            t0 = now()
            write(msg)
            if busy:
                m = try_read()
                spins = 0
                while m is None:
                    spins += 1
                    if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                        raise BenchTimeout(f"no echo for round {i}")
                    m = try_read()
                t_end[0] = None
            else:
                m = read(tmo)  # SHMTimeoutError after tmo
            t1 = now()
            rtt[i] = t1 - t0
            if unpack(m, 0)[0] != i or len(m) != MSG_SIZE:
                raise BenchError(f"bad echo in round {i}: seq {unpack(m, 0)[0]}, {len(m)} bytes")
        return rtt

    def pp_echo(self, total):
        write, read, try_read = self.pair.write, self.pair.read, self.pair.try_read
        tmo, busy, t_end = self.timeout, self.variant == "busy-wait", [None]
        for i in range(total):
            if busy:
                m = try_read()
                spins = 0
                while m is None:
                    spins += 1
                    if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                        raise BenchTimeout(f"no ping for round {i}")
                    m = try_read()
                t_end[0] = None
            else:
                m = read(tmo)
            write(m)

    def tp_send(self, n):
        write, pack, now = self.pair.write, SEQ.pack, time.perf_counter_ns
        tail, tmo = TAIL, self.timeout
        t0 = now()
        if self.variant == "batch":
            send_many = self.pair.send_many_bytes
            for start in range(0, n, BATCH):
                send_many([pack(i) + tail for i in range(start, min(n, start + BATCH))], timeout=tmo)
        else:
            for i in range(n):
                write(pack(i) + tail, tmo)
        return {"send_t0": t0, "send_t1": now()}

    def tp_recv(self, n):
        read, try_read, unpack, now = self.pair.read, self.pair.try_read, SEQ.unpack_from, time.perf_counter_ns
        tmo, busy, t_end = self.timeout, self.variant == "busy-wait", [None]
        last, expected, count, st, t_first, first_seq = n - 1, 0, 0, [0, 0, []], None, None
        if self.variant == "batch":
            # The first message with read(): Pair.recv_many_bytes before any single receive fails
            # (its buffer size is not known yet; see tests/python/test_pair.py).
            m = read(tmo)
            t_first, first_seq = now(), unpack(m, 0)[0]
            count, expected = 1, 1 if first_seq == 0 else _tp_check(first_seq, 0, st)
            recv_many = self.pair.recv_many_bytes
            while expected <= last:
                batch = recv_many(BATCH, tmo)
                if not batch:
                    break  # timed out: whatever is missing counts as lost
                if t_first is None:
                    t_first, first_seq = now(), unpack(batch[0], 0)[0]
                for m in batch:
                    seq = unpack(m, 0)[0]
                    count += 1
                    expected = expected + 1 if seq == expected else _tp_check(seq, expected, st)
            return _tp_result(count, t_first, now(), st, expected, first_seq)
        while True:
            if busy:
                m = try_read()
                spins = 0
                while m is None:
                    spins += 1
                    if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                        break
                    m = try_read()
                t_end[0] = None
                if m is None:
                    break
            else:
                m = read(tmo)
            seq = unpack(m, 0)[0]
            if t_first is None:
                t_first, first_seq = now(), seq
            count += 1
            expected = expected + 1 if seq == expected else _tp_check(seq, expected, st)
            if seq == last:
                break
        stats = self.pair.stats()
        out = _tp_result(count, t_first, now(), st, expected, first_seq)
        out["pair_drops"] = stats["drops"]
        return out


def _tp_result(count, t_first, t_last, st, expected, first_seq) -> dict:
    return {"count": count, "t_first": t_first, "t_last": t_last, "loss": st[0], "disorder": st[1],
            "expected_next": expected, "first_seq": first_seq, "gaps": st[2]}


ADAPTERS = {"pair": PairAdapter, "pubsub": PubSubAdapter, "zmq": ZmqAdapter}


def run_one(ctx, lib, workload, variant, p) -> dict:
    """One measurement (A and B, B told to go first); never raises. As bench_pubsub.run_pair."""
    cores = p["cores"]
    q = dict(p, role_cores={"A": cores[0], "B": cores[1]} if cores else None)
    g = run_group(ctx, ADAPTERS[lib], workload, variant, q, ["A", "B"], {}, go_order=["B", "A"])
    out = {k: v for k, v in g.items() if k != "results"}
    if not g.get("ok"):
        return out
    res = g["results"]
    if workload == "pingpong":
        out.update(rtt_result(res["A"]["rtt_ns"], round_trip=True))
        return out
    r, n = res["B"], p["n_msgs"]
    r["loss"] = n - r["count"]
    out.update(r)
    dt = (r["t_last"] - r["t_first"]) if r["t_first"] is not None else 0
    out["msgs_per_s"] = (r["count"] - 1) / (dt / 1e9) if dt > 0 and r["count"] > 1 else 0.0
    out["send_seconds"] = (res["A"]["send_t1"] - res["A"]["send_t0"]) / 1e9
    if r["loss"] or r["disorder"]:
        out["ok"] = False
        out["error"] = f"INVALID: lost {r['loss']}, out of order {r['disorder']} of {n}"
    return out


CHECKS = {"pair": lambda: shmcomm_version("Pair"), "pubsub": lambda: shmcomm_version("Publisher", library=False),
          "zmq": zmq_version}


def render_table(results: dict, order: list, skipped: dict) -> str:
    lines = [
        "| library | variant | RTT p50 µs | one-way p50 µs | one-way p99 µs | p50 vs Pair | msgs/s | "
        "msgs/s vs Pair | vs ESHM published | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for lib in order:
        if lib in skipped:
            lines.append(skipped_row(LIB_LABEL[lib], skipped[lib], lines[1].count("|") - 1))
            continue
        for variant in LIB_VARIANTS[lib]:
            row = results.get((lib, variant))
            if row is None:
                continue
            ref = results.get(("pair", variant), {})
            pp, tp = row.get("pingpong", []), row.get("throughput", [])
            rtt, p50, p99 = (summarize(pp, k) for k in ("rtt_p50_us", "p50_us", "p99_us"))
            ts = summarize(tp, "msgs_per_s")
            ref_p50, ref_ts = summarize(ref.get("pingpong", []), "p50_us"), summarize(ref.get("throughput", []), "msgs_per_s")
            eshm = []
            if p50:
                eshm.append(f"latency ×{150 / p50['median']:.0f} lower")
            if ts:
                eshm.append(f"rate ×{ts['median'] / 100_000:.1f}")
            notes = [n for n in (failed_note(pp, "pingpong: "), failed_note(tp, "throughput: ")) if n]
            if tp and all(r.get("ok") for r in tp):
                notes.append("loss 0")
            lines.append(table_row([
                LIB_LABEL[lib], variant, _cell(rtt, _fmt), _cell(p50, _fmt), _cell(p99, _fmt),
                _ratio(p50, ref_p50), _cell(ts, _fmt_rate), _ratio(ts, ref_ts), ", ".join(eshm) or "–",
            ], notes))
    lines.append(f"| ESHM (published, Python wrapper) | – | – | {ESHM['latency_us']} | – | – | "
                 f"{ESHM['msgs_per_s']} | – | reference | its README; not run here |")
    return "\n".join(lines)


def parse_args(argv=None):
    ap = argument_parser(__doc__, LIBS)
    add_pingpong_throughput_args(ap, WORKLOADS, "comma-separated subset of busy-wait,blocking,batch",
                                 "queue depth (num_slots) (default 1024)")
    return apply_quick(ap.parse_args(argv))


def _describe(r, wl) -> str:
    if wl == "pingpong":
        return f"RTT p50 {r['rtt_p50_us']:.2f} µs, one-way p50 {r['p50_us']:.2f} µs p99 {r['p99_us']:.2f} µs"
    return f"{r['msgs_per_s']:,.0f} msgs/s, loss {r['loss']}"


def main(argv=None) -> int:
    args = parse_args(argv)
    plan = pingpong_throughput_plan(args, LIBS, WORKLOADS)
    if plan is None:
        return 2
    libs, workloads, want_variants, cores, run_timeout = plan

    cmd, info = report_header("shmcomm PAIR benchmark")
    print(f"- pinning: A (master) on {cores[0] if cores else '-'}, B (slave) on {cores[1] if cores else '-'};"
          f" start method {args.start_method}")
    print(f"- message size {MSG_SIZE} B; ping-pong {args.rounds} round trips after {args.warmup} warm-up;"
          f" throughput {args.messages} messages; repeats {args.repeats}; queue depth {args.depth};"
          f" wait bound {args.timeout} s")
    versions, skipped = check_libraries(libs, CHECKS, LIB_LABEL)
    results, elapsed, p = run_pingpong_throughput(
        args, cores, run_timeout, libs, skipped, want_variants, workloads,
        (LIB_VARIANTS, VARIANT_WORKLOADS, WORKLOADS, _describe), run_one,
        lambda lib, variant, wl: f"{LIB_LABEL[lib]:>18} {variant:<10} {wl:<10}")

    print("## Results\n")
    print(render_table(results, libs, skipped))
    print()
    print("One-way latency = round trip / 2 per message (µs); msgs/s = one way, counted by the reader from its"
          " first to its last message. Cells: median over repeats (min–max). 'vs Pair' = this row ÷ the Pair"
          " row of the same variant. 'vs ESHM published': 150 µs (the middle of ESHM's 100–200 µs) ÷ this"
          " p50, and this rate ÷ 100,000 msgs/s; ESHM itself is not run here. A throughput run is valid only"
          " with loss 0.")
    print(f"\n_total {elapsed:.0f} s_")
    if args.json:
        doc = json_doc("pair", cmd, args, info, versions, skipped, p, elapsed, eshm_published=ESHM,
                       results=results_json(results, args.no_samples,
                                            ("rtt_p50_us", "p50_us", "p99_us", "p999_us", "mean_us")))
        write_json(args.json, doc)
    return exit_status(r for per in results.values() for runs in per.values() for r in runs)


if __name__ == "__main__":
    sys.exit(main())
