#include "tls/sni_map.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Two sorted arrays, exact names and wildcard domains (the part after "*."), searched by binary
 * search: a handful of comparisons per handshake for thousands of names. */
struct sni_entry {
    char *name; /* lower case */
    int value;
};

struct sni_list {
    struct sni_entry *v;
    size_t n, cap;
};

struct sni_map {
    struct sni_list exact, wildcard;
};

/* Longest server name: RFC 1035's 253 characters. */
#define SNI_MAX 253

struct sni_map *sni_map_new(void) {
    struct sni_map *m = calloc(1, sizeof *m);
    if (!m) abort();
    return m;
}

static int entry_cmp(const void *a, const void *b) {
    return strcmp(((const struct sni_entry *)a)->name, ((const struct sni_entry *)b)->name);
}

static bool list_has(const struct sni_list *l, const char *name) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].name, name) == 0) return true;
    return false;
}

bool sni_map_add(struct sni_map *m, const char *name, int value) {
    bool wild = strncmp(name, "*.", 2) == 0;
    struct sni_list *l = wild ? &m->wildcard : &m->exact;
    char *key = strdup(wild ? name + 2 : name);
    if (!key) abort();
    for (char *p = key; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    /* Adding is once per snapshot and the names are unique entities already (sni.json's name
     * is unique): the linear check only guards against a caller's mistake. */
    if (list_has(l, key)) {
        free(key);
        return false;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v) abort();
    }
    l->v[l->n++] = (struct sni_entry){key, value};
    return true;
}

void sni_map_seal(struct sni_map *m) {
    if (m->exact.n) qsort(m->exact.v, m->exact.n, sizeof *m->exact.v, entry_cmp);
    if (m->wildcard.n) qsort(m->wildcard.v, m->wildcard.n, sizeof *m->wildcard.v, entry_cmp);
}

static int list_find(const struct sni_list *l, const char *key) {
    if (!l->n) return -1;
    struct sni_entry probe = {(char *)key, 0};
    const struct sni_entry *e = bsearch(&probe, l->v, l->n, sizeof *l->v, entry_cmp);
    return e ? e->value : -1;
}

int sni_map_lookup(const struct sni_map *m, const char *name, size_t len) {
    if (len == 0 || len > SNI_MAX) return -1;
    char key[SNI_MAX + 1];
    for (size_t i = 0; i < len; i++)
        key[i] = (char)tolower((unsigned char)name[i]);
    key[len] = '\0';
    if (len != strlen(key)) return -1; /* an embedded NUL is no name */
    int v = list_find(&m->exact, key);
    if (v >= 0) return v;
    const char *dot = strchr(key, '.');
    /* "*.example.com" covers exactly one label before "example.com" */
    if (!dot || dot == key || !dot[1]) return -1;
    return list_find(&m->wildcard, dot + 1);
}

size_t sni_map_size(const struct sni_map *m) {
    return m->exact.n + m->wildcard.n;
}

static void list_free(struct sni_list *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].name);
    free(l->v);
}

void sni_map_free(struct sni_map *m) {
    if (!m) return;
    list_free(&m->exact);
    list_free(&m->wildcard);
    free(m);
}
