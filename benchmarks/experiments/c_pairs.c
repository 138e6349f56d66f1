/*
 * c_pairs.c - libshm's own cost per 64-byte message, in one process (publisher and subscriber on one
 * channel): N x (shmc_pub_send + shmc_sub_next), or N/256 x (send_many + recv_many of 256). For
 * valgrind --tool=callgrind (instruction counts do not depend on a noisy machine) and perf.
 *
 *   c_pairs N lossless(0|1) batch(0|1)
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmcomm.h"

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    int lossless = argc > 2 && atoi(argv[2]);
    int batch = argc > 3 && atoi(argv[3]);
    char name[64];
    snprintf(name, sizeof name, "shmbench_c_%d_pairs", (int)getpid());
    shmc_pub_options_t po;
    shmc_pub_options_init(&po);
    po.num_slots = 1024;
    po.slot_size = 64;
    po.flags = lossless ? SHMC_LOSSLESS : 0;
    shmc_pub_t *pub;
    shmc_sub_t *sub;
    if (shmc_pub_open(name, &po, &pub) || shmc_sub_open(name, NULL, &sub)) return 1;
    unsigned char msg[64 * 256], out[64 * 256];
    uint64_t lens[256];
    size_t rlens[256];
    memset(msg, 0xA5, sizeof msg);
    for (int k = 0; k < 256; k++) lens[k] = 64;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    long done = 0;
    if (batch) {
        for (; done + 256 <= n; done += 256) {
            size_t sent = 0, got = 0;
            if (shmc_pub_send_many(pub, msg, lens, 256, &sent, 0) || sent != 256) return 2;
            if (shmc_sub_recv_many(sub, out, sizeof out, rlens, 256, &got, 0) || got != 256) return 3;
        }
    } else {
        for (; done < n; done++) {
            if (shmc_pub_send(pub, msg, 64, 0)) return 2;
            if (shmc_sub_next(sub, 0) != 64) return 3;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (double)done;
    printf("{\"messages\":%ld,\"lossless\":%d,\"batch\":%d,\"ns_per_message\":%.1f}\n", done, lossless, batch, ns);
    shmc_sub_close(sub);
    shmc_pub_close(pub);
    return 0;
}
