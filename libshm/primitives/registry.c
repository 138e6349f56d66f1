#include "registry.h"

#include "../platform/platform.h"
#include "shmcomm.h"

/* The process identity is read once: /proc is not free, and it cannot change. */
static uint64_t own_start_time(void)
{
    static _Atomic uint64_t cached;
    static _Atomic int32_t cached_pid;
    int32_t pid = shmi_pid();
    /* Re-read after fork(): the child has another pid and start time. */
    if (atomic_load_explicit(&cached_pid, memory_order_acquire) != pid) {
        atomic_store_explicit(&cached, shmi_process_start_time(pid), memory_order_relaxed);
        atomic_store_explicit(&cached_pid, pid, memory_order_release);
    }
    return atomic_load_explicit(&cached, memory_order_relaxed);
}

static int entry_alive(shmi_peer_t *p, uint64_t owner)
{
    if (owner == 0) return 0;
    if (shmi_owner_role(owner) == SHMI_ROLE_REAPING) return 0;
    return shmi_process_alive(shmi_owner_pid(owner),
                              atomic_load_explicit(&p->start_time, memory_order_acquire));
}

/* Reaps entry i if its process is dead; with `free_too`, also runs on_reap for a free entry (claims
 * that name an index nobody holds), holding it REAPING meanwhile so nobody joins there. */
static int try_reap(shmi_registry_t *r, uint32_t i, shmi_reap_fn on_reap, void *ctx, int free_too)
{
    shmi_peer_t *p = &r->peers[i];
    uint64_t owner = atomic_load_explicit(&p->owner, memory_order_acquire);
    if (owner == 0 ? !free_too : entry_alive(p, owner)) return 0;
    /* An entry that a live reaper is reaping is its reaper's until it frees it: a second reaper
     * that took it over would free it again after a new peer had joined it (and wipe that peer's
     * cursor). By pid alone: the start time in the entry is still the dead peer's. */
    if (shmi_owner_role(owner) == SHMI_ROLE_REAPING && shmi_process_alive(shmi_owner_pid(owner), 0))
        return 0;
    /* Mark the entry as being reaped by us, so that if we die here we are reaped in turn. */
    const uint64_t reaping = ((uint64_t)(uint32_t)shmi_pid() << 32) | SHMI_ROLE_REAPING;
    if (!atomic_compare_exchange_strong_explicit(&p->owner, &owner, reaping, memory_order_acq_rel,
                                                 memory_order_relaxed))
        return 0;
    if (on_reap) on_reap(ctx, i);
    atomic_store_explicit(&p->cursor, UINT64_MAX, memory_order_relaxed);
    /* The next joiner names itself before it stores its start time; until then its entry must
     * read as "start time unknown" (0), never as the dead peer's, or it would look dead. */
    atomic_store_explicit(&p->start_time, 0, memory_order_relaxed);
    /* Release: a joiner whose claim reads this 0 also sees the cursor and start time above. */
    atomic_store_explicit(&p->owner, 0, memory_order_release);
    return 1;
}

int shmi_registry_reap_one(shmi_registry_t *r, uint32_t index, shmi_reap_fn on_reap, void *ctx)
{
    return index < r->max_peers ? try_reap(r, index, on_reap, ctx, 1) : 0;
}

uint32_t shmi_registry_reap(shmi_registry_t *r, shmi_reap_fn on_reap, void *ctx)
{
    uint32_t reaped = 0;
    for (uint32_t i = 0; i < r->max_peers; i++) reaped += (uint32_t)try_reap(r, i, on_reap, ctx, 0);
    return reaped;
}

/* Claims entry i for `me` if it is free: one CAS names us, the fields follow. 1 if claimed. */
static int claim(shmi_registry_t *r, uint32_t i, uint64_t me, uint64_t start_time, uint64_t cursor)
{
    shmi_peer_t *p = &r->peers[i];
    uint64_t expected = 0;
    if (atomic_load_explicit(&p->owner, memory_order_relaxed) != 0) return 0;
    if (!atomic_compare_exchange_strong_explicit(&p->owner, &expected, me, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return 0;
    /* A reader that sees the owner before the start time treats 0 as "unknown" and checks the pid
     * alone. */
    atomic_store_explicit(&p->start_time, start_time, memory_order_release);
    atomic_store_explicit(&p->cursor, cursor, memory_order_seq_cst);
    atomic_store_explicit(&p->count, 0, memory_order_relaxed);
    atomic_store_explicit(&p->dropped, 0, memory_order_relaxed);
    atomic_store_explicit(&p->heartbeat_ns, shmi_now_ns(), memory_order_relaxed);
    return 1;
}

static uint64_t own_owner_word(uint32_t role)
{
    return ((uint64_t)(uint32_t)shmi_pid() << 32) | role;
}

int shmi_registry_join(shmi_registry_t *r, uint32_t role, uint64_t cursor, shmi_reap_fn on_reap,
                       void *ctx, uint32_t *index)
{
    const uint64_t me = own_owner_word(role);
    const uint64_t start_time = own_start_time();
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = r->first_free; i < r->max_peers; i++) {
            if (claim(r, i, me, start_time, cursor)) {
                *index = i;
                return 0;
            }
        }
        if (pass == 0 && shmi_registry_reap(r, on_reap, ctx) == 0) break;
    }
    return SHMC_EPEERS;
}

int shmi_registry_join_at(shmi_registry_t *r, uint32_t index, uint32_t role, uint64_t cursor,
                          shmi_reap_fn on_reap, void *ctx)
{
    if (index >= r->max_peers) return SHMC_EINVAL;
    const uint64_t me = own_owner_word(role);
    const uint64_t start_time = own_start_time();
    if (claim(r, index, me, start_time, cursor)) return 0;
    /* Held: by a dead process (reap it, then claim), or by a live one (the place is taken). */
    try_reap(r, index, on_reap, ctx, 0);
    return claim(r, index, me, start_time, cursor) ? 0 : SHMC_EPEERS;
}

void shmi_registry_leave(shmi_registry_t *r, uint32_t index)
{
    if (index >= r->max_peers) return;
    shmi_peer_t *p = &r->peers[index];
    atomic_store_explicit(&p->cursor, UINT64_MAX, memory_order_release);
    atomic_store_explicit(&p->start_time, 0, memory_order_relaxed);
    atomic_store_explicit(&p->owner, 0, memory_order_seq_cst);
}

uint32_t shmi_registry_live_role(shmi_registry_t *r, uint32_t index)
{
    if (index >= r->max_peers) return 0;
    shmi_peer_t *p = &r->peers[index];
    uint64_t owner = atomic_load_explicit(&p->owner, memory_order_acquire);
    return entry_alive(p, owner) ? shmi_owner_role(owner) : 0;
}

uint32_t shmi_registry_count(shmi_registry_t *r, uint32_t role)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->max_peers; i++) {
        uint64_t owner = atomic_load_explicit(&r->peers[i].owner, memory_order_acquire);
        if (owner && shmi_owner_role(owner) == role && entry_alive(&r->peers[i], owner)) n++;
    }
    return n;
}

uint64_t shmi_registry_min_cursor(shmi_registry_t *r, uint32_t role)
{
    uint64_t min = UINT64_MAX;
    for (uint32_t i = 0; i < r->max_peers; i++) {
        uint64_t owner = atomic_load_explicit(&r->peers[i].owner, memory_order_seq_cst);
        if (!owner || shmi_owner_role(owner) != role) continue;
        uint64_t c = atomic_load_explicit(&r->peers[i].cursor, memory_order_seq_cst);
        if (c < min) min = c;
    }
    return min;
}

void shmi_registry_heartbeat(shmi_registry_t *r, uint32_t index)
{
    if (index < r->max_peers)
        atomic_store_explicit(&r->peers[index].heartbeat_ns, shmi_now_ns(), memory_order_relaxed);
}
