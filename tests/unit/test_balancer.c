/* Unit tests for the smooth weighted round-robin balancer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "upstream/balancer.h"

static struct upstream_target targets[3];
static struct upstream up = {.targets = targets};

static void set_weights(int a, int b, int c) {
    memset(targets, 0, sizeof targets);
    targets[0].weight = a;
    targets[1].weight = b;
    targets[2].weight = c;
    up.n_targets = 3;
}

static void test_picks_in_proportion_to_weight(void **state) {
    (void)state;
    set_weights(100, 50, 0);
    up.n_targets = 2;
    int current[2] = {0, 0}, count[2] = {0, 0};
    for (int i = 0; i < 30; i++)
        count[balancer_pick(&up, current, NULL, 0)]++;
    assert_int_equal(count[0], 20);
    assert_int_equal(count[1], 10);
}

static void test_interleaves_picks_smoothly(void **state) {
    (void)state;
    set_weights(5, 1, 1);
    int current[3] = {0, 0, 0};
    int seq[7];
    for (int i = 0; i < 7; i++)
        seq[i] = balancer_pick(&up, current, NULL, 0);
    /* nginx's documented sequence for 5,1,1: a a b a c a a */
    int expected[7] = {0, 0, 1, 0, 2, 0, 0};
    assert_memory_equal(seq, expected, sizeof seq);
}

static void test_skips_zero_weight_targets(void **state) {
    (void)state;
    set_weights(0, 10, 0);
    int current[3] = {0, 0, 0};
    for (int i = 0; i < 5; i++)
        assert_int_equal(balancer_pick(&up, current, NULL, 0), 1);
}

static void test_skips_tried_targets(void **state) {
    (void)state;
    set_weights(10, 10, 10);
    int current[3] = {0, 0, 0};
    int tried[2] = {0, 2};
    for (int i = 0; i < 5; i++)
        assert_int_equal(balancer_pick(&up, current, tried, 2), 1);
}

static void test_none_left_returns_minus_one(void **state) {
    (void)state;
    set_weights(10, 0, 0);
    int current[3] = {0, 0, 0};
    int tried[1] = {0};
    assert_int_equal(balancer_pick(&up, current, tried, 1), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_picks_in_proportion_to_weight),
        cmocka_unit_test(test_interleaves_picks_smoothly),
        cmocka_unit_test(test_skips_zero_weight_targets),
        cmocka_unit_test(test_skips_tried_targets),
        cmocka_unit_test(test_none_left_returns_minus_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
