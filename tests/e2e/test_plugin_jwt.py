"""The bundled jwt plugin (issue 5): Kong's config and consumers' JWT credentials (HS256/384/512,
RS256/384/512, ES256/384/512), leeway, issuer and audience checks, anonymous access, and JWKS
sources (a file, and a URL served by a real HTTP server whose keys rotate mid-test). Every token
and key is made by PyJWT and `cryptography` (Debian's /usr/bin/python3), never by Weir."""

import base64
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import json
import os
import subprocess
import threading
import time

from harness import (Skip, assert_eq, base_config, check, echo, gateway, get, http, make_tmpdir,
                     wait_until)
from test_admin_write import STORE, Admin

PYTHON = "/usr/bin/python3"

# Runs under /usr/bin/python3: reads {"keys": {name: spec}, "tokens": [spec]} on stdin, writes
# {"keys": {name: {"private", "public", "jwk"}}, "tokens": [token]}.
MINT = r'''
import base64, hashlib, hmac, json, sys, time
import jwt
import datetime
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

req = json.load(sys.stdin)
now = int(time.time())
keys, out = {}, {}
CURVES = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}
for name, spec in req.get("keys", {}).items():
    if spec == "rsa":
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(k.public_key()))
    else:
        k = ec.generate_private_key(CURVES[spec]())
        jwk = json.loads(ECAlgorithm.to_jwk(k.public_key()))
    keys[name] = k
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(k.public_key()).serial_number(1)
            .not_valid_before(datetime.datetime(2020, 1, 1))
            .not_valid_after(datetime.datetime(2100, 1, 1)).sign(k, hashes.SHA256()))
    jwk["x5c"] = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    out[name] = {
        "private": k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()).decode(),
        "public": k.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "jwk": jwk}

def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

def claims(spec):
    c = dict(spec.get("claims", {}))
    for k, v in spec.get("relative", {}).items():   # times relative to now
        c[k] = now + v
    return c

tokens = []
for spec in req.get("tokens", []):
    c = claims(spec)
    alg = spec["alg"]
    headers = spec.get("headers")
    if "private" in spec:
        key = keys[spec["private"]]
    elif "secret_b64" in spec:
        key = base64.b64decode(spec["secret_b64"])
    else:
        key = spec.get("secret")
    if spec.get("confuse"):
        # algorithm confusion, by hand (PyJWT refuses a PEM as an HMAC secret): an HS256
        # token whose "secret" is the RSA public key PEM an RS256 credential holds
        header = {"alg": alg, "typ": "JWT"}
        header.update(headers or {})
        signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(c).encode())
        secret = out[spec["confuse"]]["public"].encode()
        sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        token = signing_input + "." + b64(sig)
    elif alg == "none":
        token = jwt.encode(c, None, algorithm="none", headers=headers)
    else:
        token = jwt.encode(c, key, algorithm=alg, headers=headers)
    if spec.get("tamper"):
        h, p, s = token.split(".")
        forged = dict(c)
        forged.update(spec["tamper"])
        token = h + "." + b64(json.dumps(forged).encode()) + "." + s
    tokens.append(token)
json.dump({"keys": out, "tokens": tokens}, sys.stdout)
'''


def mint(tokens=(), keys=None):
    """Tokens (and keys) from PyJWT. keys: {name: "rsa" | "P-256" | "P-384" | "P-521"}. Each
    token: {"alg", "claims", "relative": {claim: seconds from now}, "headers", and one of
    "secret", "secret_b64", "private": key name; "confuse": an RSA key name (HS256 signed with
    its public PEM); "tamper": claims changed after signing}. Returns (tokens, keys)."""
    if not os.access(PYTHON, os.X_OK):
        raise Skip("no %s" % PYTHON)
    p = subprocess.run([PYTHON, "-c", MINT], input=json.dumps({"keys": keys or {},
                                                               "tokens": list(tokens)}),
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        if "No module named 'jwt'" in p.stderr:
            raise Skip("PyJWT (python3-jwt) is not installed for %s" % PYTHON)
        raise AssertionError("minting failed: %s" % p.stderr)
    doc = json.loads(p.stdout)
    return doc["tokens"], doc["keys"]


def mint_one(**spec):
    return mint([spec])[0][0]


ALICE_ID = "7c6a1f3e-0b7d-4d61-9a43-1f0e6f3b2a01"
BOB_ID = "7c6a1f3e-0b7d-4d61-9a43-1f0e6f3b2a02"
ANON_ID = "7c6a1f3e-0b7d-4d61-9a43-1f0e6f3b2a09"
SECRET = "alice-hmac-secret-0123456789abcdef"
CONSUMER_HEADERS = ["x-consumer-id", "x-consumer-custom-id", "x-consumer-username",
                    "x-credential-identifier", "x-anonymous-consumer"]


def consumers(alice_secrets=None, bob_secrets=None):
    return [
        {"id": ALICE_ID, "username": "alice", "custom_id": "cust-alice",
         "jwt_secrets": alice_secrets if alice_secrets is not None else
         [{"key": "alice-iss", "secret": SECRET}]},
        {"id": BOB_ID, "username": "bob", "jwt_secrets": bob_secrets or []},
        {"id": ANON_ID, "username": "anon"},
    ]


def jwt_gateway(config=None, cons=None, extra_plugins=(), **weir):
    def make(port):
        cfg = base_config(port, **weir)
        cfg["consumers"] = cons if cons is not None else consumers()
        cfg["plugins"] = [{"name": "jwt", "config": config or {}}] + list(extra_plugins)
        return cfg
    return gateway(make)


def bearer(token):
    return {"Authorization": "Bearer " + token}


def consumer_headers(seen):
    return {h: seen.header(h) for h in CONSUMER_HEADERS}


def assert_consumer(r, username, key, consumer_id=None):
    seen = echo(r)
    h = consumer_headers(seen)
    assert_eq((h["x-consumer-username"], h["x-credential-identifier"], h["x-anonymous-consumer"]),
              (username, key, None), "consumer headers upstream", seen)
    if consumer_id:
        assert_eq(h["x-consumer-id"], consumer_id, "consumer id", seen)
    return seen


def assert_refused(r, message, realm="weir", error=True, **fields):
    assert_eq(r.status, 401, "status", r)
    body = r.json()
    assert_eq(body, dict(fields, message=message), "body", r)
    challenge = 'Bearer realm="%s"' % realm + (', error="invalid_token"' if error else "")
    assert_eq(r.header("WWW-Authenticate"), challenge, "challenge", r)


def test_hs_tokens_identify_the_consumer_of_the_credential_their_iss_names():
    secrets = [{"key": "k256", "secret": SECRET},
               {"key": "k384", "secret": SECRET + "384", "algorithm": "HS384"},
               {"key": "k512", "secret": SECRET + "512", "algorithm": "HS512"}]
    tokens, _ = mint([{"alg": "HS256", "secret": SECRET, "claims": {"iss": "k256", "sub": "x"}},
                      {"alg": "HS384", "secret": SECRET + "384", "claims": {"iss": "k384"}},
                      {"alg": "HS512", "secret": SECRET + "512", "claims": {"iss": "k512"}}])
    with jwt_gateway(cons=consumers(alice_secrets=secrets)) as (w, b):
        for token, key in zip(tokens, ("k256", "k384", "k512")):
            seen = assert_consumer(get(w.port, "/o", headers=bearer(token)), "alice", key, ALICE_ID)
            assert_eq(seen.header("x-consumer-custom-id"), "cust-alice", "custom id")
            assert_eq(seen.header("authorization"), "Bearer " + token, "token forwarded")


def test_rs_and_es_tokens_are_verified_with_the_credentials_public_key():
    algs = [("RS256", "rsa"), ("RS384", "rsa"), ("RS512", "rsa"), ("ES256", "P-256"),
            ("ES384", "P-384"), ("ES512", "P-521")]
    keys = {"rsa": "rsa", "P-256": "P-256", "P-384": "P-384", "P-521": "P-521"}
    tokens, pems = mint([{"alg": alg, "private": k, "claims": {"iss": "key-" + alg}}
                         for alg, k in algs], keys)
    secrets = [{"key": "key-" + alg, "algorithm": alg, "rsa_public_key": pems[k]["public"]}
               for alg, k in algs]
    with jwt_gateway(cons=consumers(bob_secrets=secrets)) as (w, b):
        for token, (alg, _) in zip(tokens, algs):
            assert_consumer(get(w.port, "/o", headers=bearer(token)), "bob", "key-" + alg, BOB_ID)


def test_a_request_without_a_token_is_401_and_never_reaches_the_upstream():
    with jwt_gateway() as (w, b):
        before = b.stats()["requests"]
        assert_refused(get(w.port, "/o"), "No JWT found in request", error=False)
        assert_refused(get(w.port, "/o", headers={"Authorization": "Basic YTpi"}),
                       "No JWT found in request", error=False)
        assert_refused(get(w.port, "/o", headers={"Authorization": "Bearer "}),
                       "No JWT found in request", error=False)
        assert_refused(get(w.port, "/o?jwt="), "No JWT found in request", error=False)
        assert_eq(b.stats()["requests"], before, "the upstream saw none of them")


def test_a_malformed_token_is_401_bad_token():
    with jwt_gateway() as (w, b):
        for token, why in (("abc", "malformed token"), ("a.b", "malformed token"),
                           ("!!.e30.", "invalid base64 in header"),
                           ("e30.!!.", "invalid base64 in payload"),
                           ("WzFd.e30.", "header is not a JSON object"),
                           ("e30.bm90IGpzb24.", "payload is not a JSON object")):
            assert_refused(get(w.port, "/o", headers=bearer(token)), "Bad token; " + why)
        assert_refused(get(w.port, "/o?jwt"), "Unrecognizable token")


def test_tokens_are_found_in_the_configured_query_parameters_cookies_and_headers():
    token = mint_one(alg="HS256", secret=SECRET, claims={"iss": "alice-iss"})
    other = mint_one(alg="HS256", secret=SECRET, claims={"iss": "alice-iss", "n": 2})
    with jwt_gateway() as (w, b):
        assert_consumer(get(w.port, "/o?jwt=" + token), "alice", "alice-iss")
        assert_consumer(get(w.port, "/o", headers={"authorization": "bearer " + token}),
                        "alice", "alice-iss")
        assert_refused(get(w.port, "/o", headers={"Cookie": "jwt=" + token}),
                       "No JWT found in request", error=False)
        assert_consumer(get(w.port, "/o?jwt=%s" % token, headers=bearer(token)), "alice",
                        "alice-iss")
        assert_refused(get(w.port, "/o?jwt=%s" % token, headers=bearer(other)),
                       "Multiple tokens provided")
    conf = {"uri_param_names": ["token"], "cookie_names": ["session", "jwt"],
            "header_names": ["x-token"]}
    with jwt_gateway(conf) as (w, b):
        assert_consumer(get(w.port, "/o?token=" + token), "alice", "alice-iss")
        assert_consumer(get(w.port, "/o", headers={"Cookie": "a=1; jwt=%s; b=2" % token}),
                        "alice", "alice-iss")
        assert_consumer(get(w.port, "/o", headers={"X-Token": "Bearer " + token}),
                        "alice", "alice-iss")
        assert_refused(get(w.port, "/o?jwt=" + token), "No JWT found in request", error=False)
        assert_refused(get(w.port, "/o", headers=bearer(token)), "No JWT found in request",
                       error=False)
        assert_refused(get(w.port, "/o", headers={"Cookie": "session=%s; jwt=%s" % (token, other)}),
                       "Multiple tokens provided")


def test_the_token_alg_must_be_the_credentials_algorithm_none_and_confusion_are_401():
    tokens, pems = mint([
        {"alg": "HS512", "secret": SECRET, "claims": {"iss": "alice-iss"}},
        {"alg": "none", "claims": {"iss": "alice-iss"}},
        {"alg": "none", "claims": {"iss": "rsa-key"}},
        {"alg": "HS256", "confuse": "rsa", "claims": {"iss": "rsa-key"}},
        {"alg": "RS256", "private": "rsa", "claims": {"iss": "rsa-key"}},
        {"alg": "RS512", "private": "rsa", "claims": {"iss": "rsa-key"}},
    ], {"rsa": "rsa"})
    rs = [{"key": "rsa-key", "algorithm": "RS256", "rsa_public_key": "PLACEHOLDER"}]
    rs[0]["rsa_public_key"] = pems["rsa"]["public"]
    with jwt_gateway(cons=consumers(bob_secrets=rs)) as (w, b):
        for t in tokens[:4] + tokens[5:]:
            assert_refused(get(w.port, "/o", headers=bearer(t)), "Invalid algorithm")
        assert_consumer(get(w.port, "/o", headers=bearer(tokens[4])), "bob", "rsa-key")


def test_a_bad_signature_is_401_invalid_signature_without_echoing_the_secret():
    tokens, pems = mint([
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss", "role": "user"},
         "tamper": {"role": "admin"}},
        {"alg": "HS256", "secret": "another-secret", "claims": {"iss": "alice-iss"}},
        {"alg": "RS256", "private": "other", "claims": {"iss": "rsa-key"}},
        {"alg": "RS256", "private": "rsa", "claims": {"iss": "rsa-key", "role": "user"},
         "tamper": {"role": "admin"}},
    ], {"rsa": "rsa", "other": "rsa"})
    rs = [{"key": "rsa-key", "algorithm": "RS256", "rsa_public_key": pems["rsa"]["public"]}]
    with jwt_gateway(cons=consumers(bob_secrets=rs)) as (w, b):
        for t in tokens:
            r = get(w.port, "/o", headers=bearer(t))
            assert_refused(r, "Invalid signature")
            check(SECRET.encode() not in r.body and b"BEGIN" not in r.body, "no secret in", r)


def test_a_token_naming_no_credential_is_401():
    tokens, _ = mint([{"alg": "HS256", "secret": SECRET, "claims": {"iss": "nobody"}},
                      {"alg": "HS256", "secret": SECRET, "claims": {"sub": "alice"}},
                      {"alg": "HS256", "secret": SECRET, "claims": {"iss": ""}},
                      {"alg": "HS256", "secret": SECRET, "claims": {"iss": ["alice-iss"]}}])
    with jwt_gateway() as (w, b):
        assert_refused(get(w.port, "/o", headers=bearer(tokens[0])),
                       "No credentials found for given 'iss'")
        assert_refused(get(w.port, "/o", headers=bearer(tokens[1])),
                       "No mandatory 'iss' in claims")
        assert_refused(get(w.port, "/o", headers=bearer(tokens[2])), "Invalid 'iss' in claims")
        assert_refused(get(w.port, "/o", headers=bearer(tokens[3])), "Invalid 'iss' in claims")


def test_key_claim_name_can_name_the_kid_header_field():
    tokens, _ = mint([{"alg": "HS256", "secret": SECRET, "headers": {"kid": "alice-iss"},
                       "claims": {"iss": "someone-else"}},
                      {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss"}}])
    with jwt_gateway({"key_claim_name": "kid"}) as (w, b):
        assert_consumer(get(w.port, "/o", headers=bearer(tokens[0])), "alice", "alice-iss")
        assert_refused(get(w.port, "/o", headers=bearer(tokens[1])),
                       "No mandatory 'kid' in claims")


def test_claims_to_verify_checks_exp_and_nbf():
    tokens, _ = mint([
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss"},
         "relative": {"exp": -60}},
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss"}, "relative": {"nbf": 60}},
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss"}},
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss", "exp": "tomorrow"}},
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss"},
         "relative": {"exp": 60, "nbf": -60}},
    ])
    expired, early, bare, text, good = tokens
    with jwt_gateway() as (w, b):
        for t in (expired, early, bare, text):
            assert_consumer(get(w.port, "/o", headers=bearer(t)), "alice", "alice-iss")
    with jwt_gateway({"claims_to_verify": ["exp", "nbf"]}) as (w, b):
        assert_refused(get(w.port, "/o", headers=bearer(expired)), "token expired",
                       exp="token expired", nbf="must be a number")
        assert_refused(get(w.port, "/o", headers=bearer(early)), "must be a number",
                       exp="must be a number", nbf="token not valid yet")
        assert_refused(get(w.port, "/o", headers=bearer(text)), "must be a number",
                       exp="must be a number", nbf="must be a number")
        assert_consumer(get(w.port, "/o", headers=bearer(good)), "alice", "alice-iss")
    with jwt_gateway({"claims_to_verify": ["nbf"]}) as (w, b):
        assert_refused(get(w.port, "/o", headers=bearer(early)), "token not valid yet",
                       nbf="token not valid yet")
        assert_consumer(get(w.port, "/o", headers=bearer(good)), "alice", "alice-iss")


def test_leeway_allows_clock_skew_for_exp_and_nbf():
    tokens, _ = mint([
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss"},
         "relative": {"exp": -20}},
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss"}, "relative": {"nbf": 20}},
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss"},
         "relative": {"exp": -60}},
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss"}, "relative": {"nbf": 60}},
    ])
    with jwt_gateway({"claims_to_verify": ["exp"], "leeway": 30}) as (w, b):
        assert_consumer(get(w.port, "/o", headers=bearer(tokens[0])), "alice", "alice-iss")
        assert_refused(get(w.port, "/o", headers=bearer(tokens[2])), "token expired",
                       exp="token expired")
    with jwt_gateway({"claims_to_verify": ["nbf"], "leeway": 30}) as (w, b):
        assert_consumer(get(w.port, "/o", headers=bearer(tokens[1])), "alice", "alice-iss")
        assert_refused(get(w.port, "/o", headers=bearer(tokens[3])), "token not valid yet",
                       nbf="token not valid yet")


def test_maximum_expiration_refuses_tokens_valid_for_too_long():
    tokens, _ = mint([
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss"}, "relative": {"exp": 60}},
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss"},
         "relative": {"exp": 7200}},
    ])
    with jwt_gateway({"claims_to_verify": ["exp"], "maximum_expiration": 3600}) as (w, b):
        assert_consumer(get(w.port, "/o", headers=bearer(tokens[0])), "alice", "alice-iss")
        assert_refused(get(w.port, "/o", headers=bearer(tokens[1])),
                       "exceeds maximum allowed expiration",
                       exp="exceeds maximum allowed expiration")


def test_secret_is_base64_decodes_the_credentials_secret():
    raw = os.urandom(32)
    std = base64.b64encode(raw).decode()
    url = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    token = mint_one(alg="HS256", secret_b64=std, claims={"iss": "b64"})
    plain = mint_one(alg="HS256", secret=std, claims={"iss": "b64"})
    for secret in (std, url):
        cons = consumers(alice_secrets=[{"key": "b64", "secret": secret}])
        with jwt_gateway({"secret_is_base64": True}, cons=cons) as (w, b):
            assert_consumer(get(w.port, "/o", headers=bearer(token)), "alice", "b64")
            assert_refused(get(w.port, "/o", headers=bearer(plain)), "Invalid signature")
    with jwt_gateway(cons=consumers(alice_secrets=[{"key": "b64", "secret": std}])) as (w, b):
        assert_consumer(get(w.port, "/o", headers=bearer(plain)), "alice", "b64")
        assert_refused(get(w.port, "/o", headers=bearer(token)), "Invalid signature")


def test_allowed_issuers_and_audience():
    tokens, _ = mint([
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss", "aud": "orders"}},
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss", "aud": ["x", "billing"]}},
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss", "aud": "other"}},
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss"}},
        {"alg": "HS256", "secret": SECRET, "headers": {"kid": "alice-iss"},
         "claims": {"iss": "https://idp.example", "aud": "orders"}},
    ])
    with jwt_gateway({"audience": ["orders", "billing"]}) as (w, b):
        assert_consumer(get(w.port, "/o", headers=bearer(tokens[0])), "alice", "alice-iss")
        assert_consumer(get(w.port, "/o", headers=bearer(tokens[1])), "alice", "alice-iss")
        for t in tokens[2:4]:
            assert_refused(get(w.port, "/o", headers=bearer(t)), "audience not allowed",
                           aud="audience not allowed")
    conf = {"key_claim_name": "kid", "allowed_issuers": ["https://idp.example"]}
    with jwt_gateway(conf) as (w, b):
        assert_consumer(get(w.port, "/o", headers=bearer(tokens[4])), "alice", "alice-iss")
    conf = {"key_claim_name": "kid", "allowed_issuers": ["https://other.example"]}
    with jwt_gateway(conf) as (w, b):
        assert_refused(get(w.port, "/o", headers=bearer(tokens[4])), "issuer not allowed",
                       iss="issuer not allowed")


def test_client_sent_consumer_headers_are_replaced_or_removed():
    token = mint_one(alg="HS256", secret=SECRET, claims={"iss": "alice-iss"})
    forged = {"X-Consumer-ID": "forged", "X-Consumer-Custom-ID": "forged",
              "X-Consumer-Username": "admin", "X-Credential-Identifier": "forged",
              "X-Anonymous-Consumer": "false"}
    cons = consumers()
    del cons[0]["custom_id"]
    with jwt_gateway(cons=cons) as (w, b):
        seen = echo(get(w.port, "/o", headers=dict(forged, **bearer(token))))
        assert_eq(consumer_headers(seen),
                  {"x-consumer-id": ALICE_ID, "x-consumer-custom-id": None,
                   "x-consumer-username": "alice", "x-credential-identifier": "alice-iss",
                   "x-anonymous-consumer": None}, "identity headers", seen)
        assert_eq(seen.headers_named("x-consumer-username"), ["alice"], "one field, not two")


def test_anonymous_lets_requests_without_a_valid_token_through_as_that_consumer():
    good = mint_one(alg="HS256", secret=SECRET, claims={"iss": "alice-iss"})
    bad = mint_one(alg="HS256", secret="wrong", claims={"iss": "alice-iss"})
    anon = {"x-consumer-id": ANON_ID, "x-consumer-custom-id": None, "x-consumer-username": "anon",
            "x-credential-identifier": None, "x-anonymous-consumer": "true"}
    with jwt_gateway({"anonymous": "anon"}) as (w, b):
        seen = echo(get(w.port, "/o", headers={"X-Credential-Identifier": "forged"}))
        assert_eq(consumer_headers(seen), anon, "no token", seen)
        assert_eq(consumer_headers(echo(get(w.port, "/o", headers=bearer(bad)))), anon, "bad")
        assert_consumer(get(w.port, "/o", headers=bearer(good)), "alice", "alice-iss")
    with jwt_gateway({"anonymous": "ghost"}) as (w, b):
        r = get(w.port, "/o")
        assert_eq(r.status, 500, "a missing anonymous consumer", r)
        assert_eq(r.json()["message"], "An unexpected error occurred", "body", r)
        wait_until(lambda: "anonymous consumer 'ghost'" in w.stderr_text(), 3, what="log line")


def test_with_anonymous_jwt_and_key_auth_are_alternatives():
    token = mint_one(alg="HS256", secret=SECRET, claims={"iss": "alice-iss"})
    cons = consumers()
    cons[1]["keyauth_credentials"] = [{"key": "bob-key"}]
    both = [{"name": "key-auth", "config": {"anonymous": "anon"}}]
    with jwt_gateway({"anonymous": "anon"}, cons=cons, extra_plugins=both) as (w, b):
        assert_consumer(get(w.port, "/o", headers=bearer(token)), "alice", "alice-iss")
        seen = echo(get(w.port, "/o", headers={"apikey": "bob-key"}))
        assert_eq((seen.header("x-consumer-username"), seen.header("x-anonymous-consumer")),
                  ("bob", None), "key-auth identified bob after jwt fell back", seen)
        seen = echo(get(w.port, "/o"))
        assert_eq((seen.header("x-consumer-username"), seen.header("x-anonymous-consumer")),
                  ("anon", "true"), "neither: anonymous", seen)


def test_preflight_requests_are_authenticated_unless_run_on_preflight_is_false():
    preflight = {"Origin": "http://a.example", "Access-Control-Request-Method": "GET"}
    with jwt_gateway() as (w, b):
        assert_refused(http("OPTIONS", w.port, "/o", headers=preflight),
                       "No JWT found in request", error=False)
    with jwt_gateway({"run_on_preflight": False}) as (w, b):
        seen = echo(http("OPTIONS", w.port, "/o", headers=dict(preflight,
                                                                 **{"X-Consumer-ID": "forged"})))
        assert_eq(consumer_headers(seen), dict.fromkeys(CONSUMER_HEADERS),
                  "unauthenticated, without the client's identity headers", seen)
        assert_refused(get(w.port, "/o"), "No JWT found in request", error=False)


def test_realm_names_the_challenge():
    with jwt_gateway({"realm": "orders"}) as (w, b):
        assert_refused(get(w.port, "/o"), "No JWT found in request", realm="orders", error=False)
        assert_refused(get(w.port, "/o", headers=bearer("x.y")), "Bad token; malformed token",
                       realm="orders")


def test_the_admin_api_stores_kongs_defaults_and_refuses_bad_configs():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        r = api.post("/plugins", {"name": "jwt"})
        assert_eq(r.status, 201, "created", r)
        conf = r.json()["config"]
        assert_eq({k: conf.get(k) for k in ("uri_param_names", "cookie_names", "header_names",
                                             "key_claim_name", "secret_is_base64",
                                             "claims_to_verify", "anonymous", "run_on_preflight",
                                             "maximum_expiration", "leeway", "allowed_issuers",
                                             "audience", "jwks")},
                  {"uri_param_names": ["jwt"], "cookie_names": [],
                   "header_names": ["authorization"],
                   "key_claim_name": "iss", "secret_is_base64": False, "claims_to_verify": None,
                   "anonymous": None, "run_on_preflight": True, "maximum_expiration": 0,
                   "leeway": 0, "allowed_issuers": [], "audience": [], "jwks": None},
                  "stored defaults")
        for bad in ({"claims_to_verify": ["iat"]}, {"maximum_expiration": 60},
                    {"maximum_expiration": 60, "claims_to_verify": ["nbf"]},
                    {"maximum_expiration": 31536001, "claims_to_verify": ["exp"]},
                    {"leeway": -1}, {"header_names": ["bad header"]}, {"anonymous": ""},
                    {"jwks": {}}, {"jwks": {"file": "/x", "url": "http://a/"}},
                    {"jwks": {"url": "ftp://a/"}}, {"jwks": {"file": "/x", "refresh_interval": 0}},
                    {"jwks": {"file": "/x", "min_refresh_interval": 0}},
                    {"unknown": True}):
            r = api.post("/routes/echo/plugins", {"name": "jwt", "config": bad})
            assert_eq(r.status, 400, "config %r" % bad, r)
        r = api.post("/routes/echo/plugins", {"name": "jwt", "config": {
            "maximum_expiration": 60, "claims_to_verify": ["exp"]}})
        assert_eq(r.status, 201, "maximum_expiration with exp", r)


# ---------------------------------------------------------------- JWKS

class JwksServer:
    """A real HTTP server (http.server in a thread) serving one JWKS document at /jwks.json;
    .set(doc) changes it, .hits counts the fetches, .status makes it fail."""

    def __init__(self, doc):
        self.doc, self.hits, self.status = doc, 0, 200
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits += 1
                body = json.dumps(server.doc).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/jwks.json" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def set(self, doc):
        self.doc = doc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def jwk(pems, name, kid, **extra):
    """The public JWK of a minted key (n/e or crv/x/y), without its x5c unless x5c_only."""
    key = dict(pems[name]["jwk"], kid=kid)
    if extra.pop("x5c_only", False):
        key = {"kty": key["kty"], "kid": kid, "x5c": key["x5c"]}
        if "crv" in pems[name]["jwk"]:
            key["crv"] = pems[name]["jwk"]["crv"]
    else:
        key.pop("x5c", None)
    key.update(extra)
    return key


def test_a_jwks_file_verifies_tokens_by_kid_with_the_algorithm_its_key_allows():
    tokens, pems = mint([
        {"alg": "RS256", "private": "rsa", "headers": {"kid": "r1"}, "claims": {"sub": "alice"}},
        {"alg": "RS512", "private": "rsa", "headers": {"kid": "r1"}, "claims": {"sub": "alice"}},
        {"alg": "ES256", "private": "ec", "headers": {"kid": "e1"}, "claims": {"sub": "bob"}},
        {"alg": "HS256", "confuse": "rsa", "headers": {"kid": "r1"}, "claims": {"sub": "alice"}},
        {"alg": "none", "headers": {"kid": "r1"}, "claims": {"sub": "alice"}},
        {"alg": "RS256", "private": "rsa", "headers": {"kid": "r1"},
         "claims": {"sub": "alice", "role": "user"}, "tamper": {"role": "admin"}},
        {"alg": "RS256", "private": "rsa", "headers": {"kid": "gone"}, "claims": {"sub": "alice"}},
        {"alg": "RS256", "private": "other", "headers": {"kid": "r1"}, "claims": {"sub": "alice"}},
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss"}},
        {"alg": "ES256", "private": "ec", "headers": {"kid": "e1"}, "claims": {"sub": "nobody"}},
        {"alg": "ES256", "private": "ec", "headers": {"kid": "e1"}, "claims": {}},
        {"alg": "RS384", "private": "other", "headers": {"kid": "c1"}, "claims": {"sub": "x"}},
        {"alg": "RS256", "private": "other", "headers": {"kid": "enc1"}, "claims": {"sub": "x"}},
    ], {"rsa": "rsa", "ec": "P-256", "other": "rsa"})
    (rs256, rs512, es256, confused, none, tampered, unknown, wrong_key, hs, nobody,
     no_sub, by_cert, enc) = tokens
    path = os.path.join(make_tmpdir("jwks"), "jwks.json")
    with open(path, "w") as f:
        json.dump({"keys": [jwk(pems, "rsa", "r1", alg="RS256", use="sig"),
                            jwk(pems, "ec", "e1"),
                            jwk(pems, "other", "c1", x5c_only=True),
                            jwk(pems, "other", "enc1", use="enc"),
                            {"kty": "oct", "kid": "o1", "k": "c2VjcmV0"}]}, f)
    with jwt_gateway({"jwks": {"file": path}}) as (w, b):
        seen = echo(get(w.port, "/o", headers=bearer(rs256)))
        assert_eq(consumer_headers(seen), {"x-consumer-id": None, "x-consumer-custom-id": None,
                                           "x-consumer-username": None,
                                           "x-credential-identifier": "r1",
                                           "x-anonymous-consumer": None},
                  "a JWKS key identifies no consumer without consumer_claim", seen)
        assert_eq(echo(get(w.port, "/o", headers=bearer(es256))).header("x-credential-identifier"),
                  "e1", "an EC key without alg: its curve's algorithm")
        for t in (rs512, confused, none):
            assert_refused(get(w.port, "/o", headers=bearer(t)), "Invalid algorithm")
        for t in (tampered, wrong_key):
            assert_refused(get(w.port, "/o", headers=bearer(t)), "Invalid signature")
        seen = echo(get(w.port, "/o", headers=bearer(by_cert)))
        assert_eq(seen.header("x-credential-identifier"), "c1", "a key given as an x5c certificate")
        for t in (unknown, enc):
            assert_refused(get(w.port, "/o", headers=bearer(t)), "No key found for given 'kid'")
        assert_consumer(get(w.port, "/o", headers=bearer(hs)), "alice", "alice-iss")
        wait_until(lambda: "2 key(s) skipped" in w.stderr_text(), 3,
                   what="the oct and enc keys skipped")
    with jwt_gateway({"jwks": {"file": path, "consumer_claim": "sub"}}) as (w, b):
        assert_consumer(get(w.port, "/o", headers=bearer(rs256)), "alice", "r1", ALICE_ID)
        assert_consumer(get(w.port, "/o", headers=bearer(es256)), "bob", "e1", BOB_ID)
        assert_refused(get(w.port, "/o", headers=bearer(nobody)),
                       "No consumer found for given 'sub'")
        assert_refused(get(w.port, "/o", headers=bearer(no_sub)), "No mandatory 'sub' in claims")


def test_jwks_url_keys_rotate_on_an_unknown_kid_at_most_once_per_min_refresh_interval():
    tokens, pems = mint([
        {"alg": "RS256", "private": "a", "headers": {"kid": "key-a"}, "claims": {"sub": "x"}},
        {"alg": "RS256", "private": "b", "headers": {"kid": "key-b"}, "claims": {"sub": "x"}},
        {"alg": "RS256", "private": "a", "headers": {"kid": "nope"}, "claims": {"sub": "x"}},
    ], {"a": "rsa", "b": "rsa"})
    token_a, token_b, token_nope = tokens
    with JwksServer({"keys": [jwk(pems, "a", "key-a")]}) as idp:
        conf = {"jwks": {"url": idp.url, "refresh_interval": 300, "min_refresh_interval": 1}}
        with jwt_gateway(conf) as (w, b):
            assert_eq(get(w.port, "/o", headers=bearer(token_a)).status, 200, "key a")
            assert_eq(idp.hits, 1, "fetched once on first use")
            for _ in range(3):
                assert_refused(get(w.port, "/o", headers=bearer(token_nope)),
                               "No key found for given 'kid'")
            assert_eq(idp.hits, 1, "an unknown kid right after a fetch fetches nothing")
            idp.set({"keys": [jwk(pems, "b", "key-b")]})          # the provider rotates
            time.sleep(1.1)
            assert_eq(get(w.port, "/o", headers=bearer(token_b)).status, 200, "key b, fetched")
            assert_eq(idp.hits, 2, "one fetch for the new kid")
            assert_eq(get(w.port, "/o", headers=bearer(token_b)).status, 200, "key b, cached")
            assert_eq(idp.hits, 2, "no fetch for a known kid")
            assert_refused(get(w.port, "/o", headers=bearer(token_a)),
                           "No key found for given 'kid'")
            assert_eq(idp.hits, 2, "the retired key's kid is rate-limited too")
            idp.status = 500                                      # the provider fails
            time.sleep(1.1)
            assert_refused(get(w.port, "/o", headers=bearer(token_nope)),
                           "No key found for given 'kid'")
            assert_eq(idp.hits, 3, "tried again")
            assert_eq(get(w.port, "/o", headers=bearer(token_b)).status, 200,
                      "a failed fetch keeps the keys it had")
            wait_until(lambda: "cannot load the JWKS" in w.stderr_text(), 3, what="error logged")


def test_jwks_url_is_refetched_every_refresh_interval():
    tokens, pems = mint([
        {"alg": "ES256", "private": "a", "headers": {"kid": "key-a"}, "claims": {"sub": "x"}},
        {"alg": "ES256", "private": "b", "headers": {"kid": "key-b"}, "claims": {"sub": "x"}},
    ], {"a": "P-256", "b": "P-256"})
    token_a, token_b = tokens
    with JwksServer({"keys": [jwk(pems, "a", "key-a")]}) as idp:
        conf = {"jwks": {"url": idp.url, "refresh_interval": 1, "min_refresh_interval": 3600}}
        with jwt_gateway(conf) as (w, b):
            assert_eq(get(w.port, "/o", headers=bearer(token_a)).status, 200, "key a")
            idp.set({"keys": [jwk(pems, "b", "key-b")]})
            wait_until(lambda: idp.hits >= 2, 4, what="a scheduled fetch")
            wait_until(lambda: get(w.port, "/o", headers=bearer(token_b)).status == 200, 3,
                       what="key b accepted after the scheduled fetch")
            assert_refused(get(w.port, "/o", headers=bearer(token_a)),
                           "No key found for given 'kid'")


def test_jwks_keys_are_fetched_once_for_all_workers():
    tokens, pems = mint([{"alg": "RS256", "private": "a", "headers": {"kid": "key-a"},
                          "claims": {"sub": "x"}}], {"a": "rsa"})
    with JwksServer({"keys": [jwk(pems, "a", "key-a")]}) as idp:
        conf = {"jwks": {"url": idp.url}}
        with jwt_gateway(conf, workers=2) as (w, b):
            statuses = []

            def client():
                for _ in range(5):
                    statuses.append(get(w.port, "/o", headers=bearer(tokens[0])).status)
            threads = [threading.Thread(target=client) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert_eq(statuses, [200] * 40, "every request verified")
            assert_eq(idp.hits, 1, "one fetch shared by both workers through weir_cache")


def test_unusable_secrets_and_unsupported_token_headers_are_401():
    tokens, _ = mint([
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss"},
         "headers": {"typ": "JOSE+JSON"}},
        {"alg": "HS256", "secret": SECRET, "claims": {"iss": "alice-iss"},
         "headers": {"crit": ["exp"]}},
    ])
    with jwt_gateway() as (w, b):
        assert_refused(get(w.port, "/o", headers=bearer(tokens[0])),
                       "Bad token; unsupported token type")
        assert_refused(get(w.port, "/o", headers=bearer(tokens[1])),
                       "Bad token; unsupported critical header")
    # (a public key of the wrong type is refused when the credential is stored)
    token = mint_one(alg="HS256", secret=SECRET, claims={"iss": "b64"})
    cons = consumers(alice_secrets=[{"key": "b64", "secret": "not base64!"}])
    with jwt_gateway({"secret_is_base64": True}, cons=cons) as (w, b):
        r = get(w.port, "/o", headers=bearer(token))
        assert_refused(r, "Invalid key/secret")
        check(b"not base64" not in r.body, "the secret is not echoed", r)


def test_a_verified_token_is_checked_again_when_its_credential_changes_or_it_expires():
    # the worker remembers tokens it verified; the memory must never outlive the credential
    # that verified them (secret, algorithm, existence) nor skip the claims
    s1, s2 = SECRET, SECRET + "-rotated"
    tokens, _ = mint([
        {"alg": "HS256", "secret": s1, "claims": {"iss": "k1"}, "relative": {"exp": 600}},
        {"alg": "HS256", "secret": s2, "claims": {"iss": "k1"}, "relative": {"exp": 600}},
        {"alg": "HS256", "secret": s2, "claims": {"iss": "k1"}, "relative": {"exp": 3}}])
    t1, t2, short = tokens
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        api.ok("POST", "/consumers", {"username": "alice"})
        api.ok("POST", "/consumers/alice/jwt", {"key": "k1", "secret": s1})
        api.ok("POST", "/plugins", {"name": "jwt", "config": {"claims_to_verify": ["exp"]}})
        for _ in range(3):
            assert_consumer(get(w.port, "/o", headers=bearer(t1)), "alice", "k1")
        api.ok("PATCH", "/consumers/alice/jwt/k1", {"secret": s2})
        assert_refused(get(w.port, "/o", headers=bearer(t1)), "Invalid signature")
        assert_consumer(get(w.port, "/o", headers=bearer(t2)), "alice", "k1")
        api.ok("PATCH", "/consumers/alice/jwt/k1", {"algorithm": "HS384"})
        assert_refused(get(w.port, "/o", headers=bearer(t2)), "Invalid algorithm")
        api.ok("PATCH", "/consumers/alice/jwt/k1", {"algorithm": "HS256"})
        assert_consumer(get(w.port, "/o", headers=bearer(t2)), "alice", "k1")
        assert_eq(api.delete("/consumers/alice/jwt/k1").status, 204, "credential deleted")
        assert_refused(get(w.port, "/o", headers=bearer(t2)),
                       "No credentials found for given 'iss'")
        api.ok("POST", "/consumers/alice/jwt", {"key": "k1", "secret": s2})
        assert_consumer(get(w.port, "/o", headers=bearer(short)), "alice", "k1")
        time.sleep(4)
        assert_refused(get(w.port, "/o", headers=bearer(short)), "token expired",
                       exp="token expired")
