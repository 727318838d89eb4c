/* Plugin chains: the most specific enabled instance of each plugin, by Kong's precedence, ordered
 * by PRIORITY (highest first) and then name. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lua/plugin_chain.h"

#define R "route-1"
#define S "service-1"
#define C "consumer-1"

static struct plugin_instance inst(const char *id, const char *name, double priority,
                                   const char *route, const char *service, const char *consumer) {
    return (struct plugin_instance){id, name, route, service, consumer, true, priority, NULL};
}

/* The ids of the chain, space-separated. */
static const char *chain(const struct plugin_instance *insts, size_t n, const char *route,
                         const char *service, const char *consumer) {
    static char buf[512];
    const struct plugin_instance *out[32];
    size_t len = plugin_chain_resolve(insts, n, route, service, consumer, out, 32);
    buf[0] = '\0';
    for (size_t i = 0; i < len; i++)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? " " : "", out[i]->id);
    return buf;
}

static void test_each_level_beats_the_ones_below_it(void **state) {
    (void)state;
    /* one plugin, an instance at each of Kong's eight levels */
    struct plugin_instance all[] = {
        inst("global", "p", 1, NULL, NULL, NULL),  inst("service", "p", 1, NULL, S, NULL),
        inst("route", "p", 1, R, NULL, NULL),      inst("consumer", "p", 1, NULL, NULL, C),
        inst("route+service", "p", 1, R, S, NULL), inst("service+consumer", "p", 1, NULL, S, C),
        inst("route+consumer", "p", 1, R, NULL, C), inst("route+service+consumer", "p", 1, R, S, C),
    };
    size_t n = sizeof all / sizeof all[0];
    /* remove the most specific one at a time: the next level takes over */
    const char *expect[] = {"route+service+consumer", "route+consumer", "service+consumer",
                            "route+service", "consumer", "route", "service", "global"};
    for (size_t k = 0; k < n; k++) {
        struct plugin_instance some[8];
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            bool removed = false;
            for (size_t j = 0; j < k; j++)
                removed = removed || !strcmp(all[i].id, expect[j]);
            if (!removed) some[m++] = all[i];
        }
        assert_string_equal(chain(some, m, R, S, C), expect[k]);
    }
}

static void test_scopes_of_other_entities_do_not_apply(void **state) {
    (void)state;
    struct plugin_instance v[] = {
        inst("other-route", "p", 1, "route-2", NULL, NULL),
        inst("other-service", "q", 1, NULL, "service-2", NULL),
        inst("other-consumer", "r", 1, NULL, NULL, "consumer-2"),
        inst("route-on-other-service", "s", 1, R, "service-2", NULL),
        inst("global", "t", 1, NULL, NULL, NULL),
    };
    assert_string_equal(chain(v, 5, R, S, C), "global");
    assert_int_equal(plugin_scope_rank(&v[0], R, S, C), 0);
    assert_int_equal(plugin_scope_rank(&v[4], R, S, C), 1);
}

static void test_without_a_consumer_consumer_scoped_instances_wait(void **state) {
    (void)state;
    struct plugin_instance v[] = {
        inst("route", "p", 1, R, NULL, NULL),
        inst("route+consumer", "p", 1, R, NULL, C),
        inst("consumer-only", "q", 1, NULL, NULL, C),
    };
    assert_string_equal(chain(v, 3, R, S, NULL), "route");
    assert_string_equal(chain(v, 3, R, S, C), "route+consumer consumer-only");
}

static void test_disabled_instances_do_not_hide_enabled_ones(void **state) {
    (void)state;
    struct plugin_instance v[] = {
        inst("global", "p", 1, NULL, NULL, NULL),
        inst("route-off", "p", 1, R, NULL, NULL),
        inst("only-off", "q", 1, NULL, NULL, NULL),
    };
    v[1].enabled = false;
    v[2].enabled = false;
    assert_string_equal(chain(v, 3, R, S, NULL), "global");
}

static void test_order_is_priority_then_name(void **state) {
    (void)state;
    struct plugin_instance v[] = {
        inst("b", "b-plugin", 1000, NULL, NULL, NULL),
        inst("a", "a-plugin", 1000, NULL, NULL, NULL),
        inst("low", "z-low", -5, NULL, NULL, NULL),
        inst("high", "m-high", 1450, R, NULL, NULL),
        inst("mid", "k-mid", 910.5, NULL, S, NULL),
    };
    assert_string_equal(chain(v, 5, R, S, NULL), "high a b mid low");
}

static void test_the_order_of_instances_does_not_matter(void **state) {
    (void)state;
    struct plugin_instance v[] = {
        inst("global-p", "p", 10, NULL, NULL, NULL), inst("route-p", "p", 10, R, NULL, NULL),
        inst("service-q", "q", 20, NULL, S, NULL),   inst("global-q", "q", 20, NULL, NULL, NULL),
        inst("global-r", "r", 5, NULL, NULL, NULL),
    };
    const char *want = "service-q route-p global-r";
    assert_string_equal(chain(v, 5, R, S, NULL), want);
    struct plugin_instance rev[5];
    for (size_t i = 0; i < 5; i++)
        rev[i] = v[4 - i];
    assert_string_equal(chain(rev, 5, R, S, NULL), want);
}

static void test_more_than_64_instances(void **state) {
    (void)state;
    static struct plugin_instance v[200];
    static char names[100][16];
    for (size_t i = 0; i < 100; i++) {
        snprintf(names[i], sizeof names[i], "p%03zu", i);
        v[2 * i] = inst("g", names[i], (double)i, NULL, NULL, NULL);
        v[2 * i + 1] = inst("r", names[i], (double)i, R, NULL, NULL);
    }
    const struct plugin_instance *out[200];
    size_t len = plugin_chain_resolve(v, 200, R, S, NULL, out, 200);
    assert_int_equal(len, 100);
    for (size_t i = 0; i < len; i++) {
        assert_string_equal(out[i]->id, "r");           /* the route instance each time */
        assert_string_equal(out[i]->name, names[99 - i]); /* priority 99 first */
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_level_beats_the_ones_below_it),
        cmocka_unit_test(test_scopes_of_other_entities_do_not_apply),
        cmocka_unit_test(test_without_a_consumer_consumer_scoped_instances_wait),
        cmocka_unit_test(test_disabled_instances_do_not_hide_enabled_ones),
        cmocka_unit_test(test_order_is_priority_then_name),
        cmocka_unit_test(test_the_order_of_instances_does_not_matter),
        cmocka_unit_test(test_more_than_64_instances),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
