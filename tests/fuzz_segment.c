/* fuzz_segment.c - libFuzzer target: arbitrary bytes as the contents of a
 * shared-memory segment, then attach, pop and detach with one day's queue
 * (built once per day from 2 on, with -IdayN, under ASan and UBSan). The
 * queue must refuse or survive every input: no crash, no out-of-bounds
 * access, no hang (libFuzzer's -timeout catches one). From day 7 on, a
 * pop() that waits as well: the futex words and sleeper counts are in the
 * segment too.
 *
 * make fuzz runs it, from seeds that tests/fuzz_seeds.c makes: real
 * segments of each day, which the fuzzer mutates. */
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
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char name[32];
    if (name[0] == '\0')
        snprintf(name, sizeof name, "/spmc-fuzz-%ld", (long)getpid());
    int fd = shm_open(name, O_CREAT | O_RDWR | O_TRUNC, 0600);
    if (fd < 0)
        abort(); /* the harness itself failed */
    if (size > 0 && write(fd, data, size) != (ssize_t)size)
        abort();
    close(fd);

    struct spmc_queue q;
    if (spmc_queue_attach(&q, name, 0, 0) == 0) {
#if SPMC_VERSION >= 8
        /* Day 8: records, read in place and copied, their headers hostile. */
        const size_t size = q.max_record;
        unsigned char *out = malloc(size);
        if (out == NULL)
            abort();
        int rc = 0;
        for (int i = 0; i < 8; i++) {
            const void *rec;
            size_t len;
            if (i % 2) {
                long n = spmc_queue_try_pop(&q, out, size);
                rc = n < 0 ? (int)n : 0;
            } else if ((rc = spmc_queue_try_peek(&q, &rec, &len)) == 0) {
                if (len > size)
                    abort(); /* a length the queue should have refused */
                memcpy(out, rec, len); /* every byte of it must be in the mapping */
                rc = spmc_queue_release(&q);
            }
            if (rc != 0 && rc != -EAGAIN)
                break;
        }
#else
        unsigned char *out = malloc(q.elem_size);
        if (out == NULL)
            abort();
        int rc = 0;
        for (int i = 0; i < 8; i++) {
            rc = spmc_queue_try_pop(&q, out);
            if (rc != 0 && rc != -EAGAIN)
                break;
        }
#endif
#ifdef SPMC_STATS_SLEEPS
        /* Day 7 on: wait, so that the sleep runs on hostile futex words
         * and counts; it must end by its deadline (1 ms), whatever they say.
         * Straight to sleep, without the spinning (many try_pop()s, slow
         * under the sanitizers): see spmc_test_sleep_ns. */
#ifdef SPMC_CRASH_POINTS
        spmc_test_sleep_ns = 1000000;
#endif
#if SPMC_VERSION >= 8
        if (rc == 0 || rc == -EAGAIN)
            (void)spmc_queue_pop(&q, out, size, 1000000);
#else
        if (rc == 0 || rc == -EAGAIN)
            (void)spmc_queue_pop(&q, out, 1000000);
#endif
#endif
        free(out);
        (void)spmc_queue_destroy(&q);
    }
    shm_unlink(name);
    return 0;
}
