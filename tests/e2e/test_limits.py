"""Limits: head size and field count (431), body size (413), head timeout (408, slowloris),
max_connections, the idle keep-alive timeout."""

import select
import socket
import time

from harness import (Conn, assert_eq, assert_gateway_error, assert_raw_gateway_error,
                     assert_status, build_request, check, echo, gateway, parse_response, raw,
                     timeout)


def test_head_larger_than_max_header_bytes_is_431():
    with gateway(limits={"max_header_bytes": 2048}) as (w, b):
        with Conn(w.port) as c:
            assert_status(c.request("GET", "/", headers=[("X-Big", "a" * 1200)]), 200,
                          "a head under the limit")
        data = raw(w.port, build_request("GET", "/", headers=[("X-Big", "a" * 4000)]))
        assert_raw_gateway_error(data, 431)
        data = raw(w.port, build_request("GET", "/", headers=[("X-%d" % i, "v" * 100) for i in range(40)]))
        assert_raw_gateway_error(data, 431)
        assert_eq(b.stats()["requests"], 1, "requests that reached the backend")


def test_head_larger_than_max_header_bytes_is_431_even_without_the_final_blank_line():
    with gateway(limits={"max_header_bytes": 2048}) as (w, b):
        data = raw(w.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000, timeout=3)
        assert_raw_gateway_error(data, 431)


def test_more_than_max_headers_is_431():
    with gateway(limits={"max_headers": 10}) as (w, b):
        with Conn(w.port) as c:
            assert_status(c.request("GET", "/", headers=[("X-%d" % i, "v") for i in range(8)]), 200,
                          "9 fields (Host + 8)")
        data = raw(w.port, build_request("GET", "/", headers=[("X-%d" % i, "v") for i in range(20)]))
        assert_raw_gateway_error(data, 431)
        assert_eq(b.stats()["requests"], 1, "requests that reached the backend")


def test_content_length_body_over_max_body_bytes_is_413():
    with gateway(limits={"max_body_bytes": 1000}) as (w, b):
        with Conn(w.port) as c:
            r = c.request("POST", "/", body=b"x" * 1000)
        assert_status(r, 200, "a body of exactly max_body_bytes")
        assert_eq(echo(r)["body_bytes"], 1000, "body size at the upstream")
        data = raw(w.port, build_request("POST", "/", body=b"x" * 2000))
        assert_raw_gateway_error(data, 413)
        assert_eq(b.stats()["requests"], 1, "requests that reached the backend")


def test_chunked_body_over_max_body_bytes_is_413():
    with gateway(limits={"max_body_bytes": 1000}) as (w, b):
        chunks = b"".join(b"190\r\n" + b"y" * 400 + b"\r\n" for _ in range(5)) + b"0\r\n\r\n"
        data = raw(w.port, build_request("POST", "/", headers=[("Transfer-Encoding", "chunked")],
                                         body=chunks))
        assert_raw_gateway_error(data, 413)
        check(b"conn_id" not in data, "the backend answered a request whose body was too large")
        ok = b"".join(b"64\r\n" + b"z" * 100 + b"\r\n" for _ in range(10)) + b"0\r\n\r\n"
        with Conn(w.port) as c:
            c.send(build_request("POST", "/", headers=[("Transfer-Encoding", "chunked")], body=ok))
            r = c.read_final()
        assert_status(r, 200, "a chunked body of exactly max_body_bytes")
        assert_eq(echo(r)["body_bytes"], 1000, "body size at the upstream")


def test_incomplete_head_gets_408_after_header_timeout_then_close():
    with gateway(limits={"header_timeout": 1000}) as (w, b):
        start = time.monotonic()
        data = raw(w.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Partial: ", timeout=4)
        took = time.monotonic() - start
        assert_raw_gateway_error(data, 408, closed=True)
        check(0.8 <= took <= 3.0, "the 408 came after %.2fs; header_timeout is 1.0s" % took)


def test_slowloris_drip_does_not_extend_header_timeout():
    with gateway(limits={"header_timeout": 1000}) as (w, b):
        s = socket.create_connection(("127.0.0.1", w.port), timeout=5)
        try:
            start = time.monotonic()
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            got = bytearray()
            closed = False
            i = 0
            while time.monotonic() - start < 5:
                r, _, _ = select.select([s], [], [], 0.15)
                if r:
                    try:
                        d = s.recv(65536)
                    except ConnectionResetError:
                        d = b""
                    if not d:
                        closed = True
                        break
                    got += d
                    continue
                try:
                    s.sendall(b"X-Drip-%d: v\r\n" % i)
                    i += 1
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
            took = time.monotonic() - start
        finally:
            s.close()
        r = parse_response(bytes(got))
        assert_gateway_error(r, 408)
        check(closed, "the connection should be closed after the 408")
        check(took <= 2.5, "a client dripping header lines kept the head open for %.2fs "
              "(header_timeout 1.0s)" % took)


@timeout(40)
def test_new_connections_beyond_max_connections_are_closed_at_once():
    with gateway(limits={"max_connections": 2}) as (w, b):
        time.sleep(0.3)         # let the readiness probe's connection go
        c1, c2 = Conn(w.port), Conn(w.port)
        try:
            assert_status(c1.request("GET", "/"), 200, "first connection")
            assert_status(c2.request("GET", "/"), 200, "second connection")
            s = socket.create_connection(("127.0.0.1", w.port), timeout=3)
            try:
                s.sendall(build_request("GET", "/third"))
            except (BrokenPipeError, ConnectionResetError):
                pass
            start = time.monotonic()
            got = b""
            try:
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    got += d
            except ConnectionResetError:
                pass
            except socket.timeout:
                raise AssertionError("a connection beyond max_connections was kept open for 3s")
            finally:
                s.close()
            check(time.monotonic() - start < 1.0, "the extra connection was not closed at once")
            check(b"conn_id" not in got and b"/third" not in got,
                  "a connection beyond max_connections was served: %r" % got[:300])
            assert_status(c1.request("GET", "/"), 200, "first connection still works")
        finally:
            c1.close()
            c2.close()
        # the limit is released when connections close
        def fourth():
            try:
                with Conn(w.port, timeout=2) as c:
                    return c.request("GET", "/").status == 200
            except (AssertionError, OSError):
                return False
        deadline = time.monotonic() + 3
        while not fourth():
            check(time.monotonic() < deadline, "no new connection served after others closed")
            time.sleep(0.1)


def test_idle_keepalive_connection_is_closed_after_keepalive_timeout():
    with gateway(limits={"keepalive_timeout": 1000}) as (w, b):
        with Conn(w.port) as c:
            assert_status(c.request("GET", "/"), 200)
            check(not c.wait_closed(0.4), "the keep-alive connection closed long before keepalive_timeout")
            start = time.monotonic()
            check(c.wait_closed(3.0), "an idle keep-alive connection was still open 3s after keepalive_timeout (1s)")
            check(time.monotonic() - start < 2.0, "closed late")
