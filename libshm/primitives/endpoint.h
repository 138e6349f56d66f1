/*
 * Endpoints: how a process opens, follows and looks after a channel, written once for every pattern.
 *
 *  - A keeper (publisher, pusher, replier) creates the channel, or joins it when it exists with the
 *    same geometry, or replaces it when it is stale (every keeper dead) or unusable and left by a dead
 *    creator. The last keeper to leave closes it.
 *  - A follower (subscriber, puller, requester) waits up to a timeout for a keeper to create the
 *    channel, and follows a restarted keeper: when its channel is closed or replaced and the name
 *    holds a new generation, it moves there by itself.
 *  - While waiting, both recover the claims of dead processes that hold them up.
 */
#ifndef SHMI_ENDPOINT_H
#define SHMI_ENDPOINT_H

#include "channel.h"
#include "shmcomm.h"

#define SHMI_SLOW_CHECK_NS 100000000ull /* reaping, restart and liveness checks: every 100 ms */
#define SHMI_IDLE_POLLS_PER_CHECK 256   /* a caller that never waits looks after the channel this often */

/* Copies caller options that begin with their size into *into (already holding the defaults).
 * SHMC_EINVAL if the size is below min_size or above the struct. */
int shmi_copy_options(void *into, size_t into_size, const void *from, size_t min_size);
/* The arguments of a keeper's open (publisher, pusher, replier), checked once for all: options
 * (defaults in *o, caller's on top), flags within `allowed`, the OS name and the geometry. */
int shmi_keeper_args(const char *name, uint32_t pattern, const shmc_pub_options_t *opts,
                     shmc_pub_options_t *o, uint32_t allowed, char *os_name, shmi_geometry_t *g);
/* The same for a follower's open (subscriber, puller, requester). */
int shmi_follower_args(const char *name, uint32_t pattern, const shmc_sub_options_t *opts,
                       shmc_sub_options_t *o, char *os_name);

/* Joins the registry of `ch` for a follower: sets *index. 0 or an error. */
typedef int (*shmi_join_fn)(void *ctx, shmi_channel_t *ch, uint32_t *index);

/* File mode for the SHMC_SHARE_* bits of `flags`. */
uint32_t shmi_mode_for(uint32_t flags);

/* Creates, joins or replaces channel os_name as a keeper, retrying for up to 5 s while other processes
 * create, close or replace it. SHMC_EMISMATCH if it exists with another geometry. */
int shmi_keeper_open(shmi_channel_t *ch, const char *os_name, const char *name,
                     const shmi_geometry_t *g, uint32_t mode, uint32_t *index);

/* The same, joining at registry entry `place` only (SHMI_ANY_PLACE: any free entry); SHMC_EPEERS
 * when a live keeper holds it (PAIR: one writer per direction). */
#define SHMI_ANY_PLACE UINT32_MAX
#define SHMI_WRITER_PLACE 0u /* the writer's entry in a channel with one writer (SHMC_SINGLE_WRITER, PAIR) */
int shmi_keeper_open_at(shmi_channel_t *ch, const char *os_name, const char *name,
                        const shmi_geometry_t *g, uint32_t mode, uint32_t place, uint32_t *index);

/* Attaches to channel os_name and joins it with `join`, waiting up to timeout_ns for a keeper
 * to create it (SHMC_ENOENT when none did). */
int shmi_follower_open(shmi_channel_t *ch, const char *os_name, uint32_t pattern, int64_t timeout_ns,
                       shmi_join_fn join, void *ctx, uint32_t *index);

/* If `ch` has no live keeper or was closed, and its name now holds a new generation, moves to it:
 * joins it with `join` (which sets *index), leaves the old one and retires its mapping (it stays
 * reserved until the channel is detached: views into it never fault). 1 if it moved, else 0. */
int shmi_follow_restart(shmi_channel_t *ch, uint32_t *index, shmi_join_fn join, void *ctx);

/* If the claim `word` (a slot word WRITING or READING) belongs to a dead process, recovers its slot. */
void shmi_recover_if_dead(shmi_channel_t *ch, uint64_t word);

/* The registry's reap callback (ctx: the channel): recovers the slots the dead peer had claimed. */
void shmi_recover_claims_of(void *ctx, uint32_t index);

/* REQ/REP (reqrep.c), called while the dead peer's entry is held REAPING: a dead requester's mailbox
 * stops expecting a reply (its queued request is skipped, a late reply discarded), and every mailbox
 * claim of a dead replier is marked dead (its requester fails fast). */
void shmi_mailbox_forget(shmi_channel_t *ch, uint32_t index);

/* Sleeps about ns nanoseconds (retry back-off; not a wait for a condition). */
void shmi_pause_ns(int64_t ns);

#endif
