/* store: where the Admin API persists the entity set between restarts.
 *
 * A store holds one JSON object, the whole entity set, and replaces it as a
 * unit: store_apply() returns 0 only once the new state is durable, and a crash
 * at any instant leaves either the previous or the new state, never a mix.
 * Between two applies a caller may instead append change records
 * (store_append(), durable on return), which are much cheaper than the whole
 * state; store_load() returns the last state applied and the records appended
 * since, for the caller to replay in order. The records' meaning is the
 * caller's (config/model_change.h); the store keeps them intact and in order.
 * Callers see only the functions below; each backend (the file store here, a
 * Redis cluster store later) is a struct store_ops behind them, so adding one
 * touches no caller.
 *
 * The struct store is owned by whoever opened it until store_close(). Calls
 * block on disk or network I/O (apply waits for fsync), so they belong on the
 * control thread, never on a worker's event loop. Not thread-safe: one owner. */
#ifndef WEIR_STORE_H
#define WEIR_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/errlist.h"

/* The file store refuses to read or write a state larger than this: a bound on
 * the memory a load takes, and an apply never writes what a load would refuse. */
#define STORE_MAX_BYTES ((size_t)64 * 1024 * 1024)

struct store;

/* Called with a state another writer stored; `state` is the callee's to keep
 * or json_decref(). */
typedef void (*store_watch_cb)(void *arg, json_t *state);

/* Opens the file store at `path`, creating missing parent directories with
 * mode 0700. Takes an exclusive flock on "<path>.lock", held until
 * store_close(), so that two Weir processes never write one store; while
 * another process holds it this returns NULL with a message naming the path.
 * The lock belongs to the open file description, so a child forked while the
 * store is open shares it. With the lock held, removes "<path>.tmp.*" left by
 * a writer that crashed mid-apply. Returns NULL and appends to `errs` on any
 * problem. */
struct store *store_file_open(const char *path, struct errlist *errs);

/* Reads the stored state into `*state` (the caller's reference), or NULL when
 * nothing was ever stored, and the records appended since into `*records` (an
 * array, possibly empty; NULL with no state). Unreadable, malformed (not JSON,
 * not an object) or oversized contents are an error naming the file, with line
 * and column when the JSON is bad: never an empty store. Returns 0, or -1 with
 * `errs` filled and `*state` and `*records` NULL. */
static inline int store_load(struct store *s, json_t **state, json_t **records,
                             struct errlist *errs);

/* Replaces the stored state with `state`, which must be a JSON object (the
 * caller keeps its reference). Returns 0 once the new state is durable, or -1
 * with the reason (errno text for I/O failures) in `errs`; after -1 the
 * previous state is still what store_load() returns, except when the final
 * directory fsync fails: the new state may then be visible but not durable.
 * The file store writes compact JSON in insertion order plus a newline, with
 * mode 0600 since entities can hold credentials. */
static inline int store_apply(struct store *s, const json_t *state, struct errlist *errs);
/* The same for a state already serialized (`text`, `len` bytes, one JSON object): callers that
 * keep the text of unchanged entities (model_text.h) skip re-encoding the whole state. */
static inline int store_apply_text(struct store *s, const char *text, size_t len,
                                   struct errlist *errs);

/* Appends one change record (`record`: `len` bytes of compact JSON) to the
 * state last loaded or applied; there must be one. Returns 0 once the record is
 * durable, or -1 with the reason in `errs` (the record is then not stored). */
static inline int store_append(struct store *s, const char *record, size_t len,
                               struct errlist *errs);

/* Whether the caller should apply the whole state rather than append a record
 * of `len` bytes: once the records would outweigh the state, replaying them
 * costs more than the write they save. An apply drops them. */
static inline bool store_wants_full(const struct store *s, size_t len);

/* Asks for cb(arg, state) whenever another writer changes the store; calls
 * arrive on the thread that owns the store. The file store has a single writer
 * (its lock), so it records nothing and never calls back. Returns 0. */
static inline int store_watch(struct store *s, store_watch_cb cb, void *arg);

/* For logs and `weir -t`: "file /abs/path/store.json". Owned by the store. */
static inline const char *store_describe(const struct store *s);

/* Releases the lock and frees the store. NULL is a no-op. */
static inline void store_close(struct store *s);

/* For backends only; callers treat struct store as opaque. A backend's own
 * struct embeds struct store first and points it at the backend's ops; the
 * functions above are inline dispatches through them, which is why the struct
 * is defined here rather than in a .c file. */
struct store_ops {
    int (*load)(struct store *s, json_t **state, json_t **records, struct errlist *errs);
    /* `text`: the state serialized as one JSON object (no trailing newline needed). */
    int (*apply)(struct store *s, const char *text, size_t len, struct errlist *errs);
    int (*append)(struct store *s, const char *record, size_t len, struct errlist *errs);
    bool (*wants_full)(const struct store *s, size_t len);
    int (*watch)(struct store *s, store_watch_cb cb, void *arg);
    const char *(*describe)(const struct store *s);
    void (*close)(struct store *s);
};

struct store {
    const struct store_ops *ops;
};

static inline int store_load(struct store *s, json_t **state, json_t **records,
                             struct errlist *errs) {
    return s->ops->load(s, state, records, errs);
}

static inline int store_append(struct store *s, const char *record, size_t len,
                               struct errlist *errs) {
    return s->ops->append(s, record, len, errs);
}

static inline bool store_wants_full(const struct store *s, size_t len) {
    return s->ops->wants_full(s, len);
}

static inline int store_apply_text(struct store *s, const char *text, size_t len,
                                   struct errlist *errs) {
    return s->ops->apply(s, text, len, errs);
}

static inline int store_apply(struct store *s, const json_t *state, struct errlist *errs) {
    if (!json_is_object(state)) return store_apply_text(s, "", 0, errs); /* refused, named */
    char *text = json_dumps(state, JSON_COMPACT);
    if (!text) abort();
    int rc = store_apply_text(s, text, strlen(text), errs);
    free(text);
    return rc;
}

static inline int store_watch(struct store *s, store_watch_cb cb, void *arg) {
    return s->ops->watch(s, cb, arg);
}

static inline const char *store_describe(const struct store *s) {
    return s->ops->describe(s);
}

static inline void store_close(struct store *s) {
    if (s) s->ops->close(s);
}

#endif
