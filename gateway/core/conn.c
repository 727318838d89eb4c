#include "core/conn.h"

#include <errno.h>
#include <event2/event_struct.h> /* struct event embedded: one allocation per conn */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "tls/tls_conn.h"

/* Bytes asked of the kernel per read: large enough that a streaming body
 * takes few syscalls, small enough to stay fair between connections. */
#define CONN_READ_SIZE 65536
/* One TLS record's payload: what a decrypting read is given at a time. */
#define TLS_RECORD_SIZE 16384

struct conn {
    struct event_base *base;
    int fd;
    struct event rev, wev;
    struct event timer; /* read and write timeouts, moved lazily */
    struct event later; /* work deferred to the end of this loop iteration */
    struct evbuffer *in, *out;
    conn_data_cb readcb, writecb;
    conn_event_cb eventcb;
    void *arg;

    bool reading;      /* the owner wants reads */
    bool read_added;   /* rev is in the event loop */
    bool write_added;  /* wev waits for the socket to take more */
    bool want_flush;   /* `later` will write the output */
    bool want_read;    /* `later` will read again (edge-triggered) */
    int connect_errno; /* connect() failed at once: reported by `later` */
    bool connecting;
    bool closed;               /* error or timeout: no more I/O */
    bool read_eof;             /* the peer finished sending: no more reads, writes go on */
    bool peer_closed;          /* EPOLLRDHUP seen: read on until EOF (edge-triggered) */
    bool shut_pending;         /* shutdown(SHUT_WR) once the output is empty */
    bool dead;                 /* conn_free() called inside a callback */
    int depth;                 /* callbacks of this conn on the stack */
    struct tls_conn *tls;      /* NULL: plain TCP */
    bool tls_handshaking;      /* the server handshake has not finished */
    bool tls_read_wants_write; /* a decrypting read waits for the socket to take bytes */
    bool tls_write_wants_read; /* an encrypting write waits for bytes from the socket */
    uint64_t rto_ms, wto_ms;   /* 0: no timeout */
    uint64_t read_deadline;    /* while reading is enabled */
    uint64_t write_deadline;   /* while output waits for the socket, or connecting */
    uint64_t timer_at;         /* when `timer` fires; 0: not armed */
    size_t read_high, write_low;
};

static void release(struct conn *c) {
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    free(c);
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Timeouts are deadlines checked by one timer per connection. The timer is
 * re-added only when a deadline moves earlier than the armed time; a read
 * that pushes the read deadline later costs a clock read, not a heap
 * operation (libevent re-adds a persistent event's timeout on every
 * activation). When the timer fires early it re-arms for what is left. */
static void timer_update(struct conn *c) {
    uint64_t next = 0;
    if (c->read_deadline && (!next || c->read_deadline < next)) next = c->read_deadline;
    if (c->write_deadline && (!next || c->write_deadline < next)) next = c->write_deadline;
    if (!next || (c->timer_at && c->timer_at <= next)) return;
    uint64_t now = now_ms(), ms = next > now ? next - now : 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(&c->timer, &tv);
    c->timer_at = next;
}

static void read_deadline_restart(struct conn *c) {
    c->read_deadline = c->rto_ms && c->read_added ? now_ms() + c->rto_ms : 0;
    timer_update(c);
}

static void write_deadline_restart(struct conn *c) {
    c->write_deadline = c->wto_ms && (c->write_added || c->connecting) ? now_ms() + c->wto_ms : 0;
    timer_update(c);
}

/* Runs a callback with the conn protected from being released under it;
 * returns false when the callback freed the conn. */
#define CALLBACK(c, call)                                                                          \
    ({                                                                                             \
        (c)->depth++;                                                                              \
        call;                                                                                      \
        (c)->depth--;                                                                              \
        bool alive_ = !(c)->dead;                                                                  \
        if (!alive_ && (c)->depth == 0) release(c);                                                \
        alive_;                                                                                    \
    })

static void schedule_later(struct conn *c);

static void update_read_event(struct conn *c) {
    /* a TLS handshake reads whether or not the owner wants data yet */
    bool want = (c->reading || c->tls_handshaking) && !c->closed && !c->read_eof &&
                !c->connecting && !(c->read_high && evbuffer_get_length(c->in) >= c->read_high);
    if (want && !c->read_added) {
        event_add(&c->rev, NULL);
        c->read_added = true;
        read_deadline_restart(c);
        if (c->tls && !c->tls_handshaking) {
            /* bytes the session took from the socket bring no new edge: read once anyway */
            c->want_read = true;
            schedule_later(c);
        }
    } else if (!want && c->read_added) {
        event_del(&c->rev);
        c->read_added = false;
        c->read_deadline = 0;
    }
}

static void fail(struct conn *c, short what) {
    if (what & CONN_EOF) {
        /* A half-close: the peer may still read what we send. */
        c->read_eof = true;
        update_read_event(c);
        if (c->eventcb) CALLBACK(c, c->eventcb(c, what, c->arg));
        return;
    }
    c->closed = true;
    update_read_event(c);
    if (c->write_added) {
        event_del(&c->wev);
        c->write_added = false;
    }
    c->write_deadline = 0;
    if (c->eventcb) CALLBACK(c, c->eventcb(c, what, c->arg));
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct conn *c = arg;
    c->timer_at = 0;
    uint64_t now = now_ms();
    if (c->write_deadline && now >= c->write_deadline) {
        c->connecting = false;
        fail(c, CONN_WRITING | CONN_TIMEOUT);
        return;
    }
    if (c->read_deadline && now >= c->read_deadline) {
        c->reading = false;
        update_read_event(c);
        if (c->eventcb) CALLBACK(c, c->eventcb(c, CONN_READING | CONN_TIMEOUT, c->arg));
        return;
    }
    timer_update(c);
}

static void schedule_later(struct conn *c) {
    event_active(&c->later, EV_TIMEOUT, 1);
}

static void tls_read(struct conn *c);
static void tls_write(struct conn *c);

static void do_read(struct conn *c) {
    if (c->tls) {
        tls_read(c);
        return;
    }
    struct evbuffer_iovec vec[2];
    int n_vec = evbuffer_reserve_space(c->in, CONN_READ_SIZE, vec, 2);
    if (n_vec <= 0) abort();
    struct iovec iov[2];
    size_t asked = 0;
    for (int i = 0; i < n_vec; i++) {
        iov[i].iov_base = vec[i].iov_base;
        iov[i].iov_len = vec[i].iov_len;
        asked += vec[i].iov_len;
    }
    ssize_t n = readv(c->fd, iov, n_vec);
    if (n < 0) {
        evbuffer_commit_space(c->in, vec, 0);
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        fail(c, CONN_READING | CONN_ERROR);
        return;
    }
    if (n == 0) {
        evbuffer_commit_space(c->in, vec, 0);
        fail(c, CONN_READING | CONN_EOF);
        return;
    }
    size_t left = (size_t)n;
    for (int i = 0; i < n_vec; i++) {
        if (vec[i].iov_len > left) vec[i].iov_len = left;
        left -= vec[i].iov_len;
    }
    evbuffer_commit_space(c->in, vec, n_vec);
    if (c->rto_ms) read_deadline_restart(c);
    /* Edge-triggered: a short read emptied the socket and the next byte
     * brings a new edge. A full read may have left more, and a peer that
     * closed (EV_CLOSED, reported with its last data) brings no further
     * edge: in both cases read again at the end of this loop iteration
     * (after other connections had their turn), until EOF. */
    if ((size_t)n == asked || c->peer_closed) {
        c->want_read = true;
        schedule_later(c);
    }
    if (c->readcb && !CALLBACK(c, c->readcb(c, c->arg))) return;
    update_read_event(c);
}

static void do_write(struct conn *c) {
    if (c->closed || c->connecting) return;
    if (c->tls) {
        tls_write(c);
        return;
    }
    size_t before = evbuffer_get_length(c->out);
    if (before > 0) {
        int n = evbuffer_write(c->out, c->fd);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            fail(c, CONN_WRITING | CONN_ERROR);
            return;
        }
    }
    size_t after = evbuffer_get_length(c->out);
    if (after > 0 && !c->write_added) {
        /* The socket is full (or evbuffer_write stopped at its iovec
         * limit): wait for it. Adding an edge-triggered event for a socket
         * that is already writable reports it at once. */
        event_add(&c->wev, NULL);
        c->write_added = true;
        write_deadline_restart(c);
    } else if (after == 0 && c->write_added) {
        event_del(&c->wev);
        c->write_added = false;
        c->write_deadline = 0;
    } else if (after > 0 && after < before) {
        write_deadline_restart(c); /* progress restarts the write timeout */
    }
    if (after == 0 && c->shut_pending) {
        c->shut_pending = false;
        shutdown(c->fd, SHUT_WR);
    }
    if (before > after && after <= c->write_low && c->writecb) CALLBACK(c, c->writecb(c, c->arg));
}

/* ---- TLS transport (tls/tls_conn.h does the OpenSSL calls) ---- */

static void wev_add(struct conn *c) {
    if (c->write_added) return;
    event_add(&c->wev, NULL);
    c->write_added = true;
    write_deadline_restart(c);
}

static void wev_del(struct conn *c) {
    if (!c->write_added) return;
    event_del(&c->wev);
    c->write_added = false;
    c->write_deadline = 0;
}

static void tls_handshake(struct conn *c) {
    switch (tls_conn_handshake(c->tls)) {
    case TLS_IO_WANT_READ:
        wev_del(c);
        return;
    case TLS_IO_WANT_WRITE:
        wev_add(c);
        return;
    case TLS_IO_PLAIN_HTTP:
        /* the owner answers in plain text: the conn is plain TCP from here on */
        tls_conn_free(c->tls, false);
        c->tls = NULL;
        c->tls_handshaking = false;
        if (c->eventcb && !CALLBACK(c, c->eventcb(c, CONN_PLAIN_HTTP, c->arg))) return;
        update_read_event(c);
        return;
    case TLS_IO_CLOSED:
        fail(c, CONN_READING | CONN_EOF | CONN_HANDSHAKE);
        return;
    case TLS_IO_ERROR:
        fail(c, CONN_READING | CONN_ERROR | CONN_HANDSHAKE);
        return;
    case TLS_IO_DONE:
        break;
    }
    c->tls_handshaking = false;
    if (evbuffer_get_length(c->out) == 0) wev_del(c);
    if (c->eventcb && !CALLBACK(c, c->eventcb(c, CONN_CONNECTED, c->arg))) return;
    if (c->closed) return;
    update_read_event(c);
    /* a request may have come with the handshake's last flight, and output may wait */
    c->want_read = true;
    c->want_flush = evbuffer_get_length(c->out) > 0 || c->shut_pending;
    schedule_later(c);
}

/* Decrypts what the socket holds, up to CONN_READ_SIZE per turn, like do_read. */
static void tls_read(struct conn *c) {
    if (c->tls_handshaking) {
        tls_handshake(c);
        return;
    }
    c->tls_read_wants_write = false;
    size_t total = 0;
    enum tls_io r = TLS_IO_DONE;
    while (total < CONN_READ_SIZE) {
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(c->in, TLS_RECORD_SIZE, &v, 1) != 1) abort();
        size_t got = 0;
        r = tls_conn_read(c->tls, v.iov_base, v.iov_len, &got);
        v.iov_len = got;
        evbuffer_commit_space(c->in, &v, got ? 1 : 0);
        total += got;
        if (r != TLS_IO_DONE) break;
        if (tls_conn_read_drained(c->tls)) { /* the next read would meet EAGAIN */
            r = TLS_IO_WANT_READ;
            break;
        }
    }
    if (r == TLS_IO_DONE) {
        /* stopped at the per-turn limit: read on after the other connections */
        c->want_read = true;
        schedule_later(c);
    } else if (r == TLS_IO_WANT_WRITE) {
        c->tls_read_wants_write = true; /* e.g. a TLS 1.3 key update to answer */
        wev_add(c);
    }
    if (total) {
        if (c->rto_ms) read_deadline_restart(c);
        if (c->readcb && !CALLBACK(c, c->readcb(c, c->arg))) return;
        if (c->closed || c->read_eof) return;
    }
    if (r == TLS_IO_CLOSED) {
        fail(c, CONN_READING | CONN_EOF);
        return;
    }
    if (r == TLS_IO_ERROR) {
        fail(c, CONN_READING | CONN_ERROR);
        return;
    }
    update_read_event(c);
}

/* Encrypts the output, one record per call, until it is empty or the socket is full. */
static void tls_write(struct conn *c) {
    if (c->tls_handshaking) return;
    size_t before = evbuffer_get_length(c->out);
    enum tls_io r = TLS_IO_DONE;
    c->tls_write_wants_read = false;
    size_t len;
    while ((len = evbuffer_get_length(c->out)) > 0) {
        if (len > TLS_RECORD_SIZE) len = TLS_RECORD_SIZE;
        const unsigned char *p = evbuffer_pullup(c->out, (ev_ssize_t)len);
        size_t put = 0;
        r = tls_conn_write(c->tls, p, len, &put);
        if (put) evbuffer_drain(c->out, put);
        if (r != TLS_IO_DONE) break;
    }
    if (r == TLS_IO_ERROR || r == TLS_IO_CLOSED) {
        fail(c, CONN_WRITING | CONN_ERROR);
        return;
    }
    if (r == TLS_IO_WANT_READ) c->tls_write_wants_read = true;
    size_t after = evbuffer_get_length(c->out);
    if (r == TLS_IO_WANT_WRITE) {
        if (c->write_added && after < before)
            write_deadline_restart(c); /* progress restarts the write timeout */
        wev_add(c);
    } else if (after == 0 && !c->tls_read_wants_write) {
        wev_del(c);
    }
    if (after == 0 && c->shut_pending) {
        c->shut_pending = false;
        tls_conn_close_notify(c->tls);
        shutdown(c->fd, SHUT_WR);
    }
    if (before > after && after <= c->write_low && c->writecb) CALLBACK(c, c->writecb(c, c->arg));
}

static void tls_writable(struct conn *c) {
    if (c->tls_handshaking) {
        CALLBACK(c, tls_handshake(c));
        return;
    }
    if (c->tls_read_wants_write && !CALLBACK(c, tls_read(c))) return;
    if (c->closed) return;
    CALLBACK(c, do_write(c));
}

static void on_readable(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    struct conn *c = arg;
    if (what & EV_CLOSED) c->peer_closed = true;
    if (c->tls_write_wants_read && !CALLBACK(c, do_write(c))) return;
    if (c->read_added && !c->closed && !c->read_eof) do_read(c);
}

static void on_writable(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    struct conn *c = arg;
    if (c->closed) return;
    if (c->tls && !c->connecting) {
        tls_writable(c);
        return;
    }
    if (c->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err == EINPROGRESS) return; /* spurious wake-up */
        c->connecting = false;
        if (c->write_added) {
            event_del(&c->wev);
            c->write_added = false;
        }
        c->write_deadline = 0;
        if (err) {
            errno = err;
            fail(c, CONN_ERROR);
            return;
        }
        if (c->tls) {
            /* the client handshake, bounded by the connect timeout as a read timeout until
             * the owner sets its own at CONN_CONNECTED */
            c->rto_ms = c->wto_ms;
            update_read_event(c);
            CALLBACK(c, tls_handshake(c));
            return;
        }
        if (c->eventcb && !CALLBACK(c, c->eventcb(c, CONN_CONNECTED, c->arg))) return;
        if (c->closed) return;
        update_read_event(c);
    }
    CALLBACK(c, do_write(c));
}

/* Deferred work: flushing output queued during this iteration (one writev
 * for everything a request produced) and reading on after a full read. */
static void on_later(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct conn *c = arg;
    if (c->connecting && c->connect_errno) {
        c->connecting = false;
        errno = c->connect_errno;
        fail(c, CONN_ERROR);
        return;
    }
    if (c->want_flush) {
        c->want_flush = false;
        if (!CALLBACK(c, do_write(c))) return;
    }
    if (c->want_read) {
        c->want_read = false;
        if (c->read_added && !c->closed && !c->read_eof) CALLBACK(c, do_read(c));
    }
}

/* Output grew: flush it at the end of this loop iteration, unless the
 * socket is full (the write event is waiting) or still connecting. */
static void output_changed(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg) {
    (void)buf;
    struct conn *c = arg;
    if (info->n_added == 0 || c->write_added || c->want_flush || c->connecting || c->closed) return;
    c->want_flush = true;
    schedule_later(c);
}

/* Input shrank below the high watermark: resume reading. */
static void input_changed(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg) {
    (void)buf;
    struct conn *c = arg;
    if (info->n_deleted && c->reading && !c->read_added) update_read_event(c);
}

static struct conn *conn_alloc(struct event_base *base, int fd) {
    struct conn *c = calloc(1, sizeof *c);
    if (!c) abort();
    c->base = base;
    c->fd = fd;
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    if (!c->in || !c->out) abort();
    evbuffer_add_cb(c->out, output_changed, c);
    evbuffer_add_cb(c->in, input_changed, c);
    /* Edge-triggered, as nginx does: level-triggered epoll polls every
     * ready socket again on the next epoll_wait. */
    event_assign(&c->rev, base, fd, EV_READ | EV_CLOSED | EV_PERSIST | EV_ET, on_readable, c);
    event_assign(&c->wev, base, fd, EV_WRITE | EV_PERSIST | EV_ET, on_writable, c);
    evtimer_assign(&c->timer, base, on_timer, c);
    event_assign(&c->later, base, -1, 0, on_later, c);
    return c;
}

struct conn *conn_new(struct event_base *base, int fd) {
    return conn_alloc(base, fd);
}

struct conn *conn_new_tls(struct event_base *base, int fd, struct tls_conn *tls) {
    struct conn *c = conn_alloc(base, fd);
    c->tls = tls;
    c->tls_handshaking = true;
    return c;
}

void conn_start_tls(struct conn *c, struct tls_conn *tls) {
    c->tls = tls;
    c->tls_handshaking = true;
}

bool conn_is_tls(const struct conn *c) {
    return c->tls != NULL;
}

struct tls_conn *conn_tls(const struct conn *c) {
    return c->tls;
}

const char *conn_tls_error(const struct conn *c) {
    return c->tls ? tls_conn_error(c->tls) : "TLS error";
}

struct conn *conn_connect(struct event_base *base, const struct sockaddr *sa, socklen_t len,
                          const struct timeval *connect_timeout) {
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = conn_alloc(base, fd);
    c->connecting = true;
    if (connect_timeout)
        c->wto_ms =
            (uint64_t)connect_timeout->tv_sec * 1000 + (uint64_t)connect_timeout->tv_usec / 1000;
    int r = connect(fd, sa, len);
    if (r == 0 || errno == EINPROGRESS) {
        event_add(&c->wev, NULL);
        c->write_added = true;
        write_deadline_restart(c);
    } else {
        /* Refused at once (or no route): report it from the loop, like an
         * asynchronous failure, so callers have one code path. */
        c->connect_errno = errno;
        schedule_later(c);
    }
    return c;
}

void conn_free(struct conn *c) {
    if (!c || c->dead) return;
    event_del(&c->rev);
    event_del(&c->wev);
    event_del(&c->timer);
    event_del(&c->later);
    if (c->tls) {
        /* close_notify only on a sound session that is not being torn down for a failure */
        tls_conn_free(c->tls, !c->closed && !c->tls_handshaking);
        c->tls = NULL;
    }
    close(c->fd);
    c->fd = -1;
    c->dead = true;
    c->closed = true;
    if (c->depth == 0) release(c);
}

void conn_setcb(struct conn *c, conn_data_cb readcb, conn_data_cb writecb, conn_event_cb eventcb,
                void *arg) {
    c->readcb = readcb;
    c->writecb = writecb;
    c->eventcb = eventcb;
    c->arg = arg;
}

struct evbuffer *conn_input(struct conn *c) {
    return c->in;
}

struct evbuffer *conn_output(struct conn *c) {
    return c->out;
}

int conn_fd(const struct conn *c) {
    return c->fd;
}

void conn_read_enable(struct conn *c) {
    c->reading = true;
    update_read_event(c);
}

void conn_read_disable(struct conn *c) {
    c->reading = false;
    update_read_event(c);
}

static uint64_t tv_ms(const struct timeval *tv) {
    return tv ? (uint64_t)tv->tv_sec * 1000 + (uint64_t)tv->tv_usec / 1000 : 0;
}

void conn_set_timeouts(struct conn *c, const struct timeval *read, const struct timeval *write) {
    c->rto_ms = tv_ms(read);
    c->wto_ms = tv_ms(write);
    /* New durations count from now, like bufferevent_set_timeouts. */
    c->read_deadline = c->rto_ms && c->read_added ? now_ms() + c->rto_ms : 0;
    c->write_deadline = c->wto_ms && (c->write_added || c->connecting) ? now_ms() + c->wto_ms : 0;
    timer_update(c);
}

void conn_set_watermarks(struct conn *c, size_t read_high, size_t write_low) {
    c->read_high = read_high;
    c->write_low = write_low;
    update_read_event(c);
}

void conn_shutdown_write(struct conn *c) {
    if (c->closed || c->dead) return;
    if (evbuffer_get_length(c->out) == 0 && !c->connecting && !c->tls_handshaking) {
        if (c->tls) tls_conn_close_notify(c->tls);
        shutdown(c->fd, SHUT_WR);
    } else
        c->shut_pending = true;
}
