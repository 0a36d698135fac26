/* spmc_queue.c - day 5: one writer, many readers, broadcast or work-sharing. */
#define _POSIX_C_SOURCE 200809L
#include "spmc_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

/* Shared atomics must be lock-free: a lock-based one keeps its lock in
 * each process's own memory, so two processes would not exclude each other. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2 && ATOMIC_LONG_LOCK_FREE == 2 &&
               ATOMIC_LLONG_LOCK_FREE == 2, "32- and 64-bit atomics are lock-free");

/* The wire format: every field at the same offset in every process that
 * maps the segment. Only offsetof pins an offset; sizeof pins the total
 * alone (i386, for one, aligns uint64_t to 4 bytes inside a struct). */
_Static_assert(offsetof(struct spmc_shm_header, ready) == 48, "wire format");
_Static_assert(offsetof(struct spmc_shm_header, head) == SPMC_CACHELINE, "head on line 1");
_Static_assert(offsetof(struct spmc_shm_header, read_index) == 2 * SPMC_CACHELINE,
               "read_index on line 2");
_Static_assert(sizeof(struct spmc_shm_header) == 3 * SPMC_CACHELINE, "table on line 3");
_Static_assert(sizeof(struct spmc_shm_reader) == SPMC_CACHELINE, "one line per reader");

/* A slot is the payload alone, rounded up to whole cache lines (64 bytes
 * for 64-byte messages), so that no two slots share a line: a reader
 * copying message i never touches the line the writer is filling with
 * message i + 1. SPMC_PAD_SLOTS=0 packs the slots instead (a stride of the
 * payload rounded up to 8 bytes; the same for 64-byte messages). Work-sharing
 * keeps a hand-back word for each slot in an array after the slots, eight
 * to a line; a reader stores into one of them per claim. */
#ifndef SPMC_PAD_SLOTS
#define SPMC_PAD_SLOTS 1
#endif

#if defined(__GNUC__)
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define COLD __attribute__((noinline, cold))
#define HOT_INLINE inline __attribute__((always_inline))
#define NOINLINE __attribute__((noinline))
#else
#define likely(x) (x)
#define unlikely(x) (x)
#define COLD
#define HOT_INLINE inline
#define NOINLINE
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
    /* "/." and "/.." would name /dev/shm itself and its parent. */
    if (strcmp(name, "/.") == 0 || strcmp(name, "/..") == 0)
        return -EINVAL;
    return 0;
}

static int is_power_of_two(uint64_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

/* Work-sharing asks for two slots at least: with one, every push would wait
 * until the reader of the message before has copied it out, and the queue
 * would be no queue. */
static int capacity_fits_fanout(uint64_t capacity, uint64_t fanout)
{
    return fanout != SPMC_SHARE || capacity >= 2;
}

/* Stride of a slot holding elem_size payload bytes (whole cache lines
 * unless SPMC_PAD_SLOTS is 0); 0 if it would not fit in 32 bits. */
static uint64_t slot_size_for(uint64_t elem_size)
{
    if (elem_size == 0 || elem_size > UINT32_MAX / 2)
        return 0;
    uint64_t packed = (elem_size + 7) / 8 * 8;
    if (SPMC_PAD_SLOTS)
        return (packed + SPMC_CACHELINE - 1) / SPMC_CACHELINE * SPMC_CACHELINE;
    return packed;
}

/* Bytes of the slots, rounded up so that the hand-back words after them
 * start on a cache line. */
static size_t slots_bytes(uint64_t slot_size, uint64_t capacity)
{
    return (size_t)(slot_size * capacity + SPMC_CACHELINE - 1) / SPMC_CACHELINE *
           SPMC_CACHELINE;
}

/* Bytes of a whole segment (header, reader table, slots, one hand-back word
 * per slot); 0 when the sizes make no sense or overflow. */
static size_t segment_size(uint64_t slot_size, uint64_t capacity, uint64_t max_readers)
{
    const size_t room = SIZE_MAX / 4;
    size_t table = sizeof(struct spmc_shm_header) +
                   (size_t)max_readers * sizeof(struct spmc_shm_reader);
    if (slot_size == 0 || !is_power_of_two(capacity) || max_readers == 0 ||
        max_readers > SPMC_MAX_READERS ||
        capacity > (room - table) / (slot_size + sizeof(uint64_t) + SPMC_CACHELINE))
        return 0;
    return table + slots_bytes(slot_size, capacity) + (size_t)capacity * sizeof(uint64_t);
}

/* Point the handle into a mapped segment laid out as above. */
static void locate(struct spmc_queue *q, struct spmc_shm_header *h)
{
    q->hdr = h;
    q->readers = (struct spmc_shm_reader *)(h + 1);
    q->slots = (unsigned char *)(q->readers + q->max_readers);
    q->words = (_Atomic uint64_t *)(q->slots + slots_bytes(q->slot_size, q->capacity));
}

/* Bound on lock-free retry loops, so that no value a hostile process writes
 * into the segment can keep a call spinning forever. */
enum { MAX_RETRIES = 100000 };

/* Share: the hand-back word of the slot for index i. A reader that has
 * copied out the messages [start, end) of its claim stores end + capacity
 * into the word of start's slot, and leaves the words of the claim's other
 * slots alone: "the slots of messages start + capacity up to end +
 * capacity are free". The writer follows these links from claim to claim
 * (refresh_free()). A word the writer reaches before its link is stored
 * holds a value from an earlier lap, at most the writer's own index (the
 * creator starts slot i's word at i), which is no link. */
static inline _Atomic uint64_t *slot_word(const struct spmc_queue *q, uint64_t i)
{
    return &q->words[i & q->mask];
}

static inline unsigned char *slot_data(const struct spmc_queue *q, uint64_t i)
{
    return q->slots + (i & q->mask) * q->slot_size;
}

/* How many slots ahead each side asks for the line it will need next. A
 * reader copies a message out in a few nanoseconds, but the slot's line was
 * last written on the writer's core and takes a whole cache-line transfer
 * to arrive (the c2c probe's figure, 30 to 500 ns on our machines). Asked
 * for eight messages early, eight transfers are under way at once instead
 * of one after the other; the writer does the same with the lines it is
 * about to overwrite, which the reader holds. Only the first line of a slot
 * is asked for: the processor's own prefetcher follows a longer message. */
enum { PREFETCH_AHEAD = 8 };

/* Share: refresh_free() follows the readers' links until this many slots
 * ahead of the writer are known to be free (eight claims of
 * SPMC_CLAIM_MAX), or a link is missing. */
enum { FREE_SCAN_SLOTS = 8 * SPMC_CLAIM_MAX };

/* Bring the line at p into this core's cache, to be read. A hint only: it
 * never faults (even on an address outside the mapping) and changes no
 * value, so it is not a memory access for the C memory model. */
static inline void prefetch_read(const void *p)
{
    __builtin_prefetch(p, 0, 3);
}

#if defined(__x86_64__) || defined(__i386__)
/* Does this x86 processor have PREFETCHW (CPUID 0x80000001, ECX bit 8)?
 * Set once, by find_prefetchw() under pthread_once(), by the first
 * spmc_queue_create_opts(), before any writer handle exists. */
static int have_prefetchw;
static pthread_once_t prefetchw_once = PTHREAD_ONCE_INIT;

static void find_prefetchw(void)
{
    unsigned a, b, c, d;
    have_prefetchw = __get_cpuid(0x80000001, &a, &b, &c, &d) && (c & bit_PRFCHW);
}

static void prefetch_setup(void)
{
    (void)pthread_once(&prefetchw_once, find_prefetchw);
}
#else
static void prefetch_setup(void)
{
}
#endif

/* Bring the line at p into this core's cache in the exclusive state, ready
 * to be written: the writer's next store to it then finds it there and need
 * not wait for the readers' copies to be invalidated. On x86 that takes
 * PREFETCHW, and a processor without it is asked nothing (the compiler's
 * write hint is a read prefetch there: the store would still wait). */
static inline void prefetch_write(void *p)
{
#if defined(__x86_64__) || defined(__i386__)
    if (have_prefetchw)
        __asm__ __volatile__("prefetchw %0" : : "m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1, 3);
#endif
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

/* Plain re-checks for the first microsecond or so: a `pause` between two
 * looks delays noticing a message by up to its own length (about 40 ns on
 * recent x86), which added a fifth to the round trip of a ping-pong (see
 * day5/README.md). */
enum { PLAIN_ROUNDS = 256, SPIN_ROUNDS = 512, YIELD_ROUNDS = 512 + 1024 };

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

/* Pacing a reader that keeps up with a streaming writer. Each look at head
 * takes head's line from the writer's core, and the writer's next store of
 * head must fetch it back before the stores queued behind it can leave
 * the core. A reader that looks after every message or two does that once
 * per message; where a line takes 500 ns to cross, it halves the writer's
 * pace (see day5/README.md). So spmc_queue_pop() waits pace_ns before it
 * looks, and each look sets pace_ns by what it found:
 *   - 0 or 1 new messages: idle, or messages one at a time: no pacing, so
 *     a message pushed onto an idle queue is seen at once;
 *   - 2 up to capacity/8: a streaming writer: wait twice as long next time
 *     (from PACE_FIRST_NS, up to PACE_MAX_NS), and find a bigger batch;
 *   - more than capacity/4: the ring fills while we wait: halve it. */
enum { PACE_FIRST_NS = 64, PACE_MAX_NS = 4096 };

static inline void pace_after_look(struct spmc_queue *q, uint64_t found)
{
    if (found < 2)
        q->pace_ns = 0;
    else if (found <= q->capacity / 8)
        q->pace_ns = q->pace_ns == 0            ? PACE_FIRST_NS
                     : q->pace_ns >= PACE_MAX_NS / 2 ? PACE_MAX_NS
                                                     : q->pace_ns * 2;
    else if (found > q->capacity / 4)
        q->pace_ns /= 2;
}

/* Spin for q->pace_ns: a few microseconds at most, far too short to sleep. */
static void pace(const struct spmc_queue *q)
{
    const uint64_t until = mono_ns() + q->pace_ns;
    do {
        for (int k = 0; k < 8; k++)
            cpu_relax();
    } while (mono_ns() < until);
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

int spmc_queue_create(struct spmc_queue *q, const char *name, size_t elem_size,
                      size_t capacity)
{
    const struct spmc_options defaults = {SPMC_BROADCAST, SPMC_DEFAULT_READERS, 0};
    return spmc_queue_create_opts(q, name, elem_size, capacity, &defaults);
}

int spmc_queue_create_opts(struct spmc_queue *q, const char *name, size_t elem_size,
                           size_t capacity, const struct spmc_options *opts)
{
    if (q == NULL)
        return -EINVAL;
    memset(q, 0, sizeof *q);
    const struct spmc_options defaults = {SPMC_BROADCAST, SPMC_DEFAULT_READERS, 0};
    if (opts == NULL)
        opts = &defaults;
    int rc = check_name(name);
    if (rc != 0)
        return rc;
    if (opts->fanout != SPMC_BROADCAST && opts->fanout != SPMC_SHARE)
        return -EINVAL;
    uint64_t slot_size = slot_size_for(elem_size);
    size_t size = segment_size(slot_size, capacity, opts->max_readers);
    unsigned claim_max = opts->claim_max == 0 ? SPMC_CLAIM_DEFAULT : opts->claim_max;
    if (claim_max > SPMC_CLAIM_MAX)
        return -EINVAL;
    if (size == 0 || !capacity_fits_fanout(capacity, opts->fanout))
        return -EINVAL;

    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) != 0) {
        rc = errno == EFBIG ? -ENOMEM : -errno;
        goto fail_unlink;
    }
    /* Reserve the memory now: a full /dev/shm fails here with -ENOSPC,
     * not with SIGBUS at the first write to a page tmpfs cannot give. */
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
    h->magic = SPMC_MAGIC;
    h->version = SPMC_VERSION;
    h->header_size = sizeof *h;
    h->cacheline = SPMC_CACHELINE;
    h->elem_size = elem_size;
    h->capacity = capacity;
    h->slot_size = (uint32_t)slot_size;
    h->fanout = (uint32_t)opts->fanout;
    h->max_readers = opts->max_readers;
    h->claim_max = claim_max;
    atomic_store_explicit(&h->closed, 0, memory_order_relaxed);     /* published by ready */
    atomic_store_explicit(&h->head, 0, memory_order_relaxed);       /* published by ready */
    atomic_store_explicit(&h->gate, 0, memory_order_relaxed);       /* published by ready */
    atomic_store_explicit(&h->read_index, 0, memory_order_relaxed); /* published by ready */
    atomic_store_explicit(&h->leaving, 0, memory_order_relaxed);    /* published by ready */

    q->map_size = size;
    q->elem_size = elem_size;
    q->slot_size = (size_t)slot_size;
    q->capacity = capacity;
    q->mask = capacity - 1;
    q->max_readers = opts->max_readers;
    q->claim_max = claim_max;
    q->fanout = opts->fanout;
    prefetch_setup();
    q->mode = SPMC_WRITER;
    q->index = 0;
    q->limit = capacity;
    locate(q, h);
    memcpy(q->name, name, strlen(name) + 1);
    for (unsigned i = 0; i < q->max_readers; i++) {
        /* published by ready */
        atomic_store_explicit(&q->readers[i].cursor, 0, memory_order_relaxed);
        atomic_store_explicit(&q->readers[i].claim_end, 0, memory_order_relaxed);
        atomic_store_explicit(&q->readers[i].state, SPMC_ENTRY_FREE, memory_order_relaxed);
    }
    for (uint64_t i = 0; i < capacity; i++)
        /* Slot i is free for message i. */
        atomic_store_explicit(slot_word(q, i), i, memory_order_relaxed); /* published by ready */
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
    uint32_t slot_size, fanout, max_readers, claim_max;
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
        c->slot_size != slot_size_for(c->elem_size) ||
        !capacity_fits_fanout(c->capacity, c->fanout) || c->claim_max == 0 ||
        c->claim_max > SPMC_CLAIM_MAX)
        return -EPROTO;
    size_t size = segment_size(c->slot_size, c->capacity, c->max_readers);
    /* Exactly the size its creator made: fields lowered after the fact
     * would describe a smaller layout, inside the file, that is not the
     * one the writer uses. */
    if (size == 0 || (uint64_t)file_size != size)
        return -EPROTO;
    return 0;
}

/* Broadcast join: choose a starting cursor the writer is guaranteed to
 * respect. The writer pushes freely while its index stays below its
 * limit, at most gate + capacity; it stores gate, which never moves back,
 * *before* it re-reads the table (see refresh_limit()). We store our
 * cursor and our state *before* we read gate. With both pairs sequentially
 * consistent, either the writer's re-read sees us, or we see its new gate;
 * if that gate is beyond our cursor we may already be overrun, so we start
 * again from the writer's newer position. */
static int join_broadcast(struct spmc_queue *q)
{
    struct spmc_shm_header *h = q->hdr;
    for (int tries = 0; tries < MAX_RETRIES; tries++) {
        /* Position only: pop_broadcast() loads head again, with acquire,
         * before it reads a slot. */
        uint64_t start = atomic_load_explicit(&h->head, memory_order_relaxed);
        /* Pairs with the seq_cst load of cursor in min_cursor(). */
        atomic_store_explicit(&q->entry->cursor, start, memory_order_seq_cst);
        /* Starting: the writer respects our cursor from now on, but
         * wait_readers() does not count us until we know where we start.
         * Pairs with the seq_cst load of state in min_cursor(). */
        atomic_store_explicit(&q->entry->state, SPMC_ENTRY_STARTING, memory_order_seq_cst);
        /* Pairs with the seq_cst store of gate in refresh_limit(). */
        uint64_t gate = atomic_load_explicit(&h->gate, memory_order_seq_cst);
        if ((int64_t)(gate - start) <= 0) {
            q->index = q->published = q->seen_head = start;
            /* Now we count. Pairs with the acquire load of state in
             * count_readers(); min_cursor() sees no difference. */
            atomic_store_explicit(&q->entry->state, SPMC_ENTRY_ACTIVE, memory_order_seq_cst);
            return 0;
        }
    }
    return -EPROTO; /* gate stays beyond head: not a writer we understand */
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
                            h->slot_size, h->fanout,    h->max_readers,
                            h->claim_max};
    rc = check_header(&c, elem_size, capacity, st.st_size);
    if (rc != 0)
        goto fail;

    /* From here on only the checked copies are used. */
    q->elem_size = (size_t)c.elem_size;
    q->slot_size = c.slot_size;
    q->capacity = c.capacity;
    q->mask = c.capacity - 1;
    q->max_readers = c.max_readers;
    q->claim_max = c.claim_max;
    q->fanout = (enum spmc_fanout)c.fanout;
    q->map_size = segment_size(c.slot_size, c.capacity, c.max_readers);
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
    for (unsigned i = 0; i < q->max_readers && q->entry == NULL; i++) {
        uint32_t free_state = SPMC_ENTRY_FREE;
        /* Pairs with the store of SPMC_ENTRY_FREE in spmc_queue_destroy():
         * the entry's previous reader is done with it. */
        if (atomic_compare_exchange_strong_explicit(&q->readers[i].state, &free_state,
                                                    SPMC_ENTRY_JOINING, memory_order_acq_rel,
                                                    memory_order_relaxed))
            q->entry = &q->readers[i];
    }
    if (q->entry == NULL) {
        rc = -EUSERS;
        goto fail;
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
        /* index == claim_end == 0: the first pop claims (claim_batch()). */
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
        /* Pairs with the seq_cst stores of state in join_broadcast(). */
        uint32_t state = atomic_load_explicit(&q->readers[i].state, memory_order_seq_cst);
        if (state != SPMC_ENTRY_ACTIVE && state != SPMC_ENTRY_STARTING)
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
 * low point beyond the gate is first published as the new gate and the
 * table read once more, which catches a reader that joined meanwhile (see
 * join_broadcast()). The gate only moves forward. A low point at or below
 * it (a slow reader, or a joining reader's cursor) needs no store: a
 * joining reader that reads the gate starts at or beyond it anyway. And a
 * gate lowered to a joining reader's cursor would tell that reader "the
 * writer never passed you" just after the writer had passed it, unseen. */
static void refresh_limit(struct spmc_queue *q)
{
    uint64_t low = min_cursor(q, q->index);
    if ((int64_t)(low - q->gate) > 0) {
        /* Pairs with the seq_cst load of gate in join_broadcast(). */
        atomic_store_explicit(&q->hdr->gate, low, memory_order_seq_cst);
        q->gate = low;
        uint64_t again = min_cursor(q, q->index);
        if ((int64_t)(again - low) < 0)
            low = again;
    }
    q->limit = low + q->capacity;
}

/* Share: the cached limit says full. Follow the readers' links from the
 * writer's index on: each word we reach says where the claim that began in
 * that slot a lap ago ended, so that its slots are free, and we read the
 * word there next. Stop at the first slot whose claim is not handed back
 * yet, or FREE_SCAN_SLOTS ahead. One load per claim of up to
 * SPMC_CLAIM_MAX messages, where a word per slot took a line of words per
 * eight messages (day5/README.md, "One hand-back word per claim"). A link
 * never takes us more than a lap past our index. Returns how many slots
 * are free. */
static uint64_t refresh_free(struct spmc_queue *q)
{
    uint64_t j = q->index;
    while (j - q->index < FREE_SCAN_SLOTS) {
        /* Pairs with the release store of the word in hand_back(): the
         * reader of the claim that began with message j - capacity has
         * copied out all of it, up to the end it stored. */
        const uint64_t end = atomic_load_explicit(slot_word(q, j), memory_order_acquire);
        if (end - j - 1 >= q->capacity || end - q->index > q->capacity)
            break; /* no link of this lap: not handed back yet (or a scribble) */
        j = end;
    }
    /* The slots up to j are ours to overwrite: ask for their lines now (the
     * first we write at once; the transfers of the next ones overlap it). */
    for (uint64_t k = q->index + 1; (int64_t)(j - k) > 0 && k - q->index <= PREFETCH_AHEAD; k++)
        prefetch_write(slot_data(q, k));
    q->limit = j;
    return j - q->index;
}

/* One push once the handle is checked: spmc_queue_try_push(), and inline in
 * the wait loop of spmc_queue_push() too, as pop_once() is for a reader. A
 * push through spmc_queue_push() is then one call with the check made once,
 * not a call of spmc_queue_try_push() from it (see day5/README.md, "The hot
 * path marked"). */
static HOT_INLINE int push_once(struct spmc_queue *q, const void *msg)
{
    uint64_t i = q->index;
    if (unlikely((int64_t)(i - q->limit) >= 0)) { /* the cached limit says full */
        if (q->fanout == SPMC_BROADCAST) {
            refresh_limit(q);
            if ((int64_t)(i - q->limit) >= 0)
                return -EAGAIN;
        } else if (refresh_free(q) == 0) { /* share: look at the words */
            return -EAGAIN;
        }
    }
    /* Broadcast: a slot below the limit is free (its readers have passed
     * it); work-sharing's limit ends at the words refresh_free() read, and
     * it asked for those slots itself. */
    if ((int64_t)(q->limit - (i + PREFETCH_AHEAD)) > 0)
        prefetch_write(slot_data(q, i + PREFETCH_AHEAD));
    memcpy(slot_data(q, i), msg, q->elem_size);
    q->index = i + 1;
    /* The publication, in both modes. Pairs with the acquire loads of head
     * in pop_broadcast() and claim_batch(): every slot below head is
     * written. Every push stores it, so a message pushed onto an idle queue
     * is visible at once. */
    atomic_store_explicit(&q->hdr->head, i + 1, memory_order_release);
    return 0;
}

int spmc_queue_try_push(struct spmc_queue *q, const void *msg)
{
    if (unlikely(q == NULL || q->mode != SPMC_WRITER || msg == NULL))
        return -EINVAL;
    return push_once(q, msg);
}

int spmc_queue_push(struct spmc_queue *q, const void *msg, int64_t timeout_ns)
{
    if (unlikely(q == NULL || q->mode != SPMC_WRITER || msg == NULL))
        return -EINVAL;
    int rc = push_once(q, msg);
    if (rc != -EAGAIN)
        return rc;
    struct waiter w;
    wait_start(&w, timeout_ns);
    while ((rc = push_once(q, msg)) == -EAGAIN) {
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
 * it pushed is taken, else -EAGAIN. A waiting reader calls this at every
 * look, so it holds only what both modes need (pop_share() adds its own
 * check after it): with work-sharing's check in here too, the compiler
 * stopped inlining it, and broadcast's round trip measured a fifth longer
 * (see day5/README.md, errata). */
static HOT_INLINE int nothing_yet(struct spmc_queue *q, uint64_t index)
{
    /* Pairs with the seq_cst store of closed in spmc_queue_destroy(). */
    if (likely(!atomic_load_explicit(&q->hdr->closed, memory_order_seq_cst)))
        return -EAGAIN;
    /* The writer's last head store is ordered before closed. */
    uint64_t head = atomic_load_explicit(&q->hdr->head, memory_order_relaxed);
    return (int64_t)(index - head) >= 0 ? -EPIPE : -EAGAIN;
}

static HOT_INLINE int pop_broadcast(struct spmc_queue *q, void *out)
{
    uint64_t i = q->index;
    if (unlikely(i == q->seen_head)) { /* the head we know says empty: look again */
        /* Pairs with the release store of head in push_once():
         * every slot below head is written. */
        uint64_t head = atomic_load_explicit(&q->hdr->head, memory_order_acquire);
        if (unlikely((uint64_t)(head - i) > q->capacity))
            return -EPROTO; /* overrun (impossible while our cursor holds) or garbage */
        q->seen_head = head;
        pace_after_look(q, head - i);
        if (head == i) {
            /* About to wait for message i: ask for its slot's line now,
             * and at every look while we wait. The writer takes the line
             * back to write it, and our next look asks again; when head
             * shows the message, its line is on its way or here, so the
             * copy below does not wait a transfer of its own after head's.
             * It cut the round trip by about a tenth (day5/README.md). */
            prefetch_read(slot_data(q, i));
            if (q->published != i) /* about to wait: let the writer see us */
                publish_cursor(q);
            return nothing_yet(q, i);
        }
    }
    /* A message below the head we loaded is written: its line can come. */
    if ((int64_t)(q->seen_head - (i + PREFETCH_AHEAD)) > 0)
        prefetch_read(slot_data(q, i + PREFETCH_AHEAD));
    memcpy(out, slot_data(q, i), q->elem_size);
    q->index = i + 1;
    if ((q->index & q->publish_mask) == 0)
        publish_cursor(q);
    return 0;
}

/* Share: a reader that left with messages of its claim not yet delivered
 * (see spmc_queue_destroy()) parked them in its entry: cursor is the next
 * one, claim_end the end. Take one with a compare-and-swap on that cursor;
 * whoever takes the last frees the entry. 1 with *index set if we got one.
 *
 * The entry may be freed, taken by a new reader and left again while we
 * look (we may be slow): the leaver stores cursor first (an empty range,
 * since its messages all come after the last leaver's), then the state,
 * then claim_end, which opens the range. So a range we see open is the
 * current leaver's, and its claim_end tells us its messages are there. */
COLD static int take_leftover(struct spmc_queue *q, uint64_t *index)
{
    /* Pairs with the seq_cst increment of leaving in spmc_queue_destroy(). */
    if (atomic_load_explicit(&q->hdr->leaving, memory_order_seq_cst) == 0)
        return 0;
    for (unsigned e = 0; e < q->max_readers; e++) {
        struct spmc_shm_reader *r = &q->readers[e];
        /* Pairs with the release store of SPMC_ENTRY_LEAVING in
         * spmc_queue_destroy(). */
        if (atomic_load_explicit(&r->state, memory_order_acquire) != SPMC_ENTRY_LEAVING)
            continue;
        /* Pairs with the release store of claim_end in spmc_queue_destroy():
         * the leaver's acquire of head made its messages visible to it,
         * so to us. */
        const uint64_t end = atomic_load_explicit(&r->claim_end, memory_order_acquire);
        uint64_t j = atomic_load_explicit(&r->cursor, memory_order_relaxed);
        for (int tries = 0; tries < MAX_RETRIES && (int64_t)(end - j) > 0 &&
                            end - j <= q->claim_max;
             tries++) {
            /* Relaxed: the claim_end load above ordered the data. */
            if (!atomic_compare_exchange_weak_explicit(&r->cursor, &j, j + 1,
                                                       memory_order_relaxed,
                                                       memory_order_relaxed))
                continue; /* j now holds the cursor another taker left */
            if (j + 1 == end) { /* the last one: the entry is free again */
                uint32_t leaving = SPMC_ENTRY_LEAVING;
                /* Pairs with the acquire compare-and-swap of FREE in
                 * spmc_queue_attach(); acquire: after the other takers'
                 * moves of cursor. */
                if (atomic_compare_exchange_strong_explicit(&r->state, &leaving,
                                                            SPMC_ENTRY_FREE,
                                                            memory_order_acq_rel,
                                                            memory_order_relaxed))
                    atomic_fetch_sub_explicit(&q->hdr->leaving, 1, memory_order_seq_cst);
            }
            *index = j;
            return 1;
        }
    }
    return 0;
}

/* Share: claim the next messages, up to claim_max of those the writer
 * has published, with one compare-and-swap on read_index. 0 with
 * [q->index, q->claim_end) ours, or -EAGAIN: nothing to claim (then
 * q->index is read_index), or no agreement after many tries (heavy
 * contention, or a peer scribbling over read_index); -EPROTO: read_index
 * more than a lap from head, and not moving (a peer wrote it). */
static int claim_batch(struct spmc_queue *q)
{
    _Atomic uint64_t *read_index = &q->hdr->read_index;
    uint64_t r = atomic_load_explicit(read_index, memory_order_relaxed);
    for (int tries = 0; tries < MAX_RETRIES; tries++) {
        uint64_t avail = q->seen_head - r;
        if (avail == 0 || avail > q->capacity) { /* look at head again */
            /* Pairs with the release store of head in push_once():
             * every slot below head is written. */
            q->seen_head = atomic_load_explicit(&q->hdr->head, memory_order_acquire);
            avail = q->seen_head - r;
            if (avail <= q->capacity) /* not a count when our r is stale */
                pace_after_look(q, avail);
            if (avail == 0) {
                q->index = q->claim_start = q->claim_end = r;
                return -EAGAIN;
            }
            if (avail > q->capacity) {
                /* More than a lap apart: our r is stale (we were slow and
                 * the others have claimed on), or a peer scribbled. Read
                 * read_index again: if it has not moved, the latter. (Had
                 * the readers claimed past r, the claims would be ordered
                 * before the head we just loaded: they came before the
                 * hand-backs that let the writer go a lap further.) */
                const uint64_t again = atomic_load_explicit(read_index, memory_order_relaxed);
                if (again == r)
                    return -EPROTO;
                r = again;
                continue;
            }
        }
        uint64_t n = avail < q->claim_max ? avail : q->claim_max;
        /* Relaxed: head's acquire made the data visible; the
         * compare-and-swap only decides who takes which messages. */
        if (atomic_compare_exchange_weak_explicit(read_index, &r, r + n, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            q->index = q->claim_start = r;
            q->claim_end = r + n;
            return 0;
        }
        /* r now holds the read index another reader moved on */
    }
    return -EAGAIN; /* heavy contention (or a scribbling peer): retry later */
}

/* Share: hand the slots of messages [from, to), which we claimed and have
 * copied out, back to the writer: one link, to + capacity in the word of
 * from's slot (see slot_word()). Nothing when the range is empty. */
static void hand_back(struct spmc_queue *q, uint64_t from, uint64_t to)
{
    if (from != to)
        /* Pairs with the acquire load of the word in refresh_free(): our
         * copies are done before the writer reuses the slots. Only the
         * reader that claimed message from (or took it over from a reader
         * that left) stores into this word this lap: a plain store, no
         * compare-and-swap. */
        atomic_store_explicit(slot_word(q, from), to + q->capacity, memory_order_release);
}

static HOT_INLINE int pop_share(struct spmc_queue *q, void *out)
{
    if (unlikely(q->index == q->claim_end)) { /* our claim is delivered: claim again */
        uint64_t left;
        if (take_leftover(q, &left)) { /* the oldest messages first */
            memcpy(out, slot_data(q, left), q->elem_size);
            hand_back(q, left, left + 1);
            return 0;
        }
        int rc = claim_batch(q);
        if (rc == -EAGAIN)
            rc = nothing_yet(q, q->index);
        /* Messages a reader left behind are not the end of the stream.
         * Seq_cst, as the increment in spmc_queue_destroy(), and after the
         * load of closed in nothing_yet(): a reader that left before the
         * writer closed is counted here. */
        if (rc == -EPIPE && atomic_load_explicit(&q->hdr->leaving, memory_order_seq_cst) != 0)
            rc = -EAGAIN;
        if (rc != 0)
            return rc;
    }
    uint64_t i = q->index++;
    /* As in pop_broadcast(): published, if perhaps another reader's. */
    if ((int64_t)(q->seen_head - (i + PREFETCH_AHEAD)) > 0)
        prefetch_read(slot_data(q, i + PREFETCH_AHEAD));
    memcpy(out, slot_data(q, i), q->elem_size);
    /* The whole claim is copied out: hand its slots back, with one store.
     * A writer that waits for them (the ring is full) reads that word as
     * we write it: one line's transfer per claim, where a store per slot
     * took eight. */
    if (q->index == q->claim_end)
        hand_back(q, q->claim_start, q->claim_end);
    return 0;
}

static HOT_INLINE int pop_once(struct spmc_queue *q, void *out)
{
    return q->fanout == SPMC_BROADCAST ? pop_broadcast(q, out) : pop_share(q, out);
}

int spmc_queue_try_pop(struct spmc_queue *q, void *out)
{
    if (unlikely(q == NULL || q->mode != SPMC_READER || out == NULL))
        return -EINVAL;
    return pop_once(q, out);
}

/* Will the next pop look at head? Only then is there a reason to pace.
 * Work-sharing: messages a leaving reader parked come first, with no look
 * at head (relaxed: a hint; pop_share() looks again, seq_cst). */
static inline int looks_next(const struct spmc_queue *q)
{
    if (q->fanout == SPMC_BROADCAST)
        return q->index == q->seen_head;
    return q->index == q->claim_end && q->seen_head == q->index &&
           atomic_load_explicit(&q->hdr->leaving, memory_order_relaxed) == 0;
}

/* spmc_queue_pop() once its message is not known to be there: pace, look
 * again, wait. Out of line, and not cold: a waiting reader spins in here.
 * The pop of a message already known to be there, most pops of a busy
 * queue, then costs one short function: no pacing test, no waiter, few
 * registers to save. It cut the instructions of such a pop by a fifth
 * (day5/README.md, "The pop that finds its message"). */
static NOINLINE int pop_wait(struct spmc_queue *q, void *out, int64_t timeout_ns)
{
    if (q->pace_ns != 0 && timeout_ns != 0 && looks_next(q)) {
        /* A writer that has filled the ring waits for our cursor: publish
         * it before we idle. */
        if (q->fanout == SPMC_BROADCAST && q->published != q->index)
            publish_cursor(q);
        pace(q);
    }
    int rc = pop_once(q, out);
    if (rc != -EAGAIN)
        return rc;
    struct waiter w;
    wait_start(&w, timeout_ns);
    while ((rc = pop_once(q, out)) == -EAGAIN) {
        rc = wait_more(&w);
        if (rc != 0)
            return rc;
    }
    return rc;
}

int spmc_queue_pop(struct spmc_queue *q, void *out, int64_t timeout_ns)
{
    if (unlikely(q == NULL || q->mode != SPMC_READER || out == NULL))
        return -EINVAL;
    /* A message below the head we loaded (broadcast), or left in our claim
     * (work-sharing), is there: copy it, no look and no pacing. */
    if (q->fanout == SPMC_BROADCAST ? likely(q->index != q->seen_head)
                                    : likely(q->index != q->claim_end))
        return pop_once(q, out);
    return pop_wait(q, out, timeout_ns);
}

/* ===================================================================== */
/* Tearing down                                                            */
/* ===================================================================== */

int spmc_queue_destroy(struct spmc_queue *q)
{
    if (q == NULL || q->hdr == NULL)
        return -EINVAL;
    if (q->mode == SPMC_WRITER) {
        /* Pairs with the seq_cst load of closed in nothing_yet() and the
         * acquire load in spmc_queue_attach(). */
        atomic_store_explicit(&q->hdr->closed, 1, memory_order_seq_cst);
        shm_unlink(q->name);
    } else if (q->fanout == SPMC_SHARE && q->index != q->claim_end) {
        /* We leave with messages of our claim not delivered: hand back the
         * slots we have copied out, and park the rest in our entry for the
         * other readers (see take_leftover()): cursor first (the range is
         * empty until claim_end is stored), counted in leaving before the
         * state says so, claim_end last. */
        hand_back(q, q->claim_start, q->index);
        atomic_store_explicit(&q->entry->cursor, q->index, memory_order_relaxed);
        /* Pairs with the seq_cst loads of leaving in take_leftover() and
         * nothing_yet(). */
        atomic_fetch_add_explicit(&q->hdr->leaving, 1, memory_order_seq_cst);
        /* Pairs with the acquire load of state in take_leftover(). */
        atomic_store_explicit(&q->entry->state, SPMC_ENTRY_LEAVING, memory_order_release);
        /* Pairs with the acquire load of claim_end in take_leftover(). */
        atomic_store_explicit(&q->entry->claim_end, q->claim_end, memory_order_release);
    } else {
        /* Pairs with the acquire load of state in count_readers() and the
         * seq_cst load in min_cursor(): the writer stops waiting for us. */
        atomic_store_explicit(&q->entry->state, SPMC_ENTRY_FREE, memory_order_seq_cst);
    }
    unmap_segment(q->hdr, q->map_size);
    memset(q, 0, sizeof *q);
    return 0;
}
