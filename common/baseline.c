/* baseline.c - what a user would pick instead of shared memory: a pipe, a
 * Unix stream socket or a POSIX message queue, measured like the queues.
 *
 * Always two processes: the forked child consumes, the parent produces. The
 * child checks every message (sequence number and payload) and reports the
 * first bad one, but keeps reading to the end, so the producer never blocks
 * on a full channel that nobody drains. Timing: the child writes one byte on
 * a control pipe when it is ready; the parent starts the clock when it reads
 * it; the child sends back the time it received the last message.
 */
#define _GNU_SOURCE
#include "bench.h"
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

enum kind { PIPE, SOCKET, MQ };

static struct bench_opts o;
static enum kind kind;
static unsigned char *buf;   /* one message */
static double *run_seconds; /* file scope: a forked child must not leak it */

/* Write all of @p len bytes; 0, or -1 when the reader is gone (EPIPE). */
static int write_all(int fd, const void *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EPIPE)
            return -1;
        if (n < 0)
            die("%s: write:", o.kind);
        p = (const char *)p + n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read up to @p len bytes, stopping early only at end of file. */
static size_t read_all(int fd, void *p, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (char *)p + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("%s: read:", o.kind);
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return got;
}

/* A /proc/sys/fs/mqueue limit, or @p fallback when it cannot be read. */
static long mq_limit(const char *file, long fallback)
{
    char path[64];
    long v = fallback;
    snprintf(path, sizeof path, "/proc/sys/fs/mqueue/%s", file);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        if (fscanf(f, "%ld", &v) != 1)
            v = fallback;
        fclose(f);
    }
    return v;
}

/* The channel of one run: fd[0]/mq is read by the child, fd[1]/mq written. */
struct channel {
    int fd[2];
    mqd_t mq;
};

static void channel_open(struct channel *ch)
{
    if (kind == PIPE) {
        if (pipe(ch->fd) != 0)
            die("pipe:");
    } else if (kind == SOCKET) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, ch->fd) != 0)
            die("socketpair:");
    } else {
        long msgsize_max = mq_limit("msgsize_max", 8192);
        if ((long long)o.size > msgsize_max)
            die("mq: --size %zu is above the message queue limit of %ld bytes "
                "(/proc/sys/fs/mqueue/msgsize_max)", o.size, msgsize_max);
        long maxmsg = mq_limit("msg_max", 10);
        if (o.capacity < (uint64_t)maxmsg)
            maxmsg = (long)o.capacity;
        struct mq_attr attr = {.mq_maxmsg = maxmsg, .mq_msgsize = (long)o.size};
        char name[64];
        unique_name(name, sizeof name, "spmc-bench-mq");
        ch->mq = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
        if (ch->mq == (mqd_t)-1)
            die("mq: mq_open %s (maxmsg %ld, msgsize %zu):", name, maxmsg, o.size);
        /* The child inherits the open queue across fork(), so the name is
         * no longer needed: remove it now and no error path can leak it. */
        if (mq_unlink(name) != 0)
            die("mq: mq_unlink %s:", name);
    }
}

/* Close what this side does not use (@p keep: 0 read end, 1 write end),
 * or, with keep -1, everything. */
static void channel_close(struct channel *ch, int keep)
{
    if (kind == MQ) {
        if (keep < 0 && mq_close(ch->mq) != 0)
            die("mq_close:");
        return;
    }
    for (int i = 0; i < 2; i++)
        if (i != keep && ch->fd[i] >= 0) {
            if (close(ch->fd[i]) != 0)
                die("close:");
            ch->fd[i] = -1;
        }
}

/* Send @p len bytes as one message; 0, or -1 when the consumer is gone. */
static int send_msg(struct channel *ch, const void *p, size_t len)
{
    if (kind != MQ)
        return write_all(ch->fd[1], p, len);
    while (mq_send(ch->mq, p, len, 0) != 0)
        if (errno != EINTR)
            die("mq: mq_send:");
    return 0;
}

/* Receive one message; returns its length (less than size: end of file,
 * or, from a queue, the producer's empty end message). */
static size_t recv_msg(struct channel *ch)
{
    if (kind != MQ)
        return read_all(ch->fd[0], buf, o.size);
    ssize_t n;
    while ((n = mq_receive(ch->mq, (char *)buf, o.size, NULL)) < 0)
        if (errno != EINTR)
            die("mq: mq_receive:");
    return (size_t)n;
}

/* The child: read and check every message, then report the end time on
 * @p ctl. Exits 1 after the last message if any message was wrong. */
static void consumer(struct channel *ch, int ctl)
{
    bench_pin(&o, 1);
    if (write_all(ctl, "r", 1) != 0)
        die("%s: the producer went away", o.kind);
    int bad = 0;
    for (uint64_t seq = 0; seq < o.messages; seq++) {
        size_t n = recv_msg(ch);
        if (n != o.size) {
            fprintf(stderr, "baseline: %s: expected message %llu, got %s\n",
                    o.kind, (unsigned long long)seq,
                    n == 0 ? "the end of the stream" : "a truncated message");
            _exit(1);
        }
        if (!bad && (msg_seq(buf) != seq || !msg_intact(buf, o.size))) {
            fprintf(stderr, "baseline: %s: expected message %llu, received %llu%s\n",
                    o.kind, (unsigned long long)seq,
                    (unsigned long long)msg_seq(buf),
                    msg_intact(buf, o.size) ? "" : " with a damaged payload");
            bad = 1;
        }
    }
    uint64_t end = now_ns();
    if (write_all(ctl, &end, sizeof end) != 0)
        die("%s: the producer went away", o.kind);
    _exit(bad);
}

/* One run: returns its time in seconds. */
static double run(void)
{
    struct channel ch = {.fd = {-1, -1}};
    int ctl[2];
    channel_open(&ch);
    if (pipe(ctl) != 0)
        die("pipe:");

    fflush(NULL); /* the child must not print our buffered output again */
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0)
        die("fork:");
    if (child == 0) {
        /* If the producer dies, so do we (an mq reader would wait forever). */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
            die("prctl:");
        if (getppid() != parent)
            _exit(1);
        if (close(ctl[0]) != 0)
            die("close:");
        channel_close(&ch, 0);
        consumer(&ch, ctl[1]);
    }
    if (close(ctl[1]) != 0)
        die("close:");
    channel_close(&ch, 1);

    char ready;
    if (read_all(ctl[0], &ready, 1) != 1)
        die("%s: the consumer did not start", o.kind);
    uint64_t t0 = now_ns();
    for (uint64_t seq = 0; seq < o.messages; seq++) {
        msg_fill(buf, o.size, seq);
        if (send_msg(&ch, buf, o.size) != 0)
            break; /* the consumer is gone; its exit status says why */
    }
    /* Tell a consumer still reading that nothing more comes: a queue has no
     * end of file, so it gets an empty message; a pipe or socket is closed. */
    if (kind == MQ)
        send_msg(&ch, "", 0);
    channel_close(&ch, -1);

    uint64_t end = 0;
    size_t got = read_all(ctl[0], &end, sizeof end);
    if (close(ctl[0]) != 0)
        die("close:");
    int status;
    if (waitpid(child, &status, 0) != child)
        die("waitpid:");
    if (WIFSIGNALED(status))
        die("%s: consumer killed by signal %d", o.kind, WTERMSIG(status));
    if (WEXITSTATUS(status) != 0 || got != sizeof end)
        die("%s: consumer failed (exit status %d)", o.kind, WEXITSTATUS(status));
    return (double)(end - t0) / 1e9;
}

int main(int argc, char **argv)
{
    bench_parse(&o, argc, argv, BENCH_KIND);
    if (strcmp(o.kind, "pipe") == 0)
        kind = PIPE;
    else if (strcmp(o.kind, "socket") == 0)
        kind = SOCKET;
    else if (strcmp(o.kind, "mq") == 0)
        kind = MQ;
    else
        die("--kind: expected pipe, socket or mq, got '%s'", o.kind);
    if (o.latency)
        die("--latency: not measured by baseline (see the day benchmarks)");
    o.process = 1; /* always a producer and a consumer process */

    /* A consumer that died must give us EPIPE, not kill us with SIGPIPE. */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        die("signal:");
    bench_pin(&o, 0);
    buf = malloc(o.size);
    run_seconds = malloc(o.runs * sizeof *run_seconds);
    if (buf == NULL || run_seconds == NULL)
        die("malloc:");
    for (unsigned i = 0; i < o.runs; i++) {
        run_seconds[i] = run();
        bench_report_run(&o, o.kind, run_seconds[i]);
    }
    bench_report_runs(&o, run_seconds, o.runs);
    free(buf);
    free(run_seconds);
    return 0;
}
