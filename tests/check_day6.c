/* check_day6.c - what day 6 adds: peers that die with SIGKILL or stop,
 * stale, live, half-made and foreign segments at creation, a full
 * /dev/shm, permissions, the stats call. Real processes throughout; no
 * timing thresholds (Check's per-test timeouts bound waits). Crash points
 * are in check_crash.c, PID namespaces and friends in check_liveness.c. */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "common.h"
#include "test_util.h"

#include <sched.h>
#include <stdalign.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#define ELEM 64u
#define MS 1000000ll
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

static int create_mode(struct spmc_queue *q, const char *name, enum spmc_fanout f,
                       size_t cap, unsigned perm)
{
    struct spmc_options o = {.fanout = f, .max_readers = 4, .perm = perm};
    return spmc_queue_create_opts(q, name, ELEM, cap, &o);
}

static void push_seq_at(struct spmc_queue *q, uint64_t seq, const char *file, int line)
{
    unsigned char m[ELEM];
    msg_fill(m, ELEM, seq);
    tu_assert_int_at(file, line, spmc_queue_push(q, m, 30 * SEC), ==, 0);
}
#define push_seq(q, seq) push_seq_at((q), (seq), __FILE__, __LINE__)

/* Kill @p pid with SIGKILL and reap it: from now on it is verifiably gone. */
static void kill_and_reap_at(pid_t pid, const char *file, int line)
{
    tu_assert_int_at(file, line, kill(pid, SIGKILL), ==, 0);
    int status = tu_wait_at(pid, IO_TIMEOUT_MS, file, line);
    tu_assert_true_at(file, line, WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}
#define kill_and_reap(pid) kill_and_reap_at((pid), __FILE__, __LINE__)

/* A child that attaches and pops until told otherwise; it reports the
 * messages it got through @p fd (one uint64_t per message, then EOF). */
static void reader_child(const char *name, int fd, uint64_t stop_after, int die_silently)
{
    struct spmc_queue q;
    if (spmc_queue_attach(&q, name, ELEM, 0) != 0)
        _exit(10);
    unsigned char m[ELEM];
    uint64_t got = 0;
    int rc;
    while (got < stop_after && (rc = spmc_queue_pop(&q, m, 30 * SEC)) == 0) {
        uint64_t s = msg_intact(m, ELEM) ? msg_seq(m) : UINT64_MAX;
        if (write(fd, &s, sizeof s) != (ssize_t)sizeof s)
            _exit(11);
        got++;
    }
    if (die_silently) { /* hold what we took: stop here, the parent kills us */
        uint64_t done = UINT64_MAX - 1;
        if (write(fd, &done, sizeof done) != (ssize_t)sizeof done)
            _exit(12);
        for (;;)
            pause();
    }
    (void)spmc_queue_destroy(&q);
    _exit(0);
}

/* ===================================================================== */
/* Crashes                                                                 */
/* ===================================================================== */

START_TEST(test_broadcast_dead_consumer_does_not_stall_the_producer)
{
    const char *name = tu_name();
    ck_assert_int_eq(create_mode(&qw, name, SPMC_BROADCAST, 8, 0), 0);
    int slow[2], fast[2];
    tu_pipe(slow);
    tu_pipe(fast);
    /* The slow reader takes one message and then stops reading. */
    pid_t s = tu_fork();
    if (s == 0)
        reader_child(name, slow[1], 1, 1);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, 10 * SEC), 0);
    pid_t f = tu_fork();
    if (f == 0)
        reader_child(name, fast[1], UINT64_MAX, 0);
    tu_close(&slow[1]);
    tu_close(&fast[1]);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 2, 10 * SEC), 0);
    push_seq(&qw, 0);
    uint64_t v;
    ck_assert_uint_eq(tu_read_full(slow[0], &v, sizeof v, IO_TIMEOUT_MS), sizeof v);
    ck_assert_uint_eq(v, 0);
    ck_assert_uint_eq(tu_read_full(slow[0], &v, sizeof v, IO_TIMEOUT_MS), sizeof v);
    kill_and_reap(s); /* SIGKILL while it holds the writer back */
    const uint64_t n = 200; /* many laps of the 8-slot ring */
    for (uint64_t i = 1; i < n; i++)
        push_seq(&qw, i);
    struct spmc_stats st;
    ck_assert_int_eq(spmc_queue_stats(&qw, &st), 0);
    ck_assert_uint_ge(st.reaped, 1);
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    for (uint64_t i = 0; i < n; i++) { /* the survivor lost nothing, in order */
        ck_assert_uint_eq(tu_read_full(fast[0], &v, sizeof v, IO_TIMEOUT_MS), sizeof v);
        ck_assert_uint_eq(v, i);
    }
    ck_assert_uint_eq(tu_read_full(fast[0], &v, sizeof v, IO_TIMEOUT_MS), 0); /* then EOF */
    ck_assert(tu_exited_ok(tu_wait(f, IO_TIMEOUT_MS)));
}
END_TEST

START_TEST(test_share_dead_consumer_holds_nothing_back)
{
    /* A consumer that took five messages and then died: pop() returned
     * them, so they were its own, and it had handed their slots back at
     * once. The writer needs nothing from it; nothing is delivered again. */
    const char *name = tu_name();
    ck_assert_int_eq(create_mode(&qw, name, SPMC_SHARE, 8, 0), 0);
    for (uint64_t i = 0; i < 5; i++) /* waiting before any reader comes */
        push_seq(&qw, i);
    int held[2], rest[2];
    tu_pipe(held);
    tu_pipe(rest);
    pid_t d = tu_fork();
    if (d == 0) /* takes the five, then stops reading */
        reader_child(name, held[1], 5, 1);
    tu_close(&held[1]);
    uint64_t v;
    for (uint64_t i = 0; i < 5; i++) {
        ck_assert_uint_eq(tu_read_full(held[0], &v, sizeof v, IO_TIMEOUT_MS), sizeof v);
        ck_assert_uint_eq(v, i);
    }
    ck_assert_uint_eq(tu_read_full(held[0], &v, sizeof v, IO_TIMEOUT_MS), sizeof v);
    unsigned char m[ELEM];
    for (uint64_t i = 5; i < 13; i++) { /* the whole ring, while it still lives */
        msg_fill(m, ELEM, i);
        ck_assert_int_eq(spmc_queue_try_push(&qw, m), 0);
    }
    kill_and_reap(d);
    pid_t r = tu_fork();
    if (r == 0)
        reader_child(name, rest[1], UINT64_MAX, 0);
    tu_close(&rest[1]);
    const uint64_t n = 100;
    for (uint64_t i = 13; i < n; i++)
        push_seq(&qw, i);
    struct spmc_stats st;
    ck_assert_int_eq(spmc_queue_stats(&qw, &st), 0);
    ck_assert_uint_eq(st.redelivered, 0);
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    for (uint64_t i = 5; i < n; i++) {
        ck_assert_uint_eq(tu_read_full(rest[0], &v, sizeof v, IO_TIMEOUT_MS), sizeof v);
        ck_assert_uint_eq(v, i);
    }
    ck_assert_uint_eq(tu_read_full(rest[0], &v, sizeof v, IO_TIMEOUT_MS), 0); /* then EOF */
    ck_assert(tu_exited_ok(tu_wait(r, IO_TIMEOUT_MS)));
}
END_TEST

START_TEST(test_stopped_consumer_is_alive)
{
    /* SIGSTOP is not death: a stopped broadcast reader keeps its place and
     * holds the writer back for as long as it is stopped, and once
     * continued it gets every message. */
    const char *name = tu_name();
    ck_assert_int_eq(create_mode(&qw, name, SPMC_BROADCAST, 8, 0), 0);
    int fds[2];
    tu_pipe(fds);
    pid_t s = tu_fork();
    if (s == 0)
        reader_child(name, fds[1], UINT64_MAX, 0);
    tu_close(&fds[1]);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, 10 * SEC), 0);
    ck_assert_int_eq(kill(s, SIGSTOP), 0);
    int status;
    ck_assert_int_eq(waitpid(s, &status, WUNTRACED), s);
    ck_assert(WIFSTOPPED(status));
    for (uint64_t i = 0; i < 8; i++)
        push_seq(&qw, i);
    unsigned char m[ELEM];
    msg_fill(m, ELEM, 8);
    ck_assert_int_eq(spmc_queue_push(&qw, m, 300 * MS), -ETIMEDOUT); /* held back */
    struct spmc_stats st;
    ck_assert_int_eq(spmc_queue_stats(&qw, &st), 0);
    ck_assert_uint_eq(st.reaped, 0);
    ck_assert_uint_eq(st.readers, 1);
    ck_assert_int_eq(kill(s, SIGCONT), 0);
    const uint64_t n = 100;
    for (uint64_t i = 8; i < n; i++)
        push_seq(&qw, i);
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    uint64_t v;
    for (uint64_t i = 0; i < n; i++) {
        ck_assert_uint_eq(tu_read_full(fds[0], &v, sizeof v, IO_TIMEOUT_MS), sizeof v);
        ck_assert_uint_eq(v, i);
    }
    ck_assert(tu_exited_ok(tu_wait(s, IO_TIMEOUT_MS)));
}
END_TEST

START_TEST(test_dead_producer_is_reported_after_draining)
{
    const char *name = tu_name();
    const enum spmc_fanout modes[] = {SPMC_BROADCAST, SPMC_SHARE};
    for (int k = 0; k < 2; k++) {
        int fds[2];
        tu_pipe(fds);
        pid_t p = tu_fork();
        if (p == 0) { /* create, wait for the reader, push 10, die */
            struct spmc_queue q;
            if (create_mode(&q, name, modes[k], 16, 0) != 0)
                _exit(1);
            uint64_t ready = 1;
            if (write(fds[1], &ready, sizeof ready) != (ssize_t)sizeof ready ||
                spmc_queue_wait_readers(&q, 1, 30 * SEC) != 0)
                _exit(2);
            unsigned char m[ELEM];
            for (uint64_t i = 0; i < 10; i++) {
                msg_fill(m, ELEM, i);
                if (spmc_queue_push(&q, m, 30 * SEC) != 0)
                    _exit(3);
            }
            raise(SIGKILL);
        }
        uint64_t ready;
        ck_assert_uint_eq(tu_read_full(fds[0], &ready, sizeof ready, IO_TIMEOUT_MS),
                          sizeof ready);
        ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), 0);
        unsigned char m[ELEM];
        for (uint64_t i = 0; i < 10; i++) {
            ck_assert_int_eq(spmc_queue_pop(&qr, m, 30 * SEC), 0);
            ck_assert_uint_eq(msg_seq(m), i);
        }
        ck_assert_int_eq(spmc_queue_pop(&qr, m, 30 * SEC), -EOWNERDEAD);
        int status = tu_wait(p, IO_TIMEOUT_MS);
        ck_assert(WIFSIGNALED(status));
        ck_assert_int_eq(spmc_queue_destroy(&qr), 0);
        /* The dead producer could not unlink: a restart reclaims the name. */
        ck_assert_int_eq(create_mode(&qw, name, modes[k], 16, 0), 0);
        ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
        tu_close(&fds[0]);
        tu_close(&fds[1]);
    }
}
END_TEST

/* ===================================================================== */
/* Stale, live and foreign segments                                        */
/* ===================================================================== */

START_TEST(test_restart_over_a_stale_segment)
{
    const char *name = tu_name();
    pid_t p = tu_fork();
    if (p == 0) {
        struct spmc_queue q;
        _exit(create_mode(&q, name, SPMC_BROADCAST, 8, 0) == 0 ? 0 : 1);
        /* exits without destroy: the segment stays, its writer is gone */
    }
    ck_assert(tu_exited_ok(tu_wait(p, IO_TIMEOUT_MS)));
    ck_assert_int_gt(tu_segment_size(name), 0);
    int pid;
    ck_assert_int_eq(spmc_queue_owner(name, &pid), -ESRCH);
    ck_assert_int_eq(create_mode(&qw, name, SPMC_SHARE, 16, 0), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 16), 0);
    ck_assert_int_eq(qr.fanout, SPMC_SHARE); /* the new queue, not the old */
}
END_TEST

START_TEST(test_create_over_a_live_queue_is_refused)
{
    const char *name = tu_name();
    int fds[2];
    tu_pipe(fds);
    pid_t p = tu_fork();
    if (p == 0) {
        struct spmc_queue q;
        uint64_t ok = create_mode(&q, name, SPMC_BROADCAST, 8, 0) == 0;
        if (write(fds[1], &ok, sizeof ok) != (ssize_t)sizeof ok)
            _exit(1);
        for (;;)
            pause();
    }
    uint64_t ok;
    ck_assert_uint_eq(tu_read_full(fds[0], &ok, sizeof ok, IO_TIMEOUT_MS), sizeof ok);
    ck_assert_uint_eq(ok, 1);
    ck_assert_int_eq(create_mode(&qw, name, SPMC_BROADCAST, 8, 0), -EEXIST);
    int pid = 0;
    ck_assert_int_eq(spmc_queue_owner(name, &pid), 0);
    ck_assert_int_eq(pid, p);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 8), 0); /* untouched */
    kill_and_reap(p);
}
END_TEST

START_TEST(test_foreign_segment_is_left_alone)
{
    const char *name = tu_name();
    unsigned char junk[4096];
    memset(junk, 0x5a, sizeof junk);
    ck_assert_int_eq(tu_make_segment(name, sizeof junk, junk, sizeof junk), 0);
    ck_assert_int_eq(create_mode(&qw, name, SPMC_BROADCAST, 8, 0), -EEXIST);
    unsigned char back[4096];
    ck_assert_int_eq(tu_read_segment(name, back, sizeof back), (long)sizeof back);
    ck_assert_mem_eq(back, junk, sizeof junk);
    int pid;
    ck_assert_int_eq(spmc_queue_owner(name, &pid), -EPROTO);
}
END_TEST

START_TEST(test_fifo_in_dev_shm_is_not_a_queue)
{
    /* Anyone may make a FIFO in /dev/shm under a queue's name. Opening a
     * FIFO read-only blocks until a writer comes: spmc_queue_owner() (and
     * the spmc tool) must not wait for one. Each call below returning at
     * all is half the test (a hang is this test's timeout). */
    const char *name = tu_name();
    char path[128];
    snprintf(path, sizeof path, "/dev/shm%s", name);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    int pid = -1;
    ck_assert_int_eq(spmc_queue_owner(name, &pid), -EPROTO);
    ck_assert_int_eq(pid, -1);
    ck_assert_int_eq(create_mode(&qw, name, SPMC_BROADCAST, 8, 0), -EEXIST);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), -EPROTO);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISFIFO(st.st_mode)); /* left alone: not ours to remove */
}
END_TEST

START_TEST(test_segment_without_magic_is_never_removed)
{
    /* A creator that died between shm_open() and writing our magic left
     * an empty segment: it cannot be told from a stranger's, so create
     * refuses the name (whatever its age), attach says it is not a queue,
     * and the segment stays for its owner (or an administrator) to remove. */
    const char *name = tu_name();
    ck_assert_int_eq(tu_make_segment(name, 0, NULL, 0), 0);
    ck_assert_int_eq(create_mode(&qw, name, SPMC_BROADCAST, 8, 0), -EEXIST);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), -EPROTO);
    int pid;
    ck_assert_int_eq(spmc_queue_owner(name, &pid), -EPROTO);
    ck_assert_int_eq(tu_segment_size(name), 0);
}
END_TEST

START_TEST(test_other_version_is_left_alone)
{
    /* Our magic, another layout version, no writer's lock: perhaps a live
     * queue of another day's code, which keeps no lock. Never removed. */
    const char *name = tu_name(), *copy = tu_name();
    ck_assert_int_eq(create_mode(&qw, name, SPMC_BROADCAST, 8, 0), 0);
    static alignas(64) unsigned char snap[1 << 16];
    long size = tu_read_segment(name, snap, sizeof snap);
    ck_assert_int_gt(size, 0);
    ((struct spmc_shm_header *)snap)->version = SPMC_VERSION - 1;
    ck_assert_int_eq(tu_make_segment(copy, (size_t)size, snap, (size_t)size), 0);
    struct spmc_queue other;
    ck_assert_int_eq(create_mode(&other, copy, SPMC_BROADCAST, 8, 0), -EEXIST);
    ck_assert_int_eq(tu_segment_size(copy), size);
}
END_TEST

START_TEST(test_live_creator_still_writing_is_waited_for)
{
    /* A creator that holds the writer's lock (byte 0 of the segment, see
     * the header) but has not published the header yet is alive: attach
     * says "try again" (-ETIMEDOUT), create keeps off. Once it is dead,
     * the half-made segment is no queue (-EPROTO). */
    const char *name = tu_name();
    int fds[2];
    tu_pipe(fds);
    pid_t c = tu_fork();
    if (c == 0) {
        int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
        uint64_t ok = fd >= 0 && fcntl(fd, F_OFD_SETLK, &fl) == 0 &&
                      ftruncate(fd, sizeof(struct spmc_shm_header)) == 0;
        if (write(fds[1], &ok, sizeof ok) != (ssize_t)sizeof ok)
            _exit(1);
        for (;;)
            pause();
    }
    uint64_t ok;
    ck_assert_uint_eq(tu_read_full(fds[0], &ok, sizeof ok, IO_TIMEOUT_MS), sizeof ok);
    ck_assert_uint_eq(ok, 1);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), -ETIMEDOUT);
    ck_assert_int_eq(create_mode(&qw, name, SPMC_BROADCAST, 8, 0), -EEXIST);
    kill_and_reap(c);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), -EPROTO);
}
END_TEST

START_TEST(test_destroy_leaves_a_newer_queue_alone)
{
    /* Someone removed our name and made a new queue under it: our destroy
     * must not remove theirs. */
    const char *name = tu_name();
    ck_assert_int_eq(create_mode(&qw, name, SPMC_BROADCAST, 8, 0), 0);
    ck_assert_int_eq(shm_unlink(name), 0);
    struct spmc_queue newer;
    ck_assert_int_eq(create_mode(&newer, name, SPMC_SHARE, 8, 0), 0);
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 8), 0);
    ck_assert_int_eq(qr.fanout, SPMC_SHARE);
    ck_assert_int_eq(spmc_queue_destroy(&newer), 0);
}
END_TEST

/* ===================================================================== */
/* Resources and permissions                                               */
/* ===================================================================== */

START_TEST(test_other_user_cannot_attach_by_default)
{
    if (geteuid() != 0) {
        fprintf(stderr, "skipped: switching users needs root\n");
        return;
    }
    const char *priv = tu_name(), *group = tu_name();
    ck_assert_int_eq(create_mode(&qw, priv, SPMC_BROADCAST, 8, 0), 0);
    struct spmc_queue g;
    ck_assert_int_eq(create_mode(&g, group, SPMC_BROADCAST, 8, 0660), 0);
    pid_t p = tu_fork();
    if (p == 0) { /* nobody, but in our group */
        if (setgid(getgid()) != 0 || setuid(65534) != 0)
            _exit(77);
        struct spmc_queue q;
        int denied = spmc_queue_attach(&q, priv, ELEM, 0) == -EACCES;
        int allowed = spmc_queue_attach(&q, group, ELEM, 0) == 0;
        _exit(denied && allowed ? 0 : 1);
    }
    int status = tu_wait(p, IO_TIMEOUT_MS);
    (void)spmc_queue_destroy(&g);
    ck_assert_msg(tu_exited_ok(status), "permissions: %s", tu_status_str(status));
}
END_TEST

START_TEST(test_bad_permissions_are_refused)
{
    ck_assert_int_eq(create_mode(&qw, tu_name(), SPMC_BROADCAST, 8, 01777), -EINVAL);
}
END_TEST

START_TEST(test_reader_whose_entry_was_taken_returns_no_message)
{
    /* A broken peer frees a live broadcast reader's entry (as a reaper that
     * judged it dead wrongly would): the writer then no longer waits for
     * it and may overwrite what it copies. The reader must say -EPROTO,
     * never return a message that may be torn. */
    const char *name = tu_name();
    ck_assert_int_eq(create_mode(&qw, name, SPMC_BROADCAST, 8, 0), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 8), 0);
    push_seq(&qw, 0);
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), 0); /* the control */
    push_seq(&qw, 1);
    _Atomic uint64_t *word = &qr.entry->word; /* as the peer would, in the segment */
    atomic_store(word, atomic_load(word) & ~(uint64_t)3); /* SPMC_ENTRY_FREE */
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EPROTO);
}
END_TEST

/* ===================================================================== */
/* Looking at a queue                                                      */
/* ===================================================================== */

/* A dead reader's entry whose `held` names a message beyond head, and
 * that slot's word says "taken over by this entry": a peer's scribble, no
 * message. The reader that gets the entry must not spend its looks on it
 * (each look used to retry it many thousand times and never give up): it
 * takes the messages in the queue. */
START_TEST(test_scribbled_held_beyond_head_is_no_message)
{
    const char *name = tu_name();
    struct spmc_options o = {.fanout = SPMC_SHARE, .max_readers = 1};
    ck_assert_int_eq(spmc_queue_create_opts(&qw, name, ELEM, 16, &o), 0);
    int fds[2];
    tu_pipe(fds);
    pid_t c = tu_fork();
    if (c == 0) { /* takes entry 0, then is killed */
        struct spmc_queue q;
        if (spmc_queue_attach(&q, name, ELEM, 0) != 0 || write(fds[1], "a", 1) != 1)
            _exit(10);
        pause();
        _exit(11);
    }
    char x;
    ck_assert_uint_eq(tu_read_full(fds[0], &x, 1, IO_TIMEOUT_MS), 1);
    kill_and_reap(c);
    for (uint64_t s = 0; s < 3; s++)
        push_seq(&qw, s);
    const uint64_t beyond = 3 + 5; /* head is 3 */
    atomic_store(&qw.readers[0].held, beyond);
    atomic_store(&qw.words[beyond & 15], (1ull << 63) | (beyond + 1)); /* "taken by entry 0" */
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), 0); /* the dead entry, the only one */
    unsigned char m[ELEM];
    for (uint64_t s = 0; s < 3; s++) {
        ck_assert_int_eq(spmc_queue_pop(&qr, m, 30 * SEC), 0);
        ck_assert_uint_eq(msg_seq(m), s);
    }
    tu_close(&fds[0]);
    tu_close(&fds[1]);
}
END_TEST

/* The hand-back word of the slot the writer needs next holds a value no
 * queue writes there: a peer scribbled over it. No reader would ever hand
 * that slot back, so the push fails with -EPROTO rather than waiting out
 * its timeout; the messages already pushed are all still delivered, in
 * order, and the readers' hand-back puts the word right again. Two values:
 * a link five laps on, and a take-over marker on the right message naming
 * entry 1000 of a table of 4. */
START_TEST(test_scribbled_hand_back_word_fails_the_push)
{
    const char *name = tu_name();
    const uint64_t cap = 16;
    const uint64_t scribbles[2] = {6 * cap, (1ull << 63) | (1000ull << 52) | 1};
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(create_mode(&qw, name, SPMC_SHARE, cap, 0), 0);
        for (uint64_t s = 0; s < cap; s++)
            push_seq(&qw, s);
        atomic_store(&qw.words[0], scribbles[k]); /* the slot of message cap */
        unsigned char m[ELEM];
        msg_fill(m, ELEM, cap);
        ck_assert_int_eq(spmc_queue_push(&qw, m, 20 * SEC), -EPROTO);
        ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), 0);
        for (uint64_t s = 0; s < cap; s++) {
            ck_assert_int_eq(spmc_queue_pop(&qr, m, 30 * SEC), 0);
            ck_assert(msg_intact(m, ELEM));
            ck_assert_uint_eq(msg_seq(m), s);
        }
        ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN);
        push_seq(&qw, cap); /* handed back: the slot is free again */
        ck_assert_int_eq(spmc_queue_pop(&qr, m, 30 * SEC), 0);
        ck_assert(msg_intact(m, ELEM));
        ck_assert_uint_eq(msg_seq(m), cap);
        ck_assert_int_eq(spmc_queue_destroy(&qr), 0);
        ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    }
}
END_TEST

/* A broadcast reader has caught up and waits; a peer scribbles over its
 * cursor, a lap back. The writer, which never passes a reader's cursor,
 * finds the ring full and waits for that cursor to move, while the reader
 * waits for a message: each would wait for the other for ever. The
 * reader's next check of its peers, which a waiting reader makes every so
 * many looks, stores its cursor again, and the stream goes on, every
 * message delivered in order. */
START_TEST(test_scribbled_cursor_of_a_waiting_reader_is_put_right)
{
    const char *name = tu_name();
    const uint64_t cap = 16;
    ck_assert_int_eq(create_mode(&qw, name, SPMC_BROADCAST, cap, 0), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), 0);
    unsigned char m[ELEM];
    for (uint64_t s = 0; s < cap; s++)
        push_seq(&qw, s);
    for (uint64_t s = 0; s < cap; s++) {
        ck_assert_int_eq(spmc_queue_pop(&qr, m, 30 * SEC), 0);
        ck_assert_uint_eq(msg_seq(m), s);
    }
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN); /* caught up: cursor cap */
    atomic_store(&qr.entry->cursor, 0); /* the scribble: a lap back */
    msg_fill(m, ELEM, cap);
    ck_assert_int_eq(spmc_queue_try_push(&qw, m), -EAGAIN); /* "full" */
    /* Both wait, as two processes would: the reader looks (and, every so
     * many looks, checks its peers and its cursor), the writer tries
     * again. The old code looped here until the test's timeout. */
    unsigned char out[ELEM];
    int rc;
    while ((rc = spmc_queue_try_push(&qw, m)) == -EAGAIN)
        ck_assert_int_eq(spmc_queue_try_pop(&qr, out), -EAGAIN);
    ck_assert_int_eq(rc, 0);
    for (uint64_t s = cap + 1; s < 2 * cap; s++)
        push_seq(&qw, s);
    for (uint64_t s = cap; s < 2 * cap; s++) {
        ck_assert_int_eq(spmc_queue_pop(&qr, m, 30 * SEC), 0);
        ck_assert(msg_intact(m, ELEM));
        ck_assert_uint_eq(msg_seq(m), s);
    }
}
END_TEST

START_TEST(test_stats_describe_the_queue)
{
    const char *name = tu_name();
    struct spmc_stats st;
    ck_assert_int_eq(spmc_queue_stats(&qw, &st), -EINVAL); /* not open */
    ck_assert_int_eq(create_mode(&qw, name, SPMC_SHARE, 16, 0), 0);
    ck_assert_int_eq(spmc_queue_stats(&qw, NULL), -EINVAL);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 16), 0);
    for (uint64_t i = 0; i < 3; i++)
        push_seq(&qw, i);
    ck_assert_int_eq(spmc_queue_stats(&qr, &st), 0);
    ck_assert_int_eq(st.fanout, SPMC_SHARE);
    ck_assert_uint_eq(st.elem_size, ELEM);
    ck_assert_uint_eq(st.capacity, 16);
    ck_assert_uint_eq(st.max_readers, 4);
    ck_assert_uint_eq(st.readers, 1);
    ck_assert_uint_eq(st.head, 3);
    ck_assert_int_eq(st.closed, 0);
    ck_assert_int_eq(st.writer_alive, 1);
    ck_assert_uint_eq(st.reaped, 0);
    ck_assert_uint_eq(st.redelivered, 0);
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    ck_assert_int_eq(spmc_queue_stats(&qr, &st), 0);
    ck_assert_int_eq(st.closed, 1);
    ck_assert_int_eq(st.writer_alive, 0);
}
END_TEST

/* ===================================================================== */
/* The suite                                                               */
/* ===================================================================== */

static Suite *day6_suite(void)
{
    Suite *s = suite_create("day6");
    TCase *tc = tcase_create("crashes");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_broadcast_dead_consumer_does_not_stall_the_producer);
    tcase_add_test(tc, test_share_dead_consumer_holds_nothing_back);
    tcase_add_test(tc, test_stopped_consumer_is_alive);
    tcase_add_test(tc, test_dead_producer_is_reported_after_draining);
    suite_add_tcase(s, tc);

    tc = tcase_create("segments");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_restart_over_a_stale_segment);
    tcase_add_test(tc, test_create_over_a_live_queue_is_refused);
    tcase_add_test(tc, test_foreign_segment_is_left_alone);
    tcase_add_test(tc, test_segment_without_magic_is_never_removed);
    tcase_add_test(tc, test_fifo_in_dev_shm_is_not_a_queue);
    tcase_add_test(tc, test_other_version_is_left_alone);
    tcase_add_test(tc, test_live_creator_still_writing_is_waited_for);
    tcase_add_test(tc, test_destroy_leaves_a_newer_queue_alone);
    suite_add_tcase(s, tc);

    tc = tcase_create("resources");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_other_user_cannot_attach_by_default);
    tcase_add_test(tc, test_bad_permissions_are_refused);
    tcase_add_test(tc, test_reader_whose_entry_was_taken_returns_no_message);
    tcase_add_test(tc, test_scribbled_held_beyond_head_is_no_message);
    tcase_add_test(tc, test_scribbled_hand_back_word_fails_the_push);
    tcase_add_test(tc, test_scribbled_cursor_of_a_waiting_reader_is_put_right);
    tcase_add_test(tc, test_stats_describe_the_queue);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(day6_suite(), "check_day6");
}
