#include "upstream/http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "http/head_check.h"
#include "http/headers.h"
#include "tls/tls_client.h"

/* ---- the client and its idle connections -------------------------------------------------- */

struct idle_conn {
    struct idle_conn *prev, *next; /* newest first */
    struct http_client *client;
    struct bufferevent *bev;
    char key[];
};

struct http_client {
    struct event_base *base;
    const char *log_name;
    struct evdns_base *dns; /* first name lookup */
    struct tls_client *tls;
    struct idle_conn *idle_head, *idle_tail;
    size_t n_idle;
};

static void idle_unlink(struct idle_conn *ic) {
    struct http_client *c = ic->client;
    if (ic->prev)
        ic->prev->next = ic->next;
    else
        c->idle_head = ic->next;
    if (ic->next)
        ic->next->prev = ic->prev;
    else
        c->idle_tail = ic->prev;
    c->n_idle--;
}

static void idle_close(struct idle_conn *ic) {
    idle_unlink(ic);
    bufferevent_free(ic->bev);
    free(ic);
}

/* Anything on an idle connection ends it: the server closed it, sent bytes nobody asked for, or
 * the idle timeout fired. */
static void idle_read_cb(struct bufferevent *bev, void *arg) {
    (void)bev;
    idle_close(arg);
}

static void idle_event_cb(struct bufferevent *bev, short what, void *arg) {
    (void)bev;
    (void)what;
    idle_close(arg);
}

/* The most recently used idle connection for key (its socket is the least likely to have been
 * closed by the server), callbacks and timeouts cleared; NULL when there is none. */
static struct bufferevent *idle_take(struct http_client *c, const char *key) {
    for (struct idle_conn *ic = c->idle_head; ic; ic = ic->next) {
        if (strcmp(ic->key, key) != 0) continue;
        struct bufferevent *bev = ic->bev;
        idle_unlink(ic);
        free(ic);
        bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
        bufferevent_set_timeouts(bev, NULL, NULL);
        return bev;
    }
    return NULL;
}

/* Takes a connection with nothing in flight; the oldest of its key (or of all) makes room. */
static void idle_put(struct http_client *c, const char *key, struct bufferevent *bev) {
    size_t same = 0;
    struct idle_conn *oldest_same = NULL;
    for (struct idle_conn *ic = c->idle_head; ic; ic = ic->next)
        if (strcmp(ic->key, key) == 0) {
            same++;
            oldest_same = ic;
        }
    if (same >= HTTP_CLIENT_IDLE_PER_KEY)
        idle_close(oldest_same);
    else if (c->n_idle >= HTTP_CLIENT_IDLE_MAX)
        idle_close(c->idle_tail);
    size_t klen = strlen(key);
    struct idle_conn *ic = malloc(sizeof *ic + klen + 1);
    if (!ic) abort();
    memcpy(ic->key, key, klen + 1);
    ic->client = c;
    ic->bev = bev;
    ic->prev = NULL;
    ic->next = c->idle_head;
    if (c->idle_head) c->idle_head->prev = ic;
    c->idle_head = ic;
    if (!c->idle_tail) c->idle_tail = ic;
    c->n_idle++;
    struct timeval tv = {HTTP_CLIENT_IDLE_TIMEOUT_MS / 1000,
                         (HTTP_CLIENT_IDLE_TIMEOUT_MS % 1000) * 1000};
    bufferevent_setcb(bev, idle_read_cb, NULL, idle_event_cb, ic);
    bufferevent_set_timeouts(bev, &tv, NULL);
    bufferevent_enable(bev, EV_READ);
}

struct http_client *http_client_new(struct event_base *base, const char *log_name) {
    struct http_client *c = calloc(1, sizeof *c);
    if (!c) abort();
    c->base = base;
    c->log_name = log_name;
    c->tls = tls_client_new(log_name);
    return c;
}

void http_client_free(struct http_client *c) {
    while (c->idle_head)
        idle_close(c->idle_head);
    if (c->dns) evdns_base_free(c->dns, 0);
    tls_client_free(c->tls);
    free(c);
}

/* The resolver, created on the first name lookup: it reads /etc/resolv.conf and /etc/hosts once
 * per client. DISABLE_WHEN_INACTIVE: an idle resolver must not keep the loop alive. */
static struct evdns_base *client_dns(struct http_client *c) {
    if (!c->dns) {
        c->dns = evdns_base_new(c->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                             EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (!c->dns) log_err("%s: cannot create a DNS resolver (/etc/resolv.conf?)", c->log_name);
    }
    return c->dns;
}

/* ---- URLs --------------------------------------------------------------------------------- */

static bool prefix_ci(const char *s, size_t len, const char *p) {
    size_t n = strlen(p);
    return len >= n && strncasecmp(s, p, n) == 0;
}

static bool is_host_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

static const char *url_port(const char *p, size_t n, unsigned *port) {
    if (n == 0) return "empty port";
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9' || i >= 5) return "bad port";
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535) return "bad port";
    *port = v;
    return NULL;
}

const char *http_client_parse_url(const char *s, size_t len, struct http_client_url *u) {
    memset(u, 0, sizeof *u);
    size_t i;
    if (prefix_ci(s, len, "http://")) {
        i = 7;
    } else if (prefix_ci(s, len, "https://")) {
        u->tls = true;
        i = 8;
    } else {
        return memmem(s, len, "://", 3) ? "only http and https are supported" : "no scheme";
    }
    size_t start = i;
    while (i < len && s[i] != '/' && s[i] != '?' && s[i] != '#')
        i++;
    const char *auth = s + start, *port = NULL;
    size_t alen = i - start, plen = 0, hlen;
    if (memchr(auth, '@', alen)) return "user information is not supported";
    if (alen > 0 && auth[0] == '[') {
        const char *close = memchr(auth, ']', alen);
        if (!close) return "unterminated IPv6 address";
        hlen = (size_t)(close - auth) - 1;
        if (hlen == 0 || hlen > INET6_ADDRSTRLEN) return "bad IPv6 address";
        memcpy(u->host, auth + 1, hlen);
        struct in6_addr a6;
        if (inet_pton(AF_INET6, u->host, &a6) != 1) return "bad IPv6 address";
        u->ipv6 = u->host_is_ip = true;
        size_t rest = alen - hlen - 2;
        if (rest > 0) {
            if (close[1] != ':') return "bad authority";
            port = close + 2;
            plen = rest - 1;
        }
    } else {
        const char *colon = memchr(auth, ':', alen);
        hlen = colon ? (size_t)(colon - auth) : alen;
        if (colon) {
            port = colon + 1;
            plen = alen - hlen - 1;
        }
        if (hlen == 0) return "no host";
        if (hlen > HTTP_CLIENT_HOST_MAX) return "host name too long";
        for (size_t j = 0; j < hlen; j++) {
            unsigned char c = (unsigned char)auth[j];
            if (!is_host_char(c)) return "bad character in host";
            u->host[j] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        struct in_addr a4;
        u->host_is_ip = inet_pton(AF_INET, u->host, &a4) == 1;
    }
    u->port = u->tls ? 443 : 80;
    if (port) {
        const char *why = url_port(port, plen, &u->port);
        if (why) return why;
    }
    size_t end = i;
    while (end < len && s[end] != '#')
        end++;
    for (size_t j = i; j < end; j++) {
        unsigned char c = (unsigned char)s[j];
        if (c <= 0x20 || c >= 0x7f) return "bad character in path or query (percent-encode it)";
    }
    u->target = s + i;
    u->target_len = end - i;
    return NULL;
}

void http_client_authority(const struct http_client_url *u, char *buf, size_t n) {
    bool default_port = u->port == (u->tls ? 443u : 80u);
    snprintf(buf, n, u->ipv6 ? "[%s]" : "%s", u->host);
    if (!default_port) snprintf(buf + strlen(buf), n - strlen(buf), ":%u", u->port);
}

/* ---- one request ------------------------------------------------------------------------ */

enum op_phase {
    OP_RESOLVING,
    OP_CONNECTING,
    OP_HANDSHAKE, /* TLS */
    OP_HEAD,      /* sending, and reading the response head */
    OP_BODY,
    OP_DONE,
};

struct http_client_op {
    struct http_client *client;
    http_client_done_fn done;
    void *done_arg;
    enum op_phase phase;
    /* Inside a call that reports a completion itself (the first call, by its return value; a
     * retry, once its start unwound): op_finish() must not call `done` then. */
    bool holding;
    char *req; /* the request bytes, kept for a retry */
    size_t req_len;
    char *key; /* keep-alive pool key */
    char host[HTTP_CLIENT_HOST_MAX + 1];
    char tls_name[HTTP_CLIENT_HOST_MAX + 1]; /* SNI and the name verified */
    bool tls_name_is_ip;
    char port_text[6];
    bool tls, verify, host_is_ip, is_head, idempotent;
    struct tls_ca *ca; /* the CA file's store (a reference), or NULL */
    struct timeval timeout;
    size_t max_body;
    /* connecting */
    struct evdns_getaddrinfo_request *dns;
    struct evutil_addrinfo *addrs, *next_addr;
    int fd; /* while connecting */
    struct event *connect_ev;
    int connect_error; /* errno of the last failed attempt */
    struct event *timer;
    struct bufferevent *bev;
    bool reused, retried, got_bytes, conn_closed;
    /* the response */
    http_parser parser;
    size_t head_scanned;
    char *head; /* the final head; headers point into it */
    struct http_header *headers;
    size_t n_headers, cap_headers;
    bool headers_done, message_done, chunked, too_large;
    struct chunk_check chunk;
    struct evbuffer *body;
    int status;
    char err[256]; /* "" on success */
};

static void op_start(struct http_client_op *op, bool allow_pool);
static void connect_next(struct http_client_op *op);
static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

/* Ends whatever is in progress. Cancelling a lookup runs its callback at once with
 * EVUTIL_EAI_CANCEL, which dns_done() ignores. */
static void op_close_transport(struct http_client_op *op) {
    if (op->dns) {
        struct evdns_getaddrinfo_request *r = op->dns;
        op->dns = NULL;
        evdns_getaddrinfo_cancel(r);
    }
    if (op->connect_ev) {
        event_free(op->connect_ev);
        op->connect_ev = NULL;
    }
    if (op->fd >= 0) {
        close(op->fd);
        op->fd = -1;
    }
    if (op->bev) {
        bufferevent_free(op->bev);
        op->bev = NULL;
    }
    if (op->addrs) {
        evutil_freeaddrinfo(op->addrs);
        op->addrs = op->next_addr = NULL;
    }
    evtimer_del(op->timer);
}

static void op_free(struct http_client_op *op) {
    op_close_transport(op);
    event_free(op->timer);
    evbuffer_free(op->body);
    if (op->ca) tls_client_ca_release(op->ca);
    free(op->req);
    free(op->key);
    free(op->head);
    free(op->headers);
    free(op);
}

void http_client_cancel(struct http_client_op *op) {
    op_free(op);
}

static void op_report(struct http_client_op *op) {
    if (op->err[0]) {
        op->done(op->done_arg, NULL, op->err);
    } else {
        struct http_client_response res = {op->status, op->headers, op->n_headers, op->body};
        op->done(op->done_arg, &res, NULL);
    }
    op_free(op);
}

static void op_finish(struct http_client_op *op) {
    op_close_transport(op);
    op->phase = OP_DONE;
    if (!op->holding) op_report(op);
}

static void op_fail(struct http_client_op *op, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void op_fail(struct http_client_op *op, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op->err, sizeof op->err, fmt, ap);
    va_end(ap);
    op_finish(op);
}

/* Runs a start (a retry from an event callback) and reports a completion it reached at once. */
static void op_restart(struct http_client_op *op) {
    op->holding = true;
    op_start(op, false);
    op->holding = false;
    if (op->phase == OP_DONE) op_report(op);
}

static void arm(struct http_client_op *op) {
    evtimer_add(op->timer, &op->timeout);
}

/* ---- resolving and connecting ------------------------------------------------------------ */

static void dns_done(int result, struct evutil_addrinfo *res, void *arg) {
    if (result == EVUTIL_EAI_CANCEL) return; /* op_close_transport(): the op is going away */
    struct http_client_op *op = arg;
    op->dns = NULL;
    if (result != 0 || !res) {
        if (res) evutil_freeaddrinfo(res);
        op_fail(op, "could not resolve host: %s (%s)", op->host,
                result ? evutil_gai_strerror(result) : "no address");
        return;
    }
    op->addrs = op->next_addr = res;
    op->phase = OP_CONNECTING;
    connect_next(op);
}

/* Numeric hosts need no lookup; names go to evdns (which also reads /etc/hosts). The lookup may
 * finish inside evdns_getaddrinfo(): callers hold completions (op->holding). */
static void resolve(struct http_client_op *op) {
    WEIR_BUG_ON(!op->holding);
    op->phase = OP_RESOLVING;
    arm(op);
    struct evutil_addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
    if (evutil_getaddrinfo(op->host, op->port_text, &hints, &res) == 0) {
        op->addrs = op->next_addr = res;
        op->phase = OP_CONNECTING;
        connect_next(op);
        return;
    }
    struct evdns_base *dns = client_dns(op->client);
    if (!dns) {
        op_fail(op, "could not resolve host: %s (no resolver)", op->host);
        return;
    }
    hints.ai_flags = EVUTIL_AI_NUMERICSERV | EVUTIL_AI_ADDRCONFIG;
    struct evdns_getaddrinfo_request *r =
        evdns_getaddrinfo(dns, op->host, op->port_text, &hints, dns_done, op);
    if (r && op->phase == OP_RESOLVING) op->dns = r; /* NULL: dns_done() has run */
}

static void connect_failed(struct http_client_op *op) {
    int e = op->connect_error;
    if (e == ECONNREFUSED)
        op_fail(op, "connection refused");
    else if (e == ETIMEDOUT)
        op_fail(op, "timeout");
    else
        op_fail(op, "connect failed: %s", strerror(e ? e : EIO));
}

static void send_request(struct http_client_op *op) {
    op->phase = OP_HEAD;
    op->got_bytes = false;
    op->head_scanned = 0;
    evbuffer_add(bufferevent_get_output(op->bev), op->req, op->req_len);
    bufferevent_enable(op->bev, EV_READ | EV_WRITE);
    arm(op);
}

/* The TCP connection is up: plain requests go out now, TLS ones after the handshake
 * (BEV_EVENT_CONNECTED). */
static void start_transport(struct http_client_op *op, int fd) {
    struct event_base *base = op->client->base;
    if (!op->tls) {
        op->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (!op->bev) abort();
        bufferevent_setcb(op->bev, read_cb, write_cb, event_cb, op);
        send_request(op);
        return;
    }
    op->bev = tls_client_bufferevent(op->client->tls, base, fd, op->tls_name, op->tls_name_is_ip,
                                     op->verify, op->ca);
    op->phase = OP_HANDSHAKE;
    bufferevent_setcb(op->bev, read_cb, write_cb, event_cb, op);
    bufferevent_enable(op->bev, EV_READ | EV_WRITE);
    arm(op);
}

static void connect_cb(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    struct http_client_op *op = arg;
    int e = 0;
    socklen_t len = sizeof e;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0) e = errno;
    event_free(op->connect_ev);
    op->connect_ev = NULL;
    if (e) {
        close(op->fd);
        op->fd = -1;
        op->connect_error = e;
        connect_next(op);
        return;
    }
    op->fd = -1; /* the bufferevent owns it now */
    start_transport(op, (int)fd);
}

/* Our own non-blocking connect (not bufferevent_socket_connect) to keep the exact errno
 * ("connection refused") and to try the host's next address after a failure or a timeout. */
static void connect_next(struct http_client_op *op) {
    while (op->next_addr) {
        struct evutil_addrinfo *ai = op->next_addr;
        op->next_addr = ai->ai_next;
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
        if (fd < 0) {
            op->connect_error = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, (socklen_t)ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
            int one = 1; /* a request is written whole: no reason to wait for ACKs */
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            op->fd = fd;
            op->connect_ev = event_new(op->client->base, fd, EV_WRITE, connect_cb, op);
            if (!op->connect_ev) abort();
            event_add(op->connect_ev, NULL);
            arm(op);
            return;
        }
        op->connect_error = errno;
        close(fd);
    }
    connect_failed(op);
}

static void op_start(struct http_client_op *op, bool allow_pool) {
    struct bufferevent *bev = allow_pool ? idle_take(op->client, op->key) : NULL;
    op->reused = bev != NULL;
    if (!bev) {
        resolve(op);
        return;
    }
    op->bev = bev;
    bufferevent_setcb(bev, read_cb, write_cb, event_cb, op);
    send_request(op);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct http_client_op *op = arg;
    switch (op->phase) {
    case OP_RESOLVING:
        op_fail(op, "could not resolve host: %s (timed out)", op->host);
        return;
    case OP_CONNECTING: /* this address does not answer: the next one may */
        event_free(op->connect_ev);
        op->connect_ev = NULL;
        close(op->fd);
        op->fd = -1;
        op->connect_error = ETIMEDOUT;
        connect_next(op);
        return;
    default:
        op_fail(op, "timeout");
        return;
    }
}

/* ---- the response ------------------------------------------------------------------------ */

static int on_header_field(http_parser *p, const char *at, size_t len) {
    struct http_client_op *op = p->data;
    if (op->headers_done) return 0; /* trailers are not kept */
    return header_collect_field(op->headers, &op->n_headers, op->cap_headers, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
    struct http_client_op *op = p->data;
    if (!op->headers_done) header_collect_value(op->headers, op->n_headers, at, len);
    return 0;
}

static int on_headers_complete(http_parser *p) {
    struct http_client_op *op = p->data;
    op->headers_done = true;
    /* 1 tells http-parser there is no body, whatever the head declares */
    unsigned s = p->status_code;
    return op->is_head || s < 200 || s == 204 || s == 304;
}

static int on_body(http_parser *p, const char *at, size_t len) {
    struct http_client_op *op = p->data;
    if (len > op->max_body - evbuffer_get_length(op->body)) {
        op->too_large = true;
        return -1;
    }
    evbuffer_add(op->body, at, len);
    return 0;
}

static int on_message_complete(http_parser *p) {
    struct http_client_op *op = p->data;
    op->message_done = true;
    http_parser_pause(p, 1); /* bytes after it are not ours */
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void op_succeed(struct http_client_op *op) {
    struct bufferevent *bev = op->bev;
    bool reusable = !op->conn_closed && http_should_keep_alive(&op->parser) &&
                    evbuffer_get_length(bufferevent_get_input(bev)) == 0 &&
                    evbuffer_get_length(bufferevent_get_output(bev)) == 0;
    if (reusable) {
        idle_put(op->client, op->key, bev);
        op->bev = NULL;
    }
    op->err[0] = '\0';
    op_finish(op);
}

/* The framing rules of upstream/proxy.c: one Content-Length or "chunked" alone, never both. */
static const char *check_framing(struct http_client_op *op, uint64_t *content_length) {
    int n_cl = 0, n_te = 0;
    const struct http_header *te = NULL;
    for (size_t i = 0; i < op->n_headers; i++) {
        struct http_header *h = &op->headers[i];
        header_finish(h);
        if (h->kind == HDR_CONTENT_LENGTH) {
            n_cl++;
            if (!head_parse_content_length(h->value, h->value_len, content_length))
                return "bad Content-Length";
        } else if (h->kind == HDR_TRANSFER_ENCODING) {
            n_te++;
            te = h;
        }
    }
    if (n_cl > 1 || n_te > 1 || (n_cl && n_te)) return "ambiguous framing";
    if (te && !(te->value_len == 7 && strncasecmp(te->value, "chunked", 7) == 0))
        return "unsupported Transfer-Encoding";
    op->chunked = te != NULL;
    return NULL;
}

/* Feeds body bytes to http-parser (and the chunk checker, as upstream/proxy.c does). */
static void feed_body(struct http_client_op *op) {
    struct evbuffer *in = bufferevent_get_input(op->bev);
    while (!op->message_done && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec vec;
        if (evbuffer_peek(in, -1, NULL, &vec, 1) < 1) return;
        size_t len = vec.iov_len;
        if (op->chunked) {
            const char *why = NULL;
            size_t ok = chunk_check_feed(&op->chunk, vec.iov_base, len, &why);
            if (ok == (size_t)-1) {
                op_fail(op, "invalid response: %s", why);
                return;
            }
            len = ok;
        }
        size_t parsed = http_parser_execute(&op->parser, &parser_settings, vec.iov_base, len);
        enum http_errno err = HTTP_PARSER_ERRNO(&op->parser);
        evbuffer_drain(in, parsed);
        if (op->too_large) {
            op_fail(op, "response too large");
            return;
        }
        if (err != HPE_OK && err != HPE_PAUSED) {
            op_fail(op, "invalid response: %s", http_errno_description(err));
            return;
        }
        if (parsed == 0 && !op->message_done) { /* the two parsers disagree on the end */
            op_fail(op, "invalid response: bad chunked body");
            return;
        }
    }
    if (op->message_done) op_succeed(op);
}

/* Parses one head from the input; false when the op ended or more bytes are needed. */
static bool parse_head(struct http_client_op *op) {
    struct evbuffer *in = bufferevent_get_input(op->bev);
    size_t avail = evbuffer_get_length(in);
    if (avail == 0) return false;
    size_t scan = avail < HTTP_CLIENT_MAX_HEAD ? avail : HTTP_CLIENT_MAX_HEAD;
    const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)scan);
    size_t head_len = 0;
    int n_fields = 0;
    const char *why = NULL;
    enum head_status hs =
        head_check(buf, scan, false, &op->head_scanned, &head_len, &n_fields, &why);
    if (hs == HEAD_INCOMPLETE) {
        if (scan >= HTTP_CLIENT_MAX_HEAD)
            op_fail(op, "invalid response: head larger than %d bytes", HTTP_CLIENT_MAX_HEAD);
        return false;
    }
    if (hs == HEAD_BAD) {
        op_fail(op, "invalid response: %s", why);
        return false;
    }
    free(op->head);
    op->head = malloc(head_len);
    free(op->headers);
    op->cap_headers = (size_t)n_fields + 1;
    op->headers = calloc(op->cap_headers, sizeof *op->headers);
    if (!op->head || !op->headers) abort();
    memcpy(op->head, buf, head_len);
    evbuffer_drain(in, head_len);
    op->head_scanned = 0;
    op->n_headers = 0;
    op->headers_done = op->message_done = false;
    http_parser_init(&op->parser, HTTP_RESPONSE);
    op->parser.data = op;
    http_parser_execute(&op->parser, &parser_settings, op->head, head_len);
    enum http_errno err = HTTP_PARSER_ERRNO(&op->parser);
    if (err != HPE_OK && err != HPE_PAUSED) {
        op_fail(op, "invalid response: %s", http_errno_description(err));
        return false;
    }
    return true;
}

/* Reads heads until the final one: 1xx responses are skipped. */
static void read_head(struct http_client_op *op) {
    for (;;) {
        if (!parse_head(op)) return;
        unsigned status = op->parser.status_code;
        uint64_t length = 0;
        const char *why = check_framing(op, &length);
        if (why || status < 100 || status > 599 || status == 101) {
            op_fail(op, "invalid response: %s", why ? why : "unexpected status");
            return;
        }
        if (status < 200) continue;
        op->status = (int)status;
        if (length > op->max_body && !op->message_done) {
            op_fail(op, "response too large");
            return;
        }
        op->phase = OP_BODY;
        if (op->chunked) chunk_check_init(&op->chunk);
        feed_body(op); /* completes a response without a body at once */
        return;
    }
}

static void read_cb(struct bufferevent *bev, void *arg) {
    (void)bev;
    struct http_client_op *op = arg;
    op->got_bytes = true;
    arm(op);
    if (op->phase == OP_HEAD)
        read_head(op);
    else if (op->phase == OP_BODY)
        feed_body(op);
}

static void write_cb(struct bufferevent *bev, void *arg) {
    (void)bev;
    arm(arg); /* the request is out: the response has the full timeout */
}

/* The first TLS error recorded on the connection (all are taken off its queue), or NULL. */
static const char *tls_error(struct http_client_op *op) {
    return op->tls ? tls_client_take_error(op->bev) : NULL;
}

static void handshake_failed(struct http_client_op *op, short what, int e) {
    const char *verify_err = tls_client_verify_error(op->bev);
    const char *tls_err = tls_error(op);
    if (op->verify && verify_err)
        op_fail(op, "certificate verify failed: %s", verify_err);
    else if (tls_err)
        op_fail(op, "TLS handshake failed: %s", tls_err);
    else if ((what & BEV_EVENT_EOF) || !e)
        op_fail(op, "TLS handshake failed: connection closed");
    else
        op_fail(op, "TLS handshake failed: %s", strerror(e));
}

static void event_cb(struct bufferevent *bev, short what, void *arg) {
    (void)bev;
    int e = EVUTIL_SOCKET_ERROR(); /* before any other call can change it */
    struct http_client_op *op = arg;
    if (what & BEV_EVENT_CONNECTED) { /* the TLS handshake is done */
        send_request(op);
        return;
    }
    op->conn_closed = true;
    if (op->phase == OP_HANDSHAKE) {
        handshake_failed(op, what, e);
        return;
    }
    if (op->phase == OP_BODY && (what & BEV_EVENT_EOF)) {
        /* The end of a close-delimited body is the server closing. */
        if (HTTP_PARSER_ERRNO(&op->parser) == HPE_PAUSED) http_parser_pause(&op->parser, 0);
        http_parser_execute(&op->parser, &parser_settings, NULL, 0);
        if (op->message_done) {
            op_succeed(op);
            return;
        }
    }
    if (op->phase == OP_HEAD && op->reused && !op->got_bytes && op->idempotent && !op->retried) {
        /* The server closed the idle connection as we reused it (RFC 9112 9.3.1): once more on
         * a fresh one. Only idempotent methods: the server may have acted on the request. */
        bufferevent_free(op->bev);
        op->bev = NULL;
        op->retried = true;
        op->conn_closed = false;
        op_restart(op);
        return;
    }
    const char *tls_err = tls_error(op);
    if (tls_err)
        op_fail(op, "TLS error: %s", tls_err);
    else if ((what & BEV_EVENT_EOF) || !e)
        op_fail(op, "connection closed prematurely");
    else if (e == ECONNRESET)
        op_fail(op, "connection reset");
    else
        op_fail(op, "network error: %s", strerror(e));
}

/* ---- starting ----------------------------------------------------------------------------- */

static bool method_is(const char *m, const char *const *list) {
    for (size_t i = 0; list[i]; i++)
        if (strcmp(m, list[i]) == 0) return true;
    return false;
}

struct http_client_op *http_client_request(struct http_client *c,
                                           const struct http_client_request *req,
                                           http_client_done_fn done, void *arg, char *err,
                                           size_t errlen) {
    const struct http_client_url *u = req->url;
    char reason[200];
    struct tls_ca *ca = NULL;
    if (u->tls && !tls_client_ready(c->tls, reason, sizeof reason)) {
        snprintf(err, errlen, "TLS unavailable: %s", reason);
        return NULL;
    }
    if (u->tls && req->verify && req->ca_file &&
        !(ca = tls_client_ca(c->tls, req->ca_file, reason, sizeof reason))) {
        snprintf(err, errlen, "could not load ssl_ca_file: %s", reason);
        return NULL;
    }

    struct http_client_op *op = calloc(1, sizeof *op);
    if (!op) abort();
    op->client = c;
    op->done = done;
    op->done_arg = arg;
    op->fd = -1;
    op->tls = u->tls;
    op->verify = req->verify;
    op->host_is_ip = u->host_is_ip;
    memcpy(op->host, u->host, sizeof op->host);
    snprintf(op->tls_name, sizeof op->tls_name, "%s",
             req->server_name ? req->server_name : u->host);
    op->tls_name_is_ip = req->server_name ? false : u->host_is_ip;
    snprintf(op->port_text, sizeof op->port_text, "%u", u->port);
    static const char *const IDEMPOTENT[] = {"GET",     "HEAD",  "PUT", "DELETE",
                                             "OPTIONS", "TRACE", NULL};
    op->is_head = strcmp(req->method, "HEAD") == 0;
    op->idempotent = method_is(req->method, IDEMPOTENT);
    op->ca = ca;
    op->timeout = (struct timeval){req->timeout_ms / 1000, (req->timeout_ms % 1000) * 1000};
    op->max_body = req->max_body;
    op->req_len = req->head_len + req->body_len;
    op->req = malloc(op->req_len);
    /* A connection is reused only for the same TLS settings it was verified with. */
    char authority[HTTP_CLIENT_AUTHORITY_MAX + 1];
    http_client_authority(u, authority, sizeof authority);
    const char *tls_key = !u->tls        ? ""
                          : !req->verify ? "|noverify"
                          : req->ca_file ? "|ca="
                                         : "|verify";
    const char *sni = u->tls && req->server_name ? req->server_name : "";
    int key_len = snprintf(NULL, 0, "%s://%s:%u%s%s|%s", u->tls ? "https" : "http", authority,
                           u->port, tls_key, ca ? req->ca_file : "", sni);
    op->key = malloc((size_t)key_len + 1);
    op->timer = evtimer_new(c->base, timer_cb, op);
    op->body = evbuffer_new();
    if (!op->req || !op->key || !op->timer || !op->body) abort();
    memcpy(op->req, req->head, req->head_len);
    if (req->body_len) memcpy(op->req + req->head_len, req->body, req->body_len);
    snprintf(op->key, (size_t)key_len + 1, "%s://%s:%u%s%s|%s", u->tls ? "https" : "http",
             authority, u->port, tls_key, ca ? req->ca_file : "", sni);

    op->holding = true;
    op_start(op, true);
    op->holding = false;
    if (op->phase == OP_DONE) { /* failed at once (no response can come before the loop runs) */
        WEIR_BUG_ON(!op->err[0]);
        snprintf(err, errlen, "%s", op->err);
        op_free(op);
        return NULL;
    }
    return op;
}
