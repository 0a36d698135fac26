/* offsets.c - fill a day's layout picture (docs/layout/dayN.dot.in) with
 * the offsets its compiler gives that day's shared segment.
 *
 * Built once per day by docs/layout/draw.sh, against that day's
 * spmc_queue.h and spmc_queue.c, with a generated "fields.h" that lists the
 * members of struct spmc_shm_header (and struct spmc_shm_reader, from day 5)
 * in the order the header declares them:
 *
 *     HEADER_FIELD(magic, "uint32_t")
 *     READER_FIELD(cursor, "_Atomic uint64_t")
 *
 * Every offset and size printed comes from offsetof() and sizeof(); the
 * regions after the header are measured on a real queue made with
 * spmc_queue_create() (64-byte messages, capacity 1024) and checked against
 * the formulas the picture states.
 *
 * usage: offsets TEMPLATE > dayN.dot
 *
 * In TEMPLATE, @SEGMENT@ becomes an HTML-like Graphviz table of the header's
 * fields (one row each, grouped by cache line, padding shown) and of the
 * regions after it (their cells are ports: seg:table, seg:slots, ...),
 * @READER@ a table of one reader-table entry (day 5 on), @EXAMPLE@ the
 * example queue's sizes, @off_FIELD@ a header field's offset and
 * @sizeof_header@ / @sizeof_reader@ the structs' sizes. */
#define _GNU_SOURCE
#include "spmc_queue.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EX_ELEM 64
#define EX_CAPACITY 1024

struct field {
    const char *name, *type;
    size_t off, size;
};

#define HEADER_FIELD(n, t) {#n, t, offsetof(struct spmc_shm_header, n), \
                            sizeof(((struct spmc_shm_header *)0)->n)},
#define READER_FIELD(n, t)
static const struct field header[] = {
#include "fields.h"
};
#undef HEADER_FIELD
#undef READER_FIELD

#ifdef SPMC_MAX_READERS /* day 5 on: a reader table follows the header */
#define HEADER_FIELD(n, t)
#define READER_FIELD(n, t) {#n, t, offsetof(struct spmc_shm_reader, n), \
                            sizeof(((struct spmc_shm_reader *)0)->n)},
static const struct field reader[] = {
#include "fields.h"
};
#undef HEADER_FIELD
#undef READER_FIELD
#endif

/* ===================================================================== */
/* A growing string                                                        */
/* ===================================================================== */

struct buf {
    char *p;
    size_t len, cap;
};

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("offsets: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void add(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        die("vsnprintf failed");
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL)
            die("out of memory");
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* ===================================================================== */
/* Tables                                                                  */
/* ===================================================================== */

/* One colour per cache line, repeating. */
static const char *line_colour(size_t line)
{
    static const char *colours[] = {"#dbe8fb", "#fbe6cf", "#dff2e1", "#f6dcdc"};
    return colours[line % 4];
}

#define TABLE "<TABLE BORDER=\"0\" CELLBORDER=\"1\" CELLSPACING=\"0\" CELLPADDING=\"3\">"
#define GREY "<FONT COLOR=\"#555555\">"

/* Rows of the fields of a struct of @p total bytes: offset, size, name and
 * type, padding shown as its own row, the cache line in the first column
 * (one cell spanning its rows). */
static void field_rows(struct buf *b, const struct field *f, size_t n, size_t total)
{
    /* Row list with the padding made explicit. */
    struct row {
        size_t off, size;
        const struct field *f;
    } rows[64];
    size_t nr = 0, at = 0;
    for (size_t i = 0; i <= n; i++) {
        size_t next = i < n ? f[i].off : total;
        if (next < at)
            die("fields out of order at %s", i < n ? f[i].name : "the end");
        if (next > at) /* a hole the compiler left: padding or alignas */
            rows[nr++] = (struct row){at, next - at, NULL};
        if (i < n) {
            rows[nr++] = (struct row){f[i].off, f[i].size, &f[i]};
            at = f[i].off + f[i].size;
        }
        if (nr + 2 > sizeof rows / sizeof rows[0])
            die("too many fields");
    }
    for (size_t r = 0; r < nr; r++) {
        size_t line = rows[r].off / SPMC_CACHELINE;
        const char *bg = line_colour(line);
        add(b, "<TR>");
        if (r == 0 || rows[r - 1].off / SPMC_CACHELINE != line) {
            size_t span = 0;
            while (r + span < nr && rows[r + span].off / SPMC_CACHELINE == line)
                span++;
            add(b, "<TD ROWSPAN=\"%zu\" BGCOLOR=\"%s\">line %zu</TD>", span, bg, line);
        }
        add(b, "<TD ALIGN=\"RIGHT\" BGCOLOR=\"%s\">%zu</TD><TD ALIGN=\"RIGHT\" BGCOLOR=\"%s\">%zu</TD>",
            bg, rows[r].off, bg, rows[r].size);
        if (rows[r].f != NULL)
            add(b, "<TD ALIGN=\"LEFT\" BGCOLOR=\"%s\">%s " GREY "%s</FONT></TD>", bg,
                rows[r].f->name, rows[r].f->type);
        else
            add(b, "<TD ALIGN=\"LEFT\" BGCOLOR=\"%s\">" GREY "<I>padding</I></FONT></TD>", bg);
        add(b, "</TR>\n");
    }
}

static void head_rows(struct buf *b, const char *title)
{
    add(b, TABLE "\n<TR><TD COLSPAN=\"4\"><B>%s</B></TD></TR>\n", title);
    add(b, "<TR><TD>" GREY "line</FONT></TD><TD>" GREY "offset</FONT></TD>"
           "<TD>" GREY "size</FONT></TD><TD ALIGN=\"LEFT\">" GREY "field</FONT></TD></TR>\n");
}

/* A region after the header: offset as a formula and as the example's
 * number, what it holds. */
static void region_row(struct buf *b, const char *port, const char *formula, size_t at,
                       const char *what, const char *size)
{
    add(b, "<TR><TD COLSPAN=\"2\" ALIGN=\"RIGHT\">%s<BR ALIGN=\"RIGHT\"/>" GREY
           "e.g. %zu</FONT><BR ALIGN=\"RIGHT\"/></TD>"
           "<TD COLSPAN=\"2\" ALIGN=\"LEFT\" PORT=\"%s\">%s", formula, at, port, what);
    if (size[0] != '\0')
        add(b, "<BR ALIGN=\"LEFT\"/>" GREY "%s</FONT><BR ALIGN=\"LEFT\"/>", size);
    add(b, "</TD></TR>\n");
}

/* ===================================================================== */
/* The example queue                                                       */
/* ===================================================================== */

struct example {
    size_t table, slots, words, headers, size, slot_size;
};

/* Make a queue with the day's own code and measure where its parts are. */
static struct example measure(void)
{
    char name[SPMC_NAME_MAX + 1];
    snprintf(name, sizeof name, "/spmc-layout-%ld", (long)getpid());
    struct spmc_queue q;
    int rc = spmc_queue_create(&q, name, EX_ELEM, EX_CAPACITY);
    if (rc != 0)
        die("cannot create the example queue %s: %s", name, strerror(-rc));
    const unsigned char *base = (const unsigned char *)q.hdr;
    struct example ex = {0};
    ex.slots = (size_t)(q.slots - base);
    ex.size = q.map_size;
#ifdef SPMC_MAX_READERS
    ex.table = (size_t)((const unsigned char *)q.readers - base);
    ex.words = (size_t)((const unsigned char *)q.words - base);
    ex.slot_size = q.slot_size;
#ifdef SPMC_SLOT
    ex.headers = (size_t)((const unsigned char *)q.headers - base);
#endif
#else
    ex.slot_size = q.elem_size;
#endif
    if (spmc_queue_destroy(&q) != 0)
        die("cannot destroy the example queue %s", name);
    return ex;
}

/* The formulas the picture states must give the example's numbers. */
static void check(const char *what, size_t formula, size_t measured)
{
    if (formula != measured)
        die("%s: the picture's formula gives %zu, the code %zu", what, formula, measured);
}

/* ===================================================================== */
/* Filling in the template                                                 */
/* ===================================================================== */

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        die("cannot open %s: %s", path, strerror(errno));
    struct buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        add(&b, "%.*s", (int)n, chunk);
    if (ferror(f))
        die("cannot read %s", path);
    fclose(f);
    return b.p ? b.p : strdup("");
}

int main(int argc, char **argv)
{
    if (argc != 2)
        die("usage: offsets TEMPLATE > dayN.dot");
    char *tpl = read_all(argv[1]);
    const size_t nh = sizeof header / sizeof header[0];
    const size_t hsize = sizeof(struct spmc_shm_header);
    struct example ex = measure();

    struct buf seg = {0}, ent = {0}, exs = {0};
    char title[96];
    snprintf(title, sizeof title, "struct spmc_shm_header, %zu bytes", hsize);
    head_rows(&seg, title);
    field_rows(&seg, header, nh, hsize);
#ifdef SPMC_MAX_READERS
    const size_t rsize = sizeof(struct spmc_shm_reader);
    const size_t round = SPMC_CACHELINE;
    check("reader table", hsize, ex.table);
    check("slots", hsize + (size_t)SPMC_DEFAULT_READERS * rsize, ex.slots);
    check("hand-back words", ex.slots + (EX_CAPACITY * ex.slot_size + round - 1) / round * round,
          ex.words);
#ifdef SPMC_SLOT /* day 8: a record header per slot after the hand-back words */
    check("record headers", ex.words + EX_CAPACITY * sizeof(uint64_t), ex.headers);
    check("segment size", ex.headers + EX_CAPACITY * sizeof(uint64_t), ex.size);
#else
    check("segment size", ex.words + EX_CAPACITY * sizeof(uint64_t), ex.size);
#endif
    char f1[64], f2[64], s1[64], s2[64], s3[64];
    snprintf(f1, sizeof f1, "%zu", hsize);
    snprintf(s1, sizeof s1, "max_readers &#215; %zu bytes", rsize);
    region_row(&seg, "table", f1, ex.table, "reader table", s1);
    snprintf(f2, sizeof f2, "%zu + %zu &#215; max_readers", hsize, rsize);
    snprintf(s2, sizeof s2, "capacity &#215; slot_size, up to a line");
    region_row(&seg, "slots", f2, ex.slots, "slots", s2);
    snprintf(s3, sizeof s3, "capacity &#215; %zu bytes", sizeof(uint64_t));
    region_row(&seg, "words", "slots + their bytes", ex.words, "hand-back words", s3);
#ifdef SPMC_SLOT
    region_row(&seg, "headers", "words + capacity &#215; 8", ex.headers, "record headers", s3);
    region_row(&seg, "end", "end", ex.size, "(segment size)", "");
    add(&exs, "records of up to %d bytes in %zu-byte slots, capacity %d, %u reader entries",
        EX_ELEM, ex.slot_size, EX_CAPACITY, (unsigned)SPMC_DEFAULT_READERS);
#else
    region_row(&seg, "end", "end", ex.size, "(segment size)", "");
    add(&exs, "%d-byte messages (slot_size %zu), capacity %d, %u reader entries",
        EX_ELEM, ex.slot_size, EX_CAPACITY, (unsigned)SPMC_DEFAULT_READERS);
#endif

    head_rows(&ent, "struct spmc_shm_reader (one entry)");
    field_rows(&ent, reader, sizeof reader / sizeof reader[0], rsize);
    add(&ent, "</TABLE>");
#else
    check("slots", hsize, ex.slots);
    check("segment size", hsize + EX_CAPACITY * ex.slot_size, ex.size);
    char f1[32];
    snprintf(f1, sizeof f1, "%zu", hsize);
    region_row(&seg, "slots", f1, ex.slots, "slots 0 .. capacity-1", "capacity &#215; elem_size bytes");
    region_row(&seg, "end", "end", ex.size, "(segment size)", "");
    add(&exs, "%d-byte messages, capacity %d", EX_ELEM, EX_CAPACITY);
#endif
    add(&seg, "</TABLE>");

    /* Copy the template, replacing each @token@. */
    for (const char *p = tpl; *p != '\0';) {
        const char *end = *p == '@' ? strchr(p + 1, '@') : NULL;
        if (end == NULL || end - p > 64 || memchr(p, '\n', (size_t)(end - p)) != NULL) {
            putchar(*p++);
            continue;
        }
        char tok[72];
        snprintf(tok, sizeof tok, "%.*s", (int)(end - p - 1), p + 1);
        int found = 1;
        if (strcmp(tok, "SEGMENT") == 0)
            fputs(seg.p, stdout);
        else if (strcmp(tok, "EXAMPLE") == 0)
            fputs(exs.p, stdout);
        else if (strcmp(tok, "sizeof_header") == 0)
            printf("%zu", hsize);
#ifdef SPMC_MAX_READERS
        else if (strcmp(tok, "READER") == 0)
            fputs(ent.p, stdout);
        else if (strcmp(tok, "sizeof_reader") == 0)
            printf("%zu", rsize);
#endif
        else if (strncmp(tok, "off_", 4) == 0) {
            found = 0;
            for (size_t i = 0; i < nh && !found; i++)
                if (strcmp(tok + 4, header[i].name) == 0) {
                    printf("%zu", header[i].off);
                    found = 1;
                }
        } else
            found = 0;
        if (!found)
            die("%s: unknown token @%s@", argv[1], tok);
        p = end + 1;
    }
    if (fflush(stdout) != 0)
        die("cannot write: %s", strerror(errno));
    free(tpl);
    free(seg.p);
    free(ent.p);
    free(exs.p);
    return 0;
}
