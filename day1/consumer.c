/* consumer.c - day 1: read the string the producer left in shared memory.
 *
 * usage: consumer [NAME]   (default: /queue; --help says more) */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define QUEUE_SIZE 100

static void usage(const char *prog, FILE *to, int status)
{
    fprintf(to,
            "usage: %s [NAME]\n"
            "Read the message a producer left in the shared memory NAME (default /queue).\n"
            "\n"
            "Exit status:\n"
            "  0      the message was read and printed\n"
            "  1      an error, printed on stderr (e.g. no producer has created NAME)\n"
            "  2      an unknown option, or too many arguments\n"
            "  128+N  killed by signal N (SIGBUS: 135, when a segment is mapped past its end)\n",
            prog);
    exit(status);
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        usage(argv[0], stdout, 0);
    if (argc > 2 || (argc > 1 && argv[1][0] == '-'))
        usage(argv[0], stderr, 2);
    const char *name = argc > 1 ? parse_name(argv[1]) : "/queue";
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("Consumer attaching to the shared-memory queue %s...\n", name);
    int fd = shm_open(name, O_RDONLY, 0);
    if (fd < 0 && errno == ENOENT)
        die("no shared memory named %s: start the producer first, with the same NAME "
            "(it keeps the segment for 5 s, or its SECONDS)", name);
    if (fd < 0 && errno == EACCES)
        die("cannot open %s: permission denied, another user's segment? (ls -l /dev/shm%s)",
            name, name);
    if (fd < 0)
        die("shm_open %s:", name);
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
