/* metrics: per-worker request counters for the admin API's GET /metrics.
 *
 * Each worker owns one table (struct metrics) and is its only writer; the
 * control thread reads every worker's table to render Prometheus text.
 * Nothing is locked: a slot's key (route, service, status) is written
 * once, then published with a release store of its state; counters are
 * single-writer atomics updated with relaxed load+store (no contended
 * read-modify-write on the request path). The table has a fixed number of
 * slots and never moves; when it is full, requests are counted in one
 * overflow slot with empty labels rather than allocating. */
#ifndef WEIR_METRICS_H
#define WEIR_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_SLOTS 1024
#define METRICS_LABEL_MAX 64
/* Upper bounds (ms) of the latency histogram buckets; +Inf is implied. */
#define METRICS_BUCKETS 12
extern const double metrics_bucket_bounds_ms[METRICS_BUCKETS];

struct metrics_slot {
    atomic_int state;              /* 0 free, 1 ready (key readable) */
    char route[METRICS_LABEL_MAX]; /* name, or id when unnamed; "" when none */
    char service[METRICS_LABEL_MAX];
    int status;
    atomic_uint_fast64_t requests;
    atomic_uint_fast64_t buckets[METRICS_BUCKETS]; /* cumulative counts are built when read */
    atomic_uint_fast64_t latency_us_sum;
};

/* Plugin errors (a Lua error, the instruction budget, memory), by plugin and phase. */
#define METRICS_PLUGIN_SLOTS 128
struct metrics_plugin_slot {
    atomic_int state; /* 0 free, 1 ready */
    char plugin[METRICS_LABEL_MAX];
    char phase[16];
    atomic_uint_fast64_t errors;
};

struct metrics {
    struct metrics_slot slots[METRICS_SLOTS + 1]; /* the last one is the overflow slot */
    struct metrics_plugin_slot plugin_errors[METRICS_PLUGIN_SLOTS + 1]; /* last: overflow */
};

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);
/* Worker thread only. `route`/`service` may be NULL (no route matched). */
void metrics_record(struct metrics *m, const char *route, const char *service, int status,
                    double latency_ms);
/* Worker thread only. */
void metrics_plugin_error(struct metrics *m, const char *plugin, const char *phase);
/* Appends Prometheus text for `n` workers' tables to a malloc'd string
 * (caller frees); `connections` is the current open client connections. */
char *metrics_render(struct metrics *const *tables, size_t n, int connections);

/* One upstream target's health, for Kong's weir_upstream_target_health gauge. */
struct metrics_target_health {
    const char *upstream; /* the upstream's name */
    const char *target;   /* "host:port" as configured */
    const char *address;  /* "ip:port" it resolved to */
    const char *state;    /* "healthchecks_off", "healthy", "unhealthy" or "dns_error" */
};
/* Appends the gauge for `n` targets to `text` (metrics_render's result, taken over); returns
 * the new malloc'd text. Each target has one line per state: 1 for its state, 0 for the others. */
char *metrics_render_target_health(char *text, const struct metrics_target_health *t, size_t n);

#endif
