/* pdk_http: weir.http.request, an HTTP/1.1 client for plugins on the worker's event loop.
 *
 *   local res, err = weir.http.request{url = "https://api.example/v1?q=1", method = "POST",
 *                                      headers = {...}, body = "...", timeout = 5000}
 *
 * The calling task waits (lua_task.h) while the worker serves others; the result is
 * {status, headers, body} or nil and an error string. What the network or the server does
 * (refused, timed out, unresolvable, malformed or too large) is returned as an error; what only
 * the plugin can get wrong (an unknown option, a header name that is not a token, a value with
 * CR, LF or NUL) raises a Lua error, so no request ever carries injected header lines.
 *
 * Per VM, that is per worker (created at install, filled on first use, freed by lua_vm_on_close):
 * an evdns resolver (names are never looked up with a blocking call), one SSL_CTX that verifies
 * against the system CA bundle, the CA stores loaded for `ssl_ca_file`, and a bounded set of idle
 * keep-alive connections keyed by scheme, host, port and TLS settings. Worker thread only. */
#ifndef WEIR_PDK_HTTP_H
#define WEIR_PDK_HTTP_H

#include <lua.h>

/* Sets weir.http (with `request`) on the `weir` table at stack index `weir`. */
void pdk_http_register(lua_State *L, int weir);

#endif
