"""Publish / subscribe between two processes.

    # terminal 1
    python examples/simple_pubsub.py subscriber
    # terminal 2
    python examples/simple_pubsub.py publisher

The publisher waits until a subscriber is attached, then sends --count messages (dicts, pickled) at
--rate messages per second. The subscriber prints each one with its one-way latency and exits after
--count messages. Either side may start first.
"""

from __future__ import annotations

import argparse
import sys
import time

from shmcomm import Publisher, SHMError, Subscriber


def run_publisher(args: argparse.Namespace) -> int:
    with Publisher(args.name) as pub:  # 64 slots of 4096 bytes, pickle: the defaults
        print(f"publisher: waiting up to {args.wait:g} s for a subscriber on {args.name!r}", flush=True)
        deadline = time.monotonic() + args.wait
        while pub.stats()["subscribers"] == 0:  # a subscriber sees what is sent after it attached
            if time.monotonic() > deadline:
                print("publisher: no subscriber came; start one with: "
                      f"python {sys.argv[0]} subscriber --name {args.name}", file=sys.stderr)
                return 1
            time.sleep(0.01)

        period = 1.0 / args.rate if args.rate > 0 else 0.0
        next_send = time.monotonic()
        for seq in range(args.count):
            pub.send({"seq": seq, "text": f"hello {seq}", "sent_ns": time.time_ns()})
            print(f"publisher: sent seq={seq}", flush=True)
            next_send += period
            pause = next_send - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        print(f"publisher: done, {pub.stats()['sent']} messages sent", flush=True)
    return 0


def run_subscriber(args: argparse.Namespace) -> int:
    # Waits up to --wait seconds for the publisher to create the channel.
    with Subscriber(args.name, timeout_connect=args.wait) as sub:
        print(f"subscriber: attached to {args.name!r}", flush=True)
        for _ in range(args.count):
            message = sub.recv(timeout=args.wait)  # None if nothing came in time
            if message is None:
                print(f"subscriber: nothing received for {args.wait:g} s; giving up", file=sys.stderr)
                return 1
            latency_us = (time.time_ns() - message["sent_ns"]) / 1000
            print(f"subscriber: received seq={message['seq']} text={message['text']!r} "
                  f"latency={latency_us:.0f}us", flush=True)
        stats = sub.stats()
        print(f"subscriber: done, received={stats['received']} dropped={stats['dropped']}", flush=True)
    return 0


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["publisher", "subscriber"])
    parser.add_argument("--name", default="examples/simple", help="channel name")
    parser.add_argument("--count", type=int, default=20, help="messages to send / to receive")
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second (0: no pause)")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the other side")
    args = parser.parse_args(argv)
    try:
        return run_publisher(args) if args.mode == "publisher" else run_subscriber(args)
    except SHMError as exc:  # every shmcomm error says what happened and what to do
        print(f"{args.mode}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
