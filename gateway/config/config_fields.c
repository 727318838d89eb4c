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

void field_strings_free(char **v, size_t n) {
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
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

    /* Kong's listen flags ("ssl", "http2", "reuseport", "backlog=N", ...): only "ssl" */
    const char *flags = s + addr_len;
    bool has_flags = false, ssl = false;
    while (*flags) {
        flags += strspn(flags, " \t");
        size_t n = strcspn(flags, " \t");
        if (n == 3 && strncmp(flags, "ssl", 3) == 0)
            ssl = true;
        else if (n)
            has_flags = true;
        flags += n;
    }
    if (has_flags)
        return "listener options other than \"ssl\" (such as \"reuseport\" or \"http2\") are "
               "not supported yet";

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
    out->ssl = ssl;
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

/* ---- helpers shared with config.c ---- */

void *field_alloc_array(size_t n, size_t size) {
    return n ? field_xcalloc(n, size) : NULL;
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

/* ---- route values ---- */
