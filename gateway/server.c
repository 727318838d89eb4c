#include "server.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "config/model.h"
#include "config/model_change.h"
#include "config/model_text.h"
#include "core/access_log.h"
#include "core/idle_runner.h"
#include "core/listener.h"
#include "core/log.h"
#include "core/uuid.h"
#include "core/worker.h"
#include "lua/lua_vm.h"
#include "lua/lua_watchdog.h"
#include "lua/shared_dict.h"
#include "store/store.h"
#include "tls/tls_server.h"
#include "upstream/health_checker.h"

struct server {
    struct snapshot *snapshot; /* the current one (the control thread's reference) */
    uint64_t version;
    struct worker **workers;
    int n_workers;
    struct event_base *base;
    struct admin *admin;
    struct admin_state admin_state;
    struct access_log *access_log;
    struct store *store;                 /* NULL: DB-less, entities come from the config file */
    struct model_text_cache *text_cache; /* what the store was last given, per entity */
    struct shared_dict **dicts;          /* weir.shared_dicts, fixed at start */
    size_t n_dicts;
    struct event *collector;
    struct idle_runner *compiler; /* admin changes and reloads compile there (server_run on) */
    struct event *ticket_rotation; /* TLS session ticket keys (tls/tls_server.h) */
    int stop_fd;                   /* eventfd: server_stop() from any thread */
    struct event *stop_event;
    atomic_bool fast;
};

static bool same_listeners(const struct weir_settings *a, const struct weir_settings *b) {
    if (a->n_proxy_listen != b->n_proxy_listen) return false;
    for (size_t i = 0; i < a->n_proxy_listen; i++)
        if (strcmp(a->proxy_listen[i].host, b->proxy_listen[i].host) != 0 ||
            a->proxy_listen[i].port != b->proxy_listen[i].port ||
            a->proxy_listen[i].ssl != b->proxy_listen[i].ssl)
            return false;
    if (a->n_stream_listen != b->n_stream_listen) return false;
    for (size_t i = 0; i < a->n_stream_listen; i++)
        if (strcmp(a->stream_listen[i].host, b->stream_listen[i].host) != 0 ||
            a->stream_listen[i].port != b->stream_listen[i].port)
            return false;
    return true;
}

/* Hands `snap` (the caller's reference) to every worker and makes it current. The snapshots the
 * workers let go of are freed by the next compilation, on the compile thread (compile_job_run),
 * or by the collector within a second: never on the way to an admin answer. */
static void publish(struct server *s, struct snapshot *snap) {
    s->version++;
    for (int i = 0; i < s->n_workers; i++)
        worker_publish(s->workers[i], snap);
    snapshot_release(s->snapshot);
    s->snapshot = snap;
}

/* The control thread serves the admin API, and saves and publishes admin changes (their
 * compilation runs on the compile thread: core/idle_runner.h). Where it competes with workers for
 * a core, the workers must win, so it runs at nice 10 (Linux: setpriority on a thread id affects
 * that thread only; the workers, started before, keep the process's priority). A flood of admin
 * calls then slows the admin API, not the traffic. */
#define CONTROL_NICE 10

static void lower_control_priority(void) {
    pid_t tid = (pid_t)syscall(SYS_gettid);
    int now = getpriority(PRIO_PROCESS, (id_t)tid);
    if (now < CONTROL_NICE && setpriority(PRIO_PROCESS, (id_t)tid, CONTROL_NICE) != 0)
        log_warn("cannot lower the control thread's priority: %s", strerror(errno));
}

static void rotate_ticket_keys_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what, (void)arg;
    tls_ticket_keys_rotate();
}

/* (Re)starts the rotation period of the session ticket keys from the current settings. */
static void arm_ticket_rotation(struct server *s) {
    int ms = s->snapshot->config->weir.ssl_ticket_key_rotation_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(s->ticket_rotation, &tv);
}

/* Frees snapshots the workers let go of (they never free one themselves). */
static void collect_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what, (void)arg;
    snapshot_collect();
}

static void stop_cb(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    struct server *s = arg;
    uint64_t ticks;
    ssize_t r = read(fd, &ticks, sizeof ticks);
    (void)r;
    event_base_loopbreak(s->base);
}

/* Persists the step from model `from` (what the store holds) to `to`: as one change record
 * (config/model_change.h), a few hundred bytes for one entity, or as the whole state when the
 * records would outweigh it (model_text.h re-encodes only what changed since the last time). */
static int save_change(struct server *s, const json_t *from, const json_t *to,
                       struct errlist *errs) {
    json_t *record = model_change(from, to);
    if (!record) return 0; /* no entity changed */
    char *text = json_dumps(record, JSON_COMPACT);
    json_decref(record);
    if (!text) abort();
    size_t len = strlen(text);
    int rc;
    if (store_wants_full(s->store, len)) {
        free(text);
        text = model_export_text(to, s->text_cache, &len);
        rc = store_apply_text(s->store, text, len, errs);
    } else {
        rc = store_append(s->store, text, len, errs);
    }
    free(text);
    return rc;
}

/* A compilation for the compile thread (core/idle_runner.h): `model` over `base`'s settings, or
 * `cfg` when given (a reload), into `snap`. The control thread waits, so the job may read what
 * it owns. */
struct compile_job {
    struct server *s;
    const struct config *base;
    json_t *model;
    struct config *cfg;
    struct errlist *errs;
    struct snapshot *snap;
};

static void compile_job_run(void *arg) {
    struct compile_job *j = arg;
    /* what the last change replaced, at the compile thread's priority: freeing 10,000 routes
     * is not free either */
    snapshot_collect();
    struct config *cfg = j->cfg ? j->cfg : config_with_model(j->base, j->model, j->errs);
    j->snap = cfg ? snapshot_build(cfg, j->s->n_workers, j->s->version + 1, j->errs) : NULL;
}

/* The snapshot of `cfg` (taken), or of `model` over the running settings when cfg is NULL; NULL
 * with the problems in errs. On the compile thread once the server runs. */
static struct snapshot *compile(struct server *s, json_t *model, struct config *cfg,
                                struct errlist *errs) {
    struct compile_job job = {s, s->snapshot->config, model, cfg, errs, NULL};
    if (s->compiler && !idle_runner_is_current(s->compiler))
        idle_runner_run(s->compiler, compile_job_run, &job);
    else
        compile_job_run(&job);
    return job.snap;
}

/* admin_state.run_write: a whole admin write (parse, check, compile, persist, publish) on the
 * compile thread, so that none of its CPU is taken from a busy worker. */
static void run_admin_write(void *arg, void (*fn)(void *), void *fn_arg) {
    struct server *s = arg;
    if (s->compiler)
        idle_runner_run(s->compiler, fn, fn_arg);
    else
        fn(fn_arg);
}

/* The admin API's changes: compile, persist, publish, in that order, so that
 * an answer is sent only for a change that is both valid and durable. */
static enum commit_result commit_model(void *arg, json_t *model, struct errlist *errs) {
    struct server *s = arg;
    struct snapshot *snap = compile(s, model, NULL, errs);
    if (!snap) return COMMIT_INVALID;
    /* the configs' models: plugin configs there carry their defaults */
    if (s->store && save_change(s, s->snapshot->config->model, snap->config->model, errs) != 0) {
        log_err("admin: the change could not be saved to %s: %s", store_describe(s->store),
                errs->n ? errs->items[errs->n - 1] : "");
        snapshot_release(snap);
        return COMMIT_FAILED;
    }
    publish(s, snap);
    log_info("configuration version %llu installed", (unsigned long long)s->version);
    return COMMIT_OK;
}

/* weir.shared_dicts: created once at start, for every worker's VM (lua/lua_vm.h). */
/* Dictionaries the bundled plugins use, created unless weir.shared_dicts sizes them itself
 * (as Kong's nginx template declares kong_rate_limiting_counters). */
static const struct {
    const char *name;
    size_t bytes;
} builtin_dicts[] = {
    {"weir_rate_limiting", 12 * 1024 * 1024},
    {"weir_cache", 8 * 1024 * 1024},
};

static void open_shared_dicts(struct server *s, const json_t *spec) {
    size_t n_builtin = sizeof builtin_dicts / sizeof builtin_dicts[0];
    s->dicts = calloc(json_object_size(spec) + n_builtin, sizeof *s->dicts);
    if (!s->dicts) abort();
    const char *name;
    json_t *size;
    size_t i = 0;
    json_object_foreach((json_t *)spec, name, size) {
        s->dicts[i++] = shared_dict_new(name, strlen(name), (size_t)json_integer_value(size));
    }
    for (size_t b = 0; b < n_builtin; b++)
        if (!json_object_get(spec, builtin_dicts[b].name))
            s->dicts[i++] = shared_dict_new(builtin_dicts[b].name, strlen(builtin_dicts[b].name),
                                            builtin_dicts[b].bytes);
    s->n_dicts = i;
    lua_vm_set_shared_dicts(s->dicts, s->n_dicts);
}

static void close_shared_dicts(struct server *s) {
    lua_vm_set_shared_dicts(NULL, 0);
    for (size_t i = 0; i < s->n_dicts; i++)
        shared_dict_free(s->dicts[i]);
    free(s->dicts);
}

/* Frees what server_start() set up, whatever it reached; workers are joined first. */
static void teardown(struct server *s) {
    if (s->admin) admin_stop(s->admin);
    idle_runner_stop(s->compiler);
    for (int i = 0; i < s->n_workers && s->workers[i]; i++)
        worker_stop(s->workers[i], atomic_load(&s->fast));
    for (int i = 0; i < s->n_workers && s->workers[i]; i++)
        worker_join_and_free(s->workers[i]);
    lua_watchdog_stop(); /* after the workers: they are its registered threads */
    health_checker_stop(); /* its probes, if any upstream has active checks */
    free(s->workers);
    if (s->dicts) close_shared_dicts(s);
    if (s->collector) event_free(s->collector);
    if (s->ticket_rotation) event_free(s->ticket_rotation);
    if (s->stop_event) event_free(s->stop_event);
    if (s->stop_fd >= 0) close(s->stop_fd);
    if (s->base) event_base_free(s->base);
    access_log_close(s->access_log);
    snapshot_release(s->snapshot);
    snapshot_collect();
    store_close(s->store);
    model_text_cache_free(s->text_cache);
    free(s);
}

/* Logs, listeners and the admin API: everything that can fail for a reason the operator must
 * fix, before any thread starts. */
static bool open_endpoints(struct server *s, char *err, size_t errlen) {
    const struct weir_settings *ws = &s->snapshot->config->weir;
    if (log_configure(ws->error_log, ws->log_level) != 0) {
        snprintf(err, errlen, "cannot open error_log %s: %s", ws->error_log, strerror(errno));
        return false;
    }
    if (ws->access_log) {
        s->access_log = access_log_open(ws->access_log, ws->workers);
        if (!s->access_log) {
            snprintf(err, errlen, "cannot open access_log %s: %s", ws->access_log, strerror(errno));
            return false;
        }
    }
    for (size_t i = 0; i < ws->n_proxy_listen; i++)
        if (listener_probe(&ws->proxy_listen[i], err, errlen) != 0) return false;
    for (size_t i = 0; i < ws->n_stream_listen; i++)
        if (listener_probe(&ws->stream_listen[i], err, errlen) != 0) return false;
    s->base = event_base_new();
    if (!s->base) abort();
    s->admin_state = (struct admin_state){
        .snapshot = &s->snapshot,
        .config_version = &s->version,
        .workers = s->workers,
        .n_workers = s->n_workers,
        .commit = commit_model,
        .commit_ctx = s,
        .run_write = run_admin_write,
        .has_store = s->store != NULL,
    };
    uuid_v4(s->admin_state.node_id);
    clock_gettime(CLOCK_MONOTONIC, &s->admin_state.started);
    char admin_err[256];
    s->admin = admin_start(s->base, &s->admin_state, ws, admin_err, sizeof admin_err);
    if (!s->admin) {
        snprintf(err, errlen, "admin API: %s", admin_err);
        return false;
    }
    return true;
}

static void log_started(const struct server *s, const char *source) {
    const struct weir_settings *ws = &s->snapshot->config->weir;
    if (s->store)
        log_notice("entities are kept in the store (%s)", store_describe(s->store));
    else
        log_notice("no weir.store: entities come from %s; the admin API accepts only POST /config",
                   source);
    for (size_t i = 0; i < ws->n_admin_listen; i++)
        log_notice("admin API listening on %s:%d%s", ws->admin_listen[i].host,
                   ws->admin_listen[i].port, ws->admin_token ? " (token required)" : "");
    for (size_t i = 0; i < ws->n_proxy_listen; i++)
        log_notice("weir %s: proxy listening on %s:%d (%d worker%s)", WEIR_VERSION,
                   ws->proxy_listen[i].host, ws->proxy_listen[i].port, s->n_workers,
                   s->n_workers == 1 ? "" : "s");
    for (size_t i = 0; i < ws->n_stream_listen; i++)
        log_notice("TLS passthrough listening on %s:%d", ws->stream_listen[i].host,
                   ws->stream_listen[i].port);
}

struct server *server_start(struct snapshot *snap, struct store *store, const char *source,
                            char *err, size_t errlen) {
    struct server *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->snapshot = snap;
    s->version = 1;
    s->store = store;
    s->text_cache = model_text_cache_new();
    s->stop_fd = -1;
    s->n_workers = snap->config->weir.workers;
    s->workers = calloc((size_t)s->n_workers, sizeof *s->workers);
    if (!s->workers) abort();
    if (!open_endpoints(s, err, errlen)) {
        teardown(s);
        return NULL;
    }
    open_shared_dicts(s, snap->config->weir.shared_dicts);
    if (lua_vm_watchdog_start() != 0) {
        snprintf(err, errlen, "cannot start the Lua watchdog: %s", strerror(errno));
        teardown(s);
        return NULL;
    }
    for (int i = 0; i < s->n_workers; i++) {
        s->workers[i] = worker_new(i, snap, s->access_log, err, errlen);
        if (!s->workers[i]) {
            teardown(s);
            return NULL;
        }
    }
    /* before the workers serve: a running gateway has all its threads */
    s->compiler = idle_runner_start(snap->config->weir.admin_compile_idle, CONTROL_NICE);
    if (!s->compiler)
        log_warn("no compile thread (%s): admin changes compile on the control thread",
                 strerror(errno));
    for (int i = 0; i < s->n_workers; i++)
        if (worker_start(s->workers[i]) != 0) abort();

    s->collector = event_new(s->base, -1, EV_PERSIST, collect_cb, NULL);
    struct timeval every_second = {1, 0};
    evtimer_add(s->collector, &every_second);
    s->ticket_rotation = event_new(s->base, -1, EV_PERSIST, rotate_ticket_keys_cb, NULL);
    arm_ticket_rotation(s);
    s->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->stop_fd < 0) abort();
    s->stop_event = event_new(s->base, s->stop_fd, EV_READ | EV_PERSIST, stop_cb, s);
    event_add(s->stop_event, NULL);
    log_started(s, source);
    return s;
}

struct event_base *server_event_base(struct server *s) {
    return s->base;
}

void server_run(struct server *s) {
    lower_control_priority();
    event_base_dispatch(s->base);
}

void server_stop(struct server *s, bool fast) {
    if (fast) atomic_store(&s->fast, true);
    /* The workers close their listeners now rather than when the control loop gets round to
     * teardown(): the control thread runs at nice 10, and on a busy machine its next loop
     * iteration can come late, while a stopping gateway must refuse new connections at once. */
    for (int i = 0; i < s->n_workers; i++)
        worker_stop(s->workers[i], fast);
    uint64_t one = 1;
    ssize_t r = write(s->stop_fd, &one, sizeof one);
    (void)r;
}

/* With a store the entities live there: the file gives only the server settings. */
static struct config *with_stored_entities(struct server *s, struct config *file_cfg,
                                           struct errlist *errs) {
    if (!s->store || !file_cfg) return file_cfg;
    struct config *cfg = config_with_model(file_cfg, s->snapshot->config->model, errs);
    config_free(file_cfg);
    return cfg;
}

static bool same_string(const char *a, const char *b) {
    return a && b ? strcmp(a, b) == 0 : a == b;
}

/* What a reload cannot change, said once in the log rather than half-applied. */
static void warn_restart_needed(const struct weir_settings *old, const struct weir_settings *neu) {
    if (!same_listeners(old, neu) || old->workers != neu->workers ||
        !same_string(old->access_log, neu->access_log) ||
        !same_string(old->store_path, neu->store_path) ||
        old->admin_compile_idle != neu->admin_compile_idle)
        log_warn("reload: proxy_listen, stream_listen, workers, access_log, store and "
                 "admin_compile_priority changes need a restart; the rest is applied");
    bool same_dicts = json_object_size(old->shared_dicts) == json_object_size(neu->shared_dicts) &&
                      (!json_object_size(old->shared_dicts) ||
                       json_equal((json_t *)old->shared_dicts, (json_t *)neu->shared_dicts));
    if (!same_dicts)
        log_warn("reload: weir.shared_dicts changes need a restart; the running dictionaries "
                 "stay");
    if (old->lua_instruction_budget != neu->lua_instruction_budget ||
        old->lua_memory_limit != neu->lua_memory_limit)
        log_warn("reload: weir.lua instruction_budget and memory_limit changes need a restart");
}

void server_reload(struct server *s, struct config *cfg, struct errlist *errs) {
    cfg = with_stored_entities(s, cfg, errs);
    struct snapshot *snap = cfg ? compile(s, NULL, cfg, errs) : NULL;
    if (!snap) {
        log_err("reload failed, keeping the running configuration (%zu problem%s):", errs->n,
                errs->n == 1 ? "" : "s");
        for (size_t i = 0; i < errs->n; i++)
            log_err("  %s", errs->items[i]);
        return;
    }
    const struct weir_settings *old = &s->snapshot->config->weir, *neu = &snap->config->weir;
    int old_rotation = old->ssl_ticket_key_rotation_ms;
    warn_restart_needed(old, neu);
    log_configure(neu->error_log, neu->log_level);
    admin_settings_changed(s->admin, neu);
    publish(s, snap);
    if (old_rotation != s->snapshot->config->weir.ssl_ticket_key_rotation_ms)
        arm_ticket_rotation(s);
    log_notice("configuration reloaded (version %llu, hash %.12s)", (unsigned long long)s->version,
               config_hash(snap->config));
}

void server_free(struct server *s) {
    if (!s) return;
    teardown(s);
    log_notice("stopped");
}
