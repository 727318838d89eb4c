/* health: the health of upstream targets, shared by every worker and kept across reloads.
 *
 * One entry per (upstream id, target "host:port") lives in a process-wide registry for as long
 * as a configuration in use names that target with checks on, so that an admin change or a
 * reload that keeps a target keeps its health (Kong keys its health checkers the same way). An
 * entry holds the target's health word (upstream/health_state.h), which workers read and update
 * with atomics only: the balancer loads it to skip an unhealthy target, passive checks update it
 * with a compare-and-swap when a proxied attempt fails (and, once failures were counted, when
 * one succeeds). Nothing on the request path takes a lock; with checks off a target has no
 * entry (t->health == NULL) and the request path only tests that pointer.
 *
 * The control thread attaches a snapshot's configuration when it builds it and detaches it when
 * the snapshot is freed (config/snapshot.c): attaching parses each upstream's healthchecks
 * (upstream/health_config.h), sets u->health and each target's t->health, and wakes the active
 * checker (upstream/health_checker.h) when an interval is set. While two configurations share an
 * entry, the newest one's settings drive its active probes. */
#ifndef WEIR_HEALTH_H
#define WEIR_HEALTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "upstream/health_state.h"

struct config;
struct upstream;
struct upstream_target;
struct health_binding;
struct health_group;

struct health_target {
    _Atomic uint64_t state; /* the health word: any thread, atomics only */
    /* The rest belongs to the registry and its checker, under the registry's lock. */
    char *key;                       /* "upstream id\nhost:port" */
    int refs;                        /* bindings + probes in flight */
    struct health_binding *bindings; /* one per attached configuration, newest first */
    struct health_group *group;      /* the entries of one upstream id (probe concurrency) */
    long long next_probe_ms;         /* monotonic; 0: not scheduled yet */
    bool probing;
    struct health_target *prev, *next;
};

/* Control thread. Parses every upstream's healthchecks of `c` and links its targets to their
 * entries (creating them healthy). Call once per configuration, before any worker sees it. */
void health_attach(struct config *c);
/* Control thread (or whoever frees the configuration). Undoes health_attach(); entries no
 * configuration names any more are freed (after their probe in flight, if any). */
void health_detach(struct config *c);

/* Any thread: whether the balancer may pick t (a target without checks always may). */
static inline bool health_target_up(const struct health_target *h) {
    return !h || health_state_healthy(atomic_load_explicit(&h->state, memory_order_relaxed));
}

/* Worker thread: a TCP failure or a timeout of one proxied attempt to target `t` of upstream
 * `u` (passive checks). No-op when t has no entry. */
void health_passive_event(const struct upstream *u, const struct upstream_target *t,
                          enum health_event ev);
/* Worker thread: the upstream's final response status for an attempt to t: counted as a
 * success, an HTTP failure, or not at all, by the passive http_statuses lists. */
void health_passive_status(const struct upstream *u, const struct upstream_target *t, int status);

/* Any thread: records ev for the entry, counting it against `threshold`; logs a change of
 * health naming `upstream` and `target`. Returns true when the health changed. */
bool health_record(struct health_target *h, enum health_event ev, unsigned threshold,
                   const char *upstream, const char *target);
/* Admin (Kong's POST /upstreams/{u}/targets/{t}/healthy | unhealthy): sets the health and clears
 * the counters. */
void health_set(struct health_target *h, bool healthy);

/* "HEALTHCHECKS_OFF", "HEALTHY" or "UNHEALTHY": Kong's health of target t of u. */
const char *health_target_state(const struct upstream *u, const struct upstream_target *t);

#endif
