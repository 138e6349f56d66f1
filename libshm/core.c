/* Library-wide entry points: version, error messages, names, and segment inspection/removal. */
#include "primitives/channel.h"
#include "shmcomm.h"

#include <stdio.h>
#include <string.h>

uint32_t shmc_version(void) { return SHMC_VERSION; }

const char *shmc_strerror(int code)
{
    switch (code) {
    case SHMC_OK: return "success";
    case SHMC_EINVAL: return "invalid argument";
    case SHMC_ENAME: return "invalid channel name (empty, too long, control characters, or '.'/'..' components)";
    case SHMC_ENOMEM: return "out of memory";
    case SHMC_ENOENT: return "no such channel";
    case SHMC_EACCES: return "permission denied (the channel belongs to another user; see SHMC_SHARE_GROUP)";
    case SHMC_ENOSPC: return "the shared-memory filesystem is full (/dev/shm; Docker's default is 64 MB: use --shm-size)";
    case SHMC_ETIMEDOUT: return "timed out";
    case SHMC_EAGAIN: return "not ready (no message, or no room) and asked not to wait";
    case SHMC_EMSGSIZE: return "message larger than the channel's slot_size";
    case SHMC_ETRUNC: return "receive buffer smaller than the message";
    case SHMC_ECLOSED: return "the channel was closed";
    case SHMC_EBADSEG: return "not a valid shmcomm segment (corrupt, or created by another program)";
    case SHMC_EVERSION: return "the segment was created by an incompatible shmcomm version";
    case SHMC_EMISMATCH: return "the channel exists with other parameters or another pattern";
    case SHMC_EPEERS: return "too many processes attached to the channel (raise max_peers)";
    case SHMC_ESTALE: return "a loaned message was overwritten while it was in use";
    case SHMC_EOS: return "operating-system error (see shmc_last_os_error)";
    case SHMC_EEXIST: return "the segment already exists";
    case SHMC_EPEERDEAD: return "the peer serving this call died (the replier that took the request, or every replier)";
    case SHMC_EEXPIRED: return "the requester no longer waits for this reply (it timed out, gave up or died): the reply was discarded";
    case SHMC_ESEQUENCE: return "calls out of order (a reply with no request taken, or a receive with no request sent)";
    default: return "unknown shmcomm error code";
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

int shmc_segment_unlink(const char *os_name)
{
    if (!os_name) return SHMC_EINVAL;
    if (!shmi_is_shmcomm_os_name(os_name)) return SHMC_ENAME;
    return shmi_seg_unlink(os_name);
}
