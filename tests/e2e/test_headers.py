"""Headers the gateway adds, keeps, replaces or removes, in both directions."""

from harness import (UUID_RE, Conn, assert_eq, assert_header, assert_no_header, assert_status,
                     base_config, check, echo, gateway, route, service)

TRUSTED = ["127.0.0.1/32"]
HOP_BY_HOP = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
              "upgrade"]


def send(w, headers=(), path="/", host="example.test", method="GET", body=b""):
    with Conn(w.port) as c:
        r = c.request(method, path, headers=list(headers), host=host, body=body)
    assert_status(r, 200)
    return r, echo(r)


def test_x_forwarded_for_is_appended_for_a_trusted_peer():
    with gateway(trusted_ips=TRUSTED) as (w, b):
        _, e = send(w, [("X-Forwarded-For", "203.0.113.7")])
        assert_eq(e.headers_named("x-forwarded-for"), ["203.0.113.7, 127.0.0.1"], "X-Forwarded-For")
        _, e = send(w, [("X-Forwarded-For", "198.51.100.1, 203.0.113.7")])
        assert_eq(e.headers_named("x-forwarded-for"), ["198.51.100.1, 203.0.113.7, 127.0.0.1"],
                  "X-Forwarded-For")


def test_x_forwarded_for_is_replaced_for_an_untrusted_peer():
    with gateway(trusted_ips=[]) as (w, b):
        _, e = send(w, [("X-Forwarded-For", "203.0.113.7")])
        assert_eq(e.headers_named("x-forwarded-for"), ["127.0.0.1"], "X-Forwarded-For")
        _, e = send(w, [("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2")])
        assert_eq(e.headers_named("x-forwarded-for"), ["127.0.0.1"], "X-Forwarded-For")


def test_x_forwarded_for_is_set_when_the_client_sent_none():
    for trusted in (TRUSTED, []):
        with gateway(trusted_ips=trusted) as (w, b):
            _, e = send(w)
            assert_eq(e.headers_named("x-forwarded-for"), ["127.0.0.1"],
                      "X-Forwarded-For (trusted_ips %s)" % trusted)


def test_x_real_ip_is_the_rightmost_untrusted_address_for_a_trusted_peer():
    with gateway(trusted_ips=TRUSTED) as (w, b):
        _, e = send(w, [("X-Forwarded-For", "198.51.100.1, 203.0.113.7")])
        assert_eq(e.headers_named("x-real-ip"), ["203.0.113.7"], "X-Real-IP")
        _, e = send(w, [("X-Forwarded-For", "198.51.100.1, 127.0.0.1")])
        assert_eq(e.headers_named("x-real-ip"), ["198.51.100.1"], "X-Real-IP (trusted hop skipped)")
        _, e = send(w)
        assert_eq(e.headers_named("x-real-ip"), ["127.0.0.1"], "X-Real-IP without X-Forwarded-For")


def test_x_real_ip_is_the_peer_for_an_untrusted_peer():
    with gateway(trusted_ips=[]) as (w, b):
        _, e = send(w, [("X-Forwarded-For", "203.0.113.7"), ("X-Real-IP", "203.0.113.9")])
        assert_eq(e.headers_named("x-real-ip"), ["127.0.0.1"], "X-Real-IP")


def test_x_forwarded_proto_host_port_are_set_for_an_untrusted_peer():
    with gateway(trusted_ips=[]) as (w, b):
        _, e = send(w, [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.example"),
                        ("X-Forwarded-Port", "1")], host="api.example.com")
        assert_eq(e.headers_named("x-forwarded-proto"), ["http"], "X-Forwarded-Proto")
        assert_eq(e.headers_named("x-forwarded-host"), ["api.example.com"], "X-Forwarded-Host")
        assert_eq(e.headers_named("x-forwarded-port"), [str(w.port)], "X-Forwarded-Port")
        _, e = send(w, host="plain.example.com")
        assert_eq(e.headers_named("x-forwarded-proto"), ["http"], "X-Forwarded-Proto")
        assert_eq(e.headers_named("x-forwarded-host"), ["plain.example.com"], "X-Forwarded-Host")
        assert_eq(e.headers_named("x-forwarded-port"), [str(w.port)], "X-Forwarded-Port")


def test_x_forwarded_proto_host_port_are_kept_from_a_trusted_peer():
    with gateway(trusted_ips=TRUSTED) as (w, b):
        _, e = send(w, [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "public.example.com"),
                        ("X-Forwarded-Port", "443")], host="internal.example")
        assert_eq(e.headers_named("x-forwarded-proto"), ["https"], "X-Forwarded-Proto")
        assert_eq(e.headers_named("x-forwarded-host"), ["public.example.com"], "X-Forwarded-Host")
        assert_eq(e.headers_named("x-forwarded-port"), ["443"], "X-Forwarded-Port")
        _, e = send(w, host="internal.example")
        assert_eq(e.headers_named("x-forwarded-proto"), ["http"], "X-Forwarded-Proto set when absent")
        assert_eq(e.headers_named("x-forwarded-host"), ["internal.example"], "X-Forwarded-Host")
        assert_eq(e.headers_named("x-forwarded-port"), [str(w.port)], "X-Forwarded-Port")


def test_x_forwarded_prefix_is_the_stripped_prefix():
    def config(bp):
        return base_config(bp, services=[service("s", bp, path="/v1", routes=[
            route("a", ["/api/orders"], strip_path=True)])])
    with gateway(config) as (w, b):
        _, e = send(w, path="/api/orders/7")
        assert_eq(e["path"], "/v1/7", "upstream path")
        assert_eq(e.headers_named("x-forwarded-prefix"), ["/api/orders"], "X-Forwarded-Prefix")


def test_valid_x_request_id_is_kept_and_returned():
    with gateway() as (w, b):
        for rid in ("Abc-123._:xyz", "a", "x" * 128, "0f8fad5b-d9cb-469f-a165-70867728950e"):
            r, e = send(w, [("X-Request-ID", rid)])
            assert_eq(e.headers_named("x-request-id"), [rid], "X-Request-ID at the upstream")
            assert_header(r, "X-Request-ID", rid)


def test_invalid_x_request_id_is_replaced_by_a_uuid():
    with gateway() as (w, b):
        for rid in ("bad id", "a/b", "x" * 129, "semi;colon", "quote\"d", "caf\xe9"):
            r, e = send(w, [("X-Request-ID", rid)])
            sent = e.headers_named("x-request-id")
            check(len(sent) == 1 and UUID_RE.match(sent[0]),
                  "X-Request-ID %r should be replaced by a UUID at the upstream, got %r" % (rid, sent))
            assert_header(r, "X-Request-ID", sent[0])


def test_x_request_id_is_generated_and_returned_when_absent():
    with gateway() as (w, b):
        seen = set()
        for _ in range(3):
            r, e = send(w)
            sent = e.headers_named("x-request-id")
            check(len(sent) == 1 and UUID_RE.match(sent[0]),
                  "expected one generated UUID X-Request-ID at the upstream, got %r" % sent)
            assert_header(r, "X-Request-ID", sent[0])
            seen.add(sent[0])
        assert_eq(len(seen), 3, "distinct generated request ids")


def test_via_is_added_towards_the_upstream():
    with gateway() as (w, b):
        _, e = send(w)
        assert_eq(e.headers_named("via"), ["1.1 weir"], "Via at the upstream")


def test_hop_by_hop_request_headers_are_removed():
    with gateway() as (w, b):
        _, e = send(w, [("Connection", "keep-alive, X-Custom-Hop"), ("X-Custom-Hop", "secret"),
                        ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "keep-alive"),
                        ("TE", "trailers"), ("Trailer", "X-Checksum"), ("Upgrade", "h2c"),
                        ("X-Normal", "kept")])
        names = e.header_names()
        for name in ["x-custom-hop", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"]:
            check(name not in names, "hop-by-hop header %s reached the upstream: %r" % (name, e["headers"]))
        for v in e.headers_named("connection"):
            check("x-custom-hop" not in v.lower(), "Connection at the upstream names X-Custom-Hop: %r" % v)
        assert_eq(e.headers_named("x-normal"), ["kept"], "end-to-end header X-Normal")


def test_connection_named_headers_are_removed_case_insensitively():
    with gateway() as (w, b):
        _, e = send(w, [("Connection", "X-A,  x-b ,X-C"), ("x-a", "1"), ("X-B", "2"), ("x-C", "3"),
                        ("X-D", "4")])
        names = e.header_names()
        for name in ("x-a", "x-b", "x-c"):
            check(name not in names, "Connection-named header %s reached the upstream: %r" % (name, e["headers"]))
        assert_eq(e.headers_named("x-d"), ["4"], "X-D")


def test_hop_by_hop_response_headers_are_removed():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            r = c.request("GET", "/?hop=1")
        assert_status(r, 200)
        for name in ["x-resp-hop", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"]:
            assert_no_header(r, name)
        for v in r.headers_named("connection"):
            check("x-resp-hop" not in v.lower(), "Connection to the client names X-Resp-Hop: %r" % v, r)
        assert_header(r, "X-Resp-Normal", "1")
        echo(r)


def test_end_to_end_headers_pass_in_order_both_ways():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            r = c.request("GET", "/?header_name=X-Resp&header_value=a%20b&header_name=Set-Cookie"
                                 "&header_value=k%3Dv&header_name=Set-Cookie&header_value=k2%3Dv2",
                          headers=[("X-A", "1"), ("X-B", "two words"), ("X-A", "3"),
                                   ("Cookie", "c=1"), ("User-Agent", "e2e/1.0")])
        assert_status(r, 200)
        e = echo(r)
        assert_eq(e.headers_named("x-a"), ["1", "3"], "repeated X-A at the upstream, in order")
        assert_eq(e.headers_named("x-b"), ["two words"], "X-B")
        assert_eq(e.headers_named("cookie"), ["c=1"], "Cookie")
        assert_eq(e.headers_named("user-agent"), ["e2e/1.0"], "User-Agent")
        assert_header(r, "X-Resp", "a b")
        assert_eq(r.headers_named("set-cookie"), ["k=v", "k2=v2"], "Set-Cookie lines to the client", r)
