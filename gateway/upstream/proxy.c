#include "upstream/proxy.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/fmt.h"
#include "core/log.h"
#include "core/worker.h"
#include "http/client_conn.h"
#include "http/error_response.h"
#include "http/path.h"
#include "lua/plugin_catalog.h"
#include "lua/plugin_run.h"
#include "tls/tls_conn.h"
#include "tls/tls_upstream.h"
#include "upstream/balancer.h"
#include "upstream/health.h"
#include "upstream/pool.h"

static void up_read_cb(struct conn *conn, void *arg);
static void up_write_cb(struct conn *conn, void *arg);
static void up_event_cb(struct conn *conn, short what, void *arg);
static void connect_attempt(struct client_conn *c, bool allow_pool);
static void finish_response(struct client_conn *c);
static const http_parser_settings response_settings;

#define MSG_BAD_RESPONSE "An invalid response was received from the upstream server"
#define MSG_TIMEOUT "The upstream server is timing out"
#define MSG_CONNECT "failed to connect to the upstream server"

/* ---- the upstream request head ----------------------------------------- */

static void add(struct bytebuf *b, const char *s, size_t n) {
    bytebuf_append(b, s, n);
}

static void adds(struct bytebuf *b, const char *s) {
    bytebuf_append(b, s, strlen(s));
}

static void add_header(struct bytebuf *b, const char *name, const char *v, size_t n) {
    adds(b, name);
    add(b, ": ", 2);
    add(b, v, n);
    add(b, "\r\n", 2);
}

/* Joins every occurrence of a header the client sent into one
 * comma-separated value (X-Forwarded-For may arrive as several lines). */
static void add_joined(struct bytebuf *b, struct client_conn *c, enum header_kind kind,
                       bool *found) {
    *found = false;
    for (size_t i = 0; i < c->req.n_headers; i++) {
        const struct http_header *h = &c->headers[i];
        if (h->kind != kind) continue;
        if (*found) add(b, ", ", 2);
        add(b, h->value, h->value_len);
        *found = true;
    }
}

static bool is_client_cert_header(const char *name, size_t n) {
    return (n == 21 && strncasecmp(name, "x-client-cert-subject", n) == 0) ||
           (n == 25 && strncasecmp(name, "x-client-cert-fingerprint", n) == 0);
}

static const struct http_header *first_of(struct client_conn *c, enum header_kind kind) {
    for (size_t i = 0; i < c->req.n_headers; i++)
        if (c->headers[i].kind == kind) return &c->headers[i];
    return NULL;
}

static void build_upstream_head(struct client_conn *c) {
    struct request *r = &c->req;
    const struct route *route = r->match.route;
    const struct service *svc = route->service;
    struct bytebuf *b = &c->uphead;
    const struct plugin_run *run = c->run; /* what plugins changed, if any ran */
    b->len = 0;

    if (run && run->up_method)
        adds(b, run->up_method);
    else
        add(b, r->method, r->method_len);
    add(b, " ", 1);
    const char *path = c->path.data;
    size_t path_len = c->path.len;
    size_t stripped = 0;
    if (route->strip_path) {
        stripped = r->match.matched_len;
        if (stripped > path_len) stripped = path_len;
    }
    if (run && run->up_path) {
        adds(b, run->up_path);
    } else {
        size_t cap = path_len - stripped + (svc->path ? strlen(svc->path) : 0) + 3;
        bytebuf_reserve(b, cap);
        int joined =
            path_join(svc->path, path + stripped, path_len - stripped, b->data + b->len, cap);
        WEIR_BUG_ON(joined < 0);
        b->len += (size_t)joined;
    }
    if (run && run->up_query_set) {
        if (run->up_query[0]) {
            add(b, "?", 1);
            adds(b, run->up_query);
        }
    } else if (r->query) {
        add(b, "?", 1);
        add(b, r->query, r->query_len);
    }
    add(b, " HTTP/1.1\r\n", 11);

    if (run && run->up_host)
        add_header(b, "Host", run->up_host, strlen(run->up_host));
    else if (route->preserve_host && r->host_full)
        add_header(b, "Host", r->host_full, r->host_full_len);
    else
        add_header(b, "Host", svc->host_header, strlen(svc->host_header));

    /* weir.ssl_client_cert_headers: only Weir says what the client certificate was */
    bool cert_headers = r->snap->config->weir.ssl_client_cert_headers;
    if (run && run->up_headers_set) {
        for (size_t i = 0; i < run->up_headers.n; i++) {
            const struct hfield *f = &run->up_headers.v[i];
            if (cert_headers && is_client_cert_header(f->name, f->nlen)) continue;
            add_header(b, f->name, f->value, f->vlen);
        }
    } else {
        for (size_t i = 0; i < r->n_headers; i++) {
            const struct http_header *h = &c->headers[i];
            if (h->drop || h->kind != HDR_OTHER) continue;
            if (cert_headers && is_client_cert_header(h->name, h->name_len)) continue;
            add(b, h->name, h->name_len);
            add(b, ": ", 2);
            add(b, h->value, h->value_len);
            add(b, "\r\n", 2);
        }
    }

    bool trusted = c->peer_trusted, found;
    /* X-Forwarded-For: a trusted proxy's list is extended, anyone else's is
     * replaced by what we saw. */
    adds(b, "X-Forwarded-For: ");
    if (trusted) {
        add_joined(b, c, HDR_X_FORWARDED_FOR, &found);
        if (found) add(b, ", ", 2);
    }
    adds(b, c->peer_ip);
    add(b, "\r\n", 2);

    const struct http_header *h;
    if (trusted && (h = first_of(c, HDR_X_FORWARDED_PROTO)))
        add_header(b, "X-Forwarded-Proto", h->value, h->value_len);
    else
        adds(b, c->tls ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
    if (trusted && (h = first_of(c, HDR_X_FORWARDED_HOST)))
        add_header(b, "X-Forwarded-Host", h->value, h->value_len);
    else if (r->host)
        add_header(b, "X-Forwarded-Host", r->host, r->host_len);
    if (trusted && (h = first_of(c, HDR_X_FORWARDED_PORT))) {
        add_header(b, "X-Forwarded-Port", h->value, h->value_len);
    } else {
        char port[20];
        add_header(b, "X-Forwarded-Port", port, fmt_u64(port, (uint64_t)c->listen_port));
    }
    if (trusted && (h = first_of(c, HDR_X_FORWARDED_PREFIX)))
        add_header(b, "X-Forwarded-Prefix", h->value, h->value_len);
    else if (stripped > 0)
        add_header(b, "X-Forwarded-Prefix", path, stripped);

    char real_ip[INET6_ADDRSTRLEN] = "";
    if (trusted && (h = first_of(c, HDR_X_FORWARDED_FOR)) &&
        header_real_ip_from_xff(&r->snap->config->weir, h->value, h->value_len, real_ip,
                                sizeof real_ip)) {
        /* The rightmost untrusted hop is the client. Only the first XFF line
         * is consulted when a client split the list over several lines. */
    } else {
        real_ip[0] = '\0'; /* the peer itself */
    }
    const char *real = real_ip[0] ? real_ip : c->peer_ip;
    add_header(b, "X-Real-IP", real, strlen(real));
    if (cert_headers && c->client_cert_subject) {
        add_header(b, "X-Client-Cert-Subject", c->client_cert_subject,
                   strlen(c->client_cert_subject));
        add_header(b, "X-Client-Cert-Fingerprint", c->client_cert_fingerprint, 64);
    }
    add_header(b, "X-Request-ID", r->request_id, r->request_id_len);
    adds(b, "Via: ");
    add_joined(b, c, HDR_VIA, &found);
    adds(b, found ? ", 1.1 weir\r\n" : "1.1 weir\r\n");

    size_t plugin_body_len;
    if (plugin_run_upstream_body(c, &plugin_body_len)) {
        /* a body a plugin read or replaced: sent whole, with its length */
        char cl[20];
        add_header(b, "Content-Length", cl, fmt_u64(cl, plugin_body_len));
    } else if (r->chunked) {
        adds(b, "Transfer-Encoding: chunked\r\n");
    } else if (r->has_content_length) {
        char cl[20];
        add_header(b, "Content-Length", cl, fmt_u64(cl, r->content_length));
    }
    if (r->upgrade && (h = first_of(c, HDR_UPGRADE))) {
        add_header(b, "Upgrade", h->value, h->value_len);
        adds(b, "Connection: upgrade\r\n");
    }
    add(b, "\r\n", 2);
}

/* ---- connection management ------------------------------------------------ */

static void free_upstream_bev(struct client_conn *c) {
    if (c->up.conn) {
        conn_free(c->up.conn);
        c->up.conn = NULL;
    }
}

void proxy_abort(struct client_conn *c) {
    free_upstream_bev(c);
    if (c->up.state != UP_IDLE) c->up.state = UP_DONE;
}

/* Passive health checks: the target this attempt went to, when an upstream's target with checks
 * on (a single pointer test otherwise). */
static const struct upstream_target *checked_target(const struct client_conn *c) {
    const struct upstream *u = c->req.match.route->service->upstream;
    if (c->up.target < 0 || !u) return NULL;
    const struct upstream_target *t = &u->targets[c->up.target];
    return t->health ? t : NULL;
}

static void report_failure(struct client_conn *c, enum health_event ev) {
    const struct upstream_target *t = checked_target(c);
    if (t) health_passive_event(c->req.match.route->service->upstream, t, ev);
}

static void fail(struct client_conn *c, int status, const char *msg) {
    free_upstream_bev(c);
    c->up.state = UP_DONE;
    if (c->req.response_started) {
        /* Part of the response is already with the client: the only honest
         * thing left is to cut the connection so it cannot look complete. */
        c->close_after = true;
        client_response_done(c);
        return;
    }
    client_send_error(c, status, msg, !c->req.body_done);
}

void proxy_start(struct client_conn *c) {
    /* A client that stops reading holds its upstream connection too: the
     * service's write_timeout bounds each wait to send it more (nginx's
     * send_timeout). */
    int ms = c->req.match.route->service->write_timeout_ms;
    struct timeval wt = {ms / 1000, (ms % 1000) * 1000};
    conn_set_timeouts(c->conn, NULL, &wt);
    build_upstream_head(c);
    c->up.attempts = 0;
    c->up.n_tried = 0;
    connect_attempt(c, true);
}

static void on_connected(struct client_conn *c) {
    const struct service *svc = c->req.match.route->service;
    c->up.state = UP_WAITING_HEAD;
    struct timeval rt = {svc->read_timeout_ms / 1000, (svc->read_timeout_ms % 1000) * 1000};
    struct timeval wt = {svc->write_timeout_ms / 1000, (svc->write_timeout_ms % 1000) * 1000};
    conn_set_timeouts(c->up.conn, &rt, &wt);
    conn_read_enable(c->up.conn);
    if (!c->req.body_done) client_start_body(c);
}

/* The request head, and a body a plugin read or replaced (the client's is streamed instead). */
static void send_head(struct client_conn *c) {
    struct evbuffer *out = conn_output(c->up.conn);
    evbuffer_add(out, c->uphead.data, c->uphead.len);
    size_t len;
    const char *body = plugin_run_upstream_body(c, &len);
    if (body && len) evbuffer_add(out, body, len);
}

/* The server name of an https upstream, sent as SNI and checked against its certificate: as
 * in Kong, the service's host, or the client's Host (without its port) with preserve_host. */
static void tls_server_name(struct client_conn *c, const struct service *svc, char *out,
                            size_t len) {
    const char *h = svc->host;
    size_t n = strlen(h);
    if (c->req.match.route->preserve_host && c->req.host && c->req.host_len) {
        h = c->req.host;
        n = c->req.host_len;
        if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
            h++;
            n -= 2;
        }
    }
    if (n >= len) n = len - 1;
    memcpy(out, h, n);
    out[n] = '\0';
}

static void connect_attempt(struct client_conn *c, bool allow_pool) {
    struct request *r = &c->req;
    const struct service *svc = r->match.route->service;
    struct upstream_side *up = &c->up;
    up->attempts++;
    if (c->run && c->run->target_len) { /* weir.service.set_target() */
        up->target = -1;
        up->addr = (const struct sockaddr *)&c->run->target;
        up->addrlen = c->run->target_len;
    } else if (svc->upstream) {
        const struct upstream *u = svc->upstream;
        int *state = snapshot_balancer_state(r->snap, u, c->worker->id);
        int t = balancer_pick(u, state, up->tried, up->n_tried);
        if (t < 0) {
            if (up->n_tried > 0)
                fail(c, 502, MSG_CONNECT); /* every target failed */
            else
                fail(c, 503, "failure to get a peer from the ring-balancer");
            return;
        }
        up->target = t;
        up->addr = (const struct sockaddr *)&u->targets[t].addr;
        up->addrlen = u->targets[t].addrlen;
    } else {
        up->target = -1;
        up->addr = (const struct sockaddr *)&svc->addr;
        up->addrlen = svc->addrlen;
    }
    up->addr_text[0] = '\0'; /* formatted on demand: proxy_upstream_addr() */

    http_parser_init(&up->parser, HTTP_RESPONSE);
    up->parser.data = c;
    up->head_scanned = 0;
    up->got_bytes = false;
    up->n_headers = 0;
    clock_gettime(CLOCK_MONOTONIC, &up->start);

    const struct tls_upstream_ctx *tx = NULL;
    up->tls = NULL;
    if (svc->tls) {
        tx = tls_upstream_for(r->snap->tls_upstreams, (size_t)(svc - r->snap->config->services));
        WEIR_BUG_ON(!tx);
        tls_server_name(c, svc, up->tls_name, sizeof up->tls_name);
        up->tls_key.digest = tx->digest;
        up->tls_key.name = up->tls_name;
        up->tls = &up->tls_key;
    }
    up->conn = allow_pool ? pool_acquire(c->worker->pool, up->addr, up->addrlen, up->tls) : NULL;
    up->reused = up->conn != NULL;
    if (up->reused) {
        conn_setcb(up->conn, up_read_cb, up_write_cb, up_event_cb, c);
        conn_set_watermarks(up->conn, PROXY_HIGH_WATERMARK, PROXY_LOW_WATERMARK);
        send_head(c);
        on_connected(c);
        return;
    }
    up->state = UP_CONNECTING;
    struct timeval ct = {svc->connect_timeout_ms / 1000, (svc->connect_timeout_ms % 1000) * 1000};
    up->conn = conn_connect(c->worker->base, up->addr, up->addrlen, &ct);
    if (!up->conn) {
        log_err("cannot create a socket for upstream %s", proxy_upstream_addr(c));
        fail(c, 502, MSG_CONNECT);
        return;
    }
    if (tx) {
        struct tls_conn *t =
            tls_conn_new_client(tx->ctx, conn_fd(up->conn), up->tls_name,
                                pool_session(c->worker->pool, up->addr, up->addrlen, up->tls));
        if (!t) {
            log_err("upstream TLS: cannot start a session with %s", proxy_upstream_addr(c));
            fail(c, 502, MSG_CONNECT);
            return;
        }
        conn_start_tls(up->conn, t);
    }
    conn_setcb(up->conn, up_read_cb, up_write_cb, up_event_cb, c);
    conn_set_watermarks(up->conn, PROXY_HIGH_WATERMARK, PROXY_LOW_WATERMARK);
    send_head(c);
}

/* Whether a failed attempt may be repeated: nothing reached the upstream
 * (connect failed), or an idempotent request without a body met a reused
 * keep-alive connection the server had closed (RFC 9110 9.2.2). */
static bool may_retry(struct client_conn *c, bool connect_failed) {
    struct upstream_side *up = &c->up;
    const struct service *svc = c->req.match.route->service;
    if (up->attempts > svc->retries) return false;
    if (connect_failed) return true;
    return up->reused && !up->got_bytes && c->req.idempotent && !c->req.body_started &&
           c->req.body_done;
}

static void up_event_cb(struct conn *conn, short what, void *arg) {
    struct client_conn *c = arg;
    struct upstream_side *up = &c->up;
    if (what & CONN_CONNECTED) {
        on_connected(c);
        return;
    }
    if (up->state == UP_CONNECTING) {
        bool timeout = what & CONN_TIMEOUT;
        if ((what & CONN_HANDSHAKE) && !timeout)
            log_err("upstream TLS: %s (upstream %s, server name \"%s\")", conn_tls_error(conn),
                    proxy_upstream_addr(c), up->tls_name);
        else
            log_warn("upstream %s: %s", proxy_upstream_addr(c),
                     timeout
                         ? (up->tls ? "connect or TLS handshake timed out" : "connect timed out")
                         : "connect failed");
        free_upstream_bev(c);
        report_failure(c, timeout ? HEALTH_TIMEOUT : HEALTH_TCP_FAILURE);
        if (up->target >= 0 && up->n_tried < sizeof up->tried / sizeof up->tried[0])
            up->tried[up->n_tried++] = up->target;
        bool other_target = up->target >= 0;
        if (other_target && may_retry(c, true)) {
            connect_attempt(c, true);
            return;
        }
        fail(c, timeout ? 504 : 502, timeout ? MSG_TIMEOUT : MSG_CONNECT);
        return;
    }
    if (up->state == UP_WAITING_HEAD) {
        if (what & CONN_TIMEOUT) {
            log_warn("upstream %s: timed out", proxy_upstream_addr(c));
            report_failure(c, HEALTH_TIMEOUT);
            fail(c, 504, MSG_TIMEOUT);
            return;
        }
        if (may_retry(c, false)) {
            /* A stale pooled connection: try once more on a fresh one. */
            free_upstream_bev(c);
            connect_attempt(c, false);
            return;
        }
        if (up->tls && (what & CONN_ERROR))
            /* e.g. a TLS 1.3 server refusing the client certificate after the handshake */
            log_err("upstream TLS: %s (upstream %s, server name \"%s\")", conn_tls_error(conn),
                    proxy_upstream_addr(c), up->tls_name);
        else
            log_warn("upstream %s: closed the connection before the response head",
                     proxy_upstream_addr(c));
        report_failure(c, HEALTH_TCP_FAILURE);
        fail(c, 502, MSG_BAD_RESPONSE);
        return;
    }
    if (c->state == CLIENT_TUNNEL) {
        /* The upstream ended the tunnel: flush what it sent, then close. */
        free_upstream_bev(c);
        up->state = UP_DONE;
        c->close_after = true;
        client_response_done(c);
        return;
    }
    if (up->state == UP_BODY) {
        if (what & CONN_EOF) {
            /* The end of a close-delimited body is the server closing. */
            if (HTTP_PARSER_ERRNO(&up->parser) == HPE_PAUSED) http_parser_pause(&up->parser, 0);
            http_parser_execute(&up->parser, &response_settings, NULL, 0);
            if (up->message_done) {
                finish_response(c);
                return;
            }
        }
        log_warn("upstream %s: response cut short", proxy_upstream_addr(c));
        fail(c, 502, MSG_BAD_RESPONSE);
    }
}

/* ---- response parsing ---------------------------------------------------- */

static int on_status(http_parser *p, const char *at, size_t len) {
    struct client_conn *c = p->data;
    if (!c->up.reason) c->up.reason = at;
    c->up.reason_len = (size_t)(at + len - c->up.reason);
    return 0;
}

static int on_resp_header_field(http_parser *p, const char *at, size_t len) {
    struct client_conn *c = p->data;
    struct upstream_side *up = &c->up;
    if (up->resp_headers_done) return 0;
    return header_collect_field(up->headers, &up->n_headers, up->cap_headers, at, len);
}

static int on_resp_header_value(http_parser *p, const char *at, size_t len) {
    struct client_conn *c = p->data;
    if (!c->up.resp_headers_done) header_collect_value(c->up.headers, c->up.n_headers, at, len);
    return 0;
}

static int on_resp_headers_complete(http_parser *p) {
    struct client_conn *c = p->data;
    c->up.resp_headers_done = true;
    /* Tell http-parser a HEAD response has no body whatever it declares;
     * informational responses have none either. */
    if (c->req.is_head || (p->status_code >= 100 && p->status_code < 200)) return 1;
    return 0;
}

static int on_resp_body(http_parser *p, const char *at, size_t len) {
    struct client_conn *c = p->data;
    if (c->run && c->run->buffering_response) {
        /* collected for the response phase; past the limit the exchange fails (502) */
        if (plugin_run_response_body(c, at, len)) return 0;
        log_warn("upstream %s: response body larger than weir.lua.response_buffer_limit, which "
                 "a plugin with BUFFER_RESPONSE needs whole",
                 proxy_upstream_addr(c));
        return -1;
    }
    struct evbuffer *out = conn_output(c->conn);
    if (c->req.response_chunked) {
        char size[20];
        size_t n = fmt_hex(size, len);
        size[n++] = '\r';
        size[n++] = '\n';
        evbuffer_add(out, size, n);
        evbuffer_add(out, at, len);
        evbuffer_add(out, "\r\n", 2);
        c->req.bytes_sent += n + len + 2;
    } else {
        evbuffer_add(out, at, len);
        c->req.bytes_sent += len;
    }
    return 0;
}

static int on_resp_message_complete(http_parser *p) {
    struct client_conn *c = p->data;
    c->up.message_done = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings response_settings = {
    .on_status = on_status,
    .on_header_field = on_resp_header_field,
    .on_header_value = on_resp_header_value,
    .on_headers_complete = on_resp_headers_complete,
    .on_body = on_resp_body,
    .on_message_complete = on_resp_message_complete,
};

/* Checks the response's framing fields; returns false for a response a
 * strict proxy must refuse (502). */
static bool check_response_headers(struct client_conn *c) {
    struct upstream_side *up = &c->up;
    int n_cl = 0, n_te = 0;
    const struct http_header *te = NULL;
    for (size_t i = 0; i < up->n_headers; i++) {
        struct http_header *h = &up->headers[i];
        header_finish(h);
        if (h->kind == HDR_CONTENT_LENGTH) {
            n_cl++;
            if (!head_parse_content_length(h->value, h->value_len, &up->resp_content_length))
                return false;
            up->resp_has_content_length = true;
        } else if (h->kind == HDR_TRANSFER_ENCODING) {
            n_te++;
            te = h;
        }
    }
    if (n_cl > 1 || n_te > 1 || (n_cl && n_te)) return false;
    if (te) {
        if (!(te->value_len == 7 && strncasecmp(te->value, "chunked", 7) == 0)) return false;
        up->chunked = true;
    }
    headers_mark_connection_named(up->headers, up->n_headers);
    return true;
}

/* The response fields after plugins' edits, and Via extended (the rest of the loop in
 * write_response_head() is for unedited responses). */
static void append_edited_fields(struct client_conn *c, struct bytebuf *b, bool *via_found) {
    struct hlist base = {0}, fields = {0};
    plugin_run_upstream_fields(c, &base);
    plugin_run_response_fields(c->run, &base, &fields);
    for (size_t i = 0; i < fields.n; i++) {
        bytebuf_append(b, fields.v[i].name, fields.v[i].nlen);
        bytebuf_append(b, ": ", 2);
        bytebuf_append(b, fields.v[i].value, fields.v[i].vlen);
        bytebuf_append(b, "\r\n", 2);
    }
    hlist_free(&base);
    hlist_free(&fields);
    for (size_t i = 0; i < c->up.n_headers; i++) {
        const struct http_header *h = &c->up.headers[i];
        if (h->kind != HDR_VIA) continue;
        bytebuf_append(b, h->name, h->name_len);
        bytebuf_append(b, ": ", 2);
        bytebuf_append(b, h->value, h->value_len);
        bytebuf_append(b, ", 1.1 weir\r\n", 12);
        *via_found = true;
    }
}

static void write_response_head(struct client_conn *c, int status, bool final) {
    struct request *r = &c->req;
    struct upstream_side *up = &c->up;
    struct bytebuf *b = &c->resp_out;
    b->len = 0;
    char line[20];
    bytebuf_append(b, "HTTP/1.1 ", 9);
    bytebuf_append(b, line, fmt_u64(line, (uint64_t)status));
    bytebuf_append(b, " ", 1);
    if (final && c->run && c->run->resp_status) /* a plugin's status: its own phrase */
        bytebuf_append(b, http_reason_phrase(status), strlen(http_reason_phrase(status)));
    else
        bytebuf_append(b, up->reason ? up->reason : "", up->reason ? up->reason_len : 0);
    bytebuf_append(b, "\r\n", 2);
    bool via_found = false;
    const struct plugin_run *run = c->run;
    bool edited = final && run && (run->n_resp_ops || run->resp_status);
    if (edited) append_edited_fields(c, b, &via_found);
    for (size_t i = 0; !edited && i < up->n_headers; i++) {
        const struct http_header *h = &up->headers[i];
        if (h->drop) continue;
        if (h->kind == HDR_VIA) {
            bytebuf_append(b, h->name, h->name_len);
            bytebuf_append(b, ": ", 2);
            bytebuf_append(b, h->value, h->value_len);
            bytebuf_append(b, ", 1.1 weir\r\n", 12);
            via_found = true;
            continue;
        }
        if (status == 101 && (h->kind == HDR_UPGRADE || h->kind == HDR_CONNECTION)) {
            /* the tunnel needs them */
        } else if (header_is_hop_by_hop(h->kind) || h->kind == HDR_CONTENT_LENGTH ||
                   h->kind == HDR_X_REQUEST_ID) {
            continue;
        }
        bytebuf_append(b, h->name, h->name_len);
        bytebuf_append(b, ": ", 2);
        bytebuf_append(b, h->value, h->value_len);
        bytebuf_append(b, "\r\n", 2);
    }
    if (final) {
        bool no_body = r->is_head || status == 204 || status == 304 || status < 200;
        if (no_body) {
            if (up->resp_has_content_length && status != 204) {
                bytebuf_append(b, "Content-Length: ", 16);
                bytebuf_append(b, line, fmt_u64(line, up->resp_content_length));
                bytebuf_append(b, "\r\n", 2);
            }
        } else if (up->resp_has_content_length) {
            bytebuf_append(b, "Content-Length: ", 16);
            bytebuf_append(b, line, fmt_u64(line, up->resp_content_length));
            bytebuf_append(b, "\r\n", 2);
        } else if (r->http_minor == 1) {
            r->response_chunked = true;
            bytebuf_append(b, "Transfer-Encoding: chunked\r\n", 28);
        } else {
            r->response_close_delimited = true;
            c->close_after = true;
        }
        bytebuf_append(b, "X-Request-ID: ", 14);
        bytebuf_append(b, r->request_id, r->request_id_len);
        bytebuf_append(b, "\r\n", 2);
        if (!via_found) bytebuf_append(b, "Via: 1.1 weir\r\n", 15);
        if (status != 101) {
            if (c->close_after || c->eof || c->worker->stopping)
                bytebuf_append(b, "Connection: close\r\n", 19);
            else if (r->http_minor == 0)
                bytebuf_append(b, "Connection: keep-alive\r\n", 24);
        }
    }
    bytebuf_append(b, "\r\n", 2);
    evbuffer_add(conn_output(c->conn), b->data, b->len);
    r->bytes_sent += b->len;
}

static void finish_response(struct client_conn *c) {
    struct request *r = &c->req;
    struct upstream_side *up = &c->up;
    if (r->response_chunked) {
        evbuffer_add(conn_output(c->conn), "0\r\n\r\n", 5);
        r->bytes_sent += 5;
    }
    bool reusable = http_should_keep_alive(&up->parser) && r->body_done && !r->upgrade &&
                    evbuffer_get_length(conn_input(up->conn)) == 0 &&
                    evbuffer_get_length(conn_output(up->conn)) == 0 && !c->worker->stopping;
    if (up->tls) /* a session the server gave for resuming later connections */
        pool_save_session(c->worker->pool, up->addr, up->addrlen, up->tls,
                          tls_conn_take_session(conn_tls(up->conn)));
    if (reusable) {
        pool_release(c->worker->pool, up->addr, up->addrlen, up->tls, up->conn);
        up->conn = NULL;
    }
    free_upstream_bev(c);
    up->state = UP_DONE;
    if (c->run && c->run->buffering_response) {
        /* the whole body is here: now the response phase, then the client gets it */
        if (!plugin_run_response(c)) proxy_response_continue(c);
        return;
    }
    client_response_done(c);
}

/* Feeds response body bytes to http-parser (and the chunk checker), with
 * back-pressure from the client's output buffer. */
static void feed_response_body(struct client_conn *c) {
    struct upstream_side *up = &c->up;
    struct evbuffer *in = conn_input(up->conn);
    struct evbuffer *out = conn_output(c->conn);
    while (!up->message_done && evbuffer_get_length(in) > 0) {
        if (evbuffer_get_length(out) >= PROXY_HIGH_WATERMARK) {
            up->read_paused = true;
            conn_read_disable(up->conn);
            return;
        }
        struct evbuffer_iovec vec;
        if (evbuffer_peek(in, -1, NULL, &vec, 1) < 1) return;
        size_t len = vec.iov_len;
        if (len > PROXY_HIGH_WATERMARK) len = PROXY_HIGH_WATERMARK;
        if (up->chunked) {
            const char *why = NULL;
            size_t ok = chunk_check_feed(&up->chunk, vec.iov_base, len, &why);
            if (ok == (size_t)-1) {
                log_warn("upstream %s: bad chunked body: %s", proxy_upstream_addr(c), why);
                fail(c, 502, MSG_BAD_RESPONSE);
                return;
            }
            len = ok;
        }
        size_t parsed = http_parser_execute(&up->parser, &response_settings, vec.iov_base, len);
        enum http_errno err = HTTP_PARSER_ERRNO(&up->parser);
        evbuffer_drain(in, parsed);
        if (err != HPE_OK && err != HPE_PAUSED) {
            log_warn("upstream %s: bad response body: %s", proxy_upstream_addr(c),
                     http_errno_description(err));
            fail(c, 502, MSG_BAD_RESPONSE);
            return;
        }
    }
    if (up->message_done) finish_response(c);
}

/* Reads and handles response heads until a final one arrives (1xx heads are
 * forwarded to HTTP/1.1 clients as they come). */
static void read_response_head(struct client_conn *c) {
    struct upstream_side *up = &c->up;
    struct request *r = &c->req;
    const struct weir_limits *lim = &r->snap->config->weir.limits;
    struct evbuffer *in = conn_input(up->conn);
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0) return;
        up->got_bytes = true;
        size_t scan_len = avail < lim->max_header_bytes + 4 ? avail : lim->max_header_bytes + 4;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)scan_len);
        size_t head_len = 0;
        int n_fields = 0;
        const char *reason = NULL;
        enum head_status hs =
            head_check(buf, scan_len, false, &up->head_scanned, &head_len, &n_fields, &reason);
        if (hs == HEAD_INCOMPLETE) {
            if (scan_len >= lim->max_header_bytes) {
                log_warn("upstream %s: response head too large", proxy_upstream_addr(c));
                fail(c, 502, MSG_BAD_RESPONSE);
            }
            return;
        }
        if (hs == HEAD_BAD || head_len > lim->max_header_bytes) {
            log_warn("upstream %s: malformed response head: %s", proxy_upstream_addr(c),
                     reason ? reason : "too large");
            fail(c, 502, MSG_BAD_RESPONSE);
            return;
        }
        c->resp_head.len = 0;
        bytebuf_append(&c->resp_head, buf, head_len);
        evbuffer_drain(in, head_len);
        up->head_scanned = 0;
        if ((size_t)n_fields + 1 > up->cap_headers) {
            up->cap_headers = (size_t)n_fields + 16;
            free(up->headers);
            up->headers = malloc(up->cap_headers * sizeof *up->headers);
            if (!up->headers) abort();
        }
        up->n_headers = 0;
        up->reason = NULL;
        up->reason_len = 0;
        up->resp_headers_done = false;
        up->message_done = false;
        up->chunked = false;
        up->resp_has_content_length = false;
        if (HTTP_PARSER_ERRNO(&up->parser) == HPE_PAUSED) http_parser_pause(&up->parser, 0);
        http_parser_execute(&up->parser, &response_settings, c->resp_head.data, c->resp_head.len);
        enum http_errno err = HTTP_PARSER_ERRNO(&up->parser);
        if ((err != HPE_OK && err != HPE_PAUSED) || !check_response_headers(c)) {
            log_warn("upstream %s: malformed response head: %s", proxy_upstream_addr(c),
                     err != HPE_OK && err != HPE_PAUSED ? http_errno_description(err)
                                                        : "bad framing headers");
            fail(c, 502, MSG_BAD_RESPONSE);
            return;
        }
        int status = (int)up->parser.status_code;
        if (status >= 100 && status < 200 && status != 101) {
            /* Interim response: pass it on, then wait for the next head. */
            if (r->http_minor == 1) write_response_head(c, status, false);
            http_parser_init(&up->parser, HTTP_RESPONSE);
            up->parser.data = c;
            continue;
        }
        up->status = status;
        up->latency_ms = clock_ms_since(&up->start);
        const struct upstream_target *checked = checked_target(c);
        if (checked) health_passive_status(r->match.route->service->upstream, checked, status);
        r->status = status;
        if (status == 101) {
            if (!r->upgrade) {
                log_warn("upstream %s: 101 to a request that did not ask to upgrade",
                         proxy_upstream_addr(c));
                fail(c, 502, MSG_BAD_RESPONSE);
                return;
            }
            write_response_head(c, status, true);
            client_response_head_sent(c);
            up->state = UP_BODY;
            c->close_after = true;
            client_start_tunnel(c);
            return;
        }
        if (c->run && plugin_run_buffers_response(c)) {
            /* a plugin wants the whole body: read it all before the response phase */
            c->run->buffering_response = true;
            up->state = UP_BODY;
            if (up->chunked) chunk_check_init(&up->chunk);
            if (up->message_done)
                finish_response(c);
            else
                feed_response_body(c);
            return;
        }
        if (c->run && plugin_run_response(c)) {
            /* Plugins took over. When one of them waits, the body waits in the socket until
             * they are done (proxy_response_continue() reads again); when they were done at
             * once, the response is already on its way and reading never stopped. */
            if (c->run && c->run->phase == PLUGIN_RESPONSE && up->conn) conn_read_disable(up->conn);
            return;
        }
        proxy_response_continue(c);
        return;
    }
}

void proxy_response_continue(struct client_conn *c) {
    struct upstream_side *up = &c->up;
    struct request *r = &c->req;
    int status = c->run && c->run->resp_status ? c->run->resp_status : up->status;
    r->status = status;
    if (c->run && c->run->buffering_response) {
        /* the body (as plugins left it) goes out whole, with its length */
        size_t len;
        const char *body = plugin_run_buffered_body(c, &len);
        up->resp_has_content_length = true;
        up->resp_content_length = len;
        write_response_head(c, status, true);
        client_response_head_sent(c);
        if (!(r->is_head || status == 204 || status == 304)) {
            evbuffer_add(conn_output(c->conn), body, len);
            r->bytes_sent += len;
        }
        client_response_done(c);
        return;
    }
    write_response_head(c, status, true);
    client_response_head_sent(c);
    up->state = UP_BODY;
    if (up->chunked) chunk_check_init(&up->chunk);
    if (up->message_done) {
        finish_response(c);
        return;
    }
    conn_read_enable(up->conn);
    feed_response_body(c);
}

static void tunnel_relay(struct conn *from, struct conn *to) {
    evbuffer_add_buffer(conn_output(to), conn_input(from));
    if (evbuffer_get_length(conn_output(to)) >= PROXY_HIGH_WATERMARK) conn_read_disable(from);
}

static void up_read_cb(struct conn *conn, void *arg) {
    (void)conn;
    struct client_conn *c = arg;
    if (c->state == CLIENT_TUNNEL) {
        tunnel_relay(c->up.conn, c->conn);
        return;
    }
    switch (c->up.state) {
    case UP_WAITING_HEAD:
        read_response_head(c);
        break;
    case UP_BODY:
        feed_response_body(c);
        break;
    default:
        break;
    }
}

static void up_write_cb(struct conn *conn, void *arg) {
    (void)conn;
    struct client_conn *c = arg;
    if (c->state == CLIENT_TUNNEL) {
        conn_read_enable(c->conn);
        if (c->eof && evbuffer_get_length(conn_output(c->up.conn)) == 0)
            conn_shutdown_write(c->up.conn);
        return;
    }
    client_resume_read(c);
}

const char *proxy_upstream_addr(struct client_conn *c) {
    struct upstream_side *up = &c->up;
    if (!up->addr) return NULL;
    if (up->addr_text[0]) return up->addr_text;
    char ip[INET6_ADDRSTRLEN];
    if (up->addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)up->addr;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        snprintf(up->addr_text, sizeof up->addr_text, "[%s]:%d", ip, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)up->addr;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        snprintf(up->addr_text, sizeof up->addr_text, "%s:%d", ip, ntohs(s4->sin_port));
    }
    return up->addr_text;
}

bool proxy_upstream_output_full(const struct client_conn *c) {
    return c->up.conn && evbuffer_get_length(conn_output(c->up.conn)) >= PROXY_HIGH_WATERMARK;
}

void proxy_forward_body(struct client_conn *c, const char *data, size_t len) {
    struct evbuffer *out = conn_output(c->up.conn);
    if (c->req.chunked) {
        char size[20];
        size_t n = fmt_hex(size, len);
        size[n++] = '\r';
        size[n++] = '\n';
        evbuffer_add(out, size, n);
        evbuffer_add(out, data, len);
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add(out, data, len);
    }
}

void proxy_body_done(struct client_conn *c) {
    size_t len;
    if (plugin_run_upstream_body(c, &len)) return; /* sent whole with the head */
    if (c->req.chunked && c->up.conn) evbuffer_add(conn_output(c->up.conn), "0\r\n\r\n", 5);
}

void proxy_client_drained(struct client_conn *c) {
    if (c->state == CLIENT_TUNNEL) {
        if (c->up.conn) conn_read_enable(c->up.conn);
        return;
    }
    if (c->up.read_paused && c->up.conn) {
        c->up.read_paused = false;
        conn_read_enable(c->up.conn);
        feed_response_body(c);
    }
}

void proxy_tunnel_from_client(struct client_conn *c) {
    if (!c->up.conn) return;
    /* Anything the upstream sent right after its 101 goes to the client. */
    if (evbuffer_get_length(conn_input(c->up.conn))) tunnel_relay(c->up.conn, c->conn);
    tunnel_relay(c->conn, c->up.conn);
    conn_read_enable(c->up.conn);
}

void proxy_tunnel_client_eof(struct client_conn *c) {
    if (!c->up.conn) {
        client_conn_close(c);
        return;
    }
    if (evbuffer_get_length(conn_output(c->up.conn)) == 0) conn_shutdown_write(c->up.conn);
}
