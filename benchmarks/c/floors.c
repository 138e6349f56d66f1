/*
 * floors.c - what the hardware allows, measured in the same run as shmcomm (benchmarks/suite.py).
 *
 *   floors pingpong ROUNDS CORE_A CORE_B [LINES]
 *                                          two processes bounce a counter in ONE shared cache line
 *                                          (busy-wait): the one-way latency floor of any shared-memory
 *                                          transport between these two cores; LINES=2: each
 *                                          direction writes its own line
 *   floors memcpy BYTES SECONDS [RING]     single-thread memcpy of one BYTES-sized frame into the slots
 *                                          of a 4-slot ring (pre-faulted): the one-copy bandwidth limit
 *
 * Each prints one JSON object on stdout. Plain C11 + POSIX, no dependency on libshm.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

/* One 64-byte line: A writes 2i+1, B answers 2i+2. A deadline bounds every spin (a peer that died). */
struct line { _Alignas(64) _Atomic uint64_t word; char pad[56]; };

/* lines = 1: both directions share one line (each spinning reader contends with the writer);
 * lines = 2: A writes line 0 and B line 1, each spins on the other's line (the layout of a pair of
 * rings whose producer and consumer counters sit on separate lines). */
static int pingpong(long rounds, int core_a, int core_b, int lines) {
    long warmup = rounds / 10 + 1000;
    struct line *ln = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ln == MAP_FAILED) { perror("mmap"); return 1; }
    atomic_store(&ln[0].word, 0);
    atomic_store(&ln[1].word, 0);
    struct line *ping = &ln[0], *pong = lines == 2 ? &ln[1] : &ln[0];
    uint64_t *rtt = malloc(sizeof(uint64_t) * (size_t)rounds);
    if (!rtt) return 1;
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 1; }
    if (pid == 0) { /* B: echo */
        pin(core_b);
        uint64_t deadline = now_ns() + 60ull * 1000000000u;
        for (long i = 0; i < warmup + rounds; i++) {
            uint64_t want = 2 * (uint64_t)i + 1;
            unsigned spins = 0;
            while (atomic_load_explicit(&ping->word, memory_order_acquire) != want) {
                if (!(++spins & 0xFFFFF) && now_ns() > deadline) _exit(2);
            }
            atomic_store_explicit(&pong->word, want + 1, memory_order_release);
        }
        _exit(0);
    }
    pin(core_a);
    uint64_t deadline = now_ns() + 60ull * 1000000000u;
    int failed = 0;
    for (long i = 0; i < warmup + rounds && !failed; i++) {
        uint64_t t0 = now_ns();
        atomic_store_explicit(&ping->word, 2 * (uint64_t)i + 1, memory_order_release);
        unsigned spins = 0;
        while (atomic_load_explicit(&pong->word, memory_order_acquire) != 2 * (uint64_t)i + 2) {
            if (!(++spins & 0xFFFFF) && now_ns() > deadline) { failed = 1; break; }
        }
        uint64_t t1 = now_ns();
        if (i >= warmup) rtt[i - warmup] = t1 - t0;
    }
    int status = 0;
    if (failed) kill(pid, 9);
    waitpid(pid, &status, 0);
    if (failed) { printf("{\"ok\":false,\"error\":\"peer did not answer within 60 s\"}\n"); return 1; }
    /* the clock's own cost, to subtract nothing but to report */
    uint64_t c0 = now_ns();
    for (int i = 0; i < 100000; i++) (void)now_ns();
    double clock_ns = (double)(now_ns() - c0) / 100000.0;
    qsort(rtt, (size_t)rounds, sizeof *rtt, cmp_u64);
    printf("{\"ok\":true,\"lines\":%d,\"rounds\":%ld,\"rtt_p50_ns\":%.1f,\"rtt_p99_ns\":%.1f,\"rtt_p999_ns\":%.1f,"
           "\"rtt_min_ns\":%.1f,\"p50_us\":%.4f,\"p99_us\":%.4f,\"p999_us\":%.4f,\"clock_read_ns\":%.1f}\n",
           lines, rounds, pct(rtt, rounds, .5), pct(rtt, rounds, .99), pct(rtt, rounds, .999), (double)rtt[0],
           pct(rtt, rounds, .5) / 2000.0, pct(rtt, rounds, .99) / 2000.0, pct(rtt, rounds, .999) / 2000.0,
           clock_ns);
    free(rtt);
    return 0;
}

static int memcpy_bw(size_t bytes, double seconds, size_t ring) {
    /* What a one-copy send does: one source frame (the producer's, just written, so as warm as the
     * cache keeps it) copied into the next of RING slots of a ring (default 4: the suite's frame
     * channels hold 4; other depths show what the ring's working set costs). */
    char *src = aligned_alloc(4096, bytes), *dst = aligned_alloc(4096, bytes * ring);
    if (!src || !dst) return 1;
    memset(src, 0xA5, bytes);
    memset(dst, 0x5A, bytes * ring);
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(seconds * 1e9);
    uint64_t copies = 0, best = UINT64_MAX;
    do {
        uint64_t a = now_ns();
        memcpy(dst + (copies % ring) * bytes, src, bytes);
        uint64_t b = now_ns();
        if (b - a < best) best = b - a;
        copies++;
    } while (now_ns() < end || copies < 8);
    uint64_t t1 = now_ns();
    volatile char sink = dst[bytes / 2];
    (void)sink;
    double bps = (double)copies * (double)bytes / ((double)(t1 - t0) / 1e9);
    printf("{\"ok\":true,\"bytes\":%zu,\"copies\":%llu,\"bytes_per_s\":%.0f,\"frames_per_s\":%.2f,"
           "\"best_bytes_per_s\":%.0f}\n",
           bytes, (unsigned long long)copies, bps, bps / (double)bytes, (double)bytes / ((double)best / 1e9));
    free(src);
    free(dst);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && !strcmp(argv[1], "pingpong"))
        return pingpong(atol(argv[2]), atoi(argv[3]), atoi(argv[4]), argc >= 6 ? atoi(argv[5]) : 1);
    if (argc >= 4 && !strcmp(argv[1], "memcpy"))
        return memcpy_bw((size_t)atoll(argv[2]), atof(argv[3]), argc >= 5 && atoll(argv[4]) > 0 ? (size_t)atoll(argv[4]) : 4);
    fprintf(stderr, "usage: floors pingpong ROUNDS CORE_A CORE_B [1|2] | floors memcpy BYTES SECONDS [RING]\n");
    return 2;
}
