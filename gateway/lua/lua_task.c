#include "lua/lua_task.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

void lua_task_init(struct lua_task *t, struct lua_vm *vm, void *owner,
                   void (*done)(struct lua_task *t, enum lua_task_result r)) {
    memset(t, 0, sizeof *t);
    t->vm = vm;
    t->owner = owner;
    t->done = done;
    t->may_wait = true;
    t->co_ref = LUA_NOREF;
}

/* xpcall's message handler: the message with a traceback (C, so the budget hook never charges
 * it). Non-string errors are described rather than lost. */
int lua_task_traceback(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static void set_error(struct lua_task *t, const char *msg) {
    free(t->error);
    t->error = strdup(msg ? msg : "unknown error");
    if (!t->error) abort();
}

/* Runs the coroutine from where it is (a fresh call or a wake) until it stops. */
static enum lua_task_result step(struct lua_task *t, int nargs) {
    struct lua_vm *vm = t->vm;
    struct lua_vm *prev = lua_vm_switch(vm); /* a retired VM's tasks still run on it */
    struct lua_task *outer = vm->current;
    vm->current = t;
    lua_vm_budget_begin(vm, &t->budget_left);
    vm->mem_enforced = true;
    int rc = lua_resume(t->co, nargs);
    vm->mem_enforced = false;
    lua_vm_budget_end(vm);
    vm->current = outer;
    lua_vm_switch(prev);
    lua_vm_after_memory_error(vm);
    if (rc == LUA_YIELD) {
        if (t->waiting) return LUA_TASK_WAITING;
        if (t->exited) return LUA_TASK_EXIT;
        /* a bare coroutine.yield() outside the plugin's own coroutines */
        set_error(t, "attempt to yield from a plugin's phase function (use the plugin's own "
                     "coroutine, or a weir function that waits)");
        return LUA_TASK_ERROR;
    }
    if (rc != 0) { /* outside xpcall: only memory errors get here */
        set_error(t, lua_tostring(t->co, -1));
        return LUA_TASK_ERROR;
    }
    /* xpcall's results: true, ... | false, message */
    enum lua_task_result r = LUA_TASK_OK;
    if (!lua_toboolean(t->co, 1)) {
        set_error(t, lua_tostring(t->co, 2));
        r = LUA_TASK_ERROR;
    }
    lua_settop(t->co, 0);
    return r;
}

/* A thread that did not end cleanly (error, exit, abandoned wait) is not reused. */
static void drop_thread(struct lua_task *t, bool clean) {
    if (!t->co) return;
    lua_vm_thread_give(t->vm, t->co, t->co_ref, clean);
    t->co = NULL;
    t->co_ref = LUA_NOREF;
}

enum lua_task_result lua_task_call(struct lua_task *t, int nargs) {
    struct lua_vm *vm = t->vm;
    WEIR_BUG_ON(t->waiting);
    if (!t->co) t->co = lua_vm_thread_take(vm, &t->co_ref);
    /* xpcall(fn, traceback, args...) on the task's thread */
    lua_rawgeti(t->co, LUA_REGISTRYINDEX, vm->xpcall_ref);
    lua_xmove(vm->L, t->co, nargs + 1);
    lua_rawgeti(t->co, LUA_REGISTRYINDEX, vm->traceback_ref);
    lua_insert(t->co, 3);
    t->exited = false;
    t->budget_left = vm->budget;
    enum lua_task_result r = step(t, nargs + 2);
    if (r == LUA_TASK_ERROR || r == LUA_TASK_EXIT) drop_thread(t, false);
    return r;
}

void lua_task_finish(struct lua_task *t) {
    if (t->waiting) {
        t->waiting = false;
        if (t->cancel) t->cancel(t->op);
        t->cancel = NULL;
        t->op = NULL;
        drop_thread(t, false);
    }
    drop_thread(t, true);
    free(t->error);
    t->error = NULL;
}

struct lua_task *lua_task_current(lua_State *L) {
    (void)L; /* also from a coroutine the plugin made: it still runs for this task */
    struct lua_vm *vm = lua_vm_self();
    return vm ? vm->current : NULL;
}

struct lua_task *lua_task_waitable(lua_State *L) {
    struct lua_task *t = lua_task_current(L);
    if (!t) luaL_error(L, "cannot wait here (only in a plugin's phase function or a timer)");
    if (!t->may_wait) luaL_error(L, "cannot wait in the %s phase: use weir.timer.at", t->phase);
    /* yielding here would suspend the plugin's own coroutine, not the task */
    if (t->co != L) luaL_error(L, "cannot wait inside a coroutine the plugin created");
    return t;
}

int lua_task_wait(lua_State *L, struct lua_task *t, void (*cancel)(void *op), void *op) {
    t->waiting = true;
    t->cancel = cancel;
    t->op = op;
    return lua_yield(L, 0);
}

void lua_task_wake(struct lua_task *t, int (*push)(lua_State *co, void *arg), void *arg) {
    WEIR_BUG_ON(!t->waiting);
    t->waiting = false;
    t->cancel = NULL;
    t->op = NULL;
    int n = push ? push(t->co, arg) : 0;
    enum lua_task_result r = step(t, n);
    if (r == LUA_TASK_ERROR || r == LUA_TASK_EXIT) drop_thread(t, false);
    if (r != LUA_TASK_WAITING) t->done(t, r);
}

int lua_task_exit(lua_State *L, struct lua_task *t) {
    t->exited = true;
    return lua_yield(L, 0);
}
