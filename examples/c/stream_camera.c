/*
 * stream_camera - a synthetic camera driver in C: writes FRAMES RGB frames of WIDTH x HEIGHT into
 * stream NAME, in place (loan, fill, commit), lossless: every reader gets every frame.
 *
 *   usage: stream_camera NAME FRAMES [WIDTH HEIGHT [FPS]]      (default 640 x 480, as fast as read)
 *
 * The schema is the one of examples/stream_camera.py: rgb u8[HEIGHT, WIDTH, 3] (byte i of frame k is
 * (i + 13 k) mod 256), frame_id u64 (k), exposure_us f32; the metadata is the camera's intrinsics as
 * JSON. It waits up to 10 s for a first reader, prints the control messages readers send (type 1: a
 * float32 exposure, stamped into the next frames), and at the end waits up to 10 s for its readers
 * to read the last frame before it closes the stream.
 *
 * Exit status: 0 success, 1 bad arguments, 2 the stream could not be created, 3 no reader came or a
 * write failed.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#include "shmcomm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SECOND 1000000000ll
#define SET_EXPOSURE 1u

static void pause_ns(long long ns)
{
    if (ns <= 0) return;
    struct timespec ts = {(time_t)(ns / SECOND), (long)(ns % SECOND)};
    nanosleep(&ts, NULL);
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * SECOND + ts.tv_nsec;
}

static long long number(const char *text)
{
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    return (*text && *end == '\0') ? v : -1;
}

/* 1 while a live reader has not read frame `last` yet. */
static int readers_behind(shmc_stream_writer_t *w, uint64_t last)
{
    shmc_stream_reader_info_t readers[16];
    uint32_t count = 0;
    if (shmc_stream_writer_readers(w, readers, 16, &count) != 0) return 0;
    for (uint32_t i = 0; i < count && i < 16; i++)
        if (readers[i].alive && (readers[i].frames_seen == 0 || readers[i].last_seq != last)) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s NAME FRAMES [WIDTH HEIGHT [FPS]]\n", argv[0]);
        return 1;
    }
    long long frames = number(argv[2]);
    long long width = argc >= 5 ? number(argv[3]) : 640, height = argc >= 5 ? number(argv[4]) : 480;
    long long fps = argc == 6 ? number(argv[5]) : 0;
    if (frames < 0 || width < 1 || height < 1 || fps < 0 || width * height > (1ll << 26)) {
        fprintf(stderr, "usage: %s NAME FRAMES [WIDTH HEIGHT [FPS]]\n", argv[0]);
        return 1;
    }

    shmc_stream_field_t schema[3];
    memset(schema, 0, sizeof schema);
    snprintf(schema[0].name, sizeof schema[0].name, "rgb");
    schema[0].dtype = SHMC_DTYPE_U8;
    schema[0].ndim = 3;
    schema[0].shape[0] = (uint64_t)height;
    schema[0].shape[1] = (uint64_t)width;
    schema[0].shape[2] = 3;
    snprintf(schema[1].name, sizeof schema[1].name, "frame_id");
    schema[1].dtype = SHMC_DTYPE_U64;
    snprintf(schema[2].name, sizeof schema[2].name, "exposure_us");
    schema[2].dtype = SHMC_DTYPE_F32;

    shmc_stream_options_t opts;
    shmc_stream_options_init(&opts);
    opts.flags = SHMC_LOSSLESS;
    opts.num_slots = 8;
    shmc_stream_writer_t *w = NULL;
    int rc = shmc_stream_writer_open(argv[1], schema, 3, &opts, &w);
    if (rc) {
        fprintf(stderr, "stream_camera: cannot create '%s': %s\n", argv[1], shmc_strerror(rc));
        return 2;
    }
    char meta[256];
    int n = snprintf(meta, sizeof meta,
                     "{\"width\": %lld, \"height\": %lld, \"fx\": 600.0, \"fy\": 600.0, \"cx\": %.1f, "
                     "\"cy\": %.1f, \"encoding\": \"rgb8\"}",
                     width, height, width / 2.0, height / 2.0);
    shmc_stream_writer_set_metadata(w, meta, (size_t)n);

    int status = 0;
    uint32_t count = 0;
    long long deadline = now_ns() + 10 * SECOND;
    while (shmc_stream_writer_readers(w, NULL, 0, &count) == 0 && count == 0 && now_ns() < deadline)
        pause_ns(1000000);
    if (count == 0) {
        fprintf(stderr, "stream_camera: no reader came within 10 s\n");
        shmc_stream_writer_close(w);
        return 3;
    }
    printf("stream_camera: streaming %lld frames of %lldx%lld to '%s'\n", frames, width, height, argv[1]);
    fflush(stdout);

    float exposure = 1000.0f;
    const size_t image = (size_t)(width * height * 3);
    long long start = now_ns();
    for (long long k = 0; k < frames; k++) {
        uint32_t id, type;
        int32_t pid;
        size_t len;
        unsigned char msg[64];
        while (shmc_stream_writer_poll_control(w, &id, &pid, &type, msg, sizeof msg, &len) == 0) {
            if (type == SET_EXPOSURE && len == 4) {
                memcpy(&exposure, msg, 4);
                printf("stream_camera: reader %u (pid %d) set exposure %.0f us\n", id, (int)pid, exposure);
                fflush(stdout);
            }
        }
        shmc_stream_frame_t frame;
        memset(&frame, 0, sizeof frame);
        frame.size = sizeof frame;
        rc = shmc_stream_writer_loan(w, &frame, 10 * SECOND); /* waits for the slowest reader */
        if (rc == SHMC_EREADERDEAD) rc = shmc_stream_writer_loan(w, &frame, 10 * SECOND);
        if (rc) {
            fprintf(stderr, "stream_camera: frame %lld: %s\n", k, shmc_strerror(rc));
            status = 3;
            break;
        }
        unsigned char *rgb = frame.field_data[0];
        const unsigned char add = (unsigned char)(13 * k);
        for (size_t i = 0; i < image; i++) rgb[i] = (unsigned char)(i + add);
        uint64_t id64 = (uint64_t)k;
        memcpy(frame.field_data[1], &id64, 8);
        memcpy(frame.field_data[2], &exposure, 4);
        rc = shmc_stream_writer_commit(w, 0, NULL);
        if (rc) {
            fprintf(stderr, "stream_camera: commit: %s\n", shmc_strerror(rc));
            status = 3;
            break;
        }
        if (fps) pause_ns(start + (k + 1) * SECOND / fps - now_ns());
    }
    deadline = now_ns() + 10 * SECOND;
    while (status == 0 && frames > 0 && readers_behind(w, (uint64_t)frames - 1) && now_ns() < deadline)
        pause_ns(1000000);
    shmc_stream_stats_t stats;
    stats.size = sizeof stats;
    shmc_stream_writer_stats(w, &stats);
    printf("stream_camera: done, %llu frames written\n", (unsigned long long)stats.frames);
    shmc_stream_writer_close(w);
    return status;
}
