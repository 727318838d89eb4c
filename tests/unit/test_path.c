/* Specification of path normalisation and service path joining. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/path.h"

/* Normalises `in` into a heap buffer of exactly strlen(in) + 1 bytes, so the
 * sanitizer catches any write past the documented bound. Returns NULL when
 * path_normalize refuses the path; the caller frees the result. */
static char *normalize(const char *in, size_t len) {
    char *out = malloc(len + 1);
    size_t out_len = SIZE_MAX;
    assert_non_null(out);
    if (path_normalize(in, len, out, &out_len) != 0) {
        free(out);
        return NULL;
    }
    assert_int_equal(out_len, strlen(out));
    return out;
}

static void assert_normalizes(const char *in, const char *want) {
    char *got = normalize(in, strlen(in));
    if (!got) fail_msg("\"%s\" was refused, want \"%s\"", in, want);
    if (strcmp(got, want) != 0) fail_msg("\"%s\" -> \"%s\", want \"%s\"", in, got, want);
    free(got);
}

static void assert_refused_n(const char *in, size_t len) {
    char *got = normalize(in, len);
    if (got) fail_msg("\"%.*s\" was accepted as \"%s\"", (int)len, in, got);
}

static void assert_refused(const char *in) {
    assert_refused_n(in, strlen(in));
}

static void test_plain_path_unchanged(void **state) {
    assert_normalizes("/", "/");
    assert_normalizes("/api/v1/users", "/api/v1/users");
}

static void test_decodes_unreserved_escapes(void **state) {
    assert_normalizes("/%7Euser/%41%62%63", "/~user/Abc");
    assert_normalizes("/%2D%2e%5F%7e%30%39%7A", "/-._~09z");
}

static void test_upper_cases_other_escapes(void **state) {
    assert_normalizes("/a%3ab%c3%a9%20", "/a%3Ab%C3%A9%20");
    assert_normalizes("/%Fe%fF", "/%FE%FF");
}

static void test_keeps_encoded_slash(void **state) {
    assert_normalizes("/a%2fb", "/a%2Fb");
    assert_normalizes("/a%2Fb/c", "/a%2Fb/c");
}

static void test_encoded_slash_does_not_split_segments(void **state) {
    /* "a%2F.." is one segment, not "a" followed by ".." */
    assert_normalizes("/a%2F../b", "/a%2F../b");
    assert_normalizes("/x/a%2Fb/../c", "/x/c");
}

static void test_keeps_encoded_percent_without_double_decoding(void **state) {
    assert_normalizes("/%25", "/%25");
    assert_normalizes("/%252e%252e/x", "/%252e%252e/x");
    assert_normalizes("/%2541", "/%2541");
}

static void test_dot_segments_removed(void **state) {
    assert_normalizes("/a/./b/../c", "/a/c");
    assert_normalizes("/a/b/c/./../../g", "/a/g");
    assert_normalizes("/./a", "/a");
    assert_normalizes("/a/b/../../c", "/c");
}

static void test_encoded_dot_segments_removed(void **state) {
    assert_normalizes("/a/%2e%2e/b", "/b");
    assert_normalizes("/a/%2E%2E/b", "/b");
    assert_normalizes("/a/.%2e/b", "/b");
    assert_normalizes("/a/%2e./b", "/b");
    assert_normalizes("/a/%2e/b", "/a/b");
}

static void test_climbing_above_root_is_error(void **state) {
    assert_refused("/..");
    assert_refused("/../a");
    assert_refused("/a/../..");
    assert_refused("/a/../../b");
    assert_refused("/a/b/../../../c");
    assert_refused("/./..");
}

static void test_encoded_climbing_above_root_is_error(void **state) {
    assert_refused("/%2e%2e/x");
    assert_refused("/%2E%2E");
    assert_refused("/a/.%2e/%2e./x");
}

static void test_trailing_dot_segment_leaves_slash(void **state) {
    assert_normalizes("/a/.", "/a/");
    assert_normalizes("/a/..", "/");
    assert_normalizes("/a/b/..", "/a/");
    assert_normalizes("/.", "/");
    assert_normalizes("/a/./", "/a/");
}

static void test_trailing_slash_preserved(void **state) {
    assert_normalizes("/a/b/", "/a/b/");
    assert_normalizes("/a/b/../", "/a/");
}

static void test_duplicate_slashes_kept(void **state) {
    assert_normalizes("//", "//");
    assert_normalizes("/a//b", "/a//b");
    assert_normalizes("/a///", "/a///");
}

static void test_dot_dot_after_duplicate_slash_removes_empty_segment(void **state) {
    /* RFC 3986 5.2.4: the empty segment between the slashes is the one removed */
    assert_normalizes("/a//../b", "/a/b");
    assert_normalizes("//..", "/");
}

static void test_dots_inside_segments_kept(void **state) {
    assert_normalizes("/a../..b/.../.a/b.", "/a../..b/.../.a/b.");
}

static void test_bad_escape_is_error(void **state) {
    assert_refused("/%zz");
    assert_refused("/%4");
    assert_refused("/%");
    assert_refused("/a%g1");
    assert_refused("/a%4g");
    assert_refused("/a%%41");
}

static void test_encoded_nul_is_error(void **state) {
    assert_refused("/a%00b");
    assert_refused("/%00");
}

static void test_allowed_raw_bytes_kept(void **state) {
    assert_normalizes("/!$&'()*+,;=:@-._~azAZ09", "/!$&'()*+,;=:@-._~azAZ09");
}

static void test_disallowed_raw_bytes_are_error(void **state) {
    static const char *const bad[] = {
        "/a b", "/a\tb", "/a\x01", "/a\x7f", "/a\x80", "/a\xff", "/a\"", "/a<", "/a>", "/a\\b",
        "/a^",  "/a`",   "/a{",    "/a|",    "/a}",    "/a#",    "/a?b", "/a[", "/a]", "/a\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_refused(bad[i]);
}

static void test_raw_nul_is_error(void **state) {
    assert_refused_n("/a\0b", 4);
}

static void test_must_start_with_slash(void **state) {
    assert_refused("");
    assert_refused("a/b");
    assert_refused("*");
    assert_refused("http://example.com/");
    assert_refused("%2Fa");
}

static void test_uses_len_not_nul(void **state) {
    char *got = normalize("/a/b/../c", 4);
    assert_non_null(got);
    assert_string_equal(got, "/a/b");
    free(got);
}

static void test_normalizes_in_place(void **state) {
    char buf[] = "/a/%2e%2e/%7e%2fx/./y/.";
    size_t out_len = 0;
    assert_int_equal(path_normalize(buf, strlen(buf), buf, &out_len), 0);
    assert_string_equal(buf, "/~%2Fx/y/");
    assert_int_equal(out_len, strlen("/~%2Fx/y/"));
}

/* ---- path_join ---- */

static void assert_joins(const char *service, const char *rest, const char *want) {
    char out[64];
    int n = path_join(service, rest, strlen(rest), out, sizeof out);
    if (n < 0) fail_msg("(\"%s\", \"%s\") did not fit", service ? service : "NULL", rest);
    if (strcmp(out, want) != 0)
        fail_msg("(\"%s\", \"%s\") -> \"%s\", want \"%s\"", service ? service : "NULL", rest, out,
                 want);
    assert_int_equal(n, strlen(want));
}

static void test_join_one_slash(void **state) {
    assert_joins("/v1", "/7", "/v1/7");
    assert_joins("/v1/", "/7", "/v1/7");
    assert_joins("/v1", "x", "/v1/x");
    assert_joins("/v1/", "x", "/v1/x");
}

static void test_join_empty_rest_keeps_service_path(void **state) {
    assert_joins("/v1", "", "/v1");
    assert_joins("/v1/", "", "/v1/");
}

static void test_join_without_service_path_is_rooted(void **state) {
    assert_joins(NULL, "", "/");
    assert_joins("", "", "/");
    assert_joins(NULL, "/x", "/x");
    assert_joins("", "/x", "/x");
    assert_joins(NULL, "x", "/x");
}

static void test_join_root_service_path(void **state) {
    assert_joins("/", "/x", "/x");
    assert_joins("/", "x", "/x");
    assert_joins("/", "", "/");
}

static void test_join_only_merges_the_seam_slash(void **state) {
    /* duplicate slashes inside the request path are the client's and kept */
    assert_joins("/v1", "//x", "/v1//x");
    assert_joins("/v1/", "//x", "/v1//x");
}

static void test_join_uses_rest_len_not_nul(void **state) {
    char out[16];
    assert_int_equal(path_join("/v1", "/7/extra", 2, out, sizeof out), 5);
    assert_string_equal(out, "/v1/7");
}

static void test_join_refuses_what_does_not_fit(void **state) {
    char out[6];
    assert_int_equal(path_join("/v1", "/7", 2, out, 6), 5); /* "/v1/7" + NUL fits exactly */
    assert_string_equal(out, "/v1/7");
    assert_int_equal(path_join("/v1", "/7", 2, out, 5), -1);
    assert_int_equal(path_join("/v1", "", 0, out, 3), -1);
    assert_int_equal(path_join(NULL, "", 0, out, 1), -1);
    assert_int_equal(path_join(NULL, "", 0, out, 0), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_path_unchanged),
        cmocka_unit_test(test_decodes_unreserved_escapes),
        cmocka_unit_test(test_upper_cases_other_escapes),
        cmocka_unit_test(test_keeps_encoded_slash),
        cmocka_unit_test(test_encoded_slash_does_not_split_segments),
        cmocka_unit_test(test_keeps_encoded_percent_without_double_decoding),
        cmocka_unit_test(test_dot_segments_removed),
        cmocka_unit_test(test_encoded_dot_segments_removed),
        cmocka_unit_test(test_climbing_above_root_is_error),
        cmocka_unit_test(test_encoded_climbing_above_root_is_error),
        cmocka_unit_test(test_trailing_dot_segment_leaves_slash),
        cmocka_unit_test(test_trailing_slash_preserved),
        cmocka_unit_test(test_duplicate_slashes_kept),
        cmocka_unit_test(test_dot_dot_after_duplicate_slash_removes_empty_segment),
        cmocka_unit_test(test_dots_inside_segments_kept),
        cmocka_unit_test(test_bad_escape_is_error),
        cmocka_unit_test(test_encoded_nul_is_error),
        cmocka_unit_test(test_allowed_raw_bytes_kept),
        cmocka_unit_test(test_disallowed_raw_bytes_are_error),
        cmocka_unit_test(test_raw_nul_is_error),
        cmocka_unit_test(test_must_start_with_slash),
        cmocka_unit_test(test_uses_len_not_nul),
        cmocka_unit_test(test_normalizes_in_place),
        cmocka_unit_test(test_join_one_slash),
        cmocka_unit_test(test_join_empty_rest_keeps_service_path),
        cmocka_unit_test(test_join_without_service_path_is_rooted),
        cmocka_unit_test(test_join_root_service_path),
        cmocka_unit_test(test_join_only_merges_the_seam_slash),
        cmocka_unit_test(test_join_uses_rest_len_not_nul),
        cmocka_unit_test(test_join_refuses_what_does_not_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
