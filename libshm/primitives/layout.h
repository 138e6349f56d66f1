/*
 * The shared-memory layout of a channel segment (drawn in docs/memory-layout.md).
 *
 *   offset 0              header (512 B): identity, geometry, state, channel name
 *   registry_offset       max_peers peer entries, 64 B each
 *   ring_offset           ring control: head, data wait word, space wait word, tail (4 lines)
 *   slots_offset          num_slots slots of slot_stride bytes:
 *                           [seq u64][len u32][route u32][tag u64][buf u32][pad u32][payload]
 *                         or, with a payload pool (SHMC_PAYLOAD_POOL, see ring.h):
 *                           [seq u64][len u32][route u32][tag u64][buf u32][pad u32]
 *                           [holder u64][pad 24 B][buffer]
 *   mailbox_offset        REQ/REP only: max_peers reply mailboxes of mailbox_stride bytes:
 *                           [word u64][len u32][pad] (a line), [wait word] (a line), [payload]
 *   extra_offset          STREAM only: extra_bytes of the pattern's own region (libshm/patterns/stream.c)
 *
 * Every field has a fixed width and explicit padding, so 32- and 64-bit processes agree. Every value
 * read from a segment is validated (segment.c) before it is used as a size, an offset or an index.
 */
#ifndef SHMI_LAYOUT_H
#define SHMI_LAYOUT_H

#include <stdatomic.h>
#include <stdint.h>

#define SHMI_CACHE_LINE 64
#define SHMI_MAGIC 0x314D4D4F434D4853ull /* the bytes "SHMCOMM1" read as a little-endian u64 */
#define SHMI_HEADER_BYTES 512
#define SHMI_PEER_BYTES 64
#define SHMI_RING_CTRL_BYTES 256
#define SHMI_SLOT_HEADER_BYTES 32
#define SHMI_POOLED_SLOT_HEADER_BYTES 64
#define SHMI_POOL_MAX_SLOTS 64u       /* a payload pool is scanned whole by each claim: kept small */
#define SHMI_POOL_AUTO_BYTES 65536u   /* slots of at least this size get a payload pool by default */
#define SHMI_STREAMING_COPY_BYTES (2u << 20) /* payloads this large are copied in with streaming stores */
#define SHMI_MAILBOX_HEADER_BYTES 128
#define SHMI_MAX_SLOTS (1u << 24)
#define SHMI_MAX_SLOT_SIZE (1u << 30)
#define SHMI_MAX_PEERS 254u /* peer indices 0..253 fit the 8-bit owner field of a slot word */
#define SHMI_MAX_SEGMENT_BYTES (1ull << 40)
#define SHMI_MAX_EXTRA_BYTES (1ull << 34) /* a pattern's own region: at most 16 GiB */

enum shmi_state { SHMI_STATE_READY = 1, SHMI_STATE_CLOSED = 2, SHMI_STATE_REPLACED = 3 };

typedef struct shmi_header {
    /* line 0: identity and geometry, immutable once magic is set */
    _Atomic uint64_t magic; /* stored last by the creator (release): the rest is complete */
    uint32_t layout_version;
    uint32_t pattern;
    uint64_t segment_bytes;
    uint64_t session_id; /* random per creation: a restarted creator is a new generation */
    int32_t creator_pid;
    uint32_t flags;
    uint64_t creator_start_time;
    uint32_t num_slots;
    uint32_t slot_size;
    uint32_t slot_stride;
    uint32_t max_peers;
    /* line 1 */
    uint64_t registry_offset;
    uint64_t ring_offset;
    uint64_t slots_offset;
    uint64_t mailbox_offset; /* REQ/REP: the reply mailboxes; 0 for other patterns */
    uint64_t extra_offset;   /* a pattern's own region after the ring (STREAM: schema, metadata,
                                readers' pins and control rings, see stream.c); 0 if none */
    uint64_t extra_bytes;    /* its size, a multiple of 64; 0 if none */
    uint8_t pad1[16];
    /* line 2: lifecycle */
    _Atomic uint32_t state; /* enum shmi_state */
    uint32_t pad2a;
    _Atomic uint64_t tickets; /* REQ/REP: each requester's join takes one, the prefix of its request ids */
    uint8_t pad2[48];
    /* lines 3..6 */
    char channel[256]; /* the user's name, NUL-terminated, for inspection only */
    uint8_t pad3[64];
} shmi_header_t;

/* A process attached to the channel. owner = (pid << 32) | role; 0 = free. */
typedef struct shmi_peer {
    _Atomic uint64_t owner;
    _Atomic uint64_t start_time;   /* with the pid: liveness that survives pid reuse */
    _Atomic uint64_t heartbeat_ns; /* shmi_now_ns() of the peer's last activity */
    _Atomic uint64_t cursor;       /* subscriber: next position it reads */
    _Atomic uint64_t count;        /* messages sent (publisher) or received (subscriber) */
    _Atomic uint64_t dropped;
    uint8_t pad[16];
} shmi_peer_t;

/* A futex word and the number of processes sleeping on it, on a line of their own. */
typedef struct shmi_waitword {
    _Atomic uint32_t futex;
    _Atomic uint32_t sleepers;
    uint8_t pad[SHMI_CACHE_LINE - 8];
} shmi_waitword_t;

typedef struct shmi_ring_ctrl {
    _Atomic uint64_t head; /* next position to claim; a hint that writers help forward */
    uint8_t pad0[SHMI_CACHE_LINE - 8];
    shmi_waitword_t data;  /* readers sleep here; writers wake after publishing */
    shmi_waitword_t space; /* lossless writers sleep here; readers wake after advancing */
    _Atomic uint64_t tail; /* competing readers' shared cursor (work queues); unused by broadcast */
    _Atomic uint64_t restored; /* competing readers: messages given back by dead readers, not retaken */
    uint8_t pad3[SHMI_CACHE_LINE - 16];
} shmi_ring_ctrl_t;

typedef struct shmi_slot {
    _Atomic uint64_t seq; /* the slot word, see ring.h */
    _Atomic uint32_t len;
    _Atomic uint32_t route; /* REQ/REP: the requester's registry index */
    _Atomic uint64_t tag;   /* REQ/REP: the request id the reply must carry */
    _Atomic uint32_t buf;   /* payload pool: the buffer holding this position's payload (ring.h) */
    uint32_t pad;
    /* payload follows (without the pool) */
} shmi_slot_t;

/* A slot of a ring with a payload pool (SHMC_PAYLOAD_POOL, see ring.h): the slot header, then the
 * holder word of the buffer this slot brings to the pool, then that buffer. */
typedef struct shmi_pooled_slot {
    shmi_slot_t slot;
    _Atomic uint64_t holder; /* the slot word (ring.h) of the position whose payload the buffer
                                holds, with its writer as owner; 0 if never used */
    uint8_t pad[SHMI_CACHE_LINE - SHMI_SLOT_HEADER_BYTES - 8];
    /* the buffer follows */
} shmi_pooled_slot_t;

/* REQ/REP: the reply mailbox of the requester with the same registry index (see reqrep.c). */
typedef struct shmi_mailbox {
    _Atomic uint64_t word; /* request id, owner and state, one atomic word */
    _Atomic uint32_t len;
    uint8_t pad[SHMI_CACHE_LINE - 12];
    shmi_waitword_t wait;  /* the requester sleeps here for its reply */
    /* payload follows */
} shmi_mailbox_t;

_Static_assert(sizeof(shmi_header_t) == SHMI_HEADER_BYTES, "header size");
_Static_assert(sizeof(shmi_peer_t) == SHMI_PEER_BYTES, "peer size");
_Static_assert(sizeof(shmi_ring_ctrl_t) == SHMI_RING_CTRL_BYTES, "ring control size");
_Static_assert(sizeof(shmi_slot_t) == SHMI_SLOT_HEADER_BYTES, "slot header size");
_Static_assert(sizeof(shmi_pooled_slot_t) == SHMI_POOLED_SLOT_HEADER_BYTES, "pooled slot header size");
_Static_assert(sizeof(shmi_mailbox_t) == SHMI_MAILBOX_HEADER_BYTES, "mailbox header size");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4, "atomic widths");

#endif
