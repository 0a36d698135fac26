/* spmc_queue.c - day 2: a queue API over a shared header (racy by design). */
#define _POSIX_C_SOURCE 200809L
#include "spmc_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The wire format: every field at the same offset in every process that
 * maps the segment. Only offsetof pins an offset; sizeof pins the total
 * alone (i386, for one, aligns uint64_t to 4 bytes inside a struct). */
_Static_assert(offsetof(struct spmc_shm_header, elem_size) == 16, "wire format");
_Static_assert(offsetof(struct spmc_shm_header, capacity) == 24, "wire format");
_Static_assert(offsetof(struct spmc_shm_header, ready) == 32, "wire format");
_Static_assert(offsetof(struct spmc_shm_header, head) == 48, "wire format");
_Static_assert(offsetof(struct spmc_shm_header, tail) == 56, "wire format");
_Static_assert(sizeof(struct spmc_shm_header) == 64, "slots start on line 1");

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

/* Bytes of a segment holding capacity slots of elem_size; 0 on overflow. */
static size_t segment_size(uint64_t elem_size, uint64_t capacity)
{
    const size_t room = SIZE_MAX / 2 - sizeof(struct spmc_shm_header);
    if (elem_size == 0 || capacity == 0 || elem_size > room || capacity > room / elem_size)
        return 0;
    return sizeof(struct spmc_shm_header) + (size_t)(elem_size * capacity);
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

/* Spin a little, then yield, then sleep: a waiter that shares its core with
 * the process it waits for must let that process run. The clock is read only
 * once spinning is over, so a short wait costs no system time at all. */
struct waiter {
    unsigned rounds;
    int64_t timeout_ns;
    uint64_t deadline; /* 0 until the spinning is over */
};

enum { PLAIN_ROUNDS = 64, SPIN_ROUNDS = 256, YIELD_ROUNDS = 256 + 1024 };

static void wait_start(struct waiter *w, int64_t timeout_ns)
{
    w->rounds = 0;
    w->timeout_ns = timeout_ns;
    w->deadline = 0;
}

/* One more round of waiting; -ETIMEDOUT once the deadline has passed. The
 * timeout counts from the end of the spinning (a few microseconds late). */
static int wait_more(struct waiter *w)
{
    unsigned r = ++w->rounds;
    if (r < SPIN_ROUNDS) {
        if (r > PLAIN_ROUNDS) /* first re-check at once, then politely */
            cpu_relax();
        return 0;
    }
    if (w->timeout_ns >= 0) {
        uint64_t now = mono_ns();
        if (w->deadline == 0)
            w->deadline = now + (uint64_t)w->timeout_ns;
        else if (now >= w->deadline)
            return -ETIMEDOUT;
    }
    if (r < YIELD_ROUNDS) {
        sched_yield();
    } else {
        struct timespec nap = {0, 50000}; /* 50 us */
        nanosleep(&nap, NULL);
        w->rounds = YIELD_ROUNDS; /* no overflow, however long we wait */
    }
    return 0;
}

/* ===================================================================== */
/* Creating (writer)                                                       */
/* ===================================================================== */

int spmc_queue_create(struct spmc_queue *q, const char *name, size_t elem_size,
                      size_t capacity)
{
    if (q == NULL)
        return -EINVAL;
    memset(q, 0, sizeof *q);
    int rc = check_name(name);
    if (rc != 0)
        return rc;
    size_t size = segment_size(elem_size, capacity);
    if (size == 0)
        return -EINVAL;

    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) != 0) {
        rc = errno == EFBIG ? -ENOMEM : -errno;
        goto fail_unlink;
    }
    /* Reserve the memory now: a full /dev/shm fails here with -ENOSPC,
     * not with SIGBUS at the first write to a page tmpfs cannot give. */
    rc = posix_fallocate(fd, 0, (off_t)size);
    if (rc != 0) {
        rc = rc == EFBIG ? -ENOSPC : -rc;
        goto fail_unlink;
    }
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        rc = -errno;
        goto fail_unlink;
    }
    close(fd);

    struct spmc_shm_header *h = map;
    h->magic = SPMC_MAGIC;
    h->version = SPMC_VERSION;
    h->header_size = sizeof *h;
    h->cacheline = SPMC_CACHELINE;
    h->elem_size = elem_size;
    h->capacity = capacity;
    h->readers = 0;
    h->closed = 0;
    h->head = 0;
    h->tail = 0;
    h->ready = SPMC_READY; /* last, we hope: nothing stops the compiler or CPU reordering */

    q->hdr = h;
    q->slots = (unsigned char *)map + sizeof *h;
    q->map_size = size;
    q->elem_size = elem_size;
    q->capacity = capacity;
    q->mode = SPMC_WRITER;
    memcpy(q->name, name, strlen(name) + 1);
    return 0;

fail_unlink:
    shm_unlink(name);
    close(fd);
    return rc;
}

int spmc_queue_wait_readers(struct spmc_queue *q, unsigned count, int64_t timeout_ns)
{
    if (q == NULL || q->mode != SPMC_WRITER || count > 1)
        return -EINVAL;
    struct waiter w;
    wait_start(&w, timeout_ns);
    while (q->hdr->readers < count) {
        int rc = wait_more(&w);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ===================================================================== */
/* Attaching (reader)                                                      */
/* ===================================================================== */

/* The fields an attacher needs, read once from the shared header so that a
 * process changing them later cannot make us use values we did not check. */
struct header_copy {
    uint32_t magic, version, header_size, cacheline;
    uint64_t elem_size, capacity;
};

/* Check a header the creator has published; 0 or -EPROTO. */
static int check_header(const struct header_copy *c, size_t elem_size,
                        size_t capacity, off_t file_size)
{
    if (c->magic != SPMC_MAGIC || c->version != SPMC_VERSION ||
        c->header_size != sizeof(struct spmc_shm_header) ||
        c->cacheline != SPMC_CACHELINE)
        return -EPROTO;
    if ((elem_size != 0 && c->elem_size != elem_size) ||
        (capacity != 0 && c->capacity != capacity))
        return -EPROTO;
    size_t size = segment_size(c->elem_size, c->capacity);
    /* Exactly the size its creator made: fields lowered after the fact
     * would describe a smaller layout, inside the file, that is not the
     * one the writer uses. */
    if (size == 0 || (uint64_t)file_size != size)
        return -EPROTO;
    return 0;
}

int spmc_queue_attach(struct spmc_queue *q, const char *name, size_t elem_size,
                      size_t capacity)
{
    if (q == NULL)
        return -EINVAL;
    memset(q, 0, sizeof *q);
    int rc = check_name(name);
    if (rc != 0)
        return rc;
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0)
        return -errno;

    /* The creator may still be sizing the segment or writing the header:
     * wait a bounded time for the size, then for the ready word. */
    struct spmc_shm_header *h = MAP_FAILED;
    struct stat st;
    uint64_t deadline = mono_ns() + SPMC_ATTACH_WAIT_NS;
    struct timespec nap = {0, 1000000}; /* 1 ms */
    for (;;) {
        if (fstat(fd, &st) != 0) {
            rc = -errno;
            goto fail;
        }
        if ((size_t)st.st_size >= sizeof *h)
            break;
        if (mono_ns() >= deadline) {
            rc = -EPROTO;
            goto fail;
        }
        nanosleep(&nap, NULL);
    }
    h = mmap(NULL, sizeof *h, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED) {
        rc = -errno;
        goto fail;
    }
    while (h->ready != SPMC_READY) {
        if (mono_ns() >= deadline) {
            rc = -EPROTO;
            goto fail;
        }
        nanosleep(&nap, NULL);
    }
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto fail;
    }
    struct header_copy c = {h->magic, h->version, h->header_size,
                            h->cacheline, h->elem_size, h->capacity};
    rc = check_header(&c, elem_size, capacity, st.st_size);
    if (rc != 0)
        goto fail;

    /* From here on only the checked copies are used. */
    q->elem_size = (size_t)c.elem_size;
    q->capacity = c.capacity;
    q->map_size = segment_size(c.elem_size, c.capacity);
    munmap(h, sizeof *h);
    h = mmap(NULL, q->map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED) {
        rc = -errno;
        goto fail;
    }
    close(fd);
    fd = -1;

    if (h->readers != 0) { /* check, then set: two readers can both pass */
        rc = -EBUSY;
        munmap(h, q->map_size);
        goto fail_clear;
    }
    h->readers = 1;
    q->hdr = h;
    q->slots = (unsigned char *)h + sizeof *h;
    q->mode = SPMC_READER;
    memcpy(q->name, name, strlen(name) + 1);
    return 0;

fail:
    if (h != MAP_FAILED)
        munmap(h, sizeof *h);
    if (fd >= 0)
        close(fd);
fail_clear:
    memset(q, 0, sizeof *q);
    return rc;
}

/* ===================================================================== */
/* Pushing                                                                 */
/* ===================================================================== */

int spmc_queue_try_push(struct spmc_queue *q, const void *msg)
{
    if (q == NULL || q->mode != SPMC_WRITER || msg == NULL)
        return -EINVAL;
    struct spmc_shm_header *h = q->hdr;
    uint64_t head = h->head;
    if (head >= q->capacity)
        return -ENOSPC;
    memcpy(q->slots + head * q->elem_size, msg, q->elem_size);
    h->head = head + 1; /* may become visible before the bytes above */
    return 0;
}

/* ===================================================================== */
/* Popping                                                                 */
/* ===================================================================== */

int spmc_queue_try_pop(struct spmc_queue *q, void *out)
{
    if (q == NULL || q->mode != SPMC_READER || out == NULL)
        return -EINVAL;
    struct spmc_shm_header *h = q->hdr;
    uint64_t tail = h->tail;
    uint64_t head = h->head;
    if (head == tail)
        return h->closed ? -EPIPE : -EAGAIN;
    if (head > q->capacity || tail > head)
        return -EPROTO;
    memcpy(out, q->slots + tail * q->elem_size, q->elem_size);
    h->tail = tail + 1;
    return 0;
}

/* ===================================================================== */
/* Tearing down                                                            */
/* ===================================================================== */

int spmc_queue_destroy(struct spmc_queue *q)
{
    if (q == NULL || q->hdr == NULL)
        return -EINVAL;
    if (q->mode == SPMC_WRITER) {
        q->hdr->closed = 1;
        shm_unlink(q->name);
    } else {
        q->hdr->readers = 0;
    }
    munmap(q->hdr, q->map_size);
    memset(q, 0, sizeof *q);
    return 0;
}
