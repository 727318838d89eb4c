/* router: compiled route matching (Kong semantics).
 *
 * router_build() compiles a config's routes into an immutable matcher that
 * lives in a snapshot; router_match() is then called by any worker thread
 * concurrently without locks (it only reads; PCRE2 match data is per call).
 *
 * Rules (docs/routing.md):
 *  - `paths` are plain byte prefixes ("/api" also matches "/apix"), or PCRE2
 *    regexes when they start with "~" (anchored at the start of the path).
 *    Regex routes are tried first, by regex_priority (higher first), then
 *    by route order; the first that matches all its conditions wins.
 *  - Among prefix routes the longest matching prefix wins; at equal prefix, the
 *    route with more conditions (hosts, methods, one per header) wins, then an
 *    exact host beats a wildcard, then route order. A route without paths
 *    behaves as the empty prefix (matches every path, loses to any prefix).
 *  - hosts: case-insensitive, the request's port ignored; "*.example.com"
 *    matches one or more labels before ".example.com", not "example.com".
 *  - methods: exact, upper case. headers: the request has the header with one
 *    of the listed values (case-insensitive).
 *  - tls_passthrough routes are not HTTP routes: they are left out (tls/passthrough.h).
 * Cost: prefixes sit in a radix tree and hosts in hash tables, so matching is
 * O(path length + host labels), flat in the number of prefix routes. */
#ifndef WEIR_ROUTER_H
#define WEIR_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "core/errlist.h"

#define ROUTER_MAX_CAPTURES 16

struct router;

/* What the router needs to know about a request. `host` excludes the port and
 * may be any case; `path` is the normalised path without the query. */
struct route_request {
    const char *method;
    size_t method_len;
    const char *host;
    size_t host_len;
    const char *path;
    size_t path_len;
    /* Returns the value of header `name` (lower case), or NULL; for repeated
     * headers any one occurrence matching is enough, so it is called with
     * `index` 0, 1, ... until it returns NULL. */
    const char *(*get_header)(void *ctx, const char *name, size_t index, size_t *value_len);
    void *ctx;
};

struct route_match {
    const struct route *route;
    size_t path_index;  /* which of route->paths matched */
    size_t matched_len; /* bytes of the path matched by the prefix or regex */
    bool is_regex;
    int n_captures;    /* regex only: groups including group 0 */
    const void *regex; /* regex only: its pcre2_code (group names), owned by the router */
    size_t captures[ROUTER_MAX_CAPTURES][2]; /* [start, end) offsets in path; SIZE_MAX if unset */
};

struct regex_set;

/* Compiles routes[0..n) (pointers into a config that must outlive the router).
 * Returns NULL and fills errs ("routes[i].paths[j]: ...") on a bad regex. */
struct router *router_build(const struct route *routes, size_t n, struct errlist *errs);
/* The same, taking the compiled code of every regex whose pattern `reuse` holds (NULL: none)
 * from there (router/regex_set.h): pass the previous router's router_compiled_regexes(). */
struct router *router_build_reusing(const struct route *routes, size_t n,
                                    const struct regex_set *reuse, struct errlist *errs);
/* The router's regex codes (NULL without regex routes), valid while it lives; retain the set
 * (regex_set_retain) to keep it longer. */
struct regex_set *router_compiled_regexes(const struct router *r);
/* Returns true and fills *out when a route matches. */
bool router_match(const struct router *r, const struct route_request *req, struct route_match *out);
void router_free(struct router *r);

#endif
