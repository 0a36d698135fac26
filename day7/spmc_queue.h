/**
 * @file day7/spmc_queue.h
 * @brief A single-producer, multi-consumer queue in POSIX shared memory
 *        that survives crashed and stopped peers, stale segments, a full
 *        /dev/shm and hostile segment contents, and whose waiters sleep in
 *        the kernel instead of spinning.
 *
 * One writer process creates the queue; up to `max_readers` reader
 * processes attach to it by name, at any time, and detach when they like.
 * The fan-out mode is chosen at creation and recorded in the header:
 *
 * - **broadcast** (SPMC_BROADCAST): every reader receives every message, in
 *   order, from the moment it attached. Each reader publishes its cursor in
 *   its entry of the reader table; the writer never overwrites a slot that
 *   a live reader has not read (the slowest live reader holds it back).
 * - **work-sharing** (SPMC_SHARE): each message goes to exactly one reader.
 *   A reader claims up to `claim_max` messages with one compare-and-swap on
 *   the shared read index, after recording the claim in its table entry;
 *   it returns them one pop at a time, counts each in its entry, and hands
 *   their slots back together once it has copied the last out.
 *
 * **Liveness.** Whether a peer is alive is decided by the kernel, never by
 * a pid: the writer holds an open-file-description lock (F_OFD_SETLK) on
 * byte 0 of the segment's file, and each reader holds one on the byte of
 * its table entry, for as long as its handle is open. The kernel drops the
 * lock when the process dies, whatever PID namespace the process and the
 * observer are in. A stopped process still holds its locks: it is alive.
 *
 * **Crashes.** A dead broadcast reader is dropped from the table when it
 * holds the writer back. The messages of a work-sharing claim that a reader
 * had not delivered when it died (or left) are delivered again, to another
 * reader (or republished by the writer): a message is returned by pop()
 * exactly once, whoever dies. Readers of a writer that died drain what it published
 * and then get -EOWNERDEAD. A queue whose writer died is removed by the next
 * spmc_queue_create() of its name; nothing else is ever removed.
 *
 * Concurrency: one thread per handle; any number of reader handles, in any
 * processes, pop concurrently with the one writer handle. A handle must not
 * be copied while it is open. A child made by fork() drops the parent's
 * locks at once (so that a dead parent does not look alive for as long as
 * its child lives): it must not use the parent's handles, but may open its
 * own; spmc_queue_destroy() on an inherited handle only unmaps it.
 *
 * **Waiting.** spmc_queue_pop(), spmc_queue_push() and
 * spmc_queue_wait_readers() spin for a few microseconds, then sleep in the
 * kernel on a futex word of the segment until a peer wakes them; try_pop()
 * and try_push() never sleep, and make a system call only to wake a peer
 * that said it sleeps.
 * Every function returns 0 or a negative errno and prints nothing.
 */
#ifndef SPMC_QUEUE_H
#define SPMC_QUEUE_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ===================================================================== */
/* The shared-memory layout                                               */
/* ===================================================================== */

/** First word of every segment: "SPMC" in ASCII. */
#define SPMC_MAGIC 0x434d5053u
/** Layout version of this day's header; an attacher refuses any other. */
#define SPMC_VERSION 7u
/** Value of the ready word once the creator has written the whole header. */
#define SPMC_READY 0x52454459u
/** Cache-line size the layout assumes (recorded in the header). */
#define SPMC_CACHELINE 64u
/** Longest accepted name, leading '/' included (macOS allows 31). */
#define SPMC_NAME_MAX 31
/** Timeout value meaning "wait as long as it takes" (every negative
 *  timeout does: a timeout computed as "deadline - now" must not go below
 *  0 where it means "do not wait"). */
#define SPMC_WAIT_FOREVER (-1)
/** How long attach waits for a creator still writing the header (ns). */
#ifndef SPMC_ATTACH_WAIT_NS
#define SPMC_ATTACH_WAIT_NS 1000000000
#endif
/** Longest a waiter sleeps before it looks at its peers' liveness (ns):
 *  a process that died cannot wake anyone, so a reader asleep on a dead
 *  writer notices within about this long. */
#ifndef SPMC_SLICE_NS
#define SPMC_SLICE_NS 100000000
#endif
/** The same for the writer waiting for room: as short as day 6's rate of
 *  liveness checks, so that a reader that died while the writer slept on
 *  it holds the writer back no longer than on day 6. */
#ifndef SPMC_FULL_SLICE_NS
#define SPMC_FULL_SLICE_NS 10000000
#endif
/** writer_barrier bit: the writer, before it sleeps, makes every registered
 *  process pass a memory barrier (membarrier(2)), so registered readers
 *  skip their fence after giving room back (see wake_writer()). */
#define SPMC_BARRIER_WRITER_SENDS 1u
/** writer_barrier bit: the writer's process is registered for the readers'
 *  barriers and skips its fence after a push; a reader makes every
 *  registered process pass a barrier before it sleeps (see wake_readers()). */
#define SPMC_BARRIER_READERS_SEND 2u
/** Defined from day 7 on: struct spmc_stats counts futex sleeps and wakes. */
#define SPMC_STATS_SLEEPS 1
/** Most messages a work-sharing reader claims at once, unless spmc_options.claim_max says otherwise. */
#ifndef SPMC_CLAIM_DEFAULT
#define SPMC_CLAIM_DEFAULT 256u
#endif
/** Largest spmc_options.claim_max. */
#define SPMC_CLAIM_MAX 256u
/** Reader-table entries of a queue made by spmc_queue_create(). */
#define SPMC_DEFAULT_READERS 16u
/** Largest reader table a queue may have. */
#define SPMC_MAX_READERS 1024u

/** How messages fan out to the readers. */
enum spmc_fanout {
    SPMC_BROADCAST = 1, /**< every reader gets every message */
    SPMC_SHARE = 2,     /**< each message goes to exactly one reader */
};

/** State of a reader-table entry (the low two bits of its word). */
enum spmc_entry_state {
    SPMC_ENTRY_FREE = 0,    /**< unused; a new reader may claim it */
    SPMC_ENTRY_JOINING = 1, /**< claimed, broadcast cursor not yet valid */
    SPMC_ENTRY_ACTIVE = 2,  /**< a reader is attached */
    SPMC_ENTRY_STARTING = 3, /**< broadcast: cursor published (the writer respects it), start not yet confirmed (not counted by spmc_queue_wait_readers()) */
};

/**
 * One reader's entry in the reader table: a cache line of its own, so that
 * readers publishing their cursors do not disturb one another.
 *
 * `word` says who holds the entry and in what state, in one 64-bit word:
 * bits 0-1 the state (enum spmc_entry_state), bits 2-31 a generation
 * counted up at every claim, bits 32-63 the holder's pid (for people
 * reading the table; never used to decide liveness). Only the process that
 * holds the entry's lock changes it, with one compare-and-swap.
 */
struct spmc_shm_reader {
    alignas(SPMC_CACHELINE) _Atomic uint64_t cursor; /**< broadcast: next index this reader takes, published every capacity/4 messages and before it waits */
    _Atomic uint64_t word;                           /**< state, generation and pid: see above */
    _Atomic uint64_t held;                           /**< share: the dead reader's message this reader takes over, or is about to */
    _Atomic uint64_t claim;                          /**< share: this reader's claim, start (mod 2^52) in bits 0-51, length in bits 52-60, bit 61 once it is on record (see claim_batch()) */
    _Atomic uint64_t done;                           /**< share: the claim's messages below this index are delivered */
    _Atomic uint64_t asleep;                         /**< 1 while this reader is counted in the header's readers_asleep (a reaper uncounts a dead one) */
};

/**
 * The header at offset 0 of the shared segment. Written by the creator,
 * `magic` and then `ready` last; read by an attacher only after it has
 * seen `ready == SPMC_READY`.
 *
 * Wire format (all fields native-endian, fixed width):
 *
 * | offset | size | field                                       | written by |
 * |-------:|-----:|---------------------------------------------|------------|
 * |      0 |   48 | magic, version, header_size, cacheline, elem_size, capacity, slot_size, fanout, max_readers, claim_max | creator, once |
 * |     48 |   16 | ready, closed, writer_pid, writer_barrier    | writer     |
 * |     64 |   16 | head, gate (own cache line)                 | writer     |
 * |    128 |    8 | read_index (own cache line)                 | readers (share) |
 * |    192 |   16 | reaped, redelivered (own cache line)        | whoever reaps |
 * |    256 |   28 | readers_wake, writer_wake, readers_asleep, writer_asleep, writer_fences (own cache line) | both |
 * |    320 | 64 x max_readers | reader table                     | readers    |
 * |    ...  | capacity x slot_size, rounded up to a line | slots: the payload | writer |
 * |    ...  | capacity x 8 | hand-back words, one per slot; a claim's first slot's carries its link | readers (share) |
 *
 * The writer publishes every message by storing `head`. The 64-bit
 * hand-back word of the slot of message i (work-sharing) says, this lap:
 * more than `i + capacity`, a link `end + capacity`, "the messages from i
 * up to end are copied out, their slots free" (stored by the reader that
 * claimed them from i, by a reaper for a dead one, or by a reader that took
 * message i over: end = i + 1); `i + capacity` "message i, left undelivered
 * by a dead reader, republished by the writer as message i + capacity"; bit
 * 63 set, an entry number in bits 52-61 and `(i + 1) mod 2^52` in bits
 * 0-51: "message i, left undelivered by a dead reader, taken over by that
 * entry's reader"; anything less than `i + capacity`, a value of an
 * earlier lap: none of these yet. The writer follows the links from word
 * to word; the words of a claim's other slots are left alone.
 * `read_index` holds the next position to claim mod 2^52 and, in bits
 * 52-63, 1 + the entry that claimed last. Indices are free-running 64-bit
 * counters; the slot of index i is `i & (capacity - 1)`.
 *
 * Sleeping: a reader with nothing to pop sleeps on the futex word
 * `readers_wake`, after counting itself in `readers_asleep`; the writer,
 * after every push, looks at that count and only if it is not zero
 * changes the word and wakes them (FUTEX_WAKE). The writer waiting for room
 * or for readers sleeps on `writer_wake` the same way, counted in
 * `writer_asleep`; readers wake it when they give room back, join or
 * leave. The futex words are 32 bits, as the system call wants. Where
 * membarrier(2) works (`writer_barrier`), the side about to sleep sends a
 * barrier so that the other may skip its fence; the writer fences after
 * every push only while it wakes readers often, and says so in
 * `writer_fences` (a reader then sends no barrier).
 * Locks (open file description locks on the segment's file, one byte
 * each): byte 0 is held by the writer, byte 1 + e by the reader of entry e.
 */
struct spmc_shm_header {
    uint32_t magic;          /**< SPMC_MAGIC */
    uint32_t version;        /**< SPMC_VERSION */
    uint32_t header_size;    /**< sizeof(struct spmc_shm_header) */
    uint32_t cacheline;      /**< SPMC_CACHELINE */
    uint64_t elem_size;      /**< payload bytes per message */
    uint64_t capacity;       /**< slots in the ring, a power of two */
    uint32_t slot_size;      /**< bytes from one slot to the next */
    uint32_t fanout;         /**< enum spmc_fanout */
    uint32_t max_readers;    /**< entries in the reader table */
    uint32_t claim_max;      /**< share: most messages a reader claims at once */
    _Atomic uint32_t ready;  /**< SPMC_READY once the header is complete */
    _Atomic uint32_t closed; /**< 1 once the writer has finished */
    _Atomic uint32_t writer_pid; /**< the writer's pid in its own PID namespace (information only) */
    uint32_t writer_barrier; /**< who pays for the sleepers' memory barriers: SPMC_BARRIER_WRITER_SENDS, SPMC_BARRIER_READERS_SEND, both (the usual) or neither (then both sides fence) */
    alignas(SPMC_CACHELINE) _Atomic uint64_t head; /**< next index the writer fills (where a late reader starts) */
    _Atomic uint64_t gate;   /**< broadcast: the highest low point (lowest reader cursor) the writer has relied on; only moves forward (see spmc_queue_attach) */
    alignas(SPMC_CACHELINE) _Atomic uint64_t read_index; /**< share: the next index to claim (mod 2^52, bits 0-51) and 1 + the entry that claimed last (bits 52-63) */
    alignas(SPMC_CACHELINE) _Atomic uint64_t reaped; /**< entries taken back from dead readers, in all */
    _Atomic uint64_t redelivered; /**< share: messages delivered again because their first reader died */
    alignas(SPMC_CACHELINE) _Atomic uint32_t readers_wake; /**< futex word readers sleep on: changed by whoever wakes them */
    _Atomic uint32_t writer_wake;    /**< futex word the writer sleeps on: changed by whoever wakes it */
    _Atomic uint64_t readers_asleep; /**< bits 0-31: readers asleep on readers_wake, or about to be; bits 32-63: how many times one has said so (mod 2^32) */
    _Atomic uint64_t writer_asleep;  /**< the same for the writer and writer_wake */
    _Atomic uint32_t writer_fences;  /**< 1 while the writer fences after every push (it has been waking readers often): a reader about to sleep then needs no barrier (see wake_readers()) */
};

/* ===================================================================== */
/* The handle                                                              */
/* ===================================================================== */

/** Which side of the queue a handle is. */
enum spmc_role {
    SPMC_WRITER = 1, /**< created the queue; pushes */
    SPMC_READER = 2, /**< attached to it; pops */
};

/** Options for spmc_queue_create_opts(), best written with designated
 *  initializers: `{.fanout = SPMC_SHARE, .max_readers = 4}`. */
struct spmc_options {
    enum spmc_fanout fanout; /**< SPMC_BROADCAST or SPMC_SHARE */
    unsigned max_readers;    /**< reader-table entries, 1..SPMC_MAX_READERS */
    unsigned perm;           /**< permission bits of the segment: 0 means 0600; 0660 opens it to the group */
    unsigned claim_max;      /**< share: most messages a reader claims at once, 1..SPMC_CLAIM_MAX; 0 means SPMC_CLAIM_DEFAULT; capacity - 1 at most (less than a whole ring: a larger value is taken as capacity - 1). A reader that stops popping holds the rest of its claim back from the others until it pops again or leaves: choose 1 when each message is long work. */
};

/** A process's handle on a queue. The caller owns the storage; the
 *  functions below fill it in and tear it down. Read-only to the caller
 *  (use spmc_queue_stats()). The cached indices live here, in
 *  process-local memory, never in the shared segment. */
struct spmc_queue {
    struct spmc_shm_header *hdr;     /**< the mapped segment */
    struct spmc_shm_reader *readers; /**< the reader table */
    unsigned char *slots;            /**< first slot */
    _Atomic uint64_t *words;         /**< share: the slots' hand-back words */
    size_t map_size;                 /**< bytes mapped */
    size_t elem_size;                /**< payload bytes (validated copy) */
    size_t slot_size;                /**< slot stride (validated copy) */
    uint64_t capacity;               /**< slots (validated copy) */
    uint64_t mask;                   /**< capacity - 1 */
    unsigned max_readers;            /**< reader-table entries */
    unsigned claim_max;              /**< share: most messages a reader claims at once (validated copy) */
    enum spmc_fanout fanout;         /**< validated copy */
    enum spmc_role role;             /**< writer or reader */
    int fd;                          /**< the segment's file, open while the handle is: it carries our lock */
    uint64_t index;                  /**< writer: next index to fill; reader: next index to take */
    uint64_t limit;                  /**< writer: push freely while index < limit */
    uint64_t gate;                   /**< writer, broadcast: the gate it published last */
    uint64_t published;              /**< reader, broadcast: cursor last published */
    uint64_t publish_mask;           /**< reader, broadcast: publish when (index & mask) == 0 */
    uint64_t seen_head;              /**< reader: the head it loaded last */
    uint64_t pace_ns;                /**< reader: how long spmc_queue_pop() waits before its next look at head (see pace_after_look()) */
    uint64_t claim_start;            /**< reader, share: start of its claim */
    uint64_t claim_end;              /**< reader, share: end of its claim (index..claim_end are its to deliver) */
    struct spmc_shm_reader *entry;   /**< reader: its table entry */
    unsigned entry_index;            /**< reader: which one */
    uint64_t entry_word;             /**< reader, broadcast: our entry's word while it is ours */
    int adopting;                    /**< reader, share: our entry was a dead reader's; deliver what it left first */
    uint64_t idle_polls;             /**< empty or full polls since the last liveness check */
    uint64_t last_check_ns;          /**< when the peers' liveness was last checked */
    int check_now;                   /**< 1 after a sleep, or after we delivered a dead reader's message (it may have left more): look at the peers at the next chance */
    int light;                       /**< reader: skip the fence in wake_writer(); writer: send a barrier before sleeping (SPMC_BARRIER_WRITER_SENDS) */
    int unfenced;                    /**< writer: may skip the fence in wake_readers(); reader: send a barrier before sleeping unless writer_fences says 1 (SPMC_BARRIER_READERS_SEND) */
    int fencing;                     /**< writer: fences after every push for now (its writer_fences) */
    uint32_t quiet_pushes;           /**< writer, fencing: pushes since it last woke a reader */
    uint64_t last_wake_ns;           /**< writer: when it last woke readers while not fencing */
    uint64_t covered[2];             /**< announcements (high half of readers_asleep, of writer_asleep) that this handle's last wake of them covered: no need to wake them again */
    uint64_t sleeps;                 /**< futex waits this handle has made */
    uint64_t wakes;                  /**< futex wakes this handle has made */
    unsigned long epoch;             /**< the process's fork count when the handle was opened (a forked child's copy is stale) */
    char name[SPMC_NAME_MAX + 1];    /**< the segment's name */
};

/** What spmc_queue_stats() reports. */
struct spmc_stats {
    enum spmc_fanout fanout; /**< the queue's fan-out mode */
    size_t elem_size;        /**< payload bytes per message */
    uint64_t capacity;       /**< slots in the ring */
    unsigned max_readers;    /**< entries in the reader table */
    unsigned readers;        /**< readers attached and alive now (their locks are held) */
    uint64_t head;           /**< messages the writer has published */
    int closed;              /**< 1 once the writer has closed the queue */
    int writer_alive;        /**< 1 while the writer holds its lock: its handle is open (0 once it has closed, or died) */
    uint64_t reaped;         /**< reader entries taken back from dead readers, in all */
    uint64_t redelivered;    /**< share: messages delivered again because their first reader died */
    uint64_t sleeps;         /**< this handle's sleeps in the kernel (FUTEX_WAIT calls) */
    uint64_t wakes;          /**< this handle's wake-up calls (FUTEX_WAKE) */
};

/** Marks a function whose result must be checked (gcc and clang warn). */
#if defined(__GNUC__)
#define SPMC_MUST_CHECK __attribute__((warn_unused_result))
#else
#define SPMC_MUST_CHECK
#endif

/* ===================================================================== */
/* Creating and attaching                                                  */
/* ===================================================================== */

/**
 * Create the queue @p name as its writer, in broadcast mode with
 * SPMC_DEFAULT_READERS reader entries. Same as spmc_queue_create_opts()
 * with NULL options.
 *
 * @param q         handle to fill in
 * @param name      "/name": leading '/', no other '/', not "/." or "/..",
 *                  at most SPMC_NAME_MAX
 * @param elem_size bytes per message, > 0
 * @param capacity  slots in the ring, a power of two
 * @retval 0             created; @p q is a writer handle
 * @retval -EINVAL       bad name, zero size, capacity not a power of two, or
 *                       a segment size that overflows
 * @retval -ENAMETOOLONG name longer than SPMC_NAME_MAX
 * @retval -EEXIST       the name is taken (see spmc_queue_create_opts())
 * @retval -EAGAIN       another process held the new segment's lock for
 *                       a second (it was inspecting the name); try again
 * @retval -ENOSPC       /dev/shm has no room for the segment
 * @retval -ENOMEM       the segment cannot be sized or mapped
 * @retval -EACCES       permission denied by the system
 * @retval -EMFILE       other negative errno values of shm_open(), ftruncate()
 *                       or mmap() are passed through unchanged (-EMFILE,
 *                       -ENFILE, ...)
 */
SPMC_MUST_CHECK int spmc_queue_create(struct spmc_queue *q, const char *name,
                                      size_t elem_size, size_t capacity);

/**
 * Create the queue @p name as its writer with a chosen fan-out mode,
 * reader-table size and permissions (0600 unless @p opts says otherwise).
 * The segment's memory is reserved now, so a full /dev/shm fails here and
 * never with SIGBUS later. If the name belongs to a queue of this version
 * whose writer is gone (its lock is free), that segment is removed and
 * made anew; a live writer's queue, a segment still being created, and
 * anything that is not one of our queues are left alone (-EEXIST).
 *
 * @param q         handle to fill in
 * @param name      "/name": leading '/', no other '/', not "/." or "/..",
 *                  at most SPMC_NAME_MAX
 * @param elem_size bytes per message, > 0
 * @param capacity  slots in the ring, a power of two (never rounded)
 * @param opts      fan-out mode, table size, permissions; NULL for defaults
 * @retval 0             created; @p q is a writer handle
 * @retval -EINVAL       bad name, zero size, capacity not a power of two,
 *                       unknown fan-out, max_readers outside
 *                       1..SPMC_MAX_READERS, perm outside 0..0777, or a size
 *                       that overflows
 * @retval -ENAMETOOLONG name longer than SPMC_NAME_MAX
 * @retval -EEXIST       the name belongs to a live writer's queue (see
 *                       spmc_queue_owner()), to a segment being created, or
 *                       to something that is not a queue of this version
 * @retval -EAGAIN       another process held the new segment's lock for
 *                       a second (it was inspecting the name); try again
 * @retval -ENOSPC       /dev/shm has no room for the segment
 * @retval -ENOMEM       the segment cannot be sized or mapped
 * @retval -EACCES       permission denied by the system
 * @retval -EMFILE       other negative errno values of shm_open(), ftruncate()
 *                       or mmap() are passed through unchanged (-EMFILE,
 *                       -ENFILE, ...)
 */
SPMC_MUST_CHECK int spmc_queue_create_opts(struct spmc_queue *q, const char *name,
                                           size_t elem_size, size_t capacity,
                                           const struct spmc_options *opts);

/**
 * Attach to the queue @p name as one of its readers. Waits up to
 * SPMC_ATTACH_WAIT_NS for a creator that is still writing the header, then
 * checks every header field against the segment's real size before it maps
 * the slots, then claims an entry of the reader table (a free one, or one
 * whose reader died).
 *
 * In broadcast mode the reader starts at the writer's current position: it
 * receives the messages pushed after it attached, not those before. In
 * work-sharing mode it takes part in the next claims (and first delivers
 * the message a dead reader of its entry had claimed, if there was one).
 *
 * @param q         handle to fill in
 * @param name      the queue's name
 * @param elem_size expected bytes per message, or 0 to accept the header's
 * @param capacity  expected slots, or 0 to accept the header's
 * @retval 0             attached; @p q is a reader handle
 * @retval -EINVAL       bad name
 * @retval -ENAMETOOLONG name longer than SPMC_NAME_MAX
 * @retval -ENOENT       no segment of that name
 * @retval -ETIMEDOUT    a live creator has not finished the header within
 *                       SPMC_ATTACH_WAIT_NS: try again
 * @retval -EPROTO       not a complete queue of this version (and nobody is
 *                       finishing it): bad magic, version, header size, slot
 *                       size, fan-out, table size, a capacity that is not a
 *                       power of two, sizes that differ from the expected
 *                       ones, or a segment smaller than its header says
 * @retval -ENOSPC       the segment is sparse (its creator did not reserve its
 *                       pages) and /dev/shm has no room left to give them
 * @retval -EUSERS       every reader-table entry is held by a live reader, or
 *                       by a process reaping a dead reader's entry at this
 *                       moment (then trying again later succeeds)
 * @retval -EPIPE        the writer has already closed the queue
 * @retval -EACCES       permission denied by the system
 * @retval -EMFILE       other negative errno values of shm_open(), fstat()
 *                       or mmap() are passed through unchanged
 */
SPMC_MUST_CHECK int spmc_queue_attach(struct spmc_queue *q, const char *name,
                                      size_t elem_size, size_t capacity);

/**
 * Writer: wait until at least @p count live readers are attached. A reader
 * whose process has died does not count (its entry is taken back).
 *
 * @param q          writer handle
 * @param count      readers to wait for, at most the table size
 * @param timeout_ns how long to wait, or SPMC_WAIT_FOREVER
 * @retval 0          that many readers are attached
 * @retval -EINVAL    not a writer handle, or @p count larger than the table
 * @retval -ETIMEDOUT they did not come in time
 */
SPMC_MUST_CHECK int spmc_queue_wait_readers(struct spmc_queue *q, unsigned count,
                                            int64_t timeout_ns);

/* ===================================================================== */
/* Pushing and popping                                                     */
/* ===================================================================== */

/**
 * Writer: copy one message of elem_size bytes into the ring if there is room.
 * In broadcast mode "room" means every live reader has read the slot's
 * previous message; with no reader attached, messages are overwritten
 * freely (nobody is owed them). A reader whose process has died stops
 * counting: when it holds the writer back, its entry is freed (broadcast),
 * or the message it had claimed is republished in place (work-sharing).
 *
 * @param q          writer handle
 * @param msg        the message: elem_size bytes to copy in
 * @retval 0       pushed
 * @retval -EAGAIN the ring is full
 * @retval -EINVAL not a writer handle (or one opened before a fork()), or
 *                 @p msg is NULL
 */
SPMC_MUST_CHECK int spmc_queue_try_push(struct spmc_queue *q, const void *msg);

/**
 * Reader: copy the next message into @p out (elem_size bytes) if there is
 * one: in broadcast mode this reader's next message, in work-sharing mode
 * one message no other reader has been given.
 *
 * @param q          reader handle
 * @param out        where to copy the message: elem_size bytes
 * @retval 0       popped
 * @retval -EAGAIN no message yet
 * @retval -EPIPE  the writer has closed the queue and this reader has
 *                 drained everything it was owed (end of stream)
 * @retval -EOWNERDEAD the writer's process is gone without closing the
 *                 queue, and everything it published has been drained
 * @retval -EPROTO the shared state is impossible (a corrupted segment, or
 *                 a broadcast reader whose entry was taken from it)
 * @retval -EINVAL not a reader handle (or one opened before a fork()), or
 *                 @p out is NULL
 */
SPMC_MUST_CHECK int spmc_queue_try_pop(struct spmc_queue *q, void *out);

/**
 * Writer: push, waiting while the ring is full: spin briefly, then sleep in
 * the kernel until a reader gives room back (or SPMC_WRITER_SLICE_NS has
 * passed: then it looks whether the reader holding it back has died).
 *
 * @param q          writer handle
 * @param msg        the message: elem_size bytes to copy in
 * @param timeout_ns how long to wait, or SPMC_WAIT_FOREVER
 * @retval 0          pushed
 * @retval -ETIMEDOUT still full after @p timeout_ns
 * @retval -EINVAL    not a writer handle, or @p msg is NULL
 */
SPMC_MUST_CHECK int spmc_queue_push(struct spmc_queue *q, const void *msg,
                                    int64_t timeout_ns);

/**
 * Reader: pop, waiting while there is no message: spin briefly, then sleep
 * in the kernel until the writer pushes, closes the queue, or
 * SPMC_READER_SLICE_NS has passed (then it looks whether the writer died).
 *
 * A reader whose looks at the writer's head keep finding batches of
 * messages (a writer streaming faster than it reads, on a ring of 16
 * slots or more) waits a little before its next look, at most a few
 * microseconds, so that it takes the line of head from the writer once
 * per batch, not once per message. A look that finds the queue empty, or
 * one message, ends the pacing: a reader waiting on an idle queue, or
 * taking one message at a time, looks at once. spmc_queue_try_pop()
 * always looks at once.
 *
 * @param q          reader handle
 * @param out        where to copy the message: elem_size bytes
 * @param timeout_ns how long to wait, or SPMC_WAIT_FOREVER
 * @retval 0          popped
 * @retval -EPIPE     end of stream: the writer closed the queue, drained
 * @retval -EOWNERDEAD the writer's process died; everything it published
 *                    has been drained
 * @retval -ETIMEDOUT still nothing after @p timeout_ns
 * @retval -EPROTO    the shared state is impossible (corrupted segment)
 * @retval -EINVAL    not a reader handle, or @p out is NULL
 */
SPMC_MUST_CHECK int spmc_queue_pop(struct spmc_queue *q, void *out,
                                   int64_t timeout_ns);

/* ===================================================================== */
/* Looking at a queue                                                      */
/* ===================================================================== */

/**
 * Counters and state of the queue behind @p q, for tools and tests. The
 * counters live in the shared segment, so a hostile peer can make them say
 * anything; the queue never relies on them.
 *
 * @param q   an open handle, writer or reader
 * @param st  where to store them
 * @retval 0       @p st is filled in
 * @retval -EINVAL @p q is not an open handle, or @p st is NULL
 */
SPMC_MUST_CHECK int spmc_queue_stats(const struct spmc_queue *q, struct spmc_stats *st);

/**
 * Who owns the queue @p name: the pid of its writer, if the writer is alive
 * (holds its lock). The pid is the one the writer has in its own PID
 * namespace: in another container it may name another process or none.
 * For a program that was refused with -EEXIST and wants to say why.
 *
 * @param name  the queue's name
 * @param pid   where to store the live writer's pid
 * @retval 0       @p pid holds the live writer's pid
 * @retval -ESRCH  the queue exists but its writer is gone (stale)
 * @retval -ENOENT no segment of that name
 * @retval -EPROTO the segment is not a complete queue of this version
 * @retval -EINVAL bad name or NULL @p pid
 * @retval -EACCES permission denied by the system
 */
SPMC_MUST_CHECK int spmc_queue_owner(const char *name, int *pid);

/* ===================================================================== */
/* Tearing down                                                            */
/* ===================================================================== */

/**
 * Leave the queue. A writer marks it closed (readers drain what is left,
 * then get -EPIPE), removes its name (if the name is still this queue's)
 * and unmaps; a reader frees its table entry for a later reader and unmaps.
 * Either way the handle's lock goes with it. The handle is zeroed;
 * destroying it again returns -EINVAL. In a child made by fork(), the
 * parent's handle is only unmapped: the queue is not touched.
 *
 * @param q          an open handle, writer or reader
 * @retval 0       done
 * @retval -EINVAL @p q is not an open handle
 */
int spmc_queue_destroy(struct spmc_queue *q);

#ifdef SPMC_CRASH_POINTS
/**
 * Test builds only (compiled with -DSPMC_CRASH_POINTS): called with the
 * name of every crash point the queue passes ("create:locked",
 * "pop:claimed", ...), so that a test can kill or stop the process there.
 * NULL (the default) does nothing.
 */
extern void (*spmc_crash_hook)(const char *point);
/**
 * Test builds only: when above 0, a waiter goes to sleep at once, without
 * spinning, and each sleep lasts up to this long (ns) instead of a slice.
 * A wake-up lost by the queue then shows as a timeout, not as a delay.
 */
extern int64_t spmc_test_sleep_ns;
/**
 * Test builds only: the writer's fencing mode (see wake_readers() in
 * spmc_queue.c). 0 (the default): its own rule; 1: it fences from the first
 * push that wakes a reader on; 2: it never fences, so every reader about to
 * sleep sends a barrier; 3: it starts or stops fencing at every wake.
 */
extern int spmc_test_fence_mode;
#endif

#endif /* SPMC_QUEUE_H */
