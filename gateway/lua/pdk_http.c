#include "lua/pdk_http.h"
void pdk_http_register(lua_State *L, int weir) {
    (void)L;
    (void)weir;
}
