/* The file store: one JSON file, replaced atomically, and a journal of the
 * changes appended since (store/journal.h).
 *
 * Durability comes from the classic sequence: write "<path>.tmp.<pid>", fsync
 * it, rename() it over <path>, fsync the directory. rename() is atomic, so a
 * reader (or a restart after kill -9 or power loss) sees the old file or the
 * new one, whole. Appends go to "<path>.journal", fdatasynced each. The flock on "<path>.lock" makes this process the only
 * writer, which is also what makes it safe to delete any temp file found at
 * open: whoever wrote it is dead. */
#include "store/store.h"

#include "store/file_io.h"
#include "store/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct store_file {
    struct store base; /* first: the ops dispatch casts back to store_file */
    char *path;        /* absolute */
    char *dir;         /* absolute directory of path */
    char *name;        /* last component of path */
    char *description; /* "file <path>" */
    int lock_fd;       /* holds the flock; closing it releases the lock */
    struct journal *journal;
    size_t state_len;  /* bytes of the state last loaded or applied */
};

/* Records may grow to the state's size, and at least this, before a full write is wanted. */
#define JOURNAL_MIN_BUDGET ((size_t)1024 * 1024)

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *str_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0) abort();
    char *out = malloc((size_t)len + 1);
    if (!out) abort();
    va_start(ap, fmt);
    vsnprintf(out, (size_t)len + 1, fmt, ap);
    va_end(ap);
    return out;
}

/* mkdir -p with mode 0700; each directory created is made durable in its
 * parent, or a power loss could lose a store whose file was fsynced. */
static int make_dirs(const char *dir, struct errlist *errs) {
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return 0;
        errlist_addf(errs, dir, "not a directory");
        return -1;
    }
    if (errno != ENOENT) {
        errlist_addf(errs, dir, "%s", strerror(errno));
        return -1;
    }
    char *parent = strdup(dir);
    if (!parent) abort();
    char *slash = strrchr(parent, '/');
    if (slash == parent)
        slash[1] = '\0'; /* "/x": the parent is "/" */
    else if (slash)
        *slash = '\0';
    int rc = make_dirs(parent, errs);
    if (rc == 0 && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        errlist_addf(errs, dir, "cannot create directory: %s", strerror(errno));
        rc = -1;
    } else if (rc == 0 && file_fsync_dir(parent) != 0) {
        errlist_addf(errs, parent, "fsync: %s", strerror(errno));
        rc = -1;
    }
    free(parent);
    return rc;
}

/* Removes "<name>.tmp.*" from the store's directory. Only called with the lock
 * held: a writer holding it would be this process, so any such file is left
 * over from a writer that died between creating it and renaming it. */
static int remove_stale_temps(struct store_file *f, struct errlist *errs) {
    DIR *d = opendir(f->dir);
    if (!d) {
        errlist_addf(errs, f->dir, "cannot list directory: %s", strerror(errno));
        return -1;
    }
    char *prefix = str_printf("%s.tmp.", f->name);
    size_t prefix_len = strlen(prefix);
    int rc = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, prefix_len) != 0) continue;
        if (unlinkat(dirfd(d), e->d_name, 0) != 0 && errno != ENOENT) {
            errlist_addf(errs, f->path, "cannot remove stale temporary file %s/%s: %s", f->dir,
                         e->d_name, strerror(errno));
            rc = -1;
        }
        errno = 0;
    }
    if (errno != 0) {
        errlist_addf(errs, f->dir, "cannot list directory: %s", strerror(errno));
        rc = -1;
    }
    free(prefix);
    closedir(d);
    return rc;
}

static int file_load(struct store *s, json_t **state, json_t **records, struct errlist *errs) {
    struct store_file *f = (struct store_file *)s;
    *state = NULL;
    *records = NULL;
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return 0; /* never applied: the empty store */
        errlist_addf(errs, f->path, "cannot open: %s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        errlist_addf(errs, f->path, "cannot stat: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        errlist_addf(errs, f->path, "not a regular file");
        close(fd);
        return -1;
    }
    char *buf;
    size_t len;
    int rc = file_read_all(fd, STORE_MAX_BYTES, &buf, &len);
    int saved = errno;
    close(fd); /* read-only: nothing for close() to report */
    if (rc != 0) {
        if (saved == EFBIG)
            errlist_addf(errs, f->path, "larger than the store limit of %zu bytes",
                         STORE_MAX_BYTES);
        else
            errlist_addf(errs, f->path, "cannot read: %s", strerror(saved));
        return -1;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    struct journal_base base = journal_base_of(buf, len);
    free(buf);
    if (!doc) {
        errlist_addf(errs, f->path, "line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        return -1;
    }
    if (!json_is_object(doc)) {
        errlist_addf(errs, f->path, "the stored state is not a JSON object");
        json_decref(doc);
        return -1;
    }
    if (journal_read(f->journal, base, records, errs) != 0) {
        json_decref(doc);
        return -1;
    }
    f->state_len = len;
    *state = doc;
    return 0;
}

/* Writes `text` to a new `tmp` with mode 0600 and makes it durable. Returns 0,
 * or -1 with errno set and `what` naming the step that failed. */
static int write_temp(const char *tmp, const char *text, size_t len, const char **what) {
    /* O_EXCL|O_NOFOLLOW: never write through a file or link someone else put
     * there. Our own pid's leftover (an earlier apply whose unlink failed) is
     * removed and created afresh. */
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    *what = "create";
    int fd = open(tmp, flags, 0600);
    if (fd < 0 && errno == EEXIST && unlink(tmp) == 0) fd = open(tmp, flags, 0600);
    if (fd < 0) return -1;
    /* The umask can only narrow 0600; make it exact so the owner can always
     * read back what it stored. */
    if (fchmod(fd, 0600) != 0) {
        *what = "chmod";
        goto fail;
    }
    if (file_write_all(fd, text, len) != 0) {
        *what = "write";
        goto fail;
    }
    /* fsync rather than fdatasync: the file is new, so its inode (size, mode)
     * has to reach the disk anyway and fdatasync would save nothing. */
    if (fsync(fd) != 0) {
        *what = "fsync";
        goto fail;
    }
    *what = "close";
    return close(fd);
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

static int file_apply(struct store *s, const char *state, size_t state_len, struct errlist *errs) {
    struct store_file *f = (struct store_file *)s;
    if (state_len == 0 || state[0] != '{') {
        errlist_addf(errs, f->path, "refusing to store a state that is not a JSON object");
        return -1;
    }
    if (state_len + 1 > STORE_MAX_BYTES) {
        errlist_addf(errs, f->path, "the state is %zu bytes, larger than the store limit of %zu",
                     state_len + 1, STORE_MAX_BYTES);
        return -1;
    }
    size_t len = state_len + 1;
    char *text = malloc(len + 1);
    if (!text) abort();
    memcpy(text, state, state_len);
    text[state_len] = '\n';
    text[len] = '\0';

    char *tmp = str_printf("%s.tmp.%ld", f->path, (long)getpid());
    const char *what;
    int rc = write_temp(tmp, text, len, &what);
    if (rc != 0) {
        errlist_addf(errs, f->path, "cannot %s %s: %s", what, tmp, strerror(errno));
        unlink(tmp); /* best effort; open removes what is left */
        free(tmp);
        free(text);
        return -1;
    }
    if (rename(tmp, f->path) != 0) {
        errlist_addf(errs, f->path, "cannot rename %s over it: %s", tmp, strerror(errno));
        unlink(tmp);
        free(tmp);
        free(text);
        return -1;
    }
    free(tmp);
    /* From here the new state is the one a load finds, so appends must follow it: the old
     * journal's records are in it, and the old journal's header names the previous state, so a
     * crash before the reset leaves a journal a load ignores. A reset that fails is retried, and
     * reported, by the next append. */
    f->state_len = len;
    struct errlist journal_errs;
    errlist_init(&journal_errs);
    journal_reset(f->journal, journal_base_of(text, len), &journal_errs);
    errlist_free(&journal_errs);
    free(text);
    /* Until the directory is fsynced the rename itself may not survive a power
     * loss, so the state is not yet durable and the caller must not ack it. */
    if (file_fsync_dir(f->dir) != 0) {
        errlist_addf(errs, f->path, "fsync of directory %s: %s (the new state may not be durable)",
                     f->dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int file_append(struct store *s, const char *record, size_t len, struct errlist *errs) {
    return journal_append(((struct store_file *)s)->journal, record, len, errs);
}

static bool file_wants_full(const struct store *s, size_t len) {
    const struct store_file *f = (const struct store_file *)s;
    size_t budget = f->state_len > JOURNAL_MIN_BUDGET ? f->state_len : JOURNAL_MIN_BUDGET;
    return journal_size(f->journal) + len > budget;
}

static int file_watch(struct store *s, store_watch_cb cb, void *arg) {
    /* The lock makes this process the only writer: nothing to watch for. */
    (void)s, (void)cb, (void)arg;
    return 0;
}

static const char *file_describe(const struct store *s) {
    return ((const struct store_file *)s)->description;
}

static void file_free(struct store_file *f) {
    /* The lock file is left in place: unlinking it would let a later opener
     * lock a new inode while someone still holds the old one. */
    if (f->lock_fd >= 0) close(f->lock_fd);
    journal_free(f->journal);
    free(f->path);
    free(f->dir);
    free(f->name);
    free(f->description);
    free(f);
}

static void file_close(struct store *s) {
    file_free((struct store_file *)s);
}

static const struct store_ops file_ops = {
    .load = file_load,
    .apply = file_apply,
    .append = file_append,
    .wants_full = file_wants_full,
    .watch = file_watch,
    .describe = file_describe,
    .close = file_close,
};

/* Absolute without resolving symlinks: the file may not exist yet, and the
 * description should show the path as configured. */
static char *absolute_path(const char *path, struct errlist *errs) {
    if (path[0] == '/') {
        char *out = strdup(path);
        if (!out) abort();
        return out;
    }
    char *cwd = getcwd(NULL, 0);
    if (!cwd) {
        errlist_addf(errs, path, "cannot resolve against the current directory: %s",
                     strerror(errno));
        return NULL;
    }
    char *out = str_printf("%s/%s", cwd, path);
    free(cwd);
    return out;
}

struct store *store_file_open(const char *path, struct errlist *errs) {
    size_t plen = path ? strlen(path) : 0;
    if (plen == 0 || path[plen - 1] == '/') {
        errlist_addf(errs, path, "a store path must name a file");
        return NULL;
    }
    struct store_file *f = calloc(1, sizeof *f);
    if (!f) abort();
    f->base.ops = &file_ops;
    f->lock_fd = -1;
    f->path = absolute_path(path, errs);
    if (!f->path) goto fail;
    char *slash = strrchr(f->path, '/');
    f->dir = slash == f->path ? strdup("/") : strndup(f->path, (size_t)(slash - f->path));
    f->name = strdup(slash + 1);
    if (!f->dir || !f->name) abort();
    f->description = str_printf("file %s", f->path);
    f->journal = journal_new(f->path);

    if (make_dirs(f->dir, errs) != 0) goto fail;
    char *lock_path = str_printf("%s.lock", f->path);
    f->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (f->lock_fd < 0) {
        errlist_addf(errs, f->path, "cannot open lock file %s: %s", lock_path, strerror(errno));
        free(lock_path);
        goto fail;
    }
    int rc;
    while ((rc = flock(f->lock_fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
    }
    if (rc != 0) {
        if (errno == EWOULDBLOCK)
            errlist_addf(errs, f->path,
                         "another process holds the store (lock %s); two Weir processes cannot "
                         "share one store",
                         lock_path);
        else
            errlist_addf(errs, f->path, "cannot lock %s: %s", lock_path, strerror(errno));
        free(lock_path);
        goto fail;
    }
    free(lock_path);
    if (remove_stale_temps(f, errs) != 0) goto fail;
    return &f->base;
fail:
    file_free(f);
    return NULL;
}
