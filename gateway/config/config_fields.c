#include "config/config_fields.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NOT_SUPPORTED_YET "not supported yet"

void *field_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) abort();
    return p;
}

char *field_xstrdup(const char *s) {
    char *d = strdup(s);
    if (!d) abort();
    return d;
}

char *field_lower(char *s) {
    for (char *p = s; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return s;
}

char *field_upper(char *s) {
    for (char *p = s; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    return s;
}

void field_path(char out[FIELD_PATH_MAX], const char *parent, const char *key) {
    int n = (parent && *parent) ? snprintf(out, FIELD_PATH_MAX, "%s.%s", parent, key)
                                : snprintf(out, FIELD_PATH_MAX, "%s", key);
    if (n < 0 || n >= FIELD_PATH_MAX) out[FIELD_PATH_MAX - 1] = '\0'; /* a long key: truncated */
}

void field_index_path(char out[FIELD_PATH_MAX], const char *parent, size_t i) {
    int n = snprintf(out, FIELD_PATH_MAX, "%s[%zu]", parent, i);
    if (n < 0 || n >= FIELD_PATH_MAX) out[FIELD_PATH_MAX - 1] = '\0';
}

void field_error(struct errlist *errs, const char *parent, const char *key, const char *fmt, ...) {
    char path[FIELD_PATH_MAX], msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (key)
        field_path(path, parent, key);
    else
        snprintf(path, sizeof path, "%s", parent ? parent : "");
    errlist_addf(errs, path, "%s", msg);
}

static bool in_list(const char *const *list, const char *key) {
    for (size_t i = 0; list && list[i]; i++)
        if (strcmp(list[i], key) == 0) return true;
    return false;
}

void field_check_keys(const json_t *obj, const char *path, const char *const *known,
                      const struct field_unsupported *unsupported, struct errlist *errs) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)obj, key, value) {
        if (in_list(known, key)) continue;
        const struct field_unsupported *u = unsupported;
        while (u && u->name && strcmp(u->name, key) != 0)
            u++;
        if (u && u->name) {
            if (json_is_null(value) || (json_is_array(value) && json_array_size(value) == 0) ||
                (u->inert && u->inert(value)))
                continue;
            field_error(errs, path, key, "%s", u->message ? u->message : NOT_SUPPORTED_YET);
            continue;
        }
        field_error(errs, path, key, "unknown field");
    }
}

bool field_inert_false(const json_t *v) {
    return json_is_false(v);
}

bool field_inert_none(const json_t *v) {
    return json_is_string(v) && strcmp(json_string_value(v), "none") == 0;
}

bool field_inert_root_path(const json_t *v) {
    return json_is_string(v) && strcmp(json_string_value(v), "/") == 0;
}

bool field_inert_slots(const json_t *v) {
    return json_is_integer(v) && json_integer_value(v) >= 10 && json_integer_value(v) <= 65536;
}

/* The integer at a/b/c is absent, null or 0. */
static bool zero_at(const json_t *v, const char *a, const char *b, const char *c) {
    const json_t *x = json_object_get(v, a);
    if (x && b) x = json_object_get(x, b);
    if (x && c) x = json_object_get(x, c);
    return !x || json_is_null(x) || (json_is_integer(x) && json_integer_value(x) == 0) ||
           (json_is_real(x) && json_real_value(x) == 0);
}

bool field_inert_healthchecks(const json_t *v) {
    /* Kong runs active checks only with a non-zero interval and passive
     * ones only with non-zero failure counters; its default has neither. */
    return json_is_object(v) && zero_at(v, "active", "healthy", "interval") &&
           zero_at(v, "active", "unhealthy", "interval") &&
           zero_at(v, "passive", "unhealthy", "http_failures") &&
           zero_at(v, "passive", "unhealthy", "tcp_failures") &&
           zero_at(v, "passive", "unhealthy", "timeouts") &&
           zero_at(v, "passive", "healthy", "successes");
}

json_t *field_get(const json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

enum field_status field_string(const json_t *obj, const char *key, const char *parent,
                               struct errlist *errs, const char **out) {
    json_t *v = field_get(obj, key);
    if (!v) return FIELD_ABSENT;
    if (!json_is_string(v)) {
        field_error(errs, parent, key, "expected a string");
        return FIELD_BAD;
    }
    *out = json_string_value(v);
    return FIELD_OK;
}

enum field_status field_int(const json_t *obj, const char *key, const char *parent, long long min,
                            long long max, struct errlist *errs, long long *out) {
    json_t *v = field_get(obj, key);
    if (!v) return FIELD_ABSENT;
    if (!json_is_integer(v)) {
        field_error(errs, parent, key, "expected an integer");
        return FIELD_BAD;
    }
    long long x = json_integer_value(v);
    if (x < min || x > max) {
        field_error(errs, parent, key, "must be between %lld and %lld", min, max);
        return FIELD_BAD;
    }
    *out = x;
    return FIELD_OK;
}

enum field_status field_int32(const json_t *obj, const char *key, const char *parent, int min,
                              int max, struct errlist *errs, int *out) {
    long long x = 0;
    enum field_status st = field_int(obj, key, parent, min, max, errs, &x);
    if (st == FIELD_OK) *out = (int)x;
    return st;
}

enum field_status field_bool(const json_t *obj, const char *key, const char *parent,
                             struct errlist *errs, bool *out) {
    json_t *v = field_get(obj, key);
    if (!v) return FIELD_ABSENT;
    if (!json_is_boolean(v)) {
        field_error(errs, parent, key, "expected a boolean");
        return FIELD_BAD;
    }
    *out = json_is_true(v);
    return FIELD_OK;
}

enum field_status field_array(const json_t *obj, const char *key, const char *parent,
                              struct errlist *errs, json_t **out) {
    json_t *v = field_get(obj, key);
    if (!v) return FIELD_ABSENT;
    if (!json_is_array(v)) {
        field_error(errs, parent, key, "expected an array");
        return FIELD_BAD;
    }
    *out = v;
    return FIELD_OK;
}

enum field_status field_object(const json_t *obj, const char *key, const char *parent,
                               struct errlist *errs, json_t **out) {
    json_t *v = field_get(obj, key);
    if (!v) return FIELD_ABSENT;
    if (!json_is_object(v)) {
        field_error(errs, parent, key, "expected an object");
        return FIELD_BAD;
    }
    *out = v;
    return FIELD_OK;
}

void field_strings_free(char **v, size_t n) {
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

enum field_status field_strings(const json_t *obj, const char *key, const char *parent,
                                field_check_fn check, struct errlist *errs, char ***out,
                                size_t *n) {
    json_t *arr = NULL;
    enum field_status st = field_array(obj, key, parent, errs, &arr);
    if (st != FIELD_OK) return st;
    size_t len = json_array_size(arr);
    *out = NULL;
    *n = 0;
    if (len == 0) return FIELD_OK;

    char path[FIELD_PATH_MAX], elem_path[FIELD_PATH_MAX];
    field_path(path, parent, key);
    char **items = field_xcalloc(len, sizeof *items);
    bool ok = true;
    for (size_t i = 0; i < len; i++) {
        json_t *v = json_array_get(arr, i);
        field_index_path(elem_path, path, i);
        if (!json_is_string(v)) {
            errlist_addf(errs, elem_path, "expected a string");
            ok = false;
            continue;
        }
        items[i] = field_xstrdup(json_string_value(v));
        if (check && !check(items[i], elem_path, errs)) ok = false;
    }
    if (!ok) {
        field_strings_free(items, len);
        return FIELD_BAD;
    }
    *out = items;
    *n = len;
    return FIELD_OK;
}

bool field_name_valid(const char *s) {
    if (!*s) return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-._~", *p)) return false;
    return true;
}

bool field_hostname_valid(const char *s) {
    size_t len = strlen(s), label = 0;
    if (len == 0 || len > 253) return false;
    for (const char *p = s;; p++) {
        if (*p == '.' || *p == '\0') {
            if (label == 0 || label > 63) return false;
            if (*p == '\0') return true;
            label = 0;
        } else if (isalnum((unsigned char)*p) || *p == '-' || *p == '_') {
            label++;
        } else {
            return false;
        }
    }
}

int field_ip_family(const char *s) {
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, s, buf) == 1) return AF_INET;
    if (inet_pton(AF_INET6, s, buf) == 1) return AF_INET6;
    return 0;
}

bool field_token_valid(const char *s) {
    if (!*s) return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`|~", *p)) return false;
    return true;
}

static const char *parse_port(const char *s, int *port) {
    long v = 0;
    if (!*s) return "port is missing after \":\"";
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p) || p - s >= 5) return "port must be between 1 and 65535";
        v = v * 10 + (*p - '0');
    }
    if (v < 1 || v > 65535) return "port must be between 1 and 65535";
    *port = (int)v;
    return NULL;
}

const char *field_host_port_split(const char *s, char host[FIELD_HOST_MAX], int *port,
                                  bool *bracketed) {
    *port = 0;
    *bracketed = false;
    host[0] = '\0';
    const char *port_str = NULL;
    size_t host_len;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close) return "missing \"]\" after the IPv6 address";
        host_len = (size_t)(close - s - 1);
        if (close[1] == ':')
            port_str = close + 2;
        else if (close[1] != '\0')
            return "unexpected text after \"]\"";
        if (host_len >= FIELD_HOST_MAX) return "host is too long";
        memcpy(host, s + 1, host_len);
        host[host_len] = '\0';
        *bracketed = true;
        if (field_ip_family(host) != AF_INET6) return "brackets must enclose an IPv6 address";
    } else {
        const char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':')) {
            /* several colons: only a bare IPv6 address makes sense */
            if (field_ip_family(s) != AF_INET6) return "an IPv6 address must be in brackets";
            host_len = strlen(s);
        } else {
            host_len = colon ? (size_t)(colon - s) : strlen(s);
            if (colon) port_str = colon + 1;
        }
        if (host_len >= FIELD_HOST_MAX) return "host is too long";
        memcpy(host, s, host_len);
        host[host_len] = '\0';
    }
    if (host[0] == '\0') return "host is missing";
    return port_str ? parse_port(port_str, port) : NULL;
}

const char *field_host_check(const char *s, char host[FIELD_HOST_MAX]) {
    size_t len = strlen(s);
    if (len == 0) return "must not be empty";
    if (len >= FIELD_HOST_MAX) return "is too long";
    if (s[0] == '[') {
        if (s[len - 1] != ']') return "must be a host name or an IP address, without a port";
        memcpy(host, s + 1, len - 2);
        host[len - 2] = '\0';
        if (field_ip_family(host) != AF_INET6) return "brackets must enclose an IPv6 address";
        field_lower(host);
        return NULL;
    }
    memcpy(host, s, len + 1);
    field_lower(host);
    if (field_ip_family(host)) return NULL;
    if (strchr(host, ':')) return "must be a host name or an IP address, without a port";
    if (!field_hostname_valid(host)) return "must be a host name or an IP address";
    return NULL;
}

const char *field_listen_parse(const char *s, struct listen_addr *out) {
    char addr[FIELD_HOST_MAX], host[FIELD_HOST_MAX];
    size_t addr_len = strcspn(s, " \t");
    if (addr_len == 0) return "must be \"ip:port\", such as \"127.0.0.1:8000\" or \"[::1]:8000\"";
    if (addr_len >= sizeof addr) return "is too long";
    memcpy(addr, s, addr_len);
    addr[addr_len] = '\0';

    /* Kong's listen flags ("ssl", "http2", "reuseport", "backlog=N", ...) */
    const char *flags = s + addr_len;
    bool has_flags = false;
    while (*flags) {
        flags += strspn(flags, " \t");
        size_t n = strcspn(flags, " \t");
        if (n == 3 && strncmp(flags, "ssl", 3) == 0) return "TLS listeners are not supported yet";
        if (n) has_flags = true;
        flags += n;
    }
    if (has_flags)
        return "listener options (such as \"reuseport\" or \"http2\") are not supported yet";

    bool bracketed;
    int port;
    const char *err = field_host_port_split(addr, host, &port, &bracketed);
    if (err) return err;
    int family = field_ip_family(host);
    if (!family) return "the address must be a numeric IP address, such as 0.0.0.0 or [::]";
    if (family == AF_INET6 && !bracketed)
        return "an IPv6 address must be in brackets, such as \"[::1]:8000\"";
    if (port == 0) return "a port is required, as in \"127.0.0.1:8000\"";

    unsigned char bin[sizeof(struct in6_addr)];
    inet_pton(family, host, bin);
    if (!inet_ntop(family, bin, out->host, sizeof out->host)) return "is not a valid address";
    out->port = port;
    return NULL;
}

const char *field_cidr_parse(const char *s, struct cidr *out) {
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t addr_len = slash ? (size_t)(slash - s) : strlen(s);
    if (addr_len == 0 || addr_len >= sizeof addr)
        return "must be an IP address or a CIDR range, such as \"10.0.0.0/8\" or \"::1\"";
    memcpy(addr, s, addr_len);
    addr[addr_len] = '\0';
    memset(out, 0, sizeof *out);
    out->family = field_ip_family(addr);
    if (!out->family)
        return "must be an IP address or a CIDR range, such as \"10.0.0.0/8\" or \"::1\"";
    inet_pton(out->family, addr, out->addr);
    int max = out->family == AF_INET ? 32 : 128;
    out->prefix_len = max;
    if (slash) {
        const char *p = slash + 1;
        int len = 0;
        if (!*p) return "the prefix length is missing after \"/\"";
        for (; *p; p++) {
            if (!isdigit((unsigned char)*p) || len > max)
                return "the prefix length is out of range";
            len = len * 10 + (*p - '0');
        }
        if (len > max) return "the prefix length is out of range";
        out->prefix_len = len;
    }
    int bytes = max / 8;
    for (int i = 0; i < bytes; i++) {
        int keep = out->prefix_len - i * 8;
        if (keep <= 0)
            out->addr[i] = 0;
        else if (keep < 8)
            out->addr[i] &= (uint8_t)(0xff << (8 - keep));
    }
    return NULL;
}

static bool is_pchar(unsigned char c) {
    return isalnum(c) || strchr("-._~!$&'()*+,;=:@/", c) != NULL;
}

const char *field_url_path_check(const char *p) {
    if (p[0] != '/') return "must start with \"/\"";
    for (const unsigned char *c = (const unsigned char *)p; *c; c++) {
        if (*c == '?' || *c == '#') return "must not contain a query string or fragment";
        if (*c == '%') {
            if (!isxdigit(c[1]) || !isxdigit(c[2])) return "has a malformed percent-escape";
            c += 2;
        } else if (!is_pchar(*c)) {
            return "contains a character that must be percent-encoded";
        }
    }
    return NULL;
}

void field_url_parts_free(struct url_parts *u) {
    free(u->protocol);
    free(u->host);
    free(u->path);
    memset(u, 0, sizeof *u);
}

const char *field_url_split(const char *url, struct url_parts *out) {
    static const char *const bad = "must be a URL such as \"http://host:port/path\"";
    memset(out, 0, sizeof *out);
    const char *sep = strstr(url, "://");
    if (!sep || sep == url || !isalpha((unsigned char)url[0])) return bad;
    for (const char *p = url; p < sep; p++)
        if (!isalnum((unsigned char)*p) && !strchr("+.-", *p)) return bad;

    const char *auth = sep + 3;
    size_t auth_len = strcspn(auth, "/?#");
    char authority[FIELD_HOST_MAX + 8], host[FIELD_HOST_MAX];
    if (auth_len == 0) return "the host is missing";
    if (auth_len >= sizeof authority) return "the host is too long";
    memcpy(authority, auth, auth_len);
    authority[auth_len] = '\0';
    if (strchr(authority, '@')) return "credentials in the URL are not supported";

    bool bracketed;
    int port;
    const char *err = field_host_port_split(authority, host, &port, &bracketed);
    if (err) return err;
    if (!bracketed && field_ip_family(host) == AF_INET6)
        return "an IPv6 address must be in brackets";
    field_lower(host);
    if (!bracketed && !field_ip_family(host) && !field_hostname_valid(host))
        return "the host must be a host name or an IP address";

    const char *rest = auth + auth_len;
    if (*rest == '?' || *rest == '#') return "must not contain a query string or fragment";
    if (*rest == '/' && (err = field_url_path_check(rest))) return err;

    out->protocol = field_lower(strndup(url, (size_t)(sep - url)));
    if (!out->protocol) abort();
    out->host = field_xstrdup(host);
    out->port = port;
    out->path = *rest ? field_xstrdup(rest) : NULL;
    return NULL;
}

bool field_tag_check(char *value, const char *path, struct errlist *errs) {
    if (!*value) {
        errlist_addf(errs, path, "must not be empty");
        return false;
    }
    for (const unsigned char *c = (const unsigned char *)value; *c; c++) {
        if (*c == ',' || *c == '/' || *c < 0x20 || *c == 0x7f) {
            errlist_addf(errs, path, "must not contain \",\", \"/\" or control characters");
            return false;
        }
    }
    return true;
}

/* ---- helpers shared with config.c ---- */

void *field_alloc_array(size_t n, size_t size) {
    return n ? field_xcalloc(n, size) : NULL;
}

bool field_in_list(const char *const *list, const char *s) {
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], s) == 0) return true;
    return false;
}

char *field_resolve_path(const char *base_dir, const char *p) {
    if (p[0] == '/') return field_xstrdup(p);
    size_t blen = strlen(base_dir);
    bool slash = blen > 0 && base_dir[blen - 1] == '/';
    size_t len = blen + strlen(p) + 2;
    char *out = field_xcalloc(len, 1);
    snprintf(out, len, "%s%s%s", base_dir, slash ? "" : "/", p);
    return out;
}

static int key_entry_cmp(const void *a, const void *b) {
    const struct key_entry *x = a, *y = b;
    int d = strcmp(x->key, y->key);
    if (d) return d;
    return x->index < y->index ? -1 : x->index > y->index;
}

void key_index_init(struct key_index *ix, size_t cap) {
    ix->e = field_alloc_array(cap, sizeof *ix->e);
    ix->n = 0;
}

void key_index_add(struct key_index *ix, const char *key, size_t index) {
    if (key && *key) ix->e[ix->n++] = (struct key_entry){key, index};
}

void key_index_sort(struct key_index *ix) {
    if (ix->n) qsort(ix->e, ix->n, sizeof *ix->e, key_entry_cmp);
}

/* The lowest entity index with `key`, or -1. */
long key_index_find(const struct key_index *ix, const char *key) {
    size_t lo = 0, hi = ix->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(ix->e[mid].key, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ix->n && strcmp(ix->e[lo].key, key) == 0 ? (long)ix->e[lo].index : -1;
}

/* ---- route values ---- */

bool field_has_control_chars(const char *s) {
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if (*c < 0x20 || *c == 0x7f) return true;
    return false;
}

bool field_route_path_check(char *p, const char *path, struct errlist *errs) {
    const char *err = NULL;
    if (p[0] == '~')
        err = !p[1]                        ? "the regex after \"~\" is empty"
              : field_has_control_chars(p) ? "must not contain control characters"
                                           : NULL;
    else if (p[0] != '/')
        err = "must start with \"/\" or \"~\"";
    else
        err = field_url_path_check(p);
    if (err) errlist_addf(errs, path, "%s", err);
    return !err;
}

bool field_route_host_check(char *h, const char *path, struct errlist *errs) {
    const char *err = NULL, *name = field_lower(h);
    if (h[0] == '[') {
        err = "IPv6 addresses in hosts are not supported yet";
    } else if (strchr(h, ':')) {
        err = "ports in hosts are not supported yet";
    } else {
        if (h[0] == '*') name = h[1] == '.' ? h + 2 : "*";
        size_t len = strlen(name);
        if (len >= 2 && strcmp(name + len - 2, ".*") == 0)
            err = "trailing wildcards such as \"example.*\" are not supported yet";
        else if (strchr(name, '*'))
            err = "a wildcard must be the whole first label, as in \"*.example.com\"";
        else if (!field_hostname_valid(name))
            err = "must be a host name, or \"*.\" followed by a domain";
    }
    if (err) errlist_addf(errs, path, "%s", err);
    return !err;
}

bool field_method_check(char *m, const char *path, struct errlist *errs) {
    if (field_token_valid(m)) {
        field_upper(m);
        return true;
    }
    errlist_addf(errs, path, "must be an HTTP method such as \"GET\"");
    return false;
}

bool field_route_protocol_check(char *p, const char *path, struct errlist *errs) {
    static const char *const later[] = {"grpc", "grpcs", "tcp", "tls", "tls_passthrough",
                                        "udp",  "ws",    "wss", NULL};
    if (strcmp(p, "http") == 0 || strcmp(p, "https") == 0) return true;
    if (field_in_list(later, p))
        errlist_addf(errs, path, "protocol \"%s\" is not supported yet (only http and https)", p);
    else
        errlist_addf(errs, path, "must be \"http\" or \"https\"");
    return false;
}

bool field_header_value_check(char *v, const char *path, struct errlist *errs) {
    if (strncmp(v, "~*", 2) == 0) {
        errlist_addf(errs, path, "regular expressions in header values are not supported yet");
        return false;
    }
    if (field_has_control_chars(v)) {
        errlist_addf(errs, path, "must not contain control characters");
        return false;
    }
    return true;
}

/* ---- weir: server settings ---- */

struct weir_loader {
    struct weir_settings *w;
    struct errlist *errs;
    const char *base_dir;
};

struct limit_field {
    const char *name;
    long long min, max, def;
    size_t offset;
    enum { LIMIT_INT, LIMIT_SIZE, LIMIT_U64 } kind;
};

#define LIMIT(field) offsetof(struct weir_limits, field)
static const struct limit_field limit_fields[] = {
    {"max_header_bytes", 1024, 1048576, 32768, LIMIT(max_header_bytes), LIMIT_SIZE},
    {"max_headers", 1, 1000, 100, LIMIT(max_headers), LIMIT_INT},
    {"max_body_bytes", 0, 1LL << 53, 10485760, LIMIT(max_body_bytes), LIMIT_U64},
    {"header_timeout", 1, 3600000, 10000, LIMIT(header_timeout_ms), LIMIT_INT},
    {"keepalive_timeout", 0, 3600000, 60000, LIMIT(keepalive_timeout_ms), LIMIT_INT},
    {"max_connections", 1, 1000000, 10000, LIMIT(max_connections), LIMIT_INT},
    {"shutdown_timeout", 0, 3600000, 10000, LIMIT(shutdown_timeout_ms), LIMIT_INT},
    {"upstream_keepalive_pool", 0, 10000, 64, LIMIT(upstream_keepalive_pool), LIMIT_INT},
    {"upstream_keepalive_timeout", 1, 3600000, 4000, LIMIT(upstream_keepalive_timeout_ms),
     LIMIT_INT},
};
#define N_LIMITS (sizeof limit_fields / sizeof limit_fields[0])

static void set_limit(struct weir_limits *l, const struct limit_field *f, long long v) {
    char *p = (char *)l + f->offset;
    if (f->kind == LIMIT_INT)
        *(int *)(void *)p = (int)v;
    else if (f->kind == LIMIT_SIZE)
        *(size_t *)(void *)p = (size_t)v;
    else
        *(uint64_t *)(void *)p = (uint64_t)v;
}

static void load_limits(struct weir_loader *ld, const json_t *weir) {
    struct weir_limits *l = &ld->w->limits;
    for (size_t i = 0; i < N_LIMITS; i++)
        set_limit(l, &limit_fields[i], limit_fields[i].def);
    json_t *js = NULL;
    if (!weir || field_object(weir, "limits", "weir", ld->errs, &js) != FIELD_OK) return;
    const char *names[N_LIMITS + 1];
    for (size_t i = 0; i < N_LIMITS; i++)
        names[i] = limit_fields[i].name;
    names[N_LIMITS] = NULL;
    field_check_keys(js, "weir.limits", names, NULL, ld->errs);
    for (size_t i = 0; i < N_LIMITS; i++) {
        const struct limit_field *f = &limit_fields[i];
        long long v;
        if (field_int(js, f->name, "weir.limits", f->min, f->max, ld->errs, &v) == FIELD_OK)
            set_limit(l, f, v);
    }
}

static void load_listeners(struct weir_loader *ld, const json_t *weir, const char *key,
                           const char *def, struct listen_addr **out, size_t *n) {
    json_t *arr = NULL;
    enum field_status st = weir ? field_array(weir, key, "weir", ld->errs, &arr) : FIELD_ABSENT;
    if (st == FIELD_BAD) return;
    if (st == FIELD_ABSENT) {
        *out = field_xcalloc(1, sizeof **out);
        *n = 1;
        field_listen_parse(def, *out);
        return;
    }
    char path[FIELD_PATH_MAX], elem[FIELD_PATH_MAX];
    field_path(path, "weir", key);
    size_t len = json_array_size(arr);
    if (len == 0 && strcmp(key, "proxy_listen") == 0)
        errlist_addf(ld->errs, path, "must list at least one address");
    *out = field_alloc_array(len, sizeof **out);
    *n = len;
    for (size_t i = 0; i < len; i++) {
        json_t *v = json_array_get(arr, i);
        field_index_path(elem, path, i);
        const char *err = json_is_string(v) ? field_listen_parse(json_string_value(v), &(*out)[i])
                                            : "expected a string";
        if (err) errlist_addf(ld->errs, elem, "%s", err);
    }
}

static bool is_any_address(const struct listen_addr *a) {
    return strcmp(a->host, "0.0.0.0") == 0 || strcmp(a->host, "::") == 0;
}

/* With SO_REUSEPORT a second bind to the same address succeeds silently and
 * splits its connections, so overlapping listeners are refused here. */
static void check_listener_overlap(struct weir_loader *ld) {
    const struct weir_settings *w = ld->w;
    size_t n = w->n_proxy_listen + w->n_admin_listen;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++) {
            bool ia = i >= w->n_proxy_listen, ja = j >= w->n_proxy_listen;
            const struct listen_addr *a =
                ia ? &w->admin_listen[i - w->n_proxy_listen] : &w->proxy_listen[i];
            const struct listen_addr *b =
                ja ? &w->admin_listen[j - w->n_proxy_listen] : &w->proxy_listen[j];
            if (a->port == 0 || a->port != b->port) continue;
            bool same_family = (strchr(a->host, ':') != NULL) == (strchr(b->host, ':') != NULL);
            if (strcmp(a->host, b->host) != 0 &&
                !(same_family && (is_any_address(a) || is_any_address(b))))
                continue;
            char pa[FIELD_PATH_MAX], pb[FIELD_PATH_MAX];
            field_index_path(pa, ia ? "weir.admin_listen" : "weir.proxy_listen",
                             ia ? i - w->n_proxy_listen : i);
            field_index_path(pb, ja ? "weir.admin_listen" : "weir.proxy_listen",
                             ja ? j - w->n_proxy_listen : j);
            errlist_addf(ld->errs, pa, "overlaps %s (port %d)", pb, a->port);
            break;
        }
    }
}

static void load_trusted_ips(struct weir_loader *ld, const json_t *weir) {
    struct weir_settings *w = ld->w;
    json_t *arr = NULL;
    if (!weir || field_array(weir, "trusted_ips", "weir", ld->errs, &arr) != FIELD_OK) return;
    w->n_trusted_ips = json_array_size(arr);
    w->trusted_ips = field_alloc_array(w->n_trusted_ips, sizeof *w->trusted_ips);
    char elem[FIELD_PATH_MAX];
    for (size_t i = 0; i < w->n_trusted_ips; i++) {
        json_t *v = json_array_get(arr, i);
        field_index_path(elem, "weir.trusted_ips", i);
        const char *err = json_is_string(v)
                              ? field_cidr_parse(json_string_value(v), &w->trusted_ips[i])
                              : "expected a string";
        if (err) errlist_addf(ld->errs, elem, "%s", err);
    }
}

static int default_workers(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

static void load_log_settings(struct weir_loader *ld, const json_t *js) {
    struct weir_settings *w = ld->w;
    static const char *const levels[] = {"debug", "info", "notice", "warn", "error", NULL};
    const char *v;
    if (field_string(js, "access_log", "weir", ld->errs, &v) == FIELD_OK) {
        free(w->access_log);
        w->access_log = NULL;
        if (!*v)
            field_error(ld->errs, "weir", "access_log", "must not be empty (use \"off\")");
        else if (strcmp(v, "off") != 0)
            w->access_log =
                strcmp(v, "-") == 0 ? field_xstrdup("-") : field_resolve_path(ld->base_dir, v);
    }
    if (field_string(js, "error_log", "weir", ld->errs, &v) == FIELD_OK) {
        if (!*v || strcmp(v, "off") == 0) {
            field_error(ld->errs, "weir", "error_log",
                        "cannot be turned off; use \"-\" for stderr or a file path");
        } else {
            free(w->error_log);
            w->error_log =
                strcmp(v, "-") == 0 ? field_xstrdup("-") : field_resolve_path(ld->base_dir, v);
        }
    }
    if (field_string(js, "log_level", "weir", ld->errs, &v) == FIELD_OK) {
        size_t i = 0;
        while (levels[i] && strcmp(levels[i], v) != 0)
            i++;
        if (levels[i])
            w->log_level = (enum log_level)i;
        else
            field_error(ld->errs, "weir", "log_level",
                        "must be one of debug, info, notice, warn, error");
    }
}

static bool loopback(const struct listen_addr *a) {
    return strncmp(a->host, "127.", 4) == 0 || strcmp(a->host, "::1") == 0;
}

/* The admin API controls everything the gateway does: off loopback it
 * needs a token, and a short one is as good as none. */
static void load_admin_token(struct weir_loader *ld, const json_t *js) {
    struct weir_settings *w = ld->w;
    const char *v;
    if (js && field_string(js, "admin_token", "weir", ld->errs, &v) == FIELD_OK) {
        if (strlen(v) < 16)
            field_error(ld->errs, "weir", "admin_token", "must be at least 16 characters");
        else
            w->admin_token = field_xstrdup(v);
    }
    for (size_t i = 0; i < w->n_admin_listen; i++) {
        if (w->admin_token || loopback(&w->admin_listen[i])) continue;
        char path[FIELD_PATH_MAX];
        field_index_path(path, "weir.admin_listen", i);
        errlist_addf(ld->errs, path, "not a loopback address: set weir.admin_token first");
    }
}

void config_weir_load(const json_t *root, const char *base_dir, struct weir_settings *w,
                      struct errlist *errs) {
    struct weir_loader loader = {w, errs, base_dir}, *ld = &loader;
    static const char *const keys[] = {"proxy_listen", "admin_listen", "workers",
                                       "trusted_ips",  "access_log",   "error_log",
                                       "log_level",    "limits",       "admin_token",
                                       NULL};
    w->workers = default_workers();
    w->access_log = field_xstrdup("-");
    w->error_log = field_xstrdup("-");
    w->log_level = LOG_LEVEL_INFO;

    json_t *js = NULL;
    if (field_object(root, "weir", "", ld->errs, &js) == FIELD_OK) {
        field_check_keys(js, "weir", keys, NULL, ld->errs);
        field_int32(js, "workers", "weir", 1, 256, ld->errs, &w->workers);
        load_log_settings(ld, js);
    }
    load_listeners(ld, js, "proxy_listen", "127.0.0.1:8000", &w->proxy_listen, &w->n_proxy_listen);
    load_listeners(ld, js, "admin_listen", "127.0.0.1:8001", &w->admin_listen, &w->n_admin_listen);
    check_listener_overlap(ld);
    load_trusted_ips(ld, js);
    load_limits(ld, js);
    load_admin_token(ld, js);
}
