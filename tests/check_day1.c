/* check_day1.c - day 1: the real producer and consumer programs, as two
 * processes, over raw POSIX shared memory.
 *
 * Day 1 has no library to call: these tests fork and exec the day's
 * programs (DAY_BUILD is their build folder, set by the Makefile) and judge
 * them by their output, exit status and the segment they leave behind. */
#define _GNU_SOURCE
#include "test_util.h"

#ifndef DAY_BUILD
#error "DAY_BUILD must name day 1's build folder (the Makefile sets it)"
#endif

#define PRODUCER DAY_BUILD "/producer"
#define CONSUMER DAY_BUILD "/consumer"

/* How long the producer keeps the segment after sending. Day 1 has no
 * handshake: the consumer must run within this window. The test does not
 * bet on the scheduler: once the producer has said "sent" it is stopped
 * (SIGSTOP) until the consumer has read, and a round in which it had
 * already removed the segment by then is run again. */
#define HOLD_SECONDS "2"
#define HOLD_ROUNDS 5
/* Deadline for any one child or read, so that a hang fails instead of
 * blocking the run (Check's timeouts are off with CK_FORK=no). */
#define IO_TIMEOUT_MS 30000u

#define SENT_LINE "Producer sent a msg \"Hello from producer\" into the queue.\n"
#define READ_LINE "Consumer read a msg from queue: \"Hello from producer\"\n"

/* ===================================================================== */
/* Lifecycle                                                               */
/* ===================================================================== */

/* Start the producer and wait until it says it has sent the message; then
 * stop it there (SIGSTOP). 1 with *producer stopped and the segment there;
 * 0 if the producer had already removed it (this machine was slower than
 * HOLD_SECONDS): then it has been reaped and the caller tries again. */
static int start_and_hold_producer(const char *name, pid_t *producer, int pout[2], char *ptext,
                                   size_t cap, size_t *plen)
{
    tu_pipe(pout);
    char *const pargv[] = {(char *)PRODUCER, (char *)name, (char *)HOLD_SECONDS, NULL};
    *producer = tu_spawn(pargv, pout[1], -1);
    tu_close(&pout[1]);
    *plen = 0;
    int sent = tu_read_until(pout[0], ptext, cap, plen, SENT_LINE, IO_TIMEOUT_MS);
    ck_assert_msg(sent, "the producer ended without saying it sent the message; it printed:\n%s",
                  ptext);
    ck_assert_int_eq(kill(*producer, SIGSTOP), 0);
    int status;
    ck_assert_int_eq(waitpid(*producer, &status, WUNTRACED), *producer);
    if (WIFSTOPPED(status) && tu_segment_size(name) > 0)
        return 1;
    if (WIFSTOPPED(status)) { /* stopped after it removed the segment */
        ck_assert_int_eq(kill(*producer, SIGCONT), 0);
        status = tu_wait(*producer, IO_TIMEOUT_MS);
    }
    ck_assert_msg(tu_exited_ok(status), "producer: %s; it printed:\n%s", tu_status_str(status),
                  ptext);
    tu_close(&pout[0]);
    return 0;
}

START_TEST(test_producer_and_consumer_exchange_the_message)
{
    const char *name = tu_name();

    /* Start the producer; its stdout tells us when the message is there. */
    int pout[2];
    pid_t producer;
    char ptext[4096];
    size_t plen;
    int rounds = 1;
    while (!start_and_hold_producer(name, &producer, pout, ptext, sizeof ptext, &plen))
        ck_assert_msg(++rounds <= HOLD_ROUNDS, "%d times the producer had removed the segment "
                      "before the test could stop it after its \"sent\" line", HOLD_ROUNDS);

    /* Now the consumer, as a second process; then let the producer go on. */
    char cout[4096], cerr[4096];
    char *const cargv[] = {(char *)CONSUMER, (char *)name, NULL};
    int cstatus = tu_run(cargv, cout, sizeof cout, cerr, sizeof cerr, IO_TIMEOUT_MS);
    ck_assert_int_eq(kill(producer, SIGCONT), 0);
    ck_assert_msg(tu_exited_ok(cstatus), "consumer: %s; stderr:\n%s", tu_status_str(cstatus),
                  cerr);
    ck_assert_msg(strstr(cout, READ_LINE) != NULL,
                  "the consumer did not print the message; it printed:\n%s", cout);

    /* The producer finishes on its own, removes the segment, exits 0. */
    ck_assert(tu_read_until(pout[0], ptext, sizeof ptext, &plen, NULL, IO_TIMEOUT_MS));
    int pstatus = tu_wait(producer, IO_TIMEOUT_MS);
    ck_assert_msg(tu_exited_ok(pstatus), "producer: %s; it printed:\n%s",
                  tu_status_str(pstatus), ptext);
    ck_assert_msg(tu_segment_size(name) == -ENOENT, "the producer left %s behind", name);
}
END_TEST

/* ===================================================================== */
/* Faults                                                                  */
/* ===================================================================== */

START_TEST(test_consumer_without_producer_fails_cleanly)
{
    const char *name = tu_name(); /* never created */
    char out[4096], err[4096];
    char *const argv[] = {(char *)CONSUMER, (char *)name, NULL};
    int status = tu_run(argv, out, sizeof out, err, sizeof err, IO_TIMEOUT_MS);

    ck_assert_msg(!WIFSIGNALED(status), "consumer crashed: %s", tu_status_str(status));
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 0,
                  "consumer with no producer: %s, expected a non-zero exit",
                  tu_status_str(status));
    ck_assert_msg(strstr(err, name) != NULL, "the error does not name %s; stderr:\n%s", name,
                  err);
    ck_assert_msg(strstr(out, "Consumer read a msg") == NULL,
                  "the consumer claims to have read a message:\n%s", out);
    ck_assert_int_eq(tu_segment_size(name), -ENOENT); /* it created nothing */
}
END_TEST

START_TEST(test_consumer_refuses_a_short_segment)
{
    /* A segment smaller than the 100 bytes the consumer maps: touching the
     * missing page would raise SIGBUS, so it must check the size first. */
    const char *name = tu_name();
    ck_assert_int_eq(tu_make_segment(name, 10, "Hello", 6), 0);
    char out[4096], err[4096];
    char *const argv[] = {(char *)CONSUMER, (char *)name, NULL};
    int status = tu_run(argv, out, sizeof out, err, sizeof err, IO_TIMEOUT_MS);

    ck_assert_msg(!WIFSIGNALED(status), "consumer crashed: %s", tu_status_str(status));
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 0,
                  "consumer on a 10-byte segment: %s, expected a non-zero exit",
                  tu_status_str(status));
    ck_assert_msg(strstr(err, name) != NULL, "the error does not name %s; stderr:\n%s", name,
                  err);
}
END_TEST

START_TEST(test_producer_refuses_an_existing_segment)
{
    const char *name = tu_name();
    static const char theirs[] = "somebody else's bytes";
    ck_assert_int_eq(tu_make_segment(name, 200, theirs, sizeof theirs), 0);

    char out[4096], err[4096];
    char *const argv[] = {(char *)PRODUCER, (char *)name, (char *)"0", NULL};
    int status = tu_run(argv, out, sizeof out, err, sizeof err, IO_TIMEOUT_MS);

    ck_assert_msg(!WIFSIGNALED(status), "producer crashed: %s", tu_status_str(status));
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 0,
                  "producer over an existing segment: %s, expected a non-zero exit",
                  tu_status_str(status));
    ck_assert_msg(strstr(err, name) != NULL, "the error does not name %s; stderr:\n%s", name,
                  err);

    /* The segment is still there, with its size and its bytes. */
    char now[256];
    long size = tu_read_segment(name, now, sizeof now);
    ck_assert_msg(size == 200, "the existing segment is now %ld bytes (was 200)", size);
    ck_assert_msg(memcmp(now, theirs, sizeof theirs) == 0,
                  "the producer overwrote the existing segment: \"%.*s\"",
                  (int)sizeof theirs, now);
}
END_TEST

/* ===================================================================== */
/* The suite                                                               */
/* ===================================================================== */

static Suite *day1_suite(void)
{
    Suite *s = suite_create("day1");

    TCase *tc = tcase_create("lifecycle");
    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_producer_and_consumer_exchange_the_message);
    suite_add_tcase(s, tc);

    tc = tcase_create("faults");
    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_consumer_without_producer_fails_cleanly);
    tcase_add_test(tc, test_consumer_refuses_a_short_segment);
    tcase_add_test(tc, test_producer_refuses_an_existing_segment);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(day1_suite(), "check_day1");
}
