/* server: one running gateway, the control loop and its worker threads, as `weir -c` runs it.
 *
 * server_start() brings a built snapshot up in the order that makes start-up failures clear: the
 * error and access logs, a probe of every proxy address, the admin API (before the proxy, so
 * that once the proxy accepts connections the admin API does too), weir.shared_dicts, then the
 * worker threads. server_run() is the control loop: admin requests, their commits (compile,
 * persist, publish, in that order) and freeing the snapshots workers let go of, on the calling
 * thread until server_stop(). main.c runs it on the main thread with signal events added to
 * server_event_base(); `weir plugin test` (cli/plugin_test.c) runs it on a thread of its own.
 *
 * One server per process: the error log, weir.shared dictionaries and the snapshot collector are
 * process-wide. Every function but server_stop() belongs to the thread that runs the control
 * loop (before server_run() and after it returns: the thread that started the server). */
#ifndef WEIR_SERVER_H
#define WEIR_SERVER_H

#include <event2/event.h>
#include <stdbool.h>

#include "config/config.h"
#include "config/snapshot.h"
#include "core/errlist.h"

struct server;
struct store;

/* Starts serving `snap` (the caller's reference, taken over; so is `store`, NULL for DB-less).
 * `source` names where the entities come from, for the start-up notice (a file name, or "the
 * built-in configuration"). The workers serve once this returns, the admin API once
 * server_run() runs. NULL with a one-line message in err after undoing everything. */
struct server *server_start(struct snapshot *snap, struct store *store, const char *source,
                            char *err, size_t errlen);
/* The control loop's event base: main.c adds its signal events there. */
struct event_base *server_event_base(struct server *s);
/* Runs the control loop on the calling thread until server_stop(). */
void server_run(struct server *s);
/* Tells the workers to stop accepting (at once) and makes server_run() return; server_free()
 * then waits for them: open connections are closed at once when `fast`, else in-flight requests
 * finish first (weir.limits.shutdown_timeout). Any thread, and signal callbacks on the control
 * loop. */
void server_stop(struct server *s, bool fast);
/* Installs a configuration file read again (SIGHUP), taking `cfg` over: NULL, or one that does
 * not build, logs the problems in `errs` and keeps the running configuration. With a store only
 * the file's server settings apply (the entities stay the store's). */
void server_reload(struct server *s, struct config *cfg, struct errlist *errs);
/* Stops the admin API and the workers, waits for them and frees everything. */
void server_free(struct server *s);

#endif
