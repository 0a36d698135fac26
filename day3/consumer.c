/* consumer.c - days 3 and 4: receive the stream and check every message. */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* ===================================================================== */
/* Options                                                                 */
/* ===================================================================== */

/* Message sizes start at 8 bytes, the sequence number: the largest
 * capacity is the one for 8-byte messages. */
/* What this day's spmc_queue_create() accepts (common.h): the ranges that
 * the option errors and die_create() name. */
static const struct queue_limits limits =
    QUEUE_LIMITS_RING(SPMC_NAME_MAX, sizeof(struct spmc_shm_header));

struct options {
    const char *name;
    size_t size;
    uint64_t capacity;
};

static void parse_options(struct options *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"name", required_argument, 0, 'n'},
        {"size", required_argument, 0, 's'},
        {"capacity", required_argument, 0, 'c'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *o = (struct options){"/spmc_test_queue", 64, 1024};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': o->name = parse_name(optarg); break;
        case 's': o->size = (size_t)parse_u64(optarg, "--size", limits.max_size); break;
        case 'c': o->capacity = parse_u64(optarg, "--capacity", queue_max_capacity(&limits, 8)); break;
        case 'h':
            printf("usage: %s [--name /NAME] [--size BYTES] [--capacity N]\n"
                   "\n"
                   "Exit status:\n"
                   "  0      every message received, in order, up to the end of the stream\n"
                   "  1      an error, printed on stderr (no queue to attach to, a wrong or\n"
                   "         damaged message, no message for 10 s)\n"
                   "  2      an unknown option, or an argument that is not an option\n"
                   "  128+N  killed by signal N (Ctrl-C: 130)\n",
                   argv[0]);
            exit(0);
        default: usage_error();
        }
    }
    no_operands(argc, argv);
    if (o->size < 8)
        die("--size must be at least 8 (room for the sequence number)");
}

/* Attach, giving a producer that is just starting up to 5 s to appear. */
static int attach(struct spmc_queue *q, const struct options *o)
{
    struct timespec nap = {0, 10000000}; /* 10 ms */
    int rc = -ENOENT;
    for (int i = 0; i < 500 && rc == -ENOENT; i++) {
        rc = spmc_queue_attach(q, o->name, o->size, o->capacity);
        if (rc == -ENOENT)
            nanosleep(&nap, NULL);
    }
    return rc;
}

/* ===================================================================== */
/* Main                                                                    */
/* ===================================================================== */

int main(int argc, char **argv)
{
    struct options o;
    parse_options(&o, argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct spmc_queue q;
    printf("creating spmc_queue %s of size %zu and capacity %" PRIu64 " with mode reader\n",
           o.name, o.size, o.capacity);
    int rc = attach(&q, &o);
    if (rc != 0)
        die_attach(rc, o.name);
    printf("spmc_queue created\n");

    unsigned char *msg = malloc(o.size);
    if (msg == NULL)
        die("out of memory:");
    uint64_t received = 0, sum = 0;
    int status = 0;
    while ((rc = spmc_queue_pop(&q, msg, 10 * 1000000000ll)) == 0) {
        if (msg_seq(msg) != received || !msg_intact(msg, o.size)) {
            fprintf(stderr, "consumer: message %" PRIu64 " is wrong (carries seq %" PRIu64
                    "%s)\n", received, msg_seq(msg),
                    msg_intact(msg, o.size) ? "" : ", damaged payload");
            status = 1;
            break;
        }
        sum += msg_checksum(msg, o.size);
        received++;
    }
    free(msg);
    if (status == 0 && rc != -EPIPE) {
        fprintf(stderr, "consumer: pop failed after %" PRIu64 " messages: %s\n", received,
                rc == -ETIMEDOUT ? "no message for 10 s" : "corrupted queue");
        status = 1;
    }
    printf("received %" PRIu64 " messages in order, checksum %016" PRIx64 "%s\n", received,
           sum, status == 0 ? " (end of stream)" : "");

    printf("destroying spmc_queue %s of mode reader\n", o.name);
    (void)spmc_queue_destroy(&q);
    printf("spmc_queue destroyed\n");
    return status;
}
