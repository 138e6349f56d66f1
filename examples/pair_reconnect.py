"""PAIR reconnection (ESHM's reconnect demo): kill -9 the master, restart it, and the slave carries on.

    # terminal 1: the slave waits for a master and reports what happens to it
    python examples/pair_reconnect.py slave
    # terminal 2: a master that sends a tick every 0.1 s
    python examples/pair_reconnect.py master
    # kill -9 the master (or Ctrl-C it), then start it again: the slave says it reconnected

The slave keeps waiting while the master is gone (reconnect_wait=--wait seconds, unlimited attempts).
Every tick the dead master fully wrote is still delivered, then the new master's. With
--reconnections N the slave exits once it has reconnected N times and heard the new master.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from shmcomm import Pair, SHMError, SHMPeerDeadError


def run_master(args: argparse.Namespace) -> int:
    with Pair(args.name, "master", serialization="raw") as pair:
        print(f"master: pid {os.getpid()} sending a tick every {1 / args.rate:g} s on {args.name!r}", flush=True)
        tick = 0
        while args.count == 0 or tick < args.count:
            pair.write(f"tick {tick} from pid {os.getpid()}".encode())  # waits while the queue is full
            print(f"master: sent tick {tick}", flush=True)
            tick += 1
            time.sleep(1 / args.rate)
        print(f"master: done, {tick} ticks", flush=True)
    return 0


def run_slave(args: argparse.Namespace) -> int:
    with Pair(args.name, "slave", serialization="raw", reconnect_wait=args.wait,
              max_reconnect_attempts=0) as pair:  # 0: unlimited attempts, bounded by reconnect_wait
        print(f"slave: pid {os.getpid()} waiting for a master on {args.name!r}", flush=True)
        state, master_pid, reconnections = "none", 0, 0
        while True:
            try:
                message = pair.read(timeout=0.2)
            except SHMPeerDeadError as exc:  # gone for longer than reconnect_wait
                print(f"slave: {exc}", file=sys.stderr)
                return 1
            except SHMError:  # SHMTimeoutError: nothing this time
                message = None
            pair.is_remote_alive()  # looks at the master (and reattaches to a new one)
            stats = pair.stats()
            if stats["remote_state"] != state:
                state = stats["remote_state"]
                print(f"slave: master pid {stats['master_pid']} is {state}", flush=True)
            if stats["reconnections"] != reconnections:
                reconnections = stats["reconnections"]
                print(f"slave: reconnected to the new master (pid {stats['master_pid']}), "
                      f"reconnections={reconnections}", flush=True)
            if message is not None:
                text = message.decode()
                print(f"slave: got {text!r}", flush=True)
                sender = int(text.rsplit(" ", 1)[1])
                if args.reconnections and reconnections >= args.reconnections and sender != master_pid \
                        and sender == stats["master_pid"]:
                    print(f"slave: done, heard the new master after {reconnections} reconnection(s)", flush=True)
                    return 0
                if master_pid == 0:
                    master_pid = sender


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["master", "slave"])
    parser.add_argument("--name", default="examples/reconnect")
    parser.add_argument("--rate", type=float, default=10.0, help="master: ticks per second")
    parser.add_argument("--count", type=int, default=0, help="master: ticks to send (0: until killed)")
    parser.add_argument("--wait", type=float, default=60.0, help="slave: seconds to wait for a new master")
    parser.add_argument("--reconnections", type=int, default=0,
                        help="slave: exit after this many reconnections (0: never)")
    args = parser.parse_args()
    try:
        return run_master(args) if args.mode == "master" else run_slave(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
