/* tls_conn: one TLS session on a socket, for core/conn.c: server side on an accepted socket,
 * client side (tls_conn_new_client) on a connection to an https upstream.
 *
 * The calls mirror non-blocking socket I/O and never block: each returns TLS_IO_DONE or says
 * what the session waits for (the socket readable or writable), that the peer closed, or that the
 * session failed. conn.c owns the event loop side; this file is the only one that calls OpenSSL
 * for a client connection, and it leaves the thread's OpenSSL error queue empty after every call.
 *
 * Before the handshake reads anything, tls_conn_handshake() peeks at the first byte: a client
 * speaking plain HTTP to a TLS port (a request line starts with a capital letter, a TLS record
 * with 0x16) gets TLS_IO_PLAIN_HTTP, so that the caller can answer it in plain text, as nginx
 * does.
 *
 * Ownership: the tls_conn holds a reference on its tls_server until tls_conn_free(); the socket
 * stays the caller's. Worker thread only. */
#ifndef WEIR_TLS_CONN_H
#define WEIR_TLS_CONN_H

#include <stdbool.h>
#include <stddef.h>

struct tls_server;
struct tls_conn;

enum tls_io {
    TLS_IO_DONE,       /* the call did its work (some bytes, or the handshake finished) */
    TLS_IO_WANT_READ,  /* call again once the socket is readable */
    TLS_IO_WANT_WRITE, /* call again once the socket is writable */
    TLS_IO_CLOSED,     /* the peer closed (close_notify, or TCP end of stream) */
    TLS_IO_ERROR,      /* the session failed; tls_conn_error() says why */
    TLS_IO_PLAIN_HTTP, /* handshake only: the client sent plain HTTP */
};

/* A session accepting on fd with ts's current certificates (a reference is taken). */
struct tls_conn *tls_conn_new(struct tls_server *ts, int fd);
/* A client session on fd (connected) with ctx (tls/tls_upstream.h, a reference is taken by
 * OpenSSL): `name` is sent as SNI unless it is an IP address, and checked against the peer's
 * certificate when the context verifies; `session` (borrowed, may be NULL) is offered for
 * resumption. */
struct ssl_ctx_st;
struct ssl_session_st;
struct tls_conn *tls_conn_new_client(struct ssl_ctx_st *ctx, int fd, const char *name,
                                     struct ssl_session_st *session);
/* For tls_upstream.c: client session caching on ctx, the sessions going to the tls_conn. */
void tls_conn_client_ctx_setup(struct ssl_ctx_st *ctx);
/* The newest resumable session the server gave a client session (the caller owns the reference
 * returned), or NULL. */
struct ssl_session_st *tls_conn_take_session(struct tls_conn *t);
/* Whether the handshake resumed a session. */
bool tls_conn_session_reused(const struct tls_conn *t);
/* Sends close_notify first when `notify` and the session is sound (best effort: one
 * non-blocking attempt), then frees the session. NULL is ignored. */
void tls_conn_free(struct tls_conn *t, bool notify);

enum tls_io tls_conn_handshake(struct tls_conn *t);
/* Decrypts up to len bytes into buf; *got is what was stored (> 0 only with TLS_IO_DONE). */
enum tls_io tls_conn_read(struct tls_conn *t, void *buf, size_t len, size_t *got);
/* True when the socket's last read came back short (or would block) and OpenSSL holds no
 * more input: with edge-triggered events, reading on would only meet EAGAIN. */
bool tls_conn_read_drained(const struct tls_conn *t);
/* Encrypts and sends up to len bytes; *put is how many were taken. After TLS_IO_WANT_*, call
 * again with the same bytes first (the buffer may move, the length may only grow). */
enum tls_io tls_conn_write(struct tls_conn *t, const void *buf, size_t len, size_t *put);
/* Sends close_notify once (best effort); the caller then shuts the socket's write side. */
void tls_conn_close_notify(struct tls_conn *t);

/* Why the session failed, for the log (valid until the next call on t). */
const char *tls_conn_error(const struct tls_conn *t);
/* The server name the client asked for, or NULL. */
const char *tls_conn_server_name(const struct tls_conn *t);
/* The negotiated protocol ("TLSv1.3") and cipher suite names (static strings). */
const char *tls_conn_protocol(const struct tls_conn *t);
const char *tls_conn_cipher(const struct tls_conn *t);
/* The client certificate, when one was sent and verified (weir.ssl_verify_client): its subject
 * (RFC 2253, truncated to subject_len - 1) and its SHA-256 fingerprint (64 hex digits). False
 * when there is none. */
bool tls_conn_client_cert(const struct tls_conn *t, char *subject, size_t subject_len,
                          char fingerprint[65]);

#endif
