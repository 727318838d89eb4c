/* pdk_shared: weir.shared, the Lua face of shared_dict (gateway/lua/shared_dict.h).
 *
 * pdk_shared_push() pushes a table mapping each dictionary's name to an object with OpenResty's
 * ngx.shared.DICT methods and return values, so plugin code written for OpenResty reads the same:
 *   d:get(k)                    -> value, flags (flags only when not 0) | nil, err
 *   d:set(k, v, ttl?, flags?)   -> true, nil, forcible | false, err, forcible
 *   d:add / d:replace / d:safe_set / d:safe_add  (same results; add fails with "exists",
 *                                 replace with "not found", the safe_ ones never evict)
 *   d:incr(k, by, init?, init_ttl?) -> new value, nil, forcible | nil, err
 *   d:delete(k)                 -> nothing
 *   d:capacity(), d:free_space(), d:name()
 * Keys are strings (numbers are converted, as in OpenResty); values are nil, booleans, numbers or
 * strings; anything else raises a Lua error naming the argument. The dictionaries must outlive
 * every Lua state they are pushed into; any worker's state may hold them at once (the
 * dictionaries are thread-safe). */
#ifndef WEIR_PDK_SHARED_H
#define WEIR_PDK_SHARED_H

#include <lua.h>
#include <stddef.h>

#include "lua/shared_dict.h"

void pdk_shared_push(lua_State *L, struct shared_dict *const *dicts, size_t n);

#endif
