/* fuzz_seeds.c - the seed corpus of `make fuzz` for one day: real segments
 * of that day's queue, in the states its attach and pop must handle, made
 * by the day's own code (built once per day from 2 on, with -IdayN), so
 * that the seeds can never go stale when a day's layout changes.
 *
 * Each seed is the whole segment, read through a descriptor while the
 * queue is in that state: messages waiting, some taken; from day 5 both
 * fan-out modes, a work-sharing reader in the middle of a claim and one
 * that left in the middle of it; from day 6 a reader that died holding
 * messages. A copy has no locks, so the fuzz target that attaches to it
 * finds every reader of day 6 on dead, and recovers their messages.
 *
 * Every seed is checked before it counts: attaching to a copy of its bytes
 * must succeed, or the fuzzer would start from inputs the queue refuses at
 * its first check, and never reach pop (which is what stale seeds did).
 *
 * usage: fuzz_seeds DIR   (writes DIR/seed-N; exit 1 on any failure) */
#define _GNU_SOURCE
#include "spmc_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { ELEM = 24, CAPACITY = 8, MAX_BYTES = 1 << 20 };

static const char *dir;
static int seeds;
static char name[64], check_name[64];

static void fail(const char *what, int rc)
{
    fprintf(stderr, "fuzz_seeds: %s: %s\n", what, rc < 0 ? strerror(-rc) : "failed");
    shm_unlink(name);
    shm_unlink(check_name);
    exit(1);
}

static void message(unsigned char *m, size_t len, unsigned k)
{
    for (size_t i = 0; i < len; i++)
        m[i] = (unsigned char)(k * 31 + i);
}

static int push(struct spmc_queue *q, unsigned k)
{
    unsigned char m[ELEM];
    message(m, sizeof m, k);
#if SPMC_VERSION >= 8
    return spmc_queue_try_push(q, m, 1 + k % ELEM); /* lengths 1..ELEM */
#else
    return spmc_queue_try_push(q, m);
#endif
}

static int pop(struct spmc_queue *q)
{
    unsigned char m[ELEM];
#if SPMC_VERSION >= 8
    long n = spmc_queue_try_pop(q, m, sizeof m);
    return n < 0 ? (int)n : 0;
#else
    return spmc_queue_try_pop(q, m);
#endif
}

/* Copy the segment open on @p fd into DIR/seed-N, after checking that a
 * queue of this day attaches to a copy of it. */
static void snapshot(int fd, const char *state)
{
    static unsigned char buf[MAX_BYTES];
    ssize_t n = pread(fd, buf, sizeof buf, 0);
    if (n <= 0 || n == (ssize_t)sizeof buf)
        fail("reading the segment", n < 0 ? -errno : 0);
    int c = shm_open(check_name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (c < 0 || write(c, buf, (size_t)n) != n)
        fail("copying the segment", -errno);
    close(c);
    struct spmc_queue q;
    int rc = spmc_queue_attach(&q, check_name, 0, 0);
    if (rc != 0) {
        fprintf(stderr, "fuzz_seeds: a copy of the seed '%s' is refused: %s\n", state,
                strerror(-rc));
        fail("checking the seed", rc);
    }
    (void)spmc_queue_destroy(&q);
    shm_unlink(check_name);
    char path[4096];
    snprintf(path, sizeof path, "%s/seed-%d", dir, seeds++);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(buf, 1, (size_t)n, f) != (size_t)n || fclose(f) != 0)
        fail(path, -errno);
    printf("fuzz_seeds: %s: %s, %zd bytes\n", path, state, n);
}

static int create(struct spmc_queue *q, int share)
{
#if SPMC_VERSION >= 5
    struct spmc_options o = {.fanout = share ? SPMC_SHARE : SPMC_BROADCAST, .max_readers = 4};
    return spmc_queue_create_opts(q, name, ELEM, CAPACITY, &o);
#else
    (void)share;
    return spmc_queue_create(q, name, ELEM, CAPACITY);
#endif
}

#if SPMC_VERSION >= 6
/* A reader that attaches, takes one message and dies holding what it has
 * (its claim, in work-sharing; its cursor, in broadcast), without a
 * destroy: its lock goes with it. The writer pushes one more message once
 * it has attached, so that a broadcast reader has one to take. */
static void dead_reader(struct spmc_queue *w, unsigned *k)
{
    int up[2], go[2];
    if (pipe(up) != 0 || pipe(go) != 0)
        fail("pipe", -errno);
    pid_t child = fork();
    if (child == 0) {
        struct spmc_queue d;
        char c = 0;
        if (spmc_queue_attach(&d, name, 0, 0) != 0 || write(up[1], &c, 1) != 1 ||
            read(go[0], &c, 1) != 1 || pop(&d) != 0)
            _exit(1);
        _exit(0); /* no destroy: it dies as it is */
    }
    char c = 0;
    int status, rc;
    if (child < 0 || read(up[0], &c, 1) != 1)
        fail("a reader that dies holding messages: attach", 0);
    if ((rc = push(w, (*k)++)) != 0)
        fail("push", rc);
    if (write(go[1], &c, 1) != 1 || waitpid(child, &status, 0) != child ||
        !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("a reader that dies holding messages", 0);
    close(up[0]), close(up[1]), close(go[0]), close(go[1]);
}
#endif

/* One queue, through the states of this day, each one a seed. */
static void one_queue(int share)
{
    struct spmc_queue w, r;
    int rc = create(&w, share);
    if (rc != 0)
        fail("create", rc);
    int fd = shm_open(name, O_RDONLY, 0); /* readable while the writer is there */
    if (fd < 0)
        fail("open", -errno);
    if ((rc = spmc_queue_attach(&r, name, 0, 0)) != 0)
        fail("attach", rc);
    unsigned k = 0;
    for (int i = 0; i < 3; i++)
        if ((rc = push(&w, k++)) != 0)
            fail("push", rc);
    if ((rc = pop(&r)) != 0) /* (work-sharing: it claims all three) */
        fail("pop", rc);
    for (int i = 0; i < 3; i++)
        if ((rc = push(&w, k++)) != 0)
            fail("push", rc);
#if SPMC_VERSION >= 6
    dead_reader(&w, &k);
#endif
#if SPMC_VERSION < 5
    /* Days 2-4 take one reader at a time: a copy with ours attached
     * refuses the fuzz target's. */
    (void)spmc_queue_destroy(&r);
    snapshot(fd, "messages waiting, some taken");
    if ((rc = spmc_queue_attach(&r, name, 0, 0)) != 0)
        fail("attach again", rc);
#else
    snapshot(fd, share ? "work-sharing: claims in progress, messages waiting"
                       : "broadcast: readers at different places, messages waiting");
#endif
    if ((rc = pop(&r)) != 0)
        fail("pop", rc);
#if SPMC_VERSION >= 5
    snapshot(fd, share ? "work-sharing: a reader further into its claim"
                       : "broadcast: a reader further on");
#endif
    (void)spmc_queue_destroy(&r); /* work-sharing: it leaves in the middle of its claim */
    snapshot(fd, share ? "work-sharing: a reader left in the middle of its claim"
                       : "the reader left, messages waiting");
    (void)spmc_queue_destroy(&w);
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seeds DIR\n");
        return 2;
    }
    dir = argv[1];
    snprintf(name, sizeof name, "/spmc-seeds-%ld", (long)getpid());
    snprintf(check_name, sizeof check_name, "/spmc-seeds-check-%ld", (long)getpid());
    one_queue(0);
#if SPMC_VERSION >= 5
    one_queue(1);
#endif
    return 0;
}
