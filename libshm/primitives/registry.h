/*
 * The peer registry: a fixed table of the processes attached to a channel (pid + start time,
 * heartbeat, cursor, counters). Entries are claimed with one compare-and-swap, so a process that
 * dies at any instruction leaves either a free entry or one that names it, and is reaped.
 */
#ifndef SHMI_REGISTRY_H
#define SHMI_REGISTRY_H

#include "layout.h"

#include <stdint.h>

/* Keepers keep a channel alive: they create it, the last one to leave closes it, and a channel whose
 * keepers are all dead is stale (publishers, pushers, repliers). Followers attach to it and follow it
 * when a keeper restarts it (subscribers, pullers, requesters). */
enum shmi_role { SHMI_ROLE_KEEPER = 1, SHMI_ROLE_FOLLOWER = 2, SHMI_ROLE_REAPING = 0xFF };

typedef struct shmi_registry {
    shmi_peer_t *peers;
    uint32_t max_peers;
    uint32_t first_free; /* shmi_registry_join takes entries from here on (lower ones are places) */
} shmi_registry_t;

/* Called for each dead entry before it is freed (e.g. to abandon the slots it had claimed). */
typedef void (*shmi_reap_fn)(void *ctx, uint32_t index);

/* Claims a free entry for this process with `role` and `cursor`; reaps dead entries if full.
 * SHMC_EPEERS if every entry belongs to a live process. */
int shmi_registry_join(shmi_registry_t *r, uint32_t role, uint64_t cursor, shmi_reap_fn on_reap,
                       void *ctx, uint32_t *index);
/* Claims entry `index` itself (a pattern with fixed places, e.g. PAIR: 0 the queue's writer, 1 its
 * reader), reaping it first if its process is dead. SHMC_EPEERS if a live process holds it. */
int shmi_registry_join_at(shmi_registry_t *r, uint32_t index, uint32_t role, uint64_t cursor,
                          shmi_reap_fn on_reap, void *ctx);
void shmi_registry_leave(shmi_registry_t *r, uint32_t index);
/* The role of entry `index` if it is held by a live process, else 0. */
uint32_t shmi_registry_live_role(shmi_registry_t *r, uint32_t index);
/* Frees entry `index` if its process is dead, calling on_reap first while the entry is held REAPING,
 * so no new peer can take the index meanwhile; for a free entry (claims that outlived their owner's
 * entry) it holds the entry the same way around on_reap. 1 if this call did it. */
int shmi_registry_reap_one(shmi_registry_t *r, uint32_t index, shmi_reap_fn on_reap, void *ctx);
/* Frees the entries of dead processes; returns how many. */
uint32_t shmi_registry_reap(shmi_registry_t *r, shmi_reap_fn on_reap, void *ctx);
/* Live entries of `role` (by pid liveness). */
uint32_t shmi_registry_count(shmi_registry_t *r, uint32_t role);
/* Smallest cursor among entries of `role` (live or not yet reaped); UINT64_MAX if none. */
uint64_t shmi_registry_min_cursor(shmi_registry_t *r, uint32_t role);
void shmi_registry_heartbeat(shmi_registry_t *r, uint32_t index);

static inline uint32_t shmi_owner_role(uint64_t owner) { return (uint32_t)(owner & 0xFF); }
static inline int32_t shmi_owner_pid(uint64_t owner) { return (int32_t)(owner >> 32); }

#endif
