/*
 * A channel: one named segment holding the header, the peer registry and a slot ring. Creation,
 * attachment with full validation of the header, stale detection and replacement, and closing are
 * written here once for every pattern.
 */
#ifndef SHMI_CHANNEL_H
#define SHMI_CHANNEL_H

#include "../platform/platform.h"
#include "layout.h"
#include "name.h"
#include "registry.h"
#include "ring.h"

typedef struct shmi_geometry {
    uint32_t pattern;
    uint32_t num_slots;
    uint32_t slot_size;
    uint32_t max_peers;
    uint32_t flags;
    uint64_t extra_bytes; /* the pattern's own region after the ring (STREAM), a multiple of 64; 0 if none */
} shmi_geometry_t;

typedef struct shmi_channel {
    shmi_segment_t seg;
    shmi_header_t *header;
    shmi_registry_t registry;
    shmi_ring_t ring;
    shmi_geometry_t geometry; /* validated copy: never re-read from the segment */
    uint64_t session_id;
    unsigned char *mailboxes; /* REQ/REP: max_peers mailboxes of shmi_mailbox_stride bytes; else NULL */
    unsigned char *extra;     /* the pattern's own region (geometry.extra_bytes), else NULL */
    char os_name[SHMI_OS_NAME_CAP];
    /* Mappings of earlier generations this endpoint followed away from (shmi_channel_replace),
     * kept reserved until shmi_channel_detach: views handed out of them may still be in use. */
    shmi_range_t *retired;
    size_t n_retired;
} shmi_channel_t;

/* Bytes per REQ/REP reply mailbox for slot_size (header and payload, cache-line aligned). */
uint32_t shmi_mailbox_stride(uint32_t slot_size);

/* The ring's next position to claim (seq_cst: the reads that follow are ordered after it). */
static inline uint64_t shmi_channel_head(shmi_channel_t *ch)
{
    return atomic_load_explicit(&ch->ring.ctrl->head, memory_order_seq_cst);
}

/* Adds SHMC_PAYLOAD_POOL where it pays by default: slots of SHMI_POOL_AUTO_BYTES or more. */
void shmi_geometry_choose_pool(shmi_geometry_t *g);
/* Checks a geometry given by a caller (SHMC_EINVAL when out of range). */
int shmi_geometry_check(const shmi_geometry_t *g);

/* Creates the segment os_name for geometry g with file mode `mode` and initialises it.
 * SHMC_EEXIST if the name exists. */
int shmi_channel_create(shmi_channel_t *ch, const char *os_name, const char *channel_name,
                        const shmi_geometry_t *g, uint32_t mode);
/* Maps an existing segment and validates everything in its header against the mapping.
 * SHMC_ENOENT if absent; SHMC_EAGAIN if its creator has not finished initialising it. */
int shmi_channel_attach(shmi_channel_t *ch, const char *os_name, uint32_t pattern, int readonly);
/* Maps and validates like attach, retrying SHMC_EAGAIN for up to wait_ns. */
int shmi_channel_attach_wait(shmi_channel_t *ch, const char *os_name, uint32_t pattern,
                             int64_t wait_ns);
/* Unmaps the channel, and the mappings it retired. */
void shmi_channel_detach(shmi_channel_t *ch);
/* Makes room to retire one more mapping (SHMC_ENOMEM: none), so that shmi_channel_replace, which
 * comes after a join to the new generation, cannot fail. */
int shmi_channel_reserve_retired(shmi_channel_t *ch);
/* Moves ch to `fresh`, a later generation of its name attached by the caller: leaves registry entry
 * `index` of the old one, retires its mapping (shmi_seg_retire: pointers into it stay valid memory
 * until ch is detached) and takes fresh over. Needs the room of shmi_channel_reserve_retired. */
void shmi_channel_replace(shmi_channel_t *ch, uint32_t index, shmi_channel_t *fresh);

/* Validates a mapped header (exposed for the inspector and the fuzz harness). */
int shmi_header_validate(const shmi_header_t *h, size_t mapped, uint32_t pattern,
                         shmi_geometry_t *out);

/* Marks the channel closed if no live peer of `keeper_role` remains, and unlinks its name if the
 * name still refers to this segment. Returns 1 if it closed it. */
int shmi_channel_close_if_last(shmi_channel_t *ch, uint32_t keeper_role);
/* 1 if nothing keeps the channel alive: it is closed or replaced, or no live peer of keeper_role is
 * registered and its creator is dead (a live creator may be between creating and joining). */
int shmi_channel_is_stale(shmi_channel_t *ch, uint32_t keeper_role);
/* Reads the creator's identity from a segment that may not be attachable (corrupt, another layout
 * version, or not initialised yet): 0 with *pid (0 if not written yet) and *start_time. */
int shmi_channel_creator(const char *os_name, int32_t *pid, uint64_t *start_time);
/* 1 if the segment os_name, which cannot be attached, was left by a creator that is dead: then it
 * may be removed and replaced. */
int shmi_channel_left_by_dead_creator(const char *os_name);
/* Claims the replacement of a stale channel (state -> REPLACED) and unlinks its name; gives it back
 * if a live keeper joined meanwhile. 1 if ours. */
int shmi_channel_claim_replacement(shmi_channel_t *ch, uint32_t keeper_role);

#endif
