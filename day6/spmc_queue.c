/* spmc_queue.c - day 6: the day-5 queue, aware of crashed peers and hostile bytes. */
#define _POSIX_C_SOURCE 200809L
#include "spmc_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

_Static_assert(offsetof(struct spmc_shm_header, ready) == 48, "wire format");
_Static_assert(offsetof(struct spmc_shm_header, head) == SPMC_CACHELINE, "head on line 1");
_Static_assert(offsetof(struct spmc_shm_header, read_index) == 2 * SPMC_CACHELINE,
               "read_index on line 2");
_Static_assert(sizeof(struct spmc_shm_header) == 3 * SPMC_CACHELINE, "table on line 3");
_Static_assert(sizeof(struct spmc_shm_reader) == SPMC_CACHELINE, "one line per reader");

/* A slot is [payload][seq]. Packed (the default) puts seq right after the
 * payload (72-byte stride for 64-byte messages); SPMC_PAD_SLOTS=1 rounds
 * each slot up to whole cache lines instead (128 bytes): measured slower,
 * see day5/README.md. */
#ifndef SPMC_PAD_SLOTS
#define SPMC_PAD_SLOTS 0
#endif

/* ===================================================================== */
/* Names and sizes                                                        */
/* ===================================================================== */

/* A POSIX shm name: "/" then 1..SPMC_NAME_MAX-1 characters, no other '/'. */
static int check_name(const char *name)
{
    if (name == NULL || name[0] != '/' || name[1] == '\0')
        return -EINVAL;
    size_t len = strnlen(name, SPMC_NAME_MAX + 1);
    if (len > SPMC_NAME_MAX)
        return -ENAMETOOLONG;
    if (strchr(name + 1, '/') != NULL)
        return -EINVAL;
    return 0;
}

static int is_power_of_two(uint64_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

/* Stride of a slot holding elem_size payload bytes and the seq word; 0 if
 * it would not fit in 32 bits. */
static uint64_t slot_size_for(uint64_t elem_size)
{
    if (elem_size == 0 || elem_size > UINT32_MAX / 2)
        return 0;
    uint64_t packed = (elem_size + 7) / 8 * 8 + sizeof(uint64_t);
    if (SPMC_PAD_SLOTS)
        return (packed + SPMC_CACHELINE - 1) / SPMC_CACHELINE * SPMC_CACHELINE;
    return packed;
}

/* Bytes of the work-sharing release words: one per slot, whole lines. */
static uint64_t freed_size(uint64_t fanout, uint64_t capacity)
{
    if (fanout != SPMC_SHARE)
        return 0;
    return (capacity * sizeof(uint64_t) + SPMC_CACHELINE - 1) / SPMC_CACHELINE * SPMC_CACHELINE;
}

/* Bytes of a whole segment; 0 when the sizes make no sense or overflow. */
static size_t segment_size(uint64_t slot_size, uint64_t capacity, uint64_t max_readers,
                           uint64_t fanout)
{
    const size_t room = SIZE_MAX / 4;
    size_t table = sizeof(struct spmc_shm_header) +
                   (size_t)max_readers * sizeof(struct spmc_shm_reader);
    if (slot_size == 0 || !is_power_of_two(capacity) || max_readers == 0 ||
        max_readers > SPMC_MAX_READERS || capacity > (room - table) / (slot_size + 8))
        return 0;
    return table + (size_t)freed_size(fanout, capacity) + (size_t)(slot_size * capacity);
}

/* Point the handle into a mapped segment laid out as above. */
static void locate(struct spmc_queue *q, struct spmc_shm_header *h)
{
    q->hdr = h;
    q->readers = (struct spmc_shm_reader *)(h + 1);
    q->freed = (_Atomic uint64_t *)(q->readers + q->max_readers);
    q->slots = (unsigned char *)q->freed + freed_size(q->fanout, q->capacity);
}

/* A work-sharing release word holding this bit is a reader's mark "claimed
 * by me": entry index in bits 32..47, the entry's generation in bits 0..31.
 * Indices never reach 2^63, so a mark is never mistaken for one. */
#define CLAIM_MARK (1ull << 63)

/* How often a waiting side looks at whether its peers are still alive. */
enum { CHECK_EVERY_POLLS = 256, CHECK_EVERY_NS = 10000000 };

/* Bound on lock-free retry loops, so that no value a hostile process writes
 * into the segment can keep a call spinning forever. */
enum { MAX_RETRIES = 100000 };

/* The sequence word of the slot for index i. */
static inline _Atomic uint64_t *slot_seq(const struct spmc_queue *q, uint64_t i)
{
    return (_Atomic uint64_t *)(q->slots + (i & q->mask) * q->slot_size + q->seq_offset);
}

static inline unsigned char *slot_data(const struct spmc_queue *q, uint64_t i)
{
    return q->slots + (i & q->mask) * q->slot_size;
}

/* ===================================================================== */
/* Waiting                                                                 */
/* ===================================================================== */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("pause");
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Spin a little, then yield, then sleep: a waiter that shares its core with
 * the thread it waits for must let that thread run. The clock is read only
 * once spinning is over, so a short wait costs no system time at all. */
struct waiter {
    unsigned rounds;
    int64_t timeout_ns;
    uint64_t deadline; /* 0 until the spinning is over */
};

enum { PLAIN_ROUNDS = 64, SPIN_ROUNDS = 256, YIELD_ROUNDS = 256 + 1024 };

static void wait_start(struct waiter *w, int64_t timeout_ns)
{
    w->rounds = 0;
    w->timeout_ns = timeout_ns;
    w->deadline = 0;
}

/* One more round of waiting; -ETIMEDOUT once the deadline has passed. The
 * timeout counts from the end of the spinning (a few microseconds late). */
static int wait_more(struct waiter *w)
{
    unsigned r = ++w->rounds;
    if (r < SPIN_ROUNDS) {
        if (r > PLAIN_ROUNDS) /* first re-check at once, then politely */
            cpu_relax();
        return 0;
    }
    if (w->timeout_ns >= 0) {
        uint64_t now = mono_ns();
        if (w->deadline == 0)
            w->deadline = now + (uint64_t)w->timeout_ns;
        else if (now >= w->deadline)
            return -ETIMEDOUT;
    }
    if (r < YIELD_ROUNDS) {
        sched_yield();
    } else {
        struct timespec nap = {0, 50000}; /* 50 us */
        nanosleep(&nap, NULL);
        w->rounds = YIELD_ROUNDS; /* no overflow, however long we wait */
    }
    return 0;
}

/* ===================================================================== */
/* Processes                                                               */
/* ===================================================================== */

/* A process's identity: its pid in the low 32 bits, the low 32 bits of its
 * start time (clock ticks after boot, field 22 of /proc/PID/stat) in the
 * high ones. A pid the kernel has handed out again belongs to a process
 * that started later, so the old identity no longer matches it. One 64-bit
 * word, so it is stored and loaded atomically. */

/* State letter and start time of @p pid from /proc; 0 when unreadable. */
static int proc_stat(pid_t pid, char *state, uint64_t *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold anything */
    if (p == NULL || p[1] != ' ' || p[2] == '\0')
        return -1;
    p += 2; /* field 3, the state */
    *state = *p;
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (p == NULL)
            return -1;
        p++;
    }
    *start = strtoull(p, NULL, 10);
    return 0;
}

static uint64_t identity_of(pid_t pid)
{
    char state;
    uint64_t start = 0;
    if (proc_stat(pid, &state, &start) != 0)
        start = 0;
    return (start & 0xffffffffu) << 32 | (uint32_t)pid;
}

/* Is the process of identity @p id still running? A zombie is not, a pid
 * reused by a younger process is not; without /proc, trust kill(). */
static int is_alive(uint64_t id)
{
    pid_t pid = (pid_t)(id & 0x7fffffffu);
    if (pid <= 0)
        return 0;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 0;
    char state;
    uint64_t start;
    if (proc_stat(pid, &state, &start) != 0)
        return 1;
    if (state == 'Z' || state == 'X')
        return 0;
    return (start & 0xffffffffu) == id >> 32;
}

/* Rate limit for liveness checks: true once every CHECK_EVERY_POLLS polls
 * and at most every CHECK_EVERY_NS. Keeps system calls off the hot path. */
static int time_to_check(struct spmc_queue *q)
{
    if (++q->idle_polls % CHECK_EVERY_POLLS != 0)
        return 0;
    uint64_t now = mono_ns();
    if (now - q->last_check_ns < CHECK_EVERY_NS)
        return 0;
    q->last_check_ns = now;
    return 1;
}

/* Free the entries of readers whose process is gone; how many. A dead
 * reader's cursor would hold a broadcast writer back for ever. */
static unsigned reap_readers(struct spmc_queue *q)
{
    unsigned n = 0;
    for (unsigned e = 0; e < q->max_readers; e++) {
        struct spmc_shm_reader *r = &q->readers[e];
        /* Pairs with the seq_cst store of state in join_broadcast() and the
         * release store in spmc_queue_attach(): owner was stored before. */
        uint32_t state = atomic_load_explicit(&r->state, memory_order_acquire);
        uint64_t owner = atomic_load_explicit(&r->owner, memory_order_relaxed);
        if (state == SPMC_ENTRY_FREE || owner == 0 || is_alive(owner))
            continue;
        /* Pairs with the seq_cst loads of state in min_cursor(). */
        if (atomic_compare_exchange_strong_explicit(&r->state, &state, SPMC_ENTRY_FREE,
                                                    memory_order_seq_cst,
                                                    memory_order_relaxed)) {
            atomic_store_explicit(&r->owner, 0, memory_order_relaxed);
            q->reclaimed++;
            n++;
        }
    }
    return n;
}

/* ===================================================================== */
/* Mapping                                                                 */
/* ===================================================================== */

/* A process maps each segment once: a second handle on a segment this
 * process has mapped already (a writer thread and a reader thread, say)
 * shares that mapping. It saves address space, and it is what lets
 * ThreadSanitizer check the queue at all: TSan compares addresses, and two
 * mappings of one segment would look to it like unrelated memory. */
struct mapping {
    dev_t dev;
    ino_t ino;
    void *base;
    size_t size;
    unsigned users; /* 0: a free entry */
};

enum { MAX_MAPPINGS = 64 };
static struct mapping mappings[MAX_MAPPINGS];
static pthread_mutex_t mappings_lock = PTHREAD_MUTEX_INITIALIZER;

/* Map @p size bytes of the segment open on @p fd read-write, or share this
 * process's mapping of it. NULL with errno set on failure. */
static void *map_segment(int fd, size_t size)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return NULL;
    void *base = NULL;
    int err = 0;
    struct mapping *unused = NULL;
    pthread_mutex_lock(&mappings_lock);
    for (int i = 0; i < MAX_MAPPINGS && base == NULL; i++) {
        struct mapping *m = &mappings[i];
        if (m->users == 0) {
            if (unused == NULL)
                unused = m;
        } else if (m->dev == st.st_dev && m->ino == st.st_ino && m->size == size) {
            m->users++;
            base = m->base;
        }
    }
    if (base == NULL) {
        base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (base == MAP_FAILED) {
            err = errno;
            base = NULL;
        } else if (unused != NULL) { /* else: not shared, still correct */
            *unused = (struct mapping){st.st_dev, st.st_ino, base, size, 1};
        }
    }
    pthread_mutex_unlock(&mappings_lock);
    if (base == NULL)
        errno = err;
    return base;
}

/* Undo one map_segment(): unmap when the last handle of this process goes. */
static void unmap_segment(void *base, size_t size)
{
    pthread_mutex_lock(&mappings_lock);
    for (int i = 0; i < MAX_MAPPINGS; i++) {
        struct mapping *m = &mappings[i];
        if (m->users > 0 && m->base == base) {
            if (--m->users > 0) {
                pthread_mutex_unlock(&mappings_lock);
                return;
            }
            break;
        }
    }
    pthread_mutex_unlock(&mappings_lock);
    munmap(base, size);
}

/* ===================================================================== */
/* Creating (writer)                                                       */
/* ===================================================================== */

/* Is the queue segment open on @p fd left by a writer that is gone? A
 * segment that is not one of our queues is never "stale": it is someone
 * else's. A header that was never finished counts as stale once it is a
 * second old (its creator died between shm_open() and the header). */
static int writer_gone(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return 0;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int old = now.tv_sec - st.st_ctim.tv_sec > 1;
    if ((size_t)st.st_size < sizeof(struct spmc_shm_header))
        return old;
    struct spmc_shm_header *h =
        mmap(NULL, sizeof *h, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED)
        return 0;
    uint64_t writer = atomic_load_explicit(&h->writer, memory_order_relaxed);
    int gone;
    if (writer == 0)
        gone = old && h->magic == 0; /* died before it wrote anything */
    else if (h->magic != SPMC_MAGIC && h->magic != 0)
        gone = 0; /* not a queue: leave it alone */
    else
        gone = !is_alive(writer);
    munmap(h, sizeof *h);
    return gone;
}

/* The name is taken: remove the segment if its writer is gone. 0 when the
 * name is free now, -EEXIST when it is not. A write lock on the old segment
 * keeps two restarting writers from removing each other's new queue. */
static int reclaim_stale(const char *name)
{
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0)
        return errno == ENOENT ? 0 : -EEXIST;
    int rc = -EEXIST;
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    struct stat st, now;
    if (fcntl(fd, F_SETLK, &lock) == 0 && fstat(fd, &st) == 0 && writer_gone(fd)) {
        int again = shm_open(name, O_RDONLY, 0); /* still the same segment? */
        if (again >= 0 && fstat(again, &now) == 0 && now.st_ino == st.st_ino &&
            now.st_dev == st.st_dev && (shm_unlink(name) == 0 || errno == ENOENT))
            rc = 0;
        if (again >= 0)
            close(again);
    }
    close(fd); /* drops the lock */
    return rc;
}

int spmc_queue_owner(const char *name, int *pid)
{
    if (pid == NULL)
        return -EINVAL;
    int rc = check_name(name);
    if (rc != 0)
        return rc;
    int fd = shm_open(name, O_RDONLY, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(struct spmc_shm_header)) {
        close(fd);
        return -EPROTO;
    }
    const struct spmc_shm_header *h =
        mmap(NULL, sizeof *h, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (h == MAP_FAILED)
        return -EPROTO;
    uint64_t writer = atomic_load_explicit((_Atomic uint64_t *)&h->writer, memory_order_relaxed);
    if (h->magic != SPMC_MAGIC || h->version != SPMC_VERSION) {
        rc = -EPROTO;
    } else if (writer != 0 && is_alive(writer)) {
        *pid = (int)(writer & 0x7fffffffu);
        rc = 0;
    } else {
        rc = -ESRCH;
    }
    munmap((void *)h, sizeof *h);
    return rc;
}

int spmc_queue_create(struct spmc_queue *q, const char *name, size_t elem_size,
                      size_t capacity)
{
    const struct spmc_options defaults = {SPMC_BROADCAST, SPMC_DEFAULT_READERS, 0600};
    return spmc_queue_create_opts(q, name, elem_size, capacity, &defaults);
}

int spmc_queue_create_opts(struct spmc_queue *q, const char *name, size_t elem_size,
                           size_t capacity, const struct spmc_options *opts)
{
    if (q == NULL)
        return -EINVAL;
    memset(q, 0, sizeof *q);
    const struct spmc_options defaults = {SPMC_BROADCAST, SPMC_DEFAULT_READERS, 0600};
    if (opts == NULL)
        opts = &defaults;
    if (opts->mode > 0777)
        return -EINVAL;
    mode_t perm = opts->mode != 0 ? (mode_t)opts->mode : 0600;
    int rc = check_name(name);
    if (rc != 0)
        return rc;
    if (opts->fanout != SPMC_BROADCAST && opts->fanout != SPMC_SHARE)
        return -EINVAL;
    uint64_t slot_size = slot_size_for(elem_size);
    size_t size = segment_size(slot_size, capacity, opts->max_readers, opts->fanout);
    if (size == 0)
        return -EINVAL;

    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, perm);
    if (fd < 0 && errno == EEXIST) {
        rc = reclaim_stale(name); /* a crashed writer's segment goes */
        if (rc != 0)
            return rc;
        fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, perm);
    }
    if (fd < 0)
        return -errno;
    /* shm_open() applied our umask; the caller's mode wins. */
    if (fchmod(fd, perm) != 0 || ftruncate(fd, (off_t)size) != 0) {
        rc = errno == EFBIG ? -ENOMEM : -errno;
        goto fail_unlink;
    }
    /* Reserve the memory now: a full /dev/shm fails here, not with SIGBUS
     * at the first touch of a page long after creation. */
    rc = posix_fallocate(fd, 0, (off_t)size);
    if (rc != 0) {
        rc = rc == EFBIG ? -ENOSPC : -rc;
        goto fail_unlink;
    }
    void *map = map_segment(fd, size);
    if (map == NULL) {
        rc = -errno;
        goto fail_unlink;
    }
    close(fd);

    struct spmc_shm_header *h = map;
    /* First: whoever finds this segment half-written can tell whether its
     * creator is still alive (see reclaim_stale()). */
    atomic_store_explicit(&h->writer, identity_of(getpid()), memory_order_relaxed);
    h->magic = SPMC_MAGIC;
    h->version = SPMC_VERSION;
    h->header_size = sizeof *h;
    h->cacheline = SPMC_CACHELINE;
    h->elem_size = elem_size;
    h->capacity = capacity;
    h->slot_size = (uint32_t)slot_size;
    h->fanout = (uint32_t)opts->fanout;
    h->max_readers = opts->max_readers;
    atomic_store_explicit(&h->closed, 0, memory_order_relaxed);     /* published by ready */
    atomic_store_explicit(&h->head, 0, memory_order_relaxed);       /* published by ready */
    atomic_store_explicit(&h->gate, 0, memory_order_relaxed);       /* published by ready */
    atomic_store_explicit(&h->read_index, 0, memory_order_relaxed); /* published by ready */

    q->map_size = size;
    q->elem_size = elem_size;
    q->slot_size = (size_t)slot_size;
    q->seq_offset = (size_t)slot_size - sizeof(uint64_t);
    q->capacity = capacity;
    q->mask = capacity - 1;
    q->max_readers = opts->max_readers;
    q->fanout = opts->fanout;
    q->mode = SPMC_WRITER;
    q->index = 0;
    q->limit = capacity;
    locate(q, h);
    memcpy(q->name, name, strlen(name) + 1);
    for (unsigned i = 0; i < q->max_readers; i++) {
        /* published by ready */
        atomic_store_explicit(&q->readers[i].cursor, 0, memory_order_relaxed);
        atomic_store_explicit(&q->readers[i].state, SPMC_ENTRY_FREE, memory_order_relaxed);
        atomic_store_explicit(&q->readers[i].generation, 0, memory_order_relaxed);
        atomic_store_explicit(&q->readers[i].owner, 0, memory_order_relaxed);
    }
    for (uint64_t i = 0; i < capacity; i++) {
        /* Slot i holds no message yet (message i would be seq i + 1) ... */
        atomic_store_explicit(slot_seq(q, i), i, memory_order_relaxed); /* published by ready */
        if (opts->fanout == SPMC_SHARE) /* ... and is free for message i */
            atomic_store_explicit(&q->freed[i], i, memory_order_relaxed); /* published by ready */
    }
    /* Last: pairs with the acquire load of ready in spmc_queue_attach(). */
    atomic_store_explicit(&h->ready, SPMC_READY, memory_order_release);
    return 0;

fail_unlink:
    shm_unlink(name);
    close(fd);
    return rc;
}

/* Attached readers: active entries. A reader still joining is not counted
 * yet: a writer that waited for it must not publish before the reader has
 * chosen where it starts, or a broadcast reader would miss the first
 * messages. */
static unsigned count_readers(const struct spmc_queue *q)
{
    unsigned n = 0;
    for (unsigned i = 0; i < q->max_readers; i++)
        /* Pairs with the stores of state SPMC_ENTRY_ACTIVE in
         * join_broadcast() and spmc_queue_attach(). */
        n += atomic_load_explicit(&q->readers[i].state, memory_order_acquire) ==
             SPMC_ENTRY_ACTIVE;
    return n;
}

int spmc_queue_wait_readers(struct spmc_queue *q, unsigned count, int64_t timeout_ns)
{
    if (q == NULL || q->mode != SPMC_WRITER || count > q->max_readers)
        return -EINVAL;
    struct waiter w;
    wait_start(&w, timeout_ns);
    while (count_readers(q) < count) {
        int rc = wait_more(&w);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ===================================================================== */
/* Attaching (reader)                                                      */
/* ===================================================================== */

/* The fields an attacher needs, read once from the shared header so that a
 * process changing them later cannot make us use values we did not check. */
struct header_copy {
    uint32_t magic, version, header_size, cacheline;
    uint64_t elem_size, capacity;
    uint32_t slot_size, fanout, max_readers;
};

/* Check a header the creator has published; 0 or -EPROTO. */
static int check_header(const struct header_copy *c, size_t elem_size,
                        size_t capacity, off_t file_size)
{
    if (c->magic != SPMC_MAGIC || c->version != SPMC_VERSION ||
        c->header_size != sizeof(struct spmc_shm_header) ||
        c->cacheline != SPMC_CACHELINE)
        return -EPROTO;
    if ((elem_size != 0 && c->elem_size != elem_size) ||
        (capacity != 0 && c->capacity != capacity))
        return -EPROTO;
    if ((c->fanout != SPMC_BROADCAST && c->fanout != SPMC_SHARE) ||
        c->slot_size != slot_size_for(c->elem_size))
        return -EPROTO;
    size_t size = segment_size(c->slot_size, c->capacity, c->max_readers, c->fanout);
    if (size == 0 || (uint64_t)file_size < size)
        return -EPROTO;
    return 0;
}

/* Broadcast join: choose a starting cursor the writer is guaranteed to
 * respect. The writer pushes freely while its index stays below
 * gate + capacity, where gate is the lowest cursor it saw when it last
 * looked; it stores gate *before* it re-reads the table (see
 * refresh_limit()). We store our cursor *before* we read gate. With both
 * pairs sequentially consistent, either the writer's re-read sees our
 * cursor, or we see its new gate; if that gate is beyond our cursor we may
 * already be overrun, so we start again from the writer's newer position. */
static int join_broadcast(struct spmc_queue *q)
{
    struct spmc_shm_header *h = q->hdr;
    for (int tries = 0; tries < MAX_RETRIES; tries++) {
        /* Position only: the data is published by each slot's seq. */
        uint64_t start = atomic_load_explicit(&h->head, memory_order_relaxed);
        /* Pairs with the seq_cst load of cursor in min_cursor(). */
        atomic_store_explicit(&q->entry->cursor, start, memory_order_seq_cst);
        /* Pairs with the seq_cst load of state in min_cursor(). */
        atomic_store_explicit(&q->entry->state, SPMC_ENTRY_ACTIVE, memory_order_seq_cst);
        /* Pairs with the seq_cst store of gate in refresh_limit(). */
        uint64_t gate = atomic_load_explicit(&h->gate, memory_order_seq_cst);
        if ((int64_t)(gate - start) <= 0) {
            q->index = q->published = start;
            return 0;
        }
    }
    return -EPROTO; /* gate stays beyond head: not a writer we understand */
}

/* Claim a free entry of the reader table; NULL when all are taken. */
static struct spmc_shm_reader *claim_entry(struct spmc_queue *q)
{
    for (unsigned i = 0; i < q->max_readers; i++) {
        uint32_t free_state = SPMC_ENTRY_FREE;
        /* Pairs with the stores of SPMC_ENTRY_FREE in spmc_queue_destroy()
         * and reap_readers(): the entry's previous reader is done with it. */
        if (atomic_compare_exchange_strong_explicit(&q->readers[i].state, &free_state,
                                                    SPMC_ENTRY_JOINING, memory_order_acq_rel,
                                                    memory_order_relaxed))
            return &q->readers[i];
    }
    return NULL;
}

int spmc_queue_attach(struct spmc_queue *q, const char *name, size_t elem_size,
                      size_t capacity)
{
    if (q == NULL)
        return -EINVAL;
    memset(q, 0, sizeof *q);
    int rc = check_name(name);
    if (rc != 0)
        return rc;
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0)
        return -errno;

    /* The creator may still be sizing the segment or writing the header:
     * wait a bounded time for the size, then for the ready word. */
    struct spmc_shm_header *h = MAP_FAILED;
    struct stat st;
    uint64_t deadline = mono_ns() + SPMC_ATTACH_WAIT_NS;
    struct timespec nap = {0, 1000000}; /* 1 ms */
    for (;;) {
        if (fstat(fd, &st) != 0) {
            rc = -errno;
            goto fail;
        }
        if ((size_t)st.st_size >= sizeof *h)
            break;
        if (mono_ns() >= deadline) {
            rc = -EPROTO;
            goto fail;
        }
        nanosleep(&nap, NULL);
    }
    h = mmap(NULL, sizeof *h, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED) {
        rc = -errno;
        goto fail;
    }
    /* Pairs with the release store of ready in spmc_queue_create_opts(). */
    while (atomic_load_explicit(&h->ready, memory_order_acquire) != SPMC_READY) {
        if (mono_ns() >= deadline) {
            rc = -EPROTO;
            goto fail;
        }
        nanosleep(&nap, NULL);
    }
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto fail;
    }
    struct header_copy c = {h->magic,     h->version,   h->header_size,
                            h->cacheline, h->elem_size, h->capacity,
                            h->slot_size, h->fanout,    h->max_readers};
    rc = check_header(&c, elem_size, capacity, st.st_size);
    if (rc != 0)
        goto fail;

    /* From here on only the checked copies are used. */
    q->elem_size = (size_t)c.elem_size;
    q->slot_size = c.slot_size;
    q->seq_offset = q->slot_size - sizeof(uint64_t);
    q->capacity = c.capacity;
    q->mask = c.capacity - 1;
    q->max_readers = c.max_readers;
    q->fanout = (enum spmc_fanout)c.fanout;
    q->map_size = segment_size(c.slot_size, c.capacity, c.max_readers, c.fanout);
    munmap(h, sizeof *h);
    h = map_segment(fd, q->map_size);
    if (h == NULL) {
        rc = -errno;
        h = MAP_FAILED;
        goto fail;
    }
    close(fd);
    fd = -1;
    locate(q, h);

    /* Pairs with the release store of closed in spmc_queue_destroy(). */
    if (atomic_load_explicit(&h->closed, memory_order_acquire)) {
        rc = -EPIPE;
        goto fail;
    }
    q->entry = claim_entry(q);
    if (q->entry == NULL && reap_readers(q) > 0) /* dead readers' entries */
        q->entry = claim_entry(q);
    if (q->entry == NULL) {
        rc = -EUSERS;
        goto fail;
    }
    /* Before the entry becomes active (the store of state publishes it):
     * the writer must be able to tell when this process is gone. */
    atomic_store_explicit(&q->entry->owner, identity_of(getpid()), memory_order_relaxed);
    if (q->fanout == SPMC_SHARE) {
        uint32_t gen = atomic_fetch_add_explicit(&q->entry->generation, 1,
                                                 memory_order_relaxed) + 1;
        q->tag = CLAIM_MARK | (uint64_t)(q->entry - q->readers) << 32 | gen;
    }
    if (q->fanout == SPMC_BROADCAST) {
        q->publish_mask = q->capacity >= 4 ? q->capacity / 4 - 1 : 0;
        rc = join_broadcast(q);
        if (rc != 0) {
            /* Pairs with the acquire load of state in count_readers(). */
            atomic_store_explicit(&q->entry->state, SPMC_ENTRY_FREE, memory_order_seq_cst);
            goto fail;
        }
    } else {
        /* Pairs with the release store of state in spmc_queue_destroy(). */
        atomic_store_explicit(&q->entry->state, SPMC_ENTRY_ACTIVE, memory_order_release);
        /* A hint only: the compare-and-swap in pop_share() decides. */
        q->index = atomic_load_explicit(&h->read_index, memory_order_relaxed);
    }
    q->mode = SPMC_READER;
    memcpy(q->name, name, strlen(name) + 1);
    return 0;

fail:
    if (q->hdr != NULL)
        unmap_segment(h, q->map_size);
    else if (h != MAP_FAILED)
        munmap(h, sizeof *h);
    if (fd >= 0)
        close(fd);
    memset(q, 0, sizeof *q);
    return rc;
}

/* ===================================================================== */
/* Pushing                                                                 */
/* ===================================================================== */

/* Broadcast: the lowest cursor of the attached readers (index if none). */
static uint64_t min_cursor(const struct spmc_queue *q, uint64_t index)
{
    uint64_t low = index;
    for (unsigned i = 0; i < q->max_readers; i++) {
        /* Pairs with the seq_cst store of state in join_broadcast(). */
        if (atomic_load_explicit(&q->readers[i].state, memory_order_seq_cst) !=
            SPMC_ENTRY_ACTIVE)
            continue;
        /* Pairs with the seq_cst store in join_broadcast() and with the
         * release stores of cursor in publish_cursor(): the reader has
         * copied every slot below its cursor out before it publishes. */
        uint64_t cur = atomic_load_explicit(&q->readers[i].cursor, memory_order_seq_cst);
        if ((int64_t)(cur - low) < 0)
            low = cur;
    }
    return low;
}

/* Broadcast: the cached limit said "full"; look at the readers again. A
 * new low point is first published as the gate and the table read once
 * more, which catches a reader that joined meanwhile (see join_broadcast()).
 * While we wait on a slow reader the low point does not move, and the scan
 * alone is enough: the gate we published last already says the same. */
static void refresh_limit(struct spmc_queue *q)
{
    uint64_t low = min_cursor(q, q->index);
    if (low != q->gate) {
        /* Pairs with the seq_cst load of gate in join_broadcast(). */
        atomic_store_explicit(&q->hdr->gate, low, memory_order_seq_cst);
        q->gate = low;
        uint64_t again = min_cursor(q, q->index);
        if ((int64_t)(again - low) < 0)
            low = again;
    }
    q->limit = low + q->capacity;
}

/* Share: the slot for message i is not free; its release word holds @p v.
 * If the reader that took the slot's last message is dead, take the slot
 * back (that message is lost with the reader) and return 0. */
static int rescue_slot(struct spmc_queue *q, uint64_t i, uint64_t v)
{
    _Atomic uint64_t *word = &q->freed[i & q->mask];
    const uint64_t prev = i - q->capacity; /* the message the slot holds */
    if (v & CLAIM_MARK) { /* claimed by the reader this mark names */
        unsigned e = (unsigned)(v >> 32 & 0x7fffffffu);
        if (e < q->max_readers) {
            struct spmc_shm_reader *r = &q->readers[e];
            uint64_t owner = atomic_load_explicit(&r->owner, memory_order_relaxed);
            if (atomic_load_explicit(&r->generation, memory_order_relaxed) == (uint32_t)v &&
                atomic_load_explicit(&r->state, memory_order_acquire) != SPMC_ENTRY_FREE &&
                (owner == 0 || is_alive(owner)))
                return -EAGAIN; /* its reader is alive: wait for it */
            reap_readers(q);
        }
    } else if (v == prev) { /* unclaimed, or claimed and not marked yet */
        uint64_t next = atomic_load_explicit(&q->hdr->read_index, memory_order_relaxed);
        if ((int64_t)(next - prev) <= 0)
            return -EAGAIN; /* nobody has taken it: the readers are just slow */
        /* Taken, never marked: its reader died between the claim and the
         * mark (two instructions), or is about to mark it. Give it a grace. */
        uint64_t now = mono_ns();
        if (q->stuck_index != i || q->stuck_since_ns == 0) {
            q->stuck_index = i;
            q->stuck_since_ns = now;
            return -EAGAIN;
        }
        if (now - q->stuck_since_ns < SPMC_ORPHAN_GRACE_NS)
            return -EAGAIN;
    } else {
        return -EAGAIN; /* a value no reader writes: wait, bounded by the caller */
    }
    /* Pairs with the acquire load of freed in spmc_queue_try_push(). */
    if (!atomic_compare_exchange_strong_explicit(word, &v, i, memory_order_acq_rel,
                                                 memory_order_acquire))
        return v == i ? 0 : -EAGAIN; /* released meanwhile after all */
    q->dropped++;
    return 0;
}

int spmc_queue_try_push(struct spmc_queue *q, const void *msg)
{
    if (q == NULL || q->mode != SPMC_WRITER)
        return -EINVAL;
    uint64_t i = q->index;
    _Atomic uint64_t *seq = slot_seq(q, i);
    if (q->fanout == SPMC_BROADCAST) {
        if ((int64_t)(i - q->limit) >= 0) { /* the cached limit says full */
            refresh_limit(q);
            if ((int64_t)(i - q->limit) >= 0) {
                if (!time_to_check(q) || reap_readers(q) == 0)
                    return -EAGAIN;
                refresh_limit(q); /* a dead reader held us back: look again */
                if ((int64_t)(i - q->limit) >= 0)
                    return -EAGAIN;
            }
        }
    } else {
        /* Pairs with the release store in release_slots(): the reader that
         * took this slot's last message has copied it out. */
        uint64_t v = atomic_load_explicit(&q->freed[i & q->mask], memory_order_acquire);
        if (v != i && (!time_to_check(q) || rescue_slot(q, i, v) != 0))
            return -EAGAIN;
    }
    memcpy(slot_data(q, i), msg, q->elem_size);
    /* Pairs with the acquire loads of seq in pop_broadcast() and pop_share(). */
    atomic_store_explicit(seq, i + 1, memory_order_release);
    q->index = i + 1;
    /* Position only (for late readers and end of stream); ordered by closed. */
    atomic_store_explicit(&q->hdr->head, i + 1, memory_order_relaxed);
    return 0;
}

int spmc_queue_push(struct spmc_queue *q, const void *msg, int64_t timeout_ns)
{
    int rc = spmc_queue_try_push(q, msg);
    if (rc != -EAGAIN)
        return rc;
    struct waiter w;
    wait_start(&w, timeout_ns);
    while ((rc = spmc_queue_try_push(q, msg)) == -EAGAIN) {
        rc = wait_more(&w);
        if (rc != 0)
            return rc;
    }
    return rc;
}

/* ===================================================================== */
/* Popping                                                                 */
/* ===================================================================== */

/* Broadcast: tell the writer how far this reader has read. */
static inline void publish_cursor(struct spmc_queue *q)
{
    /* Pairs with the seq_cst load of cursor in min_cursor(). */
    atomic_store_explicit(&q->entry->cursor, q->index, memory_order_release);
    q->published = q->index;
}

/* No message at our index: -EPIPE if the writer has closed and everything
 * it pushed is taken, else -EAGAIN. */
static int nothing_yet(struct spmc_queue *q, uint64_t index)
{
    /* Pairs with the release store of closed in spmc_queue_destroy(). */
    if (!atomic_load_explicit(&q->hdr->closed, memory_order_acquire)) {
        /* A writer that died cannot close: everything it published before
         * it died is visible by now, and we have none of it left. */
        if (time_to_check(q) &&
            !is_alive(atomic_load_explicit(&q->hdr->writer, memory_order_relaxed)))
            return -EOWNERDEAD;
        return -EAGAIN;
    }
    /* The writer's last head store is ordered before closed. */
    uint64_t head = atomic_load_explicit(&q->hdr->head, memory_order_relaxed);
    return (int64_t)(index - head) >= 0 ? -EPIPE : -EAGAIN;
}

static int pop_broadcast(struct spmc_queue *q, void *out)
{
    uint64_t i = q->index;
    /* Pairs with the release store of seq in spmc_queue_try_push(). */
    uint64_t seq = atomic_load_explicit(slot_seq(q, i), memory_order_acquire);
    if (seq != i + 1) {
        if ((int64_t)(seq - (i + 1)) > 0)
            return -EPROTO; /* overrun: impossible while our cursor holds */
        if (q->published != i) /* about to wait: let the writer see us */
            publish_cursor(q);
        return nothing_yet(q, i);
    }
    memcpy(out, slot_data(q, i), q->elem_size);
    q->index = i + 1;
    if ((q->index & q->publish_mask) == 0)
        publish_cursor(q);
    return 0;
}

/* Share: hand the slots we have copied out back to the writer, through
 * the release words (eight to a cache line), a batch at a time: the writer
 * then fetches one line per eight messages instead of one per message. */
static void release_slots(struct spmc_queue *q)
{
    for (unsigned n = 0; n < q->pending; n++) {
        uint64_t i = q->release[n];
        /* Pairs with the acquire load of freed in spmc_queue_try_push(): our
         * copy is done before the writer reuses the slot. */
        atomic_store_explicit(&q->freed[i & q->mask], i + q->capacity, memory_order_release);
    }
    q->pending = 0;
}

static int pop_share(struct spmc_queue *q, void *out)
{
    _Atomic uint64_t *read_index = &q->hdr->read_index;
    uint64_t i = q->index; /* cached guess: where our last claim ended */
    for (int tries = 0; tries < MAX_RETRIES; tries++) {
        _Atomic uint64_t *seq = slot_seq(q, i);
        /* Pairs with the release store of seq in spmc_queue_try_push(). */
        uint64_t s = atomic_load_explicit(seq, memory_order_acquire);
        int64_t ahead = (int64_t)(s - (i + 1));
        if (ahead == 0) {
            /* Message i is there: claim it. Relaxed: the data's visibility
             * comes from seq; the CAS only decides who takes it. */
            if (atomic_compare_exchange_weak_explicit(read_index, &i, i + 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed)) {
                /* The mark lets the writer find us should we die holding
                 * the slot; the release below replaces it. */
                atomic_store_explicit(&q->freed[i & q->mask], q->tag, memory_order_relaxed);
                memcpy(out, slot_data(q, i), q->elem_size);
                q->release[q->pending++] = i;
                if (q->pending == SPMC_RELEASE_BATCH)
                    release_slots(q);
                q->index = i + 1;
                return 0;
            }
            continue; /* i now holds the current read_index */
        }
        /* Not there at our guess: compare with the shared read index. */
        uint64_t now = atomic_load_explicit(read_index, memory_order_relaxed);
        if (now != i) {
            i = now;
            continue;
        }
        if (ahead > 0)
            return -EPROTO; /* slot ahead of the unclaimed index: corrupted */
        q->index = i;
        release_slots(q); /* about to wait: the writer may need them */
        return nothing_yet(q, i);
    }
    return -EAGAIN; /* heavy contention (or a scribbling peer): retry later */
}

/* The writer's process is gone, so all its stores are visible now: one
 * more look, for a message it published just before it died. Out of line:
 * the hot path above stays one inlined call. */
#if defined(__GNUC__)
__attribute__((noinline, cold))
#endif
static int last_look(struct spmc_queue *q, void *out)
{
    int again = q->fanout == SPMC_BROADCAST ? pop_broadcast(q, out) : pop_share(q, out);
    return again == 0 || again == -EPIPE || again == -EPROTO ? again : -EOWNERDEAD;
}

int spmc_queue_try_pop(struct spmc_queue *q, void *out)
{
    if (q == NULL || q->mode != SPMC_READER)
        return -EINVAL;
    int rc = q->fanout == SPMC_BROADCAST ? pop_broadcast(q, out) : pop_share(q, out);
    return rc == -EOWNERDEAD ? last_look(q, out) : rc;
}

int spmc_queue_pop(struct spmc_queue *q, void *out, int64_t timeout_ns)
{
    int rc = spmc_queue_try_pop(q, out);
    if (rc != -EAGAIN)
        return rc;
    struct waiter w;
    wait_start(&w, timeout_ns);
    while ((rc = spmc_queue_try_pop(q, out)) == -EAGAIN) {
        rc = wait_more(&w);
        if (rc != 0)
            return rc;
    }
    return rc;
}

/* ===================================================================== */
/* Tearing down                                                            */
/* ===================================================================== */

int spmc_queue_destroy(struct spmc_queue *q)
{
    if (q == NULL || q->hdr == NULL)
        return -EINVAL;
    if (q->mode == SPMC_WRITER) {
        /* Pairs with the acquire loads of closed in nothing_yet() and
         * spmc_queue_attach(). */
        atomic_store_explicit(&q->hdr->closed, 1, memory_order_release);
        shm_unlink(q->name);
    } else {
        release_slots(q);
        atomic_store_explicit(&q->entry->owner, 0, memory_order_relaxed);
        /* Pairs with the acquire load of state in count_readers() and the
         * seq_cst load in min_cursor(): the writer stops waiting for us. */
        atomic_store_explicit(&q->entry->state, SPMC_ENTRY_FREE, memory_order_seq_cst);
    }
    unmap_segment(q->hdr, q->map_size);
    memset(q, 0, sizeof *q);
    return 0;
}
