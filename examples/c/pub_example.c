/*
 * pub_example - publish COUNT messages "hello 0" .. "hello COUNT-1" on channel NAME.
 *
 *   usage: pub_example NAME COUNT [RATE_HZ]
 *
 * RATE_HZ is the publishing rate (default 1000; 0 = as fast as the subscribers read). The example
 * waits up to 10 s for a first subscriber before it publishes, then sends every message and closes
 * the channel. Run sub_example (or a Python shmcomm.Subscriber) on the same NAME to receive them.
 *
 * Exit status: 0 success, 1 bad arguments, 2 the channel could not be opened, 3 no subscriber
 * attached within 10 s, 4 a send failed.
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
static void sleep_ns(long long ns) { Sleep((DWORD)(ns / 1000000)); }
#else
#include <time.h>
static void sleep_ns(long long ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    nanosleep(&ts, NULL);
}
#endif

#define SECOND 1000000000ll

static int parse_count(const char *text, long long *out)
{
    char *end;
    long long v = strtoll(text, &end, 10);
    if (*text == '\0' || *end != '\0' || v < 0) return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    long long count, rate = 1000;
    if (argc < 3 || argc > 4 || parse_count(argv[2], &count) != 0 ||
        (argc == 4 && parse_count(argv[3], &rate) != 0)) {
        fprintf(stderr, "usage: %s NAME COUNT [RATE_HZ]\n", argv[0]);
        return 1;
    }
    const char *name = argv[1];

    /* Options start from their defaults (64 slots of 4096 bytes). Lossless mode: a subscriber
     * that falls behind makes the publisher wait instead of missing messages, so every one of
     * COUNT messages reaches every subscriber. Without the flag the publisher never waits and a
     * slow subscriber counts what it missed as dropped. */
    shmc_pub_options_t opts;
    shmc_pub_options_init(&opts);
    opts.flags = SHMC_LOSSLESS;

    shmc_pub_t *pub = NULL;
    int rc = shmc_pub_open(name, &opts, &pub);
    if (rc != 0) {
        fprintf(stderr, "pub_example: cannot open '%s': %s\n", name, shmc_strerror(rc));
        return 2;
    }

    /* A subscriber sees the messages published after it attached: wait for one to be there. */
    shmc_stats_t stats;
    stats.size = sizeof stats;
    int waited_ms = 0;
    while (shmc_pub_stats(pub, &stats) == 0 && stats.subscribers == 0) {
        if (waited_ms >= 10000) {
            fprintf(stderr, "pub_example: no subscriber on '%s' after 10 s\n", name);
            shmc_pub_close(pub);
            return 3;
        }
        sleep_ns(1000000); /* 1 ms */
        waited_ms++;
    }

    for (long long i = 0; i < count; i++) {
        char text[64];
        int len = snprintf(text, sizeof text, "hello %lld", i);
        /* Waits at most 10 s for room (lossless mode); one copy into shared memory. */
        rc = shmc_pub_send(pub, text, (size_t)len, 10 * SECOND);
        if (rc != 0) {
            fprintf(stderr, "pub_example: send %lld failed: %s\n", i, shmc_strerror(rc));
            shmc_pub_close(pub);
            return 4;
        }
        if (rate > 0) sleep_ns(SECOND / rate);
    }

    /* The last publisher to close removes the channel's name; subscribers that are attached keep
     * their mapping and still read what is left in it. */
    shmc_pub_close(pub);
    return 0;
}
