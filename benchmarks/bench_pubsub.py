#!/usr/bin/env python3
"""Side-by-side pub/sub benchmark: shmcomm vs pyzmq (ipc://) vs iceoryx2 vs multiprocessing.Pipe.

Two workloads, 64-byte messages, two processes pinned to different cores:

* ping-pong: process A sends a message to B, B echoes it back on a second channel; A records
  round-trip/2 per message with time.perf_counter_ns (p50 / p99 / p99.9 in microseconds).
* throughput: A sends N messages as fast as the library's lossless/blocking send allows, B receives
  and counts them; B reports messages/s from its first to its last message and checks the embedded
  sequence numbers (loss must be 0 for a valid run).

Each workload runs in two receiver variants: "busy-wait" (the receiver polls with a zero timeout in
a loop) and "blocking" (the receiver sleeps in the library's own wait). shmcomm also gets a
"blocking-nospin" row (Subscriber(spin_us=0)) to show its pure sleep/wake path.

Run ``python benchmarks/bench_pubsub.py --help``; see benchmarks/README.md.
"""

from __future__ import annotations

import array
import sys
import time

from _common import (BaseAdapter, BenchError, BenchTimeout, MSG_SIZE, SEQ, SPIN_CHECK_MASK, TAIL,
                     ZmqEndpoint, _cell, _fmt, _fmt_rate, _ratio, _tp_check,
                     add_pingpong_throughput_args, apply_quick, argument_parser, check_libraries,
                     exit_status, failed_note, json_doc, multiprocessing_version,
                     package_version, pingpong_throughput_plan, run_pingpong_throughput,
                     report_header, results_json, rtt_result, run_group,
                     shmcomm_version, skipped_row, summarize, table_row, write_json, zmq_version)

LIBS = ("shmcomm", "zmq", "iceoryx2", "pipe")
LIB_LABEL = {"shmcomm": "shmcomm", "zmq": "pyzmq ipc://", "iceoryx2": "iceoryx2", "pipe": "mp.Pipe"}
LIB_VARIANTS = {
    "shmcomm": ("busy-wait", "blocking", "blocking-nospin", "batch"),
    "zmq": ("busy-wait", "blocking"),
    "iceoryx2": ("busy-wait", "blocking"),
    "pipe": ("busy-wait", "blocking"),
}
WORKLOADS = ("pingpong", "throughput")
BATCH = 256  # messages per call in shmcomm's "batch" variant (send_many_bytes / recv_many_bytes)
VARIANT_WORKLOADS = {"batch": ("throughput",)}  # batching has no meaning in a ping-pong


# ---------------------------------------------------------------------------------------------
# Library adapters. Each adapter implements four tight loops with everything bound to locals:
#   pp_initiator(total) -> array('q') of round-trip ns    (process A)
#   pp_echo(total)                                        (process B)
#   tp_send(n) -> dict(send_t0, send_t1)                   (process A)
#   tp_recv(n) -> dict(count, loss, disorder, t_first, t_last)   (process B)
# A builds each message as bytes and receives into a preallocated bytearray; the echo in B is each
# library's plain "receive bytes, send them back"; iceoryx2 works on its samples instead.
# The loops are written out per library (no per-message indirection through shared helpers), so
# the numbers measure the library and not this file. Every wait is bounded by p["timeout"]
# (mp.Pipe's blocking receive excepted, see PipeAdapter).
# ---------------------------------------------------------------------------------------------


class _Adapter(BaseAdapter):
    def run(self) -> dict:
        p = self.p
        if self.workload == "pingpong":
            total = p["warmup"] + p["rounds"]
            if self.role == "A":
                rtt = self.pp_initiator(total)
                return {"rtt_ns": rtt[p["warmup"]:].tobytes()}
            self.pp_echo(total)
            return {}
        return self.tp_send(p["n_msgs"]) if self.role == "A" else self.tp_recv(p["n_msgs"])


def _tp_result(count, t_first, t_last, st, expected, first_seq) -> dict:
    """What tp_recv returns; st = [loss, disorder, first gaps] (see _tp_check)."""
    return {"count": count, "t_first": t_first, "t_last": t_last, "loss": st[0],
            "disorder": st[1], "expected_next": expected, "first_seq": first_seq, "gaps": st[2]}


# ---- shmcomm ---------------------------------------------------------------------------------


class ShmcommAdapter(_Adapter):
    def setup(self):
        from shmcomm import Publisher, Subscriber

        p, base = self.p, self.p["name"]
        spin = {} if self.variant != "blocking-nospin" else {"spin_us": 0}
        depth = p["depth"]
        self.pub = self.sub = None
        if self.workload == "pingpong":
            mine, theirs = ("a2b", "b2a") if self.role == "A" else ("b2a", "a2b")
            self.pub = Publisher(f"{base}_{mine}", num_slots=depth, slot_size=MSG_SIZE)
            self.sub = Subscriber(f"{base}_{theirs}", timeout_connect=self.timeout, **spin)
        elif self.role == "A":
            self.pub = Publisher(f"{base}_tp", num_slots=depth, slot_size=MSG_SIZE, lossless=True)
        else:
            self.sub = Subscriber(f"{base}_tp", timeout_connect=self.timeout, **spin)

    def close(self):
        for ep in (self.sub, self.pub):
            if ep is not None:
                ep.close()

    def pp_initiator(self, total):
        send, recv_into = self.pub.send_bytes, self.sub.recv_into
        now, pack, unpack = time.perf_counter_ns, SEQ.pack, SEQ.unpack_from
        tail, buf = TAIL, bytearray(MSG_SIZE)
        rtt = array.array("q", bytes(8 * total))
        tmo, busy, t_end = self.timeout, self.variant == "busy-wait", [None]
        for i in range(total):
            msg = pack(i) + tail
            t0 = now()
            send(msg)
            if busy:
                n = recv_into(buf, 0)
                spins = 0
                while n is None:
                    spins += 1
                    if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                        raise BenchTimeout(f"no echo for round {i}")
                    n = recv_into(buf, 0)
                t_end[0] = None
            else:
                n = recv_into(buf, tmo)
                if n is None:
                    raise BenchTimeout(f"no echo for round {i}")
            t1 = now()
            rtt[i] = t1 - t0
            if unpack(buf, 0)[0] != i or n != MSG_SIZE:
                raise BenchError(f"bad echo in round {i}: seq {unpack(buf, 0)[0]}, {n} bytes")
        return rtt

    def pp_echo(self, total):
        send, recv = self.pub.send_bytes, self.sub.recv_bytes
        tmo, busy, t_end = self.timeout, self.variant == "busy-wait", [None]
        for i in range(total):
            if busy:
                m = recv(0)
                spins = 0
                while m is None:
                    spins += 1
                    if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                        raise BenchTimeout(f"no ping for round {i}")
                    m = recv(0)
                t_end[0] = None
            else:
                m = recv(tmo)
                if m is None:
                    raise BenchTimeout(f"no ping for round {i}")
            send(m)

    def tp_send(self, n):
        send, pack, now = self.pub.send_bytes, SEQ.pack, time.perf_counter_ns
        tail, tmo = TAIL, self.timeout
        if self.variant == "batch":
            send_many = self.pub.send_many_bytes
            t0 = now()
            for start in range(0, n, BATCH):
                send_many([pack(i) + tail for i in range(start, min(n, start + BATCH))],
                          block=True, timeout=tmo)
            return {"send_t0": t0, "send_t1": now()}
        t0 = now()
        for i in range(n):
            msg = pack(i) + tail
            if not send(msg, block=True, timeout=tmo):
                raise BenchTimeout(f"send of message {i} timed out (subscriber stuck?)")
        return {"send_t0": t0, "send_t1": now()}

    def tp_recv(self, n):
        recv_into, unpack, now = self.sub.recv_into, SEQ.unpack_from, time.perf_counter_ns
        buf = bytearray(MSG_SIZE)
        tmo, busy, t_end = self.timeout, self.variant == "busy-wait", [None]
        last, expected, count, st, t_first, first_seq = n - 1, 0, 0, [0, 0, []], None, None
        if self.variant == "batch":
            recv_many = self.sub.recv_many_bytes
            while True:
                batch = recv_many(BATCH, tmo)
                if not batch:
                    break  # timed out: whatever is missing counts as lost
                if t_first is None:
                    t_first, first_seq = now(), unpack(batch[0], 0)[0]
                for m in batch:
                    seq = unpack(m, 0)[0]
                    count += 1
                    if seq == expected:
                        expected += 1
                    else:
                        expected = _tp_check(seq, expected, st)
                if expected > last:
                    break
            return _tp_result(count, t_first, now(), st, expected, first_seq)
        while True:
            if busy:
                r = recv_into(buf, 0)
                spins = 0
                while r is None:
                    spins += 1
                    if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                        break
                    r = recv_into(buf, 0)
                t_end[0] = None
            else:
                r = recv_into(buf, tmo)
            if r is None:
                break  # timed out: whatever is missing counts as lost
            seq = unpack(buf, 0)[0]
            if t_first is None:
                t_first, first_seq = now(), seq
            count += 1
            if seq == expected:
                expected += 1
            else:
                expected = _tp_check(seq, expected, st)
            if seq == last:
                break
        return _tp_result(count, t_first, now(), st, expected, first_seq)


# ---- pyzmq -----------------------------------------------------------------------------------


class ZmqAdapter(ZmqEndpoint, _Adapter):
    def setup(self):
        if self.workload == "pingpong":
            # One PAIR socket per side; a PAIR connection is bidirectional, so the ping and the
            # echo travel on the two directions of one connection (zmq's lightest pattern).
            kind = "PAIR"
        else:
            kind = "PUSH" if self.role == "A" else "PULL"
        # default SNDHWM/RCVHWM (1000 messages each): a blocking send waits when both are full
        self.zmq_open(kind, bind=self.role == "A")

    def pp_initiator(self, total):
        Again, NOBLOCK = self.zmq.Again, self.zmq.NOBLOCK
        send, recv_into = self.sock.send, self.sock.recv_into
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
                while True:
                    try:
                        n = recv_into(buf, flags=NOBLOCK)
                        break
                    except Again:
                        spins += 1
                        if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                            raise BenchTimeout(f"no echo for round {i}") from None
                t_end[0] = None
            else:
                try:
                    n = recv_into(buf)  # RCVTIMEO bounds it
                except Again:
                    raise BenchTimeout(f"no echo for round {i}") from None
            t1 = now()
            rtt[i] = t1 - t0
            if unpack(buf, 0)[0] != i or n != MSG_SIZE:
                raise BenchError(f"bad echo in round {i}: seq {unpack(buf, 0)[0]}, {n} bytes")
        return rtt

    def pp_echo(self, total):
        Again, NOBLOCK = self.zmq.Again, self.zmq.NOBLOCK
        send, recv = self.sock.send, self.sock.recv
        busy, t_end = self.variant == "busy-wait", [None]
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
                            raise BenchTimeout(f"no ping for round {i}") from None
                t_end[0] = None
            else:
                try:
                    m = recv()
                except Again:
                    raise BenchTimeout(f"no ping for round {i}") from None
            send(m)

    def tp_send(self, n):
        send, pack, now = self.sock.send, SEQ.pack, time.perf_counter_ns
        tail = TAIL
        t0 = now()
        try:
            for i in range(n):
                msg = pack(i) + tail
                send(msg)  # blocks at the high-water mark; SNDTIMEO bounds it
        except self.zmq.Again:
            raise BenchTimeout(f"send of message {i} timed out (receiver stuck?)") from None
        return {"send_t0": t0, "send_t1": now()}

    def tp_recv(self, n):
        Again, NOBLOCK = self.zmq.Again, self.zmq.NOBLOCK
        recv_into, unpack, now = self.sock.recv_into, SEQ.unpack_from, time.perf_counter_ns
        buf = bytearray(MSG_SIZE)
        busy, t_end = self.variant == "busy-wait", [None]
        last, expected, count, st, t_first, first_seq = n - 1, 0, 0, [0, 0, []], None, None
        while True:
            got = True
            if busy:
                spins = 0
                while True:
                    try:
                        recv_into(buf, flags=NOBLOCK)
                        break
                    except Again:
                        spins += 1
                        if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                            got = False
                            break
                t_end[0] = None
            else:
                try:
                    recv_into(buf)
                except Again:
                    got = False
            if not got:
                break
            seq = unpack(buf, 0)[0]
            if t_first is None:
                t_first, first_seq = now(), seq
            count += 1
            if seq == expected:
                expected += 1
            else:
                expected = _tp_check(seq, expected, st)
            if seq == last:
                break
        return _tp_result(count, t_first, now(), st, expected, first_seq)


# ---- iceoryx2 --------------------------------------------------------------------------------


class Iceoryx2Adapter(_Adapter):
    """iceoryx2 publish-subscribe with a fixed-size ctypes payload (c_uint8 * 64).

    Lossless: the service has safe overflow disabled and the publisher uses
    BackpressureStrategy.RetryUntilDelivered. iceoryx2's subscriber has no blocking receive: the
    documented way to sleep until data arrives is an event service (Notifier/Listener) next to the
    pub/sub service, so the "blocking" variant notifies after every send and the receiver sleeps in
    Listener.timed_wait() whenever receive() finds nothing. Only the public Python API is used.
    """

    def setup(self):
        import ctypes

        import iceoryx2 as iox2

        self.iox2 = iox2
        iox2.set_log_level(iox2.LogLevel.Error)
        self.Payload = ctypes.c_uint8 * MSG_SIZE
        self.memmove, self.ctypes = ctypes.memmove, ctypes
        self.node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
        self.dur = iox2.Duration.from_secs_f64(self.timeout)
        depth, base = self.p["depth"], self.p["name"]
        blocking = self.variant != "busy-wait"
        self.pub = self.sub = self.notifier = self.listener = None

        def service(suffix):
            return (
                self.node.service_builder(iox2.ServiceName.new(f"{base}/{suffix}"))
                .publish_subscribe(self.Payload)
                .enable_safe_overflow(False)
                .subscriber_max_buffer_size(depth)
                .history_size(0)
                .max_publishers(1)
                .max_subscribers(1)
                .open_or_create()
            )

        def event(suffix):
            return self.node.service_builder(iox2.ServiceName.new(f"{base}/{suffix}/ev")).event().open_or_create()

        def make_pub(suffix):
            self.pub = (
                service(suffix).publisher_builder()
                .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
                .create()
            )
            if blocking:
                self.notifier = event(suffix).notifier_builder().create()

        def make_sub(suffix):
            self.sub = service(suffix).subscriber_builder().buffer_size(depth).create()
            if blocking:
                self.listener = event(suffix).listener_builder().create()

        if self.workload == "pingpong":
            mine, theirs = ("a2b", "b2a") if self.role == "A" else ("b2a", "a2b")
            make_pub(mine)
            make_sub(theirs)
        elif self.role == "A":
            make_pub("tp")
        else:
            make_sub("tp")

    def connect(self):
        # iceoryx2 wires a publisher to a subscriber lazily: the publisher on update_connections()
        # (or send), the subscriber on receive(). Until the subscriber side is connected, a full
        # buffer does not make RetryUntilDelivered wait: the publisher drops samples (observed
        # with 0.10.0 whenever the receiver had not called receive() yet when its buffer filled).
        if self.pub is not None:
            self.pub.update_connections()
        if self.sub is not None and self.sub.receive() is not None:
            raise BenchError("iceoryx2: a sample arrived before the run started")

    def close(self):
        for ep in (self.sub, self.pub, self.listener, self.notifier):
            if ep is not None:
                ep.delete()

    def pp_initiator(self, total):
        loan, receive, memmove = self.pub.loan_uninit, self.sub.receive, self.memmove
        notify = self.notifier.notify if self.notifier is not None else None
        wait, dur = (self.listener.timed_wait, self.dur) if self.listener is not None else (None, None)
        at = self.Payload.from_address
        now, pack, unpack = time.perf_counter_ns, SEQ.pack, SEQ.unpack_from
        tail = TAIL
        rtt = array.array("q", bytes(8 * total))
        busy, t_end = self.variant == "busy-wait", [None]
        for i in range(total):
            msg = pack(i) + tail
            t0 = now()
            u = loan()
            memmove(u.payload_ptr, msg, MSG_SIZE)
            u.assume_init().send()
            if notify is not None:
                notify()
            s = receive()
            if busy:
                spins = 0
                while s is None:
                    spins += 1
                    if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                        raise BenchTimeout(f"no echo for round {i}")
                    s = receive()
                t_end[0] = None
            else:
                while s is None:
                    # an empty result is not necessarily a timeout: a wake-up can find its event
                    # already collected by the previous wait, so bound the loop by the clock
                    if not wait(dur) and self._timed_out(t_end):
                        raise BenchTimeout(f"no echo for round {i}")
                    s = receive()
                t_end[0] = None
            seq = unpack(at(s.payload_ptr), 0)[0]  # zero-copy read of the sample
            t1 = now()
            del s
            rtt[i] = t1 - t0
            if seq != i:
                raise BenchError(f"bad echo in round {i}: seq {seq}")
        return rtt

    def pp_echo(self, total):
        loan, receive, memmove = self.pub.loan_uninit, self.sub.receive, self.memmove
        notify = self.notifier.notify if self.notifier is not None else None
        wait, dur = (self.listener.timed_wait, self.dur) if self.listener is not None else (None, None)
        busy, t_end = self.variant == "busy-wait", [None]
        for i in range(total):
            s = receive()
            if busy:
                spins = 0
                while s is None:
                    spins += 1
                    if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                        raise BenchTimeout(f"no ping for round {i}")
                    s = receive()
                t_end[0] = None
            else:
                while s is None:
                    # an empty result is not necessarily a timeout: a wake-up can find its event
                    # already collected by the previous wait, so bound the loop by the clock
                    if not wait(dur) and self._timed_out(t_end):
                        raise BenchTimeout(f"no ping for round {i}")
                    s = receive()
                t_end[0] = None
            u = loan()
            memmove(u.payload_ptr, s.payload_ptr, MSG_SIZE)  # sample-to-sample copy
            del s
            u.assume_init().send()
            if notify is not None:
                notify()

    def tp_send(self, n):
        loan, memmove, pack, now = self.pub.loan_uninit, self.memmove, SEQ.pack, time.perf_counter_ns
        notify = self.notifier.notify if self.notifier is not None else None
        tail = TAIL
        undelivered = 0  # send() returns the number of subscribers that got the sample
        t0 = now()
        if notify is None:
            for i in range(n):
                msg = pack(i) + tail
                u = loan()
                memmove(u.payload_ptr, msg, MSG_SIZE)
                if u.assume_init().send() != 1:  # RetryUntilDelivered: waits while the buffer is full
                    undelivered += 1
        else:
            for i in range(n):
                msg = pack(i) + tail
                u = loan()
                memmove(u.payload_ptr, msg, MSG_SIZE)
                if u.assume_init().send() != 1:
                    undelivered += 1
                notify()
        return {"send_t0": t0, "send_t1": now(), "undelivered": undelivered}

    def tp_recv(self, n):
        receive, unpack, now, at = self.sub.receive, SEQ.unpack_from, time.perf_counter_ns, self.Payload.from_address
        wait, dur = (self.listener.timed_wait, self.dur) if self.listener is not None else (None, None)
        busy, t_end = self.variant == "busy-wait", [None]
        last, expected, count, st, t_first, first_seq = n - 1, 0, 0, [0, 0, []], None, None
        while True:
            s = receive()
            if busy:
                spins = 0
                while s is None:
                    spins += 1
                    if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                        break
                    s = receive()
                t_end[0] = None
            else:
                while s is None:
                    if not wait(dur) and self._timed_out(t_end):
                        break
                    s = receive()
                t_end[0] = None
            if s is None:
                break
            seq = unpack(at(s.payload_ptr), 0)[0]
            del s
            if t_first is None:
                t_first, first_seq = now(), seq
            count += 1
            if seq == expected:
                expected += 1
            else:
                expected = _tp_check(seq, expected, st)
            if seq == last:
                break
        return _tp_result(count, t_first, now(), st, expected, first_seq)


# ---- multiprocessing.Pipe --------------------------------------------------------------------


class PipeAdapter(_Adapter):
    """multiprocessing.Pipe(duplex=False) pairs created by the orchestrator and handed to A and B.

    busy-wait: poll(0) in a loop, then recv_bytes_into. blocking: recv_bytes_into blocks in read();
    Connection has no timed receive, so that wait is bounded by the orchestrator's watchdog (and by
    EOFError when the peer dies), not by a per-call timeout.
    """

    def setup(self):
        d = self.data
        self.tx = d.get("tx")
        self.rx = d.get("rx")

    def close(self):
        for c in (self.tx, self.rx):
            if c is not None:
                c.close()

    def pp_initiator(self, total):
        send, recv_into, poll = self.tx.send_bytes, self.rx.recv_bytes_into, self.rx.poll
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
                        raise BenchTimeout(f"no echo for round {i}")
                t_end[0] = None
            n = recv_into(buf)
            t1 = now()
            rtt[i] = t1 - t0
            if unpack(buf, 0)[0] != i or n != MSG_SIZE:
                raise BenchError(f"bad echo in round {i}: seq {unpack(buf, 0)[0]}, {n} bytes")
        return rtt

    def pp_echo(self, total):
        send, recv, poll = self.tx.send_bytes, self.rx.recv_bytes, self.rx.poll
        busy, t_end = self.variant == "busy-wait", [None]
        for i in range(total):
            if busy:
                spins = 0
                while not poll(0):
                    spins += 1
                    if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                        raise BenchTimeout(f"no ping for round {i}")
                t_end[0] = None
            send(recv())

    def tp_send(self, n):
        send, pack, now = self.tx.send_bytes, SEQ.pack, time.perf_counter_ns
        tail = TAIL
        t0 = now()
        for i in range(n):
            msg = pack(i) + tail
            send(msg)  # blocks while the kernel pipe buffer is full
        return {"send_t0": t0, "send_t1": now()}

    def tp_recv(self, n):
        recv_into, poll, unpack, now = self.rx.recv_bytes_into, self.rx.poll, SEQ.unpack_from, time.perf_counter_ns
        buf = bytearray(MSG_SIZE)
        busy, t_end, tmo = self.variant == "busy-wait", [None], self.timeout
        last, expected, count, st, t_first, first_seq = n - 1, 0, 0, [0, 0, []], None, None
        while True:
            if busy:
                spins, got = 0, True
                while not poll(0):
                    spins += 1
                    if not spins & SPIN_CHECK_MASK and self._timed_out(t_end):
                        got = False
                        break
                t_end[0] = None
                if not got:
                    break
            elif t_first is None and not poll(tmo):  # bound only the wait for the first message
                break
            recv_into(buf)
            seq = unpack(buf, 0)[0]
            if t_first is None:
                t_first, first_seq = now(), seq
            count += 1
            if seq == expected:
                expected += 1
            else:
                expected = _tp_check(seq, expected, st)
            if seq == last:
                break
        return _tp_result(count, t_first, now(), st, expected, first_seq)


ADAPTERS = {"shmcomm": ShmcommAdapter, "zmq": ZmqAdapter, "iceoryx2": Iceoryx2Adapter, "pipe": PipeAdapter}


# ---------------------------------------------------------------------------------------------
# Orchestrator
# ---------------------------------------------------------------------------------------------


def run_pair(ctx, lib, workload, variant, p) -> dict:
    """One measurement: start A and B, synchronise, collect results (_common.run_group; B gets "go"
    first, so it is already waiting when A starts). Never raises."""
    data, to_close = {}, []
    if lib == "pipe":
        if workload == "pingpong":
            rx_b, tx_a = ctx.Pipe(duplex=False)
            rx_a, tx_b = ctx.Pipe(duplex=False)
            data = {"A": {"tx": tx_a, "rx": rx_a}, "B": {"tx": tx_b, "rx": rx_b}}
            to_close = [rx_b, tx_a, rx_a, tx_b]
        else:
            rx_b, tx_a = ctx.Pipe(duplex=False)
            data = {"A": {"tx": tx_a}, "B": {"rx": rx_b}}
            to_close = [rx_b, tx_a]
    cores = p["cores"]
    q = dict(p, role_cores={"A": cores[0], "B": cores[1]} if cores else None)
    g = run_group(ctx, ADAPTERS[lib], workload, variant, q, ["A", "B"], data, go_order=["B", "A"],
                  to_close=to_close)
    out = {k: v for k, v in g.items() if k != "results"}
    if not g.get("ok"):
        return out
    res = g["results"]
    if workload == "pingpong":
        out.update(rtt_result(res["A"]["rtt_ns"], round_trip=False))
    else:
        r = res["B"]
        n = p["n_msgs"]
        r["loss"] = n - r["count"]  # covers gaps and a truncated tail alike
        out.update(r)
        dt = (r["t_last"] - r["t_first"]) if r["t_first"] is not None else 0
        out["msgs_per_s"] = (r["count"] - 1) / (dt / 1e9) if dt > 0 and r["count"] > 1 else 0.0
        out["send_seconds"] = (res["A"]["send_t1"] - res["A"]["send_t0"]) / 1e9
        if "undelivered" in res["A"]:
            out["sender_undelivered"] = res["A"]["undelivered"]
        if r["loss"] or r["disorder"]:
            out["ok"] = False
            out["error"] = f"INVALID: lost {r['loss']}, out of order {r['disorder']} of {n}"
    return out


# ---------------------------------------------------------------------------------------------
# Availability, reporting
# ---------------------------------------------------------------------------------------------


# (version, None) if importable and usable, else (None, reason)
CHECKS = {"shmcomm": lambda: shmcomm_version("Publisher", "Subscriber", library=False),
          "zmq": zmq_version, "iceoryx2": lambda: package_version("iceoryx2", "iceoryx2"),
          "pipe": multiprocessing_version}


def render_table(results: dict, order: list, skipped: dict) -> str:
    lines = [
        "| library | variant | p50 µs | p99 µs | p99.9 µs | p50 vs shmcomm | p99 vs shmcomm "
        "| msgs/s | msgs/s vs shmcomm | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for lib in order:
        if lib in skipped:
            lines.append(skipped_row(LIB_LABEL[lib], skipped[lib], lines[1].count("|") - 1))
            continue
        for variant in LIB_VARIANTS[lib]:
            row = results.get((lib, variant))
            if row is None:
                continue
            ref_variant = "blocking" if variant == "blocking-nospin" else variant
            ref = results.get(("shmcomm", ref_variant), {})
            pp, tp = row.get("pingpong", []), row.get("throughput", [])
            ps = {k: summarize(pp, k) for k in ("p50_us", "p99_us", "p999_us")}
            ts = summarize(tp, "msgs_per_s")
            rps = {k: summarize(ref.get("pingpong", []), k) for k in ("p50_us", "p99_us")}
            rts = summarize(ref.get("throughput", []), "msgs_per_s")
            notes = []
            for wl, runs in (("pingpong", pp), ("throughput", tp)):
                note = failed_note(runs, f"{wl}: ")
                if note:
                    notes.append(note)
            if tp and all(r.get("ok") for r in tp):
                notes.append("loss 0")
            lines.append(table_row([
                LIB_LABEL[lib], variant,
                _cell(ps["p50_us"], _fmt), _cell(ps["p99_us"], _fmt), _cell(ps["p999_us"], _fmt),
                _ratio(ps["p50_us"], rps["p50_us"]), _ratio(ps["p99_us"], rps["p99_us"]),
                _cell(ts, _fmt_rate), _ratio(ts, rts),
            ], notes))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argument_parser(__doc__, LIBS)
    add_pingpong_throughput_args(ap, WORKLOADS,
                                 "comma-separated subset of busy-wait,blocking,blocking-nospin (default: all)",
                                 "queue depth for shmcomm num_slots and iceoryx2 buffer size (default 1024)")
    return apply_quick(ap.parse_args(argv))


def _describe(r, wl) -> str:
    if wl == "pingpong":
        return f"p50 {r['p50_us']:.2f} µs p99 {r['p99_us']:.2f} µs p99.9 {r['p999_us']:.2f} µs"
    return f"{r['msgs_per_s']:,.0f} msgs/s, loss {r['loss']}"


def main(argv=None) -> int:
    args = parse_args(argv)
    plan = pingpong_throughput_plan(args, LIBS, WORKLOADS)
    if plan is None:
        return 2
    libs, workloads, want_variants, cores, run_timeout = plan

    cmd, info = report_header("shmcomm pub/sub benchmark", load=False)
    print(f"- pinning: A on {cores[0] if cores else '-'}, B on {cores[1] if cores else '-'};"
          f" start method {args.start_method}")
    print(f"- message size {MSG_SIZE} B; ping-pong {args.rounds} round trips after {args.warmup} warm-up;"
          f" throughput {args.messages} messages; repeats {args.repeats}; queue depth {args.depth};"
          f" wait bound {args.timeout} s, watchdog {run_timeout:.0f} s per measurement")
    versions, skipped = check_libraries(libs, CHECKS, LIB_LABEL)
    results, elapsed, p = run_pingpong_throughput(
        args, cores, run_timeout, libs, skipped, want_variants, workloads,
        (LIB_VARIANTS, VARIANT_WORKLOADS, WORKLOADS, _describe), run_pair,
        lambda lib, variant, wl: f"{LIB_LABEL[lib]:>13} {variant:<15} {wl:<10}")

    print("## Results\n")
    print(render_table(results, libs, skipped))
    print()
    print("Latency = one-way (round trip / 2) per message, µs; msgs/s = counted by the receiver from its"
          " first to its last message. Cells: median over repeats (min–max). 'vs shmcomm' = this row ÷"
          " shmcomm's row of the same variant (blocking-nospin compares with shmcomm blocking): latency"
          " above ×1 and msgs/s below ×1 mean slower than shmcomm. Throughput senders use each library's"
          " lossless blocking send; a throughput run is valid only with loss 0.")
    print(f"\n_total {elapsed:.0f} s_")

    if args.json:
        doc = json_doc(None, cmd, args, info, versions, skipped, p, elapsed,
                       results=results_json(results, args.no_samples, ("p50_us", "p99_us", "p999_us", "mean_us")))
        write_json(args.json, doc)
    return exit_status(r for per in results.values() for runs in per.values() for r in runs)


if __name__ == "__main__":
    sys.exit(main())
