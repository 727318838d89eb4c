/* config_fields: value syntax shared by the configuration's builders.
 *
 * Values reach these functions after the schema validator has accepted them
 * (the files in schemas/ state the rules); what is left here is taking them apart:
 * splitting a url or "host:port", parsing listen addresses and CIDR ranges,
 * lower-casing, resolving relative paths, plus small allocation and
 * message helpers. The parsers still return a static message instead of
 * trusting their input blindly, so a caller that skips validation gets an
 * error, never undefined behaviour. Pure functions: any thread. */
#ifndef WEIR_CONFIG_FIELDS_H
#define WEIR_CONFIG_FIELDS_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "core/errlist.h"

#define FIELD_PATH_MAX 192
#define FIELD_HOST_MAX 256

/* "parent.key" (or "key" when parent is empty) and "parent[i]". */
void field_path(char out[FIELD_PATH_MAX], const char *parent, const char *key);
void field_index_path(char out[FIELD_PATH_MAX], const char *parent, size_t i);
/* Appends "parent.key: <message>". */
void field_error(struct errlist *errs, const char *parent, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Allocation that aborts on exhaustion (as errlist does). */
void *field_xcalloc(size_t n, size_t size);
char *field_xstrdup(const char *s);
/* calloc that returns NULL for n == 0 (and aborts on exhaustion). */
void *field_alloc_array(size_t n, size_t size);
void field_strings_free(char **v, size_t n);
char *field_lower(char *s);
char *field_upper(char *s);

/* Host name labels of letters, digits, "-" and "_" separated by single dots. */
bool field_hostname_valid(const char *s);
/* AF_INET / AF_INET6 for a numeric address (no brackets), else 0. */
int field_ip_family(const char *s);
/* Splits "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address into
 * `host` (brackets removed) and `port` (0 when absent). */
const char *field_host_port_split(const char *s, char host[FIELD_HOST_MAX], int *port,
                                  bool *bracketed);
/* A host name or IP literal (brackets allowed for IPv6), lower-cased into `host`. */
const char *field_host_check(const char *s, char host[FIELD_HOST_MAX]);
/* "ip:port" or "[ip6]:port" into its canonical numeric form. */
const char *field_listen_parse(const char *s, struct listen_addr *out);
/* "ip" or "ip/len"; host bits are cleared. */
const char *field_cidr_parse(const char *s, struct cidr *out);
/* A plain URL path: starts with "/", RFC 3986 characters, no query. */
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

/* `p` when absolute, else "<base_dir>/<p>"; the caller frees the result. */
char *field_resolve_path(const char *base_dir, const char *p);

#endif
