#include "lua/lua_vm.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/snapshot.h"
#include "core/log.h"
#include "core/paths.h"
#include "lua/lua_task.h"
#include "lua/lua_watchdog.h"
#include "lua/pdk.h"
#include "lua/plugin_catalog.h"
#include "lua/plugin_chain.h"

/* How often (in VM instructions) the budget hook runs; the budget is charged in these steps. */
#define HOOK_STEP 1000

static _Thread_local struct lua_vm *self;

static struct {
    struct shared_dict *const *dicts;
    size_t n;
} shared;

void lua_vm_set_shared_dicts(struct shared_dict *const *dicts, size_t n) {
    shared.dicts = dicts;
    shared.n = n;
}

struct lua_vm *lua_vm_self(void) {
    return self;
}

struct lua_vm *lua_vm_switch(struct lua_vm *vm) {
    struct lua_vm *prev = self;
    self = vm;
    return prev;
}

bool lua_vm_after_memory_error(struct lua_vm *vm) {
    if (!vm->mem_failed || vm->retired) return vm->retired;
    vm->mem_failed = false;
    bool enforced = vm->mem_enforced;
    vm->mem_enforced = false;
    lua_gc(vm->L, LUA_GCCOLLECT, 0);
    vm->mem_enforced = enforced;
    if (vm->mem_used > vm->mem_limit / 4 * 3) {
        vm->retired = true;
        log_err("worker %d: the Lua VM holds %zu of its %zu bytes (weir.lua.memory_limit) even "
                "after a full collection: a plugin leaks; new requests get a fresh VM (state "
                "plugins kept in Lua, such as module-level tables, starts over)",
                vm->worker_id, vm->mem_used, vm->mem_limit);
    }
    return vm->retired;
}

/* ---- memory and instruction limits --------------------------------------------------------- */

static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    struct lua_vm *vm = ud;
    if (nsize == 0) {
        free(ptr);
        vm->mem_used -= osize;
        return NULL;
    }
    size_t old = ptr ? osize : 0;
    /* only plugin code is refused memory: C pushing a result must never fail half-way */
    if (nsize > old && vm->mem_enforced && vm->mem_used - old + nsize > vm->mem_limit) {
        vm->mem_failed = true;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p) return NULL;
    vm->mem_used = vm->mem_used - old + nsize;
    return p;
}

static void budget_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    struct lua_vm *vm = self;
    if (!vm || !vm->budget_left) return;
    *vm->budget_left -= HOOK_STEP;
    if (*vm->budget_left >= 0) return;
    /* From now on every instruction raises, so a plugin's pcall cannot swallow it and go on:
     * the error climbs to the task's xpcall. */
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, "instruction budget exceeded (%lld instructions; weir.lua.instruction_budget)",
               vm->budget);
}

/* The watchdog's signal, on this thread, inside a stretch of Lua that has run long: from now on
 * the budget is charged (lua_watchdog.h). */
static void arm_budget_hook(void) {
    struct lua_vm *vm = self;
    if (vm && vm->budget_left && !lua_gethookmask(vm->L))
        lua_sethook(vm->L, budget_hook, LUA_MASKCOUNT, HOOK_STEP);
}

int lua_vm_watchdog_start(void) {
    return lua_watchdog_start(arm_budget_hook);
}

void lua_vm_budget_begin(struct lua_vm *vm, long long *left) {
    vm->budget_left = vm->budget ? left : NULL;
    if (!vm->budget) return;
    vm->budget_depth++;
    lua_watch_enter();
}

void lua_vm_budget_end(struct lua_vm *vm) {
    if (vm->budget) {
        lua_watch_leave(); /* first: no arming after this */
        if (--vm->budget_depth == 0) {
            if (lua_gethookmask(vm->L)) lua_sethook(vm->L, NULL, 0, 0);
        } else if (lua_gethookmask(vm->L)) {
            /* an inner call that ran out left the every-instruction mode; the outer goes on */
            lua_sethook(vm->L, budget_hook, LUA_MASKCOUNT, HOOK_STEP);
        }
    }
    vm->budget_left = NULL;
}

/* ---- creation ------------------------------------------------------------------------------- */

/* Runs `code` at start-up (not plugin code: no budget, no memory limit). */
static bool run_boot(lua_State *L, const char *code, const char *name, char *err, size_t errlen) {
    if (luaL_loadbuffer(L, code, strlen(code), name) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return false;
    }
    return true;
}

void lua_vm_set_package_path(lua_State *L, const char *data_dir, char *const *roots,
                             size_t n_roots) {
    /* require finds the runtime (lua/), then modules beside each plugin root ("plugins.x.y") */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s/?.lua", data_dir, data_dir, data_dir);
    luaL_addvalue(&b);
    for (size_t i = 0; i < n_roots; i++) {
        lua_pushfstring(L, ";%s/?.lua", roots[i]);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lua_getglobal(L, "package");
    lua_insert(L, -2);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
}

struct lua_vm *lua_vm_new(struct event_base *base, int worker_id, const struct snapshot *snap,
                          char *err, size_t errlen) {
    const struct weir_settings *ws = &snap->config->weir;
    struct lua_vm *vm = calloc(1, sizeof *vm);
    if (!vm) abort();
    vm->base = base;
    vm->worker_id = worker_id;
    vm->mem_limit = (size_t)ws->lua_memory_limit;
    vm->budget = ws->lua_instruction_budget;
    vm->L = lua_newstate(vm_alloc, vm);
    if (!vm->L) {
        snprintf(err, errlen, "cannot create a LuaJIT state");
        free(vm);
        return NULL;
    }
    self = vm;
    lua_State *L = vm->L;
    luaL_openlibs(L);
    lua_vm_set_package_path(L, paths_data_dir(), ws->plugin_paths, ws->n_plugin_paths);
    char boot[] = "return require('weir.runtime')";
    if (!run_boot(L, boot, "=weir", err, errlen)) {
        lua_vm_free(vm);
        return NULL;
    }
    lua_setfield(L, LUA_REGISTRYINDEX, "weir.runtime");
    pdk_install(L, shared.dicts, shared.n);
    vm->interpret_ref = LUA_NOREF;
    if (vm->budget) {
        /* Weir's own Lua compiled, plugins' code interpreted, where the budget's hook can stop
         * it (lua/weir/jit_guard.lua) */
        char guard[] = "return require('weir.jit_guard')";
        if (!run_boot(L, guard, "=weir", err, errlen)) {
            lua_vm_free(vm);
            return NULL;
        }
        lua_pushfstring(L, "%s/lua/", paths_data_dir());
        lua_pushfstring(L, "%s/plugins/", paths_data_dir());
        if (lua_pcall(L, 2, 1, 0) != 0) {
            snprintf(err, errlen, "%s", lua_tostring(L, -1));
            lua_vm_free(vm);
            return NULL;
        }
        vm->interpret_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_newtable(L);
    vm->threads_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getglobal(L, "xpcall"); /* looked up once: a plugin may not swap it under the runtime */
    vm->xpcall_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushcfunction(L, lua_task_traceback); /* one closure, not one per call */
    vm->traceback_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    vm->cache_ref[0] = vm->cache_ref[1] = LUA_NOREF;
    return vm;
}

struct lua_vm_closer {
    void (*fn)(void *arg);
    void *arg;
    struct lua_vm_closer *next;
};

void lua_vm_on_close(struct lua_vm *vm, void (*fn)(void *arg), void *arg) {
    struct lua_vm_closer *c = malloc(sizeof *c);
    if (!c) abort();
    *c = (struct lua_vm_closer){fn, arg, vm->closers};
    vm->closers = c;
}

void lua_vm_free(struct lua_vm *vm) {
    if (!vm) return;
    pdk_base_close(vm);
    while (vm->closers) {
        struct lua_vm_closer *c = vm->closers;
        vm->closers = c->next;
        c->fn(c->arg);
        free(c);
    }
    if (vm->L) lua_close(vm->L);
    if (self == vm) self = NULL;
    free(vm->free_slots);
    free(vm);
}

/* ---- threads -------------------------------------------------------------------------------- */

/* Threads live in numbered slots of one table, which anchors them; C keeps the free slot
 * numbers. Taking and giving back a clean thread touches no table but a read: no registry
 * references made and dropped per request. A thread that did not end cleanly is dropped (its
 * slot emptied, to be filled by a new thread later). */
lua_State *lua_vm_thread_take(struct lua_vm *vm, int *slot) {
    lua_State *L = vm->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->threads_ref);
    if (vm->n_free > 0) {
        *slot = vm->free_slots[--vm->n_free];
        lua_rawgeti(L, -1, *slot);
        lua_State *co = lua_tothread(L, -1);
        lua_pop(L, 1);
        if (co) {
            lua_pop(L, 1);
            return co;
        }
    } else {
        *slot = ++vm->n_slots;
    }
    lua_State *co = lua_newthread(L);
    lua_rawseti(L, -2, *slot);
    lua_pop(L, 1);
    return co;
}

void lua_vm_thread_give(struct lua_vm *vm, lua_State *co, int slot, bool clean) {
    lua_State *L = vm->L;
    if (clean && lua_status(co) == 0) {
        lua_settop(co, 0);
    } else {
        lua_rawgeti(L, LUA_REGISTRYINDEX, vm->threads_ref);
        lua_pushnil(L);
        lua_rawseti(L, -2, slot);
        lua_pop(L, 1);
    }
    if (vm->n_free == vm->cap_free) {
        vm->cap_free = vm->cap_free ? vm->cap_free * 2 : 64;
        vm->free_slots = realloc(vm->free_slots, (size_t)vm->cap_free * sizeof *vm->free_slots);
        if (!vm->free_slots) abort();
    }
    vm->free_slots[vm->n_free++] = slot;
}

/* ---- handlers and configs, per snapshot -------------------------------------------------- */

/* The cache table of `snap` ({handlers=, confs=, generation=}) on the stack: the current or the
 * previous snapshot's, or a new one that replaces the older of the two. */
static void push_cache(struct lua_vm *vm, const struct snapshot *snap) {
    lua_State *L = vm->L;
    for (int i = 0; i < 2; i++) {
        if (vm->cache_version[i] == snap->version) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, vm->cache_ref[i]);
            return;
        }
    }
    int slot = vm->cache_version[0] <= vm->cache_version[1] ? 0 : 1;
    int other = 1 - slot;
    uint64_t gen = snap->config->plugins ? snap->config->plugins->generation : 0;
    lua_createtable(L, 0, 3);
    lua_newtable(L);
    lua_setfield(L, -2, "confs");
    /* the same catalogue keeps its loaded handlers (admin changes do not reload plugin code) */
    bool shared_handlers = false;
    if (vm->cache_ref[other] != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, vm->cache_ref[other]);
        lua_getfield(L, -1, "generation");
        if ((uint64_t)lua_tonumber(L, -1) == gen) {
            lua_getfield(L, -2, "handlers");
            lua_setfield(L, -4, "handlers");
            shared_handlers = true;
        }
        lua_pop(L, 2);
    }
    if (!shared_handlers) {
        lua_newtable(L);
        lua_setfield(L, -2, "handlers");
    }
    lua_pushnumber(L, (lua_Number)gen);
    lua_setfield(L, -2, "generation");
    if (vm->cache_ref[slot] != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, vm->cache_ref[slot]);
    lua_pushvalue(L, -1);
    vm->cache_ref[slot] = luaL_ref(L, LUA_REGISTRYINDEX);
    vm->cache_version[slot] = snap->version;
}

/* Loads a handler.lua (run at most once per catalogue per VM); pushes the table or false. */
static void load_handler(struct lua_vm *vm, const struct plugin_def *def) {
    lua_State *L = vm->L;
    char chunk[4200];
    snprintf(chunk, sizeof chunk, "@%s", def->handler_path);
    struct lua_vm *prev = lua_vm_switch(vm);
    long long left = vm->budget, *outer = vm->budget_left;
    lua_vm_budget_begin(vm, &left);
    bool enforced = vm->mem_enforced;
    vm->mem_enforced = true;
    int rc = luaL_loadfile(L, def->handler_path);
    if (rc == 0 && !def->bundled && vm->interpret_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, vm->interpret_ref); /* interpreted: under the budget */
        lua_pushvalue(L, -2);
        rc = lua_pcall(L, 1, 0, 0);
    }
    if (rc == 0) rc = lua_pcall(L, 0, 1, 0);
    vm->mem_enforced = enforced;
    lua_vm_budget_end(vm);
    vm->budget_left = outer;
    lua_vm_switch(prev);
    if (rc != 0 || !lua_istable(L, -1)) {
        log_err("plugin %s: cannot load %s in worker %d: %s", def->name, def->handler_path,
                vm->worker_id, rc ? lua_tostring(L, -1) : "it did not return a table");
        lua_pop(L, 1);
        lua_pushboolean(L, 0);
    }
}

static bool push_plugin_slow(struct lua_vm *vm, const struct snapshot *snap, size_t idx);

static int call_freeze(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, "weir.runtime");
    lua_getfield(L, -1, "freeze");
    lua_pushvalue(L, 1);
    pdk_push_json_array_mt(L);
    lua_call(L, 2, 1);
    return 1;
}

/* Pushes a JSON value as a read-only Lua value; nil (after logging) when memory runs out. */
void lua_vm_push_frozen(struct lua_vm *vm, lua_State *L, const struct json_t *v) {
    struct lua_vm *prev = lua_vm_switch(vm);
    lua_pushcfunction(L, call_freeze);
    pdk_push_json(L, v);
    bool enforced = vm->mem_enforced;
    vm->mem_enforced = true;
    int rc = lua_pcall(L, 1, 1, 0);
    vm->mem_enforced = enforced;
    lua_vm_switch(prev);
    if (rc != 0) {
        log_err("worker %d: cannot build a Lua value: %s", vm->worker_id, lua_tostring(L, -1));
        lua_pop(L, 1);
        lua_pushnil(L);
    }
}

/* Entities (consumers, credentials, routes, services) as frozen tables, kept in the snapshot's
 * cache keyed by the JSON object's address (which the snapshot holds unchanged for its life), so
 * that weir.client.load_credential and friends cost a table lookup after the first request and
 * not a conversion. At most ENTITY_CACHE_MAX per cache: past it the cache starts again (a config
 * with a million consumers cannot make a VM hold them all). */
#define ENTITY_CACHE_MAX 10000

void lua_vm_push_entity(struct lua_vm *vm, lua_State *co, const struct snapshot *snap,
                        const struct json_t *e) {
    lua_State *L = vm->L;
    push_cache(vm, snap);
    lua_getfield(L, -1, "entities");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "entities");
        lua_pushinteger(L, 0);
        lua_setfield(L, -3, "n_entities");
    }
    lua_pushlightuserdata(L, (void *)e);
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1)) { /* cache, entities, table */
        lua_replace(L, -3);
        lua_pop(L, 1);
        if (co != L) lua_xmove(L, co, 1);
        return;
    }
    lua_pop(L, 1);
    lua_vm_push_frozen(vm, L, e); /* cache, entities, table (nil when out of memory) */
    if (lua_isnil(L, -1)) {
        lua_replace(L, -3);
        lua_pop(L, 1);
        if (co != L) lua_xmove(L, co, 1);
        return;
    }
    lua_getfield(L, -3, "n_entities");
    lua_Integer n = lua_tointeger(L, -1) + 1;
    lua_pop(L, 1);
    if (n > ENTITY_CACHE_MAX) {
        lua_newtable(L);
        lua_replace(L, -3);
        lua_pushvalue(L, -2);
        lua_setfield(L, -4, "entities");
        n = 1;
    }
    lua_pushinteger(L, n);
    lua_setfield(L, -4, "n_entities");
    lua_pushlightuserdata(L, (void *)e);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
    lua_replace(L, -3);
    lua_pop(L, 1);
    if (co != L) lua_xmove(L, co, 1);
}

/* The cache table holds, for instance idx, at [SLOTS*idx + 1..4] its handler's rewrite,
 * access, response and log methods (false when absent), at +5 the handler, at +6 the config
 * and at +7 what BUFFER_RESPONSE(conf) answered (when the handler's BUFFER_RESPONSE is a
 * function): after the first request a phase call costs three array reads here. */
#define SLOTS 7

bool lua_vm_push_plugin(struct lua_vm *vm, const struct snapshot *snap, size_t idx, int phase) {
    lua_State *L = vm->L;
    int base = (int)(SLOTS * idx);
    push_cache(vm, snap);
    lua_rawgeti(L, -1, base + 5);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 2);
        if (!push_plugin_slow(vm, snap, idx)) return false;
        push_cache(vm, snap); /* handler, conf, cache */
        static const char *const methods[] = {"rewrite", "access", "response", "log"};
        for (int m = 0; m < 4; m++) {
            lua_getfield(L, -3, methods[m]);
            if (!lua_isfunction(L, -1)) {
                lua_pop(L, 1);
                lua_pushboolean(L, 0);
            }
            lua_rawseti(L, -2, base + 1 + m);
        }
        lua_pushvalue(L, -3);
        lua_rawseti(L, -2, base + 5);
        lua_pushvalue(L, -2);
        lua_rawseti(L, -2, base + 6);
        lua_pop(L, 3);
        push_cache(vm, snap);
        lua_rawgeti(L, -1, base + 5);
    }
    lua_rawgeti(L, -2, base + 1 + phase); /* cache, handler, method */
    lua_insert(L, -2);
    lua_rawgeti(L, -3, base + 6); /* cache, method, handler, conf */
    lua_remove(L, -4);
    return true;
}

bool lua_vm_plugin_buffers_response(struct lua_vm *vm, const struct snapshot *snap, size_t idx) {
    lua_State *L = vm->L;
    int top = lua_gettop(L), slot = (int)(SLOTS * idx) + 7;
    push_cache(vm, snap);
    lua_rawgeti(L, -1, slot);
    if (lua_isboolean(L, -1)) {
        bool b = lua_toboolean(L, -1);
        lua_settop(L, top);
        return b;
    }
    lua_settop(L, top);
    const struct plugin_def *def = snap->config->plugin_defs[idx];
    if (!lua_vm_push_plugin(vm, snap, idx, 2)) return true; /* the call fails later, logged */
    /* method, handler, conf -> BUFFER_RESPONSE(conf), with the budget of a phase call */
    lua_getfield(L, -2, "BUFFER_RESPONSE");
    lua_pushvalue(L, -2);
    struct lua_vm *prev = lua_vm_switch(vm);
    long long left = vm->budget, *outer = vm->budget_left;
    lua_vm_budget_begin(vm, &left);
    bool enforced = vm->mem_enforced;
    vm->mem_enforced = true;
    int rc = lua_pcall(L, 1, 1, 0);
    vm->mem_enforced = enforced;
    lua_vm_budget_end(vm);
    vm->budget_left = outer;
    lua_vm_switch(prev);
    bool buffer = true;
    if (rc != 0)
        log_err("plugin %s: BUFFER_RESPONSE(conf) failed in worker %d: %s (the response is "
                "buffered)",
                def->name, vm->worker_id, lua_tostring(L, -1));
    else if (!lua_isboolean(L, -1))
        log_err("plugin %s: BUFFER_RESPONSE(conf) returned a %s, not a boolean (the response is "
                "buffered)",
                def->name, luaL_typename(L, -1));
    else
        buffer = lua_toboolean(L, -1);
    lua_settop(L, top);
    push_cache(vm, snap);
    lua_pushboolean(L, buffer);
    lua_rawseti(L, -2, slot);
    lua_settop(L, top);
    return buffer;
}

static bool push_plugin_slow(struct lua_vm *vm, const struct snapshot *snap, size_t idx) {
    lua_State *L = vm->L;
    const struct config *cfg = snap->config;
    const struct plugin_def *def = cfg->plugin_defs[idx];
    push_cache(vm, snap);
    int cache = lua_gettop(L);
    lua_getfield(L, cache, "handlers");
    lua_getfield(L, -1, def->name);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        load_handler(vm, def);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, def->name);
    }
    if (!lua_istable(L, -1)) {
        lua_settop(L, cache - 1);
        return false;
    }
    lua_replace(L, cache); /* the handler where the cache was */
    lua_pop(L, 1);
    push_cache(vm, snap);
    lua_getfield(L, -1, "confs");
    lua_rawgeti(L, -1, (int)idx + 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        const json_t *entity = cfg->plugin_instances[idx].data;
        lua_vm_push_frozen(vm, L, json_object_get(entity, "config"));
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, (int)idx + 1);
    }
    lua_replace(L, -3);
    lua_pop(L, 1); /* handler, conf */
    return true;
}
