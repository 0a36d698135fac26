/* check_sleep.c - day 7 on: waiters sleep in the kernel, and wake.
 *
 * Built against the queue with its test hooks (-DSPMC_CRASH_POINTS) for one
 * of them: spmc_test_sleep_ns. Set, it makes every waiter go to sleep at
 * once (no spinning) and sleep for that long instead of a slice. Most tests
 * set it to an hour: then a wake-up the queue loses is not a delay of one
 * slice but a pop() or push() that times out, and the test fails with the
 * message that was never delivered. The tests of what slices are for (a
 * writer killed with SIGKILL wakes nobody) and of the idle cost use the
 * queue's own slices.
 *
 * What is counted: every message, exactly once (work-sharing) or by every
 * reader in order (broadcast); sleeps and wake-ups by spmc_queue_stats()
 * and by the header's count of sleepers; context switches by getrusage().
 * No timing thresholds: the deadlines only stop a hung process. */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "common.h"
#include "test_util.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#ifndef SPMC_CRASH_POINTS
#error "check_sleep.c needs the queue built with -DSPMC_CRASH_POINTS (spmc_test_sleep_ns)"
#endif

#define ELEM 64u
#define MS 1000000ll
#define SEC 1000000000ll
#define STUCK_NS (20 * SEC)   /* a pop or push this late lost its wake-up */
#define HOUR_NS (3600 * SEC)  /* "sleep until woken", for spmc_test_sleep_ns */
#define IO_TIMEOUT_MS 60000u

static struct spmc_queue qw, qr;

static void setup(void)
{
    tu_setup();
    memset(&qw, 0, sizeof qw);
    memset(&qr, 0, sizeof qr);
    spmc_test_sleep_ns = HOUR_NS;
}

static void teardown(void)
{
    (void)spmc_queue_destroy(&qw);
    (void)spmc_queue_destroy(&qr);
    tu_teardown();
    spmc_test_sleep_ns = 0;
    spmc_test_fence_mode = 0;
}

static int create_mode(struct spmc_queue *q, const char *name, enum spmc_fanout f, size_t cap)
{
    struct spmc_options o = {.fanout = f, .max_readers = 4};
    return spmc_queue_create_opts(q, name, ELEM, cap, &o);
}

static const char *mode_name(enum spmc_fanout f)
{
    return f == SPMC_SHARE ? "share" : "broadcast";
}

/* How many readers say they are asleep (the low half of the word). */
static unsigned asleep_now(const struct spmc_queue *q)
{
    return (uint32_t)atomic_load(&q->hdr->readers_asleep);
}

/* Wait until @p n readers say they are asleep (the header's count), or
 * fail after a minute. */
static void wait_asleep_at(struct spmc_queue *q, unsigned n, const char *file, int line)
{
    uint64_t deadline = tu_now_ns() + (uint64_t)IO_TIMEOUT_MS * 1000000u;
    while (asleep_now(q) != n) {
        tu_assert_at(file, line, tu_now_ns() < deadline,
                     "%u readers asleep, waited for %u (a reader that slept through a message "
                     "times out and leaves)", asleep_now(q), n);
        tu_sleep_ms(1);
    }
}
#define wait_asleep(q, n) wait_asleep_at((q), (n), __FILE__, __LINE__)

/* Is process @p pid blocked in the kernel (state S, in /proc/<pid>/stat)?
 * A reader in pop() is so only in its futex wait. */
static int blocked(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *end = strrchr(buf, ')'); /* the name may hold anything */
    return end != NULL && end[1] == ' ' && end[2] == 'S';
}

/* wait_asleep(), and then until each of the @p n reader processes @p pid
 * is blocked in its futex wait. A reader counts itself asleep before its
 * last look, and where it sends a barrier (membarrier(2)) between the two
 * that takes microseconds: a test that means "act while they sleep" waits
 * for the sleep itself. Fails after a minute. */
static void wait_sleeping_at(struct spmc_queue *q, unsigned n, const pid_t *pid, const char *file,
                             int line)
{
    wait_asleep_at(q, n, file, line);
    uint64_t deadline = tu_now_ns() + (uint64_t)IO_TIMEOUT_MS * 1000000u;
    for (unsigned k = 0; k < n; k++) {
        while (!blocked(pid[k])) {
            tu_assert_at(file, line, tu_now_ns() < deadline,
                         "reader %u (pid %d) never blocked in its sleep", k, (int)pid[k]);
            sched_yield();
        }
    }
    wait_asleep_at(q, n, file, line); /* (none woke up meanwhile) */
}
#define wait_sleeping(q, n, pid) wait_sleeping_at((q), (n), (pid), __FILE__, __LINE__)

/* What a reader child reports at the end, through a pipe. */
struct report {
    int rc;             /* how its last pop() ended */
    uint64_t received;  /* messages it popped */
    uint64_t errors;    /* damaged, out of order (broadcast) or out of range */
    uint64_t sleeps;    /* spmc_queue_stats() */
    long nvcsw, nivcsw; /* getrusage() over its pops */
};

/* A reader child: attach, pop until an error, mark each message in
 * @p seen (MAP_SHARED, one byte per message), report through @p fd. */
static void reader_child(const char *name, int fd, unsigned char *seen, uint64_t n_msg,
                         int broadcast, int64_t timeout_ns)
{
    struct spmc_queue q;
    struct report rep = {0};
    if (spmc_queue_attach(&q, name, ELEM, 0) != 0)
        _exit(10);
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    unsigned char m[ELEM];
    uint64_t next = 0;
    while ((rep.rc = spmc_queue_pop(&q, m, timeout_ns)) == 0) {
        uint64_t s = msg_intact(m, ELEM) ? msg_seq(m) : UINT64_MAX;
        if (s >= n_msg || (broadcast && s != next))
            rep.errors++;
        else if (seen != NULL)
            seen[s]++;
        next = s + 1;
        rep.received++;
    }
    getrusage(RUSAGE_SELF, &after);
    rep.nvcsw = after.ru_nvcsw - before.ru_nvcsw;
    rep.nivcsw = after.ru_nivcsw - before.ru_nivcsw;
    struct spmc_stats st;
    if (spmc_queue_stats(&q, &st) == 0)
        rep.sleeps = st.sleeps;
    (void)spmc_queue_destroy(&q);
    _exit(write(fd, &rep, sizeof rep) == (ssize_t)sizeof rep ? 0 : 11);
}

static struct report read_report_at(int fd, pid_t pid, const char *file, int line)
{
    struct report rep;
    tu_assert_at(file, line,
                 tu_read_full_at(fd, &rep, sizeof rep, IO_TIMEOUT_MS, file, line) == sizeof rep,
                 "a reader never reported");
    tu_assert_true_at(file, line, tu_exited_ok(tu_wait_at(pid, IO_TIMEOUT_MS, file, line)));
    return rep;
}
#define read_report(fd, pid) read_report_at((fd), (pid), __FILE__, __LINE__)

static unsigned char *shared_bytes(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(p, MAP_FAILED);
    return p;
}

/* ===================================================================== */
/* Sleeping and waking, many times                                         */
/* ===================================================================== */

/* A run of the writer (this process) and two reader processes, each reader
 * marking the messages it pops in its own row of `seen`. */
enum { READERS = 2 };
struct run {
    enum spmc_fanout f;
    uint64_t n_msg;
    unsigned char *seen; /* READERS rows of n_msg bytes, shared with the readers */
    int fds[READERS][2];
    pid_t pid[READERS];
};

/* Create the queue (4 slots) and start the readers; returns once they are
 * attached. */
static void run_start(struct run *r, enum spmc_fanout f, uint64_t n_msg)
{
    const char *name = tu_name();
    r->f = f;
    r->n_msg = n_msg;
    ck_assert_int_eq(create_mode(&qw, name, f, 4), 0);
    r->seen = shared_bytes(READERS * n_msg);
    for (unsigned k = 0; k < READERS; k++) {
        tu_pipe(r->fds[k]);
        r->pid[k] = tu_fork();
        if (r->pid[k] == 0)
            reader_child(name, r->fds[k][1], r->seen + k * n_msg, n_msg, f == SPMC_BROADCAST,
                         STUCK_NS);
        tu_close(&r->fds[k][1]);
    }
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, READERS, STUCK_NS), 0);
}

static void run_push(const struct run *r, uint64_t s)
{
    unsigned char m[ELEM];
    msg_fill(m, ELEM, s);
    int rc = spmc_queue_push(&qw, m, STUCK_NS);
    ck_assert_msg(rc == 0, "%s: push of message %llu returned %d (a lost wake-up)",
                  mode_name(r->f), (unsigned long long)s, rc);
}

/* Close the queue (which wakes the readers for the end) and account for
 * every message: each reader ended with end of stream, nothing damaged,
 * every message popped once (work-sharing) or once by each reader
 * (broadcast). Returns the readers' sleeps; *st gets the writer's stats. */
static uint64_t run_finish(struct run *r, struct spmc_stats *st)
{
    const enum spmc_fanout f = r->f;
    ck_assert_int_eq(spmc_queue_stats(&qw, st), 0);
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    uint64_t total = 0, sleeps = 0;
    for (unsigned k = 0; k < READERS; k++) {
        struct report rep = read_report(r->fds[k][0], r->pid[k]);
        ck_assert_msg(rep.rc == -EPIPE, "%s: reader %u ended with %d after %llu messages "
                      "(-ETIMEDOUT: it slept through a message)", mode_name(f), k, rep.rc,
                      (unsigned long long)rep.received);
        ck_assert_uint_eq(rep.errors, 0);
        total += rep.received;
        sleeps += rep.sleeps;
    }
    for (uint64_t i = 0; i < r->n_msg; i++) {
        unsigned got = 0;
        for (unsigned k = 0; k < READERS; k++)
            got += r->seen[k * r->n_msg + i];
        ck_assert_msg(got == (f == SPMC_SHARE ? 1u : READERS), "%s: message %llu received %u times",
                      mode_name(f), (unsigned long long)i, got);
    }
    ck_assert_uint_eq(total, f == SPMC_SHARE ? r->n_msg : READERS * r->n_msg);
    munmap(r->seen, READERS * r->n_msg);
    return sleeps;
}

/* (a) Two reader processes and the writer, a ring of 4 slots. Each cycle
 * the writer waits until both readers are asleep, then pushes a burst of
 * 1 to 12 messages: the readers wake, take them, and fall asleep again
 * while the burst goes on; bursts longer than the ring put the writer to
 * sleep until the readers give room back. Every sleep is "until woken", so
 * a lost wake-up is a timeout. */
static void sleep_wake_cycles(enum spmc_fanout f)
{
    const unsigned cycles = (unsigned)stress_messages(400) < 400 ? 100 : 400;
    uint64_t n_msg = 0, burst[400];
    for (unsigned c = 0; c < cycles; c++) {
        burst[c] = 1 + (c * 7u) % 12u; /* 1..12, every length many times */
        n_msg += burst[c];
    }
    struct run r;
    run_start(&r, f, n_msg);
    uint64_t s = 0;
    for (unsigned c = 0; c < cycles; c++) {
        wait_sleeping(&qw, READERS, r.pid);
        for (uint64_t b = 0; b < burst[c]; b++)
            run_push(&r, s++);
    }
    struct spmc_stats st;
    const uint64_t sleeps = run_finish(&r, &st);
    /* Both said they were asleep at every cycle's start; one that said so
     * may still find the burst's first message before it sleeps, so the
     * counts are not exact, but the run must have slept and woken. */
    ck_assert_uint_gt(sleeps, cycles / 2);
    ck_assert_uint_gt(st.wakes, cycles / 2);
    ck_assert_uint_gt(st.sleeps, 0); /* the full ring put the writer to sleep */
}

/* A stream at full speed through a ring of 4 slots, two readers: they
 * catch up and fall asleep, the writer fills the ring and falls asleep,
 * hundreds of thousands of times, each side waking the other. Sleeps are
 * "until woken": a lost wake-up on either side stops the stream, and a pop
 * or push times out. */
static void full_speed_stream(enum spmc_fanout f)
{
    struct run r;
    run_start(&r, f, stress_messages(200000));
    for (uint64_t s = 0; s < r.n_msg; s++)
        run_push(&r, s);
    struct spmc_stats st;
    ck_assert_uint_gt(run_finish(&r, &st), 0);
    ck_assert_uint_gt(st.sleeps, 0);
}

START_TEST(test_broadcast_full_speed_stream)
{
    full_speed_stream(SPMC_BROADCAST);
}
END_TEST

START_TEST(test_share_full_speed_stream)
{
    full_speed_stream(SPMC_SHARE);
}
END_TEST

START_TEST(test_broadcast_sleep_wake_cycles)
{
    sleep_wake_cycles(SPMC_BROADCAST);
}
END_TEST

START_TEST(test_share_sleep_wake_cycles)
{
    sleep_wake_cycles(SPMC_SHARE);
}
END_TEST

/* Lock step: the reader says "got message i" in shared memory and at once
 * calls pop() again, finds nothing, and goes to sleep; the writer, spinning
 * on that word, pushes message i + 1 the moment it sees it. So every push
 * lands while the reader is counting itself and looking again: the window
 * a lost wake-up needs, a hundred thousand times. This is the test that
 * finds the stall when the writer's fence in wake_if_asleep() is taken
 * out (see day7/README.md, "Break it"). */
static void lock_step(enum spmc_fanout f)
{
    /* 100,000 messages in each fencing mode: the mutations of "Break it"
     * (day7/README.md) lost their first message after thousands to tens
     * of thousands. Under a sanitizer or Valgrind the writer's own rule
     * (mode 0) runs in full and the other three modes an eighth as long:
     * in them most sleeps send a barrier, tens of microseconds each, and
     * those runs look for memory errors and data races, which a shorter
     * run shows as well. */
    uint64_t n_msg = stress_messages(200000) / 2;
    if (spmc_test_fence_mode != 0 && stress_reduced())
        n_msg /= 8;
    const char *name = tu_name();
    ck_assert_int_eq(create_mode(&qw, name, f, 8), 0);
    _Atomic uint64_t *got = (_Atomic uint64_t *)shared_bytes(sizeof *got);
    atomic_store(got, 0);
    pid_t p = tu_fork();
    if (p == 0) {
        struct spmc_queue q;
        if (spmc_queue_attach(&q, name, ELEM, 0) != 0)
            _exit(10);
        unsigned char m[ELEM];
        int rc;
        uint64_t next = 0;
        while ((rc = spmc_queue_pop(&q, m, STUCK_NS)) == 0) {
            if (!msg_intact(m, ELEM) || msg_seq(m) != next)
                _exit(11);
            atomic_store(got, ++next);
        }
        (void)spmc_queue_destroy(&q);
        _exit(rc == -EPIPE && next == n_msg ? 0 : 12);
    }
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, STUCK_NS), 0);
    unsigned char m[ELEM];
    for (uint64_t i = 0; i < n_msg; i++) {
        msg_fill(m, ELEM, i);
        ck_assert_int_eq(spmc_queue_push(&qw, m, STUCK_NS), 0);
        uint64_t deadline = tu_now_ns() + (uint64_t)STUCK_NS;
        /* No sched_yield() in this spin: with one, the reader that sends
         * no barrier (day7/README.md, "Break it") went unnoticed in two of
         * three runs; without, it failed in each of three. */
        while (atomic_load(got) != i + 1)
            ck_assert_msg(tu_now_ns() < deadline,
                          "%s, fence mode %d: message %llu of %llu never arrived: the reader "
                          "slept through it (a lost wake-up)", mode_name(f), spmc_test_fence_mode,
                          (unsigned long long)i, (unsigned long long)n_msg);
    }
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    ck_assert(tu_exited_ok(tu_wait(p, IO_TIMEOUT_MS)));
    munmap((void *)got, sizeof *got);
}

/* Each in the writer's four fencing modes (spmc_test_fence_mode): its own
 * rule (in lock step it fences from the second message on), fencing from
 * the first wake, never fencing (every reader sleep sends a barrier), and
 * switching at every wake, each switch racing the reader's way to sleep. */
START_TEST(test_broadcast_lock_step)
{
    spmc_test_fence_mode = _i;
    lock_step(SPMC_BROADCAST);
}
END_TEST

START_TEST(test_share_lock_step)
{
    spmc_test_fence_mode = _i;
    lock_step(SPMC_SHARE);
}
END_TEST

/* A ping-pong through two queues, both sides sleeping between messages:
 * every message is pushed while its reader is falling asleep or asleep. */
static void ping_pong(enum spmc_fanout f)
{
    const uint64_t rounds = stress_messages(200000) / 10;
    const char *ping = tu_name(), *pong = tu_name();
    ck_assert_int_eq(create_mode(&qw, ping, f, 2), 0);
    int fds[2];
    tu_pipe(fds);
    pid_t p = tu_fork();
    if (p == 0) { /* the echo: pong is its queue, ping its input */
        struct spmc_queue in, out;
        if (create_mode(&out, pong, f, 2) != 0 || write(fds[1], "r", 1) != 1 ||
            spmc_queue_attach(&in, ping, ELEM, 0) != 0 ||
            spmc_queue_wait_readers(&out, 1, STUCK_NS) != 0)
            _exit(20);
        unsigned char m[ELEM];
        int rc;
        while ((rc = spmc_queue_pop(&in, m, STUCK_NS)) == 0)
            if (spmc_queue_push(&out, m, STUCK_NS) != 0)
                _exit(21);
        (void)spmc_queue_destroy(&out);
        _exit(rc == -EPIPE ? 0 : 22);
    }
    tu_close(&fds[1]);
    char r;
    ck_assert_uint_eq(tu_read_full(fds[0], &r, 1, IO_TIMEOUT_MS), 1);
    ck_assert_int_eq(spmc_queue_attach(&qr, pong, ELEM, 0), 0);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, STUCK_NS), 0);
    unsigned char m[ELEM];
    for (uint64_t i = 0; i < rounds; i++) {
        msg_fill(m, ELEM, i);
        ck_assert_int_eq(spmc_queue_push(&qw, m, STUCK_NS), 0);
        int rc = spmc_queue_pop(&qr, m, STUCK_NS);
        ck_assert_msg(rc == 0, "%s: round trip %llu of %llu: pop returned %d (a lost wake-up)",
                      mode_name(f), (unsigned long long)i, (unsigned long long)rounds, rc);
        ck_assert(msg_intact(m, ELEM));
        ck_assert_uint_eq(msg_seq(m), i);
    }
    struct spmc_stats st;
    ck_assert_int_eq(spmc_queue_stats(&qr, &st), 0);
    ck_assert_uint_gt(st.sleeps, 0);
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    ck_assert(tu_exited_ok(tu_wait(p, IO_TIMEOUT_MS)));
    ck_assert_int_eq(spmc_queue_pop(&qr, m, STUCK_NS), -EPIPE);
}

START_TEST(test_broadcast_ping_pong_asleep)
{
    ping_pong(SPMC_BROADCAST);
}
END_TEST

START_TEST(test_share_ping_pong_asleep)
{
    ping_pong(SPMC_SHARE);
}
END_TEST

/* ===================================================================== */
/* What ends a sleep                                                       */
/* ===================================================================== */

/* (c) destroy() wakes every sleeping reader at once: they sleep "until
 * woken" here, so without the wake they would never see end of stream. */
START_TEST(test_destroy_wakes_sleeping_readers)
{
    const enum spmc_fanout f = _i ? SPMC_SHARE : SPMC_BROADCAST;
    const char *name = tu_name();
    ck_assert_int_eq(create_mode(&qw, name, f, 8), 0);
    int fds[3][2];
    pid_t pid[3];
    for (unsigned k = 0; k < 3; k++) {
        tu_pipe(fds[k]);
        pid[k] = tu_fork();
        if (pid[k] == 0)
            reader_child(name, fds[k][1], NULL, 1, 0, SPMC_WAIT_FOREVER);
        tu_close(&fds[k][1]);
    }
    /* The writer asleep until the third joins: joining wakes it. */
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 3, STUCK_NS), 0);
    wait_sleeping(&qw, 3, pid);
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    for (unsigned k = 0; k < 3; k++) {
        struct report rep = read_report(fds[k][0], pid[k]);
        ck_assert_int_eq(rep.rc, -EPIPE);
        ck_assert_uint_eq(rep.received, 0);
        ck_assert_uint_ge(rep.sleeps, 1);
    }
}
END_TEST

/* (c) A writer killed with SIGKILL wakes nobody; its sleeping readers
 * notice within a slice (the queue's own, here) and end with -EOWNERDEAD,
 * after the messages it had published. */
START_TEST(test_sigkill_of_the_writer_ends_the_sleep)
{
    spmc_test_sleep_ns = 0; /* the queue's own slices: they are the point */
    const enum spmc_fanout f = _i ? SPMC_SHARE : SPMC_BROADCAST;
    const char *name = tu_name();
    int ready[2];
    tu_pipe(ready);
    pid_t w = tu_fork();
    if (w == 0) { /* create, wait for three readers, push 3, sleep for ever */
        struct spmc_queue q;
        if (create_mode(&q, name, f, 8) != 0 || write(ready[1], "c", 1) != 1 ||
            spmc_queue_wait_readers(&q, 3, STUCK_NS) != 0)
            _exit(20);
        unsigned char m[ELEM];
        for (uint64_t i = 0; i < 3; i++) {
            msg_fill(m, ELEM, i);
            if (spmc_queue_push(&q, m, STUCK_NS) != 0)
                _exit(21);
        }
        for (;;)
            pause();
    }
    char c;
    ck_assert_uint_eq(tu_read_full(ready[0], &c, 1, IO_TIMEOUT_MS), 1);
    unsigned char *seen = shared_bytes(2 * 3);
    int fds[2][2];
    pid_t pid[2];
    for (unsigned k = 0; k < 2; k++) {
        tu_pipe(fds[k]);
        pid[k] = tu_fork();
        if (pid[k] == 0)
            reader_child(name, fds[k][1], seen + 3 * k, 3, f == SPMC_BROADCAST,
                         SPMC_WAIT_FOREVER);
        tu_close(&fds[k][1]);
    }
    /* Watch the sleepers through a handle of our own that pops nothing. */
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), 0);
    uint64_t deadline = tu_now_ns() + (uint64_t)IO_TIMEOUT_MS * 1000000u;
    while (atomic_load(&qr.hdr->head) != 3 || asleep_now(&qr) != 2)
        ck_assert_msg(tu_now_ns() < deadline, "the readers never fell asleep after 3 messages");
    ck_assert_int_eq(kill(w, SIGKILL), 0);
    int status = tu_wait(w, IO_TIMEOUT_MS);
    ck_assert(WIFSIGNALED(status));
    uint64_t total = 0;
    for (unsigned k = 0; k < 2; k++) {
        struct report rep = read_report(fds[k][0], pid[k]);
        ck_assert_int_eq(rep.rc, -EOWNERDEAD);
        ck_assert_uint_eq(rep.errors, 0);
        total += rep.received;
    }
    ck_assert_uint_eq(total, f == SPMC_SHARE ? 3 : 6);
    for (unsigned i = 0; i < 3; i++)
        ck_assert_uint_eq(seen[i] + seen[3 + i], f == SPMC_SHARE ? 1 : 2);
    munmap(seen, 6);
}
END_TEST

/* A work-sharing reader that must deliver messages other readers left:
 * pops @p expect messages, each within STUCK_NS, and marks each in @p seen.
 * It stops early, with SLEPT, should it sleep once it has begun delivering:
 * what the others left is all there, so it must deliver it without a sleep
 * (its sleeps last an hour here; a check per sleep would deliver one
 * message per hour, or per timeout). Reports through @p fd. */
enum { DRAINED = 0, SLEPT = 1 };
static void drainer_child(const char *name, int fd, unsigned char *seen, uint64_t n_msg,
                          uint64_t expect)
{
    struct spmc_queue q;
    struct report rep = {0};
    if (spmc_queue_attach(&q, name, ELEM, 0) != 0)
        _exit(10);
    unsigned char m[ELEM];
    uint64_t slept = 0;
    while (rep.received < expect && (rep.rc = spmc_queue_pop(&q, m, STUCK_NS)) == 0) {
        uint64_t s = msg_intact(m, ELEM) ? msg_seq(m) : UINT64_MAX;
        if (s >= n_msg)
            rep.errors++;
        else
            seen[s]++;
        if (rep.received++ == 0)
            slept = q.sleeps;
        else if (q.sleeps != slept) {
            rep.rc = SLEPT;
            break;
        }
    }
    rep.sleeps = q.sleeps;
    (void)spmc_queue_destroy(&q);
    _exit(write(fd, &rep, sizeof rep) == (ssize_t)sizeof rep ? 0 : 11);
}

/* The drainer's report: all @p expect messages, intact and in range, and
 * no sleep once it had begun. */
static void assert_drained_at(int fd, pid_t pid, uint64_t expect, const char *file, int line)
{
    struct report rep = read_report_at(fd, pid, file, line);
    tu_assert_at(file, line, rep.rc == DRAINED,
                 "the sleeper ended with %d after %llu of %llu messages left (%d: it slept "
                 "with messages to deliver)", rep.rc, (unsigned long long)rep.received,
                 (unsigned long long)expect, SLEPT);
    tu_assert_at(file, line, rep.received == expect, "%llu messages, not %llu",
                 (unsigned long long)rep.received, (unsigned long long)expect);
    tu_assert_at(file, line, rep.errors == 0, "%llu damaged or out of range",
                 (unsigned long long)rep.errors);
}
#define assert_drained(fd, pid, expect) assert_drained_at((fd), (pid), (expect), __FILE__, __LINE__)

/* A work-sharing reader that leaves in the middle of a claim leaves its
 * messages to the others; a reader asleep meanwhile must deliver every one
 * of them, without sleeping in between. */
START_TEST(test_share_sleeper_delivers_what_a_leaver_left)
{
    const char *name = tu_name();
    struct spmc_options o = {.fanout = SPMC_SHARE, .max_readers = 4, .claim_max = 16};
    ck_assert_int_eq(spmc_queue_create_opts(&qw, name, ELEM, 64, &o), 0);
    int ctl[2], back[2];
    tu_pipe(ctl);
    tu_pipe(back);
    unsigned char m[ELEM];
    for (uint64_t i = 0; i < 16; i++) { /* all there before it claims */
        msg_fill(m, ELEM, i);
        ck_assert_int_eq(spmc_queue_push(&qw, m, STUCK_NS), 0);
    }
    pid_t h = tu_fork();
    if (h == 0) { /* claims all 16, delivers one, leaves when told */
        struct spmc_queue q;
        char c;
        if (spmc_queue_attach(&q, name, ELEM, 0) != 0 || spmc_queue_pop(&q, m, STUCK_NS) != 0 ||
            msg_seq(m) != 0 || write(back[1], "p", 1) != 1 || read(ctl[0], &c, 1) != 1)
            _exit(20);
        (void)spmc_queue_destroy(&q);
        _exit(0);
    }
    char c;
    ck_assert_uint_eq(tu_read_full(back[0], &c, 1, IO_TIMEOUT_MS), 1); /* it has them */
    unsigned char *seen = shared_bytes(16);
    int fds[2];
    tu_pipe(fds);
    pid_t r = tu_fork();
    if (r == 0)
        drainer_child(name, fds[1], seen, 16, 15);
    tu_close(&fds[1]);
    wait_sleeping(&qw, 1, &r);
    ck_assert_int_eq(write(ctl[1], "g", 1), 1); /* leave now, 15 undelivered */
    ck_assert(tu_exited_ok(tu_wait(h, IO_TIMEOUT_MS)));
    /* Before we close: a reader that only delivers them once the writer
     * has gone has slept on them. */
    assert_drained(fds[0], r, 15);
    ck_assert_uint_eq(seen[0], 0); /* the leaver delivered that one */
    for (unsigned i = 1; i < 16; i++)
        ck_assert_uint_eq(seen[i], 1);
    munmap(seen, 16);
}
END_TEST

/* A work-sharing reader that takes a message and never delivers it: on
 * day 8 it peeks a record and never releases it; before, it pops the first
 * message of a claim of two and keeps the second. Says so on @p say, then
 * waits on @p hold to be killed. */
static void holder_child(const char *name, int say, int hold)
{
    struct spmc_queue q;
    char c;
    if (spmc_queue_attach(&q, name, ELEM, 0) != 0)
        _exit(20);
#if SPMC_VERSION >= 8
    const void *rec;
    size_t len;
    if (spmc_queue_peek(&q, &rec, &len, STUCK_NS) != 0)
        _exit(21);
#else
    unsigned char m[ELEM];
    if (spmc_queue_pop(&q, m, STUCK_NS) != 0)
        _exit(21);
#endif
    if (write(say, "h", 1) != 1 || read(hold, &c, 1) != 1)
        _exit(22);
    _exit(23); /* never: it is killed first */
}

/* Two work-sharing readers die (SIGKILL: they wake nobody), each holding a
 * message it never delivered, while a third sleeps. The writer's next push
 * wakes it: it must deliver that message and both the dead left, without
 * another sleep. */
START_TEST(test_share_sleeper_delivers_what_killed_readers_left)
{
    const char *name = tu_name();
#if SPMC_VERSION >= 8
    const uint64_t per_holder = 1; /* it peeks at it: its claim, all there was */
    struct spmc_options o = {.fanout = SPMC_SHARE, .max_readers = 4};
#else
    const uint64_t per_holder = 2; /* it delivers the first, holds the second */
    struct spmc_options o = {.fanout = SPMC_SHARE, .max_readers = 4, .claim_max = 2};
#endif
    ck_assert_int_eq(spmc_queue_create_opts(&qw, name, ELEM, 16, &o), 0);
    int back[2], hold[2];
    tu_pipe(back);
    tu_pipe(hold);
    pid_t holders[2];
    unsigned char m[ELEM];
    uint64_t next = 0;
    char c;
    for (unsigned k = 0; k < 2; k++) { /* one at a time: each claims its own, whole */
        for (uint64_t i = 0; i < per_holder; i++, next++) {
            msg_fill(m, ELEM, next);
            ck_assert_int_eq(spmc_queue_push(&qw, m, STUCK_NS), 0);
        }
        holders[k] = tu_fork();
        if (holders[k] == 0)
            holder_child(name, back[1], hold[0]);
        ck_assert_uint_eq(tu_read_full(back[0], &c, 1, IO_TIMEOUT_MS), 1);
    }
    unsigned char *seen = shared_bytes(next + 1);
    int fds[2];
    tu_pipe(fds);
    pid_t r = tu_fork();
    if (r == 0)
        drainer_child(name, fds[1], seen, next + 1, 3);
    tu_close(&fds[1]);
    wait_sleeping(&qw, 1, &r);
    for (unsigned k = 0; k < 2; k++) {
        ck_assert_int_eq(kill(holders[k], SIGKILL), 0);
        ck_assert(WIFSIGNALED(tu_wait(holders[k], IO_TIMEOUT_MS)));
    }
    msg_fill(m, ELEM, next);
    ck_assert_int_eq(spmc_queue_push(&qw, m, STUCK_NS), 0); /* wakes the sleeper */
    assert_drained(fds[0], r, 3);
    /* Each holder's undelivered message, and the new one; never the
     * messages the holders delivered (days 5-7). */
    for (uint64_t i = 0; i <= next; i++)
        ck_assert_uint_eq(seen[i], (i + 1) % per_holder == 0 || i == next ? 1 : 0);
    munmap(seen, next + 1);
}
END_TEST

/* A reader killed in its sleep is taken off the count of sleepers when
 * its entry is reaped; otherwise the writer would make a futex call at
 * every push from then on, waking nobody. */
START_TEST(test_reader_killed_asleep_is_uncounted)
{
    const enum spmc_fanout f = _i ? SPMC_SHARE : SPMC_BROADCAST;
    const char *name = tu_name();
    ck_assert_int_eq(create_mode(&qw, name, f, 8), 0);
    int fds[2];
    tu_pipe(fds);
    pid_t p = tu_fork();
    if (p == 0)
        reader_child(name, fds[1], NULL, 1, 0, SPMC_WAIT_FOREVER);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, STUCK_NS), 0);
    wait_asleep(&qw, 1);
    ck_assert_int_eq(kill(p, SIGKILL), 0);
    int status = tu_wait(p, IO_TIMEOUT_MS);
    ck_assert(WIFSIGNALED(status));
    ck_assert_uint_eq(asleep_now(&qw), 1); /* the dead one's */
    /* Waiting for a reader looks at the table, finds the dead one, reaps it. */
    spmc_test_sleep_ns = 20 * MS;
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, 300 * MS), -ETIMEDOUT);
    ck_assert_uint_eq(asleep_now(&qw), 0);
    struct spmc_stats before, after;
    ck_assert_int_eq(spmc_queue_stats(&qw, &before), 0);
    unsigned char m[ELEM];
    const uint64_t n = f == SPMC_SHARE ? 8 : 100; /* (share: they wait for a reader) */
    for (uint64_t i = 0; i < n; i++) {
        msg_fill(m, ELEM, i);
        ck_assert_int_eq(spmc_queue_try_push(&qw, m), 0);
    }
    ck_assert_int_eq(spmc_queue_stats(&qw, &after), 0);
    ck_assert_uint_eq(after.wakes, before.wakes); /* no futex call for nobody */
}
END_TEST

/* Hostile words: a peer may write anything into the futex words and the
 * counts. A count of four billion sleepers costs the writer a futex call
 * (then it has woken them all, as far as it knows), and a count of zero
 * under a sleeping reader costs that reader a slice; neither loses a
 * message or outlasts a timeout. */
START_TEST(test_scribbled_futex_words_cost_a_slice_at_most)
{
    spmc_test_sleep_ns = 0; /* the queue's own slices */
    const enum spmc_fanout f = _i ? SPMC_SHARE : SPMC_BROADCAST;
    const char *name = tu_name();
    ck_assert_int_eq(create_mode(&qw, name, f, 8), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), 0);
    struct spmc_shm_header *h = qw.hdr;
    atomic_store(&h->readers_asleep, UINT32_MAX);
    atomic_store(&h->writer_asleep, UINT32_MAX);
    atomic_store(&h->readers_wake, 0xdeadbeefu);
    atomic_store(&h->writer_wake, 0xdeadbeefu);
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_pop(&qr, m, 50 * MS), -ETIMEDOUT); /* nothing: times out */
    for (uint64_t i = 0; i < 8; i++) { /* a futex call for nobody, at the first */
        msg_fill(m, ELEM, i);
        ck_assert_int_eq(spmc_queue_push(&qw, m, STUCK_NS), 0);
    }
    msg_fill(m, ELEM, 8); /* the ring is full and the reader does not pop */
    ck_assert_int_eq(spmc_queue_push(&qw, m, 50 * MS), -ETIMEDOUT);
    for (uint64_t i = 0; i < 8; i++) {
        ck_assert_int_eq(spmc_queue_pop(&qr, m, STUCK_NS), 0);
        ck_assert_uint_eq(msg_seq(m), i);
    }
    /* Zero sleepers said while one sleeps: it sees the message a slice late
     * at worst. Our reader sleeps in a child; we clear the count under it. */
    int fds[2];
    tu_pipe(fds);
    pid_t p = tu_fork();
    if (p == 0) {
        struct spmc_queue q;
        if (spmc_queue_attach(&q, name, ELEM, 0) != 0)
            _exit(10);
        unsigned char c[ELEM];
        int rc = spmc_queue_pop(&q, c, STUCK_NS);
        uint64_t s = rc == 0 && msg_intact(c, ELEM) ? msg_seq(c) : UINT64_MAX;
        _exit(write(fds[1], &s, sizeof s) == (ssize_t)sizeof s ? 0 : 11);
    }
    ck_assert_int_eq(spmc_queue_destroy(&qr), 0); /* (broadcast: it would hold the ring) */
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, STUCK_NS), 0);
    atomic_store(&h->readers_asleep, 0);
    wait_asleep(&qw, 1);
    atomic_store(&h->readers_asleep, 0);
    msg_fill(m, ELEM, 100);
    ck_assert_int_eq(spmc_queue_push(&qw, m, STUCK_NS), 0);
    uint64_t got;
    ck_assert_uint_eq(tu_read_full(fds[0], &got, sizeof got, IO_TIMEOUT_MS), sizeof got);
    ck_assert_uint_eq(got, 100);
    ck_assert(tu_exited_ok(tu_wait(p, IO_TIMEOUT_MS)));
}
END_TEST

/* Make membarrier(2) fail with EPERM in this process from now on: a
 * seccomp filter on the call's number (the number of this architecture;
 * enough for a test). 0, or -errno. */
static int deny_membarrier(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -errno;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0 ? 0 : -errno;
}

/* A reader whose process may not send barriers (a seccomp filter denies
 * membarrier(2)) while the writer skips its fence after a push, counting
 * on them (SPMC_BARRIER_READERS_SEND): the writer may not see its count,
 * so it must not sleep until woken, but nap and look again. Blocked 200 ms
 * on an empty queue it sleeps more than once (with sleeps of an hour it
 * would sleep once, then time out); then it gets every message of a lock
 * step, each pushed while it is counted asleep, and the end of stream. */
START_TEST(test_reader_that_may_not_send_barriers_naps)
{
    const enum spmc_fanout f = _i ? SPMC_SHARE : SPMC_BROADCAST;
    const uint64_t n_msg = 200;
    const char *name = tu_name();
    ck_assert_int_eq(create_mode(&qw, name, f, 8), 0);
    if ((qw.hdr->writer_barrier & SPMC_BARRIER_READERS_SEND) == 0) {
        /* No membarrier here (an old kernel, Valgrind): both sides fence,
         * and there is no light path to test. */
        fprintf(stderr, "%s: the writer fences (no membarrier): nothing to test\n", __func__);
        return;
    }
    int fds[2], go[2];
    tu_pipe(fds);
    tu_pipe(go);
    pid_t p = tu_fork();
    if (p == 0) {
        struct report rep[2] = {{0}};
        struct spmc_queue q;
        if (deny_membarrier() != 0)
            _exit(12);
        if (spmc_queue_attach(&q, name, ELEM, 0) != 0)
            _exit(10);
        unsigned char m[ELEM];
        struct spmc_stats st;
        /* A blocking pop of 200 ms must sleep more than once. Up to ten
         * tries, keeping the most sleeps one try made: a try in which this
         * process got no CPU for most of the 200 ms proves nothing, and a
         * reader that sleeps until woken sleeps once in every try. */
        uint64_t before = 0;
        for (int t = 0; t < 10 && rep[0].sleeps < 2; t++) {
            rep[0].rc = spmc_queue_pop(&q, m, 200 * MS);
            if (rep[0].rc != -ETIMEDOUT || spmc_queue_stats(&q, &st) != 0)
                break;
            if (st.sleeps - before > rep[0].sleeps)
                rep[0].sleeps = st.sleeps - before;
            before = st.sleeps;
        }
        if (write(go[1], "", 1) != 1)
            _exit(11);
        while ((rep[1].rc = spmc_queue_pop(&q, m, STUCK_NS)) == 0) {
            if (!msg_intact(m, ELEM) || msg_seq(m) != rep[1].received)
                rep[1].errors++;
            rep[1].received++;
        }
        (void)spmc_queue_destroy(&q);
        _exit(write(fds[1], rep, sizeof rep) == (ssize_t)sizeof rep ? 0 : 11);
    }
    tu_close(&fds[1]);
    tu_close(&go[1]);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, STUCK_NS), 0);
    char c;
    ck_assert_uint_eq(tu_read_full(go[0], &c, 1, IO_TIMEOUT_MS), 1);
    unsigned char m[ELEM];
    for (uint64_t i = 0; i < n_msg; i++) {
        wait_asleep(&qw, 1);
        msg_fill(m, ELEM, i);
        ck_assert_int_eq(spmc_queue_push(&qw, m, STUCK_NS), 0);
    }
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    struct report rep[2];
    ck_assert_uint_eq(tu_read_full(fds[0], rep, sizeof rep, IO_TIMEOUT_MS), sizeof rep);
    ck_assert(tu_exited_ok(tu_wait(p, IO_TIMEOUT_MS)));
    ck_assert_int_eq(rep[0].rc, -ETIMEDOUT);
    ck_assert_msg(rep[0].sleeps > 1, "%s: blocked 200 ms (ten times), the reader slept at most "
                  "%llu time(s): it slept until woken, which its writer may never do", mode_name(f),
                  (unsigned long long)rep[0].sleeps);
    ck_assert_int_eq(rep[1].rc, -EPIPE);
    ck_assert_uint_eq(rep[1].errors, 0);
    ck_assert_uint_eq(rep[1].received, n_msg);
}
END_TEST

/* ===================================================================== */
/* What sleeping costs                                                     */
/* ===================================================================== */

/* (b) A reader blocked for a second on an empty queue makes fewer than 50
 * voluntary context switches (day 6's makes thousands: it naps 50 us at a
 * time). Counted by getrusage(), in the reader's own process. */
START_TEST(test_idle_reader_barely_wakes)
{
    spmc_test_sleep_ns = 0; /* the queue's own slices */
    const enum spmc_fanout f = _i ? SPMC_SHARE : SPMC_BROADCAST;
    const char *name = tu_name();
    ck_assert_int_eq(create_mode(&qw, name, f, 8), 0);
    int fds[2];
    tu_pipe(fds);
    pid_t p = tu_fork();
    if (p == 0)
        reader_child(name, fds[1], NULL, 1, 0, 1 * SEC);
    tu_close(&fds[1]);
    struct report rep = read_report(fds[0], p);
    ck_assert_int_eq(rep.rc, -ETIMEDOUT);
    ck_assert_uint_eq(rep.received, 0);
    ck_assert_msg(rep.nvcsw < 50, "%s: an idle reader made %ld voluntary context switches in 1 s",
                  mode_name(f), rep.nvcsw);
    ck_assert_uint_ge(rep.sleeps, 1);
}
END_TEST

/* The writer waiting a second for a reader that never comes, and for room
 * that a live reader never gives: a slice at a time (SPMC_SLICE_NS, then
 * SPMC_FULL_SLICE_NS), not thousands of naps. */
START_TEST(test_idle_writer_barely_wakes)
{
    spmc_test_sleep_ns = 0;
    const char *name = tu_name();
    ck_assert_int_eq(create_mode(&qw, name, SPMC_BROADCAST, 4), 0);
    struct rusage a, b, c;
    getrusage(RUSAGE_SELF, &a);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, 1 * SEC), -ETIMEDOUT);
    getrusage(RUSAGE_SELF, &b);
    long waiting = b.ru_nvcsw - a.ru_nvcsw;
    ck_assert_msg(waiting < 50, "waiting for readers: %ld voluntary context switches in 1 s",
                  waiting);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), 0); /* it never pops */
    unsigned char m[ELEM];
    for (uint64_t i = 0; i < 4; i++) {
        msg_fill(m, ELEM, i);
        ck_assert_int_eq(spmc_queue_try_push(&qw, m), 0);
    }
    getrusage(RUSAGE_SELF, &b);
    ck_assert_int_eq(spmc_queue_push(&qw, m, 1 * SEC), -ETIMEDOUT);
    getrusage(RUSAGE_SELF, &c);
    const long slices = (long)(SEC / SPMC_FULL_SLICE_NS), full = c.ru_nvcsw - b.ru_nvcsw;
    ck_assert_msg(full < 2 * slices + 50,
                  "waiting for room: %ld voluntary context switches in 1 s (%ld slices)", full,
                  slices);
}
END_TEST

static Suite *sleep_suite(void)
{
    Suite *s = suite_create("sleep " SPMC_DAY);
    TCase *tc = tcase_create("cycles");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_broadcast_sleep_wake_cycles);
    tcase_add_test(tc, test_share_sleep_wake_cycles);
    tcase_add_loop_test(tc, test_broadcast_lock_step, 0, 4);
    tcase_add_loop_test(tc, test_share_lock_step, 0, 4);
    tcase_add_test(tc, test_broadcast_full_speed_stream);
    tcase_add_test(tc, test_share_full_speed_stream);
    tcase_add_test(tc, test_broadcast_ping_pong_asleep);
    tcase_add_test(tc, test_share_ping_pong_asleep);
    suite_add_tcase(s, tc);

    tc = tcase_create("wakes");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_loop_test(tc, test_destroy_wakes_sleeping_readers, 0, 2);
    tcase_add_loop_test(tc, test_sigkill_of_the_writer_ends_the_sleep, 0, 2);
    tcase_add_loop_test(tc, test_reader_killed_asleep_is_uncounted, 0, 2);
    tcase_add_test(tc, test_share_sleeper_delivers_what_a_leaver_left);
    tcase_add_test(tc, test_share_sleeper_delivers_what_killed_readers_left);
    tcase_add_loop_test(tc, test_scribbled_futex_words_cost_a_slice_at_most, 0, 2);
    tcase_add_loop_test(tc, test_reader_that_may_not_send_barriers_naps, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("cost");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_idle_reader_barely_wakes, 0, 2);
    tcase_add_test(tc, test_idle_writer_barely_wakes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(sleep_suite(), "check_sleep");
}
