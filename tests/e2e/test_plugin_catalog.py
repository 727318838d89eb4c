"""Plugins are found and checked when the configuration loads (issue 4, first part): every enabled
plugin needs plugins/<name>/handler.lua returning a table with PRIORITY and VERSION, and
schemas/plugins/<name>.json; a problem is a start-up, `weir -t` and reload error naming the file
and line. GET / lists the enabled plugins and GET /schemas/plugins/{name} serves their schemas."""

import json
import os
import signal
import time

from harness import (assert_eq, base_config, check, get, make_tmpdir, route, run_weir, service,
                     start_weir, write_config_file)

HELLO = """local Hello = {
  PRIORITY = 1000,
  VERSION = "0.1.0",
}

function Hello:access(conf)
end

return Hello
"""

HELLO_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {"greeting": {"type": "string", "default": "hello"}},
    "additionalProperties": False,
}


def plugin_root(handler=HELLO, schema=HELLO_SCHEMA, name="hello"):
    """A plugin_paths root holding one plugin; handler/schema None leave that file out."""
    root = make_tmpdir("plugins")
    os.makedirs(os.path.join(root, "plugins", name))
    os.makedirs(os.path.join(root, "schemas", "plugins"))
    if handler is not None:
        with open(os.path.join(root, "plugins", name, "handler.lua"), "w") as f:
            f.write(handler)
    if schema is not None:
        with open(os.path.join(root, "schemas", "plugins", name + ".json"), "w") as f:
            f.write(schema if isinstance(schema, str) else json.dumps(schema))
    return root


def config_with(root, plugins=("bundled", "hello")):
    return base_config(None, plugins=list(plugins), plugin_paths=[root])


def check_config(cfg):
    return run_weir(["-t", "-c", write_config_file(cfg)])


def test_an_enabled_plugin_is_listed_with_its_schema():
    root = plugin_root()
    cfg = config_with(root)
    rc, out, err = check_config(cfg)
    assert_eq(rc, 0, "weir -t with a good plugin", out + err)
    w = start_weir(cfg)
    try:
        admin = int(cfg["weir"]["admin_listen"][0].rsplit(":", 1)[1])
        doc = get(admin, "/").json()
        assert_eq(doc["plugins"]["available_on_server"]["hello"],
                  {"version": "0.1.0", "priority": 1000}, "available_on_server")
        r = get(admin, "/schemas/plugins/hello")
        assert_eq(r.status, 200, "GET /schemas/plugins/hello")
        assert_eq(r.json(), HELLO_SCHEMA, "the plugin's schema")
        assert_eq(get(admin, "/schemas/plugins/nope").status, 404, "unknown plugin schema")
    finally:
        w.stop()


def test_a_plugin_found_but_not_enabled_is_not_loaded():
    root = plugin_root(handler="this is not Lua")
    rc, out, err = check_config(config_with(root, plugins=["bundled"]))
    assert_eq(rc, 0, "a broken plugin that is not enabled is not loaded", out + err)


def test_a_syntax_error_names_the_file_and_line():
    root = plugin_root(handler="local P = {PRIORITY = 1, VERSION = '1'}\n"
                               "function P:access(conf)\n  if then end\nend\nreturn P\n")
    rc, out, err = check_config(config_with(root))
    assert_eq(rc, 1, "weir -t on a syntax error", out + err)
    where = os.path.join(root, "plugins", "hello", "handler.lua") + ":3:"
    check(where in err, "the error names %s:\n%s" % (where, err))


def test_an_error_while_loading_the_handler_is_reported():
    root = plugin_root(handler="local P = {}\nerror('boom at load')\nreturn P\n")
    rc, out, err = check_config(config_with(root))
    assert_eq(rc, 1, "weir -t on a failing handler", out + err)
    check("handler.lua:2: boom at load" in err, err)


def test_a_handler_may_require_its_own_modules_when_it_loads():
    root = plugin_root(handler="local helpers = require 'plugins.hello.helpers'\n"
                               "local P = {PRIORITY = 1000, VERSION = helpers.version}\n"
                               "function P:access(conf)\n"
                               "  weir.response.exit(200, helpers.version)\n"
                               "end\n"
                               "return P\n")
    with open(os.path.join(root, "plugins", "hello", "helpers.lua"), "w") as f:
        f.write("return {version = '2.5.0'}\n")
    cfg = config_with(root)
    cfg["services"] = [service("s", 9, routes=[route("r", ["/"])])]  # the plugin answers
    cfg["plugins"] = [{"name": "hello"}]
    rc, out, err = check_config(cfg)
    assert_eq(rc, 0, "weir -t with a handler that requires its module at load", out + err)
    w = start_weir(cfg)
    try:
        admin = int(cfg["weir"]["admin_listen"][0].rsplit(":", 1)[1])
        doc = get(admin, "/").json()
        assert_eq(doc["plugins"]["available_on_server"]["hello"]["version"], "2.5.0",
                  "VERSION taken from the required module")
        r = get(w.port, "/anything")
        assert_eq((r.status, r.body), (200, b"2.5.0"), "the module serves requests too")
    finally:
        w.stop()
    # a module that is not there is reported with the handler's file
    root = plugin_root(handler="local h = require 'plugins.hello.nope'\nreturn {}\n")
    rc, out, err = check_config(config_with(root))
    assert_eq(rc, 1, "weir -t on a missing module", out + err)
    check("handler.lua:1: module 'plugins.hello.nope' not found" in err, err)


def test_a_handler_must_return_a_table_with_priority_and_version():
    root = plugin_root(handler="return {VERSION = 1, access = 'not a function'}\n")
    rc, out, err = check_config(config_with(root))
    assert_eq(rc, 1, "weir -t", out + err)
    for what in ("PRIORITY must be a number", "VERSION must be a string",
                 "access must be a function"):
        check(what in err, "missing %r in:\n%s" % (what, err))
    root = plugin_root(handler="return {PRIORITY = 1, VERSION = '1', BUFFER_RESPONSE = 'yes'}\n")
    rc, out, err = check_config(config_with(root))
    check("BUFFER_RESPONSE must be a boolean or a function(conf), not a string" in err, err)
    root = plugin_root(handler="return 42\n")
    rc, out, err = check_config(config_with(root))
    check("must return a table (the plugin's handler), not a number" in err, err)


def test_a_missing_or_broken_schema_is_reported():
    root = plugin_root(schema=None)
    rc, out, err = check_config(config_with(root))
    assert_eq(rc, 1, "weir -t without a schema", out + err)
    path = os.path.join(root, "schemas", "plugins", "hello.json")
    check(path + ": missing (plugin hello needs a JSON Schema for its config)" in err, err)
    root = plugin_root(schema='{"type": "object", "pattern": "("}')
    rc, out, err = check_config(config_with(root))
    assert_eq(rc, 1, "weir -t with a broken schema", out + err)
    check("hello.json: pattern: invalid regex" in err, err)


def test_an_unknown_plugin_and_a_bad_plugin_path_are_reported():
    root = plugin_root()
    rc, out, err = check_config(config_with(root, plugins=["bundled", "nope"]))
    assert_eq(rc, 1, "weir -t with an unknown plugin", out + err)
    check('weir.plugins[1]: no plugin named "nope"' in err, err)
    cfg = base_config(None, plugins=["bundled"], plugin_paths=["/nonexistent/weir-plugins"])
    rc, out, err = check_config(cfg)
    assert_eq(rc, 1, "weir -t with a missing plugin path", out + err)
    check("/nonexistent/weir-plugins/plugins: cannot read the plugin directory" in err, err)


def test_reload_checks_changed_plugin_code_and_keeps_the_old_on_error():
    root = plugin_root()
    cfg = config_with(root)
    w = start_weir(cfg)
    try:
        admin = int(cfg["weir"]["admin_listen"][0].rsplit(":", 1)[1])
        handler = os.path.join(root, "plugins", "hello", "handler.lua")
        with open(handler, "w") as f:
            f.write(HELLO.replace('"0.1.0"', '"0.2.0"'))
        w.send_signal(signal.SIGHUP)
        deadline = time.time() + 5
        version = None
        while time.time() < deadline:
            version = get(admin, "/").json()["plugins"]["available_on_server"]["hello"]["version"]
            if version == "0.2.0":
                break
            time.sleep(0.05)
        assert_eq(version, "0.2.0", "the reload loaded the changed handler")
        with open(handler, "w") as f:
            f.write("return {PRIORITY = \n")
        w.send_signal(signal.SIGHUP)
        deadline = time.time() + 5
        while time.time() < deadline and "reload failed" not in w.stderr_text():
            time.sleep(0.05)
        check("reload failed" in w.stderr_text(), "no reload failure logged:\n" + w.stderr_text())
        check("handler.lua:2:" in w.stderr_text(), "the log names the line:\n" + w.stderr_text())
        assert_eq(get(admin, "/").json()["plugins"]["available_on_server"]["hello"]["version"],
                  "0.2.0", "the running plugins are kept")
    finally:
        w.stop()


def test_every_bundled_plugin_file_is_installed():
    # `make install` copies only what Makefile.am lists; a bundled plugin file missing there
    # would work from the source tree and break once installed
    import glob
    import re
    from harness import REPO
    with open(os.path.join(REPO, "Makefile.am")) as f:
        text = f.read().replace("\\\n", " ")
    m = re.search(r"^nobase_dist_pkgdata_DATA\s*=(.*)$", text, re.M)
    check(m is not None, "Makefile.am has nobase_dist_pkgdata_DATA")
    listed = set(m.group(1).split())
    files = {os.path.relpath(p, REPO) for pattern in
             ("plugins/*/*.lua", "schemas/*.json", "schemas/plugins/*.json", "lua/weir/*.lua")
             for p in glob.glob(os.path.join(REPO, pattern))}
    check(len(files) > 20, "the data files were found: %r" % sorted(files))
    assert_eq(sorted(files - listed), [], "data files Makefile.am does not install")
