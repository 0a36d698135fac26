/* check_day8.c - what day 8 adds: records of any length, framed in a ring
 * of 64-byte slots, written and read in place. Every length from 0 to the
 * largest, records that end exactly at the end of the ring, padding,
 * -EMSGSIZE both ways, peek and release across the wrap, hostile record
 * headers, and real processes in both fan-out modes. Every record carries
 * its sequence number and a pattern of its own in every byte; every one is
 * accounted for. No timing thresholds (Check's per-test timeouts bound the
 * waits). */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "common.h"
#define TU_RECORDS 1 /* the calls as they are, not as the days before */
#include "test_util.h"

#include <stdalign.h>

#define SEC 1000000000ll
#define IO_TIMEOUT_MS 60000u

static struct spmc_queue qw, qr;

static void setup(void)
{
    tu_setup();
    memset(&qw, 0, sizeof qw);
    memset(&qr, 0, sizeof qr);
}

static void teardown(void)
{
    (void)spmc_queue_destroy(&qw);
    (void)spmc_queue_destroy(&qr);
    tu_teardown();
}

/* The byte at offset i of record seq: never the same pattern for two
 * neighbouring records or offsets. */
static unsigned char rec_byte(uint64_t seq, size_t i)
{
    return (unsigned char)(seq * 131u + i * 7u + (i >> 8) + 1u);
}

static void rec_fill(unsigned char *p, size_t len, uint64_t seq)
{
    for (size_t i = 0; i < len; i++)
        p[i] = rec_byte(seq, i);
}

/* 1 when @p p holds record seq of @p len bytes exactly. */
static int rec_ok(const unsigned char *p, size_t len, uint64_t seq)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != rec_byte(seq, i))
            return 0;
    return 1;
}

static int create_mode(struct spmc_queue *q, const char *name, enum spmc_fanout f,
                       size_t max_record, size_t cap)
{
    struct spmc_options o = {.fanout = f, .max_readers = 4};
    return spmc_queue_create_opts(q, name, max_record, cap, &o);
}

static uint64_t head_of(struct spmc_queue *q)
{
    struct spmc_stats st;
    ck_assert_int_eq(spmc_queue_stats(q, &st), 0);
    return st.head;
}

/* A writer and a reader of one queue in this process. */
static void open_pair(enum spmc_fanout f, size_t max_record, size_t cap)
{
    const char *name = tu_name();
    ck_assert_int_eq(create_mode(&qw, name, f, max_record, cap), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, max_record, cap), 0);
}

/* Pop one record (copy), expecting record seq of @p len bytes. */
static void expect_pop_at(uint64_t seq, size_t len, const char *file, int line)
{
    static unsigned char buf[1 << 16];
    long n = spmc_queue_try_pop(&qr, buf, sizeof buf);
    tu_assert_int_at(file, line, n, ==, (long)len);
    tu_assert_at(file, line, rec_ok(buf, len, seq), "record %ju damaged", (uintmax_t)seq);
}
#define expect_pop(seq, len) expect_pop_at((seq), (len), __FILE__, __LINE__)

/* Push one record (copy). */
static void push_rec_at(uint64_t seq, size_t len, const char *file, int line)
{
    static unsigned char buf[1 << 16];
    rec_fill(buf, len, seq);
    tu_assert_int_at(file, line, spmc_queue_try_push(&qw, buf, len), ==, 0);
}
#define push_rec(seq, len) push_rec_at((seq), (len), __FILE__, __LINE__)

/* ===================================================================== */
/* Framing                                                                 */
/* ===================================================================== */

/* Every length from 0 to the largest, in both directions of the API: copy
 * in and zero-copy out for even lengths, zero-copy in and copy out for odd
 * ones. The ring is small, so the records land at every offset and wrap
 * with and without padding many times. */
START_TEST(test_every_length_round_trips)
{
    const enum spmc_fanout f = _i ? SPMC_SHARE : SPMC_BROADCAST;
    const size_t max = 1000; /* 16 slots at most; the ring has 64 */
    open_pair(f, max, 64);
    static unsigned char buf[2048];
    for (size_t len = 0; len <= max; len++) {
        const uint64_t seq = len;
        if (len % 2 == 0) {
            push_rec(seq, len);
            const void *rec;
            size_t got;
            ck_assert_int_eq(spmc_queue_try_peek(&qr, &rec, &got), 0);
            ck_assert_uint_eq(got, len);
            ck_assert_uint_eq((uintptr_t)rec % SPMC_SLOT, 0);
            ck_assert(rec_ok(rec, len, seq));
            ck_assert_int_eq(spmc_queue_release(&qr), 0);
        } else {
            void *rec;
            ck_assert_int_eq(spmc_queue_try_reserve(&qw, len, &rec), 0);
            ck_assert_uint_eq((uintptr_t)rec % SPMC_SLOT, 0);
            rec_fill(rec, len, seq);
            ck_assert_int_eq(spmc_queue_commit(&qw, len), 0);
            expect_pop(seq, len);
        }
        ck_assert_int_eq(spmc_queue_try_pop(&qr, buf, sizeof buf), -EAGAIN); /* nothing more */
    }
}
END_TEST

/* Records of 4 slots fill a 32-slot ring exactly: no padding; the ninth
 * starts again at slot 0. */
START_TEST(test_record_that_ends_at_the_ring_end_needs_no_padding)
{
    const enum spmc_fanout f = _i ? SPMC_SHARE : SPMC_BROADCAST;
    open_pair(f, 4 * SPMC_SLOT, 32);
    for (uint64_t k = 0; k < 8; k++)
        push_rec(k, 4 * SPMC_SLOT);
    ck_assert_uint_eq(head_of(&qw), 32);
    ck_assert_int_eq(spmc_queue_try_push(&qw, "x", 1), -EAGAIN); /* full */
    for (uint64_t k = 0; k < 8; k++)
        expect_pop(k, 4 * SPMC_SLOT);
    push_rec(8, 4 * SPMC_SLOT - 1);
    ck_assert_uint_eq(head_of(&qw), 36); /* slots 0-3 of the second lap */
    expect_pop(8, 4 * SPMC_SLOT - 1);
}
END_TEST

/* Ten records of 3 slots leave 2 slots before the end of a 32-slot ring:
 * an eleventh of 3 slots goes to slot 0 after 2 slots of padding, which no
 * reader ever sees. */
START_TEST(test_padding_record_is_skipped)
{
    const enum spmc_fanout f = _i ? SPMC_SHARE : SPMC_BROADCAST;
    open_pair(f, 3 * SPMC_SLOT, 32);
    for (uint64_t k = 0; k < 10; k++)
        push_rec(k, 3 * SPMC_SLOT);
    for (uint64_t k = 0; k < 10; k++)
        expect_pop(k, 3 * SPMC_SLOT);
    push_rec(10, 2 * SPMC_SLOT + 1);
    ck_assert_uint_eq(head_of(&qw), 30 + 2 + 3);
    const void *rec;
    size_t len;
    ck_assert_int_eq(spmc_queue_try_peek(&qr, &rec, &len), 0);
    ck_assert_uint_eq(len, 2 * SPMC_SLOT + 1);
    ck_assert_ptr_eq(rec, qr.slots); /* slot 0 */
    ck_assert(rec_ok(rec, len, 10));
    ck_assert_int_eq(spmc_queue_release(&qr), 0);
    unsigned char b[8];
    ck_assert_int_eq(spmc_queue_try_pop(&qr, b, sizeof b), -EAGAIN);
}
END_TEST

/* SPMC_RECORD_MAX is the largest max_record create takes: one byte more
 * is refused before anything is made, whatever the capacity. */
START_TEST(test_record_max_is_the_limit)
{
    const char *name = tu_name();
    const uint64_t slots = (SPMC_RECORD_MAX + (uint64_t)SPMC_SLOT - 1) / SPMC_SLOT;
    ck_assert_uint_eq(SPMC_RECORD_MAX % SPMC_SLOT, 0);
    ck_assert_uint_lt(slots, (uint64_t)1 << 23); /* a claim's field of 23 bits */
    ck_assert_int_eq(spmc_queue_create(&qw, name, (size_t)SPMC_RECORD_MAX + 1,
                                       (size_t)(4 * slots)),
                     -EINVAL);
    ck_assert_int_eq(tu_segment_size(name), -ENOENT); /* nothing was created */
}
END_TEST

/* A record larger than the queue's largest is refused, and nothing is
 * written; a record larger than the reader's buffer stays its next one. */
START_TEST(test_too_large_is_refused_both_ways)
{
    const enum spmc_fanout f = _i ? SPMC_SHARE : SPMC_BROADCAST;
    open_pair(f, 300, 64);
    static unsigned char buf[400];
    void *rec = NULL;
    push_rec(0, 10);
    const uint64_t head = head_of(&qw);
    ck_assert_int_eq(spmc_queue_try_push(&qw, buf, 301), -EMSGSIZE);
    ck_assert_int_eq(spmc_queue_push(&qw, buf, 301, SEC), -EMSGSIZE);
    ck_assert_int_eq(spmc_queue_try_reserve(&qw, 301, &rec), -EMSGSIZE);
    ck_assert_ptr_null(rec);
    ck_assert_int_eq(spmc_queue_commit(&qw, 1), -EINVAL); /* nothing reserved */
    ck_assert_uint_eq(head_of(&qw), head);
    /* A commit longer than its reservation publishes nothing, even when
     * the extra bytes would fit in the reservation's slot. */
    ck_assert_int_eq(spmc_queue_try_reserve(&qw, 10, &rec), 0);
    ck_assert_int_eq(spmc_queue_commit(&qw, 11), -EMSGSIZE);
    ck_assert_int_eq(spmc_queue_commit(&qw, 64), -EMSGSIZE);
    ck_assert_uint_eq(head_of(&qw), head);
    ck_assert_int_eq(spmc_queue_try_reserve(&qw, 64, &rec), 0);
    ck_assert_int_eq(spmc_queue_commit(&qw, 65), -EMSGSIZE);
    ck_assert_uint_eq(head_of(&qw), head);
    rec_fill(rec, 64, 1);
    ck_assert_int_eq(spmc_queue_commit(&qw, 64), 0);
    push_rec(2, 300);
    /* The reader's side: too small a buffer, then the right one. */
    ck_assert_int_eq(spmc_queue_try_pop(&qr, buf, 9), -EMSGSIZE);
    ck_assert_int_eq(spmc_queue_pop(&qr, buf, 9, SEC), -EMSGSIZE);
    expect_pop(0, 10);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, buf, 63), -EMSGSIZE);
    expect_pop(1, 64);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, buf, 299), -EMSGSIZE);
    expect_pop(2, 300);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, buf, sizeof buf), -EAGAIN);
}
END_TEST

/* A record is looked at in place until released: peeking again gives the
 * same one; the writer does not reuse its slots meanwhile, even when the
 * ring is otherwise free; release without a peek is refused. */
START_TEST(test_peek_holds_the_record_across_the_wrap)
{
    const enum spmc_fanout f = _i ? SPMC_SHARE : SPMC_BROADCAST;
    open_pair(f, 8 * SPMC_SLOT, 16);
    ck_assert_int_eq(spmc_queue_release(&qr), -EINVAL);
    uint64_t seq = 0, next = 0;
    for (int lap = 0; lap < 40; lap++) {
        const size_t len = 5 * SPMC_SLOT + 1 + (size_t)lap; /* 6 slots */
        push_rec(seq++, len);
        const void *rec, *again;
        size_t got, got2;
        ck_assert_int_eq(spmc_queue_try_peek(&qr, &rec, &got), 0);
        ck_assert_int_eq(spmc_queue_try_peek(&qr, &again, &got2), 0);
        ck_assert_ptr_eq(rec, again);
        ck_assert_uint_eq(got, got2);
        /* The other 10 slots: one more record of 6 fits (or padding and
         * one), never a third, however the ring is laid out. */
        int pushed = 0;
        while (spmc_queue_try_push(&qw, "abc", 3) == 0 && pushed < 20)
            pushed++;
        ck_assert_int_le(pushed, 10);
        ck_assert(rec_ok(rec, got, next)); /* untouched */
        ck_assert_int_eq(spmc_queue_release(&qr), 0);
        next++;
        for (int k = 0; k < pushed; k++) {
            unsigned char b[8];
            ck_assert_int_eq(spmc_queue_try_pop(&qr, b, sizeof b), 3);
            ck_assert(memcmp(b, "abc", 3) == 0);
        }
    }
}
END_TEST

/* What reserve hands out is the reserved length; a shorter commit gives
 * the rest back: the next record starts right after the slots used. */
START_TEST(test_short_commit_gives_the_rest_back)
{
    open_pair(SPMC_BROADCAST, 1000, 64);
    void *rec;
    ck_assert_int_eq(spmc_queue_try_reserve(&qw, 1000, &rec), 0);
    rec_fill(rec, 100, 0);
    ck_assert_int_eq(spmc_queue_commit(&qw, 100), 0);
    ck_assert_uint_eq(head_of(&qw), 2);
    push_rec(1, 0); /* an empty record takes one slot */
    ck_assert_uint_eq(head_of(&qw), 3);
    expect_pop(0, 100);
    expect_pop(1, 0);
}
END_TEST

/* Work-sharing: a reader that leaves holding a record it peeked at and
 * never released leaves it to the others; one of them gets it, whole. Its
 * claim took both records (the default claim is 64 slots): the other
 * reader delivers both, once each, whichever first. */
START_TEST(test_share_reader_leaving_with_a_peeked_record_hands_it_on)
{
    open_pair(SPMC_SHARE, 500, 64);
    struct spmc_queue other;
    memset(&other, 0, sizeof other);
    ck_assert_int_eq(spmc_queue_attach(&other, qw.name, 500, 0), 0);
    push_rec(0, 300);
    push_rec(1, 20);
    const void *rec;
    size_t len;
    ck_assert_int_eq(spmc_queue_try_peek(&qr, &rec, &len), 0); /* record 0, claimed */
    ck_assert_uint_eq(len, 300);
    ck_assert_int_eq(spmc_queue_destroy(&qr), 0); /* leaves without releasing it */
    unsigned char buf[512];
    long n1;
    for (int tries = 0; (n1 = spmc_queue_pop(&other, buf, sizeof buf, SEC)) == -ETIMEDOUT &&
                        tries < 30;
         tries++)
        ;
    /* Record 1 first or record 0 first, but both, once each, intact. */
    uint64_t first = n1 == 300 ? 0 : 1;
    ck_assert_msg(n1 == 300 || n1 == 20, "first pop: %ld", n1);
    ck_assert(rec_ok(buf, (size_t)n1, first));
    long n2;
    for (int tries = 0; (n2 = spmc_queue_pop(&other, buf, sizeof buf, SEC)) == -ETIMEDOUT &&
                        tries < 30;
         tries++)
        ;
    ck_assert_int_eq(n2, first == 0 ? 20 : 300);
    ck_assert(rec_ok(buf, (size_t)n2, 1 - first));
    ck_assert_int_eq(spmc_queue_try_pop(&other, buf, sizeof buf), -EAGAIN);
    (void)spmc_queue_destroy(&other);
}
END_TEST

/* Work-sharing: a reader dies in the middle of a claim of six records: it
 * released the first and holds the second (peeked at); it never looked at
 * the rest. Every record it did not release is delivered once: the second
 * by a reader that takes it over and holds it, the other four by a third
 * reader, which walks past the held one to them. Then every slot is back:
 * the writer goes round the ring twice. */
START_TEST(test_share_dead_reader_mid_claim)
{
    static const size_t lens[] = {100, 10, 200, 64, 30, 150}; /* 12 slots: one claim */
    enum { N = 6 };
    const size_t max = 4 * SPMC_SLOT;
    open_pair(SPMC_SHARE, max, 64);
    for (uint64_t s = 0; s < N; s++)
        push_rec(s, lens[s]);
    int fds[2];
    tu_pipe(fds);
    pid_t c = tu_fork();
    if (c == 0) {
        struct spmc_queue q;
        memset(&q, 0, sizeof q);
        unsigned char buf[512];
        const void *rec;
        size_t len;
        if (spmc_queue_attach(&q, qw.name, max, 64) != 0 ||
            spmc_queue_try_pop(&q, buf, sizeof buf) != 100 ||
            spmc_queue_try_peek(&q, &rec, &len) != 0 || len != 10)
            _exit(1);
        if (write(fds[1], "x", 1) != 1)
            _exit(2);
        pause();
        _exit(3);
    }
    char x = 0;
    ck_assert_int_eq(read(fds[0], &x, 1), 1);
    ck_assert_int_eq(kill(c, SIGKILL), 0);
    int status = tu_wait(c, IO_TIMEOUT_MS);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    const void *rec;
    size_t len;
    ck_assert_int_eq(spmc_queue_peek(&qr, &rec, &len, 30 * SEC), 0); /* taken over, held */
    ck_assert_uint_eq(len, lens[1]);
    ck_assert(rec_ok(rec, len, 1));
    struct spmc_queue other;
    memset(&other, 0, sizeof other);
    ck_assert_int_eq(spmc_queue_attach(&other, qw.name, max, 64), 0);
    int seen[N] = {0};
    unsigned char buf[512];
    for (int k = 2; k < N; k++) {
        long n = spmc_queue_pop(&other, buf, sizeof buf, 30 * SEC);
        ck_assert_int_gt(n, 0);
        uint64_t s = 2;
        while (s < N && lens[s] != (size_t)n)
            s++;
        ck_assert_msg(s < N, "a record of %ld bytes was not left by the dead reader", n);
        ck_assert_msg(rec_ok(buf, (size_t)n, s), "record %ju damaged", (uintmax_t)s);
        seen[s]++;
    }
    for (uint64_t s = 2; s < N; s++)
        ck_assert_msg(seen[s] == 1, "record %ju delivered %d times", (uintmax_t)s, seen[s]);
    ck_assert_int_eq(spmc_queue_release(&qr), 0);
    ck_assert_int_eq(spmc_queue_try_pop(&other, buf, sizeof buf), -EAGAIN);
    for (uint64_t s = N; s < N + 128; s++) {
        push_rec(s, 10);
        expect_pop(s, 10);
    }
    ck_assert_int_eq(spmc_queue_try_pop(&other, buf, sizeof buf), -EAGAIN);
    close(fds[0]);
    close(fds[1]);
    (void)spmc_queue_destroy(&other);
}
END_TEST

/* A writer that dies right after publishing padding: its readers get the
 * records before the padding, never the padding, then -EOWNERDEAD. The
 * writer child pushes three records of 5 slots into a ring of 16; the
 * fourth needs padding over slot 15 and then slots 0-4, where record 0 is
 * still held by our peek: the writer publishes the padding and waits.
 * Then it is killed. */
START_TEST(test_writer_dead_after_padding)
{
    const enum spmc_fanout f = _i ? SPMC_SHARE : SPMC_BROADCAST;
    const char *name = tu_name();
    const size_t len = 4 * SPMC_SLOT + 1; /* 5 slots */
    pid_t w = tu_fork();
    if (w == 0) {
        struct spmc_queue q;
        if (create_mode(&q, name, f, len, 16) != 0 ||
            spmc_queue_wait_readers(&q, 1, 60 * SEC) != 0)
            _exit(1);
        static unsigned char buf[5 * SPMC_SLOT];
        for (uint64_t seq = 0; seq < 4; seq++) {
            rec_fill(buf, len, seq);
            if (spmc_queue_push(&q, buf, len, 60 * SEC) != 0)
                _exit(2);
        }
        _exit(3); /* not reached: killed while it waits for the fourth */
    }
    int rc; /* the child may not have created it yet, or not finished it */
    for (int tries = 0; ((rc = spmc_queue_attach(&qr, name, len, 16)) == -ENOENT ||
                         rc == -ETIMEDOUT) && tries < 6000;
         tries++)
        tu_sleep_ms(10);
    ck_assert_int_eq(rc, 0);
    const void *rec;
    size_t got;
    ck_assert_int_eq(spmc_queue_peek(&qr, &rec, &got, 60 * SEC), 0); /* record 0, held */
    ck_assert(rec_ok(rec, got, 0));
    /* Wait until the padding is published (head 16: 3 x 5 slots + 1). */
    uint64_t head = 0;
    for (int tries = 0; tries < 6000 && (head = head_of(&qr)) < 16; tries++)
        tu_sleep_ms(10);
    ck_assert_uint_eq(head, 16);
    ck_assert_int_eq(kill(w, SIGKILL), 0);
    int status = tu_wait(w, IO_TIMEOUT_MS);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ck_assert_int_eq(spmc_queue_release(&qr), 0);
    expect_pop(1, len);
    expect_pop(2, len);
    unsigned char buf[512];
    ck_assert_int_eq(spmc_queue_pop(&qr, buf, sizeof buf, 60 * SEC), -EOWNERDEAD);
}
END_TEST

/* ===================================================================== */
/* Hostile record headers                                                  */
/* ===================================================================== */

/* A header is written by a peer: a reader checks it once, from one load,
 * and a header no writer writes is -EPROTO, never a read out of bounds, a
 * misframed record or a hang. Each case scribbles over the header of a
 * published record, as a broken or hostile process mapping the segment
 * could. Run under ASan by `make sanitize`. */
START_TEST(test_hostile_header_is_refused)
{
    const enum spmc_fanout f = _i / 6 ? SPMC_SHARE : SPMC_BROADCAST;
    const int kind = _i % 6;
    open_pair(f, 4 * SPMC_SLOT, 32);
    push_rec(0, 100);
    expect_pop(0, 100);
    push_rec(1, 100); /* the victim: index 2 (pushed after the first claim) */
    _Atomic uint64_t *h = &qw.headers[2];
    const uint64_t tag = (uint64_t)2 << 32;
    uint64_t bad = 0;
    switch (kind) {
    case 0: bad = ((uint64_t)(2 + 32) << 32) | 100; break;  /* a lap later */
    case 1: bad = tag | (4 * SPMC_SLOT + 1); break;         /* above max_record */
    case 2: bad = tag | 0x7fffffffu; break;                 /* far above it */
    case 3: bad = tag | SPMC_PAD_BIT; break;                /* padding of no slots */
    case 4: bad = tag | SPMC_PAD_BIT | 31; break;           /* padding past the end */
    case 5: bad = tag | (3 * SPMC_SLOT); break;             /* past head */
    }
    atomic_store(h, bad);
    unsigned char buf[1024];
    const void *rec = NULL;
    size_t len = 0;
    ck_assert_int_eq(spmc_queue_try_peek(&qr, &rec, &len), -EPROTO);
    ck_assert_ptr_null(rec);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, buf, sizeof buf), -EPROTO);
    ck_assert_int_eq(spmc_queue_pop(&qr, buf, sizeof buf, SEC), -EPROTO);
    /* The writer goes on; once the header is right again, so do readers. */
    atomic_store(h, tag | 100);
    expect_pop(1, 100);
}
END_TEST

/* Work-sharing: a reader checks the headers of the records it claims when
 * it claims them, and delivers each with the length it checked; a header
 * scribbled over after the claim changes nothing it delivers. */
START_TEST(test_share_header_checked_once_at_the_claim)
{
    open_pair(SPMC_SHARE, 4 * SPMC_SLOT, 32);
    push_rec(0, 100);
    push_rec(1, 100); /* index 2: claimed with record 0 */
    expect_pop(0, 100);
    atomic_store(&qw.headers[2], ((uint64_t)2 << 32) | 0x7fffffffu);
    expect_pop(1, 100);
    unsigned char buf[1024];
    ck_assert_int_eq(spmc_queue_try_pop(&qr, buf, sizeof buf), -EAGAIN);
}
END_TEST

/* ===================================================================== */
/* Processes                                                               */
/* ===================================================================== */

enum { RECORDS = 20000, MAXREC = 4096, READERS = 3 };

/* Length of record seq: a fixed pseudo-random mix, 8..MAXREC. */
static size_t len_of(uint64_t seq)
{
    uint64_t x = seq * 0x9e3779b97f4a7c15ull;
    x ^= x >> 29;
    size_t len = 8 + (size_t)(x % (MAXREC - 7));
    return seq % 5 == 0 ? 8 + (size_t)(x % 56) : len; /* many small ones */
}

/* A reader process: pop (or peek) until end of stream; then report each
 * record's sequence number (its first 8 bytes), or UINT64_MAX for a
 * damaged one, through @p fd (at the end: the parent reads once it has
 * pushed everything, and a pipe holds only so much). */
static void reader_proc(const char *name, int fd, int zero_copy)
{
    struct spmc_queue q;
    if (spmc_queue_attach(&q, name, MAXREC, 0) != 0)
        _exit(10);
    static unsigned char buf[MAXREC];
    static uint64_t got[RECORDS + 1];
    size_t n_got = 0;
    for (;;) {
        const unsigned char *p = buf;
        size_t len;
        long n;
        if (zero_copy) {
            const void *rec;
            n = spmc_queue_peek(&q, &rec, &len, 30 * SEC);
            p = rec;
        } else {
            n = spmc_queue_pop(&q, buf, sizeof buf, 30 * SEC);
            len = (size_t)n;
        }
        if (n == -EPIPE)
            break;
        if (n < 0)
            _exit(11);
        uint64_t seq = UINT64_MAX;
        if (len >= 8) {
            memcpy(&seq, p, 8);
            if (seq >= RECORDS || len != len_of(seq) || !rec_ok(p + 8, len - 8, seq))
                seq = UINT64_MAX;
        }
        if (zero_copy && spmc_queue_release(&q) != 0)
            _exit(12);
        if (n_got == RECORDS + 1)
            _exit(13); /* more records than were pushed */
        got[n_got++] = seq;
    }
    (void)spmc_queue_destroy(&q);
    if (write(fd, got, n_got * sizeof *got) != (ssize_t)(n_got * sizeof *got))
        _exit(14);
    _exit(0);
}

/* Three reader processes (one zero-copy), RECORDS records of mixed
 * lengths from a writer that pushes half of them by copy and half in
 * place. Broadcast: each reader gets every record, in order. Share: each
 * record goes to exactly one reader. */
START_TEST(test_processes_account_for_every_record)
{
    const enum spmc_fanout f = _i ? SPMC_SHARE : SPMC_BROADCAST;
    const char *name = tu_name();
    ck_assert_int_eq(create_mode(&qw, name, f, MAXREC, 512), 0);
    int fds[READERS][2];
    pid_t pids[READERS];
    for (int r = 0; r < READERS; r++) {
        tu_pipe(fds[r]);
        pid_t pid = pids[r] = tu_fork();
        if (pid == 0) {
            close(fds[r][0]);
            reader_proc(name, fds[r][1], r == 0);
        }
        tu_close(&fds[r][1]);
    }
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, READERS, 60 * SEC), 0);
    static unsigned char buf[MAXREC];
    for (uint64_t seq = 0; seq < RECORDS; seq++) {
        const size_t len = len_of(seq);
        if (seq % 2) {
            memcpy(buf, &seq, 8);
            rec_fill(buf + 8, len - 8, seq);
            ck_assert_int_eq(spmc_queue_push(&qw, buf, len, 60 * SEC), 0);
        } else {
            void *rec;
            ck_assert_int_eq(spmc_queue_reserve(&qw, MAXREC, &rec, 60 * SEC), 0);
            memcpy(rec, &seq, 8);
            rec_fill((unsigned char *)rec + 8, len - 8, seq);
            ck_assert_int_eq(spmc_queue_commit(&qw, len), 0);
        }
    }
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    static unsigned seen[RECORDS];
    memset(seen, 0, sizeof seen);
    for (int r = 0; r < READERS; r++) {
        uint64_t seq, expect = 0;
        size_t got;
        while ((got = tu_read_full(fds[r][0], &seq, sizeof seq, IO_TIMEOUT_MS)) == sizeof seq) {
            ck_assert_msg(seq != UINT64_MAX, "reader %d got a damaged record", r);
            ck_assert_uint_lt(seq, RECORDS);
            if (f == SPMC_BROADCAST)
                ck_assert_uint_eq(seq, expect++); /* in order, none missing */
            seen[seq]++;
        }
        ck_assert_uint_eq(got, 0);
        tu_close(&fds[r][0]);
    }
    for (int r = 0; r < READERS; r++) {
        int status = tu_wait(pids[r], IO_TIMEOUT_MS);
        ck_assert_msg(tu_exited_ok(status), "reader %d: %s", r, tu_status_str(status));
    }
    const unsigned want = f == SPMC_BROADCAST ? READERS : 1;
    for (uint64_t seq = 0; seq < RECORDS; seq++)
        ck_assert_msg(seen[seq] == want, "record %ju seen %u times, expected %u",
                      (uintmax_t)seq, seen[seq], want);
}
END_TEST

/* ===================================================================== */
/* Pacing                                                                  */
/* ===================================================================== */

/* Pop one record, waiting (the call that paces), expecting record seq. */
static void expect_pop_wait(uint64_t seq, size_t len)
{
    static unsigned char buf[1 << 16];
    ck_assert_int_eq(spmc_queue_pop(&qr, buf, sizeof buf, 2 * SEC), (long)len);
    ck_assert_msg(rec_ok(buf, len, seq), "record %ju damaged", (uintmax_t)seq);
}

/* A record takes several slots: one record at a time is still one at a
 * time (never paced, however many slots it takes); a batch of them is
 * paced; an empty look ends the pacing. */
START_TEST(test_one_large_record_at_a_time_is_not_paced)
{
    open_pair(_i ? SPMC_SHARE : SPMC_BROADCAST, 4096, 1024);
    uint64_t seq = 0;
    for (int k = 0; k < 10; k++) {
        push_rec(seq, 1000);
        expect_pop_wait(seq++, 1000);
        ck_assert_uint_eq(qr.pace_ns, 0);
    }
    for (int k = 0; k < 4; k++)
        push_rec(seq + (uint64_t)k, 1000);
    for (int k = 0; k < 4; k++)
        expect_pop_wait(seq++, 1000);
    ck_assert_uint_gt(qr.pace_ns, 0);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, NULL, 0), -EAGAIN);
    ck_assert_uint_eq(qr.pace_ns, 0);
}
END_TEST

/* A record that does not fit before the end of the ring comes after
 * padding: the look that finds both still found one record. */
START_TEST(test_one_record_after_padding_is_not_paced)
{
    /* 10-slot records in 256 slots: 6 slots of padding every 25 records.
     * (On a ring this size a look that finds 16 slots or fewer would not
     * start a pause anyway, whatever it counts as the first record.) */
    open_pair(_i ? SPMC_SHARE : SPMC_BROADCAST, 640, 256);
    for (uint64_t seq = 0; seq < 60; seq++) {
        push_rec(seq, 600);
        expect_pop_wait(seq, 600);
        ck_assert_uint_eq(qr.pace_ns, 0);
    }
    ck_assert_uint_eq(head_of(&qw), 60 * 10 + 2 * 6); /* the padding was there */
}
END_TEST

static Suite *day8_suite(void)
{
    Suite *s = suite_create("day8");
    TCase *tc = tcase_create("framing");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_every_length_round_trips, 0, 2);
    tcase_add_loop_test(tc, test_record_that_ends_at_the_ring_end_needs_no_padding, 0, 2);
    tcase_add_loop_test(tc, test_padding_record_is_skipped, 0, 2);
    tcase_add_loop_test(tc, test_too_large_is_refused_both_ways, 0, 2);
    tcase_add_test(tc, test_record_max_is_the_limit);
    tcase_add_loop_test(tc, test_peek_holds_the_record_across_the_wrap, 0, 2);
    tcase_add_test(tc, test_short_commit_gives_the_rest_back);
    tcase_add_test(tc, test_share_reader_leaving_with_a_peeked_record_hands_it_on);
    tcase_add_test(tc, test_share_dead_reader_mid_claim);
    tcase_add_loop_test(tc, test_writer_dead_after_padding, 0, 2);
    tcase_add_loop_test(tc, test_one_large_record_at_a_time_is_not_paced, 0, 2);
    tcase_add_loop_test(tc, test_one_record_after_padding_is_not_paced, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("hostile");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_hostile_header_is_refused, 0, 12);
    tcase_add_test(tc, test_share_header_checked_once_at_the_claim);
    suite_add_tcase(s, tc);

    tc = tcase_create("processes");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_processes_account_for_every_record, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(day8_suite(), "check_day8");
}
