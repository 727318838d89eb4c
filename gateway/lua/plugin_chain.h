/* plugin_chain: which plugin instances run for a request, and in which order.
 *
 * Instances are scoped to any combination of a route, a service and a consumer, or to none
 * (global). For one request, each plugin name runs at most once: the enabled instance whose scope
 * is the most specific of those that apply, by Kong's precedence:
 *
 *   route+service+consumer > route+consumer > service+consumer > route+service >
 *   consumer > route > service > global
 *
 * A disabled instance is not a candidate (it does not hide a less specific enabled one, as in
 * Kong, which never loads disabled instances). Before a consumer is identified (consumer NULL),
 * consumer-scoped instances are not candidates; the runtime resolves again once an access-phase
 * plugin has authenticated one. The chain is ordered by PRIORITY, highest first, ties by name.
 * Pure: no allocation beyond what the caller passes, any thread. The runtime resolves once per
 * snapshot and route and caches the result, never per request. */
#ifndef WEIR_PLUGIN_CHAIN_H
#define WEIR_PLUGIN_CHAIN_H

#include <stdbool.h>
#include <stddef.h>

struct plugin_instance {
    const char *id;
    const char *name;
    const char *route_id;    /* NULL: any route */
    const char *service_id;  /* NULL: any service */
    const char *consumer_id; /* NULL: any consumer */
    bool enabled;
    double priority;  /* the plugin's PRIORITY (from its handler) */
    const void *data; /* the runtime's (the instance's compiled config) */
};

/* How specific an instance's scope is: 8 (route+service+consumer) down to 1 (global), or 0 when
 * it does not apply to (route, service, consumer). */
int plugin_scope_rank(const struct plugin_instance *p, const char *route_id, const char *service_id,
                      const char *consumer_id);

/* Writes the chain for (route, service, consumer) into out (at most cap entries; `cap` >= n is
 * always enough) and returns its length. */
size_t plugin_chain_resolve(const struct plugin_instance *insts, size_t n, const char *route_id,
                            const char *service_id, const char *consumer_id,
                            const struct plugin_instance **out, size_t cap);

#endif
