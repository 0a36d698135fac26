/* fuzz_segment.c - libFuzzer target: arbitrary bytes as the contents of a
 * shared-memory segment, then attach, pop and detach with one day's queue
 * (built once per day from 2 on, with -IdayN, under ASan and UBSan). The
 * queue must refuse or survive every input: no crash, no out-of-bounds
 * access, no hang (libFuzzer's -timeout catches one).
 *
 * make fuzz runs it; tests/fuzz-corpus/dayN/ holds the seeds: real
 * segments of each day, which the fuzzer mutates. */
#define _GNU_SOURCE
#include "spmc_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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
        unsigned char *out = malloc(q.elem_size);
        if (out == NULL)
            abort();
        for (int i = 0; i < 8; i++) {
            int rc = spmc_queue_try_pop(&q, out);
            if (rc != 0 && rc != -EAGAIN)
                break;
        }
        free(out);
        (void)spmc_queue_destroy(&q);
    }
    shm_unlink(name);
    return 0;
}
