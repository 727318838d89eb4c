/* shared_dict: a keyed-hash index with chaining over entries that are also on one LRU list.
 *
 * The bucket array is sized once from the capacity (capacity/256 slots rounded up to a power of
 * two, so at most four of the smallest possible entries per slot), which keeps lookups O(1)
 * without ever rehashing under the lock. The hash is SipHash-1-3 with a random key per
 * dictionary: keys come from requests, and a fixed hash would let a client pile them into one
 * chain. Memory is malloc'd per entry (header, key, string in one block); stores allocate and
 * copy before taking the lock, and everything removed under the lock is chained on a local
 * garbage list and freed after it is released. */
#include "lua/shared_dict.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core/log.h"

struct sd_entry {
    struct sd_entry *hnext; /* hash chain; the garbage list once removed */
    struct sd_entry *prev;  /* towards the most recently used end */
    struct sd_entry *next;  /* towards the least recently used end */
    uint64_t hash;
    int64_t expires; /* clock nanoseconds; 0 = never */
    union {
        double number;
        bool boolean;
    } u;
    size_t vlen; /* string bytes after the key; 0 for other types */
    uint32_t flags;
    uint16_t klen;
    uint8_t type; /* enum sd_type, never SD_NIL */
    char data[];  /* key, then string */
};

_Static_assert(sizeof(struct sd_entry) <= SHARED_DICT_ENTRY_OVERHEAD,
               "the accounted overhead must cover the entry header");

struct shared_dict {
    pthread_mutex_t lock;
    struct sd_entry **buckets;
    size_t mask;
    struct sd_entry *mru, *lru; /* ends of the recency list */
    size_t used;                /* accounted bytes, <= capacity */
    size_t capacity;
    uint64_t seed[2];
    sd_clock_fn clock;
    void *clock_arg;
    size_t name_len;
    char name[];
};

/* The clock read at most once per locked section, and only when some entry has a TTL. */
struct sd_now {
    struct shared_dict *d;
    int64_t ns;
    bool known;
};

const char *shared_dict_strerror(int status) {
    switch (status) {
    case SD_OK:
        return "ok";
    case SD_ENOMEM:
        return "no memory";
    case SD_EEXISTS:
        return "exists";
    case SD_ENOTFOUND:
        return "not found";
    case SD_ENOTNUMBER:
        return "not a number";
    case SD_EEMPTYKEY:
        return "empty key";
    case SD_EKEYTOOLONG:
        return "key too long";
    case SD_EBADTTL:
        return "bad ttl";
    }
    return "unknown error";
}

static int64_t monotonic_ns(void *arg) {
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ns(struct sd_now *now) {
    if (!now->known) {
        now->ns = now->d->clock(now->d->clock_arg);
        now->known = true;
    }
    return now->ns;
}

static bool is_expired(const struct sd_entry *e, struct sd_now *now) {
    return e->expires != 0 && e->expires <= now_ns(now);
}

/* Absolute expiry for `ttl` seconds from now (0 = never), saturating rather than overflowing. */
static int64_t expiry_for(struct shared_dict *d, double ttl) {
    if (ttl == 0) return 0;
    int64_t now = d->clock(d->clock_arg);
    if (ttl >= 9.0e9) return INT64_MAX; /* beyond int64 nanoseconds: as good as never */
    int64_t delta = (int64_t)(ttl * 1e9);
    if (delta < 1) delta = 1;
    return delta > INT64_MAX - now ? INT64_MAX : now + delta;
}

static int check_key(size_t klen) {
    if (klen == 0) return SD_EEMPTYKEY;
    if (klen > SHARED_DICT_KEY_MAX) return SD_EKEYTOOLONG;
    return SD_OK;
}

static int check_ttl(double ttl) {
    return isfinite(ttl) && ttl >= 0 ? SD_OK : SD_EBADTTL;
}

static uint64_t rotl(uint64_t x, int b) {
    return (x << b) | (x >> (64 - b));
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1, v1 = rotl(v1, 13), v1 ^= v0, v0 = rotl(v0, 32);                                  \
        v2 += v3, v3 = rotl(v3, 16), v3 ^= v2;                                                     \
        v0 += v3, v3 = rotl(v3, 21), v3 ^= v0;                                                     \
        v2 += v1, v1 = rotl(v1, 17), v1 ^= v2, v2 = rotl(v2, 32);                                  \
    } while (0)

/* SipHash-1-3 (one compression round, three finalisation rounds), as Redis and Rust use for
 * tables whose keys an attacker chooses. */
static uint64_t siphash13(const uint64_t k[2], const char *key, size_t len) {
    const unsigned char *in = (const unsigned char *)key;
    uint64_t v0 = 0x736f6d6570736575ULL ^ k[0], v1 = 0x646f72616e646f6dULL ^ k[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ k[0], v3 = 0x7465646279746573ULL ^ k[1];
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m;
        memcpy(&m, in + i, 8);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++)
        b |= (uint64_t)in[whole + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static size_t entry_bytes(const struct sd_entry *e) {
    return SHARED_DICT_ENTRY_OVERHEAD + e->klen + e->vlen;
}

static struct sd_entry *find(struct shared_dict *d, uint64_t hash, const char *key, size_t klen) {
    for (struct sd_entry *e = d->buckets[hash & d->mask]; e; e = e->hnext)
        if (e->hash == hash && e->klen == klen && memcmp(e->data, key, klen) == 0) return e;
    return NULL;
}

static void lru_unlink(struct shared_dict *d, struct sd_entry *e) {
    if (e->prev)
        e->prev->next = e->next;
    else
        d->mru = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        d->lru = e->prev;
}

static void lru_push_mru(struct shared_dict *d, struct sd_entry *e) {
    e->prev = NULL;
    e->next = d->mru;
    if (d->mru)
        d->mru->prev = e;
    else
        d->lru = e;
    d->mru = e;
}

static void touch(struct shared_dict *d, struct sd_entry *e) {
    if (d->mru == e) return;
    lru_unlink(d, e);
    lru_push_mru(d, e);
}

static void insert(struct shared_dict *d, struct sd_entry *e) {
    struct sd_entry **bucket = &d->buckets[e->hash & d->mask];
    e->hnext = *bucket;
    *bucket = e;
    lru_push_mru(d, e);
    d->used += entry_bytes(e);
    WEIR_BUG_ON(d->used > d->capacity);
}

/* Unlinks `e` from the index and the LRU list and chains it on `*garbage` to be freed unlocked. */
static void discard(struct shared_dict *d, struct sd_entry *e, struct sd_entry **garbage) {
    struct sd_entry **link = &d->buckets[e->hash & d->mask];
    while (*link != e) {
        WEIR_BUG_ON(!*link);
        link = &(*link)->hnext;
    }
    *link = e->hnext;
    lru_unlink(d, e);
    d->used -= entry_bytes(e);
    e->hnext = *garbage;
    *garbage = e;
}

static void free_garbage(struct sd_entry *garbage) {
    while (garbage) {
        struct sd_entry *next = garbage->hnext;
        free(garbage);
        garbage = next;
    }
}

/* The live entry for `key`, discarding it when it has expired. */
static struct sd_entry *lookup(struct shared_dict *d, uint64_t hash, const char *key, size_t klen,
                               struct sd_now *now, struct sd_entry **garbage) {
    struct sd_entry *e = find(d, hash, key, klen);
    if (e && is_expired(e, now)) {
        discard(d, e, garbage);
        return NULL;
    }
    return e;
}

/* Frees room for an entry of `need` bytes that will replace `old` (NULL or live, and most
 * recently used so that eviction reaches it last). Like OpenResty, first reclaims up to two
 * expired entries at the cold end even when there is room, so that expired entries do not
 * linger; then takes entries from the cold end while room is short: expired ones freely, live
 * ones only when `evict` allows (setting *forcible). Callers have checked need <= capacity, so
 * the loop ends before it reaches `old`. */
static bool make_room(struct shared_dict *d, size_t need, const struct sd_entry *old, bool evict,
                      struct sd_now *now, struct sd_entry **garbage, bool *forcible) {
    for (int i = 0; i < 2 && d->lru && d->lru != old && is_expired(d->lru, now); i++)
        discard(d, d->lru, garbage);
    size_t credit = old ? entry_bytes(old) : 0;
    while (d->capacity - (d->used - credit) < need) {
        struct sd_entry *victim = d->lru;
        WEIR_BUG_ON(!victim || victim == old);
        if (!is_expired(victim, now)) {
            if (!evict) return false;
            *forcible = true;
        }
        discard(d, victim, garbage);
    }
    return true;
}

struct shared_dict *shared_dict_new(const char *name, size_t name_len, size_t capacity_bytes) {
    struct shared_dict *d = calloc(1, sizeof *d + name_len + 1);
    if (!d) return NULL;
    size_t slots = 8;
    while (slots < capacity_bytes / 256)
        slots <<= 1;
    d->buckets = calloc(slots, sizeof *d->buckets);
    if (!d->buckets || pthread_mutex_init(&d->lock, NULL) != 0) {
        free(d->buckets);
        free(d);
        return NULL;
    }
    d->mask = slots - 1;
    d->capacity = capacity_bytes;
    d->clock = monotonic_ns;
    if (getrandom(d->seed, sizeof d->seed, GRND_NONBLOCK) != (ssize_t)sizeof d->seed) {
        /* Early boot without entropy: a per-process, per-dictionary key is still far better
         * than a constant one. */
        d->seed[0] = (uint64_t)monotonic_ns(NULL) ^ (uint64_t)(uintptr_t)d;
        d->seed[1] = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)d->buckets << 17);
    }
    if (name_len) memcpy(d->name, name, name_len);
    d->name_len = name_len;
    return d;
}

void shared_dict_free(struct shared_dict *d) {
    if (!d) return;
    for (struct sd_entry *e = d->mru, *next; e; e = next) {
        next = e->next;
        free(e);
    }
    pthread_mutex_destroy(&d->lock);
    free(d->buckets);
    free(d);
}

void shared_dict_set_clock(struct shared_dict *d, sd_clock_fn clock, void *arg) {
    d->clock = clock ? clock : monotonic_ns;
    d->clock_arg = arg;
}

const char *shared_dict_name(const struct shared_dict *d, size_t *len) {
    *len = d->name_len;
    return d->name;
}

size_t shared_dict_capacity(const struct shared_dict *d) {
    return d->capacity;
}

size_t shared_dict_free_space(struct shared_dict *d) {
    pthread_mutex_lock(&d->lock);
    size_t used = d->used;
    pthread_mutex_unlock(&d->lock);
    return d->capacity - used;
}

int shared_dict_get(struct shared_dict *d, const char *key, size_t klen, struct sd_value *out,
                    char *buf, size_t buf_size) {
    memset(out, 0, sizeof *out);
    out->type = SD_NIL;
    int rc = check_key(klen);
    if (rc) return rc;
    uint64_t hash = siphash13(d->seed, key, klen);
    struct sd_entry *garbage = NULL;
    struct sd_now now = {.d = d};
    pthread_mutex_lock(&d->lock);
    struct sd_entry *e = lookup(d, hash, key, klen, &now, &garbage);
    if (e && e->type == SD_STRING && e->vlen == 0) {
        out->str = ""; /* never NULL, even without a buffer */
    } else if (e && e->type == SD_STRING) {
        char *dst = buf;
        if (e->vlen > buf_size) dst = out->heap = malloc(e->vlen);
        if (dst) {
            memcpy(dst, e->data + e->klen, e->vlen);
            out->str = dst;
            out->len = e->vlen;
        } else {
            e = NULL;
            rc = SD_ENOMEM;
        }
    }
    if (e) {
        out->type = (enum sd_type)e->type;
        out->number = e->type == SD_NUMBER ? e->u.number : 0;
        out->boolean = e->type == SD_BOOLEAN ? e->u.boolean : false;
        out->flags = e->flags;
        touch(d, e);
    }
    pthread_mutex_unlock(&d->lock);
    free_garbage(garbage);
    return rc;
}

/* set/add/replace of nil: a delete guarded by the mode's check. */
static int store_nil(struct shared_dict *d, enum sd_store_mode mode, const char *key, size_t klen,
                     uint64_t hash) {
    struct sd_entry *garbage = NULL;
    struct sd_now now = {.d = d};
    int rc = SD_OK;
    pthread_mutex_lock(&d->lock);
    struct sd_entry *e = lookup(d, hash, key, klen, &now, &garbage);
    if (e && mode == SD_STORE_ADD)
        rc = SD_EEXISTS;
    else if (!e && mode == SD_STORE_REPLACE)
        rc = SD_ENOTFOUND;
    else if (e)
        discard(d, e, &garbage);
    pthread_mutex_unlock(&d->lock);
    free_garbage(garbage);
    return rc;
}

int shared_dict_store(struct shared_dict *d, enum sd_store_mode mode, bool evict, const char *key,
                      size_t klen, const struct sd_value *v, double ttl, bool *forcible) {
    bool forced = false;
    if (forcible) *forcible = false;
    int rc = check_key(klen);
    if (!rc) rc = check_ttl(ttl);
    if (rc) return rc;
    WEIR_BUG_ON(v->type != SD_NIL && v->type != SD_BOOLEAN && v->type != SD_NUMBER &&
                v->type != SD_STRING);
    uint64_t hash = siphash13(d->seed, key, klen);
    if (v->type == SD_NIL) return store_nil(d, mode, key, klen, hash);

    size_t vlen = v->type == SD_STRING ? v->len : 0;
    if (vlen > d->capacity || SHARED_DICT_ENTRY_OVERHEAD + klen > d->capacity - vlen)
        return SD_ENOMEM; /* could never fit: evict nothing */
    struct sd_entry *e = malloc(sizeof *e + klen + vlen);
    if (!e) return SD_ENOMEM;
    e->hash = hash;
    e->expires = expiry_for(d, ttl);
    e->u.number = 0;
    if (v->type == SD_NUMBER) e->u.number = v->number;
    if (v->type == SD_BOOLEAN) e->u.boolean = v->boolean;
    e->vlen = vlen;
    e->flags = v->flags;
    e->klen = (uint16_t)klen;
    e->type = (uint8_t)v->type;
    memcpy(e->data, key, klen);
    if (vlen) memcpy(e->data + klen, v->str, vlen);

    struct sd_entry *garbage = NULL;
    struct sd_now now = {.d = d};
    pthread_mutex_lock(&d->lock);
    struct sd_entry *old = lookup(d, hash, key, klen, &now, &garbage);
    if (old && mode == SD_STORE_ADD)
        rc = SD_EEXISTS;
    else if (!old && mode == SD_STORE_REPLACE)
        rc = SD_ENOTFOUND;
    else {
        if (old) touch(d, old);
        if (!make_room(d, entry_bytes(e), old, evict, &now, &garbage, &forced)) rc = SD_ENOMEM;
    }
    if (rc == SD_OK) {
        if (old) discard(d, old, &garbage);
        insert(d, e);
        e = NULL;
    }
    pthread_mutex_unlock(&d->lock);
    free(e);
    free_garbage(garbage);
    if (forcible) *forcible = forced;
    return rc;
}

int shared_dict_incr(struct shared_dict *d, const char *key, size_t klen, double by, bool has_init,
                     double init, double init_ttl, double *result, bool *forcible) {
    bool forced = false;
    if (forcible) *forcible = false;
    int rc = check_key(klen);
    if (!rc && has_init) rc = check_ttl(init_ttl);
    if (rc) return rc;
    uint64_t hash = siphash13(d->seed, key, klen);
    struct sd_entry *garbage = NULL;
    struct sd_now now = {.d = d};
    pthread_mutex_lock(&d->lock);
    struct sd_entry *e = lookup(d, hash, key, klen, &now, &garbage);
    if (e) {
        if (e->type != SD_NUMBER) {
            rc = SD_ENOTNUMBER;
        } else {
            e->u.number += by;
            *result = e->u.number;
            touch(d, e);
        }
    } else if (!has_init) {
        rc = SD_ENOTFOUND;
    } else if (SHARED_DICT_ENTRY_OVERHEAD + klen > d->capacity) {
        rc = SD_ENOMEM;
    } else {
        /* The rare path (first incr of a key) allocates under the lock; the common one, an
         * existing counter, allocates nothing. */
        e = malloc(sizeof *e + klen);
        if (!e) {
            rc = SD_ENOMEM;
        } else {
            *e = (struct sd_entry){.hash = hash, .klen = (uint16_t)klen, .type = SD_NUMBER};
            e->u.number = init + by;
            e->expires = expiry_for(d, init_ttl);
            memcpy(e->data, key, klen);
            (void)make_room(d, entry_bytes(e), NULL, true, &now, &garbage, &forced); /* fits */
            insert(d, e);
            *result = e->u.number;
        }
    }
    pthread_mutex_unlock(&d->lock);
    free_garbage(garbage);
    if (forcible) *forcible = forced;
    return rc;
}

int shared_dict_delete(struct shared_dict *d, const char *key, size_t klen) {
    int rc = check_key(klen);
    if (rc) return rc;
    uint64_t hash = siphash13(d->seed, key, klen);
    struct sd_entry *garbage = NULL;
    pthread_mutex_lock(&d->lock);
    struct sd_entry *e = find(d, hash, key, klen);
    if (e) discard(d, e, &garbage);
    pthread_mutex_unlock(&d->lock);
    free_garbage(garbage);
    return SD_OK;
}
