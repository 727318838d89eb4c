/* The configuration model: how a declarative document is flattened into entities (ids,
 * references, defaults, normalisation), the exact "path: message" of each uniqueness or
 * reference problem, the lookups the admin API uses, and model_export / model_export_text. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "config/entity.h"
#include "config/model.h"
#include "config/model_change.h"
#include "config/model_text.h"
#include "core/errlist.h"
#include "core/uuid.h"

/* DOC(members...) builds a "3.0" document; the members are written as plain JSON and
 * stringized by the preprocessor. */
#define DOC(...) "{\"_format_version\": \"3.0\", " #__VA_ARGS__ "}"

#define ID_A "0b9f2f5e-7c5c-4f7d-9d3a-2c1a0b7e6f11"
#define ID_A_UPPER "0B9F2F5E-7C5C-4F7D-9D3A-2C1A0B7E6F11"
#define ID_B "5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
#define ID_MISSING "11111111-2222-4333-8444-555555555555"

static json_t *parse(const char *text) {
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!v) fprintf(stderr, "    bad test JSON: %s: %s\n", jerr.text, text);
    assert_non_null(v);
    return v;
}

static void print_errors(const struct errlist *e) {
    for (size_t i = 0; i < e->n; i++)
        fprintf(stderr, "    error: %s\n", e->items[i]);
}

static bool has_error(const struct errlist *e, const char *msg) {
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->items[i], msg) == 0) return true;
    return false;
}

/* The model of a document that must be valid (origins into *origins when not NULL). */
static json_t *model_of(const char *text, json_t **origins) {
    json_t *doc = parse(text);
    struct errlist errs;
    errlist_init(&errs);
    json_t *m = config_model_from_doc(doc, (long long)time(NULL), origins, &errs);
    if (!m) print_errors(&errs);
    assert_non_null(m);
    assert_int_equal(errs.n, 0);
    errlist_free(&errs);
    json_decref(doc);
    return m;
}

/* The document must be refused with `msg` among its problems. */
static void expect_error(const char *text, const char *msg) {
    json_t *doc = parse(text);
    struct errlist errs;
    errlist_init(&errs);
    json_t *m = config_model_from_doc(doc, (long long)time(NULL), NULL, &errs);
    assert_null(m);
    if (!has_error(&errs, msg)) {
        fprintf(stderr, "    expected: %s\n", msg);
        print_errors(&errs);
    }
    assert_true(has_error(&errs, msg));
    errlist_free(&errs);
    json_decref(doc);
}

/* The document must load without problems (a model is built, then dropped). */
static void expect_ok(const char *text) {
    json_decref(model_of(text, NULL));
}

static json_t *item(const json_t *m, enum entity_kind k, size_t i) {
    json_t *e = json_array_get(model_items(m, k), i);
    assert_non_null(e);
    return e;
}

static const char *str(const json_t *e, const char *key) {
    return json_string_value(json_object_get(e, key));
}

static const char *ref_id(const json_t *e, const char *field) {
    json_t *ref = json_object_get(e, field);
    assert_true(json_is_object(ref));
    assert_int_equal(json_object_size(ref), 1);
    return str(ref, "id");
}

static long long integer(const json_t *e, const char *key) {
    json_t *v = json_object_get(e, key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

/* `value` (JSON text) equals e[key]. */
static void assert_member(const json_t *e, const char *key, const char *value) {
    json_t *want = json_loads(value, JSON_DECODE_ANY, NULL);
    assert_non_null(want);
    json_t *got = json_object_get(e, key);
    if (!json_equal(got, want)) {
        char *g = got ? json_dumps(got, JSON_ENCODE_ANY) : NULL;
        fprintf(stderr, "    %s: expected %s, got %s\n", key, value, g ? g : "(absent)");
        free(g);
    }
    assert_true(json_equal(got, want));
    json_decref(want);
}

/* e has exactly the members `keys` (NULL-terminated). */
static void assert_keys(const json_t *e, const char *const *keys) {
    size_t n = 0;
    for (; keys[n]; n++) {
        if (!json_object_get(e, keys[n])) fprintf(stderr, "    missing member %s\n", keys[n]);
        assert_non_null(json_object_get(e, keys[n]));
    }
    if (json_object_size(e) != n) {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)e, key, v) fprintf(stderr, "    member %s\n", key);
    }
    assert_int_equal(json_object_size(e), n);
}

static void assert_json_equal(const json_t *a, const json_t *b) {
    if (!json_equal(a, b)) {
        char *x = json_dumps(a, JSON_SORT_KEYS | JSON_ENCODE_ANY);
        char *y = json_dumps(b, JSON_SORT_KEYS | JSON_ENCODE_ANY);
        fprintf(stderr, "    expected %s\n    got      %s\n", x, y);
        free(x);
        free(y);
    }
    assert_true(json_equal(a, b));
}

static char *v5(const char *type, const char *name) {
    static char out[4][37];
    static int next;
    char *o = out[next++ % 4];
    uuid_v5(type, name, o);
    return o;
}

/* ---- flattening: references ---- */

static void test_nested_routes_reference_their_service_by_id(void **state) {
    (void)state;
    json_t *m = model_of(
        DOC("services"
            : [
                {"name" : "a", "host" : "127.0.0.1", "routes" : [ {"paths" : ["/a"]} ]},
                {"name" : "b", "host" : "127.0.0.1",
                 "routes" : [ {"paths" : ["/b"]}, {"name" : "b2", "paths" : ["/c"],
                     "service" : "b"} ]}
            ]),
        NULL);
    assert_int_equal(json_array_size(model_items(m, ENTITY_SERVICE)), 2);
    assert_int_equal(json_array_size(model_items(m, ENTITY_ROUTE)), 3);
    const char *a = str(item(m, ENTITY_SERVICE, 0), "id"),
               *b = str(item(m, ENTITY_SERVICE, 1), "id");
    assert_string_equal(ref_id(item(m, ENTITY_ROUTE, 0), "service"), a);
    assert_string_equal(ref_id(item(m, ENTITY_ROUTE, 1), "service"), b);
    assert_string_equal(ref_id(item(m, ENTITY_ROUTE, 2), "service"), b);
    /* services hold no routes: they are flat */
    assert_null(json_object_get(item(m, ENTITY_SERVICE, 0), "routes"));
    json_decref(m);
}

static void test_top_level_routes_resolve_name_or_id_and_id_and_name(void **state) {
    (void)state;
    json_t *m = model_of(
        DOC("services"
            : [ {"name" : "a", "host" : "127.0.0.1"},
                 {"id" : "0B9F2F5E-7C5C-4F7D-9D3A-2C1A0B7E6F11", "host" : "127.0.0.2"} ],
              "routes"
            : [
                {"service" : "a", "paths" : ["/1"]},
                {"service" : "0B9F2F5E-7C5C-4F7D-9D3A-2C1A0B7E6F11", "paths" : ["/2"]},
                {"service" : {"id" : "0b9f2f5e-7c5c-4f7d-9d3a-2c1a0b7e6f11"}, "paths" : ["/3"]},
                {"service" : {"name" : "a"}, "paths" : ["/4"]}
            ]),
        NULL);
    const char *a = str(item(m, ENTITY_SERVICE, 0), "id");
    assert_string_equal(a, v5("service", "a"));
    assert_string_equal(str(item(m, ENTITY_SERVICE, 1), "id"), ID_A);
    assert_string_equal(ref_id(item(m, ENTITY_ROUTE, 0), "service"), a);
    assert_string_equal(ref_id(item(m, ENTITY_ROUTE, 1), "service"), ID_A);
    assert_string_equal(ref_id(item(m, ENTITY_ROUTE, 2), "service"), ID_A);
    assert_string_equal(ref_id(item(m, ENTITY_ROUTE, 3), "service"), a);
    json_decref(m);
}

static void test_targets_reference_their_upstream_by_id(void **state) {
    (void)state;
    json_t *m = model_of(DOC("upstreams"
                             : [
                                 {"name" : "p", "targets" : [ {"target" : "10.0.0.1:1"} ]},
                                 {"name" : "q", "targets" : [ {"target" : "10.0.0.1:1"},
                                     {"target" : "10.0.0.2"} ]}
                             ]),
                         NULL);
    assert_int_equal(json_array_size(model_items(m, ENTITY_TARGET)), 3);
    const char *p = str(item(m, ENTITY_UPSTREAM, 0), "id"),
               *q = str(item(m, ENTITY_UPSTREAM, 1), "id");
    assert_string_equal(p, v5("upstream", "p"));
    assert_string_equal(ref_id(item(m, ENTITY_TARGET, 0), "upstream"), p);
    assert_string_equal(ref_id(item(m, ENTITY_TARGET, 1), "upstream"), q);
    assert_string_equal(ref_id(item(m, ENTITY_TARGET, 2), "upstream"), q);
    assert_null(json_object_get(item(m, ENTITY_UPSTREAM, 0), "targets"));
    json_decref(m);
}

/* ---- flattening: ids ---- */

static const char ids_doc[] = DOC(
    "services"
    : [
        {"name" : "named", "host" : "127.0.0.1", "routes" : [ {"paths" : ["/a"]}, {"name" : "r",
            "paths" : ["/b"]} ]},
        {"url" : "http://127.0.0.1:9000/x"}
    ],
      "upstreams"
    : [ {"name" : "Pool", "targets" : [ {"target" : "10.0.0.1"} ]} ],
      "consumers"
    : [ {"username" : "ann"}, {"custom_id" : "c-1"} ]);

static void test_same_document_gives_same_ids(void **state) {
    (void)state;
    json_t *a = model_of(ids_doc, NULL), *b = model_of(ids_doc, NULL);
    for (int k = 0; k < ENTITY_KINDS; k++) {
        json_t *ia = model_items(a, k), *ib = model_items(b, k);
        assert_int_equal(json_array_size(ia), json_array_size(ib));
        for (size_t i = 0; i < json_array_size(ia); i++) {
            const char *id = str(json_array_get(ia, i), "id");
            assert_true(uuid_valid(id));
            assert_string_equal(id, str(json_array_get(ib, i), "id"));
        }
    }
    /* every id differs from every other */
    assert_string_not_equal(str(item(a, ENTITY_ROUTE, 0), "id"),
                            str(item(a, ENTITY_ROUTE, 1), "id"));
    assert_string_not_equal(str(item(a, ENTITY_SERVICE, 0), "id"),
                            str(item(a, ENTITY_SERVICE, 1), "id"));
    assert_string_not_equal(str(item(a, ENTITY_CONSUMER, 0), "id"),
                            str(item(a, ENTITY_CONSUMER, 1), "id"));
    json_decref(a);
    json_decref(b);
}

static void test_derived_ids_are_what_they_always_were(void **state) {
    (void)state;
    json_t *m = model_of(ids_doc, NULL);
    const char *named = v5("service", "named");
    /* pinned: a store written by an earlier version must keep its ids */
    assert_string_equal(named, "72fde8f0-8b75-5399-bd5a-a7b645239a42");
    assert_string_equal(str(item(m, ENTITY_SERVICE, 0), "id"), named);
    assert_string_equal(str(item(m, ENTITY_SERVICE, 1), "id"),
                        v5("service", "http://127.0.0.1:9000/x"));
    char key[256];
    snprintf(key, sizeof key, "%s\npaths\t/a\nhosts\nmethods", named);
    assert_string_equal(str(item(m, ENTITY_ROUTE, 0), "id"), v5("route", key));
    assert_string_equal(str(item(m, ENTITY_ROUTE, 1), "id"), v5("route", "r"));
    const char *pool = v5("upstream", "pool"); /* the name as stored, lower-cased */
    assert_string_equal(str(item(m, ENTITY_UPSTREAM, 0), "id"), pool);
    snprintf(key, sizeof key, "%s\n10.0.0.1:8000", pool);
    assert_string_equal(str(item(m, ENTITY_TARGET, 0), "id"), v5("target", key));
    assert_string_equal(str(item(m, ENTITY_CONSUMER, 0), "id"), v5("consumer", "ann"));
    assert_string_equal(str(item(m, ENTITY_CONSUMER, 1), "id"), v5("consumer", "custom_id:c-1"));
    json_decref(m);
}

static void test_given_ids_are_kept_lower_cased(void **state) {
    (void)state;
    json_t *origins = NULL;
    json_t *m = model_of(DOC("services"
                             : [ {
                                 "id" : "0B9F2F5E-7C5C-4F7D-9D3A-2C1A0B7E6F11",
                                 "name" : "s",
                                 "host" : "127.0.0.1",
                                 "routes" : [ {"id" : "5D1C2B3A-4E5F-4A6B-8C7D-9E0F1A2B3C4D",
                                     "paths" : ["/"]} ]
                             } ]),
                         &origins);
    assert_string_equal(str(item(m, ENTITY_SERVICE, 0), "id"), ID_A);
    assert_string_equal(str(item(m, ENTITY_ROUTE, 0), "id"), ID_B);
    assert_string_equal(ref_id(item(m, ENTITY_ROUTE, 0), "service"), ID_A);
    /* given ids are not derived */
    assert_true(json_is_null(
        json_object_get(json_array_get(json_object_get(origins, "services"), 0), "derived")));
    assert_true(json_is_null(
        json_object_get(json_array_get(json_object_get(origins, "routes"), 0), "derived")));
    json_decref(origins);
    json_decref(m);
}

/* ---- flattening: fields, defaults, normalisation ---- */

static void test_every_schema_field_is_present_null_when_unset(void **state) {
    (void)state;
    json_t *m = model_of(DOC("services"
                             : [ {"host" : "127.0.0.1", "routes" : [ {"paths" : ["/a"]} ]} ],
                               "upstreams"
                             : [ {"name" : "p", "targets" : [ {"target" : "10.0.0.1:1"} ]} ],
                               "consumers"
                             : [ {"username" : "ann"} ]),
                         NULL);
    /* clang-format off */
    static const char *const service_keys[] = {
        "id", "created_at", "updated_at", "name", "protocol", "host", "port", "path",
        "connect_timeout", "read_timeout", "write_timeout", "retries", "enabled", "tags",
        "tls_verify", "tls_verify_depth", "ca_certificates", "client_certificate", NULL};
    static const char *const route_keys[] = {
        "id", "created_at", "updated_at", "name", "service", "paths", "hosts", "methods",
        "headers", "strip_path", "preserve_host", "regex_priority", "protocols",
        "https_redirect_status_code", "path_handling", "request_buffering", "response_buffering",
        "tags", "snis", "sources", "destinations", "expression", "priority", NULL};
    static const char *const upstream_keys[] = {
        "id", "created_at", "updated_at", "name", "algorithm", "tags", "healthchecks", "hash_on",
        "hash_fallback", "hash_on_header", "hash_fallback_header", "hash_on_cookie",
        "hash_on_cookie_path", "hash_on_query_arg", "hash_fallback_query_arg",
        "hash_on_uri_capture", "hash_fallback_uri_capture", "slots", "host_header",
        "client_certificate", "use_srv_name", NULL};
    static const char *const target_keys[] = {
        "id", "created_at", "updated_at", "target", "weight", "tags", "upstream", NULL};
    static const char *const consumer_keys[] = {
        "id", "created_at", "updated_at", "username", "custom_id", "tags", NULL};
    /* clang-format on */
    json_t *s = item(m, ENTITY_SERVICE, 0), *r = item(m, ENTITY_ROUTE, 0);
    assert_keys(s, service_keys);
    assert_keys(r, route_keys);
    assert_keys(item(m, ENTITY_UPSTREAM, 0), upstream_keys);
    assert_keys(item(m, ENTITY_TARGET, 0), target_keys);
    assert_keys(item(m, ENTITY_CONSUMER, 0), consumer_keys);
    static const char *const unset_service[] = {"name",
                                                "path",
                                                "tags",
                                                "tls_verify",
                                                "tls_verify_depth",
                                                "ca_certificates",
                                                "client_certificate"};
    for (size_t i = 0; i < sizeof unset_service / sizeof *unset_service; i++)
        assert_true(json_is_null(json_object_get(s, unset_service[i])));
    static const char *const unset_route[] = {"name",       "hosts",   "methods", "headers",
                                              "tags",       "snis",    "sources", "destinations",
                                              "expression", "priority"};
    for (size_t i = 0; i < sizeof unset_route / sizeof *unset_route; i++)
        assert_true(json_is_null(json_object_get(r, unset_route[i])));
    assert_true(json_is_null(json_object_get(item(m, ENTITY_CONSUMER, 0), "custom_id")));
    /* the empty kinds are there, empty */
    for (int k = 0; k < ENTITY_KINDS; k++)
        assert_true(json_is_array(model_items(m, k)));
    assert_int_equal(json_array_size(model_items(m, ENTITY_PLUGIN)), 0);
    assert_int_equal(json_object_size(m), ENTITY_KINDS);
    json_decref(m);
}

static void test_service_defaults_are_filled(void **state) {
    (void)state;
    json_t *m = model_of(DOC("services"
                             : [
                                 {"host" : "127.0.0.1"},
                                 {"host" : "127.0.0.1", "port" : 81, "retries" : 0,
                                     "enabled" : false, "read_timeout" : 5}
                             ]),
                         NULL);
    json_t *s = item(m, ENTITY_SERVICE, 0);
    assert_member(s, "protocol", "\"http\"");
    assert_member(s, "port", "80");
    assert_member(s, "retries", "5");
    assert_member(s, "connect_timeout", "60000");
    assert_member(s, "read_timeout", "60000");
    assert_member(s, "write_timeout", "60000");
    assert_member(s, "enabled", "true");
    s = item(m, ENTITY_SERVICE, 1);
    assert_member(s, "port", "81");
    assert_member(s, "retries", "0");
    assert_member(s, "enabled", "false");
    assert_member(s, "read_timeout", "5");
    json_decref(m);
}

static void test_route_defaults_are_filled(void **state) {
    (void)state;
    json_t *m = model_of(
        DOC("services"
            : [ {
                "host" : "127.0.0.1",
                "routes" : [
                    {"paths" : ["/a"]},
                    {"paths" : ["/b"], "strip_path" : false, "protocols" : ["https"],
                        "regex_priority" : 3}
                ]
            } ]),
        NULL);
    json_t *r = item(m, ENTITY_ROUTE, 0);
    assert_member(r, "strip_path", "true");
    assert_member(r, "preserve_host", "false");
    assert_member(r, "regex_priority", "0");
    assert_member(r, "protocols", "[\"http\", \"https\"]");
    assert_member(r, "https_redirect_status_code", "426");
    assert_member(r, "path_handling", "\"v0\"");
    assert_member(r, "request_buffering", "true");
    assert_member(r, "response_buffering", "true");
    assert_member(r, "paths", "[\"/a\"]");
    r = item(m, ENTITY_ROUTE, 1);
    assert_member(r, "strip_path", "false");
    assert_member(r, "protocols", "[\"https\"]");
    assert_member(r, "regex_priority", "3");
    json_decref(m);
}

static void test_targets_get_weight_and_default_port(void **state) {
    (void)state;
    json_t *m = model_of(DOC("upstreams"
                             : [ {
                                 "name" : "p",
                                 "targets" : [
                                     {"target" : "Backend.Example"},
                                     {"target" : "BACKEND.example:9001", "weight" : 0},
                                     {"target" : "10.0.0.1:80"},
                                     {"target" : "[::1]"},
                                     {"target" : "[::1]:81"}
                                 ]
                             } ]),
                         NULL);
    assert_member(item(m, ENTITY_TARGET, 0), "target", "\"backend.example:8000\"");
    assert_member(item(m, ENTITY_TARGET, 0), "weight", "100");
    assert_member(item(m, ENTITY_TARGET, 1), "target", "\"backend.example:9001\"");
    assert_member(item(m, ENTITY_TARGET, 1), "weight", "0");
    assert_member(item(m, ENTITY_TARGET, 2), "target", "\"10.0.0.1:80\"");
    assert_member(item(m, ENTITY_TARGET, 3), "target", "\"[::1]:8000\"");
    assert_member(item(m, ENTITY_TARGET, 4), "target", "\"[::1]:81\"");
    json_decref(m);
}

static void test_names_hosts_methods_and_header_names_are_normalised(void **state) {
    (void)state;
    json_t *m = model_of(
        DOC("services"
            : [ {
                "name" : "Svc",
                "host" : "Backend.EXAMPLE",
                "routes" : [ {
                    "name" : "Route-1",
                    "hosts" : [ "API.Example.com", "*.Example.ORG" ],
                    "methods" : [ "get", "Post" ],
                    "headers" : {"X-Version" : [ "V2", "v3" ], "accept" : ["Json"]}
                } ]
            } ],
              "upstreams"
            : [ {"name" : "Users-Pool"} ],
              "consumers"
            : [ {"username" : "Ann"} ]),
        NULL);
    json_t *s = item(m, ENTITY_SERVICE, 0), *r = item(m, ENTITY_ROUTE, 0);
    assert_member(s, "name", "\"Svc\""); /* service names keep their case */
    assert_member(s, "host", "\"backend.example\"");
    assert_member(r, "name", "\"Route-1\"");
    assert_member(r, "hosts", "[\"api.example.com\", \"*.example.org\"]");
    assert_member(r, "methods", "[\"GET\", \"POST\"]");
    /* names lower-cased, values as written */
    assert_member(r, "headers", "{\"x-version\": [\"V2\", \"v3\"], \"accept\": [\"Json\"]}");
    assert_member(item(m, ENTITY_UPSTREAM, 0), "name", "\"users-pool\"");
    assert_member(item(m, ENTITY_CONSUMER, 0), "username", "\"Ann\"");
    json_decref(m);
}

static void test_url_is_split_and_not_stored(void **state) {
    (void)state;
    json_t *m = model_of(DOC("services"
                             : [
                                 {"url" : "HTTP://Backend.Example:9001/v1/x"},
                                 {"url" : "http://127.0.0.1"},
                                 {"url" : "http://[::1]/"}
                             ]),
                         NULL);
    json_t *s = item(m, ENTITY_SERVICE, 0);
    assert_member(s, "protocol", "\"http\"");
    assert_member(s, "host", "\"backend.example\"");
    assert_member(s, "port", "9001");
    assert_member(s, "path", "\"/v1/x\"");
    assert_null(json_object_get(s, "url"));
    s = item(m, ENTITY_SERVICE, 1);
    assert_member(s, "host", "\"127.0.0.1\"");
    assert_member(s, "port", "80");
    assert_member(s, "path", "null");
    assert_null(json_object_get(s, "url"));
    s = item(m, ENTITY_SERVICE, 2);
    assert_member(s, "host", "\"::1\"");
    assert_member(s, "port", "80");
    assert_member(s, "path", "\"/\"");
    json_decref(m);
}

static void test_timestamps_are_kept_or_set_to_the_load_time(void **state) {
    (void)state;
    long long before = (long long)time(NULL);
    json_t *m = model_of(
        DOC("services"
            : [
                {"host" : "127.0.0.1", "created_at" : 1700000000, "updated_at" : 1700000500,
                 "routes" : [ {"paths" : ["/a"], "created_at" : 1600000000} ]},
                {"host" : "127.0.0.2"}
            ]),
        NULL);
    long long after = (long long)time(NULL);
    json_t *s = item(m, ENTITY_SERVICE, 0), *r = item(m, ENTITY_ROUTE, 0);
    assert_int_equal(integer(s, "created_at"), 1700000000);
    assert_int_equal(integer(s, "updated_at"), 1700000500);
    assert_int_equal(integer(r, "created_at"), 1600000000);
    long long t = integer(r, "updated_at");
    assert_true(t >= before && t <= after);
    s = item(m, ENTITY_SERVICE, 1);
    t = integer(s, "created_at");
    assert_true(t >= before && t <= after);
    assert_int_equal(integer(s, "updated_at"), t);
    json_decref(m);

    /* model_from_declarative takes the time it is given */
    json_t *doc = parse(DOC("services" : [ {"host" : "127.0.0.1", "updated_at" : 5} ]));
    struct errlist errs;
    errlist_init(&errs);
    m = model_from_declarative(doc, 42, NULL, &errs);
    assert_non_null(m);
    assert_int_equal(integer(item(m, ENTITY_SERVICE, 0), "created_at"), 42);
    assert_int_equal(integer(item(m, ENTITY_SERVICE, 0), "updated_at"), 5);
    errlist_free(&errs);
    json_decref(m);
    json_decref(doc);
}

static void test_origins_paths_and_derivations(void **state) {
    (void)state;
    json_t *origins = NULL;
    json_t *m = model_of(
        DOC("routes"
            : [ {"service" : "b", "paths" : ["/t"]} ],
              "services"
            : [
                {"url" : "http://127.0.0.1:81"},
                {"name" : "b", "host" : "127.0.0.1", "routes" : [ {"paths" : ["/b0"]},
                    {"id" : "5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "paths" : ["/b1"]} ]}
            ],
              "upstreams"
            : [ {"name" : "p", "targets" : [ {"target" : "10.0.0.1"}, {"target" : "10.0.0.2"} ]} ]),
        &origins);
    json_t *want = parse(
        "{\"services\": [{\"path\": \"services[0]\", \"derived\": \"key\", \"url\": true},"
        "                {\"path\": \"services[1]\", \"derived\": \"name\", \"url\": false}],"
        " \"routes\": [{\"path\": \"services[1].routes[0]\", \"derived\": \"key\", \"url\": false},"
        "              {\"path\": \"services[1].routes[1]\", \"derived\": null, \"url\": false},"
        "              {\"path\": \"routes[0]\", \"derived\": \"key\", \"url\": false}],"
        " \"upstreams\": [{\"path\": \"upstreams[0]\", \"derived\": \"name\", \"url\": false}],"
        " \"targets\": [{\"path\": \"upstreams[0].targets[0]\", \"derived\": \"key\", \"url\": "
        "false},"
        "               {\"path\": \"upstreams[0].targets[1]\", \"derived\": \"key\", \"url\": "
        "false}]}");
    const char *key;
    json_t *v;
    json_object_foreach(want, key, v) assert_json_equal(v, json_object_get(origins, key));
    /* the other kinds: present, empty */
    for (int k = 0; k < ENTITY_KINDS; k++)
        if (!json_object_get(want, entity_kinds[k].plural))
            assert_int_equal(json_array_size(json_object_get(origins, entity_kinds[k].plural)), 0);
    /* the top-level route comes after the nested ones, and names its service by id */
    assert_member(item(m, ENTITY_ROUTE, 2), "paths", "[\"/t\"]");
    assert_string_equal(ref_id(item(m, ENTITY_ROUTE, 2), "service"), v5("service", "b"));
    char buf[64];
    assert_string_equal(model_origin(origins, ENTITY_ROUTE, 1, buf, sizeof buf),
                        "services[1].routes[1]");
    assert_string_equal(model_origin(NULL, ENTITY_ROUTE, 1, buf, sizeof buf), "routes[1]");
    assert_string_equal(model_origin(origins, ENTITY_ROUTE, 7, buf, sizeof buf), "routes[7]");
    json_decref(want);
    json_decref(origins);
    json_decref(m);
}

/* ---- flattening: problems ---- */

static void test_duplicate_names_are_reported(void **state) {
    (void)state;
    expect_error(
        DOC("services"
            : [ {"name" : "a", "host" : "127.0.0.1"}, {"name" : "a", "host" : "127.0.0.2"} ]),
        "services[1].name: \"a\" is already used by services[0]");
    expect_error(DOC("services"
                     : [ {"name" : "s", "host" : "127.0.0.1", "routes" : [ {"name" : "r",
                          "paths" : ["/a"]} ]} ],
                       "routes"
                     : [ {"name" : "r", "service" : "s", "paths" : ["/b"]} ]),
                 "routes[0].name: \"r\" is already used by services[0].routes[0]");
    expect_error(DOC("upstreams"
                     : [ {"name" : "pool"}, {"name" : "x"}, {"name" : "POOL"} ]),
                 "upstreams[2].name: \"pool\" is already used by upstreams[0]");
    expect_error(DOC("consumers"
                     : [ {"username" : "ann"}, {"username" : "ann", "custom_id" : "c"} ]),
                 "consumers[1].username: \"ann\" is already used by consumers[0]");
    expect_error(DOC("consumers"
                     : [ {"username" : "ann", "custom_id" : "c"}, {"username" : "bob",
                          "custom_id" : "c"} ]),
                 "consumers[1].custom_id: \"c\" is already used by consumers[0]");
    /* names differing in case are different names (but not for upstreams, which are hosts) */
    expect_ok(DOC("services"
                  : [ {"name" : "a", "host" : "127.0.0.1"}, {"name" : "A",
                       "host" : "127.0.0.1"} ]));
}

static void test_duplicate_ids_are_reported(void **state) {
    (void)state;
    expect_error(DOC("services"
                     : [ {"id" : "0b9f2f5e-7c5c-4f7d-9d3a-2c1a0b7e6f11", "host" : "127.0.0.1"},
                          {"id" : "0B9F2F5E-7C5C-4F7D-9D3A-2C1A0B7E6F11", "host" : "127.0.0.2"} ]),
                 "services[1].id: \"" ID_A "\" is already used by services[0]");
    expect_error(DOC("services"
                     : [ {"name" : "s", "host" : "127.0.0.1",
                          "routes" : [ {"id" : "5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                              "paths" : ["/a"]}, {"id" : "5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                              "paths" : ["/b"]} ]} ]),
                 "services[0].routes[1].id: \"" ID_B "\" is already used by services[0].routes[0]");
    /* ids are per kind */
    expect_ok(DOC("services"
                  : [ {"id" : "0b9f2f5e-7c5c-4f7d-9d3a-2c1a0b7e6f11", "host" : "127.0.0.1",
                       "routes" : [ {"id" : "0b9f2f5e-7c5c-4f7d-9d3a-2c1a0b7e6f11",
                       "paths" : ["/"]} ]} ]));
}

static void test_services_with_the_same_url_need_a_name(void **state) {
    (void)state;
    expect_error(DOC("services"
                     : [ {"url" : "http://127.0.0.1:81/p"}, {"host" : "127.0.0.1", "port" : 81,
                          "path" : "/p"} ]),
                 "services[1]: has the same url as services[0]; give one of them a name or an id");
    expect_ok(DOC("services"
                  : [ {"url" : "http://127.0.0.1:81/p"}, {"name" : "b",
                       "url" : "http://127.0.0.1:81/p"} ]));
}

static void test_routes_matching_the_same_requests_conflict(void **state) {
    (void)state;
    expect_error(DOC("services"
                     : [ {"name" : "s", "host" : "127.0.0.1",
                          "routes" : [ {"paths" : [ "/a", "/b" ]}, {"paths" : [ "/b", "/a" ]} ]} ]),
                 "services[0].routes[1]: matches exactly the same paths, hosts, methods and "
                 "headers as services[0].routes[0]");
    /* on different services, named; hosts, methods and headers in another order and case */
    expect_error(
        DOC("services"
            : [ {"name" : "s", "host" : "127.0.0.1"}, {"name" : "t", "host" : "127.0.0.1"} ],
              "routes"
            : [
                {"name" : "one", "service" : "s", "paths" : ["/a"], "hosts" : [ "a.example",
                    "B.example" ],
                 "methods" : [ "GET", "post" ], "headers" : {"x-a" : [ "1", "2" ], "x-b" : ["3"]}},
                {"name" : "two", "service" : "t", "paths" : ["/a"], "hosts" : [ "b.example",
                    "a.example" ],
                 "methods" : [ "POST", "get" ], "headers" : {"X-B" : ["3"], "x-a" : [ "2", "1" ]}}
            ]),
        "routes[1]: matches exactly the same paths, hosts, methods and headers as routes[0]");
    /* hosts only */
    expect_error(DOC("services"
                     : [ {"name" : "s", "host" : "127.0.0.1",
                          "routes" : [ {"hosts" : ["a.example"]}, {"name" : "x",
                              "hosts" : ["A.EXAMPLE"]} ]} ]),
                 "services[0].routes[1]: matches exactly the same paths, hosts, methods and "
                 "headers as services[0].routes[0]");
}

static void test_routes_differing_in_any_condition_are_fine(void **state) {
    (void)state;
    expect_ok(DOC("services"
                  : [ {"name" : "s", "host" : "127.0.0.1",
                       "routes" : [
                           {"paths" : ["/a"]},
                           {"paths" : ["/a"], "headers" : {"x-v" : ["2"]}},
                           {"paths" : ["/a"], "headers" : {"x-v" : ["3"]}},
                           {"paths" : ["/a"], "headers" : {"x-w" : ["2"]}},
                           {"paths" : ["/a"], "headers" : {"x-v" : [ "2", "3" ]}},
                           {"paths" : ["/a"], "methods" : ["GET"]},
                           {"paths" : ["/a"], "hosts" : ["a.example"]},
                           {"paths" : [ "/a", "/b" ]}
                       ]} ]));
}

static void test_unknown_service_references_are_reported(void **state) {
    (void)state;
    expect_error(DOC("services"
                     : [ {"name" : "s", "host" : "127.0.0.1"} ], "routes"
                     : [ {"service" : "x", "paths" : ["/"]} ]),
                 "routes[0].service: no service with name or id \"x\"");
    expect_error(DOC("services"
                     : [ {"name" : "s", "host" : "127.0.0.1"} ], "routes"
                     : [ {"service" : {"name" : "S"}, "paths" : ["/"]} ]),
                 "routes[0].service: no service named \"S\"");
    expect_error(DOC("services"
                     : [ {"name" : "s", "host" : "127.0.0.1"} ], "routes"
                     : [ {"service" : "s", "paths" : ["/"]},
                          {"service" : {"id" : "11111111-2222-4333-8444-555555555555"},
                          "paths" : ["/x"]} ]),
                 "routes[1].service: no service with id \"" ID_MISSING "\"");
    expect_error(DOC("services"
                     : [ {"name" : "s", "host" : "127.0.0.1"} ], "routes"
                     : [ {"service" : "11111111-2222-4333-8444-555555555555", "paths" : ["/"]} ]),
                 "routes[0].service: no service with name or id \"" ID_MISSING "\"");
}

static void test_duplicate_targets_in_one_upstream_are_reported(void **state) {
    (void)state;
    expect_error(DOC("upstreams"
                     : [ {"name" : "p", "targets" : [ {"target" : "h"}, {"target" : "10.0.0.9"},
                          {"target" : "H:8000"} ]} ]),
                 "upstreams[0].targets[2].target: the same host and port as "
                 "upstreams[0].targets[0]");
    /* the same target in two upstreams is fine */
    expect_ok(DOC("upstreams"
                  : [
                      {"name" : "p", "targets" : [ {"target" : "h"} ]},
                      {"name" : "q", "targets" : [ {"target" : "h:8000"} ]}
                  ]));
}

static void test_header_names_differing_only_in_case_are_reported(void **state) {
    (void)state;
    expect_error(DOC("services"
                     : [ {"name" : "s", "host" : "127.0.0.1",
                          "routes" : [ {"paths" : ["/"], "headers" : {"X-Version" : ["1"],
                              "x-version" : ["2"]}} ]} ]),
                 "services[0].routes[0].headers.x-version: listed twice (names are "
                 "case-insensitive)");
}

/* ---- one entity ---- */

static void test_entity_normalize_fills_defaults_splits_url_and_drops_nulls(void **state) {
    (void)state;
    json_t *in = parse("{\"name\": \"s\", \"url\": \"http://Backend.Example:8080/p\","
                       " \"retries\": null, \"plugins\": [], \"tags\": [\"t\"]}");
    json_t *e = entity_normalize(ENTITY_SERVICE, in, 42);
    json_t *want = parse(
        "{\"id\": null, \"created_at\": 42, \"updated_at\": 42, \"name\": \"s\","
        " \"protocol\": \"http\", \"host\": \"backend.example\", \"port\": 8080, \"path\": \"/p\","
        " \"connect_timeout\": 60000, \"read_timeout\": 60000, \"write_timeout\": 60000,"
        " \"retries\": 5, \"enabled\": true, \"tags\": [\"t\"], \"tls_verify\": null,"
        " \"tls_verify_depth\": null, \"ca_certificates\": null, \"client_certificate\": null}");
    assert_json_equal(want, e);
    /* the input is not changed */
    assert_int_equal(json_object_size(in), 5);
    assert_true(json_is_null(json_object_get(in, "retries")));
    json_decref(want);
    json_decref(e);
    json_decref(in);
}

static void test_entity_normalize_keeps_references_as_given(void **state) {
    (void)state;
    json_t *in = parse("{\"id\": \"" ID_A_UPPER "\", \"service\": \"svc\", \"methods\": [\"get\"],"
                       " \"hosts\": [\"A.Example\"], \"headers\": {\"X-V\": [\"A\"]},"
                       " \"created_at\": 7}");
    json_t *e = entity_normalize(ENTITY_ROUTE, in, 42);
    assert_member(e, "id", "\"" ID_A "\"");
    assert_member(e, "service", "\"svc\"");
    assert_member(e, "methods", "[\"GET\"]");
    assert_member(e, "hosts", "[\"a.example\"]");
    assert_member(e, "headers", "{\"x-v\": [\"A\"]}");
    assert_member(e, "created_at", "7");
    assert_member(e, "updated_at", "42");
    assert_member(e, "strip_path", "true");
    json_decref(e);
    json_decref(in);

    in = parse("{\"target\": \"Host\"}");
    e = entity_normalize(ENTITY_TARGET, in, 1);
    json_t *want = parse("{\"id\": null, \"created_at\": 1, \"updated_at\": 1, \"target\": "
                         "\"host:8000\", \"weight\": 100, \"tags\": null, \"upstream\": null}");
    assert_json_equal(want, e);
    json_decref(want);
    json_decref(e);
    json_decref(in);

    in = parse("{\"target\": \"h:1\", \"upstream\": {\"id\": \"" ID_A "\"}}");
    e = entity_normalize(ENTITY_TARGET, in, 1);
    assert_member(e, "upstream", "{\"id\": \"" ID_A "\"}");
    json_decref(e);
    json_decref(in);
}

static void test_entity_check_refuses_header_names_differing_in_case(void **state) {
    (void)state;
    struct errlist errs;
    errlist_init(&errs);
    json_t *in = parse("{\"paths\": [\"/\"], \"headers\": {\"X-A\": [\"1\"], \"x-b\": [\"2\"],"
                       " \"x-a\": [\"3\"]}}");
    assert_false(entity_check(ENTITY_ROUTE, in, "routes[3]", &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.items[0],
                        "routes[3].headers.x-a: listed twice (names are case-insensitive)");
    assert_false(entity_check(ENTITY_ROUTE, in, "", &errs));
    assert_int_equal(errs.n, 2);
    assert_string_equal(errs.items[1], "headers.x-a: listed twice (names are case-insensitive)");
    json_decref(in);

    in = parse("{\"paths\": [\"/\"], \"headers\": {\"x-a\": [\"1\"], \"x-b\": [\"1\"]}}");
    assert_true(entity_check(ENTITY_ROUTE, in, "routes[0]", &errs));
    json_decref(in);
    in = parse("{\"paths\": [\"/\"]}");
    assert_true(entity_check(ENTITY_ROUTE, in, "routes[0]", &errs));
    assert_true(entity_check(ENTITY_SERVICE, in, "services[0]", &errs));
    assert_int_equal(errs.n, 2);
    json_decref(in);
    errlist_free(&errs);
}

static void test_entity_derive_id_is_stable(void **state) {
    (void)state;
    char a[37], b[37];
    const char *derived = NULL;
    json_t *e = parse("{\"name\": \"orders\", \"host\": \"h\"}");
    assert_true(entity_derive_id(ENTITY_SERVICE, e, a, &derived));
    assert_string_equal(derived, "name");
    assert_string_equal(a, v5("service", "orders"));
    assert_true(entity_derive_id(ENTITY_SERVICE, e, b, &derived));
    assert_string_equal(a, b);
    /* the same name for another kind is another id */
    assert_true(entity_derive_id(ENTITY_ROUTE, e, b, &derived));
    assert_string_equal(b, v5("route", "orders"));
    assert_string_not_equal(a, b);
    json_decref(e);

    e = parse("{\"protocol\": \"http\", \"host\": \"::1\", \"port\": 81, \"path\": null}");
    assert_true(entity_derive_id(ENTITY_SERVICE, e, a, &derived));
    assert_string_equal(derived, "key");
    assert_string_equal(a, v5("service", "http://::1:81"));
    json_decref(e);

    e = parse("{\"service\": {\"id\": \"" ID_A "\"}, \"paths\": [\"/a\", \"/b\"], \"hosts\": null,"
              " \"methods\": [\"GET\"], \"headers\": {\"x-v\": [\"1\", \"2\"]}}");
    assert_true(entity_derive_id(ENTITY_ROUTE, e, a, &derived));
    assert_string_equal(derived, "key");
    assert_string_equal(a, v5("route", ID_A "\npaths\t/a\t/b\nhosts\nmethods\tGET\nx-v\t1\t2"));
    json_decref(e);

    /* a route without its service, a target without its upstream: nothing to derive from */
    e = parse("{\"paths\": [\"/a\"]}");
    assert_false(entity_derive_id(ENTITY_ROUTE, e, a, &derived));
    json_decref(e);
    e = parse("{\"target\": \"h:1\"}");
    assert_false(entity_derive_id(ENTITY_TARGET, e, a, &derived));
    json_decref(e);
    /* a target's `target` is not a name: its id includes its upstream */
    e = parse("{\"target\": \"h:1\", \"upstream\": {\"id\": \"" ID_A "\"}}");
    assert_true(entity_derive_id(ENTITY_TARGET, e, a, &derived));
    assert_string_equal(derived, "key");
    assert_string_equal(a, v5("target", ID_A "\nh:1"));
    json_decref(e);
    e = parse("{\"username\": null, \"custom_id\": null}");
    assert_false(entity_derive_id(ENTITY_CONSUMER, e, a, &derived));
    json_decref(e);
    e = parse("{\"cert\": \"x\"}");
    assert_false(entity_derive_id(ENTITY_CA_CERTIFICATE, e, a, &derived));
    json_decref(e);
}

/* ---- lookups ---- */

static const char lookup_doc[] =
    DOC("services"
        : [
            {"name" : "5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "host" : "127.0.0.1"},
            {"name" : "a", "host" : "127.0.0.1", "routes" : [ {"name" : "r", "paths" : [ "/a",
                "/b" ]} ]},
            {"id" : "5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "host" : "127.0.0.2"},
            {"id" : "0b9f2f5e-7c5c-4f7d-9d3a-2c1a0b7e6f11", "name" : "c", "host" : "127.0.0.3"}
        ],
          "upstreams"
        : [
            {"name" : "pool", "targets" : [ {"target" : "h"}, {"target" : "10.0.0.1:81"} ]},
            {"name" : "other", "targets" : [ {"target" : "h:8000"} ]}
        ],
          "consumers"
        : [ {"username" : "ann"} ]);

static void test_model_find_by_id_name_and_target(void **state) {
    (void)state;
    json_t *m = model_of(lookup_doc, NULL);
    assert_int_equal(model_find(m, ENTITY_SERVICE, ID_A, NULL, NULL), 3);
    assert_int_equal(model_find(m, ENTITY_SERVICE, ID_A_UPPER, NULL, NULL), 3);
    assert_int_equal(model_find(m, ENTITY_SERVICE, "a", NULL, NULL), 1);
    assert_int_equal(model_find(m, ENTITY_SERVICE, "c", NULL, NULL), 3);
    assert_int_equal(model_find(m, ENTITY_SERVICE, "A", NULL, NULL), -1); /* names: exact */
    assert_int_equal(model_find(m, ENTITY_SERVICE, "x", NULL, NULL), -1);
    assert_int_equal(model_find(m, ENTITY_SERVICE, ID_MISSING, NULL, NULL), -1);
    /* service 0 is named like service 2's id: the id wins */
    assert_int_equal(model_find(m, ENTITY_SERVICE, ID_B, NULL, NULL), 2);
    assert_int_equal(model_find(m, ENTITY_ROUTE, "r", NULL, NULL), 0);
    assert_int_equal(model_find(m, ENTITY_ROUTE, "a", NULL, NULL), -1);
    /* upstream names are host names */
    assert_int_equal(model_find(m, ENTITY_UPSTREAM, "OTHER", NULL, NULL), 1);
    assert_int_equal(model_find(m, ENTITY_CONSUMER, "ann", NULL, NULL), 0);

    const char *pool = str(item(m, ENTITY_UPSTREAM, 0), "id");
    const char *other = str(item(m, ENTITY_UPSTREAM, 1), "id");
    assert_int_equal(model_find(m, ENTITY_TARGET, "h:8000", "upstream", pool), 0);
    assert_int_equal(model_find(m, ENTITY_TARGET, "H", "upstream", pool), 0);
    assert_int_equal(model_find(m, ENTITY_TARGET, "h", "upstream", other), 2);
    assert_int_equal(model_find(m, ENTITY_TARGET, "10.0.0.1:81", "upstream", pool), 1);
    assert_int_equal(model_find(m, ENTITY_TARGET, "10.0.0.1:81", "upstream", other), -1);
    assert_int_equal(model_find(m, ENTITY_TARGET, "10.0.0.1", "upstream", pool), -1);
    assert_int_equal(model_find(m, ENTITY_TARGET, "h", "upstream", ID_MISSING), -1);
    /* a target's id, only within its own upstream */
    char tid[37];
    snprintf(tid, sizeof tid, "%s", str(item(m, ENTITY_TARGET, 2), "id"));
    assert_int_equal(model_find(m, ENTITY_TARGET, tid, "upstream", other), 2);
    assert_int_equal(model_find(m, ENTITY_TARGET, tid, "upstream", pool), -1);
    assert_int_equal(model_find(m, ENTITY_TARGET, tid, NULL, NULL), 2);
    json_decref(m);
}

static void test_model_resolve_ref_finds_or_says_what_was_missing(void **state) {
    (void)state;
    json_t *m = model_of(lookup_doc, NULL);
    char what[256] = "";
    struct {
        const char *ref;
        long index;
        const char *what;
    } cases[] = {
        {"\"a\"", 1, NULL},
        {"{\"name\": \"a\"}", 1, NULL},
        {"\"" ID_A_UPPER "\"", 3, NULL},
        {"{\"id\": \"" ID_A_UPPER "\"}", 3, NULL},
        {"\"" ID_B "\"", 2, NULL}, /* the id wins over service 0's name */
        {"{\"name\": \"" ID_B "\"}", 0, NULL},
        {"\"x\"", -1, "no service with name or id \"x\""},
        {"{\"name\": \"x\"}", -1, "no service named \"x\""},
        {"{\"name\": \"A\"}", -1, "no service named \"A\""},
        {"{\"id\": \"" ID_MISSING "\"}", -1, "no service with id \"" ID_MISSING "\""},
        {"\"" ID_MISSING "\"", -1, "no service with name or id \"" ID_MISSING "\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *ref = json_loads(cases[i].ref, JSON_DECODE_ANY, NULL);
        assert_non_null(ref);
        what[0] = '\0';
        long got = model_resolve_ref(m, ENTITY_SERVICE, ref, what, sizeof what);
        if (got != cases[i].index) fprintf(stderr, "    ref %s: %ld\n", cases[i].ref, got);
        assert_int_equal(got, cases[i].index);
        if (cases[i].what) assert_string_equal(what, cases[i].what);
        json_decref(ref);
    }
    json_t *ref = parse("{\"name\": \"x\"}");
    assert_int_equal(model_resolve_ref(m, ENTITY_CONSUMER, ref, what, sizeof what), -1);
    assert_string_equal(what, "no consumer named \"x\"");
    json_decref(ref);
    json_decref(m);
}

static void test_model_conflict_names_the_clashing_field(void **state) {
    (void)state;
    json_t *m = model_of(lookup_doc, NULL);
    const char *field = NULL;
    json_t *e = parse("{\"name\": \"a\", \"host\": \"x\"}");
    assert_int_equal(model_conflict(m, ENTITY_SERVICE, e, -1, &field, NULL), 1);
    assert_string_equal(field, "name");
    assert_int_equal(model_conflict(m, ENTITY_SERVICE, e, 1, &field, NULL), -1); /* itself */
    json_decref(e);

    e = parse("{\"id\": \"" ID_A_UPPER "\", \"name\": \"new\"}");
    field = NULL;
    assert_int_equal(model_conflict(m, ENTITY_SERVICE, e, -1, &field, NULL), 3);
    assert_string_equal(field, "id");
    assert_int_equal(model_conflict(m, ENTITY_SERVICE, e, 3, &field, NULL), -1);
    json_decref(e);

    e = parse("{\"name\": \"Pool\"}");
    assert_int_equal(model_conflict(m, ENTITY_UPSTREAM, e, -1, &field, NULL), 0);
    assert_string_equal(field, "name");
    json_decref(e);

    char text[256];
    snprintf(text, sizeof text, "{\"target\": \"10.0.0.1:81\", \"upstream\": {\"id\": \"%s\"}}",
             str(item(m, ENTITY_UPSTREAM, 0), "id"));
    e = parse(text);
    assert_int_equal(model_conflict(m, ENTITY_TARGET, e, -1, &field, NULL), 1);
    assert_string_equal(field, "target");
    assert_int_equal(model_conflict(m, ENTITY_TARGET, e, 1, &field, NULL), -1);
    json_decref(e);
    snprintf(text, sizeof text, "{\"target\": \"10.0.0.1:81\", \"upstream\": {\"id\": \"%s\"}}",
             str(item(m, ENTITY_UPSTREAM, 1), "id"));
    e = parse(text);
    assert_int_equal(model_conflict(m, ENTITY_TARGET, e, -1, &field, NULL), -1);
    json_decref(e);

    /* a route matching the same requests, on any service */
    snprintf(text, sizeof text,
             "{\"name\": \"other\", \"service\": {\"id\": \"%s\"}, \"paths\": [\"/b\", \"/a\"],"
             " \"hosts\": null, \"methods\": null, \"headers\": null}",
             ID_A);
    e = parse(text);
    assert_int_equal(model_conflict(m, ENTITY_ROUTE, e, -1, &field, NULL), 0);
    assert_string_equal(field, "paths");
    assert_int_equal(model_conflict(m, ENTITY_ROUTE, e, 0, &field, NULL), -1);
    json_decref(e);
    e = parse("{\"name\": \"other\", \"paths\": [\"/a\", \"/b\"], \"headers\": {\"x\": [\"1\"]}}");
    assert_int_equal(model_conflict(m, ENTITY_ROUTE, e, -1, &field, NULL), -1);
    json_decref(e);
    e = parse("{\"name\": \"other\", \"paths\": [\"/a\"]}");
    assert_int_equal(model_conflict(m, ENTITY_ROUTE, e, -1, &field, NULL), -1);
    json_decref(e);
    json_decref(m);
}

static void test_model_check_reports_dangling_references(void **state) {
    (void)state;
    json_t *origins = NULL;
    json_t *m = model_of(lookup_doc, &origins);
    struct errlist errs;
    errlist_init(&errs);
    assert_true(model_check(m, origins, &errs));
    assert_true(model_check(m, NULL, &errs));
    assert_int_equal(errs.n, 0);

    /* a copy whose route points at a service that is not there; the original is untouched */
    json_t *copy = json_copy(m);
    json_t *routes = json_copy(model_items(m, ENTITY_ROUTE));
    json_t *route = json_copy(json_array_get(routes, 0));
    json_object_set_new(route, "service", json_pack("{s:s}", "id", ID_MISSING));
    json_array_set_new(routes, 0, route);
    json_object_set_new(copy, "routes", routes);
    assert_false(model_check(copy, NULL, &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.items[0], "routes[0].service: no service with id \"" ID_MISSING "\"");
    assert_false(model_check(copy, origins, &errs));
    assert_int_equal(errs.n, 2);
    assert_string_equal(errs.items[1],
                        "services[1].routes[0].service: no service with id \"" ID_MISSING "\"");
    json_object_set_new(route, "service", json_null());
    assert_false(model_check(copy, NULL, &errs));
    assert_int_equal(errs.n, 3);
    assert_string_equal(errs.items[2], "routes[0].service: required");
    assert_true(model_check(m, NULL, &errs));
    json_decref(copy);

    /* a target whose upstream is gone */
    copy = json_copy(m);
    json_t *ups = json_copy(model_items(m, ENTITY_UPSTREAM));
    json_array_remove(ups, 1);
    json_object_set_new(copy, "upstreams", ups);
    char msg[256];
    snprintf(msg, sizeof msg, "targets[2].upstream: no upstream with id \"%s\"",
             str(item(m, ENTITY_UPSTREAM, 1), "id"));
    assert_false(model_check(copy, NULL, &errs));
    assert_int_equal(errs.n, 4);
    assert_string_equal(errs.items[3], msg);
    json_decref(copy);

    /* the same route twice */
    copy = json_copy(m);
    routes = json_copy(model_items(m, ENTITY_ROUTE));
    json_array_append(routes, json_array_get(routes, 0));
    json_object_set_new(copy, "routes", routes);
    assert_false(model_check(copy, NULL, &errs));
    assert_int_equal(errs.n, 7);
    char id_msg[256];
    snprintf(id_msg, sizeof id_msg, "routes[1].id: \"%s\" is already used by routes[0]",
             str(item(m, ENTITY_ROUTE, 0), "id"));
    assert_true(has_error(&errs, id_msg));
    assert_true(has_error(&errs, "routes[1].name: \"r\" is already used by routes[0]"));
    assert_true(has_error(&errs, "routes[1]: matches exactly the same paths, hosts, methods and "
                                 "headers as routes[0]"));
    json_decref(copy);
    errlist_free(&errs);
    json_decref(origins);
    json_decref(m);
}

/* ---- export ---- */

static const char export_doc[] = DOC(
    "services"
    : [
        {"name" : "a", "url" : "http://127.0.0.1:9001/v1", "tags" : ["t"],
         "routes" : [ {"paths" : ["/a"], "methods" : ["get"]}, {"name" : "a2",
             "hosts" : ["A.Example"]} ]},
        {"host" : "127.0.0.2", "created_at" : 1700000000}
    ],
      "routes"
    : [ {"service" : "a", "paths" : ["/top"], "headers" : {"X-V" : ["1"]}} ],
      "upstreams"
    : [
        {"name" : "Pool", "targets" : [ {"target" : "10.0.0.1"}, {"target" : "10.0.0.2:81",
            "weight" : 5} ]},
        {"name" : "empty"}
    ],
      "consumers"
    : [
        {"username" : "ann", "keyauth_credentials" : [ {"key" : "k1"} ],
         "jwt_secrets" : [ {"key" : "iss", "secret" : "s3cret"} ]},
        {"custom_id" : "c"}
    ]);

/* export_doc with every service and route named. */
static const char named_export_doc[] = DOC(
    "services"
    : [
        {"name" : "a", "url" : "http://127.0.0.1:9001/v1", "tags" : ["t"],
         "routes" : [ {"name" : "a1", "paths" : ["/a"], "methods" : ["get"]}, {"name" : "a2",
             "hosts" : ["A.Example"]} ]},
        {"name" : "b", "host" : "127.0.0.2", "created_at" : 1700000000}
    ],
      "routes"
    : [ {"name" : "top", "service" : "a", "paths" : ["/top"], "headers" : {"X-V" : ["1"]}} ],
      "upstreams"
    : [
        {"name" : "Pool", "targets" : [ {"target" : "10.0.0.1"}, {"target" : "10.0.0.2:81",
            "weight" : 5} ]},
        {"name" : "empty"}
    ],
      "consumers"
    : [
        {"username" : "ann", "keyauth_credentials" : [ {"key" : "k1"} ],
         "jwt_secrets" : [ {"key" : "iss", "secret" : "s3cret"} ]},
        {"custom_id" : "c"}
    ]);

/* model_export(model_of(doc)) reads back as the same model, and exports the same again. */
static void check_round_trip(const char *doc_text) {
    json_t *m = model_of(doc_text, NULL);
    json_t *doc = model_export(m);
    struct errlist errs;
    errlist_init(&errs);
    json_t *back = config_model_from_doc(doc, (long long)time(NULL), NULL, &errs);
    print_errors(&errs);
    size_t n_errs = errs.n;
    errlist_free(&errs);
    bool same_model = back && json_equal(m, back);
    json_t *doc2 = back ? model_export(back) : NULL;
    bool same_doc = doc2 && json_equal(doc, doc2);
    json_decref(doc2);
    json_decref(back);
    json_decref(doc);
    json_decref(m);
    assert_int_equal(n_errs, 0);
    assert_true(same_model);
    assert_true(same_doc);
}

static void test_export_reads_back_as_the_same_model(void **state) {
    (void)state;
    check_round_trip(named_export_doc);
    /* an empty model exports only the version */
    json_t *m = model_new();
    json_t *doc = model_export(m);
    json_t *want = parse("{\"_format_version\": \"3.0\"}");
    assert_json_equal(want, doc);
    json_decref(want);
    json_decref(doc);
    json_decref(m);
}

/* An unnamed service or route is stored with "name": null; its export must read back too (the
 * store is reloaded from it at start-up, and GET /config is meant for POST /config). */
static void test_export_of_unnamed_services_and_routes_reads_back(void **state) {
    (void)state;
    check_round_trip(export_doc);
}

static void test_export_nests_targets_and_omits_empty_kinds(void **state) {
    (void)state;
    json_t *m = model_of(export_doc, NULL);
    json_t *doc = model_export(m);
    static const char *const keys[] = {"_format_version", "services",  "routes",
                                       "upstreams",       "consumers", NULL};
    assert_keys(doc, keys);
    assert_member(doc, "_format_version", "\"3.0\"");
    /* services flat, routes top-level naming their service by id */
    json_t *services = json_object_get(doc, "services"), *routes = json_object_get(doc, "routes");
    assert_int_equal(json_array_size(services), 2);
    assert_int_equal(json_array_size(routes), 3);
    assert_null(json_object_get(json_array_get(services, 0), "routes"));
    assert_json_equal(item(m, ENTITY_SERVICE, 0), json_array_get(services, 0));
    for (size_t i = 0; i < 3; i++)
        assert_json_equal(item(m, ENTITY_ROUTE, i), json_array_get(routes, i));
    /* targets inside their upstream, without "upstream"; an upstream without targets has none */
    json_t *ups = json_object_get(doc, "upstreams");
    assert_int_equal(json_array_size(ups), 2);
    json_t *targets = json_object_get(json_array_get(ups, 0), "targets");
    assert_int_equal(json_array_size(targets), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *t = json_array_get(targets, i), *want = json_copy(item(m, ENTITY_TARGET, i));
        json_object_del(want, "upstream");
        assert_null(json_object_get(t, "upstream"));
        assert_json_equal(want, t);
        json_decref(want);
    }
    assert_member(json_array_get(targets, 1), "target", "\"10.0.0.2:81\"");
    assert_null(json_object_get(json_array_get(ups, 1), "targets"));
    /* the model's own entities are not changed by the export */
    assert_null(json_object_get(item(m, ENTITY_UPSTREAM, 0), "targets"));
    assert_non_null(json_object_get(item(m, ENTITY_TARGET, 0), "upstream"));
    /* credentials inside their consumer */
    json_t *ann = json_array_get(json_object_get(doc, "consumers"), 0);
    assert_int_equal(json_array_size(json_object_get(ann, "keyauth_credentials")), 1);
    assert_int_equal(json_array_size(json_object_get(ann, "jwt_secrets")), 1);
    assert_null(
        json_object_get(json_array_get(json_object_get(ann, "jwt_secrets"), 0), "consumer"));
    json_t *c = json_array_get(json_object_get(doc, "consumers"), 1);
    assert_null(json_object_get(c, "keyauth_credentials"));
    assert_null(json_object_get(c, "jwt_secrets"));
    json_decref(doc);
    json_decref(m);
}

/* ---- export as text ---- */

/* model_export_text(m) must be, as JSON, model_export(m). */
static void check_text(const json_t *m, struct model_text_cache *cache) {
    size_t len = 0;
    char *text = model_export_text(m, cache, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    json_error_t jerr;
    json_t *got = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!got) fprintf(stderr, "    not JSON: %s: %.200s\n", jerr.text, text);
    assert_non_null(got);
    json_t *want = model_export(m);
    assert_json_equal(want, got);
    json_decref(want);
    json_decref(got);
    free(text);
}

static void test_export_text_equals_the_export(void **state) {
    (void)state;
    struct model_text_cache *cache = model_text_cache_new();
    json_t *m = model_of(export_doc, NULL);
    check_text(m, cache);
    check_text(m, cache); /* from the cache */
    json_t *empty = model_new();
    check_text(empty, cache);
    size_t len;
    char *text = model_export_text(empty, cache, &len);
    assert_string_equal(text, "{\"_format_version\":\"3.0\"}");
    free(text);
    check_text(m, cache); /* every entity evicted by the empty export, then cached again */
    json_decref(empty);
    json_decref(m);
    model_text_cache_free(cache);
}

/* A deterministic generator: the same changes on every run. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static size_t rng(size_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (size_t)(rng_state % n);
}

/* A new model sharing `m`'s entities except for kind k's array, which is `items` (taken). */
static json_t *with_items(const json_t *m, enum entity_kind k, json_t *items) {
    json_t *next = json_copy((json_t *)m);
    json_object_set_new(next, entity_kinds[k].plural, items);
    return next;
}

/* A stored entity as the admin API makes one: normalised, with its derived id. */
static json_t *new_entity(enum entity_kind k, const char *input) {
    json_t *in = parse(input);
    json_t *e = entity_normalize(k, in, 1700000000);
    char id[37];
    const char *derived;
    if (!entity_derive_id(k, e, id, &derived)) uuid_v4(id);
    json_object_set_new(e, "id", json_string(id));
    json_decref(in);
    return e;
}

static unsigned changes;

/* Replaces route i by a changed copy (same id, new paths), like PATCH. */
static json_t *replace_route(const json_t *m, size_t i) {
    json_t *routes = json_copy(model_items(m, ENTITY_ROUTE));
    json_t *r = json_deep_copy(json_array_get(routes, i));
    char path[64];
    snprintf(path, sizeof path, "/changed/%u", changes++);
    json_object_set_new(r, "paths", json_pack("[s]", path));
    json_object_set_new(r, "updated_at", json_integer(1800000000 + changes));
    json_array_set_new(routes, i, r);
    return with_items(m, ENTITY_ROUTE, routes);
}

static json_t *delete_item(const json_t *m, enum entity_kind k, size_t i) {
    json_t *items = json_copy(model_items(m, k));
    json_array_remove(items, i);
    return with_items(m, k, items);
}

static json_t *append_item(const json_t *m, enum entity_kind k, json_t *e) {
    json_t *items = json_copy(model_items(m, k));
    json_array_append_new(items, e);
    return with_items(m, k, items);
}

static json_t *add_service(const json_t *m) {
    char in[128];
    snprintf(in, sizeof in, "{\"name\": \"added-%u\", \"host\": \"127.0.0.1\"}", changes++);
    return append_item(m, ENTITY_SERVICE, new_entity(ENTITY_SERVICE, in));
}

static json_t *add_route(const json_t *m) {
    json_t *svc = json_array_get(model_items(m, ENTITY_SERVICE),
                                 rng(json_array_size(model_items(m, ENTITY_SERVICE))));
    char in[256];
    snprintf(in, sizeof in, "{\"service\": {\"id\": \"%s\"}, \"paths\": [\"/added/%u\"]}",
             str(svc, "id"), changes++);
    return append_item(m, ENTITY_ROUTE, new_entity(ENTITY_ROUTE, in));
}

static json_t *add_target(const json_t *m) {
    json_t *up = json_array_get(model_items(m, ENTITY_UPSTREAM),
                                rng(json_array_size(model_items(m, ENTITY_UPSTREAM))));
    char in[256];
    snprintf(in, sizeof in, "{\"upstream\": {\"id\": \"%s\"}, \"target\": \"10.1.%u.%u:80\"}",
             str(up, "id"), changes / 200, changes % 200);
    changes++;
    return append_item(m, ENTITY_TARGET, new_entity(ENTITY_TARGET, in));
}

static json_t *replace_target(const json_t *m, size_t i) {
    json_t *targets = json_copy(model_items(m, ENTITY_TARGET));
    json_t *t = json_copy(json_array_get(targets, i));
    json_object_set_new(t, "weight", json_integer((json_int_t)(changes++ % 1000)));
    json_array_set_new(targets, i, t);
    return with_items(m, ENTITY_TARGET, targets);
}

/* Replaces *m by next (the old model is dropped; its entities live on where shared). */
static void step(json_t **m, json_t *next) {
    json_decref(*m);
    *m = next;
}

/* The document of the text tests: services × routes_each routes, 4 upstreams of 3 targets. */
static json_t *big_model(size_t services, size_t routes_each) {
    json_t *doc = json_pack("{s:s}", "_format_version", "3.0");
    json_t *svcs = json_array();
    for (size_t s = 0; s < services; s++) {
        char name[32];
        snprintf(name, sizeof name, "s%zu", s);
        json_t *routes = json_array();
        for (size_t r = 0; r < routes_each; r++) {
            char path[64];
            snprintf(path, sizeof path, "/s%zu/r%zu", s, r);
            json_array_append_new(routes, json_pack("{s:[s]}", "paths", path));
        }
        json_array_append_new(svcs, json_pack("{s:s, s:s, s:o}", "name", name, "host", "127.0.0.1",
                                              "routes", routes));
    }
    json_object_set_new(doc, "services", svcs);
    json_t *ups = json_array();
    for (size_t u = 0; u < 4; u++) {
        char name[32];
        snprintf(name, sizeof name, "pool-%zu", u);
        json_array_append_new(ups, json_pack("{s:s, s:[{s:s}, {s:s}, {s:s}]}", "name", name,
                                             "targets", "target", "10.0.0.1", "target",
                                             "10.0.0.2:81", "target", "h.example"));
    }
    json_object_set_new(doc, "upstreams", ups);
    json_object_set_new(
        doc, "consumers",
        json_pack("[{s:s, s:[{s:s}]}]", "username", "ann", "keyauth_credentials", "key", "k1"));
    struct errlist errs;
    errlist_init(&errs);
    json_t *m = config_model_from_doc(doc, (long long)time(NULL), NULL, &errs);
    if (!m) print_errors(&errs);
    assert_non_null(m);
    errlist_free(&errs);
    json_decref(doc);
    return m;
}

static void test_export_text_follows_shallow_copies(void **state) {
    (void)state;
    struct model_text_cache *cache = model_text_cache_new();
    json_t *m = big_model(5, 4);
    check_text(m, cache);
    /* one route replaced, one deleted, one service added: as the admin API builds models */
    json_t *next = replace_route(m, 3);
    step(&next, delete_item(next, ENTITY_ROUTE, 7));
    step(&next, add_service(next));
    check_text(next, cache);
    /* the text of the old model is still right (its entities were evicted, then come back) */
    check_text(m, cache);
    check_text(next, cache);
    /* a target replaced: the nested text changes too */
    step(&next, replace_target(next, 4));
    check_text(next, cache);
    json_decref(next);
    json_decref(m);
    model_text_cache_free(cache);
}

static void test_export_text_survives_many_random_changes(void **state) {
    (void)state;
    struct model_text_cache *cache = model_text_cache_new();
    json_t *m = big_model(40, 10);
    json_t *graveyard = json_array(); /* deleted routes, to bring back later */
    struct errlist errs;
    errlist_init(&errs);
    check_text(m, cache);
    for (int round = 0; round < 50; round++) {
        json_t *next = replace_route(m, rng(json_array_size(model_items(m, ENTITY_ROUTE))));
        size_t deletions = 1 + rng(8);
        for (size_t d = 0; d < deletions; d++) {
            json_t *routes = model_items(next, ENTITY_ROUTE);
            size_t i = rng(json_array_size(routes));
            json_array_append(graveyard, json_array_get(routes, i));
            step(&next, delete_item(next, ENTITY_ROUTE, i));
        }
        step(&next, add_service(next));
        for (size_t a = rng(12); a > 0; a--)
            step(&next, add_route(next));
        if (rng(3) == 0)
            step(&next,
                 replace_target(next, rng(json_array_size(model_items(next, ENTITY_TARGET)))));
        if (rng(3) == 0) step(&next, add_target(next));
        if (rng(4) == 0 && json_array_size(model_items(next, ENTITY_TARGET)) > 1)
            step(&next, delete_item(next, ENTITY_TARGET,
                                    rng(json_array_size(model_items(next, ENTITY_TARGET)))));
        if (round % 5 == 4 && json_array_size(graveyard)) {
            /* a deleted route comes back: the same object, evicted from the cache meanwhile */
            size_t g = rng(json_array_size(graveyard));
            step(&next, append_item(next, ENTITY_ROUTE, json_incref(json_array_get(graveyard, g))));
            json_array_remove(graveyard, g);
        }
        if (!model_check(next, NULL, &errs)) print_errors(&errs);
        assert_int_equal(errs.n, 0);
        step(&m, next);
        check_text(m, cache);
        if (round % 10 == 9) {
            /* the cache is only an optimisation: a fresh one gives the same text */
            struct model_text_cache *fresh = model_text_cache_new();
            check_text(m, fresh);
            model_text_cache_free(fresh);
        }
    }
    assert_true(json_array_size(model_items(m, ENTITY_SERVICE)) == 90);
    errlist_free(&errs);
    json_decref(graveyard);
    json_decref(m);
    model_text_cache_free(cache);
}


/* ---------------------------------------------------------------- model_change (journal records) */

/* What a restart would load from the store after `stored` was written: export, then read back. */
static json_t *reloaded(const json_t *stored) {
    json_t *doc = model_export(stored);
    struct errlist errs;
    errlist_init(&errs);
    json_t *m = config_model_from_doc(doc, (long long)time(NULL), NULL, &errs);
    if (!m) print_errors(&errs);
    assert_non_null(m);
    errlist_free(&errs);
    json_decref(doc);
    return m;
}

/* Replays the change from `from` to `to` on `*stored` (a model as loaded from the store) and checks
 * that the result exports exactly as `to` does, in the same order. */
static void replay_and_check(json_t **stored, const json_t *from, const json_t *to) {
    json_t *rec = model_change(from, to);
    if (rec) {
        /* through text, as the journal keeps it */
        char *text = json_dumps(rec, JSON_COMPACT);
        json_decref(rec);
        rec = parse(text);
        free(text);
        char why[200] = "";
        json_t *next = model_change_apply(*stored, rec, why, sizeof why);
        if (!next) fprintf(stderr, "    %s\n", why);
        assert_non_null(next);
        json_decref(rec);
        step(stored, next);
    }
    json_t *a = model_export(*stored), *b = model_export(to);
    char *ta = json_dumps(a, JSON_COMPACT), *tb = json_dumps(b, JSON_COMPACT);
    assert_string_equal(ta, tb);
    free(ta);
    free(tb);
    json_decref(a);
    json_decref(b);
}

static void test_model_change_of_one_route_is_that_route(void **state) {
    (void)state;
    json_t *m = big_model(3, 3);
    assert_null(model_change(m, m));
    json_t *copy = json_copy(m); /* the same arrays */
    assert_null(model_change(m, copy));
    json_decref(copy);
    json_t *next = add_route(m);
    json_t *rec = model_change(m, next);
    json_t *routes = model_items(next, ENTITY_ROUTE);
    json_t *want = json_pack("{s:[{s:s, s:i, s:i, s:[O]}]}", "splices", "kind", "routes", "at", 9,
                             "remove", 0, "insert", json_array_get(routes, 9));
    assert_true(json_equal(rec, want));
    json_decref(want);
    json_decref(rec);
    json_t *after = replace_route(next, 4);
    rec = model_change(next, after);
    want = json_pack("{s:[{s:s, s:i, s:i, s:[O]}]}", "splices", "kind", "routes", "at", 4,
                     "remove", 1, "insert", json_array_get(model_items(after, ENTITY_ROUTE), 4));
    assert_true(json_equal(rec, want));
    json_decref(want);
    json_decref(rec);
    json_t *deleted = delete_item(after, ENTITY_ROUTE, 0);
    rec = model_change(after, deleted);
    want = parse("{\"splices\": [{\"kind\": \"routes\", \"at\": 0, \"remove\": 1, \"insert\": []}]}");
    assert_true(json_equal(rec, want));
    json_decref(want);
    json_decref(rec);
    json_decref(deleted);
    json_decref(after);
    json_decref(next);
    json_decref(m);
}

static void test_model_change_apply_refuses_records_that_do_not_fit(void **state) {
    (void)state;
    json_t *m = big_model(2, 2);
    const char *bad[] = {
        "{}",
        "{\"splices\": {}}",
        "{\"splices\": [{\"kind\": \"nothing\", \"at\": 0, \"remove\": 0, \"insert\": []}]}",
        "{\"splices\": [{\"kind\": \"routes\", \"at\": 5, \"remove\": 0, \"insert\": []}]}",
        "{\"splices\": [{\"kind\": \"routes\", \"at\": 3, \"remove\": 2, \"insert\": []}]}",
        "{\"splices\": [{\"kind\": \"routes\", \"at\": -1, \"remove\": 0, \"insert\": []}]}",
        "{\"splices\": [{\"kind\": \"routes\", \"at\": 0, \"remove\": -1, \"insert\": []}]}",
        "{\"splices\": [{\"kind\": \"routes\", \"at\": 0, \"remove\": 0, \"insert\": [1]}]}",
        "{\"splices\": [{\"kind\": \"routes\", \"at\": \"0\", \"remove\": 0, \"insert\": []}]}",
        "{\"splices\": [{\"kind\": \"routes\", \"at\": 0, \"remove\": 0}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *rec = parse(bad[i]);
        char why[200] = "";
        json_t *out = model_change_apply(m, rec, why, sizeof why);
        if (out) fprintf(stderr, "    accepted: %s\n", bad[i]);
        assert_null(out);
        assert_true(why[0] != '\0');
        json_decref(rec);
    }
    /* the model is untouched */
    assert_int_equal(json_array_size(model_items(m, ENTITY_ROUTE)), 4);
    json_decref(m);
}

/* Targets appended to different upstreams interleave in the model but load grouped by upstream:
 * records count positions in the stored (grouped) order, so replays stay exact. */
static void test_model_change_replays_random_changes_on_the_stored_state(void **state) {
    (void)state;
    json_t *m = big_model(20, 5);
    json_t *stored = reloaded(m);
    for (int round = 0; round < 200; round++) {
        json_t *next;
        switch (rng(6)) {
        case 0: next = add_route(m); break;
        case 1: next = replace_route(m, rng(json_array_size(model_items(m, ENTITY_ROUTE)))); break;
        case 2:
            next = delete_item(m, ENTITY_ROUTE, rng(json_array_size(model_items(m, ENTITY_ROUTE))));
            break;
        case 3: next = add_target(m); break;
        case 4:
            next = replace_target(m, rng(json_array_size(model_items(m, ENTITY_TARGET))));
            break;
        default:
            next = json_array_size(model_items(m, ENTITY_TARGET)) > 1
                       ? delete_item(m, ENTITY_TARGET,
                                     rng(json_array_size(model_items(m, ENTITY_TARGET))))
                       : add_service(m);
        }
        if (round % 7 == 6) step(&next, add_service(next)); /* two kinds in one record */
        replay_and_check(&stored, m, next);
        step(&m, next);
        if (round % 50 == 49) step(&stored, reloaded(stored)); /* a restart folds the journal */
    }
    json_decref(stored);
    json_decref(m);
}


/* The cache only saves lookups: across a run of admin-like changes (shallow copies, deletions,
 * entities coming back) every answer equals the uncached one, clashes included. */
static void test_model_conflict_cache_gives_the_uncached_answers(void **state) {
    (void)state;
    struct model_conflict_cache *cache = model_conflict_cache_new();
    json_t *m = big_model(10, 10);
    json_t *graveyard = json_array();
    size_t clashes = 0;
    for (int round = 0; round < 120; round++) {
        json_t *next;
        switch (rng(4)) {
        case 0: next = add_route(m); break;
        case 1: next = replace_route(m, rng(json_array_size(model_items(m, ENTITY_ROUTE)))); break;
        case 2: {
            size_t i = rng(json_array_size(model_items(m, ENTITY_ROUTE)));
            json_array_append(graveyard, json_array_get(model_items(m, ENTITY_ROUTE), i));
            next = delete_item(m, ENTITY_ROUTE, i);
            break;
        }
        default:
            next = json_array_size(graveyard)
                       ? append_item(m, ENTITY_ROUTE, json_incref(json_array_get(graveyard, 0)))
                       : add_service(m);
            if (json_array_size(graveyard)) json_array_remove(graveyard, 0);
        }
        step(&m, next);
        json_t *routes = model_items(m, ENTITY_ROUTE);
        size_t n = json_array_size(routes);
        /* a probe: a copy of a random route (same id, name and paths), or the same with a new
         * id, or with new paths too */
        size_t at = rng(n);
        json_t *probe = json_deep_copy(json_array_get(routes, at));
        int kind = (int)rng(3);
        if (kind >= 1) json_object_set_new(probe, "id", json_string(ID_MISSING));
        if (kind == 2) json_object_set_new(probe, "paths", json_pack("[s]", "/nobody/has/this"));
        for (long self = -1; self <= 0; self++) {
            long me = self < 0 ? -1 : (long)at;
            const char *f1 = NULL, *f2 = NULL;
            long a = model_conflict(m, ENTITY_ROUTE, probe, me, &f1, cache);
            long b = model_conflict(m, ENTITY_ROUTE, probe, me, &f2, NULL);
            assert_int_equal(a, b);
            if (a >= 0) {
                assert_string_equal(f1, f2);
                clashes++;
            }
        }
        json_decref(probe);
    }
    assert_true(clashes > 50); /* the probes did find clashes, and the same ones */
    json_decref(graveyard);
    json_decref(m);
    model_conflict_cache_free(cache);
}

static void test_export_text_with_3000_routes(void **state) {
    (void)state;
    struct model_text_cache *cache = model_text_cache_new();
    json_t *m = big_model(30, 100);
    assert_int_equal(json_array_size(model_items(m, ENTITY_ROUTE)), 3000);
    check_text(m, cache);
    json_t *next = replace_route(m, 1234);
    step(&next, delete_item(next, ENTITY_ROUTE, 2999));
    step(&next, delete_item(next, ENTITY_ROUTE, 0));
    step(&next, add_service(next));
    step(&m, next);
    check_text(m, cache);
    /* half the routes gone at once: a large sweep */
    json_t *routes = json_array();
    for (size_t i = 0; i < json_array_size(model_items(m, ENTITY_ROUTE)); i += 2)
        json_array_append(routes, json_array_get(model_items(m, ENTITY_ROUTE), i));
    step(&m, with_items(m, ENTITY_ROUTE, routes));
    check_text(m, cache);
    json_decref(m);
    model_text_cache_free(cache);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nested_routes_reference_their_service_by_id),
        cmocka_unit_test(test_top_level_routes_resolve_name_or_id_and_id_and_name),
        cmocka_unit_test(test_targets_reference_their_upstream_by_id),
        cmocka_unit_test(test_same_document_gives_same_ids),
        cmocka_unit_test(test_derived_ids_are_what_they_always_were),
        cmocka_unit_test(test_given_ids_are_kept_lower_cased),
        cmocka_unit_test(test_every_schema_field_is_present_null_when_unset),
        cmocka_unit_test(test_service_defaults_are_filled),
        cmocka_unit_test(test_route_defaults_are_filled),
        cmocka_unit_test(test_targets_get_weight_and_default_port),
        cmocka_unit_test(test_names_hosts_methods_and_header_names_are_normalised),
        cmocka_unit_test(test_url_is_split_and_not_stored),
        cmocka_unit_test(test_timestamps_are_kept_or_set_to_the_load_time),
        cmocka_unit_test(test_origins_paths_and_derivations),
        cmocka_unit_test(test_duplicate_names_are_reported),
        cmocka_unit_test(test_duplicate_ids_are_reported),
        cmocka_unit_test(test_services_with_the_same_url_need_a_name),
        cmocka_unit_test(test_routes_matching_the_same_requests_conflict),
        cmocka_unit_test(test_routes_differing_in_any_condition_are_fine),
        cmocka_unit_test(test_unknown_service_references_are_reported),
        cmocka_unit_test(test_duplicate_targets_in_one_upstream_are_reported),
        cmocka_unit_test(test_header_names_differing_only_in_case_are_reported),
        cmocka_unit_test(test_entity_normalize_fills_defaults_splits_url_and_drops_nulls),
        cmocka_unit_test(test_entity_normalize_keeps_references_as_given),
        cmocka_unit_test(test_entity_check_refuses_header_names_differing_in_case),
        cmocka_unit_test(test_entity_derive_id_is_stable),
        cmocka_unit_test(test_model_find_by_id_name_and_target),
        cmocka_unit_test(test_model_resolve_ref_finds_or_says_what_was_missing),
        cmocka_unit_test(test_model_conflict_names_the_clashing_field),
        cmocka_unit_test(test_model_check_reports_dangling_references),
        cmocka_unit_test(test_export_reads_back_as_the_same_model),
        cmocka_unit_test(test_export_of_unnamed_services_and_routes_reads_back),
        cmocka_unit_test(test_export_nests_targets_and_omits_empty_kinds),
        cmocka_unit_test(test_export_text_equals_the_export),
        cmocka_unit_test(test_export_text_follows_shallow_copies),
        cmocka_unit_test(test_export_text_survives_many_random_changes),
        cmocka_unit_test(test_export_text_with_3000_routes),
        cmocka_unit_test(test_model_change_of_one_route_is_that_route),
        cmocka_unit_test(test_model_conflict_cache_gives_the_uncached_answers),
        cmocka_unit_test(test_model_change_apply_refuses_records_that_do_not_fit),
        cmocka_unit_test(test_model_change_replays_random_changes_on_the_stored_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
