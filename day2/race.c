/* race.c - day 2: count how often two readers that attach at the same
 * moment both get in.
 *
 * spmc_queue_attach() checks `readers == 0` and then stores `readers = 1`,
 * two plain accesses with a few nanoseconds between them. Each try creates
 * a fresh queue, forks two reader processes, lines them up behind a spin
 * barrier in shared memory so that both call spmc_queue_attach() at the
 * same instant, and keeps both attached until both have tried: a try in
 * which both got 0 (not one 0 and one -EBUSY) let two consumers in at once.
 *
 * usage: race [--tries N] [--name /NAME]   (make day2 race) */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ELEM 8
#define CAPACITY 1
#define READERS 2
#define SPIN_NS 50000000ull   /* a reader spins up to 50 ms for the other, then yields */
#define WAIT_NS 5000000000ull /* and gives up after 5 s */

/* ===================================================================== */
/* What the readers share with the parent                                  */
/* ===================================================================== */

/* One try's meeting point, in a MAP_SHARED anonymous mapping that the
 * forked readers inherit. Atomics here: the harness must not race itself. */
struct meeting {
    atomic_uint arrived;  /* readers at the start line */
    atomic_uint tried;    /* readers whose attach has returned */
    atomic_int rc[READERS]; /* what each attach returned */
};

/* Wait until *count reaches READERS. With a CPU for each reader, spin
 * (without a system call, so that both readers leave within a cache-line
 * transfer of each other) for up to SPIN_NS, then yield; with one CPU, yield
 * at once so that the other reader can run. 0, or -ETIMEDOUT if the other
 * reader never comes. */
static int meet(atomic_uint *count, int cpus)
{
    uint64_t start = now_ns();
    atomic_fetch_add(count, 1);
    for (unsigned r = 1; atomic_load(count) < READERS; r++) {
        if (cpus >= READERS && (r % 1024 != 0 || now_ns() - start < SPIN_NS))
            continue;
        if (now_ns() - start >= WAIT_NS)
            return -ETIMEDOUT;
        sched_yield();
    }
    return 0;
}

/* ===================================================================== */
/* A reader process                                                        */
/* ===================================================================== */

/* Attach at the same moment as the other reader, stay attached until it has
 * tried too (a reader that left first would let the other in legitimately),
 * then detach. Exits 0, or 1 if the other reader never came. */
static void reader(struct meeting *m, int id, const char *name, int cpus)
{
    if (cpus >= READERS)
        (void)pin_to_cpu(id % cpus); /* on two CPUs, both run at once */
    struct spmc_queue q;
    if (meet(&m->arrived, cpus) != 0)
        _exit(1);
    int rc = spmc_queue_attach(&q, name, ELEM, CAPACITY);
    atomic_store(&m->rc[id], rc);
    int met = meet(&m->tried, cpus);
    if (rc == 0)
        (void)spmc_queue_destroy(&q);
    _exit(met == 0 ? 0 : 1);
}

/* ===================================================================== */
/* One try                                                                 */
/* ===================================================================== */

/* Create a fresh queue, let two readers race for it, remove it. Returns how
 * many readers got attached (1 or 2); dies on anything else. */
static int one_try(struct meeting *m, const char *name, int cpus)
{
    struct spmc_queue w;
    segment_creating();
    int rc = spmc_queue_create(&w, name, ELEM, CAPACITY);
    segment_created(name, rc == 0);
    if (rc == -EEXIST)
        die_rc(rc, "cannot create %s (left over from an earlier run? remove /dev/shm%s)", name,
               name);
    if (rc != 0)
        die_rc(rc, "cannot create %s", name);

    atomic_store(&m->arrived, 0);
    atomic_store(&m->tried, 0);
    pid_t pid[READERS];
    int forked = 0;
    for (; forked < READERS; forked++) {
        atomic_store(&m->rc[forked], 1); /* neither 0 nor a -errno: "did not attach" */
        pid[forked] = fork();
        if (pid[forked] < 0)
            break;
        if (pid[forked] == 0)
            reader(m, forked, name, cpus);
    }
    int fork_err = forked < READERS ? errno : 0;
    if (fork_err != 0) /* the reader we have cannot meet its partner: stop it */
        for (int i = 0; i < forked; i++)
            kill(pid[i], SIGKILL);
    int failed = 0;
    for (int i = 0; i < forked; i++) {
        int status;
        while (waitpid(pid[i], &status, 0) < 0)
            if (errno != EINTR)
                die("waitpid:");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed = 1;
    }

    segment_destroying();
    (void)spmc_queue_destroy(&w); /* unlinks the name */
    segment_destroyed(name);

    if (fork_err != 0) {
        errno = fork_err;
        die("fork:");
    }
    if (failed)
        die("a reader process failed (it waited 5 s for the other, or was killed)");
    int attached = 0;
    for (int i = 0; i < READERS; i++) {
        int r = atomic_load(&m->rc[i]);
        if (r == 0)
            attached++;
        else if (r != -EBUSY)
            die_rc(r, "reader %d: unexpected result of spmc_queue_attach(%s)", i, name);
    }
    if (attached == 0)
        die("neither reader attached to %s", name);
    return attached;
}

int main(int argc, char **argv)
{
    uint64_t tries = 2000;
    char name[SPMC_NAME_MAX + 1];
    unique_name(name, sizeof name, "spmc-race");
    static const struct option longopts[] = {
        {"tries", required_argument, 0, 't'},
        {"name", required_argument, 0, 'n'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 't': tries = parse_u64(optarg, "--tries", UINT64_MAX); break;
        case 'n':
            if (strlen(optarg) > SPMC_NAME_MAX || optarg[0] != '/' || optarg[1] == '\0' ||
                strchr(optarg + 1, '/') != NULL)
                die("--name: expected /NAME, at most %d characters with no other '/', got '%s'",
                    SPMC_NAME_MAX, optarg);
            strcpy(name, optarg);
            break;
        case 'h':
            printf("usage: %s [--tries N] [--name /NAME]\n"
                   "  fork pairs of day-2 readers that attach at the same instant, N times\n"
                   "  (default 2000), and count the tries in which both got attached\n",
                   argv[0]);
            return 0;
        default: return 2;
        }
    }
    if (optind < argc)
        die("unexpected argument '%s' (try --help)", argv[optind]);
    if (tries == 0 || tries > 1000000)
        die("--tries: between 1 and 1000000, got %" PRIu64, tries);
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct meeting *m = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        die("mmap of the meeting point:");
    int cpus = usable_cpus();
    uint64_t both = 0;
    for (uint64_t t = 0; t < tries; t++)
        both += one_try(m, name, cpus) == READERS;
    munmap(m, sizeof *m);

    printf("race: %" PRIu64 " tries, both readers attached in %" PRIu64 "\n", tries, both);
    if (both > 0)
        printf("race: each of those times, both saw readers == 0 before either stored 1: "
               "two consumers on a one-consumer queue (day 3's compare-and-swap closes the gap)\n");
    else
        printf("race: no double attach seen this time; the check-then-set is still racy, "
               "its window is only a few nanoseconds wide (%d CPU%s here)\n",
               cpus, cpus == 1 ? "" : "s");
    return 0;
}
