/* client_conn: one client connection and the request in progress on it.
 *
 * Owns the client connection, the per-connection buffers (head copies,
 * header arrays, the upstream head under construction) and the state of the
 * current request/response exchange, including its upstream side (see
 * upstream/proxy.h, which drives that half). Requests on one connection are
 * handled strictly one at a time: pipelined requests wait in the input
 * buffer until the previous response is queued.
 *
 * Lifetime: created by the worker on accept, freed by client_conn_close()
 * (deferred to the connection's own event so that nothing frees a connection
 * while one of its callbacks is still on the stack). Worker thread only. */
#ifndef WEIR_CLIENT_CONN_H
#define WEIR_CLIENT_CONN_H

#include "core/conn.h"
#include <event2/event.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "config/snapshot.h"
#include "http/head_check.h"
#include "http/headers.h"
#include "router/router.h"
#include "upstream/pool.h"

struct worker;
struct plugin_run;

/* Grow-only byte buffer reused across requests on a connection. */
struct bytebuf {
    char *data;
    size_t len, cap;
};

enum client_state {
    CLIENT_READING_HEAD, /* waiting for (the rest of) a request head */
    CLIENT_PROXYING,     /* a request is being answered */
    CLIENT_TUNNEL,       /* after a 101: bytes flow both ways untouched */
    CLIENT_DRAINING,     /* last response queued; close once flushed */
    CLIENT_LINGERING,    /* write side shut; discarding input before close */
};

enum upstream_state {
    UP_IDLE, /* no upstream exchange */
    UP_CONNECTING,
    UP_WAITING_HEAD, /* connected (or reused), request sent or sending */
    UP_BODY,         /* final response head forwarded, body streaming */
    UP_DONE,
};

struct request {
    /* From the head (pointers into conn->head). */
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    const char *query; /* after '?', NULL when absent */
    size_t query_len;
    const char *host; /* Host (or absolute-form authority) without port */
    size_t host_len;
    const char *host_full; /* with port, as the client sent it */
    size_t host_full_len;
    int http_minor;  /* HTTP/1.0 or HTTP/1.1 */
    bool keep_alive; /* client wants the connection kept */
    bool chunked;
    bool has_content_length;
    uint64_t content_length;
    bool expect_continue;
    bool upgrade;
    bool idempotent;
    bool is_head;
    size_t n_headers;
    bool headers_done; /* later header callbacks are trailers */
    struct timespec start;
    char request_id[129];
    size_t request_id_len;

    /* Routing. */
    struct snapshot *snap; /* retained for the request's lifetime */
    struct route_match match;
    bool routed;

    /* Body progress (client -> upstream). */
    uint64_t body_received;
    bool body_done;
    bool body_started; /* a body byte was forwarded upstream */
    struct chunk_check chunk;

    /* Response progress (upstream -> client). */
    int status;                    /* sent to the client */
    bool response_started;         /* a final head was queued for the client */
    bool response_chunked;         /* re-encoding the body as chunks */
    bool response_close_delimited; /* HTTP/1.0 client, unknown length */
    uint64_t bytes_sent;
};

struct upstream_side {
    enum upstream_state state;
    struct conn *conn;
    bool reused; /* came from the keep-alive pool */
    const struct sockaddr *addr;
    socklen_t addrlen;
    char addr_text[64]; /* "ip:port", filled by proxy_upstream_addr() */
    int target;         /* index in the upstream, -1 for a plain host */
    int tried[32];
    size_t n_tried;
    int attempts;
    http_parser parser;
    size_t head_scanned;
    int status;     /* upstream's final status, 0 before */
    bool got_bytes; /* any response byte arrived */
    bool keep_alive;
    bool read_paused;            /* back-pressure from the client side */
    struct http_header *headers; /* response head fields (into conn->resp_head) */
    size_t n_headers, cap_headers;
    bool resp_headers_done;
    bool resp_has_content_length;
    uint64_t resp_content_length;
    struct timespec start;
    double latency_ms;  /* until the response head */
    const char *reason; /* upstream reason phrase (into conn->resp_head) */
    size_t reason_len;
    bool chunked; /* upstream body is chunked */
    bool message_done;
    struct chunk_check chunk; /* framing check of a chunked upstream body */
    /* https upstreams: NULL for a plain one, else &tls_key (the pool's key beside addr) */
    const struct pool_tls *tls;
    struct pool_tls tls_key;
    char tls_name[256]; /* SNI and the name the certificate must carry */
};

struct client_conn {
    struct worker *worker;
    struct client_conn *prev, *next; /* worker's connection list */
    struct conn *conn;
    struct event *timer;     /* head / keep-alive timeouts */
    uint64_t deadline_ms;    /* when the current timeout expires; 0: none */
    uint64_t timer_armed_ms; /* when the libevent timer fires; 0: not armed */
    struct event *deferred;  /* runs close / next request outside callbacks */
    enum client_state state;
    bool close_after;        /* close once the current response is flushed */
    bool want_close;         /* close now (from the deferred event) */
    bool want_next;          /* look for the next request (deferred) */
    bool client_read_paused; /* back-pressure from the upstream side */
    bool eof;                /* client closed its sending side */
    int listen_port;
    uint64_t serial;      /* the worker's count of accepted connections, this one included */
    unsigned n_requests;  /* request heads received on this connection, the current one included */
    bool tls;             /* the client speaks TLS (X-Forwarded-Proto: https) */
    bool tls_handshaking; /* the TLS handshake has not finished */
    /* The verified client certificate (weir.ssl_verify_client), NULL/"" when none: its subject
     * (RFC 2253, owned) and SHA-256 fingerprint (hex). */
    char *client_cert_subject;
    char client_cert_fingerprint[65];
    struct sockaddr_storage peer;
    char peer_ip[INET6_ADDRSTRLEN];
    bool peer_trusted;

    http_parser parser;
    size_t head_scanned;
    struct bytebuf head;      /* copy of the request head */
    struct bytebuf path;      /* normalised path */
    struct bytebuf uphead;    /* upstream request head (kept for retries) */
    struct bytebuf resp_head; /* copy of the upstream response head */
    struct bytebuf resp_out;  /* the response head being built for the client */
    struct http_header *headers;
    size_t cap_headers;

    struct request req;
    struct upstream_side up;
    struct plugin_run *run; /* the request's plugins, when its route has any (lua/plugin_run.h) */
};

/* Takes ownership of fd (an accepted socket) and of tls, the TLS session made for it on a TLS
 * listener (NULL: plain HTTP). */
struct tls_conn;
void client_conn_new(struct worker *w, int fd, const struct sockaddr *peer, int listen_port,
                     struct tls_conn *tls);
/* Closes at the next turn of the loop (safe inside callbacks). */
void client_conn_close(struct client_conn *c);
/* Graceful stop: idle connections close now, busy ones after their response. */
void client_conn_shutdown(struct client_conn *c);

/* Sends a gateway-made JSON error {"message","request_id"} with `status` as
 * the response to the current request; the connection closes afterwards when
 * `close` is set. Only valid before a response head was queued. */
void client_send_error(struct client_conn *c, int status, const char *message, bool close);

/* Called by the upstream side. */
void client_response_head_sent(struct client_conn *c);
void client_response_done(struct client_conn *c);
void client_start_body(struct client_conn *c); /* upstream ready for the body */
void client_resume_read(struct client_conn *c);
void client_start_tunnel(struct client_conn *c);

/* Room for `extra` more bytes (grows by doubling). */
void bytebuf_grow(struct bytebuf *b, size_t extra);
static inline void bytebuf_reserve(struct bytebuf *b, size_t extra) {
    if (b->cap - b->len < extra) bytebuf_grow(b, extra);
}
/* Inline: a message head is built from about a hundred pieces, most of a few bytes, and two
 * calls per piece were a measurable share of a proxied request. */
static inline void bytebuf_append(struct bytebuf *b, const void *p, size_t n) {
    bytebuf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}
static inline void bytebuf_append_str(struct bytebuf *b, const char *s, size_t n) {
    bytebuf_append(b, s, n);
}

#endif
