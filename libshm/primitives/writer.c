#include "writer.h"

#include "waitword.h"
#include "shmcomm.h"

#include <string.h>

#define WRITER_SPIN_NS 20000       /* a writer spins this long for room before sleeping */
#define WRITER_RUN 64              /* a batch claims up to this many positions before filling them */
#define WRITER_RUN_BYTES 65536     /* or of this many payload bytes */
#define PREFETCH_AHEAD 8           /* and asks for the slot this many positions ahead meanwhile */

void shmi_writer_init(shmi_writer_t *w)
{
    w->lossless = (w->ch.geometry.pattern == SHMC_PATTERN_PUBSUB ||
                   w->ch.geometry.pattern == SHMC_PATTERN_STREAM) &&
                  (w->ch.geometry.flags & SHMC_LOSSLESS) != 0;
    w->cached_min = UINT64_MAX;
    w->room_at = 0;
    w->detached = 0;
    w->role = SHMI_ROLE_FOLLOWER;
}

int shmi_writer_open_keeper(shmi_writer_t *w, const char *os_name, const char *name,
                            const shmi_geometry_t *g, uint32_t mode)
{
    /* A single writer holds entry 0: a second live one cannot join, one that opens after it died
     * reaps it there and takes its channel over (shmi_keeper_open_at adopts what has a fixed place). */
    const int single = (g->flags & SHMC_SINGLE_WRITER) != 0;
    int rc = shmi_keeper_open_at(&w->ch, os_name, name, g, mode, single ? SHMI_WRITER_PLACE : SHMI_ANY_PLACE,
                                 &w->index);
    if (single && rc == SHMC_EPEERS) rc = SHMC_EBUSY;
    if (rc) return rc;
    shmi_writer_init(w);
    w->role = SHMI_ROLE_KEEPER;
    return 0;
}

/* Hysteresis for lossless broadcast waits: a publisher that found the ring full waits until the
 * slowest subscriber has freed a quarter of it, and subscribers wake it only when their cursor crosses
 * a multiple of this batch (see sub_set_cursor in pubsub.c). One sleep and one wake per quarter ring,
 * instead of a futex round trip per message once the ring is full. */
uint64_t shmi_room_batch(const shmi_channel_t *ch)
{
    uint64_t quarter = ch->geometry.num_slots / 4;
    return quarter ? quarter : 1;
}

static int maintain(void *ctx);

/* A pooled broadcast ring takes early only the buffers of positions every live subscriber has read
 * (ring.h): the slowest cursor, scanned before each claim (the pool is for large messages, where a
 * scan of the registry costs little next to the copy). No subscriber: nothing is taken early, so
 * a subscriber that follows a restart finds the new generation's first messages as a plain ring
 * would keep them. */
static SHMI_NOINLINE void pool_see_readers(shmi_writer_t *w)
{
    shmi_channel_t *ch = &w->ch;
    uint64_t min = shmi_registry_min_cursor(&ch->registry, SHMI_ROLE_FOLLOWER);
    ch->ring.consumed = min == UINT64_MAX ? 0 : min;
    /* A subscriber a lap behind may be dead, and only a reap lets the pool work again: an
     * overwriting publisher never waits, so it reaps here (maintain is rate-limited). */
    if (min != UINT64_MAX && min + ch->geometry.num_slots <= shmi_channel_head(ch)) maintain(w);
}

static int try_claim(void *ctx)
{
    shmi_writer_t *w = ctx;
    shmi_channel_t *ch = &w->ch;
    uint64_t limit = UINT64_MAX;
    /* Every attempt, also while waiting for room: the buffers readers freed meanwhile are the warm ones. */
    if (ch->ring.pooled && !ch->ring.competing) pool_see_readers(w);
    if (w->lossless) {
        uint64_t head = shmi_channel_head(ch);
        /* Rescan when the cached bound would stop us, when no subscriber was seen (one may have
         * joined since: a joining subscriber's cursor is never below a cached minimum), and on every
         * attempt while waiting for room. */
        if (w->cached_min == UINT64_MAX || w->room_at || head >= w->cached_min + ch->geometry.num_slots)
            w->cached_min = shmi_registry_min_cursor(&ch->registry, SHMI_ROLE_FOLLOWER);
        if (w->cached_min != UINT64_MAX) {
            if (w->cached_min < w->room_at) return SHMC_EAGAIN;
            limit = w->cached_min + ch->geometry.num_slots;
        }
    }
    w->claim_limit = limit;
    int rc = shmi_ring_claim(&ch->ring, w->index, limit, &w->claimed_pos, &w->blocker);
    if (rc == SHMC_EAGAIN && limit != UINT64_MAX && !w->blocker) {
        uint64_t batch = shmi_room_batch(ch);
        w->room_at = (w->cached_min / batch + 1) * batch; /* the next boundary readers announce */
    }
    return rc;
}

static int maintain(void *ctx)
{
    shmi_writer_t *w = ctx;
    shmi_channel_t *ch = &w->ch;
    shmi_registry_heartbeat(&ch->registry, w->index);
    shmi_recover_if_dead(ch, w->blocker);
    uint64_t now = shmi_now_ns();
    if (now >= w->next_slow_check) {
        w->next_slow_check = now + SHMI_SLOW_CHECK_NS;
        if (shmi_registry_reap(&ch->registry, shmi_recover_claims_of, ch))
            w->cached_min = UINT64_MAX; /* a reaped subscriber no longer holds us back */
    }
    return 0;
}

int shmi_writer_claim(shmi_writer_t *w, int64_t timeout_ns)
{
    if (w->detached) return SHMC_ECLOSED;
    w->room_at = 0; /* each call takes any room first; hysteresis only once it has to wait */
    int rc = try_claim(w); /* the common case: room, and nothing to set up for a wait */
    if (rc == SHMC_EAGAIN && timeout_ns != 0)
        rc = shmi_wait(&w->ch.ring.ctrl->space, try_claim, maintain, w, timeout_ns, WRITER_SPIN_NS);
    /* A writer that never waits must still recover the dead claims and peers that hold it back. */
    if (rc == SHMC_EAGAIN && timeout_ns == 0 && ++w->idle_polls % SHMI_IDLE_POLLS_PER_CHECK == 0)
        maintain(w);
    return rc;
}

/* Completes the claimed slot at pos without waking readers (see shmi_ring_complete). */
static void writer_complete(shmi_writer_t *w, uint64_t pos, uint32_t len)
{
    /* The count first: the completion is a release, so a reader that gets this message also sees a
     * count that includes it. */
    w->sent++;
    atomic_store_explicit(&w->ch.registry.peers[w->index].count, w->sent, memory_order_relaxed);
    shmi_ring_complete(&w->ch.ring, pos, len);
    if ((w->sent & 1023) == 0) shmi_registry_heartbeat(&w->ch.registry, w->index);
}

void shmi_writer_publish(shmi_writer_t *w, uint64_t pos, uint32_t len)
{
    writer_complete(w, pos, len);
    shmi_ring_wake_readers(&w->ch.ring);
}

int shmi_writer_send(shmi_writer_t *w, const void *data, size_t len, int64_t timeout_ns)
{
    if (len > w->ch.geometry.slot_size) return SHMC_EMSGSIZE;
    int rc = shmi_writer_claim(w, timeout_ns);
    if (rc) return rc;
    uint64_t pos = w->claimed_pos;
    if (len) shmi_ring_copy_in(shmi_ring_payload(&w->ch.ring, pos), data, len);
    shmi_writer_publish(w, pos, (uint32_t)len);
    return 0;
}

/* Completes, in order, the `run` claimed positions of a batch with their payloads. */
static void writer_fill_run(shmi_writer_t *w, const uint64_t *positions, size_t run,
                            const unsigned char *data, const uint64_t *lens)
{
    for (size_t i = 0; i < run; i++) {
        if (lens[i]) shmi_ring_copy_in(shmi_ring_payload(&w->ch.ring, positions[i]), data, (size_t)lens[i]);
        data += lens[i];
    }
    for (size_t i = 0; i < run; i++) writer_complete(w, positions[i], (uint32_t)lens[i]);
}

int shmi_writer_send_many(shmi_writer_t *w, const void *data, const uint64_t *lens, size_t count,
                          size_t *sent, int64_t timeout_ns)
{
    *sent = 0;
    for (size_t i = 0; i < count; i++)
        if (lens[i] > w->ch.geometry.slot_size) return SHMC_EMSGSIZE;
    /* A batch goes in runs: claim up to WRITER_RUN positions, fill them, then complete them all.
     * Claims are locked instructions, and a locked instruction waits for every earlier store to
     * leave the core: one message at a time, each claim would wait for the previous completion's
     * cache line to come back from the reader polling it. In runs, that wait happens once per run.
     * Readers are woken once per batch (and before every wait), not once per message, and the
     * clock is read here and again only when a claim has to wait. */
    const uint64_t deadline = timeout_ns > 0 ? shmi_now_ns() + (uint64_t)timeout_ns : 0;
    const unsigned char *next = data;
    uint64_t positions[WRITER_RUN];
    size_t done = 0, announced = 0;
    int rc = 0;
    while (done < count && rc == 0) {
        size_t run = 0;
        uint64_t run_bytes = 0; /* large messages go in short runs: readers get the first sooner */
        while (run < WRITER_RUN && run_bytes < WRITER_RUN_BYTES && done + run < count) {
            /* The position after our last claim, directly if it is plainly free. */
            uint64_t after = run ? positions[run - 1] + 1 : 0;
            if (run && shmi_ring_claim_next(&w->ch.ring, w->index, w->claim_limit, after))
                w->claimed_pos = after;
            else if ((rc = shmi_writer_claim(w, 0)) != 0)
                break;
            run_bytes += lens[done + run];
            positions[run++] = w->claimed_pos;
            /* The claims' lines come from the reader's core (it read them a lap ago): ask for
             * the next ones now, so that their transfers overlap instead of one per claim. */
            if (done + run < count) shmi_ring_prefetch_write(&w->ch.ring, w->claimed_pos + PREFETCH_AHEAD);
        }
        if (run == 0 && rc == SHMC_EAGAIN && timeout_ns != 0) {
            /* We are about to wait for readers to make room: they must see what we completed. */
            if (done > announced) {
                shmi_ring_wake_readers(&w->ch.ring);
                announced = done;
            }
            int64_t left = timeout_ns;
            if (timeout_ns > 0) {
                uint64_t now = shmi_now_ns();
                left = now < deadline ? (int64_t)(deadline - now) : 0;
            }
            /* The batch's time ran out between two messages: a timeout, not "asked not to wait". */
            rc = left == 0 ? SHMC_ETIMEDOUT : shmi_writer_claim(w, left);
            if (rc == 0) positions[run++] = w->claimed_pos;
        }
        if (run && rc == SHMC_EAGAIN) rc = 0; /* the ring filled up mid-run: send what we claimed */
        writer_fill_run(w, positions, run, next, lens + done);
        for (size_t i = 0; i < run; i++) next += lens[done + i];
        done += run;
    }
    if (done > announced) shmi_ring_wake_readers(&w->ch.ring);
    *sent = done;
    return done == count ? 0 : rc;
}

void shmi_writer_cancel(shmi_writer_t *w, uint64_t pos)
{
    shmi_ring_recover(&w->ch.ring, shmi_word(pos, w->index, SHMI_SLOT_WRITING));
}

void shmi_channel_stats(shmi_channel_t *ch, shmc_stats_t *s)
{
    memset(s, 0, sizeof *s);
    s->size = sizeof *s;
    s->num_slots = ch->geometry.num_slots;
    s->slot_size = ch->geometry.slot_size;
    s->flags = ch->geometry.flags;
    s->head = shmi_channel_head(ch);
    s->tail = atomic_load_explicit(&ch->ring.ctrl->tail, memory_order_acquire);
    s->publishers = shmi_registry_count(&ch->registry, SHMI_ROLE_KEEPER);
    s->subscribers = shmi_registry_count(&ch->registry, SHMI_ROLE_FOLLOWER);
    s->publisher_alive = s->publishers > 0;
}

void shmi_writer_stats(shmi_writer_t *w, shmc_stats_t *s)
{
    shmi_channel_stats(&w->ch, s);
    s->sent = w->sent;
}

void shmi_writer_leave(shmi_writer_t *w)
{
    if (w->detached) return;
    w->detached = 1;
    shmi_registry_leave(&w->ch.registry, w->index);
    if (w->role == SHMI_ROLE_KEEPER) shmi_channel_close_if_last(&w->ch, SHMI_ROLE_KEEPER);
}
