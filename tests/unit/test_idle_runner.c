/* The compile thread (core/idle_runner.h): jobs run on the runner's thread, one at a time, the
 * caller waits for each, sees everything it wrote, and the thread has the asked-for class. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/idle_runner.h"

struct probe {
    struct idle_runner *r;
    pthread_t caller;
    bool on_runner, not_caller;
    int policy;
    int nice;
    long sum;
    int *data;
    size_t n;
};

static void job(void *arg) {
    struct probe *p = arg;
    p->on_runner = idle_runner_is_current(p->r);
    p->not_caller = !pthread_equal(pthread_self(), p->caller);
    p->policy = sched_getscheduler(0);
    p->nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    for (size_t i = 0; i < p->n; i++) {
        p->data[i] = (int)i * 3; /* written here, read by the caller after the return */
        p->sum += p->data[i];
    }
}

static void run_jobs(bool idle) {
    struct idle_runner *r = idle_runner_start(idle, 0);
    assert_non_null(r);
    assert_false(idle_runner_is_current(r));
    for (int round = 0; round < 200; round++) {
        struct probe p = {.r = r, .caller = pthread_self(), .n = 1000 + (size_t)round};
        p.data = calloc(p.n, sizeof *p.data);
        assert_non_null(p.data);
        idle_runner_run(r, job, &p);
        assert_true(p.on_runner);
        assert_true(p.not_caller);
        long want = 0;
        for (size_t i = 0; i < p.n; i++) {
            assert_int_equal(p.data[i], (int)i * 3);
            want += (long)i * 3;
        }
        assert_int_equal(p.sum, want);
        if (idle)
            assert_int_equal(p.policy, SCHED_IDLE);
        else
            assert_int_equal(p.policy, SCHED_OTHER);
        free(p.data);
    }
    idle_runner_stop(r);
}

static void test_jobs_run_on_an_idle_thread_and_the_caller_sees_their_writes(void **state) {
    (void)state;
    run_jobs(true);
}

static void test_a_runner_that_is_not_idle_runs_at_the_nice_level_asked(void **state) {
    (void)state;
    int now = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    int lower = now <= 16 ? now + 3 : 19;
    struct idle_runner *r = idle_runner_start(false, lower);
    assert_non_null(r);
    struct probe p = {.r = r, .caller = pthread_self()};
    idle_runner_run(r, job, &p);
    assert_int_equal(p.nice, lower);
    assert_int_equal(p.policy, SCHED_OTHER);
    assert_int_equal(getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid)), now); /* not ours */
    idle_runner_stop(r);
    run_jobs(false);
}

static void test_stop_without_a_job_and_null(void **state) {
    (void)state;
    idle_runner_stop(idle_runner_start(true, 0));
    idle_runner_stop(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs_run_on_an_idle_thread_and_the_caller_sees_their_writes),
        cmocka_unit_test(test_a_runner_that_is_not_idle_runs_at_the_nice_level_asked),
        cmocka_unit_test(test_stop_without_a_job_and_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
