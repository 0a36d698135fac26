/* spmc.c - the command-line tool of the installed queue: see what queues
 * exist, who writes and reads them, remove dead ones, and move lines of
 * text through them.
 *
 *   spmc list                      every queue of ours in /dev/shm
 *   spmc stat NAME [--watch]       one queue in full (each reader)
 *   spmc rm NAME [--force]         remove a queue nobody alive holds
 *   spmc send NAME [options]       standard input, one record per line
 *   spmc recv NAME [options]       records to standard output, one per line
 *
 * `list`, `stat` and `rm` only read the segment: opened read-only, read
 * with pread() (never mapped, so a page tmpfs cannot back reads as zeros,
 * not SIGBUS), checked field by field exactly as an attaching reader checks
 * it, before anything past the header is read. That is why this file
 * includes the queue's source instead of linking the library: the checks,
 * the layout and the lock bytes are the queue's own static functions, not
 * a copy that could drift. Liveness is the kernel's answer (open file
 * description locks, F_OFD_GETLK), never a pid.
 *
 * Exit status: 0 done; 1 the operation failed (the line says why); 2 bad
 * usage.
 */
#include "spmc_queue.c" /* the queue of the installed day (-I dayN); it defines _GNU_SOURCE */

#include <dirent.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/uio.h>
#include <stdio.h>
#include <stdlib.h>

enum { EXIT_USAGE = 2 };

/* send and recv wait in slices this long, to notice a signal (Ctrl-C): the
 * queue's own waits resume after one. */
static const int64_t TICK_NS = 100000000;

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* A process that may write the segment shrank its file under us (ftruncate):
 * the next load or store past the new end would kill us with SIGBUS and no
 * word of why. The queue itself installs no signal handler (a library must
 * not); send and recv do, say so and stop. A reader's unreleased record is
 * then a dead reader's, given to another (see spmc_queue_peek()). */
static void on_sigbus(int sig)
{
    static const char msg[] = "spmc: the queue's shared memory was cut short under us "
                              "(a process truncated its file): stopping\n";
    (void)sig;
    ssize_t n = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)n;
    _exit(1);
}

static void catch_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: getline() returns */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    struct sigaction bus = {.sa_handler = on_sigbus};
    sigaction(SIGBUS, &bus, NULL);
}

/* send and recv: NAME must be a queue name, checked as the queue checks it,
 * so that a bad one is not blamed on another option. */
static int name_ok(const char *name)
{
    if (check_name(name) == 0)
        return 1;
    fprintf(stderr, "spmc: %s: not a queue name (one '/' then up to %d characters, "
                    "no other '/', not \"/.\" or \"/..\")\n",
            name, SPMC_NAME_MAX - 1);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: spmc list\n"
            "       spmc stat NAME [--watch]\n"
            "       spmc rm NAME [--force]\n"
            "       spmc send NAME [--fanout broadcast|share] [--size BYTES] [--capacity N]\n"
            "                      [--readers N] [--wait-readers N] [--claim N]\n"
            "       spmc recv NAME [--wait SECONDS]\n"
            "Queues of wire-format version %u (NAME is /name, as in /dev/shm/name).\n"
            "send: one record per line of standard input, as long as the line without\n"
            "  its newline (at most --size bytes, default 4096); --capacity: slots of\n"
            "  %u bytes in the ring, a power of two (default 1024), at least twice the\n"
            "  slots of the longest record; end of input closes the queue;\n"
            "  --wait-readers N waits for N readers before the first line (broadcast\n"
            "  readers see only what is sent after they attach); --claim N (share):\n"
            "  most slots a reader takes at once, 1-%u (default %u; 1: a line at a time).\n"
            "recv: one line per record on standard output, read in place, until the\n"
            "  writer closes; --wait SECONDS (10): how long to wait for the queue to appear\n"
            "  and for its writer to finish setting it up.\n",
            SPMC_VERSION, SPMC_SLOT, SPMC_CLAIM_MAX, SPMC_CLAIM_DEFAULT);
}

static int bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "spmc: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    usage(stderr);
    return EXIT_USAGE;
}

/* ===================================================================== */
/* Reading a segment, read-only                                            */
/* ===================================================================== */

/* What `list` and `stat` show of one reader entry. */
struct entry_view {
    unsigned state; /* enum spmc_entry_state */
    int alive;      /* its lock is held: a live process holds the entry */
    int pid;        /* the holder's pid in its own PID namespace (information only) */
    uint64_t position; /* broadcast: its published cursor */
};

/* One segment as `list` and `stat` see it. */
struct view {
    char name[SPMC_NAME_MAX + 2];
    const char *problem; /* NULL: a valid queue; else why it is not usable */
    uint32_t version;
    struct geometry g;
    int writer_alive, closed, writer_pid;
    uint64_t head, read_pos, reaped, redelivered; /* indices count slots */
    unsigned readers, readers_alive;
    int64_t behind; /* slots: slowest live reader (broadcast), unclaimed (share); -1 none */
    struct entry_view *entries;
};

/* Look at the segment open (read-only) on @p fd. Fills @p v; returns 0 if
 * it is ours (its first four bytes are our magic), -1 if it is not. */
static int look(int fd, struct view *v, int want_entries)
{
    struct stat st;
    uint32_t magic = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof magic ||
        pread(fd, &magic, sizeof magic, 0) != (ssize_t)sizeof magic || magic != SPMC_MAGIC)
        return -1;
    v->writer_alive = held_elsewhere(fd, WRITER_LOCK);
    v->behind = -1;
    if ((size_t)st.st_size < sizeof(struct spmc_shm_header)) {
        v->problem = "shorter than a header (being created, or left half-made)";
        return 0;
    }
    /* Read with pread(), never mapped: a page of a segment that tmpfs
     * cannot back (a sparse segment in a full /dev/shm) reads as zeros
     * here, where a load from a mapping of it would kill us with SIGBUS.
     * The copies are snapshots; relaxed loads of the live segment would
     * give no more than that. */
    struct spmc_shm_header h;
    if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h) {
        v->problem = "cannot be read";
        return 0;
    }
    v->version = h.version;
    struct header_copy c = {h.magic,     h.version,    h.header_size,
                            h.cacheline, h.max_record, h.capacity,
                            h.slot_size, h.fanout,     h.max_readers,
                            h.claim_max};
    int ready = atomic_load_explicit(&h.ready, memory_order_relaxed) == SPMC_READY;
    if (!ready) {
        v->problem = v->writer_alive ? "being created" : "left half-made by a creator that died";
        return 0;
    }
    if (c.version != SPMC_VERSION) {
        v->problem = "another wire-format version";
        return 0;
    }
    if (check_header(&c, 0, 0, st.st_size, &v->g) != 0) {
        v->problem = "header fields that do not fit together (damaged or hostile)";
        return 0;
    }
    /* Checked: read the header again and the reader table after it. The
     * creator stored ready last (release): the fence orders this read
     * after the one that found ready set, so it sees every field. */
    atomic_thread_fence(memory_order_acquire);
    const size_t table_bytes = (size_t)v->g.max_readers * sizeof(struct spmc_shm_reader);
    struct spmc_shm_reader *table = malloc(table_bytes);
    if (table == NULL || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h ||
        pread(fd, table, table_bytes, sizeof h) != (ssize_t)table_bytes) {
        free(table);
        v->problem = table == NULL ? "cannot be read (out of memory)" : "cannot be read";
        return 0;
    }
    const struct spmc_shm_header *hh = &h;
    v->writer_pid = (int)atomic_load_explicit(&hh->writer_pid, memory_order_relaxed);
    v->closed = atomic_load_explicit(&hh->closed, memory_order_relaxed) != 0;
    v->head = atomic_load_explicit(&hh->head, memory_order_relaxed);
    /* read_index keeps 52 bits of the next position: the one nearest
     * below head with those bits (a hostile value gives a far one, which
     * the "behind" test below leaves out). */
    const uint64_t pos = atomic_load_explicit(&hh->read_index, memory_order_relaxed) & POS;
    v->read_pos = v->head - ((v->head - pos) & POS);
    v->reaped = atomic_load_explicit(&hh->reaped, memory_order_relaxed);
    v->redelivered = atomic_load_explicit(&hh->redelivered, memory_order_relaxed);
    if (want_entries)
        v->entries = calloc(v->g.max_readers, sizeof *v->entries);
    uint64_t slowest = v->head;
    int any = 0;
    for (unsigned e = 0; e < v->g.max_readers; e++) {
        uint64_t w = atomic_load_explicit(&table[e].word, memory_order_relaxed);
        unsigned state = entry_state(w);
        int alive = state != SPMC_ENTRY_FREE && held_elsewhere(fd, reader_lock(e));
        uint64_t cursor = atomic_load_explicit(&table[e].cursor, memory_order_relaxed);
        if (state != SPMC_ENTRY_FREE)
            v->readers++;
        if (alive)
            v->readers_alive++;
        if (alive && state == SPMC_ENTRY_ACTIVE && (v->head - cursor) <= v->g.capacity &&
            (int64_t)(cursor - slowest) < 0) {
            slowest = cursor;
        }
        if (alive && state == SPMC_ENTRY_ACTIVE)
            any = 1;
        if (v->entries != NULL)
            v->entries[e] = (struct entry_view){state, alive, (int)(w >> 32), cursor};
    }
    if (v->g.fanout == SPMC_BROADCAST)
        v->behind = any ? (int64_t)(v->head - slowest) : -1;
    else
        v->behind = (v->head - v->read_pos) <= v->g.capacity ? (int64_t)(v->head - v->read_pos)
                                                             : -1;
    free(table);
    return 0;
}

/* Open /dev/shm/NAME (NAME is "/x") read-only and look at it. 0, -1 (not
 * ours), or a negative errno of shm_open(). */
static int look_up(const char *name, struct view *v, int want_entries)
{
    memset(v, 0, sizeof *v);
    int rc = check_name(name);
    if (rc != 0)
        return rc;
    snprintf(v->name, sizeof v->name, "%s", name);
    int fd = shm_open(name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0); /* a FIFO must not block us */
    if (fd < 0)
        return -errno;
    rc = look(fd, v, want_entries);
    close(fd);
    return rc;
}

static const char *fanout_name(uint32_t f)
{
    return f == SPMC_BROADCAST ? "broadcast" : f == SPMC_SHARE ? "share" : "?";
}

static const char *writer_word(const struct view *v)
{
    if (v->writer_alive)
        return "alive";
    return v->closed ? "closed" : "dead";
}

/* ===================================================================== */
/* list                                                                    */
/* ===================================================================== */

static void list_row(const struct view *v)
{
    if (v->problem != NULL) {
        printf("%-24s %s\n", v->name, v->problem);
        return;
    }
    char behind[24];
    if (v->behind < 0)
        snprintf(behind, sizeof behind, "-");
    else
        snprintf(behind, sizeof behind, "%" PRId64, v->behind);
    printf("%-24s %-9s %8" PRIu64 " %8" PRIu64 " %-6s %4u/%-4u %12" PRIu64 " %8s\n", v->name,
           fanout_name(v->g.fanout), v->g.max_record, v->g.capacity, writer_word(v),
           v->readers_alive, v->g.max_readers, v->head, behind);
}

static int cmd_list(int argc, char **argv)
{
    if (argc > 2)
        return bad_usage("list takes no argument (got '%s')", argv[2]);
    DIR *d = opendir("/dev/shm");
    if (d == NULL) {
        fprintf(stderr, "spmc: cannot read /dev/shm: %s\n", strerror(errno));
        return 1;
    }
    printf("%-24s %-9s %8s %8s %-6s %9s %12s %8s\n", "NAME", "FANOUT", "SIZE", "CAPACITY",
           "WRITER", "READERS", "WRITTEN", "BEHIND");
    struct dirent *de;
    unsigned shown = 0;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len + 1 > SPMC_NAME_MAX)
            continue; /* a name our queues cannot have */
        char name[SPMC_NAME_MAX + 1];
        name[0] = '/';
        memcpy(name + 1, de->d_name, len + 1);
        struct view v;
        if (look_up(name, &v, 0) != 0)
            continue; /* not ours, not readable, or gone meanwhile */
        list_row(&v);
        shown++;
    }
    closedir(d);
    if (shown == 0)
        printf("(no queue of ours in /dev/shm)\n");
    printf("SIZE: largest record, bytes; CAPACITY, WRITTEN and BEHIND count slots of %u bytes\n"
           "(a record takes one per %u bytes, at least one); READERS: alive/table size;\n"
           "WRITTEN: slots written so far; BEHIND: slots the slowest live reader has yet to\n"
           "pass (broadcast, as of its last published position), or not yet claimed (share)\n",
           SPMC_SLOT, SPMC_SLOT);
    return 0;
}

/* ===================================================================== */
/* stat                                                                    */
/* ===================================================================== */

static const char *state_name(unsigned s)
{
    switch (s) {
    case SPMC_ENTRY_FREE: return "free";
    case SPMC_ENTRY_JOINING: return "joining";
    case SPMC_ENTRY_ACTIVE: return "active";
    default: return "starting";
    }
}

static int stat_once(const char *name)
{
    struct view v;
    int rc = look_up(name, &v, 1);
    if (rc == -1) {
        fprintf(stderr, "spmc: %s is not a queue of ours (no magic number at its start)\n", name);
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "spmc: %s: %s\n", name, strerror(-rc));
        return 1;
    }
    printf("queue     %s\n", v.name);
    if (v.problem != NULL) {
        printf("problem   %s", v.problem);
        if (v.version != 0 && v.version != SPMC_VERSION)
            printf(" (version %u; this tool reads version %u)", v.version, SPMC_VERSION);
        printf("\nwriter    %s (its lock %s held)\n", v.writer_alive ? "alive" : "gone",
               v.writer_alive ? "is" : "is not");
        free(v.entries);
        return 1;
    }
    printf("version   %u\n", SPMC_VERSION);
    printf("fan-out   %s\n", fanout_name(v.g.fanout));
    printf("records   up to %" PRIu64 " bytes\n", v.g.max_record);
    printf("capacity  %" PRIu64 " slots of %u bytes\n", v.g.capacity, v.g.slot_size);
    if (v.g.fanout == SPMC_SHARE)
        printf("claims    up to %u slots at a time (a longer record alone)\n", v.g.claim_max);
    printf("segment   %zu bytes\n", v.g.map_size);
    printf("writer    %s", writer_word(&v));
    if (v.writer_alive)
        printf(", pid %d in its own PID namespace", v.writer_pid);
    printf("\nwritten   %" PRIu64 " slots\n", v.head);
    if (v.g.fanout == SPMC_SHARE && v.behind >= 0)
        printf("claimed   %" PRIu64 " slots (%" PRId64 " waiting for a reader)\n", v.read_pos,
               v.behind);
    printf("readers   %u alive, %u entries held, %u in the table\n", v.readers_alive, v.readers,
           v.g.max_readers);
    printf("reaped    %" PRIu64 " entries of dead readers", v.reaped);
    if (v.g.fanout == SPMC_SHARE)
        printf(", %" PRIu64 " records delivered again", v.redelivered);
    printf("\n");
    for (unsigned e = 0; v.entries != NULL && e < v.g.max_readers; e++) {
        const struct entry_view *r = &v.entries[e];
        if (r->state == SPMC_ENTRY_FREE)
            continue;
        printf("  entry %-4u %-8s %-5s", e, state_name(r->state), r->alive ? "alive" : "dead");
        if (v.g.fanout == SPMC_BROADCAST && (v.head - r->position) <= v.g.capacity)
            printf(" at %-12" PRIu64 " %8" PRIu64 " slots behind", r->position,
                   v.head - r->position);
        printf(" pid %d\n", r->pid);
    }
    free(v.entries);
    return 0;
}

/* The arguments of stat and rm: one NAME and an optional @p flag, in any
 * order. 0, or EXIT_USAGE (said). */
static int name_and_flag(int argc, char **argv, const char *flag, const char **name, int *set)
{
    *name = NULL;
    *set = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], flag) == 0)
            *set = 1;
        else if (argv[i][0] == '-')
            return bad_usage("unknown option '%s'", argv[i]);
        else if (*name == NULL)
            *name = argv[i];
        else
            return bad_usage("one NAME only (got '%s' too)", argv[i]);
    }
    return *name == NULL ? bad_usage("which queue? (a NAME, such as /jobs)%s", "") : 0;
}

static int cmd_stat(int argc, char **argv)
{
    const char *name;
    int watch;
    if (name_and_flag(argc, argv, "--watch", &name, &watch) != 0)
        return EXIT_USAGE;
    if (!watch)
        return stat_once(name);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int rc = 0;
    while (!stop) {
        printf("\033[H\033[2J"); /* home, clear: like top */
        rc = stat_once(name);
        printf("(every second; Ctrl-C to stop)\n");
        fflush(stdout);
        struct timespec one = {1, 0};
        nanosleep(&one, NULL);
    }
    return rc;
}

/* ===================================================================== */
/* rm                                                                      */
/* ===================================================================== */

/* Does a live process hold any lock on the file? One F_OFD_GETLK over the
 * whole file answers for the writer and every reader, whatever the header
 * says: a hostile header cannot hide a live holder. */
static int anyone_alive(int fd)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
        return 1; /* cannot tell: say alive */
    return fl.l_type != F_UNLCK;
}

static int cmd_rm(int argc, char **argv)
{
    const char *name;
    int force;
    if (name_and_flag(argc, argv, "--force", &name, &force) != 0)
        return EXIT_USAGE;
    int rc = check_name(name);
    if (rc != 0) {
        fprintf(stderr, "spmc: %s: not a queue name (one '/' then up to %d characters)\n", name,
                SPMC_NAME_MAX - 1);
        return 1;
    }
    int fd = shm_open(name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0); /* a FIFO must not block us */
    if (fd < 0) {
        fprintf(stderr, "spmc: %s: %s\n", name, strerror(errno));
        return 1;
    }
    struct view v = {0};
    snprintf(v.name, sizeof v.name, "%s", name);
    if (look(fd, &v, 0) != 0) {
        fprintf(stderr, "spmc: %s is not a queue of ours (no magic number at its start); "
                        "not removed\n", name);
        close(fd);
        return 1;
    }
    if (anyone_alive(fd)) {
        if (!force) {
            fprintf(stderr, "spmc: %s is in use: a live process holds it (writer %s, %u "
                            "reader(s) alive); not removed (--force removes it anyway)\n",
                    name, v.writer_alive ? "alive" : "gone", v.readers_alive);
            close(fd);
            return 1;
        }
        fprintf(stderr, "spmc: warning: %s is in use by a live process; removing its name "
                        "anyway (processes that have it open keep their mapping)\n", name);
    }
    rc = unlink_if_same(name, fd);
    close(fd);
    if (rc != 0) {
        fprintf(stderr, "spmc: %s: %s\n", name,
                rc == -EEXIST ? "replaced by another segment meanwhile; not removed"
                              : strerror(-rc));
        return 1;
    }
    printf("removed %s\n", name);
    return 0;
}

/* ===================================================================== */
/* send and recv                                                           */
/* ===================================================================== */

/* A record carries one line: its bytes, without the newline (its length is
 * the record's). */

static int parse_count(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] == '-' || errno != 0 || end == s || *end != '\0' || v > max) {
        fprintf(stderr, "spmc: %s wants a number from 0 to %" PRIu64 ", not '%s'\n", opt, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int cmd_send(int argc, char **argv)
{
    const char *name = NULL;
    struct spmc_options o = {.fanout = SPMC_BROADCAST, .max_readers = SPMC_DEFAULT_READERS};
    uint64_t size = 4096, capacity = 1024, wait_for = 0, readers = SPMC_DEFAULT_READERS;
    uint64_t claim = SPMC_CLAIM_DEFAULT;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "--fanout") == 0 && val != NULL) {
            if (strcmp(val, "broadcast") == 0)
                o.fanout = SPMC_BROADCAST;
            else if (strcmp(val, "share") == 0)
                o.fanout = SPMC_SHARE;
            else
                return bad_usage("--fanout is broadcast or share, not '%s'", val);
            i++;
        } else if (strcmp(a, "--size") == 0 && val != NULL) {
            bad = parse_count(a, val, SPMC_RECORD_MAX, &size);
            i++;
        } else if (strcmp(a, "--capacity") == 0 && val != NULL) {
            bad = parse_count(a, val, UINT64_C(1) << 40, &capacity);
            i++;
        } else if (strcmp(a, "--readers") == 0 && val != NULL) {
            bad = parse_count(a, val, SPMC_MAX_READERS, &readers);
            i++;
        } else if (strcmp(a, "--wait-readers") == 0 && val != NULL) {
            bad = parse_count(a, val, SPMC_MAX_READERS, &wait_for);
            i++;
        } else if (strcmp(a, "--claim") == 0 && val != NULL) {
            bad = parse_count(a, val, SPMC_CLAIM_MAX, &claim);
            i++;
        } else if (a[0] == '-') {
            return bad_usage("send: unknown option, or one without its value: '%s'", a);
        } else if (name == NULL) {
            name = a;
        } else {
            return bad_usage("send takes one NAME (got '%s' too)", a);
        }
        if (bad)
            return EXIT_USAGE;
    }
    if (name == NULL)
        return bad_usage("send needs a NAME%s", "");
    if (size == 0) {
        fprintf(stderr, "spmc: --size must be 1 or more (the longest line, in bytes)\n");
        return EXIT_USAGE;
    }
    if (wait_for > readers) {
        fprintf(stderr, "spmc: --wait-readers %" PRIu64 " is more than --readers %" PRIu64 "\n",
                wait_for, readers);
        return EXIT_USAGE;
    }
    if (claim == 0) {
        fprintf(stderr, "spmc: --claim must be 1 or more (slots a reader takes at once)\n");
        return EXIT_USAGE;
    }
    o.max_readers = (unsigned)readers;
    o.claim_max = (unsigned)claim;
    struct spmc_queue q;
    if (!name_ok(name))
        return 1;
    int rc = spmc_queue_create_opts(&q, name, (size_t)size, (size_t)capacity, &o);
    if (rc != 0) {
        fprintf(stderr, "spmc: cannot create %s: %s%s\n", name, strerror(-rc),
                rc == -EEXIST ? " (spmc stat shows who holds it; spmc rm removes a dead queue, "
                                "never a file that is no queue of ours)"
                : rc == -EINVAL ? " (--capacity must be a power of two, at least twice the slots "
                                  "of a --size record; --readers 1 or more)"
                                : "");
        return 1;
    }
    catch_signals();
    while (wait_for > 0 && !stop &&
           (rc = spmc_queue_wait_readers(&q, (unsigned)wait_for, TICK_NS)) != 0) {
        if (rc != -ETIMEDOUT) {
            fprintf(stderr, "spmc: waiting for readers of %s: %s\n", name, strerror(-rc));
            (void)spmc_queue_destroy(&q);
            return 1;
        }
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t lines = 0;
    int status = 0;
    while (!stop && (n = getline(&line, &cap, stdin)) >= 0) {
        if (n > 0 && line[n - 1] == '\n')
            n--;
        if ((uint64_t)n > size) {
            fprintf(stderr, "spmc: line %" PRIu64 " has %zd bytes, more than --size %" PRIu64
                            ": stopped there, %" PRIu64 " lines sent\n",
                    lines + 1, n, size, lines);
            status = 1;
            break;
        }
        while ((rc = spmc_queue_push(&q, line, (size_t)n, TICK_NS)) == -ETIMEDOUT && !stop)
            ;
        if (rc != 0) {
            if (rc == -ETIMEDOUT) /* stopped by a signal while the ring was full */
                break;
            fprintf(stderr, "spmc: push of line %" PRIu64 " failed: %s\n", lines + 1,
                    strerror(-rc));
            status = 1;
            break;
        }
        lines++;
    }
    if (!stop && ferror(stdin)) {
        fprintf(stderr, "spmc: reading standard input failed after %" PRIu64 " lines\n", lines);
        status = 1;
    }
    free(line);
    /* Closes the queue: readers take what is left, then see the end. */
    (void)spmc_queue_destroy(&q);
    if (stop) {
        fprintf(stderr, "spmc: stopped by a signal after %" PRIu64 " lines; queue closed\n", lines);
        return 1;
    }
    return status;
}

/* Is @p name still the segment @p was describes? 0 once it is gone or
 * another segment has taken the name. */
static int same_segment(const char *name, const struct stat *was)
{
    int fd = shm_open(name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0);
    if (fd < 0)
        return 0;
    struct stat st;
    const int same = fstat(fd, &st) == 0 && st.st_dev == was->st_dev && st.st_ino == was->st_ino;
    close(fd);
    return same;
}

/* One line to standard output with write(2): the record's bytes and a
 * newline, all of them, or -errno. */
static int write_line(const void *rec, size_t len)
{
    static char newline = '\n';
    struct iovec v[2] = {{(void *)rec, len}, {&newline, 1}};
    struct iovec *p = v;
    int left = 2;
    while (left > 0) {
        ssize_t n = writev(STDOUT_FILENO, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        while (left > 0 && (size_t)n >= p->iov_len) {
            n -= (ssize_t)p->iov_len;
            p++;
            left--;
        }
        if (left > 0) {
            p->iov_base = (char *)p->iov_base + n;
            p->iov_len -= (size_t)n;
        }
    }
    return 0;
}

static int cmd_recv(int argc, char **argv)
{
    const char *name = NULL;
    uint64_t wait_s = 10;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--wait") == 0 && i + 1 < argc) {
            if (parse_count("--wait", argv[++i], 86400, &wait_s) != 0)
                return EXIT_USAGE;
        } else if (argv[i][0] == '-') {
            return bad_usage("recv: unknown option, or one without its value: '%s'", argv[i]);
        } else if (name == NULL) {
            name = argv[i];
        } else {
            return bad_usage("recv takes one NAME (got '%s' too)", argv[i]);
        }
    }
    if (name == NULL)
        return bad_usage("recv needs a NAME%s", "");
    if (!name_ok(name))
        return 1;
    struct spmc_queue q;
    int rc;
    uint64_t lines = 0;
    int status = 0, out_err = 0;
    const uint64_t deadline = mono_ns() + wait_s * 1000000000u;
again:
    /* -ENOENT: not created yet; -ETIMEDOUT: its creator, alive, has not
     * finished the header within attach's own wait. */
    while (((rc = spmc_queue_attach(&q, name, 0, 0)) == -ENOENT || rc == -ETIMEDOUT) &&
           mono_ns() < deadline && !stop) {
        struct timespec nap = {0, 10000000}; /* 10 ms */
        nanosleep(&nap, NULL);
    }
    if (stop) {
        if (rc == 0)
            (void)spmc_queue_destroy(&q);
        fprintf(stderr, "spmc: stopped by a signal while waiting for %s\n", name);
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "spmc: cannot attach to %s: %s%s\n", name, strerror(-rc),
                rc == -ENOENT   ? " (no such queue yet; spmc list shows those there are)"
                : rc == -EPROTO ? " (not a queue of this version, or damaged: spmc stat says)"
                : rc == -EPIPE  ? " (its writer has closed it)"
                : rc == -EUSERS ? " (its reader table is full: spmc stat shows it; "
                                  "send --readers sets its size)"
                                : "");
        return 1;
    }
    catch_signals();
    /* Each record is printed from the ring, in place, then released. In
     * work-sharing a released record goes to nobody else, so its line is
     * handed to the kernel first, with one write(2): a recv killed at any
     * moment has lost no line; one it wrote but had not released yet goes
     * to another reader too (twice, never zero times). In broadcast each
     * reader has its own copy of the stream: stdio's buffer serves. */
    const int share = q.fanout == SPMC_SHARE;
    while (!stop) {
        const void *rec;
        size_t len;
        rc = spmc_queue_peek(&q, &rec, &len, TICK_NS);
        if (rc == -ETIMEDOUT)
            continue;
        if (rc != 0)
            break;
        if (share) {
            out_err = write_line(rec, len);
            if (out_err != 0)
                break; /* not released: another reader gets it */
        } else {
            fwrite(rec, 1, len, stdout);
            putchar('\n');
        }
        rc = spmc_queue_release(&q);
        if (rc != 0)
            break;
        lines++;
    }
    if (rc == -EOWNERDEAD && lines == 0 && !stop && mono_ns() < deadline) {
        /* The queue's writer had died with nothing left for us: a queue
         * left behind, which the next `spmc send` of this name removes
         * and replaces. Wait for that, as for a queue not there yet. */
        struct stat was;
        const int known = fstat(q.fd, &was) == 0;
        (void)spmc_queue_destroy(&q);
        while (known && !stop && mono_ns() < deadline && same_segment(name, &was)) {
            struct timespec nap = {0, 10000000}; /* 10 ms */
            nanosleep(&nap, NULL);
        }
        if (known && !stop && mono_ns() < deadline)
            goto again;
        fprintf(stderr, "spmc: %s: %s\n", name,
                stop ? "stopped by a signal while waiting for a new writer"
                     : "its writer died before it sent anything, and no new one came");
        return 1;
    }
    if (stop) {
        fprintf(stderr, "spmc: stopped by a signal after %" PRIu64 " lines\n", lines);
        status = 1;
    } else if (out_err != 0) {
        fprintf(stderr, "spmc: cannot write standard output after %" PRIu64 " lines: %s "
                        "(the record is left to another reader)\n", lines, strerror(-out_err));
        status = 1;
    } else if (status == 0 && rc != -EPIPE) {
        fprintf(stderr, "spmc: %s after %" PRIu64 " lines: %s\n", name, lines,
                rc == -EOWNERDEAD ? "the writer died (everything it sent was received)"
                                  : strerror(-rc));
        status = 1;
    }
    (void)spmc_queue_destroy(&q);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "spmc: cannot write standard output: %s\n", strerror(errno));
        status = 1;
    }
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return bad_usage("which command?%s", "");
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "list") == 0)
        return cmd_list(argc, argv);
    if (strcmp(cmd, "stat") == 0)
        return cmd_stat(argc, argv);
    if (strcmp(cmd, "rm") == 0)
        return cmd_rm(argc, argv);
    if (strcmp(cmd, "send") == 0)
        return cmd_send(argc, argv);
    if (strcmp(cmd, "recv") == 0)
        return cmd_recv(argc, argv);
    return bad_usage("unknown command '%s'", cmd);
}
