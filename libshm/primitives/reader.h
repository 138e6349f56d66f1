/*
 * A reader of a channel's ring, written once for every pattern that reads one: subscribers (broadcast,
 * private cursor), pullers and repliers (competing readers). It owns the wait loop (spin, futex sleep
 * in slices), the housekeeping done while waiting (heartbeat, recovery of dead writers' claims,
 * following a restarted keeper or reaping dead peers), its own receive buffer, and the batch receive.
 * The pattern supplies one function: a single non-waiting attempt to receive.
 */
#ifndef SHMI_READER_H
#define SHMI_READER_H

#include "endpoint.h"

#include <stddef.h>

typedef struct shmi_reader shmi_reader_t;

/* One attempt to receive into r->buf[r->cap] (or, with r->buf NULL, to locate a message for a loan):
 * 0 with r->len set, SHMC_ETRUNC with r->len set (nothing consumed), SHMC_EAGAIN if none yet. */
typedef int (*shmi_read_fn)(shmi_reader_t *r);

struct shmi_reader {
    shmi_channel_t ch;
    uint32_t index;
    uint32_t role;         /* SHMI_ROLE_FOLLOWER follows restarts; SHMI_ROLE_KEEPER reaps */
    int64_t spin_ns;
    shmi_read_fn read_once;
    shmi_join_fn rejoin;   /* followers: joins a restarted keeper's new generation */
    int detached;          /* left the registry; the mapping stays until close */
    int pinned;            /* a loan is out: do not move to another generation */
    int batching;          /* inside a batch receive: read_once may defer what end_batch does once
                              (publishing the pattern's progress, waking writers) */
    void (*end_batch)(shmi_reader_t *r); /* the pattern's end of a batch, or NULL */
    uint32_t idle_polls;
    uint64_t received, dropped, reconnects;
    uint64_t restored;     /* competing readers: messages taken over from a reader that died */
    uint64_t blocker;      /* slot word of a writer's claim on our next message, 0 if none */
    uint64_t next_slow_check;
    unsigned char *own_buf; /* the buffer of shmi_reader_next */
    size_t own_cap;
    /* the receive in progress */
    void *buf;
    size_t cap;
    uint32_t len;
};

/* Allocates the own buffer (slot_size); call once the channel is joined. */
int shmi_reader_setup(shmi_reader_t *r, uint32_t role, int64_t spin_ns, shmi_read_fn read_once,
                      shmi_join_fn rejoin);
/* The read_once of a competing reader (work queues, PAIR): takes the next message, copies it out,
 * then frees its slot; a message given back by a dead reader counts in r->restored. */
int shmi_reader_take(shmi_reader_t *r);
/* Waits up to timeout_ns for read_once to succeed. */
int shmi_reader_wait(shmi_reader_t *r, int64_t timeout_ns);
/* read_once into buf[cap], waiting up to timeout_ns; *len gets the size (also on SHMC_ETRUNC). */
int shmi_reader_receive(shmi_reader_t *r, void *buf, size_t cap, size_t *len, int64_t timeout_ns);
/* read_once into the own buffer (grown as needed); the size or a negative code. */
int64_t shmi_reader_next(shmi_reader_t *r, int64_t timeout_ns);
/* Up to max messages packed into buf[cap]; waits for the first one only. */
int shmi_reader_receive_many(shmi_reader_t *r, void *buf, size_t cap, size_t *lens, size_t max,
                             size_t *count, int64_t timeout_ns);
/* 1 if a keeper of the channel lives (a follower first follows a restart). */
int shmi_reader_keeper_alive(shmi_reader_t *r);
/* Leaves the registry; the mapping stays until shmi_reader_close. */
void shmi_reader_leave(shmi_reader_t *r);
void shmi_reader_close(shmi_reader_t *r);

#endif
