/* idle_runner: runs the control thread's heavy work on a thread that only takes spare CPU.
 *
 * An admin change compiles a new configuration: a few milliseconds of CPU at 10,000 routes. On a
 * core the workers keep busy, a thread at any nice level still gets time slices, and each slice
 * is a stall for the requests behind it (p99 doubled in bench/admin_changes.py at ten changes a
 * second). A thread of scheduling class SCHED_IDLE runs only when nothing else on the core wants
 * to, and a waking worker preempts it at once, so the change costs the traffic nothing; the price
 * is that on cores kept fully busy the change waits for a gap (weir.admin_compile_priority).
 *
 * idle_runner_run() hands one job to the thread and blocks the caller until it is done, so the
 * job may use whatever the caller could (the caller does nothing meanwhile): the control thread
 * runs whole admin writes there, publishing included. A mutex and a condition variable order
 * everything the job wrote before the return. One caller at a time.
 * Linux only lets a thread leave SCHED_IDLE with CAP_SYS_NICE, which is why the class belongs to
 * a thread of its own rather than to the control thread for the length of a job. */
#ifndef WEIR_IDLE_RUNNER_H
#define WEIR_IDLE_RUNNER_H

#include <stdbool.h>

struct idle_runner;

/* Starts the thread: SCHED_IDLE when `idle`, else SCHED_OTHER at nice level `nice` (or the
 * caller's, when that is lower already). NULL with errno when the thread cannot start. A class or
 * level the system refuses is logged and the thread runs with the caller's. */
struct idle_runner *idle_runner_start(bool idle, int nice);

/* Runs fn(arg) on the runner's thread and returns when it has returned. */
void idle_runner_run(struct idle_runner *r, void (*fn)(void *arg), void *arg);

/* Whether the caller is the runner's thread (a job that reaches code which would hand work to
 * the runner must run it inline instead). */
bool idle_runner_is_current(const struct idle_runner *r);

/* Joins the thread and frees the runner. NULL is a no-op. */
void idle_runner_stop(struct idle_runner *r);

#endif
