/* STREAM: schemas, loans and one-copy writes, reading in place, lossless and latest-frame modes (a held
 * frame is never overwritten), metadata, control messages, the reader registry and inspection,
 * checksums, corrupt segments, and real processes killed with SIGKILL (writer and reader). */
#include "check.h"
#include "procs.h"
#include "shmcomm.h"

#include "primitives/channel.h"
#include "primitives/stream_layout.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

static shmc_stream_field_t field(const char *name, uint32_t dtype, uint32_t ndim, uint64_t d0, uint64_t d1,
                                 uint64_t d2)
{
    shmc_stream_field_t f;
    memset(&f, 0, sizeof f);
    snprintf(f.name, sizeof f.name, "%s", name);
    f.dtype = dtype;
    f.ndim = ndim;
    f.shape[0] = d0;
    f.shape[1] = d1;
    f.shape[2] = d2;
    return f;
}

/* An image of H x W x 3 bytes and a vector of 5 float32. */
#define H 6
#define W 4
static shmc_stream_field_t schema[2];
static void make_schema(void)
{
    schema[0] = field("rgb", SHMC_DTYPE_U8, 3, H, W, 3);
    schema[1] = field("pose", SHMC_DTYPE_F32, 1, 5, 0, 0);
}

static shmc_stream_writer_t *open_writer(const char *name, uint32_t flags, uint32_t slots, uint32_t readers)
{
    shmc_stream_options_t o;
    shmc_stream_options_init(&o);
    o.flags = flags;
    o.num_slots = slots;
    o.max_readers = readers;
    o.control_cap = 256;
    shmc_stream_writer_t *w = NULL;
    CHECK_OK(shmc_stream_writer_open(name, schema, 2, &o, &w));
    return w;
}

static shmc_stream_reader_t *open_reader(const char *name, const shmc_stream_field_t *expected, uint32_t n)
{
    shmc_stream_reader_options_t o;
    shmc_stream_reader_options_init(&o);
    o.connect_timeout_ns = 10 * SECOND;
    shmc_stream_reader_t *r = NULL;
    CHECK_OK(shmc_stream_reader_open(name, expected, n, &o, &r));
    return r;
}

static shmc_stream_frame_t new_frame(void)
{
    shmc_stream_frame_t f;
    memset(&f, 0, sizeof f);
    f.size = sizeof f;
    return f;
}

/* Frame `seq`: every byte of rgb is (seq + i) & 255, pose[i] = seq + i. */
static void fill_frame(shmc_stream_frame_t *f, uint64_t seq)
{
    unsigned char *rgb = f->field_data[0];
    for (size_t i = 0; i < H * W * 3; i++) rgb[i] = (unsigned char)(seq + i);
    float *pose = f->field_data[1];
    for (int i = 0; i < 5; i++) pose[i] = (float)(seq + (uint64_t)i);
}

static void check_frame(const shmc_stream_frame_t *f, uint64_t seq)
{
    CHECK(f->seq == seq);
    CHECK(f->nfields == 2);
    CHECK(f->field_nbytes[0] == H * W * 3 && f->field_nbytes[1] == 20);
    const unsigned char *rgb = f->field_data[0];
    for (size_t i = 0; i < H * W * 3; i++) CHECK(rgb[i] == (unsigned char)(seq + i));
    const float *pose = f->field_data[1];
    for (int i = 0; i < 5; i++) CHECK(pose[i] == (float)(seq + (uint64_t)i));
}

static void write_frame(shmc_stream_writer_t *w, uint64_t seq, int64_t timeout_ns)
{
    shmc_stream_frame_t f = new_frame();
    CHECK_OK(shmc_stream_writer_loan(w, &f, timeout_ns));
    CHECK(f.seq == seq);
    fill_frame(&f, seq);
    CHECK_OK(shmc_stream_writer_commit(w, 1000 + seq, NULL));
}

static shmc_stream_stats_t reader_stats(shmc_stream_reader_t *r)
{
    shmc_stream_stats_t s;
    s.size = sizeof s;
    CHECK_OK(shmc_stream_reader_stats(r, &s));
    return s;
}

static shmc_stream_stats_t writer_stats(shmc_stream_writer_t *w)
{
    shmc_stream_stats_t s;
    s.size = sizeof s;
    CHECK_OK(shmc_stream_writer_stats(w, &s));
    return s;
}

static int stream_exists(const char *name) { return pattern_segment_exists(name, SHMC_PATTERN_STREAM); }

/* ------------------------------------------------------------------ arguments and schemas */

static void test_arguments(void)
{
    const char *name = unique_name("stream-args");
    shmc_stream_writer_t *w = (shmc_stream_writer_t *)1;
    CHECK_RC(shmc_stream_writer_open(name, schema, 2, NULL, NULL), SHMC_EINVAL);
    CHECK_RC(shmc_stream_writer_open(name, NULL, 2, NULL, &w), SHMC_EINVAL);
    CHECK(w == NULL);
    CHECK_RC(shmc_stream_writer_open(NULL, schema, 2, NULL, &w), SHMC_EINVAL);
    CHECK_RC(shmc_stream_writer_open("..", schema, 2, NULL, &w), SHMC_ENAME);
    CHECK_RC(shmc_stream_writer_open(name, schema, 0, NULL, &w), SHMC_ESCHEMA);
    CHECK_RC(shmc_stream_writer_open(name, schema, SHMC_STREAM_MAX_FIELDS + 1, NULL, &w), SHMC_ESCHEMA);

    shmc_stream_field_t bad[2] = {schema[0], schema[1]};
    snprintf(bad[1].name, sizeof bad[1].name, "rgb"); /* duplicate name */
    CHECK_RC(shmc_stream_writer_open(name, bad, 2, NULL, &w), SHMC_ESCHEMA);
    bad[1] = schema[1];
    bad[1].name[0] = '\0'; /* empty name */
    CHECK_RC(shmc_stream_writer_open(name, bad, 2, NULL, &w), SHMC_ESCHEMA);
    bad[1] = schema[1];
    memset(bad[1].name, 'x', sizeof bad[1].name); /* not terminated */
    CHECK_RC(shmc_stream_writer_open(name, bad, 2, NULL, &w), SHMC_ESCHEMA);
    bad[1] = schema[1];
    bad[1].dtype = 99;
    CHECK_RC(shmc_stream_writer_open(name, bad, 2, NULL, &w), SHMC_ESCHEMA);
    bad[1] = schema[1];
    bad[1].ndim = SHMC_STREAM_MAX_DIMS + 1;
    CHECK_RC(shmc_stream_writer_open(name, bad, 2, NULL, &w), SHMC_ESCHEMA);
    bad[1] = schema[1];
    bad[1].shape[0] = 0;
    CHECK_RC(shmc_stream_writer_open(name, bad, 2, NULL, &w), SHMC_ESCHEMA);
    bad[1] = field("huge", SHMC_DTYPE_F64, 2, 1 << 20, 1 << 10, 0); /* 8 GiB */
    CHECK_RC(shmc_stream_writer_open(name, bad, 2, NULL, &w), SHMC_EMSGSIZE);
    bad[1] = field("overflow", SHMC_DTYPE_F64, 3, UINT64_MAX / 2, 4, 4);
    CHECK_RC(shmc_stream_writer_open(name, bad, 2, NULL, &w), SHMC_EMSGSIZE);

    shmc_stream_options_t o;
    shmc_stream_options_init(&o);
    CHECK(o.size == sizeof o && o.max_readers == 4 && o.num_slots == 0 && o.control_cap == 4096);
    o.num_slots = 3; /* latest-frame needs max_readers + 2 */
    CHECK_RC(shmc_stream_writer_open(name, schema, 2, &o, &w), SHMC_EINVAL);
    shmc_stream_options_init(&o);
    o.flags = 1u << 20;
    CHECK_RC(shmc_stream_writer_open(name, schema, 2, &o, &w), SHMC_EINVAL);
    shmc_stream_options_init(&o);
    o.control_cap = 100; /* not a multiple of 8 */
    CHECK_RC(shmc_stream_writer_open(name, schema, 2, &o, &w), SHMC_EINVAL);
    shmc_stream_options_init(&o);
    o.max_readers = 0;
    CHECK_RC(shmc_stream_writer_open(name, schema, 2, &o, &w), SHMC_EINVAL);
    shmc_stream_options_init(&o);
    o.size = 8;
    CHECK_RC(shmc_stream_writer_open(name, schema, 2, &o, &w), SHMC_EINVAL);
    CHECK(!stream_exists(name));

    shmc_stream_reader_t *r = (shmc_stream_reader_t *)1;
    shmc_stream_reader_options_t ro;
    shmc_stream_reader_options_init(&ro);
    ro.connect_timeout_ns = 0;
    CHECK_RC(shmc_stream_reader_open(name, NULL, 0, &ro, NULL), SHMC_EINVAL);
    CHECK_RC(shmc_stream_reader_open(name, NULL, 0, &ro, &r), SHMC_ENOENT);
    CHECK(r == NULL);
    CHECK_RC(shmc_stream_reader_open(name, NULL, 2, &ro, &r), SHMC_EINVAL);
    CHECK_RC(shmc_stream_reader_open(name, bad, 2, &ro, &r), SHMC_ESCHEMA);
    ro.flags = 2;
    CHECK_RC(shmc_stream_reader_open(name, NULL, 0, &ro, &r), SHMC_EINVAL);

    /* Every handle function refuses NULL; closing NULL does nothing. */
    shmc_stream_frame_t f = new_frame();
    uint32_t count, id, type;
    int32_t pid;
    size_t len;
    const void *data;
    CHECK_RC(shmc_stream_writer_loan(NULL, &f, 0), SHMC_EINVAL);
    CHECK_RC(shmc_stream_writer_commit(NULL, 0, NULL), SHMC_EINVAL);
    CHECK_RC(shmc_stream_writer_cancel(NULL), SHMC_EINVAL);
    CHECK_RC(shmc_stream_writer_write(NULL, NULL, NULL, 0, 0), SHMC_EINVAL);
    CHECK_RC(shmc_stream_writer_set_metadata(NULL, "x", 1), SHMC_EINVAL);
    CHECK_RC(shmc_stream_writer_poll_control(NULL, &id, &pid, &type, NULL, 0, &len), SHMC_EINVAL);
    CHECK_RC(shmc_stream_writer_readers(NULL, NULL, 0, &count), SHMC_EINVAL);
    CHECK_RC(shmc_stream_writer_reap(NULL, 0, NULL), SHMC_EINVAL);
    CHECK_RC(shmc_stream_writer_schema(NULL, NULL, 0, &count), SHMC_EINVAL);
    CHECK_RC(shmc_stream_writer_stats(NULL, NULL), SHMC_EINVAL);
    CHECK_RC(shmc_stream_reader_acquire(NULL, &f, 0), SHMC_EINVAL);
    CHECK_RC(shmc_stream_reader_acquire_latest(NULL, &f, 0), SHMC_EINVAL);
    CHECK_RC(shmc_stream_reader_release(NULL), SHMC_EINVAL);
    CHECK_RC(shmc_stream_reader_metadata(NULL, &data, &len), SHMC_EINVAL);
    CHECK_RC(shmc_stream_reader_schema(NULL, NULL, 0, &count), SHMC_EINVAL);
    CHECK_RC(shmc_stream_reader_send_control(NULL, 1, NULL, 0), SHMC_EINVAL);
    CHECK_RC(shmc_stream_reader_follow(NULL), SHMC_EINVAL);
    CHECK_RC(shmc_stream_reader_stats(NULL, NULL), SHMC_EINVAL);
    CHECK(shmc_stream_reader_writer_alive(NULL) == 0);
    CHECK_OK(shmc_stream_writer_close(NULL));
    CHECK_OK(shmc_stream_reader_close(NULL));
    shmc_stream_info_t info;
    info.size = sizeof info;
    CHECK_RC(shmc_stream_inspect(name, NULL, NULL, 0, NULL, 0, NULL, NULL, 0), SHMC_EINVAL);
    CHECK_RC(shmc_stream_inspect(name, &info, NULL, 1, NULL, 0, NULL, NULL, 0), SHMC_EINVAL);
    CHECK_RC(shmc_stream_inspect(name, &info, NULL, 0, NULL, 0, NULL, NULL, 0), SHMC_ENOENT);

    /* XXH64 test vectors. */
    CHECK(shmc_stream_checksum("", 0) == 0xEF46DB3751D8E999ull);
    CHECK(shmc_stream_checksum("a", 1) == 0xD24EC4F1A98C6E5Bull);
    CHECK(shmc_stream_checksum("abc", 3) == 0x44BC2CF5AD770999ull);
    printf("arguments: ok\n");
}

/* ------------------------------------------------------------------ one process */

static void test_roundtrip(void)
{
    const char *name = unique_name("stream-roundtrip");
    shmc_stream_writer_t *w = open_writer(name, 0, 0, 2);
    shmc_stream_reader_t *r = open_reader(name, NULL, 0);

    shmc_stream_field_t got[4];
    uint32_t count = 0;
    CHECK_OK(shmc_stream_reader_schema(r, got, 4, &count));
    CHECK(count == 2 && strcmp(got[0].name, "rgb") == 0 && got[0].ndim == 3 && got[0].shape[2] == 3);
    CHECK(got[0].offset == 0 && got[0].capacity == H * W * 3);
    CHECK(got[1].offset == 128 && got[1].capacity == 20 && got[1].dtype == SHMC_DTYPE_F32);
    CHECK_OK(shmc_stream_writer_schema(w, got, 1, &count));
    CHECK(count == 2);

    shmc_stream_frame_t f = new_frame();
    CHECK_RC(shmc_stream_reader_acquire(r, &f, 0), SHMC_EAGAIN);
    CHECK_RC(shmc_stream_reader_acquire(r, &f, 20 * MSEC), SHMC_ETIMEDOUT);
    CHECK_RC(shmc_stream_reader_release(r), SHMC_EINVAL);

    /* Loan, fill in place, commit with a timestamp; the fields are 64-byte aligned in memory. */
    shmc_stream_frame_t loan = new_frame();
    CHECK_RC(shmc_stream_writer_commit(w, 0, NULL), SHMC_EINVAL);
    CHECK_OK(shmc_stream_writer_loan(w, &loan, 0));
    CHECK_RC(shmc_stream_writer_loan(w, &loan, 0), SHMC_EINVAL);
    CHECK(((uintptr_t)loan.field_data[0] & 63) == 0 && ((uintptr_t)loan.field_data[1] & 63) == 0);
    CHECK(loan.field_nbytes[0] == H * W * 3 && loan.seq == 0);
    fill_frame(&loan, 0);
    uint64_t too_big[2] = {H * W * 3 + 1, 20};
    CHECK_RC(shmc_stream_writer_commit(w, 5, too_big), SHMC_EMSGSIZE); /* the loan stays open */
    CHECK_OK(shmc_stream_writer_commit(w, 5, NULL));

    CHECK_OK(shmc_stream_reader_acquire(r, &f, SECOND));
    check_frame(&f, 0);
    CHECK(f.timestamp_ns == 5 && f.nbytes == H * W * 3 + 20 && f.dropped == 0 && f.checksum == 0);
    CHECK(f.field_data[0] == (unsigned char *)f.data);
    CHECK_RC(shmc_stream_reader_acquire(r, &f, 0), SHMC_EINVAL); /* one frame at a time */
    CHECK_OK(shmc_stream_reader_release(r));

    /* A cancelled loan is skipped; its sequence number is given to the next frame. */
    CHECK_OK(shmc_stream_writer_loan(w, &loan, 0));
    CHECK_OK(shmc_stream_writer_cancel(w));
    CHECK_RC(shmc_stream_writer_cancel(w), SHMC_EINVAL);

    /* One copy, with a shorter second field (a variable-length field), timestamp 0 = now. */
    unsigned char rgb[H * W * 3];
    float pose[5] = {1, 2, 3, 4, 5};
    for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (unsigned char)(7 * i);
    const void *data[2] = {rgb, pose};
    uint64_t lens[2] = {sizeof rgb, 8};
    uint64_t before = (uint64_t)time(NULL);
    (void)before;
    CHECK_OK(shmc_stream_writer_write(w, data, lens, 0, 0));
    lens[1] = 21;
    CHECK_RC(shmc_stream_writer_write(w, data, lens, 0, 0), SHMC_EMSGSIZE);
    const void *missing[2] = {rgb, NULL};
    CHECK_RC(shmc_stream_writer_write(w, missing, NULL, 0, 0), SHMC_EINVAL);
    CHECK_OK(shmc_stream_reader_acquire(r, &f, SECOND));
    CHECK(f.seq == 1 && f.field_nbytes[1] == 8 && f.nbytes == sizeof rgb + 8 && f.timestamp_ns > 0);
    CHECK(memcmp(f.field_data[0], rgb, sizeof rgb) == 0 && memcmp(f.field_data[1], pose, 8) == 0);
    CHECK_OK(shmc_stream_reader_release(r));
    CHECK_RC(shmc_stream_reader_acquire(r, &f, 0), SHMC_EAGAIN); /* the oversize write wrote nothing */

    shmc_stream_stats_t ws = writer_stats(w), rs = reader_stats(r);
    CHECK(ws.frames == 2 && ws.next_seq == 2 && ws.readers == 1 && ws.frame_capacity == H * W * 3 + 20);
    CHECK(rs.frames == 2 && rs.dropped == 0 && rs.writer_alive == 1 && rs.next_seq == 2);
    CHECK(shmc_stream_reader_writer_alive(r) == 1);

    /* A second writer on a live stream: busy. */
    shmc_stream_options_t o;
    shmc_stream_options_init(&o);
    shmc_stream_writer_t *second = NULL;
    CHECK_RC(shmc_stream_writer_open(name, schema, 2, &o, &second), SHMC_EBUSY);
    o.max_readers = 7;
    CHECK_RC(shmc_stream_writer_open(name, schema, 2, &o, &second), SHMC_EBUSY);

    /* The writer closes: the reader reads what is left, then SHMC_ECLOSED. */
    write_frame(w, 2, 0);
    CHECK_OK(shmc_stream_writer_close(w));
    CHECK(!stream_exists(name));
    CHECK_OK(shmc_stream_reader_acquire(r, &f, 0));
    check_frame(&f, 2);
    CHECK_OK(shmc_stream_reader_release(r));
    CHECK_RC(shmc_stream_reader_acquire(r, &f, SECOND), SHMC_ECLOSED);
    CHECK(shmc_stream_reader_writer_alive(r) == 0);
    CHECK_OK(shmc_stream_reader_close(r));
    printf("roundtrip: ok\n");
}

static void test_schema_mismatch(void)
{
    const char *name = unique_name("stream-schema");
    shmc_stream_writer_t *w = open_writer(name, 0, 0, 2);
    shmc_stream_reader_options_t o;
    shmc_stream_reader_options_init(&o);
    o.connect_timeout_ns = 0;
    shmc_stream_reader_t *r = NULL;
    shmc_stream_field_t other[2] = {schema[0], schema[1]};
    other[0].shape[0] = H + 1;
    CHECK_RC(shmc_stream_reader_open(name, other, 2, &o, &r), SHMC_ESCHEMA);
    other[0] = schema[0];
    other[1].dtype = SHMC_DTYPE_F64;
    CHECK_RC(shmc_stream_reader_open(name, other, 2, &o, &r), SHMC_ESCHEMA);
    CHECK_RC(shmc_stream_reader_open(name, schema, 1, &o, &r), SHMC_ESCHEMA);
    other[1] = schema[1];
    snprintf(other[1].name, sizeof other[1].name, "Pose");
    CHECK_RC(shmc_stream_reader_open(name, other, 2, &o, &r), SHMC_ESCHEMA);
    CHECK_OK(shmc_stream_reader_open(name, schema, 2, &o, &r));
    shmc_stream_info_t info;
    info.size = sizeof info;
    uint32_t n = 0;
    CHECK_OK(shmc_stream_inspect(name, &info, NULL, 0, NULL, 0, &n, NULL, 0));
    CHECK(info.readers == 1 && n == 1); /* the failed opens left no entry behind */
    CHECK_OK(shmc_stream_reader_close(r));
    CHECK_OK(shmc_stream_writer_close(w));
    printf("schema mismatch: ok\n");
}

static void test_metadata(void)
{
    const char *name = unique_name("stream-metadata");
    shmc_stream_options_t o;
    shmc_stream_options_init(&o);
    o.metadata_cap = 32;
    shmc_stream_writer_t *w = NULL;
    CHECK_OK(shmc_stream_writer_open(name, schema, 2, &o, &w));
    shmc_stream_reader_t *r = open_reader(name, schema, 2);
    const void *data;
    size_t len;
    CHECK_RC(shmc_stream_reader_metadata(r, &data, &len), SHMC_EAGAIN);
    char big[33] = {0};
    CHECK_RC(shmc_stream_writer_set_metadata(w, big, sizeof big), SHMC_EMSGSIZE);
    CHECK_RC(shmc_stream_writer_set_metadata(w, NULL, 3), SHMC_EINVAL);
    const char *json = "{\"fx\": 600.5}";
    CHECK_OK(shmc_stream_writer_set_metadata(w, json, strlen(json)));
    CHECK_RC(shmc_stream_writer_set_metadata(w, "other", 5), SHMC_EWRITTEN);
    CHECK_OK(shmc_stream_reader_metadata(r, &data, &len));
    CHECK(len == strlen(json) && memcmp(data, json, len) == 0);

    shmc_stream_info_t info;
    info.size = sizeof info;
    char copy[64];
    shmc_stream_field_t fields[2];
    CHECK_OK(shmc_stream_inspect(name, &info, fields, 2, NULL, 0, NULL, copy, sizeof copy));
    CHECK(info.metadata_written == 1 && info.metadata_len == strlen(json) && memcmp(copy, json, len) == 0);
    CHECK(info.nfields == 2 && strcmp(fields[1].name, "pose") == 0 && info.metadata_cap == 32);
    CHECK_OK(shmc_stream_reader_close(r));
    CHECK_OK(shmc_stream_writer_close(w));
    printf("metadata: ok\n");
}

/* Latest-frame: a held frame is pinned; a writer that never waits goes round it many times. */
static void test_latest_pins_held_frame(void)
{
    const char *name = unique_name("stream-pin");
    shmc_stream_writer_t *w = open_writer(name, 0, 4, 2);
    shmc_stream_reader_t *r = open_reader(name, NULL, 0);
    shmc_stream_reader_t *r2 = open_reader(name, NULL, 0);
    write_frame(w, 0, 0);
    shmc_stream_frame_t f = new_frame(), f2 = new_frame();
    CHECK_OK(shmc_stream_reader_acquire(r, &f, 0));
    check_frame(&f, 0);
    /* 100 frames through 4 slots, none waits: the held frame survives. */
    for (uint64_t seq = 1; seq <= 100; seq++) {
        write_frame(w, seq, 0);
        if (seq == 50) { /* a second reader pins another slot meanwhile */
            CHECK_OK(shmc_stream_reader_acquire_latest(r2, &f2, 0));
            check_frame(&f2, 50);
        }
    }
    check_frame(&f, 0);
    check_frame(&f2, 50);
    CHECK(writer_stats(w).dropped > 0); /* positions given up for the pinned slots */
    uint32_t count = 0;
    shmc_stream_reader_info_t readers[4];
    CHECK_OK(shmc_stream_writer_readers(w, readers, 4, &count));
    CHECK(count == 2 && readers[0].holding == 1 && readers[1].holding == 1);
    CHECK(readers[0].pid == getpid() && readers[0].alive == 1);
    CHECK_OK(shmc_stream_reader_release(r));
    CHECK_OK(shmc_stream_reader_release(r2));
    /* Every frame in order: the next one is the oldest still there; latest: the newest. */
    CHECK_OK(shmc_stream_reader_acquire(r, &f, 0));
    CHECK(f.seq > 1 && f.seq <= 100 && f.dropped == f.seq - 1);
    check_frame(&f, f.seq);
    CHECK_OK(shmc_stream_reader_release(r));
    CHECK_OK(shmc_stream_reader_acquire_latest(r, &f, 0));
    check_frame(&f, 100);
    CHECK_OK(shmc_stream_reader_release(r));
    CHECK_RC(shmc_stream_reader_acquire_latest(r, &f, 0), SHMC_EAGAIN);
    shmc_stream_stats_t s = reader_stats(r);
    CHECK(s.frames == 3 && s.frames + s.dropped == 101);
    CHECK_OK(shmc_stream_writer_readers(w, readers, 4, &count));
    CHECK(readers[0].frames_seen == 3 && readers[0].last_seq == 100 && readers[0].holding == 0);
    CHECK_OK(shmc_stream_reader_close(r));
    CHECK_OK(shmc_stream_reader_close(r2));
    CHECK_OK(shmc_stream_writer_close(w));
    printf("latest-frame pinning: ok\n");
}

static void test_lossless_waits_for_held_frame(void)
{
    const char *name = unique_name("stream-lossless");
    shmc_stream_writer_t *w = open_writer(name, SHMC_LOSSLESS, 4, 2);
    shmc_stream_reader_t *r = open_reader(name, NULL, 0);
    shmc_stream_frame_t f = new_frame();
    for (uint64_t seq = 0; seq < 4; seq++) write_frame(w, seq, 0);
    shmc_stream_frame_t loan = new_frame();
    CHECK_RC(shmc_stream_writer_loan(w, &loan, 0), SHMC_EAGAIN);
    CHECK_RC(shmc_stream_writer_loan(w, &loan, 20 * MSEC), SHMC_ETIMEDOUT);
    CHECK_OK(shmc_stream_reader_acquire(r, &f, 0));
    CHECK_RC(shmc_stream_writer_loan(w, &loan, 0), SHMC_EAGAIN); /* held: still no room */
    check_frame(&f, 0);
    CHECK_OK(shmc_stream_reader_release(r));
    write_frame(w, 4, 0);
    /* latest() skips the older ones (counted) and frees the writer. */
    CHECK_OK(shmc_stream_reader_acquire_latest(r, &f, 0));
    check_frame(&f, 4);
    CHECK(f.dropped == 3);
    for (uint64_t seq = 5; seq < 8; seq++) write_frame(w, seq, 0);
    CHECK_RC(shmc_stream_writer_loan(w, &loan, 0), SHMC_EAGAIN);
    CHECK_OK(shmc_stream_reader_release(r));
    CHECK_OK(shmc_stream_reader_close(r)); /* no reader left: the writer never waits */
    for (uint64_t seq = 8; seq < 20; seq++) write_frame(w, seq, 0);
    CHECK_OK(shmc_stream_writer_close(w));
    printf("lossless: ok\n");
}

typedef struct thread_arg {
    const char *name;
    uint64_t count;
} thread_arg_t;

static void *lossless_writer_thread(void *p)
{
    thread_arg_t *a = p;
    shmc_stream_writer_t *w = open_writer(a->name, SHMC_LOSSLESS | SHMC_STREAM_CHECKSUM, 4, 2);
    while (1) { /* wait for the reader */
        shmc_stream_stats_t s = writer_stats(w);
        if (s.readers == 1) break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    for (uint64_t seq = 0; seq < a->count; seq++) write_frame(w, seq, 10 * SECOND);
    /* Stay until the reader has read everything (it leaves). */
    while (writer_stats(w).readers) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    CHECK_OK(shmc_stream_writer_close(w));
    return NULL;
}

static void test_lossless_threads(void)
{
    thread_arg_t a = {unique_name("stream-threads"), scaled(20000)};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, lossless_writer_thread, &a) == 0);
    shmc_stream_reader_t *r = open_reader(a.name, schema, 2);
    shmc_stream_frame_t f = new_frame();
    for (uint64_t seq = 0; seq < a.count; seq++) {
        CHECK_OK(shmc_stream_reader_acquire(r, &f, 10 * SECOND));
        check_frame(&f, seq);
        CHECK(f.checksum != 0 && f.timestamp_ns == 1000 + seq);
        CHECK_OK(shmc_stream_reader_release(r));
    }
    shmc_stream_stats_t s = reader_stats(r);
    CHECK(s.frames == a.count && s.dropped == 0 && s.checksum_failures == 0);
    CHECK_OK(shmc_stream_reader_close(r));
    CHECK(pthread_join(t, NULL) == 0);
    printf("lossless threads: %llu frames in order, checksums verified\n", (unsigned long long)a.count);
}

static void *latest_writer_thread(void *p)
{
    thread_arg_t *a = p;
    shmc_stream_writer_t *w = open_writer(a->name, 0, 0, 2);
    while (writer_stats(w).readers < 1) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    for (uint64_t seq = 0; seq < a->count; seq++) write_frame(w, seq, 0); /* never waits */
    while (writer_stats(w).readers) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    CHECK_OK(shmc_stream_writer_close(w));
    return NULL;
}

static void test_latest_threads(void)
{
    /* A reader holding frames while the writer laps the ring: every frame it gets is intact. */
    thread_arg_t a = {unique_name("stream-latest-threads"), scaled(50000)};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, latest_writer_thread, &a) == 0);
    shmc_stream_reader_t *r = open_reader(a.name, schema, 2);
    shmc_stream_frame_t f = new_frame();
    uint64_t got = 0, last = 0;
    int first = 1;
    while (first || last + 1 < a.count) {
        int rc = (got % 3 == 0) ? shmc_stream_reader_acquire_latest(r, &f, 10 * SECOND)
                                : shmc_stream_reader_acquire(r, &f, 10 * SECOND);
        CHECK_OK(rc);
        check_frame(&f, f.seq);
        CHECK(first || f.seq > last);
        first = 0;
        last = f.seq;
        got++;
        CHECK_OK(shmc_stream_reader_release(r));
    }
    shmc_stream_stats_t s = reader_stats(r);
    CHECK(s.frames == got);
    CHECK_OK(shmc_stream_reader_close(r));
    CHECK(pthread_join(t, NULL) == 0);
    printf("latest threads: %llu intact frames of %llu\n", (unsigned long long)got, (unsigned long long)a.count);
}

static void test_control(void)
{
    const char *name = unique_name("stream-control");
    shmc_stream_writer_t *w = open_writer(name, 0, 0, 2); /* control_cap 256 */
    shmc_stream_reader_t *r = open_reader(name, NULL, 0);
    shmc_stream_reader_t *r2 = open_reader(name, NULL, 0);
    uint32_t id, type;
    int32_t pid;
    size_t len;
    char buf[256];
    CHECK_RC(shmc_stream_writer_poll_control(w, &id, &pid, &type, buf, sizeof buf, &len), SHMC_EAGAIN);
    char big[256] = {0};
    CHECK_RC(shmc_stream_reader_send_control(r, 1, big, 256 / 2 - 16 + 1), SHMC_EMSGSIZE);
    CHECK_RC(shmc_stream_reader_send_control(r, 0xFFFFFFFFu, NULL, 0), SHMC_EINVAL);
    /* Many rounds through the ring, with sizes that make it wrap at every offset. */
    uint64_t sent = 0, received = 0;
    for (int round = 0; round < 200; round++) {
        int n = 0;
        for (;; n++) {
            char msg[64];
            size_t mlen = (size_t)((sent * 7) % 40);
            memset(msg, (int)(sent & 0xFF), sizeof msg);
            int rc = shmc_stream_reader_send_control(r, (uint32_t)(sent + 1), msg, mlen);
            if (rc == SHMC_EAGAIN) break;
            CHECK_OK(rc);
            sent++;
        }
        CHECK(n > 0);
        CHECK_OK(shmc_stream_reader_send_control(r2, 0x40000000u, "r2", 2));
        int from_r2 = 0;
        for (;;) {
            int rc = shmc_stream_writer_poll_control(w, &id, &pid, &type, buf, sizeof buf, &len);
            if (rc == SHMC_EAGAIN) break;
            CHECK_OK(rc);
            CHECK(pid == getpid());
            if (type == 0x40000000u) {
                CHECK(len == 2 && memcmp(buf, "r2", 2) == 0);
                from_r2++;
                continue;
            }
            CHECK(type == received + 1 && len == (size_t)((received * 7) % 40));
            for (size_t i = 0; i < len; i++) CHECK((unsigned char)buf[i] == (received & 0xFF));
            received++;
        }
        CHECK(from_r2 == 1 && received == sent);
    }
    /* Too small a buffer: ETRUNC with the size, nothing taken. */
    CHECK_OK(shmc_stream_reader_send_control(r, 5, "hello", 5));
    CHECK_RC(shmc_stream_writer_poll_control(w, &id, &pid, &type, buf, 2, &len), SHMC_ETRUNC);
    CHECK(len == 5);
    CHECK_OK(shmc_stream_writer_poll_control(w, &id, &pid, &type, buf, 5, &len));
    CHECK(type == 5 && len == 5 && memcmp(buf, "hello", 5) == 0);
    shmc_stream_stats_t rs = reader_stats(r), ws = writer_stats(w);
    CHECK(rs.control_sent == sent + 1 && ws.control_received == sent + 1 + 200);
    /* A message sent just before a clean close still reaches the writer. */
    CHECK_OK(shmc_stream_reader_send_control(r2, 9, "bye", 3));
    CHECK_OK(shmc_stream_reader_close(r2));
    CHECK_OK(shmc_stream_writer_poll_control(w, &id, &pid, &type, buf, sizeof buf, &len));
    CHECK(type == 9 && len == 3);
    CHECK_OK(shmc_stream_reader_close(r));
    CHECK_OK(shmc_stream_writer_close(w));
    printf("control: %llu messages: ok\n", (unsigned long long)sent);
}

static void test_checksum_and_corruption(void)
{
    const char *name = unique_name("stream-checksum");
    shmc_stream_writer_t *w = open_writer(name, SHMC_STREAM_CHECKSUM, 0, 2);
    shmc_stream_reader_t *r = open_reader(name, NULL, 0);
    shmc_stream_frame_t loan = new_frame(), f = new_frame();
    CHECK_OK(shmc_stream_writer_loan(w, &loan, 0));
    fill_frame(&loan, 0);
    unsigned char *rgb = loan.field_data[0];
    CHECK_OK(shmc_stream_writer_commit(w, 0, NULL));
    rgb[3] ^= 0x40; /* a stray write into the committed frame */
    write_frame(w, 1, 0);
    CHECK_RC(shmc_stream_reader_acquire(r, &f, 0), SHMC_ECHECKSUM);
    CHECK_OK(shmc_stream_reader_acquire(r, &f, 0)); /* the bad frame was skipped */
    check_frame(&f, 1);
    uint64_t sum = 0;
    {
        /* The checksum covers the used bytes of every field, in order. */
        unsigned char all[H * W * 3 + 20];
        memcpy(all, f.field_data[0], H * W * 3);
        memcpy(all + H * W * 3, f.field_data[1], 20);
        sum = shmc_stream_checksum(all, sizeof all);
    }
    CHECK(f.checksum == sum);
    CHECK_OK(shmc_stream_reader_release(r));
    CHECK(reader_stats(r).checksum_failures == 1);

    /* Corrupt stream regions are refused with SHMC_EBADSEG; lengths beyond a field's capacity too. */
    char os_name[256];
    CHECK_OK(shmc_os_name(name, SHMC_PATTERN_STREAM, os_name, sizeof os_name));
    shmi_channel_t ch;
    CHECK_OK(shmi_channel_attach(&ch, os_name, SHMC_PATTERN_STREAM, 0));
    shmi_stream_header_t *h = (shmi_stream_header_t *)ch.extra;
    shmc_stream_reader_options_t o;
    shmc_stream_reader_options_init(&o);
    o.connect_timeout_ns = 0;
    shmc_stream_reader_t *bad = NULL;
    shmc_stream_info_t info;
    info.size = sizeof info;
    uint32_t saved = h->nfields;
    h->nfields = 3;
    CHECK_RC(shmc_stream_reader_open(name, NULL, 0, &o, &bad), SHMC_EBADSEG);
    CHECK_RC(shmc_stream_inspect(name, &info, NULL, 0, NULL, 0, NULL, NULL, 0), SHMC_EBADSEG);
    h->nfields = saved;
    shmc_stream_field_t *desc = (shmc_stream_field_t *)(ch.extra + SHMI_STREAM_HEADER_BYTES);
    desc[0].shape[0] = 1000;
    CHECK_RC(shmc_stream_reader_open(name, NULL, 0, &o, &bad), SHMC_EBADSEG);
    desc[0].shape[0] = H;
    desc[1].name[39] = 'x';
    CHECK_RC(shmc_stream_reader_open(name, NULL, 0, &o, &bad), SHMC_EBADSEG);
    desc[1].name[39] = 0;
    CHECK_OK(shmc_stream_reader_open(name, NULL, 0, &o, &bad));
    CHECK_OK(shmc_stream_reader_close(bad));
    write_frame(w, 2, 0);
    uint32_t *lens = (uint32_t *)((unsigned char *)shmi_ring_payload(&ch.ring, 2) + SHMI_FRAME_FIXED_BYTES);
    lens[1] = 21;
    CHECK_RC(shmc_stream_reader_acquire(r, &f, 0), SHMC_EBADSEG);
    CHECK_RC(shmc_stream_reader_acquire(r, &f, 0), SHMC_EAGAIN);
    shmi_channel_detach(&ch);
    CHECK_OK(shmc_stream_reader_close(r));
    CHECK_OK(shmc_stream_writer_close(w));
    printf("checksum and corruption: ok\n");
}

static void test_evict_stale_reader(void)
{
    const char *name = unique_name("stream-evict");
    shmc_stream_writer_t *w = open_writer(name, SHMC_LOSSLESS, 4, 2);
    shmc_stream_reader_t *r = open_reader(name, NULL, 0);
    for (uint64_t seq = 0; seq < 4; seq++) write_frame(w, seq, 0);
    shmc_stream_frame_t f = new_frame(), loan = new_frame();
    CHECK_OK(shmc_stream_reader_acquire(r, &f, 0));
    CHECK_RC(shmc_stream_writer_loan(w, &loan, 0), SHMC_EAGAIN);
    struct timespec ts = {0, 60000000};
    nanosleep(&ts, NULL);
    uint32_t reaped = 99;
    CHECK_OK(shmc_stream_writer_reap(w, SECOND, &reaped)); /* its heartbeat is fresher than 1 s */
    CHECK(reaped == 0);
    CHECK_OK(shmc_stream_writer_reap(w, 50 * MSEC, &reaped));
    CHECK(reaped == 1 && writer_stats(w).readers_evicted == 1);
    write_frame(w, 4, 0); /* no longer held back */
    CHECK_RC(shmc_stream_reader_release(r), SHMC_ESTALE);
    write_frame(w, 5, 0);
    CHECK_OK(shmc_stream_reader_acquire(r, &f, 0)); /* resumed at the newest */
    check_frame(&f, 5);
    CHECK_OK(shmc_stream_reader_release(r));
    CHECK_OK(shmc_stream_reader_close(r));
    CHECK_OK(shmc_stream_writer_close(w));
    printf("evict stale reader: ok\n");
}

/* ------------------------------------------------------------------ processes */

static const char *proc_name;

/* Child: writes frames (latest-frame mode) until it is killed. */
static int endless_writer(int in, int out, void *arg)
{
    (void)in, (void)arg;
    shmc_stream_writer_t *w = open_writer(proc_name, 0, 8, 2);
    CHECK_OK(shmc_stream_writer_set_metadata(w, "gen1", 4));
    write_byte(out, 'r');
    for (uint64_t seq = 0;; seq++) write_frame(w, seq, 0);
}

/* Child: a restarted writer: 10 frames, then waits for the parent's word and closes. */
static int second_writer(int in, int out, void *arg)
{
    (void)arg;
    shmc_stream_writer_t *w = open_writer(proc_name, SHMC_LOSSLESS, 8, 2);
    CHECK_OK(shmc_stream_writer_set_metadata(w, "gen2", 4));
    for (uint64_t seq = 0; seq < 5; seq++) write_frame(w, seq, 10 * SECOND);
    write_byte(out, 'r');
    char byte;
    read_byte(in, &byte);
    CHECK_OK(shmc_stream_writer_close(w));
    return 0;
}

static void test_killed_writer_and_restart(void)
{
    proc_name = unique_name("stream-kill-writer");
    link_t l1, l2;
    pid_t first = spawn(endless_writer, NULL, &l1);
    expect_byte(l1.to_parent[0], 'r');
    shmc_stream_reader_t *r = open_reader(proc_name, schema, 2);
    shmc_stream_frame_t f = new_frame();
    uint64_t last = 0;
    for (int i = 0; i < 200; i++) {
        CHECK_OK(shmc_stream_reader_acquire(r, &f, 10 * SECOND));
        check_frame(&f, f.seq);
        CHECK(i == 0 || f.seq > last);
        last = f.seq;
        CHECK_OK(shmc_stream_reader_release(r));
    }
    kill_to_zombie(first);
    /* What it committed is delivered, then the death is reported (within the liveness check). */
    int rc;
    while ((rc = shmc_stream_reader_acquire(r, &f, 10 * SECOND)) == 0) {
        check_frame(&f, f.seq);
        CHECK(f.seq > last);
        last = f.seq;
        CHECK_OK(shmc_stream_reader_release(r));
    }
    CHECK_RC(rc, SHMC_EWRITERDEAD);
    CHECK(shmc_stream_reader_writer_alive(r) == 0);
    CHECK_RC(shmc_stream_reader_acquire(r, &f, 0), SHMC_EWRITERDEAD);
    CHECK(wait_child(first) == 128 + SIGKILL);
    unlink_pipes(&l1);
    CHECK(stream_exists(proc_name)); /* stale: a dead writer cannot unlink */

    /* A restarted writer replaces it; the reader follows and reads its frames from the first. */
    pid_t second = spawn(second_writer, NULL, &l2);
    expect_byte(l2.to_parent[0], 'r');
    CHECK_OK(shmc_stream_reader_acquire(r, &f, 10 * SECOND));
    check_frame(&f, 0);
    CHECK_OK(shmc_stream_reader_release(r));
    const void *meta;
    size_t len;
    CHECK_OK(shmc_stream_reader_metadata(r, &meta, &len));
    CHECK(len == 4 && memcmp(meta, "gen2", 4) == 0);
    for (uint64_t seq = 1; seq < 5; seq++) {
        CHECK_OK(shmc_stream_reader_acquire(r, &f, 10 * SECOND));
        check_frame(&f, seq);
        CHECK_OK(shmc_stream_reader_release(r));
    }
    CHECK(reader_stats(r).reconnects == 1);
    write_byte(l2.to_child[1], 'd');
    CHECK(wait_child(second) == 0);
    unlink_pipes(&l2);
    CHECK_RC(shmc_stream_reader_acquire(r, &f, 10 * SECOND), SHMC_ECLOSED);
    CHECK_OK(shmc_stream_reader_close(r));
    CHECK(!stream_exists(proc_name));
    printf("killed writer: death reported after the last frame, restart followed\n");
}

/* Child: a reader that takes one frame, holds it, says so, and waits to be killed. */
static int holding_reader(int in, int out, void *arg)
{
    (void)in, (void)arg;
    shmc_stream_reader_t *r = open_reader(proc_name, NULL, 0);
    write_byte(out, 'j');
    shmc_stream_frame_t f = new_frame();
    CHECK_OK(shmc_stream_reader_acquire(r, &f, 10 * SECOND));
    CHECK_OK(shmc_stream_reader_send_control(r, 42, "last words", 10));
    write_byte(out, 'h');
    for (;;) pause();
}

static void test_killed_reader_lossless(void)
{
    proc_name = unique_name("stream-kill-reader");
    shmc_stream_writer_t *w = open_writer(proc_name, SHMC_LOSSLESS | SHMC_STREAM_READER_DEATH, 4, 2);
    link_t l;
    pid_t child = spawn(holding_reader, NULL, &l);
    expect_byte(l.to_parent[0], 'j');
    for (uint64_t seq = 0; seq < 4; seq++) write_frame(w, seq, 10 * SECOND);
    expect_byte(l.to_parent[0], 'h');
    shmc_stream_frame_t loan = new_frame();
    CHECK_RC(shmc_stream_writer_loan(w, &loan, 0), SHMC_EAGAIN); /* held back by the reader */
    uint32_t count = 0;
    shmc_stream_reader_info_t info[2];
    CHECK_OK(shmc_stream_writer_readers(w, info, 2, &count));
    CHECK(count == 1 && info[0].pid == child && info[0].alive == 1 && info[0].holding == 0);
    CHECK(info[0].cursor == 0 && info[0].control_pending > 0);
    kill_to_zombie(child);
    /* The blocked writer reaps the dead reader and says so once; then it goes on. */
    CHECK_RC(shmc_stream_writer_loan(w, &loan, 10 * SECOND), SHMC_EREADERDEAD);
    CHECK_OK(shmc_stream_writer_loan(w, &loan, 0));
    fill_frame(&loan, 4);
    CHECK_OK(shmc_stream_writer_commit(w, 0, NULL));
    shmc_stream_stats_t s = writer_stats(w);
    CHECK(s.readers_died == 1 && s.readers == 0);
    /* Its last control message is still delivered. */
    uint32_t id, type;
    int32_t pid;
    size_t len;
    char buf[32];
    CHECK_OK(shmc_stream_writer_poll_control(w, &id, &pid, &type, buf, sizeof buf, &len));
    CHECK(type == 42 && pid == child && len == 10 && memcmp(buf, "last words", 10) == 0);
    CHECK(wait_child(child) == 128 + SIGKILL);
    unlink_pipes(&l);
    CHECK_OK(shmc_stream_writer_close(w));
    printf("killed reader: the lossless writer reported it and went on\n");
}

int main(void)
{
    scale_init(20, 500);
    make_schema();
    test_arguments();
    test_roundtrip();
    test_schema_mismatch();
    test_metadata();
    test_latest_pins_held_frame();
    test_lossless_waits_for_held_frame();
    test_control();
    test_checksum_and_corruption();
    test_evict_stale_reader();
    test_lossless_threads();
    test_latest_threads();
    test_killed_writer_and_restart();
    test_killed_reader_lossless();
    return test_result("test_stream");
}
