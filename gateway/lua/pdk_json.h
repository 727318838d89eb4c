/* pdk_json: weir.json, and the conversions between jansson values and Lua values that every
 * binding handing JSON to plugins (configs, bodies) goes through.
 *
 * The mapping follows lua-cjson, so plugin code written for OpenResty reads the same:
 *   object  <-> table with string keys            array <-> table with keys 1..n
 *   null    <-> weir.json.null, a light userdata holding NULL (the same value as cjson.null)
 *   number  <-> number (integral values that fit in int64 are JSON integers, others reals)
 * A decoded array carries the array marker metatable (weir.json.array_mt) so that it encodes
 * back as an array even when it is empty; an unmarked empty table encodes as {}. The marker
 * lives in the registry under PDK_JSON_ARRAY_MT, so it is one table per lua_State however many
 * times the module is pushed.
 *
 * Everything here works on one lua_State and is called from the thread that owns it. */
#ifndef WEIR_PDK_JSON_H
#define WEIR_PDK_JSON_H

#include <jansson.h>
#include <lua.h>
#include <stddef.h>

/* Registry field holding the array marker metatable (created on first use). */
#define PDK_JSON_ARRAY_MT "weir.json.array_mt"
/* Tables nested deeper than this do not encode (this is also what stops cycles early). */
#define PDK_JSON_MAX_DEPTH 100

/* Pushes v as a Lua value. The caller keeps its reference to v. v must be acyclic, as any value
 * from the parser is, whose depth limit (2048) also keeps the Lua stack within bounds. Raises a
 * Lua error only when Lua itself runs out of memory, like any lua_push*. */
void pdk_json_push(lua_State *L, const json_t *v);

/* The Lua value at idx as JSON (a new reference the caller owns), or NULL with a message in err
 * (truncated to errlen) when it cannot be encoded: a table that contains itself or nests deeper
 * than PDK_JSON_MAX_DEPTH, a function, thread, cdata or userdata other than weir.json.null, NaN
 * or infinity, a string that is not UTF-8, a table key that is neither a string nor a number, or
 * an excessively sparse array. Tables are read raw: metamethods never run. Leaves the stack as
 * it found it and raises no Lua error (short of Lua running out of memory). */
json_t *pdk_json_from_lua(lua_State *L, int idx, char *err, size_t errlen);

/* Pushes the weir.json table:
 *   encode(value)  -> string | nil, err   compact; UTF-8 passes through unescaped; reals get
 *                                         the fewest significant digits (15 to 17, one choice
 *                                         per call) that read back as the same numbers; object
 *                                         keys come out in table traversal order
 *   decode(string) -> value | nil, err    err is jansson's message "... at line L column C"; any
 *                                         JSON value is accepted at the top level, trailing
 *                                         garbage is not; duplicate keys are allowed and the
 *                                         last one wins, as in cjson; "\u0000" decodes to a NUL
 *                                         byte in a string (jansson refuses it in an object
 *                                         key); every number decodes as a Lua number (integers
 *                                         beyond 2^53 lose precision, as in cjson)
 *   null           the null sentinel
 *   array_mt       the array marker: setmetatable({}, weir.json.array_mt) encodes as []
 *   empty_array    a table carrying array_mt (shared: do not add elements to it) */
void pdk_json_push_module(lua_State *L);

#endif
