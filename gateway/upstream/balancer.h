/* balancer: picks an upstream target (smooth weighted round-robin).
 *
 * nginx's algorithm: each pick adds every eligible target's weight to its
 * current weight, takes the target with the highest current weight and
 * subtracts the total from it. Over a cycle each target is picked in
 * proportion to its weight, interleaved (5,1,1 gives a a b a c a a, not
 * a a a a a b c). The `current` array belongs to one worker (one per
 * snapshot per upstream), so picking takes no lock. */
#ifndef WEIR_BALANCER_H
#define WEIR_BALANCER_H

#include <stddef.h>

#include "config/config.h"

/* Returns the index of the chosen target, skipping weight-0 targets, unhealthy ones
 * (upstream/health.h: one relaxed atomic load per target with checks on), and the
 * `n_tried` indexes in `tried` (targets that already failed for this
 * request), or -1 when none is left. `current` holds u->n_targets ints. */
int balancer_pick(const struct upstream *u, int *current, const int *tried, size_t n_tried);

#endif
