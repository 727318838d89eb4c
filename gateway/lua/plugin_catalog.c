#include "lua/plugin_catalog.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/model.h"
#include "lua/lua_vm.h"

struct found {
    char *name, *root;
    bool bundled;
};

struct finder {
    struct found *v;
    size_t n, cap;
    struct errlist *errs;
};

static char *join(const char *a, const char *b, const char *c) {
    size_t n = strlen(a) + strlen(b) + (c ? strlen(c) : 0) + 1;
    char *s = malloc(n);
    if (!s) abort();
    snprintf(s, n, "%s%s%s", a, b, c ? c : "");
    return s;
}

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool name_valid(const char *s) {
    if (!*s || !((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9'))) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
            return false;
    return true;
}

/* Every <root>/plugins/<name>/handler.lua. */
static void scan(struct finder *f, const char *root, bool bundled) {
    char *dir = join(root, "/plugins", NULL);
    DIR *d = opendir(dir);
    if (!d) {
        if (!bundled)
            errlist_addf(f->errs, NULL,
                         "%s: cannot read the plugin directory (a plugin_paths entry "
                         "must hold plugins/<name>/handler.lua)",
                         dir);
        free(dir);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *handler = join(dir, "/", e->d_name);
        char *path = join(handler, "/handler.lua", NULL);
        free(handler);
        bool plugin = is_file(path);
        free(path);
        if (!plugin) continue;
        if (!name_valid(e->d_name)) {
            errlist_addf(f->errs, NULL,
                         "%s/%s: a plugin's name must be lower-case letters, digits, \"-\" and "
                         "\"_\"",
                         dir, e->d_name);
            continue;
        }
        if (f->n == f->cap) {
            f->cap = f->cap ? f->cap * 2 : 16;
            f->v = realloc(f->v, f->cap * sizeof *f->v);
            if (!f->v) abort();
        }
        f->v[f->n++] = (struct found){strdup(e->d_name), strdup(root), bundled};
    }
    closedir(d);
    free(dir);
}

static int found_cmp(const void *a, const void *b) {
    return strcmp(((const struct found *)a)->name, ((const struct found *)b)->name);
}

/* luaL_loadfile with a chunk name of our choosing. */
static int load_chunk_file(lua_State *L, const char *path, const char *chunk) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        lua_pushfstring(L, "%s: cannot open: %s", chunk + 1, strerror(errno));
        return LUA_ERRFILE;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 8192;
            buf = realloc(buf, cap);
            if (!buf) abort();
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    bool failed = ferror(f);
    fclose(f);
    int rc = failed ? (lua_pushfstring(L, "%s: read error", chunk + 1), LUA_ERRFILE)
                    : luaL_loadbuffer(L, buf, len, chunk);
    free(buf);
    return rc;
}

/* Runs the handler chunk in `L` and checks the table it returns. */
static bool check_handler(lua_State *L, struct plugin_def *p, struct errlist *errs) {
    int top = lua_gettop(L);
    bool ok = false;
    /* Lua cuts chunk names to 60 characters in messages, so the chunk is named briefly and the
     * message given the whole path back: "<file>:<line>: <message>". */
    char chunk[128];
    snprintf(chunk, sizeof chunk, "@%s/handler.lua", p->name);
    if (load_chunk_file(L, p->handler_path, chunk) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
        const char *msg = lua_tostring(L, -1);
        size_t n = strlen(chunk + 1);
        if (msg && !strncmp(msg, chunk + 1, n))
            errlist_addf(errs, NULL, "%s%s", p->handler_path, msg + n);
        else
            errlist_addf(errs, NULL, "%s: %s", p->handler_path, msg ? msg : "error");
    } else if (!lua_istable(L, -1)) {
        errlist_addf(errs, NULL, "%s: must return a table (the plugin's handler), not a %s",
                     p->handler_path, luaL_typename(L, -1));
    } else {
        ok = true;
        lua_getfield(L, -1, "PRIORITY");
        if (lua_type(L, -1) == LUA_TNUMBER)
            p->priority = lua_tonumber(L, -1);
        else {
            errlist_addf(errs, NULL, "%s: the handler's PRIORITY must be a number",
                         p->handler_path);
            ok = false;
        }
        lua_pop(L, 1);
        lua_getfield(L, -1, "VERSION");
        if (lua_type(L, -1) == LUA_TSTRING)
            p->version = strdup(lua_tostring(L, -1));
        else {
            errlist_addf(errs, NULL, "%s: the handler's VERSION must be a string", p->handler_path);
            ok = false;
        }
        lua_pop(L, 1);
        lua_getfield(L, -1, "BUFFER_RESPONSE");
        if (lua_isfunction(L, -1))
            p->buffer_response = BUFFER_BY_CONFIG;
        else if (lua_isnil(L, -1) || lua_isboolean(L, -1))
            p->buffer_response = lua_toboolean(L, -1) ? BUFFER_ALWAYS : BUFFER_NEVER;
        else {
            errlist_addf(errs, NULL,
                         "%s: the handler's BUFFER_RESPONSE must be a boolean or a "
                         "function(conf), not a %s",
                         p->handler_path, luaL_typename(L, -1));
            ok = false;
        }
        lua_pop(L, 1);
        static const char *const phases[] = {"rewrite", "access", "response", "log"};
        for (unsigned i = 0; i < 4; i++) {
            lua_getfield(L, -1, phases[i]);
            if (lua_isfunction(L, -1))
                p->phases |= 1u << i;
            else if (!lua_isnil(L, -1)) {
                errlist_addf(errs, NULL, "%s: the handler's %s must be a function", p->handler_path,
                             phases[i]);
                ok = false;
            }
            lua_pop(L, 1);
        }
    }
    lua_settop(L, top);
    return ok;
}

static bool load_schema(struct plugin_def *p, struct errlist *errs) {
    if (!is_file(p->schema_path)) {
        errlist_addf(errs, NULL, "%s: missing (plugin %s needs a JSON Schema for its config)",
                     p->schema_path, p->name);
        return false;
    }
    json_error_t jerr;
    json_t *doc = json_load_file(p->schema_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        errlist_addf(errs, NULL, "%s:%d:%d: %s", p->schema_path, jerr.line, jerr.column, jerr.text);
        return false;
    }
    struct errlist inner;
    errlist_init(&inner);
    p->schema = schema_compile(doc, &inner);
    for (size_t i = 0; i < inner.n; i++)
        errlist_addf(errs, NULL, "%s: %s", p->schema_path, inner.items[i]);
    errlist_free(&inner);
    json_decref(doc);
    return p->schema != NULL;
}

static int def_cmp(const void *a, const void *b) {
    return strcmp(((const struct plugin_def *)a)->name, ((const struct plugin_def *)b)->name);
}

struct plugin_catalog *plugin_catalog_load(const char *data_dir, char *const *roots, size_t n_roots,
                                           char *const *enabled, size_t n_enabled,
                                           struct errlist *errs) {
    size_t before = errs->n;
    struct finder f = {.errs = errs};
    scan(&f, data_dir, true);
    for (size_t i = 0; i < n_roots; i++)
        scan(&f, roots[i], false);
    if (f.n) qsort(f.v, f.n, sizeof *f.v, found_cmp);
    for (size_t i = 1; i < f.n; i++)
        if (!strcmp(f.v[i].name, f.v[i - 1].name))
            errlist_addf(errs, NULL, "plugin %s is in both %s and %s: a name must be unique",
                         f.v[i].name, f.v[i - 1].root, f.v[i].root);

    struct plugin_catalog *c = calloc(1, sizeof *c);
    if (!c) abort();
    atomic_init(&c->refs, 1);
    static atomic_uint_fast64_t generations;
    c->generation = atomic_fetch_add(&generations, 1) + 1;
    c->available = calloc(f.n + 1, sizeof *c->available);
    c->defs = calloc(f.n + 1, sizeof *c->defs);
    if (!c->available || !c->defs) abort();
    for (size_t i = 0; i < f.n; i++)
        c->available[c->n_available++] = strdup(f.v[i].name);

    /* which are enabled: "bundled" and names, each once */
    bool *on = calloc(f.n + 1, sizeof *on);
    if (!on) abort();
    for (size_t i = 0; i < n_enabled; i++) {
        bool all = !strcmp(enabled[i], "bundled"), hit = false;
        for (size_t j = 0; j < f.n; j++) {
            if (all ? f.v[j].bundled : !strcmp(f.v[j].name, enabled[i])) {
                on[j] = true;
                hit = true;
            }
        }
        if (!hit && !all)
            errlist_addf(errs, NULL,
                         "weir.plugins[%zu]: no plugin named \"%s\" (looked for "
                         "plugins/%s/handler.lua in the data directory and in weir.plugin_paths)",
                         i, enabled[i], enabled[i]);
    }

    lua_State *L = luaL_newstate();
    if (L) {
        luaL_openlibs(L);
        lua_vm_set_package_path(L, data_dir, roots, n_roots);
    } else
        errlist_addf(errs, NULL,
                     "cannot create a LuaJIT state to check the plugins (out of memory)");
    for (size_t j = 0; L && j < f.n; j++) {
        if (!on[j]) continue;
        struct plugin_def *p = &c->defs[c->n_defs++];
        p->name = strdup(f.v[j].name);
        p->bundled = f.v[j].bundled;
        char *dir = join(f.v[j].root, "/plugins/", p->name);
        p->handler_path = join(dir, "/handler.lua", NULL);
        free(dir);
        char *sdir = join(f.v[j].root, "/schemas/plugins/", p->name);
        p->schema_path = join(sdir, ".json", NULL);
        free(sdir);
        load_schema(p, errs);
        check_handler(L, p, errs);
    }
    if (L) lua_close(L);
    if (c->n_defs) qsort(c->defs, c->n_defs, sizeof *c->defs, def_cmp);
    free(on);
    for (size_t i = 0; i < f.n; i++) {
        free(f.v[i].name);
        free(f.v[i].root);
    }
    free(f.v);
    if (errs->n != before) {
        plugin_catalog_release(c);
        return NULL;
    }
    return c;
}

const struct plugin_def *plugin_catalog_find(const struct plugin_catalog *c, const char *name) {
    for (size_t i = 0; c && i < c->n_defs; i++)
        if (!strcmp(c->defs[i].name, name)) return &c->defs[i];
    return NULL;
}

struct plugin_catalog *plugin_catalog_retain(struct plugin_catalog *c) {
    if (c) atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void plugin_catalog_release(struct plugin_catalog *c) {
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1) return;
    for (size_t i = 0; i < c->n_defs; i++) {
        struct plugin_def *p = &c->defs[i];
        free(p->name);
        free(p->handler_path);
        free(p->schema_path);
        free(p->version);
        schema_free(p->schema);
    }
    for (size_t i = 0; i < c->n_available; i++)
        free(c->available[i]);
    free(c->available);
    free(c->defs);
    free(c);
}

json_t *plugin_catalog_apply(const struct plugin_catalog *c, json_t *model, const json_t *origins,
                             struct errlist *errs) {
    size_t before = errs->n, i;
    json_t *items = model_items(model, ENTITY_PLUGIN), *e, *changed = NULL;
    json_array_foreach(items, i, e) {
        char buf[64], path[300];
        const char *where = model_origin(origins, ENTITY_PLUGIN, i, buf, sizeof buf);
        const char *name = json_string_value(json_object_get(e, "name"));
        const struct plugin_def *def = plugin_catalog_find(c, name);
        if (!def) {
            bool installed = false;
            for (size_t k = 0; k < c->n_available && !installed; k++)
                installed = !strcmp(c->available[k], name);
            if (installed)
                errlist_addf(errs, NULL,
                             "%s.name: plugin \"%s\" is installed but not enabled: add it to "
                             "weir.plugins",
                             where, name);
            else
                errlist_addf(errs, NULL,
                             "%s.name: no plugin named \"%s\" (bundled plugins and those in "
                             "weir.plugin_paths can be enabled)",
                             where, name);
            continue;
        }
        json_t *given = json_object_get(e, "config");
        json_t *conf = json_is_object(given) ? json_incref(given) : json_object();
        snprintf(path, sizeof path, "%s.config", where);
        if (schema_validate_at(def->schema, conf, path, errs)) {
            json_t *full = schema_apply_defaults(def->schema, conf);
            if (!given || !json_equal(full, given)) {
                if (!changed) changed = json_copy(items);
                json_t *copy = json_copy(e);
                json_object_set(copy, "config", full);
                json_array_set_new(changed, i, copy);
            }
            json_decref(full);
        }
        json_decref(conf);
    }
    if (errs->n != before) {
        json_decref(changed);
        return NULL;
    }
    if (!changed) return json_incref(model);
    json_t *next = json_copy(model);
    json_object_set_new(next, entity_kinds[ENTITY_PLUGIN].plural, changed);
    return next;
}
