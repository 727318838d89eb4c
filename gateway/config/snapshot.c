#include "config/snapshot.h"

#include "config/model.h"
#include "lua/plugin_catalog.h"
#include "lua/plugin_chain.h"
#include "router/regex_set.h"
#include "tls/passthrough.h"
#include "tls/sni_map.h"
#include "tls/tls_server.h"
#include "tls/tls_upstream.h"
#include "upstream/health.h"

#include <pthread.h>
#include <stdlib.h>

#include "core/log.h"

static void build_indexes(struct snapshot *s);

/* Every route's chain for an unidentified consumer. O(routes x instances) once per snapshot,
 * nothing per request; no allocation at all without plugin instances. */
static void build_chains(struct snapshot *s) {
    const struct config *cfg = s->config;
    size_t n = cfg->n_plugin_instances;
    if (!n || !cfg->plugin_instances || !cfg->n_routes) return;
    s->chains = calloc(cfg->n_routes, sizeof *s->chains);
    const struct plugin_instance **scratch = calloc(n, sizeof *scratch);
    if (!s->chains || !scratch) abort();
    size_t total = 0;
    for (size_t r = 0; r < cfg->n_routes; r++) {
        const struct route *route = &cfg->routes[r];
        s->chains[r].n = plugin_chain_resolve(cfg->plugin_instances, n, route->id,
                                              route->service->id, NULL, scratch, n);
        total += s->chains[r].n;
    }
    s->chain_slots = calloc(total ? total : 1, sizeof *s->chain_slots);
    if (!s->chain_slots) abort();
    size_t at = 0;
    for (size_t r = 0; r < cfg->n_routes; r++) {
        struct route_chain *ch = &s->chains[r];
        const struct route *route = &cfg->routes[r];
        ch->insts = s->chain_slots + at;
        plugin_chain_resolve(cfg->plugin_instances, n, route->id, route->service->id, NULL,
                             s->chain_slots + at, ch->n);
        for (size_t i = 0; i < ch->n; i++)
            ch->phases |= cfg->plugin_defs[ch->insts[i] - cfg->plugin_instances]->phases;
        at += ch->n;
    }
    free(scratch);
}

struct snapshot *snapshot_build(struct config *cfg, int n_workers, uint64_t version,
                                struct errlist *errs) {
    /* regexes the config's predecessor compiled are taken as they are (router/regex_set.h) */
    struct router *router =
        router_build_reusing(cfg->routes, cfg->n_routes, cfg->regexes_seed, errs);
    regex_set_release(cfg->regexes_seed);
    cfg->regexes_seed = NULL;
    if (!router) {
        config_free(cfg);
        return NULL;
    }
    regex_set_release(cfg->regexes);
    cfg->regexes = regex_set_retain(router_compiled_regexes(router));
    struct tls_server *tls = NULL;
    if (cfg->weir.any_ssl_listener || cfg->weir.ssl_cert) {
        tls = tls_server_build(cfg, errs);
        if (!tls) {
            router_free(router);
            config_free(cfg);
            return NULL;
        }
    }
    bool tls_up_failed;
    struct tls_upstreams *tls_up = tls_upstream_build(cfg, errs, &tls_up_failed);
    if (tls_up_failed) {
        tls_server_release(tls);
        router_free(router);
        config_free(cfg);
        return NULL;
    }
    struct snapshot *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->tls_upstreams = tls_up;
    atomic_init(&s->refs, 1);
    s->version = version;
    s->config = cfg;
    s->router = router;
    s->tls = tls;
    s->passthrough = passthrough_routes_build(cfg);
    s->n_workers = n_workers;
    s->balancer_current = calloc(cfg->n_upstreams ? cfg->n_upstreams : 1, sizeof(int *));
    if (!s->balancer_current) abort();
    for (size_t u = 0; u < cfg->n_upstreams; u++) {
        size_t n = cfg->upstreams[u].n_targets ? cfg->upstreams[u].n_targets : 1;
        s->balancer_current[u] = calloc((size_t)n_workers * n, sizeof(int));
        if (!s->balancer_current[u]) abort();
    }
    build_chains(s);
    build_indexes(s);
    health_attach(cfg); /* targets' shared health; undone in snapshot_free() */
    return s;
}

void snapshot_retain(struct snapshot *s) {
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

static json_t *index_by(const json_t *model, enum entity_kind k, const char *field) {
    json_t *index = json_object();
    size_t i;
    json_t *e;
    json_array_foreach(model_items(model, k), i, e) {
        const char *v = json_string_value(json_object_get(e, field));
        if (v) json_object_set(index, v, e);
    }
    return index;
}

static void build_indexes(struct snapshot *s) {
    const json_t *model = s->config->model;
    if (!json_array_size(model_items(model, ENTITY_CONSUMER))) return;
    s->consumer_by_id = index_by(model, ENTITY_CONSUMER, "id");
    s->consumer_by_username = index_by(model, ENTITY_CONSUMER, "username");
    s->keyauth_by_key = index_by(model, ENTITY_KEYAUTH_CREDENTIAL, "key");
    s->jwt_by_key = index_by(model, ENTITY_JWT_SECRET, "key");
}

static void snapshot_free(struct snapshot *s) {
    json_decref(s->consumer_by_id);
    json_decref(s->consumer_by_username);
    json_decref(s->keyauth_by_key);
    json_decref(s->jwt_by_key);
    for (size_t u = 0; u < s->config->n_upstreams; u++)
        free(s->balancer_current[u]);
    free(s->balancer_current);
    free(s->chains);
    free(s->chain_slots);
    router_free(s->router);
    tls_server_release(s->tls);
    sni_map_free(s->passthrough);
    tls_upstream_free(s->tls_upstreams);
    health_detach(s->config);
    config_free(s->config);
    free(s);
}

void snapshot_release(struct snapshot *s) {
    if (!s) return;
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
    snapshot_free(s);
}

/* Snapshots whose last reference a worker dropped, waiting for the control thread. */
static struct {
    pthread_mutex_t lock;
    struct snapshot *head;
} graveyard = {PTHREAD_MUTEX_INITIALIZER, NULL};

void snapshot_release_deferred(struct snapshot *s) {
    if (!s) return;
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
    pthread_mutex_lock(&graveyard.lock);
    s->next_dead = graveyard.head;
    graveyard.head = s;
    pthread_mutex_unlock(&graveyard.lock);
}

size_t snapshot_collect(void) {
    pthread_mutex_lock(&graveyard.lock);
    struct snapshot *s = graveyard.head;
    graveyard.head = NULL;
    pthread_mutex_unlock(&graveyard.lock);
    size_t n = 0;
    while (s) {
        struct snapshot *next = s->next_dead;
        snapshot_free(s);
        s = next;
        n++;
    }
    return n;
}

int *snapshot_balancer_state(struct snapshot *s, const struct upstream *u, int worker) {
    size_t idx = (size_t)(u - s->config->upstreams);
    WEIR_BUG_ON(idx >= s->config->n_upstreams);
    size_t n = u->n_targets ? u->n_targets : 1;
    return s->balancer_current[idx] + (size_t)worker * n;
}
