/* producer.c - day 8: stream numbered records to K consumers, or, with
 * --lines, each line of standard input as one record; Ctrl-C or SIGTERM
 * closes the queue cleanly (consumers drain, then end of stream). */
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
    uint64_t messages;
    enum spmc_fanout fanout;
    unsigned consumers;
    unsigned perm;
    int lines;
};

static void parse_options(struct options *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"name", required_argument, 0, 'n'},
        {"size", required_argument, 0, 's'},
        {"capacity", required_argument, 0, 'c'},
        {"messages", required_argument, 0, 'm'},
        {"fanout", required_argument, 0, 'f'},
        {"consumers", required_argument, 0, 'k'},
        {"group", no_argument, 0, 'g'},
        {"lines", no_argument, 0, 'l'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *o = (struct options){"/spmc_test_queue", 64, 1024, 1000000, SPMC_BROADCAST, 1, 0600, 0};
    int size_given = 0, capacity_given = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': o->name = parse_name(optarg); break;
        case 's':
            o->size = (size_t)parse_u64(optarg, "--size", limits.max_size);
            size_given = 1;
            break;
        case 'c':
            o->capacity = parse_u64(optarg, "--capacity", queue_max_capacity(&limits, 8));
            capacity_given = 1;
            break;
        case 'm': o->messages = parse_u64(optarg, "--messages", UINT64_MAX); break;
        case 'f':
            if (strcmp(optarg, "broadcast") == 0) o->fanout = SPMC_BROADCAST;
            else if (strcmp(optarg, "share") == 0) o->fanout = SPMC_SHARE;
            else die("--fanout: expected broadcast or share, got '%s'", optarg);
            break;
        case 'k': o->consumers = (unsigned)parse_u64(optarg, "--consumers", SPMC_MAX_READERS); break;
        case 'g': o->perm = 0660; break;
        case 'l': o->lines = 1; break;
        case 'h':
            printf("usage: %s [--name /NAME] [--size BYTES] [--capacity N] "
                   "[--messages N] [--fanout broadcast|share] [--consumers K] [--group]\n"
                   "       [--lines]\n"
                   "\n"
                   "  --size BYTES  the largest record (default 64; 4096 with --lines);\n"
                   "                records are numbered and BYTES long without --lines\n"
                   "  --capacity N  slots of 64 bytes in the ring, a power of two, at\n"
                   "                least twice the slots of the largest record\n"
                   "  --lines       send each line of standard input as one record (without\n"
                   "                its newline) until end of input; reports go to stderr\n"
                   "\n"
                   "Exit status:\n"
                   "  0      all messages sent, the queue closed and removed\n"
                   "  1      an error, printed on stderr (the queue could not be created,\n"
                   "         too few readers within 10 s, a push that timed out)\n"
                   "  2      an unknown option, or an argument that is not an option\n"
                   "  130    stopped by SIGINT (Ctrl-C), 143 by SIGTERM: the queue was\n"
                   "         closed cleanly after the messages sent so far\n"
                   "  128+N  killed by another signal N\n",
                   argv[0]);
            exit(0);
        default: usage_error();
        }
    }
    no_operands(argc, argv);
    if (o->lines && !size_given)
        o->size = 4096;
    if (!o->lines && o->size < 8)
        die("--size must be at least 8 (room for the sequence number)");
    /* Without --capacity: room for two of the largest records at least. */
    while (!capacity_given && o->capacity < 2 * ((o->size + 63) / 64))
        o->capacity *= 2;
}

/* ===================================================================== */
/* Signals                                                                 */
/* ===================================================================== */

static volatile sig_atomic_t stop; /* set by SIGINT or SIGTERM: which one */

/* The blocking calls wait in 100 ms slices, for at most 10 s in all, so
 * that a signal is noticed quickly. -EINTR only when a signal cut the
 * waiting short: a call that succeeded returns 0 even if a signal came
 * meanwhile, so the message it pushed is counted (a consumer will get it). */
#define SLICE_NS 100000000ll

static int push_or_stop(struct spmc_queue *q, const void *msg, size_t len)
{
    int rc = -ETIMEDOUT;
    for (int slice = 0; slice < 100 && rc == -ETIMEDOUT && !stop; slice++)
        rc = spmc_queue_push(q, msg, len, SLICE_NS);
    return rc == -ETIMEDOUT && stop ? -EINTR : rc;
}

static int wait_or_stop(struct spmc_queue *q, unsigned count)
{
    int rc = -ETIMEDOUT;
    for (int slice = 0; slice < 100 && rc == -ETIMEDOUT && !stop; slice++)
        rc = spmc_queue_wait_readers(q, count, SLICE_NS);
    return rc == -ETIMEDOUT && stop ? -EINTR : rc;
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

    /* With --lines, standard output is the records' business: reports go
     * to standard error. */
    FILE *out = o.lines ? stderr : stdout;
    struct spmc_queue q;
    const char *fanout = o.fanout == SPMC_SHARE ? "share" : "broadcast";
    fprintf(out, "creating spmc_queue %s of size %zu and capacity %" PRIu64
            " with mode writer, fanout %s\n", o.name, o.size, o.capacity, fanout);
    struct spmc_options opts = {
        .fanout = o.fanout,
        .max_readers = o.consumers > SPMC_DEFAULT_READERS ? o.consumers : SPMC_DEFAULT_READERS,
        .perm = o.perm,
    };
    int rc = spmc_queue_create_opts(&q, o.name, o.size, o.capacity, &opts);
    int owner;
    if (rc == -EEXIST && spmc_queue_owner(o.name, &owner) == 0)
        die("cannot create %s: it belongs to the live process %d (pid in its own "
            "PID namespace): stop that producer, or choose another --name", o.name, owner);
    if (rc != 0) {
        struct queue_limits lim = limits;
        lim.share = o.fanout == SPMC_SHARE;
        die_create(rc, o.name, o.size, o.capacity, &lim);
    }
    fprintf(out, "spmc_queue created\n");

    fprintf(out, "waiting up to 10 s for %u reader(s)...\n", o.consumers);
    rc = wait_or_stop(&q, o.consumers);
    if (rc != 0 && rc != -EINTR) { /* interrupted: the loop below sends nothing */
        (void)spmc_queue_destroy(&q);
        if (rc == -ETIMEDOUT)
            die("fewer than %u readers attached to %s within 10 s: start them with --name "
                "%s, or lower --consumers", o.consumers, o.name, o.name);
        die_rc(rc, "waiting for readers of %s", o.name);
    }

    uint64_t sum = 0, sent = 0;
    if (o.lines) { /* each line a record, as long as the line */
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while (!stop && (n = getline(&line, &cap, stdin)) >= 0) {
            if (n > 0 && line[n - 1] == '\n')
                n--;
            rc = push_or_stop(&q, line, (size_t)n);
            if (rc == -EINTR)
                break;
            if (rc != 0) {
                free(line);
                (void)spmc_queue_destroy(&q); /* readers get what was sent */
                if (rc == -EMSGSIZE)
                    die("line %" PRIu64 " is %zd bytes long, more than --size %zu: "
                        "stopped there (the lines before it were sent)", sent + 1, n, o.size);
                die_rc(rc, "push of line %" PRIu64 " failed", sent + 1);
            }
            sent++;
        }
        free(line);
        if (!stop && ferror(stdin)) {
            (void)spmc_queue_destroy(&q);
            die("reading standard input failed after %" PRIu64 " lines", sent);
        }
    } else {
        unsigned char *msg = malloc(o.size);
        if (msg == NULL)
            die("out of memory:");
        for (; sent < o.messages && !stop; sent++) {
            msg_fill(msg, o.size, sent);
            rc = push_or_stop(&q, msg, o.size);
            if (rc == -EINTR)
                break;
            if (rc != 0) {
                free(msg);
                (void)spmc_queue_destroy(&q);
                die_rc(rc, "push of message %" PRIu64 " failed", sent);
            }
            sum += msg_checksum(msg, o.size);
        }
        free(msg);
    }
    const int sig = stop; /* read once: the report and the status agree */
    const char *what = o.lines ? "lines" : "messages";
    if (sig)
        fprintf(out, "%s: closing the queue after %" PRIu64 " %s\n",
                sig == SIGINT ? "interrupted" : "terminated", sent, what);
    if (o.lines)
        fprintf(out, "sent %" PRIu64 " lines\n", sent);
    else
        fprintf(out, "sent %" PRIu64 " messages, checksum %016" PRIx64 "\n", sent, sum);

    fprintf(out, "destroying spmc_queue %s of mode writer\n", o.name);
    (void)spmc_queue_destroy(&q);
    fprintf(out, "spmc_queue destroyed\n");
    return sig ? 128 + sig : 0;
}
