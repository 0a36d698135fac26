/* benchmark.c - days 5 and 6: throughput and round-trip latency, K consumers.
 *
 * Thread mode runs producer and consumer as two threads of one process (the
 * classic benchmark); process mode forks a consumer that attaches by name, the
 * real IPC case. Every message carries its sequence number and a payload
 * derived from it; the consumer checks each one and the run fails on any
 * lost, duplicated, reordered or torn message. With --fanout broadcast each
 * of the --consumers K readers must see every message in order; with
 * --fanout share each reader's messages must come in increasing order and,
 * at the end, a per-consumer bitmap proves every message was received by
 * exactly one reader. */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "bench.h"
#include "common.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* The day whose queue this program is built with: its layout version
 * (day 6 builds this same file against its own spmc_queue.h). */
static char day_name[16];
#define QUEUE_TIMEOUT_NS (10 * 1000000000ll) /* a stuck peer fails the run */

static struct bench_opts opt;

/* The transcript lines of the README; silent with --csv. */
static void say(const char *fmt, ...)
{
    if (opt.csv)
        return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* ===================================================================== */
/* Opening and closing                                                     */
/* ===================================================================== */

/* What this day's spmc_queue_create() accepts (common.h), for die_create();
 * a copy sets .share for a work-sharing queue. */
static const struct queue_limits limits = QUEUE_LIMITS_SLOTS(
    SPMC_NAME_MAX, sizeof(struct spmc_shm_header) + SPMC_MAX_READERS * sizeof(struct spmc_shm_reader),
    0);

static void open_writer(struct spmc_queue *q, const char *name)
{
    say("creating spmc_queue %s of size %zu and capacity %" PRIu64 " with mode writer",
        name, opt.size, opt.capacity);
    struct spmc_options o = {
        .fanout = opt.share ? SPMC_SHARE : SPMC_BROADCAST,
        .max_readers = opt.consumers > SPMC_DEFAULT_READERS ? opt.consumers
                                                            : SPMC_DEFAULT_READERS,
    };
    segment_creating(); /* removed however we end, Ctrl-C included (common.h) */
    int rc = spmc_queue_create_opts(q, name, opt.size, opt.capacity, &o);
    segment_created(name, rc == 0);
    if (rc != 0) {
        struct queue_limits lim = limits;
        lim.share = opt.share;
        die_create(rc, name, opt.size, opt.capacity, &lim);
    }
    say("spmc_queue created");
}

static void open_reader(struct spmc_queue *q, const char *name)
{
    say("creating spmc_queue %s of size %zu and capacity %" PRIu64 " with mode reader",
        name, opt.size, opt.capacity);
    int rc = spmc_queue_attach(q, name, opt.size, opt.capacity);
    if (rc != 0)
        die_attach(rc, name);
    say("spmc_queue created");
}

/* Destroy a writer's queue: its name is no longer ours to remove at exit. */
static void destroy_writer(struct spmc_queue *q)
{
    char name[SPMC_NAME_MAX + 1];
    memcpy(name, q->name, sizeof name);
    segment_destroying();
    (void)spmc_queue_destroy(q);
    segment_destroyed(name);
}

static void close_queue(struct spmc_queue *q, int writer)
{
    char name[SPMC_NAME_MAX + 1];
    memcpy(name, q->name, sizeof name);
    say("destroying spmc_queue %s of mode %s", name, writer ? "writer" : "reader");
    if (writer)
        destroy_writer(q);
    else
        (void)spmc_queue_destroy(q);
    say("spmc_queue destroyed");
}

/* ===================================================================== */
/* Producer and consumer loops                                             */
/* ===================================================================== */

/* What a consumer found; sent back to the parent over a pipe in process
 * mode. */
struct result {
    unsigned consumer;
    uint64_t received;
    uint64_t sum;
    uint64_t end_ns;
    uint64_t futex_calls; /* day 7 on: its sleeps and wakes (spmc_stats) */
    char error[160];
};

static atomic_uint start_line; /* thread mode: every side ready */
static uint64_t writer_futex_calls; /* day 7 on: the producer's sleeps and wakes */

/* Day 7 on: the futex calls (sleeps and wakes) a handle has made. Days 5
 * and 6 have none to count. */
static uint64_t futex_calls(const struct spmc_queue *q)
{
#ifdef SPMC_STATS_SLEEPS
    struct spmc_stats st;
    if (spmc_queue_stats(q, &st) == 0)
        return st.sleeps + st.wakes;
#endif
    (void)q;
    return 0;
}
static unsigned char *seen;    /* share: one bitmap of messages per consumer */
static size_t seen_bytes;      /* bytes per bitmap */

/* Share mode: every message was taken by exactly one consumer. */
static int check_exactly_once(char *why, size_t len)
{
    for (uint64_t m = 0; m < opt.messages; m++) {
        unsigned takers = 0;
        for (unsigned k = 0; k < opt.consumers; k++)
            takers += (seen[k * seen_bytes + m / 8] >> (m % 8)) & 1;
        if (takers != 1) {
            snprintf(why, len, "message %" PRIu64 " was received %u times", m, takers);
            return 0;
        }
    }
    return 1;
}

/* Check one run's outcome and print its transcript lines; 1 if it failed. */
static int report(const struct result *r, uint64_t sum, uint64_t start_ns,
                  double *seconds)
{
    uint64_t total = 0, sums = 0, end_ns = start_ns, futex = 0;
    char why[256] = "";
    for (unsigned k = 0; k < opt.consumers; k++) {
        total += r[k].received;
        sums += r[k].sum;
        futex += r[k].futex_calls;
        if (r[k].end_ns > end_ns)
            end_ns = r[k].end_ns;
        if (r[k].error[0] && !why[0])
            snprintf(why, sizeof why, "consumer %u: %s", k, r[k].error);
        if (!opt.share && !why[0] && (r[k].received != opt.messages || r[k].sum != sum))
            snprintf(why, sizeof why, "consumer %u received %" PRIu64 " of %" PRIu64
                     " messages", k, r[k].received, opt.messages);
    }
    if (opt.share && !why[0] && (total != opt.messages || sums != sum))
        snprintf(why, sizeof why, "the consumers received %" PRIu64 " of %" PRIu64
                 " messages", total, opt.messages);
    if (opt.share && !why[0])
        check_exactly_once(why, sizeof why);
    if (why[0]) {
        fprintf(stderr, "benchmark: FAILED: %s\n", why);
        return 1;
    }
    *seconds = (double)(end_ns - start_ns) / 1e9;
    bench_report_run(&opt, day_name, *seconds);
    for (unsigned k = 0; k < opt.consumers && opt.consumers > 1; k++) {
        double rate = (double)r[k].received / ((double)(r[k].end_ns - start_ns) / 1e9);
        if (opt.csv)
            printf("# consumer,%u,%.0f\n", k, rate);
        else
            printf("consumer %u: %" PRIu64 " messages, %.0f msgs/s\n", k, r[k].received, rate);
    }
#ifdef SPMC_STATS_SLEEPS /* no system call on the fast path: how many there were */
    if (opt.csv)
        printf("# futex,%" PRIu64 ",%" PRIu64 "\n", writer_futex_calls, futex);
    else
        printf("futex calls: producer %" PRIu64 ", consumers %" PRIu64 "\n", writer_futex_calls,
               futex);
#else
    (void)futex; /* (zero: days 5 and 6 make no futex calls to count) */
#endif
    say("test_producer_sum = %" PRIu64 " and test_consumer_sum = %" PRIu64, sum,
        opt.share ? sums : r[0].sum);
    return 0;
}

static uint64_t produce(struct spmc_queue *q, uint64_t *start_ns)
{
    unsigned char *msg = malloc(opt.size);
    if (msg == NULL)
        die("out of memory:");
    uint64_t sum = 0;
    *start_ns = now_ns();
    for (uint64_t seq = 0; seq < opt.messages; seq++) {
        msg_fill(msg, opt.size, seq);
        int rc = spmc_queue_push(q, msg, QUEUE_TIMEOUT_NS);
        if (rc != 0) { /* a consumer stopped: its report says why */
            fprintf(stderr, "benchmark: producer: push of message %" PRIu64 " failed: %s\n",
                    seq, strerror(-rc));
            break;
        }
        sum += seq;
    }
    writer_futex_calls = futex_calls(q);
    free(msg);
    return sum;
}

/* Pop until the end of stream. Broadcast: messages 0, 1, 2, ... in order.
 * Share: increasing sequence numbers, each marked in this consumer's bitmap. */
static void consume(struct spmc_queue *q, struct result *r, unsigned k)
{
    unsigned char *msg = malloc(opt.size);
    unsigned char *mine = seen + (size_t)k * seen_bytes;
    if (msg == NULL)
        die("out of memory:");
    memset(r, 0, sizeof *r);
    r->consumer = k;
    uint64_t expect = 0;
    int rc;
    while ((rc = spmc_queue_pop(q, msg, QUEUE_TIMEOUT_NS)) == 0) {
        uint64_t seq = msg_seq(msg);
        if (opt.share ? seq < expect || seq >= opt.messages : seq != expect) {
            snprintf(r->error, sizeof r->error, "%s: expected message %s%" PRIu64
                     ", got %" PRIu64, seq < expect ? "duplicate or reordered" : "lost",
                     opt.share ? ">= " : "", expect, seq);
            break;
        }
        if (!msg_intact(msg, opt.size)) {
            snprintf(r->error, sizeof r->error, "torn message %" PRIu64 ": payload damaged", seq);
            break;
        }
        if (opt.share)
            mine[seq / 8] |= (unsigned char)(1u << (seq % 8));
        expect = seq + 1;
        r->sum += seq;
        r->received++;
    }
    r->end_ns = now_ns();
    r->futex_calls = futex_calls(q);
    if (rc != 0 && rc != -EPIPE && !r->error[0])
        snprintf(r->error, sizeof r->error, "pop after %" PRIu64 " messages failed: %s",
                 r->received, strerror(-rc));
    free(msg);
}

/* Consumer k's CPU: its own when there is one consumer, else the scheduler's. */
static void pin_consumer(void)
{
    if (opt.consumers == 1)
        bench_pin(&opt, 1);
}

/* ===================================================================== */
/* Thread mode                                                             */
/* ===================================================================== */

struct thread_args {
    struct spmc_queue *q;
    struct result r;
    unsigned k;
    uint64_t sum, start_ns;
};

static void *consumer_thread(void *arg)
{
    struct thread_args *a = arg;
    pin_consumer();
    say("consumer thread %u spawns", a->k);
    atomic_fetch_add(&start_line, 1);
    while (atomic_load(&start_line) < opt.consumers + 1)
        sched_yield();
    consume(a->q, &a->r, a->k);
    close_queue(a->q, 0);
    return NULL;
}

static void *producer_thread(void *arg)
{
    struct thread_args *a = arg;
    bench_pin(&opt, 0);
    say("producer thread spawns");
    atomic_fetch_add(&start_line, 1);
    while (atomic_load(&start_line) < opt.consumers + 1)
        sched_yield();
    a->sum = produce(a->q, &a->start_ns);
    close_queue(a->q, 1); /* end of stream: the consumers drain, then stop */
    return NULL;
}

static int run_threads(const char *name, double *seconds)
{
    struct spmc_queue w, *rd = calloc(opt.consumers, sizeof *rd);
    struct thread_args pa = {.q = &w}, *ca = calloc(opt.consumers, sizeof *ca);
    pthread_t pt, *ct = calloc(opt.consumers, sizeof *ct);
    struct result *r = calloc(opt.consumers, sizeof *r);
    if (rd == NULL || ca == NULL || ct == NULL || r == NULL)
        die("out of memory:");
    open_writer(&w, name);
    for (unsigned k = 0; k < opt.consumers; k++)
        open_reader(&rd[k], name);
    say("Initialized performance benchmark");
    say("waiting for the producer & consumer threads to be ready...");
    atomic_store(&start_line, 0);
    for (unsigned k = 0; k < opt.consumers; k++) {
        ca[k] = (struct thread_args){.q = &rd[k], .k = k};
        if (pthread_create(&ct[k], NULL, consumer_thread, &ca[k]) != 0)
            die("cannot start threads");
    }
    if (pthread_create(&pt, NULL, producer_thread, &pa) != 0)
        die("cannot start threads");
    while (atomic_load(&start_line) < opt.consumers + 1)
        sched_yield();
    say("performance benchmark starts");
    pthread_join(pt, NULL);
    for (unsigned k = 0; k < opt.consumers; k++) {
        pthread_join(ct[k], NULL);
        r[k] = ca[k].r;
    }
    say("performance benchmark ends");
    int failed = report(r, pa.sum, pa.start_ns, seconds);
    say("Destroying the performance benchmark...");
    free(rd);
    free(ca);
    free(ct);
    free(r);
    return failed;
}

/* ===================================================================== */
/* Process mode                                                            */
/* ===================================================================== */

static int run_processes(const char *name, double *seconds)
{
    struct spmc_queue w;
    open_writer(&w, name);
    int fds[2];
    if (pipe(fds) != 0)
        die("pipe:");
    fflush(stdout);
    pid_t *pids = calloc(opt.consumers, sizeof *pids);
    struct result *r = calloc(opt.consumers, sizeof *r);
    if (pids == NULL || r == NULL)
        die("out of memory:");
    for (unsigned k = 0; k < opt.consumers; k++) {
        pids[k] = fork();
        if (pids[k] < 0)
            die("fork:");
        if (pids[k] == 0) { /* consumer process k */
            close(fds[0]);
            pin_consumer();
            struct spmc_queue rd;
            open_reader(&rd, name);
            say("consumer process %u attached", k);
            struct result res;
            consume(&rd, &res, k);
            close_queue(&rd, 0);
            /* One result is less than PIPE_BUF: the write is atomic. */
            if (write(fds[1], &res, sizeof res) != (ssize_t)sizeof res)
                _exit(3);
            _exit(res.error[0] ? 1 : 0);
        }
    }
    close(fds[1]);
    bench_pin(&opt, 0);
    say("Initialized performance benchmark");
    int rc = spmc_queue_wait_readers(&w, opt.consumers, QUEUE_TIMEOUT_NS);
    if (rc != 0)
        die_rc(rc, "the consumer processes never attached");
    say("performance benchmark starts");
    uint64_t start_ns;
    uint64_t sum = produce(&w, &start_ns);
    close_queue(&w, 1); /* end of stream: the consumers drain, then stop */
    int failed = 0;
    for (unsigned k = 0; k < opt.consumers; k++) {
        struct result res;
        if (read(fds[0], &res, sizeof res) != (ssize_t)sizeof res || res.consumer >= opt.consumers)
            die("a consumer process died before reporting");
        r[res.consumer] = res;
    }
    for (unsigned k = 0; k < opt.consumers; k++) {
        int status;
        waitpid(pids[k], &status, 0);
    }
    close(fds[0]);
    say("performance benchmark ends");
    failed = report(r, sum, start_ns, seconds);
    say("Destroying the performance benchmark...");
    free(pids);
    free(r);
    return failed;
}

/* ===================================================================== */
/* Latency: ping-pong through two queues                                   */
/* ===================================================================== */

/* Attach as reader, giving a peer that is still creating the queue time. */
static void attach_retry(struct spmc_queue *q, const char *name)
{
    int rc;
    uint64_t deadline = now_ns() + (uint64_t)QUEUE_TIMEOUT_NS;
    while ((rc = spmc_queue_attach(q, name, opt.size, opt.capacity)) == -ENOENT &&
           now_ns() < deadline)
        sched_yield();
    if (rc != 0)
        die_attach(rc, name);
}

/* The echo side pops each message from ping and pushes it back on pong. */
static void echo_side(const char *ping, const char *pong, uint64_t total)
{
    struct spmc_queue in, out;
    bench_pin(&opt, 1);
    segment_creating();
    int rc = spmc_queue_create(&out, pong, opt.size, opt.capacity);
    segment_created(pong, rc == 0);
    if (rc != 0)
        die_create(rc, pong, opt.size, opt.capacity, &limits);
    attach_retry(&in, ping);
    unsigned char *msg = malloc(opt.size);
    if (msg == NULL)
        die("out of memory:");
    for (uint64_t i = 0; i < total; i++) {
        if ((rc = spmc_queue_pop(&in, msg, QUEUE_TIMEOUT_NS)) != 0 ||
            (rc = spmc_queue_push(&out, msg, QUEUE_TIMEOUT_NS)) != 0)
            die_rc(rc, "echo of round trip %" PRIu64 " failed", i);
    }
    free(msg);
    (void)spmc_queue_destroy(&in);
    destroy_writer(&out);
}

static const uint64_t warmup = 1000;

static void *echo_thread(void *arg)
{
    char **names = arg;
    echo_side(names[0], names[1], opt.latency_count + warmup);
    return NULL;
}

static void run_latency(void)
{
    char ping[SPMC_NAME_MAX + 1], pong[SPMC_NAME_MAX + 1];
    unique_name(ping, sizeof ping, "spmc-bench-a");
    unique_name(pong, sizeof pong, "spmc-bench-b");
    struct spmc_queue out, in;
    segment_creating();
    int rc = spmc_queue_create(&out, ping, opt.size, opt.capacity);
    segment_created(ping, rc == 0);
    if (rc != 0)
        die_create(rc, ping, opt.size, opt.capacity, &limits);

    const uint64_t total = opt.latency_count + warmup;
    char *names[2] = {ping, pong};
    pthread_t tid;
    pid_t pid = -1;
    if (opt.process) {
        fflush(stdout);
        pid = fork();
        if (pid < 0)
            die("fork:");
        if (pid == 0) {
            echo_side(ping, pong, total);
            _exit(0);
        }
    } else if (pthread_create(&tid, NULL, echo_thread, names) != 0) {
        die("cannot start the echo thread");
    }
    bench_pin(&opt, 0);
    attach_retry(&in, pong);
    /* The echo side must have joined ping before the first ping: from day
     * 5 on, a reader starts where the writer is when it joins, and a
     * message pushed before that is not for it. */
    if ((rc = spmc_queue_wait_readers(&out, 1, QUEUE_TIMEOUT_NS)) != 0)
        die_rc(rc, "the echo side never attached");
    uint64_t *rtt = malloc(opt.latency_count * sizeof *rtt);
    unsigned char *msg = malloc(opt.size), *back = malloc(opt.size);
    if (rtt == NULL || msg == NULL || back == NULL)
        die("out of memory:");
    for (uint64_t i = 0; i < total; i++) {
        msg_fill(msg, opt.size, i);
        uint64_t t0 = now_ns();
        if ((rc = spmc_queue_push(&out, msg, QUEUE_TIMEOUT_NS)) != 0 ||
            (rc = spmc_queue_pop(&in, back, QUEUE_TIMEOUT_NS)) != 0)
            die_rc(rc, "round trip %" PRIu64 " failed", i);
        uint64_t t1 = now_ns();
        if (msg_seq(back) != i || !msg_intact(back, opt.size))
            die("round trip %" PRIu64 " came back as %" PRIu64, i, msg_seq(back));
        if (i >= warmup)
            rtt[i - warmup] = t1 - t0;
    }
    (void)spmc_queue_destroy(&in);
    if (opt.process) {
        int status;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            die("the echo process failed");
    } else {
        pthread_join(tid, NULL);
    }
    destroy_writer(&out);
    bench_report_latency(&opt, day_name, rtt, opt.latency_count);
    free(rtt);
    free(msg);
    free(back);
}

/* ===================================================================== */
/* Main                                                                    */
/* ===================================================================== */

int main(int argc, char **argv)
{
    snprintf(day_name, sizeof day_name, "day%u", (unsigned)SPMC_VERSION);
    bench_parse(&opt, argc, argv, BENCH_FANOUT);
    if (opt.latency) {
        run_latency();
        return 0;
    }
    char name[SPMC_NAME_MAX + 1];
    snprintf(name, sizeof name, "/spmc_benchmark_queue");
    if (opt.csv) /* the table runs many benchmarks; keep names apart */
        unique_name(name, sizeof name, "spmc-bench");
    seen_bytes = opt.share ? (size_t)((opt.messages + 7) / 8) : 1;
    seen = mmap(NULL, seen_bytes * opt.consumers, PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS, -1, 0); /* shared with forked consumers */
    if (seen == MAP_FAILED)
        die("mmap of %zu bytes of bitmaps:", seen_bytes * opt.consumers);
    double *seconds = calloc(opt.runs, sizeof *seconds);
    if (seconds == NULL)
        die("out of memory:");
    int failed = 0;
    for (unsigned run = 0; run < opt.runs && !failed; run++) {
        say("Initializing the performance benchmark...");
        memset(seen, 0, seen_bytes * opt.consumers);
        failed = opt.process ? run_processes(name, &seconds[run])
                             : run_threads(name, &seconds[run]);
        say("Destroyed performance benchmark");
    }
    if (!failed)
        bench_report_runs(&opt, seconds, opt.runs);
    free(seconds);
    munmap(seen, seen_bytes * opt.consumers);
    return failed;
}
