"""The bundled rate-limiting plugin: its Kong-shaped config (defaults, every refusal), counting by
consumer, credential, IP, service, header and path, the RateLimit-* and X-RateLimit-* headers and
Retry-After, hide_client_headers, error_code and error_message, sliding and fixed windows, a
limit shared by every worker of a node, consumer-scoped limits taking precedence over a route's,
and policy "redis" against real redis-servers: exact counting across two gateways under
concurrency, Redis stopped and started again under load, a Redis that never answers, and 503s
without fault_tolerant."""

import json
import math
import re
import threading
import time

import harness
from harness import (assert_eq, assert_header, assert_no_header, base_config, check, echo,
                     gateway, get, route, service, timeout, write_config_file, run_weir)
from test_admin_write import STORE, Admin, _schema_error
from test_pdk_redis import RedisServer, SilentServer
from test_plugin_runtime import handler, plugin_tree

PERIODS = ["second", "minute", "hour", "day", "month", "year"]

DEFAULTS = {
    "limit_by": "consumer", "policy": "local", "algorithm": "sliding-window",
    "fault_tolerant": True, "hide_client_headers": False, "error_code": 429,
    "error_message": "API rate limit exceeded", "sync_rate": -1,
    "redis": {"port": 6379, "timeout": 2000, "database": 0, "ssl": False, "ssl_verify": False},
}

# A stand-in authentication plugin: X-User names a consumer (by username), X-Cred picks one of
# its credentials; no X-User, no consumer.
WHO = handler(2000, """
function P:access(conf)
  local name = weir.request.get_header("X-User")
  if not name then return end
  local c = weir.client.load_consumer(name, true)
  if not c then return weir.response.exit(401, { message = "unknown user" }) end
  weir.client.authenticate(c, { id = "cred-" .. name .. "-" .. (weir.request.get_header("X-Cred") or "1"),
                                consumer = { id = c.id } })
end
""")


def rl_config(port, conf=None, plugins=None, services=None, consumers=None, auth=False, **weir):
    if auth:
        root = plugin_tree({"who": WHO})
        weir.update(plugins=["bundled", "who"], plugin_paths=[root])
    cfg = base_config(port, **weir)
    if services is not None:
        cfg["services"] = services
    cfg["plugins"] = plugins if plugins is not None else [{"name": "rate-limiting", "config": conf}]
    if auth:
        cfg["plugins"] = cfg["plugins"] + [{"name": "who"}]
    if consumers:
        cfg["consumers"] = [{"username": u} for u in consumers]
    return cfg


def rl_gateway(conf=None, **kw):
    return gateway(lambda port: rl_config(port, conf, **kw))


def limits(resp):
    """The rate-limiting headers of a response, as a dict (lower-case names)."""
    return {n.lower(): v for n, v in resp.headers
            if n.lower().startswith(("ratelimit-", "x-ratelimit-", "retry-after"))}


def away_from_boundary(period=60, margin=5.0):
    """Waits, if need be, until `margin` seconds are left before the current window of `period`
    seconds ends, so that a test of a fixed window cannot straddle two windows."""
    left = period - time.time() % period
    if left < margin:
        time.sleep(left + 0.05)


def refused(resp, code=429, message="API rate limit exceeded"):
    assert_eq(resp.status, code, "status of a refused request", resp)
    assert_eq(resp.json(), {"message": message}, "refusal body", resp)
    check(resp.header("Content-Type").startswith("application/json"), "JSON refusal", resp)


# ---------------------------------------------------------------- the config

def test_config_defaults_are_kongs_and_kong_entries_load_unchanged():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        p = api.ok("POST", "/plugins", {"name": "rate-limiting", "config": {"minute": 5}})
        assert_eq(p["config"], dict(DEFAULTS, minute=5), "stored config with Kong's defaults")
        api.ok("DELETE", "/plugins/" + p["id"])
        # what Kong 3.6 exports for a rate-limiting instance, nulls and all
        kong = {"second": None, "minute": 5, "hour": 100, "day": None, "month": None,
                "year": None, "limit_by": "ip", "header_name": None, "path": None,
                "policy": "redis", "fault_tolerant": True, "hide_client_headers": False,
                "error_code": 429, "error_message": "API rate limit exceeded", "sync_rate": -1,
                "redis": {"host": "redis.internal", "port": 6379, "timeout": 2000,
                          "username": None, "password": None, "database": 0, "ssl": False,
                          "ssl_verify": False, "server_name": None}}
        p = api.ok("POST", "/plugins", {"name": "rate-limiting", "config": kong})
        assert_eq(p["config"], dict(kong, algorithm="sliding-window"), "Kong's entry, stored")
        api.ok("DELETE", "/plugins/" + p["id"])
        # Kong 3.5's flat redis_* fields
        p = api.ok("POST", "/plugins", {"name": "rate-limiting", "config": {
            "hour": 10, "policy": "redis", "redis_host": "10.0.0.5", "redis_port": 6380,
            "redis_password": "pw", "redis_timeout": 500, "redis_database": 2}})
        assert_eq(p["config"]["redis_host"], "10.0.0.5", "shorthand kept")
        api.ok("DELETE", "/plugins/" + p["id"])


def test_config_errors_say_what_is_wrong():
    cases = [
        ({}, "config", "at least one of these fields must be non-empty: 'config.second'"),
        ({"minute": None, "hour": None}, "config", "at least one of these fields must be non-empty"),
        ({"minute": 0}, "config.minute", ""),
        ({"minute": "5"}, "config.minute", ""),
        ({"minute": 5, "limit_by": "header"}, "config", "No header name provided"),
        ({"minute": 5, "limit_by": "path"}, "config", "No path provided"),
        ({"minute": 5, "limit_by": "path", "path": "no-slash"}, "config.path", ""),
        ({"minute": 5, "limit_by": "consumer-group"}, "config.limit_by", ""),
        ({"minute": 5, "policy": "cluster"}, "config.policy", "Weir has none"),
        ({"minute": 5, "policy": "redis"}, "config",
         "must set one of 'config.redis.host', 'config.redis_host' when 'config.policy' is 'redis'"),
        ({"minute": 5, "policy": "redis", "redis": {"port": 6379}}, "config",
         "must set one of 'config.redis.host'"),
        ({"minute": 5, "policy": "redis", "redis": {"host": "h", "ssl": True}}, "config.redis.ssl",
         "TLS to Redis is not supported yet"),
        ({"minute": 5, "redis": {"host": "h", "username": "bob"}}, "config.redis.username",
         "ACL users"),
        ({"minute": 5, "redis": {"host": "h", "port": 0}}, "config.redis.port", ""),
        ({"minute": 5, "redis": {"host": "h", "timeout": 0}}, "config.redis.timeout", ""),
        ({"minute": 5, "algorithm": "leaky-bucket"}, "config.algorithm", ""),
        ({"minute": 5, "error_code": 200}, "config.error_code", ""),
        ({"minute": 5, "fault_tolerant": "yes"}, "config.fault_tolerant", ""),
        ({"minute": 5, "colour": "red"}, "config.colour", ""),
    ]
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        for conf, field, text in cases:
            doc = _schema_error(api.post("/plugins", {"name": "rate-limiting", "config": conf}))
            check(field in doc["fields"], "%r: no error for %s: %r" % (conf, field, doc))
            check(text in doc["fields"][field], "%r: %r not in %r" % (conf, text, doc))
        assert_eq(api.ok("GET", "/plugins")["data"], [], "nothing was stored")
        # with "redis" and a valid username
        api.ok("POST", "/plugins", {"name": "rate-limiting", "config": {
            "minute": 5, "redis": {"host": "h", "username": "default"}}})


def test_a_bad_config_in_a_declarative_file_stops_the_start():
    cfg = rl_config(1, {"minute": 5, "policy": "cluster"})
    rc, out, err = run_weir(["-t", "-c", write_config_file(cfg)])
    check(rc != 0 and "plugins[0].config.policy" in err and "cluster" in err,
          "weir -t refuses policy cluster: %s" % err)


# ---------------------------------------------------------------- counting (local)

def test_fixed_window_headers_and_refusal():
    away_from_boundary(60, 8)
    with rl_gateway({"minute": 3, "hour": 10, "algorithm": "fixed-window", "limit_by": "ip"}) as (w, b):
        for i in range(3):
            r = get(w.port, "/x")
            assert_eq(r.status, 200, "request %d" % (i + 1), r)
            h = limits(r)
            reset = int(h.pop("ratelimit-reset"))
            left = 60 - time.time() % 60
            check(abs(reset - math.ceil(left)) <= 1, "RateLimit-Reset %d, %f left" % (reset, left), r)
            assert_eq(h, {"x-ratelimit-limit-minute": "3", "x-ratelimit-remaining-minute": str(2 - i),
                          "x-ratelimit-limit-hour": "10", "x-ratelimit-remaining-hour": str(9 - i),
                          "ratelimit-limit": "3", "ratelimit-remaining": str(2 - i)},
                      "headers of request %d" % (i + 1), r)
            echo(r)
        r = get(w.port, "/x")
        refused(r)
        h = limits(r)
        check(h["retry-after"] == h["ratelimit-reset"] and 1 <= int(h["retry-after"]) <= 60,
              "Retry-After is when the minute ends", r)
        assert_eq((h["x-ratelimit-remaining-minute"], h["x-ratelimit-remaining-hour"],
                   h["ratelimit-limit"], h["ratelimit-remaining"]), ("0", "7", "3", "0"),
                  "a refusal counts in no period", r)
        assert_eq(b.stats()["requests"], 3, "the backend saw the allowed requests only")


def test_the_most_restrictive_period_is_the_ratelimit_one():
    with rl_gateway({"minute": 100, "hour": 3, "limit_by": "ip"}) as (w, b):
        r = get(w.port, "/")
        h = limits(r)
        assert_eq((h["ratelimit-limit"], h["ratelimit-remaining"]), ("3", "2"), "the hour is", r)
        left = 3600 - time.time() % 3600
        check(abs(int(h["ratelimit-reset"]) - math.ceil(left)) <= 1, "reset: the hour's end", r)


def test_error_code_error_message_and_hide_client_headers():
    conf = {"hour": 1, "limit_by": "ip", "error_code": 403, "error_message": "slow down",
            "hide_client_headers": True}
    with rl_gateway(conf) as (w, b):
        r = get(w.port, "/")
        assert_eq((r.status, limits(r)), (200, {}), "no headers", r)
        r = get(w.port, "/")
        refused(r, 403, "slow down")
        assert_eq(limits(r), {}, "no headers, no Retry-After", r)


def _sleep_until(t):
    while time.time() < t:
        time.sleep(max(0.0, t - time.time()))


def _burst_then_next_second(algorithm):
    """Five requests 0.02-0.25 s into a second, five more 0.30-0.45 s into the next one, each
    burst on a fresh counter (X-K) when the timing was missed on a loaded machine."""
    conf = {"second": 4, "limit_by": "header", "header_name": "X-K", "algorithm": algorithm}
    with rl_gateway(conf) as (w, b):
        get(w.port, "/", headers={"X-K": "warm-up"})
        for attempt in range(5):
            key = {"X-K": "k%d" % attempt}
            _sleep_until(math.floor(time.time()) + 1.02)
            start = math.floor(time.time())
            first = [get(w.port, "/", headers=key) for _ in range(5)]
            _sleep_until(start + 1.30)
            second = [get(w.port, "/", headers=key) for _ in range(5)]
            if time.time() < start + 1.45:
                break
        else:
            harness.fail("the machine is too slow for sub-second timing")
        assert_eq([r.status for r in first], [200, 200, 200, 200, 429], "a full second")
        return first, second


def test_sliding_window_weighs_the_previous_window():
    first, second = _burst_then_next_second("sliding-window")
    # 0.3-0.45 s into the next second, the previous second still weighs 4 * (0.55..0.7)
    assert_eq([r.status for r in second], [200, 429, 429, 429, 429], "one more fits", second[1])
    assert_eq(limits(second[0])["ratelimit-remaining"], "0", "remaining", second[0])
    assert_eq(limits(second[1])["retry-after"], "1", "Retry-After", second[1])


def test_fixed_window_starts_afresh():
    first, second = _burst_then_next_second("fixed-window")
    assert_eq([r.status for r in second], [200, 200, 200, 200, 429], "a new second, a new count")


def test_all_workers_share_one_limit():
    with rl_gateway({"hour": 25, "limit_by": "ip"}, workers=4) as (w, b):
        results = []
        lock = threading.Lock()

        def client():
            for _ in range(10):
                r = get(w.port, "/")
                with lock:
                    results.append(r.status)

        threads = [threading.Thread(target=client) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert_eq((results.count(200), results.count(429)), (25, 35), "node-wide limit")
        assert_eq(b.stats()["requests"], 25, "requests that reached the backend")
