/*
 * streaming_copy.c - one thread copies a BYTES-sized frame into RING rotating destination buffers, with
 * memcpy or with streaming (non-temporal) AVX2 stores; best of 5 runs of 0.4 s, in GB/s. Behind
 * libshm's shmi_ring_copy_in (ring.c), which copies payloads of 2 MiB and more with streaming stores.
 *
 *   gcc -O2 -o /tmp/streaming_copy benchmarks/experiments/streaming_copy.c
 *   /tmp/streaming_copy BYTES RING 0|1        (1: streaming stores)
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

__attribute__((target("avx2"))) static void nt_copy(void *dst, const void *src, size_t n)
{
    /* dst 64-byte aligned, n multiple of 128 here */
    const __m256i *s = src;
    __m256i *d = dst;
    for (size_t i = 0; i < n / 32; i += 4) {
        __m256i a = _mm256_loadu_si256(s + i), b = _mm256_loadu_si256(s + i + 1);
        __m256i c = _mm256_loadu_si256(s + i + 2), e = _mm256_loadu_si256(s + i + 3);
        _mm256_stream_si256(d + i, a); _mm256_stream_si256(d + i + 1, b);
        _mm256_stream_si256(d + i + 2, c); _mm256_stream_si256(d + i + 3, e);
    }
    _mm_sfence();
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: streaming_copy BYTES RING 0|1\n");
        return 2;
    }
    size_t bytes = strtoull(argv[1], 0, 0), ring = strtoull(argv[2], 0, 0);
    int nt = atoi(argv[3]);
    unsigned char *src = aligned_alloc(64, bytes), *dst = aligned_alloc(64, bytes * ring);
    memset(src, 1, bytes); memset(dst, 2, bytes * ring);
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now(); size_t copies = 0;
        while (now() - t0 < 0.4) {
            void *d = dst + (copies % ring) * bytes;
            if (nt) nt_copy(d, src, bytes); else memcpy(d, src, bytes);
            copies++;
        }
        double gbs = copies * (double)bytes / (now() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    printf("%s bytes=%zu ring=%zu: %.2f GB/s (best of 5)\n", nt ? "nt    " : "memcpy", bytes, ring, best);
    return 0;
}
