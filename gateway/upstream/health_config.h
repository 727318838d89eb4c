/* health_config: an upstream's `healthchecks`, in Kong's shape and with Kong's defaults.
 *
 * The schema (schemas/upstream.json) has checked the object; health_config_parse() fills in
 * what is absent or null with Kong's defaults and converts seconds to milliseconds. A config is
 * immutable once parsed and reference counted (atomic): the snapshot's upstream holds one
 * reference, each target's health entry (upstream/health.h) one for the checker thread, and each
 * active probe in flight one. Any thread may read it. */
#ifndef WEIR_HEALTH_CONFIG_H
#define WEIR_HEALTH_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "upstream/health_state.h"

struct json_t;

enum health_probe_type { HEALTH_PROBE_HTTP, HEALTH_PROBE_HTTPS, HEALTH_PROBE_TCP };

/* HTTP statuses 100..999 as a bit set. */
struct health_statuses {
    uint64_t bits[16];
};

static inline bool health_statuses_has(const struct health_statuses *s, int status) {
    return status >= 0 && status < 1024 && (s->bits[status >> 6] >> (status & 63)) & 1;
}

/* The thresholds of one check, indexed by enum health_event (0 disables that counter). */
struct health_thresholds {
    unsigned of[4];
};

struct health_active {
    enum health_probe_type type; /* "http" */
    char *http_path;             /* "/" */
    long timeout_ms;             /* 1 s; at least 1 ms */
    int concurrency;             /* 10: probes of this upstream in flight at once */
    bool verify;                 /* https_verify_certificate, true */
    char *sni;                   /* https_sni, NULL: the target's host when a name */
    char *headers;               /* "Name: value\r\n" lines, "" when none */
    long healthy_interval_ms;    /* 0: healthy targets are not probed */
    long unhealthy_interval_ms;  /* 0: unhealthy targets are not probed */
    struct health_statuses healthy_statuses, unhealthy_statuses;
    struct health_thresholds thresholds;
};

struct health_passive {
    bool tcp; /* type "tcp": statuses are not looked at */
    struct health_statuses healthy_statuses, unhealthy_statuses;
    struct health_thresholds thresholds;
};

struct health_config {
    atomic_int refs;
    bool active_on;  /* an interval is not 0 */
    bool passive_on; /* a passive failure threshold is not 0 */
    struct health_active active;
    struct health_passive passive;
};

/* NULL when every check is off (Kong's HEALTHCHECKS_OFF: both intervals 0 and every passive
 * failure threshold 0), else a config holding one reference. `hc` is the entity's healthchecks
 * member (NULL, null, [] or an object the schema accepted). */
struct health_config *health_config_parse(const struct json_t *hc);
void health_config_retain(struct health_config *c);
void health_config_release(struct health_config *c);

#endif
