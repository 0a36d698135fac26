/* check_day5.c - what day 5 adds to the contract: many readers in two
 * fan-out modes, readers that come and go, a power-of-two ring, end of
 * stream, and the header fields that describe all that. Built against
 * day 5 and against every later day (the Makefile's TEST_MATRIX).
 *
 * Processes are real (fork) wherever the promise is about IPC; the thread
 * versions of the stress runs are what ThreadSanitizer checks. In day 5's
 * own build (DAY_BUILD names its build folder) the "programs" tests also
 * run the day's producer and consumer and stop them with signals. */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "common.h"
#include "test_util.h"

#include <pthread.h>
#include <sched.h>
#include <stdalign.h>

#define ELEM 64u
#define MS 1000000ll
#define SEC 1000000000ll
#define STUCK_NS (30 * SEC)      /* one blocking call longer than this: hung */
#define IO_TIMEOUT_MS 120000u

static struct spmc_queue qw, qr[4];

static void setup(void)
{
    tu_setup();
    memset(&qw, 0, sizeof qw);
    memset(qr, 0, sizeof qr);
}

static void teardown(void)
{
    (void)spmc_queue_destroy(&qw);
    for (unsigned k = 0; k < 4; k++)
        (void)spmc_queue_destroy(&qr[k]);
    tu_teardown();
}

static void create_mode_at(const char *name, enum spmc_fanout fanout, unsigned readers, size_t cap,
                           const char *file, int line)
{
    struct spmc_options o = {.fanout = fanout, .max_readers = readers};
    tu_assert_int_at(file, line, spmc_queue_create_opts(&qw, name, ELEM, cap, &o), ==, 0);
}
#define create_mode(name, fanout, readers, cap)                                                    \
    create_mode_at((name), (fanout), (readers), (cap), __FILE__, __LINE__)

/* A work-sharing queue whose readers claim at most @p claim messages at
 * once. A day without claims of many messages (SPMC_CLAIM_DEFAULT) claims
 * one at a time, and is built only with claim 1. */
static void create_claim_at(const char *name, unsigned readers, size_t cap, unsigned claim,
                            const char *file, int line)
{
#ifdef SPMC_CLAIM_DEFAULT
    struct spmc_options o = {.fanout = SPMC_SHARE, .max_readers = readers, .claim_max = claim};
    tu_assert_int_at(file, line, spmc_queue_create_opts(&qw, name, ELEM, cap, &o), ==, 0);
#else
    tu_assert_uint_at(file, line, claim, ==, 1);
    create_mode_at(name, SPMC_SHARE, readers, cap, file, line);
#endif
}
#define create_claim(name, readers, cap, claim)                                                    \
    create_claim_at((name), (readers), (cap), (claim), __FILE__, __LINE__)

static void push_seq_at(struct spmc_queue *q, uint64_t seq, const char *file, int line)
{
    unsigned char m[ELEM];
    msg_fill(m, ELEM, seq);
    tu_assert_int_at(file, line, spmc_queue_try_push(q, m), ==, 0);
}
#define push_seq(q, seq) push_seq_at((q), (seq), __FILE__, __LINE__)

static void pop_expect_at(struct spmc_queue *q, uint64_t seq, const char *file, int line)
{
    unsigned char m[ELEM];
    tu_assert_int_at(file, line, spmc_queue_try_pop(q, m), ==, 0);
    tu_assert_uint_at(file, line, msg_seq(m), ==, seq);
    tu_assert_true_at(file, line, msg_intact(m, ELEM));
}
#define pop_expect(q, seq) pop_expect_at((q), (seq), __FILE__, __LINE__)

/* Pop @p n messages (waiting up to 2 s for each): exactly the messages
 * from..from+n-1, in any order. A reader that left messages of its claim
 * behind: day 5 delivers them first, day 6 once a reader finds nothing
 * else (its peers' liveness checks are rate-limited). */
static void pop_set_at(struct spmc_queue *q, uint64_t from, unsigned n, const char *file, int line)
{
    unsigned char m[ELEM];
    uint64_t got = 0;
    tu_assert_uint_at(file, line, n, <=, 64);
    for (unsigned k = 0; k < n; k++) {
        tu_assert_int_at(file, line, spmc_queue_pop(q, m, 2000 * MS), ==, 0);
        uint64_t s = msg_seq(m);
        tu_assert_at(file, line, s >= from && s < from + n, "message %llu", (unsigned long long)s);
        tu_assert_true_at(file, line, msg_intact(m, ELEM));
        tu_assert_at(file, line, !(got >> (s - from) & 1), "message %llu twice",
                     (unsigned long long)s);
        got |= 1ull << (s - from);
    }
}
#define pop_set(q, from, n) pop_set_at((q), (from), (n), __FILE__, __LINE__)

/* ===================================================================== */
/* Limits: capacity, table, options                                        */
/* ===================================================================== */

/* The smallest broadcast ring: one slot up to day 7; from day 8, where a
 * ring holds two of the largest records at least, two. */
#if SPMC_VERSION >= 8
#define MIN_CAP 2u
#else
#define MIN_CAP 1u
#endif

START_TEST(test_capacity_must_be_a_power_of_two)
{
    const size_t bad[] = {3, 6, 1000, 1025, 0, MIN_CAP == 1 ? 0 : 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_int_eq(spmc_queue_create(&qw, tu_name(), ELEM, bad[i]), -EINVAL);
    const char *name = tu_name();
    ck_assert_int_eq(spmc_queue_create(&qw, name, ELEM, MIN_CAP), 0); /* 2^0 (or 2^1) is fine */
    ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, MIN_CAP), 0);
    push_seq(&qw, 7);
    pop_expect(&qr[0], 7);
    push_seq(&qw, 8);
    pop_expect(&qr[0], 8);
}
END_TEST

START_TEST(test_bad_options_are_refused)
{
    struct spmc_options o = {.fanout = SPMC_BROADCAST, .max_readers = 0};
    ck_assert_int_eq(spmc_queue_create_opts(&qw, tu_name(), ELEM, 8, &o), -EINVAL);
    o.max_readers = SPMC_MAX_READERS + 1;
    ck_assert_int_eq(spmc_queue_create_opts(&qw, tu_name(), ELEM, 8, &o), -EINVAL);
    o = (struct spmc_options){.fanout = (enum spmc_fanout)7, .max_readers = 4};
    ck_assert_int_eq(spmc_queue_create_opts(&qw, tu_name(), ELEM, 8, &o), -EINVAL);
    /* Work-sharing asks for two slots at least, and a claim of at most
     * SPMC_CLAIM_MAX messages. */
    o = (struct spmc_options){.fanout = SPMC_SHARE, .max_readers = 4};
    ck_assert_int_eq(spmc_queue_create_opts(&qw, tu_name(), ELEM, 1, &o), -EINVAL);
#ifdef SPMC_CLAIM_DEFAULT
    o.claim_max = SPMC_CLAIM_MAX + 1;
    ck_assert_int_eq(spmc_queue_create_opts(&qw, tu_name(), ELEM, 2, &o), -EINVAL);
    o.claim_max = 0; /* the default */
#endif
    ck_assert_int_eq(spmc_queue_create_opts(&qw, tu_name(), ELEM, 2, &o), 0);
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    ck_assert_int_eq(spmc_queue_create_opts(&qw, tu_name(), ELEM, 8, NULL), 0);
}
END_TEST

START_TEST(test_full_table_is_refused_and_a_detach_frees_an_entry)
{
    const char *name = tu_name();
    create_mode(name, SPMC_BROADCAST, 2, 8);
    ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 8), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr[1], name, ELEM, 8), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr[2], name, ELEM, 8), -EUSERS);
    ck_assert_int_eq(spmc_queue_destroy(&qr[0]), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr[2], name, ELEM, 8), 0);
    push_seq(&qw, 0);
    pop_expect(&qr[1], 0);
    pop_expect(&qr[2], 0);
}
END_TEST

START_TEST(test_wait_for_k_readers)
{
    const char *name = tu_name();
    create_mode(name, SPMC_SHARE, 4, 8);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 5, 0), -EINVAL); /* more than the table */
    ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 8), 0);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, 10 * MS), 0);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 2, 50 * MS), -ETIMEDOUT);
    ck_assert_int_eq(spmc_queue_attach(&qr[1], name, ELEM, 8), 0);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 2, 10 * MS), 0);
}
END_TEST

/* ===================================================================== */
/* Broadcast                                                               */
/* ===================================================================== */

START_TEST(test_broadcast_every_reader_gets_every_message)
{
    const char *name = tu_name();
    create_mode(name, SPMC_BROADCAST, 4, 8);
    for (unsigned k = 0; k < 3; k++)
        ck_assert_int_eq(spmc_queue_attach(&qr[k], name, ELEM, 8), 0);
    for (uint64_t s = 0; s < 100; s++) {
        push_seq(&qw, s);
        for (unsigned k = 0; k < 3; k++)
            pop_expect(&qr[k], s);
    }
}
END_TEST

START_TEST(test_broadcast_slowest_reader_holds_the_writer)
{
    const char *name = tu_name();
    create_mode(name, SPMC_BROADCAST, 4, 4);
    ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 4), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr[1], name, ELEM, 4), 0);
    unsigned char m[ELEM];
    for (uint64_t s = 0; s < 4; s++)
        push_seq(&qw, s);
    for (uint64_t s = 0; s < 4; s++)
        pop_expect(&qr[0], s); /* the fast reader has read everything */
    msg_fill(m, ELEM, 4);
    ck_assert_int_eq(spmc_queue_try_push(&qw, m), -EAGAIN); /* the slow one has not */
    ck_assert_int_eq(spmc_queue_push(&qw, m, 20 * MS), -ETIMEDOUT);
    pop_expect(&qr[1], 0); /* one slot free now (the reader publishes when it waits) */
    for (uint64_t s = 1; s < 4; s++)
        pop_expect(&qr[1], s);
    ck_assert_int_eq(spmc_queue_try_pop(&qr[1], m), -EAGAIN);
    msg_fill(m, ELEM, 4);
    ck_assert_int_eq(spmc_queue_try_push(&qw, m), 0);
    pop_expect(&qr[0], 4);
    pop_expect(&qr[1], 4);
}
END_TEST

START_TEST(test_broadcast_without_readers_never_blocks)
{
    const char *name = tu_name();
    create_mode(name, SPMC_BROADCAST, 4, 4);
    for (uint64_t s = 0; s < 100; s++)
        push_seq(&qw, s); /* nobody is owed these */
    ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 4), 0);
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_try_pop(&qr[0], m), -EAGAIN);
    push_seq(&qw, 100);
    pop_expect(&qr[0], 100);
}
END_TEST

START_TEST(test_broadcast_late_reader_starts_at_the_writer)
{
    const char *name = tu_name();
    create_mode(name, SPMC_BROADCAST, 4, 8);
    ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 8), 0);
    for (uint64_t s = 0; s < 5; s++)
        push_seq(&qw, s);
    ck_assert_int_eq(spmc_queue_attach(&qr[1], name, ELEM, 8), 0);
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_try_pop(&qr[1], m), -EAGAIN); /* 0..4 were before it */
    push_seq(&qw, 5);
    pop_expect(&qr[1], 5);
    for (uint64_t s = 0; s < 6; s++)
        pop_expect(&qr[0], s);
}
END_TEST

START_TEST(test_broadcast_reader_leaving_releases_the_writer)
{
    const char *name = tu_name();
    create_mode(name, SPMC_BROADCAST, 4, 4);
    ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 4), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr[1], name, ELEM, 4), 0);
    for (uint64_t s = 0; s < 4; s++)
        push_seq(&qw, s);
    for (uint64_t s = 0; s < 4; s++)
        pop_expect(&qr[0], s);
    unsigned char m[ELEM];
    msg_fill(m, ELEM, 4);
    ck_assert_int_eq(spmc_queue_try_push(&qw, m), -EAGAIN);
    ck_assert_int_eq(spmc_queue_destroy(&qr[1]), 0); /* the slow reader goes away */
    ck_assert_int_eq(spmc_queue_try_push(&qw, m), 0);
    pop_expect(&qr[0], 4);
}
END_TEST

/* ===================================================================== */
/* Work-sharing                                                            */
/* ===================================================================== */

START_TEST(test_share_each_message_to_one_reader)
{
    /* One message per claim: the two readers take turns. */
    const char *name = tu_name();
    create_claim(name, 4, 8, 1);
    ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 8), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr[1], name, ELEM, 8), 0);
    for (uint64_t s = 0; s < 6; s++)
        push_seq(&qw, s);
    pop_expect(&qr[0], 0);
    pop_expect(&qr[1], 1);
    pop_expect(&qr[1], 2);
    pop_expect(&qr[0], 3);
    pop_expect(&qr[0], 4);
    pop_expect(&qr[1], 5);
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_try_pop(&qr[0], m), -EAGAIN);
    ck_assert_int_eq(spmc_queue_try_pop(&qr[1], m), -EAGAIN);
}
END_TEST

#ifdef SPMC_CLAIM_DEFAULT
START_TEST(test_share_claims_split_messages_exactly_once)
{
    /* Claims of up to 3 messages: whatever the interleaving, each message
     * goes to exactly one reader, and each reader gets its own in order. */
    const char *name = tu_name();
    create_claim(name, 4, 16, 3);
    ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 16), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr[1], name, ELEM, 16), 0);
    for (uint64_t s = 0; s < 10; s++)
        push_seq(&qw, s);
    unsigned takers[10] = {0};
    uint64_t last[2] = {0, 0};
    unsigned char m[ELEM];
    int idle = 0;
    for (unsigned turn = 0; idle < 2 && turn < 100; turn++) {
        unsigned k = turn % 2;
        int rc = spmc_queue_try_pop(&qr[k], m);
        if (rc == -EAGAIN) {
            idle++;
            continue;
        }
        ck_assert_int_eq(rc, 0);
        idle = 0;
        uint64_t s = msg_seq(m);
        ck_assert_uint_lt(s, 10);
        ck_assert(msg_intact(m, ELEM));
        ck_assert_uint_ge(s, last[k]); /* in order, per reader */
        last[k] = s + 1;
        takers[s]++;
    }
    for (unsigned s = 0; s < 10; s++)
        ck_assert_msg(takers[s] == 1, "message %u taken %u times", s, takers[s]);
}
END_TEST
#endif

START_TEST(test_share_null_buffer_claims_nothing)
{
    /* The buffer is checked before the compare-and-swap that claims a
     * message: a NULL buffer must not take a message with it. */
    const char *name = tu_name();
    create_mode(name, SPMC_SHARE, 4, 4);
    ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 4), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr[1], name, ELEM, 4), 0);
    push_seq(&qw, 0);
    ck_assert_int_eq(spmc_queue_try_pop(&qr[0], NULL), -EINVAL);
    ck_assert_int_eq(spmc_queue_pop(&qr[0], NULL, STUCK_NS), -EINVAL);
    pop_expect(&qr[1], 0);
}
END_TEST

START_TEST(test_share_full_ring_holds_the_writer)
{
    /* One message per claim, so that each slot is handed back as soon as
     * its message is copied out. */
    const char *name = tu_name();
    create_claim(name, 4, 4, 1);
    ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 4), 0);
    for (uint64_t s = 0; s < 4; s++)
        push_seq(&qw, s);
    unsigned char m[ELEM];
    msg_fill(m, ELEM, 4);
    ck_assert_int_eq(spmc_queue_try_push(&qw, m), -EAGAIN);
    pop_expect(&qr[0], 0);
    push_seq(&qw, 4); /* the slot just copied out is free again at once */
    msg_fill(m, ELEM, 5);
    ck_assert_int_eq(spmc_queue_try_push(&qw, m), -EAGAIN); /* 1..4 are unread */
    for (uint64_t s = 1; s < 4; s++)
        pop_expect(&qr[0], s);
    for (uint64_t s = 5; s < 8; s++)
        push_seq(&qw, s);
    msg_fill(m, ELEM, 8);
    ck_assert_int_eq(spmc_queue_try_push(&qw, m), -EAGAIN);
}
END_TEST

START_TEST(test_share_busy_reader_holds_only_the_slot_it_copies)
{
    /* One message per claim. Reader 0 takes one message and then works on
     * it for a long time (it stops popping); reader 1 takes the rest.
     * Every slot has been copied out, so the writer must be able to refill
     * the whole ring at once: a reader hands each slot back right after
     * its copy, and one busy reader holds nothing back. */
    const char *name = tu_name();
    create_claim(name, 4, 4, 1);
    ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 4), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr[1], name, ELEM, 4), 0);
    for (uint64_t s = 0; s < 4; s++)
        push_seq(&qw, s);
    pop_expect(&qr[0], 0); /* ... and reader 0 is busy from now on */
    for (uint64_t s = 1; s < 4; s++)
        pop_expect(&qr[1], s);
    for (uint64_t s = 4; s < 8; s++)
        push_seq(&qw, s); /* try_push: 0 each time, never -EAGAIN */
    for (uint64_t s = 4; s < 8; s++)
        pop_expect(&qr[1], s);
}
END_TEST

#ifdef SPMC_CLAIM_DEFAULT
START_TEST(test_share_busy_reader_holds_at_most_its_claim)
{
    /* Claims of 2: reader 0 pops message 0 and stops. It holds message 1
     * back, and the slots of its claim (a reader hands a claim's slots back
     * together, once it has copied the last), and only those: reader 1
     * takes 2 and 3. When reader 0 leaves, it hands back slot 0, and reader
     * 1 gets message 1 too. */
    const char *name = tu_name();
    create_claim(name, 4, 4, 2);
    ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 4), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr[1], name, ELEM, 4), 0);
    for (uint64_t s = 0; s < 4; s++)
        push_seq(&qw, s);
    pop_expect(&qr[0], 0); /* claims 0 and 1 */
    pop_expect(&qr[1], 2); /* claims 2 and 3 */
    pop_expect(&qr[1], 3);
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_try_pop(&qr[1], m), -EAGAIN); /* 1 is reader 0's */
    msg_fill(m, ELEM, 4);
    ck_assert_int_eq(spmc_queue_try_push(&qw, m), -EAGAIN); /* slot 0: still held */
    ck_assert_int_eq(spmc_queue_destroy(&qr[0]), 0);
    push_seq(&qw, 4); /* slot 0: handed back on leaving */
    uint64_t got = 0; /* message 1, left behind by reader 0, and 4 */
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(spmc_queue_pop(&qr[1], m, 2000 * MS), 0);
        ck_assert(msg_seq(m) == 1 || msg_seq(m) == 4);
        got |= 1u << msg_seq(m);
    }
    ck_assert_uint_eq(got, (1u << 1) | (1u << 4));
    push_seq(&qw, 5); /* slot 1: handed back once message 1 was copied out */
    pop_expect(&qr[1], 5);
    ck_assert_int_eq(spmc_queue_try_pop(&qr[1], m), -EAGAIN);
}
END_TEST
#endif

/* Day 5's order for messages a reader left behind: before any new claim,
 * and before the end of stream (day 6 delivers them once a reader finds
 * nothing else to pop; its crash-point suite covers that). */
#if defined(SPMC_CLAIM_DEFAULT) && SPMC_VERSION == 5
START_TEST(test_share_left_messages_come_before_the_end_of_stream)
{
    /* Claims of 2. Readers 0 and 1 each leave one message of their claim
     * behind, after the writer has closed; reader 2 gets both before it
     * sees the end of the stream. Then an entry that was left, freed and
     * taken again is left again, and its message is not lost either. */
    const char *name = tu_name();
    create_claim(name, 4, 8, 2);
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(spmc_queue_attach(&qr[k], name, ELEM, 8), 0);
    for (uint64_t s = 0; s < 8; s++)
        push_seq(&qw, s);
    pop_expect(&qr[0], 0); /* claims 0 and 1 */
    pop_expect(&qr[1], 2); /* claims 2 and 3 */
    pop_expect(&qr[2], 4); /* claims 4 and 5 */
    pop_expect(&qr[2], 5);
    pop_expect(&qr[2], 6); /* claims 6 and 7 */
    ck_assert_int_eq(spmc_queue_destroy(&qr[0]), 0); /* leaves 1 */
    pop_expect(&qr[2], 7);
    pop_expect(&qr[2], 1);                           /* entry 0 is free again */
    ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 8), 0); /* takes it */
    for (uint64_t s = 8; s < 10; s++)
        push_seq(&qw, s);
    pop_expect(&qr[0], 8);                           /* claims 8 and 9 */
    ck_assert_int_eq(spmc_queue_destroy(&qr[0]), 0); /* leaves 9 */
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);    /* closes */
    ck_assert_int_eq(spmc_queue_destroy(&qr[1]), 0); /* leaves 3, after the close */
    pop_set(&qr[2], 9, 1);
    pop_expect(&qr[2], 3);
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_try_pop(&qr[2], m), -EPIPE);
}
END_TEST
#endif

START_TEST(test_share_detach_hands_slots_back)
{
    const char *name = tu_name();
    create_mode(name, SPMC_SHARE, 4, 4);
    ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 4), 0);
    for (uint64_t s = 0; s < 4; s++)
        push_seq(&qw, s);
    pop_expect(&qr[0], 0);
    pop_expect(&qr[0], 1);
    ck_assert_int_eq(spmc_queue_destroy(&qr[0]), 0);
    push_seq(&qw, 4); /* slots 0 and 1 were handed back as they were copied */
    push_seq(&qw, 5);
    ck_assert_int_eq(spmc_queue_attach(&qr[1], name, ELEM, 4), 0);
    pop_set(&qr[1], 2, 4); /* nothing lost with the reader that left */
}
END_TEST

/* ===================================================================== */
/* End of stream                                                           */
/* ===================================================================== */

START_TEST(test_end_of_stream_in_both_modes)
{
    const enum spmc_fanout modes[] = {SPMC_BROADCAST, SPMC_SHARE};
    for (int i = 0; i < 2; i++) {
        const char *name = tu_name();
        create_mode(name, modes[i], 4, 8);
        ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 8), 0);
        for (uint64_t s = 0; s < 5; s++)
            push_seq(&qw, s);
        ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
        for (uint64_t s = 0; s < 5; s++)
            pop_expect(&qr[0], s); /* drained first ... */
        unsigned char m[ELEM];
        ck_assert_int_eq(spmc_queue_try_pop(&qr[0], m), -EPIPE); /* ... then the end */
        ck_assert_int_eq(spmc_queue_pop(&qr[0], m, SPMC_WAIT_FOREVER), -EPIPE);
        ck_assert_int_eq(spmc_queue_destroy(&qr[0]), 0);
    }
}
END_TEST

/* ===================================================================== */
/* Pacing: spmc_queue_pop() waits before a look only after a batch         */
/* ===================================================================== */

static void pop_wait_expect_at(struct spmc_queue *q, uint64_t seq, const char *file, int line)
{
    unsigned char m[ELEM];
    tu_assert_int_at(file, line, spmc_queue_pop(q, m, 2000 * MS), ==, 0);
    tu_assert_uint_at(file, line, msg_seq(m), ==, seq);
    tu_assert_true_at(file, line, msg_intact(m, ELEM));
}
#define pop_wait_expect(q, seq) pop_wait_expect_at((q), (seq), __FILE__, __LINE__)

/* A reader paces itself by what each look at head finds: one message at a
 * time, never; batches, a little longer each time, up to a few
 * microseconds; a batch that fills a quarter of the ring, half as long;
 * an empty queue, never again until the next batch. */
START_TEST(test_pacing_follows_what_each_look_finds)
{
    const enum spmc_fanout modes[] = {SPMC_BROADCAST, SPMC_SHARE};
    for (int i = 0; i < 2; i++) {
        const char *name = tu_name();
        create_mode(name, modes[i], 4, 1024);
        ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 1024), 0);
        uint64_t seq = 0;
        for (int k = 0; k < 10; k++) { /* a ping-pong */
            push_seq(&qw, seq);
            pop_wait_expect(&qr[0], seq++);
            ck_assert_uint_eq(qr[0].pace_ns, 0);
        }
        uint64_t first = 0, last = 0;
        for (int k = 0; k < 20; k++) { /* a stream, in batches of 32 */
            for (uint64_t j = 0; j < 32; j++)
                push_seq(&qw, seq + j);
            for (uint64_t j = 0; j < 32; j++)
                pop_wait_expect(&qr[0], seq++);
            ck_assert_uint_gt(qr[0].pace_ns, 0);
            ck_assert_uint_ge(qr[0].pace_ns, last);
            ck_assert_uint_le(qr[0].pace_ns, 10000); /* a few microseconds */
            last = qr[0].pace_ns;
            if (first == 0)
                first = last;
        }
        ck_assert_uint_gt(last, first); /* it grew */
        for (uint64_t j = 0; j < 300; j++) /* more than a quarter of the ring */
            push_seq(&qw, seq + j);
        for (uint64_t j = 0; j < 300; j++)
            pop_wait_expect(&qr[0], seq++);
        ck_assert_uint_eq(qr[0].pace_ns, last / 2);
        unsigned char m[ELEM];
        ck_assert_int_eq(spmc_queue_try_pop(&qr[0], m), -EAGAIN); /* idle */
        ck_assert_uint_eq(qr[0].pace_ns, 0);
        push_seq(&qw, seq);
        pop_wait_expect(&qr[0], seq++);
        ck_assert_uint_eq(qr[0].pace_ns, 0);
        ck_assert_int_eq(spmc_queue_destroy(&qr[0]), 0);
        ck_assert_int_eq(spmc_queue_destroy(&qw), 0);

        /* A small ring is never paced: a batch is a large part of it. */
        name = tu_name();
        create_mode(name, modes[i], 4, 8);
        ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 8), 0);
        for (int k = 0; k < 10; k++) {
            for (uint64_t j = 0; j < 4; j++)
                push_seq(&qw, seq + j);
            for (uint64_t j = 0; j < 4; j++)
                pop_wait_expect(&qr[0], seq++);
            ck_assert_uint_eq(qr[0].pace_ns, 0);
        }
        ck_assert_int_eq(spmc_queue_destroy(&qr[0]), 0);
        ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    }
}
END_TEST

/* ===================================================================== */
/* Hostile headers: the fields day 5 adds                                  */
/* ===================================================================== */

static alignas(64) unsigned char snap[1 << 16];
static size_t snap_size;

static struct spmc_shm_header *snapshot_at(enum spmc_fanout fanout, size_t cap, const char *file,
                                           int line)
{
    const char *name = tu_name_at(file, line);
    create_mode_at(name, fanout, 4, cap, file, line);
    long size = tu_read_segment(name, snap, sizeof snap);
    tu_assert_at(file, line, size > 0, "snapshot: %ld", size);
    snap_size = (size_t)size;
    tu_assert_int_at(file, line, spmc_queue_destroy(&qw), ==, 0);
    return (struct spmc_shm_header *)snap;
}
#define snapshot(fanout) snapshot_at((fanout), 8, __FILE__, __LINE__)
#define snapshot_cap(fanout, cap) snapshot_at((fanout), (cap), __FILE__, __LINE__)

static int attach_copy_at(const char *file, int line)
{
    const char *name = tu_name_at(file, line);
    tu_assert_int_at(file, line, tu_make_segment(name, snap_size, snap, snap_size), ==, 0);
    int rc = spmc_queue_attach(&qr[0], name, 0, 0);
    (void)spmc_queue_destroy(&qr[0]);
    return rc;
}
#define attach_copy() attach_copy_at(__FILE__, __LINE__)

#ifdef SPMC_CLAIM_DEFAULT
START_TEST(test_hostile_claim_max)
{
    snapshot(SPMC_SHARE)->claim_max = 1;
    ck_assert_int_eq(attach_copy(), 0); /* the control */
    snapshot(SPMC_SHARE)->claim_max = 0;
    ck_assert_int_eq(attach_copy(), -EPROTO);
    snapshot(SPMC_SHARE)->claim_max = SPMC_CLAIM_MAX + 1;
    ck_assert_int_eq(attach_copy(), -EPROTO);
}
END_TEST
#endif

START_TEST(test_hostile_day5_fields)
{
    snapshot(SPMC_SHARE);
    ck_assert_int_eq(attach_copy(), 0); /* the control */
    snapshot(SPMC_SHARE)->fanout = 3;
    ck_assert_int_eq(attach_copy(), -EPROTO);
    snapshot(SPMC_BROADCAST)->max_readers = 0;
    ck_assert_int_eq(attach_copy(), -EPROTO);
    snapshot(SPMC_BROADCAST)->max_readers = 1u << 30; /* table beyond the segment */
    ck_assert_int_eq(attach_copy(), -EPROTO);
    snapshot(SPMC_BROADCAST)->slot_size = 8;
    ck_assert_int_eq(attach_copy(), -EPROTO);
    snapshot(SPMC_BROADCAST)->capacity = 6; /* not a power of two */
    ck_assert_int_eq(attach_copy(), -EPROTO);
    /* A capacity lowered after creation: the file is bigger than the
     * header says, and a smaller ring inside it is not the writer's. */
    snapshot(SPMC_BROADCAST)->capacity = 4;
    ck_assert_int_eq(attach_copy(), -EPROTO);
}
END_TEST

#if SPMC_VERSION < 8
START_TEST(test_hostile_one_slot_share)
{
    /* One slot is enough to broadcast, not to share: a work-sharing reader
     * hands slot i back as seq i + capacity, with one slot the same value
     * as "holds message i". */
    snapshot_cap(SPMC_BROADCAST, 1);
    ck_assert_int_eq(attach_copy(), 0); /* the control */
    snapshot_cap(SPMC_BROADCAST, 1)->fanout = SPMC_SHARE;
    ck_assert_int_eq(attach_copy(), -EPROTO);
}
END_TEST
#endif

START_TEST(test_hostile_indices_cannot_make_a_reader_misbehave)
{
    /* A peer scribbles over the slots' sequence words and the read index:
     * readers must answer with an error or "nothing yet", never crash or
     * spin forever (every call here returns). */
    const enum spmc_fanout modes[] = {SPMC_BROADCAST, SPMC_SHARE};
    for (int i = 0; i < 2; i++) {
        const char *name = tu_name();
        create_mode(name, modes[i], 4, 8);
        ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 8), 0);
        for (uint64_t s = 0; s < 8; s++)
            push_seq(&qw, s);
        for (size_t j = 0; j < 8; j++) {
#if defined(SPMC_CLAIM_DEFAULT) || SPMC_VERSION >= 8
            _Atomic uint64_t *seq = &qr[0].words[j]; /* the hand-back words */
#else
            _Atomic uint64_t *seq =
                (_Atomic uint64_t *)(qr[0].slots + j * qr[0].slot_size + qr[0].seq_offset);
#endif
            atomic_store(seq, 0xdeadbeefcafef00dull * (j + 1));
        }
        atomic_store(&qr[0].hdr->read_index, UINT64_MAX - 3);
        unsigned char m[ELEM];
        for (int n = 0; n < 20; n++) {
            int rc = spmc_queue_try_pop(&qr[0], m);
            ck_assert_msg(rc == -EPROTO || rc == -EAGAIN || rc == 0, "rc %d", rc);
        }
        ck_assert_int_ne(spmc_queue_pop(&qr[0], m, 20 * MS), -EINVAL);
        ck_assert_int_eq(spmc_queue_destroy(&qr[0]), 0);
        ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    }
}
END_TEST

/* ===================================================================== */
/* Concurrency: real processes                                             */
/* ===================================================================== */

/* Work-sharing: each of the n messages is in exactly one of the readers'
 * bitmaps (@p bytes each, one after the other in @p seen). */
static void assert_exactly_once_at(const unsigned char *seen, size_t bytes, unsigned readers,
                                   uint64_t n, const char *file, int line)
{
    for (uint64_t s = 0; s < n; s++) {
        unsigned takers = 0;
        for (unsigned k = 0; k < readers; k++)
            takers += (seen[k * bytes + s / 8] >> (s % 8)) & 1u;
        tu_assert_at(file, line, takers == 1, "message %llu taken %u times", (unsigned long long)s,
                     takers);
    }
}
#define assert_exactly_once(seen, bytes, readers, n)                                               \
    assert_exactly_once_at((seen), (bytes), (readers), (n), __FILE__, __LINE__)

/* What a consumer process reports through its pipe. */
struct report {
    uint64_t received, first, last, errors;
};

/* Pop until the end of stream; in broadcast the messages must be
 * consecutive, in share increasing; @p seen (share) marks each one. */
static struct report consume_all(struct spmc_queue *q, int share, unsigned char *seen)
{
    struct report r = {0, UINT64_MAX, 0, 0};
    unsigned char m[ELEM];
    int rc;
    while ((rc = spmc_queue_pop(q, m, STUCK_NS)) == 0) {
        uint64_t s = msg_seq(m);
        if (!msg_intact(m, ELEM) || (r.received > 0 && (share ? s <= r.last : s != r.last + 1)))
            r.errors++;
        if (share)
            seen[s / 8] |= (unsigned char)(1u << (s % 8));
        if (r.received == 0)
            r.first = s;
        r.last = s;
        r.received++;
    }
    if (rc != -EPIPE)
        r.errors++;
    return r;
}

/* Returns how many messages the consumers received in all. */
static uint64_t run_processes_at(enum spmc_fanout fanout, unsigned consumers, uint64_t n,
                                 const char *file, int line)
{
    const char *name = tu_name_at(file, line);
    const int share = fanout == SPMC_SHARE;
    create_mode_at(name, fanout, consumers, 1024, file, line);
    size_t bytes = (size_t)(n + 7) / 8;
    unsigned char *seen = mmap(NULL, bytes * consumers, PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    tu_assert_true_at(file, line, seen != MAP_FAILED);
    memset(seen, 0, bytes * consumers);
    int fds[2];
    tu_pipe_at(fds, file, line);
    pid_t pids[4];
    for (unsigned k = 0; k < consumers; k++) {
        pids[k] = tu_fork_at(file, line);
        if (pids[k] == 0) {
            struct spmc_queue q;
            struct report r = {0, 0, 0, 1};
            if (spmc_queue_attach(&q, name, ELEM, 1024) == 0) {
                r = consume_all(&q, share, seen + k * bytes);
                (void)spmc_queue_destroy(&q);
            }
            _exit(write(fds[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 3);
        }
    }
    tu_close(&fds[1]);
    tu_assert_int_at(file, line, spmc_queue_wait_readers(&qw, consumers, 10 * SEC), ==, 0);
    unsigned char m[ELEM];
    for (uint64_t s = 0; s < n; s++) {
        msg_fill(m, ELEM, s);
        tu_assert_int_at(file, line, spmc_queue_push(&qw, m, STUCK_NS), ==, 0);
    }
    tu_assert_int_at(file, line, spmc_queue_destroy(&qw), ==, 0); /* end of stream */
    uint64_t total = 0;
    for (unsigned k = 0; k < consumers; k++) {
        struct report r;
        tu_assert_uint_at(file, line,
                          tu_read_full_at(fds[0], &r, sizeof r, IO_TIMEOUT_MS, file, line), ==,
                          sizeof r);
        tu_assert_uint_at(file, line, r.errors, ==, 0);
        if (!share) {
            tu_assert_uint_at(file, line, r.received, ==, n);
            tu_assert_uint_at(file, line, r.first, ==, 0);
            tu_assert_uint_at(file, line, r.last, ==, n - 1);
        }
        total += r.received;
    }
    for (unsigned k = 0; k < consumers; k++)
        tu_assert_true_at(file, line, tu_exited_ok(tu_wait_at(pids[k], IO_TIMEOUT_MS, file, line)));
    if (share) {
        tu_assert_uint_at(file, line, total, ==, n);
        assert_exactly_once_at(seen, bytes, consumers, n, file, line);
    }
    munmap(seen, bytes * consumers);
    return total;
}
#define run_processes(fanout, consumers, n)                                                        \
    run_processes_at((fanout), (consumers), (n), __FILE__, __LINE__)

START_TEST(test_broadcast_three_processes_in_order)
{
    const uint64_t n = stress_messages(300000);
    ck_assert_uint_eq(run_processes(SPMC_BROADCAST, 3, n), 3 * n); /* each got all */
}
END_TEST

START_TEST(test_share_three_processes_exactly_once)
{
    const uint64_t n = stress_messages(300000);
    ck_assert_uint_eq(run_processes(SPMC_SHARE, 3, n), n); /* and each exactly once */
}
END_TEST

START_TEST(test_more_consumers_than_cores)
{
    /* Four consumer processes and a producer on a two-core machine: the
     * waiting must yield, or this takes scheduler ticks per message. */
    const uint64_t n = stress_messages(200000), m = stress_messages(100000);
    ck_assert_uint_eq(run_processes(SPMC_SHARE, 4, n), n);
    ck_assert_uint_eq(run_processes(SPMC_BROADCAST, 4, m), 4 * m);
}
END_TEST

/* ===================================================================== */
/* Concurrency: threads (what ThreadSanitizer checks)                      */
/* ===================================================================== */

struct reader_arg {
    struct spmc_queue *q;
    int share;
    unsigned char *seen;
    struct report r;
};

static void *reader_thread(void *p)
{
    struct reader_arg *a = p;
    a->r = consume_all(a->q, a->share, a->seen);
    return NULL;
}

/* Returns how many messages the readers received in all. */
static uint64_t run_threads_at(enum spmc_fanout fanout, unsigned readers, uint64_t n, size_t cap,
                               const char *file, int line)
{
    const char *name = tu_name_at(file, line);
    const int share = fanout == SPMC_SHARE;
    create_mode_at(name, fanout, readers, cap, file, line);
    size_t bytes = (size_t)(n + 7) / 8;
    unsigned char *seen = calloc(readers, bytes);
    tu_assert_true_at(file, line, seen != NULL);
    struct reader_arg a[4];
    pthread_t t[4];
    for (unsigned k = 0; k < readers; k++) {
        tu_assert_int_at(file, line, spmc_queue_attach(&qr[k], name, ELEM, cap), ==, 0);
        a[k] = (struct reader_arg){&qr[k], share, seen + k * bytes, {0, 0, 0, 0}};
        tu_assert_int_at(file, line, pthread_create(&t[k], NULL, reader_thread, &a[k]), ==, 0);
    }
    unsigned char m[ELEM];
    for (uint64_t s = 0; s < n; s++) {
        msg_fill(m, ELEM, s);
        tu_assert_int_at(file, line, spmc_queue_push(&qw, m, STUCK_NS), ==, 0);
    }
    tu_assert_int_at(file, line, spmc_queue_destroy(&qw), ==, 0);
    uint64_t total = 0;
    for (unsigned k = 0; k < readers; k++) {
        pthread_join(t[k], NULL);
        tu_assert_uint_at(file, line, a[k].r.errors, ==, 0);
        if (!share)
            tu_assert_uint_at(file, line, a[k].r.received, ==, n);
        total += a[k].r.received;
    }
    if (share) {
        tu_assert_uint_at(file, line, total, ==, n);
        assert_exactly_once_at(seen, bytes, readers, n, file, line);
    }
    free(seen);
    return total;
}
#define run_threads(fanout, readers, n, cap)                                                       \
    run_threads_at((fanout), (readers), (n), (cap), __FILE__, __LINE__)

START_TEST(test_broadcast_threads)
{
    const uint64_t n = stress_messages(200000);
    ck_assert_uint_eq(run_threads(SPMC_BROADCAST, 3, n, 64), 3 * n);
}
END_TEST

START_TEST(test_share_threads)
{
    const uint64_t n = stress_messages(200000);
    ck_assert_uint_eq(run_threads(SPMC_SHARE, 3, n, 64), n);
}
END_TEST

START_TEST(test_share_threads_tiny_ring)
{
    const uint64_t n = stress_messages(100000);
    ck_assert_uint_eq(run_threads(SPMC_SHARE, 3, n, 2), n);
}
END_TEST

/* A reader that joins while the writer is pushing flat out must see a
 * consecutive run from its first message to the end: the join protocol
 * (gate, then re-read) under load. Repeated, because the race is short.
 * The writer pushes until the joiner's attach has returned, however long
 * the joiner waits for a CPU, and then one message more, which the joiner
 * must get: so every round joins under load, and none can end before the
 * joiner has attached (it used to, now and then, on a busy machine: the
 * writer had pushed its last message and removed the queue before the
 * joiner's thread first ran, and the attach found no queue). */
struct joiner_arg {
    const char *name;
    struct report r;
    int attach_rc;
    _Atomic int attached; /* 1 once attach has returned, whatever it returned */
};

static void *joiner_thread(void *p)
{
    struct joiner_arg *a = p;
    struct spmc_queue q;
    a->attach_rc = spmc_queue_attach(&q, a->name, ELEM, 8);
    atomic_store(&a->attached, 1);
    if (a->attach_rc == 0) {
        a->r = consume_all(&q, 0, NULL);
        (void)spmc_queue_destroy(&q);
    }
    return NULL;
}

START_TEST(test_broadcast_join_under_load)
{
    const char *name = tu_name(); /* reused: each round unlinks it */
    for (int round = 0; round < 20; round++) {
        create_mode(name, SPMC_BROADCAST, 4, 8);
        ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 8), 0);
        struct reader_arg steady = {&qr[0], 0, NULL, {0, 0, 0, 0}};
        struct joiner_arg late = {name, {0, 0, 0, 0}, -1, 0};
        pthread_t ts, tj;
        ck_assert_int_eq(pthread_create(&ts, NULL, reader_thread, &steady), 0);
        const uint64_t at_least = stress_messages(20000);
        unsigned char m[ELEM];
        uint64_t n = 0; /* pushed */
        for (int joined = 0; n < at_least || !joined; n++) {
            if (n == at_least / 4)
                ck_assert_int_eq(pthread_create(&tj, NULL, joiner_thread, &late), 0);
            /* Read before this push: if the joiner had attached by then,
             * it started at or before this message. */
            joined = n > at_least / 4 && atomic_load(&late.attached);
            msg_fill(m, ELEM, n);
            ck_assert_int_eq(spmc_queue_push(&qw, m, STUCK_NS), 0);
        }
        ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
        pthread_join(ts, NULL);
        pthread_join(tj, NULL);
        ck_assert_uint_eq(steady.r.errors, 0);
        ck_assert_uint_eq(steady.r.received, n);
        ck_assert_int_eq(late.attach_rc, 0);
        ck_assert_uint_eq(late.r.errors, 0);
        ck_assert_uint_gt(late.r.received, 0); /* at least the last message */
        ck_assert_uint_eq(late.r.last, n - 1); /* consecutive up to the very last one */
        ck_assert_uint_eq(late.r.received, n - late.r.first);
        ck_assert_int_eq(spmc_queue_destroy(&qr[0]), 0);
    }
}
END_TEST

/* The join protocol, sharply: one reader joins and leaves again and again
 * while the writer pushes flat out into a ring of one slot. With no reader
 * attached the writer looks at the reader table and moves gate on every
 * push, so each join races the writer's "store gate, then read the table"
 * with its own "store cursor and state, then read gate" (the store-buffer
 * test of day5/litmus.c). A reader the writer does not see while the
 * reader does not see the writer's gate is lapped at once: its first pops
 * get -EPROTO (the writer is more than a lap ahead), a torn message, or a
 * gap or a repeat in its run. Bounded by the number of joins, not by a
 * clock; the writer yields after each push when it has no CPU of its own. */
enum { CHURN_POPS = 4 };

struct churn_arg {
    const char *name;
    unsigned joins;
    _Atomic unsigned done;
    unsigned failures;  /* joins that went wrong */
    char first[160];    /* what the first one saw */
};

static void churn_failed(struct churn_arg *a, unsigned join, const char *what, long long v)
{
    if (a->failures++ == 0)
        snprintf(a->first, sizeof a->first, "join %u of %u: %s %lld", join + 1, a->joins,
                 what, v);
}

static void *churn_thread(void *p)
{
    struct churn_arg *a = p;
    unsigned char m[ELEM];
    for (unsigned j = 0; j < a->joins; j++) {
        struct spmc_queue q;
        int rc = spmc_queue_attach(&q, a->name, ELEM, MIN_CAP);
        if (rc != 0) {
            churn_failed(a, j, "attach returned", rc);
            continue;
        }
        uint64_t last = 0;
        for (unsigned k = 0; k < CHURN_POPS; k++) {
            rc = spmc_queue_pop(&q, m, STUCK_NS);
            if (rc != 0) {
                churn_failed(a, j, "pop returned", rc);
                break;
            }
            if (!msg_intact(m, ELEM)) {
                churn_failed(a, j, "torn message, seq", (long long)msg_seq(m));
                break;
            }
            if (k > 0 && msg_seq(m) != last + 1) {
                churn_failed(a, j, "run not consecutive, got seq", (long long)msg_seq(m));
                break;
            }
            last = msg_seq(m);
        }
        (void)spmc_queue_destroy(&q);
    }
    atomic_store(&a->done, 1);
    return NULL;
}

START_TEST(test_broadcast_join_and_leave_churn)
{
    /* 20000 joins, a second or two; fewer under the sanitizers, which set
     * SPMC_STRESS_MESSAGES lower than two million. */
    const uint64_t joins = stress_messages(2000000) / 100;
    const int share_cpu = usable_cpus() < 2;
    const char *name = tu_name();
    create_mode(name, SPMC_BROADCAST, 4, MIN_CAP);
    struct churn_arg a = {.name = name, .joins = joins < 20000 ? (unsigned)joins : 20000};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, churn_thread, &a), 0);
    unsigned char m[ELEM];
    int rc = 0;
    /* No ck_assert in this loop: each one that passes costs Check a write
     * to its pipe, and a writer that slow rarely meets a joining reader. */
    for (uint64_t s = 0; rc == 0 && !atomic_load(&a.done); s++) {
        msg_fill(m, ELEM, s);
        rc = spmc_queue_push(&qw, m, STUCK_NS);
        if (share_cpu)
            sched_yield();
    }
    pthread_join(t, NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(a.failures == 0, "%u of %u joins went wrong; the first: %s", a.failures,
                  a.joins, a.first);
}
END_TEST

/* ===================================================================== */
/* Programs: signals (day 5's own build only)                              */
/* ===================================================================== */

#ifdef DAY_BUILD
#define PRODUCER DAY_BUILD "/producer"
#define CONSUMER DAY_BUILD "/consumer"

/* 1 when @p status says the program exited (not died) with 128 + @p sig. */
static int exited_on(int status, int sig)
{
    return WIFEXITED(status) && WEXITSTATUS(status) == 128 + sig;
}

/* The number after @p key in @p text ("sent 12 messages": key "sent "). */
static uint64_t number_after_at(const char *text, const char *key, const char *file, int line)
{
    const char *p = strstr(text, key);
    tu_assert_at(file, line, p != NULL, "no \"%s\" in:\n%s", key, text);
    return strtoull(p + strlen(key), NULL, 10);
}
#define number_after(text, key) number_after_at((text), (key), __FILE__, __LINE__)

START_TEST(test_producer_signal_closes_the_queue_and_counts_every_message)
{
    /* The test is the only (work-sharing) consumer and reads slowly, so the
     * producer spends its time inside a push waiting for room: the signal
     * comes while a push is under way, and often just before it succeeds.
     * Every message the producer says it sent must arrive, and no more. */
    const char *name = tu_name();
    int out[2];
    tu_pipe(out);
    char *const argv[] = {(char *)PRODUCER, "--name", (char *)name, "--fanout", "share",
                          "--consumers", "1", "--capacity", "4", "--messages", "100000000",
                          NULL};
    pid_t pid = tu_spawn(argv, out[1], -1);
    tu_close(&out[1]);
    char text[4096];
    size_t len = 0;
    ck_assert(tu_read_until(out[0], text, sizeof text, &len, "spmc_queue created",
                            IO_TIMEOUT_MS));
    ck_assert_int_eq(spmc_queue_attach(&qr[0], name, ELEM, 4), 0);
    unsigned char m[ELEM];
    uint64_t received = 0;
    int rc;
    while ((rc = spmc_queue_pop(&qr[0], m, STUCK_NS)) == 0) {
        ck_assert_uint_eq(msg_seq(m), received); /* the only reader: all, in order */
        ck_assert(msg_intact(m, ELEM));
        received++;
        if (received == 200)
            ck_assert_int_eq(kill(pid, SIGINT), 0);
        if (received < 400)
            tu_sleep_ms(1);
    }
    ck_assert_int_eq(rc, -EPIPE); /* drained, then the end of stream */
    ck_assert(tu_read_until(out[0], text, sizeof text, &len, NULL, IO_TIMEOUT_MS));
    int status = tu_wait(pid, IO_TIMEOUT_MS);
    ck_assert_msg(exited_on(status, SIGINT), "producer: %s, expected exit status %d",
                  tu_status_str(status), 128 + SIGINT);
    ck_assert_msg(strstr(text, "interrupted: closing the queue") != NULL, "printed:\n%s", text);
    ck_assert_uint_eq(number_after(text, "\nsent "), received);
    ck_assert_int_eq(tu_segment_size(name), -ENOENT);
}
END_TEST

START_TEST(test_producer_signal_while_waiting_for_readers)
{
    const char *name = tu_name();
    int out[2];
    tu_pipe(out);
    char *const argv[] = {(char *)PRODUCER, "--name", (char *)name, "--consumers", "2", NULL};
    pid_t pid = tu_spawn(argv, out[1], -1);
    tu_close(&out[1]);
    char text[4096];
    size_t len = 0;
    ck_assert(tu_read_until(out[0], text, sizeof text, &len, "reader(s)...", IO_TIMEOUT_MS));
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    ck_assert(tu_read_until(out[0], text, sizeof text, &len, NULL, IO_TIMEOUT_MS));
    int status = tu_wait(pid, IO_TIMEOUT_MS);
    ck_assert_msg(exited_on(status, SIGTERM), "producer: %s, expected exit status %d; "
                  "printed:\n%s", tu_status_str(status), 128 + SIGTERM, text);
    ck_assert_uint_eq(number_after(text, "\nsent "), 0);
    ck_assert_int_eq(tu_segment_size(name), -ENOENT);
}
END_TEST

START_TEST(test_consumer_signal_while_waiting_for_a_producer)
{
    /* No queue of that name: the consumer retries for 5 s, unless told to
     * stop. (Were it not, it would exit 1 after those 5 s, not 130.) */
    const char *name = tu_name();
    int out[2];
    tu_pipe(out);
    char *const argv[] = {(char *)CONSUMER, "--name", (char *)name, NULL};
    pid_t pid = tu_spawn(argv, out[1], -1);
    tu_close(&out[1]);
    char text[4096];
    size_t len = 0;
    ck_assert(tu_read_until(out[0], text, sizeof text, &len, "mode reader", IO_TIMEOUT_MS));
    ck_assert_int_eq(kill(pid, SIGINT), 0);
    ck_assert(tu_read_until(out[0], text, sizeof text, &len, NULL, IO_TIMEOUT_MS));
    int status = tu_wait(pid, IO_TIMEOUT_MS);
    ck_assert_msg(exited_on(status, SIGINT), "consumer: %s, expected exit status %d; "
                  "printed:\n%s", tu_status_str(status), 128 + SIGINT, text);
}
END_TEST

START_TEST(test_consumer_signal_detaches)
{
    const char *name = tu_name();
    create_mode(name, SPMC_BROADCAST, 4, 8);
    int out[2];
    tu_pipe(out);
    char *const argv[] = {(char *)CONSUMER, "--name", (char *)name, NULL};
    pid_t pid = tu_spawn(argv, out[1], -1);
    tu_close(&out[1]);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, 10 * SEC), 0);
    for (uint64_t s = 0; s < 5; s++)
        push_seq(&qw, s);
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    char text[4096];
    size_t len = 0;
    ck_assert(tu_read_until(out[0], text, sizeof text, &len, NULL, IO_TIMEOUT_MS));
    int status = tu_wait(pid, IO_TIMEOUT_MS);
    ck_assert_msg(exited_on(status, SIGTERM), "consumer: %s, expected exit status %d; "
                  "printed:\n%s", tu_status_str(status), 128 + SIGTERM, text);
    uint64_t n = number_after(text, "terminated: detaching after ");
    ck_assert_uint_le(n, 5);
    ck_assert_uint_eq(number_after(text, "received "), n);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, 0), -ETIMEDOUT); /* its entry is free */
}
END_TEST
#endif /* DAY_BUILD */

/* ===================================================================== */
/* The suite                                                               */
/* ===================================================================== */

static Suite *day5_suite(void)
{
    Suite *s = suite_create("day5");
    TCase *tc = tcase_create("limits");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_capacity_must_be_a_power_of_two);
    tcase_add_test(tc, test_bad_options_are_refused);
    tcase_add_test(tc, test_full_table_is_refused_and_a_detach_frees_an_entry);
    tcase_add_test(tc, test_wait_for_k_readers);
    suite_add_tcase(s, tc);

    tc = tcase_create("fanout");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_broadcast_every_reader_gets_every_message);
    tcase_add_test(tc, test_broadcast_slowest_reader_holds_the_writer);
    tcase_add_test(tc, test_broadcast_without_readers_never_blocks);
    tcase_add_test(tc, test_broadcast_late_reader_starts_at_the_writer);
    tcase_add_test(tc, test_broadcast_reader_leaving_releases_the_writer);
    tcase_add_test(tc, test_share_each_message_to_one_reader);
#ifdef SPMC_CLAIM_DEFAULT
    tcase_add_test(tc, test_share_claims_split_messages_exactly_once);
#endif
    tcase_add_test(tc, test_share_null_buffer_claims_nothing);
    tcase_add_test(tc, test_share_full_ring_holds_the_writer);
    tcase_add_test(tc, test_share_busy_reader_holds_only_the_slot_it_copies);
#ifdef SPMC_CLAIM_DEFAULT
    tcase_add_test(tc, test_share_busy_reader_holds_at_most_its_claim);
#endif
    tcase_add_test(tc, test_share_detach_hands_slots_back);
#if defined(SPMC_CLAIM_DEFAULT) && SPMC_VERSION == 5
    tcase_add_test(tc, test_share_left_messages_come_before_the_end_of_stream);
#endif
    tcase_add_test(tc, test_end_of_stream_in_both_modes);
    tcase_add_test(tc, test_pacing_follows_what_each_look_finds);
    suite_add_tcase(s, tc);

    tc = tcase_create("faults");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_hostile_day5_fields);
#if SPMC_VERSION < 8
    tcase_add_test(tc, test_hostile_one_slot_share);
#endif
#ifdef SPMC_CLAIM_DEFAULT
    tcase_add_test(tc, test_hostile_claim_max);
#endif
    tcase_add_test(tc, test_hostile_indices_cannot_make_a_reader_misbehave);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_broadcast_three_processes_in_order);
    tcase_add_test(tc, test_share_three_processes_exactly_once);
    tcase_add_test(tc, test_more_consumers_than_cores);
    tcase_add_test(tc, test_broadcast_threads);
    tcase_add_test(tc, test_share_threads);
    tcase_add_test(tc, test_share_threads_tiny_ring);
    tcase_add_test(tc, test_broadcast_join_under_load);
    tcase_add_test(tc, test_broadcast_join_and_leave_churn);
    suite_add_tcase(s, tc);

#ifdef DAY_BUILD
    tc = tcase_create("programs");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_producer_signal_closes_the_queue_and_counts_every_message);
    tcase_add_test(tc, test_producer_signal_while_waiting_for_readers);
    tcase_add_test(tc, test_consumer_signal_while_waiting_for_a_producer);
    tcase_add_test(tc, test_consumer_signal_detaches);
    suite_add_tcase(s, tc);
#endif
    return s;
}

int main(void)
{
    return tu_main(day5_suite(), "check_day5");
}
