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
 * Options: url (http or https, path and query percent-encoded), method (a token, default GET;
 * not CONNECT), headers (name -> string, number or array of them; the framing and hop-by-hop
 * fields are weir.http's own), body, timeout (ms, 1..3600000, default 10000), max_body (bytes,
 * 0..1 GiB, default 10 MiB), ssl_verify (default true) and ssl_ca_file. The request head is
 * built here, in the VM's memory; Host and User-Agent are added unless given.
 *
 * Per VM, that is per worker (created at install, freed by lua_vm_on_close): one http_client
 * (gateway/upstream/http_client.h), whose header describes the resolver, TLS, the keep-alive
 * pool, the timeout and how responses are read. A task that is finished while it waits (client
 * gone, worker stopping) cancels its request. Worker thread only. */
#ifndef WEIR_PDK_HTTP_H
#define WEIR_PDK_HTTP_H

#include <lua.h>

/* Sets weir.http (with `request`) on the `weir` table at stack index `weir`. */
void pdk_http_register(lua_State *L, int weir);

#endif
