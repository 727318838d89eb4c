/* main: command line, start-up, signals.
 *
 * The main thread is Weir's control thread: it loads and validates the
 * configuration, starts the server (server.h: logs, listeners, admin API,
 * workers; start-up errors surface before anything runs) and runs its
 * control loop, where signals arrive: SIGHUP re-reads the config file into a
 * new snapshot, SIGTERM/SIGQUIT stop gracefully, SIGINT stops at once.
 * `weir plugin test` is a command of its own (cli/plugin_test.h). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/plugin_test.h"
#include "config/config.h"
#include "config/model.h"
#include "config/model_change.h"
#include "config/snapshot.h"
#include "core/log.h"
#include "core/paths.h"
#include "server.h"
#include "store/store.h"

static void usage(FILE *f) {
    fprintf(
        f, "Usage: weir [-c FILE] [-t] [-v] [-h]\n"
           "       weir plugin test DIR [-v]\n"
           "  -c FILE  run with this declarative JSON config (default: the embedded demo config)\n"
           "  -t       validate the configuration and exit (0: valid; 1: every problem listed)\n"
           "  -v       print the version and exit\n"
           "  -h       print this help and exit\n"
           "  plugin test DIR  run DIR/spec/*_spec.lua against an in-process gateway\n"
           "Signals: HUP reloads the config file, TERM/QUIT stop gracefully, INT stops at once.\n");
}

static struct config *load(const char *path, struct errlist *errs) {
    if (path) return config_load_file(path, errs);
    return config_load_string(config_default_json, strlen(config_default_json), NULL, errs);
}

/* The stored model: the state, with the journalled changes replayed on it (store.h). A replayed
 * model is exported and read back, so that it passes every check a config file does, and the
 * export goes to *fold, to be written back whole once it compiles: the next start then replays
 * nothing. NULL on problems, in errs. */
static json_t *stored_model(json_t *state, const json_t *records, json_t **fold,
                            struct errlist *errs) {
    long long now = (long long)time(NULL);
    json_t *model = config_model_from_doc(state, now, NULL, errs);
    size_t i;
    const json_t *rec;
    json_array_foreach(records, i, rec) {
        if (!model) break;
        char why[200];
        json_t *next = model_change_apply(model, rec, why, sizeof why);
        if (!next) errlist_addf(errs, NULL, "journal record %zu: %s", i + 1, why);
        json_decref(model);
        model = next;
    }
    if (!model || !json_array_size(records)) return model;
    *fold = model_export(model);
    json_decref(model);
    model = config_model_from_doc(*fold, now, NULL, errs);
    log_notice("store: %zu journalled change%s replayed", json_array_size(records),
               json_array_size(records) == 1 ? "" : "s");
    return model;
}

/* Opens weir.store. A store with entities replaces the file's; an empty one is
 * seeded with them. Returns the config to run with (NULL on problems, in errs). */
static struct config *open_store(struct config *cfg, struct store **out, struct errlist *errs) {
    struct store *store = store_file_open(cfg->weir.store_path, errs);
    json_t *state = NULL, *records = NULL;
    if (!store || store_load(store, &state, &records, errs) != 0) {
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
    json_t *fold = NULL;
    json_t *model = stored_model(state, records, &fold, errs);
    json_decref(state);
    json_decref(records);
    struct config *stored = model ? config_with_model(cfg, model, errs) : NULL;
    json_decref(model);
    config_free(cfg);
    if (stored && fold && store_apply(store, fold, errs) != 0) {
        config_free(stored);
        stored = NULL;
    }
    json_decref(fold);
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

/* A file that cannot be read is one line; a file with problems gets a header
 * and one "path.to.field: message" line per problem. */
static void report_problems(const char *config_path, const struct errlist *errs) {
    if (errs->n == 1 && config_path &&
        strncmp(errs->items[0], config_path, strlen(config_path)) == 0) {
        fprintf(stderr, "weir: %s\n", errs->items[0]);
        return;
    }
    fprintf(stderr, "weir: invalid configuration (%zu problem%s):\n", errs->n,
            errs->n == 1 ? "" : "s");
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "%s\n", errs->items[i]);
}

struct control {
    struct server *server;
    const char *config_path; /* NULL: the embedded default */
};

static void signal_cb(evutil_socket_t sig, short what, void *arg) {
    (void)what;
    struct control *ctl = arg;
    switch (sig) {
    case SIGHUP: {
        log_notice("SIGHUP: reloading %s", ctl->config_path ? ctl->config_path : "(embedded)");
        struct errlist errs;
        errlist_init(&errs);
        server_reload(ctl->server, load(ctl->config_path, &errs), &errs);
        errlist_free(&errs);
        break;
    }
    case SIGINT:
        log_notice("SIGINT: stopping now");
        server_stop(ctl->server, true);
        break;
    default:
        log_notice("signal %d: stopping gracefully", (int)sig);
        server_stop(ctl->server, false);
        break;
    }
}

/* Serves until a stop signal. Workers inherit a mask without the control
 * signals, so only the main thread (and its event loop) ever sees them. */
static int serve(struct snapshot *snap, struct store *store, const char *config_path) {
    signal(SIGPIPE, SIG_IGN);
    int sigs[] = {SIGHUP, SIGTERM, SIGQUIT, SIGINT};
    enum { N_SIGS = sizeof sigs / sizeof sigs[0] };
    sigset_t control_signals, old_mask;
    sigemptyset(&control_signals);
    for (int i = 0; i < N_SIGS; i++)
        sigaddset(&control_signals, sigs[i]);
    pthread_sigmask(SIG_BLOCK, &control_signals, &old_mask);

    char err[512];
    struct control ctl = {.config_path = config_path};
    ctl.server = server_start(snap, store, config_path ? config_path : "the built-in configuration",
                              err, sizeof err);
    if (!ctl.server) {
        fprintf(stderr, "weir: %s\n", err);
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
        return 1;
    }
    struct event *sev[N_SIGS];
    for (int i = 0; i < N_SIGS; i++) {
        sev[i] = evsignal_new(server_event_base(ctl.server), sigs[i], signal_cb, &ctl);
        evsignal_add(sev[i], NULL);
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    server_run(ctl.server);
    for (int i = 0; i < N_SIGS; i++)
        event_free(sev[i]);
    server_free(ctl.server);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "plugin") == 0) {
        if (argc >= 3 && strcmp(argv[2], "test") == 0) return plugin_test_main(argc - 2, argv + 2);
        fprintf(stderr, "weir plugin: expected a command: weir plugin test DIR [-v]\n");
        return 2;
    }
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
    struct snapshot *snap = cfg ? snapshot_build(cfg, cfg->weir.workers, 1, &errs) : NULL;
    if (!snap) {
        report_problems(config_path, &errs);
        errlist_free(&errs);
        store_close(store);
        return 1;
    }
    errlist_free(&errs);
    if (test_only) {
        printf("weir: configuration %s is valid\n", config_path ? config_path : "(embedded)");
        snapshot_release(snap);
        return 0;
    }
    return serve(snap, store, config_path);
}
