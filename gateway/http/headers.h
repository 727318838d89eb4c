/* headers: parsed header fields and the header rules of a proxy.
 *
 * A struct http_header points into a message head buffer owned by the
 * connection; nothing here allocates. Which fields are hop-by-hop, which the
 * Connection header names, whether an X-Request-ID is acceptable and which
 * client address X-Real-IP reports are decided here, so the client and
 * upstream sides apply the same rules. Pure functions; any thread. */
#ifndef WEIR_HEADERS_H
#define WEIR_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config/config.h"

/* Fields Weir looks at, recognised once while parsing so later stages
 * compare an enum instead of strings. */
enum header_kind {
    HDR_OTHER = 0,
    HDR_HOST,
    HDR_CONTENT_LENGTH,
    HDR_TRANSFER_ENCODING,
    HDR_CONNECTION,
    HDR_KEEP_ALIVE,
    HDR_PROXY_CONNECTION,
    HDR_TE,
    HDR_TRAILER,
    HDR_UPGRADE,
    HDR_EXPECT,
    HDR_X_FORWARDED_FOR,
    HDR_X_FORWARDED_PROTO,
    HDR_X_FORWARDED_HOST,
    HDR_X_FORWARDED_PORT,
    HDR_X_FORWARDED_PREFIX,
    HDR_X_REAL_IP,
    HDR_X_REQUEST_ID,
    HDR_VIA,
};

struct http_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing whitespace removed */
    size_t value_len;
    enum header_kind kind;
    bool drop; /* hop-by-hop for this message (named in Connection) */
};

enum header_kind header_kind_of(const char *name, size_t len);

/* Header collection from http-parser's on_header_field/on_header_value
 * callbacks, shared by the request and response sides. Pieces of one name
 * or value that arrive in several callbacks are contiguous in the head
 * buffer, so they extend the last entry. header_collect_field returns -1
 * when `cap` entries are used (head_check counted the fields, so callers
 * size the array and this cannot happen). */
int header_collect_field(struct http_header *h, size_t *n, size_t cap, const char *at, size_t len);
void header_collect_value(struct http_header *h, size_t n, const char *at, size_t len);
/* After parsing: an absent value becomes empty, trailing whitespace (RFC
 * 9110 5.5 OWS) is removed and the kind is recognised. */
void header_finish(struct http_header *h);
bool header_is_hop_by_hop(enum header_kind kind);

/* True when the comma-separated `list` contains `token` (case-insensitive). */
bool header_list_has(const char *list, size_t list_len, const char *token, size_t token_len);

/* Marks `drop` on every header named by a Connection header (RFC 9110 7.6.1). */
void headers_mark_connection_named(struct http_header *h, size_t n);

/* Case-insensitive lookup; returns the index-th occurrence or NULL. */
const struct http_header *headers_find(const struct http_header *h, size_t n, const char *name,
                                       size_t name_len, size_t index);

/* X-Request-ID is kept when it is 1-128 characters of [A-Za-z0-9._:-]. */
bool header_request_id_valid(const char *v, size_t len);

/* X-Real-IP for a trusted peer: walk X-Forwarded-For from the right and
 * return the first address that is not trusted (nginx's real_ip_recursive);
 * if every entry is trusted, the leftmost. Writes it (NUL-terminated) into
 * out; returns false when the header holds no parsable address. */
bool header_real_ip_from_xff(const struct weir_settings *w, const char *xff, size_t len, char *out,
                             size_t out_len);

#endif
