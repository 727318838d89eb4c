/* weir.ctx, weir.log, weir.time, weir.sleep and weir.timer.
 *
 * weir.ctx.shared is one table per request that every plugin sees; weir.ctx.plugin is one table
 * per request and plugin. weir.log.<level>(...) writes its arguments (tostring'd, concatenated)
 * to the error log prefixed with the plugin and the request id. weir.sleep(seconds) waits on
 * the worker's loop. weir.timer.at(delay, fn, ...) runs fn(premature, ...) later in its own task
 * (where it may wait, but has no request); a VM holds at most MAX_TIMERS pending timers, and
 * timers pending when the worker stops are dropped, never run. */
#include <event2/event.h>
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "core/log.h"
#include "http/client_conn.h"
#include "lua/lua_task.h"
#include "lua/pdk.h"
#include "lua/plugin_chain.h"
#include "lua/plugin_run.h"

#define MAX_TIMERS 10000

/* ---- weir.ctx -------------------------------------------------------------------------------- */

/* The request's context table holds weir.ctx.shared at [1] and each plugin's weir.ctx.plugin
 * under its name, every one made on first use: most requests touch one of them, and each
 * table made is a measurable part of a short plugin call. */
static int ctx_index(lua_State *L) {
    const char *key = luaL_checkstring(L, 2);
    bool shared = !strcmp(key, "shared");
    if (!shared && strcmp(key, "plugin") != 0) return 0;
    struct plugin_run *run = plugin_run_current(L, "weir.ctx");
    const char *plugin = shared ? NULL : run->task.plugin;
    if (!shared && !plugin) return luaL_error(L, "weir.ctx.plugin: no plugin is running");
    if (run->ctx_ref == LUA_NOREF) {
        lua_createtable(L, 1, 1);
        run->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, run->ctx_ref);
    if (shared)
        lua_rawgeti(L, -1, 1);
    else
        lua_getfield(L, -1, plugin);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        if (shared)
            lua_rawseti(L, -3, 1);
        else
            lua_setfield(L, -3, plugin);
    }
    return 1;
}

static int ctx_newindex(lua_State *L) {
    return luaL_error(L, "weir.ctx: store values in weir.ctx.shared or weir.ctx.plugin");
}

/* ---- weir.plugin ----------------------------------------------------------------------------- */

/* The running instance: its id (stable: derived from the plugin's name and scope) and scope, so
 * that a plugin can keep state per instance (rate-limiting counters, as Kong keys them). */
static const struct plugin_instance *running_instance(lua_State *L, const char *what) {
    struct plugin_run *run = plugin_run_current(L, what);
    if (!run->instance) luaL_error(L, "%s: no plugin instance is running", what);
    return run->instance;
}

static int plugin_get_id(lua_State *L) {
    lua_pushstring(L, running_instance(L, "weir.plugin.get_id")->id);
    return 1;
}

static void set_or_nil(lua_State *L, const char *key, const char *value) {
    if (!value) return;
    lua_pushstring(L, value);
    lua_setfield(L, -2, key);
}

/* {route = id, service = id, consumer = id}: the ids the instance is scoped to (absent: any). */
static int plugin_get_scope(lua_State *L) {
    const struct plugin_instance *p = running_instance(L, "weir.plugin.get_scope");
    lua_createtable(L, 0, 3);
    set_or_nil(L, "route", p->route_id);
    set_or_nil(L, "service", p->service_id);
    set_or_nil(L, "consumer", p->consumer_id);
    return 1;
}

/* ---- weir.worker ----------------------------------------------------------------------------- */

/* id(): this worker's number (0 to workers - 1); pid(): the process id, the same for every worker
 * (workers are threads of one process), as ngx.worker.pid() for Kong's correlation-id tracker. */
static int worker_id_fn(lua_State *L) {
    struct lua_vm *vm = lua_vm_self();
    lua_pushinteger(L, vm ? vm->worker_id : 0);
    return 1;
}

static int worker_pid_fn(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

/* ---- weir.log -------------------------------------------------------------------------------- */

static int log_at(lua_State *L, enum log_level level) {
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    struct lua_task *t = lua_task_current(L);
    lua_getglobal(L, "tostring");
    int tostring = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        lua_pushvalue(L, tostring);
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    const char *msg = lua_tostring(L, -1);
    const char *plugin = t && t->plugin ? t->plugin : "lua";
    struct plugin_run *run = t && t->for_request ? t->owner : NULL;
    if (run)
        log_msg(level, "[%s] %s (request %s)", plugin, msg, run->c->req.request_id);
    else
        log_msg(level, "[%s] %s", plugin, msg);
    return 0;
}

static int log_err_fn(lua_State *L) {
    return log_at(L, LOG_LEVEL_ERROR);
}
static int log_warn_fn(lua_State *L) {
    return log_at(L, LOG_LEVEL_WARN);
}
static int log_notice_fn(lua_State *L) {
    return log_at(L, LOG_LEVEL_NOTICE);
}
static int log_info_fn(lua_State *L) {
    return log_at(L, LOG_LEVEL_INFO);
}
static int log_debug_fn(lua_State *L) {
    return log_at(L, LOG_LEVEL_DEBUG);
}

/* ---- weir.time ------------------------------------------------------------------------------- */

static int time_now(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)(ts.tv_nsec / 1000000) / 1000.0);
    return 1;
}

static int time_monotonic_ms(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec * 1000.0 + (lua_Number)ts.tv_nsec / 1e6);
    return 1;
}

/* ---- weir.sleep ------------------------------------------------------------------------------ */

struct sleeper {
    struct event *ev;
    struct lua_task *task;
};

static void sleep_cancel(void *op) {
    struct sleeper *s = op;
    event_free(s->ev);
    free(s);
}

static void sleep_fired(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct sleeper *s = arg;
    struct lua_task *t = s->task;
    sleep_cancel(s);
    lua_task_wake(t, NULL, NULL);
}

static struct timeval tv_of(lua_State *L, int idx, const char *what) {
    lua_Number secs = luaL_checknumber(L, idx);
    if (!(secs >= 0) || secs > 31536000) luaL_error(L, "%s: seconds must be 0 to 31536000", what);
    struct timeval tv = {(time_t)secs, (suseconds_t)((secs - floor(secs)) * 1e6)};
    return tv;
}

static int weir_sleep(lua_State *L) {
    struct timeval tv = tv_of(L, 1, "weir.sleep");
    struct lua_task *t = lua_task_waitable(L);
    struct sleeper *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->task = t;
    s->ev = evtimer_new(t->vm->base, sleep_fired, s);
    if (!s->ev) abort();
    evtimer_add(s->ev, &tv);
    return lua_task_wait(L, t, sleep_cancel, s);
}

/* ---- weir.timer ------------------------------------------------------------------------------ */

struct pdk_timer {
    struct lua_task task; /* first: the task's owner is the timer */
    struct event *ev;
    struct lua_vm *vm;
    int args_ref; /* {fn, n = count, args...} */
    struct pdk_timer *prev, *next;
};

static void timer_free(struct pdk_timer *tm) {
    struct lua_vm *vm = tm->vm;
    if (tm->prev)
        tm->prev->next = tm->next;
    else
        vm->timers = tm->next;
    if (tm->next) tm->next->prev = tm->prev;
    vm->n_timers--;
    lua_task_finish(&tm->task);
    luaL_unref(tm->vm->L, LUA_REGISTRYINDEX, tm->args_ref);
    event_free(tm->ev);
    free(tm);
}

static void timer_done(struct lua_task *t, enum lua_task_result r) {
    struct pdk_timer *tm = (struct pdk_timer *)t;
    if (r == LUA_TASK_ERROR) log_err("timer failed: %s", t->error);
    timer_free(tm);
}

static void timer_fired(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct pdk_timer *tm = arg;
    lua_State *L = tm->vm->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, tm->args_ref);
    int args = lua_gettop(L);
    lua_getfield(L, args, "n");
    int n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_rawgeti(L, args, 1); /* fn */
    lua_pushboolean(L, 0);   /* premature */
    for (int i = 0; i < n; i++)
        lua_rawgeti(L, args, i + 2);
    lua_remove(L, args);
    tm->task.phase = "timer";
    enum lua_task_result r = lua_task_call(&tm->task, n + 1);
    if (r != LUA_TASK_WAITING) timer_done(&tm->task, r);
}

static int timer_at(lua_State *L) {
    struct timeval tv = tv_of(L, 1, "weir.timer.at");
    luaL_checktype(L, 2, LUA_TFUNCTION);
    struct lua_vm *vm = lua_vm_self();
    if (!vm) return luaL_error(L, "weir.timer.at: no VM on this thread");
    if (vm->n_timers >= MAX_TIMERS) {
        lua_pushnil(L);
        lua_pushliteral(L, "too many pending timers");
        return 2;
    }
    int n = lua_gettop(L) - 2;
    lua_createtable(L, n + 1, 1);
    for (int i = 2; i <= n + 2; i++) {
        lua_pushvalue(L, i);
        lua_rawseti(L, -2, i - 1);
    }
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
    struct pdk_timer *tm = calloc(1, sizeof *tm);
    if (!tm) abort();
    tm->args_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    tm->vm = vm;
    lua_task_init(&tm->task, vm, tm, timer_done);
    tm->ev = evtimer_new(vm->base, timer_fired, tm);
    if (!tm->ev) abort();
    tm->next = vm->timers;
    if (vm->timers) vm->timers->prev = tm;
    vm->timers = tm;
    vm->n_timers++;
    evtimer_add(tm->ev, &tv);
    lua_pushboolean(L, 1);
    return 1;
}

void pdk_base_close(struct lua_vm *vm) {
    while (vm->timers)
        timer_free(vm->timers);
}

/* ---- registration ---------------------------------------------------------------------------- */

static void set_fn(lua_State *L, const char *name, lua_CFunction f) {
    lua_pushcfunction(L, f);
    lua_setfield(L, -2, name);
}

void pdk_base_register(lua_State *L, int weir) {
    lua_newtable(L); /* weir.ctx: its fields are per request */
    lua_createtable(L, 0, 3);
    set_fn(L, "__index", ctx_index);
    set_fn(L, "__newindex", ctx_newindex);
    lua_pushliteral(L, "weir.ctx");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_setfield(L, weir, "ctx");

    lua_newtable(L);
    set_fn(L, "err", log_err_fn);
    set_fn(L, "warn", log_warn_fn);
    set_fn(L, "notice", log_notice_fn);
    set_fn(L, "info", log_info_fn);
    set_fn(L, "debug", log_debug_fn);
    lua_setfield(L, weir, "log");

    lua_newtable(L);
    set_fn(L, "now", time_now);
    set_fn(L, "monotonic_ms", time_monotonic_ms);
    lua_setfield(L, weir, "time");

    lua_pushcfunction(L, weir_sleep);
    lua_setfield(L, weir, "sleep");

    lua_newtable(L);
    set_fn(L, "at", timer_at);
    lua_setfield(L, weir, "timer");

    lua_newtable(L);
    set_fn(L, "get_id", plugin_get_id);
    set_fn(L, "get_scope", plugin_get_scope);
    lua_setfield(L, weir, "plugin");

    lua_newtable(L);
    set_fn(L, "id", worker_id_fn);
    set_fn(L, "pid", worker_pid_fn);
    lua_setfield(L, weir, "worker");
}
