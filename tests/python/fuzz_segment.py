"""Run by test_badinput.py in a child process (so a crash is seen as a crash, not as pytest dying):
a live Publisher's segment is overwritten with garbage, again and again (hypothesis picks where and
what), and every operation of a Subscriber, of the Publisher, and of the inspection functions must
either work or raise an SHMError: never crash, hang, or raise anything else.

    python fuzz_segment.py CHANNEL EXAMPLES SEED
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import sys
from typing import Any, Dict, List, Tuple

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import shmcomm
from shmcomm import Publisher, SHMError, Subscriber

channel, examples, random_seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
path = os.path.join("/dev/shm", shmcomm.os_name(channel))
outcomes: Dict[str, int] = {}

# Offsets of the fields of the header and of the first registry entry and ring control lines
# (docs/memory-layout.md), where garbage is most likely to hurt; plus anywhere at all.
HEADER_FIELDS = [0, 8, 12, 16, 24, 32, 36, 40, 48, 52, 56, 60, 64, 72, 80, 128, 192]
INTERESTING = [0, 1, 2, 3, 7, 8, 63, 64, 65, 255, 256, 4096, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
               1 << 32, 1 << 40, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]


def note(what: str) -> None:
    outcomes[what] = outcomes.get(what, 0) + 1


def attempt(what: str, call: Any) -> Any:
    try:
        result = call()
    except SHMError as exc:
        note(f"{what}: {type(exc).__name__}")
        return None
    note(f"{what}: ok")
    return result


pub = Publisher(channel, num_slots=8, slot_size=64, max_peers=4)
for i in range(5):
    pub.send_bytes(b"message %d" % i)
size = os.path.getsize(path)
with open(path, "rb") as f:
    snapshot = f.read()
fd = os.open(path, os.O_RDWR)
segment = mmap.mmap(fd, size)  # writes go straight to the shared pages everyone maps
os.close(fd)
registry = 512
ring = struct.unpack_from("<Q", snapshot, 72)[0]
slots = struct.unpack_from("<Q", snapshot, 80)[0]
targets = HEADER_FIELDS + [registry + k for k in range(0, 64, 8)] + [ring, ring + 64, ring + 68, ring + 192] \
    + [slots + k for k in (0, 8, 12, 16)]

field_writes = st.tuples(st.sampled_from(targets), st.sampled_from(INTERESTING), st.sampled_from([4, 8]))
byte_writes = st.tuples(st.integers(0, size - 1), st.binary(min_size=1, max_size=32))


@seed(random_seed)
@settings(max_examples=examples, deadline=None, database=None, derandomize=False,
          suppress_health_check=list(HealthCheck))
@given(fields=st.lists(field_writes, max_size=4), garbage=st.lists(byte_writes, max_size=4))
def test_garbage_never_crashes(fields: List[Tuple[int, int, int]], garbage: List[Tuple[int, bytes]]) -> None:
    segment[:] = snapshot
    for offset, value, width in fields:
        if offset + width <= size:
            segment[offset:offset + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
    for offset, data in garbage:
        data = data[: size - offset]
        segment[offset:offset + len(data)] = data
    info = shmcomm.segment_info(shmcomm.os_name(channel))
    note("segment_info: " + ("error" if info.error else "ok"))
    attempt("list_segments", shmcomm.list_segments)
    sub = attempt("attach", lambda: Subscriber(channel, timeout_connect=0, serialization="raw"))
    if sub is not None:
        for _ in range(3):
            attempt("recv_bytes", lambda: sub.recv_bytes(timeout=0))
        attempt("recv_into", lambda: sub.recv_into(bytearray(4096), timeout=0.001))
        view = attempt("recv_view", lambda: sub.recv_view(timeout=0))
        if view is not None:
            bytes(view)
            attempt("release", view.release)
        attempt("latest", lambda: sub.latest_bytes(timeout=0))
        attempt("stats", sub.stats)
        attempt("publisher_alive", lambda: sub.publisher_alive)
        attempt("subscriber close", sub.close)
    attempt("send", lambda: pub.send_bytes(b"after the garbage"))
    attempt("publisher stats", pub.stats)
    attempt("loan", lambda: pub.loan(8).cancel())


test_garbage_never_crashes()
segment[:] = snapshot
segment.close()
pub.close()
print(json.dumps({"outcomes": outcomes, "segment_left": os.path.exists(path)}))
