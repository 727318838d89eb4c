"""Routing: which route (and so which service) a request reaches (Kong semantics).

Every service here points at the same echo backend with its own path "/<service name>", so the
first segment of the path the backend received names the service that was chosen."""

from harness import (NO_ROUTE_MESSAGE, Conn, assert_eq, assert_gateway_error, assert_status,
                     base_config, echo, gateway, route, service)


def svc(name, backend_port, *routes):
    return service(name, backend_port, path="/" + name, routes=list(routes))


def which(w, path, host="example.test", method="GET", headers=()):
    """The name of the service the request reached, or None for the gateway's 404."""
    with Conn(w.port) as c:
        r = c.request(method, path, headers=list(headers), host=host)
    if r.status == 404:
        assert_gateway_error(r, 404, NO_ROUTE_MESSAGE)
        return None
    assert_status(r, 200, "status of %s %s (Host %s)" % (method, path, host))
    return echo(r)["path"].split("/")[1]


def expect_routes(w, cases):
    """cases: [(path, expected service or None, kwargs for which())]."""
    for case in cases:
        path, expected = case[0], case[1]
        kw = case[2] if len(case) > 2 else {}
        assert_eq(which(w, path, **kw), expected, "service for %s %s" % (path, kw or ""))


def test_prefix_is_a_plain_string_prefix():
    def config(bp):
        return base_config(bp, services=[svc("A", bp, route("a", ["/api"])),
                                         svc("B", bp, route("b", ["/seg/"]))])
    with gateway(config) as (w, b):
        expect_routes(w, [("/api", "A"), ("/api/x", "A"), ("/apix", "A"), ("/api?q=1", "A"),
                          ("/ap", None), ("/", None), ("/API", None),
                          ("/seg/x", "B"), ("/seg/", "B"), ("/seg", None), ("/segx", None)])


def test_longest_prefix_wins_whatever_the_file_order():
    routes = [("A", "/api"), ("B", "/api/v1"), ("C", "/api/v1/users")]
    cases = [("/api/v1/users/7", "C"), ("/api/v1/users", "C"), ("/api/v1/x", "B"),
             ("/api/v1", "B"), ("/api/v2", "A"), ("/api", "A")]
    for order in (routes, list(reversed(routes)), [routes[1], routes[0], routes[2]]):
        with gateway(lambda bp: base_config(bp, services=[
                svc(n, bp, route("r" + n, [p])) for n, p in order])) as (w, b):
            expect_routes(w, cases)


def test_regex_routes_are_tried_before_prefix_routes():
    def config(bp):
        return base_config(bp, services=[
            svc("P", bp, route("p", ["/api/v1/users"])),   # longer, but a prefix
            svc("Q", bp, route("q", ["/api"])),
            svc("R", bp, route("r", [r"~/api/v\d+/"])),
        ])
    with gateway(config) as (w, b):
        expect_routes(w, [("/api/v1/users", "R"), ("/api/v2/x", "R"), ("/api/vx/users", "Q"),
                          ("/api/v1", "Q")])


def test_regex_is_anchored_at_the_start_of_the_path():
    def config(bp):
        return base_config(bp, services=[svc("R", bp, route("r", [r"~/v\d+/"]))])
    with gateway(config) as (w, b):
        expect_routes(w, [("/v1/x", "R"), ("/v22/", "R"), ("/x/v1/", None), ("/vx/", None)])


def test_higher_regex_priority_wins_over_file_order():
    def config(bp):
        return base_config(bp, services=[
            svc("LOW", bp, route("low", [r"~/r/"], regex_priority=0)),
            svc("HIGH", bp, route("high", [r"~/r/\d+"], regex_priority=10)),
        ])
    with gateway(config) as (w, b):
        expect_routes(w, [("/r/5", "HIGH"), ("/r/x", "LOW")])


def test_equal_regex_priority_falls_back_to_file_order():
    def config(first, second):
        return lambda bp: base_config(bp, services=[
            svc(first[0], bp, route(first[0].lower(), [first[1]])),
            svc(second[0], bp, route(second[0].lower(), [second[1]]))])
    specific, general = ("SPECIFIC", r"~/s/\d+"), ("GENERAL", r"~/s/")
    with gateway(config(specific, general)) as (w, b):
        expect_routes(w, [("/s/5", "SPECIFIC"), ("/s/x", "GENERAL")])
    with gateway(config(general, specific)) as (w, b):
        expect_routes(w, [("/s/5", "GENERAL"), ("/s/x", "GENERAL")])


def test_regex_strip_path_removes_the_matched_part():
    def config(bp):
        return base_config(bp, services=[
            service("items", bp, path="/svc", routes=[route("i", [r"~/items/\d+"], strip_path=True)])])
    with gateway(config) as (w, b):
        with Conn(w.port) as c:
            r = c.request("GET", "/items/42/detail?x=1")
        assert_status(r, 200)
        e = echo(r)
        assert_eq(e["path"], "/svc/detail", "upstream path")
        assert_eq(e["query"], "x=1", "upstream query")


def test_hosts_match_case_insensitively_ignoring_the_port():
    def config(bp):
        return base_config(bp, services=[svc("H", bp, route("h", ["/"], hosts=["api.example.com"]))])
    with gateway(config) as (w, b):
        expect_routes(w, [("/x", "H", {"host": "api.example.com"}),
                          ("/x", "H", {"host": "API.Example.COM"}),
                          ("/x", "H", {"host": "api.example.com:8080"}),
                          ("/x", None, {"host": "other.example.com"}),
                          ("/x", None, {"host": "api.example.com.evil"}),
                          ("/x", None, {"host": "xapi.example.com"})])


def test_wildcard_host_matches_one_or_more_labels_but_not_the_bare_domain():
    def config(bp):
        return base_config(bp, services=[svc("W", bp, route("w", ["/"], hosts=["*.example.org"]))])
    with gateway(config) as (w, b):
        expect_routes(w, [("/", "W", {"host": "a.example.org"}),
                          ("/", "W", {"host": "a.b.example.org"}),
                          ("/", "W", {"host": "A.EXAMPLE.ORG:81"}),
                          ("/", None, {"host": "example.org"}),
                          ("/", None, {"host": "aexample.org"}),
                          ("/", None, {"host": "a.example.org.net"})])


def test_exact_host_beats_wildcard_host():
    for wildcard_first in (True, False):
        def config(bp):
            services = [svc("WILD", bp, route("wild", ["/"], hosts=["*.example.com"])),
                        svc("EXACT", bp, route("exact", ["/"], hosts=["api.example.com"]))]
            return base_config(bp, services=services if wildcard_first else services[::-1])
        with gateway(config) as (w, b):
            expect_routes(w, [("/", "EXACT", {"host": "api.example.com"}),
                              ("/", "WILD", {"host": "www.example.com"}),
                              ("/", "WILD", {"host": "x.api.example.com"})])


def test_methods_filter_routes():
    def config(bp):
        return base_config(bp, services=[svc("G", bp, route("g", ["/m"], methods=["GET", "HEAD"])),
                                         svc("P", bp, route("p", ["/m"], methods=["POST"]))])
    with gateway(config) as (w, b):
        expect_routes(w, [("/m", "G", {"method": "GET"}), ("/m", "P", {"method": "POST"}),
                          ("/m", None, {"method": "DELETE"}), ("/m", None, {"method": "PUT"})])


def test_headers_filter_routes_with_case_insensitive_values():
    def config(bp):
        return base_config(bp, services=[
            svc("DEFAULT", bp, route("d", ["/h"])),
            svc("V2", bp, route("v", ["/h"], headers={"x-version": ["v2", "v3"]}))])
    with gateway(config) as (w, b):
        expect_routes(w, [("/h", "V2", {"headers": [("X-Version", "v2")]}),
                          ("/h", "V2", {"headers": [("x-version", "V3")]}),
                          ("/h", "DEFAULT", {"headers": [("X-Version", "v1")]}),
                          ("/h", "DEFAULT", {})])


def test_route_with_more_matching_conditions_wins_whatever_the_file_order():
    def routes(bp):
        return [svc("NONE", bp, route("none", ["/c"])),
                svc("METHOD", bp, route("method", ["/c"], methods=["GET"])),
                svc("HOSTMETHOD", bp, route("hm", ["/c"], methods=["GET"], hosts=["c.example.com"])),
                svc("ALL", bp, route("all", ["/c"], methods=["GET"], hosts=["c.example.com"],
                                     headers={"x-tier": ["gold"]}))]
    cases = [("/c", "ALL", {"host": "c.example.com", "headers": [("X-Tier", "gold")]}),
             ("/c", "HOSTMETHOD", {"host": "c.example.com"}),
             ("/c", "METHOD", {"host": "other.example.com"}),
             ("/c", "NONE", {"host": "c.example.com", "method": "POST"}),
             ("/c", "NONE", {"method": "DELETE", "headers": [("X-Tier", "gold")]})]
    for reverse in (False, True):
        with gateway(lambda bp: base_config(bp, services=routes(bp)[::-1] if reverse
                                            else routes(bp))) as (w, b):
            expect_routes(w, cases)


def test_longer_prefix_beats_more_conditions():
    def config(bp):
        return base_config(bp, services=[
            svc("SHORT", bp, route("short", ["/p"], methods=["GET"], hosts=["p.example.com"])),
            svc("LONG", bp, route("long", ["/p/q"]))])
    with gateway(config) as (w, b):
        expect_routes(w, [("/p/q/1", "LONG", {"host": "p.example.com"}),
                          ("/p/x", "SHORT", {"host": "p.example.com"})])


def test_route_with_hosts_and_no_paths_matches_every_path_on_that_host():
    def config(bp):
        return base_config(bp, services=[svc("H", bp, route("h", None, hosts=["h.example.com"]))])
    with gateway(config) as (w, b):
        expect_routes(w, [("/", "H", {"host": "h.example.com"}),
                          ("/any/thing", "H", {"host": "h.example.com"}),
                          ("/any/thing", None, {"host": "x.example.com"})])


def test_no_match_is_404_with_json_message():
    def config(bp):
        return base_config(bp, services=[svc("ONLY", bp, route("only", ["/only"]))])
    with gateway(config) as (w, b):
        for method, path in (("GET", "/other"), ("POST", "/"), ("DELETE", "/onl")):
            with Conn(w.port) as c:
                r = c.request(method, path, body=b"x" if method == "POST" else b"")
            obj = assert_gateway_error(r, 404, NO_ROUTE_MESSAGE)
            assert_eq(sorted(obj), ["message", "request_id"], "keys of the 404 body", r)
            ctype = (r.header("content-type") or "").split(";")[0].strip()
            assert_eq(ctype, "application/json", "Content-Type of the 404", r)
            assert_eq(r.header("x-request-id"), obj["request_id"],
                      "X-Request-ID header vs request_id in the body", r)
        assert_eq(b.stats()["requests"], 0, "requests that reached the backend")


def test_routing_uses_the_normalised_path():
    def config(bp):
        return base_config(bp, services=[svc("SECRET", bp, route("s", ["/secret/"])),
                                         svc("PUBLIC", bp, route("p", ["/"]))])
    with gateway(config) as (w, b):
        expect_routes(w, [("/secret/x", "SECRET"), ("/%73ecret/x", "SECRET"),
                          ("/%73%65%63%72%65%74/x", "SECRET"), ("/public/../secret/x", "SECRET"),
                          ("/./secret/x", "SECRET"), ("/secret/../public", "PUBLIC")])


def test_top_level_routes_name_their_service():
    def config(bp):
        cfg = base_config(bp, services=[svc("A", bp), svc("B", bp)])
        cfg["routes"] = [{"name": "to-b", "paths": ["/b"], "service": "B"},
                         {"name": "to-a", "paths": ["/a"], "service": "A"}]
        return cfg
    with gateway(config) as (w, b):
        expect_routes(w, [("/a/1", "A"), ("/b/1", "B"), ("/c", None)])
