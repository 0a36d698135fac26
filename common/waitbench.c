/* waitbench.c - what waiting costs: a reader blocked on an empty channel,
 * and how soon one message wakes it.
 *
 * Built once per day from day 6 on (build/dayN/waitbench, against that
 * day's queue); --via pipe and --via mq measure the kernel's own blocking
 * channels with the same code around them.
 *
 *   --what idle    a reader process blocks --seconds on an empty channel;
 *                  it reports the CPU time it used (user + system) and its
 *                  context switches (getrusage(): voluntary ones are its
 *                  wake-ups; involuntary ones, preemptions);
 *   --what wakeup  --count times: the writer sleeps --gap-us (so that the
 *                  reader is asleep), reads CLOCK_MONOTONIC and sends one
 *                  message carrying it; the reader reads the clock when it
 *                  has the message. p50 and p99 of the delay.
 *
 * Writer and reader are two processes, pinned to CPUs 0 and 1 when there
 * are two. One CSV line on stdout:
 *   idle,VIA,DAY,SECONDS,CPU_SECONDS,VOLUNTARY,INVOLUNTARY
 *   wakeup,VIA,DAY,COUNT,P50_NS,P99_NS
 * where DAY is the day whose queue this binary holds (for pipe and mq too,
 * though they do not use it). */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <mqueue.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ELEM 64u
#define STUCK_NS (10 * 1000000000ll) /* a peer this late is broken */

enum via { QUEUE, PIPE, MQ };
static const char *const via_name[] = {"queue", "pipe", "mq"};

static struct {
    int idle;          /* --what idle (1) or wakeup (0) */
    enum via via;
    double seconds;    /* --seconds, idle */
    unsigned count;    /* --count, wakeup */
    unsigned gap_us;   /* --gap-us, wakeup */
} opt = {.idle = 1, .via = QUEUE, .seconds = 3, .count = 300, .gap_us = 2000};

static char day_name[16];

/* One channel, writer and reader ends. */
struct channel {
    char name[SPMC_NAME_MAX + 1];
    struct spmc_queue q; /* QUEUE: the writer's handle, or the reader's in the child */
    int fds[2];          /* PIPE */
    mqd_t mq;            /* MQ */
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: waitbench [--what idle|wakeup] [--via queue|pipe|mq] [options]\n"
            "  --what idle      a reader blocks --seconds on an empty channel: its CPU\n"
            "                   time and context switches (default)\n"
            "  --what wakeup    the writer sleeps --gap-us, then sends one message with\n"
            "                   its clock, --count times: p50/p99 of the delay\n"
            "  --via queue|pipe|mq  this day's queue (default), a pipe, a POSIX mq\n"
            "  --seconds S      idle: how long the reader blocks (default 3)\n"
            "  --count N        wakeup: messages (default 300)\n"
            "  --gap-us U       wakeup: the writer's sleep before each (default 2000)\n"
            "Prints one CSV line (see the top of common/waitbench.c).\n"
            "Exit status: 0 measured; 1 a channel failed; 2 bad usage.\n");
}

static void parse(int argc, char **argv)
{
    static const struct option longs[] = {
        {"what", required_argument, NULL, 'w'}, {"via", required_argument, NULL, 'v'},
        {"seconds", required_argument, NULL, 's'}, {"count", required_argument, NULL, 'n'},
        {"gap-us", required_argument, NULL, 'g'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'w':
            if (strcmp(optarg, "idle") != 0 && strcmp(optarg, "wakeup") != 0)
                die("--what: expected idle or wakeup, got '%s'", optarg);
            opt.idle = strcmp(optarg, "idle") == 0;
            break;
        case 'v':
            for (opt.via = QUEUE; opt.via <= MQ; opt.via++)
                if (strcmp(optarg, via_name[opt.via]) == 0)
                    break;
            if (opt.via > MQ)
                die("--via: expected queue, pipe or mq, got '%s'", optarg);
            break;
        case 's': opt.seconds = (double)parse_u64(optarg, "--seconds", 3600); break;
        case 'n': opt.count = (unsigned)parse_u64(optarg, "--count", 1000000); break;
        case 'g': opt.gap_us = (unsigned)parse_u64(optarg, "--gap-us", 1000000); break;
        case 'h': usage(stdout); exit(0);
        default: usage_error();
        }
    }
    no_operands(argc, argv);
    if (opt.count == 0 || opt.seconds <= 0)
        die("--count and --seconds must be positive");
}

static void pin(int cpu)
{
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)sched_setaffinity(0, sizeof set, &set); /* best effort */
}

/* ===================================================================== */
/* The channel                                                             */
/* ===================================================================== */

/* Before fork(): what both ends need. */
static void open_channel(struct channel *ch)
{
    if (opt.via == PIPE) {
        if (pipe(ch->fds) != 0)
            die("pipe:");
    } else if (opt.via == MQ) {
        struct mq_attr attr = {.mq_maxmsg = 8, .mq_msgsize = ELEM};
        unique_name(ch->name, sizeof ch->name, "spmc-wait-mq");
        ch->mq = mq_open(ch->name, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
        if (ch->mq == (mqd_t)-1)
            die("mq_open %s:", ch->name);
        (void)mq_unlink(ch->name); /* the child inherits the descriptor */
    } else {
        unique_name(ch->name, sizeof ch->name, "spmc-wait");
        struct spmc_options o = {.fanout = SPMC_BROADCAST, .max_readers = 1};
        segment_creating();
        int rc = spmc_queue_create_opts(&ch->q, ch->name, ELEM, 64, &o);
        segment_created(ch->name, rc == 0);
        if (rc != 0)
            die_rc(rc, "spmc_queue_create %s", ch->name);
    }
}

/* In the child: become the reader end. */
static void reader_end(struct channel *ch)
{
    if (opt.via == PIPE) {
        close(ch->fds[1]);
    } else if (opt.via == QUEUE) {
        int rc = spmc_queue_attach(&ch->q, ch->name, ELEM, 0);
        if (rc != 0)
            die_rc(rc, "spmc_queue_attach %s", ch->name);
    }
}

/* In the parent, once the reader is there: the writer end. */
static void writer_end(struct channel *ch)
{
    if (opt.via == PIPE) {
        close(ch->fds[0]);
    } else if (opt.via == QUEUE) {
        int rc = spmc_queue_wait_readers(&ch->q, 1, STUCK_NS);
        if (rc != 0)
            die_rc(rc, "the reader never attached");
    }
}

static void send_msg(struct channel *ch, const unsigned char *m)
{
    int rc = 0;
    if (opt.via == PIPE)
        rc = write(ch->fds[1], m, ELEM) == (ssize_t)ELEM ? 0 : -errno;
    else if (opt.via == MQ)
        rc = mq_send(ch->mq, (const char *)m, ELEM, 0) == 0 ? 0 : -errno;
    else
#if SPMC_VERSION >= 8
        rc = spmc_queue_push(&ch->q, m, ELEM, STUCK_NS); /* day 8: records carry their length */
#else
        rc = spmc_queue_push(&ch->q, m, STUCK_NS);
#endif
    if (rc != 0)
        die_rc(rc, "send (%s)", via_name[opt.via]);
}

/* Block for one message, at most @p timeout_ns: 0, -ETIMEDOUT, or dies. */
static int recv_msg(struct channel *ch, unsigned char *m, int64_t timeout_ns)
{
    if (opt.via == QUEUE) {
#if SPMC_VERSION >= 8
        long n = spmc_queue_pop(&ch->q, m, ELEM, timeout_ns);
        int rc = n < 0 ? (int)n : n == ELEM ? 0 : -EBADMSG;
#else
        int rc = spmc_queue_pop(&ch->q, m, timeout_ns);
#endif
        if (rc != 0 && rc != -ETIMEDOUT)
            die_rc(rc, "spmc_queue_pop");
        return rc;
    }
    if (opt.via == PIPE) {
        struct pollfd p = {.fd = ch->fds[0], .events = POLLIN};
        int n = poll(&p, 1, (int)(timeout_ns / 1000000));
        if (n == 0)
            return -ETIMEDOUT;
        if (n < 0 || read(ch->fds[0], m, ELEM) != (ssize_t)ELEM)
            die("pipe: read:");
        return 0;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until); /* mq_timedreceive's clock */
    until.tv_sec += (time_t)(timeout_ns / 1000000000);
    until.tv_nsec += (long)(timeout_ns % 1000000000);
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    if (mq_timedreceive(ch->mq, (char *)m, ELEM, NULL, &until) == (ssize_t)ELEM)
        return 0;
    if (errno == ETIMEDOUT)
        return -ETIMEDOUT;
    die("mq_timedreceive:");
}

static void close_channel(struct channel *ch, int writer)
{
    if (opt.via == PIPE)
        close(ch->fds[writer ? 1 : 0]);
    else if (opt.via == MQ)
        mq_close(ch->mq);
    else if (writer) {
        segment_destroying();
        (void)spmc_queue_destroy(&ch->q);
        segment_destroyed(ch->name);
    } else {
        (void)spmc_queue_destroy(&ch->q);
    }
}

/* ===================================================================== */
/* The two measurements (in the reader: its line goes to stdout)           */
/* ===================================================================== */

static double cpu_seconds(const struct rusage *u)
{
    return (double)u->ru_utime.tv_sec + (double)u->ru_utime.tv_usec / 1e6 +
           (double)u->ru_stime.tv_sec + (double)u->ru_stime.tv_usec / 1e6;
}

static void read_idle(struct channel *ch)
{
    unsigned char m[ELEM];
    struct rusage a, b;
    getrusage(RUSAGE_SELF, &a);
    int rc = recv_msg(ch, m, (int64_t)(opt.seconds * 1e9));
    getrusage(RUSAGE_SELF, &b);
    if (rc != -ETIMEDOUT)
        die("idle: a message arrived on a channel nobody writes to");
    printf("idle,%s,%s,%.0f,%.4f,%ld,%ld\n", via_name[opt.via], day_name, opt.seconds,
           cpu_seconds(&b) - cpu_seconds(&a), b.ru_nvcsw - a.ru_nvcsw, b.ru_nivcsw - a.ru_nivcsw);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void read_wakeups(struct channel *ch)
{
    uint64_t *delay = malloc(opt.count * sizeof *delay);
    if (delay == NULL)
        die("out of memory:");
    unsigned char m[ELEM];
    for (unsigned i = 0; i < opt.count; i++) {
        if (recv_msg(ch, m, STUCK_NS) != 0)
            die("wakeup: message %u never came", i);
        uint64_t t1 = now_ns(), seq, t0;
        memcpy(&seq, m, sizeof seq);
        memcpy(&t0, m + 8, sizeof t0);
        if (seq != i)
            die("wakeup: expected message %u, got %" PRIu64, i, seq);
        delay[i] = t1 - t0;
    }
    qsort(delay, opt.count, sizeof *delay, cmp_u64);
    printf("wakeup,%s,%s,%u,%" PRIu64 ",%" PRIu64 "\n", via_name[opt.via], day_name, opt.count,
           delay[opt.count / 2], delay[(uint64_t)opt.count * 99 / 100]);
    free(delay);
}

static void write_wakeups(struct channel *ch)
{
    unsigned char m[ELEM] = {0};
    struct timespec gap = {.tv_sec = opt.gap_us / 1000000,
                           .tv_nsec = (long)(opt.gap_us % 1000000) * 1000};
    for (uint64_t i = 0; i < opt.count; i++) {
        nanosleep(&gap, NULL); /* the reader falls asleep */
        uint64_t t0 = now_ns();
        memcpy(m, &i, sizeof i);
        memcpy(m + 8, &t0, sizeof t0);
        send_msg(ch, m);
    }
}

int main(int argc, char **argv)
{
    snprintf(day_name, sizeof day_name, "day%u", (unsigned)SPMC_VERSION);
    parse(argc, argv);
    struct channel ch;
    memset(&ch, 0, sizeof ch);
    open_channel(&ch);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork:");
    if (pid == 0) {
        pin(1);
        struct channel mine = ch; /* (the writer's queue handle is the parent's) */
        reader_end(&mine);
        if (opt.idle)
            read_idle(&mine);
        else
            read_wakeups(&mine);
        close_channel(&mine, 0);
        fflush(stdout);
        _exit(0);
    }
    pin(0);
    writer_end(&ch);
    if (!opt.idle)
        write_wakeups(&ch);
    int status;
    if (opt.idle) { /* nothing to send: wait for the reader's verdict first */
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        close_channel(&ch, 1);
    } else {
        close_channel(&ch, 1);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("the reader process failed");
    return 0;
}
