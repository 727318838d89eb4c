"""Certificates, SNIs and CA certificates through the admin API and the declarative file: real
keys made by the openssl CLI, checked by Weir with OpenSSL when stored, kept by the store."""

import hashlib
import json
import os
import subprocess

from harness import (assert_eq, base_config, check, gateway, get, http, make_tmpdir, run_weir,
                     start_weir, write_config_file)

JSON = {"Content-Type": "application/json"}
STORE = {"type": "file", "path": "store.json"}


def _openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


def make_keys():
    """A directory with rsa.crt/.key, ec.crt/.key (both for a.example.com), rsa2.crt/.key,
    ca.crt (CA:TRUE) and leaf.crt (CA:FALSE); returns a function reading one of them."""
    d = make_tmpdir("certs")
    p = lambda name: os.path.join(d, name)  # noqa: E731
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("rsa.key"), "-out",
             p("rsa.crt"), "-days", "30", "-subj", "/CN=a.example.com")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("rsa2.key"), "-out",
             p("rsa2.crt"), "-days", "30", "-subj", "/CN=b.example.com")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", p("ec.key"), "-out", p("ec.crt"), "-days", "30", "-subj",
             "/CN=a.example.com")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("ca.key"), "-out",
             p("ca.crt"), "-days", "30", "-subj", "/CN=Test CA", "-addext",
             "basicConstraints=critical,CA:TRUE")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("leaf.key"), "-out",
             p("leaf.crt"), "-days", "30", "-subj", "/CN=leaf", "-addext",
             "basicConstraints=critical,CA:FALSE")

    def read(name):
        with open(p(name)) as f:
            return f.read()
    read.path = p
    return read


def admin(w):
    return int(w.config["weir"]["admin_listen"][0].rsplit(":", 1)[1])


def call(w, method, path, body=None):
    r = http(method, admin(w), path, headers=JSON if body is not None else None,
             body=json.dumps(body) if body is not None else None)
    return r.status, (r.json() if r.body else None)


def test_certificate_with_snis_is_checked_stored_and_listed():
    k = make_keys()
    with gateway(store=STORE) as (w, b):
        st, cert = call(w, "POST", "/certificates", {
            "cert": k("rsa.crt"), "key": k("rsa.key"), "cert_alt": k("ec.crt"),
            "key_alt": k("ec.key"), "snis": ["a.example.com", "*.b.example.com"]})
        assert_eq(st, 201, "POST /certificates", cert)
        assert_eq(cert["snis"], ["a.example.com", "*.b.example.com"], "snis listed by name")
        assert_eq(cert["cert"], k("rsa.crt"), "cert stored as given")
        st, snis = call(w, "GET", "/snis")
        assert_eq(sorted(s["name"] for s in snis["data"]), ["*.b.example.com", "a.example.com"],
                  "sni entities")
        for s in snis["data"]:
            assert_eq(s["certificate"], {"id": cert["id"]}, "sni's certificate")
        st, one = call(w, "GET", "/snis/a.example.com")
        assert_eq(st, 200, "GET /snis/{name}")
        st, nested = call(w, "GET", "/certificates/%s/snis" % cert["id"])
        assert_eq(len(nested["data"]), 2, "GET /certificates/{c}/snis")

        # PATCH replaces the set: one kept (same sni id), one dropped, one added
        kept_id = one["id"]
        st, patched = call(w, "PATCH", "/certificates/" + cert["id"],
                           {"snis": ["a.example.com", "c.example.com"]})
        assert_eq(st, 200, "PATCH snis", patched)
        assert_eq(patched["snis"], ["a.example.com", "c.example.com"], "snis after PATCH")
        st, again = call(w, "GET", "/snis/a.example.com")
        assert_eq(again["id"], kept_id, "a name the certificate keeps keeps its sni id")
        assert_eq(call(w, "GET", "/snis/*.b.example.com")[0], 404, "dropped sni is gone")

        # a name another certificate has is a conflict, and nothing changes
        st, body = call(w, "POST", "/certificates", {"cert": k("rsa2.crt"), "key": k("rsa2.key"),
                                                      "snis": ["c.example.com"]})
        assert_eq(st, 409, "sni taken", body)
        assert_eq(body["name"], "unique constraint violation", "error name")
        assert_eq(body["fields"], {"snis": "c.example.com"}, "fields")
        assert_eq(len(call(w, "GET", "/certificates")[1]["data"]), 1, "no certificate added")

        # deleting the certificate deletes its snis
        assert_eq(call(w, "DELETE", "/certificates/" + cert["id"])[0], 204, "DELETE")
        assert_eq(call(w, "GET", "/snis")[1]["data"], [], "snis deleted with it")


def test_certificates_that_do_not_hold_together_are_refused():
    k = make_keys()
    with gateway(store=STORE) as (w, b):
        st, body = call(w, "POST", "/certificates", {"cert": k("rsa.crt"), "key": k("rsa2.key")})
        assert_eq(st, 400, "key of another certificate", body)
        assert_eq(body["name"], "schema violation", "error name")
        assert_eq(body["fields"], {"key": "does not match cert"}, "fields")

        st, body = call(w, "POST", "/certificates", {
            "cert": k("rsa.crt"), "key": k("rsa.key"), "cert_alt": k("rsa2.crt"),
            "key_alt": k("rsa2.key")})
        assert_eq(st, 400, "alternate of the same key type", body)
        check("cert_alt" in body["fields"], "cert_alt named: %r" % body)

        garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
        st, body = call(w, "POST", "/certificates", {"cert": garbage, "key": k("rsa.key")})
        assert_eq(st, 400, "unparseable certificate", body)
        assert_eq(body["fields"]["cert"], "not a valid PEM certificate", "cert message")

        st, body = call(w, "POST", "/certificates", {"cert": k("rsa.crt")})
        assert_eq(st, 400, "key missing", body)
        assert_eq(body["fields"], {"key": "required field missing"}, "fields")

        st, body = call(w, "POST", "/snis", {"name": "x.example.com",
                                              "certificate": {"id": "7f0d1c52-8f4e-4c3e-9b1a-"
                                                                    "2f6d3e4c5b6a"}})
        assert_eq(st, 400, "sni of a missing certificate", body)
        assert_eq(body["name"], "foreign key violation", "error name")
        assert_eq(call(w, "GET", "/certificates")[1]["data"], [], "nothing stored")


def test_ca_certificates_need_ca_true_and_get_their_digest():
    k = make_keys()
    with gateway(store=STORE) as (w, b):
        st, body = call(w, "POST", "/ca_certificates", {"cert": k("leaf.crt")})
        assert_eq(st, 400, "a leaf is not a CA", body)
        assert_eq(body["fields"], {"cert": "not a CA certificate (basic constraints CA:TRUE)"},
                  "fields")
        st, ca = call(w, "POST", "/ca_certificates", {"cert": k("ca.crt")})
        assert_eq(st, 201, "POST /ca_certificates", ca)
        der = subprocess.run(["openssl", "x509", "-in", k.path("ca.crt"), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        assert_eq(ca["cert_digest"], hashlib.sha256(der).hexdigest(), "cert_digest")
        st, body = call(w, "POST", "/ca_certificates", {"cert": k("ca.crt")})
        assert_eq(st, 409, "the same CA twice", body)
        assert_eq(list(body["fields"]), ["cert_digest"], "conflict on the digest")


def test_certificates_survive_a_restart_and_round_trip_through_config():
    k = make_keys()
    cfg = base_config(None, store=STORE)
    w = start_weir(cfg)
    try:
        st, cert = call(w, "POST", "/certificates", {"cert": k("rsa.crt"), "key": k("rsa.key"),
                                                      "snis": ["a.example.com"]})
        assert_eq(st, 201, "POST /certificates", cert)
        st, ca = call(w, "POST", "/ca_certificates", {"cert": k("ca.crt")})
        assert_eq(st, 201, "POST /ca_certificates", ca)
        st, exported = call(w, "GET", "/config")
        assert_eq([s["name"] for s in exported["certificates"][0]["snis"]], ["a.example.com"],
                  "snis nested in the export")
        tmpdir = w.tmpdir
    finally:
        w.stop()
    w = start_weir(cfg, tmpdir=tmpdir)
    try:
        st, certs = call(w, "GET", "/certificates")
        assert_eq([(c["id"], c["snis"]) for c in certs["data"]],
                  [(cert["id"], ["a.example.com"])], "certificate back after restart")
        assert_eq(call(w, "GET", "/ca_certificates/" + ca["id"])[1]["cert_digest"],
                  ca["cert_digest"], "CA certificate back after restart")
        st, body = call(w, "POST", "/config", exported)
        assert_eq(st, 201, "POST /config with the export", body)
        assert_eq(call(w, "GET", "/config")[1], exported, "GET /config unchanged by the round trip")
    finally:
        w.stop()


def test_declarative_certificates_are_checked_by_weir_t():
    k = make_keys()
    good = base_config(None)
    good["certificates"] = [{"cert": k("rsa.crt"), "key": k("rsa.key"),
                             "snis": ["a.example.com", {"name": "www.example.com"}]}]
    rc, out, err = run_weir(["-t", "-c", write_config_file(good)])
    assert_eq(rc, 0, "weir -t on good certificates", out + err)
    bad = base_config(None)
    bad["certificates"] = [{"cert": k("rsa.crt"), "key": k("ec.key")}]
    bad["snis"] = [{"name": "a.example.com", "certificate": {"id": "7f0d1c52-8f4e-4c3e-9b1a-"
                                                                   "2f6d3e4c5b6a"}}]
    rc, out, err = run_weir(["-t", "-c", write_config_file(bad)])
    assert_eq(rc, 1, "weir -t on a mismatched key", out + err)
    check("certificates[0].key: does not match cert" in err, err)
    check('snis[0].certificate: no certificate with id "7f0d1c52-8f4e-4c3e-9b1a-2f6d3e4c5b6a"'
          in err, err)
