"""The bundled key-auth plugin (issue 5): Kong's config (key_names, key_in_header, key_in_query,
key_in_body, hide_credentials, anonymous, run_on_preflight, realm) and consumers' key-auth
credentials, end to end: what a client gets and what the upstream receives."""

import json
import urllib.parse

from harness import assert_eq, base_config, check, echo, gateway, get, http, wait_until
from test_admin_write import STORE, Admin

ALICE_ID = "5c6a1f3e-0b7d-4d61-9a43-1f0e6f3b2a01"
ALICE_CRED = "0d2f6c1a-7e3b-4b8a-9c55-3a4b5c6d7e01"
BOB_ID = "5c6a1f3e-0b7d-4d61-9a43-1f0e6f3b2a02"
ANON_ID = "5c6a1f3e-0b7d-4d61-9a43-1f0e6f3b2a09"

CONSUMERS = [
    {"id": ALICE_ID, "username": "alice", "custom_id": "cust-alice",
     "keyauth_credentials": [{"id": ALICE_CRED, "key": "alice-key"}]},
    {"id": BOB_ID, "username": "bob", "keyauth_credentials": [{"key": "bob-key"}]},
    {"id": ANON_ID, "username": "anon"},
]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CONSUMER_HEADERS = ["x-consumer-id", "x-consumer-custom-id", "x-consumer-username",
                    "x-credential-identifier", "x-anonymous-consumer"]


def key_auth(config=None, consumers=CONSUMERS, **weir):
    """A gateway whose echo route has key-auth with `config`."""
    def make(port):
        cfg = base_config(port, **weir)
        cfg["consumers"] = consumers
        cfg["plugins"] = [{"name": "key-auth", "config": config or {}}]
        return cfg
    return gateway(make)


def consumer_headers(seen):
    return {h: seen.header(h) for h in CONSUMER_HEADERS}


def target(seen):
    """The path and query the upstream received."""
    return seen["path"] + ("?" + seen["query"] if seen["query"] else "")


def assert_alice(seen):
    assert_eq(consumer_headers(seen),
              {"x-consumer-id": ALICE_ID, "x-consumer-custom-id": "cust-alice",
               "x-consumer-username": "alice", "x-credential-identifier": ALICE_CRED,
               "x-anonymous-consumer": None}, "consumer headers upstream", seen)


def assert_refused(r, message, realm="weir"):
    assert_eq(r.status, 401, "status", r)
    assert_eq(r.json(), {"message": message}, "body", r)
    assert_eq(r.header("WWW-Authenticate"), 'Key realm="%s"' % realm, "challenge", r)
    check("application/json" in (r.header("Content-Type") or ""), "a JSON answer", r)


def test_a_key_in_the_apikey_header_identifies_the_consumer_to_the_upstream():
    with key_auth() as (w, b):
        seen = echo(get(w.port, "/orders", headers={"apikey": "alice-key"}))
        assert_alice(seen)
        assert_eq(seen.header("apikey"), "alice-key", "forwarded without hide_credentials")
        seen = echo(get(w.port, "/orders", headers={"APIKEY": "bob-key"}))
        assert_eq(consumer_headers(seen)["x-consumer-username"], "bob", "header names in any case")
        assert_eq(seen.header("x-consumer-custom-id"), None, "bob has no custom_id")
        check(seen.header("x-credential-identifier"), "bob's generated credential id is sent", seen)


def test_a_key_in_the_query_string_identifies_the_consumer():
    with key_auth() as (w, b):
        seen = echo(get(w.port, "/orders?page=2&apikey=alice-key"))
        assert_alice(seen)
        assert_eq(target(seen), "/orders?page=2&apikey=alice-key", "query forwarded unchanged")
        # percent-encoded keys are decoded as the query's other parameters are
        r = get(w.port, "/orders?apikey=" + urllib.parse.quote("alice-key", safe=""))
        assert_eq(r.status, 200, "status", r)


def test_a_request_without_a_key_is_401_and_never_reaches_the_upstream():
    with key_auth() as (w, b):
        before = b.stats()["requests"]
        assert_refused(get(w.port, "/orders"), "No API key found in request")
        assert_refused(get(w.port, "/orders", headers={"apikey": ""}),
                       "No API key found in request")
        assert_refused(get(w.port, "/orders?apikey="), "No API key found in request")
        assert_refused(get(w.port, "/orders", headers={"X-Api-Key": "alice-key"}),
                       "No API key found in request")
        assert_eq(b.stats()["requests"], before, "the upstream saw none of them")


def test_an_unknown_key_is_401_unauthorized_without_echoing_it():
    with key_auth() as (w, b):
        r = get(w.port, "/orders", headers={"apikey": "not-a-key"})
        assert_refused(r, "Unauthorized")
        check(b"not-a-key" not in r.body, "the key is not echoed", r)
        assert_refused(get(w.port, "/orders?apikey=ALICE-KEY"), "Unauthorized")


def test_a_repeated_key_is_401_duplicate():
    with key_auth() as (w, b):
        assert_refused(get(w.port, "/orders?apikey=alice-key&apikey=bob-key"),
                       "Duplicate API key found")


def test_key_names_are_tried_in_order_and_a_header_wins_over_the_query():
    with key_auth({"key_names": ["x-api-key", "apikey"]}) as (w, b):
        seen = echo(get(w.port, "/o?apikey=alice-key", headers={"X-Api-Key": "bob-key"}))
        assert_eq(seen.header("x-consumer-username"), "bob", "the first name found wins")
        seen = echo(get(w.port, "/o?x-api-key=bob-key", headers={"apikey": "alice-key"}))
        assert_eq(seen.header("x-consumer-username"), "bob", "first name in the query beats the "
                  "second name in a header (names outer, places inner, as Kong)")
        seen = echo(get(w.port, "/o", headers={"x-API-key": "alice-key"}))
        assert_eq(seen.header("x-consumer-username"), "alice", "header names in any case")


def test_key_in_header_false_ignores_headers():
    with key_auth({"key_in_header": False}) as (w, b):
        assert_refused(get(w.port, "/o", headers={"apikey": "alice-key"}),
                       "No API key found in request")
        assert_alice(echo(get(w.port, "/o?apikey=alice-key")))


def test_key_in_query_false_ignores_the_query():
    with key_auth({"key_in_query": False}) as (w, b):
        assert_refused(get(w.port, "/o?apikey=alice-key"), "No API key found in request")
        assert_alice(echo(get(w.port, "/o", headers={"apikey": "alice-key"})))


def test_key_in_body_reads_json_and_form_bodies_only_when_enabled():
    with key_auth({"key_in_body": True}) as (w, b):
        r = http("POST", w.port, "/o", headers={"Content-Type": "application/json"},
                 body=json.dumps({"apikey": "alice-key", "n": 1}))
        seen = echo(r)
        assert_alice(seen)
        assert_eq(json.loads(seen["body"]), {"apikey": "alice-key", "n": 1}, "body forwarded")
        r = http("POST", w.port, "/o", headers=FORM,
                 body="a=1&apikey=alice-key")
        assert_alice(echo(r))
        r = http("POST", w.port, "/o", headers={"Content-Type": "text/plain"},
                 body="apikey=alice-key")
        assert_refused(r, "No API key found in request")
        r = http("POST", w.port, "/o", headers={"Content-Type": "application/json"}, body="{broken")
        assert_refused(r, "No API key found in request")
    with key_auth() as (w, b):
        r = http("POST", w.port, "/o", headers={"Content-Type": "application/json"},
                 body=json.dumps({"apikey": "alice-key"}))
        assert_refused(r, "No API key found in request")


def test_hide_credentials_removes_the_key_from_header_query_and_body():
    with key_auth({"hide_credentials": True, "key_in_body": True}) as (w, b):
        seen = echo(get(w.port, "/o", headers={"apikey": "alice-key", "X-Other": "1"}))
        assert_alice(seen)
        assert_eq(seen.header("apikey"), None, "header removed")
        assert_eq(seen.header("x-other"), "1", "other headers kept")
        seen = echo(get(w.port, "/o?a=1&apikey=alice-key&b=x%20y"))
        assert_alice(seen)
        assert_eq(target(seen), "/o?a=1&b=x%20y", "only the key's parameter removed")
        seen = echo(get(w.port, "/o?apikey=alice-key"))
        assert_eq(target(seen), "/o", "an empty query is dropped")
        r = http("POST", w.port, "/o", headers={"Content-Type": "application/json"},
                 body=json.dumps({"apikey": "alice-key", "n": 1}))
        seen = echo(r)
        assert_alice(seen)
        assert_eq(json.loads(seen["body"]), {"n": 1}, "body field removed")
        assert_eq(seen.header("content-length"), str(len(seen["body"])), "length fixed")
        r = http("POST", w.port, "/o", headers=FORM,
                 body="apikey=alice-key&a=1")
        seen = echo(r)
        assert_eq(seen["body"], "a=1", "form field removed")


def test_client_sent_consumer_headers_are_replaced_or_removed():
    forged = {"X-Consumer-ID": "forged", "X-Consumer-Custom-ID": "forged",
              "X-Consumer-Username": "admin", "X-Credential-Identifier": "forged",
              "X-Anonymous-Consumer": "false"}
    with key_auth() as (w, b):
        seen = echo(get(w.port, "/o", headers=dict(forged, apikey="bob-key")))
        h = consumer_headers(seen)
        assert_eq((h["x-consumer-id"], h["x-consumer-username"]), (BOB_ID, "bob"), "replaced")
        assert_eq((h["x-consumer-custom-id"], h["x-anonymous-consumer"]), (None, None), "removed")
        check(h["x-credential-identifier"] not in (None, "forged"), "credential id replaced", seen)
        assert_eq(seen.headers_named("x-consumer-id"), [BOB_ID], "one field, not two")


def test_anonymous_lets_requests_without_a_valid_key_through_as_that_consumer():
    anon = {"x-consumer-id": ANON_ID, "x-consumer-custom-id": None, "x-consumer-username": "anon",
            "x-credential-identifier": None, "x-anonymous-consumer": "true"}
    for ref in ("anon", ANON_ID):
        with key_auth({"anonymous": ref}) as (w, b):
            seen = echo(get(w.port, "/o", headers={"X-Credential-Identifier": "forged"}))
            assert_eq(consumer_headers(seen), anon, "no key, anonymous by %s" % ref, seen)
            assert_eq(consumer_headers(echo(get(w.port, "/o?apikey=wrong"))), anon, "bad key")
            assert_alice(echo(get(w.port, "/o", headers={"apikey": "alice-key"})))


def test_an_anonymous_consumer_that_does_not_exist_is_a_500_and_logged():
    with key_auth({"anonymous": "ghost"}) as (w, b):
        r = get(w.port, "/o")
        assert_eq(r.status, 500, "status", r)
        assert_eq(r.json()["message"], "An unexpected error occurred", "body", r)
        assert_alice(echo(get(w.port, "/o", headers={"apikey": "alice-key"})))
        wait_until(lambda: "anonymous consumer 'ghost'" in w.stderr_text(), 3, what="log line")


def test_preflight_requests_are_authenticated_unless_run_on_preflight_is_false():
    preflight = {"Origin": "http://a.example", "Access-Control-Request-Method": "GET"}
    with key_auth() as (w, b):
        assert_refused(http("OPTIONS", w.port, "/o", headers=preflight),
                       "No API key found in request")
    with key_auth({"run_on_preflight": False}) as (w, b):
        seen = echo(http("OPTIONS", w.port, "/o", headers=dict(preflight, **{
            "X-Consumer-Username": "admin", "X-Anonymous-Consumer": "false"})))
        assert_eq(seen["method"], "OPTIONS", "the preflight reached the upstream")
        assert_eq(consumer_headers(seen), dict.fromkeys(CONSUMER_HEADERS),
                  "unauthenticated and without the client's identity headers")
        assert_refused(get(w.port, "/o"), "No API key found in request")


def test_realm_names_the_challenge():
    with key_auth({"realm": "orders-api"}) as (w, b):
        assert_refused(get(w.port, "/o"), "No API key found in request", realm="orders-api")
        assert_refused(get(w.port, "/o?apikey=x"), "Unauthorized", realm="orders-api")


def test_the_admin_api_stores_kongs_defaults_and_refuses_bad_configs():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        r = api.post("/plugins", {"name": "key-auth"})
        assert_eq(r.status, 201, "created", r)
        conf = r.json()["config"]
        assert_eq({k: conf.get(k) for k in ("key_names", "key_in_header", "key_in_query",
                                             "key_in_body", "hide_credentials", "anonymous",
                                             "run_on_preflight", "realm")},
                  {"key_names": ["apikey"], "key_in_header": True, "key_in_query": True,
                   "key_in_body": False, "hide_credentials": False, "anonymous": None,
                   "run_on_preflight": True, "realm": None}, "stored defaults")
        for bad in ({"key_names": []}, {"key_names": ["has space"]}, {"hide_credentials": "yes"},
                    {"anonymous": ""}, {"realm": 'a"b'}, {"unknown": 1}):
            r = api.post("/routes/echo/plugins", {"name": "key-auth", "config": bad})
            assert_eq(r.status, 400, "config %r" % bad, r)


def test_keys_added_through_the_admin_api_work_from_the_next_request():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        assert_eq(api.post("/plugins", {"name": "key-auth"}).status, 201, "plugin")
        assert_eq(api.post("/consumers", {"username": "carol"}).status, 201, "consumer")
        assert_eq(get(w.port, "/o", headers={"apikey": "carol-key"}).status, 401, "before")
        r = api.post("/consumers/carol/key-auth", {"key": "carol-key"})
        assert_eq(r.status, 201, "credential", r)
        seen = echo(get(w.port, "/o", headers={"apikey": "carol-key"}))
        assert_eq(seen.header("x-credential-identifier"), r.json()["id"], "credential id")
        assert_eq(api.delete("/consumers/carol/key-auth/" + r.json()["id"]).status, 204, "delete")
        assert_eq(get(w.port, "/o", headers={"apikey": "carol-key"}).status, 401, "after delete")


TAGGER = """local P = { PRIORITY = 100, VERSION = "1.0" }
function P:access(conf)
  weir.service.request.set_header("X-Tier", conf.tier)
end
return P
"""


def test_a_plugin_scoped_to_the_identified_consumer_beats_the_routes_instance():
    from test_plugin_runtime import plugin_tree
    root = plugin_tree({"tagger": TAGGER})

    def make(port):
        cfg = base_config(port, plugins=["bundled", "tagger"], plugin_paths=[root])
        cfg["consumers"] = CONSUMERS
        cfg["plugins"] = [
            {"name": "key-auth", "config": {"anonymous": "anon"}},
            {"name": "tagger", "route": "echo", "config": {"tier": "route"}},
            {"name": "tagger", "consumer": "alice", "config": {"tier": "gold"}},
            {"name": "tagger", "consumer": "anon", "config": {"tier": "anonymous"}},
        ]
        return cfg
    with gateway(make) as (w, b):
        seen = echo(get(w.port, "/o", headers={"apikey": "alice-key"}))
        assert_eq(seen.header("x-tier"), "gold", "alice's own instance", seen)
        seen = echo(get(w.port, "/o", headers={"apikey": "bob-key"}))
        assert_eq(seen.header("x-tier"), "route", "bob has none: the route's", seen)
        seen = echo(get(w.port, "/o", headers={"X-Consumer-Username": "alice"}))
        assert_eq((seen.header("x-tier"), seen.header("x-consumer-username")),
                  ("anonymous", "anon"), "the anonymous consumer's, whatever the client claims")
