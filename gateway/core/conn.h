/* conn: a buffered, non-blocking stream connection on a worker's event loop.
 *
 * Weir's own replacement for libevent's bufferevent on the request path,
 * written for the syscall pattern of a proxy: the read event is added once
 * and stays (level-triggered) while reading is enabled; reads go straight
 * into the input evbuffer with readv (no FIONREAD ioctl per read); output is
 * written with writev at the end of the current loop iteration (batched, via
 * event_active) and the write event is only added to epoll when the socket
 * is full. A plain request/response therefore costs one readv and one writev
 * per side and no epoll_ctl, where a bufferevent adds and removes its write
 * event for every response and asks the kernel for the readable size before
 * every read (the profile that motivated this: 6 epoll_ctl per request).
 *
 * Semantics follow bufferevent's closely (callbacks for data, drained output
 * and events; a read high watermark that suspends reading; a write low
 * watermark for the drained callback; read/write timeouts), so the HTTP code
 * reads the same.
 *
 * TLS is a second transport (conn_new_tls): the same buffers and callbacks, with a TLS session
 * (tls/tls_conn.h) between them and the socket. The server handshake runs first, driven by the
 * socket's events in both directions; CONN_CONNECTED reports its end, CONN_ERROR|CONN_HANDSHAKE
 * (or CONN_EOF|CONN_HANDSHAKE) its failure, CONN_PLAIN_HTTP a client that spoke plain HTTP (the
 * connection is plain TCP from then on, so that the owner can answer in kind). Reads decrypt
 * until the socket is empty; writes encrypt at most one record per call and wait for the socket
 * like plain writes. conn_shutdown_write() sends close_notify first, conn_free() too (best
 * effort). A plain connection pays one test of a field per read and per write for this.
 *
 * Ownership: conn_free() may be called from inside the connection's own
 * callbacks; the memory is released once the callback returns. Worker
 * thread only. */
#ifndef WEIR_CONN_H
#define WEIR_CONN_H

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

enum {
    CONN_READING = 0x01,
    CONN_WRITING = 0x02,
    CONN_EOF = 0x10,
    CONN_ERROR = 0x20,
    CONN_TIMEOUT = 0x40,
    CONN_CONNECTED = 0x80,   /* connect done; TLS: the server handshake is done */
    CONN_HANDSHAKE = 0x100,  /* with CONN_ERROR or CONN_EOF: during the TLS handshake */
    CONN_PLAIN_HTTP = 0x200, /* a TLS connection's client sent plain HTTP (now plain TCP) */
};

struct conn;
typedef void (*conn_data_cb)(struct conn *c, void *arg);
typedef void (*conn_event_cb)(struct conn *c, short what, void *arg);

/* Wraps an accepted, non-blocking socket (the conn owns and closes it). */
struct conn *conn_new(struct event_base *base, int fd);
/* The same with TLS: the conn owns fd and tls (tls/tls_conn.h, made for fd) and starts the
 * server handshake once reading is enabled. */
struct tls_conn;
struct conn *conn_new_tls(struct event_base *base, int fd, struct tls_conn *tls);
/* Whether the connection is TLS (still or from the start, not after CONN_PLAIN_HTTP). */
bool conn_is_tls(const struct conn *c);
/* The TLS session (tls/tls_conn.h) for its accessors, or NULL on a plain connection. */
struct tls_conn *conn_tls(const struct conn *c);
/* Why the TLS session failed, for the log ("TLS error" when nothing more is known). */
const char *conn_tls_error(const struct conn *c);
/* Starts a non-blocking connect; CONN_CONNECTED or CONN_ERROR (or
 * CONN_TIMEOUT after the write timeout) follows through the event callback,
 * never from inside this call. Output queued before the connection is up is
 * sent once it is. Returns NULL only when no socket could be created. */
struct conn *conn_connect(struct event_base *base, const struct sockaddr *sa, socklen_t len,
                          const struct timeval *connect_timeout);
/* Makes a connection from conn_connect() a TLS client: the conn takes tls (tls/tls_conn.h,
 * made with conn_fd(c)) and runs the client handshake once the TCP connect is done, bounded by
 * the connect timeout; CONN_CONNECTED then means the handshake is done, and a failed handshake
 * is CONN_ERROR|CONN_HANDSHAKE (or CONN_EOF|CONN_HANDSHAKE, or CONN_READING|CONN_TIMEOUT). Call
 * it right after conn_connect(), before returning to the loop. */
void conn_start_tls(struct conn *c, struct tls_conn *tls);
void conn_free(struct conn *c);

void conn_setcb(struct conn *c, conn_data_cb readcb, conn_data_cb writecb, conn_event_cb eventcb,
                void *arg);
struct evbuffer *conn_input(struct conn *c);
struct evbuffer *conn_output(struct conn *c);
int conn_fd(const struct conn *c);

/* Reading on or off (writing is always on: queued output is flushed). */
void conn_read_enable(struct conn *c);
void conn_read_disable(struct conn *c);
/* NULL clears a timeout. The read timeout runs while reading is enabled
 * and restarts on every read; the write timeout runs while output waits
 * for the socket (and bounds a connect). */
void conn_set_timeouts(struct conn *c, const struct timeval *read, const struct timeval *write);
/* Reading pauses while the input holds `read_high` bytes or more (0: no
 * limit); the write callback runs when the output drains to `write_low`. */
void conn_set_watermarks(struct conn *c, size_t read_high, size_t write_low);
/* Shuts down the sending side once everything queued is written. */
void conn_shutdown_write(struct conn *c);

#endif
