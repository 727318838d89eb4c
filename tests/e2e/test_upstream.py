"""Upstream failures (502, 504, responses cut short), retries, and balancing over targets."""

import collections
import socket
import time

from harness import (Conn, assert_eq, assert_gateway_error, assert_status, base_config,
                     build_request, check, describe, echo, free_port, gateway, parse_response,
                     raw, route, service)


def upstream_config(name, targets, retries=None, **service_fields):
    """A config whose only service balances over `targets` [(host:port, weight)]."""
    def make(*backend_ports):
        fields = dict(service_fields)
        if retries is not None:
            fields["retries"] = retries
        cfg = base_config(None, services=[service("pool-svc", url="http://%s" % name,
                                                  routes=[route("all", ["/"])], **fields)])
        cfg["upstreams"] = [{"name": name, "targets": [{"target": t, "weight": wt}
                                                       for t, wt in targets(*backend_ports)]}]
        return cfg
    return make


def test_connection_refused_is_502():
    dead = free_port()
    def config(bp):
        return base_config(bp, services=[service("dead", dead, routes=[route("d", ["/"])],
                                                 retries=0)])
    with gateway(config) as (w, b):
        start = time.monotonic()
        with Conn(w.port) as c:
            r = c.request("GET", "/")
            assert_gateway_error(r, 502)
            check(time.monotonic() - start < 3, "the 502 took too long")
            r = c.request("GET", "/again")
            assert_gateway_error(r, 502)


def test_connect_timeout_is_honoured():
    # A listener whose accept queue is full drops new SYNs: connecting to it hangs. The issue
    # says "connect failure or refusal -> 502"; nginx and Kong answer a connect *timeout* with
    # 504, so either gateway status is accepted here - what is checked is that connect_timeout
    # bounds the wait and the client gets a gateway error.
    blackhole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    port = blackhole.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(0.3)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                pass
            fillers.append(s)
        def config(bp):
            return base_config(bp, services=[service("bh", port, routes=[route("r", ["/"])],
                                                     connect_timeout=300, retries=0)])
        with gateway(config) as (w, b):
            start = time.monotonic()
            with Conn(w.port) as c:
                r = c.request("GET", "/", timeout=8)
            took = time.monotonic() - start
            assert_status(r, (502, 504))
            assert_gateway_error(r, r.status)
            check(0.2 <= took <= 2.0, "the error came after %.2fs; connect_timeout is 0.3s" % took)
    finally:
        for s in fillers:
            s.close()
        blackhole.close()


def test_no_response_head_within_read_timeout_is_504():
    def config(bp):
        return base_config(bp, services=[service("slow", bp, routes=[route("s", ["/"])],
                                                 read_timeout=500, retries=0)])
    with gateway(config) as (w, b):
        start = time.monotonic()
        with Conn(w.port) as c:
            r = c.request("GET", "/?delay_ms=3000", timeout=5)
        took = time.monotonic() - start
        assert_gateway_error(r, 504)
        check(0.4 <= took <= 2.5, "the 504 came after %.2fs; read_timeout is 0.5s" % took)
        with Conn(w.port) as c:
            assert_status(c.request("GET", "/?delay_ms=100"), 200, "a response within read_timeout")


def test_upstream_closing_without_a_response_is_502():
    def config(bp):
        return base_config(bp, services=[service("s", bp, routes=[route("s", ["/"])], retries=0)])
    with gateway(config) as (w, b):
        with Conn(w.port) as c:
            assert_gateway_error(c.request("GET", "/?no_response=1"), 502)


def test_response_cut_short_closes_the_client_connection():
    with gateway() as (w, b):
        for query in ("cut=1", "cut=1&bytes=300000", "cut=1&chunked=1", "cut=1&chunked=1&bytes=300000"):
            data = raw(w.port, build_request("GET", "/?" + query) + build_request("GET", "/second"),
                       timeout=4)
            r = parse_response(data)
            check(data.closed, "?%s: the client connection should be closed" % query)
            if r is not None and r.status == 502:
                assert_gateway_error(r, 502)    # cut before the head went out: fine too
            else:
                check(r is None or not r.complete, "?%s: the client got a truncated response that "
                      "looks whole:\n%s" % (query, describe(r)))
            check(b"/second" not in data, "?%s: the connection went on to serve another request" % query)


def test_get_is_retried_on_another_target_when_connect_fails():
    dead = free_port()
    make = upstream_config("pool", lambda bp: [("127.0.0.1:%d" % dead, 100), ("127.0.0.1:%d" % bp, 100)],
                           retries=2)
    with gateway(make) as (w, b):
        for i in range(10):
            with Conn(w.port) as c:
                r = c.request("GET", "/g%d" % i)
            assert_status(r, 200, "GET %d" % i)
            assert_eq(echo(r)["path"], "/g%d" % i, "path")


def test_post_is_retried_when_nothing_was_sent_upstream():
    dead = free_port()
    make = upstream_config("pool", lambda bp: [("127.0.0.1:%d" % dead, 100), ("127.0.0.1:%d" % bp, 100)],
                           retries=2)
    with gateway(make) as (w, b):
        for i in range(10):
            body = b"post body %d" % i
            with Conn(w.port) as c:
                r = c.request("POST", "/p", body=body)
            assert_status(r, 200, "POST %d" % i)
            assert_eq(echo(r)["body"], body.decode(), "body at the upstream")


def test_retries_zero_does_not_retry():
    dead = free_port()
    make = upstream_config("pool", lambda bp: [("127.0.0.1:%d" % dead, 100), ("127.0.0.1:%d" % bp, 100)],
                           retries=0)
    with gateway(make) as (w, b):
        statuses = []
        for i in range(6):
            with Conn(w.port) as c:
                statuses.append(c.request("GET", "/").status)
        check(502 in statuses and 200 in statuses,
              "with retries 0 and one dead target of two, expected some 502s and some 200s, got %r"
              % statuses)


def test_post_is_not_retried_once_sent():
    make = upstream_config("pool", lambda p1, p2: [("127.0.0.1:%d" % p1, 100), ("127.0.0.1:%d" % p2, 100)],
                           retries=3)
    with gateway(make, backends=2) as (w, (b1, b2)):
        with Conn(w.port) as c:
            r = c.request("POST", "/?no_response=1", body=b"charge the card once")
        assert_gateway_error(r, 502)
        time.sleep(0.2)
        seen = b1.stats()["requests"] + b2.stats()["requests"]
        assert_eq(seen, 1, "times the POST reached a backend")


def test_all_targets_down_is_502():
    d1, d2 = free_port(), free_port()
    make = upstream_config("pool", lambda bp: [("127.0.0.1:%d" % d1, 10), ("127.0.0.1:%d" % d2, 10)],
                           retries=5)
    with gateway(make) as (w, b):
        start = time.monotonic()
        with Conn(w.port) as c:
            assert_gateway_error(c.request("GET", "/", timeout=8), 502)
        check(time.monotonic() - start < 5, "took too long")


def test_weighted_round_robin_splits_exactly_by_weight():
    make = upstream_config("users-pool", lambda p1, p2: [("127.0.0.1:%d" % p1, 100),
                                                         ("127.0.0.1:%d" % p2, 50)])
    with gateway(make, backends=2) as (w, (b1, b2)):
        order = []
        for i in range(30):
            with Conn(w.port) as c:
                order.append(echo(c.request("GET", "/"))["backend"])
        counts = collections.Counter(order)
        assert_eq((counts[b1.addr], counts[b2.addr]), (20, 10), "requests per target (weights 100/50)")
        for i in range(len(order) - 1):
            check(not (order[i] == order[i + 1] == b2.addr),
                  "smooth weighted round-robin never sends the weight-50 target twice in a row: %r" % order)
        for i in range(len(order) - 2):
            check(not (order[i] == order[i + 1] == order[i + 2]),
                  "smooth weighted round-robin never sends three in a row to one target: %r" % order)


def test_balancing_over_keepalive_client_connection():
    make = upstream_config("pool", lambda p1, p2: [("127.0.0.1:%d" % p1, 1), ("127.0.0.1:%d" % p2, 1)])
    with gateway(make, backends=2) as (w, (b1, b2)):
        with Conn(w.port) as c:
            seen = [echo(c.request("GET", "/"))["backend"] for _ in range(6)]
        assert_eq(collections.Counter(seen), collections.Counter({b1.addr: 3, b2.addr: 3}),
                  "requests per target over one client connection")


def test_service_on_an_upstream_sends_the_upstream_name_as_host():
    make = upstream_config("users-pool", lambda bp: [("127.0.0.1:%d" % bp, 100)])
    with gateway(make) as (w, b):
        with Conn(w.port) as c:
            r = c.request("GET", "/", host="client.example")
        assert_eq(echo(r).headers_named("host"), ["users-pool"], "Host at the upstream")
