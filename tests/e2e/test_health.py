"""Kong's upstream health checks: active probes (http, tcp) that mark targets unhealthy and
healthy again as real backends go down and come back, passive checks counted from proxied
traffic (500s, refused connections), the balancer skipping unhealthy targets, 503 when none is
left, GET /upstreams/{u}/health, the weir_upstream_target_health gauge, and health kept across
admin changes and reloads that keep a target."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import (Conn, assert_eq, assert_gateway_error, base_config, check, echo, free_port,
                     gateway, get, http, route, service, start_weir, wait_until)

UPSTREAM_ID = "0b7c5a52-6f0e-4c3a-9d35-1c1f6a1e0001"
TOKEN = "health-admin-token-0123456789"
AUTH = {"Authorization": "Bearer " + TOKEN}  # ignored by a weir without admin_token


class Toggle:
    """A real HTTP backend whose answer is switched at run time: GET /health answers
    `health_status`, everything else answers `status` with a body naming the backend."""

    def __init__(self, name, port=0):
        self.name = name
        self.health_status = 200
        self.status = 200
        self.health_hits = 0
        self.health_headers = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path == "/health":
                    outer.health_hits += 1
                    outer.health_headers = [(k.lower(), v) for k, v in self.headers.items()]
                    code = outer.health_status
                else:
                    code = outer.status
                body = json.dumps({"backend": outer.name, "path": self.path}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def config(targets, healthchecks, retries=None, **weir):
    svc = {}
    if retries is not None:
        svc["retries"] = retries
    cfg = base_config(None, services=[service("pool-svc", url="http://pool.test",
                                              routes=[route("all", ["/"])], **svc)], **weir)
    cfg["upstreams"] = [{"id": UPSTREAM_ID, "name": "pool.test", "healthchecks": healthchecks,
                         "targets": [{"target": t} for t in targets]}]
    return cfg


def admin_port(w):
    return int(w.config["weir"]["admin_listen"][0].rsplit(":", 1)[1])


def health(w):
    """{target: health} from GET /upstreams/pool.test/health."""
    r = get(admin_port(w), "/upstreams/pool.test/health", headers=AUTH)
    assert_eq(r.status, 200, "health status", r)
    return {t["target"]: t["health"] for t in r.json()["data"]}


def gauge(w):
    """{(target, address, state): value} of weir_upstream_target_health in GET /metrics."""
    r = get(admin_port(w), "/metrics", headers=AUTH)
    out = {}
    for line in r.body.decode().splitlines():
        if line.startswith("weir_upstream_target_health{"):
            labels, value = line[len("weir_upstream_target_health{"):].rsplit("} ", 1)
            kv = dict(p.split("=", 1) for p in labels.split('",'))
            kv = {k: v.strip('"') for k, v in kv.items()}
            check(kv["upstream"] == "pool.test", "upstream label: %r" % line)
            out[(kv["target"], kv["address"], kv["state"])] = int(value)
    return out


def wait_health(w, target, want, timeout=5.0):
    wait_until(lambda: health(w).get(target) == want, timeout=timeout,
               what="%s to be %s (now %r)" % (target, want, health(w)))


def backends_hit(port, n):
    """Which backends n requests reached (by the name in their body)."""
    seen = {}
    with Conn(port) as c:
        for i in range(n):
            r = c.request("GET", "/r%d" % i)
            assert_eq(r.status, 200, "proxied status", r)
            name = json.loads(r.body)["backend"]
            seen[name] = seen.get(name, 0) + 1
    return seen


ACTIVE_HTTP = {"active": {"type": "http", "http_path": "/health", "timeout": 1,
                          "headers": {"X-Probe": ["one", "two"]},
                          "healthy": {"interval": 0.1, "successes": 2},
                          "unhealthy": {"interval": 0.1, "http_failures": 2}}}


def test_active_http_checks_follow_a_target_down_and_back():
    a, b = Toggle("a"), Toggle("b")
    w = start_weir(config([a.addr, b.addr], ACTIVE_HTTP))
    try:
        assert_eq(health(w), {a.addr: "HEALTHY", b.addr: "HEALTHY"}, "health at start")
        wait_until(lambda: a.health_hits >= 2 and b.health_hits >= 2, what="probes of /health")
        hs = a.health_headers
        assert_eq([v for k, v in hs if k == "host"], [a.addr], "probe Host")
        assert_eq([v for k, v in hs if k == "x-probe"], ["one", "two"], "configured headers")
        assert_eq([v for k, v in hs if k == "user-agent"], ["weir-healthcheck"], "User-Agent")
        assert_eq(sorted(backends_hit(w.port, 6)), ["a", "b"], "both targets serve")
        a.health_status = 500  # in unhealthy.http_statuses (Kong's default list)
        wait_health(w, a.addr, "UNHEALTHY")
        assert_eq(health(w)[b.addr], "HEALTHY", "the other target")
        assert_eq(backends_hit(w.port, 8), {"b": 8}, "traffic avoids the unhealthy target")
        g = gauge(w)
        address = "127.0.0.1:%d" % a.port
        assert_eq(g[(a.addr, address, "unhealthy")], 1, "gauge unhealthy")
        assert_eq(g[(a.addr, address, "healthy")], 0, "gauge healthy")
        assert_eq(g[(a.addr, address, "healthchecks_off")], 0, "gauge off")
        assert_eq(g[(a.addr, address, "dns_error")], 0, "gauge dns_error")
        assert_eq(g[(b.addr, b.addr, "healthy")], 1, "gauge of the healthy target")
        a.health_status = 200
        wait_health(w, a.addr, "HEALTHY")
        assert_eq(sorted(backends_hit(w.port, 6)), ["a", "b"], "the target is back")
        check("is unhealthy" in w.stderr_text() and "healthy again" in w.stderr_text(),
              "the changes of health are logged")
    finally:
        w.stop()
        a.stop()
        b.stop()


def test_active_statuses_in_neither_list_count_for_nothing():
    a = Toggle("a")
    a.health_status = 418
    w = start_weir(config([a.addr], ACTIVE_HTTP))
    try:
        hits = a.health_hits
        wait_until(lambda: a.health_hits >= hits + 4, what="probes")
        assert_eq(health(w), {a.addr: "HEALTHY"}, "418 is neither healthy nor unhealthy")
    finally:
        w.stop()
        a.stop()


def test_active_tcp_checks_follow_a_listener_down_and_back():
    port = free_port()
    b = Toggle("b")
    checks = {"active": {"type": "tcp", "timeout": 0.5,
                         "healthy": {"interval": 0.1, "successes": 1},
                         "unhealthy": {"interval": 0.1, "tcp_failures": 2}}}
    down = "127.0.0.1:%d" % port
    w = start_weir(config([down, b.addr], checks))
    try:
        wait_health(w, down, "UNHEALTHY")
        assert_eq(health(w)[b.addr], "HEALTHY", "the listening target")
        assert_eq(backends_hit(w.port, 4), {"b": 4}, "traffic avoids the closed port")
        a = Toggle("a", port)
        try:
            wait_health(w, down, "HEALTHY")
            assert_eq(sorted(backends_hit(w.port, 6)), ["a", "b"], "the target is back")
        finally:
            a.stop()
    finally:
        w.stop()
        b.stop()


def test_passive_http_failures_trip_the_circuit():
    a, b = Toggle("a"), Toggle("b")
    a.status = 500
    checks = {"passive": {"unhealthy": {"http_failures": 2}}}
    w = start_weir(config([a.addr, b.addr], checks))
    try:
        statuses = []
        with Conn(w.port) as c:
            for i in range(12):
                statuses.append(c.request("GET", "/p%d" % i).status)
        assert_eq(statuses.count(500), 2, "500s proxied before the target was skipped")
        assert_eq(health(w), {a.addr: "UNHEALTHY", b.addr: "HEALTHY"}, "health")
        # passive checks never bring a target back on their own (Kong): no traffic reaches it
        a.status = 200
        assert_eq(backends_hit(w.port, 6), {"b": 6}, "the tripped target gets no traffic")
        check("target %s is unhealthy (2 http failures)" % a.addr in w.stderr_text(),
              "the trip is logged")
    finally:
        w.stop()
        a.stop()
        b.stop()


def test_passive_successes_reset_the_failure_count():
    a = Toggle("a")
    checks = {"passive": {"healthy": {"successes": 1}, "unhealthy": {"http_failures": 2}}}
    w = start_weir(config([a.addr], checks))
    try:
        with Conn(w.port) as c:
            for i in range(6):  # failure, success, failure, success...: never 2 in a row
                a.status = 500 if i % 2 == 0 else 200
                assert_eq(c.request("GET", "/x").status, a.status, "proxied status")
        assert_eq(health(w), {a.addr: "HEALTHY"}, "alternating failures do not trip")
    finally:
        w.stop()
        a.stop()


def test_passive_tcp_failures_and_all_unhealthy_is_503():
    dead = "127.0.0.1:%d" % free_port()
    checks = {"passive": {"unhealthy": {"tcp_failures": 1}}}
    w = start_weir(config([dead], checks, retries=0))
    try:
        r = get(w.port, "/")
        assert_gateway_error(r, 502)  # the refused connection itself
        assert_eq(health(w), {dead: "UNHEALTHY"}, "health after a refused connection")
        for _ in range(2):
            r = get(w.port, "/")
            assert_gateway_error(r, 503, "failure to get a peer from the ring-balancer")
        assert_eq(r.header("Content-Type"), "application/json; charset=utf-8", "content type")
    finally:
        w.stop()


def test_passive_tcp_failures_with_a_healthy_peer_retry_there():
    b = Toggle("b")
    dead = "127.0.0.1:%d" % free_port()
    checks = {"passive": {"unhealthy": {"tcp_failures": 2}}}
    w = start_weir(config([dead, b.addr], checks))
    try:
        assert_eq(backends_hit(w.port, 10), {"b": 10}, "retries land on the live target")
        assert_eq(health(w), {dead: "UNHEALTHY", b.addr: "HEALTHY"}, "health")
        g = gauge(w)
        assert_eq(g[(dead, dead, "unhealthy")], 1, "gauge")
    finally:
        w.stop()
        b.stop()


def test_checks_off_report_healthchecks_off():
    a = Toggle("a")
    w = start_weir(config([a.addr], None))
    try:
        r = get(admin_port(w), "/upstreams/pool.test/health")
        doc = r.json()
        assert_eq(sorted(doc), ["data", "next", "node_id"], "shape")
        assert_eq(doc["next"], None, "next")
        t = doc["data"][0]
        assert_eq((t["target"], t["health"], t["upstream"]["id"]),
                  (a.addr, "HEALTHCHECKS_OFF", UPSTREAM_ID), "target")
        g = gauge(w)
        assert_eq(g[(a.addr, a.addr, "healthchecks_off")], 1, "gauge off")
        assert_eq(g[(a.addr, a.addr, "healthy")], 0, "gauge healthy")
        check(a.health_hits == 0, "no probe with checks off")
    finally:
        w.stop()
        a.stop()


def test_health_is_kept_across_admin_changes_and_reloads():
    a, b = Toggle("a"), Toggle("b")
    a.status = 500
    checks = {"passive": {"unhealthy": {"http_failures": 1}}}
    cfg = config([a.addr, b.addr], checks, store={"type": "file", "path": "store.json"},
                 admin_token=TOKEN)
    w = start_weir(cfg)
    auth = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
    try:
        with Conn(w.port) as c:
            for i in range(4):
                c.request("GET", "/t%d" % i)
        wait_health(w, a.addr, "UNHEALTHY")
        c3 = Toggle("c")
        try:
            r = http("POST", admin_port(w), "/upstreams/pool.test/targets", headers=auth,
                     body=json.dumps({"target": c3.addr}))
            assert_eq(r.status, 201, "add a target", r)
            r = http("PATCH", admin_port(w), "/upstreams/pool.test", headers=auth,
                     body=json.dumps({"tags": ["changed"]}))
            assert_eq(r.status, 200, "patch the upstream", r)
            assert_eq(health(w), {a.addr: "UNHEALTHY", b.addr: "HEALTHY", c3.addr: "HEALTHY"},
                      "health after admin changes")
            assert_eq(sorted(backends_hit(w.port, 6)), ["b", "c"], "traffic after the change")
            # changing the checks keeps the state too; turning them off forgets it
            r = http("PATCH", admin_port(w), "/upstreams/pool.test", headers=auth,
                     body=json.dumps({"healthchecks": {"passive": {"unhealthy": {
                         "http_failures": 3}}}}))
            assert_eq(r.status, 200, "patch the checks", r)
            assert_eq(health(w)[a.addr], "UNHEALTHY", "health after new settings")
            def version():
                return get(admin_port(w), "/status", headers=AUTH).json()["configuration_version"]
            before = version()
            w.send_signal(1)  # SIGHUP: the store is reloaded, the upstream id is kept
            wait_until(lambda: version() > before, what="the reload")
            assert_eq(health(w)[a.addr], "UNHEALTHY", "health after a reload")
            r = http("PATCH", admin_port(w), "/upstreams/pool.test", headers=auth,
                     body=json.dumps({"healthchecks": None}))
            assert_eq(r.status, 200, "turn the checks off", r)
            assert_eq(health(w)[a.addr], "HEALTHCHECKS_OFF", "checks off")
        finally:
            c3.stop()
    finally:
        w.stop()
        a.stop()
        b.stop()


def test_bad_healthchecks_are_refused_with_the_field():
    a = Toggle("a")
    w = start_weir(config([a.addr], None, store={"type": "file", "path": "store.json"},
                          admin_token=TOKEN))
    auth = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
    try:
        for body, field in [
                ({"active": {"type": "grpc"}}, "type"),
                ({"active": {"unhealthy": {"tcp_failures": 256}}}, "tcp_failures"),
                ({"active": {"healthy": {"interval": -1}}}, "interval"),
                ({"passive": {"unhealthy": {"http_statuses": [99]}}}, "http_statuses"),
                ({"active": {"timeouts": 3}}, "timeouts"),
                ({"threshold": 50}, "threshold")]:
            r = http("PATCH", admin_port(w), "/upstreams/pool.test", headers=auth,
                     body=json.dumps({"healthchecks": body}))
            assert_eq(r.status, 400, "status for %r" % body, r)
            doc = r.json()
            check(doc.get("name") == "schema violation" and field in json.dumps(doc["fields"]),
                  "the error names %s: %r" % (field, doc))
    finally:
        w.stop()
        a.stop()


def test_admin_sets_a_target_healthy_or_unhealthy():
    a, b = Toggle("a"), Toggle("b")
    checks = {"passive": {"unhealthy": {"http_failures": 3}}}
    w = start_weir(config([a.addr, b.addr], checks))
    port = admin_port(w)
    try:
        r = http("POST", port, "/upstreams/pool.test/targets/%s/unhealthy" % a.addr)
        assert_eq((r.status, r.body), (204, b""), "POST unhealthy", r)
        assert_eq(health(w), {a.addr: "UNHEALTHY", b.addr: "HEALTHY"}, "health")
        assert_eq(backends_hit(w.port, 4), {"b": 4}, "traffic avoids the target")
        tid = [t["id"] for t in get(port, "/upstreams/pool.test/health").json()["data"]
               if t["target"] == a.addr][0]
        r = http("POST", port, "/upstreams/%s/targets/%s/healthy" % (UPSTREAM_ID, tid))
        assert_eq(r.status, 204, "POST healthy by ids", r)
        assert_eq(health(w)[a.addr], "HEALTHY", "health")
        assert_eq(sorted(backends_hit(w.port, 4)), ["a", "b"], "traffic is back")
        r = http("POST", port, "/upstreams/pool.test/targets/127.0.0.1:1/healthy")
        assert_eq(r.status, 404, "unknown target", r)
        r = http("POST", port, "/upstreams/nope.test/targets/%s/healthy" % a.addr)
        assert_eq(r.status, 404, "unknown upstream", r)
        r = get(port, "/upstreams/pool.test/targets/%s/healthy" % a.addr)
        assert_eq(r.status, 405, "GET", r)
    finally:
        w.stop()
    w = start_weir(config([a.addr], None))
    try:
        r = http("POST", admin_port(w), "/upstreams/pool.test/targets/%s/unhealthy" % a.addr)
        assert_eq(r.status, 400, "checks off", r)
        check("health checks are off" in r.json()["message"], "message: %r" % r.body)
        assert_eq(health(w), {a.addr: "HEALTHCHECKS_OFF"}, "health")
    finally:
        w.stop()
        a.stop()
        b.stop()


def test_active_https_checks_verify_the_certificate_and_send_the_sni():
    from test_tls import Pki
    from test_tls_upstream import TlsBackend
    pki = Pki()
    tb = TlsBackend(pki)
    target = "localhost:%d" % tb.port
    probe = {"type": "https", "http_path": "/health", "timeout": 1,
             "healthy": {"interval": 0.1, "successes": 1},
             "unhealthy": {"interval": 0.1, "tcp_failures": 1}}
    # verified against the system's CAs, the test PKI's certificate fails: a TCP failure
    w = start_weir(config([target], {"active": probe}))
    try:
        wait_health(w, target, "UNHEALTHY")
        check("tcp failure: certificate verify failed" in w.stderr_text(),
              "the failed verification is the logged reason")
    finally:
        w.stop()
    check(tb.sni and set(tb.sni) == {"localhost"}, "without https_sni, the target's host is sent")
    del tb.sni[:]
    probe = dict(probe, https_verify_certificate=False, https_sni="probe.example")
    w = start_weir(config([target], {"active": probe}))
    try:
        wait_until(lambda: any(p == "/health" for _, p in tb.requests), what="an https probe")
        assert_eq(health(w), {target: "HEALTHY"}, "health")
        assert_eq(set(tb.sni), {"probe.example"}, "server names sent")
    finally:
        w.stop()
        tb.stop()
