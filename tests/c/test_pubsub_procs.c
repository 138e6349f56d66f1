/* PUB/SUB across real processes (fork), including processes killed with SIGKILL:
 *   - 3 subscriber processes receive every message of a lossless publisher, in order;
 *   - a publisher killed mid-stream: no torn message, publisher_alive drops to 0 (already while
 *     the dead process is a zombie), and a new publisher process is followed by the subscriber;
 *   - a publisher killed between claiming a slot and publishing it: the slot is skipped;
 *   - a lossless publisher whose subscriber is killed does not block: the dead one is reaped.
 * Children report through pipes and exit codes; every wait is bounded (timeouts, and an alarm()
 * watchdog that kills a hung process). Counts shrink under ThreadSanitizer or by the factor in
 * SHMC_TEST_SCALE_DOWN. */
#include "check.h"
#include "shmcomm.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <fcntl.h>

#define SECOND 1000000000ll
#define SLOT_SIZE 128
#define WORDS_MAX (SLOT_SIZE / 8)

static uint64_t scale_down = 1;

static uint64_t scaled(uint64_t n)
{
    n /= scale_down;
    return n < 1000 ? 1000 : n;
}

/* ------------------------------------------------------------------ payloads */

/* Every word of a message is its tag (publisher id << 56 | sequence number); the length varies
 * with the sequence number. A torn copy or a foreign length is visible. */
static uint64_t make_tag(uint32_t publisher, uint64_t seq) { return ((uint64_t)publisher << 56) | seq; }
static uint32_t tag_publisher(uint64_t tag) { return (uint32_t)(tag >> 56); }
static uint64_t tag_seq(uint64_t tag) { return tag & ((1ull << 56) - 1); }
static size_t bytes_for(uint64_t seq) { return 8 * (1 + seq % WORDS_MAX); }

static size_t fill(uint64_t *buf, uint32_t publisher, uint64_t seq)
{
    size_t n = bytes_for(seq);
    for (size_t i = 0; i < n / 8; i++) buf[i] = make_tag(publisher, seq);
    return n;
}

/* The tag of an intact message, or exits (status 1) if it is torn. */
static uint64_t check_intact(const uint64_t *w, size_t len)
{
    CHECK(len >= 8 && len <= SLOT_SIZE && len % 8 == 0);
    for (size_t i = 1; i < len / 8; i++) {
        if (w[i] != w[0]) {
            fprintf(stderr, "torn message: word 0 = %#llx, word %zu = %#llx\n",
                    (unsigned long long)w[0], i, (unsigned long long)w[i]);
            CHECK(w[i] == w[0]);
        }
    }
    CHECK(len == bytes_for(tag_seq(w[0])));
    return w[0];
}

/* ------------------------------------------------------------------ processes */

static void write_byte(int fd, char byte)
{
    ssize_t r;
    while ((r = write(fd, &byte, 1)) < 0 && errno == EINTR) {}
    CHECK(r == 1);
}

/* Reads one byte; 0 at EOF (the other side is gone). */
static int read_byte(int fd, char *byte)
{
    ssize_t r;
    while ((r = read(fd, byte, 1)) < 0 && errno == EINTR) {}
    CHECK(r >= 0);
    return r == 1;
}

typedef struct link {
    int to_child[2];
    int to_parent[2];
} link_t;

/* Forks; in the child, runs fn with the child's ends of both pipes and exits with its result.
 * A child that outlives 60 s (something hung) is killed by its alarm. */
static pid_t spawn(int (*fn)(int in, int out, void *arg), void *arg, link_t *l)
{
    CHECK(pipe(l->to_child) == 0 && pipe(l->to_parent) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(60);
        close(l->to_child[1]);
        close(l->to_parent[0]);
        _exit(fn(l->to_child[0], l->to_parent[1], arg));
    }
    close(l->to_child[0]);
    close(l->to_parent[1]);
    return pid;
}

static void unlink_pipes(link_t *l)
{
    close(l->to_child[1]);
    close(l->to_parent[0]);
}

/* Waits for the child's exit; returns its exit status, or 128 + signal. */
static int wait_child(pid_t pid)
{
    int status = 0;
    pid_t r;
    while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {}
    CHECK(r == pid);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* SIGKILLs the child and waits until it is a zombie: dead, but not reaped by us yet (WNOWAIT). */
static void kill_to_zombie(pid_t pid)
{
    CHECK(kill(pid, SIGKILL) == 0);
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int rc;
    while ((rc = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT)) < 0 && errno == EINTR) {}
    CHECK(rc == 0 && info.si_pid == pid);
}

static int segment_exists(const char *name)
{
    char os_name[256], path[260];
    CHECK_OK(shmc_os_name(name, SHMC_PATTERN_PUBSUB, os_name, sizeof os_name));
    snprintf(path, sizeof path, "/%s", os_name);
    int fd = shm_open(path, O_RDONLY, 0);
    if (fd < 0) return 0;
    close(fd);
    return 1;
}

static shmc_pub_t *open_pub(const char *name, uint32_t slots, uint32_t flags)
{
    shmc_pub_options_t o;
    shmc_pub_options_init(&o);
    o.num_slots = slots;
    o.slot_size = SLOT_SIZE;
    o.flags = flags;
    shmc_pub_t *pub = NULL;
    CHECK_OK(shmc_pub_open(name, &o, &pub));
    return pub;
}

static shmc_sub_t *open_sub(const char *name)
{
    shmc_sub_options_t o;
    shmc_sub_options_init(&o);
    o.connect_timeout_ns = 5 * SECOND;
    shmc_sub_t *sub = NULL;
    CHECK_OK(shmc_sub_open(name, &o, &sub));
    return sub;
}

static shmc_stats_t sub_stats(shmc_sub_t *sub)
{
    shmc_stats_t s;
    s.size = sizeof s;
    CHECK_OK(shmc_sub_stats(sub, &s));
    return s;
}

static const char *channel_name;

/* ------------------------------------------------------------------ 3 lossless subscribers */

typedef struct counted {
    uint64_t count;
} counted_t;

/* Child: attaches, says ready, receives `count` messages in order, exits 0 if all were right. */
static int lossless_subscriber(int in, int out, void *arg)
{
    (void)in;
    uint64_t count = ((counted_t *)arg)->count;
    shmc_sub_t *sub = open_sub(channel_name);
    write_byte(out, 'r');
    uint64_t buf[WORDS_MAX];
    for (uint64_t seq = 0; seq < count; seq++) {
        size_t len;
        int rc = shmc_sub_recv(sub, buf, sizeof buf, &len, 10 * SECOND);
        if (rc) {
            fprintf(stderr, "subscriber %d: message %llu: %s\n", (int)getpid(),
                    (unsigned long long)seq, shmc_strerror(rc));
            return 2;
        }
        uint64_t tag = check_intact(buf, len);
        if (tag != make_tag(1, seq)) {
            fprintf(stderr, "subscriber %d: got %#llx, wanted seq %llu\n", (int)getpid(),
                    (unsigned long long)tag, (unsigned long long)seq);
            return 3;
        }
    }
    shmc_stats_t s = sub_stats(sub);
    if (s.received != count || s.dropped != 0) return 4;
    CHECK_OK(shmc_sub_close(sub));
    return 0;
}

static void test_three_subscribers(void)
{
    channel_name = unique_name("procs-lossless");
    counted_t arg = {scaled(100000)};
    shmc_pub_t *pub = open_pub(channel_name, 64, SHMC_LOSSLESS);
    pid_t kids[3];
    link_t links[3];
    for (int i = 0; i < 3; i++) kids[i] = spawn(lossless_subscriber, &arg, &links[i]);
    char byte;
    for (int i = 0; i < 3; i++) CHECK(read_byte(links[i].to_parent[0], &byte) && byte == 'r');
    shmc_stats_t s;
    s.size = sizeof s;
    CHECK_OK(shmc_pub_stats(pub, &s));
    CHECK(s.subscribers == 3);

    uint64_t buf[WORDS_MAX];
    for (uint64_t seq = 0; seq < arg.count; seq++)
        CHECK_OK(shmc_pub_send(pub, buf, fill(buf, 1, seq), 10 * SECOND));
    for (int i = 0; i < 3; i++) {
        CHECK(wait_child(kids[i]) == 0);
        unlink_pipes(&links[i]);
    }
    CHECK_OK(shmc_pub_close(pub));
    CHECK(!segment_exists(channel_name));
    printf("three subscribers: %llu messages each, in order, none dropped\n",
           (unsigned long long)arg.count);
}

/* ------------------------------------------------------------------ killed publisher, restart */

/* Child: publishes messages from publisher id 1 until it is killed. */
static int endless_publisher(int in, int out, void *arg)
{
    (void)in, (void)arg;
    shmc_pub_t *pub = open_pub(channel_name, 16, 0);
    write_byte(out, 'r');
    uint64_t buf[WORDS_MAX];
    for (uint64_t seq = 0;; seq++) CHECK_OK(shmc_pub_send(pub, buf, fill(buf, 1, seq), 0));
}

/* Child: a new lossless publisher (id 2) on the name. Publishes one message, waits for 'g', sends
 * the rest, then waits for the parent to have read them (EOF or any byte) before closing. */
static int second_publisher(int in, int out, void *arg)
{
    uint64_t count = ((counted_t *)arg)->count;
    shmc_pub_t *pub = open_pub(channel_name, 16, SHMC_LOSSLESS);
    uint64_t buf[WORDS_MAX];
    CHECK_OK(shmc_pub_send(pub, buf, fill(buf, 2, 0), 0));
    write_byte(out, 'r');
    char byte;
    if (!read_byte(in, &byte) || byte != 'g') return 5;
    for (uint64_t seq = 1; seq < count; seq++)
        CHECK_OK(shmc_pub_send(pub, buf, fill(buf, 2, seq), 10 * SECOND));
    read_byte(in, &byte);
    CHECK_OK(shmc_pub_close(pub));
    return 0;
}

static void test_killed_publisher_and_restart(void)
{
    channel_name = unique_name("procs-restart");
    link_t l1, l2;
    pid_t first = spawn(endless_publisher, NULL, &l1);
    char byte;
    CHECK(read_byte(l1.to_parent[0], &byte) && byte == 'r');
    shmc_sub_t *sub = open_sub(channel_name);
    CHECK(shmc_sub_publisher_alive(sub) == 1);
    const uint64_t start = sub_stats(sub).cursor; /* the head when we attached */

    /* Receive while it publishes, kill it mid-stream, then drain what it left behind. */
    uint64_t buf[WORDS_MAX];
    uint64_t got = 0, last = 0;
    const uint64_t before_kill = scaled(20000);
    int killed = 0;
    for (;;) {
        size_t len;
        int rc = shmc_sub_recv(sub, buf, sizeof buf, &len, killed ? 0 : 10 * SECOND);
        if (killed && rc == SHMC_EAGAIN) break;
        CHECK_OK(rc);
        uint64_t tag = check_intact(buf, len);
        CHECK(tag_publisher(tag) == 1);
        CHECK(got == 0 || tag_seq(tag) > last); /* strictly increasing */
        last = tag_seq(tag);
        got++;
        if (got == before_kill) {
            /* Once it is a zombie it publishes nothing more: draining until empty is exact. */
            kill_to_zombie(first);
            killed = 1;
        }
    }
    shmc_stats_t s = sub_stats(sub);
    CHECK(s.received == got);
    CHECK(s.cursor == last + 1); /* one publisher: sequence number == position */
    CHECK(s.received + s.dropped == s.cursor - start);
    /* A zombie is dead: no need to wait for its parent to reap it. */
    CHECK(shmc_sub_publisher_alive(sub) == 0);
    CHECK(wait_child(first) == 128 + SIGKILL);
    unlink_pipes(&l1);
    CHECK(shmc_sub_publisher_alive(sub) == 0);
    s = sub_stats(sub);
    CHECK(s.publishers == 0 && s.publisher_alive == 0 && s.reconnects == 0);
    CHECK(segment_exists(channel_name)); /* a dead publisher cannot unlink: the segment is stale */

    /* A new publisher process replaces the stale segment; the attached subscriber follows it by
     * itself while it waits in a receive, and gets all its messages. */
    counted_t arg = {scaled(20000)};
    pid_t second = spawn(second_publisher, &arg, &l2);
    CHECK(read_byte(l2.to_parent[0], &byte) && byte == 'r');
    size_t len;
    CHECK_OK(shmc_sub_recv(sub, buf, sizeof buf, &len, 5 * SECOND));
    CHECK(check_intact(buf, len) == make_tag(2, 0));
    s = sub_stats(sub);
    CHECK(s.reconnects == 1 && s.publishers == 1);
    CHECK(shmc_sub_publisher_alive(sub) == 1);
    uint64_t dropped_before = s.dropped;
    write_byte(l2.to_child[1], 'g');
    for (uint64_t seq = 1; seq < arg.count; seq++) {
        CHECK_OK(shmc_sub_recv(sub, buf, sizeof buf, &len, 10 * SECOND));
        CHECK(check_intact(buf, len) == make_tag(2, seq));
    }
    s = sub_stats(sub);
    CHECK(s.reconnects == 1 && s.dropped == dropped_before);
    write_byte(l2.to_child[1], 'd');
    CHECK(wait_child(second) == 0);
    unlink_pipes(&l2);
    CHECK(shmc_sub_publisher_alive(sub) == 0);
    CHECK_OK(shmc_sub_close(sub));
    CHECK(!segment_exists(channel_name));
    printf("killed publisher: %llu intact messages before the kill, restart followed\n",
           (unsigned long long)got);
}

/* ------------------------------------------------------------------ killed between claim and publish */

/* Child: joins as a second publisher, claims a slot with a loan, says ready, and waits to die. */
static int claiming_publisher(int in, int out, void *arg)
{
    (void)arg;
    shmc_pub_t *pub = open_pub(channel_name, 8, 0);
    void *slot;
    size_t cap;
    CHECK_OK(shmc_pub_loan(pub, &slot, &cap, 0));
    memset(slot, 0xEE, cap); /* half-written garbage that nobody may ever receive */
    write_byte(out, 'r');
    char byte;
    read_byte(in, &byte); /* until killed (or the parent is gone) */
    return 0;
}

static void test_killed_claimant(void)
{
    channel_name = unique_name("procs-claimant");
    shmc_pub_t *pub = open_pub(channel_name, 8, 0);
    shmc_sub_t *sub = open_sub(channel_name);
    link_t l;
    pid_t child = spawn(claiming_publisher, NULL, &l);
    char byte;
    CHECK(read_byte(l.to_parent[0], &byte) && byte == 'r');
    uint64_t buf[WORDS_MAX];
    size_t len;
    CHECK_RC(shmc_sub_recv(sub, buf, sizeof buf, &len, 0), SHMC_EAGAIN); /* position 0 is claimed */
    CHECK_OK(shmc_pub_send(pub, buf, fill(buf, 1, 1), 0));              /* position 1 */
    kill_to_zombie(child);
    CHECK_OK(shmc_sub_recv(sub, buf, sizeof buf, &len, 5 * SECOND));
    CHECK(check_intact(buf, len) == make_tag(1, 1));
    shmc_stats_t s = sub_stats(sub);
    CHECK(s.received == 1 && s.dropped == 1 && s.publishers == 1);
    CHECK(wait_child(child) == 128 + SIGKILL);
    unlink_pipes(&l);
    CHECK_OK(shmc_sub_close(sub));
    CHECK_OK(shmc_pub_close(pub));
    CHECK(!segment_exists(channel_name));
    puts("killed claimant: skipped, counted as dropped");
}

/* ------------------------------------------------------------------ lossless, killed subscriber */

/* Child: attaches, says ready, waits for 'g', reads 5 messages and kills itself. */
static int dying_subscriber(int in, int out, void *arg)
{
    (void)arg;
    shmc_sub_t *sub = open_sub(channel_name);
    write_byte(out, 'r');
    char byte;
    if (!read_byte(in, &byte) || byte != 'g') return 5;
    uint64_t buf[WORDS_MAX];
    for (int i = 0; i < 5; i++) {
        size_t len;
        CHECK_OK(shmc_sub_recv(sub, buf, sizeof buf, &len, 10 * SECOND));
        CHECK(check_intact(buf, len) == make_tag(1, (uint64_t)i));
    }
    raise(SIGKILL);
    return 6;
}

static void test_killed_subscriber_lossless(void)
{
    channel_name = unique_name("procs-deadsub");
    const uint32_t slots = 16;
    shmc_pub_t *pub = open_pub(channel_name, slots, SHMC_LOSSLESS);
    counted_t arg = {slots + scaled(20000)};
    link_t ld, ll;
    pid_t dying = spawn(dying_subscriber, NULL, &ld);
    pid_t live = spawn(lossless_subscriber, &arg, &ll);
    char byte;
    CHECK(read_byte(ld.to_parent[0], &byte) && byte == 'r');
    CHECK(read_byte(ll.to_parent[0], &byte) && byte == 'r');

    /* The ring fills up behind the subscriber that reads nothing yet. */
    uint64_t buf[WORDS_MAX];
    uint64_t seq = 0;
    for (; seq < slots; seq++) CHECK_OK(shmc_pub_send(pub, buf, fill(buf, 1, seq), 10 * SECOND));
    CHECK_RC(shmc_pub_send(pub, buf, fill(buf, 1, seq), 0), SHMC_EAGAIN);
    /* It reads 5 and dies, most likely while we wait for it; we must get past it. */
    write_byte(ld.to_child[1], 'g');
    for (; seq < arg.count; seq++) CHECK_OK(shmc_pub_send(pub, buf, fill(buf, 1, seq), 10 * SECOND));
    CHECK(wait_child(live) == 0);
    CHECK(wait_child(dying) == 128 + SIGKILL);
    unlink_pipes(&ld);
    unlink_pipes(&ll);
    shmc_stats_t s;
    s.size = sizeof s;
    CHECK_OK(shmc_pub_stats(pub, &s));
    CHECK(s.sent == arg.count && s.subscribers == 0);
    CHECK_OK(shmc_pub_close(pub));
    CHECK(!segment_exists(channel_name));
    printf("killed lossless subscriber: %llu messages sent past it\n", (unsigned long long)arg.count);
}

int main(void)
{
#if defined(__SANITIZE_THREAD__)
    scale_down = 2;
#endif
    const char *env = getenv("SHMC_TEST_SCALE_DOWN");
    if (env && atoi(env) > 0) scale_down = (uint64_t)atoi(env);
    alarm(240); /* watchdog: a hang fails the test instead of stalling the suite */

    test_three_subscribers();
    test_killed_publisher_and_restart();
    test_killed_claimant();
    test_killed_subscriber_lossless();
    puts("pubsub_procs: ok");
    return 0;
}
