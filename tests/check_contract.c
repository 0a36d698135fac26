/* check_contract.c - what every day from 2 on promises, built once per day
 * (the Makefile compiles it with -IdayN -DSPMC_DAY='"dayN"').
 *
 * Only the API every such day shares is used: create, attach,
 * wait_readers(q, 1, t), try_push, try_pop, destroy, SPMC_NAME_MAX, and the
 * header fields magic, version, header_size, cacheline, elem_size, capacity
 * and ready for hostile segments. Every capacity is a power of two (day 5
 * requires it), a reader is attached before anything is pushed (in day 5's
 * broadcast mode a queue without readers need not be "full"), and what
 * holds only while a queue has a single reader is guarded by
 * SPMC_VERSION < 5.
 *
 * What needs day 3 is guarded by SPMC_VERSION >= 3: the ring (wrap-around),
 * the blocking push and pop with their timeouts and SPMC_WAIT_FOREVER, the
 * end of stream seen through them, and the stress runs. Day 2 has none of
 * these (check_day2.c tests what it has instead) and is racy by design, so
 * it runs the rest: names, sizes, NULL buffers, hostile headers.
 *
 * Hostile segments are built from a real one: the test creates a queue,
 * copies its bytes, changes one field, and writes the copy under a new name.
 * So the tests do not depend on any day's layout, and the untouched copy is
 * the control that must attach. */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "common.h"
#include "test_util.h"

#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <sys/mount.h>

#ifndef SPMC_DAY
#error "SPMC_DAY must name the day under test (the Makefile sets it)"
#endif

#define ELEM 64u
#define CAP 8u
#define MS 1000000ll
#define SEC 1000000000ll
/* How long one blocking call in a stress run may wait before the run
 * counts as hung; and the deadline for children and pipes. */
#define STUCK_NS (30 * SEC)
#define IO_TIMEOUT_MS 120000u

/* The one place to change if a later day's create or attach takes more
 * arguments (day 5 may choose a fan-out mode at creation). */
static int t_create(struct spmc_queue *q, const char *name, size_t elem, size_t cap)
{
    return spmc_queue_create(q, name, elem, cap);
}

static int t_attach(struct spmc_queue *q, const char *name, size_t elem, size_t cap)
{
    return spmc_queue_attach(q, name, elem, cap);
}

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
    tu_assert_int_at(file, line, t_create(&qw, name, elem, cap), ==, 0);
    tu_assert_int_at(file, line, t_attach(&qr, name, elem, cap), ==, 0);
    tu_assert_int_at(file, line, spmc_queue_wait_readers(&qw, 1, 10 * SEC), ==, 0);
    return name;
}
#define open_pair(elem, cap) open_pair_at((elem), (cap), __FILE__, __LINE__)

static void push_seq_at(struct spmc_queue *q, uint64_t seq, const char *file, int line)
{
    unsigned char m[ELEM];
    msg_fill(m, ELEM, seq);
    int rc = spmc_queue_try_push(q, m);
    tu_assert_at(file, line, rc == 0, "try_push of message %llu: %d (%s)", (unsigned long long)seq,
                 rc, strerror(-rc));
}
#define push_seq(q, seq) push_seq_at((q), (seq), __FILE__, __LINE__)

static void pop_expect_at(struct spmc_queue *q, uint64_t seq, const char *file, int line)
{
    unsigned char m[ELEM];
    memset(m, 0xee, sizeof m);
    int rc = spmc_queue_try_pop(q, m);
    tu_assert_at(file, line, rc == 0, "try_pop of message %llu: %d (%s)", (unsigned long long)seq,
                 rc, strerror(-rc));
    tu_assert_at(file, line, msg_seq(m) == seq, "popped message %llu, expected %llu",
                 (unsigned long long)msg_seq(m), (unsigned long long)seq);
    tu_assert_at(file, line, msg_intact(m, ELEM), "message %llu is damaged",
                 (unsigned long long)seq);
}
#define pop_expect(q, seq) pop_expect_at((q), (seq), __FILE__, __LINE__)

/* ===================================================================== */
/* Lifecycle                                                               */
/* ===================================================================== */

START_TEST(test_lifecycle)
{
    const char *name = tu_name();
    ck_assert_int_eq(t_create(&qw, name, ELEM, CAP), 0);
    ck_assert_int_gt(tu_segment_size(name), 0);
    ck_assert_int_eq(t_attach(&qr, name, ELEM, CAP), 0);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, 10 * SEC), 0);
    push_seq(&qw, 42);
    pop_expect(&qr, 42);

    ck_assert_int_eq(spmc_queue_destroy(&qr), 0);
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    ck_assert_int_eq(tu_segment_size(name), -ENOENT); /* the writer removed it */
    ck_assert_int_eq(spmc_queue_destroy(&qw), -EINVAL);
    ck_assert_int_eq(spmc_queue_destroy(&qr), -EINVAL);
    ck_assert_int_eq(spmc_queue_destroy(NULL), -EINVAL);
    ck_assert_int_eq(t_attach(&qr, name, ELEM, CAP), -ENOENT);
}
END_TEST

#if SPMC_VERSION >= 3
START_TEST(test_blocking_calls_move_messages_too)
{
    open_pair(ELEM, CAP);
    unsigned char m[ELEM];
    for (uint64_t i = 0; i < CAP; i++) {
        msg_fill(m, ELEM, i);
        ck_assert_int_eq(spmc_queue_push(&qw, m, SPMC_WAIT_FOREVER), 0);
    }
    for (uint64_t i = 0; i < CAP; i++) {
        memset(m, 0, sizeof m);
        ck_assert_int_eq(spmc_queue_pop(&qr, m, SPMC_WAIT_FOREVER), 0);
        ck_assert_uint_eq(msg_seq(m), i);
        ck_assert(msg_intact(m, ELEM));
    }
}
END_TEST
#endif

START_TEST(test_reader_can_leave_and_another_attach)
{
    const char *name = open_pair(ELEM, CAP);
    push_seq(&qw, 0);
    pop_expect(&qr, 0);
    ck_assert_int_eq(spmc_queue_destroy(&qr), 0);
    ck_assert_int_eq(t_attach(&qx, name, ELEM, CAP), 0);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, 10 * SEC), 0);
    push_seq(&qw, 1);
    pop_expect(&qx, 1);
}
END_TEST

#if SPMC_VERSION < 5
START_TEST(test_second_reader_is_refused)
{
    const char *name = open_pair(ELEM, CAP);
    ck_assert_int_eq(t_attach(&qx, name, ELEM, CAP), -EBUSY);
}
END_TEST
#endif

/* ===================================================================== */
/* Limits                                                                  */
/* ===================================================================== */

#if SPMC_VERSION >= 3 /* a ring */
START_TEST(test_full_and_empty)
{
    open_pair(ELEM, 4);
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN);
    for (uint64_t i = 0; i < 4; i++)
        push_seq(&qw, i);
    msg_fill(m, ELEM, 4);
    ck_assert_int_eq(spmc_queue_try_push(&qw, m), -EAGAIN);
    ck_assert_int_eq(spmc_queue_try_push(&qw, m), -EAGAIN);
    pop_expect(&qr, 0);
    push_seq(&qw, 4); /* one slot free again: a ring */
    ck_assert_int_eq(spmc_queue_try_push(&qw, m), -EAGAIN);
    for (uint64_t i = 1; i < 5; i++)
        pop_expect(&qr, i);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN);
}
END_TEST

START_TEST(test_wraparound_in_lockstep)
{
    open_pair(ELEM, 4);
    for (uint64_t i = 0; i < 10000; i++) {
        push_seq(&qw, i);
        pop_expect(&qr, i);
    }
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN);
}
END_TEST

START_TEST(test_wraparound_in_bursts)
{
    /* Bursts of 1..capacity, so that the ring is left at every offset and
     * filled to every level, full included. */
    open_pair(ELEM, 4);
    unsigned char m[ELEM];
    uint64_t pushed = 0, popped = 0;
    for (unsigned round = 0; round < 4000; round++) {
        unsigned burst = 1 + round % 4;
        for (unsigned i = 0; i < burst; i++)
            push_seq(&qw, pushed++);
        if (burst == 4) {
            msg_fill(m, ELEM, pushed);
            ck_assert_int_eq(spmc_queue_try_push(&qw, m), -EAGAIN);
        }
        for (unsigned i = 0; i < burst; i++)
            pop_expect(&qr, popped++);
        ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN);
    }
    ck_assert_uint_eq(popped, 10000);
}
END_TEST

START_TEST(test_odd_message_size)
{
    /* 40 bytes: slots that do not fill cache lines evenly. */
    open_pair(40, 4);
    unsigned char in[40], out[40];
    for (uint64_t i = 0; i < 100; i++) {
        msg_fill(in, sizeof in, i);
        ck_assert_int_eq(spmc_queue_try_push(&qw, in), 0);
        memset(out, 0, sizeof out);
        ck_assert_int_eq(spmc_queue_try_pop(&qr, out), 0);
        ck_assert_uint_eq(msg_seq(out), i);
        ck_assert(msg_intact(out, sizeof out));
    }
}
END_TEST
#endif

START_TEST(test_bad_names_are_refused)
{
    /* Every bad name starts like one of ours, so that if a bug let one
     * through, the sweep in main() would still remove what it made; "/."
     * and "/.." name directories, where nothing can be made. */
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
               {"empty", -EINVAL},                  {"NULL", -EINVAL},
               {"of /dev/shm itself", -EINVAL},     {"of its parent", -EINVAL}};
    const char *names[] = {no_slash, two_slashes, too_long, "/", "", NULL, "/.", "/.."};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = t_create(&qw, names[i], ELEM, CAP);
        ck_assert_msg(rc == bad[i].expect, "create, name %s: %d (%s), expected %d",
                      bad[i].what, rc, strerror(-rc), bad[i].expect);
        rc = t_attach(&qr, names[i], ELEM, CAP);
        ck_assert_msg(rc == bad[i].expect, "attach, name %s: %d (%s), expected %d",
                      bad[i].what, rc, strerror(-rc), bad[i].expect);
    }
    char slashed[TU_NAME_LEN + 1];
    snprintf(slashed, sizeof slashed, "/%s", no_slash);
    ck_assert_int_eq(tu_segment_size(slashed), -ENOENT); /* nothing was created */

    /* The longest allowed name works. */
    char longest[TU_NAME_LEN];
    memcpy(longest, too_long, SPMC_NAME_MAX);
    longest[SPMC_NAME_MAX] = '\0';
    const char *kept = tu_track_name(longest);
    ck_assert_int_eq(t_create(&qw, kept, ELEM, CAP), 0);
    ck_assert_int_eq(t_attach(&qr, kept, ELEM, CAP), 0);
}
END_TEST

/* A NULL buffer is the caller's mistake, refused before anything is
 * claimed: whether the ring is empty, holds a message or is full, and
 * whether the call would block or not, nothing is pushed and no message is
 * taken, and the blocking calls (day 3 on) return at once instead of
 * waiting. */
START_TEST(test_null_buffers_are_refused_and_lose_nothing)
{
#if SPMC_VERSION >= 3
    const uint64_t room = CAP; /* once message 1 is out: a ring */
#else
    const uint64_t room = CAP - 1; /* day 2 never uses a slot twice */
#endif
    open_pair(ELEM, CAP);
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_try_push(&qw, NULL), -EINVAL);
#if SPMC_VERSION >= 3
    ck_assert_int_eq(spmc_queue_push(&qw, NULL, STUCK_NS), -EINVAL);
#endif
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN); /* nothing was pushed */
    ck_assert_int_eq(spmc_queue_try_pop(&qr, NULL), -EINVAL); /* empty */
#if SPMC_VERSION >= 3
    ck_assert_int_eq(spmc_queue_pop(&qr, NULL, STUCK_NS), -EINVAL);
#endif
    push_seq(&qw, 1);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, NULL), -EINVAL); /* one message */
#if SPMC_VERSION >= 3
    ck_assert_int_eq(spmc_queue_pop(&qr, NULL, STUCK_NS), -EINVAL);
#endif
    pop_expect(&qr, 1); /* it waited for a real buffer */
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN); /* day 5: publishes its cursor */
    for (uint64_t i = 0; i < room; i++)
        push_seq(&qw, 2 + i);
    ck_assert_int_eq(spmc_queue_try_push(&qw, NULL), -EINVAL); /* full */
#if SPMC_VERSION >= 3
    ck_assert_int_eq(spmc_queue_push(&qw, NULL, STUCK_NS), -EINVAL);
#endif
    for (uint64_t i = 0; i < room; i++)
        pop_expect(&qr, 2 + i);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN);
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
        {SIZE_MAX, 1},
        {1, (size_t)1 << 63},
        {ELEM, (size_t)1 << 62},            /* product overflows */
        {(size_t)1 << 32, (size_t)1 << 32}, /* product wraps to 0 */
        {64, (size_t)1 << 58},              /* product wraps to 0 */
        /* Capacities that are not powers of two (refused for that alone
         * from day 5 on): */
        {2, SIZE_MAX / 2},
        {1, SIZE_MAX},
        {64, ((size_t)1 << 58) + 1}, /* product wraps to 64 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = t_create(&qw, name, bad[i].elem, bad[i].cap);
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
    ck_assert_int_eq(t_create(&qw, name, ELEM, CAP), -EEXIST);
    char now[128];
    ck_assert_int_eq(tu_read_segment(name, now, sizeof now), 100); /* untouched */
    ck_assert_mem_eq(now, theirs, sizeof theirs);

    const char *other = tu_name();
    ck_assert_int_eq(t_create(&qw, other, ELEM, CAP), 0);
    ck_assert_int_eq(t_create(&qx, other, ELEM, CAP), -EEXIST);
}
END_TEST

/* Run @p body in a child process with a private 1 MiB /dev/shm (a mount
 * namespace of its own); the child's exit status is the body's, 0 for a
 * pass. Skipped, with a note, where a tmpfs cannot be mounted (not root). */
static void in_small_dev_shm_at(int (*body)(void), const char *what, const char *file, int line)
{
    if (geteuid() != 0) {
        fprintf(stderr, "skipped: mounting a small /dev/shm needs root\n");
        return;
    }
    pid_t p = tu_fork();
    if (p == 0) {
        if (unshare(CLONE_NEWNS) != 0 ||
            mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0 ||
            mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=1m") != 0)
            _exit(77);
        _exit(body());
    }
    int status = tu_wait_at(p, IO_TIMEOUT_MS, file, line);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        fprintf(stderr, "skipped: cannot mount a tmpfs here\n");
        return;
    }
    tu_assert_at(file, line, tu_exited_ok(status), "%s: %s", what, tu_status_str(status));
}
#define in_small_dev_shm(body, what) in_small_dev_shm_at((body), (what), __FILE__, __LINE__)

/* A capacity larger than /dev/shm can hold fails at creation with -ENOSPC
 * and leaves nothing behind, rather than making a sparse segment that dies
 * with SIGBUS at the first write to a page tmpfs cannot give. */
static int create_too_large(void)
{
    struct spmc_queue q;
    int rc = t_create(&q, "/spmc-t-full", 64, 1u << 16); /* 4 MiB of slots */
    int left = access("/dev/shm/spmc-t-full", F_OK) == 0;
    return rc == -ENOSPC && !left ? 0 : 1;
}

START_TEST(test_full_dev_shm_fails_at_create)
{
    in_small_dev_shm(create_too_large, "create on a full /dev/shm");
}
END_TEST

#if SPMC_VERSION >= 6
/* A segment made sparse by someone else (its header and reader table
 * written, its slots never given pages) in a full /dev/shm: attach
 * reserves the pages first and refuses with -ENOSPC, rather than map it
 * and die with SIGBUS at the first slot it touches. */
static int attach_sparse_in_full(void)
{
    static unsigned char copy[1 << 18];
    struct spmc_queue q;
    if (t_create(&q, "/spmc-t-whole", 64, 1024) != 0) /* 64 KiB of slots */
        return 2;
    const size_t written =
        (size_t)((unsigned char *)(q.readers + q.max_readers) - (unsigned char *)q.hdr);
    long size = tu_read_segment("/spmc-t-whole", copy, sizeof copy);
    if (size <= (long)written + 8192 || spmc_queue_destroy(&q) != 0)
        return 3;
    /* The same bytes up to the end of the reader table; the rest holes. */
    if (tu_make_segment("/spmc-t-sparse", (size_t)size, copy, written) != 0)
        return 4;
    int fill = open("/dev/shm/filler", O_CREAT | O_WRONLY, 0600);
    while (fill >= 0 && write(fill, copy, 4096) == 4096)
        ;
    struct spmc_queue r;
    int rc = t_attach(&r, "/spmc-t-sparse", 64, 1024);
    return rc == -ENOSPC ? 0 : rc == 0 ? 5 : 6;
}

START_TEST(test_sparse_segment_in_full_dev_shm_is_refused)
{
    in_small_dev_shm(attach_sparse_in_full, "attach to a sparse segment in a full /dev/shm");
}
END_TEST
#endif

START_TEST(test_attach_to_a_missing_segment)
{
    ck_assert_int_eq(t_attach(&qr, tu_name(), ELEM, CAP), -ENOENT);
}
END_TEST

#if SPMC_VERSION >= 3 /* the blocking calls, and end of stream through them */
START_TEST(test_blocking_pop_times_out_on_empty)
{
    open_pair(ELEM, 4);
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_pop(&qr, m, 50 * MS), -ETIMEDOUT);
    push_seq(&qw, 0); /* and still works afterwards */
    ck_assert_int_eq(spmc_queue_pop(&qr, m, 50 * MS), 0);
    ck_assert_uint_eq(msg_seq(m), 0);
}
END_TEST

START_TEST(test_blocking_push_times_out_on_full)
{
    open_pair(ELEM, 4);
    for (uint64_t i = 0; i < 4; i++)
        push_seq(&qw, i);
    unsigned char m[ELEM];
    msg_fill(m, ELEM, 4);
    ck_assert_int_eq(spmc_queue_push(&qw, m, 50 * MS), -ETIMEDOUT);
    pop_expect(&qr, 0);
    ck_assert_int_eq(spmc_queue_push(&qw, m, 50 * MS), 0);
    for (uint64_t i = 1; i < 5; i++)
        pop_expect(&qr, i);
}
END_TEST

START_TEST(test_end_of_stream_only_after_draining)
{
    open_pair(ELEM, CAP);
    unsigned char m[ELEM];
    for (uint64_t i = 0; i < 3; i++)
        push_seq(&qw, i);
    pop_expect(&qr, 0);
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    /* What the writer pushed before it left is still delivered, through
     * either call... */
    pop_expect(&qr, 1);
    memset(m, 0, sizeof m);
    ck_assert_int_eq(spmc_queue_pop(&qr, m, SPMC_WAIT_FOREVER), 0);
    ck_assert_uint_eq(msg_seq(m), 2);
    ck_assert(msg_intact(m, ELEM));
    /* ...then the end of the stream, for good, and a blocking pop does not
     * wait for a writer that is gone. */
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EPIPE);
    ck_assert_int_eq(spmc_queue_pop(&qr, m, SPMC_WAIT_FOREVER), -EPIPE);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EPIPE);
}
END_TEST

START_TEST(test_drained_but_open_is_not_the_end)
{
    open_pair(ELEM, CAP);
    unsigned char m[ELEM];
    push_seq(&qw, 0);
    pop_expect(&qr, 0);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN);
    ck_assert_int_eq(spmc_queue_pop(&qr, m, 10 * MS), -ETIMEDOUT);
}
END_TEST
#endif

/* ===================================================================== */
/* Faults: hostile and half-written segments                              */
/* ===================================================================== */

/* A byte copy of a real, fresh CAP x ELEM queue with no reader. */
static alignas(64) unsigned char snap[1 << 16];
static size_t snap_size;

static struct spmc_shm_header *take_snapshot_at(const char *file, int line)
{
    const char *name = tu_name_at(file, line);
    tu_assert_int_at(file, line, t_create(&qx, name, ELEM, CAP), ==, 0);
    long size = tu_read_segment(name, snap, sizeof snap);
    tu_assert_at(file, line, size >= (long)sizeof(struct spmc_shm_header), "snapshot: %ld", size);
    snap_size = (size_t)size;
    tu_assert_int_at(file, line, spmc_queue_destroy(&qx), ==, 0);
    return (struct spmc_shm_header *)snap;
}
#define take_snapshot() take_snapshot_at(__FILE__, __LINE__)

/* Write the snapshot (first @p size bytes, or all when 0) under a new name
 * and attach to it, expecting @p elem x @p cap. */
static int attach_copy_at(size_t size, size_t elem, size_t cap, const char *file, int line)
{
    const char *name = tu_name_at(file, line);
    if (size == 0)
        size = snap_size;
    tu_assert_int_at(file, line,
                     tu_make_segment(name, size, snap, size < snap_size ? size : snap_size), ==, 0);
    return t_attach(&qr, name, elem, cap);
}
#define attach_copy(size, elem, cap) attach_copy_at((size), (elem), (cap), __FILE__, __LINE__)

START_TEST(test_untouched_copy_attaches)
{
    /* The control for the hostile cases: a faithful copy is a queue. */
    take_snapshot();
    ck_assert_int_eq(attach_copy(0, ELEM, CAP), 0);
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN);
}
END_TEST

START_TEST(test_hostile_bad_magic)
{
    take_snapshot()->magic ^= 0x20202020u;
    ck_assert_int_eq(attach_copy(0, ELEM, CAP), -EPROTO);
}
END_TEST

START_TEST(test_hostile_bad_version)
{
    take_snapshot()->version += 1;
    ck_assert_int_eq(attach_copy(0, ELEM, CAP), -EPROTO);
}
END_TEST

START_TEST(test_hostile_bad_header_size)
{
    /* The segment has room for the larger header: refused for the field. */
    take_snapshot()->header_size += 64;
    ck_assert_int_eq(attach_copy(snap_size + 64, ELEM, CAP), -EPROTO);
}
END_TEST

START_TEST(test_hostile_bad_cacheline)
{
    take_snapshot()->cacheline *= 2;
    ck_assert_int_eq(attach_copy(0, ELEM, CAP), -EPROTO);
}
END_TEST

START_TEST(test_hostile_other_element_size)
{
    take_snapshot()->elem_size = ELEM / 2; /* still fits the segment */
    ck_assert_int_eq(attach_copy(0, ELEM, CAP), -EPROTO);
}
END_TEST

START_TEST(test_hostile_other_capacity)
{
    take_snapshot()->capacity = CAP / 2; /* still fits the segment */
    ck_assert_int_eq(attach_copy(0, ELEM, CAP), -EPROTO);
}
END_TEST

START_TEST(test_hostile_lowered_capacity_with_nothing_expected)
{
    /* An attacher that takes the header's sizes (0, 0): a capacity lowered
     * after creation describes a smaller ring inside the file, not the one
     * the writer uses, and the reader would find its messages stale and
     * out of order. */
    take_snapshot()->capacity = CAP / 2;
    ck_assert_int_eq(attach_copy(0, 0, 0), -EPROTO);
}
END_TEST

START_TEST(test_hostile_segment_larger_than_header_says)
{
    take_snapshot();
    ck_assert_int_eq(attach_copy(snap_size + 4096, ELEM, CAP), -EPROTO);
    ck_assert_int_eq(attach_copy(snap_size + 4096, 0, 0), -EPROTO);
}
END_TEST

START_TEST(test_hostile_segment_smaller_than_header_says)
{
    take_snapshot();
    ck_assert_int_eq(attach_copy(snap_size - 1, ELEM, CAP), -EPROTO);
    ck_assert_int_eq(attach_copy(snap_size - 1, 0, 0), -EPROTO);
}
END_TEST

START_TEST(test_hostile_sizes_with_nothing_expected)
{
    /* An attacher that takes the header's sizes (0, 0) must still check
     * them: zero, too large for the segment, or overflowing. */
    static const struct {
        uint64_t elem, cap;
    } bad[] = {{0, CAP},
               {ELEM, 0},
               {ELEM, CAP * 1024},
               {ELEM, (uint64_t)1 << 62},
               {UINT64_MAX / 2, 2},
               {(uint64_t)1 << 32, (uint64_t)1 << 32},
               {64, (uint64_t)1 << 58},
               {ELEM, UINT64_MAX / 2},
               {UINT64_MAX, 2},
               {64, ((uint64_t)1 << 58) + 1}};
    struct spmc_shm_header *h = take_snapshot();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        h->elem_size = bad[i].elem;
        h->capacity = bad[i].cap;
        int rc = attach_copy(0, 0, 0);
        ck_assert_msg(rc == -EPROTO, "header saying %llu x %llu: %d (%s), expected -EPROTO",
                      (unsigned long long)bad[i].elem, (unsigned long long)bad[i].cap, rc,
                      strerror(-rc));
    }
}
END_TEST

START_TEST(test_half_written_empty_segment)
{
    const char *name = tu_name();
    ck_assert_int_eq(tu_make_segment(name, 0, NULL, 0), 0);
    ck_assert_int_eq(t_attach(&qr, name, ELEM, CAP), -EPROTO);
}
END_TEST

START_TEST(test_half_written_tiny_segment)
{
    take_snapshot();
    ck_assert_int_eq(attach_copy(16, ELEM, CAP), -EPROTO);
}
END_TEST

START_TEST(test_half_written_ready_never_set)
{
    take_snapshot()->ready = 0;
    ck_assert_int_eq(attach_copy(0, ELEM, CAP), -EPROTO);
}
END_TEST

START_TEST(test_header_completed_late_is_accepted)
{
    /* A slow creator: the segment has size 0 when attach starts; a child
     * sizes it about 50 ms later (all zeros), and writes the header about
     * 100 ms after that, ready last. Attach must wait through both stages
     * and then succeed. Attach waits a second at most: a round in which
     * the child got no CPU for that long (a busy machine) and stored ready
     * only after attach had given up proves nothing, and is run again. */
    struct spmc_shm_header *h = take_snapshot();
    uint32_t ready = h->ready;
    h->ready = 0;
    _Atomic uint64_t *ready_at = mmap(NULL, sizeof *ready_at, PROT_READ | PROT_WRITE,
                                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert(ready_at != MAP_FAILED);
    int rc = -1;
    for (int round = 0; round < 5; round++) {
        const char *name = tu_name();
        ck_assert_int_eq(tu_make_segment(name, 0, NULL, 0), 0);
        atomic_store(ready_at, UINT64_MAX);
        pid_t child = tu_fork();
        if (child == 0) {
            tu_sleep_ms(50);
            int fd = shm_open(name, O_RDWR, 0);
            if (fd < 0 || ftruncate(fd, (off_t)snap_size) != 0)
                _exit(2);
            struct spmc_shm_header *s =
                mmap(NULL, snap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (s == MAP_FAILED)
                _exit(3);
            tu_sleep_ms(100);
            memcpy(s, snap, snap_size);
#if SPMC_VERSION >= 3
            atomic_store_explicit(&s->ready, ready, memory_order_release); /* last */
#else
            __atomic_store_n(&s->ready, ready, __ATOMIC_RELEASE); /* last; day 2's is not _Atomic */
#endif
            atomic_store(ready_at, tu_now_ns());
            munmap(s, snap_size);
            close(fd);
            _exit(0);
        }
        rc = t_attach(&qr, name, ELEM, CAP);
        uint64_t gave_up = tu_now_ns();
        int status = tu_wait(child, IO_TIMEOUT_MS);
        ck_assert_msg(tu_exited_ok(status), "the late creator: %s", tu_status_str(status));
        if (rc == 0 || atomic_load(ready_at) < gave_up)
            break; /* a verdict: attach succeeded, or failed although ready was there */
    }
    munmap((void *)ready_at, sizeof *ready_at);
    ck_assert_int_eq(rc, 0);
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN); /* empty, not corrupt */
}
END_TEST

/* ===================================================================== */
/* Concurrency (day 3 on: the blocking calls)                              */
/* ===================================================================== */

#if SPMC_VERSION >= 3

/* What one side of a stress run reports. */
struct side_report {
    int32_t open_rc;    /* create/attach/wait_readers */
    int32_t last_rc;    /* consumer: -EPIPE when all is well; producer: 0 */
    uint64_t count;     /* messages pushed or popped */
    uint64_t bad;       /* consumer: out of order, duplicated or damaged */
    uint64_t first_bad; /* consumer: index of the first bad one */
};

/* Push @p n checkable messages with the blocking call; no destroy. */
static void produce(struct spmc_queue *q, size_t elem, uint64_t n, struct side_report *rep)
{
    unsigned char m[ELEM];
    for (rep->count = 0; rep->count < n; rep->count++) {
        msg_fill(m, elem, rep->count);
        rep->last_rc = spmc_queue_push(q, m, STUCK_NS);
        if (rep->last_rc != 0)
            return;
    }
}

/* Pop with the blocking call until the end of the stream, checking that
 * message i carries sequence number i and an intact payload. Stops at the
 * first bad message, or at message @p n + 1, so that a broken queue fails
 * the test quickly instead of spinning on garbage. */
static void consume(struct spmc_queue *q, size_t elem, uint64_t n, struct side_report *rep)
{
    unsigned char m[ELEM];
    rep->first_bad = UINT64_MAX;
    for (;;) {
        memset(m, 0, elem);
        rep->last_rc = spmc_queue_pop(q, m, STUCK_NS);
        if (rep->last_rc != 0)
            return;
        if (msg_seq(m) != rep->count || !msg_intact(m, elem) || rep->count >= n) {
            rep->bad++;
            rep->first_bad = rep->count;
            return;
        }
        rep->count++;
    }
}

static void check_consumer_at(const struct side_report *rep, uint64_t n, const char *who,
                              const char *file, int line)
{
    tu_assert_at(file, line, rep->open_rc == 0, "%s could not attach: %d (%s)", who, rep->open_rc,
                 strerror(-rep->open_rc));
    tu_assert_at(file, line, rep->bad == 0,
                 "%s: message %llu is lost, duplicated, reordered or damaged", who,
                 (unsigned long long)rep->first_bad);
    tu_assert_at(file, line, rep->count == n, "%s received %llu messages of %llu", who,
                 (unsigned long long)rep->count, (unsigned long long)n);
    tu_assert_at(file, line, rep->last_rc == -EPIPE, "%s ended with %d (%s), expected -EPIPE", who,
                 rep->last_rc, strerror(-rep->last_rc));
}
#define check_consumer(rep, n, who) check_consumer_at((rep), (n), (who), __FILE__, __LINE__)

static void check_producer_at(const struct side_report *rep, uint64_t n, const char *who,
                              const char *file, int line)
{
    tu_assert_at(file, line, rep->open_rc == 0, "%s could not start: %d (%s)", who, rep->open_rc,
                 strerror(-rep->open_rc));
    tu_assert_at(file, line, rep->last_rc == 0 && rep->count == n,
                 "%s pushed %llu of %llu, then %d (%s)", who, (unsigned long long)rep->count,
                 (unsigned long long)n, rep->last_rc, strerror(-rep->last_rc));
}
#define check_producer(rep, n, who) check_producer_at((rep), (n), (who), __FILE__, __LINE__)

/* A consumer child: attach, consume, report, _exit. */
static void consumer_child(const char *name, size_t elem, size_t cap, uint64_t n,
                           int report_fd)
{
    struct side_report rep;
    memset(&rep, 0, sizeof rep);
    struct spmc_queue r;
    rep.open_rc = t_attach(&r, name, elem, cap);
    if (rep.open_rc == 0) {
        consume(&r, elem, n, &rep);
        (void)spmc_queue_destroy(&r);
    }
    ssize_t w = write(report_fd, &rep, sizeof rep);
    _exit(w == (ssize_t)sizeof rep && rep.open_rc == 0 && rep.bad == 0 ? 0 : 1);
}

/* The report a child sends through @p fd, and its wait status in @p status. */
static struct side_report read_report_at(int fd, pid_t child, int *status, const char *who,
                                         const char *file, int line)
{
    struct side_report rep;
    memset(&rep, 0, sizeof rep);
    size_t got = tu_read_full_at(fd, &rep, sizeof rep, IO_TIMEOUT_MS, file, line);
    *status = tu_wait_at(child, IO_TIMEOUT_MS, file, line);
    tu_assert_at(file, line, got == sizeof rep, "%s sent no report (%s)", who,
                 tu_status_str(*status));
    return rep;
}
#define read_report(fd, child, status, who)                                                        \
    read_report_at((fd), (child), (status), (who), __FILE__, __LINE__)

START_TEST(test_stress_across_processes)
{
    /* The parent produces, a forked child consumes: 2^21-ish messages
     * through a 1024-slot ring with the blocking calls. */
    const uint64_t n = stress_messages(2000000);
    const char *name = tu_name();
    ck_assert_int_eq(t_create(&qw, name, ELEM, 1024), 0);
    int rp[2];
    tu_pipe(rp);
    pid_t child = tu_fork();
    if (child == 0)
        consumer_child(name, ELEM, 1024, n, rp[1]);
    tu_close(&rp[1]);

    struct side_report prod;
    memset(&prod, 0, sizeof prod);
    prod.open_rc = spmc_queue_wait_readers(&qw, 1, STUCK_NS);
    if (prod.open_rc == 0)
        produce(&qw, ELEM, n, &prod);
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0); /* end of stream */

    int status;
    struct side_report cons = read_report(rp[0], child, &status, "the consumer process");
    check_consumer(&cons, n, "the consumer process");
    check_producer(&prod, n, "the producer");
    ck_assert_msg(tu_exited_ok(status), "the consumer process: %s", tu_status_str(status));
}
END_TEST

START_TEST(test_stress_tiny_ring_across_processes)
{
    /* Both sides forked, capacity 4: the indices wrap every 4 messages and
     * the two processes meet at the boundary all the time. */
    const uint64_t n = stress_messages(500000);
    const char *name = tu_name();
    int pp[2], cp[2];
    tu_pipe(pp);
    tu_pipe(cp);

    pid_t producer = tu_fork();
    if (producer == 0) {
        struct side_report rep;
        memset(&rep, 0, sizeof rep);
        struct spmc_queue w;
        rep.open_rc = t_create(&w, name, ELEM, 4);
        char created = rep.open_rc == 0 ? 'c' : 'x';
        if (write(pp[1], &created, 1) != 1)
            _exit(3);
        if (rep.open_rc == 0) {
            rep.open_rc = spmc_queue_wait_readers(&w, 1, STUCK_NS);
            if (rep.open_rc == 0)
                produce(&w, ELEM, n, &rep);
            (void)spmc_queue_destroy(&w);
        }
        ssize_t wr = write(pp[1], &rep, sizeof rep);
        _exit(wr == (ssize_t)sizeof rep && rep.open_rc == 0 && rep.last_rc == 0 ? 0 : 1);
    }
    tu_close(&pp[1]);
    char created = 0;
    ck_assert_uint_eq(tu_read_full(pp[0], &created, 1, IO_TIMEOUT_MS), 1);
    ck_assert_msg(created == 'c', "the producer process could not create the queue");

    pid_t consumer = tu_fork();
    if (consumer == 0)
        consumer_child(name, ELEM, 4, n, cp[1]);
    tu_close(&cp[1]);

    int cstatus, pstatus;
    struct side_report cons = read_report(cp[0], consumer, &cstatus, "the consumer process");
    struct side_report prod = read_report(pp[0], producer, &pstatus, "the producer process");
    check_consumer(&cons, n, "the consumer process");
    check_producer(&prod, n, "the producer process");
    ck_assert_msg(tu_exited_ok(cstatus), "the consumer process: %s", tu_status_str(cstatus));
    ck_assert_msg(tu_exited_ok(pstatus), "the producer process: %s", tu_status_str(pstatus));
}
END_TEST

/* Threads of this process: what ThreadSanitizer gets to check. */
struct thread_side {
    struct spmc_queue *q;
    uint64_t n;
    struct side_report rep;
};

static void *producer_thread(void *arg)
{
    struct thread_side *s = arg;
    produce(s->q, ELEM, s->n, &s->rep);
    (void)spmc_queue_destroy(s->q); /* end of stream, seen by the consumer */
    return NULL;
}

static void *consumer_thread(void *arg)
{
    struct thread_side *s = arg;
    consume(s->q, ELEM, s->n, &s->rep);
    return NULL;
}

/* Run both threads to their end; returns 0 or a pthread error. */
static int run_threads(struct thread_side *prod, struct thread_side *cons)
{
    pthread_t tp, tc;
    int rc = pthread_create(&tc, NULL, consumer_thread, cons);
    if (rc != 0)
        return rc;
    rc = pthread_create(&tp, NULL, producer_thread, prod);
    if (rc != 0) {
        /* The consumer ends once the writer is gone. */
        (void)spmc_queue_destroy(prod->q);
        pthread_join(tc, NULL);
        return rc;
    }
    pthread_join(tp, NULL);
    pthread_join(tc, NULL);
    return 0;
}

START_TEST(test_stress_across_threads)
{
    const uint64_t n = stress_messages(1000000);
    open_pair(ELEM, 1024);
    struct thread_side prod = {&qw, n, {0, 0, 0, 0, 0}};
    struct thread_side cons = {&qr, n, {0, 0, 0, 0, 0}};
    int rc = run_threads(&prod, &cons);
    ck_assert_msg(rc == 0, "pthread_create: %s", strerror(rc));
    check_consumer(&cons.rep, n, "the consumer thread");
    check_producer(&prod.rep, n, "the producer thread");
}
END_TEST

START_TEST(test_stress_tiny_ring_across_threads)
{
    const uint64_t n = stress_messages(1000000) / 4;
    open_pair(ELEM, 4);
    struct thread_side prod = {&qw, n, {0, 0, 0, 0, 0}};
    struct thread_side cons = {&qr, n, {0, 0, 0, 0, 0}};
    int rc = run_threads(&prod, &cons);
    ck_assert_msg(rc == 0, "pthread_create: %s", strerror(rc));
    check_consumer(&cons.rep, n, "the consumer thread");
    check_producer(&prod.rep, n, "the producer thread");
}
END_TEST

static void *blocked_reader(void *arg)
{
    struct thread_side *s = arg;
    unsigned char m[ELEM];
    s->rep.last_rc = spmc_queue_pop(s->q, m, STUCK_NS);
    return NULL;
}

START_TEST(test_end_of_stream_wakes_a_blocked_reader)
{
    open_pair(ELEM, CAP);
    struct thread_side s = {&qr, 0, {0, 1, 0, 0, 0}};
    pthread_t t;
    int rc = pthread_create(&t, NULL, blocked_reader, &s);
    ck_assert_msg(rc == 0, "pthread_create: %s", strerror(rc));
    /* Not a synchronisation: only makes it likely that the reader is
     * already waiting; the outcome must be the same either way. */
    tu_sleep_ms(20);
    (void)spmc_queue_destroy(&qw);
    pthread_join(t, NULL);
    ck_assert_msg(s.rep.last_rc == -EPIPE, "a blocked pop got %d (%s), expected -EPIPE",
                  s.rep.last_rc, strerror(-s.rep.last_rc));
}
END_TEST

START_TEST(test_end_of_stream_races_the_last_messages)
{
    /* Many short streams whose end races the last pushes: the writer
     * pushes a few messages and leaves at once, while the reader is
     * spinning in pop. A reader that decides "closed, so nothing left"
     * from a stale head loses the last message. */
    const uint64_t rounds = stress_messages(1000000) / 500 + 1;
    const char *name = tu_name();
    for (uint64_t i = 0; i < rounds; i++) {
        const uint64_t n = 1 + i % CAP;
        ck_assert_int_eq(t_create(&qw, name, ELEM, CAP), 0);
        ck_assert_int_eq(t_attach(&qr, name, ELEM, CAP), 0);
        ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, 10 * SEC), 0);
        struct thread_side prod = {&qw, n, {0, 0, 0, 0, 0}};
        struct thread_side cons = {&qr, n, {0, 0, 0, 0, 0}};
        int rc = run_threads(&prod, &cons);
        ck_assert_msg(rc == 0, "pthread_create: %s", strerror(rc));
        check_consumer(&cons.rep, n, "the consumer thread");
        check_producer(&prod.rep, n, "the producer thread");
        ck_assert_int_eq(spmc_queue_destroy(&qr), 0);
    }
}
END_TEST
#endif

/* ===================================================================== */
/* The suite                                                               */
/* ===================================================================== */

static Suite *contract_suite(void)
{
    Suite *s = suite_create("contract " SPMC_DAY);

    TCase *tc = tcase_create("lifecycle");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_lifecycle);
#if SPMC_VERSION >= 3
    tcase_add_test(tc, test_blocking_calls_move_messages_too);
#endif
    tcase_add_test(tc, test_reader_can_leave_and_another_attach);
#if SPMC_VERSION < 5
    tcase_add_test(tc, test_second_reader_is_refused);
#endif
    suite_add_tcase(s, tc);

    tc = tcase_create("limits");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
#if SPMC_VERSION >= 3
    tcase_add_test(tc, test_full_and_empty);
    tcase_add_test(tc, test_wraparound_in_lockstep);
    tcase_add_test(tc, test_wraparound_in_bursts);
    tcase_add_test(tc, test_odd_message_size);
#endif
    tcase_add_test(tc, test_bad_names_are_refused);
    tcase_add_test(tc, test_bad_sizes_are_refused);
    tcase_add_test(tc, test_null_buffers_are_refused_and_lose_nothing);
    tcase_add_test(tc, test_create_refuses_an_existing_name);
    tcase_add_test(tc, test_full_dev_shm_fails_at_create);
#if SPMC_VERSION >= 6
    tcase_add_test(tc, test_sparse_segment_in_full_dev_shm_is_refused);
#endif
    tcase_add_test(tc, test_attach_to_a_missing_segment);
#if SPMC_VERSION >= 3
    tcase_add_test(tc, test_blocking_pop_times_out_on_empty);
    tcase_add_test(tc, test_blocking_push_times_out_on_full);
    tcase_add_test(tc, test_end_of_stream_only_after_draining);
    tcase_add_test(tc, test_drained_but_open_is_not_the_end);
#endif
    suite_add_tcase(s, tc);

    tc = tcase_create("faults");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_untouched_copy_attaches);
    tcase_add_test(tc, test_hostile_bad_magic);
    tcase_add_test(tc, test_hostile_bad_version);
    tcase_add_test(tc, test_hostile_bad_header_size);
    tcase_add_test(tc, test_hostile_bad_cacheline);
    tcase_add_test(tc, test_hostile_other_element_size);
    tcase_add_test(tc, test_hostile_other_capacity);
    tcase_add_test(tc, test_hostile_lowered_capacity_with_nothing_expected);
    tcase_add_test(tc, test_hostile_segment_larger_than_header_says);
    tcase_add_test(tc, test_hostile_segment_smaller_than_header_says);
    tcase_add_test(tc, test_hostile_sizes_with_nothing_expected);
    tcase_add_test(tc, test_half_written_empty_segment);
    tcase_add_test(tc, test_half_written_tiny_segment);
    tcase_add_test(tc, test_half_written_ready_never_set);
    tcase_add_test(tc, test_header_completed_late_is_accepted);
    suite_add_tcase(s, tc);

#if SPMC_VERSION >= 3
    tc = tcase_create("concurrency");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_end_of_stream_wakes_a_blocked_reader);
    tcase_add_test(tc, test_end_of_stream_races_the_last_messages);
    tcase_add_test(tc, test_stress_across_processes);
    tcase_add_test(tc, test_stress_tiny_ring_across_processes);
    tcase_add_test(tc, test_stress_across_threads);
    tcase_add_test(tc, test_stress_tiny_ring_across_threads);
    suite_add_tcase(s, tc);
#endif
    return s;
}

int main(void)
{
    return tu_main(contract_suite(), "check_contract_" SPMC_DAY);
}
