"""The command line: ``python -m shmcomm {ls,inspect,top,clean,echo,pub,demo,bench,version}`` (also
installed as the ``shmcomm`` command). ``python -m shmcomm COMMAND --help`` explains each."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional

from . import __version__, library_version
from ._binding import lib
from .errors import SHMError
from .segments import SegmentInfo, clean, list_segments, os_name, segment_info, segment_peers
from .stream import describe_stream, format_stream, stream_info_json
from .top import peers_cell, run_top


def _print_table(rows: List[List[str]], header: List[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())


def _human_bytes(n: int) -> str:
    for limit, suffix in ((1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")):
        if n >= limit:
            return f"{n / limit:.1f}{suffix}"
    return str(n)


def _state(info: SegmentInfo) -> str:
    return "unreadable: " + info.error if info.error else ("stale" if info.stale else "live")


def _details(info: SegmentInfo) -> Dict[str, Any]:
    """A segment's header fields and its registered peers, for --json."""
    data = info.as_dict()
    try:
        data["peers"] = [p.as_dict() for p in segment_peers(str(info), info)] if not info.error else []
    except SHMError:  # removed, or became unreadable, since its header was read
        data["peers"] = []
    return data


def cmd_ls(args: argparse.Namespace) -> int:
    infos = list_segments()
    if args.json:
        print(json.dumps([_details(i) for i in infos], indent=2))
        return 0
    if not infos:
        print("no shmcomm channels on this machine")
        return 0
    rows = []
    for i in infos:
        readable = i.error is None
        rows.append([i.channel or "?", i.pattern, _state(i), str(i.creator_pid),
                     peers_cell(i) if readable else "-", str(i.head) if readable else "-",
                     f"{i.num_slots}x{i.slot_size}" if readable else "-",
                     _human_bytes(i.size_bytes) if readable else "-", str(i)])
    # PEERS: live processes by role, e.g. 1pub+2sub, 1rep+3req, 2push+4pull; MESSAGES: ever sent.
    _print_table(rows, ["CHANNEL", "PATTERN", "STATE", "CREATOR", "PEERS", "MESSAGES", "SLOTS",
                        "SIZE", "OS NAME"])
    return 0


def _matching_segments(name: str) -> List[str]:
    """The OS names of channel ``name`` in every pattern (a PAIR channel has two segments), or
    ``name`` itself when it is an OS name."""
    if name.startswith("shmcomm_"):
        return [name]
    from .segments import _PATTERNS

    found = []
    for pattern in _PATTERNS.values():
        candidate = os_name(name, pattern)
        if not (segment_info(candidate).error or "").startswith("no such channel"):
            found.append(candidate)
    return found


_FLAG_NAMES = ((lib.SHMC_LOSSLESS, "lossless"), (lib.SHMC_SINGLE_WRITER, "single-writer"),
               (lib.SHMC_PAYLOAD_POOL, "payload-pool"),
               (lib.SHMC_SHARE_GROUP, "share-group"), (lib.SHMC_SHARE_ALL, "share-all"))


def _print_segment(info: SegmentInfo) -> None:
    fields: Dict[str, Any] = {
        "channel": info.channel, "os_name": str(info), "pattern": info.pattern,
        "stale": info.stale, "state": info.state, "layout_version": info.layout_version,
        "creator_pid": info.creator_pid, "creator_alive": info.creator_alive,
        "num_slots": info.num_slots, "slot_size": info.slot_size,
        "size_bytes": f"{info.size_bytes} ({_human_bytes(info.size_bytes)})",
        "flags": ", ".join(n for bit, n in _FLAG_NAMES if info.flags & bit) or "none",
        "head": info.head, "session_id": f"{info.session_id:#018x}", "error": info.error,
    }
    for key, value in fields.items():
        print(f"{key:>14}: {value}")
    if info.error:
        return
    try:
        peers = segment_peers(str(info), info)
    except SHMError as exc:
        print(f"\npeers: unreadable ({exc})")
        return
    print(f"\npeers ({len(peers)} registered; LAG: published but not read yet, OVERRUN: the part of it "
          "already overwritten, which that subscriber will count as dropped):")
    rows = [[str(p.index), str(p.pid), p.role, "alive" if p.alive else "dead",
             f"{p.heartbeat_age:.3f}s", "-" if p.cursor is None else str(p.cursor),
             "-" if p.lag is None else str(p.lag), "-" if p.overrun is None else str(p.overrun),
             "-" if p.count is None else str(p.count)] for p in peers]
    if rows:
        _print_table(rows, ["ENTRY", "PID", "ROLE", "STATE", "HEARTBEAT", "CURSOR", "LAG", "OVERRUN",
                            "COUNT"])
    else:
        print("  none")


def cmd_inspect(args: argparse.Namespace) -> int:
    names = _matching_segments(args.name)
    infos = [segment_info(n) for n in names]
    infos = [i for i in infos if not (i.error or "").startswith("no such channel")]
    if not infos:
        looked = os_name(args.name) if not args.name.startswith("shmcomm_") else args.name
        print(f"no channel {args.name!r} on this machine (looked for {looked} and the other "
              "patterns' segments); `python -m shmcomm ls` lists the channels", file=sys.stderr)
        return 1
    if args.json:  # a list: a PAIR channel has two segments
        details = [_details(i) for i in infos]
        for d, info in zip(details, infos):
            stream = _stream_details(info)
            if stream is not None:
                d["stream"] = stream_info_json(stream)
        print(json.dumps(details, indent=2))
        return 0
    for n, info in enumerate(infos):
        if n:
            print()
        _print_segment(info)
        stream = _stream_details(info)
        if stream is not None:  # the schema, metadata, frames and readers of a STREAM
            print(format_stream(stream))
    return 0


def _stream_details(info: SegmentInfo) -> Optional[Dict[str, Any]]:
    if info.pattern != "stream" or not info.channel:
        return None
    try:
        return describe_stream(info.channel)
    except SHMError as exc:
        print(f"(stream details unavailable: {exc})", file=sys.stderr)
        return None


def cmd_top(args: argparse.Namespace) -> int:
    if not args.interval > 0:
        print(f"shmcomm top: --interval must be > 0 seconds, got {args.interval:g}", file=sys.stderr)
        return 2
    iterations = 1 if args.once else args.iterations
    if iterations < 0:
        print(f"shmcomm top: --iterations must be >= 0 (0: until Ctrl-C), got {iterations}",
              file=sys.stderr)
        return 2
    return run_top(interval=args.interval, iterations=iterations, ui=args.ui)


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


BENCH_MISSING = ("the benchmark suite is not installed (this shmcomm has no shmcomm.bench module); "
                 "install shmcomm from a source tree that has python/shmcomm/bench.py, or run the "
                 "scripts in benchmarks/ directly")


def cmd_bench(argv: List[str]) -> int:
    """Hands the remaining arguments to the benchmark suite, ``shmcomm.bench.main``."""
    from importlib import import_module

    name = f"{__package__}.bench"
    try:
        bench = import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            print(f"shmcomm bench: {BENCH_MISSING}", file=sys.stderr)
        else:  # the suite is there, a library it needs is not
            print(f"shmcomm bench: the benchmark suite needs the {exc.name!r} package: "
                  'pip install "shmcomm[bench]"', file=sys.stderr)
        return 1
    return int(bench.main(argv))


def cmd_version(args: argparse.Namespace) -> int:
    print(f"shmcomm {__version__} (libshm {library_version()})")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shmcomm", description="shmcomm: shared-memory IPC tools (list, inspect, watch and clean "
        "channels; listen and publish from the shell; demo and benchmarks)",
        epilog="Docs: docs/getting-started.md and docs/troubleshooting.md. SHMCOMM_LOG_LEVEL=DEBUG "
        "prints shmcomm's log.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ls", help="list every shmcomm channel on this machine: pattern, state "
                       "(live/stale), creator, peers, messages")
    p.add_argument("--json", action="store_true", help="machine-readable output, with every peer")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("inspect", help="one channel in depth: its header and every peer (pid, "
                       "heartbeat, cursor, lag)")
    p.add_argument("name", help="channel name (robot/pose) or OS name (shmcomm_pub_robot+2fpose)")
    p.add_argument("--json", action="store_true", help="machine-readable output (a list: one entry "
                   "per segment of the channel)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("top", help="a live view of every channel: message rates, lag, overruns, "
                       "peers (Ctrl-C quits)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    p.add_argument("--iterations", type=int, default=0, metavar="N",
                   help="stop after N refreshes (default 0: until Ctrl-C)")
    p.add_argument("--once", action="store_true", help="one refresh (rates over one interval), then exit")
    p.add_argument("--ui", choices=["auto", "plain", "rich"], default="auto",
                   help="plain ANSI text, or the rich package's table (auto: rich when installed and "
                   "writing to a terminal)")
    p.set_defaults(func=cmd_top)

    p = sub.add_parser("clean", help="remove stale channels (whose publishers, pushers or repliers "
                       "all died); never a live one")
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

    p = sub.add_parser("demo", help="a publisher and subscribers in separate processes, measured")
    p.add_argument("--messages", type=int, default=200_000, help="messages in the throughput phase")
    p.add_argument("--subscribers", type=int, default=2, help="subscriber processes")
    p.set_defaults(func=cmd_demo)

    # Listed for --help only: main() hands everything after "bench" to shmcomm.bench.main untouched.
    sub.add_parser("bench", help="the benchmark suite (progress bar, summary table, --plot for PNG "
                   "charts); `shmcomm bench --help` for its options", add_help=False)

    p = sub.add_parser("version", help="print the package and library versions")
    p.set_defaults(func=cmd_version)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if args_list[:1] == ["bench"]:  # its own options, parsed by the suite itself
            return cmd_bench(args_list[1:])
        args = _parser().parse_args(args_list)
        try:
            return int(args.func(args))
        except SHMError as exc:
            print(f"shmcomm {args.command}: {exc}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:  # Ctrl-C ends echo, pub, top and demo: no traceback
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
