"""PAIR, the slave side (ESHM's simple_slave): answers each of the master's messages with "ACK <message>".

    # terminal 1
    python examples/pair_slave.py [NAME [COUNT]]
    # terminal 2 (or examples/c/pair_example master NAME COUNT)
    python examples/pair_master.py [NAME [COUNT]]

The slave answers COUNT messages (raw UTF-8 bytes), then prints the pair's statistics and exits. It
may start before the master: it waits up to --wait seconds for it, and for each message.
"""

from __future__ import annotations

import argparse
import sys

from shmcomm import Pair, SHMError

STATS = ("master_pid", "slave_pid", "m2s_write_count", "m2s_read_count", "s2m_write_count",
         "s2m_read_count", "drops", "reconnections", "remote_state")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", default="examples/pair", help="pair name (default examples/pair)")
    parser.add_argument("count", nargs="?", type=int, default=10, help="messages to answer (default 10)")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the master and each message")
    args = parser.parse_args()
    try:
        pair = Pair(args.name, "slave", serialization="raw")
    except SHMError as exc:
        print(f"slave: {exc}", file=sys.stderr)
        return 2
    with pair:
        print(f"slave: pair {args.name!r} open, waiting up to {args.wait:g} s for the master", flush=True)
        if not pair.wait_for_remote(args.wait):
            print(f"slave: no master came; start one with: python examples/pair_master.py {args.name}",
                  file=sys.stderr)
            return 1
        try:
            for _ in range(args.count):
                message = pair.read(timeout=args.wait)  # SHMTimeoutError if nothing came in time
                pair.write(b"ACK " + message, timeout=args.wait)
                print(f"slave: got {message.decode()!r}, answered", flush=True)
        except SHMError as exc:
            print(f"slave: {exc}", file=sys.stderr)
            return 1
        print(f"slave: done, {args.count} messages answered", flush=True)
        stats = pair.stats()
        print("slave: stats " + " ".join(f"{key}={stats[key]}" for key in STATS), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
