"""Bodies in both directions: fixed-length, chunked and close-delimited; HEAD, 204, 1xx,
Expect: 100-continue; 100 MB streamed each way with the gateway's memory bounded."""

import hashlib
import socket
import threading
import time

from harness import (BLOCK, BLOCK_SIZE, Conn, assert_eq, assert_gateway_error, assert_header,
                     assert_status, build_request, check, echo, gateway, generated_sha256,
                     parse_response, raw, route, service, timeout)

MB = 1024 * 1024
RSS_LIMIT_KB = 64 * 1024


def test_chunked_request_body_streams_to_the_upstream():
    with gateway() as (w, b):
        h = hashlib.sha256()
        pieces = []
        total = 0
        for i in range(200):
            size = (i * 7919) % 12000 + 1
            data = BLOCK[i:i + size]
            h.update(data)
            total += size
            pieces.append(b"%x\r\n" % size + data + b"\r\n")
        body = b"".join(pieces) + b"0\r\n\r\n"
        with Conn(w.port) as c:
            c.send(build_request("POST", "/chunked", headers=[("Transfer-Encoding", "chunked")]))
            for i in range(0, len(body), 50000):
                c.send(body[i:i + 50000])
                time.sleep(0.001)
            r = c.read_final()
        assert_status(r, 200)
        e = echo(r)
        assert_eq((e["body_bytes"], e["body_sha256"]), (total, h.hexdigest()), "body at the upstream")


def test_content_length_request_body_streams_to_the_upstream():
    with gateway() as (w, b):
        n = 5 * MB + 123
        with Conn(w.port) as c:
            c.send(build_request("PUT", "/put", headers=[("Content-Length", str(n))]))
            for i in range(n // BLOCK_SIZE):
                c.send(BLOCK)
            c.send(BLOCK[:n % BLOCK_SIZE])
            r = c.read_final(timeout=20)
        assert_status(r, 200)
        e = echo(r)
        assert_eq((e["method"], e["body_bytes"], e["body_sha256"]), ("PUT", n, generated_sha256(n)),
                  "method and body at the upstream")


def test_empty_bodies():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            e = echo(c.request("POST", "/", headers=[("Content-Length", "0")]))
            assert_eq(e["body_bytes"], 0, "POST with Content-Length: 0")
            c.send(build_request("POST", "/", headers=[("Transfer-Encoding", "chunked")], body=b"0\r\n\r\n"))
            e = echo(c.read_final())
            assert_eq(e["body_bytes"], 0, "POST with an empty chunked body")
            e = echo(c.request("GET", "/"))
            assert_eq(e["body_bytes"], 0, "GET")


def test_chunked_response_body_reaches_the_client():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            r = c.request("GET", "/?chunked=1&bytes=300001")
            assert_status(r, 200)
            check(r.complete, "incomplete chunked response", r)
            assert_eq(len(r.body), 300001, "body size")
            assert_eq(hashlib.sha256(r.body).hexdigest(), generated_sha256(300001), "body SHA-256")
            r = c.request("GET", "/?chunked=1")
            assert_eq(echo(r)["path"], "/", "a chunked JSON response on the same connection")


def test_content_length_response_body_reaches_the_client():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            r = c.request("GET", "/?bytes=3000000")
            assert_status(r, 200)
            assert_eq(len(r.body), 3000000, "body size")
            assert_eq(hashlib.sha256(r.body).hexdigest(), r.header("x-body-sha256"), "body SHA-256")


def test_close_delimited_response_reaches_the_client_complete():
    with gateway() as (w, b):
        data = raw(w.port, build_request("GET", "/?eof=1&bytes=200000", headers=[("Connection", "close")]),
                   timeout=5)
        r = parse_response(data)
        assert_status(r, 200)
        check(r.complete, "incomplete response", r)
        assert_eq(hashlib.sha256(r.body).hexdigest(), generated_sha256(200000), "body SHA-256")
        with Conn(w.port) as c:
            r = c.request("GET", "/eof?eof=1")
            assert_eq(echo(r)["path"], "/eof", "close-delimited JSON body")


def test_head_response_has_headers_but_no_body():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            r = c.request("HEAD", "/?bytes=5000")
            assert_status(r, 200)
            assert_header(r, "Content-Length", "5000")
            r = c.request("HEAD", "/?chunked=1")
            assert_status(r, 200, "HEAD of a chunked resource")
            r = c.request("GET", "/next")
            assert_eq(echo(r)["path"], "/next", "the request after two HEADs (no stray body bytes)")
            check(c.wait_closed(0.3) is False and not c.extra, "stray bytes after the responses: %r" % c.extra)


def test_204_and_304_have_no_body_and_the_connection_continues():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            assert_status(c.request("GET", "/?status=204"), 204)
            assert_status(c.request("GET", "/?status=304"), 304)
            assert_eq(echo(c.request("GET", "/after"))["path"], "/after", "the next request")


def test_non_200_statuses_pass_through():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            for status in (201, 301, 404, 418, 500, 503):
                r = c.request("GET", "/?status=%d" % status)
                assert_status(r, status)
                assert_eq(echo(r)["path"], "/", "body of the %d" % status)


def test_expect_100_continue_gets_100_then_the_final_response():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            c.send(b"POST /expect HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
                   b"Expect: 100-continue\r\n\r\n")
            first = c.read_response(timeout=3)
            assert_status(first, 100, "interim response before the body was sent")
            c.send(b"hello world")
            r = c.read_final(timeout=5)
            assert_status(r, 200)
            e = echo(r)
            assert_eq((e["path"], e["body"]), ("/expect", "hello world"), "what the upstream got")
            assert_eq(echo(c.request("GET", "/next"))["path"], "/next", "the next request")


def test_expect_100_continue_with_a_body_over_the_limit_gets_413_without_sending_it():
    with gateway(limits={"max_body_bytes": 100}) as (w, b):
        with Conn(w.port) as c:
            c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n")
            r = c.read_final(timeout=3)
            assert_gateway_error(r, 413)
        assert_eq(b.stats()["requests"], 0, "requests that reached the backend")


def test_103_early_hints_is_forwarded_before_the_final_response():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            r = c.request("GET", "/hints?early_hints=1")
            assert_eq([i.status for i in r.interim], [103], "interim responses", r)
            assert_eq(r.interim[0].header("link"), "</style.css>; rel=preload; as=style",
                      "Link of the 103")
            assert_status(r, 200)
            assert_eq(echo(r)["path"], "/hints", "final response")
            assert_eq(echo(c.request("GET", "/next"))["path"], "/next", "the next request")


class RssSampler(threading.Thread):
    """Samples weir's VmRSS every 20 ms until stopped; .peak_kb."""

    def __init__(self, w):
        super().__init__(daemon=True)
        self.w = w
        self.peak_kb = 0
        self.samples = 0
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            rss = self.w.rss_kb()
            if rss:
                self.peak_kb = max(self.peak_kb, rss)
                self.samples += 1
            self.halt.wait(0.02)

    def stop(self):
        self.halt.set()
        self.join(2)


def baseline_rss(w):
    with Conn(w.port) as c:       # warm up one request so pools and buffers exist
        assert_status(c.request("POST", "/warm", body=BLOCK), 200)
        assert_status(c.request("GET", "/warm?bytes=1000000"), 200)
    time.sleep(0.1)
    return w.rss_kb()


@timeout(90)
def test_100mb_request_body_streams_with_bounded_gateway_memory():
    n = 100 * MB
    with gateway(small_buffers=True, limits={"max_body_bytes": 200 * MB}) as (w, b):
        base = baseline_rss(w)
        sampler = RssSampler(w)
        sampler.start()
        try:
            c = Conn(w.port, timeout=60)
            # the backend waits 1.5 s before reading: the gateway must stop reading meanwhile
            c.send(build_request("POST", "/upload?read_delay_ms=1500",
                                 headers=[("Content-Length", str(n))]))
            for _ in range(n // BLOCK_SIZE):
                c.send(BLOCK)
            r = c.read_final(timeout=60)
            c.close()
        finally:
            sampler.stop()
        assert_status(r, 200)
        e = echo(r)
        assert_eq((e["body_bytes"], e["body_sha256"]), (n, generated_sha256(n)), "body at the upstream")
        grew = sampler.peak_kb - base
        check(sampler.samples > 10, "too few RSS samples")
        check(grew < RSS_LIMIT_KB, "weir's RSS grew by %d MB while streaming 100 MB up (baseline %d MB,"
              " peak %d MB; limit +64 MB)" % (grew // 1024, base // 1024, sampler.peak_kb // 1024))


@timeout(90)
def test_100mb_response_body_streams_with_bounded_gateway_memory():
    n = 100 * MB
    with gateway(small_buffers=True) as (w, b):
        base = baseline_rss(w)
        sampler = RssSampler(w)
        sampler.start()
        h = hashlib.sha256()
        state = {"n": 0, "paused": False}

        def sink(data):
            if not state["paused"]:
                state["paused"] = True
                time.sleep(1.5)   # a slow client: the gateway must stop reading from the backend
            state["n"] += len(data)
            h.update(data)
        try:
            c = Conn(w.port, timeout=60, rcvbuf=128 * 1024)
            c.send(build_request("GET", "/download?bytes=%d" % n))
            r = c.read_final(timeout=60, sink=sink)
            c.close()
        finally:
            sampler.stop()
        assert_status(r, 200)
        check(r.complete, "incomplete response", r)
        assert_eq((state["n"], h.hexdigest()), (n, generated_sha256(n)), "body the client received")
        grew = sampler.peak_kb - base
        check(sampler.samples > 10, "too few RSS samples")
        check(grew < RSS_LIMIT_KB, "weir's RSS grew by %d MB while streaming 100 MB down (baseline %d "
              "MB, peak %d MB; limit +64 MB)" % (grew // 1024, base // 1024, sampler.peak_kb // 1024))


def test_client_closing_mid_body_aborts_the_upstream_request():
    with gateway() as (w, b):
        with Conn(w.port) as c:
            c.send(build_request("POST", "/partial", headers=[("Content-Length", "100000")]) + b"x" * 1000)
            time.sleep(0.2)
        deadline = time.monotonic() + 3
        while b.stats()["open_connections"] > 1:      # 1: the stats connection itself
            check(time.monotonic() < deadline, "the upstream connection of an aborted request "
                  "stayed open (the backend still waits for the rest of the body)")
            time.sleep(0.05)
        check(w.alive(), "weir died")
        with Conn(w.port) as c:
            assert_eq(echo(c.request("GET", "/after"))["path"], "/after", "the next request")


def test_client_closing_while_waiting_for_the_response_leaves_the_gateway_healthy():
    with gateway() as (w, b):
        for i in range(5):
            with Conn(w.port) as c:
                c.send(build_request("GET", "/slow?delay_ms=300&bytes=2000000"))
                time.sleep(0.05 * i)
        time.sleep(0.6)
        check(w.alive(), "weir died")
        with Conn(w.port) as c:
            for i in range(3):
                assert_eq(echo(c.request("GET", "/after%d" % i))["path"], "/after%d" % i, "requests afterwards")


def test_client_that_half_closes_after_its_request_still_gets_the_response():
    # shutdown(SHUT_WR) after a complete request ends the client's sending side only (RFC 9112
    # 9.6): the response must still arrive, then the gateway closes.
    with gateway() as (w, b):
        s = socket.create_connection(("127.0.0.1", w.port), timeout=5)
        try:
            s.sendall(build_request("GET", "/half?bytes=300000"))
            s.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        r = parse_response(data)
        assert_status(r, 200)
        assert_eq(len(r.body), 300000, "body length after the client half-closed")


@timeout(30)
def test_client_that_stops_reading_is_cut_after_the_services_write_timeout():
    # A client that never reads would otherwise hold its connection and an upstream connection
    # forever; write_timeout bounds each wait to send it more, like nginx's send_timeout. (What
    # the client still receives afterwards is the kernel flushing the closed socket's buffer
    # through a tiny window, so the test watches the upstream side, which Weir must drop.)
    with gateway(make_config=base_config_with_write_timeout) as (w, b):
        s = socket.create_connection(("127.0.0.1", w.port), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            s.sendall(build_request("GET", "/stall?bytes=%d" % (200 * MB)))
            time.sleep(0.5)
            check(b.stats()["open_connections"] == 2, "the upstream request did not start")
            deadline = time.monotonic() + 4      # write_timeout is 1 s
            while b.stats()["open_connections"] > 1:       # 1: the stats connection itself
                check(time.monotonic() < deadline, "the upstream connection of a client that "
                      "stopped reading stayed open past write_timeout")
                time.sleep(0.05)
        finally:
            s.close()
        check(w.alive(), "weir died")
        with Conn(w.port) as c:
            assert_eq(echo(c.request("GET", "/after"))["path"], "/after", "the next request")


def base_config_with_write_timeout(port):
    from harness import base_config
    return base_config(port, services=[service("echo", port, write_timeout=1000,
                                               routes=[route("echo", ["/"])])])
