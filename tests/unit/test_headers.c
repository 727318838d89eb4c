/* Unit tests for header rules: hop-by-hop, Connection-named fields,
 * X-Request-ID validity and X-Real-IP from X-Forwarded-For. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <string.h>

#include "http/headers.h"

#define H(n, v)                                                                                    \
    { n, sizeof(n) - 1, v, sizeof(v) - 1, HDR_OTHER, false }

static void test_known_headers_are_recognised_case_insensitively(void **state) {
    (void)state;
    assert_int_equal(header_kind_of("Content-Length", 14), HDR_CONTENT_LENGTH);
    assert_int_equal(header_kind_of("TRANSFER-ENCODING", 17), HDR_TRANSFER_ENCODING);
    assert_int_equal(header_kind_of("x-forwarded-for", 15), HDR_X_FORWARDED_FOR);
    assert_int_equal(header_kind_of("X-Custom", 8), HDR_OTHER);
}

static void test_hop_by_hop_fields(void **state) {
    (void)state;
    assert_true(header_is_hop_by_hop(HDR_CONNECTION));
    assert_true(header_is_hop_by_hop(HDR_KEEP_ALIVE));
    assert_true(header_is_hop_by_hop(HDR_TE));
    assert_true(header_is_hop_by_hop(HDR_TRAILER));
    assert_true(header_is_hop_by_hop(HDR_UPGRADE));
    assert_true(header_is_hop_by_hop(HDR_PROXY_CONNECTION));
    assert_true(header_is_hop_by_hop(HDR_TRANSFER_ENCODING));
    assert_false(header_is_hop_by_hop(HDR_HOST));
    assert_false(header_is_hop_by_hop(HDR_OTHER));
}

static void test_connection_named_headers_are_dropped(void **state) {
    (void)state;
    struct http_header h[] = {H("Connection", "close, X-Secret ,foo"), H("X-Secret", "1"),
                              H("Foo", "2"), H("X-Keep", "3")};
    for (size_t i = 0; i < 4; i++)
        h[i].kind = header_kind_of(h[i].name, h[i].name_len);
    headers_mark_connection_named(h, 4);
    assert_true(h[1].drop);
    assert_true(h[2].drop);
    assert_false(h[3].drop);
}

static void test_list_has_ignores_whitespace_and_case(void **state) {
    (void)state;
    const char *v = " Keep-Alive ,\tUpgrade";
    assert_true(header_list_has(v, strlen(v), "upgrade", 7));
    assert_true(header_list_has(v, strlen(v), "keep-alive", 10));
    assert_false(header_list_has(v, strlen(v), "close", 5));
    assert_false(header_list_has(v, strlen(v), "keep", 4));
}

static void test_request_id_validity(void **state) {
    (void)state;
    assert_true(header_request_id_valid("abc-DEF_1.2:3", 13));
    assert_false(header_request_id_valid("", 0));
    assert_false(header_request_id_valid("a b", 3));
    assert_false(header_request_id_valid("a\"b", 3));
    char long_id[130];
    memset(long_id, 'a', sizeof long_id);
    assert_true(header_request_id_valid(long_id, 128));
    assert_false(header_request_id_valid(long_id, 129));
}

static struct weir_settings trusted_settings(struct cidr *c, size_t n) {
    struct weir_settings w;
    memset(&w, 0, sizeof w);
    w.trusted_ips = c;
    w.n_trusted_ips = n;
    return w;
}

static void test_real_ip_is_rightmost_untrusted(void **state) {
    (void)state;
    struct cidr c = {.family = AF_INET, .prefix_len = 8};
    inet_pton(AF_INET, "10.0.0.0", c.addr);
    struct weir_settings w = trusted_settings(&c, 1);
    const char *xff = "203.0.113.9, 198.51.100.7, 10.1.2.3";
    char out[64];
    assert_true(header_real_ip_from_xff(&w, xff, strlen(xff), out, sizeof out));
    assert_string_equal(out, "198.51.100.7");
}

static void test_real_ip_all_trusted_is_leftmost(void **state) {
    (void)state;
    struct cidr c = {.family = AF_INET, .prefix_len = 8};
    inet_pton(AF_INET, "10.0.0.0", c.addr);
    struct weir_settings w = trusted_settings(&c, 1);
    const char *xff = "10.0.0.1,10.0.0.2";
    char out[64];
    assert_true(header_real_ip_from_xff(&w, xff, strlen(xff), out, sizeof out));
    assert_string_equal(out, "10.0.0.1");
}

static void test_real_ip_garbage_is_rejected(void **state) {
    (void)state;
    struct weir_settings w = trusted_settings(NULL, 0);
    const char *xff = "not-an-ip, ";
    char out[64];
    assert_false(header_real_ip_from_xff(&w, xff, strlen(xff), out, sizeof out));
}

static void test_collect_joins_split_names_and_values(void **state) {
    (void)state;
    const char head[] = "X-Long-Name: va lue";
    struct http_header h[2];
    size_t n = 0;
    assert_int_equal(header_collect_field(h, &n, 2, head, 4), 0);
    assert_int_equal(header_collect_field(h, &n, 2, head + 4, 7), 0); /* same name, continued */
    header_collect_value(h, n, head + 13, 3);
    header_collect_value(h, n, head + 16, 3);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].name_len, 11);
    assert_memory_equal(h[0].value, "va lue", 6);
    assert_int_equal(h[0].value_len, 6);
}

static void test_collect_refuses_more_than_capacity(void **state) {
    (void)state;
    const char head[] = "A: 1B: 2";
    struct http_header h[1];
    size_t n = 0;
    assert_int_equal(header_collect_field(h, &n, 1, head, 1), 0);
    header_collect_value(h, n, head + 3, 1);
    assert_int_equal(header_collect_field(h, &n, 1, head + 4, 1), -1);
}

static void test_finish_trims_trailing_whitespace_and_fills_empty_values(void **state) {
    (void)state;
    struct http_header h = {"Content-Length", 14, "42 \t", 4, HDR_OTHER, false};
    header_finish(&h);
    assert_int_equal(h.value_len, 2);
    assert_int_equal(h.kind, HDR_CONTENT_LENGTH);
    struct http_header e = {"X-Empty", 7, NULL, 0, HDR_OTHER, false};
    header_finish(&e);
    assert_non_null(e.value);
    assert_int_equal(e.value_len, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_headers_are_recognised_case_insensitively),
        cmocka_unit_test(test_hop_by_hop_fields),
        cmocka_unit_test(test_connection_named_headers_are_dropped),
        cmocka_unit_test(test_list_has_ignores_whitespace_and_case),
        cmocka_unit_test(test_request_id_validity),
        cmocka_unit_test(test_real_ip_is_rightmost_untrusted),
        cmocka_unit_test(test_real_ip_all_trusted_is_leftmost),
        cmocka_unit_test(test_real_ip_garbage_is_rejected),
        cmocka_unit_test(test_collect_joins_split_names_and_values),
        cmocka_unit_test(test_collect_refuses_more_than_capacity),
        cmocka_unit_test(test_finish_trims_trailing_whitespace_and_fills_empty_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
