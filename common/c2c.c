/* c2c.c - core-to-core latency: the round-trip time of one cache line.
 *
 * Two threads on two CPUs pass a counter back and forth through one cache
 * line: A stores 2k+1 and waits for 2k+2, B waits for 2k+1 and stores 2k+2.
 * Each round trip moves the line A -> B -> A, so its time is the hardware
 * floor under any shared-memory queue's latency. bench.sh runs this before
 * and after each round to tell whether the CPUs are "near" or "far".
 *
 * Prints one line, e.g. "c2c_ns=63.4": the median over BATCHES batches of
 * round trips, each batch on a line of its own.
 *
 * With --timed, each round trip is timed on its own, with a clock read
 * before and after it, exactly as the benchmarks' --latency round trips
 * are; it prints their percentiles as a latency CSV line, row "cache line":
 * the floor under a queue's round trip as that table measures it, clock
 * reads included. It sits above c2c_ns: a clock read takes tens of
 * nanoseconds, and it holds up the store that starts the round trip.
 */
#define _GNU_SOURCE
#include "bench.h"
#include "common.h"

#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

enum {
    BATCHES = 20,        /* timed batches; we print their median */
    WARMUP = 500,        /* untimed round trips at the start of a batch */
    SPIN_LIMIT = 4096,   /* polls before each wait starts yielding */
};

/* The ping-pong lines, each alone in its 64 bytes. Each batch uses a line
 * of its own: a line's time depends on where the CPU homes its address, and
 * the median over many lines is the same from one run to the next. */
static struct {
    _Alignas(64) _Atomic uint64_t v;
    char pad[64 - sizeof(uint64_t)];
} lines[BATCHES];

static uint64_t per_batch; /* round trips per batch: WARMUP + iters */
static int cpu_b;
static uint64_t *trips; /* --timed: each timed round trip's ns, or NULL */

/* Wait until @p line holds @p want. Spin (the fast path we measure), but
 * yield after SPIN_LIMIT polls so a busy CPU cannot make us hang. */
static void wait_for(_Atomic uint64_t *line, uint64_t want)
{
    unsigned spins = 0;
    while (atomic_load_explicit(line, memory_order_acquire) != want) {
        if (spins < SPIN_LIMIT)
            spins++;
        else
            sched_yield();
    }
}

/* Thread B: answer every odd value with the next even one. */
static void *pong(void *arg)
{
    (void)arg;
    int rc = pin_to_cpu(cpu_b);
    if (rc != 0)
        die_rc(rc, "cannot pin to CPU %d", cpu_b);
    for (int i = 0; i < BATCHES; i++) {
        for (uint64_t k = 0; k < per_batch; k++) {
            wait_for(&lines[i].v, 2 * k + 1); /* acquire: pairs with A's release */
            atomic_store_explicit(&lines[i].v, 2 * k + 2, memory_order_release);
        }
    }
    return NULL;
}

/* Thread A: round trips number @p k to @p end - 1 on @p line. */
static void ping(_Atomic uint64_t *line, uint64_t k, uint64_t end)
{
    for (; k < end; k++) {
        atomic_store_explicit(line, 2 * k + 1, memory_order_release);
        wait_for(line, 2 * k + 2); /* acquire: pairs with B's release */
    }
}

/* Thread A with --timed: the same round trips, each between two clock
 * reads, as the benchmarks' --latency loops time theirs; into *out. */
static void ping_timed(_Atomic uint64_t *line, uint64_t k, uint64_t end, uint64_t *out)
{
    for (; k < end; k++) {
        const uint64_t t0 = now_ns();
        atomic_store_explicit(line, 2 * k + 1, memory_order_release);
        wait_for(line, 2 * k + 2); /* acquire: pairs with B's release */
        *out++ = now_ns() - t0;
    }
}

static void usage(const char *prog, int status)
{
    fprintf(status ? stderr : stdout,
            "usage: %s [--iters N] [--pin A,B] [--timed]\n"
            "  --iters N   round trips per batch (default 5000; %d batches)\n"
            "  --pin A,B   the two CPUs (default 0,1)\n"
            "  --timed     time each round trip with two clock reads, as the\n"
            "              benchmarks' --latency does; print a latency CSV line\n",
            prog, BATCHES);
    exit(status);
}

int main(int argc, char **argv)
{
    uint64_t iters = 5000;
    int cpu_a = 0, timed = 0;
    cpu_b = 1;
    static const struct option longopts[] = {
        {"iters", required_argument, 0, 'i'},
        {"pin", required_argument, 0, 'p'},
        {"timed", no_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'i': iters = parse_u64(optarg, "--iters", UINT64_MAX); break;
        case 'p': {
            char extra;
            if (sscanf(optarg, "%d,%d%c", &cpu_a, &cpu_b, &extra) != 2 ||
                cpu_a < 0 || cpu_b < 0 || cpu_a == cpu_b)
                die("--pin: expected two different CPUs A,B (e.g. 0,1), got '%s'",
                    optarg);
            break;
        }
        case 't': timed = 1; break;
        case 'h': usage(argv[0], 0); break;
        default: usage(argv[0], 2);
        }
    }
    if (optind != argc)
        die("unexpected argument '%s' (see --help)", argv[optind]);
    if (iters == 0 || iters > 100000000)
        die("--iters must be between 1 and 100000000");

    /* With one CPU the two threads would take turns, not share a line. */
    if (usable_cpus() < 2) {
        printf(timed ? "latency,cache line,thread,8,0,nan,nan,nan,nan\n" : "c2c_ns=nan\n");
        return 0;
    }
    if (timed && (trips = malloc((size_t)(BATCHES * iters) * sizeof *trips)) == NULL)
        die("out of memory:");

    per_batch = WARMUP + iters;
    int rc = pin_to_cpu(cpu_a);
    if (rc != 0)
        die_rc(rc, "cannot pin to CPU %d", cpu_a);
    pthread_t b;
    rc = pthread_create(&b, NULL, pong, NULL);
    if (rc != 0)
        die_rc(rc, "pthread_create");

    double ns[BATCHES];
    for (int i = 0; i < BATCHES; i++) {
        ping(&lines[i].v, 0, WARMUP);
        uint64_t t0 = now_ns();
        if (trips != NULL)
            ping_timed(&lines[i].v, WARMUP, per_batch, trips + (size_t)i * iters);
        else
            ping(&lines[i].v, WARMUP, per_batch);
        ns[i] = (double)(now_ns() - t0) / (double)iters;
    }

    rc = pthread_join(b, NULL);
    if (rc != 0)
        die_rc(rc, "pthread_join");
    if (trips != NULL) {
        struct bench_opts o = {.size = sizeof(uint64_t), .csv = 1};
        bench_report_latency(&o, "cache line", trips, (size_t)(BATCHES * iters));
        free(trips);
        return 0;
    }
    printf("c2c_ns=%.1f\n", bench_median(ns, BATCHES));
    return 0;
}
