/* producer.c - days 3 and 4: stream numbered messages through the ring. */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

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
    uint64_t messages;
};

static void parse_options(struct options *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"name", required_argument, 0, 'n'},
        {"size", required_argument, 0, 's'},
        {"capacity", required_argument, 0, 'c'},
        {"messages", required_argument, 0, 'm'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *o = (struct options){"/spmc_test_queue", 64, 1024, 1000000};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': o->name = parse_name(optarg); break;
        case 's': o->size = (size_t)parse_u64(optarg, "--size", limits.max_size); break;
        case 'c': o->capacity = parse_u64(optarg, "--capacity", queue_max_capacity(&limits, 8)); break;
        case 'm': o->messages = parse_u64(optarg, "--messages", UINT64_MAX); break;
        case 'h':
            printf("usage: %s [--name /NAME] [--size BYTES] [--capacity N] "
                   "[--messages N]\n"
                   "\n"
                   "Exit status:\n"
                   "  0      all messages sent, the queue closed and removed\n"
                   "  1      an error, printed on stderr (the queue could not be created,\n"
                   "         no reader within 10 s, a push that timed out)\n"
                   "  2      an unknown option, or an argument that is not an option\n"
                   "  128+N  killed by signal N (Ctrl-C: 130); the queue stays in /dev/shm\n",
                   argv[0]);
            exit(0);
        default: usage_error();
        }
    }
    no_operands(argc, argv);
    if (o->size < 8)
        die("--size must be at least 8 (room for the sequence number)");
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
    printf("creating spmc_queue %s of size %zu and capacity %" PRIu64 " with mode writer\n",
           o.name, o.size, o.capacity);
    int rc = spmc_queue_create(&q, o.name, o.size, o.capacity);
    if (rc != 0)
        die_create(rc, o.name, o.size, o.capacity, &limits);
    printf("spmc_queue created\n");

    printf("waiting up to 10 s for a reader...\n");
    rc = spmc_queue_wait_readers(&q, 1, 10 * 1000000000ll);
    if (rc != 0) {
        (void)spmc_queue_destroy(&q);
        if (rc == -ETIMEDOUT)
            die("no reader attached to %s within 10 s: start a consumer with --name %s",
                o.name, o.name);
        die_rc(rc, "waiting for a reader of %s", o.name);
    }

    unsigned char *msg = malloc(o.size);
    if (msg == NULL)
        die("out of memory:");
    uint64_t sum = 0;
    for (uint64_t seq = 0; seq < o.messages; seq++) {
        msg_fill(msg, o.size, seq);
        rc = spmc_queue_push(&q, msg, 10 * 1000000000ll);
        if (rc != 0) {
            (void)spmc_queue_destroy(&q);
            die_rc(rc, "push of message %" PRIu64 " failed", seq);
        }
        sum += msg_checksum(msg, o.size);
    }
    free(msg);
    printf("sent %" PRIu64 " messages, checksum %016" PRIx64 "\n", o.messages, sum);

    printf("destroying spmc_queue %s of mode writer\n", o.name);
    (void)spmc_queue_destroy(&q);
    printf("spmc_queue destroyed\n");
    return 0;
}
