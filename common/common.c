/* common.c - helpers for the programs around the queue (see common.h). */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char *program_invocation_short_name;

/* "program: message[: strerror(err)]" on one line; err 0 adds nothing. */
static void vreport(int err, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    if (n > 0 && msg[n - 1] == ':')
        msg[--n] = '\0';
    if (err != 0)
        fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, msg, strerror(err));
    else
        fprintf(stderr, "%s: %s\n", program_invocation_short_name, msg);
}

void die(const char *fmt, ...)
{
    int err = errno;
    size_t n = strlen(fmt);
    va_list ap;
    va_start(ap, fmt);
    vreport(n > 0 && fmt[n - 1] == ':' ? err : 0, fmt, ap);
    va_end(ap);
    exit(1);
}

void die_rc(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(rc < 0 ? -rc : rc, fmt, ap);
    va_end(ap);
    exit(1);
}

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int pin_to_cpu(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        return -errno;
    return 0;
}

int usable_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
}

void unique_name(char *buf, size_t len, const char *prefix)
{
    static unsigned counter;
    snprintf(buf, len, "/%s-%ld-%u", prefix, (long)getpid(), counter++);
}

/* Payload word i of message seq: a cheap mix so neighbours differ. */
static inline uint64_t payload_word(uint64_t seq, uint64_t i)
{
    return (seq + 1) * 0x9E3779B97F4A7C15ull ^ (i * 0xBF58476D1CE4E5B9ull);
}

void msg_fill(void *buf, size_t size, uint64_t seq)
{
    unsigned char *p = buf;
    memcpy(p, &seq, sizeof seq);
    size_t i = 1;
    for (; (i + 1) * 8 <= size; i++) {
        uint64_t w = payload_word(seq, i);
        memcpy(p + i * 8, &w, 8);
    }
    if (i * 8 < size) {
        uint64_t w = payload_word(seq, i);
        memcpy(p + i * 8, &w, size - i * 8);
    }
}

uint64_t msg_seq(const void *buf)
{
    uint64_t seq;
    memcpy(&seq, buf, sizeof seq);
    return seq;
}

int msg_intact(const void *buf, size_t size)
{
    const unsigned char *p = buf;
    uint64_t seq = msg_seq(buf);
    size_t i = 1;
    for (; (i + 1) * 8 <= size; i++) {
        uint64_t w;
        memcpy(&w, p + i * 8, 8);
        if (w != payload_word(seq, i))
            return 0;
    }
    if (i * 8 < size) {
        uint64_t w = payload_word(seq, i), got = 0;
        memcpy(&got, p + i * 8, size - i * 8);
        if (memcmp(&got, &w, size - i * 8) != 0)
            return 0;
    }
    return 1;
}

uint64_t msg_checksum(const void *buf, size_t size)
{
    const unsigned char *p = buf;
    uint64_t sum = 0, w;
    size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        memcpy(&w, p + i, 8);
        sum += w;
    }
    if (i < size) {
        w = 0;
        memcpy(&w, p + i, size - i);
        sum += w;
    }
    return sum;
}

uint64_t parse_u64(const char *s, const char *what)
{
    char *end;
    errno = 0;
    if (s == NULL || *s == '\0' || *s == '-')
        die("%s: expected a non-negative integer, got '%s'", what, s ? s : "");
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || *end != '\0')
        die("%s: expected a non-negative integer, got '%s'", what, s);
    return (uint64_t)v;
}
