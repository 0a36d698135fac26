/* common.c - helpers for the programs around the queue (see common.h). */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

extern char *program_invocation_short_name;

/* "program: message[: strerror(err)]" on one line; err 0 adds nothing. */
static void vreport(int err, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    if (n > 0 && msg[n - 1] == ':')
        msg[--n] = '\0';
    if (err != 0)
        fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, msg, strerror(err));
    else
        fprintf(stderr, "%s: %s\n", program_invocation_short_name, msg);
}

void die(const char *fmt, ...)
{
    int err = errno;
    size_t n = strlen(fmt);
    va_list ap;
    va_start(ap, fmt);
    vreport(n > 0 && fmt[n - 1] == ':' ? err : 0, fmt, ap);
    va_end(ap);
    exit(1);
}

void die_rc(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(rc < 0 ? -rc : rc, fmt, ap);
    va_end(ap);
    exit(1);
}

void usage_error(void)
{
    fprintf(stderr, "%s: try '%s --help'\n", program_invocation_short_name,
            program_invocation_name);
    exit(2);
}

void no_operands(int argc, char **argv)
{
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s' (this program takes options only; try '%s --help')\n",
                program_invocation_short_name, argv[optind], program_invocation_name);
        exit(2);
    }
}

static volatile sig_atomic_t *stop_flag;

static void on_stop_signal(int sig)
{
    *stop_flag = sig;
}

void catch_stop_signals(volatile sig_atomic_t *flag)
{
    stop_flag = flag;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        die("sigaction:");
}

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int pin_to_cpu(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        return -errno;
    return 0;
}

int usable_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
}

void unique_name(char *buf, size_t len, const char *prefix)
{
    static unsigned counter;
    snprintf(buf, len, "/%s-%ld-%u", prefix, (long)getpid(), counter++);
}

/* Payload word i of message seq: a cheap mix so neighbours differ. */
static inline uint64_t payload_word(uint64_t seq, uint64_t i)
{
    return (seq + 1) * 0x9E3779B97F4A7C15ull ^ (i * 0xBF58476D1CE4E5B9ull);
}

void msg_fill(void *buf, size_t size, uint64_t seq)
{
    unsigned char *p = buf;
    memcpy(p, &seq, sizeof seq);
    size_t i = 1;
    for (; (i + 1) * 8 <= size; i++) {
        uint64_t w = payload_word(seq, i);
        memcpy(p + i * 8, &w, 8);
    }
    if (i * 8 < size) {
        uint64_t w = payload_word(seq, i);
        memcpy(p + i * 8, &w, size - i * 8);
    }
}

uint64_t msg_seq(const void *buf)
{
    uint64_t seq;
    memcpy(&seq, buf, sizeof seq);
    return seq;
}

int msg_intact(const void *buf, size_t size)
{
    const unsigned char *p = buf;
    uint64_t seq = msg_seq(buf);
    size_t i = 1;
    for (; (i + 1) * 8 <= size; i++) {
        uint64_t w;
        memcpy(&w, p + i * 8, 8);
        if (w != payload_word(seq, i))
            return 0;
    }
    if (i * 8 < size) {
        uint64_t w = payload_word(seq, i), got = 0;
        memcpy(&got, p + i * 8, size - i * 8);
        if (memcmp(&got, &w, size - i * 8) != 0)
            return 0;
    }
    return 1;
}

uint64_t msg_checksum(const void *buf, size_t size)
{
    const unsigned char *p = buf;
    uint64_t sum = 0, w;
    size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        memcpy(&w, p + i, 8);
        sum += w;
    }
    if (i < size) {
        w = 0;
        memcpy(&w, p + i, size - i);
        sum += w;
    }
    return sum;
}

uint64_t parse_u64(const char *s, const char *what, uint64_t max)
{
    char *end;
    errno = 0;
    if (s == NULL || *s == '\0' || *s == '-')
        die("%s: expected a non-negative integer, got '%s'", what, s ? s : "");
    unsigned long long v = strtoull(s, &end, 0);
    if (*end != '\0')
        die("%s: expected a non-negative integer, got '%s'", what, s);
    if (errno == ERANGE || v > max)
        die("%s: %s is too large (at most %" PRIu64 ")", what, s, max);
    if (errno != 0)
        die("%s: cannot read '%s':", what, s);
    return (uint64_t)v;
}

/* What is wrong with a queue name, or NULL if nothing is. */
static const char *name_problem(const char *s)
{
    if (s == NULL || s[0] != '/')
        return "needs a leading /";
    if (s[1] == '\0')
        return "needs a character after the /";
    if (strchr(s + 1, '/') != NULL)
        return "may hold no / but the first";
    if (strlen(s) >= NAME_MAX)
        return "is too long";
    return NULL;
}

const char *parse_name(const char *s)
{
    const char *why = name_problem(s);
    if (why != NULL)
        die("queue name '%s' %s (e.g. /myqueue)", s ? s : "", why);
    return s;
}

void die_attach(int rc, const char *name)
{
    const char *why = name_problem(name);
    if (rc == -EINVAL && why != NULL)
        die("cannot attach to '%s': a queue name %s (e.g. /myqueue)", name, why);
    if (rc == -ENOENT)
        die("cannot attach to %s: there is no such queue (start the producer first, "
            "with the same queue name)", name);
    if (rc == -EBUSY)
        die("cannot attach to %s: another reader is attached, and this day's queue "
            "has room for one", name);
    if (rc == -EUSERS)
        die("cannot attach to %s: its reader table is full (the producer's "
            "--consumers sets its size)", name);
    if (rc == -EPROTO)
        die("cannot attach to %s: its header is not what was asked for: a --size or "
            "--capacity other than the producer's (they must be the same), a queue of "
            "another day, or one whose creator never finished it (a crashed one? see ls -l "
            "/dev/shm%s)", name, name);
    if (rc == -ENAMETOOLONG)
        die("cannot attach to %s: the name is %zu characters long, longer than this day's "
            "queue names can be", name, strlen(name));
    if (rc == -EACCES)
        die("cannot attach to %s: permission denied (the queue's mode and owner: "
            "ls -l /dev/shm%s)", name, name);
    die_rc(rc, "cannot attach to %s", name);
}

uint64_t queue_max_capacity(const struct queue_limits *lim, uint64_t elem_size)
{
    if (elem_size == 0 || elem_size > lim->max_size)
        return 0;
    uint64_t slot = (elem_size + lim->slot_align - 1) / lim->slot_align * lim->slot_align +
                    lim->slot_extra;
    if (lim->records) /* the capacity counts slots, whatever the record size */
        slot = lim->slot_align + lim->slot_extra;
    uint64_t n = lim->max_bytes / slot;
    while (lim->pow2 && (n & (n - 1)) != 0)
        n &= n - 1; /* down to the highest power of two */
    return n;
}

void die_create(int rc, const char *name, uint64_t elem_size, uint64_t capacity,
                const struct queue_limits *lim)
{
    const char *why = name_problem(name);
    if (rc == -EINVAL && why != NULL)
        die("cannot create '%s': a queue name %s (e.g. /myqueue)", name, why);
    if (rc == -ENAMETOOLONG)
        die("cannot create %s: the name is %zu characters long, this day's queue takes "
            "at most %" PRIu64 " (the leading / included)", name, strlen(name),
            lim->max_name);
    if (rc == -EINVAL && (elem_size == 0 || elem_size > lim->max_size))
        die("cannot create %s: --size must be 1 to %" PRIu64 " bytes, not %" PRIu64,
            name, lim->max_size, elem_size);
    if (rc == -EINVAL && lim->records && capacity < 2 * ((elem_size + 63) / 64))
        die("cannot create %s: --capacity counts 64-byte slots and must hold two of the "
            "largest records: at least %" PRIu64 " for --size %" PRIu64 ", not %" PRIu64,
            name, 2 * ((elem_size + 63) / 64), elem_size, capacity);
    if (rc == -EINVAL && lim->share && capacity < 2)
        die("cannot create %s: a work-sharing queue needs --capacity 2 or more, not %"
            PRIu64 " (with one slot, every push would wait until the message before "
            "it is copied out)", name, capacity);
    if (rc == -EINVAL && capacity == 0)
        die("cannot create %s: --capacity must be at least 1", name);
    if (rc == -EINVAL && lim->pow2 && (capacity & (capacity - 1)) != 0)
        die("cannot create %s: --capacity must be a power of two (e.g. 1024 or "
            "2048), not %" PRIu64, name, capacity);
    uint64_t most = queue_max_capacity(lim, elem_size);
    if (rc == -EINVAL && capacity > most)
        die("cannot create %s: --capacity %" PRIu64 " is too large for --size %" PRIu64
            ": at most %" PRIu64 " (a segment stays under %" PRIu64 " bytes)", name,
            capacity, elem_size, most, lim->max_bytes);
    if (rc == -ENOSPC || rc == -ENOMEM || rc == -EFBIG) {
        struct statvfs fs;
        uint64_t need = capacity <= UINT64_MAX / elem_size ? capacity * elem_size : UINT64_MAX;
        if (statvfs("/dev/shm", &fs) == 0)
            die("cannot create %s: it needs more than %" PRIu64 " bytes (--capacity %" PRIu64
                " messages of --size %" PRIu64 " bytes) and /dev/shm has %" PRIu64
                " bytes free (lower --capacity or --size; df -h /dev/shm; in a "
                "container, raise --shm-size)",
                name, need, capacity, elem_size,
                (uint64_t)fs.f_bavail * (uint64_t)fs.f_frsize);
    }
    if (rc == -EINVAL)
        die("cannot create %s: an argument is out of range (--size 1 to %" PRIu64
            ", --capacity 1 to %" PRIu64 " for this --size%s)", name, lim->max_size,
            most, lim->pow2 ? ", a power of two" : "");
    if (rc == -EEXIST)
        die("cannot create %s: the name exists already: another program is using it, "
            "or one that was killed left it (then rm /dev/shm%s)", name, name);
    die_rc(rc, "cannot create %s", name);
}

/* ===================================================================== */
/* Removing this process's segments however it ends                       */
/* ===================================================================== */

/* The signal handler reads what the threads record, so everything it
 * touches is a lock-free atomic, or written once before it may look. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "signal handlers need lock-free atomics");

enum { MAX_SEGMENTS = 32, SEGMENT_PATH = 64 };
enum { SEG_FREE, SEG_FILLING, SEG_OURS, SEG_GONE };

/* A record is filled in once (owner, path) and then only switches between
 * SEG_OURS and SEG_GONE: a name destroyed and created again (the same
 * benchmark queue, run after run) reuses its record, so the path the
 * handler reads is never being rewritten. */
static struct segment {
    atomic_int state;
    pid_t owner;             /* the process that created it */
    char path[SEGMENT_PATH]; /* "/dev/shm" + name, ready for unlink() */
} segments[MAX_SEGMENTS];

static atomic_int segment_ops; /* creates and destroys under way, all threads */
static atomic_int dying;       /* the signal that ends us; 0 while none */
static struct sigaction default_action; /* SIG_DFL, made before any signal */
static pthread_once_t segments_once = PTHREAD_ONCE_INIT;

/* Unlink this process's recorded segments. Async-signal-safe. */
static void remove_segments(void)
{
    pid_t self = getpid();
    for (int i = 0; i < MAX_SEGMENTS; i++)
        if (atomic_load(&segments[i].state) == SEG_OURS && segments[i].owner == self)
            unlink(segments[i].path);
}

/* Remove ours, then die of @p sig as if we had not caught it (the parent
 * sees "killed by SIGINT", a shell stops its loop). Async-signal-safe. */
static void end_with(int sig)
{
    remove_segments();
    sigaction(sig, &default_action, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL); /* blocked while its handler runs */
    raise(sig);
    _exit(128 + sig); /* not reached */
}

/* The two sides below order themselves like Dekker's: the handler stores
 * dying, then loads segment_ops; a create or destroy adds to segment_ops,
 * then loads dying (all seq_cst). At least one side sees the other: either
 * the handler sees the operation and leaves the ending to it (end_op()),
 * or the operation sees the signal and does not start. */
static void on_signal(int sig)
{
    atomic_store(&dying, sig);
    if (atomic_load(&segment_ops) == 0)
        end_with(sig);
}

static void end_op(void)
{
    if (atomic_fetch_sub(&segment_ops, 1) == 1) { /* the last one out */
        int sig = atomic_load(&dying);
        if (sig != 0)
            end_with(sig);
    }
}

static void begin_op(void)
{
    atomic_fetch_add(&segment_ops, 1);
    if (atomic_load(&dying) != 0) {
        end_op();      /* ends the process if no other operation is open ... */
        for (;;)
            pause();   /* ... else the last one will */
    }
}

static void at_exit(void)
{
    remove_segments();
}

static void install(void)
{
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old;
        if (sigaction(sigs[i], NULL, &old) != 0)
            die("sigaction:");
        if (old.sa_handler == SIG_IGN)
            continue; /* e.g. SIGHUP under nohup: stays ignored */
        if (sigaction(sigs[i], &sa, NULL) != 0)
            die("sigaction:");
    }
    if (atexit(at_exit) != 0)
        die("atexit failed");
}

void segment_creating(void)
{
    pthread_once(&segments_once, install);
    begin_op();
}

void segment_created(const char *name, int created)
{
    if (created) {
        char path[SEGMENT_PATH];
        int n = snprintf(path, sizeof path, "/dev/shm%s", name);
        pid_t self = getpid();
        struct segment *slot = NULL;
        for (int i = 0; i < MAX_SEGMENTS && slot == NULL; i++) { /* its old record */
            struct segment *e = &segments[i];
            if (atomic_load(&e->state) == SEG_GONE && e->owner == self &&
                strcmp(e->path, path) == 0)
                slot = e;
        }
        for (int i = 0; i < MAX_SEGMENTS && slot == NULL && n < SEGMENT_PATH; i++) {
            int free_state = SEG_FREE;
            if (atomic_compare_exchange_strong(&segments[i].state, &free_state, SEG_FILLING)) {
                slot = &segments[i];
                slot->owner = self;
                memcpy(slot->path, path, (size_t)n + 1);
            }
        }
        if (slot == NULL) {
            shm_unlink(name);
            die("cannot record segment %s for removal at exit: too many, or name too long",
                name);
        }
        atomic_store(&slot->state, SEG_OURS); /* now the handler may read it */
    }
    end_op();
}

void segment_destroying(void)
{
    pthread_once(&segments_once, install);
    begin_op();
}

void segment_destroyed(const char *name)
{
    pid_t self = getpid();
    for (int i = 0; i < MAX_SEGMENTS; i++) {
        struct segment *e = &segments[i];
        if (atomic_load(&e->state) == SEG_OURS && e->owner == self &&
            strcmp(e->path + strlen("/dev/shm"), name) == 0)
            atomic_store(&e->state, SEG_GONE);
    }
    end_op();
}
