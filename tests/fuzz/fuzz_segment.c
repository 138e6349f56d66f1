/*
 * libFuzzer harness for libshm: segments whose bytes are arbitrary must never make the library crash,
 * read or write outside its mapping, hang, or return anything but a clean SHMC_E* code (DESIGN.md,
 * "Shared-memory rules", rule 1: never trust the segment).
 *
 * Two targets, built from this one file by tests/fuzz/build.sh:
 *
 *  fuzz_segment (default)  A real keeper (publisher, pusher, replier or stream writer) creates a small
 *      channel; the
 *      input then drives a sequence of operations: followers attach, messages are sent, and patches
 *      overwrite any bytes of the live segment (header, registry entries, ring control words, slot
 *      words, lengths, REQ/REP mailbox words) between receives of every kind, stats, liveness checks
 *      and shmc_segment_info.
 *
 *  fuzz_raw (-DFUZZ_RAW)   The input (after two selector bytes) is the whole segment: it is written
 *      into a fresh shm object with the shmcomm_ prefix, then inspected with shmc_segment_info and
 *      attached as a follower, which receives, polls, reports stats and closes.
 *
 * Every call is bounded: timeouts are 0 and followers connect with connect_timeout_ns = 0. Every
 * segment is unlinked at the end of its iteration; names carry the pid (and a counter), so parallel
 * fuzzing processes never meet, and LLVMFuzzerInitialize removes what a crashed run left behind.
 *
 * Out-of-bounds reads of the shared mapping are not visible to ASan (it does not poison mmap'd
 * memory), so the library's mmap calls are wrapped (-Wl,--wrap=mmap,--wrap=munmap): every shared
 * mapping gets PROT_NONE guard pages on both sides, and a stray access faults. Views handed out by a
 * loan are checked against the follower's own mapping.
 */
#include "primitives/channel.h"
#include "primitives/reader.h"
#include "primitives/ring.h"
#include "primitives/stream_layout.h"
#include "primitives/writer.h"
#include "shmcomm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOWEST_CODE SHMC_EWRITTEN /* the most negative SHMC_E* code the targets can meet */
#define SELF_PID_MARKER 0x5E1F5E1Fu /* fuzz_raw: an aligned u32 with this value becomes our pid */
#define DEAD_PID 0x3FFFFFF0        /* above any pid_max: never alive */

static void fail(const char *what, long long value, int line)
{
    fprintf(stderr, "fuzz_segment.c:%d: %s (%lld)\n", line, what, value);
    abort();
}
#define REQUIRE(cond, what, value) \
    do { if (!(cond)) fail(what, (long long)(value), __LINE__); } while (0)
/* A result of the public API: 0, or a SHMC_E* code. Evaluates `call` once; returns its result. */
static int check_rc(int rc, const char *call, int line)
{
    if (rc > 0 || rc < LOWEST_CODE) {
        fprintf(stderr, "fuzz_segment.c:%d: not a SHMC_E* code: %s returned %d\n", line, call, rc);
        abort();
    }
    return rc;
}
#define CHECK_RC(call) check_rc((call), #call, __LINE__)

/* ------------------------------------------------------------------ guard pages around mappings */

void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __real_munmap(void *addr, size_t len);

typedef struct guarded {
    unsigned char *user, *reservation;
    size_t reserved;
} guarded_t;
static guarded_t guarded[64];

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (addr || fd < 0 || !(flags & MAP_SHARED) || len == 0)
        return __real_mmap(addr, len, prot, flags, fd, off);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (len + page - 1) / page * page;
    size_t total = body + 2 * page;
    unsigned char *res = __real_mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                                     -1, 0);
    if (res == MAP_FAILED) return MAP_FAILED;
    void *p = __real_mmap(res + page, len, prot, flags | MAP_FIXED, fd, off);
    if (p == MAP_FAILED) {
        int err = errno;
        __real_munmap(res, total);
        errno = err;
        return MAP_FAILED;
    }
    for (size_t i = 0; i < sizeof guarded / sizeof guarded[0]; i++) {
        if (!guarded[i].user) {
            guarded[i] = (guarded_t){p, res, total};
            return p;
        }
    }
    /* Table full (more than 64 live mappings): keep the guards, forget the reservation. */
    return p;
}

int __wrap_munmap(void *addr, size_t len)
{
    for (size_t i = 0; i < sizeof guarded / sizeof guarded[0]; i++) {
        if (guarded[i].user && guarded[i].user == addr) {
            guarded_t g = guarded[i];
            guarded[i].user = NULL;
            return __real_munmap(g.reservation, g.reserved);
        }
    }
    return __real_munmap(addr, len);
}

/* ------------------------------------------------------------------ names and cleanup */

static unsigned long iteration;

/* OS name of this iteration's channel: "<tag>/<pid>/<counter>" for `pattern`. */
static void make_names(const char *tag, uint32_t pattern, char *name, size_t name_cap, char *os_name)
{
    snprintf(name, name_cap, "%s/%d/%lu", tag, (int)getpid(), iteration++);
    int rc = shmc_os_name(name, pattern, os_name, SHMI_OS_NAME_CAP);
    REQUIRE(rc == 0, "shmc_os_name", rc);
}

/* Removes segments of earlier fuzzing processes that died (a crash or a timeout ends a process
 * without its cleanup): their names hold "fuzz+2f<pid>+2f" or "fuzzraw+2f<pid>+2f". */
static void sweep_dead_segments(void)
{
    DIR *dir = opendir("/dev/shm");
    if (!dir) return;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (strncmp(e->d_name, "shmcomm_", 8) != 0) continue;
        const char *p = strstr(e->d_name, "_fuzz+2f");
        if (!p) p = strstr(e->d_name, "_fuzzraw+2f");
        if (!p) continue;
        p = strstr(p, "+2f") + 3;
        long pid = strtol(p, NULL, 10);
        if (pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) shmc_segment_unlink(e->d_name);
    }
    closedir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    sweep_dead_segments();
    return 0;
}

/* ------------------------------------------------------------------ input */

typedef struct input {
    const uint8_t *p;
    size_t n;
} input_t;

static uint8_t u8(input_t *in)
{
    if (!in->n) return 0;
    in->n--;
    return *in->p++;
}
static uint16_t u16(input_t *in) __attribute__((unused));
static uint16_t u16(input_t *in)
{
    uint16_t lo = u8(in);
    return (uint16_t)(lo | (u8(in) << 8));
}

/* ------------------------------------------------------------------ checks shared by both targets */

static void check_segment_info(const char *os_name)
{
    shmc_segment_info_t info;
    memset(&info, 0xA5, sizeof info);
    info.size = sizeof info;
    int rc = shmc_segment_info(os_name, &info);
    CHECK_RC(rc);
    if (getenv("FUZZ_TRACE"))
        fprintf(stderr, "segment_info %s: %d (publishers %u, subscribers %u, stale %d)\n", os_name, rc,
                info.publishers, info.subscribers, info.stale);
    if (rc == 0) REQUIRE(memchr(info.channel, 0, sizeof info.channel) != NULL, "info.channel unterminated", 0);
}

static void check_stats(int rc, const shmc_stats_t *s)
{
    CHECK_RC(rc);
    if (rc == 0) REQUIRE(s->size == sizeof *s, "stats size", s->size);
}

/* A receive into buf[cap]: *len is set on success and ETRUNC only. */
static void check_recv(int rc, size_t cap, size_t len)
{
    CHECK_RC(rc);
    if (rc == 0) REQUIRE(len <= cap, "received more than the buffer holds", len);
    if (rc == SHMC_ETRUNC) REQUIRE(len > cap, "ETRUNC for a message that fits", len);
}

/* next(): a size within the own buffer (as it is after the call), or a code. */
static void check_next(int64_t n, int buffer_rc, size_t cap)
{
    REQUIRE(n >= LOWEST_CODE, "not a SHMC_E* code", n);
    CHECK_RC(buffer_rc);
    if (n > 0) REQUIRE((uint64_t)n <= cap, "next() larger than its buffer", n);
}

static void check_many(int rc, size_t cap, const size_t *lens, size_t max, size_t count)
{
    CHECK_RC(rc);
    REQUIRE(count <= max, "recv_many count", count);
    size_t total = 0;
    for (size_t i = 0; i < count; i++) total += lens[i];
    REQUIRE(total <= cap, "recv_many wrote past cap", total);
    if (rc) REQUIRE(count == 0, "recv_many count on failure", count);
}

/* A loaned view must lie inside the slots of the follower's own mapping. */
static void check_view(const shmi_reader_t *r, const void *view, size_t len)
{
    const unsigned char *base = r->ch.seg.base;
    const unsigned char *v = view;
    REQUIRE(base != NULL, "loan on an unmapped follower", 0);
    const unsigned char *lo = r->ch.ring.slots;
    const unsigned char *hi = lo + r->ch.ring.num_slots * r->ch.ring.slot_stride;
    REQUIRE(lo >= base && hi <= base + r->ch.seg.size, "ring outside the mapping", hi - base);
    REQUIRE(v >= lo + SHMI_SLOT_HEADER_BYTES && v + len <= hi, "loaned view outside the ring", v - base);
    REQUIRE(len <= r->ch.geometry.slot_size, "loaned view longer than a slot", len);
    volatile unsigned sum = 0; /* touch every byte */
    for (size_t i = 0; i < len; i++) sum += v[i];
    (void)sum;
}

static void *alloc_exact(size_t cap) { return malloc(cap ? cap : 1); } /* ASan sees overflows */

static int64_t sub_next_any(shmc_sub_t *sub, int latest)
{
    return latest ? shmc_sub_next_latest(sub, 0) : shmc_sub_next(sub, 0);
}

/* Every receive of a subscriber, chosen by `op`, with a buffer of `cap` bytes. */
static void sub_receive(shmc_sub_t *sub, int op, size_t cap, int *loaned)
{
    size_t len = 0;
    const void *buf;
    size_t bcap;
    switch (op % 6) {
    case 0:
    case 1: {
        void *b = alloc_exact(cap);
        int rc = op % 6 == 0 ? shmc_sub_recv(sub, b, cap, &len, 0) : shmc_sub_latest(sub, b, cap, &len, 0);
        if (*loaned) REQUIRE(rc == SHMC_EINVAL, "receive while a loan is out", rc);
        check_recv(rc, cap, len);
        free(b);
        break;
    }
    case 2:
    case 3: {
        int64_t n = sub_next_any(sub, op % 6 == 3);
        int brc = shmc_sub_buffer(sub, &buf, &bcap);
        check_next(n, brc, bcap);
        break;
    }
    case 4: {
        void *b = alloc_exact(cap);
        size_t lens[4], count = 99;
        size_t max = 1 + (size_t)(op / 6) % 4;
        int rc = shmc_sub_recv_many(sub, b, cap, lens, max, &count, 0);
        check_many(rc, cap, lens, max, count);
        free(b);
        break;
    }
    case 5: { /* loan, or release the loan that is out */
        if (*loaned) {
            int rc = shmc_sub_release(sub);
            CHECK_RC(rc);
            *loaned = 0;
            break;
        }
        const void *view = NULL;
        int rc = shmc_sub_loan(sub, &view, &len, 0);
        CHECK_RC(rc);
        if (rc == 0) {
            check_view((const shmi_reader_t *)sub, view, len);
            *loaned = 1;
        }
        break;
    }
    }
}

static void pull_receive(shmc_pull_t *pull, int op, size_t cap)
{
    size_t len = 0;
    const void *buf;
    size_t bcap;
    switch (op % 3) {
    case 0: {
        void *b = alloc_exact(cap);
        check_recv(shmc_pull_recv(pull, b, cap, &len, 0), cap, len);
        free(b);
        break;
    }
    case 1: {
        int64_t n = shmc_pull_next(pull, 0);
        check_next(n, shmc_pull_buffer(pull, &buf, &bcap), bcap);
        break;
    }
    case 2: {
        void *b = alloc_exact(cap);
        size_t lens[4], count = 99;
        size_t max = 1 + (size_t)(op / 3) % 4;
        int rc = shmc_pull_recv_many(pull, b, cap, lens, max, &count, 0);
        check_many(rc, cap, lens, max, count);
        free(b);
        break;
    }
    }
}

/* ------------------------------------------------------------------ STREAM, shared by both targets */

/* The schema of the fuzzed streams: two small fields, one with a non-multiple-of-64 size. */
static void stream_schema(shmc_stream_field_t f[2], uint32_t size) __attribute__((unused));
static void stream_schema(shmc_stream_field_t f[2], uint32_t size)
{
    memset(f, 0, 2 * sizeof f[0]);
    snprintf(f[0].name, sizeof f[0].name, "img");
    f[0].dtype = SHMC_DTYPE_U8;
    f[0].ndim = 2;
    f[0].shape[0] = 1 + size % 8;
    f[0].shape[1] = 3;
    snprintf(f[1].name, sizeof f[1].name, "pose");
    f[1].dtype = SHMC_DTYPE_F32;
    f[1].ndim = 1;
    f[1].shape[0] = 2;
}

/* A frame handed out by a reader: every field inside the reader's own mapping, sizes within the
 * capacities; every byte is touched. */
static void check_stream_frame(shmc_stream_reader_t *r, const shmc_stream_frame_t *f)
{
    const shmi_channel_t *ch = (const shmi_channel_t *)r; /* the channel is the reader's first member */
    const unsigned char *base = ch->seg.base;
    shmc_stream_field_t fields[SHMC_STREAM_MAX_FIELDS];
    uint32_t n = 0;
    CHECK_RC(shmc_stream_reader_schema(r, fields, SHMC_STREAM_MAX_FIELDS, &n));
    REQUIRE(f->nfields == n && n >= 1 && n <= SHMC_STREAM_MAX_FIELDS, "frame nfields", f->nfields);
    const unsigned char *lo = ch->ring.slots;
    const unsigned char *hi = lo + ch->ring.num_slots * ch->ring.slot_stride;
    REQUIRE(lo >= base && hi <= base + ch->seg.size, "ring outside the mapping", hi - base);
    for (uint32_t i = 0; i < n; i++) {
        const unsigned char *p = f->field_data[i];
        REQUIRE(f->field_nbytes[i] <= fields[i].capacity, "field larger than its capacity", f->field_nbytes[i]);
        REQUIRE(p >= lo && p + f->field_nbytes[i] <= hi, "field outside the ring", p - base);
        volatile unsigned sum = 0;
        for (uint64_t b = 0; b < f->field_nbytes[i]; b++) sum += p[b];
        (void)sum;
    }
}

/* One reader operation, chosen by `op`. */
static void stream_reader_op(shmc_stream_reader_t *r, int op, int *held)
{
    shmc_stream_frame_t f;
    memset(&f, 0, sizeof f);
    f.size = sizeof f;
    const void *data;
    size_t len;
    switch (op % 8) {
    case 0:
    case 1: {
        int rc = op % 8 ? shmc_stream_reader_acquire_latest(r, &f, 0) : shmc_stream_reader_acquire(r, &f, 0);
        CHECK_RC(rc);
        if (*held) REQUIRE(rc == SHMC_EINVAL || rc == SHMC_ECLOSED, "acquire while holding", rc);
        if (rc == 0) {
            check_stream_frame(r, &f);
            *held = 1;
        }
        break;
    }
    case 2: {
        int rc = shmc_stream_reader_release(r);
        CHECK_RC(rc);
        *held = 0;
        break;
    }
    case 3: {
        int rc = shmc_stream_reader_metadata(r, &data, &len);
        CHECK_RC(rc);
        if (rc == 0) {
            volatile unsigned sum = 0;
            for (size_t i = 0; i < len; i++) sum += ((const unsigned char *)data)[i];
            (void)sum;
        }
        break;
    }
    case 4: {
        unsigned char msg[200];
        memset(msg, op, sizeof msg);
        CHECK_RC(shmc_stream_reader_send_control(r, (uint32_t)op, msg, (size_t)(op * 7) % sizeof msg));
        break;
    }
    case 5: {
        shmc_stream_stats_t s;
        s.size = sizeof s;
        CHECK_RC(shmc_stream_reader_stats(r, &s));
        int alive = shmc_stream_reader_writer_alive(r);
        REQUIRE(alive == 0 || alive == 1, "writer_alive", alive);
        break;
    }
    case 6: {
        int rc = shmc_stream_reader_follow(r);
        REQUIRE(rc == 0 || rc == 1 || (rc < 0 && rc >= LOWEST_CODE), "follow", rc);
        if (rc == 1) *held = 0;
        break;
    }
    default: {
        shmc_stream_field_t fields[SHMC_STREAM_MAX_FIELDS];
        uint32_t n = 0;
        CHECK_RC(shmc_stream_reader_schema(r, fields, SHMC_STREAM_MAX_FIELDS, &n));
        break;
    }
    }
}

static void check_stream_inspect(const char *name)
{
    shmc_stream_info_t info;
    info.size = sizeof info;
    shmc_stream_field_t fields[SHMC_STREAM_MAX_FIELDS];
    shmc_stream_reader_info_t readers[8];
    uint32_t nreaders = 0;
    unsigned char meta[64];
    int rc = shmc_stream_inspect(name, &info, fields, SHMC_STREAM_MAX_FIELDS, readers, 8, &nreaders, meta,
                                 sizeof meta);
    CHECK_RC(rc);
    if (rc == 0) {
        REQUIRE(info.nfields >= 1 && info.nfields <= SHMC_STREAM_MAX_FIELDS, "inspect nfields", info.nfields);
        for (uint32_t i = 0; i < info.nfields; i++)
            REQUIRE(memchr(fields[i].name, 0, sizeof fields[i].name) != NULL, "field name unterminated", i);
    }
}

/* ------------------------------------------------------------------ fuzz_segment: patched live segments */
#ifndef FUZZ_RAW

#define MAX_FOLLOWERS 2

enum { PAT_PUB, PAT_PUB_LOSSLESS, PAT_PIPELINE, PAT_REQREP, PAT_STREAM, PAT_STREAM_LOSSLESS, PAT_KINDS };

typedef struct world {
    int kind;
    uint32_t pattern;
    char name[128];
    char os_name[SHMI_OS_NAME_CAP];
    shmc_pub_t *pub;
    shmc_push_t *push;
    shmc_rep_t *rep;
    shmc_sub_t *sub[MAX_FOLLOWERS];
    int sub_loaned[MAX_FOLLOWERS];
    shmc_pull_t *pull[MAX_FOLLOWERS];
    shmc_req_t *req[MAX_FOLLOWERS];
    shmc_stream_writer_t *sw;
    int sw_loaned;
    shmc_stream_reader_t *sr[MAX_FOLLOWERS];
    int sr_held[MAX_FOLLOWERS];
    /* our own mapping of the segment, for the patches */
    unsigned char *map;
    size_t map_size;
    shmi_header_t layout; /* the header as the keeper wrote it: where the regions are */
    uint32_t mailbox_stride;
} world_t;

static const uint64_t interesting64[] = {
    0, 1, 2, 3, 4, 7, 8, 63, 64, 255, 256, 1023, 1024, 1025, 4096, 0x7FFFFFFFull, 0x80000000ull,
    0xFFFFFFFFull, 1ull << 32, 1ull << 40, (1ull << 54) - 1, (1ull << 63) - 1, 1ull << 63,
    UINT64_MAX - 1023, UINT64_MAX - 1, UINT64_MAX};
static const uint32_t interesting32[] = {0, 1, 2, 3, 4, 7, 8, 31, 32, 33, 63, 64, 65, 255, 256, 4096,
                                         0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFEu, 0xFFFFFFFFu};

static void world_open_follower(world_t *w, unsigned k)
{
    shmc_sub_options_t o;
    shmc_sub_options_init(&o);
    o.connect_timeout_ns = 0;
    o.spin_us = 0;
    int rc = 0;
    switch (w->pattern) {
    case SHMC_PATTERN_PUBSUB:
        if (w->sub[k]) return;
        rc = shmc_sub_open(w->name, &o, &w->sub[k]);
        w->sub_loaned[k] = 0;
        break;
    case SHMC_PATTERN_PIPELINE:
        if (w->pull[k]) return;
        rc = shmc_pull_open(w->name, &o, &w->pull[k]);
        break;
    case SHMC_PATTERN_STREAM: {
        if (w->sr[k]) return;
        shmc_stream_reader_options_t so;
        shmc_stream_reader_options_init(&so);
        so.connect_timeout_ns = 0;
        so.spin_us = 0;
        so.flags = k ? SHMC_STREAM_MANUAL_FOLLOW : 0;
        rc = shmc_stream_reader_open(w->name, NULL, 0, &so, &w->sr[k]);
        w->sr_held[k] = 0;
        break;
    }
    default:
        if (w->req[k]) return;
        rc = shmc_req_open(w->name, &o, &w->req[k]);
        break;
    }
    CHECK_RC(rc);
}

static void world_close_follower(world_t *w, unsigned k)
{
    CHECK_RC(shmc_sub_close(w->sub[k]));
    CHECK_RC(shmc_pull_close(w->pull[k]));
    CHECK_RC(shmc_req_close(w->req[k]));
    CHECK_RC(shmc_stream_reader_close(w->sr[k]));
    w->sr[k] = NULL;
    w->sr_held[k] = 0;
    w->sub[k] = NULL;
    w->pull[k] = NULL;
    w->req[k] = NULL;
    w->sub_loaned[k] = 0;
}

/* Start of a patch region, and its size. */
static void region(world_t *w, uint8_t which, uint8_t index, uint64_t *start, uint64_t *size)
{
    const shmi_header_t *h = &w->layout;
    switch (which % 6) {
    case 0: *start = 0; *size = SHMI_HEADER_BYTES; return;
    case 1: *start = h->registry_offset + (uint64_t)(index % h->max_peers) * SHMI_PEER_BYTES;
            *size = SHMI_PEER_BYTES; return;
    case 2: *start = h->ring_offset; *size = SHMI_RING_CTRL_BYTES; return;
    case 3: *start = h->slots_offset + (uint64_t)(index % h->num_slots) * h->slot_stride;
            *size = h->slot_stride; return;
    case 4:
        if (h->extra_offset) { /* STREAM: a 256-byte window of the stream region */
            uint64_t at = (uint64_t)index * 64 % h->extra_bytes;
            *start = h->extra_offset + at;
            *size = h->extra_bytes - at < 256 ? h->extra_bytes - at : 256;
            return;
        }
        if (h->mailbox_offset) {
            *start = h->mailbox_offset + (uint64_t)(index % h->max_peers) * w->mailbox_stride;
            *size = w->mailbox_stride;
            return;
        }
        /* fall through: no mailboxes in this pattern */
    default: *start = 0; *size = w->map_size; return;
    }
}

/* OP_PATCH: overwrites bytes of the live segment, as a buggy or hostile peer would. */
static void world_patch(world_t *w, input_t *in)
{
    uint8_t which = u8(in), index = u8(in);
    uint64_t start, size;
    region(w, which, index, &start, &size);
    uint8_t kind = u8(in);
    uint64_t off = start + (which % 6 == 5 ? u16(in) % size : u8(in) % size);
    unsigned char bytes[16];
    size_t n;
    switch (kind % 6) {
    case 0: /* raw bytes */
        n = 1 + u8(in) % 16;
        for (size_t i = 0; i < n; i++) bytes[i] = u8(in);
        break;
    case 1: { /* a slot word: ((pos + 1) << 10) | (owner << 2) | state */
        uint64_t pos = u8(in), owner = u8(in), state = u8(in);
        uint64_t v = shmi_word(pos, (uint32_t)owner, (uint32_t)(state & 3));
        n = 8;
        memcpy(bytes, &v, 8);
        break;
    }
    case 2: { /* a registry owner word: (pid << 32) | role */
        uint8_t who = u8(in), role = u8(in);
        int32_t pids[] = {(int32_t)getpid(), 0, 1, DEAD_PID, -1};
        uint64_t v = ((uint64_t)(uint32_t)pids[who % 5] << 32) | role;
        n = 8;
        memcpy(bytes, &v, 8);
        break;
    }
    case 3: { /* an interesting u64 */
        uint64_t v = interesting64[u8(in) % (sizeof interesting64 / sizeof interesting64[0])];
        n = 8;
        memcpy(bytes, &v, 8);
        break;
    }
    case 4: { /* an interesting u32 */
        uint32_t v = interesting32[u8(in) % (sizeof interesting32 / sizeof interesting32[0])];
        n = 4;
        memcpy(bytes, &v, 4);
        break;
    }
    default: { /* a mailbox word: (id << 10) | (owner << 2) | state, id small */
        uint64_t id = u8(in), owner = u8(in), state = u8(in) & 3;
        uint64_t v = (id << 10) | (owner << 2) | state;
        n = 8;
        memcpy(bytes, &v, 8);
        break;
    }
    }
    if (n == 8 || n == 4) off &= ~(uint64_t)(n - 1); /* words land on their fields (all aligned) */
    if (off >= w->map_size) return;
    if (n > w->map_size - off) n = (size_t)(w->map_size - off);
    memcpy(w->map + off, bytes, n);
}

static void keeper_send(world_t *w, size_t len, uint8_t fill)
{
    unsigned char *data = alloc_exact(len);
    memset(data, fill, len);
    int rc = 0;
    if (w->pub) rc = shmc_pub_send(w->pub, data, len, 0);
    else if (w->push) rc = shmc_push_send(w->push, data, len, 0);
    else if (w->sw) {
        /* fill picks the call: one-copy write (field sizes from len, one too large: EMSGSIZE), loan +
         * commit, loan + cancel, or the write-once metadata. */
        shmc_stream_field_t f[2];
        uint32_t n = 0;
        CHECK_RC(shmc_stream_writer_schema(w->sw, f, 2, &n));
        uint64_t lens[2] = {len % (f[0].capacity + 2), len % (f[1].capacity + 1)};
        const void *fields[2] = {data, data};
        unsigned char big[16];
        memset(big, fill, sizeof big);
        if (lens[0] > len || lens[1] > len) lens[0] = lens[1] = 0;
        switch (fill % 5) {
        case 0: rc = shmc_stream_writer_write(w->sw, fields, lens, fill, 0); break;
        case 1:
        case 2: {
            shmc_stream_frame_t fr;
            memset(&fr, 0, sizeof fr);
            fr.size = sizeof fr;
            if (!w->sw_loaned) {
                rc = shmc_stream_writer_loan(w->sw, &fr, 0);
                if (rc == 0) {
                    memset(fr.field_data[0], fill, fr.field_nbytes[0]);
                    w->sw_loaned = 1;
                }
            } else if (fill % 5 == 1) {
                rc = shmc_stream_writer_commit(w->sw, 0, (fill & 8) ? lens : NULL);
                if (rc == 0) w->sw_loaned = 0;
            } else {
                rc = shmc_stream_writer_cancel(w->sw);
                w->sw_loaned = 0;
            }
            break;
        }
        case 3: rc = shmc_stream_writer_set_metadata(w->sw, big, len % sizeof big); break;
        default: {
            uint32_t reaped = 0;
            rc = shmc_stream_writer_reap(w->sw, (fill & 1) ? 1 : 0, &reaped);
            break;
        }
        }
    }
    CHECK_RC(rc);
    free(data);
}

static void keeper_stats(world_t *w)
{
    shmc_stats_t s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    if (w->pub) check_stats(shmc_pub_stats(w->pub, &s), &s);
    if (w->push) check_stats(shmc_push_stats(w->push, &s), &s);
    if (w->rep) check_stats(shmc_rep_stats(w->rep, &s), &s);
    if (w->sw) {
        shmc_stream_stats_t ss;
        ss.size = sizeof ss;
        CHECK_RC(shmc_stream_writer_stats(w->sw, &ss));
        shmc_stream_reader_info_t readers[8];
        uint32_t count = 0;
        CHECK_RC(shmc_stream_writer_readers(w->sw, readers, 8, &count));
        check_stream_inspect(w->name);
    }
}

static void follower_stats_alive(world_t *w, unsigned k)
{
    shmc_stats_t s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    if (w->sub[k]) {
        check_stats(shmc_sub_stats(w->sub[k], &s), &s);
        int alive = shmc_sub_publisher_alive(w->sub[k]);
        REQUIRE(alive == 0 || alive == 1, "publisher_alive", alive);
    }
    if (w->pull[k]) {
        check_stats(shmc_pull_stats(w->pull[k], &s), &s);
        int alive = shmc_pull_pusher_alive(w->pull[k]);
        REQUIRE(alive == 0 || alive == 1, "pusher_alive", alive);
    }
    if (w->req[k]) {
        check_stats(shmc_req_stats(w->req[k], &s), &s);
        int alive = shmc_req_replier_alive(w->req[k]);
        REQUIRE(alive == 0 || alive == 1, "replier_alive", alive);
    }
}

/* One receive by follower k (or, for REQ/REP, by the replier when `by_keeper`). */
static void world_receive(world_t *w, unsigned k, uint8_t op, size_t cap, int by_keeper)
{
    if (w->sub[k]) sub_receive(w->sub[k], op, cap, &w->sub_loaned[k]);
    if (w->pull[k]) pull_receive(w->pull[k], op, cap);
    if (w->sr[k] && !by_keeper) stream_reader_op(w->sr[k], op, &w->sr_held[k]);
    if (w->sw && by_keeper) { /* the writer's side: control messages */
        uint32_t id, type;
        int32_t pid;
        size_t len = 0;
        void *b = alloc_exact(cap);
        int rc = shmc_stream_writer_poll_control(w->sw, &id, &pid, &type, b, cap, &len);
        CHECK_RC(rc);
        if (rc == 0) REQUIRE(len <= cap, "control message larger than the buffer", len);
        if (rc == SHMC_ETRUNC) REQUIRE(len > cap, "ETRUNC for a message that fits", len);
        free(b);
    }
    if (w->rep && by_keeper) {
        size_t len = 0;
        const void *buf;
        size_t bcap;
        unsigned char reply[8] = {0};
        switch (op % 4) {
        case 0: {
            void *b = alloc_exact(cap);
            check_recv(shmc_rep_recv(w->rep, b, cap, &len, 0), cap, len);
            free(b);
            break;
        }
        case 1: {
            int64_t n = shmc_rep_next(w->rep, 0);
            check_next(n, shmc_rep_buffer(w->rep, &buf, &bcap), bcap);
            break;
        }
        case 2: /* answer the current request */
            CHECK_RC(shmc_rep_send(w->rep, reply, cap < sizeof reply ? cap : sizeof reply));
            break;
        default: {
            int64_t n = shmc_rep_reply_next(w->rep, reply, cap < sizeof reply ? cap : sizeof reply, 0);
            check_next(n, shmc_rep_buffer(w->rep, &buf, &bcap), bcap);
            break;
        }
        }
    }
    if (w->req[k] && !by_keeper) {
        size_t len = 0;
        const void *buf;
        size_t bcap;
        unsigned char data[16] = {0};
        size_t dlen = cap < sizeof data ? cap : sizeof data;
        switch (op % 5) {
        case 0: CHECK_RC(shmc_req_send(w->req[k], data, dlen, 0)); break;
        case 1: {
            void *b = alloc_exact(cap);
            check_recv(shmc_req_recv(w->req[k], b, cap, &len, 0), cap, len);
            free(b);
            break;
        }
        case 2: {
            int64_t n = shmc_req_next(w->req[k], 0);
            check_next(n, shmc_req_buffer(w->req[k], &buf, &bcap), bcap);
            break;
        }
        case 3: {
            int64_t n = shmc_req_request(w->req[k], data, dlen, 0);
            check_next(n, shmc_req_buffer(w->req[k], &buf, &bcap), bcap);
            break;
        }
        default: CHECK_RC(shmc_req_cancel(w->req[k])); break;
        }
    }
}

/* Enough zero-timeout calls for the housekeeping that runs every 256 idle polls. */
static void world_poll(world_t *w, unsigned k, int by_keeper)
{
    unsigned char small[1];
    size_t len;
    for (int i = 0; i < 257; i++) {
        int rc = 0;
        if (by_keeper) {
            if (w->pub) rc = shmc_pub_send(w->pub, small, 1, 0);
            else if (w->push) rc = shmc_push_send(w->push, small, 1, 0);
            else if (w->rep) rc = shmc_rep_recv(w->rep, NULL, 0, &len, 0);
            else if (w->sw && !w->sw_loaned) {
                const void *none[2] = {small, small};
                uint64_t zero[2] = {0, 0};
                rc = shmc_stream_writer_write(w->sw, none, zero, 0, 0);
            }
        } else if (w->sr[k] && !w->sr_held[k]) {
            shmc_stream_frame_t f;
            memset(&f, 0, sizeof f);
            f.size = sizeof f;
            rc = shmc_stream_reader_acquire(w->sr[k], &f, 0);
            if (rc == 0) {
                check_stream_frame(w->sr[k], &f);
                CHECK_RC(shmc_stream_reader_release(w->sr[k]));
            }
            len = 0;
        } else if (w->sub[k] && !w->sub_loaned[k]) {
            rc = shmc_sub_recv(w->sub[k], NULL, 0, &len, 0);
        } else if (w->pull[k]) {
            rc = shmc_pull_recv(w->pull[k], NULL, 0, &len, 0);
        } else if (w->req[k]) {
            rc = shmc_req_recv(w->req[k], NULL, 0, &len, 0);
        } else {
            return;
        }
        CHECK_RC(rc);
        if (rc == 0 && !by_keeper) REQUIRE(len == 0, "a receive into no buffer returned bytes", len);
    }
}

enum { OP_PATCH, OP_OPEN, OP_CLOSE, OP_SEND, OP_RECV, OP_KEEPER_RECV, OP_POLL, OP_STATS, OP_INFO, OP_COUNT };

static int world_create(world_t *w, const uint8_t *cfg)
{
    memset(w, 0, sizeof *w);
    w->kind = cfg[0] % PAT_KINDS;
    w->pattern = w->kind == PAT_PIPELINE ? SHMC_PATTERN_PIPELINE
                 : w->kind == PAT_REQREP ? SHMC_PATTERN_REQREP
                 : w->kind >= PAT_STREAM ? SHMC_PATTERN_STREAM : SHMC_PATTERN_PUBSUB;
    make_names("fuzz", w->pattern, w->name, sizeof w->name, w->os_name);
    shmc_pub_options_t o;
    shmc_pub_options_init(&o);
    o.num_slots = 2 + cfg[1] % 7;  /* 2..8: powers of two and not */
    o.slot_size = 1 + cfg[2] % 96; /* 1..96 */
    o.max_peers = 2 + cfg[3] % 5;  /* 2..6 */
    if (w->kind == PAT_PUB_LOSSLESS) o.flags = SHMC_LOSSLESS;
    int rc;
    if (w->pattern == SHMC_PATTERN_PUBSUB) rc = shmc_pub_open(w->name, &o, &w->pub);
    else if (w->pattern == SHMC_PATTERN_PIPELINE) rc = shmc_push_open(w->name, &o, &w->push);
    else if (w->pattern == SHMC_PATTERN_STREAM) {
        shmc_stream_field_t f[2];
        stream_schema(f, cfg[2]);
        shmc_stream_options_t so;
        shmc_stream_options_init(&so);
        so.max_readers = o.max_peers - 1;
        so.num_slots = so.max_readers + 2 + cfg[1] % 3;
        so.flags = (w->kind == PAT_STREAM_LOSSLESS ? SHMC_LOSSLESS : 0) |
                   ((cfg[3] & 0x80) ? SHMC_STREAM_CHECKSUM : 0) | SHMC_STREAM_READER_DEATH;
        so.metadata_cap = 16;
        so.control_cap = 64 + 8 * (cfg[1] % 4);
        rc = shmc_stream_writer_open(w->name, f, 2, &so, &w->sw);
    } else rc = shmc_rep_open(w->name, &o, &w->rep);
    REQUIRE(rc == 0, "keeper open", rc);

    char path[300];
    snprintf(path, sizeof path, "/%s", w->os_name);
    int fd = shm_open(path, O_RDWR, 0);
    REQUIRE(fd >= 0, "shm_open of the keeper's segment", errno);
    struct stat st;
    REQUIRE(fstat(fd, &st) == 0 && st.st_size > 0, "fstat", errno);
    w->map_size = (size_t)st.st_size;
    w->map = mmap(NULL, w->map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    REQUIRE(w->map != MAP_FAILED, "mmap", errno);
    memcpy(&w->layout, w->map, sizeof w->layout);
    w->mailbox_stride = shmi_mailbox_stride(w->layout.slot_size);
    return 0;
}

static void world_destroy(world_t *w)
{
    for (unsigned k = 0; k < MAX_FOLLOWERS; k++) world_close_follower(w, k);
    CHECK_RC(shmc_pub_close(w->pub));
    CHECK_RC(shmc_push_close(w->push));
    CHECK_RC(shmc_rep_close(w->rep));
    CHECK_RC(shmc_stream_writer_close(w->sw));
    munmap(w->map, w->map_size);
    /* The keeper unlinks on close unless the patches made the channel look closed already. */
    int rc = shmc_segment_unlink(w->os_name);
    REQUIRE(rc == 0 || rc == SHMC_ENOENT, "unlink", rc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    world_t w;
    world_create(&w, data);
    input_t in = {data + 4, size - 4};
    for (int ops = 0; in.n && ops < 256; ops++) {
        uint8_t op = u8(&in);
        unsigned k = (op >> 4) % MAX_FOLLOWERS;
        switch (op % OP_COUNT) {
        case OP_PATCH: world_patch(&w, &in); break;
        case OP_OPEN: world_open_follower(&w, k); break;
        case OP_CLOSE: world_close_follower(&w, k); break;
        case OP_SEND: {
            size_t len = u8(&in) % (w.layout.slot_size + 2); /* one too large: EMSGSIZE */
            keeper_send(&w, len, u8(&in));
            break;
        }
        case OP_RECV: {
            uint8_t which = u8(&in);
            world_receive(&w, k, which, u8(&in) % (w.layout.slot_size + 2), 0);
            break;
        }
        case OP_KEEPER_RECV: {
            uint8_t which = u8(&in);
            world_receive(&w, k, which, u8(&in) % (w.layout.slot_size + 2), 1);
            break;
        }
        case OP_POLL: world_poll(&w, k, (op >> 5) & 1); break;
        case OP_STATS:
            keeper_stats(&w);
            follower_stats_alive(&w, k);
            break;
        default: check_segment_info(w.os_name); break;
        }
    }
    world_destroy(&w);
    return 0;
}

/* ------------------------------------------------------------------ fuzz_raw: segments made of input bytes */
#else

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    static const uint32_t patterns[] = {SHMC_PATTERN_PUBSUB, SHMC_PATTERN_PIPELINE, SHMC_PATTERN_REQREP,
                                        SHMC_PATTERN_STREAM};
    uint32_t pattern = patterns[data[0] % 4];
    uint8_t ops = data[1];
    const uint8_t *image = data + 2;
    size_t image_size = size - 2;

    char name[128], os_name[SHMI_OS_NAME_CAP], path[300];
    make_names("fuzzraw", pattern, name, sizeof name, os_name);
    snprintf(path, sizeof path, "/%s", os_name);
    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    REQUIRE(fd >= 0, "shm_open", errno);
    unsigned char *copy = malloc(image_size ? image_size : 1);
    memcpy(copy, image, image_size);
    /* Pids of live peers cannot be in the input: a marker stands for ours. */
    uint32_t self = (uint32_t)getpid();
    for (size_t i = 0; i + 4 <= image_size; i += 4) {
        uint32_t v;
        memcpy(&v, copy + i, 4);
        if (v == SELF_PID_MARKER) memcpy(copy + i, &self, 4);
    }
    size_t done = 0;
    while (done < image_size) {
        ssize_t n = write(fd, copy + done, image_size - done);
        REQUIRE(n > 0, "write", errno);
        done += (size_t)n;
    }
    close(fd);
    free(copy);

    check_segment_info(os_name);

    shmc_sub_options_t o;
    shmc_sub_options_init(&o);
    o.connect_timeout_ns = 0;
    o.spin_us = 0;
    shmc_sub_t *sub = NULL;
    shmc_pull_t *pull = NULL;
    shmc_req_t *req = NULL;
    shmc_stream_reader_t *sr = NULL;
    int rc;
    if (pattern == SHMC_PATTERN_STREAM) {
        check_stream_inspect(name);
        shmc_stream_reader_options_t so;
        shmc_stream_reader_options_init(&so);
        so.connect_timeout_ns = 0;
        so.spin_us = 0;
        rc = shmc_stream_reader_open(name, NULL, 0, &so, &sr);
    } else if (pattern == SHMC_PATTERN_PUBSUB) rc = shmc_sub_open(name, &o, &sub);
    else if (pattern == SHMC_PATTERN_PIPELINE) rc = shmc_pull_open(name, &o, &pull);
    else rc = shmc_req_open(name, &o, &req);
    CHECK_RC(rc);
    if (getenv("FUZZ_TRACE")) fprintf(stderr, "fuzz_raw: %s: open %d\n", os_name, rc);

    if (rc == 0) {
        size_t cap = 1 + (size_t)(ops >> 4) * 7;
        shmc_stats_t s;
        memset(&s, 0, sizeof s);
        s.size = sizeof s;
        int loaned = 0;
        for (int round = 0; round < 3; round++) {
            for (int op = 0; op < 6; op++) {
                if (sub) sub_receive(sub, op + 6 * round + (ops & 1) * 6, cap, &loaned);
                if (pull) pull_receive(pull, op + 3 * round, cap);
            }
            if (sr) {
                int held = 0;
                for (int op = 0; op < 8; op++) stream_reader_op(sr, op + 8 * round + (ops & 1), &held);
                if (held) CHECK_RC(shmc_stream_reader_release(sr));
                check_stream_inspect(name);
            }
            if (sub) {
                check_stats(shmc_sub_stats(sub, &s), &s);
                int alive = shmc_sub_publisher_alive(sub);
                REQUIRE(alive == 0 || alive == 1, "publisher_alive", alive);
            }
            if (pull) {
                check_stats(shmc_pull_stats(pull, &s), &s);
                int alive = shmc_pull_pusher_alive(pull);
                REQUIRE(alive == 0 || alive == 1, "pusher_alive", alive);
            }
            if (req) {
                unsigned char msg[4] = {1, 2, 3, 4};
                size_t len = 0;
                void *b = alloc_exact(cap);
                CHECK_RC(shmc_req_send(req, msg, (ops >> 1) & 3, 0));
                check_recv(shmc_req_recv(req, b, cap, &len, 0), cap, len);
                free(b);
                check_stats(shmc_req_stats(req, &s), &s);
                int alive = shmc_req_replier_alive(req);
                REQUIRE(alive == 0 || alive == 1, "replier_alive", alive);
                if (ops & 8) CHECK_RC(shmc_req_cancel(req));
            }
            /* The housekeeping of polling readers: every 256 idle polls. */
            if (ops & 2) {
                size_t len;
                for (int i = 0; i < 257; i++) {
                    if (sub && !loaned) CHECK_RC(shmc_sub_recv(sub, NULL, 0, &len, 0));
                    if (pull) CHECK_RC(shmc_pull_recv(pull, NULL, 0, &len, 0));
                    if (req) CHECK_RC(shmc_req_recv(req, NULL, 0, &len, 0));
                }
            }
            check_segment_info(os_name);
        }
        if (loaned && (ops & 4)) CHECK_RC(shmc_sub_release(sub));
    }
    CHECK_RC(shmc_sub_close(sub));
    CHECK_RC(shmc_pull_close(pull));
    CHECK_RC(shmc_req_close(req));
    CHECK_RC(shmc_stream_reader_close(sr));
    /* ENOENT only if something else removed it (`python -m shmcomm clean` removes stale segments). */
    rc = shmc_segment_unlink(os_name);
    REQUIRE(rc == 0 || rc == SHMC_ENOENT, "unlink", rc);
    return 0;
}

#endif
