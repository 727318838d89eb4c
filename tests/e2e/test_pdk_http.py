"""weir.http.request: outbound HTTP/1.1 from plugins on the worker's event loop. Plugins call the
echo backend (examples/demo_backend.py), a local TLS server started here (a CA and a certificate
made with the openssl CLI) and addresses that refuse, hang or do not resolve; every test drives
the real binary.

Most tests use one plugin, `caller`: its access phase decodes the X-Spec request header (JSON)
into the options of weir.http.request and answers with what the call returned, as JSON:
{"status", "headers", "body", "took"} or {"err", "took"} (nil, err), or {"raised"} when the call
raised a Lua error. spec.raw answers with the response body itself; spec.probe lists header
names to read back through res.headers (any spelling); spec.times repeats the call."""

import hashlib
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

from harness import (Conn, Echo, Skip, assert_eq, check, echo, free_port, gateway,
                     generated_sha256, get, make_tmpdir, timeout)
from test_plugin_runtime import config, handler, plugin_tree, run_gateway

CALLER = handler(1000, """
function P:access(conf)
  local spec = weir.json.decode(weir.request.get_header("X-Spec"))
  local raw, probe, times = spec.raw, spec.probe, spec.times or 1
  spec.raw, spec.probe, spec.times = nil, nil, nil
  local t0 = weir.time.monotonic_ms()
  local ok, res, err
  for _ = 1, times do
    ok, res, err = pcall(weir.http.request, spec)
    if not ok or not res then break end
  end
  local took = weir.time.monotonic_ms() - t0
  if not ok then return weir.response.exit(200, { raised = tostring(res), took = took }) end
  if not res then return weir.response.exit(200, { err = err, took = took }) end
  if raw then return weir.response.exit(200, res.body) end
  local looked = {}
  for _, name in ipairs(probe or {}) do looked[name] = res.headers[name] end
  return weir.response.exit(200, { status = res.status, headers = res.headers, body = res.body,
                                   looked = looked, took = took })
end
""")


def caller_gateway(**weir):
    root = plugin_tree({"caller": CALLER})
    return run_gateway(root, [{"name": "caller"}], ["caller"], **weir)


def call(w, spec, timeout=10):
    """Runs weir.http.request(spec) in the plugin; the plugin's JSON report."""
    r = get(w.port, "/", headers={"X-Spec": json.dumps(spec)}, timeout=timeout)
    assert_eq(r.status, 200, "the plugin's answer", r)
    return json.loads(r.body)


def backend_url(b, path="/"):
    return "http://127.0.0.1:%d%s" % (b.port, path)


def echo_of(rep):
    """The backend's echo carried in a report's body."""
    return Echo(json.loads(rep["body"]))


# ---------------------------------------------------------------- requests and responses

LOOKUP = handler(1000, """
function P:access(conf)
  local res, err = weir.http.request{ url = conf.url .. "/lookup?user=ann" }
  if not res then error(err) end
  local seen = weir.json.decode(res.body)
  weir.service.request.set_header("X-Lookup-Path", seen.path)
  weir.service.request.set_header("X-Lookup-Status", res.status)
end
""")


def test_a_get_from_a_plugin_puts_a_field_of_the_response_in_a_header():
    root = plugin_tree({"lookup": LOOKUP})

    def plugins(port):
        return [{"name": "lookup", "config": {"url": "http://127.0.0.1:%d" % port}}]
    # the backend's port is known only once it runs: configure the plugin from it
    with gateway(lambda port: config(port, root, plugins(port), ["lookup"])) as (w, b):
        seen = echo(get(w.port, "/main"))
        assert_eq(seen["path"], "/main", "the client's request went on upstream")
        assert_eq(seen.header("x-lookup-path"), "/lookup", "a field of the plugin's response")
        assert_eq(seen.header("x-lookup-status"), "200", "the plugin's response status")


def test_a_post_sends_the_body_and_headers_and_the_backend_echoes_them():
    with caller_gateway() as (w, b):
        rep = call(w, {"method": "POST", "url": backend_url(b, "/submit?x=1"),
                       "headers": {"X-One": "1", "X-Multi": ["a", "b"], "Content-Type": "text/plain"},
                       "body": "hello=world"})
        assert_eq(rep.get("status"), 200, "status", json.dumps(rep))
        seen = echo_of(rep)
        assert_eq(seen["method"], "POST", "method")
        assert_eq(seen["path"], "/submit", "path")
        assert_eq(seen["query"], "x=1", "query")
        assert_eq(seen["body"], "hello=world", "body")
        assert_eq(seen["framing"], "content-length", "body framing")
        assert_eq(seen.header("content-length"), "11", "Content-Length")
        assert_eq(seen.header("host"), "127.0.0.1:%d" % b.port, "Host")
        assert_eq(seen.header("x-one"), "1", "a header")
        assert_eq(seen.headers_named("x-multi"), ["a", "b"], "an array sends the field twice")
        assert_eq(seen.header("content-type"), "text/plain", "Content-Type")


def test_response_headers_have_lower_case_names_and_repeated_fields_are_arrays():
    with caller_gateway() as (w, b):
        path = "/?header_name=X-Rep&header_value=a&header_name=X-Rep&header_value=b"
        rep = call(w, {"url": backend_url(b, path), "probe": ["X_Rep", "Content-Type"]})
        assert_eq(rep["headers"].get("x-rep"), ["a", "b"], "a repeated field", json.dumps(rep))
        assert_eq(rep["looked"].get("X_Rep"), ["a", "b"], "any spelling reads it")
        assert_eq(rep["looked"].get("Content-Type"), "application/json", "any spelling reads it")


def test_a_chunked_response_body_is_read_whole():
    with caller_gateway() as (w, b):
        n = 300000
        r = get(w.port, "/", headers={"X-Spec": json.dumps(
            {"url": backend_url(b, "/?bytes=%d&chunked=1" % n), "raw": True})})
        assert_eq(len(r.body), n, "body length")
        assert_eq(hashlib.sha256(r.body).hexdigest(), generated_sha256(n), "body bytes")


def test_a_close_delimited_response_body_is_read_whole():
    with caller_gateway() as (w, b):
        n = 100000
        r = get(w.port, "/", headers={"X-Spec": json.dumps(
            {"url": backend_url(b, "/?bytes=%d&eof=1" % n), "raw": True})})
        assert_eq(len(r.body), n, "body length")
        assert_eq(hashlib.sha256(r.body).hexdigest(), generated_sha256(n), "body bytes")


def test_a_head_request_has_no_body_but_its_headers():
    with caller_gateway() as (w, b):
        rep = call(w, {"method": "HEAD", "url": backend_url(b, "/?bytes=5000")})
        assert_eq(rep.get("status"), 200, "status", json.dumps(rep))
        assert_eq(rep["body"], "", "no body")
        assert_eq(rep["headers"].get("content-length"), "5000", "the GET's length")


def test_interim_responses_are_skipped():
    with caller_gateway() as (w, b):
        rep = call(w, {"url": backend_url(b, "/?early_hints=1")})
        assert_eq(rep.get("status"), 200, "the final status", json.dumps(rep))
        assert_eq(echo_of(rep)["path"], "/", "the final response's body")


def test_a_status_other_than_200_is_a_response_not_an_error():
    with caller_gateway() as (w, b):
        rep = call(w, {"url": backend_url(b, "/?status=404")})
        assert_eq(rep.get("status"), 404, "status", json.dumps(rep))


# ---------------------------------------------------------------- concurrency and keep-alive

@timeout(60)
def test_fifty_concurrent_plugin_requests_waiting_200ms_finish_well_under_a_second_on_one_worker():
    with caller_gateway(workers=1) as (w, b):
        spec = json.dumps({"url": backend_url(b, "/?delay_ms=200")})
        assert_eq(call(w, json.loads(spec)).get("status"), 200, "warm-up")
        results = []

        def one():
            results.append(get(w.port, "/", headers={"X-Spec": spec}, timeout=10))
        threads = [threading.Thread(target=one) for _ in range(50)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - start
        statuses = sorted(json.loads(r.body).get("status") for r in results)
        assert_eq(statuses, [200] * 50, "every call got the backend's answer")
        check(took < 1.0, "50 calls waiting 200 ms each took %.2fs on one worker" % took)


def test_sequential_calls_reuse_one_keep_alive_connection():
    with caller_gateway(workers=1) as (w, b):
        before = b.stats()["connections"]
        rep = call(w, {"url": backend_url(b, "/"), "times": 20})
        assert_eq(rep.get("status"), 200, "status", json.dumps(rep))
        rep = call(w, {"url": backend_url(b, "/"), "times": 20})  # a later client request too
        assert_eq(echo_of(rep)["conn_requests"], 40, "the 40th request on the same connection")
        after = b.stats()["connections"]
        # one connection for the plugin, one for the second /__stats
        assert_eq(after - before, 2, "new backend connections")


def test_a_connection_the_server_closed_after_a_response_is_not_reused_and_calls_succeed():
    with caller_gateway(workers=1) as (w, b):
        rep = call(w, {"url": backend_url(b, "/?drop=1"), "times": 10})
        assert_eq(rep.get("status"), 200, "every call succeeded", json.dumps(rep))


# ---------------------------------------------------------------- errors

@timeout(20)
def test_a_timeout_returns_nil_and_timeout_promptly():
    with caller_gateway() as (w, b):
        start = time.monotonic()
        rep = call(w, {"url": backend_url(b, "/?delay_ms=5000"), "timeout": 300})
        took = time.monotonic() - start
        assert_eq(rep.get("err"), "timeout", "error", json.dumps(rep))
        check(250 <= rep["took"] < 1000, "the call took %s ms" % rep["took"])
        check(took < 2.0, "the client waited %.2fs" % took)


def test_a_refused_connection_returns_connection_refused():
    with caller_gateway() as (w, b):
        rep = call(w, {"url": "http://127.0.0.1:%d/" % free_port()})
        assert_eq(rep.get("err"), "connection refused", "error", json.dumps(rep))


@timeout(20)
def test_an_unresolvable_host_name_returns_an_error_not_a_hang():
    with caller_gateway() as (w, b):
        start = time.monotonic()
        rep = call(w, {"url": "http://nonexistent.invalid/", "timeout": 3000}, timeout=15)
        took = time.monotonic() - start
        check(str(rep.get("err", "")).startswith("could not resolve host: nonexistent.invalid"),
              "error: %s" % json.dumps(rep))
        check(took < 5.0, "the client waited %.2fs" % took)


def test_a_host_name_that_resolves_is_reached():
    with caller_gateway() as (w, b):
        rep = call(w, {"url": "http://localhost:%d/by-name" % b.port})
        assert_eq(rep.get("status"), 200, "status", json.dumps(rep))
        seen = echo_of(rep)
        assert_eq(seen["path"], "/by-name", "path")
        assert_eq(seen.header("host"), "localhost:%d" % b.port, "Host")


def test_a_response_larger_than_max_body_is_an_error():
    with caller_gateway() as (w, b):
        rep = call(w, {"url": backend_url(b, "/?bytes=200000"), "max_body": 100000})
        assert_eq(rep.get("err"), "response too large", "Content-Length beyond max_body",
                  json.dumps(rep))
        rep = call(w, {"url": backend_url(b, "/?bytes=200000&chunked=1"), "max_body": 100000})
        assert_eq(rep.get("err"), "response too large", "a chunked body beyond max_body",
                  json.dumps(rep))


def test_a_malformed_response_is_an_invalid_response_error():
    with caller_gateway() as (w, b):
        for bad in ("cl_te", "bare_lf", "bad_chunk", "garbage"):
            rep = call(w, {"url": backend_url(b, "/?bad=%s" % bad)})
            check(str(rep.get("err", "")).startswith("invalid response"),
                  "bad=%s: %s" % (bad, json.dumps(rep)))


def test_an_invalid_url_returns_an_error():
    with caller_gateway() as (w, b):
        cases = {"ftp://example.test/": "invalid url: only http and https are supported",
                 "example.test/": "invalid url: no scheme",
                 "http://user@example.test/": "invalid url: user information is not supported",
                 "http://example.test:99999/": "invalid url: bad port",
                 "http://example.test/a b": "invalid url: bad character in path or query "
                                            "(percent-encode it)"}
        for url, err in cases.items():
            assert_eq(call(w, {"url": url}).get("err"), err, url)


def test_header_injection_is_a_lua_error_and_nothing_is_sent():
    with caller_gateway() as (w, b):
        before = b.stats()["requests"]
        rep = call(w, {"url": backend_url(b), "headers": {"X-A": "a\r\nX-Injected: 1"}})
        check("control character" in rep.get("raised", ""), "CR LF in a value: %s" % rep)
        rep = call(w, {"url": backend_url(b), "headers": {"X-A": "a\u0000b"}})
        check("control character" in rep.get("raised", ""), "NUL in a value: %s" % rep)
        rep = call(w, {"url": backend_url(b), "headers": {"Bad Name": "x"}})
        check("must be tokens" in rep.get("raised", ""), "a space in a name: %s" % rep)
        rep = call(w, {"url": backend_url(b), "headers": {"Content-Length": "5"}})
        check("set by weir.http" in rep.get("raised", ""), "framing fields: %s" % rep)
        rep = call(w, {"url": backend_url(b), "tiemout": 5})
        check("unknown option 'tiemout'" in rep.get("raised", ""), "a misspelt option: %s" % rep)
        assert_eq(b.stats()["requests"], before, "requests that reached the backend")


def test_an_ipv6_literal_url_is_reached_with_its_brackets_in_host():
    try:
        srv = SmallServer(family=socket.AF_INET6, host="::1")
    except OSError as e:
        raise Skip("no IPv6 loopback here: %s" % e)
    try:
        with caller_gateway() as (w, b):
            rep = call(w, {"url": "http://[::1]:%d/six" % srv.port})
            assert_eq(rep.get("status"), 200, "status", json.dumps(rep))
            assert_eq(rep["body"], "ok /six", "body")
            assert_eq(rep["headers"].get("x-host"), "[::1]:%d" % srv.port, "Host sent")
    finally:
        srv.stop()


# ---------------------------------------------------------------- HTTPS

def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_certs():
    """A test CA and a server certificate for DNS:localhost signed by it, in a temp dir."""
    d = make_tmpdir("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    try:
        _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                 "-subj", "/CN=weir test CA", cwd=d)
        _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
                 "-subj", "/CN=localhost", cwd=d)
        with open(os.path.join(d, "ext.cnf"), "w") as f:
            f.write("subjectAltName=DNS:localhost\n")
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf",
                 cwd=d)
    except (OSError, subprocess.CalledProcessError) as e:
        raise Skip("cannot make test certificates with the openssl CLI: %s" % e)
    return d


class SmallServer:
    """A keep-alive HTTP/1.1 server in this process: answers "ok <path>" ("tls ok <path>" with
    TLS) with the request's Host in X-Host. .connections counts the connections served."""

    def __init__(self, certdir=None, family=socket.AF_INET, host="127.0.0.1"):
        self.ctx = None
        if certdir:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(os.path.join(certdir, "server.pem"),
                                     os.path.join(certdir, "server.key"))
        self.sock = socket.socket(family)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            if self.ctx:
                conn = self.ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            conn.close()
            return
        self.connections += 1
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                path = lines[0].split(b" ")[1]
                host = b"".join(l.split(b":", 1)[1].strip() for l in lines[1:]
                                if l.lower().startswith(b"host:"))
                body = (b"tls ok " if self.ctx else b"ok ") + path
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Host: %s\r\nContent-Length: %d\r\n\r\n%s"
                             % (host, len(body), body))
        except (ssl.SSLError, OSError):
            pass
        finally:
            conn.close()

    def stop(self):
        self.sock.close()


def https_setup():
    d = make_certs()
    return d, SmallServer(d)


def test_https_fails_verification_by_default_against_a_ca_the_system_does_not_trust():
    d, srv = https_setup()
    try:
        with caller_gateway() as (w, b):
            rep = call(w, {"url": "https://localhost:%d/" % srv.port})
            check(str(rep.get("err", "")).startswith("certificate verify failed: "),
                  "error: %s" % json.dumps(rep))
    finally:
        srv.stop()


def test_https_with_ssl_verify_false_succeeds_against_any_certificate():
    d, srv = https_setup()
    try:
        with caller_gateway() as (w, b):
            rep = call(w, {"url": "https://127.0.0.1:%d/anything" % srv.port, "ssl_verify": False})
            assert_eq(rep.get("status"), 200, "status", json.dumps(rep))
            assert_eq(rep["body"], "tls ok /anything", "body")
    finally:
        srv.stop()


def test_https_verified_against_ssl_ca_file_succeeds_and_reuses_the_connection():
    d, srv = https_setup()
    try:
        with caller_gateway(workers=1) as (w, b):
            rep = call(w, {"url": "https://localhost:%d/verified" % srv.port,
                           "ssl_ca_file": os.path.join(d, "ca.pem"), "times": 5})
            assert_eq(rep.get("status"), 200, "status", json.dumps(rep))
            assert_eq(rep["body"], "tls ok /verified", "body")
            assert_eq(srv.connections, 1, "TLS connections for five calls")
    finally:
        srv.stop()


def test_https_to_a_name_the_certificate_does_not_cover_fails_verification():
    d, srv = https_setup()
    try:
        with caller_gateway() as (w, b):
            rep = call(w, {"url": "https://127.0.0.1:%d/" % srv.port,
                           "ssl_ca_file": os.path.join(d, "ca.pem")})
            assert_eq(rep.get("err"), "certificate verify failed: IP address mismatch", "error",
                      json.dumps(rep))
    finally:
        srv.stop()


def test_an_unreadable_ssl_ca_file_is_an_error():
    with caller_gateway() as (w, b):
        rep = call(w, {"url": "https://localhost:1/", "ssl_ca_file": "/nonexistent/ca.pem"})
        assert_eq(rep.get("err"), "could not load ssl_ca_file: No such file or directory",
                  "error", json.dumps(rep))


# ---------------------------------------------------------------- abandoned calls

def _abandon(w, spec, after):
    """Sends a request whose plugin calls `spec`, then resets the connection after `after` s (a
    reset, not a FIN: a client that only half-closes still gets its response)."""
    c = Conn(w.port)
    c.send(("GET / HTTP/1.1\r\nHost: x\r\nX-Spec: %s\r\n\r\n" % json.dumps(spec)).encode())
    time.sleep(after)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def test_a_client_gone_while_the_plugin_waits_does_not_crash_the_gateway():
    with caller_gateway(workers=1) as (w, b):
        _abandon(w, {"url": backend_url(b, "/?delay_ms=600")}, 0.2)
        time.sleep(0.8)  # the backend's late answer arrives, the plugin answers nobody
        rep = call(w, {"url": backend_url(b, "/after")})
        assert_eq(rep.get("status"), 200, "the worker still serves", json.dumps(rep))
        assert_eq(w.stop(), 0, "exit status after SIGTERM")


@timeout(30)
def test_calls_in_flight_are_cancelled_cleanly_when_the_gateway_stops_at_once():
    make_certs()  # skips where the openssl CLI is missing, like the HTTPS tests
    silent = socket.socket()  # accepts TCP, never answers a TLS hello
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    clients = []
    try:
        with caller_gateway(workers=1) as (w, b):
            assert_eq(call(w, {"url": backend_url(b)}).get("status"), 200, "an idle pooled one")
            for spec in ({"url": backend_url(b, "/?delay_ms=5000")},  # waiting for the answer
                         {"url": "http://10.255.255.1/", "timeout": 5000},  # connecting
                         {"url": "https://localhost:%d/" % silent.getsockname()[1]}):  # TLS
                c = Conn(w.port)
                c.send(("GET / HTTP/1.1\r\nHost: x\r\nX-Spec: %s\r\n\r\n"
                        % json.dumps(spec)).encode())
                clients.append(c)
            time.sleep(0.3)
            w.send_signal(signal.SIGINT)
            assert_eq(w.wait(5), 0, "exit status after SIGINT with three calls in flight")
    finally:
        for c in clients:
            c.close()
        silent.close()


TIMER_CALLER = handler(1000, """
function P:access(conf)
  weir.timer.at(0, function(premature, url)
    weir.http.request{ url = url }
  end, conf.url)
end
""")


def test_a_call_pending_in_a_timer_at_shutdown_is_dropped_cleanly():
    root = plugin_tree({"timer-caller": TIMER_CALLER})

    def make(port):
        url = "http://127.0.0.1:%d/?delay_ms=5000" % port
        return config(port, root, [{"name": "timer-caller", "config": {"url": url}}],
                      ["timer-caller"])
    with gateway(make) as (w, b):
        assert_eq(get(w.port, "/").status, 200, "the request that started the timer")
        time.sleep(0.3)
        assert_eq(w.stop(), 0, "exit status after SIGTERM with a call in flight")
