"""A work queue: one producer pushes jobs, several workers in their own processes pull them. Each job
goes to exactly one worker; none is lost, none is done twice.

    python examples/work_queue.py --workers 3 --jobs 10000

The producer (this process) starts the workers, pushes --jobs numbers, then one "stop" per worker.
Each worker squares the numbers it pulls and sends back its results through a second queue; the
producer checks that every job was done exactly once.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import threading
import time
from collections import Counter

from shmcomm import Puller, Pusher

STOP = None


def worker(jobs_name: str, results_name: str) -> None:
    with Puller(jobs_name, timeout_connect=10.0) as jobs, Pusher(results_name) as results:
        done = 0
        for job in jobs:  # blocks until a job arrives
            if job is STOP:
                break
            results.send((job, job * job, os.getpid()))
            done += 1
        results.send(("worker-done", done, os.getpid()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--name", default=f"examples/jobs/{os.getpid()}")
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    results_name = args.name + "/results"
    # Both queues exist before the workers start: create the jobs queue, and the results queue as
    # one more Pusher would join it (the workers push to it).
    with Pusher(args.name) as jobs, Pusher(results_name) as keep_results_open, \
            Puller(results_name) as results:
        procs = [ctx.Process(target=worker, args=(args.name, results_name)) for _ in range(args.workers)]
        for p in procs:
            p.start()
        start = time.perf_counter()

        def produce() -> None:  # in a thread: results are collected meanwhile, or both queues fill up
            for i in range(args.jobs):
                jobs.send(i)  # waits while the queue is full
            for _ in procs:
                jobs.send(STOP)

        producer = threading.Thread(target=produce)
        producer.start()
        seen: Counter = Counter()
        per_worker: Counter = Counter()
        finished = 0
        while finished < args.workers:
            item = results.recv(timeout=30)
            if item is None:
                print("producer: no result for 30 s", file=sys.stderr)
                return 1
            if item[0] == "worker-done":
                finished += 1
                per_worker[item[2]] = item[1]
                continue
            job, square, _pid = item
            assert square == job * job
            seen[job] += 1
        elapsed = time.perf_counter() - start
        producer.join()
        for p in procs:
            p.join(timeout=10)
        del keep_results_open
    missing = [j for j in range(args.jobs) if seen[j] == 0]
    twice = [j for j, n in seen.items() if n > 1]
    print(f"producer: {len(seen)} jobs done by {args.workers} workers "
          f"({', '.join(str(n) for n in per_worker.values())}) in {elapsed:.2f} s")
    print(f"producer: missing={len(missing)} done twice={len(twice)}")
    return 0 if not missing and not twice else 1


if __name__ == "__main__":
    sys.exit(main())
