/* The peer registry: join/leave, a full table, reaping of dead processes (killed, zombie, pid
 * reused), and concurrent reapers and joiners. White-box: drives libshm/primitives/registry.c on the
 * registry of a real channel segment, so forked children share it. */
#include "platform/platform.h"
#include "primitives/channel.h"
#include "primitives/registry.h"
#include "procs.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>

/* A pid above any kernel's pid_max (at most 2^22): kill() always answers ESRCH for it. */
#define DEAD_PID 0x7FFFFFF0

static shmi_channel_t ch;
static shmi_registry_t *reg;

/* A channel of max_peers entries. Its name is unlinked at once: the mapping lives on (and is shared
 * with forked children) while nothing can be left behind in /dev/shm, even by a failing test. */
static void open_channel(uint32_t max_peers)
{
    char os_name[SHMI_OS_NAME_CAP];
    shmi_geometry_t g = {SHMC_PATTERN_PUBSUB, 4, 64, max_peers, 0, 0};
    CHECK_OK(shmi_make_os_name(unique_name("registry"), SHMC_PATTERN_PUBSUB, os_name, sizeof os_name));
    CHECK_OK(shmi_channel_create(&ch, os_name, "registry", &g, 0600));
    CHECK_OK(shmi_seg_unlink(os_name));
    reg = &ch.registry;
}

static void close_channel(void) { shmi_channel_detach(&ch); }

/* on_reap callback: records which entries were reaped. */
typedef struct reap_log {
    uint32_t count;
    uint32_t index[SHMI_MAX_PEERS];
} reap_log_t;

static void log_reap(void *ctx, uint32_t index)
{
    reap_log_t *log = ctx;
    if (log->count < SHMI_MAX_PEERS) log->index[log->count] = index;
    log->count++;
}

static int logged(const reap_log_t *log, uint32_t index)
{
    for (uint32_t i = 0; i < log->count && i < SHMI_MAX_PEERS; i++)
        if (log->index[i] == index) return 1;
    return 0;
}

/* A child process that joins `entries` entries as readers with `cursor`, reports their indices
 * through a pipe, and then waits to be killed. It exits on its own only if the parent goes away
 * (EOF on its pipe) or after 30 s, so a failing test never leaves it behind. */
typedef struct child {
    pid_t pid;
    int hold; /* our end of the pipe the child waits on; closed once it is dead */
    uint32_t index[4];
} child_t;

static child_t spawn_joiner(uint32_t entries, uint64_t cursor)
{
    int report[2], hold[2];
    CHECK(entries <= 4);
    CHECK(pipe(report) == 0 && pipe(hold) == 0);
    fflush(NULL);
    child_t c = {0};
    c.pid = fork();
    CHECK(c.pid >= 0);
    if (c.pid == 0) {
        alarm(30);
        close(report[0]);
        close(hold[1]);
        for (uint32_t i = 0; i < entries; i++) {
            uint32_t index = UINT32_MAX;
            if (shmi_registry_join(reg, SHMI_ROLE_FOLLOWER, cursor, NULL, NULL, &index) != 0) _exit(2);
            write_all(report[1], &index, sizeof index);
        }
        char byte;
        while (read(hold[0], &byte, 1) < 0 && errno == EINTR) {}
        _exit(0);
    }
    close(report[1]);
    close(hold[0]);
    for (uint32_t i = 0; i < entries; i++) CHECK(read_all(report[0], &c.index[i], sizeof c.index[i]));
    close(report[0]);
    c.hold = hold[1];
    return c;
}

static void reap_child(child_t *c)
{
    int status = wait_status(c->pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    close(c->hold);
}

static void test_join_leave(void)
{
    open_channel(8);
    uint32_t a, b, c;
    CHECK_OK(shmi_registry_join(reg, SHMI_ROLE_KEEPER, UINT64_MAX, NULL, NULL, &a));
    CHECK_OK(shmi_registry_join(reg, SHMI_ROLE_FOLLOWER, 10, NULL, NULL, &b));
    CHECK_OK(shmi_registry_join(reg, SHMI_ROLE_FOLLOWER, 7, NULL, NULL, &c));
    CHECK(a < 8 && b < 8 && c < 8 && a != b && b != c && a != c);
    CHECK(shmi_registry_live_role(reg, a) == SHMI_ROLE_KEEPER);
    CHECK(shmi_registry_live_role(reg, b) == SHMI_ROLE_FOLLOWER);
    CHECK(shmi_registry_live_role(reg, 8) == 0);      /* out of range */
    CHECK(shmi_registry_live_role(reg, 1000) == 0);
    CHECK(shmi_registry_count(reg, SHMI_ROLE_KEEPER) == 1);
    CHECK(shmi_registry_count(reg, SHMI_ROLE_FOLLOWER) == 2);
    CHECK(shmi_registry_min_cursor(reg, SHMI_ROLE_FOLLOWER) == 7);
    CHECK(shmi_registry_min_cursor(reg, SHMI_ROLE_KEEPER) == UINT64_MAX); /* writers hold no cursor */

    /* The entry names this process and its start time. */
    shmi_peer_t *p = &reg->peers[b];
    uint64_t owner = atomic_load(&p->owner);
    CHECK(shmi_owner_pid(owner) == shmi_pid() && shmi_owner_role(owner) == SHMI_ROLE_FOLLOWER);
    CHECK(atomic_load(&p->start_time) == shmi_process_start_time(shmi_pid()));
    CHECK(atomic_load(&p->cursor) == 10);

    shmi_registry_leave(reg, c);
    CHECK(shmi_registry_live_role(reg, c) == 0);
    CHECK(shmi_registry_count(reg, SHMI_ROLE_FOLLOWER) == 1);
    CHECK(shmi_registry_min_cursor(reg, SHMI_ROLE_FOLLOWER) == 10);
    shmi_registry_leave(reg, 1000); /* out of range: ignored */

    /* A freed entry is reused; nothing alive is ever reaped. */
    uint32_t d;
    CHECK_OK(shmi_registry_join(reg, SHMI_ROLE_FOLLOWER, 3, NULL, NULL, &d));
    CHECK(d != a && d != b);
    CHECK(shmi_registry_min_cursor(reg, SHMI_ROLE_FOLLOWER) == 3);
    reap_log_t log = {0};
    CHECK(shmi_registry_reap(reg, log_reap, &log) == 0 && log.count == 0);
    CHECK(shmi_registry_count(reg, SHMI_ROLE_FOLLOWER) == 2);

    shmi_registry_leave(reg, a);
    shmi_registry_leave(reg, b);
    shmi_registry_leave(reg, d);
    CHECK(shmi_registry_count(reg, SHMI_ROLE_FOLLOWER) == 0);
    CHECK(shmi_registry_count(reg, SHMI_ROLE_KEEPER) == 0);
    CHECK(shmi_registry_min_cursor(reg, SHMI_ROLE_FOLLOWER) == UINT64_MAX);
    close_channel();
}

static void test_full(void)
{
    open_channel(4);
    uint32_t idx[4], extra;
    for (int i = 0; i < 4; i++) CHECK_OK(shmi_registry_join(reg, SHMI_ROLE_FOLLOWER, 0, NULL, NULL, &idx[i]));
    reap_log_t log = {0};
    CHECK_RC(shmi_registry_join(reg, SHMI_ROLE_FOLLOWER, 0, log_reap, &log, &extra), SHMC_EPEERS);
    CHECK(log.count == 0); /* every entry is alive: nothing was reaped to make room */
    shmi_registry_leave(reg, idx[2]);
    CHECK_OK(shmi_registry_join(reg, SHMI_ROLE_KEEPER, UINT64_MAX, NULL, NULL, &extra));
    CHECK(extra == idx[2]);
    for (int i = 0; i < 4; i++) shmi_registry_leave(reg, i == 2 ? extra : idx[i]);
    close_channel();
}

/* A child killed with SIGKILL and reaped by waitpid: its entries are dead, still hold their cursor
 * until reaped, and are reaped by a join that finds the table full. */
static void test_dead_child_reaped_by_join(void)
{
    open_channel(4);
    child_t c = spawn_joiner(2, 5);
    CHECK(c.index[0] != c.index[1]);
    uint32_t mine[2], extra;
    CHECK_OK(shmi_registry_join(reg, SHMI_ROLE_FOLLOWER, 9, NULL, NULL, &mine[0]));
    CHECK_OK(shmi_registry_join(reg, SHMI_ROLE_KEEPER, UINT64_MAX, NULL, NULL, &mine[1]));
    CHECK(shmi_registry_count(reg, SHMI_ROLE_FOLLOWER) == 3);
    CHECK(shmi_registry_live_role(reg, c.index[0]) == SHMI_ROLE_FOLLOWER);

    reap_log_t log = {0};
    CHECK_RC(shmi_registry_join(reg, SHMI_ROLE_FOLLOWER, 0, log_reap, &log, &extra), SHMC_EPEERS);
    CHECK(log.count == 0); /* the child is alive */

    CHECK(kill(c.pid, SIGKILL) == 0);
    reap_child(&c);
    CHECK(shmi_registry_live_role(reg, c.index[0]) == 0);
    CHECK(shmi_registry_live_role(reg, c.index[1]) == 0);
    CHECK(shmi_registry_count(reg, SHMI_ROLE_FOLLOWER) == 1);
    /* Dead but not yet reaped: its cursor still holds lossless writers back. */
    CHECK(shmi_registry_min_cursor(reg, SHMI_ROLE_FOLLOWER) == 5);

    CHECK_OK(shmi_registry_join(reg, SHMI_ROLE_FOLLOWER, 11, log_reap, &log, &extra));
    CHECK(log.count == 2 && logged(&log, c.index[0]) && logged(&log, c.index[1]));
    CHECK(extra == c.index[0] || extra == c.index[1]);
    CHECK(shmi_registry_min_cursor(reg, SHMI_ROLE_FOLLOWER) == 9);
    CHECK(shmi_registry_count(reg, SHMI_ROLE_FOLLOWER) == 2);
    /* The other dead entry was freed too. */
    uint32_t other = extra == c.index[0] ? c.index[1] : c.index[0];
    CHECK(atomic_load(&reg->peers[other].owner) == 0);
    CHECK(atomic_load(&reg->peers[other].cursor) == UINT64_MAX);

    shmi_registry_leave(reg, mine[0]);
    shmi_registry_leave(reg, mine[1]);
    shmi_registry_leave(reg, extra);
    close_channel();
}

/* A killed child that its parent has not waited for yet is a zombie: dead for the registry. */
static void test_zombie_is_dead(void)
{
    open_channel(4);
    child_t c = spawn_joiner(1, 2);
    CHECK(shmi_registry_live_role(reg, c.index[0]) == SHMI_ROLE_FOLLOWER);
    CHECK(kill_to_zombie(c.pid) == CLD_KILLED);
    CHECK(shmi_registry_live_role(reg, c.index[0]) == 0);
    CHECK(shmi_registry_count(reg, SHMI_ROLE_FOLLOWER) == 0);
    reap_log_t log = {0};
    CHECK(shmi_registry_reap(reg, log_reap, &log) == 1);
    CHECK(log.count == 1 && log.index[0] == c.index[0]);
    CHECK(atomic_load(&reg->peers[c.index[0]].owner) == 0);
    CHECK(shmi_registry_min_cursor(reg, SHMI_ROLE_FOLLOWER) == UINT64_MAX);
    CHECK(shmi_registry_reap(reg, log_reap, &log) == 0); /* reaped once only */
    reap_child(&c);
    close_channel();
}

/* Liveness survives pid reuse: an entry naming a live pid with another start time is dead. */
static void test_pid_reuse(void)
{
    open_channel(4);
    uint32_t i;
    CHECK_OK(shmi_registry_join(reg, SHMI_ROLE_KEEPER, UINT64_MAX, NULL, NULL, &i));
    shmi_peer_t *p = &reg->peers[i];
    uint64_t real = atomic_load(&p->start_time);
    CHECK(real != 0);

    atomic_store(&p->start_time, 0); /* unknown start time: the pid alone decides */
    CHECK(shmi_registry_live_role(reg, i) == SHMI_ROLE_KEEPER);

    atomic_store(&p->start_time, real + 12345); /* our pid, but an earlier process's start time */
    CHECK(shmi_registry_live_role(reg, i) == 0);
    CHECK(shmi_registry_count(reg, SHMI_ROLE_KEEPER) == 0);
    reap_log_t log = {0};
    CHECK(shmi_registry_reap(reg, log_reap, &log) == 1);
    CHECK(log.count == 1 && log.index[0] == i);
    CHECK(atomic_load(&p->owner) == 0);

    /* A process that joins the freed entry is alive from the moment its claim names it, before it
     * stores its start time: the dead owner's start time must not linger in the entry. */
    const uint64_t me = ((uint64_t)(uint32_t)shmi_pid() << 32) | SHMI_ROLE_FOLLOWER;
    uint64_t expected = 0;
    CHECK(atomic_compare_exchange_strong(&p->owner, &expected, me)); /* the joiner's claim, alone */
    CHECK(shmi_registry_live_role(reg, i) == SHMI_ROLE_FOLLOWER);
    CHECK(shmi_registry_reap(reg, NULL, NULL) == 0);
    shmi_registry_leave(reg, i);

    /* Entries of a pid that no longer exists, and a reaper that died while reaping, are reaped. */
    atomic_store(&reg->peers[0].owner, ((uint64_t)DEAD_PID << 32) | SHMI_ROLE_FOLLOWER);
    atomic_store(&reg->peers[1].owner, ((uint64_t)DEAD_PID << 32) | SHMI_ROLE_REAPING);
    atomic_store(&reg->peers[2].owner, (uint64_t)SHMI_ROLE_REAPING);
    CHECK(shmi_registry_count(reg, SHMI_ROLE_FOLLOWER) == 0);
    CHECK(shmi_registry_reap(reg, NULL, NULL) == 3);
    for (int k = 0; k < 4; k++) CHECK(atomic_load(&reg->peers[k].owner) == 0);
    close_channel();
}

/* Concurrent reapers and joiners: threads plant dead entries, reap them (with a callback that
 * yields, widening the window in which an entry is being reaped) and join. Once joined, an entry
 * belongs to its joiner until it leaves: no reaper may free it or overwrite its cursor. */
#define STRESS_THREADS 4
#define STRESS_PEERS 6

static atomic_int stress_failures;

static void yield_reap(void *ctx, uint32_t index)
{
    (void)ctx, (void)index;
    for (int i = 0; i < 3; i++) sched_yield();
}

static void *stress_thread(void *arg)
{
    const uint32_t role = 10 + (uint32_t)(uintptr_t)arg; /* roles tell the threads apart */
    const uint64_t me = ((uint64_t)(uint32_t)shmi_pid() << 32) | role;
    for (uint32_t iter = 0; iter < 2000; iter++) {
        /* Plant a dead entry in the first free slot. */
        for (uint32_t i = 0; i < STRESS_PEERS; i++) {
            uint64_t expected = 0;
            if (atomic_compare_exchange_strong(&reg->peers[i].owner, &expected,
                                               ((uint64_t)DEAD_PID << 32) | SHMI_ROLE_FOLLOWER))
                break;
        }
        shmi_registry_reap(reg, yield_reap, NULL);
        uint32_t index;
        const uint64_t cursor = ((uint64_t)role << 32) | iter;
        if (shmi_registry_join(reg, role, cursor, yield_reap, NULL, &index) != 0) continue;
        for (int k = 0; k < 4; k++) {
            sched_yield();
            if (atomic_load(&reg->peers[index].owner) != me ||
                atomic_load(&reg->peers[index].cursor) != cursor) {
                atomic_fetch_add(&stress_failures, 1);
                return NULL;
            }
        }
        shmi_registry_leave(reg, index);
    }
    return NULL;
}

static void test_concurrent_reap_and_join(void)
{
    open_channel(STRESS_PEERS);
    pthread_t t[STRESS_THREADS];
    for (uintptr_t i = 0; i < STRESS_THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, stress_thread, (void *)i) == 0);
    for (int i = 0; i < STRESS_THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(atomic_load(&stress_failures) == 0);
    close_channel();
}

int main(void)
{
    test_join_leave();
    test_full();
    test_dead_child_reaped_by_join();
    test_zombie_is_dead();
    test_pid_reuse();
    test_concurrent_reap_and_join();
    puts("registry: ok");
    return 0;
}
