/* spec_native: the C half of `require "weir.test"` (lua/weir/test.lua) in a spec file's Lua state.
 *
 * spec_native_install() makes `require "weir.test.native"` return a table of
 *   request(port, method, target, headers, body, timeout_s) -> status, headers, body
 *       one blocking HTTP/1.1 exchange with 127.0.0.1:port on a fresh connection: `headers` is an
 *       array of {name, value} sent as given (the caller adds Host, Content-Length, Connection),
 *       the answer's headers come back the same way, in order. Raises an error naming what
 *       failed (connect, timeout, a malformed response, a response over 64 MiB); a name, value,
 *       method or target holding CR or LF is refused.
 *   now() -> seconds (monotonic clock, fractional)      sleep(seconds)
 *   json                      weir.json (encode, decode, null, array_mt, empty_array)
 *   proxy_port, admin_port, upstream_port, error_log, root   where the run's parts are
 * The state is an ordinary LuaJIT state on the thread that runs specs; nothing here touches the
 * gateway's own state: specs reach it over sockets only, as a client would. */
#ifndef WEIR_SPEC_NATIVE_H
#define WEIR_SPEC_NATIVE_H

#include <lua.h>

struct spec_env {
    int proxy_port, admin_port, upstream_port;
    const char *error_log; /* the gateway's error log file */
    const char *root;      /* the plugin root under test */
};

/* `env`'s strings are copied. */
void spec_native_install(lua_State *L, const struct spec_env *env);

#endif
