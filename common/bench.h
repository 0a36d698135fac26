/**
 * @file bench.h
 * @brief The benchmark harness shared by every day's benchmark and by the
 *        baselines: one option parser, one report format, one statistic.
 *
 * It knows nothing of any queue. Each day's benchmark.c moves the messages
 * with its own spmc_queue; this file only parses, times and prints.
 */
#ifndef SPMC_BENCH_H
#define SPMC_BENCH_H

#include <stddef.h>
#include <stdint.h>

/** Which optional flags a program accepts besides the common ones. */
enum bench_flags {
    BENCH_FANOUT = 1, /**< --consumers K, --fanout broadcast|share (day 5+) */
    BENCH_KIND = 2,   /**< --kind pipe|socket|mq (the baselines) */
    BENCH_PUBLISH = 4, /**< --publish-every N (the ceiling ring) */
};

/** Parsed command line of a benchmark. */
struct bench_opts {
    size_t size;             /**< --size: bytes per message (>= 8) */
    uint64_t capacity;       /**< --capacity: slots in the queue */
    uint64_t messages;       /**< --messages: messages per run */
    int process;             /**< --mode process (1) or thread (0) */
    unsigned runs;           /**< --runs: repetitions */
    int csv;                 /**< --csv: machine-readable lines only */
    int latency;             /**< --latency: ping-pong round trips */
    uint64_t latency_count;  /**< round trips measured with --latency */
    int pin[2];              /**< CPUs of producer and consumer, -1: none */
    unsigned consumers;      /**< --consumers (day 5+) */
    int share;               /**< --fanout share (1) or broadcast (0) */
    const char *kind;        /**< --kind (baselines) */
    uint64_t publish_every;  /**< --publish-every (ceiling): pushes per store of head, default 16 */
    int in_slot;             /**< --in-slot (ceiling, with --latency): publish in the slot's own line */
};

/** Parse argv into @p o (defaults: 64 bytes, capacity 1024, 2^26 messages,
 *  thread mode, 1 run, pinned to CPUs 0 and 1 when there are two). Prints
 *  usage and exits on --help or on a bad option. */
void bench_parse(struct bench_opts *o, int argc, char **argv, unsigned flags);

/** Name of the mode, "thread" or "process". */
const char *bench_mode_name(const struct bench_opts *o);

/** Pin the calling thread to CPU @p o->pin[role] if one is set
 *  (role 0: producer, 1: consumer). */
void bench_pin(const struct bench_opts *o, int role);

/** Median of @p n values (sorts @p v). */
double bench_median(double *v, size_t n);

/** After one run: in --csv mode print the run's CSV line
 *  (day,mode,fanout,consumers,msg_size,capacity,messages,seconds,msgs_per_s,mib_per_s);
 *  otherwise print the "Elapsed time"/"Throughput" (MB, 10^6 bytes) lines. */
void bench_report_run(const struct bench_opts *o, const char *day,
                      double seconds);

/** After all runs (when runs > 1 and not --csv): min/median/max. */
void bench_report_runs(const struct bench_opts *o, double *seconds, size_t n);

/** Sort @p rtt (n round trips in ns) and print p50/p99/p99.9/max, as a CSV
 *  line "latency,day,mode,size,count,p50,p99,p999,max" with --csv. */
void bench_report_latency(const struct bench_opts *o, const char *day,
                          uint64_t *rtt, size_t n);

#endif /* SPMC_BENCH_H */
