/* passthrough: TLS connections relayed by SNI without being decrypted (Kong's tls_passthrough).
 *
 * A connection accepted on a weir.stream_listen address goes through three states:
 *  1. hello: its bytes are buffered until client_hello_parse() (tls/client_hello.h) has the whole
 *     ClientHello: at most CLIENT_HELLO_MAX_BYTES, within weir.ssl_handshake_timeout from the
 *     accept. Its server name picks a tls_passthrough route (exact name, then "*." wildcard of the
 *     parent domain: tls/sni_map.h) in the worker's current snapshot.
 *  2. connecting: to the route's service (host:port, or a target of the upstream its host names,
 *     retried on other targets up to service.retries), bounded by service.connect_timeout.
 *  3. relaying: the buffered bytes, ClientHello first, then everything both ways, untouched.
 *     Each direction stops reading while the other side has PASSTHROUGH_HIGH_WATERMARK bytes
 *     queued and resumes at PASSTHROUGH_LOW_WATERMARK (back-pressure: memory per connection is
 *     bounded whatever the peers' speeds). A half-close is passed on (the FIN is forwarded once
 *     the queued bytes are written, the other direction goes on); the connection ends when both
 *     directions have, on an error or reset on either side, when queued output makes no progress
 *     for service.write_timeout, or when no byte moves either way for service.read_timeout
 *     (nginx's proxy_timeout).
 * A missing or unknown server name, a malformed or oversized ClientHello, a timeout or a failed
 * connect closes the connection (logged once at info). Every connection ends with one access
 * log line (docs/tls.md gives the format).
 *
 * The connection uses the snapshot current when its ClientHello is complete and lets go of it
 * once connected: a reload changes new connections only. Connections count in weir_connections
 * and the worker's n_conns like HTTP ones. Worker thread only. */
#ifndef WEIR_PASSTHROUGH_H
#define WEIR_PASSTHROUGH_H

#include <stddef.h>
#include <sys/socket.h>

#include "config/config.h"

#define PASSTHROUGH_HIGH_WATERMARK (256 * 1024)
#define PASSTHROUGH_LOW_WATERMARK (64 * 1024)

struct worker;
struct sni_map;
struct passthrough_conn;

/* The server names of cfg's tls_passthrough routes (value: the route's index in cfg->routes),
 * sealed; NULL when there is none. Names are unique (model_check refused repeats). */
struct sni_map *passthrough_routes_build(const struct config *cfg);
/* Takes `fd`, accepted on stream listener port `listen_port` and already counted in
 * weir_connections; the connection registers itself with the worker. */
void passthrough_accept(struct worker *w, int fd, const struct sockaddr *peer, int listen_port);
/* Graceful stop of w's connections: those still reading their ClientHello are closed; those
 * connecting or relaying go on until they end (or the worker's shutdown_timeout). */
void passthrough_shutdown_all(struct worker *w);
/* Closes all of w's connections at once (fast stop, or the shutdown timeout passed). */
void passthrough_close_all(struct worker *w);
/* The route a server name selects in `routes` (from passthrough_routes_build), or NULL. */
const struct route *passthrough_route_for(const struct config *cfg, const struct sni_map *routes,
                                          const char *sni, size_t len);

#endif
