/*
 * PUB/SUB: a broadcast ring. Publishers (one or several) claim slots; each subscriber reads with a
 * private cursor kept in its registry entry. Overwrite mode: publishers never wait and a slow
 * subscriber counts what it missed as dropped. Lossless mode: publishers wait until the slowest live
 * subscriber has read the slot they would overwrite; dead subscribers are reaped.
 */
#include "../primitives/channel.h"
#include "../primitives/waitword.h"
#include "shmcomm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOW_CHECK_NS 100000000ull /* reaping and restart checks: at most every 100 ms */
#define SUB_MOVED 1 /* sub_maintain followed a restart: wait again on the new channel */
#define IDLE_POLLS_PER_CHECK 256   /* a caller that never waits looks at the clock this often */
#define PUB_SPIN_NS 20000       /* a lossless publisher spins this long for room before sleeping */

struct shmc_pub {
    shmi_channel_t ch;
    uint32_t index;      /* our registry entry */
    int lossless;
    uint64_t cached_min; /* lossless: slowest subscriber cursor at the last scan */
    uint64_t room_at;    /* lossless, while waiting: the cursor the slowest subscriber must reach */
    uint64_t sent;
    uint64_t blocker;    /* slot word of an earlier writer we wait behind, 0 if none */
    uint64_t next_slow_check; /* shmi_now_ns() of the next reap */
    uint32_t idle_polls;
    int loaned;
    uint64_t loan_pos;
    uint64_t claimed_pos; /* result of the last successful claim */
    int detached;         /* left the channel; the mapping stays until close */
};

struct shmc_sub {
    shmi_channel_t ch;
    uint32_t index;
    int lossless;
    int64_t spin_ns;
    uint64_t cursor;
    uint64_t received, dropped, skipped, reconnects;
    uint64_t blocker;     /* slot word of a writer filling our next message, 0 if none */
    uint64_t next_slow_check; /* shmi_now_ns() of the next restart check */
    uint32_t idle_polls;
    int loaned;
    uint64_t loan_pos, loan_word;
    int detached;           /* left the registry; the mapping stays until close */
    unsigned char *own_buf; /* the buffer of shmc_sub_next */
    size_t own_cap;
    /* arguments of the receive in progress */
    void *buf;
    size_t cap;
    uint32_t len;
    const void *view;
    int latest;
    char name[SHMI_MAX_CHANNEL_NAME + 1];
};

static void abandon_owner(void *ctx, uint32_t index)
{
    shmi_ring_abandon_owner(&((shmi_channel_t *)ctx)->ring, index);
}

static uint64_t head_of(shmi_channel_t *ch)
{
    return atomic_load_explicit(&ch->ring.ctrl->head, memory_order_seq_cst);
}

/* If the writer behind `word` (a claimed slot) is dead, marks its position abandoned. */
static void abandon_if_dead(shmi_channel_t *ch, uint64_t word)
{
    if (!word || !shmi_word_writing(word)) return;
    uint32_t owner = shmi_word_owner(word);
    if (owner >= ch->geometry.max_peers || shmi_registry_live_role(&ch->registry, owner) == 0)
        shmi_ring_abandon(&ch->ring, shmi_word_pos(word), word);
}

/* ------------------------------------------------------------------ options */

void shmc_pub_options_init(shmc_pub_options_t *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
    o->num_slots = 64;
    o->slot_size = 4096;
    o->max_peers = 64;
}

void shmc_sub_options_init(shmc_sub_options_t *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
    o->spin_us = 50;
    o->connect_timeout_ns = 5000000000ll;
}

/* ------------------------------------------------------------------ publisher */

static uint32_t mode_for(uint32_t flags)
{
    if (flags & SHMC_SHARE_ALL) return 0666;
    if (flags & SHMC_SHARE_GROUP) return 0660;
    return 0600;
}

static int join_as_publisher(shmc_pub_t *pub)
{
    int rc = shmi_registry_join(&pub->ch.registry, SHMI_ROLE_WRITER, UINT64_MAX, abandon_owner,
                                &pub->ch, &pub->index);
    if (rc) return rc;
    /* The last publisher may have closed the channel while we joined: then start over. */
    if (atomic_load_explicit(&pub->ch.header->state, memory_order_seq_cst) != SHMI_STATE_READY) {
        shmi_registry_leave(&pub->ch.registry, pub->index);
        return SHMC_EAGAIN;
    }
    return 0;
}

/* One attempt to create or join the channel: 0 once joined, SHMC_EAGAIN to try again. */
static int pub_try_open(shmc_pub_t *pub, const char *os_name, const char *name,
                        const shmi_geometry_t *g, uint32_t mode)
{
    int rc = shmi_channel_create(&pub->ch, os_name, name, g, mode);
    if (rc == SHMC_EEXIST) {
        rc = shmi_channel_attach_wait(&pub->ch, os_name, SHMC_PATTERN_PUBSUB, 2000000000ll);
        if (rc == SHMC_ENOENT) return SHMC_EAGAIN; /* removed meanwhile: create it */
        if (rc == SHMC_EAGAIN) {
            /* Its creator did not finish initialising it in 2 s: it died while creating. */
            shmi_seg_unlink(os_name);
            return SHMC_EAGAIN;
        }
        if ((rc == SHMC_EBADSEG || rc == SHMC_EVERSION || rc == SHMC_EMISMATCH) &&
            shmi_channel_left_by_dead_creator(os_name)) {
            /* Unusable and nobody alive made it: replace it (a live owner gets the error). */
            shmi_seg_unlink(os_name);
            return SHMC_EAGAIN;
        }
        if (rc) return rc;
        if (shmi_channel_is_stale(&pub->ch, SHMI_ROLE_WRITER)) {
            /* Every publisher is dead, or the channel is closing: replace it with a new generation. */
            shmi_channel_claim_replacement(&pub->ch, SHMI_ROLE_WRITER);
            shmi_channel_detach(&pub->ch);
            return SHMC_EAGAIN;
        }
        const shmi_geometry_t *have = &pub->ch.geometry;
        if (have->num_slots != g->num_slots || have->slot_size != g->slot_size ||
            have->flags != g->flags || have->max_peers != g->max_peers) {
            shmi_channel_detach(&pub->ch);
            return SHMC_EMISMATCH;
        }
    } else if (rc) {
        return rc;
    }
    rc = join_as_publisher(pub);
    if (rc) shmi_channel_detach(&pub->ch);
    return rc;
}

int shmc_pub_open(const char *name, const shmc_pub_options_t *opts, shmc_pub_t **out)
{
    if (!out) return SHMC_EINVAL;
    *out = NULL;
    shmc_pub_options_t o;
    shmc_pub_options_init(&o);
    if (opts) {
        if (opts->size < sizeof(uint32_t) * 5 || opts->size > sizeof o) return SHMC_EINVAL;
        memcpy(&o, opts, opts->size);
        o.size = sizeof o;
    }
    if (o.reserved || (o.flags & ~(uint32_t)(SHMC_LOSSLESS | SHMC_SHARE_GROUP | SHMC_SHARE_ALL)))
        return SHMC_EINVAL;
    char os_name[SHMI_OS_NAME_CAP];
    int rc = shmi_make_os_name(name, SHMC_PATTERN_PUBSUB, os_name, sizeof os_name);
    if (rc) return rc;
    shmi_geometry_t g = {SHMC_PATTERN_PUBSUB, o.num_slots, o.slot_size, o.max_peers,
                         o.flags & SHMC_LOSSLESS};
    rc = shmi_geometry_check(&g);
    if (rc) return rc;

    shmc_pub_t *pub = calloc(1, sizeof *pub);
    if (!pub) return SHMC_ENOMEM;
    /* Retry while another process is creating, closing or replacing the channel; 5 s at most. */
    uint64_t deadline = shmi_now_ns() + 5000000000ull;
    while ((rc = pub_try_open(pub, os_name, name, &g, mode_for(o.flags))) == SHMC_EAGAIN &&
           shmi_now_ns() < deadline) {
        _Atomic uint32_t never = 0;
        shmi_futex_wait(&never, 0, 1000000);
    }
    if (rc) {
        free(pub);
        return rc == SHMC_EAGAIN ? SHMC_ETIMEDOUT : rc;
    }
    pub->lossless = (g.flags & SHMC_LOSSLESS) != 0;
    pub->cached_min = UINT64_MAX;
    pub->room_at = 0;
    *out = pub;
    return 0;
}

/* Hysteresis for lossless waits: a publisher that found the ring full waits until the slowest
 * subscriber has freed a quarter of it, and subscribers wake it only when their cursor crosses a
 * multiple of this batch. One sleep and one wake per quarter ring, instead of a futex round trip per
 * message once the ring is full. */
static uint64_t room_batch(const shmi_channel_t *ch)
{
    uint64_t quarter = ch->geometry.num_slots / 4;
    return quarter ? quarter : 1;
}

static int pub_try_claim(void *ctx)
{
    shmc_pub_t *pub = ctx;
    shmi_channel_t *ch = &pub->ch;
    uint64_t limit = UINT64_MAX;
    if (pub->lossless) {
        uint64_t head = head_of(ch);
        /* Rescan when the cached bound would stop us, when no subscriber was seen (one may have
         * joined since: a joining subscriber's cursor is never below a cached minimum), and on every
         * attempt while waiting for room. */
        if (pub->cached_min == UINT64_MAX || pub->room_at || head >= pub->cached_min + ch->geometry.num_slots)
            pub->cached_min = shmi_registry_min_cursor(&ch->registry, SHMI_ROLE_READER);
        if (pub->cached_min != UINT64_MAX) {
            if (pub->cached_min < pub->room_at) return SHMC_EAGAIN;
            limit = pub->cached_min + ch->geometry.num_slots;
        }
    }
    int rc = shmi_ring_claim(&ch->ring, pub->index, limit, &pub->claimed_pos, &pub->blocker);
    if (rc == SHMC_EAGAIN && limit != UINT64_MAX && !pub->blocker) {
        uint64_t batch = room_batch(ch);
        pub->room_at = (pub->cached_min / batch + 1) * batch; /* the next boundary readers announce */
    }
    return rc;
}

static int pub_maintain(void *ctx)
{
    shmc_pub_t *pub = ctx;
    shmi_channel_t *ch = &pub->ch;
    shmi_registry_heartbeat(&ch->registry, pub->index);
    abandon_if_dead(ch, pub->blocker);
    uint64_t now = shmi_now_ns();
    if (now >= pub->next_slow_check) {
        pub->next_slow_check = now + SLOW_CHECK_NS;
        if (shmi_registry_reap(&ch->registry, abandon_owner, ch))
            pub->cached_min = UINT64_MAX; /* a reaped subscriber no longer holds us back */
    }
    return 0;
}

static int pub_claim(shmc_pub_t *pub, int64_t timeout_ns)
{
    if (pub->detached) return SHMC_ECLOSED;
    if (pub->loaned) return SHMC_EINVAL;
    pub->room_at = 0; /* each call takes any room first; hysteresis only once it has to wait */
    int rc = shmi_wait(&pub->ch.ring.ctrl->space, pub_try_claim, pub_maintain, pub, timeout_ns,
                       PUB_SPIN_NS);
    /* A publisher that never waits must still reap the dead subscribers that hold it back. */
    if (rc == SHMC_EAGAIN && timeout_ns == 0 && ++pub->idle_polls % IDLE_POLLS_PER_CHECK == 0)
        pub_maintain(pub);
    return rc;
}

static void pub_done(shmc_pub_t *pub, uint64_t pos, uint32_t len)
{
    shmi_ring_publish(&pub->ch.ring, pos, len);
    shmi_peer_t *me = &pub->ch.registry.peers[pub->index];
    pub->sent++;
    atomic_store_explicit(&me->count, pub->sent, memory_order_relaxed);
    if ((pub->sent & 1023) == 0) shmi_registry_heartbeat(&pub->ch.registry, pub->index);
}

int shmc_pub_send(shmc_pub_t *pub, const void *data, size_t len, int64_t timeout_ns)
{
    if (!pub || (!data && len)) return SHMC_EINVAL;
    if (len > pub->ch.geometry.slot_size) return SHMC_EMSGSIZE;
    int rc = pub_claim(pub, timeout_ns);
    if (rc) return rc;
    uint64_t pos = pub->claimed_pos;
    if (len) memcpy(shmi_ring_payload(&pub->ch.ring, pos), data, len);
    pub_done(pub, pos, (uint32_t)len);
    return 0;
}

int shmc_pub_send_many(shmc_pub_t *pub, const void *data, const uint64_t *lens, size_t count,
                       size_t *sent, int64_t timeout_ns)
{
    if (!pub || !sent || (count && (!data || !lens))) return SHMC_EINVAL;
    *sent = 0;
    for (size_t i = 0; i < count; i++)
        if (lens[i] > pub->ch.geometry.slot_size) return SHMC_EMSGSIZE;
    uint64_t deadline = timeout_ns > 0 ? shmi_now_ns() + (uint64_t)timeout_ns : 0;
    const unsigned char *next = data;
    for (size_t i = 0; i < count; i++) {
        int64_t left = timeout_ns;
        if (timeout_ns > 0) {
            uint64_t now = shmi_now_ns();
            left = now < deadline ? (int64_t)(deadline - now) : 0;
        }
        int rc = shmc_pub_send(pub, next, (size_t)lens[i], left);
        if (rc) return rc;
        next += lens[i];
        *sent = i + 1;
    }
    return 0;
}

int shmc_pub_try_send(shmc_pub_t *pub, const void *data, size_t len)
{
    return shmc_pub_send(pub, data, len, 0);
}

int shmc_pub_loan(shmc_pub_t *pub, void **buf, size_t *cap, int64_t timeout_ns)
{
    if (!pub || !buf || !cap) return SHMC_EINVAL;
    int rc = pub_claim(pub, timeout_ns);
    if (rc) return rc;
    pub->loaned = 1;
    pub->loan_pos = pub->claimed_pos;
    *buf = shmi_ring_payload(&pub->ch.ring, pub->loan_pos);
    *cap = pub->ch.geometry.slot_size;
    return 0;
}

int shmc_pub_commit(shmc_pub_t *pub, size_t len)
{
    if (!pub || !pub->loaned) return SHMC_EINVAL;
    if (pub->detached) return SHMC_ECLOSED;
    if (len > pub->ch.geometry.slot_size) return SHMC_EMSGSIZE;
    pub->loaned = 0;
    pub_done(pub, pub->loan_pos, (uint32_t)len);
    return 0;
}

static void pub_abandon_loan(shmc_pub_t *pub)
{
    shmi_ring_abandon(&pub->ch.ring, pub->loan_pos, shmi_word_claimed(pub->loan_pos, pub->index));
    pub->loaned = 0;
}

int shmc_pub_cancel(shmc_pub_t *pub)
{
    if (!pub || !pub->loaned) return SHMC_EINVAL;
    pub_abandon_loan(pub);
    return 0;
}

/* The channel-wide part of the statistics, common to publishers and subscribers. */
static void channel_stats(shmi_channel_t *ch, shmc_stats_t *s)
{
    memset(s, 0, sizeof *s);
    s->size = sizeof *s;
    s->num_slots = ch->geometry.num_slots;
    s->slot_size = ch->geometry.slot_size;
    s->flags = ch->geometry.flags;
    s->head = head_of(ch);
    s->publishers = shmi_registry_count(&ch->registry, SHMI_ROLE_WRITER);
    s->subscribers = shmi_registry_count(&ch->registry, SHMI_ROLE_READER);
    s->publisher_alive = s->publishers > 0;
}

int shmc_pub_stats(shmc_pub_t *pub, shmc_stats_t *s)
{
    if (!pub || !s || s->size < sizeof *s) return SHMC_EINVAL;
    if (pub->detached) return SHMC_ECLOSED;
    channel_stats(&pub->ch, s);
    s->sent = pub->sent;
    return 0;
}

int shmc_pub_detach(shmc_pub_t *pub)
{
    if (!pub) return SHMC_EINVAL;
    if (pub->detached) return 0;
    pub->detached = 1;
    if (pub->loaned) pub_abandon_loan(pub);
    shmi_registry_leave(&pub->ch.registry, pub->index);
    shmi_channel_close_if_last(&pub->ch, SHMI_ROLE_WRITER);
    return 0;
}

int shmc_pub_close(shmc_pub_t *pub)
{
    if (!pub) return 0;
    shmc_pub_detach(pub);
    shmi_channel_detach(&pub->ch);
    free(pub);
    return 0;
}

/* ------------------------------------------------------------------ subscriber */

static void sub_set_cursor(shmc_sub_t *sub, uint64_t cursor)
{
    uint64_t before = sub->cursor;
    sub->cursor = cursor;
    shmi_peer_t *me = &sub->ch.registry.peers[sub->index];
    if (sub->lossless) {
        /* seq_cst store, then the wake's fence: a publisher waiting for room either sees the new
         * cursor in its re-check or is counted as a sleeper and woken. Publishers wait for batch
         * boundaries (room_batch), so only a crossing can be what one waits for. */
        atomic_store_explicit(&me->cursor, cursor, memory_order_seq_cst);
        uint64_t batch = room_batch(&sub->ch);
        if (before / batch != cursor / batch) shmi_waitword_wake(&sub->ch.ring.ctrl->space);
    } else {
        atomic_store_explicit(&me->cursor, cursor, memory_order_relaxed);
    }
}

/* Joins the registry of sub->ch. start: UINT64_MAX = "from now on", else that position. */
static int sub_join(shmc_sub_t *sub, uint64_t start)
{
    shmi_channel_t *ch = &sub->ch;
    uint64_t first = start == UINT64_MAX ? head_of(ch) : start;
    int rc = shmi_registry_join(&ch->registry, SHMI_ROLE_READER, first, abandon_owner, ch,
                                &sub->index);
    if (rc) return rc;
    sub->lossless = (ch->geometry.flags & SHMC_LOSSLESS) != 0;
    /* Our cursor is published: from here on every publisher that scans sees us. A publisher that
     * scanned just before may still claim one position unaware of us, so start at the head as it
     * is now (every position claimed from here on waits for us). */
    sub->cursor = start == UINT64_MAX ? head_of(ch) : first;
    sub_set_cursor(sub, sub->cursor);
    return 0;
}

int shmc_sub_open(const char *name, const shmc_sub_options_t *opts, shmc_sub_t **out)
{
    if (!out) return SHMC_EINVAL;
    *out = NULL;
    shmc_sub_options_t o;
    shmc_sub_options_init(&o);
    if (opts) {
        if (opts->size < sizeof(uint32_t) * 2 || opts->size > sizeof o) return SHMC_EINVAL;
        memcpy(&o, opts, opts->size);
    }
    if (o.spin_us > 1000000) return SHMC_EINVAL;
    char os_name[SHMI_OS_NAME_CAP];
    int rc = shmi_make_os_name(name, SHMC_PATTERN_PUBSUB, os_name, sizeof os_name);
    if (rc) return rc;
    shmc_sub_t *sub = calloc(1, sizeof *sub);
    if (!sub) return SHMC_ENOMEM;
    snprintf(sub->name, sizeof sub->name, "%s", name);
    sub->spin_ns = (int64_t)o.spin_us * 1000;

    uint64_t deadline = shmi_now_ns() + (uint64_t)(o.connect_timeout_ns > 0 ? o.connect_timeout_ns : 0);
    int64_t backoff = 1000000;
    for (;;) {
        rc = shmi_channel_attach(&sub->ch, os_name, SHMC_PATTERN_PUBSUB, 0);
        if (rc == 0) {
            uint32_t state = atomic_load_explicit(&sub->ch.header->state, memory_order_acquire);
            if (state == SHMI_STATE_READY) {
                rc = sub_join(sub, UINT64_MAX);
                if (rc == 0) break;
            } else {
                rc = SHMC_ENOENT;
            }
            shmi_channel_detach(&sub->ch);
        }
        if (rc != SHMC_ENOENT && rc != SHMC_EAGAIN) break;
        uint64_t now = shmi_now_ns();
        if (now >= deadline) {
            rc = SHMC_ENOENT;
            break;
        }
        _Atomic uint32_t never = 0;
        int64_t left = (int64_t)(deadline - now);
        shmi_futex_wait(&never, 0, backoff < left ? backoff : left);
        if (backoff < 10000000) backoff *= 2;
    }
    if (rc == 0) {
        sub->own_cap = sub->ch.geometry.slot_size;
        sub->own_buf = malloc(sub->own_cap);
        if (!sub->own_buf) {
            shmi_registry_leave(&sub->ch.registry, sub->index);
            shmi_channel_detach(&sub->ch);
            rc = SHMC_ENOMEM;
        }
    }
    if (rc) {
        free(sub);
        return rc;
    }
    *out = sub;
    return 0;
}

/* Follows a restarted publisher: if our segment was closed or replaced and the name now holds a new
 * generation, move to it and read it from its first message. Returns 1 if it moved (the old
 * mapping is gone), else 0. */
static int sub_follow_restart(shmc_sub_t *sub)
{
    shmi_channel_t *ch = &sub->ch;
    uint32_t state = atomic_load_explicit(&ch->header->state, memory_order_acquire);
    if (state == SHMI_STATE_READY && shmi_registry_count(&ch->registry, SHMI_ROLE_WRITER) > 0) return 0;
    if (shmi_seg_is_current(&ch->seg, ch->os_name)) return 0;
    shmi_channel_t fresh;
    if (shmi_channel_attach(&fresh, ch->os_name, SHMC_PATTERN_PUBSUB, 0) != 0) return 0;
    if (fresh.session_id == ch->session_id ||
        atomic_load_explicit(&fresh.header->state, memory_order_acquire) != SHMI_STATE_READY) {
        shmi_channel_detach(&fresh);
        return 0;
    }
    shmi_channel_t old = sub->ch;
    uint32_t old_index = sub->index;
    sub->ch = fresh;
    if (sub_join(sub, 0) != 0) {
        shmi_channel_detach(&sub->ch);
        sub->ch = old;
        sub->index = old_index;
        return 0;
    }
    shmi_registry_leave(&old.registry, old_index);
    shmi_channel_detach(&old);
    sub->reconnects++;
    sub->blocker = 0;
    return 1;
}

static int sub_maintain(void *ctx)
{
    shmc_sub_t *sub = ctx;
    shmi_registry_heartbeat(&sub->ch.registry, sub->index);
    abandon_if_dead(&sub->ch, sub->blocker);
    uint64_t now = shmi_now_ns();
    if (!sub->loaned && now >= sub->next_slow_check) {
        sub->next_slow_check = now + SLOW_CHECK_NS;
        /* The wait in progress sleeps on the old channel's wait word, which moving unmapped:
         * end it here (shmi_wait returns at once) so that sub_wait waits again on the new one. */
        if (sub_follow_restart(sub)) return SUB_MOVED;
    }
    return 0;
}

/* One attempt to receive (copy into buf, or just locate for a loan when buf is NULL). */
static int sub_try_recv(void *ctx)
{
    shmc_sub_t *sub = ctx;
    shmi_ring_t *ring = &sub->ch.ring;
    const uint64_t n = ring->num_slots;
    sub->blocker = 0;
    for (uint64_t round = 0; round < 4 * n + 16; round++) {
        uint64_t pos = sub->cursor, word;
        const void *payload;
        uint32_t len;
        switch (shmi_ring_peek(ring, pos, &word, &payload, &len)) {
        case SHMI_PEEK_READY:
            sub->len = len;
            if (!sub->buf) { /* a loan: the caller re-validates at release */
                sub->view = payload;
                sub->loan_pos = pos;
                sub->loan_word = word;
                return 0;
            }
            if (len > sub->cap) return SHMC_ETRUNC;
            shmi_ring_copy_out(sub->buf, payload, len);
            if (!shmi_ring_unchanged(ring, pos, word)) continue; /* lapped mid-copy: re-peek */
            sub->received++;
            sub_set_cursor(sub, pos + 1);
            return 0;
        case SHMI_PEEK_EMPTY:
            if (word && shmi_word_writing(word) && shmi_word_pos(word) == pos) sub->blocker = word;
            return SHMC_EAGAIN;
        case SHMI_PEEK_ABANDONED:
            sub->dropped++;
            sub_set_cursor(sub, pos + 1);
            continue;
        case SHMI_PEEK_OVERRUN: {
            uint64_t head = head_of(&sub->ch);
            uint64_t oldest = head >= n ? head - n + 1 : 0;
            uint64_t next = oldest > pos ? oldest : pos + 1;
            sub->dropped += next - pos;
            sub_set_cursor(sub, next);
            continue;
        }
        }
    }
    return SHMC_EAGAIN;
}

/* latest(): the newest complete message; older unread ones count as skipped. */
static int sub_try_latest(void *ctx)
{
    shmc_sub_t *sub = ctx;
    shmi_ring_t *ring = &sub->ch.ring;
    uint64_t head = head_of(&sub->ch);
    if (head <= sub->cursor) return sub_try_recv(ctx);
    uint64_t lowest = head > ring->num_slots ? head - ring->num_slots : 0;
    if (lowest < sub->cursor) lowest = sub->cursor;
    for (uint64_t pos = head; pos-- > lowest;) {
        uint64_t word;
        const void *payload;
        uint32_t len;
        if (shmi_ring_peek(ring, pos, &word, &payload, &len) != SHMI_PEEK_READY) continue;
        if (len > sub->cap) {
            sub->len = len;
            return SHMC_ETRUNC;
        }
        shmi_ring_copy_out(sub->buf, payload, len);
        if (!shmi_ring_unchanged(ring, pos, word)) continue;
        sub->skipped += pos - sub->cursor;
        sub->received++;
        sub->len = len;
        sub_set_cursor(sub, pos + 1);
        return 0;
    }
    return sub_try_recv(ctx);
}

static int sub_wait(shmc_sub_t *sub, shmi_try_fn try_once, int64_t timeout_ns)
{
    if (sub->detached) return SHMC_ECLOSED;
    if (sub->loaned) return SHMC_EINVAL;
    const uint64_t deadline = timeout_ns > 0 ? shmi_now_ns() + (uint64_t)timeout_ns : 0;
    int64_t left = timeout_ns;
    int rc;
    while ((rc = shmi_wait(&sub->ch.ring.ctrl->data, try_once, sub_maintain, sub, left,
                           sub->spin_ns)) == SUB_MOVED) {
        if (timeout_ns > 0) { /* the rest of the time, on the new channel */
            uint64_t now = shmi_now_ns();
            left = now < deadline ? (int64_t)(deadline - now) : 0;
        }
    }
    if (rc == SHMC_EAGAIN && timeout_ns != 0) rc = SHMC_ETIMEDOUT; /* the time ran out on a move */
    if (rc == SHMC_EAGAIN || rc == SHMC_ETIMEDOUT) {
        /* A subscriber that only polls still follows restarts and reaps dead writers. */
        if (++sub->idle_polls % IDLE_POLLS_PER_CHECK == 0) sub_maintain(sub);
        if (timeout_ns == 0) rc = SHMC_EAGAIN;
    }
    return rc;
}

static int sub_receive(shmc_sub_t *sub, shmi_try_fn try_once, void *buf, size_t cap, size_t *len,
                       int64_t timeout_ns)
{
    if (!sub || !len || (!buf && cap)) return SHMC_EINVAL;
    sub->buf = buf ? buf : (void *)sub; /* a non-NULL buf means "copy" to sub_try_recv */
    sub->cap = buf ? cap : 0;
    int rc = sub_wait(sub, try_once, timeout_ns);
    if (rc == 0 || rc == SHMC_ETRUNC) *len = sub->len;
    return rc;
}

int shmc_sub_recv(shmc_sub_t *sub, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    return sub_receive(sub, sub_try_recv, buf, cap, len, timeout_ns);
}

int shmc_sub_latest(shmc_sub_t *sub, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    return sub_receive(sub, sub_try_latest, buf, cap, len, timeout_ns);
}

static int64_t sub_next(shmc_sub_t *sub, shmi_try_fn try_once, int64_t timeout_ns)
{
    if (!sub) return SHMC_EINVAL;
    for (;;) {
        size_t len = 0;
        int rc = sub_receive(sub, try_once, sub->own_buf, sub->own_cap, &len, timeout_ns);
        if (rc == 0) return (int64_t)len;
        if (rc != SHMC_ETRUNC) return rc;
        /* Only a restarted publisher with larger slots gets here; len is at most its slot_size. */
        unsigned char *bigger = realloc(sub->own_buf, len);
        if (!bigger) return SHMC_ENOMEM;
        sub->own_buf = bigger;
        sub->own_cap = len;
    }
}

int64_t shmc_sub_next(shmc_sub_t *sub, int64_t timeout_ns)
{
    return sub_next(sub, sub_try_recv, timeout_ns);
}

int64_t shmc_sub_next_latest(shmc_sub_t *sub, int64_t timeout_ns)
{
    return sub_next(sub, sub_try_latest, timeout_ns);
}

int shmc_sub_buffer(shmc_sub_t *sub, const void **buf, size_t *cap)
{
    if (!sub || !buf || !cap) return SHMC_EINVAL;
    *buf = sub->own_buf;
    *cap = sub->own_cap;
    return 0;
}

int shmc_sub_recv_many(shmc_sub_t *sub, void *buf, size_t cap, size_t *lens, size_t max,
                       size_t *count, int64_t timeout_ns)
{
    if (!sub || !buf || !lens || !count || max == 0) return SHMC_EINVAL;
    *count = 0;
    size_t used = 0;
    int rc = sub_receive(sub, sub_try_recv, buf, cap, &lens[0], timeout_ns);
    if (rc) return rc;
    used = lens[0];
    size_t got = 1;
    while (got < max) {
        sub->buf = (unsigned char *)buf + used;
        sub->cap = cap - used;
        if (sub_try_recv(sub) != 0) break; /* nothing more now, or the next one does not fit */
        lens[got++] = sub->len;
        used += sub->len;
    }
    *count = got;
    return 0;
}

int shmc_sub_loan(shmc_sub_t *sub, const void **data, size_t *len, int64_t timeout_ns)
{
    if (!sub || !data || !len) return SHMC_EINVAL;
    sub->buf = NULL;
    sub->cap = 0;
    int rc = sub_wait(sub, sub_try_recv, timeout_ns);
    if (rc) return rc;
    sub->loaned = 1;
    *data = sub->view;
    *len = sub->len;
    return 0;
}

int shmc_sub_release(shmc_sub_t *sub)
{
    if (!sub || !sub->loaned) return SHMC_EINVAL;
    if (sub->detached) return SHMC_ECLOSED;
    sub->loaned = 0;
    int intact = shmi_ring_unchanged(&sub->ch.ring, sub->loan_pos, sub->loan_word);
    if (intact) {
        sub->received++;
    } else {
        sub->dropped++;
    }
    sub_set_cursor(sub, sub->loan_pos + 1);
    return intact ? 0 : SHMC_ESTALE;
}

int shmc_sub_stats(shmc_sub_t *sub, shmc_stats_t *s)
{
    if (!sub || !s || s->size < sizeof *s) return SHMC_EINVAL;
    if (sub->detached) return SHMC_ECLOSED;
    channel_stats(&sub->ch, s);
    s->cursor = sub->cursor;
    s->received = sub->received;
    s->dropped = sub->dropped;
    s->skipped = sub->skipped;
    s->reconnects = sub->reconnects;
    return 0;
}

int shmc_sub_publisher_alive(shmc_sub_t *sub)
{
    if (!sub || sub->detached) return 0;
    if (!sub->loaned) sub_follow_restart(sub);
    return shmi_registry_count(&sub->ch.registry, SHMI_ROLE_WRITER) > 0;
}

int shmc_sub_detach(shmc_sub_t *sub)
{
    if (!sub) return SHMC_EINVAL;
    if (sub->detached) return 0;
    sub->detached = 1;
    shmi_registry_leave(&sub->ch.registry, sub->index);
    /* Our cursor no longer holds lossless publishers back: let them re-check. */
    shmi_waitword_wake(&sub->ch.ring.ctrl->space);
    return 0;
}

int shmc_sub_close(shmc_sub_t *sub)
{
    if (!sub) return 0;
    shmc_sub_detach(sub);
    shmi_channel_detach(&sub->ch);
    free(sub->own_buf);
    free(sub);
    return 0;
}
