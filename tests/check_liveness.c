/* check_liveness.c - a peer is alive exactly as long as the kernel says so.
 *
 * From day 6 on, whether a writer or reader is alive is decided by the
 * open-file-description locks its handle holds on the segment's file, never
 * by its pid or by /proc. This suite puts peers where a pid says the wrong
 * thing and checks that the queue still tells the living from the dead:
 *
 * - in another PID namespace (the day's real programs, as containers that
 *   share /dev/shm run them, and C peers that are PID 1 of a namespace):
 *   a pid means another process there, or none;
 * - in a mount namespace without /proc: nothing to look a pid up in;
 * - in a process whose main thread has exited: /proc shows it as a zombie
 *   while its other thread runs the queue;
 * - behind fork(): a child shares its parent's open file descriptions, so
 *   it must drop them, or a dead parent would look alive;
 * - stopped (SIGSTOP): alive, however long it does nothing.
 *
 * Each case is checked both ways: alive while it runs (no -EOWNERDEAD, no
 * reaping, counted by spmc_queue_stats() and spmc_queue_wait_readers()) and
 * dead once killed (-EOWNERDEAD after draining, reaped, not counted, the
 * name reclaimed). Every message is accounted for: a shared tally counts how
 * often each sequence number was received, by whichever process.
 *
 * Tests that need root or namespaces say "skipped: ..." on stderr and pass
 * when this machine cannot give them those. No timing thresholds: a wait
 * that must time out (QUIET_NS) is one where nothing may happen at all, and
 * the other deadlines only stop a hung child. Built against day 6 and later
 * (the Makefile's TEST_MATRIX) as build/tests/check_liveness_<day>. */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "common.h"
#include "test_util.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>

#ifndef SPMC_DAY
#define SPMC_DAY "day6"
#endif
#ifndef DAY_BUILD
#error "DAY_BUILD must name the day's build folder (the Makefile sets it)"
#endif

#define ELEM 64u
#define MS 1000000ll
#define SEC 1000000000ll
#define STUCK_NS (30 * SEC)   /* one blocking call longer than this: hung */
#define DEATH_NS (10 * SEC)   /* a dead peer is seen long before (checks every 10 ms) */
#define QUIET_NS (200 * MS)   /* a wait in which nothing may happen */
#define IO_TIMEOUT_MS 60000u

static struct spmc_queue qw, qr, qx[4];
static pid_t sleeper; /* a forked child that outlives its parent (test 6) */

static void setup(void)
{
    tu_setup();
    memset(&qw, 0, sizeof qw);
    memset(&qr, 0, sizeof qr);
    memset(qx, 0, sizeof qx);
    sleeper = 0;
}

static void teardown(void)
{
    if (sleeper > 0) /* not our child: its parent died; init reaps it */
        kill(sleeper, SIGKILL);
    sleeper = 0;
    (void)spmc_queue_destroy(&qw);
    (void)spmc_queue_destroy(&qr);
    for (int i = 0; i < 4; i++)
        (void)spmc_queue_destroy(&qx[i]);
    tu_teardown();
}

static const enum spmc_fanout modes[] = {SPMC_BROADCAST, SPMC_SHARE};

static const char *mode_str(enum spmc_fanout f)
{
    return f == SPMC_SHARE ? "share" : "broadcast";
}

static int create_queue(struct spmc_queue *q, const char *name, enum spmc_fanout f, size_t cap)
{
    struct spmc_options o = {.fanout = f, .max_readers = 4};
    return spmc_queue_create_opts(q, name, ELEM, cap, &o);
}

static struct spmc_stats stats_of_at(const struct spmc_queue *q, const char *file, int line)
{
    struct spmc_stats st;
    tu_assert_int_at(file, line, spmc_queue_stats(q, &st), ==, 0);
    return st;
}
#define stats_of(q) stats_of_at((q), __FILE__, __LINE__)

/* ===================================================================== */
/* Accounting for every message                                            */
/* ===================================================================== */

/* How often each of the messages 0..n-1 was received, by any process: a
 * MAP_SHARED page made before the fork, so children count into it too. */
struct tally {
    size_t bytes;            /* of the mapping */
    uint64_t n;              /* messages expected: 0..n-1 */
    _Atomic uint64_t stray;  /* received with a sequence number >= n */
    _Atomic uint32_t got[];  /* times each one was received */
};

static void tally_free(void *p)
{
    struct tally *t = p;
    munmap(t, t->bytes);
}

static struct tally *tally_new_at(uint64_t n, const char *file, int line)
{
    size_t bytes = sizeof(struct tally) + (size_t)n * sizeof(_Atomic uint32_t);
    struct tally *t = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    tu_assert_at(file, line, t != MAP_FAILED, "mmap: %s", strerror(errno));
    t->bytes = bytes; /* the rest is zero */
    t->n = n;
    tu_defer_at(tally_free, t, file, line);
    return t;
}
#define tally_new(n) tally_new_at((n), __FILE__, __LINE__)

/* Each of the messages 0..n-1 was received exactly once, and no other. */
static void assert_each_once_at(struct tally *t, const char *file, int line)
{
    tu_assert_uint_at(file, line, atomic_load(&t->stray), ==, 0);
    for (uint64_t s = 0; s < t->n; s++)
        tu_assert_at(file, line, atomic_load(&t->got[s]) == 1,
                     "message %" PRIu64 " received %u times", s, (unsigned)atomic_load(&t->got[s]));
}
#define assert_each_once(t) assert_each_once_at((t), __FILE__, __LINE__)

/* What one reader has received. In broadcast its messages must be
 * consecutive, in work-sharing increasing; every one intact. */
struct take {
    uint64_t count, last, sum, errors;
};

static void take_one(struct take *k, const unsigned char *m, int share, struct tally *t)
{
    uint64_t s = msg_seq(m);
    if (!msg_intact(m, ELEM) || (k->count > 0 && (share ? s <= k->last : s != k->last + 1)))
        k->errors++;
    if (t != NULL) {
        if (s < t->n)
            atomic_fetch_add(&t->got[s], 1);
        else
            atomic_fetch_add(&t->stray, 1);
    }
    k->last = s;
    k->sum += msg_checksum(m, ELEM);
    k->count++;
}

/* Pop one message within STUCK_NS into @p k (the test fails otherwise). */
static void pop_one_at(struct spmc_queue *q, struct take *k, struct tally *t, const char *file,
                       int line)
{
    unsigned char m[ELEM];
    int rc = spmc_queue_pop(q, m, STUCK_NS);
    tu_assert_at(file, line, rc == 0, "pop after %" PRIu64 " messages: %s", k->count,
                 strerror(-rc));
    take_one(k, m, q->fanout == SPMC_SHARE, t);
}
#define pop_one(q, k, t) pop_one_at((q), (k), (t), __FILE__, __LINE__)

static void push_seq_at(struct spmc_queue *q, uint64_t seq, const char *file, int line)
{
    unsigned char m[ELEM];
    msg_fill(m, ELEM, seq);
    int rc = spmc_queue_push(q, m, STUCK_NS);
    tu_assert_at(file, line, rc == 0, "push of message %" PRIu64 ": %s", seq, strerror(-rc));
}
#define push_seq(q, seq) push_seq_at((q), (seq), __FILE__, __LINE__)

/* ===================================================================== */
/* What this machine allows                                                */
/* ===================================================================== */

/* Why a test that needs namespaces of @p flags cannot run here, or NULL. */
static const char *cannot_unshare_at(int flags, const char *file, int line)
{
    if (geteuid() != 0)
        return "namespaces need root";
    pid_t p = tu_fork_at(file, line);
    if (p == 0)
        _exit(unshare(flags) == 0 ? 0 : errno == EPERM || errno == EINVAL ? 77 : 1);
    int status = tu_wait_at(p, IO_TIMEOUT_MS, file, line);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
        return "unshare(2) refused here (EPERM or EINVAL)";
    tu_assert_at(file, line, tu_exited_ok(status), "unshare probe: %s", tu_status_str(status));
    return NULL;
}
#define cannot_unshare(flags) cannot_unshare_at((flags), __FILE__, __LINE__)

/* "skipped: <test>: <why>" on stderr; @p fn is __func__ (Check adds "_fn"). */
static void say_skipped(const char *fn, const char *why)
{
    size_t len = strlen(fn);
    if (len > 3 && strcmp(fn + len - 3, "_fn") == 0)
        len -= 3;
    fprintf(stderr, "skipped: %.*s: %s\n", (int)len, fn, why);
}

#define SKIP_UNLESS_UNSHARE(flags)                                                             \
    do {                                                                                       \
        const char *why_ = cannot_unshare(flags);                                              \
        if (why_ != NULL) {                                                                    \
            say_skipped(__func__, why_);                                                       \
            return;                                                                            \
        }                                                                                      \
    } while (0)

/* ===================================================================== */
/* Peers: a writer or reader in a process set apart from this one          */
/* ===================================================================== */

/* Where a peer runs. */
enum where {
    HERE,      /* in the test process itself (not a peer) */
    PLAIN,     /* an ordinary child */
    PID_NS,    /* PID 1 of a new PID namespace */
    NO_PROC,   /* a private mount namespace with /proc unmounted */
    MAIN_GONE, /* a thread of a process whose main thread has exited */
};

static const char *where_str(enum where w)
{
    static const char *const s[] = {"this process", "a plain child", "a new PID namespace",
                                    "a mount namespace without /proc",
                                    "a process whose main thread has exited"};
    return s[w];
}

/* What a peer reports through its pipe; one write each (atomic). */
enum rep_kind {
    REP_PID = 1, /* a: the pid, as this process sees it, of the process that runs the queue */
    REP_READY,   /* rc: create or attach */
    REP_SLEEPER, /* a: pid of the child it forked; rc: 1 if the queue's fd is closed in it */
    REP_STOPPED, /* the queue's process has stopped (from its parent, PID_NS only) */
    REP_POPPED,  /* a: messages received so far */
    REP_QUIET,   /* rc: a QUIET_NS pop once all was received; a: messages; b: errors */
    REP_PUSHED,  /* a: messages pushed */
    REP_DONE,    /* rc: what ended the pops; a: messages; b: errors */
    REP_RESULT,  /* rc, a, b: see the body that sends it */
    REP_FAIL,    /* rc: the source line; a: the negative errno */
};

struct rep {
    int32_t kind, rc;
    uint64_t a, b;
};

/* A peer's instructions (copied into the child). */
struct job {
    const char *name;
    enum spmc_fanout fanout;
    size_t capacity;
    uint64_t n;          /* writer: push n, report; reader: pop n, then a quiet pop
                          * (0: pop to the end) */
    uint64_t extra;      /* writer: on command 'p', push extra more */
    uint64_t report_at;  /* reader: report REP_POPPED after this many messages */
    unsigned nap_ms;     /* writer: pause halfway; reader: pause after the first message */
    int hold;            /* reader: attach, then wait for 'g' before popping */
    int forks;           /* fork a child that sleeps, inheriting our descriptors */
    struct tally *tally;
    int rep, cmd;        /* report pipe (write end), command pipe (read end) */
};

typedef int (*body_fn)(const struct job *j);

static void say(const struct job *j, int kind, int rc, uint64_t a, uint64_t b)
{
    struct rep r = {kind, rc, a, b};
    if (write(j->rep, &r, sizeof r) != (ssize_t)sizeof r)
        _exit(90);
}

/* In a peer: report a failure at this line and give the exit code. */
#define PEER_FAIL(j, rc) (say((j), REP_FAIL, __LINE__, (uint64_t)(int64_t)(rc), 0), 1)

/* In a peer: the next command byte from the test, or -1 at end of file. */
static int order(const struct job *j)
{
    char c;
    for (;;) {
        ssize_t r = read(j->cmd, &c, 1);
        if (r == 1)
            return (unsigned char)c;
        if (r < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

/* In a peer: fork a child that keeps its copies of all our descriptors and
 * does nothing; it reports its pid and whether the queue's descriptor @p fd
 * was closed in it at fork (it must be). 0 or -errno. */
static int fork_sleeper(const struct job *j, int fd)
{
    pid_t s = fork();
    if (s < 0)
        return -errno;
    if (s == 0) {
        int closed = fcntl(fd, F_GETFD) < 0 && errno == EBADF;
        say(j, REP_SLEEPER, closed, (uint64_t)getpid(), 0);
        for (;;)
            pause();
    }
    return 0;
}

/* The writer: create, wait for one reader, push n (pausing halfway, so that
 * readers wait on a live writer), report; then on command push `extra` more
 * ('p') or close ('c'); otherwise it stays as it is until it is killed. */
static int writer_body(const struct job *j)
{
    struct spmc_queue q;
    int rc = create_queue(&q, j->name, j->fanout, j->capacity);
    say(j, REP_READY, rc, 0, 0);
    if (rc != 0)
        return 1;
    if (j->forks && (rc = fork_sleeper(j, q.fd)) != 0)
        return PEER_FAIL(j, rc);
    if ((rc = spmc_queue_wait_readers(&q, 1, STUCK_NS)) != 0)
        return PEER_FAIL(j, rc);
    unsigned char m[ELEM];
    uint64_t s = 0;
    for (; s < j->n; s++) {
        if (s == j->n / 2 && j->nap_ms > 0)
            tu_sleep_ms(j->nap_ms);
        msg_fill(m, ELEM, s);
        if ((rc = spmc_queue_push(&q, m, STUCK_NS)) != 0)
            return PEER_FAIL(j, rc);
    }
    say(j, REP_PUSHED, 0, s, 0);
    for (;;) {
        int c = order(j);
        if (c == 'p') {
            for (uint64_t e = 0; e < j->extra; e++, s++) {
                msg_fill(m, ELEM, s);
                if ((rc = spmc_queue_push(&q, m, STUCK_NS)) != 0)
                    return PEER_FAIL(j, rc);
            }
            say(j, REP_PUSHED, 0, j->extra, 0);
        } else if (c == 'c') {
            return spmc_queue_destroy(&q) == 0 ? 0 : 2;
        } else {
            for (;;) /* the test has gone: leave the queue as it is */
                pause();
        }
    }
}

/* The reader: attach (waiting for the queue to be created); pop n messages
 * and then make one QUIET_NS pop (nothing is coming, and the writer is
 * alive: -ETIMEDOUT), report, and wait for 'g'; then pop until the end and
 * report how it ended. */
static int reader_body(const struct job *j)
{
    struct spmc_queue q;
    int rc = -ENOENT;
    /* -ENOENT: not created yet; -ETIMEDOUT: created, but its creator (alive)
     * had not finished the header within attach's own wait, which a busy
     * machine can make happen. Both mean "try again". */
    for (uint64_t deadline = tu_now_ns() + STUCK_NS;
         (rc == -ENOENT || rc == -ETIMEDOUT) && tu_now_ns() < deadline;)
        if ((rc = spmc_queue_attach(&q, j->name, ELEM, 0)) == -ENOENT || rc == -ETIMEDOUT)
            tu_sleep_ms(1);
    say(j, REP_READY, rc, 0, 0);
    if (rc != 0)
        return 1;
    if (j->forks && (rc = fork_sleeper(j, q.fd)) != 0)
        return PEER_FAIL(j, rc);
    if (j->hold && order(j) != 'g')
        for (;;) /* stays attached until it is killed */
            pause();
    const int share = q.fanout == SPMC_SHARE;
    struct take k = {0, 0, 0, 0};
    unsigned char m[ELEM];
    for (int phase = j->n > 0 ? 1 : 2; phase <= 2; phase++) {
        while (phase == 2 || k.count < j->n) {
            if ((rc = spmc_queue_pop(&q, m, STUCK_NS)) != 0)
                break;
            take_one(&k, m, share, j->tally);
            if (k.count == j->report_at)
                say(j, REP_POPPED, 0, k.count, 0);
            if (k.count == 1 && j->nap_ms > 0)
                tu_sleep_ms(j->nap_ms);
        }
        if (phase == 1) {
            if (rc != 0)
                return PEER_FAIL(j, rc); /* -EOWNERDEAD here: a live writer taken for dead */
            rc = spmc_queue_pop(&q, m, QUIET_NS);
            if (rc == 0)
                take_one(&k, m, share, j->tally);
            say(j, REP_QUIET, rc, k.count, k.errors);
            if (order(j) != 'g')
                for (;;)
                    pause();
        }
    }
    say(j, REP_DONE, rc, k.count, k.errors);
    (void)spmc_queue_destroy(&q);
    return 0;
}

/* A body in main_gone_thread(): run it once the test says the main thread
 * is gone (the test looks at /proc; the peer never does). When it returns,
 * report its exit code and wait to be killed: a process whose last thread
 * is not its first cannot end without leaving that thread's TLS block for
 * Valgrind to report as lost. */
static struct {
    body_fn fn;
    struct job j;
} main_gone;

static void *main_gone_thread(void *unused)
{
    (void)unused;
    if (order(&main_gone.j) != 's')
        _exit(3);
    say(&main_gone.j, REP_RESULT, main_gone.fn(&main_gone.j), 0, 0);
    for (;;)
        pause();
}

/* In the child: set the process apart as @p w says, then run @p fn. */
static void become(enum where w, body_fn fn, const struct job *j)
{
    switch (w) {
    case HERE:
    case PLAIN:
        break;
    case NO_PROC:
        /* "none": ignored by a propagation change, but Valgrind wants strings */
        if (unshare(CLONE_NEWNS) != 0 ||
            mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0)
            _exit(PEER_FAIL(j, -errno));
        for (int k = 0; k < 8 && access("/proc/self", F_OK) == 0; k++) /* stacked mounts too */
            if (umount2("/proc", MNT_DETACH) != 0)
                _exit(PEER_FAIL(j, -errno));
        if (access("/proc/self", F_OK) == 0 || errno != ENOENT)
            _exit(PEER_FAIL(j, -EEXIST)); /* /proc/self is still there */
        break;
    case PID_NS: {
        int go[2]; /* the child starts once its pid has been reported */
        if (unshare(CLONE_NEWPID) != 0 || pipe2(go, O_CLOEXEC) != 0)
            _exit(PEER_FAIL(j, -errno));
        pid_t g = fork(); /* PID 1 of the new namespace; g is its pid out here */
        if (g < 0)
            _exit(PEER_FAIL(j, -errno));
        if (g == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* dies with us (teardown kills us) */
            char c;
            close(go[1]);
            if (read(go[0], &c, 1) != 1)
                _exit(92);
            close(go[0]);
            if (getpid() != 1)
                _exit(PEER_FAIL(j, -ESRCH));
            _exit(fn(j));
        }
        say(j, REP_PID, 0, (uint64_t)g, 0);
        if (write(go[1], "g", 1) != 1)
            _exit(93);
        close(go[0]);
        close(go[1]);
        for (;;) { /* report its stops, end as it ends */
            int st;
            if (waitpid(g, &st, WUNTRACED) < 0) {
                if (errno == EINTR)
                    continue;
                _exit(91);
            }
            if (WIFSTOPPED(st)) {
                say(j, REP_STOPPED, 0, 0, 0);
                continue;
            }
            _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        }
    }
    case MAIN_GONE: {
        main_gone.fn = fn;
        main_gone.j = *j;
        pthread_t t;
        if (pthread_create(&t, NULL, main_gone_thread, NULL) != 0)
            _exit(PEER_FAIL(j, -EAGAIN));
        say(j, REP_PID, 0, (uint64_t)getpid(), 0);
        pthread_exit(NULL); /* the process lives on in t */
    }
    }
    say(j, REP_PID, 0, (uint64_t)getpid(), 0);
    _exit(fn(j));
}

struct peer {
    enum where where;
    pid_t child; /* ours (tu_fork) */
    pid_t proc;  /* the process that runs the queue (PID_NS: the child's child) */
    int rep;     /* reports from it */
    int cmd;     /* commands to it */
};

/* A report of kind @p kind from @p p; fails the test on anything else. */
static struct rep expect_at(struct peer *p, int kind, const char *file, int line)
{
    struct rep r;
    if (tu_read_full_at(p->rep, &r, sizeof r, IO_TIMEOUT_MS, file, line) != sizeof r) {
        int status = tu_wait_at(p->child, IO_TIMEOUT_MS, file, line);
        tu_abort_at(file, line, "peer in %s ended before report %d: %s", where_str(p->where), kind,
                    tu_status_str(status));
    }
    tu_assert_at(file, line, r.kind != REP_FAIL, "peer in %s failed at line %d: %s",
                 where_str(p->where), r.rc, strerror((int)-(int64_t)r.a));
    tu_assert_at(file, line, r.kind == kind,
                 "peer in %s: report %d (rc %d, a %" PRIu64 "), expected %d", where_str(p->where),
                 r.kind, r.rc, r.a, kind);
    return r;
}
#define expect(p, kind) expect_at((p), (kind), __FILE__, __LINE__)

static void tell_at(struct peer *p, char c, const char *file, int line)
{
    tu_assert_int_at(file, line, write(p->cmd, &c, 1), ==, 1);
}
#define tell(p, c) tell_at((p), (c), __FILE__, __LINE__)

/* Wait until /proc shows @p pid as a zombie ('Z'): its main thread has
 * exited. This is what a pid-based check would take for dead. */
static void assert_main_thread_gone_at(pid_t pid, const char *file, int line)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    const uint64_t deadline = tu_now_ns() + (uint64_t)IO_TIMEOUT_MS * 1000000u;
    for (;;) {
        FILE *f = fopen(path, "r");
        tu_assert_at(file, line, f != NULL, "%s: %s", path, strerror(errno));
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        const char *paren = strrchr(buf, ')');
        tu_assert_at(file, line, paren != NULL && paren[1] == ' ', "%s: %s", path, buf);
        if (paren[2] == 'Z')
            return;
        tu_assert_at(file, line, tu_now_ns() < deadline, "main thread of %ld still there: %s",
                     (long)pid, buf);
        tu_sleep_ms(1);
    }
}
#define assert_main_thread_gone(pid) assert_main_thread_gone_at((pid), __FILE__, __LINE__)

/* Start a peer running @p fn as @p w says; returns once it runs. */
static struct peer start_peer_at(enum where w, body_fn fn, struct job j, const char *file, int line)
{
    int rep[2], cmd[2];
    tu_pipe_at(rep, file, line);
    tu_pipe_at(cmd, file, line);
    j.rep = rep[1];
    j.cmd = cmd[0];
    struct peer p = {w, 0, 0, -1, -1};
    p.child = tu_fork_at(file, line);
    if (p.child == 0) { /* keep only our own ends of our own pipes */
        for (int i = 0; i < tu.n_fds; i++)
            if (tu.fds[i] >= 0 && tu.fds[i] != rep[1] && tu.fds[i] != cmd[0])
                close(tu.fds[i]);
        become(w, fn, &j);
    }
    tu_close(&rep[1]);
    tu_close(&cmd[0]);
    p.rep = rep[0];
    p.cmd = cmd[1];
    p.proc = (pid_t)expect_at(&p, REP_PID, file, line).a;
    if (w == MAIN_GONE) {
        assert_main_thread_gone_at(p.proc, file, line);
        tell_at(&p, 's', file, line);
    }
    return p;
}
#define start_peer(w, fn, j) start_peer_at((w), (fn), (j), __FILE__, __LINE__)

/* SIGKILL the peer's queue process and reap what is ours to reap: from
 * then on it is verifiably gone (its descriptors closed, its locks free). */
static void kill_peer_at(struct peer *p, const char *file, int line)
{
    tu_assert_int_at(file, line, kill(p->proc, SIGKILL), ==, 0);
    int status = tu_wait_at(p->child, IO_TIMEOUT_MS, file, line);
    if (p->where == PID_NS) /* its parent ends as it ended */
        tu_assert_at(file, line, WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGKILL, "%s",
                     tu_status_str(status));
    else
        tu_assert_at(file, line, WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "%s",
                     tu_status_str(status));
}
#define kill_peer(p) kill_peer_at((p), __FILE__, __LINE__)

static void peer_exits_ok_at(struct peer *p, const char *file, int line)
{
    if (p->where == MAIN_GONE) { /* see main_gone_thread() */
        tu_assert_int_at(file, line, expect_at(p, REP_RESULT, file, line).rc, ==, 0);
        kill_peer_at(p, file, line);
        return;
    }
    int status = tu_wait_at(p->child, IO_TIMEOUT_MS, file, line);
    tu_assert_at(file, line, tu_exited_ok(status), "peer in %s: %s", where_str(p->where),
                 tu_status_str(status));
}
#define peer_exits_ok(p) peer_exits_ok_at((p), __FILE__, __LINE__)

/* ===================================================================== */
/* Scenarios                                                               */
/* ===================================================================== */

enum ending { KILLED, CLOSED };

/* A writer in @p ww and one reader in @p rw (HERE: this process). The writer
 * pushes n messages; the reader takes them and then waits QUIET_NS: the
 * writer is alive, so -ETIMEDOUT (never -EOWNERDEAD). The writer pushes a few
 * more and ends: KILLED, the reader drains them and then gets -EOWNERDEAD,
 * the writer counts as gone and its name can be created again; CLOSED, the
 * reader drains them and then gets -EPIPE. @p forks: the writer has forked a
 * child that sleeps on, with copies of its descriptors. */
/* Returns how the reader's stream ended (-EOWNERDEAD or -EPIPE). */
static int writer_scenario_at(enum spmc_fanout f, enum where ww, enum where rw, enum ending end,
                              int forks, const char *file, int line)
{
    int ended;
    const char *name = tu_name_at(file, line);
    const uint64_t n = stress_messages(2000), extra = 5;
    struct tally *t = tally_new_at(n + extra, file, line);
    struct job j = {.name = name, .fanout = f, .capacity = 16, .n = n, .extra = extra,
                    .nap_ms = 20, .forks = forks, .tally = t};
    struct peer w = start_peer_at(ww, writer_body, j, file, line);
    tu_assert_int_at(file, line, expect_at(&w, REP_READY, file, line).rc, ==, 0);
    if (forks) {
        struct rep s = expect_at(&w, REP_SLEEPER, file, line);
        sleeper = (pid_t)s.a;
        tu_assert_at(file, line, s.rc == 1, "the forked child still has the queue's descriptor");
    }

    struct peer r = {HERE, 0, 0, -1, -1};
    struct take k = {0, 0, 0, 0};
    unsigned char m[ELEM];
    if (rw == HERE) {
        tu_assert_int_at(file, line, spmc_queue_attach(&qr, name, ELEM, 0), ==, 0);
        pop_one_at(&qr, &k, t, file, line);
        tu_sleep_ms(20); /* the writer waits on us meanwhile, and checks on us */
        while (k.count < n)
            pop_one_at(&qr, &k, t, file, line);
        tu_assert_int_at(file, line, spmc_queue_pop(&qr, m, QUIET_NS), ==, -ETIMEDOUT); /* alive */
        struct spmc_stats st = stats_of_at(&qr, file, line);
        tu_assert_int_at(file, line, st.writer_alive, ==, 1);
        tu_assert_uint_at(file, line, st.reaped, ==, 0); /* nor were we taken for dead */
    } else {
        struct job jr = {.name = name, .fanout = f, .n = n, .tally = t};
        r = start_peer_at(rw, reader_body, jr, file, line);
        tu_assert_int_at(file, line, expect_at(&r, REP_READY, file, line).rc, ==, 0);
        struct rep q = expect_at(&r, REP_QUIET, file, line);
        tu_assert_int_at(file, line, q.rc, ==, -ETIMEDOUT); /* alive */
        tu_assert_uint_at(file, line, q.a, ==, n);
        tu_assert_uint_at(file, line, q.b, ==, 0);
    }
    tu_assert_uint_at(file, line, expect_at(&w, REP_PUSHED, file, line).a, ==, n);

    tell_at(&w, 'p', file, line); /* a few more, left in the ring for the reader to drain */
    tu_assert_uint_at(file, line, expect_at(&w, REP_PUSHED, file, line).a, ==, extra);
    if (end == KILLED) {
        kill_peer_at(&w, file, line);
    } else {
        tell_at(&w, 'c', file, line);
        peer_exits_ok_at(&w, file, line);
    }
    if (forks) /* the writer is dead, the child that shared its descriptors is not */
        tu_assert_int_at(file, line, kill(sleeper, 0), ==, 0);

    const int want = end == KILLED ? -EOWNERDEAD : -EPIPE;
    if (rw == HERE) {
        while (k.count < n + extra)
            pop_one_at(&qr, &k, t, file, line);
        int rc = spmc_queue_pop(&qr, m, DEATH_NS);
        ended = rc;
        tu_assert_at(file, line, rc == want, "after draining: %s, expected %s", strerror(-rc),
                     strerror(-want));
        tu_assert_uint_at(file, line, k.errors, ==, 0);
        if (end == KILLED)
            tu_assert_int_at(file, line, stats_of_at(&qr, file, line).writer_alive, ==, 0);
        tu_assert_int_at(file, line, spmc_queue_destroy(&qr), ==, 0);
    } else {
        tell_at(&r, 'g', file, line);
        struct rep d = expect_at(&r, REP_DONE, file, line);
        ended = d.rc;
        tu_assert_at(file, line, d.rc == want, "after draining: %s, expected %s", strerror(-d.rc),
                     strerror(-want));
        tu_assert_uint_at(file, line, d.a, ==, n + extra);
        tu_assert_uint_at(file, line, d.b, ==, 0);
        peer_exits_ok_at(&r, file, line);
    }
    assert_each_once_at(t, file, line);

    if (end == KILLED) { /* stale now: reclaimed by the next create */
        int pid;
        tu_assert_int_at(file, line, spmc_queue_owner(name, &pid), ==, -ESRCH);
        tu_assert_int_at(file, line, create_queue(&qw, name, f, 16), ==, 0);
        /* A new queue, not the old one: */
        tu_assert_uint_at(file, line, stats_of_at(&qw, file, line).head, ==, 0);
    } else {
        tu_assert_int_at(file, line, tu_segment_size(name), ==, -ENOENT);
    }
    if (forks) {
        tu_assert_int_at(file, line, kill(sleeper, SIGKILL), ==, 0);
        sleeper = 0;
    }
    return ended;
}
#define writer_scenario(f, ww, rw, end, forks)                                                     \
    writer_scenario_at((f), (ww), (rw), (end), (forks), __FILE__, __LINE__)

/* This process writes; one reader runs in @p rw. It takes n messages,
 * pausing after its first (so that in broadcast it holds the writer back
 * while the writer checks whether it is dead), then waits QUIET_NS (the
 * writer lives: -ETIMEDOUT) and stays attached. It must count as alive and
 * never be reaped; once killed it must count as dead. @p forks: the reader
 * has forked a child that sleeps on with copies of its descriptors. */
/* Returns the entries the writer reaped once the reader was dead. */
static uint64_t reader_scenario_at(enum spmc_fanout f, enum where rw, int forks, const char *file,
                                   int line)
{
    const char *name = tu_name_at(file, line);
    const uint64_t n = stress_messages(2000);
    struct tally *t = tally_new_at(n, file, line);
    struct job j = {.name = name, .fanout = f, .n = n, .nap_ms = 20, .forks = forks,
                    .tally = t};
    struct peer r = start_peer_at(rw, reader_body, j, file, line); /* before the queue: unrelated */
    tu_assert_int_at(file, line, create_queue(&qw, name, f, 8), ==, 0);
    tu_assert_int_at(file, line, expect_at(&r, REP_READY, file, line).rc, ==, 0);
    if (forks) {
        struct rep s = expect_at(&r, REP_SLEEPER, file, line);
        sleeper = (pid_t)s.a;
        tu_assert_at(file, line, s.rc == 1, "the forked child still has the queue's descriptor");
    }
    tu_assert_int_at(file, line, spmc_queue_wait_readers(&qw, 1, STUCK_NS), ==, 0);
    for (uint64_t s = 0; s < n; s++) {
        if (s == n / 2)
            tu_sleep_ms(20); /* the reader waits on us meanwhile */
        push_seq_at(&qw, s, file, line);
    }
    struct rep q = expect_at(&r, REP_QUIET, file, line);
    tu_assert_int_at(file, line, q.rc, ==, -ETIMEDOUT);
    tu_assert_uint_at(file, line, q.a, ==, n);
    tu_assert_uint_at(file, line, q.b, ==, 0);
    assert_each_once_at(t, file, line);
    struct spmc_stats st = stats_of_at(&qw, file, line);
    tu_assert_uint_at(file, line, st.readers, ==, 1);
    tu_assert_uint_at(file, line, st.reaped, ==, 0);
    tu_assert_int_at(file, line, spmc_queue_wait_readers(&qw, 1, 0), ==, 0);

    kill_peer_at(&r, file, line);
    if (forks) /* it shared the reader's descriptors, yet the reader is dead */
        tu_assert_int_at(file, line, kill(sleeper, 0), ==, 0);
    tu_assert_uint_at(file, line, stats_of_at(&qw, file, line).readers, ==, 0);
    if (f == SPMC_BROADCAST) /* a dead reader's cursor holds nobody back */
        for (uint64_t s = n; s < n + qw.capacity + 1; s++)
            push_seq_at(&qw, s, file, line);
    tu_assert_int_at(file, line, spmc_queue_wait_readers(&qw, 1, 100 * MS), ==, -ETIMEDOUT);
    st = stats_of_at(&qw, file, line);
    tu_assert_uint_at(file, line, st.readers, ==, 0);
    tu_assert_uint_at(file, line, st.reaped, >=, 1);
    if (forks) {
        tu_assert_int_at(file, line, kill(sleeper, SIGKILL), ==, 0);
        sleeper = 0;
    }
    return st.reaped;
}
#define reader_scenario(f, rw, forks) reader_scenario_at((f), (rw), (forks), __FILE__, __LINE__)

/* ===================================================================== */
/* 1. The day's programs across PID namespaces                             */
/* ===================================================================== */

static const char *program_missing(void)
{
    static const char *const progs[] = {DAY_BUILD "/producer", DAY_BUILD "/consumer"};
    for (int i = 0; i < 2; i++)
        if (access(progs[i], X_OK) != 0)
            return progs[i];
    return NULL;
}

/* The unshare(1) program, or NULL. */
static const char *unshare_program(void)
{
    static const char *const where[] = {"/usr/bin/unshare", "/bin/unshare",
                                        "/usr/sbin/unshare", "/sbin/unshare"};
    for (int i = 0; i < 4; i++)
        if (access(where[i], X_OK) == 0)
            return where[i];
    return NULL;
}

/* Skip unless this machine can run programs in a new PID namespace. */
#define SKIP_UNLESS_PROGRAMS_CAN_UNSHARE()                                                     \
    do {                                                                                       \
        const char *missing_ = program_missing();                                              \
        ck_assert_msg(missing_ == NULL, "%s is not built (make " SPMC_DAY ")", missing_);      \
        if (unshare_program() == NULL) {                                                       \
            say_skipped(__func__, "no unshare(1) program");                                    \
            return;                                                                            \
        }                                                                                      \
        SKIP_UNLESS_UNSHARE(CLONE_NEWPID | CLONE_NEWNS);                                       \
    } while (0)

/* argv for @p prog with @p args, run in a new PID namespace (with its own
 * /proc, as a container has) when @p inside. */
static void program_argv(char **argv, int inside, int kill_child, const char *prog,
                         char *const *args)
{
    int a = 0;
    if (inside) {
        argv[a++] = (char *)unshare_program();
        argv[a++] = "--pid";
        argv[a++] = "--fork";
        if (kill_child) /* unshare's death kills the program */
            argv[a++] = "--kill-child";
        argv[a++] = "--mount-proc";
    }
    argv[a++] = (char *)prog;
    for (int i = 0; args[i] != NULL; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
}

/* The last "received N messages in order (MODE), checksum C" line of a
 * consumer's output; 1 if found. *eos: it ended with "(end of stream)". */
static int parse_received(const char *out, uint64_t *n, uint64_t *sum, char *mode, int *eos)
{
    const char *line = strstr(out, "received ");
    if (line == NULL)
        return 0;
    unsigned long long nn, ss;
    if (sscanf(line, "received %llu messages in order (%15[a-z]), checksum %llx", &nn, mode,
               &ss) != 3)
        return 0;
    *n = nn;
    *sum = ss;
    const char *end = strchr(line, '\n');
    *eos = end != NULL && end - line > 16 && strncmp(end - 15, "(end of stream)", 15) == 0;
    return 1;
}

START_TEST(test_programs_across_pid_namespaces)
{
    /* _i: bit 0 the fan-out, bit 1 which program runs inside. A pid-based
     * consumer inside would find no process with the producer's pid and
     * quit early; a producer inside is pid 1 to a consumer outside. */
    SKIP_UNLESS_PROGRAMS_CAN_UNSHARE();
    const enum spmc_fanout f = modes[_i & 1];
    const int producer_inside = _i >> 1;
    const char *name = tu_name();
    const uint64_t n = stress_messages(20000);
    char count[24];
    snprintf(count, sizeof count, "%" PRIu64, n);
    char *pargs[] = {"--name", (char *)name, "--fanout", (char *)mode_str(f), "--consumers",
                     "1", "--messages", count, NULL};
    char *cargs[] = {"--name", (char *)name, NULL};
    char *pargv[16], *cargv[16];
    program_argv(pargv, producer_inside, 0, DAY_BUILD "/producer", pargs);
    program_argv(cargv, !producer_inside, 0, DAY_BUILD "/consumer", cargs);

    int po[2];
    tu_pipe(po);
    pid_t prod = tu_spawn(pargv, po[1], po[1]);
    tu_close(&po[1]);
    static char pout[8192], cout[8192], cerr[8192];
    size_t plen = 0;
    ck_assert_msg(tu_read_until(po[0], pout, sizeof pout, &plen, "waiting up to", IO_TIMEOUT_MS),
                  "producer: %s", pout);
    int cstatus = tu_run(cargv, cout, sizeof cout, cerr, sizeof cerr, IO_TIMEOUT_MS);
    tu_read_until(po[0], pout, sizeof pout, &plen, NULL, IO_TIMEOUT_MS);
    int pstatus = tu_wait(prod, IO_TIMEOUT_MS);
    ck_assert_msg(tu_exited_ok(pstatus), "producer: %s\n%s", tu_status_str(pstatus), pout);
    ck_assert_msg(tu_exited_ok(cstatus), "consumer: %s\n%s%s", tu_status_str(cstatus), cout,
                  cerr);

    const char *sent = strstr(pout, "sent ");
    unsigned long long ns, ps;
    ck_assert_msg(sent != NULL && sscanf(sent, "sent %llu messages, checksum %llx", &ns, &ps) == 2,
                  "producer said:\n%s", pout);
    uint64_t nc, cs;
    char mode[16];
    int eos;
    ck_assert_msg(parse_received(cout, &nc, &cs, mode, &eos), "consumer said:\n%s", cout);
    ck_assert_uint_eq(ns, n);
    ck_assert_uint_eq(nc, n);
    ck_assert_uint_eq(cs, ps);
    ck_assert_str_eq(mode, mode_str(f));
    ck_assert_msg(eos, "consumer did not reach the end of stream:\n%s", cout);
    ck_assert_int_eq(tu_segment_size(name), -ENOENT); /* the producer removed it */
}
END_TEST

START_TEST(test_program_killed_in_a_pid_namespace_is_dead_outside)
{
    /* The producer runs inside, where it is pid 1: to a pid-based consumer
     * outside, pid 1 (init) never dies. It is killed mid-stream; the real
     * consumer outside must drain and report the death, and together with
     * a reader of this process account for every message published. */
    SKIP_UNLESS_PROGRAMS_CAN_UNSHARE();
    const enum spmc_fanout f = modes[_i];
    const int share = f == SPMC_SHARE;
    const char *name = tu_name();
    char *pargs[] = {"--name", (char *)name, "--fanout", (char *)mode_str(f), "--consumers",
                     "2", "--messages", "1000000000000", NULL};
    char *cargs[] = {"--name", (char *)name, NULL};
    char *pargv[16], *cargv[16];
    program_argv(pargv, 1, 1, DAY_BUILD "/producer", pargs);
    program_argv(cargv, 0, 0, DAY_BUILD "/consumer", cargs);

    int po[2], co[2];
    tu_pipe(po);
    tu_pipe(co);
    pid_t prod = tu_spawn(pargv, po[1], po[1]);
    tu_close(&po[1]);
    static char pout[8192], cout[8192];
    size_t plen = 0, clen = 0;
    ck_assert_msg(tu_read_until(po[0], pout, sizeof pout, &plen, "waiting up to", IO_TIMEOUT_MS),
                  "producer: %s", pout);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), 0);
    pid_t cons = tu_spawn(cargv, co[1], co[1]);
    tu_close(&co[1]);

    struct take k = {0, 0, 0, 0};
    size_t bytes = 1u << 20; /* share: which messages this process took */
    unsigned char *mine = calloc(bytes, 1);
    ck_assert(mine != NULL);
    tu_defer(free, mine);
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_pop(&qr, m, STUCK_NS), 0); /* both attached: it streams */
    take_one(&k, m, share, NULL);
    ck_assert_uint_lt(msg_seq(m) / 8, bytes);
    mine[msg_seq(m) / 8] |= (unsigned char)(1u << (msg_seq(m) % 8));
    /* Stop the consumer so that the producer fills the ring and waits; kill
     * it there (unshare --kill-child passes our SIGKILL on), then let the
     * consumer go on. */
    ck_assert_int_eq(kill(cons, SIGSTOP), 0);
    int st;
    ck_assert_int_eq(waitpid(cons, &st, WUNTRACED), cons);
    ck_assert(WIFSTOPPED(st));
    ck_assert_int_eq(kill(prod, SIGKILL), 0);
    tu_read_until(po[0], pout, sizeof pout, &plen, NULL, IO_TIMEOUT_MS);
    int pstatus = tu_wait(prod, IO_TIMEOUT_MS);
    ck_assert_msg(WIFSIGNALED(pstatus) && WTERMSIG(pstatus) == SIGKILL, "%s",
                  tu_status_str(pstatus));
    ck_assert_int_eq(kill(cons, SIGCONT), 0);

    int rc;
    while ((rc = spmc_queue_pop(&qr, m, STUCK_NS)) == 0) {
        take_one(&k, m, share, NULL);
        uint64_t s = msg_seq(m);
        ck_assert_uint_lt(s / 8, bytes);
        ck_assert_msg(!(mine[s / 8] & (1u << (s % 8))), "message %" PRIu64 " twice", s);
        mine[s / 8] |= (unsigned char)(1u << (s % 8));
    }
    ck_assert_msg(rc == -EOWNERDEAD, "this process's reader: %s", strerror(-rc));
    ck_assert_uint_eq(k.errors, 0);
    tu_read_until(co[0], cout, sizeof cout, &clen, NULL, IO_TIMEOUT_MS);
    int cstatus = tu_wait(cons, IO_TIMEOUT_MS);
    ck_assert_msg(WIFEXITED(cstatus) && WEXITSTATUS(cstatus) == 2,
                  "consumer (2 = producer died): %s\n%s", tu_status_str(cstatus), cout);
    ck_assert_msg(strstr(cout, "the producer died after") != NULL, "consumer said:\n%s", cout);

    /* Every message published is accounted for. */
    const uint64_t head = stats_of(&qr).head;
    uint64_t nc, cs;
    char mode[16];
    int eos;
    ck_assert_msg(parse_received(cout, &nc, &cs, mode, &eos), "consumer said:\n%s", cout);
    ck_assert_str_eq(mode, mode_str(f));
    ck_assert(!eos);
    uint64_t all = 0;
    for (uint64_t s = 0; s < head; s++) {
        msg_fill(m, ELEM, s);
        all += msg_checksum(m, ELEM);
    }
    if (share) { /* each message to one of the two */
        ck_assert_uint_eq(nc + k.count, head);
        ck_assert_uint_eq(cs + k.sum, all); /* and this process's were distinct */
        ck_assert_uint_lt(k.last, head);
    } else { /* both got all of them */
        ck_assert_uint_eq(k.count, head);
        ck_assert_uint_eq(k.last, head - 1);
        ck_assert_uint_eq(nc, head);
        ck_assert_uint_eq(cs, all);
    }
}
END_TEST

/* ===================================================================== */
/* 2. A stopped reader in another PID namespace is alive                   */
/* ===================================================================== */

START_TEST(test_stopped_reader_in_a_pid_namespace_is_not_reaped)
{
    SKIP_UNLESS_UNSHARE(CLONE_NEWPID);
    const enum spmc_fanout f = modes[_i];
    const int share = f == SPMC_SHARE;
    const char *name = tu_name();
    const uint64_t n = stress_messages(2000);
    struct tally *t = tally_new(n);
    struct job j = {.name = name, .fanout = f, .report_at = 1, .tally = t};
    struct peer r = start_peer(PID_NS, reader_body, j);
    ck_assert_int_eq(create_queue(&qw, name, f, 8), 0);
    ck_assert_int_eq(expect(&r, REP_READY).rc, 0);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, STUCK_NS), 0);
    push_seq(&qw, 0);
    ck_assert_uint_eq(expect(&r, REP_POPPED).a, 1);
    /* Stopped from out here: as PID 1 of its namespace it cannot stop
     * itself (the kernel ignores its own SIGSTOP). */
    ck_assert_int_eq(kill(r.proc, SIGSTOP), 0);
    expect(&r, REP_STOPPED); /* its parent saw it stop */

    uint64_t next = 1;
    struct take k = {0, 0, 0, 0};
    unsigned char m[ELEM];
    if (!share) {
        /* It has read one message and stopped: the writer fills the ring
         * (one lap past the cursor the reader last published, 0 or 1) and
         * must then wait for it, checking meanwhile whether it is dead. */
        int rc;
        for (;;) {
            msg_fill(m, ELEM, next);
            if ((rc = spmc_queue_push(&qw, m, QUIET_NS)) != 0)
                break;
            next++;
            ck_assert_uint_le(next, 1 + qw.capacity); /* it cannot have read more than one */
        }
        ck_assert_int_eq(rc, -ETIMEDOUT);
        ck_assert_uint_ge(next, qw.capacity);
    } else {
        /* It holds no claim: it holds nobody back. Another reader takes
         * what comes meanwhile, and finds nothing to rescue from it. */
        ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), 0);
        for (; next < n / 2; next++) {
            msg_fill(m, ELEM, next);
            ck_assert_int_eq(spmc_queue_try_push(&qw, m), 0);
            pop_one(&qr, &k, t);
            ck_assert_uint_eq(k.last, next);
        }
        ck_assert_int_eq(spmc_queue_pop(&qr, m, QUIET_NS), -ETIMEDOUT);
    }
    struct spmc_stats st = stats_of(&qw);
    ck_assert_uint_eq(st.readers, share ? 2 : 1); /* a stopped process is alive */
    ck_assert_uint_eq(st.reaped, 0);
    ck_assert_uint_eq(st.redelivered, 0);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, share ? 2 : 1, 0), 0);

    ck_assert_int_eq(kill(r.proc, SIGCONT), 0);
    for (; next < n; next++)
        push_seq(&qw, next);
    ck_assert_int_eq(spmc_queue_destroy(&qw), 0);
    if (share) {
        int rc;
        while ((rc = spmc_queue_pop(&qr, m, STUCK_NS)) == 0)
            take_one(&k, m, 1, t);
        ck_assert_int_eq(rc, -EPIPE);
        ck_assert_uint_eq(k.errors, 0);
    }
    struct rep d = expect(&r, REP_DONE);
    ck_assert_int_eq(d.rc, -EPIPE);
    ck_assert_uint_eq(d.b, 0);
    ck_assert_uint_eq(d.a + k.count, n); /* broadcast: it got them all */
    peer_exits_ok(&r);
    assert_each_once(t);
}
END_TEST

/* ===================================================================== */
/* 3. Creators and dead writers across PID namespaces                      */
/* ===================================================================== */

/* On command 'g', try to create the queue (it exists by then); report the
 * result and what spmc_queue_owner() says. */
static int creator_body(const struct job *j)
{
    struct spmc_queue q;
    if (order(j) != 'g')
        return 2;
    int rc = create_queue(&q, j->name, j->fanout, j->capacity);
    int pid = 0;
    int owner = spmc_queue_owner(j->name, &pid);
    say(j, REP_RESULT, rc, (uint64_t)(int64_t)owner, 0);
    if (rc == 0)
        (void)spmc_queue_destroy(&q);
    return 0;
}

START_TEST(test_second_creator_in_another_pid_namespace_is_refused)
{
    /* The writer's pid names no process inside the new namespace: a
     * pid-based creator there would take the live queue for stale. */
    SKIP_UNLESS_UNSHARE(CLONE_NEWPID);
    const enum spmc_fanout f = modes[_i];
    const char *name = tu_name();
    struct job j = {.name = name, .fanout = f, .capacity = 8};
    struct peer c = start_peer(PID_NS, creator_body, j); /* before the queue: unrelated */
    ck_assert_int_eq(create_queue(&qw, name, f, 8), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), 0);
    tell(&c, 'g');
    struct rep r = expect(&c, REP_RESULT);
    ck_assert_int_eq(r.rc, -EEXIST);
    ck_assert_int_eq((int)(int64_t)r.a, 0); /* spmc_queue_owner(): a live writer */
    peer_exits_ok(&c);
    struct spmc_stats st = stats_of(&qw);
    ck_assert_int_eq(st.closed, 0);
    ck_assert_uint_eq(st.readers, 1);
    ck_assert_int_gt(tu_segment_size(name), 0);
    struct take k = {0, 0, 0, 0};
    for (uint64_t s = 0; s < 3; s++) { /* the live queue works on */
        push_seq(&qw, s);
        pop_one(&qr, &k, NULL);
        ck_assert_uint_eq(k.last, s);
    }
    ck_assert_uint_eq(k.errors, 0);
}
END_TEST

START_TEST(test_writer_killed_in_another_pid_namespace_is_dead)
{
    /* _i: bit 0 the fan-out; bit 1 clear: the writer inside, the reader
     * here (a pid-based reader would ask about pid 1, which never dies);
     * set: the reader inside, the writer a plain child (a pid-based reader
     * there would find no writer at all and quit early). */
    SKIP_UNLESS_UNSHARE(CLONE_NEWPID);
    if (_i >> 1)
        ck_assert_int_eq(writer_scenario(modes[_i & 1], PLAIN, PID_NS, KILLED, 0), -EOWNERDEAD);
    else
        ck_assert_int_eq(writer_scenario(modes[_i & 1], PID_NS, HERE, KILLED, 0), -EOWNERDEAD);
}
END_TEST

/* ===================================================================== */
/* 4. A peer that cannot read /proc                                        */
/* ===================================================================== */

START_TEST(test_peer_without_proc)
{
    /* _i: bit 0 the fan-out; bit 1 clear: the writer has no /proc (it must
     * still tell a live reader that holds it back from a dead one); set:
     * the reader has none (it must still see the writer alive). */
    SKIP_UNLESS_UNSHARE(CLONE_NEWNS);
    if (_i >> 1)
        ck_assert_uint_ge(reader_scenario(modes[_i & 1], NO_PROC, 0), 1);
    else
        ck_assert_int_eq(writer_scenario(modes[_i & 1], NO_PROC, HERE, KILLED, 0), -EOWNERDEAD);
}
END_TEST

/* ===================================================================== */
/* 5. A process whose main thread has exited                               */
/* ===================================================================== */

START_TEST(test_writer_whose_main_thread_exited_is_alive)
{
    /* /proc says "Z" for such a process; it runs on. _i: bit 0 the fan-out,
     * bit 1 how it ends: closing (-EPIPE, never -EOWNERDEAD first) or
     * killed (-EOWNERDEAD). */
    const enum ending end = _i >> 1 ? KILLED : CLOSED;
    ck_assert_int_eq(writer_scenario(modes[_i & 1], MAIN_GONE, HERE, end, 0),
                     end == KILLED ? -EOWNERDEAD : -EPIPE);
}
END_TEST

START_TEST(test_reader_whose_main_thread_exited_is_not_reaped)
{
    ck_assert_uint_ge(reader_scenario(modes[_i], MAIN_GONE, 0), 1); /* dead once killed */
}
END_TEST

/* ===================================================================== */
/* 6. fork()                                                               */
/* ===================================================================== */

START_TEST(test_forked_child_does_not_keep_a_dead_parent_alive)
{
    /* _i: bit 0 the fan-out; bit 1 clear: the writer forks a child that
     * sleeps, and is killed: its reader must see it dead; set: the same
     * for a reader, which its writer must see dead. */
    if (_i >> 1)
        ck_assert_uint_ge(reader_scenario(modes[_i & 1], PLAIN, 1), 1);
    else
        ck_assert_int_eq(writer_scenario(modes[_i & 1], PLAIN, HERE, KILLED, 1), -EOWNERDEAD);
}
END_TEST

START_TEST(test_parent_handles_in_a_forked_child)
{
    /* destroy() on the parent's handles in a child only unmaps them: the
     * queue stays open, the parent's reader keeps its entry; the child may
     * open a handle of its own. */
    const enum spmc_fanout f = modes[_i];
    const char *name = tu_name();
    ck_assert_int_eq(create_queue(&qw, name, f, 8), 0);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), 0);
    int fds[2];
    tu_pipe(fds);
    pid_t c = tu_fork();
    if (c == 0) {
        int got[4] = {spmc_queue_destroy(&qw), spmc_queue_destroy(&qr), -1, -1};
        struct spmc_queue own;
        got[2] = spmc_queue_attach(&own, name, ELEM, 0);
        struct spmc_stats st;
        if (got[2] == 0 && spmc_queue_stats(&own, &st) == 0)
            got[3] = (int)st.readers; /* the parent's reader and this one */
        if (got[2] == 0)
            (void)spmc_queue_destroy(&own);
        _exit(write(fds[1], got, sizeof got) == (ssize_t)sizeof got ? 0 : 1);
    }
    tu_close(&fds[1]);
    int got[4];
    ck_assert_uint_eq(tu_read_full(fds[0], got, sizeof got, IO_TIMEOUT_MS), sizeof got);
    ck_assert(tu_exited_ok(tu_wait(c, IO_TIMEOUT_MS)));
    ck_assert_int_eq(got[0], 0);
    ck_assert_int_eq(got[1], 0);
    ck_assert_int_eq(got[2], 0);
    ck_assert_int_eq(got[3], 2);

    struct spmc_stats st = stats_of(&qw);
    ck_assert_int_eq(st.closed, 0);
    ck_assert_uint_eq(st.readers, 1);
    ck_assert_int_gt(tu_segment_size(name), 0);
    /* The parent's reader still holds the writer back (broadcast: its entry
     * is still active; share: its messages are unread) and gets them all. */
    for (uint64_t s = 0; s < qw.capacity; s++)
        push_seq(&qw, s);
    unsigned char m[ELEM];
    msg_fill(m, ELEM, qw.capacity);
    ck_assert_int_eq(spmc_queue_try_push(&qw, m), -EAGAIN);
    struct take k = {0, 0, 0, 0};
    for (uint64_t s = 0; s < qw.capacity; s++)
        pop_one(&qr, &k, NULL);
    ck_assert_uint_eq(k.count, qw.capacity);
    ck_assert_uint_eq(k.last, qw.capacity - 1);
    ck_assert_uint_eq(k.errors, 0);
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EAGAIN); /* not -EPIPE: still open */
}
END_TEST

/* PID 1 of a namespace: create a queue and a reader, then fork a child
 * that is PID 1 of a namespace of its own (the same pid as ours, in another
 * namespace) and destroys the inherited handles. Reports (REP_RESULT) rc:
 * the child's exit status; a: 1 if the queue is closed now; b: 1 if the name
 * is gone. Then pushes one message; REP_DONE: rc what our reader's first
 * try_pop says (0: that message), a its second (-EAGAIN: the queue is open). */
static int pid1_parent_body(const struct job *j)
{
    struct spmc_queue w, r;
    int rc = create_queue(&w, j->name, j->fanout, 8);
    if (rc != 0 || (rc = spmc_queue_attach(&r, j->name, ELEM, 0)) != 0)
        return PEER_FAIL(j, rc);
    if (unshare(CLONE_NEWPID) != 0)
        return PEER_FAIL(j, -errno);
    pid_t c = fork();
    if (c < 0)
        return PEER_FAIL(j, -errno);
    if (c == 0)
        _exit(getpid() != 1 ? 3 : spmc_queue_destroy(&w) != 0 ? 4
                              : spmc_queue_destroy(&r) != 0  ? 5 : 0);
    int status;
    while (waitpid(c, &status, 0) < 0)
        if (errno != EINTR)
            return PEER_FAIL(j, -errno);
    struct spmc_stats st;
    if ((rc = spmc_queue_stats(&w, &st)) != 0)
        return PEER_FAIL(j, rc);
    say(j, REP_RESULT, WIFEXITED(status) ? WEXITSTATUS(status) : 128, (uint64_t)st.closed,
        tu_segment_size(j->name) == -ENOENT);
    unsigned char m[ELEM];
    msg_fill(m, ELEM, 0);
    if ((rc = spmc_queue_push(&w, m, STUCK_NS)) != 0)
        return PEER_FAIL(j, rc);
    rc = spmc_queue_try_pop(&r, m);
    int rc2 = spmc_queue_try_pop(&r, m);
    say(j, REP_DONE, rc, (uint64_t)(int64_t)rc2, 0);
    (void)spmc_queue_destroy(&r);
    (void)spmc_queue_destroy(&w);
    return 0;
}

START_TEST(test_parent_handles_in_a_forked_child_with_the_same_pid)
{
    /* Containers run their main program as PID 1. A child it forks into a
     * new PID namespace is PID 1 too: a handle that knows its owner by pid
     * takes the child for its owner. */
    SKIP_UNLESS_UNSHARE(CLONE_NEWPID);
    const enum spmc_fanout f = modes[_i];
    const char *name = tu_name();
    struct job j = {.name = name, .fanout = f};
    struct peer p = start_peer(PID_NS, pid1_parent_body, j);
    struct rep r = expect(&p, REP_RESULT);
    ck_assert_msg(r.rc == 0, "the child (PID 1 again) exited with %d", r.rc);
    struct rep d = expect(&p, REP_DONE);
    ck_assert_msg(r.a == 0 && r.b == 0 && d.rc == 0 && (int)(int64_t)d.a == -EAGAIN,
                  "destroy() of the parent's handles in a forked child with the parent's pid: "
                  "queue closed %d, name removed %d; the parent's reader then got %s, then %s",
                  (int)r.a, (int)r.b, strerror(-d.rc), strerror(-(int)(int64_t)d.a));
    peer_exits_ok(&p);
}
END_TEST

/* ===================================================================== */
/* 7. A dead reader does not count                                         */
/* ===================================================================== */

START_TEST(test_wait_readers_does_not_count_a_dead_reader)
{
    /* _i: bit 0 the fan-out; bit 1 the reader in a new PID namespace (where
     * it is pid 1: to a pid-based writer, alive for ever). */
    const enum spmc_fanout f = modes[_i & 1];
    const enum where w = _i >> 1 ? PID_NS : PLAIN;
    if (w == PID_NS)
        SKIP_UNLESS_UNSHARE(CLONE_NEWPID);
    const char *name = tu_name();
    struct job j = {.name = name, .fanout = f, .hold = 1};
    struct peer r = start_peer(w, reader_body, j);
    ck_assert_int_eq(create_queue(&qw, name, f, 8), 0);
    ck_assert_int_eq(expect(&r, REP_READY).rc, 0);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, STUCK_NS), 0);
    ck_assert_uint_eq(stats_of(&qw).readers, 1);
    kill_peer(&r);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, 100 * MS), -ETIMEDOUT);
    struct spmc_stats st = stats_of(&qw);
    ck_assert_uint_ge(st.reaped, 1);
    ck_assert_uint_eq(st.readers, 0);
    /* Its entry is free for the next reader. */
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), 0);
    ck_assert_int_eq(spmc_queue_wait_readers(&qw, 1, 0), 0);
    push_seq(&qw, 0);
    struct take k = {0, 0, 0, 0};
    pop_one(&qr, &k, NULL);
    ck_assert_uint_eq(k.last, 0);
}
END_TEST

/* exec(): a reader whose process replaces its program has no handle any
 * more: its descriptor is close-on-exec, so its lock goes with it, and the
 * writer takes its entry back while the process itself lives on (as
 * another program). A pid-based queue would wait for it for ever. */
START_TEST(test_reader_that_execs_is_gone)
{
    const char *name = tu_name();
    ck_assert_int_eq(create_queue(&qw, name, SPMC_BROADCAST, 8), 0);
    int fds[2];
    tu_pipe(fds);
    pid_t p = tu_fork();
    if (p == 0) {
        struct spmc_queue q;
        uint64_t ok = spmc_queue_attach(&q, name, ELEM, 0) == 0;
        if (write(fds[1], &ok, sizeof ok) != (ssize_t)sizeof ok)
            _exit(1);
        execl("/bin/sleep", "sleep", "60", (char *)NULL);
        _exit(127);
    }
    uint64_t ok = 0;
    ck_assert_uint_eq(tu_read_full(fds[0], &ok, sizeof ok, IO_TIMEOUT_MS), sizeof ok);
    ck_assert_uint_eq(ok, 1);
    for (uint64_t s = 0; s < 100; s++) /* many laps of the 8-slot ring */
        push_seq(&qw, s);
    struct spmc_stats st = stats_of(&qw);
    ck_assert_uint_ge(st.reaped, 1);
    ck_assert_uint_eq(st.readers, 0);
    ck_assert_int_eq(kill(p, 0), 0); /* the process lives on, as sleep */
}
END_TEST

/* ===================================================================== */
/* 8. Closed handles                                                       */
/* ===================================================================== */

START_TEST(test_detached_reader_is_gone_while_its_process_keeps_another_handle)
{
    /* A handle's lock must go with the handle, even while the process
     * keeps other handles on the same queue (they share one mapping). Four
     * readers fill the table; one detaches; its entry must be free again. */
    const enum spmc_fanout f = modes[_i];
    const char *name = tu_name();
    struct job j = {.name = name, .fanout = f, .capacity = 8};
    struct peer w = start_peer(PLAIN, writer_body, j); /* no mapping of ours is its */
    ck_assert_int_eq(expect(&w, REP_READY).rc, 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(spmc_queue_attach(&qx[i], name, ELEM, 0), 0);
    ck_assert_uint_eq(expect(&w, REP_PUSHED).a, 0); /* it saw a reader */
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), -EUSERS);
    ck_assert_int_eq(spmc_queue_destroy(&qx[0]), 0);
    ck_assert_uint_eq(stats_of(&qx[1]).readers, 3);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), 0);
    ck_assert_uint_eq(stats_of(&qr).readers, 4);
    tell(&w, 'c');
    peer_exits_ok(&w);
}
END_TEST

START_TEST(test_stats_after_a_clean_close)
{
    /* spmc_stats.writer_alive: "1 while the writer holds its lock: its
     * handle is open (0 once it has closed, or died)"; closed tells the two
     * apart, and so does pop (-EPIPE, not -EOWNERDEAD). The writer is
     * another process, which holds its lock while it lives. */
    const char *name = tu_name();
    struct job j = {.name = name, .fanout = SPMC_BROADCAST, .capacity = 8};
    struct peer w = start_peer(PLAIN, writer_body, j);
    ck_assert_int_eq(expect(&w, REP_READY).rc, 0);
    ck_assert_int_eq(spmc_queue_attach(&qr, name, ELEM, 0), 0);
    ck_assert_uint_eq(expect(&w, REP_PUSHED).a, 0);
    ck_assert_int_eq(stats_of(&qr).writer_alive, 1);
    tell(&w, 'c');
    peer_exits_ok(&w);
    unsigned char m[ELEM];
    ck_assert_int_eq(spmc_queue_try_pop(&qr, m), -EPIPE);
    ck_assert_int_eq(spmc_queue_pop(&qr, m, QUIET_NS), -EPIPE);
    struct spmc_stats st = stats_of(&qr);
    ck_assert_int_eq(st.closed, 1);
    ck_assert_int_eq(st.writer_alive, 0);
}
END_TEST

/* ===================================================================== */
/* The suite                                                               */
/* ===================================================================== */

static Suite *liveness_suite(void)
{
    Suite *s = suite_create("liveness " SPMC_DAY);
    TCase *tc = tcase_create("pid namespaces");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_programs_across_pid_namespaces, 0, 4);
    tcase_add_loop_test(tc, test_program_killed_in_a_pid_namespace_is_dead_outside, 0, 2);
    tcase_add_loop_test(tc, test_stopped_reader_in_a_pid_namespace_is_not_reaped, 0, 2);
    tcase_add_loop_test(tc, test_second_creator_in_another_pid_namespace_is_refused, 0, 2);
    tcase_add_loop_test(tc, test_writer_killed_in_another_pid_namespace_is_dead, 0, 4);
    suite_add_tcase(s, tc);

    tc = tcase_create("no /proc");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_peer_without_proc, 0, 4);
    suite_add_tcase(s, tc);

    tc = tcase_create("exited main thread");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_writer_whose_main_thread_exited_is_alive, 0, 4);
    tcase_add_loop_test(tc, test_reader_whose_main_thread_exited_is_not_reaped, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("fork");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_forked_child_does_not_keep_a_dead_parent_alive, 0, 4);
    tcase_add_loop_test(tc, test_parent_handles_in_a_forked_child, 0, 2);
    tcase_add_loop_test(tc, test_parent_handles_in_a_forked_child_with_the_same_pid, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("dead readers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_wait_readers_does_not_count_a_dead_reader, 0, 4);
    tcase_add_test(tc, test_reader_that_execs_is_gone);
    suite_add_tcase(s, tc);

    tc = tcase_create("closed handles");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_detached_reader_is_gone_while_its_process_keeps_another_handle,
                        0, 2);
    tcase_add_test(tc, test_stats_after_a_clean_close);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(liveness_suite(), "check_liveness");
}
