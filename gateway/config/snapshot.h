/* snapshot: an immutable, reference-counted view of the configuration.
 *
 * A snapshot owns a validated config, its compiled router and the per-worker
 * balancer state. The control thread builds a new snapshot off the request
 * path and hands it to each worker (worker_publish); each request retains the
 * snapshot it started with, so a reload never changes a request in flight.
 * The refcount is atomic: requests on several workers share one snapshot.
 * The last snapshot_release() frees everything; workers use
 * snapshot_release_deferred(), which leaves the freeing to the control thread. */
#ifndef WEIR_SNAPSHOT_H
#define WEIR_SNAPSHOT_H

#include <stdatomic.h>
#include <stdint.h>

#include "config/config.h"
#include "core/errlist.h"
#include "router/router.h"

struct plugin_instance;
struct tls_server;
struct sni_map;
struct tls_upstreams;

/* The plugins a route runs before a consumer is known (lua/plugin_chain.h), resolved once per
 * snapshot: instances in order, and the union of their phases (enum plugin_phase bits). */
struct route_chain {
    const struct plugin_instance **insts;
    size_t n;
    unsigned phases;
};

struct snapshot {
    atomic_int refs;
    uint64_t version;
    struct config *config;
    struct router *router;
    int n_workers;
    /* balancer_current[u][worker * n_targets + t]: smooth WRR state of
     * upstream u, one row per worker so workers never share a cache line
     * they write in the common case of few targets. */
    int **balancer_current;
    struct snapshot *next_dead; /* snapshot_release_deferred()'s list */
    /* chains[i] for config->routes[i]; NULL when the config has no plugin instances */
    struct route_chain *chains;
    const struct plugin_instance **chain_slots; /* the storage chains[].insts point into */
    /* O(1) lookups for plugins (weir.client.load_consumer / load_credential): JSON objects
     * mapping a consumer's id and username, a key-auth key and a JWT key to the model entity
     * (NULL when the model has no consumers). */
    struct json_t *consumer_by_id, *consumer_by_username, *keyauth_by_key, *jwt_by_key;
    /* TLS termination's certificates (tls/tls_server.h): built when the config has an ssl
     * listener or a default certificate, else NULL. A TLS connection takes its own reference. */
    struct tls_server *tls;
    /* Server names of tls_passthrough routes (tls/passthrough.h): name -> index in
     * config->routes; NULL when there is none. */
    struct sni_map *passthrough;
    /* Client contexts of https services (tls/tls_upstream.h), NULL when there is none. */
    struct tls_upstreams *tls_upstreams;
};

/* Takes ownership of cfg (freed on failure too). Returns a snapshot holding
 * one reference, or NULL with problems in errs. */
struct snapshot *snapshot_build(struct config *cfg, int n_workers, uint64_t version,
                                struct errlist *errs);
void snapshot_retain(struct snapshot *s);
void snapshot_release(struct snapshot *s);
/* For workers: when this drops the last reference the snapshot is not freed here but queued
 * for snapshot_collect(), so that freeing a large configuration (tens of thousands of routes,
 * milliseconds of free()) never runs on a thread that serves requests. */
void snapshot_release_deferred(struct snapshot *s);
/* Frees the queued snapshots; the control thread calls it after each publish, on a timer and at
 * exit. Returns how many were freed. */
size_t snapshot_collect(void);
/* The chain of `route` (a route of s->config), or NULL when it runs no plugin. */
static inline const struct route_chain *snapshot_route_chain(const struct snapshot *s,
                                                             const struct route *route) {
    if (!s->chains) return NULL;
    const struct route_chain *ch = &s->chains[route - s->config->routes];
    return ch->n ? ch : NULL;
}
/* Row of smooth-WRR weights for upstream `u` on worker `worker`. */
int *snapshot_balancer_state(struct snapshot *s, const struct upstream *u, int worker);

#endif
