#include "store/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "store/file_io.h"

/* A journal never grows past what its store's policy allows (about the state's size); this bounds
 * what a load reads from a file someone else may have grown. */
#define JOURNAL_MAX_BYTES ((size_t)128 * 1024 * 1024)

struct journal {
    char *path; /* "<state>.journal" */
    char *tmp;  /* "<state>.tmp.journal.<pid>": the store removes "<state>.tmp.*" left by a crash */
    char *dir;
    int fd;              /* open for appends once read or reset for the current state; -1 */
    size_t size;         /* the file's length: header and whole records */
    size_t header_len;   /* the header line's length */
    struct journal_base base;
    bool have_base;      /* `base` is the current state's: an append may start a new journal */
};

static char *with_suffix(const char *path, const char *suffix) {
    size_t a = strlen(path), b = strlen(suffix);
    char *out = malloc(a + b + 1);
    if (!out) abort();
    memcpy(out, path, a);
    memcpy(out + a, suffix, b + 1);
    return out;
}

struct journal_base journal_base_of(const char *text, size_t len) {
    uLong crc = crc32(0L, Z_NULL, 0);
    /* zlib takes uInt lengths: feed large states in slices */
    for (size_t off = 0; off < len;) {
        size_t n = len - off > 0x40000000u ? 0x40000000u : len - off;
        crc = crc32(crc, (const Bytef *)text + off, (uInt)n);
        off += n;
    }
    return (struct journal_base){len, (uint32_t)crc};
}

static uint32_t crc_of(const char *p, size_t len) {
    return journal_base_of(p, len).crc;
}

struct journal *journal_new(const char *state_path) {
    struct journal *j = calloc(1, sizeof *j);
    if (!j) abort();
    j->fd = -1;
    char tmp_suffix[48];
    snprintf(tmp_suffix, sizeof tmp_suffix, ".tmp.journal.%ld", (long)getpid());
    j->path = with_suffix(state_path, ".journal");
    j->tmp = with_suffix(state_path, tmp_suffix);
    const char *slash = strrchr(state_path, '/');
    if (!slash)
        j->dir = strdup(".");
    else
        j->dir = slash == state_path ? strdup("/") : strndup(state_path, (size_t)(slash - state_path));
    if (!j->dir) abort();
    return j;
}

void journal_free(struct journal *j) {
    if (!j) return;
    if (j->fd >= 0) close(j->fd);
    free(j->path);
    free(j->tmp);
    free(j->dir);
    free(j);
}

size_t journal_size(const struct journal *j) {
    return j->fd >= 0 ? j->size - j->header_len : 0;
}

static int header(char *buf, size_t cap, struct journal_base base) {
    return snprintf(buf, cap, "weir-journal 1 %zu %08x\n", base.len, (unsigned)base.crc);
}

/* Parses the record line at `p` (without its '\n', `len` bytes); NULL when torn or damaged. */
static json_t *parse_record(const char *p, size_t len) {
    if (len < 10 || p[8] != ' ') return NULL;
    char hex[9];
    memcpy(hex, p, 8);
    hex[8] = '\0';
    char *end;
    unsigned long want = strtoul(hex, &end, 16);
    if (*end || crc_of(p + 9, len - 9) != (uint32_t)want) return NULL;
    return json_loadb(p + 9, len - 9, JSON_REJECT_DUPLICATES, NULL);
}

int journal_read(struct journal *j, struct journal_base base, json_t **records,
                 struct errlist *errs) {
    *records = NULL;
    if (j->fd >= 0) close(j->fd);
    j->fd = -1;
    j->base = base;
    j->have_base = true;
    int fd = open(j->path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT) {
            errlist_addf(errs, j->path, "cannot open: %s", strerror(errno));
            return -1;
        }
        *records = json_array();
        return 0;
    }
    char *buf;
    size_t len;
    if (file_read_all(fd, JOURNAL_MAX_BYTES, &buf, &len) != 0) {
        errlist_addf(errs, j->path, "cannot read: %s", strerror(errno));
        close(fd);
        return -1;
    }
    char want[64];
    int hlen = header(want, sizeof want, base);
    const char *nl = memchr(buf, '\n', len);
    if (!nl || strncmp(buf, "weir-journal 1 ", 15) != 0) {
        errlist_addf(errs, j->path, "not a Weir store journal (no \"weir-journal 1\" header)");
        free(buf);
        close(fd);
        return -1;
    }
    *records = json_array();
    if ((size_t)(nl + 1 - buf) != (size_t)hlen || memcmp(buf, want, (size_t)hlen) != 0) {
        /* another state's journal: its records are in the state already (see journal.h) */
        free(buf);
        close(fd);
        return 0;
    }
    size_t good = (size_t)hlen, line_no = 1;
    for (size_t at = good; at < len; line_no++) {
        const char *line = buf + at, *eol = memchr(line, '\n', len - at);
        size_t next = eol ? (size_t)(eol - buf) + 1 : len;
        json_t *rec = eol ? parse_record(line, (size_t)(eol - line)) : NULL;
        if (!rec) {
            if (next == len) break; /* the last append, torn by a crash: never acknowledged */
            errlist_addf(errs, j->path,
                         "line %zu is damaged (bad checksum or JSON) and records follow it; "
                         "the store will not start without them",
                         line_no + 1);
            json_decref(*records);
            *records = NULL;
            free(buf);
            close(fd);
            return -1;
        }
        json_array_append_new(*records, rec);
        good = next;
        at = next;
    }
    free(buf);
    if (good < len && (ftruncate(fd, (off_t)good) != 0 || fdatasync(fd) != 0)) {
        errlist_addf(errs, j->path, "cannot cut off a torn last record: %s", strerror(errno));
        json_decref(*records);
        *records = NULL;
        close(fd);
        return -1;
    }
    j->fd = fd;
    j->size = good;
    j->header_len = (size_t)hlen;
    return 0;
}

int journal_reset(struct journal *j, struct journal_base base, struct errlist *errs) {
    if (j->fd >= 0) close(j->fd);
    j->fd = -1;
    j->base = base;
    j->have_base = true;
    char head[64];
    int hlen = header(head, sizeof head, base);
    int flags = O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    int fd = open(j->tmp, flags, 0600);
    if (fd < 0 && errno == EEXIST && unlink(j->tmp) == 0) fd = open(j->tmp, flags, 0600);
    const char *what = "create";
    if (fd < 0) goto fail;
    what = "write";
    if (fchmod(fd, 0600) != 0 || file_write_all(fd, head, (size_t)hlen) != 0) goto fail;
    what = "fsync";
    if (fsync(fd) != 0) goto fail;
    what = "rename";
    if (rename(j->tmp, j->path) != 0) goto fail;
    /* Until the directory is fsynced the new journal's name may not survive a power loss, and
     * records appended to it would be lost with it. */
    if (file_fsync_dir(j->dir) != 0) {
        errlist_addf(errs, j->path, "fsync of directory %s: %s", j->dir, strerror(errno));
        close(fd);
        return -1;
    }
    j->fd = fd;
    j->size = j->header_len = (size_t)hlen;
    return 0;
fail:
    errlist_addf(errs, j->path, "cannot %s %s: %s", what, j->tmp, strerror(errno));
    if (fd >= 0) close(fd);
    unlink(j->tmp); /* best effort; the store's open removes what is left */
    return -1;
}

int journal_append(struct journal *j, const char *record, size_t len, struct errlist *errs) {
    if (j->fd < 0) {
        if (!j->have_base) {
            errlist_addf(errs, j->path, "no state to append changes to");
            return -1;
        }
        if (journal_reset(j, j->base, errs) != 0) return -1;
    }
    if (memchr(record, '\n', len)) {
        errlist_addf(errs, j->path, "refusing a record with a line break");
        return -1;
    }
    size_t n = len + 10;
    char *line = malloc(n);
    if (!line) abort();
    snprintf(line, 10, "%08x ", (unsigned)crc_of(record, len));
    memcpy(line + 9, record, len);
    line[n - 1] = '\n';
    int rc = file_write_all(j->fd, line, n);
    if (rc == 0) rc = fdatasync(j->fd);
    free(line);
    if (rc == 0) {
        j->size += n;
        return 0;
    }
    errlist_addf(errs, j->path, "cannot append: %s", strerror(errno));
    /* A partial line would sit before the next record and make the journal unreadable: cut it
     * off, or stop appending here (the next full write of the state starts a new journal). */
    if (ftruncate(j->fd, (off_t)j->size) != 0 || fdatasync(j->fd) != 0) {
        close(j->fd);
        j->fd = -1;
        j->have_base = false;
    }
    return -1;
}
