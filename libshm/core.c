/* Library-wide entry points: version, error messages, names, and segment inspection/removal. */
#include "primitives/channel.h"
#include "shmcomm.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

uint32_t shmc_version(void) { return SHMC_VERSION; }

const char *shmc_strerror(int code)
{
    switch (code) {
    case SHMC_OK: return "success";
    case SHMC_EINVAL: return "invalid argument (NULL, zero or out of range: see the function's comment in shmcomm.h)";
    case SHMC_ENAME: return "invalid channel name (empty, too long, control characters, or '.'/'..' components)";
    case SHMC_ENOMEM: return "out of memory: this process could not allocate (check its memory limits)";
    case SHMC_ENOENT: return "no such channel (its creator has not created it yet, or has closed it)";
    case SHMC_EACCES: return "permission denied (the channel belongs to another user; see SHMC_SHARE_GROUP)";
    case SHMC_ENOSPC: return "the shared-memory filesystem is full (/dev/shm; Docker's default is 64 MB: use --shm-size)";
    case SHMC_ETIMEDOUT: return "timed out (wait longer, or check that the other side runs: python -m shmcomm ls)";
    case SHMC_EAGAIN: return "not ready (no message, or no room) and asked not to wait";
    case SHMC_EMSGSIZE: return "message larger than the channel's slot_size (create the channel with a larger slot_size)";
    case SHMC_ETRUNC: return "receive buffer smaller than the message (nothing was taken: retry with a buffer of the size returned)";
    case SHMC_ECLOSED: return "the channel was closed (this endpoint was closed or detached): open a new endpoint";
    case SHMC_EBADSEG: return "not a valid shmcomm segment (corrupt, or created by another program): python -m shmcomm clean removes it once its creator is dead";
    case SHMC_EVERSION: return "the segment was created by an incompatible shmcomm version (use one shmcomm version in every process)";
    case SHMC_EMISMATCH: return "the channel exists with other parameters or another pattern (use its creator's num_slots, slot_size, flags and max_peers, or another name)";
    case SHMC_EPEERS: return "too many processes attached to the channel (raise max_peers)";
    case SHMC_ESTALE: return "a loaned message was overwritten while it was in use (discard what was read; lossless channels pin loaned slots)";
    case SHMC_EOS: return "operating-system error (see shmc_last_os_error)";
    case SHMC_EEXIST: return "the segment already exists (another process created it at the same moment: open it again)";
    case SHMC_EPEERDEAD: return "the peer serving this call died (the replier that took the request, or every replier): send again once one runs";
    case SHMC_EEXPIRED: return "the requester no longer waits for this reply (it timed out, gave up or died): the reply was discarded";
    case SHMC_ESEQUENCE: return "calls out of order (a reply with no request taken, or a receive with no request sent): receive a request before replying, send one before receiving";
    case SHMC_ESCHEMA: return "the stream's schema is not the one expected (fields, dtypes or shapes differ), or a schema is invalid";
    case SHMC_EWRITERDEAD: return "the stream's writer died (every frame it committed was delivered first)";
    case SHMC_EREADERDEAD: return "a reader of the stream died (its registry entry was reaped)";
    case SHMC_EBUSY: return "the channel already has its one live writer (a STREAM, or a SHMC_SINGLE_WRITER channel)";
    case SHMC_ECHECKSUM: return "a frame's checksum does not match its data (corrupted in shared memory)";
    case SHMC_EWRITTEN: return "the stream's metadata was already written (it is write-once)";
    default: return "unknown shmcomm error code (is the library older than the caller's header?)";
    }
}

int shmc_last_os_error(void) { return shmi_get_os_error(); }

int shmc_os_name(const char *name, uint32_t pattern, char *out, size_t cap)
{
    return shmi_make_os_name(name, pattern, out, cap);
}

int shmc_segment_info(const char *os_name, shmc_segment_info_t *info)
{
    if (!os_name || !info || info->size < sizeof *info) return SHMC_EINVAL;
    if (!shmi_is_shmcomm_os_name(os_name)) return SHMC_ENAME;
    memset(info, 0, sizeof *info);
    info->size = sizeof *info;
    shmi_channel_t ch;
    int rc = shmi_channel_attach(&ch, os_name, 0, 1);
    if (rc) {
        /* Unusable: still say who made it and whether that process lives, so tools can judge it. */
        uint64_t start_time;
        if (shmi_channel_creator(os_name, &info->creator_pid, &start_time) == 0 && info->creator_pid) {
            info->creator_alive = shmi_process_alive(info->creator_pid, start_time);
            info->stale = !info->creator_alive;
        }
        return rc;
    }
    shmi_header_t *h = ch.header;
    info->pattern = ch.geometry.pattern;
    info->layout_version = SHMC_LAYOUT_VERSION;
    info->creator_pid = h->creator_pid;
    info->creator_alive = shmi_process_alive(h->creator_pid, h->creator_start_time);
    info->num_slots = ch.geometry.num_slots;
    info->slot_size = ch.geometry.slot_size;
    info->flags = ch.geometry.flags;
    info->segment_bytes = h->segment_bytes;
    info->head = atomic_load_explicit(&ch.ring.ctrl->head, memory_order_acquire);
    info->session_id = ch.session_id;
    info->state = atomic_load_explicit(&h->state, memory_order_acquire);
    info->publishers = shmi_registry_count(&ch.registry, SHMI_ROLE_KEEPER);
    info->subscribers = shmi_registry_count(&ch.registry, SHMI_ROLE_FOLLOWER);
    info->stale = shmi_channel_is_stale(&ch, SHMI_ROLE_KEEPER);
    /* The name in the segment is untrusted: copy at most its buffer and terminate it. */
    size_t n = strnlen(h->channel, sizeof h->channel - 1);
    memcpy(info->channel, h->channel, n);
    info->channel[n] = '\0';
    shmi_channel_detach(&ch);
    return 0;
}

/* The fields of shmc_peer_info_t up to `dropped`: the smallest entry a caller may pass. */
#define PEER_INFO_V1_BYTES (offsetof(shmc_peer_info_t, dropped) + sizeof(uint64_t))

int shmc_segment_peers(const char *os_name, shmc_peer_info_t *out, size_t max, size_t *count)
{
    if (!os_name || !count || (max && !out)) return SHMC_EINVAL;
    size_t stride = max ? out->size : sizeof *out;
    if (stride < PEER_INFO_V1_BYTES) return SHMC_EINVAL;
    if (!shmi_is_shmcomm_os_name(os_name)) return SHMC_ENAME;
    *count = 0;
    shmi_channel_t ch;
    int rc = shmi_channel_attach(&ch, os_name, 0, 1);
    if (rc) return rc;
    /* attach validated max_peers and the registry's extent against the mapping; the entries'
     * contents are untrusted values, only reported (the pid is checked before any use). */
    uint64_t now = shmi_now_ns();
    size_t found = 0;
    for (uint32_t i = 0; i < ch.registry.max_peers; i++) {
        shmi_peer_t *p = &ch.registry.peers[i];
        uint64_t owner = atomic_load_explicit(&p->owner, memory_order_acquire); /* pairs with join's CAS */
        uint32_t role = shmi_owner_role(owner);
        if (owner == 0 || (role != SHMI_ROLE_KEEPER && role != SHMI_ROLE_FOLLOWER)) continue;
        if (found < max) {
            shmc_peer_info_t e;
            memset(&e, 0, sizeof e);
            e.size = (uint32_t)(stride < sizeof e ? stride : sizeof e);
            e.index = i;
            e.pid = shmi_owner_pid(owner);
            e.role = role;
            e.alive = shmi_process_alive(e.pid, atomic_load_explicit(&p->start_time, memory_order_acquire));
            uint64_t beat = atomic_load_explicit(&p->heartbeat_ns, memory_order_relaxed);
            e.heartbeat_age_ns = now > beat ? now - beat : 0;
            e.cursor = atomic_load_explicit(&p->cursor, memory_order_relaxed);
            e.count = atomic_load_explicit(&p->count, memory_order_relaxed);
            e.dropped = atomic_load_explicit(&p->dropped, memory_order_relaxed);
            unsigned char *slot = (unsigned char *)out + found * stride;
            memcpy(slot, &e, e.size);
            if (stride > e.size) memset(slot + e.size, 0, stride - e.size);
        }
        found++;
    }
    shmi_channel_detach(&ch);
    *count = found;
    return 0;
}

int shmc_segment_unlink(const char *os_name)
{
    if (!os_name) return SHMC_EINVAL;
    if (!shmi_is_shmcomm_os_name(os_name)) return SHMC_ENAME;
    return shmi_seg_unlink(os_name);
}
