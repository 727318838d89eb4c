#include "config/snapshot.h"

#include <stdlib.h>

#include "core/log.h"

struct snapshot *snapshot_build(struct config *cfg, int n_workers, uint64_t version,
                                struct errlist *errs) {
    struct router *router = router_build(cfg->routes, cfg->n_routes, errs);
    if (!router) {
        config_free(cfg);
        return NULL;
    }
    struct snapshot *s = calloc(1, sizeof *s);
    if (!s) abort();
    atomic_init(&s->refs, 1);
    s->version = version;
    s->config = cfg;
    s->router = router;
    s->n_workers = n_workers;
    s->balancer_current = calloc(cfg->n_upstreams ? cfg->n_upstreams : 1, sizeof(int *));
    if (!s->balancer_current) abort();
    for (size_t u = 0; u < cfg->n_upstreams; u++) {
        size_t n = cfg->upstreams[u].n_targets ? cfg->upstreams[u].n_targets : 1;
        s->balancer_current[u] = calloc((size_t)n_workers * n, sizeof(int));
        if (!s->balancer_current[u]) abort();
    }
    return s;
}

void snapshot_retain(struct snapshot *s) {
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void snapshot_release(struct snapshot *s) {
    if (!s) return;
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
    for (size_t u = 0; u < s->config->n_upstreams; u++)
        free(s->balancer_current[u]);
    free(s->balancer_current);
    router_free(s->router);
    config_free(s->config);
    free(s);
}

int *snapshot_balancer_state(struct snapshot *s, const struct upstream *u, int worker) {
    size_t idx = (size_t)(u - s->config->upstreams);
    WEIR_BUG_ON(idx >= s->config->n_upstreams);
    size_t n = u->n_targets ? u->n_targets : 1;
    return s->balancer_current[idx] + (size_t)worker * n;
}
