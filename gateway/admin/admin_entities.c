/* admin_entities: GET of services, routes, upstreams and targets in Kong's
 * shapes, read-only from the running snapshot, with Kong's pagination
 * (`size` 1..1000, default 100; an opaque `offset`; `next`) and `tags`
 * filters ("a,b": all of them; "a/b": any of them); and GET /schemas/{entity}.
 * Writes arrive with the store (issue 3). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "core/paths.h"

#define PAGE_DEFAULT 100
#define PAGE_MAX 1000

static const struct config *cfg(struct admin_state *st) {
    return (*st->snapshot)->config;
}

/* Kong returns null for an unset list. */
static json_t *list_or_null(char **items, size_t n) {
    if (n == 0) return json_null();
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(items[i]));
    return a;
}

static json_t *service_json(const struct config *c, const struct service *s) {
    return json_pack("{s:s, s:s?, s:s, s:s, s:i, s:s?, s:i, s:i, s:i, s:i, s:b, s:o, s:I, s:I}",
                     "id", s->id, "name", s->name, "protocol", s->protocol, "host", s->host, "port",
                     s->port, "path", s->path, "retries", s->retries, "connect_timeout",
                     s->connect_timeout_ms, "write_timeout", s->write_timeout_ms, "read_timeout",
                     s->read_timeout_ms, "enabled", s->enabled, "tags",
                     list_or_null(s->tags, s->n_tags), "created_at", (json_int_t)c->loaded_at,
                     "updated_at", (json_int_t)c->loaded_at);
}

static json_t *route_json(const struct config *c, const struct route *r) {
    json_t *headers = json_null();
    if (r->n_headers) {
        headers = json_object();
        for (size_t i = 0; i < r->n_headers; i++)
            json_object_set_new(headers, r->headers[i].name,
                                list_or_null(r->headers[i].values, r->headers[i].n_values));
    }
    json_t *protocols = json_array();
    if (r->protocols & ROUTE_PROTO_HTTP) json_array_append_new(protocols, json_string("http"));
    if (r->protocols & ROUTE_PROTO_HTTPS) json_array_append_new(protocols, json_string("https"));
    return json_pack("{s:s, s:s?, s:o, s:o, s:o, s:o, s:b, s:b, s:i, s:o, s:i, s:s, s:b, s:b, "
                     "s:{s:s}, s:o, s:I, s:I}",
                     "id", r->id, "name", r->name, "paths", list_or_null(r->paths, r->n_paths),
                     "hosts", list_or_null(r->hosts, r->n_hosts), "methods",
                     list_or_null(r->methods, r->n_methods), "headers", headers, "strip_path",
                     r->strip_path, "preserve_host", r->preserve_host, "regex_priority",
                     r->regex_priority, "protocols", protocols, "https_redirect_status_code",
                     r->https_redirect_status_code, "path_handling", "v0", "request_buffering", 1,
                     "response_buffering", 1, "service", "id", r->service->id, "tags",
                     list_or_null(r->tags, r->n_tags), "created_at", (json_int_t)c->loaded_at,
                     "updated_at", (json_int_t)c->loaded_at);
}

static json_t *upstream_json(const struct config *c, const struct upstream *u) {
    return json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:o, s:I, s:I}", "id", u->id, "name", u->name,
                     "algorithm", "round-robin", "slots", 10000, "hash_on", "none", "hash_fallback",
                     "none", "tags", list_or_null(u->tags, u->n_tags), "created_at",
                     (json_int_t)c->loaded_at, "updated_at", (json_int_t)c->loaded_at);
}

static json_t *target_json(const struct config *c, const struct upstream *u,
                           const struct upstream_target *t) {
    return json_pack("{s:s, s:s, s:i, s:{s:s}, s:I, s:I}", "id", t->id, "target", t->target,
                     "weight", t->weight, "upstream", "id", u->id, "created_at",
                     (json_int_t)c->loaded_at, "updated_at", (json_int_t)c->loaded_at);
}

/* ---- tags and pagination ------------------------------------------------- */

static bool has_tag(char **tags, size_t n, const char *tag, size_t len) {
    for (size_t i = 0; i < n; i++)
        if (strlen(tags[i]) == len && strncmp(tags[i], tag, len) == 0) return true;
    return false;
}

/* Kong's filter: "a,b" needs every tag, "a/b" any of them. */
static bool tags_match(const char *filter, char **tags, size_t n) {
    if (!filter) return true;
    bool any = strchr(filter, '/') != NULL;
    const char *p = filter;
    for (;;) {
        size_t len = strcspn(p, any ? "/" : ",");
        bool hit = has_tag(tags, n, p, len);
        if (any && hit) return true;
        if (!any && !hit) return false;
        if (!p[len]) return !any;
        p += len + 1;
    }
}

struct page {
    size_t size, start;
    char *tags;
};

/* Reads size/offset/tags; false (and a 400 in res) when they are invalid. */
static bool page_read(const struct admin_request *req, struct admin_response *res,
                      struct page *pg) {
    pg->size = PAGE_DEFAULT;
    pg->start = 0;
    pg->tags = admin_query_param(req, "tags");
    char *v = admin_query_param(req, "size");
    if (v) {
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        bool ok = *v && !*end && errno == 0 && n >= 1 && n <= PAGE_MAX;
        free(v);
        if (!ok) {
            admin_error(res, 400, "size: must be an integer from 1 to 1000");
            return false;
        }
        pg->size = (size_t)n;
    }
    v = admin_query_param(req, "offset");
    if (v) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        bool ok = *v && !*end && errno == 0;
        free(v);
        if (!ok) {
            admin_error(res, 400, "offset: invalid (use the value a previous page returned)");
            return false;
        }
        pg->start = (size_t)n;
    }
    return true;
}

/* Builds {"data": [...], "next": ..., "offset": ...} from the items that
 * pass the filter, `base` being the collection's path. */
static void page_finish(struct admin_response *res, json_t *all, const struct page *pg,
                        const char *base) {
    json_t *data = json_array();
    size_t n = json_array_size(all);
    for (size_t i = pg->start; i < n && json_array_size(data) < pg->size; i++)
        json_array_append(data, json_array_get(all, i));
    size_t next = pg->start + json_array_size(data);
    res->status = 200;
    if (next < n) {
        char offset[32];
        snprintf(offset, sizeof offset, "%zu", next);
        res->json = json_pack("{s:o, s:o, s:s}", "data", data, "next",
                              json_sprintf("%s?offset=%s&size=%zu%s%s", base, offset, pg->size,
                                           pg->tags ? "&tags=" : "", pg->tags ? pg->tags : ""),
                              "offset", offset);
    } else {
        res->json = json_pack("{s:o, s:n}", "data", data, "next");
    }
    json_decref(all);
    free(pg->tags);
}

/* ---- collections ------------------------------------------------------------ */

/* What the generic list/get code needs to know about one entity type. */
struct entity_kind {
    size_t (*count)(const struct config *c);
    const char *(*id)(const struct config *c, size_t i);
    const char *(*name)(const struct config *c, size_t i); /* NULL when unnamed */
    char **(*tags)(const struct config *c, size_t i, size_t *n);
    json_t *(*to_json)(const struct config *c, size_t i);
};

static size_t services_count(const struct config *c) {
    return c->n_services;
}
static const char *services_id(const struct config *c, size_t i) {
    return c->services[i].id;
}
static const char *services_name(const struct config *c, size_t i) {
    return c->services[i].name;
}
static char **services_tags(const struct config *c, size_t i, size_t *n) {
    *n = c->services[i].n_tags;
    return c->services[i].tags;
}
static json_t *services_json(const struct config *c, size_t i) {
    return service_json(c, &c->services[i]);
}
static const struct entity_kind services = {services_count, services_id, services_name,
                                            services_tags, services_json};

static size_t routes_count(const struct config *c) {
    return c->n_routes;
}
static const char *routes_id(const struct config *c, size_t i) {
    return c->routes[i].id;
}
static const char *routes_name(const struct config *c, size_t i) {
    return c->routes[i].name;
}
static char **routes_tags(const struct config *c, size_t i, size_t *n) {
    *n = c->routes[i].n_tags;
    return c->routes[i].tags;
}
static json_t *routes_json(const struct config *c, size_t i) {
    return route_json(c, &c->routes[i]);
}
static const struct entity_kind routes = {routes_count, routes_id, routes_name, routes_tags,
                                          routes_json};

static size_t upstreams_count(const struct config *c) {
    return c->n_upstreams;
}
static const char *upstreams_id(const struct config *c, size_t i) {
    return c->upstreams[i].id;
}
static const char *upstreams_name(const struct config *c, size_t i) {
    return c->upstreams[i].name;
}
static char **upstreams_tags(const struct config *c, size_t i, size_t *n) {
    *n = c->upstreams[i].n_tags;
    return c->upstreams[i].tags;
}
static json_t *upstreams_json(const struct config *c, size_t i) {
    return upstream_json(c, &c->upstreams[i]);
}
static const struct entity_kind upstreams = {upstreams_count, upstreams_id, upstreams_name,
                                             upstreams_tags, upstreams_json};

/* Index of the entity whose id or name is `key`, or -1. */
static long find(const struct entity_kind *k, const struct config *c, const char *key) {
    for (size_t i = 0; i < k->count(c); i++) {
        const char *name = k->name(c, i);
        if (strcmp(k->id(c, i), key) == 0 || (name && strcmp(name, key) == 0)) return (long)i;
    }
    return -1;
}

/* A page of the entities that pass the tags filter and `keep` (when set). */
static void list(const struct entity_kind *k, struct admin_state *st,
                 const struct admin_request *req, struct admin_response *res, const char *base,
                 bool (*keep)(const struct config *, size_t, const void *), const void *arg) {
    struct page pg;
    if (!page_read(req, res, &pg)) return;
    const struct config *c = cfg(st);
    json_t *all = json_array();
    for (size_t i = 0; i < k->count(c); i++) {
        size_t n_tags;
        char **tags = k->tags(c, i, &n_tags);
        if ((!keep || keep(c, i, arg)) && tags_match(pg.tags, tags, n_tags))
            json_array_append_new(all, k->to_json(c, i));
    }
    page_finish(res, all, &pg, base);
}

/* The entity named by the first path parameter, or -1 after a 404. */
static long lookup(const struct entity_kind *k, struct admin_state *st,
                   const struct admin_request *req, struct admin_response *res) {
    long i = find(k, cfg(st), req->params[0]);
    if (i < 0) admin_error(res, 404, "Not found");
    return i;
}

static void get_one(const struct entity_kind *k, struct admin_state *st,
                    const struct admin_request *req, struct admin_response *res) {
    long i = lookup(k, st, req, res);
    if (i < 0) return;
    res->status = 200;
    res->json = k->to_json(cfg(st), (size_t)i);
}

/* ---- handlers ------------------------------------------------------------------ */

void admin_list_services(struct admin_state *st, const struct admin_request *req,
                         struct admin_response *res) {
    list(&services, st, req, res, "/services", NULL, NULL);
}

void admin_get_service(struct admin_state *st, const struct admin_request *req,
                       struct admin_response *res) {
    get_one(&services, st, req, res);
}

void admin_list_routes(struct admin_state *st, const struct admin_request *req,
                       struct admin_response *res) {
    list(&routes, st, req, res, "/routes", NULL, NULL);
}

static bool route_of_service(const struct config *c, size_t i, const void *service) {
    return c->routes[i].service == service;
}

void admin_list_service_routes(struct admin_state *st, const struct admin_request *req,
                               struct admin_response *res) {
    long s = lookup(&services, st, req, res);
    if (s < 0) return;
    char base[320];
    snprintf(base, sizeof base, "/services/%s/routes", req->params[0]);
    list(&routes, st, req, res, base, route_of_service, &cfg(st)->services[s]);
}

void admin_get_route(struct admin_state *st, const struct admin_request *req,
                     struct admin_response *res) {
    get_one(&routes, st, req, res);
}

void admin_get_route_service(struct admin_state *st, const struct admin_request *req,
                             struct admin_response *res) {
    long r = lookup(&routes, st, req, res);
    if (r < 0) return;
    res->status = 200;
    res->json = service_json(cfg(st), cfg(st)->routes[r].service);
}

void admin_list_upstreams(struct admin_state *st, const struct admin_request *req,
                          struct admin_response *res) {
    list(&upstreams, st, req, res, "/upstreams", NULL, NULL);
}

void admin_get_upstream(struct admin_state *st, const struct admin_request *req,
                        struct admin_response *res) {
    get_one(&upstreams, st, req, res);
}

void admin_list_upstream_targets(struct admin_state *st, const struct admin_request *req,
                                 struct admin_response *res) {
    long u = lookup(&upstreams, st, req, res);
    if (u < 0) return;
    struct page pg;
    if (!page_read(req, res, &pg)) return;
    const struct config *c = cfg(st);
    const struct upstream *up = &c->upstreams[u];
    json_t *all = json_array();
    for (size_t i = 0; i < up->n_targets; i++)
        json_array_append_new(all, target_json(c, up, &up->targets[i]));
    char base[320];
    snprintf(base, sizeof base, "/upstreams/%s/targets", req->params[0]);
    page_finish(res, all, &pg, base);
}

/* /schemas/{plural} serves schemas/{singular}.json from the data directory. */
void admin_get_schema(struct admin_state *st, const struct admin_request *req,
                      struct admin_response *res) {
    (void)st;
    static const char *const entities[][2] = {
        {"services", "service"},
        {"routes", "route"},
        {"upstreams", "upstream"},
        {"targets", "target"},
        {"consumers", "consumer"},
        {"plugins", "plugin"},
        {"certificates", "certificate"},
        {"snis", "sni"},
        {"ca_certificates", "ca_certificate"},
    };
    const char *file = NULL;
    for (size_t i = 0; i < sizeof entities / sizeof entities[0]; i++)
        if (strcmp(entities[i][0], req->params[0]) == 0) file = entities[i][1];
    if (!file) {
        admin_error(res, 404, "No entity named that");
        return;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/schemas/%s.json", paths_data_dir(), file);
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!doc) {
        admin_error(res, 500, "schema file unreadable");
        return;
    }
    res->status = 200;
    res->json = doc;
}
