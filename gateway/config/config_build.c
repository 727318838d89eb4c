/* config_build: compiles a checked model (config/model.h) into struct config.
 *
 * Only transformations happen here: the schema validator and model_check() have already refused
 * everything invalid. What remains is what the request path needs precomputed: addresses
 * resolved (getaddrinfo, the one check that needs the outside world), services linked to the
 * upstream they name, the Host header to send, route protocol bits and order. */
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config_build.h"

#include "core/arena.h"
#include "core/log.h"
#include "lua/plugin_catalog.h"
#include "lua/plugin_chain.h"
#include "config/config_fields.h"

static const char *str(const json_t *e, const char *key) {
    return json_string_value(json_object_get(e, key));
}

static int int_or(const json_t *e, const char *key, int def) {
    const json_t *v = json_object_get(e, key);
    /* JSON Schema counts 2.0 as an integer, so a number may arrive as a real */
    return json_is_number(v) ? (int)json_number_value(v) : def;
}

static bool bool_or(const json_t *e, const char *key, bool def) {
    const json_t *v = json_object_get(e, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

/* Points out[i] at the strings of `arr` (borrowed from the model); returns how many. */
static size_t borrow(const json_t *arr, const char **out) {
    size_t n = json_array_size(arr);
    for (size_t i = 0; i < n; i++)
        out[i] = json_string_value(json_array_get(arr, i));
    return n;
}

/* A new array of the strings of `arr` (borrowed), NULL when empty. */
static const char **strings(const json_t *arr, size_t *n) {
    *n = json_array_size(arr);
    const char **out = field_alloc_array(*n, sizeof *out);
    borrow(arr, out);
    return out;
}

/* Entity i of kind k as messages name it. */
static const char *where(const struct build *b, enum entity_kind k, size_t i, char *buf,
                         size_t len) {
    return model_origin(b->origins, k, i, buf, len);
}

static void resolve(struct build *b, const char *host, int port, const char *path,
                    const char *field, struct sockaddr_storage *addr, socklen_t *len) {
    /* an address the previous config resolved for the same host and port is reused: admin
     * changes must not pay one lookup per service */
    if (b->prev_index) {
        char key[FIELD_HOST_MAX + 16];
        snprintf(key, sizeof key, "%s:%d", host, port);
        json_t *at = json_object_get(b->prev_index, key);
        if (at) {
            const struct resolved_addr *r = &b->prev_addrs[json_integer_value(at)];
            memcpy(addr, &r->addr, r->len);
            *len = r->len;
            return;
        }
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char port_str[8];
    snprintf(port_str, sizeof port_str, "%d", port);
    int rc = getaddrinfo(host, port_str, &hints, &res);
    if (rc != 0 || !res || res->ai_addrlen > sizeof *addr) {
        field_error(b->errs, path, field, "cannot resolve \"%s\": %s", host,
                    rc == EAI_SYSTEM ? strerror(errno)
                    : rc             ? gai_strerror(rc)
                                     : "no address");
    } else {
        memcpy(addr, res->ai_addr, res->ai_addrlen);
        *len = res->ai_addrlen;
    }
    if (res) freeaddrinfo(res);
}

static void build_upstreams(struct build *b) {
    struct config *c = b->c;
    json_t *ups = model_items(c->model, ENTITY_UPSTREAM);
    json_t *targets = model_items(c->model, ENTITY_TARGET);
    c->n_upstreams = json_array_size(ups);
    c->upstreams = field_alloc_array(c->n_upstreams, sizeof *c->upstreams);
    json_t *index = json_object(); /* upstream id -> position */
    size_t i;
    json_t *e;
    json_array_foreach(ups, i, e) {
        struct upstream *u = &c->upstreams[i];
        memcpy(u->id, str(e, "id"), WEIR_UUID_LEN + 1);
        u->name = str(e, "name");
        u->tags = strings(json_object_get(e, "tags"), &u->n_tags);
        json_object_set_new(index, u->id, json_integer((json_int_t)i));
        json_object_set_new(b->upstream_names, u->name, json_integer((json_int_t)i));
    }
    /* count, then fill, keeping the targets' order */
    json_array_foreach(targets, i, e) {
        json_t *pos = json_object_get(index, str(json_object_get(e, "upstream"), "id"));
        c->upstreams[json_integer_value(pos)].n_targets++;
    }
    for (size_t u = 0; u < c->n_upstreams; u++) {
        c->upstreams[u].targets =
            field_alloc_array(c->upstreams[u].n_targets, sizeof *c->upstreams[u].targets);
        c->upstreams[u].n_targets = 0;
    }
    json_array_foreach(targets, i, e) {
        json_t *pos = json_object_get(index, str(json_object_get(e, "upstream"), "id"));
        struct upstream *u = &c->upstreams[json_integer_value(pos)];
        struct upstream_target *t = &u->targets[u->n_targets++];
        memcpy(t->id, str(e, "id"), WEIR_UUID_LEN + 1);
        t->target = str(e, "target");
        char host[FIELD_HOST_MAX];
        bool bracketed;
        field_host_port_split(t->target, host, &t->port, &bracketed);
        t->host = field_xstrdup(host);
        t->weight = int_or(e, "weight", 100);
        char buf[FIELD_PATH_MAX];
        resolve(b, t->host, t->port, where(b, ENTITY_TARGET, i, buf, sizeof buf), "target",
                &t->addr, &t->addrlen);
    }
    json_decref(index);
}

/* ca_certificates and client_certificate must name entities of this configuration (ids are
 * compared in lower case, as the model stores them). */
static bool entity_exists(const struct build *b, enum entity_kind k, const char *id) {
    char low[WEIR_UUID_LEN + 1];
    size_t n = strlen(id);
    if (n > WEIR_UUID_LEN) return false;
    for (size_t i = 0; i <= n; i++)
        low[i] = (char)((id[i] >= 'A' && id[i] <= 'Z') ? id[i] + 32 : id[i]);
    return model_find(b->c->model, k, low, NULL, NULL) >= 0;
}

static void tls_references_check(struct build *b, const struct service *s, size_t i) {
    char buf[FIELD_PATH_MAX];
    const char *path = NULL;
    for (size_t k = 0; k < s->n_ca_certificates; k++)
        if (!entity_exists(b, ENTITY_CA_CERTIFICATE, s->ca_certificates[k])) {
            if (!path) path = where(b, ENTITY_SERVICE, i, buf, sizeof buf);
            field_error(b->errs, path, "ca_certificates", "no ca_certificate with id %s",
                        s->ca_certificates[k]);
        }
    if (s->client_certificate && !entity_exists(b, ENTITY_CERTIFICATE, s->client_certificate)) {
        if (!path) path = where(b, ENTITY_SERVICE, i, buf, sizeof buf);
        field_error(b->errs, path, "client_certificate", "no certificate with id %s",
                    s->client_certificate);
    }
}

static void build_services(struct build *b) {
    struct config *c = b->c;
    json_t *items = model_items(c->model, ENTITY_SERVICE);
    c->n_services = json_array_size(items);
    c->services = field_alloc_array(c->n_services, sizeof *c->services);
    size_t i;
    json_t *e;
    json_array_foreach(items, i, e) {
        struct service *s = &c->services[i];
        memcpy(s->id, str(e, "id"), WEIR_UUID_LEN + 1);
        s->name = str(e, "name");
        s->protocol = str(e, "protocol") ? str(e, "protocol") : "http";
        s->host = str(e, "host");
        s->port = int_or(e, "port", 80);
        s->path = str(e, "path");
        s->connect_timeout_ms = int_or(e, "connect_timeout", 60000);
        s->read_timeout_ms = int_or(e, "read_timeout", 60000);
        s->write_timeout_ms = int_or(e, "write_timeout", 60000);
        s->retries = int_or(e, "retries", 5);
        s->enabled = bool_or(e, "enabled", true);
        s->tags = strings(json_object_get(e, "tags"), &s->n_tags);
        s->tls = !strcmp(s->protocol, "https");
        s->tcp = !strcmp(s->protocol, "tcp");
        s->tls_verify = bool_or(e, "tls_verify", true);
        s->tls_verify_depth = int_or(e, "tls_verify_depth", -1);
        s->ca_certificates = strings(json_object_get(e, "ca_certificates"), &s->n_ca_certificates);
        json_t *cc = json_object_get(e, "client_certificate");
        s->client_certificate = json_string_value(json_object_get(cc, "id"));
        tls_references_check(b, s, i);
        json_t *u = json_object_get(b->upstream_names, s->host); /* both lower case */
        if (u) s->upstream = &c->upstreams[json_integer_value(u)];
        if (!s->upstream) {
            char buf[FIELD_PATH_MAX];
            const char *path = where(b, ENTITY_SERVICE, i, buf, sizeof buf);
            json_t *o = json_array_get(json_object_get(b->origins, "services"), i);
            resolve(b, s->host, s->port, path,
                    json_is_true(json_object_get(o, "url")) ? "url" : "host", &s->addr,
                    &s->addrlen);
        }
        bool v6 = strchr(s->host, ':') != NULL;
        size_t len = strlen(s->host) + 16;
        s->host_header = field_xcalloc(len, 1);
        snprintf(s->host_header, len, "%s%s%s", v6 ? "[" : "", s->host, v6 ? "]" : "");
        if (s->port != (s->tls ? 443 : 80))
            snprintf(s->host_header + strlen(s->host_header), 8, ":%d", s->port);
    }
}

/* Routes of the previous config by the model object they were built from. Model objects are
 * immutable and shared between successive models, so the same object means the same route. */
struct route_index {
    const json_t **keys;
    size_t *pos;
    size_t mask;
};

static size_t ptr_slot(const void *p, size_t mask) {
    uintptr_t h = (uintptr_t)p;
    h ^= h >> 17;
    h *= (uintptr_t)0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 29)) & mask;
}

static void route_index_build(struct route_index *ix, const struct config *prev) {
    size_t cap = 16;
    while (cap < prev->n_routes * 2)
        cap *= 2;
    ix->mask = cap - 1;
    ix->keys = field_xcalloc(cap, sizeof *ix->keys);
    ix->pos = field_xcalloc(cap, sizeof *ix->pos);
    for (size_t i = 0; i < prev->n_routes; i++) {
        size_t j = ptr_slot(prev->routes[i].entity, ix->mask);
        while (ix->keys[j])
            j = (j + 1) & ix->mask;
        ix->keys[j] = prev->routes[i].entity;
        ix->pos[j] = i;
    }
}

static long route_index_find(const struct route_index *ix, const json_t *e) {
    for (size_t j = ptr_slot(e, ix->mask); ix->keys[j]; j = (j + 1) & ix->mask)
        if (ix->keys[j] == e) return (long)ix->pos[j];
    return -1;
}

/* Finds routes of the previous config by model object, in the new model's order. An admin
 * change inserts, replaces or removes one route and keeps the others in order, so the route
 * after the last one found is tried first; the pointer index is built only when that guess
 * fails while some previous route is still unfound. Missing a route would only cost building
 * it again from its object, never a wrong route. */
struct route_finder {
    const struct config *prev; /* NULL: nothing to find */
    size_t next;               /* the guess */
    size_t found;              /* previous routes found so far (each at most once) */
    struct route_index ix;     /* keys NULL until needed */
};

static long route_finder_find(struct route_finder *f, const json_t *e) {
    const struct config *prev = f->prev;
    if (!prev || f->found == prev->n_routes) return -1; /* every old route is taken: e is new */
    long at;
    if (f->next < prev->n_routes && prev->routes[f->next].entity == e) {
        at = (long)f->next;
    } else {
        if (!f->ix.keys) route_index_build(&f->ix, prev);
        at = route_index_find(&f->ix, e);
    }
    if (at >= 0) {
        f->next = (size_t)at + 1;
        f->found++;
    }
    return at;
}

/* Route memory comes from the config's arena (config.h), which never fails short of aborting:
 * it has no limit. */
static void *route_mem(struct config *c, size_t n) {
    void *p = arena_alloc(&c->route_mem, n);
    if (!p) abort();
    return p;
}

/* One block for a route's five lists (at least one slot, as before: never NULL). */
static const char **route_lists(struct config *c, size_t total) {
    return route_mem(c, (total ? total : 1) * sizeof(const char *));
}

/* Paths and hosts are copied into route_mem, one after the other: the router reads every one of
 * them on each build, and the model's strings, scattered over the heap, made that a cache miss
 * per route (a copied route's are copied from the previous config's arena, in order). */
static void route_own_strings(struct config *c, const char **s, size_t n) {
    for (size_t k = 0; k < n; k++) {
        s[k] = arena_dup(&c->route_mem, s[k], strlen(s[k]));
        if (!s[k]) abort();
    }
}

static char *route_source_path(struct build *b, size_t i) {
    if (!b->origins) {
        /* model_origin()'s name for an entity without origins ("routes[12]"), written without
         * snprintf: an admin change names every route, and snprintf was a quarter of it */
        char digits[24];
        size_t n = 0;
        do
            digits[n++] = (char)('0' + i % 10);
        while ((i /= 10) > 0);
        const char *plural = entity_kinds[ENTITY_ROUTE].plural;
        size_t len = strlen(plural);
        char *d = route_mem(b->c, len + n + 3), *at = d + len;
        memcpy(d, plural, len);
        *at++ = '[';
        while (n > 0)
            *at++ = digits[--n];
        *at++ = ']';
        *at = '\0';
        return d;
    }
    char buf[FIELD_PATH_MAX];
    const char *where_i = where(b, ENTITY_ROUTE, i, buf, sizeof buf);
    char *d = arena_dup(&b->c->route_mem, where_i, strlen(where_i));
    if (!d) abort();
    return d;
}

/* `r` as a copy of `old` (built from the same model object): the strings are the model's, so
 * only the lists are copied. The service and the position are the caller's. */
static void route_copy(struct config *c, struct route *r, const struct route *old) {
    *r = *old;
    size_t total = old->n_paths + old->n_hosts + old->n_methods + old->n_tags + old->n_snis;
    const char **block = route_lists(c, total);
    memcpy(block, old->paths, total * sizeof *block);
    route_own_strings(c, block, old->n_paths + old->n_hosts);
    r->paths = block;
    r->hosts = r->paths + r->n_paths;
    r->methods = r->hosts + r->n_hosts;
    r->tags = r->methods + r->n_methods;
    r->snis = r->tags + r->n_tags;
    r->headers = old->n_headers ? route_mem(c, old->n_headers * sizeof *r->headers) : NULL;
    for (size_t h = 0; h < old->n_headers; h++) {
        size_t n = old->headers[h].n_values;
        r->headers[h] = old->headers[h];
        r->headers[h].values = n ? route_mem(c, n * sizeof(char *)) : NULL;
        if (n) memcpy(r->headers[h].values, old->headers[h].values, n * sizeof(char *));
    }
}

/* A tls_passthrough route relays bytes, which only a tcp service takes; an http or https route
 * needs an HTTP service. Kong documents the pairing (tls_passthrough routes with tcp services) and
 * fails such a route at request time; Weir refuses it when the configuration is loaded. */
static void route_service_check(struct build *b, const struct route *r, size_t i) {
    bool passthrough = r->protocols & ROUTE_PROTO_TLS_PASSTHROUGH;
    if (passthrough == r->service->tcp) return;
    char buf[FIELD_PATH_MAX];
    const char *path = where(b, ENTITY_ROUTE, i, buf, sizeof buf);
    if (passthrough)
        field_error(b->errs, path, "service",
                    "a tls_passthrough route needs a service of protocol \"tcp\", not \"%s\"",
                    r->service->protocol);
    else
        field_error(b->errs, path, "protocols",
                    "a route to a \"tcp\" service must have protocols [\"tls_passthrough\"]");
}

static void build_routes(struct build *b) {
    struct config *c = b->c;
    json_t *items = model_items(c->model, ENTITY_ROUTE);
    c->n_routes = json_array_size(items);
    /* not zeroed: a copied route is overwritten whole, a new one is cleared below */
    c->routes = c->n_routes ? malloc(c->n_routes * sizeof *c->routes) : NULL;
    if (c->n_routes && !c->routes) abort();
    json_t *services = json_object(); /* id -> position */
    for (size_t s = 0; s < c->n_services; s++)
        json_object_set_new(services, c->services[s].id, json_integer((json_int_t)s));
    struct route_finder prev = {.prev = b->prev};
    /* prev_service[k]: position in c->services of the previous config's service k (by id, so a
     * changed service is found too), or -1 when it is gone. A copied route finds its service
     * there instead of by three JSON lookups. */
    long *prev_service = NULL;
    if (b->prev) {
        prev_service = field_alloc_array(b->prev->n_services, sizeof *prev_service);
        for (size_t k = 0; k < b->prev->n_services; k++) {
            json_t *pos = json_object_get(services, b->prev->services[k].id);
            prev_service[k] = pos ? (long)json_integer_value(pos) : -1;
        }
    }
    size_t i;
    json_t *e;
    json_array_foreach(items, i, e) {
        struct route *r = &c->routes[i];
        long old = route_finder_find(&prev, e);
        /* the same model object names the same service id, which the model checked exists */
        long service =
            old >= 0 ? prev_service[b->prev->routes[old].service - b->prev->services] : -1;
        if (service >= 0) {
            route_copy(c, r, &b->prev->routes[old]);
            r->service = &c->services[service];
            r->order = i;
            r->source_path = route_source_path(b, i);
            route_service_check(b, r, i); /* the service may have changed */
            continue;
        }
        *r = (struct route){0};
        r->entity = e;
        memcpy(r->id, str(e, "id"), WEIR_UUID_LEN + 1);
        r->name = str(e, "name");
        json_t *pos = json_object_get(services, str(json_object_get(e, "service"), "id"));
        r->service = &c->services[json_integer_value(pos)];
        /* one block for the five lists */
        const json_t *paths = json_object_get(e, "paths"), *hosts = json_object_get(e, "hosts");
        const json_t *methods = json_object_get(e, "methods"), *tags = json_object_get(e, "tags");
        const json_t *snis = json_object_get(e, "snis");
        size_t total = json_array_size(paths) + json_array_size(hosts) + json_array_size(methods) +
                       json_array_size(tags) + json_array_size(snis);
        r->paths = route_lists(c, total);
        r->n_paths = borrow(paths, r->paths);
        r->hosts = r->paths + r->n_paths;
        r->n_hosts = borrow(hosts, r->hosts);
        route_own_strings(c, r->paths, r->n_paths + r->n_hosts);
        r->methods = r->hosts + r->n_hosts;
        r->n_methods = borrow(methods, r->methods);
        r->tags = r->methods + r->n_methods;
        r->n_tags = borrow(tags, r->tags);
        r->snis = r->tags + r->n_tags;
        r->n_snis = borrow(snis, r->snis);
        json_t *headers = json_object_get(e, "headers");
        r->n_headers = json_object_size(headers);
        r->headers = r->n_headers ? route_mem(c, r->n_headers * sizeof *r->headers) : NULL;
        size_t h = 0;
        const char *name;
        json_t *values;
        json_object_foreach(headers, name, values) {
            size_t n = json_array_size(values);
            r->headers[h].name = name;
            r->headers[h].values = n ? route_mem(c, n * sizeof(char *)) : NULL;
            r->headers[h].n_values = borrow(values, r->headers[h].values);
            h++;
        }
        r->strip_path = bool_or(e, "strip_path", true);
        r->preserve_host = bool_or(e, "preserve_host", false);
        r->regex_priority = int_or(e, "regex_priority", 0);
        json_t *protocols = json_object_get(e, "protocols");
        r->protocols = json_array_size(protocols) ? 0 : ROUTE_PROTO_HTTP | ROUTE_PROTO_HTTPS;
        size_t p;
        json_t *proto;
        json_array_foreach(protocols, p, proto) {
            const char *pname = json_string_value(proto);
            r->protocols |= !strcmp(pname, "https")             ? ROUTE_PROTO_HTTPS
                            : !strcmp(pname, "tls_passthrough") ? ROUTE_PROTO_TLS_PASSTHROUGH
                                                                : ROUTE_PROTO_HTTP;
        }
        route_service_check(b, r, i);
        r->https_redirect_status_code = int_or(e, "https_redirect_status_code", 426);
        r->order = i;
        r->source_path = route_source_path(b, i);
    }
    free(prev.ix.keys);
    free(prev.ix.pos);
    free(prev_service);
    json_decref(services);
}

static const char *scope_id(const json_t *e, const char *field) {
    return json_string_value(json_object_get(json_object_get(e, field), "id"));
}

static void build_plugins(struct build *b) {
    struct config *c = b->c;
    json_t *items = model_items(c->model, ENTITY_PLUGIN);
    c->n_plugin_instances = json_array_size(items);
    if (!c->n_plugin_instances || !c->plugins) return;
    c->plugin_instances = field_alloc_array(c->n_plugin_instances, sizeof *c->plugin_instances);
    c->plugin_defs = field_alloc_array(c->n_plugin_instances, sizeof *c->plugin_defs);
    size_t i;
    json_t *e;
    json_array_foreach(items, i, e) {
        const char *name = json_string_value(json_object_get(e, "name"));
        const struct plugin_def *def = plugin_catalog_find(c->plugins, name);
        if (!def) continue; /* reported by plugin_catalog_apply(); this config is not used */
        const json_t *enabled = json_object_get(e, "enabled");
        struct plugin_instance *p = &c->plugin_instances[i];
        *p = (struct plugin_instance){
            .id = json_string_value(json_object_get(e, "id")),
            .name = def->name,
            .route_id = scope_id(e, "route"),
            .service_id = scope_id(e, "service"),
            .consumer_id = scope_id(e, "consumer"),
            .enabled = !json_is_false(enabled),
            .priority = def->priority,
            .data = e,
        };
        c->plugin_defs[i] = def;
        if (p->enabled && p->consumer_id) c->plugins_by_consumer = true;
    }
}

/* Plugins run on HTTP requests only (Kong's stream plugins are not implemented): one scoped to a
 * tls_passthrough route or a tcp service would configure nothing, so it is refused rather than
 * silently ignored. Global plugins simply do not apply to passthrough connections (docs/tls.md). */
static void plugins_on_passthrough_check(struct build *b) {
    struct config *c = b->c;
    json_t *stream = NULL; /* ids of passthrough routes and tcp services */
    for (size_t i = 0; i < c->n_routes; i++)
        if (c->routes[i].protocols & ROUTE_PROTO_TLS_PASSTHROUGH) {
            if (!stream) stream = json_object();
            json_object_set_new(stream, c->routes[i].id, json_string("route"));
        }
    for (size_t i = 0; i < c->n_services; i++)
        if (c->services[i].tcp) {
            if (!stream) stream = json_object();
            json_object_set_new(stream, c->services[i].id, json_string("service"));
        }
    if (!stream) return;
    size_t i;
    json_t *e;
    json_array_foreach(model_items(c->model, ENTITY_PLUGIN), i, e) {
        static const char *const scopes[] = {"route", "service"};
        for (int k = 0; k < 2; k++) {
            const char *id = scope_id(e, scopes[k]);
            if (!id || !json_object_get(stream, id)) continue;
            char buf[FIELD_PATH_MAX];
            field_error(b->errs, where(b, ENTITY_PLUGIN, i, buf, sizeof buf), scopes[k],
                        "plugins do not run on TLS passthrough connections: %s %s is %s", scopes[k],
                        id, k == 0 ? "a tls_passthrough route" : "a tcp service");
        }
    }
    json_decref(stream);
}

void config_build_entities(struct build *b) {
    b->upstream_names = json_object();
    build_upstreams(b);
    build_services(b);
    build_routes(b);
    build_plugins(b);
    plugins_on_passthrough_check(b);
    json_decref(b->upstream_names);
    b->upstream_names = NULL;
}
