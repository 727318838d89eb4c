/* regex_set: compiled route regexes, shared by successive routers.
 *
 * An admin change compiles the routes into a new router. PCRE2 takes about 14 us to compile a
 * route regex with its JIT, so at 1,000 regex routes recompiling them all was most of a change.
 * A router therefore takes the code of every pattern the previous router had from that router's
 * set, and compiles only new patterns.
 *
 * Ownership: a regex_code is one compiled pattern, counted: every router using it and every set
 * holding it owns a reference. A regex_set is an immutable table of codes by pattern, counted
 * too: its router holds one reference, and the config the router was built from another, to
 * offer it to the next build (config.h). Counts are atomic and the codes are only read once
 * compiled (PCRE2 match data is per call), so any thread may match with, and release, them.
 * Every function aborts when out of memory. */
#ifndef WEIR_REGEX_SET_H
#define WEIR_REGEX_SET_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif

#include <pcre2.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct regex_code {
    atomic_int refs;
    pcre2_code *code;  /* anchored at the start of the subject; JIT-compiled when available */
    uint32_t captures; /* capture groups, without group 0 */
    uint64_t hash;     /* of the pattern */
    size_t len;
    char pattern[]; /* NUL-terminated */
};

struct regex_set;

/* A reference to the code of `pattern`: from `reuse` (may be NULL) when it holds the pattern,
 * else compiled. NULL when PCRE2 refuses the pattern, with its error code and offset. */
struct regex_code *regex_code_get(const struct regex_set *reuse, const char *pattern, int *errcode,
                                  size_t *erroffset);
void regex_code_release(struct regex_code *c);

/* A set of codes[0..n) (each gains a reference; a repeated pattern is kept once), holding one
 * reference for the caller. */
struct regex_set *regex_set_build(struct regex_code *const *codes, size_t n);
struct regex_set *regex_set_retain(struct regex_set *s);
/* Drops a reference (NULL is ignored); the last one releases the codes. */
void regex_set_release(struct regex_set *s);

#endif
