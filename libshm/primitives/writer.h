/*
 * A writer of a channel's ring, written once for every pattern that writes one: publishers (broadcast,
 * overwrite or lossless), pushers (a work queue) and requesters (a request queue). It claims a slot,
 * waiting while the ring is full with a spin then a futex sleep, recovers the claims of dead processes
 * that hold it up, reaps dead peers, and publishes.
 */
#ifndef SHMI_WRITER_H
#define SHMI_WRITER_H

#include "endpoint.h"
#include "shmcomm.h"

#include <stddef.h>

typedef struct shmi_writer {
    shmi_channel_t ch;
    uint32_t index;       /* our registry entry */
    int lossless;         /* broadcast ring: wait for the slowest follower's cursor */
    int detached;         /* left the channel; the mapping stays until close */
    uint32_t role;        /* SHMI_ROLE_KEEPER: leaving last closes the channel */
    uint32_t idle_polls;
    uint64_t cached_min;  /* lossless: slowest follower cursor at the last scan */
    uint64_t room_at;     /* lossless, while waiting: the cursor the slowest follower must reach */
    uint64_t sent;
    uint64_t blocker;     /* slot word of a claim by another process we wait behind, 0 if none */
    uint64_t next_slow_check; /* shmi_now_ns() of the next reap */
    uint64_t claimed_pos; /* result of the last successful claim */
    uint64_t claim_limit; /* the bound of that claim (lossless: slowest cursor + num_slots) */
} shmi_writer_t;

/* Opens `ch` as a keeper (see shmi_keeper_open) and sets the writer up. */
int shmi_writer_open_keeper(shmi_writer_t *w, const char *os_name, const char *name,
                            const shmi_geometry_t *g, uint32_t mode);
/* Sets up a writer on a channel already joined (a follower that writes, e.g. a requester). */
void shmi_writer_init(shmi_writer_t *w);

/* Claims the next slot, waiting up to timeout_ns: 0 with w->claimed_pos. */
int shmi_writer_claim(shmi_writer_t *w, int64_t timeout_ns);
/* Completes the claimed slot at pos with len payload bytes and wakes readers. */
void shmi_writer_publish(shmi_writer_t *w, uint64_t pos, uint32_t len);
/* Claim, copy, publish. */
int shmi_writer_send(shmi_writer_t *w, const void *data, size_t len, int64_t timeout_ns);
/* count messages packed in data, sizes in lens, all within one timeout. */
int shmi_writer_send_many(shmi_writer_t *w, const void *data, const uint64_t *lens, size_t count,
                          size_t *sent, int64_t timeout_ns);
/* Gives a claimed slot back unpublished (readers skip it). */
void shmi_writer_cancel(shmi_writer_t *w, uint64_t pos);
/* The channel-wide statistics plus this writer's count. */
void shmi_writer_stats(shmi_writer_t *w, shmc_stats_t *s);
/* Leaves the registry (the last keeper closes the channel); the mapping stays until shmi_channel_detach. */
void shmi_writer_leave(shmi_writer_t *w);

/* Lossless broadcast hysteresis: writers wait for, and readers announce, cursor crossings of
 * multiples of this (a quarter ring). */
uint64_t shmi_room_batch(const shmi_channel_t *ch);
/* The channel-wide part of every endpoint's statistics. */
void shmi_channel_stats(shmi_channel_t *ch, shmc_stats_t *s);

#endif
