"""The bundled cors plugin (issue 5): Kong's config (origins, headers, exposed_headers, methods,
max_age, credentials, private_network, preflight_continue, allow_origin_absent). Preflights are
answered by the gateway (204 with the Access-Control-* fields) unless preflight_continue; other
responses, the upstream's and other plugins' exits alike, get Access-Control-Allow-Origin and
friends. Exact origins, "*" and regex origins as Kong decides; Vary: Origin whenever the answer
depends on the origin. Every test drives the real binary and the echo backend over sockets."""

from harness import assert_eq, base_config, check, echo, gateway, http, route, service
from test_admin_write import STORE, Admin, _schema_error
from test_plugin_runtime import handler, plugin_tree

ALL_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"


def cors_gateway(configs, extra_plugins=(), **weir):
    """One route per entry of `configs` ({"/path": cors config}), each with its own instance."""
    def make(port):
        routes = []
        plugins = []
        for i, (path, conf) in enumerate(configs.items()):
            routes.append(route("r%d" % i, [path]))
            plugins.append({"name": "cors", "route": "r%d" % i, "config": conf})
        cfg = base_config(None, services=[service("echo", port, routes=routes)], **weir)
        cfg["plugins"] = plugins + list(extra_plugins)
        return cfg
    return gateway(make)


def preflight(port, path, origin="https://app.example", method="PUT", headers=None):
    hs = {"Origin": origin, "Access-Control-Request-Method": method}
    hs.update(headers or {})
    return http("OPTIONS", port, path, headers=hs)


def test_a_preflight_is_answered_204_by_the_gateway_with_kongs_defaults():
    with cors_gateway({"/c": {}}) as (w, b):
        before = b.stats()["requests"]
        r = preflight(w.port, "/c", headers={"Access-Control-Request-Headers": "X-Token, Content-Type"})
        assert_eq(r.status, 204, "preflight status", r)
        assert_eq(r.body, b"", "no body", r)
        assert_eq(r.header("Access-Control-Allow-Origin"), "*", "any origin by default", r)
        assert_eq(r.header("Access-Control-Allow-Methods"), ALL_METHODS, "Kong's default methods", r)
        assert_eq(r.header("Access-Control-Allow-Headers"), "X-Token, Content-Type",
                  "without conf.headers the requested headers are echoed", r)
        for absent in ("Access-Control-Max-Age", "Access-Control-Allow-Credentials",
                       "Access-Control-Allow-Private-Network", "Vary"):
            assert_eq(r.header(absent), None, absent + " not sent by default", r)
        assert_eq(b.stats()["requests"], before, "the upstream never saw the preflight")


def test_an_options_request_without_request_method_is_not_a_preflight():
    with cors_gateway({"/c": {}}) as (w, b):
        r = http("OPTIONS", w.port, "/c", headers={"Origin": "https://app.example"})
        assert_eq(r.status, 200, "proxied", r)
        assert_eq(echo(r)["method"], "OPTIONS", "the upstream answered it")
        assert_eq(r.header("Access-Control-Allow-Origin"), "*", "response headers added", r)


def test_configured_headers_methods_max_age_replace_the_defaults():
    conf = {"headers": ["X-Token", "Content-Type"], "methods": ["GET", "POST"], "max_age": 3600}
    with cors_gateway({"/c": conf, "/frac": {"max_age": 1.5}}) as (w, b):
        r = preflight(w.port, "/c", headers={"Access-Control-Request-Headers": "X-Other"})
        assert_eq(r.status, 204, "status", r)
        assert_eq(r.header("Access-Control-Allow-Headers"), "X-Token,Content-Type", "headers", r)
        assert_eq(r.header("Access-Control-Allow-Methods"), "GET,POST", "methods", r)
        assert_eq(r.header("Access-Control-Max-Age"), "3600", "max_age", r)
        assert_eq(preflight(w.port, "/frac").header("Access-Control-Max-Age"), "1.5",
                  "a fractional max_age")


def test_an_exact_origin_among_several_is_echoed_with_vary_and_others_get_none():
    conf = {"origins": ["https://app.example", "http://other.example:8080"]}
    with cors_gateway({"/c": conf}) as (w, b):
        r = preflight(w.port, "/c", origin="https://app.example")
        assert_eq(r.header("Access-Control-Allow-Origin"), "https://app.example", "allowed", r)
        assert_eq(r.header("Vary"), "Origin", "the answer depends on the origin", r)
        r = preflight(w.port, "/c", origin="https://app.example:443")
        assert_eq(r.header("Access-Control-Allow-Origin"), "https://app.example",
                  "the default port is dropped before comparing", r)
        r = http("GET", w.port, "/c", headers={"Origin": "http://other.example:8080"})
        assert_eq(r.status, 200, "status", r)
        assert_eq(r.header("Access-Control-Allow-Origin"), "http://other.example:8080",
                  "a normal response gets it too", r)
        assert_eq(r.header("Vary"), "Origin", "Vary on a normal response", r)
        for bad in ("https://evil.example", "http://app.example", "https://app.example:8443",
                    "http://other.example", "null"):
            r = preflight(w.port, "/c", origin=bad)
            assert_eq(r.status, 204, "a disallowed origin's preflight is still answered", r)
            assert_eq(r.header("Access-Control-Allow-Origin"), None, "no ACAO for " + bad, r)
            assert_eq(r.header("Vary"), "Origin", "Vary for " + bad, r)
            r = http("GET", w.port, "/c", headers={"Origin": bad})
            assert_eq(r.status, 200, "the request itself still goes through (browsers enforce)", r)
            assert_eq(r.header("Access-Control-Allow-Origin"), None, "no ACAO for " + bad, r)


def test_a_single_plain_origin_is_always_sent_as_kong_does():
    with cors_gateway({"/c": {"origins": ["https://app.example"]}}) as (w, b):
        r = http("GET", w.port, "/c", headers={"Origin": "https://evil.example"})
        assert_eq(r.header("Access-Control-Allow-Origin"), "https://app.example",
                  "the configured origin, which the browser then refuses to match", r)
        assert_eq(r.header("Vary"), "Origin", "Vary", r)


def test_regex_origins_match_the_whole_host_or_the_whole_origin():
    conf = {"origins": [r"(.*\.)?example\.com", r"^https://[a-z]+\.example\.org$",
                        r"http://localhost:\d+"]}
    with cors_gateway({"/c": conf}) as (w, b):
        allowed = {
            "https://example.com": "https://example.com",
            "https://api.example.com": "https://api.example.com",
            "http://a.b.example.com:8080": "http://a.b.example.com:8080",
            "https://docs.example.org": "https://docs.example.org",
            "https://docs.example.org:443": "https://docs.example.org",
            "http://localhost:3000": "http://localhost:3000",
        }
        for origin, acao in allowed.items():
            r = preflight(w.port, "/c", origin=origin)
            assert_eq(r.header("Access-Control-Allow-Origin"), acao, "allowed " + origin, r)
            r = http("GET", w.port, "/c", headers={"Origin": origin})
            assert_eq(r.header("Access-Control-Allow-Origin"), acao, "allowed GET " + origin, r)
        for origin in ("https://example.com.evil.net", "https://evilexample.com",
                       "http://docs.example.org", "https://a.b.example.org",
                       "https://docs.example.org.evil", "http://localhost", "https://localhost:3000",
                       "http://localhost:3000.evil"):
            r = preflight(w.port, "/c", origin=origin)
            assert_eq(r.header("Access-Control-Allow-Origin"), None, "refused " + origin, r)
            assert_eq(r.header("Vary"), "Origin", "Vary for " + origin, r)


def test_credentials_with_any_origin_echo_the_origin():
    with cors_gateway({"/c": {"origins": ["*"], "credentials": True}}) as (w, b):
        r = preflight(w.port, "/c", origin="https://app.example")
        assert_eq(r.header("Access-Control-Allow-Origin"), "https://app.example",
                  "browsers refuse credentials with *: the origin comes back", r)
        assert_eq(r.header("Access-Control-Allow-Credentials"), "true", "ACAC", r)
        assert_eq(r.header("Vary"), "Origin", "Vary", r)
        r = http("GET", w.port, "/c", headers={"Origin": "https://other.example"})
        assert_eq(r.header("Access-Control-Allow-Origin"), "https://other.example", "GET", r)
        assert_eq(r.header("Access-Control-Allow-Credentials"), "true", "GET ACAC", r)
        r = http("GET", w.port, "/c")
        assert_eq(r.header("Access-Control-Allow-Origin"), "*", "no Origin: *", r)
        assert_eq(r.header("Access-Control-Allow-Credentials"), None, "no Origin: no ACAC", r)


def test_credentials_with_listed_origins_and_without_credentials():
    with cors_gateway({"/c": {"origins": ["https://a.example", "https://b.example"],
                              "credentials": True},
                       "/n": {"origins": ["*"]}}) as (w, b):
        r = http("GET", w.port, "/c", headers={"Origin": "https://b.example"})
        assert_eq(r.header("Access-Control-Allow-Origin"), "https://b.example", "ACAO", r)
        assert_eq(r.header("Access-Control-Allow-Credentials"), "true", "ACAC", r)
        r = http("GET", w.port, "/n", headers={"Origin": "https://b.example"})
        assert_eq(r.header("Access-Control-Allow-Origin"), "*", "any origin, no credentials", r)
        assert_eq(r.header("Access-Control-Allow-Credentials"), None, "no ACAC", r)
        assert_eq(r.header("Vary"), None, "no Vary with *", r)


def test_a_star_among_other_origins_allows_any():
    with cors_gateway({"/c": {"origins": ["https://a.example", "*"]}}) as (w, b):
        r = http("GET", w.port, "/c", headers={"Origin": "https://z.example"})
        assert_eq(r.header("Access-Control-Allow-Origin"), "*", "ACAO", r)


def test_exposed_headers_go_on_normal_responses_only():
    with cors_gateway({"/c": {"exposed_headers": ["X-Total", "X-Page"]}}) as (w, b):
        r = http("GET", w.port, "/c", headers={"Origin": "https://a.example"})
        assert_eq(r.header("Access-Control-Expose-Headers"), "X-Total,X-Page", "exposed", r)
        r = preflight(w.port, "/c")
        assert_eq(r.header("Access-Control-Expose-Headers"), None, "not on a preflight", r)


def test_private_network_is_allowed_only_when_configured_and_asked():
    pna = {"Access-Control-Request-Private-Network": "true"}
    with cors_gateway({"/on": {"private_network": True}, "/off": {}}) as (w, b):
        r = preflight(w.port, "/on", headers=pna)
        assert_eq(r.header("Access-Control-Allow-Private-Network"), "true", "allowed", r)
        r = preflight(w.port, "/on")
        assert_eq(r.header("Access-Control-Allow-Private-Network"), None, "not asked", r)
        r = preflight(w.port, "/off", headers=pna)
        assert_eq(r.header("Access-Control-Allow-Private-Network"), None, "not configured", r)


def test_preflight_continue_hands_the_preflight_to_the_upstream_untouched():
    with cors_gateway({"/c": {"preflight_continue": True, "origins": ["https://a.example"]}}) as (w, b):
        r = preflight(w.port, "/c", origin="https://a.example")
        assert_eq(r.status, 200, "the upstream answered", r)
        seen = echo(r)
        assert_eq((seen["method"], seen.header("access-control-request-method")), ("OPTIONS", "PUT"),
                  "the preflight as the client sent it")
        for name in ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Vary"):
            assert_eq(r.header(name), None, name + " not added to a continued preflight", r)
        r = http("GET", w.port, "/c", headers={"Origin": "https://a.example"})
        assert_eq(r.header("Access-Control-Allow-Origin"), "https://a.example",
                  "other requests still get the headers", r)


def test_origin_is_added_to_an_upstream_vary():
    with cors_gateway({"/c": {"origins": ["https://a.example", "https://b.example"]}}) as (w, b):
        r = http("GET", w.port, "/c?header_name=Vary&header_value=Accept-Encoding",
                 headers={"Origin": "https://a.example"})
        assert_eq(r.header("Vary"), "Accept-Encoding, Origin", "appended to the upstream's", r)
        r = http("GET", w.port, "/c?header_name=Vary&header_value=origin",
                 headers={"Origin": "https://a.example"})
        assert_eq(r.header("Vary"), "origin", "not repeated", r)


def test_allow_origin_absent_false_leaves_requests_without_origin_alone():
    with cors_gateway({"/off": {"allow_origin_absent": False}, "/on": {}}) as (w, b):
        r = http("GET", w.port, "/off")
        assert_eq(r.header("Access-Control-Allow-Origin"), None, "no Origin, no headers", r)
        r = http("GET", w.port, "/off", headers={"Origin": "https://a.example"})
        assert_eq(r.header("Access-Control-Allow-Origin"), "*", "with Origin", r)
        assert_eq(http("GET", w.port, "/on").header("Access-Control-Allow-Origin"), "*",
                  "by default (as Kong) requests without Origin get them")


def test_exits_and_errors_of_other_plugins_get_the_headers():
    root = plugin_tree({"refuser": handler(100, """
function P:access(conf)
  if weir.request.get_header("X-Boom") then error("boom") end
  return weir.response.exit(401, { message = "no" })
end
""")})

    def make(port):
        cfg = base_config(port, plugins=["bundled", "refuser"], plugin_paths=[root])
        cfg["plugins"] = [{"name": "cors", "config": {"origins": ["https://a.example", "https://b.example"],
                                                      "credentials": True}},
                          {"name": "refuser"}]
        return cfg
    with gateway(make) as (w, b):
        r = http("GET", w.port, "/", headers={"Origin": "https://a.example"})
        assert_eq(r.status, 401, "the other plugin's exit", r)
        assert_eq(r.header("Access-Control-Allow-Origin"), "https://a.example", "ACAO on an exit", r)
        assert_eq(r.header("Access-Control-Allow-Credentials"), "true", "ACAC on an exit", r)
        r = http("GET", w.port, "/", headers={"Origin": "https://a.example", "X-Boom": "1"})
        assert_eq(r.status, 500, "the other plugin's error", r)
        assert_eq(r.header("Access-Control-Allow-Origin"), "https://a.example", "ACAO on a 500", r)
        r = preflight(w.port, "/", origin="https://b.example")
        assert_eq(r.status, 204, "cors (2000) answers before the refuser (100) runs", r)


def test_kong_entries_with_nulls_load_and_bad_origins_are_refused():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        p = api.ok("POST", "/plugins", {"name": "cors", "config": {
            "origins": None, "headers": None, "exposed_headers": None, "methods": None,
            "max_age": None, "credentials": False, "preflight_continue": False,
            "private_network": False}})
        assert_eq(p["config"]["allow_origin_absent"], True, "defaults filled in")
        r = preflight(w.port, "/")
        assert_eq((r.status, r.header("Access-Control-Allow-Origin"),
                   r.header("Access-Control-Allow-Methods")), (204, "*", ALL_METHODS),
                  "nulls mean Kong's defaults", r)
        api.ok("DELETE", "/plugins/" + p["id"])
        p = api.ok("POST", "/plugins", {"name": "cors"})
        assert_eq(p["config"]["methods"], ALL_METHODS.split(","), "default methods stored")
        api.ok("DELETE", "/plugins/" + p["id"])
        doc = _schema_error(api.post("/plugins", {"name": "cors", "config": {
            "origins": ["https://ok.example", "(unclosed", "*"], "methods": ["GET", "FETCH"],
            "headers": ["X-A\r\nX-Injected: 1"]}}))
        fields = doc["fields"]
        check("regular expression" in str(fields.get("config.origins[1]")),
              "a bad regex is named: %r" % doc)
        check("config.origins[0]" not in fields and "config.origins[2]" not in fields,
              "good entries are not: %r" % doc)
        check("config.methods[1]" in fields, "an unknown method: %r" % doc)
        check("config.headers[0]" in fields, "a header with a line break: %r" % doc)
        assert_eq(api.ok("GET", "/plugins")["data"], [], "nothing stored")
