"""The bundled correlation-id plugin (issue 5): Kong's config (header_name, generator,
echo_downstream). A request without the header gets an id from the generator (uuid, uuid#counter,
tracker, in Kong's formats); a request with one keeps it; the id goes upstream, and to the client
with echo_downstream, on the upstream's responses, other plugins' exits and errors alike. Every
test drives the real binary and the echo backend over sockets."""

import re
import time

from harness import (UUID_RE, Conn, assert_eq, base_config, check, echo, gateway, http, route,
                     service)
from test_admin_write import STORE, Admin, _schema_error
from test_plugin_runtime import handler, plugin_tree

COUNTER_RE = re.compile(r"^([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})#(\d+)$")
TRACKER_RE = re.compile(r"^(.+)-(\d+)-(\d+)-(\d+)-(\d+)-(\d+\.\d{3})$")


def cid_gateway(configs, extra=None, **weir):
    """One route per entry of `configs` ({"/path": correlation-id config})."""
    def make(port):
        routes, plugins = [], []
        for i, (path, conf) in enumerate(configs.items()):
            routes.append(route("r%d" % i, [path]))
            plugins.append({"name": "correlation-id", "route": "r%d" % i, "config": conf})
        cfg = base_config(None, services=[service("echo", port, routes=routes)], **weir)
        cfg["plugins"] = plugins
        if extra:
            extra(cfg)
        return cfg
    return gateway(make)


def upstream_id(r, name="Kong-Request-ID"):
    assert_eq(r.status, 200, "proxied", r)
    seen = echo(r)
    vals = seen.headers_named(name)
    assert_eq(len(vals), 1, "one %s upstream" % name, r)
    return vals[0]


def test_the_default_is_uuid_counter_in_kong_request_id_not_echoed():
    with cid_gateway({"/c": {}}) as (w, b):
        ids = []
        with Conn(w.port) as c:
            for _ in range(3):
                r = c.request("GET", "/c")
                ids.append(upstream_id(r))
                assert_eq(r.header("Kong-Request-ID"), None, "not echoed by default", r)
        ms = [COUNTER_RE.match(i) for i in ids]
        check(all(ms), "uuid#counter format: %r" % ids)
        assert_eq(len({m.group(1) for m in ms}), 1, "one UUID per worker: %r" % ids)
        counters = [int(m.group(2)) for m in ms]
        assert_eq(counters, [counters[0], counters[0] + 1, counters[0] + 2],
                  "the counter counts up: %r" % ids)


def test_uuid_generator_makes_a_fresh_uuid_each_time():
    with cid_gateway({"/u": {"generator": "uuid", "header_name": "X-Correlation-ID",
                             "echo_downstream": True}}) as (w, b):
        seen = set()
        for _ in range(3):
            r = http("GET", w.port, "/u")
            got = upstream_id(r, "X-Correlation-ID")
            check(UUID_RE.match(got), "a UUID: %r" % got)
            assert_eq(r.header("X-Correlation-ID"), got, "echoed to the client", r)
            seen.add(got)
        assert_eq(len(seen), 3, "each request its own id")


def test_tracker_generator_names_address_port_pid_connection_request_and_time():
    with cid_gateway({"/t": {"generator": "tracker", "echo_downstream": True}}) as (w, b):
        t0 = time.time()
        with Conn(w.port) as c:
            first = [upstream_id(c.request("GET", "/t")) for _ in range(2)]
        with Conn(w.port) as c:
            second = upstream_id(c.request("GET", "/t"))
        t1 = time.time()
        parsed = []
        for value in first + [second]:
            m = TRACKER_RE.match(value)
            check(m, "tracker format: %r" % value)
            parsed.append(m.groups())
        for host, port, pid, conn, n, ts in parsed:
            assert_eq((host, int(port), int(pid)), ("127.0.0.1", w.port, w.pid),
                      "the local address and port the gateway accepted on, its pid")
            check(t0 - 1 <= float(ts) <= t1 + 1, "the time: %s in [%s, %s]" % (ts, t0, t1))
        assert_eq(parsed[0][3], parsed[1][3], "one connection, one serial")
        assert_eq((parsed[0][4], parsed[1][4]), ("1", "2"), "requests on that connection")
        check(parsed[2][3] != parsed[0][3], "another connection, another serial")
        assert_eq(parsed[2][4], "1", "its first request")


def test_an_incoming_id_is_kept_forwarded_and_echoed():
    with cid_gateway({"/c": {"echo_downstream": True},
                      "/e": {"header_name": "X-Trace"}}) as (w, b):
        r = http("GET", w.port, "/c", headers={"Kong-Request-ID": "client-chosen-42"})
        assert_eq(upstream_id(r), "client-chosen-42", "kept and forwarded")
        assert_eq(r.header("Kong-Request-ID"), "client-chosen-42", "echoed as received", r)
        r = http("GET", w.port, "/c", headers={"Kong-Request-ID": ""})
        got = upstream_id(r)
        check(COUNTER_RE.match(got), "an empty header is replaced: %r" % got)
        assert_eq(r.header("Kong-Request-ID"), got, "the new one echoed", r)
        r = http("GET", w.port, "/e", headers={"x-trace": "abc"})
        assert_eq(upstream_id(r, "X-Trace"), "abc", "any spelling of the name counts")
        assert_eq(r.header("X-Trace"), None, "echo_downstream false", r)


def test_an_upstream_header_of_the_same_name_is_replaced_when_echoing():
    with cid_gateway({"/c": {"echo_downstream": True}, "/n": {}}) as (w, b):
        r = http("GET", w.port, "/c?header_name=Kong-Request-ID&header_value=from-upstream",
                 headers={"Kong-Request-ID": "mine"})
        assert_eq(r.headers_named("Kong-Request-ID"), ["mine"], "the request's id wins", r)
        r = http("GET", w.port, "/n?header_name=Kong-Request-ID&header_value=from-upstream")
        assert_eq(r.header("Kong-Request-ID"), "from-upstream",
                  "without echo the upstream's own header is left alone", r)


def test_exits_and_errors_of_other_plugins_carry_the_id():
    root = plugin_tree({"refuser": handler(2000, """
function P:rewrite(conf)
  if weir.request.get_header("X-Early") then
    return weir.response.exit(418, { message = "early" })
  end
end
function P:access(conf)
  if weir.request.get_header("X-Boom") then error("boom") end
  return weir.response.exit(401, { message = "no" })
end
""")})

    def make(port):
        cfg = base_config(port, plugins=["bundled", "refuser"], plugin_paths=[root])
        cfg["plugins"] = [{"name": "correlation-id", "config": {"echo_downstream": True}},
                          {"name": "refuser"}]
        return cfg
    with gateway(make) as (w, b):
        r = http("GET", w.port, "/")
        assert_eq(r.status, 401, "an access exit", r)
        check(COUNTER_RE.match(r.header("Kong-Request-ID") or ""), "id on the exit", r)
        r = http("GET", w.port, "/", headers={"X-Early": "1", "Kong-Request-ID": "e1"})
        assert_eq((r.status, r.header("Kong-Request-ID")), (418, "e1"),
                  "a rewrite exit of a lower-priority plugin still has it", r)
        r = http("GET", w.port, "/", headers={"X-Boom": "1", "Kong-Request-ID": "b1"})
        assert_eq((r.status, r.header("Kong-Request-ID")), (500, "b1"), "an error has it", r)


def test_x_request_id_is_left_to_weirs_own_request_id():
    with cid_gateway({"/x": {"header_name": "X-Request-ID", "generator": "uuid#counter",
                             "echo_downstream": True}}) as (w, b):
        r = http("GET", w.port, "/x", headers={"X-Request-ID": "abc-123"})
        assert_eq(upstream_id(r, "X-Request-ID"), "abc-123", "the client's id forwarded")
        assert_eq(r.header("X-Request-ID"), "abc-123", "and returned", r)
        r = http("GET", w.port, "/x")
        got = upstream_id(r, "X-Request-ID")
        check(UUID_RE.match(got), "Weir's UUID, not a plugin error: %r" % got)
        assert_eq(r.header("X-Request-ID"), got, "the same id returned", r)


def test_config_defaults_and_refusals():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        p = api.ok("POST", "/plugins", {"name": "correlation-id"})
        assert_eq(p["config"], {"header_name": "Kong-Request-ID", "generator": "uuid#counter",
                                "echo_downstream": False}, "Kong's defaults")
        api.ok("DELETE", "/plugins/" + p["id"])
        for conf, field in (({"generator": "random"}, "config.generator"),
                            ({"header_name": "Bad Name"}, "config.header_name"),
                            ({"header_name": "X-Forwarded-For"}, "config.header_name"),
                            ({"header_name": "host"}, "config.header_name"),
                            ({"echo_downstream": "yes"}, "config.echo_downstream")):
            doc = _schema_error(api.post("/plugins", {"name": "correlation-id", "config": conf}))
            check(field in doc["fields"], "%r refused at %s: %r" % (conf, field, doc))
        assert_eq(api.ok("GET", "/plugins")["data"], [], "nothing stored")
