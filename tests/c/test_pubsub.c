/* PUB/SUB through the public API, in one process: options, send/receive and their errors,
 * timeouts, latest(), loans on both sides, recv_many, several publishers, restarts, statistics,
 * segment lifetime and permissions, corrupted segments, and argument checking.
 * Every test removes the segments it made. */
#include "check.h"
#include "primitives/channel.h"
#include "shmcomm.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#define MS 1000000ll
#define SECOND 1000000000ll

/* ------------------------------------------------------------------ helpers */

typedef struct chan_name {
    char name[128];
    char os_name[SHMI_OS_NAME_CAP];
} chan_name_t;

static chan_name_t channel(const char *stem)
{
    chan_name_t c;
    snprintf(c.name, sizeof c.name, "%s", unique_name(stem));
    CHECK_OK(shmc_os_name(c.name, SHMC_PATTERN_PUBSUB, c.os_name, sizeof c.os_name));
    return c;
}

/* 1 if the OS object exists (/dev/shm/<os_name> on Linux). */
static int segment_exists(const char *os_name)
{
    char path[SHMI_OS_NAME_CAP + 2];
    snprintf(path, sizeof path, "/%s", os_name);
    int fd = shm_open(path, O_RDONLY, 0);
    int exists = fd >= 0;
    if (exists) close(fd);
#if defined(__linux__)
    char file[SHMI_OS_NAME_CAP + 16];
    snprintf(file, sizeof file, "/dev/shm/%s", os_name); /* where Linux keeps them */
    CHECK((access(file, F_OK) == 0) == exists);
#endif
    return exists;
}

static shmc_pub_t *open_pub(const char *name, uint32_t slots, uint32_t slot_size, uint32_t flags)
{
    shmc_pub_options_t o;
    shmc_pub_options_init(&o);
    o.num_slots = slots;
    o.slot_size = slot_size;
    o.flags = flags;
    shmc_pub_t *pub = NULL;
    CHECK_OK(shmc_pub_open(name, &o, &pub));
    CHECK(pub != NULL);
    return pub;
}

static shmc_sub_t *open_sub(const char *name)
{
    shmc_sub_options_t o;
    shmc_sub_options_init(&o);
    o.connect_timeout_ns = 0;
    shmc_sub_t *sub = NULL;
    CHECK_OK(shmc_sub_open(name, &o, &sub));
    CHECK(sub != NULL);
    return sub;
}

static shmc_stats_t pub_stats(shmc_pub_t *pub)
{
    shmc_stats_t s;
    s.size = sizeof s;
    CHECK_OK(shmc_pub_stats(pub, &s));
    return s;
}

static shmc_stats_t sub_stats(shmc_sub_t *sub)
{
    shmc_stats_t s;
    s.size = sizeof s;
    CHECK_OK(shmc_sub_stats(sub, &s));
    return s;
}

static void send_str(shmc_pub_t *pub, const char *text)
{
    CHECK_OK(shmc_pub_send(pub, text, strlen(text), 0));
}

static void send_num(shmc_pub_t *pub, unsigned n, int64_t timeout_ns)
{
    char text[32];
    int len = snprintf(text, sizeof text, "msg %u", n);
    CHECK_OK(shmc_pub_send(pub, text, (size_t)len, timeout_ns));
}

/* Receives one message and checks it is `want`. */
static void expect(shmc_sub_t *sub, const char *want)
{
    char buf[256];
    size_t len = 0;
    CHECK_OK(shmc_sub_recv(sub, buf, sizeof buf, &len, SECOND));
    if (len != strlen(want) || memcmp(buf, want, len) != 0) {
        fprintf(stderr, "received '%.*s', wanted '%s'\n", (int)len, buf, want);
        CHECK(0);
    }
}

static void expect_num(shmc_sub_t *sub, unsigned n)
{
    char want[32];
    snprintf(want, sizeof want, "msg %u", n);
    expect(sub, want);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ tests */

static void test_defaults(void)
{
    shmc_pub_options_t po;
    memset(&po, 0xFF, sizeof po);
    shmc_pub_options_init(&po);
    CHECK(po.size == sizeof po && po.num_slots == 64 && po.slot_size == 4096 && po.flags == 0 &&
          po.max_peers == 64 && po.reserved == 0);
    shmc_sub_options_t so;
    memset(&so, 0xFF, sizeof so);
    shmc_sub_options_init(&so);
    CHECK(so.size == sizeof so && so.spin_us == 50 && so.connect_timeout_ns == 5 * SECOND);
    shmc_pub_options_init(NULL); /* ignored */
    shmc_sub_options_init(NULL);
    CHECK(shmc_version() == SHMC_VERSION);

    /* NULL options mean the defaults. */
    chan_name_t c = channel("defaults");
    shmc_pub_t *pub = NULL;
    CHECK_OK(shmc_pub_open(c.name, NULL, &pub));
    shmc_sub_t *sub = NULL;
    CHECK_OK(shmc_sub_open(c.name, NULL, &sub));
    shmc_stats_t s = pub_stats(pub);
    CHECK(s.size == sizeof s && s.num_slots == 64 && s.slot_size == 4096 && s.flags == 0);
    s = sub_stats(sub);
    CHECK(s.num_slots == 64 && s.slot_size == 4096 && s.flags == 0);
    shmc_segment_info_t info;
    info.size = sizeof info;
    CHECK_OK(shmc_segment_info(c.os_name, &info));
    CHECK(info.pattern == SHMC_PATTERN_PUBSUB && info.layout_version == SHMC_LAYOUT_VERSION);
    CHECK(info.num_slots == 64 && info.slot_size == 4096 && info.state == 1 && info.stale == 0);
    CHECK(info.creator_pid == (int32_t)getpid() && info.creator_alive == 1);
    CHECK(info.publishers == 1 && info.subscribers == 1 && strcmp(info.channel, c.name) == 0);
    CHECK_OK(shmc_sub_close(sub));
    CHECK_OK(shmc_pub_close(pub));
}

static void test_round_trip(void)
{
    chan_name_t c = channel("roundtrip");
    shmc_pub_t *pub = open_pub(c.name, 8, 64, 0);
    send_str(pub, "before"); /* published before the subscriber attached: never seen by it */
    shmc_sub_t *sub = open_sub(c.name);
    send_str(pub, "hello");
    CHECK_OK(shmc_pub_send(pub, NULL, 0, 0)); /* an empty message is a message */
    unsigned char full[64];
    for (int i = 0; i < 64; i++) full[i] = (unsigned char)(i * 7);
    CHECK_OK(shmc_pub_send(pub, full, sizeof full, 0)); /* exactly slot_size */

    expect(sub, "hello");
    char buf[64];
    size_t len = 99;
    CHECK_OK(shmc_sub_recv(sub, buf, sizeof buf, &len, 0));
    CHECK(len == 0);
    CHECK_OK(shmc_sub_recv(sub, buf, sizeof buf, &len, 0));
    CHECK(len == 64 && memcmp(buf, full, 64) == 0);
    CHECK_RC(shmc_sub_recv(sub, buf, sizeof buf, &len, 0), SHMC_EAGAIN);
    /* A zero-capacity receive without a buffer takes empty messages only. */
    CHECK_OK(shmc_pub_send(pub, NULL, 0, 0));
    CHECK_OK(shmc_sub_recv(sub, NULL, 0, &len, 0));
    CHECK(len == 0);
    CHECK_OK(shmc_sub_close(sub));
    CHECK_OK(shmc_pub_close(pub));
}

static void test_sizes(void)
{
    chan_name_t c = channel("sizes");
    shmc_pub_t *pub = open_pub(c.name, 8, 64, 0);
    shmc_sub_t *sub = open_sub(c.name);
    unsigned char big[65] = {0};
    CHECK_RC(shmc_pub_send(pub, big, sizeof big, 0), SHMC_EMSGSIZE);
    CHECK(pub_stats(pub).sent == 0 && pub_stats(pub).head == 0); /* nothing was claimed */

    /* Too small a buffer: the size is reported, nothing is consumed. */
    send_str(pub, "a message of 27 bytes......");
    char small[10];
    size_t len = 0;
    CHECK_RC(shmc_sub_recv(sub, small, sizeof small, &len, SECOND), SHMC_ETRUNC);
    CHECK(len == 27);
    CHECK_RC(shmc_sub_recv(sub, small, sizeof small, &len, 0), SHMC_ETRUNC);
    CHECK_RC(shmc_sub_latest(sub, small, sizeof small, &len, 0), SHMC_ETRUNC);
    CHECK(len == 27);
    shmc_stats_t s = sub_stats(sub);
    CHECK(s.received == 0 && s.dropped == 0 && s.cursor == 0);
    expect(sub, "a message of 27 bytes......");
    CHECK_OK(shmc_sub_close(sub));
    CHECK_OK(shmc_pub_close(pub));
}

static void test_timeouts(void)
{
    chan_name_t c = channel("timeouts");
    shmc_pub_t *pub = open_pub(c.name, 4, 64, SHMC_LOSSLESS);
    shmc_sub_t *sub = open_sub(c.name);
    char buf[64];
    size_t len;
    CHECK_RC(shmc_sub_recv(sub, buf, sizeof buf, &len, 0), SHMC_EAGAIN);
    CHECK_RC(shmc_sub_latest(sub, buf, sizeof buf, &len, 0), SHMC_EAGAIN);
    const void *view;
    CHECK_RC(shmc_sub_loan(sub, &view, &len, 0), SHMC_EAGAIN);
    uint64_t t0 = now_ns();
    CHECK_RC(shmc_sub_recv(sub, buf, sizeof buf, &len, 20 * MS), SHMC_ETIMEDOUT);
    CHECK(now_ns() - t0 >= 20 * MS);

    /* A lossless publisher waits for the subscriber's room. */
    for (unsigned i = 0; i < 4; i++) send_num(pub, i, 0);
    CHECK_RC(shmc_pub_send(pub, "x", 1, 0), SHMC_EAGAIN);
    void *slot;
    size_t cap;
    CHECK_RC(shmc_pub_loan(pub, &slot, &cap, 0), SHMC_EAGAIN);
    t0 = now_ns();
    CHECK_RC(shmc_pub_send(pub, "x", 1, 20 * MS), SHMC_ETIMEDOUT);
    CHECK(now_ns() - t0 >= 20 * MS);
    expect_num(sub, 0);
    send_num(pub, 4, 0); /* one slot free again */
    for (unsigned i = 1; i <= 4; i++) expect_num(sub, i);
    CHECK(sub_stats(sub).dropped == 0);
    CHECK_OK(shmc_sub_close(sub));
    /* No subscriber left: nothing holds a lossless publisher back. */
    for (unsigned i = 0; i < 10; i++) send_num(pub, i, 0);
    CHECK_OK(shmc_pub_close(pub));
}

static void test_overwrite_drops(void)
{
    chan_name_t c = channel("drops");
    shmc_pub_t *pub = open_pub(c.name, 4, 64, 0);
    shmc_sub_t *sub = open_sub(c.name);
    for (unsigned i = 0; i < 10; i++) send_num(pub, i, 0); /* never waits */
    /* The subscriber fell 10 behind a ring of 4: it resumes at the oldest message still there. */
    char buf[64];
    size_t len;
    unsigned first = 0;
    CHECK_OK(shmc_sub_recv(sub, buf, sizeof buf, &len, 0));
    CHECK(sscanf(buf, "msg %u", &first) == 1 && first >= 6 && first < 10);
    for (unsigned i = first + 1; i < 10; i++) expect_num(sub, i);
    shmc_stats_t s = sub_stats(sub);
    CHECK(s.received == 10 - first && s.dropped == first && s.received + s.dropped == 10);
    CHECK(s.head == 10 && s.cursor == 10 && s.skipped == 0);
    CHECK_OK(shmc_sub_close(sub));
    CHECK_OK(shmc_pub_close(pub));
}

static void test_latest(void)
{
    chan_name_t c = channel("latest");
    shmc_pub_t *pub = open_pub(c.name, 8, 64, 0);
    shmc_sub_t *sub = open_sub(c.name);
    for (unsigned i = 0; i < 5; i++) send_num(pub, i, 0);
    char buf[64];
    size_t len;
    CHECK_OK(shmc_sub_latest(sub, buf, sizeof buf, &len, 0));
    CHECK(len == 5 && memcmp(buf, "msg 4", 5) == 0);
    shmc_stats_t s = sub_stats(sub);
    CHECK(s.skipped == 4 && s.received == 1 && s.dropped == 0 && s.cursor == 5);
    CHECK_RC(shmc_sub_latest(sub, buf, sizeof buf, &len, 0), SHMC_EAGAIN);
    send_num(pub, 5, 0);
    CHECK_OK(shmc_sub_latest(sub, buf, sizeof buf, &len, SECOND));
    CHECK(len == 5 && memcmp(buf, "msg 5", 5) == 0);
    /* Far behind a full ring: the newest still wins, the rest count as skipped. */
    for (unsigned i = 6; i < 30; i++) send_num(pub, i, 0);
    CHECK_OK(shmc_sub_latest(sub, buf, sizeof buf, &len, 0));
    CHECK(len == 6 && memcmp(buf, "msg 29", 6) == 0);
    s = sub_stats(sub);
    CHECK(s.received == 3 && s.received + s.dropped + s.skipped == 30 && s.cursor == 30);
    send_num(pub, 30, 0);
    expect_num(sub, 30); /* recv continues after latest */
    CHECK_OK(shmc_sub_close(sub));
    CHECK_OK(shmc_pub_close(pub));
}

static void test_pub_loan(void)
{
    chan_name_t c = channel("publoan");
    shmc_pub_t *pub = open_pub(c.name, 4, 64, 0);
    shmc_sub_t *sub = open_sub(c.name);
    void *slot = NULL;
    size_t cap = 0;
    CHECK_OK(shmc_pub_loan(pub, &slot, &cap, 0));
    CHECK(slot != NULL && cap == 64);
    memcpy(slot, "loaned", 6);
    char buf[64];
    size_t len;
    CHECK_RC(shmc_sub_recv(sub, buf, sizeof buf, &len, 0), SHMC_EAGAIN); /* not before commit */
    void *again;
    CHECK_RC(shmc_pub_loan(pub, &again, &cap, 0), SHMC_EINVAL);         /* one loan at a time */
    CHECK_RC(shmc_pub_send(pub, "x", 1, 0), SHMC_EINVAL);
    CHECK_RC(shmc_pub_commit(pub, 65), SHMC_EMSGSIZE);
    CHECK_OK(shmc_pub_commit(pub, 6));
    CHECK_RC(shmc_pub_commit(pub, 6), SHMC_EINVAL); /* nothing loaned */
    expect(sub, "loaned");
    CHECK(pub_stats(pub).sent == 1);

    /* A publisher that closes with a loan outstanding abandons it: subscribers skip it. */
    shmc_pub_t *other = open_pub(c.name, 4, 64, 0);
    CHECK_OK(shmc_pub_loan(other, &slot, &cap, 0));
    memcpy(slot, "never", 5);
    send_str(pub, "after");
    CHECK_OK(shmc_pub_close(other));
    expect(sub, "after");
    shmc_stats_t s = sub_stats(sub);
    CHECK(s.received == 2 && s.dropped == 1);
    CHECK_OK(shmc_sub_close(sub));
    CHECK_OK(shmc_pub_close(pub));
}

static void test_sub_loan(void)
{
    chan_name_t c = channel("subloan");
    shmc_pub_t *pub = open_pub(c.name, 4, 64, 0);
    shmc_sub_t *sub = open_sub(c.name);
    send_str(pub, "viewed");
    const void *view = NULL;
    size_t len = 0;
    CHECK_OK(shmc_sub_loan(sub, &view, &len, SECOND));
    CHECK(len == 6 && memcmp(view, "viewed", 6) == 0);
    char buf[64];
    CHECK_RC(shmc_sub_recv(sub, buf, sizeof buf, &len, 0), SHMC_EINVAL); /* release first */
    CHECK_RC(shmc_sub_loan(sub, &view, &len, 0), SHMC_EINVAL);
    CHECK_OK(shmc_sub_release(sub));
    CHECK_RC(shmc_sub_release(sub), SHMC_EINVAL);
    CHECK(sub_stats(sub).received == 1);

    /* Overwrite mode: a publisher laps the loaned slot; release reports the view stale. */
    send_str(pub, "lapped");
    CHECK_OK(shmc_sub_loan(sub, &view, &len, 0));
    CHECK(len == 6 && memcmp(view, "lapped", 6) == 0);
    for (unsigned i = 0; i < 4; i++) send_num(pub, i, 0);
    CHECK_RC(shmc_sub_release(sub), SHMC_ESTALE);
    shmc_stats_t s = sub_stats(sub);
    CHECK(s.received == 1 && s.dropped == 1 && s.cursor == 2);
    /* Then it carries on with what is left. */
    size_t got = 0;
    while (shmc_sub_recv(sub, buf, sizeof buf, &len, 0) == 0) got++;
    s = sub_stats(sub);
    CHECK(got >= 3 && s.cursor == 6 && s.received + s.dropped == 6);
    CHECK_OK(shmc_sub_close(sub));
    CHECK_OK(shmc_pub_close(pub));

    /* Lossless mode: the loaned slot is pinned; the publisher waits for its release. */
    c = channel("subloan-lossless");
    pub = open_pub(c.name, 4, 64, SHMC_LOSSLESS);
    sub = open_sub(c.name);
    send_num(pub, 0, 0);
    CHECK_OK(shmc_sub_loan(sub, &view, &len, 0));
    for (unsigned i = 1; i < 4; i++) send_num(pub, i, 0);
    CHECK_RC(shmc_pub_send(pub, "x", 1, 0), SHMC_EAGAIN);
    CHECK(len == 5 && memcmp(view, "msg 0", 5) == 0);
    CHECK_OK(shmc_sub_release(sub));
    send_num(pub, 4, 0);
    for (unsigned i = 1; i <= 4; i++) expect_num(sub, i);
    CHECK(sub_stats(sub).dropped == 0);
    CHECK_OK(shmc_sub_close(sub));
    CHECK_OK(shmc_pub_close(pub));
}

static void test_recv_many(void)
{
    chan_name_t c = channel("many");
    shmc_pub_t *pub = open_pub(c.name, 8, 64, 0);
    shmc_sub_t *sub = open_sub(c.name);
    char buf[256];
    size_t lens[8], count = 99;
    CHECK_RC(shmc_sub_recv_many(sub, buf, sizeof buf, lens, 8, &count, 0), SHMC_EAGAIN);
    CHECK_RC(shmc_sub_recv_many(sub, buf, sizeof buf, lens, 8, &count, 20 * MS), SHMC_ETIMEDOUT);
    send_str(pub, "a");
    send_str(pub, "bb");
    send_str(pub, "");
    send_str(pub, "dddd");
    send_str(pub, "eeeee");
    CHECK_OK(shmc_sub_recv_many(sub, buf, sizeof buf, lens, 3, &count, 0));
    CHECK(count == 3 && lens[0] == 1 && lens[1] == 2 && lens[2] == 0);
    CHECK(memcmp(buf, "abb", 3) == 0); /* packed back to back */
    CHECK_OK(shmc_sub_recv_many(sub, buf, sizeof buf, lens, 8, &count, 0));
    CHECK(count == 2 && lens[0] == 4 && lens[1] == 5 && memcmp(buf, "ddddeeeee", 9) == 0);

    /* Only what fits: the rest stays for the next call. */
    char msg[40];
    memset(msg, 'x', sizeof msg);
    for (int i = 0; i < 3; i++) CHECK_OK(shmc_pub_send(pub, msg, sizeof msg, 0));
    CHECK_OK(shmc_sub_recv_many(sub, buf, 100, lens, 8, &count, SECOND));
    CHECK(count == 2 && lens[0] == 40 && lens[1] == 40);
    CHECK_OK(shmc_sub_recv_many(sub, buf, 100, lens, 8, &count, 0));
    CHECK(count == 1 && lens[0] == 40);
    /* A first message larger than the buffer: ETRUNC with its size, nothing consumed. */
    CHECK_OK(shmc_pub_send(pub, msg, sizeof msg, 0));
    CHECK_RC(shmc_sub_recv_many(sub, buf, 10, lens, 8, &count, 0), SHMC_ETRUNC);
    CHECK(lens[0] == 40);
    CHECK_OK(shmc_sub_recv_many(sub, buf, sizeof buf, lens, 8, &count, 0));
    CHECK(count == 1 && lens[0] == 40);
    CHECK(sub_stats(sub).received == 9);
    CHECK_RC(shmc_sub_recv_many(sub, buf, sizeof buf, lens, 0, &count, 0), SHMC_EINVAL);
    CHECK_OK(shmc_sub_close(sub));
    CHECK_OK(shmc_pub_close(pub));
}

/* A lossless batch larger than the room left: the messages that fit go, then the call waits for the
 * rest (timeout 0: returns at once), and says how many were sent. */
static void test_send_many_full(void)
{
    chan_name_t c = channel("many-full");
    shmc_pub_t *pub = open_pub(c.name, 8, 64, SHMC_LOSSLESS);
    shmc_sub_t *sub = open_sub(c.name);
    uint64_t data[20], lens[20];
    for (int i = 0; i < 20; i++) {
        data[i] = (uint64_t)i;
        lens[i] = 8;
    }
    size_t sent = 99, count = 0, rlens[20];
    CHECK_RC(shmc_pub_send_many(pub, data, lens, 20, &sent, 20 * MS), SHMC_ETIMEDOUT);
    CHECK(sent == 8); /* a whole ring, published although the call failed */
    CHECK_RC(shmc_pub_send_many(pub, data + 8, lens + 8, 12, &sent, 0), SHMC_EAGAIN);
    CHECK(sent == 0);
    uint64_t got[20];
    CHECK_OK(shmc_sub_recv_many(sub, got, sizeof got, rlens, 20, &count, 0));
    CHECK(count == 8);
    for (int i = 0; i < 8; i++) CHECK(got[i] == (uint64_t)i && rlens[i] == 8);
    CHECK_OK(shmc_pub_send_many(pub, data + 8, lens + 8, 8, &sent, 0));
    CHECK(sent == 8);
    CHECK_OK(shmc_sub_recv_many(sub, got, sizeof got, rlens, 20, &count, 0));
    CHECK(count == 8);
    for (int i = 0; i < 8; i++) CHECK(got[i] == (uint64_t)(8 + i));
    CHECK(pub_stats(pub).sent == 16 && sub_stats(sub).received == 16);
    CHECK_OK(shmc_sub_close(sub));
    CHECK_OK(shmc_pub_close(pub));
}

/* SHMC_SINGLE_WRITER: one live publisher; another one, or one without the flag, is refused. */
static void test_single_writer(void)
{
    chan_name_t c = channel("single");
    shmc_pub_t *pub = open_pub(c.name, 8, 64, SHMC_SINGLE_WRITER);
    shmc_pub_options_t o;
    shmc_pub_options_init(&o);
    o.num_slots = 8;
    o.slot_size = 64;
    o.flags = SHMC_SINGLE_WRITER;
    shmc_pub_t *other = NULL;
    CHECK_RC(shmc_pub_open(c.name, &o, &other), SHMC_EBUSY);
    CHECK(other == NULL);
    o.flags = 0;
    CHECK_RC(shmc_pub_open(c.name, &o, &other), SHMC_EMISMATCH);
    shmc_sub_t *subs[3];
    for (int i = 0; i < 3; i++) subs[i] = open_sub(c.name);
    uint64_t data[12], lens[12];
    for (int i = 0; i < 12; i++) {
        data[i] = (uint64_t)i;
        lens[i] = 8;
    }
    size_t sent = 0, count = 0, rlens[12];
    CHECK_OK(shmc_pub_send(pub, data, 8, 0));
    CHECK_OK(shmc_pub_send_many(pub, data + 1, lens + 1, 11, &sent, 0)); /* overwrite: laps the ring */
    CHECK(sent == 11 && pub_stats(pub).publishers == 1 && pub_stats(pub).subscribers == 3);
    for (int i = 0; i < 3; i++) {
        uint64_t got[12];
        CHECK_OK(shmc_sub_recv_many(subs[i], got, sizeof got, rlens, 12, &count, 0));
        /* Lapped: from the oldest slot that cannot be mid-overwrite on (head - num_slots + 1). */
        CHECK(count == 7 && got[0] == 5 && got[6] == 11);
        CHECK(sub_stats(subs[i]).dropped == 5);
        CHECK_OK(shmc_sub_close(subs[i]));
    }
    CHECK_OK(shmc_pub_close(pub));
    CHECK(!segment_exists(c.os_name));
    /* The flag is a publisher's (and pusher's) only. */
    o.flags = SHMC_SINGLE_WRITER;
    shmc_rep_t *rep = NULL;
    CHECK_RC(shmc_rep_open(c.name, &o, &rep), SHMC_EINVAL);
}

static void test_publishers(void)
{
    chan_name_t c = channel("publishers");
    shmc_pub_t *a = open_pub(c.name, 8, 64, 0);
    shmc_sub_t *sub = open_sub(c.name);
    shmc_pub_t *b = open_pub(c.name, 8, 64, 0); /* same geometry: joins */
    shmc_pub_t *bad = (shmc_pub_t *)&c;         /* overwritten with NULL on failure */
    shmc_pub_options_t o;
    shmc_pub_options_init(&o);
    o.num_slots = 16;
    o.slot_size = 64;
    CHECK_RC(shmc_pub_open(c.name, &o, &bad), SHMC_EMISMATCH);
    CHECK(bad == NULL);
    o.num_slots = 8;
    o.slot_size = 128;
    CHECK_RC(shmc_pub_open(c.name, &o, &bad), SHMC_EMISMATCH);
    o.slot_size = 64;
    o.flags = SHMC_LOSSLESS;
    CHECK_RC(shmc_pub_open(c.name, &o, &bad), SHMC_EMISMATCH);

    shmc_stats_t s = pub_stats(a);
    CHECK(s.publishers == 2 && s.subscribers == 1);
    send_str(a, "from a");
    send_str(b, "from b");
    expect(sub, "from a");
    expect(sub, "from b");
    CHECK(pub_stats(a).sent == 1 && pub_stats(b).sent == 1 && pub_stats(b).head == 2);

    /* The channel outlives its creator while another publisher remains. */
    CHECK_OK(shmc_pub_close(a));
    CHECK(segment_exists(c.os_name));
    CHECK(shmc_sub_publisher_alive(sub) == 1);
    send_str(b, "still here");
    expect(sub, "still here");
    /* The last publisher unlinks it; the subscriber keeps its mapping and sees no publisher. */
    CHECK_OK(shmc_pub_close(b));
    CHECK(!segment_exists(c.os_name));
    CHECK(shmc_sub_publisher_alive(sub) == 0);
    s = sub_stats(sub);
    CHECK(s.publishers == 0 && s.publisher_alive == 0 && s.subscribers == 1);
    char buf[64];
    size_t len;
    CHECK_RC(shmc_sub_recv(sub, buf, sizeof buf, &len, 0), SHMC_EAGAIN);
    CHECK_OK(shmc_sub_close(sub));
    CHECK(!segment_exists(c.os_name));
}

static void test_missing_channel(void)
{
    chan_name_t c = channel("missing");
    shmc_sub_options_t o;
    shmc_sub_options_init(&o);
    o.connect_timeout_ns = 0;
    shmc_sub_t *sub = (shmc_sub_t *)&c;
    CHECK_RC(shmc_sub_open(c.name, &o, &sub), SHMC_ENOENT);
    CHECK(sub == NULL);
    o.connect_timeout_ns = 20 * MS;
    uint64_t t0 = now_ns();
    CHECK_RC(shmc_sub_open(c.name, &o, &sub), SHMC_ENOENT);
    CHECK(now_ns() - t0 >= 20 * MS);
    CHECK_RC(shmc_sub_open("bad/../name", &o, &sub), SHMC_ENAME);
    shmc_pub_t *pub;
    CHECK_RC(shmc_pub_open("", NULL, &pub), SHMC_ENAME);
    CHECK(!segment_exists(c.os_name));
}

static void test_stats(void)
{
    chan_name_t c = channel("stats");
    shmc_pub_t *pub = open_pub(c.name, 4, 64, 0);
    shmc_stats_t s = pub_stats(pub);
    CHECK(s.num_slots == 4 && s.slot_size == 64 && s.head == 0 && s.sent == 0);
    CHECK(s.publishers == 1 && s.subscribers == 0 && s.publisher_alive == 1);
    for (unsigned i = 0; i < 3; i++) send_num(pub, i, 0);
    shmc_sub_t *sub = open_sub(c.name);
    shmc_sub_t *sub2 = open_sub(c.name);
    s = sub_stats(sub);
    CHECK(s.head == 3 && s.cursor == 3 && s.received == 0 && s.subscribers == 2);
    CHECK(s.publishers == 1 && s.publisher_alive == 1 && s.reconnects == 0);
    for (unsigned i = 3; i < 5; i++) send_num(pub, i, 0);
    expect_num(sub, 3);
    s = sub_stats(sub);
    CHECK(s.received == 1 && s.cursor == 4 && s.head == 5);
    s = pub_stats(pub);
    CHECK(s.sent == 5 && s.head == 5 && s.subscribers == 2);
    CHECK_OK(shmc_sub_close(sub2));
    CHECK(pub_stats(pub).subscribers == 1);
    s.size = sizeof s - 1; /* a caller that does not know every field */
    CHECK_RC(shmc_pub_stats(pub, &s), SHMC_EINVAL);
    CHECK_RC(shmc_sub_stats(sub, &s), SHMC_EINVAL);
    CHECK_OK(shmc_sub_close(sub));
    CHECK_OK(shmc_pub_close(pub));
}

static void test_options(void)
{
    chan_name_t c = channel("options");
    shmc_pub_options_t o;
    shmc_pub_t *pub = (shmc_pub_t *)&c;
    struct { uint32_t *field; uint32_t value; } bad[] = {
        {&o.num_slots, 1}, {&o.num_slots, (1u << 24) + 1}, {&o.slot_size, 0},
        {&o.slot_size, (1u << 30) + 1}, {&o.max_peers, 1}, {&o.max_peers, 255},
        {&o.flags, 8}, {&o.reserved, 1}, {&o.size, 4}, {&o.size, sizeof o + 4},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        shmc_pub_options_init(&o);
        *bad[i].field = bad[i].value;
        CHECK_RC(shmc_pub_open(c.name, &o, &pub), SHMC_EINVAL);
        CHECK(pub == NULL);
    }
    CHECK(!segment_exists(c.os_name));
    shmc_sub_options_t so;
    shmc_sub_options_init(&so);
    so.spin_us = 2000000;
    shmc_sub_t *sub;
    CHECK_RC(shmc_sub_open(c.name, &so, &sub), SHMC_EINVAL);
    shmc_sub_options_init(&so);
    so.size = 1;
    CHECK_RC(shmc_sub_open(c.name, &so, &sub), SHMC_EINVAL);

    /* Private by default; sharing is explicit. The sizes are the extremes that are accepted. */
    shmc_pub_options_init(&o);
    o.num_slots = 2;
    o.slot_size = 1;
    o.max_peers = 2;
    CHECK_OK(shmc_pub_open(c.name, &o, &pub));
    struct stat st;
    char path[SHMI_OS_NAME_CAP + 16];
    snprintf(path, sizeof path, "/%s", c.os_name);
    int fd = shm_open(path, O_RDONLY, 0);
    CHECK(fd >= 0 && fstat(fd, &st) == 0);
    close(fd);
    CHECK((st.st_mode & 0777) == 0600);
    CHECK_RC(shmc_pub_send(pub, "ab", 2, 0), SHMC_EMSGSIZE);
    CHECK_OK(shmc_pub_send(pub, "a", 1, 0));
    CHECK_OK(shmc_pub_close(pub));
    o.flags = SHMC_SHARE_GROUP;
    CHECK_OK(shmc_pub_open(c.name, &o, &pub));
    fd = shm_open(path, O_RDONLY, 0);
    CHECK(fd >= 0 && fstat(fd, &st) == 0);
    close(fd);
    CHECK((st.st_mode & 0777) == 0660);
    CHECK_OK(shmc_pub_close(pub));
    CHECK(!segment_exists(c.os_name));
}

/* A subscriber follows a publisher that closed and came back under the same name. */
static void test_restart(void)
{
    chan_name_t c = channel("restart");
    shmc_pub_t *pub = open_pub(c.name, 4, 64, 0);
    shmc_sub_t *sub = open_sub(c.name);
    send_str(pub, "first life");
    expect(sub, "first life");
    send_str(pub, "loaned");
    const void *view;
    size_t len;
    CHECK_OK(shmc_sub_loan(sub, &view, &len, 0));
    CHECK_OK(shmc_pub_close(pub));
    pub = open_pub(c.name, 4, 64, 0);
    send_str(pub, "second life");
    /* Asking about the publisher must not pull the mapping from under an outstanding loan. */
    (void)shmc_sub_publisher_alive(sub);
    CHECK(len == 6 && memcmp(view, "loaned", 6) == 0);
    CHECK_OK(shmc_sub_release(sub));
    CHECK(shmc_sub_publisher_alive(sub) == 1); /* follows the new generation */
    expect(sub, "second life");
    shmc_stats_t s = sub_stats(sub);
    CHECK(s.reconnects == 1 && s.publishers == 1 && s.received == 3);
    /* The old generation's mapping is retired, not unmapped: a pointer kept past its release (a
     * binding's numpy array) stays readable until the subscriber closes. POSIX gives the pages back
     * (zeros); Windows keeps the old view. */
#ifdef _WIN32
    CHECK(memcmp(view, "loaned", 6) == 0);
#else
    const unsigned char *stale = view;
    unsigned sum = 0;
    for (size_t i = 0; i < len; i++) sum += stale[i];
    CHECK(sum == 0);
#endif

    /* A waiting receive follows a restart by itself. */
    CHECK_OK(shmc_pub_close(pub));
    pub = open_pub(c.name, 4, 64, 0);
    send_str(pub, "third life");
    expect(sub, "third life");
    CHECK(sub_stats(sub).reconnects == 2);
    CHECK_OK(shmc_sub_close(sub));
    CHECK_OK(shmc_pub_close(pub));
    CHECK(!segment_exists(c.os_name));
}

/* A channel whose every publisher is dead is stale: a new publisher replaces it, and the dead
 * generation's handle, closed late, must not unlink its replacement. */
static void test_stale_replaced(void)
{
    chan_name_t c = channel("stale");
    shmc_pub_t *old = open_pub(c.name, 4, 64, 0);
    shmi_channel_t ch;
    CHECK_OK(shmi_channel_attach(&ch, c.os_name, SHMC_PATTERN_PUBSUB, 0));
    uint64_t old_session = ch.session_id;
    /* Make the old publisher, also the creator, look dead: name a pid that no process has. */
    for (uint32_t i = 0; i < ch.geometry.max_peers; i++) {
        uint64_t owner = atomic_load(&ch.registry.peers[i].owner);
        if (owner) atomic_store(&ch.registry.peers[i].owner, (0x7FFFFFF0ull << 32) | (owner & 0xFF));
    }
    ch.header->creator_pid = 0x7FFFFFF0;
    shmi_channel_detach(&ch);
    shmc_segment_info_t info;
    info.size = sizeof info;
    CHECK_OK(shmc_segment_info(c.os_name, &info));
    CHECK(info.stale == 1 && info.publishers == 0);

    shmc_pub_t *pub = open_pub(c.name, 8, 32, 0); /* another geometry is fine for a new generation */
    CHECK_OK(shmc_segment_info(c.os_name, &info));
    CHECK(info.session_id != old_session && info.stale == 0 && info.num_slots == 8);
    CHECK_OK(shmc_pub_close(old));
    CHECK(segment_exists(c.os_name));
    shmc_sub_t *sub = open_sub(c.name);
    send_str(pub, "new");
    expect(sub, "new");
    CHECK_OK(shmc_sub_close(sub));
    CHECK_OK(shmc_pub_close(pub));
    CHECK(!segment_exists(c.os_name));
}

/* Attaching never trusts the header: corrupted fields are refused with EBADSEG or EVERSION. */
static void test_corrupt_header(void)
{
    chan_name_t c = channel("corrupt");
    shmi_channel_t ch;
    shmi_geometry_t g = {SHMC_PATTERN_PUBSUB, 8, 64, 4, 0, 0};
    CHECK_OK(shmi_channel_create(&ch, c.os_name, c.name, &g, 0600));
    shmi_header_t *h = ch.header;
    shmi_header_t saved;
    memcpy(&saved, h, sizeof saved);
    shmi_channel_t probe;
    shmc_sub_t *sub = NULL;
    shmc_sub_options_t so;
    shmc_sub_options_init(&so);
    so.connect_timeout_ns = 0;
    shmc_segment_info_t info;
    info.size = sizeof info;

    /* Sanity: the intact segment is accepted. */
    CHECK_OK(shmi_channel_attach(&probe, c.os_name, SHMC_PATTERN_PUBSUB, 0));
    shmi_channel_detach(&probe);

#define CORRUPT(stmt, want)                                                         \
    do {                                                                            \
        memcpy(h, &saved, sizeof saved);                                            \
        stmt;                                                                       \
        CHECK_RC(shmi_channel_attach(&probe, c.os_name, SHMC_PATTERN_PUBSUB, 0), want); \
        CHECK_RC(shmc_segment_info(c.os_name, &info), want);                        \
        CHECK_RC(shmc_sub_open(c.name, &so, &sub), want);                           \
        CHECK(sub == NULL);                                                         \
    } while (0)

    CORRUPT(atomic_store(&h->magic, 0x4141414141414141ull), SHMC_EBADSEG);
    CORRUPT(h->layout_version = 99, SHMC_EVERSION);
    CORRUPT(h->num_slots = 0xFFFFFFFFu, SHMC_EBADSEG);
    CORRUPT(h->num_slots = 0, SHMC_EBADSEG);
    CORRUPT(h->num_slots = 9, SHMC_EBADSEG);          /* plausible, but not this segment's size */
    CORRUPT(h->num_slots = 4, SHMC_EBADSEG);
    CORRUPT(h->slot_size = 0x7FFFFFFFu, SHMC_EBADSEG);
    CORRUPT(h->slot_stride = 64, SHMC_EBADSEG);
    CORRUPT(h->max_peers = 0, SHMC_EBADSEG);
    CORRUPT(h->max_peers = 200, SHMC_EBADSEG);
    CORRUPT(h->segment_bytes = 0xFFFFFFFFFFFFull, SHMC_EBADSEG);
    CORRUPT(h->segment_bytes = saved.segment_bytes + 64, SHMC_EBADSEG);
    CORRUPT(h->registry_offset = 1u << 30, SHMC_EBADSEG);
    CORRUPT(h->ring_offset = 8, SHMC_EBADSEG);
    CORRUPT(h->slots_offset = saved.segment_bytes, SHMC_EBADSEG);
    /* A header whose pattern disagrees with its OS name is corrupt. */
    memcpy(h, &saved, sizeof saved);
    h->pattern = 77;
    CHECK_RC(shmi_channel_attach(&probe, c.os_name, SHMC_PATTERN_PUBSUB, 0), SHMC_EBADSEG);
    CHECK_RC(shmc_segment_info(c.os_name, &info), SHMC_EBADSEG);
    /* A publisher refuses to take over a corrupt segment (it is not its to remove). */
    shmc_pub_t *pub = (shmc_pub_t *)&c;
    memcpy(h, &saved, sizeof saved);
    h->num_slots = 0xFFFFFFFFu;
    CHECK_RC(shmc_pub_open(c.name, NULL, &pub), SHMC_EBADSEG);
    CHECK(pub == NULL);
    /* A header whose magic was never written is a creator still at work: no subscriber yet. */
    memcpy(h, &saved, sizeof saved);
    atomic_store(&h->magic, 0);
    CHECK_RC(shmi_channel_attach(&probe, c.os_name, SHMC_PATTERN_PUBSUB, 0), SHMC_EAGAIN);
    CHECK_RC(shmc_sub_open(c.name, &so, &sub), SHMC_ENOENT);

    /* Random damage to the geometry lines: never a crash; whatever is accepted fits the mapping. */
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 3000; i++) {
        memcpy(h, &saved, sizeof saved);
        unsigned char *bytes = (unsigned char *)h;
        int flips = 1 + i % 4;
        for (int k = 0; k < flips; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            bytes[8 + rng % 120] = (unsigned char)(rng >> 32); /* after the magic, lines 0-1 */
        }
        int rc = shmi_channel_attach(&probe, c.os_name, SHMC_PATTERN_PUBSUB, 0);
        CHECK(rc == 0 || rc == SHMC_EBADSEG || rc == SHMC_EVERSION || rc == SHMC_EMISMATCH);
        if (rc == 0) { /* e.g. another slot_size with the same stride, or other flags */
            const shmi_header_t *ph = probe.header;
            CHECK(ph->segment_bytes <= probe.seg.size);
            CHECK(ph->slots_offset + (uint64_t)probe.geometry.num_slots * ph->slot_stride <=
                  probe.seg.size);
            CHECK(probe.geometry.slot_size + SHMI_SLOT_HEADER_BYTES <= ph->slot_stride);
            CHECK(ph->registry_offset + (uint64_t)probe.geometry.max_peers * SHMI_PEER_BYTES <=
                  ph->ring_offset);
            shmi_channel_detach(&probe);
        }
    }

    /* A segment shorter than a header. */
    memcpy(h, &saved, sizeof saved);
    shmi_channel_detach(&ch);
    char path[SHMI_OS_NAME_CAP + 2];
    snprintf(path, sizeof path, "/%s", c.os_name);
    int fd = shm_open(path, O_RDWR, 0);
    CHECK(fd >= 0 && ftruncate(fd, 100) == 0);
    close(fd);
    CHECK_RC(shmi_channel_attach(&probe, c.os_name, SHMC_PATTERN_PUBSUB, 0), SHMC_EBADSEG);
    CHECK_RC(shmc_segment_info(c.os_name, &info), SHMC_EBADSEG);
    CHECK_OK(shmc_segment_unlink(c.os_name));
    CHECK_RC(shmc_segment_unlink(c.os_name), SHMC_ENOENT);
    CHECK_RC(shmc_segment_unlink("not_ours"), SHMC_ENAME);
#undef CORRUPT
}

static void test_null_arguments(void)
{
    chan_name_t c = channel("nulls");
    shmc_pub_t *pub = open_pub(c.name, 4, 64, 0);
    shmc_sub_t *sub = open_sub(c.name);
    char buf[16];
    size_t len, lens[2], count, cap;
    void *slot;
    const void *view;
    shmc_stats_t s;
    s.size = sizeof s;
    shmc_segment_info_t info;
    info.size = sizeof info;
    shmc_pub_t *p2;
    shmc_sub_t *s2;

    CHECK_RC(shmc_pub_open(NULL, NULL, &p2), SHMC_EINVAL);
    CHECK_RC(shmc_pub_open(c.name, NULL, NULL), SHMC_EINVAL);
    CHECK_RC(shmc_sub_open(NULL, NULL, &s2), SHMC_EINVAL);
    CHECK_RC(shmc_sub_open(c.name, NULL, NULL), SHMC_EINVAL);
    CHECK_RC(shmc_pub_send(NULL, "x", 1, 0), SHMC_EINVAL);
    CHECK_RC(shmc_pub_send(pub, NULL, 1, 0), SHMC_EINVAL);
    CHECK_RC(shmc_pub_loan(NULL, &slot, &cap, 0), SHMC_EINVAL);
    CHECK_RC(shmc_pub_loan(pub, NULL, &cap, 0), SHMC_EINVAL);
    CHECK_RC(shmc_pub_loan(pub, &slot, NULL, 0), SHMC_EINVAL);
    CHECK_RC(shmc_pub_commit(NULL, 0), SHMC_EINVAL);
    CHECK_RC(shmc_pub_stats(NULL, &s), SHMC_EINVAL);
    CHECK_RC(shmc_pub_stats(pub, NULL), SHMC_EINVAL);
    CHECK_RC(shmc_sub_recv(NULL, buf, sizeof buf, &len, 0), SHMC_EINVAL);
    CHECK_RC(shmc_sub_recv(sub, NULL, sizeof buf, &len, 0), SHMC_EINVAL);
    CHECK_RC(shmc_sub_recv(sub, buf, sizeof buf, NULL, 0), SHMC_EINVAL);
    CHECK_RC(shmc_sub_latest(NULL, buf, sizeof buf, &len, 0), SHMC_EINVAL);
    CHECK_RC(shmc_sub_latest(sub, buf, sizeof buf, NULL, 0), SHMC_EINVAL);
    CHECK_RC(shmc_sub_recv_many(NULL, buf, sizeof buf, lens, 2, &count, 0), SHMC_EINVAL);
    CHECK_RC(shmc_sub_recv_many(sub, NULL, sizeof buf, lens, 2, &count, 0), SHMC_EINVAL);
    CHECK_RC(shmc_sub_recv_many(sub, buf, sizeof buf, NULL, 2, &count, 0), SHMC_EINVAL);
    CHECK_RC(shmc_sub_recv_many(sub, buf, sizeof buf, lens, 2, NULL, 0), SHMC_EINVAL);
    CHECK_RC(shmc_sub_loan(NULL, &view, &len, 0), SHMC_EINVAL);
    CHECK_RC(shmc_sub_loan(sub, NULL, &len, 0), SHMC_EINVAL);
    CHECK_RC(shmc_sub_loan(sub, &view, NULL, 0), SHMC_EINVAL);
    CHECK_RC(shmc_sub_release(NULL), SHMC_EINVAL);
    CHECK_RC(shmc_sub_stats(NULL, &s), SHMC_EINVAL);
    CHECK_RC(shmc_sub_stats(sub, NULL), SHMC_EINVAL);
    CHECK(shmc_sub_publisher_alive(NULL) == 0);
    CHECK_RC(shmc_segment_info(NULL, &info), SHMC_EINVAL);
    CHECK_RC(shmc_segment_info(c.os_name, NULL), SHMC_EINVAL);
    CHECK_RC(shmc_segment_unlink(NULL), SHMC_EINVAL);
    CHECK_RC(shmc_os_name(NULL, SHMC_PATTERN_PUBSUB, buf, sizeof buf), SHMC_EINVAL);
    CHECK_RC(shmc_os_name(c.name, SHMC_PATTERN_PUBSUB, NULL, 0), SHMC_EINVAL);
    CHECK(shmc_strerror(SHMC_EINVAL) != NULL && shmc_strerror(-12345) != NULL);
    CHECK_OK(shmc_pub_close(NULL));
    CHECK_OK(shmc_sub_close(NULL));
    CHECK_OK(shmc_sub_close(sub));
    CHECK_OK(shmc_pub_close(pub));
}

int main(void)
{
    test_defaults();
    test_round_trip();
    test_sizes();
    test_timeouts();
    test_overwrite_drops();
    test_latest();
    test_pub_loan();
    test_sub_loan();
    test_recv_many();
    test_send_many_full();
    test_single_writer();
    test_publishers();
    test_missing_channel();
    test_stats();
    test_options();
    test_restart();
    test_stale_replaced();
    test_corrupt_header();
    test_null_arguments();
    puts("pubsub: ok");
    return 0;
}
