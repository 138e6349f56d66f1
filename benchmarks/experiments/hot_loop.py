#!/usr/bin/env python3
"""A 64-byte send + receive loop in one process, for profilers (perf, py-spy, callgrind).

    python benchmarks/experiments/hot_loop.py MODE [N]

MODE: wrapper (Publisher.send_bytes + Subscriber.recv_bytes(0): what applications call), abi (the
same libshm calls straight through cffi ABI mode), api (through a cffi API-mode module built on the
fly) or ext (through the CPython extension experiments/fastpath_ext.c, built on the fly). Prints ns
per send + receive pair. Example, the share of each shared object in the CPU time:

    perf record -F 4999 -g -o /tmp/hot.data -- python benchmarks/experiments/hot_loop.py wrapper
    perf report -i /tmp/hot.data --sort dso --stdio --no-children
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ffi_cost import build, load  # noqa: E402


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "wrapper"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000_000
    from shmcomm import Publisher, Subscriber
    from shmcomm._binding import ffi, lib

    tmp = Path(tempfile.mkdtemp(prefix="shmc-hot-"))
    name = f"hot_loop_{os.getpid()}"
    pub = Publisher(name, num_slots=1024, slot_size=64)
    sub = Subscriber(name, timeout_connect=1.0)
    msg = bytes(64)
    try:
        mods = build(tmp) if mode in ("api", "ext") else {}
        t0 = time.perf_counter_ns()
        if mode == "wrapper":
            send, recv = pub.send_bytes, sub.recv_bytes
            for _ in range(n):
                send(msg)
                recv(0)
        elif mode == "abi":
            ph, sh = pub._handle, sub._handle
            ptr, cap = ffi.new("const void **"), ffi.new("size_t *")
            lib.shmc_sub_buffer(sh, ptr, cap)
            buf = ffi.buffer(ptr[0], cap[0])
            s, nx = lib.shmc_pub_try_send, lib.shmc_sub_next
            for _ in range(n):
                s(ph, msg, 64)
                k = nx(sh, 0)
                buf[0:k]
        elif mode == "api":
            api = load("shmc_api", mods["api"])
            p_addr, s_addr = int(ffi.cast("uintptr_t", pub._handle)), int(ffi.cast("uintptr_t", sub._handle))
            ph, sh = api.ffi.cast("shmc_pub_t *", p_addr), api.ffi.cast("shmc_sub_t *", s_addr)
            ptr, cap = api.ffi.new("const void **"), api.ffi.new("size_t *")
            api.lib.shmc_sub_buffer(sh, ptr, cap)
            buf = api.ffi.buffer(ptr[0], cap[0])
            s, nx = api.lib.shmc_pub_try_send, api.lib.shmc_sub_next
            for _ in range(n):
                s(ph, msg, 64)
                k = nx(sh, 0)
                buf[0:k]
        else:
            ext = load("shmc_fastpath", mods["ext"])
            p_addr, s_addr = int(ffi.cast("uintptr_t", pub._handle)), int(ffi.cast("uintptr_t", sub._handle))
            s, rv = ext.send, ext.recv
            for _ in range(n):
                s(p_addr, msg)
                rv(s_addr)
        dt = (time.perf_counter_ns() - t0) / n
        print(f"{mode}: {dt:.1f} ns per send + receive pair")
    finally:
        sub.close()
        pub.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
