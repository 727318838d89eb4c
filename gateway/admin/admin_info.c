/* admin_info: GET / (what this node is), GET /status (what it is doing) and
 * GET /config (the declarative configuration it runs). */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "config/model.h"
#include "lua/plugin_catalog.h"
#include "lua/plugin_chain.h"
#include "core/metrics.h"
#include "core/worker.h"
#include "upstream/health.h"

#include <arpa/inet.h>
#include <netinet/in.h>

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
    /* Kong's shape: available_on_server maps each enabled plugin to its version and priority;
     * enabled_in_cluster lists the plugins enabled instances use. */
    const struct plugin_catalog *pc = (*st->snapshot)->config->plugins;
    json_t *available = json_object();
    for (size_t i = 0; pc && i < pc->n_defs; i++)
        json_object_set_new(available, pc->defs[i].name,
                            json_pack("{s:s, s:f}", "version", pc->defs[i].version, "priority",
                                      pc->defs[i].priority));
    res->status = 200;
    const struct config *cfg = (*st->snapshot)->config;
    json_t *used = json_array(); /* sorted, each name once */
    for (size_t i = 0; pc && i < pc->n_defs; i++)
        for (size_t j = 0; j < cfg->n_plugin_instances; j++)
            if (cfg->plugin_instances[j].enabled &&
                !strcmp(cfg->plugin_instances[j].name, pc->defs[i].name)) {
                json_array_append_new(used, json_string(pc->defs[i].name));
                break;
            }
    res->json =
        json_pack("{s:s, s:s, s:s, s:s, s:{s:o, s:o}, s:{s:o, s:i}}", "tagline", "Welcome to Weir",
                  "version", WEIR_VERSION, "node_id", st->node_id, "hostname", host, "plugins",
                  "available_on_server", available, "enabled_in_cluster", used, "configuration",
                  "proxy_listen", proxy, "workers", w->workers);
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
    struct config *c = (*st->snapshot)->config;
    res->status = 200;
    res->json =
        json_pack("{s:{s:i, s:I}, s:s, s:I, s:{s:I}}", "server", "connections_active",
                  atomic_load(&weir_connections), "total_requests", (json_int_t)requests,
                  "configuration_hash", config_hash(c), "configuration_version",
                  (json_int_t)*st->config_version, "memory", "rss_bytes", (json_int_t)rss_bytes());
}

/* "ip:port", "[ip6]:port" */
static void format_address(const struct sockaddr_storage *ss, char *out, size_t len) {
    char ip[INET6_ADDRSTRLEN] = "";
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        snprintf(out, len, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        snprintf(out, len, "%s:%u", ip, ntohs(a->sin_port));
    } else {
        snprintf(out, len, "%s", "");
    }
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
    /* Kong's upstream target health gauge, every target of the running configuration */
    const struct config *c = (*st->snapshot)->config;
    size_t n_targets = 0;
    for (size_t u = 0; u < c->n_upstreams; u++)
        n_targets += c->upstreams[u].n_targets;
    struct metrics_target_health *h = calloc(n_targets ? n_targets : 1, sizeof *h);
    char(*addr)[INET6_ADDRSTRLEN + 8] = calloc(n_targets ? n_targets : 1, sizeof *addr);
    if (!h || !addr) abort();
    size_t k = 0;
    for (size_t u = 0; u < c->n_upstreams; u++) {
        const struct upstream *up = &c->upstreams[u];
        for (size_t t = 0; t < up->n_targets; t++, k++) {
            const struct upstream_target *tg = &up->targets[t];
            h[k].upstream = up->name;
            h[k].target = tg->target;
            h[k].address = addr[k];
            format_address(&tg->addr, addr[k], sizeof addr[k]);
            h[k].state = !tg->health                    ? "healthchecks_off"
                         : health_target_up(tg->health) ? "healthy"
                                                        : "unhealthy";
        }
    }
    res->text = metrics_render_target_health(res->text, h, n_targets);
    free(h);
    free(addr);
    res->text_type = "text/plain; version=0.0.4; charset=utf-8";
}

/* The entities as a declarative document (server settings are the config file's: they hold the
 * admin token and listeners, and change only with a reload). Round-trips through POST /config. */
void admin_get_config(struct admin_state *st, const struct admin_request *req,
                      struct admin_response *res) {
    (void)req;
    res->status = 200;
    res->json = model_export((*st->snapshot)->config->model);
}

/* Replaces every entity at once: all valid, or nothing changes. Also the only write in DB-less
 * mode (no weir.store), as in Kong; there the result lasts until the next reload or restart. */
void admin_post_config(struct admin_state *st, const struct admin_request *req,
                       struct admin_response *res) {
    json_t *doc = admin_read_json(req, res);
    if (!doc) return;
    struct errlist errs;
    errlist_init(&errs);
    if (json_object_get(doc, "weir"))
        errlist_addf(&errs, "weir",
                     "server settings cannot change through the admin API; edit the config file "
                     "and reload (SIGHUP)");
    json_t *model = errs.n ? NULL : config_model_from_doc(doc, (long long)time(NULL), NULL, &errs);
    json_decref(doc);
    enum commit_result r = model ? st->commit(st->commit_ctx, model, &errs) : COMMIT_INVALID;
    if (r == COMMIT_OK) {
        struct config *c = (*st->snapshot)->config;
        json_t *counts = json_object();
        for (int k = 0; k < ENTITY_KINDS; k++)
            json_object_set_new(counts, entity_kinds[k].plural,
                                json_integer((json_int_t)json_array_size(
                                    model_items(c->model, (enum entity_kind)k))));
        res->status = 201;
        res->json =
            json_pack("{s:I, s:s, s:o}", "configuration_version", (json_int_t)*st->config_version,
                      "configuration_hash", config_hash(c), "entities", counts);
    } else if (r == COMMIT_FAILED) {
        res->status = 500;
        res->json = json_pack("{s:s, s:s}", "message", "the configuration could not be saved",
                              "reason", errs.n ? errs.items[0] : "");
    } else {
        admin_schema_violation(res, &errs, NULL);
    }
    json_decref(model);
    errlist_free(&errs);
}
