/* router: compiles routes into per-host radix trees plus an ordered regex list,
 * and matches requests against them (contract and rules in router.h).
 *
 * Layout of a compiled router:
 *  - regexes: every "~" path of every route, sorted by (regex_priority desc,
 *    order asc); tried first, in that order, each checking its own hosts.
 *  - hostless: a radix tree of the prefix paths of routes without hosts.
 *  - exact / wildcard: hash tables from a host ("api.example.com") or a
 *    wildcard suffix (".example.com" for "*.example.com") to a radix tree of
 *    the prefix paths of the routes listing that host.
 * Each radix node holds a bucket of the entries whose path is exactly that
 * node's key, pre-sorted best first, so a lookup stops at the first entry
 * whose methods and headers the request satisfies. All buckets of all trees
 * share one block.
 *
 * Building costs a few dozen allocations whatever the number of routes (an
 * admin change rebuilds the router, and freeing the previous one must be as
 * cheap): entries are collected with the bucket number their key got when
 * inserted, the block is sized from the counts, each bucket of more than one
 * entry is sorted, and radix_pool_freeze() turns the numbers into the
 * buckets. Every tree is in one radix pool: 10,000 hosts are 10,000 trees.
 * Regexes are compiled only when the previous router did not have them
 * (router/regex_set.h).
 *
 * Everything is built once by router_build() and only read afterwards, so
 * router_match() needs no locks; the only per-call allocation is the PCRE2
 * match data, and only when a regex is actually run. */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "router/router.h"

#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/radix.h"
#include "router/regex_set.h"

/* Ranked so that a larger value wins a tie at equal prefix and conditions. */
enum router_host_kind { ROUTER_HOST_NONE, ROUTER_HOST_WILDCARD, ROUTER_HOST_EXACT };

struct router_entry {
    const struct route *route;
    size_t path_index;
    size_t conditions; /* hosts (1 if any) + methods (1 if any) + one per header */
    bool filtered;     /* has methods or headers: saves reading the route otherwise */
};

/* The entries whose prefix is exactly one radix key, sorted best first, side
 * by side, because a lookup's cost is mostly its cache misses. */
struct router_bucket {
    size_t n;
    struct router_entry entries[];
};

struct router_host_slot {
    const char *host; /* points into the config; NULL marks a free slot */
    size_t host_len;
    uint64_t hash;
    struct radix_tree *tree;
};

/* Open addressing with linear probing; cap is 0 or a power of two, at most
 * half full so that a miss ends quickly. */
struct router_host_table {
    struct router_host_slot *slots;
    size_t n, cap;
};

struct router_regex {
    const struct route *route;
    size_t path_index;
    pcre2_code *code; /* shared->code, read without the extra hop */
    int n_groups;     /* capture groups + group 0 */
    struct regex_code *shared;
};

struct router {
    struct router_regex *regexes;
    size_t n_regexes, cap_regexes;
    uint32_t ovector_pairs;   /* enough for the regex with the most groups */
    struct radix_pool *trees; /* every tree below */
    struct radix_tree *hostless;
    struct router_host_table exact;
    struct router_host_table wildcard;
    char *buckets;              /* every tree's buckets, one after the other */
    struct regex_set *compiled; /* the codes of `regexes`, for the next build; NULL if none */
};

/* While building: a prefix entry with the number of its key's bucket. A radix
 * value holds that number plus one until radix_pool_freeze() (0 is "no key"). */
struct router_pending {
    struct router_entry entry;
    size_t bucket;
};

struct router_build {
    struct router_pending *pending; /* sized for every path of every route */
    size_t n_pending;
    size_t *bucket_at; /* per bucket: its entry count, then its offset in block */
    size_t n_buckets;
    char *block; /* r->buckets, once sized */
};

/* A possible answer while comparing trees. */
struct router_candidate {
    const struct router_entry *entry; /* NULL: nothing found yet */
    size_t prefix_len;
    enum router_host_kind kind;
};

static void router_oom(const char *file, int line) {
    fprintf(stderr, "%s:%d: out of memory\n", file, line);
    abort();
}

#define ROUTER_CHECK_ALLOC(p)                                                                      \
    do {                                                                                           \
        if (!(p)) router_oom(__FILE__, __LINE__);                                                  \
    } while (0)

/* ---- bytes and hosts ---------------------------------------------------- */

/* ASCII only: host names and header values are compared byte-wise, whatever
 * the process locale says. */
static unsigned char router_lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static bool router_equal_nocase(const char *a, size_t a_len, const char *b, size_t b_len) {
    if (a_len != b_len) return false;
    for (size_t i = 0; i < a_len; i++)
        if (router_lower((unsigned char)a[i]) != router_lower((unsigned char)b[i])) return false;
    return true;
}

/* FNV-1a over lower-cased bytes, so that lookups need no lower-cased copy. */
static uint64_t router_hash_nocase(const char *s, size_t len) {
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= router_lower((unsigned char)s[i]);
        h *= 1099511628211ULL;
    }
    return h;
}

/* Length of host without a trailing ":port". The caller should already have
 * removed it, but a Host header passed through unchanged must still match.
 * "[::1]:8080" loses its port; a bare IPv6 address ("::1") has no port. */
static size_t router_host_len_without_port(const char *host, size_t len) {
    size_t i = len;
    while (i > 0 && host[i - 1] >= '0' && host[i - 1] <= '9')
        i--;
    if (i == 0 || host[i - 1] != ':') return len;
    size_t colon = i - 1;
    if (host[0] == '[') return (colon > 0 && host[colon - 1] == ']') ? colon : len;
    if (memchr(host, ':', colon)) return len;
    return colon;
}

static bool router_is_wildcard(const char *host, size_t len) {
    return len >= 2 && host[0] == '*' && host[1] == '.';
}

/* ---- host tables -------------------------------------------------------- */

static struct radix_tree *router_host_table_find(const struct router_host_table *t,
                                                 const char *host, size_t len) {
    if (t->n == 0) return NULL;
    uint64_t hash = router_hash_nocase(host, len);
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        const struct router_host_slot *s = &t->slots[i];
        if (!s->host) return NULL;
        if (s->hash == hash && router_equal_nocase(s->host, s->host_len, host, len)) return s->tree;
    }
}

static void router_host_table_place(struct router_host_slot *slots, size_t cap,
                                    const struct router_host_slot *slot) {
    size_t mask = cap - 1;
    size_t i = (size_t)slot->hash & mask;
    while (slots[i].host)
        i = (i + 1) & mask;
    slots[i] = *slot;
}

/* The tree for host (creating it in pool); host must outlive the table. */
static struct radix_tree *router_host_table_tree(struct router_host_table *t,
                                                 struct radix_pool *pool, const char *host,
                                                 size_t len) {
    struct radix_tree *tree = router_host_table_find(t, host, len);
    if (tree) return tree;
    if ((t->n + 1) * 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct router_host_slot *slots = calloc(cap, sizeof *slots);
        ROUTER_CHECK_ALLOC(slots);
        for (size_t i = 0; i < t->cap; i++)
            if (t->slots[i].host) router_host_table_place(slots, cap, &t->slots[i]);
        free(t->slots);
        t->slots = slots;
        t->cap = cap;
    }
    struct router_host_slot slot = {host, len, router_hash_nocase(host, len), radix_create(pool)};
    router_host_table_place(t->slots, t->cap, &slot);
    t->n++;
    return slot.tree;
}

/* ---- building ----------------------------------------------------------- */

static size_t router_conditions(const struct route *r) {
    return (size_t)(r->n_hosts > 0) + (size_t)(r->n_methods > 0) + r->n_headers;
}

static void router_tree_add(struct router_build *b, struct radix_tree *t, const char *path,
                            size_t len, const struct router_entry *e) {
    void **slot = radix_insert(t, path, len);
    if (!*slot) *slot = (void *)(uintptr_t)++b->n_buckets;
    size_t bucket = (uintptr_t)*slot - 1;
    b->bucket_at[bucket]++;
    b->pending[b->n_pending++] = (struct router_pending){*e, bucket};
}

/* Last tie-breakers, so that the result never depends on the order of the
 * routes array even if two routes were (wrongly) given the same `order`. */
static int router_cmp_order(const struct route *a, size_t a_path, const struct route *b,
                            size_t b_path) {
    if (a->order != b->order) return a->order < b->order ? -1 : 1;
    int c = strcmp(a->id, b->id);
    if (c) return c;
    return a_path < b_path ? -1 : a_path > b_path;
}

/* Best first: more conditions, then lower order. */
static int router_cmp_entry(const void *pa, const void *pb) {
    const struct router_entry *a = pa, *b = pb;
    if (a->conditions != b->conditions) return a->conditions > b->conditions ? -1 : 1;
    return router_cmp_order(a->route, a->path_index, b->route, b->path_index);
}

/* Try order: higher regex_priority, then lower order. */
static int router_cmp_regex(const void *pa, const void *pb) {
    const struct router_regex *a = pa, *b = pb;
    if (a->route->regex_priority != b->route->regex_priority)
        return a->route->regex_priority > b->route->regex_priority ? -1 : 1;
    return router_cmp_order(a->route, a->path_index, b->route, b->path_index);
}

/* A bucket's size in the block: 8-byte aligned, as entries hold pointers. */
static size_t router_bucket_size(size_t n) {
    return sizeof(struct router_bucket) + n * sizeof(struct router_entry);
}

/* radix_pool_freeze()'s map: a bucket number (plus one) to its bucket. */
static void *router_bucket_of(void *value, void *ctx) {
    const struct router_build *b = ctx;
    return b->block + b->bucket_at[(uintptr_t)value - 1];
}

/* Lays the pending entries out in their buckets, sorts the buckets that hold
 * more than one, and freezes the trees with their final values. */
static void router_finish_trees(struct router *r, struct router_build *b) {
    size_t total = 0;
    for (size_t k = 0; k < b->n_buckets; k++) {
        size_t n = b->bucket_at[k];
        b->bucket_at[k] = total;
        total += router_bucket_size(n);
    }
    r->buckets = malloc(total ? total : 1);
    ROUTER_CHECK_ALLOC(r->buckets);
    b->block = r->buckets;
    for (size_t k = 0; k < b->n_buckets; k++)
        ((struct router_bucket *)(r->buckets + b->bucket_at[k]))->n = 0;
    for (size_t i = 0; i < b->n_pending; i++) {
        struct router_bucket *bk =
            (struct router_bucket *)(r->buckets + b->bucket_at[b->pending[i].bucket]);
        bk->entries[bk->n++] = b->pending[i].entry;
    }
    for (size_t k = 0; k < b->n_buckets; k++) {
        struct router_bucket *bk = (struct router_bucket *)(r->buckets + b->bucket_at[k]);
        if (bk->n > 1) qsort(bk->entries, bk->n, sizeof *bk->entries, router_cmp_entry);
    }
    radix_pool_freeze(r->trees, router_bucket_of, b);
}

/* Compiles routes[route_i].paths[path_i] (which starts with "~"); on a bad
 * pattern reports it and returns false. */
static bool router_add_regex(struct router *r, const struct regex_set *reuse,
                             const struct route *route, size_t route_i, size_t path_i,
                             struct errlist *errs) {
    const char *pattern = route->paths[path_i] + 1;
    int errcode = 0;
    size_t erroffset = 0;
    struct regex_code *shared = regex_code_get(reuse, pattern, &errcode, &erroffset);
    if (!shared) {
        if (errs) {
            PCRE2_UCHAR msg[256];
            char field[160];
            pcre2_get_error_message(errcode, msg, sizeof msg);
            if (route->source_path)
                snprintf(field, sizeof field, "%s.paths[%zu]", route->source_path, path_i);
            else
                snprintf(field, sizeof field, "routes[%zu].paths[%zu]", route_i, path_i);
            errlist_addf(errs, field, "invalid regex: %s at offset %zu", (const char *)msg,
                         erroffset);
        }
        return false;
    }
    uint32_t captures = shared->captures;
    if (captures + 1 > r->ovector_pairs) r->ovector_pairs = captures + 1;

    if (r->n_regexes == r->cap_regexes) {
        r->cap_regexes = r->cap_regexes ? r->cap_regexes * 2 : 8;
        r->regexes = realloc(r->regexes, r->cap_regexes * sizeof *r->regexes);
        ROUTER_CHECK_ALLOC(r->regexes);
    }
    int groups = captures + 1 < ROUTER_MAX_CAPTURES ? (int)captures + 1 : ROUTER_MAX_CAPTURES;
    r->regexes[r->n_regexes++] = (struct router_regex){route, path_i, shared->code, groups, shared};
    return true;
}

/* Inserts one prefix path of a route into the tree of every host it lists,
 * or into the host-less tree when it lists none. */
static void router_add_prefix(struct router *r, struct router_build *b, const struct route *route,
                              size_t path_i, const char *path) {
    struct router_entry e = {route, path_i, router_conditions(route),
                             route->n_methods > 0 || route->n_headers > 0};
    size_t len = strlen(path);
    if (route->n_hosts == 0) {
        router_tree_add(b, r->hostless, path, len, &e);
        return;
    }
    for (size_t h = 0; h < route->n_hosts; h++) {
        const char *host = route->hosts[h];
        size_t host_len = router_host_len_without_port(host, strlen(host));
        struct radix_tree *t;
        if (router_is_wildcard(host, host_len)) /* "*.example.com" is keyed ".example.com" */
            t = router_host_table_tree(&r->wildcard, r->trees, host + 1, host_len - 1);
        else
            t = router_host_table_tree(&r->exact, r->trees, host, host_len);
        router_tree_add(b, t, path, len, &e);
    }
}

struct router *router_build(const struct route *routes, size_t n, struct errlist *errs) {
    return router_build_reusing(routes, n, NULL, errs);
}

/* The set of the router's codes, for the next build to reuse. */
static void router_keep_compiled(struct router *r) {
    struct regex_code **codes = malloc(r->n_regexes * sizeof *codes);
    ROUTER_CHECK_ALLOC(codes);
    for (size_t i = 0; i < r->n_regexes; i++)
        codes[i] = r->regexes[i].shared;
    r->compiled = regex_set_build(codes, r->n_regexes);
    free(codes);
}

struct router *router_build_reusing(const struct route *routes, size_t n,
                                    const struct regex_set *reuse, struct errlist *errs) {
    struct router *r = calloc(1, sizeof *r);
    ROUTER_CHECK_ALLOC(r);
    r->trees = radix_pool_create();
    r->hostless = radix_create(r->trees);
    /* Prefix entries: one per path (or one for no path) and host (or one for no host). */
    size_t max_entries = 0;
    for (size_t i = 0; i < n; i++)
        max_entries += (routes[i].n_paths ? routes[i].n_paths : 1) *
                       (routes[i].n_hosts ? routes[i].n_hosts : 1);
    struct router_build b = {0};
    b.pending = malloc((max_entries ? max_entries : 1) * sizeof *b.pending);
    b.bucket_at = calloc(max_entries ? max_entries : 1, sizeof *b.bucket_at);
    ROUTER_CHECK_ALLOC(b.pending);
    ROUTER_CHECK_ALLOC(b.bucket_at);
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        const struct route *route = &routes[i];
        if (route->protocols & ROUTE_PROTO_TLS_PASSTHROUGH) continue; /* tls/passthrough.h */
        if (route->n_paths == 0) {
            router_add_prefix(r, &b, route, 0, "");
            continue;
        }
        for (size_t j = 0; j < route->n_paths; j++) {
            const char *path = route->paths[j];
            if (path[0] == '~')
                ok = router_add_regex(r, reuse, route, i, j, errs) && ok; /* report them all */
            else
                router_add_prefix(r, &b, route, j, path);
        }
    }
    if (ok) {
        if (r->n_regexes) {
            qsort(r->regexes, r->n_regexes, sizeof *r->regexes, router_cmp_regex);
            router_keep_compiled(r);
        }
        router_finish_trees(r, &b);
    }
    free(b.pending);
    free(b.bucket_at);
    if (!ok) {
        router_free(r);
        return NULL;
    }
    return r;
}

struct regex_set *router_compiled_regexes(const struct router *r) {
    return r->compiled;
}

void router_free(struct router *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_regexes; i++)
        regex_code_release(r->regexes[i].shared);
    free(r->regexes);
    regex_set_release(r->compiled);
    radix_pool_free(r->trees);
    free(r->exact.slots);
    free(r->wildcard.slots);
    free(r->buckets);
    free(r);
}

/* ---- conditions --------------------------------------------------------- */

static bool router_methods_ok(const struct route *route, const struct route_request *req) {
    if (route->n_methods == 0) return true;
    for (size_t i = 0; i < route->n_methods; i++) {
        const char *m = route->methods[i];
        if (strlen(m) == req->method_len && memcmp(m, req->method, req->method_len) == 0)
            return true;
    }
    return false;
}

/* One header condition: any occurrence of the header equal to any listed
 * value. A condition listing no values asks only for the header's presence. */
static bool router_header_ok(const struct route_header *h, const struct route_request *req) {
    const char *value;
    size_t value_len;
    for (size_t idx = 0; (value = req->get_header(req->ctx, h->name, idx, &value_len)); idx++) {
        if (h->n_values == 0) return true;
        for (size_t v = 0; v < h->n_values; v++)
            if (router_equal_nocase(value, value_len, h->values[v], strlen(h->values[v])))
                return true;
    }
    return false;
}

static bool router_headers_ok(const struct route *route, const struct route_request *req) {
    if (route->n_headers == 0) return true;
    if (!req->get_header) return false;
    for (size_t i = 0; i < route->n_headers; i++)
        if (!router_header_ok(&route->headers[i], req)) return false;
    return true;
}

/* Regex routes are not stored per host, so they check their hosts here, with
 * the same rules as the tables: a wildcard needs at least one byte before its
 * ".suffix". `host` is already without its port. */
static bool router_hosts_ok(const struct route *route, const char *host, size_t len) {
    if (route->n_hosts == 0) return true;
    for (size_t i = 0; i < route->n_hosts; i++) {
        const char *h = route->hosts[i];
        size_t h_len = router_host_len_without_port(h, strlen(h));
        if (router_is_wildcard(h, h_len)) {
            size_t suffix_len = h_len - 1;
            if (len > suffix_len &&
                router_equal_nocase(host + len - suffix_len, suffix_len, h + 1, suffix_len))
                return true;
        } else if (router_equal_nocase(host, len, h, h_len)) {
            return true;
        }
    }
    return false;
}

/* ---- matching ----------------------------------------------------------- */

static bool router_match_regex(const struct router *r, const struct route_request *req,
                               const char *path, const char *host, size_t host_len,
                               struct route_match *out) {
    pcre2_match_data *md = NULL; /* created on first use: most requests never run a regex */
    bool found = false;
    for (size_t i = 0; i < r->n_regexes && !found; i++) {
        const struct router_regex *re = &r->regexes[i];
        if (!router_methods_ok(re->route, req) || !router_hosts_ok(re->route, host, host_len))
            continue;
        if (!md) {
            md = pcre2_match_data_create(r->ovector_pairs, NULL);
            ROUTER_CHECK_ALLOC(md);
        }
        /* Errors (match or depth limits) count as no match. */
        int rc = pcre2_match(re->code, (PCRE2_SPTR)path, req->path_len, 0, 0, md, NULL);
        /* The JIT's 32 KiB stack can be outgrown by a repeated group on a long path; the
         * interpreter backtracks on the heap instead. Without this the route would silently not
         * match. */
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(re->code, (PCRE2_SPTR)path, req->path_len, 0, PCRE2_NO_JIT, md, NULL);
        if (rc <= 0) continue;
        if (!router_headers_ok(re->route, req)) continue;

        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        out->route = re->route;
        out->path_index = re->path_index;
        out->matched_len = ov[1];
        out->is_regex = true;
        out->regex = re->code;
        out->n_captures = re->n_groups;
        for (int g = 0; g < ROUTER_MAX_CAPTURES; g++) {
            bool set = g < re->n_groups && ov[2 * g] != PCRE2_UNSET;
            out->captures[g][0] = set ? ov[2 * g] : SIZE_MAX;
            out->captures[g][1] = set ? ov[2 * g + 1] : SIZE_MAX;
        }
        found = true;
    }
    pcre2_match_data_free(md);
    return found;
}

static bool router_candidate_better(const struct router_candidate *a,
                                    const struct router_candidate *b) {
    if (!b->entry) return true;
    if (a->prefix_len != b->prefix_len) return a->prefix_len > b->prefix_len;
    if (a->entry->conditions != b->entry->conditions)
        return a->entry->conditions > b->entry->conditions;
    if (a->kind != b->kind) return a->kind > b->kind;
    return router_cmp_order(a->entry->route, a->entry->path_index, b->entry->route,
                            b->entry->path_index) < 0;
}

/* Replaces *best with this tree's best entry if that one is better. Within a
 * tree the host kind is fixed and buckets are sorted, so the first entry that
 * passes its conditions, walking from the longest prefix down, is the tree's
 * best, and the walk stops as soon as nothing left can beat *best. */
static void router_match_tree(const struct radix_tree *t, enum router_host_kind kind,
                              const struct route_request *req, const char *path,
                              struct router_candidate *best) {
    if (!t) return;
    for (const struct radix_node *n = radix_longest_prefix(t, path, req->path_len); n;
         n = radix_shorter(n)) {
        struct router_candidate c = {NULL, radix_key_len(n), kind};
        if (best->entry && c.prefix_len < best->prefix_len) return;
        const struct router_bucket *b = radix_value(n);
        for (size_t i = 0; i < b->n; i++) {
            c.entry = &b->entries[i];
            if (!router_candidate_better(&c, best)) break;
            if (!c.entry->filtered || (router_methods_ok(c.entry->route, req) &&
                                       router_headers_ok(c.entry->route, req))) {
                *best = c;
                return;
            }
        }
    }
}

bool router_match(const struct router *r, const struct route_request *req,
                  struct route_match *out) {
    const char *path = req->path ? req->path : ""; /* PCRE2 rejects NULL even at length 0 */
    const char *host = req->host ? req->host : "";
    size_t host_len = req->host ? router_host_len_without_port(host, req->host_len) : 0;

    if (r->n_regexes && router_match_regex(r, req, path, host, host_len, out)) return true;

    struct router_candidate best = {NULL, 0, ROUTER_HOST_NONE};
    if (host_len) {
        router_match_tree(router_host_table_find(&r->exact, host, host_len), ROUTER_HOST_EXACT, req,
                          path, &best);
        /* "*.example.com" is keyed ".example.com": try every suffix starting
         * at a dot, keeping at least one byte in front of it. */
        if (r->wildcard.n)
            for (size_t i = 1; i < host_len; i++)
                if (host[i] == '.')
                    router_match_tree(router_host_table_find(&r->wildcard, host + i, host_len - i),
                                      ROUTER_HOST_WILDCARD, req, path, &best);
    }
    router_match_tree(r->hostless, ROUTER_HOST_NONE, req, path, &best);
    if (!best.entry) return false;

    out->route = best.entry->route;
    out->path_index = best.entry->path_index;
    out->matched_len = best.prefix_len;
    out->is_regex = false;
    out->n_captures = 0;
    for (int g = 0; g < ROUTER_MAX_CAPTURES; g++)
        out->captures[g][0] = out->captures[g][1] = SIZE_MAX;
    return true;
}
