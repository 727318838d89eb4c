/* Unit tests for Kong's health counters (upstream/health_state.h) and the healthchecks
 * settings with Kong's defaults (upstream/health_config.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>

#include <string.h>

#include "config/config.h"
#include "upstream/health.h"
#include "upstream/health_config.h"
#include "upstream/health_internal.h"
#include "upstream/health_state.h"

/* Applies n events of one kind. */
static uint64_t feed(uint64_t s, enum health_event ev, unsigned threshold, int n) {
    while (n-- > 0)
        s = health_state_next(s, ev, threshold);
    return s;
}

static void test_failures_reaching_the_threshold_make_a_target_unhealthy(void **state) {
    (void)state;
    uint64_t s = health_state_of(true);
    s = feed(s, HEALTH_HTTP_FAILURE, 3, 2);
    assert_true(health_state_healthy(s));
    assert_int_equal(health_state_count(s, HEALTH_HTTP_FAILURE), 2);
    s = health_state_next(s, HEALTH_HTTP_FAILURE, 3);
    assert_false(health_state_healthy(s));
    assert_int_equal(health_state_count(s, HEALTH_HTTP_FAILURE), 0); /* counters restart */
}

static void test_each_failure_kind_has_its_own_counter(void **state) {
    (void)state;
    uint64_t s = health_state_of(true);
    s = health_state_next(s, HEALTH_TCP_FAILURE, 2);
    s = health_state_next(s, HEALTH_TIMEOUT, 2);
    s = health_state_next(s, HEALTH_HTTP_FAILURE, 2);
    assert_true(health_state_healthy(s));
    s = health_state_next(s, HEALTH_TIMEOUT, 2);
    assert_false(health_state_healthy(s));
}

static void test_successes_bring_an_unhealthy_target_back(void **state) {
    (void)state;
    uint64_t s = health_state_of(false);
    s = feed(s, HEALTH_SUCCESS, 2, 1);
    assert_false(health_state_healthy(s));
    assert_int_equal(health_state_count(s, HEALTH_SUCCESS), 1);
    s = health_state_next(s, HEALTH_SUCCESS, 2);
    assert_true(health_state_healthy(s));
    assert_int_equal(health_state_count(s, HEALTH_SUCCESS), 0);
}

static void test_a_failure_breaks_a_run_of_successes(void **state) {
    (void)state;
    uint64_t s = feed(health_state_of(false), HEALTH_SUCCESS, 3, 2);
    s = health_state_next(s, HEALTH_TIMEOUT, 5);
    assert_int_equal(health_state_count(s, HEALTH_SUCCESS), 0);
    s = feed(s, HEALTH_SUCCESS, 3, 2);
    assert_false(health_state_healthy(s));
    s = health_state_next(s, HEALTH_SUCCESS, 3);
    assert_true(health_state_healthy(s));
}

static void test_a_success_clears_the_failure_counters(void **state) {
    (void)state;
    uint64_t s = feed(health_state_of(true), HEALTH_HTTP_FAILURE, 3, 2);
    s = health_state_next(s, HEALTH_SUCCESS, 1);
    assert_int_equal(health_state_count(s, HEALTH_HTTP_FAILURE), 0);
    s = feed(s, HEALTH_HTTP_FAILURE, 3, 2);
    assert_true(health_state_healthy(s));
}

static void test_a_zero_threshold_ignores_the_event(void **state) {
    (void)state;
    uint64_t s = feed(health_state_of(true), HEALTH_HTTP_FAILURE, 3, 2);
    /* successes disabled (Kong's default): they clear nothing, failures keep adding up */
    assert_int_equal(health_state_next(s, HEALTH_SUCCESS, 0), s);
    assert_int_equal(feed(s, HEALTH_TCP_FAILURE, 0, 10), s);
    assert_false(health_state_healthy(health_state_next(s, HEALTH_HTTP_FAILURE, 3)));
}

static void test_steady_state_events_change_nothing(void **state) {
    (void)state;
    /* the request path's common case: no store at all */
    assert_int_equal(health_state_next(health_state_of(true), HEALTH_SUCCESS, 5),
                     health_state_of(true));
    assert_int_equal(health_state_next(health_state_of(false), HEALTH_TIMEOUT, 5),
                     health_state_of(false));
}

static void test_a_threshold_of_one_trips_at_once(void **state) {
    (void)state;
    assert_false(health_state_healthy(health_state_next(0, HEALTH_TCP_FAILURE, 1)));
    assert_true(health_state_healthy(health_state_next(HEALTH_STATE_UNHEALTHY, HEALTH_SUCCESS, 1)));
}

static void test_counters_saturate(void **state) {
    (void)state;
    uint64_t s = feed(health_state_of(true), HEALTH_TIMEOUT, 255, 254);
    assert_int_equal(health_state_count(s, HEALTH_TIMEOUT), 254);
    s = health_state_next(s, HEALTH_TIMEOUT, 255);
    assert_false(health_state_healthy(s));
}

static struct health_config *parse(const char *text) {
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
    assert_non_null(j);
    struct health_config *c = health_config_parse(j);
    json_decref(j);
    return c;
}

static void test_checks_are_off_by_default(void **state) {
    (void)state;
    assert_null(health_config_parse(NULL));
    assert_null(parse("null"));
    assert_null(parse("[]"));
    assert_null(parse("{}"));
    /* Kong's full default object */
    assert_null(parse("{\"active\":{\"type\":\"http\",\"timeout\":1,\"healthy\":{\"interval\":0,"
                      "\"successes\":0},\"unhealthy\":{\"interval\":0,\"http_failures\":0}},"
                      "\"passive\":{\"healthy\":{\"successes\":5},\"unhealthy\":{"
                      "\"http_failures\":0,\"tcp_failures\":0,\"timeouts\":0}}}"));
}

static void test_active_settings_take_kong_defaults(void **state) {
    (void)state;
    struct health_config *c = parse("{\"active\":{\"healthy\":{\"interval\":0.25}}}");
    assert_non_null(c);
    assert_true(c->active_on);
    assert_false(c->passive_on);
    assert_int_equal(c->active.type, HEALTH_PROBE_HTTP);
    assert_string_equal(c->active.http_path, "/");
    assert_int_equal(c->active.timeout_ms, 1000);
    assert_int_equal(c->active.concurrency, 10);
    assert_true(c->active.verify);
    assert_null(c->active.sni);
    assert_string_equal(c->active.headers, "");
    assert_int_equal(c->active.healthy_interval_ms, 250);
    assert_int_equal(c->active.unhealthy_interval_ms, 0);
    assert_true(health_statuses_has(&c->active.healthy_statuses, 302));
    assert_false(health_statuses_has(&c->active.healthy_statuses, 204));
    assert_true(health_statuses_has(&c->active.unhealthy_statuses, 404));
    assert_true(health_statuses_has(&c->passive.unhealthy_statuses, 429));
    assert_false(health_statuses_has(&c->passive.unhealthy_statuses, 502));
    assert_true(health_statuses_has(&c->passive.healthy_statuses, 226));
    health_config_release(c);
}

static void test_active_settings_as_given(void **state) {
    (void)state;
    struct health_config *c = parse(
        "{\"active\":{\"type\":\"tcp\",\"timeout\":0.0001,\"concurrency\":2,"
        "\"http_path\":\"/status\",\"https_sni\":\"a.example\",\"headers\":{\"X-A\":[\"1\","
        "\"2\"]},\"unhealthy\":{\"interval\":2,\"http_statuses\":[599],\"tcp_failures\":4}}}");
    assert_non_null(c);
    assert_int_equal(c->active.type, HEALTH_PROBE_TCP);
    assert_int_equal(c->active.timeout_ms, 1); /* rounded up, never 0 */
    assert_int_equal(c->active.concurrency, 2);
    assert_string_equal(c->active.http_path, "/status");
    assert_string_equal(c->active.sni, "a.example");
    assert_string_equal(c->active.headers, "X-A: 1\r\nX-A: 2\r\n");
    assert_int_equal(c->active.unhealthy_interval_ms, 2000);
    assert_true(health_statuses_has(&c->active.unhealthy_statuses, 599));
    assert_false(health_statuses_has(&c->active.unhealthy_statuses, 500));
    assert_int_equal(c->active.thresholds.of[HEALTH_TCP_FAILURE], 4);
    assert_int_equal(c->active.thresholds.of[HEALTH_HTTP_FAILURE], 0);
    health_config_release(c);
}

static void test_passive_failure_thresholds_turn_checks_on(void **state) {
    (void)state;
    struct health_config *c =
        parse("{\"passive\":{\"type\":\"http\",\"unhealthy\":{\"timeouts\":3},"
              "\"healthy\":{\"successes\":2,\"http_statuses\":null}}}");
    assert_non_null(c);
    assert_false(c->active_on);
    assert_true(c->passive_on);
    assert_false(c->passive.tcp);
    assert_int_equal(c->passive.thresholds.of[HEALTH_TIMEOUT], 3);
    assert_int_equal(c->passive.thresholds.of[HEALTH_SUCCESS], 2);
    assert_true(health_statuses_has(&c->passive.healthy_statuses, 200)); /* null: default */
    health_config_release(c);
}

/* ---- the registry: health kept by upstream id and target across configurations ---- */

#define UID "5b1e3c0e-0000-4000-8000-000000000001"

static struct config *load_pool(const char *healthchecks, const char *targets) {
    char doc[1024];
    snprintf(doc, sizeof doc,
             "{\"_format_version\":\"3.0\",\"upstreams\":[{\"id\":\"" UID "\",\"name\":\"pool\","
             "\"healthchecks\":%s,\"targets\":[%s]}]}",
             healthchecks, targets);
    struct errlist errs;
    errlist_init(&errs);
    struct config *c = config_load_string(doc, strlen(doc), "/etc/weir", &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "    error: %s\n", errs.items[i]);
    assert_non_null(c);
    errlist_free(&errs);
    return c;
}

#define PASSIVE "{\"passive\":{\"unhealthy\":{\"http_failures\":1}}}"
#define T1 "{\"target\":\"127.0.0.1:9001\"}"
#define T2 "{\"target\":\"127.0.0.1:9002\"}"

static void test_health_survives_a_new_configuration_that_keeps_the_target(void **state) {
    (void)state;
    struct config *a = load_pool(PASSIVE, T1);
    health_attach(a);
    struct upstream *u = &a->upstreams[0];
    assert_non_null(u->health);
    struct health_target *h = u->targets[0].health;
    assert_non_null(h);
    assert_string_equal(health_target_state(u, &u->targets[0]), "HEALTHY");
    health_passive_status(u, &u->targets[0], 500);
    assert_string_equal(health_target_state(u, &u->targets[0]), "UNHEALTHY");

    /* the next configuration (settings changed, a target added) shares the entry */
    struct config *b = load_pool("{\"passive\":{\"unhealthy\":{\"timeouts\":2}}}", T1 "," T2);
    health_attach(b);
    struct upstream *ub = &b->upstreams[0];
    assert_ptr_equal(ub->targets[0].health, h);
    assert_string_equal(health_target_state(ub, &ub->targets[0]), "UNHEALTHY");
    assert_string_equal(health_target_state(ub, &ub->targets[1]), "HEALTHY");
    assert_int_equal(health_registry.n_entries, 2);
    health_detach(a);
    config_free(a);
    assert_null(h->bindings->next); /* only b's binding is left */
    assert_string_equal(health_target_state(ub, &ub->targets[0]), "UNHEALTHY");

    /* checks off: no entry, HEALTHCHECKS_OFF; the entries go with the last configuration */
    struct config *c = load_pool("null", T1);
    health_attach(c);
    assert_null(c->upstreams[0].health);
    assert_null(c->upstreams[0].targets[0].health);
    assert_string_equal(health_target_state(&c->upstreams[0], &c->upstreams[0].targets[0]),
                        "HEALTHCHECKS_OFF");
    health_detach(b);
    config_free(b);
    assert_int_equal(health_registry.n_entries, 0);
    assert_null(health_registry.head);
    assert_null(health_registry.groups);
    health_detach(c);
    config_free(c);
}

static void test_passive_statuses_follow_the_lists(void **state) {
    (void)state;
    struct config *a = load_pool("{\"passive\":{\"healthy\":{\"successes\":2},\"unhealthy\":{"
                                 "\"http_failures\":2,\"http_statuses\":[502]}}}",
                                 T1);
    health_attach(a);
    struct upstream *u = &a->upstreams[0];
    struct upstream_target *t = &u->targets[0];
    health_passive_status(u, t, 500); /* not in the list */
    health_passive_status(u, t, 500);
    assert_string_equal(health_target_state(u, t), "HEALTHY");
    health_passive_status(u, t, 502);
    health_passive_status(u, t, 404); /* neither list: breaks nothing */
    health_passive_status(u, t, 502);
    assert_string_equal(health_target_state(u, t), "UNHEALTHY");
    health_passive_status(u, t, 200);
    health_passive_event(u, t, HEALTH_TCP_FAILURE); /* threshold 0: counts nothing */
    health_passive_status(u, t, 204);
    assert_string_equal(health_target_state(u, t), "HEALTHY");
    health_set(t->health, false);
    assert_string_equal(health_target_state(u, t), "UNHEALTHY");
    health_detach(a);
    config_free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failures_reaching_the_threshold_make_a_target_unhealthy),
        cmocka_unit_test(test_each_failure_kind_has_its_own_counter),
        cmocka_unit_test(test_successes_bring_an_unhealthy_target_back),
        cmocka_unit_test(test_a_failure_breaks_a_run_of_successes),
        cmocka_unit_test(test_a_success_clears_the_failure_counters),
        cmocka_unit_test(test_a_zero_threshold_ignores_the_event),
        cmocka_unit_test(test_steady_state_events_change_nothing),
        cmocka_unit_test(test_a_threshold_of_one_trips_at_once),
        cmocka_unit_test(test_counters_saturate),
        cmocka_unit_test(test_checks_are_off_by_default),
        cmocka_unit_test(test_active_settings_take_kong_defaults),
        cmocka_unit_test(test_active_settings_as_given),
        cmocka_unit_test(test_passive_failure_thresholds_turn_checks_on),
        cmocka_unit_test(test_health_survives_a_new_configuration_that_keeps_the_target),
        cmocka_unit_test(test_passive_statuses_follow_the_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
