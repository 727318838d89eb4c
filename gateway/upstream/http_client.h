/* http_client: an outbound HTTP/1.1 client on one event loop, with idle keep-alive connections
 * and strict response parsing. It knows nothing of its callers (weir.http.request, in
 * gateway/lua/pdk_http.c, is one).
 *
 * An http_client belongs to one event_base and is used only on the thread that runs it; nothing
 * here takes a lock. It holds, each created on first use: an evdns resolver (host names are
 * never looked up with a blocking call; it reads /etc/resolv.conf and /etc/hosts once), the TLS
 * client context and CA stores (gateway/tls/tls_client.h), and a bounded set of idle keep-alive
 * connections keyed by scheme, host, port and TLS settings (a connection is reused only for the
 * settings it was verified with). Bounds: HTTP_CLIENT_IDLE_PER_KEY idle connections per key and
 * HTTP_CLIENT_IDLE_MAX in all (the oldest is closed to make room), each closed after
 * HTTP_CLIENT_IDLE_TIMEOUT_MS or as soon as the server closes it or sends anything; a response
 * head of at most HTTP_CLIENT_MAX_HEAD bytes; a body of at most the request's max_body.
 *
 * The caller builds the request head (http_client_parse_url() gives it the target and the
 * authority) and the client sends it as it is, followed by the body. A request runs through:
 * resolving the host (numeric hosts need no lookup), connecting to each of its addresses in
 * turn until one answers, the TLS handshake for https, sending, and reading the response. The
 * timeout bounds each of these steps (each address, for connecting; sending until the request
 * is all out) and then each wait for more of the response: it is not a deadline for the whole
 * exchange. A request on a reused connection that the server closes before answering anything
 * is sent once more on a new connection, but only for idempotent methods (RFC 9112 9.3.1): the
 * server may have acted on it.
 *
 * Responses are read strictly, as upstream/proxy.c reads them: 1xx heads are skipped, 101 is
 * refused, framing is one Content-Length or "chunked" alone (never both, no other
 * Transfer-Encoding), chunked bodies are checked as they come, trailers are dropped; a body
 * without framing ends when the server closes. Anything else ends the request with an error. */
#ifndef WEIR_HTTP_CLIENT_H
#define WEIR_HTTP_CLIENT_H

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>

#define HTTP_CLIENT_HOST_MAX 253 /* a DNS name; IPv6 literals are shorter */
/* The longest authority: a host name with ":65535" ("[v6 address]:port" is shorter). */
#define HTTP_CLIENT_AUTHORITY_MAX (HTTP_CLIENT_HOST_MAX + 6)
#define HTTP_CLIENT_MAX_HEAD 32768 /* a response head (status line and fields) */
/* The idle list is scanned linearly, which costs nothing next to a network round trip at these
 * sizes. */
#define HTTP_CLIENT_IDLE_PER_KEY 16
#define HTTP_CLIENT_IDLE_MAX 128
#define HTTP_CLIENT_IDLE_TIMEOUT_MS 60000

struct http_client;
struct http_client_op;
struct http_header;

/* An http or https URL split into what a request needs. */
struct http_client_url {
    bool tls, ipv6, host_is_ip;
    char host[HTTP_CLIENT_HOST_MAX + 1]; /* lower case, an IPv6 literal without its brackets */
    unsigned port;
    const char *target; /* path and query, without the fragment; may be empty; points into the
                           parsed string */
    size_t target_len;
};

/* Splits s (len bytes, not necessarily terminated) into u; NULL, or why the URL is refused
 * ("no scheme", "bad port"...). Only what can be sent as it is passes: no user information, and
 * the path and query must already be percent-encoded (visible ASCII). */
const char *http_client_parse_url(const char *s, size_t len, struct http_client_url *u);
/* The Host of u into buf (at least HTTP_CLIENT_AUTHORITY_MAX + 1 bytes): the host, bracketed
 * when IPv6, with ":port" when not the scheme's default. */
void http_client_authority(const struct http_client_url *u, char *buf, size_t n);

/* One request. Everything is copied by http_client_request(); the caller keeps its own. */
struct http_client_request {
    const struct http_client_url *url;
    const char *method; /* as in the head; decides whether the response has a body (HEAD) and
                           whether the request may be sent twice (idempotent methods) */
    const char *head;   /* request line and header fields up to the empty line, as sent */
    size_t head_len;
    const char *body; /* NULL or body_len bytes after the head */
    size_t body_len;
    bool verify;         /* https: verify the server's certificate and name */
    const char *ca_file; /* https with verify: trust this file's CAs instead of the system's */
    long timeout_ms;     /* > 0; for each step, see above */
    size_t max_body;     /* a larger response body is an error */

    /* https: the name sent (SNI) and verified instead of the URL's host, or NULL */
    const char *server_name;
};

/* A response, valid only during the completion callback, which may drain or pull up body. The
 * header fields (names as sent, values trimmed) point into the client's copy of the head. */
struct http_client_response {
    int status;
    const struct http_header *headers;
    size_t n_headers;
    struct evbuffer *body;
};

/* The end of a request: res, or res NULL and err saying why there is none ("connection
 * refused", "timeout", "could not resolve host: ...", "certificate verify failed: ...",
 * "invalid response: ...", "response too large", "connection closed prematurely"...). */
typedef void (*http_client_done_fn)(void *arg, const struct http_client_response *res,
                                    const char *err);

/* log_name names the user in log lines ("weir.http"); it must outlive the client. Does no I/O. */
struct http_client *http_client_new(struct event_base *base, const char *log_name);
/* Closes the idle connections and frees the resolver and TLS state. Every request must have
 * ended (completed or cancelled) before. */
void http_client_free(struct http_client *c);

/* Starts req. Returns a handle; done(arg, ...) is then called exactly once from the event loop,
 * never before this returns, unless the request is cancelled first; the handle is invalid once
 * done returns. done may start other requests (a connection the response left reusable is
 * already back in the pool). Returns NULL when the request ended at once (no TLS context, a CA file
 * that cannot be loaded, a lookup or every connect failing at once...): the reason is then in err
 * (errlen bytes; 256 hold any) and done is never called. */
struct http_client_op *http_client_request(struct http_client *c,
                                           const struct http_client_request *req,
                                           http_client_done_fn done, void *arg, char *err,
                                           size_t errlen);
/* The caller no longer wants the answer: the request's connection is closed, done is not
 * called, and the handle is invalid. Not from inside done. */
void http_client_cancel(struct http_client_op *op);

#endif
