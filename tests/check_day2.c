/* check_day2.c - what is day 2's own: lifecycle, limits, and a message
 * between two real processes.
 *
 * What every day from 2 on promises (bad names and sizes, NULL buffers, an
 * existing or missing segment, hostile and half-written headers) is in
 * check_contract.c, which the Makefile builds against day 2 too. Day 2 has
 * no wrap-around (a full queue says -ENOSPC for good) and no blocking
 * push/pop; it is racy by design, so no stress test and no
 * ThreadSanitizer run (days 3+ have both, in check_contract.c). */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "common.h"
#include "test_util.h"

#define ELEM 64u
#define CAP 8u
#define SEC 1000000000ll
/* Deadline for children and pipes: a hang fails instead of blocking. */
#define IO_TIMEOUT_MS 30000u

/* Handles live outside the test functions, so that teardown can destroy
 * whatever a failed test left open (destroying a zeroed or destroyed handle
 * is a harmless -EINVAL). */
static struct spmc_queue qw, qr, qx;

static void setup(void)
{
    tu_setup();
    memset(&qw, 0, sizeof qw);
    memset(&qr, 0, sizeof qr);
    memset(&qx, 0, sizeof qx);
}

static void teardown(void)
{
    (void)spmc_queue_destroy(&qr);
    (void)spmc_queue_destroy(&qx);
    (void)spmc_queue_destroy(&qw);
    tu_teardown();
}

/* A writer on a fresh name, and a reader attached to it. */
static const char *open_pair_at(size_t elem, size_t cap, const char *file, int line)
{
    const char *name = tu_name_at(file, line);
    tu_assert_int_at(file, line, spmc_queue_create(&qw, name, elem, cap), ==, 0);
    tu_assert_int_at(file, line, spmc_queue_attach(&qr, name, elem, cap), ==, 0);
    return name;
}
#define open_pair(elem, cap) open_pair_at((elem), (cap), __FILE__, __LINE__)

/* The segment of an ELEM x CAP queue: day 2's header, then the slots. */
#define FULL_SIZE (sizeof(struct spmc_shm_header) + ELEM * CAP)

/* ===================================================================== */
/* Lifecycle                                                               */
/* ===================================================================== */

START_TEST(test_lifecycle)
{
    const char *name = tu_name();
    ck_assert_int_eq(spmc_queue_create(&qw, name, ELEM, CAP), 0);
    ck_assert_int_eq(tu_segment_size(name), (long)FULL_SIZE);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, CAP), 0);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, 0), 0);

    unsigned char in[ELEM], out[ELEM];
    msg_fill(in, ELEM, 42);
    ck_assert_int_eq(spmc_queue_try_push(&qw, in), 0);
    memset(out, 0, sizeof out);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, out), 0);
    ck_assert_uint_eq(msg_seq(out), 42);
    ck_assert(msg_intact(out, ELEM));

    ck_assert_int_eq(spmc_queue_destroy(&qr), 0);
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    ck_assert_int_eq(tu_segment_size(name), -ENOENT); /* the writer removed it */
    ck_assert_int_eq(spmc_queue_destroy(&qw), -EINVAL);
    ck_assert_int_eq(spmc_queue_destroy(&qr), -EINVAL);
    ck_assert_int_eq(spmc_queue_destroy(NULL), -EINVAL);
}
END_TEST

START_TEST(test_attach_with_zero_sizes_takes_the_header_values)
{
    const char *name = tu_name();
    ck_assert_int_eq(spmc_queue_create(&qw, name, 24, 3), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, 0, 0), 0);
    unsigned char in[24], out[24];
    msg_fill(in, sizeof in, 7);
    ck_assert_int_eq(spmc_queue_try_push(&qw, in), 0);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, out), 0);
    ck_assert_uint_eq(msg_seq(out), 7);
    ck_assert(msg_intact(out, sizeof out));
}
END_TEST

START_TEST(test_second_reader_is_refused_until_the_first_leaves)
{
    const char *name = open_pair(ELEM, CAP);
    ck_assert_int_eq(spmc_queue_attach(&qx, name, ELEM, CAP), -EBUSY);
    ck_assert_int_eq(spmc_queue_destroy(&qr), 0);
    ck_assert_int_eq(spmc_queue_attach(&qx, name, ELEM, CAP), 0);
}
END_TEST

START_TEST(test_each_side_only_does_its_own_job)
{
    open_pair(ELEM, CAP);
    unsigned char m[ELEM];
    msg_fill(m, ELEM, 0);
    ck_assert_int_eq(spmc_queue_try_push(&qr, m), -EINVAL);
    ck_assert_int_eq(spmc_queue_try_pop(&qw, m), -EINVAL);
    ck_assert_int_eq(spmc_queue_wait_readers(&qr, 1, 0), -EINVAL);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 2, 0), -EINVAL);
    ck_assert_int_eq(spmc_queue_try_push(NULL, m), -EINVAL);
    ck_assert_int_eq(spmc_queue_try_pop(NULL, m), -EINVAL);
}
END_TEST

/* ===================================================================== */
/* Limits                                                                  */
/* ===================================================================== */

START_TEST(test_full_queue_says_enospc_for_good)
{
    open_pair(ELEM, 4);
    unsigned char m[ELEM];
    for (uint64_t i = 0; i < 4; i++) {
        msg_fill(m, ELEM, i);
        ck_assert_int_eq(spmc_queue_try_push(&qw, m), 0);
    }
    msg_fill(m, ELEM, 4);
    ck_assert_int_eq(spmc_queue_try_push(&qw, m), -ENOSPC);
    for (uint64_t i = 0; i < 4; i++) {
        ck_assert_int_eq(spmc_queue_try_pop(&qr, m), 0);
        ck_assert_uint_eq(msg_seq(m), i);
        ck_assert(msg_intact(m, ELEM));
    }
    /* Day 2 never wraps: even an empty queue stays used up. */
    ck_assert_int_eq(spmc_queue_try_push(&qw, m), -ENOSPC);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN);
}
END_TEST

START_TEST(test_empty_queue_says_eagain)
{
    open_pair(ELEM, CAP);
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN);
}
END_TEST

START_TEST(test_end_of_stream_after_draining)
{
    open_pair(ELEM, CAP);
    unsigned char m[ELEM];
    for (uint64_t i = 0; i < 3; i++) {
        msg_fill(m, ELEM, i);
        ck_assert_int_eq(spmc_queue_try_push(&qw, m), 0);
    }
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), 0);
    ck_assert_uint_eq(msg_seq(m), 0);
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    /* What the writer pushed before it left is still delivered... */
    for (uint64_t i = 1; i < 3; i++) {
        ck_assert_int_eq(spmc_queue_try_pop(&qr, m), 0);
        ck_assert_uint_eq(msg_seq(m), i);
        ck_assert(msg_intact(m, ELEM));
    }
    /* ...then the end of the stream, for good. */
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EPIPE);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EPIPE);
}
END_TEST

START_TEST(test_drained_but_open_is_not_the_end)
{
    open_pair(ELEM, CAP);
    unsigned char m[ELEM];
    msg_fill(m, ELEM, 0);
    ck_assert_int_eq(spmc_queue_try_push(&qw, m), 0);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), 0);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN);
}
END_TEST

START_TEST(test_waiting_for_a_reader_that_never_comes)
{
    ck_assert_int_eq(spmc_queue_create(&qw, tu_name(), ELEM, CAP), 0);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, 100000000), -ETIMEDOUT); /* 100 ms */
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 0, 0), 0);
}
END_TEST

/* ===================================================================== */
/* Concurrency: two processes                                             */
/* ===================================================================== */

/* What the reading child reports through its pipe. */
struct reader_report {
    int32_t attach_rc; /* spmc_queue_attach */
    int32_t last_rc;   /* the pop that ended the loop: -EPIPE when all is well */
    uint64_t received; /* messages popped */
    uint64_t bad;      /* out of order, duplicated or damaged */
};

/* The child: attach, pop with a polling loop until the end of the stream,
 * check every message, report, leave with _exit(). */
static void reader_child(const char *name, int report_fd, uint64_t expected)
{
    struct reader_report rep = {0, 0, 0, 0};
    struct spmc_queue r;
    rep.attach_rc = spmc_queue_attach(&r, name, ELEM, CAP);
    if (rep.attach_rc == 0) {
        uint64_t deadline = tu_now_ns() + (uint64_t)IO_TIMEOUT_MS * 1000000u;
        unsigned char m[ELEM];
        for (;;) {
            int rc = spmc_queue_try_pop(&r, m);
            if (rc == 0) {
                if (msg_seq(m) != rep.received || !msg_intact(m, ELEM))
                    rep.bad++;
                rep.received++;
            } else if (rc == -EAGAIN && tu_now_ns() < deadline) {
                struct timespec nap = {0, 100000}; /* poll every 0.1 ms */
                nanosleep(&nap, NULL);
            } else {
                rep.last_rc = rc;
                break;
            }
        }
        (void)spmc_queue_destroy(&r);
    }
    ssize_t w = write(report_fd, &rep, sizeof rep);
    int ok = w == (ssize_t)sizeof rep && rep.attach_rc == 0 && rep.last_rc == -EPIPE &&
             rep.received == expected && rep.bad == 0;
    _exit(ok ? 0 : 1);
}

START_TEST(test_message_round_trip_between_processes)
{
    const char *name = tu_name();
    ck_assert_int_eq(spmc_queue_create(&qw, name, ELEM, CAP), 0);
    int rep_pipe[2];
    tu_pipe(rep_pipe);
    pid_t child = tu_fork();
    if (child == 0)
        reader_child(name, rep_pipe[1], CAP);
    tu_close(&rep_pipe[1]);

    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, 30 * SEC), 0);
    unsigned char m[ELEM];
    for (uint64_t i = 0; i < CAP; i++) {
        msg_fill(m, ELEM, i);
        ck_assert_int_eq(spmc_queue_try_push(&qw, m), 0);
    }
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0); /* end of stream */

    struct reader_report rep;
    memset(&rep, 0, sizeof rep);
    size_t got = tu_read_full(rep_pipe[0], &rep, sizeof rep, IO_TIMEOUT_MS);
    int status = tu_wait(child, IO_TIMEOUT_MS);
    ck_assert_msg(got == sizeof rep, "the reader sent no report (%s)", tu_status_str(status));
    ck_assert_int_eq(rep.attach_rc, 0);
    ck_assert_uint_eq(rep.received, CAP);
    ck_assert_uint_eq(rep.bad, 0);
    ck_assert_int_eq(rep.last_rc, -EPIPE);
    ck_assert_msg(tu_exited_ok(status), "reader: %s", tu_status_str(status));
}
END_TEST

/* ===================================================================== */
/* The suite                                                               */
/* ===================================================================== */

static Suite *day2_suite(void)
{
    Suite *s = suite_create("day2");

    TCase *tc = tcase_create("lifecycle");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_lifecycle);
    tcase_add_test(tc, test_attach_with_zero_sizes_takes_the_header_values);
    tcase_add_test(tc, test_second_reader_is_refused_until_the_first_leaves);
    tcase_add_test(tc, test_each_side_only_does_its_own_job);
    suite_add_tcase(s, tc);

    tc = tcase_create("limits");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_full_queue_says_enospc_for_good);
    tcase_add_test(tc, test_empty_queue_says_eagain);
    tcase_add_test(tc, test_end_of_stream_after_draining);
    tcase_add_test(tc, test_drained_but_open_is_not_the_end);
    tcase_add_test(tc, test_waiting_for_a_reader_that_never_comes);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_message_round_trip_between_processes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(day2_suite(), "check_day2");
}
