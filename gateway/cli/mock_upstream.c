#include "cli/mock_upstream.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MOCK_MAX_DELAY_MS 60000

/* A /delay/<ms> request waiting for its timer. */
struct delayed {
    struct mock_upstream *m;
    struct evhttp_request *req;
    struct event *timer;
    int status;
    struct delayed *prev, *next;
};

struct mock_upstream {
    struct event_base *base;
    struct evhttp *http;
    int port;
    pthread_t thread;
    int stop_fd; /* eventfd: mock_upstream_stop() wakes the loop through it */
    struct event *stop_event;
    struct delayed *delayed;
};

static const char *method_name(enum evhttp_cmd_type cmd) {
    switch (cmd) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "?";
}

/* The body as a JSON string, or (not UTF-8) null plus "body_base64". */
static void echo_body(json_t *echo, struct evbuffer *in) {
    size_t len = evbuffer_get_length(in);
    const char *bytes = (const char *)evbuffer_pullup(in, -1);
    json_t *s = json_stringn(bytes ? bytes : "", len);
    if (s) {
        json_object_set_new(echo, "body", s);
        return;
    }
    char *b64 = malloc(4 * ((len + 2) / 3) + 1);
    if (!b64) abort();
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)bytes, (int)len);
    json_object_set_new(echo, "body", json_null());
    json_object_set_new(echo, "body_base64", json_string(b64));
    free(b64);
}

static json_t *echo_of(struct evhttp_request *req) {
    const char *uri = evhttp_request_get_uri(req);
    const char *q = strchr(uri, '?');
    json_t *echo = json_object();
    json_object_set_new(echo, "method", json_string(method_name(evhttp_request_get_command(req))));
    json_object_set_new(echo, "path", json_stringn(uri, q ? (size_t)(q - uri) : strlen(uri)));
    json_object_set_new(echo, "query", json_string(q ? q + 1 : ""));
    json_t *headers = json_array();
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    for (struct evkeyval *kv = in->tqh_first; kv; kv = kv->next.tqe_next)
        json_array_append_new(headers, json_pack("[ss]", kv->key, kv->value));
    json_object_set_new(echo, "headers", headers);
    echo_body(echo, evhttp_request_get_input_buffer(req));
    return echo;
}

static void reply(struct evhttp_request *req, int status) {
    json_t *echo = echo_of(req);
    char *text = json_dumps(echo, JSON_COMPACT);
    json_decref(echo);
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, text, strlen(text));
    free(text);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, status, NULL, out);
    evbuffer_free(out);
}

static void delayed_unlink(struct delayed *d) {
    if (d->prev)
        d->prev->next = d->next;
    else
        d->m->delayed = d->next;
    if (d->next) d->next->prev = d->prev;
    event_free(d->timer);
    free(d);
}

static void delay_done(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    struct delayed *d = arg;
    /* evhttp keeps a request whose client went away until it is answered: answering frees it */
    reply(d->req, d->status);
    delayed_unlink(d);
}

static void delay_reply(struct mock_upstream *m, struct evhttp_request *req, long ms) {
    struct delayed *d = calloc(1, sizeof *d);
    if (!d) abort();
    *d = (struct delayed){.m = m, .req = req, .status = 200, .next = m->delayed};
    d->timer = evtimer_new(m->base, delay_done, d);
    if (!d->timer) abort();
    if (m->delayed) m->delayed->prev = d;
    m->delayed = d;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(d->timer, &tv);
}

/* The number after `prefix` in `path`, or -1 when the path is something else. */
static long path_number(const char *path, const char *prefix) {
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0) return -1;
    char *end;
    long v = strtol(path + n, &end, 10);
    if (end == path + n || (*end && *end != '?' && *end != '/')) return -1;
    return v;
}

static void request_cb(struct evhttp_request *req, void *arg) {
    struct mock_upstream *m = arg;
    const char *uri = evhttp_request_get_uri(req);
    long status = path_number(uri, "/status/");
    long ms = path_number(uri, "/delay/");
    if (ms >= 0)
        delay_reply(m, req, ms < MOCK_MAX_DELAY_MS ? ms : MOCK_MAX_DELAY_MS);
    else
        reply(req, status >= 200 && status <= 599 ? (int)status : 200);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    struct mock_upstream *m = arg;
    event_base_loopbreak(m->base);
}

static void *mock_main(void *arg) {
    struct mock_upstream *m = arg;
    event_base_dispatch(m->base);
    return NULL;
}

static void mock_free(struct mock_upstream *m) {
    while (m->delayed) {
        struct delayed *d = m->delayed;
        reply(d->req, 503); /* sent, or (client gone) freed */
        delayed_unlink(d);
    }
    if (m->http) evhttp_free(m->http);
    if (m->stop_event) event_free(m->stop_event);
    if (m->stop_fd >= 0) close(m->stop_fd);
    if (m->base) event_base_free(m->base);
    free(m);
}

static int bound_port(struct evhttp_bound_socket *bound) {
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&sin, &len) != 0)
        return -1;
    return ntohs(sin.sin_port);
}

struct mock_upstream *mock_upstream_start(char *err, size_t errlen) {
    struct mock_upstream *m = calloc(1, sizeof *m);
    if (!m) abort();
    m->stop_fd = -1;
    m->base = event_base_new();
    m->http = m->base ? evhttp_new(m->base) : NULL;
    if (!m->http) {
        snprintf(err, errlen, "mock upstream: cannot create an HTTP server");
        mock_free(m);
        return NULL;
    }
    evhttp_set_allowed_methods(
        m->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                     EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(m->http, request_cb, m);
    struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(m->http, "127.0.0.1", 0);
    m->port = bound ? bound_port(bound) : -1;
    if (m->port <= 0) {
        snprintf(err, errlen, "mock upstream: cannot listen on 127.0.0.1");
        mock_free(m);
        return NULL;
    }
    m->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (m->stop_fd < 0) abort();
    m->stop_event = event_new(m->base, m->stop_fd, EV_READ, stop_cb, m);
    event_add(m->stop_event, NULL);
    if (pthread_create(&m->thread, NULL, mock_main, m) != 0) {
        snprintf(err, errlen, "mock upstream: cannot start its thread");
        mock_free(m);
        return NULL;
    }
    return m;
}

int mock_upstream_port(const struct mock_upstream *m) {
    return m->port;
}

void mock_upstream_stop(struct mock_upstream *m) {
    if (!m) return;
    uint64_t one = 1;
    ssize_t r = write(m->stop_fd, &one, sizeof one);
    (void)r;
    pthread_join(m->thread, NULL);
    mock_free(m); /* the loop no longer runs: this thread may touch its objects */
}
