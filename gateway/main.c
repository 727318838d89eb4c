/* main: command line, start-up, signals.
 *
 * The main thread is Weir's control thread: it loads and validates the
 * configuration, opens the listeners (through the workers, so start-up
 * errors surface before anything runs), starts `workers` threads and then
 * waits for signals: SIGHUP re-reads the config file into a new snapshot,
 * SIGTERM/SIGQUIT stop gracefully, SIGINT stops at once. */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "config/config.h"
#include "config/model.h"
#include "config/model_text.h"
#include "config/snapshot.h"
#include "core/access_log.h"
#include "core/listener.h"
#include "core/log.h"
#include "core/paths.h"
#include "core/uuid.h"
#include "core/worker.h"
#include "lua/lua_vm.h"
#include "lua/shared_dict.h"
#include "store/store.h"

struct control {
    const char *config_path; /* NULL: the embedded default */
    struct snapshot *snapshot;
    struct worker **workers;
    int n_workers;
    uint64_t version;
    struct event_base *base;
    bool fast;
    struct admin *admin;
    struct admin_state admin_state;
    struct store *store;                 /* NULL: DB-less, entities come from the config file */
    struct model_text_cache *text_cache; /* what the store was last given, per entity */
};

static void usage(FILE *f) {
    fprintf(
        f, "Usage: weir [-c FILE] [-t] [-v] [-h]\n"
           "  -c FILE  run with this declarative JSON config (default: the embedded demo config)\n"
           "  -t       validate the configuration and exit (0: valid; 1: every problem listed)\n"
           "  -v       print the version and exit\n"
           "  -h       print this help and exit\n"
           "Signals: HUP reloads the config file, TERM/QUIT stop gracefully, INT stops at once.\n");
}

static struct config *load(const char *path, struct errlist *errs) {
    if (path) return config_load_file(path, errs);
    return config_load_string(config_default_json, strlen(config_default_json), NULL, errs);
}

/* Opens weir.store. A store with entities replaces the file's; an empty one is
 * seeded with them. Returns the config to run with (NULL on problems, in errs). */
static struct config *open_store(struct config *cfg, struct store **out, struct errlist *errs) {
    struct store *store = store_file_open(cfg->weir.store_path, errs);
    json_t *state = NULL;
    if (!store || store_load(store, &state, errs) != 0) {
        store_close(store);
        config_free(cfg);
        return NULL;
    }
    if (!state) {
        json_t *doc = model_export(cfg->model);
        int rc = store_apply(store, doc, errs);
        json_decref(doc);
        if (rc != 0) {
            store_close(store);
            config_free(cfg);
            return NULL;
        }
        *out = store;
        return cfg;
    }
    size_t before = errs->n;
    json_t *model = config_model_from_doc(state, (long long)time(NULL), NULL, errs);
    json_decref(state);
    struct config *stored = model ? config_with_model(cfg, model, errs) : NULL;
    json_decref(model);
    config_free(cfg);
    if (!stored) {
        for (size_t i = before; i < errs->n; i++) { /* name the store in each problem */
            char *item = errs->items[i];
            if (asprintf(&errs->items[i], "%s: %s", store_describe(store), item) < 0) abort();
            free(item);
        }
        store_close(store);
        return NULL;
    }
    *out = store;
    return stored;
}

static bool same_listeners(const struct weir_settings *a, const struct weir_settings *b) {
    if (a->n_proxy_listen != b->n_proxy_listen) return false;
    for (size_t i = 0; i < a->n_proxy_listen; i++)
        if (strcmp(a->proxy_listen[i].host, b->proxy_listen[i].host) != 0 ||
            a->proxy_listen[i].port != b->proxy_listen[i].port)
            return false;
    return true;
}

/* Hands `snap` (the caller's reference) to every worker and makes it current. */
static void publish(struct control *ctl, struct snapshot *snap) {
    ctl->version++;
    for (int i = 0; i < ctl->n_workers; i++)
        worker_publish(ctl->workers[i], snap);
    snapshot_release(ctl->snapshot);
    ctl->snapshot = snap;
    snapshot_collect();
}

/* The control thread compiles and saves admin changes: about 100 ms of CPU each at 10,000
 * routes. Where it competes with workers for a core, the workers must win, so it runs at nice 10
 * (Linux: setpriority on a thread id affects that thread only; the workers, started before, keep
 * the process's priority). A flood of admin calls then slows the admin API, not the traffic. */
static void lower_control_priority(void) {
    pid_t tid = (pid_t)syscall(SYS_gettid);
    int now = getpriority(PRIO_PROCESS, (id_t)tid);
    if (now < 10 && setpriority(PRIO_PROCESS, (id_t)tid, 10) != 0)
        log_warn("cannot lower the control thread's priority: %s", strerror(errno));
}

/* Frees snapshots the workers let go of (they never free one themselves). */
static void collect_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what, (void)arg;
    snapshot_collect();
}

/* The admin API's changes: compile, persist, publish, in that order, so that
 * an answer is sent only for a change that is both valid and durable. */
static enum commit_result commit_model(void *arg, json_t *model, struct errlist *errs) {
    struct control *ctl = arg;
    struct config *cfg = config_with_model(ctl->snapshot->config, model, errs);
    struct snapshot *snap =
        cfg ? snapshot_build(cfg, ctl->n_workers, ctl->version + 1, errs) : NULL;
    if (!snap) return COMMIT_INVALID;
    if (ctl->store) {
        size_t len;
        /* the config's model: plugin configs there carry their defaults */
        char *text = model_export_text(snap->config->model, ctl->text_cache, &len);
        int rc = store_apply_text(ctl->store, text, len, errs);
        free(text);
        if (rc != 0) {
            log_err("admin: the change could not be saved to %s: %s", store_describe(ctl->store),
                    errs->n ? errs->items[errs->n - 1] : "");
            snapshot_release(snap);
            return COMMIT_FAILED;
        }
    }
    publish(ctl, snap);
    log_info("configuration version %llu installed", (unsigned long long)ctl->version);
    return COMMIT_OK;
}

/* With a store the entities live there: the file gives only the server settings. */
static struct config *with_stored_entities(struct control *ctl, struct config *file_cfg,
                                           struct errlist *errs) {
    if (!ctl->store || !file_cfg) return file_cfg;
    struct config *cfg = config_with_model(file_cfg, ctl->snapshot->config->model, errs);
    config_free(file_cfg);
    return cfg;
}

static void reload(struct control *ctl) {
    struct errlist errs;
    errlist_init(&errs);
    struct config *cfg = with_stored_entities(ctl, load(ctl->config_path, &errs), &errs);
    struct snapshot *snap =
        cfg ? snapshot_build(cfg, ctl->n_workers, ctl->version + 1, &errs) : NULL;
    if (!snap) {
        log_err("reload failed, keeping the running configuration (%zu problem%s):", errs.n,
                errs.n == 1 ? "" : "s");
        for (size_t i = 0; i < errs.n; i++)
            log_err("  %s", errs.items[i]);
        errlist_free(&errs);
        return;
    }
    errlist_free(&errs);
    const struct weir_settings *old = &ctl->snapshot->config->weir, *neu = &snap->config->weir;
    if (!same_listeners(old, neu) || old->workers != neu->workers ||
        (old->access_log && neu->access_log ? strcmp(old->access_log, neu->access_log) != 0
                                            : old->access_log != neu->access_log) ||
        (old->store_path && neu->store_path ? strcmp(old->store_path, neu->store_path) != 0
                                            : old->store_path != neu->store_path))
        log_warn("reload: proxy_listen, workers, access_log and store changes need a restart; "
                 "the rest is applied");
    bool same_dicts = json_object_size(old->shared_dicts) == json_object_size(neu->shared_dicts) &&
                      (!json_object_size(old->shared_dicts) ||
                       json_equal((json_t *)old->shared_dicts, (json_t *)neu->shared_dicts));
    if (!same_dicts)
        log_warn("reload: weir.shared_dicts changes need a restart; the running dictionaries "
                 "stay");
    if (old->lua_instruction_budget != neu->lua_instruction_budget ||
        old->lua_memory_limit != neu->lua_memory_limit)
        log_warn("reload: weir.lua instruction_budget and memory_limit changes need a restart");
    log_configure(neu->error_log, neu->log_level);
    admin_settings_changed(ctl->admin, neu);
    publish(ctl, snap);
    log_notice("configuration reloaded (version %llu, hash %.12s)",
               (unsigned long long)ctl->version, config_hash(snap->config));
}

static void signal_cb(evutil_socket_t sig, short what, void *arg) {
    (void)what;
    struct control *ctl = arg;
    switch (sig) {
    case SIGHUP:
        log_notice("SIGHUP: reloading %s", ctl->config_path ? ctl->config_path : "(embedded)");
        reload(ctl);
        break;
    case SIGINT:
        log_notice("SIGINT: stopping now");
        ctl->fast = true;
        event_base_loopbreak(ctl->base);
        break;
    default:
        log_notice("signal %d: stopping gracefully", (int)sig);
        event_base_loopbreak(ctl->base);
        break;
    }
}

/* weir.shared_dicts: created once at start, for every worker's VM (lua/lua_vm.h). */
static struct shared_dict **open_shared_dicts(const json_t *spec, size_t *n) {
    *n = json_object_size(spec);
    struct shared_dict **dicts = calloc(*n ? *n : 1, sizeof *dicts);
    if (!dicts) abort();
    const char *name;
    json_t *size;
    size_t i = 0;
    json_object_foreach((json_t *)spec, name, size) {
        dicts[i++] = shared_dict_new(name, strlen(name), (size_t)json_integer_value(size));
    }
    lua_vm_set_shared_dicts(dicts, *n);
    return dicts;
}

static void close_shared_dicts(struct shared_dict **dicts, size_t n) {
    lua_vm_set_shared_dicts(NULL, 0);
    for (size_t i = 0; i < n; i++)
        shared_dict_free(dicts[i]);
    free(dicts);
}

int main(int argc, char **argv) {
    const char *config_path = NULL;
    bool test_only = false;
    int opt;
    while ((opt = getopt(argc, argv, "c:tvh")) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case 'v':
            printf("weir %s\ndata directory: %s\n", WEIR_VERSION, paths_data_dir());
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "weir: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    struct errlist errs;
    errlist_init(&errs);
    struct config *cfg = load(config_path, &errs);
    struct store *store = NULL;
    if (cfg && cfg->weir.store_path && !test_only) cfg = open_store(cfg, &store, &errs);
    struct snapshot *snap = NULL;
    if (cfg) snap = snapshot_build(cfg, cfg->weir.workers, 1, &errs);
    if (!snap) {
        /* A file that cannot be read is one line; a file with problems gets a
         * header and one "path.to.field: message" line per problem. */
        if (errs.n == 1 && config_path &&
            strncmp(errs.items[0], config_path, strlen(config_path)) == 0) {
            fprintf(stderr, "weir: %s\n", errs.items[0]);
        } else {
            fprintf(stderr, "weir: invalid configuration (%zu problem%s):\n", errs.n,
                    errs.n == 1 ? "" : "s");
            for (size_t i = 0; i < errs.n; i++)
                fprintf(stderr, "%s\n", errs.items[i]);
        }
        errlist_free(&errs);
        store_close(store);
        return 1;
    }
    errlist_free(&errs);
    const struct weir_settings *ws = &snap->config->weir;
    if (test_only) {
        printf("weir: configuration %s is valid\n", config_path ? config_path : "(embedded)");
        snapshot_release(snap);
        return 0;
    }
    if (log_configure(ws->error_log, ws->log_level) != 0) {
        fprintf(stderr, "weir: cannot open error_log %s: %s\n", ws->error_log, strerror(errno));
        snapshot_release(snap);
        return 1;
    }
    struct access_log *alog = NULL;
    if (ws->access_log) {
        alog = access_log_open(ws->access_log, ws->workers);
        if (!alog) {
            fprintf(stderr, "weir: cannot open access_log %s: %s\n", ws->access_log,
                    strerror(errno));
            snapshot_release(snap);
            return 1;
        }
    }

    signal(SIGPIPE, SIG_IGN);
    /* Workers inherit a mask without the control signals, so only the main
     * thread (and its event loop) ever sees them. */
    sigset_t control_signals, old_mask;
    sigemptyset(&control_signals);
    sigaddset(&control_signals, SIGHUP);
    sigaddset(&control_signals, SIGTERM);
    sigaddset(&control_signals, SIGQUIT);
    sigaddset(&control_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &control_signals, &old_mask);

    for (size_t i = 0; i < ws->n_proxy_listen; i++) {
        char err[256];
        if (listener_probe(&ws->proxy_listen[i], err, sizeof err) != 0) {
            fprintf(stderr, "weir: %s\n", err);
            pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
            access_log_close(alog);
            snapshot_release(snap);
            return 1;
        }
    }

    struct control ctl = {.config_path = config_path,
                          .snapshot = snap,
                          .version = 1,
                          .store = store,
                          .text_cache = model_text_cache_new()};
    ctl.n_workers = ws->workers;
    ctl.workers = calloc((size_t)ctl.n_workers, sizeof *ctl.workers);
    /* The admin listener opens before the proxy's, so that once the proxy
     * accepts connections the admin API does too. */
    ctl.base = event_base_new();
    ctl.admin_state = (struct admin_state){
        .snapshot = &ctl.snapshot,
        .config_version = &ctl.version,
        .workers = ctl.workers,
        .n_workers = ctl.n_workers,
        .commit = commit_model,
        .commit_ctx = &ctl,
        .has_store = store != NULL,
    };
    uuid_v4(ctl.admin_state.node_id);
    clock_gettime(CLOCK_MONOTONIC, &ctl.admin_state.started);
    char admin_err[256];
    ctl.admin = admin_start(ctl.base, &ctl.admin_state, ws, admin_err, sizeof admin_err);
    if (!ctl.admin) {
        fprintf(stderr, "weir: admin API: %s\n", admin_err);
        model_text_cache_free(ctl.text_cache);
        store_close(store);
        free(ctl.workers);
        event_base_free(ctl.base);
        access_log_close(alog);
        snapshot_release(ctl.snapshot);
        return 1;
    }
    int status = 0;
    size_t n_dicts;
    struct shared_dict **dicts = open_shared_dicts(ws->shared_dicts, &n_dicts);
    for (int i = 0; i < ctl.n_workers; i++) {
        char err[256];
        ctl.workers[i] = worker_new(i, snap, alog, err, sizeof err);
        if (!ctl.workers[i]) {
            fprintf(stderr, "weir: %s\n", err);
            for (int j = 0; j < i; j++)
                worker_join_and_free(ctl.workers[j]);
            close_shared_dicts(dicts, n_dicts);
            model_text_cache_free(ctl.text_cache);
            store_close(store);
            free(ctl.workers);
            admin_stop(ctl.admin);
            event_base_free(ctl.base);
            access_log_close(alog);
            snapshot_release(snap);
            snapshot_collect();
            return 1;
        }
    }
    for (int i = 0; i < ctl.n_workers; i++)
        if (worker_start(ctl.workers[i]) != 0) abort();
    lower_control_priority();

    int sigs[] = {SIGHUP, SIGTERM, SIGQUIT, SIGINT};
    struct event *sev[4];
    for (int i = 0; i < 4; i++) {
        sev[i] = evsignal_new(ctl.base, sigs[i], signal_cb, &ctl);
        evsignal_add(sev[i], NULL);
    }
    struct event *collector = event_new(ctl.base, -1, EV_PERSIST, collect_cb, NULL);
    struct timeval every_second = {1, 0};
    evtimer_add(collector, &every_second);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    if (store)
        log_notice("entities are kept in the store (%s)", store_describe(store));
    else
        log_notice("no weir.store: entities come from %s; the admin API accepts only POST /config",
                   config_path ? config_path : "the built-in configuration");
    for (size_t i = 0; i < ws->n_admin_listen; i++)
        log_notice("admin API listening on %s:%d%s", ws->admin_listen[i].host,
                   ws->admin_listen[i].port, ws->admin_token ? " (token required)" : "");
    for (size_t i = 0; i < ws->n_proxy_listen; i++)
        log_notice("weir %s: proxy listening on %s:%d (%d worker%s)", WEIR_VERSION,
                   ws->proxy_listen[i].host, ws->proxy_listen[i].port, ctl.n_workers,
                   ctl.n_workers == 1 ? "" : "s");

    event_base_dispatch(ctl.base);
    admin_stop(ctl.admin);

    for (int i = 0; i < ctl.n_workers; i++)
        worker_stop(ctl.workers[i], ctl.fast);
    for (int i = 0; i < ctl.n_workers; i++)
        worker_join_and_free(ctl.workers[i]);
    free(ctl.workers);
    close_shared_dicts(dicts, n_dicts);
    for (int i = 0; i < 4; i++)
        event_free(sev[i]);
    event_free(collector);
    event_base_free(ctl.base);
    access_log_close(alog);
    snapshot_release(ctl.snapshot);
    snapshot_collect();
    store_close(ctl.store);
    model_text_cache_free(ctl.text_cache);
    log_notice("stopped");
    return status;
}
