/*
 * The platform layer: everything libshm needs from the operating system, behind one interface.
 * posix.c implements it for Linux/macOS/BSD, windows.c for Windows. Nothing outside this folder
 * includes an OS header.
 */
#ifndef SHMI_PLATFORM_H
#define SHMI_PLATFORM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* A mapped shared-memory segment. */
typedef struct shmi_segment {
    void *base;           /* start of the mapping */
    size_t size;          /* bytes mapped (the object's size when it was opened) */
    intptr_t handle;      /* fd (POSIX) or HANDLE (Windows) of the open object */
    uint64_t identity;    /* identifies the OS object (inode), to notice that a name was replaced */
} shmi_segment_t;

/* Longest OS object name (without the leading '/') the platform accepts. */
size_t shmi_max_os_name(void);

/* Creates os_name exclusively with `mode` permissions, sized and with its pages reserved (a full
 * shared-memory filesystem is SHMC_ENOSPC here, never a SIGBUS later), mapped read-write and zeroed.
 * SHMC_EEXIST if the name exists. */
int shmi_seg_create(const char *os_name, size_t size, uint32_t mode, shmi_segment_t *out);
/* Opens and maps an existing os_name read-write (or read-only when `readonly`), whole object.
 * SHMC_ENOENT if absent, SHMC_EAGAIN if it is still empty (its creator is sizing it). */
int shmi_seg_open(const char *os_name, int readonly, shmi_segment_t *out);
void shmi_seg_close(shmi_segment_t *seg);

/* An address range this process keeps reserved. */
typedef struct shmi_range {
    void *base;
    size_t size;
} shmi_range_t;

/* Gives up seg's object while the process may still hold pointers into its mapping (views handed
 * out before a reader moved to a restarted channel). The object is closed and, where the platform
 * can, its pages are returned: the range then reads as zeros. Either way it stays valid memory until
 * shmi_range_release, so a stale pointer never faults. seg is cleared; the range is returned. */
shmi_range_t shmi_seg_retire(shmi_segment_t *seg);
void shmi_range_release(shmi_range_t range);
int shmi_seg_unlink(const char *os_name);
/* 1 if os_name still names the object `seg` maps, 0 if it was removed or replaced. */
int shmi_seg_is_current(const shmi_segment_t *seg, const char *os_name);

/* Monotonic, system-wide clock in nanoseconds (comparable across processes). */
uint64_t shmi_now_ns(void);

/* Sleeps while *word == expected, at most timeout_ns (shared between processes: never a private
 * futex). May return early or spuriously; callers re-check their condition. */
void shmi_futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns);
void shmi_futex_wake_all(_Atomic uint32_t *word);

/* Process identity and liveness that survive pid reuse: a pid plus its start time. */
int32_t shmi_pid(void);
uint64_t shmi_process_start_time(int32_t pid); /* 0 if unknown */
int shmi_process_alive(int32_t pid, uint64_t start_time); /* 1 alive, 0 dead */

uint64_t shmi_random64(void);

/* A thread of this process running fn(arg) (the PAIR heartbeat). NULL if it could not be started. */
typedef struct shmi_thread shmi_thread_t;
shmi_thread_t *shmi_thread_start(void (*fn)(void *), void *arg);
/* Waits for the thread to return and frees it; NULL does nothing. */
void shmi_thread_join(shmi_thread_t *t);
void shmi_cpu_relax(void);
/* A hint: bring the cache line of p to this core ready for writing (on x86 PREFETCHW; plain
 * __builtin_prefetch(p, 1) gives a read prefetch there unless the build targets a newer CPU, and a
 * line fetched for reading still has to be taken from the other cores before a store). */
static inline void shmi_prefetch_write(const void *p)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __asm__ __volatile__("prefetchw %0" : : "m"(*(const char *)p));
#elif defined(__GNUC__)
    __builtin_prefetch(p, 1, 3);
#else
    (void)p;
#endif
}

/* Keeps a function out of its callers: a rarely taken path (a pooled ring's) must not grow the
 * common path's functions past what the compiler inlines (measured: +120 instructions per message). */
#if defined(__GNUC__) || defined(__clang__)
#define SHMI_NOINLINE __attribute__((noinline))
#elif defined(_MSC_VER)
#define SHMI_NOINLINE __declspec(noinline)
#else
#define SHMI_NOINLINE
#endif

/* The OS error behind the last failure of this thread (errno / GetLastError). */
void shmi_set_os_error(int err);
int shmi_get_os_error(void);

#endif
