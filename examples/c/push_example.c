/*
 * push_example - queue COUNT numbered jobs "job 0" .. "job COUNT-1" on work queue NAME.
 *
 *   usage: push_example [NAME [COUNT]]        (defaults: example/jobs, 10)
 *
 * A work queue hands each job to exactly one puller (run one or several pull_example on the same
 * NAME, before or after this one). Jobs wait in the queue until a puller takes them; when the queue
 * is full, pushing waits for room (up to 10 s per job). Before it closes the queue, the example waits
 * up to 10 s for the pullers to have taken every job: the last pusher to close removes the queue,
 * and a job nobody had taken would go with it.
 *
 * Exit status: 0 success, 1 bad arguments, 2 the queue could not be opened, 3 a push failed
 * (no room within 10 s), 4 the jobs were not all taken within 10 s.
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

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "example/jobs";
    long long count = 10;
    if (argc > 2) {
        char *end;
        count = strtoll(argv[2], &end, 10);
        if (*argv[2] == '\0' || *end != '\0' || count < 0) count = -1;
    }
    if (argc > 3 || count < 0) {
        fprintf(stderr, "usage: %s [NAME [COUNT]]\n", argv[0]);
        return 1;
    }

    /* Default options: 128 slots of 4096 bytes. The first pusher creates the queue; another
     * push_example on the same NAME joins it and both feed the same pullers. */
    shmc_push_options_t opts;
    shmc_push_options_init(&opts);
    shmc_push_t *push = NULL;
    int rc = shmc_push_open(name, &opts, &push);
    if (rc != 0) {
        fprintf(stderr, "push_example: cannot open '%s': %s\n", name, shmc_strerror(rc));
        return 2;
    }
    printf("push_example: queue '%s' open, pushing %lld jobs\n", name, count);

    for (long long i = 0; i < count; i++) {
        char job[64];
        int len = snprintf(job, sizeof job, "job %lld", i);
        /* Waits up to 10 s while the queue is full; never overwrites a job nobody took. */
        rc = shmc_push_send(push, job, (size_t)len, 10 * SECOND);
        if (rc != 0) {
            fprintf(stderr, "push_example: push of '%s' failed: %s\n", job, shmc_strerror(rc));
            shmc_push_close(push);
            return 3;
        }
        printf("push_example: queued '%s'\n", job);
        fflush(stdout);
    }

    /* head - tail jobs are still queued: wait until the pullers have taken them all. */
    shmc_stats_t stats;
    stats.size = sizeof stats;
    int waited_ms = 0;
    while (shmc_push_stats(push, &stats) == 0 && stats.tail < stats.head) {
        if (waited_ms >= 10000) {
            fprintf(stderr, "push_example: %llu jobs still queued after 10 s (no puller?)\n",
                    (unsigned long long)(stats.head - stats.tail));
            shmc_push_close(push);
            return 4;
        }
        sleep_ms(1);
        waited_ms++;
    }
    printf("push_example: all %lld jobs taken, closing\n", count);
    shmc_push_close(push);
    return 0;
}
