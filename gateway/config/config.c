#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config_fields.h"
#include "core/uuid.h"

#define CONFIG_MAX_FILE_BYTES (64L * 1024 * 1024)
#define PLUGINS_NOT_SUPPORTED "plugins are not supported yet (see the plugin issue)"

/* Impossible states abort with file and line (log.h's WEIR_BUG_ON, without
 * linking the logger into every user of the loader). */
#define CONFIG_BUG_ON(cond)                                                                        \
    do {                                                                                           \
        if (cond) {                                                                                \
            fprintf(stderr, "BUG at %s:%d: %s\n", __FILE__, __LINE__, #cond);                      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum id_source { ID_NONE, ID_GIVEN, ID_FROM_NAME, ID_FROM_KEY };

/* A route's "service": "name-or-id", {"id": "..."} or {"name": "..."}. */
struct service_ref {
    const char *id, *name, *either; /* one is set; they point into the JSON */
};

/* What the loader remembers about one entity while loading: where it sits in
 * the file (for messages) and what is still to be resolved. */
struct note {
    char path[FIELD_PATH_MAX];
    enum id_source id_source;
    bool keyed;    /* the fields its derived id and address need are valid */
    bool from_url; /* services: the address came from `url` */
    long owner;    /* routes: service index (-1 until resolved); targets: upstream */
    size_t pos;    /* targets: index within the upstream */
    bool has_ref;  /* top-level routes: `ref` parsed */
    struct service_ref ref;
    char key_id[WEIR_UUID_LEN + 1]; /* targets: id of (upstream, host:port), for duplicates */
};

struct loader {
    struct config *c;
    struct errlist *errs;
    const char *base_dir; /* absolute */
    struct note *services, *routes, *upstreams, *targets;
    size_t n_targets;
};

/* Reports each entity whose key repeats an earlier one's. For ids, `same` names
 * what two entities with the same derived id have in common (NULL: skip). */
static void report_duplicates(struct loader *ld, const struct key_index *ix,
                              const struct note *notes, const char *field, const char *same) {
    size_t first = 0;
    for (size_t k = 0; k < ix->n; k++) {
        if (k == 0 || strcmp(ix->e[k].key, ix->e[k - 1].key) != 0) {
            first = k;
            continue;
        }
        const struct note *later = &notes[ix->e[k].index], *orig = &notes[ix->e[first].index];
        if (strcmp(field, "name") != 0) {
            if (later->id_source == ID_FROM_NAME && orig->id_source == ID_FROM_NAME) continue;
            if (later->id_source == ID_FROM_KEY && orig->id_source == ID_FROM_KEY) {
                if (same)
                    errlist_addf(ld->errs, later->path,
                                 "has the same %s as %s; give one of them a name or an id", same,
                                 orig->path);
                continue;
            }
        }
        field_error(ld->errs, later->path, field, "\"%s\" is already used by %s", ix->e[k].key,
                    orig->path);
    }
}

static char *sha256_hex(const char *text, size_t len) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL) != 1) abort();
    char *hex = field_xcalloc(mdlen * 2 + 1, 1);
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}

/* ---- fields shared by entities ---- */

static enum field_status load_id(struct loader *ld, const json_t *js, const char *path,
                                 char id[WEIR_UUID_LEN + 1], struct note *note) {
    const char *v;
    enum field_status st = field_string(js, "id", path, ld->errs, &v);
    if (st == FIELD_OK && !uuid_valid(v)) {
        field_error(ld->errs, path, "id", "must be a UUID");
        st = FIELD_BAD;
    }
    if (st == FIELD_OK) {
        memcpy(id, v, WEIR_UUID_LEN + 1);
        field_lower(id);
        note->id_source = ID_GIVEN;
    }
    return st;
}

static void derive_id(const char *type, const char *key, char id[WEIR_UUID_LEN + 1],
                      struct note *note, enum id_source source) {
    uuid_v5(type, key, id);
    note->id_source = source;
}

static enum field_status load_name(struct loader *ld, const json_t *js, const char *path,
                                   char **out) {
    const char *v;
    enum field_status st = field_string(js, "name", path, ld->errs, &v);
    if (st != FIELD_OK) return st;
    if (!field_name_valid(v)) {
        field_error(ld->errs, path, "name",
                    "must contain only letters, digits, \"-\", \".\", \"_\" and \"~\"");
        return FIELD_BAD;
    }
    *out = field_xstrdup(v);
    return FIELD_OK;
}

static void load_tags(struct loader *ld, const json_t *js, const char *path, char ***tags,
                      size_t *n) {
    field_strings(js, "tags", path, field_tag_check, ld->errs, tags, n);
}

/* ---- services ---- */

static bool check_service_protocol(struct loader *ld, const char *proto, const char *path,
                                   const char *key) {
    static const char *const later[] = {"https",           "grpc", "grpcs", "tcp", "tls",
                                        "tls_passthrough", "udp",  "ws",    "wss", NULL};
    if (strcmp(proto, "http") == 0) return true;
    if (field_in_list(later, proto))
        field_error(ld->errs, path, key, "protocol \"%s\" is not supported yet (only http)", proto);
    else
        field_error(ld->errs, path, key, "unknown protocol \"%s\"", proto);
    return false;
}

/* url, or protocol/host/port/path; returns true when host and port are usable. */
static bool load_service_address(struct loader *ld, const json_t *js, const char *path,
                                 struct service *s) {
    static const char *const parts[] = {"protocol", "host", "port", "path", NULL};
    const char *v;
    enum field_status st = field_string(js, "url", path, ld->errs, &v);
    if (st == FIELD_BAD) return false;
    if (st == FIELD_OK) {
        for (size_t i = 0; parts[i]; i++)
            if (field_get(js, parts[i]))
                field_error(ld->errs, path, parts[i], "cannot be given together with url");
        struct url_parts u;
        const char *err = field_url_split(v, &u);
        if (err) {
            field_error(ld->errs, path, "url", "%s", err);
            return false;
        }
        check_service_protocol(ld, u.protocol, path, "url");
        s->protocol = u.protocol;
        s->host = u.host;
        s->port = u.port ? u.port : 80;
        s->path = u.path;
        return true;
    }

    bool ok = true;
    const char *proto = "http";
    st = field_string(js, "protocol", path, ld->errs, &proto);
    if (st != FIELD_BAD && check_service_protocol(ld, proto, path, "protocol"))
        s->protocol = field_xstrdup(proto);
    st = field_string(js, "host", path, ld->errs, &v);
    if (st == FIELD_ABSENT) field_error(ld->errs, path, "host", "required (or give url)");
    if (st == FIELD_OK) {
        char host[FIELD_HOST_MAX];
        const char *err = field_host_check(v, host);
        if (err)
            field_error(ld->errs, path, "host", "%s", err);
        else
            s->host = field_xstrdup(host);
    }
    if (field_int32(js, "port", path, 1, 65535, ld->errs, &s->port) == FIELD_BAD) ok = false;
    if (field_string(js, "path", path, ld->errs, &v) == FIELD_OK) {
        const char *err = field_url_path_check(v);
        if (err)
            field_error(ld->errs, path, "path", "%s", err);
        else
            s->path = field_xstrdup(v);
    }
    return ok && s->host;
}

static void load_route(struct loader *ld, const json_t *js, size_t r);

static bool service_matches(const struct service *s, const struct service_ref *ref) {
    if (ref->id) return strcasecmp(ref->id, s->id) == 0;
    if (ref->name) return s->name && strcmp(ref->name, s->name) == 0;
    return (s->name && strcmp(ref->either, s->name) == 0) || strcasecmp(ref->either, s->id) == 0;
}

static void load_service(struct loader *ld, const json_t *js, size_t i, size_t *next_route) {
    static const char *const keys[] = {
        "id",           "name",          "url",     "protocol",
        "host",         "port",          "path",    "connect_timeout",
        "read_timeout", "write_timeout", "retries", "enabled",
        "tags",         "routes",        NULL};
    static const struct field_unsupported unsupported[] = {
        {"plugins", PLUGINS_NOT_SUPPORTED, NULL}, {"tls_verify", NULL, NULL},
        {"tls_verify_depth", NULL, NULL},         {"ca_certificates", NULL, NULL},
        {"client_certificate", NULL, NULL},       {NULL, NULL, NULL}};
    struct service *s = &ld->c->services[i];
    struct note *note = &ld->services[i];
    const char *path = note->path;
    field_index_path(note->path, "services", i);
    s->port = 80;
    s->connect_timeout_ms = s->read_timeout_ms = s->write_timeout_ms = 60000;
    s->retries = 5;
    s->enabled = true;
    if (!json_is_object(js)) {
        errlist_addf(ld->errs, path, "expected an object");
        return;
    }
    field_check_keys(js, path, keys, unsupported, ld->errs);
    enum field_status id_st = load_id(ld, js, path, s->id, note);
    load_name(ld, js, path, &s->name);
    note->from_url = field_get(js, "url") != NULL;
    note->keyed = load_service_address(ld, js, path, s);
    field_int32(js, "connect_timeout", path, 1, 2147483646, ld->errs, &s->connect_timeout_ms);
    field_int32(js, "read_timeout", path, 1, 2147483646, ld->errs, &s->read_timeout_ms);
    field_int32(js, "write_timeout", path, 1, 2147483646, ld->errs, &s->write_timeout_ms);
    field_int32(js, "retries", path, 0, 32767, ld->errs, &s->retries);
    field_bool(js, "enabled", path, ld->errs, &s->enabled);
    load_tags(ld, js, path, &s->tags, &s->n_tags);

    if (id_st == FIELD_ABSENT && s->name) {
        derive_id("service", s->name, s->id, note, ID_FROM_NAME);
    } else if (id_st == FIELD_ABSENT && note->keyed && s->protocol) {
        const char *p = s->path ? s->path : "";
        size_t len = strlen(s->protocol) + strlen(s->host) + strlen(p) + 16;
        char *key = field_xcalloc(len, 1);
        snprintf(key, len, "%s://%s:%d%s", s->protocol, s->host, s->port, p);
        derive_id("service", key, s->id, note, ID_FROM_KEY);
        free(key);
    }

    json_t *routes = NULL;
    if (field_array(js, "routes", path, ld->errs, &routes) != FIELD_OK) return;
    for (size_t j = 0; j < json_array_size(routes); j++) {
        struct note *rn = &ld->routes[*next_route];
        char routes_path[FIELD_PATH_MAX];
        field_path(routes_path, path, "routes");
        field_index_path(rn->path, routes_path, j);
        rn->owner = (long)i;
        load_route(ld, json_array_get(routes, j), (*next_route)++);
    }
}

/* ---- routes ---- */

static enum field_status load_route_headers(struct loader *ld, const json_t *js, const char *path,
                                            struct route *rt) {
    json_t *obj = NULL;
    enum field_status st = field_object(js, "headers", path, ld->errs, &obj);
    if (st != FIELD_OK) return st;
    char hpath[FIELD_PATH_MAX];
    field_path(hpath, path, "headers");
    rt->n_headers = json_object_size(obj);
    rt->headers = field_alloc_array(rt->n_headers, sizeof *rt->headers);
    size_t i = 0;
    const char *name;
    json_t *values;
    json_object_foreach(obj, name, values) {
        struct route_header *h = &rt->headers[i++];
        h->name = field_lower(field_xstrdup(name));
        if (!field_token_valid(h->name)) {
            field_error(ld->errs, hpath, name, "not a valid header name");
            st = FIELD_BAD;
            continue;
        }
        if (strcmp(h->name, "host") == 0) {
            field_error(ld->errs, hpath, name, "use hosts to match the Host header (as in Kong)");
            st = FIELD_BAD;
            continue;
        }
        for (size_t j = 0; j + 1 < i; j++)
            if (rt->headers[j].name && strcmp(rt->headers[j].name, h->name) == 0) {
                field_error(ld->errs, hpath, name, "listed twice (names are case-insensitive)");
                st = FIELD_BAD;
            }
        enum field_status vst = field_strings(obj, name, hpath, field_header_value_check, ld->errs,
                                              &h->values, &h->n_values);
        if (vst == FIELD_BAD) st = FIELD_BAD;
        if (vst != FIELD_BAD && h->n_values == 0) {
            field_error(ld->errs, hpath, name, "must list at least one value");
            st = FIELD_BAD;
        }
    }
    return st;
}

static bool parse_service_ref(struct loader *ld, const json_t *ref, const char *path,
                              struct service_ref *out) {
    static const char *const keys[] = {"id", "name", NULL};
    char rpath[FIELD_PATH_MAX];
    field_path(rpath, path, "service");
    memset(out, 0, sizeof *out);
    if (json_is_string(ref)) {
        out->either = json_string_value(ref);
        return true;
    }
    if (!json_is_object(ref)) {
        errlist_addf(ld->errs, rpath, "expected a service name or id, or {\"id\": ...}");
        return false;
    }
    size_t before = ld->errs->n;
    field_check_keys(ref, rpath, keys, NULL, ld->errs);
    field_string(ref, "id", rpath, ld->errs, &out->id);
    field_string(ref, "name", rpath, ld->errs, &out->name);
    if (ld->errs->n != before) return false;
    if (!out->id == !out->name) {
        errlist_addf(ld->errs, rpath, "must have exactly one of id or name");
        return false;
    }
    return true;
}

/* paths, hosts, methods, headers; returns false when one of them is invalid. */
static bool load_route_conditions(struct loader *ld, const json_t *js, const char *path,
                                  struct route *rt) {
    enum field_status st[4] = {
        field_strings(js, "paths", path, field_route_path_check, ld->errs, &rt->paths,
                      &rt->n_paths),
        field_strings(js, "hosts", path, field_route_host_check, ld->errs, &rt->hosts,
                      &rt->n_hosts),
        field_strings(js, "methods", path, field_method_check, ld->errs, &rt->methods,
                      &rt->n_methods),
        load_route_headers(ld, js, path, rt),
    };
    bool ok = true;
    for (int i = 0; i < 4; i++)
        ok = ok && st[i] != FIELD_BAD;
    if (ok && !rt->n_paths && !rt->n_hosts && !rt->n_methods && !rt->n_headers)
        errlist_addf(ld->errs, path, "must have at least one of paths, hosts, methods, headers");
    return ok;
}

static void load_route_options(struct loader *ld, const json_t *js, const char *path,
                               struct route *rt) {
    const char *v;
    char **protocols = NULL;
    size_t n = 0;
    field_bool(js, "strip_path", path, ld->errs, &rt->strip_path);
    field_bool(js, "preserve_host", path, ld->errs, &rt->preserve_host);
    field_int32(js, "regex_priority", path, INT_MIN, INT_MAX, ld->errs, &rt->regex_priority);
    if (field_strings(js, "protocols", path, field_route_protocol_check, ld->errs, &protocols,
                      &n) == FIELD_OK) {
        if (n == 0) field_error(ld->errs, path, "protocols", "must not be empty");
        if (n > 0) rt->protocols = 0;
        for (size_t i = 0; i < n; i++)
            rt->protocols |=
                strcmp(protocols[i], "http") == 0 ? ROUTE_PROTO_HTTP : ROUTE_PROTO_HTTPS;
        field_strings_free(protocols, n);
    }
    int code = 426;
    if (field_int32(js, "https_redirect_status_code", path, 0, 999, ld->errs, &code) == FIELD_OK) {
        if (code == 426 || code == 301 || code == 302 || code == 307 || code == 308)
            rt->https_redirect_status_code = code;
        else
            field_error(ld->errs, path, "https_redirect_status_code",
                        "must be one of 426, 301, 302, 307, 308");
    }
    if (field_string(js, "path_handling", path, ld->errs, &v) == FIELD_OK && strcmp(v, "v0") != 0)
        field_error(ld->errs, path, "path_handling", "%s",
                    strcmp(v, "v1") == 0 ? "\"v1\" is not supported yet (only \"v0\")"
                                         : "must be \"v0\" or \"v1\"");
    static const char *const buffering[] = {"request_buffering", "response_buffering"};
    for (int i = 0; i < 2; i++) {
        bool on = true;
        if (field_bool(js, buffering[i], path, ld->errs, &on) == FIELD_OK && !on)
            field_error(ld->errs, path, buffering[i], "false is not supported yet");
    }
    load_tags(ld, js, path, &rt->tags, &rt->n_tags);
}

static void load_route(struct loader *ld, const json_t *js, size_t r) {
    /* clang-format off */
    static const char *const keys[] = {
        "id", "name", "service", "paths", "hosts", "methods", "headers", "strip_path",
        "preserve_host", "regex_priority", "protocols", "https_redirect_status_code",
        "path_handling", "request_buffering", "response_buffering", "tags", NULL};
    static const struct field_unsupported unsupported[] = {
        {"plugins", PLUGINS_NOT_SUPPORTED, NULL}, {"snis", NULL, NULL}, {"sources", NULL, NULL},
        {"destinations", NULL, NULL}, {"expression", NULL, NULL}, {"priority", NULL, NULL}, {NULL, NULL, NULL}};
    /* clang-format on */
    struct route *rt = &ld->c->routes[r];
    struct note *note = &ld->routes[r];
    const char *path = note->path;
    rt->order = r;
    rt->source_path = strdup(path);
    if (!rt->source_path) abort();
    rt->strip_path = true;
    rt->protocols = ROUTE_PROTO_HTTP | ROUTE_PROTO_HTTPS;
    rt->https_redirect_status_code = 426;
    if (!json_is_object(js)) {
        errlist_addf(ld->errs, path, "expected an object");
        return;
    }
    field_check_keys(js, path, keys, unsupported, ld->errs);
    enum field_status id_st = load_id(ld, js, path, rt->id, note);
    load_name(ld, js, path, &rt->name);

    json_t *ref = field_get(js, "service");
    struct service_ref sref;
    if (note->owner >= 0) {
        if (ref && parse_service_ref(ld, ref, path, &sref) &&
            !service_matches(&ld->c->services[note->owner], &sref))
            field_error(ld->errs, path, "service", "must be absent or name the enclosing service");
    } else if (!ref) {
        field_error(ld->errs, path, "service", "required for a top-level route");
    } else {
        note->has_ref = parse_service_ref(ld, ref, path, &note->ref);
    }
    note->keyed = load_route_conditions(ld, js, path, rt) && id_st == FIELD_ABSENT;
    load_route_options(ld, js, path, rt);
    if (id_st == FIELD_ABSENT && rt->name) {
        derive_id("route", rt->name, rt->id, note, ID_FROM_NAME);
        note->keyed = false;
    }
}

static void write_list(FILE *f, const char *label, char **v, size_t n) {
    fprintf(f, "\n%s", label);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "\t%s", v[i]);
}

/* An unnamed route's id: its service and everything it matches on. */
static void derive_route_id(struct loader *ld, size_t r) {
    struct route *rt = &ld->c->routes[r];
    const struct service *s = &ld->c->services[ld->routes[r].owner];
    char *key = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&key, &len);
    if (!f) abort();
    fputs(s->id, f);
    write_list(f, "paths", rt->paths, rt->n_paths);
    write_list(f, "hosts", rt->hosts, rt->n_hosts);
    write_list(f, "methods", rt->methods, rt->n_methods);
    for (size_t i = 0; i < rt->n_headers; i++)
        write_list(f, rt->headers[i].name, rt->headers[i].values, rt->headers[i].n_values);
    if (fclose(f) != 0) abort();
    derive_id("route", key, rt->id, &ld->routes[r], ID_FROM_KEY);
    free(key);
}

/* ---- upstreams and targets ---- */

static void load_target(struct loader *ld, const json_t *js, size_t u, size_t t, size_t k) {
    static const char *const keys[] = {"id", "target", "weight", "tags", NULL};
    struct upstream *up = &ld->c->upstreams[u];
    struct upstream_target *tg = &up->targets[t];
    struct note *note = &ld->targets[k];
    char targets_path[FIELD_PATH_MAX];
    field_path(targets_path, ld->upstreams[u].path, "targets");
    field_index_path(note->path, targets_path, t);
    const char *path = note->path, *v;
    note->owner = (long)u;
    note->pos = t;
    tg->weight = 100;
    if (!json_is_object(js)) {
        errlist_addf(ld->errs, path, "expected an object");
        return;
    }
    field_check_keys(js, path, keys, NULL, ld->errs);
    enum field_status id_st = load_id(ld, js, path, tg->id, note);
    enum field_status st = field_string(js, "target", path, ld->errs, &v);
    if (st == FIELD_ABSENT) field_error(ld->errs, path, "target", "required");
    if (st == FIELD_OK) {
        char host[FIELD_HOST_MAX];
        bool bracketed;
        const char *err = field_host_port_split(v, host, &tg->port, &bracketed);
        field_lower(host);
        if (!err && !field_ip_family(host) && !field_hostname_valid(host))
            err = "the host must be a host name or an IP address";
        if (err) {
            field_error(ld->errs, path, "target", "%s", err);
        } else {
            tg->target = field_xstrdup(v);
            tg->host = field_xstrdup(host);
            if (tg->port == 0) tg->port = 8000;
            note->keyed = true;
        }
    }
    field_int32(js, "weight", path, 0, 65535, ld->errs, &tg->weight);
    /* struct upstream_target has no tags: they are checked, not kept */
    char **tags = NULL;
    size_t n_tags = 0;
    load_tags(ld, js, path, &tags, &n_tags);
    field_strings_free(tags, n_tags);
    if (note->keyed && up->id[0]) {
        char key[WEIR_UUID_LEN + FIELD_HOST_MAX + 16];
        bool v6 = strchr(tg->host, ':') != NULL;
        snprintf(key, sizeof key, "%s\n%s%s%s:%d", up->id, v6 ? "[" : "", tg->host, v6 ? "]" : "",
                 tg->port);
        uuid_v5("target", key, note->key_id);
        if (id_st == FIELD_ABSENT) derive_id("target", key, tg->id, note, ID_FROM_KEY);
    }
}

static void load_upstream(struct loader *ld, const json_t *js, size_t u, size_t *next_target) {
    static const char *const keys[] = {"id", "name", "algorithm", "targets", "tags", NULL};
    /* clang-format off */
    static const struct field_unsupported unsupported[] = {
        {"healthchecks", "not supported yet (accepted only with every check disabled, Kong's default)", field_inert_healthchecks}, {"hash_on", NULL, field_inert_none},
        {"hash_fallback", NULL, field_inert_none}, {"hash_on_header", NULL, NULL},
        {"hash_fallback_header", NULL, NULL}, {"hash_on_cookie", NULL, NULL},
        {"hash_on_cookie_path", NULL, field_inert_root_path}, {"hash_on_query_arg", NULL, NULL},
        {"hash_fallback_query_arg", NULL, NULL}, {"hash_on_uri_capture", NULL, NULL},
        {"hash_fallback_uri_capture", NULL, NULL}, {"slots", NULL, field_inert_slots},
        {"host_header", NULL, NULL}, {"client_certificate", NULL, NULL},
        {"use_srv_name", NULL, field_inert_false}, {NULL, NULL, NULL}};
    /* clang-format on */
    static const char *const later[] = {"least-connections", "consistent-hashing", "latency", NULL};
    struct upstream *up = &ld->c->upstreams[u];
    struct note *note = &ld->upstreams[u];
    const char *path = note->path, *v;
    field_index_path(note->path, "upstreams", u);
    if (!json_is_object(js)) {
        errlist_addf(ld->errs, path, "expected an object");
        return;
    }
    field_check_keys(js, path, keys, unsupported, ld->errs);
    enum field_status id_st = load_id(ld, js, path, up->id, note);
    enum field_status st = field_string(js, "name", path, ld->errs, &v);
    if (st == FIELD_ABSENT) field_error(ld->errs, path, "name", "required");
    if (st == FIELD_OK) {
        char *name = field_lower(field_xstrdup(v));
        if (field_ip_family(name) || !field_hostname_valid(name)) {
            field_error(ld->errs, path, "name", "must be a host name (not an IP address)");
            free(name);
        } else {
            up->name = name;
            if (id_st == FIELD_ABSENT) derive_id("upstream", name, up->id, note, ID_FROM_NAME);
        }
    }
    if (field_string(js, "algorithm", path, ld->errs, &v) == FIELD_OK &&
        strcmp(v, "round-robin") != 0) {
        if (field_in_list(later, v))
            field_error(ld->errs, path, "algorithm",
                        "\"%s\" is not supported yet (only round-robin)", v);
        else
            field_error(ld->errs, path, "algorithm",
                        "must be one of round-robin, least-connections, consistent-hashing, "
                        "latency");
    }
    load_tags(ld, js, path, &up->tags, &up->n_tags);
    json_t *targets = NULL;
    if (field_array(js, "targets", path, ld->errs, &targets) != FIELD_OK) return;
    up->n_targets = json_array_size(targets);
    up->targets = field_alloc_array(up->n_targets, sizeof *up->targets);
    for (size_t t = 0; t < up->n_targets; t++)
        load_target(ld, json_array_get(targets, t), u, t, (*next_target)++);
}

/* ---- cross-entity checks, references and addresses ---- */

static void check_unique(struct loader *ld) {
    struct config *c = ld->c;
    struct key_index names, ids;
    size_t most = c->n_services > c->n_routes ? c->n_services : c->n_routes;
    if (c->n_upstreams > most) most = c->n_upstreams;
    if (ld->n_targets > most) most = ld->n_targets;
    key_index_init(&names, most);
    key_index_init(&ids, most);

    for (size_t i = 0; i < c->n_routes; i++) {
        key_index_add(&names, c->routes[i].name, i);
        key_index_add(&ids, c->routes[i].id, i);
    }
    key_index_sort(&names);
    key_index_sort(&ids);
    report_duplicates(ld, &names, ld->routes, "name", NULL);
    report_duplicates(ld, &ids, ld->routes, "id", "service, paths, hosts, methods and headers");

    names.n = ids.n = 0;
    for (size_t i = 0; i < c->n_upstreams; i++) {
        key_index_add(&names, c->upstreams[i].name, i);
        key_index_add(&ids, c->upstreams[i].id, i);
    }
    key_index_sort(&names);
    key_index_sort(&ids);
    report_duplicates(ld, &names, ld->upstreams, "name", NULL);
    report_duplicates(ld, &ids, ld->upstreams, "id", NULL);

    names.n = ids.n = 0;
    for (size_t k = 0; k < ld->n_targets; k++) {
        key_index_add(&names, ld->targets[k].key_id, k);
        const struct note *n = &ld->targets[k];
        if (n->path[0]) key_index_add(&ids, c->upstreams[n->owner].targets[n->pos].id, k);
    }
    key_index_sort(&names);
    key_index_sort(&ids);
    for (size_t k = 1; k < names.n; k++) {
        if (strcmp(names.e[k].key, names.e[k - 1].key) != 0) continue;
        const struct note *later = &ld->targets[names.e[k].index];
        size_t first = k - 1;
        while (first > 0 && strcmp(names.e[first - 1].key, names.e[k].key) == 0)
            first--;
        field_error(ld->errs, later->path, "target", "the same host and port as %s",
                    ld->targets[names.e[first].index].path);
    }
    report_duplicates(ld, &ids, ld->targets, "id", NULL);
    free(names.e);
    free(ids.e);
}

/* Checks service names and ids, then points every route at its service and
 * derives the ids of unnamed routes (which include the service id). */
static void resolve_route_services(struct loader *ld) {
    struct config *c = ld->c;
    struct key_index names, ids;
    key_index_init(&names, c->n_services);
    key_index_init(&ids, c->n_services);
    for (size_t i = 0; i < c->n_services; i++) {
        key_index_add(&names, c->services[i].name, i);
        key_index_add(&ids, c->services[i].id, i);
    }
    key_index_sort(&names);
    key_index_sort(&ids);
    report_duplicates(ld, &names, ld->services, "name", NULL);
    report_duplicates(ld, &ids, ld->services, "id", "url");

    for (size_t r = 0; r < c->n_routes; r++) {
        struct note *n = &ld->routes[r];
        if (n->has_ref) {
            const char *key = n->ref.id ? n->ref.id : n->ref.name ? n->ref.name : n->ref.either;
            char id[WEIR_UUID_LEN + 1] = "";
            if (!n->ref.name && uuid_valid(key)) field_lower(memcpy(id, key, sizeof id));
            n->owner = id[0] ? key_index_find(&ids, id) : -1;
            if (n->owner < 0 && !n->ref.id) n->owner = key_index_find(&names, key);
            if (n->owner < 0)
                field_error(ld->errs, n->path, "service", "no service %s \"%s\"",
                            n->ref.id     ? "with id"
                            : n->ref.name ? "named"
                                          : "with name or id",
                            key);
        }
        if (n->owner >= 0) {
            c->routes[r].service = &c->services[n->owner];
            if (n->keyed && c->services[n->owner].id[0]) derive_route_id(ld, r);
        }
    }
    free(names.e);
    free(ids.e);
}

static void resolve_address(struct loader *ld, const char *host, int port, const char *path,
                            const char *field, struct sockaddr_storage *addr, socklen_t *len) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char port_str[8];
    snprintf(port_str, sizeof port_str, "%d", port);
    int rc = getaddrinfo(host, port_str, &hints, &res);
    if (rc != 0 || !res || res->ai_addrlen > sizeof *addr) {
        field_error(ld->errs, path, field, "cannot resolve \"%s\": %s", host,
                    rc == EAI_SYSTEM ? strerror(errno)
                    : rc             ? gai_strerror(rc)
                                     : "no address");
    } else {
        memcpy(addr, res->ai_addr, res->ai_addrlen);
        *len = res->ai_addrlen;
    }
    if (res) freeaddrinfo(res);
}

static void resolve_addresses(struct loader *ld) {
    struct config *c = ld->c;
    struct key_index upstream_names;
    key_index_init(&upstream_names, c->n_upstreams);
    for (size_t u = 0; u < c->n_upstreams; u++)
        key_index_add(&upstream_names, c->upstreams[u].name, u);
    key_index_sort(&upstream_names);

    for (size_t i = 0; i < c->n_services; i++) {
        struct service *s = &c->services[i];
        if (!ld->services[i].keyed) continue;
        long u = key_index_find(&upstream_names, s->host);
        if (u >= 0)
            s->upstream = &c->upstreams[u];
        else
            resolve_address(ld, s->host, s->port, ld->services[i].path,
                            ld->services[i].from_url ? "url" : "host", &s->addr, &s->addrlen);
        bool v6 = strchr(s->host, ':') != NULL;
        size_t len = strlen(s->host) + 16;
        s->host_header = field_xcalloc(len, 1);
        snprintf(s->host_header, len, "%s%s%s", v6 ? "[" : "", s->host, v6 ? "]" : "");
        if (s->port != 80) snprintf(s->host_header + strlen(s->host_header), 8, ":%d", s->port);
    }
    free(upstream_names.e);

    for (size_t k = 0; k < ld->n_targets; k++) {
        const struct note *n = &ld->targets[k];
        if (!n->keyed) continue;
        struct upstream_target *t = &c->upstreams[n->owner].targets[n->pos];
        resolve_address(ld, t->host, t->port, n->path, "target", &t->addr, &t->addrlen);
    }
}

/* ---- the document ---- */

static size_t count_nested(const json_t *arr, const char *key) {
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        json_t *inner = json_is_object(v) ? field_get(v, key) : NULL;
        if (json_is_array(inner)) n += json_array_size(inner);
    }
    return n;
}

static void load_root(struct loader *ld, const json_t *root) {
    static const char *const keys[] = {"_format_version", "_transform", "_comment",  "weir",
                                       "services",        "routes",     "upstreams", NULL};
    /* clang-format off */
    static const struct field_unsupported unsupported[] = {
        {"plugins", PLUGINS_NOT_SUPPORTED, NULL}, {"consumers", NULL, NULL}, {"certificates", NULL, NULL},
        {"ca_certificates", NULL, NULL}, {"snis", NULL, NULL}, {"vaults", NULL, NULL}, {"_workspace", NULL, NULL},
        {NULL, NULL, NULL}};
    /* clang-format on */
    struct config *c = ld->c;
    struct errlist *errs = ld->errs;
    const char *v;
    bool b;
    field_check_keys(root, "", keys, unsupported, errs);
    enum field_status st = field_string(root, "_format_version", "", errs, &v);
    if (st == FIELD_ABSENT) errlist_addf(errs, "_format_version", "required (use \"3.0\")");
    if (st == FIELD_OK && strcmp(v, "3.0") != 0)
        errlist_addf(errs, "_format_version", "must be \"3.0\"");
    field_bool(root, "_transform", "", errs, &b);
    field_string(root, "_comment", "", errs, &v);
    config_weir_load(root, ld->base_dir, &c->weir, errs);

    json_t *services = NULL, *routes = NULL, *upstreams = NULL;
    field_array(root, "services", "", errs, &services);
    field_array(root, "routes", "", errs, &routes);
    field_array(root, "upstreams", "", errs, &upstreams);
    c->n_services = json_array_size(services);
    c->n_routes = count_nested(services, "routes") + json_array_size(routes);
    c->n_upstreams = json_array_size(upstreams);
    ld->n_targets = count_nested(upstreams, "targets");
    c->services = field_alloc_array(c->n_services, sizeof *c->services);
    c->routes = field_alloc_array(c->n_routes, sizeof *c->routes);
    c->upstreams = field_alloc_array(c->n_upstreams, sizeof *c->upstreams);
    ld->services = field_alloc_array(c->n_services, sizeof *ld->services);
    ld->routes = field_alloc_array(c->n_routes, sizeof *ld->routes);
    ld->upstreams = field_alloc_array(c->n_upstreams, sizeof *ld->upstreams);
    ld->targets = field_alloc_array(ld->n_targets, sizeof *ld->targets);

    size_t next = 0;
    for (size_t u = 0; u < c->n_upstreams; u++)
        load_upstream(ld, json_array_get(upstreams, u), u, &next);
    CONFIG_BUG_ON(next != ld->n_targets); /* counted as loaded */
    next = 0;
    for (size_t i = 0; i < c->n_routes; i++)
        ld->routes[i].owner = -1;
    for (size_t i = 0; i < c->n_services; i++)
        load_service(ld, json_array_get(services, i), i, &next);
    for (size_t j = 0; j < json_array_size(routes); j++, next++) {
        field_index_path(ld->routes[next].path, "routes", j);
        load_route(ld, json_array_get(routes, j), next);
    }
    CONFIG_BUG_ON(next != c->n_routes);
    resolve_route_services(ld);
    check_unique(ld);
    resolve_addresses(ld);
}

static struct config *load_text(const char *text, size_t len, const char *base_dir,
                                struct errlist *errs) {
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        errlist_addf(errs, NULL, "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        errlist_addf(errs, NULL, "the configuration must be a JSON object");
        json_decref(root);
        return NULL;
    }
    size_t errs_before = errs->n;
    struct config *c = field_xcalloc(1, sizeof *c);
    struct loader ld = {.c = c, .errs = errs, .base_dir = base_dir};
    c->hash = sha256_hex(text, len);
    load_root(&ld, root);
    free(ld.services);
    free(ld.routes);
    free(ld.upstreams);
    free(ld.targets);
    if (errs->n != errs_before) {
        json_decref(root);
        config_free(c);
        return NULL;
    }
    c->source_json = root; /* kept for the admin API's GET /config */
    c->loaded_at = (long long)time(NULL);
    return c;
}

struct config *config_load_string(const char *json, size_t len, const char *base_dir,
                                  struct errlist *errs) {
    char *cwd = NULL, *base;
    if (!base_dir || base_dir[0] != '/') {
        cwd = getcwd(NULL, 0);
        if (!cwd) {
            errlist_addf(errs, NULL, "cannot find the current directory: %s", strerror(errno));
            return NULL;
        }
    }
    base = cwd ? field_resolve_path(cwd, base_dir ? base_dir : "") : field_xstrdup(base_dir);
    free(cwd);
    size_t blen = strlen(base);
    if (blen > 1 && base[blen - 1] == '/') base[blen - 1] = '\0';
    struct config *c = load_text(json, len, base, errs);
    free(base);
    return c;
}

static char *read_file(const char *path, size_t *len, struct errlist *errs) {
    FILE *f = fopen(path, "rb");
    struct stat st;
    char *buf = NULL;
    if (!f || fstat(fileno(f), &st) != 0) {
        errlist_addf(errs, path, "%s", strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        errlist_addf(errs, path, "not a regular file");
    } else if (st.st_size > CONFIG_MAX_FILE_BYTES) {
        errlist_addf(errs, path, "larger than %ld bytes", CONFIG_MAX_FILE_BYTES);
    } else {
        buf = field_xcalloc((size_t)st.st_size + 1, 1);
        *len = fread(buf, 1, (size_t)st.st_size, f);
        if (ferror(f)) {
            errlist_addf(errs, path, "%s", strerror(errno));
            free(buf);
            buf = NULL;
        }
    }
    if (f) fclose(f);
    return buf;
}

struct config *config_load_file(const char *path, struct errlist *errs) {
    char *abs = realpath(path, NULL);
    if (!abs) {
        errlist_addf(errs, path, "%s", strerror(errno));
        return NULL;
    }
    size_t len = 0;
    char *text = read_file(abs, &len, errs);
    struct config *c = NULL;
    if (text) {
        char *dir = field_xstrdup(abs);
        char *slash = strrchr(dir, '/');
        slash[slash == dir ? 1 : 0] = '\0';
        c = load_text(text, len, dir, errs);
        free(dir);
        free(text);
    }
    if (c)
        c->source_path = abs;
    else
        free(abs);
    return c;
}

void config_free(struct config *c) {
    if (!c) return;
    struct weir_settings *w = &c->weir;
    free(w->proxy_listen);
    free(w->admin_listen);
    free(w->trusted_ips);
    free(w->access_log);
    free(w->error_log);
    free(w->admin_token);
    json_decref(c->source_json);
    for (size_t i = 0; i < c->n_services; i++) {
        struct service *s = &c->services[i];
        free(s->name);
        free(s->protocol);
        free(s->host);
        free(s->path);
        free(s->host_header);
        field_strings_free(s->tags, s->n_tags);
    }
    for (size_t i = 0; i < c->n_routes; i++) {
        struct route *r = &c->routes[i];
        free(r->name);
        free(r->source_path);
        field_strings_free(r->paths, r->n_paths);
        field_strings_free(r->hosts, r->n_hosts);
        field_strings_free(r->methods, r->n_methods);
        for (size_t h = 0; h < r->n_headers; h++) {
            free(r->headers[h].name);
            field_strings_free(r->headers[h].values, r->headers[h].n_values);
        }
        free(r->headers);
        field_strings_free(r->tags, r->n_tags);
    }
    for (size_t u = 0; u < c->n_upstreams; u++) {
        struct upstream *up = &c->upstreams[u];
        free(up->name);
        for (size_t t = 0; t < up->n_targets; t++) {
            free(up->targets[t].target);
            free(up->targets[t].host);
        }
        free(up->targets);
        field_strings_free(up->tags, up->n_tags);
    }
    free(c->services);
    free(c->routes);
    free(c->upstreams);
    free(c->source_path);
    free(c->hash);
    free(c);
}

static bool cidr_contains(const struct cidr *c, const uint8_t *addr) {
    int full = c->prefix_len / 8, rest = c->prefix_len % 8;
    if (memcmp(c->addr, addr, (size_t)full) != 0) return false;
    if (rest == 0) return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (addr[full] & mask);
}

bool config_ip_trusted(const struct weir_settings *w, const struct sockaddr *addr) {
    uint8_t v4[4], v6[16];
    bool has_v4 = false, has_v6 = false;
    if (addr->sa_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, addr, sizeof sin);
        memcpy(v4, &sin.sin_addr, 4);
        has_v4 = true;
    } else if (addr->sa_family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, addr, sizeof sin6);
        memcpy(v6, &sin6.sin6_addr, 16);
        has_v6 = true;
        /* a dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d */
        if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
            memcpy(v4, v6 + 12, 4);
            has_v4 = true;
        }
    }
    for (size_t i = 0; i < w->n_trusted_ips; i++) {
        const struct cidr *c = &w->trusted_ips[i];
        if ((c->family == AF_INET && has_v4 && cidr_contains(c, v4)) ||
            (c->family == AF_INET6 && has_v6 && cidr_contains(c, v6)))
            return true;
    }
    return false;
}
