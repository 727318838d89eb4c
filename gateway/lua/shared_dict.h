/* shared_dict: the storage behind weir.shared.<name>, a dictionary every worker thread shares.
 *
 * weir.shared_dicts {"name": size_in_bytes} declares them; each is a struct shared_dict of that
 * capacity with OpenResty's ngx.shared.DICT semantics: values are nil, booleans, numbers (double)
 * or byte strings, each with an optional TTL and 32 user flag bits; a store that needs room
 * evicts the least recently used entries (get, set and incr make an entry most recent) and says
 * so through `forcible`; expired entries read as absent and are reclaimed lazily, on access and
 * from the cold end of the LRU list, never by a sweep. This file knows no Lua: the binding maps
 * these calls and the strings of shared_dict_strerror() onto ngx.shared's return values.
 *
 * Capacity bounds the accounted bytes, the sum over entries of SHARED_DICT_ENTRY_OVERHEAD + key
 * length + string length; a store never takes it past capacity. Outside it: the hash index, a
 * fixed array of capacity/32 to capacity/16 bytes allocated by shared_dict_new(), and malloc's
 * own headers.
 * Keys and names are binary (1 to 65535 bytes, NUL allowed); values up to what capacity allows.
 *
 * Any thread may call any function concurrently, except shared_dict_free() and
 * shared_dict_set_clock(), which need the dictionary unused by other threads. Each dictionary has
 * one mutex; work under it is O(1) per call plus one step per entry evicted, and copying and
 * freeing string values happens outside it where it can (get copies a string under it). */
#ifndef WEIR_SHARED_DICT_H
#define WEIR_SHARED_DICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHARED_DICT_KEY_MAX 65535
/* Accounted bytes of an entry besides its key and string: the entry header, as OpenResty counts
 * its node. Exposed so that tests and the config check can reason about what fits. */
#define SHARED_DICT_ENTRY_OVERHEAD 64

struct shared_dict;

/* Status codes: 0 or one of these; shared_dict_strerror() gives OpenResty's words for them. */
enum sd_status {
    SD_OK = 0,
    SD_ENOMEM = -1,      /* "no memory": the entry can never fit, evict=false found no room, or
                            malloc failed */
    SD_EEXISTS = -2,     /* "exists": add over a live entry */
    SD_ENOTFOUND = -3,   /* "not found": replace or incr (without init) of an absent key */
    SD_ENOTNUMBER = -4,  /* "not a number": incr of a value that is not a number */
    SD_EEMPTYKEY = -5,   /* "empty key" */
    SD_EKEYTOOLONG = -6, /* "key too long": more than SHARED_DICT_KEY_MAX bytes */
    SD_EBADTTL = -7,     /* "bad ttl": negative or not finite */
};
const char *shared_dict_strerror(int status);

enum sd_type { SD_NIL, SD_BOOLEAN, SD_NUMBER, SD_STRING };

/* A value going in (store) or coming out (get). Only the member its type names is meaningful. */
struct sd_value {
    enum sd_type type;
    double number;
    bool boolean;
    const char *str; /* SD_STRING: `len` bytes, not NUL-terminated, NULs allowed */
    size_t len;
    uint32_t flags; /* OpenResty's user flags: stored with the value, returned by get */
    void *heap;     /* get only: a malloc'd block holding str, or NULL; the caller frees it */
};

/* Monotonic nanoseconds; the default reads CLOCK_MONOTONIC. Tests inject their own. */
typedef int64_t (*sd_clock_fn)(void *arg);

/* A dictionary named by `name_len` bytes of `name` (copied) that accounts at most
 * `capacity_bytes`. NULL only when out of memory. */
struct shared_dict *shared_dict_new(const char *name, size_t name_len, size_t capacity_bytes);
/* Frees the dictionary and every entry. No other thread may be using it. NULL is a no-op. */
void shared_dict_free(struct shared_dict *d);
/* Replaces the clock (NULL restores CLOCK_MONOTONIC). Call before sharing the dictionary. */
void shared_dict_set_clock(struct shared_dict *d, sd_clock_fn clock, void *arg);

/* The name and its length (owned by the dictionary). */
const char *shared_dict_name(const struct shared_dict *d, size_t *len);
size_t shared_dict_capacity(const struct shared_dict *d);
/* capacity - accounted bytes, at this instant: for tests and metrics. */
size_t shared_dict_free_space(struct shared_dict *d);

/* Looks `key` up and copies its value into `*out`: SD_NIL when absent or expired (an expired
 * entry is removed). A string is copied into `buf` when it fits in `buf_size` bytes (buf may be
 * NULL with 0), otherwise into a malloc'd block that out->heap then points to; the caller calls
 * free(out->heap) after every successful get (NULL when nothing was allocated). Makes the entry
 * most recently used. Returns 0, SD_EEMPTYKEY, SD_EKEYTOOLONG, or SD_ENOMEM (malloc failed; out
 * then reads nil). */
int shared_dict_get(struct shared_dict *d, const char *key, size_t klen, struct sd_value *out,
                    char *buf, size_t buf_size);

enum sd_store_mode {
    SD_STORE_SET,     /* set: insert or overwrite */
    SD_STORE_ADD,     /* add: SD_EEXISTS when a live (unexpired) entry holds the key */
    SD_STORE_REPLACE, /* replace: SD_ENOTFOUND when no live entry holds the key */
};

/* Stores `v` (its type, payload and flags; the string is copied) under `key` for `ttl` seconds
 * (fractions allowed; 0 = no expiry). A nil value deletes the key, subject to the mode's check.
 * Needing room, it first reclaims expired entries at the cold end of the LRU list, then, when
 * `evict` is true, evicts least recently used entries until the new one fits, setting
 * `*forcible` (may be NULL) when a live entry was evicted; with `evict` false (OpenResty's
 * safe_set and safe_add) it fails with SD_ENOMEM instead. An entry larger than capacity fails
 * with SD_ENOMEM before anything is evicted. On failure no live entry has changed or gone
 * (expired ones may have been reclaimed, an existing entry may have become most recent). */
int shared_dict_store(struct shared_dict *d, enum sd_store_mode mode, bool evict, const char *key,
                      size_t klen, const struct sd_value *v, double ttl, bool *forcible);

static inline int shared_dict_set(struct shared_dict *d, const char *key, size_t klen,
                                  const struct sd_value *v, double ttl, bool *forcible) {
    return shared_dict_store(d, SD_STORE_SET, true, key, klen, v, ttl, forcible);
}

static inline int shared_dict_add(struct shared_dict *d, const char *key, size_t klen,
                                  const struct sd_value *v, double ttl, bool *forcible) {
    return shared_dict_store(d, SD_STORE_ADD, true, key, klen, v, ttl, forcible);
}

/* Adds `by` to the number under `key`, keeping its TTL and flags, and stores the sum in
 * `*result`. An absent (or expired) key fails with SD_ENOTFOUND unless `has_init`: it is then
 * created as init + by with flags 0 and TTL `init_ttl` (0 = none), evicting as set does (and
 * reporting it through `*forcible`, which may be NULL). A value of another type fails with
 * SD_ENOTNUMBER. Makes the entry most recently used. */
int shared_dict_incr(struct shared_dict *d, const char *key, size_t klen, double by, bool has_init,
                     double init, double init_ttl, double *result, bool *forcible);

/* Removes `key` if present. Returns 0 (also when absent), SD_EEMPTYKEY or SD_EKEYTOOLONG. */
int shared_dict_delete(struct shared_dict *d, const char *key, size_t klen);

#endif
