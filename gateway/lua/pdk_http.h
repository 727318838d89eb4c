/* pdk_http: placeholder, being written. */
#ifndef WEIR_PDK_HTTP_H
#define WEIR_PDK_HTTP_H
#include <lua.h>
void pdk_http_register(lua_State *L, int weir);
#endif
