/* lua_watchdog: arms the instruction-budget hook only on Lua code that runs long.
 *
 * LuaJIT's count hook makes the interpreter go through a check on every VM instruction, which
 * cost a policy route (jwt, rate-limiting, url-rewrite) a sixth of its instructions, though
 * nearly every phase call ends within microseconds. So plugin code runs without the hook, and a
 * worker marks the stretches when its thread runs Lua (lua_watch_enter/leave: a few plain stores).
 * One process-wide thread looks every LUA_WATCH_PERIOD_MS; a thread it finds inside the same
 * stretch twice in a row gets a signal, whose handler calls the `arm` function given to
 * lua_watchdog_start() on that thread (lua_vm.c: it sets the count hook; lua_sethook may be
 * called from a signal handler, as LuaJIT's own profiler does). The budget is therefore charged
 * from the moment a call has run between one and two periods; calls that end sooner pay nothing.
 *
 * The handler runs `arm` only while the interrupted thread is inside a stretch, and enter/leave
 * nest (a stretch ends at the outermost leave). Threads register on their first enter and stay
 * registered until lua_watchdog_stop(), which must come after they are joined. */
#ifndef WEIR_LUA_WATCHDOG_H
#define WEIR_LUA_WATCHDOG_H

#include <stdbool.h>

#define LUA_WATCH_PERIOD_MS 10

/* Starts the watching thread and installs the signal handler; `arm` runs on a thread found in
 * one stretch for a whole period. Returns 0, or -1 with errno. */
int lua_watchdog_start(void (*arm)(void));
/* Stops and joins the watching thread and forgets every registered thread. */
void lua_watchdog_stop(void);

/* The calling thread starts (or nests) a stretch of Lua. */
void lua_watch_enter(void);
/* Ends the innermost stretch; true when that ended the outermost one. */
bool lua_watch_leave(void);

#endif
