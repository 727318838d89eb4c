"""TLS termination: ssl listeners, the default certificate and SNI-selected certificates,
protocol versions, ALPN, resumption, plain HTTP and garbage on a TLS port, the handshake timeout,
X-Forwarded-Proto and https redirects (docs/tls.md).

A test PKI is made with the openssl CLI for each test: a root CA, an intermediate CA, and leaf
certificates signed by them (ECDSA P-256, quick to make). Clients are Python's ssl module, curl
and `openssl s_client`, all trusting only the root."""

import json
import os
import shutil
import socket
import ssl
import subprocess
import time

from harness import (Conn, Skip, _Source, assert_eq, assert_gateway_error, assert_in, base_config,
                     check, echo, gateway, http, make_tmpdir, parse_response, raw, route,
                     run_weir, service, start_backend, start_weir, timeout, wait_until,
                     write_config_file)

JSON = {"Content-Type": "application/json"}


def _openssl(*args, cwd=None):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=cwd)


class Pki:
    """Root CA -> intermediate CA -> leaves. leaf(name, *dns) makes <name>.crt (leaf then
    intermediate: a chain) and <name>.key; pem(name, ext) reads one."""

    def __init__(self):
        self.dir = make_tmpdir("pki")
        self._key("root")
        _openssl("req", "-x509", "-new", "-key", self.path("root.key"), "-out",
                 self.path("root.crt"), "-days", "30", "-subj", "/CN=Weir Test Root",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._key("inter")
        _openssl("req", "-new", "-key", self.path("inter.key"), "-out", self.path("inter.csr"),
                 "-subj", "/CN=Weir Test Intermediate")
        self._ext("inter.ext", "basicConstraints=critical,CA:TRUE\n"
                               "keyUsage=critical,keyCertSign,cRLSign\n")
        _openssl("x509", "-req", "-in", self.path("inter.csr"), "-CA", self.path("root.crt"),
                 "-CAkey", self.path("root.key"), "-CAcreateserial", "-out",
                 self.path("inter.crt"), "-days", "30", "-extfile", self.path("inter.ext"))
        self.ca = self.path("root.crt")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, name):
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                 self.path(name + ".key"))

    def _ext(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)

    def leaf(self, name, *dns):
        self._key(name)
        _openssl("req", "-new", "-key", self.path(name + ".key"), "-out",
                 self.path(name + ".csr"), "-subj", "/CN=" + dns[0])
        self._ext(name + ".ext", "basicConstraints=CA:FALSE\nsubjectAltName=" +
                  ",".join("DNS:" + d for d in dns) + "\n")
        _openssl("x509", "-req", "-in", self.path(name + ".csr"), "-CA", self.path("inter.crt"),
                 "-CAkey", self.path("inter.key"), "-CAcreateserial", "-out",
                 self.path(name + ".leaf"), "-days", "30", "-extfile", self.path(name + ".ext"))
        with open(self.path(name + ".crt"), "w") as out:
            out.write(self.pem(name, "leaf") + self.pem("inter", "crt"))
        return self.path(name + ".crt"), self.path(name + ".key")

    def pem(self, name, ext):
        with open(self.path(name + "." + ext)) as f:
            return f.read()


def tls_config(pki, backend_port, **weir):
    """base_config with proxy_listen [TLS port, plain port] and the default certificate."""
    cert, key = pki.leaf("default", "default.test")
    cfg = base_config(backend_port)
    plain = cfg["weir"]["proxy_listen"][0]
    tls_port = _free_port()
    cfg["weir"]["proxy_listen"] = ["127.0.0.1:%d ssl" % tls_port, plain]
    cfg["weir"]["ssl_cert"] = cert
    cfg["weir"]["ssl_cert_key"] = key
    cfg["weir"].update(weir)
    return cfg


def _free_port():
    from harness import free_port
    return free_port()


def ports(w):
    """(TLS port, plain port) of a tls_config gateway."""
    tls, plain = w.config["weir"]["proxy_listen"]
    return int(tls.split()[0].rsplit(":", 1)[1]), int(plain.rsplit(":", 1)[1])


def admin_port(w):
    return int(w.config["weir"]["admin_listen"][0].rsplit(":", 1)[1])


def client_context(pki, **kw):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.ca)
    ctx.check_hostname = False  # the tests look at which certificate came, not at the name
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def handshake(port, pki, sni=None, **ctx_kw):
    """A verified TLS connection to the gateway (SNI `sni`, none when None)."""
    ctx = client_context(pki, **ctx_kw)
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return ctx.wrap_socket(s, server_hostname=sni)
    except Exception:
        s.close()
        raise


def served_name(port, pki, sni=None):
    """The CN of the certificate the gateway serves for `sni`."""
    with handshake(port, pki, sni) as s:
        subject = dict(x[0] for x in s.getpeercert()["subject"])
        return subject["commonName"]


class TlsConn(Conn):
    """harness.Conn over TLS: request(), read_response(), wait_closed() as for plain HTTP."""

    def __init__(self, port, pki, sni=None, timeout=5.0, **ctx_kw):
        self.timeout = timeout
        self.sock = handshake(port, pki, sni, **ctx_kw)
        self.sock.settimeout(timeout)
        self.src = _Source(sock=self.sock)
        self.local_port = self.sock.getsockname()[1]


def weir_with_tls(pki, **weir):
    backend = start_backend()
    w = start_weir(tls_config(pki, backend.port, **weir))
    return w, backend


def stop(*things):
    for t in things:
        t.stop()


# ---------------------------------------------------------------- certificates


def test_default_certificate_and_its_chain_are_served():
    pki = Pki()
    w, b = weir_with_tls(pki)
    try:
        tls_port, _ = ports(w)
        # verified against the root alone: the intermediate came from the file's chain
        assert_eq(served_name(tls_port, pki), "default.test", "certificate without SNI")
        assert_eq(served_name(tls_port, pki, "unknown.example.net"), "default.test",
                  "certificate for an unknown SNI")
        with TlsConn(tls_port, pki) as c:
            r = c.request("GET", "/hello", host="default.test")
            assert_eq(r.status, 200, "status over TLS")
            assert_eq(echo(r)["path"], "/hello", "path upstream")
    finally:
        stop(w, b)


def _three_certificates(pki):
    api = pki.leaf("api", "api.example.com")
    wild = pki.leaf("wild", "*.example.com")
    return [
        {"cert": pki.pem("api", "crt"), "key": pki.pem("api", "key"),
         "snis": ["api.example.com"]},
        {"cert": pki.pem("wild", "crt"), "key": pki.pem("wild", "key"),
         "snis": ["*.example.com"]},
    ], api, wild


def test_sni_selects_exact_then_wildcard_then_default():
    pki = Pki()
    certs, _, _ = _three_certificates(pki)
    backend = start_backend()
    cfg = tls_config(pki, backend.port)
    cfg["certificates"] = certs
    w = start_weir(cfg)
    try:
        tls_port, _ = ports(w)
        assert_eq(served_name(tls_port, pki, "api.example.com"), "api.example.com", "exact")
        assert_eq(served_name(tls_port, pki, "API.Example.COM"), "api.example.com",
                  "exact, other case")
        assert_eq(served_name(tls_port, pki, "www.example.com"), "*.example.com", "wildcard")
        assert_eq(served_name(tls_port, pki, "a.b.example.com"), "default.test",
                  "two labels below the wildcard")
        assert_eq(served_name(tls_port, pki, "example.org"), "default.test", "unknown name")
        assert_eq(served_name(tls_port, pki), "default.test", "no SNI")
        # curl with --resolve sends the SNI and verifies the name against the chain
        if shutil.which("curl"):
            p = subprocess.run(["curl", "-sS", "--cacert", pki.ca, "--resolve",
                                "www.example.com:%d:127.0.0.1" % tls_port,
                                "https://www.example.com:%d/curl" % tls_port],
                               capture_output=True, timeout=10)
            assert_eq(p.returncode, 0, "curl exit status (%s)" % p.stderr.decode()[-300:])
            assert_eq(json.loads(p.stdout)["path"], "/curl", "path through curl")
    finally:
        stop(w, backend)


def test_reject_unknown_sni_ends_the_handshake_with_an_alert():
    pki = Pki()
    certs, _, _ = _three_certificates(pki)
    backend = start_backend()
    cfg = tls_config(pki, backend.port, ssl_reject_unknown_sni=True)
    cfg["certificates"] = certs
    w = start_weir(cfg)
    try:
        tls_port, _ = ports(w)
        assert_eq(served_name(tls_port, pki, "www.example.com"), "*.example.com", "known name")
        try:
            served_name(tls_port, pki, "unknown.example.net")
            raise AssertionError("the handshake for an unknown SNI succeeded")
        except ssl.SSLError as e:
            assert_in("UNRECOGNIZED_NAME", str(e).upper(), "alert")
        assert_eq(served_name(tls_port, pki), "default.test", "no SNI: the default certificate")
        wait_until(lambda: 'unknown server name "unknown.example.net"' in w.stderr_text(),
                   what="the refused handshake logged")
    finally:
        stop(w, backend)


def test_certificate_added_through_the_admin_api_applies_to_new_handshakes():
    pki = Pki()
    pki.leaf("new", "new.example.org")
    backend = start_backend()
    cfg = tls_config(pki, backend.port, store={"type": "file", "path": "store.json"})
    w = start_weir(cfg)
    try:
        tls_port, _ = ports(w)
        assert_eq(served_name(tls_port, pki, "new.example.org"), "default.test", "before")
        with TlsConn(tls_port, pki, "new.example.org") as old:
            assert_eq(old.request("GET", "/one", host="new.example.org").status, 200, "first")
            r = http("POST", admin_port(w), "/certificates", headers=JSON, body=json.dumps({
                "cert": pki.pem("new", "crt"), "key": pki.pem("new", "key"),
                "snis": ["new.example.org"]}))
            assert_eq(r.status, 201, "POST /certificates (%s)" % r.body[:300])
            wait_until(lambda: served_name(tls_port, pki, "new.example.org") == "new.example.org",
                       what="new handshakes get the new certificate")
            # the connection made before keeps its session and keeps working
            assert_eq(old.request("GET", "/two", host="new.example.org").status, 200, "after")
            subject = dict(x[0] for x in old.sock.getpeercert()["subject"])
            assert_eq(subject["commonName"], "default.test", "old connection's certificate")
        cert_id = json.loads(r.body)["id"]
        r = http("DELETE", admin_port(w), "/certificates/" + cert_id)
        assert_eq(r.status, 204, "DELETE")
        wait_until(lambda: served_name(tls_port, pki, "new.example.org") == "default.test",
                   what="the default certificate again after the delete")
    finally:
        stop(w, backend)


def test_alternate_certificate_serves_the_other_key_type():
    pki = Pki()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", pki.path("rsa.key"),
             "-out", pki.path("rsa.crt"), "-days", "30", "-subj", "/CN=rsa.example.com")
    pki.leaf("ec", "ec.example.com")
    backend = start_backend()
    cfg = tls_config(pki, backend.port)
    cfg["certificates"] = [{"cert": pki.pem("rsa", "crt"), "key": pki.pem("rsa", "key"),
                            "cert_alt": pki.pem("ec", "leaf"), "key_alt": pki.pem("ec", "key"),
                            "snis": ["both.example.com"]}]
    w = start_weir(cfg)
    try:
        tls_port, _ = ports(w)
        for sigalgs, want in (("rsa_pss_rsae_sha256", "rsa.example.com"),
                              ("ecdsa_secp256r1_sha256", "ec.example.com")):
            p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % tls_port,
                                "-servername", "both.example.com", "-sigalgs", sigalgs],
                               input=b"", capture_output=True, timeout=10)
            out = p.stdout.decode("utf-8", "replace")
            check("CN = " + want in out or "CN=" + want in out,
                  "%s: expected %s, got:\n%s" % (sigalgs, want, out[:1500]))
    finally:
        stop(w, backend)


# ---------------------------------------------------------------- protocol


def test_tls_1_0_and_1_1_are_refused_1_2_and_1_3_accepted():
    pki = Pki()
    w, b = weir_with_tls(pki)
    try:
        tls_port, _ = ports(w)
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            with handshake(tls_port, pki, minimum_version=version, maximum_version=version) as s:
                assert_eq(s.version(), version.name.replace("v1_", "v1.").replace("TLS", "TLS"),
                          "negotiated version")
        for flag in ("-tls1", "-tls1_1"):
            p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % tls_port,
                                flag, "-cipher", "DEFAULT:@SECLEVEL=0"],
                               input=b"", capture_output=True, timeout=10)
            out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
            check(p.returncode != 0 and "Cipher is (NONE)" in out and "alert protocol version" in out,
                  "%s: expected a refused handshake, got:\n%s" % (flag, out[-1500:]))
        # the gateway goes on serving
        assert_eq(served_name(tls_port, pki), "default.test", "after the refusals")
    finally:
        stop(w, b)


def test_alpn_negotiates_http_1_1_only():
    pki = Pki()
    w, b = weir_with_tls(pki)
    try:
        tls_port, _ = ports(w)
        ctx = client_context(pki)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw_sock:
            with ctx.wrap_socket(raw_sock) as s:
                assert_eq(s.selected_alpn_protocol(), "http/1.1", "ALPN with h2 offered first")
        ctx = client_context(pki)
        ctx.set_alpn_protocols(["h2"])
        with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw_sock:
            with ctx.wrap_socket(raw_sock) as s:
                assert_eq(s.selected_alpn_protocol(), None, "no common protocol: no ALPN")
    finally:
        stop(w, b)


def _s_client(port, *args):
    """s_client making one request and reading until the gateway closes, so that TLS 1.3
    session tickets (sent after the handshake) arrive before it exits."""
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-ign_eof"] +
                       list(args), input=b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                       capture_output=True, timeout=10)
    return p.stdout.decode("utf-8", "replace")


def test_sessions_resume_with_tickets_and_with_the_session_cache():
    pki = Pki()
    w, b = weir_with_tls(pki, workers=2)
    try:
        tls_port, _ = ports(w)
        sess = os.path.join(make_tmpdir("sess"), "s.pem")
        for version in ("-tls1_3", "-tls1_2"):
            for ticket in (["-no_ticket"] if version == "-tls1_2" else []) + [None]:
                extra = [version] + ([ticket] if ticket else [])
                out = _s_client(tls_port, "-sess_out", sess, *extra)
                check("New," in out, "first handshake (%s): %s" % (extra, out[-800:]))
                # several times: with two workers, tickets made by one resume on the other
                for _ in range(4):
                    out = _s_client(tls_port, "-sess_in", sess, *extra)
                    check("Reused," in out, "resumed handshake (%s): %s" % (extra, out[-800:]))
    finally:
        stop(w, b)


@timeout(60)
def test_ticket_keys_rotate_and_the_previous_key_still_resumes():
    pki = Pki()
    w, b = weir_with_tls(pki, workers=2, ssl_session_ticket_key_rotation=2000)
    try:
        tls_port, _ = ports(w)
        d = make_tmpdir("sess")
        for version in ("-tls1_3", "-tls1_2"):
            sess = os.path.join(d, version + ".pem")
            issued = time.monotonic()
            check("New," in _s_client(tls_port, "-sess_out", sess, version), "first handshake")
            # A ticket's key is the current one until the next rotation, then the previous one
            # until the rotation after: it resumes for at least one period (2 s), and these
            # tries fall on both sides of a rotation.
            for at in (0.2, 0.9, 1.6):
                time.sleep(max(0.0, issued + at - time.monotonic()))
                out = _s_client(tls_port, "-sess_in", sess, version)
                check("Reused," in out, "resumed after %.1fs (%s): %s" % (at, version, out[-600:]))
            # after two rotations its key is gone: a full handshake
            time.sleep(max(0.0, issued + 4.5 - time.monotonic()))
            out = _s_client(tls_port, "-sess_in", sess, version)
            check("New," in out, "after two rotations (%s): %s" % (version, out[-600:]))
    finally:
        stop(w, b)


# ---------------------------------------------------------------- misbehaving clients


def test_plain_http_on_the_tls_port_gets_a_plain_400_and_is_closed():
    pki = Pki()
    w, b = weir_with_tls(pki)
    try:
        tls_port, _ = ports(w)
        for method in ("GET", "DELETE", "OPTIONS"):
            data = raw(tls_port, ("%s / HTTP/1.1\r\nHost: x\r\n\r\n" % method).encode())
            check(data.closed, "%s: the connection was not closed" % method)
            r = parse_response(data)
            assert_gateway_error(r, 400, "The plain HTTP request was sent to HTTPS port")
            assert_eq(r.header("Connection"), "close", "Connection")
        wait_until(lambda: "sent plain HTTP" in w.stderr_text(), what="logged at info")
        assert_eq(served_name(tls_port, pki), "default.test", "TLS still served")
    finally:
        stop(w, b)


def test_garbage_and_malformed_client_hello_close_the_connection():
    pki = Pki()
    w, b = weir_with_tls(pki)
    try:
        tls_port, _ = ports(w)
        hello_prefix = bytes.fromhex("16030100a5010000a10303") + b"\x00" * 20  # cut short
        bad_length = bytes.fromhex("1603010005") + b"\x01\xff\xff\xff\x00"
        for data in (b"\x00\x01\x02\x03" * 64, b"\x16\x03\x01\xff\xff" + b"\xaa" * 400,
                     bad_length, b"\x80\x2e\x01\x00\x02" + b"\x00" * 60):
            got = raw(tls_port, data, timeout=5)
            check(got.closed, "connection left open after %r" % data[:16])
            check(not got.startswith(b"HTTP/"), "an HTTP answer to TLS garbage: %r" % got[:60])
        # a ClientHello cut short: the connection waits for the rest; the client then leaves
        got = raw(tls_port, hello_prefix, timeout=0.5, shut_wr=True)
        check(got.closed, "a truncated ClientHello followed by EOF left the connection open")
        wait_until(lambda: w.stderr_text().count("TLS handshake with") >= 4,
                   what="each failure logged")
        check(w.alive(), "weir exited")
        assert_eq(served_name(tls_port, pki), "default.test", "TLS still served")
        with TlsConn(tls_port, pki) as c:
            assert_eq(c.request("GET", "/").status, 200, "a request after the garbage")
    finally:
        stop(w, b)


@timeout(30)
def test_handshake_timeout_closes_a_silent_connection():
    pki = Pki()
    w, b = weir_with_tls(pki, ssl_handshake_timeout=500, limits={"header_timeout": 10000})
    try:
        tls_port, _ = ports(w)
        s = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
        start = time.monotonic()
        try:
            s.settimeout(5)
            try:
                d = s.recv(100)
            except ConnectionResetError:
                d = b""
            took = time.monotonic() - start
            assert_eq(d, b"", "nothing sent before the close")
            check(0.3 <= took < 3, "closed after %.2fs, want about 0.5s" % took)
        finally:
            s.close()
        wait_until(lambda: "timed out" in w.stderr_text(), what="the timeout logged")
        # after the handshake the head timeout applies, not the handshake's
        with TlsConn(tls_port, pki) as c:
            time.sleep(1)
            assert_eq(c.request("GET", "/").status, 200, "a request 1 s after the handshake")
    finally:
        stop(w, b)


# ---------------------------------------------------------------- HTTP over TLS


def test_x_forwarded_proto_is_https_for_tls_connections():
    pki = Pki()
    w, b = weir_with_tls(pki)
    try:
        tls_port, plain_port = ports(w)
        with TlsConn(tls_port, pki) as c:
            e = echo(c.request("GET", "/p"))
            assert_eq(e.header("X-Forwarded-Proto"), "https", "X-Forwarded-Proto over TLS")
            assert_eq(e.header("X-Forwarded-Port"), str(tls_port), "X-Forwarded-Port")
            # keep-alive: a second request on the same TLS connection
            e2 = echo(c.request("GET", "/q"))
            assert_eq(e2["conn_id"], e["conn_id"], "upstream connection reused")
        with Conn(plain_port) as c:
            assert_eq(echo(c.request("GET", "/p")).header("X-Forwarded-Proto"), "http",
                      "X-Forwarded-Proto in plain HTTP")
    finally:
        stop(w, b)


def test_large_bodies_stream_both_ways_over_tls():
    pki = Pki()
    w, b = weir_with_tls(pki)
    try:
        tls_port, _ = ports(w)
        with TlsConn(tls_port, pki, timeout=20) as c:
            body = os.urandom(3 * 1024 * 1024 + 17)
            r = c.request("POST", "/upload", headers={"Content-Type": "application/octet-stream"},
                          body=body)
            assert_eq(r.status, 200, "status of a 3 MiB upload")
            import hashlib
            assert_eq(echo(r)["body_bytes"], len(body), "bytes received upstream")
            assert_eq(echo(r)["body_sha256"], hashlib.sha256(body).hexdigest(), "body upstream")
            r = c.request("GET", "/download?bytes=5000000")
            assert_eq(r.status, 200, "status of a 5 MB download")
            assert_eq(len(r.body), 5000000, "bytes downloaded")
    finally:
        stop(w, b)


def test_a_slow_reader_gets_every_byte_of_a_large_response():
    pki = Pki()
    w, b = weir_with_tls(pki)
    try:
        tls_port, _ = ports(w)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(20)
        s.connect(("127.0.0.1", tls_port))
        c = client_context(pki).wrap_socket(s)
        try:
            c.sendall(b"GET /big?bytes=8000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(1.0)  # the gateway fills the socket and waits for it (WANT_WRITE)
            src = _Source(sock=c, deadline=time.monotonic() + 20)
            from harness import _read_message
            r = _read_message(src)
            assert_eq(r.status, 200, "status")
            assert_eq(len(r.body), 8000000, "bytes read after the pause")
        finally:
            c.close()
    finally:
        stop(w, b)


def test_sighup_reloads_the_default_certificate_from_its_file():
    pki = Pki()
    w, b = weir_with_tls(pki)
    try:
        tls_port, _ = ports(w)
        assert_eq(served_name(tls_port, pki), "default.test", "before")
        with TlsConn(tls_port, pki) as old:
            assert_eq(old.request("GET", "/").status, 200, "first request")
            cert, key = pki.leaf("renewed", "renewed.test")
            shutil.copy(cert, w.config["weir"]["ssl_cert"])
            shutil.copy(key, w.config["weir"]["ssl_cert_key"])
            w.reload(w.config)
            wait_until(lambda: served_name(tls_port, pki) == "renewed.test",
                       what="the renewed certificate served after SIGHUP")
            assert_eq(old.request("GET", "/").status, 200, "the open connection after SIGHUP")
        # a reload with an unreadable file keeps the running configuration
        os.unlink(w.config["weir"]["ssl_cert"])
        w.reload(w.config)
        wait_until(lambda: "reload failed" in w.stderr_text(), what="the failed reload logged")
        assert_eq(served_name(tls_port, pki), "renewed.test", "still served")
    finally:
        stop(w, b)


def _redirect_config(pki, backend_port):
    cfg = tls_config(pki, backend_port)
    cfg["services"] = [service("echo", backend_port, routes=[
        route("secure", ["/secure"], protocols=["https"]),
        route("moved", ["/moved"], protocols=["https"], https_redirect_status_code=301),
        route("kept", ["/kept"], protocols=["https"], https_redirect_status_code=308),
        route("plain", ["/plain"], protocols=["http"]),
        route("any", ["/"]),
    ])]
    return cfg


def test_https_only_routes_redirect_http_requests():
    pki = Pki()
    backend = start_backend()
    w = start_weir(_redirect_config(pki, backend.port))
    try:
        tls_port, plain_port = ports(w)
        with Conn(plain_port) as c:
            r = c.request("GET", "/secure/x", host="api.example.com")
            assert_gateway_error(r, 426, "Please use HTTPS protocol")
            r = c.request("GET", "/moved/x?a=1&b=2", host="api.example.com:8000")
            assert_eq(r.status, 301, "301 route")
            assert_eq(r.header("Location"), "https://api.example.com/moved/x?a=1&b=2",
                      "Location")
            r = c.request("POST", "/kept", host="api.example.com", body=b"data")
            assert_eq(r.status, 308, "308 route")
            assert_eq(r.header("Location"), "https://api.example.com/kept", "Location")
        with Conn(plain_port) as c:  # the 308 left the POST's body unread: that one closed
            r = c.request("GET", "/plain/p")
            assert_eq(echo(r).get("path"), "/p", "http-only route over http")
        with TlsConn(tls_port, pki) as c:
            for path in ("/secure/x", "/moved/x", "/kept"):
                assert_eq(c.request("GET", path).status, 200, "https to %s" % path)
            assert_gateway_error(c.request("GET", "/plain"), 404)
            assert_eq(c.request("GET", "/other").status, 200, "a route for both")
    finally:
        stop(w, backend)


# ---------------------------------------------------------------- configuration


def test_start_up_checks_tls_settings_and_errors_name_the_files():
    pki = Pki()
    cert, key = pki.leaf("one", "one.test")
    other_cert, other_key = pki.leaf("two", "two.test")
    missing = os.path.join(pki.dir, "missing.crt")
    missing_ca = os.path.join(pki.dir, "no-ca.pem")
    good = {"ssl_cert": cert, "ssl_cert_key": key}
    # (what, `weir -t` or a real start-up, the listener's flag, weir settings, None when the
    # config is good, else what stderr must name)
    cases = [
        ("a good certificate", "-t", "ssl", good, None),
        ("a missing certificate file", "-t", "ssl", dict(good, ssl_cert=missing), [missing]),
        ("a mismatched key", "-t", "ssl", dict(good, ssl_cert_key=other_key),
         [other_key, "mismatch"]),
        ("a key as certificate", "-t", "ssl", dict(good, ssl_cert=key), ["weir.ssl_cert"]),
        ("a TLS listener without a certificate", "-t", "ssl", {},
         ["weir.proxy_listen[0]", "ssl_cert"]),
        ("a certificate without its key", "-t", "ssl", {"ssl_cert": cert},
         ["weir.ssl_cert_key"]),
        ("a bad cipher list", "-t", "ssl", dict(good, ssl_ciphers="NO-SUCH-CIPHER"),
         ["weir.ssl_ciphers"]),
        ("another Kong listener flag", "-t", "http2", {}, ["http2", "not supported"]),
        # and the real start-up fails the same way, naming the file
        ("start-up with a missing file", "start", "ssl", dict(good, ssl_cert=missing), [missing]),
        # client certificates
        ("client verification without a CA file", "-t", "ssl",
         dict(good, ssl_verify_client="required"), ["weir.ssl_verify_client", "ssl_client_ca"]),
        ("a missing client CA file", "-t", "ssl",
         dict(good, ssl_verify_client="optional", ssl_client_ca=missing_ca), [missing_ca]),
        ("a bad client verification mode", "-t", "ssl",
         dict(good, ssl_verify_client="sometimes", ssl_client_ca=pki.ca),
         ["weir.ssl_verify_client"]),
        ("a good client certificate setting", "-t", "ssl",
         dict(good, ssl_verify_client="required", ssl_client_ca=pki.ca), None),
    ]
    for what, mode, flag, settings, named in cases:
        cfg = base_config(None)
        cfg["weir"]["proxy_listen"] = ["127.0.0.1:%d %s" % (_free_port(), flag)]
        cfg["weir"].update(settings)
        args = ["-c", write_config_file(cfg)]
        rc, out, err = run_weir(["-t"] + args if mode == "-t" else args)
        if named is None:
            assert_eq(rc, 0, "%s (%s): accepted (%s)" % (what, mode, err))
        else:
            check(rc != 0 and all(n in err for n in named),
                  "%s (%s): refused naming %r: exit %d, %s" % (what, mode, named, rc, err))


def test_plugins_see_the_https_scheme_on_tls_connections():
    from test_plugin_runtime import handler, plugin_tree
    pki = Pki()
    root = plugin_tree({"scheme": handler(1000, """
function P:access(conf)
  return weir.response.exit(200, {scheme = weir.request.get_scheme()})
end""")})
    backend = start_backend()
    cfg = tls_config(pki, backend.port, plugins=["bundled", "scheme"], plugin_paths=[root])
    cfg["plugins"] = [{"name": "scheme"}]
    w = start_weir(cfg)
    try:
        tls_port, plain_port = ports(w)
        with TlsConn(tls_port, pki) as c:
            assert_eq(json.loads(c.request("GET", "/").body)["scheme"], "https", "over TLS")
        with Conn(plain_port) as c:
            assert_eq(json.loads(c.request("GET", "/").body)["scheme"], "http", "plain")
    finally:
        stop(w, backend)


# ---------------------------------------------------------------- client certificates


def _client_cert(pki, name, cn):
    """A client certificate (leaf + intermediate) signed by the test PKI."""
    return pki.leaf(name, cn)


def _request_with(port, pki, cert=None, path="/", headers=None):
    """One request over TLS presenting `cert` ((crt, key) or None); the response, or the
    SSLError/closed connection that ended it (TLS 1.3 reports a refused client certificate after
    the client's handshake has finished, at the first read)."""
    ctx = client_context(pki)
    if cert:
        ctx.load_cert_chain(*cert)
    try:
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5))
    except (ssl.SSLError, ConnectionResetError) as e:
        return e
    try:
        c = TlsConn.__new__(TlsConn)
        c.timeout, c.sock, c.src = 5.0, s, _Source(sock=s)
        try:
            return c.request("GET", path, headers=headers)
        except (ssl.SSLError, ConnectionResetError, AssertionError) as e:
            return e
    finally:
        s.close()


def _fingerprint(path):
    out = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-fingerprint", "-sha256"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1].replace(":", "").lower()


def test_required_client_certificate_is_verified_and_forwarded():
    pki = Pki()
    good = _client_cert(pki, "alice", "alice")
    other = Pki()  # a certificate from a CA the gateway does not trust
    stranger = _client_cert(other, "mallory", "mallory")
    w, b = weir_with_tls(pki, ssl_client_ca=pki.ca, ssl_verify_client="required",
                         ssl_client_cert_headers=True)
    try:
        tls_port, plain_port = ports(w)
        r = _request_with(tls_port, pki, good, headers={"X-Client-Cert-Subject": "CN=spoof"})
        check(not isinstance(r, Exception), "a valid client certificate was refused: %r" % r)
        e = echo(r)
        assert_eq(e.headers_named("X-Client-Cert-Subject"), ["CN=alice"], "subject upstream")
        assert_eq(e.header("X-Client-Cert-Fingerprint"), _fingerprint(pki.path("alice.leaf")),
                  "fingerprint upstream")
        for cert, what in ((None, "no certificate"), (stranger, "an untrusted certificate")):
            r = _request_with(tls_port, pki, cert)
            check(isinstance(r, Exception), "%s was accepted: %r" % (what, r))
        # the plain listener is not affected, and a spoofed header is removed there too
        with Conn(plain_port) as c:
            e = echo(c.request("GET", "/", headers={"X-Client-Cert-Subject": "CN=spoof"}))
            assert_eq(e.header("X-Client-Cert-Subject"), None, "spoofed header on plain HTTP")
        wait_until(lambda: "peer did not return a certificate" in w.stderr_text() and
                   "certificate verify failed" in w.stderr_text(), what="the refusals logged")
    finally:
        stop(w, b)


def test_optional_client_certificate_and_get_tls():
    from test_plugin_runtime import handler, plugin_tree
    pki = Pki()
    good = _client_cert(pki, "bob", "bob")
    root = plugin_tree({"tlsinfo": handler(1000, """
function P:access(conf)
  local t = weir.client.get_tls()
  if not t then return weir.response.exit(200, {plain = true}) end
  return weir.response.exit(200, t)
end""")})
    backend = start_backend()
    cfg = tls_config(pki, backend.port, ssl_client_ca=pki.ca, ssl_verify_client="optional",
                     plugins=["bundled", "tlsinfo"], plugin_paths=[root])
    cfg["plugins"] = [{"name": "tlsinfo"}]
    w = start_weir(cfg)
    try:
        tls_port, plain_port = ports(w)
        r = _request_with(tls_port, pki, good)
        check(not isinstance(r, Exception), "a valid client certificate was refused: %r" % r)
        t = json.loads(r.body)
        assert_eq(t["client_subject"], "CN=bob", "client_subject")
        assert_eq(t["client_fingerprint"], _fingerprint(pki.path("bob.leaf")), "fingerprint")
        assert_eq(t["protocol"], "TLSv1.3", "protocol")
        check(t.get("cipher"), "a cipher name: %r" % t)
        r = _request_with(tls_port, pki, None)
        check(not isinstance(r, Exception), "no certificate refused with optional: %r" % r)
        t = json.loads(r.body)
        check("client_subject" not in t, "a subject without a certificate: %r" % t)
        with handshake(tls_port, pki, "svc.example.com") as s:
            c = TlsConn.__new__(TlsConn)
            c.timeout, c.sock, c.src = 5.0, s, _Source(sock=s)
            assert_eq(json.loads(c.request("GET", "/").body)["server_name"], "svc.example.com",
                      "server_name")
        with Conn(plain_port) as c:
            assert_eq(json.loads(c.request("GET", "/").body), {"plain": True}, "plain HTTP")
    finally:
        stop(w, backend)


def test_a_session_from_before_client_certificates_were_required_does_not_resume():
    pki = Pki()
    w, b = weir_with_tls(pki)
    try:
        tls_port, _ = ports(w)
        sess = os.path.join(make_tmpdir("sess"), "s.pem")
        check("New," in _s_client(tls_port, "-sess_out", sess), "first handshake")
        check("Reused," in _s_client(tls_port, "-sess_in", sess), "resumes before the change")
        cfg = dict(w.config)
        cfg["weir"] = dict(cfg["weir"], ssl_client_ca=pki.ca, ssl_verify_client="required")
        w.reload(cfg)
        wait_until(lambda: "configuration reloaded" in w.stderr_text(), what="the reload")
        out = _s_client(tls_port, "-sess_in", sess)
        check("Reused," not in out, "a session resumed past the new requirement: %s" % out[-800:])
    finally:
        stop(w, b)
