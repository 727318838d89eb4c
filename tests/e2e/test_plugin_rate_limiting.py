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
                     gateway, get, route, service, timeout, write_config_file, run_weir, wait_until)
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
        ({"minute": 5, "redis": {"host": "h", "username": "bob"}}, "config.redis",
         "a Redis ACL username needs its password"),
        ({"minute": 5, "redis_host": "h", "redis_username": "bob"}, "config",
         "a Redis ACL username needs its password"),
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
        # with "redis" and an ACL username with its password
        api.ok("POST", "/plugins", {"name": "rate-limiting", "config": {
            "minute": 5, "redis": {"host": "h", "username": "bob", "password": "pw"}}})


def test_a_bad_config_in_a_declarative_file_stops_the_start():
    good = rl_config(1, {"minute": 5, "policy": "redis", "redis": {"host": "127.0.0.1"}})
    rc, out, err = run_weir(["-t", "-c", write_config_file(good)])
    assert_eq(rc, 0, "weir -t accepts a good config", out + err)
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


def _burst_then_next_second(algorithm, **extra):
    """Five requests early in a second, five more from 0.26 s into the next one (the first two
    before 0.5 s, all before 0.75 s), each attempt on a fresh counter (X-K), so that a loaded
    machine that misses the timing tries again."""
    conf = dict({"second": 4, "limit_by": "header", "header_name": "X-K", "algorithm": algorithm},
                **extra)
    with rl_gateway(conf) as (w, b):
        get(w.port, "/", headers={"X-K": "warm-up"})
        for attempt in range(5):
            key = {"X-K": "k%d" % attempt}
            _sleep_until(math.floor(time.time()) + 1.02)
            start = math.floor(time.time())
            first = [get(w.port, "/", headers=key) for _ in range(5)]
            if time.time() >= start + 1:
                continue
            _sleep_until(start + 1.26)
            second = [get(w.port, "/", headers=key) for _ in range(2)]
            two = time.time()
            second += [get(w.port, "/", headers=key) for _ in range(3)]
            if two < start + 1.5 and time.time() < start + 1.75:
                break
        else:
            harness.fail("the machine is too slow for sub-second timing")
        assert_eq([r.status for r in first], [200, 200, 200, 200, 429], "a full second")
        return first, second


def test_sliding_window_weighs_the_previous_window():
    first, second = _burst_then_next_second("sliding-window")
    # 0.26-0.5 s into the next second, the previous second still weighs 4 * (0.5..0.74): one
    # more request fits (1 + 2..2.96 <= 4), a second does not (2 + 2..2.96 > 4) until 0.5 s, nor
    # a third (3 + 1..2.96 > 4) until 0.75 s
    assert_eq([r.status for r in second], [200, 429, 429, 429, 429], "one more fits", second[1])
    assert_eq(limits(second[0])["ratelimit-remaining"], "0", "remaining", second[0])
    assert_eq(limits(second[1])["retry-after"], "1", "Retry-After", second[1])


def test_redis_sliding_window_weighs_the_previous_window():
    red = RedisServer()
    first, second = _burst_then_next_second("sliding-window", policy="redis",
                                            redis={"host": "127.0.0.1", "port": red.port})
    assert_eq([r.status for r in second], [200, 429, 429, 429, 429], "one more fits", second[1])
    assert_eq(limits(second[0])["ratelimit-remaining"], "0", "remaining", second[0])
    assert_eq(limits(second[1])["retry-after"], "1", "Retry-After", second[1])
    red.stop()


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


# ---------------------------------------------------------------- what is counted

def statuses(port, n, path="/", headers=None):
    return [get(port, path, headers=headers).status for _ in range(n)]


def test_limit_by_header_counts_each_value_and_falls_back_to_the_ip():
    conf = {"hour": 2, "limit_by": "header", "header_name": "X-Tenant"}
    with rl_gateway(conf) as (w, b):
        assert_eq(statuses(w.port, 3, headers={"X-Tenant": "a"}), [200, 200, 429], "tenant a")
        assert_eq(statuses(w.port, 3, headers={"x-tenant": "b"}), [200, 200, 429], "tenant b")
        assert_eq(statuses(w.port, 3), [200, 200, 429], "no header: the client IP")
        long = "x" * 5000
        assert_eq(statuses(w.port, 3, headers={"X-Tenant": long}), [200, 200, 429], "a long value")


def test_limit_by_path_counts_that_path_and_others_by_ip():
    conf = {"hour": 2, "limit_by": "path", "path": "/a"}
    with rl_gateway(conf) as (w, b):
        assert_eq(statuses(w.port, 3, "/a"), [200, 200, 429], "/a")
        assert_eq(statuses(w.port, 2, "/b") + statuses(w.port, 1, "/c"), [200, 200, 429],
                  "other paths share the client IP's count")


def test_limit_by_service_shares_a_count_between_routes_of_a_service():
    def services(port):
        return [service("one", port, routes=[route("one-a", ["/a"]), route("one-b", ["/b"])]),
                service("two", port, routes=[route("two", ["/c"])])]
    conf = {"hour": 3, "limit_by": "service"}
    with gateway(lambda port: rl_config(port, conf, services=services(port))) as (w, b):
        assert_eq(statuses(w.port, 2, "/a") + statuses(w.port, 2, "/b"), [200, 200, 200, 429],
                  "service one's routes together")
        assert_eq(statuses(w.port, 4, "/c"), [200, 200, 200, 429], "service two")


def test_each_instance_counts_apart_and_a_changed_limit_keeps_the_count():
    # counters are keyed by the plugin instance (as Kong keys them by route and service): two
    # routes configured alike count apart; a reload that raises the limit keeps what was counted
    def make(port, limit=2):
        conf = {"hour": limit, "limit_by": "ip"}
        return rl_config(port, plugins=[], services=[service("s", port, routes=[
            route("a", ["/a"], plugins=[{"name": "rate-limiting", "config": conf}]),
            route("b", ["/b"], plugins=[{"name": "rate-limiting", "config": conf}])])])
    with gateway(make) as (w, b):
        assert_eq(statuses(w.port, 3, "/a"), [200, 200, 429], "route a")
        assert_eq(statuses(w.port, 3, "/b"), [200, 200, 429], "route b: its own count")
        w.reload(make(b.port, limit=3))
        wait_until(lambda: get(w.port, "/a").header("X-RateLimit-Limit-Hour") == "3",
                   what="the new limit")
        assert_eq(statuses(w.port, 1, "/a"), [429], "2 + 1 counted: the count was kept")
        assert_eq(statuses(w.port, 2, "/b"), [200, 429], "route b: one more under the new limit")


def test_limit_by_ip_uses_the_forwarded_address_from_trusted_proxies():
    conf = {"hour": 1, "limit_by": "ip"}
    with rl_gateway(conf, trusted_ips=["127.0.0.1/32"]) as (w, b):
        assert_eq(statuses(w.port, 2, headers={"X-Forwarded-For": "203.0.113.1"}), [200, 429], "client 1")
        assert_eq(statuses(w.port, 2, headers={"X-Forwarded-For": "203.0.113.2"}), [200, 429], "client 2")


def test_limit_by_consumer_and_credential_fall_back_to_the_ip():
    users = ["alice", "bob"]
    with rl_gateway({"hour": 2}, consumers=users, auth=True) as (w, b):
        assert_eq(statuses(w.port, 3, headers={"X-User": "alice"}), [200, 200, 429], "alice")
        assert_eq(statuses(w.port, 2, headers={"X-User": "alice", "X-Cred": "2"}), [429, 429],
                  "alice with another credential: the same consumer")
        assert_eq(statuses(w.port, 3, headers={"X-User": "bob"}), [200, 200, 429], "bob")
        assert_eq(statuses(w.port, 3), [200, 200, 429], "anonymous: by IP")
    with rl_gateway({"hour": 2, "limit_by": "credential"}, consumers=users, auth=True) as (w, b):
        assert_eq(statuses(w.port, 3, headers={"X-User": "alice"}), [200, 200, 429], "credential 1")
        assert_eq(statuses(w.port, 3, headers={"X-User": "alice", "X-Cred": "2"}),
                  [200, 200, 429], "credential 2 of the same consumer")
        assert_eq(statuses(w.port, 3), [200, 200, 429], "anonymous: by IP")


def test_a_consumers_own_limit_takes_precedence_over_the_routes():
    plugins = [{"name": "rate-limiting", "route": "echo", "config": {"hour": 4}},
               {"name": "rate-limiting", "consumer": "alice", "config": {"hour": 2}}]
    with rl_gateway(plugins=plugins, consumers=["alice", "bob"], auth=True) as (w, b):
        r = [get(w.port, "/", headers={"X-User": "alice"}) for _ in range(3)]
        assert_eq([x.status for x in r], [200, 200, 429], "alice: her own limit")
        assert_eq(limits(r[0])["x-ratelimit-limit-hour"], "2", "alice's limit header", r[0])
        r = [get(w.port, "/", headers={"X-User": "bob"}) for _ in range(5)]
        assert_eq([x.status for x in r], [200, 200, 200, 200, 429], "bob: the route's limit")
        assert_eq(limits(r[0])["x-ratelimit-limit-hour"], "4", "bob's limit header", r[0])
        assert_eq(statuses(w.port, 5), [200, 200, 200, 200, 429], "anonymous: the route's, by IP")


# ---------------------------------------------------------------- policy "redis"

def redis_conf(port, **kw):
    conf = {"policy": "redis", "limit_by": "ip", "redis": {"host": "127.0.0.1", "port": port}}
    redis_extra = kw.pop("redis", {})
    conf["redis"].update(redis_extra)
    conf.update(kw)
    return conf


def rl_keys(server, db=0):
    r = server.client()
    try:
        if db:
            r.call("SELECT", str(db))
        return {k: r.call("TTL", k) for k in r.call("KEYS", "weir:rl:*")}
    finally:
        r.close()


def test_redis_counts_with_the_same_headers_and_expiring_keys():
    red = RedisServer()
    with rl_gateway(redis_conf(red.port, minute=10, hour=3)) as (w, b):
        r = [get(w.port, "/") for _ in range(4)]
        assert_eq([x.status for x in r], [200, 200, 200, 429], "hour limit")
        h = limits(r[2])
        h.pop("ratelimit-reset")
        assert_eq(h, {"x-ratelimit-limit-minute": "10", "x-ratelimit-remaining-minute": "7",
                      "x-ratelimit-limit-hour": "3", "x-ratelimit-remaining-hour": "0",
                      "ratelimit-limit": "3", "ratelimit-remaining": "0"}, "headers", r[2])
        refused(r[3])
        check(int(limits(r[3])["retry-after"]) >= 1, "Retry-After", r[3])
        keys = rl_keys(red)
        cur = {k: t for k, t in keys.items() if re.search(r":(m|h):\d+$", k)}
        check(len(cur) >= 2 and all(0 < t <= 2 * 3600 + 1 for t in cur.values()),
              "counters expire after two windows (sliding): %r" % keys)
    red.stop()


def test_redis_fixed_window_password_and_database_nested_and_kong_shorthand():
    red = RedisServer(password="s3cret")
    nested = {"hour": 2, "limit_by": "ip", "policy": "redis", "algorithm": "fixed-window",
              "redis": {"host": "127.0.0.1", "port": red.port, "password": "s3cret",
                        "database": 3}}
    # Kong 3.5's flat fields win over the nested defaults
    flat = {"hour": 2, "limit_by": "header", "header_name": "X-K", "policy": "redis",
            "algorithm": "fixed-window", "redis_host": "127.0.0.1", "redis_port": red.port,
            "redis_password": "s3cret", "redis_database": 4}
    for conf, db in ((nested, 3), (flat, 4)):
        with rl_gateway(conf) as (w, b):
            assert_eq(statuses(w.port, 3, headers={"X-K": "k"}), [200, 200, 429],
                      "counted in Redis, database %d" % db)
            keys = rl_keys(red, db=db)
            assert_eq(len(keys), 1, "one counter in database %d: %r" % (db, keys))
            check(0 < list(keys.values())[0] <= 3601,
                  "a fixed window's key lives one window: %r" % keys)
    assert_eq(rl_keys(red), {}, "nothing in database 0")
    red.stop()


def test_redis_acl_username_counts_as_that_user():
    red = RedisServer(password="admin-pw")
    r = red.client()
    # a user that may only run scripts on Weir's counters: the plugin's keys are weir:rl:*
    assert_eq(r.call("ACL", "SETUSER", "limiter", "on", ">limiter-pw", "~weir:rl:*",
                     "+evalsha", "+eval", "+mget", "+incr", "+expire"), "OK", "ACL user")
    r.close()
    conf = {"hour": 2, "limit_by": "ip", "policy": "redis", "fault_tolerant": False,
            "redis": {"host": "127.0.0.1", "port": red.port, "username": "limiter",
                      "password": "limiter-pw"}}
    with rl_gateway(conf) as (w, b):
        assert_eq(statuses(w.port, 3), [200, 200, 429], "counted as limiter")
    conf["redis"]["password"] = "wrong"
    with rl_gateway(conf) as (w, b):
        assert_eq(statuses(w.port, 1), [503], "a wrong password: Redis unavailable, no count")
        check("WRONGPASS" in w.stderr_text(), w.stderr_text())
    red.stop()


def _hammer(ports, total, clients=20, headers=None):
    """`clients` threads sending `total` requests between them, spread over `ports`."""
    results, lock = [], threading.Lock()
    counter = iter(range(total))

    def client(n):
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.monotonic()
            try:
                r = get(ports[(n + i) % len(ports)], "/", headers=headers, timeout=10)
                item = (r.status, time.monotonic() - t0, r.header("X-RateLimit-Remaining-Minute"))
            except Exception as e:  # noqa: BLE001 - a failure is a result here
                item = (repr(e), time.monotonic() - t0, None)
            with lock:
                results.append(item)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@timeout(60)
def test_redis_two_gateways_never_overshoot_under_concurrency():
    red = RedisServer()
    conf = redis_conf(red.port, minute=100)
    away_from_boundary(60, 5)
    with rl_gateway(conf, workers=2) as (w1, b1), rl_gateway(conf, workers=2) as (w2, b2):
        results = _hammer([w1.port, w2.port], 300)
        codes = [s for s, _, _ in results]
        assert_eq((codes.count(200), codes.count(429), len(codes)), (100, 200, 300),
                  "exactly the limit passed")
        assert_eq(b1.stats()["requests"] + b2.stats()["requests"], 100, "backends saw 100")
        remaining = sorted(int(x) for s, _, x in results if s == 200)
        assert_eq(remaining, list(range(100)), "each allowed request saw its own count")
    red.stop()


def _warnings(w):
    return [l for l in w.stderr_text().splitlines() if "[warn]" in l and "rate-limiting" in l]


@timeout(60)
def test_redis_stopped_and_started_under_load_never_fails_a_request():
    red = RedisServer()
    conf = redis_conf(red.port, hour=100000, redis={"timeout": 500})
    with rl_gateway(conf, workers=2) as (w, b):
        results, stop = [], threading.Event()

        def load():
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    r = get(w.port, "/", timeout=10)
                    results.append((r.status, time.monotonic() - t0,
                                    r.header("X-RateLimit-Remaining-Hour"), time.monotonic()))
                except Exception as e:  # noqa: BLE001
                    results.append((repr(e), time.monotonic() - t0, None, time.monotonic()))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            harness.wait_until(lambda: len(results) >= 40, 10, what="load before the outage")
            red.stop()
            down = time.monotonic()
            time.sleep(2.0)
            red.start()
            up = time.monotonic()
            harness.wait_until(lambda: any(x[2] and x[3] > up + 0.05 for x in results[-20:]), 15,
                               what="counting to resume")
            resumed = time.monotonic()
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join()
        statuses_seen = set(s for s, _, _, _ in results)
        assert_eq(statuses_seen, {200}, "every request passed (fault_tolerant)")
        slowest = max(d for _, d, _, _ in results)
        check(slowest < 1.2, "no request waited much past the 500 ms timeout: %.2f s" % slowest)
        uncounted = [x for x in results if x[2] is None and down < x[3] < up]
        check(len(uncounted) > 10, "requests passed uncounted while Redis was down")
        after = [int(x[2]) for x in results if x[2] and x[3] > resumed]
        check(after and max(after) >= 100000 - 10 * len(results),
              "counting resumed in the restarted (empty) Redis: %r" % after[:5])
        warnings = _warnings(w)
        elapsed = resumed - down
        check(1 <= len(warnings) <= 2 * (elapsed + 2),
              "at most one warning a second per worker, %d in %.1f s:\n%s" % (
                  len(warnings), elapsed, "\n".join(warnings)))
        check("answers again" in w.stderr_text(), "the recovery is logged")
    red.stop()


def _timed_get(port):
    t0 = time.monotonic()
    r = get(port, "/")
    return r, time.monotonic() - t0


def test_a_silent_redis_costs_one_timeout_then_is_skipped_for_a_growing_pause():
    silent = SilentServer()
    conf = redis_conf(silent.port, minute=5, redis={"timeout": 300})
    try:
        with rl_gateway(conf) as (w, b):
            # ten clients at once: each waits for the timeout once, and passes uncounted
            results = _hammer([w.port], 10, clients=10)
            wave_end = time.monotonic()
            assert_eq([(s, x) for s, _, x in results], [(200, None)] * 10, "passed, uncounted")
            slowest = max(d for _, d, _ in results)
            check(0.25 <= slowest < 1.0, "they waited for the 300 ms timeout: %.3f s" % slowest)
            # the breaker is open: no waiting
            for _ in range(5):
                r, took = _timed_get(w.port)
                assert_eq((r.status, limits(r)), (200, {}), "passes uncounted", r)
                check(took < 0.2, "Redis skipped while the breaker is open: %.3f s" % took)
            # 1 s after it opened (ten failures together opened it once), one request tries again
            _sleep_until_mono(wave_end + 1.05)
            r, took = _timed_get(w.port)
            assert_eq(r.status, 200, "the probe passes", r)
            check(0.25 <= took < 1.0, "the probe waited for the timeout: %.3f s" % took)
            probe_end = time.monotonic()
            # it failed: the pause doubles to 2 s
            _sleep_until_mono(probe_end + 1.2)
            r, took = _timed_get(w.port)
            check(r.status == 200 and took < 0.2, "still skipped 1.2 s later: %.3f s" % took)
            warnings = _warnings(w)
            check(1 <= len(warnings) <= 2, "no flood of warnings:\n%s" % "\n".join(warnings))
            check("timeout" in warnings[0] and "requests pass uncounted" in warnings[0],
                  "the warning says what: %s" % warnings[0])
    finally:
        silent.close()


def _sleep_until_mono(t):
    while time.monotonic() < t:
        time.sleep(max(0.0, t - time.monotonic()))


def test_without_fault_tolerance_an_unreachable_redis_is_a_503():
    silent = SilentServer()
    conf = redis_conf(silent.port, minute=5, fault_tolerant=False, redis={"timeout": 300})
    try:
        with rl_gateway(conf) as (w, b):
            t0 = time.monotonic()
            r = get(w.port, "/")
            check(0.25 <= time.monotonic() - t0 < 1.0, "after the timeout")
            assert_eq((r.status, r.json()), (503, {"message": "API rate limiting is unavailable"}),
                      "503 JSON", r)
            t0 = time.monotonic()
            r = get(w.port, "/")
            assert_eq(r.status, 503, "still 503", r)
            check(time.monotonic() - t0 < 0.2, "without waiting again (breaker open)")
            assert_eq(b.stats()["requests"], 0, "nothing reached the backend")
    finally:
        silent.close()
    red = RedisServer()
    port = red.port
    red.stop()
    with rl_gateway(redis_conf(port, minute=5, fault_tolerant=False)) as (w, b):
        r = get(w.port, "/")
        assert_eq((r.status, r.json()["message"]), (503, "API rate limiting is unavailable"),
                  "Redis not running", r)


def _seconds_to(year, month):
    import calendar
    return calendar.timegm((year, month, 1, 0, 0, 0)) - time.time()


def test_day_month_and_year_windows_follow_the_utc_calendar():
    now = time.gmtime()
    next_month = (now.tm_year + (now.tm_mon == 12), now.tm_mon % 12 + 1)
    for algorithm in ("fixed-window", "sliding-window"):
        conf = {"day": 100, "month": 2, "year": 50, "limit_by": "ip", "algorithm": algorithm}
        with rl_gateway(conf) as (w, b):
            r = get(w.port, "/")
            h = limits(r)
            reset = int(h.pop("ratelimit-reset"))
            assert_eq(h, {"x-ratelimit-limit-day": "100", "x-ratelimit-remaining-day": "99",
                          "x-ratelimit-limit-month": "2", "x-ratelimit-remaining-month": "1",
                          "x-ratelimit-limit-year": "50", "x-ratelimit-remaining-year": "49",
                          "ratelimit-limit": "2", "ratelimit-remaining": "1"}, algorithm, r)
            check(abs(reset - math.ceil(_seconds_to(*next_month))) <= 1,
                  "%s: the month ends in %d s, not %d" % (algorithm, _seconds_to(*next_month), reset))
            assert_eq(statuses(w.port, 2), [200, 429], "the month's limit")
    with rl_gateway({"year": 1, "month": 5, "second": 3, "limit_by": "ip"}) as (w, b):
        r = get(w.port, "/")
        h = limits(r)
        assert_eq((h["ratelimit-limit"], h["ratelimit-remaining"]), ("1", "0"), "the year's", r)
        check(abs(int(h["ratelimit-reset"]) - math.ceil(_seconds_to(now.tm_year + 1, 1))) <= 1,
              "the year ends on January 1st", r)
        r = get(w.port, "/")
        refused(r)
        check(int(limits(r)["retry-after"]) > 86400,
              "Retry-After: once the year's previous count has weighed off", r)
