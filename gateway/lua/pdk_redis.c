#include "lua/pdk_redis.h"
void pdk_redis_register(lua_State *L, int weir) {
    (void)L;
    (void)weir;
}
