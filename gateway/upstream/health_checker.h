/* health_checker: Kong's active health checks, on a thread of their own.
 *
 * The checker owns one event loop on a dedicated thread, started the first time a configuration
 * with an active interval is attached (upstream/health.h) and stopped by health_checker_stop()
 * (registered with atexit() when it starts; the server may call it earlier, it is idempotent).
 * A thread of its own rather than the control thread's loop: the control thread compiles
 * configurations (about 100 ms of CPU at 10,000 routes) and runs at a lower priority, and a probe
 * timeout must not stretch because an admin change is being compiled; the workers' loops are
 * never used, so probes cost the request path nothing. It also keeps server.c unaware of it.
 *
 * Every HEALTH_CHECKER_TICK_MS the thread takes the registry's lock, starts the probes that are
 * due (an entry is probed every healthy.interval while healthy, every unhealthy.interval while
 * unhealthy; an interval of 0 means never), at most `concurrency` at once per upstream, and lets
 * go. Probes never block: tcp probes are a non-blocking connect, http and https probes go
 * through upstream/http_client.h (a GET of http_path with the configured headers and
 * "Connection: close"), each bounded by the check's timeout. A probe holds a reference to its
 * entry and settings, so configurations may change under it. Outcomes: a connect error or a
 * broken exchange is a TCP failure, a timeout a timeout, a status in healthy.http_statuses a
 * success, in unhealthy.http_statuses an HTTP failure, any other status nothing; each is
 * counted against the active thresholds (upstream/health_state.h). */
#ifndef WEIR_HEALTH_CHECKER_H
#define WEIR_HEALTH_CHECKER_H

#define HEALTH_CHECKER_TICK_MS 20
/* The largest probe response body read (a larger one is a failed probe). */
#define HEALTH_CHECKER_MAX_BODY (1024 * 1024)

/* Control thread (health_attach): starts the checker thread unless it runs. */
void health_checker_wake(void);
/* Stops the thread and ends its probes. Main or control thread; idempotent. */
void health_checker_stop(void);

#endif
