/* config: the declarative configuration, parsed and validated.
 *
 * config_load_file()/config_load_string() read Kong-shaped declarative JSON
 * (`_format_version` "3.0", `services` with nested `routes`, top-level `routes`
 * naming a `service`, `upstreams` with `targets`, `consumers`, and Weir's own
 * `weir` object). The document is checked by the schema validator against
 * schemas/declarative.json (every field: unknown keys, wrong types, bad values,
 * unsupported Kong fields), then flattened into a model (config/model.h: defaults
 * filled, ids derived, references resolved, uniqueness checked) and compiled into
 * the structs below (addresses resolved). On any problem they return NULL and
 * append every problem to `errs` as "path.to.field: message".
 *
 * A struct config is immutable once returned and owned by whoever loaded it;
 * config_free() releases it. Pure data: no sockets, no event loop, any thread. */
#ifndef WEIR_CONFIG_H
#define WEIR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/arena.h"
#include "core/errlist.h"

struct health_target;
struct health_config;

#define WEIR_UUID_LEN 36

struct regex_set;

enum log_level {
    LOG_LEVEL_DEBUG,
    LOG_LEVEL_INFO,
    LOG_LEVEL_NOTICE,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR
};

/* Mozilla's "intermediate" TLS 1.2 suites (schemas/weir.json's default for weir.ssl_ciphers). */
#define WEIR_DEFAULT_CIPHERS                                                                       \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct listen_addr {
    char host[64]; /* numeric IPv4/IPv6 address, "0.0.0.0" for all */
    int port;
    bool ssl;    /* Kong's "ssl" flag: TLS is terminated here (proxy_listen only) */
    bool stream; /* a stream_listen entry: TLS passthrough (tls/passthrough.h) */
};

struct cidr {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* network byte order */
    int prefix_len;
};

struct weir_limits {
    size_t max_header_bytes;           /* 32768: request/response head size -> 431 / 502 */
    int max_headers;                   /* 100: header count -> 431 */
    uint64_t max_body_bytes;           /* 10485760: request body -> 413; 0 = unlimited */
    int header_timeout_ms;             /* 10000: head not complete -> 408 */
    int keepalive_timeout_ms;          /* 60000: idle client keep-alive connection */
    int max_connections;               /* 10000: per process, client connections */
    int shutdown_timeout_ms;           /* 10000: SIGTERM drain limit */
    int upstream_keepalive_pool;       /* 64: idle upstream connections per target per worker */
    int upstream_keepalive_timeout_ms; /* 4000: below Node's 5 s default */
};

struct weir_settings {
    struct listen_addr *proxy_listen;
    size_t n_proxy_listen;
    struct listen_addr *admin_listen;
    size_t n_admin_listen;
    struct listen_addr *stream_listen; /* TLS passthrough listeners (docs/tls.md); may be none */
    size_t n_stream_listen;
    int workers; /* default: number of CPUs */
    struct cidr *trusted_ips;
    size_t n_trusted_ips;
    char *access_log; /* absolute path, "-" for stdout, or NULL for off ("off") */
    char *error_log;  /* absolute path or "-" for stderr */
    enum log_level log_level;
    struct weir_limits limits;
    char *admin_token; /* NULL: none (admin API on loopback only) */
    bool admin_compile_idle; /* admin_compile_priority "idle" (core/idle_runner.h), else "low" */
    /* TLS termination (docs/tls.md): the default certificate (absolute paths, NULL when unset),
     * TLS 1.2 ciphers, what an unknown SNI gets, and the handshake's own timeout. */
    char *ssl_cert;
    char *ssl_cert_key;
    char *ssl_ocsp_response_file; /* DER OCSP response stapled for ssl_cert (absolute), or NULL */
    char *ssl_ciphers;
    bool ssl_reject_unknown_sni;
    int ssl_handshake_timeout_ms;   /* 10000 */
    int ssl_ticket_key_rotation_ms; /* 3600000: session ticket keys rotate this often */
    /* Client certificates: CAs they must chain to (absolute path, NULL: none asked for), whether
     * one is asked for and required, and whether its subject and fingerprint go upstream. */
    char *ssl_client_ca;
    enum ssl_verify_client {
        SSL_VERIFY_CLIENT_OFF,
        SSL_VERIFY_CLIENT_OPTIONAL,
        SSL_VERIFY_CLIENT_REQUIRED
    } ssl_verify_client;
    bool ssl_client_cert_headers;
    bool any_ssl_listener; /* some proxy_listen entry has "ssl" */
    char *store_path;      /* weir.store.path, absolute; NULL: no store (DB-less) */
    char **plugins;        /* weir.plugins, default {"bundled"} */
    size_t n_plugins;
    char **plugin_paths; /* absolute */
    size_t n_plugin_paths;
    const struct json_t *shared_dicts; /* {"name": bytes}, borrowed from the weir object */
    long long lua_instruction_budget;  /* 10,000,000; 0: none (and the JIT on) */
    long long lua_memory_limit;        /* bytes per worker VM, 256 MiB */
    long long lua_response_buffer_limit;
};

/* Strings marked "model" point into config->model (immutable JSON the config holds a reference
 * to) and are never freed on their own: building a 10,000-route config then costs a few
 * allocations per route instead of a dozen, and so does freeing it. */
struct upstream_target {
    char id[WEIR_UUID_LEN + 1];
    const char *target; /* "host:port" (model) */
    char *host;
    int port;
    int weight;                   /* 0..65535, 0 = disabled */
    struct sockaddr_storage addr; /* resolved at load time */
    socklen_t addrlen;
    struct health_target *health; /* shared health (upstream/health.h); NULL: checks off */
};

struct upstream {
    char id[WEIR_UUID_LEN + 1];
    const char *name; /* also the virtual host services point at (model) */
    struct upstream_target *targets;
    size_t n_targets;
    const char **tags; /* array owned, strings model */
    size_t n_tags;
    struct health_config *health; /* healthchecks (upstream/health_config.h); NULL: all off */
};

struct service {
    char id[WEIR_UUID_LEN + 1];
    const char *name;     /* may be NULL (model) */
    const char *protocol; /* "http", "https" or "tcp" (model) */
    const char *host;     /* (model) */
    int port;
    const char *path;       /* NULL when none (model) */
    int connect_timeout_ms; /* 60000 */
    int read_timeout_ms;    /* 60000 */
    int write_timeout_ms;   /* 60000 */
    int retries;            /* 5 */
    bool enabled;
    const struct upstream *upstream; /* when host names an upstream, else NULL */
    struct sockaddr_storage addr;    /* resolved host:port when upstream == NULL */
    socklen_t addrlen;
    char *host_header; /* "host" or "host:port" (non-default port) */
    const char **tags; /* array owned, strings model */
    size_t n_tags;
    bool tcp; /* protocol "tcp": the service of tls_passthrough routes, bytes relayed as they are */
    /* https upstreams (docs/tls.md): protocol "https", with Kong's fields */
    bool tls;
    bool tls_verify;              /* default true (Kong: false) */
    int tls_verify_depth;         /* -1: OpenSSL's default */
    const char **ca_certificates; /* ca_certificates entity ids; array owned, strings model */
    size_t n_ca_certificates;
    const char *client_certificate; /* certificates entity id, or NULL (model) */
};

struct route_header {
    const char *name;    /* lower case (model) */
    const char **values; /* compared case-insensitively; array in route_mem, strings model */
    size_t n_values;
};

/* A route is either http/https (the HTTP router) or tls_passthrough alone (routed by snis on the
 * stream listeners, tls/passthrough.h); the schemas refuse a mix. */
enum route_protocol {
    ROUTE_PROTO_HTTP = 1,
    ROUTE_PROTO_HTTPS = 2,
    ROUTE_PROTO_TLS_PASSTHROUGH = 4
};

struct route {
    char id[WEIR_UUID_LEN + 1];
    const char *name;              /* may be NULL (model) */
    const struct service *service; /* never NULL after load */
    /* paths, hosts, methods, tags and snis: one block of pointers in the config's route_mem;
     * the strings of paths and hosts are in route_mem too, the others are the model's */
    const char **paths; /* as written; "~" prefix = regex */
    size_t n_paths;
    const char **hosts; /* lower case; "*.x.y" wildcards */
    size_t n_hosts;
    const char **methods; /* upper case */
    size_t n_methods;
    struct route_header *headers;
    size_t n_headers;
    bool strip_path;                /* true */
    bool preserve_host;             /* false */
    int regex_priority;             /* 0 */
    unsigned protocols;             /* ROUTE_PROTO_* bits, default both */
    int https_redirect_status_code; /* 426 */
    size_t order;                   /* position in the file: the tie-breaker */
    const char **tags;
    size_t n_tags;
    const char **snis; /* tls_passthrough only: lower case, "*.x.y" wildcards (in the block) */
    size_t n_snis;
    char *source_path; /* "services[0].routes[1]" or "routes[2]", for messages (route_mem) */
    const struct json_t *entity; /* the model object it was built from */
};

struct config {
    struct weir_settings weir;
    struct service *services;
    size_t n_services;
    struct route *routes; /* nested and top-level routes, in file order */
    size_t n_routes;
    /* The routes' lists, header arrays and source paths: one arena, so that a config of 10,000
     * routes is a few chunks to free, not four blocks per route (admin changes rebuild it). */
    struct arena route_mem;
    /* Compiled route regexes (router/regex_set.h), one reference each: `regexes` those of the
     * router built from this config (snapshot_build sets it), `regexes_seed` those of the
     * config this one was derived from (config_with_model), which the build reuses and drops. */
    struct regex_set *regexes, *regexes_seed;
    struct upstream *upstreams;
    size_t n_upstreams;
    char *source_path;              /* absolute path of the file, NULL for embedded */
    char *hash;                     /* hex SHA-256 of the entities as exported (model_export) */
    struct json_t *model;           /* the entities (config/model.h), owned, never changed */
    struct json_t *weir_json;       /* the validated `weir` object, NULL when absent */
    char *base_dir;                 /* relative paths in `weir` resolve against it */
    struct plugin_catalog *plugins; /* the enabled plugins, checked (lua/plugin_catalog.h) */
    /* Plugin entities in model order (lua/plugin_chain.h): strings and `data` (the entity, its
     * "config" complete with defaults) point into the model; defs[i] is instance i's plugin. */
    struct plugin_instance *plugin_instances;
    const struct plugin_def **plugin_defs;
    size_t n_plugin_instances;
    bool plugins_by_consumer; /* some enabled instance is scoped to a consumer */
    long long loaded_at;      /* Unix seconds */
};

/* Load and validate. `path` is the file name; relative paths inside resolve
 * against its directory. Returns NULL and fills `errs` on any problem. */
struct config *config_load_file(const char *path, struct errlist *errs);
/* Same for JSON text; `base_dir` resolves relative paths (NULL: cwd). */
struct config *config_load_string(const char *json, size_t len, const char *base_dir,
                                  struct errlist *errs);
/* Parses JSON text (duplicate keys refused) that must be an object; errors give line, column
 * and byte offset. */
struct json_t *config_parse(const char *text, size_t len, struct errlist *errs);
/* Validates a declarative document and flattens its entities into a model (origins as in
 * model.h when not NULL); entities without created_at/updated_at get `stamp` (Unix seconds).
 * NULL with every problem in errs. */
struct json_t *config_model_from_doc(const struct json_t *doc, long long stamp,
                                     struct json_t **origins, struct errlist *errs);
/* A config with `base`'s server settings and the entities of `model` (checked by the caller;
 * a reference is taken). Addresses `base` resolved for the same host and port are reused, so an
 * admin change costs no DNS lookups for what did not change. NULL with problems in errs. */
struct config *config_with_model(const struct config *base, struct json_t *model,
                                 struct errlist *errs);
/* Hex SHA-256 of the entities as GET /config exports them, computed on first use (a full
 * export costs tens of ms at 10,000 routes: admin changes must not pay it) and cached in the
 * config. Control thread only: the one place that fills the cache. */
const char *config_hash(struct config *c);
/* The embedded default configuration used by `weir` with no -c. */
extern const char config_default_json[];
void config_free(struct config *c);

/* True when `addr` falls inside one of the trusted_ips ranges. */
bool config_ip_trusted(const struct weir_settings *w, const struct sockaddr *addr);

#endif
