/* consumer.c - day 8: one of several consumers; checks every record, or,
 * with --lines, prints each as a line, read in place; Ctrl-C or SIGTERM
 * detaches cleanly, a producer that died is reported.
 *
 * Broadcast: the messages must be consecutive from the first one received
 * (a consumer that attaches late starts at the producer's position).
 * Share: each consumer gets some of the messages, in increasing order,
 * except one delivered again after the consumer that first claimed it
 * died: that one may come late (it is still checked byte for byte). */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ===================================================================== */
/* Options                                                                 */
/* ===================================================================== */

/* Message sizes start at 8 bytes, the sequence number: the largest
 * capacity is the one for 8-byte messages. */
/* What this day's spmc_queue_create() accepts (common.h): the ranges that
 * the option errors and die_create() name. A copy sets .share for a
 * work-sharing queue. */
static const struct queue_limits limits = QUEUE_LIMITS_RECORDS(
    SPMC_NAME_MAX, sizeof(struct spmc_shm_header) + SPMC_MAX_READERS * sizeof(struct spmc_shm_reader),
    0);

struct options {
    const char *name;
    size_t size;
    uint64_t capacity;
    int lines;
};

static void parse_options(struct options *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"name", required_argument, 0, 'n'},
        {"size", required_argument, 0, 's'},
        {"capacity", required_argument, 0, 'c'},
        {"lines", no_argument, 0, 'l'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *o = (struct options){"/spmc_test_queue", 64, 0, 0}; /* capacity 0: the queue's */
    int size_given = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': o->name = parse_name(optarg); break;
        case 's':
            o->size = (size_t)parse_u64(optarg, "--size", limits.max_size);
            size_given = 1;
            break;
        case 'c': o->capacity = parse_u64(optarg, "--capacity", queue_max_capacity(&limits, 8)); break;
        case 'l': o->lines = 1; break;
        case 'h':
            printf("usage: %s [--name /NAME] [--size BYTES] [--capacity N] [--lines]\n"
                   "\n"
                   "  --size BYTES  the queue's largest record (default 64; with --lines,\n"
                   "                the queue's, whatever it is)\n"
                   "  --lines       print each record as a line on standard output, read\n"
                   "                in place; reports go to stderr\n"
                   "\n"
                   "Exit status:\n"
                   "  0      every message checked, up to the end of the stream\n"
                   "  1      an error, printed on stderr (no queue to attach to, a wrong or\n"
                   "         damaged message, no message for 10 s)\n"
                   "  2      the producer died (every message it published was received),\n"
                   "         or an unknown option, or an argument that is not an option\n"
                   "  130    stopped by SIGINT (Ctrl-C), 143 by SIGTERM: detached cleanly\n"
                   "  128+N  killed by another signal N\n",
                   argv[0]);
            exit(0);
        default: usage_error();
        }
    }
    no_operands(argc, argv);
    if (o->lines && !size_given)
        o->size = 0; /* the queue's */
    if (!o->lines && o->size < 8)
        die("--size must be at least 8 (room for the sequence number)");
}

/* ===================================================================== */
/* Signals                                                                 */
/* ===================================================================== */

static volatile sig_atomic_t stop; /* set by SIGINT or SIGTERM: which one */

/* Attach, giving a producer that is just starting up 5 s to appear (no
 * segment yet: -ENOENT) and to finish its header (a live creator still
 * writing it: -ETIMEDOUT, after attach's own wait); -EINTR when a signal
 * stops the waiting first. */
static int attach(struct spmc_queue *q, const struct options *o)
{
    struct timespec nap = {0, 10000000}; /* 10 ms; a signal cuts it short */
    int rc = -ENOENT;
    for (int i = 0; i < 500 && (rc == -ENOENT || rc == -ETIMEDOUT) && !stop; i++) {
        rc = spmc_queue_attach(q, o->name, o->size, o->capacity);
        if (rc == -ENOENT)
            nanosleep(&nap, NULL);
    }
    return (rc == -ENOENT || rc == -ETIMEDOUT) && stop ? -EINTR : rc;
}

/* Pop in 100 ms slices, at most 10 s in all. -EINTR only when a signal cut
 * the waiting short: a message popped as the signal came is returned (0)
 * and counted, never dropped (in work-sharing no one else would get it). */
static long pop_or_stop(struct spmc_queue *q, void *out, size_t size)
{
    long rc = -ETIMEDOUT;
    for (int slice = 0; slice < 100 && rc == -ETIMEDOUT && !stop; slice++)
        rc = spmc_queue_pop(q, out, size, 100000000ll);
    return rc == -ETIMEDOUT && stop ? -EINTR : rc;
}

/* The same for a look in place. No timeout with --lines: a pipeline waits
 * for its input as long as it takes (the producer's death or a signal
 * ends the wait). */
static int peek_or_stop(struct spmc_queue *q, const void **rec, size_t *len)
{
    int rc = -ETIMEDOUT;
    while (rc == -ETIMEDOUT && !stop)
        rc = spmc_queue_peek(q, rec, len, 100000000ll);
    return rc == -ETIMEDOUT && stop ? -EINTR : rc;
}

/* --lines: print each record as a line, straight from the ring. */
static int print_lines(struct spmc_queue *q, uint64_t *received)
{
    const void *rec;
    size_t len;
    int rc;
    while ((rc = peek_or_stop(q, &rec, &len)) == 0) {
        if (fwrite(rec, 1, len, stdout) != len || putchar('\n') == EOF)
            die("writing standard output failed after %" PRIu64 " lines:", *received);
        (*received)++;
        rc = spmc_queue_release(q);
        if (rc != 0)
            break;
    }
    if (fflush(stdout) != 0)
        die("writing standard output failed after %" PRIu64 " lines:", *received);
    return rc;
}

/* Has the queue delivered any message again (its first reader died)? */
static int q_redelivered(const struct spmc_queue *q)
{
    struct spmc_stats st;
    return spmc_queue_stats(q, &st) == 0 && st.redelivered > 0;
}

/* ===================================================================== */
/* Main                                                                    */
/* ===================================================================== */

int main(int argc, char **argv)
{
    struct options o;
    parse_options(&o, argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    catch_stop_signals(&stop); /* common.h; no SA_RESTART: blocking calls return */

    /* With --lines, standard output is the records': reports go to stderr. */
    FILE *out = o.lines ? stderr : stdout;
    struct spmc_queue q;
    fprintf(out, "creating spmc_queue %s of size %zu with mode reader\n", o.name, o.size);
    long rc = attach(&q, &o);
    if (rc == -EINTR) {
        const int sig = stop;
        fprintf(out, "%s: stopped waiting for %s\n",
                sig == SIGINT ? "interrupted" : "terminated", o.name);
        return 128 + sig;
    }
    if (rc != 0)
        die_attach((int)rc, o.name);
    fprintf(out, "spmc_queue created\n");

    unsigned char *msg = malloc(o.size != 0 ? o.size : 1);
    if (msg == NULL)
        die("out of memory:");
    uint64_t received = 0, sum = 0, next = 0;
    int status = 0;
    const int share = q.fanout == SPMC_SHARE;
    if (o.lines)
        rc = print_lines(&q, &received);
    while (!o.lines && (rc = pop_or_stop(&q, msg, o.size)) >= 0) {
        if ((size_t)rc != o.size) {
            fprintf(stderr, "consumer: message %" PRIu64 " is %ld bytes long, expected %zu\n",
                    received, rc, o.size);
            status = 1;
            break;
        }
        uint64_t seq = msg_seq(msg);
        int in_order = share ? seq >= next || q_redelivered(&q) : (received == 0 || seq == next);
        if (!in_order || !msg_intact(msg, o.size)) {
            fprintf(stderr, "consumer: message %" PRIu64 " is wrong (carries seq %" PRIu64
                    ", expected %s%" PRIu64 "%s)\n", received, seq, share ? ">= " : "",
                    next, msg_intact(msg, o.size) ? "" : ", damaged payload");
            status = 1;
            break;
        }
        if (seq >= next)
            next = seq + 1;
        sum += msg_checksum(msg, o.size);
        received++;
    }
    free(msg);
    if (status == 0 && rc == -EINTR) {
        fprintf(out, "%s: detaching after %" PRIu64 " %s\n",
                stop == SIGINT ? "interrupted" : "terminated", received,
                o.lines ? "lines" : "messages");
        status = 128 + stop;
    } else if (status == 0 && rc == -EOWNERDEAD) {
        fprintf(stderr, "consumer: the producer died after %" PRIu64 " %s "
                "(all it published was received)\n", received,
                o.lines ? "lines" : "messages");
        status = 2;
    } else if (status == 0 && rc != -EPIPE) {
        fprintf(stderr, "consumer: pop failed after %" PRIu64 " messages: %s\n", received,
                rc == -ETIMEDOUT ? "no message for 10 s"
                : rc == -EMSGSIZE ? "a record longer than --size"
                                  : "corrupted queue");
        status = 1;
    }
    if (o.lines)
        fprintf(out, "received %" PRIu64 " lines (%s)%s\n", received,
                share ? "share" : "broadcast", status == 0 ? " (end of stream)" : "");
    else
        fprintf(out, "received %" PRIu64 " messages in order (%s), checksum %016" PRIx64
                "%s\n", received, share ? "share" : "broadcast", sum,
                status == 0 ? " (end of stream)" : "");

    fprintf(out, "destroying spmc_queue %s of mode reader\n", o.name);
    (void)spmc_queue_destroy(&q);
    fprintf(out, "spmc_queue destroyed\n");
    return status;
}
