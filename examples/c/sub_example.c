/*
 * sub_example - receive COUNT messages on channel NAME and print each one on a line.
 *
 *   usage: sub_example NAME COUNT
 *
 * Waits up to 10 s for a publisher to create the channel, then up to 10 s for each message.
 * Messages are printed as they are (bytes, then a newline), so pair it with pub_example or a
 * Python shmcomm.Publisher sending text.
 *
 * Exit status: 0 success, 1 bad arguments, 2 no channel within 10 s (or it could not be opened),
 * 3 a receive failed or timed out.
 */
#include "shmcomm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECOND 1000000000ll

int main(int argc, char **argv)
{
    char *end = NULL;
    long long count = argc == 3 ? strtoll(argv[2], &end, 10) : -1;
    if (argc != 3 || *argv[2] == '\0' || *end != '\0' || count < 0) {
        fprintf(stderr, "usage: %s NAME COUNT\n", argv[0]);
        return 1;
    }
    const char *name = argv[1];

    shmc_sub_options_t opts;
    shmc_sub_options_init(&opts);
    opts.connect_timeout_ns = 10 * SECOND; /* the publisher may start after us */

    shmc_sub_t *sub = NULL;
    int rc = shmc_sub_open(name, &opts, &sub);
    if (rc != 0) {
        fprintf(stderr, "sub_example: cannot open '%s': %s\n", name, shmc_strerror(rc));
        return 2;
    }

    /* One buffer of the channel's slot size holds any message. */
    shmc_stats_t stats;
    stats.size = sizeof stats;
    shmc_sub_stats(sub, &stats);
    size_t cap = stats.slot_size;
    char *buf = malloc(cap ? cap : 1);
    if (!buf) {
        shmc_sub_close(sub);
        return 2;
    }

    int status = 0;
    for (long long i = 0; i < count; i++) {
        size_t len = 0;
        rc = shmc_sub_recv(sub, buf, cap, &len, 10 * SECOND);
        if (rc == SHMC_ETRUNC) {
            /* A restarted publisher with larger slots: grow to the reported size and retry. */
            char *bigger = realloc(buf, len);
            if (!bigger) {
                status = 3;
                break;
            }
            buf = bigger;
            cap = len;
            i--;
            continue;
        }
        if (rc != 0) {
            fprintf(stderr, "sub_example: message %lld of %lld: %s\n", i + 1, count, shmc_strerror(rc));
            status = 3;
            break;
        }
        fwrite(buf, 1, len, stdout);
        putchar('\n');
        fflush(stdout); /* one line per message, visible at once to a reading pipe */
    }

    shmc_sub_stats(sub, &stats);
    if (stats.dropped) fprintf(stderr, "sub_example: %llu messages dropped\n", (unsigned long long)stats.dropped);
    free(buf);
    shmc_sub_close(sub);
    return status;
}
