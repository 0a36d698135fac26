/* consumer.c - day 2: attach to the queue as its reader, take one message.
 *
 * usage: consumer [NAME]   (default: /spmc_test_queue) */
#define _POSIX_C_SOURCE 200809L
#include "spmc_queue.h"
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MSG_SIZE 100
#define CAPACITY 10

int main(int argc, char **argv)
{
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
