/* The schema validator as Weir uses it: exactly what a client reads for each kind of mistake,
 * every problem reported at once, defaults that produce stored entities, one compiled schema
 * shared by threads, and hostile input (deep nesting, $ref cycles) that errors instead of
 * crashing. The official test suite runs separately in test_schema_suite.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/schema.h"
#include "core/errlist.h"

/* J(json...) parses JSON written as plain C tokens (the preprocessor stringizes it). */
#define J(...) parse(#__VA_ARGS__)

static json_t *parse(const char *text) {
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &err);
    if (!v) fail_msg("bad test JSON: %s: %s", text, err.text);
    return v;
}

static struct schema *compile(json_t *doc) {
    struct errlist errs;
    errlist_init(&errs);
    struct schema *s = schema_compile(doc, &errs);
    for (size_t i = 0; i < errs.n; i++) print_error("compile: %s\n", errs.items[i]);
    assert_non_null(s);
    errlist_free(&errs);
    json_decref(doc); /* the schema holds its own reference */
    return s;
}

static bool has_error(const struct errlist *errs, const char *want) {
    for (size_t i = 0; i < errs->n; i++)
        if (!strcmp(errs->items[i], want)) return true;
    return false;
}

static void assert_error(const struct errlist *errs, const char *want) {
    if (has_error(errs, want)) return;
    for (size_t i = 0; i < errs->n; i++) print_error("  have: %s\n", errs->items[i]);
    fail_msg("missing error: %s", want);
}

/* A cut-down service schema in the shape of schemas/, enough to exercise paths. */
static struct schema *service_schema(void) {
    return compile(J({
        "type": "object",
        "required": ["services"],
        "additionalProperties": false,
        "properties": {
            "services": {"type": "array", "items": {"$ref": "#/$defs/service"}}
        },
        "$defs": {
            "service": {
                "type": "object",
                "required": ["host"],
                "additionalProperties": false,
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 5},
                    "host": {"type": "string"},
                    "protocol": {"enum": ["http", "https"], "default": "http"},
                    "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 80},
                    "retries": {"type": "integer", "default": 5},
                    "routes": {"type": "array", "items": {"$ref": "#/$defs/route"}}
                }
            },
            "route": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "paths": {"type": "array", "maxItems": 3,
                              "items": {"type": "string", "pattern": "^/"}},
                    "strip_path": {"type": "boolean", "default": true},
                    "methods": {"type": "array", "uniqueItems": true, "default": ["GET"]}
                }
            }
        }
    }));
}

static void test_error_names_nested_property_and_array_index(void **state) {
    struct schema *s = service_schema();
    json_t *in = J({"services": [{"host": "a", "routes": [{"paths": ["/a"]}, {"paths": "/b"}]}]});
    struct errlist errs;
    errlist_init(&errs);
    assert_false(schema_validate(s, in, &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.items[0], "services[0].routes[1].paths: expected an array");
    errlist_free(&errs);
    json_decref(in);
    schema_free(s);
}

static void test_every_error_is_reported_at_once(void **state) {
    struct schema *s = service_schema();
    json_t *in = J({"services": [
        {"name": "", "protocol": "ftp", "port": 0, "colour": "red",
         "routes": [{"paths": ["x", "/ok", "/a", "/b"], "methods": ["GET", "GET"]}]},
        {"host": 7, "retries": 1.5}
    ], "extra": 1});
    struct errlist errs;
    errlist_init(&errs);
    assert_false(schema_validate(s, in, &errs));
    assert_error(&errs, "services[0].host: required field missing");
    assert_error(&errs, "services[0].name: must be at least 1 character long");
    assert_error(&errs, "services[0].protocol: expected one of: \"http\", \"https\"");
    assert_error(&errs, "services[0].port: must be at least 1");
    assert_error(&errs, "services[0].colour: unknown field");
    assert_error(&errs, "services[0].routes[0].paths[0]: does not match pattern ^/");
    assert_error(&errs, "services[0].routes[0].paths: expected at most 3 items");
    assert_error(&errs,
                 "services[0].routes[0].methods: expected unique items (items 0 and 1 are equal)");
    assert_error(&errs, "services[1].host: expected a string");
    assert_error(&errs, "services[1].retries: expected an integer");
    assert_error(&errs, "extra: unknown field");
    assert_int_equal(errs.n, 11);
    errlist_free(&errs);
    json_decref(in);
    schema_free(s);
}

/* Weir asserts format "regex" (PCRE2): a plugin's regex option is checked with its config. */
static void test_format_regex_is_checked_with_pcre2(void **state) {
    (void)state;
    struct schema *s = compile(J({"type": "array", "items": {"type": "string", "format": "regex"}}));
    json_t *in = J(["^/v1/(\\d+)$", "a(b", "(?<n>x)"]);
    struct errlist errs;
    errlist_init(&errs);
    assert_false(schema_validate(s, in, &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.items[0],
                        "[1]: must be a regular expression: missing closing parenthesis at offset 3");
    errlist_free(&errs);
    json_decref(in);
    schema_free(s);
}

static void test_root_error_is_just_the_message(void **state) {
    struct schema *s = service_schema();
    json_t *in = J([1]);
    struct errlist errs;
    errlist_init(&errs);
    assert_false(schema_validate(s, in, &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.items[0], "expected an object");
    errlist_free(&errs);
    json_decref(in);
    schema_free(s);
}

static void test_valid_instance_reports_nothing(void **state) {
    struct schema *s = service_schema();
    json_t *in = J({"services": [{"name": "héllo", "host": "a", "port": 8080.0}]});
    struct errlist errs;
    errlist_init(&errs);
    /* 5 code points in 6 bytes fits maxLength 5; 8080.0 is an integer */
    assert_true(schema_validate(s, in, &errs));
    assert_int_equal(errs.n, 0);
    assert_true(schema_validate(s, in, NULL));
    errlist_free(&errs);
    json_decref(in);
    schema_free(s);
}

static void test_dependent_required_names_the_missing_field(void **state) {
    struct schema *s = compile(J({"dependentRequired": {"cert": ["key"]}}));
    json_t *in = J({"tls": {"cert": "x"}});
    json_t *nested = J({"cert": "x"});
    struct errlist errs;
    errlist_init(&errs);
    assert_true(schema_validate(s, in, &errs));
    assert_false(schema_validate(s, nested, &errs));
    assert_string_equal(errs.items[0], "key: required field missing (because \"cert\" is set)");
    errlist_free(&errs);
    json_decref(in);
    json_decref(nested);
    schema_free(s);
}

static void test_defaults_fill_absent_fields_recursively(void **state) {
    struct schema *s = service_schema();
    json_t *in = J({"services": [{"host": "a", "port": 8080, "routes": [{"paths": ["/"]}]}]});
    json_t *out = schema_apply_defaults(s, in);
    json_t *want = J({"services": [{"host": "a", "port": 8080, "protocol": "http", "retries": 5,
                                    "routes": [{"paths": ["/"], "strip_path": true,
                                                "methods": ["GET"]}]}]});
    assert_true(json_equal(out, want));
    /* the input is untouched, and the copy is valid */
    assert_null(json_object_get(json_array_get(json_object_get(in, "services"), 0), "protocol"));
    assert_true(schema_validate(s, out, NULL));
    json_decref(want);
    json_decref(out);
    json_decref(in);
    schema_free(s);
}

static void test_defaults_never_override_given_values(void **state) {
    struct schema *s = service_schema();
    json_t *in = J({"services": [{"host": "a", "protocol": "https", "retries": 0,
                                  "routes": [{"strip_path": false, "methods": []}]}]});
    json_t *out = schema_apply_defaults(s, in);
    json_t *svc = json_array_get(json_object_get(out, "services"), 0);
    json_t *route = json_array_get(json_object_get(svc, "routes"), 0);
    assert_string_equal(json_string_value(json_object_get(svc, "protocol")), "https");
    assert_int_equal(json_integer_value(json_object_get(svc, "retries")), 0);
    assert_int_equal(json_integer_value(json_object_get(svc, "port")), 80);
    assert_true(json_is_false(json_object_get(route, "strip_path")));
    assert_int_equal(json_array_size(json_object_get(route, "methods")), 0);
    json_decref(out);
    json_decref(in);
    schema_free(s);
}

static void test_defaults_descend_into_a_defaulted_object(void **state) {
    struct schema *s = compile(J({
        "properties": {"limits": {"type": "object", "default": {},
                                  "properties": {"max_body": {"default": 1024}}}}
    }));
    json_t *in = J({});
    json_t *out = schema_apply_defaults(s, in);
    json_t *want = J({"limits": {"max_body": 1024}});
    assert_true(json_equal(out, want));
    json_decref(want);
    json_decref(out);
    json_decref(in);
    schema_free(s);
}

struct worker_arg {
    const struct schema *s;
    const json_t *good, *bad;
    int mistakes;
};

static void *validate_many(void *p) {
    struct worker_arg *a = p;
    for (int i = 0; i < 2000; i++) {
        struct errlist errs;
        errlist_init(&errs);
        if (!schema_validate(a->s, a->good, &errs) || errs.n) a->mistakes++;
        if (schema_validate(a->s, a->bad, &errs) || errs.n != 11) a->mistakes++;
        errlist_free(&errs);
    }
    return NULL;
}

static void test_one_schema_validates_from_many_threads(void **state) {
    struct schema *s = service_schema();
    json_t *good = J({"services": [{"host": "a", "routes": [{"paths": ["/a", "/b"]}]}]});
    json_t *bad = J({"services": [
        {"name": "", "protocol": "ftp", "port": 0, "colour": "red",
         "routes": [{"paths": ["x", "/ok", "/a", "/b"], "methods": ["GET", "GET"]}]},
        {"host": 7, "retries": 1.5}
    ], "extra": 1});
    enum { NTHREADS = 8 };
    pthread_t tids[NTHREADS];
    struct worker_arg args[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        args[i] = (struct worker_arg){.s = s, .good = good, .bad = bad};
        assert_int_equal(pthread_create(&tids[i], NULL, validate_many, &args[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(tids[i], NULL);
        assert_int_equal(args[i].mistakes, 0);
    }
    json_decref(good);
    json_decref(bad);
    schema_free(s);
}

static json_t *nested_arrays(int depth) {
    json_t *v = json_array();
    for (int i = 0; i < depth; i++) {
        json_t *outer = json_array();
        json_array_append_new(outer, v);
        v = outer;
    }
    return v;
}

static void test_deep_instance_is_an_error_not_a_crash(void **state) {
    struct schema *s = compile(J({"type": "array", "items": {"$ref": "#"}, "uniqueItems": true}));
    json_t *deep = nested_arrays(5000);
    struct errlist errs;
    errlist_init(&errs);
    assert_false(schema_validate(s, deep, &errs));
    assert_int_equal(errs.n, 1);
    assert_non_null(strstr(errs.items[0], "nested too deeply (more than 128 levels)"));
    errlist_free(&errs);
    json_t *ok = nested_arrays(100);
    assert_true(schema_validate(s, ok, NULL));
    json_t *filled = schema_apply_defaults(s, deep); /* bounded too */
    assert_non_null(filled);
    json_decref(filled);
    json_decref(ok);
    json_decref(deep);
    schema_free(s);
}

static void test_ref_cycle_is_an_error_not_a_crash(void **state) {
    struct schema *s = compile(J({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
                                  "$ref": "#/$defs/a"}));
    json_t *in = J({"x": 1});
    struct errlist errs;
    errlist_init(&errs);
    assert_false(schema_validate(s, in, &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.items[0], "schema recursion too deep (circular $ref?)");
    errlist_free(&errs);
    json_t *filled = schema_apply_defaults(s, in);
    json_decref(filled);
    json_decref(in);
    schema_free(s);
}

static void test_broken_schema_reports_every_problem(void **state) {
    json_t *doc = J({
        "properties": {
            "a": {"pattern": "(unclosed"},
            "b": {"$ref": "#/$defs/missing"},
            "c": {"$ref": "https://example.com/other.json"},
            "d": {"type": "strng"}
        }
    });
    struct errlist errs;
    errlist_init(&errs);
    assert_null(schema_compile(doc, &errs));
    assert_int_equal(errs.n, 4);
    assert_non_null(strstr(errs.items[0], "properties.a.pattern: invalid regex at offset 9"));
    assert_error(&errs, "properties.d.type: unknown type strng");
    assert_error(&errs, "properties.b.$ref: \"weir:/schema.json#/$defs/missing\" points to "
                        "nothing in this document");
    assert_error(&errs, "properties.c.$ref: cannot resolve \"https://example.com/other.json\" "
                        "(remote references are not supported)");
    errlist_free(&errs);
    /* compile took no lasting reference on failure */
    assert_int_equal(doc->refcount, 1);
    json_decref(doc);
}

static void test_pattern_is_a_search_with_ecma_categories(void **state) {
    /* built with json_pack: J() would double the backslash */
    struct schema *s = compile(json_pack("{s:s}", "pattern", "\\p{Letter}x"));
    json_t *yes = json_string("123 éx tail"), *no = json_string("12x");
    assert_true(schema_validate(s, yes, NULL));
    assert_false(schema_validate(s, no, NULL));
    json_decref(yes);
    json_decref(no);
    schema_free(s);
}

/* A repeated alternation on a long string outgrows PCRE2's default JIT stack (32 KiB): the
 * validator must still answer, not call the string invalid (a 1,400-byte URL path was refused). */
static void test_pattern_on_a_long_string_outgrowing_the_jit_stack(void **state) {
    (void)state;
    struct schema *s = compile(json_pack("{s:s}", "pattern", "^/(?:[a-z/]|%[0-9A-F]{2})*$"));
    size_t lens[] = {100, 1400, 20000, 100000};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        char *text = malloc(lens[i] + 1);
        assert_non_null(text);
        text[0] = '/';
        for (size_t j = 1; j < lens[i]; j++)
            text[j] = j % 7 ? 'a' : '/';
        text[lens[i]] = '\0';
        json_t *yes = json_string(text);
        text[lens[i] - 1] = 'A'; /* not in the class: no match, found the long way */
        json_t *no = json_string(text);
        assert_true(schema_validate(s, yes, NULL));
        assert_false(schema_validate(s, no, NULL));
        json_decref(yes);
        json_decref(no);
        free(text);
    }
    schema_free(s);
}

/* errorMessage (a Weir extension): the schema author's words replace the details. */

static struct errlist check(const struct schema *s, const char *instance_text, bool want_valid) {
    json_t *in = parse(instance_text);
    struct errlist errs;
    errlist_init(&errs);
    assert_int_equal(schema_validate(s, in, &errs), want_valid);
    assert_int_equal(schema_validate(s, in, NULL), want_valid); /* same verdict without errs */
    json_decref(in);
    return errs;
}

/* Exactly these n errors, in any order; frees errs. */
static void assert_errors(struct errlist *errs, size_t n, ...) {
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        assert_error(errs, va_arg(ap, const char *));
    va_end(ap);
    if (errs->n != n) {
        for (size_t i = 0; i < errs->n; i++)
            print_error("  have: %s\n", errs->items[i]);
        fail_msg("expected %zu errors, have %zu", n, errs->n);
    }
    errlist_free(errs);
}

static void test_error_message_replaces_every_detail_of_its_schema(void **state) {
    /* clang-format off */
    struct schema *s = compile(J({
        "type": "object",
        "properties": {
            "host": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$",
                     "errorMessage": "must be a host name or an IP address"},
            "port": {"type": "integer", "minimum": 1}
        }
    }));
    /* clang-format on */
    struct errlist errs = check(s, "{\"host\": \"ABCDEFG\"}", false); /* two keywords fail */
    assert_errors(&errs, 1, "host: must be a host name or an IP address");
    errs = check(s, "{\"host\": 7}", false); /* even a wrong type */
    assert_errors(&errs, 1, "host: must be a host name or an IP address");
    errs = check(s, "{\"host\": \"ABC\", \"port\": 0}", false); /* siblings keep their own */
    assert_errors(&errs, 2, "host: must be a host name or an IP address",
                  "port: must be at least 1");
    errs = check(s, "{\"host\": \"abc\"}", true);
    assert_errors(&errs, 0);
    schema_free(s);
}

static void test_error_message_of_items_reports_each_failing_item_at_its_path(void **state) {
    /* clang-format off */
    struct schema *s = compile(J({
        "properties": {"services": {"type": "array", "items": {"$ref": "#/$defs/service"}}},
        "$defs": {
            "service": {"properties": {"routes": {"type": "array",
                                                  "items": {"$ref": "#/$defs/route"}}}},
            "route": {"properties": {"paths": {"type": "array", "items": {
                "type": "string", "pattern": "^/[a-z]*$",
                "errorMessage": "must start with \"/\" or \"~\""}}}}
        }
    }));
    /* clang-format on */
    struct errlist errs = check(s,
                                "{\"services\": [{\"routes\": [{\"paths\": "
                                "[\"/ok\", \"x\", \"/fine\", \"y\", 5]}]}]}",
                                false);
    assert_errors(&errs, 3, "services[0].routes[0].paths[1]: must start with \"/\" or \"~\"",
                  "services[0].routes[0].paths[3]: must start with \"/\" or \"~\"",
                  "services[0].routes[0].paths[4]: must start with \"/\" or \"~\"");
    schema_free(s);
}

static void test_error_message_works_beside_a_ref_and_in_the_referenced_def(void **state) {
    /* clang-format off */
    struct schema *s = compile(J({
        "properties": {
            "id": {"$ref": "#/$defs/uuid", "errorMessage": "must be a UUID"},
            "service_id": {"$ref": "#/$defs/uuid"},
            "name": {"$ref": "#/$defs/name"}
        },
        "$defs": {
            "uuid": {"type": "string", "pattern": "^[0-9a-f]{8}$"},
            "name": {"type": "string", "pattern": "^[a-z]+$",
                     "errorMessage": "must contain only letters"}
        }
    }));
    /* clang-format on */
    struct errlist errs =
        check(s, "{\"id\": \"x\", \"service_id\": \"y\", \"name\": \"A1\"}", false);
    assert_errors(&errs, 3, "id: must be a UUID",
                  "service_id: does not match pattern ^[0-9a-f]{8}$",
                  "name: must contain only letters");
    schema_free(s);
}

static void test_error_message_in_a_branch_belongs_to_that_branch(void **state) {
    /* clang-format off */
    struct schema *s = compile(J({
        "properties": {
            "a": {"anyOf": [{"type": "null"},
                            {"type": "string", "pattern": "^x$", "errorMessage": "must be x"}]},
            "b": {"oneOf": [{"type": "null"}, {"type": "string"}],
                  "errorMessage": "must be a string or null"},
            "c": {"anyOf": [{"type": "null"}, {"type": "integer"}],
                  "errorMessage": "must be an integer or null"}
        }
    }));
    /* clang-format on */
    struct errlist errs = check(s, "{\"a\": \"y\", \"b\": 1, \"c\": \"z\"}", false);
    assert_errors(&errs, 3, "a: does not match any of the allowed alternatives",
                  "b: must be a string or null", "c: must be an integer or null");
    errs = check(s, "{\"a\": \"x\", \"b\": null, \"c\": 3}", true);
    assert_errors(&errs, 0);
    schema_free(s);
}

static void test_outer_error_message_wins_over_inner_ones(void **state) {
    /* clang-format off */
    struct schema *s = compile(J({
        "properties": {"listen": {
            "type": "array", "minItems": 1, "errorMessage": "must list addresses",
            "items": {"type": "string", "errorMessage": "must be an address"}}}
    }));
    /* clang-format on */
    struct errlist errs = check(s, "{\"listen\": [1, 2]}", false);
    assert_errors(&errs, 1, "listen: must list addresses");
    schema_free(s);
}

static void test_error_message_of_property_names_is_reported_at_the_field(void **state) {
    /* clang-format off */
    struct schema *s = compile(J({
        "properties": {
            "headers": {"propertyNames": {"pattern": "^[a-z-]+$",
                                          "errorMessage": "must be an HTTP header name"}},
            "other": {"propertyNames": {"pattern": "^[a-z-]+$"}}
        }
    }));
    /* clang-format on */
    struct errlist errs = check(
        s, "{\"headers\": {\"x-a\": 1, \"x b\": 2, \"x:c\": 3}, \"other\": {\"x b\": 1}}", false);
    assert_errors(&errs, 3, "headers.x b: must be an HTTP header name",
                  "headers.x:c: must be an HTTP header name", "other: invalid field name \"x b\"");
    schema_free(s);
}

static void test_error_message_at_the_root_is_just_the_message(void **state) {
    /* clang-format off */
    struct schema *s = compile(J({"type": "object", "errorMessage": "must be a service object"}));
    /* clang-format on */
    struct errlist errs = check(s, "[]", false);
    assert_errors(&errs, 1, "must be a service object");
    schema_free(s);
}

static void test_error_message_that_is_not_a_string_does_not_compile(void **state) {
    /* clang-format off */
    json_t *doc = J({"properties": {"a": {"type": "string", "errorMessage": ["no"]}},
                     "$defs": {"b": {"errorMessage": 1}}});
    /* clang-format on */
    struct errlist errs;
    errlist_init(&errs);
    assert_null(schema_compile(doc, &errs));
    assert_errors(&errs, 2, "properties.a.errorMessage: expected a string",
                  "$defs.b.errorMessage: expected a string");
    json_decref(doc);
}

static void test_long_pattern_is_not_quoted_in_the_error(void **state) {
    /* 60 characters are still quoted, 61 are not */
    const char *p60 = "^(?:aaaaaaaaaa|bbbbbbbbbb|cccccccccc|dddddddddd|eeeeeee)xyz$";
    const char *p61 = "^(?:aaaaaaaaaa|bbbbbbbbbb|cccccccccc|dddddddddd|eeeeeeee)xyz$";
    assert_int_equal(strlen(p60), 60);
    assert_int_equal(strlen(p61), 61);
    struct schema *s = compile(json_pack("{s:{s:{s:s},s:{s:s}}}", "properties", "short", "pattern",
                                         p60, "long", "pattern", p61));
    struct errlist errs = check(s, "{\"short\": \"x\", \"long\": \"x\"}", false);
    char want[128];
    snprintf(want, sizeof want, "short: does not match pattern %s", p60);
    assert_errors(&errs, 2, want, "long: does not match the expected format");
    schema_free(s);
}

/* What an operator reads for each kind of bad field of a declarative file, through the schemas
 * in schemas/ (written by tests/schemas/gen_schemas.py): every message says what was expected. */
static void test_declarative_schema_says_what_each_bad_field_expects(void **state) {
    char path[1024];
    snprintf(path, sizeof path, "%s/schemas/declarative.json", WEIR_SRCDIR);
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!doc) fail_msg("%s: %s", path, jerr.text);
    struct schema *s = compile(doc);
    /* clang-format off */
    json_t *in = J({
        "_format_version": "3.0",
        "weir": {"proxy_listen": ["localhost:8000", "127.0.0.1:8000 http2"],
                 "trusted_ips": ["10.0.0.0/33"], "error_log": "off", "log_level": "INFO"},
        "services": [
            {"name": "a b", "id": "nope", "host": "h:80", "path": "/a b", "tags": ["a,b", ""],
             "plugins": [{"name": "x"}], "tls_verify": "yes", "protocol": "grpcs",
             "routes": [{"paths": ["/ok", "x", "/a b"], "hosts": ["a:80"], "methods": ["GE T"],
                         "headers": {"x y": ["v"], "Host": ["a"], "x": ["~*a"]}, "snis": ["a"],
                         "request_buffering": false, "path_handling": "v1",
                         "protocols": ["grpc"], "plugins": [{}], "service": 5}]},
            {"url": "grpcs://h"},
            {"url": "http://h", "port": 80},
            {"host": null}
        ],
        "routes": [{"service": null, "paths": ["/"]}],
        "upstreams": [{"name": "1.2.3.4", "hash_on": "header", "slots": 5,
                       "healthchecks": {"active": {"type": "grpc"}},
                       "algorithm": "latency", "targets": [{"target": "h:0", "id": "X"}]}],
        "plugins": [{}], "consumers": [{}], "vaults": [{}]
    });
    static const char *const want[] = {
        "weir.proxy_listen[0]: must be \"ip:port\" or \"ip:port ssl\" with a numeric IP "
        "address, such as \"127.0.0.1:8000\", \"[::1]:8000\" or \"0.0.0.0:8443 ssl\" (other "
        "listener options such as \"http2\" or \"reuseport\" are not supported yet)",
        "weir.proxy_listen[1]: must be \"ip:port\" or \"ip:port ssl\" with a numeric IP "
        "address, such as \"127.0.0.1:8000\", \"[::1]:8000\" or \"0.0.0.0:8443 ssl\" (other "
        "listener options such as \"http2\" or \"reuseport\" are not supported yet)",
        "weir.trusted_ips[0]: must be an IP address or a CIDR range, such as \"10.0.0.0/8\" or "
        "\"::1\"",
        "weir.error_log: cannot be turned off; use \"-\" for stderr or a file path",
        "weir.log_level: must be one of debug, info, notice, warn, error",
        "services[0].name: must contain only letters, digits, \"-\", \".\", \"_\" and \"~\"",
        "services[0].id: must be a UUID",
        "services[0].host: must be a host name or an IP address, without a port",
        "services[0].path: must be a path starting with \"/\" (RFC 3986 characters, others "
        "percent-encoded, no query or fragment)",
        "services[0].tags[0]: must be a non-empty string without \",\", \"/\" or control "
        "characters",
        "services[0].tags[1]: must be a non-empty string without \",\", \"/\" or control "
        "characters",
        "services[0].tls_verify: must be true or false",
        "services[0].protocol: must be \"http\", \"https\" or \"tcp\" (other protocols are "
        "not supported yet)",
        "services[0].routes[0].paths[1]: must be a path starting with \"/\" (RFC 3986 "
        "characters, others percent-encoded, no query or fragment) or a regex starting with \"~\"",
        "services[0].routes[0].paths[2]: must be a path starting with \"/\" (RFC 3986 "
        "characters, others percent-encoded, no query or fragment) or a regex starting with \"~\"",
        "services[0].routes[0].hosts[0]: must be a host name, or \"*.\" followed by a domain "
        "(ports, IPv6 addresses and trailing wildcards such as \"example.*\" are not supported "
        "yet)",
        "services[0].routes[0].methods[0]: must be an HTTP method such as \"GET\"",
        "services[0].routes[0].headers.x[0]: must not contain control characters or start with "
        "\"~*\" (regular expressions in header values are not supported yet)",
        "services[0].routes[0].headers.x y: must be an HTTP header name other than \"host\" (use "
        "hosts to match the Host header)",
        "services[0].routes[0].headers.Host: must be an HTTP header name other than \"host\" "
        "(use hosts to match the Host header)",
        "services[0].routes[0].snis: only for protocols [\"tls_passthrough\"] (SNI matching of "
        "http and https routes is not supported yet)",
        "services[0].routes[0].request_buffering: must be true (false is not supported yet)",
        "services[0].routes[0].path_handling: must be \"v0\" (\"v1\" is not supported yet)",
        "services[0].routes[0].protocols[0]: must be \"http\", \"https\" or \"tls_passthrough\" "
        "(other protocols are not supported yet)",
        "services[0].routes[0].plugins[0].name: required field missing",
        "services[0].routes[0].service: must be a service name or id, or {\"id\": ...} or "
        "{\"name\": ...}",
        "services[1].url: must be a URL such as \"https://host:port/path\" or \"tcp://host:port\" (http, https or tcp; no "
        "user info, query or fragment)",
        "services[2].port: cannot be given together with url",
        "services[3].host: required (or give url)",
        "routes[0].service: required for a top-level route",
        "upstreams[0].name: must be a host name (not an IP address)",
        "upstreams[0].hash_on: not supported yet (only null, [] or \"none\", Kong's default)",
        "upstreams[0].slots: not supported yet (only null, [] or 10 to 65536, Kong's range)",
        "upstreams[0].healthchecks.active.type: must be \"http\", \"https\" or \"tcp\" (grpc and "
        "grpcs are not supported yet)",
        "upstreams[0].algorithm: must be \"round-robin\" (least-connections, consistent-hashing "
        "and latency are not supported yet)",
        "upstreams[0].targets[0].target: must be a host name or an IP address, optionally with a "
        "port (1 to 65535), such as \"10.0.0.1:8080\", \"example.com\" or \"[::1]:8080\"",
        "upstreams[0].targets[0].id: must be a UUID",
        "plugins[0].name: required field missing",
        "consumers[0]: must have a username or a custom_id",
        "vaults: not supported yet (only null or [] is accepted)",
    };
    /* clang-format on */
    struct errlist errs;
    errlist_init(&errs);
    assert_false(schema_validate(s, in, &errs));
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        assert_error(&errs, want[i]);
    assert_int_equal(errs.n, sizeof want / sizeof *want);
    errlist_free(&errs);
    json_decref(in);
    schema_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_names_nested_property_and_array_index),
        cmocka_unit_test(test_every_error_is_reported_at_once),
        cmocka_unit_test(test_root_error_is_just_the_message),
        cmocka_unit_test(test_format_regex_is_checked_with_pcre2),
        cmocka_unit_test(test_valid_instance_reports_nothing),
        cmocka_unit_test(test_dependent_required_names_the_missing_field),
        cmocka_unit_test(test_defaults_fill_absent_fields_recursively),
        cmocka_unit_test(test_defaults_never_override_given_values),
        cmocka_unit_test(test_defaults_descend_into_a_defaulted_object),
        cmocka_unit_test(test_one_schema_validates_from_many_threads),
        cmocka_unit_test(test_deep_instance_is_an_error_not_a_crash),
        cmocka_unit_test(test_ref_cycle_is_an_error_not_a_crash),
        cmocka_unit_test(test_broken_schema_reports_every_problem),
        cmocka_unit_test(test_pattern_is_a_search_with_ecma_categories),
        cmocka_unit_test(test_pattern_on_a_long_string_outgrowing_the_jit_stack),
        cmocka_unit_test(test_error_message_replaces_every_detail_of_its_schema),
        cmocka_unit_test(test_error_message_of_items_reports_each_failing_item_at_its_path),
        cmocka_unit_test(test_error_message_works_beside_a_ref_and_in_the_referenced_def),
        cmocka_unit_test(test_error_message_in_a_branch_belongs_to_that_branch),
        cmocka_unit_test(test_outer_error_message_wins_over_inner_ones),
        cmocka_unit_test(test_error_message_of_property_names_is_reported_at_the_field),
        cmocka_unit_test(test_error_message_at_the_root_is_just_the_message),
        cmocka_unit_test(test_error_message_that_is_not_a_string_does_not_compile),
        cmocka_unit_test(test_long_pattern_is_not_quoted_in_the_error),
        cmocka_unit_test(test_declarative_schema_says_what_each_bad_field_expects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
