"""PAIR, the master side (ESHM's simple_master): sends numbered messages and prints the slave's replies.

    # terminal 1
    python examples/pair_master.py [NAME [COUNT]]
    # terminal 2 (or examples/c/pair_example slave NAME COUNT)
    python examples/pair_slave.py [NAME [COUNT]]

The master sends COUNT messages "hello 0", "hello 1", ... (raw UTF-8 bytes, so a C slave reads them as
they are) and waits for each reply ("ACK hello 0", ...). Either side may start first: each waits up to
--wait seconds for the other. At the end it prints the pair's statistics.
"""

from __future__ import annotations

import argparse
import sys

from shmcomm import Pair, SHMError, SHMTimeoutError

STATS = ("master_pid", "slave_pid", "m2s_write_count", "m2s_read_count", "s2m_write_count",
         "s2m_read_count", "drops", "reconnections", "remote_state")


def print_stats(who: str, pair: Pair) -> None:
    stats = pair.stats()
    print(f"{who}: stats " + " ".join(f"{key}={stats[key]}" for key in STATS), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", default="examples/pair", help="pair name (default examples/pair)")
    parser.add_argument("count", nargs="?", type=int, default=10, help="messages to send (default 10)")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the slave and each reply")
    args = parser.parse_args()
    try:
        pair = Pair(args.name, "master", serialization="raw")
    except SHMError as exc:
        print(f"master: {exc}", file=sys.stderr)
        return 2
    with pair:
        print(f"master: pair {args.name!r} open, waiting up to {args.wait:g} s for the slave", flush=True)
        if not pair.wait_for_remote(args.wait):
            print(f"master: no slave came; start one with: python examples/pair_slave.py {args.name}",
                  file=sys.stderr)
            return 1
        print(f"master: slave pid {pair.remote_pid} is there", flush=True)
        try:
            for i in range(args.count):
                message = f"hello {i}"
                pair.write(message.encode(), timeout=args.wait)
                reply = pair.read(timeout=args.wait).decode()
                print(f"master: sent {message!r}, got {reply!r}", flush=True)
                if reply != f"ACK {message}":
                    print(f"master: unexpected reply {reply!r}", file=sys.stderr)
                    return 1
        except (SHMTimeoutError, SHMError) as exc:  # SHMPeerDeadError: the slave died and did not return
            print(f"master: {exc}", file=sys.stderr)
            return 1
        print(f"master: done, {args.count} replies", flush=True)
        print_stats("master", pair)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
