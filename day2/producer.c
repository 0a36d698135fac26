/* producer.c - day 2: create the queue as its writer and send one message.
 *
 * usage: producer [NAME]   (default: /spmc_test_queue) */
#define _POSIX_C_SOURCE 200809L
#include "spmc_queue.h"
#include "common.h"

#include <stdio.h>
#include <string.h>

#define MSG_SIZE 100
#define CAPACITY 10

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? parse_name(argv[1]) : "/spmc_test_queue";
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct spmc_queue q;
    printf("creating spmc_queue %s of size %d and capacity %d with mode writer\n",
           name, MSG_SIZE, CAPACITY);
    int rc = spmc_queue_create(&q, name, MSG_SIZE, CAPACITY);
    if (rc != 0)
        die_create(rc, name, MSG_SIZE, CAPACITY);
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
