#include "http/client_conn.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/access_log.h"
#include "core/fmt.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/worker.h"
#include "http/error_response.h"
#include "http/path.h"
#include "lua/plugin_run.h"
#include "tls/tls_conn.h"
#include "upstream/proxy.h"

/* How long a closing connection keeps reading (and discarding) after the
 * last response, so that unread request bytes do not make the kernel reset
 * the connection before the client read the response (nginx's lingering
 * close). */
#define LINGER_MS 2000

static void client_read_cb(struct conn *conn, void *arg);
static void client_write_cb(struct conn *conn, void *arg);
static void client_event_cb(struct conn *conn, short what, void *arg);
static void process_head(struct client_conn *c);
static void feed_body(struct client_conn *c);

/* ---- byte buffers ------------------------------------------------------ */

void bytebuf_grow(struct bytebuf *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra)
        cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data) abort();
    b->cap = cap;
}

/* ---- timers and lifetime ------------------------------------------------ */

static const struct weir_limits *limits_of(struct client_conn *c) {
    return &c->worker->snapshot->config->weir.limits;
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void timer_arm(struct client_conn *c, uint64_t deadline, uint64_t now) {
    uint64_t ms = deadline > now ? deadline - now : 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    c->timer_armed_ms = deadline;
}

/* One timer per connection, moved lazily: every request pushes the
 * deadline later, and re-adding a libevent timer each time costs heap
 * work on the request path. The timer is only re-added when the new
 * deadline is earlier than the armed one; when it fires early it re-arms
 * for the rest (timer_cb). */
static void timer_set(struct client_conn *c, int ms) {
    uint64_t now = now_ms();
    c->deadline_ms = now + (uint64_t)ms;
    if (!c->timer_armed_ms || c->timer_armed_ms > c->deadline_ms) timer_arm(c, c->deadline_ms, now);
}

static void timer_clear(struct client_conn *c) {
    c->deadline_ms = 0;
}

static void schedule(struct client_conn *c) {
    event_active(c->deferred, 0, 0);
}

void client_conn_close(struct client_conn *c) {
    c->want_close = true;
    conn_read_disable(c->conn);
    schedule(c);
}

static void release_request(struct client_conn *c) {
    snapshot_release_deferred(c->req.snap); /* freed, if last, by the control thread */
    c->req.snap = NULL;
}

static void client_conn_destroy(struct client_conn *c) {
    proxy_abort(c);
    plugin_run_free(c);
    release_request(c);
    conn_free(c->conn);
    event_free(c->timer);
    event_free(c->deferred);
    free(c->head.data);
    free(c->path.data);
    free(c->uphead.data);
    free(c->resp_head.data);
    free(c->resp_out.data);
    free(c->headers);
    free(c->up.headers);
    free(c->client_cert_subject);
    struct worker *w = c->worker;
    worker_conn_removed(w, c);
    free(c);
}

/* Half-closes our side once everything is flushed, then discards what the
 * client still sends until it closes or LINGER_MS pass. As in nginx, only a
 * client that may still be sending lingers (its request body was not read to
 * the end, or bytes past its request are here); any other is closed at once,
 * without the half-close, the extra read and the event changes. */
static void start_lingering(struct client_conn *c) {
    if (c->req.body_done && evbuffer_get_length(conn_input(c->conn)) == 0) {
        client_conn_close(c);
        return;
    }
    c->state = CLIENT_LINGERING;
    conn_shutdown_write(c->conn);
    evbuffer_drain(conn_input(c->conn), evbuffer_get_length(conn_input(c->conn)));
    if (c->eof) {
        client_conn_close(c);
        return;
    }
    conn_read_enable(c->conn);
    timer_set(c, LINGER_MS);
}

static void deferred_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct client_conn *c = arg;
    if (c->want_close) {
        client_conn_destroy(c);
        return;
    }
    if (c->want_next) {
        c->want_next = false;
        if (c->state == CLIENT_READING_HEAD) process_head(c);
    }
}

static void timer_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct client_conn *c = arg;
    c->timer_armed_ms = 0;
    if (!c->deadline_ms) return;
    uint64_t now = now_ms();
    if (now < c->deadline_ms) {
        timer_arm(c, c->deadline_ms, now);
        return;
    }
    c->deadline_ms = 0;
    if (c->tls_handshaking) {
        log_info("TLS handshake with %s on port %d: timed out", c->peer_ip, c->listen_port);
        client_conn_close(c);
        return;
    }
    if (c->state == CLIENT_LINGERING || c->state == CLIENT_DRAINING) {
        client_conn_close(c);
        return;
    }
    if (c->state != CLIENT_READING_HEAD) return;
    if (evbuffer_get_length(conn_input(c->conn)) == 0 && c->head_scanned == 0 &&
        !c->req.start.tv_sec) {
        /* An idle keep-alive connection: close quietly. */
        client_conn_close(c);
        return;
    }
    client_send_error(c, 408, "request timeout: head not received in time", true);
}

void client_conn_new(struct worker *w, int fd, const struct sockaddr *peer, int listen_port,
                     struct tls_conn *tls) {
    struct client_conn *c = calloc(1, sizeof *c);
    if (!c) abort();
    c->worker = w;
    c->listen_port = listen_port;
    c->serial = ++w->conn_serials;
    c->tls = c->tls_handshaking = tls != NULL;
    if (peer->sa_family == AF_INET6) {
        memcpy(&c->peer, peer, sizeof(struct sockaddr_in6));
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)peer)->sin6_addr, c->peer_ip,
                  sizeof c->peer_ip);
    } else {
        memcpy(&c->peer, peer, sizeof(struct sockaddr_in));
        inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, c->peer_ip,
                  sizeof c->peer_ip);
    }
    c->peer_trusted = config_ip_trusted(&w->snapshot->config->weir, peer);
    c->conn = tls ? conn_new_tls(w->base, fd, tls) : conn_new(w->base, fd);
    c->timer = evtimer_new(w->base, timer_cb, c);
    c->deferred = event_new(w->base, -1, 0, deferred_cb, c);
    c->state = CLIENT_READING_HEAD;
    c->up.state = UP_IDLE;
    worker_conn_added(w, c);
    const struct weir_limits *lim = limits_of(c);
    /* Bound what a client can queue (pipelined requests, body bytes the
     * upstream is not taking yet): reading stops above this. */
    conn_set_watermarks(c->conn, lim->max_header_bytes + PROXY_HIGH_WATERMARK, PROXY_LOW_WATERMARK);
    conn_setcb(c->conn, client_read_cb, client_write_cb, client_event_cb, c);
    conn_read_enable(c->conn);
    /* TLS: the handshake has its own time limit; the head's starts when it is done */
    timer_set(c, tls ? w->snapshot->config->weir.ssl_handshake_timeout_ms : lim->header_timeout_ms);
}

void client_conn_shutdown(struct client_conn *c) {
    if (c->state == CLIENT_READING_HEAD && c->head_scanned == 0 &&
        evbuffer_get_length(conn_input(c->conn)) == 0) {
        client_conn_close(c);
        return;
    }
    c->close_after = true;
}

/* ---- access log ---------------------------------------------------------- */

/* Appends s as JSON string contents (escaping quotes, backslashes, controls
 * and bytes >= 0x80, which a request path may not be valid UTF-8 for). */
static void json_escape(struct bytebuf *b, const char *s, size_t n) {
    bytebuf_reserve(b, n * 6 + 2);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            b->data[b->len++] = '\\';
            b->data[b->len++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            b->len += (size_t)snprintf(b->data + b->len, 7, "\\u%04x", ch);
        } else {
            b->data[b->len++] = (char)ch;
        }
    }
}

static void json_field_str(struct bytebuf *b, const char *key, const char *v, size_t n,
                           bool comma) {
    if (comma) bytebuf_append(b, ",", 1);
    bytebuf_append(b, "\"", 1);
    bytebuf_append(b, key, strlen(key));
    bytebuf_append(b, "\":", 2);
    if (!v) {
        bytebuf_append(b, "null", 4);
        return;
    }
    bytebuf_append(b, "\"", 1);
    json_escape(b, v, n);
    bytebuf_append(b, "\"", 1);
}

static void log_request(struct client_conn *c) {
    struct access_log *alog = c->worker->access_log;
    if (!alog) return;
    struct request *r = &c->req;
    struct bytebuf b = {0};
    char tbuf[64];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    size_t tl = strftime(tbuf, sizeof tbuf, "%Y-%m-%dT%H:%M:%S", &tm);
    tl += (size_t)snprintf(tbuf + tl, sizeof tbuf - tl, ".%03ldZ", now.tv_nsec / 1000000);
    bytebuf_append(&b, "{", 1);
    json_field_str(&b, "time", tbuf, tl, false);
    json_field_str(&b, "request_id", r->request_id, r->request_id_len, true);
    json_field_str(&b, "client_ip", c->peer_ip, strlen(c->peer_ip), true);
    json_field_str(&b, "method", r->method, r->method_len, true);
    const char *path = r->target;
    size_t path_len = r->target_len;
    if (path) {
        const char *q = memchr(path, '?', path_len);
        if (q) path_len = (size_t)(q - path);
    }
    json_field_str(&b, "path", path, path_len, true);
    char num[128];
    int n = snprintf(num, sizeof num, ",\"status\":%d,\"bytes_sent\":%llu", r->status,
                     (unsigned long long)r->bytes_sent);
    bytebuf_append(&b, num, (size_t)n);
    const struct route *route = r->routed ? r->match.route : NULL;
    const char *rname = route ? (route->name ? route->name : route->id) : NULL;
    json_field_str(&b, "route", rname, rname ? strlen(rname) : 0, true);
    const struct service *svc = route ? route->service : NULL;
    const char *sname = svc ? (svc->name ? svc->name : svc->id) : NULL;
    json_field_str(&b, "service", sname, sname ? strlen(sname) : 0, true);
    const char *upstream_addr = proxy_upstream_addr(c);
    json_field_str(&b, "upstream_addr", upstream_addr, upstream_addr ? strlen(upstream_addr) : 0,
                   true);
    if (c->up.status)
        n = snprintf(num, sizeof num, ",\"upstream_status\":%d", c->up.status);
    else
        n = snprintf(num, sizeof num, ",\"upstream_status\":null");
    bytebuf_append(&b, num, (size_t)n);
    n = snprintf(num, sizeof num, ",\"latency_ms\":%.3f", clock_ms_since(&r->start));
    bytebuf_append(&b, num, (size_t)n);
    if (c->up.status)
        n = snprintf(num, sizeof num, ",\"upstream_latency_ms\":%.3f}", c->up.latency_ms);
    else
        n = snprintf(num, sizeof num, ",\"upstream_latency_ms\":null}");
    bytebuf_append(&b, num, (size_t)n);
    access_log_write(alog, c->worker->id, b.data, b.len);
    free(b.data);
}

/* ---- responses made by the gateway -------------------------------------- */

static void ensure_request_id(struct client_conn *c) {
    if (c->req.request_id_len) return;
    worker_request_id(c->worker, c->req.request_id);
    c->req.request_id_len = 36;
}

/* client_send_error() with more header fields (`extra`: complete "Name: value\r\n" lines). */
static void send_error_with(struct client_conn *c, int status, const char *message,
                            const char *extra, bool close);

void client_send_error(struct client_conn *c, int status, const char *message, bool close) {
    send_error_with(c, status, message, NULL, close);
}

static void send_error_with(struct client_conn *c, int status, const char *message,
                            const char *extra, bool close) {
    WEIR_BUG_ON(c->req.response_started);
    ensure_request_id(c);
    if (!c->req.start.tv_sec) clock_gettime(CLOCK_MONOTONIC, &c->req.start);
    proxy_abort(c);
    char body[768];
    size_t body_len = error_body_json(body, sizeof body, message, c->req.request_id);
    if (body_len >= sizeof body) body_len = sizeof body - 1;
    if (close) c->close_after = true;
    /* the response phase's plugins see gateway errors too (source "error"), as in Kong */
    if (c->run && plugin_run_gateway_error(c, status, body, body_len)) return;
    close = c->close_after;
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nX-Request-ID: %s\r\nServer: weir\r\n",
                     status, http_reason_phrase(status), body_len, c->req.request_id);
    struct evbuffer *out = conn_output(c->conn);
    evbuffer_add(out, head, (size_t)n);
    if (extra) {
        evbuffer_add(out, extra, strlen(extra));
        n += (int)strlen(extra);
    }
    const char *end = close ? "Connection: close\r\n\r\n" : "\r\n";
    evbuffer_add(out, end, strlen(end));
    n += (int)strlen(end);
    if (!c->req.is_head) evbuffer_add(out, body, body_len);
    c->req.status = status;
    c->req.response_started = true;
    c->req.bytes_sent += (size_t)n + (c->req.is_head ? 0 : body_len);
    if (c->state == CLIENT_READING_HEAD) c->state = CLIENT_PROXYING;
    client_response_done(c);
}

/* ---- request head parsing (http-parser callbacks) ------------------------ */

static int on_url(http_parser *p, const char *at, size_t len) {
    struct client_conn *c = p->data;
    if (!c->req.target) c->req.target = at;
    c->req.target_len = (size_t)(at + len - c->req.target);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
    struct client_conn *c = p->data;
    if (c->req.headers_done) return 0; /* trailer fields are not forwarded */
    return header_collect_field(c->headers, &c->req.n_headers, c->cap_headers, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
    struct client_conn *c = p->data;
    if (!c->req.headers_done) header_collect_value(c->headers, c->req.n_headers, at, len);
    return 0;
}

static int on_headers_complete(http_parser *p) {
    struct client_conn *c = p->data;
    c->req.headers_done = true;
    c->req.upgrade = p->upgrade;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
    struct client_conn *c = p->data;
    struct request *r = &c->req;
    r->body_received += len;
    uint64_t max = limits_of(c)->max_body_bytes;
    if (max && r->body_received > max) return -1; /* reported as 413 by feed_body */
    if (c->run && c->run->body_waiter) {          /* a plugin reads the body first */
        plugin_run_body_append(c, at, len);
        return 0;
    }
    if (c->run && c->run->up_body_set) return 0; /* a plugin replaced it: read and dropped */
    r->body_started = true;
    proxy_forward_body(c, at, len);
    return 0;
}

static int on_message_complete(http_parser *p) {
    struct client_conn *c = p->data;
    c->req.body_done = true;
    http_parser_pause(p, 1); /* the next pipelined request waits for this response */
    return 0;
}

static const http_parser_settings request_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static bool is_host_char(unsigned char ch) {
    return isalnum(ch) || strchr("-._~!$&'()*+,;=%", ch) != NULL;
}

/* Validates a Host value (reg-name or IP literal, optional :port) and sets
 * the host without port. */
static bool parse_host(struct request *r, const char *v, size_t len) {
    if (len == 0) return false;
    size_t i = 0, host_end;
    if (v[0] == '[') {
        const char *close = memchr(v, ']', len);
        if (!close) return false;
        for (const char *q = v + 1; q < close; q++)
            if (!isxdigit((unsigned char)*q) && *q != ':' && *q != '.') return false;
        i = (size_t)(close - v) + 1;
        host_end = i;
    } else {
        while (i < len && v[i] != ':') {
            if (!is_host_char((unsigned char)v[i])) return false;
            i++;
        }
        host_end = i;
        if (host_end == 0) return false;
    }
    if (i < len) {
        if (v[i] != ':') return false;
        size_t digits = 0;
        for (i++; i < len; i++, digits++)
            if (!isdigit((unsigned char)v[i])) return false;
        if (digits > 5) return false;
    }
    r->host = v;
    r->host_len = host_end;
    r->host_full = v;
    r->host_full_len = len;
    return true;
}

static bool is_token_list(const char *v, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (!(isalnum(ch) || strchr("!#$%&'*+-.^_`|~, \t", ch))) return false;
    }
    return true;
}

/* Applies the framing and header rules http-parser does not (or not in a
 * way that gives the right status). Returns 0 or an HTTP status, with the
 * reason in *why. */
static int check_request_headers(struct client_conn *c, const char **why) {
    struct request *r = &c->req;
    int n_host = 0, n_cl = 0, n_te = 0;
    const struct http_header *te = NULL;
    for (size_t i = 0; i < r->n_headers; i++) {
        struct http_header *h = &c->headers[i];
        header_finish(h);
        switch (h->kind) {
        case HDR_HOST:
            n_host++;
            if (n_host == 1 && !parse_host(r, h->value, h->value_len)) {
                *why = "invalid Host header";
                return 400;
            }
            break;
        case HDR_CONTENT_LENGTH:
            n_cl++;
            if (!head_parse_content_length(h->value, h->value_len, &r->content_length)) {
                *why = "invalid Content-Length header";
                return 400;
            }
            r->has_content_length = true;
            break;
        case HDR_TRANSFER_ENCODING:
            n_te++;
            te = h;
            break;
        case HDR_EXPECT:
            if (h->value_len == 12 && strncasecmp(h->value, "100-continue", 12) == 0)
                r->expect_continue = true;
            break;
        case HDR_X_REQUEST_ID:
            if (!r->request_id_len && header_request_id_valid(h->value, h->value_len)) {
                memcpy(r->request_id, h->value, h->value_len);
                r->request_id[h->value_len] = '\0';
                r->request_id_len = h->value_len;
            }
            break;
        default:
            break;
        }
    }
    if (n_host > 1) {
        *why = "more than one Host header";
        return 400;
    }
    if (n_host == 0 && r->http_minor == 1) {
        *why = "missing Host header";
        return 400;
    }
    if (n_cl > 1) {
        *why = "more than one Content-Length header";
        return 400;
    }
    if (n_te) {
        if (r->http_minor == 0) {
            *why = "Transfer-Encoding is not allowed in HTTP/1.0";
            return 400;
        }
        if (n_cl) {
            *why = "both Content-Length and Transfer-Encoding";
            return 400;
        }
        if (n_te > 1) {
            *why = "more than one Transfer-Encoding header";
            return 400;
        }
        if (!(te->value_len == 7 && strncasecmp(te->value, "chunked", 7) == 0)) {
            if (!is_token_list(te->value, te->value_len) || te->value_len == 0) {
                *why = "invalid Transfer-Encoding header";
                return 400;
            }
            /* Codings Weir does not implement are 501; a list of nothing but
             * "chunked" ("chunked, chunked") is malformed. */
            bool only_chunked = true;
            for (size_t i = 0; i < te->value_len;) {
                while (i < te->value_len &&
                       (te->value[i] == ',' || te->value[i] == ' ' || te->value[i] == '\t'))
                    i++;
                size_t start = i;
                while (i < te->value_len && te->value[i] != ',' && te->value[i] != ' ' &&
                       te->value[i] != '\t')
                    i++;
                if (i > start &&
                    !(i - start == 7 && strncasecmp(te->value + start, "chunked", 7) == 0))
                    only_chunked = false;
            }
            *why =
                only_chunked ? "invalid Transfer-Encoding header" : "unsupported transfer coding";
            return only_chunked ? 400 : 501;
        }
        r->chunked = true;
    }
    headers_mark_connection_named(c->headers, r->n_headers);
    return 0;
}

/* Splits the request target into path and query, accepting origin-form
 * ("/p?q") and absolute-form ("http://host/p?q", whose authority replaces
 * Host as RFC 9112 3.2.2 requires). Writes the normalised path. */
static int parse_target(struct client_conn *c, const char **why) {
    struct request *r = &c->req;
    const char *t = r->target;
    size_t len = r->target_len;
    if (!t || len == 0) {
        *why = "malformed request target";
        return 400;
    }
    if (t[0] != '/') {
        struct http_parser_url u;
        http_parser_url_init(&u);
        if (http_parser_parse_url(t, len, 0, &u) != 0 || !(u.field_set & (1 << UF_HOST)) ||
            !(u.field_set & (1 << UF_SCHEMA))) {
            *why = "malformed request target";
            return 400;
        }
        const char *schema = t + u.field_data[UF_SCHEMA].off;
        size_t schema_len = u.field_data[UF_SCHEMA].len;
        if (!((schema_len == 4 && strncasecmp(schema, "http", 4) == 0) ||
              (schema_len == 5 && strncasecmp(schema, "https", 5) == 0))) {
            *why = "malformed request target";
            return 400;
        }
        /* The authority runs from the host to the end of the port, if any. */
        const char *auth = t + u.field_data[UF_HOST].off;
        size_t auth_len = u.field_data[UF_HOST].len;
        if (auth > t && auth[-1] == '[') auth--, auth_len += 2;
        if (u.field_set & (1 << UF_PORT))
            auth_len = (size_t)(t + u.field_data[UF_PORT].off + u.field_data[UF_PORT].len - auth);
        if (!parse_host(r, auth, auth_len)) {
            *why = "malformed request target";
            return 400;
        }
        if (u.field_set & (1 << UF_PATH)) {
            t += u.field_data[UF_PATH].off;
            len = (size_t)(r->target + r->target_len - t);
        } else {
            t = "/";
            len = 1;
        }
    }
    const char *q = memchr(t, '?', len);
    size_t path_len = q ? (size_t)(q - t) : len;
    if (memchr(t, '#', len)) {
        *why = "malformed request target";
        return 400;
    }
    if (q) {
        r->query = q + 1;
        r->query_len = len - path_len - 1;
    }
    c->path.len = 0;
    bytebuf_reserve(&c->path, path_len + 1);
    size_t out_len;
    if (path_normalize(t, path_len, c->path.data, &out_len) != 0) {
        *why = "invalid request path";
        return 400;
    }
    c->path.len = out_len;
    return 0;
}

/* An http request to an https-only route: the route's https_redirect_status_code, 426 or a
 * redirect to the same host and request URI over https (Kong: "https://" host request_uri, the
 * port left out). Without a Host there is nowhere to redirect to: 426. */
static void send_https_redirect(struct client_conn *c, const struct route *route) {
    struct request *r = &c->req;
    int status = route->https_redirect_status_code;
    if (status == 426 || !r->host_len) {
        client_send_error(c, 426, "Please use HTTPS protocol", !r->body_done);
        return;
    }
    struct bytebuf loc = {0};
    bytebuf_append_str(&loc, "Location: https://", 18);
    bytebuf_append(&loc, r->host, r->host_len);
    if (r->target_len && r->target[0] == '/') {
        bytebuf_append(&loc, r->target, r->target_len);
    } else {
        bytebuf_append(&loc, c->path.data, c->path.len);
        if (r->query) {
            bytebuf_append(&loc, "?", 1);
            bytebuf_append(&loc, r->query, r->query_len);
        }
    }
    bytebuf_append(&loc, "\r\n", 3); /* with its NUL: a C string */
    send_error_with(c, status, "Please use HTTPS protocol", loc.data, !r->body_done);
    free(loc.data);
}

static const char *route_header_lookup(void *ctx, const char *name, size_t index, size_t *len) {
    struct client_conn *c = ctx;
    const struct http_header *h =
        headers_find(c->headers, c->req.n_headers, name, strlen(name), index);
    if (!h) return NULL;
    *len = h->value_len;
    return h->value;
}

static void handle_request(struct client_conn *c) {
    struct request *r = &c->req;
    const char *why = NULL;
    c->n_requests++;
    int status = check_request_headers(c, &why);
    if (!status) {
        enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
        if (err != HPE_OK && err != HPE_PAUSED) {
            why = http_errno_description(err);
            status = 400;
        }
    }
    if (!status) status = parse_target(c, &why);
    ensure_request_id(c);
    if (status) {
        client_send_error(c, status, why, true);
        return;
    }
    r->method = http_method_str(c->parser.method);
    r->method_len = strlen(r->method);
    r->is_head = c->parser.method == HTTP_HEAD;
    r->idempotent = c->parser.method == HTTP_GET || c->parser.method == HTTP_HEAD ||
                    c->parser.method == HTTP_PUT || c->parser.method == HTTP_DELETE ||
                    c->parser.method == HTTP_OPTIONS || c->parser.method == HTTP_TRACE;
    r->keep_alive = http_should_keep_alive(&c->parser);
    /* keepalive_timeout 0 disables client keep-alive, as in nginx. */
    if (!r->keep_alive || limits_of(c)->keepalive_timeout_ms == 0) c->close_after = true;

    r->snap = worker_acquire_snapshot(c->worker);
    struct route_request rr = {
        .method = r->method,
        .method_len = r->method_len,
        .host = r->host,
        .host_len = r->host_len,
        .path = c->path.data,
        .path_len = c->path.len,
        .get_header = route_header_lookup,
        .ctx = c,
    };
    if (!router_match(r->snap->router, &rr, &r->match)) {
        client_send_error(c, 404, "no Route matched with those values", !r->body_done);
        return;
    }
    r->routed = true;
    const struct route *route = r->match.route;
    if (!(route->protocols & (c->tls ? ROUTE_PROTO_HTTPS : ROUTE_PROTO_HTTP))) {
        /* as in Kong: https to an http-only route matches nothing; http to an https-only
         * route is told to use https */
        if (c->tls)
            client_send_error(c, 404, "no Route matched with those values", !r->body_done);
        else
            send_https_redirect(c, route);
        return;
    }
    uint64_t max = limits_of(c)->max_body_bytes;
    if (max && r->has_content_length && r->content_length > max) {
        client_send_error(c, 413, "request body too large", true);
        return;
    }
    if (!route->service->enabled) {
        client_send_error(c, 503, "service is disabled", !r->body_done);
        return;
    }
    const struct route_chain *chain = snapshot_route_chain(r->snap, route);
    if (chain && plugin_run_request(c, chain)) return;
    proxy_start(c);
}

/* Turns trailing HTABs of header lines into SPs; returns whether any was. */
static bool tabs_to_spaces_before_crlf(char *head, size_t len) {
    bool changed = false;
    for (size_t i = 1; i < len; i++) {
        if (head[i] != '\r') continue;
        for (size_t j = i; j > 0 && (head[j - 1] == '\t' || head[j - 1] == ' '); j--) {
            if (head[j - 1] == '\t') {
                head[j - 1] = ' ';
                changed = true;
            }
        }
    }
    return changed;
}

static void process_head(struct client_conn *c) {
    struct evbuffer *in = conn_input(c->conn);
    size_t avail = evbuffer_get_length(in);
    if (avail == 0) return;
    const struct weir_limits *lim = limits_of(c);
    if (!c->req.start.tv_sec) {
        /* First byte of a request: the head timeout starts now, once (a
         * slow client must not push it back byte by byte). */
        clock_gettime(CLOCK_MONOTONIC, &c->req.start);
        timer_set(c, lim->header_timeout_ms);
    }
    size_t scan_len = avail < lim->max_header_bytes + 4 ? avail : lim->max_header_bytes + 4;
    const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)scan_len);
    size_t head_len = 0;
    int n_fields = 0;
    const char *reason = NULL;
    enum head_status hs =
        head_check(buf, scan_len, true, &c->head_scanned, &head_len, &n_fields, &reason);
    if (hs == HEAD_INCOMPLETE) {
        if (scan_len >= lim->max_header_bytes) {
            c->state = CLIENT_PROXYING;
            client_send_error(c, 431, "request header fields too large", true);
        }
        return;
    }
    c->state = CLIENT_PROXYING;
    if (hs == HEAD_BAD) {
        client_send_error(c, 400, reason, true);
        return;
    }
    if (head_len > lim->max_header_bytes || n_fields > lim->max_headers) {
        client_send_error(c, 431, "request header fields too large", true);
        return;
    }
    timer_clear(c);
    c->head.len = 0;
    bytebuf_append(&c->head, buf, head_len);
    evbuffer_drain(in, head_len);
    c->head_scanned = 0;
    if ((size_t)n_fields + 1 > c->cap_headers) {
        c->cap_headers = (size_t)n_fields + 16;
        free(c->headers);
        c->headers = malloc(c->cap_headers * sizeof *c->headers);
        if (!c->headers) abort();
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    http_parser_execute(&c->parser, &request_settings, c->head.data, c->head.len);
    if (HTTP_PARSER_ERRNO(&c->parser) == HPE_INVALID_CONTENT_LENGTH &&
        tabs_to_spaces_before_crlf(c->head.data, c->head.len)) {
        /* http-parser refuses a tab after a Content-Length value although
         * RFC 9110 5.5 makes trailing OWS no part of the value; head_check
         * has vetted the bytes, so retry with those tabs as spaces. */
        c->req.n_headers = 0;
        c->req.headers_done = false;
        c->req.target = NULL;
        http_parser_init(&c->parser, HTTP_REQUEST);
        c->parser.data = c;
        http_parser_execute(&c->parser, &request_settings, c->head.data, c->head.len);
    }
    c->req.http_minor = c->parser.http_major == 1 ? c->parser.http_minor : 1;
    if (c->parser.http_minor > 1) c->req.http_minor = 1;
    handle_request(c);
}

/* ---- request body ----------------------------------------------------------- */

/* Feeds buffered body bytes through the chunk checker and http-parser, which
 * hands the payload to the upstream side. Stops at the end of the message,
 * on an error, or when the upstream output is full (back-pressure). */
static void feed_body(struct client_conn *c) {
    struct request *r = &c->req;
    struct evbuffer *in = conn_input(c->conn);
    bool for_plugin = c->run && c->run->body_waiter;
    while (!r->body_done && c->state == CLIENT_PROXYING &&
           (for_plugin || (c->up.conn && c->up.state != UP_IDLE && c->up.state != UP_CONNECTING)) &&
           evbuffer_get_length(in) > 0) {
        if (!for_plugin && proxy_upstream_output_full(c)) {
            c->client_read_paused = true;
            conn_read_disable(c->conn);
            return;
        }
        struct evbuffer_iovec vec;
        if (evbuffer_peek(in, -1, NULL, &vec, 1) < 1) return;
        size_t len = vec.iov_len;
        if (len > PROXY_HIGH_WATERMARK) len = PROXY_HIGH_WATERMARK;
        const char *data = vec.iov_base;
        if (r->chunked) {
            const char *why = NULL;
            size_t ok = chunk_check_feed(&r->chunk, data, len, &why);
            if (ok == (size_t)-1) {
                if (!r->response_started)
                    client_send_error(c, 400, why, true);
                else
                    client_conn_close(c);
                return;
            }
            len = ok;
        }
        if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED) http_parser_pause(&c->parser, 0);
        size_t parsed = http_parser_execute(&c->parser, &request_settings, data, len);
        enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
        evbuffer_drain(in, parsed);
        if (err != HPE_OK && err != HPE_PAUSED) {
            bool too_large = err == HPE_CB_body;
            if (!r->response_started)
                client_send_error(
                    c, too_large ? 413 : 400,
                    too_large ? "request body too large" : http_errno_description(err), true);
            else
                client_conn_close(c);
            return;
        }
        if (r->body_done) {
            if (for_plugin)
                plugin_run_body_done(c);
            else
                proxy_body_done(c);
            return;
        }
        if (parsed < len) return; /* cannot happen without an error or pause */
    }
}

void client_start_body(struct client_conn *c) {
    struct request *r = &c->req;
    if (r->body_done) return;
    if (r->expect_continue && r->http_minor == 1 && evbuffer_get_length(conn_input(c->conn)) == 0) {
        evbuffer_add(conn_output(c->conn), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    feed_body(c);
}

void client_resume_read(struct client_conn *c) {
    if (!c->client_read_paused) return;
    c->client_read_paused = false;
    conn_read_enable(c->conn);
    feed_body(c);
}

/* ---- response bookkeeping ------------------------------------------------- */

void client_response_head_sent(struct client_conn *c) {
    c->req.response_started = true;
}

void client_response_done(struct client_conn *c) {
    struct worker *w = c->worker;
    atomic_store_explicit(&w->requests,
                          atomic_load_explicit(&w->requests, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    const struct route *route = c->req.routed ? c->req.match.route : NULL;
    metrics_record(w->metrics, route ? (route->name ? route->name : route->id) : NULL,
                   route ? (route->service->name ? route->service->name : route->service->id)
                         : NULL,
                   c->req.status, c->req.start.tv_sec ? clock_ms_since(&c->req.start) : 0);
    log_request(c);
    if (c->run) {
        /* after the last byte was queued; waiting is refused there, so this returns at once */
        plugin_run_log(c);
        plugin_run_free(c);
    }
    release_request(c);
    struct request *r = &c->req;
    /* A body the client is still sending cannot be skipped reliably: close. */
    if (!r->body_done || c->eof || c->worker->stopping) c->close_after = true;
    proxy_abort(c);
    if (c->close_after) {
        c->state = CLIENT_DRAINING;
        conn_read_disable(c->conn);
        if (evbuffer_get_length(conn_output(c->conn)) == 0) {
            start_lingering(c);
        } else {
            /* Flushing is bounded by the client's write timeout; this is the
             * backstop for responses Weir made itself. */
            int ka = limits_of(c)->keepalive_timeout_ms;
            timer_set(c, ka > 0 ? ka : LINGER_MS);
        }
        return;
    }
    memset(r, 0, sizeof *r);
    struct http_header *up_headers = c->up.headers;
    size_t up_cap = c->up.cap_headers;
    memset(&c->up, 0, sizeof c->up);
    c->up.headers = up_headers;
    c->up.cap_headers = up_cap;
    c->state = CLIENT_READING_HEAD;
    c->head_scanned = 0;
    c->client_read_paused = false;
    conn_read_enable(c->conn);
    timer_set(c, limits_of(c)->keepalive_timeout_ms);
    if (evbuffer_get_length(conn_input(c->conn)) > 0) {
        c->want_next = true;
        schedule(c);
    }
}

void client_start_tunnel(struct client_conn *c) {
    c->state = CLIENT_TUNNEL;
    timer_clear(c);
    proxy_tunnel_from_client(c);
}

/* ---- connection callbacks -------------------------------------------------- */

static void client_read_cb(struct conn *conn, void *arg) {
    (void)conn;
    struct client_conn *c = arg;
    switch (c->state) {
    case CLIENT_READING_HEAD:
        process_head(c);
        break;
    case CLIENT_PROXYING:
        if (c->req.headers_done && !c->req.body_done) feed_body(c);
        break;
    case CLIENT_TUNNEL:
        proxy_tunnel_from_client(c);
        break;
    case CLIENT_LINGERING: {
        struct evbuffer *in = conn_input(c->conn);
        evbuffer_drain(in, evbuffer_get_length(in));
        break;
    }
    default:
        break;
    }
}

static void client_write_cb(struct conn *conn, void *arg) {
    struct client_conn *c = arg;
    proxy_client_drained(c);
    if (c->state == CLIENT_DRAINING && evbuffer_get_length(conn_output(conn)) == 0)
        start_lingering(c);
}

static void client_event_cb(struct conn *conn, short what, void *arg) {
    struct client_conn *c = arg;
    if (what & CONN_PLAIN_HTTP) {
        /* answered in plain text, then closed, as nginx does */
        c->tls = c->tls_handshaking = false;
        log_info("TLS handshake with %s on port %d: the client sent plain HTTP", c->peer_ip,
                 c->listen_port);
        client_send_error(c, 400, "The plain HTTP request was sent to HTTPS port", true);
        return;
    }
    if (what & CONN_HANDSHAKE) {
        log_info("TLS handshake with %s on port %d failed: %s", c->peer_ip, c->listen_port,
                 what & CONN_EOF ? "the client closed the connection" : conn_tls_error(conn));
        client_conn_close(c);
        return;
    }
    if (what & CONN_CONNECTED) {
        /* the TLS handshake is done: now the wait for the first request */
        c->tls_handshaking = false;
        char subject[1024];
        if (tls_conn_client_cert(conn_tls(conn), subject, sizeof subject,
                                 c->client_cert_fingerprint) &&
            !(c->client_cert_subject = strdup(subject)))
            abort();
        timer_set(c, limits_of(c)->header_timeout_ms);
        return;
    }
    if (what & (CONN_ERROR | CONN_TIMEOUT)) {
        /* A reset, or a client that stopped reading for send_timeout. */
        client_conn_close(c);
        return;
    }
    if (what & CONN_EOF) {
        c->eof = true;
        switch (c->state) {
        case CLIENT_READING_HEAD:
        case CLIENT_LINGERING:
            client_conn_close(c);
            break;
        case CLIENT_PROXYING:
            /* A client that half-closes after a complete request still gets
             * its response; one that leaves mid-request is gone. */
            if (!c->req.body_done)
                client_conn_close(c);
            else
                c->close_after = true;
            break;
        case CLIENT_TUNNEL:
            proxy_tunnel_client_eof(c);
            break;
        default:
            break;
        }
    }
}
