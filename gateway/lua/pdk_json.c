#include "lua/pdk_json.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* cjson's rule for arrays with holes: encode them (holes as null) unless the largest index is
 * both above SPARSE_SAFE and more than SPARSE_RATIO times the number of elements, which would
 * let a table like {[1e9] = 1} allocate a billion nulls. */
#define SPARSE_RATIO 2
#define SPARSE_SAFE 10

/* Metatable of the userdata that owns jansson memory while Lua may raise an error. */
#define GUARD_META "weir.json.guard"

/* ---- JSON -> Lua ---------------------------------------------------------------------------- */

/* Pushes the array marker, creating it the first time a state needs it. */
static void push_array_mt(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, PDK_JSON_ARRAY_MT);
    if (!lua_isnil(L, -1)) return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, PDK_JSON_ARRAY_MT);
}

void pdk_json_push(lua_State *L, const json_t *v) {
    /* a container holds itself, a key and a child while its children are pushed */
    luaL_checkstack(L, 3, "JSON nested too deep");
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        size_t key_len;
        json_t *item;
        lua_createtable(L, 0, (int)json_object_size(v));
        /* jansson's iterators take a non-const object; they only read it */
        json_object_keylen_foreach((json_t *)v, key, key_len, item) {
            lua_pushlstring(L, key, key_len);
            pdk_json_push(L, item);
            lua_rawset(L, -3);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        lua_createtable(L, (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            pdk_json_push(L, json_array_get(v, i));
            lua_rawseti(L, -2, (int)i + 1);
        }
        push_array_mt(L);
        lua_setmetatable(L, -2);
        break;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        lua_pushnumber(L, (lua_Number)json_integer_value(v));
        break;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(v));
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    case JSON_NULL:
        lua_pushlightuserdata(L, NULL);
        break;
    }
}

/* ---- Lua -> JSON ---------------------------------------------------------------------------- */

struct encoder {
    lua_State *L;
    char *err;
    size_t errlen;
    int array_mt; /* stack index of the marker, 0 when this state never created one */
    int depth;
    const void *path[PDK_JSON_MAX_DEPTH]; /* tables being encoded, outermost first */
    int precision;                        /* digits every real so far needs to read back */
};

static json_t *encode_value(struct encoder *e, int idx);

static json_t *fail(struct encoder *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static json_t *fail(struct encoder *e, const char *fmt, ...) {
    if (e->errlen == 0) return NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err, e->errlen, fmt, ap);
    va_end(ap);
    return NULL;
}

/* jansson prints reals with a fixed precision (17 by default, which turns 0.1 into
 * 0.10000000000000001); the fewest digits that read back exactly keep output short without
 * losing anything. */
static int digits_to_read_back(double d) {
    char buf[32];
    for (int p = 15; p < 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, d);
        if (strtod(buf, NULL) == d) return p;
    }
    return 17;
}

static json_t *encode_number(struct encoder *e, double d) {
    if (!isfinite(d)) return fail(e, "cannot encode NaN or infinity");
    /* -2^63 <= d < 2^63 are exactly the doubles that convert to int64 without overflow */
    if (d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0)
        return json_integer((json_int_t)d);
    if (e->precision < 17) {
        int p = digits_to_read_back(d);
        if (p > e->precision) e->precision = p;
    }
    return json_real(d);
}

/* The length of the table at idx if its keys are all positive integers (0 when it has no keys),
 * or -1 when some key is not, which makes it an object. */
static double array_length(lua_State *L, int idx, double *items) {
    double max = 0;
    *items = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        double k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
        if (k < 1 || k != floor(k)) {
            lua_pop(L, 1);
            return -1;
        }
        if (k > max) max = k;
        (*items)++;
    }
    return max;
}

static json_t *encode_array(struct encoder *e, int idx, size_t n) {
    json_t *array = json_array();
    if (!array) return fail(e, "out of memory");
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(e->L, idx, (int)i);
        json_t *item = encode_value(e, lua_gettop(e->L));
        lua_pop(e->L, 1);
        if (!item || json_array_append_new(array, item) != 0) {
            json_decref(array);
            return item ? fail(e, "out of memory") : NULL;
        }
    }
    return array;
}

static json_t *encode_object(struct encoder *e, int idx) {
    lua_State *L = e->L;
    json_t *object = json_object();
    if (!object) return fail(e, "out of memory");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        char number[32];
        const char *key;
        size_t key_len;
        int key_type = lua_type(L, -2);
        if (key_type == LUA_TSTRING) {
            key = lua_tolstring(L, -2, &key_len);
        } else if (key_type == LUA_TNUMBER) {
            /* Lua's own tostring format; converting the key in place would break lua_next */
            key_len = (size_t)snprintf(number, sizeof number, "%.14g", lua_tonumber(L, -2));
            key = number;
        } else {
            lua_pop(L, 2);
            json_decref(object);
            return fail(e, "cannot encode a table key of type %s", lua_typename(L, key_type));
        }
        json_t *item = encode_value(e, lua_gettop(L));
        lua_pop(L, 1);
        /* json_object_setn_new releases item when it fails */
        if (!item || json_object_setn_new(object, key, key_len, item) != 0) {
            lua_pop(L, 1);
            json_decref(object);
            return item ? fail(e, "cannot encode a table key that is not UTF-8") : NULL;
        }
    }
    return object;
}

static bool has_array_mt(struct encoder *e, int idx) {
    if (!e->array_mt || !lua_getmetatable(e->L, idx)) return false;
    bool marked = lua_rawequal(e->L, -1, e->array_mt);
    lua_pop(e->L, 1);
    return marked;
}

static json_t *encode_table(struct encoder *e, int idx) {
    const void *self = lua_topointer(e->L, idx);
    for (int i = 0; i < e->depth; i++)
        if (e->path[i] == self) return fail(e, "cannot encode a table that contains itself");
    if (e->depth == PDK_JSON_MAX_DEPTH)
        return fail(e, "cannot encode tables nested deeper than %d", PDK_JSON_MAX_DEPTH);
    /* a key and a value per level; lua_checkstack fails instead of raising */
    if (!lua_checkstack(e->L, 3)) return fail(e, "Lua stack exhausted");

    e->path[e->depth++] = self;
    json_t *v;
    if (has_array_mt(e, idx)) {
        v = encode_array(e, idx, lua_objlen(e->L, idx));
    } else {
        double items, n = array_length(e->L, idx, &items);
        if (n <= 0)
            v = encode_object(e, idx);
        else if (n > SPARSE_SAFE && n > items * SPARSE_RATIO)
            v = fail(e, "cannot encode an excessively sparse array");
        else
            v = encode_array(e, idx, (size_t)n);
    }
    e->depth--;
    return v;
}

static json_t *encode_value(struct encoder *e, int idx) {
    lua_State *L = e->L;
    json_t *v;
    int type = lua_type(L, idx);
    switch (type) {
    case LUA_TNONE:
    case LUA_TNIL:
        return json_null();
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        return encode_number(e, lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        /* json_stringn refuses invalid UTF-8 (its only other failure is out of memory) */
        if (!(v = json_stringn(s, len))) return fail(e, "cannot encode a string that is not UTF-8");
        return v;
    }
    case LUA_TTABLE:
        return encode_table(e, idx);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) return json_null();
        return fail(e, "cannot encode a userdata other than weir.json.null");
    default:
        return fail(e, "cannot encode a %s", lua_typename(L, type));
    }
}

/* pdk_json_from_lua, also reporting the precision the reals need. */
static json_t *encode_root(lua_State *L, int idx, char *err, size_t errlen, int *precision) {
    if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
    if (errlen > 0) err[0] = '\0';
    if (!lua_checkstack(L, 1)) {
        if (errlen > 0) snprintf(err, errlen, "Lua stack exhausted");
        return NULL;
    }
    struct encoder e = {.L = L, .err = err, .errlen = errlen, .precision = 15};
    lua_getfield(L, LUA_REGISTRYINDEX, PDK_JSON_ARRAY_MT);
    if (lua_istable(L, -1)) e.array_mt = lua_gettop(L);
    json_t *v = encode_value(&e, idx);
    lua_pop(L, 1);
    *precision = e.precision;
    return v;
}

json_t *pdk_json_from_lua(lua_State *L, int idx, char *err, size_t errlen) {
    int precision;
    return encode_root(L, idx, err, errlen, &precision);
}

/* ---- the weir.json table -------------------------------------------------------------------- */

/* Owns jansson memory across calls that may raise a Lua error (out of memory): whatever is
 * still here when the guard is collected is freed then. */
struct guard {
    json_t *json;
    char *text;
};

static int guard_gc(lua_State *L) {
    struct guard *g = lua_touserdata(L, 1);
    json_decref(g->json);
    free(g->text);
    return 0;
}

static struct guard *push_guard(lua_State *L) {
    struct guard *g = lua_newuserdata(L, sizeof *g);
    g->json = NULL;
    g->text = NULL;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setmetatable(L, -2);
    return g;
}

static int json_encode(lua_State *L) {
    luaL_checkany(L, 1);
    struct guard *g = push_guard(L);
    char err[256];
    int precision;
    g->json = encode_root(L, 1, err, sizeof err, &precision);
    if (!g->json) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    g->text = json_dumps(g->json, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(precision));
    json_decref(g->json);
    g->json = NULL;
    if (!g->text) {
        lua_pushnil(L);
        lua_pushliteral(L, "out of memory");
        return 2;
    }
    lua_pushstring(L, g->text);
    free(g->text);
    g->text = NULL;
    return 1;
}

static int json_decode(lua_State *L) {
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    struct guard *g = push_guard(L);
    json_error_t error;
    /* Lua has one number type, so reading integers as reals loses nothing and spares an error
     * for integers beyond int64 */
    g->json =
        json_loadb(text, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &error);
    if (!g->json) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s at line %d column %d", error.text, error.line, error.column);
        return 2;
    }
    pdk_json_push(L, g->json);
    json_decref(g->json);
    g->json = NULL;
    return 1;
}

void pdk_json_push_module(lua_State *L) {
    luaL_checkstack(L, 4, "pushing weir.json");
    lua_createtable(L, 0, 5);

    if (luaL_newmetatable(L, GUARD_META)) {
        lua_pushcfunction(L, guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, json_encode, 1);
    lua_setfield(L, -3, "encode");
    lua_pushcclosure(L, json_decode, 1);
    lua_setfield(L, -2, "decode");

    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");

    push_array_mt(L);
    lua_setfield(L, -2, "array_mt");

    lua_newtable(L);
    push_array_mt(L);
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "empty_array");
}
