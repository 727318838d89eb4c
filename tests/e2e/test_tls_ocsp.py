"""OCSP stapling from files: weir.ssl_ocsp_response_file for the default certificate,
ocsp_response_file / ocsp_response_file_alt on certificate entities (docs/tls.md).

The test PKI (test_tls.Pki: root -> intermediate -> leaves) gets an OCSP signer certificate issued
by the intermediate (extendedKeyUsage OCSPSigning); responses are made with `openssl ocsp -index
... -rsigner ... -respout`, and, where a time outside "now" is needed, with the cryptography
package. The client is `openssl s_client -status`, which prints the response it was stapled."""

import datetime
import json
import os
import re
import shutil
import subprocess

from harness import (assert_eq, check, http, run_weir, start_backend, start_weir, timeout,
                     wait_until, write_config_file)
from test_tls import Pki, _openssl, admin_port, ports, stop, tls_config

JSON = {"Content-Type": "application/json"}


class Ocsp:
    """An OCSP signer for the PKI's intermediate CA and an index of certificate statuses."""

    def __init__(self, pki):
        self.pki = pki
        pki._key("ocsp")
        _openssl("req", "-new", "-key", pki.path("ocsp.key"), "-out", pki.path("ocsp.csr"),
                 "-subj", "/CN=Weir Test OCSP Signer")
        pki._ext("ocsp.ext", "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                             "extendedKeyUsage=critical,OCSPSigning\n")
        _openssl("x509", "-req", "-in", pki.path("ocsp.csr"), "-CA", pki.path("inter.crt"),
                 "-CAkey", pki.path("inter.key"), "-CAcreateserial", "-out",
                 pki.path("ocsp.crt"), "-days", "30", "-extfile", pki.path("ocsp.ext"))

    def response(self, name, leaf, status="V", out=None):
        """A DER response for certificate file `leaf` with status V (good) or R (revoked), made
        by `openssl ocsp` from an index; returns its path."""
        serial = subprocess.run(["openssl", "x509", "-in", leaf, "-noout", "-serial"], check=True,
                                capture_output=True, text=True).stdout.strip().split("=")[1]
        revoked = "261101000000Z" if status == "R" else ""
        index = self.pki.path(name + ".index")
        with open(index, "w") as f:
            f.write("%s\t301231000000Z\t%s\t%s\tunknown\t/CN=x\n" % (status, revoked, serial))
        out = out or self.pki.path(name + ".der")
        _openssl("ocsp", "-index", index, "-rsigner", self.pki.path("ocsp.crt"), "-rkey",
                 self.pki.path("ocsp.key"), "-CA", self.pki.path("inter.crt"), "-issuer",
                 self.pki.path("inter.crt"), "-cert", leaf, "-no_nonce", "-ndays", "1",
                 "-respout", out)
        return out

    def timed_response(self, name, leaf, this_update, next_update):
        """A good response with the given validity (datetime, UTC), by the cryptography package."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509 import ocsp

        def load(ext):
            with open(self.pki.path(ext), "rb") as f:
                return f.read()
        with open(leaf, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        issuer = x509.load_pem_x509_certificate(load("inter.crt"))
        signer = x509.load_pem_x509_certificate(load("ocsp.crt"))
        key = serialization.load_pem_private_key(load("ocsp.key"), None)
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=cert, issuer=issuer, algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.GOOD, this_update=this_update,
            next_update=next_update, revocation_time=None, revocation_reason=None,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, signer).certificates([signer])
        out = self.pki.path(name + ".der")
        with open(out, "wb") as f:
            f.write(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
        return out


def s_client(port, pki, *args, sni=None):
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", pki.ca]
    if sni:
        cmd += ["-servername", sni]
    p = subprocess.run(cmd + list(args), input=b"", capture_output=True, timeout=10)
    return p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")


def stapled(out):
    """(OCSP response status, cert status, serial) from `s_client -status`, None when none."""
    if "OCSP response: no response sent" in out:
        return None
    m = re.search(r"OCSP Response Status: (\w+)", out)
    check(m, "s_client -status printed no OCSP section:\n" + out[:2000])
    cs = re.search(r"Cert Status: (\w+)", out)
    serial = re.search(r"Serial Number: ([0-9A-F]+)", out)
    return m.group(1), cs and cs.group(1), serial and serial.group(1)


def serial_of(leaf):
    return subprocess.run(["openssl", "x509", "-in", leaf, "-noout", "-serial"], check=True,
                          capture_output=True, text=True).stdout.strip().split("=")[1]


def ocsp_gateway(pki, ocsp, **weir):
    """A TLS gateway whose default certificate (default.test) staples a good response."""
    backend = start_backend()
    cfg = tls_config(pki, backend.port, **weir)
    cfg["weir"]["ssl_ocsp_response_file"] = ocsp.response("default", pki.path("default.leaf"))
    return start_weir(cfg), backend


def check_mode(cfg):
    return run_weir(["-t", "-c", write_config_file(cfg)])


# ---------------------------------------------------------------- stapling


def test_the_default_certificate_staples_its_response_only_to_clients_that_ask():
    pki = Pki()
    ocsp = Ocsp(pki)
    w, b = ocsp_gateway(pki, ocsp)
    try:
        tls_port, _ = ports(w)
        for version in ("-tls1_3", "-tls1_2"):
            out = s_client(tls_port, pki, "-status", version)
            got = stapled(out)
            check(got is not None, "%s: no response stapled:\n%s" % (version, out[:2000]))
            assert_eq(got[:2], ("successful", "good"), version + " stapled response")
            assert_eq(got[2], serial_of(pki.path("default.leaf")), version + " serial")
            check("Responder Id: CN = Weir Test OCSP Signer" in out, version + " responder")
        # TLS 1.2 shows the CertificateStatus message in the trace: there when asked, else not
        asked = s_client(tls_port, pki, "-status", "-tls1_2", "-msg")
        check("CertificateStatus" in asked, "CertificateStatus sent when asked")
        quiet = s_client(tls_port, pki, "-tls1_2", "-msg")
        check("Verify return code: 0" in quiet, "the handshake without status_request")
        check("CertificateStatus" not in quiet and "OCSP" not in quiet,
              "nothing stapled without status_request:\n" + quiet[:2000])
        quiet13 = s_client(tls_port, pki, "-tls1_3", "-tlsextdebug")
        check("status request" not in quiet13 and "Verify return code: 0" in quiet13,
              "TLS 1.3 without status_request gets no status extension:\n" + quiet13[:2000])
    finally:
        stop(w, b)


def test_sni_certificates_and_cert_alt_staple_their_own_responses():
    pki = Pki()
    ocsp = Ocsp(pki)
    api_crt, _ = pki.leaf("api", "api.example.com")
    plain_crt, _ = pki.leaf("plain", "plain.example.com")
    # an RSA certificate beside an ECDSA one, both issued by the intermediate
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
             pki.path("rsa.key"))
    _openssl("req", "-new", "-key", pki.path("rsa.key"), "-out", pki.path("rsa.csr"), "-subj",
             "/CN=api.example.com")
    _openssl("x509", "-req", "-in", pki.path("rsa.csr"), "-CA", pki.path("inter.crt"), "-CAkey",
             pki.path("inter.key"), "-CAcreateserial", "-out", pki.path("rsa.leaf"), "-days",
             "30", "-extfile", pki.path("api.ext"))
    good = ocsp.response("api", pki.path("api.leaf"))
    revoked_rsa = ocsp.response("rsa", pki.path("rsa.leaf"), status="R")
    backend = start_backend()
    cfg = tls_config(pki, backend.port)
    cfg["certificates"] = [
        {"cert": pki.pem("api", "crt"), "key": pki.pem("api", "key"),
         "cert_alt": pki.pem("rsa", "leaf") + pki.pem("inter", "crt"),
         "key_alt": pki.pem("rsa", "key"),
         # relative to the configuration file's directory (the test's temporary directories
         # are siblings)
         "ocsp_response_file": os.path.join("..", os.path.basename(pki.dir), "api.der"),
         "ocsp_response_file_alt": revoked_rsa,
         "snis": ["api.example.com"]},
        {"cert": pki.pem("plain", "crt"), "key": pki.pem("plain", "key"),
         "snis": ["plain.example.com"]},
    ]
    w = start_weir(cfg)
    try:
        tls_port, _ = ports(w)
        out = s_client(tls_port, pki, "-status", "-sigalgs", "ecdsa_secp256r1_sha256",
                       sni="api.example.com")
        assert_eq(stapled(out), ("successful", "good", serial_of(api_crt)), "ECDSA certificate")
        out = s_client(tls_port, pki, "-status", "-sigalgs", "rsa_pss_rsae_sha256",
                       sni="api.example.com")
        # revoked is stapled as it is: the client decides (nginx does the same)
        assert_eq(stapled(out), ("successful", "revoked", serial_of(pki.path("rsa.leaf"))),
                  "RSA certificate (cert_alt)")
        check("Revocation Time" in out, "the revocation time reaches the client")
        out = s_client(tls_port, pki, "-status", sni="plain.example.com")
        assert_eq(stapled(out), None, "a certificate without a response file")
        check("Verify return code: 0" in out, "its handshake succeeded:\n" + out[:1500])
        check("revoked" in w.stderr_text() and revoked_rsa in w.stderr_text(),
              "a warning names the revoked response's file")
    finally:
        stop(w, backend)


# ---------------------------------------------------------------- errors


def test_bad_response_files_are_errors_that_name_the_file():
    pki = Pki()
    ocsp = Ocsp(pki)
    backend = start_backend()
    cfg = tls_config(pki, backend.port)
    other, _ = pki.leaf("other", "other.test")

    def with_file(path):
        c = json.loads(json.dumps(cfg))
        c["weir"]["ssl_ocsp_response_file"] = path
        return check_mode(c)

    rc, _, err = with_file(ocsp.response("default", pki.path("default.leaf")))
    assert_eq(rc, 0, "a good response (%s)" % err)
    missing = pki.path("missing.der")
    rc, _, err = with_file(missing)
    check(rc != 0 and missing in err and "weir.ssl_ocsp_response_file" in err and
          "No such file" in err, "a missing file: %d %s" % (rc, err))
    rc, _, err = with_file(pki.path("default.crt"))
    check(rc != 0 and pki.path("default.crt") in err and "not a DER-encoded OCSP response" in err,
          "a PEM certificate as response: %s" % err)
    not_for = ocsp.response("other", other)
    rc, _, err = with_file(not_for)
    check(rc != 0 and not_for in err and "not for the certificate" in err,
          "a response for another certificate: %s" % err)
    try_later = pki.path("trylater.der")
    with open(try_later, "wb") as f:
        f.write(bytes.fromhex("30030a0103"))  # OCSPResponse { responseStatus tryLater }
    rc, _, err = with_file(try_later)
    check(rc != 0 and try_later in err and "not successful" in err and "trylater" in err,
          "an unsuccessful response: %s" % err)
    c = json.loads(json.dumps(cfg))
    del c["weir"]["ssl_cert"], c["weir"]["ssl_cert_key"], c["weir"]["proxy_listen"][0]
    c["weir"]["ssl_ocsp_response_file"] = not_for
    rc, _, err = check_mode(c)
    check(rc != 0 and "weir.ssl_ocsp_response_file" in err and "ssl_cert" in err,
          "a response file without ssl_cert: %s" % err)
    # the start itself fails the same way
    c = json.loads(json.dumps(cfg))
    c["weir"]["ssl_ocsp_response_file"] = missing
    rc, _, err = run_weir(["-c", write_config_file(c)])
    check(rc != 0 and missing in err, "start-up with a missing file: %d %s" % (rc, err))
    backend.stop()


def test_an_expired_response_is_a_warning_and_not_stapled():
    pki = Pki()
    ocsp = Ocsp(pki)
    backend = start_backend()
    cfg = tls_config(pki, backend.port)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    stale = ocsp.timed_response("stale", pki.path("default.leaf"),
                                now - datetime.timedelta(days=2), now - datetime.timedelta(days=1))
    cfg["weir"]["ssl_ocsp_response_file"] = stale
    w = start_weir(cfg)
    try:
        tls_port, _ = ports(w)
        out = s_client(tls_port, pki, "-status")
        assert_eq(stapled(out), None, "an expired response is not stapled")
        check("Verify return code: 0" in out, "the handshake goes on")
        check("expired" in w.stderr_text() and stale in w.stderr_text(),
              "the warning names the file: " + w.stderr_text()[-1000:])
    finally:
        stop(w, backend)


@timeout(40)
def test_a_response_that_expires_while_served_stops_being_stapled():
    pki = Pki()
    ocsp = Ocsp(pki)
    backend = start_backend()
    cfg = tls_config(pki, backend.port)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    short = ocsp.timed_response("short", pki.path("default.leaf"),
                                now - datetime.timedelta(hours=1), now + datetime.timedelta(seconds=4))
    cfg["weir"]["ssl_ocsp_response_file"] = short
    w = start_weir(cfg)
    try:
        tls_port, _ = ports(w)
        assert_eq(stapled(s_client(tls_port, pki, "-status"))[:2], ("successful", "good"),
                  "stapled while valid")
        wait_until(lambda: stapled(s_client(tls_port, pki, "-status")) is None, timeout=15,
                   interval=0.5, what="no longer stapled after nextUpdate")
        wait_until(lambda: "has expired" in w.stderr_text(), what="the expiry logged")
        assert_eq(w.stderr_text().count("has expired"), 1, "logged once")
    finally:
        stop(w, backend)


# ---------------------------------------------------------------- changes


def test_sighup_and_admin_changes_read_the_response_files_again():
    pki = Pki()
    ocsp = Ocsp(pki)
    backend = start_backend()
    cfg = tls_config(pki, backend.port, store={"type": "file", "path": "store.json"})
    resp_file = ocsp.response("default", pki.path("default.leaf"))
    cfg["weir"]["ssl_ocsp_response_file"] = resp_file
    w = start_weir(cfg)
    try:
        tls_port, _ = ports(w)
        assert_eq(stapled(s_client(tls_port, pki, "-status"))[1], "good", "before")
        # the file is replaced (a revocation): SIGHUP staples the new response
        ocsp.response("default-revoked", pki.path("default.leaf"), status="R", out=resp_file)
        w.reload(w.config)
        wait_until(lambda: stapled(s_client(tls_port, pki, "-status"))[1] == "revoked",
                   timeout=10, interval=0.2, what="the renewed file stapled after SIGHUP")
        # an admin change re-reads it too
        shutil.copy(ocsp.response("default-good", pki.path("default.leaf")), resp_file)
        new_crt, _ = pki.leaf("new", "new.example.org")
        new_resp = ocsp.response("new", pki.path("new.leaf"))
        r = http("POST", admin_port(w), "/certificates", headers=JSON, body=json.dumps({
            "cert": pki.pem("new", "crt"), "key": pki.pem("new", "key"),
            "ocsp_response_file": new_resp, "snis": ["new.example.org"]}))
        assert_eq(r.status, 201, "POST /certificates (%s)" % r.body[:300])
        wait_until(lambda: stapled(s_client(tls_port, pki, "-status", sni="new.example.org")) ==
                   ("successful", "good", serial_of(new_crt)), timeout=10, interval=0.2,
                   what="the new certificate's response stapled")
        assert_eq(stapled(s_client(tls_port, pki, "-status"))[1], "good",
                  "the default certificate's file read again by the admin change")
        # an admin change naming a bad file fails, naming it, and changes nothing
        bad = pki.path("nope.der")
        r = http("POST", admin_port(w), "/certificates", headers=JSON, body=json.dumps({
            "cert": pki.pem("new", "crt"), "key": pki.pem("new", "key"),
            "ocsp_response_file": bad, "snis": ["bad.example.org"]}))
        check(r.status == 400 and bad in r.body.decode(), "POST with a missing file: %d %s" %
              (r.status, r.body[:500]))
        r = http("POST", admin_port(w), "/certificates", headers=JSON, body=json.dumps({
            "cert": pki.pem("new", "crt"), "key": pki.pem("new", "key"),
            "ocsp_response_file_alt": new_resp}))
        check(r.status == 400 and "ocsp_response_file_alt" in r.body.decode() and "cert_alt" in r.body.decode(),
              "ocsp_response_file_alt without cert_alt: %d %s" % (r.status, r.body[:500]))
    finally:
        stop(w, backend)
