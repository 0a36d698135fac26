/* check_day2.c - day 2's queue API: lifecycle, limits, faults, and a
 * message between two real processes.
 *
 * Day 2 has no wrap-around (a full queue says -ENOSPC for good) and no
 * blocking push/pop; it is racy by design, so no stress test here and no
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

/* A complete, valid header as day 2's creator writes it. */
static struct spmc_shm_header valid_header(uint64_t elem, uint64_t cap)
{
    struct spmc_shm_header h;
    memset(&h, 0, sizeof h);
    h.magic = SPMC_MAGIC;
    h.version = SPMC_VERSION;
    h.header_size = sizeof h;
    h.cacheline = SPMC_CACHELINE;
    h.elem_size = elem;
    h.capacity = cap;
    h.ready = SPMC_READY;
    return h;
}

#define FULL_SIZE (sizeof(struct spmc_shm_header) + ELEM * CAP)

/* Attach (expecting ELEM x CAP) to a hand-made segment of @p size bytes
 * starting with @p h; returns what attach says. */
static int attach_handmade_at(const struct spmc_shm_header *h, size_t size, const char *file,
                              int line)
{
    const char *name = tu_name_at(file, line);
    tu_assert_int_at(file, line, tu_make_segment(name, size, h, sizeof *h), ==, 0);
    return spmc_queue_attach(&qr, name, ELEM, CAP);
}
#define attach_handmade(h, size) attach_handmade_at((h), (size), __FILE__, __LINE__)

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

START_TEST(test_null_buffers_are_refused_and_lose_nothing)
{
    open_pair(ELEM, CAP);
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_try_push(&qw, NULL), -EINVAL);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN); /* nothing was pushed */
    ck_assert_int_eq(spmc_queue_try_pop(&qr, NULL), -EINVAL); /* empty or not */
    msg_fill(m, ELEM, 5);
    ck_assert_int_eq(spmc_queue_try_push(&qw, m), 0);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, NULL), -EINVAL);
    memset(m, 0, sizeof m);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), 0); /* still there */
    ck_assert_uint_eq(msg_seq(m), 5);
    ck_assert(msg_intact(m, ELEM));
}
END_TEST

/* ===================================================================== */
/* Limits                                                                  */
/* ===================================================================== */

START_TEST(test_bad_names_are_refused)
{
    /* Every bad name starts like one of ours, so that if a bug let one
     * through, the sweep in main() would still remove what it made. */
    const char *good = tu_name();
    char no_slash[TU_NAME_LEN], two_slashes[TU_NAME_LEN + 8], too_long[TU_NAME_LEN + 8];
    snprintf(no_slash, sizeof no_slash, "%s", good + 1);
    snprintf(two_slashes, sizeof two_slashes, "%s/x", good);
    memset(too_long, 'a', sizeof too_long);
    memcpy(too_long, good, strlen(good));
    too_long[SPMC_NAME_MAX + 1] = '\0'; /* one character too many */
    static const struct {
        const char *what;
        int expect;
    } bad[] = {{"without a leading slash", -EINVAL}, {"with another slash", -EINVAL},
               {"too long", -ENAMETOOLONG},         {"of a slash alone", -EINVAL},
               {"empty", -EINVAL},                  {"NULL", -EINVAL}};
    const char *names[] = {no_slash, two_slashes, too_long, "/", "", NULL};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = spmc_queue_create(&qw, names[i], ELEM, CAP);
        ck_assert_msg(rc == bad[i].expect, "create, name %s: %d (%s), expected %d",
                      bad[i].what, rc, strerror(-rc), bad[i].expect);
        rc = spmc_queue_attach(&qr, names[i], ELEM, CAP);
        ck_assert_msg(rc == bad[i].expect, "attach, name %s: %d (%s), expected %d",
                      bad[i].what, rc, strerror(-rc), bad[i].expect);
    }
    /* Checked before any system call: nothing was created. */
    char slashed[TU_NAME_LEN + 1];
    snprintf(slashed, sizeof slashed, "/%s", no_slash);
    ck_assert_int_eq(tu_segment_size(slashed), -ENOENT);

    /* The longest allowed name works. */
    char longest[TU_NAME_LEN];
    memcpy(longest, too_long, SPMC_NAME_MAX);
    longest[SPMC_NAME_MAX] = '\0';
    const char *kept = tu_track_name(longest);
    ck_assert_int_eq(spmc_queue_create(&qw, kept, ELEM, CAP), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr, kept, ELEM, CAP), 0);
}
END_TEST

START_TEST(test_bad_sizes_are_refused)
{
    const char *name = tu_name();
    static const struct {
        size_t elem, cap;
    } bad[] = {
        {0, CAP},
        {ELEM, 0},
        {0, 0},
        {SIZE_MAX / 2, 2},
        {2, SIZE_MAX / 2},
        {SIZE_MAX, 1},
        {1, SIZE_MAX},
        {(size_t)1 << 32, (size_t)1 << 32}, /* product wraps to 0 */
        {64, ((size_t)1 << 58) + 1}, /* product wraps to 64 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = spmc_queue_create(&qw, name, bad[i].elem, bad[i].cap);
        ck_assert_msg(rc == -EINVAL, "create(%zu x %zu): %d (%s), expected -EINVAL",
                      bad[i].elem, bad[i].cap, rc, strerror(-rc));
        ck_assert_int_eq(tu_segment_size(name), -ENOENT);
    }
}
END_TEST

START_TEST(test_create_refuses_an_existing_name)
{
    const char *name = tu_name();
    static const char theirs[] = "not a queue";
    ck_assert_int_eq(tu_make_segment(name, 100, theirs, sizeof theirs), 0);
    ck_assert_int_eq(spmc_queue_create(&qw, name, ELEM, CAP), -EEXIST);
    char now[128];
    ck_assert_int_eq(tu_read_segment(name, now, sizeof now), 100); /* untouched */
    ck_assert_mem_eq(now, theirs, sizeof theirs);

    const char *other = tu_name();
    ck_assert_int_eq(spmc_queue_create(&qw, other, ELEM, CAP), 0);
    ck_assert_int_eq(spmc_queue_create(&qx, other, ELEM, CAP), -EEXIST);
}
END_TEST

START_TEST(test_attach_to_a_missing_segment)
{
    ck_assert_int_eq(spmc_queue_attach(&qr, tu_name(), ELEM, CAP), -ENOENT);
}
END_TEST

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
/* Faults: hostile and half-written segments                              */
/* ===================================================================== */

START_TEST(test_handmade_valid_segment_attaches)
{
    /* The control for the hostile cases below: the same hand-made segment,
     * nothing wrong with it, is accepted. */
    struct spmc_shm_header h = valid_header(ELEM, CAP);
    ck_assert_int_eq(attach_handmade(&h, FULL_SIZE), 0);
}
END_TEST

START_TEST(test_hostile_bad_magic)
{
    struct spmc_shm_header h = valid_header(ELEM, CAP);
    h.magic = 0x4b434148; /* "HACK" */
    ck_assert_int_eq(attach_handmade(&h, FULL_SIZE), -EPROTO);
}
END_TEST

START_TEST(test_hostile_bad_version)
{
    struct spmc_shm_header h = valid_header(ELEM, CAP);
    h.version = SPMC_VERSION + 1;
    ck_assert_int_eq(attach_handmade(&h, FULL_SIZE), -EPROTO);
}
END_TEST

START_TEST(test_hostile_bad_header_size)
{
    struct spmc_shm_header h = valid_header(ELEM, CAP);
    h.header_size = sizeof h + 64;
    ck_assert_int_eq(attach_handmade(&h, FULL_SIZE + 64), -EPROTO);
}
END_TEST

START_TEST(test_hostile_bad_cacheline)
{
    struct spmc_shm_header h = valid_header(ELEM, CAP);
    h.cacheline = 128;
    ck_assert_int_eq(attach_handmade(&h, FULL_SIZE), -EPROTO);
}
END_TEST

START_TEST(test_hostile_other_element_size)
{
    struct spmc_shm_header h = valid_header(ELEM / 2, CAP); /* fits the segment */
    ck_assert_int_eq(attach_handmade(&h, FULL_SIZE), -EPROTO);
}
END_TEST

START_TEST(test_hostile_other_capacity)
{
    struct spmc_shm_header h = valid_header(ELEM, CAP / 2); /* fits the segment */
    ck_assert_int_eq(attach_handmade(&h, FULL_SIZE), -EPROTO);
}
END_TEST

START_TEST(test_hostile_segment_smaller_than_header_says)
{
    struct spmc_shm_header h = valid_header(ELEM, CAP);
    ck_assert_int_eq(attach_handmade(&h, FULL_SIZE - 1), -EPROTO);
}
END_TEST

START_TEST(test_hostile_sizes_with_nothing_expected)
{
    /* An attacher that takes the header's sizes (0, 0) must still check
     * them: zero, or so large the segment cannot hold them, or so large
     * their product overflows. Never SIGBUS. */
    static const struct {
        uint64_t elem, cap;
    } bad[] = {{0, CAP}, {ELEM, 0}, {ELEM, CAP * 1024}, {ELEM, UINT64_MAX / 2},
               {UINT64_MAX, 2}, {(uint64_t)1 << 32, (uint64_t)1 << 32},
               {64, ((uint64_t)1 << 58) + 1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct spmc_shm_header h = valid_header(bad[i].elem, bad[i].cap);
        const char *name = tu_name();
        ck_assert_int_eq(tu_make_segment(name, FULL_SIZE, &h, sizeof h), 0);
        int rc = spmc_queue_attach(&qr, name, 0, 0);
        ck_assert_msg(rc == -EPROTO, "header saying %llu x %llu: %d (%s), expected -EPROTO",
                      (unsigned long long)bad[i].elem, (unsigned long long)bad[i].cap, rc,
                      strerror(-rc));
    }
}
END_TEST

START_TEST(test_half_written_empty_segment)
{
    /* The creator died between shm_open and ftruncate: size 0. Attach waits
     * its bounded time, then refuses. */
    const char *name = tu_name();
    ck_assert_int_eq(tu_make_segment(name, 0, NULL, 0), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, CAP), -EPROTO);
}
END_TEST

START_TEST(test_half_written_tiny_segment)
{
    /* Smaller than the header itself: mapping the header would SIGBUS. */
    struct spmc_shm_header h = valid_header(ELEM, CAP);
    ck_assert_int_eq(attach_handmade(&h, 16), -EPROTO);
}
END_TEST

START_TEST(test_half_written_ready_never_set)
{
    struct spmc_shm_header h = valid_header(ELEM, CAP);
    h.ready = 0;
    ck_assert_int_eq(attach_handmade(&h, FULL_SIZE), -EPROTO);
}
END_TEST

START_TEST(test_header_completed_late_is_accepted)
{
    /* A creator that is slow, not dead: the segment has size 0 when attach
     * starts; a child sizes it about 50 ms later (the header all zeros),
     * and writes the header about 100 ms after that, ready last. Attach
     * must wait through both stages and then succeed. */
    const char *name = tu_name();
    ck_assert_int_eq(tu_make_segment(name, 0, NULL, 0), 0);
    pid_t child = tu_fork();
    if (child == 0) {
        tu_sleep_ms(50);
        int fd = shm_open(name, O_RDWR, 0);
        if (fd < 0 || ftruncate(fd, (off_t)FULL_SIZE) != 0)
            _exit(2);
        struct spmc_shm_header *h =
            mmap(NULL, FULL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (h == MAP_FAILED)
            _exit(3);
        tu_sleep_ms(100);
        struct spmc_shm_header v = valid_header(ELEM, CAP);
        v.ready = 0;
        memcpy(h, &v, sizeof v);
        __atomic_store_n(&h->ready, SPMC_READY, __ATOMIC_RELEASE); /* last */
        munmap(h, FULL_SIZE);
        close(fd);
        _exit(0);
    }
    int rc = spmc_queue_attach(&qr, name, ELEM, CAP);
    int status = tu_wait(child, IO_TIMEOUT_MS);
    ck_assert_msg(tu_exited_ok(status), "the late creator: %s", tu_status_str(status));
    ck_assert_int_eq(rc, 0);
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN); /* empty, not corrupt */
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
    tcase_add_test(tc, test_null_buffers_are_refused_and_lose_nothing);
    suite_add_tcase(s, tc);

    tc = tcase_create("limits");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_bad_names_are_refused);
    tcase_add_test(tc, test_bad_sizes_are_refused);
    tcase_add_test(tc, test_create_refuses_an_existing_name);
    tcase_add_test(tc, test_attach_to_a_missing_segment);
    tcase_add_test(tc, test_full_queue_says_enospc_for_good);
    tcase_add_test(tc, test_empty_queue_says_eagain);
    tcase_add_test(tc, test_end_of_stream_after_draining);
    tcase_add_test(tc, test_drained_but_open_is_not_the_end);
    tcase_add_test(tc, test_waiting_for_a_reader_that_never_comes);
    suite_add_tcase(s, tc);

    tc = tcase_create("faults");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_handmade_valid_segment_attaches);
    tcase_add_test(tc, test_hostile_bad_magic);
    tcase_add_test(tc, test_hostile_bad_version);
    tcase_add_test(tc, test_hostile_bad_header_size);
    tcase_add_test(tc, test_hostile_bad_cacheline);
    tcase_add_test(tc, test_hostile_other_element_size);
    tcase_add_test(tc, test_hostile_other_capacity);
    tcase_add_test(tc, test_hostile_segment_smaller_than_header_says);
    tcase_add_test(tc, test_hostile_sizes_with_nothing_expected);
    tcase_add_test(tc, test_half_written_empty_segment);
    tcase_add_test(tc, test_half_written_tiny_segment);
    tcase_add_test(tc, test_half_written_ready_never_set);
    tcase_add_test(tc, test_header_completed_late_is_accepted);
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
