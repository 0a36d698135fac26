/* jobs.c - a job queue: one process hands out jobs, three workers share
 * them, each job done by exactly one worker. Built against the installed
 * library:
 *
 *   cc -std=c11 jobs.c $(pkg-config --cflags --libs spmc) -o jobs
 *
 * The workers report what they did through a pipe; the parent checks that
 * every job was done once (count and checksum) and exits 1 if not.
 */
#define _POSIX_C_SOURCE 200809L
#include <spmc_queue.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { WORKERS = 3, JOBS = 5000 };

struct job {
    uint64_t id;   /* 1..JOBS */
    uint64_t work; /* what to compute: the number of primes below it */
};

struct report {
    uint64_t jobs, id_sum, answer_sum;
};

static uint64_t primes_below(uint64_t n)
{
    uint64_t count = 0;
    for (uint64_t k = 2; k < n; k++) {
        int prime = 1;
        for (uint64_t d = 2; d * d <= k && prime; d++)
            prime = k % d != 0;
        count += (uint64_t)prime;
    }
    return count;
}

static uint64_t work_of(uint64_t id)
{
    return 2000 + id % 1000;
}

/* A worker: take jobs until the queue says the stream has ended. */
static int worker(const char *name, int report_fd)
{
    struct spmc_queue q;
    int rc = spmc_queue_attach(&q, name, sizeof(struct job), 0);
    if (rc != 0) {
        fprintf(stderr, "worker: attach: %s\n", strerror(-rc));
        return 1;
    }
    struct report r = {0};
    struct job j;
    long len; /* a record's length, or a negative errno */
    while ((len = spmc_queue_pop(&q, &j, sizeof j, SPMC_WAIT_FOREVER)) >= 0) {
        if (len != (long)sizeof j) {
            fprintf(stderr, "worker: a record of %ld bytes is not a job\n", len);
            (void)spmc_queue_destroy(&q);
            return 1;
        }
        r.jobs++;
        r.id_sum += j.id;
        r.answer_sum += primes_below(j.work);
    }
    (void)spmc_queue_destroy(&q);
    if (len != -EPIPE) { /* -EPIPE: the end of the stream, all jobs taken */
        fprintf(stderr, "worker: pop: %s\n", strerror((int)-len));
        return 1;
    }
    return write(report_fd, &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1;
}

int main(void)
{
    char name[32];
    snprintf(name, sizeof name, "/spmc-jobs-%ld", (long)getpid());
    struct spmc_queue q;
    /* Work-sharing: each job goes to one worker, which claims one at a time. */
    const struct spmc_options opts = {.fanout = SPMC_SHARE, .max_readers = WORKERS};
    int rc = spmc_queue_create_opts(&q, name, sizeof(struct job), 256, &opts);
    if (rc != 0) {
        fprintf(stderr, "jobs: create %s: %s\n", name, strerror(-rc));
        return 1;
    }
    int fds[2];
    if (pipe(fds) != 0) {
        perror("jobs: pipe");
        return 1;
    }
    for (int w = 0; w < WORKERS; w++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("jobs: fork");
            return 1;
        }
        if (pid == 0) {
            close(fds[0]);
            _exit(worker(name, fds[1]));
        }
    }
    close(fds[1]);
    for (uint64_t id = 1; id <= JOBS; id++) {
        struct job j = {id, work_of(id)};
        if ((rc = spmc_queue_push(&q, &j, sizeof j, 10 * 1000000000LL)) != 0) {
            fprintf(stderr, "jobs: push of job %" PRIu64 ": %s\n", id, strerror(-rc));
            return 1;
        }
    }
    (void)spmc_queue_destroy(&q); /* end of stream: workers finish the rest */
    uint64_t expected = 0; /* what the workers' answers must add up to */
    for (uint64_t id = 1; id <= JOBS; id++)
        expected += primes_below(work_of(id));

    struct report total = {0}, r;
    int failed = 0;
    printf("jobs: %d workers, %d jobs:", WORKERS, JOBS);
    while (read(fds[0], &r, sizeof r) == (ssize_t)sizeof r) {
        printf(" %" PRIu64, r.jobs);
        total.jobs += r.jobs;
        total.id_sum += r.id_sum;
        total.answer_sum += r.answer_sum;
    }
    for (int w = 0; w < WORKERS; w++) {
        int status;
        if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed = 1;
    }
    int ok = !failed && total.jobs == JOBS &&
             total.id_sum == (uint64_t)JOBS * (JOBS + 1) / 2 && total.answer_sum == expected;
    printf(" done each; %" PRIu64 " in all, %s\n", total.jobs,
           ok ? "every job exactly once" : "WRONG: jobs lost or done twice");
    return ok ? 0 : 1;
}
