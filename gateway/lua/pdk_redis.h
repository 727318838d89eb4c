/* pdk_redis: weir.redis, Redis for plugins over the worker's shared connections
 * (gateway/redis/redis_client.h: pooling, pipelining, timeouts and bounds are described there).
 *
 *   local red = weir.redis.connect{host = "10.0.0.5", port = 6379, password = nil, db = 0,
 *                                  timeout = 1000, pool_size = 4, pool = nil}
 *   local n, err = red:call("INCR", "hits")
 *   local v, err = red:eval("return redis.call('GET', KEYS[1])", {"k"}, {})
 *
 * connect() does no I/O and cannot fail: it returns a client object, and the first command opens
 * a connection if the worker has none for that target. Connections are shared by every client of
 * the worker with the same host, port, password, db and pool name (an optional label for
 * keeping blocking commands away from the others); pool_size (1..64, default 4) caps how many
 * connections this client's commands may open for the target; timeout (ms, 1..600000, default
 * 1000) bounds each command, and the connect its command has to wait for. host is a name, an
 * address or "unix:/path"; port defaults to 6379. An unknown option or a value out of range
 * raises a Lua error.
 *
 * client:call(name, ...) sends one command; arguments are strings or numbers (integral numbers
 * are sent without exponent or fraction). client:eval(script, keys, args) sends EVALSHA with the
 * script's SHA1 (cached per worker) and, when the server answers NOSCRIPT, EVAL once. Results:
 *   status reply  -> string ("OK")          integer -> number
 *   bulk string   -> string                 nil bulk or nil array -> weir.redis.null
 *   array         -> table 1..n (nested)    error element inside an array -> {false, "ERR ..."}
 *   error reply   -> nil, the server's message as sent ("ERR ...", "WRONGTYPE ...")
 *   no reply      -> nil, err: "timeout", "too many pending commands", "connect failed: ...",
 *                    "connection lost: ...", "AUTH failed: ...", "reply too large ...", ...
 * weir.redis.null is the light userdata NULL, the same value as weir.json.null (so it encodes
 * as JSON null); it is truthy in Lua, so test `v == weir.redis.null`. Integers beyond 2^53
 * lose precision as Lua numbers: return them as strings from a script when that matters.
 * Commands that would change a shared connection's state (MULTI/EXEC, SELECT, AUTH,
 * SUBSCRIBE, MONITOR, CLIENT REPLY, QUIT, ...) return nil and the reason; use eval for atomic
 * work. Both methods wait (the request's coroutine yields, the worker serves others): they
 * work where waiting is allowed (rewrite, access, response, timers), and raise a Lua error in
 * the log phase, as every waiting PDK function does. Wrong argument types raise Lua errors.
 *
 * Per VM (a worker's; a retired VM keeps its own until it is freed): the connection pool,
 * created at install and freed by lua_vm_on_close, and the SHA1 cache (up to 256 scripts, then
 * started afresh). Worker thread only. */
#ifndef WEIR_PDK_REDIS_H
#define WEIR_PDK_REDIS_H

#include <lua.h>

/* Sets weir.redis (connect, null) on the `weir` table at stack index `weir`. */
void pdk_redis_register(lua_State *L, int weir);

#endif
