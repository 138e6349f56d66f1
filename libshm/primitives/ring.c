#include "ring.h"

#include "waitword.h"
#include "../platform/platform.h"
#include "shmcomm.h"

#include <string.h>

/* Streaming (non-temporal) stores for shmi_ring_copy_in: SSE2, part of every x86-64 CPU. Not under
 * ThreadSanitizer, which sees memcpy's stores but not the intrinsics'. */
#if (defined(__x86_64__) || defined(_M_X64)) && !defined(__SANITIZE_THREAD__)
#define SHMI_STREAMING_STORES 1
#include <emmintrin.h>
#else
#define SHMI_STREAMING_STORES 0
#endif

static inline shmi_slot_t *slot_at(shmi_ring_t *ring, uint64_t pos)
{
    return (shmi_slot_t *)(ring->slots + shmi_ring_index(ring, pos) * ring->slot_stride);
}

/* Pooled rings: buffer b (< num_slots) and its holder word, in slot b. */
static inline shmi_pooled_slot_t *pool_entry(shmi_ring_t *ring, uint64_t b)
{
    return (shmi_pooled_slot_t *)(ring->slots + b * ring->slot_stride);
}

static inline unsigned char *pool_buffer(shmi_ring_t *ring, uint64_t b)
{
    return (unsigned char *)pool_entry(ring, b) + SHMI_POOLED_SLOT_HEADER_BYTES;
}

/* Pooled rings: the buffer that the slot of pos names. Never trust the segment: an index out of
 * range reads as the slot's own buffer (still inside the mapping; its holder will not match). */
static inline uint64_t buffer_index(shmi_ring_t *ring, const shmi_slot_t *slot, uint64_t pos)
{
    uint32_t b = atomic_load_explicit(&slot->buf, memory_order_relaxed);
    return b < ring->num_slots ? b : shmi_ring_index(ring, pos);
}

/* Pooled rings: 1 if buffer b still holds pos's payload. */
static inline int holds(shmi_ring_t *ring, uint64_t b, uint64_t pos)
{
    uint64_t holder = atomic_load_explicit(&pool_entry(ring, b)->holder, memory_order_relaxed);
    return holder != 0 && shmi_word_pos(holder) == pos;
}

/* Pooled rings: 1 if the buffer that the slot of pos names still holds pos's payload. */
static SHMI_NOINLINE int buffer_holds(shmi_ring_t *ring, const shmi_slot_t *slot, uint64_t pos)
{
    return holds(ring, buffer_index(ring, slot, pos), pos);
}

/* Pooled rings, shmi_ring_peek of a READY pos: where its payload is, if its buffer still holds it. */
static SHMI_NOINLINE enum shmi_peek pooled_peek(shmi_ring_t *ring, const shmi_slot_t *slot, uint64_t pos,
                                                const void **payload)
{
    uint64_t b = buffer_index(ring, slot, pos);
    if (!holds(ring, b, pos)) return SHMI_PEEK_ABANDONED; /* taken by a later message: every reader
                                                             was past it */
    *payload = pool_buffer(ring, b);
    return SHMI_PEEK_READY;
}

/* A reader polls the first line of the slot it waits for (the slot word); a message larger than
 * what follows the slot header there also needs the second line, which it would otherwise ask for
 * only after seeing the word change: two cross-core transfers one after the other. Asking for the
 * second line with every look at the first makes both arrive together (64-byte ping-pong, one-way
 * p50: 0.19 -> 0.17 us against a 0.08 us one-line floor, same run). A hint: nothing is read from it. */
static inline void prefetch_second_line(shmi_ring_t *ring, const shmi_slot_t *slot)
{
    if (ring->slot_stride > SHMI_CACHE_LINE)
        __builtin_prefetch((const unsigned char *)slot + SHMI_CACHE_LINE, 0, 3);
}

shmi_slot_t *shmi_ring_slot(shmi_ring_t *ring, uint64_t pos) { return slot_at(ring, pos); }

void shmi_ring_init(shmi_ring_t *ring, void *ctrl, void *slots, uint32_t num_slots,
                    uint32_t slot_size, uint32_t slot_stride, int competing, int single_writer,
                    int pooled)
{
    ring->pooled = pooled;
    ring->consumed = 0;
    ring->competing = competing;
    ring->single_writer = single_writer;
    ring->ctrl = ctrl;
    ring->slots = slots;
    ring->num_slots = num_slots;
    ring->mask = (num_slots & (num_slots - 1)) == 0 ? (uint64_t)num_slots - 1 : 0;
    ring->slot_size = slot_size;
    ring->slot_stride = slot_stride;
}

void shmi_ring_prefetch_write(shmi_ring_t *ring, uint64_t pos)
{
    const unsigned char *slot = (const unsigned char *)slot_at(ring, pos);
    uint32_t bytes = ring->slot_stride < 4 * SHMI_CACHE_LINE ? ring->slot_stride : 4 * SHMI_CACHE_LINE;
    for (uint32_t at = 0; at < bytes; at += SHMI_CACHE_LINE) shmi_prefetch_write(slot + at);
}

void *shmi_ring_pooled_payload(shmi_ring_t *ring, uint64_t pos)
{
    return pool_buffer(ring, buffer_index(ring, slot_at(ring, pos), pos));
}

/* Pooled rings: 1 if a buffer whose holder word is `holder` may take the payload of pos (see ring.h);
 * *rank grows with how recently it was used (the warmest in cache is taken). */
static int buffer_free_for(shmi_ring_t *ring, uint64_t holder, uint64_t pos, uint64_t *rank)
{
    *rank = 0;
    if (holder == 0) return 1; /* never used */
    uint64_t held = shmi_word_pos(holder);
    if (held >= pos) return 0; /* a later position's (another writer's), or a corrupt word */
    *rank = held + 1;
    if (held + ring->num_slots <= pos) return 1; /* its slot was claimed again: gone for everyone */
    /* Acquire: pairs with a competing reader's release of the slot (its copy-out is complete). */
    uint64_t word = atomic_load_explicit(&slot_at(ring, held)->seq, memory_order_acquire);
    if (word == 0) return 0; /* corrupt */
    uint64_t at = shmi_word_pos(word);
    if (at != held) return at > held; /* lapped by another writer meanwhile; below: corrupt */
    switch (shmi_word_state(word)) {
    case SHMI_SLOT_FREE: return 1; /* taken and copied out, or abandoned: nobody reads it */
    case SHMI_SLOT_READY: return !ring->competing && held < ring->consumed;
    default: return 0; /* WRITING or READING: in use */
    }
}

/* Pooled rings: the claimant of pos (`owner`) takes the warmest free buffer (see ring.h). 0 if none
 * is free, which only a corrupt segment can cause: the claim of pos is then given up. */
static SHMI_NOINLINE int take_buffer(shmi_ring_t *ring, uint64_t pos, uint32_t owner)
{
    /* A failed CAS means another writer took that buffer: bounded by contention, and capped. */
    for (uint64_t round = 0; round < 4 * ring->num_slots + 16; round++) {
        uint64_t best = UINT64_MAX, best_rank = 0, best_holder = 0;
        for (uint64_t b = 0; b < ring->num_slots; b++) {
            uint64_t holder = atomic_load_explicit(&pool_entry(ring, b)->holder, memory_order_acquire);
            uint64_t rank;
            if (buffer_free_for(ring, holder, pos, &rank) && (best == UINT64_MAX || rank > best_rank)) {
                best = b;
                best_rank = rank;
                best_holder = holder;
            }
        }
        if (best == UINT64_MAX) {
            shmi_ring_recover(ring, shmi_word(pos, owner, SHMI_SLOT_WRITING)); /* readers skip pos */
            return 0;
        }
        /* acq_rel: after the checks above (a reader's cursor or release said the buffer is done
         * with), and before the payload writes (the release fence below): a reader whose copy sees
         * any of them re-checks the holder after its acquire fence and sees us. */
        if (atomic_compare_exchange_strong_explicit(&pool_entry(ring, best)->holder, &best_holder,
                                                    shmi_word(pos, owner, SHMI_SLOT_WRITING),
                                                    memory_order_acq_rel, memory_order_relaxed)) {
            /* Published with the slot's READY word (release), which readers load first. */
            atomic_store_explicit(&slot_at(ring, pos)->buf, (uint32_t)best, memory_order_relaxed);
            /* Seqlock writer side, as in take_slot: the holder before any payload byte. */
            atomic_thread_fence(memory_order_release);
            return 1;
        }
    }
    return 0;
}

static void help_head(shmi_ring_t *ring, uint64_t from)
{
    uint64_t expected = from;
    /* Failure means someone else moved head on: either way it is past `from` now. */
    atomic_compare_exchange_strong_explicit(&ring->ctrl->head, &expected, from + 1,
                                            memory_order_acq_rel, memory_order_relaxed);
}

/* Claims pos, whose slot word was `word` (free for pos): 1 if the CAS won, 0 if another writer was
 * first. A pooled ring's caller then takes a buffer (claimed_buffer). */
static int take_slot(shmi_ring_t *ring, shmi_slot_t *slot, uint64_t word, uint64_t pos, uint32_t owner)
{
    if (ring->single_writer) {
        /* The only writer (registry entry 0, held by one live process at a time) is the only one
         * that claims, and a word free for pos is changed by no one else: readers change only
         * words of the current lap, recovery only claims. So a plain store claims, and needs no
         * locked instruction (a locked one waits for every earlier store to leave the core: in a
         * batch, each claim would wait for the previous message's lines). */
        atomic_store_explicit(&slot->seq, shmi_word(pos, owner, SHMI_SLOT_WRITING), memory_order_relaxed);
    } else if (!atomic_compare_exchange_strong_explicit(&slot->seq, &word,
                                                        shmi_word(pos, owner, SHMI_SLOT_WRITING),
                                                        memory_order_acq_rel, memory_order_relaxed)) {
        /* acq_rel: the claim is ordered before our payload writes (see the fence below) and after
         * every reader access that preceded the publication of the slot we overwrite. */
        return 0;
    }
    /* Seqlock writer side: the "writing" word must be visible before any payload byte; x86 orders
     * the stores anyway. */
    atomic_thread_fence(memory_order_release);
    if (ring->single_writer)
        atomic_store_explicit(&ring->ctrl->head, pos + 1, memory_order_release); /* we alone move it */
    else
        help_head(ring, pos);
    return 1;
}

/* After a claim of pos: 1 if its payload has a place (always, without a pool). */
static inline int claimed_buffer(shmi_ring_t *ring, uint64_t pos, uint32_t owner)
{
    return !ring->pooled || take_buffer(ring, pos, owner);
}

/* 1 if a writer may claim pos over slot word `word`: never written (the first lap), or done with
 * pos - num_slots (READY or FREE; in a work queue only FREE: a READY message there is not taken yet). */
static int free_for(const shmi_ring_t *ring, uint64_t word, uint64_t pos)
{
    if (word == 0) return pos < ring->num_slots;
    if (shmi_word_pos(word) + ring->num_slots != pos) return 0;
    uint32_t state = shmi_word_state(word);
    if (state == SHMI_SLOT_WRITING || state == SHMI_SLOT_READING) return 0;
    return !(ring->competing && state == SHMI_SLOT_READY);
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
        if (free_for(ring, word, pos)) {
            if (take_slot(ring, slot, word, pos, owner)) {
                if (!claimed_buffer(ring, pos, owner)) return SHMC_EBADSEG;
                *pos_out = pos;
                return 0;
            }
            continue; /* another writer claimed pos first */
        }
        if (word == 0) return SHMC_EBADSEG; /* never written, a lap or more past the start */
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
        if (held + ring->num_slots != pos) return SHMC_EBADSEG;
        uint32_t state = shmi_word_state(word);
        if (state == SHMI_SLOT_WRITING || state == SHMI_SLOT_READING)
            *blocker = word; /* an earlier writer, or a competing reader, still holds the slot */
        /* else a competing reader has not taken the message a lap back yet: the queue is full. */
        return SHMC_EAGAIN;
    }
    return SHMC_EBADSEG;
}

int shmi_ring_claim_next(shmi_ring_t *ring, uint32_t owner, uint64_t limit, uint64_t pos)
{
    if (pos >= limit) return 0;
    shmi_slot_t *slot = slot_at(ring, pos);
    uint64_t word = atomic_load_explicit(&slot->seq, memory_order_acquire);
    /* Anything but a plainly free slot goes the general way (shmi_ring_claim); a claim of pos by
     * another writer changed the word since our load, and the CAS fails. */
    return free_for(ring, word, pos) && take_slot(ring, slot, word, pos, owner) &&
           claimed_buffer(ring, pos, owner);
}

void shmi_ring_complete(shmi_ring_t *ring, uint64_t pos, uint32_t len)
{
    shmi_slot_t *slot = slot_at(ring, pos);
    atomic_store_explicit(&slot->len, len, memory_order_relaxed);
    /* Release: the payload and len are visible to any reader that sees the complete word. */
    atomic_store_explicit(&slot->seq, shmi_word(pos, 0, SHMI_SLOT_READY), memory_order_release);
}

void shmi_ring_wake_readers(shmi_ring_t *ring)
{
    shmi_waitword_wake(&ring->ctrl->data);
    /* A writer lapping a slot we completed sleeps on `space` until then, and in overwrite mode no
     * reader ever wakes that word: without this it would sleep out a whole maintenance slice.
     * The seq_cst fence in the wake above already orders our stores before this load (the
     * sleeper's side is in shmi_wait), so the common case costs one relaxed load. */
    if (atomic_load_explicit(&ring->ctrl->space.sleepers, memory_order_relaxed) != 0)
        shmi_waitword_wake(&ring->ctrl->space);
}

void shmi_ring_publish(shmi_ring_t *ring, uint64_t pos, uint32_t len)
{
    shmi_ring_complete(ring, pos, len);
    shmi_ring_wake_readers(ring);
}

static void help_tail(shmi_ring_t *ring, uint64_t from)
{
    uint64_t expected = from;
    /* As help_head: failure means another reader moved tail past `from` already. */
    atomic_compare_exchange_strong_explicit(&ring->ctrl->tail, &expected, from + 1,
                                            memory_order_acq_rel, memory_order_relaxed);
}

int shmi_ring_recover(shmi_ring_t *ring, uint64_t claim)
{
    if (!shmi_word_busy(claim)) return 0;
    uint64_t pos = shmi_word_pos(claim);
    int reading = shmi_word_state(claim) == SHMI_SLOT_READING;
    uint64_t to = reading ? shmi_word(pos, SHMI_OWNER_RESTORED, SHMI_SLOT_READY)
                          : shmi_word(pos, SHMI_OWNER_ABANDONED, SHMI_SLOT_FREE);
    uint64_t expected = claim;
    if (!atomic_compare_exchange_strong_explicit(&slot_at(ring, pos)->seq, &expected, to,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return 0;
    /* A restored message may sit behind tail: readers that find nothing at tail look for it while
     * this count is positive. seq_cst: the count is visible before the wake below. */
    if (reading) atomic_fetch_add_explicit(&ring->ctrl->restored, 1, memory_order_seq_cst);
    shmi_waitword_wake(&ring->ctrl->data);
    shmi_waitword_wake(&ring->ctrl->space);
    return 1;
}

void shmi_ring_recover_owner(shmi_ring_t *ring, uint32_t owner)
{
    for (uint64_t i = 0; i < ring->num_slots; i++) {
        shmi_slot_t *slot = (shmi_slot_t *)(ring->slots + i * ring->slot_stride);
        uint64_t word = atomic_load_explicit(&slot->seq, memory_order_acquire);
        if (shmi_word_busy(word) && shmi_word_owner(word) == owner) shmi_ring_recover(ring, word);
    }
}

/* Takes `pos`, whose slot word was `word` (READY at pos), for reader `owner` if it fits in cap:
 * 1 taken, 0 another reader was first, SHMC_ETRUNC too large (t->len set). */
static int take_at(shmi_ring_t *ring, uint64_t pos, uint64_t word, uint32_t owner, size_t cap,
                   shmi_take_t *t)
{
    shmi_slot_t *slot = slot_at(ring, pos);
    /* The length was stored before the READY word we loaded with acquire; if the slot changes
     * after this load, the CAS below fails. */
    uint32_t len = atomic_load_explicit(&slot->len, memory_order_relaxed);
    if (len > ring->slot_size) len = ring->slot_size; /* never trust the segment */
    if (len > cap) {
        /* Only if the slot still holds that message: else len was another message's. */
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&slot->seq, memory_order_relaxed) != word) return 0;
        t->len = len;
        return SHMC_ETRUNC;
    }
    /* acq_rel: acquire pairs with the writer's release in shmi_ring_publish (the payload is
     * complete); the claim names us, so our death is recoverable from this word alone. */
    if (!atomic_compare_exchange_strong_explicit(&slot->seq, &word,
                                                 shmi_word(pos, owner, SHMI_SLOT_READING),
                                                 memory_order_acq_rel, memory_order_relaxed))
        return 0;
    t->restored = shmi_word_owner(word) == SHMI_OWNER_RESTORED;
    if (t->restored) atomic_fetch_sub_explicit(&ring->ctrl->restored, 1, memory_order_relaxed);
    t->pos = pos;
    t->len = len;
    return 1;
}

/* Restored messages are rare (a reader died holding one): look for them in the whole ring. */
static int take_restored(shmi_ring_t *ring, uint32_t owner, size_t cap, shmi_take_t *t)
{
    if (atomic_load_explicit(&ring->ctrl->restored, memory_order_seq_cst) == 0) return 0;
    for (uint64_t i = 0; i < ring->num_slots; i++) {
        shmi_slot_t *slot = (shmi_slot_t *)(ring->slots + i * ring->slot_stride);
        uint64_t word = atomic_load_explicit(&slot->seq, memory_order_acquire);
        if (!word || shmi_word_state(word) != SHMI_SLOT_READY ||
            shmi_word_owner(word) != SHMI_OWNER_RESTORED)
            continue;
        uint64_t pos = shmi_word_pos(word);
        if (slot_at(ring, pos) != slot) continue; /* never trust the segment */
        int rc = take_at(ring, pos, word, owner, cap, t);
        if (rc != 0) return rc;
    }
    return 0;
}

int shmi_ring_take(shmi_ring_t *ring, uint32_t owner, size_t cap, shmi_take_t *t)
{
    t->blocker = 0;
    t->abandoned = 0;
    t->restored = 0;
    /* Restored messages first: they are the oldest, and a writer lapping one waits for it. */
    int rc = take_restored(ring, owner, cap, t);
    if (rc == 1) return 0;
    if (rc == SHMC_ETRUNC) return rc;
    for (uint64_t round = 0; round < 4 * ring->num_slots + 1024; round++) {
        uint64_t pos = atomic_load_explicit(&ring->ctrl->tail, memory_order_acquire);
        shmi_slot_t *slot = slot_at(ring, pos);
        prefetch_second_line(ring, slot);
        uint64_t word = atomic_load_explicit(&slot->seq, memory_order_acquire);
        uint64_t held = word ? shmi_word_pos(word) : 0;
        if (word == 0 || held < pos) break; /* nothing written at tail yet */
        if (held > pos) {
            /* The slot was reused a lap later: pos was taken and tail lags (its helpers were
             * preempted). */
            help_tail(ring, pos);
            continue;
        }
        switch (shmi_word_state(word)) {
        case SHMI_SLOT_READY:
            rc = take_at(ring, pos, word, owner, cap, t);
            if (rc == 1) {
                help_tail(ring, pos);
                return 0;
            }
            if (rc == SHMC_ETRUNC) return rc;
            continue; /* another reader took it first */
        case SHMI_SLOT_WRITING:
            t->blocker = word;
            goto none_at_tail;
        case SHMI_SLOT_FREE:
            /* Abandoned positions are counted once, by the reader whose help moves tail past. */
            if (shmi_word_owner(word) == SHMI_OWNER_ABANDONED) {
                uint64_t expected = pos;
                if (atomic_compare_exchange_strong_explicit(&ring->ctrl->tail, &expected, pos + 1,
                                                            memory_order_acq_rel,
                                                            memory_order_relaxed))
                    t->abandoned++;
                continue;
            }
            help_tail(ring, pos);
            continue;
        default: /* READING: another reader has it */
            help_tail(ring, pos);
            continue;
        }
    }
none_at_tail:
    return SHMC_EAGAIN;
}

int shmi_ring_release_quiet(shmi_ring_t *ring, uint64_t pos, uint32_t owner)
{
    /* Release: our copy-out is complete before a writer that sees FREE reuses the slot. A CAS, not a
     * store: if another process recovered the slot (it judged us dead), it is not ours to free. */
    uint64_t ours = shmi_word(pos, owner, SHMI_SLOT_READING);
    return atomic_compare_exchange_strong_explicit(&slot_at(ring, pos)->seq, &ours,
                                                   shmi_word(pos, 0, SHMI_SLOT_FREE),
                                                   memory_order_acq_rel, memory_order_relaxed);
}

int shmi_ring_release(shmi_ring_t *ring, uint64_t pos, uint32_t owner)
{
    if (!shmi_ring_release_quiet(ring, pos, owner)) return 0;
    /* Full-queue writers sleep on `space`; the fence in the wake orders our store before its
     * sleeper check (the sleeper side is in shmi_wait). */
    shmi_waitword_wake(&ring->ctrl->space);
    return 1;
}

void shmi_ring_audit_restored(shmi_ring_t *ring)
{
    uint64_t seen = atomic_load_explicit(&ring->ctrl->restored, memory_order_seq_cst);
    uint64_t found = 0;
    for (uint64_t i = 0; i < ring->num_slots; i++) {
        uint64_t word = atomic_load_explicit(
            &((shmi_slot_t *)(ring->slots + i * ring->slot_stride))->seq, memory_order_acquire);
        if (word && shmi_word_state(word) == SHMI_SLOT_READY &&
            shmi_word_owner(word) == SHMI_OWNER_RESTORED)
            found++;
    }
    if (found == seen) return;
    /* Counts that moved meanwhile are left alone: the next audit looks again. Too high only costs
     * scans; too low would hide a restored message, so wake readers to look for it. */
    if (atomic_compare_exchange_strong_explicit(&ring->ctrl->restored, &seen, found,
                                                memory_order_seq_cst, memory_order_relaxed) &&
        found > seen)
        shmi_waitword_wake(&ring->ctrl->data);
}

int shmi_ring_drained(shmi_ring_t *ring)
{
    return atomic_load_explicit(&ring->ctrl->restored, memory_order_acquire) == 0 &&
           atomic_load_explicit(&ring->ctrl->tail, memory_order_acquire) >=
               atomic_load_explicit(&ring->ctrl->head, memory_order_acquire);
}

enum shmi_peek shmi_ring_peek(shmi_ring_t *ring, uint64_t pos, uint64_t *word_out,
                              const void **payload, uint32_t *len)
{
    shmi_slot_t *slot = slot_at(ring, pos);
    prefetch_second_line(ring, slot);
    /* Acquire: pairs with the release in shmi_ring_publish, so len and payload are complete. */
    uint64_t word = atomic_load_explicit(&slot->seq, memory_order_acquire);
    *word_out = word;
    uint64_t held = word ? shmi_word_pos(word) : 0;
    if (word == 0 || held < pos || (held == pos && shmi_word_state(word) == SHMI_SLOT_WRITING))
        return SHMI_PEEK_EMPTY;
    if (held > pos) return SHMI_PEEK_OVERRUN;
    uint32_t state = shmi_word_state(word);
    if (state != SHMI_SLOT_READY) return SHMI_PEEK_ABANDONED; /* FREE; READING only if corrupt */
    uint32_t n = atomic_load_explicit(&slot->len, memory_order_relaxed);
    if (n > ring->slot_size) return SHMI_PEEK_ABANDONED; /* never trust the segment */
    *len = n;
    if (ring->pooled) return pooled_peek(ring, slot, pos, payload);
    *payload = (unsigned char *)slot + SHMI_SLOT_HEADER_BYTES;
    return SHMI_PEEK_READY;
}

int shmi_ring_unchanged(shmi_ring_t *ring, uint64_t pos, uint64_t word)
{
    /* Seqlock reader side: the acquire fence keeps the copy's loads before the re-check. */
    atomic_thread_fence(memory_order_acquire);
    shmi_slot_t *slot = slot_at(ring, pos);
    if (atomic_load_explicit(&slot->seq, memory_order_relaxed) != word) return 0;
    return !ring->pooled || buffer_holds(ring, slot, pos);
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

#if SHMI_STREAMING_STORES
void shmi_ring_copy_in_streaming(void *dst, const void *src, size_t len)
{
    unsigned char *to = dst;
    const unsigned char *from = src;
    size_t head = (16 - ((uintptr_t)to & 15)) & 15; /* streaming stores need 16-byte alignment */
    memcpy(to, from, head);
    to += head, from += head, len -= head;
    for (; len >= 64; to += 64, from += 64, len -= 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)from), b = _mm_loadu_si128((const __m128i *)(from + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(from + 32)), d = _mm_loadu_si128((const __m128i *)(from + 48));
        _mm_stream_si128((__m128i *)to, a);
        _mm_stream_si128((__m128i *)(to + 16), b);
        _mm_stream_si128((__m128i *)(to + 32), c);
        _mm_stream_si128((__m128i *)(to + 48), d);
    }
    memcpy(to, from, len);
    /* Non-temporal stores are not ordered with later stores: without this fence a reader could see
     * the slot's READY word (a release store) before the payload. */
    _mm_sfence();
}
#else
void shmi_ring_copy_in_streaming(void *dst, const void *src, size_t len) { memcpy(dst, src, len); }
#endif
