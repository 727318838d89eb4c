/* pdk_re: weir.re, PCRE2 regular expressions with OpenResty's ngx.re semantics.
 *
 * pdk_re_push() pushes a table of functions that read like ngx.re, so plugin code written for
 * OpenResty ports unchanged:
 *   match(subject, regex, options?, init?, res?)   -> captures | nil | nil, err
 *   find(subject, regex, options?, init?, nth?)    -> from, to | nil | nil, nil, err
 *   gmatch(subject, regex, options?)               -> iterator (-> captures | nil | nil, err)
 *                                                     | nil, err
 *   sub(subject, regex, replace, options?)         -> new_subject, n | nil, nil, err
 *   gsub(subject, regex, replace, options?)        (every match; same results)
 * Captures: m[0] is the whole match, m[1].. the groups, named groups also by name; a group that
 * did not take part is false. With option D a name maps to the list of its matched groups.
 * init is a 1-based start (<= 0 means 1) or, as in OpenResty, a ctx table whose pos field is read
 * and, on a match, set to just past it. replace is a template ("$0", "$1", "${1}", "$name",
 * "${name}", "$$" for "$"; a group the pattern lacks or that did not match expands to "") or a
 * function given the captures and returning a string or number.
 * Options: a anchored, i caseless, m multiline, s dotall, x extended, u UTF-8 (subject checked),
 * U UTF-8 unchecked (invalid sequences never match), D duplicate names, J JavaScript-compatible;
 * j and o are accepted and change nothing, since every regex is JIT-compiled and cached. Any other
 * letter, or an argument of the wrong type, raises a Lua error.
 *
 * Compiled regexes are cached per pushed table (so per lua_State), keyed by pattern and options,
 * at most PDK_RE_CACHE_ENTRIES of them, the least recently used evicted first. Every match runs
 * under a match limit, a depth limit and a bounded JIT stack, so a pathological pattern returns
 * nil plus pcre2's message (e.g. "match limit exceeded") instead of stalling the worker. The
 * cache is a userdata upvalue of the functions: lua_close() (or collecting the table) frees every
 * pcre2 object. The functions may only run on the thread that owns the lua_State. */
#ifndef WEIR_PDK_RE_H
#define WEIR_PDK_RE_H

#include <lua.h>

#define PDK_RE_CACHE_ENTRIES 1024

/* Pushes a new weir.re table onto L's stack. Raises a Lua error when out of memory. */
void pdk_re_push(lua_State *L);

#endif
