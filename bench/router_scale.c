/* router_scale: shows that router_match() costs the same with 10 or 100,000
 * prefix routes (ARCHITECTURE.md section 4).
 *
 * For each size it builds a router of distinct prefix routes "/svc<i>/items",
 * then times lookups of paths below randomly chosen routes, twice: spread
 * over every route, and over a hot set of 10 routes. The spread figure is
 * what a busy gateway sees and includes the cache misses of a bigger tree;
 * the hot figure holds the working set constant and shows the algorithm's
 * cost alone. Route numbers are zero-padded so every request path has the
 * same length at every size. Every lookup is checked, so a wrong answer fails
 * the run instead of looking fast.
 *
 * Build from the repository root with this one command (as bench/run.sh
 * does; in line comments because its glob would open a comment), then run: */
// gcc -O2 -std=c11 -Igateway bench/router_scale.c gateway/router/*.c gateway/core/errlist.c
//     -lpcre2-8 -o bench/router_scale
// bench/router_scale [lookups per size, default 1000000]
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "router/router.h"

#define BENCH_REQUEST_PATHS 4096 /* varied, but few enough to stay out of the timing */
#define BENCH_HOT_ROUTES 10      /* the "hot" set: what 10 routes keep in cache */
#define BENCH_REPEATS 5          /* the machine is shared: keep the fastest pass */

struct bench_result {
    size_t n_routes;
    double build_ms;
    double ns_spread; /* requests spread over every route */
    double ns_hot;    /* requests over BENCH_HOT_ROUTES routes only */
};

struct bench_requests {
    char paths[BENCH_REQUEST_PATHS][48];
    size_t lens[BENCH_REQUEST_PATHS];
    size_t expected[BENCH_REQUEST_PATHS]; /* index of the route each must match */
};

static double bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* A small deterministic generator, so runs are comparable. */
static size_t bench_next(unsigned long *seed) {
    *seed = *seed * 6364136223846793005UL + 1442695040888963407UL;
    return (size_t)(*seed >> 33);
}

/* Request paths below routes drawn from the first `spread` of n_routes,
 * spaced evenly over the whole range (so the hot set is not just adjacent
 * nodes). */
static void bench_make_requests(struct bench_requests *q, size_t n_routes, size_t spread) {
    unsigned long seed = 42;
    for (size_t i = 0; i < BENCH_REQUEST_PATHS; i++) {
        q->expected[i] = (bench_next(&seed) % spread) * (n_routes / spread);
        int len = snprintf(q->paths[i], sizeof q->paths[i], "/svc%06zu/items/%zu", q->expected[i],
                           bench_next(&seed) % 100000);
        q->lens[i] = (size_t)len;
    }
}

/* Best ns/lookup over BENCH_REPEATS passes of `lookups` lookups; exits on a
 * wrong answer. */
static double bench_time(const struct router *r, const struct route *routes,
                         const struct bench_requests *q, size_t lookups) {
    struct route_request req = {.method = "GET",
                                .method_len = 3,
                                .host = "api.example.com",
                                .host_len = strlen("api.example.com")};
    double best = 0;
    for (int rep = 0; rep < BENCH_REPEATS; rep++) {
        size_t wrong = 0;
        double start = 0;
        /* The first pass over the request paths warms the caches, untimed. */
        for (size_t i = 0; i < lookups + BENCH_REQUEST_PATHS; i++) {
            if (i == BENCH_REQUEST_PATHS) start = bench_now_ns();
            size_t k = i % BENCH_REQUEST_PATHS;
            req.path = q->paths[k];
            req.path_len = q->lens[k];
            struct route_match m;
            if (!router_match(r, &req, &m) || m.route != &routes[q->expected[k]]) wrong++;
        }
        double ns = (bench_now_ns() - start) / (double)lookups;
        if (wrong) {
            fprintf(stderr, "%zu wrong matches\n", wrong);
            exit(1);
        }
        if (rep == 0 || ns < best) best = ns;
    }
    return best;
}

static void bench_size(size_t n_routes, size_t lookups, struct bench_result *res) {
    static const struct service service = {.name = "bench", .host = "127.0.0.1", .port = 80};
    struct route *routes = calloc(n_routes, sizeof *routes);
    char(*paths)[32] = calloc(n_routes, sizeof *paths);
    const char **path_ptrs = calloc(n_routes, sizeof *path_ptrs);
    struct bench_requests *q = malloc(sizeof *q);
    if (!routes || !paths || !path_ptrs || !q) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n_routes; i++) {
        snprintf(paths[i], sizeof paths[i], "/svc%06zu/items", i);
        path_ptrs[i] = paths[i];
        routes[i].service = &service;
        routes[i].paths = &path_ptrs[i];
        routes[i].n_paths = 1;
        routes[i].order = i;
    }

    struct errlist errs;
    errlist_init(&errs);
    double t0 = bench_now_ns();
    struct router *r = router_build(routes, n_routes, &errs);
    res->build_ms = (bench_now_ns() - t0) / 1e6;
    if (!r) {
        fprintf(stderr, "router_build failed: %s\n", errs.n ? errs.items[0] : "?");
        exit(1);
    }
    errlist_free(&errs);

    res->n_routes = n_routes;
    bench_make_requests(q, n_routes, n_routes);
    res->ns_spread = bench_time(r, routes, q, lookups);
    bench_make_requests(q, n_routes, BENCH_HOT_ROUTES);
    res->ns_hot = bench_time(r, routes, q, lookups);

    router_free(r);
    free(q);
    free(path_ptrs);
    free(paths);
    free(routes);
}

int main(int argc, char **argv) {
    static const size_t sizes[] = {10, 1000, 100000};
    enum { N_SIZES = sizeof sizes / sizeof sizes[0] };
    size_t lookups = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    if (lookups == 0) lookups = 1;
    struct bench_result res[N_SIZES];

    for (size_t i = 0; i < N_SIZES; i++)
        bench_size(sizes[i], lookups, &res[i]);

    printf("lookups: %zu per pass, best of %d passes; every answer checked\n", lookups,
           BENCH_REPEATS);
    printf("%8s  %9s  %18s  %18s\n", "routes", "build ms", "ns/lookup spread", "ns/lookup hot");
    for (size_t i = 0; i < N_SIZES; i++)
        printf("%8zu  %9.1f  %18.1f  %18.1f\n", res[i].n_routes, res[i].build_ms, res[i].ns_spread,
               res[i].ns_hot);
    printf("ratio %zu : %zu routes: spread %.2f, hot %.2f\n", sizes[N_SIZES - 1], sizes[0],
           res[N_SIZES - 1].ns_spread / res[0].ns_spread, res[N_SIZES - 1].ns_hot / res[0].ns_hot);
    printf("spread: requests over every route (includes cache misses of a larger tree);\n"
           "hot: requests over %d routes at every size (the algorithm alone).\n",
           BENCH_HOT_ROUTES);
    return 0;
}
