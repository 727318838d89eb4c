#include "lua/lua_watchdog.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* One per thread that ever ran Lua. `seq` is odd inside a stretch and changes at every enter
 * and leave; only the owning thread writes it. */
struct lua_watch {
    _Atomic uint64_t seq;
    uint64_t seen; /* the watching thread's last reading */
    pthread_t thread;
    struct lua_watch *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wakeup;
static struct lua_watch *watches;
static pthread_t dog;
static bool running, stopping;
static void (*arm_fn)(void);

static _Thread_local struct lua_watch *mine;
static _Thread_local int depth;
static _Thread_local volatile sig_atomic_t inside;

static int overrun_signal(void) {
    return SIGRTMIN + 1;
}

static void on_signal(int sig) {
    (void)sig;
    int saved = errno;
    if (inside && arm_fn) arm_fn();
    errno = saved;
}

void lua_watch_enter(void) {
    if (depth++ > 0) return;
    if (!mine) {
        mine = calloc(1, sizeof *mine);
        if (!mine) abort();
        mine->thread = pthread_self();
        pthread_mutex_lock(&lock);
        mine->next = watches;
        watches = mine;
        pthread_mutex_unlock(&lock);
    }
    uint64_t s = atomic_load_explicit(&mine->seq, memory_order_relaxed);
    atomic_store_explicit(&mine->seq, s + 1, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    inside = 1;
}

bool lua_watch_leave(void) {
    if (--depth > 0) return false;
    inside = 0;
    atomic_signal_fence(memory_order_seq_cst);
    uint64_t s = atomic_load_explicit(&mine->seq, memory_order_relaxed);
    atomic_store_explicit(&mine->seq, s + 1, memory_order_relaxed);
    return true;
}

static void *watch_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    while (!stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += LUA_WATCH_PERIOD_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!stopping && pthread_cond_timedwait(&wakeup, &lock, &until) != ETIMEDOUT) {
        }
        for (struct lua_watch *w = watches; w && !stopping; w = w->next) {
            uint64_t s = atomic_load_explicit(&w->seq, memory_order_relaxed);
            /* Kept signalling while the stretch lasts: the handler arms the hook only when it
             * is not armed, and a retry covers an arming the interrupted code undid. */
            if ((s & 1) && s == w->seen) pthread_kill(w->thread, overrun_signal());
            w->seen = s;
        }
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

int lua_watchdog_start(void (*arm)(void)) {
    if (running) return 0;
    arm_fn = arm;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(overrun_signal(), &sa, NULL) != 0) return -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&wakeup, &ca);
    pthread_condattr_destroy(&ca);
    stopping = false;
    /* The watching thread takes no signals: they belong to the threads it watches and to main. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&dog, NULL, watch_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&wakeup);
        errno = rc;
        return -1;
    }
    running = true;
    return 0;
}

void lua_watchdog_stop(void) {
    if (running) {
        pthread_mutex_lock(&lock);
        stopping = true;
        pthread_cond_signal(&wakeup);
        pthread_mutex_unlock(&lock);
        pthread_join(dog, NULL);
        pthread_cond_destroy(&wakeup);
        running = false;
    }
    pthread_mutex_lock(&lock);
    while (watches) {
        struct lua_watch *w = watches;
        watches = w->next;
        free(w);
    }
    pthread_mutex_unlock(&lock);
    mine = NULL; /* the calling thread's (the others are joined) */
}
