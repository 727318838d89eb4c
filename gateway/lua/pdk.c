#include "lua/pdk.h"

#include <lauxlib.h>

#include "lua/pdk_codec.h"
#include "lua/pdk_http.h"
#include "lua/pdk_redis.h"
#include "lua/pdk_json.h"
#include "lua/pdk_jwt.h"
#include "lua/pdk_re.h"
#include "lua/pdk_shared.h"
#include "lua/pdk_zlib.h"

void pdk_push_json(lua_State *L, const json_t *v) {
    pdk_json_push(L, v);
}

void pdk_push_json_array_mt(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, PDK_JSON_ARRAY_MT);
}

void pdk_install(lua_State *L, struct shared_dict *const *dicts, size_t n_dicts) {
    lua_newtable(L);
    int weir = lua_gettop(L);
    pdk_request_register(L, weir);
    pdk_service_register(L, weir);
    pdk_response_register(L, weir);
    pdk_base_register(L, weir);
    pdk_shared_push(L, dicts, n_dicts);
    lua_setfield(L, weir, "shared");
    pdk_json_push_module(L);
    lua_setfield(L, weir, "json");
    pdk_re_push(L);
    lua_setfield(L, weir, "re");
    pdk_jwt_push(L);
    lua_setfield(L, weir, "jwt");
    pdk_codec_register(L, weir);
    pdk_redis_register(L, weir);
    pdk_http_register(L, weir);
    pdk_zlib_register(L, weir);
    lua_setglobal(L, "weir");
}
