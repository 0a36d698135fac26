/**
 * @file day2/spmc_queue.h
 * @brief Day 2: an API and a header that writer and reader agree on.
 *
 * One writer process creates the queue; one reader process attaches to it by
 * name. Messages have a fixed size (the element size). The buffer holds
 * `capacity` messages in all: there is no wrap-around yet, so once the
 * writer has pushed `capacity` messages the queue is used up (day 3 turns it
 * into a ring).
 *
 * Concurrency: this day is racy by design. The header's fields are plain
 * integers that two processes read and write at the same time; nothing
 * orders the writer's copy of a message before its update of `head` as
 * seen by the reader. It works on x86 most of the time, which is the worst
 * kind of working. Day 3 makes every shared field a C11 atomic.
 *
 * Every function returns 0 or a negative errno and prints nothing.
 */
#ifndef SPMC_QUEUE_H
#define SPMC_QUEUE_H

#include <stddef.h>
#include <stdint.h>

/* ===================================================================== */
/* The shared-memory layout                                               */
/* ===================================================================== */

/** First word of every segment: "SPMC" in ASCII. */
#define SPMC_MAGIC 0x434d5053u
/** Layout version of this day's header; an attacher refuses any other. */
#define SPMC_VERSION 2u
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

/**
 * The header at offset 0 of the shared segment; the message slots follow at
 * offset `header_size`. Written by the creator, `ready` last; read by the
 * attacher only after it has seen `ready == SPMC_READY` (but with plain
 * fields nothing forces the order: day 3 fixes that).
 */
struct spmc_shm_header {
    uint32_t magic;             /**< SPMC_MAGIC */
    uint32_t version;           /**< SPMC_VERSION */
    uint32_t header_size;       /**< sizeof(struct spmc_shm_header) */
    uint32_t cacheline;         /**< SPMC_CACHELINE */
    uint64_t elem_size;         /**< bytes per message */
    uint64_t capacity;          /**< message slots */
    uint32_t ready;             /**< SPMC_READY once the header is complete */
    uint32_t readers;           /**< 1 while a reader is attached */
    uint32_t closed;            /**< 1 once the writer has finished */
    uint32_t reserved;          /**< zero */
    uint64_t head;              /**< messages pushed so far */
    uint64_t tail;              /**< messages popped so far */
};

/* ===================================================================== */
/* The handle                                                              */
/* ===================================================================== */

/** Which side of the queue a handle is. */
enum spmc_mode {
    SPMC_WRITER = 1, /**< created the queue; pushes */
    SPMC_READER = 2, /**< attached to it; pops */
};

/** A process's handle on a queue. The caller owns the storage; the
 *  functions below fill it in and tear it down. Read-only to the caller. */
struct spmc_queue {
    struct spmc_shm_header *hdr; /**< the mapped segment */
    unsigned char *slots;        /**< first message slot */
    size_t map_size;             /**< bytes mapped */
    size_t elem_size;            /**< bytes per message (validated copy) */
    uint64_t capacity;           /**< slots (validated copy) */
    enum spmc_mode mode;         /**< writer or reader */
    char name[SPMC_NAME_MAX + 1]; /**< the segment's name */
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
 * Create the queue @p name as its writer: a new segment of mode 0600 holding
 * the header and @p capacity slots of @p elem_size bytes.
 *
 * @param q         handle to fill in
 * @param name      "/name": leading '/', no other '/', not "/." or "/..",
 *                  at most SPMC_NAME_MAX
 * @param elem_size bytes per message, > 0
 * @param capacity  messages the queue can ever hold, > 0
 * @retval 0             created; @p q is a writer handle
 * @retval -EINVAL       bad name, zero size or capacity, or a segment size
 *                       that overflows
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
 * Attach to the queue @p name as its reader. Waits up to
 * SPMC_ATTACH_WAIT_NS for a creator that is still writing the header, then
 * checks every header field against the segment's real size before it maps
 * the slots.
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
 *                       version, header size, sizes that differ from the
 *                       expected ones, or a segment smaller than its header
 *                       says
 * @retval -EBUSY        another reader is attached already
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
 * @param count      readers to wait for (0 or 1 on this day)
 * @param timeout_ns how long to wait, or SPMC_WAIT_FOREVER
 * @retval 0          that many readers are attached
 * @retval -EINVAL    not a writer handle, or @p count > 1
 * @retval -ETIMEDOUT they did not come in time
 */
SPMC_MUST_CHECK int spmc_queue_wait_readers(struct spmc_queue *q, unsigned count,
                                            int64_t timeout_ns);

/* ===================================================================== */
/* Pushing and popping                                                     */
/* ===================================================================== */

/**
 * Writer: copy one message of elem_size bytes into the next free slot.
 *
 * @param q          writer handle
 * @param msg        the message: elem_size bytes to copy in
 * @retval 0       pushed
 * @retval -ENOSPC all @p capacity slots are used (no wrap-around before day 3)
 * @retval -EINVAL not a writer handle, or @p msg is NULL (nothing is pushed)
 */
SPMC_MUST_CHECK int spmc_queue_try_push(struct spmc_queue *q, const void *msg);

/**
 * Reader: copy the oldest unread message into @p out (elem_size bytes) if
 * there is one.
 *
 * @param q          reader handle
 * @param out        where to copy the message: elem_size bytes
 * @retval 0       popped
 * @retval -EAGAIN no unread message
 * @retval -EPIPE  no unread message and the writer has closed the queue
 * @retval -EPROTO the shared indices are impossible (corrupted segment)
 * @retval -EINVAL not a reader handle, or @p out is NULL (no message is taken)
 */
SPMC_MUST_CHECK int spmc_queue_try_pop(struct spmc_queue *q, void *out);

/* ===================================================================== */
/* Tearing down                                                            */
/* ===================================================================== */

/**
 * Leave the queue. A writer marks it closed (the reader drains what is
 * left, then gets -EPIPE), unmaps it and removes its name; a reader detaches and
 * unmaps. The handle is zeroed; destroying it again returns -EINVAL.
 *
 * @param q          an open handle, writer or reader
 * @retval 0       done
 * @retval -EINVAL @p q is not an open handle
 */
int spmc_queue_destroy(struct spmc_queue *q);

#endif /* SPMC_QUEUE_H */
