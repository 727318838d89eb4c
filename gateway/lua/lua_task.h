/* lua_task: plugin code running in a coroutine that may wait without blocking the worker.
 *
 * A task owns one Lua thread borrowed from its VM's pool. lua_task_call() runs one function
 * there (a plugin's phase method) under xpcall with a traceback, charged to the instruction
 * budget. The call ends in one of three ways: it returns, it raises an error, or it calls
 * weir.response.exit() (which yields and never comes back, so a plugin's own pcall cannot catch
 * it). In between it may wait: a PDK function that starts I/O (a timer, Redis, HTTP, the request
 * body) calls lua_task_wait(), the coroutine yields, the worker serves other connections, and the
 * operation's callback calls lua_task_wake() with its results; the call then goes on from there.
 *
 * lua_task_call() returns LUA_TASK_WAITING when the call is suspended; its end is then reported
 * through the task's `done` callback (from the event that woke it). Otherwise it returns how the
 * call ended and `done` is not called. Worker thread only. */
#ifndef WEIR_LUA_TASK_H
#define WEIR_LUA_TASK_H

#include <lua.h>
#include <stdbool.h>

#include "lua/lua_vm.h"

enum lua_task_result {
    LUA_TASK_OK,      /* returned */
    LUA_TASK_ERROR,   /* raised an error: message (with traceback) in t->error */
    LUA_TASK_EXIT,    /* called weir.response.exit() */
    LUA_TASK_WAITING, /* suspended in a wait; `done` reports the end */
};

struct lua_task {
    struct lua_vm *vm;
    lua_State *co; /* NULL until the first call */
    int co_ref;
    bool waiting;
    bool may_wait;    /* false in the log phase: waiting raises an error there */
    bool exited;      /* weir.response.exit() ended the current call */
    bool for_request; /* owner is a struct plugin_run */
    void (*cancel)(void *op);
    void *op;
    long long budget_left;
    char *error; /* the last LUA_TASK_ERROR's message, owned */
    /* The owner's context: the request's plugin run, or a timer. */
    void *owner;
    const char *plugin; /* running plugin (for messages), NULL outside one */
    const char *phase;  /* "rewrite", "access", "response", "log", "timer" */
    void (*done)(struct lua_task *t, enum lua_task_result r);
};

void lua_task_init(struct lua_task *t, struct lua_vm *vm, void *owner,
                   void (*done)(struct lua_task *t, enum lua_task_result r));
/* The function and its nargs arguments are on vm->L's top; they are moved to the task's thread
 * and called. */
enum lua_task_result lua_task_call(struct lua_task *t, int nargs);
/* Ends the task: a pending wait is cancelled (its operation freed, never woken), the thread goes
 * back to the pool when clean. The struct may then be freed or initialised again. */
void lua_task_finish(struct lua_task *t);

/* xpcall's message handler for task calls: the message with a traceback. */
int lua_task_traceback(lua_State *L);

/* ---- for PDK functions ---- */

/* The task running the calling PDK function (also from a coroutine the plugin made), or NULL
 * (module load: then PDK calls that need a request raise an error). */
struct lua_task *lua_task_current(lua_State *L);
/* The running task if it may wait; raises a Lua error otherwise ("cannot wait in the log phase:
 * use weir.timer.at"). Call before starting the operation. */
struct lua_task *lua_task_waitable(lua_State *L);
/* Suspends the task: `return lua_task_wait(L, t, cancel, op);`. cancel(op) is called instead of
 * any wake when the task is finished first (client gone, gateway stopping). */
int lua_task_wait(lua_State *L, struct lua_task *t, void (*cancel)(void *op), void *op);
/* Ends the wait: push(co, arg) pushes what the waiting PDK function returns (and returns how
 * many), then the call continues. Called from the operation's event callback. */
void lua_task_wake(struct lua_task *t, int (*push)(lua_State *co, void *arg), void *arg);
/* For weir.response.exit(): `return lua_task_exit(L, t);` ends the current call. */
int lua_task_exit(lua_State *L, struct lua_task *t);

#endif
