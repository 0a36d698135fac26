/* test_util.h - small helpers shared by the Check suites in tests/.
 *
 * Cleanup. Every shm name a test uses comes from tu_name(), every child from
 * tu_fork()/tu_spawn(), every pipe from tu_pipe(); the checked fixture's
 * teardown, tu_teardown(), runs deferred cleanups, kills and reaps the
 * children, closes the pipes and shm_unlink()s the names, whether the test
 * passed or failed. Use tu_setup()/tu_teardown() (or functions that call
 * them) with tcase_add_checked_fixture().
 *
 * One catch: in Check's fork mode (the default) a failed assertion ends the
 * test's process with _exit() before the teardown can run. Check then kills
 * the test's whole process group (our children with it), but nothing would
 * unlink the names. So every name starts with the pid of the process that
 * runs the suite, "/spmc-t-<pid>-<counter>", the counter lives in a page
 * shared with Check's forked children so that no two tests of a run share a
 * name, and tu_main(), every suite's main(), calls tu_sweep() after the run
 * to remove whatever of ours is still in /dev/shm.
 *
 * Children. A child made by tu_fork() must leave with _exit() (never return
 * into Check, never call ck_assert: the runner would read its failure as the
 * parent's) and report to the parent through its exit status or a pipe.
 *
 * Time. Nothing here asserts on elapsed time; the deadlines below only stop a
 * hung child or read from blocking a run forever (with CK_FORK=no, Check's
 * own timeouts are off).
 */
#ifndef SPMC_TEST_UTIL_H
#define SPMC_TEST_UTIL_H

#include <check.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ===================================================================== */
/* Day 8's records, as the fixed-size messages of the suites before it     */
/* ===================================================================== */

/* From day 8 on a message is a record of any length: push() takes the
 * length, pop() takes the buffer's size and returns the record's length.
 * The suites written for days 2-7 send messages of the queue's size; run
 * against day 8 they send records of max_record bytes through these
 * wrappers, and a record of any other length fails the pop (-EBADMSG).
 * A suite written for records (check_day8.c) defines TU_RECORDS first. */
#if defined(SPMC_VERSION) && SPMC_VERSION >= 8 && !defined(TU_RECORDS)
static inline int tu_push8(struct spmc_queue *q, const void *msg, int64_t timeout_ns)
{
    return spmc_queue_push(q, msg, q->max_record, timeout_ns);
}
static inline int tu_try_push8(struct spmc_queue *q, const void *msg)
{
    return spmc_queue_try_push(q, msg, q->max_record);
}
static inline int tu_len8(const struct spmc_queue *q, long n)
{
    return n < 0 ? (int)n : (size_t)n == q->max_record ? 0 : -EBADMSG;
}
static inline int tu_pop8(struct spmc_queue *q, void *out, int64_t timeout_ns)
{
    return tu_len8(q, spmc_queue_pop(q, out, q->max_record, timeout_ns));
}
static inline int tu_try_pop8(struct spmc_queue *q, void *out)
{
    return tu_len8(q, spmc_queue_try_pop(q, out, q->max_record));
}
#define spmc_queue_push(q, msg, t) tu_push8((q), (msg), (t))
#define spmc_queue_try_push(q, msg) tu_try_push8((q), (msg))
#define spmc_queue_pop(q, out, t) tu_pop8((q), (out), (t))
#define spmc_queue_try_pop(q, out) tu_try_pop8((q), (out))
/* The message size of the header, the handle and the stats is the largest
 * record's from day 8 on. */
#define elem_size max_record
#endif

/* ===================================================================== */
/* Failing at the caller's line                                            */
/* ===================================================================== */

/* A helper that checks something must not fail with its own line: the
 * learner would not see which line of which test went wrong. So such a
 * helper takes the caller's place, foo_at(..., const char *file, int line);
 * a macro of the helper's old name passes __FILE__ and __LINE__:
 *
 *     #define push_seq(q, s) push_seq_at((q), (s), __FILE__, __LINE__)
 *
 * a helper that calls another passes its own file and line on (to
 * push_seq_at(), not push_seq()), and the checks inside use the macros
 * below, which are Check's ck_assert_msg(), ck_abort_msg(), ck_assert(),
 * ck_assert_int_*() and ck_assert_uint_*() with the place given. Check then
 * reports the test's line as the failure's place (and as its last mark
 * point). In C11 a variadic macro needs at least one variadic argument:
 * always give the message (a printf format, checked as such). */
#define tu_assert_at(file, line, expr, ...)                                                      \
    ((expr) ? _mark_point((file), (line))                                                       \
            : _ck_assert_failed((file), (line), "Assertion '" #expr "' failed", __VA_ARGS__))

/* Fail unconditionally (ck_abort_msg). */
#define tu_abort_at(file, line, ...) _ck_assert_failed((file), (line), "Failed", __VA_ARGS__)

/* ck_assert(expr): the expression is the message. */
#define tu_assert_true_at(file, line, expr)                                                     \
    tu_assert_at((file), (line), expr, "Assertion '%s' failed", #expr)

/* ck_assert_int_eq(X, Y) and friends: tu_assert_int_at(file, line, X, ==, Y);
 * X and Y are evaluated once each, and the message is Check's. */
#define tu_assert_int_at(file, line, X, OP, Y)                                                  \
    do {                                                                                        \
        intmax_t tu_x_ = (X);                                                                   \
        intmax_t tu_y_ = (Y);                                                                   \
        tu_assert_at((file), (line), tu_x_ OP tu_y_,                                            \
                     "Assertion '%s' failed: %s == %jd, %s == %jd", #X " " #OP " " #Y, #X,      \
                     tu_x_, #Y, tu_y_);                                                         \
    } while (0)

/* ck_assert_uint_eq(X, Y) and friends. */
#define tu_assert_uint_at(file, line, X, OP, Y)                                                 \
    do {                                                                                        \
        uintmax_t tu_x_ = (X);                                                                  \
        uintmax_t tu_y_ = (Y);                                                                  \
        tu_assert_at((file), (line), tu_x_ OP tu_y_,                                            \
                     "Assertion '%s' failed: %s == %ju, %s == %ju", #X " " #OP " " #Y, #X,      \
                     tu_x_, #Y, tu_y_);                                                         \
    } while (0)

/* ===================================================================== */
/* State of the running test                                              */
/* ===================================================================== */

#define TU_PREFIX "spmc-t"

enum {
    TU_NAME_LEN = 32,  /* SPMC_NAME_MAX + 1 */
    TU_MAX_NAMES = 16,
    TU_MAX_PIDS = 8,
    TU_MAX_FDS = 16,
    TU_MAX_DEFER = 8,
};

struct tu_deferred {
    void (*fn)(void *);
    void *arg;
};

/* What the current test made and teardown must undo. */
struct tu_state {
    char names[TU_MAX_NAMES][TU_NAME_LEN];
    int n_names;
    pid_t pids[TU_MAX_PIDS];
    int n_pids;
    int fds[TU_MAX_FDS];
    int n_fds;
    struct tu_deferred defer[TU_MAX_DEFER];
    int n_defer;
};

static struct tu_state tu;
static pid_t tu_runner_pid;           /* set by tu_init() */
static _Atomic unsigned *tu_counter;  /* in a MAP_SHARED page, see above */

/** Call once before running the suite (tu_main() does). */
static inline void tu_init(void)
{
    tu_runner_pid = getpid();
    void *page = mmap(NULL, sizeof *tu_counter, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) {
        perror("tu_init: mmap");
        exit(2);
    }
    tu_counter = page;
    atomic_store(tu_counter, 0);
}

/** Checked fixture setup: forget the previous test (with CK_FORK=no all
 *  tests share this process, so nothing may rely on fresh process state). */
static inline void tu_setup(void)
{
    memset(&tu, 0, sizeof tu);
}

/** Run @p fn(@p arg) at teardown (last deferred, first run). */
static inline void tu_defer_at(void (*fn)(void *), void *arg, const char *file, int line)
{
    tu_assert_at(file, line, tu.n_defer < TU_MAX_DEFER, "too many deferred cleanups");
    tu.defer[tu.n_defer].fn = fn;
    tu.defer[tu.n_defer].arg = arg;
    tu.n_defer++;
}
#define tu_defer(fn, arg) tu_defer_at((fn), (arg), __FILE__, __LINE__)

static inline void tu_forget_pid(pid_t pid)
{
    for (int i = 0; i < tu.n_pids; i++)
        if (tu.pids[i] == pid)
            tu.pids[i] = 0;
}

/** Checked fixture teardown: undo everything the test made. */
static inline void tu_teardown(void)
{
    for (int i = tu.n_defer - 1; i >= 0; i--)
        tu.defer[i].fn(tu.defer[i].arg);
    for (int i = 0; i < tu.n_pids; i++) {
        if (tu.pids[i] <= 0)
            continue;
        kill(tu.pids[i], SIGKILL);
        while (waitpid(tu.pids[i], NULL, 0) < 0 && errno == EINTR)
            ;
    }
    for (int i = 0; i < tu.n_fds; i++)
        if (tu.fds[i] >= 0)
            close(tu.fds[i]);
    for (int i = 0; i < tu.n_names; i++)
        shm_unlink(tu.names[i]); /* ENOENT is the usual, good case */
    memset(&tu, 0, sizeof tu);
}

/** Remove every segment of this run still in /dev/shm; returns how many.
 *  Call after srunner_run_all() (tu_main() does). */
static inline int tu_sweep(void)
{
    char prefix[TU_NAME_LEN];
    snprintf(prefix, sizeof prefix, TU_PREFIX "-%ld-", (long)tu_runner_pid);
    DIR *dir = opendir("/dev/shm");
    if (dir == NULL)
        return 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        char name[sizeof e->d_name + 1];
        name[0] = '/';
        memcpy(name + 1, e->d_name, sizeof e->d_name);
        if (shm_unlink(name) == 0) {
            fprintf(stderr, "tu_sweep: removed leftover segment %s\n", name);
            removed++;
        }
    }
    closedir(dir);
    return removed;
}

/** The whole main() of a suite: run @p s (Check's CK_FORK decides how),
 *  then sweep what the run left in /dev/shm. Fails when a test failed or
 *  when a segment was left, which @p name (the program) reports.
 *  Returns the exit status. */
static inline int tu_main(Suite *s, const char *name)
{
    tu_init();
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    int left = tu_sweep();
    if (failed == 0 && left > 0)
        fprintf(stderr, "%s: all tests passed but %d segment(s) were left\n", name, left);
    return failed == 0 && left == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* ===================================================================== */
/* Names, time, environment                                               */
/* ===================================================================== */

/** A fresh shm name "/spmc-t-<pid>-<counter>", unlinked at teardown. */
static inline const char *tu_name_at(const char *file, int line)
{
    tu_assert_at(file, line, tu.n_names < TU_MAX_NAMES, "too many names in one test");
    if (tu_counter == NULL)
        tu_init(); /* no tu_main(): names stay unique, the sweep is weaker */
    char *buf = tu.names[tu.n_names++];
    snprintf(buf, TU_NAME_LEN, "/" TU_PREFIX "-%ld-%u", (long)tu_runner_pid,
             atomic_fetch_add(tu_counter, 1u));
    return buf;
}
#define tu_name() tu_name_at(__FILE__, __LINE__)

/** Remember a name made some other way (from a tu_name() prefix, so that
 *  tu_sweep() knows it too), for teardown to unlink. */
static inline const char *tu_track_name_at(const char *name, const char *file, int line)
{
    tu_assert_at(file, line, tu.n_names < TU_MAX_NAMES, "too many names in one test");
    tu_assert_at(file, line, strlen(name) < TU_NAME_LEN, "name too long to track: %s", name);
    char *buf = tu.names[tu.n_names++];
    memcpy(buf, name, strlen(name) + 1);
    return buf;
}
#define tu_track_name(name) tu_track_name_at((name), __FILE__, __LINE__)

static inline uint64_t tu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void tu_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/** Message count for a stress test: @p def, or SPMC_STRESS_MESSAGES when
 *  that is a smaller positive number (the Makefile sets it under Valgrind
 *  and the sanitizers, which make every operation many times slower).
 *  Never more than @p def: a sanitizer run of a test that pushes 20,000
 *  messages in each of 20 rounds once pushed 500,000 in each instead and
 *  took four minutes. */
static inline uint64_t stress_messages(uint64_t def)
{
    const char *s = getenv("SPMC_STRESS_MESSAGES");
    if (s == NULL || *s == '\0' || *s == '-')
        return def;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || *end != '\0' || v == 0 || v >= def)
        return def;
    return (uint64_t)v;
}

/** 1 when SPMC_STRESS_MESSAGES is set: a run under a sanitizer or
 *  Valgrind, whose every operation costs many times more, and which is
 *  there to find memory errors and data races, not rare interleavings. */
static inline int stress_reduced(void)
{
    const char *s = getenv("SPMC_STRESS_MESSAGES");
    return s != NULL && *s != '\0';
}

/* ===================================================================== */
/* Segments made by hand                                                  */
/* ===================================================================== */

/** Create segment @p name of @p size bytes (no ftruncate when 0: a creator
 *  that died before sizing it) and copy @p len bytes of @p bytes to its
 *  start: a hostile, half-written or foreign segment. 0 or -errno. */
static inline int tu_make_segment(const char *name, size_t size, const void *bytes,
                                  size_t len)
{
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (size > 0 && ftruncate(fd, (off_t)size) != 0)
        rc = -errno;
    if (rc == 0 && len > 0 && size > 0) {
        void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            rc = -errno;
        } else {
            memcpy(map, bytes, len < size ? len : size);
            munmap(map, size);
        }
    }
    close(fd);
    return rc;
}

/** Copy the whole segment @p name into @p buf (at most @p cap bytes);
 *  returns its size, or -errno, or -EFBIG when it does not fit. */
static inline long tu_read_segment(const char *name, void *buf, size_t cap)
{
    int fd = shm_open(name, O_RDONLY, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    long rc;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
    } else if ((size_t)st.st_size > cap) {
        rc = -EFBIG;
    } else if (st.st_size == 0) {
        rc = 0;
    } else {
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            rc = -errno;
        } else {
            memcpy(buf, map, (size_t)st.st_size);
            munmap(map, (size_t)st.st_size);
            rc = (long)st.st_size;
        }
    }
    close(fd);
    return rc;
}

/** Size of segment @p name, or -errno (-ENOENT once it is gone). */
static inline long tu_segment_size(const char *name)
{
    int fd = shm_open(name, O_RDONLY, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    long rc = fstat(fd, &st) == 0 ? (long)st.st_size : -errno;
    close(fd);
    return rc;
}

/* ===================================================================== */
/* Pipes and children                                                     */
/* ===================================================================== */

/** A close-on-exec pipe whose ends teardown closes. */
static inline void tu_pipe_at(int fds[2], const char *file, int line)
{
    tu_assert_at(file, line, tu.n_fds + 2 <= TU_MAX_FDS, "too many descriptors in one test");
    tu_assert_at(file, line, pipe2(fds, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
    tu.fds[tu.n_fds++] = fds[0];
    tu.fds[tu.n_fds++] = fds[1];
}
#define tu_pipe(fds) tu_pipe_at((fds), __FILE__, __LINE__)

/** Close a descriptor tu_pipe() made, now rather than at teardown. */
static inline void tu_close(int *fd)
{
    if (*fd < 0)
        return;
    for (int i = 0; i < tu.n_fds; i++)
        if (tu.fds[i] == *fd)
            tu.fds[i] = -1;
    close(*fd);
    *fd = -1;
}

/** fork(); the parent remembers the child for teardown. In the child,
 *  returns 0: the child must end with _exit(). */
static inline pid_t tu_fork_at(const char *file, int line)
{
    tu_assert_at(file, line, tu.n_pids < TU_MAX_PIDS, "too many children in one test");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    tu_assert_at(file, line, pid >= 0, "fork: %s", strerror(errno));
    if (pid > 0)
        tu.pids[tu.n_pids++] = pid;
    return pid;
}
#define tu_fork() tu_fork_at(__FILE__, __LINE__)

/** Start @p argv[0] with stdout on @p out_fd and stderr on @p err_fd
 *  (-1: inherit). */
static inline pid_t tu_spawn_at(char *const argv[], int out_fd, int err_fd, const char *file,
                                int line)
{
    pid_t pid = tu_fork_at(file, line);
    if (pid == 0) {
        if ((out_fd >= 0 && dup2(out_fd, STDOUT_FILENO) < 0) ||
            (err_fd >= 0 && dup2(err_fd, STDERR_FILENO) < 0))
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}
#define tu_spawn(argv, out_fd, err_fd) tu_spawn_at((argv), (out_fd), (err_fd), __FILE__, __LINE__)

/** Wait for child @p pid; after @p timeout_ms, kill it and fail the test.
 *  Returns its wait status. */
static inline int tu_wait_at(pid_t pid, unsigned timeout_ms, const char *file, int line)
{
    uint64_t deadline = tu_now_ns() + (uint64_t)timeout_ms * 1000000u;
    int status = 0;
    for (unsigned nap_us = 100;; nap_us = nap_us < 10000 ? nap_us * 2 : nap_us) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        tu_assert_at(file, line, r == 0 || errno == EINTR, "waitpid %ld: %s", (long)pid,
                     strerror(errno));
        if (tu_now_ns() >= deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            tu_forget_pid(pid);
            tu_abort_at(file, line, "child %ld still running after %u ms: killed", (long)pid,
                        timeout_ms);
        }
        struct timespec ts = {0, (long)nap_us * 1000L};
        nanosleep(&ts, NULL);
    }
    tu_forget_pid(pid);
    return status;
}
#define tu_wait(pid, timeout_ms) tu_wait_at((pid), (timeout_ms), __FILE__, __LINE__)

/** A wait status in words, for failure messages (static buffer). */
static inline const char *tu_status_str(int status)
{
    static char buf[48];
    if (WIFEXITED(status))
        snprintf(buf, sizeof buf, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, sizeof buf, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, sizeof buf, "wait status 0x%x", (unsigned)status);
    return buf;
}

/** 1 when @p status says the child called exit(0) / _exit(0). */
static inline int tu_exited_ok(int status)
{
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/** Read up to @p len bytes from @p fd into @p buf, stopping at end of file;
 *  fails the test after @p timeout_ms. Returns the bytes read. */
static inline size_t tu_read_full_at(int fd, void *buf, size_t len, unsigned timeout_ms,
                                     const char *file, int line)
{
    uint64_t deadline = tu_now_ns() + (uint64_t)timeout_ms * 1000000u;
    size_t got = 0;
    while (got < len) {
        uint64_t now = tu_now_ns();
        tu_assert_at(file, line, now < deadline, "no data on fd %d within %u ms", fd, timeout_ms);
        struct pollfd p = {fd, POLLIN, 0};
        int n = poll(&p, 1, (int)((deadline - now) / 1000000u) + 1);
        if (n < 0 && errno == EINTR)
            continue;
        tu_assert_at(file, line, n >= 0, "poll: %s", strerror(errno));
        if (n == 0)
            continue;
        ssize_t r = read(fd, (char *)buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        tu_assert_at(file, line, r >= 0, "read: %s", strerror(errno));
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return got;
}
#define tu_read_full(fd, buf, len, timeout_ms)                                                  \
    tu_read_full_at((fd), (buf), (len), (timeout_ms), __FILE__, __LINE__)

/** Append what @p fd delivers to the NUL-terminated text @p buf (@p len
 *  bytes so far, room for @p cap) until the text contains @p needle, or, if
 *  @p needle is NULL, until end of file. Fails the test after @p timeout_ms.
 *  Returns 1 when @p needle was found (or end of file reached for NULL),
 *  0 on end of file without it. */
static inline int tu_read_until_at(int fd, char *buf, size_t cap, size_t *len,
                                   const char *needle, unsigned timeout_ms, const char *file,
                                   int line)
{
    uint64_t deadline = tu_now_ns() + (uint64_t)timeout_ms * 1000000u;
    buf[*len] = '\0';
    for (;;) {
        if (needle != NULL && strstr(buf, needle) != NULL)
            return 1;
        uint64_t now = tu_now_ns();
        tu_assert_at(file, line, now < deadline, "waited %u ms for %s; read so far:\n%s",
                     timeout_ms, needle ? needle : "end of output", buf);
        struct pollfd p = {fd, POLLIN, 0};
        int n = poll(&p, 1, (int)((deadline - now) / 1000000u) + 1);
        if (n < 0 && errno == EINTR)
            continue;
        tu_assert_at(file, line, n >= 0, "poll: %s", strerror(errno));
        if (n == 0)
            continue;
        char scratch[512];
        size_t room = cap - 1 - *len;
        ssize_t r = read(fd, room > 0 ? buf + *len : scratch, room > 0 ? room : sizeof scratch);
        if (r < 0 && errno == EINTR)
            continue;
        tu_assert_at(file, line, r >= 0, "read: %s", strerror(errno));
        if (r == 0)
            return needle == NULL;
        if (room > 0) {
            *len += (size_t)r;
            buf[*len] = '\0';
        }
    }
}
#define tu_read_until(fd, buf, cap, len, needle, timeout_ms)                                    \
    tu_read_until_at((fd), (buf), (cap), (len), (needle), (timeout_ms), __FILE__, __LINE__)

/** Run @p argv to completion with stdout and stderr captured (each cut to
 *  its buffer, NUL-terminated). Returns the wait status. */
static inline int tu_run_at(char *const argv[], char *out, size_t out_cap, char *err,
                            size_t err_cap, unsigned timeout_ms, const char *file, int line)
{
    int o[2], e[2];
    tu_pipe_at(o, file, line);
    tu_pipe_at(e, file, line);
    pid_t pid = tu_spawn_at(argv, o[1], e[1], file, line);
    tu_close(&o[1]);
    tu_close(&e[1]);
    size_t olen = 0, elen = 0;
    out[0] = err[0] = '\0';
    uint64_t deadline = tu_now_ns() + (uint64_t)timeout_ms * 1000000u;
    while (o[0] >= 0 || e[0] >= 0) {
        uint64_t now = tu_now_ns();
        tu_assert_at(file, line, now < deadline, "%s still writing after %u ms", argv[0],
                     timeout_ms);
        struct pollfd p[2] = {{o[0], POLLIN, 0}, {e[0], POLLIN, 0}};
        int n = poll(p, 2, (int)((deadline - now) / 1000000u) + 1);
        if (n < 0 && errno == EINTR)
            continue;
        tu_assert_at(file, line, n >= 0, "poll: %s", strerror(errno));
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || p[i].revents == 0)
                continue;
            char *buf = i == 0 ? out : err;
            size_t cap = i == 0 ? out_cap : err_cap;
            size_t *len = i == 0 ? &olen : &elen;
            char scratch[512];
            size_t room = cap - 1 - *len;
            ssize_t r = read(p[i].fd, room > 0 ? buf + *len : scratch,
                             room > 0 ? room : sizeof scratch);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                tu_close(i == 0 ? &o[0] : &e[0]);
                continue;
            }
            if (room > 0) {
                *len += (size_t)r;
                buf[*len] = '\0';
            }
        }
    }
    uint64_t now = tu_now_ns();
    return tu_wait_at(pid, now < deadline ? (unsigned)((deadline - now) / 1000000u) + 1 : 1,
                      file, line);
}
#define tu_run(argv, out, out_cap, err, err_cap, timeout_ms)                                    \
    tu_run_at((argv), (out), (out_cap), (err), (err_cap), (timeout_ms), __FILE__, __LINE__)

#endif /* SPMC_TEST_UTIL_H */
