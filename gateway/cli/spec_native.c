#include "cli/spec_native.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <lauxlib.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lua/pdk_json.h"

#define RESPONSE_MAX_BYTES (64u << 20)

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- a growable byte string ---------------------------------------------------------------- */

struct bytes {
    char *p;
    size_t n, cap;
};

static void bytes_add(struct bytes *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) abort();
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

/* ---- the response, as http_parser reads it ------------------------------------------------- */

struct response {
    http_parser parser;
    bool head_only; /* a HEAD request: the answer has no body whatever it says */
    bool complete;
    bool in_value;        /* the last header callback was a value (a new field starts a new pair) */
    struct bytes *fields; /* names and values, alternating */
    size_t n_fields, cap_fields;
    struct bytes body;
    size_t total; /* bytes read, for RESPONSE_MAX_BYTES */
};

static struct bytes *new_field(struct response *r) {
    if (r->n_fields == r->cap_fields) {
        r->cap_fields = r->cap_fields ? 2 * r->cap_fields : 32;
        r->fields = realloc(r->fields, r->cap_fields * sizeof *r->fields);
        if (!r->fields) abort();
    }
    r->fields[r->n_fields] = (struct bytes){0};
    return &r->fields[r->n_fields++];
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
    struct response *r = p->data;
    if (r->in_value || r->n_fields == 0) {
        new_field(r);
        r->in_value = false;
    }
    bytes_add(&r->fields[r->n_fields - 1], at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
    struct response *r = p->data;
    if (!r->in_value) {
        new_field(r);
        bytes_add(&r->fields[r->n_fields - 1], "", 0); /* an empty value still has storage */
        r->in_value = true;
    }
    bytes_add(&r->fields[r->n_fields - 1], at, len);
    return 0;
}

static int on_headers_complete(http_parser *p) {
    struct response *r = p->data;
    return r->head_only ? 1 : 0; /* 1: no body follows */
}

static int on_body(http_parser *p, const char *at, size_t len) {
    struct response *r = p->data;
    bytes_add(&r->body, at, len);
    return 0;
}

static int on_message_complete(http_parser *p) {
    struct response *r = p->data;
    r->complete = true;
    http_parser_pause(p, 1); /* whatever follows is not ours */
    return 0;
}

static const http_parser_settings response_settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void response_free(struct response *r) {
    for (size_t i = 0; i < r->n_fields; i++)
        free(r->fields[i].p);
    free(r->fields);
    free(r->body.p);
}

/* ---- the exchange ---------------------------------------------------------------------------- */

/* Waits for `events` on fd until `deadline`; false on timeout (errno ETIMEDOUT). */
static bool wait_fd(int fd, short events, double deadline) {
    for (;;) {
        double left = deadline - now_seconds();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return false;
        }
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, (int)ceil(left * 1000));
        if (n > 0) return true;
        if (n < 0 && errno != EINTR) return false;
    }
}

static int connect_loopback(int port, double deadline, char *err, size_t errlen) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&sin, sizeof sin);
    if (rc != 0 && errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline)) {
        socklen_t len = sizeof rc;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &rc, &len) != 0) rc = errno;
        errno = rc;
        rc = rc ? -1 : 0;
    }
    if (rc != 0) {
        snprintf(err, errlen, "connect to 127.0.0.1:%d: %s", port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *p, size_t n, double deadline, char *err, size_t errlen) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w, n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(err, errlen, "sending the request: %s", strerror(errno));
            return false;
        }
        if (!wait_fd(fd, POLLOUT, deadline)) {
            snprintf(err, errlen, "sending the request: %s", strerror(errno));
            return false;
        }
    }
    return true;
}

/* Reads and parses until the response is complete. */
static bool read_response(int fd, struct response *r, double deadline, char *err, size_t errlen) {
    char buf[16384];
    while (!r->complete) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wait_fd(fd, POLLIN, deadline)) {
                snprintf(err, errlen, "waiting for the response: %s",
                         errno == ETIMEDOUT ? "timed out" : strerror(errno));
                return false;
            }
            continue;
        }
        if (n < 0) {
            snprintf(err, errlen, "reading the response: %s", strerror(errno));
            return false;
        }
        r->total += (size_t)n;
        if (r->total > RESPONSE_MAX_BYTES) {
            snprintf(err, errlen, "the response is larger than %u bytes", RESPONSE_MAX_BYTES);
            return false;
        }
        /* n == 0 tells the parser the connection closed: that ends a body read to EOF */
        http_parser_execute(&r->parser, &response_settings, buf, (size_t)n);
        enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
        if (e != HPE_OK && e != HPE_PAUSED) {
            snprintf(err, errlen, "malformed response: %s", http_errno_description(e));
            return false;
        }
        if (n == 0 && !r->complete) {
            snprintf(err, errlen, "the connection closed before the response was complete");
            return false;
        }
    }
    return true;
}

static void check_no_crlf(lua_State *L, const char *s, size_t n, const char *what) {
    if (memchr(s, '\r', n) || memchr(s, '\n', n))
        luaL_error(L, "%s must not contain CR or LF", what);
}

/* The request head and body, checked, into a Lua buffer (on the Lua stack, so an error while
 * building it leaks nothing). */
static void build_request(lua_State *L, luaL_Buffer *b) {
    size_t n;
    const char *method = luaL_checklstring(L, 2, &n);
    check_no_crlf(L, method, n, "the method");
    const char *target = luaL_checklstring(L, 3, &n);
    check_no_crlf(L, target, n, "the path");
    luaL_checktype(L, 4, LUA_TTABLE);
    luaL_buffinit(L, b);
    luaL_addstring(b, method);
    luaL_addchar(b, ' ');
    luaL_addstring(b, target);
    luaL_addstring(b, " HTTP/1.1\r\n");
    for (int i = 1;; i++) {
        lua_rawgeti(L, 4, i);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            break;
        }
        luaL_checktype(L, -1, LUA_TTABLE);
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        size_t nlen, vlen;
        const char *name = lua_tolstring(L, -2, &nlen), *value = lua_tolstring(L, -1, &vlen);
        if (!name || !value) luaL_error(L, "header %d: a name and a value are needed", i);
        check_no_crlf(L, name, nlen, "a header name");
        check_no_crlf(L, value, vlen, "a header value");
        lua_pushfstring(L, "%s: %s\r\n", name, value);
        lua_replace(L, -4); /* the string takes the pair's slot, below the buffer's top */
        lua_pop(L, 2);
        luaL_addvalue(b);
    }
    luaL_addstring(b, "\r\n");
    if (!lua_isnoneornil(L, 5)) {
        lua_pushvalue(L, 5);
        luaL_addvalue(b);
    }
    luaL_pushresult(b);
}

static void push_response(lua_State *L, const struct response *r) {
    lua_pushinteger(L, r->parser.status_code);
    lua_createtable(L, (int)(r->n_fields / 2), 0);
    for (size_t i = 0; i + 1 < r->n_fields; i += 2) {
        lua_createtable(L, 2, 0);
        lua_pushlstring(L, r->fields[i].p, r->fields[i].n);
        lua_rawseti(L, -2, 1);
        lua_pushlstring(L, r->fields[i + 1].p, r->fields[i + 1].n);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, (int)(i / 2 + 1));
    }
    lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.n);
}

static int native_request(lua_State *L) {
    int port = (int)luaL_checkinteger(L, 1);
    double timeout = luaL_optnumber(L, 6, 10);
    luaL_Buffer b;
    build_request(L, &b);
    size_t len;
    const char *req = lua_tolstring(L, -1, &len);
    bool head_only = strcmp(lua_tostring(L, 2), "HEAD") == 0;

    char err[256] = "";
    double deadline = now_seconds() + timeout;
    int fd = connect_loopback(port, deadline, err, sizeof err);
    if (fd < 0) return luaL_error(L, "%s", err);
    struct response r = {.head_only = head_only};
    http_parser_init(&r.parser, HTTP_RESPONSE);
    r.parser.data = &r;
    bool ok = send_all(fd, req, len, deadline, err, sizeof err) &&
              read_response(fd, &r, deadline, err, sizeof err);
    close(fd);
    if (ok) push_response(L, &r);
    response_free(&r);
    if (!ok) return luaL_error(L, "%s", err);
    return 3;
}

static int native_now(lua_State *L) {
    lua_pushnumber(L, now_seconds());
    return 1;
}

static int native_sleep(lua_State *L) {
    double s = luaL_checknumber(L, 1);
    if (s <= 0) return 0;
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    return 0;
}

static int open_native(lua_State *L) {
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
}

void spec_native_install(lua_State *L, const struct spec_env *env) {
    lua_newtable(L);
    lua_pushcfunction(L, native_request);
    lua_setfield(L, -2, "request");
    lua_pushcfunction(L, native_now);
    lua_setfield(L, -2, "now");
    lua_pushcfunction(L, native_sleep);
    lua_setfield(L, -2, "sleep");
    pdk_json_push_module(L);
    lua_setfield(L, -2, "json");
    lua_pushinteger(L, env->proxy_port);
    lua_setfield(L, -2, "proxy_port");
    lua_pushinteger(L, env->admin_port);
    lua_setfield(L, -2, "admin_port");
    lua_pushinteger(L, env->upstream_port);
    lua_setfield(L, -2, "upstream_port");
    lua_pushstring(L, env->error_log);
    lua_setfield(L, -2, "error_log");
    lua_pushstring(L, env->root);
    lua_setfield(L, -2, "root");

    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushvalue(L, -3);
    lua_pushcclosure(L, open_native, 1);
    lua_setfield(L, -2, "weir.test.native");
    lua_pop(L, 3);
}
