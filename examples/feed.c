/* feed.c - a broadcast feed: one process publishes price ticks, two
 * subscribers each receive every tick, in order. Nothing is copied: the
 * publisher writes each tick straight into the ring (reserve, fill in,
 * commit) and the subscribers read it there (peek, read, release). Built
 * against the installed library:
 *
 *   cc -std=c11 feed.c $(pkg-config --cflags --libs spmc) -o feed
 *
 * Each subscriber checks that it saw every tick once, in order, and exits
 * 1 if not; so does the publisher if any subscriber failed.
 */
#define _POSIX_C_SOURCE 200809L
#include <spmc_queue.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { SUBSCRIBERS = 2, TICKS = 200000 };

struct tick {
    uint64_t seq;    /* 0, 1, 2, ... */
    int64_t price;   /* in cents */
    char symbol[8];
};

static int64_t price_at(uint64_t seq)
{
    return 10000 + (int64_t)(seq * 7919 % 201) - 100;
}

static int subscriber(int k, const char *name)
{
    struct spmc_queue q;
    int rc = spmc_queue_attach(&q, name, sizeof(struct tick), 0);
    if (rc != 0) {
        fprintf(stderr, "subscriber %d: attach: %s\n", k, strerror(-rc));
        return 1;
    }
    const void *rec;
    size_t len;
    uint64_t next = 0, wrong = 0;
    while ((rc = spmc_queue_peek(&q, &rec, &len, SPMC_WAIT_FOREVER)) == 0) {
        const struct tick *t = rec; /* in the ring, 64-byte aligned, ours until released */
        if (len != sizeof *t) {
            wrong++;
        } else {
            wrong += t->seq != next || t->price != price_at(t->seq) ||
                     strcmp(t->symbol, "ACME") != 0;
            next = t->seq + 1;
        }
        if ((rc = spmc_queue_release(&q)) != 0)
            break;
    }
    (void)spmc_queue_destroy(&q);
    int ok = rc == -EPIPE && next == TICKS && wrong == 0;
    printf("subscriber %d: %" PRIu64 " ticks, %s\n", k, next,
           ok ? "all of them, in order" : "WRONG: ticks missing, repeated or damaged");
    fflush(stdout); /* the caller ends with _exit(), which does not flush */
    return ok ? 0 : 1;
}

int main(void)
{
    char name[32];
    snprintf(name, sizeof name, "/spmc-feed-%ld", (long)getpid());
    struct spmc_queue q;
    int rc = spmc_queue_create(&q, name, sizeof(struct tick), 1024); /* broadcast, 1024 slots */
    if (rc != 0) {
        fprintf(stderr, "feed: create %s: %s\n", name, strerror(-rc));
        return 1;
    }
    fflush(stdout);
    for (int k = 0; k < SUBSCRIBERS; k++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("feed: fork");
            return 1;
        }
        if (pid == 0)
            _exit(subscriber(k, name));
    }
    /* A broadcast reader receives what is published after it attaches. */
    if ((rc = spmc_queue_wait_readers(&q, SUBSCRIBERS, 10 * 1000000000LL)) != 0) {
        fprintf(stderr, "feed: waiting for subscribers: %s\n", strerror(-rc));
        return 1;
    }
    for (uint64_t seq = 0; seq < TICKS; seq++) {
        void *rec; /* room for one tick in the ring, written in place */
        if ((rc = spmc_queue_reserve(&q, sizeof(struct tick), &rec, 10 * 1000000000LL)) != 0) {
            fprintf(stderr, "feed: reserve for tick %" PRIu64 ": %s\n", seq, strerror(-rc));
            return 1;
        }
        *(struct tick *)rec = (struct tick){seq, price_at(seq), "ACME"};
        if ((rc = spmc_queue_commit(&q, sizeof(struct tick))) != 0) {
            fprintf(stderr, "feed: commit of tick %" PRIu64 ": %s\n", seq, strerror(-rc));
            return 1;
        }
    }
    (void)spmc_queue_destroy(&q); /* end of stream */
    int failed = 0;
    for (int k = 0; k < SUBSCRIBERS; k++) {
        int status;
        if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed = 1;
    }
    printf("feed: %d ticks to %d subscribers: %s\n", TICKS, SUBSCRIBERS, failed ? "FAILED" : "ok");
    return failed;
}
