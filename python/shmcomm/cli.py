"""The command line: ``python -m shmcomm {demo,ls,inspect,clean,echo,pub,version}`` (also ``shmcomm``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, List, Optional

from . import __version__, library_version
from .errors import SHMError
from .segments import clean, list_segments, os_name, segment_info


def _print_table(rows: List[List[str]], header: List[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())


def cmd_ls(args: argparse.Namespace) -> int:
    infos = list_segments()
    if args.json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
        return 0
    if not infos:
        print("no shmcomm channels on this machine")
        return 0
    rows = []
    for i in infos:
        state = "unreadable: " + i.error if i.error else ("stale" if i.stale else "live")
        rows.append([i.channel or "?", i.pattern, state, str(i.creator_pid), str(i.publishers),
                     str(i.subscribers), str(i.head), f"{i.num_slots}x{i.slot_size}", str(i)])
    # KEEPERS: publishers / repliers / pushers; PEERS: subscribers / requesters / pullers.
    _print_table(rows, ["CHANNEL", "PATTERN", "STATE", "CREATOR", "KEEPERS", "PEERS", "MESSAGES",
                        "SLOTS", "OS NAME"])
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.name.startswith("shmcomm_"):
        name = args.name
    else:  # the first pattern that has a channel of this name
        candidates = [os_name(args.name, p) for p in ("pubsub", "reqrep", "pipeline")]
        name = next((c for c in candidates if segment_info(c).error != "no such channel"), candidates[0])
    info = segment_info(name)
    if info.error == "no such channel":
        print(f"no channel {args.name!r} (looked for segment {name})", file=sys.stderr)
        return 1
    data = info.as_dict()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        for key, value in data.items():
            print(f"{key:>14}: {value}")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    removed = clean(dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for info in removed:
        print(f"{verb} {info} (channel {info.channel or '?'}, creator pid {info.creator_pid})")
    print(f"{verb} {len(removed)} stale segment(s); live channels are never touched")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(messages=args.messages, subscribers=args.subscribers)


def _show(message: Any, raw: bool) -> str:
    if raw:
        data = bytes(message)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.hex()
    return repr(message)


def cmd_echo(args: argparse.Namespace) -> int:
    """Prints every message of a channel as it arrives (a Subscriber, or a Puller with --pull)."""
    from .pipeline import Puller
    from .pubsub import Subscriber

    serialization = "raw" if args.raw else args.serialization
    endpoint_cls = Puller if args.pull else Subscriber
    with endpoint_cls(args.name, timeout_connect=args.wait, serialization=serialization) as endpoint:
        print(f"echo: listening on {args.name!r} ({'pulling' if args.pull else 'subscribed'})",
              file=sys.stderr, flush=True)
        received = 0
        while args.count == 0 or received < args.count:
            message = endpoint.recv(timeout=args.timeout)
            if message is None:
                print(f"echo: nothing for {args.timeout:g} s, stopping after {received} message(s)",
                      file=sys.stderr)
                return 0 if args.count == 0 else 1
            received += 1
            print(_show(message, args.raw), flush=True)
    return 0


def cmd_pub(args: argparse.Namespace) -> int:
    """Publishes (or, with --push, queues) each MESSAGE argument, or each line of stdin."""
    import time

    from .pipeline import Pusher
    from .pubsub import Publisher

    serialization = "raw" if args.raw else args.serialization
    messages = args.messages if args.messages else (line.rstrip("\n") for line in sys.stdin)
    if args.push:
        endpoint: Any = Pusher(args.name, serialization=serialization)
    else:
        endpoint = Publisher(args.name, serialization=serialization, lossless=True)
    with endpoint:
        if args.wait_for and not args.push:  # a subscriber sees only what is sent after it attached
            deadline = time.monotonic() + args.wait
            while endpoint.stats()["subscribers"] < args.wait_for:
                if time.monotonic() > deadline:
                    print(f"pub: fewer than {args.wait_for} subscriber(s) after {args.wait:g} s",
                          file=sys.stderr)
                    return 1
                time.sleep(0.01)
        sent = 0
        for text in messages:
            payload = text.encode("utf-8") if args.raw else text
            endpoint.send(payload, block=True, timeout=args.wait)
            sent += 1
        print(f"pub: sent {sent} message(s) on {args.name!r}", file=sys.stderr)
        if args.push:  # the last pusher's close removes the queue: let pullers take what was sent
            deadline = time.monotonic() + args.wait
            while endpoint.stats()["queued"] and time.monotonic() < deadline:
                time.sleep(0.01)
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    print(f"shmcomm {__version__} (libshm {library_version()})")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="shmcomm", description="shared-memory IPC: tools")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="a publisher and subscribers in separate processes, measured")
    p.add_argument("--messages", type=int, default=200_000, help="messages in the throughput phase")
    p.add_argument("--subscribers", type=int, default=2, help="subscriber processes")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ls", help="list every shmcomm channel on this machine")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("inspect", help="show one channel in depth")
    p.add_argument("name", help="channel name (robot/pose) or OS name (shmcomm_pub_robot+2fpose)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("clean", help="remove stale channels (whose publishers are all dead)")
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.set_defaults(func=cmd_clean)

    p = sub.add_parser("echo", help="print every message of a channel as it arrives (debugging)")
    p.add_argument("name", help="channel name")
    p.add_argument("--pull", action="store_true", help="take from a PUSH/PULL queue instead of subscribing")
    p.add_argument("--raw", action="store_true", help="print raw bytes (UTF-8 text, else hex)")
    p.add_argument("--serialization", default="pickle", choices=["pickle", "msgpack"])
    p.add_argument("--count", type=int, default=0, help="stop after this many messages (0: never)")
    p.add_argument("--timeout", type=float, default=3600.0, help="stop after this long without a message")
    p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the channel to exist")
    p.set_defaults(func=cmd_echo)

    p = sub.add_parser("pub", help="publish messages from the command line or stdin (debugging)")
    p.add_argument("name", help="channel name")
    p.add_argument("messages", nargs="*", help="messages (str); none: one per line of stdin")
    p.add_argument("--push", action="store_true", help="queue them on a PUSH/PULL queue instead")
    p.add_argument("--raw", action="store_true", help="send the UTF-8 bytes instead of pickled str")
    p.add_argument("--serialization", default="pickle", choices=["pickle", "msgpack"])
    p.add_argument("--wait-for", type=int, default=0, metavar="N",
                   help="first wait until N subscribers are attached (they miss what came before)")
    p.add_argument("--wait", type=float, default=10.0, help="longest wait, in seconds")
    p.set_defaults(func=cmd_pub)

    p = sub.add_parser("version", help="print the package and library versions")
    p.set_defaults(func=cmd_version)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SHMError as exc:
        print(f"shmcomm {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
