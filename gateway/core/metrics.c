#include "core/metrics.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double metrics_bucket_bounds_ms[METRICS_BUCKETS] = {1,   2.5, 5,   10,   25,   50,
                                                          100, 250, 500, 1000, 2500, 10000};

struct metrics *metrics_new(void) {
    struct metrics *m = calloc(1, sizeof *m);
    if (!m) abort();
    return m;
}

void metrics_free(struct metrics *m) {
    free(m);
}

static uint64_t hash_key(const char *route, const char *service, int status) {
    uint64_t h = 1469598103934665603ull;
    for (const char *p = route; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (const char *p = service; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return (h ^ (uint64_t)status) * 1099511628211ull;
}

static void add(atomic_uint_fast64_t *v, uint64_t n) {
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static struct metrics_slot *find_slot(struct metrics *m, const char *route, const char *service,
                                      int status) {
    uint64_t h = hash_key(route, service, status);
    for (size_t probe = 0; probe < METRICS_SLOTS; probe++) {
        struct metrics_slot *s = &m->slots[(h + probe) % METRICS_SLOTS];
        if (atomic_load_explicit(&s->state, memory_order_relaxed) == 0) {
            /* Claim it: the key is written before it is published. */
            snprintf(s->route, sizeof s->route, "%s", route);
            snprintf(s->service, sizeof s->service, "%s", service);
            s->status = status;
            atomic_store_explicit(&s->state, 1, memory_order_release);
            return s;
        }
        if (s->status == status && strncmp(s->route, route, sizeof s->route - 1) == 0 &&
            strncmp(s->service, service, sizeof s->service - 1) == 0)
            return s;
    }
    return NULL;
}

void metrics_record(struct metrics *m, const char *route, const char *service, int status,
                    double latency_ms) {
    struct metrics_slot *s = find_slot(m, route ? route : "", service ? service : "", status);
    if (!s) {
        s = &m->slots[METRICS_SLOTS];
        if (atomic_load_explicit(&s->state, memory_order_relaxed) == 0) {
            s->status = 0;
            atomic_store_explicit(&s->state, 1, memory_order_release);
        }
    }
    add(&s->requests, 1);
    int b = 0;
    while (b < METRICS_BUCKETS && latency_ms > metrics_bucket_bounds_ms[b])
        b++;
    if (b < METRICS_BUCKETS) add(&s->buckets[b], 1);
    add(&s->latency_us_sum, latency_ms > 0 ? (uint64_t)(latency_ms * 1000.0) : 0);
}

/* ---- rendering (control thread) ---------------------------------------- */

struct text {
    char *data;
    size_t len, cap;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n =
            vsnprintf(t->data ? t->data + t->len : NULL, t->data ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) abort();
        if (t->data && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 8192;
        while (cap < t->len + (size_t)n + 1)
            cap *= 2;
        t->data = realloc(t->data, cap);
        if (!t->data) abort();
        t->cap = cap;
    }
}

/* Prometheus label values escape backslash, double quote and newline. */
static void escape_label(const char *in, char *out, size_t cap) {
    size_t o = 0;
    for (const char *p = in; *p && o + 3 < cap; p++) {
        if (*p == '\\' || *p == '"')
            out[o++] = '\\', out[o++] = *p;
        else if (*p == '\n')
            out[o++] = '\\', out[o++] = 'n';
        else
            out[o++] = *p;
    }
    out[o] = '\0';
}

/* One aggregated series: the same key summed over workers. */
struct series {
    const struct metrics_slot *key;
    uint64_t requests, buckets[METRICS_BUCKETS], latency_us_sum;
};

char *metrics_render(struct metrics *const *tables, size_t n, int connections) {
    size_t cap = n * (METRICS_SLOTS + 1), count = 0;
    struct series *all = calloc(cap ? cap : 1, sizeof *all);
    if (!all) abort();
    for (size_t w = 0; w < n; w++) {
        for (size_t i = 0; i <= METRICS_SLOTS; i++) {
            const struct metrics_slot *s = &tables[w]->slots[i];
            if (atomic_load_explicit(&s->state, memory_order_acquire) != 1) continue;
            struct series *dst = NULL;
            for (size_t k = 0; k < count && !dst; k++)
                if (all[k].key->status == s->status && strcmp(all[k].key->route, s->route) == 0 &&
                    strcmp(all[k].key->service, s->service) == 0)
                    dst = &all[k];
            if (!dst) {
                dst = &all[count++];
                dst->key = s;
            }
            dst->requests += atomic_load_explicit(&s->requests, memory_order_relaxed);
            dst->latency_us_sum += atomic_load_explicit(&s->latency_us_sum, memory_order_relaxed);
            for (int b = 0; b < METRICS_BUCKETS; b++)
                dst->buckets[b] += atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
        }
    }
    struct text t = {0};
    put(&t,
        "# HELP weir_connections_active Open client connections.\n"
        "# TYPE weir_connections_active gauge\nweir_connections_active %d\n",
        connections);
    put(&t, "# HELP weir_http_requests_total Requests answered, by route, service and status.\n"
            "# TYPE weir_http_requests_total counter\n");
    char route[2 * METRICS_LABEL_MAX + 1], service[2 * METRICS_LABEL_MAX + 1];
    for (size_t k = 0; k < count; k++) {
        escape_label(all[k].key->route, route, sizeof route);
        escape_label(all[k].key->service, service, sizeof service);
        put(&t, "weir_http_requests_total{route=\"%s\",service=\"%s\",code=\"%d\"} %llu\n", route,
            service, all[k].key->status, (unsigned long long)all[k].requests);
    }
    put(&t, "# HELP weir_request_latency_ms Time from the first byte of a request to the last "
            "byte of its response queued, by route and service.\n"
            "# TYPE weir_request_latency_ms histogram\n");
    /* Latency is per route and service; fold the status codes together. */
    for (size_t k = 0; k < count; k++) {
        bool seen = false;
        for (size_t j = 0; j < k && !seen; j++)
            seen = strcmp(all[j].key->route, all[k].key->route) == 0 &&
                   strcmp(all[j].key->service, all[k].key->service) == 0;
        if (seen) continue;
        uint64_t buckets[METRICS_BUCKETS] = {0}, total = 0, sum_us = 0;
        for (size_t j = k; j < count; j++) {
            if (strcmp(all[j].key->route, all[k].key->route) != 0 ||
                strcmp(all[j].key->service, all[k].key->service) != 0)
                continue;
            for (int b = 0; b < METRICS_BUCKETS; b++)
                buckets[b] += all[j].buckets[b];
            total += all[j].requests;
            sum_us += all[j].latency_us_sum;
        }
        escape_label(all[k].key->route, route, sizeof route);
        escape_label(all[k].key->service, service, sizeof service);
        uint64_t cumulative = 0;
        for (int b = 0; b < METRICS_BUCKETS; b++) {
            cumulative += buckets[b];
            put(&t, "weir_request_latency_ms_bucket{route=\"%s\",service=\"%s\",le=\"%g\"} %llu\n",
                route, service, metrics_bucket_bounds_ms[b], (unsigned long long)cumulative);
        }
        put(&t, "weir_request_latency_ms_bucket{route=\"%s\",service=\"%s\",le=\"+Inf\"} %llu\n",
            route, service, (unsigned long long)total);
        put(&t, "weir_request_latency_ms_sum{route=\"%s\",service=\"%s\"} %.3f\n", route, service,
            (double)sum_us / 1000.0);
        put(&t, "weir_request_latency_ms_count{route=\"%s\",service=\"%s\"} %llu\n", route, service,
            (unsigned long long)total);
    }
    free(all);
    put(&t, "# HELP weir_plugin_errors_total Plugin calls that failed (a Lua error, the "
            "instruction budget or the memory limit), by plugin and phase.\n"
            "# TYPE weir_plugin_errors_total counter\n");
    /* the same (plugin, phase) summed over workers */
    size_t pcap = n * (METRICS_PLUGIN_SLOTS + 1), pcount = 0;
    struct {
        const struct metrics_plugin_slot *key;
        uint64_t total;
    } *errs = calloc(pcap ? pcap : 1, sizeof *errs);
    if (!errs) abort();
    for (size_t w = 0; w < n; w++) {
        for (size_t i = 0; i <= METRICS_PLUGIN_SLOTS; i++) {
            const struct metrics_plugin_slot *s = &tables[w]->plugin_errors[i];
            if (atomic_load_explicit(&s->state, memory_order_acquire) != 1) continue;
            size_t k = 0;
            while (k < pcount &&
                   (strcmp(errs[k].key->plugin, s->plugin) || strcmp(errs[k].key->phase, s->phase)))
                k++;
            if (k == pcount) errs[pcount++].key = s;
            errs[k].total += atomic_load_explicit(&s->errors, memory_order_relaxed);
        }
    }
    for (size_t k = 0; k < pcount; k++) {
        char plugin[2 * METRICS_LABEL_MAX];
        escape_label(errs[k].key->plugin, plugin, sizeof plugin);
        put(&t, "weir_plugin_errors_total{plugin=\"%s\",phase=\"%s\"} %llu\n", plugin,
            errs[k].key->phase, (unsigned long long)errs[k].total);
    }
    free(errs);
    return t.data;
}

void metrics_plugin_error(struct metrics *m, const char *plugin, const char *phase) {
    struct metrics_plugin_slot *slot = &m->plugin_errors[METRICS_PLUGIN_SLOTS];
    for (size_t i = 0; i < METRICS_PLUGIN_SLOTS; i++) {
        struct metrics_plugin_slot *s = &m->plugin_errors[i];
        if (atomic_load_explicit(&s->state, memory_order_relaxed) == 1) {
            if (!strcmp(s->plugin, plugin) && !strcmp(s->phase, phase)) {
                slot = s;
                break;
            }
            continue;
        }
        snprintf(s->plugin, sizeof s->plugin, "%s", plugin);
        snprintf(s->phase, sizeof s->phase, "%s", phase);
        atomic_store_explicit(&s->state, 1, memory_order_release);
        slot = s;
        break;
    }
    if (slot == &m->plugin_errors[METRICS_PLUGIN_SLOTS] &&
        atomic_load_explicit(&slot->state, memory_order_relaxed) != 1)
        atomic_store_explicit(&slot->state, 1, memory_order_release); /* labels "" */
    atomic_store_explicit(&slot->errors,
                          atomic_load_explicit(&slot->errors, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

char *metrics_render_target_health(char *text, const struct metrics_target_health *h, size_t n) {
    size_t len = strlen(text);
    struct text t = {text, len, len + 1};
    static const char *const states[] = {"healthchecks_off", "healthy", "unhealthy", "dns_error"};
    put(&t, "# HELP weir_upstream_target_health Health of each upstream target: 1 for its state "
            "(healthchecks_off, healthy, unhealthy, dns_error), 0 for the others.\n"
            "# TYPE weir_upstream_target_health gauge\n");
    char upstream[2 * 256 + 1], target[2 * 300 + 1], address[2 * 64 + 1];
    for (size_t i = 0; i < n; i++) {
        escape_label(h[i].upstream, upstream, sizeof upstream);
        escape_label(h[i].target, target, sizeof target);
        escape_label(h[i].address, address, sizeof address);
        for (size_t k = 0; k < sizeof states / sizeof states[0]; k++)
            put(&t,
                "weir_upstream_target_health{upstream=\"%s\",target=\"%s\",address=\"%s\","
                "state=\"%s\"} %d\n",
                upstream, target, address, states[k], strcmp(states[k], h[i].state) == 0);
    }
    return t.data;
}
