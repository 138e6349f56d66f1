/*
 * shmcomm.h - the public C ABI of libshm, shared-memory IPC for one machine.
 *
 * Conventions (read once, they hold for every function below):
 *  - Every function returns 0 on success or a negative SHMC_E* code; shmc_strerror() describes it.
 *    Results travel through output parameters. Nothing in the library prints or exits.
 *  - Handles are opaque. Closing NULL does nothing. A handle is used by one thread at a time
 *    (callers serialise); different handles may be used from different threads freely.
 *  - Timeouts are in nanoseconds: 0 = do not wait, negative = wait forever.
 *  - Option structs begin with their own size: call shmc_*_options_init() first, then set fields.
 *    New fields are only ever appended, so old callers keep working.
 *
 * FFI note: this header is also the cffi cdef of the Python binding. Everything between
 * SHMC_CDEF_BEGIN and SHMC_CDEF_END must stay FFI-safe: fixed-width types, no bit-fields, no varargs,
 * no structs by value, no static inline, constants as plain integers or enums.
 */
#ifndef SHMCOMM_H
#define SHMCOMM_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32) && defined(SHMC_BUILDING)
#define SHMC_API __declspec(dllexport)
#elif defined(_WIN32)
#define SHMC_API __declspec(dllimport)
#elif defined(__GNUC__)
#define SHMC_API __attribute__((visibility("default")))
#else
#define SHMC_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* SHMC_CDEF_BEGIN */

/* Library version, (major << 16) | (minor << 8) | patch, as returned by shmc_version(). */
#define SHMC_VERSION 0x000100
/* Version of the shared-memory layout; segments of another layout version are refused. */
#define SHMC_LAYOUT_VERSION 2

enum shmc_error {
    SHMC_OK = 0,
    SHMC_EINVAL = -1,      /* an argument is invalid (NULL, zero, out of range) */
    SHMC_ENAME = -2,       /* the channel name is invalid */
    SHMC_ENOMEM = -3,      /* out of process memory */
    SHMC_ENOENT = -4,      /* no channel of that name exists */
    SHMC_EACCES = -5,      /* permission denied by the OS */
    SHMC_ENOSPC = -6,      /* the shared-memory filesystem is full */
    SHMC_ETIMEDOUT = -7,   /* the timeout expired */
    SHMC_EAGAIN = -8,      /* nothing to receive / no room, and the call was asked not to wait */
    SHMC_EMSGSIZE = -9,    /* the message does not fit in a slot */
    SHMC_ETRUNC = -10,     /* the receive buffer is smaller than the message (nothing consumed) */
    SHMC_ECLOSED = -11,    /* the channel was closed */
    SHMC_EBADSEG = -12,    /* the segment is not a valid shmcomm segment (corrupt or foreign) */
    SHMC_EVERSION = -13,   /* the segment has another layout version */
    SHMC_EMISMATCH = -14,  /* the channel exists with other parameters or another pattern */
    SHMC_EPEERS = -15,     /* the channel's peer registry is full */
    SHMC_ESTALE = -16,     /* a loaned view was overwritten while it was in use */
    SHMC_EOS = -17,        /* another OS error; shmc_last_os_error() gives errno/GetLastError */
    SHMC_EEXIST = -18,     /* the segment already exists (internal to creation races, rarely seen) */
    SHMC_EPEERDEAD = -19,  /* the peer the call waits on died (REQ/REP: the replier handling the request) */
    SHMC_EEXPIRED = -20,   /* REQ/REP: the requester stopped waiting (timed out, cancelled or died): reply discarded */
    SHMC_ESEQUENCE = -21   /* calls out of order: a reply with no request taken, a receive with no request sent */
};

/* Option flags (shmc_pub_options_t.flags). */
#define SHMC_LOSSLESS 1       /* publishers wait for the slowest live subscriber instead of overwriting */
#define SHMC_SHARE_GROUP 2    /* segment mode 0660 instead of 0600 */
#define SHMC_SHARE_ALL 4      /* segment mode 0666 instead of 0600 */

/* Channel patterns, as stored in a segment and reported by shmc_segment_info(). */
enum shmc_pattern {
    SHMC_PATTERN_PUBSUB = 1,   /* OS names shmcomm_pub_* */
    SHMC_PATTERN_REQREP = 2,   /* OS names shmcomm_req_* */
    SHMC_PATTERN_PIPELINE = 3  /* PUSH/PULL; OS names shmcomm_push_* */
};

typedef struct shmc_pub shmc_pub_t;
typedef struct shmc_sub shmc_sub_t;
typedef struct shmc_push shmc_push_t;
typedef struct shmc_pull shmc_pull_t;
typedef struct shmc_req shmc_req_t;
typedef struct shmc_rep shmc_rep_t;

typedef struct shmc_pub_options {
    uint32_t size;        /* sizeof(shmc_pub_options_t); set by shmc_pub_options_init() */
    uint32_t num_slots;   /* ring depth, 2 .. 16777216; default 64 */
    uint32_t slot_size;   /* largest payload in bytes, 1 .. 1 GiB; default 4096 */
    uint32_t flags;       /* SHMC_LOSSLESS | SHMC_SHARE_GROUP | SHMC_SHARE_ALL; default 0 */
    uint32_t max_peers;   /* publishers + subscribers at once, 2 .. 254; default 64 */
    uint32_t reserved;    /* must be 0 */
} shmc_pub_options_t;

/* Options of the endpoints that create a channel: the same fields (SHMC_LOSSLESS does not apply: work
 * queues and request queues never lose a message). Defaults from their own init functions. */
typedef shmc_pub_options_t shmc_push_options_t;
typedef shmc_pub_options_t shmc_rep_options_t;

typedef struct shmc_sub_options {
    uint32_t size;        /* sizeof(shmc_sub_options_t); set by shmc_sub_options_init() */
    uint32_t spin_us;     /* how long a receive spins before it sleeps on a futex; default 50 */
    int64_t connect_timeout_ns; /* how long open waits for a publisher; default 5 s, 0 = no wait */
} shmc_sub_options_t;

/* Options of the endpoints that attach to a channel: the same fields. */
typedef shmc_sub_options_t shmc_pull_options_t;
typedef shmc_sub_options_t shmc_req_options_t;

/* Counters of one endpoint. Received + dropped + skipped = published since the subscriber attached. */
typedef struct shmc_stats {
    uint32_t size;          /* sizeof(shmc_stats_t); the caller sets it */
    uint32_t num_slots;
    uint32_t slot_size;
    uint32_t flags;
    uint64_t head;          /* next position to be published on the channel */
    uint64_t cursor;        /* subscriber: next position it will read */
    uint64_t sent;          /* messages this endpoint published */
    uint64_t received;      /* messages this endpoint received */
    uint64_t dropped;       /* messages overwritten before this subscriber read them, or lost in a crash */
    uint64_t skipped;       /* messages passed over by latest() */
    uint64_t reconnects;    /* times this subscriber followed a restarted publisher */
    uint32_t publishers;    /* live publishers on the channel */
    uint32_t subscribers;   /* live subscribers on the channel */
    int32_t publisher_alive; /* 1 if at least one publisher is alive */
    int32_t reserved;
    /* appended for PUSH/PULL and REQ/REP (publishers/subscribers above count pushers/pullers and
     * repliers/requesters there) */
    uint64_t tail;          /* next position competing readers take: head - tail messages are queued */
    uint64_t expired;       /* replier: requests and replies discarded because their requester stopped
                               waiting; requester: requests given up (timeout or cancel) */
    uint64_t restored;      /* messages given back to the queue because the reader taking them died */
} shmc_stats_t;

/* One entry of shmc_segment_info(). */
typedef struct shmc_segment_info {
    uint32_t size;            /* sizeof(shmc_segment_info_t); the caller sets it */
    uint32_t pattern;         /* enum shmc_pattern, 0 if unknown */
    uint32_t layout_version;
    int32_t creator_pid;
    int32_t creator_alive;    /* 1 if the creating process is alive */
    int32_t stale;            /* 1 if no process that keeps the channel alive (a publisher) lives */
    uint32_t state;           /* 1 ready, 2 closed, 3 being replaced */
    uint32_t num_slots;
    uint32_t slot_size;
    uint32_t flags;
    uint64_t segment_bytes;
    uint64_t head;
    uint64_t session_id;
    uint32_t publishers;      /* live */
    uint32_t subscribers;     /* live */
    char channel[256];        /* the user's channel name (truncated if longer), NUL-terminated */
} shmc_segment_info_t;

/* ---- library ---- */

/* (major << 16) | (minor << 8) | patch of the loaded library. Thread-safe. */
SHMC_API uint32_t shmc_version(void);
/* A static English message for a SHMC_E* code; never NULL. Thread-safe. */
SHMC_API const char *shmc_strerror(int code);
/* The OS error (errno or GetLastError) behind the last SHMC_EOS/EACCES/ENOSPC of this thread. */
SHMC_API int shmc_last_os_error(void);

/* Writes the OS object name of channel `name` for `pattern` (e.g. "shmcomm_pub_robot+2fpose") into
 * out[cap]. Fails with SHMC_ENAME for an invalid name, SHMC_EINVAL if cap is too small. */
SHMC_API int shmc_os_name(const char *name, uint32_t pattern, char *out, size_t cap);
/* Reads the header of the segment with OS name `os_name` without attaching. Never blocks.
 * Returns SHMC_ENOENT, SHMC_EACCES, SHMC_EBADSEG or SHMC_EVERSION when it cannot be read. */
SHMC_API int shmc_segment_info(const char *os_name, shmc_segment_info_t *info);
/* Removes the segment with OS name `os_name` ("shmcomm_..." only). Processes that have it mapped keep
 * their mapping. SHMC_ENOENT if it did not exist. */
SHMC_API int shmc_segment_unlink(const char *os_name);

/* ---- PUB/SUB ---- */

SHMC_API void shmc_pub_options_init(shmc_pub_options_t *opts);
SHMC_API void shmc_sub_options_init(shmc_sub_options_t *opts);

/* Creates channel `name`, or joins it as one more publisher if it exists with the same num_slots,
 * slot_size and flags (else SHMC_EMISMATCH). A stale segment (every publisher dead) is replaced.
 * opts may be NULL for the defaults. On success *out owns the handle; close it with shmc_pub_close. */
SHMC_API int shmc_pub_open(const char *name, const shmc_pub_options_t *opts, shmc_pub_t **out);
/* Publishes len bytes (len <= slot_size, else SHMC_EMSGSIZE). Overwrite mode never waits. Lossless mode
 * waits up to timeout_ns for the slowest live subscriber (SHMC_EAGAIN with 0, SHMC_ETIMEDOUT after). */
SHMC_API int shmc_pub_send(shmc_pub_t *pub, const void *data, size_t len, int64_t timeout_ns);
/* shmc_pub_send without waiting, in three arguments: the FFI fast path (each FFI argument costs). */
SHMC_API int shmc_pub_try_send(shmc_pub_t *pub, const void *data, size_t len);
/* Publishes count messages in one call: message i is lens[i] bytes, packed back to back in data.
 * *sent receives how many were published (all of them on success); each waits as shmc_pub_send,
 * all within one timeout_ns. */
SHMC_API int shmc_pub_send_many(shmc_pub_t *pub, const void *data, const uint64_t *lens, size_t count,
                                size_t *sent, int64_t timeout_ns);
/* Zero-copy send: *buf receives a writable pointer into the next slot, *cap its capacity. Fill it,
 * then shmc_pub_commit(len) publishes it. Subscribers cannot see the slot until commit. Waits as send. */
SHMC_API int shmc_pub_loan(shmc_pub_t *pub, void **buf, size_t *cap, int64_t timeout_ns);
SHMC_API int shmc_pub_commit(shmc_pub_t *pub, size_t len);
/* Gives a loaned slot back unpublished; subscribers count its position as dropped. */
SHMC_API int shmc_pub_cancel(shmc_pub_t *pub);
SHMC_API int shmc_pub_stats(shmc_pub_t *pub, shmc_stats_t *stats);
/* Leaves the channel like close (an open loan is cancelled) but keeps the segment mapped, so buffers
 * handed out by shmc_pub_loan stay valid memory; every later call but close returns SHMC_ECLOSED. */
SHMC_API int shmc_pub_detach(shmc_pub_t *pub);
/* Leaves the channel; the last live publisher to leave marks it closed and unlinks it. */
SHMC_API int shmc_pub_close(shmc_pub_t *pub);

/* Attaches to channel `name`, waiting up to opts->connect_timeout_ns for a publisher to create it
 * (SHMC_ENOENT if none appeared). The subscriber sees every message published after this returns. */
SHMC_API int shmc_sub_open(const char *name, const shmc_sub_options_t *opts, shmc_sub_t **out);
/* Copies the next message into buf[cap], its size into *len. SHMC_ETRUNC (with *len set, nothing
 * consumed) if cap is too small. Waits up to timeout_ns; follows a restarted publisher by itself. */
SHMC_API int shmc_sub_recv(shmc_sub_t *sub, void *buf, size_t cap, size_t *len, int64_t timeout_ns);
/* Receives the next message into the subscriber's own buffer (shmc_sub_buffer) and returns its size
 * (>= 0) or a negative SHMC_E* code: one call, two arguments, the FFI fast path. If a message is larger
 * than the buffer (a restarted publisher with larger slots), the buffer grows first: call
 * shmc_sub_buffer again whenever the size returned exceeds the capacity you hold. */
SHMC_API int64_t shmc_sub_next(shmc_sub_t *sub, int64_t timeout_ns);
/* shmc_sub_next for the newest message (as shmc_sub_latest). */
SHMC_API int64_t shmc_sub_next_latest(shmc_sub_t *sub, int64_t timeout_ns);
/* The subscriber's own receive buffer and its capacity (owned by the subscriber). */
SHMC_API int shmc_sub_buffer(shmc_sub_t *sub, const void **buf, size_t *cap);
/* Receives up to max messages in one call into buf[cap], packed back to back; lens[i] gets the size
 * of message i and *count how many. Waits up to timeout_ns for the first one only. */
SHMC_API int shmc_sub_recv_many(shmc_sub_t *sub, void *buf, size_t cap, size_t *lens, size_t max,
                                size_t *count, int64_t timeout_ns);
/* Like recv, but skips to the newest message (the ones passed over count as skipped). */
SHMC_API int shmc_sub_latest(shmc_sub_t *sub, void *buf, size_t cap, size_t *len, int64_t timeout_ns);
/* Zero-copy receive: *data points at the next message inside the segment, valid until
 * shmc_sub_release. In lossless mode the slot is pinned until release; in overwrite mode a publisher
 * may lap it, and release then returns SHMC_ESTALE (the view held overwritten bytes). */
SHMC_API int shmc_sub_loan(shmc_sub_t *sub, const void **data, size_t *len, int64_t timeout_ns);
SHMC_API int shmc_sub_release(shmc_sub_t *sub);
SHMC_API int shmc_sub_stats(shmc_sub_t *sub, shmc_stats_t *stats);
/* 1 if at least one publisher of the channel is alive, else 0. */
SHMC_API int shmc_sub_publisher_alive(shmc_sub_t *sub);
/* Leaves the channel (publishers no longer wait for this subscriber) but keeps the segment mapped,
 * so views handed out earlier stay readable; every later call but close returns SHMC_ECLOSED. */
SHMC_API int shmc_sub_detach(shmc_sub_t *sub);
SHMC_API int shmc_sub_close(shmc_sub_t *sub);

/* ---- PUSH/PULL: a work queue; each message goes to exactly one puller, none is lost ---- */

SHMC_API void shmc_push_options_init(shmc_push_options_t *opts); /* 128 slots of 4096 bytes */
SHMC_API void shmc_pull_options_init(shmc_pull_options_t *opts);

/* Creates work queue `name`, or joins it as one more pusher (same num_slots, slot_size and flags, else
 * SHMC_EMISMATCH); a stale queue (every pusher dead) is replaced. */
SHMC_API int shmc_push_open(const char *name, const shmc_push_options_t *opts, shmc_push_t **out);
/* Queues len bytes; waits up to timeout_ns while the queue is full (SHMC_EAGAIN with 0, SHMC_ETIMEDOUT). */
SHMC_API int shmc_push_send(shmc_push_t *push, const void *data, size_t len, int64_t timeout_ns);
/* shmc_push_send without waiting, in three arguments (the FFI fast path). */
SHMC_API int shmc_push_try_send(shmc_push_t *push, const void *data, size_t len);
/* Queues count messages packed back to back in data (message i is lens[i] bytes) in one call;
 * *sent receives how many were queued. Each waits as shmc_push_send, all within one timeout_ns. */
SHMC_API int shmc_push_send_many(shmc_push_t *push, const void *data, const uint64_t *lens, size_t count,
                                 size_t *sent, int64_t timeout_ns);
SHMC_API int shmc_push_stats(shmc_push_t *push, shmc_stats_t *stats);
/* Leaves the queue; the last live pusher to leave closes it (pullers attached drain what is queued). */
SHMC_API int shmc_push_close(shmc_push_t *push);

/* Attaches to work queue `name`, waiting up to opts->connect_timeout_ns for a pusher to create it. */
SHMC_API int shmc_pull_open(const char *name, const shmc_pull_options_t *opts, shmc_pull_t **out);
/* Takes the oldest queued message into buf[cap] (SHMC_ETRUNC with *len set and nothing taken if cap is
 * too small). Waits up to timeout_ns; follows a restarted pusher by itself. */
SHMC_API int shmc_pull_recv(shmc_pull_t *pull, void *buf, size_t cap, size_t *len, int64_t timeout_ns);
/* Takes the oldest queued message into the puller's own buffer (shmc_pull_buffer); returns its size
 * or a negative SHMC_E* code. The buffer grows for a restarted pusher with larger slots. */
SHMC_API int64_t shmc_pull_next(shmc_pull_t *pull, int64_t timeout_ns);
SHMC_API int shmc_pull_buffer(shmc_pull_t *pull, const void **buf, size_t *cap);
/* Takes up to max messages in one call into buf[cap], packed back to back, sizes in lens[], the number
 * in *count. Waits up to timeout_ns for the first one only. */
SHMC_API int shmc_pull_recv_many(shmc_pull_t *pull, void *buf, size_t cap, size_t *lens, size_t max,
                                 size_t *count, int64_t timeout_ns);
SHMC_API int shmc_pull_stats(shmc_pull_t *pull, shmc_stats_t *stats);
/* 1 if at least one pusher of the queue is alive, else 0. */
SHMC_API int shmc_pull_pusher_alive(shmc_pull_t *pull);
SHMC_API int shmc_pull_close(shmc_pull_t *pull);

/* ---- REQ/REP: each request is served by one replier; its reply goes back to the requester ---- */

SHMC_API void shmc_rep_options_init(shmc_rep_options_t *opts); /* 16 slots of 8192 bytes */
SHMC_API void shmc_req_options_init(shmc_req_options_t *opts);

/* Creates service `name`, or joins it as one more replier sharing the requests (same geometry). */
SHMC_API int shmc_rep_open(const char *name, const shmc_rep_options_t *opts, shmc_rep_t **out);
/* Takes the next request into buf[cap] (SHMC_ETRUNC with *len set, nothing taken, if too small). It
 * becomes the current request, which shmc_rep_send answers; taking the next one without answering
 * leaves the previous requester to its timeout. Requests whose requester stopped waiting (timed out,
 * cancelled, died) are skipped without being returned, and counted as expired (a requester seen alive
 * is trusted for 10 ms: one that died within that window may still have its request returned, and
 * the reply is discarded harmlessly). */
SHMC_API int shmc_rep_recv(shmc_rep_t *rep, void *buf, size_t cap, size_t *len, int64_t timeout_ns);
/* shmc_rep_recv into the replier's own buffer (shmc_rep_buffer); returns the size or a negative code. */
SHMC_API int64_t shmc_rep_next(shmc_rep_t *rep, int64_t timeout_ns);
SHMC_API int shmc_rep_buffer(shmc_rep_t *rep, const void **buf, size_t *cap);
/* Answers the current request with len bytes (len <= slot_size). SHMC_EEXPIRED if its requester no
 * longer waits (timed out or died): the reply is discarded and costs nothing more. SHMC_ESEQUENCE if
 * no request is current. Never waits. */
SHMC_API int shmc_rep_send(shmc_rep_t *rep, const void *data, size_t len);
/* A serving loop's one call per request: answers the current request (if any; a reply whose
 * requester stopped waiting is discarded and counted as expired), then takes the next request into
 * the own buffer as shmc_rep_next. Returns its size or a negative code (SHMC_EMSGSIZE: the reply was
 * too large and the request is still current). */
SHMC_API int64_t shmc_rep_reply_next(shmc_rep_t *rep, const void *data, size_t len, int64_t timeout_ns);
SHMC_API int shmc_rep_stats(shmc_rep_t *rep, shmc_stats_t *stats);
SHMC_API int shmc_rep_close(shmc_rep_t *rep);

/* Attaches to service `name`, waiting up to opts->connect_timeout_ns for a replier to create it. */
SHMC_API int shmc_req_open(const char *name, const shmc_req_options_t *opts, shmc_req_t **out);
/* Sends a request (waiting up to timeout_ns for room in the request queue). A request still pending
 * is given up first: its reply, if it ever comes, is discarded. SHMC_EPEERDEAD if no replier lives. */
SHMC_API int shmc_req_send(shmc_req_t *req, const void *data, size_t len, int64_t timeout_ns);
/* Waits up to timeout_ns for the reply to the pending request and copies it into buf[cap]. On
 * SHMC_ETIMEDOUT the request stays pending (call again to keep waiting). SHMC_EPEERDEAD as soon as
 * the replier that took the request, or every replier, is dead; SHMC_ESEQUENCE if nothing is pending. */
SHMC_API int shmc_req_recv(shmc_req_t *req, void *buf, size_t cap, size_t *len, int64_t timeout_ns);
/* shmc_req_recv into the requester's own buffer (shmc_req_buffer); returns the size or a negative code. */
SHMC_API int64_t shmc_req_next(shmc_req_t *req, int64_t timeout_ns);
SHMC_API int shmc_req_buffer(shmc_req_t *req, const void **buf, size_t *cap);
/* Send, then wait for the reply into the own buffer, all within timeout_ns: the size of the reply or a
 * negative code: SHMC_EAGAIN if the request queue stayed full (nothing was sent); SHMC_ETIMEDOUT if
 * no reply came in time, and the request stays pending (shmc_req_recv/next keep waiting for it,
 * shmc_req_cancel or the next send give it up: its late reply is then discarded). On any other
 * failure the request is given up. */
SHMC_API int64_t shmc_req_request(shmc_req_t *req, const void *data, size_t len, int64_t timeout_ns);
/* Gives up the pending request (its reply, if it comes, is discarded). No-op if none. */
SHMC_API int shmc_req_cancel(shmc_req_t *req);
SHMC_API int shmc_req_stats(shmc_req_t *req, shmc_stats_t *stats);
/* 1 if at least one replier of the service is alive, else 0. */
SHMC_API int shmc_req_replier_alive(shmc_req_t *req);
SHMC_API int shmc_req_close(shmc_req_t *req);

/* SHMC_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* SHMCOMM_H */
