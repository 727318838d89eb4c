#include "core/worker.h"

#include "lua/lua_vm.h"

#include <errno.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/listener.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/client_conn.h"
#include "tls/passthrough.h"
#include "tls/tls_conn.h"
#include "upstream/pool.h"

atomic_int weir_connections;

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *peer,
                      int peerlen, void *arg) {
    (void)peerlen;
    struct worker *w = arg;
    int port = 0;
    bool ssl = false, stream = false;
    for (size_t i = 0; i < w->n_listeners; i++)
        if (w->listeners[i] == l) {
            port = w->listen_ports[i];
            ssl = w->listen_ssl[i];
            stream = w->listen_stream[i];
        }
    const struct config *cfg = w->snapshot->config;
    /* Over the limit the connection is closed at once: cheaper for everyone
     * than queueing work the process has promised not to take. */
    if (atomic_fetch_add(&weir_connections, 1) >= cfg->weir.limits.max_connections) {
        atomic_fetch_sub(&weir_connections, 1);
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (stream) {
        passthrough_accept(w, fd, peer, port);
        return;
    }
    struct tls_conn *tls = NULL;
    if (ssl) {
        /* the current snapshot's certificates, kept by the connection until it closes */
        tls = w->snapshot->tls ? tls_conn_new(w->snapshot->tls, fd) : NULL;
        if (!tls) {
            /* only after a reload that dropped every ssl listener and the default certificate
             * (listeners change with a restart) */
            log_err("worker %d: TLS connection on port %d refused: the configuration has no "
                    "TLS settings any more (restart to apply the new listeners)",
                    w->id, port);
            atomic_fetch_sub(&weir_connections, 1);
            close(fd);
            return;
        }
    }
    client_conn_new(w, fd, peer, port, tls);
}

static void close_listeners(struct worker *w) {
    for (size_t i = 0; i < w->n_listeners; i++) {
        if (w->listeners[i]) evconnlistener_free(w->listeners[i]);
        w->listeners[i] = NULL;
    }
}

static void maybe_finish_stop(struct worker *w) {
    if (w->stopping && w->n_conns == 0) event_base_loopexit(w->base, NULL);
}

static void shutdown_timeout_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct worker *w = arg;
    if (w->n_conns)
        log_warn("worker %d: shutdown_timeout reached with %zu connections open", w->id,
                 w->n_conns);
    event_base_loopbreak(w->base);
}

/* Runs on the worker thread when control has put something in the mailbox. */
static void wake_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct worker *w = arg;
    uint64_t ticks;
    ssize_t r = read(w->wake_fd, &ticks, sizeof ticks);
    (void)r;
    pthread_mutex_lock(&w->mailbox_lock);
    struct snapshot *next = w->mailbox;
    w->mailbox = NULL;
    bool stop = w->stop_requested, fast = w->fast_stop;
    pthread_mutex_unlock(&w->mailbox_lock);

    if (next) {
        snapshot_release_deferred(w->snapshot);
        w->snapshot = next;
    }
    if (fast) {
        event_base_loopbreak(w->base);
        return;
    }
    if (stop && !w->stopping) {
        w->stopping = true;
        close_listeners(w);
        log_info("worker %d: stopped accepting; draining %zu connection%s", w->id, w->n_conns,
                 w->n_conns == 1 ? "" : "s");
        pool_close_all(w->pool);
        for (struct client_conn *c = w->conns; c; c = c->next)
            client_conn_shutdown(c);
        passthrough_shutdown_all(w);
        int ms = w->snapshot->config->weir.limits.shutdown_timeout_ms;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        w->shutdown_timer = evtimer_new(w->base, shutdown_timeout_cb, w);
        evtimer_add(w->shutdown_timer, &tv);
        maybe_finish_stop(w);
    }
}

struct worker *worker_new(int id, struct snapshot *snap, struct access_log *alog, char *err,
                          size_t errlen) {
    const struct weir_settings *ws = &snap->config->weir;
    struct worker *w = calloc(1, sizeof *w);
    if (!w) abort();
    w->id = id;
    struct event_config *ec = event_config_new();
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!w->base) {
        snprintf(err, errlen, "cannot create event loop");
        free(w);
        return NULL;
    }
    pthread_mutex_init(&w->mailbox_lock, NULL);
    /* An eventfd, not event_active(): the worker's base runs without locks,
     * so other threads must not touch it. */
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->wake_fd < 0) abort();
    w->wake = event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, wake_cb, w);
    event_add(w->wake, NULL);
    w->snapshot = snap;
    snapshot_retain(snap);
    w->access_log = alog;
    w->metrics = metrics_new();
    w->pool = pool_new(w->base, ws->limits.upstream_keepalive_pool,
                       ws->limits.upstream_keepalive_timeout_ms);
    if (RAND_bytes((unsigned char *)w->rng, sizeof w->rng) != 1) abort();
    w->rng[0] |= 1;

    w->n_listeners = ws->n_proxy_listen + ws->n_stream_listen;
    w->listeners = calloc(w->n_listeners, sizeof *w->listeners);
    w->listen_ports = calloc(w->n_listeners, sizeof *w->listen_ports);
    w->listen_ssl = calloc(w->n_listeners, sizeof *w->listen_ssl);
    w->listen_stream = calloc(w->n_listeners, sizeof *w->listen_stream);
    for (size_t i = 0; i < w->n_listeners; i++) {
        const struct listen_addr *a = i < ws->n_proxy_listen
                                          ? &ws->proxy_listen[i]
                                          : &ws->stream_listen[i - ws->n_proxy_listen];
        int fd = listener_open(a, err, errlen);
        if (fd < 0) {
            worker_join_and_free(w);
            return NULL;
        }
        w->listen_ports[i] = a->port;
        w->listen_ssl[i] = a->ssl;
        w->listen_stream[i] = a->stream;
        w->listeners[i] = evconnlistener_new(w->base, accept_cb, w,
                                             LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
        if (!w->listeners[i]) {
            snprintf(err, errlen, "cannot listen on %s:%d", a->host, a->port);
            close(fd);
            worker_join_and_free(w);
            return NULL;
        }
    }
    return w;
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

int worker_start(struct worker *w) {
    return pthread_create(&w->thread, NULL, worker_main, w);
}

static void wake(struct worker *w) {
    uint64_t one = 1;
    ssize_t r = write(w->wake_fd, &one, sizeof one);
    (void)r;
}

void worker_publish(struct worker *w, struct snapshot *snap) {
    snapshot_retain(snap);
    pthread_mutex_lock(&w->mailbox_lock);
    struct snapshot *old = w->mailbox;
    w->mailbox = snap;
    pthread_mutex_unlock(&w->mailbox_lock);
    snapshot_release(old);
    wake(w);
}

void worker_stop(struct worker *w, bool fast) {
    pthread_mutex_lock(&w->mailbox_lock);
    w->stop_requested = true;
    w->fast_stop = w->fast_stop || fast;
    pthread_mutex_unlock(&w->mailbox_lock);
    wake(w);
}

void worker_join_and_free(struct worker *w) {
    if (w->thread) pthread_join(w->thread, NULL);
    /* Connections still open after a fast stop or the shutdown timeout. */
    while (w->conns) {
        struct client_conn *c = w->conns;
        client_conn_close(c);
        event_base_loop(w->base, EVLOOP_NONBLOCK);
        if (w->conns == c) break; /* cannot happen: close is immediate once run */
    }
    passthrough_close_all(w);
    event_base_loop(w->base, EVLOOP_NONBLOCK); /* releases the conns freed from callbacks */
    lua_vm_free(w->lua);                       /* after the connections: their plugin runs use it */
    while (w->retired_vms) {
        struct lua_vm *vm = w->retired_vms;
        w->retired_vms = vm->next_retired;
        lua_vm_free(vm);
    }
    close_listeners(w);
    free(w->listeners);
    free(w->listen_ports);
    free(w->listen_ssl);
    free(w->listen_stream);
    pool_free(w->pool);
    metrics_free(w->metrics);
    if (w->wake) event_free(w->wake);
    if (w->wake_fd > 0) close(w->wake_fd);
    if (w->shutdown_timer) event_free(w->shutdown_timer);
    snapshot_release(w->mailbox);
    snapshot_release(w->snapshot);
    event_base_free(w->base);
    pthread_mutex_destroy(&w->mailbox_lock);
    free(w);
}

/* Frees the retired VMs no request uses; from the loop, never under a VM's own call. */
static void collect_vms(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct worker *w = arg;
    struct lua_vm **p = &w->retired_vms;
    while (*p) {
        struct lua_vm *vm = *p;
        if (vm->users > 0) {
            p = &vm->next_retired;
            continue;
        }
        *p = vm->next_retired;
        lua_vm_free(vm);
    }
}

void worker_lua_vm_released(struct worker *w, struct lua_vm *vm) {
    if (!vm->retired || vm->users > 0) return;
    struct timeval now = {0, 0};
    event_base_once(w->base, -1, EV_TIMEOUT, collect_vms, w, &now);
}

struct lua_vm *worker_lua_vm(struct worker *w) {
    if (w->lua && w->lua->retired) {
        w->lua->next_retired = w->retired_vms;
        w->retired_vms = w->lua;
        w->lua = NULL;
        worker_lua_vm_released(w, w->retired_vms);
    }
    if (w->lua) return w->lua;
    char err[512];
    w->lua = lua_vm_new(w->base, w->id, w->snapshot, err, sizeof err);
    if (!w->lua) log_err("worker %d: cannot start the Lua VM: %s", w->id, err);
    return w->lua;
}

struct snapshot *worker_acquire_snapshot(struct worker *w) {
    snapshot_retain(w->snapshot);
    return w->snapshot;
}

void worker_conn_added(struct worker *w, struct client_conn *c) {
    c->prev = NULL;
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
}

void worker_conn_removed(struct worker *w, struct client_conn *c) {
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    w->n_conns--;
    atomic_fetch_sub(&weir_connections, 1);
    maybe_finish_stop(w);
}

void worker_stream_opened(struct worker *w) {
    w->n_conns++;
}

void worker_stream_closed(struct worker *w) {
    w->n_conns--;
    atomic_fetch_sub(&weir_connections, 1);
    maybe_finish_stop(w);
}

static uint64_t xorshift128plus(uint64_t s[2]) {
    uint64_t x = s[0];
    uint64_t const y = s[1];
    s[0] = y;
    x ^= x << 23;
    s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
    return s[1] + y;
}

void worker_request_id(struct worker *w, char out[37]) {
    uint64_t a = xorshift128plus(w->rng), b = xorshift128plus(w->rng);
    unsigned char r[16];
    memcpy(r, &a, 8);
    memcpy(r + 8, &b, 8);
    r[6] = (r[6] & 0x0f) | 0x40;
    r[8] = (r[8] & 0x3f) | 0x80;
    static const char hex[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = hex[r[i] >> 4];
        out[o++] = hex[r[i] & 15];
    }
    out[o] = '\0';
}
