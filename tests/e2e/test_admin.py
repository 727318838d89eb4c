"""The admin API: GET /, /status, /config, /debug/match, /metrics, entity reads, credentials in logs,
the admin token and the admin listener's errors."""

import re
import socket

from harness import (assert_eq, base_config, check, free_port, gateway, get, http, route, run_weir,
                     service, start_weir, write_config_file)

TOKEN = "test-admin-token-0123456789"


def admin_port(w):
    return int(w.config["weir"]["admin_listen"][0].rsplit(":", 1)[1])


def test_root_says_what_the_node_is():
    with gateway() as (w, b):
        r = get(admin_port(w), "/")
        assert_eq(r.status, 200, "GET / status")
        doc = r.json()
        check(re.fullmatch(r"\d+\.\d+\.\d+", doc["version"]), "version: %r" % doc["version"])
        check(re.fullmatch(r"[0-9a-f-]{36}", doc["node_id"]), "node_id: %r" % doc["node_id"])
        assert_eq(doc["hostname"], socket.gethostname(), "hostname")
        check("plugins" in doc, "no plugins section: %r" % doc)
        assert_eq(r.header("content-type"), "application/json; charset=utf-8", "content type")


def test_status_counts_requests_and_reports_the_config_hash():
    with gateway() as (w, b):
        before = get(admin_port(w), "/status").json()
        for i in range(3):
            assert_eq(get(w.port, "/x%d" % i).status, 200, "proxied request")
        after = get(admin_port(w), "/status").json()
        assert_eq(after["server"]["total_requests"] - before["server"]["total_requests"], 3,
                  "requests counted between two /status calls")
        check(re.fullmatch(r"[0-9a-f]{64}", after["configuration_hash"]),
              "configuration_hash: %r" % after["configuration_hash"])
        check(after["memory"]["rss_bytes"] > 0, "rss_bytes: %r" % after["memory"])


def test_config_exports_the_running_configuration_without_the_token():
    with gateway(admin_token=TOKEN) as (w, b):
        r = get(admin_port(w), "/config", headers={"Authorization": "Bearer " + TOKEN})
        assert_eq(r.status, 200, "GET /config")
        doc = r.json()
        assert_eq(doc["_format_version"], "3.0", "_format_version")
        assert_eq([s["name"] for s in doc["services"]], ["echo"], "services")
        check(TOKEN not in r.body.decode(), "GET /config echoed the admin token")


def test_token_is_required_on_every_request_when_set():
    with gateway(admin_token=TOKEN) as (w, b):
        port = admin_port(w)
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"},
                        {"Authorization": "Bearer " + TOKEN + "x"}, {"Authorization": TOKEN}):
            r = get(port, "/status", headers=headers)
            assert_eq(r.status, 401, "status with %r" % headers)
            check("token" in r.json()["message"], "401 body: %r" % r.body)
        r = get(port, "/status", headers={"Authorization": "Bearer " + TOKEN})
        assert_eq(r.status, 200, "status with the right token")


def test_a_non_loopback_admin_listener_needs_a_token():
    cfg = base_config(free_port())
    cfg["weir"]["admin_listen"] = ["0.0.0.0:%d" % free_port()]
    rc, out, err = run_weir(["-t", "-c", write_config_file(cfg)])
    assert_eq(rc, 1, "exit status of weir -t", out + err)
    check(re.search(r"^weir\.admin_listen\[0\]: .*admin_token", err, re.M),
          "no weir.admin_listen[0] error naming admin_token:\n%s" % err)
    cfg["weir"]["admin_token"] = TOKEN
    rc, out, err = run_weir(["-t", "-c", write_config_file(cfg)])
    assert_eq(rc, 0, "exit status with a token", out + err)


def test_short_tokens_are_refused():
    cfg = base_config(free_port())
    cfg["weir"]["admin_token"] = "short"
    rc, out, err = run_weir(["-t", "-c", write_config_file(cfg)])
    assert_eq(rc, 1, "exit status of weir -t", out + err)
    check("weir.admin_token: must be a string of at least 16 characters" in err, err)


def test_unknown_paths_are_404_and_wrong_methods_405_in_json():
    with gateway() as (w, b):
        port = admin_port(w)
        r = get(port, "/no-such-thing")
        assert_eq(r.status, 404, "unknown path")
        assert_eq(r.json(), {"message": "Not found"}, "404 body")
        r = http("DELETE", port, "/status")
        assert_eq(r.status, 405, "DELETE /status")
        assert_eq(r.json(), {"message": "Method not allowed"}, "405 body")


def test_debug_match_explains_the_route_and_the_upstream_url():
    def make(port):
        return base_config(port, services=[
            service("orders", port, path="/v1", routes=[
                route("orders", ["/api/orders"], methods=["GET"], hosts=["api.example.com"])])])
    with gateway(make_config=make) as (w, b):
        r = get(admin_port(w), "/debug/match?method=GET&host=api.example.com:8000"
                               "&path=/api/./orders/7%3Fx%3D1")
        assert_eq(r.status, 200, "debug/match status")
        doc = r.json()
        check(doc["matched"], "not matched: %r" % doc)
        assert_eq(doc["route"]["name"], "orders", "route")
        assert_eq(doc["service"]["name"], "orders", "service")
        assert_eq(doc["normalized_path"], "/api/orders/7", "normalized path")
        assert_eq(doc["upstream_url"], "http://127.0.0.1:%d/v1/7?x=1" % b.port, "upstream URL")
        assert_eq(doc["plugins"], [], "plugins")
        # the proxy agrees with the explanation
        r = get(w.port, "/api/orders/7?x=1", headers={"Host": "api.example.com"})
        assert_eq(r.status, 200, "the proxied request")
        assert_eq(r.json()["path"], "/v1/7", "path the backend saw")


def test_debug_match_says_why_nothing_matched():
    def make(port):
        return base_config(port, services=[
            service("orders", port, routes=[
                route("orders", ["/api/orders"], methods=["GET"], hosts=["api.example.com"])])])
    with gateway(make_config=make) as (w, b):
        port = admin_port(w)
        doc = get(port, "/debug/match?method=POST&host=api.example.com&path=/api/orders").json()
        check(not doc["matched"], "matched: %r" % doc)
        assert_eq(doc["message"], "no Route matched with those values", "message")
        assert_eq(doc["near_misses"], [{"route": "orders", "reason":
                                        "methods: POST is not one of the route's methods"}],
                  "near misses")
        doc = get(port, "/debug/match?host=other.example.com&path=/api/orders").json()
        check("hosts" in doc["near_misses"][0]["reason"], "reason: %r" % doc)
        r = get(port, "/debug/match?path=/../etc")
        assert_eq(r.status, 400, "a path a client would get 400 for")
        assert_eq(get(port, "/debug/match").status, 400, "no path")


def test_admin_port_in_use_gives_one_clear_line():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        cfg = base_config(free_port())
        cfg["weir"]["admin_listen"] = ["127.0.0.1:%d" % port]
        rc, out, err = run_weir(["-c", write_config_file(cfg)], timeout=10)
    finally:
        blocker.close()
    check(rc != 0, "weir started although its admin port is in use:\n%s" % (out + err))
    lines = [l for l in (out + err).splitlines() if str(port) in l]
    check(len(lines) == 1 and "in use" in lines[0], "expected one line:\n%s" % (out + err))


def test_admin_api_with_no_listener_is_off():
    cfg = base_config(free_port())
    cfg["weir"]["admin_listen"] = []
    w = start_weir(cfg)
    try:
        check(w.alive(), "weir did not start without an admin listener")
    finally:
        w.stop()


def test_metrics_count_requests_by_route_service_and_status_in_prometheus_text():
    with gateway() as (w, b):
        for i in range(4):
            assert_eq(get(w.port, "/m%d" % i).status, 200, "proxied request")
        assert_eq(get(w.port, "/m?status=503").status, 503, "proxied 503")
        r = get(admin_port(w), "/metrics")
        assert_eq(r.status, 200, "GET /metrics")
        check(r.header("content-type").startswith("text/plain; version=0.0.4"),
              "content type %r" % r.header("content-type"))
        text = r.body.decode()
        check('weir_http_requests_total{route="echo",service="echo",code="200"} 4\n' in text, text)
        check('weir_http_requests_total{route="echo",service="echo",code="503"} 1\n' in text, text)
        check('weir_request_latency_ms_count{route="echo",service="echo"} 5\n' in text, text)
        check(re.search(r"^weir_connections_active \d+$", text, re.M), text)


def test_head_gets_the_headers_of_get_without_a_body():
    with gateway() as (w, b):
        port = admin_port(w)
        g = get(port, "/status")
        h = http("HEAD", port, "/status")
        assert_eq(h.status, 200, "HEAD /status")
        assert_eq(h.body, b"", "HEAD body")
        check(int(h.header("content-length")) > 0, "HEAD has no Content-Length")
        assert_eq(h.header("content-type"), g.header("content-type"), "content type")


def _entities_config(port):
    return base_config(port, services=[
        service("orders", port, path="/v1", tags=["team-a", "prod"], routes=[
            route("orders", ["/api/orders"], methods=["GET"], hosts=["api.example.com"])]),
        service("users", url="http://users-pool", tags=["team-b"], routes=[
            route("users", ["/users"])]),
    ], upstreams=[{"name": "users-pool", "targets": [{"target": "127.0.0.1:%d" % port},
                                                     {"target": "127.0.0.1:%d" % free_port(),
                                                      "weight": 50}]}])


def test_services_list_in_kong_shape_with_pagination_and_tags():
    with gateway(make_config=_entities_config) as (w, b):
        port = admin_port(w)
        page = get(port, "/services?size=1").json()
        assert_eq([s["name"] for s in page["data"]], ["orders"], "first page")
        check(page["next"] and page["offset"], "no next page: %r" % page)
        svc = page["data"][0]
        for field in ("id", "protocol", "host", "port", "path", "retries", "connect_timeout",
                      "read_timeout", "write_timeout", "created_at", "updated_at"):
            check(field in svc, "service has no %s: %r" % (field, svc))
        assert_eq((svc["protocol"], svc["host"], svc["port"], svc["path"]),
                  ("http", "127.0.0.1", b.port, "/v1"), "service in Kong's shape")
        page2 = get(port, page["next"]).json()
        assert_eq([s["name"] for s in page2["data"]], ["users"], "second page")
        assert_eq(page2["next"], None, "next after the last page")
        assert_eq([s["name"] for s in get(port, "/services?tags=team-a,prod").json()["data"]],
                  ["orders"], "tags: all of")
        assert_eq(len(get(port, "/services?tags=team-a/team-b").json()["data"]), 2, "tags: any of")
        assert_eq(get(port, "/services?size=1001").status, 400, "size over 1000")


def test_entities_by_id_or_name_and_nested_paths():
    with gateway(make_config=_entities_config) as (w, b):
        port = admin_port(w)
        by_name = get(port, "/services/orders").json()
        assert_eq(get(port, "/services/" + by_name["id"]).json(), by_name, "by id and by name")
        r = get(port, "/routes/orders").json()
        assert_eq(r["service"], {"id": by_name["id"]}, "route's service reference")
        assert_eq(r["hosts"], ["api.example.com"], "route hosts")
        assert_eq(get(port, "/routes/orders/service").json()["name"], "orders", "route's service")
        assert_eq([x["name"] for x in get(port, "/services/users/routes").json()["data"]],
                  ["users"], "service's routes")
        targets = get(port, "/upstreams/users-pool/targets").json()["data"]
        assert_eq(sorted(t["weight"] for t in targets), [50, 100], "target weights")
        assert_eq(get(port, "/services/no-such").status, 404, "unknown service")
        assert_eq(get(port, "/upstreams/no-such/targets").status, 404, "unknown upstream")


def test_schemas_endpoint_serves_the_entity_schemas():
    with gateway() as (w, b):
        port = admin_port(w)
        doc = get(port, "/schemas/routes").json()
        assert_eq(doc["$schema"], "https://json-schema.org/draft/2020-12/schema", "$schema")
        check("paths" in doc["properties"], "no paths in the route schema")
        assert_eq(get(port, "/schemas/nothing").status, 404, "unknown entity")


def test_credential_keys_in_paths_never_reach_the_log():
    with gateway(store={"type": "file", "path": "store.json"}) as (w, b):
        port = admin_port(w)
        key = "do-not-log-this-key-0123456789"
        json_hdr = {"Content-Type": "application/json"}
        assert_eq(http("POST", port, "/consumers", headers=json_hdr,
                       body='{"username": "alice"}').status, 201, "consumer created")
        r = http("POST", port, "/consumers/alice/key-auth", headers=json_hdr,
                 body='{"key": "%s"}' % key)
        assert_eq(r.status, 201, "key created")
        assert_eq(r.json()["key"], key, "the key is returned to the admin")
        assert_eq(get(port, "/consumers/alice/key-auth/" + key).status, 200, "GET by key")
        assert_eq(get(port, "/key-auths/" + key).status, 200, "GET /key-auths/{key}")
        assert_eq(http("DELETE", port, "/consumers/alice/key-auth/" + key).status, 204, "DELETE")
        assert_eq(get(port, "/consumers/alice/key-auth/" + key).status, 404, "gone")
        log = w.stderr_text()
        check("/consumers/{}/key-auth/{} -> 204" in log, "the DELETE is logged by route:\n" + log)
        check(key not in log, "the key reached the error log:\n" + log)
