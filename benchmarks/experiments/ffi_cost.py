#!/usr/bin/env python3
"""Where the Python-side time of a 64-byte send and receive goes, and what other bindings would give.

Builds, in a temporary directory, against the same libshm the shmcomm package loads:
  * a cffi API-mode ("out-of-line", compiled) module declaring the four hot-path functions;
  * a minimal CPython extension (fastpath_ext.c, METH_FASTCALL, one C call per operation);
then measures, in one process (publisher and subscriber on one channel, send then receive):
  wrapper   shmcomm's Publisher.send_bytes / Subscriber.recv_bytes(0) (cffi ABI mode + Python checks)
  abi       the same libshm calls made directly through cffi ABI mode (lib.shmc_pub_try_send, ...)
  api       the same calls through the cffi API-mode module
  ext       the same calls through the CPython extension
  C         the send + receive pair looped in C (libshm's own cost)
and across two processes pinned to cores 0 and 1: busy-wait ping-pong (one-way p50) and lossless
single-call throughput, shmcomm's wrapper against the extension.

Nothing here changes the package: the binding stays cffi ABI mode; this shows the numbers behind the
choice. Run: SHMCOMM_LIBRARY=... python benchmarks/experiments/ffi_cost.py [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cbench import _shmcomm_paths  # noqa: E402

CDEF = """
typedef struct shmc_pub shmc_pub_t;
typedef struct shmc_sub shmc_sub_t;
uint32_t shmc_version(void);
int shmc_pub_try_send(shmc_pub_t *pub, const void *data, size_t len);
int64_t shmc_sub_next(shmc_sub_t *sub, int64_t timeout_ns);
int shmc_sub_buffer(shmc_sub_t *sub, const void **buf, size_t *cap);
"""


def build(tmp: Path) -> dict:
    """Compiles the API-mode module and the extension; returns {name: module file}."""
    inc, lib = _shmcomm_paths()
    libdir = str(lib.parent)
    # the linker wants libshm.so; the package may hold only that name, a build dir also libshm.so.0
    link_dir = tmp / "lib"
    link_dir.mkdir()
    (link_dir / "libshm.so").symlink_to(lib)
    out = {}
    from cffi import FFI

    ffib = FFI()
    ffib.cdef(CDEF)
    ffib.set_source("shmc_api", '#include "shmcomm.h"', include_dirs=[str(inc)], library_dirs=[str(link_dir)],
                    libraries=["shm"], extra_link_args=[f"-Wl,-rpath,{libdir}"], extra_compile_args=["-O2"])
    out["api"] = ffib.compile(tmpdir=str(tmp), verbose=False)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    ext = tmp / f"shmc_fastpath{suffix}"
    cmd = [os.environ.get("CC", "cc"), "-O2", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}",
           f"-I{inc}", str(HERE / "fastpath_ext.c"), "-o", str(ext), f"-L{link_dir}", "-lshm",
           f"-Wl,-rpath,{libdir}"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    out["ext"] = str(ext)
    return out


def load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def per_call(fn, n: int = 200_000, repeats: int = 5) -> float:
    """Best of `repeats` runs of fn(n) (a loop written by the caller), ns per iteration."""
    best = None
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn(n)
        dt = (time.perf_counter_ns() - t0) / n
        best = dt if best is None else min(best, dt)
    return best


def in_process(mods: dict) -> dict:
    from shmcomm import Publisher, Subscriber
    from shmcomm._binding import ffi, lib

    api = load("shmc_api", mods["api"])
    ext = load("shmc_fastpath", mods["ext"])
    name = f"ffi_cost_{os.getpid()}"
    pub = Publisher(name, num_slots=1024, slot_size=64)
    sub = Subscriber(name, timeout_connect=1.0)
    try:
        msg = bytes(64)
        ph, sh = pub._handle, sub._handle
        p_addr, s_addr = int(ffi.cast("uintptr_t", ph)), int(ffi.cast("uintptr_t", sh))
        aph, ash = api.ffi.cast("shmc_pub_t *", p_addr), api.ffi.cast("shmc_sub_t *", s_addr)
        ptr, cap = ffi.new("const void **"), ffi.new("size_t *")
        lib.shmc_sub_buffer(sh, ptr, cap)
        abi_buf = ffi.buffer(ptr[0], cap[0])
        aptr, acap = api.ffi.new("const void **"), api.ffi.new("size_t *")
        api.lib.shmc_sub_buffer(ash, aptr, acap)
        api_buf = api.ffi.buffer(aptr[0], acap[0])
        r = {}

        def loop_empty(n):
            for _ in range(n):
                pass

        r["python loop iteration"] = per_call(loop_empty)

        def ver_abi(n, f=lib.shmc_version):
            for _ in range(n):
                f()

        def ver_api(n, f=api.lib.shmc_version):
            for _ in range(n):
                f()

        r["abi: shmc_version() (0 arguments)"] = per_call(ver_abi)
        r["api: shmc_version() (0 arguments)"] = per_call(ver_api)

        def send_wrapper(n, send=pub.send_bytes):
            for _ in range(n):
                send(msg)

        def send_abi(n, f=lib.shmc_pub_try_send):
            for _ in range(n):
                f(ph, msg, 64)

        def send_api(n, f=api.lib.shmc_pub_try_send):
            for _ in range(n):
                f(aph, msg, 64)

        def send_ext(n, f=ext.send):
            for _ in range(n):
                f(p_addr, msg)

        for k, fn in (("wrapper", send_wrapper), ("abi", send_abi), ("api", send_api), ("ext", send_ext)):
            r[f"{k}: send 64 B"] = per_call(fn)
        # drain, then time a receive that finds nothing (a busy-wait poll)
        while sub.recv_bytes(0) is not None:
            pass

        def poll_wrapper(n, recv=sub.recv_bytes):
            for _ in range(n):
                recv(0)

        def poll_abi(n, f=lib.shmc_sub_next):
            for _ in range(n):
                f(sh, 0)

        def poll_api(n, f=api.lib.shmc_sub_next):
            for _ in range(n):
                f(ash, 0)

        def poll_ext(n, f=ext.recv):
            for _ in range(n):
                f(s_addr)

        for k, fn in (("wrapper", poll_wrapper), ("abi", poll_abi), ("api", poll_api), ("ext", poll_ext)):
            r[f"{k}: empty poll"] = per_call(fn)

        def pair_wrapper(n, send=pub.send_bytes, recv=sub.recv_bytes):
            for _ in range(n):
                send(msg)
                recv(0)

        def pair_abi(n, s=lib.shmc_pub_try_send, nx=lib.shmc_sub_next, buf=abi_buf):
            for _ in range(n):
                s(ph, msg, 64)
                k = nx(sh, 0)
                buf[0:k]

        def pair_api(n, s=api.lib.shmc_pub_try_send, nx=api.lib.shmc_sub_next, buf=api_buf):
            for _ in range(n):
                s(aph, msg, 64)
                k = nx(ash, 0)
                buf[0:k]

        def pair_ext(n, s=ext.send, rv=ext.recv):
            for _ in range(n):
                s(p_addr, msg)
                rv(s_addr)

        for k, fn in (("wrapper", pair_wrapper), ("abi", pair_abi), ("api", pair_api), ("ext", pair_ext)):
            r[f"{k}: send + receive 64 B (bytes out)"] = per_call(fn)
        r["C: send + receive 64 B (libshm only)"] = min(ext.c_pairs(p_addr, s_addr, 1_000_000) for _ in range(5))
        return r
    finally:
        sub.close()
        pub.close()


# ---- across processes ------------------------------------------------------------------------


def _peer(kind: str, mode: str, name: str, n: int, ext_path: str, q) -> None:
    os.sched_setaffinity(0, {1})
    from shmcomm import Publisher, Subscriber
    from shmcomm._binding import ffi

    ext = load("shmc_fastpath", ext_path)
    sub = Subscriber(f"{name}_a2b", timeout_connect=5)
    pub = Publisher(f"{name}_b2a", num_slots=64, slot_size=64) if kind == "pingpong" else None
    q.put("ready")
    s_addr = int(ffi.cast("uintptr_t", sub._handle))
    if kind == "pingpong":
        p_addr = int(ffi.cast("uintptr_t", pub._handle))
        if mode == "ext":
            recv, send = ext.recv, ext.send
            for _ in range(n):
                m = recv(s_addr)
                while m is None:
                    m = recv(s_addr)
                send(p_addr, m)
        else:
            recv, send = sub.recv_bytes, pub.send_bytes
            for _ in range(n):
                m = recv(0)
                while m is None:
                    m = recv(0)
                send(m)
        q.get(timeout=30)
    else:
        count, t_first = 0, None
        if mode == "ext":
            recv = ext.recv
            while count < n:
                m = recv(s_addr)
                if m is not None:
                    count += 1
                    if t_first is None:
                        t_first = time.perf_counter_ns()
        else:
            recv = sub.recv_bytes
            while count < n:
                m = recv(0)
                if m is not None:
                    count += 1
                    if t_first is None:
                        t_first = time.perf_counter_ns()
        q.put((count - 1) / ((time.perf_counter_ns() - t_first) / 1e9))
        q.get(timeout=30)
    sub.close()
    if pub is not None:
        pub.close()


def cross_process(mods: dict, rounds: int, messages: int) -> dict:
    from shmcomm import Publisher, Subscriber
    from shmcomm._binding import ffi

    ext = load("shmc_fastpath", mods["ext"])
    os.sched_setaffinity(0, {0})
    ctx = mp.get_context("spawn")
    out = {}
    for kind in ("pingpong", "throughput"):
        for mode in ("wrapper", "ext"):
            name = f"ffi_x_{os.getpid()}_{kind}_{mode}"
            pub = Publisher(f"{name}_a2b", num_slots=1024, slot_size=64, lossless=(kind == "throughput"))
            q = ctx.Queue()
            n = rounds if kind == "pingpong" else messages
            pr = ctx.Process(target=_peer, args=(kind, mode, name, n, mods["ext"], q))
            pr.start()
            assert q.get(timeout=30) == "ready"
            msg = bytes(64)
            p_addr = int(ffi.cast("uintptr_t", pub._handle))
            if kind == "pingpong":
                sub = Subscriber(f"{name}_b2a", timeout_connect=5)
                s_addr = int(ffi.cast("uintptr_t", sub._handle))
                time.sleep(0.05)
                rtt = []
                now = time.perf_counter_ns
                if mode == "ext":
                    send, recv = ext.send, ext.recv
                    for _ in range(n):
                        t0 = now()
                        send(p_addr, msg)
                        m = recv(s_addr)
                        while m is None:
                            m = recv(s_addr)
                        rtt.append(now() - t0)
                else:
                    send, recv = pub.send_bytes, sub.recv_bytes
                    for _ in range(n):
                        t0 = now()
                        send(msg)
                        m = recv(0)
                        while m is None:
                            m = recv(0)
                        rtt.append(now() - t0)
                rtt.sort()
                out[f"{mode}: ping-pong one-way p50 us"] = rtt[len(rtt) // 2] / 2000
                out[f"{mode}: ping-pong one-way p99 us"] = rtt[int(len(rtt) * 0.99)] / 2000
                q.put("done")
                sub.close()
            else:
                if mode == "ext":
                    send = ext.send
                    for _ in range(n):
                        while send(p_addr, msg):
                            pass  # SHMC_EAGAIN: lossless ring full, retry
                else:
                    send = pub.send_bytes
                    for _ in range(n):
                        send(msg, block=True, timeout=5)
                out[f"{mode}: throughput single calls msgs/s"] = q.get(timeout=60)
                q.put("done")
            pr.join(30)
            pub.close()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--rounds", type=int, default=100_000)
    ap.add_argument("--messages", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=3, help="cross-process repeats (medians)")
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="shmc-ffi-"))
    try:
        mods = build(tmp)
        os.sched_setaffinity(0, {0})
        r = in_process(mods)
        runs = [cross_process(mods, a.rounds, a.messages) for _ in range(a.repeats)]
        for k in runs[0]:
            r[k] = statistics.median(x[k] for x in runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    width = max(map(len, r))
    for k, v in r.items():
        unit = "" if ("us" in k or "msgs/s" in k) else " ns"
        print(f"{k:<{width}}  {v:>12,.1f}{unit}")
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
