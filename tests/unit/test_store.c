/* Unit tests for the file store: what a restarted Weir reads back after
 * applies, failures and kill -9. Each test runs in a fresh mkdtemp directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

#define PAD_BYTES (100 * 1024)

struct fixture {
    char dir[64];   /* the mkdtemp directory */
    char path[128]; /* <dir>/store.json */
};

static int setup(void **state) {
    struct fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    strcpy(fx->dir, "/tmp/weir-test-store-XXXXXX");
    if (!mkdtemp(fx->dir)) return -1;
    snprintf(fx->path, sizeof fx->path, "%s/store.json", fx->dir);
    *state = fx;
    return 0;
}

static int make_writable(const char *p, const struct stat *st, int type, struct FTW *ftw) {
    (void)st, (void)ftw;
    if (type == FTW_D || type == FTW_DNR) chmod(p, 0700);
    return 0;
}

static int remove_entry(const char *p, const struct stat *st, int type, struct FTW *ftw) {
    (void)st, (void)type, (void)ftw;
    return remove(p);
}

static int teardown(void **state) {
    struct fixture *fx = *state;
    /* A failed read-only test may leave a directory we cannot empty. */
    nftw(fx->dir, make_writable, 16, FTW_PHYS);
    int rc = nftw(fx->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return rc;
}

static bool errs_contain(const struct errlist *e, const char *needle) {
    for (size_t i = 0; i < e->n; i++)
        if (strstr(e->items[i], needle)) return true;
    return false;
}

static void print_errs(const struct errlist *e) {
    for (size_t i = 0; i < e->n; i++)
        print_message("  errs[%zu]: %s\n", i, e->items[i]);
}

static char *read_text(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return buf;
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

/* Entries of `dir` whose name starts with "store.json.tmp.". */
static int count_temps(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "store.json.tmp.", 15) == 0) n++;
    closedir(d);
    return n;
}

static struct store *open_ok(const char *path) {
    struct errlist errs;
    errlist_init(&errs);
    struct store *s = store_file_open(path, &errs);
    print_errs(&errs);
    assert_non_null(s);
    assert_int_equal(errs.n, 0);
    errlist_free(&errs);
    return s;
}

static void apply_ok(struct store *s, const char *json) {
    json_t *state = json_loads(json, JSON_DECODE_ANY, NULL);
    assert_non_null(state);
    struct errlist errs;
    errlist_init(&errs);
    int rc = store_apply(s, state, &errs);
    print_errs(&errs);
    assert_int_equal(rc, 0);
    errlist_free(&errs);
    json_decref(state);
}

/* Loads and returns the compact text of the state, or "NULL". */
static char *load_compact(struct store *s) {
    json_t *state = (json_t *)1, *records = (json_t *)1;
    struct errlist errs;
    errlist_init(&errs);
    int rc = store_load(s, &state, &records, &errs);
    print_errs(&errs);
    assert_int_equal(rc, 0);
    errlist_free(&errs);
    char *text = state ? json_dumps(state, JSON_PRESERVE_ORDER | JSON_COMPACT) : strdup("NULL");
    if (state)
        assert_int_equal(json_array_size(records), 0);
    else
        assert_null(records);
    json_decref(state);
    json_decref(records);
    return text;
}

static void test_empty_store_loads_null(void **state) {
    struct fixture *fx = *state;
    struct store *s = open_ok(fx->path);
    char *text = load_compact(s);
    assert_string_equal(text, "NULL");
    free(text);
    store_close(s);
}

static void test_apply_then_load_round_trips_in_insertion_order(void **state) {
    struct fixture *fx = *state;
    struct store *s = open_ok(fx->path);
    apply_ok(s, "{\"services\": [{\"name\": \"b\"}], \"routes\": [], \"a\": 1}");
    char *text = load_compact(s);
    assert_string_equal(text, "{\"services\":[{\"name\":\"b\"}],\"routes\":[],\"a\":1}");
    free(text);
    /* The file itself: compact, insertion order, one trailing newline. */
    assert_string_equal(read_text(fx->path),
                        "{\"services\":[{\"name\":\"b\"}],\"routes\":[],\"a\":1}\n");
    store_close(s);

    s = open_ok(fx->path); /* what a restart reads */
    text = load_compact(s);
    assert_string_equal(text, "{\"services\":[{\"name\":\"b\"}],\"routes\":[],\"a\":1}");
    free(text);
    store_close(s);
}

static void test_second_open_fails_while_first_is_open_and_succeeds_after_close(void **state) {
    struct fixture *fx = *state;
    struct store *first = open_ok(fx->path);
    struct errlist errs;
    errlist_init(&errs);
    assert_null(store_file_open(fx->path, &errs));
    assert_int_equal(errs.n, 1);
    assert_true(errs_contain(&errs, fx->path));
    assert_true(errs_contain(&errs, "another process holds the store"));
    errlist_free(&errs);
    store_close(first);

    struct store *second = open_ok(fx->path);
    store_close(second);
}

static void assert_load_fails(const char *path, const char *expect) {
    struct store *s = open_ok(path);
    json_t *loaded = (json_t *)1, *records = (json_t *)1;
    struct errlist errs;
    errlist_init(&errs);
    assert_int_equal(store_load(s, &loaded, &records, &errs), -1);
    assert_null(loaded);
    assert_null(records);
    print_errs(&errs);
    assert_true(errs_contain(&errs, path));
    assert_true(errs_contain(&errs, expect));
    errlist_free(&errs);
    store_close(s);
}

static void test_invalid_json_is_an_error_naming_file_line_and_column(void **state) {
    struct fixture *fx = *state;
    write_text(fx->path, "{\"a\": 1,\n  oops}\n");
    assert_load_fails(fx->path, "line 2, column");
}

static void test_empty_file_is_an_error_not_an_empty_store(void **state) {
    struct fixture *fx = *state;
    write_text(fx->path, "");
    assert_load_fails(fx->path, "line 1, column");
}

static void test_json_that_is_not_an_object_is_an_error(void **state) {
    struct fixture *fx = *state;
    write_text(fx->path, "[1, 2]\n");
    assert_load_fails(fx->path, "not a JSON object");
}

static void test_file_over_64_mib_is_an_error(void **state) {
    struct fixture *fx = *state;
    int fd = open(fx->path, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)STORE_MAX_BYTES + 1), 0); /* sparse: cheap */
    close(fd);
    assert_load_fails(fx->path, "larger than the store limit");
}

static void test_stale_temp_files_are_removed_on_open(void **state) {
    struct fixture *fx = *state;
    char p[256];
    snprintf(p, sizeof p, "%s.tmp.12345", fx->path);
    write_text(p, "{\"half\":");
    snprintf(p, sizeof p, "%s.tmp.1", fx->path);
    write_text(p, "");
    snprintf(p, sizeof p, "%s/other.json.tmp.1", fx->dir); /* not ours: kept */
    write_text(p, "{}");
    assert_int_equal(count_temps(fx->dir), 2);

    struct store *s = open_ok(fx->path);
    assert_int_equal(count_temps(fx->dir), 0);
    assert_int_equal(access(p, F_OK), 0);
    store_close(s);
}

static void test_apply_into_read_only_directory_fails_and_keeps_old_content(void **state) {
    struct fixture *fx = *state;
    if (geteuid() == 0) {
        print_message("  skipped: root ignores directory permissions\n");
        skip();
    }
    struct store *s = open_ok(fx->path);
    apply_ok(s, "{\"v\":1}");
    assert_int_equal(chmod(fx->dir, 0500), 0);

    json_t *next = json_pack("{s:i}", "v", 2);
    struct errlist errs;
    errlist_init(&errs);
    int rc = store_apply(s, next, &errs);
    assert_int_equal(chmod(fx->dir, 0700), 0);
    assert_int_equal(rc, -1);
    assert_true(errs_contain(&errs, strerror(EACCES)));
    errlist_free(&errs);
    json_decref(next);

    char *text = load_compact(s);
    assert_string_equal(text, "{\"v\":1}");
    free(text);
    assert_int_equal(count_temps(fx->dir), 0);
    store_close(s);
}

/* A write that fails part way, like a full disk, but reproducible as root:
 * RLIMIT_FSIZE makes write() return short, then EFBIG. */
static void test_apply_failing_mid_write_removes_temp_and_keeps_old_content(void **state) {
    struct fixture *fx = *state;
    struct store *s = open_ok(fx->path);
    apply_ok(s, "{\"v\":1}");

    char *pad = malloc(PAD_BYTES + 1);
    assert_non_null(pad);
    memset(pad, 'x', PAD_BYTES);
    pad[PAD_BYTES] = '\0';
    json_t *big = json_pack("{s:i,s:s}", "v", 2, "pad", pad);
    free(pad);

    struct rlimit old, small;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = 4096;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    struct errlist errs;
    errlist_init(&errs);
    int rc = store_apply(s, big, &errs);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    json_decref(big);

    print_errs(&errs);
    assert_int_equal(rc, -1);
    assert_true(errs_contain(&errs, strerror(EFBIG)));
    errlist_free(&errs);
    char *text = load_compact(s);
    assert_string_equal(text, "{\"v\":1}");
    free(text);
    assert_int_equal(count_temps(fx->dir), 0);
    store_close(s);
}

static void test_apply_refuses_a_state_that_is_not_an_object(void **state) {
    struct fixture *fx = *state;
    struct store *s = open_ok(fx->path);
    json_t *arr = json_array();
    struct errlist errs;
    errlist_init(&errs);
    assert_int_equal(store_apply(s, arr, &errs), -1);
    assert_true(errs_contain(&errs, "not a JSON object"));
    errlist_free(&errs);
    json_decref(arr);
    assert_int_equal(access(fx->path, F_OK), -1);
    store_close(s);
}

static void test_stored_file_mode_is_0600_whatever_the_umask(void **state) {
    struct fixture *fx = *state;
    mode_t old = umask(0);
    struct store *s = open_ok(fx->path);
    apply_ok(s, "{\"password\":\"secret\"}");
    umask(old);
    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    store_close(s);
}

static void test_missing_parent_directories_are_created_0700(void **state) {
    struct fixture *fx = *state;
    char path[256], dir[256];
    snprintf(path, sizeof path, "%s/a/b/store.json", fx->dir);
    struct store *s = open_ok(path);
    apply_ok(s, "{}");
    struct stat st;
    snprintf(dir, sizeof dir, "%s/a", fx->dir);
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(dir, sizeof dir, "%s/a/b", fx->dir);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    char *text = load_compact(s);
    assert_string_equal(text, "{}");
    free(text);
    store_close(s);
}

static void test_describe_names_the_file(void **state) {
    struct fixture *fx = *state;
    struct store *s = open_ok(fx->path);
    char expect[256];
    snprintf(expect, sizeof expect, "file %s", fx->path);
    assert_string_equal(store_describe(s), expect);
    store_close(s);
}

static void never_called(void *arg, json_t *state) {
    (void)arg, (void)state;
    fail_msg("the file store has a single writer and never calls back");
}

static void test_watch_returns_0_and_never_calls_back(void **state) {
    struct fixture *fx = *state;
    struct store *s = open_ok(fx->path);
    assert_int_equal(store_watch(s, never_called, NULL), 0);
    apply_ok(s, "{\"a\":1}");
    store_close(s);
}

/* Forks a child running body(path, arg, ack) (it writes each value it acknowledges to `ack`),
 * waits for its first acknowledgement so that the kill lands mid-stream, not in exec, kills it
 * with SIGKILL 1-9 ms later and returns the last value it acknowledged. */
static long kill_9_mid_stream(void (*body)(const char *path, long arg, int ack), const char *path,
                              long arg) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        body(path, arg, fds[1]);
        _exit(5); /* bodies do not return */
    }
    close(fds[1]);
    long acked;
    assert_int_equal(read(fds[0], &acked, sizeof acked), sizeof acked);
    usleep(1000 + (useconds_t)(rand() % 8000));
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    long v;
    while (read(fds[0], &v, sizeof v) == sizeof v)
        acked = v;
    close(fds[0]);
    return acked;
}

/* The child: applies {"n": i, "pad": <PAD_BYTES of one letter per n>} for
 * i = first, first+1, ... and writes each i to `ack` once store_apply returned. */
static _Noreturn void apply_forever(const char *path, long first, int ack) {
    struct errlist errs;
    errlist_init(&errs);
    struct store *s = store_file_open(path, &errs);
    if (!s) _exit(2);
    char *pad = malloc(PAD_BYTES + 1);
    if (!pad) _exit(2);
    pad[PAD_BYTES] = '\0';
    for (long i = first;; i++) {
        memset(pad, 'a' + (int)(i % 26), PAD_BYTES);
        json_t *st = json_pack("{s:I,s:s}", "n", (json_int_t)i, "pad", pad);
        if (!st || store_apply(s, st, &errs) != 0) _exit(3);
        json_decref(st);
        if (write(ack, &i, sizeof i) != sizeof i) _exit(4);
    }
}

/* After kill -9 at a random instant, a restart reads a whole state no older
 * than the last one acknowledged (the child may have renamed one more). */
static void test_kill_9_during_apply_leaves_a_complete_acknowledged_state(void **state) {
    struct fixture *fx = *state;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    long next = 0;
    for (int round = 0; round < 20; round++) {
        long acked = kill_9_mid_stream(apply_forever, fx->path, next);

        struct store *s = open_ok(fx->path); /* the lock died with the child */
        assert_int_equal(count_temps(fx->dir), 0);
        json_t *loaded = NULL, *records = NULL;
        struct errlist errs;
        errlist_init(&errs);
        assert_int_equal(store_load(s, &loaded, &records, &errs), 0);
        print_errs(&errs);
        errlist_free(&errs);
        assert_true(json_is_object(loaded));
        assert_int_equal(json_array_size(records), 0);
        json_decref(records);
        long n = (long)json_integer_value(json_object_get(loaded, "n"));
        assert_true(n == acked || n == acked + 1);
        const char *pad = json_string_value(json_object_get(loaded, "pad"));
        assert_non_null(pad);
        assert_int_equal(strlen(pad), PAD_BYTES);
        for (size_t i = 0; i < PAD_BYTES; i++)
            if (pad[i] != 'a' + (int)(n % 26)) fail_msg("pad[%zu] is from another state", i);
        json_decref(loaded);
        store_close(s);
        next = n + 1;
    }
}


/* ---------------------------------------------------------------- the journal (store/journal.h) */

static void append_ok(struct store *s, const char *record) {
    struct errlist errs;
    errlist_init(&errs);
    int rc = store_append(s, record, strlen(record), &errs);
    print_errs(&errs);
    assert_int_equal(rc, 0);
    errlist_free(&errs);
}

/* Loads, checks the state's compact text and returns the records' compact text. */
static char *load_with_records(struct store *s, const char *want_state) {
    json_t *state = NULL, *records = NULL;
    struct errlist errs;
    errlist_init(&errs);
    int rc = store_load(s, &state, &records, &errs);
    print_errs(&errs);
    assert_int_equal(rc, 0);
    errlist_free(&errs);
    char *text = json_dumps(state, JSON_PRESERVE_ORDER | JSON_COMPACT);
    assert_string_equal(text, want_state);
    free(text);
    text = json_dumps(records, JSON_PRESERVE_ORDER | JSON_COMPACT);
    json_decref(state);
    json_decref(records);
    return text;
}

/* Closes `s` (unless NULL), opens the store at `path` again and checks what a load gives: the
 * state's and the records' compact text. Returns the reopened store. */
static struct store *reopen_and_check(struct store *s, const char *path, const char *want_state,
                                      const char *want_records) {
    store_close(s);
    s = open_ok(path);
    char *records = load_with_records(s, want_state);
    assert_string_equal(records, want_records);
    free(records);
    return s;
}

static void append_bytes(const char *path, const char *bytes) {
    FILE *fp = fopen(path, "ab");
    assert_non_null(fp);
    assert_int_equal(fputs(bytes, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static void test_appended_records_come_back_in_order_after_a_reopen(void **state) {
    struct fixture *fx = *state;
    struct store *s = open_ok(fx->path);
    apply_ok(s, "{\"a\":1}");
    append_ok(s, "{\"n\":1}");
    append_ok(s, "[\"two\"]");
    append_ok(s, "{\"n\":3,\"s\":\"x y\"}");
    s = reopen_and_check(s, fx->path, "{\"a\":1}", "[{\"n\":1},[\"two\"],{\"n\":3,\"s\":\"x y\"}]");
    /* appends after a load follow the loaded records */
    append_ok(s, "{\"n\":4}");
    s = reopen_and_check(s, fx->path, "{\"a\":1}",
                         "[{\"n\":1},[\"two\"],{\"n\":3,\"s\":\"x y\"},{\"n\":4}]");
    store_close(s);
}

static void test_an_apply_drops_the_records_before_it(void **state) {
    struct fixture *fx = *state;
    struct store *s = open_ok(fx->path);
    apply_ok(s, "{\"a\":1}");
    append_ok(s, "{\"n\":1}");
    apply_ok(s, "{\"a\":2}");
    append_ok(s, "{\"n\":2}");
    s = reopen_and_check(s, fx->path, "{\"a\":2}", "[{\"n\":2}]");
    store_close(s);
}

static void test_an_append_needs_a_state(void **state) {
    struct fixture *fx = *state;
    struct store *s = open_ok(fx->path);
    struct errlist errs;
    errlist_init(&errs);
    assert_int_equal(store_append(s, "{}", 2, &errs), -1);
    assert_true(errs_contain(&errs, "no state"));
    errlist_free(&errs);
    store_close(s);
}

static void test_a_torn_last_record_is_dropped_and_cut_off(void **state) {
    struct fixture *fx = *state;
    char journal[160];
    snprintf(journal, sizeof journal, "%s.journal", fx->path);
    struct store *s = open_ok(fx->path);
    apply_ok(s, "{\"a\":1}");
    append_ok(s, "{\"n\":1}");
    store_close(s);
    const char *torn[] = {"0123", "deadbeef {\"n\":2}\n", "00000000 {\"n\"", "\n"};
    for (size_t i = 0; i < sizeof torn / sizeof torn[0]; i++) {
        append_bytes(journal, torn[i]);
        store_close(reopen_and_check(NULL, fx->path, "{\"a\":1}", "[{\"n\":1}]"));
    }
    /* the tail was cut off at the load: a new record follows the good ones */
    s = reopen_and_check(NULL, fx->path, "{\"a\":1}", "[{\"n\":1}]");
    append_ok(s, "{\"n\":5}");
    s = reopen_and_check(s, fx->path, "{\"a\":1}", "[{\"n\":1},{\"n\":5}]");
    store_close(s);
}

static void test_a_damaged_record_before_the_last_is_an_error(void **state) {
    struct fixture *fx = *state;
    char journal[160];
    snprintf(journal, sizeof journal, "%s.journal", fx->path);
    struct store *s = open_ok(fx->path);
    apply_ok(s, "{\"a\":1}");
    append_ok(s, "{\"n\":1}");
    append_ok(s, "{\"n\":2}");
    store_close(s);
    /* flip one byte of the first record's JSON */
    FILE *fp = fopen(journal, "r+b");
    assert_non_null(fp);
    char line[200];
    assert_non_null(fgets(line, sizeof line, fp)); /* header */
    long at = ftell(fp) + 14;
    assert_int_equal(fseek(fp, at, SEEK_SET), 0);
    assert_int_equal(fputc('7', fp), '7');
    assert_int_equal(fclose(fp), 0);
    assert_load_fails(fx->path, "line 2 is damaged");
}

static void test_a_journal_for_another_state_is_ignored(void **state) {
    struct fixture *fx = *state;
    struct store *s = open_ok(fx->path);
    apply_ok(s, "{\"a\":1}");
    append_ok(s, "{\"n\":1}");
    store_close(s);
    /* a crash between writing a new state and starting its journal leaves this */
    write_text(fx->path, "{\"a\":2}\n");
    s = reopen_and_check(NULL, fx->path, "{\"a\":2}", "[]");
    /* and an append starts a journal for the state loaded */
    append_ok(s, "{\"n\":2}");
    s = reopen_and_check(s, fx->path, "{\"a\":2}", "[{\"n\":2}]");
    store_close(s);
}

static void test_a_file_that_is_not_a_journal_is_an_error(void **state) {
    struct fixture *fx = *state;
    char journal[160];
    snprintf(journal, sizeof journal, "%s.journal", fx->path);
    struct store *s = open_ok(fx->path);
    apply_ok(s, "{\"a\":1}");
    store_close(s);
    write_text(journal, "something else\n");
    assert_load_fails(fx->path, "not a Weir store journal");
}

static void test_wants_full_once_the_records_would_outweigh_the_state(void **state) {
    struct fixture *fx = *state;
    struct store *s = open_ok(fx->path);
    apply_ok(s, "{\"a\":1}");
    /* a small state: records may reach 1 MiB */
    assert_false(store_wants_full(s, 1000));
    assert_true(store_wants_full(s, 2 * 1024 * 1024));
    char *rec = malloc(600 * 1024 + 1);
    assert_non_null(rec);
    memset(rec, ' ', 600 * 1024);
    rec[0] = '0';
    rec[600 * 1024] = '\0';
    append_ok(s, rec);
    assert_false(store_wants_full(s, 100 * 1024));
    assert_true(store_wants_full(s, 500 * 1024));
    apply_ok(s, "{\"a\":2}");
    assert_false(store_wants_full(s, 500 * 1024));
    free(rec);
    store_close(s);
}

static void test_journal_mode_is_0600(void **state) {
    struct fixture *fx = *state;
    mode_t old = umask(0);
    struct store *s = open_ok(fx->path);
    apply_ok(s, "{\"a\":1}");
    append_ok(s, "{}");
    umask(old);
    char journal[160];
    snprintf(journal, sizeof journal, "%s.journal", fx->path);
    struct stat st;
    assert_int_equal(stat(journal, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(count_temps(fx->dir), 0);
    store_close(s);
}

/* The child: appends {"n": i} for i = first, first+1, ... after one apply, and writes each i to
 * `ack` once store_append returned. */
static _Noreturn void append_forever(const char *path, long unused, int ack) {
    (void)unused;
    struct errlist errs;
    errlist_init(&errs);
    struct store *s = store_file_open(path, &errs);
    json_t *st = NULL, *recs = NULL;
    if (!s || store_load(s, &st, &recs, &errs) != 0) _exit(2);
    long first = (long)json_array_size(recs);
    if (!st) {
        json_t *empty = json_object();
        if (store_apply(s, empty, &errs) != 0) _exit(3);
        json_decref(empty);
    }
    for (long i = first;; i++) {
        char rec[64];
        int n = snprintf(rec, sizeof rec, "{\"n\":%ld,\"pad\":\"%040ld\"}", i, i);
        if (store_append(s, rec, (size_t)n, &errs) != 0) _exit(3);
        if (write(ack, &i, sizeof i) != sizeof i) _exit(4);
    }
}

/* After kill -9 at a random instant, a restart reads every acknowledged record, in order, and at
 * most the one in flight besides. */
static void test_kill_9_during_appends_loses_no_acknowledged_record(void **state) {
    struct fixture *fx = *state;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    long acked_total = -1;
    for (int round = 0; round < 10; round++) {
        long acked = kill_9_mid_stream(append_forever, fx->path, 0);
        assert_true(acked > acked_total);
        acked_total = acked;

        struct store *s = open_ok(fx->path);
        json_t *loaded = NULL, *records = NULL;
        struct errlist errs;
        errlist_init(&errs);
        assert_int_equal(store_load(s, &loaded, &records, &errs), 0);
        print_errs(&errs);
        errlist_free(&errs);
        long n = (long)json_array_size(records);
        assert_true(n == acked + 1 || n == acked + 2);
        for (long i = 0; i < n; i++)
            assert_int_equal(json_integer_value(json_object_get(json_array_get(records, (size_t)i), "n")), i);
        json_decref(loaded);
        json_decref(records);
        store_close(s);
    }
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_empty_store_loads_null),
        T(test_apply_then_load_round_trips_in_insertion_order),
        T(test_second_open_fails_while_first_is_open_and_succeeds_after_close),
        T(test_invalid_json_is_an_error_naming_file_line_and_column),
        T(test_empty_file_is_an_error_not_an_empty_store),
        T(test_json_that_is_not_an_object_is_an_error),
        T(test_file_over_64_mib_is_an_error),
        T(test_stale_temp_files_are_removed_on_open),
        T(test_apply_into_read_only_directory_fails_and_keeps_old_content),
        T(test_apply_failing_mid_write_removes_temp_and_keeps_old_content),
        T(test_apply_refuses_a_state_that_is_not_an_object),
        T(test_stored_file_mode_is_0600_whatever_the_umask),
        T(test_missing_parent_directories_are_created_0700),
        T(test_describe_names_the_file),
        T(test_watch_returns_0_and_never_calls_back),
        T(test_kill_9_during_apply_leaves_a_complete_acknowledged_state),
        T(test_appended_records_come_back_in_order_after_a_reopen),
        T(test_an_apply_drops_the_records_before_it),
        T(test_an_append_needs_a_state),
        T(test_a_torn_last_record_is_dropped_and_cut_off),
        T(test_a_damaged_record_before_the_last_is_an_error),
        T(test_a_journal_for_another_state_is_ignored),
        T(test_a_file_that_is_not_a_journal_is_an_error),
        T(test_wants_full_once_the_records_would_outweigh_the_state),
        T(test_journal_mode_is_0600),
        T(test_kill_9_during_appends_loses_no_acknowledged_record),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
