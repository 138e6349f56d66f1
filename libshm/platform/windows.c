/* The Windows backend of the platform layer: CreateFileMapping/MapViewOfFile, WaitOnAddress-free
 * polling waits, OpenProcess liveness with creation times. Compiled only on Windows; it is completed
 * and tested by the Windows issue. */
#if defined(_WIN32)

#include "platform.h"
#include "shmcomm.h"

#include <stdio.h>
#include <stdlib.h>
#include <windows.h>

static _Thread_local int last_os_error;

void shmi_set_os_error(int err) { last_os_error = err; }
int shmi_get_os_error(void) { return last_os_error; }

static int from_win_error(DWORD err)
{
    shmi_set_os_error((int)err);
    switch (err) {
    case ERROR_FILE_NOT_FOUND: return SHMC_ENOENT;
    case ERROR_ALREADY_EXISTS: return SHMC_EEXIST;
    case ERROR_ACCESS_DENIED: return SHMC_EACCES;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_COMMITMENT_LIMIT: return SHMC_ENOSPC;
    default: return SHMC_EOS;
    }
}

size_t shmi_max_os_name(void) { return 200; }

static void local_name(const char *os_name, char *buf, size_t cap)
{
    snprintf(buf, cap, "Local\\%s", os_name);
}

static int map_handle(HANDLE h, size_t size, int readonly, shmi_segment_t *out)
{
    void *base = MapViewOfFile(h, readonly ? FILE_MAP_READ : FILE_MAP_ALL_ACCESS, 0, 0, size);
    if (!base) return from_win_error(GetLastError());
    out->base = base;
    out->size = size;
    out->handle = (intptr_t)h;
    out->identity = (uint64_t)(uintptr_t)h ^ ((uint64_t)GetCurrentProcessId() << 32);
    return 0;
}

int shmi_seg_create(const char *os_name, size_t size, uint32_t mode, shmi_segment_t *out)
{
    (void)mode; /* Windows: the default DACL gives access to the creating user only */
    char name[256];
    local_name(os_name, name, sizeof name);
    /* SEC_COMMIT reserves the pages against the commit limit now, not at first touch. */
    HANDLE h = CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE | SEC_COMMIT,
                                  (DWORD)((uint64_t)size >> 32), (DWORD)size, name);
    if (!h) return from_win_error(GetLastError());
    if (GetLastError() == ERROR_ALREADY_EXISTS) {
        CloseHandle(h);
        return SHMC_EEXIST;
    }
    int rc = map_handle(h, size, 0, out);
    if (rc) CloseHandle(h);
    return rc;
}

int shmi_seg_open(const char *os_name, int readonly, shmi_segment_t *out)
{
    char name[256];
    local_name(os_name, name, sizeof name);
    HANDLE h = OpenFileMappingA(readonly ? FILE_MAP_READ : FILE_MAP_ALL_ACCESS, FALSE, name);
    if (!h) return from_win_error(GetLastError());
    void *probe = MapViewOfFile(h, FILE_MAP_READ, 0, 0, 0);
    if (!probe) {
        CloseHandle(h);
        return from_win_error(GetLastError());
    }
    MEMORY_BASIC_INFORMATION info;
    VirtualQuery(probe, &info, sizeof info);
    UnmapViewOfFile(probe);
    int rc = map_handle(h, info.RegionSize, readonly, out);
    if (rc) CloseHandle(h);
    return rc;
}

void shmi_seg_close(shmi_segment_t *seg)
{
    if (seg->base) UnmapViewOfFile(seg->base);
    if (seg->handle) CloseHandle((HANDLE)seg->handle);
    seg->base = NULL;
    seg->handle = 0;
}

shmi_range_t shmi_seg_retire(shmi_segment_t *seg)
{
    /* The view stays mapped (it keeps the section alive) until shmi_range_release. */
    shmi_range_t range = {seg->base, seg->size};
    if (seg->handle) CloseHandle((HANDLE)seg->handle);
    seg->base = NULL;
    seg->size = 0;
    seg->handle = 0;
    return range;
}

void shmi_range_release(shmi_range_t range)
{
    if (range.base) UnmapViewOfFile(range.base);
}

/* A Windows mapping lives while any handle is open: there is nothing to unlink. */
int shmi_seg_unlink(const char *os_name)
{
    (void)os_name;
    return 0;
}

int shmi_seg_is_current(const shmi_segment_t *seg, const char *os_name)
{
    (void)seg, (void)os_name;
    return 1;
}

uint64_t shmi_now_ns(void)
{
    static LARGE_INTEGER freq;
    LARGE_INTEGER now;
    if (!freq.QuadPart) QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&now);
    return (uint64_t)((double)now.QuadPart * 1e9 / (double)freq.QuadPart);
}

void shmi_futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
    uint64_t end = shmi_now_ns() + (uint64_t)timeout_ns;
    while (atomic_load_explicit(word, memory_order_acquire) == expected && shmi_now_ns() < end)
        Sleep(0);
}

void shmi_futex_wake_all(_Atomic uint32_t *word) { (void)word; }

int32_t shmi_pid(void) { return (int32_t)GetCurrentProcessId(); }

uint64_t shmi_process_start_time(int32_t pid)
{
    HANDLE p = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, (DWORD)pid);
    if (!p) return 0;
    FILETIME created, exited, kernel, user;
    uint64_t t = 0;
    if (GetProcessTimes(p, &created, &exited, &kernel, &user))
        t = ((uint64_t)created.dwHighDateTime << 32) | created.dwLowDateTime;
    CloseHandle(p);
    return t;
}

int shmi_process_alive(int32_t pid, uint64_t start_time)
{
    HANDLE p = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, (DWORD)pid);
    if (!p) return GetLastError() == ERROR_ACCESS_DENIED;
    DWORD code = 0;
    int alive = GetExitCodeProcess(p, &code) && code == STILL_ACTIVE;
    CloseHandle(p);
    return alive && (start_time == 0 || shmi_process_start_time(pid) == start_time);
}

uint64_t shmi_random64(void)
{
    LARGE_INTEGER now;
    QueryPerformanceCounter(&now);
    uint64_t r = (uint64_t)now.QuadPart * 0x9E3779B97F4A7C15ull ^ ((uint64_t)GetCurrentProcessId() << 32);
    return r ? r : 1;
}

void shmi_cpu_relax(void) { YieldProcessor(); }

#endif /* _WIN32 */

struct shmi_thread {
    HANDLE handle;
    void (*fn)(void *);
    void *arg;
};

static DWORD WINAPI thread_main(LPVOID t)
{
    struct shmi_thread *self = t;
    self->fn(self->arg);
    return 0;
}

shmi_thread_t *shmi_thread_start(void (*fn)(void *), void *arg)
{
    shmi_thread_t *t = malloc(sizeof *t);
    if (!t) return NULL;
    t->fn = fn;
    t->arg = arg;
    t->handle = CreateThread(NULL, 0, thread_main, t, 0, NULL);
    if (!t->handle) {
        free(t);
        return NULL;
    }
    return t;
}

void shmi_thread_join(shmi_thread_t *t)
{
    if (!t) return;
    WaitForSingleObject(t->handle, INFINITE);
    CloseHandle(t->handle);
    free(t);
}
