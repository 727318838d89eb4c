/* Unit tests for the per-worker metrics tables and their Prometheus text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"

static void test_counts_are_summed_over_workers_by_route_service_and_status(void **state) {
    (void)state;
    struct metrics *w[2] = {metrics_new(), metrics_new()};
    metrics_record(w[0], "orders", "orders-svc", 200, 0.5);
    metrics_record(w[1], "orders", "orders-svc", 200, 3.0);
    metrics_record(w[1], "orders", "orders-svc", 502, 7.0);
    metrics_record(w[0], NULL, NULL, 404, 0.1);
    char *text = metrics_render(w, 2, 5);
    assert_non_null(strstr(text, "weir_connections_active 5\n"));
    assert_non_null(strstr(
        text,
        "weir_http_requests_total{route=\"orders\",service=\"orders-svc\",code=\"200\"} 2\n"));
    assert_non_null(strstr(
        text,
        "weir_http_requests_total{route=\"orders\",service=\"orders-svc\",code=\"502\"} 1\n"));
    assert_non_null(
        strstr(text, "weir_http_requests_total{route=\"\",service=\"\",code=\"404\"} 1\n"));
    free(text);
    metrics_free(w[0]);
    metrics_free(w[1]);
}

static void test_latency_histogram_is_cumulative_across_statuses(void **state) {
    (void)state;
    struct metrics *w[1] = {metrics_new()};
    metrics_record(w[0], "r", "s", 200, 0.5);   /* le 1 */
    metrics_record(w[0], "r", "s", 500, 4.0);   /* le 5 */
    metrics_record(w[0], "r", "s", 200, 99999); /* +Inf only */
    char *text = metrics_render(w, 1, 0);
    assert_non_null(
        strstr(text, "weir_request_latency_ms_bucket{route=\"r\",service=\"s\",le=\"1\"} 1\n"));
    assert_non_null(
        strstr(text, "weir_request_latency_ms_bucket{route=\"r\",service=\"s\",le=\"5\"} 2\n"));
    assert_non_null(
        strstr(text, "weir_request_latency_ms_bucket{route=\"r\",service=\"s\",le=\"10000\"} 2\n"));
    assert_non_null(
        strstr(text, "weir_request_latency_ms_bucket{route=\"r\",service=\"s\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(text, "weir_request_latency_ms_count{route=\"r\",service=\"s\"} 3\n"));
    free(text);
    metrics_free(w[0]);
}

static void test_label_values_are_escaped(void **state) {
    (void)state;
    struct metrics *w[1] = {metrics_new()};
    metrics_record(w[0], "a\"b\\c", "s", 200, 1);
    char *text = metrics_render(w, 1, 0);
    assert_non_null(strstr(text, "route=\"a\\\"b\\\\c\""));
    free(text);
    metrics_free(w[0]);
}

static void test_a_full_table_counts_in_the_overflow_series(void **state) {
    (void)state;
    struct metrics *w[1] = {metrics_new()};
    char name[32];
    for (int i = 0; i < METRICS_SLOTS + 10; i++) {
        snprintf(name, sizeof name, "route-%d", i);
        metrics_record(w[0], name, "s", 200, 1);
    }
    char *text = metrics_render(w, 1, 0);
    assert_non_null(
        strstr(text, "weir_http_requests_total{route=\"\",service=\"\",code=\"0\"} 10\n"));
    free(text);
    metrics_free(w[0]);
}

static void test_target_health_has_one_line_per_state(void **state) {
    (void)state;
    char *text = strdup("# existing\n");
    struct metrics_target_health h[] = {
        {"pool", "a.test:80", "10.0.0.1:80", "unhealthy"},
        {"po\"ol", "b:1", "[::1]:1", "healthchecks_off"},
    };
    text = metrics_render_target_health(text, h, 2);
    assert_non_null(strstr(text, "# existing\n# HELP weir_upstream_target_health "));
    assert_non_null(strstr(text, "# TYPE weir_upstream_target_health gauge\n"));
    assert_non_null(strstr(text,
                           "weir_upstream_target_health{upstream=\"pool\",target=\"a.test:80\","
                           "address=\"10.0.0.1:80\",state=\"unhealthy\"} 1\n"));
    assert_non_null(strstr(text,
                           "weir_upstream_target_health{upstream=\"pool\",target=\"a.test:80\","
                           "address=\"10.0.0.1:80\",state=\"healthy\"} 0\n"));
    assert_non_null(strstr(text,
                           "weir_upstream_target_health{upstream=\"pool\",target=\"a.test:80\","
                           "address=\"10.0.0.1:80\",state=\"healthchecks_off\"} 0\n"));
    assert_non_null(strstr(text,
                           "weir_upstream_target_health{upstream=\"pool\",target=\"a.test:80\","
                           "address=\"10.0.0.1:80\",state=\"dns_error\"} 0\n"));
    assert_non_null(strstr(text, "{upstream=\"po\\\"ol\",target=\"b:1\",address=\"[::1]:1\","
                                 "state=\"healthchecks_off\"} 1\n"));
    size_t lines = 0;
    for (const char *p = text; (p = strstr(p, "weir_upstream_target_health{")); p++)
        lines++;
    assert_int_equal(lines, 8);
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_are_summed_over_workers_by_route_service_and_status),
        cmocka_unit_test(test_latency_histogram_is_cumulative_across_statuses),
        cmocka_unit_test(test_label_values_are_escaped),
        cmocka_unit_test(test_a_full_table_counts_in_the_overflow_series),
        cmocka_unit_test(test_target_health_has_one_line_per_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
