/*
 * req_example - send COUNT requests to service NAME and check every reply: even requests are text
 * ("hello 4", answered "HELLO 4"), odd ones a number ("5", answered "10").
 *
 *   usage: req_example [NAME [COUNT]]        (defaults: example/service, 10)
 *
 * Waits up to 10 s for a replier (rep_example) to open the service, and up to 5 s for each reply.
 * A replier that dies while it handles our request is reported at once (SHMC_EPEERDEAD), not after
 * the timeout; a restarted replier is followed by itself.
 *
 * Exit status: 0 every reply right, 1 bad arguments, 2 no service within 10 s (or it could not be
 * opened), 3 a request failed (no reply within 5 s, replier died), 4 a reply was wrong.
 */
#include "shmcomm.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECOND 1000000000ll

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

    shmc_req_options_t opts;
    shmc_req_options_init(&opts);
    opts.connect_timeout_ns = 10 * SECOND; /* the replier may start after us */
    shmc_req_t *req = NULL;
    int rc = shmc_req_open(name, &opts, &req);
    if (rc != 0) {
        fprintf(stderr, "req_example: cannot open '%s': %s\n", name, shmc_strerror(rc));
        return 2;
    }
    printf("req_example: sending %lld requests to '%s'\n", count, name);

    int status = 0;
    for (long long i = 0; i < count && status == 0; i++) {
        char request[64], expected[64];
        int len;
        if (i % 2 == 0) {
            len = snprintf(request, sizeof request, "hello %lld", i);
            for (int k = 0; k <= len; k++) expected[k] = (char)toupper((unsigned char)request[k]);
        } else {
            len = snprintf(request, sizeof request, "%lld", i);
            snprintf(expected, sizeof expected, "%lld", 2 * i);
        }
        /* Send and wait for the reply in one call; the reply lands in the requester's own buffer
         * and n is its size (or a negative SHMC_E* code). */
        int64_t n = shmc_req_request(req, request, (size_t)len, 5 * SECOND);
        if (n < 0) {
            fprintf(stderr, "req_example: request '%s': %s\n", request, shmc_strerror((int)n));
            status = 3;
            break;
        }
        const void *reply;
        size_t cap;
        shmc_req_buffer(req, &reply, &cap);
        int right = (size_t)n == strlen(expected) && memcmp(reply, expected, (size_t)n) == 0;
        printf("req_example: '%s' -> '%.*s'%s\n", request, (int)n, (const char *)reply,
               right ? "" : "  WRONG");
        fflush(stdout);
        if (!right) status = 4;
    }
    if (status == 0) printf("req_example: done, %lld replies right\n", count);
    shmc_req_close(req);
    return status;
}
