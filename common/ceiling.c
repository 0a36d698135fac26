/* ceiling.c - the reference ring: the fastest single-producer/single-consumer
 * ring we know how to write, so that only the hardware limits it.
 *
 * The day benchmarks are compared with this "ceiling". It keeps every trick
 * and none of the safety: no header, no names, no reader table. It does the
 * same work per message as the day benchmarks, so that "x ceiling" measures
 * the queue alone: the producer fills each message with msg_fill() and
 * copies it in; the consumer copies it out into its own buffer and checks
 * its sequence number and every payload byte (msg_intact()), and adds the
 * sequence numbers up, which the producer compares with its own sum. What
 * it does:
 *   - 64-byte slots; head, tail and data each on their own cache lines;
 *   - each side caches the other's index and re-reads it only when the cache
 *     says full (producer) or empty (consumer);
 *   - each side asks for the slot it will need PREFETCH_AHEAD messages
 *     from now (the consumer to read, once it is published; the producer
 *     to write, with PREFETCHW, once it is free), as the days do from day 5;
 *   - each side publishes its own index only every PUBLISH_EVERY messages
 *     (the producer: every --publish-every messages, 16 by default; 1 makes
 *     it publish each message at once, as a queue must, since it cannot
 *     know which message is the last of a burst: `make bench` runs both).
 *
 * Process mode (the real IPC case): an anonymous shared mapping made before
 * fork(); the child consumes, the parent produces. Thread mode: a thread
 * consumes from the same mapping.
 *
 * --latency: the same ring as a round trip, measured the way the day
 * benchmarks measure theirs: the parent pushes a message on one ring, the
 * child pops it and pushes it back on a second ring, the parent pops it and
 * checks it; two clock readings around each round trip. A message in flight
 * alone cannot wait for 15 others, so here each push publishes head at once
 * (tail still every PUBLISH_EVERY). Each direction then moves two lines,
 * head and the slot, as every day does: this is the floor of that design on
 * this machine, to set beside the c2c figure (one line, no payload).
 *
 * --latency --in-slot: the round trip with no head at all. Each slot is one
 * line: the message (at most 56 bytes) and, in its last 8 bytes, a sequence
 * word; the writer stores the word last (release), the reader waits on the
 * word of the slot it wants (acquire). Publication and payload then travel
 * in one line each way: the floor of any design that puts its publication
 * in the slot (Vyukov's, for one), on this machine. It has no tail: a round
 * trip has one message in flight, so the writer is never a lap ahead. */
#define _GNU_SOURCE
#include "bench.h"
#include "common.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

enum {
    LINE = 64,           /* cache-line size, also the slot granule */
    PUBLISH_EVERY = 16,  /* messages between two stores of an index */
    SPIN_LIMIT = 1024,   /* polls before a wait yields the CPU */
    PREFETCH_AHEAD = 8,  /* slots between the one we use and the one we ask for */
};

/* The start of the shared mapping; the slots follow it. */
struct ceiling_shm {
    _Alignas(LINE) _Atomic uint64_t head; /* written by the producer only */
    _Alignas(LINE) _Atomic uint64_t tail; /* written by the consumer only */
    _Alignas(LINE) _Atomic int ready;     /* consumer -> producer: set up */
    _Atomic int start;                    /* producer -> consumer: go */
    uint64_t end_ns;                      /* consumer: when it got the last */
    uint64_t sum;                         /* consumer: its sequence numbers' sum */
};
_Static_assert(sizeof(struct ceiling_shm) % LINE == 0, "slots start on a line");

static struct bench_opts o;
static struct ceiling_shm *shm;
static unsigned char *slots;
static size_t slot_size;
static uint64_t mask;
static double *run_seconds; /* file scope: a forked child must not leak it */

/* The other process, so that a wait notices when it is gone: the producer
 * knows its child, the consumer its parent. Both 0 in thread mode, where
 * any failure exits the whole process anyway. */
static pid_t child, parent;

/* The producer's verdict on a consumer process that has ended. */
static void check_consumer(int status)
{
    if (WIFSIGNALED(status))
        die("consumer killed by signal %d", WTERMSIG(status));
    if (WEXITSTATUS(status) != 0)
        die("consumer failed (exit status %d)", WEXITSTATUS(status));
}

/* Called after each poll that found nothing to do: spin first, then yield
 * (so it still finishes with fewer CPUs than threads), and while yielding
 * check that the other process is alive, so that a wait can never hang. */
static void relax(unsigned *spins)
{
    if (++*spins < SPIN_LIMIT)
        return;
    *spins = 0;
    sched_yield();
    if (parent && getppid() != parent)
        die("consumer: the producer went away");
    if (child) {
        int status;
        pid_t p = waitpid(child, &status, WNOHANG);
        if (p < 0)
            die("waitpid:");
        if (p == child) {
            check_consumer(status);
            die("consumer ended before the last message");
        }
    }
}

/* Does this x86 processor have PREFETCHW? Set in main(), before fork(). */
static int have_prefetchw;

static void find_prefetchw(void)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    have_prefetchw = __get_cpuid(0x80000001, &a, &b, &c, &d) && (c & bit_PRFCHW);
#endif
}

/* The line at p, to be written soon: ask for it in the exclusive state. */
static inline void prefetch_write(void *p)
{
#if defined(__x86_64__) || defined(__i386__)
    if (have_prefetchw)
        __asm__ __volatile__("prefetchw %0" : : "m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

/* A message buffer of the process (or thread) that calls it. */
static unsigned char *msg_buffer(void)
{
    static _Thread_local _Alignas(LINE) unsigned char buf[4096];
    if (o.size > sizeof buf)
        die("--size: at most %zu bytes for the ceiling", sizeof buf);
    return buf;
}

static void wait_flag(_Atomic int *flag)
{
    unsigned spins = 0;
    while (!atomic_load_explicit(flag, memory_order_acquire))
        relax(&spins);
}

static void consume(void)
{
    bench_pin(&o, 1);
    atomic_store_explicit(&shm->ready, 1, memory_order_release);
    wait_flag(&shm->start);

    unsigned char *buf = msg_buffer();
    uint64_t tail = 0, head = 0; /* head: our cached copy of shm->head */
    uint64_t sum = 0;
    while (tail < o.messages) {
        unsigned spins = 0;
        while (tail == head) {
            /* acquire: pairs with the producer's release of head, so the
             * slots below it are fully written before we read them */
            head = atomic_load_explicit(&shm->head, memory_order_acquire);
            if (tail == head)
                relax(&spins);
        }
        if (head - tail > PREFETCH_AHEAD) /* published: its line can come */
            __builtin_prefetch(slots + ((tail + PREFETCH_AHEAD) & mask) * slot_size, 0, 3);
        memcpy(buf, slots + (tail & mask) * slot_size, o.size);
        if (msg_seq(buf) != tail)
            die("consumer: expected message %llu, got sequence number %llu",
                (unsigned long long)tail, (unsigned long long)msg_seq(buf));
        if (!msg_intact(buf, o.size))
            die("consumer: message %llu: payload damaged", (unsigned long long)tail);
        sum += tail;
        tail++;
        /* release: pairs with the producer's acquire of tail; our reads of
         * the slots are done before it may overwrite them */
        if (tail % PUBLISH_EVERY == 0 || tail == o.messages)
            atomic_store_explicit(&shm->tail, tail, memory_order_release);
    }
    shm->end_ns = now_ns();
    shm->sum = sum;
}

/* Produce all messages; returns the start time, *sum the sequence numbers'. */
static uint64_t produce(uint64_t *sum)
{
    wait_flag(&shm->ready);
    uint64_t t0 = now_ns();
    atomic_store_explicit(&shm->start, 1, memory_order_release);

    unsigned char *buf = msg_buffer();
    uint64_t head = 0, tail = 0; /* tail: our cached copy of shm->tail */
    while (head < o.messages) {
        unsigned spins = 0;
        while (head - tail == o.capacity) {
            tail = atomic_load_explicit(&shm->tail, memory_order_acquire);
            if (head - tail == o.capacity)
                relax(&spins);
        }
        msg_fill(buf, o.size, head);
        if (head + PREFETCH_AHEAD - tail < o.capacity) /* free: the consumer has passed it */
            prefetch_write(slots + ((head + PREFETCH_AHEAD) & mask) * slot_size);
        memcpy(slots + (head & mask) * slot_size, buf, o.size);
        *sum += head;
        head++;
        /* Both indexes move in steps that divide the capacity (16, or
         * --publish-every for head, at most 16): when we find the ring
         * full, we have just published. */
        if (head % o.publish_every == 0 || head == o.messages)
            atomic_store_explicit(&shm->head, head, memory_order_release);
    }
    return t0;
}

/* ---------------------------------------------------------------------- */
/* --latency: two rings, one each way                                      */
/* ---------------------------------------------------------------------- */

/* One end of one ring: the mapping, its slots, our index and our cached
 * copy of the other side's. */
struct end {
    struct ceiling_shm *shm;
    unsigned char *slots;
    uint64_t pos, cached;
};

/* Called between two looks at an empty (or full) ring, then relax(). Not
 * inlined on purpose: on the machine this was written on, a loop of bare
 * loads measured a slower and noisier round trip (and a `pause` slower
 * still) than a loop with a call in it. Try it: make it `static inline`
 * and compare the ceiling's latency row of `make bench` with the days'. */
__attribute__((noinline)) static void poll_gap(unsigned *spins)
{
    __asm__ __volatile__("" ::: "memory");
    relax(spins);
}

/* Copy @p buf into the next slot and publish it at once. */
static void ring_push(struct end *e, const unsigned char *buf)
{
    unsigned spins = 0;
    while (e->pos - e->cached == o.capacity) {
        /* acquire: pairs with ring_pop()'s release of tail */
        e->cached = atomic_load_explicit(&e->shm->tail, memory_order_acquire);
        if (e->pos - e->cached == o.capacity)
            poll_gap(&spins);
    }
    memcpy(e->slots + (e->pos & mask) * slot_size, buf, o.size);
    e->pos++;
    /* release: pairs with ring_pop()'s acquire of head */
    atomic_store_explicit(&e->shm->head, e->pos, memory_order_release);
}

/* Copy the next message into @p buf. */
static void ring_pop(struct end *e, unsigned char *buf)
{
    unsigned spins = 0;
    while (e->pos == e->cached) {
        /* acquire: pairs with ring_push()'s release of head */
        e->cached = atomic_load_explicit(&e->shm->head, memory_order_acquire);
        if (e->pos == e->cached)
            poll_gap(&spins);
    }
    memcpy(buf, e->slots + (e->pos & mask) * slot_size, o.size);
    e->pos++;
    /* release: pairs with ring_push()'s acquire of tail */
    if (e->pos % PUBLISH_EVERY == 0)
        atomic_store_explicit(&e->shm->tail, e->pos, memory_order_release);
}

/* --in-slot: the sequence word of the slot of message @p pos. */
static inline _Atomic uint64_t *slot_seq(const struct end *e, uint64_t pos)
{
    return (_Atomic uint64_t *)(e->slots + (pos & mask) * LINE + LINE - sizeof(uint64_t));
}

/* --in-slot: copy @p buf into the next slot, then store its sequence word. */
static void slot_push(struct end *e, const unsigned char *buf)
{
    memcpy(e->slots + (e->pos & mask) * LINE, buf, o.size);
    e->pos++;
    /* release: pairs with slot_pop()'s acquire of the same word */
    atomic_store_explicit(slot_seq(e, e->pos - 1), e->pos, memory_order_release);
}

/* --in-slot: wait for the next slot's sequence word, then copy it out. */
static void slot_pop(struct end *e, unsigned char *buf)
{
    unsigned spins = 0;
    /* acquire: pairs with slot_push()'s release of the same word */
    while (atomic_load_explicit(slot_seq(e, e->pos), memory_order_acquire) != e->pos + 1)
        poll_gap(&spins);
    memcpy(buf, e->slots + (e->pos & mask) * LINE, o.size);
    e->pos++;
}

static void push_one(struct end *e, const unsigned char *buf)
{
    if (o.in_slot)
        slot_push(e, buf);
    else
        ring_push(e, buf);
}

static void pop_one(struct end *e, unsigned char *buf)
{
    if (o.in_slot)
        slot_pop(e, buf);
    else
        ring_pop(e, buf);
}

/* A fresh ring in an anonymous shared mapping of @p len bytes. */
static struct end map_ring(size_t len)
{
    struct ceiling_shm *m =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        die("mmap of %zu bytes:", len);
    unsigned char *s = (unsigned char *)(m + 1);
    memset(s, 0, (size_t)o.capacity * slot_size); /* fault pages in now */
    return (struct end){.shm = m, .slots = s};
}

/* The echo side: pop each message from @p in, push it back on @p out. */
static void echo(struct end in, struct end out, uint64_t total)
{
    bench_pin(&o, 1);
    unsigned char *buf = msg_buffer();
    for (uint64_t i = 0; i < total; i++) {
        pop_one(&in, buf);
        push_one(&out, buf);
    }
}

struct echo_args {
    struct end in, out;
    uint64_t total;
};

static void *echo_thread(void *arg)
{
    struct echo_args *a = arg;
    echo(a->in, a->out, a->total);
    return NULL;
}

/* Round trips as the day benchmarks time them; prints their percentiles. */
static void run_latency(void)
{
    const uint64_t warmup = 1000, total = o.latency_count + warmup;
    size_t len = sizeof *shm + (size_t)o.capacity * slot_size;
    struct end ping = map_ring(len), pong = map_ring(len);
    struct echo_args args = {.in = ping, .out = pong, .total = total};
    pthread_t tid;
    if (o.process) {
        fflush(NULL);
        pid_t me = getpid();
        child = fork();
        if (child < 0)
            die("fork:");
        if (child == 0) {
            child = 0;
            parent = me;
            echo(ping, pong, total);
            _exit(0);
        }
    } else {
        int rc = pthread_create(&tid, NULL, echo_thread, &args);
        if (rc != 0)
            die_rc(rc, "pthread_create");
    }
    uint64_t *rtt = malloc(o.latency_count * sizeof *rtt);
    unsigned char *msg = malloc(o.size), *back = msg_buffer();
    if (rtt == NULL || msg == NULL)
        die("out of memory:");
    for (uint64_t i = 0; i < total; i++) {
        msg_fill(msg, o.size, i);
        uint64_t t0 = now_ns();
        push_one(&ping, msg);
        pop_one(&pong, back);
        uint64_t t1 = now_ns();
        if (msg_seq(back) != i || !msg_intact(back, o.size))
            die("round trip %llu came back as %llu", (unsigned long long)i,
                (unsigned long long)msg_seq(back));
        if (i >= warmup)
            rtt[i - warmup] = t1 - t0;
    }
    if (o.process) {
        int status;
        if (waitpid(child, &status, 0) != child)
            die("waitpid:");
        child = 0;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            die("the echo process failed");
    } else {
        int rc = pthread_join(tid, NULL);
        if (rc != 0)
            die_rc(rc, "pthread_join");
    }
    bench_report_latency(&o, o.in_slot ? "one line" : "ceiling", rtt, o.latency_count);
    free(rtt);
    free(msg);
    if (munmap(ping.shm, len) != 0 || munmap(pong.shm, len) != 0)
        die("munmap:");
}

static void *consumer_thread(void *arg)
{
    (void)arg;
    consume();
    return NULL;
}

/* One run in a fresh mapping; returns its time in seconds. */
static double run(void)
{
    size_t len = sizeof *shm + (size_t)o.capacity * slot_size;
    shm = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED)
        die("mmap of %zu bytes:", len);
    slots = (unsigned char *)(shm + 1);
    memset(slots, 0, (size_t)o.capacity * slot_size); /* fault pages in now */

    uint64_t t0, sum = 0;
    if (o.process) {
        fflush(NULL); /* the child must not print our buffered output again */
        pid_t me = getpid();
        child = fork();
        if (child < 0)
            die("fork:");
        if (child == 0) {
            parent = me;
            consume();
            _exit(0);
        }
        t0 = produce(&sum);
        int status;
        if (waitpid(child, &status, 0) != child)
            die("waitpid:");
        child = 0;
        check_consumer(status);
    } else {
        pthread_t t;
        int rc = pthread_create(&t, NULL, consumer_thread, NULL);
        if (rc != 0)
            die_rc(rc, "pthread_create");
        t0 = produce(&sum);
        rc = pthread_join(t, NULL);
        if (rc != 0)
            die_rc(rc, "pthread_join");
    }
    if (shm->sum != sum)
        die("the consumer's sum of sequence numbers is %llu, the producer's %llu",
            (unsigned long long)shm->sum, (unsigned long long)sum);
    double elapsed = (double)(shm->end_ns - t0) / 1e9;
    if (munmap(shm, len) != 0)
        die("munmap:");
    return elapsed;
}

int main(int argc, char **argv)
{
    bench_parse(&o, argc, argv, BENCH_PUBLISH);
    if (o.publish_every > PUBLISH_EVERY)
        die("--publish-every: at most %d for the ceiling, got %llu", PUBLISH_EVERY,
            (unsigned long long)o.publish_every);
    if (o.capacity <= 32 || (o.capacity & (o.capacity - 1)) != 0)
        die("--capacity must be a power of two above 32, got %llu",
            (unsigned long long)o.capacity);
    if (o.size > (1u << 30))
        die("--size: at most 1 GiB, got %zu", o.size);
    slot_size = (o.size + LINE - 1) / LINE * LINE;
    if (o.capacity > ((size_t)1 << 40) / slot_size)
        die("--capacity %llu of %zu-byte slots is too large",
            (unsigned long long)o.capacity, slot_size);
    mask = o.capacity - 1;
    if (o.in_slot && (!o.latency || o.size > LINE - sizeof(uint64_t)))
        die("--in-slot: only with --latency, and --size at most %zu, got %zu",
            LINE - sizeof(uint64_t), o.size);
    find_prefetchw();

    bench_pin(&o, 0);
    if (o.latency) {
        run_latency();
        return 0;
    }
    run_seconds = malloc(o.runs * sizeof *run_seconds);
    if (run_seconds == NULL)
        die("malloc:");
    for (unsigned i = 0; i < o.runs; i++) {
        run_seconds[i] = run();
        bench_report_run(&o, "ceiling", run_seconds[i]);
    }
    bench_report_runs(&o, run_seconds, o.runs);
    free(run_seconds);
    return 0;
}
