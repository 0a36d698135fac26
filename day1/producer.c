/* producer.c - day 1: put a string into raw POSIX shared memory.
 *
 * No header, no protocol, no synchronisation: the consumer simply hopes the
 * bytes are there when it looks. That is the lesson of day 1. Every system
 * call is still checked, and the segment is removed on the way out.
 *
 * usage: producer [NAME [SECONDS]]   (defaults: /queue 5; --help says more) */
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
            "usage: %s [NAME [SECONDS]]\n"
            "Create the shared memory NAME (default /queue), write a message into it,\n"
            "keep it for SECONDS (default 5, at most 3600), then remove it.\n"
            "\n"
            "Exit status:\n"
            "  0      the message was written and the segment removed\n"
            "  1      an error, printed on stderr (e.g. NAME exists already)\n"
            "  2      an unknown option, or too many arguments\n"
            "  128+N  killed by signal N (Ctrl-C: 130); the segment stays in /dev/shm\n",
            prog);
    exit(status);
}

/* A call failed after the segment was created: remove it, then die. */
static void die_unlink(const char *name, const char *what)
{
    int err = errno;
    shm_unlink(name);
    errno = err;
    die("%s %s:", what, name);
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        usage(argv[0], stdout, 0);
    if (argc > 3 || (argc > 1 && argv[1][0] == '-'))
        usage(argv[0], stderr, 2);
    const char *name = argc > 1 ? parse_name(argv[1]) : "/queue";
    uint64_t seconds = argc > 2 ? parse_u64(argv[2], "SECONDS", 3600) : 5;
    const char *text = "Hello from producer";
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("Producer creating the shared-memory queue %s...\n", name);
    /* O_EXCL: refuse to scribble over a segment someone else owns. */
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0 && errno == EEXIST)
        die("shared memory named %s exists already: another producer is running, or one "
            "was killed (remove it with rm /dev/shm%s, or choose another NAME)", name, name);
    if (fd < 0 && errno == EACCES)
        die("cannot create %s: permission denied (ls -ld /dev/shm)", name);
    if (fd < 0)
        die("shm_open %s:", name);
    /* A new segment has size 0: give it room before mapping it. */
    if (ftruncate(fd, QUEUE_SIZE) != 0)
        die_unlink(name, "ftruncate");
    char *mem = mmap(NULL, QUEUE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mem == MAP_FAILED)
        die_unlink(name, "mmap");
    if (close(fd) != 0) /* the mapping stays valid without the descriptor */
        die_unlink(name, "close");
    printf("Producer created the shared-memory queue %s of size %d and mapped it into memory.\n",
           name, QUEUE_SIZE);

    memcpy(mem, text, strlen(text) + 1);
    printf("Producer sent a msg \"%s\" into the queue.\n", text);

    sleep((unsigned)seconds); /* "long enough" for the consumer: the race we fix later */

    if (munmap(mem, QUEUE_SIZE) != 0)
        die_unlink(name, "munmap");
    if (shm_unlink(name) != 0)
        die("shm_unlink %s:", name);
    printf("Producer closed the queue after %llu second%s and exit...\n",
           (unsigned long long)seconds, seconds == 1 ? "" : "s");
    return 0;
}
