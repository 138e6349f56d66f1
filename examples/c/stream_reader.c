/*
 * stream_reader - a C consumer of a camera stream: reads FRAMES frames of stream NAME in place and
 * checks each one against the test pattern of examples/stream_camera.py (byte i of frame k's image
 * is (i + 13 k) mod 256, frame_id is k), in order, with no frame missing.
 *
 *   usage: stream_reader NAME FRAMES
 *
 * It insists on the camera schema's field names and types (any image size), prints the metadata,
 * and sends the camera a control message (type 1: exposure 2500 us as a float32).
 *
 * Exit status: 0 every frame verified, 1 bad arguments, 2 no stream within 10 s (or another schema),
 * 3 a read failed or timed out, 4 a frame was wrong or out of order.
 */
#include "shmcomm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECOND 1000000000ll

int main(int argc, char **argv)
{
    char *end = NULL;
    long long frames = argc == 3 ? strtoll(argv[2], &end, 10) : -1;
    if (argc != 3 || *argv[2] == '\0' || *end != '\0' || frames < 0) {
        fprintf(stderr, "usage: %s NAME FRAMES\n", argv[0]);
        return 1;
    }
    shmc_stream_reader_options_t opts;
    shmc_stream_reader_options_init(&opts);
    opts.connect_timeout_ns = 10 * SECOND; /* the camera may start after us */
    shmc_stream_reader_t *r = NULL;
    int rc = shmc_stream_reader_open(argv[1], NULL, 0, &opts, &r);
    if (rc) {
        fprintf(stderr, "stream_reader: cannot open '%s': %s\n", argv[1], shmc_strerror(rc));
        return 2;
    }
    shmc_stream_field_t schema[8];
    uint32_t nfields = 0;
    shmc_stream_reader_schema(r, schema, 8, &nfields);
    if (nfields != 3 || strcmp(schema[0].name, "rgb") != 0 || schema[0].dtype != SHMC_DTYPE_U8 ||
        strcmp(schema[1].name, "frame_id") != 0 || schema[1].dtype != SHMC_DTYPE_U64) {
        fprintf(stderr, "stream_reader: '%s' is not a camera stream\n", argv[1]);
        shmc_stream_reader_close(r);
        return 2;
    }
    const void *meta;
    size_t len;
    if (shmc_stream_reader_metadata(r, &meta, &len) == 0)
        printf("stream_reader: metadata %.*s\n", (int)len, (const char *)meta);
    float exposure = 2500.0f;
    shmc_stream_reader_send_control(r, 1, &exposure, sizeof exposure);

    int status = 0;
    long long expected = -1;
    for (long long i = 0; i < frames && status == 0; i++) {
        shmc_stream_frame_t frame;
        memset(&frame, 0, sizeof frame);
        frame.size = sizeof frame;
        rc = shmc_stream_reader_acquire(r, &frame, 10 * SECOND);
        if (rc) {
            fprintf(stderr, "stream_reader: frame %lld: %s\n", i, shmc_strerror(rc));
            status = 3;
            break;
        }
        const unsigned char *rgb = frame.field_data[0];
        uint64_t id;
        memcpy(&id, frame.field_data[1], 8);
        const unsigned char add = (unsigned char)(13 * frame.seq);
        int ok = id == frame.seq && frame.field_nbytes[0] == schema[0].capacity &&
                 (expected < 0 || (long long)frame.seq == expected);
        for (size_t b = 0; ok && b < frame.field_nbytes[0]; b++) ok = rgb[b] == (unsigned char)(b + add);
        if (!ok) {
            fprintf(stderr, "stream_reader: frame %llu is wrong (expected %lld)\n",
                    (unsigned long long)frame.seq, expected);
            status = 4;
        }
        expected = (long long)frame.seq + 1;
        shmc_stream_reader_release(r);
    }
    shmc_stream_stats_t stats;
    stats.size = sizeof stats;
    shmc_stream_reader_stats(r, &stats);
    if (status == 0)
        printf("stream_reader: %llu frames verified, dropped %llu\n", (unsigned long long)stats.frames,
               (unsigned long long)stats.dropped);
    shmc_stream_reader_close(r);
    return status;
}
