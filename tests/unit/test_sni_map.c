/* Specification of SNI certificate selection: exact names, then one-label wildcards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tls/sni_map.h"

static struct sni_map *three_certificates(void) {
    struct sni_map *m = sni_map_new();
    assert_true(sni_map_add(m, "api.example.com", 0));
    assert_true(sni_map_add(m, "*.example.com", 1));
    assert_true(sni_map_add(m, "Other.Example.ORG", 2));
    sni_map_seal(m);
    return m;
}

static int lookup(const struct sni_map *m, const char *name) {
    return sni_map_lookup(m, name, strlen(name));
}

static void test_exact_name_wins_over_wildcard(void **state) {
    (void)state;
    struct sni_map *m = three_certificates();
    assert_int_equal(lookup(m, "api.example.com"), 0);
    sni_map_free(m);
}

static void test_wildcard_covers_one_label(void **state) {
    (void)state;
    struct sni_map *m = three_certificates();
    assert_int_equal(lookup(m, "www.example.com"), 1);
    assert_int_equal(lookup(m, "a.b.example.com"), -1);
    assert_int_equal(lookup(m, "example.com"), -1);
    assert_int_equal(lookup(m, ".example.com"), -1);
    sni_map_free(m);
}

static void test_names_compare_case_insensitively(void **state) {
    (void)state;
    struct sni_map *m = three_certificates();
    assert_int_equal(lookup(m, "other.example.org"), 2);
    assert_int_equal(lookup(m, "API.EXAMPLE.COM"), 0);
    assert_int_equal(lookup(m, "WWW.Example.Com"), 1);
    sni_map_free(m);
}

static void test_unknown_and_malformed_names_select_nothing(void **state) {
    (void)state;
    struct sni_map *m = three_certificates();
    assert_int_equal(lookup(m, "example.net"), -1);
    assert_int_equal(lookup(m, ""), -1);
    assert_int_equal(sni_map_lookup(m, "api.example.com\0x", 17), -1);
    char long_name[300];
    memset(long_name, 'a', sizeof long_name);
    assert_int_equal(sni_map_lookup(m, long_name, sizeof long_name), -1);
    sni_map_free(m);
}

static void test_duplicate_name_keeps_the_first(void **state) {
    (void)state;
    struct sni_map *m = sni_map_new();
    assert_true(sni_map_add(m, "a.example.com", 3));
    assert_false(sni_map_add(m, "A.example.com", 4));
    sni_map_seal(m);
    assert_int_equal(lookup(m, "a.example.com"), 3);
    assert_int_equal(sni_map_size(m), 1);
    sni_map_free(m);
}

static void test_empty_map_selects_nothing(void **state) {
    (void)state;
    struct sni_map *m = sni_map_new();
    sni_map_seal(m);
    assert_int_equal(lookup(m, "a.example.com"), -1);
    sni_map_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_name_wins_over_wildcard),
        cmocka_unit_test(test_wildcard_covers_one_label),
        cmocka_unit_test(test_names_compare_case_insensitively),
        cmocka_unit_test(test_unknown_and_malformed_names_select_nothing),
        cmocka_unit_test(test_duplicate_name_keeps_the_first),
        cmocka_unit_test(test_empty_map_selects_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
