/* check_crash.c - every crash point, every way to die: the queue is built
 * with -DSPMC_CRASH_POINTS (the Makefile's build/crash/dayN/spmc_queue.o),
 * which calls spmc_crash_hook at each step of create, reclaim, attach,
 * push, pop, reap, destroy and (day 7 on) sleep. Each test runs real processes (a writer and
 * two or three readers) and arms one of them so that it raises SIGKILL, or
 * SIGSTOP, at the chosen hit of the chosen point. Then it checks what the
 * queue promises:
 *
 * - the survivors go on: the writer pushes everything, readers end with
 *   end of stream (or -EOWNERDEAD when the writer died without closing);
 * - every message is accounted for: a broadcast survivor gets every
 *   message in order; in work-sharing each message is returned by pop()
 *   exactly once (a message whose reader died before handing its slot
 *   back is delivered again; one it had finished copying out when it died
 *   is counted as its own, from its in-flight buffer);
 * - a stopped process is alive: nothing it holds is taken from it, and
 *   once continued it finishes normally; nothing is reaped when nobody died;
 * - no reader-table entry is lost for good: afterwards, every entry not
 *   held by a live reader can be attached to;
 * - nothing is left in /dev/shm: a dead writer's queue is reclaimed by the
 *   next create; a segment without our magic is never removed by us.
 *
 * No timing thresholds: the holds below only give a wrong reaping a chance
 * to happen; the deadlines only stop a hung child. */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "common.h"
#include "test_util.h"

#include <stdalign.h>

#ifndef SPMC_CRASH_POINTS
#error "check_crash.c needs the queue built with -DSPMC_CRASH_POINTS"
#endif

#if SPMC_VERSION >= 8
/* Records of 3 slots in a ring of 8: two records, then 2 slots of padding,
 * every lap; a record that does not fill its last slot. */
#define ELEM 150u
#define PER_LAP 2u /* records a lap of the ring holds */
#else
#define ELEM 64u
#define PER_LAP CAP
#endif
#define CAP 8u
#define MAXR 4u
#define N_MSG 300u
#define SEC 1000000000ll
#define STUCK_NS (30 * SEC)
#define IO_TIMEOUT_MS 60000u
#define HOLD_MS 300u /* how long a stopped process stays stopped */

/* ===================================================================== */
/* What the processes report, in memory shared with the test              */
/* ===================================================================== */

enum { NOT_YET = 1 }; /* a return code no call returns */

struct reader_board {
    _Atomic int attach_rc, end_rc;
    _Atomic uint64_t received, errors, first, last_recorded;
    _Atomic uint64_t reaped, redelivered; /* spmc_queue_stats() at the end */
    alignas(64) unsigned char inflight[ELEM]; /* pop() copies straight here */
    _Atomic unsigned char seen[N_MSG];
};

struct board {
    _Atomic int fired[3]; /* one armed point fires once per run, whoever reaches it first */
    _Atomic int create_rc, writer_rc;
    _Atomic uint64_t pushed;
    _Atomic uint64_t reaped, redelivered;
    _Atomic int hold; /* readers 1 and 2 wait after attaching while it is set */
    _Atomic int after_start; /* reader 0 pops only once the writer has seen every reader */
    _Atomic int started;     /* the writer has */
    struct reader_board r[3];
};

static struct board *bd;

static void board_reset(void)
{
    memset(bd, 0, sizeof *bd);
    atomic_store(&bd->create_rc, NOT_YET);
    atomic_store(&bd->writer_rc, NOT_YET);
    for (int k = 0; k < 3; k++) {
        atomic_store(&bd->r[k].attach_rc, NOT_YET);
        atomic_store(&bd->r[k].end_rc, NOT_YET);
        atomic_store(&bd->r[k].last_recorded, UINT64_MAX);
    }
}

/* ===================================================================== */
/* The hook: raise a signal at the n-th hit of one point                   */
/* ===================================================================== */

struct armed {
    const char *point;
    int hit, sig, flag, hits;
};
static struct armed armed[2]; /* a process may be armed at two points */

static void crash_hook(const char *point)
{
    for (int k = 0; k < 2; k++) {
        struct armed *a = &armed[k];
        if (a->point != NULL && strcmp(point, a->point) == 0 && ++a->hits == a->hit &&
            atomic_exchange(&bd->fired[a->flag], 1) == 0)
            raise(a->sig);
    }
}

/* Arm this process: raise @p sig at the @p hit-th pass through @p point,
 * unless another process armed with the same @p flag got there first
 * (flags 0 to 2; a second call arms a second point). */
static void arm_flag(const char *point, int hit, int sig, int flag)
{
    struct armed *a = armed[0].point == NULL ? &armed[0] : &armed[1];
    *a = (struct armed){point, hit, sig, flag, 0};
    spmc_crash_hook = crash_hook;
}

static void arm(const char *point, int hit, int sig)
{
    arm_flag(point, hit, sig, 1);
}

/* ===================================================================== */
/* The processes                                                           */
/* ===================================================================== */

static void writer_child(const char *name, enum spmc_fanout fanout, unsigned wait_for,
                         int go_fd)
{
    struct spmc_queue q;
    struct spmc_options o = {.fanout = fanout, .max_readers = MAXR};
    int rc = spmc_queue_create_opts(&q, name, ELEM, CAP, &o);
    atomic_store(&bd->create_rc, rc);
    if (rc != 0)
        _exit(1);
    rc = spmc_queue_wait_readers(&q, wait_for, STUCK_NS);
    atomic_store(&bd->started, 1);
    unsigned char m[ELEM];
    for (uint64_t s = 0; s < N_MSG && rc == 0; s++) {
        msg_fill(m, ELEM, s);
        rc = spmc_queue_push(&q, m, STUCK_NS);
        if (rc == 0)
            atomic_store(&bd->pushed, s + 1);
    }
    if (rc != 0) {
        atomic_store(&bd->writer_rc, rc);
        _exit(2);
    }
    char go;
    while (read(go_fd, &go, 1) < 0 && errno == EINTR)
        ;
    struct spmc_stats st;
    if (spmc_queue_stats(&q, &st) == 0) {
        atomic_store(&bd->reaped, st.reaped);
        atomic_store(&bd->redelivered, st.redelivered);
    }
    rc = spmc_queue_destroy(&q);
    atomic_store(&bd->writer_rc, rc);
    _exit(rc == 0 ? 0 : 3);
}

static void reader_child(const char *name, unsigned k, int share)
{
    struct reader_board *r = &bd->r[k];
    struct spmc_queue q;
    int rc = spmc_queue_attach(&q, name, ELEM, CAP);
    atomic_store(&r->attach_rc, rc);
    if (rc != 0)
        _exit(1);
    /* Readers 1 and 2 until reader 0 has reached its point, reader 0 until
     * the writer has seen them all, if the run says so. */
    _Atomic int *until_clear = k > 0 ? &bd->hold : NULL, *until_set = k == 0 ? &bd->started : NULL;
    if (k == 0 && !atomic_load(&bd->after_start))
        until_set = NULL;
    uint64_t until = tu_now_ns() + (uint64_t)IO_TIMEOUT_MS * 1000000u;
    while (((until_clear != NULL && atomic_load(until_clear)) ||
            (until_set != NULL && !atomic_load(until_set))) &&
           tu_now_ns() < until)
        tu_sleep_ms(1);
    uint64_t n = 0, last = 0;
    while ((rc = spmc_queue_pop(&q, r->inflight, STUCK_NS)) == 0) {
        uint64_t s = msg_seq(r->inflight);
        if (!msg_intact(r->inflight, ELEM) || s >= N_MSG || (!share && n > 0 && s != last + 1))
            atomic_fetch_add(&r->errors, 1);
        else
            atomic_fetch_add(&r->seen[s], 1);
        if (n == 0)
            atomic_store(&r->first, s);
        last = s;
        atomic_store(&r->last_recorded, s);
        atomic_store(&r->received, ++n);
        if (share) { /* "work" on it, so that every reader gets its share */
            struct timespec work = {0, 50000};
            nanosleep(&work, NULL);
        }
    }
    struct spmc_stats st;
    if (spmc_queue_stats(&q, &st) == 0) {
        atomic_store(&r->reaped, st.reaped);
        atomic_store(&r->redelivered, st.redelivered);
    }
    atomic_store(&r->end_rc, rc);
    (void)spmc_queue_destroy(&q);
    _exit(0);
}

/* ===================================================================== */
/* Watching them                                                           */
/* ===================================================================== */

enum how { KILL, STOP_CONT, STOP_KILL };
static const char *const how_name[] = {"SIGKILL", "SIGSTOP then SIGCONT", "SIGSTOP then SIGKILL"};

/* Wait until one of @p pids (0 entries skipped) is killed by SIGKILL or
 * stopped by SIGSTOP (its own raise() at the armed point); returns its
 * index. Fails the test if one exits otherwise, or nothing happens. */
static int wait_for_victim_at(const pid_t *pids, int n, const char *point, const char *file,
                              int line)
{
    uint64_t deadline = tu_now_ns() + (uint64_t)IO_TIMEOUT_MS * 1000000u;
    for (;;) {
        for (int i = 0; i < n; i++) {
            if (pids[i] <= 0)
                continue;
            int status;
            pid_t r = waitpid(pids[i], &status, WNOHANG | WUNTRACED);
            if (r != pids[i])
                continue;
            if (WIFSTOPPED(status) && WSTOPSIG(status) == SIGSTOP)
                return i;
            if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
                tu_forget_pid(pids[i]);
                return i;
            }
            tu_forget_pid(pids[i]);
            tu_abort_at(file, line,
                        "%s: a process ended without reaching it (%s; writer rc %d, pushed %llu;"
                        " readers' attach rc %d %d %d, end rc %d %d %d, received %llu %llu %llu)",
                        point, tu_status_str(status), atomic_load(&bd->writer_rc),
                        (unsigned long long)atomic_load(&bd->pushed),
                        atomic_load(&bd->r[0].attach_rc), atomic_load(&bd->r[1].attach_rc),
                        atomic_load(&bd->r[2].attach_rc), atomic_load(&bd->r[0].end_rc),
                        atomic_load(&bd->r[1].end_rc), atomic_load(&bd->r[2].end_rc),
                        (unsigned long long)atomic_load(&bd->r[0].received),
                        (unsigned long long)atomic_load(&bd->r[1].received),
                        (unsigned long long)atomic_load(&bd->r[2].received));
        }
        tu_assert_at(file, line, tu_now_ns() < deadline, "%s was never reached", point);
        tu_sleep_ms(1);
    }
}
#define wait_for_victim(pids, n, point) wait_for_victim_at((pids), (n), (point), __FILE__, __LINE__)

/* Deal with a victim that is stopped (or dead already); 1 if it is dead now. */
static int finish_victim_at(pid_t pid, enum how how, const char *file, int line)
{
    if (how == KILL)
        return 1;
    tu_sleep_ms(HOLD_MS); /* long enough for a wrong reaping to happen */
    if (how == STOP_CONT) {
        tu_assert_int_at(file, line, kill(pid, SIGCONT), ==, 0);
        return 0;
    }
    tu_assert_int_at(file, line, kill(pid, SIGKILL), ==, 0);
    int status = tu_wait_at(pid, IO_TIMEOUT_MS, file, line);
    tu_assert_true_at(file, line, WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    return 1;
}
#define finish_victim(pid, how) finish_victim_at((pid), (how), __FILE__, __LINE__)

/* What the create of a child returned, once it has; fails with @p what
 * if it never does. */
static int create_result_at(const char *what, const char *file, int line)
{
    uint64_t deadline = tu_now_ns() + (uint64_t)IO_TIMEOUT_MS * 1000000u;
    while (atomic_load(&bd->create_rc) == NOT_YET)
        tu_assert_at(file, line, tu_now_ns() < deadline, "%s", what);
    return atomic_load(&bd->create_rc);
}
#define create_result(what) create_result_at((what), __FILE__, __LINE__)

static void wait_until_pushed_all_or_dead_at(pid_t writer, int writer_dead, const char *file,
                                             int line)
{
    uint64_t deadline = tu_now_ns() + (uint64_t)IO_TIMEOUT_MS * 1000000u;
    while (!writer_dead && atomic_load(&bd->pushed) < N_MSG) {
        tu_assert_at(file, line, atomic_load(&bd->writer_rc) == NOT_YET, "the writer failed: rc %d",
                     atomic_load(&bd->writer_rc));
        tu_assert_at(file, line, tu_now_ns() < deadline, "the writer is stuck at %llu of %u",
                     (unsigned long long)atomic_load(&bd->pushed), N_MSG);
        tu_sleep_ms(1);
    }
    (void)writer;
}
#define wait_until_pushed_all_or_dead(writer, writer_dead)                                         \
    wait_until_pushed_all_or_dead_at((writer), (writer_dead), __FILE__, __LINE__)

/* No entry lost for good: attach until the table is full; every entry not
 * held by one of @p live readers must be ours. Then leave again. A dead
 * reader's entry that a survivor is reaping at this moment is locked, so
 * it looks held: a count short of the goal is tried again until the
 * deadline; a count above it (an entry given twice) fails at once. */
static void assert_free_entries_at(const char *name, unsigned live, const char *file, int line)
{
    static struct spmc_queue extra[MAXR + 1];
    const uint64_t deadline = tu_now_ns() + (uint64_t)IO_TIMEOUT_MS * 1000000u;
    for (;;) {
        unsigned got = 0;
        int rc;
        while (got <= MAXR && (rc = spmc_queue_attach(&extra[got], name, ELEM, CAP)) == 0)
            got++;
        tu_assert_at(file, line, got <= MAXR - live,
                     "attached %u more readers with %u live; at most %u can be free", got, live,
                     MAXR - live);
        tu_assert_int_at(file, line, rc, ==, -EUSERS);
        for (unsigned k = 0; k < got; k++)
            tu_assert_int_at(file, line, spmc_queue_destroy(&extra[k]), ==, 0);
        if (got == MAXR - live)
            return;
        tu_assert_at(file, line, tu_now_ns() < deadline,
                     "attached %u more readers with %u live; expected %u", got, live, MAXR - live);
        tu_sleep_ms(5);
    }
}
#define assert_free_entries(name, live) assert_free_entries_at((name), (live), __FILE__, __LINE__)

/* ===================================================================== */
/* The checks after a run                                                  */
/* ===================================================================== */

/* Work-sharing: each message 0..published-1 returned exactly once. A reader
 * killed with a message in its in-flight buffer that it had not recorded
 * got that message from pop() (or was copying it): it counts as that
 * reader's if, and only if, nobody else recorded it. */
static void assert_share_exactly_once_at(uint64_t published, const int *dead, unsigned readers,
                                         const char *file, int line)
{
    for (uint64_t s = 0; s < N_MSG; s++) {
        unsigned count = 0;
        for (unsigned k = 0; k < readers; k++)
            count += atomic_load(&bd->r[k].seen[s]);
        for (unsigned k = 0; k < readers && count == 0; k++) {
            const struct reader_board *r = &bd->r[k];
            if (dead[k] && msg_intact(r->inflight, ELEM) && msg_seq(r->inflight) == s &&
                atomic_load(&r->last_recorded) != s)
                count = 1; /* it was delivered to the reader that died */
        }
        if (s < published)
            tu_assert_at(file, line, count == 1, "message %llu delivered %u times",
                         (unsigned long long)s, count);
        else
            tu_assert_at(file, line, count == 0,
                         "message %llu was never published but delivered %u times",
                         (unsigned long long)s, count);
    }
}
#define assert_share_exactly_once(published, dead, readers)                                        \
    assert_share_exactly_once_at((published), (dead), (readers), __FILE__, __LINE__)

/* The messages the writer published: every push that returned, and one
 * more if it died between publishing and returning (a reader has it). */
static uint64_t published_count_at(unsigned readers, const char *file, int line)
{
    uint64_t pushed = atomic_load(&bd->pushed), top = 0;
    for (unsigned k = 0; k < readers; k++) {
        for (uint64_t s = 0; s < N_MSG; s++)
            if (atomic_load(&bd->r[k].seen[s]) && s + 1 > top)
                top = s + 1;
        const struct reader_board *r = &bd->r[k];
        if (msg_intact(r->inflight, ELEM) && msg_seq(r->inflight) < N_MSG &&
            msg_seq(r->inflight) + 1 > top)
            top = msg_seq(r->inflight) + 1;
    }
    tu_assert_at(file, line, top == pushed || top == pushed + 1,
                 "readers saw %llu messages, %llu pushed", (unsigned long long)top,
                 (unsigned long long)pushed);
    return top;
}
#define published_count(readers) published_count_at((readers), __FILE__, __LINE__)

/* After the run, the name is gone; if a writer died before removing it,
 * the next create reclaims it (and then it is gone). */
static void assert_name_cleaned_up_at(const char *name, const char *file, int line)
{
    if (tu_segment_size(name) != -ENOENT) {
        struct spmc_queue q;
        tu_assert_int_at(file, line, spmc_queue_create(&q, name, ELEM, CAP), ==, 0);
        tu_assert_int_at(file, line, spmc_queue_destroy(&q), ==, 0);
    }
    tu_assert_int_at(file, line, tu_segment_size(name), ==, -ENOENT);
}
#define assert_name_cleaned_up(name) assert_name_cleaned_up_at((name), __FILE__, __LINE__)

/* ===================================================================== */
/* One run: a writer, readers, one armed process                           */
/* ===================================================================== */

/* REAPER: reader 0 dies holding a claim, then whichever of the writer and
 * readers 1 and 2 reaches the point first is the victim. REPUBLISHER: the
 * same, but only the writer is armed, and readers 1 and 2 wait until it
 * has reached the point: the writer, held back by the dead reader's claim,
 * republishes one of its messages, and is stopped or killed on the way. */
enum victim { WRITER, READER, REAPER, REPUBLISHER };

struct scenario {
    const char *point;
    enum victim victim;
    int hit;            /* which hit of the point */
    int after_go;       /* the point is reached only once the writer closes */
};

/* One scenario; returns what is left of its segment afterwards (-ENOENT:
 * nothing; a dead writer's queue has been reclaimed and removed). */
static long run_at(const struct scenario *sc, enum spmc_fanout fanout, enum how how,
                   const char *file, int line)
{
    const int share = fanout == SPMC_SHARE;
    const int sig = how == KILL ? SIGKILL : SIGSTOP;
    const int reap = sc->victim == REAPER || sc->victim == REPUBLISHER;
    const unsigned readers = reap ? 3 : 2;
    const int attach_point = strncmp(sc->point, "attach:", 7) == 0;
    const unsigned wait_for = sc->victim == READER && attach_point ? 1 : readers;
    const char *name = tu_name_at(file, line);
    board_reset();
    /* Work-sharing: a reader 0 that must reach a point on its way to or
     * through pop() could find every message taken by the others on a busy
     * machine; they wait after attaching until it has reached its point. */
    const int hold = share && !sc->after_go && (reap || sc->victim == READER);
    atomic_store(&bd->hold, hold);
    /* A reader stopped or killed at its first sleep must be so after the
     * writer has counted it, or the writer would wait for it in vain (or
     * start without the survivor, who would then miss messages). */
    atomic_store(&bd->after_start, sc->victim == READER && strcmp(sc->point, "pop:asleep") == 0);
    int go[2];
    tu_pipe_at(go, file, line);

    pid_t w = tu_fork_at(file, line);
    if (w == 0) {
        if (sc->victim == WRITER || reap)
            arm(sc->point, sc->hit, sig);
        writer_child(name, fanout, wait_for, go[0]);
    }
    tu_assert_int_at(file, line, create_result_at("the writer never created the queue", file, line),
                     ==, 0);

    /* Readers: in the reaping runs, reader 0 dies holding a message (share)
     * or holding the writer back (broadcast), so that someone reaps it; in
     * the others, reader 0 is the victim and reader 1 the survivor. */
    pid_t r[3] = {0, 0, 0};
    for (unsigned k = 0; k < readers; k++) {
        r[k] = tu_fork_at(file, line);
        if (r[k] == 0) {
            if (reap && k == 0) /* its first claim: a claim holds up to CAP
                                 * messages, and the others may take the
                                 * rest before it claims again */
                arm_flag(share ? "pop:claimed" : "pop:copied", share ? 1 : 3, SIGKILL, 0);
            else if ((sc->victim == REAPER && k > 0) || (sc->victim == READER && k == 0))
                arm(sc->point, sc->hit, sig);
            reader_child(name, k, share);
        }
    }
    int dead[3] = {0, 0, 0}, writer_dead = 0;
    if (reap) {
        const pid_t first[1] = {r[0]};
        (void)wait_for_victim_at(first, 1, share ? "pop:claimed" : "pop:copied", file, line);
        dead[0] = 1;
        if (sc->victim == REAPER)
            atomic_store(&bd->hold, 0);
    }
    pid_t candidates[3] = {0, 0, 0};
    if (sc->victim == WRITER)
        candidates[0] = w;
    else if (sc->victim == READER)
        candidates[0] = r[0];
    else if (sc->victim == REPUBLISHER)
        candidates[0] = w;
    else
        candidates[0] = w, candidates[1] = r[1], candidates[2] = r[2];

    if (sc->after_go) { /* the run first, then the victim */
        wait_until_pushed_all_or_dead_at(w, 0, file, line);
        tu_assert_int_at(file, line, write(go[1], "g", 1), ==, 1);
    }
    int v = wait_for_victim_at(candidates, 3, sc->point, file, line);
    const pid_t victim = candidates[v];
    atomic_store(&bd->hold, 0);
    if (how != KILL && victim == w && !sc->after_go) {
        tu_sleep_ms(HOLD_MS); /* a stopped writer is alive: no reader gives up */
        for (unsigned k = 0; k < readers; k++)
            if (!dead[k])
                tu_assert_at(file, line, atomic_load(&bd->r[k].end_rc) == NOT_YET,
                             "reader %u ended (rc %d) while the writer was only stopped", k,
                             atomic_load(&bd->r[k].end_rc));
    }
    int now_dead = finish_victim_at(victim, how, file, line);
    if (victim == w)
        writer_dead = now_dead;
    for (unsigned k = 0; k < readers; k++)
        if (victim == r[k])
            dead[k] = now_dead;

    if (!sc->after_go) {
        wait_until_pushed_all_or_dead_at(w, writer_dead, file, line);
        if (!writer_dead) {
            for (unsigned k = 0; k < readers; k++) { /* a continued joiner finishes joining */
                uint64_t until = tu_now_ns() + (uint64_t)IO_TIMEOUT_MS * 1000000u;
                while (!dead[k] && atomic_load(&bd->r[k].attach_rc) == NOT_YET)
                    tu_assert_at(file, line, tu_now_ns() < until, "reader %u never attached", k);
            }
            unsigned live = 0;
            for (unsigned k = 0; k < readers; k++)
                live += !dead[k] && atomic_load(&bd->r[k].attach_rc) == 0;
            assert_free_entries_at(name, live, file, line);
        }
        tu_assert_int_at(file, line, write(go[1], "g", 1), ==, 1);
    }
    for (unsigned k = 0; k < readers; k++)
        if (!dead[k])
            tu_assert_at(file, line, tu_exited_ok(tu_wait_at(r[k], IO_TIMEOUT_MS, file, line)),
                         "reader %u failed", k);
    if (!writer_dead)
        tu_assert_at(file, line, tu_exited_ok(tu_wait_at(w, IO_TIMEOUT_MS, file, line)),
                     "writer failed: rc %d", atomic_load(&bd->writer_rc));

    /* How the survivors ended: end of stream if the writer closed. */
    const int closed = !writer_dead || strncmp(sc->point, "destroy:", 8) == 0;
    const uint64_t published = published_count_at(readers, file, line);
    if (!writer_dead)
        tu_assert_uint_at(file, line, published, ==, N_MSG);
    uint64_t reaped = atomic_load(&bd->reaped);
    for (unsigned k = 0; k < readers; k++) {
        const struct reader_board *b = &bd->r[k];
        tu_assert_at(file, line, atomic_load(&b->errors) == 0, "reader %u: damaged or out of order",
                     k);
        if (dead[k] || atomic_load(&b->attach_rc) != 0)
            continue;
        tu_assert_at(file, line, atomic_load(&b->end_rc) == (closed ? -EPIPE : -EOWNERDEAD),
                     "reader %u ended with %d", k, atomic_load(&b->end_rc));
        if (atomic_load(&b->reaped) > reaped)
            reaped = atomic_load(&b->reaped);
        /* Broadcast: every message in order from the first one it got; a
         * reader that attached before the writer began gets them all. */
        const uint64_t got = atomic_load(&b->received), first = atomic_load(&b->first);
        const int late = sc->victim == READER && k == 0 && attach_point;
        if (!share)
            tu_assert_at(file, line,
                         got == (late ? (got ? published - first : 0) : published) &&
                             (late || got == 0 || first == 0),
                         "broadcast reader %u got %llu of %llu from %llu", k,
                         (unsigned long long)got, (unsigned long long)published,
                         (unsigned long long)first);
    }
    if (share)
        assert_share_exactly_once_at(published, dead, readers, file, line);
    if (how == STOP_CONT && !reap)
        tu_assert_at(file, line, reaped == 0, "%llu entries reaped though nobody died",
                     (unsigned long long)reaped);
    assert_name_cleaned_up_at(name, file, line);
    return tu_segment_size(name);
}
#define run(sc, fanout, how) run_at((sc), (fanout), (how), __FILE__, __LINE__)

/* ===================================================================== */
/* The scenarios                                                           */
/* ===================================================================== */

static const struct scenario broadcast_points[] = {
    {"attach:opened", READER, 1, 0},   {"attach:mapped", READER, 1, 0},
    {"attach:locked", READER, 1, 0},   {"attach:claimed", READER, 1, 0},
    {"attach:cursor", READER, 1, 0},   {"pop:copied", READER, 5, 0},
    {"destroy:freed", READER, 1, 1},   {"push:copied", WRITER, 20, 0},
    {"push:published", WRITER, 20, 0}, {"destroy:closed", WRITER, 1, 1},
    {"destroy:unlinked", WRITER, 1, 1}, {"reap:locked", REAPER, 1, 0},
    {"reap:freed", REAPER, 1, 0},
#if SPMC_VERSION >= 7
    {"pop:asleep", READER, 1, 0},      {"push:asleep", WRITER, 1, 0},
#endif
#if SPMC_VERSION >= 8
    {"push:padded", WRITER, 3, 0},
#endif
};

static const struct scenario share_points[] = {
    {"attach:opened", READER, 1, 0},   {"attach:mapped", READER, 1, 0},
    {"attach:locked", READER, 1, 0},   {"attach:claimed", READER, 1, 0},
    {"pop:hinted", READER, 2, 0},      {"pop:claimed", READER, 2, 0},
    {"pop:copied", READER, 5, 0},      {"pop:delivered", READER, 5, 0},
    {"destroy:freed", READER, 1, 1},   {"push:copied", WRITER, 20, 0},
    {"push:published", WRITER, 20, 0},
    {"destroy:closed", WRITER, 1, 1},  {"destroy:unlinked", WRITER, 1, 1},
    {"reap:locked", REAPER, 1, 0},     {"reap:slot", REAPER, 1, 0},
    {"reap:freed", REAPER, 1, 0},
    {"reap:republished", REPUBLISHER, 1, 0}, {"reap:slot", REPUBLISHER, 1, 0},
#if SPMC_VERSION >= 7
    {"pop:asleep", READER, 1, 0},      {"push:asleep", WRITER, 1, 0},
#endif
#if SPMC_VERSION >= 8
    {"push:padded", WRITER, 3, 0},     {"pop:padding", READER, 1, 0},
#endif
};

#define N_BROADCAST (int)(sizeof broadcast_points / sizeof broadcast_points[0])
#define N_SHARE (int)(sizeof share_points / sizeof share_points[0])

static long run_loop_at(int i, enum spmc_fanout fanout, const char *file, int line)
{
    const struct scenario *table = fanout == SPMC_SHARE ? share_points : broadcast_points;
    const int n = fanout == SPMC_SHARE ? N_SHARE : N_BROADCAST;
    const enum how how = (enum how)(i / n);
    fprintf(stderr, "  %-9s %-17s %s\n", fanout == SPMC_SHARE ? "share" : "broadcast",
            table[i % n].point, how_name[how]);
    return run_at(&table[i % n], fanout, how, file, line);
}
#define run_loop(i, fanout) run_loop_at((i), (fanout), __FILE__, __LINE__)

START_TEST(test_broadcast_crash_points)
{
    ck_assert_int_eq(run_loop(_i, SPMC_BROADCAST), -ENOENT); /* and nothing left */
}
END_TEST

START_TEST(test_share_crash_points)
{
    ck_assert_int_eq(run_loop(_i, SPMC_SHARE), -ENOENT); /* and nothing left */
}
END_TEST

/* A writer that waits for readers after one died holding a claim must not
 * free the dead reader's entry behind the claim's back: a new reader of
 * that entry would then look like the claim's live holder, and the message
 * would never come. Here the new reader inherits it and delivers it. */
START_TEST(test_share_wait_readers_after_a_death_with_a_claim)
{
    const char *name = tu_name();
    board_reset();
    struct spmc_queue w, r;
    struct spmc_options o = {.fanout = SPMC_SHARE, .max_readers = 2};
    ck_assert_int_eq(spmc_queue_create_opts(&w, name, ELEM, CAP, &o), 0);
    pid_t d = tu_fork();
    if (d == 0) {
        arm("pop:claimed", 1, SIGKILL);
        reader_child(name, 0, 1);
    }
    ck_assert_int_eq(spmc_queue_wait_readers(&w, 1, STUCK_NS), 0);
    unsigned char m[ELEM];
    msg_fill(m, ELEM, 0);
    ck_assert_int_eq(spmc_queue_push(&w, m, STUCK_NS), 0);
    const pid_t cands[1] = {d};
    (void)wait_for_victim(cands, 1, "pop:claimed");
    ck_assert_int_eq(spmc_queue_wait_readers(&w, 1, 100000000ll), -ETIMEDOUT); /* dead */
    ck_assert_int_eq(spmc_queue_attach(&r, name, ELEM, CAP), 0);
    uint64_t got = 0;
    for (uint64_t s = 1; s < 4 * CAP; s++) { /* laps over the claimed slot */
        msg_fill(m, ELEM, s);
        ck_assert_int_eq(spmc_queue_push(&w, m, STUCK_NS), 0);
        while (spmc_queue_try_pop(&r, m) == 0) {
            ck_assert(msg_intact(m, ELEM));
            got |= 1ull << msg_seq(m);
        }
    }
    while (spmc_queue_try_pop(&r, m) == 0)
        got |= 1ull << msg_seq(m);
    ck_assert_uint_eq(got, (1ull << (4 * CAP)) - 1); /* message 0 included, once each */
    ck_assert_int_eq(spmc_queue_destroy(&r), 0);
    ck_assert_int_eq(spmc_queue_destroy(&w), 0);
}
END_TEST

/* The writer looked at a dead reader's claim, then was held up before it
 * took that reader's lock. Meanwhile a new reader of the same entry
 * delivered that message (it inherits it) and died holding another. The
 * writer, resumed, must not free the entry: a claim still names it, and a
 * reader that then took the entry would look like that claim's live
 * holder, so the writer would wait for it for good. */
START_TEST(test_share_writer_resumed_with_an_old_look)
{
    const char *name = tu_name();
    board_reset();
    int go[2];
    tu_pipe(go);
    pid_t w = tu_fork();
    if (w == 0) { /* stopped with the old look; stopped again after message 4 */
        arm_flag("push:full", 1, SIGSTOP, 1);
        arm_flag("push:published", PER_LAP + 1, SIGSTOP, 2);
        struct spmc_queue q;
        /* One message per claim, so that each reader holds exactly the
         * message this scenario names. */
        struct spmc_options o = {.fanout = SPMC_SHARE, .max_readers = 1, .claim_max = 1};
        int rc = spmc_queue_create_opts(&q, name, ELEM, CAP, &o);
        atomic_store(&bd->create_rc, rc);
        if (rc != 0 || spmc_queue_wait_readers(&q, 1, STUCK_NS) != 0)
            _exit(1);
        unsigned char m[ELEM];
        for (uint64_t s = 0; s < 20 && rc == 0; s++) {
            msg_fill(m, ELEM, s);
            if ((rc = spmc_queue_push(&q, m, STUCK_NS)) == 0)
                atomic_store(&bd->pushed, s + 1);
        }
        atomic_store(&bd->writer_rc, rc);
        char c;
        while (read(go[0], &c, 1) < 0 && errno == EINTR)
            ;
        _exit(spmc_queue_destroy(&q) == 0 && rc == 0 ? 0 : 2);
    }
    ck_assert_int_eq(create_result("the writer never created the queue"), 0);
    pid_t d = tu_fork(); /* dies holding message 0 */
    if (d == 0) {
        arm_flag("pop:claimed", 1, SIGKILL, 0);
        reader_child(name, 0, 1);
    }
    const pid_t dw[1] = {d}, ww[1] = {w};
    (void)wait_for_victim(dw, 1, "pop:claimed");
    (void)wait_for_victim(ww, 1, "push:full"); /* the old look: claim of message 0 */
    pid_t n = tu_fork(); /* takes the dead entry: delivers message 0, dies holding 1 */
    if (n == 0) {
        arm_flag("pop:claimed", 1, SIGKILL, 0);
        atomic_store(&bd->fired[0], 0);
        reader_child(name, 1, 1);
    }
    const pid_t nw[1] = {n};
    (void)wait_for_victim(nw, 1, "pop:claimed");
    ck_assert_uint_eq(atomic_load(&bd->r[1].seen[0]), 1);
    ck_assert_int_eq(kill(w, SIGCONT), 0);
    (void)wait_for_victim(ww, 1, "push:published"); /* message PER_LAP is out */
    struct spmc_queue r;
    ck_assert_int_eq(spmc_queue_attach(&r, name, ELEM, CAP), 0); /* the one entry */
    ck_assert_int_eq(kill(w, SIGCONT), 0);
    unsigned char m[ELEM];
    uint64_t got = 0;
    int rc;
    while ((rc = spmc_queue_pop(&r, m, 10 * SEC)) == 0 && msg_seq(m) < 20) {
        ck_assert(msg_intact(m, ELEM));
        ck_assert_msg(!(got >> msg_seq(m) & 1), "message %llu twice",
                      (unsigned long long)msg_seq(m));
        got |= 1ull << msg_seq(m);
        if (got == (1ull << 20) - 2) /* all but message 0, which the dead one got */
            break;
    }
    ck_assert_msg(got == (1ull << 20) - 2, "got %#llx (rc %d), writer rc %d",
                  (unsigned long long)got, rc, atomic_load(&bd->writer_rc));
    ck_assert_int_eq(write(go[1], "g", 1), 1);
    ck_assert_int_eq(spmc_queue_pop(&r, m, 10 * SEC), -EPIPE);
    ck_assert_int_eq(spmc_queue_destroy(&r), 0);
    ck_assert(tu_exited_ok(tu_wait(w, IO_TIMEOUT_MS)));
}
END_TEST

/* ===================================================================== */
/* Creating and reclaiming                                                 */
/* ===================================================================== */

struct create_point {
    const char *point;
    int locked; /* the creator holds the writer's lock there */
    int magic;  /* our magic is in the segment there */
};

static const struct create_point create_points[] = {
    {"create:opened", 0, 0},   {"create:locked", 1, 0}, {"create:sized", 1, 0},
    {"create:reserved", 1, 0}, {"create:header", 1, 0}, {"create:magic", 1, 1},
};
#define N_CREATE (int)(sizeof create_points / sizeof create_points[0])

/* A creator that reports through the board and, if it succeeds, waits for
 * the go before it destroys its queue. */
static pid_t start_creator_at(const char *name, const char *point, int sig, int go_fd,
                              const char *file, int line)
{
    pid_t p = tu_fork_at(file, line);
    if (p == 0) {
        if (point != NULL)
            arm(point, 1, sig);
        struct spmc_queue q;
        int rc = spmc_queue_create(&q, name, ELEM, CAP);
        atomic_store(&bd->create_rc, rc);
        if (rc != 0)
            _exit(0);
        char go;
        while (read(go_fd, &go, 1) < 0 && errno == EINTR)
            ;
        _exit(spmc_queue_destroy(&q) == 0 ? 0 : 1);
    }
    return p;
}
#define start_creator(name, point, sig, go_fd)                                                     \
    start_creator_at((name), (point), (sig), (go_fd), __FILE__, __LINE__)

START_TEST(test_create_crash_points)
{
    const struct create_point *cp = &create_points[_i % N_CREATE];
    const enum how how = (enum how)(_i / N_CREATE);
    fprintf(stderr, "  create    %-17s %s\n", cp->point, how_name[how]);
    const char *name = tu_name();
    board_reset();
    int go[2];
    tu_pipe(go);
    pid_t c = start_creator(name, cp->point, how == KILL ? SIGKILL : SIGSTOP, go[0]);
    const pid_t cands[1] = {c};
    (void)wait_for_victim(cands, 1, cp->point);
    struct spmc_queue q;
    int pid = 0;
    if (how == STOP_CONT) {
        /* Half-made by a live creator: never taken, never removed. */
        ck_assert_int_eq(spmc_queue_create(&q, name, ELEM, CAP), -EEXIST);
        ck_assert_int_eq(spmc_queue_attach(&q, name, ELEM, CAP), cp->locked ? -ETIMEDOUT : -EPROTO);
        if (cp->magic) {
            ck_assert_int_eq(spmc_queue_owner(name, &pid), 0);
            ck_assert_int_eq(pid, c);
        } else {
            ck_assert_int_eq(spmc_queue_owner(name, &pid), -EPROTO);
        }
        ck_assert_int_eq(kill(c, SIGCONT), 0);
        /* It finishes its queue. */
        ck_assert_int_eq(create_result("the continued creator never finished"), 0);
        ck_assert_int_eq(spmc_queue_attach(&q, name, ELEM, CAP), 0);
        ck_assert_int_eq(spmc_queue_destroy(&q), 0);
        ck_assert_int_eq(write(go[1], "g", 1), 1);
        ck_assert(tu_exited_ok(tu_wait(c, IO_TIMEOUT_MS)));
        ck_assert_int_eq(tu_segment_size(name), -ENOENT);
        return;
    }
    (void)finish_victim(c, how);
    if (cp->magic) { /* ours, writer dead: the next create reclaims it */
        ck_assert_int_eq(spmc_queue_owner(name, &pid), -ESRCH);
        ck_assert_int_eq(spmc_queue_create(&q, name, ELEM, CAP), 0);
        ck_assert_int_eq(spmc_queue_destroy(&q), 0);
        ck_assert_int_eq(tu_segment_size(name), -ENOENT);
    } else { /* no magic: not provably ours, so never removed by us */
        ck_assert_int_eq(spmc_queue_create(&q, name, ELEM, CAP), -EEXIST);
        ck_assert_int_eq(spmc_queue_attach(&q, name, ELEM, CAP), -EPROTO);
        ck_assert_int_eq(spmc_queue_owner(name, &pid), -EPROTO);
        ck_assert_int_ge(tu_segment_size(name), 0); /* still there; teardown removes it */
    }
}
END_TEST

static const char *const reclaim_points[] = {"reclaim:locked", "reclaim:unlinked"};

START_TEST(test_reclaim_crash_points)
{
    const char *point = reclaim_points[_i % 2];
    const enum how how = (enum how)(_i / 2);
    fprintf(stderr, "  reclaim   %-17s %s\n", point, how_name[how]);
    const char *name = tu_name();
    board_reset();
    int go[2];
    tu_pipe(go);
    /* A stale queue: its writer exits without destroying it. */
    pid_t s = tu_fork();
    if (s == 0) {
        struct spmc_queue q;
        _exit(spmc_queue_create(&q, name, ELEM, CAP) == 0 ? 0 : 1);
    }
    ck_assert(tu_exited_ok(tu_wait(s, IO_TIMEOUT_MS)));
    pid_t c = start_creator(name, point, how == KILL ? SIGKILL : SIGSTOP, go[0]);
    const pid_t cands[1] = {c};
    (void)wait_for_victim(cands, 1, point);
    struct spmc_queue q;
    if (how == STOP_CONT) {
        int mine = spmc_queue_create(&q, name, ELEM, CAP);
        if (strcmp(point, "reclaim:locked") == 0)
            ck_assert_int_eq(mine, -EEXIST); /* the stopped one holds the stale queue */
        else
            ck_assert_int_eq(mine, 0); /* the name was free: ours now */
        ck_assert_int_eq(kill(c, SIGCONT), 0);
        /* One name, one owner: exactly one of the two has the queue. */
        ck_assert_int_eq(create_result("the continued creator never finished"),
                         mine == 0 ? -EEXIST : 0);
        if (mine == 0)
            ck_assert_int_eq(spmc_queue_destroy(&q), 0);
        ck_assert_int_eq(write(go[1], "g", 1), 1);
        ck_assert(tu_exited_ok(tu_wait(c, IO_TIMEOUT_MS)));
        ck_assert_int_eq(tu_segment_size(name), -ENOENT);
        return;
    }
    (void)finish_victim(c, how);
    assert_name_cleaned_up(name); /* stale or gone: either way the next create works */
}
END_TEST

/* ===================================================================== */
/* The suite                                                               */
/* ===================================================================== */

static void setup(void)
{
    tu_setup();
}

static void teardown(void)
{
    tu_teardown();
}

static Suite *crash_suite(void)
{
    Suite *s = suite_create("crash points " SPMC_DAY);
    TCase *tc = tcase_create("create");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_create_crash_points, 0, 3 * N_CREATE);
    tcase_add_loop_test(tc, test_reclaim_crash_points, 0, 3 * 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("broadcast");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_broadcast_crash_points, 0, 3 * N_BROADCAST);
    suite_add_tcase(s, tc);

    tc = tcase_create("share");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_share_crash_points, 0, 3 * N_SHARE);
    tcase_add_test(tc, test_share_wait_readers_after_a_death_with_a_claim);
    tcase_add_test(tc, test_share_writer_resumed_with_an_old_look);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    bd = mmap(NULL, sizeof *bd, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (bd == MAP_FAILED) {
        perror("mmap");
        return EXIT_FAILURE;
    }
#if SPMC_VERSION >= 7
    /* Waiters sleep at once, so that every wait passes the sleep's crash
     * points, and for 20 ms at most, so that a dead peer is still noticed
     * soon (see spmc_test_sleep_ns). */
    spmc_test_sleep_ns = 20000000;
#endif
    int status = tu_main(crash_suite(), "check_crash");
    munmap(bd, sizeof *bd);
    return status;
}
