/*
 * shmc_bench.c - shmcomm from C, two processes, 64-byte messages (benchmarks/suite.py runs it).
 *
 *   shmc_bench latency ROUNDS CORE_A CORE_B MODE   PUB/SUB ping-pong over two channels; MODE busy
 *                                                  (shmc_sub_next with timeout 0 in a loop) or
 *                                                  blocking (shmc_sub_next waits: spin, then futex);
 *                                                  busy-sw / blocking-sw: SHMC_SINGLE_WRITER channels
 *   shmc_bench throughput N CORE_A CORE_B MODE     one lossless publisher, one subscriber; MODE single
 *                                                  (shmc_pub_send / shmc_sub_next per message) or
 *                                                  batch (shmc_pub_send_many / shmc_sub_recv_many, 256);
 *                                                  with "-sw" (single-sw, batch-sw) the channel is
 *                                                  SHMC_SINGLE_WRITER
 *
 * Every message carries its sequence number in its first 8 bytes; the receiver checks each one and
 * reports loss and disorder. Prints one JSON object on stdout. Every wait is bounded (5 s per call).
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmcomm.h"

#define MSG 64
#define BATCH 256
#define DEPTH 1024
#define WAIT_NS 5000000000LL

#include "bench_util.h"

static void fail(const char *what, int rc) {
    printf("{\"ok\":false,\"error\":\"%s: %s\"}\n", what, shmc_strerror(rc));
    fflush(stdout);
}

/* Waits for the next message: busy = poll with timeout 0 (bounded by the clock), else one waiting
 * call. Returns the size or a negative code. */
static int64_t next(shmc_sub_t *sub, int busy) {
    if (!busy) return shmc_sub_next(sub, WAIT_NS);
    uint64_t deadline = 0;
    unsigned spins = 0;
    for (;;) {
        int64_t n = shmc_sub_next(sub, 0);
        if (n != SHMC_EAGAIN) return n;
        if (!(++spins & 0xFFFF)) {
            uint64_t t = now_ns();
            if (!deadline) deadline = t + (uint64_t)WAIT_NS;
            else if (t > deadline) return SHMC_ETIMEDOUT;
        }
    }
}

static int latency(long rounds, int core_a, int core_b, int busy, int single_writer, const char *tag) {
    long warmup = rounds / 10 + 1000;
    char a2b[64], b2a[64];
    snprintf(a2b, sizeof a2b, "shmbench_c_%s_a2b", tag);
    snprintf(b2a, sizeof b2a, "shmbench_c_%s_b2a", tag);
    shmc_pub_options_t po;
    shmc_pub_options_init(&po);
    po.num_slots = 64;
    po.slot_size = MSG;
    po.flags = single_writer ? SHMC_SINGLE_WRITER : 0;
    shmc_sub_options_t so;
    shmc_sub_options_init(&so);
    so.connect_timeout_ns = WAIT_NS;
    pid_t pid = fork();
    if (pid < 0) return 1;
    int me_b = pid == 0;
    pin(me_b ? core_b : core_a);
    shmc_pub_t *pub = NULL;
    shmc_sub_t *sub = NULL;
    int rc = shmc_pub_open(me_b ? b2a : a2b, &po, &pub);
    if (rc) { fail("pub_open", rc); if (me_b) _exit(1); return 1; }
    rc = shmc_sub_open(me_b ? a2b : b2a, &so, &sub);
    if (rc) { fail("sub_open", rc); shmc_pub_close(pub); if (me_b) _exit(1); return 1; }
    const void *buf;
    size_t cap;
    shmc_sub_buffer(sub, &buf, &cap);
    /* both sides subscribed before the first ping: B announces itself with a message of size 1 */
    if (me_b) {
        char hello = 1;
        int64_t n;
        /* repeat the hello until A's ping 0 arrives (A may subscribe after B's first hello) */
        for (;;) {
            shmc_pub_try_send(pub, &hello, 1);
            n = shmc_sub_next(sub, 1000000);
            if (n >= 0) break;
            if (n != SHMC_ETIMEDOUT && n != SHMC_EAGAIN) _exit(1);
        }
        for (long i = 0;; i++) {
            if (n != MSG) _exit(3);
            shmc_sub_buffer(sub, &buf, &cap);
            shmc_pub_try_send(pub, buf, MSG);
            if (i + 1 == warmup + rounds) break;
            n = next(sub, busy);
            if (n < 0) _exit(4);
        }
        shmc_sub_close(sub);
        shmc_pub_close(pub);
        _exit(0);
    }
    int64_t n = shmc_sub_next(sub, WAIT_NS);  /* B's hello */
    if (n != 1) { fail("no hello from B", (int)n); kill(pid, 9); waitpid(pid, NULL, 0); return 1; }
    while (shmc_sub_next(sub, 0) == 1) {}
    uint64_t *rtt = malloc(sizeof(uint64_t) * (size_t)rounds);
    unsigned char msg[MSG];
    memset(msg, 0xA5, sizeof msg);
    int bad = 0;
    for (long i = 0; i < warmup + rounds; i++) {
        uint64_t seq = (uint64_t)i;
        memcpy(msg, &seq, 8);
        uint64_t t0 = now_ns();
        shmc_pub_try_send(pub, msg, MSG);
        do n = next(sub, busy); while (n == 1);  /* a late hello */
        uint64_t t1 = now_ns();
        if (n != MSG) { bad = 1; fail("no echo", (int)n); break; }
        uint64_t got;
        memcpy(&got, buf, 8);
        if (got != seq) { bad = 1; printf("{\"ok\":false,\"error\":\"echo %llu for %llu\"}\n",
                                          (unsigned long long)got, (unsigned long long)seq); break; }
        if (i >= warmup) rtt[i - warmup] = t1 - t0;
    }
    int status = 0;
    if (bad) kill(pid, 9);
    waitpid(pid, &status, 0);
    shmc_sub_close(sub);
    shmc_pub_close(pub);
    if (bad) return 1;
    qsort(rtt, (size_t)rounds, sizeof *rtt, cmp_u64);
    printf("{\"ok\":true,\"rounds\":%ld,\"loss\":0,\"rtt_p50_ns\":%.1f,\"rtt_p99_ns\":%.1f,"
           "\"rtt_p999_ns\":%.1f,\"p50_us\":%.4f,\"p99_us\":%.4f,\"p999_us\":%.4f}\n",
           rounds, pct(rtt, rounds, .5), pct(rtt, rounds, .99), pct(rtt, rounds, .999),
           pct(rtt, rounds, .5) / 2000.0, pct(rtt, rounds, .99) / 2000.0, pct(rtt, rounds, .999) / 2000.0);
    free(rtt);
    return 0;
}

static int throughput(long total, int core_a, int core_b, int batch, int single_writer, const char *tag) {
    char name[64];
    snprintf(name, sizeof name, "shmbench_c_%s_tp", tag);
    shmc_pub_options_t po;
    shmc_pub_options_init(&po);
    po.num_slots = DEPTH;
    po.slot_size = MSG;
    po.flags = SHMC_LOSSLESS | (single_writer ? SHMC_SINGLE_WRITER : 0);
    shmc_pub_t *pub = NULL;
    int rc = shmc_pub_open(name, &po, &pub);
    if (rc) { fail("pub_open", rc); return 1; }
    int ready[2], result[2];
    if (pipe(ready) || pipe(result)) return 1;
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) { /* B: the subscriber */
        pin(core_b);
        shmc_sub_options_t so;
        shmc_sub_options_init(&so);
        so.connect_timeout_ns = WAIT_NS;
        shmc_sub_t *sub = NULL;
        char ok = 0;
        if (shmc_sub_open(name, &so, &sub) == 0) ok = 1;
        if (write(ready[1], &ok, 1) != 1 || !ok) _exit(1);
        const void *buf;
        size_t cap;
        shmc_sub_buffer(sub, &buf, &cap);
        uint64_t expected = 0, count = 0, loss = 0, disorder = 0, t_first = 0, t_last = 0;
        unsigned char *many = malloc((size_t)MSG * BATCH);
        size_t lens[BATCH];
        while (expected < (uint64_t)total) {
            size_t got = 0;
            const unsigned char *p;
            if (batch) {
                rc = shmc_sub_recv_many(sub, many, (size_t)MSG * BATCH, lens, BATCH, &got, WAIT_NS);
                if (rc) break;
                p = many;
            } else {
                int64_t n = next(sub, 1);
                if (n < 0) break;
                shmc_sub_buffer(sub, &buf, &cap);
                p = buf;
                got = 1;
            }
            if (!t_first) t_first = now_ns();
            for (size_t k = 0; k < got; k++) {
                uint64_t seq;
                memcpy(&seq, p + (batch ? k * MSG : 0), 8);
                count++;
                if (seq == expected) expected++;
                else if (seq > expected) { loss += seq - expected; expected = seq + 1; }
                else disorder++;
            }
        }
        t_last = now_ns();
        loss += (uint64_t)total - expected;
        uint64_t out[5] = {count, loss, disorder, t_first, t_last};
        if (write(result[1], out, sizeof out) != sizeof out) _exit(1);
        shmc_sub_close(sub);
        _exit(0);
    }
    pin(core_a);
    char ok = 0;
    if (read(ready[0], &ok, 1) != 1 || !ok) { fail("subscriber did not attach", SHMC_ENOENT); return 1; }
    unsigned char *data = malloc((size_t)MSG * BATCH);
    uint64_t lens[BATCH];
    memset(data, 0xA5, (size_t)MSG * BATCH);
    for (int k = 0; k < BATCH; k++) lens[k] = MSG;
    uint64_t t0 = now_ns();
    for (long i = 0; i < total;) {
        if (batch) {
            size_t count = (size_t)(total - i < BATCH ? total - i : BATCH), sent = 0;
            for (size_t k = 0; k < count; k++) { uint64_t s = (uint64_t)i + k; memcpy(data + k * MSG, &s, 8); }
            rc = shmc_pub_send_many(pub, data, lens, count, &sent, WAIT_NS);
            i += (long)sent;
        } else {
            uint64_t s = (uint64_t)i;
            memcpy(data, &s, 8);
            rc = shmc_pub_send(pub, data, MSG, WAIT_NS);
            i++;
        }
        if (rc) { fail("send", rc); break; }
    }
    uint64_t t1 = now_ns();
    uint64_t out[5] = {0};
    ssize_t r = read(result[0], out, sizeof out);
    waitpid(pid, NULL, 0);
    shmc_pub_close(pub);
    if (r != sizeof out) { fail("subscriber reported nothing", SHMC_EOS); return 1; }
    double dt = (double)(out[4] - out[3]) / 1e9;
    printf("{\"ok\":%s,\"messages\":%ld,\"received\":%llu,\"loss\":%llu,\"disorder\":%llu,"
           "\"msgs_per_s\":%.0f,\"send_seconds\":%.6f}\n",
           out[1] || out[2] ? "false" : "true", total, (unsigned long long)out[0],
           (unsigned long long)out[1], (unsigned long long)out[2], dt > 0 ? (double)(out[0] - 1) / dt : 0.0,
           (double)(t1 - t0) / 1e9);
    return 0;
}

int main(int argc, char **argv) {
    char tag[32];
    snprintf(tag, sizeof tag, "%d", (int)getpid());
    if (argc >= 6 && !strcmp(argv[1], "latency"))
        return latency(atol(argv[2]), atoi(argv[3]), atoi(argv[4]), !strncmp(argv[5], "busy", 4),
                       strstr(argv[5], "-sw") != NULL, tag);
    if (argc >= 6 && !strcmp(argv[1], "throughput"))
        return throughput(atol(argv[2]), atoi(argv[3]), atoi(argv[4]), !strncmp(argv[5], "batch", 5),
                          strstr(argv[5], "-sw") != NULL, tag);
    fprintf(stderr, "usage: shmc_bench latency ROUNDS CORE_A CORE_B busy|blocking|busy-sw|blocking-sw\n"
                    "       shmc_bench throughput N CORE_A CORE_B single|batch|single-sw|batch-sw\n");
    return 2;
}
