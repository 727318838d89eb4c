/* weir.service: the request Weir sends upstream, as plugins change it in rewrite and access.
 *
 * Changes are recorded in the request's plugin_run and applied when upstream/proxy.c writes the
 * upstream request head; nothing a plugin passes reaches the wire unchecked: header names must
 * be tokens, values may not hold CR, LF or NUL (no header injection), paths are percent-encoded
 * where needed. Fields Weir writes itself (framing, hop-by-hop, X-Forwarded-*, X-Real-IP,
 * X-Request-ID, Via) cannot be set: an attempt raises an error naming the field. */
#include <arpa/inet.h>
#include <ctype.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/client_conn.h"
#include "http/head_check.h"
#include "http/path.h"
#include "lua/pdk.h"
#include "lua/pdk_json.h"
#include "lua/plugin_catalog.h"
#include "lua/plugin_run.h"

static struct plugin_run *run_in_request_phases(lua_State *L, const char *what) {
    struct plugin_run *run = plugin_run_current(L, what);
    if (run->phase != PLUGIN_REWRITE && run->phase != PLUGIN_ACCESS)
        luaL_error(L, "%s: only in the rewrite and access phases (the upstream request is sent)",
                   what);
    return run;
}

static bool header_name_ok(const char *s, size_t n) {
    return n <= 256 && head_is_token(s, n);
}

/* Names whose fields Weir writes itself, for both directions (`request_only` ones exist only
 * in the upstream request). Compared by length first: few names a plugin sets have the length
 * of one of these. */
#define MANAGED(s, req) {s, sizeof s - 1, req}
static const struct {
    const char *name;
    size_t len;
    bool request_only;
} managed[] = {
    MANAGED("content-length", false),    MANAGED("transfer-encoding", false),
    MANAGED("connection", false),        MANAGED("keep-alive", false),
    MANAGED("te", false),                MANAGED("trailer", false),
    MANAGED("upgrade", false),           MANAGED("proxy-connection", false),
    MANAGED("x-forwarded-for", true),    MANAGED("x-forwarded-proto", true),
    MANAGED("x-forwarded-host", true),   MANAGED("x-forwarded-port", true),
    MANAGED("x-forwarded-prefix", true), MANAGED("x-real-ip", true),
    MANAGED("x-request-id", true),       MANAGED("via", true),
};
#undef MANAGED

static bool header_managed(const char *name, size_t n, bool request) {
    for (size_t i = 0; i < sizeof managed / sizeof managed[0]; i++)
        if (managed[i].len == n && (request || !managed[i].request_only) &&
            !strncasecmp(managed[i].name, name, n))
            return true;
    return false;
}

const char *pdk_check_header(lua_State *L, int idx, size_t *n, bool request, const char *what) {
    const char *name = luaL_checklstring(L, idx, n);
    if (!header_name_ok(name, *n)) luaL_error(L, "%s: invalid header name", what);
    if (header_managed(name, *n, request))
        luaL_error(L, "%s: %s is written by Weir and cannot be set by a plugin", what, name);
    return name;
}

/* The value argument: a string or a number; CR, LF and NUL refused. */
const char *pdk_check_header_value(lua_State *L, int idx, size_t *n, const char *what) {
    if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TNUMBER)
        luaL_argerror(L, idx, "a header value must be a string or a number");
    const char *v = lua_tolstring(L, idx, n);
    if (!head_is_field_value(v, *n))
        luaL_error(L, "%s: a header value may not contain control characters (CR, LF, NUL)", what);
    return v;
}

/* The client's forwarded fields become the list plugins edit, on the first edit (copied: the
 * client's head may be gone by the time the upstream request is written). */
static void materialize(lua_State *L, struct plugin_run *run, const char *what) {
    if (run->up_headers_set) return;
    struct client_conn *c = run->c;
    for (size_t i = 0; i < c->req.n_headers; i++) {
        const struct http_header *h = &c->headers[i];
        if (h->drop || h->kind != HDR_OTHER) continue;
        plugin_run_hlist_add(L, run, &run->up_headers, h->name, h->name_len, h->value,
                             h->value_len, what);
    }
    run->up_headers_set = true;
}

static bool is_host(const char *name, size_t n) {
    return n == 4 && !strncasecmp(name, "host", 4);
}

static void set_host(struct plugin_run *run, const char *v, size_t n) {
    free(run->up_host);
    run->up_host = strndup(v, n);
    if (!run->up_host) abort();
}

static int svc_set_header(lua_State *L) {
    const char *what = "weir.service.request.set_header";
    struct plugin_run *run = run_in_request_phases(L, what);
    size_t n, vn;
    const char *name = pdk_check_header(L, 1, &n, true, what);
    const char *v = pdk_check_header_value(L, 2, &vn, what);
    if (is_host(name, n)) {
        set_host(run, v, vn);
        return 0;
    }
    materialize(L, run, what);
    hlist_clear(&run->up_headers, name, n);
    plugin_run_hlist_add(L, run, &run->up_headers, name, n, v, vn, what);
    return 0;
}

static int svc_add_header(lua_State *L) {
    const char *what = "weir.service.request.add_header";
    struct plugin_run *run = run_in_request_phases(L, what);
    size_t n, vn;
    const char *name = pdk_check_header(L, 1, &n, true, what);
    const char *v = pdk_check_header_value(L, 2, &vn, what);
    if (is_host(name, n)) return luaL_error(L, "%s: a request has one Host: use set_header", what);
    materialize(L, run, what);
    plugin_run_hlist_add(L, run, &run->up_headers, name, n, v, vn, what);
    return 0;
}

static int svc_clear_header(lua_State *L) {
    const char *what = "weir.service.request.clear_header";
    struct plugin_run *run = run_in_request_phases(L, what);
    size_t n;
    const char *name = pdk_check_header(L, 1, &n, true, what);
    if (is_host(name, n)) return luaL_error(L, "%s: a request needs a Host", what);
    materialize(L, run, what);
    hlist_clear(&run->up_headers, name, n);
    return 0;
}

/* set_headers{name = value or {values}}: each named field replaced, others kept (Kong). */
static int svc_set_headers(lua_State *L) {
    const char *what = "weir.service.request.set_headers";
    struct plugin_run *run = run_in_request_phases(L, what);
    luaL_checktype(L, 1, LUA_TTABLE);
    materialize(L, run, what);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pushvalue(L, -2); /* key copy at -1, value at -2 */
        size_t n;
        const char *name = pdk_check_header(L, -1, &n, true, what);
        if (is_host(name, n)) {
            size_t vn;
            const char *v = pdk_check_header_value(L, -2, &vn, what);
            set_host(run, v, vn);
        } else if (lua_istable(L, -2)) {
            hlist_clear(&run->up_headers, name, n);
            for (int i = 1;; i++) {
                lua_rawgeti(L, -2, i);
                if (lua_isnil(L, -1)) {
                    lua_pop(L, 1);
                    break;
                }
                size_t vn;
                const char *v = pdk_check_header_value(L, -1, &vn, what);
                plugin_run_hlist_add(L, run, &run->up_headers, name, n, v, vn, what);
                lua_pop(L, 1);
            }
        } else {
            size_t vn;
            const char *v = pdk_check_header_value(L, -2, &vn, what);
            hlist_clear(&run->up_headers, name, n);
            plugin_run_hlist_add(L, run, &run->up_headers, name, n, v, vn, what);
        }
        lua_pop(L, 2);
    }
    return 0;
}

static bool path_char_ok(unsigned char ch) {
    return isalnum(ch) || strchr("-._~!$&'()*+,;=:@/%", ch);
}

/* set_path("/new/path"): the whole path sent upstream (service path and strip_path no longer
 * apply). Bytes a path may not hold are percent-encoded, as Kong does. */
static int svc_set_path(lua_State *L) {
    const char *what = "weir.service.request.set_path";
    struct plugin_run *run = run_in_request_phases(L, what);
    size_t n;
    const char *p = luaL_checklstring(L, 1, &n);
    if (n == 0 || p[0] != '/') return luaL_error(L, "%s: the path must start with \"/\"", what);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (path_char_ok(ch) && !(ch == '%' && !(i + 2 < n + 1 && i + 2 <= n - 1 + 1 &&
                                                 isxdigit((unsigned char)p[i + 1]) &&
                                                 isxdigit((unsigned char)p[i + 2])))) {
            luaL_addchar(&b, (char)ch);
        } else {
            char esc[4];
            snprintf(esc, sizeof esc, "%%%02X", ch);
            luaL_addlstring(&b, esc, 3);
        }
    }
    luaL_pushresult(&b);
    free(run->up_path);
    run->up_path = strdup(lua_tostring(L, -1));
    if (!run->up_path) abort();
    return 0;
}

static bool query_char_ok(unsigned char ch) {
    return ch > 0x20 && ch < 0x7f && ch != '#';
}

static void set_query(lua_State *L, struct plugin_run *run, const char *q, size_t n,
                      const char *what) {
    for (size_t i = 0; i < n; i++)
        if (!query_char_ok((unsigned char)q[i]))
            luaL_error(L,
                       "%s: a query may not contain spaces, control characters or \"#\" "
                       "(percent-encode them)",
                       what);
    free(run->up_query);
    run->up_query = strndup(q, n);
    if (!run->up_query) abort();
    run->up_query_set = true;
}

static int svc_set_raw_query(lua_State *L) {
    const char *what = "weir.service.request.set_raw_query";
    struct plugin_run *run = run_in_request_phases(L, what);
    size_t n;
    const char *q = luaL_checklstring(L, 1, &n);
    set_query(L, run, q, n, what);
    return 0;
}

static void add_escaped(luaL_Buffer *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (isalnum(ch) || strchr("-._~", ch)) {
            luaL_addchar(b, (char)ch);
        } else {
            char esc[4];
            snprintf(esc, sizeof esc, "%%%02X", ch);
            luaL_addlstring(b, esc, 3);
        }
    }
}

/* One name=value pair of set_query's table; `true` gives the bare name. */
static void add_arg(lua_State *L, luaL_Buffer *b, bool *first, const char *k, size_t kn, int vi,
                    const char *what) {
    int t = lua_type(L, vi);
    if (t == LUA_TBOOLEAN && !lua_toboolean(L, vi)) return;
    if (t != LUA_TBOOLEAN && t != LUA_TSTRING && t != LUA_TNUMBER)
        luaL_error(L, "%s: argument values must be strings, numbers, booleans or arrays", what);
    if (!*first) luaL_addchar(b, '&');
    *first = false;
    add_escaped(b, k, kn);
    if (t == LUA_TBOOLEAN) return;
    size_t vn;
    const char *v = lua_tolstring(L, vi, &vn);
    luaL_addchar(b, '=');
    add_escaped(b, v, vn);
}

/* set_query{name = value | true | {values}}: the query sent upstream, names sorted (so it is
 * the same whatever the table's order). */
static int svc_set_query(lua_State *L) {
    const char *what = "weir.service.request.set_query";
    struct plugin_run *run = run_in_request_phases(L, what);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_newtable(L); /* sorted names */
    int names = lua_gettop(L), count = 0;
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "%s: argument names must be strings", what);
        lua_pushvalue(L, -1);
        lua_rawseti(L, names, ++count);
    }
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, names);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    bool first = true;
    for (int i = 1; i <= count; i++) {
        lua_rawgeti(L, names, i);
        size_t kn;
        const char *k = lua_tolstring(L, -1, &kn);
        lua_pushvalue(L, -1);
        lua_rawget(L, 1);
        if (lua_istable(L, -1)) {
            for (int j = 1;; j++) {
                lua_rawgeti(L, -1, j);
                if (lua_isnil(L, -1)) {
                    lua_pop(L, 1);
                    break;
                }
                add_arg(L, &b, &first, k, kn, lua_gettop(L), what);
                lua_pop(L, 1);
            }
        } else {
            add_arg(L, &b, &first, k, kn, lua_gettop(L), what);
        }
        lua_pop(L, 2);
    }
    luaL_pushresult(&b);
    size_t n;
    const char *q = lua_tolstring(L, -1, &n);
    set_query(L, run, q, n, what);
    return 0;
}

static int svc_set_method(lua_State *L) {
    const char *what = "weir.service.request.set_method";
    struct plugin_run *run = run_in_request_phases(L, what);
    size_t n;
    const char *m = luaL_checklstring(L, 1, &n);
    if (n == 0 || n > 32) return luaL_error(L, "%s: invalid method", what);
    for (size_t i = 0; i < n; i++)
        if (!isupper((unsigned char)m[i]))
            return luaL_error(L, "%s: a method is upper-case letters (\"GET\")", what);
    free(run->up_method);
    run->up_method = strndup(m, n);
    if (!run->up_method) abort();
    return 0;
}

static int svc_set_scheme(lua_State *L) {
    const char *what = "weir.service.request.set_scheme";
    run_in_request_phases(L, what);
    const char *s = luaL_checkstring(L, 1);
    if (strcmp(s, "http") != 0)
        return luaL_error(L, "%s: only \"http\" (TLS to upstreams is not supported yet)", what);
    return 0;
}

/* set_target(ip, port): send this request to that address instead of the service's host or
 * upstream (no balancing, no retry on another target). A numeric address: resolving a name
 * would block the worker. */
static int svc_set_target(lua_State *L) {
    const char *what = "weir.service.set_target";
    struct plugin_run *run = run_in_request_phases(L, what);
    const char *host = luaL_checkstring(L, 1);
    lua_Integer port = luaL_checkinteger(L, 2);
    if (port < 1 || port > 65535) return luaL_error(L, "%s: port must be 1 to 65535", what);
    memset(&run->target, 0, sizeof run->target);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&run->target;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&run->target;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        run->target_len = sizeof *s4;
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        run->target_len = sizeof *s6;
    } else {
        return luaL_error(L, "%s: the host must be an IP address (names are not resolved here)",
                          what);
    }
    return 0;
}

static void set_body(struct plugin_run *run, const char *body, size_t len) {
    free(run->up_body);
    run->up_body = malloc(len + 1);
    if (!run->up_body) abort();
    memcpy(run->up_body, body, len);
    run->up_body[len] = '\0';
    run->up_body_len = len;
    run->up_body_set = true;
}

/* set_raw_body(body): the upstream gets this body (with its Content-Length); the client's body,
 * if not read yet, is read and dropped. */
static int svc_set_raw_body(lua_State *L) {
    const char *what = "weir.service.request.set_raw_body";
    struct plugin_run *run = run_in_request_phases(L, what);
    size_t len;
    const char *body = luaL_checklstring(L, 1, &len);
    set_body(run, body, len);
    return 0;
}

/* The client's media type, or "". */
static const char *client_mime(const struct client_conn *c, size_t *n) {
    for (size_t i = 0; i < c->req.n_headers; i++)
        if (c->headers[i].name_len == 12 && !strncasecmp(c->headers[i].name, "content-type", 12)) {
            *n = c->headers[i].value_len;
            return c->headers[i].value;
        }
    *n = 0;
    return "";
}

static bool mime_is(const char *m, size_t n, const char *want) {
    size_t w = strlen(want);
    return n >= w && !strncasecmp(m, want, w) && (n == w || m[w] == ';' || m[w] == ' ');
}

/* set_body(args, mimetype?): the table encoded for the media type given, else the client's:
 * application/json (JSON) or application/x-www-form-urlencoded (sorted name=value pairs). A
 * given mimetype also becomes the upstream request's Content-Type. */
static int svc_set_body(lua_State *L) {
    const char *what = "weir.service.request.set_body";
    struct plugin_run *run = run_in_request_phases(L, what);
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t mn;
    const char *mime =
        lua_isnoneornil(L, 2) ? client_mime(run->c, &mn) : luaL_checklstring(L, 2, &mn);
    if (mime_is(mime, mn, "application/json")) {
        char err[256];
        json_t *v = pdk_json_from_lua(L, 1, err, sizeof err);
        if (!v) return luaL_error(L, "%s: cannot encode the body as JSON: %s", what, err);
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(v);
        if (!text) abort();
        set_body(run, text, strlen(text));
        free(text);
    } else if (mime_is(mime, mn, "application/x-www-form-urlencoded")) {
        lua_pushcfunction(L, svc_set_query); /* the same encoding, then moved to the body */
        lua_pushvalue(L, 1);
        char *saved = run->up_query;
        bool saved_set = run->up_query_set;
        run->up_query = NULL;
        lua_call(L, 1, 0);
        set_body(run, run->up_query, strlen(run->up_query));
        free(run->up_query);
        run->up_query = saved;
        run->up_query_set = saved_set;
    } else {
        return luaL_error(L,
                          "%s: cannot encode a body for content type '%s' (give "
                          "application/json or application/x-www-form-urlencoded)",
                          what, mime);
    }
    if (!lua_isnoneornil(L, 2)) {
        materialize(L, run, what);
        hlist_clear(&run->up_headers, "content-type", 12);
        plugin_run_hlist_add(L, run, &run->up_headers, "Content-Type", 12, mime, mn, what);
    }
    return 0;
}

/* get_path(): the path the upstream request will carry: a plugin's set_path, else the route's
 * result (strip_path, then the service's path joined with one slash), as proxy.c writes it. */
static int svc_get_path(lua_State *L) {
    struct plugin_run *run = plugin_run_current(L, "weir.service.request.get_path");
    if (run->up_path) {
        lua_pushstring(L, run->up_path);
        return 1;
    }
    const struct client_conn *c = run->c;
    const struct route *route = c->req.match.route;
    const struct service *svc = route->service;
    size_t stripped = 0;
    if (route->strip_path) {
        stripped = c->req.match.matched_len;
        if (stripped > c->path.len) stripped = c->path.len;
    }
    size_t cap = c->path.len - stripped + (svc->path ? strlen(svc->path) : 0) + 3;
    char *out = malloc(cap);
    if (!out) abort();
    int n = path_join(svc->path, c->path.data + stripped, c->path.len - stripped, out, cap);
    lua_pushlstring(L, out, n > 0 ? (size_t)n : 0);
    free(out);
    return 1;
}

/* get_raw_query(): the query the upstream request will carry (without "?"). */
static int svc_get_raw_query(lua_State *L) {
    struct plugin_run *run = plugin_run_current(L, "weir.service.request.get_raw_query");
    if (run->up_query_set)
        lua_pushstring(L, run->up_query);
    else
        lua_pushlstring(L, run->c->req.query ? run->c->req.query : "",
                        run->c->req.query ? run->c->req.query_len : 0);
    return 1;
}

/* The upstream request's fields as they stand now: the client's forwarded end-to-end fields
 * with plugins' edits applied, and Host once a plugin set it. Fields Weir writes as it sends
 * the request (framing, hop-by-hop, X-Forwarded-*, X-Real-IP, X-Request-ID, Via) are not in it. */
static void upstream_fields(const struct plugin_run *run, struct hlist *out) {
    if (run->up_host) hlist_add(out, "Host", 4, run->up_host, strlen(run->up_host));
    if (run->up_headers_set) {
        for (size_t i = 0; i < run->up_headers.n; i++) {
            const struct hfield *f = &run->up_headers.v[i];
            hlist_add(out, f->name, f->nlen, f->value, f->vlen);
        }
        return;
    }
    const struct client_conn *c = run->c;
    for (size_t i = 0; i < c->req.n_headers; i++) {
        const struct http_header *h = &c->headers[i];
        if (h->drop || h->kind != HDR_OTHER) continue;
        hlist_add(out, h->name, h->name_len, h->value, h->value_len);
    }
}

/* get_header(name): the first value of that upstream request field, or nil. */
static int svc_get_header(lua_State *L) {
    struct plugin_run *run = plugin_run_current(L, "weir.service.request.get_header");
    size_t n;
    const char *name = luaL_checklstring(L, 1, &n);
    if (is_host(name, n)) {
        if (run->up_host)
            lua_pushstring(L, run->up_host);
        else
            lua_pushnil(L);
        return 1;
    }
    if (run->up_headers_set) {
        const struct hfield *f = hlist_find(&run->up_headers, name, n);
        if (f)
            lua_pushlstring(L, f->value, f->vlen);
        else
            lua_pushnil(L);
        return 1;
    }
    const struct client_conn *c = run->c;
    for (size_t i = 0; i < c->req.n_headers; i++) {
        const struct http_header *h = &c->headers[i];
        if (h->drop || h->kind != HDR_OTHER || h->name_len != n || strncasecmp(h->name, name, n))
            continue;
        lua_pushlstring(L, h->value, h->value_len);
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

/* get_headers([max]): the upstream request's fields, shaped as weir.request.get_headers(). */
static int svc_get_headers(lua_State *L) {
    struct plugin_run *run = plugin_run_current(L, "weir.service.request.get_headers");
    int max = (int)luaL_optinteger(L, 1, 100);
    struct hlist fields = {0};
    upstream_fields(run, &fields);
    pdk_push_hlist(L, &fields, max);
    hlist_free(&fields);
    return 1;
}

void pdk_service_register(lua_State *L, int weir) {
    static const luaL_Reg request[] = {
        {"set_header", svc_set_header},     {"add_header", svc_add_header},
        {"clear_header", svc_clear_header}, {"set_headers", svc_set_headers},
        {"set_path", svc_set_path},         {"set_raw_query", svc_set_raw_query},
        {"set_query", svc_set_query},       {"set_method", svc_set_method},
        {"set_scheme", svc_set_scheme},     {"set_raw_body", svc_set_raw_body},
        {"get_path", svc_get_path},         {"get_raw_query", svc_get_raw_query},
        {"set_body", svc_set_body},         {"get_header", svc_get_header},
        {"get_headers", svc_get_headers},   {NULL, NULL},
    };
    lua_newtable(L);
    lua_newtable(L);
    for (const luaL_Reg *f = request; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
    lua_setfield(L, -2, "request");
    lua_pushcfunction(L, svc_set_target);
    lua_setfield(L, -2, "set_target");
    lua_setfield(L, weir, "service");
}
