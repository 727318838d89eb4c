"""`weir plugin test DIR`: a plugin root's spec files run against a gateway and a mock upstream
started inside the weir process. The bundled examples pass their own specs; failures, errors
outside tests and usage errors are reported with the right exit status; the mock upstream and
the spec harness behave as docs/plugins.md says."""

import json
import os
import re

from harness import REPO, assert_eq, check, make_tmpdir, run_weir

EXAMPLES = os.path.join(REPO, "examples", "plugins")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", ": runtime error: ")

ECHO_PLUGIN = """
local P = { PRIORITY = 1000, VERSION = "1.0" }
function P:access(conf)
  if weir.request.get_path() == "/boom" then error("boom from the plugin") end
  weir.service.request.set_header("X-Tag", conf.tag or "untagged")
end
return P
"""


def plugin_root(specs, plugins=None, config=None):
    """A plugin root: {file name: source} under spec/, {name: handler source} under plugins/
    (schemas accept any object), and spec/config.json when `config` is given."""
    root = make_tmpdir("plugin-root")
    for name, source in (plugins or {}).items():
        os.makedirs(os.path.join(root, "plugins", name))
        with open(os.path.join(root, "plugins", name, "handler.lua"), "w") as f:
            f.write(source)
        os.makedirs(os.path.join(root, "schemas", "plugins"), exist_ok=True)
        with open(os.path.join(root, "schemas", "plugins", name + ".json"), "w") as f:
            json.dump({"type": "object"}, f)
    if specs is not None:
        os.makedirs(os.path.join(root, "spec"))
    for name, source in (specs or {}).items():
        with open(os.path.join(root, "spec", name), "w") as f:
            f.write(source)
    if config is not None:
        with open(os.path.join(root, "spec", "config.json"), "w") as f:
            json.dump(config, f)
    return root


def plugin_test(root, *flags, timeout=60):
    rc, out, err = run_weir(["plugin", "test", root] + list(flags), timeout=timeout)
    for line in err.splitlines():
        check(not any(m in line for m in SANITIZER_MARKERS), "sanitizer report:\n" + err[-3000:])
    return rc, out, err


def summary(out):
    lines = out.rstrip("\n").splitlines()
    m = re.match(r"^(\d+) passed, (\d+) failed$", lines[-1]) if lines else None
    check(m, "the last line is the summary:\n" + out)
    return int(m.group(1)), int(m.group(2))


def assert_example_passes(name):
    rc, out, err = plugin_test(os.path.join(EXAMPLES, name))
    assert_eq(rc, 0, "exit status", out + err)
    passed, failed = summary(out)
    check(passed >= 5 and failed == 0, "every test passed:\n" + out)
    check("not ok" not in out, "no failing line:\n" + out)


def test_the_hit_counter_example_passes_its_specs():
    assert_example_passes("hit-counter")


def test_the_api_version_router_example_passes_its_specs():
    assert_example_passes("api-version-router")


def test_a_failing_assertion_is_reported_with_expected_and_actual_and_exit_1():
    root = plugin_root({"tag_spec.lua": """
local gw = require "weir.test"
describe("tag", function()
  before_each(function()
    gw.configure{ plugins = { { name = "tagger", config = { tag = "blue" } } } }
  end)
  it("reaches the upstream", function()
    assert.equal("blue", gw.upstream_echo(gw.request("/")):header("x-tag"))
  end)
  it("is wrong on purpose", function()
    assert.equal("red", gw.upstream_echo(gw.request("/")):header("x-tag"))
  end)
end)
"""}, plugins={"tagger": ECHO_PLUGIN})
    rc, out, err = plugin_test(root)
    assert_eq(rc, 1, "exit status", out + err)
    check("ok - tag reaches the upstream\n" in out, "the passing test's line:\n" + out)
    check(re.search(r'^not ok - tag is wrong on purpose: spec/tag_spec.lua:11: .*\n'
                    r'\s+expected: "red"\n\s+actual: "blue"', out, re.M),
          "the failing test's line with where, expected and actual:\n" + out)
    assert_eq(summary(out), (1, 1), "summary")


def test_a_spec_that_errors_outside_a_test_fails_its_file_and_the_next_file_runs():
    root = plugin_root({
        "a_broken_spec.lua": """
describe("broken", function()
  it("is never run", function() end)
  local missing = nil
  missing.field = 1
end)
""",
        "b_fine_spec.lua": 'it("runs anyway", function() assert.truthy(true) end)\n',
        "c_syntax_spec.lua": 'it("x", function( end)\n',
    })
    rc, out, err = plugin_test(root)
    assert_eq(rc, 1, "exit status", out + err)
    check(re.search(r"^not ok - spec/a_broken_spec.lua: spec/a_broken_spec.lua:5: attempt to index",
                    out, re.M), "the file's failure, with where:\n" + out)
    check("is never run" not in out, "a file that failed to load runs none of its tests:\n" + out)
    check("ok - runs anyway\n" in out, "the next file still runs:\n" + out)
    check(re.search(r"^not ok - spec/c_syntax_spec.lua: .*c_syntax_spec.lua:1:", out, re.M),
          "a syntax error fails its file:\n" + out)
    assert_eq(summary(out), (1, 2), "summary")


def test_a_plugin_error_shows_the_error_log_lines_of_the_failing_test():
    root = plugin_root({"boom_spec.lua": """
local gw = require "weir.test"
it("gets 200", function()
  gw.configure{ plugins = { { name = "tagger" } } }
  assert.equal(200, gw.request("/boom").status)
end)
"""}, plugins={"tagger": ECHO_PLUGIN})
    rc, out, err = plugin_test(root)
    assert_eq(rc, 1, "exit status", out + err)
    check(re.search(r"expected: 200\n\s+actual: 500", out), "expected and actual:\n" + out)
    check("error log:" in out and "boom from the plugin" in out and "stack traceback" in out,
          "the plugin's error and traceback from the error log:\n" + out)


def test_hooks_run_in_order_and_pending_tests_are_reported():
    root = plugin_root({"order_spec.lua": """
local trail = {}
local function note(s) return function() trail[#trail + 1] = s end end
describe("outer", function()
  setup(note("setup"))
  before_each(note("before outer"))
  after_each(note("after outer"))
  teardown(note("teardown"))
  describe("inner", function()
    before_each(note("before inner"))
    after_each(note("after inner"))
    it("one", note("one"))
  end)
  it("two", note("two"))
  it("later")
  pending("not yet")
end)
it("saw the hooks in order", function()
  assert.same({ "setup", "before outer", "before inner", "one", "after inner", "after outer",
                "before outer", "two", "after outer", "teardown" }, trail)
end)
"""})
    rc, out, err = plugin_test(root)
    assert_eq(rc, 0, "exit status", out + err)
    for line in ("ok - outer inner one", "ok - outer two", "ok - outer later # pending",
                 "ok - outer not yet # pending", "ok - saw the hooks in order", "# 2 pending"):
        check(line + "\n" in out, "line %r in:\n%s" % (line, out))
    assert_eq(summary(out), (3, 0), "summary (pending tests count as neither)")


def test_assertions_say_what_differs():
    root = plugin_root({"assert_spec.lua": """
it("same", function() assert.same({ a = { 1, 2 } }, { a = { 1, 3 } }) end)
it("matches", function() assert.matches("^x%d$", "y1", "a message first") end)
it("has_error without an error", function() assert.has_error(function() end) end)
it("has_error with the wrong one", function()
  assert.has_error(function() error("other") end, "wanted")
end)
it("has_error returns the error", function()
  local e = assert.has_error(function() error("wanted here", 0) end, "wanted")
  assert.equal("wanted here", e)
end)
it("falsy", function() assert.falsy(0) end)
it("plain assert", function() assert(false, "plain message") end)
"""})
    rc, out, err = plugin_test(root)
    assert_eq(rc, 1, "exit status", out + err)
    expectations = [
        r"^not ok - same: spec/assert_spec.lua:2: values are not the same \(first difference at "
        r"a\[2\]: 2 vs 3\)",
        r'^not ok - matches: spec/assert_spec.lua:3: a message first\n\s+expected "y1"\n'
        r'\s+to match the pattern "\^x%d\$"',
        r"^not ok - has_error without an error: .*expected an error, but the function returned",
        r'^not ok - has_error with the wrong one: .*expected an error matching "wanted"',
        r"^ok - has_error returns the error$",
        r"^not ok - falsy: .*expected a falsy value \(nil or false\), got: 0",
        r"^not ok - plain assert: spec/assert_spec.lua:13: plain message",
    ]
    for pattern in expectations:
        check(re.search(pattern, out, re.M), "%r in:\n%s" % (pattern, out))
    assert_eq(summary(out), (1, 6), "summary")


def test_the_mock_upstream_echoes_the_request_and_has_status_and_delay_paths():
    root = plugin_root({"mock_spec.lua": """
local gw = require "weir.test"
it("echoes method, path, query, headers and body", function()
  local res = gw.request{ method = "POST", path = "/a/b?x=1&y=2", body = "hello",
                          headers = { ["X-Custom"] = "v" } }
  assert.equal(200, res.status)
  assert.equal("application/json", res.headers["content-type"])
  local echo = gw.upstream_echo(res)
  assert.equal("POST", echo.method)
  assert.equal("/a/b", echo.path)
  assert.equal("x=1&y=2", echo.query)
  assert.equal("hello", echo.body)
  assert.equal("v", echo:header("x-custom"))
  assert.same({ "X-Custom", "v" }, (function()
    for _, h in ipairs(echo.headers) do if h[1] == "X-Custom" then return h end end
  end)())
end)
it("answers /status/<code> with that status", function()
  local res = gw.request("/status/418")
  assert.equal(418, res.status)
  assert.equal("/status/418", gw.upstream_echo(res).path)
end)
it("answers /delay/<ms> that much later", function()
  local start = gw.now()
  assert.equal(200, gw.request("/delay/300").status)
  assert.truthy(gw.now() - start >= 0.29, "waited")
end)
it("gives up on a slow answer after the request's timeout", function()
  assert.has_error(function() gw.request{ path = "/delay/5000", timeout = 0.3 } end, "timed out")
end)
it("sends a table body as JSON", function()
  local echo = gw.upstream_echo(gw.request{ method = "PUT", path = "/", body = { k = "v" } })
  assert.equal('{"k":"v"}', echo.body)
  assert.equal("application/json", echo:header("content-type"))
end)
it("shows a body that is not UTF-8 in base64", function()
  local echo = gw.upstream_echo(gw.request{ method = "POST", path = "/", body = "\\255\\254" })
  assert.equal(gw.json.null, echo.body)
  assert.equal("//4=", echo.body_base64)
end)
it("repeats a header given as an array, and reads repeated response headers as one", function()
  local echo = gw.upstream_echo(gw.request{ path = "/", headers = { ["X-Multi"] = { "a", "b" } } })
  local seen = {}
  for _, h in ipairs(echo.headers) do if h[1] == "X-Multi" then seen[#seen + 1] = h[2] end end
  assert.same({ "a", "b" }, seen)
end)
"""})
    rc, out, err = plugin_test(root)
    assert_eq(rc, 0, "exit status", out + err)
    assert_eq(summary(out), (7, 0), "summary")


def test_configure_raises_the_admin_apis_message():
    root = plugin_root({"configure_spec.lua": """
local gw = require "weir.test"
it("names the unknown plugin", function()
  local err = assert.has_error(function() gw.configure{ plugins = { { name = "nope" } } } end)
  assert.matches("gw.configure: the admin API answered 400: .*nope", tostring(err))
end)
it("points at the spec line", function()
  local err = assert.has_error(function() gw.configure{ plugins = { { name = "nope" } } } end)
  assert.matches("^spec/configure_spec.lua:8:", tostring(err))
end)
it("runs plugins with routes and scopes given", function()
  gw.configure{
    routes = { { name = "r1", paths = { "/one" } }, { name = "r2", paths = { "/two" } } },
    plugins = { { name = "tagger", route = "r1", config = { tag = "route" } } },
  }
  assert.equal("route", gw.upstream_echo(gw.request("/one")):header("x-tag"))
  assert.is_nil(gw.upstream_echo(gw.request("/two")):header("x-tag"))
  assert.equal(404, gw.request("/three").status)
end)
it("starts each file from no plugins", function()
  assert.equal(200, gw.admin("GET", "/status").status)
end)
"""}, plugins={"tagger": ECHO_PLUGIN})
    rc, out, err = plugin_test(root)
    assert_eq(rc, 0, "exit status", out + err)
    assert_eq(summary(out), (4, 0), "summary")


def test_each_spec_file_starts_without_the_previous_files_plugins():
    root = plugin_root({
        "a_spec.lua": """
local gw = require "weir.test"
it("configures a plugin", function()
  gw.configure{ plugins = { { name = "tagger", config = { tag = "a" } } } }
  assert.equal("a", gw.upstream_echo(gw.request("/")):header("x-tag"))
end)
""",
        "b_spec.lua": """
local gw = require "weir.test"
it("sees none", function()
  assert.is_nil(gw.upstream_echo(gw.request("/")):header("x-tag"))
end)
"""}, plugins={"tagger": ECHO_PLUGIN})
    rc, out, err = plugin_test(root)
    assert_eq(rc, 0, "exit status", out + err)
    check(out.index("# spec/a_spec.lua") < out.index("# spec/b_spec.lua"), "name order:\n" + out)


def test_spec_config_json_gives_extra_weir_settings():
    root = plugin_root({"dict_spec.lua": """
local gw = require "weir.test"
it("has the dictionary", function()
  gw.configure{ plugins = { { name = "counter" } } }
  assert.equal("1", gw.request("/").headers["x-count"])
  assert.equal("2", gw.request("/").headers["x-count"])
end)
"""}, plugins={"counter": """
local P = { PRIORITY = 1, VERSION = "1" }
function P:response(conf)
  weir.response.set_header("X-Count", tostring(weir.shared.counts:incr("n", 1, 0)))
end
return P
"""}, config={"weir": {"shared_dicts": {"counts": 65536}, "log_level": "debug"}})
    rc, out, err = plugin_test(root)
    assert_eq(rc, 0, "exit status", out + err)


def test_spec_config_json_may_not_move_the_listeners():
    root = plugin_root({"a_spec.lua": 'it("x", function() end)\n'},
                       config={"weir": {"proxy_listen": ["127.0.0.1:1"]}})
    rc, out, err = plugin_test(root)
    assert_eq(rc, 2, "exit status", out + err)
    check("weir.proxy_listen is set by the test runner" in err, "the reason:\n" + err)


def test_a_plugin_that_does_not_load_fails_the_run():
    root = plugin_root({"a_spec.lua": 'it("x", function() end)\n'},
                       plugins={"broken": "local P = { PRIORITY = 1, VERSION = '1' }\nP:access(\n"})
    rc, out, err = plugin_test(root)
    assert_eq(rc, 1, "exit status", out + err)
    check(re.search(r"^not ok - the gateway starts with the plugins of .*\n\s+.*"
                    r"plugins/broken/handler.lua:\d+:", out, re.M),
          "the handler's problem, with file and line:\n" + out)
    assert_eq(summary(out), (0, 1), "summary")


def test_verbose_shows_the_error_log_of_passing_tests_too():
    root = plugin_root({"log_spec.lua": """
local gw = require "weir.test"
it("logs", function()
  gw.configure{ plugins = { { name = "logger" } } }
  gw.request("/")
  gw.wait_until(function() return gw.error_log():find("hello from the log phase", 1, true) end)
end)
"""}, plugins={"logger": """
local P = { PRIORITY = 1, VERSION = "1" }
function P:log(conf) weir.log.notice("hello from the log phase") end
return P
"""})
    rc, out, err = plugin_test(root)
    assert_eq(rc, 0, "exit status", out + err)
    check("hello from the log phase" not in out, "quiet without -v:\n" + out)
    rc, out, err = plugin_test(root, "-v")
    assert_eq(rc, 0, "exit status with -v", out + err)
    check("hello from the log phase" in out, "the log lines with -v:\n" + out)
    check(re.search(r"^# gateway: proxy 127.0.0.1:\d+, admin API 127.0.0.1:\d+", out, re.M),
          "where things are, with -v:\n" + out)


def test_no_spec_files_is_a_usage_error():
    root = plugin_root(None, plugins={"tagger": ECHO_PLUGIN})
    rc, out, err = plugin_test(root)
    assert_eq(rc, 2, "exit status without spec/", out + err)
    check("no spec files in %s/spec" % os.path.realpath(root) in err, "the reason:\n" + err)
    rc, out, err = plugin_test(plugin_root({"helpers.lua": "return {}\n"}))
    assert_eq(rc, 2, "exit status with no *_spec.lua", out + err)


def test_a_missing_directory_or_argument_is_a_usage_error():
    rc, out, err = run_weir(["plugin", "test", os.path.join(make_tmpdir("empty"), "nope")])
    assert_eq(rc, 2, "exit status for a missing directory", out + err)
    check("No such file or directory" in err, "the reason:\n" + err)
    rc, out, err = run_weir(["plugin", "test"])
    assert_eq(rc, 2, "exit status without a directory", out + err)
    check("Usage: weir plugin test DIR" in err, "the usage:\n" + err)
    rc, out, err = run_weir(["plugin", "frobnicate"])
    assert_eq(rc, 2, "exit status for an unknown plugin command", out + err)
