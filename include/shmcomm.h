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
#define SHMC_LAYOUT_VERSION 3

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
    SHMC_ESEQUENCE = -21,  /* calls out of order: a reply with no request taken, a receive with no request sent */
    SHMC_ESCHEMA = -22,    /* STREAM: the stream's schema is not the one the reader expects (or is invalid) */
    SHMC_EWRITERDEAD = -23, /* STREAM: the stream's writer died (frames it committed were read first) */
    SHMC_EREADERDEAD = -24, /* STREAM: a reader of the stream died (reported once, with SHMC_STREAM_READER_DEATH) */
    SHMC_EBUSY = -25,      /* the stream, or the SHMC_SINGLE_WRITER channel, already has a live writer */
    SHMC_ECHECKSUM = -26,  /* STREAM: a frame's checksum does not match its data (corrupted in shared memory) */
    SHMC_EWRITTEN = -27    /* STREAM: the metadata was already written (it is write-once) */
};

/* Option flags (shmc_pub_options_t.flags). */
#define SHMC_LOSSLESS 1       /* publishers wait for the slowest live subscriber instead of overwriting */
#define SHMC_SHARE_GROUP 2    /* segment mode 0660 instead of 0600 */
#define SHMC_SHARE_ALL 4      /* segment mode 0666 instead of 0600 */
/* One writer at a time (publishers, pushers): a second live one gets SHMC_EBUSY, one that opens after
 * the writer died takes its channel over (its subscribers or pullers read on without a gap). Its
 * claims then need no locked instruction: batches go about 1.6x faster. Every writer of the channel
 * must pass it (else SHMC_EMISMATCH). */
#define SHMC_SINGLE_WRITER 256
/* A payload pool behind the ring (publishers, pushers): each claim takes the buffer of the most recent
 * message no reader needs any more, instead of the slot a lap back, so that while readers keep up the
 * same one or two buffers circulate and stay in the cache, whatever num_slots is (large frames: a
 * ring of 1 MiB slots otherwise works through num_slots MiB). On by default when slot_size >= 64 KiB
 * and num_slots is 3..64 (reported in shmc_stats_t.flags); this flag asks for it for any slot_size.
 * num_slots at most 64 (else SHMC_EINVAL). A channel's writers must agree (else SHMC_EMISMATCH). */
#define SHMC_PAYLOAD_POOL 512

/* Channel patterns, as stored in a segment and reported by shmc_segment_info(). */
enum shmc_pattern {
    SHMC_PATTERN_PUBSUB = 1,   /* OS names shmcomm_pub_* */
    SHMC_PATTERN_REQREP = 2,   /* OS names shmcomm_req_* */
    SHMC_PATTERN_PIPELINE = 3, /* PUSH/PULL; OS names shmcomm_push_* */
    SHMC_PATTERN_PAIR_M2S = 4, /* PAIR, the master-to-slave queue (kept by the master); shmcomm_m2s_* */
    SHMC_PATTERN_PAIR_S2M = 5, /* PAIR, the slave-to-master queue (kept by the slave); shmcomm_s2m_* */
    SHMC_PATTERN_STREAM = 6    /* STREAM frames; OS names shmcomm_stream_* */
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
    uint32_t flags;       /* SHMC_LOSSLESS | SHMC_SINGLE_WRITER | SHMC_PAYLOAD_POOL | SHMC_SHARE_GROUP |
                             SHMC_SHARE_ALL; default 0 */
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

/* Registry capacity: the most processes a channel admits at once (max_peers' upper bound). */
#define SHMC_MAX_PEERS 254

/* Roles in a channel's peer registry, as reported by shmc_segment_peers(). */
enum shmc_peer_role {
    SHMC_ROLE_KEEPER = 1,  /* keeps the channel alive: publisher, pusher, replier */
    SHMC_ROLE_FOLLOWER = 2 /* attaches to it: subscriber, puller, requester */
};

/* One process attached to a channel, as reported by shmc_segment_peers(). Every value is a snapshot
 * read from shared memory without locking. New fields are only ever appended. */
typedef struct shmc_peer_info {
    uint32_t size;             /* sizeof(shmc_peer_info_t); the caller sets it in out[0] */
    uint32_t index;            /* the entry's index in the peer registry */
    int32_t pid;
    uint32_t role;             /* enum shmc_peer_role */
    int32_t alive;             /* 1 if the process lives (pid and start time), 0 if it died */
    int32_t reserved;
    uint64_t heartbeat_age_ns; /* time since the peer last showed activity in this channel */
    uint64_t cursor;           /* broadcast readers (subscribers): the next position they read;
                                  UINT64_MAX when the role has no private cursor */
    uint64_t count;            /* messages this peer sent (keepers, requesters) or took (pullers);
                                  0 where the pattern does not record it (subscribers) */
    uint64_t dropped;          /* messages this peer recorded as lost */
} shmc_peer_info_t;

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
/* Lists the processes registered in segment `os_name` (live ones, and dead ones not reaped yet) without
 * attaching to it: read-only, never blocks, never writes to the segment. Set out[0].size to
 * sizeof(shmc_peer_info_t) (entries are written with that stride, so callers built against an older
 * header keep working); at most `max` entries are written, and *count receives how many are
 * registered (more than max: call again with a larger array; SHMC_MAX_PEERS is always enough).
 * Errors as shmc_segment_info; SHMC_EINVAL for NULL arguments or out[0].size too small.
 * Thread-safe. */
SHMC_API int shmc_segment_peers(const char *os_name, shmc_peer_info_t *out, size_t max, size_t *count);
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

/* ---- PAIR: the ESHM two-way channel between two processes, a master and a slave ----
 * Each direction is a queue kept by its writer (OS names shmcomm_m2s_<name>, shmcomm_s2m_<name>):
 * nothing written is lost while the other side restarts; a side reads what the remote wrote in order,
 * exactly once. Each side publishes a heartbeat; the remote is alive while its process lives and its
 * heartbeat is younger than stale_threshold_ns. When the remote dies and a new process takes its role,
 * this side reattaches by itself (counted in shmc_pair_stats_t.reconnections). */

typedef struct shmc_pair shmc_pair_t;

enum shmc_pair_role { SHMC_PAIR_MASTER = 0, SHMC_PAIR_SLAVE = 1, SHMC_PAIR_AUTO = 2 };

/* What read and write do while the remote is gone (dead, closed or stale) after having been there. */
enum shmc_disconnect {
    SHMC_DISCONNECT_IMMEDIATELY = 0, /* SHMC_EPEERDEAD at once (queued messages are still read first) */
    SHMC_DISCONNECT_ON_TIMEOUT = 1,  /* wait for a new remote; SHMC_EPEERDEAD once it has been gone for
                                        reconnect_wait_ns, or max_reconnect_attempts attempts failed */
    SHMC_DISCONNECT_NEVER = 2        /* never fail for it: keep waiting (and queueing) */
};

/* The remote as this side last saw it (shmc_pair_stats_t.remote_state). */
enum shmc_remote_state {
    SHMC_REMOTE_NONE = 0,      /* no remote has attached yet */
    SHMC_REMOTE_CONNECTED = 1, /* alive, with a fresh heartbeat */
    SHMC_REMOTE_STALE = 2,     /* its process lives but its heartbeat is older than the threshold */
    SHMC_REMOTE_GONE = 3,      /* it died or closed: reconnecting */
    SHMC_REMOTE_GAVE_UP = 4    /* gone, and reconnect_wait_ns / max_reconnect_attempts ran out */
};

#define SHMC_PAIR_NO_HEARTBEAT_THREAD 8 /* flags: beat only inside calls, no background thread */

typedef struct shmc_pair_options {
    uint32_t size;                   /* sizeof(shmc_pair_options_t); set by shmc_pair_options_init() */
    uint32_t role;                   /* enum shmc_pair_role; default SHMC_PAIR_AUTO (master if free) */
    uint32_t num_slots;              /* queue depth of this side's direction, 2 .. 16777216; default 64 */
    uint32_t slot_size;              /* largest message this side writes, 1 .. 1 GiB; default 4096 */
    uint32_t flags;                  /* SHMC_SHARE_GROUP | SHMC_SHARE_ALL | SHMC_PAIR_NO_HEARTBEAT_THREAD */
    uint32_t disconnect;             /* enum shmc_disconnect; default SHMC_DISCONNECT_ON_TIMEOUT */
    uint32_t spin_us;                /* how long a read spins before it sleeps; default 50 */
    uint32_t max_reconnect_attempts; /* 0 = unlimited; default 50 */
    int64_t stale_threshold_ns;      /* default 100 ms */
    int64_t reconnect_wait_ns;       /* default 5 s */
    int64_t reconnect_retry_interval_ns; /* default 100 ms */
} shmc_pair_options_t;

typedef struct shmc_pair_stats {
    uint32_t size;                   /* sizeof(shmc_pair_stats_t); the caller sets it */
    uint32_t role;                   /* this side: SHMC_PAIR_MASTER or SHMC_PAIR_SLAVE */
    int32_t master_pid;              /* 0 if none is attached */
    int32_t slave_pid;
    int32_t master_alive;            /* 1 if its process lives and its heartbeat is fresh */
    int32_t slave_alive;
    uint32_t remote_state;           /* enum shmc_remote_state */
    uint32_t reserved;
    uint64_t master_heartbeat_age_ns; /* time since its last heartbeat; UINT64_MAX if unknown */
    uint64_t slave_heartbeat_age_ns;
    uint64_t m2s_write_count;        /* messages the current master process wrote since it opened */
    uint64_t m2s_read_count;         /* messages of that queue the current slave process read */
    uint64_t s2m_write_count;
    uint64_t s2m_read_count;
    uint64_t drops;                  /* messages lost because their writer died while writing them */
    uint64_t reconnections;          /* times this side attached to a new remote process */
    uint64_t reconnect_attempts;     /* failed attempts since the remote was lost (0 when connected) */
    uint64_t remote_gone_ns;         /* how long the remote has been gone; 0 when connected */
} shmc_pair_stats_t;

SHMC_API void shmc_pair_options_init(shmc_pair_options_t *opts);
/* Opens side `opts->role` of pair `name`: the master or slave creates its own direction's queue (a
 * role held by a live process: SHMC_EPEERS; by a dead one: taken over), then attaches to the other
 * direction if the remote is there (else on a later call). AUTO takes the master role if no live
 * process holds it, else the slave role. Never waits for the remote. */
SHMC_API int shmc_pair_open(const char *name, const shmc_pair_options_t *opts, shmc_pair_t **out);
/* This side's role (SHMC_PAIR_MASTER or SHMC_PAIR_SLAVE), or a negative code. */
SHMC_API int shmc_pair_role(shmc_pair_t *pair);
/* Queues len bytes for the remote (len <= slot_size); waits up to timeout_ns while the queue is full.
 * SHMC_EPEERDEAD as the disconnect behaviour says. */
SHMC_API int shmc_pair_write(shmc_pair_t *pair, const void *data, size_t len, int64_t timeout_ns);
/* shmc_pair_write without waiting, in three arguments (the FFI fast path). */
SHMC_API int shmc_pair_try_write(shmc_pair_t *pair, const void *data, size_t len);
/* Writes count messages packed back to back (message i is lens[i] bytes); *sent receives how many. */
SHMC_API int shmc_pair_write_many(shmc_pair_t *pair, const void *data, const uint64_t *lens, size_t count,
                                  size_t *sent, int64_t timeout_ns);
/* Reads the remote's next message into buf[cap] (SHMC_ETRUNC with *len set and nothing consumed if cap
 * is too small), waiting up to timeout_ns. SHMC_EPEERDEAD as the disconnect behaviour says. */
SHMC_API int shmc_pair_read(shmc_pair_t *pair, void *buf, size_t cap, size_t *len, int64_t timeout_ns);
/* Reads into the pair's own buffer (shmc_pair_buffer); returns the size or a negative code. */
SHMC_API int64_t shmc_pair_next(shmc_pair_t *pair, int64_t timeout_ns);
SHMC_API int shmc_pair_buffer(shmc_pair_t *pair, const void **buf, size_t *cap);
/* Up to max messages into buf[cap] packed back to back, sizes in lens[]; waits for the first only. */
SHMC_API int shmc_pair_read_many(shmc_pair_t *pair, void *buf, size_t cap, size_t *lens, size_t max,
                                 size_t *count, int64_t timeout_ns);
/* 1 if the remote's process lives and its heartbeat is fresh, else 0 (also attaches/reattaches). */
SHMC_API int shmc_pair_remote_alive(shmc_pair_t *pair);
/* Publishes this side's heartbeat now (needed only with SHMC_PAIR_NO_HEARTBEAT_THREAD). */
SHMC_API int shmc_pair_heartbeat(shmc_pair_t *pair);
SHMC_API int shmc_pair_stats(shmc_pair_t *pair, shmc_pair_stats_t *stats);
/* Leaves the pair: this side's queue is closed (the remote reads what is queued, then sees it gone). */
SHMC_API int shmc_pair_close(shmc_pair_t *pair);

/* ---- STREAM: typed frames (video, point clouds, tensors) from one writer to any number of readers ----
 * A stream's schema is a list of named fields, each a dtype and a shape, declared once by its writer
 * and stored in the segment, so readers discover it (and may insist on one: SHMC_ESCHEMA otherwise).
 * A frame holds every field at a 64-byte aligned offset; each frame carries its sequence number
 * (0, 1, 2... per writer generation), a timestamp, the bytes used in each field (up to its capacity:
 * variable-length point clouds) and, with SHMC_STREAM_CHECKSUM, a 64-bit checksum (XXH64) of those
 * bytes that readers verify. A write-once metadata block holds what never changes (camera intrinsics as
 * JSON...). Each reader has a control ring back to the writer. Frames are written in place (loan,
 * commit) or with one copy (write), and read in place until released.
 *  - Lossless streams (SHMC_LOSSLESS): every reader gets every frame in order; the writer waits for the
 *    slowest live reader (a frame held by a reader is never overwritten; dead readers are reaped).
 *  - Latest-frame streams (default): the writer never waits; a reader that falls behind skips frames
 *    (counted in dropped); a frame a reader holds is pinned and never overwritten while held.
 * Docs: docs/stream.md. Layout: docs/memory-layout.md. */

enum shmc_dtype {
    SHMC_DTYPE_BOOL = 1, SHMC_DTYPE_I8 = 2, SHMC_DTYPE_I16 = 3, SHMC_DTYPE_I32 = 4, SHMC_DTYPE_I64 = 5,
    SHMC_DTYPE_U8 = 6, SHMC_DTYPE_U16 = 7, SHMC_DTYPE_U32 = 8, SHMC_DTYPE_U64 = 9,
    SHMC_DTYPE_F16 = 10, SHMC_DTYPE_BF16 = 11, SHMC_DTYPE_F32 = 12, SHMC_DTYPE_F64 = 13
};

#define SHMC_STREAM_MAX_FIELDS 64   /* fields per schema */
#define SHMC_STREAM_MAX_DIMS 8      /* dimensions per field */
#define SHMC_STREAM_NAME_CAP 40     /* bytes of a field name, its NUL included */

/* Flags of shmc_stream_options_t, besides SHMC_LOSSLESS, SHMC_SHARE_GROUP and SHMC_SHARE_ALL above. */
#define SHMC_STREAM_CHECKSUM 8      /* each frame carries an XXH64 of its used bytes; readers verify it */
#define SHMC_STREAM_READER_DEATH 16 /* the writer's next loan/write after a reader died returns
                                       SHMC_EREADERDEAD once (nothing written); the call after proceeds */
/* Flag of shmc_stream_reader_options_t. */
#define SHMC_STREAM_MANUAL_FOLLOW 1 /* never move to a restarted writer's segment by itself: acquire
                                       returns SHMC_EWRITERDEAD / SHMC_ECLOSED and the caller moves with
                                       shmc_stream_reader_follow() when nothing points into the old one */

typedef struct shmc_stream_writer shmc_stream_writer_t;
typedef struct shmc_stream_reader shmc_stream_reader_t;

/* One field of a schema. Inputs: name, dtype, ndim, shape. Outputs (filled by the library when it
 * reports a schema; ignored on input): offset and capacity. */
typedef struct shmc_stream_field {
    char name[40];        /* 1..39 bytes of UTF-8, NUL-terminated, unique within the schema */
    uint32_t dtype;       /* enum shmc_dtype */
    uint32_t ndim;        /* 0 (a scalar) .. SHMC_STREAM_MAX_DIMS */
    uint64_t shape[8];    /* shape[0 .. ndim-1], each >= 1; the rest 0 */
    uint64_t offset;      /* out: offset of the field from shmc_stream_frame_t.data, a multiple of 64 */
    uint64_t capacity;    /* out: the field's size in bytes, itemsize x the product of its shape */
} shmc_stream_field_t;

typedef struct shmc_stream_options {
    uint32_t size;         /* sizeof(shmc_stream_options_t); set by shmc_stream_options_init() */
    uint32_t num_slots;    /* frames in the ring, 2 .. 65536; 0 (default) = 4 lossless, max_readers + 2
                              latest-frame (the least there: each reader may pin one frame) */
    uint32_t max_readers;  /* readers attached at once, 1 .. 253; default 4 */
    uint32_t flags;        /* SHMC_LOSSLESS | SHMC_STREAM_CHECKSUM | SHMC_STREAM_READER_DEATH |
                              SHMC_SHARE_GROUP | SHMC_SHARE_ALL; default 0 */
    uint32_t metadata_cap; /* bytes of the write-once metadata block, 0 .. 16 MiB; default 4096 */
    uint32_t control_cap;  /* bytes of each reader's control ring, 64 .. 16 MiB; default 4096 */
} shmc_stream_options_t;

typedef struct shmc_stream_reader_options {
    uint32_t size;              /* sizeof(shmc_stream_reader_options_t); set by its init function */
    uint32_t spin_us;           /* how long an acquire spins before it sleeps; default 50 */
    int64_t connect_timeout_ns; /* how long open waits for a writer; default 5 s, 0 = no wait */
    uint32_t flags;             /* SHMC_STREAM_MANUAL_FOLLOW; default 0 */
    uint32_t reserved;          /* must be 0 */
} shmc_stream_reader_options_t;

/* A frame: what a writer's loan or a reader's acquire hands out. The pointed-to arrays belong to the
 * handle and stay valid until its next call; the frame's memory until commit/cancel or release. */
typedef struct shmc_stream_frame {
    uint32_t size;          /* sizeof(shmc_stream_frame_t); the caller sets it */
    uint32_t nfields;
    uint64_t seq;           /* the frame's sequence number (writer: the one commit will give it) */
    uint64_t timestamp_ns;  /* the commit's timestamp (CLOCK_MONOTONIC when the writer passed 0) */
    uint64_t checksum;      /* XXH64 of the used bytes with SHMC_STREAM_CHECKSUM, else 0 */
    uint64_t nbytes;        /* used bytes of all fields */
    uint64_t dropped;       /* reader: frames of this writer generation skipped just before this one */
    void *data;             /* the frame in shared memory: field i at data + field[i].offset (readers:
                               read only) */
    void **field_data;      /* nfields pointers: field i's first byte */
    const uint64_t *field_nbytes; /* nfields used sizes (validated); writer: the capacities */
} shmc_stream_frame_t;

/* One reader, as a writer or an inspector sees it. */
typedef struct shmc_stream_reader_info {
    uint32_t reader_id;       /* its registry index: the reader_id of its control messages */
    int32_t pid;
    int32_t alive;            /* 1 if its process lives */
    int32_t holding;          /* 1 while it holds a frame */
    uint64_t heartbeat_age_ns;
    uint64_t frames_seen;     /* frames it has released */
    uint64_t last_seq;        /* the sequence number of the last frame it released (valid if frames_seen) */
    uint64_t dropped;         /* frames it skipped */
    uint64_t cursor;          /* the next ring position it reads */
    uint64_t control_pending; /* bytes of its control messages the writer has not polled yet */
} shmc_stream_reader_info_t;

/* A stream as shmc_stream_inspect() finds it. */
typedef struct shmc_stream_info {
    uint32_t size;            /* sizeof(shmc_stream_info_t); the caller sets it */
    uint32_t nfields;
    uint32_t num_slots;
    uint32_t max_readers;
    uint32_t flags;
    uint32_t metadata_cap;
    uint32_t metadata_len;    /* 0 until written */
    int32_t metadata_written; /* 1 once the write-once metadata is complete */
    uint32_t control_cap;
    int32_t writer_pid;       /* 0 if no writer is registered */
    int32_t writer_alive;
    uint32_t readers;         /* registered readers (live or dead, not reaped yet) */
    uint32_t state;           /* 1 ready, 2 closed, 3 being replaced */
    uint32_t reserved;
    uint64_t frame_capacity;  /* bytes of all fields of a frame */
    uint64_t frames;          /* frames committed by this writer generation: the next sequence number */
    uint64_t last_timestamp_ns;
    uint64_t session_id;
    uint64_t segment_bytes;
} shmc_stream_info_t;

/* Counters of one stream endpoint. */
typedef struct shmc_stream_stats {
    uint32_t size;            /* sizeof(shmc_stream_stats_t); the caller sets it */
    uint32_t readers;         /* live readers of the stream */
    int32_t writer_alive;
    uint32_t num_slots;
    uint64_t frame_capacity;
    uint64_t frames;          /* writer: committed; reader: received (released) */
    uint64_t dropped;         /* reader: frames skipped (overwritten before it read them, or passed over
                                 by acquire_latest); writer: positions skipped because readers pinned them */
    uint64_t next_seq;        /* the next sequence number the writer gives */
    uint64_t reconnects;      /* reader: times it moved to a restarted writer */
    uint64_t readers_died;    /* writer: readers found dead and reaped */
    uint64_t readers_evicted; /* writer: live readers dropped by shmc_stream_writer_reap(stale_ns) */
    uint64_t control_sent;    /* reader: control messages sent */
    uint64_t control_received; /* writer: control messages polled */
    uint64_t checksum_failures; /* reader: frames skipped because their checksum did not match */
} shmc_stream_stats_t;

SHMC_API void shmc_stream_options_init(shmc_stream_options_t *opts);
SHMC_API void shmc_stream_reader_options_init(shmc_stream_reader_options_t *opts);

/* Creates stream `name` with the schema fields[nfields] (1 .. SHMC_STREAM_MAX_FIELDS; SHMC_ESCHEMA
 * for an invalid one: bad dtype, shape, duplicate or empty name; SHMC_EMSGSIZE if a frame would exceed
 * 1 GiB). A stream whose writer died is replaced (its readers follow); SHMC_EBUSY if a live writer
 * has it. opts may be NULL. Blocks at most 5 s on a concurrent creation. */
SHMC_API int shmc_stream_writer_open(const char *name, const shmc_stream_field_t *fields, uint32_t nfields,
                                     const shmc_stream_options_t *opts, shmc_stream_writer_t **out);
/* Writes the write-once metadata block (len <= metadata_cap, else SHMC_EMSGSIZE); SHMC_EWRITTEN if it
 * was written already. Never waits. */
SHMC_API int shmc_stream_writer_set_metadata(shmc_stream_writer_t *w, const void *data, size_t len);
/* Lends the next frame for writing in place: fills *frame (data, field_data, capacities, the seq it
 * will get). Lossless: waits up to timeout_ns for the slowest live reader (SHMC_EAGAIN with 0,
 * SHMC_ETIMEDOUT); latest-frame: never waits for readers. SHMC_EREADERDEAD: see the flag. */
SHMC_API int shmc_stream_writer_loan(shmc_stream_writer_t *w, shmc_stream_frame_t *frame, int64_t timeout_ns);
/* Publishes the loaned frame with timestamp_ns (0 = now, CLOCK_MONOTONIC) and the bytes used in each
 * field (field_nbytes[nfields], each <= its capacity, else SHMC_EMSGSIZE and the loan stays open;
 * NULL = every field full). */
SHMC_API int shmc_stream_writer_commit(shmc_stream_writer_t *w, uint64_t timestamp_ns,
                                       const uint64_t *field_nbytes);
/* Gives the loaned frame back unpublished. */
SHMC_API int shmc_stream_writer_cancel(shmc_stream_writer_t *w);
/* Loan, copy field i from field_data[i] (field_nbytes[i] bytes; NULL = capacity), commit: one call,
 * one copy. SHMC_EMSGSIZE (nothing written) if a field is larger than its capacity. */
SHMC_API int shmc_stream_writer_write(shmc_stream_writer_t *w, const void *const *field_data,
                                      const uint64_t *field_nbytes, uint64_t timestamp_ns, int64_t timeout_ns);
/* Takes the oldest control message of any reader: *reader_id, *pid, *type, and its data into buf[cap]
 * (*len its size; SHMC_ETRUNC with *len set and nothing taken if cap is too small). SHMC_EAGAIN if
 * there is none. Never waits. */
SHMC_API int shmc_stream_writer_poll_control(shmc_stream_writer_t *w, uint32_t *reader_id, int32_t *pid,
                                             uint32_t *type, void *buf, size_t cap, size_t *len);
/* Lists the registered readers into out[max]; *count receives how many there are (may exceed max). */
SHMC_API int shmc_stream_writer_readers(shmc_stream_writer_t *w, shmc_stream_reader_info_t *out, uint32_t max,
                                        uint32_t *count);
/* Reaps dead readers now (the writer also does it by itself every 100 ms), and with stale_ns > 0
 * evicts live readers whose heartbeat is older than that (a lossless writer stops waiting for them; an
 * evicted reader resumes at the newest frame, counting what it missed as dropped, and the frame it held
 * releases as SHMC_ESTALE). *reaped (may be NULL) receives how many were removed. */
SHMC_API int shmc_stream_writer_reap(shmc_stream_writer_t *w, int64_t stale_ns, uint32_t *reaped);
/* Copies the schema (with offsets and capacities) into out[max]; *count receives nfields. */
SHMC_API int shmc_stream_writer_schema(shmc_stream_writer_t *w, shmc_stream_field_t *out, uint32_t max,
                                       uint32_t *count);
SHMC_API int shmc_stream_writer_stats(shmc_stream_writer_t *w, shmc_stream_stats_t *stats);
/* Leaves the stream like close (an open loan is cancelled) but keeps it mapped, so arrays over loans
 * stay valid memory; every later call but close returns SHMC_ECLOSED. */
SHMC_API int shmc_stream_writer_detach(shmc_stream_writer_t *w);
/* Leaves the stream: marks it closed and unlinks it (readers see SHMC_ECLOSED after the last frame). */
SHMC_API int shmc_stream_writer_close(shmc_stream_writer_t *w);

/* Attaches to stream `name`, waiting up to opts->connect_timeout_ns for its writer (SHMC_ENOENT).
 * With expected != NULL the stream's schema must equal expected[nfields] (names, dtypes, shapes; in
 * order), else SHMC_ESCHEMA. SHMC_EPEERS if max_readers readers are attached. The reader sees the
 * frames committed after this returns. */
SHMC_API int shmc_stream_reader_open(const char *name, const shmc_stream_field_t *expected, uint32_t nfields,
                                     const shmc_stream_reader_options_t *opts, shmc_stream_reader_t **out);
/* Holds the next frame (every frame in order; frames overwritten before it could read them are
 * skipped and counted in frame->dropped), waiting up to timeout_ns. The frame stays valid until
 * shmc_stream_reader_release (one frame at a time: SHMC_EINVAL while one is held). When no frame is
 * left: SHMC_EWRITERDEAD if the writer died, SHMC_ECLOSED if it closed the stream; a restarted writer
 * is followed (unless SHMC_STREAM_MANUAL_FOLLOW). SHMC_ECHECKSUM: the frame failed its checksum (it is
 * skipped). */
SHMC_API int shmc_stream_reader_acquire(shmc_stream_reader_t *r, shmc_stream_frame_t *frame, int64_t timeout_ns);
/* As acquire, but the newest complete frame (the older ones not read yet are skipped and counted). */
SHMC_API int shmc_stream_reader_acquire_latest(shmc_stream_reader_t *r, shmc_stream_frame_t *frame,
                                               int64_t timeout_ns);
/* Gives the held frame back. SHMC_ESTALE if the reader was evicted meanwhile (the frame may have been
 * overwritten while held). */
SHMC_API int shmc_stream_reader_release(shmc_stream_reader_t *r);
/* The metadata block: *data points into the segment (valid until the next acquire or close), *len its
 * size. SHMC_EAGAIN if the writer has not written it (yet). */
SHMC_API int shmc_stream_reader_metadata(shmc_stream_reader_t *r, const void **data, size_t *len);
/* Copies the schema (with offsets and capacities) into out[max]; *count receives nfields. */
SHMC_API int shmc_stream_reader_schema(shmc_stream_reader_t *r, shmc_stream_field_t *out, uint32_t max,
                                       uint32_t *count);
/* Queues a control message (type, len bytes) for the writer; SHMC_EAGAIN if the reader's control ring
 * is full (the writer has not polled), SHMC_EMSGSIZE if it can never fit. Never waits. */
SHMC_API int shmc_stream_reader_send_control(shmc_stream_reader_t *r, uint32_t type, const void *data,
                                             size_t len);
/* 1 if the writer's process lives, else 0. */
SHMC_API int shmc_stream_reader_writer_alive(shmc_stream_reader_t *r);
/* With SHMC_STREAM_MANUAL_FOLLOW: moves to a restarted writer's segment if there is one (1), else 0;
 * SHMC_ESCHEMA if its schema is not this reader's; SHMC_EINVAL while a frame is held. */
SHMC_API int shmc_stream_reader_follow(shmc_stream_reader_t *r);
SHMC_API int shmc_stream_reader_stats(shmc_stream_reader_t *r, shmc_stream_stats_t *stats);
/* Leaves the stream (a lossless writer stops waiting for this reader) but keeps it mapped, so views of
 * frames stay readable memory; every later call but close returns SHMC_ECLOSED. */
SHMC_API int shmc_stream_reader_detach(shmc_stream_reader_t *r);
SHMC_API int shmc_stream_reader_close(shmc_stream_reader_t *r);

/* Reads stream `name` without joining it (read-only; never writes to the segment, never blocks):
 * *info, the schema into fields[max_fields], the readers into readers[max_readers] (*nreaders receives
 * how many are registered) and the metadata into metadata[metadata_cap] (info->metadata_len its size;
 * copied only if it fits). Any array may be NULL with its count 0. SHMC_ENOENT if there is no stream. */
SHMC_API int shmc_stream_inspect(const char *name, shmc_stream_info_t *info, shmc_stream_field_t *fields,
                                 uint32_t max_fields, shmc_stream_reader_info_t *readers, uint32_t max_readers,
                                 uint32_t *nreaders, void *metadata, size_t metadata_cap);
/* XXH64 of len bytes with seed 0: the checksum frames carry (to check a frame's data yourself). */
SHMC_API uint64_t shmc_stream_checksum(const void *data, size_t len);

/* SHMC_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* SHMCOMM_H */
