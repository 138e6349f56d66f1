/* REQ/REP across real processes (fork), including processes killed with SIGKILL:
 *   1. 4 requester processes x N requests against 1 replier process: each gets exactly its own
 *      replies, in order;
 *   2. 2 replier processes share the load: all requests answered, and both served (made certain by
 *      two requests each replier takes before either answers);
 *   3. a reply later than its requester's timeout: ETIMEDOUT for the requester, SHMC_EEXPIRED for the
 *      late reply, which never reaches the requester's next request;
 *   4. the replier SIGKILLed while it holds a request: the waiting requester gets SHMC_EPEERDEAD
 *      (not its 10 s timeout), and follows a restarted replier;
 *   5. a requester SIGKILLed mid-request: the replier is not disturbed and serves the next one;
 *   6. sequencing errors, truncation, cancel, a requester that opens before the replier exists.
 * Requests repeat one 64-bit tag (requester id << 56 | sequence number) in every word, with a length
 * that depends on the sequence number; a reply is f(tag) in as many words, plus the replier's id.
 * Children report through pipes and exit codes; every wait is bounded (timeouts, alarm() watchdogs).
 * Counts shrink under ThreadSanitizer or by the factor in SHMC_TEST_SCALE_DOWN.
 *
 * Checks marked LIBRARY BUG test documented behaviour the library does not have yet: they are
 * reported, the rest of the test still runs, and the test fails at the end. */
#define SLOT_SIZE 256
#define WORDS_MAX 16 /* a request is at most 128 bytes, its reply 136 */

#include "procs.h"

#include <poll.h>
#include <pthread.h>
#include <time.h>

/* ------------------------------------------------------------------ payloads */

/* The reply's words: a bijection of the request's tag, so a reply to another request never passes. */
static uint64_t answer(uint64_t tag) { return tag * 0x9E3779B97F4A7C15ull + 0x5EED; }

static size_t make_reply(uint64_t *out, uint64_t tag, uint64_t replier)
{
    size_t words = bytes_for(tag_seq(tag)) / 8;
    for (size_t i = 0; i < words; i++) out[i] = answer(tag);
    out[words] = replier;
    return 8 * (words + 1);
}

/* Checks that `msg` is the reply to `tag`; returns the id of the replier that sent it. */
static uint64_t check_reply(const void *msg, size_t len, uint64_t tag)
{
    uint64_t w[WORDS_MAX + 1];
    size_t words = bytes_for(tag_seq(tag)) / 8;
    if (len != 8 * (words + 1)) {
        fprintf(stderr, "reply of %zu bytes to request %#llx, wanted %zu\n", len,
                (unsigned long long)tag, 8 * (words + 1));
        CHECK(len == 8 * (words + 1));
    }
    memcpy(w, msg, len);
    for (size_t i = 0; i < words; i++) {
        if (w[i] != answer(tag)) {
            fprintf(stderr, "reply word %zu is %#llx: not the reply to request %#llx\n", i,
                    (unsigned long long)w[i], (unsigned long long)tag);
            CHECK(w[i] == answer(tag));
        }
    }
    return w[words];
}

/* ------------------------------------------------------------------ endpoints */

static const char *service;

static shmc_rep_t *open_rep(const char *name)
{
    shmc_rep_options_t o;
    shmc_rep_options_init(&o);
    o.num_slots = 16;
    o.slot_size = SLOT_SIZE;
    shmc_rep_t *rep = NULL;
    CHECK_OK(shmc_rep_open(name, &o, &rep));
    return rep;
}

static shmc_req_t *open_req(const char *name, int64_t connect_timeout_ns)
{
    shmc_req_options_t o;
    shmc_req_options_init(&o);
    o.connect_timeout_ns = connect_timeout_ns;
    shmc_req_t *req = NULL;
    CHECK_OK(shmc_req_open(name, &o, &req));
    return req;
}

static int segment_exists(const char *name) { return pattern_segment_exists(name, SHMC_PATTERN_REQREP); }

/* Takes one request (waiting up to timeout_ns) and answers it as replier `id`: 0, or the failing
 * code of rep_recv. *tag gets the request's tag. The reply must be accepted (the requesters of
 * these tests wait). */
static int serve_one(shmc_rep_t *rep, uint64_t id, int64_t timeout_ns, uint64_t *tag)
{
    uint64_t buf[WORDS_MAX + 1];
    size_t len = 0;
    int rc = shmc_rep_recv(rep, buf, sizeof buf, &len, timeout_ns);
    if (rc) return rc;
    *tag = check_intact(buf, len);
    CHECK_OK(shmc_rep_send(rep, buf, make_reply(buf, *tag, id)));
    return 0;
}

/* ------------------------------------------------------------------ a replier on a string */

/* A replier process the parent drives one step at a time, so a test decides exactly when a request
 * is taken and when it is answered. Commands (bytes on the child's input):
 *   'r'  rep_recv (10 s): answers a result {rc, tag of the request}
 *   's'  rep_send of the reply to the current request: answers {rc, 0}
 *   'x'  answers its shmc_stats_t
 *   'q'  closes and exits 0
 * It says 'r' once the service is open. Commands can be queued ahead ("rs": take, then answer). */
typedef struct result {
    int32_t rc;
    uint32_t pad;
    uint64_t tag;
} result_t;

static int remote_replier(int in, int out, void *arg)
{
    const uint64_t id = (uint64_t)(uintptr_t)arg;
    shmc_rep_t *rep = open_rep(service);
    write_byte(out, 'r');
    uint64_t buf[WORDS_MAX + 1], tag = 0;
    char cmd;
    while (read_all(in, &cmd, 1)) {
        result_t res = {0, 0, 0};
        if (cmd == 'r') {
            size_t len = 0;
            res.rc = shmc_rep_recv(rep, buf, sizeof buf, &len, 10 * SECOND);
            if (res.rc == 0) res.tag = tag = check_intact(buf, len);
            write_all(out, &res, sizeof res);
        } else if (cmd == 's') {
            res.rc = shmc_rep_send(rep, buf, make_reply(buf, tag, id));
            write_all(out, &res, sizeof res);
        } else if (cmd == 'x') {
            shmc_stats_t s = rep_stats(rep);
            write_all(out, &s, sizeof s);
        } else if (cmd == 'q') {
            CHECK_OK(shmc_rep_close(rep));
            return 0;
        } else {
            return 9;
        }
    }
    return 8; /* the parent went away without 'q' */
}

static result_t remote(link_t *l, char cmd)
{
    result_t res;
    write_byte(l->to_child[1], cmd);
    CHECK(read_all(l->to_parent[0], &res, sizeof res));
    return res;
}

static result_t read_result(link_t *l)
{
    result_t res;
    CHECK(read_all(l->to_parent[0], &res, sizeof res));
    return res;
}

static shmc_stats_t remote_stats(link_t *l)
{
    shmc_stats_t s;
    write_byte(l->to_child[1], 'x');
    CHECK(read_all(l->to_parent[0], &s, sizeof s));
    return s;
}

/* ================================================================== 1. many requesters, one replier */

typedef struct requester_arg {
    uint32_t id;
    uint64_t count;
} requester_arg_t;

/* Child: a requester: opens, says 'r', waits for 'g', makes `count` requests and checks that each
 * reply is the reply to its own request. Even ids use shmc_req_request, odd ids send + recv. */
static int requester(int in, int out, void *arg)
{
    const requester_arg_t *a = arg;
    shmc_req_t *req = open_req(service, 5 * SECOND);
    write_byte(out, 'r');
    expect_byte(in, 'g');
    uint64_t buf[WORDS_MAX + 1];
    for (uint64_t seq = 0; seq < a->count; seq++) {
        const uint64_t tag = make_tag(a->id, seq);
        size_t len = fill_tag(buf, tag);
        if (a->id % 2 == 0) {
            int64_t n = shmc_req_request(req, buf, len, 10 * SECOND);
            if (n < 0) {
                fprintf(stderr, "requester %u: request %llu: %s\n", a->id, (unsigned long long)seq,
                        shmc_strerror((int)n));
                return 2;
            }
            const void *own;
            size_t cap;
            CHECK_OK(shmc_req_buffer(req, &own, &cap));
            check_reply(own, (size_t)n, tag);
        } else {
            CHECK_OK(shmc_req_send(req, buf, len, 10 * SECOND));
            size_t rlen = 0;
            int rc = shmc_req_recv(req, buf, sizeof buf, &rlen, 10 * SECOND);
            if (rc) {
                fprintf(stderr, "requester %u: reply %llu: %s\n", a->id, (unsigned long long)seq,
                        shmc_strerror(rc));
                return 2;
            }
            check_reply(buf, rlen, tag);
        }
    }
    shmc_stats_t s = req_stats(req);
    if (s.sent != a->count || s.received != a->count || s.expired != 0) return 3;
    CHECK_OK(shmc_req_close(req));
    return 0;
}

/* Child: the only replier of test 1: serves exactly *arg requests, then waits for 'q'. */
static int counting_replier(int in, int out, void *arg)
{
    const uint64_t total = *(uint64_t *)arg;
    shmc_rep_t *rep = open_rep(service);
    write_byte(out, 'r');
    for (uint64_t i = 0; i < total; i++) {
        uint64_t tag;
        int rc = serve_one(rep, 1, 10 * SECOND, &tag);
        if (rc) {
            fprintf(stderr, "replier: request %llu: %s\n", (unsigned long long)i, shmc_strerror(rc));
            return 2;
        }
    }
    expect_byte(in, 'q');
    shmc_stats_t s = rep_stats(rep);
    if (s.received != total || s.sent != total || s.expired != 0 || s.dropped != 0) return 3;
    if (s.publishers != 1 || s.head != total || s.tail != total) return 4;
    CHECK_OK(shmc_rep_close(rep));
    return 0;
}

static void test_many_requesters(void)
{
    service = unique_name("rr-many");
    const int n = 4;
    requester_arg_t args[4];
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        args[i].id = (uint32_t)i;
        args[i].count = scaled(25000) + (uint64_t)i; /* unequal, so no two streams line up */
        total += args[i].count;
    }
    link_t lr, lq[4];
    pid_t replier = spawn(counting_replier, &total, &lr);
    expect_byte(lr.to_parent[0], 'r');
    pid_t kids[4];
    for (int i = 0; i < n; i++) kids[i] = spawn(requester, &args[i], &lq[i]);
    for (int i = 0; i < n; i++) expect_byte(lq[i].to_parent[0], 'r');
    for (int i = 0; i < n; i++) write_byte(lq[i].to_child[1], 'g');
    for (int i = 0; i < n; i++) CHECK(wait_child(kids[i]) == 0);
    for (int i = 0; i < n; i++) unlink_pipes(&lq[i]);
    write_byte(lr.to_child[1], 'q');
    CHECK(wait_child(replier) == 0);
    unlink_pipes(&lr);
    CHECK(!segment_exists(service));
    printf("many requesters: %d requesters, %llu requests, each got exactly its own replies\n", n,
           (unsigned long long)total);
}

/* ================================================================== 2. two repliers */

/* Child: a replier sharing the service. It takes a first request and says 'h', and answers it only
 * after 'g' (the parent sends it once both repliers hold one); then it serves until 'q' and reports
 * how many it served. */
static int sharing_replier(int in, int out, void *arg)
{
    const uint64_t id = (uint64_t)(uintptr_t)arg;
    shmc_rep_t *rep = open_rep(service);
    write_byte(out, 'r');
    uint64_t buf[WORDS_MAX + 1];
    size_t len = 0;
    CHECK_OK(shmc_rep_recv(rep, buf, sizeof buf, &len, 10 * SECOND));
    uint64_t tag = check_intact(buf, len);
    write_byte(out, 'h');
    expect_byte(in, 'g');
    CHECK_OK(shmc_rep_send(rep, buf, make_reply(buf, tag, id)));
    uint64_t served = 1;
    for (;;) {
        int rc = serve_one(rep, id, 20 * MSEC, &tag);
        if (rc == 0) {
            served++;
            continue;
        }
        if (rc != SHMC_ETIMEDOUT) {
            fprintf(stderr, "replier %llu: %s\n", (unsigned long long)id, shmc_strerror(rc));
            return 2;
        }
        struct pollfd p = {in, POLLIN, 0};
        if (poll(&p, 1, 0) == 1) break; /* 'q' (or EOF) */
    }
    expect_byte(in, 'q');
    shmc_stats_t s = rep_stats(rep);
    if (s.received != served || s.sent != served || s.expired != 0) return 3;
    write_all(out, &served, sizeof served);
    CHECK_OK(shmc_rep_close(rep));
    return 0;
}

static void test_two_repliers(void)
{
    service = unique_name("rr-share");
    link_t lr[2];
    pid_t repliers[2];
    for (int i = 0; i < 2; i++) {
        repliers[i] = spawn(sharing_replier, (void *)(uintptr_t)(i + 1), &lr[i]);
        expect_byte(lr[i].to_parent[0], 'r');
    }
    /* Two requests pending at once: each replier takes one and holds it until both hold one. */
    shmc_req_t *req[2];
    uint64_t buf[WORDS_MAX + 1];
    for (int i = 0; i < 2; i++) {
        req[i] = open_req(service, 0);
        CHECK_OK(shmc_req_send(req[i], buf, fill_tag(buf, make_tag(10 + (uint32_t)i, 0)), SECOND));
    }
    for (int i = 0; i < 2; i++) expect_byte(lr[i].to_parent[0], 'h');
    for (int i = 0; i < 2; i++) write_byte(lr[i].to_child[1], 'g');
    uint64_t served_by[2];
    for (int i = 0; i < 2; i++) {
        size_t len = 0;
        CHECK_OK(shmc_req_recv(req[i], buf, sizeof buf, &len, 10 * SECOND));
        served_by[i] = check_reply(buf, len, make_tag(10 + (uint32_t)i, 0));
        CHECK(served_by[i] == 1 || served_by[i] == 2);
    }
    CHECK(served_by[0] != served_by[1]);

    /* Then load: 3 requester processes, any replier serves any request. */
    requester_arg_t args[3];
    link_t lq[3];
    pid_t kids[3];
    uint64_t total = 2;
    for (int i = 0; i < 3; i++) {
        args[i].id = (uint32_t)i;
        args[i].count = scaled(20000);
        total += args[i].count;
        kids[i] = spawn(requester, &args[i], &lq[i]);
    }
    for (int i = 0; i < 3; i++) expect_byte(lq[i].to_parent[0], 'r');
    for (int i = 0; i < 3; i++) write_byte(lq[i].to_child[1], 'g');
    for (int i = 0; i < 3; i++) CHECK(wait_child(kids[i]) == 0);
    for (int i = 0; i < 3; i++) unlink_pipes(&lq[i]);
    uint64_t served[2], sum = 0;
    for (int i = 0; i < 2; i++) {
        write_byte(lr[i].to_child[1], 'q');
        CHECK(read_all(lr[i].to_parent[0], &served[i], sizeof served[i]));
        CHECK(wait_child(repliers[i]) == 0);
        unlink_pipes(&lr[i]);
        CHECK(served[i] >= 1);
        sum += served[i];
    }
    CHECK(sum == total);
    for (int i = 0; i < 2; i++) {
        shmc_stats_t s = req_stats(req[i]);
        CHECK(s.sent == 1 && s.received == 1 && s.expired == 0);
        CHECK_OK(shmc_req_close(req[i]));
    }
    CHECK(!segment_exists(service));
    printf("two repliers: %llu requests answered, %llu and %llu by each\n", (unsigned long long)total,
           (unsigned long long)served[0], (unsigned long long)served[1]);
}

/* ================================================================== 3. late reply */

static void test_late_reply(void)
{
    service = unique_name("rr-late");
    link_t l;
    pid_t replier = spawn(remote_replier, (void *)(uintptr_t)7, &l);
    expect_byte(l.to_parent[0], 'r');
    shmc_req_t *req = open_req(service, 0);
    uint64_t buf[WORDS_MAX + 1];
    size_t len = 0;
    const uint64_t a = make_tag(1, 1), b = make_tag(1, 2), c = make_tag(1, 3), d = make_tag(1, 4);

    /* The replier takes A and holds it; the requester's wait for A times out (A stays pending). */
    CHECK_OK(shmc_req_send(req, buf, fill_tag(buf, a), SECOND));
    result_t r = remote(&l, 'r');
    CHECK(r.rc == 0 && r.tag == a);
    CHECK_RC(shmc_req_recv(req, buf, sizeof buf, &len, 20 * MSEC), SHMC_ETIMEDOUT);
    /* The requester moves on to B, which gives A up. */
    CHECK_OK(shmc_req_send(req, buf, fill_tag(buf, b), SECOND));
    CHECK(req_stats(req).expired == 1);
    /* A's reply comes late: discarded at the replier. */
    r = remote(&l, 's');
    CHECK_RC(r.rc, SHMC_EEXPIRED);
    /* It never reaches B: nothing for B yet. */
    CHECK_RC(shmc_req_recv(req, buf, sizeof buf, &len, 20 * MSEC), SHMC_ETIMEDOUT);
    r = remote(&l, 'r');
    CHECK(r.rc == 0 && r.tag == b);
    r = remote(&l, 's');
    CHECK_OK(r.rc);
    CHECK_OK(shmc_req_recv(req, buf, sizeof buf, &len, 10 * SECOND));
    CHECK(check_reply(buf, len, b) == 7);

    /* The same through shmc_req_request: the replier answers only when told, so the request times
     * out for certain. It took C in time (and its reply is late) or after C was given up (and C
     * was skipped): either way C's reply never reaches D. */
    write_byte(l.to_child[1], 'r');
    int64_t n = shmc_req_request(req, buf, fill_tag(buf, c), 200 * MSEC);
    CHECK_RC((int)n, SHMC_ETIMEDOUT);
    CHECK_OK(shmc_req_send(req, buf, fill_tag(buf, d), SECOND));
    r = read_result(&l);
    CHECK_OK(r.rc);
    const int took_c = r.tag == c;
    if (took_c) {
        CHECK_RC(remote(&l, 's').rc, SHMC_EEXPIRED);
        r = remote(&l, 'r');
        CHECK_OK(r.rc);
    }
    CHECK(r.tag == d);
    CHECK_OK(remote(&l, 's').rc);
    CHECK_OK(shmc_req_recv(req, buf, sizeof buf, &len, 10 * SECOND));
    CHECK(check_reply(buf, len, d) == 7);

    shmc_stats_t s = remote_stats(&l);
    CHECK(s.expired == 2 && s.sent == 2 && s.received == 3u + (unsigned)took_c);
    s = req_stats(req);
    CHECK(s.sent == 4 && s.received == 2 && s.expired == 2);
    write_byte(l.to_child[1], 'q');
    CHECK(wait_child(replier) == 0);
    unlink_pipes(&l);
    CHECK_OK(shmc_req_close(req));
    printf("late reply: ETIMEDOUT, then SHMC_EEXPIRED at the replier, never delivered to the next "
           "request (shmc_req_request's request %s)\n",
           took_c ? "answered late" : "skipped");
}

/* ================================================================== 4. replier killed holding a request */

typedef struct pending_request {
    pthread_t thread;
    shmc_req_t *req;
    uint64_t tag;
    int64_t result;
} pending_request_t;

static void *request_thread(void *arg)
{
    pending_request_t *p = arg;
    uint64_t buf[WORDS_MAX + 1];
    p->result = shmc_req_request(p->req, buf, fill_tag(buf, p->tag), 10 * SECOND);
    return NULL;
}

static void test_killed_replier(void)
{
    service = unique_name("rr-deadrep");
    link_t l;
    pid_t replier = spawn(remote_replier, (void *)(uintptr_t)1, &l);
    expect_byte(l.to_parent[0], 'r');
    shmc_req_t *req = open_req(service, 0);
    CHECK(shmc_req_replier_alive(req) == 1);
    uint64_t buf[WORDS_MAX + 1];
    size_t len = 0;

    /* The replier takes A and is killed before it answers. */
    const uint64_t a = make_tag(1, 1);
    CHECK_OK(shmc_req_send(req, buf, fill_tag(buf, a), SECOND));
    result_t r = remote(&l, 'r');
    CHECK(r.rc == 0 && r.tag == a);
    kill_to_zombie(replier);
    int rc = shmc_req_recv(req, buf, sizeof buf, &len, 10 * SECOND);
    CHECK(rc != SHMC_ETIMEDOUT); /* told at once, not after its 10 s */
    CHECK_RC(rc, SHMC_EPEERDEAD);
    CHECK_RC(shmc_req_recv(req, buf, sizeof buf, &len, 0), SHMC_ESEQUENCE); /* A was given up */
    CHECK(shmc_req_replier_alive(req) == 0);
    CHECK(wait_child(replier) == 128 + SIGKILL);
    unlink_pipes(&l);

    /* A new replier process: the requester follows the new generation. */
    replier = spawn(remote_replier, (void *)(uintptr_t)2, &l);
    expect_byte(l.to_parent[0], 'r');
    CHECK(shmc_req_replier_alive(req) == 1);
    write_all(l.to_child[1], "rs", 2); /* take, then answer */
    const uint64_t b = make_tag(1, 2);
    int64_t n = shmc_req_request(req, buf, fill_tag(buf, b), 10 * SECOND);
    CHECK(n > 0);
    const void *own;
    size_t cap;
    CHECK_OK(shmc_req_buffer(req, &own, &cap));
    CHECK(check_reply(own, (size_t)n, b) == 2);
    r = read_result(&l); /* 'r' */
    CHECK(r.rc == 0 && r.tag == b);
    CHECK_OK(read_result(&l).rc); /* 's' */
    CHECK(req_stats(req).reconnects == 1);

    /* Killed while the requester is already waiting in shmc_req_request (10 s). */
    pending_request_t p = {0, req, make_tag(1, 3), 0};
    write_byte(l.to_child[1], 'r');
    CHECK(pthread_create(&p.thread, NULL, request_thread, &p) == 0);
    r = read_result(&l); /* the replier holds it */
    CHECK(r.rc == 0 && r.tag == p.tag);
    kill_to_zombie(replier);
    CHECK(pthread_join(p.thread, NULL) == 0);
    CHECK(p.result != SHMC_ETIMEDOUT);
    CHECK_RC((int)p.result, SHMC_EPEERDEAD);
    CHECK(wait_child(replier) == 128 + SIGKILL);
    unlink_pipes(&l);

    /* Restarted again; this time the requester just makes its next request. */
    replier = spawn(remote_replier, (void *)(uintptr_t)3, &l);
    expect_byte(l.to_parent[0], 'r');
    write_all(l.to_child[1], "rs", 2);
    const uint64_t d = make_tag(1, 4);
    n = shmc_req_request(req, buf, fill_tag(buf, d), 10 * SECOND);
    CHECK(n > 0);
    CHECK_OK(shmc_req_buffer(req, &own, &cap));
    CHECK(check_reply(own, (size_t)n, d) == 3);
    r = read_result(&l);
    CHECK(r.rc == 0 && r.tag == d);
    CHECK_OK(read_result(&l).rc);
    shmc_stats_t s = req_stats(req);
    CHECK(s.reconnects == 2 && s.received == 2);
    write_byte(l.to_child[1], 'q');
    CHECK(wait_child(replier) == 0);
    unlink_pipes(&l);
    CHECK_OK(shmc_req_close(req));
    CHECK(!segment_exists(service));
    puts("killed replier: the waiting requester got SHMC_EPEERDEAD, and followed two restarts");
}

/* ================================================================== 5. requester killed mid-request */

/* Child: sends one request (its tag is *arg) and waits to be killed. */
static int doomed_requester(int in, int out, void *arg)
{
    const uint64_t tag = *(uint64_t *)arg;
    shmc_req_t *req = open_req(service, 5 * SECOND);
    uint64_t buf[WORDS_MAX + 1];
    CHECK_OK(shmc_req_send(req, buf, fill_tag(buf, tag), SECOND));
    write_byte(out, 'r');
    char byte;
    read_all(in, &byte, 1);
    return 0;
}

static void test_killed_requester(void)
{
    service = unique_name("rr-deadreq");
    shmc_rep_t *rep = open_rep(service);
    uint64_t buf[WORDS_MAX + 1];
    size_t len = 0;
    link_t l;

    /* Killed after the replier took its request: the reply goes nowhere, harmlessly. */
    uint64_t tag1 = make_tag(20, 0);
    pid_t kid = spawn(doomed_requester, &tag1, &l);
    expect_byte(l.to_parent[0], 'r');
    CHECK_OK(shmc_rep_recv(rep, buf, sizeof buf, &len, 5 * SECOND));
    CHECK(check_intact(buf, len) == tag1);
    kill_to_zombie(kid);
    int rc = shmc_rep_send(rep, buf, make_reply(buf, tag1, 1));
    CHECK(rc == 0 || rc == SHMC_EEXPIRED);
    CHECK(wait_child(kid) == 128 + SIGKILL);
    unlink_pipes(&l);

    /* Killed while its request is queued. shmcomm.h (shmc_rep_recv): "Requests whose requester
     * stopped waiting (timed out, cancelled, died) are skipped without being returned, and counted
     * as expired." */
    uint64_t tag2 = make_tag(21, 0);
    kid = spawn(doomed_requester, &tag2, &l);
    expect_byte(l.to_parent[0], 'r');
    kill_to_zombie(kid);
    const uint64_t expired_before = rep_stats(rep).expired;
    rc = shmc_rep_recv(rep, buf, sizeof buf, &len, 300 * MSEC);
    EXPECT_DOC(rc == SHMC_ETIMEDOUT,
               "shmc_rep_recv returns a request whose requester is dead (rep_take only checks the "
               "mailbox word, which a dead requester never resets)");
    if (rc == 0) {
        /* Returned anyway: answering it must not disturb anything (0 or EEXPIRED, as above). */
        CHECK(check_intact(buf, len) == tag2);
        rc = shmc_rep_send(rep, buf, make_reply(buf, tag2, 1));
        CHECK(rc == 0 || rc == SHMC_EEXPIRED);
    } else {
        CHECK_RC(rc, SHMC_ETIMEDOUT);
        CHECK(rep_stats(rep).expired == expired_before + 1);
    }
    CHECK(wait_child(kid) == 128 + SIGKILL);
    unlink_pipes(&l);

    /* The replier serves the next requester normally. */
    requester_arg_t arg = {3, scaled(10000)};
    kid = spawn(requester, &arg, &l);
    expect_byte(l.to_parent[0], 'r');
    write_byte(l.to_child[1], 'g');
    for (uint64_t i = 0; i < arg.count; i++) {
        uint64_t tag = 0;
        CHECK_OK(serve_one(rep, 1, 10 * SECOND, &tag));
        CHECK(tag == make_tag(3, i));
    }
    CHECK(wait_child(kid) == 0);
    unlink_pipes(&l);
    shmc_stats_t s = rep_stats(rep);
    CHECK(s.sent >= arg.count + 1 && s.dropped == 0);
    CHECK_OK(shmc_rep_close(rep));
    CHECK(!segment_exists(service));
    puts("killed requester: the replier went on serving");
}

/* ================================================================== 6. sequencing and edges */

/* Child: becomes the replier a little after it starts (the requester is already waiting in its
 * open), serves one request, and closes after 'q'. */
static int late_replier(int in, int out, void *arg)
{
    (void)out, (void)arg;
    struct timespec ts = {0, 150 * MSEC};
    nanosleep(&ts, NULL); /* only so that the requester's open really waits; nothing depends on it */
    shmc_rep_t *rep = open_rep(service);
    uint64_t tag;
    CHECK_OK(serve_one(rep, 5, 10 * SECOND, &tag));
    expect_byte(in, 'q');
    CHECK_OK(shmc_rep_close(rep));
    return 0;
}

static void test_sequencing(void)
{
    service = unique_name("rr-seq");
    shmc_req_options_t ro;
    shmc_req_options_init(&ro);
    ro.connect_timeout_ns = 0;
    shmc_req_t *req = NULL;
    CHECK_RC(shmc_req_open(service, &ro, &req), SHMC_ENOENT); /* no service, and no wait */
    CHECK(req == NULL);

    shmc_rep_options_t o;
    shmc_rep_options_init(&o);
    CHECK(o.num_slots == 16 && o.slot_size == 8192);
    o.flags = SHMC_LOSSLESS;
    shmc_rep_t *rep = NULL;
    CHECK_RC(shmc_rep_open(service, &o, &rep), SHMC_EINVAL);
    rep = open_rep(service);
    req = open_req(service, 0);
    uint64_t buf[WORDS_MAX + 1], big[SLOT_SIZE / 8 + 1];
    size_t len = 0;

    /* Nothing taken, nothing sent. */
    CHECK_RC(shmc_rep_send(rep, buf, 8), SHMC_ESEQUENCE);
    CHECK_RC(shmc_req_recv(req, buf, sizeof buf, &len, 0), SHMC_ESEQUENCE);
    CHECK_RC((int)shmc_req_next(req, 0), SHMC_ESEQUENCE);
    CHECK_RC(shmc_rep_recv(rep, buf, sizeof buf, &len, 0), SHMC_EAGAIN);
    CHECK_RC(shmc_req_send(req, big, SLOT_SIZE + 1, 0), SHMC_EMSGSIZE);

    /* A request too large for the replier's buffer is left in the queue, with its size. */
    const uint64_t a = make_tag(1, 15); /* 128 bytes */
    CHECK_OK(shmc_req_send(req, buf, fill_tag(buf, a), 0));
    CHECK_RC(shmc_rep_recv(rep, buf, 16, &len, 0), SHMC_ETRUNC);
    CHECK(len == 128);
    CHECK_RC(shmc_rep_send(rep, buf, 8), SHMC_ESEQUENCE); /* nothing was taken */
    int64_t n = shmc_rep_next(rep, 0);
    CHECK(n == 128);
    const void *own;
    size_t cap;
    CHECK_OK(shmc_rep_buffer(rep, &own, &cap));
    CHECK(cap >= SLOT_SIZE && check_intact(own, (size_t)n) == a);
    /* A reply too large is refused and the request stays current. */
    CHECK_RC(shmc_rep_send(rep, big, SLOT_SIZE + 1), SHMC_EMSGSIZE);
    CHECK_OK(shmc_rep_send(rep, buf, make_reply(buf, a, 1)));
    CHECK_RC(shmc_rep_send(rep, buf, 8), SHMC_ESEQUENCE); /* answered already */
    /* A reply too large for the requester's buffer stays pending, with its size. */
    CHECK_RC(shmc_req_recv(req, buf, 8, &len, SECOND), SHMC_ETRUNC);
    CHECK(len == 136);
    CHECK_OK(shmc_req_recv(req, buf, sizeof buf, &len, 0));
    CHECK(check_reply(buf, len, a) == 1);
    CHECK_RC(shmc_req_recv(req, buf, sizeof buf, &len, 0), SHMC_ESEQUENCE); /* received already */

    /* A cancelled request is skipped by the replier and counted as expired on both sides. */
    CHECK_OK(shmc_req_send(req, buf, fill_tag(buf, make_tag(1, 2)), 0));
    CHECK_OK(shmc_req_cancel(req));
    CHECK_OK(shmc_req_cancel(req)); /* nothing pending: no-op */
    CHECK_RC(shmc_req_recv(req, buf, sizeof buf, &len, 0), SHMC_ESEQUENCE);
    CHECK_RC(shmc_rep_recv(rep, buf, sizeof buf, &len, 0), SHMC_EAGAIN);
    CHECK(rep_stats(rep).expired == 1);
    CHECK(req_stats(req).expired == 1);

    /* Taking the next request without answering leaves the previous one to its timeout. */
    const uint64_t c = make_tag(1, 3);
    CHECK_OK(shmc_req_send(req, buf, fill_tag(buf, c), 0));
    CHECK_OK(shmc_rep_recv(rep, buf, sizeof buf, &len, 0));
    CHECK(check_intact(buf, len) == c);
    CHECK_RC(shmc_rep_recv(rep, buf, sizeof buf, &len, 0), SHMC_EAGAIN);
    CHECK_RC(shmc_rep_send(rep, buf, 8), SHMC_ESEQUENCE);
    CHECK_RC(shmc_req_recv(req, buf, sizeof buf, &len, 20 * MSEC), SHMC_ETIMEDOUT);
    CHECK_OK(shmc_req_cancel(req));

    shmc_stats_t s = rep_stats(rep);
    CHECK(s.received == 2 && s.sent == 1 && s.expired == 1 && s.head == 3 && s.tail == 3);
    CHECK(s.publishers == 1 && s.subscribers == 1);
    s = req_stats(req);
    CHECK(s.sent == 3 && s.received == 1 && s.expired == 2);

    /* Invalid arguments. */
    CHECK_RC(shmc_rep_send(NULL, buf, 8), SHMC_EINVAL);
    CHECK_RC(shmc_req_send(req, NULL, 8, 0), SHMC_EINVAL);
    CHECK_RC(shmc_req_recv(req, buf, 8, NULL, 0), SHMC_EINVAL);
    CHECK_RC(shmc_req_cancel(NULL), SHMC_EINVAL);

    /* The last replier closes the service: the requester is told. */
    CHECK_OK(shmc_rep_close(rep));
    CHECK(!segment_exists(service));
    CHECK(shmc_req_replier_alive(req) == 0);
    CHECK_RC(shmc_req_send(req, buf, fill_tag(buf, make_tag(1, 9)), 0), SHMC_ECLOSED);
    CHECK_OK(shmc_req_close(req));

    /* A requester that opens first waits for the replier (connect_timeout) and then works. */
    service = unique_name("rr-connect");
    link_t l;
    pid_t kid = spawn(late_replier, NULL, &l);
    req = open_req(service, 10 * SECOND);
    n = shmc_req_request(req, buf, fill_tag(buf, make_tag(2, 7)), 10 * SECOND);
    CHECK(n > 0);
    CHECK_OK(shmc_req_buffer(req, &own, &cap));
    CHECK(check_reply(own, (size_t)n, make_tag(2, 7)) == 5);
    write_byte(l.to_child[1], 'q');
    CHECK(wait_child(kid) == 0);
    unlink_pipes(&l);
    CHECK_OK(shmc_req_close(req));

    /* No replier alive: shmcomm.h (shmc_req_send): "SHMC_EPEERDEAD if no replier lives". */
    service = unique_name("rr-norep");
    kid = spawn(remote_replier, (void *)(uintptr_t)1, &l);
    expect_byte(l.to_parent[0], 'r');
    req = open_req(service, 0);
    kill_to_zombie(kid);
    int rc = shmc_req_send(req, buf, fill_tag(buf, make_tag(3, 1)), SECOND);
    EXPECT_DOC(rc == SHMC_EPEERDEAD,
               "shmc_req_send queues a request although no replier lives (it never checks the "
               "repliers; only the wait for the reply notices, up to 100 ms later)");
    if (rc == 0) {
        rc = shmc_req_recv(req, buf, sizeof buf, &len, 10 * SECOND);
        CHECK(rc != SHMC_ETIMEDOUT);
        CHECK_RC(rc, SHMC_EPEERDEAD);
    } else {
        CHECK_RC(rc, SHMC_EPEERDEAD);
    }
    CHECK(wait_child(kid) == 128 + SIGKILL);
    unlink_pipes(&l);
    CHECK_OK(shmc_req_close(req));
    /* The dead replier's segment is stale (nobody alive could remove it): a new replier replaces
     * it, and closing removes it. */
    rep = open_rep(service);
    CHECK_OK(shmc_rep_close(rep));
    CHECK(!segment_exists(service));
    puts("sequencing: ESEQUENCE, truncation, cancel, skipped requests, connect wait ok");
}

int main(void)
{
    scale_init(4, 200);
    alarm(240); /* watchdog: a hang fails the test instead of stalling the suite */

    test_sequencing();
    test_late_reply();
    test_many_requesters();
    test_two_repliers();
    test_killed_replier();
    test_killed_requester();
    return test_result("reqrep");
}
