#include "lua/pdk_shared.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define DICT_META "weir.shared.dict"

static struct shared_dict *check_dict(lua_State *L) {
    struct shared_dict **d = luaL_checkudata(L, 1, DICT_META);
    return *d;
}

/* OpenResty accepts numbers as keys and uses their string form. */
static const char *check_key(lua_State *L, size_t *len) {
    int t = lua_type(L, 2);
    if (t != LUA_TSTRING && t != LUA_TNUMBER) luaL_argerror(L, 2, "key must be a string");
    return lua_tolstring(L, 2, len);
}

static void check_value(lua_State *L, int idx, struct sd_value *v) {
    memset(v, 0, sizeof *v);
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
    case LUA_TNONE:
        v->type = SD_NIL;
        break;
    case LUA_TBOOLEAN:
        v->type = SD_BOOLEAN;
        v->boolean = lua_toboolean(L, idx);
        break;
    case LUA_TNUMBER:
        v->type = SD_NUMBER;
        v->number = lua_tonumber(L, idx);
        break;
    case LUA_TSTRING:
        v->type = SD_STRING;
        v->str = lua_tolstring(L, idx, &v->len);
        break;
    default:
        luaL_argerror(L, idx, "bad value type (nil, boolean, number or string)");
    }
}

static double opt_ttl(lua_State *L, int idx) {
    double ttl = luaL_optnumber(L, idx, 0);
    if (ttl < 0) luaL_argerror(L, idx, "bad ttl");
    return ttl;
}

/* The three results of set and its relatives. */
static int store_results(lua_State *L, int rc, bool forcible) {
    lua_pushboolean(L, rc == SD_OK);
    if (rc == SD_OK)
        lua_pushnil(L);
    else
        lua_pushstring(L, shared_dict_strerror(rc));
    lua_pushboolean(L, forcible);
    return 3;
}

static int store(lua_State *L, enum sd_store_mode mode, bool evict) {
    struct shared_dict *d = check_dict(L);
    size_t klen;
    const char *key = check_key(L, &klen);
    struct sd_value v;
    check_value(L, 3, &v);
    double ttl = opt_ttl(L, 4);
    v.flags = (uint32_t)luaL_optinteger(L, 5, 0);
    bool forcible = false;
    int rc = shared_dict_store(d, mode, evict, key, klen, &v, ttl, &forcible);
    return store_results(L, rc, forcible);
}

static int dict_set(lua_State *L) {
    return store(L, SD_STORE_SET, true);
}
static int dict_safe_set(lua_State *L) {
    return store(L, SD_STORE_SET, false);
}
static int dict_add(lua_State *L) {
    return store(L, SD_STORE_ADD, true);
}
static int dict_safe_add(lua_State *L) {
    return store(L, SD_STORE_ADD, false);
}
static int dict_replace(lua_State *L) {
    return store(L, SD_STORE_REPLACE, true);
}

static int dict_get(lua_State *L) {
    struct shared_dict *d = check_dict(L);
    size_t klen;
    const char *key = check_key(L, &klen);
    char buf[256];
    struct sd_value v;
    int rc = shared_dict_get(d, key, klen, &v, buf, sizeof buf);
    if (rc != SD_OK) {
        lua_pushnil(L);
        lua_pushstring(L, shared_dict_strerror(rc));
        return 2;
    }
    switch (v.type) {
    case SD_NIL:
        lua_pushnil(L);
        break;
    case SD_BOOLEAN:
        lua_pushboolean(L, v.boolean);
        break;
    case SD_NUMBER:
        lua_pushnumber(L, v.number);
        break;
    case SD_STRING:
        lua_pushlstring(L, v.str, v.len);
        break;
    }
    free(v.heap);
    if (v.type != SD_NIL && v.flags) {
        lua_pushinteger(L, (lua_Integer)v.flags);
        return 2;
    }
    return 1;
}

static int dict_incr(lua_State *L) {
    struct shared_dict *d = check_dict(L);
    size_t klen;
    const char *key = check_key(L, &klen);
    double by = luaL_checknumber(L, 3);
    bool has_init = !lua_isnoneornil(L, 4);
    double init = has_init ? luaL_checknumber(L, 4) : 0;
    double init_ttl = opt_ttl(L, 5);
    double result = 0;
    bool forcible = false;
    int rc = shared_dict_incr(d, key, klen, by, has_init, init, init_ttl, &result, &forcible);
    if (rc != SD_OK) {
        lua_pushnil(L);
        lua_pushstring(L, shared_dict_strerror(rc));
        return 2;
    }
    lua_pushnumber(L, result);
    lua_pushnil(L);
    lua_pushboolean(L, forcible);
    return 3;
}

static int dict_delete(lua_State *L) {
    struct shared_dict *d = check_dict(L);
    size_t klen;
    const char *key = check_key(L, &klen);
    int rc = shared_dict_delete(d, key, klen);
    if (rc != SD_OK) luaL_argerror(L, 2, shared_dict_strerror(rc));
    return 0;
}

static int dict_capacity(lua_State *L) {
    lua_pushnumber(L, (lua_Number)shared_dict_capacity(check_dict(L)));
    return 1;
}

static int dict_free_space(lua_State *L) {
    lua_pushnumber(L, (lua_Number)shared_dict_free_space(check_dict(L)));
    return 1;
}

static int dict_name(lua_State *L) {
    size_t len;
    const char *name = shared_dict_name(check_dict(L), &len);
    lua_pushlstring(L, name, len);
    return 1;
}

static const luaL_Reg dict_methods[] = {
    {"get", dict_get},           {"set", dict_set},
    {"safe_set", dict_safe_set}, {"add", dict_add},
    {"safe_add", dict_safe_add}, {"replace", dict_replace},
    {"incr", dict_incr},         {"delete", dict_delete},
    {"capacity", dict_capacity}, {"free_space", dict_free_space},
    {"name", dict_name},         {NULL, NULL},
};

void pdk_shared_push(lua_State *L, struct shared_dict *const *dicts, size_t n) {
    if (luaL_newmetatable(L, DICT_META)) {
        lua_newtable(L);
        luaL_register(L, NULL, dict_methods);
        lua_setfield(L, -2, "__index");
        lua_pushliteral(L, "weir.shared dictionary");
        lua_setfield(L, -2, "__metatable"); /* plugins cannot swap the methods */
    }
    lua_pop(L, 1);
    lua_createtable(L, 0, (int)n);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *name = shared_dict_name(dicts[i], &len);
        struct shared_dict **ud = lua_newuserdata(L, sizeof *ud);
        *ud = dicts[i];
        luaL_getmetatable(L, DICT_META);
        lua_setmetatable(L, -2);
        lua_pushlstring(L, name, len);
        lua_insert(L, -2);
        lua_rawset(L, -3);
    }
}
