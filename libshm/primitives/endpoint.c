#include "endpoint.h"

#include "shmcomm.h"

#include <string.h>

void shmi_pause_ns(int64_t ns)
{
    _Atomic uint32_t never = 0;
    shmi_futex_wait(&never, 0, ns);
}

int shmi_copy_options(void *into, size_t into_size, const void *from, size_t min_size)
{
    if (!from) return 0;
    uint32_t size;
    memcpy(&size, from, sizeof size);
    if (size < min_size || size > into_size) return SHMC_EINVAL;
    memcpy(into, from, size);
    memcpy(into, &(uint32_t){(uint32_t)into_size}, sizeof size);
    return 0;
}

int shmi_keeper_args(const char *name, uint32_t pattern, const shmc_pub_options_t *opts,
                     shmc_pub_options_t *o, uint32_t allowed, char *os_name, shmi_geometry_t *g)
{
    int rc = shmi_copy_options(o, sizeof *o, opts, sizeof(uint32_t) * 5);
    if (rc) return rc;
    if (o->reserved || (o->flags & ~allowed)) return SHMC_EINVAL;
    rc = shmi_make_os_name(name, pattern, os_name, SHMI_OS_NAME_CAP);
    if (rc) return rc;
    shmi_geometry_t geometry = {pattern, o->num_slots, o->slot_size, o->max_peers,
                                o->flags & (SHMC_LOSSLESS | SHMC_SINGLE_WRITER | SHMC_PAYLOAD_POOL), 0};
    *g = geometry;
    shmi_geometry_choose_pool(g);
    return shmi_geometry_check(g);
}

int shmi_follower_args(const char *name, uint32_t pattern, const shmc_sub_options_t *opts,
                       shmc_sub_options_t *o, char *os_name)
{
    int rc = shmi_copy_options(o, sizeof *o, opts, sizeof(uint32_t) * 2);
    if (rc) return rc;
    if (o->spin_us > 1000000) return SHMC_EINVAL;
    return shmi_make_os_name(name, pattern, os_name, SHMI_OS_NAME_CAP);
}

uint32_t shmi_mode_for(uint32_t flags)
{
    if (flags & SHMC_SHARE_ALL) return 0666;
    if (flags & SHMC_SHARE_GROUP) return 0660;
    return 0600;
}

void shmi_recover_claims_of(void *ctx, uint32_t index)
{
    shmi_channel_t *ch = ctx;
    shmi_ring_recover_owner(&ch->ring, index);
    if (ch->mailboxes) shmi_mailbox_forget(ch, index);
}

void shmi_recover_if_dead(shmi_channel_t *ch, uint64_t word)
{
    if (!shmi_word_busy(word)) return;
    uint32_t owner = shmi_word_owner(word);
    if (owner >= ch->geometry.max_peers) { /* no registry entry can name it: a corrupt word */
        shmi_ring_recover(&ch->ring, word);
        return;
    }
    /* Recovery goes through the reap of the owner's entry: while it is held REAPING no new peer can
     * join at that index, so the claims recovered are the dead owner's, never a newcomer's claim
     * that happens to read the same (an index is reused only after its claims were recovered). */
    shmi_registry_reap_one(&ch->registry, owner, shmi_recover_claims_of, ch);
}

/* Joins as a keeper at any free entry, or at entry `place` when it is not SHMI_ANY_PLACE. */
static int join_as_keeper(shmi_channel_t *ch, uint32_t place, uint32_t *index)
{
    int rc;
    if (place == SHMI_ANY_PLACE) {
        rc = shmi_registry_join(&ch->registry, SHMI_ROLE_KEEPER, UINT64_MAX, shmi_recover_claims_of,
                                ch, index);
    } else {
        rc = shmi_registry_join_at(&ch->registry, place, SHMI_ROLE_KEEPER, UINT64_MAX,
                                   shmi_recover_claims_of, ch);
        *index = place;
    }
    if (rc) return rc;
    /* The last keeper may have closed the channel while we joined: then start over. */
    if (atomic_load_explicit(&ch->header->state, memory_order_seq_cst) != SHMI_STATE_READY) {
        shmi_registry_leave(&ch->registry, *index);
        return SHMC_EAGAIN;
    }
    return 0;
}

/* One attempt to create or join the channel: 0 once joined, SHMC_EAGAIN to try again. */
static int keeper_try_open(shmi_channel_t *ch, const char *os_name, const char *name,
                           const shmi_geometry_t *g, uint32_t mode, uint32_t place, uint32_t *index)
{
    int rc = shmi_channel_create(ch, os_name, name, g, mode);
    if (rc == SHMC_EEXIST) {
        rc = shmi_channel_attach_wait(ch, os_name, g->pattern, 2000000000ll);
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
        const shmi_geometry_t *have = &ch->geometry;
        const int same = have->num_slots == g->num_slots && have->slot_size == g->slot_size &&
                         have->flags == g->flags && have->max_peers == g->max_peers;
        /* A channel with fixed places (PAIR) whose keeper died is adopted, not replaced, while it is
         * open and has the same geometry: its reader goes on reading the same queue, so nothing the
         * dead keeper wrote can be skipped, however fast keepers die and restart (a replacement is
         * only found by name, and a reader that has not moved yet would miss a generation that was
         * itself replaced meanwhile). The join at the place reaps the dead keeper first. */
        const int adopt = place != SHMI_ANY_PLACE && same &&
                          atomic_load_explicit(&ch->header->state, memory_order_acquire) == SHMI_STATE_READY;
        if (!adopt && shmi_channel_is_stale(ch, SHMI_ROLE_KEEPER)) {
            /* Every keeper is dead, or the channel is closing: replace it with a new generation. */
            shmi_channel_claim_replacement(ch, SHMI_ROLE_KEEPER);
            shmi_channel_detach(ch);
            return SHMC_EAGAIN;
        }
        if (!same) {
            shmi_channel_detach(ch);
            return SHMC_EMISMATCH;
        }
    } else if (rc) {
        return rc;
    }
    rc = join_as_keeper(ch, place, index);
    if (rc) shmi_channel_detach(ch);
    return rc;
}

int shmi_keeper_open(shmi_channel_t *ch, const char *os_name, const char *name,
                     const shmi_geometry_t *g, uint32_t mode, uint32_t *index)
{
    return shmi_keeper_open_at(ch, os_name, name, g, mode, SHMI_ANY_PLACE, index);
}

int shmi_keeper_open_at(shmi_channel_t *ch, const char *os_name, const char *name,
                        const shmi_geometry_t *g, uint32_t mode, uint32_t place, uint32_t *index)
{
    /* Retry while another process is creating, closing or replacing the channel; 5 s at most. */
    uint64_t deadline = shmi_now_ns() + 5000000000ull;
    int rc;
    while ((rc = keeper_try_open(ch, os_name, name, g, mode, place, index)) == SHMC_EAGAIN &&
           shmi_now_ns() < deadline)
        shmi_pause_ns(1000000);
    return rc == SHMC_EAGAIN ? SHMC_ETIMEDOUT : rc;
}

int shmi_follower_open(shmi_channel_t *ch, const char *os_name, uint32_t pattern, int64_t timeout_ns,
                       shmi_join_fn join, void *ctx, uint32_t *index)
{
    uint64_t deadline = shmi_now_ns() + (uint64_t)(timeout_ns > 0 ? timeout_ns : 0);
    int64_t backoff = 1000000;
    for (;;) {
        int rc = shmi_channel_attach(ch, os_name, pattern, 0);
        if (rc == 0) {
            uint32_t state = atomic_load_explicit(&ch->header->state, memory_order_acquire);
            if (state == SHMI_STATE_READY) {
                rc = join(ctx, ch, index);
                if (rc == 0) return 0;
            } else {
                rc = SHMC_ENOENT; /* closing or being replaced: wait for the next generation */
            }
            shmi_channel_detach(ch);
        }
        if (rc != SHMC_ENOENT && rc != SHMC_EAGAIN) return rc;
        uint64_t now = shmi_now_ns();
        if (now >= deadline) return SHMC_ENOENT;
        int64_t left = (int64_t)(deadline - now);
        shmi_pause_ns(backoff < left ? backoff : left);
        if (backoff < 10000000) backoff *= 2;
    }
}

int shmi_follow_restart(shmi_channel_t *ch, uint32_t *index, shmi_join_fn join, void *ctx)
{
    uint32_t state = atomic_load_explicit(&ch->header->state, memory_order_acquire);
    if (state == SHMI_STATE_READY && shmi_registry_count(&ch->registry, SHMI_ROLE_KEEPER) > 0)
        return 0;
    if (shmi_seg_is_current(&ch->seg, ch->os_name)) return 0;
    if (shmi_channel_reserve_retired(ch) != 0) return 0; /* no memory now: the next check retries */
    shmi_channel_t fresh;
    if (shmi_channel_attach(&fresh, ch->os_name, ch->geometry.pattern, 0) != 0) return 0;
    uint32_t fresh_index;
    if (fresh.session_id == ch->session_id ||
        atomic_load_explicit(&fresh.header->state, memory_order_acquire) != SHMI_STATE_READY ||
        join(ctx, &fresh, &fresh_index) != 0) {
        shmi_channel_detach(&fresh);
        return 0;
    }
    shmi_channel_replace(ch, *index, &fresh);
    *index = fresh_index;
    return 1;
}
