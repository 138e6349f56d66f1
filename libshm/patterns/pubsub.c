/*
 * PUB/SUB: a broadcast ring. Publishers (one or several) claim slots; each subscriber reads with a
 * private cursor kept in its registry entry. Overwrite mode: publishers never wait and a slow
 * subscriber counts what it missed as dropped. Lossless mode: publishers wait until the slowest live
 * subscriber has read the slot they would overwrite; dead subscribers are reaped.
 */
#include "../primitives/reader.h"
#include "../primitives/waitword.h"
#include "../primitives/writer.h"
#include "shmcomm.h"

#include <stdlib.h>
#include <string.h>

struct shmc_pub {
    shmi_writer_t w;
    int loaned;
    uint64_t loan_pos;
};

struct shmc_sub {
    shmi_reader_t r; /* first: read_once casts the reader back to the subscriber */
    uint64_t cursor;    /* the next position we read */
    uint64_t published; /* the cursor as our registry entry shows it (behind `cursor` in a batch) */
    uint64_t skipped;
    int loaned;
    uint64_t loan_pos, loan_word;
    const void *view;
};

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

int shmc_pub_open(const char *name, const shmc_pub_options_t *opts, shmc_pub_t **out)
{
    if (!out) return SHMC_EINVAL;
    *out = NULL;
    shmc_pub_options_t o;
    shmc_pub_options_init(&o);
    char os_name[SHMI_OS_NAME_CAP];
    shmi_geometry_t g;
    int rc = shmi_keeper_args(name, SHMC_PATTERN_PUBSUB, opts, &o,
                              SHMC_LOSSLESS | SHMC_SINGLE_WRITER | SHMC_PAYLOAD_POOL | SHMC_SHARE_GROUP | SHMC_SHARE_ALL,
                              os_name, &g);
    if (rc) return rc;

    shmc_pub_t *pub = calloc(1, sizeof *pub);
    if (!pub) return SHMC_ENOMEM;
    rc = shmi_writer_open_keeper(&pub->w, os_name, name, &g, shmi_mode_for(o.flags));
    if (rc) {
        free(pub);
        return rc;
    }
    *out = pub;
    return 0;
}

static int pub_claim(shmc_pub_t *pub, int64_t timeout_ns)
{
    if (pub->loaned) return SHMC_EINVAL;
    return shmi_writer_claim(&pub->w, timeout_ns);
}

int shmc_pub_send(shmc_pub_t *pub, const void *data, size_t len, int64_t timeout_ns)
{
    if (!pub || (!data && len)) return SHMC_EINVAL;
    if (pub->loaned) return SHMC_EINVAL;
    return shmi_writer_send(&pub->w, data, len, timeout_ns);
}

int shmc_pub_send_many(shmc_pub_t *pub, const void *data, const uint64_t *lens, size_t count,
                       size_t *sent, int64_t timeout_ns)
{
    if (!pub || !sent || (count && (!data || !lens))) return SHMC_EINVAL;
    *sent = 0;
    if (pub->loaned) return SHMC_EINVAL;
    return shmi_writer_send_many(&pub->w, data, lens, count, sent, timeout_ns);
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
    pub->loan_pos = pub->w.claimed_pos;
    *buf = shmi_ring_payload(&pub->w.ch.ring, pub->loan_pos);
    *cap = pub->w.ch.geometry.slot_size;
    return 0;
}

int shmc_pub_commit(shmc_pub_t *pub, size_t len)
{
    if (!pub || !pub->loaned) return SHMC_EINVAL;
    if (pub->w.detached) return SHMC_ECLOSED;
    if (len > pub->w.ch.geometry.slot_size) return SHMC_EMSGSIZE;
    pub->loaned = 0;
    shmi_writer_publish(&pub->w, pub->loan_pos, (uint32_t)len);
    return 0;
}

static void pub_abandon_loan(shmc_pub_t *pub)
{
    shmi_writer_cancel(&pub->w, pub->loan_pos);
    pub->loaned = 0;
}

int shmc_pub_cancel(shmc_pub_t *pub)
{
    if (!pub || !pub->loaned) return SHMC_EINVAL;
    pub_abandon_loan(pub);
    return 0;
}

int shmc_pub_stats(shmc_pub_t *pub, shmc_stats_t *s)
{
    if (!pub || !s || s->size < sizeof *s) return SHMC_EINVAL;
    if (pub->w.detached) return SHMC_ECLOSED;
    shmi_writer_stats(&pub->w, s);
    return 0;
}

int shmc_pub_detach(shmc_pub_t *pub)
{
    if (!pub) return SHMC_EINVAL;
    if (pub->w.detached) return 0;
    if (pub->loaned) pub_abandon_loan(pub);
    shmi_writer_leave(&pub->w);
    return 0;
}

int shmc_pub_close(shmc_pub_t *pub)
{
    if (!pub) return 0;
    shmc_pub_detach(pub);
    shmi_channel_detach(&pub->w.ch);
    free(pub);
    return 0;
}

/* ------------------------------------------------------------------ subscriber */

/* Shows our cursor to publishers (lossless ones wait for it). */
static void sub_publish_cursor(shmc_sub_t *sub)
{
    uint64_t before = sub->published, cursor = sub->cursor;
    if (cursor == before) return;
    sub->published = cursor;
    shmi_channel_t *ch = &sub->r.ch;
    shmi_peer_t *me = &ch->registry.peers[sub->r.index];
    if (ch->geometry.flags & SHMC_LOSSLESS) {
        /* seq_cst store, then the wake's fence: a publisher waiting for room either sees the new
         * cursor in its re-check or is counted as a sleeper and woken. Publishers wait for batch
         * boundaries (shmi_room_batch), so only a crossing can be what one waits for. */
        atomic_store_explicit(&me->cursor, cursor, memory_order_seq_cst);
        uint64_t batch = shmi_room_batch(ch);
        if (before / batch != cursor / batch) shmi_waitword_wake(&ch->ring.ctrl->space);
    } else {
        /* Release: a pooled ring's writer that sees the new cursor may reuse the buffers of the
         * positions below it (ring.h), so our copies out of them must be complete first. */
        atomic_store_explicit(&me->cursor, cursor, memory_order_release);
    }
}

/* Moves our cursor; inside a batch receive it is shown once, at the end (sub_end_batch): a locked
 * store per message would make each one wait for the previous message's cache lines. */
static void sub_set_cursor(shmc_sub_t *sub, uint64_t cursor)
{
    sub->cursor = cursor;
    if (!sub->r.batching) sub_publish_cursor(sub);
}

static void sub_end_batch(shmi_reader_t *r) { sub_publish_cursor((shmc_sub_t *)r); }

/* Joins the registry of `ch` at `start` (UINT64_MAX: from now on). */
static int sub_join_at(shmc_sub_t *sub, shmi_channel_t *ch, uint32_t *index, uint64_t start)
{
    uint64_t first = start == UINT64_MAX ? shmi_channel_head(ch) : start;
    int rc = shmi_registry_join(&ch->registry, SHMI_ROLE_FOLLOWER, first, shmi_recover_claims_of, ch,
                                index);
    if (rc) return rc;
    /* Our cursor is published: from here on every publisher that scans sees us. A publisher that
     * scanned just before may still claim one position unaware of us, so start at the head as it
     * is now (every position claimed from here on waits for us). */
    sub->cursor = start == UINT64_MAX ? shmi_channel_head(ch) : first;
    sub->published = sub->cursor;
    atomic_store_explicit(&ch->registry.peers[*index].cursor, sub->cursor, memory_order_seq_cst);
    return 0;
}

static int sub_join_now(void *ctx, shmi_channel_t *ch, uint32_t *index)
{
    return sub_join_at(ctx, ch, index, UINT64_MAX);
}

/* A restarted publisher's new generation is read from its first message. */
static int sub_join_first(void *ctx, shmi_channel_t *ch, uint32_t *index)
{
    shmc_sub_t *sub = ctx;
    uint64_t cursor = sub->cursor;
    int rc = sub_join_at(sub, ch, index, 0);
    if (rc) sub->cursor = cursor;
    return rc;
}

/* One attempt to receive (copy into buf, or just locate for a loan when buf is NULL). */
static int sub_try_recv(shmi_reader_t *r)
{
    shmc_sub_t *sub = (shmc_sub_t *)r;
    shmi_ring_t *ring = &r->ch.ring;
    const uint64_t n = ring->num_slots;
    r->blocker = 0;
    for (uint64_t round = 0; round < 4 * n + 16; round++) {
        uint64_t pos = sub->cursor, word;
        const void *payload;
        uint32_t len;
        switch (shmi_ring_peek(ring, pos, &word, &payload, &len)) {
        case SHMI_PEEK_READY:
            r->len = len;
            if (!r->buf) { /* a loan: the caller re-validates at release */
                sub->view = payload;
                sub->loan_pos = pos;
                sub->loan_word = word;
                return 0;
            }
            if (len > r->cap) return SHMC_ETRUNC;
            shmi_ring_copy_out(r->buf, payload, len);
            if (!shmi_ring_unchanged(ring, pos, word)) continue; /* lapped mid-copy: re-peek */
            r->received++;
            sub_set_cursor(sub, pos + 1);
            return 0;
        case SHMI_PEEK_EMPTY:
            if (word && shmi_word_state(word) == SHMI_SLOT_WRITING && shmi_word_pos(word) == pos)
                r->blocker = word;
            return SHMC_EAGAIN;
        case SHMI_PEEK_ABANDONED:
            r->dropped++;
            sub_set_cursor(sub, pos + 1);
            continue;
        case SHMI_PEEK_OVERRUN: {
            uint64_t head = shmi_channel_head(&r->ch);
            uint64_t oldest = head >= n ? head - n + 1 : 0;
            uint64_t next = oldest > pos ? oldest : pos + 1;
            r->dropped += next - pos;
            sub_set_cursor(sub, next);
            continue;
        }
        }
    }
    return SHMC_EAGAIN;
}

/* latest(): the newest complete message; older unread ones count as skipped. */
static int sub_try_latest(shmi_reader_t *r)
{
    shmc_sub_t *sub = (shmc_sub_t *)r;
    shmi_ring_t *ring = &r->ch.ring;
    uint64_t head = shmi_channel_head(&r->ch);
    if (head <= sub->cursor) return sub_try_recv(r);
    uint64_t lowest = head > ring->num_slots ? head - ring->num_slots : 0;
    if (lowest < sub->cursor) lowest = sub->cursor;
    for (uint64_t pos = head; pos-- > lowest;) {
        uint64_t word;
        const void *payload;
        uint32_t len;
        if (shmi_ring_peek(ring, pos, &word, &payload, &len) != SHMI_PEEK_READY) continue;
        if (len > r->cap) {
            r->len = len;
            return SHMC_ETRUNC;
        }
        shmi_ring_copy_out(r->buf, payload, len);
        if (!shmi_ring_unchanged(ring, pos, word)) continue;
        sub->skipped += pos - sub->cursor;
        r->received++;
        r->len = len;
        sub_set_cursor(sub, pos + 1);
        return 0;
    }
    return sub_try_recv(r);
}

int shmc_sub_open(const char *name, const shmc_sub_options_t *opts, shmc_sub_t **out)
{
    if (!out) return SHMC_EINVAL;
    *out = NULL;
    shmc_sub_options_t o;
    shmc_sub_options_init(&o);
    char os_name[SHMI_OS_NAME_CAP];
    int rc = shmi_follower_args(name, SHMC_PATTERN_PUBSUB, opts, &o, os_name);
    if (rc) return rc;
    shmc_sub_t *sub = calloc(1, sizeof *sub);
    if (!sub) return SHMC_ENOMEM;
    rc = shmi_follower_open(&sub->r.ch, os_name, SHMC_PATTERN_PUBSUB, o.connect_timeout_ns,
                            sub_join_now, sub, &sub->r.index);
    if (rc == 0) {
        rc = shmi_reader_setup(&sub->r, SHMI_ROLE_FOLLOWER, (int64_t)o.spin_us * 1000, sub_try_recv,
                               sub_join_first);
        sub->r.end_batch = sub_end_batch;
        if (rc) shmi_reader_close(&sub->r);
    }
    if (rc) {
        free(sub);
        return rc;
    }
    *out = sub;
    return 0;
}

/* Receives with `read_once` (sub_try_recv or sub_try_latest). */
static int sub_receive(shmc_sub_t *sub, shmi_read_fn read_once, void *buf, size_t cap, size_t *len,
                       int64_t timeout_ns)
{
    if (!sub || !len || (!buf && cap)) return SHMC_EINVAL;
    if (sub->loaned) return SHMC_EINVAL;
    sub->r.read_once = read_once;
    /* A non-NULL buf means "copy" to sub_try_recv, also for an empty buffer. */
    return shmi_reader_receive(&sub->r, buf ? buf : (void *)sub, buf ? cap : 0, len, timeout_ns);
}

int shmc_sub_recv(shmc_sub_t *sub, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    return sub_receive(sub, sub_try_recv, buf, cap, len, timeout_ns);
}

int shmc_sub_latest(shmc_sub_t *sub, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    return sub_receive(sub, sub_try_latest, buf, cap, len, timeout_ns);
}

static int64_t sub_next(shmc_sub_t *sub, shmi_read_fn read_once, int64_t timeout_ns)
{
    if (!sub) return SHMC_EINVAL;
    if (sub->loaned) return SHMC_EINVAL;
    sub->r.read_once = read_once;
    return shmi_reader_next(&sub->r, timeout_ns);
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
    *buf = sub->r.own_buf;
    *cap = sub->r.own_cap;
    return 0;
}

int shmc_sub_recv_many(shmc_sub_t *sub, void *buf, size_t cap, size_t *lens, size_t max,
                       size_t *count, int64_t timeout_ns)
{
    if (!sub || !buf || !lens || !count || max == 0) return SHMC_EINVAL;
    *count = 0;
    if (sub->loaned) return SHMC_EINVAL;
    sub->r.read_once = sub_try_recv;
    return shmi_reader_receive_many(&sub->r, buf, cap, lens, max, count, timeout_ns);
}

int shmc_sub_loan(shmc_sub_t *sub, const void **data, size_t *len, int64_t timeout_ns)
{
    if (!sub || !data || !len) return SHMC_EINVAL;
    if (sub->loaned) return SHMC_EINVAL;
    sub->r.read_once = sub_try_recv;
    sub->r.buf = NULL;
    sub->r.cap = 0;
    int rc = shmi_reader_wait(&sub->r, timeout_ns);
    if (rc) return rc;
    sub->loaned = 1;
    sub->r.pinned = 1; /* the view points into this generation's mapping */
    *data = sub->view;
    *len = sub->r.len;
    return 0;
}

int shmc_sub_release(shmc_sub_t *sub)
{
    if (!sub || !sub->loaned) return SHMC_EINVAL;
    if (sub->r.detached) return SHMC_ECLOSED;
    sub->loaned = 0;
    sub->r.pinned = 0;
    int intact = shmi_ring_unchanged(&sub->r.ch.ring, sub->loan_pos, sub->loan_word);
    if (intact) {
        sub->r.received++;
    } else {
        sub->r.dropped++;
    }
    sub_set_cursor(sub, sub->loan_pos + 1);
    return intact ? 0 : SHMC_ESTALE;
}

int shmc_sub_stats(shmc_sub_t *sub, shmc_stats_t *s)
{
    if (!sub || !s || s->size < sizeof *s) return SHMC_EINVAL;
    if (sub->r.detached) return SHMC_ECLOSED;
    shmi_channel_stats(&sub->r.ch, s);
    s->cursor = sub->cursor;
    s->received = sub->r.received;
    s->dropped = sub->r.dropped;
    s->skipped = sub->skipped;
    s->reconnects = sub->r.reconnects;
    return 0;
}

int shmc_sub_publisher_alive(shmc_sub_t *sub)
{
    if (!sub) return 0;
    return shmi_reader_keeper_alive(&sub->r);
}

int shmc_sub_detach(shmc_sub_t *sub)
{
    if (!sub) return SHMC_EINVAL;
    shmi_reader_leave(&sub->r);
    return 0;
}

int shmc_sub_close(shmc_sub_t *sub)
{
    if (!sub) return 0;
    shmi_reader_close(&sub->r);
    free(sub);
    return 0;
}
