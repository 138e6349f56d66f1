"""Request / reply between processes: a server answers, any number of clients ask.

    # terminal 1
    python examples/reqrep_example.py server
    # terminal 2 (and 3, 4, ...)
    python examples/reqrep_example.py client

The server answers each request {"op": "add", "a": .., "b": ..} with {"sum": a + b, "server": pid}
until it has served --count requests (0: forever, stop with Ctrl-C). Each client sends --count
requests and checks every reply. The client may start first: it waits --wait seconds for the server.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from shmcomm import Replier, Requester, SHMConnectionError, SHMTimeoutError


def run_server(args: argparse.Namespace) -> int:
    with Replier(args.name) as rep:  # 16 slots of 8192 bytes, pickle: the defaults
        print(f"server: serving {args.name!r} (pid {os.getpid()})", flush=True)
        served = 0
        while args.count == 0 or served < args.count:
            request = rep.recv(timeout=args.wait)
            if request is None:
                print(f"server: no request for {args.wait:g} s, stopping", file=sys.stderr)
                return 1
            delivered = rep.send({"sum": request["a"] + request["b"], "server": os.getpid()})
            served += 1
            if not delivered:  # the client gave up waiting (timeout) or died: nothing else to do
                print(f"server: reply {served} discarded, its client stopped waiting", flush=True)
        print(f"server: done, {served} requests served", flush=True)
    return 0


def run_client(args: argparse.Namespace) -> int:
    try:
        req = Requester(args.name, timeout_connect=args.wait)
    except SHMConnectionError as exc:
        print(f"client: {exc}", file=sys.stderr)
        return 2
    with req:
        start = time.perf_counter()
        for i in range(args.count):
            try:
                reply = req.request({"op": "add", "a": i, "b": 1000}, timeout=5.0)
            except SHMTimeoutError as exc:
                print(f"client: {exc}", file=sys.stderr)
                return 1
            if reply["sum"] != i + 1000:
                print(f"client: wrong reply {reply!r} to request {i}", file=sys.stderr)
                return 1
            if i < 3 or i == args.count - 1:
                print(f"client: {i} + 1000 = {reply['sum']} (server pid {reply['server']})", flush=True)
        elapsed = time.perf_counter() - start
        rate = args.count / elapsed if elapsed > 0 else 0.0
        print(f"client: done, {args.count} replies checked, {rate:,.0f} requests/s", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["server", "client"])
    parser.add_argument("--name", default="examples/adder")
    parser.add_argument("--count", type=int, default=1000, help="requests (server: 0 = forever)")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the other side")
    args = parser.parse_args()
    try:
        return run_server(args) if args.mode == "server" else run_client(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
