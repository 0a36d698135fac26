/* records.c - day 8: records of one size (or of mixed sizes) from a writer
 * process to a reader process, through day 8's queue read in place, day
 * 8's copying calls, a pipe, or a SOCK_SEQPACKET socket pair; and, as the
 * physical reference, one core copying the same bytes with memcpy().
 *
 * Every record is checked: its length, its sequence number (its first 8
 * bytes) and a checksum of every byte of it, computed where the reader has
 * it (in place in the ring with --kind zerocopy). The reader knows the
 * length each record must have: the same size, or, with --size mixed, the
 * same pseudo-random lengths of 16 to 4096 bytes from a fixed seed. Prints
 * one CSV line: records,KIND,SIZE,RECORDS,SECONDS,RECORDS_PER_S,GIB_PER_S
 * (SIZE is "mixed" for mixed sizes; GiB: 2^30 bytes of payload).
 * common/bench_records.sh runs every kind and size in interleaved rounds. */
#define _GNU_SOURCE
#include "spmc_queue.h"
#include "bench.h"
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

enum kind { ZEROCOPY, COPY, PIPE, SEQPACKET, MEMCPY };
static const char *const kind_name[] = {"zerocopy", "copy", "pipe", "seqpacket", "memcpy"};

enum {
    MIXED_MIN = 16,
    MIXED_MAX = 4096,
    MAX_RECORD = 65536,          /* the largest --size */
    RING_SLOTS = 4096,           /* 256 KiB of slots: two of the largest records, and more */
    STREAM_BUF = 256 * 1024,     /* the pipe reader's buffer */
};
#define TIMEOUT_NS (30 * 1000000000ll)

static struct {
    enum kind kind;
    size_t size; /* 0: mixed */
    uint64_t records;
    int pin[2];
} opt = {ZEROCOPY, 64, 1000000, {-1, -1}};

/* ===================================================================== */
/* Records: lengths, contents, checksums                                  */
/* ===================================================================== */

static unsigned char pattern[MAX_RECORD]; /* bytes 8.. of every record */
static uint64_t word_sum[MAX_RECORD / 8 + 1]; /* word_sum[k]: words 1..k-1 of the pattern */

static void make_pattern(void)
{
    uint64_t x = 0x243F6A8885A308D3ull;
    for (size_t i = 0; i < sizeof pattern; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        pattern[i] = (unsigned char)x;
    }
    word_sum[0] = word_sum[1] = 0;
    for (size_t k = 1; k < MAX_RECORD / 8; k++) {
        uint64_t w;
        memcpy(&w, pattern + 8 * k, 8);
        word_sum[k + 1] = word_sum[k] + w;
    }
}

/* The length of record seq: --size, or the mixed lengths from a fixed
 * seed (both sides compute the same sequence). */
static size_t len_of(uint64_t seq)
{
    if (opt.size != 0)
        return opt.size;
    uint64_t x = (seq + 1) * 0x9E3779B97F4A7C15ull;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return MIXED_MIN + (size_t)(x % (MIXED_MAX - MIXED_MIN + 1));
}

/* Sum of the record's 64-bit words and of its last bytes: every byte read.
 * Four sums side by side, so that the loop runs at the speed of the loads
 * (about 90 GiB/s on data in the cache here, three times one sum's): the
 * check must not be what the large records measure. */
static uint64_t checksum(const unsigned char *p, size_t len)
{
    uint64_t s[4] = {0, 0, 0, 0}, w;
    size_t i = 0;
    for (; i + 32 <= len; i += 32)
        for (int k = 0; k < 4; k++) {
            memcpy(&w, p + i + 8 * k, 8);
            s[k] += w;
        }
    for (; i + 8 <= len; i += 8) {
        memcpy(&w, p + i, 8);
        s[0] += w;
    }
    for (; i < len; i++)
        s[0] += p[i];
    return s[0] + s[1] + s[2] + s[3];
}

/* What checksum() gives for record seq of @p len bytes (len >= 8). */
static uint64_t expected(uint64_t seq, size_t len)
{
    uint64_t s = seq + word_sum[len / 8];
    for (size_t i = len / 8 * 8; i < len; i++)
        s += pattern[i];
    return s;
}

/* Write record seq of @p len bytes at @p p. */
static void fill(unsigned char *p, uint64_t seq, size_t len)
{
    memcpy(p, &seq, 8);
    memcpy(p + 8, pattern + 8, len - 8);
}

/* The reader's verdict on one record; dies on a wrong one. */
static void check(const unsigned char *p, size_t len, uint64_t seq)
{
    uint64_t got;
    if (len != len_of(seq))
        die("reader: record %" PRIu64 " is %zu bytes long, expected %zu", seq, len,
            len_of(seq));
    memcpy(&got, p, 8);
    if (got != seq)
        die("reader: expected record %" PRIu64 ", got %" PRIu64, seq, got);
    if (checksum(p, len) != expected(seq, len))
        die("reader: record %" PRIu64 ": payload damaged", seq);
}

/* ===================================================================== */
/* The channels                                                            */
/* ===================================================================== */

static char qname[SPMC_NAME_MAX + 1];
static int fds[2];
static uint64_t start_ns;          /* the writer's clock at its first record */
static _Atomic uint64_t *end_ns;   /* shared: the reader's clock after its last */

static void writer(void)
{
    static unsigned char buf[MAX_RECORD + 4];
    struct spmc_queue q;
    int rc = 0;
    if (opt.kind == ZEROCOPY || opt.kind == COPY) {
        segment_creating();
        struct spmc_options o = {.fanout = SPMC_BROADCAST, .max_readers = 1};
        rc = spmc_queue_create_opts(&q, qname, MAX_RECORD, RING_SLOTS, &o);
        segment_created(qname, rc == 0);
        if (rc != 0)
            die_rc(rc, "cannot create %s", qname);
        if ((rc = spmc_queue_wait_readers(&q, 1, TIMEOUT_NS)) != 0)
            die_rc(rc, "the reader never attached");
    }
    start_ns = now_ns(); /* set-up done: the clock runs from here */
    for (uint64_t seq = 0; seq < opt.records; seq++) {
        const size_t len = len_of(seq);
        switch (opt.kind) {
        case ZEROCOPY: {
            void *rec;
            if ((rc = spmc_queue_reserve(&q, len, &rec, TIMEOUT_NS)) != 0)
                die_rc(rc, "reserve of record %" PRIu64, seq);
            fill(rec, seq, len);
            if ((rc = spmc_queue_commit(&q, len)) != 0)
                die_rc(rc, "commit of record %" PRIu64, seq);
            break;
        }
        case COPY:
            fill(buf, seq, len);
            if ((rc = spmc_queue_push(&q, buf, len, TIMEOUT_NS)) != 0)
                die_rc(rc, "push of record %" PRIu64, seq);
            break;
        case PIPE: { /* a byte stream: each record behind its 4-byte length */
            uint32_t n = (uint32_t)len;
            memcpy(buf, &n, 4);
            fill(buf + 4, seq, len);
            for (size_t off = 0; off < len + 4;) {
                ssize_t w = write(fds[1], buf + off, len + 4 - off);
                if (w < 0 && errno != EINTR)
                    die("write to the pipe:");
                if (w > 0)
                    off += (size_t)w;
            }
            break;
        }
        case SEQPACKET:
            fill(buf, seq, len);
            if (send(fds[1], buf, len, 0) != (ssize_t)len)
                die("send of record %" PRIu64 ":", seq);
            break;
        case MEMCPY:
            break;
        }
    }
    if (opt.kind == ZEROCOPY || opt.kind == COPY) {
        segment_destroying();
        (void)spmc_queue_destroy(&q);
        segment_destroyed(qname);
    } else {
        close(fds[1]);
    }
}

/* The pipe's reader: frames parsed out of large reads, as a program reading
 * a stream would. */
static void read_pipe(void)
{
    static unsigned char buf[STREAM_BUF];
    size_t have = 0, at = 0;
    for (uint64_t seq = 0; seq < opt.records;) {
        uint32_t n = 0;
        if (have - at >= 4)
            memcpy(&n, buf + at, 4);
        if (have - at >= 4 && have - at - 4 >= n) {
            check(buf + at + 4, n, seq++);
            at += 4 + n;
            continue;
        }
        memmove(buf, buf + at, have - at); /* keep the partial frame */
        have -= at;
        at = 0;
        ssize_t r = read(fds[0], buf + have, sizeof buf - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("reader: the pipe ended after %" PRIu64 " records", seq);
        have += (size_t)r;
    }
}

static void reader(void)
{
    static unsigned char buf[MAX_RECORD];
    struct spmc_queue q;
    int rc;
    if (opt.kind == ZEROCOPY || opt.kind == COPY) {
        for (int tries = 0; (rc = spmc_queue_attach(&q, qname, MAX_RECORD, 0)) == -ENOENT &&
                            tries < 30000;
             tries++)
            usleep(1000);
        if (rc != 0)
            die_rc(rc, "cannot attach to %s", qname);
    }
    if (opt.kind == PIPE) {
        read_pipe();
        atomic_store(end_ns, now_ns());
        return;
    }
    for (uint64_t seq = 0; seq < opt.records; seq++) {
        switch (opt.kind) {
        case ZEROCOPY: {
            const void *rec;
            size_t len;
            if ((rc = spmc_queue_peek(&q, &rec, &len, TIMEOUT_NS)) != 0)
                die_rc(rc, "reader: peek of record %" PRIu64, seq);
            check(rec, len, seq); /* every byte, in place */
            if ((rc = spmc_queue_release(&q)) != 0)
                die_rc(rc, "reader: release of record %" PRIu64, seq);
            break;
        }
        case COPY: {
            long n = spmc_queue_pop(&q, buf, sizeof buf, TIMEOUT_NS);
            if (n < 0)
                die_rc((int)n, "reader: pop of record %" PRIu64, seq);
            check(buf, (size_t)n, seq);
            break;
        }
        case SEQPACKET: {
            ssize_t n = recv(fds[0], buf, sizeof buf, 0);
            if (n <= 0)
                die("reader: recv of record %" PRIu64 " returned %zd:", seq, n);
            check(buf, (size_t)n, seq);
            break;
        }
        default:
            break;
        }
    }
    atomic_store(end_ns, now_ns());
    if (opt.kind == ZEROCOPY || opt.kind == COPY) {
        long n = spmc_queue_pop(&q, buf, sizeof buf, TIMEOUT_NS);
        if (n != -EPIPE)
            die("reader: after the last record, pop returned %ld, not end of stream", n);
        (void)spmc_queue_destroy(&q);
    }
}

/* The physical reference: one core copies the same bytes, record by
 * record, from one buffer to another the size of the queue's ring. */
static uint64_t run_memcpy(void)
{
    const size_t ring = (size_t)RING_SLOTS * SPMC_SLOT;
    unsigned char *src = malloc(ring), *dst = malloc(ring);
    if (src == NULL || dst == NULL)
        die("out of memory:");
    memset(src, 0x5a, ring);
    memset(dst, 0, ring);
    uint64_t t0 = now_ns(), sum = 0;
    size_t at = 0;
    for (uint64_t seq = 0; seq < opt.records; seq++) {
        const size_t len = len_of(seq);
        if (at + len > ring)
            at = 0;
        memcpy(dst + at, src + at, len);
        sum += dst[at + len - 1];
        at += (len + SPMC_SLOT - 1) / SPMC_SLOT * SPMC_SLOT;
    }
    uint64_t t1 = now_ns();
    if (sum != 0x5aull * opt.records)
        die("memcpy: the copies are wrong");
    free(src);
    free(dst);
    return t1 - t0;
}

/* ===================================================================== */
/* Main                                                                    */
/* ===================================================================== */

static void usage(const char *prog, int status)
{
    fprintf(status ? stderr : stdout,
            "usage: %s [--kind zerocopy|copy|pipe|seqpacket|memcpy] [--size BYTES|mixed]\n"
            "          [--records N] [--pin A,B]\n"
            "  --size    16 to %d bytes per record, or mixed (%d to %d, fixed seed)\n"
            "Prints records,KIND,SIZE,RECORDS,SECONDS,RECORDS_PER_S,GIB_PER_S.\n",
            prog, MAX_RECORD, MIXED_MIN, MIXED_MAX);
    exit(status);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"kind", required_argument, 0, 'k'},   {"size", required_argument, 0, 's'},
        {"records", required_argument, 0, 'n'}, {"pin", required_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'k': {
            int k = 0;
            while (k < 5 && strcmp(optarg, kind_name[k]) != 0)
                k++;
            if (k == 5)
                die("--kind: expected zerocopy, copy, pipe, seqpacket or memcpy, got '%s'",
                    optarg);
            opt.kind = (enum kind)k;
            break;
        }
        case 's':
            opt.size = strcmp(optarg, "mixed") == 0 ? 0 : (size_t)parse_u64(optarg, "--size",
                                                                             MAX_RECORD);
            if (opt.size != 0 && opt.size < 16)
                die("--size must be 16 to %d, or mixed", MAX_RECORD);
            break;
        case 'n': opt.records = parse_u64(optarg, "--records", UINT64_MAX / 2); break;
        case 'p':
            if (sscanf(optarg, "%d,%d", &opt.pin[0], &opt.pin[1]) != 2 || opt.pin[0] < 0 ||
                opt.pin[1] < 0)
                die("--pin: expected two CPUs A,B, got '%s'", optarg);
            break;
        case 'h': usage(argv[0], 0); break;
        default: usage(argv[0], 2);
        }
    }
    if (optind != argc)
        die("unexpected argument '%s' (see --help)", argv[optind]);
    if (opt.records == 0)
        die("--records must be at least 1");
    if (opt.pin[0] < 0 && usable_cpus() >= 2)
        opt.pin[0] = 0, opt.pin[1] = 1;
    make_pattern();

    uint64_t ns;
    if (opt.kind == MEMCPY) {
        if (opt.pin[0] >= 0)
            (void)pin_to_cpu(opt.pin[0]);
        ns = run_memcpy();
    } else {
        unique_name(qname, sizeof qname, "spmc-records");
        if (opt.kind == PIPE && pipe(fds) != 0)
            die("pipe:");
        if (opt.kind == SEQPACKET) {
            if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, fds) != 0)
                die("socketpair:");
            int sz = 4 * 1024 * 1024; /* room for a few of the largest records */
            (void)setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
            (void)setsockopt(fds[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        }
        end_ns = mmap(NULL, sizeof *end_ns, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                      -1, 0);
        if (end_ns == MAP_FAILED)
            die("mmap:");
        fflush(NULL);
        pid_t child = fork();
        if (child < 0)
            die("fork:");
        if (child == 0) {
            if (opt.pin[1] >= 0)
                (void)pin_to_cpu(opt.pin[1]);
            if (opt.kind == PIPE || opt.kind == SEQPACKET)
                close(fds[1]);
            reader();
            _exit(0);
        }
        if (opt.pin[0] >= 0)
            (void)pin_to_cpu(opt.pin[0]);
        if (opt.kind == PIPE || opt.kind == SEQPACKET)
            close(fds[0]);
        writer();
        int status;
        if (waitpid(child, &status, 0) != child)
            die("waitpid:");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            die("the reader failed (status %d)", status);
        ns = atomic_load(end_ns) - start_ns;
    }
    uint64_t bytes = 0;
    for (uint64_t seq = 0; seq < opt.records; seq++)
        bytes += len_of(seq);
    const double s = (double)ns / 1e9;
    char size[24];
    if (opt.size == 0)
        snprintf(size, sizeof size, "mixed");
    else
        snprintf(size, sizeof size, "%zu", opt.size);
    printf("records,%s,%s,%" PRIu64 ",%.6f,%.0f,%.4f\n", kind_name[opt.kind], size,
           opt.records, s, (double)opt.records / s, (double)bytes / s / 1073741824.0);
    return 0;
}
