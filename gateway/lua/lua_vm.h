/* lua_vm: the LuaJIT VM of one worker thread, where every plugin of that worker runs.
 *
 * One VM per worker, created on the worker's thread and used only there (LuaJIT states are not
 * thread-safe; nothing here takes a lock). It holds:
 * - the `weir` PDK table (gateway/lua/pdk_*.c), installed once;
 * - the plugin handlers, loaded once per plugin catalogue (a reload that changes plugin code
 *   brings a new catalogue, and requests still running on the old snapshot keep the old code);
 * - each plugin instance's config as a read-only Lua table, built on first use per snapshot and
 *   cached for the current and the previous snapshot, never per request;
 * - a pool of Lua threads (coroutines) that tasks (lua_task.h) borrow.
 *
 * Limits: allocations beyond weir.lua.memory_limit fail inside plugin code (a Lua "not enough
 * memory" error, a 500 for that request); C code pushing onto a stack outside plugin code may
 * go past it by a little (never fails, so it needs no protected call). With an instruction
 * budget, plugins' code runs interpreted (lua/weir/jit_guard.lua): a LuaJIT count hook does not
 * fire inside compiled traces, so a budget on compiled code could not stop `while true do end`;
 * Weir's own Lua (runtime, bundled plugins) is compiled. The hook is armed only on calls that
 * run long (lua_watchdog.h): the budget counts from there. */
#ifndef WEIR_LUA_VM_H
#define WEIR_LUA_VM_H

#include <event2/event.h>
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct snapshot;
struct plugin_catalog;
struct lua_task;
struct shared_dict;
struct json_t;

struct lua_vm {
    lua_State *L;
    struct event_base *base;
    int worker_id;
    size_t mem_used, mem_limit;
    bool mem_enforced; /* allocations may fail (plugin code is running) */
    bool mem_failed;   /* an allocation was refused since the last check */
    bool retired;      /* full even after a collection: new requests get a fresh VM */
    int users;         /* plugin runs holding this VM */
    struct lua_vm *next_retired;
    long long budget;          /* instructions per phase call, 0: none */
    long long *budget_left;    /* counter the hook charges; NULL: nothing to charge */
    int budget_depth;          /* nested lua_vm_budget_begin()s */
    struct lua_task *current;  /* the task whose coroutine runs now */
    uint64_t cache_version[2]; /* snapshot versions of the two cache slots (0: empty) */
    int cache_ref[2];          /* registry refs of {handlers=, confs=, catalog=} */
    int threads_ref;           /* registry ref of the table anchoring every task thread by slot */
    int n_slots;               /* slots used in that table */
    int *free_slots, n_free, cap_free;
    int xpcall_ref;    /* registry ref of the original xpcall */
    int traceback_ref; /* registry ref of the message handler */
    int interpret_ref; /* with a budget: jit_guard's function marking code for the interpreter */
    int n_threads;
    uint64_t errors;               /* plugin errors on this worker (metrics) */
    struct pdk_timer *timers;      /* weir.timer.at's pending timers (pdk_base.c) */
    struct lua_vm_closer *closers; /* lua_vm_on_close() */
    size_t n_timers;
};

/* Process-wide: the dictionaries of weir.shared_dicts, created at start (server.c), pushed into
 * every VM. */
void lua_vm_set_shared_dicts(struct shared_dict *const *dicts, size_t n);

/* Creates the VM for the calling worker thread. NULL with a message in err. */
/* Sets package.path as every plugin VM has it: lua/ of the data directory, then modules beside
 * the data directory's plugins and each plugin root ("plugins.<name>.<module>"). Also used by
 * the scratch state that checks handlers, so a handler may require its own modules at load. */
void lua_vm_set_package_path(lua_State *L, const char *data_dir, char *const *roots,
                             size_t n_roots);
struct lua_vm *lua_vm_new(struct event_base *base, int worker_id, const struct snapshot *snap,
                          char *err, size_t errlen);
void lua_vm_free(struct lua_vm *vm);
/* The VM whose code runs on the calling thread now (a task's, a handler load's), else the last
 * one created on this thread; NULL on threads without one. */
struct lua_vm *lua_vm_self(void);
/* Makes vm the running one (lua_vm_self()) and returns the previous, to restore afterwards. */
struct lua_vm *lua_vm_switch(struct lua_vm *vm);
/* After plugin code ran: when an allocation was refused, collects garbage; a VM still above
 * three quarters of its limit is leaking (a plugin's module state grows): it is marked retired,
 * so that the worker gives new requests a fresh VM (lua_vm_retire_check) and frees this one once
 * the requests using it are done. Returns vm->retired. */
bool lua_vm_after_memory_error(struct lua_vm *vm);

/* Pushes onto vm->L, for instance `idx` of snap's config, the method of `phase` (0 rewrite,
 * 1 access, 2 response, 3 log; false when the handler has none), the handler table and the
 * read-only config table; false (nothing pushed, the reason logged) when the handler could not
 * be loaded. */
bool lua_vm_push_plugin(struct lua_vm *vm, const struct snapshot *snap, size_t idx, int phase);
/* Pushes onto co (a thread of vm) an entity of snap (a consumer, credential, route or service
 * JSON object that snap holds) as a read-only table, converted once per snapshot in this VM and
 * then cached (a bounded cache); nil when memory runs out. */
void lua_vm_push_entity(struct lua_vm *vm, lua_State *co, const struct snapshot *snap,
                        const struct json_t *e);
/* For a handler whose BUFFER_RESPONSE is a function: what it answers for instance `idx`'s config
 * (called once per instance per snapshot in this VM, then cached). An error or a non-boolean
 * answer is logged and counts as true: the response is buffered. */
bool lua_vm_plugin_buffers_response(struct lua_vm *vm, const struct snapshot *snap, size_t idx);

/* A thread from the VM's slots (a new one when none is free); *slot names it for giving back. */
lua_State *lua_vm_thread_take(struct lua_vm *vm, int *slot);
/* Gives a thread back: reused when it finished cleanly (`clean`), dropped otherwise. */
void lua_vm_thread_give(struct lua_vm *vm, lua_State *co, int slot, bool clean);

/* Runs fn(arg) when the VM closes: after the worker's connections are gone (so no task waits
 * any more), before lua_close(); latest registered first. For per-VM state of PDK modules
 * (connection pools). */
void lua_vm_on_close(struct lua_vm *vm, void (*fn)(void *arg), void *arg);

/* Pushes onto L (vm's state or one of its threads) a JSON value (an entity, a config) as a
 * read-only Lua value (lua/weir/runtime.lua's
 * freeze); nil, after logging, when the VM is out of memory. */
void lua_vm_push_frozen(struct lua_vm *vm, lua_State *L, const struct json_t *v);

/* Starts the watchdog that arms the budget hook on long calls (lua_watchdog.h); once per
 * process, before the workers run Lua. 0, or -1 with errno. */
int lua_vm_watchdog_start(void);
/* Brackets plugin code: the instruction budget is charged to `left` once the watchdog has armed
 * the hook (a call that runs longer than a watchdog period); they nest. */
void lua_vm_budget_begin(struct lua_vm *vm, long long *left);
void lua_vm_budget_end(struct lua_vm *vm);

#endif
