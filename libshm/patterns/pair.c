/*
 * PAIR: the ESHM two-way channel between a master and a slave.
 *
 * Each direction is a queue kept by its writer: the master keeps m2s and reads s2m, the slave keeps
 * s2m and reads m2s. In each queue the writer holds registry entry 0 and the reader entry 1
 * (shmi_registry_join_at), so a direction has exactly one writer and one reader, and a role is taken
 * by taking entry 0 of its queue: held by a live process, the role is taken; held by a dead one, it is
 * taken over, and the queue with it (adopted, not replaced: its reader goes on reading the same
 * queue, so nothing a dead writer wrote is skipped however fast writers die and restart). A queue is
 * removed by the last of its two sides to leave. Everything else is a primitive already: the
 * writer (claim, wait for room, reap), the competing reader (a message a dead reader held is given
 * back; a restarted writer is followed once its old queue is drained, so nothing it wrote is lost),
 * the registry (pid + start time liveness, heartbeats). PAIR's own parts: the fixed places, the
 * heartbeat thread, the view of the remote (connected, stale, gone) and the disconnect policy.
 */
#include "../primitives/reader.h"
#include "../primitives/writer.h"
#include "shmcomm.h"

#include <stdlib.h>
#include <string.h>

#define WRITER_PLACE SHMI_WRITER_PLACE
#define READER_PLACE 1u
#define PAIR_PEERS 2u
#define CHECK_NS 10000000ll /* the remote's state is looked at this often at most (10 ms) */

struct shmc_pair {
    shmi_writer_t out; /* this side's direction, kept by us */
    shmi_reader_t in;  /* the remote's direction, read by us */
    int in_open;
    uint32_t role;
    shmc_pair_options_t o;
    uint32_t in_pattern;
    char in_os_name[SHMI_OS_NAME_CAP];
    /* The remote as last seen. */
    uint32_t remote_state;     /* enum shmc_remote_state */
    int ever_seen;
    int32_t remote_pid;        /* with remote_start: its identity, to count reconnections */
    uint64_t remote_start;
    uint64_t remote_heartbeat; /* shmi_now_ns() of its last heartbeat */
    uint64_t gone_since;       /* when it was found gone or stale; 0 while connected */
    uint64_t attempts, reconnections;
    uint64_t next_check, next_attempt;
    /* The heartbeat thread: beats our writer entry every beat_ns until `stop`. */
    shmi_thread_t *beater;
    _Atomic uint32_t stop;
    int64_t beat_ns;
};

void shmc_pair_options_init(shmc_pair_options_t *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
    o->role = SHMC_PAIR_AUTO;
    o->num_slots = 64;
    o->slot_size = 4096;
    o->disconnect = SHMC_DISCONNECT_ON_TIMEOUT;
    o->spin_us = 50;
    o->max_reconnect_attempts = 50;
    o->stale_threshold_ns = 100000000ll;
    o->reconnect_wait_ns = 5000000000ll;
    o->reconnect_retry_interval_ns = 100000000ll;
}

static int options_valid(const shmc_pair_options_t *o)
{
    return o->role <= SHMC_PAIR_AUTO && o->disconnect <= SHMC_DISCONNECT_NEVER &&
           (o->flags & ~(uint32_t)(SHMC_SHARE_GROUP | SHMC_SHARE_ALL | SHMC_PAIR_NO_HEARTBEAT_THREAD)) == 0 &&
           o->spin_us <= 1000000 && o->stale_threshold_ns > 0 && o->reconnect_wait_ns >= 0 &&
           o->reconnect_retry_interval_ns > 0;
}

static int join_reader(void *ctx, shmi_channel_t *ch, uint32_t *index)
{
    (void)ctx;
    *index = READER_PLACE;
    return shmi_registry_join_at(&ch->registry, READER_PLACE, SHMI_ROLE_FOLLOWER, UINT64_MAX,
                                 shmi_recover_claims_of, ch);
}

/* Takes entry 0 of the queue of `role` (creating, joining or replacing it). */
static int open_side(shmc_pair_t *p, const char *name, uint32_t role)
{
    char os_name[SHMI_OS_NAME_CAP];
    uint32_t pattern = role == SHMC_PAIR_MASTER ? SHMC_PATTERN_PAIR_M2S : SHMC_PATTERN_PAIR_S2M;
    int rc = shmi_make_os_name(name, pattern, os_name, sizeof os_name);
    if (rc) return rc;
    /* One writer per queue, at its fixed place: claims need no locked instruction. */
    shmi_geometry_t g = {.pattern = pattern, .num_slots = p->o.num_slots, .slot_size = p->o.slot_size,
                         .max_peers = PAIR_PEERS, .flags = SHMC_SINGLE_WRITER};
    shmi_geometry_choose_pool(&g);
    rc = shmi_geometry_check(&g);
    if (rc) return rc;
    rc = shmi_keeper_open_at(&p->out.ch, os_name, name, &g, shmi_mode_for(p->o.flags), WRITER_PLACE,
                             &p->out.index);
    /* Another geometry is only possible while the live holder of the role keeps its queue. */
    if (rc == SHMC_EMISMATCH) rc = SHMC_EPEERS;
    if (rc) return rc;
    shmi_writer_init(&p->out);
    p->out.role = SHMI_ROLE_KEEPER;
    p->role = role;
    p->in_pattern = role == SHMC_PAIR_MASTER ? SHMC_PATTERN_PAIR_S2M : SHMC_PATTERN_PAIR_M2S;
    return shmi_make_os_name(name, p->in_pattern, p->in_os_name, sizeof p->in_os_name);
}

/* One attempt to attach to the remote's queue (it may not exist yet). */
static void attach_in(shmc_pair_t *p)
{
    if (shmi_follower_open(&p->in.ch, p->in_os_name, p->in_pattern, 0, join_reader, p, &p->in.index))
        return;
    if (shmi_reader_setup(&p->in, SHMI_ROLE_FOLLOWER, (int64_t)p->o.spin_us * 1000, shmi_reader_take,
                          join_reader)) {
        shmi_reader_close(&p->in);
        memset(&p->in, 0, sizeof p->in);
        return;
    }
    p->in_open = 1;
    p->next_check = 0; /* look at the remote at the next opportunity */
}

/* Reads the writer entry of a queue: 1 with the writer's identity and heartbeat if it lives. One load
 * of the owner word: the identity and the liveness verdict are of the same process. */
static int live_writer(shmi_channel_t *ch, int32_t *pid, uint64_t *start, uint64_t *heartbeat)
{
    shmi_peer_t *e = &ch->registry.peers[WRITER_PLACE];
    uint64_t owner = atomic_load_explicit(&e->owner, memory_order_acquire);
    if (!owner || shmi_owner_role(owner) != SHMI_ROLE_KEEPER) return 0;
    /* Acquire on the owner: a start time read after it is this owner's (or 0, not stored yet). */
    *pid = shmi_owner_pid(owner);
    *start = atomic_load_explicit(&e->start_time, memory_order_acquire);
    *heartbeat = atomic_load_explicit(&e->heartbeat_ns, memory_order_relaxed);
    return shmi_process_alive(*pid, *start);
}

/* The remote is the writer of the queue we read; or, when that writer is gone and a new generation
 * holds the name (a restarted remote we have not moved to yet, because its predecessor's queue still
 * has messages for us), the writer of that one. */
static int find_remote(shmc_pair_t *p, int32_t *pid, uint64_t *start, uint64_t *heartbeat)
{
    if (!p->in_open) return 0;
    if (live_writer(&p->in.ch, pid, start, heartbeat)) return 1;
    if (shmi_seg_is_current(&p->in.ch.seg, p->in_os_name)) return 0;
    shmi_channel_t fresh;
    if (shmi_channel_attach(&fresh, p->in_os_name, p->in_pattern, 1) != 0) return 0;
    int alive = live_writer(&fresh, pid, start, heartbeat);
    shmi_channel_detach(&fresh);
    return alive;
}

/* Looks at the remote (at most every CHECK_NS unless forced), attaching or following a restarted one
 * at most every reconnect_retry_interval, and returns its state. */
static uint32_t check_remote(shmc_pair_t *p, int force)
{
    uint64_t now = shmi_now_ns();
    if (!force && now < p->next_check) return p->remote_state;
    p->next_check = now + (uint64_t)CHECK_NS;
    /* Every call beats too, so a side without the heartbeat thread is fresh while it makes calls. */
    atomic_store_explicit(&p->out.ch.registry.peers[p->out.index].heartbeat_ns, now, memory_order_relaxed);
    int attempted = 0;
    if (!p->in_open || now >= p->next_attempt) {
        p->next_attempt = now + (uint64_t)p->o.reconnect_retry_interval_ns;
        if (!p->in_open) attach_in(p);
        else shmi_reader_keeper_alive(&p->in); /* follows a restarted remote once drained */
        attempted = 1;
    }
    int32_t pid = 0;
    uint64_t start = 0, heartbeat = 0;
    uint32_t state;
    if (find_remote(p, &pid, &start, &heartbeat)) {
        /* A joining process names itself before it stores its start time (0 meanwhile): a start
         * time of 0 is "not known yet", never a new identity. */
        const int same_pid = pid == p->remote_pid;
        const int other = !same_pid || (start && p->remote_start && start != p->remote_start);
        if (p->ever_seen && other) p->reconnections++;
        if (!same_pid || start) p->remote_start = start;
        p->ever_seen = 1;
        p->remote_pid = pid;
        p->remote_heartbeat = heartbeat;
        /* The heartbeat is another process's clock reading of the same monotonic clock: it may be a
         * little ahead of ours. */
        int fresh = heartbeat >= now || now - heartbeat <= (uint64_t)p->o.stale_threshold_ns;
        state = fresh ? SHMC_REMOTE_CONNECTED : SHMC_REMOTE_STALE;
    } else {
        state = p->ever_seen ? SHMC_REMOTE_GONE : SHMC_REMOTE_NONE;
    }
    if (state == SHMC_REMOTE_CONNECTED || state == SHMC_REMOTE_NONE) {
        p->gone_since = 0;
        p->attempts = 0;
    } else {
        if (!p->gone_since) p->gone_since = now;
        else if (attempted) p->attempts++;
        const uint32_t max = p->o.max_reconnect_attempts;
        if (p->o.disconnect == SHMC_DISCONNECT_ON_TIMEOUT &&
            (now - p->gone_since >= (uint64_t)p->o.reconnect_wait_ns || (max && p->attempts >= max)))
            state = SHMC_REMOTE_GAVE_UP;
    }
    p->remote_state = state;
    return state;
}

/* The disconnect policy: SHMC_EPEERDEAD when the remote is gone and the behaviour says to fail. */
static int policy(shmc_pair_t *p)
{
    uint32_t state = check_remote(p, 0);
    if (state == SHMC_REMOTE_GAVE_UP) return SHMC_EPEERDEAD;
    if ((state == SHMC_REMOTE_GONE || state == SHMC_REMOTE_STALE) &&
        p->o.disconnect == SHMC_DISCONNECT_IMMEDIATELY)
        return SHMC_EPEERDEAD;
    return 0;
}

/* One step of an operation that may wait: 0 or an error ends it; SHMC_EAGAIN/SHMC_ETIMEDOUT, not yet. */
typedef int (*step_fn)(shmc_pair_t *p, void *ctx, int64_t slice_ns);

/* Runs `step` in slices of at most CHECK_NS until it succeeds, fails, the policy says the remote is
 * gone for good, or timeout_ns (0: one attempt, negative: forever) runs out. Every call looks at the
 * remote once first (rate-limited: a clock read), so a remote that is only read from is noted too;
 * a write (`policy_first`) fails there already when the remote is gone and the policy says so: with
 * IMMEDIATELY, writing to a remote known gone fails even with room. */
static int wait_in_slices(shmc_pair_t *p, step_fn step, void *ctx, int64_t timeout_ns, int policy_first)
{
    int rc = policy(p);
    if (rc && policy_first) return rc;
    const uint64_t deadline = timeout_ns > 0 ? shmi_now_ns() + (uint64_t)timeout_ns : 0;
    for (;;) {
        int64_t slice = timeout_ns < 0 ? CHECK_NS : 0;
        if (timeout_ns > 0) {
            uint64_t now = shmi_now_ns();
            int64_t left = now < deadline ? (int64_t)(deadline - now) : 0;
            slice = left < CHECK_NS ? left : CHECK_NS;
        }
        rc = step(p, ctx, slice);
        if (rc != SHMC_EAGAIN && rc != SHMC_ETIMEDOUT) return rc;
        rc = policy(p);
        if (rc) return rc;
        if (timeout_ns == 0) return SHMC_EAGAIN;
        if (timeout_ns > 0 && shmi_now_ns() >= deadline) return SHMC_ETIMEDOUT;
    }
}

static void heartbeat_loop(void *arg)
{
    shmc_pair_t *p = arg;
    while (!atomic_load_explicit(&p->stop, memory_order_acquire)) {
        shmi_registry_heartbeat(&p->out.ch.registry, p->out.index);
        shmi_futex_wait(&p->stop, 0, p->beat_ns);
    }
}

int shmc_pair_open(const char *name, const shmc_pair_options_t *opts, shmc_pair_t **out)
{
    if (!out) return SHMC_EINVAL;
    *out = NULL;
    shmc_pair_t *p = calloc(1, sizeof *p);
    if (!p) return SHMC_ENOMEM;
    shmc_pair_options_init(&p->o);
    int rc = shmi_copy_options(&p->o, sizeof p->o, opts, sizeof p->o);
    if (rc == 0 && !options_valid(&p->o)) rc = SHMC_EINVAL;
    if (rc == 0 && !name) rc = SHMC_EINVAL;
    if (rc == 0) {
        rc = open_side(p, name, p->o.role == SHMC_PAIR_SLAVE ? SHMC_PAIR_SLAVE : SHMC_PAIR_MASTER);
        if (rc == SHMC_EPEERS && p->o.role == SHMC_PAIR_AUTO) rc = open_side(p, name, SHMC_PAIR_SLAVE);
    }
    if (rc) {
        free(p);
        return rc;
    }
    attach_in(p);
    check_remote(p, 1);
    if (!(p->o.flags & SHMC_PAIR_NO_HEARTBEAT_THREAD)) {
        /* A quarter of the stale threshold: three beats may be late before the remote sees us stale. */
        p->beat_ns = p->o.stale_threshold_ns / 4;
        if (p->beat_ns < 1000000) p->beat_ns = 1000000;
        p->beater = shmi_thread_start(heartbeat_loop, p);
        if (!p->beater) {
            shmc_pair_close(p);
            return SHMC_ENOMEM;
        }
    }
    *out = p;
    return 0;
}

int shmc_pair_role(shmc_pair_t *p) { return p ? (int)p->role : SHMC_EINVAL; }

static int usable(shmc_pair_t *p) { return !p ? SHMC_EINVAL : p->out.detached ? SHMC_ECLOSED : 0; }

struct send_args {
    const void *data;
    size_t len;
    const uint64_t *lens;
    size_t count, done, done_bytes, *sent;
};

static int write_step(shmc_pair_t *p, void *ctx, int64_t slice_ns)
{
    struct send_args *a = ctx;
    return shmi_writer_send(&p->out, a->data, a->len, slice_ns);
}

int shmc_pair_write(shmc_pair_t *p, const void *data, size_t len, int64_t timeout_ns)
{
    int rc = usable(p);
    if (rc || (!data && len)) return rc ? rc : SHMC_EINVAL;
    struct send_args a = {data, len, NULL, 0, 0, 0, NULL};
    return wait_in_slices(p, write_step, &a, timeout_ns, 1);
}

int shmc_pair_try_write(shmc_pair_t *p, const void *data, size_t len)
{
    return shmc_pair_write(p, data, len, 0);
}

static int write_many_step(shmc_pair_t *p, void *ctx, int64_t slice_ns)
{
    struct send_args *a = ctx;
    size_t sent = 0;
    int rc = shmi_writer_send_many(&p->out, (const unsigned char *)a->data + a->done_bytes,
                                   a->lens + a->done, a->count - a->done, &sent, slice_ns);
    for (size_t i = 0; i < sent; i++) a->done_bytes += a->lens[a->done + i];
    a->done += sent;
    *a->sent = a->done;
    return rc;
}

int shmc_pair_write_many(shmc_pair_t *p, const void *data, const uint64_t *lens, size_t count,
                         size_t *sent, int64_t timeout_ns)
{
    int rc = usable(p);
    if (rc || !sent || (count && (!data || !lens))) return rc ? rc : SHMC_EINVAL;
    *sent = 0;
    struct send_args a = {data, 0, lens, count, 0, 0, sent};
    return wait_in_slices(p, write_many_step, &a, timeout_ns, 1);
}

struct recv_args {
    void *buf;
    size_t cap, *len, *lens, max, *count;
    int64_t size;
};

/* Waiting for the remote's queue to appear: a short pause (the remote may come any moment). */
static int absent_step(shmc_pair_t *p, int64_t slice_ns)
{
    attach_in(p);
    if (p->in_open) return 1;
    if (slice_ns > 0) shmi_pause_ns(slice_ns < 1000000 ? slice_ns : 1000000);
    return 0;
}

static int read_step(shmc_pair_t *p, void *ctx, int64_t slice_ns)
{
    struct recv_args *a = ctx;
    if (!p->in_open && !absent_step(p, slice_ns)) return SHMC_EAGAIN;
    return shmi_reader_receive(&p->in, a->buf, a->cap, a->len, slice_ns);
}

static int next_step(shmc_pair_t *p, void *ctx, int64_t slice_ns)
{
    struct recv_args *a = ctx;
    if (!p->in_open && !absent_step(p, slice_ns)) return SHMC_EAGAIN;
    a->size = shmi_reader_next(&p->in, slice_ns);
    return a->size >= 0 ? 0 : (int)a->size;
}

static int read_many_step(shmc_pair_t *p, void *ctx, int64_t slice_ns)
{
    struct recv_args *a = ctx;
    if (!p->in_open && !absent_step(p, slice_ns)) return SHMC_EAGAIN;
    return shmi_reader_receive_many(&p->in, a->buf, a->cap, a->lens, a->max, a->count, slice_ns);
}

int shmc_pair_read(shmc_pair_t *p, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    int rc = usable(p);
    if (rc || !len || (!buf && cap)) return rc ? rc : SHMC_EINVAL;
    struct recv_args a = {buf, cap, len, NULL, 0, NULL, 0};
    return wait_in_slices(p, read_step, &a, timeout_ns, 0);
}

int64_t shmc_pair_next(shmc_pair_t *p, int64_t timeout_ns)
{
    int rc = usable(p);
    if (rc) return rc;
    struct recv_args a = {NULL, 0, NULL, NULL, 0, NULL, 0};
    rc = wait_in_slices(p, next_step, &a, timeout_ns, 0);
    return rc ? rc : a.size;
}

int shmc_pair_buffer(shmc_pair_t *p, const void **buf, size_t *cap)
{
    int rc = usable(p);
    if (rc || !buf || !cap) return rc ? rc : SHMC_EINVAL;
    /* Before the remote attaches there is no buffer yet: attach now if it can be done. */
    if (!p->in_open) attach_in(p);
    *buf = p->in_open ? p->in.own_buf : NULL;
    *cap = p->in_open ? p->in.own_cap : 0;
    return 0;
}

int shmc_pair_read_many(shmc_pair_t *p, void *buf, size_t cap, size_t *lens, size_t max, size_t *count,
                        int64_t timeout_ns)
{
    int rc = usable(p);
    if (rc || !buf || !lens || !count || max == 0) return rc ? rc : SHMC_EINVAL;
    *count = 0;
    struct recv_args a = {buf, cap, NULL, lens, max, count, 0};
    return wait_in_slices(p, read_many_step, &a, timeout_ns, 0);
}

int shmc_pair_remote_alive(shmc_pair_t *p)
{
    if (usable(p)) return 0;
    return check_remote(p, 1) == SHMC_REMOTE_CONNECTED;
}

int shmc_pair_heartbeat(shmc_pair_t *p)
{
    int rc = usable(p);
    if (rc) return rc;
    shmi_registry_heartbeat(&p->out.ch.registry, p->out.index);
    return 0;
}

static uint64_t count_at(shmi_channel_t *ch, uint32_t place)
{
    return atomic_load_explicit(&ch->registry.peers[place].count, memory_order_relaxed);
}

int shmc_pair_stats(shmc_pair_t *p, shmc_pair_stats_t *s)
{
    int rc = usable(p);
    if (rc || !s || s->size < sizeof *s) return rc ? rc : SHMC_EINVAL;
    uint32_t state = check_remote(p, 1);
    uint64_t now = shmi_now_ns();
    memset(s, 0, sizeof *s);
    s->size = sizeof *s;
    s->role = p->role;
    s->remote_state = state;
    uint64_t own_beat = atomic_load_explicit(&p->out.ch.registry.peers[p->out.index].heartbeat_ns,
                                             memory_order_relaxed);
    uint64_t own_age = now > own_beat ? now - own_beat : 0;
    int32_t remote_pid = p->ever_seen ? p->remote_pid : 0;
    int32_t remote_alive = state == SHMC_REMOTE_CONNECTED;
    uint64_t remote_age = !p->ever_seen ? UINT64_MAX
                          : now > p->remote_heartbeat ? now - p->remote_heartbeat : 0;
    /* Our queue: we wrote entry 0's count, the remote read entry 1's; the remote's queue the reverse. */
    uint64_t out_writes = count_at(&p->out.ch, WRITER_PLACE), out_reads = count_at(&p->out.ch, READER_PLACE);
    uint64_t in_writes = p->in_open ? count_at(&p->in.ch, WRITER_PLACE) : 0;
    uint64_t in_reads = p->in_open ? p->in.received : 0;
    if (p->role == SHMC_PAIR_MASTER) {
        s->master_pid = shmi_pid(), s->slave_pid = remote_pid;
        s->master_alive = 1, s->slave_alive = remote_alive;
        s->master_heartbeat_age_ns = own_age, s->slave_heartbeat_age_ns = remote_age;
        s->m2s_write_count = out_writes, s->m2s_read_count = out_reads;
        s->s2m_write_count = in_writes, s->s2m_read_count = in_reads;
    } else {
        s->slave_pid = shmi_pid(), s->master_pid = remote_pid;
        s->slave_alive = 1, s->master_alive = remote_alive;
        s->slave_heartbeat_age_ns = own_age, s->master_heartbeat_age_ns = remote_age;
        s->s2m_write_count = out_writes, s->s2m_read_count = out_reads;
        s->m2s_write_count = in_writes, s->m2s_read_count = in_reads;
    }
    s->drops = p->in_open ? p->in.dropped : 0;
    s->reconnections = p->reconnections;
    s->reconnect_attempts = p->attempts;
    s->remote_gone_ns = p->gone_since && now > p->gone_since ? now - p->gone_since : 0;
    return 0;
}

/* Leaves `place` of queue `ch`; the last of its two sides to leave removes it. A queue whose other
 * side is still there stays: its reader reads what is queued, and the next process of the writer's
 * role adopts it (see shmi_keeper_open_at). */
static void leave_queue(shmi_channel_t *ch, uint32_t place, uint32_t other)
{
    shmi_registry_leave(&ch->registry, place);
    /* Both sides may leave at once: each stores its leave, then looks at the other place. The fence
     * orders the two (a store-load pair), so at least one of them sees the other gone and removes it. */
    atomic_thread_fence(memory_order_seq_cst);
    if (!shmi_registry_live_role(&ch->registry, other)) shmi_channel_close_if_last(ch, SHMI_ROLE_KEEPER);
}

int shmc_pair_close(shmc_pair_t *p)
{
    if (!p) return 0;
    if (p->beater) {
        /* Release: the thread that sees stop also sees everything before it; the wake ends its sleep. */
        atomic_store_explicit(&p->stop, 1, memory_order_release);
        shmi_futex_wake_all(&p->stop);
        shmi_thread_join(p->beater);
    }
    p->out.detached = 1;
    leave_queue(&p->out.ch, WRITER_PLACE, READER_PLACE);
    shmi_channel_detach(&p->out.ch);
    if (p->in_open) {
        p->in.detached = 1;
        leave_queue(&p->in.ch, READER_PLACE, WRITER_PLACE);
        shmi_reader_close(&p->in);
    }
    free(p);
    return 0;
}
