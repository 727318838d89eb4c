#include "core/conn.h"

#include <errno.h>
#include <event2/event_struct.h> /* struct event embedded: one allocation per conn */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/log.h"

/* Bytes asked of the kernel per read: large enough that a streaming body
 * takes few syscalls, small enough to stay fair between connections. */
#define CONN_READ_SIZE 65536

struct conn {
    struct event_base *base;
    int fd;
    struct event rev, wev;
    struct evbuffer *in, *out;
    conn_data_cb readcb, writecb;
    conn_event_cb eventcb;
    void *arg;

    bool reading;           /* the owner wants reads */
    bool read_added;        /* rev is in the event loop */
    bool write_added;       /* wev waits for the socket to take more */
    bool write_scheduled;   /* wev made active for this loop iteration */
    bool connecting;
    bool closed;            /* EOF or error seen: no more I/O */
    bool shut_pending;      /* shutdown(SHUT_WR) once the output is empty */
    bool dead;              /* conn_free() called inside a callback */
    int depth;              /* callbacks of this conn on the stack */
    struct timeval rto, wto;
    bool has_rto, has_wto;
    size_t read_high, write_low;
};

static void release(struct conn *c) {
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    free(c);
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

static void update_read_event(struct conn *c) {
    bool want = c->reading && !c->closed && !c->connecting &&
                !(c->read_high && evbuffer_get_length(c->in) >= c->read_high);
    if (want && !c->read_added) {
        event_add(&c->rev, c->has_rto ? &c->rto : NULL);
        c->read_added = true;
    } else if (!want && c->read_added) {
        event_del(&c->rev);
        c->read_added = false;
    }
}

static void fail(struct conn *c, short what) {
    c->closed = true;
    update_read_event(c);
    if (c->write_added) {
        event_del(&c->wev);
        c->write_added = false;
    }
    if (c->eventcb) CALLBACK(c, c->eventcb(c, what, c->arg));
}

static void on_readable(evutil_socket_t fd, short what, void *arg) {
    struct conn *c = arg;
    if (what & EV_TIMEOUT) {
        c->reading = false;
        update_read_event(c);
        if (c->eventcb) CALLBACK(c, c->eventcb(c, CONN_READING | CONN_TIMEOUT, c->arg));
        return;
    }
    struct evbuffer_iovec vec[2];
    int n_vec = evbuffer_reserve_space(c->in, CONN_READ_SIZE, vec, 2);
    if (n_vec <= 0) abort();
    struct iovec iov[2];
    for (int i = 0; i < n_vec; i++) {
        iov[i].iov_base = vec[i].iov_base;
        iov[i].iov_len = vec[i].iov_len;
    }
    ssize_t n = readv(fd, iov, n_vec);
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
    /* EV_PERSIST restarts the read timeout each time the event fires. */
    if (c->readcb && !CALLBACK(c, c->readcb(c, c->arg))) return;
    update_read_event(c);
}

static void on_writable(evutil_socket_t fd, short what, void *arg) {
    struct conn *c = arg;
    c->write_scheduled = false;
    if (c->closed) return;
    if (c->connecting) {
        if (what & EV_TIMEOUT) {
            c->connecting = false;
            fail(c, CONN_WRITING | CONN_TIMEOUT);
            return;
        }
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err == EINPROGRESS) return; /* spurious wake-up */
        c->connecting = false;
        if (c->write_added) {
            event_del(&c->wev);
            c->write_added = false;
        }
        if (err) {
            errno = err;
            fail(c, CONN_ERROR);
            return;
        }
        if (c->eventcb && !CALLBACK(c, c->eventcb(c, CONN_CONNECTED, c->arg))) return;
        if (c->closed) return;
        update_read_event(c);
    } else if ((what & EV_TIMEOUT) && c->write_added) {
        fail(c, CONN_WRITING | CONN_TIMEOUT);
        return;
    }
    size_t before = evbuffer_get_length(c->out);
    if (before > 0) {
        int n = evbuffer_write(c->out, fd);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            fail(c, CONN_WRITING | CONN_ERROR);
            return;
        }
    }
    size_t after = evbuffer_get_length(c->out);
    if (after > 0 && !c->write_added) {
        event_add(&c->wev, c->has_wto ? &c->wto : NULL);
        c->write_added = true;
    } else if (after == 0 && c->write_added) {
        event_del(&c->wev);
        c->write_added = false;
    } else if (after > 0 && after < before && c->has_wto) {
        event_add(&c->wev, &c->wto); /* progress: restart the write timeout */
    }
    if (after == 0 && c->shut_pending) {
        c->shut_pending = false;
        shutdown(fd, SHUT_WR);
    }
    if (before > after && after <= c->write_low && c->writecb) CALLBACK(c, c->writecb(c, c->arg));
}

/* Output grew: flush it at the end of this loop iteration (unless the
 * socket is full, in which case the write event is already waiting). */
static void output_changed(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg) {
    (void)buf;
    struct conn *c = arg;
    if (info->n_added == 0 || c->write_added || c->write_scheduled || c->connecting || c->closed)
        return;
    c->write_scheduled = true;
    event_active(&c->wev, EV_WRITE, 1);
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
    event_assign(&c->rev, base, fd, EV_READ | EV_PERSIST, on_readable, c);
    event_assign(&c->wev, base, fd, EV_WRITE | EV_PERSIST, on_writable, c);
    return c;
}

struct conn *conn_new(struct event_base *base, int fd) {
    return conn_alloc(base, fd);
}

struct conn *conn_connect(struct event_base *base, const struct sockaddr *sa, socklen_t len,
                          const struct timeval *connect_timeout) {
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = conn_alloc(base, fd);
    c->connecting = true;
    if (connect_timeout) {
        c->wto = *connect_timeout;
        c->has_wto = true;
    }
    int r = connect(fd, sa, len);
    if (r == 0 || errno == EINPROGRESS) {
        event_add(&c->wev, c->has_wto ? &c->wto : NULL);
        c->write_added = true;
    } else {
        /* Refused at once (or no route): report it from the loop, like an
         * asynchronous failure, so callers have one code path. */
        c->write_scheduled = true;
        event_active(&c->wev, EV_WRITE, 1);
    }
    return c;
}

void conn_free(struct conn *c) {
    if (!c || c->dead) return;
    event_del(&c->rev);
    event_del(&c->wev);
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

void conn_set_timeouts(struct conn *c, const struct timeval *read, const struct timeval *write) {
    bool had_rto = c->has_rto;
    c->has_rto = read != NULL;
    if (read) c->rto = *read;
    c->has_wto = write != NULL;
    if (write) c->wto = *write;
    /* Re-add with the new timeout (a timer change, not an epoll change). */
    if (c->read_added && (read || had_rto)) event_add(&c->rev, c->has_rto ? &c->rto : NULL);
    if (c->write_added) event_add(&c->wev, c->has_wto ? &c->wto : NULL);
}

void conn_set_watermarks(struct conn *c, size_t read_high, size_t write_low) {
    c->read_high = read_high;
    c->write_low = write_low;
    update_read_event(c);
}

void conn_shutdown_write(struct conn *c) {
    if (c->closed || c->dead) return;
    if (evbuffer_get_length(c->out) == 0 && !c->connecting)
        shutdown(c->fd, SHUT_WR);
    else
        c->shut_pending = true;
}
