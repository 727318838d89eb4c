/* schema_internal: what schema.c (compilation, $ref resolution, defaults) shares with
 * schema_keywords.c (validation). Not for use outside gateway/config/schema*.c. */
#ifndef WEIR_SCHEMA_INTERNAL_H
#define WEIR_SCHEMA_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "config/schema.h"

/* A failed "pattern" longer than this reads "does not match the expected format" instead of
 * quoting the regex (the address patterns run to hundreds of characters). */
#define SCHEMA_PATTERN_SHOWN_MAX 60

struct schema_pattern_prop {
    const char *key; /* points into the (immutable) document */
    pcre2_code *re;
    const json_t *schema;
};

/* What compilation learnt about one schema object; only objects with a $ref, a pattern or
 * patternProperties get one, so lookups of other objects find nothing. */
struct schema_node {
    const json_t *ref;   /* resolved "$ref" target, or NULL */
    pcre2_code *pattern; /* "pattern", or NULL */
    struct schema_pattern_prop *pp;
    size_t npp;
};

struct schema_slot {
    const json_t *key;
    struct schema_node *node;
};

struct schema {
    json_t *doc;
    struct schema_slot *slots; /* open addressing keyed by the schema object's address */
    size_t cap, n;
};

/* A location in the instance, kept on the stack and rendered only when an error is reported. */
struct schema_path {
    const struct schema_path *up;
    const char *key; /* property name, or NULL for an array index */
    size_t index;
};

const struct schema_node *schema_node_find(const struct schema *s, const json_t *obj);
/* Unanchored search, as JSON Schema's "pattern" demands. */
bool schema_regex_search(const pcre2_code *re, const char *str, size_t len, pcre2_match_data *md);
/* JSON equality where 1 == 1.0; deeper than SCHEMA_MAX_DEPTH compares unequal. */
bool schema_json_equal(const json_t *a, const json_t *b, unsigned depth);
void schema_path_render(const struct schema_path *p, char *buf, size_t size);
/* Appends "<rendered path>: <formatted message>" to errs (nothing when NULL);
 * the one error formatter of compile and validate. */
void schema_vreport(struct errlist *errs, const struct schema_path *at, const char *fmt,
                    va_list ap);

#endif
