/* arena: many small allocations with one lifetime, freed all at once.
 *
 * A plugin run copies every header name and value plugins set, and the client's fields once a
 * plugin edits them; one malloc and free per string was a fifth of a policy route's malloc
 * calls. A config keeps its routes' lists and messages in one (config_build.c): an admin change
 * at 10,000 routes then frees a few chunks instead of 40,000 blocks. An arena hands out bytes
 * from chunks it grows (doubling, from ARENA_FIRST_CHUNK) and frees nothing before
 * arena_free(). `limit` bounds its total; past it arena_dup() and arena_alloc() return NULL and
 * the caller reports the request's edits as too large. Not thread-safe; zero-initialised (with
 * a limit set, or 0 for none) it is empty and ready. */
#ifndef WEIR_ARENA_H
#define WEIR_ARENA_H

#include <stddef.h>

/* With its header, the first chunk is a 1 KiB allocation: within glibc's per-thread cache, so a
 * request's first chunk costs no trip into the heap's bins. */
#define ARENA_FIRST_CHUNK (1024 - 2 * sizeof(void *))

struct arena_chunk;
struct arena {
    struct arena_chunk *chunks;
    char *next, *end; /* the free part of the newest chunk */
    size_t total;     /* bytes of all chunks */
    size_t limit;     /* total never goes past it (0: no limit) */
};

/* A NUL-terminated copy of s[0..n) in the arena, or NULL past the limit. */
char *arena_dup(struct arena *a, const char *s, size_t n);
/* n uninitialised bytes aligned for any object, or NULL past the limit. */
void *arena_alloc(struct arena *a, size_t n);
void arena_free(struct arena *a);

#endif
