"""The Lua plugin runtime (issue 4): phases in order (rewrite, access, upstream, response, log),
ordering by PRIORITY, scope precedence, weir.response.exit, yielding waits that leave the worker
free, error isolation (a 500 for that request only), the instruction budget and the memory limit,
and plugin code reloaded on SIGHUP. Every test drives the real binary over real sockets with
plugins written to a temporary plugin_paths root."""

import json
import os
import signal
import socket
import threading
import time

from harness import (assert_eq, base_config, check, echo, gateway, get, http, make_tmpdir, route,
                     service, wait_until)
from test_admin_write import STORE, Admin

ANY_CONFIG = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}


def plugin_tree(plugins, schemas=None):
    """A plugin_paths root: {name: handler source}; schemas default to any object."""
    root = make_tmpdir("plugins")
    for name, source in plugins.items():
        os.makedirs(os.path.join(root, "plugins", name))
        with open(os.path.join(root, "plugins", name, "handler.lua"), "w") as f:
            f.write(source)
        os.makedirs(os.path.join(root, "schemas", "plugins"), exist_ok=True)
        schema = (schemas or {}).get(name, ANY_CONFIG)
        with open(os.path.join(root, "schemas", "plugins", name + ".json"), "w") as f:
            json.dump(schema, f)
    return root


def handler(priority, body, version="1.0"):
    return "local P = { PRIORITY = %s, VERSION = %r }\n%s\nreturn P\n" % (priority, version, body)


def config(backend_port, root, plugins, names, **weir):
    cfg = base_config(backend_port, plugins=["bundled"] + list(names), plugin_paths=[root], **weir)
    cfg["plugins"] = plugins
    return cfg


def run_gateway(root, plugins, names, backends=1, **weir):
    return gateway(lambda *ports: config(ports[0], root, plugins, names, **weir),
                   backends=backends)


# A plugin that records each phase in a header chain, so the order can be asserted end to end.
RECORDER = handler(1000, """
function P:rewrite(conf)
  weir.ctx.shared.trail = { "rewrite:" .. conf.tag }
end
function P:access(conf)
  local trail = weir.ctx.shared.trail
  trail[#trail + 1] = "access:" .. conf.tag
  weir.service.request.set_header("X-Trail", table.concat(trail, ","))
  weir.service.request.clear_header("X-Drop-Me")
end
function P:response(conf)
  local trail = weir.ctx.shared.trail
  trail[#trail + 1] = "response:" .. conf.tag .. ":" .. weir.response.get_status() .. ":"
                      .. weir.response.get_source()
  weir.response.set_header("X-Trail", table.concat(trail, ","))
  weir.response.set_header("X-Upstream-Type", weir.response.get_header("content-type"))
end
function P:log(conf)
  weir.log.notice("logged ", conf.tag, " status ", weir.response.get_status())
end
""")


def test_phases_run_in_order_and_change_the_upstream_request_and_the_response():
    root = plugin_tree({"recorder": RECORDER})
    plugins = [{"name": "recorder", "config": {"tag": "t"}}]
    with run_gateway(root, plugins, ["recorder"]) as (w, b):
        r = get(w.port, "/some/path?x=1", headers={"X-Drop-Me": "secret", "X-Keep": "k"})
        assert_eq(r.status, 200, "status", r)
        seen = echo(r)
        assert_eq(seen.header("x-trail"), "rewrite:t,access:t", "upstream saw rewrite then access")
        assert_eq(seen.header("x-drop-me"), None, "cleared header not sent upstream")
        assert_eq(seen.header("x-keep"), "k", "other client headers still forwarded")
        assert_eq(r.header("X-Trail"), "rewrite:t,access:t,response:t:200:service",
                  "response phase after the upstream answered")
        assert_eq(r.header("X-Upstream-Type"), "application/json", "response phase reads headers")
        wait_until(lambda: "logged t status 200" in w.stderr_text(), 3,
                   what="the log phase's message")


def test_plugins_run_by_priority_high_to_low_ties_by_name():
    def appender(priority, name):
        return handler(priority, """
function P:access(conf)
  local order = weir.ctx.shared.order or {}
  order[#order + 1] = %r
  weir.ctx.shared.order = order
  weir.service.request.set_header("X-Order", table.concat(order, ","))
end
""" % name)
    root = plugin_tree({"low": appender(10, "low"), "high": appender(2000, "high"),
                        "mid-b": appender(500, "mid-b"), "mid-a": appender(500, "mid-a")})
    names = ["low", "high", "mid-b", "mid-a"]
    plugins = [{"name": n} for n in names]
    with run_gateway(root, plugins, names) as (w, b):
        assert_eq(echo(get(w.port, "/")).header("x-order"), "high,mid-a,mid-b,low", "order")


def test_the_most_specific_instance_of_a_plugin_wins():
    tagger = handler(100, """
function P:access(conf)
  weir.service.request.set_header("X-Scope", conf.scope)
end
""")
    root = plugin_tree({"tagger": tagger})

    def make(port):
        cfg = base_config(port, plugins=["bundled", "tagger"], plugin_paths=[root])
        cfg["services"].append(service("other", port, routes=[route("other", ["/other"])]))
        cfg["services"][0]["routes"].append(route("special", ["/special"]))
        cfg["plugins"] = [
            {"name": "tagger", "config": {"scope": "global"}},
            {"name": "tagger", "service": "echo", "config": {"scope": "service"}},
            {"name": "tagger", "route": "special", "config": {"scope": "route"}},
        ]
        return cfg
    with gateway(make) as (w, b):
        assert_eq(echo(get(w.port, "/x")).header("x-scope"), "service", "service beats global")
        assert_eq(echo(get(w.port, "/special")).header("x-scope"), "route", "route beats service")
        assert_eq(echo(get(w.port, "/other")).header("x-scope"), "global", "global elsewhere")


EXITER = handler(2000, """
function P:access(conf)
  if weir.request.get_header("X-Let-Me-In") ~= "yes" then
    return weir.response.exit(403, { message = "forbidden by exiter" }, { ["X-Why"] = "no pass" })
  end
end
""")
LATER = handler(1000, """
function P:access(conf)
  weir.service.request.set_header("X-Later", "ran")
end
function P:response(conf)
  weir.response.set_header("X-Seen-Source", weir.response.get_source() .. ":"
                           .. weir.response.get_status())
end
""")


def test_exit_stops_access_and_the_upstream_but_response_and_log_still_run():
    root = plugin_tree({"exiter": EXITER, "later": LATER})
    plugins = [{"name": "exiter"}, {"name": "later"}]
    with run_gateway(root, plugins, ["exiter", "later"]) as (w, b):
        before = b.stats()["requests"]
        r = get(w.port, "/")
        assert_eq(r.status, 403, "status", r)
        assert_eq(r.json(), {"message": "forbidden by exiter"}, "a table body is sent as JSON")
        assert_eq(r.header("Content-Type"), "application/json; charset=utf-8", "content type")
        assert_eq(r.header("X-Why"), "no pass", "exit headers")
        assert_eq(r.header("X-Seen-Source"), "exit:403", "the response phase ran on the exit")
        check(r.header("X-Request-ID"), "a request id on the exit response")
        assert_eq(b.stats()["requests"], before, "the upstream was not called")
        ok = get(w.port, "/", headers={"X-Let-Me-In": "yes"})
        assert_eq(echo(ok).header("x-later"), "ran", "later plugins run when nobody exits")
        assert_eq(ok.header("X-Seen-Source"), "service:200", "source service")


BOOM = handler(1000, """
function P:access(conf)
  if weir.request.get_path() == "/boom" then
    local t = nil
    return t.field -- attempt to index a nil value
  end
end
""")


def test_a_lua_error_is_a_500_for_that_request_only_and_is_logged():
    root = plugin_tree({"boom": BOOM})
    with run_gateway(root, [{"name": "boom"}], ["boom"]) as (w, b):
        r = get(w.port, "/boom")
        assert_eq(r.status, 500, "status", r)
        body = r.json()
        assert_eq(body["message"], "An unexpected error occurred", "Kong's message", r)
        assert_eq(body["request_id"], r.header("X-Request-ID"), "the request id")
        check("attempt to index" not in r.body.decode(), "no Lua details leak to the client")
        wait_until(lambda: "plugin boom failed in the access phase" in w.stderr_text(), 3,
                   what="the error in the log")
        log = w.stderr_text()
        check("attempt to index" in log and "stack traceback" in log and body["request_id"] in log,
              "the log has the message, a traceback and the request id:\n" + log[-2000:])
        for _ in range(3):
            assert_eq(get(w.port, "/fine").status, 200, "the worker goes on")
        admin = int(w.config["weir"]["admin_listen"][0].rsplit(":", 1)[1])
        metrics = get(admin, "/metrics").body.decode()
        check('weir_plugin_errors_total{plugin="boom",phase="access"} 1' in metrics,
              "counted in /metrics:\n" + metrics[-1500:])


SLEEPER = handler(1000, """
function P:access(conf)
  weir.sleep(0.2)
  weir.service.request.set_header("X-Slept", "0.2")
end
""")


def test_fifty_concurrent_requests_sleeping_200ms_finish_well_under_a_second_on_one_worker():
    root = plugin_tree({"sleeper": SLEEPER})
    with run_gateway(root, [{"name": "sleeper"}], ["sleeper"], workers=1) as (w, b):
        assert_eq(echo(get(w.port, "/warm")).header("x-slept"), "0.2", "the plugin ran")
        results = []

        def one():
            results.append(get(w.port, "/", timeout=10))
        threads = [threading.Thread(target=one) for _ in range(50)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - start
        assert_eq(sorted(r.status for r in results), [200] * 50, "all succeeded")
        check(took < 1.0, "50 sleeping requests took %.2fs on one worker" % took)


RUNAWAY = handler(1000, """
function P:access(conf)
  if weir.request.get_path() == "/loop" then
    while true do end
  end
  if weir.request.get_path() == "/sneaky" then
    while true do pcall(function() while true do end end) end
  end
  if weir.request.get_path() == "/after-a-wait" then
    weir.sleep(0.01)
    while true do end
  end
  -- code the JIT would compile if it could: a loop made at run time, one in a required module
  if weir.request.get_path() == "/loadstring" then
    loadstring("local n = 0 while true do n = n + 1 end")()
  end
  if weir.request.get_path() == "/module" then
    require("plugins.runaway.spin").spin()
  end
end
""")

SPIN_MODULE = """
local M = {}
function M.spin() local n = 0 for i = 1, 1e18 do n = n + i end return n end
return M
"""


def test_the_instruction_budget_stops_runaway_loops_with_a_500():
    root = plugin_tree({"runaway": RUNAWAY})
    with open(os.path.join(root, "plugins", "runaway", "spin.lua"), "w") as f:
        f.write(SPIN_MODULE)
    with run_gateway(root, [{"name": "runaway"}], ["runaway"], workers=1,
                     lua={"instruction_budget": 1000000}) as (w, b):
        for path in ("/loop", "/sneaky", "/after-a-wait", "/loadstring", "/module"):
            r = get(w.port, path, timeout=10)
            assert_eq(r.status, 500, path, r)
        assert_eq(get(w.port, "/fine").status, 200, "the gateway keeps serving")
        check("instruction budget exceeded" in w.stderr_text(), "logged")


LEAKER = handler(1000, """
local hoard = {}
function P:access(conf)
  if weir.request.get_path() == "/leak" then
    for i = 1, 1e9 do hoard[#hoard + 1] = string.rep("x", 1000) .. i end
  end
end
""")


def test_the_memory_limit_fails_the_leaking_call_and_the_gateway_goes_on():
    root = plugin_tree({"leaker": LEAKER})

    def make(port):
        cfg = config(port, root, [], ["leaker"], workers=1,
                     lua={"memory_limit": 32 * 1024 * 1024, "instruction_budget": 0})
        cfg["services"][0]["routes"].append(route("plain", ["/plain"]))
        cfg["plugins"] = [{"name": "leaker", "route": "echo"}]
        return cfg
    with gateway(make) as (w, b):
        r = get(w.port, "/leak", timeout=20)
        assert_eq(r.status, 500, "the leaking request", r)
        check("not enough memory" in w.stderr_text(), "logged as out of memory")
        assert_eq(get(w.port, "/plain").status, 200, "a route without plugins is served")
        # the leak stays in the plugin's module table: the full VM is replaced by a fresh one
        wait_until(lambda: "new requests get a fresh VM" in w.stderr_text(), 3,
                   what="the VM's replacement in the log")
        for path in ("/after", "/leak-free", "/again"):
            assert_eq(get(w.port, path).status, 200, "the plugin's route serves again")


def test_sighup_reloads_changed_plugin_code():
    root = plugin_tree({"versioned": handler(1000, """
function P:access(conf) weir.service.request.set_header("X-Code", "one") end
""")})
    with run_gateway(root, [{"name": "versioned"}], ["versioned"]) as (w, b):
        assert_eq(echo(get(w.port, "/")).header("x-code"), "one", "first code")
        with open(os.path.join(root, "plugins", "versioned", "handler.lua"), "w") as f:
            f.write(handler(1000, """
function P:access(conf) weir.service.request.set_header("X-Code", "two") end
"""))
        w.send_signal(signal.SIGHUP)
        wait_until(lambda: echo(get(w.port, "/")).header("x-code") == "two", 5,
                   what="the new code after SIGHUP")


def test_plugins_added_through_the_admin_api_run_on_the_next_request():
    root = plugin_tree({"recorder": RECORDER})
    with gateway(store=STORE, plugins=["bundled", "recorder"], plugin_paths=[root]) as (w, b):
        api = Admin(w)
        assert_eq(echo(get(w.port, "/")).header("x-trail"), None, "no plugin yet")
        p = api.ok("POST", "/routes/echo/plugins", {"name": "recorder", "config": {"tag": "a"}})
        assert_eq(echo(get(w.port, "/")).header("x-trail"), "rewrite:a,access:a", "added")
        api.ok("PATCH", "/plugins/" + p["id"], {"config": {"tag": "b"}})
        assert_eq(echo(get(w.port, "/")).header("x-trail"), "rewrite:b,access:b", "new config")
        api.ok("PATCH", "/plugins/" + p["id"], {"enabled": False})
        assert_eq(echo(get(w.port, "/")).header("x-trail"), None, "disabled")


def test_debug_match_lists_the_chain_a_request_would_run():
    root = plugin_tree({"first": handler(2000, "function P:access(conf) end"),
                        "second": handler(10, "function P:log(conf) end\n"
                                              "function P:rewrite(conf) end")})

    def make(port):
        cfg = config(port, root, [], ["first", "second"])
        cfg["consumers"] = [{"username": "carol"}]
        cfg["plugins"] = [{"name": "second"}, {"name": "first", "route": "echo"},
                          {"name": "first", "consumer": "carol"}]
        return cfg
    with gateway(make) as (w, b):
        admin = int(w.config["weir"]["admin_listen"][0].rsplit(":", 1)[1])
        doc = get(admin, "/debug/match?path=/x").json()
        assert_eq([(p["name"], p["scope"], p["phases"]) for p in doc["plugins"]],
                  [("first", "route", ["access"]), ("second", "global", ["rewrite", "log"])],
                  "the chain in order", doc)
        assert_eq([(p["name"], p["scope"]) for p in doc["consumer_plugins"]],
                  [("first", "consumer")], "consumer-scoped instances", doc)


def test_the_response_phase_also_runs_for_gateway_errors():
    root = plugin_tree({"later": LATER})

    def make(port):
        cfg = config(port, root, [{"name": "later"}], ["later"])
        cfg["services"][0]["url"] = "http://127.0.0.1:1"  # nothing listens: 502
        cfg["services"][0]["retries"] = 0
        return cfg
    with gateway(make) as (w, b):
        r = get(w.port, "/")
        assert_eq(r.status, 502, "status", r)
        assert_eq(r.header("X-Seen-Source"), "error:502", "the plugin saw the gateway's error")
        check("message" in r.json(), "the gateway's JSON body: %r" % r.body)
