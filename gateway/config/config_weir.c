/* config_weir: the `weir` server settings from their validated JSON (schemas/weir.json states
 * every field's type, range and default; this file only converts, and adds the two rules that
 * span fields: listeners must not overlap, and an admin listener off loopback needs a token). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config_build.h"
#include "config/config_fields.h"

static long long num(const json_t *obj, const char *key, long long def) {
    const json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? (long long)json_number_value(v) : def;
}

static const char *text(const json_t *obj, const char *key) {
    return json_string_value(json_object_get(obj, key));
}

#define LIMIT(field) offsetof(struct weir_limits, field), sizeof(((struct weir_limits *)0)->field)
static const struct {
    const char *name;
    long long def;
    size_t offset, size;
} limit_fields[] = {
    {"max_header_bytes", 32768, LIMIT(max_header_bytes)},
    {"max_headers", 100, LIMIT(max_headers)},
    {"max_body_bytes", 10485760, LIMIT(max_body_bytes)},
    {"header_timeout", 10000, LIMIT(header_timeout_ms)},
    {"keepalive_timeout", 60000, LIMIT(keepalive_timeout_ms)},
    {"max_connections", 10000, LIMIT(max_connections)},
    {"shutdown_timeout", 10000, LIMIT(shutdown_timeout_ms)},
    {"upstream_keepalive_pool", 64, LIMIT(upstream_keepalive_pool)},
    {"upstream_keepalive_timeout", 4000, LIMIT(upstream_keepalive_timeout_ms)},
};

static void read_limits(const json_t *limits, struct weir_limits *l) {
    for (size_t i = 0; i < sizeof limit_fields / sizeof limit_fields[0]; i++) {
        long long v = num(limits, limit_fields[i].name, limit_fields[i].def);
        char *p = (char *)l + limit_fields[i].offset;
        if (limit_fields[i].size == sizeof(int))
            *(int *)(void *)p = (int)v;
        else
            *(uint64_t *)(void *)p = (uint64_t)v; /* size_t and uint64_t: 8 bytes here */
    }
}

static void read_listeners(const json_t *arr, const char *def, struct listen_addr **out,
                           size_t *n) {
    if (!json_is_array(arr)) {
        *out = field_xcalloc(1, sizeof **out);
        *n = 1;
        field_listen_parse(def, *out);
        return;
    }
    *n = json_array_size(arr);
    *out = field_alloc_array(*n, sizeof **out);
    for (size_t i = 0; i < *n; i++)
        field_listen_parse(json_string_value(json_array_get(arr, i)), &(*out)[i]);
}

static bool is_any_address(const struct listen_addr *a) {
    return strcmp(a->host, "0.0.0.0") == 0 || strcmp(a->host, "::") == 0;
}

/* Listener i of proxy_listen, admin_listen and stream_listen taken as one list, and its path. */
static const struct listen_addr *listen_at(const struct weir_settings *w, size_t i) {
    if (i < w->n_proxy_listen) return &w->proxy_listen[i];
    i -= w->n_proxy_listen;
    if (i < w->n_admin_listen) return &w->admin_listen[i];
    return &w->stream_listen[i - w->n_admin_listen];
}

static void listen_path(char out[FIELD_PATH_MAX], const struct weir_settings *w, size_t i) {
    if (i < w->n_proxy_listen) {
        field_index_path(out, "weir.proxy_listen", i);
        return;
    }
    i -= w->n_proxy_listen;
    if (i < w->n_admin_listen)
        field_index_path(out, "weir.admin_listen", i);
    else
        field_index_path(out, "weir.stream_listen", i - w->n_admin_listen);
}

/* With SO_REUSEPORT a second bind to the same address succeeds silently and
 * splits its connections, so overlapping listeners are refused here. */
static void check_listener_overlap(const struct weir_settings *w, struct errlist *errs) {
    size_t n = w->n_proxy_listen + w->n_admin_listen + w->n_stream_listen;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++) {
            const struct listen_addr *a = listen_at(w, i), *b = listen_at(w, j);
            if (a->port == 0 || a->port != b->port) continue;
            bool same_family = (strchr(a->host, ':') != NULL) == (strchr(b->host, ':') != NULL);
            if (strcmp(a->host, b->host) != 0 &&
                !(same_family && (is_any_address(a) || is_any_address(b))))
                continue;
            char pa[FIELD_PATH_MAX], pb[FIELD_PATH_MAX];
            listen_path(pa, w, i);
            listen_path(pb, w, j);
            errlist_addf(errs, pa, "overlaps %s (port %d)", pb, a->port);
            break;
        }
    }
}

static bool loopback(const struct listen_addr *a) {
    return strncmp(a->host, "127.", 4) == 0 || strcmp(a->host, "::1") == 0;
}

static int default_workers(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

static char *log_path(const char *v, const char *base_dir) {
    return strcmp(v, "-") == 0 ? field_xstrdup("-") : field_resolve_path(base_dir, v);
}

static long long int_or(const json_t *obj, const char *key, long long dflt) {
    const json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

/* TLS termination settings; the files themselves are read when a snapshot is built
 * (tls/tls_server.h), so that their problems name the file. */
static void read_tls(const json_t *weir, const char *base_dir, struct weir_settings *w,
                     struct errlist *errs) {
    const char *v;
    if ((v = text(weir, "ssl_cert"))) w->ssl_cert = field_resolve_path(base_dir, v);
    if ((v = text(weir, "ssl_cert_key"))) w->ssl_cert_key = field_resolve_path(base_dir, v);
    if ((v = text(weir, "ssl_ocsp_response_file")))
        w->ssl_ocsp_response_file = field_resolve_path(base_dir, v);
    w->ssl_ciphers = field_xstrdup((v = text(weir, "ssl_ciphers")) ? v : WEIR_DEFAULT_CIPHERS);
    w->ssl_reject_unknown_sni = json_is_true(json_object_get(weir, "ssl_reject_unknown_sni"));
    w->ssl_handshake_timeout_ms = (int)num(weir, "ssl_handshake_timeout", 10000);
    w->ssl_ticket_key_rotation_ms = (int)num(weir, "ssl_session_ticket_key_rotation", 3600000);
    if ((v = text(weir, "ssl_client_ca"))) w->ssl_client_ca = field_resolve_path(base_dir, v);
    v = text(weir, "ssl_verify_client");
    w->ssl_verify_client = !v || !strcmp(v, "off")  ? SSL_VERIFY_CLIENT_OFF
                           : !strcmp(v, "optional") ? SSL_VERIFY_CLIENT_OPTIONAL
                                                    : SSL_VERIFY_CLIENT_REQUIRED;
    w->ssl_client_cert_headers = json_is_true(json_object_get(weir, "ssl_client_cert_headers"));
    if (w->ssl_verify_client != SSL_VERIFY_CLIENT_OFF && !w->ssl_client_ca)
        errlist_addf(errs, "weir.ssl_verify_client",
                     "needs weir.ssl_client_ca, the CAs client certificates must chain to");
    if (!w->ssl_cert != !w->ssl_cert_key)
        errlist_addf(errs, w->ssl_cert ? "weir.ssl_cert_key" : "weir.ssl_cert",
                     "is required with weir.%s", w->ssl_cert ? "ssl_cert" : "ssl_cert_key");
    if (w->ssl_ocsp_response_file && !w->ssl_cert)
        errlist_addf(errs, "weir.ssl_ocsp_response_file",
                     "is the OCSP response for weir.ssl_cert, which is not set");
    for (size_t i = 0; i < w->n_proxy_listen; i++) {
        if (!w->proxy_listen[i].ssl) continue;
        w->any_ssl_listener = true;
        if (w->ssl_cert) continue;
        char path[FIELD_PATH_MAX];
        field_index_path(path, "weir.proxy_listen", i);
        errlist_addf(errs, path,
                     "a TLS listener (\"ssl\") needs a default certificate: set weir.ssl_cert and "
                     "weir.ssl_cert_key");
        break;
    }
}

void config_weir_read(const json_t *weir, const char *base_dir, struct weir_settings *w,
                      struct errlist *errs) {
    static const char *const levels[] = {"debug", "info", "notice", "warn", "error", NULL};
    w->workers = (int)num(weir, "workers", default_workers());
    const char *v = text(weir, "access_log");
    w->access_log = !v ? field_xstrdup("-") : strcmp(v, "off") == 0 ? NULL : log_path(v, base_dir);
    v = text(weir, "error_log");
    w->error_log = log_path(v ? v : "-", base_dir);
    w->log_level = LOG_LEVEL_INFO;
    if ((v = text(weir, "log_level")))
        for (size_t i = 0; levels[i]; i++)
            if (!strcmp(levels[i], v)) w->log_level = (enum log_level)i;

    read_listeners(json_object_get(weir, "proxy_listen"), "127.0.0.1:8000", &w->proxy_listen,
                   &w->n_proxy_listen);
    read_listeners(json_object_get(weir, "admin_listen"), "127.0.0.1:8001", &w->admin_listen,
                   &w->n_admin_listen);
    json_t *stream = json_object_get(weir, "stream_listen");
    w->n_stream_listen = json_array_size(stream);
    w->stream_listen = field_alloc_array(w->n_stream_listen, sizeof *w->stream_listen);
    for (size_t i = 0; i < w->n_stream_listen; i++) {
        field_listen_parse(json_string_value(json_array_get(stream, i)), &w->stream_listen[i]);
        w->stream_listen[i].stream = true;
    }
    check_listener_overlap(w, errs);
    read_tls(weir, base_dir, w, errs);

    json_t *ips = json_object_get(weir, "trusted_ips");
    w->n_trusted_ips = json_array_size(ips);
    w->trusted_ips = field_alloc_array(w->n_trusted_ips, sizeof *w->trusted_ips);
    for (size_t i = 0; i < w->n_trusted_ips; i++)
        field_cidr_parse(json_string_value(json_array_get(ips, i)), &w->trusted_ips[i]);

    read_limits(json_object_get(weir, "limits"), &w->limits);

    /* The admin API controls everything the gateway does: off loopback it needs a token. */
    if ((v = text(weir, "admin_token"))) w->admin_token = field_xstrdup(v);
    v = text(weir, "admin_compile_priority");
    w->admin_compile_idle = !v || !strcmp(v, "idle");
    for (size_t i = 0; i < w->n_admin_listen; i++) {
        if (w->admin_token || loopback(&w->admin_listen[i])) continue;
        char path[FIELD_PATH_MAX];
        field_index_path(path, "weir.admin_listen", i);
        errlist_addf(errs, path, "not a loopback address: set weir.admin_token first");
    }

    json_t *plugins = json_object_get(weir, "plugins");
    if (!json_is_array(plugins)) {
        w->n_plugins = 1;
        w->plugins = field_xcalloc(1, sizeof *w->plugins);
        w->plugins[0] = field_xstrdup("bundled");
    } else {
        w->n_plugins = json_array_size(plugins);
        w->plugins = field_alloc_array(w->n_plugins, sizeof *w->plugins);
        for (size_t i = 0; i < w->n_plugins; i++)
            w->plugins[i] = field_xstrdup(json_string_value(json_array_get(plugins, i)));
    }
    json_t *roots = json_object_get(weir, "plugin_paths");
    w->n_plugin_paths = json_array_size(roots);
    w->plugin_paths = field_alloc_array(w->n_plugin_paths, sizeof *w->plugin_paths);
    for (size_t i = 0; i < w->n_plugin_paths; i++)
        w->plugin_paths[i] =
            field_resolve_path(base_dir, json_string_value(json_array_get(roots, i)));

    w->shared_dicts = json_object_get(weir, "shared_dicts");
    json_t *lua = json_object_get(weir, "lua");
    w->lua_instruction_budget = int_or(lua, "instruction_budget", 10000000);
    w->lua_memory_limit = int_or(lua, "memory_limit", 268435456);
    w->lua_response_buffer_limit = int_or(lua, "response_buffer_limit", 10485760);

    json_t *store = json_object_get(weir, "store");
    if (json_is_object(store) && (v = text(store, "path")))
        w->store_path = field_resolve_path(base_dir, v);
}
