#include "reader.h"

#include "waitword.h"
#include "shmcomm.h"

#include <stdlib.h>
#include <string.h>

#define READER_MOVED 1             /* maintain followed a restart: wait again on the new channel */

int shmi_reader_setup(shmi_reader_t *r, uint32_t role, int64_t spin_ns, shmi_read_fn read_once,
                      shmi_join_fn rejoin)
{
    r->role = role;
    r->spin_ns = spin_ns;
    r->read_once = read_once;
    r->rejoin = rejoin;
    r->own_cap = r->ch.geometry.slot_size;
    r->own_buf = malloc(r->own_cap);
    return r->own_buf ? 0 : SHMC_ENOMEM;
}

/* Follows a restarted keeper: 1 if it moved (the old mapping is retired). A competing reader first
 * drains what is left in the old queue: those messages were sent, and nobody else may take them. */
static int follow_restart(shmi_reader_t *r)
{
    if (r->ch.ring.competing && !shmi_ring_drained(&r->ch.ring)) return 0;
    if (!shmi_follow_restart(&r->ch, &r->index, r->rejoin, r)) return 0;
    r->reconnects++;
    r->blocker = 0;
    return 1;
}

static int maintain(void *ctx)
{
    shmi_reader_t *r = ctx;
    shmi_registry_heartbeat(&r->ch.registry, r->index);
    shmi_recover_if_dead(&r->ch, r->blocker);
    uint64_t now = shmi_now_ns();
    if (now >= r->next_slow_check) {
        r->next_slow_check = now + SHMI_SLOW_CHECK_NS;
        /* Keepers reap the dead; so do competing readers, whose dead peers may hold a message that
         * only the reap gives back when no writer is waiting behind it. */
        if (r->role == SHMI_ROLE_KEEPER || r->ch.ring.competing)
            shmi_registry_reap(&r->ch.registry, shmi_recover_claims_of, &r->ch);
        if (r->ch.ring.competing) shmi_ring_audit_restored(&r->ch.ring);
        if (r->role == SHMI_ROLE_FOLLOWER && !r->pinned && follow_restart(r)) {
            /* The wait in progress sleeps on the old channel's wait word, which moving retired:
             * end it here (shmi_wait returns at once) so that shmi_reader_wait waits on the new one. */
            return READER_MOVED;
        }
    }
    return 0;
}

static int try_read(void *ctx)
{
    shmi_reader_t *r = ctx;
    return r->read_once(r);
}

int shmi_reader_take(shmi_reader_t *r)
{
    shmi_ring_t *ring = &r->ch.ring;
    shmi_take_t t;
    int rc = shmi_ring_take(ring, r->index, r->cap, &t);
    r->dropped += t.abandoned;
    r->blocker = t.blocker;
    r->len = t.len;
    if (rc) return rc;
    /* The slot is ours (READING): no writer touches it until we release it, so a plain copy. */
    if (t.len) memcpy(r->buf, shmi_ring_payload(ring, t.pos), t.len);
    /* In a batch, full-queue writers are woken once at its end (end_of_batch), not per message. */
    int ours = r->batching ? shmi_ring_release_quiet(ring, t.pos, r->index)
                           : shmi_ring_release(ring, t.pos, r->index);
    if (!ours) return SHMC_EAGAIN; /* recovered: not ours */
    r->received++;
    r->restored += (uint64_t)t.restored;
    atomic_store_explicit(&r->ch.registry.peers[r->index].count, r->received, memory_order_relaxed);
    return 0;
}

/* shmi_reader_wait once the first attempt found nothing: wait up to timeout_ns (not 0). */
static int reader_wait_slow(shmi_reader_t *r, int64_t timeout_ns)
{
    const uint64_t deadline = timeout_ns > 0 ? shmi_now_ns() + (uint64_t)timeout_ns : 0;
    int64_t left = timeout_ns;
    int rc;
    while ((rc = shmi_wait(&r->ch.ring.ctrl->data, try_read, maintain, r, left, r->spin_ns)) ==
           READER_MOVED) {
        if (timeout_ns > 0) { /* the rest of the time, on the new channel */
            uint64_t now = shmi_now_ns();
            left = now < deadline ? (int64_t)(deadline - now) : 0;
        }
    }
    return rc == SHMC_EAGAIN ? SHMC_ETIMEDOUT : rc; /* EAGAIN: the time ran out on a move */
}

int shmi_reader_wait(shmi_reader_t *r, int64_t timeout_ns)
{
    if (r->detached) return SHMC_ECLOSED;
    /* One attempt first: when a message is there (what matters for latency) there is no clock to
     * read and no wait to set up. */
    int rc = r->read_once(r);
    if (rc == SHMC_EAGAIN && timeout_ns != 0) rc = reader_wait_slow(r, timeout_ns);
    if (rc == SHMC_EAGAIN || rc == SHMC_ETIMEDOUT) {
        /* A reader that only polls still follows restarts and recovers dead claims. */
        if (++r->idle_polls % SHMI_IDLE_POLLS_PER_CHECK == 0) maintain(r);
        if (timeout_ns == 0) rc = SHMC_EAGAIN;
    }
    return rc;
}

int shmi_reader_receive(shmi_reader_t *r, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    r->buf = buf;
    r->cap = cap;
    int rc = shmi_reader_wait(r, timeout_ns);
    if (rc == 0 || rc == SHMC_ETRUNC) *len = r->len;
    return rc;
}

int64_t shmi_reader_next(shmi_reader_t *r, int64_t timeout_ns)
{
    for (;;) {
        size_t len = 0;
        int rc = shmi_reader_receive(r, r->own_buf, r->own_cap, &len, timeout_ns);
        if (rc == 0) return (int64_t)len;
        if (rc != SHMC_ETRUNC) return rc;
        /* Only a restarted keeper with larger slots gets here; len is at most its slot_size. */
        unsigned char *bigger = realloc(r->own_buf, len);
        if (!bigger) return SHMC_ENOMEM;
        r->own_buf = bigger;
        r->own_cap = len;
    }
}

/* What the messages of a batch after the first deferred: a competing reader's freed slots are
 * announced to full-queue writers, the pattern publishes its progress. */
static void end_of_batch(shmi_reader_t *r, size_t deferred)
{
    if (r->ch.ring.competing && deferred) shmi_waitword_wake(&r->ch.ring.ctrl->space);
    if (r->end_batch) r->end_batch(r);
}

int shmi_reader_receive_many(shmi_reader_t *r, void *buf, size_t cap, size_t *lens, size_t max,
                             size_t *count, int64_t timeout_ns)
{
    *count = 0;
    int rc = shmi_reader_receive(r, buf, cap, &lens[0], timeout_ns);
    if (rc) return rc;
    size_t used = lens[0], got = 1;
    r->batching = 1;
    while (got < max) {
        r->buf = (unsigned char *)buf + used;
        r->cap = cap - used;
        if (r->read_once(r) != 0) break; /* nothing more now, or the next one does not fit */
        lens[got++] = r->len;
        used += r->len;
    }
    r->batching = 0;
    end_of_batch(r, got - 1);
    *count = got;
    return 0;
}

int shmi_reader_keeper_alive(shmi_reader_t *r)
{
    if (r->detached) return 0;
    if (r->role == SHMI_ROLE_FOLLOWER && !r->pinned) follow_restart(r);
    return shmi_registry_count(&r->ch.registry, SHMI_ROLE_KEEPER) > 0;
}

void shmi_reader_leave(shmi_reader_t *r)
{
    if (r->detached) return;
    r->detached = 1;
    shmi_registry_leave(&r->ch.registry, r->index);
    /* Our cursor no longer holds lossless writers back: let them re-check. */
    shmi_waitword_wake(&r->ch.ring.ctrl->space);
    if (r->role == SHMI_ROLE_KEEPER) shmi_channel_close_if_last(&r->ch, SHMI_ROLE_KEEPER);
}

void shmi_reader_close(shmi_reader_t *r)
{
    shmi_reader_leave(r);
    shmi_channel_detach(&r->ch);
    free(r->own_buf);
    r->own_buf = NULL;
}
