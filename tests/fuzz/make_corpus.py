#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/segment and corpus/raw).

    python3 tests/fuzz/make_corpus.py [OUTDIR]     (default: tests/fuzz/corpus next to this script)

corpus/segment: op sequences for fuzz_segment (format in fuzz_segment.c: 4 geometry bytes, then
    operations): each pattern's normal traffic with a few patches, so the fuzzer starts from inputs
    that reach every receive path.
corpus/raw: whole segments for fuzz_raw (2 selector bytes, then the image), laid out as
    libshm/primitives/layout.h says (docs/memory-layout.md): valid headers, registries with a live
    keeper (the pid marker 0x5E1F5E1F, which fuzz_raw replaces by its own pid) and messages in the
    ring, so mutations start from segments that attach.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import List

# ---- fuzz_segment inputs ----------------------------------------------------------------------

OP_PATCH, OP_OPEN, OP_CLOSE, OP_SEND, OP_RECV, OP_KEEPER_RECV, OP_POLL, OP_STATS, OP_INFO = range(9)
PAT_PUB, PAT_PUB_LOSSLESS, PAT_PIPELINE, PAT_REQREP = range(4)


def op(code: int, k: int = 0, keeper: int = 0) -> int:
    """The op byte: code = byte % 9, follower k = (byte >> 4) % 2, poll by keeper = (byte >> 5) & 1."""
    for b in range(256):
        if b % 9 == code and (b >> 4) % 2 == k and (b >> 5) & 1 == keeper:
            return b
    raise ValueError((code, k, keeper))


def geometry(kind: int, num_slots: int, slot_size: int, max_peers: int) -> List[int]:
    return [kind, num_slots - 2, slot_size - 1, max_peers - 2]


def patch(region: int, index: int, kind: int, offset: int, *args: int) -> List[int]:
    return [op(OP_PATCH), region, index, kind, offset, *args]


def send(length: int, fill: int = 0x41) -> List[int]:
    return [op(OP_SEND), length, fill]


def recv(k: int, which: int, cap: int) -> List[int]:
    return [op(OP_RECV, k), which, cap]


def keeper_recv(which: int, cap: int) -> List[int]:
    return [op(OP_KEEPER_RECV), which, cap]


def segment_seeds() -> dict:
    seeds = {}
    # PUB/SUB, overwrite: every receive kind, a lap, a slot word and a length patched.
    s = geometry(PAT_PUB, 4, 16, 3) + [op(OP_OPEN, 0), op(OP_OPEN, 1)]
    for i in range(6):
        s += send(i + 3, 0x30 + i)
    for which in range(6):
        s += recv(0, which, 16)
    s += patch(3, 1, 1, 0, 5, 0, 0)         # slot 1: a READY word for position 5
    s += patch(3, 2, 4, 8, 18)              # slot 2: len = 0xFFFFFFFF
    s += recv(1, 0, 16) + recv(1, 5, 16) + recv(1, 5, 16) + recv(1, 4, 16)
    s += [op(OP_STATS, 0), op(OP_STATS, 1), op(OP_INFO)]
    seeds["pub_overwrite"] = s
    # PUB/SUB, lossless: a loan held across patches of the ring head and a cursor; polling.
    s = geometry(PAT_PUB_LOSSLESS, 3, 8, 2) + [op(OP_OPEN, 0)]
    s += send(4) + send(8) + send(2)
    s += recv(0, 5, 8)                      # loan
    s += patch(2, 0, 3, 0, 21)              # ring head = 2^63 - 1
    s += patch(1, 1, 3, 24, 0)              # registry entry 1: cursor = 0
    s += recv(0, 5, 8) + recv(0, 2, 8) + recv(0, 1, 8)
    s += [op(OP_POLL, 0), op(OP_POLL, 0, 1), op(OP_STATS, 0), op(OP_INFO)]
    seeds["pub_lossless"] = s
    # PUSH/PULL: batches, a dead reader's claim, a restored count, tail ahead of head.
    s = geometry(PAT_PIPELINE, 5, 24, 4) + [op(OP_OPEN, 0), op(OP_OPEN, 1)]
    for i in range(4):
        s += send(10 + i)
    s += recv(0, 2, 24) + recv(1, 0, 24)
    s += patch(3, 2, 1, 0, 2, 3, 2)         # slot 2: READING by owner 3 (a free entry)
    s += patch(2, 0, 3, 200, 1)             # ring restored = 1
    s += patch(2, 0, 3, 192, 9)             # ring tail = 1023
    s += [op(OP_POLL, 1)] + recv(1, 1, 24) + recv(0, 2, 24)
    s += [op(OP_STATS, 0), op(OP_INFO), op(OP_CLOSE, 1)]
    seeds["pipeline"] = s
    # REQ/REP: a round trip, then a request whose route and tag are patched, and a registry entry
    # taken over by a dead pid.
    s = geometry(PAT_REQREP, 2, 16, 3) + [op(OP_OPEN, 0)]
    s += recv(0, 0, 8) + keeper_recv(0, 16) + keeper_recv(2, 8) + recv(0, 1, 16)
    s += recv(0, 3, 8) + keeper_recv(1, 16) + keeper_recv(3, 4) + recv(0, 2, 16)
    s += recv(0, 0, 4)
    s += patch(3, 0, 4, 12, 19)             # slot 0: route = 0xFFFFFFFF
    s += patch(3, 1, 3, 16, 25)             # slot 1: tag = 2^64 - 1
    s += keeper_recv(0, 16)
    s += patch(1, 1, 2, 0, 3, 2)            # registry entry 1: owner = dead pid, follower
    s += [op(OP_POLL, 0, 1), op(OP_STATS, 0), op(OP_INFO)]
    s += recv(0, 4, 0)
    seeds["reqrep"] = s
    # REQ/REP: the mailbox word of a waiting requester overwritten with another id.
    s = geometry(PAT_REQREP, 4, 8, 2) + [op(OP_OPEN, 0)]
    s += recv(0, 0, 8) + patch(4, 1, 5, 0, 7, 0xFF, 1) + recv(0, 1, 8) + keeper_recv(0, 8)
    s += [op(OP_STATS, 0)]
    seeds["reqrep_mailbox"] = s
    return {name: bytes(v) for name, v in seeds.items()}


# ---- fuzz_raw inputs --------------------------------------------------------------------------

MAGIC = 0x314D4D4F434D4853
LAYOUT_VERSION = 2
SELF = 0x5E1F5E1F
KEEPER, FOLLOWER = 1, 2
PUBSUB, REQREP, PIPELINE = 1, 2, 3
RAW_SELECTOR = {PUBSUB: 0, PIPELINE: 1, REQREP: 2}  # fuzz_raw: pattern = [pub, push, req][byte0 % 3]


def round_up(v: int, to: int) -> int:
    return (v + to - 1) // to * to


def slot_word(pos: int, owner: int, state: int) -> int:
    return ((pos + 1) << 10) | (owner << 2) | state


def image(pattern: int, num_slots: int, slot_size: int, max_peers: int, messages: List[bytes],
          creator_pid: int = SELF, flags: int = 0, followers: int = 1, competing_taken: int = 0) -> bytes:
    stride = round_up(slot_size + 32, 64)
    mailbox_stride = round_up(slot_size + 128, 64)
    registry = 512
    ring = round_up(registry + max_peers * 64, 64)
    slots = ring + 256
    total = slots + num_slots * stride
    mailboxes = 0
    if pattern == REQREP:
        mailboxes = total
        total += max_peers * mailbox_stride
    buf = bytearray(total)
    struct.pack_into("<QIIQQiIQIIII", buf, 0, MAGIC, LAYOUT_VERSION, pattern, total, 0x1234567890ABCDEF,
                     creator_pid, flags, 0, num_slots, slot_size, stride, max_peers)
    struct.pack_into("<QQQQ", buf, 64, registry, ring, slots, mailboxes)
    struct.pack_into("<IIQ", buf, 128, 1, 0, 3)  # state READY, tickets
    name = b"fuzz/raw/seed"
    buf[192:192 + len(name)] = name
    head = len(messages)
    for i in range(max_peers):
        base = registry + i * 64
        owner, cursor = 0, (1 << 64) - 1
        if i == 0:
            owner, cursor = (SELF << 32) | KEEPER, (1 << 64) - 1
        elif i <= followers:
            owner, cursor = (SELF << 32) | FOLLOWER, 0
        struct.pack_into("<QQQQQQ", buf, base, owner, 0, 0, cursor, 0, 0)
    tail = competing_taken if pattern != PUBSUB else 0
    struct.pack_into("<Q", buf, ring, head)
    struct.pack_into("<QQ", buf, ring + 192, tail, 0)
    for pos, msg in enumerate(messages):
        base = slots + (pos % num_slots) * stride
        state = 3 if pattern != PUBSUB and pos < competing_taken else 0
        struct.pack_into("<QIIQQ", buf, base, slot_word(pos, 0, state), len(msg), 1, (1 << 24) | pos, 0)
        buf[base + 32:base + 32 + len(msg)] = msg
    return bytes(buf)


def raw(pattern: int, ops: int, img: bytes) -> bytes:
    return bytes([RAW_SELECTOR[pattern], ops]) + img


def raw_seeds() -> dict:
    return {
        "pub": raw(PUBSUB, 0x10, image(PUBSUB, 4, 16, 3, [b"hello", b"", b"world!"])),
        "pub_lossless_wrapped": raw(PUBSUB, 0x37, image(PUBSUB, 2, 8, 2, [b"a", b"bb", b"ccc"],
                                                        flags=1, followers=0)),
        "pub_dead_creator": raw(PUBSUB, 0x02, image(PUBSUB, 3, 4, 2, [b"x"], creator_pid=0x3FFFFFF0,
                                                    followers=0)),
        "pipeline": raw(PIPELINE, 0x22, image(PIPELINE, 4, 12, 3, [b"job1", b"job2", b"job3"],
                                              competing_taken=1)),
        "reqrep": raw(REQREP, 0x1B, image(REQREP, 2, 16, 3, [], followers=0)),
        "truncated": raw(PUBSUB, 0x00, image(PUBSUB, 2, 1, 2, [])[:600]),
        "empty": bytes([0, 0]),
    }


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "corpus"
    for sub, seeds in (("segment", segment_seeds()), ("raw", raw_seeds())):
        d = out / sub
        d.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (d / name).write_bytes(data)
        print(f"{d}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
