/* schema: one JSON Schema (draft 2020-12) validator over jansson values.
 *
 * Every entity schema in schemas/ and every plugin config schema goes through here, so the config
 * file, the admin API and `weir -t` report the same problems in the same words.
 *
 * Contract
 * - schema_compile() takes its own reference on `doc` (the caller keeps its own and may drop it;
 *   on failure no reference is kept). The document must not be modified while the schema lives:
 *   compiled patterns and resolved $refs point into it. Every "pattern" and "patternProperties"
 *   regex is compiled (PCRE2, UTF, JIT when available) and every "$ref" resolved up front, so a
 *   schema that compiles never fails later for those reasons. $ref may name "#", "#/json/pointer"
 *   (~0 ~1 and %XX escapes), "#anchor" ($anchor and $dynamicAnchor), and any "$id" embedded in the
 *   same document, relative or absolute. Remote references (anything not defined inside the
 *   document, including the draft meta-schema) are compile errors.
 * - A compiled schema is immutable: schema_validate() and schema_apply_defaults() may run from any
 *   number of threads at once on one schema. schema_free() must not race with them.
 * - schema_validate() collects every problem as "<path>: <what was expected>", the path in the
 *   style services[0].routes[1].paths (empty for the root: just the message). `errs` may be NULL
 *   when only the verdict matters; that stops at the first problem.
 * - "errorMessage" (a string) is Weir's extension, ignored by other validators as unknown keywords
 *   are: when the instance fails the schema object that carries it, exactly one error
 *   "<path>: <errorMessage>" replaces every error from inside that object (its keywords, $ref
 *   target, items, branches), so a long pattern or "does not match any of the allowed
 *   alternatives" reaches the operator as "must be a host name or an IP address". It applies
 *   wherever the object is used: beside a $ref or in the $defs entry it refers to; as the "items"
 *   schema, one error per failing item at the item's path; in an anyOf/oneOf branch it only
 *   belongs to that branch (the combinator reports as usual); in "propertyNames", at each bad
 *   name's own path (without one: "invalid field name" at the object). The outermost one wins. A
 *   non-string errorMessage is a compile error.
 * - Without an errorMessage, a failed "pattern" longer than 60 characters reads "does not match
 *   the expected format"; a shorter one is quoted ("does not match pattern ^/").
 * - Unknown keywords are ignored, as the specification requires. Not implemented: unevaluatedItems,
 *   unevaluatedProperties, $dynamicRef, format (annotation only), content*.
 * - Limits: where the schema descends into an instance deeper than SCHEMA_MAX_DEPTH levels, and
 *   where schema recursion (e.g. a $ref cycle that consumes no instance) passes
 *   SCHEMA_MAX_RECURSION, validation fails with an error, never a crash; recursion uses under
 *   1 KiB of stack per level, so about 0.5 MiB at worst. Regexes follow PCRE2 (UTF mode, "$" only
 *   at the very end, ECMA-262 long Unicode category names translated); other ECMA-262 differences
 *   remain.
 */
#ifndef WEIR_SCHEMA_H
#define WEIR_SCHEMA_H

#include <stdbool.h>

#include <jansson.h>

#include "core/errlist.h"

#define SCHEMA_MAX_DEPTH 128
#define SCHEMA_MAX_RECURSION 512

struct schema;

/* Compiles `doc` (an object or a boolean). Returns NULL and appends to `errs` (schema locations
 * as paths, e.g. "properties.paths.items.pattern: invalid regex ...") when the schema is unusable.
 */
struct schema *schema_compile(json_t *doc, struct errlist *errs);

/* True when `instance` is valid. Every problem is appended to `errs` (if not NULL). */
bool schema_validate(const struct schema *s, const json_t *instance, struct errlist *errs);
/* The same with every reported path under `base` (e.g. "plugins[0].config"; NULL: none). */
bool schema_validate_at(const struct schema *s, const json_t *instance, const char *base,
                        struct errlist *errs);

/* Returns a deep copy of `instance` (the caller owns it) where each absent property whose schema in
 * "properties" has a "default" is set to a copy of that default, recursively: into present and
 * newly defaulted objects, array items ("prefixItems", "items"), "patternProperties",
 * "additionalProperties", "$ref" and "allOf". Conditional keywords (anyOf, oneOf, if/then/else)
 * are not followed, since which branch applies is ambiguous. Given values are never overridden. */
json_t *schema_apply_defaults(const struct schema *s, const json_t *instance);

/* The compiled document (borrowed), e.g. to serve GET /schemas/{entity}. */
const json_t *schema_document(const struct schema *s);

void schema_free(struct schema *s);

#endif
