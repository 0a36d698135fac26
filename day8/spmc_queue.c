/* spmc_queue.c - day 8: the day-7 queue, carrying records of any length in place. */
#define _GNU_SOURCE /* F_OFD_SETLK, F_OFD_GETLK, syscall() */
#include "spmc_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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
_Static_assert(offsetof(struct spmc_shm_header, reaped) == 3 * SPMC_CACHELINE,
               "counters on line 3");
_Static_assert(offsetof(struct spmc_shm_header, readers_wake) == 4 * SPMC_CACHELINE,
               "futex words on line 4");
_Static_assert(sizeof(struct spmc_shm_header) == 5 * SPMC_CACHELINE, "table on line 5");
_Static_assert(sizeof(struct spmc_shm_reader) == SPMC_CACHELINE, "one line per reader");
_Static_assert(SPMC_MAX_READERS <= 1024, "an entry number fits the 10 bits of a claim");

/* A slot is one cache line, and a record takes whole slots: no two records
 * share a line, so a reader reading record k never touches the line the
 * writer is filling with record k + 1, and a record handed out in place is
 * aligned for any type. Its header, the length, lives in a table beside
 * the slots (eight to a line), so that a 64-byte record is one line, as on
 * day 7, not two. Work-sharing keeps one hand-back word per slot in
 * another such table. */
_Static_assert(SPMC_SLOT == SPMC_CACHELINE, "a slot is a cache line");

#if defined(__GNUC__)
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define COLD __attribute__((noinline, cold))
#define HOT_INLINE inline __attribute__((always_inline))
#else
#define likely(x) (x)
#define unlikely(x) (x)
#define COLD
#define HOT_INLINE inline
#endif

/* Test builds (-DSPMC_CRASH_POINTS) call a hook at every step where a
 * crash leaves something for others to clean up; tests/check_crash.c kills
 * or stops the process there. Normal builds compile the points away. */
#ifdef SPMC_CRASH_POINTS
void (*spmc_crash_hook)(const char *point);
#define SPMC_CRASH_POINT(name)                                                                 \
    do {                                                                                       \
        if (spmc_crash_hook != NULL)                                                           \
            spmc_crash_hook(name);                                                             \
    } while (0)
int64_t spmc_test_sleep_ns;
int spmc_test_fence_mode;
#else
#define SPMC_CRASH_POINT(name) ((void)0)
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

/* Slots a record of @p len bytes takes: at least one, so that every record
 * moves head and has a header of its own. */
static inline uint64_t slots_for(uint64_t len)
{
    return len == 0 ? 1 : (len + SPMC_SLOT - 1) / SPMC_SLOT;
}

/* The ring holds two of the largest records at least: then a record that
 * does not fit before the end of the ring always fits after the padding
 * once the readers have caught up (padding and record, at most 2n - 1
 * slots), and the writer never waits for room that cannot come. */
static int capacity_fits_records(uint64_t capacity, uint64_t max_record)
{
    return max_record != 0 && max_record <= SPMC_RECORD_MAX &&
           slots_for(max_record) < (1u << 23) && /* a claim record's field */
           capacity >= 2 * slots_for(max_record);
}

/* Bytes of the slots, rounded up so that the hand-back words after them
 * start on a cache line. */
static size_t slots_bytes(uint64_t slot_size, uint64_t capacity)
{
    return (size_t)(slot_size * capacity + SPMC_CACHELINE - 1) / SPMC_CACHELINE *
           SPMC_CACHELINE;
}

/* Bytes of a whole segment (header, reader table, slots, one hand-back word
 * and one record header per slot); 0 when the sizes make no sense or
 * overflow. */
static size_t segment_size(uint64_t slot_size, uint64_t capacity, uint64_t max_readers)
{
    const size_t room = SIZE_MAX / 4;
    size_t table = sizeof(struct spmc_shm_header) +
                   (size_t)max_readers * sizeof(struct spmc_shm_reader);
    if (slot_size == 0 || !is_power_of_two(capacity) || max_readers == 0 ||
        max_readers > SPMC_MAX_READERS ||
        capacity > (room - table) / (slot_size + 2 * sizeof(uint64_t) + SPMC_CACHELINE))
        return 0;
    return table + slots_bytes(slot_size, capacity) + 2 * (size_t)capacity * sizeof(uint64_t);
}

/* What a queue looks like: chosen by the creator, checked by an attacher. */
struct geometry {
    uint64_t max_record, capacity;
    uint32_t slot_size, fanout, max_readers, claim_max;
    size_t map_size;
};

/* The geometry of a queue with these parameters; 0 or -EINVAL. */
static int geometry_for(struct geometry *g, uint64_t max_record, uint64_t capacity,
                        uint64_t fanout, uint64_t max_readers, uint64_t claim_max)
{
    if ((fanout != SPMC_BROADCAST && fanout != SPMC_SHARE) ||
        !capacity_fits_records(capacity, max_record) || claim_max == 0 ||
        claim_max > SPMC_CLAIM_MAX)
        return -EINVAL;
    size_t size = segment_size(SPMC_SLOT, capacity, max_readers);
    if (size == 0)
        return -EINVAL;
    *g = (struct geometry){max_record,          capacity,
                           SPMC_SLOT,           (uint32_t)fanout,
                           (uint32_t)max_readers, (uint32_t)claim_max,
                           size};
    return 0;
}

/* Point the handle into a mapped segment of geometry @p g: the one place
 * where a handle's sizes are set, always from a geometry that was chosen
 * (create) or checked (attach), never from the segment itself. */
static void set_geometry(struct spmc_queue *q, const struct geometry *g, void *base)
{
    q->hdr = base;
    q->readers = (struct spmc_shm_reader *)(q->hdr + 1);
    q->slots = (unsigned char *)(q->readers + g->max_readers);
    q->words = (_Atomic uint64_t *)(q->slots + slots_bytes(g->slot_size, g->capacity));
    q->headers = q->words + g->capacity;
    q->map_size = g->map_size;
    q->max_record = (size_t)g->max_record;
    q->slot_size = g->slot_size;
    q->capacity = g->capacity;
    q->mask = g->capacity - 1;
    q->max_readers = g->max_readers;
    q->claim_max = g->claim_max;
    q->fanout = (enum spmc_fanout)g->fanout;
}

/* Bound on lock-free retry loops, so that no value a hostile process writes
 * into the segment can keep a call spinning forever. */
enum { MAX_RETRIES = 100000 };

/* Share: the hand-back word of the slot for index i: see the header's
 * comment for its values. */
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

/* Share: how many cache lines of hand-back words refresh_free() reads at
 * most beyond the ones it must (eight words a line). */
enum { FREE_SCAN_LINES = 8 };

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

/* The header word of a record of @p len bytes (or, with SPMC_PAD_BIT, of
 * padding over @p len slots) that starts at index i. */
static inline uint64_t header_word(uint64_t i, uint64_t len)
{
    return (uint64_t)(uint32_t)i << 32 | len;
}

/* The header word of the record at index i. The headers of eight slots in
 * a row are not in one line but in eight: in each block of 64 slots, slot
 * s's header is word s mod 8 of line (s mod 64) mod 8 of the block's eight
 * lines, so a line holds the headers of slots 8 apart. With eight
 * consecutive headers in a line, a reader that keeps up reads record k's
 * header from the line the writer is writing record k + 1's into, and the
 * line goes back and forth up to eight times: 64-byte records moved at
 * 6-18 M/s that way on our test machine, 41-53 M/s this way. The block's
 * lines are side by side (512 bytes, one page): the same lines spread
 * capacity bytes apart (eight pages), an earlier layout, moved 64-byte
 * records at 0.8x this speed (day8/README.md). A ring of fewer than 64
 * slots has fewer than eight lines of headers: there, slot s's is word s. */
static inline _Atomic uint64_t *header_of(const struct spmc_queue *q, uint64_t i)
{
    const uint64_t s = i & q->mask;
    if (q->capacity < 64)
        return &q->headers[s];
    return &q->headers[(s & ~(uint64_t)63) | (s & 7) << 3 | (s >> 3 & 7)];
}

/* A record header, checked: the one thing a reader knows about a record
 * that a peer wrote. */
struct record {
    uint64_t slots; /* slots it takes: padding's or the record's */
    size_t len;     /* the record's length */
    int pad;        /* 1 for padding: slots to skip, nothing to deliver */
};

/* Check header word @p h, loaded once, for a record at index @p i below
 * @p head: written for index i (not a lap before or after), a length of at
 * most max_record (or padding of at least one slot), and slots that end
 * before the end of the ring and at or before head. 0, or -EPROTO: a
 * writer that follows the rules never writes such a header. */
static int check_record(const struct spmc_queue *q, uint64_t h, uint64_t i, uint64_t head,
                        struct record *r)
{
    const uint64_t len = h & 0xffffffffu, to_end = q->capacity - (i & q->mask);
    if ((uint32_t)(h >> 32) != (uint32_t)i)
        return -EPROTO;
    if (len & SPMC_PAD_BIT) {
        r->pad = 1;
        r->len = 0;
        r->slots = len & ~(uint64_t)SPMC_PAD_BIT;
        if (r->slots == 0)
            return -EPROTO;
    } else {
        if (len > q->max_record)
            return -EPROTO;
        r->pad = 0;
        r->len = (size_t)len;
        r->slots = slots_for(len);
    }
    return r->slots <= to_end && r->slots <= (uint64_t)(head - i) ? 0 : -EPROTO;
}

/* Share: check_record() for the record at index k that a dead reader left,
 * whose header h a rescuer reads (@p head loaded before, @p limit as
 * check_record()'s). As the writer wrote it for k, or rewritten for k +
 * capacity, with the same length, by a writer that was republishing the
 * record (share_full() rewrites the header before it publishes the record
 * anew; head is not past k + capacity yet, or we would not look). */
static int check_left_record(const struct spmc_queue *q, uint64_t h, uint64_t k, uint64_t head,
                             uint64_t limit, struct record *r)
{
    if (check_record(q, h, k, limit, r) == 0)
        return 0;
    const uint64_t b = k + q->capacity;
    if ((int64_t)(head - b) > 0 || (uint32_t)(h >> 32) != (uint32_t)b)
        return -EPROTO;
    return check_record(q, header_word(k, h & 0xffffffffu), k, limit, r);
}

/* Positions carried in 52 bits: a claim marker, read_index. POS masks
 * them. (A claim record carries 40: see record_start().) */
#define POS ((1ull << 52) - 1)

/* Share: a dead reader's record that reader e has taken over: the first slot's
 * word with bit 63 set, e in bits 52-61 and (i + 1) mod 2^52 in bits 0-51.
 * Other values (i, i + capacity) stay below 2^63, so the two never meet. */
#define CLAIM_BIT (1ull << 63)

static inline uint64_t claim_word(uint64_t i, unsigned e)
{
    return CLAIM_BIT | (uint64_t)e << 52 | ((i + 1) & POS);
}

static inline int is_claim(uint64_t s)
{
    return (s & CLAIM_BIT) != 0;
}

static inline unsigned claimer(uint64_t s)
{
    return (unsigned)(s >> 52 & 0x3ff);
}

/* Share: does word s of slot k say that the record at index k is there,
 * neither handed back nor taken over, given head? It does when it reads
 * k ("free for index k", and the writer has written the record since). A
 * record the writer republishes as its record k (share_full()) is the
 * exception: its word still names the record of the lap before (k -
 * capacity, or a reader's claim on it) until head has passed k, and the
 * writer moves it on to k only after that. Such a word with head past k
 * says "holds k" too: the writer writes a slot again only once its word
 * is handed back, or to republish the record there. */
static inline int holds_index(const struct spmc_queue *q, uint64_t s, uint64_t k, uint64_t head)
{
    if (s == k)
        return 1;
    const uint64_t j = k - q->capacity;
    return (int64_t)(head - k) > 0 && (s == j || (is_claim(s) && (s & POS) == ((j + 1) & POS)));
}

/* Share: read_index holds the next position to claim and 1 + the entry
 * that claimed last (0: nobody yet). */
static inline uint64_t read_index_word(uint64_t pos, unsigned e)
{
    return (pos & POS) | (uint64_t)(e + 1) << 52;
}

/* Share: a reader's claim record, the slots [start, start + n) of the
 * records it claimed: start mod 2^40 in bits 0-39, n in bits 40-62 (up to
 * 2^23 - 1 slots), bit 63 once the claim is on record (it won read_index). */
#define CPOS ((1ull << 40) - 1)
#define ON_RECORD (1ull << 63)
#define CLAIM_SLOTS_MAX ((1ull << 23) - 1)

static inline uint64_t claim_record(uint64_t start, uint64_t n)
{
    return (start & CPOS) | n << 40;
}

static inline uint64_t record_n(uint64_t c)
{
    return c >> 40 & CLAIM_SLOTS_MAX;
}

/* The claim's start as a 64-bit index: the one at or below @p ref (head). */
static inline uint64_t record_start(uint64_t ref, uint64_t c)
{
    return ref - ((ref - c) & CPOS);
}

/* A reader entry's word: state in bits 0-1, generation in 2-31, the
 * holder's pid (information only) in 32-63. */
static inline unsigned entry_state(uint64_t w)
{
    return (unsigned)(w & 3u);
}

static inline uint64_t with_state(uint64_t w, unsigned state)
{
    return (w & ~(uint64_t)3) | state;
}

/* The word of a new holder (us) of an entry whose word was @p w. */
static uint64_t new_holder(uint64_t w, unsigned state)
{
    uint64_t generation = ((w >> 2) + 1) & 0x3fffffffu;
    return (uint64_t)(uint32_t)getpid() << 32 | generation << 2 | state;
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

/* The futex system call, which glibc does not wrap. Without
 * FUTEX_PRIVATE_FLAG: the word is in memory shared between processes, and
 * the kernel must find the sleepers of other processes by the page. */
static void futex_wait(_Atomic uint32_t *word, uint32_t seen, uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
                          .tv_nsec = (long)(ns % 1000000000u)};
    /* Sleeps only if *word still holds seen (the kernel compares under its
     * own lock), at most ns; a wake, a signal or a changed word end it
     * early. Every outcome means "look again", so the result is unused. */
    (void)syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, seen, &ts, NULL, 0);
}

/* How many sleepers it woke (0 if none was in the kernel). */
static long futex_wake(_Atomic uint32_t *word, int how_many)
{
    long n = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, how_many, NULL, NULL, 0);
    return n > 0 ? n : 0;
}

/* An asleep word: bits 0-31 count the sleepers (or about-to-be sleepers),
 * bits 32-63 count every time one has said so. */
#define ANNOUNCE (((uint64_t)1 << 32) | 1u)
static inline uint32_t sleepers(uint64_t a)
{
    return (uint32_t)a;
}
static inline uint32_t announcements(uint64_t a)
{
    return (uint32_t)(a >> 32);
}

/* Wake whoever sleeps on @p word, or is about to: change the word first, so
 * that a sleeper that read it before us does not go to sleep at all (the
 * kernel refuses to sleep on a changed word), then FUTEX_WAKE the ones
 * already asleep. @p seen is the asleep word we looked at before; once
 * every sleeper it announced is dealt with (we woke them all, or the
 * kernel had none of them asleep: they read the word before our change and
 * will not sleep on it), we remember its announcements in *covered (one
 * per asleep word: q->covered[ASLEEP_READERS] or [ASLEEP_WRITER]). */
COLD static void wake(struct spmc_queue *q, _Atomic uint32_t *word, int how_many, uint64_t seen,
                      uint64_t *covered)
{
    /* Release: a sleeper that reads the new value (acquire, in wait_more())
     * also sees what we stored before waking it. */
    atomic_fetch_add_explicit(word, 1, memory_order_release);
    long woken = futex_wake(word, how_many);
    q->wakes++;
    if (covered != NULL && (how_many == INT_MAX || woken == 0))
        *covered = announcements(seen);
}

/* Which asleep word a q->covered entry is for. */
enum { ASLEEP_READERS = 0, ASLEEP_WRITER = 1 };

/* Call right after a store that may end somebody's wait (a record, room
 * in the ring, a reader joining or leaving): wake the sleepers of @p word
 * if @p asleep says there are any that no wake of ours has covered yet.
 * The fast path is this fence and one load of a line nobody writes while
 * nobody sleeps: no system call.
 *
 * Why nobody sleeps through our store: a sleeper counts itself in asleep,
 * then a fence, then looks for what it waits for (wait_more(), then its
 * caller's next try). We store, then this fence, then look at asleep. Both
 * fences are seq_cst, so one comes first in their single total order: if
 * ours, the sleeper's look sees our store and it does not sleep; if its,
 * our look sees its count and we wake it. Without the fences each side's
 * load may be served before its own store reaches the other (x86 keeps
 * stores in a store buffer), both see the old state, and the sleeper sleeps
 * through the message (see day7/README.md, "Break it"). And why skipping a
 * covered announcement is safe: its sleeper read the futex word before it
 * announced, so before our earlier change (see wake()). */
static inline void wake_if_asleep(struct spmc_queue *q, _Atomic uint32_t *word,
                                  _Atomic uint64_t *asleep, int how_many, uint64_t *covered)
{
    /* Pairs with the seq_cst fence in wait_more(). */
    atomic_thread_fence(memory_order_seq_cst);
    uint64_t a = atomic_load_explicit(asleep, memory_order_relaxed);
    if (unlikely(sleepers(a) != 0) && announcements(a) != *covered)
        wake(q, word, how_many, a, covered);
}

static int barrier_everywhere(void);

/* The writer's two modes (see wake_readers()). Unfenced, a reader about to
 * sleep pays with a barrier (membarrier(2)), which interrupts the writer's
 * CPU: cheap while readers sleep rarely (a stream), dear when they sleep
 * before every message (a trickle). So a writer that wakes readers twice
 * within FENCE_AFTER_NS starts fencing after every push, and says so in
 * writer_fences: readers then sleep with their fence alone. It stops once
 * QUIET_PUSHES pushes in a row have woken nobody. */
#define FENCE_AFTER_NS 10000000u /* 10 ms: at most ~100 barriers a second */
enum { QUIET_PUSHES = 4096 };

/* From our next push on we fence. Release: a reader that reads 1 (acquire,
 * after its own fence, in wait_longer()) sees every head we stored before,
 * and every push after this fences. */
COLD static void start_fencing(struct spmc_queue *q)
{
    atomic_store_explicit(&q->hdr->writer_fences, 1, memory_order_release);
    q->fencing = 1;
    q->quiet_pushes = 0;
}

/* Stop fencing. Say so first, then pass a barrier (it starts with a full
 * fence on our own CPU). A reader that still reads 1 counted itself and
 * fenced before that read, so its fence came before ours (had ours come
 * first, it would read 0), and our next, unfenced, look sees its count: the
 * two-fence argument of wake_if_asleep(). A reader that reads 0 sends its
 * own barrier. (Our fence alone would do; the barrier also reaches readers
 * on the light path.) Should it fail, we go on fencing. */
COLD static void stop_fencing(struct spmc_queue *q)
{
    atomic_store_explicit(&q->hdr->writer_fences, 0, memory_order_relaxed);
    if (barrier_everywhere() != 0) {
        atomic_store_explicit(&q->hdr->writer_fences, 1, memory_order_release);
        q->quiet_pushes = 0;
        return;
    }
    q->fencing = 0;
    q->last_wake_ns = 0;
}

/* The writer has just woken readers after a push. */
COLD static void woke_readers(struct spmc_queue *q)
{
#ifdef SPMC_CRASH_POINTS
    if (spmc_test_fence_mode == 3) { /* tests: switch at every wake */
        if (q->fencing)
            stop_fencing(q);
        else
            start_fencing(q);
        return;
    }
#endif
    q->quiet_pushes = 0;
    if (q->fencing)
        return;
    const uint64_t now = mono_ns();
#ifdef SPMC_CRASH_POINTS
    if (spmc_test_fence_mode == 1) { /* tests: fence from the first wake */
        start_fencing(q);
        return;
    }
    if (spmc_test_fence_mode == 2) /* tests: never fence */
        return;
#endif
    if (q->last_wake_ns != 0 && now - q->last_wake_ns < FENCE_AFTER_NS)
        start_fencing(q);
    q->last_wake_ns = now;
}

/* The writer has published a record, or more: a work-sharing queue needs
 * one more reader awake for it, a broadcast queue all of them.
 *
 * The writer calls this after every push, and its fence there waits until
 * the push's stores have left its core: the slot's line, which a reader
 * holds, and head's. On a machine where a line takes hundreds of
 * nanoseconds to cross, that wait halved the stream. So, as for the
 * writer's own sleep (see wake_writer()), the side about to sleep pays
 * instead: a reader makes every registered process pass a full memory
 * barrier (membarrier(2) in wait_longer()) between its count and its
 * look, and a writer whose process is registered (q->unfenced) keeps only
 * the compiler from moving its load of readers_asleep before its store of
 * head. If that load ran before the barrier reached the writer's CPU, so
 * did the store, and the barrier made it visible before the reader looks;
 * if after, the load sees the reader's count. While readers sleep before
 * nearly every message, the barriers would cost more than the fences: the
 * writer fences then, and says so (start_fencing()). */
static inline void wake_readers(struct spmc_queue *q)
{
    _Atomic uint64_t *asleep = &q->hdr->readers_asleep;
    const int how_many = q->fanout == SPMC_SHARE ? 1 : INT_MAX;
    if (likely(q->unfenced) && q->role == SPMC_WRITER) {
        if (unlikely(q->fencing))
            atomic_thread_fence(memory_order_seq_cst); /* pairs with the reader's fence */
        else
            atomic_signal_fence(memory_order_seq_cst); /* the compiler's part only */
        uint64_t a = atomic_load_explicit(asleep, memory_order_relaxed);
        if (unlikely(sleepers(a) != 0) && announcements(a) != q->covered[ASLEEP_READERS]) {
            wake(q, &q->hdr->readers_wake, how_many, a, &q->covered[ASLEEP_READERS]);
            woke_readers(q);
        } else if (unlikely(q->fencing) && ++q->quiet_pushes >= QUIET_PUSHES) {
            stop_fencing(q);
        }
        return;
    }
    wake_if_asleep(q, &q->hdr->readers_wake, asleep, how_many, &q->covered[ASLEEP_READERS]);
}

/* A reader has given room back, joined or left: the same, but for the
 * writer. A work-sharing reader gives room back at every claim, and the
 * fence there would wait for its stores to the slots' hand-back words,
 * lines the writer is reading: it cost about a quarter of day 6's speed.
 * So when it can, the writer pays instead: a writer about to sleep makes
 * every process registered for it pass a full memory barrier
 * (membarrier(2), MEMBARRIER_CMD_GLOBAL_EXPEDITED, in wait_more()), between
 * its count and its look. A reader in a registered process (q->light) then
 * needs only to keep the compiler from moving its load of writer_asleep
 * before its stores: if that load ran before the writer's barrier reached
 * its CPU, so did the stores, and the barrier made them visible before the
 * writer looks; if after, it sees the writer's count. */
static inline void wake_writer(struct spmc_queue *q)
{
    if (q->role == SPMC_WRITER)
        return; /* (the writer settling a dead reader's slots: it is awake) */
    if (likely(q->light)) {
        atomic_signal_fence(memory_order_seq_cst); /* the compiler's part only */
        uint64_t a = atomic_load_explicit(&q->hdr->writer_asleep, memory_order_relaxed);
        if (unlikely(sleepers(a) != 0) && announcements(a) != q->covered[ASLEEP_WRITER])
            wake(q, &q->hdr->writer_wake, INT_MAX, a, &q->covered[ASLEEP_WRITER]);
        return;
    }
    wake_if_asleep(q, &q->hdr->writer_wake, &q->hdr->writer_asleep, INT_MAX,
                   &q->covered[ASLEEP_WRITER]);
}

/* The heavy half of the light paths (see wake_writer(), wake_readers()),
 * paid by the side about to sleep: 0, or -errno. */
static int barrier_everywhere(void)
{
    return syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0 ? 0 : -errno;
}

/* Spin a little, then yield a few times, then sleep in the kernel on a
 * futex word of the segment until a peer wakes us or a slice has passed
 * (then our caller looks at its peers' liveness: a process that died cannot
 * wake anyone). The clock is read only once spinning is over, so a short
 * wait costs no system call at all. */
struct waiter {
    unsigned rounds;
    int64_t timeout_ns;
    uint64_t deadline;        /* 0 until the spinning is over */
    uint64_t slice_ns;        /* longest sleep before a liveness check */
    _Atomic uint32_t *word;   /* the futex word we sleep on */
    _Atomic uint64_t *asleep; /* where we say that we do */
    _Atomic uint64_t *mine;   /* reader: its entry's asleep flag */
    uint32_t seen;            /* the word's value before we said so */
    int announced;            /* 1 while we are counted in *asleep */
};

/* Plain re-checks for the first microsecond or so: a `pause` between two
 * looks delays noticing a message by up to its own length (about 40 ns on
 * recent x86), which added a fifth to the round trip of a ping-pong (see
 * day5/README.md). A few yields then, which cost little and help when
 * the peer we wait for shares our CPU; then sleep. */
enum { PLAIN_ROUNDS = 256, SPIN_ROUNDS = 512, YIELD_ROUNDS = 512 + 16 };

/* The longest a waiter sleeps when its barrier failed (see wait_longer()). */
#define BARRIER_FAILED_NAP_NS 1000000u

/* Must a reader about to sleep, counted and fenced, send a barrier before
 * it looks? Not while the writer fences after every push: read after our
 * fence, with acquire (pairs with the release store in start_fencing();
 * stop_fencing() explains a 1 read just before the writer stops). */
static int reader_must_send_barrier(const struct spmc_queue *q)
{
    return q->unfenced && !atomic_load_explicit(&q->hdr->writer_fences, memory_order_acquire);
}

/* A reader waits on readers_wake, the writer on writer_wake; for at most
 * @p slice_ns at a time. */
static void wait_start(struct waiter *w, const struct spmc_queue *q, int64_t timeout_ns,
                       uint64_t slice_ns)
{
    struct spmc_shm_header *h = q->hdr;
    int reader = q->role == SPMC_READER;
    *w = (struct waiter){
        .timeout_ns = timeout_ns,
        .slice_ns = slice_ns,
        .word = reader ? &h->readers_wake : &h->writer_wake,
        .asleep = reader ? &h->readers_asleep : &h->writer_asleep,
        .mine = reader ? &q->entry->asleep : NULL,
    };
#ifdef SPMC_CRASH_POINTS
    if (spmc_test_sleep_ns > 0) { /* tests: straight to sleep, for long */
        w->rounds = YIELD_ROUNDS;
        w->slice_ns = (uint64_t)spmc_test_sleep_ns;
    }
#endif
}

/* Take one sleeper off the count @p asleep, never below zero (a peer that
 * scribbled over it must not make it wrap round to four billion sleepers:
 * a futex call for every push after). */
static void uncount_sleeper(_Atomic uint64_t *asleep)
{
    uint64_t a = atomic_load_explicit(asleep, memory_order_relaxed);
    while (sleepers(a) != 0 && !atomic_compare_exchange_weak_explicit(asleep, &a, a - 1,
                                                                      memory_order_relaxed,
                                                                      memory_order_relaxed))
        ;
}

/* We are no longer about to sleep. A reader says so in its entry too, in
 * the order that lets a reaper uncount it should it die (see
 * free_dead_entry()): counted only while the flag is up. */
static void wait_end(struct waiter *w)
{
    if (w->announced) {
        uncount_sleeper(w->asleep);
        if (w->mine != NULL)
            atomic_store_explicit(w->mine, 0, memory_order_relaxed);
        w->announced = 0;
    }
}

/* wait_more() once the spinning is over: yield, then sleep. */
COLD static int wait_longer(struct spmc_queue *q, struct waiter *w)
{
    unsigned r = w->rounds;
    uint64_t now = mono_ns(), nap = w->slice_ns;
    if (w->timeout_ns >= 0) {
        if (w->deadline == 0)
            w->deadline = now + (uint64_t)w->timeout_ns;
        if (now >= w->deadline) {
            wait_end(w);
            return -ETIMEDOUT;
        }
        if (w->deadline - now < nap)
            nap = w->deadline - now;
    }
    if (r < YIELD_ROUNDS) {
        sched_yield();
        return 0;
    }
    w->rounds = YIELD_ROUNDS; /* no overflow, however long we wait */
    if (!w->announced) {
        /* Read the word before we say we sleep: whoever changes it after
         * this read makes our sleep below return at once. Acquire: pairs
         * with the release fetch_add in wake(). */
        w->seen = atomic_load_explicit(w->word, memory_order_acquire);
        if (w->mine != NULL)
            atomic_store_explicit(w->mine, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(w->asleep, ANNOUNCE, memory_order_relaxed);
        /* Our count before the caller's next look. Pairs with the seq_cst
         * fence in wake_if_asleep(); the barrier pairs with the compiler
         * fence of the other side's light path: the readers' in
         * wake_writer(), the writer's in wake_readers(). */
        atomic_thread_fence(memory_order_seq_cst);
        /* It worked in the writer's process at creation. Should it fail
         * here (a seccomp filter installed since, or a reader's process that
         * may not use it), a peer on the light path may not see our count:
         * we sleep a short nap at a time, and look after each. Slower,
         * never stuck. */
        if ((q->role == SPMC_WRITER ? q->light : reader_must_send_barrier(q)) &&
            barrier_everywhere() != 0)
            w->slice_ns = w->slice_ns < BARRIER_FAILED_NAP_NS ? w->slice_ns
                                                              : BARRIER_FAILED_NAP_NS;
        w->announced = 1;
        return 0; /* the caller looks once more before we sleep */
    }
    SPMC_CRASH_POINT(q->role == SPMC_READER ? "pop:asleep" : "push:asleep");
    futex_wait(w->word, w->seen, nap);
    q->sleeps++;
    wait_end(w);
    q->check_now = 1; /* a dead peer cannot have woken us: look at it */
    return 0;
}

/* One more round of waiting, after a look that found nothing; -ETIMEDOUT
 * once the deadline has passed. The timeout counts from the end of the
 * spinning (a few microseconds late). The caller looks again after every
 * round, and calls wait_end() when it stops. The spinning rounds are
 * inline, as the look they follow (see pop_once()); the rest is
 * wait_longer(). */
static HOT_INLINE int wait_more(struct spmc_queue *q, struct waiter *w)
{
    unsigned r = ++w->rounds;
    if (likely(r < SPIN_ROUNDS)) {
        if (r > PLAIN_ROUNDS) /* first re-check at once, then politely */
            cpu_relax();
        return 0;
    }
    return wait_longer(q, w);
}

/* Pacing a reader that keeps up with a streaming writer. Each look at head
 * takes head's line from the writer's core, and the writer's next store of
 * head must fetch it back before the stores queued behind it can leave
 * the core. A reader that looks after every message or two does that once
 * per message; where a line takes 500 ns to cross, it halves the writer's
 * pace (see day5/README.md). So peek_wait() (spmc_queue_peek() and
 * spmc_queue_pop()) waits pace_ns before it looks, and each look sets
 * pace_ns by what it found:
 *   - nothing, or only the @p first record's slots: idle, or records one
 *     at a time: no pacing, so a record pushed onto an idle queue is seen
 *     at once;
 *   - more, up to capacity/8 slots: a streaming writer: wait twice as long next time
 *     (from PACE_FIRST_NS, up to PACE_MAX_NS), and find a bigger batch;
 *   - more than capacity/4 slots: the ring fills while we wait: halve it. */
enum { PACE_FIRST_NS = 64, PACE_MAX_NS = 4096 };

static inline void pace_after_look(struct spmc_queue *q, uint64_t found, uint64_t first)
{
    if (found <= first)
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
/* Liveness                                                                */
/* ===================================================================== */

/* Every open handle holds an open file description lock (F_OFD_SETLK) on
 * one byte of the segment's file: byte 0 for the writer, byte 1 + e for the
 * reader of entry e. The kernel releases it when the last descriptor of
 * that open file description closes, which happens when the process dies,
 * however it dies. So "is the peer alive?" is "is its byte locked?", asked
 * of the kernel with F_OFD_GETLK, or answered by taking the lock ourselves
 * with F_OFD_SETLK: that also makes us the only one who may clean up after
 * the dead holder. No pid, no /proc: it works across PID namespaces. */
enum { WRITER_LOCK = 0 };

static inline off_t reader_lock(unsigned e)
{
    return (off_t)1 + (off_t)e;
}

/* Take the lock on byte @p at; 0, or -EAGAIN if another holds it. */
static int lock_byte(int fd, off_t at)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = at, .l_len = 1};
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
        return 0;
    return errno == EAGAIN || errno == EACCES ? -EAGAIN : -errno;
}

static void unlock_byte(int fd, off_t at)
{
    struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = at, .l_len = 1};
    (void)fcntl(fd, F_OFD_SETLK, &fl);
}

/* 1 when another open file description holds the lock on byte @p at: its
 * process is alive (perhaps stopped). When the kernel cannot tell us, say
 * alive: waiting longer is safe, taking a live peer's place is not. */
static int held_elsewhere(int fd, off_t at)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = at, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
        return 1;
    return fl.l_type != F_UNLCK;
}

static int writer_alive(const struct spmc_queue *q)
{
    return held_elsewhere(q->fd, WRITER_LOCK);
}

/* How often a waiting side looks at whether its peers are still alive. */
enum { CHECK_EVERY_POLLS = 256, CHECK_EVERY_NS = 10000000 };

/* time_to_check(), the rare part: forced after a sleep or after we
 * delivered a dead reader's message, else at most every CHECK_EVERY_NS. */
COLD static int check_clock(struct spmc_queue *q)
{
    uint64_t now = mono_ns();
    if (q->check_now) { /* after a sleep, or a dead reader may have left more */
        q->check_now = 0;
        q->last_check_ns = now;
        return 1;
    }
    if (now - q->last_check_ns < CHECK_EVERY_NS)
        return 0;
    q->last_check_ns = now;
    return 1;
}

/* Rate limit for liveness checks: true once every CHECK_EVERY_POLLS polls
 * and at most every CHECK_EVERY_NS. Keeps system calls off the hot path;
 * inline, as the rest of a waiting reader's look (see pop_once()). */
static HOT_INLINE int time_to_check(struct spmc_queue *q)
{
    if (likely(!q->check_now) && likely(++q->idle_polls % CHECK_EVERY_POLLS != 0))
        return 0;
    return check_clock(q);
}

/* Entry e's reader died (we hold its lock): if it died asleep, take it off
 * the count of sleepers, or the writer would make a futex call at every
 * push from now on, for nobody. A reader that died between raising its
 * flag and counting itself (or between uncounting itself and lowering the
 * flag) is uncounted once too often: then the count is one short for a
 * while, and a reader asleep meanwhile may sleep a slice (SPMC_SLICE_NS)
 * before it sees a message. Never below zero. */
static void uncount_dead_sleeper(struct spmc_queue *q, unsigned e)
{
    _Atomic uint64_t *flag = &q->readers[e].asleep;
    if (atomic_exchange_explicit(flag, 0, memory_order_relaxed) != 0)
        uncount_sleeper(&q->hdr->readers_asleep);
}

/* We hold the lock of entry e, so its holder is dead (or it is free): free
 * it with one compare-and-swap. 1 if we freed a dead reader's entry. In
 * work-sharing, only once the message it may have claimed is delivered
 * (orphan_of() says none): a claim names its entry, and a new reader of a
 * freed entry would look like the claim's live holder. */
static unsigned free_dead_entry(struct spmc_queue *q, unsigned e)
{
    _Atomic uint64_t *word = &q->readers[e].word;
    uint64_t w = atomic_load_explicit(word, memory_order_relaxed);
    if (entry_state(w) == SPMC_ENTRY_FREE)
        return 0;
    /* First, while the entry still says it is held: should we die between
     * the two, the next reaper still finds the flag. */
    uncount_dead_sleeper(q, e);
    /* Pairs with the seq_cst loads of the word in min_cursor() and the
     * acquire load in take_entry(). */
    if (!atomic_compare_exchange_strong_explicit(word, &w, with_state(w, SPMC_ENTRY_FREE),
                                                 memory_order_seq_cst, memory_order_relaxed))
        return 0;
    atomic_fetch_add_explicit(&q->hdr->reaped, 1, memory_order_relaxed); /* a statistic */
    return 1;
}

/* Share: hand the slots [from, to) of records this reader (or the dead
 * reader whose claim it settles) has released back to the writer: "free
 * for index j + capacity". The last slot first: whoever sees a record's
 * first slot handed back knows that all its slots are (orphan_of() walks
 * a dead reader's claim on that rule). */
static void hand_back(struct spmc_queue *q, uint64_t from, uint64_t to)
{
    for (uint64_t j = to; j != from;) {
        j--;
        /* Pairs with the acquire loads of the word in refresh_free() and
         * orphan_of(): the copy is done before the writer reuses the slot,
         * and the later slots' words are stored before this one. Only the
         * claim's holder moves this word on (or, once it is dead, its
         * reaper), but for the writer's one compare-and-swap when it has
         * just republished a dead reader's record here (share_full()):
         * from the value before our claim, it fails after our store, and
         * our store replaces it after. */
        atomic_store_explicit(slot_word(q, j), j + q->capacity, memory_order_release);
    }
    wake_writer(q); /* it may be asleep waiting for these slots */
}

/* Entry e's holder is dead and we hold the entry's lock: the work-sharing
 * claim it won, if any; 1 with [*start, *end) set. A claim counts if it is
 * on record, or if read_index still names it as the last one (it won, and
 * nobody has claimed since: whoever claims next puts it on record first,
 * see claim_batch()). A claim beyond head is not one the queue made. */
static int claim_of(const struct spmc_queue *q, unsigned e, uint64_t *start, uint64_t *end)
{
    /* Relaxed: the holder is dead, its last stores are all visible. */
    const uint64_t c = atomic_load_explicit(&q->readers[e].claim, memory_order_relaxed);
    const uint64_t n = record_n(c);
    if (n == 0 || n > q->capacity / 2)
        return 0;
    /* Pairs with the release store of head in commit_once(). */
    const uint64_t head = atomic_load_explicit(&q->hdr->head, memory_order_acquire);
    *start = record_start(head, c);
    *end = *start + n;
    /* Pairs with the release compare-and-swaps of read_index in
     * claim_batch(): a claim that read_index has moved past is on record. */
    const uint64_t last = atomic_load_explicit(&q->hdr->read_index, memory_order_acquire);
    if (!(c & ON_RECORD) && last != read_index_word(*end, e))
        return 0; /* it lost the race for read_index: no claim */
    return (uint64_t)(head - *start) >= n;
}

/* Entry e's holder is dead and we hold its lock: hand back the slots of the
 * records of its claim it released but had not handed back yet (it died
 * before the claim's last release, or in the middle of the hand-back). */
static void settle_delivered(struct spmc_queue *q, unsigned e)
{
    uint64_t start, end;
    if (!claim_of(q, e, &start, &end))
        return;
    uint64_t done = atomic_load_explicit(&q->readers[e].done, memory_order_relaxed);
    if ((uint64_t)(done - start) > end - start)
        return; /* not a value the reader wrote */
    /* Pairs with the release stores of head (see holds_index()). */
    const uint64_t head = atomic_load_explicit(&q->hdr->head, memory_order_acquire);
    for (uint64_t j = start; j != done; j++) {
        _Atomic uint64_t *word = slot_word(q, j);
        uint64_t s = atomic_load_explicit(word, memory_order_relaxed);
        /* While it still "holds index j" (not handed back). Pairs with the
         * acquire loads of the word in refresh_free(): the dead reader's
         * copy was done before it died, and we took its lock after. Tried
         * again if it fails: a writer that republished the record as j
         * may move the word on to j in between (share_full()). */
        for (int tries = 0; tries < 3 && holds_index(q, s, j, head); tries++)
            if (atomic_compare_exchange_strong_explicit(word, &s, j + q->capacity,
                                                        memory_order_release,
                                                        memory_order_relaxed))
                break;
    }
    wake_writer(q); /* (a reader settling for the dead one) */
}

/* Entry e's holder is dead and we hold its lock: did it leave a record
 * unreleased? The one it had taken over from another dead reader itself
 * (`held`, named by the record's first slot), or one of its claim that
 * `done` does not say released and nobody has taken over. 1 with *index,
 * the record's first index, set if so.
 *
 * The records of the claim from `done` on are walked by their first
 * slots' words. A record that a live reader has taken over (the word names
 * that reader) is skipped by its header, which nobody rewrites while the
 * record is held. A slot handed back is skipped alone: the record it was
 * part of has all its slots handed back (hand_back() stores the first slot
 * last), and the writer may have reused them since, header included, for
 * a record that lies within them (the slots after them are not handed
 * back, so it cannot go further). */
static int orphan_of(const struct spmc_queue *q, unsigned e, uint64_t *index)
{
    /* Relaxed: the holder is dead, its last stores are all visible. */
    const uint64_t h = atomic_load_explicit(&q->readers[e].held, memory_order_relaxed);
    /* Pairs with the release stores of head: a record taken over is
     * below head, within a lap (a word that says otherwise, next to a
     * `held` beyond head, is a peer's scribble: nothing to take). */
    const uint64_t head = atomic_load_explicit(&q->hdr->head, memory_order_acquire);
    if ((uint64_t)(head - h - 1) < q->capacity &&
        atomic_load_explicit(slot_word(q, h), memory_order_relaxed) == claim_word(h, e)) {
        *index = h;
        return 1;
    }
    uint64_t start, end;
    if (!claim_of(q, e, &start, &end))
        return 0;
    uint64_t k = atomic_load_explicit(&q->readers[e].done, memory_order_relaxed);
    if ((uint64_t)(k - start) > end - start)
        k = start; /* not a value the reader wrote: walk the whole claim */
    for (int tries = 0; k != end && tries < MAX_RETRIES; tries++) {
        if ((int64_t)(head - (k + q->capacity)) > 0) {
            /* The writer has been past this slot since: it was handed
             * back, or the record there republished, in ours. Skipped
             * alone, as a slot handed back is. */
            k++;
            continue;
        }
        /* Pairs with the release stores of the word in hand_back(). */
        const uint64_t s = atomic_load_explicit(slot_word(q, k), memory_order_acquire);
        if (holds_index(q, s, k, head) || s == claim_word(k, e)) {
            *index = k;
            return 1;
        }
        if (is_claim(s)) { /* another reader has it: skip its slots */
            const uint64_t laps = ((s & POS) - ((k + 1) & POS)) & POS;
            if (laps != 0 && laps % q->capacity == 0) {
                /* A record of a later lap, taken over: the writer has been
                 * past this slot since, so it was handed back (or
                 * republished) in ours. Skipped alone, as below. */
                k++;
                continue;
            }
            if (laps != 0)
                return 0; /* not a value the queue writes */
            const uint64_t hw = atomic_load_explicit(header_of(q, k), memory_order_relaxed);
            /* The header is the record's if the word still names its
             * taker after it: the writer rewrites a header only after it
             * has seen the word handed back (acquire), so had we read its
             * new header, this load would see that hand-back. */
            atomic_thread_fence(memory_order_acquire);
            if (atomic_load_explicit(slot_word(q, k), memory_order_relaxed) != s)
                continue; /* handed back meanwhile: look again */
            struct record r;
            if (check_left_record(q, hw, k, head, end, &r) != 0)
                return 0;
            k += r.slots;
            continue;
        }
        if ((int64_t)(s - k) > 0 && (s - k) % q->capacity == 0) {
            k++; /* handed back (and perhaps reused since) */
            continue;
        }
        return 0; /* not a value the queue writes */
    }
    return 0;
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
 * process's mapping of it. NULL with errno set on failure.
 *
 * The mapping is made through an open file description of its own, opened
 * by name and closed at once, never through @p fd: a mapping keeps its open
 * file description alive (in this process, and in every child that
 * inherits the mapping), and with it any lock on it. Our locks must die
 * with the handle that holds them, so they live on @p fd alone. */
static void *map_segment(const char *name, int fd, size_t size)
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
        struct stat again;
        int mfd = shm_open(name, O_RDWR, 0);
        if (mfd < 0) {
            err = errno;
        } else if (fstat(mfd, &again) != 0 || again.st_dev != st.st_dev ||
                   again.st_ino != st.st_ino) {
            err = ENOENT; /* the name names another segment now */
        } else {
            base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
            if (base == MAP_FAILED) {
                err = errno;
                base = NULL;
            } else if (unused != NULL) { /* else: not shared, still correct */
                *unused = (struct mapping){st.st_dev, st.st_ino, base, size, 1};
            }
        }
        if (mfd >= 0)
            close(mfd);
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

/* The descriptors of this process's open handles. A child made by fork()
 * shares our open file descriptions, and with them our locks: if it kept
 * them, a parent that died would look alive for as long as the child
 * lives. So the child closes its copies at once (pthread_atfork), and the
 * parent's handles are unusable in the child. */
static pthread_mutex_t fds_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int *open_fds;
static size_t n_open_fds, room_open_fds;

static void before_fork(void)
{
    pthread_mutex_lock(&fds_lock);
    pthread_mutex_lock(&mappings_lock);
}

static void after_fork_in_parent(void)
{
    pthread_mutex_unlock(&mappings_lock);
    pthread_mutex_unlock(&fds_lock);
}

/* Counted up in every child made by fork(): a handle opened before the
 * fork carries an older count, which is how destroy() and the other calls
 * that use the descriptor know it for the parent's (no pid is compared:
 * a child in a new PID namespace may well have its parent's pid). */
static unsigned long process_epoch;

static void after_fork_in_child(void)
{
    for (size_t k = 0; k < n_open_fds; k++)
        close(open_fds[k]);
    n_open_fds = 0;
    process_epoch++;
    pthread_mutex_unlock(&mappings_lock);
    pthread_mutex_unlock(&fds_lock);
}

/* Is this process registered to receive the writer's barriers (see
 * wake_writer())? Registers it the first time, and again in a child made
 * by fork() (a new process). 1 or 0; 0 where the kernel (before Linux
 * 4.16), a seccomp filter or Valgrind says no: then the readers fence. */
static _Atomic unsigned long barrier_epoch; /* process_epoch + 1 when barrier_ok was set */
static _Atomic int barrier_ok;

static int registered_for_barriers(void)
{
    const unsigned long e = process_epoch + 1;
    if (atomic_load_explicit(&barrier_epoch, memory_order_acquire) == e)
        return atomic_load_explicit(&barrier_ok, memory_order_relaxed);
    int ok = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
    atomic_store_explicit(&barrier_ok, ok, memory_order_relaxed);
    atomic_store_explicit(&barrier_epoch, e, memory_order_release);
    return ok;
}

static void install_fork_handlers(void)
{
    (void)pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
}

/* 0, or -ENOMEM. */
static int remember_fd(int fd)
{
    pthread_once(&atfork_once, install_fork_handlers);
    int rc = 0;
    pthread_mutex_lock(&fds_lock);
    if (n_open_fds == room_open_fds) {
        size_t room = room_open_fds ? 2 * room_open_fds : 8;
        int *grown = realloc(open_fds, room * sizeof *grown);
        if (grown == NULL)
            rc = -ENOMEM;
        else
            open_fds = grown, room_open_fds = room;
    }
    if (rc == 0)
        open_fds[n_open_fds++] = fd;
    pthread_mutex_unlock(&fds_lock);
    return rc;
}

static void forget_fd(int fd)
{
    pthread_mutex_lock(&fds_lock);
    for (size_t k = 0; k < n_open_fds; k++)
        if (open_fds[k] == fd) {
            open_fds[k] = open_fds[--n_open_fds];
            break;
        }
    if (n_open_fds == 0) {
        free(open_fds);
        open_fds = NULL;
        room_open_fds = 0;
    }
    pthread_mutex_unlock(&fds_lock);
}

/* Is this handle open in this process (and not a forked child's copy)? */
static int owned_here(const struct spmc_queue *q)
{
    return q->fd >= 0 && q->epoch == process_epoch;
}

/* ===================================================================== */
/* Creating (writer)                                                       */
/* ===================================================================== */

/* If the segment open on @p fd is one of our queues of this version, 1 and
 * its writer's pid; a segment too small for a header is not one. */
static int is_our_queue(int fd, int *writer_pid)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(struct spmc_shm_header))
        return 0;
    const struct spmc_shm_header *h = mmap(NULL, sizeof *h, PROT_READ, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED)
        return 0;
    int ours = h->magic == SPMC_MAGIC && h->version == SPMC_VERSION &&
               h->header_size == sizeof *h;
    *writer_pid = (int)atomic_load_explicit(&h->writer_pid, memory_order_relaxed);
    munmap((void *)h, sizeof *h);
    return ours;
}

/* Remove @p name if it still names the segment open on @p fd (and not one
 * made since by someone else). 0 once removed. */
static int unlink_if_same(const char *name, int fd)
{
    int again = shm_open(name, O_RDONLY | O_NONBLOCK, 0); /* a FIFO must not block us */
    if (again < 0)
        return errno == ENOENT ? 0 : -errno;
    struct stat mine, now;
    int same = fstat(fd, &mine) == 0 && fstat(again, &now) == 0 &&
               mine.st_dev == now.st_dev && mine.st_ino == now.st_ino;
    close(again);
    if (!same)
        return -EEXIST;
    return shm_unlink(name) == 0 || errno == ENOENT ? 0 : -errno;
}

/* The name is taken. Remove the segment if it is one of our queues and its
 * writer is gone: we can take the writer's lock. Holding it also keeps any
 * other process from removing or reusing it meanwhile. Anything else (a
 * live queue, a segment whose creator has not yet written our magic, a
 * stranger's object) is left alone. 0 when the name is free now. */
static int reclaim_stale(const char *name)
{
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0)
        return errno == ENOENT ? 0 : -EEXIST;
    int rc = remember_fd(fd) == 0 ? -EEXIST : -ENOMEM, pid;
    if (rc == -EEXIST && lock_byte(fd, WRITER_LOCK) == 0) {
        SPMC_CRASH_POINT("reclaim:locked");
        if (is_our_queue(fd, &pid) && unlink_if_same(name, fd) == 0)
            rc = 0;
        SPMC_CRASH_POINT("reclaim:unlinked");
    }
    if (rc != -ENOMEM)
        forget_fd(fd);
    close(fd); /* drops the lock */
    return rc;
}

/* Take the writer's lock of a segment we have just made. Someone looking
 * at the name (reclaim_stale()) may hold it for a moment: retry for a
 * second. */
static int take_writer_lock(int fd)
{
    const struct timespec nap = {0, 1000000}; /* 1 ms */
    for (int tries = 0; tries < 1000; tries++) {
        int rc = lock_byte(fd, WRITER_LOCK);
        if (rc != -EAGAIN)
            return rc;
        nanosleep(&nap, NULL);
    }
    return -EAGAIN;
}

/* Create the segment, ours alone: O_EXCL, then at once the writer's lock,
 * so that nobody takes it for a dead writer's while we build it. A stale
 * queue of the same name is removed first (and we try again, a few times:
 * another creator may be quicker). */
static int open_new_segment(const char *name, mode_t perm, int *out)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, perm);
        if (fd >= 0) {
            SPMC_CRASH_POINT("create:opened");
            /* Known at once, so that a fork() from another thread closes
             * the child's copy (and with it nothing of our lock). */
            int rc = remember_fd(fd);
            if (rc == 0 && (rc = take_writer_lock(fd)) != 0)
                forget_fd(fd);
            if (rc != 0) { /* no magic yet: nobody else removes it */
                (void)unlink_if_same(name, fd);
                close(fd);
                return rc;
            }
            SPMC_CRASH_POINT("create:locked");
            *out = fd;
            return 0;
        }
        if (errno != EEXIST)
            return -errno;
        int rc = reclaim_stale(name);
        if (rc != 0)
            return rc;
    }
    return -EEXIST;
}

/* Size the new segment and reserve its memory now: a full /dev/shm fails
 * here, not with SIGBUS at the first touch of a page long after. */
static int size_segment(int fd, mode_t perm, size_t size)
{
    /* shm_open() applied our umask; the caller's permissions win. */
    if (fchmod(fd, perm) != 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) != 0)
        return errno == EFBIG ? -ENOMEM : -errno;
    SPMC_CRASH_POINT("create:sized");
    int rc = posix_fallocate(fd, 0, (off_t)size);
    if (rc != 0)
        return rc == EFBIG ? -ENOSPC : -rc;
    SPMC_CRASH_POINT("create:reserved");
    return 0;
}

/* Write the header, the reader table and the slots; the magic last of
 * all but ready (published by spmc_queue_create_opts()). */
static void init_segment(struct spmc_queue *q)
{
    struct spmc_shm_header *h = q->hdr;
    h->version = SPMC_VERSION;
    h->header_size = sizeof *h;
    h->cacheline = SPMC_CACHELINE;
    h->max_record = q->max_record;
    h->capacity = q->capacity;
    h->slot_size = (uint32_t)q->slot_size;
    h->fanout = (uint32_t)q->fanout;
    h->max_readers = q->max_readers;
    h->claim_max = q->claim_max;
    /* A barrier reaches registered processes only. Sending one needs no
     * registration, only a kernel that has the command; to skip our fence
     * after a push, the readers' barriers must reach us: we register. */
    q->light = barrier_everywhere() == 0;
    q->unfenced = q->light && registered_for_barriers();
    h->writer_barrier = (q->light ? SPMC_BARRIER_WRITER_SENDS : 0u) |
                        (q->unfenced ? SPMC_BARRIER_READERS_SEND : 0u);
    /* All relaxed: published by ready. */
    atomic_store_explicit(&h->closed, 0, memory_order_relaxed);
    atomic_store_explicit(&h->writer_pid, (uint32_t)getpid(), memory_order_relaxed);
    atomic_store_explicit(&h->head, 0, memory_order_relaxed);
    atomic_store_explicit(&h->gate, 0, memory_order_relaxed);
    atomic_store_explicit(&h->read_index, 0, memory_order_relaxed);
    atomic_store_explicit(&h->writer_fences, 0, memory_order_relaxed);
    atomic_store_explicit(&h->reaped, 0, memory_order_relaxed);
    atomic_store_explicit(&h->redelivered, 0, memory_order_relaxed);
    atomic_store_explicit(&h->readers_wake, 0, memory_order_relaxed);
    atomic_store_explicit(&h->readers_asleep, 0, memory_order_relaxed);
    atomic_store_explicit(&h->writer_wake, 0, memory_order_relaxed);
    atomic_store_explicit(&h->writer_asleep, 0, memory_order_relaxed);
    for (unsigned e = 0; e < q->max_readers; e++) {
        atomic_store_explicit(&q->readers[e].cursor, 0, memory_order_relaxed);
        atomic_store_explicit(&q->readers[e].word, SPMC_ENTRY_FREE, memory_order_relaxed);
        atomic_store_explicit(&q->readers[e].held, 0, memory_order_relaxed);
        atomic_store_explicit(&q->readers[e].claim, 0, memory_order_relaxed);
        atomic_store_explicit(&q->readers[e].done, 0, memory_order_relaxed);
        atomic_store_explicit(&q->readers[e].asleep, 0, memory_order_relaxed);
    }
    for (uint64_t i = 0; i < q->capacity; i++) {
        atomic_store_explicit(slot_word(q, i), i, memory_order_relaxed); /* free for index i */
        /* A header no index below 2^32 has: nothing to read yet. */
        atomic_store_explicit(header_of(q, i), header_word(~(uint64_t)i, SPMC_PAD_BIT),
                              memory_order_relaxed);
    }
    SPMC_CRASH_POINT("create:header");
    /* From here on a later creator may take the segment for one of ours
     * and remove it, but only once our lock says we are dead. */
    h->magic = SPMC_MAGIC;
    SPMC_CRASH_POINT("create:magic");
}

int spmc_queue_create(struct spmc_queue *q, const char *name, size_t max_record,
                      size_t capacity)
{
    return spmc_queue_create_opts(q, name, max_record, capacity, NULL);
}

int spmc_queue_create_opts(struct spmc_queue *q, const char *name, size_t max_record,
                           size_t capacity, const struct spmc_options *opts)
{
    if (q == NULL)
        return -EINVAL;
    memset(q, 0, sizeof *q);
    q->fd = -1;
    q->covered[ASLEEP_READERS] = q->covered[ASLEEP_WRITER] = UINT64_MAX; /* (no announcement yet) */
    const struct spmc_options o = opts != NULL ? *opts
                                               : (struct spmc_options){
                                                     .fanout = SPMC_BROADCAST,
                                                     .max_readers = SPMC_DEFAULT_READERS,
                                                 };
    struct geometry g = {0};
    int rc = check_name(name);
    if (rc == 0)
        rc = o.perm <= 0777 ? geometry_for(&g, max_record, capacity, o.fanout, o.max_readers,
                                           o.claim_max != 0 ? o.claim_max : SPMC_CLAIM_DEFAULT)
                            : -EINVAL;
    if (rc != 0)
        return rc;
    const mode_t perm = o.perm != 0 ? (mode_t)o.perm : 0600;
    int fd = -1;
    rc = open_new_segment(name, perm, &fd);
    if (rc != 0)
        return rc;
    void *base = NULL;
    rc = size_segment(fd, perm, g.map_size);
    if (rc == 0 && (base = map_segment(name, fd, g.map_size)) == NULL)
        rc = -errno;
    if (rc != 0) {
        if (base != NULL)
            unmap_segment(base, g.map_size);
        (void)unlink_if_same(name, fd);
        forget_fd(fd);
        close(fd); /* drops the lock */
        return rc;
    }
    set_geometry(q, &g, base);
    init_segment(q);
    prefetch_setup();
    q->role = SPMC_WRITER;
    q->fd = fd;
    q->epoch = process_epoch;
    q->limit = q->capacity;
    memcpy(q->name, name, strlen(name) + 1);
    /* Last: pairs with the acquire load of ready in read_header(). */
    atomic_store_explicit(&q->hdr->ready, SPMC_READY, memory_order_release);
    return 0;
}

/* Live readers: active entries whose lock is held. The locks (a system
 * call each) are looked at only when the entries alone would be enough;
 * an active entry whose reader is dead is freed on the way, at most every
 * CHECK_EVERY_NS (taking its lock for a moment keeps an attacher off it). A
 * reader still joining is not counted: a writer that waited for it must not
 * publish before the reader has chosen where it starts. */
static unsigned count_readers(struct spmc_queue *q, unsigned wanted)
{
    unsigned active = 0, live = 0;
    for (unsigned e = 0; e < q->max_readers; e++)
        /* Pairs with the compare-and-swaps that make an entry active in
         * take_entry() and join_broadcast(). */
        active += entry_state(atomic_load_explicit(&q->readers[e].word,
                                                   memory_order_acquire)) == SPMC_ENTRY_ACTIVE;
    if (active < wanted)
        return active;
    const int reap = time_to_check(q);
    for (unsigned e = 0; e < q->max_readers; e++) {
        if (entry_state(atomic_load_explicit(&q->readers[e].word, memory_order_acquire)) !=
            SPMC_ENTRY_ACTIVE)
            continue;
        if (held_elsewhere(q->fd, reader_lock(e))) {
            live++;
            continue;
        }
        if (!reap || lock_byte(q->fd, reader_lock(e)) != 0)
            continue;
        SPMC_CRASH_POINT("reap:locked");
        /* A dead work-sharing reader may have left a record undelivered:
         * its entry must keep its claim until someone delivers them
         * (share_full(), rescue_orphan(), a new holder of the entry); free
         * it only if it left none. */
        uint64_t orphan;
        if (q->fanout == SPMC_SHARE)
            settle_delivered(q, e);
        if (q->fanout != SPMC_SHARE || !orphan_of(q, e, &orphan))
            (void)free_dead_entry(q, e);
        SPMC_CRASH_POINT("reap:freed");
        unlock_byte(q->fd, reader_lock(e));
    }
    return live;
}

int spmc_queue_wait_readers(struct spmc_queue *q, unsigned count, int64_t timeout_ns)
{
    if (q == NULL || q->role != SPMC_WRITER || count > q->max_readers || !owned_here(q))
        return -EINVAL;
    struct waiter w;
    wait_start(&w, q, timeout_ns, SPMC_SLICE_NS);
    int rc = 0;
    while (rc == 0 && count_readers(q, count) < count)
        rc = wait_more(q, &w);
    wait_end(&w);
    return rc;
}

/* ===================================================================== */
/* Attaching (reader)                                                      */
/* ===================================================================== */

/* The fields an attacher needs, read once from the shared header so that a
 * process changing them later cannot make us use values we did not check. */
struct header_copy {
    uint32_t magic, version, header_size, cacheline;
    uint64_t max_record, capacity;
    uint32_t slot_size, fanout, max_readers, claim_max;
};

/* Check a header the creator has published; 0 (and its geometry) or -EPROTO. */
static int check_header(const struct header_copy *c, size_t max_record, size_t capacity,
                        off_t file_size, struct geometry *g)
{
    if (c->magic != SPMC_MAGIC || c->version != SPMC_VERSION ||
        c->header_size != sizeof(struct spmc_shm_header) || c->cacheline != SPMC_CACHELINE)
        return -EPROTO;
    if ((max_record != 0 && c->max_record != max_record) ||
        (capacity != 0 && c->capacity != capacity))
        return -EPROTO;
    /* The file is exactly the size its creator made: fields lowered after
     * the fact would describe a smaller layout, inside the file, that is
     * not the one the writer uses. */
    if (geometry_for(g, c->max_record, c->capacity, c->fanout, c->max_readers, c->claim_max) != 0 ||
        g->slot_size != c->slot_size || (uint64_t)file_size != g->map_size)
        return -EPROTO;
    return 0;
}

/* Wait a bounded time for the creator to size the segment and publish its
 * header, then check it. If time is up and a creator is still at work (it
 * holds the writer's lock): -ETIMEDOUT, try again later. If nobody is, the
 * segment will never be finished: -EPROTO. */
static int read_header(int fd, size_t max_record, size_t capacity, struct geometry *g)
{
    const uint64_t deadline = mono_ns() + SPMC_ATTACH_WAIT_NS;
    const struct timespec nap = {0, 1000000}; /* 1 ms */
    const struct spmc_shm_header *h = NULL;
    struct stat st;
    int rc = 0;
    for (;;) {
        if (fstat(fd, &st) != 0)
            return -errno;
        if (h == NULL && (size_t)st.st_size >= sizeof *h) {
            h = mmap(NULL, sizeof *h, PROT_READ, MAP_SHARED, fd, 0);
            if (h == MAP_FAILED)
                return -errno;
        }
        /* Pairs with the release store of ready in spmc_queue_create_opts(). */
        if (h != NULL && atomic_load_explicit(&h->ready, memory_order_acquire) == SPMC_READY)
            break;
        if (mono_ns() >= deadline) {
            rc = held_elsewhere(fd, WRITER_LOCK) ? -ETIMEDOUT : -EPROTO;
            break;
        }
        nanosleep(&nap, NULL);
    }
    if (rc == 0 && fstat(fd, &st) != 0)
        rc = -errno;
    if (rc == 0) {
        struct header_copy c = {h->magic,     h->version,    h->header_size,
                                h->cacheline, h->max_record, h->capacity,
                                h->slot_size, h->fanout,     h->max_readers,
                                h->claim_max};
        rc = check_header(&c, max_record, capacity, st.st_size, g);
    }
    if (h != NULL)
        munmap((void *)h, sizeof *h);
    return rc;
}

/* We hold entry e's lock, so nobody alive holds the entry: make it ours
 * with one compare-and-swap of its word. If its last holder died with
 * the record of a work-sharing claim unreleased, it is ours to deliver
 * first (see adopt_next()). */
static int take_entry(struct spmc_queue *q, unsigned e)
{
    struct spmc_shm_reader *r = &q->readers[e];
    /* Pairs with the compare-and-swap that freed the entry (release_entry(),
     * free_dead_entry()): its last holder is done with it. */
    uint64_t w = atomic_load_explicit(&r->word, memory_order_acquire);
    if (entry_state(w) != SPMC_ENTRY_FREE) { /* its holder died */
        if (q->fanout == SPMC_SHARE) {
            settle_delivered(q, e);
            q->adopting = 1;
        }
        uncount_dead_sleeper(q, e);
        atomic_fetch_add_explicit(&q->hdr->reaped, 1, memory_order_relaxed); /* a statistic */
    }
    const unsigned state = q->fanout == SPMC_BROADCAST ? SPMC_ENTRY_JOINING : SPMC_ENTRY_ACTIVE;
    /* Pairs with the acquire loads of the word in count_readers() and the
     * seq_cst ones in min_cursor(). */
    if (!atomic_compare_exchange_strong_explicit(&r->word, &w, new_holder(w, state),
                                                 memory_order_seq_cst, memory_order_relaxed)) {
        q->adopting = 0; /* only a hostile process changes it under our lock */
        return -EAGAIN;
    }
    SPMC_CRASH_POINT("attach:claimed");
    q->entry = r;
    q->entry_index = e;
    return 0;
}

/* Take an entry of the reader table: its lock first, so that nobody can
 * take it for a dead reader's while we set it up, then its word. Free
 * entries first; then entries whose readers died. A free entry whose lock
 * is busy is being looked at by a reaper for a moment: try again soon. */
static int claim_entry(struct spmc_queue *q)
{
    for (int round = 0; round < 100; round++) {
        int busy = 0;
        for (int pass = 0; pass < 2; pass++)
            for (unsigned e = 0; e < q->max_readers; e++) {
                uint64_t w = atomic_load_explicit(&q->readers[e].word, memory_order_relaxed);
                if ((entry_state(w) == SPMC_ENTRY_FREE) != (pass == 0))
                    continue;
                if (lock_byte(q->fd, reader_lock(e)) != 0) {
                    busy |= pass == 0; /* a live reader, or someone looking at it */
                    continue;
                }
                SPMC_CRASH_POINT("attach:locked");
                if (take_entry(q, e) == 0)
                    return 0;
                unlock_byte(q->fd, reader_lock(e));
            }
        if (!busy)
            break;
        sched_yield();
    }
    return -EUSERS;
}

/* A reader leaves: one compare-and-swap frees its entry. */
static void release_entry(struct spmc_queue *q)
{
    uint64_t w = atomic_load_explicit(&q->entry->word, memory_order_relaxed);
    /* Pairs with the acquire load in take_entry() and the seq_cst loads in
     * min_cursor(): the writer stops waiting for us. */
    (void)atomic_compare_exchange_strong_explicit(&q->entry->word, &w,
                                                  with_state(w, SPMC_ENTRY_FREE),
                                                  memory_order_seq_cst, memory_order_relaxed);
    wake_writer(q);
}

/* Broadcast join: choose a starting cursor the writer is guaranteed to
 * respect. The writer pushes freely while its index stays below its
 * limit, at most gate + capacity; it stores gate, which never moves back,
 * *before* it re-reads the table (see refresh_limit()). We store our
 * cursor and make the entry active *before* we read gate. With both pairs
 * sequentially consistent, either the writer's re-read sees us, or we see
 * its new gate; if that gate is beyond our cursor we may already be
 * overrun, so we start again from the writer's newer position. */
static int join_broadcast(struct spmc_queue *q)
{
    struct spmc_shm_header *h = q->hdr;
    uint64_t w = atomic_load_explicit(&q->entry->word, memory_order_relaxed);
    for (int tries = 0; tries < MAX_RETRIES; tries++) {
        /* Position only: pop_broadcast() loads head again, with acquire,
         * before it reads a slot. */
        uint64_t start = atomic_load_explicit(&h->head, memory_order_relaxed);
        /* Pairs with the seq_cst load of cursor in min_cursor(). */
        atomic_store_explicit(&q->entry->cursor, start, memory_order_seq_cst);
        SPMC_CRASH_POINT("attach:cursor");
        /* Starting: the writer respects our cursor from now on, but
         * wait_readers() does not count us until we know where we start.
         * Pairs with the seq_cst load of the word in min_cursor(). */
        if (entry_state(w) != SPMC_ENTRY_STARTING &&
            !atomic_compare_exchange_strong_explicit(&q->entry->word, &w,
                                                     with_state(w, SPMC_ENTRY_STARTING),
                                                     memory_order_seq_cst, memory_order_seq_cst))
            return -EPROTO;
        w = with_state(w, SPMC_ENTRY_STARTING);
        /* Pairs with the seq_cst store of gate in refresh_limit(). */
        uint64_t gate = atomic_load_explicit(&h->gate, memory_order_seq_cst);
        if ((int64_t)(gate - start) <= 0) {
            q->index = q->published = q->seen_head = start;
            q->entry_word = with_state(w, SPMC_ENTRY_ACTIVE);
            /* Now we count. Pairs with the acquire loads of the word in
             * count_readers(); min_cursor() sees no difference. */
            return atomic_compare_exchange_strong_explicit(&q->entry->word, &w, q->entry_word,
                                                           memory_order_seq_cst,
                                                           memory_order_relaxed)
                       ? 0
                       : -EPROTO;
        }
    }
    return -EPROTO; /* gate stays beyond head: not a writer we understand */
}

/* Become one of the queue's readers: an entry, then a starting point. */
static int join(struct spmc_queue *q)
{
    /* Pairs with the release store of closed in spmc_queue_destroy(). */
    if (atomic_load_explicit(&q->hdr->closed, memory_order_acquire))
        return -EPIPE;
    int rc = claim_entry(q);
    if (rc != 0)
        return rc;
    if (q->fanout == SPMC_BROADCAST) {
        q->publish_mask = q->capacity >= 4 ? q->capacity / 4 - 1 : 0;
        rc = join_broadcast(q);
        if (rc != 0) {
            release_entry(q);
            return rc;
        }
    } /* share: index == claim_end == 0, the first pop claims (claim_batch()) */
    wake_writer(q); /* it may be asleep in spmc_queue_wait_readers() */
    return 0;
}

int spmc_queue_attach(struct spmc_queue *q, const char *name, size_t max_record,
                      size_t capacity)
{
    if (q == NULL)
        return -EINVAL;
    memset(q, 0, sizeof *q);
    q->fd = -1;
    q->covered[ASLEEP_READERS] = q->covered[ASLEEP_WRITER] = UINT64_MAX; /* (no announcement yet) */
    int rc = check_name(name);
    if (rc != 0)
        return rc;
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0)
        return -errno;
    SPMC_CRASH_POINT("attach:opened");
    struct geometry g = {0};
    void *base = NULL;
    int remembered = (rc = remember_fd(fd)) == 0; /* at once: see open_new_segment() */
    if (rc == 0)
        rc = read_header(fd, max_record, capacity, &g);
    /* A creator reserves every page of its segment (size_segment()). One
     * made otherwise may be sparse, and a page that a full /dev/shm cannot
     * give would be SIGBUS at our first touch: reserve them now, or refuse.
     * (For a segment already reserved, nothing to do.) */
    while (rc == 0 && (rc = posix_fallocate(fd, 0, (off_t)g.map_size)) == EINTR)
        rc = 0;
    if (rc > 0)
        rc = rc == EFBIG ? -ENOSPC : -rc;
    if (rc == 0 && (base = map_segment(name, fd, g.map_size)) == NULL)
        rc = -errno;
    if (rc == 0) {
        /* From here on only the checked geometry is used. */
        set_geometry(q, &g, base);
        q->fd = fd;
        q->epoch = process_epoch;
        SPMC_CRASH_POINT("attach:mapped");
        rc = join(q);
    }
    if (rc != 0) {
        if (remembered)
            forget_fd(fd);
        if (base != NULL)
            unmap_segment(base, g.map_size);
        close(fd); /* drops any lock we took */
        memset(q, 0, sizeof *q);
        q->fd = -1;
        return rc;
    }
    q->role = SPMC_READER;
    const uint32_t barrier = q->hdr->writer_barrier;
    q->light = (barrier & SPMC_BARRIER_WRITER_SENDS) && registered_for_barriers();
    q->unfenced = (barrier & SPMC_BARRIER_READERS_SEND) != 0;
    memcpy(q->name, name, strlen(name) + 1);
    return 0;
}

/* ===================================================================== */
/* Pushing                                                                 */
/* ===================================================================== */

/* Broadcast: the lowest cursor of the attached readers (index if none). */
static uint64_t min_cursor(const struct spmc_queue *q, uint64_t index)
{
    uint64_t low = index;
    for (unsigned i = 0; i < q->max_readers; i++) {
        /* Pairs with the seq_cst compare-and-swaps in join_broadcast(). */
        unsigned state =
            entry_state(atomic_load_explicit(&q->readers[i].word, memory_order_seq_cst));
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

/* Broadcast: free the entries of readers that died (we can take their
 * locks); how many. A dead reader's cursor would hold us back for ever. */
static unsigned reap_dead_readers(struct spmc_queue *q)
{
    unsigned n = 0;
    for (unsigned e = 0; e < q->max_readers; e++) {
        uint64_t w = atomic_load_explicit(&q->readers[e].word, memory_order_relaxed);
        if (entry_state(w) == SPMC_ENTRY_FREE || lock_byte(q->fd, reader_lock(e)) != 0)
            continue; /* free, or alive */
        SPMC_CRASH_POINT("reap:locked");
        n += free_dead_entry(q, e);
        SPMC_CRASH_POINT("reap:freed");
        unlock_byte(q->fd, reader_lock(e));
    }
    return n;
}

/* Broadcast, the cached limit says there is no room for @p n more slots:
 * look again, and if a reader holds us back, check (rate-limited) whether
 * it is dead. 0 when there is room now. */
COLD static int broadcast_full(struct spmc_queue *q, uint64_t n)
{
    refresh_limit(q);
    if ((int64_t)(q->index + n - q->limit) <= 0)
        return 0;
    if (!time_to_check(q) || reap_dead_readers(q) == 0)
        return -EAGAIN;
    refresh_limit(q);
    return (int64_t)(q->index + n - q->limit) <= 0 ? 0 : -EAGAIN;
}

/* Share: the cached limit says there is no room for @p n more slots; read
 * the hand-back words from the limit on, up to index + n, then to the end
 * of their cache line and FREE_SCAN_LINES - 1 lines more, and push freely
 * up to the first slot not handed back yet. The words of a line are read
 * together, so that the readers' hand-backs into that line (right behind us
 * when they keep up) do not take it from us record by record; and eight
 * lines are as many as one claim of SPMC_CLAIM_MAX slots hands back. The
 * limit then runs far enough ahead for reserve_once() to ask for slot
 * lines early. 0 when there is room now. */
static int refresh_free(struct spmc_queue *q, uint64_t n)
{
    const uint64_t per_line = SPMC_CACHELINE / sizeof(uint64_t);
    const uint64_t want = q->index + n;
    uint64_t j = (int64_t)(q->limit - q->index) > 0 ? q->limit : q->index;
    uint64_t end = (want - 1) | (per_line - 1);
    end += 1 + (FREE_SCAN_LINES - 1) * per_line;
    /* Pairs with the release stores of the word in hand_back() and
     * settle_delivered(): the reader of the record that last used slot j
     * has released it (the word says j - capacity until then). */
    while (j != end && atomic_load_explicit(slot_word(q, j), memory_order_acquire) == j)
        j++;
    /* The slots up to j are ours to overwrite: ask for their lines now (the
     * first we write at once; the transfers of the next ones overlap it). */
    for (uint64_t k = q->index + 1; (int64_t)(j - k) > 0 && k - q->index <= PREFETCH_AHEAD; k++)
        prefetch_write(slot_data(q, k));
    q->limit = j;
    /* Every word we read was free, so the ring is far from full: fetch
     * the words the next call will read now. They were last written most
     * of a lap ago, and each line takes a cache-line transfer we would
     * otherwise wait for when we get there. (When the ring is full, those
     * are the words the readers are about to hand back: reading them now
     * would only take their lines from the readers, so we do not.) */
    for (uint64_t k = end; j == end && k != end + FREE_SCAN_LINES * per_line; k += per_line)
        __builtin_prefetch((const void *)slot_word(q, k), 0, 3);
    return (int64_t)(want - j) <= 0 ? 0 : -EAGAIN;
}

/* Share: the entry whose claim holds the record at index j (not handed
 * back; one of the claim's records), or max_readers if none does: then
 * nobody has claimed it yet. */
static unsigned owner_of(const struct spmc_queue *q, uint64_t j)
{
    for (unsigned e = 0; e < q->max_readers; e++) {
        uint64_t start, end;
        if (claim_of(q, e, &start, &end) && (uint64_t)(j - start) < end - start)
            return e;
    }
    return q->max_readers;
}

/* Publish padding over the slots [index, index + n): they carry no record.
 * Their slots must be free (handed back, in work-sharing). */
static void publish_padding(struct spmc_queue *q, uint64_t n)
{
    const uint64_t i = q->index;
    /* Relaxed: published by head's release store below. */
    atomic_store_explicit(header_of(q, i), header_word(i, SPMC_PAD_BIT | n),
                          memory_order_relaxed);
    q->index = i + n;
    /* Pairs with the acquire loads of head in the readers. */
    atomic_store_explicit(&q->hdr->head, q->index, memory_order_release);
    SPMC_CRASH_POINT("push:padded");
    wake_readers(q);
}

/* Share: slot b, the first one not handed back, still holds the record of
 * the lap before, at index j = b - capacity. If the reader that claimed it
 * died before releasing it, republish it in place, as our next record
 * (after padding over the free slots before it, if any), and move on; if
 * it died after, hand its slots back for it. Rate-limited. 0 when the
 * slots we need may be free now (look again), -EAGAIN to wait, -EPROTO if
 * slot b's word holds none of the values the queue writes there ("holds
 * the record of the lap before", or of the one that record republished;
 * "handed back"; a take-over marker on it naming an entry of the table).
 * A peer scribbled over it, and no reader would ever hand that slot back:
 * waiting would end only at the caller's timeout. */
COLD static int share_full(struct spmc_queue *q)
{
    const uint64_t b = q->limit, j = b - q->capacity;
    if (!time_to_check(q))
        return -EAGAIN; /* the readers are just slow, most likely */
    /* Pairs with the release stores of the word in hand_back(). */
    uint64_t s = atomic_load_explicit(slot_word(q, b), memory_order_acquire);
    unsigned e;
    if (holds_index(q, s, j, q->index))
        e = owner_of(q, j); /* the record at j is in somebody's claim */
    else if (is_claim(s) && (s & POS) == ((j + 1) & POS) && claimer(s) < q->max_readers)
        e = claimer(s); /* a reader took the record at j over from a dead one */
    else if (s == b)
        return -EAGAIN; /* handed back since refresh_free() looked: look again */
    else
        return -EPROTO; /* no value the queue writes there: a peer scribbled */
    SPMC_CRASH_POINT("push:full");
    if (e >= q->max_readers || lock_byte(q->fd, reader_lock(e)) != 0)
        return -EAGAIN; /* nobody's yet, or its reader is alive (perhaps stopped): wait */
    SPMC_CRASH_POINT("reap:locked");
    settle_delivered(q, e); /* released: its slots go back */
    /* The record's header, as the writer (we) wrote it a lap ago. */
    struct record r;
    uint64_t h = atomic_load_explicit(header_of(q, j), memory_order_relaxed);
    int ok = check_record(q, h, j, b, &r) == 0;
    /* s was read before we held the lock: meanwhile another reaper may have
     * delivered that record. Only if it is still unreleased do we move it
     * on: padding to "free for index b"; a record to "holds index b", one
     * that readers claim as the record at b (the payload is the one we
     * wrote: a reader only ever reads it). */
    s = atomic_load_explicit(slot_word(q, b), memory_order_relaxed);
    const int held = ok && (holds_index(q, s, j, q->index) || s == claim_word(j, e));
    if (held) {
        /* Its other slots: ours, we hold e's lock; "holds index b + k" is
         * also what they say once handed back for that index. */
        for (uint64_t k = 1; k < r.slots; k++)
            atomic_store_explicit(slot_word(q, b + k), b + k, memory_order_relaxed);
        q->check_now = 1; /* its claim may hold more records: look again at once */
    }
    if (held && !r.pad) {
        atomic_fetch_add_explicit(&q->hdr->redelivered, 1, memory_order_relaxed); /* a statistic */
        if (b != q->index)
            publish_padding(q, b - q->index); /* slots [index, b) are free */
        atomic_store_explicit(header_of(q, b), header_word(b, r.len), memory_order_relaxed);
        /* Should we die here, the record is still the one at j, left by e:
         * its word says so, and head is not past b (check_left_record()
         * reads the new header as the old one). */
        SPMC_CRASH_POINT("reap:republished");
        q->index = b + r.slots;
        q->limit = q->index;
        /* The publication: pairs with the acquire loads of head in
         * claim_batch() and the rescuers. From here the word, which still
         * names the record at j, says "holds index b" (holds_index()). */
        atomic_store_explicit(&q->hdr->head, q->index, memory_order_release);
        SPMC_CRASH_POINT("reap:slot");
        wake_readers(q);
    }
    /* The word last, by compare-and-swap: a reader may have claimed the
     * record at b and handed it back, or taken it over, in between.
     * Release: pairs with the acquire loads of the word in orphan_of() and
     * refresh_free(); whoever reads b here reads the other slots' words
     * we stored above. */
    if (held)
        (void)atomic_compare_exchange_strong_explicit(slot_word(q, b), &s, b,
                                                      memory_order_release,
                                                      memory_order_relaxed);
    uint64_t other;
    if (!orphan_of(q, e, &other))
        (void)free_dead_entry(q, e);
    SPMC_CRASH_POINT("reap:freed");
    unlock_byte(q->fd, reader_lock(e));
    return 0;
}

/* Room for @p n slots at index: 0, -EAGAIN, or -EPROTO (share_full()). */
static HOT_INLINE int room_for(struct spmc_queue *q, uint64_t n)
{
    if (likely((int64_t)(q->index + n - q->limit) <= 0))
        return 0;
    if (q->fanout == SPMC_BROADCAST)
        return broadcast_full(q, n);
    if (refresh_free(q, n) == 0)
        return 0;
    const int rc = share_full(q);
    return rc != 0 ? rc : refresh_free(q, n);
}

/* The writer's hot path, once the handle and the length are checked:
 * reserve_once() finds room for a record of up to max_len bytes, and
 * commit_once() publishes it. spmc_queue_try_reserve(), spmc_queue_commit()
 * and the wait loops call them; spmc_queue_try_push() and
 * spmc_queue_push() make one call with them inline, the check made once, as
 * pop_once() is for a reader (see day5/README.md, "The hot path marked"). */
static HOT_INLINE int reserve_once(struct spmc_queue *q, size_t max_len, void **rec)
{
    const uint64_t n = slots_for(max_len), i = q->index;
    const uint64_t to_end = q->capacity - (i & q->mask);
    q->reserved = 0;
    if (unlikely(n > to_end)) { /* it would wrap: padding to the end first */
        const int rc = room_for(q, to_end);
        if (rc != 0 || q->index != i)
            return rc != 0 ? rc : -EAGAIN; /* (or share_full() moved us on: look again) */
        publish_padding(q, to_end);
    }
    const uint64_t at = q->index;
    const int rc = room_for(q, n);
    if (rc != 0 || q->index != at)
        return rc != 0 ? rc : -EAGAIN;
    /* Broadcast: a slot below the limit is free (its readers have passed
     * it); work-sharing's limit ends at the words refresh_free() read, and
     * it asked for those slots itself. */
    if ((int64_t)(q->limit - (at + n + PREFETCH_AHEAD)) > 0)
        prefetch_write(slot_data(q, at + n + PREFETCH_AHEAD - 1));
    q->reserved = (uint64_t)max_len + 1;
    *rec = slot_data(q, at);
    return 0;
}

static HOT_INLINE int commit_once(struct spmc_queue *q, size_t len)
{
    const uint64_t i = q->index;
    /* Relaxed: published by head's release store below. */
    atomic_store_explicit(header_of(q, i), header_word(i, len), memory_order_relaxed);
    SPMC_CRASH_POINT("push:copied");
    q->index = i + slots_for(len);
    q->reserved = 0;
    /* The publication, in both modes. Pairs with the acquire loads of head
     * in peek_broadcast() and claim_batch(): every record below head is
     * written, header and payload. Every commit stores it, so a record
     * pushed onto an idle queue is visible at once. */
    atomic_store_explicit(&q->hdr->head, q->index, memory_order_release);
    SPMC_CRASH_POINT("push:published");
    wake_readers(q); /* if some are asleep, or about to be */
    return 0;
}

static inline int writer_ok(const struct spmc_queue *q)
{
    return q != NULL && q->role == SPMC_WRITER && q->epoch == process_epoch;
}

/* The wait of spmc_queue_reserve() and spmc_queue_push(), once a first
 * reserve_once() has found no room; the handle and max_len are checked.
 * Out of line, as the cold path it is: with it inline in spmc_queue_push(),
 * the round trip of `--latency` measured about 15% longer in the default
 * build, and the same with every function aligned to 64 bytes, which makes
 * it a matter of code placement (see day5/README.md, errata). */
COLD static int reserve_waiting(struct spmc_queue *q, size_t max_len, void **rec,
                                int64_t timeout_ns)
{
    int rc;
    struct waiter w;
    wait_start(&w, q, timeout_ns, SPMC_FULL_SLICE_NS);
    while ((rc = reserve_once(q, max_len, rec)) == -EAGAIN && (rc = wait_more(q, &w)) == 0)
        ;
    wait_end(&w);
    return rc;
}

int spmc_queue_try_reserve(struct spmc_queue *q, size_t max_len, void **rec)
{
    if (unlikely(!writer_ok(q) || rec == NULL))
        return -EINVAL;
    if (unlikely(max_len > q->max_record))
        return -EMSGSIZE;
    return reserve_once(q, max_len, rec);
}

int spmc_queue_reserve(struct spmc_queue *q, size_t max_len, void **rec, int64_t timeout_ns)
{
    if (unlikely(!writer_ok(q) || rec == NULL))
        return -EINVAL;
    if (unlikely(max_len > q->max_record))
        return -EMSGSIZE;
    int rc = reserve_once(q, max_len, rec);
    return rc != -EAGAIN ? rc : reserve_waiting(q, max_len, rec, timeout_ns);
}

int spmc_queue_commit(struct spmc_queue *q, size_t len)
{
    if (unlikely(!writer_ok(q) || q->reserved == 0))
        return -EINVAL;
    if (unlikely(len >= q->reserved)) /* more than the reservation's bytes */
        return -EMSGSIZE;
    return commit_once(q, len);
}

int spmc_queue_try_push(struct spmc_queue *q, const void *msg, size_t len)
{
    if (unlikely(!writer_ok(q) || (msg == NULL && len != 0)))
        return -EINVAL;
    if (unlikely(len > q->max_record))
        return -EMSGSIZE;
    void *rec;
    int rc = reserve_once(q, len, &rec);
    if (rc != 0)
        return rc;
    if (len != 0)
        memcpy(rec, msg, len);
    return commit_once(q, len);
}

int spmc_queue_push(struct spmc_queue *q, const void *msg, size_t len, int64_t timeout_ns)
{
    if (unlikely(!writer_ok(q) || (msg == NULL && len != 0)))
        return -EINVAL;
    if (unlikely(len > q->max_record))
        return -EMSGSIZE;
    void *rec;
    int rc = reserve_once(q, len, &rec);
    if (rc == -EAGAIN)
        rc = reserve_waiting(q, len, &rec, timeout_ns);
    if (rc != 0)
        return rc;
    if (len != 0)
        memcpy(rec, msg, len);
    return commit_once(q, len);
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
    wake_writer(q); /* it may be asleep waiting for us to move on */
}

/* The record [at, at + slots), @p len bytes, is ours to look at until
 * spmc_queue_release(). */
static inline void hold(struct spmc_queue *q, uint64_t at, uint64_t slots, size_t len,
                        int orphan)
{
    /* A slot below the head we loaded is written: its line can come (as
     * in day 5's pop_broadcast()). */
    if ((int64_t)(q->seen_head - (at + PREFETCH_AHEAD)) > 0)
        prefetch_read(slot_data(q, at + PREFETCH_AHEAD));
    q->peek_at = at;
    q->peeked = slots;
    q->peek_len = len;
    q->peek_orphan = orphan;
}

/* Share: take the record at j, which dead entry e left unreleased, as
 * ours: say so in `held` (should we die holding it), then name our entry
 * in its first slot's word with one compare-and-swap. 1 if we got it. */
static int take_orphan(struct spmc_queue *q, unsigned e, uint64_t j)
{
    /* Pairs with the release store of head in commit_once(): a
     * record below head is there to be read. */
    uint64_t head = atomic_load_explicit(&q->hdr->head, memory_order_acquire);
    if ((int64_t)(head - j) <= 0 || (int64_t)(head - (j + q->capacity)) > 0)
        return 0; /* not published, or republished since (and published) */
    _Atomic uint64_t *word = slot_word(q, j);
    uint64_t s = atomic_load_explicit(word, memory_order_relaxed);
    if (s == claim_word(j, q->entry_index))
        return 1; /* our entry's last holder had taken it over: ours */
    if (!holds_index(q, s, j, head) && s != claim_word(j, e))
        return 0;
    atomic_store_explicit(&q->entry->held, j, memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(word, &s, claim_word(j, q->entry_index),
                                                 memory_order_relaxed, memory_order_relaxed))
        return 0;
    atomic_fetch_add_explicit(&q->hdr->redelivered, 1, memory_order_relaxed); /* a statistic */
    SPMC_CRASH_POINT("reap:slot");
    return 1;
}

/* Share: the record at j, taken over from a dead reader, is ours: look at
 * it (padding goes straight back: -EAGAIN, nothing to deliver). */
static int deliver_orphan(struct spmc_queue *q, uint64_t j)
{
    /* Pairs with the release store of head in commit_once(). */
    const uint64_t head = atomic_load_explicit(&q->hdr->head, memory_order_acquire);
    const uint64_t h = atomic_load_explicit(header_of(q, j), memory_order_relaxed);
    struct record r;
    if (check_left_record(q, h, j, head, head, &r) != 0)
        return -EPROTO;
    if (r.pad) {
        hand_back(q, j, j + r.slots);
        return -EAGAIN;
    }
    hold(q, j, r.slots, r.len, 1);
    return 0;
}

/* Share, nothing to look at: did a reader die with a record unreleased?
 * Take its lock, then the record; it is ours to deliver now. 1 with
 * *index set if we got one. */
COLD static int rescue_orphan(struct spmc_queue *q, uint64_t *index)
{
    int found = 0;
    for (unsigned e = 0; e < q->max_readers && !found; e++) {
        uint64_t w = atomic_load_explicit(&q->readers[e].word, memory_order_relaxed);
        if (e == q->entry_index || entry_state(w) == SPMC_ENTRY_FREE ||
            lock_byte(q->fd, reader_lock(e)) != 0)
            continue; /* ours, free, or alive */
        SPMC_CRASH_POINT("reap:locked");
        settle_delivered(q, e);
        uint64_t i;
        if (orphan_of(q, e, &i) && take_orphan(q, e, i)) {
            *index = i;
            found = 1;
            /* It (or another) may have left more: our next look that
             * finds nothing checks again, at once, rather than a check
             * interval (or a whole sleep) per message. */
            q->check_now = 1;
        }
        if (!orphan_of(q, e, &i)) /* (ours now, or none) */
            (void)free_dead_entry(q, e);

        SPMC_CRASH_POINT("reap:freed");
        unlock_byte(q->fd, reader_lock(e));
    }
    return found;
}

/* no_message() when the writer has closed: the end of the stream once we
 * have taken everything it pushed, unless a dead reader left a record
 * behind (share). */
COLD static int closed_message(struct spmc_queue *q, uint64_t i)
{
    uint64_t orphan;
    /* The writer's last head store is ordered before closed. */
    uint64_t head = atomic_load_explicit(&q->hdr->head, memory_order_relaxed);
    if ((int64_t)(i - head) < 0)
        return -EAGAIN;
    if (q->fanout == SPMC_SHARE && rescue_orphan(q, &orphan))
        return deliver_orphan(q, orphan);
    return -EPIPE;
}

/* no_message() when it is time to look at the peers: a dead reader's
 * record to deliver (share), or a writer that died? */
COLD static int check_peers(struct spmc_queue *q)
{
    uint64_t orphan;
    /* A broadcast reader that waits stored its cursor before it waited;
     * is that still what the segment says? A peer may have scribbled over
     * it, and a writer that waits for that cursor to move would wait for
     * ever, and so would we. Here, not at every look: this is the waiting
     * reader's rare check. Relaxed: only we store it. */
    if (q->fanout == SPMC_BROADCAST &&
        atomic_load_explicit(&q->entry->cursor, memory_order_relaxed) != q->index)
        publish_cursor(q);
    if (q->fanout == SPMC_SHARE && rescue_orphan(q, &orphan))
        return deliver_orphan(q, orphan);
    /* A writer that died cannot close: everything it published before it
     * died is visible by now (the caller takes one more look). */
    return writer_alive(q) ? -EAGAIN : -EOWNERDEAD;
}

/* Nothing to look at, at index i. End of stream, the writer's death, a
 * dead reader's record to deliver (share), or simply nothing yet? A
 * waiting reader asks at every look, and the answer is nearly always
 * "nothing yet": that answer is inline, the rare ones are not (see
 * peek_once()). */
static HOT_INLINE int no_message(struct spmc_queue *q, uint64_t i)
{
    /* Pairs with the release store of closed in spmc_queue_destroy(). */
    if (unlikely(atomic_load_explicit(&q->hdr->closed, memory_order_acquire)))
        return closed_message(q, i);
    if (likely(!time_to_check(q)))
        return -EAGAIN;
    return check_peers(q);
}

/* Broadcast: no record at index i in the head we know; look at head
 * again. 0 when there is one now. */
static HOT_INLINE int broadcast_empty(struct spmc_queue *q, uint64_t i)
{
    /* Pairs with the release store of head in commit_once(): every
     * record below head is written, header and payload. */
    uint64_t head = atomic_load_explicit(&q->hdr->head, memory_order_acquire);
    if (unlikely((uint64_t)(head - i) > q->capacity))
        return -EPROTO; /* overrun (impossible while our cursor holds) or garbage */
    q->seen_head = head;
    if (head != i)
        return 0;
    pace_after_look(q, 0, 0);
    /* About to wait for record i: ask for the lines of its header and
     * first slot now, and at every look while we wait, as day 5's
     * pop_broadcast() does for its slot. */
    prefetch_read((const void *)header_of(q, i));
    prefetch_read(slot_data(q, i));
    if (q->published != i) /* about to wait: let the writer see us */
        publish_cursor(q);
    return no_message(q, i);
}

/* Broadcast: move past @p n slots (a record released, or padding), and
 * publish the cursor each time it passes a quarter of the ring. */
static HOT_INLINE void advance(struct spmc_queue *q, uint64_t n)
{
    const uint64_t old = q->index;
    q->index = old + n;
    if (((old ^ q->index) & ~q->publish_mask) != 0)
        publish_cursor(q);
}

/* Broadcast: look at our next record, skipping padding. */
static HOT_INLINE int peek_broadcast(struct spmc_queue *q)
{
    int looked = 0;
    uint64_t from = 0; /* where the slots found by our look at head start */
    for (int pads = 0; pads < 2; pads++) {
        const uint64_t i = q->index;
        if (unlikely(i == q->seen_head)) { /* the head we know says empty */
            int rc = broadcast_empty(q, i);
            if (rc != 0)
                return rc;
            looked = 1;
            from = i;
        }
        /* Relaxed: the acquire load of head that showed us a record at i
         * ordered its header before. Loaded once, checked, never again. */
        const uint64_t h = atomic_load_explicit(header_of(q, i), memory_order_relaxed);
        struct record r;
        if (unlikely(check_record(q, h, i, q->seen_head, &r) != 0))
            return -EPROTO;
        if (likely(!r.pad)) {
            if (looked) /* padding before the record is part of it here */
                pace_after_look(q, q->seen_head - from, i + r.slots - from);
            hold(q, i, r.slots, r.len, 0);
            return 0;
        }
        advance(q, r.slots);
    }
    return -EPROTO; /* padding after padding: no writer does that */
}

/* Broadcast: done with the record we looked at. */
static int release_broadcast(struct spmc_queue *q)
{
    SPMC_CRASH_POINT("pop:copied");
    const uint64_t n = q->peeked;
    q->peeked = 0;
    /* Are we still a reader? The writer overwrites a slot only once every
     * reader whose entry it respects has released it; if ours was taken
     * from us (only a broken peer, or a descriptor closed behind our back,
     * can do that to a live reader), what the caller read may be torn: say
     * so. The writer saw our entry freed before it overwrote, so a read
     * of any of its bytes is followed by a look that sees the entry freed:
     * the fence keeps the caller's loads before that look. Our own entry's
     * line, unlike the record's, is not one the writer is filling: the
     * look costs next to nothing. */
    atomic_thread_fence(memory_order_acquire);
    if (unlikely(atomic_load_explicit(&q->entry->word, memory_order_relaxed) != q->entry_word))
        return -EPROTO;
    advance(q, n);
    return 0;
}

/* Share: read_index names entry e as the claimer of the slots up to r:
 * before we move it on, put that claim on record in e's entry, or nothing
 * would say whose it is should e die holding it. (e puts it on record
 * itself right after winning; we may be quicker.) */
static void put_on_record(struct spmc_queue *q, unsigned e, uint64_t r)
{
    _Atomic uint64_t *record = &q->readers[e].claim;
    /* Relaxed: our acquire load of read_index made e's record visible. */
    uint64_t c = atomic_load_explicit(record, memory_order_relaxed);
    if ((c & ON_RECORD) || ((c + record_n(c)) & CPOS) != (r & CPOS))
        return; /* on record already, or e has finished it and moved on */
    /* Relaxed: our release compare-and-swap of read_index publishes it. */
    (void)atomic_compare_exchange_strong_explicit(record, &c, c | ON_RECORD,
                                                  memory_order_relaxed, memory_order_relaxed);
}

/* Share: the records after the first one of a claim at r, whose first
 * record takes n slots: as many as the writer has published (below head,
 * as we last saw it), up to claim_max slots in all (a claim also
 * stays within half the ring, the bound claim_of() trusts), up to the
 * first padding. Their lengths go to claim_lens, after the first record's
 * (set by the caller). Their headers are read before the claim is won, all
 * together (their lines are fetched at once, where one record at a time
 * would wait for each); if it is won, nobody has claimed them, so the
 * writer has not reused their slots since and the headers were its own.
 * The claim's slots in all. */
static uint64_t claim_more(struct spmc_queue *q, uint64_t r, uint64_t n)
{
    const uint64_t most = q->claim_max < q->capacity / 2 ? q->claim_max : q->capacity / 2;
    unsigned k = 1;
    while (n < most && r + n != q->seen_head) {
        /* Relaxed: head's acquire ordered the header. */
        const uint64_t h = atomic_load_explicit(header_of(q, r + n), memory_order_relaxed);
        struct record more;
        if (check_record(q, h, r + n, q->seen_head, &more) != 0 || more.pad ||
            more.slots > most - n)
            break;
        q->claim_lens[k++] = (uint32_t)more.len;
        n += more.slots;
    }
    return n;
}

/* Share: claim the next records the writer has published, up to
 * claim_max slots, with one compare-and-swap on read_index, which then
 * names our entry. Before it, our entry says what we claim and that
 * nothing of it is released yet; after it, that the claim is on record.
 * Should we die in between, a reaper tells won from lost by read_index
 * (see claim_of()). Padding we claim is handed back at once, and we claim
 * on. 0 with the claim's first record held, or -EAGAIN: nothing to claim
 * (then q->index is head), or no agreement after many tries (heavy
 * contention, or a peer scribbling over read_index); -EPROTO: a record
 * header no writer wrote, or read_index more than a lap from head and not
 * moving (a peer wrote it). */
static int claim_batch(struct spmc_queue *q)
{
    _Atomic uint64_t *read_index = &q->hdr->read_index;
    /* Acquire: pairs with the release compare-and-swap of the reader that
     * claimed last, so that we can put its claim on record. */
    uint64_t w = atomic_load_explicit(read_index, memory_order_acquire);
    int fresh = 0, looked = 0;
    uint64_t from = 0; /* where the slots found by our look at head start */
    for (int tries = 0; tries < MAX_RETRIES; tries++) {
        uint64_t avail = (q->seen_head - w) & POS;
        if (avail == 0 || avail > q->capacity) { /* look at head again */
            /* Pairs with the release store of head in commit_once():
             * every record below head is written. */
            q->seen_head = atomic_load_explicit(&q->hdr->head, memory_order_acquire);
            avail = (q->seen_head - w) & POS;
            fresh = 1;
            if (avail == 0) {
                pace_after_look(q, 0, 0);
                q->index = q->claim_start = q->claim_end = q->seen_head;
                return -EAGAIN;
            }
            if (avail > q->capacity) {
                /* More than a lap apart: our w is stale (we were slow and
                 * the others have claimed on), or a peer scribbled. Read
                 * read_index again: if it has not moved, the latter. (Had
                 * the readers claimed past w, the claims would be ordered
                 * before the head we just loaded: they came before the
                 * hand-backs that let the writer go a lap further.) */
                const uint64_t again = atomic_load_explicit(read_index, memory_order_acquire);
                if (again == w)
                    return -EPROTO;
                w = again;
                continue;
            }
        }
        const uint64_t r = q->seen_head - avail;
        if (fresh) { /* the first count after a look (w is not stale) */
            looked = 1;
            from = r;
            fresh = 0;
        }
        /* Relaxed: head's acquire ordered the header. If w is still the
         * read index when we win it below, nobody has claimed the record,
         * so the writer has not reused its slots: the header we read is
         * the one it wrote. */
        const uint64_t h = atomic_load_explicit(header_of(q, r), memory_order_relaxed);
        struct record rec;
        if (check_record(q, h, r, q->seen_head, &rec) != 0) {
            /* A header of another lap: w is stale and the slot reused, or
             * a peer scribbled. If read_index has not moved, the latter. */
            const uint64_t again = atomic_load_explicit(read_index, memory_order_acquire);
            if (again == w)
                return -EPROTO;
            w = again;
            continue;
        }
        q->claim_lens[0] = (uint32_t)rec.len;
        const uint64_t n = rec.pad ? rec.slots : claim_more(q, r, rec.slots);
        const uint64_t last = w >> 52;
        if (last != 0 && last - 1 != q->entry_index && last - 1 < q->max_readers)
            put_on_record(q, (unsigned)(last - 1), r);
        atomic_store_explicit(&q->entry->claim, claim_record(r, n), memory_order_relaxed);
        atomic_store_explicit(&q->entry->done, r, memory_order_relaxed);
        SPMC_CRASH_POINT("pop:hinted");
        /* Release: our claim record, and any we put on record, are visible
         * to whoever sees read_index move on. */
        if (!atomic_compare_exchange_weak_explicit(read_index, &w,
                                                   read_index_word(r + n, q->entry_index),
                                                   memory_order_release, memory_order_acquire))
            continue; /* w now holds the read index another reader moved on */
        SPMC_CRASH_POINT("pop:claimed");
        atomic_store_explicit(&q->entry->claim, claim_record(r, n) | ON_RECORD,
                              memory_order_relaxed);
        q->index = q->claim_start = r;
        q->claim_end = r + n;
        q->claim_next = 0;
        if (likely(!rec.pad)) {
            if (looked) /* padding we claimed before it is part of it here */
                pace_after_look(q, q->seen_head - from, r + rec.slots - from);
            hold(q, r, rec.slots, rec.len, 0);
            return 0;
        }
        /* Padding: released at once, as a record would be. */
        SPMC_CRASH_POINT("pop:padding");
        atomic_store_explicit(&q->entry->done, r + n, memory_order_relaxed);
        hand_back(q, r, r + n);
        q->index = r + n;
        w = read_index_word(r + n, q->entry_index);
    }
    return -EAGAIN; /* heavy contention (or a scribbling peer): retry later */
}

/* Share: our entry was a dead reader's; look at the record it left
 * unreleased. -ENOENT when there is none left. */
COLD static int adopt_next(struct spmc_queue *q)
{
    uint64_t j;
    for (int tries = 0; tries < MAX_RETRIES; tries++) {
        if (!orphan_of(q, q->entry_index, &j))
            return -ENOENT;
        if (take_orphan(q, q->entry_index, j)) {
            int rc = deliver_orphan(q, j);
            if (rc != -EAGAIN)
                return rc;
        }
    }
    return -EAGAIN;
}

/* Share: the next record of our claim, at q->index: its length is the one
 * we read from its header, checked, when we claimed it. */
static int next_in_claim(struct spmc_queue *q)
{
    const size_t len = q->claim_lens[++q->claim_next];
    hold(q, q->index, slots_for(len), len, 0);
    return 0;
}

static int peek_share(struct spmc_queue *q)
{
    if (q->index != q->claim_end)
        return next_in_claim(q);
    if (unlikely(q->adopting)) {
        int rc = adopt_next(q);
        if (rc != -ENOENT)
            return rc;
        q->adopting = 0;
    }
    int rc = claim_batch(q);
    if (rc != 0)
        return rc == -EAGAIN ? no_message(q, q->index) : rc;
    return 0;
}

/* Share: done with the record we looked at: released. Its slots go back
 * with the claim's last release, all of the claim's together (one burst of
 * stores, as in day 5's pop_share()). */
static int release_share(struct spmc_queue *q)
{
    SPMC_CRASH_POINT("pop:copied");
    const uint64_t at = q->peek_at, n = q->peeked;
    q->peeked = 0;
    if (q->peek_orphan) {
        hand_back(q, at, at + n);
        return 0;
    }
    q->index = at + n;
    /* Delivered: should we die from here on, it is not delivered again. */
    atomic_store_explicit(&q->entry->done, q->index, memory_order_relaxed);
    SPMC_CRASH_POINT("pop:delivered");
    if (q->index == q->claim_end)
        hand_back(q, q->claim_start, q->claim_end);
    return 0;
}

/* The writer's process is gone, so all its stores are visible now: one
 * more look, for a record it published just before it died. */
COLD static int recheck_after_writer_death(struct spmc_queue *q)
{
    int again = q->fanout == SPMC_BROADCAST ? peek_broadcast(q) : peek_share(q);
    return again == 0 || again == -EPIPE || again == -EPROTO ? again : -EOWNERDEAD;
}

/* One look for a record: spmc_queue_try_peek() once the handle is checked.
 * Inline in the wait loops too, down to the answer "nothing yet": on our
 * test machine the round trip of `--latency` was a fifth longer with parts
 * of the look out of line (measured, not explained: see day5/README.md,
 * errata). A record looked at and not released is looked at again. */
static HOT_INLINE int peek_once(struct spmc_queue *q)
{
    if (q->peeked != 0)
        return 0;
    int rc = q->fanout == SPMC_BROADCAST ? peek_broadcast(q) : peek_share(q);
    return unlikely(rc == -EOWNERDEAD) ? recheck_after_writer_death(q) : rc;
}

static inline int reader_ok(const struct spmc_queue *q)
{
    return q != NULL && q->role == SPMC_READER && q->epoch == process_epoch;
}

int spmc_queue_try_peek(struct spmc_queue *q, const void **rec, size_t *len)
{
    if (unlikely(!reader_ok(q) || rec == NULL || len == NULL))
        return -EINVAL;
    int rc = peek_once(q);
    if (rc == 0) {
        *rec = slot_data(q, q->peek_at);
        *len = q->peek_len;
    }
    return rc;
}

/* Will the next look at a record look at head? Only then is there a reason
 * to pace. */
static inline int looks_next(const struct spmc_queue *q)
{
    if (q->peeked != 0)
        return 0;
    if (q->fanout == SPMC_BROADCAST)
        return q->index == q->seen_head;
    return q->index == q->claim_end && q->seen_head == q->index;
}

/* Look, waiting while there is nothing: what peek() and pop() share. */
static int peek_wait(struct spmc_queue *q, int64_t timeout_ns)
{
    if (q->pace_ns != 0 && timeout_ns != 0 && looks_next(q)) {
        /* A writer that has filled the ring waits for our cursor: publish
         * it before we idle. */
        if (q->fanout == SPMC_BROADCAST && q->published != q->index)
            publish_cursor(q);
        pace(q);
    }
    int rc = peek_once(q);
    if (rc != -EAGAIN)
        return rc;
    struct waiter w;
    wait_start(&w, q, timeout_ns, SPMC_SLICE_NS);
    while ((rc = peek_once(q)) == -EAGAIN && (rc = wait_more(q, &w)) == 0)
        ;
    wait_end(&w);
    return rc;
}

int spmc_queue_peek(struct spmc_queue *q, const void **rec, size_t *len, int64_t timeout_ns)
{
    if (unlikely(!reader_ok(q) || rec == NULL || len == NULL))
        return -EINVAL;
    int rc = peek_wait(q, timeout_ns);
    if (rc == 0) {
        *rec = slot_data(q, q->peek_at);
        *len = q->peek_len;
    }
    return rc;
}

static int release(struct spmc_queue *q)
{
    return q->fanout == SPMC_BROADCAST ? release_broadcast(q) : release_share(q);
}

int spmc_queue_release(struct spmc_queue *q)
{
    if (unlikely(!reader_ok(q) || q->peeked == 0))
        return -EINVAL;
    return release(q);
}

/* The record we hold, copied into @p buf and released: its length. */
static long copy_out(struct spmc_queue *q, void *buf, size_t size)
{
    const size_t len = q->peek_len;
    if (unlikely(len > size))
        return -EMSGSIZE; /* it stays ours, and next */
    if (len != 0)
        memcpy(buf, slot_data(q, q->peek_at), len);
    int rc = release(q);
    return rc != 0 ? rc : (long)len;
}

long spmc_queue_try_pop(struct spmc_queue *q, void *buf, size_t size)
{
    if (unlikely(!reader_ok(q) || (buf == NULL && size != 0)))
        return -EINVAL;
    int rc = peek_once(q);
    return rc != 0 ? rc : copy_out(q, buf, size);
}

long spmc_queue_pop(struct spmc_queue *q, void *buf, size_t size, int64_t timeout_ns)
{
    if (unlikely(!reader_ok(q) || (buf == NULL && size != 0)))
        return -EINVAL;
    int rc = peek_wait(q, timeout_ns);
    return rc != 0 ? rc : copy_out(q, buf, size);
}

/* ===================================================================== */
/* Looking at a queue                                                      */
/* ===================================================================== */

int spmc_queue_stats(const struct spmc_queue *q, struct spmc_stats *st)
{
    if (q == NULL || q->hdr == NULL || st == NULL || !owned_here(q))
        return -EINVAL;
    const struct spmc_shm_header *h = q->hdr;
    unsigned readers = 0;
    for (unsigned e = 0; e < q->max_readers; e++) {
        uint64_t w = atomic_load_explicit(&q->readers[e].word, memory_order_relaxed);
        if (entry_state(w) == SPMC_ENTRY_ACTIVE &&
            ((q->role == SPMC_READER && e == q->entry_index) ||
             held_elsewhere(q->fd, reader_lock(e))))
            readers++;
    }
    /* All relaxed: counters for people, not for synchronisation. */
    *st = (struct spmc_stats){
        .fanout = q->fanout,
        .max_record = q->max_record,
        .capacity = q->capacity,
        .max_readers = q->max_readers,
        .readers = readers,
        .head = atomic_load_explicit(&h->head, memory_order_relaxed),
        .closed = atomic_load_explicit(&h->closed, memory_order_relaxed) != 0,
        .writer_alive = q->role == SPMC_WRITER || writer_alive(q),
        .reaped = atomic_load_explicit(&h->reaped, memory_order_relaxed),
        .redelivered = atomic_load_explicit(&h->redelivered, memory_order_relaxed),
        .sleeps = q->sleeps,
        .wakes = q->wakes,
    };
    return 0;
}

int spmc_queue_owner(const char *name, int *pid)
{
    if (pid == NULL)
        return -EINVAL;
    int rc = check_name(name);
    if (rc != 0)
        return rc;
    int fd = shm_open(name, O_RDONLY | O_NONBLOCK, 0); /* a FIFO must not block us */
    if (fd < 0)
        return -errno;
    int writer_pid;
    if (!is_our_queue(fd, &writer_pid)) {
        rc = -EPROTO;
    } else if (held_elsewhere(fd, WRITER_LOCK)) {
        *pid = writer_pid;
        rc = 0;
    } else {
        rc = -ESRCH;
    }
    close(fd);
    return rc;
}

/* ===================================================================== */
/* Tearing down                                                            */
/* ===================================================================== */

int spmc_queue_destroy(struct spmc_queue *q)
{
    if (q == NULL || q->hdr == NULL)
        return -EINVAL;
    if (!owned_here(q)) { /* the parent's handle in a forked child */
        unmap_segment(q->hdr, q->map_size);
        memset(q, 0, sizeof *q);
        q->fd = -1;
        return 0;
    }
    int holding = 0; /* a reader leaving a record undelivered */
    if (q->role == SPMC_WRITER) {
        /* Pairs with the acquire loads of closed in no_message() and join(). */
        atomic_store_explicit(&q->hdr->closed, 1, memory_order_release);
        SPMC_CRASH_POINT("destroy:closed");
        /* Every sleeping reader wakes, sees closed, and ends (-EPIPE) once
         * drained. Unconditionally: a reader that read the word before our
         * change does not sleep, one that read it after sees closed. */
        wake(q, &q->hdr->readers_wake, INT_MAX, 0, NULL);
        (void)unlink_if_same(q->name, q->fd);
        SPMC_CRASH_POINT("destroy:unlinked");
    } else {
        uint64_t left = 0;
        holding = q->fanout == SPMC_SHARE &&
                      (q->index != q->claim_end || (q->peeked != 0 && q->peek_orphan) ||
                       (q->adopting && orphan_of(q, q->entry_index, &left)));
        if (q->fanout == SPMC_SHARE && q->index != q->claim_end)
            hand_back(q, q->claim_start, q->index); /* the ones we delivered */
        if (!holding) {
            release_entry(q);
            SPMC_CRASH_POINT("destroy:freed");
        }
    }
    /* (A reader leaving with a record it never released keeps its entry:
     * once our lock is gone it is a dead reader's, and the next reader to
     * look delivers it: wake one, should they all be asleep.) */
    forget_fd(q->fd);
    close(q->fd); /* drops our lock */
    if (holding)
        wake_readers(q);
    unmap_segment(q->hdr, q->map_size);
    memset(q, 0, sizeof *q);
    q->fd = -1;
    return 0;
}
