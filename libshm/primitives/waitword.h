/*
 * The wait/wake primitive: spin briefly, then sleep on a futex word, with no lost wake-up.
 * Every blocking call of every pattern waits through shmi_wait().
 */
#ifndef SHMI_WAITWORD_H
#define SHMI_WAITWORD_H

#include "layout.h"

#include <stdint.h>

/* Called after a change the waiters wait for was published: wakes them if any sleep. */
void shmi_waitword_wake(shmi_waitword_t *w);

/* One attempt at the operation: 0 or an error ends the wait; SHMC_EAGAIN means "not yet". */
typedef int (*shmi_try_fn)(void *ctx);
/* Housekeeping run every SHMI_MAINTAIN_NS while waiting (reap the dead, follow restarts, heartbeat).
 * It returns 0, or an error that ends the wait. */
typedef int (*shmi_maintain_fn)(void *ctx);

#define SHMI_MAINTAIN_NS 10000000ll /* 10 ms: also the longest single futex sleep */

/* Calls try_once until it stops answering SHMC_EAGAIN: spinning for spin_ns, then sleeping on *w in
 * slices. timeout_ns: 0 = one attempt, negative = forever. Returns try_once's result or SHMC_ETIMEDOUT. */
int shmi_wait(shmi_waitword_t *w, shmi_try_fn try_once, shmi_maintain_fn maintain, void *ctx,
              int64_t timeout_ns, int64_t spin_ns);

#endif
