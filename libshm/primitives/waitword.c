#include "waitword.h"

#include "../platform/platform.h"
#include "shmcomm.h"

void shmi_waitword_wake(shmi_waitword_t *w)
{
    /* Pairs with the sleeper's seq_cst increment of `sleepers` before its re-check: either the
     * sleeper's re-check sees what we published, or we see it counted and bump the word. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&w->sleepers, memory_order_relaxed) == 0) return;
    atomic_fetch_add_explicit(&w->futex, 1, memory_order_seq_cst);
    shmi_futex_wake_all(&w->futex);
}

int shmi_wait(shmi_waitword_t *w, shmi_try_fn try_once, shmi_maintain_fn maintain, void *ctx,
              int64_t timeout_ns, int64_t spin_ns)
{
    int rc = try_once(ctx);
    if (rc != SHMC_EAGAIN || timeout_ns == 0) return rc;

    uint64_t start = shmi_now_ns();
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : start + (uint64_t)timeout_ns;
    uint64_t spin_until = start + (uint64_t)(spin_ns > 0 ? spin_ns : 0);
    uint64_t next_maintain = start + SHMI_MAINTAIN_NS;

    for (;;) {
        uint64_t now = shmi_now_ns();
        if (now < spin_until && now < deadline) {
            for (int i = 0; i < 64; i++) {
                shmi_cpu_relax();
                rc = try_once(ctx);
                if (rc != SHMC_EAGAIN) return rc;
            }
            continue;
        }
        if (now >= next_maintain && maintain) {
            rc = maintain(ctx);
            if (rc) return rc;
            next_maintain = now + SHMI_MAINTAIN_NS;
        }
        if (now >= deadline) return SHMC_ETIMEDOUT;

        /* Register as a sleeper, then re-check: a waker that published before our increment is
         * seen by the re-check; one that publishes after it sees sleepers > 0 and bumps futex. */
        atomic_fetch_add_explicit(&w->sleepers, 1, memory_order_seq_cst);
        /* The re-check below reads the condition with acquire loads; this fence makes the pairing
         * with the waker's fence formally sequentially consistent, not only on real hardware. */
        atomic_thread_fence(memory_order_seq_cst);
        uint32_t seen = atomic_load_explicit(&w->futex, memory_order_seq_cst);
        rc = try_once(ctx);
        if (rc == SHMC_EAGAIN) {
            uint64_t until = deadline < next_maintain ? deadline : next_maintain;
            if (until > now) shmi_futex_wait(&w->futex, seen, (int64_t)(until - now));
        }
        atomic_fetch_sub_explicit(&w->sleepers, 1, memory_order_seq_cst);
        if (rc != SHMC_EAGAIN) return rc;
        rc = try_once(ctx);
        if (rc != SHMC_EAGAIN) return rc;
    }
}
