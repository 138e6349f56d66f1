/* The slot ring under concurrency, in one process: writer and reader threads on one channel.
 *   (a) 1 writer, 3 broadcast readers, overwrite mode: in order, never torn, received + dropped
 *       == published.
 *   (b) 3 writers, 2 readers, overwrite mode: each writer's messages in order, never torn.
 *   (c) lossless mode, 2 writers (send and loan/commit), 2 readers (recv and loan/release): every
 *       message received exactly once by each reader, none dropped.
 *   (d) a claimant that never publishes: its slot is abandoned, skipped and counted as dropped by
 *       readers, and reused by later writers (the ring alone, then through the public API).
 *   (e) the payload pool (SHMC_PAYLOAD_POOL): the ring alone (which buffer a claim takes, a buffer
 *       taken from under a copy, a writer dead with a buffer, corrupt buffer words), then (a), (b)
 *       and (c) again with a pool.
 * Payloads are copies of one 64-bit tag (writer id and sequence number) in every word, so a torn
 * copy is visible in any word; lengths vary with the sequence number, so a length that belongs to
 * another message is visible too.
 * Message counts shrink under ThreadSanitizer, or by the factor in SHMC_TEST_SCALE_DOWN. */
#define SLOT_SIZE 256
#define WORDS_MAX (SLOT_SIZE / 8)

#include "primitives/channel.h"
#include "primitives/ring.h"
#include "procs.h"

#include <pthread.h>

/* Published once every writer is done: readers of an overwrite ring stop at it. */
#define END_TAG (((uint64_t)0xEE << 56) | 0)

static shmc_pub_t *open_pub(const char *name, uint32_t slots, uint32_t flags)
{
    shmc_pub_options_t o;
    shmc_pub_options_init(&o);
    o.num_slots = slots;
    o.slot_size = SLOT_SIZE;
    o.flags = flags;
    shmc_pub_t *pub = NULL;
    CHECK_OK(shmc_pub_open(name, &o, &pub));
    return pub;
}

static shmc_sub_t *open_sub(const char *name)
{
    shmc_sub_options_t o;
    shmc_sub_options_init(&o);
    o.connect_timeout_ns = 0; /* the publisher exists already */
    shmc_sub_t *sub = NULL;
    CHECK_OK(shmc_sub_open(name, &o, &sub));
    return sub;
}

/* ------------------------------------------------------------------ threads */

#define MAX_WRITERS 3

typedef struct writer {
    pthread_t thread;
    shmc_pub_t *pub;
    uint32_t id;
    uint64_t count;
    int use_loan;
} writer_t;

typedef struct reader {
    pthread_t thread;
    shmc_sub_t *sub;
    uint32_t writers;   /* writer ids are 0 .. writers-1 */
    uint64_t per_writer; /* messages each writer sends */
    int lossless;       /* every message must arrive, in order, none dropped */
    int use_loan;
    uint64_t received;
    uint64_t got[MAX_WRITERS];
} reader_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    unsigned char buf[SLOT_SIZE];
    for (uint64_t seq = 0; seq < w->count; seq++) {
        uint64_t tag = make_tag(w->id, seq);
        if (w->use_loan) {
            void *slot;
            size_t cap;
            CHECK_OK(shmc_pub_loan(w->pub, &slot, &cap, 10 * SECOND));
            CHECK(cap == SLOT_SIZE);
            fill_tag(slot, tag);
            CHECK_OK(shmc_pub_commit(w->pub, bytes_for(seq)));
        } else {
            fill_tag(buf, tag);
            /* Overwrite mode waits only behind a co-writer still filling the slot it laps. */
            CHECK_OK(shmc_pub_send(w->pub, buf, bytes_for(seq), 10 * SECOND));
        }
    }
    return NULL;
}

/* Receives until it has every writer's every message (lossless), or until the end marker that
 * the test publishes after every writer is done (overwrite: the last message published is the
 * one message that can never be overwritten). */
static void *reader_main(void *arg)
{
    reader_t *r = arg;
    uint64_t next[MAX_WRITERS] = {0}; /* the lowest sequence number still acceptable per writer */
    uint64_t total = r->per_writer * r->writers;
    unsigned char buf[SLOT_SIZE];
    while (!(r->lossless && r->received == total)) {
        size_t len = 0;
        const void *msg = buf;
        if (r->use_loan)
            CHECK_OK(shmc_sub_loan(r->sub, &msg, &len, 10 * SECOND));
        else
            CHECK_OK(shmc_sub_recv(r->sub, buf, sizeof buf, &len, 10 * SECOND));
        uint64_t tag = check_intact(msg, len);
        if (r->use_loan) CHECK_OK(shmc_sub_release(r->sub)); /* lossless: pinned, never stale */
        if (tag == END_TAG) break;
        uint32_t w = tag_source(tag);
        uint64_t seq = tag_seq(tag);
        CHECK(w < r->writers && seq < r->per_writer);
        if (r->lossless)
            CHECK(seq == next[w]); /* exactly once, in order */
        else
            CHECK(seq >= next[w]); /* strictly increasing per writer */
        next[w] = seq + 1;
        r->got[w]++;
        r->received++;
    }
    return NULL;
}

/* Runs `nw` writers and `nr` readers on a fresh channel and checks every reader's counters. */
static void run(const char *stem, uint32_t slots, uint32_t flags, uint32_t nw, uint64_t per_writer,
                uint32_t nr, int loans)
{
    const char *name = unique_name(stem);
    const int lossless = (flags & SHMC_LOSSLESS) != 0;
    writer_t w[MAX_WRITERS];
    reader_t r[4];
    /* Every endpoint opens before any thread starts: readers see every message from position 0. */
    for (uint32_t i = 0; i < nw; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].pub = open_pub(name, slots, flags);
        w[i].id = i;
        w[i].count = per_writer;
        w[i].use_loan = loans && i == 1;
    }
    for (uint32_t i = 0; i < nr; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].sub = open_sub(name);
        r[i].writers = nw;
        r[i].per_writer = per_writer;
        r[i].lossless = lossless;
        r[i].use_loan = loans && i == 1;
    }
    for (uint32_t i = 0; i < nr; i++) CHECK(pthread_create(&r[i].thread, NULL, reader_main, &r[i]) == 0);
    for (uint32_t i = 0; i < nw; i++) CHECK(pthread_create(&w[i].thread, NULL, writer_main, &w[i]) == 0);
    for (uint32_t i = 0; i < nw; i++) CHECK(pthread_join(w[i].thread, NULL) == 0);
    uint64_t published = per_writer * nw;
    if (!lossless) {
        uint64_t end[1];
        fill_tag(end, END_TAG);
        CHECK_OK(shmc_pub_send(w[0].pub, end, sizeof end, 10 * SECOND));
        published++;
    }
    for (uint32_t i = 0; i < nr; i++) CHECK(pthread_join(r[i].thread, NULL) == 0);

    uint64_t least = UINT64_MAX;
    for (uint32_t i = 0; i < nr; i++) {
        shmc_stats_t s = sub_stats(r[i].sub);
        CHECK(s.head == published);
        CHECK(s.cursor == published);
        CHECK(s.received == r[i].received + !lossless); /* + the end marker */
        CHECK(s.received + s.dropped == published); /* every position received or counted lost */
        CHECK(s.skipped == 0);
        CHECK(r[i].received > 0);
        if (lossless) {
            CHECK(s.dropped == 0);
            for (uint32_t k = 0; k < nw; k++) CHECK(r[i].got[k] == per_writer);
        }
        if (r[i].received < least) least = r[i].received;
        CHECK_OK(shmc_sub_close(r[i].sub));
    }
    for (uint32_t i = 0; i < nw; i++) {
        shmc_stats_t s = pub_stats(w[i].pub);
        CHECK(s.sent == per_writer + (!lossless && i == 0));
        CHECK_OK(shmc_pub_close(w[i].pub));
    }
    printf("%s: %u writer(s) x %llu, %u reader(s), fewest received %llu\n", stem, nw,
           (unsigned long long)per_writer, nr, (unsigned long long)least);
}

/* ------------------------------------------------------------------ (d) dead claimant */

/* The ring alone, in private memory. */
static void test_ring_abandon(void)
{
    const uint32_t slots = 4, slot_size = 64, stride = 128;
    void *ctrl = aligned_alloc(SHMI_CACHE_LINE, SHMI_RING_CTRL_BYTES);
    void *mem = aligned_alloc(SHMI_CACHE_LINE, (size_t)slots * stride);
    CHECK(ctrl && mem);
    memset(ctrl, 0, SHMI_RING_CTRL_BYTES);
    memset(mem, 0, (size_t)slots * stride);
    shmi_ring_t ring;
    shmi_ring_init(&ring, ctrl, mem, slots, slot_size, stride, 0, 0, 0);

    const uint32_t dead = 5, live = 1;
    uint64_t pos, blocker, word;
    const void *payload;
    uint32_t len;
    CHECK_OK(shmi_ring_claim(&ring, dead, UINT64_MAX, &pos, &blocker));
    CHECK(pos == 0 && blocker == 0);
    /* The claim names its owner: a reader waiting on it can tell whom it waits for. */
    CHECK(shmi_ring_peek(&ring, 0, &word, &payload, &len) == SHMI_PEEK_EMPTY);
    CHECK(shmi_word_state(word) == SHMI_SLOT_WRITING && shmi_word_owner(word) == dead && shmi_word_pos(word) == 0);
    for (uint64_t i = 1; i < slots; i++) {
        CHECK_OK(shmi_ring_claim(&ring, live, UINT64_MAX, &pos, &blocker));
        CHECK(pos == i);
        memset(shmi_ring_payload(&ring, pos), (int)i, 8);
        shmi_ring_publish(&ring, pos, 8);
    }
    /* The next claim laps the dead claimant's slot: it must wait, and learns whom it waits for. */
    CHECK_RC(shmi_ring_claim(&ring, live, UINT64_MAX, &pos, &blocker), SHMC_EAGAIN);
    CHECK(blocker == word);
    /* A lossless limit stops a writer before anything else is looked at. */
    CHECK_RC(shmi_ring_claim(&ring, live, 2, &pos, &blocker), SHMC_EAGAIN);
    CHECK(blocker == 0);

    shmi_ring_recover_owner(&ring, 7); /* owns nothing: changes nothing */
    CHECK(shmi_ring_peek(&ring, 0, &word, &payload, &len) == SHMI_PEEK_EMPTY);
    const uint64_t claimed = word;
    CHECK(shmi_ring_recover(&ring, claimed ^ 4) == 0); /* a word the slot does not hold */
    shmi_ring_recover_owner(&ring, dead);
    CHECK(shmi_ring_peek(&ring, 0, &word, &payload, &len) == SHMI_PEEK_ABANDONED);
    CHECK(shmi_ring_recover(&ring, claimed) == 0); /* already done: the claim is gone */
    for (uint64_t i = 1; i < slots; i++) {
        CHECK(shmi_ring_peek(&ring, i, &word, &payload, &len) == SHMI_PEEK_READY);
        CHECK(len == 8 && ((const unsigned char *)payload)[0] == i);
    }

    /* A later writer reuses the abandoned slot for the next lap. */
    CHECK_OK(shmi_ring_claim(&ring, live, UINT64_MAX, &pos, &blocker));
    CHECK(pos == slots);
    memset(shmi_ring_payload(&ring, pos), 0xAB, 8);
    shmi_ring_publish(&ring, pos, 8);
    CHECK(shmi_ring_peek(&ring, slots, &word, &payload, &len) == SHMI_PEEK_READY);
    CHECK(len == 8 && ((const unsigned char *)payload)[0] == 0xAB);
    CHECK(shmi_ring_peek(&ring, 0, &word, &payload, &len) == SHMI_PEEK_OVERRUN);
    CHECK(shmi_ring_peek(&ring, slots + 1, &word, &payload, &len) == SHMI_PEEK_EMPTY);

    /* Publishing wakes writers that wait for it to complete the slot they lap (they sleep on the
     * space word), not only readers: a sleeper counted there makes the publish bump the word. */
    shmi_ring_ctrl_t *c = ctrl;
    atomic_store(&c->space.sleepers, 1);
    atomic_store(&c->data.sleepers, 1);
    uint32_t space_before = atomic_load(&c->space.futex), data_before = atomic_load(&c->data.futex);
    CHECK_OK(shmi_ring_claim(&ring, live, UINT64_MAX, &pos, &blocker));
    shmi_ring_publish(&ring, pos, 0);
    CHECK(atomic_load(&c->space.futex) != space_before);
    CHECK(atomic_load(&c->data.futex) != data_before);
    free(ctrl);
    free(mem);
}

/* Through the public API: a slot claimed by a registry index that no live process holds (its
 * writer died between claim and publish) is skipped by a waiting subscriber, counted as one
 * dropped message, and reused by the publisher when it laps it. */
static void test_api_abandon(void)
{
    const char *name = unique_name("abandon");
    const uint32_t slots = 4;
    shmc_pub_t *pub = open_pub(name, slots, 0);
    shmc_sub_t *sub = open_sub(name);
    char os_name[SHMI_OS_NAME_CAP];
    CHECK_OK(shmc_os_name(name, SHMC_PATTERN_PUBSUB, os_name, sizeof os_name));
    shmi_channel_t ch; /* a second mapping of the segment: the "dead writer" */
    CHECK_OK(shmi_channel_attach(&ch, os_name, SHMC_PATTERN_PUBSUB, 0));
    const uint32_t dead = ch.geometry.max_peers - 1;
    CHECK(shmi_registry_live_role(&ch.registry, dead) == 0);

    unsigned char buf[SLOT_SIZE];
    size_t len;
    uint64_t pos, blocker;
    fill_tag(buf, make_tag(0, 0));
    CHECK_OK(shmc_pub_send(pub, buf, bytes_for(0), 0));                 /* position 0 */
    CHECK_OK(shmi_ring_claim(&ch.ring, dead, UINT64_MAX, &pos, &blocker)); /* position 1 */
    CHECK(pos == 1);
    fill_tag(buf, make_tag(0, 2));
    CHECK_OK(shmc_pub_send(pub, buf, bytes_for(2), 0));                 /* position 2 */

    CHECK_OK(shmc_sub_recv(sub, buf, sizeof buf, &len, SECOND));
    CHECK(tag_seq(check_intact(buf, len)) == 0);
    /* Position 1 is claimed: nothing is ready without waiting. */
    CHECK_RC(shmc_sub_recv(sub, buf, sizeof buf, &len, 0), SHMC_EAGAIN);
    /* Waiting, the subscriber finds the claimant dead, abandons the slot and skips it. */
    CHECK_OK(shmc_sub_recv(sub, buf, sizeof buf, &len, 5 * SECOND));
    CHECK(tag_seq(check_intact(buf, len)) == 2);
    shmc_stats_t s = sub_stats(sub);
    CHECK(s.received == 2 && s.dropped == 1 && s.cursor == 3);

    /* The publisher laps the abandoned slot without waiting. */
    for (uint64_t seq = 3; seq < 3 + slots; seq++) {
        fill_tag(buf, make_tag(0, seq));
        CHECK_OK(shmc_pub_send(pub, buf, bytes_for(seq), 0));
    }
    for (uint64_t seq = 3; seq < 3 + slots; seq++) {
        CHECK_OK(shmc_sub_recv(sub, buf, sizeof buf, &len, SECOND));
        CHECK(tag_seq(check_intact(buf, len)) == seq);
    }

    /* A dead claimant in the publisher's way: the publisher abandons it when it laps it. */
    CHECK_OK(shmi_ring_claim(&ch.ring, dead, UINT64_MAX, &pos, &blocker));
    CHECK(pos == 3 + slots);
    for (uint64_t seq = pos + 1; seq <= pos + slots; seq++) {
        fill_tag(buf, make_tag(0, seq));
        CHECK_OK(shmc_pub_send(pub, buf, bytes_for(seq), 5 * SECOND));
    }
    /* The subscriber lost the abandoned position; it reads the rest of what is still in the ring. */
    uint64_t last = 0;
    while (shmc_sub_recv(sub, buf, sizeof buf, &len, 0) == 0) last = tag_seq(check_intact(buf, len));
    CHECK(last == pos + slots);
    s = sub_stats(sub);
    CHECK(s.cursor == pos + slots + 1 && s.received + s.dropped == s.cursor);
    CHECK(s.dropped >= 2);

    shmi_channel_detach(&ch);
    CHECK_OK(shmc_sub_close(sub));
    CHECK_OK(shmc_pub_close(pub));
}

/* ------------------------------------------------------------------ (e) payload pool */

#define POOL_SLOTS 8u
#define POOL_STRIDE (SHMI_POOLED_SLOT_HEADER_BYTES + 64u)

typedef struct pool_ring {
    shmi_ring_t ring;
    void *ctrl;
    unsigned char *mem;
} pool_ring_t;

/* A pooled broadcast ring of POOL_SLOTS slots of 64 bytes, in private memory. */
static void pool_ring_init(pool_ring_t *p, int competing)
{
    p->ctrl = aligned_alloc(SHMI_CACHE_LINE, SHMI_RING_CTRL_BYTES);
    p->mem = aligned_alloc(SHMI_CACHE_LINE, (size_t)POOL_SLOTS * POOL_STRIDE);
    CHECK(p->ctrl && p->mem);
    memset(p->ctrl, 0, SHMI_RING_CTRL_BYTES);
    memset(p->mem, 0, (size_t)POOL_SLOTS * POOL_STRIDE);
    shmi_ring_init(&p->ring, p->ctrl, p->mem, POOL_SLOTS, 64, POOL_STRIDE, competing, 0, 1);
}

static void pool_ring_free(pool_ring_t *p)
{
    free(p->ctrl);
    free(p->mem);
}

/* Which buffer holds pos's payload (its index in the pool). */
static uint64_t buffer_of(pool_ring_t *p, uint64_t pos)
{
    uint64_t at = (uint64_t)((unsigned char *)shmi_ring_payload(&p->ring, pos) - p->mem);
    CHECK(at % POOL_STRIDE == SHMI_POOLED_SLOT_HEADER_BYTES);
    return at / POOL_STRIDE;
}

/* Claims the next position as `owner`, writes the 8-byte value pos into it, publishes it. */
static uint64_t pool_publish(pool_ring_t *p, uint32_t owner)
{
    uint64_t pos, blocker;
    CHECK_OK(shmi_ring_claim(&p->ring, owner, UINT64_MAX, &pos, &blocker));
    memcpy(shmi_ring_payload(&p->ring, pos), &pos, 8);
    shmi_ring_publish(&p->ring, pos, 8);
    return pos;
}

/* 1 if pos reads back intact as a broadcast reader reads it (peek, copy, re-check). */
static int pool_reads(pool_ring_t *p, uint64_t pos)
{
    uint64_t word, value = 0;
    const void *payload;
    uint32_t len;
    if (shmi_ring_peek(&p->ring, pos, &word, &payload, &len) != SHMI_PEEK_READY) return 0;
    memcpy(&value, payload, 8);
    return len == 8 && value == pos && shmi_ring_unchanged(&p->ring, pos, word);
}

static void test_pool(void)
{
    pool_ring_t p;
    pool_ring_init(&p, 0);
    const uint32_t writer = 1, dead = 9;

    /* Readers that keep up (their slowest cursor passes each message before the next claim):
     * every message goes into the buffer the last one was read from, whatever the depth. */
    uint64_t pos = pool_publish(&p, writer);
    const uint64_t first = buffer_of(&p, pos);
    for (int i = 0; i < 5 * (int)POOL_SLOTS; i++) {
        CHECK(pool_reads(&p, pos));
        p.ring.consumed = pos + 1;
        pos = pool_publish(&p, writer);
        CHECK(buffer_of(&p, pos) == first);
    }
    /* A reader one message behind: two buffers take turns. */
    p.ring.consumed = pos;
    uint64_t a = buffer_of(&p, pos = pool_publish(&p, writer));
    p.ring.consumed = pos;
    uint64_t b = buffer_of(&p, pos = pool_publish(&p, writer));
    CHECK(a != b);
    for (int i = 0; i < 2 * (int)POOL_SLOTS; i++) {
        p.ring.consumed = pos;
        pos = pool_publish(&p, writer);
        CHECK(buffer_of(&p, pos) == (i % 2 ? b : a));
        CHECK(pool_reads(&p, pos - 1) && pool_reads(&p, pos));
    }

    /* A reader that reads nothing any more (its cursor stays): nothing it may still read is
     * taken: the ring behaves as a plain one, and the last lap is all readable. */
    const uint64_t stuck = pos + 1;
    p.ring.consumed = stuck;
    for (uint32_t i = 0; i < 3 * POOL_SLOTS; i++) pos = pool_publish(&p, writer);
    for (uint64_t q = pos - POOL_SLOTS + 1; q <= pos; q++) CHECK(pool_reads(&p, q));
    uint64_t seen = 0;
    for (uint64_t q = pos - POOL_SLOTS + 1; q <= pos; q++) seen |= 1ull << buffer_of(&p, q);
    CHECK(seen == (1ull << POOL_SLOTS) - 1); /* every buffer holds one of them */

    /* A reader in the middle of a copy whose buffer is taken (every cursor moved past it, as
     * another reader's would): its re-check fails, and the position then reads as lost. */
    uint64_t word;
    const void *payload;
    uint32_t len;
    CHECK(shmi_ring_peek(&p.ring, pos, &word, &payload, &len) == SHMI_PEEK_READY);
    p.ring.consumed = pos + 1;
    uint64_t next = pool_publish(&p, writer);
    CHECK(buffer_of(&p, next) == buffer_of(&p, pos));
    CHECK(!shmi_ring_unchanged(&p.ring, pos, word));
    CHECK(shmi_ring_peek(&p.ring, pos, &word, &payload, &len) == SHMI_PEEK_ABANDONED);
    CHECK(pool_reads(&p, next));

    /* A writer that dies holding a buffer: recovery abandons its position, and its buffer is free
     * again at once (nobody reads an abandoned position). */
    uint64_t blocker, claimed;
    p.ring.consumed = next + 1;
    CHECK_OK(shmi_ring_claim(&p.ring, dead, UINT64_MAX, &claimed, &blocker));
    const uint64_t held = buffer_of(&p, claimed);
    shmi_pooled_slot_t *entry = (shmi_pooled_slot_t *)(p.mem + held * POOL_STRIDE);
    CHECK(shmi_word_owner(atomic_load(&entry->holder)) == dead);
    CHECK(shmi_word_pos(atomic_load(&entry->holder)) == claimed);
    shmi_ring_recover_owner(&p.ring, dead);
    CHECK(shmi_ring_peek(&p.ring, claimed, &word, &payload, &len) == SHMI_PEEK_ABANDONED);
    pos = pool_publish(&p, writer);
    CHECK(buffer_of(&p, pos) == held && pool_reads(&p, pos));

    /* Corrupt buffer words are never trusted: an index out of range reads as lost, and when no
     * buffer is free (every holder names a later position) the claim fails and is given up. */
    shmi_slot_t *slot = (shmi_slot_t *)(p.mem + (pos % POOL_SLOTS) * POOL_STRIDE);
    atomic_store(&slot->buf, 1000);
    CHECK(shmi_ring_peek(&p.ring, pos, &word, &payload, &len) == SHMI_PEEK_ABANDONED);
    CHECK((unsigned char *)shmi_ring_payload(&p.ring, pos) >= p.mem &&
          (unsigned char *)shmi_ring_payload(&p.ring, pos) < p.mem + POOL_SLOTS * POOL_STRIDE);
    for (uint64_t i = 0; i < POOL_SLOTS; i++)
        atomic_store(&((shmi_pooled_slot_t *)(p.mem + i * POOL_STRIDE))->holder,
                     shmi_word(pos + 100, writer, SHMI_SLOT_WRITING));
    CHECK_RC(shmi_ring_claim(&p.ring, writer, UINT64_MAX, &claimed, &blocker), SHMC_EBADSEG);
    CHECK(shmi_ring_peek(&p.ring, pos + 1, &word, &payload, &len) == SHMI_PEEK_ABANDONED);
    pool_ring_free(&p);

    /* A work queue: an item taken and copied out frees its buffer at once (no cursors to read), so
     * a queue whose puller keeps up writes every item into the same buffer; an item not taken yet
     * keeps its own. */
    pool_ring_init(&p, 1);
    shmi_take_t t;
    pos = pool_publish(&p, writer);
    const uint64_t queue_first = buffer_of(&p, pos);
    for (int i = 0; i < 3 * (int)POOL_SLOTS; i++) {
        CHECK_OK(shmi_ring_take(&p.ring, 2, 64, &t));
        CHECK(t.pos == pos && memcmp(shmi_ring_payload(&p.ring, pos), &pos, 8) == 0);
        CHECK(shmi_ring_release(&p.ring, pos, 2));
        pos = pool_publish(&p, writer);
        CHECK(buffer_of(&p, pos) == queue_first);
    }
    uint64_t queued = pos;
    pos = pool_publish(&p, writer);
    CHECK(buffer_of(&p, pos) != buffer_of(&p, queued));
    pool_ring_free(&p);
    puts("pool: a kept-up ring reuses one buffer, a stalled reader keeps its lap, a taken buffer "
         "fails the re-check, a dead writer's buffer comes back, corrupt words are refused");
}

/* shmi_ring_copy_in: below SHMI_STREAMING_COPY_BYTES a memcpy, from there on streaming stores with an
 * unaligned head and tail: every byte lands, none outside, at every alignment. */
static void test_copy_in(void)
{
    const size_t big = SHMI_STREAMING_COPY_BYTES;
    const size_t lens[] = {0, 1, 63, 4096, big - 1, big, big + 1, big + 63, big + 64, 3 * big / 2 + 17};
    const size_t offsets[] = {0, 1, 15, 16, 33};
    const size_t cap = 2 * big + 256;
    unsigned char *src = malloc(cap), *dst = malloc(cap);
    CHECK(src && dst);
    for (size_t i = 0; i < cap; i++) src[i] = (unsigned char)(i * 131 + (i >> 9));
    for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
        for (size_t d = 0; d < sizeof offsets / sizeof offsets[0]; d++) {
            const size_t at = offsets[d], from = offsets[(d + 2) % 5], n = lens[l];
            memset(dst, 0xEE, cap);
            shmi_ring_copy_in(dst + at, src + from, n);
            CHECK(memcmp(dst + at, src + from, n) == 0);
            for (size_t i = 0; i < at; i++) CHECK(dst[i] == 0xEE);
            CHECK(dst[at + n] == 0xEE && dst[cap - 1] == 0xEE);
        }
    }
    free(src);
    free(dst);
    puts("copy_in: every length and alignment around the streaming-store threshold copies exactly");
}

int main(void)
{
    scale_init(4, 1000);

    test_ring_abandon();
    test_api_abandon();
    test_pool();
    test_copy_in();
    run("broadcast", 8, 0, 1, scaled(1000000), 3, 0);   /* (a) */
    run("writers", 7, 0, 3, scaled(200000), 2, 0);      /* (b): 7 slots, not a power of two */
    run("lossless", 16, SHMC_LOSSLESS, 2, scaled(100000), 2, 1); /* (c) */
    /* (e): the same with a payload pool */
    run("pool-broadcast", 8, SHMC_PAYLOAD_POOL, 1, scaled(1000000), 3, 0);
    run("pool-writers", 7, SHMC_PAYLOAD_POOL, 3, scaled(200000), 2, 0);
    run("pool-lossless", 16, SHMC_LOSSLESS | SHMC_PAYLOAD_POOL, 2, scaled(100000), 2, 1);
    puts("ring: ok");
    return 0;
}
