/* producer.c - day 2: create the queue as its writer and send one message.
 *
 * usage: producer [NAME]   (default: /spmc_test_queue; --help says more) */
#define _POSIX_C_SOURCE 200809L
#include "spmc_queue.h"
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSG_SIZE 100
#define CAPACITY 10

/* What this day's spmc_queue_create() accepts (common.h): the ranges that
 * the option errors and die_create() name. */
static const struct queue_limits limits =
    QUEUE_LIMITS_RING(SPMC_NAME_MAX, sizeof(struct spmc_shm_header));

static void usage(const char *prog, FILE *to, int status)
{
    fprintf(to,
            "usage: %s [NAME]\n"
            "Create the queue NAME (default /spmc_test_queue), wait up to 10 s for a\n"
            "reader, send it one message, then remove the queue.\n"
            "\n"
            "Exit status:\n"
            "  0      the message was sent and the queue removed\n"
            "  1      an error, printed on stderr (e.g. no reader within 10 s)\n"
            "  2      an unknown option, or too many arguments\n"
            "  128+N  killed by signal N (Ctrl-C: 130); the queue stays in /dev/shm\n",
            prog);
    exit(status);
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        usage(argv[0], stdout, 0);
    if (argc > 2 || (argc > 1 && argv[1][0] == '-'))
        usage(argv[0], stderr, 2);
    const char *name = argc > 1 ? parse_name(argv[1]) : "/spmc_test_queue";
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct spmc_queue q;
    printf("creating spmc_queue %s of size %d and capacity %d with mode writer\n",
           name, MSG_SIZE, CAPACITY);
    int rc = spmc_queue_create(&q, name, MSG_SIZE, CAPACITY);
    if (rc != 0)
        die_create(rc, name, MSG_SIZE, CAPACITY, &limits);
    printf("spmc_queue created\n");

    /* Publish only once somebody listens: wait up to 10 s for the reader. */
    rc = spmc_queue_wait_readers(&q, 1, 10 * 1000000000ll);
    if (rc != 0) {
        (void)spmc_queue_destroy(&q);
        die_rc(rc, "no reader attached to %s within 10 s", name);
    }

    char msg[MSG_SIZE] = {0};
    strcpy(msg, "Hello from spmc_queue producer!");
    rc = spmc_queue_try_push(&q, msg);
    if (rc != 0) {
        (void)spmc_queue_destroy(&q);
        die_rc(rc, "cannot push into %s", name);
    }

    printf("destroying spmc_queue %s of mode writer\n", name);
    (void)spmc_queue_destroy(&q);
    printf("spmc_queue destroyed\n");
    return 0;
}
