#include "upstream/health_checker.h"

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/log.h"
#include "upstream/health_internal.h"
#include "upstream/http_client.h"

struct probe {
    struct health_target *h;   /* a reference (health_registry.lock) */
    struct health_config *cfg; /* a reference */
    char *upstream, *target;   /* for logs */
    struct http_client_op *op; /* http and https */
    struct bufferevent *bev;   /* tcp */
    struct event *timer;       /* tcp */
    struct probe *prev, *next;
};

static struct {
    pthread_mutex_t lock; /* start and stop */
    bool running, atexit_done;
    pthread_t thread;
    atomic_bool stopping;
    struct event_base *base;
    struct http_client *http;
    struct event *tick;
    struct probe *probes;
} chk = {.lock = PTHREAD_MUTEX_INITIALIZER};

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long interval_of(const struct health_target *h, const struct health_config *cfg) {
    bool up = health_state_healthy(atomic_load_explicit(&h->state, memory_order_relaxed));
    return up ? cfg->active.healthy_interval_ms : cfg->active.unhealthy_interval_ms;
}

/* Ends a probe: counts its outcome, schedules the entry's next one and drops the references. */
static void probe_finish(struct probe *p, enum health_event ev, bool counted, const char *why) {
    if (counted) {
        if (ev != HEALTH_SUCCESS)
            log_info("health check of %s (upstream %s): %s: %s", p->target, p->upstream,
                     health_event_name(ev), why);
        health_record(p->h, ev, p->cfg->active.thresholds.of[ev], p->upstream, p->target);
    }
    if (p->bev) bufferevent_free(p->bev);
    if (p->timer) event_free(p->timer);
    if (p->prev)
        p->prev->next = p->next;
    else
        chk.probes = p->next;
    if (p->next) p->next->prev = p->prev;
    pthread_mutex_lock(&health_registry.lock);
    p->h->probing = false;
    p->h->group->in_flight--;
    long iv = interval_of(p->h, p->cfg);
    /* an interval of 0 for the new state: the tick reschedules when the settings change */
    p->h->next_probe_ms = iv > 0 ? now_ms() + iv : 0;
    health_entry_release_locked(p->h);
    pthread_mutex_unlock(&health_registry.lock);
    health_config_release(p->cfg);
    free(p->upstream);
    free(p->target);
    free(p);
}

static void http_done(void *arg, const struct http_client_response *res, const char *err) {
    struct probe *p = arg;
    p->op = NULL;
    if (!res) {
        bool timeout = !strcmp(err, "timeout") || strstr(err, "timed out");
        probe_finish(p, timeout ? HEALTH_TIMEOUT : HEALTH_TCP_FAILURE, true, err);
        return;
    }
    const struct health_active *a = &p->cfg->active;
    char why[32];
    snprintf(why, sizeof why, "status %d", res->status);
    if (health_statuses_has(&a->healthy_statuses, res->status))
        probe_finish(p, HEALTH_SUCCESS, true, why);
    else if (health_statuses_has(&a->unhealthy_statuses, res->status))
        probe_finish(p, HEALTH_HTTP_FAILURE, true, why);
    else
        probe_finish(p, HEALTH_SUCCESS, false, why); /* Kong: neither list, not counted */
}

static void tcp_event(struct bufferevent *bev, short what, void *arg) {
    (void)bev;
    struct probe *p = arg;
    if (what & BEV_EVENT_CONNECTED)
        probe_finish(p, HEALTH_SUCCESS, true, "connected");
    else
        probe_finish(p, HEALTH_TCP_FAILURE, true, "connect failed");
}

static void tcp_timeout(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    probe_finish(arg, HEALTH_TIMEOUT, true, "connect timed out");
}

static void start_tcp(struct probe *p, const struct health_binding *b) {
    p->bev = bufferevent_socket_new(chk.base, -1, BEV_OPT_CLOSE_ON_FREE);
    p->timer = evtimer_new(chk.base, tcp_timeout, p);
    if (!p->bev || !p->timer) abort();
    bufferevent_setcb(p->bev, NULL, NULL, tcp_event, p);
    long ms = p->cfg->active.timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(p->timer, &tv);
    if (bufferevent_socket_connect(p->bev, (const struct sockaddr *)&b->addr, (int)b->addrlen) < 0)
        probe_finish(p, HEALTH_TCP_FAILURE, true, "connect failed");
}

static bool has_host_header(const char *lines) {
    for (const char *l = lines; *l;) {
        if (!strncasecmp(l, "host:", 5)) return true;
        const char *e = strstr(l, "\r\n");
        if (!e) break;
        l = e + 2;
    }
    return false;
}

static void start_http(struct probe *p, const struct health_binding *b) {
    const struct health_active *a = &p->cfg->active;
    bool v6 = strchr(b->host, ':') != NULL;
    char url[HTTP_CLIENT_AUTHORITY_MAX + 64 + 4096];
    int n = snprintf(url, sizeof url, "%s://%s%s%s:%d%s",
                     a->type == HEALTH_PROBE_HTTPS ? "https" : "http", v6 ? "[" : "", b->host,
                     v6 ? "]" : "", b->port, a->http_path);
    struct http_client_url u;
    const char *bad =
        n > 0 && (size_t)n < sizeof url ? http_client_parse_url(url, (size_t)n, &u) : "too long";
    if (bad) { /* the schema makes this impossible: say so rather than skip it quietly */
        log_err("health check of %s (upstream %s): cannot probe %s: %s", p->target, p->upstream,
                url, bad);
        probe_finish(p, HEALTH_TCP_FAILURE, false, bad);
        return;
    }
    char authority[HTTP_CLIENT_AUTHORITY_MAX + 1];
    http_client_authority(&u, authority, sizeof authority);
    bool own_host = has_host_header(a->headers);
    char *head = NULL;
    int len =
        asprintf(&head,
                 "GET %.*s HTTP/1.1\r\n%s%s%sUser-Agent: weir-healthcheck\r\n"
                 "Connection: close\r\n%s\r\n",
                 (int)u.target_len, u.target, own_host ? "" : "Host: ", own_host ? "" : authority,
                 own_host ? "" : "\r\n", a->headers);
    if (len < 0) abort();
    struct http_client_request req = {
        .url = &u,
        .method = "GET",
        .head = head,
        .head_len = (size_t)len,
        .verify = a->verify,
        /* Kong: https_sni, else the target's host when it is a name (an IP is sent no SNI) */
        .server_name = a->sni,
        .timeout_ms = a->timeout_ms,
        .max_body = HEALTH_CHECKER_MAX_BODY,
    };
    char err[256];
    p->op = http_client_request(chk.http, &req, http_done, p, err, sizeof err);
    free(head);
    if (!p->op) {
        bool timeout = strstr(err, "timed out") || !strcmp(err, "timeout");
        probe_finish(p, timeout ? HEALTH_TIMEOUT : HEALTH_TCP_FAILURE, true, err);
    }
}

/* Under the registry lock: the probes to start now, taken out of the registry's hands (each
 * holds a reference) so that they start after the lock is let go. */
static struct probe *due_probes(long long now) {
    struct probe *list = NULL;
    for (struct health_target *h = health_registry.head; h; h = h->next) {
        struct health_binding *b = h->bindings;
        if (!b || h->probing || !b->cfg->active_on) continue;
        long iv = interval_of(h, b->cfg);
        if (iv <= 0) {
            h->next_probe_ms = 0;
            continue;
        }
        if (!h->next_probe_ms || h->next_probe_ms > now + iv) h->next_probe_ms = now + iv;
        if (now < h->next_probe_ms || h->group->in_flight >= b->cfg->active.concurrency) continue;
        struct probe *p = calloc(1, sizeof *p);
        if (!p) abort();
        p->h = h;
        h->refs++;
        h->probing = true;
        h->group->in_flight++;
        health_config_retain(b->cfg);
        p->cfg = b->cfg;
        p->upstream = strdup(b->upstream);
        p->target = strdup(b->target);
        if (!p->upstream || !p->target) abort();
        p->next = list;
        list = p;
    }
    return list;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what, (void)arg;
    if (atomic_load(&chk.stopping)) {
        event_base_loopbreak(chk.base);
        return;
    }
    pthread_mutex_lock(&health_registry.lock);
    struct probe *due = due_probes(now_ms());
    /* The binding each probe uses is copied while the lock is held. */
    struct start {
        struct probe *p;
        struct health_binding b;
        char host[256];
    } *starts = NULL;
    size_t n = 0;
    for (struct probe *p = due; p; p = p->next)
        n++;
    if (n) {
        starts = calloc(n, sizeof *starts);
        if (!starts) abort();
    }
    size_t i = 0;
    for (struct probe *p = due; p; p = p->next, i++) {
        struct health_binding *b = p->h->bindings;
        starts[i].p = p;
        starts[i].b = *b;
        snprintf(starts[i].host, sizeof starts[i].host, "%s", b->host);
        starts[i].b.host = starts[i].host;
    }
    pthread_mutex_unlock(&health_registry.lock);
    for (i = 0; i < n; i++) {
        struct probe *p = starts[i].p;
        p->next = chk.probes; /* from the due list to the running list */
        p->prev = NULL;
        if (chk.probes) chk.probes->prev = p;
        chk.probes = p;
        if (p->cfg->active.type == HEALTH_PROBE_TCP)
            start_tcp(p, &starts[i].b);
        else
            start_http(p, &starts[i].b);
    }
    free(starts);
}

static void *checker_main(void *arg) {
    (void)arg;
    event_base_dispatch(chk.base);
    /* stopping: end the probes in flight without counting them */
    while (chk.probes) {
        struct probe *p = chk.probes;
        if (p->op) {
            http_client_cancel(p->op);
            p->op = NULL;
        }
        probe_finish(p, HEALTH_SUCCESS, false, "stopping");
    }
    return NULL;
}

void health_checker_stop(void) {
    pthread_mutex_lock(&chk.lock);
    if (chk.running) {
        atomic_store(&chk.stopping, true);
        pthread_join(chk.thread, NULL);
        event_free(chk.tick);
        http_client_free(chk.http);
        event_base_free(chk.base);
        chk.running = false;
    }
    pthread_mutex_unlock(&chk.lock);
}

void health_checker_wake(void) {
    pthread_mutex_lock(&chk.lock);
    if (chk.running) {
        pthread_mutex_unlock(&chk.lock);
        return;
    }
    atomic_store(&chk.stopping, false);
    chk.base = event_base_new();
    if (!chk.base) abort();
    chk.http = http_client_new(chk.base, "health check");
    chk.tick = event_new(chk.base, -1, EV_PERSIST, tick_cb, NULL);
    if (!chk.http || !chk.tick) abort();
    struct timeval tv = {0, HEALTH_CHECKER_TICK_MS * 1000};
    event_add(chk.tick, &tv);
    /* The thread takes no signals: they belong to main and the workers. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&chk.thread, NULL, checker_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        log_err("cannot start the health checker thread: %s", strerror(rc));
        event_free(chk.tick);
        http_client_free(chk.http);
        event_base_free(chk.base);
    } else {
        chk.running = true;
        if (!chk.atexit_done) atexit(health_checker_stop);
        chk.atexit_done = true;
    }
    pthread_mutex_unlock(&chk.lock);
}
