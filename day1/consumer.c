/* consumer.c - day 1: read the string the producer left in shared memory.
 *
 * usage: consumer [NAME]   (default: /queue) */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define QUEUE_SIZE 100

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "/queue";
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("Consumer attaching to the shared-memory queue %s...\n", name);
    int fd = shm_open(name, O_RDONLY, 0);
    if (fd < 0) {
        if (errno == ENOENT)
            die("shm_open %s: no such segment (start the producer first):", name);
        die("shm_open %s:", name);
    }
    /* Mapping past the end of the file would raise SIGBUS on access: check. */
    struct stat st;
    if (fstat(fd, &st) != 0)
        die("fstat %s:", name);
    if (st.st_size < QUEUE_SIZE)
        die("%s holds %lld bytes, expected %d: not our queue, or not ready yet",
            name, (long long)st.st_size, QUEUE_SIZE);
    char *mem = mmap(NULL, QUEUE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    if (mem == MAP_FAILED)
        die("mmap %s:", name);
    if (close(fd) != 0)
        die("close %s:", name);
    printf("Consumer attached to the shared-memory queue %s.\n", name);

    /* Nothing guarantees a terminated string: print at most QUEUE_SIZE bytes. */
    printf("Consumer read a msg from queue: \"%.*s\"\n", (int)strnlen(mem, QUEUE_SIZE), mem);

    if (munmap(mem, QUEUE_SIZE) != 0)
        die("munmap %s:", name);
    printf("Consumer closed the queue and exit...\n");
    return 0;
}
