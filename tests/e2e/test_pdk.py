"""The PDK from plugin code (issue 4): weir.request, weir.client, weir.router, weir.service,
weir.response (including bodies), weir.ctx, weir.shared, weir.log, weir.time, weir.timer and the
codec modules, each driven through a real gateway: a plugin reports what it read (usually as a
JSON exit body) or changes the request and response, and the test asserts what the client and
the backend saw."""

import json
import socket
import time

from harness import (assert_eq, base_config, check, echo, gateway, get, http, route, service,
                     wait_until)
from test_admin import admin_port
from test_plugin_runtime import handler, plugin_tree


def probe_gateway(source, name="probe", priority=1000, plugins=None, make=None, **weir):
    """A gateway running one plugin (`source` is the body of its handler) on every route."""
    root = plugin_tree({name: handler(priority, source)})

    def default(port):
        cfg = base_config(port, plugins=["bundled", name], plugin_paths=[root], **weir)
        cfg["plugins"] = plugins or [{"name": name}]
        return cfg
    return gateway(make or default)


def test_request_getters_report_what_the_client_sent():
    src = """
function P:access(conf)
  local r = weir.request
  local q = r.get_query()
  local h = r.get_headers()
  return weir.response.exit(200, {
    method = r.get_method(), scheme = r.get_scheme(), host = r.get_host(), port = r.get_port(),
    path = r.get_path(), raw_query = r.get_raw_query(), a = q.a, flag = q.flag,
    first_a = r.get_query_arg("a"), space = q.s, x_one = r.get_header("x_one"),
    multi = h["X-Multi"], started = r.get_start_time(),
  })
end"""
    with probe_gateway(src) as (w, b):
        sock = socket.create_connection(("127.0.0.1", w.port))
        sock.sendall(b"GET /a/./b/../c?a=1&a=2&flag&s=x+y%21 HTTP/1.1\r\nHost: API.Example.COM\r\n"
                     b"X-One: 1\r\nX-Multi: m1\r\nX-Multi: m2\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
        body = json.loads(data.split(b"\r\n\r\n", 1)[1])
        now_ms = time.time() * 1000
        started = body.pop("started")
        assert_eq(body, {"method": "GET", "scheme": "http", "host": "api.example.com",
                         "port": w.port, "path": "/a/c", "raw_query": "a=1&a=2&flag&s=x+y%21",
                         "a": ["1", "2"], "flag": True, "first_a": "1", "space": "x y!",
                         "x_one": "1", "multi": ["m1", "m2"]}, "what the plugin read")
        check(abs(now_ms - started) < 5000, "start time %r is close to now %r" % (started, now_ms))


def test_client_and_router_and_consumers():
    src = """
function P:access(conf)
  local route, svc = weir.router.get_route(), weir.router.get_service()
  local consumer = weir.client.load_consumer("alice", true)
  local by_id = weir.client.load_consumer(consumer.id)
  local missing, err = weir.client.load_consumer("alice")  -- without search_by_username
  weir.client.authenticate(consumer, { key = "k1" })
  local caps = weir.router.get_captures()
  return weir.response.exit(200, {
    ip = weir.client.get_ip(), fwd = weir.client.get_forwarded_ip(),
    port_is_number = type(weir.client.get_port()) == "number",
    route = route.name, service = svc.name, consumer = weir.client.get_consumer().username,
    same = by_id.username, missing = missing == nil and err,
    credential = weir.client.get_credential().key,
    capture = caps.unnamed[1] or false, named = caps.named.item or false,
    readonly = not pcall(function() route.name = "x" end),
  })
end"""

    def make(port):
        root = plugin_tree({"probe": handler(1000, src)})
        cfg = base_config(port, plugins=["bundled", "probe"], plugin_paths=[root],
                          trusted_ips=["127.0.0.1"])
        cfg["services"][0]["routes"].append(route("items", ["~/items/(?<item>\\d+)$"]))
        cfg["consumers"] = [{"username": "alice"}]
        cfg["plugins"] = [{"name": "probe"}]
        return cfg
    with gateway(make) as (w, b):
        r = get(w.port, "/items/42", headers={"X-Forwarded-For": "203.0.113.9"})
        assert_eq(r.status, 200, "status", r)
        assert_eq(r.json(), {"ip": "127.0.0.1", "fwd": "203.0.113.9", "port_is_number": True,
                             "route": "items", "service": "echo", "consumer": "alice",
                             "same": "alice", "missing": "not found", "credential": "k1",
                             "capture": "42", "named": "42", "readonly": True},
                  "client and router")


CONSUMER_AUTH = handler(2000, """
function P:access(conf)
  local who = weir.request.get_header("X-User")
  if who then
    local c = weir.client.load_consumer(who, true)
    if c then weir.client.authenticate(c, nil) end
  end
end
""")
TAG = handler(500, """
function P:access(conf)
  weir.service.request.set_header("X-Tag", conf.tag)
end
""")


def test_consumer_scoped_plugins_apply_once_a_plugin_identified_the_consumer():
    root = plugin_tree({"auth": CONSUMER_AUTH, "tag": TAG})

    def make(port):
        cfg = base_config(port, plugins=["bundled", "auth", "tag"], plugin_paths=[root])
        cfg["consumers"] = [{"username": "alice"}, {"username": "bob"}]
        cfg["plugins"] = [{"name": "auth"},
                          {"name": "tag", "config": {"tag": "everyone"}},
                          {"name": "tag", "consumer": "alice", "config": {"tag": "alice"}}]
        return cfg
    with gateway(make) as (w, b):
        assert_eq(echo(get(w.port, "/")).header("x-tag"), "everyone", "anonymous")
        assert_eq(echo(get(w.port, "/", headers={"X-User": "alice"})).header("x-tag"), "alice",
                  "alice's own instance")
        assert_eq(echo(get(w.port, "/", headers={"X-User": "bob"})).header("x-tag"), "everyone",
                  "bob has none of his own")


def test_service_request_changes_reach_the_upstream():
    src = """
function P:access(conf)
  local s = weir.service.request
  s.set_method("PUT")
  s.set_path("/rewritten/ path")
  s.set_query({ b = "2", a = { "1", "x y" }, flag = true })
  s.set_header("Host", "backend.internal")
  s.add_header("X-Add", "one")
  s.add_header("X-Add", "two")
  s.set_headers({ ["X-Set"] = "s", ["X-Many"] = { "m1", "m2" } })
  s.clear_header("X-Client-Secret")
end"""
    with probe_gateway(src) as (w, b):
        seen = echo(get(w.port, "/orig?q=1", headers={"X-Client-Secret": "s3"}))
        assert_eq((seen["method"], seen["path"], seen["query"]),
                  ("PUT", "/rewritten/%20path", "a=1&a=x%20y&b=2&flag"), "request line")
        assert_eq(seen.header("host"), "backend.internal", "Host")
        assert_eq(seen.headers_named("x-add"), ["one", "two"], "added twice")
        assert_eq(seen.header("x-set"), "s", "set")
        assert_eq(seen.headers_named("x-many"), ["m1", "m2"], "set from an array")
        assert_eq(seen.header("x-client-secret"), None, "cleared")
        check(seen.header("x-forwarded-for"), "Weir's own fields are still added")


def test_service_request_refuses_injection_and_fields_weir_writes():
    src = """
function P:access(conf)
  local which = weir.request.get_path()
  local ok, err = pcall(function()
    if which == "/crlf" then weir.service.request.set_header("X-A", "v\\r\\nX-Evil: 1")
    elseif which == "/managed" then weir.service.request.set_header("Content-Length", "5")
    elseif which == "/xff" then weir.service.request.set_header("X-Forwarded-For", "1.2.3.4")
    elseif which == "/name" then weir.service.request.set_header("Bad Name", "v")
    elseif which == "/query" then weir.service.request.set_raw_query("a b")
    end
  end)
  return weir.response.exit(400, { error = err })
end"""
    with probe_gateway(src) as (w, b):
        for path, want in (("/crlf", "control characters"), ("/managed", "written by Weir"),
                           ("/xff", "written by Weir"), ("/name", "invalid header name"),
                           ("/query", "may not contain spaces")):
            r = get(w.port, path)
            check(want in (r.json().get("error") or ""), "%s: %r" % (path, r.body))


def test_set_target_sends_the_request_to_another_address():
    src = """
function P:access(conf)
  weir.service.set_target("127.0.0.1", tonumber(weir.request.get_header("X-Port")))
end"""
    with _two_backends(src) as (w, bs):
        first, second = bs
        seen = echo(get(w.port, "/", headers={"X-Port": str(second.port)}))
        assert_eq(seen.header("host"), "127.0.0.1:%d" % first.port, "Host is still the service's")
        assert_eq(second.stats()["requests"] >= 1, True, "the second backend got it")


def _two_backends(src):
    root = plugin_tree({"probe": handler(1000, src)})

    def make(p1, p2):
        cfg = base_config(p1, plugins=["bundled", "probe"], plugin_paths=[root])
        cfg["plugins"] = [{"name": "probe"}]
        return cfg
    return gateway(make, backends=2)


def test_response_changes_from_access_and_response_phases():
    src = """
function P:access(conf)
  weir.response.set_header("X-From-Access", "a")
  weir.response.add_header("X-Multi", "1")
end
function P:response(conf)
  weir.response.add_header("X-Multi", "2")
  weir.response.clear_header("X-Backend-Only")
  local h = weir.response.get_headers()
  weir.response.set_header("X-Multi-Count", #h["x-multi"])
  if weir.request.get_path() == "/teapot" then weir.response.set_status(418) end
end"""
    with probe_gateway(src) as (w, b):
        r = get(w.port, "/?header_name=X-Backend-Only&header_value=gone")
        assert_eq(r.status, 200, "status", r)
        assert_eq(r.header("X-From-Access"), "a", "set in access")
        assert_eq(r.headers_named("X-Multi"), ["1", "2"], "added in both phases")
        assert_eq(r.header("X-Multi-Count"), "2", "get_headers sees the edits")
        check(echo(r), "the body is the backend's")
        t = get(w.port, "/teapot")
        assert_eq((t.status, t.reason), (418, "I'm a teapot"), "set_status with its phrase")


def test_exit_with_a_string_body_and_headers():
    src = """
function P:access(conf)
  return weir.response.exit(429, "slow down", { ["Content-Type"] = "text/plain",
                                                ["Retry-After"] = 7 })
end"""
    with probe_gateway(src) as (w, b):
        r = get(w.port, "/")
        assert_eq((r.status, r.body, r.header("Content-Type"), r.header("Retry-After")),
                  (429, b"slow down", "text/plain", "7"), "exit")


READ_BODY = """
function P:access(conf)
  local p = weir.request.get_path()
  if p == "/raw" then
    local body = weir.request.get_raw_body()
    weir.service.request.set_header("X-Body-Length", #body)
  elseif p == "/json" or p == "/form" then
    local t, err, mime = weir.request.get_body()
    return weir.response.exit(200, { t = t, err = err, mime = mime })
  elseif p == "/replace" then
    weir.service.request.set_raw_body("replaced")
  elseif p == "/setjson" then
    weir.service.request.set_body({ hello = "world" }, "application/json")
  end
end"""


def test_request_bodies_read_decoded_and_replaced():
    with probe_gateway(READ_BODY) as (w, b):
        big = b"x" * 300000
        seen = echo(http("POST", w.port, "/raw", body=big))
        assert_eq(seen.header("x-body-length"), "300000", "the plugin read it all")
        assert_eq(seen["body_bytes"], 300000, "and the upstream still got it")
        # chunked
        sock = socket.create_connection(("127.0.0.1", w.port))
        sock.sendall(b"POST /raw HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
        body = json.loads(data.split(b"\r\n\r\n", 1)[1])
        assert_eq(body["body"], "hello world", "a chunked body, sent on with a length")
        assert_eq(dict((k.lower(), v) for k, v in body["headers"])["x-body-length"], "11",
                  "length seen by the plugin")
        j = http("POST", w.port, "/json", body=b'{"a": [1, 2], "b": null}',
                 headers={"Content-Type": "application/json"}).json()
        assert_eq((j["t"]["a"], j["mime"]), ([1, 2], "application/json"), "JSON decoded")
        f = http("POST", w.port, "/form", body=b"a=1&b=x+y",
                 headers={"Content-Type": "application/x-www-form-urlencoded"}).json()
        assert_eq(f["t"], {"a": "1", "b": "x y"}, "form decoded")
        u = http("POST", w.port, "/json", body=b"x", headers={"Content-Type": "text/plain"}).json()
        check("unsupported content type" in u["err"], "unsupported: %r" % u)
        r = echo(http("POST", w.port, "/replace", body=b"original body"))
        assert_eq(r["body"], "replaced", "set_raw_body")
        s = echo(http("POST", w.port, "/setjson", body=b"a=1",
                      headers={"Content-Type": "application/x-www-form-urlencoded"}))
        assert_eq((json.loads(s["body"]), s.header("content-type")),
                  ({"hello": "world"}, "application/json"), "set_body as JSON")


def test_buffer_response_lets_a_plugin_rewrite_the_upstream_body():
    src = """
P.BUFFER_RESPONSE = true
function P:response(conf)
  local body = weir.response.get_raw_body()
  weir.response.set_raw_body(body:upper())
end"""
    with probe_gateway(src) as (w, b):
        r = get(w.port, "/shout")
        assert_eq(r.status, 200, "status", r)
        check(b'"PATH": "/SHOUT"' in r.body, "the body went through the plugin: %r" % r.body[:200])
        assert_eq(r.header("Content-Length"), str(len(r.body)), "sent with its new length")
        assert_eq(r.header("Transfer-Encoding"), None, "not chunked")


def test_buffer_response_may_be_a_function_of_the_instance_config():
    src = handler(800, """
function P.BUFFER_RESPONSE(conf)
  if conf.mode == "boom" then error("cannot decide") end
  if conf.mode == "number" then return 1 end
  weir.shared.calls:incr(conf.mode, 1, 0)
  return conf.mode == "buffer"
end
function P:response(conf)
  local body, err = weir.response.get_raw_body()
  weir.response.set_header("X-Body", body and #body or err)
  weir.response.set_header("X-Calls", weir.shared.calls:get(conf.mode) or 0)
end""")
    root = plugin_tree({"probe": src})

    def make(port):
        cfg = base_config(port, plugins=["bundled", "probe"], plugin_paths=[root],
                          lua={"response_buffer_limit": 4096}, shared_dicts={"calls": 65536})
        cfg["services"] = [service("s", port, routes=[
            route(mode, ["/" + mode], strip_path=False,
                  plugins=[{"name": "probe", "config": {"mode": mode}}])
            for mode in ("buffer", "stream", "boom", "number")])]
        return cfg
    with gateway(make) as (w, b):
        for _ in range(3):
            r = get(w.port, "/buffer?bytes=3000")
            assert_eq((r.status, r.header("X-Body"), len(r.body)), (200, "3000", 3000),
                      "buffered for this instance")
        assert_eq(r.header("X-Calls"), "1", "asked once per instance, not per request")
        r = get(w.port, "/buffer?bytes=10000")
        assert_eq(r.status, 502, "past the buffer limit: the body was being collected")
        r = get(w.port, "/stream?bytes=10000")
        assert_eq((r.status, len(r.body)), (200, 10000), "streamed, past the limit")
        check("streamed" in r.header("X-Body"), "get_raw_body says why: %r" % r.header("X-Body"))
        for mode in ("boom", "number"):
            r = get(w.port, "/%s?bytes=3000" % mode)
            assert_eq((r.status, r.header("X-Body")), (200, "3000"),
                      "%s: counts as true, so buffered" % mode)
        err = w.stderr_text()
        check("plugin probe: BUFFER_RESPONSE(conf) failed in worker" in err and
              "cannot decide (the response is buffered)" in err, err)
        check("BUFFER_RESPONSE(conf) returned a number, not a boolean" in err, err)


def test_ctx_plugin_is_per_plugin_and_ctx_shared_is_per_request():
    one = handler(2000, """
function P:access(conf)
  weir.ctx.plugin.mine = "one"
  weir.ctx.shared.count = (weir.ctx.shared.count or 0) + 1
end
function P:response(conf)
  weir.response.set_header("X-One", tostring(weir.ctx.plugin.mine))
end""")
    two = handler(1000, """
function P:access(conf)
  weir.ctx.shared.count = (weir.ctx.shared.count or 0) + 1
end
function P:response(conf)
  weir.response.set_header("X-Two", tostring(weir.ctx.plugin.mine))
  weir.response.set_header("X-Count", weir.ctx.shared.count)
end""")
    root = plugin_tree({"one": one, "two": two})

    def make(port):
        cfg = base_config(port, plugins=["bundled", "one", "two"], plugin_paths=[root])
        cfg["plugins"] = [{"name": "one"}, {"name": "two"}]
        return cfg
    with gateway(make) as (w, b):
        for _ in range(2):  # a fresh ctx per request: the count does not carry over
            r = get(w.port, "/")
            assert_eq((r.header("X-One"), r.header("X-Two"), r.header("X-Count")),
                      ("one", "nil", "2"), "ctx")


def test_shared_dict_counts_exactly_across_workers():
    src = """
function P:access(conf)
  local n = weir.shared.hits:incr("k", 1, 0)
  weir.response.set_header("X-Hits", n)
end"""
    with probe_gateway(src, workers=4, shared_dicts={"hits": 1048576}) as (w, b):
        import threading
        errors = []

        def many():
            for _ in range(25):
                if get(w.port, "/").status != 200:
                    errors.append(1)
        threads = [threading.Thread(target=many) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert_eq(errors, [], "all requests succeeded")
        assert_eq(get(w.port, "/").header("X-Hits"), "201", "200 increments, then this one")


def test_log_lines_name_the_plugin_and_the_request():
    src = """
function P:access(conf)
  weir.log.warn("seen path ", weir.request.get_path(), " ", 42)
end"""
    with probe_gateway(src) as (w, b):
        r = get(w.port, "/logged")
        rid = r.header("X-Request-ID")
        wait_until(lambda: "[probe] seen path /logged 42 (request %s)" % rid in w.stderr_text(),
                   3, what="the log line")


def test_timer_runs_later_and_may_wait():
    src = """
function P:access(conf)
  if weir.request.get_path() == "/start" then
    weir.timer.at(0.05, function(premature, value)
      weir.sleep(0.05)
      weir.shared.state:set("timer", value)
    end, "done")
  end
  weir.response.set_header("X-Timer", tostring(weir.shared.state:get("timer")))
end"""
    with probe_gateway(src, shared_dicts={"state": 65536}) as (w, b):
        assert_eq(get(w.port, "/start").header("X-Timer"), "nil", "not yet")
        wait_until(lambda: get(w.port, "/check").header("X-Timer") == "done", 3,
                   what="the timer's write")


def test_codec_modules_are_available_to_plugins():
    src = """
function P:access(conf)
  local m = weir.re.match("order-1234", [[(\\d+)]])
  local b64 = weir.base64.encode("hi?")
  return weir.response.exit(200, {
    json = weir.json.decode(weir.json.encode({ a = { 1, 2 } })).a[2],
    re = m[1],
    gsub = (weir.re.gsub("a-b-c", "-", "+")),
    b64 = b64, back = weir.base64.decode(b64),
    sha = weir.sha256("abc"),
    hmac = weir.hmac("sha256", "key", "The quick brown fox jumps over the lazy dog"),
    uuid = #weir.uuid(),
    jwt_err = select(2, weir.jwt.verify("a.b.c", "secret", "HS256")),
    now = type(weir.time.now()), mono = type(weir.time.monotonic_ms()),
  })
end"""
    with probe_gateway(src) as (w, b):
        got = get(w.port, "/").json()
        assert_eq(got, {
            "json": 2, "re": "1234", "gsub": "a+b+c", "b64": "aGk/", "back": "hi?",
            "sha": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "hmac": "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
            "uuid": 36, "jwt_err": got.get("jwt_err"), "now": "number", "mono": "number",
        }, "codecs")
        check(isinstance(got["jwt_err"], str) and got["jwt_err"], "jwt.verify reports an error")


def test_a_body_over_the_limit_while_a_plugin_reads_it_is_a_413_and_a_client_leaving_is_harmless():
    with probe_gateway(READ_BODY, limits={"max_body_bytes": 1000}) as (w, b):
        r = http("POST", w.port, "/raw", body=b"y" * 5000)
        assert_eq(r.status, 413, "over the limit", r)
        sock = socket.create_connection(("127.0.0.1", w.port))
        sock.sendall(b"POST /raw HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nonly part")
        time.sleep(0.2)
        sock.close()  # the plugin is waiting for the rest
        time.sleep(0.2)
        assert_eq(echo(http("POST", w.port, "/raw", body=b"z" * 10)).header("x-body-length"),
                  "10", "the gateway goes on")


def test_load_credential_finds_a_key_and_its_consumer():
    src = """
function P:access(conf)
  local cred, consumer = weir.client.load_credential("key-auth", weir.request.get_header("apikey"))
  local jwt, jwt_consumer = weir.client.load_credential("jwt", "iss-1")
  local none, err = weir.client.load_credential("key-auth", "nope")
  return weir.response.exit(200, {
    key = cred and cred.key, consumer = consumer and consumer.username,
    jwt_alg = jwt and jwt.algorithm, jwt_consumer = jwt_consumer and jwt_consumer.username,
    none = none == nil and err,
  })
end"""

    def make(port):
        root = plugin_tree({"probe": handler(1000, src)})
        cfg = base_config(port, plugins=["bundled", "probe"], plugin_paths=[root])
        cfg["consumers"] = [
            {"username": "alice", "keyauth_credentials": [{"key": "k-123"}]},
            {"username": "bob", "jwt_secrets": [{"key": "iss-1", "secret": "s3cr3t-value"}]}]
        cfg["plugins"] = [{"name": "probe"}]
        return cfg
    with gateway(make) as (w, b):
        assert_eq(get(w.port, "/", headers={"apikey": "k-123"}).json(),
                  {"key": "k-123", "consumer": "alice", "jwt_alg": "HS256",
                   "jwt_consumer": "bob", "none": "not found"}, "credentials by key")


def test_service_request_get_path_is_what_the_upstream_will_get():
    src = """
function P:access(conf)
  local before = weir.service.request.get_path()
  local q = weir.service.request.get_raw_query()
  weir.service.request.set_path("/z")
  weir.service.request.set_raw_query("a=b")
  return weir.response.exit(200, { before = before, query = q,
                                   after = weir.service.request.get_path(),
                                   query_after = weir.service.request.get_raw_query() })
end"""

    def make(port):
        root = plugin_tree({"probe": handler(1000, src)})
        cfg = base_config(port, plugins=["bundled", "probe"], plugin_paths=[root])
        cfg["services"] = [service("api", port, path="/v1", routes=[route("api", ["/api"])])]
        cfg["plugins"] = [{"name": "probe"}]
        return cfg
    with gateway(make) as (w, b):
        assert_eq(get(w.port, "/api/x?y=1").json(),
                  {"before": "/v1/x", "query": "y=1", "after": "/z", "query_after": "a=b"},
                  "the upstream path and query")


def test_service_request_get_header_sees_what_earlier_plugins_set():
    # "first" (priority 2000) edits the upstream request's fields; "second" (1000) reads them
    # back with weir.service.request.get_header(s), and the backend gets the same list
    first = """
function P:access(conf)
  weir.service.request.set_header("X-Consumer-ID", "c-1")
  weir.service.request.clear_header("X-Drop")
  weir.service.request.add_header("X-Multi", "two")
  weir.service.request.set_header("Host", "upstream.example")
end"""
    second = """
function P:access(conf)
  local r = weir.service.request
  local all = r.get_headers()
  weir.service.request.set_header("X-Seen", weir.json.encode({
    consumer = r.get_header("x-consumer-id"), drop = r.get_header("X-Drop") or "gone",
    multi = all["x-multi"], host = r.get_header("Host"), client = r.get_header("X-Client"),
    forwarded = r.get_header("X-Forwarded-For") or "not listed",
    consumer_in_all = all.X_Consumer_ID }))
end"""

    def make(port):
        root = plugin_tree({"first": handler(2000, first), "second": handler(1000, second)})
        cfg = base_config(port, plugins=["bundled", "first", "second"], plugin_paths=[root])
        cfg["plugins"] = [{"name": "first"}, {"name": "second"}]
        return cfg
    with gateway(make) as (w, b):
        e = echo(get(w.port, "/", headers=[("X-Drop", "1"), ("X-Multi", "one"),
                                           ("X-Client", "c")]))
        assert_eq(json.loads(e.header("x-seen")),
                  {"consumer": "c-1", "drop": "gone", "multi": ["one", "two"],
                   "host": "upstream.example", "client": "c", "forwarded": "not listed",
                   "consumer_in_all": "c-1"}, "the upstream fields as they stand")
        assert_eq(e.header("x-consumer-id"), "c-1", "what the backend got")
        assert_eq(e.headers_named("x-drop"), [], "cleared for the backend too")
        assert_eq(e.header("host"), "upstream.example", "the Host a plugin set")


def test_service_request_get_header_before_any_edit_lists_the_forwarded_fields():
    src = """
function P:access(conf)
  local r = weir.service.request
  return weir.response.exit(200, { client = r.get_header("X-Client"),
    connection = r.get_header("Connection") or "hop-by-hop, not listed",
    n = #(r.get_headers(1) and {1} or {}) })
end"""

    def make(port):
        root = plugin_tree({"probe": handler(1000, src)})
        cfg = base_config(port, plugins=["bundled", "probe"], plugin_paths=[root])
        cfg["plugins"] = [{"name": "probe"}]
        return cfg
    with gateway(make) as (w, b):
        assert_eq(get(w.port, "/", headers={"X-Client": "v", "Connection": "keep-alive"}).json(),
                  {"client": "v", "connection": "hop-by-hop, not listed", "n": 1},
                  "the client's end-to-end fields, unedited")


def test_plugin_get_id_and_scope_name_the_running_instance():
    src = """
function P:access(conf)
  local scope = weir.plugin.get_scope()
  weir.ctx.plugin.id = weir.plugin.get_id()
  return weir.response.exit(200, { id = weir.plugin.get_id(), route = scope.route,
                                   service = scope.service, consumer = scope.consumer })
end
function P:log(conf)
  assert(weir.plugin.get_id() == weir.ctx.plugin.id, "the same instance in log")
  weir.timer.at(0, function()
    local ok, err = pcall(weir.plugin.get_id)
    weir.log.warn("in a timer: ", tostring(ok), " ", err)
  end)
end"""

    def make(port):
        root = plugin_tree({"probe": handler(1000, src)})
        cfg = base_config(port, plugins=["bundled", "probe"], plugin_paths=[root])
        cfg["services"] = [service("api", port, routes=[route("a", ["/a"]), route("b", ["/b"])])]
        cfg["plugins"] = [{"name": "probe", "route": "a"}, {"name": "probe", "service": "api"}]
        return cfg
    with gateway(make) as (w, b):
        admin = admin_port(w)
        ids = {p["route"]["id"] if p.get("route") else "service": p["id"]
               for p in get(admin, "/plugins").json()["data"]}
        routes = {r["name"]: r["id"] for r in get(admin, "/routes").json()["data"]}
        svc = get(admin, "/services/api").json()["id"]
        assert_eq(get(w.port, "/a").json(), {"id": ids[routes["a"]], "route": routes["a"]},
                  "the route's instance")
        assert_eq(get(w.port, "/b").json(), {"id": ids["service"], "service": svc},
                  "the service's instance")
        wait_until(lambda: "in a timer: false" in w.stderr_text(), what="the timer's error")
        check("weir.plugin.get_id: " in w.stderr_text(), w.stderr_text())


def test_zlib_inflates_gzip_and_zlib_bounded_and_deflates():
    import gzip
    import zlib
    src = """
function P:access(conf)
  local body = weir.request.get_raw_body()
  local op = weir.request.get_query_arg("op")
  if op == "deflate" then
    return weir.response.exit(200, weir.zlib.deflate(body, weir.request.get_query_arg("format")))
  end
  local out, err = weir.zlib.inflate(body, tonumber(weir.request.get_query_arg("max")))
  if not out then return weir.response.exit(422, err) end
  return weir.response.exit(200, out)
end"""
    text = b'{"hello": "world"}' * 1000
    with probe_gateway(src) as (w, b):
        for data in (gzip.compress(text), zlib.compress(text)):
            r = http("POST", w.port, "/?op=inflate", body=data)
            assert_eq((r.status, r.body), (200, text), "inflated %r" % data[:2])
        bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))
        r = http("POST", w.port, "/?op=inflate&max=1048576", body=bomb)
        assert_eq((r.status, r.body), (422, b"too large"), "a zip bomb stops at max_bytes")
        r = http("POST", w.port, "/?op=inflate", body=b"plain text, not compressed")
        assert_eq((r.status, r.body), (422, b"not gzip or zlib data"), "not compressed")
        r = http("POST", w.port, "/?op=inflate", body=gzip.compress(text)[:-30])
        assert_eq((r.status, r.body), (422, b"truncated"), "cut short")
        r = http("POST", w.port, "/?op=deflate", body=text)
        assert_eq(gzip.decompress(r.body), text, "deflate makes gzip by default")
        r = http("POST", w.port, "/?op=deflate&format=zlib", body=text)
        assert_eq(zlib.decompress(r.body), text, "or zlib")


def test_client_get_connection_and_worker_ids():
    from harness import Conn
    src = """
function P:access(conf)
  local c = weir.client.get_connection()
  return weir.response.exit(200, { addr = c.server_addr, port = c.server_port, id = c.id,
    requests = c.requests, worker = weir.worker.id(), pid = weir.worker.pid() })
end"""
    with probe_gateway(src) as (w, b):
        with Conn(w.port) as c:
            one, two = [json.loads(c.request("GET", "/").body) for _ in range(2)]
        with Conn(w.port) as c:
            other = json.loads(c.request("GET", "/").body)
        assert_eq((one["addr"], one["port"], one["pid"], one["worker"]),
                  ("127.0.0.1", w.port, w.pid, 0), "local address, port, pid, worker")
        assert_eq((one["id"], one["requests"], two["id"], two["requests"]),
                  (one["id"], 1, one["id"], 2), "one connection: its requests are counted")
        check(other["id"] != one["id"] and other["requests"] == 1, "another connection: %r" % other)
