/* Specification of the strict head and chunked-framing checks that stand in
 * front of http-parser against request smuggling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/head_check.h"

#define S(lit) (lit), (sizeof(lit) - 1) /* a literal and its length, NULs included */

/* ---- head_check helpers ---- */

struct head_result {
    enum head_status status;
    size_t head_len;
    int n_fields;
    const char *reason;
};

/* Copies into a heap buffer of exactly len bytes so the sanitizer catches any
 * read past len. */
static char *exact_copy(const char *s, size_t len) {
    char *b = malloc(len ? len : 1);
    assert_non_null(b);
    memcpy(b, s, len);
    return b;
}

static struct head_result scan_once(const char *s, size_t len, bool is_request) {
    struct head_result r = {0};
    size_t scanned = 0;
    char *b = exact_copy(s, len);
    r.status = head_check(b, len, is_request, &scanned, &r.head_len, &r.n_fields, &r.reason);
    free(b);
    return r;
}

/* Feeds s as if it arrived one byte per read: the same cursor, a buffer that
 * grows by one byte per call, a fresh n_fields each time (as a caller with a
 * local would). Stops at the first non-INCOMPLETE answer. */
static struct head_result scan_bytewise(const char *s, size_t len, bool is_request) {
    struct head_result r = {HEAD_INCOMPLETE, 0, 0, NULL};
    size_t scanned = 0;
    for (size_t n = 0; n <= len && r.status == HEAD_INCOMPLETE; n++) {
        char *b = exact_copy(s, n);
        r.n_fields = -1;
        r.status = head_check(b, n, is_request, &scanned, &r.head_len, &r.n_fields, &r.reason);
        free(b);
    }
    return r;
}

/* Scans s in two calls split at `split`. */
static struct head_result scan_split(const char *s, size_t len, size_t split, bool is_request) {
    struct head_result r = {0};
    size_t scanned = 0;
    char *b = exact_copy(s, split);
    r.status = head_check(b, split, is_request, &scanned, &r.head_len, &r.n_fields, &r.reason);
    free(b);
    if (r.status != HEAD_INCOMPLETE) return r;
    b = exact_copy(s, len);
    r.status = head_check(b, len, is_request, &scanned, &r.head_len, &r.n_fields, &r.reason);
    free(b);
    return r;
}

static void assert_same_result(struct head_result a, struct head_result b) {
    assert_int_equal(a.status, b.status);
    if (a.status == HEAD_COMPLETE) {
        assert_int_equal(a.head_len, b.head_len);
        assert_int_equal(a.n_fields, b.n_fields);
        assert_null(a.reason);
        assert_null(b.reason);
    } else if (a.status == HEAD_BAD) {
        assert_string_equal(a.reason, b.reason);
    }
}

/* Every way of delivering s must give the single-scan answer. */
static struct head_result scan_all_ways(const char *s, size_t len, bool is_request) {
    struct head_result once = scan_once(s, len, is_request);
    assert_same_result(once, scan_bytewise(s, len, is_request));
    for (size_t split = 0; split <= len; split++)
        assert_same_result(once, scan_split(s, len, split, is_request));
    return once;
}

static void assert_complete(const char *s, size_t len, bool is_request, size_t head_len,
                            int n_fields) {
    struct head_result r = scan_all_ways(s, len, is_request);
    if (r.status != HEAD_COMPLETE)
        fail_msg("\"%.*s\": status %d (%s), want complete", (int)len, s, r.status,
                 r.reason ? r.reason : "-");
    assert_int_equal(r.head_len, head_len);
    assert_int_equal(r.n_fields, n_fields);
}

static void assert_bad(const char *s, size_t len, bool is_request, const char *reason) {
    struct head_result r = scan_all_ways(s, len, is_request);
    if (r.status != HEAD_BAD) fail_msg("\"%.*s\": status %d, want bad", (int)len, s, r.status);
    assert_string_equal(r.reason, reason);
}

#define REQUEST_OK(lit, n_fields) assert_complete(S(lit), true, sizeof(lit) - 1, n_fields)
#define RESPONSE_OK(lit, n_fields) assert_complete(S(lit), false, sizeof(lit) - 1, n_fields)
#define REQUEST_BAD(lit, reason) assert_bad(S(lit), true, reason)
#define RESPONSE_BAD(lit, reason) assert_bad(S(lit), false, reason)
/* A field line wrapped into an otherwise valid request. */
#define FIELD_BAD(line, reason) REQUEST_BAD("GET / HTTP/1.1\r\nHost: a\r\n" line "\r\n\r\n", reason)

static const char BAD_REQUEST_LINE[] = "invalid request line";
static const char BAD_STATUS_LINE[] = "invalid status line";

/* ---- head_check: what is accepted ---- */

static void test_minimal_request_complete(void **state) {
    REQUEST_OK("GET / HTTP/1.1\r\n\r\n", 0);
    REQUEST_OK("GET / HTTP/1.0\r\n\r\n", 0);
}

static void test_counts_fields(void **state) {
    REQUEST_OK("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1);
    REQUEST_OK("GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Empty:\r\n\r\n", 3);
    RESPONSE_OK("HTTP/1.1 204 No Content\r\nA: 1\r\nB: 2\r\n\r\n", 2);
}

static void test_counts_many_fields_scanned_bytewise(void **state) {
    enum { N = 500 };
    static const char line[] = "X-Field-Name: some value\r\n";
    size_t len = 0;
    char *s = malloc(32 + N * (sizeof line - 1));
    assert_non_null(s);
    memcpy(s, "GET /x HTTP/1.1\r\n", 17);
    len += 17;
    for (int i = 0; i < N; i++) {
        memcpy(s + len, line, sizeof line - 1);
        len += sizeof line - 1;
    }
    memcpy(s + len, "\r\n", 2);
    len += 2;
    struct head_result r = scan_bytewise(s, len, true);
    assert_int_equal(r.status, HEAD_COMPLETE);
    assert_int_equal(r.head_len, len);
    assert_int_equal(r.n_fields, N);
    free(s);
}

static void test_head_len_stops_at_first_blank_line(void **state) {
    static const char s[] = "POST /u HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    struct head_result r = scan_all_ways(S(s), true);
    assert_int_equal(r.status, HEAD_COMPLETE);
    assert_int_equal(r.head_len, sizeof s - 1 - 3);
    assert_int_equal(r.n_fields, 1);

    static const char pipelined[] = "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n";
    r = scan_once(S(pipelined), true);
    assert_int_equal(r.status, HEAD_COMPLETE);
    assert_int_equal(r.head_len, strlen("GET /1 HTTP/1.1\r\n\r\n"));
}

static void test_field_value_allows_tab_space_and_obs_text(void **state) {
    REQUEST_OK("GET / HTTP/1.1\r\nA: \tb c\x80\xff\t \r\nB:x\r\n\r\n", 2);
}

static void test_field_name_allows_every_tchar(void **state) {
    REQUEST_OK("GET / HTTP/1.1\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n", 1);
}

static void test_request_target_forms_accepted(void **state) {
    REQUEST_OK("OPTIONS * HTTP/1.1\r\n\r\n", 0);
    REQUEST_OK("CONNECT example.com:443 HTTP/1.1\r\n\r\n", 0);
    REQUEST_OK("GET http://a/b?c=d#e HTTP/1.1\r\n\r\n", 0);
    REQUEST_OK("M-SEARCH /%20\"{}| HTTP/1.1\r\n\r\n", 0);
}

static void test_http_1_2_accepted_as_1_x(void **state) {
    REQUEST_OK("GET / HTTP/1.2\r\n\r\n", 0);
    RESPONSE_OK("HTTP/1.9 200 OK\r\n\r\n", 0);
}

static void test_leading_empty_lines_before_request_ignored(void **state) {
    REQUEST_OK("\r\nGET / HTTP/1.1\r\nA: b\r\n\r\n", 1);
    REQUEST_OK("\r\n\r\n\r\nGET / HTTP/1.1\r\nA: b\r\nC: d\r\n\r\n", 2);
}

static void test_status_line_accepted(void **state) {
    RESPONSE_OK("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1);
    RESPONSE_OK("HTTP/1.0 404 Not Found\r\n\r\n", 0);
    RESPONSE_OK("HTTP/1.1 599 \t odd\x80 reason\r\n\r\n", 0);
}

static void test_status_line_empty_reason_accepted(void **state) {
    RESPONSE_OK("HTTP/1.1 200 \r\n\r\n", 0);
    RESPONSE_OK("HTTP/1.1 200\r\n\r\n", 0);
}

/* ---- head_check: incremental scanning ---- */

static void test_incomplete_until_blank_line(void **state) {
    static const char s[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for (size_t n = 0; n < sizeof s - 1; n++) {
        struct head_result r = scan_once(s, n, true);
        if (r.status != HEAD_INCOMPLETE) fail_msg("prefix of %zu bytes: status %d", n, r.status);
        assert_null(r.reason);
    }
    assert_int_equal(scan_once(S(s), true).status, HEAD_COMPLETE);
}

static void test_incremental_scan_across_crlf_boundary(void **state) {
    static const char s[] = "GET / HTTP/1.1\r\nHost: a\r\nB: c\r\n\r\n";
    /* split right after each CR: the LF arrives in the next call */
    for (size_t i = 0; i < sizeof s - 1; i++) {
        if (s[i] != '\r') continue;
        struct head_result r = scan_split(S(s), i + 1, true);
        assert_int_equal(r.status, HEAD_COMPLETE);
        assert_int_equal(r.head_len, sizeof s - 1);
        assert_int_equal(r.n_fields, 2);
    }
}

static void test_bare_cr_detected_across_call_boundary(void **state) {
    static const char s[] = "GET / HTTP/1.1\r\nHost: a\rX\r\n\r\n";
    size_t scanned = 0, head_len;
    int n_fields;
    const char *reason;
    char *b = exact_copy(S(s));
    size_t cr = (size_t)(strchr(s + 16, '\r') - s);
    assert_int_equal(head_check(b, cr + 1, true, &scanned, &head_len, &n_fields, &reason),
                     HEAD_INCOMPLETE);
    assert_int_equal(head_check(b, sizeof s - 1, true, &scanned, &head_len, &n_fields, &reason),
                     HEAD_BAD);
    assert_string_equal(reason, "bare CR in head");
    free(b);
}

static void test_resume_does_not_rescan_prefix(void **state) {
    /* The cursor vouches for what was already checked: corrupting those bytes
     * afterwards (which a real caller never does) goes unnoticed, which shows
     * the second call started where the first stopped. */
    char s[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t scanned = 0, head_len;
    int n_fields;
    const char *reason;
    assert_int_equal(head_check(s, 20, true, &scanned, &head_len, &n_fields, &reason),
                     HEAD_INCOMPLETE);
    s[0] = '\x01';
    assert_int_equal(head_check(s, strlen(s), true, &scanned, &head_len, &n_fields, &reason),
                     HEAD_COMPLETE);
    assert_int_equal(head_len, strlen(s));
    assert_int_equal(n_fields, 1);
}

static void test_calling_again_after_complete_gives_same_answer(void **state) {
    static const char s[] = "GET / HTTP/1.1\r\nA: b\r\nC: d\r\n\r\nbody";
    size_t scanned = 0, head_len = 0, head_len2 = 0;
    int n_fields = 0, n_fields2 = 0;
    const char *reason;
    assert_int_equal(head_check(S(s), true, &scanned, &head_len, &n_fields, &reason),
                     HEAD_COMPLETE);
    assert_int_equal(head_check(S(s), true, &scanned, &head_len2, &n_fields2, &reason),
                     HEAD_COMPLETE);
    assert_int_equal(head_len2, head_len);
    assert_int_equal(n_fields2, 2);
}

static void test_calling_again_after_bad_gives_same_answer(void **state) {
    static const char s[] = "GET / HTTP/1.1\r\nA : b\r\n\r\n";
    size_t scanned = 0, head_len;
    int n_fields;
    const char *reason;
    assert_int_equal(head_check(S(s), true, &scanned, &head_len, &n_fields, &reason), HEAD_BAD);
    reason = NULL;
    assert_int_equal(head_check(S(s), true, &scanned, &head_len, &n_fields, &reason), HEAD_BAD);
    assert_string_equal(reason, "whitespace before colon");
}

static void test_cursor_beyond_buffer_refused(void **state) {
    size_t scanned = 0, head_len;
    int n_fields;
    const char *reason;
    assert_int_equal(
        head_check(S("GET / HTTP/1.1\r\n"), true, &scanned, &head_len, &n_fields, &reason),
        HEAD_INCOMPLETE);
    /* a caller that shrank or swapped the buffer without resetting the cursor */
    assert_int_equal(head_check(S("GET /"), true, &scanned, &head_len, &n_fields, &reason),
                     HEAD_BAD);
    assert_non_null(reason);
    scanned = SIZE_MAX;
    assert_int_equal(head_check(S("GET /"), true, &scanned, &head_len, &n_fields, &reason),
                     HEAD_BAD);
}

/* ---- head_check: line endings ---- */

static void test_bare_lf_refused(void **state) {
    const char *why = "bare LF in head";
    REQUEST_BAD("GET / HTTP/1.1\nHost: a\r\n\r\n", why);
    REQUEST_BAD("GET / HTTP/1.1\r\nHost: a\n\r\n", why);
    REQUEST_BAD("GET / HTTP/1.1\r\nHost: a\r\n\n", why);
    REQUEST_BAD("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", why);
    REQUEST_BAD("GET / HTTP/1.1\r\nHo\nst: a\r\n\r\n", why);
    REQUEST_BAD("GET /a\nb HTTP/1.1\r\n\r\n", why);
    REQUEST_BAD("GET\n/ HTTP/1.1\r\n\r\n", why);
    REQUEST_BAD("\nGET / HTTP/1.1\r\n\r\n", why);
    REQUEST_BAD("GET / HTTP/1.1\n\n", why);
    RESPONSE_BAD("HTTP/1.1 200 OK\n\r\n", why);
    RESPONSE_BAD("HTTP/1.1 200 O\nK\r\n\r\n", why);
}

static void test_bare_cr_refused(void **state) {
    const char *why = "bare CR in head";
    REQUEST_BAD("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", why);
    REQUEST_BAD("GET / HTTP/1.1\r\r\n\r\n", why);
    REQUEST_BAD("GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n", why);
    REQUEST_BAD("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", why);
    REQUEST_BAD("\rGET / HTTP/1.1\r\n\r\n", why);
    RESPONSE_BAD("HTTP/1.1 200 O\rK\r\n\r\n", why);
}

static void test_cr_inside_start_line_refused(void **state) {
    REQUEST_BAD("GET /a\rb HTTP/1.1\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("GET\r\n\r\n", BAD_REQUEST_LINE);
    RESPONSE_BAD("HTTP/1.1 20\r\n\r\n", BAD_STATUS_LINE);
}

/* ---- head_check: field lines ---- */

static void test_obs_fold_refused(void **state) {
    const char *why = "obs-fold in header field";
    FIELD_BAD("A: b\r\n c", why);
    FIELD_BAD("A: b\r\n\tc", why);
    REQUEST_BAD("GET / HTTP/1.1\r\n Host: a\r\n\r\n", why);
    REQUEST_BAD("GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", why);
    RESPONSE_BAD("HTTP/1.1 200 OK\r\nA: b\r\n  c\r\n\r\n", why);
}

static void test_space_before_colon_refused(void **state) {
    FIELD_BAD("Content-Length : 5", "whitespace before colon");
    FIELD_BAD("Transfer-Encoding\t: chunked", "whitespace before colon");
    FIELD_BAD("A b: c", "whitespace before colon");
}

static void test_nul_in_value_refused(void **state) {
    FIELD_BAD("A: b\0c", "invalid character in header value");
    FIELD_BAD("A: \0", "invalid character in header value");
}

static void test_control_bytes_in_value_refused(void **state) {
    const char *why = "invalid character in header value";
    FIELD_BAD("A: b\x01", why);
    FIELD_BAD("A: b\x0b", why);
    FIELD_BAD("A: b\x0c", why);
    FIELD_BAD("A: b\x1f", why);
    FIELD_BAD("A: b\x7f", why);
}

static void test_empty_field_name_refused(void **state) {
    FIELD_BAD(": value", "empty header field name");
}

static void test_non_token_field_name_refused(void **state) {
    const char *why = "invalid character in header field name";
    FIELD_BAD("A(b: c", why);
    FIELD_BAD("A\"b: c", why);
    FIELD_BAD("A/b: c", why);
    FIELD_BAD("A@b: c", why);
    FIELD_BAD("\xc3\x84: c", why);
    FIELD_BAD("A\0: c", why);
    FIELD_BAD("A\x7f: c", why);
    FIELD_BAD("\x01: c", why);
}

static void test_field_line_without_colon_refused(void **state) {
    FIELD_BAD("Host", "header field without colon");
    FIELD_BAD("X-Chunked", "header field without colon");
}

/* ---- head_check: request line ---- */

static void test_request_line_needs_single_spaces(void **state) {
    REQUEST_BAD("GET  / HTTP/1.1\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("GET /  HTTP/1.1\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("GET / HTTP/1.1 \r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD(" GET / HTTP/1.1\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("GET\t/ HTTP/1.1\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("GET /\tHTTP/1.1\r\n\r\n", BAD_REQUEST_LINE);
}

static void test_method_must_be_token(void **state) {
    REQUEST_BAD("G(ET / HTTP/1.1\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("\x01GET / HTTP/1.1\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("G\0T / HTTP/1.1\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("HTTP/1.1 200 OK\r\n\r\n", BAD_REQUEST_LINE);
}

static void test_request_target_must_be_visible_ascii(void **state) {
    REQUEST_BAD("GET /a\x80 HTTP/1.1\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("GET /a\x01 HTTP/1.1\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("GET /\x7f HTTP/1.1\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("GET /\0 HTTP/1.1\r\n\r\n", BAD_REQUEST_LINE);
}

static void test_request_line_needs_version(void **state) {
    REQUEST_BAD("GET /\r\n\r\n", BAD_REQUEST_LINE); /* HTTP/0.9 */
    REQUEST_BAD("GET / \r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("GET\r\n\r\n", BAD_REQUEST_LINE);
}

static void test_malformed_version_refused(void **state) {
    REQUEST_BAD("GET / HTTP/1.10\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("GET / HTTP/11\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("GET / http/1.1\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("GET / HTTP/1.\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("GET / HTTP/1.x\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("GET / HTTPS/1.1\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("GET / HTTP/1.1x\r\n\r\n", BAD_REQUEST_LINE);
    REQUEST_BAD("GET / HTTP/x.1\r\n\r\n", BAD_REQUEST_LINE);
}

static void test_unsupported_version_refused(void **state) {
    const char *why = "unsupported HTTP version";
    REQUEST_BAD("GET / HTTP/2.0\r\n\r\n", why);
    REQUEST_BAD("GET / HTTP/0.9\r\n\r\n", why);
    REQUEST_BAD("GET / HTTP/3.1\r\n\r\n", why);
    RESPONSE_BAD("HTTP/2.0 200 OK\r\n\r\n", why);
}

/* ---- head_check: status line ---- */

static void test_status_code_must_be_three_digits(void **state) {
    RESPONSE_BAD("HTTP/1.1 20 OK\r\n\r\n", BAD_STATUS_LINE);
    RESPONSE_BAD("HTTP/1.1 2000 OK\r\n\r\n", BAD_STATUS_LINE);
    RESPONSE_BAD("HTTP/1.1 2x0 OK\r\n\r\n", BAD_STATUS_LINE);
    RESPONSE_BAD("HTTP/1.1  200 OK\r\n\r\n", BAD_STATUS_LINE);
    RESPONSE_BAD("HTTP/1.1\r\n\r\n", BAD_STATUS_LINE);
}

static void test_status_line_version_checked(void **state) {
    RESPONSE_BAD("HTTP/1.1200 OK\r\n\r\n", BAD_STATUS_LINE);
    RESPONSE_BAD("XTTP/1.1 200 OK\r\n\r\n", BAD_STATUS_LINE);
    RESPONSE_BAD("\r\nHTTP/1.1 200 OK\r\n\r\n", BAD_STATUS_LINE);
    RESPONSE_BAD("ICY 200 OK\r\n\r\n", BAD_STATUS_LINE);
}

static void test_control_in_reason_refused(void **state) {
    RESPONSE_BAD("HTTP/1.1 200 O\0K\r\n\r\n", "invalid character in reason phrase");
    RESPONSE_BAD("HTTP/1.1 200 O\x7fK\r\n\r\n", "invalid character in reason phrase");
}

/* ---- head_parse_content_length ---- */

static void assert_content_length(const char *v, size_t len, uint64_t want) {
    uint64_t got = 12345;
    if (!head_parse_content_length(v, len, &got)) fail_msg("\"%.*s\" refused", (int)len, v);
    assert_int_equal(got, want);
}

static void assert_content_length_refused(const char *v, size_t len) {
    uint64_t got = 12345;
    if (head_parse_content_length(v, len, &got))
        fail_msg("\"%.*s\" accepted as %llu", (int)len, v, (unsigned long long)got);
    assert_int_equal(got, 12345); /* untouched */
}

static void test_content_length_accepts_digits(void **state) {
    assert_content_length(S("0"), 0);
    assert_content_length(S("42"), 42);
    assert_content_length(S("007"), 7);
    assert_content_length(S("9223372036854775807"), INT64_MAX);
    assert_content_length(S("00000000000000000000000000001"), 1);
}

static void test_content_length_rejects_sign(void **state) {
    assert_content_length_refused(S("+1"));
    assert_content_length_refused(S("-1"));
    assert_content_length_refused(S("-0"));
}

static void test_content_length_rejects_space(void **state) {
    assert_content_length_refused(S(" 1"));
    assert_content_length_refused(S("1 "));
    assert_content_length_refused(S("1 2"));
    assert_content_length_refused(S("1\t"));
}

static void test_content_length_rejects_hex(void **state) {
    assert_content_length_refused(S("0x10"));
    assert_content_length_refused(S("1a"));
    assert_content_length_refused(S("A"));
}

static void test_content_length_rejects_empty(void **state) {
    assert_content_length_refused(S(""));
}

static void test_content_length_rejects_overflow(void **state) {
    assert_content_length_refused(S("9223372036854775808"));  /* 2^63 */
    assert_content_length_refused(S("18446744073709551615")); /* 2^64 - 1 */
    assert_content_length_refused(S("18446744073709551616")); /* wraps to 0 in uint64 */
    assert_content_length_refused(S("99999999999999999999999"));
}

static void test_content_length_rejects_list(void **state) {
    assert_content_length_refused(S("1,1"));
    assert_content_length_refused(S("1, 1"));
}

static void test_content_length_uses_len_not_nul(void **state) {
    assert_content_length("12", 1, 1);
    assert_content_length_refused(S("1\0"));
}

/* ---- chunk_check helpers ---- */

struct chunk_result {
    size_t consumed; /* total over all feeds, or (size_t)-1 */
    enum chunk_state state;
    const char *reason;
};

static struct chunk_result feed_parts(const char *s, size_t len, size_t part) {
    struct chunk_check c;
    struct chunk_result r = {0, CHUNK_SIZE_START, NULL};
    chunk_check_init(&c);
    for (size_t off = 0; off < len;) {
        size_t n = len - off < part ? len - off : part;
        char *b = exact_copy(s + off, n);
        size_t used = chunk_check_feed(&c, b, n, &r.reason);
        free(b);
        if (used == (size_t)-1) {
            assert_int_equal(c.state, CHUNK_ERROR);
            r.consumed = used;
            break;
        }
        assert_true(used <= n);
        r.consumed += used;
        if (c.state == CHUNK_DONE) break;
        assert_int_equal(used, n); /* short only when done */
        off += n;
    }
    r.state = c.state;
    return r;
}

static void assert_same_chunk_result(struct chunk_result a, struct chunk_result b) {
    assert_int_equal(a.consumed, b.consumed);
    assert_int_equal(a.state, b.state);
    if (a.state == CHUNK_ERROR) assert_string_equal(a.reason, b.reason);
}

/* Whole, byte by byte, and in parts of every size must agree. */
static struct chunk_result feed_all_ways(const char *s, size_t len) {
    struct chunk_result whole = feed_parts(s, len, len ? len : 1);
    for (size_t part = 1; part < len; part++)
        assert_same_chunk_result(whole, feed_parts(s, len, part));
    return whole;
}

static void assert_chunked_ok(const char *s, size_t len, size_t body_len) {
    struct chunk_result r = feed_all_ways(s, len);
    if (r.state != CHUNK_DONE)
        fail_msg("\"%.*s\": state %d (%s), want done", (int)len, s, r.state,
                 r.reason ? r.reason : "-");
    assert_int_equal(r.consumed, body_len);
}

static void assert_chunked_bad(const char *s, size_t len, const char *reason) {
    struct chunk_result r = feed_all_ways(s, len);
    if (r.state != CHUNK_ERROR) fail_msg("\"%.*s\": state %d, want error", (int)len, s, r.state);
    assert_int_equal(r.consumed, (size_t)-1);
    assert_string_equal(r.reason, reason);
}

#define CHUNKED_OK(lit) assert_chunked_ok(S(lit), sizeof(lit) - 1)
#define CHUNKED_BAD(lit, reason) assert_chunked_bad(S(lit), reason)

/* ---- chunk_check ---- */

static void test_chunked_body_ok(void **state) {
    CHUNKED_OK("5\r\nhello\r\n0\r\n\r\n");
    CHUNKED_OK("0\r\n\r\n");
    CHUNKED_OK("A\r\n0123456789\r\na\r\n0123456789\r\n00\r\n\r\n");
    CHUNKED_OK("2\r\n\r\n\r\n0\r\n\r\n"); /* data may itself be CRLF */
}

static void test_chunked_body_with_extensions_and_trailers_ok(void **state) {
    CHUNKED_OK("5;name=value\r\nhello\r\n"
               "3 ; a=\"q;uo\\\"ted\"\t;b\r\nabc\r\n"
               "1\t;x=\x80\xff\r\nz\r\n"
               "0;last\r\n"
               "Expires: never\r\nX-Sum: 12\t\x80\r\n\r\n");
}

static void test_chunk_check_byte_by_byte(void **state) {
    static const char s[] = "4;e=1\r\nWiki\r\n5\r\npedia\r\n0\r\nT: v\r\n\r\nNEXT";
    struct chunk_check c;
    const char *reason = NULL;
    size_t total = 0, body = sizeof s - 1 - 4;
    chunk_check_init(&c);
    for (size_t i = 0; i < sizeof s - 1; i++) {
        size_t used = chunk_check_feed(&c, s + i, 1, &reason);
        if (i < body) {
            assert_int_equal(used, 1);
            assert_int_equal(c.state == CHUNK_DONE, i == body - 1);
        } else {
            assert_int_equal(used, 0); /* the next message is not ours */
        }
        total += used;
    }
    assert_int_equal(c.state, CHUNK_DONE);
    assert_true(c.last_chunk);
    assert_int_equal(total, body);
}

static void test_stops_right_after_final_crlf(void **state) {
    static const char s[] = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    struct chunk_result r = feed_all_ways(S(s));
    assert_int_equal(r.state, CHUNK_DONE);
    assert_int_equal(r.consumed, strlen("3\r\nabc\r\n0\r\n\r\n"));
}

static void test_incomplete_body_is_not_done(void **state) {
    struct chunk_check c;
    const char *reason = NULL;
    chunk_check_init(&c);
    assert_int_equal(chunk_check_feed(&c, S("5\r\nhel"), &reason), 6);
    assert_int_equal(c.state, CHUNK_DATA);
    assert_int_equal(c.remaining, 2);
    assert_false(c.last_chunk);
    assert_int_equal(chunk_check_feed(&c, S("lo\r\n0\r\n"), &reason), 7);
    assert_int_equal(c.state, CHUNK_TRAILER_START);
    assert_true(c.last_chunk);
    assert_int_equal(chunk_check_feed(&c, S("\r\n"), &reason), 2);
    assert_int_equal(c.state, CHUNK_DONE);
}

static void test_large_chunk_data_skipped_in_bulk(void **state) {
    enum { SIZE = 0x10000 };
    struct chunk_check c;
    const char *reason = NULL;
    char *data = calloc(SIZE, 1); /* NULs and all: data is opaque */
    assert_non_null(data);
    chunk_check_init(&c);
    assert_int_equal(chunk_check_feed(&c, S("10000\r\n"), &reason), 7);
    assert_int_equal(chunk_check_feed(&c, data, SIZE - 1, &reason), SIZE - 1);
    assert_int_equal(chunk_check_feed(&c, data, 1, &reason), 1);
    assert_int_equal(c.state, CHUNK_DATA_CR);
    assert_int_equal(chunk_check_feed(&c, S("\r\n0\r\n\r\n"), &reason), 7);
    assert_int_equal(c.state, CHUNK_DONE);
    free(data);
}

static void test_chunk_longer_than_declared_refused(void **state) {
    CHUNKED_BAD("3\r\nhello\r\n0\r\n\r\n", "chunk data longer than declared");
    /* http-parser takes any two bytes after the data as CRLF */
    CHUNKED_BAD("3\r\nabcXY0\r\n\r\n", "chunk data longer than declared");
    CHUNKED_BAD("3\r\nabc\n0\r\n\r\n", "chunk data longer than declared");
}

static void test_chunk_shorter_than_declared_refused(void **state) {
    CHUNKED_BAD("5\r\nabc\r\n0\r\n\r\n", "chunk data longer than declared");
}

static void test_chunk_data_followed_by_cr_without_lf_refused(void **state) {
    CHUNKED_BAD("3\r\nabc\rX0\r\n\r\n", "chunk data not followed by CRLF");
    CHUNKED_BAD("3\r\nabc\r\r\n0\r\n\r\n", "chunk data not followed by CRLF");
}

static void test_chunk_size_prefix_0x_refused(void **state) {
    CHUNKED_BAD("0x5\r\nhello\r\n0\r\n\r\n", "chunk size with 0x prefix");
    CHUNKED_BAD("0X5\r\nhello\r\n0\r\n\r\n", "chunk size with 0x prefix");
}

static void test_chunk_size_overflow_refused(void **state) {
    CHUNKED_BAD("10000000000000000\r\n", "chunk size too long"); /* 2^64: 17 digits */
    CHUNKED_BAD("1000000000000000\r\n", "chunk size too long");  /* 16 digits */
    CHUNKED_BAD("ffffffffffffffff\r\n", "chunk size too long");
    CHUNKED_BAD("0000000000000001\r\nx\r\n0\r\n\r\n", "chunk size too long");
}

static void test_chunk_size_of_15_digits_accepted(void **state) {
    struct chunk_check c;
    const char *reason = NULL;
    chunk_check_init(&c);
    assert_int_equal(chunk_check_feed(&c, S("fffffffffffffff\r\n"), &reason), 17);
    assert_int_equal(c.state, CHUNK_DATA);
    assert_int_equal(c.remaining, (UINT64_C(1) << 60) - 1);
    CHUNKED_OK("000000000000005\r\nhello\r\n0\r\n\r\n");
}

static void test_empty_chunk_size_refused(void **state) {
    CHUNKED_BAD("\r\nhello\r\n0\r\n\r\n", "missing chunk size");
    CHUNKED_BAD(";ext\r\nhello\r\n0\r\n\r\n", "missing chunk size");
    CHUNKED_BAD("5\r\nhello\r\n\r\n", "missing chunk size"); /* no last chunk */
}

static void test_non_hex_chunk_size_refused(void **state) {
    CHUNKED_BAD("-1\r\n", "missing chunk size");
    CHUNKED_BAD("+1\r\n", "missing chunk size");
    CHUNKED_BAD("g\r\n", "missing chunk size");
    CHUNKED_BAD("5g\r\nhello\r\n0\r\n\r\n", "invalid chunk size");
    CHUNKED_BAD("5\0\r\nhello\r\n0\r\n\r\n", "invalid chunk size");
}

static void test_whitespace_around_chunk_size(void **state) {
    CHUNKED_BAD(" 5\r\nhello\r\n0\r\n\r\n", "missing chunk size");
    CHUNKED_BAD("5 \r\nhello\r\n0\r\n\r\n", "whitespace after chunk size");
    CHUNKED_BAD("5 5\r\nhello\r\n0\r\n\r\n", "invalid chunk size");
    CHUNKED_OK("5 \t ;x\r\nhello\r\n0\r\n\r\n");
}

static void test_bare_lf_in_chunk_size_line_refused(void **state) {
    CHUNKED_BAD("5\nhello\r\n0\r\n\r\n", "bare LF in chunk size line");
    CHUNKED_BAD("5;x\nhello\r\n0\r\n\r\n", "bare LF in chunk size line");
    CHUNKED_BAD("5\r\nhello\r\n0\n\r\n", "bare LF in chunk size line");
}

static void test_bare_cr_in_chunk_size_line_refused(void **state) {
    CHUNKED_BAD("5\rhello\r\n0\r\n\r\n", "bare CR in chunk size line");
    CHUNKED_BAD("5;a\rb\r\nhello\r\n0\r\n\r\n", "bare CR in chunk size line");
}

static void test_control_in_chunk_extension_refused(void **state) {
    const char *why = "control character in chunk extension";
    CHUNKED_BAD("5;a\x01\r\nhello\r\n0\r\n\r\n", why);
    CHUNKED_BAD("5;\0\r\nhello\r\n0\r\n\r\n", why);
    CHUNKED_BAD("5;a=\x7f\r\nhello\r\n0\r\n\r\n", why);
    CHUNKED_BAD("0;a\x0b\r\n\r\n", why);
}

static void test_trailer_line_endings_checked(void **state) {
    CHUNKED_BAD("0\r\nA: b\n\r\n", "bare LF in trailer");
    CHUNKED_BAD("0\r\nA: b\rc\r\n\r\n", "bare CR in trailer");
    CHUNKED_BAD("0\r\nA: b\r\n\n", "bare LF in trailer");
}

static void test_control_in_trailer_refused(void **state) {
    CHUNKED_BAD("0\r\nA: b\0\r\n\r\n", "control character in trailer");
    CHUNKED_BAD("0\r\nA: \x1b[0m\r\n\r\n", "control character in trailer");
    CHUNKED_BAD("0\r\n\x7f: b\r\n\r\n", "control character in trailer");
}

static void test_trailer_obs_fold_refused(void **state) {
    CHUNKED_BAD("0\r\nA: b\r\n c\r\n\r\n", "obs-fold in trailer field");
    CHUNKED_BAD("0\r\n\tA: b\r\n\r\n", "obs-fold in trailer field");
}

static void test_last_chunk_needs_final_crlf(void **state) {
    CHUNKED_BAD("0\r\n\rX", "bare CR after last chunk");
    CHUNKED_BAD("0\r\n\n", "bare LF in trailer");
}

static void test_error_is_sticky(void **state) {
    struct chunk_check c;
    const char *reason = NULL;
    chunk_check_init(&c);
    assert_int_equal(chunk_check_feed(&c, S("zz"), &reason), (size_t)-1);
    reason = NULL;
    assert_int_equal(chunk_check_feed(&c, S("0\r\n\r\n"), &reason), (size_t)-1);
    assert_int_equal(c.state, CHUNK_ERROR);
    assert_non_null(reason);
}

static void test_done_consumes_nothing_more(void **state) {
    struct chunk_check c;
    const char *reason = NULL;
    chunk_check_init(&c);
    assert_int_equal(chunk_check_feed(&c, S("0\r\n\r\n"), &reason), 5);
    assert_int_equal(chunk_check_feed(&c, S("5\r\nhello"), &reason), 0);
    assert_int_equal(c.state, CHUNK_DONE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_request_complete),
        cmocka_unit_test(test_counts_fields),
        cmocka_unit_test(test_counts_many_fields_scanned_bytewise),
        cmocka_unit_test(test_head_len_stops_at_first_blank_line),
        cmocka_unit_test(test_field_value_allows_tab_space_and_obs_text),
        cmocka_unit_test(test_field_name_allows_every_tchar),
        cmocka_unit_test(test_request_target_forms_accepted),
        cmocka_unit_test(test_http_1_2_accepted_as_1_x),
        cmocka_unit_test(test_leading_empty_lines_before_request_ignored),
        cmocka_unit_test(test_status_line_accepted),
        cmocka_unit_test(test_status_line_empty_reason_accepted),
        cmocka_unit_test(test_incomplete_until_blank_line),
        cmocka_unit_test(test_incremental_scan_across_crlf_boundary),
        cmocka_unit_test(test_bare_cr_detected_across_call_boundary),
        cmocka_unit_test(test_resume_does_not_rescan_prefix),
        cmocka_unit_test(test_calling_again_after_complete_gives_same_answer),
        cmocka_unit_test(test_calling_again_after_bad_gives_same_answer),
        cmocka_unit_test(test_cursor_beyond_buffer_refused),
        cmocka_unit_test(test_bare_lf_refused),
        cmocka_unit_test(test_bare_cr_refused),
        cmocka_unit_test(test_cr_inside_start_line_refused),
        cmocka_unit_test(test_obs_fold_refused),
        cmocka_unit_test(test_space_before_colon_refused),
        cmocka_unit_test(test_nul_in_value_refused),
        cmocka_unit_test(test_control_bytes_in_value_refused),
        cmocka_unit_test(test_empty_field_name_refused),
        cmocka_unit_test(test_non_token_field_name_refused),
        cmocka_unit_test(test_field_line_without_colon_refused),
        cmocka_unit_test(test_request_line_needs_single_spaces),
        cmocka_unit_test(test_method_must_be_token),
        cmocka_unit_test(test_request_target_must_be_visible_ascii),
        cmocka_unit_test(test_request_line_needs_version),
        cmocka_unit_test(test_malformed_version_refused),
        cmocka_unit_test(test_unsupported_version_refused),
        cmocka_unit_test(test_status_code_must_be_three_digits),
        cmocka_unit_test(test_status_line_version_checked),
        cmocka_unit_test(test_control_in_reason_refused),
        cmocka_unit_test(test_content_length_accepts_digits),
        cmocka_unit_test(test_content_length_rejects_sign),
        cmocka_unit_test(test_content_length_rejects_space),
        cmocka_unit_test(test_content_length_rejects_hex),
        cmocka_unit_test(test_content_length_rejects_empty),
        cmocka_unit_test(test_content_length_rejects_overflow),
        cmocka_unit_test(test_content_length_rejects_list),
        cmocka_unit_test(test_content_length_uses_len_not_nul),
        cmocka_unit_test(test_chunked_body_ok),
        cmocka_unit_test(test_chunked_body_with_extensions_and_trailers_ok),
        cmocka_unit_test(test_chunk_check_byte_by_byte),
        cmocka_unit_test(test_stops_right_after_final_crlf),
        cmocka_unit_test(test_incomplete_body_is_not_done),
        cmocka_unit_test(test_large_chunk_data_skipped_in_bulk),
        cmocka_unit_test(test_chunk_longer_than_declared_refused),
        cmocka_unit_test(test_chunk_shorter_than_declared_refused),
        cmocka_unit_test(test_chunk_data_followed_by_cr_without_lf_refused),
        cmocka_unit_test(test_chunk_size_prefix_0x_refused),
        cmocka_unit_test(test_chunk_size_overflow_refused),
        cmocka_unit_test(test_chunk_size_of_15_digits_accepted),
        cmocka_unit_test(test_empty_chunk_size_refused),
        cmocka_unit_test(test_non_hex_chunk_size_refused),
        cmocka_unit_test(test_whitespace_around_chunk_size),
        cmocka_unit_test(test_bare_lf_in_chunk_size_line_refused),
        cmocka_unit_test(test_bare_cr_in_chunk_size_line_refused),
        cmocka_unit_test(test_control_in_chunk_extension_refused),
        cmocka_unit_test(test_trailer_line_endings_checked),
        cmocka_unit_test(test_control_in_trailer_refused),
        cmocka_unit_test(test_trailer_obs_fold_refused),
        cmocka_unit_test(test_last_chunk_needs_final_crlf),
        cmocka_unit_test(test_error_is_sticky),
        cmocka_unit_test(test_done_consumes_nothing_more),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
