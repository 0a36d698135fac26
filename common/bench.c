/* bench.c - option parsing and reporting shared by the benchmarks. */
#define _GNU_SOURCE
#include "bench.h"
#include "common.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(const char *prog, unsigned flags, int status)
{
    FILE *f = status == 0 ? stdout : stderr;
    fprintf(f,
            "usage: %s [options]\n"
            "  --size BYTES       bytes per message (>= 8, default 64)\n"
            "  --capacity N       slots in the queue (default 1024)\n"
            "  --messages N       messages per run (default 2^26)\n"
            "  --mode thread|process\n"
            "                     two threads of one process (default) or a\n"
            "                     forked consumer process attached by name\n"
            "  --runs K           repeat K times, print min/median/max\n"
            "  --csv              one CSV line per run\n"
            "  --latency          round-trip ping-pong through two queues\n"
            "  --count N          round trips with --latency (default 100000)\n"
            "  --pin CPU,CPU      producer and consumer CPUs (default 0,1\n"
            "                     when two CPUs are usable; 'none' to not pin)\n",
            prog);
    if (flags & BENCH_FANOUT)
        fprintf(f, "  --consumers K      consumers (default 1)\n"
                   "  --fanout broadcast|share\n"
                   "                     every consumer gets every message, or\n"
                   "                     each message goes to one consumer\n");
    if (flags & BENCH_KIND)
        fprintf(f, "  --kind pipe|socket|mq\n"
                   "                     the kernel channel to measure\n");
    if (flags & BENCH_PUBLISH)
        fprintf(f, "  --publish-every N  the producer stores head after every N\n"
                   "                     messages (a power of two up to the\n"
                   "                     capacity; default 16, or the capacity\n"
                   "                     when smaller; 1: each message at once,\n"
                   "                     as a queue must)\n"
                   "  --in-slot          with --latency: no head; each slot is one\n"
                   "                     line, the message (--size at most 56) and\n"
                   "                     a sequence word the reader waits on\n");
    exit(status);
}

void bench_parse(struct bench_opts *o, int argc, char **argv, unsigned flags)
{
    memset(o, 0, sizeof *o);
    o->size = 64;
    o->capacity = 1024;
    o->messages = 1ull << 26;
    o->runs = 1;
    o->latency_count = 100000;
    o->consumers = 1;
    o->kind = "pipe";
    o->publish_every = 16;
    int publish_given = 0;
    o->pin[0] = o->pin[1] = -1;
    if (usable_cpus() >= 2) {
        o->pin[0] = 0;
        o->pin[1] = 1;
    }
    static const struct option longopts[] = {
        {"size", required_argument, 0, 's'},
        {"capacity", required_argument, 0, 'c'},
        {"messages", required_argument, 0, 'm'},
        {"mode", required_argument, 0, 'M'},
        {"runs", required_argument, 0, 'r'},
        {"csv", no_argument, 0, 'C'},
        {"latency", no_argument, 0, 'l'},
        {"count", required_argument, 0, 'n'},
        {"pin", required_argument, 0, 'p'},
        {"consumers", required_argument, 0, 'k'},
        {"fanout", required_argument, 0, 'f'},
        {"kind", required_argument, 0, 'K'},
        {"publish-every", required_argument, 0, 'P'},
        {"in-slot", no_argument, 0, 'I'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 's': o->size = (size_t)parse_u64(optarg, "--size", SIZE_MAX); break;
        case 'c': o->capacity = parse_u64(optarg, "--capacity", SIZE_MAX); break;
        case 'm': o->messages = parse_u64(optarg, "--messages", UINT64_MAX); break;
        case 'r': o->runs = (unsigned)parse_u64(optarg, "--runs", UINT_MAX); break;
        case 'C': o->csv = 1; break;
        case 'l': o->latency = 1; break;
        case 'n': o->latency_count = parse_u64(optarg, "--count", UINT64_MAX); break;
        case 'M':
            if (strcmp(optarg, "thread") == 0) o->process = 0;
            else if (strcmp(optarg, "process") == 0) o->process = 1;
            else die("--mode: expected thread or process, got '%s'", optarg);
            break;
        case 'p':
            if (strcmp(optarg, "none") == 0) {
                o->pin[0] = o->pin[1] = -1;
            } else {
                int a, b;
                char extra;
                if (sscanf(optarg, "%d,%d%c", &a, &b, &extra) != 2 || a < 0 || b < 0)
                    die("--pin: expected CPU,CPU (e.g. 0,1) or none, got '%s'", optarg);
                if (usable_cpus() >= 2) {
                    o->pin[0] = a;
                    o->pin[1] = b;
                } else {
                    o->pin[0] = o->pin[1] = -1; /* one CPU: pinning would serialise */
                }
            }
            break;
        case 'k':
            if (!(flags & BENCH_FANOUT)) usage(argv[0], flags, 2);
            o->consumers = (unsigned)parse_u64(optarg, "--consumers", 64);
            break;
        case 'f':
            if (!(flags & BENCH_FANOUT)) usage(argv[0], flags, 2);
            if (strcmp(optarg, "broadcast") == 0) o->share = 0;
            else if (strcmp(optarg, "share") == 0) o->share = 1;
            else die("--fanout: expected broadcast or share, got '%s'", optarg);
            break;
        case 'K':
            if (!(flags & BENCH_KIND)) usage(argv[0], flags, 2);
            o->kind = optarg;
            break;
        case 'P':
            if (!(flags & BENCH_PUBLISH)) usage(argv[0], flags, 2);
            o->publish_every = parse_u64(optarg, "--publish-every", UINT64_MAX);
            publish_given = 1;
            break;
        case 'I':
            if (!(flags & BENCH_PUBLISH)) usage(argv[0], flags, 2);
            o->in_slot = 1;
            break;
        case 'h': usage(argv[0], flags, 0); break;
        default: usage(argv[0], flags, 2);
        }
    }
    if (optind != argc)
        die("unexpected argument '%s' (see --help)", argv[optind]);
    if (o->size < 8)
        die("--size must be at least 8 bytes (the sequence number), got %zu", o->size);
    if (o->messages == 0 || o->runs == 0 || o->capacity == 0 || o->latency_count == 0)
        die("--messages, --runs, --capacity and --count must be positive");
    /* Only the ceiling ring publishes in batches: a ring smaller than the
     * default batch publishes once per lap, unless --publish-every says
     * otherwise (then it must fit). */
    if (!publish_given && o->publish_every > o->capacity)
        o->publish_every = o->capacity & (o->capacity - 1) ? 1 : o->capacity;
    if ((flags & BENCH_PUBLISH) &&
        (o->publish_every == 0 || (o->publish_every & (o->publish_every - 1)) != 0 ||
         o->publish_every > o->capacity))
        die("--publish-every must be a power of two up to the capacity, got %llu",
            (unsigned long long)o->publish_every);
    if (o->consumers == 0 || o->consumers > 64)
        die("--consumers must be between 1 and 64, got %u", o->consumers);
}

const char *bench_mode_name(const struct bench_opts *o)
{
    return o->process ? "process" : "thread";
}

void bench_pin(const struct bench_opts *o, int role)
{
    int cpu = o->pin[role ? 1 : 0];
    if (cpu < 0)
        return;
    int rc = pin_to_cpu(cpu);
    if (rc != 0)
        die_rc(rc, "cannot pin to CPU %d", cpu);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, size_t n)
{
    if (n == 0)
        return 0.0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

void bench_report_run(const struct bench_opts *o, const char *day, double seconds)
{
    double msgs = (double)o->messages / seconds;
    double mib = msgs * (double)o->size / (1024.0 * 1024.0);
    if (o->csv) {
        printf("%s,%s,%s,%u,%zu,%llu,%llu,%.6f,%.0f,%.3f\n", day,
               bench_mode_name(o), o->share ? "share" : "broadcast",
               o->consumers, o->size, (unsigned long long)o->capacity,
               (unsigned long long)o->messages, seconds, msgs, mib);
    } else {
        printf("Elapsed time: %.3f seconds\n", seconds);
        printf("Throughput: %.3f MB/s\n", msgs * (double)o->size / 1e6); /* 10^6 bytes */
    }
    fflush(stdout);
}

void bench_report_runs(const struct bench_opts *o, double *seconds, size_t n)
{
    if (o->csv || n < 2)
        return;
    double med = bench_median(seconds, n);
    double unit = (double)o->messages * (double)o->size / 1e6; /* MB: 10^6 bytes */
    printf("Runs: %zu  Throughput MB/s: min %.3f  median %.3f  max %.3f\n", n,
           unit / seconds[n - 1], unit / med, unit / seconds[0]);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

void bench_report_latency(const struct bench_opts *o, const char *day,
                          uint64_t *rtt, size_t n)
{
    qsort(rtt, n, sizeof *rtt, cmp_u64);
    uint64_t p50 = rtt[n / 2], p99 = rtt[(size_t)((double)n * 0.99)],
             p999 = rtt[(size_t)((double)n * 0.999)], max = rtt[n - 1];
    if (o->csv)
        printf("latency,%s,%s,%zu,%zu,%llu,%llu,%llu,%llu\n", day,
               bench_mode_name(o), o->size, n, (unsigned long long)p50,
               (unsigned long long)p99, (unsigned long long)p999,
               (unsigned long long)max);
    else
        printf("Round trip (%zu samples, %zu-byte messages): p50 %llu ns  "
               "p99 %llu ns  p99.9 %llu ns  max %llu ns\n",
               n, o->size, (unsigned long long)p50, (unsigned long long)p99,
               (unsigned long long)p999, (unsigned long long)max);
    fflush(stdout);
}
