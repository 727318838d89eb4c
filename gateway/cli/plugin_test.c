#include "cli/plugin_test.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <glob.h>
#include <jansson.h>
#include <lauxlib.h>
#include <limits.h>
#include <lualib.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/mock_upstream.h"
#include "cli/spec_native.h"
#include "config/config.h"
#include "config/snapshot.h"
#include "core/log.h"
#include "core/paths.h"
#include "server.h"

#define START_ATTEMPTS 5 /* free ports are picked before binding: another process may win one */

/* Settings spec/config.json may not give: the runner owns how the gateway is reached. */
static const char *const owned_settings[] = {"proxy_listen", "admin_listen", "error_log",
                                             "access_log",   "store",        "admin_token"};

struct run {
    char root[PATH_MAX]; /* absolute */
    bool verbose;
    glob_t specs;
    bool has_plugins_dir;
    char **plugins; /* the names under root/plugins/ with a handler.lua */
    size_t n_plugins;
    json_t *extra; /* spec/config.json's "weir", or NULL */
    char tmpdir[PATH_MAX];
    char error_log[PATH_MAX + 16];
    int passed, failed, pending;
};

static void usage(FILE *f) {
    fprintf(f, "Usage: weir plugin test DIR [-v]\n"
               "  Runs DIR/spec/*_spec.lua against a gateway started in this process with the\n"
               "  plugins of DIR (DIR/plugins/<name>/handler.lua) and a mock upstream.\n"
               "  -v  show each test's error log lines (not only a failing test's)\n"
               "See docs/plugins.md.\n");
}

static int parse_args(int argc, char **argv, struct run *r, const char **dir) {
    *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
            r->verbose = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "weir plugin test: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (*dir) {
            fprintf(stderr, "weir plugin test: one directory only ('%s' and '%s')\n", *dir,
                    argv[i]);
            return 2;
        } else {
            *dir = argv[i];
        }
    }
    if (!*dir) {
        fprintf(stderr, "weir plugin test: which plugin directory?\n");
        usage(stderr);
        return 2;
    }
    return -1; /* go on */
}

/* ---- what the plugin root holds ------------------------------------------------------------- */

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every root/plugins/<name>/ with a handler.lua, sorted. */
static void find_plugins(struct run *r) {
    char path[PATH_MAX + 300];
    snprintf(path, sizeof path, "%s/plugins", r->root);
    DIR *d = opendir(path);
    if (!d) return;
    r->has_plugins_dir = true;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/plugins/%s/handler.lua", r->root, e->d_name);
        if (access(path, R_OK) != 0) continue;
        r->plugins = realloc(r->plugins, (r->n_plugins + 1) * sizeof *r->plugins);
        if (!r->plugins) abort();
        r->plugins[r->n_plugins++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(r->plugins, r->n_plugins, sizeof *r->plugins, compare_names);
}

/* spec/config.json, when there is one: {"weir": {...}}. false after printing what is wrong. */
static bool read_spec_config(struct run *r) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/spec/config.json", r->root);
    if (access(path, F_OK) != 0) return true;
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!doc) {
        fprintf(stderr, "weir plugin test: %s:%d: %s\n", path, jerr.line, jerr.text);
        return false;
    }
    const char *key;
    json_t *value;
    json_object_foreach(doc, key, value) {
        if (strcmp(key, "weir") != 0 || !json_is_object(value)) {
            fprintf(stderr,
                    "weir plugin test: %s: only a \"weir\" object is expected, not \"%s\"\n", path,
                    key);
            json_decref(doc);
            return false;
        }
    }
    json_t *weir = json_object_get(doc, "weir");
    for (size_t i = 0; weir && i < sizeof owned_settings / sizeof *owned_settings; i++) {
        if (json_object_get(weir, owned_settings[i])) {
            fprintf(stderr, "weir plugin test: %s: weir.%s is set by the test runner\n", path,
                    owned_settings[i]);
            json_decref(doc);
            return false;
        }
    }
    r->extra = json_incref(weir);
    json_decref(doc);
    return true;
}

/* ---- the gateway's configuration ------------------------------------------------------------ */

static void append_unique(json_t *array, const char *s) {
    size_t i;
    json_t *v;
    json_array_foreach(array, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0) return;
    }
    json_array_append_new(array, json_string(s));
}

/* `extra` entries (spec/config.json's plugins or plugin_paths) after the generated ones. */
static void append_extra(json_t *array, const json_t *extra) {
    size_t i;
    json_t *v;
    json_array_foreach(extra, i, v) {
        if (json_is_string(v))
            append_unique(array, json_string_value(v));
        else
            json_array_append(array, v); /* the schema will say what is wrong */
    }
}

static char *listen_addr(int port) {
    char *s;
    if (asprintf(&s, "127.0.0.1:%d", port) < 0) abort();
    return s;
}

static json_t *gateway_config(const struct run *r, int proxy_port, int admin_port,
                              int upstream_port) {
    json_t *weir = r->extra ? json_deep_copy(r->extra) : json_object();
    char *proxy = listen_addr(proxy_port), *admin = listen_addr(admin_port);
    json_object_set_new(weir, "proxy_listen", json_pack("[s]", proxy));
    json_object_set_new(weir, "admin_listen", json_pack("[s]", admin));
    free(proxy);
    free(admin);
    if (!json_object_get(weir, "workers")) json_object_set_new(weir, "workers", json_integer(1));
    json_object_set_new(weir, "error_log", json_string(r->error_log));
    json_object_set_new(weir, "access_log", json_string("off"));
    json_t *plugins = json_pack("[s]", "bundled");
    for (size_t i = 0; i < r->n_plugins; i++)
        append_unique(plugins, r->plugins[i]);
    append_extra(plugins, json_object_get(weir, "plugins"));
    json_object_set_new(weir, "plugins", plugins);
    /* a root of specs only (for bundled plugins) has no plugins/, which plugin_paths requires */
    json_t *paths = r->has_plugins_dir ? json_pack("[s]", r->root) : json_array();
    append_extra(paths, json_object_get(weir, "plugin_paths"));
    json_object_set_new(weir, "plugin_paths", paths);

    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", upstream_port);
    return json_pack("{s:s, s:o, s:[{s:s, s:s, s:[{s:s, s:[s]}]}]}", "_format_version", "3.0",
                     "weir", weir, "services", "name", "upstream", "url", url, "routes", "name",
                     "default", "paths", "/");
}

/* Two ports nothing listens on now, distinct (both sockets are open while they are picked). */
static bool free_ports(int ports[2]) {
    int fds[2] = {-1, -1};
    bool ok = true;
    for (int i = 0; i < 2 && ok; i++) {
        struct sockaddr_in sin = {.sin_family = AF_INET};
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof sin;
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ok = fds[i] >= 0 && bind(fds[i], (struct sockaddr *)&sin, sizeof sin) == 0 &&
             getsockname(fds[i], (struct sockaddr *)&sin, &len) == 0;
        ports[i] = ntohs(sin.sin_port);
    }
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0) close(fds[i]);
    return ok;
}

/* Prints a configuration that does not load as one failed "test". */
static void report_start_failure(struct run *r, const char *what, const struct errlist *errs) {
    printf("not ok - the gateway starts with the plugins of %s: %s\n", r->root, what);
    for (size_t i = 0; errs && i < errs->n; i++)
        printf("    %s\n", errs->items[i]);
    r->failed++;
}

/* Starts the gateway, trying other ports when one was taken meanwhile. NULL after reporting. */
static struct server *start_gateway(struct run *r, int upstream_port, struct spec_env *env) {
    char err[512] = "";
    for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
        int ports[2];
        if (!free_ports(ports)) {
            snprintf(err, sizeof err, "no free port on 127.0.0.1: %s", strerror(errno));
            continue;
        }
        json_t *doc = gateway_config(r, ports[0], ports[1], upstream_port);
        char *text = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        struct errlist errs;
        errlist_init(&errs);
        char spec_dir[PATH_MAX + 8];
        snprintf(spec_dir, sizeof spec_dir, "%s/spec", r->root);
        struct config *cfg = config_load_string(text, strlen(text), spec_dir, &errs);
        free(text);
        struct snapshot *snap = cfg ? snapshot_build(cfg, cfg->weir.workers, 1, &errs) : NULL;
        if (!snap) {
            report_start_failure(r, "its configuration has problems", &errs);
            errlist_free(&errs);
            return NULL;
        }
        errlist_free(&errs);
        struct server *s =
            server_start(snap, NULL, "the plugin test's configuration", err, sizeof err);
        if (s) {
            *env = (struct spec_env){.proxy_port = ports[0],
                                     .admin_port = ports[1],
                                     .upstream_port = upstream_port,
                                     .error_log = r->error_log,
                                     .root = r->root};
            return s;
        }
    }
    report_start_failure(r, err, NULL);
    return NULL;
}

/* ---- running the specs ---------------------------------------------------------------------- */

/* What each spec file's fresh state runs: the harness, with the gateway reset first. */
static const char spec_boot[] =
    "local path, name, verbose = ...\n"
    "local gw = require 'weir.test'\n"
    "return require('weir.spec').run_file(path, { name = name, verbose = verbose,\n"
    "    error_log = gw.error_log_path, before = gw.reset })\n";

static void set_package_path(lua_State *L, const char *root) {
    const char *data = paths_data_dir();
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s/?.lua;%s/spec/?.lua", data, data, root,
                    root);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
}

static void run_spec_file(struct run *r, const char *path, const struct spec_env *env) {
    const char *name = path + strlen(r->root) + 1; /* "spec/x_spec.lua" */
    lua_State *L = luaL_newstate();
    if (!L) abort();
    luaL_openlibs(L);
    set_package_path(L, r->root);
    spec_native_install(L, env);
    int rc = luaL_loadbuffer(L, spec_boot, sizeof spec_boot - 1, "=weir.plugin_test");
    if (rc == 0) {
        lua_pushstring(L, path);
        lua_pushstring(L, name);
        lua_pushboolean(L, r->verbose);
        rc = lua_pcall(L, 3, 3, 0);
    }
    if (rc != 0) {
        /* the harness itself failed (it reports a spec's own errors): the file fails */
        printf("not ok - %s: %s\n", name, lua_tostring(L, -1));
        r->failed++;
    } else {
        r->passed += (int)lua_tointeger(L, -3);
        r->failed += (int)lua_tointeger(L, -2);
        r->pending += (int)lua_tointeger(L, -1);
    }
    fflush(stdout);
    lua_close(L);
}

static void *control_main(void *arg) {
    server_run(arg);
    return NULL;
}

/* Starts the mock upstream and the gateway, runs every spec file, stops both. */
static void run_all(struct run *r) {
    char err[256];
    struct mock_upstream *mock = mock_upstream_start(err, sizeof err);
    if (!mock) {
        report_start_failure(r, err, NULL);
        return;
    }
    struct spec_env env;
    struct server *server = start_gateway(r, mock_upstream_port(mock), &env);
    pthread_t control;
    if (server && pthread_create(&control, NULL, control_main, server) != 0) abort();
    if (server) {
        if (r->verbose)
            printf("# gateway: proxy 127.0.0.1:%d, admin API 127.0.0.1:%d, mock upstream "
                   "127.0.0.1:%d, error log %s\n",
                   env.proxy_port, env.admin_port, env.upstream_port, r->error_log);
        for (size_t i = 0; i < r->specs.gl_pathc; i++)
            run_spec_file(r, r->specs.gl_pathv[i], &env);
        /* at once: a request a spec gave up on (a client timeout) must not hold the exit up */
        server_stop(server, true);
        pthread_join(control, NULL);
        server_free(server);
    }
    mock_upstream_stop(mock);
    log_configure("-", LOG_LEVEL_INFO); /* the file goes with the temporary directory */
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void run_free(struct run *r) {
    if (r->tmpdir[0]) nftw(r->tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    globfree(&r->specs);
    for (size_t i = 0; i < r->n_plugins; i++)
        free(r->plugins[i]);
    free(r->plugins);
    json_decref(r->extra);
}

/* Checks the directory and finds the specs; 2 after printing the usage error, else -1. */
static int prepare(struct run *r, const char *dir) {
    struct stat st;
    if (!realpath(dir, r->root) || stat(r->root, &st) != 0) {
        fprintf(stderr, "weir plugin test: %s: %s\n", dir, strerror(errno));
        return 2;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "weir plugin test: %s is not a directory\n", dir);
        return 2;
    }
    char pattern[PATH_MAX + 32];
    snprintf(pattern, sizeof pattern, "%s/spec/*_spec.lua", r->root);
    if (glob(pattern, 0, NULL, &r->specs) != 0 || r->specs.gl_pathc == 0) {
        fprintf(stderr, "weir plugin test: no spec files in %s/spec (expected *_spec.lua files)\n",
                r->root);
        return 2;
    }
    if (!read_spec_config(r)) return 2;
    find_plugins(r);
    const char *tmp = getenv("TMPDIR");
    snprintf(r->tmpdir, sizeof r->tmpdir, "%s/weir-plugin-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(r->tmpdir)) {
        fprintf(stderr, "weir plugin test: cannot create %s: %s\n", r->tmpdir, strerror(errno));
        r->tmpdir[0] = '\0';
        return 2;
    }
    snprintf(r->error_log, sizeof r->error_log, "%s/error.log", r->tmpdir);
    return -1;
}

int plugin_test_main(int argc, char **argv) {
    struct run r = {0};
    const char *dir;
    int status = parse_args(argc, argv, &r, &dir);
    if (status < 0) status = prepare(&r, dir);
    if (status >= 0) {
        run_free(&r);
        return status;
    }
    signal(SIGPIPE, SIG_IGN);
    run_all(&r);
    if (r.pending) printf("# %d pending\n", r.pending);
    printf("%d passed, %d failed\n", r.passed, r.failed);
    fflush(stdout);
    run_free(&r);
    return r.failed ? 1 : 0;
}
