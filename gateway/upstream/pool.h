/* pool: a worker's idle keep-alive connections to upstream targets.
 *
 * Keyed by target address and, for TLS connections (https upstreams), by the server name and
 * the digest of the client context's settings (tls/tls_upstream.h): a plain and a TLS
 * connection to one address never mix. Each TLS key also keeps the newest session for the
 * resumption of new connections. TLS keys are bounded (1024 per pool: with preserve_host the
 * name comes from the client); past that, new names are neither pooled nor resumed.
 *
 * Bounded: at most `max_idle` connections per key (the oldest is closed to make room) and
 * each closes after `idle_timeout_ms` idle; an idle connection the server closes (or that
 * receives unexpected bytes) is dropped at once. Most recently released is reused first (its
 * socket is the least likely to have been closed by the server). One pool per worker thread;
 * not thread-safe. */
#ifndef WEIR_POOL_H
#define WEIR_POOL_H

#include "core/conn.h"
#include <event2/event.h>
#include <sys/socket.h>

struct pool;
struct ssl_session_st;

/* What a TLS connection is keyed by besides its address (borrowed for the call). */
struct pool_tls {
    const unsigned char *digest; /* 32 bytes */
    const char *name;            /* server name (SNI and certificate check) */
};

struct pool *pool_new(struct event_base *base, int max_idle, int idle_timeout_ms);
/* Returns an idle connection to addr (callbacks cleared; reading enabled
 * and the idle timeout still set: install callbacks and timeouts before
 * returning to the loop), or NULL. The caller owns it. */
struct conn *pool_acquire(struct pool *p, const struct sockaddr *addr, socklen_t len,
                          const struct pool_tls *tls);
/* Takes ownership of a connection with no request in flight and nothing
 * buffered; it is closed instead when the pool is full or disabled. */
void pool_release(struct pool *p, const struct sockaddr *addr, socklen_t len,
                  const struct pool_tls *tls, struct conn *conn);
/* TLS session resumption: the session to offer on a new connection (borrowed, NULL when none),
 * and keeping a new one (the pool takes the reference; NULL is ignored). */
struct ssl_session_st *pool_session(struct pool *p, const struct sockaddr *addr, socklen_t len,
                                    const struct pool_tls *tls);
void pool_save_session(struct pool *p, const struct sockaddr *addr, socklen_t len,
                       const struct pool_tls *tls, struct ssl_session_st *session);
/* Closes every idle connection (used at shutdown). */
void pool_close_all(struct pool *p);
void pool_free(struct pool *p);

#endif
