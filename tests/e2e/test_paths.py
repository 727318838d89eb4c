"""The upstream request line and Host: strip_path, joining with the service path, the query
string, preserve_host, and path normalisation."""

from harness import (Conn, assert_eq, assert_gateway_error, assert_status, base_config, echo,
                     gateway, route, service)


def upstream_request(w, target, host="example.test", method="GET"):
    """(path, query) the backend received for `target`."""
    with Conn(w.port) as c:
        r = c.request(method, target, host=host)
    assert_status(r, 200, "status of %s" % target)
    e = echo(r)
    return e["path"], e["query"]


def test_strip_path_joins_the_service_path_with_exactly_one_slash():
    def config(bp):
        return base_config(bp, services=[
            service("s1", bp, path="/v1", routes=[route("a", ["/a"], strip_path=True)]),
            service("s2", bp, path="/v1/", routes=[route("b", ["/b"], strip_path=True)]),
            service("s3", bp, routes=[route("c", ["/c"], strip_path=True)]),
            service("s4", bp, path="/v1", routes=[route("d", ["/d/"], strip_path=True)]),
            service("s5", bp, path="/v1", routes=[route("e", ["/e"], strip_path=False)]),
            service("s6", bp, routes=[route("f", ["/f"], strip_path=False)]),
        ])
    cases = [("/a/7", "/v1/7"), ("/a", "/v1"), ("/a/7/8", "/v1/7/8"), ("/ax", "/v1/x"),
             ("/b/7", "/v1/7"), ("/b", "/v1/"),
             ("/c/7", "/7"), ("/c", "/"),
             ("/d/7", "/v1/7"),
             ("/e/7", "/v1/e/7"), ("/e", "/v1/e"),
             ("/f/7", "/f/7")]
    with gateway(config) as (w, b):
        for target, expected in cases:
            assert_eq(upstream_request(w, target)[0], expected, "upstream path for %s" % target)


def test_strip_path_defaults_to_true():
    def config(bp):
        return base_config(bp, services=[service("s", bp, path="/v1",
                                                 routes=[route("a", ["/api/orders"])])])
    with gateway(config) as (w, b):
        assert_eq(upstream_request(w, "/api/orders/7")[0], "/v1/7", "upstream path")


def test_query_string_passes_unchanged():
    def config(bp):
        return base_config(bp, services=[service("s", bp, path="/v1",
                                                 routes=[route("a", ["/api"], strip_path=True)])])
    queries = ["b=2&a=1&a=%20x&empty=&flag", "x=../y&z=%2F%2f", "q=a+b&r=%E2%82%AC", "=&&=", "a=1?b=2"]
    with gateway(config) as (w, b):
        for q in queries:
            path, query = upstream_request(w, "/api/list?" + q)
            assert_eq((path, query), ("/v1/list", q), "upstream path and query for ?%s" % q)
        assert_eq(upstream_request(w, "/api/./x/../list?k=./v")[1], "k=./v",
                  "query of a normalised path")


def test_preserve_host_false_sends_the_upstream_host_and_port():
    def config(bp):
        return base_config(bp, services=[service("s", bp, routes=[route("a", ["/"], preserve_host=False)])])
    with gateway(config) as (w, b):
        with Conn(w.port) as c:
            r = c.request("GET", "/", host="Api.Example.com:8443")
        e = echo(r)
        assert_eq(e.headers_named("host"), ["127.0.0.1:%d" % b.port], "Host at the upstream")


def test_preserve_host_defaults_to_false():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            r = c.request("GET", "/", host="client.example.com")
        assert_eq(echo(r).headers_named("host"), ["127.0.0.1:%d" % b.port], "Host at the upstream")


def test_preserve_host_true_keeps_the_client_host():
    def config(bp):
        return base_config(bp, services=[service("s", bp, routes=[route("a", ["/"], preserve_host=True)])])
    with gateway(config) as (w, b):
        for host in ("Api.Example.com:8443", "api.example.com"):
            with Conn(w.port) as c:
                r = c.request("GET", "/", host=host)
            assert_eq(echo(r).headers_named("host"), [host], "Host at the upstream")


def test_percent_escapes_of_unreserved_characters_are_decoded():
    with gateway() as (w, b):
        cases = [("/n/%61%62%2D%2E%5F%7E", "/n/ab-._~"), ("/n/%41%5a%30%39", "/n/AZ09"),
                 ("/n/a%2Fb", "/n/a%2Fb"), ("/n/a%3Fb%23c", "/n/a%3Fb%23c"),
                 ("/n/%25", "/n/%25"), ("/n/%E2%82%AC", "/n/%E2%82%AC")]
        for target, expected in cases:
            assert_eq(upstream_request(w, target)[0], expected, "upstream path for %s" % target)


def test_dot_segments_are_resolved():
    with gateway() as (w, b):
        cases = [("/n/a/./b/../c", "/n/a/c"), ("/n/a/b/../../c", "/n/c"), ("/n/./a", "/n/a"),
                 ("/n/a/..", "/n/"), ("/n/a/.", "/n/a/"), ("/..a/.b/c..", "/..a/.b/c.."),
                 ("/n//a", "/n//a")]
        for target, expected in cases:
            assert_eq(upstream_request(w, target)[0], expected, "upstream path for %s" % target)


def test_percent_encoded_dot_segments_are_resolved_too():
    with gateway() as (w, b):
        cases = [("/n/a/%2E%2E/c", "/n/c"), ("/n/a/%2e/c", "/n/a/c"), ("/n/a/.%2E/c", "/n/c")]
        for target, expected in cases:
            assert_eq(upstream_request(w, target)[0], expected, "upstream path for %s" % target)


def test_path_climbing_above_root_is_400():
    with gateway() as (w, b):
        for target in ("/..", "/../x", "/a/../../x", "/a/b/../../../x", "/%2E%2E/x", "/a/%2e%2e/%2e%2e/x"):
            with Conn(w.port) as c:
                r = c.request("GET", target)
            assert_gateway_error(r, 400)
        assert_eq(b.stats()["requests"], 0, "requests that reached the backend")


def test_strip_path_uses_the_normalised_path():
    def config(bp):
        return base_config(bp, services=[service("s", bp, path="/v1",
                                                 routes=[route("a", ["/api/"], strip_path=True)])])
    with gateway(config) as (w, b):
        assert_eq(upstream_request(w, "/%61pi/x/./y")[0], "/v1/x/y", "upstream path")
        assert_eq(upstream_request(w, "/other/../api/z")[0], "/v1/z", "upstream path")


def test_service_given_as_protocol_host_port_path_fields():
    def config(bp):
        return base_config(bp, services=[{"name": "kong-style", "protocol": "http", "host": "127.0.0.1",
                                          "port": bp, "path": "/v1",
                                          "routes": [route("k", ["/k"], strip_path=True)]}])
    with gateway(config) as (w, b):
        with Conn(w.port) as c:
            r = c.request("GET", "/k/7")
        assert_status(r, 200)
        e = echo(r)
        assert_eq((e["path"], e.headers_named("host")), ("/v1/7", ["127.0.0.1:%d" % b.port]),
                  "upstream path and Host")
