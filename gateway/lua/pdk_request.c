/* weir.request, weir.client and weir.router: what the client sent, who it is, what matched.
 * Read-only views of the request as the client sent it (changes plugins make to the upstream
 * request go through weir.service.request and do not show here). */
#include <arpa/inet.h>
#include <ctype.h>
#include <event2/event.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "config/model.h"
#include "core/conn.h"
#include "core/fmt.h"
#include "http/client_conn.h"
#include "lua/lua_vm.h"
#include "lua/pdk.h"
#include "lua/plugin_catalog.h"
#include "lua/plugin_run.h"
#include "tls/tls_conn.h"

#define MAX_ARGS_DEFAULT 100

static struct client_conn *conn_of(lua_State *L, const char *what) {
    return plugin_run_current(L, what)->c;
}

/* ---- weir.request ---------------------------------------------------------------------------- */

static int req_get_method(lua_State *L) {
    struct client_conn *c = conn_of(L, "weir.request.get_method");
    lua_pushlstring(L, c->req.method, c->req.method_len);
    return 1;
}

static int req_get_scheme(lua_State *L) {
    struct client_conn *c = conn_of(L, "weir.request.get_scheme");
    if (c->tls)
        lua_pushliteral(L, "https");
    else
        lua_pushliteral(L, "http");
    return 1;
}

static int req_get_host(lua_State *L) {
    struct client_conn *c = conn_of(L, "weir.request.get_host");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < c->req.host_len; i++)
        luaL_addchar(&b, (char)tolower((unsigned char)c->req.host[i]));
    luaL_pushresult(&b);
    return 1;
}

static int req_get_port(lua_State *L) {
    struct client_conn *c = conn_of(L, "weir.request.get_port");
    lua_pushinteger(L, c->listen_port);
    return 1;
}

static int req_get_path(lua_State *L) {
    struct client_conn *c = conn_of(L, "weir.request.get_path");
    lua_pushlstring(L, c->path.data, c->path.len);
    return 1;
}

static int req_get_raw_query(lua_State *L) {
    struct client_conn *c = conn_of(L, "weir.request.get_raw_query");
    lua_pushlstring(L, c->req.query ? c->req.query : "", c->req.query ? c->req.query_len : 0);
    return 1;
}

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    ch = tolower(ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Pushes s[0..n) percent-decoded, "+" as a space (application/x-www-form-urlencoded). */
static void push_unescaped(lua_State *L, const char *s, size_t n) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '+') {
            luaL_addchar(&b, ' ');
        } else if (s[i] == '%' && i + 2 < n + 0 + 1 && i + 2 <= n - 1 + 1 && i + 2 < n + 1 &&
                   i + 2 <= n && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
                   (lo = hexval((unsigned char)s[i + 2])) >= 0) {
            luaL_addchar(&b, (char)(hi * 16 + lo));
            i += 2;
        } else {
            luaL_addchar(&b, s[i]);
        }
    }
    luaL_pushresult(&b);
}

/* Pushes the arguments of a query string as ngx.req.get_uri_args() does: name -> value, a name
 * given without "=" -> true, a repeated name -> an array of its values; at most max_args. */
void pdk_push_args(lua_State *L, const char *q, size_t len, int max_args) {
    lua_newtable(L);
    int t = lua_gettop(L), count = 0;
    size_t i = 0;
    while (i < len && (max_args <= 0 || count < max_args)) {
        size_t end = i;
        while (end < len && q[end] != '&')
            end++;
        if (end > i) {
            const char *eq = memchr(q + i, '=', end - i);
            size_t klen = eq ? (size_t)(eq - (q + i)) : end - i;
            if (klen > 0) {
                push_unescaped(L, q + i, klen);
                if (eq)
                    push_unescaped(L, eq + 1, (size_t)(q + end - eq - 1));
                else
                    lua_pushboolean(L, 1);
                lua_pushvalue(L, -2);
                lua_rawget(L, t); /* key, value, existing */
                if (lua_isnil(L, -1)) {
                    lua_pop(L, 1);
                    lua_rawset(L, t);
                } else if (lua_istable(L, -1)) {
                    lua_insert(L, -2);
                    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
                    lua_pop(L, 2);
                } else {
                    lua_createtable(L, 2, 0);
                    lua_insert(L, -2);
                    lua_rawseti(L, -2, 1);
                    lua_insert(L, -2);
                    lua_rawseti(L, -2, 2);
                    lua_rawset(L, t);
                }
                count++;
            }
        }
        i = end + 1;
    }
}

static int req_get_query(lua_State *L) {
    struct client_conn *c = conn_of(L, "weir.request.get_query");
    int max = (int)luaL_optinteger(L, 1, MAX_ARGS_DEFAULT);
    pdk_push_args(L, c->req.query, c->req.query ? c->req.query_len : 0, max);
    return 1;
}

static int req_get_query_arg(lua_State *L) {
    struct client_conn *c = conn_of(L, "weir.request.get_query_arg");
    luaL_checkstring(L, 1);
    pdk_push_args(L, c->req.query, c->req.query ? c->req.query_len : 0, 0);
    lua_pushvalue(L, 1);
    lua_rawget(L, -2);
    if (lua_istable(L, -1)) lua_rawgeti(L, -1, 1); /* the first of a repeated argument */
    return 1;
}

/* Header names compare case-insensitively, "_" matching "-" (as Kong's get_header). */
static bool name_is(const struct http_header *h, const char *name, size_t n) {
    if (h->name_len != n) return false;
    for (size_t i = 0; i < n; i++) {
        char a = (char)tolower((unsigned char)h->name[i]),
             b = (char)tolower((unsigned char)name[i]);
        if (b == '_') b = '-';
        if (a != b) return false;
    }
    return true;
}

static int req_get_header(lua_State *L) {
    struct client_conn *c = conn_of(L, "weir.request.get_header");
    size_t n;
    const char *name = luaL_checklstring(L, 1, &n);
    for (size_t i = 0; i < c->req.n_headers; i++) {
        const struct http_header *h = &c->headers[i];
        if (name_is(h, name, n)) {
            lua_pushlstring(L, h->value, h->value_len);
            return 1;
        }
    }
    lua_pushnil(L);
    return 1;
}

/* __index of a headers table: any spelling of a name finds its lower-case entry. */
static int headers_index(lua_State *L) {
    size_t n;
    const char *key = lua_tolstring(L, 2, &n);
    if (!key) return 0;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++)
        luaL_addchar(&b, key[i] == '_' ? '-' : (char)tolower((unsigned char)key[i]));
    luaL_pushresult(&b);
    lua_rawget(L, 1);
    return 1;
}

/* Pushes a table of header fields: lower-case name -> value, or an array of the values of a
 * repeated field; any spelling of a name reads it. */
void pdk_push_headers(lua_State *L, const struct http_header *hs, size_t n, int max) {
    lua_createtable(L, 0, (int)n);
    int t = lua_gettop(L);
    int count = 0;
    for (size_t i = 0; i < n && (max <= 0 || count < max); i++, count++) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (size_t j = 0; j < hs[i].name_len; j++)
            luaL_addchar(&b, (char)tolower((unsigned char)hs[i].name[j]));
        luaL_pushresult(&b);
        lua_pushvalue(L, -1);
        lua_rawget(L, t);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushlstring(L, hs[i].value, hs[i].value_len);
            lua_rawset(L, t);
        } else if (lua_istable(L, -1)) {
            lua_pushlstring(L, hs[i].value, hs[i].value_len);
            lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
            lua_pop(L, 2);
        } else {
            lua_createtable(L, 2, 0);
            lua_insert(L, -2);
            lua_rawseti(L, -2, 1);
            lua_pushlstring(L, hs[i].value, hs[i].value_len);
            lua_rawseti(L, -2, 2);
            lua_rawset(L, t);
        }
    }
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, headers_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, t);
}

void pdk_push_hlist(lua_State *L, const struct hlist *l, int max) {
    struct http_header *hs = calloc(l->n ? l->n : 1, sizeof *hs);
    if (!hs) abort();
    for (size_t i = 0; i < l->n; i++) {
        hs[i].name = l->v[i].name;
        hs[i].name_len = l->v[i].nlen;
        hs[i].value = l->v[i].value;
        hs[i].value_len = l->v[i].vlen;
    }
    pdk_push_headers(L, hs, l->n, max);
    free(hs);
}

static int req_get_headers(lua_State *L) {
    struct client_conn *c = conn_of(L, "weir.request.get_headers");
    int max = (int)luaL_optinteger(L, 1, MAX_ARGS_DEFAULT);
    pdk_push_headers(L, c->headers, c->req.n_headers, max);
    return 1;
}

static int req_get_start_time(lua_State *L) {
    struct client_conn *c = conn_of(L, "weir.request.get_start_time");
    struct timespec now_real, now_mono;
    clock_gettime(CLOCK_REALTIME, &now_real);
    clock_gettime(CLOCK_MONOTONIC, &now_mono);
    double ago = (double)(now_mono.tv_sec - c->req.start.tv_sec) * 1e3 +
                 (double)(now_mono.tv_nsec - c->req.start.tv_nsec) / 1e6;
    double now_ms = (double)now_real.tv_sec * 1e3 + (double)now_real.tv_nsec / 1e6;
    lua_pushnumber(L, (lua_Number)(long long)(now_ms - ago)); /* Unix milliseconds, as Kong */
    return 1;
}

/* ---- the request body ---------------------------------------------------------------------- */

enum body_kind { BODY_JSON, BODY_FORM, BODY_OTHER };

static enum body_kind body_kind_of(const char *mime, size_t n) {
    while (n && (mime[n - 1] == ' '))
        n--;
    const char *semi = memchr(mime, ';', n);
    if (semi) n = (size_t)(semi - mime);
    while (n && mime[n - 1] == ' ')
        n--;
    if ((n == 16 && !strncasecmp(mime, "application/json", 16)) ||
        (n > 5 && !strncasecmp(mime + n - 5, "+json", 5)))
        return BODY_JSON;
    if (n == 33 && !strncasecmp(mime, "application/x-www-form-urlencoded", 33)) return BODY_FORM;
    return BODY_OTHER;
}

static const struct http_header *content_type(const struct client_conn *c) {
    for (size_t i = 0; i < c->req.n_headers; i++)
        if (c->headers[i].name_len == 12 && !strncasecmp(c->headers[i].name, "content-type", 12))
            return &c->headers[i];
    return NULL;
}

static int push_raw_body(lua_State *co, void *arg) {
    struct plugin_run *run = arg;
    lua_pushlstring(co, run->req_body ? run->req_body : "", run->req_body_len);
    return 1;
}

/* get_body's results: the decoded body, nil or an error, and the media type it was read as. */
static int push_decoded_body(lua_State *co, void *arg) {
    struct plugin_run *run = arg;
    const struct http_header *ct = content_type(run->c);
    const char *mime = ct ? ct->value : "";
    size_t mime_len = ct ? ct->value_len : 0;
    if (run->body_mime) {
        mime = run->body_mime;
        mime_len = strlen(mime);
    }
    switch (body_kind_of(mime, mime_len)) {
    case BODY_JSON: {
        json_error_t jerr;
        json_t *v = json_loadb(run->req_body ? run->req_body : "", run->req_body_len,
                               JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!v) {
            lua_pushnil(co);
            lua_pushfstring(co, "invalid JSON body: %s", jerr.text);
        } else {
            pdk_push_json(co, v);
            json_decref(v);
            lua_pushnil(co);
        }
        break;
    }
    case BODY_FORM:
        pdk_push_args(co, run->req_body, run->req_body_len, MAX_ARGS_DEFAULT);
        lua_pushnil(co);
        break;
    default:
        lua_pushnil(co);
        lua_pushlstring(co, mime, mime_len);
        lua_pushfstring(co, "unsupported content type '%s'", lua_tostring(co, -1));
        lua_remove(co, -2);
        break;
    }
    lua_pushlstring(co, mime, mime_len);
    return 3;
}

/* While the body is being read: the task gives up waiting (the request is being freed). */
static void body_cancel(void *op) {
    struct plugin_run *run = op;
    run->body_waiter = NULL;
}

/* Reading starts from the loop, once the plugin's call has yielded: reading may end the
 * request at once (a 413, a bad chunk), which must not happen under a running PDK function. */
struct body_start {
    struct event *ev;
    struct plugin_run *run;
    struct lua_task *task;
};

static void body_start_cancel(void *op) {
    struct body_start *bs = op;
    event_free(bs->ev);
    free(bs);
}

static void body_start_fired(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct body_start *bs = arg;
    struct plugin_run *run = bs->run;
    struct lua_task *t = bs->task;
    /* Only now does the body go to the plugin: bytes that came before stayed in the buffer
     * (a waiter set earlier could be woken by them while this event is still pending). */
    run->body_waiter = t;
    t->cancel = body_cancel; /* from now on the wait is on the client, not this event */
    t->op = run;
    event_free(bs->ev);
    free(bs);
    client_start_body(run->c); /* may finish (waking the task) or end the request */
}

/* Reads the whole body (waiting on the client) and returns push's results. In rewrite and
 * access only: later the body has been streamed to the upstream. */
static int read_body(lua_State *L, const char *what, int (*push)(lua_State *, void *)) {
    struct plugin_run *run = plugin_run_current(L, what);
    struct client_conn *c = run->c;
    if (run->body_read || (c->req.body_done && !run->req_body_len))
        return push(L, run); /* read before, or the request has no body */
    if (run->phase != PLUGIN_REWRITE && run->phase != PLUGIN_ACCESS) {
        lua_pushnil(L);
        lua_pushfstring(L,
                        "%s: the body was streamed to the upstream (read it in the rewrite or "
                        "access phase)",
                        what);
        return 2;
    }
    struct lua_task *t = lua_task_waitable(L);
    struct body_start *bs = calloc(1, sizeof *bs);
    if (!bs) abort();
    bs->run = run;
    bs->task = t;
    bs->ev = evtimer_new(run->vm->base, body_start_fired, bs);
    if (!bs->ev) abort();
    struct timeval now = {0, 0};
    evtimer_add(bs->ev, &now);
    run->body_push = push;
    return lua_task_wait(L, t, body_start_cancel, bs);
}

static int req_get_raw_body(lua_State *L) {
    return read_body(L, "weir.request.get_raw_body", push_raw_body);
}

/* get_body(mimetype?): JSON and form bodies decoded (Kong's kong.request.get_body). */
static int req_get_body(lua_State *L) {
    struct plugin_run *run = plugin_run_current(L, "weir.request.get_body");
    free(run->body_mime);
    run->body_mime = lua_isnoneornil(L, 1) ? NULL : strdup(luaL_checkstring(L, 1));
    return read_body(L, "weir.request.get_body", push_decoded_body);
}

/* ---- weir.client ----------------------------------------------------------------------------- */

static int client_get_ip(lua_State *L) {
    struct client_conn *c = conn_of(L, "weir.client.get_ip");
    lua_pushstring(L, c->peer_ip);
    return 1;
}

static int client_get_forwarded_ip(lua_State *L) {
    struct client_conn *c = conn_of(L, "weir.client.get_forwarded_ip");
    char real[64];
    if (c->peer_trusted) {
        for (size_t i = 0; i < c->req.n_headers; i++) {
            const struct http_header *h = &c->headers[i];
            if (h->kind != HDR_X_FORWARDED_FOR) continue;
            if (header_real_ip_from_xff(&c->req.snap->config->weir, h->value, h->value_len, real,
                                        sizeof real)) {
                lua_pushstring(L, real);
                return 1;
            }
            break; /* only the first line counts, as for X-Real-IP */
        }
    }
    lua_pushstring(L, c->peer_ip);
    return 1;
}

static int client_get_port(lua_State *L) {
    struct client_conn *c = conn_of(L, "weir.client.get_port");
    const struct sockaddr *sa = (const struct sockaddr *)&c->peer;
    int port = sa->sa_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)sa)->sin6_port)
                                         : ntohs(((const struct sockaddr_in *)sa)->sin_port);
    lua_pushinteger(L, port);
    return 1;
}

/* get_connection(): {server_addr, server_port, id, requests}: the local address the client
 * connected to (nginx's $server_addr, $server_port), the connection's serial number in its
 * worker ($connection, unique per worker) and this request's number on it ($connection_requests,
 * 1 for the first). */
static int client_get_connection(lua_State *L) {
    struct client_conn *c = conn_of(L, "weir.client.get_connection");
    struct sockaddr_storage local;
    socklen_t len = sizeof local;
    char addr[INET6_ADDRSTRLEN] = "";
    int port = c->listen_port;
    int fd = c->conn ? conn_fd(c->conn) : -1;
    if (fd >= 0 && getsockname(fd, (struct sockaddr *)&local, &len) == 0) {
        if (local.ss_family == AF_INET6) {
            const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&local;
            inet_ntop(AF_INET6, &s6->sin6_addr, addr, sizeof addr);
            port = ntohs(s6->sin6_port);
        } else if (local.ss_family == AF_INET) {
            const struct sockaddr_in *s4 = (const struct sockaddr_in *)&local;
            inet_ntop(AF_INET, &s4->sin_addr, addr, sizeof addr);
            port = ntohs(s4->sin_port);
        }
    }
    lua_createtable(L, 0, 4);
    lua_pushstring(L, addr);
    lua_setfield(L, -2, "server_addr");
    lua_pushinteger(L, port);
    lua_setfield(L, -2, "server_port");
    lua_pushnumber(L, (lua_Number)c->serial);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, (lua_Integer)c->n_requests);
    lua_setfield(L, -2, "requests");
    return 1;
}

static int push_ref(lua_State *L, int ref) {
    if (ref == LUA_NOREF)
        lua_pushnil(L);
    else
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    return 1;
}

/* weir.client.get_tls(): nil on a plain connection, else {protocol, cipher, server_name,
 * client_subject, client_fingerprint} (the last two only with a verified client certificate). */
static int client_get_tls(lua_State *L) {
    struct client_conn *c = conn_of(L, "weir.client.get_tls");
    struct tls_conn *t = c->tls ? conn_tls(c->conn) : NULL;
    if (!t) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, 0, 5);
    lua_pushstring(L, tls_conn_protocol(t));
    lua_setfield(L, -2, "protocol");
    lua_pushstring(L, tls_conn_cipher(t));
    lua_setfield(L, -2, "cipher");
    const char *name = tls_conn_server_name(t);
    if (name) {
        lua_pushstring(L, name);
        lua_setfield(L, -2, "server_name");
    }
    if (c->client_cert_subject) {
        lua_pushstring(L, c->client_cert_subject);
        lua_setfield(L, -2, "client_subject");
        lua_pushstring(L, c->client_cert_fingerprint);
        lua_setfield(L, -2, "client_fingerprint");
    }
    return 1;
}

static int client_get_consumer(lua_State *L) {
    return push_ref(L, plugin_run_current(L, "weir.client.get_consumer")->consumer_ref);
}

static int client_get_credential(lua_State *L) {
    return push_ref(L, plugin_run_current(L, "weir.client.get_credential")->credential_ref);
}

/* authenticate(consumer, credential): who the client is, for later plugins and scoping. At least
 * one must be a table; a consumer needs an `id` (string) for consumer-scoped plugins. */
static int client_authenticate(lua_State *L) {
    struct plugin_run *run = plugin_run_current(L, "weir.client.authenticate");
    if (!lua_istable(L, 1) && !lua_istable(L, 2))
        return luaL_error(L, "weir.client.authenticate: give a consumer or a credential table");
    if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    const char *id = NULL;
    if (lua_istable(L, 1)) {
        lua_getfield(L, 1, "id");
        id = lua_tostring(L, -1);
        if (id && strlen(id) >= sizeof run->consumer_id_buf)
            return luaL_error(L, "weir.client.authenticate: consumer id too long");
        lua_pop(L, 1);
    }
    luaL_unref(L, LUA_REGISTRYINDEX, run->consumer_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, run->credential_ref);
    lua_pushvalue(L, 1);
    run->consumer_ref =
        lua_istable(L, 1) ? luaL_ref(L, LUA_REGISTRYINDEX) : (lua_pop(L, 1), LUA_NOREF);
    lua_pushvalue(L, 2);
    run->credential_ref =
        lua_istable(L, 2) ? luaL_ref(L, LUA_REGISTRYINDEX) : (lua_pop(L, 1), LUA_NOREF);
    if (id) {
        strcpy(run->consumer_id_buf, id);
        run->consumer_id = run->consumer_id_buf;
    } else {
        run->consumer_id = NULL;
    }
    return 0;
}

/* load_consumer(id_or_username, search_by_username): the consumer entity, read-only; nil,
 * "not found" when there is none. O(1): the snapshot's indexes. */
static int client_load_consumer(lua_State *L) {
    struct plugin_run *run = plugin_run_current(L, "weir.client.load_consumer");
    const char *key = luaL_checkstring(L, 1);
    bool by_username = lua_toboolean(L, 2);
    const struct snapshot *snap = run->c->req.snap;
    char lower[40]; /* ids are stored lower-case */
    size_t n = strlen(key);
    const json_t *e = NULL;
    if (n < sizeof lower) {
        for (size_t i = 0; i <= n; i++)
            lower[i] = (char)tolower((unsigned char)key[i]);
        e = json_object_get(snap->consumer_by_id, lower);
    }
    if (!e && by_username) e = json_object_get(snap->consumer_by_username, key);
    if (!e) {
        lua_pushnil(L);
        lua_pushliteral(L, "not found");
        return 2;
    }
    lua_vm_push_entity(run->vm, L, run->c->req.snap, e);
    return 1;
}

/* load_credential(kind, key): a credential by its key ("key-auth": a keyauth_credential,
 * "jwt": a jwt_secret) and its consumer, both read-only; nil, "not found". O(1) per request:
 * the snapshot indexes the keys when it is built. */
static int client_load_credential(lua_State *L) {
    struct plugin_run *run = plugin_run_current(L, "weir.client.load_credential");
    const char *kind = luaL_checkstring(L, 1);
    const char *key = luaL_checkstring(L, 2);
    const struct snapshot *snap = run->c->req.snap;
    const json_t *index;
    if (!strcmp(kind, "key-auth") || !strcmp(kind, "keyauth_credentials"))
        index = snap->keyauth_by_key;
    else if (!strcmp(kind, "jwt") || !strcmp(kind, "jwt_secrets"))
        index = snap->jwt_by_key;
    else
        return luaL_argerror(L, 1, "\"key-auth\" or \"jwt\"");
    const json_t *cred = json_object_get(index, key);
    const json_t *owner = json_object_get(cred, "consumer");
    const char *cid = json_string_value(json_object_get(owner, "id"));
    const json_t *consumer = cid ? json_object_get(snap->consumer_by_id, cid) : NULL;
    if (!cred || !consumer) {
        lua_pushnil(L);
        lua_pushliteral(L, "not found");
        return 2;
    }
    lua_vm_push_entity(run->vm, L, snap, cred);
    lua_vm_push_entity(run->vm, L, snap, consumer);
    return 2;
}

/* ---- weir.router ---------------------------------------------------------------------------- */

static int router_get_route(lua_State *L) {
    struct plugin_run *run = plugin_run_current(L, "weir.router.get_route");
    lua_vm_push_entity(run->vm, L, run->c->req.snap, run->c->req.match.route->entity);
    return 1;
}

static int router_get_service(lua_State *L) {
    struct plugin_run *run = plugin_run_current(L, "weir.router.get_service");
    const json_t *model = run->c->req.snap->config->model;
    long at = model_find(model, ENTITY_SERVICE, run->c->req.match.route->service->id, NULL, NULL);
    if (at < 0) return 0;
    lua_vm_push_entity(run->vm, L, run->c->req.snap,
                       json_array_get(model_items(model, ENTITY_SERVICE), (size_t)at));
    return 1;
}

/* {unnamed = {[0] = whole match, captures...}, named = {name = capture}} as Kong's
 * get_uri_captures; empty tables for a prefix path. */
static int router_get_captures(lua_State *L) {
    struct plugin_run *run = plugin_run_current(L, "weir.router.get_captures");
    const struct route_match *m = &run->c->req.match;
    const struct bytebuf *path = &run->c->path;
    lua_createtable(L, 0, 2);
    lua_createtable(L, m->n_captures, 1);
    for (int i = 0; m->is_regex && i < m->n_captures; i++) {
        if (m->captures[i][0] == (size_t)-1)
            lua_pushboolean(L, 0);
        else
            lua_pushlstring(L, path->data + m->captures[i][0],
                            m->captures[i][1] - m->captures[i][0]);
        lua_rawseti(L, -2, i);
    }
    lua_setfield(L, -2, "unnamed");
    lua_newtable(L);
    uint32_t count = 0, entry = 0;
    PCRE2_SPTR table = NULL;
    if (m->is_regex && m->regex &&
        pcre2_pattern_info(m->regex, PCRE2_INFO_NAMECOUNT, &count) == 0 &&
        pcre2_pattern_info(m->regex, PCRE2_INFO_NAMEENTRYSIZE, &entry) == 0 &&
        pcre2_pattern_info(m->regex, PCRE2_INFO_NAMETABLE, &table) == 0) {
        /* each entry: the group number (2 bytes, big-endian), then the NUL-terminated name */
        for (uint32_t i = 0; i < count; i++) {
            PCRE2_SPTR e = table + (size_t)i * entry;
            int g = (e[0] << 8) | e[1];
            if (g >= m->n_captures || m->captures[g][0] == (size_t)-1) continue;
            lua_pushlstring(L, path->data + m->captures[g][0],
                            m->captures[g][1] - m->captures[g][0]);
            lua_setfield(L, -2, (const char *)(e + 2));
        }
    }
    lua_setfield(L, -2, "named");
    return 1;
}

static void set_functions(lua_State *L, int weir, const char *name, const luaL_Reg *fns) {
    lua_newtable(L);
    for (; fns->name; fns++) {
        lua_pushcfunction(L, fns->func);
        lua_setfield(L, -2, fns->name);
    }
    lua_setfield(L, weir, name);
}

void pdk_request_register(lua_State *L, int weir) {
    static const luaL_Reg request[] = {
        {"get_method", req_get_method},
        {"get_scheme", req_get_scheme},
        {"get_host", req_get_host},
        {"get_port", req_get_port},
        {"get_path", req_get_path},
        {"get_raw_query", req_get_raw_query},
        {"get_query", req_get_query},
        {"get_query_arg", req_get_query_arg},
        {"get_header", req_get_header},
        {"get_headers", req_get_headers},
        {"get_start_time", req_get_start_time},
        {"get_raw_body", req_get_raw_body},
        {"get_body", req_get_body},
        {NULL, NULL},
    };
    static const luaL_Reg client[] = {
        {"get_ip", client_get_ip},
        {"get_forwarded_ip", client_get_forwarded_ip},
        {"get_port", client_get_port},
        {"get_connection", client_get_connection},
        {"get_tls", client_get_tls},
        {"get_consumer", client_get_consumer},
        {"get_credential", client_get_credential},
        {"authenticate", client_authenticate},
        {"load_consumer", client_load_consumer},
        {"load_credential", client_load_credential},
        {NULL, NULL},
    };
    static const luaL_Reg router[] = {
        {"get_route", router_get_route},
        {"get_service", router_get_service},
        {"get_captures", router_get_captures},
        {NULL, NULL},
    };
    set_functions(L, weir, "request", request);
    set_functions(L, weir, "client", client);
    set_functions(L, weir, "router", router);
}
