/*
 * rep_example - serve COUNT requests on service NAME: a number is answered with its double, any
 * other text with itself in upper case.
 *
 *   usage: rep_example [NAME [COUNT]]        (defaults: example/service, 10)
 *
 * Run req_example on the same NAME (before or after this one) to send requests. Several
 * rep_example on one NAME share the requests: each request is served by exactly one of them, and
 * each reply goes back to the requester that asked. Waits up to 30 s for each request. After the
 * last reply it waits (up to 5 s) for the requesters to leave before it closes the service.
 *
 * Exit status: 0 success, 1 bad arguments, 2 the service could not be opened, 3 no request came
 * within 30 s (or a receive failed).
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* nanosleep under -std=c11 */
#endif
#include "shmcomm.h"

#include <ctype.h>
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

/* Writes the answer to request[len] into out[cap]; returns its length. */
static size_t answer(const char *request, size_t len, char *out, size_t cap)
{
    char text[32];
    if (len > 0 && len < sizeof text) {
        memcpy(text, request, len);
        text[len] = '\0';
        char *end;
        long long v = strtoll(text, &end, 10);
        if (*end == '\0' && !isspace((unsigned char)text[0])) {
            int n = snprintf(out, cap, "%lld", v * 2);
            return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
        }
    }
    size_t n = len < cap ? len : cap;
    for (size_t i = 0; i < n; i++) out[i] = (char)toupper((unsigned char)request[i]);
    return n;
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "example/service";
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

    /* Default options: a request queue of 16 slots; requests and replies up to 8192 bytes. */
    shmc_rep_options_t opts;
    shmc_rep_options_init(&opts);
    shmc_rep_t *rep = NULL;
    int rc = shmc_rep_open(name, &opts, &rep);
    if (rc != 0) {
        fprintf(stderr, "rep_example: cannot open '%s': %s\n", name, shmc_strerror(rc));
        return 2;
    }
    shmc_stats_t stats;
    stats.size = sizeof stats;
    shmc_rep_stats(rep, &stats);
    char *reply = malloc(stats.slot_size);
    if (!reply) {
        shmc_rep_close(rep);
        return 2;
    }
    printf("rep_example: serving %lld requests on '%s'\n", count, name);

    int status = 0;
    for (long long i = 0; i < count; i++) {
        /* The request lands in the replier's own buffer; it becomes the "current" request, which
         * the next shmc_rep_send answers. */
        int64_t n = shmc_rep_next(rep, 30 * SECOND);
        if (n < 0) {
            fprintf(stderr, "rep_example: request %lld of %lld: %s\n", i + 1, count, shmc_strerror((int)n));
            status = 3;
            break;
        }
        const void *request;
        size_t cap;
        shmc_rep_buffer(rep, &request, &cap);
        size_t len = answer(request, (size_t)n, reply, stats.slot_size);
        /* Never waits. SHMC_EEXPIRED: the requester gave up (timed out) meanwhile; not an error
         * for the service, the reply is simply discarded. */
        rc = shmc_rep_send(rep, reply, len);
        printf("rep_example: '%.*s' -> '%.*s'%s\n", (int)n, (const char *)request, (int)len, reply,
               rc == SHMC_EEXPIRED ? " (requester gone, discarded)" : "");
        fflush(stdout);
    }

    /* The requester may not have read the last reply yet: let the requesters leave first. */
    for (int waited_ms = 0; waited_ms < 5000; waited_ms++) {
        if (shmc_rep_stats(rep, &stats) != 0 || stats.subscribers == 0) break;
        sleep_ms(1);
    }
    free(reply);
    shmc_rep_close(rep);
    return status;
}
