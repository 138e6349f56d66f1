/*
 * The STREAM pattern's own region of a segment (header.extra_offset, header.extra_bytes), and the
 * frame header at the start of every slot payload. Drawn in docs/memory-layout.md; used by
 * libshm/patterns/stream.c and the fuzz harness. Every value read from here is validated before use.
 *
 *   region + 0                 stream header, 4 lines (shmi_stream_header_t)
 *   region + 256               nfields field descriptors of 128 bytes (the public shmc_stream_field_t)
 *   metadata_offset            metadata_cap bytes (rounded up to 64): the write-once metadata block
 *   readers_offset             max_peers reader entries of reader_stride bytes, indexed like the
 *                              registry: shmi_stream_entry_t (3 lines), then the control ring's
 *                              control_cap bytes of records [type u32][len u32][pid i32][pad u32][data]
 *
 * Slot payload of a frame:     [shmi_frame_header_t (48 B)][len u32 x nfields][pad]  (frame_header_bytes,
 *                              so that the data starts 64-byte aligned) then the fields, each at a
 *                              multiple of 64 from the data start.
 */
#ifndef SHMI_STREAM_LAYOUT_H
#define SHMI_STREAM_LAYOUT_H

#include "layout.h"
#include "shmcomm.h"

#include <stdatomic.h>
#include <stdint.h>

#define SHMI_STREAM_MAGIC 0x314D525453434D53ull /* "SMCSTRM1" read as a little-endian u64 */
#define SHMI_STREAM_VERSION 1u
#define SHMI_STREAM_HEADER_BYTES 256
#define SHMI_STREAM_FIELD_BYTES 128
#define SHMI_STREAM_ENTRY_BYTES 192
#define SHMI_FRAME_FIXED_BYTES 48
#define SHMI_STREAM_MAX_METADATA (16u << 20)
#define SHMI_STREAM_MAX_CONTROL (16u << 20)
#define SHMI_STREAM_MIN_CONTROL 64u
#define SHMI_CONTROL_RECORD_BYTES 16u
#define SHMI_CONTROL_PAD 0xFFFFFFFFu /* record type that fills the ring's end before it wraps */

/* metadata word: 0 empty, (pid << 32) | 1 being written by pid, 2 written. */
#define SHMI_METADATA_WRITING 1u
#define SHMI_METADATA_WRITTEN 2u

typedef struct shmi_stream_header {
    /* line 0: immutable once magic is set (stored last, release) */
    _Atomic uint64_t magic;
    uint32_t version;
    uint32_t nfields;
    uint32_t frame_header_bytes;
    uint32_t flags;          /* SHMC_LOSSLESS | SHMC_STREAM_CHECKSUM, as the segment header's */
    uint32_t metadata_cap;
    uint32_t control_cap;
    uint32_t reader_stride;
    uint32_t max_entries;    /* = the registry's max_peers */
    uint64_t frame_capacity; /* sum of the fields' capacities */
    uint64_t metadata_offset; /* from the region's start */
    uint64_t readers_offset;
    /* line 1: the metadata block's state */
    _Atomic uint64_t metadata_word;
    _Atomic uint32_t metadata_len;
    uint32_t pad1a;
    uint8_t pad1[48];
    /* line 2: written by the writer after each commit, for inspection (relaxed) */
    _Atomic uint64_t next_seq;
    _Atomic uint64_t last_timestamp_ns;
    uint8_t pad2[48];
    /* line 3: readers found dead, counted once by whoever frees their entry (writer or a joiner) */
    _Atomic uint64_t reader_deaths;
    uint8_t pad3[56];
} shmi_stream_header_t;

/* A reader's entry, at the same index as its registry entry. */
typedef struct shmi_stream_entry {
    /* line 0: written by the reader (evicted, holding also by a writer that evicts it) */
    _Atomic uint64_t owner;       /* a copy of its registry owner word; 0 = free or left cleanly */
    _Atomic uint64_t holding;     /* position + 1 of the frame it holds pinned (latest-frame), 0 = none */
    _Atomic uint64_t frames_seen; /* frames released */
    _Atomic uint64_t last_seq;    /* sequence number of the last frame released */
    _Atomic uint64_t dropped;
    _Atomic uint32_t evicted;     /* set by the writer's reap(stale_ns); cleared by the reader */
    uint32_t pad0a;
    uint8_t pad0[16];
    /* line 1: the control ring's producer side (the reader) */
    _Atomic uint64_t control_head; /* bytes ever written */
    uint8_t pad1[56];
    /* line 2: its consumer side (the writer) */
    _Atomic uint64_t control_tail; /* bytes ever consumed */
    uint8_t pad2[56];
} shmi_stream_entry_t;

typedef struct shmi_frame_header {
    uint64_t seq;
    uint64_t timestamp_ns;
    uint64_t checksum;
    uint64_t nbytes;  /* used bytes of all fields */
    uint32_t nfields;
    uint32_t reserved;
    uint64_t pad;
    /* uint32_t len[nfields] follows */
} shmi_frame_header_t;

_Static_assert(sizeof(shmi_stream_header_t) == SHMI_STREAM_HEADER_BYTES, "stream header size");
_Static_assert(sizeof(shmc_stream_field_t) == SHMI_STREAM_FIELD_BYTES, "field descriptor size");
_Static_assert(sizeof(shmi_stream_entry_t) == SHMI_STREAM_ENTRY_BYTES, "stream entry size");
_Static_assert(sizeof(shmi_frame_header_t) == SHMI_FRAME_FIXED_BYTES, "frame header size");
_Static_assert(SHMI_SLOT_HEADER_BYTES == 32, "frame_header_bytes assumes 32-byte slot headers");

#endif
