#include "lua/pdk_redis.h"

#include <lauxlib.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fmt.h"
#include "lua/lua_task.h"
#include "lua/lua_vm.h"
#include "redis/redis_client.h"

#define CLIENT_META "weir.redis.client"
#define SCRIPTS_KEY "weir.redis.scripts" /* registry: script -> SHA1 hex */
#define MAX_CACHED_SCRIPTS 256
#define DEFAULT_PORT 6379
#define DEFAULT_TIMEOUT_MS 1000
#define MAX_TIMEOUT_MS 600000
#define MAX_HOST_LEN 1024
#define SHA1_HEX 40
#define NUMBER_BUF 32

/* Per VM: the worker's connections and the number of cached script hashes. */
struct redis_state {
    struct redis_pool *pool;
    int n_scripts;
};

/* A client object's settings, held by the object and by each command it started (an eval may
 * have to send again after the object is gone). */
struct client_conf {
    int refs;
    struct redis_client cl;
    char strings[]; /* host, username, password, pool name */
};

/* One r:call or r:eval waiting for its answer (the lua_task op). */
struct call {
    struct lua_task *task;
    struct redis_state *state;
    struct client_conf *conf;
    struct redis_cmd *cmd;
    void *block; /* argv and lens (then, for eval, the bytes they point to) */
    const char **argv;
    size_t *lens;
    int argc;
    /* eval: the command is kept, to be sent again as EVAL if the server lacks the script */
    bool is_eval, retried;
    const char *script;
    size_t script_len;
};

/* What a command ended with, for push_answer. */
struct answer {
    const redisReply *reply;
    const char *err;
};

static void conf_release(struct client_conf *conf) {
    if (conf && --conf->refs == 0) free(conf);
}

static void call_free(struct call *call) {
    conf_release(call->conf);
    free(call->block);
    free(call);
}

static struct redis_state *state_of(lua_State *L) {
    struct redis_state *st = lua_touserdata(L, lua_upvalueindex(1));
    if (!st) luaL_error(L, "weir.redis: only available in a worker");
    return st;
}

/* ---- replies as Lua values ---------------------------------------------------------------- */

/* hiredis nests arrays at most 7 deep (its reader's stack), so this recursion is bounded and
 * the few slots per level that push_answer reserves suffice. */
static void push_reply(lua_State *L, const redisReply *r) {
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        lua_pushlstring(L, r->str, r->len);
        break;
    case REDIS_REPLY_INTEGER:
        lua_pushnumber(L, (lua_Number)r->integer);
        break;
    case REDIS_REPLY_ARRAY:
        lua_createtable(L, (int)r->elements, 0);
        for (size_t i = 0; i < r->elements; i++) {
            push_reply(L, r->element[i]);
            lua_rawseti(L, -2, (int)i + 1);
        }
        break;
    case REDIS_REPLY_ERROR:       /* inside an array (a script's error_reply in a table): */
        lua_createtable(L, 2, 0); /* lua-resty-redis's {false, message} */
        lua_pushboolean(L, 0);
        lua_rawseti(L, -2, 1);
        lua_pushlstring(L, r->str, r->len);
        lua_rawseti(L, -2, 2);
        break;
    default: /* REDIS_REPLY_NIL */
        lua_pushlightuserdata(L, NULL);
        break;
    }
}

static int push_answer(lua_State *co, void *arg) {
    const struct answer *a = arg;
    lua_checkstack(co, 32);
    if (a->reply && a->reply->type != REDIS_REPLY_ERROR) {
        push_reply(co, a->reply);
        return 1;
    }
    lua_pushnil(co);
    if (a->reply)
        lua_pushlstring(co, a->reply->str, a->reply->len);
    else
        lua_pushstring(co, a->err);
    return 2;
}

/* ---- commands ----------------------------------------------------------------------------- */

static bool is_noscript(const redisReply *r) {
    return r && r->type == REDIS_REPLY_ERROR && r->len >= 8 && memcmp(r->str, "NOSCRIPT", 8) == 0;
}

static void call_answered(void *arg, const redisReply *reply, const char *err) {
    struct call *call = arg;
    if (call->is_eval && !call->retried && is_noscript(reply)) {
        /* the server restarted or flushed its scripts: send the script itself, once */
        call->retried = true;
        call->argv[0] = "EVAL";
        call->lens[0] = 4;
        call->argv[1] = call->script;
        call->lens[1] = call->script_len;
        const char *e;
        call->cmd = redis_command(call->state->pool, &call->conf->cl, call->argc, call->argv,
                                  call->lens, call_answered, call, &e);
        if (call->cmd) return;
        reply = NULL;
        err = e;
    }
    struct lua_task *t = call->task;
    struct answer a = {reply, err};
    call_free(call);
    lua_task_wake(t, push_answer, &a);
}

static void call_cancel(void *op) {
    struct call *call = op;
    redis_command_cancel(call->cmd);
    call_free(call);
}

/* Sends call->argv and waits; or returns nil, err at once when it cannot start. Owns call. */
static int call_start(lua_State *L, struct call *call) {
    const char *err;
    call->cmd = redis_command(call->state->pool, &call->conf->cl, call->argc, call->argv,
                              call->lens, call_answered, call, &err);
    if (!call->cmd) {
        call_free(call);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return lua_task_wait(L, call->task, call_cancel, call);
}

/* A call with room for argc arguments and `bytes` more for their text. */
static struct call *call_new(lua_State *L, struct lua_task *t, struct client_conf *conf, int argc,
                             size_t bytes) {
    struct call *call = calloc(1, sizeof *call);
    if (!call) abort();
    call->task = t;
    call->state = state_of(L);
    call->conf = conf;
    conf->refs++;
    call->argc = argc;
    call->block = malloc((size_t)argc * (sizeof *call->argv + sizeof *call->lens) + bytes);
    if (!call->block) abort();
    call->argv = call->block;
    call->lens = (size_t *)(call->argv + argc);
    return call;
}

static struct client_conf *check_client(lua_State *L) {
    struct client_conf **ud = luaL_checkudata(L, 1, CLIENT_META);
    if (!*ud) luaL_argerror(L, 1, "not a usable weir.redis client");
    return *ud;
}

/* Redis reads numbers from text: integral values go without exponent or fraction ("10", never
 * "1e+01"), others with every digit a double has. */
static const char *number_text(lua_Number v, char *buf, size_t *len) {
    if (v == floor(v) && fabs(v) < 9e18) { /* the common case, without snprintf */
        size_t n = 0;
        if (v < 0) buf[n++] = '-';
        n += fmt_u64(buf + n, (uint64_t)fabs(v));
        *len = n;
        return buf;
    }
    *len = (size_t)snprintf(buf, NUMBER_BUF, "%.17g", v);
    return buf;
}

/* The bytes of the string or number at idx, or NULL for any other type. */
static const char *arg_bytes(lua_State *L, int idx, char *buf, size_t *len) {
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        return lua_tolstring(L, idx, len);
    case LUA_TNUMBER:
        return number_text(lua_tonumber(L, idx), buf, len);
    default:
        return NULL;
    }
}

static int client_call(lua_State *L) {
    struct client_conf *conf = check_client(L);
    int argc = lua_gettop(L) - 1;
    if (argc < 1) return luaL_error(L, "weir.redis: call needs a command name");
    for (int i = 2; i <= argc + 1; i++) {
        char buf[NUMBER_BUF];
        size_t len;
        const char *s = arg_bytes(L, i, buf, &len);
        if (!s)
            luaL_argerror(
                L, i, lua_pushfstring(L, "string or number expected, got %s", luaL_typename(L, i)));
        if (lua_type(L, i) == LUA_TNUMBER) { /* the text stays on the stack while it is sent */
            lua_pushlstring(L, s, len);
            lua_replace(L, i);
        }
    }
    struct lua_task *t = lua_task_waitable(L);
    struct call *call = call_new(L, t, conf, argc, 0);
    /* the strings on the stack outlive the send, where hiredis copies them */
    for (int i = 0; i < argc; i++)
        call->argv[i] = lua_tolstring(L, i + 2, &call->lens[i]);
    return call_start(L, call);
}

/* ---- eval --------------------------------------------------------------------------------- */

static void sha1_hex(const char *data, size_t len, char out[SHA1_HEX + 1]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(data, len, md, &md_len, EVP_sha1(), NULL) != 1 || md_len * 2 != SHA1_HEX)
        abort(); /* SHA-1 is always there for digests (FIPS forbids it for signatures only) */
    static const char hex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < md_len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[SHA1_HEX] = '\0';
}

/* The script's SHA1, from the VM's cache (a registry table, started afresh when full). */
static void script_sha(lua_State *L, struct redis_state *st, int script, char out[SHA1_HEX + 1]) {
    lua_getfield(L, LUA_REGISTRYINDEX, SCRIPTS_KEY);
    if (lua_istable(L, -1)) {
        lua_pushvalue(L, script);
        lua_rawget(L, -2);
        if (lua_type(L, -1) == LUA_TSTRING && lua_objlen(L, -1) == SHA1_HEX) {
            memcpy(out, lua_tostring(L, -1), SHA1_HEX + 1);
            lua_pop(L, 2);
            return;
        }
        lua_pop(L, 1);
    }
    size_t len;
    const char *s = lua_tolstring(L, script, &len);
    sha1_hex(s, len, out);
    if (!lua_istable(L, -1) || st->n_scripts >= MAX_CACHED_SCRIPTS) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, SCRIPTS_KEY);
        st->n_scripts = 0;
    }
    lua_pushvalue(L, script);
    lua_pushlstring(L, out, SHA1_HEX);
    lua_rawset(L, -3);
    st->n_scripts++;
    lua_pop(L, 1);
}

/* The length of eval's keys or args table (nil: none); each element is a string or number. */
static int list_bytes(lua_State *L, int idx, const char *what, size_t *bytes) {
    if (lua_isnoneornil(L, idx)) return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    int n = (int)lua_objlen(L, idx);
    for (int i = 1; i <= n; i++) {
        char buf[NUMBER_BUF];
        size_t len;
        lua_rawgeti(L, idx, i);
        if (!arg_bytes(L, -1, buf, &len))
            luaL_error(L, "weir.redis: eval's %s[%d] must be a string or a number, got %s", what, i,
                       luaL_typename(L, -1));
        *bytes += len;
        lua_pop(L, 1);
    }
    return n;
}

/* Appends list idx's elements to call's argv, their bytes at *p. */
static void copy_list(lua_State *L, int idx, int n, struct call *call, int *k, char **p) {
    for (int i = 1; i <= n; i++) {
        char buf[NUMBER_BUF];
        size_t len;
        lua_rawgeti(L, idx, i);
        const char *s = arg_bytes(L, -1, buf, &len);
        memcpy(*p, s, len);
        call->argv[*k] = *p;
        call->lens[(*k)++] = len;
        *p += len;
        lua_pop(L, 1);
    }
}

static int client_eval(lua_State *L) {
    struct client_conf *conf = check_client(L);
    size_t script_len;
    luaL_checklstring(L, 2, &script_len);
    size_t bytes = script_len + SHA1_HEX + NUMBER_BUF;
    int nkeys = list_bytes(L, 3, "keys", &bytes);
    int nargs = list_bytes(L, 4, "args", &bytes);
    struct lua_task *t = lua_task_waitable(L);
    char sha[SHA1_HEX + 1];
    script_sha(L, state_of(L), 2, sha);
    /* nothing below raises: the call owns what is allocated */
    struct call *call = call_new(L, t, conf, 3 + nkeys + nargs, bytes);
    call->is_eval = true;
    char *p = (char *)(call->lens + call->argc);
    memcpy(p, lua_tostring(L, 2), script_len);
    call->script = p;
    call->script_len = script_len;
    p += script_len;
    memcpy(p, sha, SHA1_HEX);
    call->argv[0] = "EVALSHA";
    call->lens[0] = 7;
    call->argv[1] = p;
    call->lens[1] = SHA1_HEX;
    p += SHA1_HEX;
    call->argv[2] = p;
    call->lens[2] = fmt_u64(p, (uint64_t)nkeys);
    p += call->lens[2];
    int k = 3;
    copy_list(L, 3, nkeys, call, &k, &p);
    copy_list(L, 4, nargs, call, &k, &p);
    return call_start(L, call);
}

/* ---- connect ------------------------------------------------------------------------------ */

static const char *const options[] = {"host",    "port",      "username", "password", "db",
                                      "timeout", "pool_size", "pool",     NULL};

static void check_option_names(lua_State *L) {
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int i = 0;
        while (name && options[i] && strcmp(options[i], name) != 0)
            i++;
        if (!name) luaL_error(L, "weir.redis.connect: option names are strings");
        if (!options[i]) luaL_error(L, "weir.redis.connect: unknown option '%s'", name);
    }
}

static int int_option(lua_State *L, const char *name, int dflt, int lo, int hi) {
    lua_getfield(L, 1, name);
    lua_Number v = lua_isnil(L, -1) ? dflt : lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNIL && lua_type(L, -1) != LUA_TNUMBER) v = NAN;
    lua_pop(L, 1);
    if (!(v >= lo && v <= hi) || v != floor(v))
        luaL_error(L, "weir.redis.connect: %s must be an integer from %d to %d", name, lo, hi);
    return (int)v;
}

/* A string option, left on the stack (it must stay referenced until copied); NULL if nil. */
static const char *string_option(lua_State *L, const char *name, size_t max, size_t *len) {
    lua_getfield(L, 1, name);
    *len = 0;
    if (lua_isnil(L, -1)) return NULL;
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, len) : NULL;
    if (!s || *len == 0 || *len > max || strlen(s) != *len)
        luaL_error(L,
                   "weir.redis.connect: %s must be a non-empty string (at most %d bytes, no NUL)",
                   name, (int)max);
    return s;
}

static int client_gc(lua_State *L) {
    struct client_conf **ud = luaL_checkudata(L, 1, CLIENT_META);
    conf_release(*ud);
    *ud = NULL;
    return 0;
}

static int client_tostring(lua_State *L) {
    struct client_conf *conf = check_client(L);
    lua_pushfstring(L, "weir.redis.client: %s port %d db %d", conf->cl.host, conf->cl.port,
                    conf->cl.db);
    return 1;
}

static char *copy_string(char **p, const char *s, size_t len) {
    if (!s) return NULL;
    char *d = *p;
    memcpy(d, s, len);
    d[len] = '\0';
    *p += len + 1;
    return d;
}

static int redis_connect(lua_State *L) {
    state_of(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    check_option_names(L);
    size_t host_len, password_len, pool_len;
    const char *host = string_option(L, "host", MAX_HOST_LEN, &host_len);
    if (!host) return luaL_error(L, "weir.redis.connect: host is required");
    const char *password = string_option(L, "password", 4096, &password_len);
    size_t username_len;
    const char *username = string_option(L, "username", 256, &username_len);
    if (username && !password)
        return luaL_error(L,
                          "weir.redis.connect: a username needs a password (AUTH user password)");
    const char *pool = string_option(L, "pool", 256, &pool_len);
    struct redis_client cl = {
        .port = int_option(L, "port", DEFAULT_PORT, 1, 65535),
        .db = int_option(L, "db", 0, 0, 1 << 20),
        .timeout_ms = int_option(L, "timeout", DEFAULT_TIMEOUT_MS, 1, MAX_TIMEOUT_MS),
        .pool_size = int_option(L, "pool_size", REDIS_DEFAULT_POOL_SIZE, 1, REDIS_MAX_POOL_SIZE),
    };
    struct client_conf **ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, CLIENT_META);
    lua_setmetatable(L, -2);
    /* nothing below raises */
    struct client_conf *conf =
        malloc(sizeof *conf + host_len + username_len + password_len + pool_len + 4);
    if (!conf) abort();
    conf->refs = 1;
    conf->cl = cl;
    char *p = conf->strings;
    conf->cl.host = copy_string(&p, host, host_len);
    conf->cl.username = copy_string(&p, username, username_len);
    conf->cl.password = copy_string(&p, password, password_len);
    conf->cl.pool_name = copy_string(&p, pool, pool_len);
    *ud = conf;
    return 1;
}

/* ---- registration ------------------------------------------------------------------------- */

static void state_close(void *arg) {
    struct redis_state *st = arg;
    redis_pool_free(st->pool);
    free(st);
}

static void set_closure(lua_State *L, struct redis_state *st, const char *name, lua_CFunction f) {
    lua_pushlightuserdata(L, st);
    lua_pushcclosure(L, f, 1);
    lua_setfield(L, -2, name);
}

void pdk_redis_register(lua_State *L, int weir) {
    /* The VM being built is the thread's (lua_vm_new); its loop carries the connections. */
    struct lua_vm *vm = lua_vm_self();
    struct redis_state *st = NULL;
    if (vm) {
        st = calloc(1, sizeof *st);
        if (!st) abort();
        st->pool = redis_pool_new(vm->base);
        lua_vm_on_close(vm, state_close, st);
    }

    luaL_newmetatable(L, CLIENT_META);
    lua_createtable(L, 0, 2);
    set_closure(L, st, "call", client_call);
    set_closure(L, st, "eval", client_eval);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, client_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, client_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, CLIENT_META);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);

    lua_createtable(L, 0, 2);
    set_closure(L, st, "connect", redis_connect);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_setfield(L, weir, "redis");
}
