/* pdk_zlib: weir.zlib, gzip and zlib for plugins that change compressed bodies.
 *
 * pdk_zlib_register() sets `zlib` on the table at stack index `weir` (an absolute index):
 *   zlib.inflate(data, max_bytes?) -> the decompressed bytes (gzip or zlib, detected), or nil and
 *                                     "not gzip or zlib data" | "truncated" | "too large" (past
 *                                     max_bytes, default 8 MiB, at most 1 GiB: no zip bombs)
 *   zlib.deflate(data, format?)    -> data compressed as "gzip" (default) or "zlib"
 * Stateless; may be registered into any number of lua_States. */
#ifndef WEIR_PDK_ZLIB_H
#define WEIR_PDK_ZLIB_H

#include <lua.h>

void pdk_zlib_register(lua_State *L, int weir);

#endif
