"""TLS passthrough (docs/tls.md, "Passthrough"): connections on weir.stream_listen routed by the
ClientHello's server name to tcp services, relayed without being decrypted.

Two real TLS backends (Python's ssl module) with their own certificates from a test PKI (openssl
CLI, test_tls.Pki) stand behind Weir: a client must see the backend's certificate and talk to the
backend end to end. Each backend speaks a tiny line protocol over its TLS session:
  "NAME\\n"     -> its name and the SNI it saw, then it closes;
  "ECHO\\n"     -> echoes every byte until EOF, then closes;
  "SINK <n>\\n" -> waits until the test releases it, then reads n bytes and answers
                  "<bytes> <sha256>\\n" (to check back-pressure: nothing is read meanwhile)."""

import collections
import contextlib
import hashlib
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import threading
import time

from harness import (TlsServer, assert_eq, assert_in, base_config, check, free_port, http, raw,
                     run_weir, start_weir, timeout, wait_until, write_config_file)
from test_tls import Pki, admin_port

JSON = {"Content-Type": "application/json"}


class TlsBackend(TlsServer):
    """A TLS server on 127.0.0.1 speaking the line protocol above."""

    def __init__(self, pki, name, *dns):
        cert, key = pki.leaf(name, *dns)
        self.name = name
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sni = []
        self.ctx.sni_callback = lambda sock, n, ctx: self.sni.append(n)
        self.release = threading.Event()
        # a small receive window (inherited by accepted sockets): the kernel buffers little of
        # what the backend does not read, so the back-pressure test sees Weir's bound
        TlsServer.__init__(self, rcvbuf=1 << 16)

    def serve(self, s, n):
        try:
            s.settimeout(20)
            t = self.ctx.wrap_socket(s, server_side=True)
            line = b""
            while not line.endswith(b"\n"):
                d = t.recv(1)
                if not d:
                    return
                line += d
            cmd = line.strip()
            if cmd == b"NAME":
                t.sendall(("%s %s\n" % (self.name, self.sni[-1] if self.sni else "-")).encode())
            elif cmd == b"ECHO":
                while True:
                    d = t.recv(65536)
                    if not d:
                        break
                    t.sendall(d)
            elif cmd.startswith(b"SINK "):
                want = int(cmd.split()[1])
                self.release.wait(30)
                h, n = hashlib.sha256(), 0
                while n < want:
                    d = t.recv(min(65536, want - n))
                    if not d:
                        break
                    h.update(d)
                    n += len(d)
                t.sendall(("%d %s\n" % (n, h.hexdigest())).encode())
            try:
                t.unwrap()
            except (OSError, ssl.SSLError):
                pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            s.close()

    def stop(self):
        self.release.set()
        TlsServer.stop(self)


# A backend the test serves itself on a plain socket, for passthrough_config.
RawBackend = collections.namedtuple("RawBackend", "name port")


def recv_until_eof(s, size=65536):
    data = b""
    while True:
        d = s.recv(size)
        if not d:
            return data
        data += d


def passthrough_config(backends, stream_port=None, **overrides):
    """base_config plus a stream listener and one tcp service per (backend, snis); a backend is
    anything with .name and .port (a TlsBackend, a RawBackend)."""
    cfg = base_config(None, **overrides)
    cfg["weir"]["stream_listen"] = ["127.0.0.1:%d" % (stream_port or free_port())]
    cfg["services"] = [
        {"name": "svc-" + b.name, "url": "tcp://127.0.0.1:%d" % b.port,
         "routes": [{"name": "pt-" + b.name, "protocols": ["tls_passthrough"],
                     "snis": list(snis)}]}
        for b, snis in backends]
    return cfg


def stream_port(w):
    return int(w.config["weir"]["stream_listen"][0].rsplit(":", 1)[1])


def client_ctx(pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.ca)
    return ctx


def connect(port, pki, sni, check_hostname=True):
    ctx = client_ctx(pki)
    ctx.check_hostname = check_hostname
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        return ctx.wrap_socket(s, server_hostname=sni)
    except Exception:
        s.close()
        raise


def subject_cn(t):
    return dict(x[0] for x in t.getpeercert()["subject"])["commonName"]


def read_line(t):
    out = b""
    while not out.endswith(b"\n"):
        d = t.recv(1)
        if not d:
            break
        out += d
    return out.decode()


def ask_name(port, pki, sni):
    """(certificate CN, backend's answer to NAME) for a connection with SNI `sni`."""
    with connect(port, pki, sni) as t:
        t.sendall(b"NAME\n")
        line = read_line(t).strip()
        while t.recv(100):  # to the backend's close: a clean end on both sides
            pass
        return subject_cn(t), line


def refused(port, data=None, sni=None, pki=None):
    """True when Weir closes the connection without a TLS answer: for `data` sent raw, or for a
    handshake with `sni` (None: no SNI at all)."""
    if data is not None:
        got = raw(port, data, timeout=5)
        return got.closed and got == b""
    ctx = client_ctx(pki)
    ctx.check_hostname = False
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        ctx.wrap_socket(s, server_hostname=sni).close()
        return False
    except (ssl.SSLError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError, OSError):
        return True
    finally:
        s.close()


def two_backends():
    pki = Pki()
    a = TlsBackend(pki, "alpha", "db.example.com")
    b = TlsBackend(pki, "beta", "api.internal.example.com", "*.internal.example.com")
    return pki, a, b


@contextlib.contextmanager
def start_two(**overrides):
    """Two backends (alpha: db.example.com, beta: *.internal.example.com) behind a weir; yields
    (pki, alpha, beta, weir) and stops all three."""
    pki, a, b = two_backends()
    try:
        w = start_weir(passthrough_config([(a, ["db.example.com"]),
                                           (b, ["*.internal.example.com"])], **overrides))
    except BaseException:
        stop(a, b)
        raise
    try:
        yield pki, a, b, w
    finally:
        stop(w, a, b)


def stop(*things):
    for t in things:
        t.stop()


def access_lines(w):
    return [l for l in w.access_log_lines() if l.get("type") == "tls_passthrough"]


# ---------------------------------------------------------------- routing by SNI


def test_sni_selects_the_backend_whose_certificate_the_client_sees():
    with start_two() as (pki, a, b, w):
        p = stream_port(w)
        assert_eq(ask_name(p, pki, "db.example.com"), ("db.example.com", "alpha db.example.com"),
                  "db.example.com: (certificate, backend)")
        assert_eq(ask_name(p, pki, "api.internal.example.com"),
                  ("api.internal.example.com", "beta api.internal.example.com"), "wildcard route")
        # the name is matched case-insensitively, and passed on as the client wrote it
        cn, answer = ask_name(p, pki, "DB.Example.COM")
        assert_eq(cn, "db.example.com", "certificate for an upper-case SNI")
        assert_eq(answer, "alpha DB.Example.COM", "the backend saw the client's own bytes")


def test_openssl_s_client_sees_the_backends_certificate():
    with start_two() as (pki, a, b, w):
        p = stream_port(w)
        for sni, cn in (("db.example.com", "db.example.com"),
                        ("x.internal.example.com", "api.internal.example.com")):
            r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % p,
                                "-servername", sni, "-CAfile", pki.ca, "-verify_return_error"],
                               input=b"NAME\n", capture_output=True, timeout=15)
            out = r.stdout.decode("utf-8", "replace")
            assert_in("subject=CN = %s" % cn, out, "s_client's subject line for " + sni)
            assert_in("Verify return code: 0 (ok)", out, "verified through the chain")


def test_wildcard_covers_one_label_only():
    with start_two() as (pki, a, b, w):
        p = stream_port(w)
        assert_eq(ask_name(p, pki, "x.internal.example.com")[1], "beta x.internal.example.com",
                  "one label")
        check(refused(p, sni="a.b.internal.example.com", pki=pki), "two labels must not match")
        check(refused(p, sni="internal.example.com", pki=pki), "the bare domain must not match")


def test_unknown_sni_and_no_sni_close_the_connection():
    with start_two() as (pki, a, b, w):
        p = stream_port(w)
        before = a.connections + b.connections
        check(refused(p, sni="other.example.org", pki=pki), "unknown SNI was answered")
        check(refused(p, sni=None, pki=pki), "a ClientHello without SNI was answered")
        assert_eq(a.connections + b.connections, before, "no backend connection made")
        wait_until(lambda: "no tls_passthrough route has this server name" in w.stderr_text() and
                   "the ClientHello names no server" in w.stderr_text(), what="logged at info")
        assert_eq(ask_name(p, pki, "db.example.com")[1], "alpha db.example.com", "still served")


def test_plain_text_and_malformed_client_hellos_are_closed():
    with start_two() as (pki, a, b, w):
        p = stream_port(w)
        for data in (b"GET / HTTP/1.1\r\nHost: db.example.com\r\n\r\n",
                     b"\x16\x03\x01\x00\x00",                       # an empty record
                     bytes.fromhex("1603010005") + b"\x02\x00\x00\x01\x00",  # a ServerHello
                     b"\x80\x2e\x01\x00\x02" + b"\x00" * 60,          # SSLv2
                     b"\x16\x03\x01\x00\x30" + b"\x01\x00\x00\x2c" + b"\xff" * 44):  # bad lengths
            check(refused(p, data=data), "connection left open or answered after %r" % data[:12])
        # cut short, then EOF: closed at once
        got = raw(p, bytes.fromhex("16030100a5010000a10303") + b"\x00" * 20, timeout=3,
                  shut_wr=True)
        check(got.closed and got == b"", "a truncated ClientHello then EOF")
        # more than 16 KiB without the ClientHello ending
        big = bytearray()
        while len(big) < 20000:
            big += bytes.fromhex("1603010001") + b"\x01"
        check(refused(p, data=bytes(big)), "an endless ClientHello")
        wait_until(lambda: "client_hello_too_large" in w.stderr_text(), what="too large logged")
        check(w.alive(), "weir exited")
        assert_eq(ask_name(p, pki, "db.example.com")[1], "alpha db.example.com", "still served")
        assert_eq(a.connections + b.connections, 1, "only the good client reached a backend")


@timeout(30)
def test_a_silent_client_is_closed_after_the_handshake_timeout():
    with start_two(ssl_handshake_timeout=500) as (pki, a, b, w):
        s = socket.create_connection(("127.0.0.1", stream_port(w)), timeout=5)
        s.sendall(bytes.fromhex("16030100a5"))  # a record header, then nothing
        start = time.monotonic()
        try:
            d = s.recv(100)
        except ConnectionResetError:
            d = b""
        took = time.monotonic() - start
        s.close()
        assert_eq(d, b"", "nothing sent before the close")
        check(0.3 <= took < 3, "closed after %.2fs, want about 0.5s" % took)
        wait_until(lambda: any(l["ended"] == "client_hello_timeout" for l in access_lines(w)),
                   what="the timeout in the access log")


def _handshake_over(sock, sni, pki, hello_chunk):
    """A TLS handshake on a plain socket through memory BIOs, the ClientHello written
    `hello_chunk` bytes at a time; returns (SSLObject, incoming, outgoing)."""
    ctx = client_ctx(pki)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    first = True
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            pending = out.read()
            if first:
                first = False
                for i in range(0, len(pending), hello_chunk):
                    sock.sendall(pending[i:i + hello_chunk])
                    time.sleep(0.002)
            elif pending:
                sock.sendall(pending)
            d = sock.recv(65536)
            if not d:
                raise ConnectionError("closed during the handshake")
            inc.write(d)
    pending = out.read()
    if pending:
        sock.sendall(pending)
    return obj, inc, out


def test_a_client_hello_split_into_tiny_writes_is_routed():
    with start_two() as (pki, a, b, w):
        s = socket.create_connection(("127.0.0.1", stream_port(w)), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        obj, inc, out = _handshake_over(s, "db.example.com", pki, 3)
        assert_eq(dict(x[0] for x in obj.getpeercert()["subject"])["commonName"],
                  "db.example.com", "the backend's certificate")
        obj.write(b"NAME\n")
        s.sendall(out.read())
        answer = b""
        while not answer.endswith(b"\n"):
            try:
                answer += obj.read(100)
            except ssl.SSLWantReadError:
                d = s.recv(65536)
                if not d:
                    break
                inc.write(d)
        assert_eq(answer, b"alpha db.example.com\n", "the answer over the session")
        s.close()


# ---------------------------------------------------------------- relaying


@timeout(60)
def test_megabytes_flow_both_ways_intact():
    with start_two() as (pki, a, b, w):
        payload = os.urandom(1 << 20) * 6  # 6 MiB each way
        with connect(stream_port(w), pki, "db.example.com") as t:
            t.sendall(b"ECHO\n")
            # One thread sends and receives, non-blocking: an SSL object must not be read and
            # written by two threads at once (that crashed the test process once).
            got, n, sent = [], 0, 0
            t.setblocking(False)
            deadline = time.monotonic() + 40
            while n < len(payload) and time.monotonic() < deadline:
                progressed = False
                if sent < len(payload):
                    try:
                        sent += t.send(payload[sent:sent + (1 << 16)])
                        progressed = True
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                        pass
                while True:
                    try:
                        d = t.recv(1 << 16)
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                        break
                    if not d:
                        deadline = 0  # closed before everything came back
                        break
                    got.append(d)
                    n += len(d)
                    progressed = True
                if not progressed:
                    select.select([t], [t] if sent < len(payload) else [], [], 0.2)
            t.setblocking(True)
            echoed = b"".join(got)
            assert_eq(len(echoed), len(payload), "bytes echoed")
            check(hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest(),
                  "echoed bytes differ")
        wait_until(lambda: any(l["ended"] == "closed" for l in access_lines(w)), timeout=10,
                   what="the connection's access log line")
        line = [l for l in access_lines(w) if l["ended"] == "closed"][0]
        check(line["bytes_from_client"] > len(payload), "bytes_from_client %r" % line)
        check(line["bytes_from_upstream"] > len(payload), "bytes_from_upstream %r" % line)


@timeout(60)
def test_back_pressure_bounds_what_weir_buffers_for_a_backend_that_does_not_read():
    with start_two() as (pki, a, b, w):
        total = 48 << 20
        chunk = os.urandom(1 << 16)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)  # little kernel buffering
        s.settimeout(30)
        s.connect(("127.0.0.1", stream_port(w)))
        t = client_ctx(pki).wrap_socket(s, server_hostname="db.example.com")
        t.sendall(b"SINK %d\n" % total)
        time.sleep(0.2)
        rss_before = w.rss_kb()
        sent = [0]

        def writer():
            while sent[0] < total:
                t.sendall(chunk)
                sent[0] += len(chunk)
        th = threading.Thread(target=writer, daemon=True)
        th.start()
        # the chain fills up (kernel buffers plus Weir's bound) and stops taking bytes
        last = -1
        while last != sent[0]:
            last = sent[0]
            time.sleep(1.0)
        check(sent[0] < 32 << 20, "%d MiB taken from a client whose backend does not read: "
                                  "no back-pressure" % (sent[0] >> 20))
        grown = w.rss_kb() - rss_before
        check(grown < 16 * 1024, "weir grew by %d kB while the backend did not read" % grown)
        # released, the backend gets every byte, in order
        a.release.set()
        th.join(40)
        assert_eq(sent[0], total, "bytes sent")
        answer = read_line(t).split()
        expect = hashlib.sha256(chunk * (total // len(chunk))).hexdigest()
        assert_eq(answer, [str(total), expect], "what the backend read")
        t.close()


def test_access_log_line_for_a_relayed_and_a_refused_connection():
    with start_two() as (pki, a, b, w):
        p = stream_port(w)
        ask_name(p, pki, "db.example.com")
        refused(p, sni="nobody.example.net", pki=pki)
        wait_until(lambda: len(access_lines(w)) >= 2, what="two access log lines")
        lines = access_lines(w)
        ok = [l for l in lines if l["sni"] == "db.example.com"]
        check(len(ok) == 1 and ok[0]["ended"] == "closed", "the relayed connection: %r" % lines)
        ok = ok[0]
        assert_eq(ok["sni"], "db.example.com", "sni")
        assert_eq(ok["route"], "pt-alpha", "route")
        assert_eq(ok["service"], "svc-alpha", "service")
        assert_eq(ok["upstream_addr"], "127.0.0.1:%d" % a.port, "upstream_addr")
        assert_eq(ok["client_ip"], "127.0.0.1", "client_ip")
        assert_eq(ok["listen_port"], p, "listen_port")
        check(ok["bytes_from_client"] > 200 and ok["bytes_from_upstream"] > 500,
              "byte counts %r" % ok)
        check(isinstance(ok["duration_ms"], int) and ok["duration_ms"] >= 0, "duration_ms")
        check(ok["time"].endswith("Z"), "time")
        bad = [l for l in lines if l["ended"] == "no_route"][0]
        assert_eq((bad["sni"], bad["route"], bad["service"], bad["upstream_addr"]),
                  ("nobody.example.net", None, None, None), "a refused connection's line")
        assert_eq((bad["bytes_from_client"], bad["bytes_from_upstream"]), (0, 0), "nothing relayed")


def test_a_backend_that_refuses_the_connection_closes_the_client():
    with start_two() as (pki, a, b, w):
        dead = free_port()  # nothing listens there
        cfg = passthrough_config([(a, ["db.example.com"])])
        cfg["weir"] = w.config["weir"]
        cfg["services"].append({"name": "gone", "url": "tcp://127.0.0.1:%d" % dead,
                                "routes": [{"protocols": ["tls_passthrough"],
                                            "snis": ["gone.example.com"]}]})
        w.reload(cfg)
        wait_until(lambda: "cannot connect to 127.0.0.1:%d" % dead in w.stderr_text() or
                   refused(stream_port(w), sni="gone.example.com", pki=pki) and
                   "cannot connect" in w.stderr_text(), what="the failed connect logged")
        wait_until(lambda: any(l["sni"] == "gone.example.com" and
                               l["ended"] == "upstream_connect_failed" for l in access_lines(w)),
                   what="the access log line of the failed connect")


# ---------------------------------------------------------------- configuration


def test_reload_adds_a_route_and_keeps_open_connections():
    pki, a, b = two_backends()
    w = start_weir(passthrough_config([(a, ["db.example.com"])]))
    try:
        p = stream_port(w)
        check(refused(p, sni="api.internal.example.com", pki=pki), "no route yet")
        with connect(p, pki, "db.example.com") as held:
            held.sendall(b"ECHO\n")
            held.sendall(b"before\n")
            assert_eq(read_line(held), "before\n", "echo before the reload")
            cfg = passthrough_config([(a, ["db.example.com"]), (b, ["*.internal.example.com"])])
            cfg["weir"] = w.config["weir"]
            w.reload(cfg)
            wait_until(lambda: not refused(p, sni="api.internal.example.com", pki=pki),
                       what="the new route after SIGHUP")
            assert_eq(ask_name(p, pki, "api.internal.example.com")[1],
                      "beta api.internal.example.com", "the new route")
            held.sendall(b"after\n")
            assert_eq(read_line(held), "after\n", "the open connection after the reload")
    finally:
        stop(w, a, b)


def test_admin_api_creates_passthrough_routes_and_refuses_bad_ones():
    pki, a, b = two_backends()
    cfg = passthrough_config([], weir={"store": {"type": "file", "path": "s.json"}})
    w = start_weir(cfg)
    try:
        adm, p = admin_port(w), stream_port(w)
        r = http("POST", adm, "/services", headers=JSON, body=json.dumps(
            {"name": "db", "url": "tcp://127.0.0.1:%d" % a.port}))
        assert_eq(r.status, 201, "POST a tcp service (%s)" % r.body[:300])
        assert_eq((json.loads(r.body)["protocol"], json.loads(r.body)["port"]), ("tcp", a.port),
                  "protocol and port from the url")
        r = http("POST", adm, "/services/db/routes", headers=JSON, body=json.dumps(
            {"name": "db-pt", "protocols": ["tls_passthrough"], "snis": ["DB.example.com"]}))
        assert_eq(r.status, 201, "POST a passthrough route (%s)" % r.body[:300])
        assert_eq(json.loads(r.body)["snis"], ["db.example.com"], "snis lower-cased")
        wait_until(lambda: not refused(p, sni="db.example.com", pki=pki), what="route applied")
        assert_eq(ask_name(p, pki, "db.example.com")[1], "alpha db.example.com", "relayed")
        r = http("GET", adm, "/debug/match?sni=DB.Example.com")
        m = json.loads(r.body)
        assert_eq((r.status, m["matched"], m["route"]["name"], m["route"]["snis"],
                   m["service"]["name"], m["service"]["protocol"]),
                  (200, True, "db-pt", ["db.example.com"], "db", "tcp"), "/debug/match?sni=")
        m = json.loads(http("GET", adm, "/debug/match?sni=other.example.com").body)
        assert_eq(m["matched"], False, "/debug/match for an unknown name")

        def post_route(body, service="db"):
            return http("POST", adm, "/services/%s/routes" % service, headers=JSON,
                        body=json.dumps(body))

        cases = [
            ({"protocols": ["tls_passthrough"]}, "snis"),
            ({"protocols": ["tls_passthrough"], "snis": ["a.example.com"], "paths": ["/x"]},
             "paths"),
            ({"protocols": ["tls_passthrough"], "snis": ["a.example.com"], "hosts": ["h.com"]},
             "hosts"),
            ({"protocols": ["tls_passthrough", "https"], "snis": ["a.example.com"]}, "protocols"),
            ({"protocols": ["tls_passthrough"], "snis": ["bad name.com"]}, "snis[0]"),
            ({"protocols": ["tls_passthrough"], "snis": ["a.*.com"]}, "snis[0]"),
            ({"paths": ["/x"], "snis": ["a.example.com"]}, "snis"),
            ({"paths": ["/x"]}, "protocols"),  # an http route to a tcp service
        ]
        for body, field in cases:
            r = post_route(body)
            assert_eq(r.status, 400, "%s: status (%s)" % (body, r.body[:300]))
            fields = json.loads(r.body).get("fields", {})
            check(field in fields, "%s: no message for %s in %s" % (body, field, r.body[:400]))
        # a passthrough route to an http service
        r = http("POST", adm, "/services", headers=JSON,
                 body=json.dumps({"name": "web", "url": "http://127.0.0.1:1"}))
        assert_eq(r.status, 201, "POST an http service")
        r = post_route({"protocols": ["tls_passthrough"], "snis": ["w.example.com"]}, "web")
        assert_eq(r.status, 400, "passthrough route on an http service (%s)" % r.body[:300])
        assert_in("service", json.loads(r.body).get("fields", {}), "the field named")
        # a tcp service with a path
        r = http("POST", adm, "/services", headers=JSON,
                 body=json.dumps({"name": "p", "url": "tcp://127.0.0.1:1/x"}))
        assert_eq(r.status, 400, "tcp url with a path (%s)" % r.body[:300])
        # the same server name on a second route
        r = post_route({"protocols": ["tls_passthrough"], "snis": ["x.example.com",
                                                                    "db.example.com"]})
        assert_eq(r.status, 409, "a server name used twice (%s)" % r.body[:300])
        assert_in("db.example.com", json.loads(r.body)["message"], "the name in the message")
    finally:
        stop(w, a, b)


def test_declarative_errors_name_each_problem():
    pki, a, b = two_backends()
    try:
        cfg = passthrough_config([(a, ["db.example.com"]), (b, ["db.example.com"])])
        w = start_weir(passthrough_config([(a, ["db.example.com"])]))
        try:
            del cfg["weir"]  # server settings come from the file only
            r = http("POST", admin_port(w), "/config", headers=JSON, body=json.dumps(cfg))
            assert_eq(r.status, 400, "POST /config with a repeated server name (%s)" % r.body[:300])
            fields = json.loads(r.body)["fields"]
            assert_eq(fields.get("services[1].routes[0].snis"),
                      '"db.example.com" is already used by services[0].routes[0]', "the message")
            cfg2 = passthrough_config([(a, ["db.example.com"])])
            cfg2["weir"]["stream_listen"] = w.config["weir"]["proxy_listen"]
            cfg2["weir"]["proxy_listen"] = w.config["weir"]["proxy_listen"]
            status, out, err = run_weir(["-t", "-c", write_config_file(cfg2)])
            assert_eq(status != 0, True, "weir -t refused it")
            text = out + err
            assert_in("weir.stream_listen[0]: overlaps weir.proxy_listen[0]", text,
                      "overlapping listeners")
        finally:
            w.stop()
    finally:
        stop(a, b)


def test_passthrough_connections_count_toward_max_connections():
    with start_two(limits={"max_connections": 2}) as (pki, a, b, w):
        p = stream_port(w)
        held = [connect(p, pki, "db.example.com"), connect(p, pki, "db.example.com")]
        for t in held:
            t.sendall(b"ECHO\n")
        time.sleep(0.2)
        check(refused(p, sni="db.example.com", pki=pki), "a third connection was accepted")
        for t in held:
            t.close()
        wait_until(lambda: not refused(p, sni="db.example.com", pki=pki),
                   what="accepted again once the others closed")


@timeout(30)
def test_read_timeout_closes_an_idle_connection_but_not_a_busy_one():
    pki, a, b = two_backends()
    cfg = passthrough_config([(a, ["db.example.com"])])
    cfg["services"][0]["read_timeout"] = 600
    w = start_weir(cfg)
    try:
        p = stream_port(w)
        with connect(p, pki, "db.example.com") as busy:
            busy.sendall(b"ECHO\n")
            # bytes moving either way keep it open past the timeout
            for i in range(8):
                time.sleep(0.2)
                busy.sendall(b"ping\n")
                assert_eq(read_line(busy), "ping\n", "echo %d" % i)
            # silent: closed after about read_timeout
            start = time.monotonic()
            busy.settimeout(5)
            try:
                d = busy.recv(100)
            except (ConnectionResetError, ssl.SSLError):
                d = b""
            took = time.monotonic() - start
            assert_eq(d, b"", "nothing more came")
            check(0.4 <= took < 2.5, "closed after %.2fs, want about 0.6s" % took)
        wait_until(lambda: any(l["ended"] == "idle_timeout" for l in access_lines(w)),
                   what="idle_timeout in the access log")
    finally:
        stop(w, a, b)


def test_an_upstream_balances_over_its_targets_and_retries_a_dead_one():
    pki, a, b = two_backends()
    dead = free_port()
    cfg = passthrough_config([])
    cfg["upstreams"] = [{"name": "dbpool", "targets": [
        {"target": "127.0.0.1:%d" % dead}, {"target": "127.0.0.1:%d" % a.port}]}]
    cfg["services"] = [{"name": "db", "protocol": "tcp", "host": "dbpool", "port": 1,
                        "routes": [{"protocols": ["tls_passthrough"],
                                    "snis": ["db.example.com"]}]}]
    w = start_weir(cfg)
    try:
        p = stream_port(w)
        for i in range(4):  # round-robin reaches the dead target half the time: retried
            assert_eq(ask_name(p, pki, "db.example.com")[1], "alpha db.example.com",
                      "connection %d" % i)
        assert_eq(a.connections, 4, "every connection reached the live target")
        wait_until(lambda: "trying another target" in w.stderr_text(), what="the retry logged")
    finally:
        stop(w, a, b)


@timeout(30)
def test_graceful_stop_lets_relayed_connections_finish():
    with start_two() as (pki, a, b, w):
        p = stream_port(w)
        t = connect(p, pki, "db.example.com")
        t.sendall(b"ECHO\n")
        t.sendall(b"before\n")
        assert_eq(read_line(t), "before\n", "echo before the stop")
        waiting = socket.create_connection(("127.0.0.1", p), timeout=5)  # no ClientHello yet
        time.sleep(0.1)
        w.send_signal(15)
        wait_until(lambda: "stopped accepting" in w.stderr_text(), what="the stop began")
        waiting.settimeout(5)
        try:
            d = waiting.recv(10)
        except ConnectionResetError:
            d = b""
        assert_eq(d, b"", "a connection without a ClientHello is closed at once")
        waiting.close()
        t.sendall(b"during\n")
        assert_eq(read_line(t), "during\n", "the relayed connection still works while draining")
        check(w.alive(), "weir exited with a relayed connection open")
        t.close()
        assert_eq(w.wait(10), 0, "exit status once the connection ended")


def _client_hello(sni):
    """The bytes of a real ClientHello for `sni` (Python's ssl, through memory BIOs)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def test_bytes_are_replayed_exactly_and_a_half_close_is_passed_on():
    """A plain TCP backend shows what Weir sends: the client's ClientHello byte for byte, then
    the rest, then the client's FIN (a half-close), after which it can still answer."""
    got = {}
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)

    def backend():
        s, _ = lsock.accept()
        s.settimeout(10)
        got["data"] = data = recv_until_eof(s)
        s.sendall(b"received %d bytes after your FIN\n" % len(data))
        s.close()
    threading.Thread(target=backend, daemon=True).start()
    w = start_weir(passthrough_config([(RawBackend("raw", lsock.getsockname()[1]),
                                        ["raw.example.com"])]))
    try:
        hello = _client_hello("raw.example.com")
        tail = os.urandom(300000)
        s = socket.create_connection(("127.0.0.1", stream_port(w)), timeout=10)
        s.sendall(hello + tail)
        s.shutdown(socket.SHUT_WR)
        answer = recv_until_eof(s, 4096)
        s.close()
        assert_eq(answer, b"received %d bytes after your FIN\n" % (len(hello) + len(tail)),
                  "the backend's answer after the half-close")
        check(got["data"] == hello + tail, "the backend did not get the exact bytes")
        wait_until(lambda: any(l["ended"] == "closed" for l in access_lines(w)),
                   what="a clean close in the access log")
        line = [l for l in access_lines(w) if l["ended"] == "closed"][0]
        assert_eq(line["bytes_from_client"], len(hello) + len(tail), "bytes_from_client")
        assert_eq(line["bytes_from_upstream"], len(answer), "bytes_from_upstream")
    finally:
        w.stop()
        lsock.close()


def test_a_client_that_sends_then_resets_after_the_backend_closed_is_not_left_open():
    """The pattern of TLS clients after a server's close: the backend has closed (its FIN passed
    on), the client sends its last record and resets. Both arrive in one readiness edge; the
    connection must still end at once, not at the idle timeout (60 s)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)

    def backend():
        while True:
            try:
                s, _ = lsock.accept()
            except OSError:
                return
            s.settimeout(5)
            try:
                s.recv(65536)  # the ClientHello
                s.sendall(b"bye\n")
            except OSError:
                pass
            s.close()
    threading.Thread(target=backend, daemon=True).start()
    w = start_weir(passthrough_config([(RawBackend("raw", lsock.getsockname()[1]),
                                        ["raw.example.com"])]))
    try:
        hello = _client_hello("raw.example.com")
        n = 5
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", stream_port(w)), timeout=5)
            s.sendall(hello)
            got = recv_until_eof(s, 100)  # the backend's line, then the FIN Weir passed on
            assert_eq(got, b"bye\n", "the backend's answer")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            # a last record, then a reset, while weir is paused: one edge for both
            os.kill(w.pid, signal.SIGSTOP)
            try:
                s.sendall(b"\x15\x03\x03\x00\x1a" + b"\x00" * 26)
                s.close()
                time.sleep(0.02)
            finally:
                os.kill(w.pid, signal.SIGCONT)
        try:
            wait_until(lambda: len(access_lines(w)) >= n, timeout=3, what="every connection ended")
        except Exception:
            raise AssertionError("connections ended: %r" % [l["ended"] for l in access_lines(w)])
    finally:
        w.stop()
        lsock.close()
