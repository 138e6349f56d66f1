#include "ring.h"

#include "waitword.h"
#include "shmcomm.h"

#include <string.h>

static inline shmi_slot_t *slot_at(shmi_ring_t *ring, uint64_t pos)
{
    uint64_t index = ring->mask ? (pos & ring->mask) : (pos % ring->num_slots);
    return (shmi_slot_t *)(ring->slots + index * ring->slot_stride);
}

void shmi_ring_init(shmi_ring_t *ring, void *ctrl, void *slots, uint32_t num_slots,
                    uint32_t slot_size, uint32_t slot_stride)
{
    ring->ctrl = ctrl;
    ring->slots = slots;
    ring->num_slots = num_slots;
    ring->mask = (num_slots & (num_slots - 1)) == 0 ? (uint64_t)num_slots - 1 : 0;
    ring->slot_size = slot_size;
    ring->slot_stride = slot_stride;
}

void *shmi_ring_payload(shmi_ring_t *ring, uint64_t pos)
{
    return (unsigned char *)slot_at(ring, pos) + SHMI_SLOT_HEADER_BYTES;
}

static void help_head(shmi_ring_t *ring, uint64_t from)
{
    uint64_t expected = from;
    /* Failure means someone else moved head on: either way it is past `from` now. */
    atomic_compare_exchange_strong_explicit(&ring->ctrl->head, &expected, from + 1,
                                            memory_order_acq_rel, memory_order_relaxed);
}

int shmi_ring_claim(shmi_ring_t *ring, uint32_t owner, uint64_t limit, uint64_t *pos_out,
                    uint64_t *blocker)
{
    *blocker = 0;
    /* Each failed round means another writer claimed a position: bounded by contention, and capped
     * so that a corrupt segment cannot keep us here forever. */
    for (uint64_t round = 0; round < 4 * ring->num_slots + 1024; round++) {
        uint64_t pos = atomic_load_explicit(&ring->ctrl->head, memory_order_acquire);
        if (pos >= limit) return SHMC_EAGAIN;
        shmi_slot_t *slot = slot_at(ring, pos);
        uint64_t word = atomic_load_explicit(&slot->seq, memory_order_acquire);
        int free_slot;
        if (word == 0) {
            free_slot = pos < ring->num_slots;
        } else {
            uint64_t held = shmi_word_pos(word);
            if (held > pos) {
                /* Other writers claimed a whole lap since we read head (we were preempted).
                 * Head is then past pos: the claimer of `held` read head == held before its CAS,
                 * which our acquire load of the word follows. Only a corrupt segment has a slot
                 * ahead of the current head. */
                if (atomic_load_explicit(&ring->ctrl->head, memory_order_acquire) > pos) continue;
                return SHMC_EBADSEG;
            }
            if (held == pos) {
                help_head(ring, pos); /* pos is claimed but head was not moved yet */
                continue;
            }
            if (shmi_word_writing(word)) {
                *blocker = word; /* an earlier lap is still being written here */
                return SHMC_EAGAIN;
            }
            free_slot = held + ring->num_slots == pos;
            if (!free_slot) return SHMC_EBADSEG;
        }
        if (!free_slot) return SHMC_EBADSEG;
        /* acq_rel: the claim is ordered before our payload writes (see the fence below) and after
         * every reader access that preceded the publication of the slot we overwrite. */
        if (atomic_compare_exchange_strong_explicit(&slot->seq, &word, shmi_word_claimed(pos, owner),
                                                    memory_order_acq_rel, memory_order_relaxed)) {
            /* Seqlock writer side: the "writing" word must be visible before any payload byte. */
            atomic_thread_fence(memory_order_release);
            help_head(ring, pos);
            *pos_out = pos;
            return 0;
        }
    }
    return SHMC_EBADSEG;
}

void shmi_ring_publish(shmi_ring_t *ring, uint64_t pos, uint32_t len)
{
    shmi_slot_t *slot = slot_at(ring, pos);
    atomic_store_explicit(&slot->len, len, memory_order_relaxed);
    /* Release: the payload and len are visible to any reader that sees the complete word. */
    atomic_store_explicit(&slot->seq, shmi_word_complete(pos, 0), memory_order_release);
    shmi_waitword_wake(&ring->ctrl->data);
    /* A writer lapping this slot sleeps on `space` until we complete it, and in overwrite mode no
     * reader ever wakes that word: without this it would sleep out a whole maintenance slice.
     * The seq_cst fence in the wake above already orders our store before this load (the
     * sleeper's side is in shmi_wait), so the common case costs one relaxed load. */
    if (atomic_load_explicit(&ring->ctrl->space.sleepers, memory_order_relaxed) != 0)
        shmi_waitword_wake(&ring->ctrl->space);
}

int shmi_ring_abandon(shmi_ring_t *ring, uint64_t pos, uint64_t claimed)
{
    shmi_slot_t *slot = slot_at(ring, pos);
    uint64_t expected = claimed;
    if (!atomic_compare_exchange_strong_explicit(&slot->seq, &expected,
                                                 shmi_word_complete(pos, SHMI_OWNER_ABANDONED),
                                                 memory_order_acq_rel, memory_order_relaxed))
        return 0;
    shmi_waitword_wake(&ring->ctrl->data);
    shmi_waitword_wake(&ring->ctrl->space);
    return 1;
}

void shmi_ring_abandon_owner(shmi_ring_t *ring, uint32_t owner)
{
    for (uint64_t i = 0; i < ring->num_slots; i++) {
        shmi_slot_t *slot = (shmi_slot_t *)(ring->slots + i * ring->slot_stride);
        uint64_t word = atomic_load_explicit(&slot->seq, memory_order_acquire);
        if (word && shmi_word_writing(word) && shmi_word_owner(word) == owner)
            shmi_ring_abandon(ring, shmi_word_pos(word), word);
    }
}

enum shmi_peek shmi_ring_peek(shmi_ring_t *ring, uint64_t pos, uint64_t *word_out,
                              const void **payload, uint32_t *len)
{
    shmi_slot_t *slot = slot_at(ring, pos);
    /* Acquire: pairs with the release in shmi_ring_publish, so len and payload are complete. */
    uint64_t word = atomic_load_explicit(&slot->seq, memory_order_acquire);
    *word_out = word;
    if (word == 0) return SHMI_PEEK_EMPTY;
    uint64_t held = shmi_word_pos(word);
    if (held < pos) return SHMI_PEEK_EMPTY;
    if (held > pos) return SHMI_PEEK_OVERRUN;
    if (shmi_word_writing(word)) return SHMI_PEEK_EMPTY;
    if (shmi_word_owner(word) == SHMI_OWNER_ABANDONED) return SHMI_PEEK_ABANDONED;
    uint32_t n = atomic_load_explicit(&slot->len, memory_order_relaxed);
    if (n > ring->slot_size) return SHMI_PEEK_ABANDONED; /* never trust the segment */
    *len = n;
    *payload = (unsigned char *)slot + SHMI_SLOT_HEADER_BYTES;
    return SHMI_PEEK_READY;
}

int shmi_ring_unchanged(shmi_ring_t *ring, uint64_t pos, uint64_t word)
{
    /* Seqlock reader side: the acquire fence keeps the copy's loads before the re-check. */
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&slot_at(ring, pos)->seq, memory_order_relaxed) == word;
}

#if defined(__SANITIZE_THREAD__)
/* The racing copy is the seqlock's by design and the re-check discards a torn result. ThreadSanitizer
 * cannot know that, so its build copies with uninstrumented volatile loads instead of memcpy. */
__attribute__((no_sanitize_thread)) void shmi_ring_copy_out(void *dst, const void *src, size_t len)
{
    const volatile unsigned char *from = src;
    unsigned char *to = dst;
    for (size_t i = 0; i < len; i++) to[i] = from[i];
}
#else
void shmi_ring_copy_out(void *dst, const void *src, size_t len) { memcpy(dst, src, len); }
#endif
