/* worker: one event loop thread serving client connections.
 *
 * Each worker owns its event_base, its own SO_REUSEPORT listening sockets,
 * its upstream keep-alive pool, its access-log buffer and the connections
 * it accepted. The control thread talks to a worker only through
 * worker_publish() (a new config snapshot) and worker_stop(), both of which
 * hand over under the worker's own mailbox lock and wake it through an
 * eventfd; nothing on the request path takes a lock shared between
 * workers. */
#ifndef WEIR_WORKER_H
#define WEIR_WORKER_H

#include <event2/event.h>
#include <event2/listener.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/snapshot.h"

struct client_conn;
struct pool;
struct access_log;
struct metrics;

struct worker {
    int id;
    pthread_t thread;
    struct event_base *base;
    struct evconnlistener **listeners;
    int *listen_ports;
    bool *listen_ssl;    /* the listener terminates TLS */
    bool *listen_stream; /* a stream_listen listener: TLS passthrough */
    size_t n_listeners;
    struct snapshot *snapshot; /* the worker's current reference */
    struct pool *pool;
    struct access_log *access_log;
    struct client_conn *conns;             /* every open client connection */
    struct passthrough_conn *passthroughs; /* TLS passthrough connections (tls/passthrough.h) */
    size_t n_conns;                        /* both kinds */
    bool stopping;
    uint64_t rng[2];       /* xorshift128+ state for request ids */
    uint64_t conn_serials; /* client connections accepted (their serial numbers) */
    /* Requests answered; written by this worker only (relaxed, no RMW
     * contention), read by the admin API on the control thread. */
    atomic_uint_fast64_t requests;
    struct metrics *metrics;    /* written by this worker, read by the admin API */
    struct lua_vm *lua;         /* created on the first request that runs a plugin */
    struct lua_vm *retired_vms; /* replaced after a leak; freed once unused */

    pthread_mutex_t mailbox_lock;
    struct snapshot *mailbox; /* a newer snapshot, handed over by control */
    bool stop_requested;
    bool fast_stop;
    int wake_fd; /* eventfd the control thread writes to */
    struct event *wake;
    struct event *shutdown_timer;
};

/* Process-wide state the control thread and workers share (read-mostly). */
extern atomic_int weir_connections; /* open client connections, all workers */

/* Creates a worker with its listeners (fds opened here, one set per worker).
 * Returns NULL with a message in err. */
struct worker *worker_new(int id, struct snapshot *snap, struct access_log *alog, char *err,
                          size_t errlen);
int worker_start(struct worker *w);
void worker_publish(struct worker *w, struct snapshot *snap); /* takes a reference */
void worker_stop(struct worker *w, bool fast);
void worker_join_and_free(struct worker *w);

/* Snapshot for a new request on this worker (retained; release when done). */
struct snapshot *worker_acquire_snapshot(struct worker *w);
/* Connection bookkeeping, called by client_conn. */
void worker_conn_added(struct worker *w, struct client_conn *c);
void worker_conn_removed(struct worker *w, struct client_conn *c);
/* The same for a TLS passthrough connection (which keeps its own list in w->passthroughs). */
void worker_stream_opened(struct worker *w);
void worker_stream_closed(struct worker *w);
/* The worker's Lua VM, created on first use (and again after a retired one, lua_vm.h); NULL
 * (logged) when it cannot be. */
struct lua_vm *worker_lua_vm(struct worker *w);
/* A plugin run let go of vm: a retired VM nobody uses any more is freed (from the loop). */
void worker_lua_vm_released(struct worker *w, struct lua_vm *vm);
/* A fresh random request id (UUIDv4 form) into out[37]. */
void worker_request_id(struct worker *w, char out[37]);

#endif
