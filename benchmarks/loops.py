"""The measured loops of the suite (benchmarks/suite.py), run inside pinned worker processes.

One adapter class, built by _common.group_worker() after pinning, opens the transports of its role
(transports.py) and runs one of four loops. Every callable a loop calls per message is bound to a
local before the loop starts; clocks are read outside the timed region except where the loop times
it; every wait is bounded (spec timeout per wait, the clock every 16384 empty polls).

  latency  A sends message i on channel a2b; B echoes it on b2a; A records the round trip
           (perf_counter_ns) and checks the echo's sequence number. One-way = round trip / 2.
           Payloads: raw bytes (seq + filler) of 64 B or 4 KiB, or a pickled small dict that A
           pickles, B unpickles and pickles again, and A unpickles (what a user of send(obj) does).
  stream   A sends 64-byte messages (fresh bytes objects: seq + filler) as fast as the library's
           lossless send allows, single calls or batch calls; B receives, checks every sequence
           number, and reports the rate from its first message to the end marker. "packed" batches
           (shmcomm's send_packed/recv_packed) move the same 64-byte messages as records of a numpy
           array, one call per spec["packed"] records: A writes the sequence numbers with numpy, B
           checks every one with numpy (every record is still its own message in the ring).
  frames   A sends large frames: one-copy path (a preallocated frame, seq written in place, sent with
           one copy; B looks at it in place), copy-out (the same, and B receives it into its own
           preallocated buffer: one copy in, one copy out) or zero-copy path (the frame is loaned from
           the channel and only its sequence number written; B looks at it in place); with "+read" B
           reads every byte (numpy sum) before the next one.
  idle     B waits in one blocking receive while A sends nothing for a second: B's CPU time.
  fanout   A publishes 64-byte messages (lossless where the library can) to k subscribers S1..Sk,
           each of which receives and checks every message (blocking receive: they share a core).
"""

from __future__ import annotations

import array
import pickle
import time

from _common import SPIN_CHECK_MASK, BaseAdapter, BenchError, BenchTimeout, _tp_check
from transports import SEQ, STOP, STOP8, open_transport

PICKLE_SIZE = 256  # slot size for the pickled dict (it pickles to about 100 bytes)


def _count_seqs(seqs, expected: int, st: list):
    """Checks a batch's sequence numbers in order: (messages counted, next expected, end marker seen).
    Gaps and disorder go to st (see _tp_check); the end marker stops the count."""
    counted = 0
    for seq in seqs:
        if seq == expected:
            expected += 1
            counted += 1
        elif seq == STOP:
            return counted, expected, True
        else:
            counted += 1
            expected = _tp_check(seq, expected, st)
    return counted, expected, False


def _received(count: int, st: list, t_first, t_last, stopped: bool, expected: int) -> dict:
    """What a receiving loop reports: messages counted, the sequence checks' tallies (st, as
    _count_seqs and _tp_check keep them), its first and last timestamps, whether the end marker came."""
    return {"count": count, "loss_gaps": st[0], "disorder": st[1], "gaps": st[2],
            "t_first": t_first, "t_last": t_last, "stopped": stopped, "expected_next": expected}


def small_dict(i: int) -> dict:
    """The "pickled small dict" of the latency workload: a pose-like record."""
    return {"seq": i, "x": 1.25, "y": -0.5, "z": 3.0, "frame": "base_link", "valid": True}


class SuiteAdapter(BaseAdapter):
    """workload: a dict with kind (latency, stream, frames, fanout), lib, size, payload ("bytes" or
    "pickle"), spec overrides. variant: busy / blocking (latency), single / batch (stream), copy /
    copy+read / zero-copy / zero-copy+read (frames), blocking (fanout)."""

    def setup(self):
        w, p = self.workload, self.p
        self.kind, self.lib = w["kind"], w["lib"]
        spec = {
            "size": w["size"], "depth": w.get("depth", p["depth"]), "timeout": self.timeout,
            "lossless": w.get("lossless", True), "blocking": w.get("blocking", False),
            "batch": p["batch"], "ipc_dir": p["ipc_dir"], "tcp_ports": p.get("tcp_ports", {}),
            "fanout": w.get("fanout"), "spin_us": w.get("spin_us", 50), "busy": w.get("busy", False),
            "single_writer": w.get("single_writer", False),
        }
        self.spec = spec
        base = p["name"]
        self.tx = self.rx = None
        d = self.data
        if self.kind == "latency":
            mine, theirs = ("a2b", "b2a") if self.role == "A" else ("b2a", "a2b")
            self.tx = open_transport(self.lib, "tx", f"{base}_{mine}", spec, d.get(mine, {}))
            self.rx = open_transport(self.lib, "rx", f"{base}_{theirs}", spec, d.get(theirs, {}))
        elif self.role == "A":
            self.tx = open_transport(self.lib, "tx", f"{base}_tp", spec, d.get("tp", {}))
        else:
            self.rx = open_transport(self.lib, "rx", f"{base}_tp", spec, d.get("tp", {}))

    def connect(self):
        for t in (self.rx, self.tx):
            if t is not None:
                t.connect()

    def close(self):
        for t in (self.rx, self.tx):
            if t is not None:
                t.close()

    def run(self) -> dict:
        k, a = self.kind, self.role == "A"
        if k == "latency":
            return self.pingpong() if a else self.echo()
        if k in ("stream", "fanout"):
            return self.stream_send() if a else self.stream_recv()
        if k == "frames":
            return self.frames_send() if a else self.frames_recv()
        if k == "idle":
            return self.idle_send() if a else self.idle_recv()
        raise ValueError(k)

    # -- helpers -------------------------------------------------------------------------------
    def _spin(self, poll, what):
        """Slow path of a busy-wait: keep polling, bounded by the clock. Returns the message."""
        t_end, spins = [None], 0
        m = poll()
        while m is None:
            spins += 1
            if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                raise BenchTimeout(f"{self.lib}: nothing received within {self.timeout} s ({what})")
            m = poll()
        return m

    def _stop_marker(self) -> bytes:
        return STOP8 + bytes(max(0, min(self.spec["size"], 64) - 8))

    # -- latency -------------------------------------------------------------------------------
    def pingpong(self) -> dict:
        p, w = self.p, self.workload
        total, warmup = p["warmup"] + p["rounds"], p["warmup"]
        send, poll, wait = self.tx.send, self.rx.poll, self.rx.wait
        busy = self.variant == "busy"
        if busy and poll is None:
            raise BenchError(f"{self.lib} has no non-blocking receive")
        now, spin = time.perf_counter_ns, self._spin
        if w["payload"] == "pickle":
            dumps, loads = pickle.dumps, pickle.loads
            make = lambda i: dumps(small_dict(i))  # noqa: E731 - outside the timed region
            seq_of = lambda m: loads(m)["seq"]  # noqa: E731 - the unpickling is part of the round trip
        else:
            pack, unpack, tail = SEQ.pack, SEQ.unpack_from, bytes([0xA5]) * (w["size"] - 8)
            make = lambda i: pack(i) + tail  # noqa: E731
            seq_of = None
        rtt = array.array("q", bytes(8 * total))
        deadline = None
        done = total
        for i in range(total):
            msg = make(i)
            if busy:
                t0 = now()
                send(msg)
                m = poll()
                if m is None:
                    m = spin(poll, f"echo {i}")
                if seq_of is not None:
                    seq = seq_of(m)
                t1 = now()
            else:
                t0 = now()
                send(msg)
                m = wait()
                if m is None:
                    raise BenchTimeout(f"{self.lib}: no echo for round {i} within {self.timeout} s")
                if seq_of is not None:
                    seq = seq_of(m)
                t1 = now()
            rtt[i] = t1 - t0
            if seq_of is None:
                seq = unpack(m, 0)[0]
            if seq != i:
                raise BenchError(f"{self.lib}: echo of round {i} carried sequence number {seq}")
            if i == warmup:
                deadline = t1 + int(p["duration"] * 1e9)
            elif deadline is not None and t1 > deadline and i >= warmup + p["min_rounds"]:
                done = i + 1
                break
        send(self._stop_marker())
        out = {"rtt_ns": rtt[warmup:done].tobytes(), "rounds": done - warmup}
        if w["payload"] == "pickle":
            out["pickle_rt_ns"] = _pickle_cost()
        return out

    def echo(self) -> dict:
        send, poll, wait = self.tx.send, self.rx.poll, self.rx.wait
        busy = self.variant == "busy"
        spin = self._spin
        n = 0
        if self.workload["payload"] == "pickle":
            dumps, loads = pickle.dumps, pickle.loads
            while True:
                m = poll() if busy else wait()
                if m is None:
                    if not busy:
                        raise BenchTimeout(f"{self.lib}: no ping within {self.timeout} s")
                    m = spin(poll, "ping")
                if m[0] == 255 and m[:8] == STOP8:
                    break
                send(dumps(loads(m)))
                n += 1
        else:
            while True:
                m = poll() if busy else wait()
                if m is None:
                    if not busy:
                        raise BenchTimeout(f"{self.lib}: no ping within {self.timeout} s")
                    m = spin(poll, "ping")
                if m[0] == 255 and m[:8] == STOP8:
                    break
                send(m)
                n += 1
        return {"echoed": n}

    # -- stream and fan-out --------------------------------------------------------------------
    def stream_send(self) -> dict:
        p = self.p
        n, batch = p["n_msgs"], p["batch"]
        send, send_many = self.tx.send, self.tx.send_many
        pack, tail, now = SEQ.pack, bytes([0xA5]) * 56, time.perf_counter_ns
        deadline = now() + int(p["duration"] * 1e9)
        i = 0
        t0 = now()
        if self.variant == "packed":
            i = self._send_packed(n, deadline)
        elif self.variant == "batch":
            if send_many is None:
                raise BenchError(f"{self.lib} has no batch send")
            while i < n:
                k = min(batch, n - i)
                send_many([pack(j) + tail for j in range(i, i + k)])
                i += k
                if now() > deadline:
                    break
        else:
            while i < n:
                send(pack(i) + tail)
                i += 1
                if not i & 1023 and now() > deadline:
                    break
        t1 = now()
        stop = self._stop_marker()
        send(stop)
        if not self.workload.get("lossless", True):  # a lossy PUB may drop the marker: repeat it
            for _ in range(20):
                time.sleep(0.005)
                send(stop)
        return {"sent": i, "send_t0": t0, "send_t1": t1}

    def _send_packed(self, n: int, deadline: int) -> int:
        """The "packed" sender: records of 64 bytes (seq + filler) in a numpy array, one call each
        spec["packed"] of them. Returns how many were sent before n or the deadline."""
        import numpy as np

        send_packed, now, k = self.tx.send_packed, time.perf_counter_ns, self.p["packed"]
        if send_packed is None:
            raise BenchError(f"{self.lib} has no packed batch send")
        records = np.full((k, 8), 0xA5A5A5A5A5A5A5A5, dtype="<u8")
        seqs, step = records[:, 0], np.arange(k, dtype="<u8")
        i = 0
        while i < n:
            m = min(k, n - i)
            np.add(step[:m], i, out=seqs[:m])
            send_packed(records[:m])
            i += m
            if now() > deadline:
                break
        return i

    def _recv_packed(self) -> dict:
        """The "packed" receiver: up to spec["packed"] records per call into a numpy array; every
        sequence number checked (vectorised when the batch is the expected run, else one by one)."""
        import numpy as np

        recv_packed, now, k = self.rx.recv_packed, time.perf_counter_ns, self.p["packed"]
        if recv_packed is None:
            raise BenchError(f"{self.lib} has no packed batch receive")
        records = np.zeros((k, 8), dtype="<u8")
        sizes = np.zeros(k, dtype=np.uint64)
        seqs, step, flat = records[:, 0], np.arange(k, dtype="<u8"), records.view("u1").reshape(-1)
        count, expected, st, t_first, stopped, t_end = 0, 0, [0, 0, []], None, False, [None]
        while not stopped:
            got = recv_packed(records, sizes)
            if not got:
                if self._timed_out(t_end):
                    break
                continue
            t_end[0] = None
            if t_first is None:
                t_first = now()
            if (sizes[:got] == 64).all() and (seqs[:got] - step[:got] == expected).all():
                expected += got  # the run we expected: every one checked at once
                count += got
                continue
            # anything else (the end marker, a gap): message by message, where their sizes put them
            starts = np.concatenate(([0], np.cumsum(sizes[:got - 1], dtype=np.uint64))).astype(np.int64)
            n, expected, stopped = _count_seqs((int(flat[o:o + 8].view("<u8")[0]) for o in starts), expected, st)
            count += n
        return _received(count, st, t_first, now(), stopped, expected)

    def stream_recv(self) -> dict:
        if self.variant == "packed":
            return self._recv_packed()
        poll, wait, recv_many = self.rx.poll, self.rx.wait, self.rx.recv_many
        unpack, now = SEQ.unpack_from, time.perf_counter_ns
        busy = self.variant == "single" and self.workload.get("rx") == "poll"
        spin, t_end = self._spin, [None]
        count, expected, st, t_first, t_last, stopped = 0, 0, [0, 0, []], None, None, False
        if self.variant == "batch":
            if recv_many is None:
                raise BenchError(f"{self.lib} has no batch receive")
            while not stopped:
                got = recv_many()
                if not got:
                    if self._timed_out(t_end):
                        break
                    continue
                t_end[0] = None
                if t_first is None:
                    t_first = now()
                n, expected, stopped = _count_seqs((unpack(m, 0)[0] for m in got), expected, st)
                count += n
            t_last = now()
        else:
            while True:
                if busy:
                    m = poll()
                    if m is None:
                        try:
                            m = spin(poll, "stream")
                        except BenchTimeout:
                            break
                else:
                    m = wait()
                    if m is None:
                        break
                seq = unpack(m, 0)[0]
                if seq == expected:
                    expected += 1
                    count += 1
                    if t_first is None:
                        t_first = now()
                elif seq == STOP:
                    stopped = True
                    break
                else:
                    count += 1
                    expected = _tp_check(seq, expected, st)
            t_last = now()
        return _received(count, st, t_first, t_last, stopped, expected)

    # -- frames --------------------------------------------------------------------------------
    def frames_send(self) -> dict:
        p, size = self.p, self.workload["size"]
        zero_copy = self.variant.startswith("zero-copy")
        send, loan = self.tx.frame_send, self.tx.frame_loan
        if zero_copy and loan is None:
            raise BenchError(f"{self.lib} has no zero-copy send")
        now, pack_into = time.perf_counter_ns, SEQ.pack_into
        buf = bytearray([0xA5]) * size
        n = p["n_frames"]
        deadline = now() + int(p["duration"] * 1e9)
        i = 0
        t0 = now()
        while i < n:
            if zero_copy:
                loan(i)
            else:
                pack_into(buf, 0, i)
                send(buf)
            i += 1
            if now() > deadline:
                break
        t1 = now()
        if zero_copy:
            loan(STOP)
        else:
            pack_into(buf, 0, STOP)
            send(buf)
        return {"sent": i, "send_t0": t0, "send_t1": t1}

    def frames_recv(self) -> dict:
        size = self.workload["size"]
        read = self.variant.endswith("+read")
        in_place = not self.variant.startswith("copy-out")  # one-copy and zero-copy read in place
        recv, view = self.rx.frame_recv, self.rx.frame_view
        if in_place and view is None:
            raise BenchError(f"{self.lib} has no in-place (zero-copy) receive")
        now = time.perf_counter_ns
        buf = bytearray(size)
        count, expected, st, t_first, stopped = 0, 0, [0, 0, []], None, False
        while True:
            seq = view(read) if in_place else recv(buf, read)
            if seq is None:
                break
            if seq == expected:
                expected += 1
                count += 1
                if t_first is None:
                    t_first = now()
            elif seq == STOP:
                stopped = True
                break
            else:
                count += 1
                expected = _tp_check(seq, expected, st)
        return _received(count, st, t_first, now(), stopped, expected)


    # -- idle ----------------------------------------------------------------------------------
    def idle_send(self) -> dict:
        time.sleep(self.p["idle_s"])
        self.tx.send(self._stop_marker())
        return {}

    def idle_recv(self) -> dict:
        """One blocking receive that waits idle_s seconds for its message: the CPU time it burns."""
        wait = self.rx.wait
        c0, t0 = time.process_time(), time.monotonic()
        m = wait()
        c1, t1 = time.process_time(), time.monotonic()
        if m is None or m[:8] != STOP8:
            raise BenchError(f"{self.lib}: the idle receiver got {m!r:.40} instead of the end marker")
        return {"cpu_s": c1 - c0, "wall_s": t1 - t0, "cpu_fraction": (c1 - c0) / max(t1 - t0, 1e-9)}


def _pickle_cost(k: int = 20000) -> float:
    """Pickle's own cost per round trip of the pickled-dict ping-pong: two dumps and two loads of the
    small dict (A pickles, B unpickles and pickles, A unpickles), in ns, measured in this process."""
    dumps, loads = pickle.dumps, pickle.loads
    obj = small_dict(12345)
    blob = dumps(obj)
    now = time.perf_counter_ns
    best = None
    for _ in range(3):
        t0 = now()
        for _ in range(k):
            dumps(obj)
            loads(blob)
        dt = (now() - t0) / k
        best = dt if best is None else min(best, dt)
    return 2 * best
