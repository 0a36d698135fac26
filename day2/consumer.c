/* consumer.c - day 2: attach to the queue as its reader, take one message.
 *
 * usage: consumer [NAME]   (default: /spmc_test_queue; --help says more) */
#define _POSIX_C_SOURCE 200809L
#include "spmc_queue.h"
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MSG_SIZE 100
#define CAPACITY 10

static void usage(const char *prog, FILE *to, int status)
{
    fprintf(to,
            "usage: %s [NAME]\n"
            "Attach to the queue NAME (default /spmc_test_queue) as its reader, waiting\n"
            "up to 5 s for it to appear, and print the one message it receives.\n"
            "\n"
            "Exit status:\n"
            "  0      the message was received and printed\n"
            "  1      an error, printed on stderr (e.g. no queue, or no message in 5 s)\n"
            "  2      an unknown option, or too many arguments\n"
            "  128+N  killed by signal N (Ctrl-C: 130)\n",
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
    struct timespec nap = {0, 10000000}; /* 10 ms */

    struct spmc_queue q;
    printf("creating spmc_queue %s of size %d and capacity %d with mode reader\n",
           name, MSG_SIZE, CAPACITY);
    int rc = -ENOENT;
    for (int i = 0; i < 500 && rc == -ENOENT; i++) { /* 5 s for a producer to appear */
        rc = spmc_queue_attach(&q, name, MSG_SIZE, CAPACITY);
        if (rc == -ENOENT)
            nanosleep(&nap, NULL);
    }
    if (rc != 0)
        die_attach(rc, name);
    printf("spmc_queue created\n");

    char msg[MSG_SIZE];
    rc = -EAGAIN;
    for (int i = 0; i < 500 && rc == -EAGAIN; i++) { /* poll for up to 5 s */
        rc = spmc_queue_try_pop(&q, msg);
        if (rc == -EAGAIN)
            nanosleep(&nap, NULL);
    }
    if (rc != 0) {
        (void)spmc_queue_destroy(&q);
        die_rc(rc, "no message from %s", name);
    }
    printf("Received message from producer: %.*s\n", (int)strnlen(msg, sizeof msg), msg);

    printf("destroying spmc_queue %s of mode reader\n", name);
    (void)spmc_queue_destroy(&q);
    printf("spmc_queue destroyed\n");
    return 0;
}
