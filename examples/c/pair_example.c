/*
 * pair_example - one side of PAIR NAME (the ESHM two-way channel): the master sends COUNT messages
 * "hello 0", "hello 1", ... and checks each reply; the slave answers each message with "ACK <message>".
 * It talks to itself in the other role, or to examples/pair_master.py / pair_slave.py.
 *
 *   usage: pair_example master|slave [NAME [COUNT]]        (defaults: examples/pair, 10)
 *
 * Either side may start first: each waits up to 10 s for the other, and for every message. A remote
 * that dies and is restarted meanwhile is reattached by itself (the default disconnect behaviour,
 * SHMC_DISCONNECT_ON_TIMEOUT, gives up after 5 s without one). The statistics are printed at the end.
 *
 * Exit status: 0 success, 1 bad arguments, 2 the pair could not be opened, 3 no remote within 10 s,
 * 4 a read or write failed, 5 a wrong reply.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* nanosleep under -std=c11 */
#endif
#include "shmcomm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#include <windows.h>
static void sleep_ms(long ms) { Sleep((DWORD)ms); }
#else
#include <time.h>
static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}
#endif

#define SECOND 1000000000ll
#define MAX_MESSAGE 256

static const char *const STATES[] = {"none", "connected", "stale", "gone", "gave_up"};

static void print_stats(const char *who, shmc_pair_t *pair)
{
    shmc_pair_stats_t s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s; /* the caller sets it: a newer library only fills what we know */
    if (shmc_pair_stats(pair, &s) != 0) return;
    printf("%s: stats master_pid=%d slave_pid=%d m2s_write_count=%llu m2s_read_count=%llu "
           "s2m_write_count=%llu s2m_read_count=%llu drops=%llu reconnections=%llu remote_state=%s\n",
           who, s.master_pid, s.slave_pid, (unsigned long long)s.m2s_write_count,
           (unsigned long long)s.m2s_read_count, (unsigned long long)s.s2m_write_count,
           (unsigned long long)s.s2m_read_count, (unsigned long long)s.drops,
           (unsigned long long)s.reconnections, s.remote_state < 5 ? STATES[s.remote_state] : "?");
}

/* The master: COUNT round trips. */
static int run_master(shmc_pair_t *pair, long long count)
{
    char message[MAX_MESSAGE], reply[MAX_MESSAGE + 8], expected[MAX_MESSAGE + 8];
    for (long long i = 0; i < count; i++) {
        int len = snprintf(message, sizeof message, "hello %lld", i);
        int rc = shmc_pair_write(pair, message, (size_t)len, 10 * SECOND);
        if (rc != 0) {
            fprintf(stderr, "pair_example: write '%s': %s\n", message, shmc_strerror(rc));
            return 4;
        }
        size_t n = 0;
        rc = shmc_pair_read(pair, reply, sizeof reply, &n, 10 * SECOND);
        if (rc != 0) {
            fprintf(stderr, "pair_example: reply to '%s': %s\n", message, shmc_strerror(rc));
            return 4;
        }
        int elen = snprintf(expected, sizeof expected, "ACK %s", message);
        printf("master: sent '%s', got '%.*s'\n", message, (int)n, reply);
        fflush(stdout);
        if (n != (size_t)elen || memcmp(reply, expected, n) != 0) return 5;
    }
    printf("master: done, %lld replies\n", count);
    return 0;
}

/* The slave: answers COUNT messages. */
static int run_slave(shmc_pair_t *pair, long long count)
{
    char message[4096], reply[4096 + 4];
    for (long long i = 0; i < count; i++) {
        size_t n = 0;
        /* SHMC_ETRUNC (message larger than our buffer) is an error here: this protocol is short text. */
        int rc = shmc_pair_read(pair, message, sizeof message, &n, 10 * SECOND);
        if (rc != 0) {
            fprintf(stderr, "pair_example: message %lld of %lld: %s\n", i + 1, count, shmc_strerror(rc));
            return 4;
        }
        memcpy(reply, "ACK ", 4);
        memcpy(reply + 4, message, n);
        rc = shmc_pair_write(pair, reply, n + 4, 10 * SECOND);
        if (rc != 0) {
            fprintf(stderr, "pair_example: answer: %s\n", shmc_strerror(rc));
            return 4;
        }
        printf("slave: got '%.*s', answered\n", (int)n, message);
        fflush(stdout);
    }
    printf("slave: done, %lld messages answered\n", count);
    return 0;
}

int main(int argc, char **argv)
{
    int master = argc > 1 && strcmp(argv[1], "master") == 0;
    int slave = argc > 1 && strcmp(argv[1], "slave") == 0;
    const char *name = argc > 2 ? argv[2] : "examples/pair";
    long long count = 10;
    if (argc > 3) {
        char *end;
        count = strtoll(argv[3], &end, 10);
        if (*argv[3] == '\0' || *end != '\0' || count < 0) count = -1;
    }
    if ((!master && !slave) || argc > 4 || count < 0) {
        fprintf(stderr, "usage: %s master|slave [NAME [COUNT]]\n", argv[0]);
        return 1;
    }

    /* Defaults: each side's queue has 64 slots of 4096 bytes; stale after 100 ms without heartbeat
     * (a background thread beats); on_timeout: reattach to a restarted remote within 5 s. */
    shmc_pair_options_t opts;
    shmc_pair_options_init(&opts);
    opts.role = master ? SHMC_PAIR_MASTER : SHMC_PAIR_SLAVE;
    shmc_pair_t *pair = NULL;
    int rc = shmc_pair_open(name, &opts, &pair);
    if (rc != 0) {
        fprintf(stderr, "pair_example: cannot open %s of '%s': %s\n", argv[1], name, shmc_strerror(rc));
        return 2;
    }
    printf("%s: pair '%s' open, waiting up to 10 s for the %s\n", argv[1], name, master ? "slave" : "master");
    fflush(stdout);
    int waited_ms = 0;
    while (!shmc_pair_remote_alive(pair) && waited_ms < 10000) {
        sleep_ms(5);
        waited_ms += 5;
    }
    int status = shmc_pair_remote_alive(pair) ? (master ? run_master(pair, count) : run_slave(pair, count)) : 3;
    if (status == 3) fprintf(stderr, "pair_example: the %s did not come within 10 s\n", master ? "slave" : "master");
    print_stats(argv[1], pair);
    shmc_pair_close(pair);
    return status;
}
