/* The entity schemas in schemas/ through Weir's own validator: each one
 * compiles, the declarative schema accepts the configs Weir ships and the
 * issue's example, refuses what the loader refuses, and fills the documented
 * defaults. (tests/schemas/check_schemas.py cross-checks the same files with
 * an independent validator.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "config/schema.h"

static const char *const entity_files[] = {
    "service",     "route", "upstream",       "target", "consumer",    "plugin",
    "certificate", "sni",   "ca_certificate", "weir",   "declarative",
};

static struct schema *compile_file(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/schemas/%s.json", WEIR_SRCDIR, name);
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) fprintf(stderr, "    %s: line %d: %s\n", path, jerr.line, jerr.text);
    assert_non_null(doc);
    struct errlist errs;
    errlist_init(&errs);
    struct schema *s = schema_compile(doc, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "    %s: %s\n", name, errs.items[i]);
    assert_non_null(s);
    errlist_free(&errs);
    json_decref(doc);
    return s;
}

static void test_every_entity_schema_compiles(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof entity_files / sizeof entity_files[0]; i++)
        schema_free(compile_file(entity_files[i]));
}

static bool valid(struct schema *s, const char *text, struct errlist *errs) {
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr);
    assert_non_null(doc);
    errlist_init(errs);
    bool ok = schema_validate(s, doc, errs);
    json_decref(doc);
    return ok;
}

static void test_declarative_schema_accepts_the_embedded_default(void **state) {
    (void)state;
    struct schema *s = compile_file("declarative");
    struct errlist errs;
    bool ok = valid(s, config_default_json, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "    %s\n", errs.items[i]);
    assert_true(ok);
    errlist_free(&errs);
    schema_free(s);
}

static void test_declarative_schema_accepts_the_issue_example(void **state) {
    (void)state;
    struct schema *s = compile_file("declarative");
    struct errlist errs;
    bool ok = valid(s,
                    "{\"_format_version\":\"3.0\",\"weir\":{\"proxy_listen\":[\"127.0.0.1:8000\"],"
                    "\"admin_listen\":[\"127.0.0.1:8001\"],\"workers\":2,\"trusted_ips\":"
                    "[\"127.0.0.1/32\"],\"access_log\":\"logs/access.log\",\"error_log\":\"-\","
                    "\"log_level\":\"info\",\"limits\":{\"max_header_bytes\":32768,"
                    "\"max_headers\":100,\"max_body_bytes\":10485760,\"header_timeout\":10000,"
                    "\"keepalive_timeout\":60000,\"max_connections\":10000,"
                    "\"shutdown_timeout\":10000}},\"services\":[{\"name\":\"orders\",\"url\":"
                    "\"http://127.0.0.1:9001/v1\",\"connect_timeout\":2000,\"read_timeout\":10000,"
                    "\"write_timeout\":10000,\"retries\":2,\"routes\":[{\"name\":\"orders\","
                    "\"paths\":[\"/api/orders\"],\"methods\":[\"GET\",\"POST\"],\"hosts\":"
                    "[\"api.example.com\",\"*.example.org\"],\"strip_path\":true,"
                    "\"preserve_host\":false}]}],\"upstreams\":[{\"name\":\"users-pool\","
                    "\"targets\":[{\"target\":\"127.0.0.1:9002\",\"weight\":100},{\"target\":"
                    "\"127.0.0.1:9003\",\"weight\":50}]}]}",
                    &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "    %s\n", errs.items[i]);
    assert_true(ok);
    errlist_free(&errs);
    schema_free(s);
}

static bool has(const struct errlist *e, const char *prefix) {
    for (size_t i = 0; i < e->n; i++)
        if (strncmp(e->items[i], prefix, strlen(prefix)) == 0) return true;
    return false;
}

static void test_declarative_schema_names_every_bad_field(void **state) {
    (void)state;
    struct schema *s = compile_file("declarative");
    struct errlist errs;
    assert_false(valid(s,
                       "{\"_format_version\":\"3.0\",\"services\":[{\"name\":\"a\",\"url\":"
                       "\"http://h\",\"bogus\":1,\"routes\":[{\"paths\":[\"nope\"],"
                       "\"strip_path\":\"yes\"}]}]}",
                       &errs));
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "    %s\n", errs.items[i]);
    assert_true(has(&errs, "services[0].bogus: "));
    assert_true(has(&errs, "services[0].routes[0].paths[0]: "));
    assert_true(has(&errs, "services[0].routes[0].strip_path: "));
    errlist_free(&errs);
    schema_free(s);
}

static void test_route_schema_fills_the_documented_defaults(void **state) {
    (void)state;
    struct schema *s = compile_file("route");
    json_t *in = json_loads("{\"paths\":[\"/x\"]}", 0, NULL);
    json_t *out = schema_apply_defaults(s, in);
    assert_true(json_is_true(json_object_get(out, "strip_path")));
    assert_true(json_is_false(json_object_get(out, "preserve_host")));
    assert_int_equal(json_integer_value(json_object_get(out, "regex_priority")), 0);
    assert_int_equal(json_integer_value(json_object_get(out, "https_redirect_status_code")), 426);
    json_decref(in);
    json_decref(out);
    schema_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_entity_schema_compiles),
        cmocka_unit_test(test_declarative_schema_accepts_the_embedded_default),
        cmocka_unit_test(test_declarative_schema_accepts_the_issue_example),
        cmocka_unit_test(test_declarative_schema_names_every_bad_field),
        cmocka_unit_test(test_route_schema_fills_the_documented_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
