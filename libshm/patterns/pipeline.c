/*
 * PUSH/PULL: a work queue. Pushers (one or several) claim slots as publishers do; pullers are
 * competing readers that share the ring's tail, so each message goes to exactly one puller. Writers
 * reuse a slot only once a puller has copied its message out, so nothing is lost; a puller that dies
 * while taking a message gives it back (the slot word names it), and a pusher that dies while writing
 * one leaves a slot the pullers skip.
 */
#include "../primitives/reader.h"
#include "../primitives/writer.h"
#include "shmcomm.h"

#include <stdlib.h>
#include <string.h>

struct shmc_push {
    shmi_writer_t w;
};

struct shmc_pull {
    shmi_reader_t r;
};

void shmc_push_options_init(shmc_push_options_t *o)
{
    if (!o) return;
    shmc_pub_options_init(o);
    o->num_slots = 128;
}

void shmc_pull_options_init(shmc_pull_options_t *o) { shmc_sub_options_init(o); }

/* ------------------------------------------------------------------ pusher */

int shmc_push_open(const char *name, const shmc_push_options_t *opts, shmc_push_t **out)
{
    if (!out) return SHMC_EINVAL;
    *out = NULL;
    shmc_push_options_t o;
    shmc_push_options_init(&o);
    char os_name[SHMI_OS_NAME_CAP];
    shmi_geometry_t g;
    int rc = shmi_keeper_args(name, SHMC_PATTERN_PIPELINE, opts, &o,
                              SHMC_SINGLE_WRITER | SHMC_PAYLOAD_POOL | SHMC_SHARE_GROUP | SHMC_SHARE_ALL, os_name, &g);
    if (rc) return rc;
    shmc_push_t *push = calloc(1, sizeof *push);
    if (!push) return SHMC_ENOMEM;
    rc = shmi_writer_open_keeper(&push->w, os_name, name, &g, shmi_mode_for(o.flags));
    if (rc) {
        free(push);
        return rc;
    }
    *out = push;
    return 0;
}

int shmc_push_send(shmc_push_t *push, const void *data, size_t len, int64_t timeout_ns)
{
    if (!push || (!data && len)) return SHMC_EINVAL;
    return shmi_writer_send(&push->w, data, len, timeout_ns);
}

int shmc_push_try_send(shmc_push_t *push, const void *data, size_t len)
{
    return shmc_push_send(push, data, len, 0);
}

int shmc_push_send_many(shmc_push_t *push, const void *data, const uint64_t *lens, size_t count,
                        size_t *sent, int64_t timeout_ns)
{
    if (!push || !sent || (count && (!data || !lens))) return SHMC_EINVAL;
    return shmi_writer_send_many(&push->w, data, lens, count, sent, timeout_ns);
}

int shmc_push_stats(shmc_push_t *push, shmc_stats_t *s)
{
    if (!push || !s || s->size < sizeof *s) return SHMC_EINVAL;
    if (push->w.detached) return SHMC_ECLOSED;
    shmi_writer_stats(&push->w, s);
    return 0;
}

int shmc_push_close(shmc_push_t *push)
{
    if (!push) return 0;
    shmi_writer_leave(&push->w);
    shmi_channel_detach(&push->w.ch);
    free(push);
    return 0;
}

/* ------------------------------------------------------------------ puller */

static int pull_join(void *ctx, shmi_channel_t *ch, uint32_t *index)
{
    (void)ctx;
    return shmi_registry_join(&ch->registry, SHMI_ROLE_FOLLOWER, UINT64_MAX, shmi_recover_claims_of,
                              ch, index);
}

int shmc_pull_open(const char *name, const shmc_pull_options_t *opts, shmc_pull_t **out)
{
    if (!out) return SHMC_EINVAL;
    *out = NULL;
    shmc_pull_options_t o;
    shmc_pull_options_init(&o);
    char os_name[SHMI_OS_NAME_CAP];
    int rc = shmi_follower_args(name, SHMC_PATTERN_PIPELINE, opts, &o, os_name);
    if (rc) return rc;
    shmc_pull_t *pull = calloc(1, sizeof *pull);
    if (!pull) return SHMC_ENOMEM;
    rc = shmi_follower_open(&pull->r.ch, os_name, SHMC_PATTERN_PIPELINE, o.connect_timeout_ns,
                            pull_join, pull, &pull->r.index);
    if (rc == 0) {
        rc = shmi_reader_setup(&pull->r, SHMI_ROLE_FOLLOWER, (int64_t)o.spin_us * 1000, shmi_reader_take,
                               pull_join);
        if (rc) shmi_reader_close(&pull->r);
    }
    if (rc) {
        free(pull);
        return rc;
    }
    *out = pull;
    return 0;
}

int shmc_pull_recv(shmc_pull_t *pull, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    if (!pull || !len || (!buf && cap)) return SHMC_EINVAL;
    return shmi_reader_receive(&pull->r, buf, cap, len, timeout_ns);
}

int64_t shmc_pull_next(shmc_pull_t *pull, int64_t timeout_ns)
{
    if (!pull) return SHMC_EINVAL;
    return shmi_reader_next(&pull->r, timeout_ns);
}

int shmc_pull_buffer(shmc_pull_t *pull, const void **buf, size_t *cap)
{
    if (!pull || !buf || !cap) return SHMC_EINVAL;
    *buf = pull->r.own_buf;
    *cap = pull->r.own_cap;
    return 0;
}

int shmc_pull_recv_many(shmc_pull_t *pull, void *buf, size_t cap, size_t *lens, size_t max,
                        size_t *count, int64_t timeout_ns)
{
    if (!pull || !buf || !lens || !count || max == 0) return SHMC_EINVAL;
    return shmi_reader_receive_many(&pull->r, buf, cap, lens, max, count, timeout_ns);
}

int shmc_pull_stats(shmc_pull_t *pull, shmc_stats_t *s)
{
    if (!pull || !s || s->size < sizeof *s) return SHMC_EINVAL;
    if (pull->r.detached) return SHMC_ECLOSED;
    shmi_channel_stats(&pull->r.ch, s);
    s->cursor = s->tail;
    s->received = pull->r.received;
    s->dropped = pull->r.dropped;
    s->reconnects = pull->r.reconnects;
    s->restored = pull->r.restored;
    return 0;
}

int shmc_pull_pusher_alive(shmc_pull_t *pull)
{
    if (!pull) return 0;
    return shmi_reader_keeper_alive(&pull->r);
}

int shmc_pull_close(shmc_pull_t *pull)
{
    if (!pull) return 0;
    shmi_reader_close(&pull->r);
    free(pull);
    return 0;
}
