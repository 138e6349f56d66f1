#include "channel.h"

#include "waitword.h"
#include "shmcomm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t round_up(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

static int pooled(const shmi_geometry_t *g) { return (g->flags & SHMC_PAYLOAD_POOL) != 0; }

static uint32_t stride_for(const shmi_geometry_t *g)
{
    uint32_t header = pooled(g) ? SHMI_POOLED_SLOT_HEADER_BYTES : SHMI_SLOT_HEADER_BYTES;
    return (uint32_t)round_up((uint64_t)g->slot_size + header, SHMI_CACHE_LINE);
}

typedef struct offsets {
    uint64_t registry, ring, slots, mailboxes, extra, total;
} offsets_t;

uint32_t shmi_mailbox_stride(uint32_t slot_size)
{
    return (uint32_t)round_up((uint64_t)slot_size + SHMI_MAILBOX_HEADER_BYTES, SHMI_CACHE_LINE);
}

static offsets_t offsets_for(const shmi_geometry_t *g)
{
    offsets_t o;
    o.registry = SHMI_HEADER_BYTES;
    o.ring = o.registry + (uint64_t)g->max_peers * SHMI_PEER_BYTES;
    o.ring = round_up(o.ring, SHMI_CACHE_LINE);
    o.slots = o.ring + SHMI_RING_CTRL_BYTES;
    o.total = o.slots + (uint64_t)g->num_slots * stride_for(g);
    o.mailboxes = 0;
    if (g->pattern == SHMC_PATTERN_REQREP) { /* one reply mailbox per registry entry */
        o.mailboxes = o.total;
        o.total += (uint64_t)g->max_peers * shmi_mailbox_stride(g->slot_size);
    }
    o.extra = 0;
    if (g->extra_bytes) { /* the pattern's own region, last (STREAM) */
        o.extra = o.total;
        o.total += g->extra_bytes;
    }
    return o;
}

int shmi_geometry_check(const shmi_geometry_t *g)
{
    if (g->num_slots < 2 || g->num_slots > SHMI_MAX_SLOTS) return SHMC_EINVAL;
    if (g->slot_size < 1 || g->slot_size > SHMI_MAX_SLOT_SIZE) return SHMC_EINVAL;
    if (g->max_peers < 2 || g->max_peers > SHMI_MAX_PEERS) return SHMC_EINVAL;
    if (g->extra_bytes > SHMI_MAX_EXTRA_BYTES || g->extra_bytes % SHMI_CACHE_LINE) return SHMC_EINVAL;
    /* Each claim scans the whole pool (ring.c): small pools only. STREAM pins slots of its own. */
    if (pooled(g) && (g->num_slots > SHMI_POOL_MAX_SLOTS || g->pattern == SHMC_PATTERN_STREAM))
        return SHMC_EINVAL;
    offsets_t o = offsets_for(g);
    if (o.total > SHMI_MAX_SEGMENT_BYTES || o.total > (uint64_t)SIZE_MAX) return SHMC_EINVAL;
    return 0;
}

void shmi_geometry_choose_pool(shmi_geometry_t *g)
{
    /* Below this size a ring of num_slots slots fits in a core's cache anyway (measured in
     * docs/performance.md); two slots leave nothing to choose from. */
    if (g->pattern != SHMC_PATTERN_STREAM && g->slot_size >= SHMI_POOL_AUTO_BYTES && g->num_slots > 2 &&
        g->num_slots <= SHMI_POOL_MAX_SLOTS)
        g->flags |= SHMC_PAYLOAD_POOL;
}

/* Broadcast rings (every reader has a private cursor) for PUB/SUB and STREAM; every other pattern's
 * ring is a queue whose readers compete for each message. */
static int ring_is_competing(uint32_t pattern)
{
    switch (pattern) {
    case SHMC_PATTERN_PUBSUB:
    case SHMC_PATTERN_STREAM: return 0;
    default: return 1;
    }
}

static void bind_views(shmi_channel_t *ch)
{
    unsigned char *base = ch->seg.base;
    offsets_t o = offsets_for(&ch->geometry);
    ch->header = (shmi_header_t *)base;
    ch->registry.peers = (shmi_peer_t *)(base + o.registry);
    ch->registry.max_peers = ch->geometry.max_peers;
    const int single_writer = (ch->geometry.flags & SHMC_SINGLE_WRITER) != 0;
    /* A single-writer channel keeps registry entry 0 for its writer (SHMI_WRITER_PLACE). */
    ch->registry.first_free = single_writer ? 1 : 0;
    shmi_ring_init(&ch->ring, base + o.ring, base + o.slots, ch->geometry.num_slots,
                   ch->geometry.slot_size, stride_for(&ch->geometry),
                   ring_is_competing(ch->geometry.pattern), single_writer, pooled(&ch->geometry));
    ch->mailboxes = o.mailboxes ? base + o.mailboxes : NULL;
    ch->extra = o.extra ? base + o.extra : NULL;
}

int shmi_channel_create(shmi_channel_t *ch, const char *os_name, const char *channel_name,
                        const shmi_geometry_t *g, uint32_t mode)
{
    int rc = shmi_geometry_check(g);
    if (rc) return rc;
    memset(ch, 0, sizeof *ch);
    offsets_t o = offsets_for(g);
    rc = shmi_seg_create(os_name, (size_t)o.total, mode, &ch->seg);
    if (rc) return rc;
    ch->geometry = *g;
    snprintf(ch->os_name, sizeof ch->os_name, "%s", os_name);
    bind_views(ch);

    shmi_header_t *h = ch->header;
    h->layout_version = SHMC_LAYOUT_VERSION;
    h->pattern = g->pattern;
    h->segment_bytes = o.total;
    h->session_id = ch->session_id = shmi_random64();
    h->creator_pid = shmi_pid();
    h->creator_start_time = shmi_process_start_time(h->creator_pid);
    h->flags = g->flags;
    h->num_slots = g->num_slots;
    h->slot_size = g->slot_size;
    h->slot_stride = stride_for(g);
    h->max_peers = g->max_peers;
    h->registry_offset = o.registry;
    h->ring_offset = o.ring;
    h->slots_offset = o.slots;
    h->mailbox_offset = o.mailboxes;
    h->extra_offset = o.extra;
    h->extra_bytes = g->extra_bytes;
    snprintf(h->channel, sizeof h->channel, "%s", channel_name);
    for (uint32_t i = 0; i < g->max_peers; i++)
        atomic_store_explicit(&ch->registry.peers[i].cursor, UINT64_MAX, memory_order_relaxed);
    atomic_store_explicit(&h->state, SHMI_STATE_READY, memory_order_relaxed);
    /* Release: an attacher that reads the magic (acquire) sees the whole initialised header. */
    atomic_store_explicit(&h->magic, SHMI_MAGIC, memory_order_release);
    return 0;
}

int shmi_header_validate(const shmi_header_t *h, size_t mapped, uint32_t pattern,
                         shmi_geometry_t *out)
{
    if (mapped < SHMI_HEADER_BYTES) return SHMC_EBADSEG;
    uint64_t magic = atomic_load_explicit(&h->magic, memory_order_acquire);
    if (magic == 0) return SHMC_EAGAIN;
    if (magic != SHMI_MAGIC) return SHMC_EBADSEG;
    if (h->layout_version != SHMC_LAYOUT_VERSION) return SHMC_EVERSION;
    /* The pattern is part of the OS name: a header that disagrees with it is corrupt. */
    if (pattern && h->pattern != pattern) return SHMC_EBADSEG;
    shmi_geometry_t g = {h->pattern, h->num_slots, h->slot_size, h->max_peers, h->flags, h->extra_bytes};
    if (!shmi_pattern_prefix(g.pattern)) return SHMC_EBADSEG;
    if (shmi_geometry_check(&g)) return SHMC_EBADSEG;
    offsets_t o = offsets_for(&g);
    if (h->segment_bytes != o.total || o.total > mapped) return SHMC_EBADSEG;
    if (h->slot_stride != stride_for(&g) || h->registry_offset != o.registry ||
        h->ring_offset != o.ring || h->slots_offset != o.slots || h->mailbox_offset != o.mailboxes ||
        h->extra_offset != o.extra)
        return SHMC_EBADSEG;
    /* Only STREAM has a region of its own (stream.c validates what is inside). */
    if ((g.pattern == SHMC_PATTERN_STREAM) != (g.extra_bytes != 0)) return SHMC_EBADSEG;
    *out = g;
    return 0;
}

int shmi_channel_attach(shmi_channel_t *ch, const char *os_name, uint32_t pattern, int readonly)
{
    memset(ch, 0, sizeof *ch);
    int rc = shmi_seg_open(os_name, readonly, &ch->seg);
    if (rc) return rc;
    rc = shmi_header_validate(ch->seg.base, ch->seg.size, pattern, &ch->geometry);
    if (rc) {
        shmi_seg_close(&ch->seg);
        return rc;
    }
    snprintf(ch->os_name, sizeof ch->os_name, "%s", os_name);
    bind_views(ch);
    ch->session_id = ch->header->session_id;
    return 0;
}

int shmi_channel_attach_wait(shmi_channel_t *ch, const char *os_name, uint32_t pattern,
                             int64_t wait_ns)
{
    uint64_t deadline = shmi_now_ns() + (uint64_t)(wait_ns > 0 ? wait_ns : 0);
    for (;;) {
        int rc = shmi_channel_attach(ch, os_name, pattern, 0);
        if (rc != SHMC_EAGAIN || shmi_now_ns() >= deadline) return rc;
        _Atomic uint32_t never = 0;
        shmi_futex_wait(&never, 0, 1000000); /* 1 ms: the creator is sizing or filling the header */
    }
}

void shmi_channel_detach(shmi_channel_t *ch)
{
    shmi_seg_close(&ch->seg);
    for (size_t i = 0; i < ch->n_retired; i++) shmi_range_release(ch->retired[i]);
    free(ch->retired);
    ch->retired = NULL;
    ch->n_retired = 0;
    ch->header = NULL;
}

int shmi_channel_reserve_retired(shmi_channel_t *ch)
{
    shmi_range_t *retired = realloc(ch->retired, (ch->n_retired + 1) * sizeof *retired);
    if (!retired) return SHMC_ENOMEM;
    ch->retired = retired;
    return 0;
}

void shmi_channel_replace(shmi_channel_t *ch, uint32_t index, shmi_channel_t *fresh)
{
    shmi_registry_leave(&ch->registry, index);
    ch->retired[ch->n_retired++] = shmi_seg_retire(&ch->seg);
    fresh->retired = ch->retired;
    fresh->n_retired = ch->n_retired;
    *ch = *fresh;
}

/* Moves a READY or CLOSED channel to `to` (CLOSED or REPLACED), unlinks its name and wakes every
 * waiter, unless a live keeper is registered after the move. A keeper that joins concurrently saw the
 * old state and stays, so we count again after the CAS and hand the channel back to it (a joiner
 * re-checks the state after joining: one side always sees the other). Returns 1 if it moved. */
static int retire(shmi_channel_t *ch, uint32_t from, uint32_t to, uint32_t keeper_role)
{
    shmi_header_t *h = ch->header;
    if (!atomic_compare_exchange_strong_explicit(&h->state, &from, to, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return 0;
    if (from == SHMI_STATE_READY && shmi_registry_count(&ch->registry, keeper_role) > 0) {
        atomic_compare_exchange_strong_explicit(&h->state, &to, SHMI_STATE_READY,
                                                memory_order_seq_cst, memory_order_relaxed);
        return 0;
    }
    if (shmi_seg_is_current(&ch->seg, ch->os_name)) shmi_seg_unlink(ch->os_name);
    shmi_waitword_wake(&ch->ring.ctrl->data);
    shmi_waitword_wake(&ch->ring.ctrl->space);
    return 1;
}

int shmi_channel_close_if_last(shmi_channel_t *ch, uint32_t keeper_role)
{
    if (shmi_registry_count(&ch->registry, keeper_role) > 0) return 0;
    return retire(ch, SHMI_STATE_READY, SHMI_STATE_CLOSED, keeper_role);
}

int shmi_channel_is_stale(shmi_channel_t *ch, uint32_t keeper_role)
{
    shmi_header_t *h = ch->header;
    if (atomic_load_explicit(&h->state, memory_order_acquire) != SHMI_STATE_READY) return 1;
    if (shmi_registry_count(&ch->registry, keeper_role) > 0) return 0;
    return !shmi_process_alive(h->creator_pid, h->creator_start_time);
}

int shmi_channel_creator(const char *os_name, int32_t *pid, uint64_t *start_time)
{
    /* creator_pid and creator_start_time sit in the first cache line of the header, where every
     * layout version keeps them, and the creator writes them before the magic: enough to judge a
     * segment whose other fields we cannot trust or that was never finished. */
    shmi_segment_t seg;
    int rc = shmi_seg_open(os_name, 1, &seg);
    if (rc) return rc;
    *pid = 0;
    *start_time = 0;
    if (seg.size >= SHMI_CACHE_LINE) {
        const shmi_header_t *h = seg.base;
        *pid = h->creator_pid;
        *start_time = h->creator_start_time;
    }
    shmi_seg_close(&seg);
    return 0;
}

int shmi_channel_left_by_dead_creator(const char *os_name)
{
    int32_t pid;
    uint64_t start_time;
    if (shmi_channel_creator(os_name, &pid, &start_time) != 0 || pid == 0) return 0;
    return !shmi_process_alive(pid, start_time);
}

int shmi_channel_claim_replacement(shmi_channel_t *ch, uint32_t keeper_role)
{
    uint32_t state = atomic_load_explicit(&ch->header->state, memory_order_acquire);
    if (state == SHMI_STATE_REPLACED) return 0;
    return retire(ch, state, SHMI_STATE_REPLACED, keeper_role);
}
