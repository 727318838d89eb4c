#include "http/headers.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

struct known_header {
    const char *name;
    size_t len;
    enum header_kind kind;
};

#define KH(s, k)                                                                                   \
    { s, sizeof(s) - 1, k }
static const struct known_header known_headers[] = {
    KH("host", HDR_HOST),
    KH("content-length", HDR_CONTENT_LENGTH),
    KH("transfer-encoding", HDR_TRANSFER_ENCODING),
    KH("connection", HDR_CONNECTION),
    KH("keep-alive", HDR_KEEP_ALIVE),
    KH("proxy-connection", HDR_PROXY_CONNECTION),
    KH("te", HDR_TE),
    KH("trailer", HDR_TRAILER),
    KH("upgrade", HDR_UPGRADE),
    KH("expect", HDR_EXPECT),
    KH("x-forwarded-for", HDR_X_FORWARDED_FOR),
    KH("x-forwarded-proto", HDR_X_FORWARDED_PROTO),
    KH("x-forwarded-host", HDR_X_FORWARDED_HOST),
    KH("x-forwarded-port", HDR_X_FORWARDED_PORT),
    KH("x-forwarded-prefix", HDR_X_FORWARDED_PREFIX),
    KH("x-real-ip", HDR_X_REAL_IP),
    KH("x-request-id", HDR_X_REQUEST_ID),
    KH("via", HDR_VIA),
};

enum header_kind header_kind_of(const char *name, size_t len) {
    /* Few candidates share a length, so compare lengths first. */
    for (size_t i = 0; i < sizeof known_headers / sizeof known_headers[0]; i++)
        if (known_headers[i].len == len && strncasecmp(known_headers[i].name, name, len) == 0)
            return known_headers[i].kind;
    return HDR_OTHER;
}

int header_collect_field(struct http_header *h, size_t *n, size_t cap, const char *at, size_t len) {
    struct http_header *last = *n ? &h[*n - 1] : NULL;
    if (last && last->value == NULL && last->name + last->name_len == at) {
        last->name_len += len;
        return 0;
    }
    if (*n >= cap) return -1;
    struct http_header *e = &h[(*n)++];
    memset(e, 0, sizeof *e);
    e->name = at;
    e->name_len = len;
    return 0;
}

void header_collect_value(struct http_header *h, size_t n, const char *at, size_t len) {
    if (n == 0) return;
    struct http_header *e = &h[n - 1];
    if (!e->value) e->value = at;
    e->value_len = (size_t)(at + len - e->value);
}

void header_finish(struct http_header *h) {
    if (!h->value) h->value = h->name + h->name_len;
    while (h->value_len &&
           (h->value[h->value_len - 1] == ' ' || h->value[h->value_len - 1] == '\t'))
        h->value_len--;
    h->kind = header_kind_of(h->name, h->name_len);
}

bool header_is_hop_by_hop(enum header_kind kind) {
    switch (kind) {
    case HDR_CONNECTION:
    case HDR_KEEP_ALIVE:
    case HDR_PROXY_CONNECTION:
    case HDR_TE:
    case HDR_TRAILER:
    case HDR_TRANSFER_ENCODING:
    case HDR_UPGRADE:
        return true;
    default:
        return false;
    }
}

static bool is_ows(char c) {
    return c == ' ' || c == '\t';
}

bool header_list_has(const char *list, size_t list_len, const char *token, size_t token_len) {
    size_t i = 0;
    while (i < list_len) {
        while (i < list_len && (is_ows(list[i]) || list[i] == ','))
            i++;
        size_t start = i;
        while (i < list_len && list[i] != ',')
            i++;
        size_t end = i;
        while (end > start && is_ows(list[end - 1]))
            end--;
        if (end - start == token_len && strncasecmp(list + start, token, token_len) == 0)
            return true;
    }
    return false;
}

void headers_mark_connection_named(struct http_header *h, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (h[i].kind != HDR_CONNECTION) continue;
        for (size_t j = 0; j < n; j++)
            if (h[j].kind == HDR_OTHER &&
                header_list_has(h[i].value, h[i].value_len, h[j].name, h[j].name_len))
                h[j].drop = true;
    }
}

const struct http_header *headers_find(const struct http_header *h, size_t n, const char *name,
                                       size_t name_len, size_t index) {
    for (size_t i = 0; i < n; i++)
        if (h[i].name_len == name_len && strncasecmp(h[i].name, name, name_len) == 0 &&
            index-- == 0)
            return &h[i];
    return NULL;
}

bool header_request_id_valid(const char *v, size_t len) {
    if (len < 1 || len > 128) return false;
    for (size_t i = 0; i < len; i++) {
        char c = v[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok) return false;
    }
    return true;
}

/* Parses one X-Forwarded-For entry (an address, possibly with surrounding
 * whitespace) into a sockaddr for the trust check. */
static bool parse_ip(const char *s, size_t len, struct sockaddr_storage *ss, char *text,
                     size_t text_len) {
    while (len && is_ows(*s))
        s++, len--;
    while (len && is_ows(s[len - 1]))
        len--;
    if (len == 0 || len >= text_len || len >= INET6_ADDRSTRLEN) return false;
    memcpy(text, s, len);
    text[len] = '\0';
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        return true;
    }
    return false;
}

bool header_real_ip_from_xff(const struct weir_settings *w, const char *xff, size_t len, char *out,
                             size_t out_len) {
    bool found = false;
    size_t end = len;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        struct sockaddr_storage ss;
        char text[INET6_ADDRSTRLEN];
        if (parse_ip(xff + start, end - start, &ss, text, sizeof text)) {
            /* Remember the leftmost parsable entry as we go: it is the answer
             * when every entry is trusted. */
            snprintf(out, out_len, "%s", text);
            found = true;
            if (!config_ip_trusted(w, (struct sockaddr *)&ss)) return true;
        }
        end = start > 0 ? start - 1 : 0;
    }
    return found;
}
