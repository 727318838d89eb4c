"""Re-encryption to https upstreams (docs/tls.md, "HTTPS upstreams"): verification against the
service's ca_certificates (declarative file and admin API), failures as 502 with the reason in
the error log, hostname checks, tls_verify false, the SNI sent, keep-alive reuse and session
resumption of upstream TLS connections, and mutual TLS with client_certificate.

The backend is a small HTTPS echo server in this file (Python's ssl module, certificates from a
test PKI made with the openssl CLI, as in test_tls.py). It records what Weir did: connections,
requests per connection, resumed sessions, the server names sent."""

import base64
import hashlib
import json
import os
import ssl
import uuid

from harness import (Conn, TlsServer, assert_eq, assert_in, base_config, http, route, service,
                     start_weir, wait_until)
from test_tls import Pki, admin_port
from test_websocket import WS_GUID, handshake as ws_handshake, recv_exact

JSON = {"Content-Type": "application/json"}


class TlsBackend(TlsServer):
    """An HTTPS echo backend on 127.0.0.1: answers every request with JSON (path, headers, the
    connection's number) and keeps connections alive unless the request path ends in /close."""

    def __init__(self, pki, names=("localhost",), leaf="backend", client_ca=None):
        cert, key = pki.leaf(leaf, *names)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        if client_ca:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(client_ca)
        self.sni = []
        self.ctx.sni_callback = lambda sock, name, ctx: self.sni.append(name)
        self.handshakes = 0
        self.resumed = 0
        self.requests = []  # (connection number, path)
        self.client_subjects = []
        TlsServer.__init__(self)

    def serve(self, raw, n):
        try:
            raw.settimeout(10)
            s = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        with self.lock:
            self.handshakes += 1
            self.resumed += bool(s.session_reused)
            peer = s.getpeercert()
            if peer:
                self.client_subjects.append(dict(x[0] for x in peer["subject"])["commonName"])
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = s.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {}
                for line in lines[1:]:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0"))
                while len(buf) < length:
                    buf += s.recv(65536)
                buf = buf[length:]
                with self.lock:
                    self.requests.append((n, path))
                if headers.get("upgrade", "").lower() == "websocket":
                    self._tunnel(s, headers, buf)
                    return
                close = path.endswith("/close")
                body = json.dumps({"path": path, "headers": headers, "connection": n}).encode()
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n%s\r\n" % (
                              len(body), b"Connection: close\r\n" if close else b"") + body)
                if close:
                    return
        except (OSError, ssl.SSLError, ValueError, IndexError):
            return
        finally:
            try:
                s.close()
            except OSError:
                pass

    def _tunnel(self, s, headers, buf):
        """A WebSocket handshake answered, then every byte echoed until the peer closes."""
        key = headers["sec-websocket-key"].encode()
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        if buf:
            s.sendall(buf)
        while True:
            data = s.recv(65536)
            if not data:
                return
            s.sendall(data)

def https_service(backend, name="secure", host="localhost", **fields):
    return service(name, url="https://%s:%d" % (host, backend.port),
                   routes=[route(name, ["/" + name])], **fields)


def ca_entity(pki):
    return {"id": str(uuid.uuid4()), "cert": pki.pem("root", "crt")}


def start(backend, services, weir=None, **top):
    cfg = base_config(None, services=services, weir=weir or {})
    cfg.update(top)
    return start_weir(cfg)


def proxy_port(w):
    return int(w.config["weir"]["proxy_listen"][0].rsplit(":", 1)[1])


def get(w, path, **kw):
    return http("GET", proxy_port(w), path, **kw)


def test_tls_upstream_verified_with_ca_certificates_from_the_file():
    pki = Pki()
    b = TlsBackend(pki)
    ca = ca_entity(pki)
    w = start(b, [https_service(b, ca_certificates=[ca["id"]])], ca_certificates=[ca])
    try:
        r = get(w, "/secure/hello")
        assert_eq(r.status, 200, "status (%s)" % r.body[:300])
        body = json.loads(r.body)
        assert_eq(body["path"], "/hello", "path upstream")
        assert_eq(body["headers"]["host"], "localhost:%d" % b.port, "Host upstream")
        assert_eq(body["headers"]["x-forwarded-proto"], "http", "X-Forwarded-Proto unchanged")
        assert_eq(b.sni, ["localhost"], "SNI sent: the service host")
    finally:
        w.stop()
        b.stop()


def test_tls_upstream_default_port_443_and_protocol_field():
    pki = Pki()
    b = TlsBackend(pki)
    ca = ca_entity(pki)
    svc = {"name": "secure", "protocol": "https", "host": "localhost", "port": b.port,
           "ca_certificates": [ca["id"]], "routes": [route("secure", ["/secure"])]}
    w = start(b, [svc], ca_certificates=[ca], weir={"store": {"type": "file", "path": "s.json"}})
    try:
        assert_eq(get(w, "/secure/x").status, 200, "protocol https")
        r = http("POST", admin_port(w), "/services", headers=JSON,
                 body=json.dumps({"name": "u", "url": "https://localhost/p"}))
        assert_eq(r.status, 201, "POST https url (%s)" % r.body[:300])
        assert_eq(json.loads(r.body)["port"], 443, "an https url's default port")
        assert_eq(json.loads(r.body)["protocol"], "https", "protocol from the url")
    finally:
        w.stop()
        b.stop()


def test_tls_upstream_ca_certificate_through_the_admin_api():
    pki = Pki()
    b = TlsBackend(pki)
    w = start(b, [], weir={"store": {"type": "file", "path": "s.json"}})
    try:
        a = admin_port(w)
        r = http("POST", a, "/ca_certificates", headers=JSON,
                 body=json.dumps({"cert": pki.pem("root", "crt")}))
        assert_eq(r.status, 201, "POST /ca_certificates (%s)" % r.body[:300])
        ca_id = json.loads(r.body)["id"]
        r = http("POST", a, "/services", headers=JSON, body=json.dumps({
            "name": "secure", "url": "https://localhost:%d" % b.port,
            "ca_certificates": [ca_id]}))
        assert_eq(r.status, 201, "POST /services (%s)" % r.body[:300])
        r = http("POST", a, "/services/secure/routes", headers=JSON,
                 body=json.dumps({"paths": ["/secure"]}))
        assert_eq(r.status, 201, "POST route (%s)" % r.body[:300])
        wait_until(lambda: get(w, "/secure/a").status == 200, what="verified through the CA")
        r = http("POST", a, "/services", headers=JSON, body=json.dumps({
            "name": "bad", "url": "https://localhost:%d" % b.port,
            "ca_certificates": [str(uuid.uuid4())]}))
        assert_eq(r.status >= 400, True, "an unknown ca_certificates id is refused (%d %s)" % (
            r.status, r.body[:300]))
    finally:
        w.stop()
        b.stop()


def test_tls_upstream_untrusted_certificate_is_502_with_the_reason_logged():
    pki = Pki()
    other = Pki()  # a CA that did not sign the backend's certificate
    b = TlsBackend(pki)
    ca = ca_entity(other)
    w = start(b, [https_service(b, "nocas"),  # system bundle only
                  https_service(b, "wrong", ca_certificates=[ca["id"]])],
              ca_certificates=[ca])
    try:
        r = get(w, "/nocas/x")
        assert_eq(r.status, 502, "no CA: status")
        r = get(w, "/wrong/x")
        assert_eq(r.status, 502, "wrong CA: status")
        wait_until(lambda: w.stderr_text().count(
            "upstream TLS: certificate verify failed: unable to get local issuer certificate") >= 2,
            what="the reason in the error log")
        assert_eq(b.requests, [], "no request reached the backend")
    finally:
        w.stop()
        b.stop()


def test_tls_upstream_hostname_mismatch_is_502():
    pki = Pki()
    b = TlsBackend(pki, names=("other.test",), leaf="other")
    ca = ca_entity(pki)
    w = start(b, [https_service(b, ca_certificates=[ca["id"]])], ca_certificates=[ca])
    try:
        assert_eq(get(w, "/secure/x").status, 502, "status")
        wait_until(lambda: "upstream TLS: certificate verify failed: hostname mismatch"
                   in w.stderr_text(),
                   what="hostname mismatch logged")
    finally:
        w.stop()
        b.stop()


def test_tls_upstream_verify_off_accepts_an_untrusted_certificate():
    pki = Pki()
    b = TlsBackend(pki, names=("other.test",), leaf="other")
    w = start(b, [https_service(b, tls_verify=False),
                  https_service(b, "byip", host="127.0.0.1", tls_verify=False)])
    try:
        assert_eq(get(w, "/secure/x").status, 200, "untrusted, wrong name, not verified")
        assert_eq(get(w, "/byip/x").status, 200, "by address")
        assert_eq(b.sni, ["localhost", None], "no SNI for an IP address")
    finally:
        w.stop()
        b.stop()


def test_tls_upstream_preserve_host_sends_the_client_host_as_sni():
    pki = Pki()
    b = TlsBackend(pki, names=("localhost", "api.example.test"))
    ca = ca_entity(pki)
    svc = https_service(b, ca_certificates=[ca["id"]])
    svc["routes"][0]["preserve_host"] = True
    w = start(b, [svc], ca_certificates=[ca])
    try:
        r = get(w, "/secure/x", headers={"Host": "api.example.test:8000"})
        assert_eq(r.status, 200, "status (%s)" % r.body[:200])
        assert_eq(b.sni, ["api.example.test"], "SNI: the client's host without its port")
    finally:
        w.stop()
        b.stop()


def test_tls_upstream_keepalive_reuses_the_connection_and_resumes_sessions():
    pki = Pki()
    b = TlsBackend(pki)
    ca = ca_entity(pki)
    # a plain service on the same address must never get the pooled TLS connection
    w = start(b, [https_service(b, ca_certificates=[ca["id"]]),
                  service("plain", url="http://127.0.0.1:%d" % b.port,
                          routes=[route("plain", ["/plain"])])],
              ca_certificates=[ca])
    try:
        with Conn(proxy_port(w)) as c:
            for i in range(4):
                r = c.request("GET", "/secure/ka%d" % i)
                assert_eq(r.status, 200, "request %d" % i)
        assert_eq(b.connections, 1, "one upstream connection for four requests")
        assert_eq(len(b.requests), 4, "requests seen")
        # the backend closes after each of these: the first goes over the pooled connection,
        # the next ones make new connections that resume the session
        for i in range(3):
            r = get(w, "/secure/new%d/close" % i)
            assert_eq(r.status, 200, "closing request %d" % i)
        wait_until(lambda: b.handshakes == 3, what="handshakes")
        assert_eq(b.resumed, 2, "later handshakes resumed the session")
        # the plain service to the same address opens its own (plain) connection: the TLS
        # backend does not understand it, the request fails rather than reusing TLS
        n = b.connections
        assert_eq(get(w, "/plain/x").status in (502, 400), True, "plain to a TLS port")
        assert_eq(b.connections, n + 1, "a new connection, not the pooled TLS one")
    finally:
        w.stop()
        b.stop()


def test_tls_upstream_mutual_tls_with_client_certificate():
    pki = Pki()
    b = TlsBackend(pki, client_ca=pki.ca)
    ca = ca_entity(pki)
    pki.leaf("client", "weir-client.test")
    cert = {"id": str(uuid.uuid4()), "cert": pki.pem("client", "crt"),
            "key": pki.pem("client", "key")}
    w = start(b, [https_service(b, ca_certificates=[ca["id"]],
                                client_certificate={"id": cert["id"]}),
                  https_service(b, "nocert", ca_certificates=[ca["id"]])],
              ca_certificates=[ca], certificates=[cert])
    try:
        r = get(w, "/secure/x")
        assert_eq(r.status, 200, "with the client certificate (%s)" % r.body[:200])
        assert_eq(b.client_subjects, ["weir-client.test"], "the backend saw the certificate")
        assert_eq(get(w, "/nocert/x").status, 502, "without one")
        # TLS 1.3: the server's refusal comes after the client's side of the handshake, as an
        # alert or (this backend) by closing the connection
        wait_until(lambda: 'upstream TLS: ' in w.stderr_text(), what="the refusal logged")
    finally:
        w.stop()
        b.stop()


def test_tls_upstream_websocket_upgrade_tunnels_over_tls():
    pki = Pki()
    b = TlsBackend(pki)
    ca = ca_entity(pki)
    w = start(b, [https_service(b, ca_certificates=[ca["id"]])], ca_certificates=[ca])
    try:
        s, r, rest, accept = ws_handshake(proxy_port(w), "/secure/ws")
        try:
            assert_eq(r.status, 101, "upgrade status")
            assert_eq(r.header("sec-websocket-accept"), accept, "accept key")
            payload = os.urandom(200000)  # many TLS records each way
            s.sendall(payload)
            assert_eq(recv_exact(s, len(payload), rest), payload, "echoed through TLS")
        finally:
            s.close()
    finally:
        w.stop()
        b.stop()
