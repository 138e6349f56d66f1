/*
 * STREAM: typed frames from one writer to any number of readers, on the broadcast ring.
 *
 * The segment is an ordinary channel (header, registry, ring; pattern SHMC_PATTERN_STREAM) plus the
 * stream's own region (primitives/stream_layout.h): the schema, the write-once metadata block, and
 * one entry per registry index with the reader's pin and its control ring back to the writer. Each
 * slot holds one frame: a frame header (sequence number, timestamp, used bytes per field, checksum)
 * and the fields at 64-byte aligned offsets. The writer is the channel's keeper at registry entry 0
 * (one writer per stream); readers are followers with private cursors.
 *
 * Reading in place, until release:
 *  - lossless: a reader's cursor stays on the frame it holds, and the writer never claims a slot
 *    beyond the slowest cursor + num_slots, so a held frame cannot be overwritten.
 *  - latest-frame: the writer never waits for readers. A reader pins the position it holds in its
 *    entry (`holding`), then re-checks the slot word; the writer, after claiming a slot, checks the
 *    pins and gives the position up unwritten (readers skip it) if a reader holds that slot. Both
 *    sides put a seq_cst fence between their store and their load (Dekker): at least one sees the
 *    other, so a reader never reads a slot the writer writes. num_slots >= max_readers + 2 leaves the
 *    writer a free slot whatever the readers pin.
 */
#include "../primitives/stream_layout.h"
#include "../primitives/waitword.h"
#include "../primitives/writer.h"
#include "shmcomm.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define HOUSEKEEPING_NS 100000000ull      /* the writer reaps dead readers this often */
#define MAX_FRAME_BYTES (1ull << 30)      /* a slot holds at most 1 GiB */
#define WRITER_INDEX 0u                   /* the writer's registry entry */

static uint64_t round64(uint64_t v) { return (v + 63) / 64 * 64; }

/* ------------------------------------------------------------------ XXH64 (the frame checksum) */

#define XXH_P1 11400714785074694791ull
#define XXH_P2 14029467366897019727ull
#define XXH_P3 1609587929392839161ull
#define XXH_P4 9650029242287828579ull
#define XXH_P5 2870177450012600261ull

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static uint64_t read64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static uint32_t read32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static uint64_t xxh_round(uint64_t acc, uint64_t input)
{
    acc += input * XXH_P2;
    return rotl64(acc, 31) * XXH_P1;
}

static uint64_t xxh_merge(uint64_t acc, uint64_t val)
{
    acc ^= xxh_round(0, val);
    return acc * XXH_P1 + XXH_P4;
}

/* Streaming XXH64 (seed 0), so a frame's fields hash as one run of bytes without a copy. */
typedef struct xxh64 {
    uint64_t v[4];
    uint64_t total;
    unsigned char buf[32];
    size_t buffered;
} xxh64_t;

static void xxh64_init(xxh64_t *s)
{
    s->v[0] = XXH_P1 + XXH_P2;
    s->v[1] = XXH_P2;
    s->v[2] = 0;
    s->v[3] = 0 - XXH_P1;
    s->total = 0;
    s->buffered = 0;
}

static const unsigned char *xxh64_stripes(xxh64_t *s, const unsigned char *p, const unsigned char *end)
{
    while (end - p >= 32) {
        s->v[0] = xxh_round(s->v[0], read64(p));
        s->v[1] = xxh_round(s->v[1], read64(p + 8));
        s->v[2] = xxh_round(s->v[2], read64(p + 16));
        s->v[3] = xxh_round(s->v[3], read64(p + 24));
        p += 32;
    }
    return p;
}

static void xxh64_update(xxh64_t *s, const void *data, size_t len)
{
    const unsigned char *p = data, *end = p + len;
    s->total += len;
    if (s->buffered) {
        size_t take = 32 - s->buffered < len ? 32 - s->buffered : len;
        memcpy(s->buf + s->buffered, p, take);
        s->buffered += take;
        p += take;
        if (s->buffered < 32) return;
        xxh64_stripes(s, s->buf, s->buf + 32);
        s->buffered = 0;
    }
    p = xxh64_stripes(s, p, end);
    s->buffered = (size_t)(end - p);
    if (s->buffered) memcpy(s->buf, p, s->buffered);
}

static uint64_t xxh64_digest(const xxh64_t *s)
{
    uint64_t h;
    if (s->total >= 32) {
        h = rotl64(s->v[0], 1) + rotl64(s->v[1], 7) + rotl64(s->v[2], 12) + rotl64(s->v[3], 18);
        for (int i = 0; i < 4; i++) h = xxh_merge(h, s->v[i]);
    } else {
        h = s->v[2] + XXH_P5;
    }
    h += s->total;
    const unsigned char *p = s->buf, *end = s->buf + s->buffered;
    while (end - p >= 8) {
        h ^= xxh_round(0, read64(p));
        h = rotl64(h, 27) * XXH_P1 + XXH_P4;
        p += 8;
    }
    if (end - p >= 4) {
        h ^= (uint64_t)read32(p) * XXH_P1;
        h = rotl64(h, 23) * XXH_P2 + XXH_P3;
        p += 4;
    }
    while (p < end) {
        h ^= (*p++) * XXH_P5;
        h = rotl64(h, 11) * XXH_P1;
    }
    h ^= h >> 33;
    h *= XXH_P2;
    h ^= h >> 29;
    h *= XXH_P3;
    h ^= h >> 32;
    return h;
}

uint64_t shmc_stream_checksum(const void *data, size_t len)
{
    xxh64_t s;
    xxh64_init(&s);
    if (data && len) xxh64_update(&s, data, len);
    return xxh64_digest(&s);
}

/* ------------------------------------------------------------------ schema */

static uint32_t dtype_size(uint32_t dtype)
{
    switch (dtype) {
    case SHMC_DTYPE_BOOL: case SHMC_DTYPE_I8: case SHMC_DTYPE_U8: return 1;
    case SHMC_DTYPE_I16: case SHMC_DTYPE_U16: case SHMC_DTYPE_F16: case SHMC_DTYPE_BF16: return 2;
    case SHMC_DTYPE_I32: case SHMC_DTYPE_U32: case SHMC_DTYPE_F32: return 4;
    case SHMC_DTYPE_I64: case SHMC_DTYPE_U64: case SHMC_DTYPE_F64: return 8;
    default: return 0;
    }
}

/* Bytes of the frame header: the fixed part and the length table, padded so that the data that
 * follows starts 64-byte aligned (slot payloads start 32 bytes into a 64-byte aligned slot). */
static uint32_t frame_header_bytes(uint32_t nfields)
{
    return (uint32_t)(round64(SHMI_SLOT_HEADER_BYTES + SHMI_FRAME_FIXED_BYTES + 4ull * nfields) -
                      SHMI_SLOT_HEADER_BYTES);
}

/* Validates fields[n] (names, dtypes, shapes) and writes the normalised schema (zeroed name tails and
 * unused dims, offsets, capacities) to out[n]; *capacity the sum of the fields' sizes, *data_bytes
 * the bytes they take in a frame (each rounded up to 64). SHMC_ESCHEMA if invalid, SHMC_EMSGSIZE if
 * a frame would exceed 1 GiB. Works on untrusted input (a segment's descriptors) as well. */
static int schema_build(const shmc_stream_field_t *fields, uint32_t n, shmc_stream_field_t *out,
                        uint64_t *capacity, uint64_t *data_bytes)
{
    if (n < 1 || n > SHMC_STREAM_MAX_FIELDS) return SHMC_ESCHEMA;
    uint64_t offset = 0, total = 0;
    for (uint32_t i = 0; i < n; i++) {
        const shmc_stream_field_t *f = &fields[i];
        shmc_stream_field_t *o = &out[i];
        memset(o, 0, sizeof *o);
        size_t len = strnlen(f->name, sizeof f->name);
        if (len == 0 || len >= sizeof f->name) return SHMC_ESCHEMA;
        memcpy(o->name, f->name, len);
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(out[j].name, o->name) == 0) return SHMC_ESCHEMA;
        uint32_t item = dtype_size(f->dtype);
        if (!item || f->ndim > SHMC_STREAM_MAX_DIMS) return SHMC_ESCHEMA;
        o->dtype = f->dtype;
        o->ndim = f->ndim;
        uint64_t bytes = item;
        for (uint32_t d = 0; d < f->ndim; d++) {
            uint64_t dim = f->shape[d];
            if (dim < 1) return SHMC_ESCHEMA;
            if (dim > MAX_FRAME_BYTES || bytes > MAX_FRAME_BYTES / dim) return SHMC_EMSGSIZE;
            bytes *= dim;
            o->shape[d] = dim;
        }
        o->offset = offset;
        o->capacity = bytes;
        offset += round64(bytes);
        total += bytes;
        if (offset > MAX_FRAME_BYTES) return SHMC_EMSGSIZE;
    }
    if (frame_header_bytes(n) + offset > MAX_FRAME_BYTES) return SHMC_EMSGSIZE;
    *capacity = total;
    *data_bytes = offset;
    return 0;
}

static int schema_equal(const shmc_stream_field_t *a, const shmc_stream_field_t *b, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (strcmp(a[i].name, b[i].name) != 0 || a[i].dtype != b[i].dtype || a[i].ndim != b[i].ndim)
            return 0;
        for (uint32_t d = 0; d < a[i].ndim; d++)
            if (a[i].shape[d] != b[i].shape[d]) return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ the stream region */

static uint64_t reader_stride(uint32_t control_cap)
{
    return SHMI_STREAM_ENTRY_BYTES + round64(control_cap);
}

static uint64_t region_bytes(uint32_t nfields, uint32_t metadata_cap, uint32_t control_cap,
                             uint32_t max_entries)
{
    return SHMI_STREAM_HEADER_BYTES + (uint64_t)nfields * SHMI_STREAM_FIELD_BYTES + round64(metadata_cap) +
           (uint64_t)max_entries * reader_stride(control_cap);
}

/* What a process knows about a stream segment, validated once at attach. */
typedef struct stream_view {
    shmi_stream_header_t *hdr;
    unsigned char *metadata;
    unsigned char *entries;
    uint32_t nfields, flags, metadata_cap, control_cap, max_entries, frame_header_bytes;
    uint64_t reader_stride, frame_capacity;
    shmc_stream_field_t schema[SHMC_STREAM_MAX_FIELDS]; /* validated private copy */
} stream_view_t;

static shmi_stream_entry_t *entry_at(const stream_view_t *v, uint32_t i)
{
    return (shmi_stream_entry_t *)(v->entries + (uint64_t)i * v->reader_stride);
}

static unsigned char *control_data(const stream_view_t *v, uint32_t i)
{
    return v->entries + (uint64_t)i * v->reader_stride + SHMI_STREAM_ENTRY_BYTES;
}

/* Validates the stream region of an attached channel and fills *v. SHMC_EAGAIN while its writer is
 * still writing it (magic not set), SHMC_EBADSEG if anything disagrees. Only reads the segment. */
static int view_bind(stream_view_t *v, shmi_channel_t *ch)
{
    memset(v, 0, offsetof(stream_view_t, schema));
    uint64_t bytes = ch->geometry.extra_bytes;
    if (!ch->extra || bytes < SHMI_STREAM_HEADER_BYTES) return SHMC_EBADSEG;
    shmi_stream_header_t *h = (shmi_stream_header_t *)ch->extra;
    /* Acquire: pairs with the writer's release store of the magic; the region below is complete. */
    uint64_t magic = atomic_load_explicit(&h->magic, memory_order_acquire);
    if (magic == 0) return SHMC_EAGAIN;
    if (magic != SHMI_STREAM_MAGIC || h->version != SHMI_STREAM_VERSION) return SHMC_EBADSEG;
    uint32_t n = h->nfields, mcap = h->metadata_cap, ccap = h->control_cap, max = h->max_entries;
    if (n < 1 || n > SHMC_STREAM_MAX_FIELDS || mcap > SHMI_STREAM_MAX_METADATA ||
        ccap < SHMI_STREAM_MIN_CONTROL || ccap > SHMI_STREAM_MAX_CONTROL || ccap % 8 ||
        max != ch->geometry.max_peers)
        return SHMC_EBADSEG;
    if ((h->flags & ~(uint32_t)(SHMC_LOSSLESS | SHMC_STREAM_CHECKSUM)) ||
        h->flags != (ch->geometry.flags & (SHMC_LOSSLESS | SHMC_STREAM_CHECKSUM)))
        return SHMC_EBADSEG;
    if (region_bytes(n, mcap, ccap, max) != bytes) return SHMC_EBADSEG;
    uint64_t metadata_offset = SHMI_STREAM_HEADER_BYTES + (uint64_t)n * SHMI_STREAM_FIELD_BYTES;
    uint64_t readers_offset = metadata_offset + round64(mcap);
    if (h->metadata_offset != metadata_offset || h->readers_offset != readers_offset ||
        h->reader_stride != reader_stride(ccap) || h->frame_header_bytes != frame_header_bytes(n))
        return SHMC_EBADSEG;
    /* The descriptors are copied first, then checked: what we use is what we checked. */
    shmc_stream_field_t raw[SHMC_STREAM_MAX_FIELDS];
    memcpy(raw, ch->extra + SHMI_STREAM_HEADER_BYTES, (size_t)n * sizeof raw[0]);
    uint64_t capacity, data_bytes;
    if (schema_build(raw, n, v->schema, &capacity, &data_bytes)) return SHMC_EBADSEG;
    for (uint32_t i = 0; i < n; i++)
        if (raw[i].offset != v->schema[i].offset || raw[i].capacity != v->schema[i].capacity ||
            memcmp(raw[i].name, v->schema[i].name, sizeof raw[i].name) != 0)
            return SHMC_EBADSEG;
    if (capacity != h->frame_capacity || frame_header_bytes(n) + data_bytes != ch->geometry.slot_size)
        return SHMC_EBADSEG;
    v->hdr = h;
    v->metadata = ch->extra + metadata_offset;
    v->entries = ch->extra + readers_offset;
    v->nfields = n;
    v->flags = h->flags;
    v->metadata_cap = mcap;
    v->control_cap = ccap;
    v->max_entries = max;
    v->frame_header_bytes = frame_header_bytes(n);
    v->reader_stride = reader_stride(ccap);
    v->frame_capacity = capacity;
    return 0;
}

/* The writer fills the region of a channel it just created (its magic last, release). */
static void region_init(shmi_channel_t *ch, const shmc_stream_field_t *schema, uint32_t n,
                        uint64_t capacity, uint32_t flags, uint32_t mcap, uint32_t ccap)
{
    shmi_stream_header_t *h = (shmi_stream_header_t *)ch->extra;
    h->version = SHMI_STREAM_VERSION;
    h->nfields = n;
    h->frame_header_bytes = frame_header_bytes(n);
    h->flags = flags;
    h->metadata_cap = mcap;
    h->control_cap = ccap;
    h->reader_stride = (uint32_t)reader_stride(ccap);
    h->max_entries = ch->geometry.max_peers;
    h->frame_capacity = capacity;
    h->metadata_offset = SHMI_STREAM_HEADER_BYTES + (uint64_t)n * SHMI_STREAM_FIELD_BYTES;
    h->readers_offset = h->metadata_offset + round64(mcap);
    memcpy(ch->extra + SHMI_STREAM_HEADER_BYTES, schema, (size_t)n * sizeof schema[0]);
    /* Release: a reader that sees the magic (acquire, view_bind) sees everything above. */
    atomic_store_explicit(&h->magic, SHMI_STREAM_MAGIC, memory_order_release);
}

static void copy_schema(const stream_view_t *v, shmc_stream_field_t *out, uint32_t max, uint32_t *count)
{
    uint32_t n = v->nfields < max ? v->nfields : max;
    if (n) memcpy(out, v->schema, (size_t)n * sizeof out[0]);
    *count = v->nfields;
}

/* The readers of a stream as seen now (writer and inspector). */
static uint32_t list_readers(shmi_channel_t *ch, const stream_view_t *v, shmc_stream_reader_info_t *out,
                             uint32_t max)
{
    uint64_t now = shmi_now_ns();
    uint32_t found = 0;
    for (uint32_t i = 0; i < v->max_entries; i++) {
        shmi_peer_t *p = &ch->registry.peers[i];
        uint64_t owner = atomic_load_explicit(&p->owner, memory_order_acquire); /* pairs with join's CAS */
        if (!owner || shmi_owner_role(owner) != SHMI_ROLE_FOLLOWER) continue;
        if (found < max) {
            shmi_stream_entry_t *e = entry_at(v, i);
            shmc_stream_reader_info_t *o = &out[found];
            memset(o, 0, sizeof *o);
            o->reader_id = i;
            o->pid = shmi_owner_pid(owner);
            o->alive = shmi_process_alive(o->pid, atomic_load_explicit(&p->start_time, memory_order_acquire));
            uint64_t beat = atomic_load_explicit(&p->heartbeat_ns, memory_order_relaxed);
            o->heartbeat_age_ns = now > beat ? now - beat : 0;
            o->cursor = atomic_load_explicit(&p->cursor, memory_order_relaxed);
            /* Statistics: snapshots, relaxed (nothing else is read through them). */
            o->holding = atomic_load_explicit(&e->holding, memory_order_relaxed) != 0;
            o->frames_seen = atomic_load_explicit(&e->frames_seen, memory_order_relaxed);
            o->last_seq = atomic_load_explicit(&e->last_seq, memory_order_relaxed);
            o->dropped = atomic_load_explicit(&e->dropped, memory_order_relaxed);
            uint64_t head = atomic_load_explicit(&e->control_head, memory_order_relaxed);
            uint64_t tail = atomic_load_explicit(&e->control_tail, memory_order_relaxed);
            uint64_t pending = head - tail;
            o->control_pending = pending <= v->control_cap ? pending : 0;
        }
        found++;
    }
    return found;
}

/* ------------------------------------------------------------------ options */

void shmc_stream_options_init(shmc_stream_options_t *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
    o->max_readers = 4;
    o->metadata_cap = 4096;
    o->control_cap = 4096;
}

void shmc_stream_reader_options_init(shmc_stream_reader_options_t *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
    o->spin_us = 50;
    o->connect_timeout_ns = 5000000000ll;
}

/* ------------------------------------------------------------------ writer */

struct shmc_stream_writer {
    shmi_writer_t w;
    stream_view_t v;
    uint32_t report_deaths; /* SHMC_STREAM_READER_DEATH */
    int loaned;
    uint64_t loan_pos;
    uint64_t next_seq;
    uint64_t skipped;         /* positions given up because a reader pinned their slot */
    uint64_t deaths_reported; /* reader_deaths already turned into SHMC_EREADERDEAD (or ignored) */
    uint64_t evicted;
    uint64_t control_received;
    uint64_t next_housekeeping;
    uint32_t control_next;    /* the reader whose control ring poll_control looks at first */
    void *field_data[SHMC_STREAM_MAX_FIELDS];
    uint64_t field_caps[SHMC_STREAM_MAX_FIELDS];
};

/* Frees the stream entries of readers that are gone without leaving (their registry entry was reaped
 * or taken by another process), counting each death once (the CAS decides who counts). */
static void collect_dead_entries(shmi_channel_t *ch, const stream_view_t *v)
{
    for (uint32_t i = 0; i < v->max_entries; i++) {
        shmi_stream_entry_t *e = entry_at(v, i);
        uint64_t mine = atomic_load_explicit(&e->owner, memory_order_acquire);
        if (!mine) continue;
        if (atomic_load_explicit(&ch->registry.peers[i].owner, memory_order_acquire) == mine) continue;
        /* acq_rel: a joiner that takes the entry after us sees it free; the pin goes with it. */
        if (atomic_compare_exchange_strong_explicit(&e->owner, &mine, 0, memory_order_acq_rel,
                                                    memory_order_relaxed)) {
            atomic_store_explicit(&e->holding, 0, memory_order_release);
            atomic_fetch_add_explicit(&v->hdr->reader_deaths, 1, memory_order_relaxed);
        }
    }
}

static void writer_housekeeping(shmc_stream_writer_t *s, int force)
{
    uint64_t now = shmi_now_ns();
    if (!force && now < s->next_housekeeping) return;
    s->next_housekeeping = now + HOUSEKEEPING_NS;
    shmi_channel_t *ch = &s->w.ch;
    shmi_registry_heartbeat(&ch->registry, s->w.index);
    if (shmi_registry_reap(&ch->registry, shmi_recover_claims_of, ch))
        s->w.cached_min = UINT64_MAX; /* a reaped reader no longer holds a lossless writer back */
    collect_dead_entries(ch, &s->v);
}

/* SHMC_EREADERDEAD once per death since the last report, when the writer asked for it. */
static int reader_death_news(shmc_stream_writer_t *s)
{
    collect_dead_entries(&s->w.ch, &s->v);
    uint64_t deaths = atomic_load_explicit(&s->v.hdr->reader_deaths, memory_order_relaxed);
    if (deaths == s->deaths_reported) return 0;
    s->deaths_reported = deaths;
    return s->report_deaths ? SHMC_EREADERDEAD : 0;
}

int shmc_stream_writer_open(const char *name, const shmc_stream_field_t *fields, uint32_t nfields,
                            const shmc_stream_options_t *opts, shmc_stream_writer_t **out)
{
    if (!out) return SHMC_EINVAL;
    *out = NULL;
    if (!fields) return SHMC_EINVAL;
    shmc_stream_options_t o;
    shmc_stream_options_init(&o);
    int rc = shmi_copy_options(&o, sizeof o, opts, sizeof o);
    if (rc) return rc;
    const uint32_t known = SHMC_LOSSLESS | SHMC_SHARE_GROUP | SHMC_SHARE_ALL | SHMC_STREAM_CHECKSUM |
                           SHMC_STREAM_READER_DEATH;
    if (o.flags & ~known) return SHMC_EINVAL;
    if (o.max_readers < 1 || o.max_readers > SHMI_MAX_PEERS - 1) return SHMC_EINVAL;
    if (o.metadata_cap > SHMI_STREAM_MAX_METADATA) return SHMC_EINVAL;
    if (o.control_cap < SHMI_STREAM_MIN_CONTROL || o.control_cap > SHMI_STREAM_MAX_CONTROL ||
        o.control_cap % 8)
        return SHMC_EINVAL;
    int lossless = (o.flags & SHMC_LOSSLESS) != 0;
    uint32_t num_slots = o.num_slots ? o.num_slots : (lossless ? 4 : o.max_readers + 2);
    if (num_slots < 2 || num_slots > 65536) return SHMC_EINVAL;
    /* Latest-frame: every reader may pin a slot; the writer needs one to write and one complete. */
    if (!lossless && num_slots < o.max_readers + 2) return SHMC_EINVAL;
    char os_name[SHMI_OS_NAME_CAP];
    rc = shmi_make_os_name(name, SHMC_PATTERN_STREAM, os_name, sizeof os_name);
    if (rc) return rc;

    shmc_stream_writer_t *s = calloc(1, sizeof *s);
    if (!s) return SHMC_ENOMEM;
    uint64_t capacity, data_bytes;
    rc = schema_build(fields, nfields, s->v.schema, &capacity, &data_bytes);
    if (rc) {
        free(s);
        return rc;
    }
    uint32_t stream_flags = o.flags & (SHMC_LOSSLESS | SHMC_STREAM_CHECKSUM);
    uint32_t max_peers = o.max_readers + 1;
    shmi_geometry_t g = {SHMC_PATTERN_STREAM, num_slots, (uint32_t)(frame_header_bytes(nfields) + data_bytes),
                         max_peers, stream_flags,
                         region_bytes(nfields, o.metadata_cap, o.control_cap, max_peers)};
    rc = shmi_geometry_check(&g);
    if (rc) {
        free(s);
        return rc;
    }
    /* A stream whose writer died is replaced by a new generation (never adopted: its schema, metadata
     * and sequence numbers are the dead writer's). A live writer keeps the name: joining its channel
     * fails with SHMC_EMISMATCH (another geometry) or SHMC_EPEERS (registry full), or lands at an
     * entry other than 0 below; all of these are SHMC_EBUSY. */
    rc = shmi_writer_open_keeper(&s->w, os_name, name, &g, shmi_mode_for(o.flags));
    if (rc == SHMC_EPEERS || rc == SHMC_EMISMATCH) rc = SHMC_EBUSY;
    if (rc) {
        free(s);
        return rc;
    }
    shmi_channel_t *ch = &s->w.ch;
    /* The writer is registry entry 0: the first entry of a new channel (readers wait until a live
     * keeper holds entry 0 before they join). Anywhere else, another writer was there first. If we
     * hold entry 0 of a channel whose creator lost that race before writing the region, the channel
     * must be exactly ours to initialise. */
    shmi_stream_header_t *h = (shmi_stream_header_t *)ch->extra;
    if (s->w.index != WRITER_INDEX || !h || ch->geometry.extra_bytes != g.extra_bytes ||
        atomic_load_explicit(&h->magic, memory_order_acquire) != 0) {
        shmi_writer_leave(&s->w);
        shmi_channel_detach(ch);
        free(s);
        return SHMC_EBUSY;
    }
    region_init(ch, s->v.schema, nfields, capacity, stream_flags, o.metadata_cap, o.control_cap);
    rc = view_bind(&s->v, ch);
    if (rc) { /* cannot happen: we just wrote it */
        shmi_writer_leave(&s->w);
        shmi_channel_detach(ch);
        free(s);
        return rc;
    }
    s->report_deaths = (o.flags & SHMC_STREAM_READER_DEATH) != 0;
    s->next_housekeeping = shmi_now_ns() + HOUSEKEEPING_NS;
    for (uint32_t i = 0; i < nfields; i++) s->field_caps[i] = s->v.schema[i].capacity;
    *out = s;
    return 0;
}

int shmc_stream_writer_set_metadata(shmc_stream_writer_t *s, const void *data, size_t len)
{
    if (!s || (!data && len)) return SHMC_EINVAL;
    if (s->w.detached) return SHMC_ECLOSED;
    if (len > s->v.metadata_cap) return SHMC_EMSGSIZE;
    shmi_stream_header_t *h = s->v.hdr;
    uint64_t expected = 0;
    uint64_t writing = ((uint64_t)(uint32_t)shmi_pid() << 32) | SHMI_METADATA_WRITING;
    if (!atomic_compare_exchange_strong_explicit(&h->metadata_word, &expected, writing,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return SHMC_EWRITTEN;
    if (len) memcpy(s->v.metadata, data, len);
    atomic_store_explicit(&h->metadata_len, (uint32_t)len, memory_order_relaxed);
    /* Release: a reader that sees WRITTEN (acquire) sees the bytes and the length. */
    atomic_store_explicit(&h->metadata_word, SHMI_METADATA_WRITTEN, memory_order_release);
    return 0;
}

/* 1 if a reader holds (pins) the slot that position pos uses. */
static int slot_pinned(shmc_stream_writer_t *s, uint64_t pos)
{
    shmi_ring_t *ring = &s->w.ch.ring;
    uint64_t slot = pos % ring->num_slots;
    for (uint32_t i = 0; i < s->v.max_entries; i++) {
        /* seq_cst, after the fence that follows our claim: see the module comment (Dekker). */
        uint64_t held = atomic_load_explicit(&entry_at(&s->v, i)->holding, memory_order_seq_cst);
        if (held && held - 1 < pos && (held - 1) % ring->num_slots == slot) return 1;
    }
    return 0;
}

/* Claims the position of the next frame, skipping slots readers pin (latest-frame mode). */
static int writer_claim(shmc_stream_writer_t *s, int64_t timeout_ns)
{
    uint64_t deadline = timeout_ns > 0 ? shmi_now_ns() + (uint64_t)timeout_ns : 0;
    uint64_t skips = 0;
    for (;;) {
        int64_t left = timeout_ns;
        if (timeout_ns > 0) {
            uint64_t now = shmi_now_ns();
            left = now < deadline ? (int64_t)(deadline - now) : 0;
        }
        int rc = shmi_writer_claim(&s->w, left);
        if (rc == SHMC_EAGAIN && timeout_ns > 0) rc = SHMC_ETIMEDOUT;
        if (rc) return rc;
        uint64_t pos = s->w.claimed_pos;
        if (s->w.lossless) return 0; /* readers' cursors protect what they hold */
        /* Dekker with the reader's pin: our claim (the CAS in shmi_ring_claim) before this fence,
         * the pins after it. */
        atomic_thread_fence(memory_order_seq_cst);
        if (!slot_pinned(s, pos)) return 0;
        shmi_writer_cancel(&s->w, pos); /* readers skip the position; the pinned frame stays intact */
        s->skipped++;
        if (++skips >= s->w.ch.ring.num_slots) {
            /* Every slot pinned: only possible when more readers pin than max_readers allows (a
             * corrupt registry). Give up, or pause and look again. */
            writer_housekeeping(s, 1);
            if (timeout_ns == 0 || (timeout_ns > 0 && shmi_now_ns() >= deadline)) return timeout_ns ? SHMC_ETIMEDOUT : SHMC_EAGAIN;
            shmi_pause_ns(100000);
            skips = 0;
        }
    }
}

static void fill_loan(shmc_stream_writer_t *s, shmc_stream_frame_t *f)
{
    unsigned char *data = (unsigned char *)shmi_ring_payload(&s->w.ch.ring, s->loan_pos) +
                          s->v.frame_header_bytes;
    for (uint32_t i = 0; i < s->v.nfields; i++) s->field_data[i] = data + s->v.schema[i].offset;
    f->nfields = s->v.nfields;
    f->seq = s->next_seq;
    f->timestamp_ns = 0;
    f->checksum = 0;
    f->nbytes = s->v.frame_capacity;
    f->dropped = 0;
    f->data = data;
    f->field_data = s->field_data;
    f->field_nbytes = s->field_caps;
}

static int writer_loan(shmc_stream_writer_t *s, int64_t timeout_ns)
{
    if (s->w.detached) return SHMC_ECLOSED;
    if (s->loaned) return SHMC_EINVAL;
    writer_housekeeping(s, 0);
    int rc = reader_death_news(s);
    if (rc) return rc;
    rc = writer_claim(s, timeout_ns);
    if (rc == SHMC_EAGAIN || rc == SHMC_ETIMEDOUT) {
        writer_housekeeping(s, 1);
        int news = reader_death_news(s);
        return news ? news : rc;
    }
    if (rc) return rc;
    /* A lossless writer may have waited for a reader that died: say so rather than carry on. */
    if (s->w.lossless && (rc = reader_death_news(s)) != 0) {
        shmi_writer_cancel(&s->w, s->w.claimed_pos);
        return rc;
    }
    s->loaned = 1;
    s->loan_pos = s->w.claimed_pos;
    return 0;
}

int shmc_stream_writer_loan(shmc_stream_writer_t *s, shmc_stream_frame_t *frame, int64_t timeout_ns)
{
    if (!s || !frame || frame->size < sizeof *frame) return SHMC_EINVAL;
    int rc = writer_loan(s, timeout_ns);
    if (rc) return rc;
    fill_loan(s, frame);
    return 0;
}

/* Completes the loaned frame with the used sizes `lens` (validated by the caller). */
static void writer_publish(shmc_stream_writer_t *s, uint64_t timestamp_ns, const uint64_t *lens)
{
    unsigned char *payload = shmi_ring_payload(&s->w.ch.ring, s->loan_pos);
    unsigned char *data = payload + s->v.frame_header_bytes;
    shmi_frame_header_t *fh = (shmi_frame_header_t *)payload;
    uint32_t *len_table = (uint32_t *)(payload + SHMI_FRAME_FIXED_BYTES);
    uint64_t total = 0;
    xxh64_t sum;
    int checksum = (s->v.flags & SHMC_STREAM_CHECKSUM) != 0;
    if (checksum) xxh64_init(&sum);
    for (uint32_t i = 0; i < s->v.nfields; i++) {
        uint64_t n = lens ? lens[i] : s->v.schema[i].capacity;
        len_table[i] = (uint32_t)n;
        total += n;
        if (checksum) xxh64_update(&sum, data + s->v.schema[i].offset, (size_t)n);
    }
    fh->seq = s->next_seq;
    fh->timestamp_ns = timestamp_ns ? timestamp_ns : shmi_now_ns();
    fh->checksum = checksum ? xxh64_digest(&sum) : 0;
    fh->nbytes = total;
    fh->nfields = s->v.nfields;
    fh->reserved = 0;
    fh->pad = 0;
    /* The ring's publish (release) makes the frame header and the data visible together. */
    shmi_writer_publish(&s->w, s->loan_pos, s->w.ch.geometry.slot_size);
    s->loaned = 0;
    s->next_seq++;
    /* For inspection only. */
    atomic_store_explicit(&s->v.hdr->next_seq, s->next_seq, memory_order_relaxed);
    atomic_store_explicit(&s->v.hdr->last_timestamp_ns, fh->timestamp_ns, memory_order_relaxed);
}

static int check_lens(shmc_stream_writer_t *s, const uint64_t *lens)
{
    if (!lens) return 0;
    for (uint32_t i = 0; i < s->v.nfields; i++)
        if (lens[i] > s->v.schema[i].capacity) return SHMC_EMSGSIZE;
    return 0;
}

int shmc_stream_writer_commit(shmc_stream_writer_t *s, uint64_t timestamp_ns, const uint64_t *field_nbytes)
{
    if (!s || !s->loaned) return SHMC_EINVAL;
    if (s->w.detached) return SHMC_ECLOSED;
    int rc = check_lens(s, field_nbytes);
    if (rc) return rc;
    writer_publish(s, timestamp_ns, field_nbytes);
    return 0;
}

int shmc_stream_writer_cancel(shmc_stream_writer_t *s)
{
    if (!s || !s->loaned) return SHMC_EINVAL;
    shmi_writer_cancel(&s->w, s->loan_pos);
    s->loaned = 0;
    return 0;
}

int shmc_stream_writer_write(shmc_stream_writer_t *s, const void *const *field_data,
                             const uint64_t *field_nbytes, uint64_t timestamp_ns, int64_t timeout_ns)
{
    if (!s || !field_data) return SHMC_EINVAL;
    if (s->loaned) return SHMC_EINVAL;
    for (uint32_t i = 0; i < s->v.nfields; i++) {
        uint64_t n = field_nbytes ? field_nbytes[i] : s->v.schema[i].capacity;
        if (n && !field_data[i]) return SHMC_EINVAL;
    }
    int rc = check_lens(s, field_nbytes);
    if (rc) return rc;
    rc = writer_loan(s, timeout_ns);
    if (rc) return rc;
    unsigned char *data = (unsigned char *)shmi_ring_payload(&s->w.ch.ring, s->loan_pos) +
                          s->v.frame_header_bytes;
    for (uint32_t i = 0; i < s->v.nfields; i++) {
        uint64_t n = field_nbytes ? field_nbytes[i] : s->v.schema[i].capacity;
        if (n) shmi_ring_copy_in(data + s->v.schema[i].offset, field_data[i], (size_t)n);
    }
    writer_publish(s, timestamp_ns, field_nbytes);
    return 0;
}

/* Control ring of reader i, consumer side: 0 one message taken (or skipped as corrupt: SHMC_EBADSEG),
 * SHMC_EAGAIN none, SHMC_ETRUNC too large for cap (nothing taken). */
static int control_take(shmc_stream_writer_t *s, uint32_t i, uint32_t *type, int32_t *pid, void *buf,
                        size_t cap, size_t *len)
{
    shmi_stream_entry_t *e = entry_at(&s->v, i);
    const uint64_t ring_cap = s->v.control_cap;
    unsigned char *ring = control_data(&s->v, i);
    for (int guard = 0; guard < 3; guard++) {
        /* Acquire: pairs with the reader's release of head; the record bytes are complete. */
        uint64_t head = atomic_load_explicit(&e->control_head, memory_order_acquire);
        uint64_t tail = atomic_load_explicit(&e->control_tail, memory_order_relaxed);
        if (head == tail) return SHMC_EAGAIN;
        uint64_t avail = head - tail;
        uint64_t off = tail % ring_cap, to_end = ring_cap - off;
        if (avail > ring_cap || tail % 8) goto corrupt;
        if (to_end < SHMI_CONTROL_RECORD_BYTES) { /* too little room for a record: the writer skipped it */
            if (avail < to_end) goto corrupt;
            atomic_store_explicit(&e->control_tail, tail + to_end, memory_order_release);
            continue;
        }
        if (avail < SHMI_CONTROL_RECORD_BYTES) goto corrupt;
        uint32_t rtype = read32(ring + off), rlen = read32(ring + off + 4);
        int32_t rpid;
        memcpy(&rpid, ring + off + 8, 4);
        if (rtype == SHMI_CONTROL_PAD) {
            if (rlen != to_end - SHMI_CONTROL_RECORD_BYTES || avail < to_end) goto corrupt;
            atomic_store_explicit(&e->control_tail, tail + to_end, memory_order_release);
            continue;
        }
        uint64_t size = SHMI_CONTROL_RECORD_BYTES + (((uint64_t)rlen + 7) & ~7ull);
        if (size > to_end || size > avail) goto corrupt;
        *len = rlen;
        if (rlen > cap) return SHMC_ETRUNC;
        if (rlen) memcpy(buf, ring + off + SHMI_CONTROL_RECORD_BYTES, rlen);
        *type = rtype;
        *pid = rpid;
        /* Release: our copy is done before the reader reuses the space. */
        atomic_store_explicit(&e->control_tail, tail + size, memory_order_release);
        return 0;
    }
    return SHMC_EAGAIN;
corrupt:
    /* Drop what the ring holds: its records cannot be trusted. */
    atomic_store_explicit(&e->control_tail, atomic_load_explicit(&e->control_head, memory_order_acquire),
                          memory_order_release);
    return SHMC_EBADSEG;
}

int shmc_stream_writer_poll_control(shmc_stream_writer_t *s, uint32_t *reader_id, int32_t *pid, uint32_t *type,
                                    void *buf, size_t cap, size_t *len)
{
    if (!s || !reader_id || !pid || !type || !len || (!buf && cap)) return SHMC_EINVAL;
    if (s->w.detached) return SHMC_ECLOSED;
    writer_housekeeping(s, 0);
    uint32_t n = s->v.max_entries;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = (s->control_next + k) % n;
        if (i == s->w.index) continue;
        int rc = control_take(s, i, type, pid, buf, cap, len);
        if (rc == SHMC_EAGAIN) continue;
        if (rc == 0) {
            *reader_id = i;
            s->control_received++;
            s->control_next = (i + 1) % n; /* round robin: one chatty reader cannot starve the others */
        }
        return rc;
    }
    return SHMC_EAGAIN;
}

int shmc_stream_writer_readers(shmc_stream_writer_t *s, shmc_stream_reader_info_t *out, uint32_t max,
                               uint32_t *count)
{
    if (!s || !count || (max && !out)) return SHMC_EINVAL;
    if (s->w.detached) return SHMC_ECLOSED;
    *count = list_readers(&s->w.ch, &s->v, out, max);
    return 0;
}

int shmc_stream_writer_reap(shmc_stream_writer_t *s, int64_t stale_ns, uint32_t *reaped)
{
    if (!s) return SHMC_EINVAL;
    if (reaped) *reaped = 0;
    if (s->w.detached) return SHMC_ECLOSED;
    shmi_channel_t *ch = &s->w.ch;
    uint64_t before = atomic_load_explicit(&s->v.hdr->reader_deaths, memory_order_relaxed);
    writer_housekeeping(s, 1);
    uint32_t removed = (uint32_t)(atomic_load_explicit(&s->v.hdr->reader_deaths, memory_order_relaxed) - before);
    if (stale_ns > 0) {
        uint64_t now = shmi_now_ns();
        for (uint32_t i = 0; i < s->v.max_entries; i++) {
            shmi_peer_t *p = &ch->registry.peers[i];
            uint64_t owner = atomic_load_explicit(&p->owner, memory_order_acquire);
            if (!owner || shmi_owner_role(owner) != SHMI_ROLE_FOLLOWER) continue;
            shmi_stream_entry_t *e = entry_at(&s->v, i);
            if (atomic_load_explicit(&e->evicted, memory_order_relaxed)) continue;
            uint64_t beat = atomic_load_explicit(&p->heartbeat_ns, memory_order_relaxed);
            if (now <= beat || now - beat <= (uint64_t)stale_ns) continue;
            /* The reader stays registered (it lives) but holds nothing back any more: its pin is
             * dropped and its cursor no longer counts for a lossless writer. It notices the flag on
             * its next call and resumes at the newest frame. */
            atomic_store_explicit(&e->evicted, 1, memory_order_seq_cst);
            atomic_store_explicit(&e->holding, 0, memory_order_seq_cst);
            atomic_store_explicit(&p->cursor, UINT64_MAX, memory_order_seq_cst);
            s->evicted++;
            removed++;
        }
        s->w.cached_min = UINT64_MAX;
    }
    if (reaped) *reaped = removed;
    return 0;
}

int shmc_stream_writer_schema(shmc_stream_writer_t *s, shmc_stream_field_t *out, uint32_t max, uint32_t *count)
{
    if (!s || !count || (max && !out)) return SHMC_EINVAL;
    copy_schema(&s->v, out, max, count);
    return 0;
}

int shmc_stream_writer_stats(shmc_stream_writer_t *s, shmc_stream_stats_t *st)
{
    if (!s || !st || st->size < sizeof *st) return SHMC_EINVAL;
    if (s->w.detached) return SHMC_ECLOSED;
    memset(st, 0, sizeof *st);
    st->size = sizeof *st;
    st->readers = shmi_registry_count(&s->w.ch.registry, SHMI_ROLE_FOLLOWER);
    st->writer_alive = 1;
    st->num_slots = s->w.ch.geometry.num_slots;
    st->frame_capacity = s->v.frame_capacity;
    st->frames = s->w.sent;
    st->dropped = s->skipped;
    st->next_seq = s->next_seq;
    st->readers_died = atomic_load_explicit(&s->v.hdr->reader_deaths, memory_order_relaxed);
    st->readers_evicted = s->evicted;
    st->control_received = s->control_received;
    return 0;
}

int shmc_stream_writer_detach(shmc_stream_writer_t *s)
{
    if (!s) return SHMC_EINVAL;
    if (s->w.detached) return 0;
    if (s->loaned) shmc_stream_writer_cancel(s);
    shmi_writer_leave(&s->w);
    return 0;
}

int shmc_stream_writer_close(shmc_stream_writer_t *s)
{
    if (!s) return 0;
    shmc_stream_writer_detach(s);
    shmi_channel_detach(&s->w.ch);
    free(s);
    return 0;
}

/* ------------------------------------------------------------------ reader */

struct shmc_stream_reader {
    shmi_channel_t ch;
    stream_view_t v;
    uint32_t index;
    uint32_t flags;           /* reader options' flags */
    int lossless, checksum;
    int detached;
    int64_t spin_ns;
    shmc_stream_field_t want[SHMC_STREAM_MAX_FIELDS]; /* the schema this reader insists on */
    uint32_t nwant;
    uint64_t cursor;
    int holding;
    uint64_t hold_pos, hold_seq;
    int have_last;
    uint64_t last_seq;
    uint64_t received, dropped, reconnects, checksum_failures, control_sent;
    uint64_t blocker;
    uint64_t next_slow_check;
    uint32_t idle_polls;
    int follow_rc;            /* why the last attempt to follow a restarted writer failed, else 0 */
    int writer_dead;          /* this generation's writer was found dead (final: a generation has one) */
    stream_view_t fresh;      /* the view of a generation being joined */
    /* the acquire in progress */
    shmc_stream_frame_t *out;
    void *field_data[SHMC_STREAM_MAX_FIELDS];
    uint64_t field_nbytes[SHMC_STREAM_MAX_FIELDS];
};

static shmi_stream_entry_t *my_entry(shmc_stream_reader_t *r) { return entry_at(&r->v, r->index); }

static void set_cursor(shmc_stream_reader_t *r, uint64_t cursor)
{
    uint64_t before = r->cursor;
    r->cursor = cursor;
    shmi_peer_t *me = &r->ch.registry.peers[r->index];
    if (r->lossless) {
        /* As the subscriber's (pubsub.c): seq_cst, then the wake's fence; a waiting writer sees the
         * cursor in its re-check or is woken at the batch boundary it waits for. */
        atomic_store_explicit(&me->cursor, cursor, memory_order_seq_cst);
        uint64_t batch = shmi_room_batch(&r->ch);
        if (before / batch != cursor / batch || before > cursor)
            shmi_waitword_wake(&r->ch.ring.ctrl->space);
    } else {
        atomic_store_explicit(&me->cursor, cursor, memory_order_relaxed);
    }
}

/* Joins channel ch (attached, not yet ours) as a reader at `start` (UINT64_MAX: the head): validates
 * its stream region into r->fresh and checks the schema. */
static int reader_join_at(shmc_stream_reader_t *r, shmi_channel_t *ch, uint32_t *index, uint64_t start)
{
    int rc = view_bind(&r->fresh, ch);
    if (rc) return rc;
    /* No writer yet (it creates, then joins entry 0): wait, so that a reader never takes its entry. */
    if (shmi_registry_live_role(&ch->registry, WRITER_INDEX) != SHMI_ROLE_KEEPER) return SHMC_EAGAIN;
    if (r->nwant && (r->nwant != r->fresh.nfields || !schema_equal(r->want, r->fresh.schema, r->nwant)))
        return SHMC_ESCHEMA;
    uint64_t first = start == UINT64_MAX ? shmi_channel_head(ch) : start;
    rc = shmi_registry_join(&ch->registry, SHMI_ROLE_FOLLOWER, first, shmi_recover_claims_of, ch, index);
    if (rc) return rc;
    /* As a subscriber: a writer that scanned the cursors just before our join may claim one more
     * position unaware of us; starting at the head as it is now is safe. */
    uint64_t cursor = start == UINT64_MAX ? shmi_channel_head(ch) : first;
    atomic_store_explicit(&ch->registry.peers[*index].cursor, cursor, memory_order_seq_cst);
    shmi_stream_entry_t *e = entry_at(&r->fresh, *index);
    uint64_t owner = atomic_load_explicit(&ch->registry.peers[*index].owner, memory_order_acquire);
    uint64_t previous = atomic_exchange_explicit(&e->owner, owner, memory_order_acq_rel);
    /* An entry left by a reader that died (not collected by the writer yet): count the death here. */
    if (previous) atomic_fetch_add_explicit(&r->fresh.hdr->reader_deaths, 1, memory_order_relaxed);
    atomic_store_explicit(&e->holding, 0, memory_order_relaxed);
    atomic_store_explicit(&e->frames_seen, 0, memory_order_relaxed);
    atomic_store_explicit(&e->last_seq, 0, memory_order_relaxed);
    atomic_store_explicit(&e->dropped, 0, memory_order_relaxed);
    atomic_store_explicit(&e->evicted, 0, memory_order_relaxed);
    r->cursor = cursor;
    return 0;
}

static int join_now(void *ctx, shmi_channel_t *ch, uint32_t *index)
{
    return reader_join_at(ctx, ch, index, UINT64_MAX);
}

/* A restarted writer's new generation is read from its first frame (as PUB/SUB does). */
static int join_restarted(void *ctx, shmi_channel_t *ch, uint32_t *index)
{
    shmc_stream_reader_t *r = ctx;
    uint64_t cursor = r->cursor;
    int rc = reader_join_at(r, ch, index, 0);
    if (rc) r->cursor = cursor;
    r->follow_rc = rc == SHMC_ESCHEMA ? rc : 0;
    return rc;
}

/* Leaves the stream entry cleanly (so the writer does not count us as dead), then the registry. */
static void reader_leave_entry(shmc_stream_reader_t *r)
{
    shmi_stream_entry_t *e = my_entry(r);
    atomic_store_explicit(&e->holding, 0, memory_order_release);
    atomic_store_explicit(&e->owner, 0, memory_order_release);
    shmi_registry_leave(&r->ch.registry, r->index);
}

/* Moves to a restarted writer's generation if there is one: 1 moved, 0 not (r->follow_rc says why
 * when the new generation is unusable). */
static int reader_follow(shmc_stream_reader_t *r)
{
    if (r->holding) return 0;
    r->follow_rc = 0;
    uint32_t state = atomic_load_explicit(&r->ch.header->state, memory_order_acquire);
    if (state == SHMI_STATE_READY &&
        shmi_registry_live_role(&r->ch.registry, WRITER_INDEX) == SHMI_ROLE_KEEPER)
        return 0;
    if (shmi_seg_is_current(&r->ch.seg, r->ch.os_name)) return 0; /* no new generation yet */
    /* Our old entry: leave it cleanly before shmi_follow_restart retires the old segment. Should the
     * move fail, we rejoin below. */
    shmi_stream_entry_t *old = my_entry(r);
    uint64_t old_owner = atomic_load_explicit(&old->owner, memory_order_relaxed);
    atomic_store_explicit(&old->owner, 0, memory_order_release);
    if (!shmi_follow_restart(&r->ch, &r->index, join_restarted, r)) {
        atomic_store_explicit(&old->owner, old_owner, memory_order_release);
        return 0;
    }
    r->v = r->fresh;
    r->writer_dead = 0;
    r->reconnects++;
    r->blocker = 0;
    r->have_last = 0;
    return 1;
}

/* Nothing to read: 0 if the writer is there, else SHMC_ECLOSED (it closed the stream) or
 * SHMC_EWRITERDEAD. `thorough` also checks the writer process's liveness (a system call). */
static int writer_gone(shmc_stream_reader_t *r, int thorough)
{
    uint32_t state = atomic_load_explicit(&r->ch.header->state, memory_order_acquire);
    if (state == SHMI_STATE_CLOSED) return SHMC_ECLOSED;
    if (state != SHMI_STATE_READY || r->writer_dead) return SHMC_EWRITERDEAD; /* replaced: it died */
    if (!thorough) return 0;
    r->writer_dead = shmi_registry_live_role(&r->ch.registry, WRITER_INDEX) != SHMI_ROLE_KEEPER;
    return r->writer_dead ? SHMC_EWRITERDEAD : 0;
}

/* An evicted reader resumes at the head; the frame it held (if any) is reported stale at release. */
static void resume_if_evicted(shmc_stream_reader_t *r)
{
    shmi_stream_entry_t *e = my_entry(r);
    if (!atomic_load_explicit(&e->evicted, memory_order_acquire)) return;
    atomic_store_explicit(&e->evicted, 0, memory_order_relaxed);
    set_cursor(r, shmi_channel_head(&r->ch));
}

/* Pins position pos (latest-frame mode) and re-checks that its slot still holds `word`. */
static int pin(shmc_stream_reader_t *r, uint64_t pos, uint64_t word)
{
    if (r->lossless) return 1;
    shmi_stream_entry_t *e = my_entry(r);
    atomic_store_explicit(&e->holding, pos + 1, memory_order_seq_cst);
    /* Dekker with the writer (slot_pinned): our pin before this fence, the slot word after it. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&shmi_ring_slot(&r->ch.ring, pos)->seq, memory_order_relaxed) == word) return 1;
    atomic_store_explicit(&e->holding, 0, memory_order_release);
    return 0;
}

static void unpin(shmc_stream_reader_t *r)
{
    /* Release: our reads of the frame come before a writer that sees the pin gone reuses the slot. */
    if (!r->lossless) atomic_store_explicit(&my_entry(r)->holding, 0, memory_order_release);
}

/* The frame at pos (pinned, or protected by our cursor) becomes the one we hold, after its header is
 * validated and its checksum verified. */
static int deliver(shmc_stream_reader_t *r, uint64_t pos, const void *payload)
{
    const stream_view_t *v = &r->v;
    const shmi_frame_header_t *fh = payload;
    const unsigned char *lens = (const unsigned char *)payload + SHMI_FRAME_FIXED_BYTES;
    unsigned char *data = (unsigned char *)payload + v->frame_header_bytes;
    if (fh->nfields != v->nfields) return SHMC_EBADSEG;
    uint64_t total = 0;
    xxh64_t sum;
    if (r->checksum) xxh64_init(&sum);
    for (uint32_t i = 0; i < v->nfields; i++) {
        uint32_t n;
        memcpy(&n, lens + 4 * i, 4);
        if (n > v->schema[i].capacity) return SHMC_EBADSEG; /* never trust the segment */
        r->field_nbytes[i] = n;
        r->field_data[i] = data + v->schema[i].offset;
        total += n;
        if (r->checksum) xxh64_update(&sum, data + v->schema[i].offset, n);
    }
    uint64_t seq = fh->seq;
    if (r->checksum && xxh64_digest(&sum) != fh->checksum) return SHMC_ECHECKSUM;
    shmc_stream_frame_t *f = r->out;
    uint64_t gap = r->have_last && seq > r->last_seq + 1 ? seq - r->last_seq - 1 : 0;
    f->nfields = v->nfields;
    f->seq = seq;
    f->timestamp_ns = fh->timestamp_ns;
    f->checksum = fh->checksum;
    f->nbytes = total;
    f->dropped = gap;
    f->data = data;
    f->field_data = r->field_data;
    f->field_nbytes = r->field_nbytes;
    r->dropped += gap;
    r->holding = 1;
    r->hold_pos = pos;
    r->hold_seq = seq;
    return 0;
}

/* A frame we cannot deliver (corrupt, checksum): skip it and say why. */
static int reject(shmc_stream_reader_t *r, uint64_t pos, int rc)
{
    unpin(r);
    if (rc == SHMC_ECHECKSUM) r->checksum_failures++;
    set_cursor(r, pos + 1);
    return rc;
}

static int on_empty(shmc_stream_reader_t *r)
{
    int gone = writer_gone(r, 0);
    return gone ? gone : SHMC_EAGAIN;
}

/* One attempt at the next frame in order. */
static int try_next(void *ctx)
{
    shmc_stream_reader_t *r = ctx;
    shmi_ring_t *ring = &r->ch.ring;
    const uint64_t n = ring->num_slots;
    r->blocker = 0;
    resume_if_evicted(r);
    for (uint64_t round = 0; round < 4 * n + 16; round++) {
        uint64_t pos = r->cursor, word;
        const void *payload;
        uint32_t len;
        switch (shmi_ring_peek(ring, pos, &word, &payload, &len)) {
        case SHMI_PEEK_READY: {
            if (!pin(r, pos, word)) continue; /* overwritten meanwhile: look again */
            int rc = deliver(r, pos, payload);
            if (rc) return reject(r, pos, rc);
            return 0;
        }
        case SHMI_PEEK_EMPTY:
            if (word && shmi_word_state(word) == SHMI_SLOT_WRITING && shmi_word_pos(word) == pos)
                r->blocker = word;
            return on_empty(r);
        case SHMI_PEEK_ABANDONED: /* cancelled, given up for a pinned slot, or its writer died */
            set_cursor(r, pos + 1);
            continue;
        case SHMI_PEEK_OVERRUN: { /* lapped: go on from the oldest frame still there */
            uint64_t head = shmi_channel_head(&r->ch);
            uint64_t oldest = head >= n ? head - n + 1 : 0;
            set_cursor(r, oldest > pos ? oldest : pos + 1);
            continue;
        }
        }
    }
    return SHMC_EAGAIN;
}

/* One attempt at the newest complete frame. */
static int try_latest(void *ctx)
{
    shmc_stream_reader_t *r = ctx;
    shmi_ring_t *ring = &r->ch.ring;
    resume_if_evicted(r);
    uint64_t head = shmi_channel_head(&r->ch);
    if (head <= r->cursor) return try_next(r);
    uint64_t lowest = head > ring->num_slots ? head - ring->num_slots : 0;
    if (lowest < r->cursor) lowest = r->cursor;
    for (uint64_t pos = head; pos-- > lowest;) {
        uint64_t word;
        const void *payload;
        uint32_t len;
        if (shmi_ring_peek(ring, pos, &word, &payload, &len) != SHMI_PEEK_READY) continue;
        if (!pin(r, pos, word)) continue;
        /* Lossless: our cursor moves onto the frame now (it protects it, and frees the older ones). */
        set_cursor(r, pos);
        int rc = deliver(r, pos, payload);
        if (rc) return reject(r, pos, rc);
        return 0;
    }
    return try_next(r);
}

static int reader_maintain(void *ctx)
{
    shmc_stream_reader_t *r = ctx;
    shmi_registry_heartbeat(&r->ch.registry, r->index);
    shmi_recover_if_dead(&r->ch, r->blocker);
    uint64_t now = shmi_now_ns();
    if (now < r->next_slow_check) return 0;
    r->next_slow_check = now + SHMI_SLOW_CHECK_NS;
    return writer_gone(r, 1);
}

static int reader_acquire(shmc_stream_reader_t *r, shmc_stream_frame_t *frame, shmi_try_fn try_once,
                          int64_t timeout_ns)
{
    if (!r || !frame || frame->size < sizeof *frame) return SHMC_EINVAL;
    if (r->detached) return SHMC_ECLOSED;
    if (r->holding) return SHMC_EINVAL;
    r->out = frame;
    shmi_registry_heartbeat(&r->ch.registry, r->index);
    const uint64_t deadline = timeout_ns > 0 ? shmi_now_ns() + (uint64_t)timeout_ns : 0;
    int64_t left = timeout_ns;
    for (;;) {
        int rc = shmi_wait(&r->ch.ring.ctrl->data, try_once, reader_maintain, r, left, r->spin_ns);
        if (rc == SHMC_EAGAIN || rc == SHMC_ETIMEDOUT) {
            /* A reader that only polls still notices a dead writer and recovers its claims. */
            if (++r->idle_polls % SHMI_IDLE_POLLS_PER_CHECK == 0) {
                shmi_registry_heartbeat(&r->ch.registry, r->index);
                shmi_recover_if_dead(&r->ch, r->blocker);
            }
            uint64_t now = shmi_now_ns();
            if (now >= r->next_slow_check) {
                r->next_slow_check = now + SHMI_SLOW_CHECK_NS;
                int gone = writer_gone(r, 1);
                if (gone) rc = gone;
            }
        }
        if (rc != SHMC_ECLOSED && rc != SHMC_EWRITERDEAD) return rc;
        /* A frame committed just before the writer went is still delivered first. */
        int again = try_once(r);
        if (again != SHMC_EAGAIN && again != SHMC_ECLOSED && again != SHMC_EWRITERDEAD) return again;
        /* Nothing left to read from this writer. A restarted one is followed (its frames from the
         * first), unless the caller moves by itself. */
        if ((r->flags & SHMC_STREAM_MANUAL_FOLLOW) || !reader_follow(r)) return r->follow_rc ? r->follow_rc : rc;
        if (timeout_ns > 0) {
            uint64_t now = shmi_now_ns();
            left = now < deadline ? (int64_t)(deadline - now) : 0;
        }
    }
}

int shmc_stream_reader_open(const char *name, const shmc_stream_field_t *expected, uint32_t nfields,
                            const shmc_stream_reader_options_t *opts, shmc_stream_reader_t **out)
{
    if (!out) return SHMC_EINVAL;
    *out = NULL;
    if (!expected && nfields) return SHMC_EINVAL;
    shmc_stream_reader_options_t o;
    shmc_stream_reader_options_init(&o);
    int rc = shmi_copy_options(&o, sizeof o, opts, offsetof(shmc_stream_reader_options_t, flags));
    if (rc) return rc;
    if (o.spin_us > 1000000 || o.reserved || (o.flags & ~(uint32_t)SHMC_STREAM_MANUAL_FOLLOW)) return SHMC_EINVAL;
    char os_name[SHMI_OS_NAME_CAP];
    rc = shmi_make_os_name(name, SHMC_PATTERN_STREAM, os_name, sizeof os_name);
    if (rc) return rc;
    shmc_stream_reader_t *r = calloc(1, sizeof *r);
    if (!r) return SHMC_ENOMEM;
    if (expected) {
        uint64_t capacity, data_bytes;
        rc = schema_build(expected, nfields, r->want, &capacity, &data_bytes);
        if (rc) {
            free(r);
            return rc == SHMC_EMSGSIZE ? SHMC_ESCHEMA : rc;
        }
        r->nwant = nfields;
    }
    r->flags = o.flags;
    r->spin_ns = (int64_t)o.spin_us * 1000;
    rc = shmi_follower_open(&r->ch, os_name, SHMC_PATTERN_STREAM, o.connect_timeout_ns, join_now, r, &r->index);
    if (rc) {
        free(r);
        return rc;
    }
    r->v = r->fresh;
    if (!r->nwant) { /* insist on the schema found, across restarts of the writer */
        memcpy(r->want, r->v.schema, (size_t)r->v.nfields * sizeof r->want[0]);
        r->nwant = r->v.nfields;
    }
    r->lossless = (r->v.flags & SHMC_LOSSLESS) != 0;
    r->checksum = (r->v.flags & SHMC_STREAM_CHECKSUM) != 0;
    r->next_slow_check = shmi_now_ns() + SHMI_SLOW_CHECK_NS;
    *out = r;
    return 0;
}

int shmc_stream_reader_acquire(shmc_stream_reader_t *r, shmc_stream_frame_t *frame, int64_t timeout_ns)
{
    return reader_acquire(r, frame, try_next, timeout_ns);
}

int shmc_stream_reader_acquire_latest(shmc_stream_reader_t *r, shmc_stream_frame_t *frame, int64_t timeout_ns)
{
    return reader_acquire(r, frame, try_latest, timeout_ns);
}

int shmc_stream_reader_release(shmc_stream_reader_t *r)
{
    if (!r || !r->holding) return SHMC_EINVAL;
    if (r->detached) return SHMC_ECLOSED;
    r->holding = 0;
    shmi_stream_entry_t *e = my_entry(r);
    int evicted = atomic_load_explicit(&e->evicted, memory_order_acquire) != 0;
    unpin(r);
    r->have_last = 1;
    r->last_seq = r->hold_seq;
    if (evicted) {
        resume_if_evicted(r);
        return SHMC_ESTALE;
    }
    r->received++;
    /* Statistics for the writer's listing (relaxed: nothing is read through them). */
    atomic_store_explicit(&e->frames_seen, r->received, memory_order_relaxed);
    atomic_store_explicit(&e->last_seq, r->hold_seq, memory_order_relaxed);
    atomic_store_explicit(&e->dropped, r->dropped, memory_order_relaxed);
    set_cursor(r, r->hold_pos + 1);
    return 0;
}

int shmc_stream_reader_metadata(shmc_stream_reader_t *r, const void **data, size_t *len)
{
    if (!r || !data || !len) return SHMC_EINVAL;
    if (r->detached) return SHMC_ECLOSED;
    /* Acquire: pairs with the writer's release of WRITTEN; the bytes and the length are complete. */
    if (atomic_load_explicit(&r->v.hdr->metadata_word, memory_order_acquire) != SHMI_METADATA_WRITTEN)
        return SHMC_EAGAIN;
    uint32_t n = atomic_load_explicit(&r->v.hdr->metadata_len, memory_order_relaxed);
    if (n > r->v.metadata_cap) return SHMC_EBADSEG;
    *data = r->v.metadata;
    *len = n;
    return 0;
}

int shmc_stream_reader_schema(shmc_stream_reader_t *r, shmc_stream_field_t *out, uint32_t max, uint32_t *count)
{
    if (!r || !count || (max && !out)) return SHMC_EINVAL;
    copy_schema(&r->v, out, max, count);
    return 0;
}

int shmc_stream_reader_send_control(shmc_stream_reader_t *r, uint32_t type, const void *data, size_t len)
{
    if (!r || (!data && len) || type == SHMI_CONTROL_PAD) return SHMC_EINVAL;
    if (r->detached) return SHMC_ECLOSED;
    const uint64_t cap = r->v.control_cap;
    if (len > cap / 2 - SHMI_CONTROL_RECORD_BYTES) return SHMC_EMSGSIZE;
    shmi_stream_entry_t *e = my_entry(r);
    unsigned char *ring = control_data(&r->v, r->index);
    uint64_t head = atomic_load_explicit(&e->control_head, memory_order_relaxed); /* ours */
    /* Acquire: pairs with the writer's release of tail; it has finished reading that space. */
    uint64_t tail = atomic_load_explicit(&e->control_tail, memory_order_acquire);
    if (head - tail > cap || head % 8) return SHMC_EBADSEG;
    uint64_t size = SHMI_CONTROL_RECORD_BYTES + ((len + 7) & ~(uint64_t)7);
    uint64_t off = head % cap, to_end = cap - off, skip = 0;
    if (to_end < size) skip = to_end; /* the record goes to the start; pad (or skip) the end */
    if (head + skip + size - tail > cap) return SHMC_EAGAIN;
    if (skip >= SHMI_CONTROL_RECORD_BYTES) {
        uint32_t pad[2] = {SHMI_CONTROL_PAD, (uint32_t)(skip - SHMI_CONTROL_RECORD_BYTES)};
        memcpy(ring + off, pad, sizeof pad);
    }
    unsigned char *rec = ring + (skip ? 0 : off);
    int32_t pid = shmi_pid();
    uint32_t words[4] = {type, (uint32_t)len, 0, 0};
    memcpy(&words[2], &pid, 4);
    memcpy(rec, words, sizeof words);
    if (len) memcpy(rec + SHMI_CONTROL_RECORD_BYTES, data, len);
    /* Release: the record is complete before the writer sees the new head. */
    atomic_store_explicit(&e->control_head, head + skip + size, memory_order_release);
    r->control_sent++;
    return 0;
}

int shmc_stream_reader_writer_alive(shmc_stream_reader_t *r)
{
    if (!r || r->detached) return 0;
    return writer_gone(r, 1) == 0;
}

int shmc_stream_reader_follow(shmc_stream_reader_t *r)
{
    if (!r) return SHMC_EINVAL;
    if (r->detached) return SHMC_ECLOSED;
    if (r->holding) return SHMC_EINVAL;
    if (reader_follow(r)) return 1;
    return r->follow_rc;
}

int shmc_stream_reader_stats(shmc_stream_reader_t *r, shmc_stream_stats_t *st)
{
    if (!r || !st || st->size < sizeof *st) return SHMC_EINVAL;
    if (r->detached) return SHMC_ECLOSED;
    memset(st, 0, sizeof *st);
    st->size = sizeof *st;
    st->readers = shmi_registry_count(&r->ch.registry, SHMI_ROLE_FOLLOWER);
    st->writer_alive = writer_gone(r, 1) == 0;
    st->num_slots = r->ch.geometry.num_slots;
    st->frame_capacity = r->v.frame_capacity;
    st->frames = r->received;
    st->dropped = r->dropped;
    st->next_seq = atomic_load_explicit(&r->v.hdr->next_seq, memory_order_relaxed);
    st->reconnects = r->reconnects;
    st->control_sent = r->control_sent;
    st->checksum_failures = r->checksum_failures;
    return 0;
}

int shmc_stream_reader_detach(shmc_stream_reader_t *r)
{
    if (!r) return SHMC_EINVAL;
    if (r->detached) return 0;
    r->detached = 1;
    r->holding = 0;
    reader_leave_entry(r);
    /* Our cursor no longer holds a lossless writer back: let it re-check. */
    shmi_waitword_wake(&r->ch.ring.ctrl->space);
    return 0;
}

int shmc_stream_reader_close(shmc_stream_reader_t *r)
{
    if (!r) return 0;
    shmc_stream_reader_detach(r);
    shmi_channel_detach(&r->ch);
    free(r);
    return 0;
}

/* ------------------------------------------------------------------ inspection */

int shmc_stream_inspect(const char *name, shmc_stream_info_t *info, shmc_stream_field_t *fields,
                        uint32_t max_fields, shmc_stream_reader_info_t *readers, uint32_t max_readers,
                        uint32_t *nreaders, void *metadata, size_t metadata_cap)
{
    if (!info || info->size < sizeof *info || (max_fields && !fields) || (max_readers && !readers) ||
        (metadata_cap && !metadata))
        return SHMC_EINVAL;
    char os_name[SHMI_OS_NAME_CAP];
    int rc = shmi_make_os_name(name, SHMC_PATTERN_STREAM, os_name, sizeof os_name);
    if (rc) return rc;
    shmi_channel_t ch;
    rc = shmi_channel_attach(&ch, os_name, SHMC_PATTERN_STREAM, 1);
    if (rc) return rc;
    stream_view_t *v = malloc(sizeof *v);
    if (!v) {
        shmi_channel_detach(&ch);
        return SHMC_ENOMEM;
    }
    rc = view_bind(v, &ch);
    if (rc == 0) {
        memset(info, 0, sizeof *info);
        info->size = sizeof *info;
        info->nfields = v->nfields;
        info->num_slots = ch.geometry.num_slots;
        info->max_readers = ch.geometry.max_peers - 1;
        info->flags = v->flags;
        info->metadata_cap = v->metadata_cap;
        info->control_cap = v->control_cap;
        info->state = atomic_load_explicit(&ch.header->state, memory_order_acquire);
        info->frame_capacity = v->frame_capacity;
        info->frames = atomic_load_explicit(&v->hdr->next_seq, memory_order_relaxed);
        info->last_timestamp_ns = atomic_load_explicit(&v->hdr->last_timestamp_ns, memory_order_relaxed);
        info->session_id = ch.session_id;
        info->segment_bytes = ch.header->segment_bytes;
        uint64_t owner = atomic_load_explicit(&ch.registry.peers[WRITER_INDEX].owner, memory_order_acquire);
        if (owner && shmi_owner_role(owner) == SHMI_ROLE_KEEPER) {
            info->writer_pid = shmi_owner_pid(owner);
            info->writer_alive = shmi_registry_live_role(&ch.registry, WRITER_INDEX) == SHMI_ROLE_KEEPER;
        }
        /* Acquire: pairs with the writer's release of WRITTEN. */
        if (atomic_load_explicit(&v->hdr->metadata_word, memory_order_acquire) == SHMI_METADATA_WRITTEN) {
            uint32_t n = atomic_load_explicit(&v->hdr->metadata_len, memory_order_relaxed);
            if (n <= v->metadata_cap) {
                info->metadata_written = 1;
                info->metadata_len = n;
                if (n && n <= metadata_cap) memcpy(metadata, v->metadata, n);
            }
        }
        uint32_t count;
        copy_schema(v, fields, max_fields, &count);
        info->readers = list_readers(&ch, v, readers, max_readers);
        if (nreaders) *nreaders = info->readers;
    }
    free(v);
    shmi_channel_detach(&ch);
    return rc;
}
