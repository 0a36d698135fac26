/* soak.c - day 6 (and days 7 and 8) under abuse: one producer streams for a given time while
 * consumer processes attach, detach (SIGTERM), stop (SIGSTOP, then SIGCONT
 * or SIGKILL) and are killed (SIGKILL) at random, in both fan-out modes;
 * then every message is accounted for.
 *
 * Broadcast: every consumer that survives to the end received every
 * message from its first one to the last one sent, in order.
 * Work-sharing: every message sent was returned by pop() exactly once:
 * recorded by the consumer that got it, or, for a consumer killed between
 * pop() and its record, found in that consumer's in-flight buffer (pop()
 * copies straight into shared memory) and nowhere else. A message whose
 * consumer died after claiming it but before handing its slot back is
 * delivered again by the queue, possibly out of order (counted in
 * spmc_queue_stats()); the report shows both numbers. A last consumer attaches before the producer closes
 * and drains what is left. Exits non-zero if any message is missing, twice,
 * damaged or out of order, or a segment is left behind.
 *
 * usage: soak [--seconds S] [--seed N]   (make soak; SOAK_SECONDS=S) */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define ELEM 64
#define CAPACITY 1024
#define MAX_LIVE 6          /* consumers alive at once */
#define MAX_CONSUMERS 4096  /* consumers started over a whole run */
#define MAX_MESSAGES (1ull << 31)

/* The same soak runs against day 7, whose calls are these, and day 8,
 * whose push and pop take a length (day7/soak.c and day8/soak.c are links
 * to this file, built with their day's header: `make soak` runs all three). */
static int push_msg(struct spmc_queue *q, const void *m, int64_t timeout_ns)
{
#if SPMC_VERSION >= 8
    return spmc_queue_push(q, m, ELEM, timeout_ns);
#else
    return spmc_queue_push(q, m, timeout_ns);
#endif
}

/* 0 with a whole message in @p buf, or a negative errno. */
static int pop_msg(struct spmc_queue *q, void *buf, int64_t timeout_ns)
{
#if SPMC_VERSION >= 8
    long n = spmc_queue_pop(q, buf, ELEM, timeout_ns);
    return n < 0 ? (int)n : n == ELEM ? 0 : -EBADMSG; /* a record of another length */
#else
    return spmc_queue_pop(q, buf, timeout_ns);
#endif
}

/* ===================================================================== */
/* What consumers report, in memory shared with the parent                 */
/* ===================================================================== */

struct report {
    _Atomic uint64_t received, first, last, errors;
    _Atomic uint64_t recording, last_recorded; /* before and after a record */
    _Atomic int attached; /* 1 once attached */
    _Atomic int ended; /* 1: end of stream, 2: detached on SIGTERM, 3: error, 4: no attach */
    alignas(64) unsigned char inflight[ELEM]; /* pop() copies straight here */
};

struct shared {
    struct report consumers[MAX_CONSUMERS];
    _Atomic unsigned char seen[MAX_MESSAGES]; /* share: times each was recorded */
};

static struct shared *sh;
static volatile sig_atomic_t detach_now;

static void on_term(int sig)
{
    (void)sig;
    detach_now = 1;
}

/* ===================================================================== */
/* A consumer process                                                      */
/* ===================================================================== */

static void consumer(const char *name, unsigned id)
{
    struct report *r = &sh->consumers[id];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    atomic_store(&r->last_recorded, UINT64_MAX);
    atomic_store(&r->recording, UINT64_MAX);
    struct spmc_queue q;
    if (spmc_queue_attach(&q, name, ELEM, CAPACITY) != 0) {
        atomic_store(&r->ended, 4);
        _exit(0); /* the queue closed or the table is full: not an error */
    }
    atomic_store(&r->attached, 1);
    const int share = q.fanout == SPMC_SHARE;
    int rc = 0;
    uint64_t next = 0, n = 0;
    while (!detach_now && (rc = pop_msg(&q, r->inflight, 100000000ll)) != -EPIPE) {
        if (rc == -ETIMEDOUT)
            continue;
        if (rc != 0) {
            atomic_fetch_add(&r->errors, 1);
            break;
        }
        uint64_t s = msg_seq(r->inflight);
        /* (Work-sharing has no order across readers, and a message
         * delivered again after its first reader died comes late.) */
        if (!msg_intact(r->inflight, ELEM) || s >= MAX_MESSAGES ||
            (!share && n > 0 && s != next))
            atomic_fetch_add(&r->errors, 1);
        else if (share) {
            atomic_store(&r->recording, s);
            atomic_fetch_add(&sh->seen[s], 1);
        }
        if (n == 0)
            atomic_store(&r->first, s);
        atomic_store(&r->last, s);
        atomic_store(&r->last_recorded, s);
        atomic_store(&r->received, ++n);
        next = s + 1;
    }
    atomic_store(&r->ended, detach_now ? 2 : rc == -EPIPE ? 1 : 3);
    (void)spmc_queue_destroy(&q);
    _exit(0);
}

/* ===================================================================== */
/* The producer and the chaos                                              */
/* ===================================================================== */

struct live {
    pid_t pid;
    unsigned id;
    int stopped;
};

struct tally {
    uint64_t sent, started, killed, detached, stopped, reaped, redelivered;
    uint8_t dead[MAX_CONSUMERS]; /* killed: its in-flight buffer may count */
};

static unsigned next_id;

static int spawn(const char *name, struct live *l, unsigned *n, struct tally *t)
{
    if (*n >= MAX_LIVE || next_id >= MAX_CONSUMERS)
        return -1;
    unsigned id = next_id++;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork:");
    if (pid == 0)
        consumer(name, id);
    l[(*n)++] = (struct live){pid, id, 0};
    t->started++;
    return (int)id;
}

/* Send @p sig to consumer k and, unless it only stops it, reap it. */
static void signal_one(struct live *l, unsigned *n, unsigned k, int sig, struct tally *t)
{
    kill(l[k].pid, sig);
    if (sig == SIGSTOP) {
        l[k].stopped = 1;
        t->stopped++;
        return;
    }
    if (sig == SIGKILL) {
        t->dead[l[k].id] = 1;
        t->killed++;
    } else {
        if (l[k].stopped)
            kill(l[k].pid, SIGCONT);
        t->detached++;
    }
    while (waitpid(l[k].pid, NULL, 0) < 0 && errno == EINTR)
        ;
    l[k] = l[--*n];
}

/* One random event: kill, detach, stop (a stopped consumer is later
 * continued or killed), or a new consumer. */
static void chaos(const char *name, struct live *l, unsigned *n, struct tally *t,
                  unsigned *seed)
{
    for (unsigned k = 0; k < *n; k++)
        if (l[k].stopped) { /* what happens to a stopped one: its fate */
            if (rand_r(seed) % 2)
                signal_one(l, n, k, SIGKILL, t);
            else
                kill(l[k].pid, SIGCONT), l[k].stopped = 0;
            return;
        }
    int dice = rand_r(seed) % 10;
    if (dice < 3 && *n > 0)
        signal_one(l, n, (unsigned)rand_r(seed) % *n, SIGKILL, t);
    else if (dice < 5 && *n > 0)
        signal_one(l, n, (unsigned)rand_r(seed) % *n, SIGTERM, t);
    else if (dice < 6 && *n > 0)
        signal_one(l, n, (unsigned)rand_r(seed) % *n, SIGSTOP, t);
    else
        (void)spawn(name, l, n, t);
}

/* Stream for @p seconds with chaos around; the last consumer attaches
 * before the close. 0, or -1 if that consumer could not attach. */
static int stream(struct spmc_queue *q, const char *name, double seconds, unsigned *seed,
                  struct live *l, unsigned *n, struct tally *t)
{
    unsigned char m[ELEM];
    uint64_t end = now_ns() + (uint64_t)(seconds * 1e9), next_chaos = 0;
    int rc = 0;
    for (uint64_t round = 0; t->sent < MAX_MESSAGES; round++) {
        if ((round & 1023) == 0 || rc != 0) { /* a clock read per 1024 pushes */
            uint64_t now = now_ns();
            if (now >= end)
                break;
            if (now >= next_chaos) { /* every 20-80 ms, one random event */
                next_chaos = now + 20000000ull + (uint64_t)(rand_r(seed) % 60) * 1000000ull;
                chaos(name, l, n, t, seed);
            }
        }
        msg_fill(m, ELEM, t->sent);
        rc = push_msg(q, m, 10000000ll); /* 10 ms, then look again */
        if (rc == 0)
            t->sent++;
        else if (rc != -ETIMEDOUT)
            die_rc(rc, "push");
    }
    for (unsigned k = 0; k < *n; k++) /* no more chaos: the stopped go on */
        if (l[k].stopped)
            kill(l[k].pid, SIGCONT), l[k].stopped = 0;
    /* A drainer that nobody kills, attached before we close. */
    if (*n >= MAX_LIVE)
        signal_one(l, n, 0, SIGTERM, t);
    int drainer = spawn(name, l, n, t);
    if (drainer < 0)
        return -1;
    uint64_t deadline = now_ns() + 10000000000ull;
    while (!atomic_load(&sh->consumers[drainer].attached) && now_ns() < deadline)
        if (atomic_load(&sh->consumers[drainer].ended) != 0)
            return -1;
    return atomic_load(&sh->consumers[drainer].attached) ? 0 : -1;
}

/* ===================================================================== */
/* Accounting                                                              */
/* ===================================================================== */

/* Work-sharing: every message 0..sent-1 exactly once. Returns the number
 * of messages missing or delivered twice. */
static uint64_t account_share(const struct tally *t, unsigned first_id, uint64_t *inflight_own,
                              uint64_t *inflight_again, uint64_t *twice, uint64_t *missing)
{
    *inflight_own = *inflight_again = *twice = *missing = 0;
    /* A consumer killed between pop() and its record: its in-flight
     * message was delivered to it, unless it was delivered again. */
    for (unsigned id = first_id; id < next_id; id++) {
        const struct report *r = &sh->consumers[id];
        if (!t->dead[id] || !msg_intact(r->inflight, ELEM))
            continue;
        uint64_t s = msg_seq(r->inflight);
        if (s >= t->sent || s == atomic_load(&r->last_recorded))
            continue;
        if (atomic_load(&sh->seen[s]) == 0) {
            atomic_store(&sh->seen[s], 1);
            (*inflight_own)++;
        } else if (s != atomic_load(&r->recording)) { /* (else: killed just after its record) */
            (*inflight_again)++;
        }
    }
    for (uint64_t s = 0; s < t->sent; s++) {
        unsigned c = atomic_load(&sh->seen[s]);
        *missing += c == 0;
        *twice += c > 1;
    }
    return *missing + *twice;
}

static int run_mode(enum spmc_fanout fanout, double seconds, unsigned *seed)
{
    char name[SPMC_NAME_MAX + 1];
    snprintf(name, sizeof name, "/spmc-soak-%ld", (long)getpid());
    const char *mode = fanout == SPMC_SHARE ? "share" : "broadcast";
    struct spmc_queue q;
    struct spmc_options o = {.fanout = fanout, .max_readers = MAX_LIVE + 2};
    int rc = spmc_queue_create_opts(&q, name, ELEM, CAPACITY, &o);
    if (rc != 0)
        die_rc(rc, "cannot create %s", name);
    struct live l[MAX_LIVE];
    unsigned n = 0, first_id = next_id;
    static struct tally t;
    memset(&t, 0, sizeof t);
    for (int i = 0; i < 3; i++)
        (void)spawn(name, l, &n, &t);
    if (spmc_queue_wait_readers(&q, 1, 5000000000ll) != 0)
        fprintf(stderr, "soak: no consumer attached within 5 s; going on\n");
    int no_drainer = stream(&q, name, seconds, seed, l, &n, &t) != 0;
    struct spmc_stats st;
    if (spmc_queue_stats(&q, &st) == 0)
        t.reaped = st.reaped, t.redelivered = st.redelivered;
    (void)spmc_queue_destroy(&q); /* end of stream: survivors drain, then stop */
    while (n > 0) {
        while (waitpid(l[n - 1].pid, NULL, 0) < 0 && errno == EINTR)
            ;
        n--;
    }

    /* The report. */
    uint64_t lost = 0, errors = 0, survivors = 0, bad = no_drainer;
    printf("%-9s  sent %" PRIu64 "; consumers started %" PRIu64 ", killed %" PRIu64
           ", detached %" PRIu64 ", stopped %" PRIu64 "; entries reaped %" PRIu64
           ", messages redelivered %" PRIu64 "\n",
           mode, t.sent, t.started, t.killed, t.detached, t.stopped, t.reaped, t.redelivered);
    if (no_drainer)
        printf("           the last consumer did not attach before the close: FAILED\n");
    for (unsigned id = first_id; id < next_id; id++) {
        struct report *r = &sh->consumers[id];
        uint64_t got = atomic_load(&r->received);
        errors += atomic_load(&r->errors);
        if (atomic_load(&r->ended) != 1)
            continue; /* killed, detached or never attached: not a survivor */
        survivors++;
        if (fanout == SPMC_BROADCAST) {
            /* From its first message to the very last one, nothing missing. */
            uint64_t owed = got ? t.sent - atomic_load(&r->first) : 0;
            lost += owed - got;
            if (got == 0)
                printf("           survivor %u: received 0 (it attached after the last "
                       "message)\n", id);
            else
                printf("           survivor %u: received %" PRIu64 " (messages %" PRIu64
                       "..%" PRIu64 "), lost %" PRIu64 "\n", id, got, atomic_load(&r->first),
                       atomic_load(&r->last), owed - got);
        }
    }
    if (fanout == SPMC_SHARE) {
        uint64_t own, again, twice, missing;
        bad += account_share(&t, first_id, &own, &again, &twice, &missing);
        printf("           survivors %" PRIu64 "; of %" PRIu64 " messages: %" PRIu64
               " delivered exactly once (%" PRIu64 " of them to a consumer killed before it"
               " recorded it), %" PRIu64 " twice, %" PRIu64 " missing\n",
               survivors, t.sent, t.sent - missing - twice, own, twice, missing);
        printf("           killed consumers' in-flight messages delivered again: %" PRIu64
               " (the queue redelivered %" PRIu64 ")\n", again, t.redelivered);
        bad += again > t.redelivered; /* more than the queue says it redelivered */
    } else {
        printf("           survivors %" PRIu64 ", messages lost by survivors: %" PRIu64 "\n",
               survivors, lost);
        bad += lost != 0 || survivors == 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/dev/shm%s", name);
    int left = access(path, F_OK) == 0;
    printf("           damaged or out-of-order messages: %" PRIu64 ", segments left: %d\n",
           errors, left);
    if (left)
        shm_unlink(name);
    return bad != 0 || errors != 0 || left;
}

int main(int argc, char **argv)
{
    double seconds = 60;
    unsigned seed = (unsigned)getpid();
    const char *env = getenv("SOAK_SECONDS");
    if (env != NULL && *env != '\0')
        seconds = (double)parse_u64(env, "SOAK_SECONDS", UINT32_MAX);
    static const struct option longopts[] = {
        {"seconds", required_argument, 0, 's'},
        {"seed", required_argument, 0, 'r'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 's': seconds = (double)parse_u64(optarg, "--seconds", UINT32_MAX); break;
        case 'r': seed = (unsigned)parse_u64(optarg, "--seed", UINT_MAX); break;
        case 'h': printf("usage: %s [--seconds S] [--seed N]\n", argv[0]); return 0;
        default: return 2;
        }
    }
    if (seconds < 2)
        die("--seconds: at least 2");
    setvbuf(stdout, NULL, _IOLBF, 0);
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (sh == MAP_FAILED)
        die("mmap of the reports:");
    printf("soak: %.0f s, seed %u: consumers attach, detach (SIGTERM), stop (SIGSTOP) and are "
           "killed (SIGKILL) at random\n", seconds, seed);
    int bad = run_mode(SPMC_BROADCAST, seconds / 2, &seed);
    bad |= run_mode(SPMC_SHARE, seconds / 2, &seed);
    munmap(sh, sizeof *sh);
    printf("soak: %s\n", bad ? "FAILED" : "passed: every message accounted for, nothing twice, "
                                          "nothing left");
    return bad;
}
