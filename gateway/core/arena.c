#include "core/arena.h"

#include <stdlib.h>
#include <string.h>

struct arena_chunk {
    struct arena_chunk *next;
    size_t size;
    char bytes[];
};

char *arena_dup(struct arena *a, const char *s, size_t n) {
    if ((size_t)(a->end - a->next) <= n) {
        size_t size = a->chunks ? a->chunks->size * 2 : ARENA_FIRST_CHUNK;
        if (size < n + 1) size = n + 1;
        if (a->limit && a->total + size > a->limit) {
            if (a->total + n + 1 > a->limit) return NULL;
            size = n + 1; /* the last bytes under the limit */
        }
        struct arena_chunk *c = malloc(sizeof *c + size);
        if (!c) abort();
        c->size = size;
        c->next = a->chunks;
        a->chunks = c;
        a->total += size;
        a->next = c->bytes;
        a->end = c->bytes + size;
    }
    char *d = a->next;
    memcpy(d, s, n);
    d[n] = '\0';
    a->next += n + 1;
    return d;
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
