/* PAIR: roles and their exclusivity, option checks, the two-way exchange in order and exactly once
 * between processes, the heartbeat (seen by the remote, with and without the thread), SIGKILL of the
 * master mid-stream and its restart (the slave reattaches by itself and loses nothing the dead master
 * had written), the restart of the slave, and the disconnect behaviours. */
#include "procs.h"

#include <stdatomic.h>
#include <time.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *pair_name;

/* Sides opened by the parent before it forks children do without the heartbeat thread
 * (forking a process that runs threads is unsupported under ThreadSanitizer). Such a parent,
 * blocked in a pipe read, beats no more: its children wait until they see it (alive or stale), not
 * until it is fresh. */
static uint32_t parent_flags;

static shmc_pair_t *open_pair(uint32_t role, uint32_t disconnect, int64_t reconnect_wait_ns)
{
    shmc_pair_options_t o;
    shmc_pair_options_init(&o);
    o.flags = parent_flags;

    o.role = role;
    o.disconnect = disconnect;
    o.reconnect_wait_ns = reconnect_wait_ns;
    o.num_slots = 16;
    o.slot_size = 8 * WORDS_MAX;
    shmc_pair_t *p = NULL;
    CHECK_OK(shmc_pair_open(pair_name, &o, &p));
    return p;
}

static shmc_pair_stats_t pair_stats(shmc_pair_t *p)
{
    shmc_pair_stats_t s;
    s.size = sizeof s;
    CHECK_OK(shmc_pair_stats(p, &s));
    return s;
}

/* Waits (bounded) until the remote is alive; 1 if it is. */
static int wait_alive(shmc_pair_t *p, int want)
{
    const uint64_t deadline = now_ns() + 10 * SECOND;
    while (shmc_pair_remote_alive(p) != want) {
        if (now_ns() > deadline) return 0;
        usleep(1000);
    }
    return 1;
}

static void test_roles_and_options(void)
{
    pair_name = unique_name("pair-roles");
    shmc_pair_t *master = open_pair(SHMC_PAIR_AUTO, SHMC_DISCONNECT_ON_TIMEOUT, 5 * SECOND);
    CHECK(shmc_pair_role(master) == SHMC_PAIR_MASTER);
    CHECK(pair_stats(master).remote_state == SHMC_REMOTE_NONE);
    CHECK(!shmc_pair_remote_alive(master));
    /* Written before any slave exists: queued for it. */
    CHECK_OK(shmc_pair_write(master, "early", 5, 0));
    shmc_pair_t *slave = open_pair(SHMC_PAIR_AUTO, SHMC_DISCONNECT_ON_TIMEOUT, 5 * SECOND);
    CHECK(shmc_pair_role(slave) == SHMC_PAIR_SLAVE);
    /* Both roles are held by a live process (this one): a third side cannot open. */
    shmc_pair_options_t o;
    shmc_pair_options_init(&o);
    shmc_pair_t *third = NULL;
    CHECK_RC(shmc_pair_open(pair_name, &o, &third), SHMC_EPEERS);
    o.role = SHMC_PAIR_MASTER;
    CHECK_RC(shmc_pair_open(pair_name, &o, &third), SHMC_EPEERS);
    o.role = SHMC_PAIR_SLAVE;
    CHECK_RC(shmc_pair_open(pair_name, &o, &third), SHMC_EPEERS);
    CHECK(third == NULL);

    char buf[64];
    size_t len = 0;
    CHECK_OK(shmc_pair_read(slave, buf, sizeof buf, &len, SECOND));
    CHECK(len == 5 && memcmp(buf, "early", 5) == 0);
    CHECK_OK(shmc_pair_write(slave, "reply", 5, SECOND));
    CHECK_RC(shmc_pair_read(slave, buf, sizeof buf, &len, 0), SHMC_EAGAIN);
    CHECK_RC(shmc_pair_read(slave, buf, sizeof buf, &len, 20 * MSEC), SHMC_ETIMEDOUT);
    CHECK_RC(shmc_pair_read(master, buf, 2, &len, 0), SHMC_ETRUNC); /* nothing consumed */
    CHECK(len == 5);
    CHECK(shmc_pair_next(master, SECOND) == 5);
    const void *own = NULL;
    size_t cap = 0;
    CHECK_OK(shmc_pair_buffer(master, &own, &cap));
    CHECK(cap >= 5 && memcmp(own, "reply", 5) == 0);
    CHECK(wait_alive(master, 1) && wait_alive(slave, 1));
    shmc_pair_stats_t s = pair_stats(master);
    CHECK(s.role == SHMC_PAIR_MASTER && s.master_pid == getpid() && s.slave_pid == getpid());
    CHECK(s.master_alive && s.slave_alive && s.remote_state == SHMC_REMOTE_CONNECTED);
    CHECK(s.m2s_write_count == 1 && s.m2s_read_count == 1 && s.s2m_write_count == 1 && s.s2m_read_count == 1);
    CHECK(s.slave_heartbeat_age_ns < 10 * SECOND && s.drops == 0 && s.reconnections == 0);

    /* Batches. */
    uint64_t lens[3] = {1, 2, 3};
    size_t sent = 0, count = 0, got_lens[4];
    CHECK_OK(shmc_pair_write_many(master, "abbccc", lens, 3, &sent, SECOND));
    CHECK(sent == 3);
    CHECK_OK(shmc_pair_read_many(slave, buf, sizeof buf, got_lens, 4, &count, SECOND));
    CHECK(count == 3 && got_lens[0] == 1 && got_lens[2] == 3 && memcmp(buf, "abbccc", 6) == 0);
    /* Too large for the slot, and a full queue. */
    static char big[8 * WORDS_MAX + 1];
    CHECK_RC(shmc_pair_write(master, big, sizeof big, 0), SHMC_EMSGSIZE);
    int queued = 0;
    while (shmc_pair_try_write(master, "x", 1) == 0) queued++;
    CHECK(queued == 16);
    CHECK_RC(shmc_pair_write(master, "x", 1, 10 * MSEC), SHMC_ETIMEDOUT);

    /* Bad arguments. */
    CHECK_RC(shmc_pair_open(NULL, NULL, &third), SHMC_EINVAL);
    CHECK_RC(shmc_pair_open(pair_name, NULL, NULL), SHMC_EINVAL);
    const uint32_t bad_fields[4][2] = {{1, 3}, {5, 3}, {4, 64}, {6, 2000000}}; /* role, disconnect, flags, spin */
    for (int i = 0; i < 4; i++) {
        shmc_pair_options_init(&o);
        uint32_t *field = bad_fields[i][0] == 1 ? &o.role : bad_fields[i][0] == 5 ? &o.disconnect
                          : bad_fields[i][0] == 4 ? &o.flags : &o.spin_us;
        *field = bad_fields[i][1];
        CHECK_RC(shmc_pair_open("ctest/pair-bad", &o, &third), SHMC_EINVAL);
    }
    shmc_pair_options_init(&o);
    o.stale_threshold_ns = 0;
    CHECK_RC(shmc_pair_open("ctest/pair-bad", &o, &third), SHMC_EINVAL);
    shmc_pair_options_init(&o);
    o.num_slots = 1;
    CHECK_RC(shmc_pair_open("ctest/pair-bad", &o, &third), SHMC_EINVAL);
    CHECK_RC(shmc_pair_write(NULL, "x", 1, 0), SHMC_EINVAL);
    CHECK_RC(shmc_pair_read(master, NULL, 4, &len, 0), SHMC_EINVAL);
    CHECK(shmc_pair_role(NULL) == SHMC_EINVAL);

    CHECK_OK(shmc_pair_close(slave));
    CHECK_OK(shmc_pair_close(master));
    CHECK_OK(shmc_pair_close(NULL));
    CHECK(!pattern_segment_exists(pair_name, SHMC_PATTERN_PAIR_M2S));
    CHECK(!pattern_segment_exists(pair_name, SHMC_PATTERN_PAIR_S2M));
    printf("roles and options: ok\n");
}

/* ------------------------------------------------------------------ processes */

typedef struct board {
    _Atomic uint64_t master_written; /* messages the (current) master has fully written */
    _Atomic uint64_t slave_got;
    _Atomic uint64_t master_got;
} board_t;

static board_t *board;

static board_t *board_new(void)
{
    void *m = mmap(NULL, sizeof(board_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    memset(m, 0, sizeof(board_t));
    return m;
}

/* Child: a master that writes source `id`'s messages first..first+count-1 (count 0: until killed),
 * and reads the slave's replies. */
typedef struct master_args {
    uint32_t id;
    uint64_t first, count;
} master_args_t;

static int proc_master(int in, int out, void *arg)
{
    master_args_t *a = arg;
    shmc_pair_t *p = open_pair(SHMC_PAIR_MASTER, SHMC_DISCONNECT_ON_TIMEOUT, 20 * SECOND);
    write_byte(out, 'r');
    expect_byte(in, 'g');
    uint64_t buf[WORDS_MAX];
    for (uint64_t seq = a->first; a->count == 0 || seq < a->first + a->count; seq++) {
        CHECK_OK(shmc_pair_write(p, buf, fill(buf, a->id, seq), 20 * SECOND));
        atomic_store(&board->master_written, seq + 1);
        size_t len;
        while (shmc_pair_read(p, buf, sizeof buf, &len, 0) == 0) {
            CHECK(tag_source(check_intact(buf, len)) == 9);
            atomic_fetch_add(&board->master_got, 1);
        }
    }
    /* Closing with messages still queued keeps the queue for the slave, which reads them, then removes it. */
    CHECK_OK(shmc_pair_close(p));
    return 0;
}

/* Child: a slave that reads `total` messages, checking that the numbers only go up by one from the
 * first master to the second (nothing lost, nothing twice), and answers each. */
static int proc_slave(int in, int out, void *arg)
{
    (void)in;
    const uint64_t total = *(uint64_t *)arg;
    shmc_pair_t *p = open_pair(SHMC_PAIR_SLAVE, SHMC_DISCONNECT_ON_TIMEOUT, 20 * SECOND);
    write_byte(out, 'r');
    uint64_t buf[WORDS_MAX], next = 0;
    const uint64_t deadline = now_ns() + 60 * SECOND;
    while (next < total) {
        if (now_ns() > deadline) return 4;
        size_t len = 0;
        int rc = shmc_pair_read(p, buf, sizeof buf, &len, 100 * MSEC);
        if (rc == SHMC_ETIMEDOUT) continue;
        CHECK_OK(rc);
        uint64_t tag = check_intact(buf, len);
        if (tag_seq(tag) != next) {
            fprintf(stderr, "slave: got message %llu, expected %llu\n", (unsigned long long)tag_seq(tag),
                    (unsigned long long)next);
            return 3;
        }
        next++;
        atomic_store(&board->slave_got, next);
        /* Answer without waiting: while the master is dead nobody reads the answers. */
        rc = shmc_pair_try_write(p, buf, fill(buf, 9, next));
        CHECK(rc == 0 || rc == SHMC_EAGAIN);
    }
    shmc_pair_stats_t s = pair_stats(p);
    /* The master may die in the middle of a write: that one message is dropped (never delivered). */
    if (s.m2s_read_count == 0 || s.drops > 1) return 5;
    printf("slave: %llu messages in order, reconnections %llu\n", (unsigned long long)total,
           (unsigned long long)s.reconnections);
    CHECK_OK(shmc_pair_close(p));
    if (s.reconnections != 1)
        fprintf(stderr, "slave: %llu reconnections, wanted 1\n", (unsigned long long)s.reconnections);
    return s.reconnections == 1 ? 0 : 6;
}

/* The master is killed mid-stream and a new master carries on the numbering where the dead one's
 * fully written messages end: the slave must read every message once, in order, across the restart. */
static void test_master_killed_and_restarted(void)
{
    pair_name = unique_name("pair-restart");
    board = board_new();
    const uint64_t total = scaled(20000);
    link_t ml, sl, nl;
    master_args_t first = {1, 0, 0};
    pid_t master = spawn(proc_master, &first, &ml);
    expect_byte(ml.to_parent[0], 'r');
    pid_t slave = spawn(proc_slave, (void *)&total, &sl);
    expect_byte(sl.to_parent[0], 'r');
    write_byte(ml.to_child[1], 'g');
    /* Kill it mid-stream, while it writes. */
    while (atomic_load(&board->master_written) < total / 4) usleep(100);
    CHECK(kill_to_zombie(master) == CLD_KILLED);
    uint64_t written = atomic_load(&board->master_written);
    /* At most one message was being written when it died: published or not, it is not counted; the
     * new master starts after the last one counted or the one after it. */
    CHECK(waitpid(master, NULL, 0) == master);
    /* The slave must have everything before `written`; whether the one in flight was published is
     * seen by the slave. Start the new master at the count the slave reaches once it has drained. */
    uint64_t drained = 0;
    const uint64_t deadline = now_ns() + 20 * SECOND;
    for (;;) {
        uint64_t got = atomic_load(&board->slave_got);
        if (got >= written && got == drained) break; /* stable and complete */
        drained = got;
        CHECK(now_ns() < deadline);
        usleep(50000);
    }
    CHECK(drained == written || drained == written + 1);
    master_args_t second = {2, drained, total - drained};
    pid_t restarted = spawn(proc_master, &second, &nl);
    expect_byte(nl.to_parent[0], 'r');
    write_byte(nl.to_child[1], 'g');
    int slave_status = wait_child(slave);
    if (slave_status) fprintf(stderr, "slave exited with %d\n", slave_status);
    CHECK(slave_status == 0);
    CHECK(wait_child(restarted) == 0);
    unlink_pipes(&ml), unlink_pipes(&sl), unlink_pipes(&nl);
    CHECK(!pattern_segment_exists(pair_name, SHMC_PATTERN_PAIR_M2S));
    printf("master killed after %llu messages, restarted: the slave read all %llu in order\n",
           (unsigned long long)written, (unsigned long long)total);
    munmap(board, sizeof *board);
}

/* Child: opens the slave role, says so, then waits to be killed. */
static int proc_idle_slave(int in, int out, void *arg)
{
    (void)arg;
    shmc_pair_t *p = open_pair(SHMC_PAIR_SLAVE, SHMC_DISCONNECT_ON_TIMEOUT, 5 * SECOND);
    const uint64_t deadline = now_ns() + 10 * SECOND;
    for (uint32_t st; (st = pair_stats(p).remote_state) != SHMC_REMOTE_CONNECTED && st != SHMC_REMOTE_STALE;) {
        CHECK(now_ns() < deadline);
        usleep(1000);
    }
    write_byte(out, 'r');
    char c;
    read_byte(in, &c); /* until the parent kills us or closes the pipe */
    CHECK_OK(shmc_pair_close(p));
    return 0;
}

/* The slave dies and a new one comes: the master sees the new peer, and with IMMEDIATELY fails fast
 * while no slave lives; messages queued meanwhile go to the new slave. */
static void test_slave_restart_and_immediately(void)
{
    pair_name = unique_name("pair-slave");
    parent_flags = SHMC_PAIR_NO_HEARTBEAT_THREAD;
    shmc_pair_t *master = open_pair(SHMC_PAIR_MASTER, SHMC_DISCONNECT_IMMEDIATELY, 5 * SECOND);
    parent_flags = 0;
    link_t l1, l2;
    pid_t s1 = spawn(proc_idle_slave, NULL, &l1);
    expect_byte(l1.to_parent[0], 'r');
    CHECK(wait_alive(master, 1));
    CHECK(pair_stats(master).slave_pid == s1);
    CHECK_OK(shmc_pair_write(master, "for-the-next", 12, 0));
    CHECK(kill_to_zombie(s1) == CLD_KILLED);
    CHECK(wait_alive(master, 0));
    shmc_pair_stats_t s = pair_stats(master);
    CHECK(s.remote_state == SHMC_REMOTE_GONE && !s.slave_alive);
    char buf[32];
    size_t len;
    CHECK_RC(shmc_pair_write(master, "x", 1, 0), SHMC_EPEERDEAD);
    CHECK_RC(shmc_pair_read(master, buf, sizeof buf, &len, SECOND), SHMC_EPEERDEAD);
    waitpid(s1, NULL, 0);
    pid_t s2 = spawn(proc_idle_slave, NULL, &l2);
    expect_byte(l2.to_parent[0], 'r');
    CHECK(wait_alive(master, 1));
    s = pair_stats(master);
    CHECK(s.slave_pid == s2 && s.reconnections == 1 && s.remote_state == SHMC_REMOTE_CONNECTED);
    CHECK_OK(shmc_pair_write(master, "x", 1, 0));
    /* The new slave holds the queued message unread: the count says the dead one read nothing. */
    CHECK(pair_stats(master).m2s_read_count == 0);
    close(l2.to_child[1]); /* ends the new slave */
    CHECK(wait_child(s2) == 0);
    unlink_pipes(&l1), unlink_pipes(&l2);
    CHECK_OK(shmc_pair_close(master));
    printf("slave killed and restarted: the master saw the new peer; IMMEDIATELY failed fast\n");
}

/* The master, closing last, removed both queues: its own, and the one the killed slave left. */
static void check_both_queues_removed(void)
{
    CHECK(!pattern_segment_exists(pair_name, SHMC_PATTERN_PAIR_M2S));
    CHECK(!pattern_segment_exists(pair_name, SHMC_PATTERN_PAIR_S2M));
}

/* ON_TIMEOUT: once the remote has been gone for reconnect_wait, calls fail; NEVER: they only time out. */
static void test_on_timeout_and_never(void)
{
    pair_name = unique_name("pair-timeout");
    parent_flags = SHMC_PAIR_NO_HEARTBEAT_THREAD;
    shmc_pair_t *master = open_pair(SHMC_PAIR_MASTER, SHMC_DISCONNECT_ON_TIMEOUT, 200 * MSEC);
    link_t l;
    pid_t s1 = spawn(proc_idle_slave, NULL, &l);
    expect_byte(l.to_parent[0], 'r');
    CHECK(wait_alive(master, 1));
    CHECK(kill_to_zombie(s1) == CLD_KILLED);
    waitpid(s1, NULL, 0);
    char buf[8];
    size_t len;
    /* It waits for a new slave up to reconnect_wait (counted from when it found it gone), then gives up. */
    int rc;
    const uint64_t deadline = now_ns() + 10 * SECOND;
    while ((rc = shmc_pair_read(master, buf, sizeof buf, &len, 50 * MSEC)) == SHMC_ETIMEDOUT)
        CHECK(now_ns() < deadline);
    CHECK_RC(rc, SHMC_EPEERDEAD);
    shmc_pair_stats_t s = pair_stats(master);
    CHECK(s.remote_state == SHMC_REMOTE_GAVE_UP && s.remote_gone_ns >= 200 * MSEC);
    CHECK_OK(shmc_pair_close(master));
    check_both_queues_removed();
    unlink_pipes(&l);

    pair_name = unique_name("pair-never");
    master = open_pair(SHMC_PAIR_MASTER, SHMC_DISCONNECT_NEVER, 0);
    parent_flags = 0;
    pid_t s2 = spawn(proc_idle_slave, NULL, &l);
    expect_byte(l.to_parent[0], 'r');
    CHECK(wait_alive(master, 1));
    CHECK(kill_to_zombie(s2) == CLD_KILLED);
    waitpid(s2, NULL, 0);
    CHECK(wait_alive(master, 0));
    CHECK_RC(shmc_pair_read(master, buf, sizeof buf, &len, 100 * MSEC), SHMC_ETIMEDOUT);
    CHECK_OK(shmc_pair_write(master, "queued", 6, 0));
    CHECK(pair_stats(master).remote_state == SHMC_REMOTE_GONE);
    CHECK_OK(shmc_pair_close(master));
    check_both_queues_removed();
    unlink_pipes(&l);
    printf("ON_TIMEOUT gave up after reconnect_wait; NEVER kept waiting\n");
}

/* Without the heartbeat thread, a side is fresh only while it makes calls: an idle one turns stale. */
static void test_heartbeat_without_thread(void)
{
    pair_name = unique_name("pair-beat");
    shmc_pair_options_t o;
    shmc_pair_options_init(&o);
    o.role = SHMC_PAIR_MASTER;
    o.stale_threshold_ns = 50 * MSEC;
    shmc_pair_t *master = NULL, *slave = NULL;
    CHECK_OK(shmc_pair_open(pair_name, &o, &master));
    o.role = SHMC_PAIR_SLAVE;
    o.flags = SHMC_PAIR_NO_HEARTBEAT_THREAD;
    CHECK_OK(shmc_pair_open(pair_name, &o, &slave));
    CHECK(wait_alive(master, 1));
    CHECK(wait_alive(master, 0)); /* the slave makes no call: stale */
    CHECK(pair_stats(master).remote_state == SHMC_REMOTE_STALE);
    const uint64_t deadline = now_ns() + 10 * SECOND;
    do {
        CHECK_OK(shmc_pair_heartbeat(slave));
        CHECK(now_ns() < deadline);
    } while (!shmc_pair_remote_alive(master));
    CHECK_OK(shmc_pair_close(slave));
    CHECK_OK(shmc_pair_close(master));
    printf("heartbeat: a side without the thread turns stale when idle, fresh when it beats\n");
}

int main(void)
{
    scale_init(4, 2000);
    test_roles_and_options();
    test_heartbeat_without_thread();
    test_slave_restart_and_immediately();
    test_on_timeout_and_never();
    test_master_killed_and_restarted();
    return test_result("test_pair");
}
