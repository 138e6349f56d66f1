"""One direction of one channel, for every library the suite measures (benchmarks/suite.py).

A transport is built inside a worker process, after pinning, as ``open_transport(lib, role, name,
spec, data)`` with role "tx" (sends) or "rx" (receives). It hands the measured loops in loops.py
plain callables, bound once, so a loop never goes through this file per message when the library's
own method fits:

  tx: send(msg)                 lossless where the library can be: waits while the channel is full
      send_many(list) | None    one call for a batch (shmcomm, faster-fifo)
      send_packed(arr) | None   one call for a batch of 64-byte records packed in one buffer (shmcomm)
      frame_send(buf)           copy path for large frames (buf: a bytearray, seq in its first 8 bytes)
      frame_loan(seq) | None    zero-copy path: write the sequence number into a loaned slot, publish
  rx: poll() -> bytes | None    non-blocking receive (busy-wait loops), None if nothing is there
      wait() -> bytes | None    blocking receive bounded by spec["timeout"], None on timeout
      recv_many() -> list       one call for up to spec["batch"] messages (may be None: unsupported)
      recv_packed(arr, sizes)   one call for up to len(sizes) records into arr; the count (shmcomm)
      frame_recv(buf, read)     copy-out: receive into buf, return the sequence number or None
      frame_view(read)          in place: look at the frame where it is, return its sequence number

``read=True`` makes the consumer read every byte of the frame (a numpy sum over it as uint64).
Libraries whose API raises instead of returning None, or needs several calls per message
(iceoryx2: loan, copy, send), get a small closure: its cost (about 0.05 us per call on this machine)
is part of what a user of that library pays too, and the README of the suite says so.

spec keys: size (largest message), depth (ring/queue depth in messages), timeout (s, every wait),
lossless, blocking (receiver sleeps: iceoryx2 then adds its event service), busy (frames: the
receiver polls with timeout 0, as iceoryx2's must), spin_us (shmcomm),
batch, ipc_dir (zmq ipc:// files), tcp_port (zmq tcp://), fanout (number of subscribers).
"""

from __future__ import annotations

import functools
import os
import struct

SEQ = struct.Struct("<Q")
STOP = (1 << 64) - 1  # the end-of-stream sequence number
STOP8 = SEQ.pack(STOP)


def _sum_u64(buf) -> int:
    """Reads every byte of a frame (the consumer "uses" the data)."""
    import numpy as np

    return int(np.frombuffer(buf, dtype=np.uint64).sum())


def _poll_until(poll, timeout):
    """Calls poll() until it returns something other than None, for at most timeout seconds."""
    import time

    end = time.monotonic() + timeout
    r = poll()
    while r is None and time.monotonic() < end:
        r = poll()
    return r


class Transport:
    lib = "?"
    send = send_many = send_packed = frame_send = frame_loan = None
    poll = wait = recv_many = recv_packed = frame_recv = frame_view = None

    def connect(self) -> None:
        """Runs twice, in lock-step with the peers, after every process set up."""

    def close(self) -> None:
        pass


# ---- shmcomm ---------------------------------------------------------------------------------


class Shmcomm(Transport):
    lib = "shmcomm"

    def __init__(self, role, name, spec, data):
        from shmcomm import Publisher, Subscriber

        t, self.ep = spec["timeout"], None
        if role == "tx":
            pub = self.ep = Publisher(name, num_slots=spec["depth"], slot_size=spec["size"],
                                      lossless=spec["lossless"], single_writer=spec.get("single_writer", False))
            self.send = functools.partial(pub.send_bytes, block=True, timeout=t) if spec["lossless"] \
                else pub.send_bytes
            self.send_many = functools.partial(pub.send_many_bytes, block=True, timeout=t)
            self.send_packed = functools.partial(pub.send_packed, sizes=64, block=True, timeout=t)
            self.frame_send = self.send
            loan, pack_into = pub.loan, SEQ.pack_into

            def frame_loan(seq):
                slot = loan(block=True, timeout=t)
                pack_into(slot.data, 0, seq)
                slot.commit()

            self.frame_loan = frame_loan
        else:
            sub = self.ep = Subscriber(name, timeout_connect=t, spin_us=spec.get("spin_us", 50))
            self.poll = functools.partial(sub.recv_bytes, 0)
            self.wait = functools.partial(sub.recv_bytes, t)
            self.recv_many = functools.partial(sub.recv_many_bytes, spec["batch"], t)
            self.recv_packed = functools.partial(sub.recv_packed, timeout=t)
            recv_into, recv_view, unpack = sub.recv_into, sub.recv_view, SEQ.unpack_from
            # frames: with spec["busy"] the receiver polls (timeout 0) like iceoryx2's, bounded by the clock
            ft = 0 if spec.get("busy") else t

            def frame_recv(buf, read):
                if recv_into(buf, ft) is None and (ft or _poll_until(lambda: recv_into(buf, 0), t) is None):
                    return None
                if read:
                    _sum_u64(buf)
                return unpack(buf, 0)[0]

            def frame_view(read):
                view = recv_view(ft)
                if view is None and not ft:
                    view = _poll_until(lambda: recv_view(0), t)
                if view is None:
                    return None
                seq = unpack(view.data, 0)[0]
                if read:
                    _sum_u64(view.data)
                view.release()
                return seq

            self.frame_recv, self.frame_view = frame_recv, frame_view

    def close(self):
        if self.ep is not None:
            self.ep.close()


# ---- pyzmq -----------------------------------------------------------------------------------


class Zmq(Transport):
    """PUSH -> PULL (or PUB -> SUB for fan-out). The sender binds, receivers connect. Default
    high-water marks (1000 + 1000): a PUSH send blocks there, a PUB send drops (fan-out loss)."""

    def __init__(self, role, name, spec, data, transport="ipc"):
        import zmq

        self.lib = f"zmq-{transport}"
        t = spec["timeout"]
        self.ctx = zmq.Context(io_threads=1)
        fan = spec.get("fanout")
        if transport == "ipc":
            self.path = os.path.join(spec["ipc_dir"], f"{name}.sock")
            addr = f"ipc://{self.path}"
        else:
            self.path = None
            addr = f"tcp://127.0.0.1:{spec['tcp_ports'][name.rsplit('_', 1)[-1]]}"
        kind = (zmq.PUB if role == "tx" else zmq.SUB) if fan else (zmq.PUSH if role == "tx" else zmq.PULL)
        s = self.sock = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 2000)
        if spec["size"] > 65536:  # frames: queue at most `depth` of them (the default is 1000 each side)
            s.setsockopt(zmq.SNDHWM, spec["depth"])
            s.setsockopt(zmq.RCVHWM, spec["depth"])
        s.setsockopt(zmq.RCVTIMEO, int(t * 1000))
        s.setsockopt(zmq.SNDTIMEO, int(t * 1000))
        self.role = role
        Again, NOBLOCK = zmq.Again, zmq.NOBLOCK
        if role == "tx":
            s.bind(addr)
            self.send = s.send
            self.frame_send = s.send
        else:
            if fan:
                s.setsockopt(zmq.SUBSCRIBE, b"")
            s.connect(addr)
            recv, recv_into, unpack = s.recv, s.recv_into, SEQ.unpack_from

            def poll():
                try:
                    return recv(NOBLOCK)
                except Again:
                    return None

            def wait():
                try:
                    return recv()
                except Again:
                    return None

            flags = NOBLOCK if spec.get("busy") else 0

            def frame_recv(buf, read):
                try:
                    recv_into(buf, flags=flags)
                except Again:
                    if not flags or _poll_until(lambda: _try(recv_into, buf, NOBLOCK, Again), t) is None:
                        return None
                if read:
                    _sum_u64(buf)
                return unpack(buf, 0)[0]

            def frame_view(read):
                try:
                    f = recv(flags=flags, copy=False)  # a zmq.Frame: the message's own buffer, no copy
                except Again:
                    f = None if not flags else _poll_until(lambda: _try_frame(recv, NOBLOCK, Again), t)
                if f is None:
                    return None
                data = f.buffer
                seq = unpack(data, 0)[0]
                if read:
                    _sum_u64(data)
                return seq

            self.poll, self.wait, self.frame_recv, self.frame_view = poll, wait, frame_recv, frame_view

    def close(self):
        self.sock.close()
        self.ctx.term()
        if self.role == "tx" and self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass


def _try(recv_into, buf, flags, again):
    try:
        return recv_into(buf, flags=flags)
    except again:
        return None


def _try_frame(recv, flags, again):
    try:
        return recv(flags=flags, copy=False)
    except again:
        return None


# ---- multiprocessing.Pipe, multiprocessing.Queue, faster-fifo ----------------------------------


class Pipe(Transport):
    """multiprocessing.Pipe(duplex=False), made by the orchestrator (data["conn"]). The blocking
    receive is recv_bytes (a blocking read: bounded by the watchdog and EOF, not per call)."""

    lib = "pipe"

    def __init__(self, role, name, spec, data):
        c = self.conn = data["conn"]
        t = spec["timeout"]
        if role == "tx":
            self.send = self.frame_send = c.send_bytes
        else:
            recv, ready, recv_into, unpack = c.recv_bytes, c.poll, c.recv_bytes_into, SEQ.unpack_from

            def poll():
                return recv() if ready(0) else None

            def frame_recv(buf, read):
                if not ready(t):
                    return None
                recv_into(buf)
                if read:
                    _sum_u64(buf)
                return unpack(buf, 0)[0]

            self.poll, self.wait, self.frame_recv = poll, recv, frame_recv

    def close(self):
        self.conn.close()


class Queue(Transport):
    """multiprocessing.Queue(maxsize=depth) (pickles; a feeder thread writes a pipe) or
    faster_fifo.Queue with a raw-bytes codec; made by the orchestrator (data["queue"])."""

    def __init__(self, role, name, spec, data, lib="mpqueue"):
        import queue as _queue

        self.lib = lib
        q = self.q = data["queue"]
        t, empty = spec["timeout"], _queue.Empty
        if role == "tx":
            self.send = functools.partial(q.put, block=True, timeout=t)
            if lib == "fasterfifo":
                self.send_many = functools.partial(q.put_many, block=True, timeout=t)
        else:
            get = q.get

            def poll():
                try:
                    return get(False)
                except empty:
                    return None

            def wait():
                try:
                    return get(True, t)
                except empty:
                    return None

            self.poll, self.wait = poll, wait
            if lib == "fasterfifo":
                get_many, batch = q.get_many, spec["batch"]

                def recv_many():
                    try:
                        return get_many(block=True, timeout=t, max_messages_to_get=batch)
                    except empty:
                        return []

                self.recv_many = recv_many

    def close(self):
        if self.lib == "mpqueue":
            self.q.close()
            if hasattr(self.q, "join_thread"):
                self.q.join_thread()


def make_queue(ctx, lib, spec):
    """Built by the orchestrator and inherited by the workers."""
    if lib == "mpqueue":
        return ctx.Queue(maxsize=spec["depth"])
    import faster_fifo

    # each item is stored with an 8-byte length: room for `depth` items
    return faster_fifo.Queue(max_size_bytes=spec["depth"] * (spec["size"] + 8), loads=bytes, dumps=bytes)


# ---- iceoryx2 --------------------------------------------------------------------------------


class Iceoryx2(Transport):
    """iceoryx2 publish-subscribe with a fixed-size ctypes payload (c_uint8 * size), lossless (safe
    overflow off, RetryUntilDelivered). Its subscriber has no blocking receive: with
    spec["blocking"] the sender notifies an event service after every sample and the receiver sleeps
    in Listener.timed_wait() whenever receive() finds nothing (the documented way to wait).
    Receivers return the payload as bytes (ctypes.string_at: one copy, like every other library's
    receive); the frame paths copy (copy path) or look in place (zero-copy path)."""

    lib = "iceoryx2"

    def __init__(self, role, name, spec, data):
        import ctypes

        import iceoryx2 as iox2

        iox2.set_log_level(iox2.LogLevel.Error)
        size, t = spec["size"], spec["timeout"]
        self.Payload = ctypes.c_uint8 * size
        self.node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
        dur = iox2.Duration.from_secs_f64(min(t, 0.1))
        subs = max(1, spec.get("fanout") or 1)
        depth = spec["depth"]
        svc_name = name.replace("_", "/", 1)  # shmbench/<pid>_<n>_a2b
        self.pub = self.sub = self.notifier = self.listener = None
        service = (self.node.service_builder(iox2.ServiceName.new(svc_name))
                   .publish_subscribe(self.Payload)
                   .enable_safe_overflow(False)
                   .subscriber_max_buffer_size(depth)
                   .history_size(0)
                   .max_publishers(1)
                   .max_subscribers(subs)
                   .open_or_create())
        event = None
        if spec["blocking"]:
            event = self.node.service_builder(iox2.ServiceName.new(svc_name + "/ev")).event().open_or_create()
        memmove, string_at, u64 = ctypes.memmove, ctypes.string_at, ctypes.c_uint64.from_address
        if role == "tx":
            self.pub = (service.publisher_builder()
                        .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered).create())
            loan = self.pub.loan_uninit
            notify = None
            if event is not None:
                self.notifier = event.notifier_builder().create()
                notify = self.notifier.notify

            if notify is None:
                def send(msg):
                    u = loan()
                    memmove(u.payload_ptr, msg, len(msg))
                    u.assume_init().send()
            else:
                def send(msg):
                    u = loan()
                    memmove(u.payload_ptr, msg, len(msg))
                    u.assume_init().send()
                    notify()

            def frame_send(buf):
                u = loan()
                memmove(u.payload_ptr, (ctypes.c_char * len(buf)).from_buffer(buf), len(buf))
                u.assume_init().send()
                if notify is not None:
                    notify()

            def frame_loan(seq):
                u = loan()
                u64(u.payload_ptr).value = seq
                u.assume_init().send()
                if notify is not None:
                    notify()

            self.send, self.frame_send, self.frame_loan = send, frame_send, frame_loan
        else:
            self.sub = service.subscriber_builder().buffer_size(depth).create()
            receive = self.sub.receive
            timed_wait = None
            if event is not None:
                self.listener = event.listener_builder().create()
                timed_wait = self.listener.timed_wait
            import time as _time

            mono = _time.monotonic

            def poll():
                s = receive()
                if s is None:
                    return None
                m = string_at(s.payload_ptr, size)
                del s
                return m

            def next_sample():
                s = receive()
                if s is not None:
                    return s
                end = mono() + t
                while s is None:
                    if timed_wait is not None:
                        timed_wait(dur)  # may return early: bounded by the clock
                    if mono() > end:
                        return None
                    s = receive()
                return s

            def wait():
                s = next_sample()
                if s is None:
                    return None
                m = string_at(s.payload_ptr, size)
                del s
                return m

            def frame_recv(buf, read):
                s = next_sample()
                if s is None:
                    return None
                memmove((ctypes.c_char * size).from_buffer(buf), s.payload_ptr, size)
                del s
                if read:
                    _sum_u64(buf)
                return SEQ.unpack_from(buf, 0)[0]

            def frame_view(read):
                s = next_sample()
                if s is None:
                    return None
                ptr = s.payload_ptr
                seq = u64(ptr).value
                if read:
                    _sum_u64(self.Payload.from_address(ptr))
                del s
                return seq

            self.poll, self.wait, self.frame_recv, self.frame_view = poll, wait, frame_recv, frame_view

    def connect(self):
        # iceoryx2 connects ports lazily (publisher: update_connections or send; subscriber:
        # receive). Until then a full buffer makes RetryUntilDelivered drop instead of wait.
        if self.pub is not None:
            self.pub.update_connections()
        if self.sub is not None and self.sub.receive() is not None:
            raise RuntimeError("iceoryx2: a sample arrived before the run started")

    def close(self):
        for ep in (self.sub, self.pub, self.listener, self.notifier):
            if ep is not None:
                ep.delete()


# ---- shm-comm (PyPI shm-comm 1.0.0, the API shmcomm follows) -----------------------------------


class ShmComm(Transport):
    """shm-comm's PUB/SUB for ping-pong (it overwrites, never waits: one message is in flight there)
    and its PUSH/PULL (lossless, blocking) for streams. Its blocking receive polls with 100 us sleeps."""

    lib = "shm_comm"

    def __init__(self, role, name, spec, data):
        import shm_comm

        t, self.role = spec["timeout"], role
        slot = spec["size"] + 64  # its slots carry a 4-byte size prefix
        if spec["lossless"]:
            kinds = (shm_comm.Pusher, shm_comm.Puller)
        else:
            kinds = (shm_comm.Publisher, shm_comm.Subscriber)
        if role == "tx":
            ep = self.ep = kinds[0](name, num_slots=spec["depth"], slot_size=slot)
            self.send = functools.partial(ep.send_bytes, block=True, timeout=t) if spec["lossless"] \
                else ep.send_bytes
            self.frame_send = lambda buf: self.send(bytes(buf))  # it takes bytes only
        else:
            # attached in connect(), once every process has set up: shm-comm's attach can read a
            # segment its creator has not initialised yet ("invalid magic 0")
            self.ep, self.kind, self.name, self.t = None, kinds[1], name, t

    def connect(self):
        if self.role != "rx" or self.ep is not None:
            return
        ep = self.ep = self.kind(self.name, timeout_connect=self.t)
        t = self.t
        self.poll = functools.partial(ep.recv_bytes, 0)
        self.wait = functools.partial(ep.recv_bytes, t)
        recv = ep.recv_bytes

        def frame_recv(buf, read):
            m = recv(t)
            if m is None:
                return None
            buf[:len(m)] = m
            if read:
                _sum_u64(buf)
            return SEQ.unpack_from(buf, 0)[0]

        self.frame_recv = frame_recv

    def close(self):
        if self.ep is None:
            return
        shm = getattr(self.ep, "_shm", None)
        self.ep.close()
        if self.role == "rx" and shm is not None:
            # attaching registered the creator's segment with multiprocessing's resource tracker
            # (CPython < 3.13 does that for every SharedMemory): unregister it, so the tracker does not
            # try to unlink it again at exit and warn about a "leak" the creator already removed
            try:
                from multiprocessing import resource_tracker

                resource_tracker.unregister(shm._name, "shared_memory")
            except Exception:
                pass


# ---- zerobuffer-ipc (PyPI zerobuffer-ipc 1.3.0) ----------------------------------------------


class ZeroBuffer(Transport):
    """zerobuffer's Reader (creates the buffer) and Writer (attaches, in connect()). A byte ring with
    POSIX semaphores: the writer waits while it is full (lossless), the reader sleeps on a semaphore.
    read_frame returns a zero-copy Frame; the bytes path copies it out (bytes(frame.data))."""

    lib = "zerobuffer"

    def __init__(self, role, name, spec, data):
        import zerobuffer

        self.zb, self.role, self.name = zerobuffer, role, name
        self.t = spec["timeout"]
        self.reader = self.writer = None
        size = self._frame_size = spec["size"]
        if role == "rx":
            cap = max(spec["depth"] * (size + 64), 4 * (size + 64))
            self.reader = zerobuffer.Reader(name, zerobuffer.BufferConfig(metadata_size=64, payload_size=cap))
            read_frame, t, unpack = self.reader.read_frame, self.t, SEQ.unpack_from

            def take(tmo):
                f = read_frame(tmo)
                if f is None:
                    return None
                m = bytes(f.data)
                f.dispose()
                return m

            ft = 0 if spec.get("busy") else t

            def next_frame():
                f = read_frame(ft)
                if f is None and not ft:
                    f = _poll_until(lambda: read_frame(0), t)
                return f

            def frame_recv(buf, read):
                f = next_frame()
                if f is None:
                    return None
                n = f.size
                buf[:n] = f.data
                f.dispose()
                if read:
                    _sum_u64(buf)
                return unpack(buf, 0)[0]

            def frame_view(read):
                f = next_frame()
                if f is None:
                    return None
                data = f.data
                seq = unpack(data, 0)[0]
                if read:
                    _sum_u64(data)
                del data
                f.dispose()
                return seq

            self.poll = functools.partial(take, 0)
            self.wait = functools.partial(take, t)
            self.frame_recv, self.frame_view = frame_recv, frame_view

    def connect(self):
        if self.role == "tx" and self.writer is None:
            w = self.writer = self.zb.Writer(self.name)
            self.send = self.frame_send = w.write_frame
            get_buffer, commit, pack_into, size = w.get_frame_buffer, w.commit_frame, SEQ.pack_into, self._frame_size

            def frame_loan(seq):
                mv = get_buffer(size)
                pack_into(mv, 0, seq)
                del mv
                commit()

            self.frame_loan = frame_loan

    def close(self):
        for ep in (self.writer, self.reader):
            if ep is not None:
                try:
                    ep.close()
                except Exception:
                    pass


# ---------------------------------------------------------------------------------------------

LIBS = ("shmcomm", "zmq-ipc", "zmq-tcp", "pipe", "mpqueue", "fasterfifo", "iceoryx2", "shm_comm",
        "zerobuffer")
LABEL = {"shmcomm": "shmcomm", "zmq-ipc": "pyzmq ipc://", "zmq-tcp": "pyzmq tcp://127.0.0.1",
         "pipe": "mp.Pipe", "mpqueue": "mp.Queue", "fasterfifo": "faster-fifo", "iceoryx2": "iceoryx2",
         "shm_comm": "shm-comm", "zerobuffer": "zerobuffer-ipc"}
MODULE = {"shmcomm": ("shmcomm", "shmcomm"), "zmq-ipc": ("zmq", "pyzmq"), "zmq-tcp": ("zmq", "pyzmq"),
          "pipe": ("multiprocessing", None), "mpqueue": ("multiprocessing", None),
          "fasterfifo": ("faster_fifo", "faster-fifo"), "iceoryx2": ("iceoryx2", "iceoryx2"),
          "shm_comm": ("shm_comm", "shm-comm"), "zerobuffer": ("zerobuffer", "zerobuffer-ipc")}


def open_transport(lib, role, name, spec, data):
    if lib == "shmcomm":
        return Shmcomm(role, name, spec, data)
    if lib.startswith("zmq-"):
        return Zmq(role, name, spec, data, transport=lib[4:])
    if lib == "pipe":
        return Pipe(role, name, spec, data)
    if lib in ("mpqueue", "fasterfifo"):
        return Queue(role, name, spec, data, lib=lib)
    if lib == "iceoryx2":
        return Iceoryx2(role, name, spec, data)
    if lib == "shm_comm":
        return ShmComm(role, name, spec, data)
    if lib == "zerobuffer":
        return ZeroBuffer(role, name, spec, data)
    raise ValueError(f"unknown library {lib!r}")


def library_version(lib):
    """(version text, None) if the library imports here, else (None, reason)."""
    import importlib
    import platform
    from importlib.metadata import version

    module, dist = MODULE[lib]
    try:
        mod = importlib.import_module(module)
        if lib == "zerobuffer":
            import posix_ipc  # noqa: F401 - zerobuffer needs it on Linux and does not declare it
    except Exception as e:  # noqa: BLE001 - ImportError, OSError (a missing .so), ...
        return None, f"not importable: {type(e).__name__}: {e}"
    if dist is None:
        return f"Python {platform.python_version()}", None
    try:
        v = version(dist)
    except Exception:
        v = getattr(mod, "__version__", "unknown")
    if lib.startswith("zmq-"):
        v += f" (libzmq {mod.zmq_version()})"
    if lib == "shmcomm":
        try:
            v += f" (libshm {mod.library_version()}, {os.environ.get('SHMCOMM_LIBRARY') or 'packaged library'})"
        except Exception:
            pass
    return v, None
