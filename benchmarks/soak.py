"""Soak and leak test of shmcomm (issue 4, item 6). Not part of CI: run by hand.

    PYTHONPATH=python python benchmarks/soak.py [--minutes 10] [--attach 1000000] [--channels 2000]
                                                [--out /work/perfdata/soak.md]

Three phases, each measured before/after in this process: resident memory (VmRSS, /proc/self/status),
open file descriptors (/proc/self/fd), memory mappings (/proc/self/maps lines) and shmcomm segments in
/dev/shm.

1. churn: create ``--channels`` keepers across the three patterns (Publisher, Replier, Pusher), each
   with a follower attached, then close them all;
2. attach/detach: ``--attach`` times Subscriber(name).close() on one live Publisher (the rate is
   reported; if the first 20,000 show the full count would take more than ``--attach-budget`` seconds,
   a scaled count is run and reported as such);
3. soak: ``--minutes`` of every pattern under load across processes (this process publishes to a
   subscriber process, requests from a replier process, pushes to a puller process), while it also
   churns followers; resources are sampled every ``--sample`` seconds.

A leak is any growth of descriptors, mappings or segments after a phase, or RSS growth beyond a small
allowance (Python's allocator keeps freed arenas). Markdown goes to stdout and to ``--out``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import threading
import time
from typing import Any, Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

import shmcomm  # noqa: E402
from shmcomm import Publisher, Puller, Pusher, Replier, Requester, Subscriber  # noqa: E402

RSS_ALLOWANCE_KB = 4096  # growth tolerated after a phase (allocator arenas, caches)


def resources() -> Dict[str, int]:
    rss = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    with open("/proc/self/maps") as f:
        maps = sum(1 for _ in f)
    return {"rss_kb": rss, "fds": len(os.listdir("/proc/self/fd")), "maps": maps,
            "segments": sum(1 for n in os.listdir("/dev/shm") if n.startswith("shmcomm_"))}


def proc_rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def leaks(before: Dict[str, int], after: Dict[str, int]) -> List[str]:
    found = [f"{k} +{after[k] - before[k]}" for k in ("fds", "maps", "segments") if after[k] > before[k]]
    if after["rss_kb"] - before["rss_kb"] > RSS_ALLOWANCE_KB:
        found.append(f"rss +{after['rss_kb'] - before['rss_kb']} kB")
    return found


def row(phase: str, before: Dict[str, int], after: Dict[str, int], extra: str) -> str:
    cells = [phase]
    for key in ("rss_kb", "fds", "maps", "segments"):
        cells.append(f"{before[key]} → {after[key]} ({after[key] - before[key]:+d})")
    found = leaks(before, after)
    cells.append("**" + ", ".join(found) + "**" if found else "none")
    cells.append(extra)
    return "| " + " | ".join(cells) + " |"


# ---- phase 1: thousands of channels ---------------------------------------------------------------------

def churn_channels(count: int, tag: str) -> Tuple[float, int]:
    keepers = {"pubsub": Publisher, "reqrep": Replier, "pipeline": Pusher}
    followers = {"pubsub": Subscriber, "reqrep": Requester, "pipeline": Puller}
    opened: List[Any] = []
    start = time.perf_counter()
    patterns = list(keepers)
    for i in range(count):
        pattern = patterns[i % 3]
        name = f"soak/{os.getpid()}/{tag}/{i}"
        opened.append(keepers[pattern](name, num_slots=4, slot_size=256, max_peers=4))
        opened.append(followers[pattern](name, timeout_connect=1.0))
    peak_segments = resources()["segments"]
    for ep in reversed(opened):
        ep.close()
    opened.clear()
    return time.perf_counter() - start, peak_segments


# ---- phase 2: attach/detach ----------------------------------------------------------------------------

def attach_detach(name: str, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        Subscriber(name, timeout_connect=1.0).close()
    return time.perf_counter() - start


# ---- phase 3: soak across processes ---------------------------------------------------------------------

def sub_process(name: str, stop: Any, counter: Any) -> None:
    with Subscriber(name, timeout_connect=10.0, serialization="raw") as sub:
        n = 0
        while not stop.is_set():
            got = sub.recv_many_bytes(256, timeout=0.1)
            n += len(got)
            if n >= 10_000:
                with counter.get_lock():
                    counter.value += n
                n = 0
        with counter.get_lock():
            counter.value += n


def rep_process(name: str, stop: Any, counter: Any) -> None:
    with Replier(name, num_slots=64, slot_size=1024, serialization="raw") as rep:
        stopper = threading.Thread(target=lambda: (stop.wait(), rep.close()), daemon=True)
        stopper.start()
        served = rep.serve(lambda request: request, raw=True)
        with counter.get_lock():
            counter.value += served


def pull_process(name: str, stop: Any, counter: Any) -> None:
    with Puller(name, timeout_connect=10.0, serialization="raw") as pull:
        n = 0
        while not stop.is_set():
            got = pull.recv_many_bytes(256, timeout=0.1)
            n += len(got)
            if n >= 10_000:
                with counter.get_lock():
                    counter.value += n
                n = 0
        with counter.get_lock():
            counter.value += n


def soak(minutes: float, sample_s: float) -> Dict[str, Any]:
    ctx = mp.get_context("spawn")
    base = f"soak/{os.getpid()}/load"
    stop = ctx.Event()
    counters = {k: ctx.Value("q", 0) for k in ("sub", "rep", "pull")}
    pub = Publisher(base + "/pub", num_slots=1024, slot_size=1024, serialization="raw")
    push = Pusher(base + "/push", num_slots=1024, slot_size=1024, serialization="raw")
    procs = [ctx.Process(target=sub_process, args=(base + "/pub", stop, counters["sub"])),
             ctx.Process(target=rep_process, args=(base + "/rep", stop, counters["rep"])),
             ctx.Process(target=pull_process, args=(base + "/push", stop, counters["pull"]))]
    for p in procs:
        p.start()
    req = Requester(base + "/rep", timeout_connect=30.0, serialization="raw")
    deadline_attach = time.monotonic() + 30
    while pub.stats()["subscribers"] < 1 and time.monotonic() < deadline_attach:
        time.sleep(0.01)
    done = {"published": 0, "requests": 0, "pushed": 0, "churn": 0, "errors": 0}
    payload = bytes(range(256)) * 2
    batch = [payload] * 64
    samples: List[Tuple[float, Dict[str, int], List[int]]] = []
    # warm up before the reference measurement
    for _ in range(200):
        pub.send_many_bytes(batch)
        push.send_many_bytes(batch, timeout=10.0)
        req.request_bytes(payload, timeout=10.0)
    before = resources()
    start = time.monotonic()
    end = start + minutes * 60
    next_sample = start
    while True:
        now = time.monotonic()
        if now >= next_sample:
            samples.append((now - start, resources(), [proc_rss_kb(p.pid) for p in procs]))
            next_sample += sample_s
        if now >= end:
            break
        for _ in range(20):
            done["published"] += pub.send_many_bytes(batch)
            done["pushed"] += push.send_many_bytes(batch, timeout=10.0)
            if req.request_bytes(payload, timeout=10.0) != payload:
                done["errors"] += 1
            done["requests"] += 1
        # churn: followers of every pattern come and go while the load runs
        for cls, name in ((Subscriber, base + "/pub"), (Requester, base + "/rep"), (Puller, base + "/push")):
            if cls is Puller:
                continue  # a puller would take items from the puller process: keep the load honest
            cls(name, timeout_connect=1.0, serialization="raw").close()
            done["churn"] += 1
    elapsed = time.monotonic() - start
    after = resources()
    samples.append((elapsed, after, [proc_rss_kb(p.pid) for p in procs]))
    stop.set()
    for p in procs:
        p.join(30)
    req.close()
    pub.close()
    push.close()
    closed = resources()
    return {"before": before, "after": after, "closed": closed, "elapsed": elapsed, "done": done,
            "received": {k: v.value for k, v in counters.items()}, "samples": samples,
            "exitcodes": [p.exitcode for p in procs]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak phase")
    parser.add_argument("--attach", type=int, default=1_000_000, help="attach/detach cycles")
    parser.add_argument("--attach-budget", type=float, default=600.0,
                        help="seconds the attach/detach phase may take; fewer cycles beyond it")
    parser.add_argument("--channels", type=int, default=2000, help="channels created then closed")
    parser.add_argument("--sample", type=float, default=15.0, help="seconds between soak samples")
    parser.add_argument("--out", default="/work/perfdata/soak.md", help="Markdown report ('' for none)")
    args = parser.parse_args()

    lines: List[str] = []
    rows: List[str] = []
    out = lines.append
    out("# shmcomm soak and leak test")
    out("")
    out(f"{time.strftime('%Y-%m-%d %H:%M:%S')} on {platform.node()}: {platform.platform()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, shmcomm {shmcomm.__version__} "
        f"(libshm {shmcomm.library_version()}, {os.environ.get('SHMCOMM_LIBRARY', 'packaged')}).")
    out(f"Command: `{' '.join([os.path.basename(sys.executable)] + sys.argv)}`")
    out("")
    start_all = resources()

    # warm-up so that first-use allocations (cffi types, imports) are not counted as leaks
    churn_channels(30, "warmup")
    with Publisher(f"soak/{os.getpid()}/warm", num_slots=4, slot_size=64):
        attach_detach(f"soak/{os.getpid()}/warm", 2000)

    before = resources()
    seconds, peak = churn_channels(args.channels, "churn")
    after = resources()
    rows.append(row(f"1. {args.channels} channels (+1 follower each) created, then closed", before, after,
                    f"{seconds:.2f} s, {2 * args.channels / seconds:,.0f} opens+closes/s; "
                    f"{peak} segments at the peak"))
    print(rows[-1], flush=True)

    name = f"soak/{os.getpid()}/attach"
    with Publisher(name, num_slots=64, slot_size=1024) as pub:
        probe = 20_000
        probe_s = attach_detach(name, probe)
        rate = probe / probe_s
        count = args.attach
        scaled = False
        if count / rate > args.attach_budget:
            count = int(rate * args.attach_budget * 0.9)
            scaled = True
        before = resources()
        seconds = attach_detach(name, count)
        after = resources()
        subscribers_left = pub.stats()["subscribers"]
    rows.append(row(f"2. {count:,} Subscriber attach/detach cycles" + (" (scaled)" if scaled else ""),
                    before, after, f"{seconds:.1f} s, **{count / seconds:,.0f} cycles/s** "
                    f"({1e6 * seconds / count:.1f} µs each); subscribers left registered: {subscribers_left}"))
    print(rows[-1], flush=True)

    result = soak(args.minutes, args.sample)
    d, r, el = result["done"], result["received"], result["elapsed"]
    rows.append(row(f"3. soak, {el / 60:.1f} min, all patterns under load", result["before"], result["after"],
                    f"pub/sub {d['published'] / el:,.0f} msg/s, push/pull {d['pushed'] / el:,.0f} msg/s, "
                    f"req/rep {d['requests'] / el:,.0f} req/s, {d['churn']:,} follower attach/detach; "
                    f"wrong replies {d['errors']}"))
    print(rows[-1], flush=True)
    end_all = resources()

    out("| phase | RSS kB | fds | maps | /dev/shm segments | leak | work |")
    out("| --- | --- | --- | --- | --- | --- | --- |")
    lines.extend(rows)
    whole = row("whole run, start → end (not a leak check: see below)", start_all, end_all, "")
    out(whole.rsplit("|", 3)[0] + "| n/a | multiprocessing (spawn) keeps its resource tracker, semaphores and "
        "imported extension modules for the life of the process |")
    out("")
    out(f"Leak allowance for RSS: {RSS_ALLOWANCE_KB} kB per phase; descriptors, mappings and segments must "
        "not grow at all. Segments counted are every `shmcomm_*` in /dev/shm (other processes' included).")
    out("")
    out("## Soak details")
    out("")
    out(f"- sent: {d['published']:,} published (512-byte payloads, batches of 64), {d['pushed']:,} pushed, "
        f"{d['requests']:,} requests answered (plus a warm-up of 12,800 published, 12,800 pushed, "
        f"200 requests before the reference measurement)")
    out(f"- received by the child processes: subscriber {r['sub']:,} (overwrite mode: a slow subscriber "
        f"skips), puller {r['pull']:,} of {d['pushed']:,}, replier served {r['rep']:,}; child exit codes "
        f"{result['exitcodes']}")
    out(f"- after closing the soak's own channels: {result['closed']}")
    out("")
    out("| t (s) | RSS kB | fds | maps | segments | child RSS kB (sub, rep, pull) |")
    out("| ---: | ---: | ---: | ---: | ---: | --- |")
    for t, res, kids in result["samples"]:
        out(f"| {t:.0f} | {res['rss_kb']} | {res['fds']} | {res['maps']} | {res['segments']} | {kids} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
