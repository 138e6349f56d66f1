/*
 * REQ/REP: requests travel through a competing-reader ring (requesters write, repliers take), replies
 * through one mailbox per requester (indexed by its registry entry), so any number of requesters and
 * repliers share one segment and every reply finds the requester that asked.
 *
 * A request carries its requester's index (slot route) and a request id (slot tag) that is unique
 * for the segment: a ticket taken at join, then a counter. The mailbox word says what the requester
 * waits for, and who works on it, in one atomic word:
 *
 *   mailbox word = (id << 10) | (owner << 2) | state
 *     IDLE     nothing expected (no request pending)
 *     EXPECT   the requester waits for the reply to `id`; owner = the replier that took the request,
 *              or MB_NOBODY while it is queued
 *     WRITING  replier `owner` is writing the reply to `id`
 *     READY    the reply to `id` is complete
 *
 * Only the requester moves the word to EXPECT (a new request) or IDLE (giving up); a replier moves it
 * EXPECT(id, nobody) -> EXPECT(id, me) when it takes the request, EXPECT(id, me) -> WRITING -> READY
 * when it replies. A reply whose CAS fails is late (the requester gave up or moved on to another id):
 * it is discarded, never delivered to a later request. A request whose CAS fails at take time is
 * skipped without being handed to the application. A requester whose request was taken by a replier
 * that died learns it from the owner field and fails at once instead of waiting out its timeout.
 */
#include "../primitives/reader.h"
#include "../primitives/waitword.h"
#include "../primitives/writer.h"
#include "shmcomm.h"

#include <stdlib.h>
#include <string.h>

enum { MB_IDLE = 0, MB_EXPECT = 1, MB_WRITING = 2, MB_READY = 3 };
#define MB_NOBODY 0xFFu /* EXPECT: the request is still queued */
#define MB_DEAD 0xFEu   /* EXPECT: the replier that took the request died */
#define COUNTER_BITS 24             /* request ids: ticket << 24 | counter, 54 bits in all */
#define REQUESTER_CHECK_NS 10000000ull /* replier: a requester seen alive is trusted this long */
#define SETTLE_LIMIT_NS 100000000ull   /* requester: longest wait for a reply being written */

static uint64_t mb_word(uint64_t id, uint32_t owner, uint32_t state)
{
    return (id << 10) | ((uint64_t)owner << 2) | state;
}
static uint64_t mb_id(uint64_t word) { return word >> 10; }
static uint32_t mb_owner(uint64_t word) { return (uint32_t)(word >> 2) & 0xFFu; }
static uint32_t mb_state(uint64_t word) { return (uint32_t)(word & 3u); }

static shmi_mailbox_t *mailbox_of(shmi_channel_t *ch, uint32_t index)
{
    return (shmi_mailbox_t *)(ch->mailboxes +
                              (size_t)index * shmi_mailbox_stride(ch->geometry.slot_size));
}
static unsigned char *mailbox_payload(shmi_mailbox_t *mb)
{
    return (unsigned char *)mb + SHMI_MAILBOX_HEADER_BYTES;
}

struct shmc_rep {
    shmi_reader_t r; /* first: read_once casts the reader back to the replier */
    /* Liveness of requesters, by registry index: checking a process costs a /proc read, so a
     * requester seen alive (with this owner word) is trusted for REQUESTER_CHECK_NS. */
    uint64_t owner_seen[SHMI_MAX_PEERS];
    uint64_t alive_until[SHMI_MAX_PEERS];
    int has_current;
    uint32_t current_route;
    uint64_t current_id;
    uint64_t sent, expired, restored;
};

struct shmc_req {
    shmi_writer_t w; /* writes requests; w.index is also our mailbox */
    uint32_t repliers;  /* live repliers at the last service check */
    int64_t spin_ns;
    uint64_t ticket, counter;
    uint64_t pending; /* id of the request we wait for, 0 if none */
    uint64_t replies, expired, reconnects;
    uint64_t next_slow_check;
    uint32_t idle_polls;
    unsigned char *own_buf;
    size_t own_cap;
    void *buf; /* the receive in progress */
    size_t cap;
    uint32_t len;
};

void shmc_rep_options_init(shmc_rep_options_t *o)
{
    if (!o) return;
    shmc_pub_options_init(o);
    o->num_slots = 16;
    o->slot_size = 8192;
}

void shmc_req_options_init(shmc_req_options_t *o) { shmc_sub_options_init(o); }

/* ------------------------------------------------------------------ replier */

void shmi_mailbox_forget(shmi_channel_t *ch, uint32_t index)
{
    /* A dead requester: its mailbox expects nothing any more. */
    shmi_mailbox_t *own = mailbox_of(ch, index);
    uint64_t word = atomic_load_explicit(&own->word, memory_order_acquire);
    if (mb_state(word) == MB_EXPECT)
        atomic_compare_exchange_strong_explicit(&own->word, &word, mb_word(0, 0, MB_IDLE),
                                                memory_order_acq_rel, memory_order_relaxed);
    /* A dead replier: the requests it had taken, or was answering, will never be answered. Marked
     * before its index can be reused, so a newcomer there is never mistaken for their replier. */
    for (uint32_t i = 0; i < ch->geometry.max_peers; i++) {
        shmi_mailbox_t *mb = mailbox_of(ch, i);
        word = atomic_load_explicit(&mb->word, memory_order_acquire);
        uint32_t state = mb_state(word);
        if ((state == MB_EXPECT || state == MB_WRITING) && mb_owner(word) == index) {
            atomic_compare_exchange_strong_explicit(&mb->word, &word,
                                                    mb_word(mb_id(word), MB_DEAD, MB_EXPECT),
                                                    memory_order_acq_rel, memory_order_relaxed);
            shmi_waitword_wake(&mb->wait);
        }
    }
}

/* 1 if the requester at `route` is alive (cached, see struct shmc_rep). */
static int requester_alive(shmc_rep_t *rep, uint32_t route)
{
    shmi_registry_t *reg = &rep->r.ch.registry;
    uint64_t owner = atomic_load_explicit(&reg->peers[route].owner, memory_order_acquire);
    uint64_t now = shmi_now_ns();
    if (owner == rep->owner_seen[route] && now < rep->alive_until[route]) return 1;
    if (shmi_registry_live_role(reg, route) != SHMI_ROLE_FOLLOWER) return 0;
    rep->owner_seen[route] = owner;
    rep->alive_until[route] = now + REQUESTER_CHECK_NS;
    return 1;
}

/* One attempt to take a request whose requester still waits for it. */
static int rep_take(shmi_reader_t *r)
{
    shmc_rep_t *rep = (shmc_rep_t *)r;
    shmi_channel_t *ch = &r->ch;
    /* Each skipped request is one that is no longer wanted: bounded by the queue's depth. */
    for (uint32_t skipped = 0; skipped <= ch->geometry.num_slots; skipped++) {
        shmi_take_t t;
        int rc = shmi_ring_take(&ch->ring, r->index, r->cap, &t);
        r->dropped += t.abandoned;
        r->blocker = t.blocker;
        r->len = t.len;
        if (rc) return rc;
        shmi_slot_t *slot = shmi_ring_slot(&ch->ring, t.pos);
        uint32_t route = atomic_load_explicit(&slot->route, memory_order_relaxed);
        uint64_t id = atomic_load_explicit(&slot->tag, memory_order_relaxed);
        /* Naming ourselves in the requester's mailbox before freeing the slot: if we die after
         * this, the requester sees a dead owner; before it, the slot is given back to the queue. */
        uint64_t expect = mb_word(id, MB_NOBODY, MB_EXPECT);
        int wanted = route < ch->geometry.max_peers && requester_alive(rep, route) &&
                     atomic_compare_exchange_strong_explicit(
                         &mailbox_of(ch, route)->word, &expect, mb_word(id, r->index, MB_EXPECT),
                         memory_order_acq_rel, memory_order_relaxed);
        if (wanted && t.len) memcpy(r->buf, shmi_ring_payload(&ch->ring, t.pos), t.len);
        if (!shmi_ring_release(&ch->ring, t.pos, r->index)) {
            /* Recovered by a process that judged us dead: the request is back in the queue, and
             * the copy may be torn. Let the replier that takes it again claim the mailbox. */
            uint64_t mine = mb_word(id, r->index, MB_EXPECT);
            if (wanted)
                atomic_compare_exchange_strong_explicit(&mailbox_of(ch, route)->word, &mine, expect,
                                                        memory_order_acq_rel, memory_order_relaxed);
            return SHMC_EAGAIN;
        }
        rep->restored += (uint64_t)t.restored;
        if (!wanted) {
            rep->expired++; /* its requester gave up, or died */
            continue;
        }
        rep->has_current = 1;
        rep->current_route = route;
        rep->current_id = id;
        r->received++;
        return 0;
    }
    return SHMC_EAGAIN;
}

int shmc_rep_open(const char *name, const shmc_rep_options_t *opts, shmc_rep_t **out)
{
    if (!out) return SHMC_EINVAL;
    *out = NULL;
    shmc_rep_options_t o;
    shmc_rep_options_init(&o);
    char os_name[SHMI_OS_NAME_CAP];
    shmi_geometry_t g;
    int rc = shmi_keeper_args(name, SHMC_PATTERN_REQREP, opts, &o, SHMC_SHARE_GROUP | SHMC_SHARE_ALL, os_name, &g);
    if (rc) return rc;
    shmc_rep_t *rep = calloc(1, sizeof *rep);
    if (!rep) return SHMC_ENOMEM;
    rc = shmi_keeper_open(&rep->r.ch, os_name, name, &g, shmi_mode_for(o.flags), &rep->r.index);
    if (rc == 0) {
        rc = shmi_reader_setup(&rep->r, SHMI_ROLE_KEEPER, 50000, rep_take, NULL);
        if (rc) shmi_reader_close(&rep->r);
    }
    if (rc) {
        free(rep);
        return rc;
    }
    *out = rep;
    return 0;
}

int shmc_rep_recv(shmc_rep_t *rep, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    if (!rep || !len || (!buf && cap)) return SHMC_EINVAL;
    rep->has_current = 0;
    return shmi_reader_receive(&rep->r, buf ? buf : (void *)rep, buf ? cap : 0, len, timeout_ns);
}

int64_t shmc_rep_next(shmc_rep_t *rep, int64_t timeout_ns)
{
    if (!rep) return SHMC_EINVAL;
    rep->has_current = 0;
    return shmi_reader_next(&rep->r, timeout_ns);
}

int shmc_rep_buffer(shmc_rep_t *rep, const void **buf, size_t *cap)
{
    if (!rep || !buf || !cap) return SHMC_EINVAL;
    *buf = rep->r.own_buf;
    *cap = rep->r.own_cap;
    return 0;
}

int64_t shmc_rep_reply_next(shmc_rep_t *rep, const void *data, size_t len, int64_t timeout_ns)
{
    if (!rep) return SHMC_EINVAL;
    if (rep->has_current) {
        int rc = shmc_rep_send(rep, data, len);
        if (rc && rc != SHMC_EEXPIRED) return rc; /* counted as expired: nothing more to do */
    }
    return shmc_rep_next(rep, timeout_ns);
}

int shmc_rep_send(shmc_rep_t *rep, const void *data, size_t len)
{
    if (!rep || (!data && len)) return SHMC_EINVAL;
    if (rep->r.detached) return SHMC_ECLOSED;
    if (!rep->has_current) return SHMC_ESEQUENCE;
    shmi_channel_t *ch = &rep->r.ch;
    if (len > ch->geometry.slot_size) return SHMC_EMSGSIZE;
    rep->has_current = 0;
    shmi_mailbox_t *mb = mailbox_of(ch, rep->current_route);
    uint64_t ours = mb_word(rep->current_id, rep->r.index, MB_EXPECT);
    if (!atomic_compare_exchange_strong_explicit(&mb->word, &ours,
                                                 mb_word(rep->current_id, rep->r.index, MB_WRITING),
                                                 memory_order_acq_rel, memory_order_relaxed)) {
        rep->expired++; /* the requester gave up: discard the reply */
        return SHMC_EEXPIRED;
    }
    if (len) shmi_ring_copy_in(mailbox_payload(mb), data, len);
    atomic_store_explicit(&mb->len, (uint32_t)len, memory_order_relaxed);
    /* Release: the payload and len are complete for a requester that sees READY. */
    atomic_store_explicit(&mb->word, mb_word(rep->current_id, rep->r.index, MB_READY),
                          memory_order_release);
    shmi_waitword_wake(&mb->wait);
    rep->sent++;
    return 0;
}

int shmc_rep_stats(shmc_rep_t *rep, shmc_stats_t *s)
{
    if (!rep || !s || s->size < sizeof *s) return SHMC_EINVAL;
    if (rep->r.detached) return SHMC_ECLOSED;
    shmi_channel_stats(&rep->r.ch, s);
    s->cursor = s->tail;
    s->sent = rep->sent;
    s->received = rep->r.received;
    s->dropped = rep->r.dropped;
    s->expired = rep->expired;
    s->restored = rep->restored;
    return 0;
}

int shmc_rep_close(shmc_rep_t *rep)
{
    if (!rep) return 0;
    shmi_reader_close(&rep->r);
    free(rep);
    return 0;
}

/* ------------------------------------------------------------------ requester */

/* Waits until no replier is writing into mailbox `mb` (a late reply in progress), then sets it to
 * `to`. A writer that died mid-reply is passed over. The wait is one memcpy of a live process. */
static void mailbox_settle(shmi_channel_t *ch, shmi_mailbox_t *mb, uint64_t to)
{
    uint64_t give_up_at = 0;
    for (uint32_t spins = 0;; spins++) {
        uint64_t word = atomic_load_explicit(&mb->word, memory_order_acquire);
        if (mb_state(word) == MB_WRITING) {
            if ((spins & 1023) != 1023) {
                shmi_cpu_relax();
                continue;
            }
            /* Only a live replier writes a reply, and that is one copy. A word naming anything
             * else is garbage (a corrupt segment), and a write that lasts over 100 ms a stalled or
             * lying process: never wait for either forever. */
            if (shmi_registry_live_role(&ch->registry, mb_owner(word)) == SHMI_ROLE_KEEPER) {
                uint64_t now = shmi_now_ns();
                if (!give_up_at) give_up_at = now + SETTLE_LIMIT_NS;
                if (now < give_up_at) {
                    shmi_pause_ns(10000); /* descheduled mid-copy: let it run */
                    continue;
                }
            }
        }
        if (atomic_compare_exchange_strong_explicit(&mb->word, &word, to, memory_order_seq_cst,
                                                    memory_order_relaxed))
            return;
    }
}

static int req_join(void *ctx, shmi_channel_t *ch, uint32_t *index)
{
    shmc_req_t *req = ctx;
    int rc = shmi_registry_join(&ch->registry, SHMI_ROLE_FOLLOWER, UINT64_MAX, shmi_recover_claims_of,
                                ch, index);
    if (rc) return rc;
    /* A unique id prefix: a late reply meant for an earlier holder of this mailbox never matches. */
    req->ticket = atomic_fetch_add_explicit(&ch->header->tickets, 1, memory_order_relaxed) + 1;
    req->counter = 0;
    mailbox_settle(ch, mailbox_of(ch, *index), mb_word(0, 0, MB_IDLE));
    return 0;
}

int shmc_req_open(const char *name, const shmc_req_options_t *opts, shmc_req_t **out)
{
    if (!out) return SHMC_EINVAL;
    *out = NULL;
    shmc_req_options_t o;
    shmc_req_options_init(&o);
    char os_name[SHMI_OS_NAME_CAP];
    int rc = shmi_follower_args(name, SHMC_PATTERN_REQREP, opts, &o, os_name);
    if (rc) return rc;
    shmc_req_t *req = calloc(1, sizeof *req);
    if (!req) return SHMC_ENOMEM;
    rc = shmi_follower_open(&req->w.ch, os_name, SHMC_PATTERN_REQREP, o.connect_timeout_ns, req_join,
                            req, &req->w.index);
    if (rc == 0) {
        shmi_writer_init(&req->w);
        req->spin_ns = (int64_t)o.spin_us * 1000;
        req->own_cap = req->w.ch.geometry.slot_size;
        req->own_buf = malloc(req->own_cap);
        if (!req->own_buf) {
            shmi_writer_leave(&req->w);
            shmi_channel_detach(&req->w.ch);
            rc = SHMC_ENOMEM;
        }
    }
    if (rc) {
        free(req);
        return rc;
    }
    *out = req;
    return 0;
}

static shmi_mailbox_t *own_mailbox(shmc_req_t *req) { return mailbox_of(&req->w.ch, req->w.index); }

/* Gives up the pending request: a reply in progress or still to come is discarded. */
static void req_give_up(shmc_req_t *req)
{
    if (!req->pending) return;
    mailbox_settle(&req->w.ch, own_mailbox(req), mb_word(0, 0, MB_IDLE));
    req->pending = 0;
    req->expired++;
}

/* Before a send: a service whose repliers are gone and whose name holds a new generation (a restarted
 * replier) is followed. Checked every 100 ms, or at once after a failure that suggested it. */
static void req_check_service(shmc_req_t *req)
{
    uint64_t now = shmi_now_ns();
    if (now < req->next_slow_check) return;
    req->next_slow_check = now + SHMI_SLOW_CHECK_NS;
    if (shmi_follow_restart(&req->w.ch, &req->w.index, req_join, req)) {
        shmi_writer_init(&req->w);
        req->reconnects++;
        if (req->pending) { /* it was queued in the old generation, which is gone */
            req->pending = 0;
            req->expired++;
        }
        if (req->w.ch.geometry.slot_size > req->own_cap) {
            unsigned char *bigger = realloc(req->own_buf, req->w.ch.geometry.slot_size);
            if (bigger) {
                req->own_buf = bigger;
                req->own_cap = req->w.ch.geometry.slot_size;
            }
        }
    }
    req->repliers = shmi_registry_count(&req->w.ch.registry, SHMI_ROLE_KEEPER);
}

int shmc_req_send(shmc_req_t *req, const void *data, size_t len, int64_t timeout_ns)
{
    if (!req || (!data && len)) return SHMC_EINVAL;
    if (req->w.detached) return SHMC_ECLOSED;
    if (len > req->w.ch.geometry.slot_size) return SHMC_EMSGSIZE;
    req_give_up(req);
    req_check_service(req);
    shmi_channel_t *ch = &req->w.ch;
    if (atomic_load_explicit(&ch->header->state, memory_order_acquire) != SHMI_STATE_READY) {
        req->next_slow_check = 0;
        return SHMC_ECLOSED;
    }
    if (req->repliers == 0) { /* no replier at the last check: look again next time */
        req->next_slow_check = 0;
        return SHMC_EPEERDEAD;
    }
    if (++req->counter >> COUNTER_BITS) { /* ids of this ticket used up: take another */
        req->ticket = atomic_fetch_add_explicit(&ch->header->tickets, 1, memory_order_relaxed) + 1;
        req->counter = 1;
    }
    uint64_t id = ((req->ticket << COUNTER_BITS) | req->counter) & ((1ull << 54) - 1);
    if (id == 0) id = 1;
    shmi_mailbox_t *mb = own_mailbox(req);
    /* Expect the reply before the request can be taken: the writer's release publish orders this
     * store before any replier's acquire of the request. */
    atomic_store_explicit(&mb->word, mb_word(id, MB_NOBODY, MB_EXPECT), memory_order_relaxed);
    int rc = shmi_writer_claim(&req->w, timeout_ns);
    if (rc) {
        atomic_store_explicit(&mb->word, mb_word(0, 0, MB_IDLE), memory_order_relaxed);
        return rc;
    }
    uint64_t pos = req->w.claimed_pos;
    shmi_slot_t *slot = shmi_ring_slot(&ch->ring, pos);
    atomic_store_explicit(&slot->route, req->w.index, memory_order_relaxed);
    atomic_store_explicit(&slot->tag, id, memory_order_relaxed);
    if (len) shmi_ring_copy_in(shmi_ring_payload(&ch->ring, pos), data, len);
    shmi_writer_publish(&req->w, pos, (uint32_t)len);
    req->pending = id;
    return 0;
}

static int req_try_reply(void *ctx)
{
    shmc_req_t *req = ctx;
    shmi_mailbox_t *mb = own_mailbox(req);
    /* Acquire: pairs with the replier's release of READY (payload and len complete). */
    uint64_t word = atomic_load_explicit(&mb->word, memory_order_acquire);
    if (mb_id(word) != req->pending) return SHMC_EBADSEG; /* only we change the id: corrupt */
    if (mb_state(word) != MB_READY) return SHMC_EAGAIN;
    uint32_t len = atomic_load_explicit(&mb->len, memory_order_relaxed);
    if (len > req->w.ch.geometry.slot_size) len = req->w.ch.geometry.slot_size;
    req->len = len;
    if (len > req->cap) return SHMC_ETRUNC;
    if (len) memcpy(req->buf, mailbox_payload(mb), len);
    atomic_store_explicit(&mb->word, mb_word(0, 0, MB_IDLE), memory_order_relaxed);
    req->pending = 0;
    req->replies++;
    return 0;
}

/* While waiting for a reply: fail fast when the replier holding our request, or every replier, is
 * dead, or the service was closed. */
static int req_maintain(void *ctx)
{
    shmc_req_t *req = ctx;
    shmi_channel_t *ch = &req->w.ch;
    shmi_registry_heartbeat(&ch->registry, req->w.index);
    shmi_mailbox_t *mb = own_mailbox(req);
    uint64_t word = atomic_load_explicit(&mb->word, memory_order_acquire);
    uint32_t owner = mb_owner(word);
    int rc = 0;
    /* By role too: a dead replier's entry may have been reaped and taken by a requester. */
    if ((mb_state(word) == MB_EXPECT || mb_state(word) == MB_WRITING) && owner != MB_NOBODY &&
        (owner == MB_DEAD || shmi_registry_live_role(&ch->registry, owner) != SHMI_ROLE_KEEPER))
        rc = SHMC_EPEERDEAD;
    uint64_t now = shmi_now_ns();
    if (!rc && now >= req->next_slow_check) {
        req->next_slow_check = now + SHMI_SLOW_CHECK_NS;
        if (atomic_load_explicit(&ch->header->state, memory_order_acquire) != SHMI_STATE_READY)
            rc = SHMC_ECLOSED;
        else if (shmi_registry_count(&ch->registry, SHMI_ROLE_KEEPER) == 0)
            rc = SHMC_EPEERDEAD;
    }
    /* A replier that answered, then died or closed, did so after storing READY: look once more,
     * now that the verdict is in, so a reply already there is never thrown away. */
    if (rc && mb_state(atomic_load_explicit(&mb->word, memory_order_acquire)) == MB_READY) rc = 0;
    return rc;
}

int shmc_req_recv(shmc_req_t *req, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    if (!req || !len || (!buf && cap)) return SHMC_EINVAL;
    if (req->w.detached) return SHMC_ECLOSED;
    if (!req->pending) return SHMC_ESEQUENCE;
    req->buf = buf ? buf : (void *)req;
    req->cap = buf ? cap : 0;
    int rc = shmi_wait(&own_mailbox(req)->wait, req_try_reply, req_maintain, req, timeout_ns,
                       req->spin_ns);
    /* A requester that only polls (timeout 0) never waits, so look after it here now and then. */
    if (rc == SHMC_EAGAIN && ++req->idle_polls % SHMI_IDLE_POLLS_PER_CHECK == 0) {
        int verdict = req_maintain(req);
        if (verdict) rc = verdict;
    }
    if (rc == 0 || rc == SHMC_ETRUNC) *len = req->len;
    if (rc == SHMC_EPEERDEAD || rc == SHMC_ECLOSED || rc == SHMC_EBADSEG) {
        req_give_up(req);
        req->next_slow_check = 0; /* the next send looks for a restarted replier at once */
    }
    return rc;
}

int64_t shmc_req_next(shmc_req_t *req, int64_t timeout_ns)
{
    if (!req) return SHMC_EINVAL;
    size_t len = 0;
    int rc = shmc_req_recv(req, req->own_buf, req->own_cap, &len, timeout_ns);
    return rc ? rc : (int64_t)len;
}

int shmc_req_buffer(shmc_req_t *req, const void **buf, size_t *cap)
{
    if (!req || !buf || !cap) return SHMC_EINVAL;
    *buf = req->own_buf;
    *cap = req->own_cap;
    return 0;
}

int64_t shmc_req_request(shmc_req_t *req, const void *data, size_t len, int64_t timeout_ns)
{
    uint64_t deadline = timeout_ns > 0 ? shmi_now_ns() + (uint64_t)timeout_ns : 0;
    int rc = shmc_req_send(req, data, len, timeout_ns);
    if (rc == SHMC_ETIMEDOUT) return SHMC_EAGAIN; /* the request queue stayed full */
    if (rc) return rc;
    int64_t left = timeout_ns;
    if (timeout_ns > 0) {
        uint64_t now = shmi_now_ns();
        left = now < deadline ? (int64_t)(deadline - now) : 0;
    }
    int64_t n = shmc_req_next(req, left);
    if (n == SHMC_EAGAIN || n == SHMC_ETIMEDOUT) return SHMC_ETIMEDOUT; /* still pending */
    return n; /* other failures gave the request up already */
}

int shmc_req_cancel(shmc_req_t *req)
{
    if (!req) return SHMC_EINVAL;
    if (req->w.detached) return SHMC_ECLOSED;
    req_give_up(req);
    return 0;
}

int shmc_req_stats(shmc_req_t *req, shmc_stats_t *s)
{
    if (!req || !s || s->size < sizeof *s) return SHMC_EINVAL;
    if (req->w.detached) return SHMC_ECLOSED;
    shmi_writer_stats(&req->w, s);
    s->received = req->replies;
    s->expired = req->expired;
    s->reconnects = req->reconnects;
    return 0;
}

int shmc_req_replier_alive(shmc_req_t *req)
{
    if (!req || req->w.detached) return 0;
    req->next_slow_check = 0;
    req_check_service(req);
    return shmi_registry_count(&req->w.ch.registry, SHMI_ROLE_KEEPER) > 0;
}

int shmc_req_close(shmc_req_t *req)
{
    if (!req) return 0;
    if (!req->w.detached) req_give_up(req);
    shmi_writer_leave(&req->w);
    shmi_channel_detach(&req->w.ch);
    free(req->own_buf);
    free(req);
    return 0;
}
