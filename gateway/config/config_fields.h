/* config_fields: typed readers and value syntax for the declarative config.
 *
 * The readers take a JSON object, a member name and the object's path
 * ("services[0]"), and on a problem append "services[0].port: message" to
 * `errs` and return FIELD_BAD; a missing member or JSON null (Kong's "unset")
 * is FIELD_ABSENT, so callers keep their default. Values returned as
 * `const char *` point into the JSON document; `char *` results are owned by
 * the caller. The syntax checkers are pure functions that return NULL when a
 * value is fine, or a static message saying what is wrong with it.
 * Used only by config.c while loading; any thread, no shared state. */
#ifndef WEIR_CONFIG_FIELDS_H
#define WEIR_CONFIG_FIELDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "core/errlist.h"

#define FIELD_PATH_MAX 192
#define FIELD_HOST_MAX 256

enum field_status { FIELD_BAD = -1, FIELD_ABSENT = 0, FIELD_OK = 1 };

/* A Kong field Weir knows but does not implement. A null or empty-array value
 * configures nothing and is accepted, and so is any value `inert` (when
 * set) accepts: Kong's default for the field, which configures nothing in
 * Kong either, so that Kong's exports load unchanged. Anything else
 * reports `message` ("not supported yet" when NULL). */
struct field_unsupported {
    const char *name;
    const char *message;
    bool (*inert)(const json_t *value);
};

/* Inert-value checks for field_unsupported. */
bool field_inert_false(const json_t *v);
bool field_inert_none(const json_t *v);         /* "none" (hash_on, hash_fallback) */
bool field_inert_root_path(const json_t *v);    /* "/" (hash_on_cookie_path) */
bool field_inert_slots(const json_t *v);        /* any ring size 10..65536 */
bool field_inert_healthchecks(const json_t *v); /* every check disabled (Kong's default) */

/* Checks (and may rewrite in place, e.g. lower-case) one string of an array;
 * reports at `path` and returns false when it is wrong. */
typedef bool (*field_check_fn)(char *value, const char *path, struct errlist *errs);

/* "parent.key" (or "key" when parent is empty) and "parent[i]". */
void field_path(char out[FIELD_PATH_MAX], const char *parent, const char *key);
void field_index_path(char out[FIELD_PATH_MAX], const char *parent, size_t i);
/* Appends "parent.key: <message>". */
void field_error(struct errlist *errs, const char *parent, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Reports every member of `obj` that is neither in `known` (NULL-terminated)
 * nor an accepted unsupported one ({NULL, NULL}-terminated). */
void field_check_keys(const json_t *obj, const char *path, const char *const *known,
                      const struct field_unsupported *unsupported, struct errlist *errs);

/* The member, or NULL when it is absent or null. */
json_t *field_get(const json_t *obj, const char *key);
enum field_status field_string(const json_t *obj, const char *key, const char *parent,
                               struct errlist *errs, const char **out);
enum field_status field_int(const json_t *obj, const char *key, const char *parent, long long min,
                            long long max, struct errlist *errs, long long *out);
enum field_status field_int32(const json_t *obj, const char *key, const char *parent, int min,
                              int max, struct errlist *errs, int *out);
enum field_status field_bool(const json_t *obj, const char *key, const char *parent,
                             struct errlist *errs, bool *out);
enum field_status field_array(const json_t *obj, const char *key, const char *parent,
                              struct errlist *errs, json_t **out);
enum field_status field_object(const json_t *obj, const char *key, const char *parent,
                               struct errlist *errs, json_t **out);
/* An array of strings, each copied and passed through `check` (may be NULL).
 * On FIELD_OK the caller owns *out (NULL when the array is empty); on
 * FIELD_BAD nothing is returned. */
enum field_status field_strings(const json_t *obj, const char *key, const char *parent,
                                field_check_fn check, struct errlist *errs, char ***out, size_t *n);
void field_strings_free(char **v, size_t n);

/* Allocation that aborts on exhaustion (as errlist does). */
void *field_xcalloc(size_t n, size_t size);
char *field_xstrdup(const char *s);
char *field_lower(char *s);
char *field_upper(char *s);

/* Kong's entity name charset: letters, digits, "-", ".", "_", "~". */
bool field_name_valid(const char *s);
/* Host name labels of letters, digits, "-" and "_" separated by single dots. */
bool field_hostname_valid(const char *s);
/* AF_INET / AF_INET6 for a numeric address (no brackets), else 0. */
int field_ip_family(const char *s);
/* RFC 7230 token (methods, header names). */
bool field_token_valid(const char *s);
/* Splits "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address into
 * `host` (brackets removed) and `port` (0 when absent). */
const char *field_host_port_split(const char *s, char host[FIELD_HOST_MAX], int *port,
                                  bool *bracketed);
/* A host name or IP literal (brackets allowed for IPv6), lower-cased into `host`. */
const char *field_host_check(const char *s, char host[FIELD_HOST_MAX]);
/* "ip:port" or "[ip6]:port" with optional flags after a space. */
const char *field_listen_parse(const char *s, struct listen_addr *out);
/* "ip" or "ip/len"; host bits are cleared. */
const char *field_cidr_parse(const char *s, struct cidr *out);
/* A plain (non-regex) URL path: starts with "/", RFC 3986 characters, no query. */
const char *field_url_path_check(const char *p);

struct url_parts {
    char *protocol;
    char *host; /* lower case, IPv6 without brackets */
    int port;   /* 0 when the URL has none */
    char *path; /* NULL when the URL has none */
};
/* Splits "scheme://host[:port][/path]"; on success the caller frees with
 * field_url_parts_free(). */
const char *field_url_split(const char *url, struct url_parts *out);
void field_url_parts_free(struct url_parts *u);

/* field_check_fn for tags: non-empty, printable, no "," or "/" (as Kong). */
bool field_tag_check(char *value, const char *path, struct errlist *errs);

/* field_check_fn for route values. Paths: "/prefix" (RFC 3986 characters) or
 * "~regex" (not compiled here: the router does). Hosts: lower-cased; a name or
 * "*.domain"; ports, IPv6 literals and trailing wildcards are refused. Methods:
 * tokens, upper-cased. Protocols: "http" or "https". Header values: no control
 * characters and no "~*" regex (not supported yet). */
bool field_route_path_check(char *value, const char *path, struct errlist *errs);
bool field_route_host_check(char *value, const char *path, struct errlist *errs);
bool field_method_check(char *value, const char *path, struct errlist *errs);
bool field_route_protocol_check(char *value, const char *path, struct errlist *errs);
bool field_header_value_check(char *value, const char *path, struct errlist *errs);
bool field_has_control_chars(const char *s);

/* calloc that returns NULL for n == 0 (and aborts on exhaustion). */
void *field_alloc_array(size_t n, size_t size);
/* `list` is NULL-terminated. */
bool field_in_list(const char *const *list, const char *s);
/* `p` when absolute, else "<base_dir>/<p>"; the caller frees the result. */
char *field_resolve_path(const char *base_dir, const char *p);

/* Sorted (key, index) pairs: unique checks and lookups in O(n log n) where a
 * config has thousands of routes. Keys are borrowed; empty or NULL keys are
 * skipped. The caller frees `e`. */
struct key_entry {
    const char *key;
    size_t index;
};
struct key_index {
    struct key_entry *e;
    size_t n;
};
void key_index_init(struct key_index *ix, size_t cap);
void key_index_add(struct key_index *ix, const char *key, size_t index);
/* Sorts by key, then index: the first entry of a run of equal keys is the
 * entity that came first in the file. */
void key_index_sort(struct key_index *ix);
/* The lowest entity index with `key`, or -1. */
long key_index_find(const struct key_index *ix, const char *key);

/* Reads the `weir` object of `root` (absent: all defaults) into `w`; relative
 * log paths resolve against `base_dir`. Problems go to `errs`; whatever was
 * allocated stays in `w` for config_free() to release, even on error. */
void config_weir_load(const json_t *root, const char *base_dir, struct weir_settings *w,
                      struct errlist *errs);

#endif
