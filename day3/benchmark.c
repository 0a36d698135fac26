/* benchmark.c - days 3 and 4: throughput and round-trip latency of the queue.
 *
 * Thread mode runs producer and consumer as two threads of one process (the
 * classic benchmark); process mode forks a consumer that attaches by name, the
 * real IPC case. Every message carries its sequence number and a payload
 * derived from it; the consumer checks each one and the run fails on any
 * lost, duplicated, reordered or torn message. */
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
#include <sys/wait.h>
#include <unistd.h>

/* The day whose queue this program is built with: its layout version
 * (day 4 builds this same file against its own spmc_queue.h). */
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

/* What this day's spmc_queue_create() accepts (common.h), for die_create(). */
static const struct queue_limits limits =
    QUEUE_LIMITS_RING(SPMC_NAME_MAX, sizeof(struct spmc_shm_header));

static void open_writer(struct spmc_queue *q, const char *name)
{
    say("creating spmc_queue %s of size %zu and capacity %" PRIu64 " with mode writer",
        name, opt.size, opt.capacity);
    segment_creating(); /* removed however we end, Ctrl-C included (common.h) */
    int rc = spmc_queue_create(q, name, opt.size, opt.capacity);
    segment_created(name, rc == 0);
    if (rc != 0)
        die_create(rc, name, opt.size, opt.capacity, &limits);
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

static void close_queue(struct spmc_queue *q)
{
    char name[SPMC_NAME_MAX + 1];
    const char *mode = q->mode == SPMC_WRITER ? "writer" : "reader";
    memcpy(name, q->name, sizeof name);
    say("destroying spmc_queue %s of mode %s", name, mode);
    if (q->mode == SPMC_WRITER)
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
    uint64_t received;
    uint64_t sum;
    uint64_t end_ns;
    char error[160];
};

static atomic_uint start_line; /* thread mode: both sides ready */

/* Check one run's outcome and print its transcript lines; 1 if it failed. */
static int report(const struct result *r, uint64_t sum, double seconds)
{
    if (r->error[0] != '\0' || r->received != opt.messages || r->sum != sum) {
        fprintf(stderr, "benchmark: FAILED: %s (received %" PRIu64 " of %" PRIu64
                ", producer sum %" PRIu64 ", consumer sum %" PRIu64 ")\n",
                r->error[0] ? r->error : "sums differ", r->received, opt.messages,
                sum, r->sum);
        return 1;
    }
    bench_report_run(&opt, day_name, seconds);
    say("test_producer_sum = %" PRIu64 " and test_consumer_sum = %" PRIu64, sum, r->sum);
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
    free(msg);
    return sum;
}

static void consume(struct spmc_queue *q, struct result *r)
{
    unsigned char *msg = malloc(opt.size);
    if (msg == NULL)
        die("out of memory:");
    memset(r, 0, sizeof *r);
    for (uint64_t expect = 0; expect < opt.messages; expect++) {
        int rc = spmc_queue_pop(q, msg, QUEUE_TIMEOUT_NS);
        if (rc != 0) {
            snprintf(r->error, sizeof r->error, "pop of message %" PRIu64 " failed: %s",
                     expect, strerror(-rc));
            break;
        }
        uint64_t seq = msg_seq(msg);
        if (seq != expect) {
            snprintf(r->error, sizeof r->error, "%s: expected message %" PRIu64
                     ", got %" PRIu64, seq < expect ? "duplicate or reordered" : "lost",
                     expect, seq);
            break;
        }
        if (!msg_intact(msg, opt.size)) {
            snprintf(r->error, sizeof r->error, "torn message %" PRIu64 ": payload damaged", seq);
            break;
        }
        r->sum += seq;
        r->received++;
    }
    r->end_ns = now_ns();
    free(msg);
}

/* ===================================================================== */
/* Thread mode                                                             */
/* ===================================================================== */

struct thread_args {
    struct spmc_queue *q;
    struct result r;
    uint64_t sum, start_ns;
};

static void *consumer_thread(void *arg)
{
    struct thread_args *a = arg;
    bench_pin(&opt, 1);
    say("consumer thread spawns");
    atomic_fetch_add(&start_line, 1);
    while (atomic_load(&start_line) < 2)
        sched_yield();
    consume(a->q, &a->r);
    return NULL;
}

static void *producer_thread(void *arg)
{
    struct thread_args *a = arg;
    bench_pin(&opt, 0);
    say("producer thread spawns");
    atomic_fetch_add(&start_line, 1);
    while (atomic_load(&start_line) < 2)
        sched_yield();
    a->sum = produce(a->q, &a->start_ns);
    return NULL;
}

static int run_threads(const char *name, double *seconds)
{
    struct spmc_queue w, rd;
    open_writer(&w, name);
    open_reader(&rd, name);
    say("Initialized performance benchmark");
    say("waiting for the producer & consumer thread to be ready...");
    atomic_store(&start_line, 0);
    struct thread_args pa = {.q = &w}, ca = {.q = &rd};
    pthread_t pt, ct;
    if (pthread_create(&ct, NULL, consumer_thread, &ca) != 0 ||
        pthread_create(&pt, NULL, producer_thread, &pa) != 0)
        die("cannot start threads");
    while (atomic_load(&start_line) < 2)
        sched_yield();
    say("performance benchmark starts");
    pthread_join(pt, NULL);
    pthread_join(ct, NULL);
    say("performance benchmark ends");
    *seconds = (double)(ca.r.end_ns - pa.start_ns) / 1e9;
    int failed = report(&ca.r, pa.sum, *seconds);
    say("Destroying the performance benchmark...");
    close_queue(&w);
    close_queue(&rd);
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
    pid_t pid = fork();
    if (pid < 0)
        die("fork:");
    if (pid == 0) { /* the consumer process */
        close(fds[0]);
        bench_pin(&opt, 1);
        struct spmc_queue rd;
        open_reader(&rd, name);
        say("consumer process attached");
        struct result res;
        consume(&rd, &res);
        close_queue(&rd);
        if (write(fds[1], &res, sizeof res) != (ssize_t)sizeof res)
            _exit(3);
        _exit(res.error[0] ? 1 : 0);
    }
    close(fds[1]);
    bench_pin(&opt, 0);
    say("Initialized performance benchmark");
    int rc = spmc_queue_wait_readers(&w, 1, QUEUE_TIMEOUT_NS);
    if (rc != 0)
        die_rc(rc, "the consumer process never attached");
    say("performance benchmark starts");
    uint64_t start_ns;
    uint64_t sum = produce(&w, &start_ns);
    struct result r;
    ssize_t got = read(fds[0], &r, sizeof r);
    int status;
    waitpid(pid, &status, 0);
    close(fds[0]);
    if (got != (ssize_t)sizeof r)
        die("the consumer process died (status %d)", status);
    say("performance benchmark ends");
    *seconds = (double)(r.end_ns - start_ns) / 1e9;
    int failed = report(&r, sum, *seconds);
    say("Destroying the performance benchmark...");
    close_queue(&w);
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
    bench_parse(&opt, argc, argv, 0);
    if (opt.latency) {
        run_latency();
        return 0;
    }
    char name[SPMC_NAME_MAX + 1];
    snprintf(name, sizeof name, "/spmc_benchmark_queue");
    if (opt.csv) /* the table runs many benchmarks; keep names apart */
        unique_name(name, sizeof name, "spmc-bench");
    double *seconds = calloc(opt.runs, sizeof *seconds);
    if (seconds == NULL)
        die("out of memory:");
    int failed = 0;
    for (unsigned run = 0; run < opt.runs && !failed; run++) {
        say("Initializing the performance benchmark...");
        failed = opt.process ? run_processes(name, &seconds[run])
                             : run_threads(name, &seconds[run]);
        say("Destroyed performance benchmark");
    }
    if (!failed)
        bench_report_runs(&opt, seconds, opt.runs);
    free(seconds);
    return failed;
}
