#include "lua/pdk_http.h"

#include <event2/buffer.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lua/lua_task.h"
#include "lua/lua_vm.h"
#include "lua/pdk.h"
#include "upstream/http_client.h"

#define DEFAULT_TIMEOUT_MS 10000
#define MAX_TIMEOUT_MS 3600000
#define DEFAULT_MAX_BODY (10 * 1024 * 1024)
#define MAX_MAX_BODY (1024 * 1024 * 1024)

/* ---- the arguments ------------------------------------------------------------------------- */

static const char *const OPTIONS[] = {"method",   "url",        "headers",     "body", "timeout",
                                      "max_body", "ssl_verify", "ssl_ca_file", NULL};
enum {
    OPT_METHOD = 2,
    OPT_URL,
    OPT_HEADERS,
    OPT_BODY,
    OPT_TIMEOUT,
    OPT_MAX_BODY,
    OPT_VERIFY,
    OPT_CA_FILE,
    LINES
}; /* stack slots */

/* Fields weir.http writes itself: a plugin setting them could desynchronise the framing. */
static const char *const MANAGED[] = {"content-length", "transfer-encoding", "connection",
                                      "keep-alive",     "proxy-connection",  "te",
                                      "trailer",        "upgrade",           NULL};

static bool is_token(const char *s, size_t n) {
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (c == 0 || !strchr("!#$%&'*+-.^_`|~", c))) return false;
    }
    return true;
}

static bool name_in(const char *name, const char *const *list) {
    for (size_t i = 0; list[i]; i++)
        if (strcasecmp(name, list[i]) == 0) return true;
    return false;
}

/* Adds "name: value\r\n" to the LINES table; a value with a control character other than HT
 * (CR, LF, NUL...) is refused, so no field can smuggle another. */
static void add_field(lua_State *L, int *n, int name, int value) {
    int type = lua_type(L, value);
    if (type != LUA_TSTRING && type != LUA_TNUMBER)
        luaL_error(L,
                   "weir.http.request: header '%s' must be a string, a number or an array of them",
                   lua_tostring(L, name));
    lua_pushvalue(L, name);
    lua_pushliteral(L, ": ");
    lua_pushvalue(L, value);
    size_t len;
    const char *v = lua_tolstring(L, -1, &len);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            luaL_error(L, "weir.http.request: header '%s' has a control character in its value",
                       lua_tostring(L, name));
    }
    lua_pushliteral(L, "\r\n");
    lua_concat(L, 4);
    lua_rawseti(L, LINES, ++*n);
}

/* Validates opts.headers into LINES; returns the number of lines. */
static int collect_headers(lua_State *L, bool *has_host, bool *has_agent) {
    int n = 0;
    lua_newtable(L); /* LINES */
    if (lua_isnil(L, OPT_HEADERS)) return 0;
    if (!lua_istable(L, OPT_HEADERS)) luaL_error(L, "weir.http.request: headers must be a table");
    lua_pushnil(L);
    while (lua_next(L, OPT_HEADERS)) {
        int name = lua_gettop(L) - 1, value = lua_gettop(L);
        size_t len;
        const char *s = lua_type(L, name) == LUA_TSTRING ? lua_tolstring(L, name, &len) : NULL;
        if (!s || !is_token(s, len))
            luaL_error(L, "weir.http.request: header names must be tokens (got '%s')",
                       s ? s : luaL_typename(L, name));
        if (name_in(s, MANAGED))
            luaL_error(L, "weir.http.request: header '%s' is set by weir.http itself", s);
        bool host = strcasecmp(s, "host") == 0;
        *has_host |= host;
        *has_agent |= strcasecmp(s, "user-agent") == 0;
        if (lua_istable(L, value)) {
            if (host) luaL_error(L, "weir.http.request: header 'Host' takes one value");
            int count = (int)lua_objlen(L, value);
            for (int i = 1; i <= count; i++) {
                lua_rawgeti(L, value, i);
                add_field(L, &n, name, lua_gettop(L));
                lua_pop(L, 1);
            }
        } else {
            add_field(L, &n, name, value);
        }
        lua_pop(L, 1);
    }
    return n;
}

static void check_option_names(lua_State *L) {
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (!k || !name_in(k, OPTIONS))
            luaL_error(L, "weir.http.request: unknown option '%s'", k ? k : luaL_typename(L, -1));
    }
}

static double opt_number(lua_State *L, int idx, const char *name, double dflt, double lo,
                         double hi) {
    if (lua_isnil(L, idx)) return dflt;
    if (lua_type(L, idx) != LUA_TNUMBER)
        luaL_error(L, "weir.http.request: %s must be a number", name);
    double v = lua_tonumber(L, idx);
    if (!(v >= lo && v <= hi))
        luaL_error(L, "weir.http.request: %s must be %.0f to %.0f", name, lo, hi);
    return v;
}

static const char *opt_string(lua_State *L, int idx, const char *name, size_t *len) {
    if (lua_isnil(L, idx)) return NULL;
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "weir.http.request: %s must be a string", name);
    return lua_tolstring(L, idx, len);
}

static int return_error(lua_State *L, const char *fmt, const char *arg) {
    lua_pushnil(L);
    lua_pushfstring(L, fmt, arg);
    return 2;
}

static bool method_is(const char *m, const char *const *list) {
    for (size_t i = 0; list[i]; i++)
        if (strcmp(m, list[i]) == 0) return true;
    return false;
}

/* ---- the result ---------------------------------------------------------------------------- */

struct result {
    struct lua_vm *vm;
    const struct http_client_response *res; /* NULL: err */
    const char *err;
};

static int push_result(lua_State *co, void *arg) {
    struct result *r = arg;
    if (!r->res) {
        lua_pushnil(co);
        lua_pushstring(co, r->err);
        return 2;
    }
    /* C pushing results may go past the memory limit; a body must not go far past it. */
    struct lua_vm *vm = r->vm;
    size_t n = evbuffer_get_length(r->res->body);
    if (vm->mem_used >= vm->mem_limit || n > vm->mem_limit - vm->mem_used) {
        lua_pushnil(co);
        lua_pushliteral(co, "response too large for weir.lua.memory_limit");
        return 2;
    }
    lua_createtable(co, 0, 3);
    lua_pushinteger(co, r->res->status);
    lua_setfield(co, -2, "status");
    pdk_push_headers(co, r->res->headers, r->res->n_headers, 0);
    lua_setfield(co, -2, "headers");
    lua_pushlstring(co, n ? (const char *)evbuffer_pullup(r->res->body, -1) : "", n);
    lua_setfield(co, -2, "body");
    return 1;
}

/* http_client's completion: the waiting task goes on with the result. */
static void request_done(void *arg, const struct http_client_response *res, const char *err) {
    struct lua_task *t = arg;
    struct result r = {t->vm, res, err}; /* the VM whose weir.http.request the task called */
    lua_task_wake(t, push_result, &r);
}

/* lua_task's cancel: the task was abandoned (client gone, worker stopping). */
static void request_cancel(void *op) {
    http_client_cancel(op);
}

/* ---- weir.http.request --------------------------------------------------------------------- */

static int http_request(lua_State *L) {
    struct http_client *client = lua_touserdata(L, lua_upvalueindex(1));
    if (!client) luaL_error(L, "weir.http.request: not available outside a worker");
    struct lua_task *t = lua_task_waitable(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    check_option_names(L);
    for (int i = 0; OPTIONS[i]; i++) /* slots OPT_METHOD... in OPTIONS' order */
        lua_getfield(L, 1, OPTIONS[i]);

    size_t url_len, body_len = 0, method_len = 3;
    const char *url = opt_string(L, OPT_URL, "url", &url_len);
    if (!url) luaL_error(L, "weir.http.request: url is required");
    const char *method = opt_string(L, OPT_METHOD, "method", &method_len);
    if (!method) method = "GET";
    if (!is_token(method, method_len) || method_len > 32)
        luaL_error(L, "weir.http.request: method must be a token");
    if (strcmp(method, "CONNECT") == 0)
        luaL_error(L, "weir.http.request: CONNECT is not supported");
    const char *body = opt_string(L, OPT_BODY, "body", &body_len);
    double timeout = opt_number(L, OPT_TIMEOUT, "timeout", DEFAULT_TIMEOUT_MS, 1, MAX_TIMEOUT_MS);
    double max_body = opt_number(L, OPT_MAX_BODY, "max_body", DEFAULT_MAX_BODY, 0, MAX_MAX_BODY);
    if (!lua_isnil(L, OPT_VERIFY) && !lua_isboolean(L, OPT_VERIFY))
        luaL_error(L, "weir.http.request: ssl_verify must be a boolean");
    bool verify = lua_isnil(L, OPT_VERIFY) || lua_toboolean(L, OPT_VERIFY);
    size_t ca_len = 0;
    const char *ca_file = opt_string(L, OPT_CA_FILE, "ssl_ca_file", &ca_len);
    if (ca_file && (ca_len == 0 || strlen(ca_file) != ca_len))
        luaL_error(L, "weir.http.request: ssl_ca_file must be a file name");
    bool has_host = false, has_agent = false;
    int n_lines = collect_headers(L, &has_host, &has_agent);

    struct http_client_url u;
    const char *why = http_client_parse_url(url, url_len, &u);
    if (why) return return_error(L, "invalid url: %s", why);

    /* The request head, assembled in Lua memory: a Lua error until here leaks nothing. */
    char authority[HTTP_CLIENT_AUTHORITY_MAX + 1];
    http_client_authority(&u, authority, sizeof authority);
    static const char *const WITH_CONTENT[] = {"POST", "PUT", "PATCH", NULL};
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, method, method_len);
    luaL_addchar(&b, ' ');
    if (u.target_len == 0 || u.target[0] != '/') luaL_addchar(&b, '/');
    luaL_addlstring(&b, u.target, u.target_len);
    luaL_addstring(&b, " HTTP/1.1\r\n");
    if (!has_host) {
        luaL_addstring(&b, "Host: ");
        luaL_addstring(&b, authority);
        luaL_addstring(&b, "\r\n");
    }
    if (!has_agent) luaL_addstring(&b, "User-Agent: weir/" WEIR_VERSION "\r\n");
    for (int i = 1; i <= n_lines; i++) {
        lua_rawgeti(L, LINES, i);
        luaL_addvalue(&b);
    }
    if (body || method_is(method, WITH_CONTENT)) {
        char cl[48];
        snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", body_len);
        luaL_addstring(&b, cl);
    }
    luaL_addstring(&b, "\r\n");
    luaL_pushresult(&b);
    size_t head_len;
    const char *head = lua_tolstring(L, -1, &head_len);

    struct http_client_request req = {
        .url = &u,
        .method = method,
        .head = head,
        .head_len = head_len,
        .body = body,
        .body_len = body_len,
        .verify = verify,
        .ca_file = ca_file,
        .timeout_ms = (long)timeout,
        .max_body = (size_t)max_body,
    };
    /* From here on no Lua call until the request ends or is waited on. */
    char err[256];
    struct http_client_op *op = http_client_request(client, &req, request_done, t, err, sizeof err);
    if (!op) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return lua_task_wait(L, t, request_cancel, op);
}

/* lua_vm_on_close: every task is gone by now, so no request uses the client. */
static void client_close(void *arg) {
    http_client_free(arg);
}

void pdk_http_register(lua_State *L, int weir) {
    /* The VM being built is the thread's (lua_vm_new); its loop serves every request. */
    struct lua_vm *vm = lua_vm_self();
    struct http_client *client = NULL;
    if (vm) {
        client = http_client_new(vm->base, "weir.http");
        lua_vm_on_close(vm, client_close, client);
    }
    lua_createtable(L, 0, 1);
    lua_pushlightuserdata(L, client);
    lua_pushcclosure(L, http_request, 1);
    lua_setfield(L, -2, "request");
    lua_setfield(L, weir, "http");
}
