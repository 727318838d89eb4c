/* Declarative config loading: what loads, which defaults apply, and the exact
 * "path: message" a user sees for each kind of mistake. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "config/config.h"
#include "config/model.h"
#include "core/errlist.h"
#include "core/uuid.h"

/* DOC(members...) builds a "3.0" document; the members are written as plain
 * JSON and stringized by the preprocessor. */
#define URL_MESSAGE                                                                                \
    "services[0].url: must be a URL such as \"https://host:port/path\" or \"tcp://host:port\" "    \
    "(http, https or tcp; no user info, query or fragment)"

#define DOC(...) "{\"_format_version\": \"3.0\", " #__VA_ARGS__ "}"

static const char issue_example[] =
    "{\"_format_version\":\"3.0\",\"weir\":{\"proxy_listen\":[\"127.0.0.1:8000\"],"
    "\"admin_listen\":[\"127.0.0.1:8001\"],\"workers\":2,\"trusted_ips\":[\"127.0.0.1/32\"],"
    "\"access_log\":\"logs/access.log\",\"error_log\":\"-\",\"log_level\":\"info\","
    "\"limits\":{\"max_header_bytes\":32768,\"max_headers\":100,\"max_body_bytes\":10485760,"
    "\"header_timeout\":10000,\"keepalive_timeout\":60000,\"max_connections\":10000,"
    "\"shutdown_timeout\":10000}},\"services\":[{\"name\":\"orders\","
    "\"url\":\"http://127.0.0.1:9001/v1\",\"connect_timeout\":2000,\"read_timeout\":10000,"
    "\"write_timeout\":10000,\"retries\":2,\"routes\":[{\"name\":\"orders\","
    "\"paths\":[\"/api/orders\"],\"methods\":[\"GET\",\"POST\"],"
    "\"hosts\":[\"api.example.com\",\"*.example.org\"],\"strip_path\":true,"
    "\"preserve_host\":false}]}],\"upstreams\":[{\"name\":\"users-pool\",\"targets\":["
    "{\"target\":\"127.0.0.1:9002\",\"weight\":100},{\"target\":\"127.0.0.1:9003\","
    "\"weight\":50}]}]}";

static struct config *load(const char *json, struct errlist *errs) {
    errlist_init(errs);
    return config_load_string(json, strlen(json), "/etc/weir", errs);
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

/* Loads a config that must be valid; fails the test with its errors if not. */
static struct config *load_ok(const char *json) {
    struct errlist errs;
    struct config *c = load(json, &errs);
    if (!c) print_errors(&errs);
    assert_non_null(c);
    assert_int_equal(errs.n, 0);
    errlist_free(&errs);
    return c;
}

/* The document must fail with `msg` among its errors. */
static void expect_error(const char *json, const char *msg) {
    struct errlist errs;
    struct config *c = load(json, &errs);
    assert_null(c);
    if (!has_error(&errs, msg)) {
        fprintf(stderr, "    expected: %s\n", msg);
        print_errors(&errs);
    }
    assert_true(has_error(&errs, msg));
    errlist_free(&errs);
}

/* ---- what loads ---- */

static void test_issue_example_loads(void **state) {
    struct config *c = load_ok(issue_example);
    assert_int_equal(c->weir.workers, 2);
    assert_string_equal(c->weir.access_log, "/etc/weir/logs/access.log");
    assert_string_equal(c->weir.error_log, "-");
    assert_int_equal(c->weir.n_trusted_ips, 1);
    assert_int_equal(c->n_services, 1);
    const struct service *s = &c->services[0];
    assert_string_equal(s->name, "orders");
    assert_int_equal(s->connect_timeout_ms, 2000);
    assert_int_equal(s->read_timeout_ms, 10000);
    assert_int_equal(s->write_timeout_ms, 10000);
    assert_int_equal(s->retries, 2);
    assert_int_equal(s->addrlen, sizeof(struct sockaddr_in));
    assert_int_equal(c->n_routes, 1);
    const struct route *r = &c->routes[0];
    assert_ptr_equal(r->service, s);
    assert_string_equal(r->name, "orders");
    assert_int_equal(r->n_paths, 1);
    assert_string_equal(r->paths[0], "/api/orders");
    assert_int_equal(r->n_methods, 2);
    assert_string_equal(r->methods[1], "POST");
    assert_int_equal(r->n_hosts, 2);
    assert_string_equal(r->hosts[1], "*.example.org");
    assert_true(r->strip_path);
    assert_false(r->preserve_host);
    assert_int_equal(c->n_upstreams, 1);
    const struct upstream *u = &c->upstreams[0];
    assert_string_equal(u->name, "users-pool");
    assert_int_equal(u->n_targets, 2);
    assert_string_equal(u->targets[0].target, "127.0.0.1:9002");
    assert_int_equal(u->targets[1].port, 9003);
    assert_int_equal(u->targets[1].weight, 50);
    assert_int_equal(u->targets[1].addrlen, sizeof(struct sockaddr_in));
    assert_null(c->source_path);
    assert_int_equal(strlen(config_hash(c)), 64);
    config_free(c);
}

static void test_embedded_default_loads(void **state) {
    struct config *c = load_ok(config_default_json);
    assert_int_equal(c->n_services, 1);
    assert_string_equal(c->services[0].name, "demo");
    assert_string_equal(c->services[0].host, "127.0.0.1");
    assert_int_equal(c->services[0].port, 9080);
    assert_string_equal(c->services[0].host_header, "127.0.0.1:9080");
    assert_int_equal(c->n_routes, 1);
    assert_string_equal(c->routes[0].paths[0], "/");
    assert_false(c->routes[0].strip_path);
    assert_string_equal(c->weir.proxy_listen[0].host, "127.0.0.1");
    assert_int_equal(c->weir.admin_listen[0].port, 8001);
    assert_string_equal(c->weir.access_log, "-");
    config_free(c);
}

/* ---- TLS settings ---- */

static void test_ssl_listener_flag_and_tls_settings_are_read(void **state) {
    (void)state;
    struct config *c = load_ok(DOC("weir"
                                   : {
                                       "proxy_listen" : [ "127.0.0.1:8443 ssl", "[::1]:8000" ],
                                       "ssl_cert" : "/etc/weir/server.crt",
                                       "ssl_cert_key" : "/etc/weir/server.key",
                                       "ssl_reject_unknown_sni" : true,
                                       "ssl_handshake_timeout" : 2500,
                                       "ssl_verify_client" : "optional",
                                       "ssl_client_ca" : "/etc/weir/clients.pem",
                                       "ssl_client_cert_headers" : true
                                   }));
    const struct weir_settings *w = &c->weir;
    assert_int_equal(w->proxy_listen[0].port, 8443);
    assert_true(w->proxy_listen[0].ssl);
    assert_false(w->proxy_listen[1].ssl);
    assert_true(w->any_ssl_listener);
    assert_string_equal(w->ssl_cert, "/etc/weir/server.crt");
    assert_string_equal(w->ssl_cert_key, "/etc/weir/server.key");
    assert_string_equal(w->ssl_ciphers, WEIR_DEFAULT_CIPHERS);
    assert_true(w->ssl_reject_unknown_sni);
    assert_int_equal(w->ssl_handshake_timeout_ms, 2500);
    assert_int_equal(w->ssl_verify_client, SSL_VERIFY_CLIENT_OPTIONAL);
    assert_string_equal(w->ssl_client_ca, "/etc/weir/clients.pem");
    assert_true(w->ssl_client_cert_headers);
    config_free(c);
}

static void test_tls_settings_default_without_ssl_listeners(void **state) {
    (void)state;
    struct config *c = load_ok(DOC("services" : []));
    const struct weir_settings *w = &c->weir;
    assert_false(w->proxy_listen[0].ssl);
    assert_false(w->any_ssl_listener);
    assert_null(w->ssl_cert);
    assert_false(w->ssl_reject_unknown_sni);
    assert_int_equal(w->ssl_handshake_timeout_ms, 10000);
    assert_int_equal(w->ssl_ticket_key_rotation_ms, 3600000);
    assert_int_equal(w->ssl_verify_client, SSL_VERIFY_CLIENT_OFF);
    assert_null(w->ssl_client_ca);
    assert_false(w->ssl_client_cert_headers);
    config_free(c);
}

static void test_ssl_cert_and_key_go_together(void **state) {
    (void)state;
    expect_error(DOC("weir" : {"ssl_cert" : "/etc/weir/server.crt"}),
                 "weir.ssl_cert_key: is required with weir.ssl_cert");
    expect_error(DOC("weir" : {"ssl_cert_key" : "/etc/weir/server.key"}),
                 "weir.ssl_cert: is required with weir.ssl_cert_key");
}

/* ---- defaults ---- */

static void test_weir_defaults_are_filled(void **state) {
    struct config *c = load_ok(DOC("services" : []));
    const struct weir_settings *w = &c->weir;
    assert_int_equal(w->n_proxy_listen, 1);
    assert_string_equal(w->proxy_listen[0].host, "127.0.0.1");
    assert_int_equal(w->proxy_listen[0].port, 8000);
    assert_int_equal(w->n_admin_listen, 1);
    assert_int_equal(w->admin_listen[0].port, 8001);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(w->workers, cpus < 1 ? 1 : cpus > 256 ? 256 : cpus);
    assert_int_equal(w->n_trusted_ips, 0);
    assert_string_equal(w->access_log, "-");
    assert_string_equal(w->error_log, "-");
    assert_int_equal(w->log_level, LOG_LEVEL_INFO);
    assert_int_equal(w->limits.max_header_bytes, 32768);
    assert_int_equal(w->limits.max_headers, 100);
    assert_int_equal(w->limits.max_body_bytes, 10485760);
    assert_int_equal(w->limits.header_timeout_ms, 10000);
    assert_int_equal(w->limits.keepalive_timeout_ms, 60000);
    assert_int_equal(w->limits.max_connections, 10000);
    assert_int_equal(w->limits.shutdown_timeout_ms, 10000);
    assert_int_equal(w->limits.upstream_keepalive_pool, 64);
    assert_int_equal(w->limits.upstream_keepalive_timeout_ms, 4000);
    assert_int_equal(c->n_services, 0);
    config_free(c);
}

static void test_service_and_route_defaults_are_filled(void **state) {
    struct config *c =
        load_ok(DOC("services"
                    : [ {"host" : "127.0.0.1", "routes" : [ {"paths" : ["/a"]} ]} ]));
    const struct service *s = &c->services[0];
    assert_null(s->name);
    assert_string_equal(s->protocol, "http");
    assert_int_equal(s->port, 80);
    assert_null(s->path);
    assert_int_equal(s->connect_timeout_ms, 60000);
    assert_int_equal(s->read_timeout_ms, 60000);
    assert_int_equal(s->write_timeout_ms, 60000);
    assert_int_equal(s->retries, 5);
    assert_true(s->enabled);
    assert_null(s->upstream);
    assert_string_equal(s->host_header, "127.0.0.1");
    const struct route *r = &c->routes[0];
    assert_true(r->strip_path);
    assert_false(r->preserve_host);
    assert_int_equal(r->regex_priority, 0);
    assert_int_equal(r->protocols, ROUTE_PROTO_HTTP | ROUTE_PROTO_HTTPS);
    assert_int_equal(r->https_redirect_status_code, 426);
    assert_true(uuid_valid(s->id));
    assert_true(uuid_valid(r->id));
    config_free(c);
}

static void test_null_means_unset(void **state) {
    struct config *c = load_ok(
        DOC("services"
            : [ {"host" : "127.0.0.1", "port" : null, "tls_verify" : null, "plugins" : []} ]));
    assert_int_equal(c->services[0].port, 80);
    config_free(c);
}

static void test_access_log_off_is_null(void **state) {
    struct config *c = load_ok(DOC("weir"
                                   : {"access_log" : "off", "error_log" : "/var/log/e.log"}));
    assert_null(c->weir.access_log);
    assert_string_equal(c->weir.error_log, "/var/log/e.log");
    config_free(c);
}

/* ---- errors name their field ---- */

static void test_parse_error_has_line_and_column(void **state) {
    struct errlist errs;
    assert_null(load("{\n  \"_format_version\": \"3.0\",\n  oops\n}", &errs));
    assert_int_equal(errs.n, 1);
    assert_true(strncmp(errs.items[0], "line 3 column ", 14) == 0);
    errlist_free(&errs);
}

static void test_duplicate_json_keys_are_rejected(void **state) {
    struct errlist errs;
    assert_null(load(DOC("services" : [], "services" : []), &errs));
    assert_int_equal(errs.n, 1);
    assert_non_null(strstr(errs.items[0], "duplicate object key"));
    errlist_free(&errs);
}

static void test_missing_format_version_is_reported(void **state) {
    expect_error("{\"services\": []}", "_format_version: required field missing");
    expect_error("{\"_format_version\": \"2.1\"}", "_format_version: must be \"3.0\"");
    expect_error("{\"_format_version\": 3}", "_format_version: must be \"3.0\"");
}

static void test_unknown_field_is_reported_with_its_path(void **state) {
    expect_error(DOC("servces" : []), "servces: unknown field");
    expect_error(DOC("weir"
                     : {"limits" : {"max_headerz" : 1}}),
                 "weir.limits.max_headerz: unknown field");
    expect_error(DOC("services"
                     : [ {"host" : "127.0.0.1", "routes" : [ {"paths" : ["/"], "pathz" : 1} ]} ]),
                 "services[0].routes[0].pathz: unknown field");
}

static void test_wrong_types_are_reported(void **state) {
    expect_error(DOC("weir" : {"workers" : "2"}), "weir.workers: expected an integer or null");
    expect_error(DOC("weir" : {"workers" : 2.5}), "weir.workers: expected an integer or null");
    expect_error(DOC("weir" : []), "weir: expected an object or null");
    expect_error(DOC("services" : {}), "services: expected an array or null");
    expect_error(DOC("services" : [7]), "services[0]: expected an object");
    expect_error(DOC("services" : [ {"host" : 1} ]), "services[0].host: must be a host name or an IP address, without a port");
    expect_error(DOC("services"
                     : [ {"host" : "h", "enabled" : "yes"} ]),
                 "services[0].enabled: expected a boolean or null");
    expect_error(DOC("services"
                     : [ {"host" : "h", "tags" : "a"} ]),
                 "services[0].tags: expected an array or null");
    expect_error(DOC("services"
                     : [ {"host" : "h", "routes" : [ {"paths" : [ "/", 3 ]} ]} ]),
                 "services[0].routes[0].paths[1]: must be a path starting with \"/\" (RFC 3986 characters, others percent-encoded, no query or fragment) or a regex starting with \"~\"");
}

static void test_out_of_range_values_are_reported(void **state) {
    expect_error(DOC("weir" : {"workers" : 0}), "weir.workers: must be at least 1");
    expect_error(DOC("weir"
                     : {"limits" : {"max_header_bytes" : 100}}),
                 "weir.limits.max_header_bytes: must be at least 1024");
    expect_error(DOC("services"
                     : [ {"host" : "h", "port" : 70000} ]),
                 "services[0].port: must be at most 65535");
    expect_error(DOC("weir"
                     : {"log_level" : "loud"}),
                 "weir.log_level: must be one of debug, info, notice, warn, error");
}

static void test_two_problems_are_reported_together(void **state) {
    struct errlist errs;
    assert_null(load(DOC("weir"
                         : {"workers" : -1}, "services"
                         : [ {"url" : "http://127.0.0.1", "bogus" : 1} ]),
                     &errs));
    assert_int_equal(errs.n, 2);
    assert_true(has_error(&errs, "weir.workers: must be at least 1"));
    assert_true(has_error(&errs, "services[0].bogus: unknown field"));
    errlist_free(&errs);
}

static void test_route_path_must_start_with_slash_or_tilde(void **state) {
    expect_error(DOC("services"
                     : [ {
                         "host" : "127.0.0.1",
                         "routes" : [ {"paths" : ["/"]}, {"paths" : [ "/a", "api" ]} ]
                     } ]),
                 "services[0].routes[1].paths[1]: must be a path starting with \"/\" (RFC 3986 "
                 "characters, others percent-encoded, no query or fragment) or a regex starting "
                 "with \"~\"");
}

static void test_route_needs_a_condition(void **state) {
    expect_error(DOC("services"
                     : [ {"host" : "127.0.0.1", "routes" : [ {"name" : "r", "paths" : []} ]} ]),
                 "services[0].routes[0]: must have at least one of paths, hosts, methods, headers");
}

static void test_bad_urls_are_reported(void **state) {
    expect_error(DOC("services"
                     : [ {"url" : "127.0.0.1:9000"} ]),
                 URL_MESSAGE);
    expect_error(DOC("services"
                     : [ {"url" : "http://127.0.0.1:0"} ]),
                 "services[0].url: must be a URL such as \"https://host:port/path\" or \"tcp://host:port\" (http, https or tcp; no user info, query or fragment)");
    expect_error(DOC("services"
                     : [ {"url" : "http://u:p@127.0.0.1"} ]),
                 "services[0].url: must be a URL such as \"https://host:port/path\" or \"tcp://host:port\" (http, https or tcp; no user info, query or fragment)");
    expect_error(DOC("services"
                     : [ {"url" : "http://127.0.0.1/a?b=1"} ]),
                 "services[0].url: must be a URL such as \"https://host:port/path\" or \"tcp://host:port\" (http, https or tcp; no user info, query or fragment)");
    expect_error(DOC("services"
                     : [ {"url" : "ftp://127.0.0.1"} ]),
                 "services[0].url: must be a URL such as \"https://host:port/path\" or \"tcp://host:port\" (http, https or tcp; no user info, query or fragment)");
    expect_error(DOC("services"
                     : [ {"url" : "http://127.0.0.1", "port" : 80} ]),
                 "services[0].port: cannot be given together with url");
    expect_error(DOC("services" : [ {"port" : 80} ]), "services[0].host: required field missing");
}

static void test_duplicate_names_are_reported(void **state) {
    expect_error(
        DOC("services"
            : [ {"name" : "a", "host" : "127.0.0.1"}, {"name" : "a", "host" : "127.0.0.1"} ]),
        "services[1].name: \"a\" is already used by services[0]");
    expect_error(DOC("services"
                     : [ {
                           "name" : "s",
                           "host" : "127.0.0.1",
                           "routes" : [ {"name" : "r", "paths" : ["/a"]} ]
                       } ],
                       "routes"
                     : [ {"name" : "r", "service" : "s", "paths" : ["/b"]} ]),
                 "routes[0].name: \"r\" is already used by services[0].routes[0]");
    expect_error(DOC("upstreams"
                     : [ {"name" : "pool"}, {"name" : "POOL"} ]),
                 "upstreams[1].name: \"pool\" is already used by upstreams[0]");
    expect_error(
        DOC("services"
            : [ {"name" : "a b", "host" : "127.0.0.1"} ]),
        "services[0].name: must contain only letters, digits, \"-\", \".\", \"_\" and \"~\"");
}

static void test_route_referencing_a_missing_service_is_reported(void **state) {
    expect_error(DOC("services"
                     : [ {"name" : "s", "host" : "127.0.0.1"} ], "routes"
                     : [ {"service" : "t", "paths" : ["/"]} ]),
                 "routes[0].service: no service with name or id \"t\"");
    expect_error(DOC("services"
                     : [ {"name" : "s", "host" : "127.0.0.1"} ], "routes"
                     : [ {"service" : {"name" : "t"}, "paths" : ["/"]} ]),
                 "routes[0].service: no service named \"t\"");
    expect_error(DOC("routes"
                     : [ {"paths" : ["/"]} ]),
                 "routes[0].service: required field missing");
    expect_error(DOC("services"
                     : [ {
                         "name" : "s",
                         "host" : "127.0.0.1",
                         "routes" : [ {"service" : "x", "paths" : ["/"]} ]
                     } ]),
                 "services[0].routes[0].service: must be absent or name the enclosing service");
}

static void test_top_level_routes_find_their_service_by_name_or_id(void **state) {
    struct config *c = load_ok(
        DOC("services"
            :
            [
                {"name" : "a", "host" : "127.0.0.1"},
                {"id" : "0B9F2F5E-7C5C-4F7D-9D3A-2C1A0B7E6F11", "host" : "127.0.0.1"}
            ],
            "routes"
            : [
                {"service" : "a", "paths" : ["/1"]}, {"service" : {"name" : "a"}, "paths" : ["/2"]},
                {"service" : "0b9f2f5e-7c5c-4f7d-9d3a-2c1a0b7e6f11", "paths" : ["/3"]},
                {"service" : {"id" : "0b9f2f5e-7c5c-4f7d-9d3a-2c1a0b7e6f11"}, "paths" : ["/4"]}
            ]));
    assert_string_equal(c->services[1].id, "0b9f2f5e-7c5c-4f7d-9d3a-2c1a0b7e6f11");
    assert_ptr_equal(c->routes[0].service, &c->services[0]);
    assert_ptr_equal(c->routes[1].service, &c->services[0]);
    assert_ptr_equal(c->routes[2].service, &c->services[1]);
    assert_ptr_equal(c->routes[3].service, &c->services[1]);
    config_free(c);
}

static void test_route_order_is_nested_then_top_level(void **state) {
    struct config *c = load_ok(DOC(
        "routes"
        : [ {"name" : "top", "service" : "b", "paths" : ["/t"]} ], "services"
        : [
            {"name" : "a", "host" : "127.0.0.1", "routes" : [ {"name" : "a1", "paths" : ["/a"]} ]},
            {
                "name" : "b",
                "host" : "127.0.0.1",
                "routes" : [ {"name" : "b1", "paths" : ["/b"]}, {"name" : "b2", "paths" : ["/c"]} ]
            }
        ]));
    assert_int_equal(c->n_routes, 4);
    const char *names[] = {"a1", "b1", "b2", "top"};
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(c->routes[i].name, names[i]);
        assert_int_equal(c->routes[i].order, i);
    }
    config_free(c);
}

/* ---- ids ---- */

/* An admin change: a new model sharing most entity objects with the running one. The new config
 * must be right on its own (routes it copies from the old config point at the new services) and
 * must outlive the old one (its strings belong to the shared model objects, not to the old
 * config): the old config is freed first, under ASan and valgrind. */
static void test_config_with_model_reuses_routes_and_outlives_its_base(void **state) {
    struct config *a = load_ok(DOC("services"
                                   : [
                                       {
                                           "name" : "s1",
                                           "url" : "http://127.0.0.1:9001",
                                           "routes" : [
                                               {"name" : "r1", "paths" : ["/one"]},
                                               {"name" : "r2", "paths" : ["/two"], "headers" : {"x-v" : ["1"]}},
                                               {
                                                   "name" : "r3",
                                                   "paths" : [ "/three", "/3" ],
                                                   "hosts" : ["a.example.com"],
                                                   "methods" : ["GET"],
                                                   "tags" : ["t"],
                                                   "headers" : {"x-a" : [ "1", "2" ], "x-b" : ["3"]}
                                               }
                                           ]
                                       },
                                       {"name" : "s2", "url" : "http://127.0.0.1:9002"}
                                   ]));
    json_t *m = json_copy(a->model);
    /* s1 gets another port; r2 moves to s2; r1 and r3 are untouched (the same objects) */
    json_t *services = json_copy(model_items(a->model, ENTITY_SERVICE));
    json_t *s1 = json_copy(json_array_get(services, 0));
    json_object_set_new(s1, "port", json_integer(9101));
    json_array_set_new(services, 0, s1);
    json_object_set_new(m, "services", services);
    json_t *routes = json_copy(model_items(a->model, ENTITY_ROUTE));
    json_t *r2 = json_copy(json_array_get(routes, 1));
    json_object_set_new(r2, "service",
                        json_pack("{s:O}", "id", json_object_get(json_array_get(services, 1), "id")));
    json_array_set_new(routes, 1, r2);
    json_object_set_new(m, "routes", routes);

    struct errlist errs;
    errlist_init(&errs);
    struct config *b = config_with_model(a, m, &errs);
    print_errors(&errs);
    assert_non_null(b);
    errlist_free(&errs);
    json_decref(m);
    config_free(a); /* b must not depend on it */

    assert_int_equal(b->n_routes, 3);
    assert_string_equal(b->routes[0].name, "r1");
    assert_string_equal(b->routes[0].paths[0], "/one");
    assert_ptr_equal(b->routes[0].service, &b->services[0]);
    assert_int_equal(b->routes[0].service->port, 9101);
    assert_string_equal(b->routes[1].name, "r2");
    assert_string_equal(b->routes[1].paths[0], "/two");
    assert_string_equal(b->routes[1].headers[0].name, "x-v");
    assert_string_equal(b->routes[1].headers[0].values[0], "1");
    assert_ptr_equal(b->routes[1].service, &b->services[1]);
    assert_int_equal(b->routes[0].order, 0);
    assert_int_equal(b->routes[1].order, 1);
    /* a copied route with every list and several headers */
    const struct route *r3 = &b->routes[2];
    assert_string_equal(r3->name, "r3");
    assert_ptr_equal(r3->service, &b->services[0]);
    assert_int_equal(r3->order, 2);
    assert_string_equal(r3->source_path, "routes[2]");
    assert_int_equal(r3->n_paths, 2);
    assert_string_equal(r3->paths[0], "/three");
    assert_string_equal(r3->paths[1], "/3");
    assert_int_equal(r3->n_hosts, 1);
    assert_string_equal(r3->hosts[0], "a.example.com");
    assert_int_equal(r3->n_methods, 1);
    assert_string_equal(r3->methods[0], "GET");
    assert_int_equal(r3->n_tags, 1);
    assert_string_equal(r3->tags[0], "t");
    assert_int_equal(r3->n_headers, 2);
    for (size_t h = 0; h < 2; h++) {
        const struct route_header *hd = &r3->headers[h];
        if (!strcmp(hd->name, "x-a")) {
            assert_int_equal(hd->n_values, 2);
            assert_string_equal(hd->values[0], "1");
            assert_string_equal(hd->values[1], "2");
        } else {
            assert_string_equal(hd->name, "x-b");
            assert_int_equal(hd->n_values, 1);
            assert_string_equal(hd->values[0], "3");
        }
    }
    config_free(b);
    (void)state;
}

/* The copied routes are found in the new model's order, which an admin change shifts: here the
 * first route is removed and a new one is inserted in the middle. */
static void test_config_with_model_copies_routes_around_removed_and_new_ones(void **state) {
    struct config *a = load_ok(DOC("services"
                                   : [ {
                                       "name" : "s1",
                                       "url" : "http://127.0.0.1:9001",
                                       "routes" : [
                                           {"name" : "r1", "paths" : ["/1"]}, {"name" : "r2", "paths" : ["/2"]},
                                           {"name" : "r3", "paths" : ["/3"]}, {"name" : "r4", "paths" : ["/4"]}
                                       ]
                                   } ]));
    json_t *m = json_copy(a->model);
    json_t *old = model_items(a->model, ENTITY_ROUTE);
    json_t *x = json_deep_copy(json_array_get(old, 0));
    json_object_set_new(x, "id", json_string("0b7e6f0a-6d62-4bd4-9c39-2f7d7a0e5c11"));
    json_object_set_new(x, "name", json_string("x"));
    json_object_set_new(x, "paths", json_pack("[s]", "/x"));
    json_t *routes = json_pack("[OOoO]", json_array_get(old, 1), json_array_get(old, 2), x,
                               json_array_get(old, 3));
    json_object_set_new(m, "routes", routes);

    struct errlist errs;
    errlist_init(&errs);
    struct config *b = config_with_model(a, m, &errs);
    print_errors(&errs);
    assert_non_null(b);
    errlist_free(&errs);
    json_decref(m);
    config_free(a);

    static const char *const names[] = {"r2", "r3", "x", "r4"};
    static const char *const paths[] = {"/2", "/3", "/x", "/4"};
    assert_int_equal(b->n_routes, 4);
    for (size_t i = 0; i < 4; i++) {
        char where[32];
        snprintf(where, sizeof where, "routes[%zu]", i);
        assert_string_equal(b->routes[i].name, names[i]);
        assert_int_equal(b->routes[i].n_paths, 1);
        assert_string_equal(b->routes[i].paths[0], paths[i]);
        assert_string_equal(b->routes[i].source_path, where);
        assert_int_equal(b->routes[i].order, i);
        assert_ptr_equal(b->routes[i].service, &b->services[0]);
        assert_ptr_equal(b->routes[i].entity, json_array_get(model_items(b->model, ENTITY_ROUTE), i));
    }
    config_free(b);
    (void)state;
}

static void test_same_file_gives_same_ids(void **state) {
    struct config *a = load_ok(issue_example), *b = load_ok(issue_example);
    assert_string_equal(a->services[0].id, b->services[0].id);
    assert_string_equal(a->routes[0].id, b->routes[0].id);
    assert_string_equal(a->upstreams[0].id, b->upstreams[0].id);
    assert_string_equal(a->upstreams[0].targets[1].id, b->upstreams[0].targets[1].id);
    assert_string_equal(config_hash(a), config_hash(b));
    char expected[37];
    uuid_v5("service", "orders", expected);
    assert_string_equal(a->services[0].id, expected);
    config_free(a);
    config_free(b);
}

/* Timestamps are not part of the hash: a load that straddles a second, or a copy of the file
 * with another mtime, runs the same entities. Anything else is. */
static void test_hash_ignores_timestamps_only(void **state) {
    struct config *a = load_ok(DOC("services" : [ {
        "name" : "a",
        "host" : "127.0.0.1",
        "created_at" : 100,
        "updated_at" : 100
    } ]));
    struct config *b = load_ok(DOC("services" : [ {
        "name" : "a",
        "host" : "127.0.0.1",
        "created_at" : 200,
        "updated_at" : 300
    } ]));
    struct config *c = load_ok(DOC("services" : [ {
        "name" : "a",
        "host" : "127.0.0.2",
        "created_at" : 100,
        "updated_at" : 100
    } ]));
    assert_string_equal(config_hash(a), config_hash(b));
    assert_string_not_equal(config_hash(a), config_hash(c));
    config_free(a);
    config_free(b);
    config_free(c);
}

static void test_different_names_give_different_ids(void **state) {
    struct config *c = load_ok(DOC(
        "services"
        :
        [ {"name" : "a", "host" : "127.0.0.1"}, {"name" : "b", "host" : "127.0.0.1"} ], "upstreams"
        : [
            {"name" : "p",
             "targets" : [ {"target" : "127.0.0.1:1"}, {"target" : "127.0.0.1:2"} ]}
        ]));
    assert_string_not_equal(c->services[0].id, c->services[1].id);
    assert_string_not_equal(c->upstreams[0].targets[0].id, c->upstreams[0].targets[1].id);
    config_free(c);
}

static void test_unnamed_routes_get_ids_from_what_they_match(void **state) {
    const char *doc = DOC("services"
                          : [ {
                              "name" : "s",
                              "host" : "127.0.0.1",
                              "routes" : [
                                  {"paths" : ["/a"]}, {"paths" : ["/b"]},
                                  {"paths" : ["/a"], "headers" : {"x-v" : ["2"]}}
                              ]
                          } ]);
    struct config *a = load_ok(doc), *b = load_ok(doc);
    assert_string_equal(a->routes[0].id, b->routes[0].id);
    assert_string_not_equal(a->routes[0].id, a->routes[1].id);
    assert_string_not_equal(a->routes[0].id, a->routes[2].id);
    config_free(a);
    config_free(b);
    expect_error(
        DOC("services"
            : [ {
                "name" : "s",
                "host" : "127.0.0.1",
                "routes" : [ {"paths" : ["/a"]}, {"paths" : ["/a"]} ]
            } ]),
        "services[0].routes[1]: matches exactly the same paths, hosts, methods and headers as "
        "services[0].routes[0]");
}

static void test_given_ids_must_be_uuids_and_unique(void **state) {
    expect_error(DOC("services"
                     : [ {"id" : "42", "host" : "127.0.0.1"} ]),
                 "services[0].id: must be a UUID");
    expect_error(
        DOC("services"
            :
            [
                {"id" : "0b9f2f5e-7c5c-4f7d-9d3a-2c1a0b7e6f11", "host" : "127.0.0.1"},
                {"id" : "0b9f2f5e-7c5c-4f7d-9d3a-2c1a0b7e6f11", "host" : "127.0.0.2"}
            ]),
        "services[1].id: \"0b9f2f5e-7c5c-4f7d-9d3a-2c1a0b7e6f11\" is already used by services[0]");
}

/* ---- services, upstreams, targets ---- */

static void test_url_is_split_into_protocol_host_port_path(void **state) {
    struct config *c = load_ok(DOC("services"
                                   : [
                                       {"url" : "HTTP://LOCALHOST:9001/v1/x"},
                                       {"url" : "http://[::1]/"}, {"url" : "http://127.0.0.1"}
                                   ]));
    const struct service *s = &c->services[0];
    assert_string_equal(s->protocol, "http");
    assert_string_equal(s->host, "localhost");
    assert_int_equal(s->port, 9001);
    assert_string_equal(s->path, "/v1/x");
    assert_string_equal(s->host_header, "localhost:9001");
    assert_string_equal(c->services[1].host, "::1");
    assert_int_equal(c->services[1].port, 80);
    assert_string_equal(c->services[1].path, "/");
    assert_string_equal(c->services[1].host_header, "[::1]");
    assert_int_equal(c->services[1].addr.ss_family, AF_INET6);
    assert_null(c->services[2].path);
    config_free(c);
}

static void test_service_host_naming_an_upstream_points_at_it(void **state) {
    struct config *c =
        load_ok(DOC("services"
                    : [ {"name" : "users", "url" : "http://users-pool:8080/u"} ], "upstreams"
                    : [ {"name" : "users-pool", "targets" : [ {"target" : "127.0.0.1"} ]} ]));
    const struct service *s = &c->services[0];
    assert_ptr_equal(s->upstream, &c->upstreams[0]);
    assert_int_equal(s->addrlen, 0);
    assert_string_equal(s->host_header, "users-pool:8080");
    assert_int_equal(c->upstreams[0].targets[0].port, 8000);
    assert_int_equal(c->upstreams[0].targets[0].weight, 100);
    config_free(c);
}

static void test_unresolvable_hosts_are_reported(void **state) {
    struct errlist errs;
    assert_null(load(DOC("services" : [ {"host" : "no-such-host.invalid"} ]), &errs));
    assert_int_equal(errs.n, 1);
    assert_true(strncmp(errs.items[0], "services[0].host: cannot resolve \"no-such-host.invalid\"",
                        55) == 0);
    errlist_free(&errs);
}

static void test_duplicate_targets_are_reported(void **state) {
    expect_error(
        DOC("upstreams"
            : [ {
                "name" : "p",
                "targets" : [ {"target" : "127.0.0.1"}, {"target" : "127.0.0.1:8000"} ]
            } ]),
        "upstreams[0].targets[1].target: the same host and port as upstreams[0].targets[0]");
}

/* ---- not supported yet ---- */

static void test_tls_passthrough_routes_and_tcp_services(void **state) {
    (void)state;
    struct config *c = load_ok(
        DOC("weir"
            : {"stream_listen" : ["127.0.0.1:9443"]},
              "services"
            : [ {"name" : "db", "url" : "tcp://127.0.0.1:5432",
                 "routes" : [ {"protocols" : ["tls_passthrough"],
                               "snis" : [ "DB.example.com", "*.x.com" ]} ]} ]));
    assert_int_equal(c->weir.n_stream_listen, 1);
    assert_true(c->weir.stream_listen[0].stream);
    assert_int_equal(c->weir.stream_listen[0].port, 9443);
    assert_true(c->services[0].tcp);
    assert_int_equal(c->services[0].port, 5432);
    assert_int_equal(c->routes[0].protocols, ROUTE_PROTO_TLS_PASSTHROUGH);
    assert_int_equal(c->routes[0].n_snis, 2);
    assert_string_equal(c->routes[0].snis[0], "db.example.com");
    assert_string_equal(c->routes[0].snis[1], "*.x.com");
    config_free(c);

    expect_error(DOC("services"
                     : [ {"url" : "tcp://127.0.0.1:1",
                          "routes" : [ {"protocols" : ["tls_passthrough"]} ]} ]),
                 "services[0].routes[0].snis: required field missing");
    expect_error(DOC("services"
                     : [ {"url" : "tcp://127.0.0.1:1",
                          "routes" : [ {"protocols" : ["tls_passthrough"], "snis" : ["a.com"],
                                        "methods" : ["GET"]} ]} ]),
                 "services[0].routes[0].methods: must be empty for a tls_passthrough route (it "
                 "is routed by snis only)");
    expect_error(DOC("services"
                     : [ {"url" : "tcp://127.0.0.1:1",
                          "routes" : [ {"protocols" : [ "tls_passthrough", "http" ],
                                        "snis" : ["a.com"]} ]} ]),
                 "services[0].routes[0].protocols: \"tls_passthrough\" cannot be combined with "
                 "other protocols");
    expect_error(DOC("services"
                     : [ {"url" : "http://127.0.0.1:1",
                          "routes" : [ {"protocols" : ["tls_passthrough"], "snis" : ["a.com"]} ]} ]),
                 "services[0].routes[0].service: a tls_passthrough route needs a service of "
                 "protocol \"tcp\", not \"http\"");
    expect_error(DOC("services"
                     : [ {"url" : "tcp://127.0.0.1:1", "routes" : [ {"paths" : ["/"]} ]} ]),
                 "services[0].routes[0].protocols: a route to a \"tcp\" service must have "
                 "protocols [\"tls_passthrough\"]");
    expect_error(DOC("services"
                     : [ {"url" : "tcp://127.0.0.1:1/x"} ]),
                 "services[0].url: a tcp:// URL has no path");
    expect_error(DOC("services"
                     : [ {"protocol" : "tcp", "host" : "127.0.0.1", "path" : "/x"} ]),
                 "services[0].path: not allowed with protocol \"tcp\"");
    expect_error(DOC("services"
                     : [ {"url" : "tcp://127.0.0.1:1",
                          "routes" : [ {"protocols" : ["tls_passthrough"], "snis" : ["a.com"]},
                                       {"protocols" : ["tls_passthrough"],
                                        "snis" : [ "b.com", "A.com" ]} ]} ]),
                 "services[0].routes[1].snis: \"a.com\" is already used by services[0].routes[0]");
    expect_error(DOC("weir"
                     : {"proxy_listen" : ["127.0.0.1:9000"], "stream_listen" : ["0.0.0.0:9000"]}),
                 "weir.stream_listen[0]: overlaps weir.proxy_listen[0] (port 9000)");
    expect_error(DOC("services"
                     : [ {"url" : "tcp://127.0.0.1:1",
                          "routes" : [ {"id" : "11111111-2222-3333-4444-555555555555",
                                        "protocols" : ["tls_passthrough"], "snis" : ["a.com"],
                                        "plugins" : [ {"name" : "cors"} ]} ]} ]),
                 "services[0].routes[0].plugins[0].route: plugins do not run on TLS passthrough "
                 "connections: route 11111111-2222-3333-4444-555555555555 is a tls_passthrough "
                 "route");
    expect_error(DOC("weir"
                     : {"stream_listen" : ["127.0.0.1:9443 ssl"]}),
                 "weir.stream_listen[0]: must be \"ip:port\" with a numeric IP address, such as "
                 "\"0.0.0.0:9443\" or \"[::1]:9443\" (listener options such as \"ssl\" are not "
                 "supported)");
}

static void test_unsupported_features_are_refused(void **state) {
    expect_error(DOC("services"
                     : [ {"host" : "h", "plugins" : [ {"name" : "no-such-plugin"} ]} ]),
                 "services[0].plugins[0].name: no plugin named \"no-such-plugin\" (bundled "
                 "plugins and those in weir.plugin_paths can be enabled)");
    expect_error(DOC("services"
                     : [ {"url" : "grpcs://127.0.0.1"} ]),
                 URL_MESSAGE);
    expect_error(DOC("services"
                     : [ {"host" : "127.0.0.1", "protocol" : "grpcs"} ]),
                 "services[0].protocol: must be \"http\", \"https\" or \"tcp\" (other protocols are "
                 "not supported yet)");
    expect_error(DOC("weir"
                     : {"proxy_listen" : ["0.0.0.0:8443 http2"]}),
                 "weir.proxy_listen[0]: must be \"ip:port\" or \"ip:port ssl\" with a numeric IP address, such as \"127.0.0.1:8000\", \"[::1]:8000\" or \"0.0.0.0:8443 ssl\" (other listener options such as \"http2\" or \"reuseport\" are not supported yet)");
    expect_error(DOC("weir"
                     : {"admin_listen" : ["127.0.0.1:8444 ssl"]}),
                 "weir.admin_listen[0]: must be \"ip:port\" with a numeric IP address, such as \"127.0.0.1:8000\" or \"[::1]:8000\" (listener options such as \"ssl\" are not supported yet)");
    expect_error(DOC("weir"
                     : {"proxy_listen" : ["0.0.0.0:8443 ssl"]}),
                 "weir.proxy_listen[0]: a TLS listener (\"ssl\") needs a default certificate: set weir.ssl_cert and weir.ssl_cert_key");
    expect_error(DOC("services"
                     : [ {"host" : "127.0.0.1", "routes" : [ {"hosts" : ["a.com:8000"]} ]} ]),
                 "services[0].routes[0].hosts[0]: must be a host name, or \"*.\" followed by a domain (ports, IPv6 addresses and trailing wildcards such as \"example.*\" are not supported yet)");
    expect_error(DOC("services"
                     :
                     [ {"host" : "127.0.0.1", "routes" : [ {"paths" : ["/"], "snis" : ["a"]} ]} ]),
                 "services[0].routes[0].snis: only for protocols [\"tls_passthrough\"] (SNI matching of "
                 "http and https routes is not supported yet)");
    expect_error(
        DOC("upstreams"
            : [ {"name" : "p", "algorithm" : "least-connections"} ]),
        "upstreams[0].algorithm: must be \"round-robin\" (least-connections, consistent-hashing and latency are not supported yet)");
    expect_error(
        DOC("upstreams"
            : [ {"name" : "p", "healthchecks" : {"active" : {"type" : "grpc"}}} ]),
        "upstreams[0].healthchecks.active.type: must be \"http\", \"https\" or \"tcp\" (grpc "
        "and grpcs are not supported yet)");
}

/* ---- routes ---- */

static void test_route_values_are_normalised(void **state) {
    struct config *c = load_ok(DOC("services"
                                   : [ {
                                       "host" : "127.0.0.1",
                                       "routes" : [ {
                                           "hosts" : [ "API.Example.COM", "*.Example.org" ],
                                           "methods" : ["get"],
                                           "headers" : {"X-Version" : [ "v1", "V2" ]},
                                           "protocols" : ["http"],
                                           "regex_priority" : -3,
                                           "https_redirect_status_code" : 308,
                                           "paths" : ["~/items/\\d+$"]
                                       } ]
                                   } ]));
    const struct route *r = &c->routes[0];
    assert_string_equal(r->hosts[0], "api.example.com");
    assert_string_equal(r->hosts[1], "*.example.org");
    assert_string_equal(r->methods[0], "GET");
    assert_int_equal(r->n_headers, 1);
    assert_string_equal(r->headers[0].name, "x-version");
    assert_int_equal(r->headers[0].n_values, 2);
    assert_int_equal(r->protocols, ROUTE_PROTO_HTTP);
    assert_int_equal(r->regex_priority, -3);
    assert_int_equal(r->https_redirect_status_code, 308);
    assert_string_equal(r->paths[0], "~/items/\\d+$");
    config_free(c);
}

static void test_route_header_host_is_refused(void **state) {
    expect_error(
        DOC("services"
            : [ {"host" : "127.0.0.1", "routes" : [ {"headers" : {"Host" : ["a"]}} ]} ]),
        "services[0].routes[0].headers.Host: must be an HTTP header name other than \"host\" "
        "(use hosts to match the Host header)");
}

/* ---- listeners and trusted_ips ---- */

static void test_listeners_accept_ipv6_and_refuse_overlaps(void **state) {
    struct config *c =
        load_ok(DOC("weir"
                    : {"proxy_listen" : [ "[::1]:8000", "0.0.0.0:8080" ], "admin_listen" : []}));
    assert_string_equal(c->weir.proxy_listen[0].host, "::1");
    assert_int_equal(c->weir.proxy_listen[0].port, 8000);
    assert_int_equal(c->weir.n_admin_listen, 0);
    config_free(c);
    expect_error(DOC("weir"
                     : {"proxy_listen" : ["0.0.0.0:8000"], "admin_listen" : ["127.0.0.1:8000"]}),
                 "weir.admin_listen[0]: overlaps weir.proxy_listen[0] (port 8000)");
    expect_error(
        DOC("weir"
            : {"proxy_listen" : ["localhost:8000"]}),
        "weir.proxy_listen[0]: must be \"ip:port\" or \"ip:port ssl\" with a numeric IP address, "
        "such as \"127.0.0.1:8000\", \"[::1]:8000\" or \"0.0.0.0:8443 ssl\" (other listener "
        "options such as \"http2\" or \"reuseport\" are not supported yet)");
}

static struct sockaddr_in v4(const char *ip) {
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
    return sin;
}

static struct sockaddr_in6 v6(const char *ip) {
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1);
    return sin6;
}

static bool trusted(const struct config *c, const char *ip) {
    if (strchr(ip, ':')) {
        struct sockaddr_in6 a = v6(ip);
        return config_ip_trusted(&c->weir, (struct sockaddr *)&a);
    }
    struct sockaddr_in a = v4(ip);
    return config_ip_trusted(&c->weir, (struct sockaddr *)&a);
}

static void test_trusted_ips_match_ipv4_ranges(void **state) {
    struct config *c =
        load_ok(DOC("weir"
                    : {"trusted_ips" : [ "10.1.2.3/8", "192.168.1.7", "172.16.0.0/12" ]}));
    assert_true(trusted(c, "10.200.0.1"));
    assert_false(trusted(c, "11.0.0.1"));
    assert_true(trusted(c, "192.168.1.7"));
    assert_false(trusted(c, "192.168.1.8"));
    assert_true(trusted(c, "172.31.255.255"));
    assert_false(trusted(c, "172.32.0.0"));
    assert_true(trusted(c, "::ffff:10.0.0.1")); /* IPv4 peer on a dual-stack socket */
    assert_false(trusted(c, "::1"));
    config_free(c);
}

static void test_trusted_ips_match_ipv6_ranges(void **state) {
    struct config *c = load_ok(DOC("weir" : {"trusted_ips" : [ "2001:db8::/33", "::1" ]}));
    assert_true(trusted(c, "2001:db8:7fff::1"));
    assert_false(trusted(c, "2001:db8:8000::1"));
    assert_true(trusted(c, "::1"));
    assert_false(trusted(c, "::2"));
    assert_false(trusted(c, "127.0.0.1"));
    config_free(c);
    expect_error(DOC("weir"
                     : {"trusted_ips" : ["10.0.0.0/33"]}),
                 "weir.trusted_ips[0]: must be an IP address or a CIDR range, such as \"10.0.0.0/8\" or "
                 "\"::1\"");
}

static void test_no_trusted_ips_trusts_nobody(void **state) {
    struct config *c = load_ok(DOC("weir" : {}));
    assert_false(trusted(c, "127.0.0.1"));
    config_free(c);
}

/* ---- files ---- */

static void test_relative_log_paths_resolve_against_the_config_dir(void **state) {
    char dir[] = "/tmp/weir-test-config-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/weir.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(DOC("weir" : {"access_log" : "logs/access.log", "error_log" : "/abs/error.log"}), f);
    fclose(f);

    struct errlist errs;
    errlist_init(&errs);
    struct config *c = config_load_file(path, &errs);
    if (!c) print_errors(&errs);
    assert_non_null(c);
    char expected[300];
    snprintf(expected, sizeof expected, "%s/logs/access.log", dir);
    char *real_expected = realpath(dir, NULL);
    assert_non_null(real_expected);
    snprintf(expected, sizeof expected, "%s/logs/access.log", real_expected);
    assert_string_equal(c->weir.access_log, expected);
    assert_string_equal(c->weir.error_log, "/abs/error.log");
    snprintf(expected, sizeof expected, "%s/weir.json", real_expected);
    assert_string_equal(c->source_path, expected);
    config_free(c);
    free(real_expected);
    errlist_free(&errs);
    unlink(path);
    rmdir(dir);
}

static void test_missing_file_is_reported(void **state) {
    struct errlist errs;
    errlist_init(&errs);
    assert_null(config_load_file("/nonexistent/weir.json", &errs));
    assert_true(has_error(&errs, "/nonexistent/weir.json: No such file or directory"));
    errlist_free(&errs);
}

/* An upstream as Kong exports it: every field at its default. */
#define KONG_UPSTREAM(healthy_interval)                                                            \
    "{\"_format_version\":\"3.0\",\"upstreams\":[{\"name\":\"pool\",\"algorithm\":\"round-"        \
    "robin\","                                                                                     \
    "\"slots\":10000,\"hash_on\":\"none\",\"hash_fallback\":\"none\",\"hash_on_cookie_path\":\"/"  \
    "\","                                                                                          \
    "\"use_srv_name\":false,\"host_header\":null,\"client_certificate\":null,"                     \
    "\"healthchecks\":{\"threshold\":0,\"active\":{\"type\":\"http\",\"http_path\":\"/\","         \
    "\"timeout\":1,\"concurrency\":10,\"healthy\":{\"interval\":" healthy_interval                 \
    ",\"successes\":0,\"http_statuses\":[200,302]},\"unhealthy\":{\"interval\":0,"                 \
    "\"http_failures\":0,\"tcp_failures\":0,\"timeouts\":0}},\"passive\":{\"type\":\"http\","      \
    "\"healthy\":{\"successes\":0},\"unhealthy\":{\"http_failures\":0,\"tcp_failures\":0,"         \
    "\"timeouts\":0}}},\"targets\":[{\"target\":\"127.0.0.1:9000\"}]}]}"

static void test_kong_defaults_of_unsupported_upstream_fields_load(void **state) {
    (void)state;
    struct config *c = load_ok(KONG_UPSTREAM("0"));
    assert_int_equal(c->n_upstreams, 1);
    config_free(c);
}

static void test_enabled_health_checks_load(void **state) {
    (void)state;
    struct config *c = load_ok(KONG_UPSTREAM("5"));
    assert_int_equal(c->upstreams[0].n_targets, 1);
    config_free(c);
}

static void test_non_default_hash_on_is_refused(void **state) {
    (void)state;
    expect_error("{\"_format_version\":\"3.0\",\"upstreams\":[{\"name\":\"pool\","
                 "\"hash_on\":\"ip\"}]}",
                 "upstreams[0].hash_on: not supported yet (only null, [] or \"none\", Kong's default)");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kong_defaults_of_unsupported_upstream_fields_load),
        cmocka_unit_test(test_enabled_health_checks_load),
        cmocka_unit_test(test_non_default_hash_on_is_refused),
        cmocka_unit_test(test_issue_example_loads),
        cmocka_unit_test(test_embedded_default_loads),
        cmocka_unit_test(test_weir_defaults_are_filled),
        cmocka_unit_test(test_service_and_route_defaults_are_filled),
        cmocka_unit_test(test_null_means_unset),
        cmocka_unit_test(test_access_log_off_is_null),
        cmocka_unit_test(test_parse_error_has_line_and_column),
        cmocka_unit_test(test_duplicate_json_keys_are_rejected),
        cmocka_unit_test(test_missing_format_version_is_reported),
        cmocka_unit_test(test_unknown_field_is_reported_with_its_path),
        cmocka_unit_test(test_wrong_types_are_reported),
        cmocka_unit_test(test_out_of_range_values_are_reported),
        cmocka_unit_test(test_two_problems_are_reported_together),
        cmocka_unit_test(test_route_path_must_start_with_slash_or_tilde),
        cmocka_unit_test(test_route_needs_a_condition),
        cmocka_unit_test(test_bad_urls_are_reported),
        cmocka_unit_test(test_duplicate_names_are_reported),
        cmocka_unit_test(test_route_referencing_a_missing_service_is_reported),
        cmocka_unit_test(test_top_level_routes_find_their_service_by_name_or_id),
        cmocka_unit_test(test_route_order_is_nested_then_top_level),
        cmocka_unit_test(test_same_file_gives_same_ids),
        cmocka_unit_test(test_hash_ignores_timestamps_only),
        cmocka_unit_test(test_config_with_model_reuses_routes_and_outlives_its_base),
        cmocka_unit_test(test_config_with_model_copies_routes_around_removed_and_new_ones),
        cmocka_unit_test(test_different_names_give_different_ids),
        cmocka_unit_test(test_unnamed_routes_get_ids_from_what_they_match),
        cmocka_unit_test(test_given_ids_must_be_uuids_and_unique),
        cmocka_unit_test(test_url_is_split_into_protocol_host_port_path),
        cmocka_unit_test(test_service_host_naming_an_upstream_points_at_it),
        cmocka_unit_test(test_unresolvable_hosts_are_reported),
        cmocka_unit_test(test_duplicate_targets_are_reported),
        cmocka_unit_test(test_unsupported_features_are_refused),
        cmocka_unit_test(test_tls_passthrough_routes_and_tcp_services),
        cmocka_unit_test(test_ssl_listener_flag_and_tls_settings_are_read),
        cmocka_unit_test(test_tls_settings_default_without_ssl_listeners),
        cmocka_unit_test(test_ssl_cert_and_key_go_together),
        cmocka_unit_test(test_route_values_are_normalised),
        cmocka_unit_test(test_route_header_host_is_refused),
        cmocka_unit_test(test_listeners_accept_ipv6_and_refuse_overlaps),
        cmocka_unit_test(test_trusted_ips_match_ipv4_ranges),
        cmocka_unit_test(test_trusted_ips_match_ipv6_ranges),
        cmocka_unit_test(test_no_trusted_ips_trusts_nobody),
        cmocka_unit_test(test_relative_log_paths_resolve_against_the_config_dir),
        cmocka_unit_test(test_missing_file_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
