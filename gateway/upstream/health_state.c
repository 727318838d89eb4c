#include "upstream/health_state.h"

static uint64_t with_count(uint64_t s, enum health_event ev, unsigned n) {
    unsigned shift = 8 + 8 * (unsigned)ev;
    return (s & ~((uint64_t)0xff << shift)) | ((uint64_t)n << shift);
}

static uint64_t clear_failures(uint64_t s) {
    s = with_count(s, HEALTH_HTTP_FAILURE, 0);
    s = with_count(s, HEALTH_TCP_FAILURE, 0);
    return with_count(s, HEALTH_TIMEOUT, 0);
}

uint64_t health_state_next(uint64_t s, enum health_event ev, unsigned threshold) {
    if (threshold == 0) return s;
    bool healthy = health_state_healthy(s);
    if (ev == HEALTH_SUCCESS) {
        s = clear_failures(s);
        if (healthy) return with_count(s, HEALTH_SUCCESS, 0); /* nothing to climb back from */
    } else {
        s = with_count(s, HEALTH_SUCCESS, 0);
        if (!healthy) return s; /* already down: only the run of successes is broken */
    }
    unsigned n = health_state_count(s, ev);
    if (n < HEALTH_COUNTER_MAX) n++;
    if (n >= threshold) return health_state_of(ev == HEALTH_SUCCESS);
    return with_count(s, ev, n);
}

const char *health_event_name(enum health_event ev) {
    switch (ev) {
    case HEALTH_SUCCESS:
        return "success";
    case HEALTH_HTTP_FAILURE:
        return "http failure";
    case HEALTH_TCP_FAILURE:
        return "tcp failure";
    case HEALTH_TIMEOUT:
        return "timeout";
    }
    return "?";
}
