#include "upstream/health.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/model.h"
#include "core/log.h"
#include "upstream/health_checker.h"
#include "upstream/health_config.h"
#include "upstream/health_internal.h"

struct health_registry health_registry = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, 0, NULL, NULL};

static char *xstrdup(const char *s) {
    char *d = strdup(s);
    if (!d) abort();
    return d;
}

/* The pointer a registry index holds under `key`, or NULL. */
static void *index_get(json_t **index, const char *key) {
    if (!*index && !(*index = json_object())) abort();
    json_t *v = json_object_get(*index, key);
    return v ? (void *)(intptr_t)json_integer_value(v) : NULL;
}

static void index_put(json_t *index, const char *key, void *p) {
    if (json_object_set_new(index, key, json_integer((json_int_t)(intptr_t)p)) != 0) abort();
}

static void index_del(json_t **index, const char *key) {
    json_object_del(*index, key);
    if (json_object_size(*index) == 0) { /* nothing left: no memory kept */
        json_decref(*index);
        *index = NULL;
    }
}

static struct health_group *group_get(const char *id) {
    struct health_group *g = index_get(&health_registry.group_index, id);
    if (g) {
        g->refs++;
        return g;
    }
    g = calloc(1, sizeof *g);
    if (!g) abort();
    g->id = xstrdup(id);
    g->refs = 1;
    g->next = health_registry.groups;
    if (g->next) g->next->prev = g;
    health_registry.groups = g;
    index_put(health_registry.group_index, id, g);
    return g;
}

static void group_release(struct health_group *g) {
    if (--g->refs > 0) return;
    if (g->prev)
        g->prev->next = g->next;
    else
        health_registry.groups = g->next;
    if (g->next) g->next->prev = g->prev;
    index_del(&health_registry.group_index, g->id);
    free(g->id);
    free(g);
}

static struct health_target *entry_get(const char *upstream_id, const char *target) {
    size_t n = strlen(upstream_id) + 1 + strlen(target) + 1;
    char *key = malloc(n);
    if (!key) abort();
    snprintf(key, n, "%s\n%s", upstream_id, target);
    struct health_target *h = index_get(&health_registry.entry_index, key);
    if (h) {
        free(key);
        return h;
    }
    h = calloc(1, sizeof *h);
    if (!h) abort();
    atomic_init(&h->state, health_state_of(true)); /* Kong: targets start healthy */
    h->key = key;
    h->group = group_get(upstream_id);
    h->next = health_registry.head;
    if (h->next) h->next->prev = h;
    health_registry.head = h;
    health_registry.n_entries++;
    index_put(health_registry.entry_index, key, h);
    return h;
}

void health_entry_release_locked(struct health_target *h) {
    if (--h->refs > 0) return;
    if (h->prev)
        h->prev->next = h->next;
    else
        health_registry.head = h->next;
    if (h->next) h->next->prev = h->prev;
    health_registry.n_entries--;
    index_del(&health_registry.entry_index, h->key);
    group_release(h->group);
    free(h->key);
    free(h);
}

static void binding_free(struct health_binding *b) {
    health_config_release(b->cfg);
    free(b->upstream);
    free(b->target);
    free(b->host);
    free(b);
}

void health_attach(struct config *c) {
    json_t *ups = model_items(c->model, ENTITY_UPSTREAM);
    bool active = false;
    pthread_mutex_lock(&health_registry.lock);
    for (size_t i = 0; i < c->n_upstreams; i++) {
        struct upstream *u = &c->upstreams[i];
        json_t *e = json_array_get(ups, i);
        WEIR_BUG_ON(!e || strcmp(json_string_value(json_object_get(e, "id")), u->id));
        u->health = health_config_parse(json_object_get(e, "healthchecks"));
        if (!u->health) continue;
        active |= u->health->active_on;
        for (size_t t = 0; t < u->n_targets; t++) {
            struct upstream_target *tg = &u->targets[t];
            struct health_target *h = entry_get(u->id, tg->target);
            struct health_binding *b = calloc(1, sizeof *b);
            if (!b) abort();
            b->owner = c;
            health_config_retain(u->health);
            b->cfg = u->health;
            b->upstream = xstrdup(u->name);
            b->target = xstrdup(tg->target);
            b->host = xstrdup(tg->host);
            b->port = tg->port;
            memcpy(&b->addr, &tg->addr, sizeof b->addr);
            b->addrlen = tg->addrlen;
            b->next = h->bindings;
            h->bindings = b;
            h->refs++;
            tg->health = h;
        }
    }
    pthread_mutex_unlock(&health_registry.lock);
    if (active) health_checker_wake();
}

void health_detach(struct config *c) {
    pthread_mutex_lock(&health_registry.lock);
    for (size_t i = 0; i < c->n_upstreams; i++) {
        struct upstream *u = &c->upstreams[i];
        if (!u->health) continue;
        for (size_t t = 0; t < u->n_targets; t++) {
            struct health_target *h = u->targets[t].health;
            if (!h) continue;
            for (struct health_binding **p = &h->bindings; *p; p = &(*p)->next)
                if ((*p)->owner == c) {
                    struct health_binding *b = *p;
                    *p = b->next;
                    binding_free(b);
                    break;
                }
            u->targets[t].health = NULL;
            health_entry_release_locked(h);
        }
        health_config_release(u->health);
        u->health = NULL;
    }
    pthread_mutex_unlock(&health_registry.lock);
}

bool health_record(struct health_target *h, enum health_event ev, unsigned threshold,
                   const char *upstream, const char *target) {
    uint64_t s = atomic_load_explicit(&h->state, memory_order_relaxed);
    for (;;) {
        uint64_t n = health_state_next(s, ev, threshold);
        if (n == s) return false;
        if (atomic_compare_exchange_weak_explicit(&h->state, &s, n, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            if (health_state_healthy(n) == health_state_healthy(s)) return false;
            if (health_state_healthy(n))
                log_warn("upstream %s: target %s is healthy again (%u successes)", upstream, target,
                         threshold);
            else
                log_warn("upstream %s: target %s is unhealthy (%u %s%s)", upstream, target,
                         threshold, health_event_name(ev), threshold == 1 ? "" : "s");
            return true;
        }
    }
}

void health_set(struct health_target *h, bool healthy) {
    atomic_store_explicit(&h->state, health_state_of(healthy), memory_order_relaxed);
}

void health_passive_event(const struct upstream *u, const struct upstream_target *t,
                          enum health_event ev) {
    if (!t->health) return;
    health_record(t->health, ev, u->health->passive.thresholds.of[ev], u->name, t->target);
}

void health_passive_status(const struct upstream *u, const struct upstream_target *t, int status) {
    if (!t->health) return;
    const struct health_passive *p = &u->health->passive;
    if (p->tcp) return;
    enum health_event ev;
    if (health_statuses_has(&p->healthy_statuses, status))
        ev = HEALTH_SUCCESS;
    else if (health_statuses_has(&p->unhealthy_statuses, status))
        ev = HEALTH_HTTP_FAILURE;
    else
        return;
    health_record(t->health, ev, p->thresholds.of[ev], u->name, t->target);
}

const char *health_target_state(const struct upstream *u, const struct upstream_target *t) {
    (void)u;
    if (!t->health) return "HEALTHCHECKS_OFF";
    return health_target_up(t->health) ? "HEALTHY" : "UNHEALTHY";
}
