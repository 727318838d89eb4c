"""Plugin instances as entities (issue 4): created through the admin API (global or scoped to a
service, route or consumer) and in declarative files (top level naming their scopes, or nested in
a service, route or consumer), their config checked against the plugin's schema with defaults
filled in as Kong stores them, one instance per name and scope, deleted with what they are scoped
to, exported by GET /config and round-tripped through POST /config."""

import copy

from harness import (assert_eq, base_config, check, gateway, route, run_weir, service,
                     write_config_file)
from test_admin_write import STORE, Admin, _schema_error
from test_plugin_catalog import plugin_root

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "greeting": {"type": "string", "default": "hello"},
        "times": {"type": "integer", "minimum": 1, "default": 1},
        "nested": {"type": "object", "properties": {"on": {"type": "boolean", "default": True}},
                   "default": {}},
    },
    "additionalProperties": False,
}
DEFAULTS = {"greeting": "hello", "times": 1, "nested": {"on": True}}


def _gateway(root, **kw):
    return gateway(store=STORE, plugins=["bundled", "hello"], plugin_paths=[root], **kw)


def test_a_created_plugin_has_its_config_defaults_filled_in():
    root = plugin_root(schema=SCHEMA)
    with _gateway(root) as (w, b):
        api = Admin(w)
        p = api.ok("POST", "/plugins", {"name": "hello", "config": {"times": 3}})
        assert_eq(p["config"], dict(DEFAULTS, times=3), "stored config")
        assert_eq((p["enabled"], p["service"], p["route"], p["consumer"]),
                  (True, None, None, None), "a global, enabled instance")
        assert_eq(api.ok("GET", "/plugins/" + p["id"]), p, "GET returns what POST answered")
        assert_eq(api.config()["plugins"], [p], "exported as stored")
        q = api.ok("PATCH", "/plugins/" + p["id"], {"config": {"greeting": "hi"}})
        assert_eq(q["config"], dict(DEFAULTS, greeting="hi"),
                  "PATCH replaces config as a whole, then fills its defaults (as in Kong)")
        api.ok("DELETE", "/plugins/" + p["id"])
        assert_eq(api.ok("GET", "/plugins")["data"], [], "deleted")


def test_plugins_scoped_through_nested_paths():
    root = plugin_root(schema=SCHEMA)
    with _gateway(root) as (w, b):
        api = Admin(w)
        c = api.ok("POST", "/consumers", {"username": "alice"})
        s = api.ok("POST", "/services/echo/plugins", {"name": "hello"})
        r = api.ok("POST", "/routes/echo/plugins", {"name": "hello"})
        k = api.ok("POST", "/consumers/alice/plugins", {"name": "hello"})
        svc = api.ok("GET", "/services/echo")
        rte = api.ok("GET", "/routes/echo")
        assert_eq(s["service"], {"id": svc["id"]}, "service scope from the path")
        assert_eq(r["route"], {"id": rte["id"]}, "route scope from the path")
        assert_eq(k["consumer"], {"id": c["id"]}, "consumer scope from the path")
        assert_eq([p["id"] for p in api.all("/services/echo/plugins")], [s["id"]],
                  "a service's plugins")
        # deleting the consumer deletes its plugin, as Kong's foreign key cascade does
        api.ok("DELETE", "/consumers/alice")
        assert_eq(sorted(p["id"] for p in api.all("/plugins")), sorted([s["id"], r["id"]]),
                  "the consumer's plugin went with it")


def test_a_bad_plugin_config_is_a_schema_violation_naming_each_field():
    root = plugin_root(schema=SCHEMA)
    with _gateway(root) as (w, b):
        api = Admin(w)
        doc = _schema_error(api.post("/plugins", {"name": "hello",
                                                  "config": {"times": 0, "colour": "red"}}))
        assert_eq(sorted(doc["fields"]), ["config.colour", "config.times"], "fields", doc)
        doc = _schema_error(api.post("/plugins", {"name": "nope"}))
        check('no plugin named "nope"' in doc["fields"]["name"], "unknown plugin: %r" % doc)
        assert_eq(api.ok("GET", "/plugins")["data"], [], "nothing was stored")


def test_one_instance_per_plugin_name_and_scope():
    root = plugin_root(schema=SCHEMA)
    with _gateway(root) as (w, b):
        api = Admin(w)
        api.ok("POST", "/plugins", {"name": "hello"})
        r = api.post("/plugins", {"name": "hello"})
        assert_eq(r.status, 409, "a second global instance", r)
        api.ok("POST", "/services/echo/plugins", {"name": "hello"})
        assert_eq(api.post("/services/echo/plugins", {"name": "hello"}).status, 409,
                  "a second instance on the same service")


def test_nested_plugins_are_for_declarative_files_only():
    root = plugin_root(schema=SCHEMA)
    with _gateway(root) as (w, b):
        api = Admin(w)
        doc = _schema_error(api.post("/services", {"name": "p", "url": "http://127.0.0.1:1",
                                                   "plugins": [{"name": "hello"}]}))
        check("declarative file only" in str(doc), "nested plugins through the API: %r" % doc)


def _declarative(backend_port, root):
    cfg = base_config(backend_port, plugins=["bundled", "hello"], plugin_paths=[root])
    cfg["services"][0]["plugins"] = [{"name": "hello", "config": {"greeting": "svc"}}]
    cfg["services"][0]["routes"][0]["plugins"] = [{"name": "hello", "config": {"times": 2}}]
    cfg["consumers"] = [{"username": "bob", "plugins": [{"name": "hello"}]}]
    cfg["plugins"] = [{"name": "hello", "enabled": False},
                      {"name": "hello", "service": "echo", "consumer": {"name": "bob"}}]
    return cfg


def test_declarative_plugins_nested_and_top_level_are_exported_at_the_top_level():
    root = plugin_root(schema=SCHEMA)
    with gateway(lambda port: _declarative(port, root)) as (w, b):
        api = Admin(w)
        exported = api.config()
        svc = exported["services"][0]["id"]
        rte = exported["routes"][0]["id"]
        bob = exported["consumers"][0]["id"]
        scopes = sorted((p["service"] and p["service"]["id"] or "",
                         p["route"] and p["route"]["id"] or "",
                         p["consumer"] and p["consumer"]["id"] or "", p["enabled"],
                         p["config"]["greeting"], p["config"]["times"])
                        for p in exported["plugins"])
        assert_eq(scopes, sorted([(svc, "", "", True, "svc", 1),
                                  ("", rte, "", True, "hello", 2),
                                  ("", "", bob, True, "hello", 1),
                                  ("", "", "", False, "hello", 1),
                                  (svc, "", bob, True, "hello", 1)]), "plugins and scopes")
        # the same file gives the same ids: ids are derived from name and scope
        again = Admin(w).config()
        assert_eq(again, exported, "a second export")
        # the export loads back unchanged
        assert_eq(api.post("/config", exported).status, 201, "POST /config of the export")
        assert_eq(api.config(), exported, "after the round trip")


def test_declarative_plugin_problems_are_start_up_errors():
    root = plugin_root(schema=SCHEMA)
    cfg = _declarative(1, root)
    rc, out, err = run_weir(["-t", "-c", write_config_file(cfg)])
    assert_eq(rc, 0, "the good file passes weir -t", out + err)
    other = {"id": "00000000-0000-4000-8000-000000000000"}
    cases = [
        ("a bad config", lambda c: c["services"][0]["plugins"][0].update(config={"times": "x"}),
         "services[0].plugins[0].config.times: "),
        ("a nested plugin naming another service",
         lambda c: c["services"][0]["plugins"].append({"name": "hello", "service": other}),
         "services[0].plugins[1].service: "),
        ("a top-level plugin naming a missing route",
         lambda c: c["plugins"].append({"name": "hello", "route": "missing"}),
         "plugins[2].route: "),
        ("a second global instance", lambda c: c["plugins"].append({"name": "hello"}),
         "plugins[2]"),
        ("a plugin that does not exist", lambda c: c["plugins"].append({"name": "nope"}),
         'plugins[2].name: no plugin named "nope"'),
    ]
    for what, change, want in cases:
        bad = copy.deepcopy(cfg)
        change(bad)
        rc, out, err = run_weir(["-t", "-c", write_config_file(bad)])
        check(rc != 0, "%s: weir -t accepted it: %s" % (what, out + err))
        check(want in err, "%s: no %r in:\n%s" % (what, want, err))


def test_an_installed_plugin_that_is_not_enabled_is_named_as_such():
    root = plugin_root(schema=SCHEMA)
    cfg = base_config(1, plugins=["bundled"], plugin_paths=[root])
    cfg["plugins"] = [{"name": "hello"}]
    rc, out, err = run_weir(["-t", "-c", write_config_file(cfg)])
    check(rc != 0, "weir -t accepted it: %s" % (out + err))
    check('plugins[0].name: plugin "hello" is installed but not enabled: add it to weir.plugins'
          in err, err)
