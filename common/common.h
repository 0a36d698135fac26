/**
 * @file common.h
 * @brief Helpers for the programs around the queue: die(), a monotonic
 *        clock, CPU pinning, unique names, checkable test messages, and
 *        segments removed however a program ends.
 *
 * Nothing a day teaches lives here, and no day's spmc_queue.h or
 * spmc_queue.c includes this file: the queue library stands alone.
 */
#ifndef SPMC_COMMON_H
#define SPMC_COMMON_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define SPMC_NORETURN __attribute__((noreturn))
#define SPMC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SPMC_NORETURN
#define SPMC_PRINTF(a, b)
#endif

/** Print "program: message" to stderr and exit(1). A message ending in ':'
 *  gets strerror(errno) appended. */
SPMC_NORETURN void die(const char *fmt, ...) SPMC_PRINTF(1, 2);

/** Like die(), but appends ": strerror(-rc)" for a library's negative errno. */
SPMC_NORETURN void die_rc(int rc, const char *fmt, ...) SPMC_PRINTF(2, 3);

/** For a program's getopt_long() loop: exit(2) saying "try PROGRAM --help"
 *  after getopt has named the unknown option (call it from `default:`). */
SPMC_NORETURN void usage_error(void);

/** After the getopt_long() loop: exit(2) naming the first argument that is
 *  not an option, if there is one (the programs take options only). */
void no_operands(int argc, char **argv);

/** Make SIGINT and SIGTERM store their number in @p flag, without
 *  SA_RESTART, so that a blocking call returns and the program's loops see
 *  the request to stop. die() if sigaction() fails. */
void catch_stop_signals(volatile sig_atomic_t *flag);

/** Monotonic clock in nanoseconds. */
uint64_t now_ns(void);

/** Pin the calling thread to @p cpu. Returns 0 or a negative errno. */
int pin_to_cpu(int cpu);

/** Number of CPUs this process may run on (at least 1). */
int usable_cpus(void);

/** Write "/<prefix>-<pid>-<counter>" into @p buf: a shm name no other
 *  process of ours uses at the same time. */
void unique_name(char *buf, size_t len, const char *prefix);

/** Fill a test message of @p size bytes (size >= 8): the first 8 bytes hold
 *  @p seq, every later byte is derived from @p seq and its position, so a
 *  torn or swapped message cannot pass msg_check(). */
void msg_fill(void *buf, size_t size, uint64_t seq);

/** The sequence number stored in a test message. */
uint64_t msg_seq(const void *buf);

/** 1 when @p buf is exactly the message msg_fill(buf, size, seq) writes for
 *  its own sequence number, 0 when its payload is damaged. */
int msg_intact(const void *buf, size_t size);

/** Additive checksum of a message (sum of its 8-byte words): the sums of
 *  several consumers' shares add up to the producer's sum. */
uint64_t msg_checksum(const void *buf, size_t size);

/** Parse a non-negative decimal (or 0x hex) integer of at most @p max;
 *  die() with @p what on anything else, naming @p max when the value is
 *  larger (pass the option's real limit, not the type's). */
uint64_t parse_u64(const char *s, const char *what, uint64_t max);

/** Check a queue name given as --name; die() saying what is wrong unless it
 *  is a '/' followed by one or more characters, none of them '/'.
 *  @return @p s */
const char *parse_name(const char *s);

/** What a day's spmc_queue_create() accepts, as its spmc_queue.c checks
 *  it (check_name(), segment_size() and what calls them): the limits that
 *  die_create() and the maxima passed to parse_u64() name. Build it with
 *  QUEUE_LIMITS_RING() or QUEUE_LIMITS_SLOTS(), initialisers:
 *  struct queue_limits lim = QUEUE_LIMITS_RING(SPMC_NAME_MAX, ...). */
struct queue_limits {
    uint64_t max_name;   /**< longest name, the leading '/' included */
    uint64_t max_size;   /**< largest message size in bytes */
    uint64_t max_bytes;  /**< capacity x bytes per slot may not pass this */
    uint64_t slot_align; /**< a slot is the message rounded up to a multiple of this */
    uint64_t slot_extra; /**< bytes each slot costs besides its message */
    int pow2;            /**< the capacity must be a power of two */
    int share;           /**< a work-sharing queue: the capacity must be 2 or more */
    int records;         /**< day 8: the capacity counts 64-byte slots, at least twice the slots of the largest record */
};

/** Days 2 to 4: a header of @p header bytes, then capacity slots of exactly
 *  the message size, all of it within SIZE_MAX / 2 bytes. */
#define QUEUE_LIMITS_RING(name_max, header) \
    {(name_max), SIZE_MAX / 2 - (header), SIZE_MAX / 2 - (header), 1, 0, 0, 0, 0}

/** Days 5 and 6: messages of at most UINT32_MAX / 2 bytes in slots of whole
 *  cache lines, each slot with a hand-back word and up to a cache line of
 *  rounding, after a header and reader table of @p table bytes, all of it
 *  within SIZE_MAX / 4 bytes; the capacity a power of two, and 2 or more
 *  when @p share. (Pass the largest reader table: a bound for every queue.) */
#define QUEUE_LIMITS_SLOTS(name_max, table, share) \
    {(name_max), UINT32_MAX / 2, SIZE_MAX / 4 - (table), 64, 8 + 64, 1, (share), 0}

/** Day 8: records of at most SPMC_RECORD_MAX bytes in 64-byte slots, each
 *  slot with a hand-back word and a header word, after a table of
 *  @p table bytes, all of it within SIZE_MAX / 4 bytes; the capacity a
 *  power of two, at least twice the slots of the largest record. */
#define QUEUE_LIMITS_RECORDS(name_max, table, share) \
    {(name_max), 0x7fffffffu, SIZE_MAX / 4 - (table), 64, 16, 1, (share), 1}

/** The largest capacity @p lim allows for messages of @p elem_size bytes
 *  (0 if that size is out of range). */
uint64_t queue_max_capacity(const struct queue_limits *lim, uint64_t elem_size);

/** die() after spmc_queue_create() of @p name returned @p rc, saying what
 *  to change and the allowed range: the name, a size or capacity out of
 *  @p lim's range (a power of two from day 5, two or more slots for a
 *  work-sharing queue), or the bytes the segment needs against the bytes
 *  /dev/shm has free. */
void die_create(int rc, const char *name, uint64_t elem_size, uint64_t capacity,
                const struct queue_limits *lim);

/** die() after spmc_queue_attach() to @p name returned @p rc, saying what
 *  to do: start the producer, another reader holds a one-reader queue, the
 *  table is full, the segment is not this day's queue, or permissions. */
void die_attach(int rc, const char *name);

/**
 * @name Removing this process's segments however it ends
 *
 * For programs that create shared-memory segments and may be stopped
 * anywhere (the benchmarks): the segments this process created are removed
 * when it calls exit() (die() and die_rc() included) and when SIGINT,
 * SIGTERM or SIGHUP ends it, whose default action would leave them in
 * /dev/shm. (SIGKILL cannot be caught; a signal ignored when the first call
 * below is made stays ignored.) The process then dies of the signal as it
 * would have, so that its parent sees why. Only the process that created a
 * segment removes it: a forked child inherits the record, not the duty.
 *
 * Wrap each create and each destroy of a segment, in any thread:
 *
 *     segment_creating();
 *     int rc = spmc_queue_create(&q, name, size, capacity);
 *     segment_created(name, rc == 0);
 *     ...
 *     segment_destroying();
 *     (void)spmc_queue_destroy(&q);
 *     segment_destroyed(name);
 *
 * A signal that arrives between the two calls of a pair is held until the
 * second one: a segment is never created without being recorded, and a
 * name is never removed after its segment has been destroyed (the name
 * may belong to someone else by then).
 *
 * The signal handler only unlinks "/dev/shm" + name (the file behind a
 * POSIX shm name on Linux), resets the signal to its default action and
 * raises it again: async-signal-safe calls and lock-free atomics only.
 * @{
 */

/** About to create a segment: hold signals' cleanup until segment_created().
 *  The first call installs the signal handlers and the exit handler. */
void segment_creating(void);

/** The create that segment_creating() announced is over: when @p created is
 *  nonzero, remember @p name (as given to shm_open()) as this process's to
 *  remove. At most 32 different names per process (dies beyond, after
 *  removing @p name). */
void segment_created(const char *name, int created);

/** About to destroy a segment recorded by segment_created(). */
void segment_destroying(void);

/** The segment @p name is destroyed (its name removed): forget it. */
void segment_destroyed(const char *name);

/** @} */

#endif /* SPMC_COMMON_H */
