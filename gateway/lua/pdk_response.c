/* weir.response: the response the client gets.
 *
 * Status and header edits may come in any phase before the head is sent (Kong allows them in
 * rewrite and access too, e.g. a rate limiter's headers); they apply to whatever the response
 * turns out to be: the upstream's, or the run's own answer after an exit or an error. Reads
 * (get_status, get_header, get_headers, get_source) see the response only in the response phase.
 * exit(status, body, headers) answers in place of the upstream, in rewrite and access only. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "http/client_conn.h"
#include "lua/pdk.h"
#include "lua/pdk_json.h"
#include "lua/plugin_catalog.h"
#include "lua/plugin_run.h"

static struct plugin_run *before_head(lua_State *L, const char *what) {
    struct plugin_run *run = plugin_run_current(L, what);
    if (run->phase == PLUGIN_LOG)
        luaL_error(L, "%s: the response was already sent (log phase)", what);
    return run;
}

static struct plugin_run *in_response(lua_State *L, const char *what) {
    struct plugin_run *run = plugin_run_current(L, what);
    if (run->phase != PLUGIN_RESPONSE && run->phase != PLUGIN_LOG)
        luaL_error(L, "%s: only in the response and log phases", what);
    return run;
}

static int status_of(const struct plugin_run *run) {
    if (run->resp_status) return run->resp_status;
    if (run->source == SOURCE_SERVICE && !run->finished_early) return run->c->up.status;
    return run->status;
}

/* The response's fields as they stand (base plus the edits so far). */
static void current_fields(const struct plugin_run *run, struct hlist *out) {
    struct hlist base = {0};
    if (run->source == SOURCE_SERVICE && !run->finished_early)
        plugin_run_upstream_fields(run->c, &base);
    plugin_run_response_fields(
        run, run->source == SOURCE_SERVICE && !run->finished_early ? &base : &run->exit_headers,
        out);
    hlist_free(&base);
}

static int resp_get_status(lua_State *L) {
    struct plugin_run *run = in_response(L, "weir.response.get_status");
    lua_pushinteger(L, status_of(run));
    return 1;
}

static int resp_get_source(lua_State *L) {
    struct plugin_run *run = in_response(L, "weir.response.get_source");
    static const char *const names[] = {"service", "exit", "error"};
    lua_pushstring(L, run->finished_early && run->source == SOURCE_SERVICE ? "exit"
                                                                           : names[run->source]);
    return 1;
}

static int resp_get_header(lua_State *L) {
    struct plugin_run *run = in_response(L, "weir.response.get_header");
    size_t n;
    const char *name = luaL_checklstring(L, 1, &n);
    struct hlist fields = {0};
    current_fields(run, &fields);
    const struct hfield *f = hlist_find(&fields, name, n);
    if (f)
        lua_pushlstring(L, f->value, f->vlen);
    else
        lua_pushnil(L);
    hlist_free(&fields);
    return 1;
}

static int resp_get_headers(lua_State *L) {
    struct plugin_run *run = in_response(L, "weir.response.get_headers");
    int max = (int)luaL_optinteger(L, 1, 100);
    struct hlist fields = {0};
    current_fields(run, &fields);
    pdk_push_hlist(L, &fields, max);
    hlist_free(&fields);
    return 1;
}

static int check_status(lua_State *L, int idx, const char *what) {
    lua_Integer status = luaL_checkinteger(L, idx);
    if (status < 200 || status > 599)
        luaL_error(L, "%s: status must be 200 to 599 (got %d)", what, (int)status);
    return (int)status;
}

static int resp_set_status(lua_State *L) {
    const char *what = "weir.response.set_status";
    struct plugin_run *run = before_head(L, what);
    run->resp_status = check_status(L, 1, what);
    return 0;
}

static void add_op(lua_State *L, struct plugin_run *run, enum resp_op_kind kind, const char *name,
                   size_t n, const char *value, size_t vn, const char *what) {
    const char *nm = plugin_run_copy(L, run, name, n, what);
    const char *v = value ? plugin_run_copy(L, run, value, vn, what) : NULL;
    if (run->n_resp_ops == run->cap_resp_ops) {
        run->cap_resp_ops = run->cap_resp_ops ? run->cap_resp_ops * 2 : 8;
        run->resp_ops = realloc(run->resp_ops, run->cap_resp_ops * sizeof *run->resp_ops);
        if (!run->resp_ops) abort();
    }
    run->resp_ops[run->n_resp_ops++] = (struct resp_op){kind, nm, v, n, vn};
}

static int header_op(lua_State *L, enum resp_op_kind kind, const char *what) {
    struct plugin_run *run = before_head(L, what);
    size_t n, vn = 0;
    const char *name = pdk_check_header(L, 1, &n, false, what);
    const char *v = kind == RESP_CLEAR ? NULL : pdk_check_header_value(L, 2, &vn, what);
    add_op(L, run, kind, name, n, v, vn, what);
    return 0;
}

static int resp_set_header(lua_State *L) {
    return header_op(L, RESP_SET, "weir.response.set_header");
}

static int resp_add_header(lua_State *L) {
    return header_op(L, RESP_ADD, "weir.response.add_header");
}

static int resp_clear_header(lua_State *L) {
    return header_op(L, RESP_CLEAR, "weir.response.clear_header");
}

/* Applies a headers table {name = value | {values}} as set operations, through `op`. */
static void each_header(lua_State *L, int idx, struct plugin_run *run, bool exit_list,
                        const char *what) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pushvalue(L, -2);
        size_t n;
        const char *name = pdk_check_header(L, -1, &n, false, what);
        if (exit_list)
            hlist_clear(&run->exit_headers, name, n);
        else
            add_op(L, run, RESP_CLEAR, name, n, NULL, 0, what);
        int vi = lua_gettop(L) - 1;
        bool many = lua_istable(L, vi);
        for (int i = 1;; i++) {
            if (many) {
                lua_rawgeti(L, vi, i);
                if (lua_isnil(L, -1)) {
                    lua_pop(L, 1);
                    break;
                }
            } else {
                lua_pushvalue(L, vi);
            }
            size_t vn;
            const char *v = pdk_check_header_value(L, -1, &vn, what);
            if (exit_list)
                plugin_run_hlist_add(L, run, &run->exit_headers, name, n, v, vn, what);
            else
                add_op(L, run, RESP_ADD, name, n, v, vn, what);
            lua_pop(L, 1);
            if (!many) break;
        }
        lua_pop(L, 2);
    }
}

static int resp_set_headers(lua_State *L) {
    const char *what = "weir.response.set_headers";
    struct plugin_run *run = before_head(L, what);
    each_header(L, 1, run, false, what);
    return 0;
}

/* exit(status, body?, headers?): a string body is sent as it is; a table is sent as JSON (with
 * Content-Type application/json unless the headers say otherwise). */
static int resp_exit(lua_State *L) {
    const char *what = "weir.response.exit";
    struct plugin_run *run = plugin_run_current(L, what);
    if (run->phase != PLUGIN_REWRITE && run->phase != PLUGIN_ACCESS)
        return luaL_error(L, "%s: only in the rewrite and access phases", what);
    struct lua_task *t = lua_task_waitable(L);
    int status = (int)luaL_checkinteger(L, 1);
    if (status < 100 || status > 599)
        return luaL_error(L, "%s: status must be 100 to 599 (got %d)", what, status);
    char *body = NULL;
    size_t body_len = 0;
    bool json = false;
    if (lua_istable(L, 2)) {
        char err[256];
        json_t *v = pdk_json_from_lua(L, 2, err, sizeof err);
        if (!v) return luaL_error(L, "%s: the body cannot be sent as JSON: %s", what, err);
        body = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(v);
        if (!body) abort();
        body_len = strlen(body);
        json = true;
    } else if (!lua_isnoneornil(L, 2)) {
        if (lua_type(L, 2) != LUA_TSTRING) luaL_argerror(L, 2, "a string or a table");
        const char *s = lua_tolstring(L, 2, &body_len);
        body = malloc(body_len + 1);
        if (!body) abort();
        memcpy(body, s, body_len);
    }
    hlist_free(&run->exit_headers);
    if (!lua_isnoneornil(L, 3)) each_header(L, 3, run, true, what);
    if (json && !hlist_find(&run->exit_headers, "content-type", 12))
        hlist_add(&run->exit_headers, "Content-Type", 12, "application/json; charset=utf-8", 31);
    free(run->body);
    run->body = body;
    run->body_len = body_len;
    run->status = status;
    run->source = SOURCE_EXIT;
    return lua_task_exit(L, t);
}

/* The body of the response being changed: the run's own, or a buffered upstream body. */
static int resp_get_raw_body(lua_State *L) {
    struct plugin_run *run = in_response(L, "weir.response.get_raw_body");
    if (run->finished_early || run->source != SOURCE_SERVICE) {
        lua_pushlstring(L, run->body ? run->body : "", run->body_len);
        return 1;
    }
    if (!run->buffering_response) {
        lua_pushnil(L);
        lua_pushliteral(L, "the upstream body is streamed: a plugin must declare "
                           "BUFFER_RESPONSE = true (or a function(conf) that returns true) to "
                           "read it");
        return 2;
    }
    lua_pushlstring(L, run->resp_body ? run->resp_body : "", run->resp_body_len);
    return 1;
}

static void replace(char **buf, size_t *len, const char *s, size_t n) {
    char *copy = malloc(n + 1);
    if (!copy) abort();
    memcpy(copy, s, n);
    copy[n] = '\0';
    free(*buf);
    *buf = copy;
    *len = n;
}

static int resp_set_raw_body(lua_State *L) {
    const char *what = "weir.response.set_raw_body";
    struct plugin_run *run = plugin_run_current(L, what);
    if (run->phase != PLUGIN_RESPONSE) return luaL_error(L, "%s: only in the response phase", what);
    size_t n;
    const char *body = luaL_checklstring(L, 1, &n);
    if (run->finished_early || run->source != SOURCE_SERVICE) {
        replace(&run->body, &run->body_len, body, n);
        return 0;
    }
    if (!run->buffering_response)
        return luaL_error(L,
                          "%s: the upstream body is streamed: declare BUFFER_RESPONSE = true (or "
                          "a function(conf) that returns true)",
                          what);
    replace(&run->resp_body, &run->resp_body_len, body, n);
    run->resp_body_cap = n + 1;
    return 0;
}

void pdk_response_register(lua_State *L, int weir) {
    static const luaL_Reg fns[] = {
        {"get_status", resp_get_status},
        {"get_source", resp_get_source},
        {"get_header", resp_get_header},
        {"get_headers", resp_get_headers},
        {"set_status", resp_set_status},
        {"set_header", resp_set_header},
        {"add_header", resp_add_header},
        {"clear_header", resp_clear_header},
        {"set_headers", resp_set_headers},
        {"exit", resp_exit},
        {"get_raw_body", resp_get_raw_body},
        {"set_raw_body", resp_set_raw_body},
        {NULL, NULL},
    };
    lua_newtable(L);
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
    lua_setfield(L, weir, "response");
}
