#include "tls/passthrough.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h> /* the timer embedded: one allocation per connection */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "config/snapshot.h"
#include "core/access_log.h"
#include "core/conn.h"
#include "core/log.h"
#include "core/worker.h"
#include "tls/client_hello.h"
#include "tls/sni_map.h"
#include "upstream/balancer.h"

/* Targets of an upstream tried for one connection, at most (a bound on the tried list). */
#define MAX_TRIES 32

enum passthrough_state { PT_HELLO, PT_CONNECTING, PT_RELAYING };

struct passthrough_conn {
    struct passthrough_conn *prev, *next; /* the worker's list */
    struct worker *worker;
    enum passthrough_state state;
    struct conn *client, *upstream;
    struct event timer;    /* the ClientHello deadline, then the idle timeout */
    struct snapshot *snap; /* while routing and connecting */
    const struct route *route;
    int tried[MAX_TRIES];
    size_t n_tried;
    int attempts_left;
    uint64_t accepted_ms, last_io_ms, deadline_ms;
    int idle_ms, write_ms;
    uint64_t from_client, from_upstream; /* bytes relayed each way */
    bool client_eof, upstream_eof;
    int listen_port;
    char client_ip[INET6_ADDRSTRLEN];
    char upstream_addr[INET6_ADDRSTRLEN + 8];
    char sni[CLIENT_HELLO_SNI_MAX + 1];
    char *route_name, *service_name; /* for the access log, which outlives the snapshot */
    struct timespec started;         /* wall clock, for the access log */
};

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void timer_at(struct passthrough_conn *p, uint64_t deadline) {
    p->deadline_ms = deadline;
    uint64_t now = now_ms(), ms = deadline > now ? deadline - now : 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(&p->timer, &tv);
}

struct sni_map *passthrough_routes_build(const struct config *cfg) {
    struct sni_map *m = NULL;
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const struct route *r = &cfg->routes[i];
        if (!(r->protocols & ROUTE_PROTO_TLS_PASSTHROUGH)) continue;
        if (!m) m = sni_map_new();
        for (size_t j = 0; j < r->n_snis; j++)
            sni_map_add(m, r->snis[j], (int)i);
    }
    if (m) sni_map_seal(m);
    return m;
}

const struct route *passthrough_route_for(const struct config *cfg, const struct sni_map *routes,
                                          const char *sni, size_t len) {
    int i = routes ? sni_map_lookup(routes, sni, len) : -1;
    return i < 0 ? NULL : &cfg->routes[i];
}

/* ---- the end ---- */

static void write_access_log(struct passthrough_conn *p, const char *ended) {
    struct access_log *alog = p->worker->access_log;
    if (!alog) return;
    char tbuf[64];
    struct tm tm;
    gmtime_r(&p->started.tv_sec, &tm);
    size_t tl = strftime(tbuf, sizeof tbuf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(tbuf + tl, sizeof tbuf - tl, ".%03ldZ", p->started.tv_nsec / 1000000);
    /* every string here is a host name, an address, a route or service name or id (schemas:
     * letters, digits and ".-_~:[]"), or a constant: nothing to escape */
#define QUOTED(s) (s) ? "\"" : "", (s) ? (s) : "null", (s) ? "\"" : ""
    const char *sni = p->sni[0] ? p->sni : NULL;
    const char *up = p->upstream_addr[0] ? p->upstream_addr : NULL;
    char line[1024];
    int n = snprintf(line, sizeof line,
                     "{\"time\":\"%s\",\"type\":\"tls_passthrough\",\"client_ip\":\"%s\","
                     "\"listen_port\":%d,\"sni\":%s%s%s,\"route\":%s%s%s,\"service\":%s%s%s,"
                     "\"upstream_addr\":%s%s%s,\"bytes_from_client\":%llu,"
                     "\"bytes_from_upstream\":%llu,\"duration_ms\":%llu,\"ended\":\"%s\"}",
                     tbuf, p->client_ip, p->listen_port, QUOTED(sni), QUOTED(p->route_name),
                     QUOTED(p->service_name), QUOTED(up), (unsigned long long)p->from_client,
                     (unsigned long long)p->from_upstream,
                     (unsigned long long)(now_ms() - p->accepted_ms), ended);
#undef QUOTED
    if (n > 0 && (size_t)n < sizeof line) access_log_write(alog, p->worker->id, line, (size_t)n);
}

/* Ends the connection: both sides closed, one access log line. `ended` says how (docs/tls.md);
 * `why`, when not NULL, is logged at info (a refused or failed connection). */
static void finish(struct passthrough_conn *p, const char *ended, const char *why) {
    if (why)
        log_info("tls passthrough: %s from %s%s%s%s: %s", ended, p->client_ip,
                 p->sni[0] ? " (sni " : "", p->sni, p->sni[0] ? ")" : "", why);
    write_access_log(p, ended);
    conn_free(p->client);
    conn_free(p->upstream);
    event_del(&p->timer);
    if (p->snap) snapshot_release_deferred(p->snap);
    free(p->route_name);
    free(p->service_name);
    struct worker *w = p->worker;
    if (p->prev)
        p->prev->next = p->next;
    else
        w->passthroughs = p->next;
    if (p->next) p->next->prev = p->prev;
    free(p);
    worker_stream_closed(w);
}

void passthrough_close_all(struct worker *w) {
    while (w->passthroughs)
        finish(w->passthroughs, "shutdown", NULL);
}

void passthrough_shutdown_all(struct worker *w) {
    for (struct passthrough_conn *p = w->passthroughs, *next; p; p = next) {
        next = p->next;
        if (p->state == PT_HELLO) finish(p, "shutdown", NULL);
    }
}

/* ---- relaying ---- */

static void relay(struct passthrough_conn *p, struct conn *from, struct conn *to, uint64_t *count) {
    struct evbuffer *in = conn_input(from), *out = conn_output(to);
    size_t n = evbuffer_get_length(in);
    if (!n) return;
    *count += n;
    evbuffer_add_buffer(out, in);
    p->last_io_ms = now_ms();
    /* back-pressure: the reader waits until `to` has written most of it (on_drained) */
    if (evbuffer_get_length(out) >= PASSTHROUGH_HIGH_WATERMARK) conn_read_disable(from);
}

static void maybe_done(struct passthrough_conn *p) {
    if (p->client_eof && p->upstream_eof && !evbuffer_get_length(conn_output(p->client)) &&
        !evbuffer_get_length(conn_output(p->upstream)))
        finish(p, "closed", NULL);
}

static void on_client_read(struct conn *c, void *arg);
static void on_event(struct conn *c, short what, void *arg);

/* Whether the socket of `c` has reached its end, without taking a byte: 0 (the peer's FIN) or an
 * error (its reset) is already queued behind the data just read.
 *
 * Why: conn reads once per epoll edge (edge-triggered), and libevent reports an edge that carries
 * EPOLLERR/EPOLLHUP as a plain read event. A client that sends its last bytes and resets (TLS
 * clients do: close_notify, then close() with the server's close_notify unread) therefore gives
 * one edge for both; conn reads the bytes and no further edge ever says the socket is gone. With
 * both directions open the next write finds out; once the other direction has ended nothing
 * would, and the connection would wait for its idle timeout. One recv() per read, and only in
 * that half-closed state, settles it. */
static short peer_ended(struct conn *c) {
    char b;
    ssize_t n = recv(conn_fd(c), &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return CONN_READING | CONN_EOF;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return CONN_READING | CONN_ERROR;
    return 0;
}

static void on_readable(struct conn *c, void *arg) {
    struct passthrough_conn *p = arg;
    if (p->state != PT_RELAYING) {
        on_client_read(c, arg);
        return;
    }
    bool other_ended;
    if (c == p->client) {
        relay(p, p->client, p->upstream, &p->from_client);
        other_ended = p->upstream_eof;
    } else {
        relay(p, p->upstream, p->client, &p->from_upstream);
        other_ended = p->client_eof;
    }
    short end = other_ended ? peer_ended(c) : 0;
    if (end) on_event(c, end, p); /* conn reports nothing more on this socket: see peer_ended */
}

/* `c` wrote its output down to the low watermark (or, after both EOFs, to nothing). */
static void on_drained(struct conn *c, void *arg) {
    struct passthrough_conn *p = arg;
    if (p->state != PT_RELAYING) return;
    p->last_io_ms = now_ms();
    struct conn *reader = c == p->client ? p->upstream : p->client;
    bool reader_eof = c == p->client ? p->upstream_eof : p->client_eof;
    if (!reader_eof) conn_read_enable(reader);
    if (p->client_eof && p->upstream_eof) maybe_done(p);
}

static void on_idle_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct passthrough_conn *p = arg;
    uint64_t now = now_ms();
    switch (p->state) {
    case PT_HELLO:
        finish(p, "client_hello_timeout", "no complete ClientHello within ssl_handshake_timeout");
        return;
    case PT_CONNECTING:
        return; /* the connect timeout is the upstream conn's */
    case PT_RELAYING:
        if (now - p->last_io_ms >= (uint64_t)p->idle_ms) {
            finish(p, "idle_timeout", NULL);
            return;
        }
        timer_at(p, p->last_io_ms + (uint64_t)p->idle_ms);
        return;
    }
}

static void start_relaying(struct passthrough_conn *p) {
    p->state = PT_RELAYING;
    /* the connection no longer needs the configuration: a reload frees it */
    snapshot_release_deferred(p->snap);
    p->snap = NULL;
    struct timeval wt = {p->write_ms / 1000, (p->write_ms % 1000) * 1000};
    conn_set_timeouts(p->upstream, NULL, &wt);
    conn_set_timeouts(p->client, NULL, &wt);
    conn_set_watermarks(p->client, 0, PASSTHROUGH_LOW_WATERMARK);
    conn_set_watermarks(p->upstream, 0, PASSTHROUGH_LOW_WATERMARK);
    conn_read_enable(p->upstream);
    p->last_io_ms = now_ms();
    timer_at(p, p->last_io_ms + (uint64_t)p->idle_ms);
    /* the ClientHello and whatever followed it while connecting */
    relay(p, p->client, p->upstream, &p->from_client);
    if (p->client_eof) {
        conn_shutdown_write(p->upstream);
    } else if (evbuffer_get_length(conn_output(p->upstream)) < PASSTHROUGH_HIGH_WATERMARK) {
        conn_read_enable(p->client);
    }
}

static void format_addr(const struct sockaddr *sa, char *out, size_t len) {
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        snprintf(out, len, "[%s]:%d", ip, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        snprintf(out, len, "%s:%d", ip, ntohs(s4->sin_port));
    }
}

/* Connects to the service's address or the next target of its upstream. False after
 * finish() when there is nothing (left) to try. */
static bool connect_next(struct passthrough_conn *p) {
    const struct service *svc = p->route->service;
    const struct sockaddr *sa;
    socklen_t len;
    if (svc->upstream) {
        const struct upstream *u = svc->upstream;
        int *state = snapshot_balancer_state(p->snap, u, p->worker->id);
        int t = balancer_pick(u, state, p->tried, p->n_tried);
        if (t < 0) {
            finish(p, "upstream_connect_failed",
                   p->n_tried ? "every target of the upstream failed"
                              : "the upstream has no target to connect to");
            return false;
        }
        if (p->n_tried < MAX_TRIES) p->tried[p->n_tried++] = t;
        sa = (const struct sockaddr *)&u->targets[t].addr;
        len = u->targets[t].addrlen;
    } else {
        sa = (const struct sockaddr *)&svc->addr;
        len = svc->addrlen;
    }
    format_addr(sa, p->upstream_addr, sizeof p->upstream_addr);
    struct timeval ct = {svc->connect_timeout_ms / 1000, (svc->connect_timeout_ms % 1000) * 1000};
    p->upstream = conn_connect(p->worker->base, sa, len, &ct);
    if (!p->upstream) {
        finish(p, "upstream_connect_failed", "cannot create a socket");
        return false;
    }
    conn_setcb(p->upstream, on_readable, on_drained, on_event, p);
    return true;
}

static void on_upstream_connect_failed(struct passthrough_conn *p, bool timeout) {
    char why[160];
    snprintf(why, sizeof why, "%s %s", timeout ? "connect timed out to" : "cannot connect to",
             p->upstream_addr);
    conn_free(p->upstream);
    p->upstream = NULL;
    if (p->route->service->upstream && p->attempts_left-- > 0) {
        log_info("tls passthrough: %s; trying another target", why);
        connect_next(p);
        return;
    }
    finish(p, timeout ? "upstream_connect_timeout" : "upstream_connect_failed", why);
}

static void on_event(struct conn *c, short what, void *arg) {
    struct passthrough_conn *p = arg;
    bool client = c == p->client;
    if (!client && p->state == PT_CONNECTING) {
        if (what & CONN_CONNECTED) {
            start_relaying(p);
            return;
        }
        on_upstream_connect_failed(p, what & CONN_TIMEOUT);
        return;
    }
    if (what & CONN_TIMEOUT) {
        finish(p, "write_timeout", NULL);
        return;
    }
    if (what & CONN_ERROR) {
        if (p->state == PT_HELLO) {
            finish(p, "client_error", NULL);
            return;
        }
        finish(p, client ? "client_error" : "upstream_error", NULL);
        return;
    }
    if (what & CONN_EOF) {
        if (p->state == PT_HELLO) {
            finish(p, "client_closed", "the client closed before its ClientHello was complete");
            return;
        }
        if (client) {
            p->client_eof = true;
            if (p->state == PT_RELAYING) conn_shutdown_write(p->upstream);
        } else {
            p->upstream_eof = true;
            conn_shutdown_write(p->client);
        }
        if (p->client_eof && p->upstream_eof) {
            /* only the final flushes are left: be told when the outputs are empty */
            conn_set_watermarks(p->client, 0, 0);
            conn_set_watermarks(p->upstream, 0, 0);
            maybe_done(p);
        }
    }
}

/* ---- the ClientHello ---- */

static void route_hello(struct passthrough_conn *p, const struct client_hello *h) {
    memcpy(p->sni, h->sni, h->sni_len + 1);
    p->snap = worker_acquire_snapshot(p->worker);
    const struct config *cfg = p->snap->config;
    const struct route *r = passthrough_route_for(cfg, p->snap->passthrough, h->sni, h->sni_len);
    if (!r) {
        finish(p, "no_route", "no tls_passthrough route has this server name");
        return;
    }
    const struct service *svc = r->service;
    p->route = r;
    p->route_name = strdup(r->name ? r->name : r->id);
    p->service_name = strdup(svc->name ? svc->name : svc->id);
    if (!p->route_name || !p->service_name) abort();
    if (!svc->enabled) {
        finish(p, "service_disabled", "the route's service is disabled");
        return;
    }
    p->idle_ms = svc->read_timeout_ms;
    p->write_ms = svc->write_timeout_ms;
    p->attempts_left = svc->retries;
    p->state = PT_CONNECTING;
    event_del(&p->timer);
    /* bytes after the ClientHello wait, bounded, until the upstream is there */
    conn_set_watermarks(p->client, PASSTHROUGH_HIGH_WATERMARK, 0);
    connect_next(p);
}

static void on_client_read(struct conn *c, void *arg) {
    struct passthrough_conn *p = arg;
    if (p->state != PT_HELLO) return; /* connecting: kept in the input until then */
    struct evbuffer *in = conn_input(c);
    size_t len = evbuffer_get_length(in);
    if (len > CLIENT_HELLO_MAX_BYTES) len = CLIENT_HELLO_MAX_BYTES;
    const uint8_t *data = evbuffer_pullup(in, (ev_ssize_t)len);
    struct client_hello h;
    enum client_hello_result r = client_hello_parse(data, len, &h);
    switch (r) {
    case CLIENT_HELLO_NEED_MORE:
        return;
    case CLIENT_HELLO_SNI:
        route_hello(p, &h);
        return;
    case CLIENT_HELLO_NO_SNI:
        finish(p, "no_sni", "the ClientHello names no server");
        return;
    case CLIENT_HELLO_MALFORMED:
        finish(p, "malformed_client_hello", "not a TLS ClientHello");
        return;
    case CLIENT_HELLO_TOO_LARGE:
        finish(p, "client_hello_too_large", "the ClientHello is larger than 16 KiB");
        return;
    }
}

void passthrough_accept(struct worker *w, int fd, const struct sockaddr *peer, int listen_port) {
    struct passthrough_conn *p = calloc(1, sizeof *p);
    if (!p) abort();
    p->worker = w;
    p->listen_port = listen_port;
    p->accepted_ms = now_ms();
    clock_gettime(CLOCK_REALTIME, &p->started);
    if (peer->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)peer)->sin6_addr, p->client_ip,
                  sizeof p->client_ip);
    else
        inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, p->client_ip,
                  sizeof p->client_ip);
    evtimer_assign(&p->timer, w->base, on_idle_timer, p);
    p->client = conn_new(w->base, fd);
    conn_setcb(p->client, on_readable, on_drained, on_event, p);
    /* a ClientHello larger than this is refused anyway: read no further ahead */
    conn_set_watermarks(p->client, CLIENT_HELLO_MAX_BYTES + 1, 0);
    p->next = w->passthroughs;
    if (p->next) p->next->prev = p;
    w->passthroughs = p;
    worker_stream_opened(w);
    const struct weir_settings *ws = &w->snapshot->config->weir;
    timer_at(p, p->accepted_ms + (uint64_t)ws->ssl_handshake_timeout_ms);
    conn_read_enable(p->client);
}
