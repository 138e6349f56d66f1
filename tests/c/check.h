/* A minimal test harness: CHECK aborts the test with the failing expression and location. */
#ifndef SHMC_TEST_CHECK_H
#define SHMC_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(expr)                                                                   \
    do {                                                                              \
        if (!(expr)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr); \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

#define CHECK_RC(call, want)                                                                  \
    do {                                                                                      \
        int rc_ = (call);                                                                     \
        if (rc_ != (want)) {                                                                  \
            fprintf(stderr, "%s:%d: %s returned %d (%s), wanted %d\n", __FILE__, __LINE__, \
                    #call, rc_, shmc_strerror(rc_), (want));                                  \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

#define CHECK_OK(call) CHECK_RC(call, 0)

/* A channel name unique to this test process, so parallel tests never collide. */
static inline const char *unique_name(const char *stem)
{
    static char buf[128];
    snprintf(buf, sizeof buf, "ctest/%s/%d", stem, (int)getpid());
    return buf;
}

#endif
