/* litmus.c - day 5: the store-buffer litmus test, run a million times.
 *
 * Two threads, two shared words x and y, both 0 at first:
 *
 *     thread A          thread B
 *     x = 1;            y = 1;
 *     r1 = y;           r2 = x;
 *
 * Can both loads see 0 (r1 == 0 and r2 == 0)? In any interleaving of the
 * four lines one store comes first, so the other thread's load must see it;
 * "both 0" means a load went ahead of the store before it in its own
 * thread. With release stores and acquire loads C11 allows exactly that: a
 * release orders what comes *before* the store, an acquire what comes
 * *after* the load, and nothing orders a store with a later load. x86
 * allows it too, and it is the one reordering x86 allows: the store waits
 * in the CPU's store buffer until its cache line arrives, and the load
 * after it reads the cache meanwhile. With seq_cst on all four, C11 puts
 * them in one total order that both threads agree on, so "both 0" cannot
 * happen; on x86 the compiler makes the seq_cst store an `xchg` (or a `mov`
 * and an `mfence`), which drains the store buffer before the load.
 *
 * The join protocol of day 5 (join_broadcast() and refresh_limit() in
 * spmc_queue.c) is this test: the writer stores gate and then loads the
 * reader table; a joining reader stores its cursor and state and then
 * loads gate. "Both 0" there is a reader the writer laps. See README.md.
 *
 * Each try is one round: both threads meet at a spin barrier, wait a short
 * random time (so that now one, now the other goes first), do their two
 * lines and record what their load saw. Instead of zeroing x and y between
 * rounds, round k stores k: a load in round k sees k (the other thread's
 * store) or k - 1 (the store of the round before, the "0" of the test).
 *
 * Usage: litmus [--order relaxed|acq_rel|seq_cst|all] [--tries N]
 * Prints, per order: "<order>: N tries, both loads saw 0 in M". Exit 0,
 * whatever it saw: a count is an observation, not a verdict. */
#define _GNU_SOURCE
#include "common.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE 64

enum order { ORDER_RELAXED, ORDER_ACQ_REL, ORDER_SEQ_CST, ORDER_ALL };
static const char *const order_names[] = {"relaxed", "acq_rel", "seq_cst", "all"};

/* Each word on its own cache line: a store of x must not wait for, or
 * bring along, the line of y. */
struct shared {
    alignas(LINE) _Atomic uint64_t x;    /* thread A stores, B loads */
    alignas(LINE) _Atomic uint64_t y;    /* thread B stores, A loads */
    alignas(LINE) _Atomic uint64_t arrived[2]; /* the barrier: last round each thread reached */
};

struct thread_arg {
    struct shared *s;
    int me;              /* 0: thread A, 1: thread B */
    int cpu;             /* -1: not pinned */
    enum order order;
    uint64_t tries;
    unsigned char *old;  /* old[k - 1]: in round k the load saw the old value */
};

/* The two lines of one thread, with constant memory orders (a memory order
 * known only at run time would be compiled as seq_cst). */
static inline uint64_t store_then_load(_Atomic uint64_t *mine, _Atomic uint64_t *theirs,
                                       uint64_t k, enum order order)
{
    switch (order) {
    case ORDER_RELAXED:
        atomic_store_explicit(mine, k, memory_order_relaxed);
        return atomic_load_explicit(theirs, memory_order_relaxed);
    case ORDER_ACQ_REL:
        /* A release orders earlier accesses before the store, an acquire
         * later ones after the load: nothing keeps this load behind this
         * store. */
        atomic_store_explicit(mine, k, memory_order_release);
        return atomic_load_explicit(theirs, memory_order_acquire);
    default:
        /* One total order of all seq_cst operations, which both threads'
         * program orders respect: whichever store is first in it, the
         * other thread's load comes after it. */
        atomic_store_explicit(mine, k, memory_order_seq_cst);
        return atomic_load_explicit(theirs, memory_order_seq_cst);
    }
}

/* Spin until the other thread has reached round k; yield now and then, so
 * that two threads sharing one CPU (or running under Valgrind) get on. */
static void meet(struct shared *s, int me, uint64_t k)
{
    /* Pairs with the acquire load below in the other thread: our store of
     * round k - 1 is done before it starts round k. */
    atomic_store_explicit(&s->arrived[me], k, memory_order_release);
    unsigned spins = 0;
    while (atomic_load_explicit(&s->arrived[!me], memory_order_acquire) < k)
        if (++spins % 1024 == 0)
            sched_yield();
}

static void *run(void *p)
{
    struct thread_arg *a = p;
    if (a->cpu >= 0) {
        int rc = pin_to_cpu(a->cpu);
        if (rc != 0)
            die_rc(rc, "cannot pin thread %c to CPU %d", 'A' + a->me, a->cpu);
    }
    _Atomic uint64_t *mine = a->me == 0 ? &a->s->x : &a->s->y;
    _Atomic uint64_t *theirs = a->me == 0 ? &a->s->y : &a->s->x;
    uint64_t rnd = 0x9E3779B97F4A7C15ull * (uint64_t)(a->me + 1);
    for (uint64_t k = 1; k <= a->tries; k++) {
        meet(a->s, a->me, k);
        /* 0-31 empty turns: the thread that leaves the barrier first
         * should sometimes wait for the other one to catch up. */
        rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17; /* xorshift64 */
        for (volatile unsigned d = (unsigned)(rnd >> 59); d > 0; d--)
            ;
        uint64_t seen = store_then_load(mine, theirs, k, a->order);
        a->old[k - 1] = seen != k; /* k - 1: the other store was not visible yet */
    }
    return NULL;
}

/* One run of @p tries rounds in @p order; returns the rounds in which both
 * loads saw the old value. */
static uint64_t litmus(enum order order, uint64_t tries, const int cpu[2])
{
    struct shared *s = aligned_alloc(LINE, sizeof *s);
    unsigned char *old = calloc(2, (size_t)tries);
    if (s == NULL || old == NULL)
        die("out of memory for %" PRIu64 " tries", tries);
    atomic_init(&s->x, 0);
    atomic_init(&s->y, 0);
    atomic_init(&s->arrived[0], 0);
    atomic_init(&s->arrived[1], 0);
    struct thread_arg a[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        a[i] = (struct thread_arg){s, i, cpu[i], order, tries, old + (size_t)i * tries};
        int rc = pthread_create(&t[i], NULL, run, &a[i]);
        if (rc != 0)
            die_rc(-rc, "pthread_create");
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    uint64_t both = 0;
    for (uint64_t k = 0; k < tries; k++)
        both += old[k] && old[tries + k];
    free(old);
    free(s);
    return both;
}

/* The first two CPUs this process may run on, or -1 -1 if there is only
 * one (then the threads take turns, and "both 0" needs a preemption in
 * between two lines: expect 0). */
static void pick_cpus(int cpu[2])
{
    cpu[0] = cpu[1] = -1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0 || CPU_COUNT(&set) < 2)
        return;
    for (int c = 0, n = 0; c < CPU_SETSIZE && n < 2; c++)
        if (CPU_ISSET(c, &set))
            cpu[n++] = c;
}

/* --help: to stdout, exit 0; anything else we do not know: stderr, exit 2. */
static void usage(const char *prog, int status)
{
    fprintf(status == 0 ? stdout : stderr,
            "usage: %s [--order relaxed|acq_rel|seq_cst|all] [--tries N]\n"
            "Run the store-buffer litmus test N times (default 1000000, at most\n"
            "100000000) with each memory order, or the one named, and count the tries\n"
            "in which both loads saw 0.\n"
            "\n"
            "Exit status: 0 when it ran; 1 on a bad --order or --tries; 2 on an\n"
            "unknown argument.\n",
            prog);
    exit(status);
}

int main(int argc, char **argv)
{
    enum order order = ORDER_ALL;
    uint64_t tries = 1000000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--order") == 0 && i + 1 < argc) {
            const char *o = argv[++i];
            for (order = 0; order <= ORDER_ALL && strcmp(o, order_names[order]) != 0; order++)
                ;
            if (order > ORDER_ALL)
                die("--order %s: say relaxed, acq_rel, seq_cst or all", o);
        } else if (strcmp(argv[i], "--tries") == 0 && i + 1 < argc) {
            tries = parse_u64(argv[++i], "--tries", 100000000);
            if (tries == 0)
                die("--tries %" PRIu64 ": say 1 to 100000000", tries);
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(argv[0], 0);
        } else {
            fprintf(stderr, "litmus: unknown argument '%s'\n", argv[i]);
            usage(argv[0], 2);
        }
    }
    int cpu[2];
    pick_cpus(cpu);
    if (cpu[0] >= 0)
        printf("store buffer litmus test: x = 1; r1 = y  ||  y = 1; r2 = x  "
               "(threads on CPUs %d and %d)\n", cpu[0], cpu[1]);
    else
        printf("store buffer litmus test: x = 1; r1 = y  ||  y = 1; r2 = x  "
               "(one CPU: the threads take turns)\n");
    fflush(stdout);
    for (enum order o = ORDER_RELAXED; o < ORDER_ALL; o++) {
        if (order != ORDER_ALL && order != o)
            continue;
        uint64_t both = litmus(o, tries, cpu);
        printf("%s: %" PRIu64 " tries, both loads saw 0 in %" PRIu64 "\n", order_names[o],
               tries, both);
        fflush(stdout);
    }
    printf("A count above 0 shows the reordering. A count of 0 for relaxed or acq_rel\n"
           "proves nothing: one CPU, or a VM that runs the two vCPUs apart, rarely\n"
           "or never lets the two lines of both threads overlap.\n");
    return 0;
}
