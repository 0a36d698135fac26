/**
 * @file day5/spmc_queue.h
 * @brief Day 5: one producer, many consumers, in two fan-out modes, over a
 *        power-of-two ring whose writer publishes its position.
 *
 * One writer process creates the queue; up to `max_readers` reader
 * processes attach to it by name, at any time, and detach when they like.
 * The fan-out mode is chosen at creation and recorded in the header:
 *
 * - **broadcast** (SPMC_BROADCAST): every reader receives every message, in
 *   order. Each reader owns an entry of the reader table in the header and
 *   publishes its cursor there; the writer never overwrites a slot that an
 *   attached reader has not read (the slowest reader holds it back). A
 *   reader that attaches late starts at the writer's current position.
 * - **work-sharing** (SPMC_SHARE): each message goes to exactly one reader.
 *   A reader claims the next messages, up to `claim_max` of them, with one
 *   compare-and-swap on a shared read index, returns them one pop at a
 *   time, and hands their slots back to the writer together once it has
 *   copied the last out. A reader that stops popping holds the rest of its
 *   claim; `claim_max = 1` makes it hold only the message it copies.
 *
 * A slot is the payload alone, rounded up to whole cache lines. The writer
 * publishes every message by storing `head` with release after the
 * payload; readers load it with acquire, and only when the head they know
 * is used up. In work-sharing mode each slot also has a 64-bit hand-back
 * word, in an array after the slots. A reader that has copied out the
 * messages [start, end) of its claim stores `end + capacity` into the word
 * of start's slot (with release), a link: "the slots of messages start +
 * capacity up to end + capacity are free". The writer follows the links
 * from word to word (acquire loads) and writes message i only once a link
 * has reached past it; the words of a claim's other slots keep values of
 * earlier laps, which are no links (a work-sharing ring has two slots at
 * least). Indices are free-running 64-bit counters; the slot of index i is
 * `i & (capacity - 1)`.
 *
 * Concurrency: one thread per handle. Any number of reader handles (in any
 * processes) may pop concurrently with the one writer handle.
 *
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
#define SPMC_VERSION 5u
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

/** State of a reader-table entry. */
enum spmc_entry_state {
    SPMC_ENTRY_FREE = 0,    /**< unused; a new reader may claim it */
    SPMC_ENTRY_JOINING = 1, /**< claimed, cursor not yet valid */
    SPMC_ENTRY_ACTIVE = 2,  /**< a reader is attached; cursor is valid */
    SPMC_ENTRY_STARTING = 3, /**< broadcast: cursor published (the writer respects it), start not yet confirmed (not counted by spmc_queue_wait_readers()) */
    SPMC_ENTRY_LEAVING = 4, /**< share: its reader left with messages of its claim not yet delivered, cursor..claim_end; the other readers take them, the last one frees the entry */
};

/**
 * One reader's entry in the reader table: a cache line of its own, so that
 * readers publishing their cursors do not disturb one another.
 */
struct spmc_shm_reader {
    alignas(SPMC_CACHELINE) _Atomic uint64_t cursor; /**< broadcast: next index this reader takes, published every capacity/4 messages and before it waits */
    _Atomic uint32_t state;                          /**< enum spmc_entry_state */
    uint32_t reserved;                               /**< zero */
    _Atomic uint64_t claim_end;                      /**< share, state LEAVING: end of the messages left behind (cursor is the next one) */
};

/**
 * The header at offset 0 of the shared segment. Written by the creator,
 * `ready` last; read by an attacher only after it has seen
 * `ready == SPMC_READY`.
 *
 * Wire format (all fields native-endian, fixed width):
 *
 * | offset | size | field                                       | written by |
 * |-------:|-----:|---------------------------------------------|------------|
 * |      0 |   48 | magic, version, header_size, cacheline, elem_size, capacity, slot_size, fanout, max_readers, claim_max | creator, once |
 * |     48 |   16 | ready, closed, reserved                     | writer     |
 * |     64 |   16 | head, gate (own cache line)                 | writer     |
 * |    128 |   16 | read_index, leaving (own cache line)        | readers (share) |
 * |    192 | 64 x max_readers | reader table                     | readers    |
 * | 192 + 64 x max_readers | capacity x slot_size, rounded up to a line | slots: the payload | writer |
 * | after the slots | capacity x 8 | hand-back words, one per slot; a claim's first slot's carries its link | readers (share) |
 *
 * Nothing lies between the reader table and the slots, in either mode: a
 * work-sharing reader hands a slot back through its word after the slots.
 */
struct spmc_shm_header {
    uint32_t magic;          /**< SPMC_MAGIC */
    uint32_t version;        /**< SPMC_VERSION */
    uint32_t header_size;    /**< sizeof(struct spmc_shm_header) */
    uint32_t cacheline;      /**< SPMC_CACHELINE */
    uint64_t elem_size;      /**< payload bytes per message */
    uint64_t capacity;       /**< slots in the ring, a power of two (2 or more in share mode) */
    uint32_t slot_size;      /**< bytes from one slot to the next */
    uint32_t fanout;         /**< enum spmc_fanout */
    uint32_t max_readers;    /**< entries in the reader table */
    uint32_t claim_max;      /**< share: most messages a reader claims at once */
    _Atomic uint32_t ready;  /**< SPMC_READY once the header is complete */
    _Atomic uint32_t closed; /**< 1 once the writer has finished */
    uint64_t reserved2;      /**< zero */
    alignas(SPMC_CACHELINE) _Atomic uint64_t head; /**< next index the writer fills (where a late reader starts) */
    _Atomic uint64_t gate;   /**< broadcast: the highest low point (lowest reader cursor) the writer has relied on; only moves forward (see spmc_queue_attach) */
    alignas(SPMC_CACHELINE) _Atomic uint64_t read_index; /**< share: next index a reader claims */
    _Atomic uint64_t leaving; /**< share: entries in state SPMC_ENTRY_LEAVING */
};

/* ===================================================================== */
/* The handle                                                              */
/* ===================================================================== */

/** Which side of the queue a handle is. */
enum spmc_mode {
    SPMC_WRITER = 1, /**< created the queue; pushes */
    SPMC_READER = 2, /**< attached to it; pops */
};

/** Options for spmc_queue_create_opts(). */
struct spmc_options {
    enum spmc_fanout fanout; /**< SPMC_BROADCAST or SPMC_SHARE */
    unsigned max_readers;    /**< reader-table entries, 1..SPMC_MAX_READERS */
    unsigned claim_max;      /**< share: most messages a reader claims at once, 1..SPMC_CLAIM_MAX; 0 means SPMC_CLAIM_DEFAULT. A reader that stops popping holds the rest of its claim back from the others until it pops again or leaves: choose 1 when each message is long work. */
};

/** A process's handle on a queue. The caller owns the storage; the
 *  functions below fill it in and tear it down. Read-only to the caller.
 *  The cached indices live here, in process-local memory, never in the
 *  shared segment. */
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
    enum spmc_mode mode;             /**< writer or reader */
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
    char name[SPMC_NAME_MAX + 1];    /**< the segment's name */
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
 * with those options.
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
 * @retval -EEXIST       a segment of that name exists already
 * @retval -ENOSPC       /dev/shm has no room for the segment
 * @retval -ENOMEM       the segment cannot be sized or mapped
 * @retval -EACCES       permission denied by the system
 * @retval -EMFILE       other negative errno values of shm_open(), ftruncate()
 *                       or mmap() are passed through unchanged (-EMFILE,
 *                       -ENFILE, -ENOSPC, ...)
 */
SPMC_MUST_CHECK int spmc_queue_create(struct spmc_queue *q, const char *name,
                                      size_t elem_size, size_t capacity);

/**
 * Create the queue @p name as its writer with a chosen fan-out mode and
 * reader-table size. The segment is made with mode 0600.
 *
 * @param q         handle to fill in
 * @param name      "/name": leading '/', no other '/', not "/." or "/..",
 *                  at most SPMC_NAME_MAX
 * @param elem_size bytes per message, > 0
 * @param capacity  slots in the ring, a power of two (never rounded), 2 or
 *                  more for SPMC_SHARE
 * @param opts      fan-out mode and table size; NULL for the defaults
 * @retval 0             created; @p q is a writer handle
 * @retval -EINVAL       bad name, zero size, capacity not a power of two
 *                       (or 1 in work-sharing mode: see the file comment),
 *                       unknown fan-out, max_readers outside
 *                       1..SPMC_MAX_READERS, or a size that overflows
 * @retval -ENAMETOOLONG name longer than SPMC_NAME_MAX
 * @retval -EEXIST       a segment of that name exists already
 * @retval -ENOSPC       /dev/shm has no room for the segment
 * @retval -ENOMEM       the segment cannot be sized or mapped
 * @retval -EACCES       permission denied by the system
 * @retval -EMFILE       other negative errno values of shm_open(), ftruncate()
 *                       or mmap() are passed through unchanged (-EMFILE,
 *                       -ENFILE, -ENOSPC, ...)
 */
SPMC_MUST_CHECK int spmc_queue_create_opts(struct spmc_queue *q, const char *name,
                                           size_t elem_size, size_t capacity,
                                           const struct spmc_options *opts);

/**
 * Attach to the queue @p name as one of its readers. Waits up to
 * SPMC_ATTACH_WAIT_NS for a creator that is still writing the header, then
 * checks every header field against the segment's real size before it maps
 * the slots, then claims a free entry of the reader table.
 *
 * In broadcast mode the reader starts at the writer's current position: it
 * receives the messages pushed after it attached, not those before. (The
 * writer may be in the middle of a push; the join protocol makes sure the
 * writer sees the new cursor before it can overwrite anything the reader
 * expects.) In work-sharing mode it takes part in the next claims.
 *
 * @param q         handle to fill in
 * @param name      the queue's name
 * @param elem_size expected bytes per message, or 0 to accept the header's
 * @param capacity  expected slots, or 0 to accept the header's
 * @retval 0             attached; @p q is a reader handle
 * @retval -EINVAL       bad name
 * @retval -ENAMETOOLONG name longer than SPMC_NAME_MAX
 * @retval -ENOENT       no segment of that name
 * @retval -EPROTO       not a complete queue of this version: bad magic,
 *                       version, header size, slot size, fan-out, table size,
 *                       a capacity that is not a power of two (or 1 in
 *                       work-sharing mode), sizes that
 *                       differ from the expected ones, or a segment smaller
 *                       than its header says
 * @retval -EUSERS       every reader-table entry is taken
 * @retval -EPIPE        the writer has already closed the queue
 * @retval -EACCES       permission denied by the system
 * @retval -EMFILE       other negative errno values of shm_open(), fstat()
 *                       or mmap() are passed through unchanged
 */
SPMC_MUST_CHECK int spmc_queue_attach(struct spmc_queue *q, const char *name,
                                      size_t elem_size, size_t capacity);

/**
 * Writer: wait until at least @p count readers are attached.
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
 * In broadcast mode "room" means every attached reader has read the slot's
 * previous message; with no reader attached, messages are overwritten
 * freely (nobody is owed them).
 *
 * @param q          writer handle
 * @param msg        the message: elem_size bytes to copy in
 * @retval 0       pushed
 * @retval -EAGAIN the ring is full
 * @retval -EINVAL not a writer handle, or @p msg is NULL (nothing is pushed)
 */
SPMC_MUST_CHECK int spmc_queue_try_push(struct spmc_queue *q, const void *msg);

/**
 * Reader: copy the next message into @p out (elem_size bytes) if there is
 * one: in broadcast mode this reader's next message, in work-sharing mode
 * the oldest message no reader has claimed.
 *
 * @param q          reader handle
 * @param out        where to copy the message: elem_size bytes
 * @retval 0       popped
 * @retval -EAGAIN no message yet
 * @retval -EPIPE  the writer has closed the queue and this reader has
 *                 drained everything it was owed (end of stream)
 * @retval -EPROTO the shared state is impossible (corrupted segment)
 * @retval -EINVAL not a reader handle, or @p out is NULL (no message is taken)
 */
SPMC_MUST_CHECK int spmc_queue_try_pop(struct spmc_queue *q, void *out);

/**
 * Writer: push, waiting while the ring is full: spin briefly, then yield
 * the CPU, then sleep in short steps, so that more threads than cores still
 * make progress.
 *
 * @param q          writer handle
 * @param msg        the message: elem_size bytes to copy in
 * @param timeout_ns how long to wait, or SPMC_WAIT_FOREVER
 * @retval 0          pushed
 * @retval -ETIMEDOUT still full after @p timeout_ns
 * @retval -EINVAL    not a writer handle, or @p msg is NULL (nothing is pushed)
 */
SPMC_MUST_CHECK int spmc_queue_push(struct spmc_queue *q, const void *msg,
                                    int64_t timeout_ns);

/**
 * Reader: pop, waiting while there is no message (spin, yield, then sleep).
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
 * @retval -ETIMEDOUT still nothing after @p timeout_ns
 * @retval -EPROTO    the shared state is impossible (corrupted segment)
 * @retval -EINVAL    not a reader handle, or @p out is NULL (no message is taken)
 */
SPMC_MUST_CHECK int spmc_queue_pop(struct spmc_queue *q, void *out,
                                   int64_t timeout_ns);

/* ===================================================================== */
/* Tearing down                                                            */
/* ===================================================================== */

/**
 * Leave the queue. A writer marks it closed (readers drain what is left,
 * then get -EPIPE), unmaps it and removes its name; a reader frees its
 * table entry for a later reader and unmaps. The handle is zeroed;
 * destroying it again returns -EINVAL.
 *
 * @param q          an open handle, writer or reader
 * @retval 0       done
 * @retval -EINVAL @p q is not an open handle
 */
int spmc_queue_destroy(struct spmc_queue *q);

#endif /* SPMC_QUEUE_H */
