/*
 * pull_example - take jobs from work queue NAME until COUNT have arrived, printing each one.
 *
 *   usage: pull_example [NAME [COUNT [TIMEOUT_S]]]        (defaults: example/jobs, 10, 10)
 *
 * Waits up to 10 s for a pusher (push_example) to create the queue, then up to TIMEOUT_S for each
 * job. Several pullers on one queue share the jobs: each job goes to exactly one of them, so with
 * two pullers each gets only part of the COUNT a pusher sends.
 *
 * Exit status: 0 COUNT jobs received, 1 bad arguments, 2 no queue within 10 s (or it could not be
 * opened), 3 a receive failed or no job came within TIMEOUT_S.
 */
#include "shmcomm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    const char *name = argc > 1 ? argv[1] : "example/jobs";
    long long count = 10, timeout_s = 10;
    if (argc > 4 || (argc > 2 && parse_count(argv[2], &count) != 0) ||
        (argc > 3 && parse_count(argv[3], &timeout_s) != 0)) {
        fprintf(stderr, "usage: %s [NAME [COUNT [TIMEOUT_S]]]\n", argv[0]);
        return 1;
    }

    shmc_pull_options_t opts;
    shmc_pull_options_init(&opts);
    opts.connect_timeout_ns = 10 * SECOND; /* the pusher may start after us */
    shmc_pull_t *pull = NULL;
    int rc = shmc_pull_open(name, &opts, &pull);
    if (rc != 0) {
        fprintf(stderr, "pull_example: cannot open '%s': %s\n", name, shmc_strerror(rc));
        return 2;
    }

    /* A buffer of the queue's slot size holds any job. */
    shmc_stats_t stats;
    stats.size = sizeof stats;
    shmc_pull_stats(pull, &stats);
    size_t cap = stats.slot_size;
    char *buf = malloc(cap ? cap : 1);
    if (!buf) {
        shmc_pull_close(pull);
        return 2;
    }
    printf("pull_example: attached to '%s', waiting for %lld jobs\n", name, count);

    int status = 0;
    long long got = 0;
    while (got < count) {
        size_t len = 0;
        rc = shmc_pull_recv(pull, buf, cap, &len, timeout_s * SECOND);
        if (rc == SHMC_ETRUNC) {
            /* A restarted pusher with larger slots: grow to the reported size and take it again. */
            char *bigger = realloc(buf, len);
            if (!bigger) {
                status = 3;
                break;
            }
            buf = bigger;
            cap = len;
            continue;
        }
        if (rc != 0) {
            fprintf(stderr, "pull_example: job %lld of %lld: %s\n", got + 1, count, shmc_strerror(rc));
            status = 3;
            break;
        }
        got++;
        printf("pull_example: got '%.*s'\n", (int)len, buf);
        fflush(stdout);
    }

    shmc_pull_stats(pull, &stats);
    if (stats.dropped)
        fprintf(stderr, "pull_example: %llu jobs lost (a pusher died while writing them)\n",
                (unsigned long long)stats.dropped);
    if (status == 0) printf("pull_example: done, %lld jobs\n", got);
    free(buf);
    shmc_pull_close(pull);
    return status;
}
