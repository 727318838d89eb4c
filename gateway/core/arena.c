#include "core/arena.h"

#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct arena_chunk {
    struct arena_chunk *next;
    size_t size;
    alignas(max_align_t) char bytes[]; /* malloc's alignment, for arena_alloc() */
};

/* Makes room for n bytes at a->next (starting a new chunk if needed); false past the limit. */
static bool arena_room(struct arena *a, size_t n) {
    if ((size_t)(a->end - a->next) >= n) return true;
    size_t size = a->chunks ? a->chunks->size * 2 : ARENA_FIRST_CHUNK;
    if (size < n) size = n;
    if (a->limit && a->total + size > a->limit) {
        if (a->total + n > a->limit) return false;
        size = n; /* the last bytes under the limit */
    }
    struct arena_chunk *c = malloc(sizeof *c + size);
    if (!c) abort();
    c->size = size;
    c->next = a->chunks;
    a->chunks = c;
    a->total += size;
    a->next = c->bytes;
    a->end = c->bytes + size;
    return true;
}

char *arena_dup(struct arena *a, const char *s, size_t n) {
    if (!arena_room(a, n + 1)) return NULL;
    char *d = a->next;
    memcpy(d, s, n);
    d[n] = '\0';
    a->next += n + 1;
    return d;
}

void *arena_alloc(struct arena *a, size_t n) {
    /* a new chunk starts aligned, so the padding is only ever needed in the current one */
    size_t pad = (size_t)(-(uintptr_t)a->next & (alignof(max_align_t) - 1));
    if (a->next && (size_t)(a->end - a->next) >= pad + n) {
        void *p = a->next + pad;
        a->next += pad + n;
        return p;
    }
    if (!arena_room(a, n + alignof(max_align_t))) return NULL;
    return arena_alloc(a, n);
}

void arena_free(struct arena *a) {
    while (a->chunks) {
        struct arena_chunk *c = a->chunks;
        a->chunks = c->next;
        free(c);
    }
    a->next = a->end = NULL;
    a->total = 0;
}
