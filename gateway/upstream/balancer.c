#include "upstream/balancer.h"

#include <stdbool.h>

#include "upstream/health.h"

static bool was_tried(int i, const int *tried, size_t n_tried) {
    for (size_t k = 0; k < n_tried; k++)
        if (tried[k] == i) return true;
    return false;
}

int balancer_pick(const struct upstream *u, int *current, const int *tried, size_t n_tried) {
    int best = -1;
    int total = 0;
    for (size_t i = 0; i < u->n_targets; i++) {
        int w = u->targets[i].weight;
        if (w <= 0 || was_tried((int)i, tried, n_tried)) continue;
        if (!health_target_up(u->targets[i].health)) continue;
        current[i] += w;
        total += w;
        if (best < 0 || current[i] > current[best]) best = (int)i;
    }
    if (best >= 0) current[best] -= total;
    return best;
}
