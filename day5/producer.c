/* producer.c - day 5: stream numbered messages to K consumers. */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "common.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ===================================================================== */
/* Options                                                                 */
/* ===================================================================== */

struct options {
    const char *name;
    size_t size;
    uint64_t capacity;
    uint64_t messages;
    enum spmc_fanout fanout;
    unsigned consumers;
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
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *o = (struct options){"/spmc_test_queue", 64, 1024, 1000000, SPMC_BROADCAST, 1};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': o->name = optarg; break;
        case 's': o->size = (size_t)parse_u64(optarg, "--size"); break;
        case 'c': o->capacity = parse_u64(optarg, "--capacity"); break;
        case 'm': o->messages = parse_u64(optarg, "--messages"); break;
        case 'f':
            if (strcmp(optarg, "broadcast") == 0) o->fanout = SPMC_BROADCAST;
            else if (strcmp(optarg, "share") == 0) o->fanout = SPMC_SHARE;
            else die("--fanout: expected broadcast or share, got '%s'", optarg);
            break;
        case 'k': o->consumers = (unsigned)parse_u64(optarg, "--consumers"); break;
        case 'h':
            printf("usage: %s [--name /NAME] [--size BYTES] [--capacity N] "
                   "[--messages N] [--fanout broadcast|share] [--consumers K]\n", argv[0]);
            exit(0);
        default: exit(2);
        }
    }
    if (o->size < 8)
        die("--size must be at least 8 (room for the sequence number)");
    if (o->consumers > SPMC_MAX_READERS)
        die("--consumers: at most %u", SPMC_MAX_READERS);
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
    const char *fanout = o.fanout == SPMC_SHARE ? "share" : "broadcast";
    printf("creating spmc_queue %s of size %zu and capacity %" PRIu64
           " with mode writer, fanout %s\n", o.name, o.size, o.capacity, fanout);
    struct spmc_options opts = {o.fanout, o.consumers > SPMC_DEFAULT_READERS
                                              ? o.consumers : SPMC_DEFAULT_READERS};
    int rc = spmc_queue_create_opts(&q, o.name, o.size, o.capacity, &opts);
    if (rc != 0)
        die_rc(rc, "cannot create %s", o.name);
    printf("spmc_queue created\n");

    printf("waiting up to 10 s for %u reader(s)...\n", o.consumers);
    rc = spmc_queue_wait_readers(&q, o.consumers, 10 * 1000000000ll);
    if (rc != 0) {
        (void)spmc_queue_destroy(&q);
        die_rc(rc, "fewer than %u readers attached to %s", o.consumers, o.name);
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
