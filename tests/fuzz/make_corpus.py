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
PAT_PUB, PAT_PUB_LOSSLESS, PAT_PIPELINE, PAT_REQREP, PAT_STREAM, PAT_STREAM_LOSSLESS = range(6)


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
    # STREAM, latest-frame: writes of every kind (send's fill byte picks write / loan+commit /
    # loan+cancel / metadata / reap), readers acquiring, holding and releasing while the writer laps,
    # control messages, patches of the stream header, a reader's pin and a frame's length table.
    s = [PAT_STREAM, 1, 5, 0x80 | 1] + [op(OP_OPEN, 0), op(OP_OPEN, 1)]
    s += send(12, 0) + send(9, 3) + send(40, 1) + send(40, 1)
    s += recv(0, 0, 8) + recv(1, 1, 8) + recv(0, 4, 8) + recv(1, 3, 8)
    for i in range(6):
        s += send(20 + i, 5 * (i % 2))
    s += keeper_recv(0, 64) + keeper_recv(0, 2) + recv(0, 2, 8) + recv(0, 0, 8) + recv(1, 2, 8)
    s += patch(4, 0, 4, 12, 7)              # stream header: nfields
    s += patch(3, 1, 4, 80, 18)             # slot 1: the second field's length = 0xFFFFFFFF
    s += recv(0, 2, 8) + recv(0, 0, 8) + recv(1, 6, 8) + recv(1, 5, 8)
    s += send(3, 4) + [op(OP_POLL, 0), op(OP_POLL, 0, 1), op(OP_STATS, 0), op(OP_INFO)]
    seeds["stream_latest"] = s
    # STREAM, lossless: the writer held back by a reader; a reader's control ring head patched.
    s = [PAT_STREAM_LOSSLESS, 0, 2, 1] + [op(OP_OPEN, 0)]
    for i in range(5):
        s += send(30, 0)
    s += recv(0, 0, 8) + send(30, 0) + recv(0, 2, 8) + recv(0, 1, 8) + recv(0, 4, 8) + recv(0, 4, 8)
    s += patch(4, 9, 3, 0, 23)              # somewhere in the first reader entry: a huge u64
    s += keeper_recv(0, 64) + recv(0, 4, 8) + recv(0, 7, 8)
    s += [op(OP_CLOSE, 0), op(OP_OPEN, 0), op(OP_STATS, 0), op(OP_POLL, 0, 1)]
    seeds["stream_lossless"] = s
    return {name: bytes(v) for name, v in seeds.items()}


# ---- fuzz_raw inputs --------------------------------------------------------------------------

MAGIC = 0x314D4D4F434D4853
LAYOUT_VERSION = 2
SELF = 0x5E1F5E1F
KEEPER, FOLLOWER = 1, 2
PUBSUB, REQREP, PIPELINE = 1, 2, 3
STREAM = 6
RAW_SELECTOR = {PUBSUB: 0, PIPELINE: 1, REQREP: 2, STREAM: 3}  # fuzz_raw: [pub, push, req, stream][byte0 % 4]


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


def stream_image(num_slots: int, max_peers: int, frames: int, metadata: bytes = b'{"fx": 1}',
                 control_cap: int = 64, lossless: bool = False) -> bytes:
    """A stream segment (libshm/primitives/stream_layout.h): fields img u8[2,3] and pose f32[2], a
    live writer (the pid marker) at registry entry 0, `frames` frames committed, metadata written."""
    fields = [(b"img", 6, (2, 3)), (b"pose", 12, (2,))]  # SHMC_DTYPE_U8, SHMC_DTYPE_F32
    caps = [6, 8]
    n = len(fields)
    fhb = round_up(32 + 48 + 4 * n, 64) - 32
    offsets, data = [], 0
    for cap in caps:
        offsets.append(data)
        data += round_up(cap, 64)
    slot_size = fhb + data
    stride = round_up(slot_size + 32, 64)
    registry = 512
    ring = round_up(registry + max_peers * 64, 64)
    slots = ring + 256
    extra = slots + num_slots * stride
    metadata_cap = 64
    reader_stride = 192 + round_up(control_cap, 64)
    metadata_offset = 256 + 128 * n
    readers_offset = metadata_offset + round_up(metadata_cap, 64)
    extra_bytes = readers_offset + max_peers * reader_stride
    total = extra + extra_bytes
    flags = 1 if lossless else 0
    buf = bytearray(total)
    struct.pack_into("<QIIQQiIQIIII", buf, 0, MAGIC, LAYOUT_VERSION, STREAM, total, 0x1234567890ABCDEF,
                     SELF, flags, 0, num_slots, slot_size, stride, max_peers)
    struct.pack_into("<QQQQQQ", buf, 64, registry, ring, slots, 0, extra, extra_bytes)
    struct.pack_into("<I", buf, 128, 1)
    name = b"fuzz/raw/stream"
    buf[192:192 + len(name)] = name
    for i in range(max_peers):
        owner, cursor = ((SELF << 32) | KEEPER, (1 << 64) - 1) if i == 0 else (0, (1 << 64) - 1)
        struct.pack_into("<QQQQQQ", buf, registry + i * 64, owner, 0, 0, cursor, 0, 0)
    struct.pack_into("<Q", buf, ring, frames)
    for pos in range(frames):
        base = slots + (pos % num_slots) * stride
        struct.pack_into("<QIIQQ", buf, base, slot_word(pos, 0, 0), slot_size, 0, 0, 0)
        struct.pack_into("<QQQQII", buf, base + 32, pos, 1000 + pos, 0, sum(caps), n, 0)
        struct.pack_into("<II", buf, base + 32 + 48, *caps)
        for k, cap in enumerate(caps):
            at = base + 32 + fhb + offsets[k]
            buf[at:at + cap] = bytes([pos & 0xFF]) * cap
    region = extra
    struct.pack_into("<QIIIIIIIIQQQ", buf, region, 0x314D525453434D53, 1, n, fhb, flags, metadata_cap,
                     control_cap, reader_stride, max_peers, sum(caps), metadata_offset, readers_offset)
    struct.pack_into("<QI", buf, region + 64, 2, len(metadata))
    struct.pack_into("<QQ", buf, region + 128, frames, 1000 + frames)
    for k, (fname, dtype, shape) in enumerate(fields):
        at = region + 256 + 128 * k
        buf[at:at + len(fname)] = fname
        struct.pack_into("<II", buf, at + 40, dtype, len(shape))
        for d, size in enumerate(shape):
            struct.pack_into("<Q", buf, at + 48 + 8 * d, size)
        struct.pack_into("<QQ", buf, at + 112, offsets[k], caps[k])
    buf[region + metadata_offset:region + metadata_offset + len(metadata)] = metadata
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
        "stream": raw(STREAM, 0x13, stream_image(4, 3, 6)),
        "stream_lossless": raw(STREAM, 0x02, stream_image(2, 2, 1, lossless=True)),
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
