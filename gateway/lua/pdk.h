/* pdk: the `weir` table plugins call, assembled from one binding file per namespace.
 *
 *   weir.request, weir.client, weir.router   pdk_request.c  (the client's request, read-only)
 *   weir.service                             pdk_service.c  (the upstream request, changed)
 *   weir.response                            pdk_response.c (status, headers, exit)
 *   weir.ctx, weir.log, weir.time, weir.sleep, weir.timer   pdk_base.c
 *   weir.shared                              pdk_shared.c
 *   weir.json                                pdk_json.c
 *   weir.re                                  pdk_re.c
 *
 * pdk_install() runs once per VM (lua_vm_new), on the worker's thread. Functions that need the
 * request raise a Lua error when called outside a plugin's phase (plugin_run_current()). */
#ifndef WEIR_PDK_H
#define WEIR_PDK_H

#include <jansson.h>
#include <lua.h>
#include <stddef.h>

struct shared_dict;
struct lua_vm;

void pdk_install(lua_State *L, struct shared_dict *const *dicts, size_t n_dicts);

/* JSON for the runtime: a value as Lua (arrays marked), and the array marker. */
void pdk_push_json(lua_State *L, const json_t *v);
void pdk_push_json_array_mt(lua_State *L);

struct http_header;
/* A query string's arguments as ngx.req.get_uri_args() gives them (at most max_args; 0: all). */
void pdk_push_args(lua_State *L, const char *query, size_t len, int max_args);
/* Header fields as a table: lower-case name -> value, or an array for a repeated name; any
 * spelling of a name ("Content_Type") reads it. At most max (0: all). */
void pdk_push_headers(lua_State *L, const struct http_header *hs, size_t n, int max);
struct hlist;
/* The same table from a header list (plugin_run.h: the upstream request's or the
 * response's fields as plugins left them). Borrows `l`; the caller still frees it. */
void pdk_push_hlist(lua_State *L, const struct hlist *l, int max);

/* Each namespace's registration: sets its fields on the `weir` table at stack index `weir`. */
void pdk_request_register(lua_State *L, int weir);
void pdk_service_register(lua_State *L, int weir);
void pdk_response_register(lua_State *L, int weir);
void pdk_base_register(lua_State *L, int weir);
/* Timers still pending when the VM closes are dropped (their functions never run). */
void pdk_base_close(struct lua_vm *vm);

#endif
