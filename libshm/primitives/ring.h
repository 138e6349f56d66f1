/*
 * The slot ring: num_slots fixed-size slots, each with a 64-bit slot word that says which position
 * it holds and in which state, and who is working on it:
 *
 *   slot word = ((pos + 1) << 10) | (owner << 2) | state          (0 = never written)
 *     READY    the message at pos is complete (owner 0; SHMI_OWNER_RESTORED if a dead reader gave it back)
 *     WRITING  the writer whose registry index is `owner` is filling position pos
 *     READING  the competing reader `owner` has taken position pos and is copying it out
 *     FREE     position pos holds no message: taken and copied out (owner 0), or lost because its
 *              writer died (owner SHMI_OWNER_ABANDONED)
 *
 * A writer claims a position by CAS-ing the slot word from "done with pos - N" (or 0) to
 * "WRITING pos, owner me": the claim and the claimant's identity are one atomic word, so a waiter
 * can always tell who holds a stuck slot and, if that process is dead, recover it. `head` is only a
 * hint that every writer helps forward.
 *
 * Two kinds of readers:
 *  - broadcast (PUB/SUB): each keeps a private cursor and never writes to the ring; it reads the slot
 *    word, copies, and re-checks the word (a seqlock) so a lapped copy is never delivered. Writers
 *    reuse a slot once it is READY or FREE (lossless publishers also respect the readers' cursors).
 *  - competing (PUSH/PULL, REQ/REP requests): each message goes to exactly one reader. A reader takes
 *    the position at `tail` by CAS-ing its word READY -> READING(me), copies it out, then marks it
 *    FREE; writers reuse only FREE slots, so nothing is lost. A reader that dies holding a slot is
 *    detected by its owner index: the slot goes back to READY (marked RESTORED, counted in
 *    ctrl->restored) and another reader takes it, even though `tail` has moved past it.
 *
 * The payload pool (SHMC_PAYLOAD_POOL; by default for large slots). Without it, position p's payload
 * is in slot p mod num_slots, so a writer works through num_slots x slot_size bytes of memory even
 * when every reader keeps up: with 1 MiB frames that leaves the cache (docs/performance.md). With
 * it, each slot brings one buffer to a pool, and the slot of a position names the buffer that holds
 * its payload (slot->buf). Each buffer has a holder word: the slot word of the position whose
 * payload it holds (owner: its writer). A writer that has claimed pos takes, by CAS on its holder
 * word, the buffer of the most recent position that nobody needs any more, so that while readers
 * keep up the same one or two buffers circulate and stay in cache. A buffer is free for pos when:
 *   - never used, or its position is a lap old (its slot was claimed again: gone for everyone);
 *   - its position is FREE: taken and copied out (work queues), or abandoned;
 *   - broadcast: its position is READY and below `consumed`, the slowest live reader's cursor
 *     as the writer saw it before the claim (readers only move forward, so a stale value is safe).
 * One buffer is always free: positions pos - num_slots + 1 .. pos - 1 hold at most num_slots - 1.
 * A position is readable only while its slot word is READY *and* its buffer's holder names it: a
 * broadcast reader re-checks both after copying (the seqlock), so a buffer taken mid-copy is never
 * delivered; a competing reader holds the slot READING, which keeps its buffer. The holder word and
 * the slot word are separate atomic words, each naming its owner, so a writer that dies between
 * them leaves nothing that cannot be told apart or recovered: a holder whose position was abandoned
 * or lapped is free again.
 */
#ifndef SHMI_RING_H
#define SHMI_RING_H

#include "layout.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SHMI_OWNER_ABANDONED 0xFFu /* FREE: the writer died while writing */
#define SHMI_OWNER_RESTORED 0xFEu  /* READY: a reader died while reading; taken again */

enum shmi_slot_state { SHMI_SLOT_READY = 0, SHMI_SLOT_WRITING = 1, SHMI_SLOT_READING = 2, SHMI_SLOT_FREE = 3 };

typedef struct shmi_ring {
    shmi_ring_ctrl_t *ctrl;
    unsigned char *slots;
    uint64_t num_slots;
    uint64_t mask; /* num_slots - 1 when a power of two, else 0 */
    uint32_t slot_size;
    uint32_t slot_stride;
    int competing; /* readers share `tail` (work queues) instead of keeping private cursors */
    int single_writer; /* SHMC_SINGLE_WRITER: one writer claims, with plain stores (see take_slot) */
    int pooled;        /* SHMC_PAYLOAD_POOL: payloads live in pool buffers (see above) */
    uint64_t consumed; /* pooled broadcast rings: this writer's view of the slowest reader's cursor,
                          set before each claim (shmi_writer); 0 when unknown: nothing is taken early */
} shmi_ring_t;

/* What a reader finds at a position. */
enum shmi_peek {
    SHMI_PEEK_READY,     /* the message is complete */
    SHMI_PEEK_EMPTY,     /* not published yet (not claimed, or being written: see *word) */
    SHMI_PEEK_ABANDONED, /* its writer died while writing it: skip it */
    SHMI_PEEK_OVERRUN    /* overwritten by a later lap: the reader fell behind */
};

void shmi_ring_init(shmi_ring_t *ring, void *ctrl, void *slots, uint32_t num_slots,
                    uint32_t slot_size, uint32_t slot_stride, int competing, int single_writer,
                    int pooled);

static inline uint64_t shmi_word_pos(uint64_t word) { return (word >> 10) - 1; } /* word != 0 */
static inline uint32_t shmi_word_owner(uint64_t word) { return (uint32_t)(word >> 2) & 0xFFu; }
static inline uint32_t shmi_word_state(uint64_t word) { return (uint32_t)(word & 3u); }
static inline uint64_t shmi_word(uint64_t pos, uint32_t owner, uint32_t state)
{
    return ((pos + 1) << 10) | ((uint64_t)owner << 2) | state;
}
/* 1 if the word is a claim (WRITING or READING) that a living process must finish. */
static inline int shmi_word_busy(uint64_t word)
{
    uint32_t state = shmi_word_state(word);
    return word != 0 && (state == SHMI_SLOT_WRITING || state == SHMI_SLOT_READING);
}

/* Writer: claims the next position if it is below `limit` (lossless: slowest cursor + num_slots).
 * Returns 0 with *pos; SHMC_EAGAIN if the ring is full (up to limit, or a competing reader has not
 * taken the message a lap back yet), with *blocker set to the slot word when a claim by another
 * process (an earlier writer, a reader) holds the slot; SHMC_EBADSEG if the slot words are
 * inconsistent (a corrupt segment). A pooled ring's claim also takes the payload buffer. */
int shmi_ring_claim(shmi_ring_t *ring, uint32_t owner, uint64_t limit, uint64_t *pos,
                    uint64_t *blocker);
/* Writer, in a batch: claims pos, the position right after its last claim, if it is below `limit`
 * and plainly free (no head to read, no other writer to help). 1 if claimed; 0 means "use
 * shmi_ring_claim", which knows every other case. */
int shmi_ring_claim_next(shmi_ring_t *ring, uint32_t owner, uint64_t limit, uint64_t pos);
/* The slot index of pos. */
static inline uint64_t shmi_ring_index(const shmi_ring_t *ring, uint64_t pos)
{
    return ring->mask ? (pos & ring->mask) : (pos % ring->num_slots);
}
void *shmi_ring_pooled_payload(shmi_ring_t *ring, uint64_t pos);
/* Where the payload of pos is (writers after their claim, competing readers after their take). */
static inline void *shmi_ring_payload(shmi_ring_t *ring, uint64_t pos)
{
    if (ring->pooled) return shmi_ring_pooled_payload(ring, pos);
    return ring->slots + shmi_ring_index(ring, pos) * ring->slot_stride + SHMI_SLOT_HEADER_BYTES;
}
/* A hint: fetch the first lines of pos's slot for writing now, so that the claim of pos does not
 * wait for them to leave a reader's core (batches call it one message ahead). */
void shmi_ring_prefetch_write(shmi_ring_t *ring, uint64_t pos);
/* Writer: completes a claimed position with len payload bytes (release), then wakes readers. */
void shmi_ring_publish(shmi_ring_t *ring, uint64_t pos, uint32_t len);
/* The two halves of shmi_ring_publish, for batches: complete every message, then wake once. The
 * wake's seq_cst fence is what a writer pays per publish (it waits for the slot's cache line to
 * leave the reader's core); a batch pays it once. A writer must wake before it waits for anything:
 * a reader asleep on messages completed but not announced would otherwise never come. */
void shmi_ring_complete(shmi_ring_t *ring, uint64_t pos, uint32_t len);
void shmi_ring_wake_readers(shmi_ring_t *ring);
/* Recovers the slot of a claim whose process is dead (or that its owner gives up), if the slot word
 * still equals `claim`: a WRITING claim becomes FREE (abandoned: readers skip it), a READING claim
 * becomes READY again (restored: another competing reader takes it). Returns 1 if this call did it. */
int shmi_ring_recover(shmi_ring_t *ring, uint64_t claim);
/* Recovers every claim of registry index `owner` (called when its dead entry is reaped). */
void shmi_ring_recover_owner(shmi_ring_t *ring, uint32_t owner);

/* What shmi_ring_take found. */
typedef struct shmi_take {
    uint64_t pos;       /* the position taken */
    uint32_t len;       /* its length (validated against slot_size); with SHMC_ETRUNC, the length that
                           did not fit */
    int restored;       /* 1 if a dead reader had taken it before */
    uint64_t blocker;   /* SHMC_EAGAIN: slot word of a writer's claim on the next position, or 0 */
    uint64_t abandoned; /* positions skipped because their writer died */
} shmi_take_t;

/* Competing reader: takes the oldest message not yet taken, if it fits in cap bytes. 0: copy it out
 * of shmi_ring_payload(t->pos), then shmi_ring_release. SHMC_ETRUNC: the next message is larger than
 * cap (t->len), left for others. SHMC_EAGAIN: none is ready. */
int shmi_ring_take(shmi_ring_t *ring, uint32_t owner, size_t cap, shmi_take_t *t);
/* Competing reader `owner`: the message at pos (taken by shmi_ring_take) is copied out: free its
 * slot. 0 if the slot was no longer ours (recovered by a process that judged us dead): the copy may
 * be torn and must be discarded; the message went back to the queue. */
int shmi_ring_release(shmi_ring_t *ring, uint64_t pos, uint32_t owner);
/* shmi_ring_release without its wake of full-queue writers: a batch wakes them once at its end
 * (shmi_waitword_wake(&ring->ctrl->space)). */
int shmi_ring_release_quiet(shmi_ring_t *ring, uint64_t pos, uint32_t owner);
/* Competing readers, from housekeeping: recounts the restored messages waiting in the ring and
 * repairs ctrl->restored if a process died between a slot change and its count update. */
void shmi_ring_audit_restored(shmi_ring_t *ring);
/* Competing readers: 1 if nothing is left to take (tail at head, nothing restored). */
int shmi_ring_drained(shmi_ring_t *ring);
/* Header fields of the slot of pos (REQ/REP routing). */
shmi_slot_t *shmi_ring_slot(shmi_ring_t *ring, uint64_t pos);

/* Reader: looks at position pos. On READY, *payload and *len describe the message (len validated
 * against slot_size) and *word is the slot word to re-check after copying. */
enum shmi_peek shmi_ring_peek(shmi_ring_t *ring, uint64_t pos, uint64_t *word, const void **payload,
                              uint32_t *len);
/* Reader: 1 if the slot of pos still holds the message the reader saw as `word` (after a copy), and
 * in a pooled ring its buffer still holds it too. */
int shmi_ring_unchanged(shmi_ring_t *ring, uint64_t pos, uint64_t word);
/* Copies a message out of a slot that a writer may be overwriting concurrently (the seqlock copy:
 * the result is validated by shmi_ring_unchanged afterwards, so a racing write is never delivered). */
void shmi_ring_copy_out(void *dst, const void *src, size_t len);
/* Copies a payload into the ring (writers). A payload of SHMI_STREAMING_COPY_BYTES or more goes with
 * non-temporal stores where the CPU has them (x86-64): it is larger than what a core's caches would
 * keep of it anyway, and plain stores would first read every destination line from memory. The
 * stores are fenced before returning, so a release that publishes the slot orders them too. */
void shmi_ring_copy_in_streaming(void *dst, const void *src, size_t len);
static inline void shmi_ring_copy_in(void *dst, const void *src, size_t len)
{
    if (len >= SHMI_STREAMING_COPY_BYTES)
        shmi_ring_copy_in_streaming(dst, src, len);
    else
        memcpy(dst, src, len);
}

#endif
