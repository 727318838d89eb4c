/* pdk_redis: placeholder, being written. */
#ifndef WEIR_PDK_REDIS_H
#define WEIR_PDK_REDIS_H
#include <lua.h>
void pdk_redis_register(lua_State *L, int weir);
#endif
