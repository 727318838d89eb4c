/* regex_set: compiled route regexes shared by successive routers (contract in regex_set.h).
 *
 * A set is an open-addressing table (at most half full) of codes by pattern hash, built once
 * and only read afterwards. */
#include "router/regex_set.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct regex_set {
    atomic_int refs;
    size_t mask; /* capacity - 1, a power of two */
    struct regex_code *slots[];
};

static void regex_oom(int line) {
    fprintf(stderr, "%s:%d: out of memory\n", __FILE__, line);
    abort();
}

/* FNV-1a */
static uint64_t regex_hash(const char *s, size_t len) {
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static struct regex_code *regex_set_find(const struct regex_set *s, const char *pattern, size_t len,
                                         uint64_t hash) {
    for (size_t i = (size_t)hash & s->mask; s->slots[i]; i = (i + 1) & s->mask) {
        const struct regex_code *c = s->slots[i];
        if (c->hash == hash && c->len == len && memcmp(c->pattern, pattern, len) == 0)
            return s->slots[i];
    }
    return NULL;
}

struct regex_code *regex_code_get(const struct regex_set *reuse, const char *pattern, int *errcode,
                                  size_t *erroffset) {
    size_t len = strlen(pattern);
    uint64_t hash = regex_hash(pattern, len);
    struct regex_code *c = reuse ? regex_set_find(reuse, pattern, len, hash) : NULL;
    if (c) {
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
        return c;
    }
    PCRE2_SIZE offset = 0;
    pcre2_code *code =
        pcre2_compile((PCRE2_SPTR)pattern, len, PCRE2_ANCHORED, errcode, &offset, NULL);
    if (!code) {
        *erroffset = (size_t)offset;
        return NULL;
    }
    /* Without JIT the interpreter gives the same answers, only slower. */
    (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    c = malloc(sizeof *c + len + 1);
    if (!c) regex_oom(__LINE__);
    atomic_init(&c->refs, 1);
    c->code = code;
    c->captures = 0;
    pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &c->captures);
    c->hash = hash;
    c->len = len;
    memcpy(c->pattern, pattern, len + 1);
    return c;
}

void regex_code_release(struct regex_code *c) {
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1) return;
    pcre2_code_free(c->code);
    free(c);
}

struct regex_set *regex_set_build(struct regex_code *const *codes, size_t n) {
    size_t cap = 8;
    while (cap < n * 2)
        cap *= 2;
    struct regex_set *s = calloc(1, sizeof *s + cap * sizeof s->slots[0]);
    if (!s) regex_oom(__LINE__);
    atomic_init(&s->refs, 1);
    s->mask = cap - 1;
    for (size_t k = 0; k < n; k++) {
        struct regex_code *c = codes[k];
        if (regex_set_find(s, c->pattern, c->len, c->hash)) continue;
        size_t i = (size_t)c->hash & s->mask;
        while (s->slots[i])
            i = (i + 1) & s->mask;
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
        s->slots[i] = c;
    }
    return s;
}

struct regex_set *regex_set_retain(struct regex_set *s) {
    if (s) atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void regex_set_release(struct regex_set *s) {
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
    for (size_t i = 0; i <= s->mask; i++)
        regex_code_release(s->slots[i]);
    free(s);
}
