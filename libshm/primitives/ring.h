/*
 * The slot ring: num_slots fixed-size slots, each with a 64-bit slot word that says which position
 * it holds and whether that message is complete, being written (and by whom), or abandoned.
 *
 *   slot word = ((pos + 1) << 9) | (owner << 1) | writing      (0 = never written)
 *     writing = 1: the writer whose registry index is `owner` is filling position pos
 *     writing = 0, owner = 0: position pos is complete
 *     writing = 0, owner = SHMI_OWNER_ABANDONED: position pos was lost (its writer died)
 *
 * A writer claims a position by CAS-ing the slot word from "complete/abandoned at pos - N" (or 0) to
 * "writing pos, owner me": the claim and the claimant's identity are one atomic word, so a waiter
 * can always tell who holds a stuck slot. `head` is only a hint that every writer helps forward.
 * Readers are wait-free and never write to the ring: a broadcast reader keeps a private cursor, reads
 * the slot word, copies, and re-checks the word (a seqlock) so a lapped copy is never delivered.
 */
#ifndef SHMI_RING_H
#define SHMI_RING_H

#include "layout.h"

#include <stddef.h>
#include <stdint.h>

#define SHMI_OWNER_ABANDONED 0xFFu

typedef struct shmi_ring {
    shmi_ring_ctrl_t *ctrl;
    unsigned char *slots;
    uint64_t num_slots;
    uint64_t mask; /* num_slots - 1 when a power of two, else 0 */
    uint32_t slot_size;
    uint32_t slot_stride;
} shmi_ring_t;

/* What a reader finds at a position. */
enum shmi_peek {
    SHMI_PEEK_READY,     /* the message is complete */
    SHMI_PEEK_EMPTY,     /* not published yet (not claimed, or being written: see *word) */
    SHMI_PEEK_ABANDONED, /* its writer died while writing it: skip it */
    SHMI_PEEK_OVERRUN    /* overwritten by a later lap: the reader fell behind */
};

void shmi_ring_init(shmi_ring_t *ring, void *ctrl, void *slots, uint32_t num_slots,
                    uint32_t slot_size, uint32_t slot_stride);

static inline uint64_t shmi_word_pos(uint64_t word) { return (word >> 9) - 1; } /* word != 0 */
static inline uint32_t shmi_word_owner(uint64_t word) { return (uint32_t)(word >> 1) & 0xFFu; }
static inline int shmi_word_writing(uint64_t word) { return (int)(word & 1u); }
static inline uint64_t shmi_word_complete(uint64_t pos, uint32_t owner)
{
    return ((pos + 1) << 9) | ((uint64_t)owner << 1);
}
static inline uint64_t shmi_word_claimed(uint64_t pos, uint32_t owner)
{
    return shmi_word_complete(pos, owner) | 1u;
}

/* Writer: claims the next position if it is below `limit` (lossless: slowest cursor + num_slots).
 * Returns 0 with *pos; SHMC_EAGAIN if the ring is full up to limit, or (with *blocker set to its
 * slot word) if an earlier writer is still filling the slot; SHMC_EBADSEG if the slot words are
 * inconsistent (a corrupt segment). */
int shmi_ring_claim(shmi_ring_t *ring, uint32_t owner, uint64_t limit, uint64_t *pos,
                    uint64_t *blocker);
void *shmi_ring_payload(shmi_ring_t *ring, uint64_t pos);
/* Writer: completes a claimed position with len payload bytes (release), then wakes readers. */
void shmi_ring_publish(shmi_ring_t *ring, uint64_t pos, uint32_t len);
/* Marks position `pos` abandoned if its slot word still equals `claimed` (its writer is dead).
 * Returns 1 if this call did it. */
int shmi_ring_abandon(shmi_ring_t *ring, uint64_t pos, uint64_t claimed);
/* Abandons every slot that writer `owner` is filling (called when its dead entry is reaped). */
void shmi_ring_abandon_owner(shmi_ring_t *ring, uint32_t owner);

/* Reader: looks at position pos. On READY, *payload and *len describe the message (len validated
 * against slot_size) and *word is the slot word to re-check after copying. */
enum shmi_peek shmi_ring_peek(shmi_ring_t *ring, uint64_t pos, uint64_t *word, const void **payload,
                              uint32_t *len);
/* Reader: 1 if the slot of pos still holds the message the reader saw as `word` (after a copy). */
int shmi_ring_unchanged(shmi_ring_t *ring, uint64_t pos, uint64_t word);
/* Copies a message out of a slot that a writer may be overwriting concurrently (the seqlock copy:
 * the result is validated by shmi_ring_unchanged afterwards, so a racing write is never delivered). */
void shmi_ring_copy_out(void *dst, const void *src, size_t len);

#endif
