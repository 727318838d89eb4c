/* admin_info: GET / (what this node is), GET /status (what it is doing) and
 * GET /config (the declarative configuration it runs). */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "admin/admin.h"
#include "core/metrics.h"
#include "core/worker.h"

void admin_get_root(struct admin_state *st, const struct admin_request *req,
                    struct admin_response *res) {
    (void)req;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    const struct weir_settings *w = &(*st->snapshot)->config->weir;
    json_t *proxy = json_array();
    for (size_t i = 0; i < w->n_proxy_listen; i++)
        json_array_append_new(
            proxy, json_sprintf("%s:%d", w->proxy_listen[i].host, w->proxy_listen[i].port));
    res->status = 200;
    res->json = json_pack("{s:s, s:s, s:s, s:s, s:{s:[], s:[]}, s:{s:o, s:i}}", "tagline",
                          "Welcome to Weir", "version", WEIR_VERSION, "node_id", st->node_id,
                          "hostname", host, "plugins", "available_on_server", "enabled_in_cluster",
                          "configuration", "proxy_listen", proxy, "workers", w->workers);
}

/* Resident set size from /proc, in bytes (0 when unavailable). */
static long long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    long long pages = 0, rss = 0;
    if (fscanf(f, "%lld %lld", &pages, &rss) != 2) rss = 0;
    fclose(f);
    return rss * sysconf(_SC_PAGESIZE);
}

void admin_get_status(struct admin_state *st, const struct admin_request *req,
                      struct admin_response *res) {
    (void)req;
    unsigned long long requests = 0;
    for (int i = 0; i < st->n_workers; i++)
        requests += atomic_load_explicit(&st->workers[i]->requests, memory_order_relaxed);
    const struct config *c = (*st->snapshot)->config;
    res->status = 200;
    res->json =
        json_pack("{s:{s:i, s:I}, s:s, s:I, s:{s:I}}", "server", "connections_active",
                  atomic_load(&weir_connections), "total_requests", (json_int_t)requests,
                  "configuration_hash", c->hash ? c->hash : "", "configuration_version",
                  (json_int_t)*st->config_version, "memory", "rss_bytes", (json_int_t)rss_bytes());
}

void admin_get_metrics(struct admin_state *st, const struct admin_request *req,
                       struct admin_response *res) {
    (void)req;
    struct metrics *tables[256];
    size_t n = 0;
    for (int i = 0; i < st->n_workers && n < sizeof tables / sizeof tables[0]; i++)
        tables[n++] = st->workers[i]->metrics;
    res->status = 200;
    res->text = metrics_render(tables, n, atomic_load(&weir_connections));
    res->text_type = "text/plain; version=0.0.4; charset=utf-8";
}

void admin_get_config(struct admin_state *st, const struct admin_request *req,
                      struct admin_response *res) {
    (void)req;
    const struct config *c = (*st->snapshot)->config;
    json_t *doc = json_deep_copy(c->source_json);
    /* The server settings carry the admin token: never echo it. */
    json_t *weir = json_object_get(doc, "weir");
    if (json_is_object(weir)) json_object_del(weir, "admin_token");
    res->status = 200;
    res->json = doc;
}
