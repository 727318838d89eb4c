/* health_state: Kong's health counters of one target, packed in one 64-bit word.
 *
 * A target is healthy or unhealthy and keeps four counters: successes, HTTP failures, TCP
 * failures and timeouts. Kong's rules (docs "Health checks and circuit breakers"): a healthy
 * status increments the successes and clears the other counters; a TCP failure, a timeout or an
 * unhealthy status increments its counter and clears the successes. A failure counter reaching
 * its threshold makes the target unhealthy, the successes reaching theirs make it healthy; the
 * counters restart from zero at each change. A threshold of 0 disables its counter: the event
 * is not counted and clears nothing (lua-resty-healthcheck's "fail fast on counters that are
 * disabled"). Counters saturate at 255 (Kong's thresholds are at most 255).
 *
 * Everything fits one word so that the workers (passive checks) and the checker thread (active
 * checks) update a target with one compare-and-swap, without a lock. The word does not change
 * when an event changes nothing (a success on a healthy target with no failure counted, a
 * failure on an unhealthy target with no success counted): the request path then only loads it.
 * Pure functions; any thread. */
#ifndef WEIR_HEALTH_STATE_H
#define WEIR_HEALTH_STATE_H

#include <stdbool.h>
#include <stdint.h>

enum health_event {
    HEALTH_SUCCESS = 0,
    HEALTH_HTTP_FAILURE = 1,
    HEALTH_TCP_FAILURE = 2,
    HEALTH_TIMEOUT = 3,
};

#define HEALTH_COUNTER_MAX 255u
/* Bit 0: unhealthy. Bits 8 + 8 * event: that event's counter. Zero is healthy, nothing counted. */
#define HEALTH_STATE_UNHEALTHY ((uint64_t)1)

static inline bool health_state_healthy(uint64_t s) {
    return !(s & HEALTH_STATE_UNHEALTHY);
}

static inline unsigned health_state_count(uint64_t s, enum health_event ev) {
    return (unsigned)((s >> (8 + 8 * (unsigned)ev)) & 0xff);
}

/* The word of a target just set healthy or unhealthy (counters at zero). */
static inline uint64_t health_state_of(bool healthy) {
    return healthy ? 0 : HEALTH_STATE_UNHEALTHY;
}

/* The word after `ev`, counted against `threshold` (the check's threshold for that counter:
 * healthy.successes for HEALTH_SUCCESS, unhealthy.http_failures, tcp_failures or timeouts). */
uint64_t health_state_next(uint64_t s, enum health_event ev, unsigned threshold);

/* "success", "http failure", "tcp failure", "timeout" (for logs). */
const char *health_event_name(enum health_event ev);

#endif
