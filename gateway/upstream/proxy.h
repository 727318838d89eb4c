/* proxy: the upstream half of an exchange.
 *
 * Given a routed request on a client connection, proxy_start() picks a
 * target (balancer or the service's host), takes a keep-alive connection
 * from the worker's pool or connects, sends the request head built here
 * (upstream path, Host, X-Forwarded-*, X-Real-IP, X-Request-ID, Via, minus
 * hop-by-hop fields), streams the body the client side hands over, parses
 * the response strictly and streams it back, re-framing the body for the
 * client. Retries go to another target only when nothing was sent, or when
 * an idempotent request without a body failed on a reused connection.
 * Gateway errors: 502 (refused, reset, malformed response), 504 (timeouts).
 * Worker thread only; all state lives in the client_conn. */
#ifndef WEIR_PROXY_H
#define WEIR_PROXY_H

#include <stdbool.h>
#include <stddef.h>

struct client_conn;

/* Output high watermark for streaming in both directions (back-pressure). */
#define PROXY_HIGH_WATERMARK (256 * 1024)
#define PROXY_LOW_WATERMARK (64 * 1024)

void proxy_start(struct client_conn *c);
/* Request body bytes from the client, in order. */
void proxy_forward_body(struct client_conn *c, const char *data, size_t len);
void proxy_body_done(struct client_conn *c);
/* True while the upstream output is above the high watermark. */
bool proxy_upstream_output_full(const struct client_conn *c);
/* The client output drained: resume reading the upstream if paused. */
void proxy_client_drained(struct client_conn *c);
/* Tunnel mode: move the client's pending input upstream. */
void proxy_tunnel_from_client(struct client_conn *c);
/* The client side ended its half of the tunnel. */
void proxy_tunnel_client_eof(struct client_conn *c);
/* "ip:port" of the upstream tried last, or NULL when none was. */
const char *proxy_upstream_addr(struct client_conn *c);
/* After the response phase's plugins: sends the response head (with their changes) and
 * streams the body. */
void proxy_response_continue(struct client_conn *c);
/* Drops the upstream connection (never pooled). Safe when there is none. */
void proxy_abort(struct client_conn *c);

#endif
