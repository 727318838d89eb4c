/* admin_debug: GET /debug/match?method=GET&host=api.example.com&path=/api/orders/7
 * and GET /debug/match?sni=db.example.com (the tls_passthrough route a server name selects)
 *
 * Explains what the router would do with a request, through the very code
 * the proxy runs (path_normalize, router_match, path_join): the matched
 * route and service and the upstream URL, or, when nothing matches, the
 * routes whose path matched and the condition each one failed, and the plugins the
 * request would run in order (from the snapshot's resolved chain, the one the proxy uses),
 * plus the consumer-scoped ones that join once their consumer is identified. */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin/admin.h"
#include "http/path.h"
#include "lua/plugin_catalog.h"
#include "lua/plugin_chain.h"
#include "router/router.h"
#include "tls/passthrough.h"

#define NEAR_MISSES_MAX 20

struct debug_request {
    const char *method;
    const char *host;        /* without port, may be NULL */
    const char *header_name; /* one optional "name:value" header */
    const char *header_value;
};

static const char *scope_name(const struct plugin_instance *p) {
    static const char *const names[] = {"",
                                        "global",
                                        "service",
                                        "route",
                                        "consumer",
                                        "route+service",
                                        "service+consumer",
                                        "route+consumer",
                                        "route+service+consumer"};
    int rank = plugin_scope_rank(p, p->route_id, p->service_id, p->consumer_id);
    return names[rank];
}

static json_t *instance_json(const struct config *cfg, const struct plugin_instance *p) {
    const struct plugin_def *def = cfg->plugin_defs[p - cfg->plugin_instances];
    json_t *phases = json_array();
    static const char *const names[] = {"rewrite", "access", "response", "log"};
    for (unsigned i = 0; i < 4; i++)
        if (def->phases & (1u << i)) json_array_append_new(phases, json_string(names[i]));
    return json_pack("{s:s, s:s, s:f, s:s, s:s?, s:o}", "name", p->name, "id", p->id, "priority",
                     p->priority, "scope", scope_name(p), "consumer", p->consumer_id, "phases",
                     phases);
}

/* The plugins a request on route r runs, in order, before a consumer is identified. */
static json_t *chain_json(const struct snapshot *snap, const struct route *r) {
    json_t *out = json_array();
    const struct route_chain *ch = snapshot_route_chain(snap, r);
    for (size_t i = 0; ch && i < ch->n; i++)
        json_array_append_new(out, instance_json(snap->config, ch->insts[i]));
    return out;
}

/* Consumer-scoped instances that apply on route r once their consumer is identified. */
static json_t *consumer_plugins_json(const struct snapshot *snap, const struct route *r) {
    const struct config *cfg = snap->config;
    json_t *out = json_array();
    for (size_t i = 0; i < cfg->n_plugin_instances; i++) {
        const struct plugin_instance *p = &cfg->plugin_instances[i];
        if (p->enabled && p->consumer_id &&
            plugin_scope_rank(p, r->id, r->service->id, p->consumer_id))
            json_array_append_new(out, instance_json(cfg, p));
    }
    return out;
}

static const char *debug_get_header(void *ctx, const char *name, size_t index, size_t *len) {
    const struct debug_request *d = ctx;
    if (index > 0 || !d->header_name || strcasecmp(d->header_name, name) != 0) return NULL;
    *len = strlen(d->header_value);
    return d->header_value;
}

static json_t *string_array(const char *const *items, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(items[i]));
    return a;
}

static json_t *route_json(const struct route *r) {
    return json_pack("{s:s, s:s?, s:o, s:o, s:o, s:b, s:b, s:i}", "id", r->id, "name", r->name,
                     "paths", string_array(r->paths, r->n_paths), "hosts",
                     string_array(r->hosts, r->n_hosts), "methods",
                     string_array(r->methods, r->n_methods), "strip_path", r->strip_path,
                     "preserve_host", r->preserve_host, "regex_priority", r->regex_priority);
}

static json_t *service_json(const struct service *s) {
    return json_pack("{s:s, s:s?, s:s, s:s, s:i, s:s?, s:s?}", "id", s->id, "name", s->name,
                     "protocol", s->protocol, "host", s->host, "port", s->port, "path", s->path,
                     "upstream", s->upstream ? s->upstream->name : NULL);
}

static bool host_matches(const struct route *r, const char *host) {
    if (r->n_hosts == 0) return true;
    if (!host) return false;
    size_t hl = strlen(host);
    for (size_t i = 0; i < r->n_hosts; i++) {
        const char *h = r->hosts[i];
        if (h[0] == '*' && h[1] == '.') {
            size_t sl = strlen(h + 1); /* ".example.com" */
            if (hl > sl && strcasecmp(host + hl - sl, h + 1) == 0) return true;
        } else if (strcasecmp(h, host) == 0) {
            return true;
        }
    }
    return false;
}

/* Why a route whose path matches did not take the request, or NULL. */
static const char *why_not(const struct route *r, const struct debug_request *d, char *buf,
                           size_t cap) {
    if (!host_matches(r, d->host)) {
        snprintf(buf, cap, "hosts: %s is not one of the route's hosts",
                 d->host ? d->host : "(no host)");
        return buf;
    }
    if (r->n_methods) {
        bool ok = false;
        for (size_t i = 0; i < r->n_methods; i++)
            ok = ok || strcmp(r->methods[i], d->method) == 0;
        if (!ok) {
            snprintf(buf, cap, "methods: %s is not one of the route's methods", d->method);
            return buf;
        }
    }
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct route_header *h = &r->headers[i];
        bool ok = false;
        if (d->header_name && strcasecmp(d->header_name, h->name) == 0)
            for (size_t j = 0; j < h->n_values; j++)
                ok = ok || strcasecmp(h->values[j], d->header_value) == 0;
        if (!ok) {
            snprintf(buf, cap, "headers: requires %s with one of its values", h->name);
            return buf;
        }
    }
    if (!(r->protocols & ROUTE_PROTO_HTTP)) {
        snprintf(buf, cap, "protocols: http is not allowed (a client would get %d)",
                 r->https_redirect_status_code);
        return buf;
    }
    return NULL;
}

/* Routes whose (prefix) path matches but which did not match the request. */
static json_t *near_misses(const struct config *c, const struct debug_request *d,
                           const char *path) {
    json_t *out = json_array();
    for (size_t i = 0; i < c->n_routes && json_array_size(out) < NEAR_MISSES_MAX; i++) {
        const struct route *r = &c->routes[i];
        bool path_ok = r->n_paths == 0;
        for (size_t j = 0; j < r->n_paths && !path_ok; j++)
            path_ok = r->paths[j][0] != '~' && strncmp(path, r->paths[j], strlen(r->paths[j])) == 0;
        if (!path_ok) continue;
        char buf[256];
        const char *why = why_not(r, d, buf, sizeof buf);
        if (why)
            json_array_append_new(
                out, json_pack("{s:s, s:s}", "route", r->name ? r->name : r->id, "reason", why));
    }
    return out;
}

static char *upstream_url(const struct route_match *m, const char *path, size_t path_len,
                          const char *query) {
    const struct route *r = m->route;
    const struct service *s = r->service;
    size_t stripped = r->strip_path ? m->matched_len : 0;
    if (stripped > path_len) stripped = path_len;
    size_t cap = path_len + (s->path ? strlen(s->path) : 0) + 3;
    char *joined = malloc(cap);
    if (!joined) abort();
    if (path_join(s->path, path + stripped, path_len - stripped, joined, cap) < 0) joined[0] = 0;
    char port[16] = "";
    if (s->port != 80) snprintf(port, sizeof port, ":%d", s->port);
    size_t n = strlen(s->protocol) + strlen(s->host) + strlen(port) + strlen(joined) +
               (query ? strlen(query) + 1 : 0) + 8;
    char *url = malloc(n);
    if (!url) abort();
    snprintf(url, n, "%s://%s%s%s%s%s", s->protocol, s->host, port, joined, query ? "?" : "",
             query ? query : "");
    free(joined);
    return url;
}

/* ?sni=: the route tls/passthrough.c would pick, through the same lookup. */
static void debug_match_sni(struct admin_state *st, const char *sni, struct admin_response *res) {
    const struct snapshot *snap = *st->snapshot;
    const struct route *r =
        passthrough_route_for(snap->config, snap->passthrough, sni, strlen(sni));
    res->status = 200;
    if (!r) {
        res->json = json_pack("{s:b, s:s, s:s}", "matched", 0, "sni", sni, "message",
                              "no tls_passthrough route has this server name (the connection "
                              "would be closed)");
        return;
    }
    res->json = json_pack("{s:b, s:s, s:{s:s, s:s?, s:o}, s:o}", "matched", 1, "sni", sni, "route",
                          "id", r->id, "name", r->name, "snis", string_array(r->snis, r->n_snis),
                          "service", service_json(r->service));
}

void admin_get_debug_match(struct admin_state *st, const struct admin_request *req,
                           struct admin_response *res) {
    char *sni = admin_query_param(req, "sni");
    if (sni) {
        debug_match_sni(st, sni, res);
        free(sni);
        return;
    }
    char *method = admin_query_param(req, "method");
    char *host = admin_query_param(req, "host");
    char *target = admin_query_param(req, "path");
    char *header = admin_query_param(req, "header");
    if (!target || target[0] != '/') {
        admin_error(res, 400, "path: required, and must start with \"/\" (or give sni)");
        goto out;
    }
    struct debug_request d = {.method = method && *method ? method : "GET"};
    if (host) {
        char *colon = strrchr(host, ':');
        if (colon && !strchr(host, ']')) *colon = '\0'; /* the port plays no part */
        d.host = host;
    }
    if (header) {
        char *colon = strchr(header, ':');
        if (!colon) {
            admin_error(res, 400, "header: expected name:value");
            goto out;
        }
        *colon = '\0';
        d.header_name = header;
        d.header_value = colon + 1;
        while (*d.header_value == ' ')
            d.header_value++;
    }
    char *query = strchr(target, '?');
    if (query) *query++ = '\0';
    size_t len = strlen(target), norm_len;
    char *norm = malloc(len + 1);
    if (!norm) abort();
    if (path_normalize(target, len, norm, &norm_len) != 0) {
        free(norm);
        admin_error(res, 400,
                    "path: a client would get 400 for this path (invalid escape, "
                    "byte outside RFC 3986, or .. above the root)");
        goto out;
    }
    const struct snapshot *snap = *st->snapshot;
    struct route_request rr = {
        .method = d.method,
        .method_len = strlen(d.method),
        .host = d.host,
        .host_len = d.host ? strlen(d.host) : 0,
        .path = norm,
        .path_len = norm_len,
        .get_header = debug_get_header,
        .ctx = &d,
    };
    struct route_match m;
    res->status = 200;
    if (router_match(snap->router, &rr, &m)) {
        char *url = upstream_url(&m, norm, norm_len, query);
        const struct route *r = m.route;
        char buf[256];
        const char *refused = why_not(r, &d, buf, sizeof buf); /* only protocols can remain */
        res->json = json_pack("{s:b, s:s, s:o, s:s, s:o, s:s, s:s, s:o, s:o, s:s?}", "matched", 1,
                              "normalized_path", norm, "route", route_json(r), "matched_path",
                              r->n_paths ? r->paths[m.path_index] : "", "service",
                              service_json(r->service), "upstream_url", url, "host_header",
                              r->preserve_host && d.host ? d.host : r->service->host_header,
                              "plugins", chain_json(snap, r), "consumer_plugins",
                              consumer_plugins_json(snap, r), "refused", refused);
        free(url);
    } else {
        res->json = json_pack("{s:b, s:s, s:s, s:o}", "matched", 0, "normalized_path", norm,
                              "message", "no Route matched with those values", "near_misses",
                              near_misses(snap->config, &d, norm));
    }
    free(norm);
out:
    free(method);
    free(host);
    free(target);
    free(header);
}
