"""Connection reuse: keep-alive on the client side and to upstreams, pipelining, and what happens
when the upstream closes connections."""

import time

from harness import (Conn, assert_eq, assert_status, build_request, check, echo, gateway,
                     parse_responses, raw, timeout)


def test_client_keepalive_serves_several_requests_on_one_connection():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            for i in range(5):
                r = c.request("GET", "/k%d" % i)
                assert_status(r, 200, "request %d on the same connection" % i)
                assert_eq(echo(r)["path"], "/k%d" % i, "path of request %d" % i)
                check("close" not in (r.header("connection") or "").lower(),
                      "the gateway asked to close a keep-alive connection", r)
            r = c.request("POST", "/post", body=b"abc")
            assert_eq(echo(r)["body"], "abc", "body of a POST on the reused connection")


def test_http10_keepalive_is_honoured_and_plain_http10_is_closed():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            r = c.request("GET", "/a", headers=[("Connection", "keep-alive")], version="HTTP/1.0")
            assert_status(r, 200)
            r = c.request("GET", "/b", headers=[("Connection", "keep-alive")], version="HTTP/1.0")
            assert_status(r, 200, "second HTTP/1.0 keep-alive request")
        with Conn(w.port) as c:
            assert_status(c.request("GET", "/c", version="HTTP/1.0"), 200)
            check(c.wait_closed(2), "an HTTP/1.0 connection without keep-alive stayed open")


def test_connection_close_from_the_client_closes_after_the_response():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            r = c.request("GET", "/", headers=[("Connection", "close")])
            assert_status(r, 200)
            check(c.wait_closed(2), "the connection stayed open after Connection: close")


def test_upstream_connection_is_reused_for_sequential_requests():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            echoes = [echo(c.request("GET", "/u%d" % i)) for i in range(5)]
        assert_eq([e["conn_id"] for e in echoes], [echoes[0]["conn_id"]] * 5,
                  "backend connection ids over 5 sequential requests")
        assert_eq([e["conn_requests"] for e in echoes], [1, 2, 3, 4, 5],
                  "requests seen on that backend connection")


def test_upstream_connection_is_reused_across_client_connections():
    with gateway(workers=1) as (w, b):
        ids = []
        for i in range(4):
            with Conn(w.port) as c:
                ids.append(echo(c.request("GET", "/c%d" % i))["conn_id"])
            time.sleep(0.05)
        assert_eq(ids, [ids[0]] * 4, "backend connection ids over 4 client connections")
        assert_eq(b.stats()["connections"], 2, "connections the backend accepted (1 + this stats one)")


def test_pipelined_requests_are_answered_in_order():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            c.send(build_request("GET", "/p1?delay_ms=300") + build_request("GET", "/p2") +
                   build_request("POST", "/p3", body=b"third") + build_request("GET", "/p4?chunked=1"))
            paths = []
            for i in range(4):
                r = c.read_final(timeout=5)
                assert_status(r, 200, "pipelined response %d" % (i + 1))
                paths.append(echo(r)["path"])
            assert_eq(paths, ["/p1", "/p2", "/p3", "/p4"], "order of pipelined responses")
            r = c.request("GET", "/after")
            assert_eq(echo(r)["path"], "/after", "a request after the pipelined ones")


def test_pipelined_requests_split_across_packets():
    with gateway() as (w, b):
        data = build_request("GET", "/a") + build_request("POST", "/b", body=b"0123456789") + \
            build_request("GET", "/c", headers=[("Connection", "close")])
        pieces = [data[i:i + 7] for i in range(0, len(data), 7)]
        out = raw(w.port, pieces, timeout=5, pause=0.002)
        rs = parse_responses(out)
        assert_eq([r.status for r in rs], [200, 200, 200], "statuses", str(rs))
        assert_eq([echo(r)["path"] for r in rs], ["/a", "/b", "/c"], "order")
        assert_eq(echo(rs[1])["body"], "0123456789", "body of the second request")


def test_upstream_connection_close_is_not_reused():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            first = echo(c.request("GET", "/?close=1"))
            second = echo(c.request("GET", "/"))
            third = echo(c.request("GET", "/"))
        check(first["conn_id"] != second["conn_id"],
              "a backend connection that said Connection: close was reused")
        assert_eq(third["conn_id"], second["conn_id"], "the new backend connection is then reused")


def test_get_succeeds_when_the_pooled_upstream_connection_was_closed_by_the_backend():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            for i in range(5):
                r = c.request("GET", "/?drop=1")
                assert_status(r, 200, "request %d (the backend then drops the connection)" % i)
        for i in range(5):
            with Conn(w.port) as c:
                assert_status(c.request("GET", "/?drop=1"), 200, "new client connection %d" % i)


@timeout(30)
def test_idle_upstream_connections_are_closed_before_five_seconds():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            assert_status(c.request("GET", "/"), 200)
        done = time.monotonic()
        while True:
            open_conns = b.stats()["open_connections"] - 1   # minus the stats connection itself
            if open_conns == 0:
                break
            check(time.monotonic() - done < 4.9,
                  "an idle upstream keep-alive connection was still open %.1fs after its last "
                  "response (the default idle timeout should be below Node's 5s)" % (time.monotonic() - done))
            time.sleep(0.2)


def test_keepalive_timeout_zero_closes_after_each_response():
    with gateway(limits={"keepalive_timeout": 0}) as (w, b):
        with Conn(w.port) as c:
            r = c.request("GET", "/proxied")
            assert_status(r, 200)
            check("close" in (r.header("connection") or "").lower(),
                  "no Connection: close with keepalive_timeout 0", r)
            check(c.wait_closed(2), "the connection stayed open with keepalive_timeout 0")
