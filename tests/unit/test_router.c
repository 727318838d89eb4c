/* Unit tests for gateway/router: which route a request selects, and what the
 * match reports about it. Routes are built by hand, as the config would
 * produce them (lower-case hosts, upper-case methods, `order` = file order). */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "router/regex_set.h"
#include "router/router.h"

/* Sets a (const char **, size_t) pair of struct route from string literals. */
#define PATHS(r, ...) LIST_OF(r, paths, __VA_ARGS__)
#define HOSTS(r, ...) LIST_OF(r, hosts, __VA_ARGS__)
#define METHODS(r, ...) LIST_OF(r, methods, __VA_ARGS__)
#define LIST_OF(r, name, ...)                                                                      \
    do {                                                                                           \
        static const char *list_[] = {__VA_ARGS__};                                                    \
        (r).name = list_;                                                                          \
        (r).n_##name = sizeof list_ / sizeof list_[0];                                             \
    } while (0)

static const struct service test_service = {.name = "svc", .host = "127.0.0.1", .port = 8080};

/* A route with nothing but its position; tests add paths and conditions. */
static void route_init(struct route *r, size_t order) {
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "00000000-0000-0000-0000-%012llu",
             (unsigned long long)(order % 1000000000000ULL));
    r->service = &test_service;
    r->strip_path = true;
    r->protocols = ROUTE_PROTO_HTTP | ROUTE_PROTO_HTTPS;
    r->order = order;
}

static void routes_init(struct route *routes, size_t n) {
    for (size_t i = 0; i < n; i++)
        route_init(&routes[i], i);
}

/* Request headers for get_header: parallel arrays, names lower case. */
struct test_headers {
    const char *names[8];
    const char *values[8];
    size_t n;
};

static const char *test_get_header(void *ctx, const char *name, size_t index, size_t *value_len) {
    const struct test_headers *h = ctx;
    for (size_t i = 0; h && i < h->n; i++) {
        if (strcmp(h->names[i], name) != 0) continue;
        if (index-- == 0) {
            *value_len = strlen(h->values[i]);
            return h->values[i];
        }
    }
    return NULL;
}

static struct route_request request(const char *method, const char *host, const char *path,
                                    struct test_headers *headers) {
    struct route_request req = {
        .method = method,
        .method_len = strlen(method),
        .host = host,
        .host_len = host ? strlen(host) : 0,
        .path = path,
        .path_len = strlen(path),
        .get_header = test_get_header,
        .ctx = headers,
    };
    return req;
}

/* The matched route, or NULL. */
static const struct route *match_full(const struct router *r, const char *method, const char *host,
                                      const char *path, struct test_headers *headers,
                                      struct route_match *m) {
    struct route_request req = request(method, host, path, headers);
    return router_match(r, &req, m) ? m->route : NULL;
}

static const struct route *match(const struct router *r, const char *method, const char *host,
                                 const char *path) {
    struct route_match m;
    return match_full(r, method, host, path, NULL, &m);
}

static struct router *build(const struct route *routes, size_t n) {
    struct errlist errs;
    errlist_init(&errs);
    struct router *r = router_build(routes, n, &errs);
    assert_non_null(r);
    assert_int_equal(errs.n, 0);
    errlist_free(&errs);
    return r;
}

static void test_longest_prefix_wins(void **state) {
    struct route routes[3];
    routes_init(routes, 3);
    PATHS(routes[0], "/api");
    PATHS(routes[1], "/api/v1");
    PATHS(routes[2], "/");
    struct router *r = build(routes, 3);
    struct route_match m;

    assert_ptr_equal(match_full(r, "GET", NULL, "/api/v1/users", NULL, &m), &routes[1]);
    assert_int_equal(m.matched_len, 7);
    assert_false(m.is_regex);
    assert_ptr_equal(match(r, "GET", NULL, "/api/v2"), &routes[0]);
    assert_ptr_equal(match(r, "GET", NULL, "/other"), &routes[2]);
    router_free(r);
}

static void test_prefix_is_plain_string_prefix(void **state) {
    struct route routes[1];
    routes_init(routes, 1);
    PATHS(routes[0], "/api");
    struct router *r = build(routes, 1);
    struct route_match m;

    assert_ptr_equal(match_full(r, "GET", NULL, "/apix", NULL, &m), &routes[0]);
    assert_int_equal(m.matched_len, 4);
    assert_null(match(r, "GET", NULL, "/ap"));
    router_free(r);
}

static void test_path_index_reports_which_path_matched(void **state) {
    struct route routes[1];
    routes_init(routes, 1);
    PATHS(routes[0], "/a", "/b/c");
    struct router *r = build(routes, 1);
    struct route_match m;

    assert_ptr_equal(match_full(r, "GET", NULL, "/b/c/d", NULL, &m), &routes[0]);
    assert_int_equal(m.path_index, 1);
    assert_int_equal(m.matched_len, 4);
    assert_ptr_equal(match_full(r, "GET", NULL, "/a", NULL, &m), &routes[0]);
    assert_int_equal(m.path_index, 0);
    router_free(r);
}

static void test_route_without_paths_matches_any_path_but_loses_to_prefix(void **state) {
    struct route routes[2];
    routes_init(routes, 2);
    /* routes[0] has no paths */
    PATHS(routes[1], "/api");
    struct router *r = build(routes, 2);
    struct route_match m;

    assert_ptr_equal(match_full(r, "GET", NULL, "/anything", NULL, &m), &routes[0]);
    assert_int_equal(m.matched_len, 0);
    assert_ptr_equal(match(r, "GET", NULL, "/api/x"), &routes[1]);
    assert_ptr_equal(match(r, "GET", NULL, ""), &routes[0]);
    router_free(r);
}

static void test_exact_host_only_matches_that_host(void **state) {
    struct route routes[1];
    routes_init(routes, 1);
    HOSTS(routes[0], "api.example.com");
    struct router *r = build(routes, 1);

    assert_ptr_equal(match(r, "GET", "api.example.com", "/"), &routes[0]);
    assert_null(match(r, "GET", "www.example.com", "/"));
    assert_null(match(r, "GET", "x.api.example.com", "/"));
    assert_null(match(r, "GET", NULL, "/"));
    router_free(r);
}

static void test_wildcard_host_matches_multiple_labels_not_bare_domain(void **state) {
    struct route routes[1];
    routes_init(routes, 1);
    HOSTS(routes[0], "*.example.com");
    struct router *r = build(routes, 1);

    assert_ptr_equal(match(r, "GET", "a.example.com", "/"), &routes[0]);
    assert_ptr_equal(match(r, "GET", "a.b.example.com", "/"), &routes[0]);
    assert_null(match(r, "GET", "example.com", "/"));
    assert_null(match(r, "GET", ".example.com", "/"));
    assert_null(match(r, "GET", "aexample.com", "/"));
    assert_null(match(r, "GET", "a.example.org", "/"));
    router_free(r);
}

static void test_exact_host_beats_wildcard(void **state) {
    struct route routes[2];
    routes_init(routes, 2);
    HOSTS(routes[0], "*.example.com");
    PATHS(routes[0], "/api");
    HOSTS(routes[1], "api.example.com"); /* later in the file, still wins */
    PATHS(routes[1], "/api");
    struct router *r = build(routes, 2);

    assert_ptr_equal(match(r, "GET", "api.example.com", "/api"), &routes[1]);
    assert_ptr_equal(match(r, "GET", "www.example.com", "/api"), &routes[0]);
    router_free(r);
}

static void test_wildcard_host_beats_no_host_at_equal_conditions(void **state) {
    struct route routes[2];
    routes_init(routes, 2);
    METHODS(routes[0], "GET"); /* one condition, no host */
    PATHS(routes[0], "/api");
    HOSTS(routes[1], "*.example.com"); /* one condition, a wildcard host */
    PATHS(routes[1], "/api");
    struct router *r = build(routes, 2);

    assert_ptr_equal(match(r, "GET", "a.example.com", "/api"), &routes[1]);
    assert_ptr_equal(match(r, "GET", "example.org", "/api"), &routes[0]);
    router_free(r);
}

static void test_longer_prefix_beats_host_and_conditions(void **state) {
    struct route routes[2];
    routes_init(routes, 2);
    HOSTS(routes[0], "api.example.com");
    METHODS(routes[0], "GET");
    PATHS(routes[0], "/api");
    PATHS(routes[1], "/api/v1");
    struct router *r = build(routes, 2);

    assert_ptr_equal(match(r, "GET", "api.example.com", "/api/v1/x"), &routes[1]);
    assert_ptr_equal(match(r, "GET", "api.example.com", "/api/v2"), &routes[0]);
    router_free(r);
}

static void test_more_conditions_win_at_equal_path(void **state) {
    struct route routes[3];
    routes_init(routes, 3);
    PATHS(routes[0], "/api");
    PATHS(routes[1], "/api");
    METHODS(routes[1], "GET");
    PATHS(routes[2], "/api");
    METHODS(routes[2], "GET");
    static const char *v[] = {"1"};
    static struct route_header hdr[] = {{"x-version", v, 1}};
    routes[2].headers = hdr;
    routes[2].n_headers = 1;
    struct router *r = build(routes, 3);
    struct test_headers h = {{"x-version"}, {"1"}, 1};
    struct route_match m;

    assert_ptr_equal(match_full(r, "GET", NULL, "/api", &h, &m), &routes[2]);
    assert_ptr_equal(match(r, "GET", NULL, "/api"), &routes[1]);
    assert_ptr_equal(match(r, "POST", NULL, "/api"), &routes[0]);
    router_free(r);
}

static void test_lower_order_wins_a_full_tie(void **state) {
    struct route routes[2];
    routes_init(routes, 2);
    routes[0].order = 7;
    routes[1].order = 3;
    PATHS(routes[0], "/api");
    PATHS(routes[1], "/api");
    struct router *r = build(routes, 2);

    assert_ptr_equal(match(r, "GET", NULL, "/api"), &routes[1]);
    router_free(r);
}

static void test_regex_routes_before_prefix(void **state) {
    struct route routes[2];
    routes_init(routes, 2);
    PATHS(routes[0], "/api/123/longer/prefix");
    PATHS(routes[1], "~/api/\\d+");
    struct router *r = build(routes, 2);
    struct route_match m;

    assert_ptr_equal(match_full(r, "GET", NULL, "/api/123/longer/prefix", NULL, &m), &routes[1]);
    assert_true(m.is_regex);
    assert_int_equal(m.matched_len, 8);
    assert_ptr_equal(match(r, "GET", NULL, "/api/x/longer/prefix"), NULL);
    router_free(r);
}

/* A long path outgrows PCRE2's default 32 KiB JIT stack on a repeated group: the route still
 * matches (the interpreter takes over) rather than silently not. */
static void test_regex_matches_a_path_that_outgrows_the_jit_stack(void **state) {
    (void)state;
    struct route routes[2];
    routes_init(routes, 2);
    PATHS(routes[0], "/");
    PATHS(routes[1], "~/files/(?:[a-z]|/|%[0-9A-F]{2})*$");
    struct router *r = build(routes, 2);
    static char path[6001];
    memcpy(path, "/files/", 7);
    for (size_t i = 7; i < sizeof path - 1; i++)
        path[i] = i % 9 ? 'a' : '/';
    path[sizeof path - 1] = '\0';
    assert_ptr_equal(match(r, "GET", NULL, path), &routes[1]);
    path[sizeof path - 2] = 'A'; /* not in the class: the prefix route */
    assert_ptr_equal(match(r, "GET", NULL, path), &routes[0]);
    router_free(r);
}

static void test_regex_priority_orders_regexes(void **state) {
    struct route routes[3];
    routes_init(routes, 3);
    PATHS(routes[0], "~/a");
    PATHS(routes[1], "~/a/b");
    PATHS(routes[2], "~/a/b/c");
    routes[2].regex_priority = 5;
    struct router *r = build(routes, 3);

    /* Highest priority first; at equal priority the first in the file, even
     * though a later regex matches more of the path. */
    assert_ptr_equal(match(r, "GET", NULL, "/a/b/c"), &routes[2]);
    assert_ptr_equal(match(r, "GET", NULL, "/a/b"), &routes[0]);
    router_free(r);
}

static void test_regex_is_anchored_at_path_start(void **state) {
    struct route routes[1];
    routes_init(routes, 1);
    PATHS(routes[0], "~/api");
    struct router *r = build(routes, 1);

    assert_null(match(r, "GET", NULL, "/v1/api"));
    assert_ptr_equal(match(r, "GET", NULL, "/api/v1"), &routes[0]);
    router_free(r);
}

static void test_regex_captures(void **state) {
    struct route routes[1];
    routes_init(routes, 1);
    PATHS(routes[0], "/x", "~/users/(\\d+)(/(\\w+))?");
    struct router *r = build(routes, 1);
    struct route_match m;

    assert_ptr_equal(match_full(r, "GET", NULL, "/users/42?", NULL, &m), &routes[0]);
    assert_int_equal(m.path_index, 1);
    assert_int_equal(m.n_captures, 4);
    assert_int_equal(m.matched_len, 9);
    assert_int_equal(m.captures[0][0], 0);
    assert_int_equal(m.captures[0][1], 9);
    assert_int_equal(m.captures[1][0], 7);
    assert_int_equal(m.captures[1][1], 9);
    assert_true(m.captures[2][0] == SIZE_MAX && m.captures[2][1] == SIZE_MAX);
    assert_true(m.captures[3][0] == SIZE_MAX && m.captures[3][1] == SIZE_MAX);

    assert_non_null(match_full(r, "GET", NULL, "/users/42/posts", NULL, &m));
    assert_int_equal(m.captures[3][0], 10);
    assert_int_equal(m.captures[3][1], 15);
    router_free(r);
}

static void test_regex_route_checks_hosts_methods_headers(void **state) {
    struct route routes[2];
    routes_init(routes, 2);
    PATHS(routes[0], "~/api");
    HOSTS(routes[0], "api.example.com", "*.internal");
    METHODS(routes[0], "POST");
    static const char *v[] = {"yes"};
    static struct route_header hdr[] = {{"x-canary", v, 1}};
    routes[0].headers = hdr;
    routes[0].n_headers = 1;
    PATHS(routes[1], "/");
    struct router *r = build(routes, 2);
    struct test_headers h = {{"x-canary"}, {"yes"}, 1};
    struct route_match m;

    assert_ptr_equal(match_full(r, "POST", "api.example.com", "/api", &h, &m), &routes[0]);
    assert_ptr_equal(match_full(r, "POST", "a.b.internal", "/api", &h, &m), &routes[0]);
    assert_ptr_equal(match_full(r, "POST", "internal", "/api", &h, &m), &routes[1]);
    assert_ptr_equal(match_full(r, "POST", "www.example.com", "/api", &h, &m), &routes[1]);
    assert_ptr_equal(match_full(r, "GET", "api.example.com", "/api", &h, &m), &routes[1]);
    assert_ptr_equal(match_full(r, "POST", "api.example.com", "/api", NULL, &m), &routes[1]);
    router_free(r);
}

static void test_method_filter(void **state) {
    struct route routes[1];
    routes_init(routes, 1);
    PATHS(routes[0], "/api");
    METHODS(routes[0], "GET", "HEAD");
    struct router *r = build(routes, 1);

    assert_ptr_equal(match(r, "GET", NULL, "/api"), &routes[0]);
    assert_ptr_equal(match(r, "HEAD", NULL, "/api"), &routes[0]);
    assert_null(match(r, "POST", NULL, "/api"));
    assert_null(match(r, "get", NULL, "/api"));
    assert_null(match(r, "GETX", NULL, "/api"));
    router_free(r);
}

static void test_method_filter_falls_back_to_shorter_prefix(void **state) {
    struct route routes[2];
    routes_init(routes, 2);
    PATHS(routes[0], "/api");
    PATHS(routes[1], "/api/v1");
    METHODS(routes[1], "POST");
    struct router *r = build(routes, 2);

    assert_ptr_equal(match(r, "POST", NULL, "/api/v1"), &routes[1]);
    assert_ptr_equal(match(r, "GET", NULL, "/api/v1"), &routes[0]);
    router_free(r);
}

static void test_header_filter(void **state) {
    struct route routes[1];
    routes_init(routes, 1);
    PATHS(routes[0], "/");
    static const char *v1[] = {"v1", "v2"};
    static const char *v2[] = {"beta"};
    static struct route_header hdr[] = {{"x-version", v1, 2}, {"x-channel", v2, 1}};
    routes[0].headers = hdr;
    routes[0].n_headers = 2;
    struct router *r = build(routes, 1);
    struct route_match m;

    struct test_headers both = {{"x-version", "x-channel"}, {"V2", "Beta"}, 2};
    assert_ptr_equal(match_full(r, "GET", NULL, "/", &both, &m), &routes[0]);
    /* A repeated header matches when any occurrence does. */
    struct test_headers repeated = {
        {"x-version", "x-channel", "x-version"}, {"v3", "beta", "v1"}, 3};
    assert_ptr_equal(match_full(r, "GET", NULL, "/", &repeated, &m), &routes[0]);
    struct test_headers wrong = {{"x-version", "x-channel"}, {"v3", "beta"}, 2};
    assert_null(match_full(r, "GET", NULL, "/", &wrong, &m));
    struct test_headers missing = {{"x-version"}, {"v1"}, 1};
    assert_null(match_full(r, "GET", NULL, "/", &missing, &m));
    assert_null(match_full(r, "GET", NULL, "/", NULL, &m));
    router_free(r);
}

static void test_host_case_insensitive(void **state) {
    struct route routes[2];
    routes_init(routes, 2);
    HOSTS(routes[0], "api.example.com");
    PATHS(routes[0], "/a");
    HOSTS(routes[1], "*.example.net");
    PATHS(routes[1], "/b");
    struct router *r = build(routes, 2);

    assert_ptr_equal(match(r, "GET", "API.Example.COM", "/a"), &routes[0]);
    assert_ptr_equal(match(r, "GET", "WWW.EXAMPLE.NET", "/b"), &routes[1]);
    router_free(r);
}

static void test_host_port_ignored(void **state) {
    struct route routes[2];
    routes_init(routes, 2);
    HOSTS(routes[0], "api.example.com");
    PATHS(routes[0], "/a");
    HOSTS(routes[1], "[::1]");
    PATHS(routes[1], "/b");
    struct router *r = build(routes, 2);

    assert_ptr_equal(match(r, "GET", "api.example.com:8443", "/a"), &routes[0]);
    assert_ptr_equal(match(r, "GET", "[::1]:8080", "/b"), &routes[1]);
    assert_ptr_equal(match(r, "GET", "[::1]", "/b"), &routes[1]);
    router_free(r);
}

static void test_no_match(void **state) {
    struct route routes[2];
    routes_init(routes, 2);
    PATHS(routes[0], "/api");
    PATHS(routes[1], "~/v\\d+/");
    HOSTS(routes[1], "example.com");
    struct router *r = build(routes, 2);
    struct route_match m;
    memset(&m, 0xab, sizeof m);
    struct route_request req = request("GET", "example.org", "/v1/users", NULL);

    assert_false(router_match(r, &req, &m));
    router_free(r);

    struct router *empty = build(NULL, 0);
    assert_null(match(empty, "GET", "example.com", "/"));
    router_free(empty);
}

/* Permutes a route array and checks every request still selects the same
 * route (identified by `order`, since addresses move). */
static void test_result_independent_of_insertion_order(void **state) {
    enum { N = 9 };
    struct route base[N];
    routes_init(base, N);
    PATHS(base[0], "/api");
    PATHS(base[1], "/api");
    METHODS(base[1], "GET");
    PATHS(base[2], "/api");
    HOSTS(base[2], "*.example.com");
    PATHS(base[3], "/api");
    HOSTS(base[3], "a.example.com");
    PATHS(base[4], "/api/v1");
    PATHS(base[5], "/api");
    PATHS(base[6], "~/api/v[2-9]");
    PATHS(base[7], "~/api/v1$");
    base[7].regex_priority = 1;
    PATHS(base[8], "/api/v1");
    HOSTS(base[8], "*.example.com");
    METHODS(base[8], "PUT");

    static const struct {
        const char *method, *host, *path;
    } reqs[] = {
        {"GET", NULL, "/api"},
        {"POST", NULL, "/api"},
        {"GET", "a.example.com", "/api"},
        {"GET", "b.example.com", "/api"},
        {"GET", NULL, "/api/v1"},
        {"GET", NULL, "/api/v2"},
        {"PUT", "b.example.com", "/api/vx"},
        {"PUT", "b.example.com", "/api/v1/z"},
        {"GET", NULL, "/nothing"},
    };
    enum { R = sizeof reqs / sizeof reqs[0] };
    long expected[R];
    struct router *r = build(base, N);
    for (size_t i = 0; i < R; i++) {
        const struct route *m = match(r, reqs[i].method, reqs[i].host, reqs[i].path);
        expected[i] = m ? (long)m->order : -1;
    }
    router_free(r);
    assert_int_equal(expected[0], 1);
    assert_int_equal(expected[1], 0);
    assert_int_equal(expected[2], 3);
    assert_int_equal(expected[3], 2);
    assert_int_equal(expected[4], 7);
    assert_int_equal(expected[5], 6);
    assert_int_equal(expected[6], 2);
    assert_int_equal(expected[7], 8);
    assert_int_equal(expected[8], -1);

    unsigned seed = 12345;
    for (int round = 0; round < 50; round++) {
        struct route shuffled[N];
        memcpy(shuffled, base, sizeof base);
        for (size_t i = N - 1; i > 0; i--) { /* Fisher-Yates with a fixed LCG */
            seed = seed * 1103515245u + 12345u;
            size_t j = (seed >> 16) % (i + 1);
            struct route t = shuffled[i];
            shuffled[i] = shuffled[j];
            shuffled[j] = t;
        }
        r = build(shuffled, N);
        for (size_t i = 0; i < R; i++) {
            const struct route *m = match(r, reqs[i].method, reqs[i].host, reqs[i].path);
            assert_int_equal(m ? (long)m->order : -1, expected[i]);
        }
        router_free(r);
    }
}

static void test_invalid_regex_reports_field(void **state) {
    struct route routes[3];
    routes_init(routes, 3);
    PATHS(routes[0], "~/ok/(\\d+)");
    PATHS(routes[1], "/fine", "~/a(b");
    PATHS(routes[2], "~/x[");
    struct errlist errs;
    errlist_init(&errs);

    assert_null(router_build(routes, 3, &errs));
    /* Every bad regex is reported, not only the first. */
    assert_int_equal(errs.n, 2);
    assert_string_equal(
        errs.items[0],
        "routes[1].paths[1]: invalid regex: missing closing parenthesis at offset 4");
    assert_true(strncmp(errs.items[1], "routes[2].paths[0]: invalid regex: ", 35) == 0);
    assert_non_null(strstr(errs.items[1], " at offset "));
    errlist_free(&errs);
}

static void test_many_routes(void **state) {
    enum { N = 100000 };
    struct route *routes = calloc(N, sizeof *routes);
    char(*paths)[32] = calloc(N, sizeof *paths);
    const char **path_ptrs = calloc(N, sizeof *path_ptrs);
    assert_non_null(routes);
    assert_non_null(paths);
    assert_non_null(path_ptrs);
    for (size_t i = 0; i < N; i++) {
        route_init(&routes[i], i);
        snprintf(paths[i], sizeof paths[i], "/svc%zu/items", i);
        path_ptrs[i] = paths[i];
        routes[i].paths = &path_ptrs[i];
        routes[i].n_paths = 1;
    }
    struct router *r = build(routes, N);
    struct route_match m;

    for (size_t i = 0; i < N; i += 997) {
        char path[64];
        snprintf(path, sizeof path, "/svc%zu/items/42", i);
        assert_ptr_equal(match_full(r, "GET", NULL, path, NULL, &m), &routes[i]);
        assert_int_equal(m.matched_len, strlen(paths[i]));
    }
    assert_ptr_equal(match(r, "GET", NULL, "/svc99999/items"), &routes[99999]);
    assert_ptr_equal(match(r, "GET", NULL, "/svc1/items"), &routes[1]);
    assert_null(match(r, "GET", NULL, "/svc1/item"));
    assert_null(match(r, "GET", NULL, "/svc100000/items"));
    router_free(r);
    free(path_ptrs);
    free(paths);
    free(routes);
}

/* An admin change builds a router from the previous one's compiled regexes: a pattern both have
 * is the same code, which must outlive the previous router and its set. */
static void test_next_router_reuses_compiled_regexes(void **state) {
    struct route a[3], b[3];
    routes_init(a, 3);
    PATHS(a[0], "~/a/(\\d+)$");
    PATHS(a[1], "~/b");
    PATHS(a[2], "/c");
    routes_init(b, 3);
    PATHS(b[0], "/c");
    PATHS(b[1], "~/a/(\\d+)$");
    PATHS(b[2], "~/d/(\\w+)");
    struct router *ra = build(a, 3);
    struct regex_set *compiled = regex_set_retain(router_compiled_regexes(ra));
    assert_non_null(compiled);
    struct route_match ma, mb;
    assert_ptr_equal(match_full(ra, "GET", NULL, "/a/42", NULL, &ma), &a[0]);

    struct errlist errs;
    errlist_init(&errs);
    struct router *rb = router_build_reusing(b, 3, compiled, &errs);
    assert_non_null(rb);
    router_free(ra);
    regex_set_release(compiled);

    assert_ptr_equal(match_full(rb, "GET", NULL, "/a/42", NULL, &mb), &b[1]);
    assert_ptr_equal(mb.regex, ma.regex); /* the same code, still alive */
    assert_int_equal(mb.n_captures, 2);
    assert_int_equal(mb.captures[1][0], 3);
    assert_int_equal(mb.captures[1][1], 5);
    assert_ptr_equal(match_full(rb, "GET", NULL, "/d/x", NULL, &mb), &b[2]);
    assert_ptr_not_equal(mb.regex, ma.regex);
    assert_null(match(rb, "GET", NULL, "/b"));
    assert_ptr_equal(match(rb, "GET", NULL, "/c/1"), &b[0]);

    /* a bad pattern is still reported when the others are reused */
    struct route c[2];
    routes_init(c, 2);
    PATHS(c[0], "~/a/(\\d+)$");
    PATHS(c[1], "~/x[");
    assert_null(router_build_reusing(c, 2, router_compiled_regexes(rb), &errs));
    assert_int_equal(errs.n, 1);
    assert_true(strncmp(errs.items[0], "routes[1].paths[0]: invalid regex: ", 35) == 0);
    errlist_free(&errs);
    router_free(rb);
    (void)state;
}

/* ---- the prefix rules against a reference ------------------------------ */

/* router.h's prefix rules written the slow way: every (route, path, host) that matches is a
 * candidate, ranked by prefix length, then conditions, then host kind, then order. The router
 * must agree on random routes that share prefixes, paths and hosts (radix splits, buckets of
 * many entries, the same route in several trees). */
static unsigned test_next(unsigned *seed) {
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 16;
}

static bool test_host_matches(const char *route_host, const char *host, int *kind) {
    if (!host) return false;
    size_t len = strlen(host), rlen = strlen(route_host);
    if (route_host[0] == '*') {
        *kind = 1;
        return len > rlen - 1 && strcasecmp(host + len - (rlen - 1), route_host + 1) == 0;
    }
    *kind = 2;
    return strcasecmp(host, route_host) == 0;
}

static bool test_route_conditions_ok(const struct route *r, const char *method,
                                     const struct test_headers *h) {
    bool ok = r->n_methods == 0;
    for (size_t i = 0; i < r->n_methods; i++)
        ok = ok || strcmp(r->methods[i], method) == 0;
    for (size_t k = 0; ok && k < r->n_headers; k++) {
        bool found = false;
        for (size_t i = 0; h && i < h->n; i++)
            for (size_t v = 0; v < r->headers[k].n_values; v++)
                found = found || (!strcmp(h->names[i], r->headers[k].name) &&
                                  !strcasecmp(h->values[i], r->headers[k].values[v]));
        ok = found;
    }
    return ok;
}

struct test_candidate {
    const struct route *route;
    size_t path_index, len, conditions;
    int kind;
};

static bool test_candidate_better(const struct test_candidate *a, const struct test_candidate *b) {
    if (!b->route) return true;
    if (a->len != b->len) return a->len > b->len;
    if (a->conditions != b->conditions) return a->conditions > b->conditions;
    if (a->kind != b->kind) return a->kind > b->kind;
    if (a->route->order != b->route->order) return a->route->order < b->route->order;
    return a->path_index < b->path_index;
}

static struct test_candidate test_reference(const struct route *routes, size_t n,
                                            const char *method, const char *host,
                                            const char *path, const struct test_headers *h) {
    struct test_candidate best = {0};
    for (size_t i = 0; i < n; i++) {
        const struct route *r = &routes[i];
        if (!test_route_conditions_ok(r, method, h)) continue;
        size_t conditions = (r->n_hosts > 0) + (r->n_methods > 0) + r->n_headers;
        for (size_t j = 0; j < (r->n_paths ? r->n_paths : 1); j++) {
            const char *p = r->n_paths ? r->paths[j] : "";
            if (strncmp(path, p, strlen(p)) != 0) continue;
            for (size_t k = 0; k < (r->n_hosts ? r->n_hosts : 1); k++) {
                int kind = 0;
                if (r->n_hosts && !test_host_matches(r->hosts[k], host, &kind)) continue;
                struct test_candidate c = {r, j, strlen(p), conditions, kind};
                if (test_candidate_better(&c, &best)) best = c;
            }
        }
    }
    return best;
}

static void test_prefix_rules_agree_with_reference(void **state) {
    enum { N = 400, REQUESTS = 4000 };
    static const char *const path_pool[] = {"/", "/a", "/ab", "/abc", "/abd", "/b", "/ba/",
                                            "/a/b", "/a/bc", "/abcdef", "/b/a", "/bb"};
    static const char *const host_pool[] = {"a.example.com", "b.example.com", "*.example.com",
                                            "x.a.example.com", "*.a.example.com"};
    static const char *const method_pool[] = {"GET", "POST"};
    static const char *const value_pool[] = {"1", "2"};
    static const char *const req_hosts[] = {NULL, "a.example.com", "B.Example.COM",
                                            "x.a.example.com", "y.a.example.com", "example.com",
                                            "c.example.com", "other.org"};
    static const char *const req_methods[] = {"GET", "POST", "PUT"};
    enum { NP = sizeof path_pool / sizeof *path_pool, NH = sizeof host_pool / sizeof *host_pool };
    unsigned seed = 4242;
    for (int round = 0; round < 5; round++) {
        static struct route routes[N];
        static const char *paths[N][3], *hosts[N][2], *methods[N][1];
        static struct route_header headers[N][1];
        static const char *values[N][1];
        routes_init(routes, N);
        for (size_t i = 0; i < N; i++) {
            struct route *r = &routes[i];
            r->n_paths = test_next(&seed) % 4; /* 0: no paths, the empty prefix */
            for (size_t j = 0; j < r->n_paths; j++)
                paths[i][j] = path_pool[test_next(&seed) % NP];
            r->paths = paths[i];
            r->n_hosts = test_next(&seed) % 3;
            for (size_t j = 0; j < r->n_hosts; j++)
                hosts[i][j] = host_pool[test_next(&seed) % NH];
            r->hosts = hosts[i];
            if (test_next(&seed) % 3 == 0) {
                methods[i][0] = method_pool[test_next(&seed) % 2];
                r->methods = methods[i];
                r->n_methods = 1;
            }
            if (test_next(&seed) % 4 == 0) {
                values[i][0] = value_pool[test_next(&seed) % 2];
                headers[i][0] = (struct route_header){"x-v", values[i], 1};
                r->headers = headers[i];
                r->n_headers = 1;
            }
        }
        struct router *router = build(routes, N);
        for (int q = 0; q < REQUESTS; q++) {
            char path[16] = "/";
            size_t len = 1 + test_next(&seed) % 7;
            for (size_t k = 1; k < len; k++)
                path[k] = "ab/cdef"[test_next(&seed) % 7];
            path[len] = '\0';
            const char *host = req_hosts[test_next(&seed) % 8];
            const char *method = req_methods[test_next(&seed) % 3];
            struct test_headers h = {{"x-v"}, {value_pool[test_next(&seed) % 2]}, 1};
            struct test_headers *hp = test_next(&seed) % 2 ? &h : NULL;
            struct test_candidate want = test_reference(routes, N, method, host, path, hp);
            struct route_match m;
            const struct route *got = match_full(router, method, host, path, hp, &m);
            if (got != want.route || (got && (m.path_index != want.path_index ||
                                              m.matched_len != want.len)))
                fail_msg("%s %s %s: router says route %ld path %zu, reference route %ld path %zu",
                         method, host ? host : "-", path, got ? (long)got->order : -1L,
                         got ? m.path_index : 0, want.route ? (long)want.route->order : -1L,
                         want.path_index);
        }
        router_free(router);
    }
    (void)state;
}

/* router_match is called by every worker on one router without locks. */
struct test_thread_arg {
    const struct router *router;
    const struct route *routes;
    int failures;
};

static void *test_match_thread(void *p) {
    struct test_thread_arg *a = p;
    for (int i = 0; i < 2000; i++) {
        struct route_match m;
        const struct route *got =
            match_full(a->router, "GET", "a.example.com", "/users/7", NULL, &m);
        if (got != &a->routes[0] || m.captures[1][0] != 7) a->failures++;
        if (match(a->router, "GET", "b.example.com", "/static/x") != &a->routes[1]) a->failures++;
    }
    return NULL;
}

static void test_concurrent_matches_agree(void **state) {
    struct route routes[2];
    routes_init(routes, 2);
    PATHS(routes[0], "~/users/(\\d+)");
    HOSTS(routes[0], "*.example.com");
    PATHS(routes[1], "/static");
    struct router *r = build(routes, 2);
    enum { T = 8 };
    pthread_t threads[T];
    struct test_thread_arg args[T];
    for (int i = 0; i < T; i++) {
        args[i] = (struct test_thread_arg){r, routes, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, test_match_thread, &args[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    router_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_longest_prefix_wins),
        cmocka_unit_test(test_prefix_is_plain_string_prefix),
        cmocka_unit_test(test_path_index_reports_which_path_matched),
        cmocka_unit_test(test_route_without_paths_matches_any_path_but_loses_to_prefix),
        cmocka_unit_test(test_exact_host_only_matches_that_host),
        cmocka_unit_test(test_wildcard_host_matches_multiple_labels_not_bare_domain),
        cmocka_unit_test(test_exact_host_beats_wildcard),
        cmocka_unit_test(test_wildcard_host_beats_no_host_at_equal_conditions),
        cmocka_unit_test(test_longer_prefix_beats_host_and_conditions),
        cmocka_unit_test(test_more_conditions_win_at_equal_path),
        cmocka_unit_test(test_lower_order_wins_a_full_tie),
        cmocka_unit_test(test_regex_routes_before_prefix),
        cmocka_unit_test(test_regex_priority_orders_regexes),
        cmocka_unit_test(test_regex_matches_a_path_that_outgrows_the_jit_stack),
        cmocka_unit_test(test_regex_is_anchored_at_path_start),
        cmocka_unit_test(test_regex_captures),
        cmocka_unit_test(test_regex_route_checks_hosts_methods_headers),
        cmocka_unit_test(test_method_filter),
        cmocka_unit_test(test_method_filter_falls_back_to_shorter_prefix),
        cmocka_unit_test(test_header_filter),
        cmocka_unit_test(test_host_case_insensitive),
        cmocka_unit_test(test_host_port_ignored),
        cmocka_unit_test(test_no_match),
        cmocka_unit_test(test_result_independent_of_insertion_order),
        cmocka_unit_test(test_invalid_regex_reports_field),
        cmocka_unit_test(test_next_router_reuses_compiled_regexes),
        cmocka_unit_test(test_many_routes),
        cmocka_unit_test(test_prefix_rules_agree_with_reference),
        cmocka_unit_test(test_concurrent_matches_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
