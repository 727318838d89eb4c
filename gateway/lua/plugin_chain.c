#include "lua/plugin_chain.h"

#include <stdlib.h>
#include <string.h>

/* A scope field applies when it is unset or names the request's entity. */
static bool applies(const char *scope, const char *actual) {
    return !scope || (actual && !strcmp(scope, actual));
}

int plugin_scope_rank(const struct plugin_instance *p, const char *route_id, const char *service_id,
                      const char *consumer_id) {
    if (!applies(p->route_id, route_id) || !applies(p->service_id, service_id) ||
        !applies(p->consumer_id, consumer_id))
        return 0;
    bool r = p->route_id, s = p->service_id, c = p->consumer_id;
    /* Kong's order, most specific first */
    if (r && s && c) return 8;
    if (r && c) return 7;
    if (s && c) return 6;
    if (r && s) return 5;
    if (c) return 4;
    if (r) return 3;
    if (s) return 2;
    return 1;
}

static int chain_cmp(const void *a, const void *b) {
    const struct plugin_instance *x = *(const struct plugin_instance *const *)a;
    const struct plugin_instance *y = *(const struct plugin_instance *const *)b;
    if (x->priority != y->priority) return x->priority > y->priority ? -1 : 1;
    return strcmp(x->name, y->name);
}

size_t plugin_chain_resolve(const struct plugin_instance *insts, size_t n, const char *route_id,
                            const char *service_id, const char *consumer_id,
                            const struct plugin_instance **out, size_t cap) {
    size_t len = 0;
    int ranks[64], *rank = n <= 64 ? ranks : malloc(n * sizeof *rank);
    if (!rank) abort();
    for (size_t i = 0; i < n; i++) {
        const struct plugin_instance *p = &insts[i];
        int r = p->enabled ? plugin_scope_rank(p, route_id, service_id, consumer_id) : 0;
        if (!r) continue;
        size_t j = 0;
        while (j < len && strcmp(out[j]->name, p->name) != 0)
            j++;
        if (j < len) { /* the same plugin already chosen: keep the more specific */
            if (r > rank[j]) {
                out[j] = p;
                rank[j] = r;
            }
        } else if (len < cap) {
            out[len] = p;
            rank[len++] = r;
        }
    }
    if (rank != ranks) free(rank);
    if (len > 1) qsort(out, len, sizeof *out, chain_cmp);
    return len;
}
