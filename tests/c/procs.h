/* Helpers shared by the multi-process and stress tests:
 *   - counts that shrink under ThreadSanitizer or by the factor in SHMC_TEST_SCALE_DOWN;
 *   - tagged payloads: every word of a message repeats one 64-bit tag (source id << 56 | sequence
 *     number) and its length depends on the sequence number, so a torn copy or a foreign length
 *     is visible;
 *   - child processes (fork) linked to the parent by two pipes, with bounded waits: an alarm()
 *     watchdog in every child, SIGKILL to a zombie, exit statuses;
 *   - statistics getters, segment existence, and LIBRARY BUG checks (EXPECT_DOC).
 * A test that includes it is one translation unit: the static state below is its own. Define
 * WORDS_MAX (the longest payload, in 64-bit words; 16 if not defined) before including it.
 * Every function is static inline, so a test uses only what it needs without warnings. */
#ifndef SHMC_TEST_PROCS_H
#define SHMC_TEST_PROCS_H

#include "check.h"
#include "shmcomm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define SECOND 1000000000ll
#define MSEC 1000000ll

#ifndef WORDS_MAX
#define WORDS_MAX 16
#endif

/* ------------------------------------------------------------------ scaled counts */

static uint64_t procs_scale_down __attribute__((unused)) = 1;
static uint64_t procs_scale_least __attribute__((unused)) = 1000;

/* Call once at the start of main: counts are divided by tsan_factor under ThreadSanitizer, or by
 * the factor in SHMC_TEST_SCALE_DOWN (which wins), and never go below `least`. */
static inline void scale_init(uint64_t tsan_factor, uint64_t least)
{
#if defined(__SANITIZE_THREAD__)
    procs_scale_down = tsan_factor;
#else
    (void)tsan_factor;
#endif
    const char *env = getenv("SHMC_TEST_SCALE_DOWN");
    if (env && atoi(env) > 0) procs_scale_down = (uint64_t)atoi(env);
    procs_scale_least = least;
}

static inline uint64_t scaled(uint64_t n)
{
    n /= procs_scale_down;
    return n < procs_scale_least ? procs_scale_least : n;
}

/* ------------------------------------------------------------------ LIBRARY BUG checks */

static int library_bugs __attribute__((unused));

/* A documented behaviour the library must have: reported, counted, and the test goes on. */
#define EXPECT_DOC(expr, what)                                                                   \
    do {                                                                                         \
        if (!(expr)) {                                                                           \
            fprintf(stderr, "%s:%d: LIBRARY BUG: %s\n    (failed: %s)\n", __FILE__, __LINE__, \
                    (what), #expr);                                                              \
            library_bugs++;                                                                      \
        }                                                                                        \
    } while (0)

/* main's exit status: 1 if a LIBRARY BUG check failed (said on stderr), else 0 ("<test>: ok"). */
static inline int test_result(const char *test)
{
    if (library_bugs) {
        fprintf(stderr, "%s: %d LIBRARY BUG check(s) failed (see above)\n", test, library_bugs);
        return 1;
    }
    printf("%s: ok\n", test);
    return 0;
}

/* ------------------------------------------------------------------ tagged payloads */

static inline uint64_t make_tag(uint32_t source, uint64_t seq) { return ((uint64_t)source << 56) | seq; }
static inline uint32_t tag_source(uint64_t tag) { return (uint32_t)(tag >> 56); }
static inline uint64_t tag_seq(uint64_t tag) { return tag & ((1ull << 56) - 1); }
static inline size_t bytes_for(uint64_t seq) { return 8 * (1 + seq % WORDS_MAX); }

/* Writes the message of `tag` (bytes_for its sequence number) to buf; returns its length. buf need
 * not be 8-byte aligned. */
static inline size_t fill_tag(void *buf, uint64_t tag)
{
    unsigned char *p = buf;
    size_t n = bytes_for(tag_seq(tag));
    for (size_t i = 0; i < n; i += 8) memcpy(p + i, &tag, 8);
    return n;
}

static inline size_t fill(void *buf, uint32_t source, uint64_t seq)
{
    return fill_tag(buf, make_tag(source, seq));
}

/* The tag of an intact message; exits (status 1) if it is torn or has a foreign length. buf need
 * not be 8-byte aligned (buffers packed by recv_many are not). */
static inline uint64_t check_intact(const void *buf, size_t len)
{
    uint64_t w[WORDS_MAX];
    CHECK(len >= 8 && len <= sizeof w && len % 8 == 0);
    memcpy(w, buf, len);
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

/* ------------------------------------------------------------------ endpoints */

/* pub_stats(pub), sub_stats(sub), push_stats, pull_stats, req_stats, rep_stats: the endpoint's
 * statistics, or the test exits. */
#define PROCS_STATS_GETTER(kind)                                  \
    static inline shmc_stats_t kind##_stats(shmc_##kind##_t *ep) \
    {                                                             \
        shmc_stats_t s;                                           \
        s.size = sizeof s;                                        \
        CHECK_OK(shmc_##kind##_stats(ep, &s));                    \
        return s;                                                 \
    }
PROCS_STATS_GETTER(pub)
PROCS_STATS_GETTER(sub)
PROCS_STATS_GETTER(push)
PROCS_STATS_GETTER(pull)
PROCS_STATS_GETTER(req)
PROCS_STATS_GETTER(rep)
#undef PROCS_STATS_GETTER

/* 1 if the segment of channel `name` (of enum shmc_pattern `pattern`) exists. */
static inline int pattern_segment_exists(const char *name, uint32_t pattern)
{
    char os_name[256], path[260];
    CHECK_OK(shmc_os_name(name, pattern, os_name, sizeof os_name));
    snprintf(path, sizeof path, "/%s", os_name);
    int fd = shm_open(path, O_RDONLY, 0);
    if (fd < 0) return 0;
    close(fd);
    return 1;
}

/* ------------------------------------------------------------------ pipes */

static inline void write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t r = write(fd, p, len);
        if (r < 0 && errno == EINTR) continue;
        CHECK(r > 0);
        p += r;
        len -= (size_t)r;
    }
}

/* Reads exactly len bytes; 0 at EOF (the other side is gone). */
static inline int read_all(int fd, void *data, size_t len)
{
    char *p = data;
    while (len) {
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR) continue;
        CHECK(r >= 0);
        if (r == 0) return 0;
        p += r;
        len -= (size_t)r;
    }
    return 1;
}

static inline void write_byte(int fd, char byte) { write_all(fd, &byte, 1); }

/* Reads one byte; 0 at EOF (the other side is gone). */
static inline int read_byte(int fd, char *byte) { return read_all(fd, byte, 1); }

static inline void expect_byte(int fd, char want)
{
    char byte = 0;
    CHECK(read_byte(fd, &byte));
    if (byte != want) fprintf(stderr, "read '%c', wanted '%c'\n", byte, want);
    CHECK(byte == want);
}

/* ------------------------------------------------------------------ child processes */

typedef struct link {
    int to_child[2];
    int to_parent[2];
} link_t;

/* Forks; the child runs fn with its ends of both pipes and exits with its result. A child that
 * outlives 60 s (something hung) is killed by its alarm. */
static inline pid_t spawn(int (*fn)(int in, int out, void *arg), void *arg, link_t *l)
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

/* Closes the parent's ends of the pipes (once the child is gone). */
static inline void unlink_pipes(link_t *l)
{
    close(l->to_child[1]);
    close(l->to_parent[0]);
}

/* Reaps the child; returns its raw wait status. */
static inline int wait_status(pid_t pid)
{
    int status = 0;
    pid_t r;
    while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {}
    CHECK(r == pid);
    return status;
}

/* Reaps the child; returns its exit status, or 128 + signal. */
static inline int wait_child(pid_t pid)
{
    int status = wait_status(pid);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* SIGKILLs the child and waits until it is a zombie: dead, but not reaped yet (WNOWAIT). Returns
 * how it ended (si_code: CLD_KILLED, or CLD_EXITED if it had exited already). */
static inline int kill_to_zombie(pid_t pid)
{
    CHECK(kill(pid, SIGKILL) == 0);
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int rc;
    while ((rc = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT)) < 0 && errno == EINTR) {}
    CHECK(rc == 0 && info.si_pid == pid);
    return info.si_code;
}

#endif
