/* soak.c - day 6 under abuse: one producer streams for a given time while
 * consumer processes attach, detach and are killed with SIGKILL at random,
 * in both fan-out modes; then a report. Exits non-zero if a surviving
 * broadcast consumer lost a message, a work-sharing message was delivered
 * twice, any message was damaged, or a segment was left behind.
 *
 * usage: soak [--seconds S] [--seed N]   (make soak; SOAK_SECONDS=S) */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
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

/* ===================================================================== */
/* What consumers report, in memory shared with the parent                 */
/* ===================================================================== */

struct report {
    _Atomic uint64_t received, first, last, errors, duplicates;
    _Atomic int ended; /* 1: end of stream, 2: detached on SIGTERM, 3: error */
};

struct shared {
    struct report consumers[MAX_CONSUMERS];
    _Atomic unsigned char seen[MAX_MESSAGES / 8]; /* share: delivered once? */
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
    struct spmc_queue q;
    if (spmc_queue_attach(&q, name, ELEM, CAPACITY) != 0) {
        atomic_store(&r->ended, 3);
        _exit(0); /* the queue closed or the table is full: not an error */
    }
    const int share = q.fanout == SPMC_SHARE;
    unsigned char m[ELEM];
    int rc = 0;
    uint64_t next = 0, n = 0;
    while (!detach_now && (rc = spmc_queue_pop(&q, m, 100000000ll)) != -EPIPE) {
        if (rc == -ETIMEDOUT)
            continue;
        if (rc != 0) {
            atomic_fetch_add(&r->errors, 1);
            break;
        }
        uint64_t s = msg_seq(m);
        if (!msg_intact(m, ELEM) || (n > 0 && (share ? s < next : s != next)))
            atomic_fetch_add(&r->errors, 1);
        if (share && s < MAX_MESSAGES &&
            (atomic_fetch_or(&sh->seen[s / 8], (unsigned char)(1u << (s % 8))) >> (s % 8)) & 1)
            atomic_fetch_add(&r->duplicates, 1);
        if (n == 0)
            atomic_store(&r->first, s);
        atomic_store(&r->last, s);
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
};

struct tally {
    uint64_t sent, started, killed, detached, reclaimed, taken_back;
};

static unsigned next_id;

static void spawn(const char *name, struct live *l, unsigned *n, struct tally *t)
{
    if (*n >= MAX_LIVE || next_id >= MAX_CONSUMERS)
        return;
    unsigned id = next_id++;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork:");
    if (pid == 0)
        consumer(name, id);
    l[(*n)++] = (struct live){pid, id};
    t->started++;
}

static void end_one(struct live *l, unsigned *n, unsigned k, int sig)
{
    kill(l[k].pid, sig);
    while (waitpid(l[k].pid, NULL, 0) < 0 && errno == EINTR)
        ;
    l[k] = l[--*n];
}

static int run_mode(enum spmc_fanout fanout, double seconds, unsigned *seed)
{
    char name[SPMC_NAME_MAX + 1];
    snprintf(name, sizeof name, "/spmc-soak-%ld", (long)getpid());
    const char *mode = fanout == SPMC_SHARE ? "share" : "broadcast";
    struct spmc_queue q;
    struct spmc_options o = {fanout, MAX_LIVE + 2, 0600};
    int rc = spmc_queue_create_opts(&q, name, ELEM, CAPACITY, &o);
    if (rc != 0)
        die_rc(rc, "cannot create %s", name);
    struct live l[MAX_LIVE];
    unsigned n = 0, first_id = next_id;
    struct tally t = {0};
    for (int i = 0; i < 3; i++)
        spawn(name, l, &n, &t);
    if (spmc_queue_wait_readers(&q, 1, 5000000000ll) != 0)
        fprintf(stderr, "soak: no consumer attached within 5 s; going on\n");

    unsigned char m[ELEM];
    uint64_t end = now_ns() + (uint64_t)(seconds * 1e9), next_chaos = 0;
    rc = 0;
    for (uint64_t round = 0; t.sent < MAX_MESSAGES; round++) {
        if ((round & 1023) == 0 || rc != 0) { /* a clock read per 1024 pushes */
            uint64_t now = now_ns();
            if (now >= end)
                break;
            if (now >= next_chaos) { /* every 20-80 ms, one random event */
                next_chaos = now + 20000000ull + (uint64_t)(rand_r(seed) % 60) * 1000000ull;
                int dice = rand_r(seed) % 10;
                if (dice < 3 && n > 0) {
                    end_one(l, &n, (unsigned)rand_r(seed) % n, SIGKILL);
                    t.killed++;
                } else if (dice < 5 && n > 0) {
                    end_one(l, &n, (unsigned)rand_r(seed) % n, SIGTERM);
                    t.detached++;
                } else {
                    spawn(name, l, &n, &t);
                }
            }
        }
        msg_fill(m, ELEM, t.sent);
        rc = spmc_queue_push(&q, m, 10000000ll); /* 10 ms, then look again */
        if (rc == 0)
            t.sent++;
        else if (rc != -ETIMEDOUT)
            die_rc(rc, "push");
    }
    if (n == 0) { /* someone should drain what is left */
        spawn(name, l, &n, &t);
        if (spmc_queue_wait_readers(&q, 1, 5000000000ll) != 0)
            fprintf(stderr, "soak: the last consumer did not attach\n");
    }
    struct spmc_stats st;
    if (spmc_queue_stats(&q, &st) == 0) {
        t.reclaimed = st.reaped;
        t.taken_back = st.redelivered;
    }
    (void)spmc_queue_destroy(&q); /* end of stream: survivors drain, then stop */
    while (n > 0) {
        while (waitpid(l[n - 1].pid, NULL, 0) < 0 && errno == EINTR)
            ;
        n--;
    }

    /* The report. */
    uint64_t lost = 0, dups = 0, errors = 0, survivors = 0, delivered = 0;
    printf("%-9s  sent %" PRIu64 ", consumers started %" PRIu64 ", killed %" PRIu64
           ", detached %" PRIu64 ", entries reclaimed %" PRIu64 ", slots taken back %" PRIu64 "\n",
           mode, t.sent, t.started, t.killed, t.detached, t.reclaimed, t.taken_back);
    for (unsigned id = first_id; id < next_id; id++) {
        struct report *r = &sh->consumers[id];
        uint64_t got = atomic_load(&r->received);
        errors += atomic_load(&r->errors);
        dups += atomic_load(&r->duplicates);
        delivered += got;
        if (atomic_load(&r->ended) != 1)
            continue; /* killed or detached: not a survivor */
        survivors++;
        if (fanout == SPMC_BROADCAST && got > 0) {
            /* From its first message to the very last one, nothing missing. */
            uint64_t owed = t.sent - atomic_load(&r->first);
            lost += owed - got;
            printf("           survivor %u: received %" PRIu64 " (messages %" PRIu64
                   "..%" PRIu64 "), lost %" PRIu64 "\n", id, got, atomic_load(&r->first),
                   atomic_load(&r->last), owed - got);
        }
    }
    if (fanout == SPMC_SHARE) {
        uint64_t once = 0;
        for (uint64_t s = 0; s < t.sent; s++)
            once += (atomic_load(&sh->seen[s / 8]) >> (s % 8)) & 1;
        printf("           survivors %" PRIu64 "; delivered %" PRIu64 " of %" PRIu64
               " exactly once, %" PRIu64 " twice; not delivered %" PRIu64
               " (taken by killed consumers, or still queued at the end)\n",
               survivors, once, t.sent, dups, t.sent - once);
    } else {
        printf("           survivors %" PRIu64 ", messages lost by survivors: %" PRIu64 "\n",
               survivors, lost);
    }
    char path[64];
    snprintf(path, sizeof path, "/dev/shm%s", name);
    int left = access(path, F_OK) == 0;
    printf("           damaged or out-of-order messages: %" PRIu64 ", segments left: %d\n",
           errors, left);
    if (left)
        shm_unlink(name);
    return lost != 0 || dups != 0 || errors != 0 || left;
}

int main(int argc, char **argv)
{
    double seconds = 60;
    unsigned seed = (unsigned)getpid();
    const char *env = getenv("SOAK_SECONDS");
    if (env != NULL && *env != '\0')
        seconds = (double)parse_u64(env, "SOAK_SECONDS");
    static const struct option longopts[] = {
        {"seconds", required_argument, 0, 's'},
        {"seed", required_argument, 0, 'r'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 's': seconds = (double)parse_u64(optarg, "--seconds"); break;
        case 'r': seed = (unsigned)parse_u64(optarg, "--seed"); break;
        case 'h': printf("usage: %s [--seconds S] [--seed N]\n", argv[0]); return 0;
        default: return 2;
        }
    }
    if (seconds < 2)
        die("--seconds: at least 2");
    setvbuf(stdout, NULL, _IOLBF, 0);
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        die("mmap of the reports:");
    printf("soak: %.0f s, seed %u: consumers attach, detach (SIGTERM) and are killed "
           "(SIGKILL) at random\n", seconds, seed);
    int bad = run_mode(SPMC_BROADCAST, seconds / 2, &seed);
    bad |= run_mode(SPMC_SHARE, seconds / 2, &seed);
    munmap(sh, sizeof *sh);
    printf("soak: %s\n", bad ? "FAILED" : "passed: nothing lost by survivors, nothing twice, "
                                          "nothing left");
    return bad;
}
