/* The POSIX backend of the platform layer: shm_open/mmap, futex (Linux) or polling, /proc liveness. */
#if !defined(_WIN32)

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "platform.h"
#include "shmcomm.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#if !defined(MAP_ANONYMOUS) && defined(MAP_ANON)
#define MAP_ANONYMOUS MAP_ANON
#endif
#ifdef MAP_NORESERVE
#define SHMI_MAP_NORESERVE MAP_NORESERVE
#else
#define SHMI_MAP_NORESERVE 0
#endif

static _Thread_local int last_os_error;

void shmi_set_os_error(int err) { last_os_error = err; }
int shmi_get_os_error(void) { return last_os_error; }

static int from_errno(int err)
{
    shmi_set_os_error(err);
    switch (err) {
    case ENOENT: return SHMC_ENOENT;
    case EEXIST: return SHMC_EEXIST;
    case EACCES:
    case EPERM: return SHMC_EACCES;
    case ENOSPC:
    case EFBIG: return SHMC_ENOSPC;
    case ENOMEM: return SHMC_ENOMEM;
    case ENAMETOOLONG:
    case EINVAL: return SHMC_ENAME;
    default: return SHMC_EOS;
    }
}

size_t shmi_max_os_name(void)
{
#if defined(__APPLE__)
    return 30; /* PSHMNAMLEN is 31 including the leading '/' */
#else
    return 200;
#endif
}

static int slash_name(const char *os_name, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "/%s", os_name);
    return (n < 0 || (size_t)n >= cap) ? SHMC_ENAME : 0;
}

static int map_fd(int fd, size_t size, int readonly, shmi_segment_t *out)
{
    struct stat st;
    if (fstat(fd, &st) != 0) return from_errno(errno);
    int prot = readonly ? PROT_READ : PROT_READ | PROT_WRITE;
    void *base = mmap(NULL, size, prot, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) return from_errno(errno);
    out->base = base;
    out->size = size;
    out->handle = fd;
    out->identity = ((uint64_t)st.st_dev << 40) ^ (uint64_t)st.st_ino;
    return 0;
}

int shmi_seg_create(const char *os_name, size_t size, uint32_t mode, shmi_segment_t *out)
{
    char path[256];
    int rc = slash_name(os_name, path, sizeof path);
    if (rc) return rc;
    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL, (mode_t)mode);
    if (fd < 0) return from_errno(errno);
    /* shm_open applies the umask; the mode we were asked for is what the user chose. */
    (void)fchmod(fd, (mode_t)mode);
    if (ftruncate(fd, (off_t)size) != 0) {
        rc = from_errno(errno);
        goto fail;
    }
#if defined(__linux__)
    /* ftruncate reserves nothing on tmpfs: a later page fault on a full /dev/shm is a SIGBUS.
     * posix_fallocate reserves every page now, so a full filesystem fails here with ENOSPC. */
    int err = posix_fallocate(fd, 0, (off_t)size);
    if (err != 0 && err != EOPNOTSUPP && err != EINVAL) {
        rc = from_errno(err == EFBIG ? ENOSPC : err);
        goto fail;
    }
#endif
    rc = map_fd(fd, size, 0, out);
    if (rc) goto fail;
    return 0;
fail:
    close(fd);
    shm_unlink(path);
    return rc;
}

int shmi_seg_open(const char *os_name, int readonly, shmi_segment_t *out)
{
    char path[256];
    int rc = slash_name(os_name, path, sizeof path);
    if (rc) return rc;
    int fd = shm_open(path, readonly ? O_RDONLY : O_RDWR, 0);
    if (fd < 0) return from_errno(errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = from_errno(errno);
        close(fd);
        return rc;
    }
    if (st.st_size <= 0) {
        close(fd);
        return SHMC_EAGAIN;
    }
    rc = map_fd(fd, (size_t)st.st_size, readonly, out);
    if (rc) close(fd);
    return rc;
}

void shmi_seg_close(shmi_segment_t *seg)
{
    if (seg->base) munmap(seg->base, seg->size);
    if (seg->handle >= 0) close((int)seg->handle);
    seg->base = NULL;
    seg->size = 0;
    seg->handle = -1;
}

shmi_range_t shmi_seg_retire(shmi_segment_t *seg)
{
    shmi_range_t range = {seg->base, seg->size};
    /* Private zero pages replace the shared ones at the same addresses in one step (MAP_FIXED): a
     * stale view reads zeros instead of faulting, and the object's pages go back to the system
     * once its last mapping is gone. Should that fail, the shared mapping simply stays. */
    if (range.base) {
        (void)mmap(range.base, range.size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | SHMI_MAP_NORESERVE, -1, 0);
    }
    if (seg->handle >= 0) close((int)seg->handle);
    seg->base = NULL;
    seg->size = 0;
    seg->handle = -1;
    return range;
}

void shmi_range_release(shmi_range_t range)
{
    if (range.base) munmap(range.base, range.size);
}

int shmi_seg_unlink(const char *os_name)
{
    char path[256];
    int rc = slash_name(os_name, path, sizeof path);
    if (rc) return rc;
    return shm_unlink(path) == 0 ? 0 : from_errno(errno);
}

int shmi_seg_is_current(const shmi_segment_t *seg, const char *os_name)
{
    char path[256];
    if (slash_name(os_name, path, sizeof path)) return 0;
    int fd = shm_open(path, O_RDONLY, 0);
    if (fd < 0) return 0;
    struct stat st;
    int current = fstat(fd, &st) == 0 &&
                  (((uint64_t)st.st_dev << 40) ^ (uint64_t)st.st_ino) == seg->identity;
    close(fd);
    return current;
}

uint64_t shmi_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void shmi_futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
    if (timeout_ns <= 0) return;
#if defined(__linux__)
    struct timespec ts = {(time_t)(timeout_ns / 1000000000), (long)(timeout_ns % 1000000000)};
    /* FUTEX_WAIT without FUTEX_PRIVATE_FLAG: the word lives in memory shared between processes. */
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, &ts, NULL, 0);
#else
    /* Portable fallback: short sleeps until the word changes or the time is up. */
    int64_t slept = 0;
    while (atomic_load_explicit(word, memory_order_acquire) == expected && slept < timeout_ns) {
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
        slept += 50000;
    }
#endif
}

void shmi_futex_wake_all(_Atomic uint32_t *word)
{
#if defined(__linux__)
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
#else
    (void)word;
#endif
}

int32_t shmi_pid(void) { return (int32_t)getpid(); }

/* Reads the state (field 3) and start time (field 22) of /proc/<pid>/stat. 0 on success. */
static int read_proc_stat(int32_t pid, char *state, uint64_t *start_time)
{
#if defined(__linux__)
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    /* Field 2 (comm) may contain spaces and parentheses: parse after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    p++;
    for (int field = 3; field <= 22; field++) {
        while (*p == ' ') p++;
        if (!*p) return -1;
        if (field == 3) *state = *p;
        if (field == 22) {
            unsigned long long t = 0;
            while (*p >= '0' && *p <= '9') t = t * 10 + (unsigned)(*p++ - '0');
            *start_time = t + 1; /* never 0, which means unknown */
            return 0;
        }
        while (*p && *p != ' ') p++;
    }
    return -1;
#else
    (void)pid, (void)state, (void)start_time;
    return -1;
#endif
}

uint64_t shmi_process_start_time(int32_t pid)
{
    char state = 0;
    uint64_t start = 0;
    return read_proc_stat(pid, &state, &start) == 0 ? start : 0;
}

int shmi_process_alive(int32_t pid, uint64_t start_time)
{
    if (pid <= 0) return 0;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) return 0;
    char state = 0;
    uint64_t now_start = 0;
    if (read_proc_stat(pid, &state, &now_start) != 0) return 1; /* no /proc: trust kill() */
    /* A killed process that its parent has not reaped yet is a zombie: dead for us. */
    if (state == 'Z' || state == 'X') return 0;
    /* A different start time means the pid was reused by an unrelated process. */
    return start_time == 0 || now_start == start_time;
}

uint64_t shmi_random64(void)
{
    uint64_t r = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &r, sizeof r) != (ssize_t)sizeof r) r = 0;
        close(fd);
    }
    /* Never rely on urandom alone: mix in the clock and the pid so two sessions always differ. */
    r ^= shmi_now_ns() * 0x9E3779B97F4A7C15ull ^ ((uint64_t)getpid() << 32);
    return r ? r : 1;
}

void shmi_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif /* !_WIN32 */

struct shmi_thread {
    pthread_t id;
    void (*fn)(void *);
    void *arg;
};

static void *thread_main(void *t)
{
    struct shmi_thread *self = t;
    self->fn(self->arg);
    return NULL;
}

shmi_thread_t *shmi_thread_start(void (*fn)(void *), void *arg)
{
    shmi_thread_t *t = malloc(sizeof *t);
    if (!t) return NULL;
    t->fn = fn;
    t->arg = arg;
    if (pthread_create(&t->id, NULL, thread_main, t) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

void shmi_thread_join(shmi_thread_t *t)
{
    if (!t) return;
    pthread_join(t->id, NULL);
    free(t);
}
