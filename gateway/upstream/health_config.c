#include "upstream/health_config.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static const json_t *member(const json_t *o, const char *name) {
    const json_t *v = json_is_object(o) ? json_object_get(o, name) : NULL;
    return v && !json_is_null(v) ? v : NULL;
}

static unsigned count_or(const json_t *o, const char *name, unsigned dflt) {
    const json_t *v = member(o, name);
    if (!json_is_integer(v)) return dflt;
    json_int_t n = json_integer_value(v);
    return n < 0 ? 0 : n > HEALTH_COUNTER_MAX ? HEALTH_COUNTER_MAX : (unsigned)n;
}

/* Seconds (Kong's unit, fractions allowed) to milliseconds, rounded up so that a positive
 * interval never becomes 0 (off). */
static long ms_or(const json_t *o, const char *name, double dflt_s) {
    const json_t *v = member(o, name);
    double s = json_is_number(v) ? json_number_value(v) : dflt_s;
    if (!(s > 0)) return 0;
    if (s > 65535) s = 65535;
    return (long)ceil(s * 1000);
}

static void statuses_or(const json_t *o, const char *name, const int *dflt, size_t n,
                        struct health_statuses *out) {
    memset(out, 0, sizeof *out);
    const json_t *v = member(o, name);
    if (json_is_array(v)) {
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e) {
            json_int_t s = json_integer_value(e);
            if (s >= 100 && s <= 999) out->bits[s >> 6] |= (uint64_t)1 << (s & 63);
        }
        return;
    }
    for (size_t i = 0; i < n; i++)
        out->bits[dflt[i] >> 6] |= (uint64_t)1 << (dflt[i] & 63);
}

static char *xstrdup(const char *s) {
    char *d = strdup(s);
    if (!d) abort();
    return d;
}

/* Kong's `headers` map (name -> array of values) as header lines, in the object's order. */
static char *header_lines(const json_t *h) {
    size_t len = 0;
    const char *name;
    const json_t *vals;
    json_object_foreach((json_t *)h, name, vals) {
        size_t i;
        const json_t *v;
        json_array_foreach(vals, i, v) len += strlen(name) + 2 + json_string_length(v) + 2;
    }
    char *out = malloc(len + 1), *p = out;
    if (!out) abort();
    json_object_foreach((json_t *)h, name, vals) {
        size_t i;
        const json_t *v;
        json_array_foreach(vals, i, v) {
            size_t n = strlen(name), m = json_string_length(v);
            memcpy(p, name, n);
            memcpy(p + n, ": ", 2);
            memcpy(p + n + 2, json_string_value(v), m);
            memcpy(p + n + 2 + m, "\r\n", 2);
            p += n + 2 + m + 2;
        }
    }
    *p = '\0';
    return out;
}

/* Kong's defaults (kong/db/schema/entities/upstreams.lua). */
static const int ACTIVE_HEALTHY[] = {200, 302};
static const int ACTIVE_UNHEALTHY[] = {429, 404, 500, 501, 502, 503, 504, 505};
static const int PASSIVE_HEALTHY[] = {200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                      300, 301, 302, 303, 304, 305, 306, 307, 308};
static const int PASSIVE_UNHEALTHY[] = {429, 500, 503};
#define N(a) (sizeof(a) / sizeof(a)[0])

struct health_config *health_config_parse(const json_t *hc) {
    const json_t *active = member(hc, "active"), *passive = member(hc, "passive");
    const json_t *ah = member(active, "healthy"), *au = member(active, "unhealthy");
    const json_t *ph = member(passive, "healthy"), *pu = member(passive, "unhealthy");
    struct health_config *c = calloc(1, sizeof *c);
    if (!c) abort();
    atomic_init(&c->refs, 1);

    struct health_active *a = &c->active;
    const char *type = json_string_value(member(active, "type"));
    a->type = !type || !strcmp(type, "http") ? HEALTH_PROBE_HTTP
              : !strcmp(type, "https")       ? HEALTH_PROBE_HTTPS
                                             : HEALTH_PROBE_TCP;
    const char *path = json_string_value(member(active, "http_path"));
    a->http_path = xstrdup(path ? path : "/");
    a->timeout_ms = ms_or(active, "timeout", 1);
    if (a->timeout_ms < 1) a->timeout_ms = 1;
    const json_t *conc = member(active, "concurrency");
    a->concurrency =
        json_is_integer(conc) && json_integer_value(conc) > 0
            ? (int)(json_integer_value(conc) > 65536 ? 65536 : json_integer_value(conc))
            : 10;
    const json_t *verify = member(active, "https_verify_certificate");
    a->verify = verify ? json_is_true(verify) : true;
    const char *sni = json_string_value(member(active, "https_sni"));
    a->sni = sni ? xstrdup(sni) : NULL;
    const json_t *headers = member(active, "headers");
    a->headers = json_is_object(headers) ? header_lines(headers) : xstrdup("");
    a->healthy_interval_ms = ms_or(ah, "interval", 0);
    a->unhealthy_interval_ms = ms_or(au, "interval", 0);
    statuses_or(ah, "http_statuses", ACTIVE_HEALTHY, N(ACTIVE_HEALTHY), &a->healthy_statuses);
    statuses_or(au, "http_statuses", ACTIVE_UNHEALTHY, N(ACTIVE_UNHEALTHY), &a->unhealthy_statuses);
    a->thresholds.of[HEALTH_SUCCESS] = count_or(ah, "successes", 0);
    a->thresholds.of[HEALTH_HTTP_FAILURE] = count_or(au, "http_failures", 0);
    a->thresholds.of[HEALTH_TCP_FAILURE] = count_or(au, "tcp_failures", 0);
    a->thresholds.of[HEALTH_TIMEOUT] = count_or(au, "timeouts", 0);

    struct health_passive *p = &c->passive;
    const char *ptype = json_string_value(member(passive, "type"));
    p->tcp = ptype && !strcmp(ptype, "tcp");
    statuses_or(ph, "http_statuses", PASSIVE_HEALTHY, N(PASSIVE_HEALTHY), &p->healthy_statuses);
    statuses_or(pu, "http_statuses", PASSIVE_UNHEALTHY, N(PASSIVE_UNHEALTHY),
                &p->unhealthy_statuses);
    p->thresholds.of[HEALTH_SUCCESS] = count_or(ph, "successes", 0);
    p->thresholds.of[HEALTH_HTTP_FAILURE] = count_or(pu, "http_failures", 0);
    p->thresholds.of[HEALTH_TCP_FAILURE] = count_or(pu, "tcp_failures", 0);
    p->thresholds.of[HEALTH_TIMEOUT] = count_or(pu, "timeouts", 0);

    /* Kong's is_upstream_using_healthcheck(): a passive successes threshold alone cannot make
     * anything unhealthy, so it does not turn the checks on. */
    c->active_on = a->healthy_interval_ms > 0 || a->unhealthy_interval_ms > 0;
    c->passive_on = p->thresholds.of[HEALTH_HTTP_FAILURE] || p->thresholds.of[HEALTH_TCP_FAILURE] ||
                    p->thresholds.of[HEALTH_TIMEOUT];
    if (!c->active_on && !c->passive_on) {
        health_config_release(c);
        return NULL;
    }
    return c;
}

void health_config_retain(struct health_config *c) {
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void health_config_release(struct health_config *c) {
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1) return;
    free(c->active.http_path);
    free(c->active.sni);
    free(c->active.headers);
    free(c);
}
