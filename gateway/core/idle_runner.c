#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* SCHED_IDLE */
#endif
#include "core/idle_runner.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/log.h"

struct idle_runner {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    void (*fn)(void *arg); /* the job waiting or running; NULL when none */
    void *arg;
    bool done; /* the job returned */
    bool stopping;
    bool idle;
    int nice; /* for a thread that is not idle */
};

static void *runner_main(void *p) {
    struct idle_runner *r = p;
    pid_t tid = (pid_t)syscall(SYS_gettid);
    if (r->idle) {
        struct sched_param none = {0};
        if (sched_setscheduler(tid, SCHED_IDLE, &none) != 0)
            log_warn("cannot give admin changes idle CPU priority (%s): they compile at the "
                     "control thread's",
                     strerror(errno));
    }
    if (!r->idle && r->nice > getpriority(PRIO_PROCESS, (id_t)tid) &&
        setpriority(PRIO_PROCESS, (id_t)tid, r->nice) != 0)
        log_warn("cannot lower the compile thread's priority: %s", strerror(errno));
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (!r->fn && !r->stopping)
            pthread_cond_wait(&r->cond, &r->lock);
        if (!r->fn) break; /* stopping, nothing left */
        void (*fn)(void *) = r->fn;
        void *arg = r->arg;
        pthread_mutex_unlock(&r->lock);
        fn(arg);
        pthread_mutex_lock(&r->lock);
        r->fn = NULL;
        r->done = true;
        pthread_cond_broadcast(&r->cond);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

struct idle_runner *idle_runner_start(bool idle, int nice) {
    struct idle_runner *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->idle = idle;
    r->nice = nice;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    int rc = pthread_create(&r->thread, NULL, runner_main, r);
    if (rc != 0) {
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->lock);
        free(r);
        errno = rc;
        return NULL;
    }
    pthread_setname_np(r->thread, "weir compile");
    return r;
}

void idle_runner_run(struct idle_runner *r, void (*fn)(void *arg), void *arg) {
    pthread_mutex_lock(&r->lock);
    r->fn = fn;
    r->arg = arg;
    r->done = false;
    pthread_cond_broadcast(&r->cond);
    while (!r->done)
        pthread_cond_wait(&r->cond, &r->lock);
    pthread_mutex_unlock(&r->lock);
}

bool idle_runner_is_current(const struct idle_runner *r) {
    return pthread_equal(pthread_self(), r->thread);
}

void idle_runner_stop(struct idle_runner *r) {
    if (!r) return;
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
