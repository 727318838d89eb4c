"""Admin API writes: create / read / update / upsert / delete of services, routes (top level and
nested), upstreams and their targets, consumers; Kong's error bodies; pagination and tags over
created entities; POST /config (atomic, round trip with GET /config); DB-less 405s; the admin token
on writes; and changes that are live at once, also under proxy load."""

import json
import os
import re
import socket
import threading
import time

from harness import (Conn, NO_ROUTE_MESSAGE, UUID_RE, assert_eq, assert_gateway_error, assert_in,
                     base_config, check, echo, fail, gateway, get, http, route, run_weir, service,
                     start_backend, start_weir, timeout, write_config_file)

TOKEN = "write-admin-token-0123456789"
STORE = {"type": "file", "path": "store.json"}
JSON = "application/json"

# Fields the API returns for each kind: the schema's properties without the input-only ones
# (a service's `url`, nested `plugins`/`routes`), plus the owner reference of a nested kind.
SERVICE_FIELDS = {"id", "created_at", "updated_at", "name", "protocol", "host", "port", "path",
                  "connect_timeout", "read_timeout", "write_timeout", "retries", "enabled", "tags",
                  "tls_verify", "tls_verify_depth", "ca_certificates", "client_certificate"}
ROUTE_FIELDS = {"id", "created_at", "updated_at", "name", "service", "paths", "hosts", "methods",
                "headers", "strip_path", "preserve_host", "regex_priority", "protocols",
                "https_redirect_status_code", "path_handling", "request_buffering",
                "response_buffering", "tags", "snis", "sources", "destinations", "expression",
                "priority"}
TARGET_FIELDS = {"id", "created_at", "updated_at", "target", "weight", "tags", "upstream"}
CONSUMER_FIELDS = {"id", "created_at", "updated_at", "username", "custom_id", "tags"}


class Admin:
    """The admin API of one weir: .get/.post/.put/.patch/.delete(path, body) -> HttpResult.
    A dict/list body is sent as JSON with Content-Type: application/json."""

    def __init__(self, w, token=None):
        self.port = int(w.config["weir"]["admin_listen"][0].rsplit(":", 1)[1])
        self.token = token

    def call(self, method, path, body=None, headers=None, token=None):
        hs = {}
        tok = token if token is not None else self.token
        if tok:
            hs["Authorization"] = "Bearer " + tok
        if body is not None:
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            hs["Content-Type"] = JSON
        hs.update(headers or {})
        return http(method, self.port, path, headers=hs, body=body)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.call("PUT", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.call("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    def ok(self, method, path, body=None, status=None):
        """The JSON body of a call that must answer `status` (201 for POST, 200 otherwise)."""
        want = status or (201 if method == "POST" else 204 if method == "DELETE" else 200)
        r = self.call(method, path, body)
        assert_eq(r.status, want, "%s %s" % (method, path), r)
        return r.json() if r.body else None

    def all(self, path):
        """Every item of a list endpoint, following `next`."""
        out, nxt = [], path
        while nxt:
            page = self.ok("GET", nxt)
            out += page["data"]
            nxt = page["next"]
        return out

    def config(self):
        return self.ok("GET", "/config")

    def status(self):
        return self.ok("GET", "/status")


def _json_of(r):
    try:
        return json.loads(r.body)
    except ValueError:
        fail("response body is not JSON: %r" % r.body[:300])


def _check_entity(e, fields, what):
    assert_eq(set(e), fields, "%s: fields" % what)
    check(UUID_RE.match(e["id"]), "%s: id is not a UUID: %r" % (what, e["id"]))
    now = time.time()
    for f in ("created_at", "updated_at"):
        check(isinstance(e[f], int) and abs(e[f] - now) < 120,
              "%s: %s is not the current Unix time in seconds: %r" % (what, f, e[f]))


def _schema_error(r, status=400):
    assert_eq(r.status, status, "status", r)
    doc = _json_of(r)
    assert_eq((doc.get("code"), doc.get("name")), (2, "schema violation"), "error kind", r)
    return doc


def _no_route(port, path):
    assert_gateway_error(get(port, path), 404, NO_ROUTE_MESSAGE)


def _proxied(port, path, **kw):
    r = get(port, path, **kw)
    assert_eq(r.status, 200, "proxied GET %s" % path, r)
    return echo(r)


# ---------------------------------------------------------------- services


def test_service_create_read_patch_put_delete_and_traffic_follows():
    with gateway(backends=2, store=STORE) as (w, (b1, b2)):
        api = Admin(w)
        s = api.ok("POST", "/services", {"name": "orders", "url": "http://127.0.0.1:%d/v1" % b1.port,
                                          "retries": 2, "tags": ["team-a"]})
        _check_entity(s, SERVICE_FIELDS, "created service")
        assert_eq({k: s[k] for k in ("name", "protocol", "host", "port", "path", "retries", "tags",
                                     "connect_timeout", "read_timeout", "write_timeout",
                                     "enabled", "tls_verify", "client_certificate")},
                  {"name": "orders", "protocol": "http", "host": "127.0.0.1", "port": b1.port,
                   "path": "/v1", "retries": 2, "tags": ["team-a"], "connect_timeout": 60000,
                   "read_timeout": 60000, "write_timeout": 60000, "enabled": True,
                   "tls_verify": None, "client_certificate": None},
                  "created service (url split, defaults filled, unset fields null)")
        assert_eq(api.ok("GET", "/services/orders"), s, "GET by name")
        assert_eq(api.ok("GET", "/services/" + s["id"]), s, "GET by id")
        api.ok("POST", "/services/orders/routes", {"name": "orders", "paths": ["/orders"]})
        e = _proxied(w.port, "/orders/7")
        assert_eq((e["backend"], e["path"]), (b1.addr, "/v1/7"), "traffic before the PATCH")

        # PATCH url: protocol/host/port/path replaced together; traffic moves at once
        p = api.ok("PATCH", "/services/orders", {"url": "http://127.0.0.1:%d/v2" % b2.port})
        assert_eq((p["id"], p["created_at"], p["host"], p["port"], p["path"], p["retries"],
                   p["tags"]), (s["id"], s["created_at"], "127.0.0.1", b2.port, "/v2", 2,
                                ["team-a"]), "PATCHed service (other fields kept)")
        check(p["updated_at"] >= s["updated_at"], "updated_at went back: %r" % p)
        e = _proxied(w.port, "/orders/7")
        assert_eq((e["backend"], e["path"]), (b2.addr, "/v2/7"), "traffic right after the PATCH")

        # PATCH one part only; null unsets a field (its default comes back); id cannot change
        p = api.ok("PATCH", "/services/" + s["id"], {"path": "/v3", "retries": None,
                                                     "id": "00000000-0000-4000-8000-000000000000"})
        assert_eq((p["id"], p["port"], p["path"], p["retries"]), (s["id"], b2.port, "/v3", 5),
                  "PATCH of path, retries=null and id")
        assert_eq(_proxied(w.port, "/orders/7")["path"], "/v3/7", "path after the second PATCH")

        # rename through PATCH: the old name is gone
        api.ok("PATCH", "/services/orders", {"name": "orders2"})
        assert_eq(api.get("/services/orders").status, 404, "old name after a rename")
        assert_eq(api.ok("GET", "/services/orders2")["id"], s["id"], "new name")

        # PUT replaces the whole entity: what it leaves out takes the defaults
        p = api.ok("PUT", "/services/orders2", {"url": "http://127.0.0.1:%d" % b1.port})
        assert_eq((p["id"], p["created_at"], p["name"], p["path"], p["retries"], p["tags"]),
                  (s["id"], s["created_at"], "orders2", None, 5, None), "PUT over an existing one")
        e = _proxied(w.port, "/orders/7")
        assert_eq((e["backend"], e["path"]), (b1.addr, "/7"), "traffic after the PUT")

        # PUT by a new name creates it with that name; by a new id, with that id
        n = api.ok("PUT", "/services/billing", {"host": "127.0.0.1", "port": b2.port})
        _check_entity(n, SERVICE_FIELDS, "service created by PUT")
        assert_eq((n["name"], n["port"], n["protocol"]), ("billing", b2.port, "http"),
                  "PUT by name creates")
        uid = "5b0fd8a4-2a4d-4a47-9d3f-3a2ad1a1b001"
        n = api.ok("PUT", "/services/" + uid, {"name": "by-id", "url": "http://127.0.0.1:1/"})
        assert_eq((n["id"], n["name"]), (uid, "by-id"), "PUT by id creates with that id")
        assert_eq(api.ok("GET", "/services/by-id")["id"], uid, "GET the PUT one by name")

        # DELETE: 204, then 404; deleting again is still 204
        assert_eq(api.delete("/services/billing").status, 204, "DELETE")
        assert_eq(api.get("/services/billing").status, 404, "GET after DELETE")
        assert_eq(api.get("/services/billing").json(), {"message": "Not found"}, "404 body")
        r = api.delete("/services/billing")
        assert_eq((r.status, r.body), (204, b""), "DELETE of what is not there")
        names = [x["name"] for x in api.all("/services")]
        assert_eq(names, ["echo", "orders2", "by-id"], "services left, in creation order")


def test_deleting_a_service_in_use_is_refused_unless_cascade():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        api.ok("DELETE", "/routes/echo")  # nothing on "/": an unrouted path 404s
        api.ok("POST", "/services", {"name": "api", "url": "http://127.0.0.1:%d/api" % b.port})
        r1 = api.ok("POST", "/routes", {"name": "a1", "paths": ["/a1"], "service": "api"})
        r2 = api.ok("POST", "/services/api/routes", {"name": "a2", "paths": ["/a2"]})
        before = api.config()
        r = api.delete("/services/api")
        assert_eq(r.status, 400, "DELETE of a service routes use", r)
        doc = r.json()
        assert_eq((doc["code"], doc["name"]), (4, "foreign key violation"), "error kind")
        assert_eq(doc["fields"], {"@referenced_by": "routes", "ids": [r1["id"], r2["id"]]},
                  "fields")
        assert_eq(api.config(), before, "GET /config after the refused DELETE")
        assert_eq(_proxied(w.port, "/a1/x")["path"], "/api/x", "route still served")
        assert_eq(api.delete("/services/api?cascade=true").status, 204, "DELETE ?cascade=true")
        assert_eq(api.get("/services/api").status, 404, "service gone")
        for name in ("a1", "a2"):
            assert_eq(api.get("/routes/" + name).status, 404, "route %s gone" % name)
        _no_route(w.port, "/a1/x")
        _no_route(w.port, "/a2/x")
        assert_eq(api.all("/routes"), [], "routes left")


# ---------------------------------------------------------------- routes


def test_routes_created_top_level_and_nested_serve_at_once_and_404_after_delete():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        echo_id = api.ok("GET", "/services/echo")["id"]
        api.ok("DELETE", "/routes/echo")  # nothing on "/" any more
        _no_route(w.port, "/top/x")
        r = api.ok("POST", "/routes", {"name": "top", "paths": ["/top"], "methods": ["get"],
                                       "service": {"name": "echo"}})
        _check_entity(r, ROUTE_FIELDS, "created route")
        assert_eq({k: r[k] for k in ("name", "service", "paths", "methods", "hosts", "headers",
                                     "strip_path", "preserve_host", "regex_priority", "protocols",
                                     "tags")},
                  {"name": "top", "service": {"id": echo_id}, "paths": ["/top"],
                   "methods": ["GET"], "hosts": None, "headers": None, "strip_path": True,
                   "preserve_host": False, "regex_priority": 0, "protocols": ["http", "https"],
                   "tags": None}, "created route")
        # the very next request uses it
        assert_eq(_proxied(w.port, "/top/x?q=1")["path"], "/x", "first request after the 201")
        assert_gateway_error(http("POST", w.port, "/top/x"), 404, NO_ROUTE_MESSAGE)

        n = api.ok("POST", "/services/echo/routes", {"name": "nested", "paths": ["/nested"],
                                                     "strip_path": False,
                                                     "service": {"name": "no-such"}})
        assert_eq(n["service"], {"id": echo_id}, "the path names the service, not the body")
        assert_eq(_proxied(w.port, "/nested/y")["path"], "/nested/y", "nested route serves")
        assert_eq(api.ok("GET", "/services/echo/routes/nested"), n, "GET nested by name")
        assert_eq(api.ok("GET", "/services/echo/routes/" + n["id"]), n, "GET nested by id")
        assert_eq([x["name"] for x in api.ok("GET", "/services/echo/routes")["data"]],
                  ["top", "nested"], "the service's routes")
        assert_eq(api.ok("GET", "/routes/nested/service")["name"], "echo", "route's service")
        assert_eq(api.get("/services/no-such/routes").status, 404, "routes of an unknown service")
        r2 = api.post("/services/no-such/routes", {"paths": ["/z"]})
        assert_eq(r2.status, 404, "POST under an unknown service", r2)

        # PATCH through the nested path, then DELETE through both paths
        p = api.ok("PATCH", "/services/echo/routes/nested", {"paths": ["/moved"]})
        assert_eq((p["id"], p["paths"], p["strip_path"]), (n["id"], ["/moved"], False),
                  "nested PATCH")
        _no_route(w.port, "/nested/y")
        assert_eq(_proxied(w.port, "/moved/y")["path"], "/moved/y", "PATCHed path serves")
        assert_eq(api.delete("/services/echo/routes/nested").status, 204, "nested DELETE by name")
        _no_route(w.port, "/moved/y")
        assert_eq(api.delete("/routes/" + r["id"]).status, 204, "DELETE by id")
        _no_route(w.port, "/top/x")
        assert_eq(api.all("/routes"), [], "no routes left")


def test_route_put_upserts_by_name_and_id_and_patch_moves_it_to_another_service():
    with gateway(backends=2, store=STORE) as (w, (b1, b2)):
        api = Admin(w)
        api.ok("DELETE", "/routes/echo")
        api.ok("POST", "/services", {"name": "other", "url": "http://127.0.0.1:%d/o" % b2.port})
        p = api.ok("PUT", "/routes/byname", {"paths": ["/pn"], "service": "echo",
                                             "tags": ["x"]})
        assert_eq((p["name"], p["paths"], p["tags"]), ("byname", ["/pn"], ["x"]),
                  "PUT by name creates with the name")
        assert_eq(_proxied(w.port, "/pn/1")["backend"], b1.addr, "PUT route serves")
        q = api.ok("PUT", "/routes/byname", {"paths": ["/pn2"], "service": "echo"})
        assert_eq((q["id"], q["created_at"], q["paths"], q["tags"]),
                  (p["id"], p["created_at"], ["/pn2"], None), "PUT replaces, keeping id")
        _no_route(w.port, "/pn/1")
        assert_eq(_proxied(w.port, "/pn2/1")["backend"], b1.addr, "replaced route serves")
        rid = "0b8f6f0e-8d53-4f1a-9c3b-6d9a1f2e3c4d"
        r = api.ok("PUT", "/routes/" + rid, {"paths": ["/pid"], "service": {"id": api.ok(
            "GET", "/services/other")["id"]}})
        assert_eq((r["id"], r["name"]), (rid, None), "PUT by id creates with that id, no name")
        e = _proxied(w.port, "/pid/2")
        assert_eq((e["backend"], e["path"]), (b2.addr, "/o/2"), "PUT-by-id route serves")
        m = api.ok("PATCH", "/routes/byname", {"service": "other"})
        assert_eq(m["service"], r["service"], "PATCH service reference")
        e = _proxied(w.port, "/pn2/3")
        assert_eq((e["backend"], e["path"]), (b2.addr, "/o/3"), "traffic after moving the route")
        assert_eq(api.patch("/routes/no-such", {"paths": ["/x"]}).status, 404, "PATCH unknown")


# ---------------------------------------------------------------- upstreams and targets


def test_upstream_targets_crud_and_a_new_target_takes_traffic():
    with gateway(backends=2, store=STORE) as (w, (b1, b2)):
        api = Admin(w)
        u = api.ok("POST", "/upstreams", {"name": "Pool", "tags": ["lb"]})
        assert_eq((u["name"], u["algorithm"], u["tags"], u["slots"]),
                  ("pool", "round-robin", ["lb"], None), "created upstream (name lower-cased)")
        check(UUID_RE.match(u["id"]), "upstream id %r" % u["id"])
        assert_eq(api.ok("GET", "/upstreams/pool"), u, "GET upstream by name")
        api.ok("POST", "/services", {"name": "pooled", "url": "http://pool/p"})
        api.ok("POST", "/routes", {"name": "pooled", "paths": ["/pool"], "service": "pooled"})
        r = get(w.port, "/pool/x")
        assert_eq(r.status, 503, "no target yet", r)

        t1 = api.ok("POST", "/upstreams/pool/targets", {"target": "127.0.0.1:%d" % b1.port})
        _check_entity(t1, TARGET_FIELDS, "created target")
        assert_eq((t1["target"], t1["weight"], t1["upstream"]),
                  ("127.0.0.1:%d" % b1.port, 100, {"id": u["id"]}), "created target")
        e = _proxied(w.port, "/pool/x")
        assert_eq((e["backend"], e["path"]), (b1.addr, "/p/x"), "first request after the target")

        t2 = api.ok("POST", "/upstreams/" + u["id"] + "/targets",
                    {"target": "127.0.0.1:%d" % b2.port, "weight": 100})
        seen = {_proxied(w.port, "/pool/%d" % i)["backend"] for i in range(10)}
        assert_eq(seen, {b1.addr, b2.addr}, "backends used once the second target is in")

        d = api.ok("POST", "/upstreams/pool/targets", {"target": "localhost"})
        assert_eq(d["target"], "localhost:8000", "target without a port gets 8000")
        assert_eq(api.ok("GET", "/upstreams/pool/targets/localhost:8000"), d, "GET by host:port")
        assert_eq(api.ok("GET", "/upstreams/pool/targets/" + d["id"]), d, "GET by id")
        assert_eq(api.delete("/upstreams/pool/targets/localhost:8000").status, 204,
                  "DELETE by host:port")
        assert_eq(api.get("/upstreams/pool/targets/" + d["id"]).status, 404, "deleted target")

        p = api.ok("PATCH", "/upstreams/pool/targets/127.0.0.1:%d" % b2.port, {"weight": 7})
        assert_eq((p["id"], p["weight"], p["upstream"]), (t2["id"], 7, {"id": u["id"]}),
                  "PATCHed target")
        q = api.ok("PUT", "/upstreams/pool/targets/127.0.0.1:9", {"weight": 3})
        assert_eq((q["target"], q["weight"], q["upstream"]), ("127.0.0.1:9", 3, {"id": u["id"]}),
                  "PUT by host:port creates the target")
        assert_eq(api.delete("/upstreams/pool/targets/127.0.0.1:9").status, 204, "DELETE it")

        h = api.ok("GET", "/upstreams/pool/health")
        assert_eq([(x["target"], x["health"]) for x in h["data"]],
                  [("127.0.0.1:%d" % b1.port, "HEALTHCHECKS_OFF"),
                   ("127.0.0.1:%d" % b2.port, "HEALTHCHECKS_OFF")], "health")
        assert_eq(h["next"], None, "health next")

        # the first target leaves: everything goes to the second, from the next request on
        assert_eq(api.delete("/upstreams/pool/targets/" + t1["id"]).status, 204, "DELETE by id")
        seen = {_proxied(w.port, "/pool/%d" % i)["backend"] for i in range(6)}
        assert_eq(seen, {b2.addr}, "backends used after the first target left")
        assert_eq([t["target"] for t in api.ok("GET", "/upstreams/pool/targets")["data"]],
                  ["127.0.0.1:%d" % b2.port], "targets left")
        assert_eq(api.get("/upstreams/no-such/targets").status, 404, "targets of no upstream")
        assert_eq(api.post("/upstreams/no-such/targets", {"target": "a:1"}).status, 404,
                  "POST target under no upstream")


def test_deleting_an_upstream_deletes_its_targets():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        u = api.ok("POST", "/upstreams", {"name": "gone"})
        for port in (1001, 1002, 1003):
            api.ok("POST", "/upstreams/gone/targets", {"target": "127.0.0.1:%d" % port})
        api.ok("POST", "/upstreams", {"name": "kept"})
        api.ok("POST", "/upstreams/kept/targets", {"target": "127.0.0.1:2001"})
        counts = api.post("/config", api.config()).json()["entities"]
        assert_eq((counts["upstreams"], counts["targets"]), (2, 4), "before the DELETE")
        assert_eq(api.delete("/upstreams/gone").status, 204, "DELETE upstream")
        assert_eq(api.get("/upstreams/gone").status, 404, "upstream gone")
        assert_eq(api.get("/upstreams/%s/targets" % u["id"]).status, 404, "its targets path")
        cfg = api.config()
        assert_eq([(x["name"], [t["target"] for t in x["targets"]]) for x in cfg["upstreams"]],
                  [("kept", ["127.0.0.1:2001"])], "upstreams and targets in GET /config")
        # a new upstream with the same name starts with no targets
        api.ok("POST", "/upstreams", {"name": "gone"})
        assert_eq(api.ok("GET", "/upstreams/gone/targets")["data"], [], "targets of the new one")


# ---------------------------------------------------------------- consumers


def test_consumers_create_read_patch_put_delete():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        c = api.ok("POST", "/consumers", {"username": "alice", "custom_id": "c-1", "tags": ["t"]})
        _check_entity(c, CONSUMER_FIELDS, "created consumer")
        assert_eq((c["username"], c["custom_id"], c["tags"]), ("alice", "c-1", ["t"]), "consumer")
        assert_eq(api.ok("GET", "/consumers/alice"), c, "GET by username")
        assert_eq(api.ok("GET", "/consumers/" + c["id"]), c, "GET by id")
        p = api.ok("PATCH", "/consumers/alice", {"custom_id": None})
        assert_eq((p["id"], p["username"], p["custom_id"], p["tags"]),
                  (c["id"], "alice", None, ["t"]), "PATCH custom_id=null")
        q = api.ok("PUT", "/consumers/alice", {"custom_id": "c-2"})
        assert_eq((q["id"], q["created_at"], q["username"], q["custom_id"], q["tags"]),
                  (c["id"], c["created_at"], "alice", "c-2", None), "PUT replaces")
        n = api.ok("PUT", "/consumers/bob", {})
        assert_eq((n["username"], n["custom_id"]), ("bob", None), "PUT by username creates")
        only_custom = api.ok("POST", "/consumers", {"custom_id": "c-3"})
        assert_eq(only_custom["username"], None, "consumer with a custom_id only")
        doc = _schema_error(api.post("/consumers", {}))
        assert_eq(doc["fields"], {"@entity": "must have a username or a custom_id"}, "fields")
        assert_eq(api.delete("/consumers/alice").status, 204, "DELETE")
        assert_eq(api.get("/consumers/alice").status, 404, "deleted")
        assert_eq([x["username"] for x in api.all("/consumers")], ["bob", None], "left")


# ---------------------------------------------------------------- lists


@timeout(20)
def test_pagination_walks_250_created_routes_in_creation_order():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        made = []
        for i in range(250):
            r = api.ok("POST", "/routes", {"name": "r%03d" % i, "paths": ["/r%03d" % i],
                                           "service": "echo"})
            made.append(r["id"])
        ids, pages, nxt = [], [], "/routes?size=100"
        while nxt:
            page = api.ok("GET", nxt)
            pages.append(len(page["data"]))
            ids += [x["id"] for x in page["data"]]
            if page["next"]:
                check(isinstance(page["offset"], str) and page["offset"],
                      "a page with next has no offset: %r" % {k: page[k] for k in page
                                                               if k != "data"})
                check(page["next"].startswith("/routes?") and "size=100" in page["next"],
                      "next: %r" % page["next"])
            nxt = page["next"]
            check(len(pages) <= 4, "more pages than expected: %r" % pages)
        assert_eq(pages, [100, 100, 51], "page sizes (250 routes and the config's one)")
        assert_eq(ids[1:], made, "ids over all pages, in creation order")
        assert_eq(len(set(ids)), 251, "no route twice")
        assert_eq([x["id"] for x in api.ok("GET", "/routes?size=1000")["data"]], ids,
                  "one page of 1000")
        assert_eq(api.get("/routes?size=1001").status, 400, "size over 1000")
        assert_eq(api.get("/routes?size=0").status, 400, "size 0")
        assert_eq(api.get("/routes?offset=abc").status, 400, "a bad offset")
        # and the last one created serves
        assert_eq(_proxied(w.port, "/r249/x")["path"], "/x", "last created route serves")


def test_tags_filter_created_entities():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        for i in range(30):
            tags = ["t%d" % (i % 3), "even" if i % 2 == 0 else "odd"]
            api.ok("POST", "/routes", {"name": "g%02d" % i, "paths": ["/g%02d" % i],
                                       "service": "echo", "tags": tags})

        def names(q):
            return [x["name"] for x in api.all("/routes?" + q)]
        assert_eq(names("tags=t0"), ["g%02d" % i for i in range(30) if i % 3 == 0], "tags=t0")
        assert_eq(names("tags=t0,even"), ["g%02d" % i for i in range(30) if i % 6 == 0],
                  "tags=t0,even (all of)")
        assert_eq(names("tags=t0/t1"), ["g%02d" % i for i in range(30) if i % 3 != 2],
                  "tags=t0/t1 (any of)")
        assert_eq(names("size=4&tags=t1/odd"),
                  ["g%02d" % i for i in range(30) if i % 3 == 1 or i % 2 == 1],
                  "any-of filter over pages of 4")
        assert_eq(names("tags=nothing"), [], "an unused tag")
        # PATCHing tags changes what the filter finds
        api.ok("PATCH", "/routes/g01", {"tags": ["t0"]})
        check("g01" in names("tags=t0"), "PATCHed tags not found by the filter")


# ---------------------------------------------------------------- errors


def test_schema_violation_lists_every_problem_and_changes_nothing():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        before = api.status()
        r = api.post("/routes", {"name": "bad", "paths": ["no-slash", "/ok", 3],
                                 "methods": "GET", "strip_path": "yes", "unknown": 1,
                                 "service": "echo"})
        doc = _schema_error(r)
        assert_eq(sorted(doc["fields"]), ["methods", "paths[0]", "paths[2]", "strip_path",
                                          "unknown"], "every problem at once")
        check(doc["message"].startswith("5 schema violations ("), "message: %r" % doc["message"])
        for key, msg in doc["fields"].items():
            check(isinstance(msg, str) and msg, "field %s has no message" % key)
            check(key in doc["message"], "message does not name %s: %r" % (key, doc["message"]))
        doc = _schema_error(api.post("/services", {"name": "s", "host": "127.0.0.1",
                                                   "port": 70000, "retries": -1}))
        assert_eq(sorted(doc["fields"]), ["port", "retries"], "service problems")
        doc = _schema_error(api.post("/services", [1, 2]))
        assert_eq(list(doc["fields"]), ["@entity"], "a body that is not an object")
        doc = _schema_error(api.post("/routes", {"paths": ["/nosvc"]}))
        assert_eq(doc["fields"], {"service": "required field missing"}, "route without service")
        doc = _schema_error(api.patch("/services/echo", {"port": "80"}))
        assert_eq(list(doc["fields"]), ["port"], "PATCH that breaks the schema")
        after = api.status()
        assert_eq((after["configuration_version"], after["configuration_hash"]),
                  (before["configuration_version"], before["configuration_hash"]),
                  "configuration after refused writes")
        assert_eq(api.get("/routes/bad").status, 404, "refused route was not created")


def test_foreign_key_violation_for_a_route_naming_an_unknown_service():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        for ref in ("no-such", {"name": "no-such"},
                    {"id": "6b1d2c3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"}):
            r = api.post("/routes", {"name": "orphan", "paths": ["/orphan"], "service": ref})
            assert_eq(r.status, 400, "route with service %r" % (ref,), r)
            doc = r.json()
            assert_eq((doc["code"], doc["name"], doc["fields"]),
                      (4, "foreign key violation", {"service": ref}), "error for %r" % (ref,))
            check("does not reference an existing 'services' entity" in doc["message"],
                  "message: %r" % doc["message"])
        r = api.patch("/routes/echo", {"service": "no-such"})
        assert_eq((r.status, r.json().get("name")), (400, "foreign key violation"), "PATCH", r)
        assert_eq(api.get("/routes/orphan").status, 404, "nothing created")
        assert_eq(_proxied(w.port, "/orphan")["path"], "/orphan", "the config's / route serves")


def test_unique_constraint_violations_are_409():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)

        def conflict(r, fields, what):
            assert_eq(r.status, 409, what, r)
            doc = r.json()
            assert_eq((doc["code"], doc["name"]), (5, "unique constraint violation"), what)
            assert_eq(doc["fields"], fields, what + ": fields")
            return doc
        doc = conflict(api.post("/services", {"name": "echo", "url": "http://127.0.0.1:1"}),
                       {"name": "echo"}, "duplicate service name")
        assert_eq(doc["message"], "UNIQUE violation detected on '{name=\"echo\"}'", "message")
        api.ok("POST", "/services", {"name": "two", "url": "http://127.0.0.1:1"})
        conflict(api.patch("/services/two", {"name": "echo"}), {"name": "echo"},
                 "PATCH to a taken name")
        echo_id = api.ok("GET", "/services/echo")["id"]
        conflict(api.post("/services", {"id": echo_id, "name": "three", "url": "http://x.y:1"}),
                 {"id": echo_id}, "duplicate id")
        api.ok("POST", "/consumers", {"username": "alice", "custom_id": "c1"})
        conflict(api.post("/consumers", {"username": "alice"}), {"username": "alice"},
                 "duplicate username")
        conflict(api.post("/consumers", {"username": "bob", "custom_id": "c1"}),
                 {"custom_id": "c1"}, "duplicate custom_id")
        api.ok("POST", "/upstreams", {"name": "pool"})
        api.ok("POST", "/upstreams/pool/targets", {"target": "127.0.0.1:81"})
        conflict(api.post("/upstreams/pool/targets", {"target": "127.0.0.1:81"}),
                 {"target": "127.0.0.1:81"}, "duplicate target in one upstream")
        api.ok("POST", "/upstreams", {"name": "pool2"})
        api.ok("POST", "/upstreams/pool2/targets", {"target": "127.0.0.1:81"})  # other upstream

        # routes matching exactly the same requests (paths/hosts/methods as sets)
        a = api.ok("POST", "/routes", {"name": "a", "paths": ["/a", "/b"], "hosts": ["x.test"],
                                       "methods": ["GET", "POST"], "service": "echo"})
        doc = conflict(api.post("/routes", {"name": "b", "paths": ["/b", "/a"],
                                            "hosts": ["X.test"], "methods": ["post", "get"],
                                            "service": "echo"}),
                       {"id": a["id"]}, "same match as route a")
        check(a["id"] in doc["message"], "message does not name the route: %r" % doc["message"])
        api.ok("POST", "/routes", {"name": "c", "paths": ["/b", "/a"], "hosts": ["x.test"],
                                   "methods": ["GET"], "service": "echo"})
        conflict(api.patch("/routes/c", {"methods": ["POST", "GET"]}), {"id": a["id"]},
                 "PATCH into the same match")
        conflict(api.post("/routes", {"name": "a", "paths": ["/zz"], "service": "echo"}),
                 {"name": "a"}, "duplicate route name")
        assert_eq(api.get("/routes/b").status, 404, "refused route not created")
        assert_eq(api.ok("GET", "/routes/c")["methods"], ["GET"], "refused PATCH not applied")


def test_malformed_json_wrong_content_type_and_wrong_methods():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        before = api.status()["configuration_hash"]
        r = api.post("/services", '{"name": "x", "url": }')
        assert_eq(r.status, 400, "malformed JSON", r)
        check(re.match(r"^malformed JSON at byte \d+ \(line 1, column \d+\): .+",
                       r.json()["message"]), "message: %r" % r.json())
        assert_eq(list(r.json()), ["message"], "malformed JSON body keys")
        r = api.post("/services", '{"name": "x", "name": "y", "url": "http://127.0.0.1:1"}')
        assert_eq(r.status, 400, "duplicate keys", r)
        check(r.json()["message"].startswith("malformed JSON"), "message: %r" % r.json())
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx"):
            r = api.call("POST", "/services", '{"name": "x", "url": "http://127.0.0.1:1"}',
                         headers={"Content-Type": ctype})
            assert_eq(r.status, 415, "Content-Type %s" % ctype, r)
            assert_eq(r.json(), {"message": "Content-Type must be application/json"}, "415 body")
        r = api.call("POST", "/services", '{"name": "ct", "url": "http://127.0.0.1:1"}',
                     headers={"Content-Type": "application/json; charset=utf-8"})
        assert_eq(r.status, 201, "application/json with a charset", r)
        assert_eq(api.delete("/services/ct").status, 204, "cleanup")

        for method, path in (("PATCH", "/routes"), ("PUT", "/services"), ("DELETE", "/config"),
                             ("POST", "/status"), ("PUT", "/config"), ("POST", "/routes/echo"),
                             ("PATCH", "/routes/echo/service")):
            r = api.call(method, path, {} if method != "DELETE" else None)
            assert_eq(r.status, 405, "%s %s" % (method, path), r)
            assert_eq(r.json(), {"message": "Method not allowed"}, "405 body")
        r = api.post("/widgets", {})
        assert_eq((r.status, r.json()), (404, {"message": "Not found"}), "POST to no endpoint")
        assert_eq(api.status()["configuration_hash"], before, "hash after all these")


def test_a_body_over_16_mib_is_413_and_changes_nothing():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        before = api.config()
        n = 16 * 1024 * 1024 + 1
        s = socket.create_connection(("127.0.0.1", api.port), timeout=10)
        try:
            s.sendall(b"POST /services HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % n)
            chunk, sent = b" " * 65536, 0
            try:
                while sent < n:
                    k = min(len(chunk), n - sent)
                    s.sendall(chunk[:k])
                    sent += k
            except OSError:
                pass
            data = b""
            try:
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    data += d
            except OSError:
                pass
        finally:
            s.close()
        check(data.startswith(b"HTTP/1.1 413 "), "expected a 413, got %r" % data[:300])
        check(b'"message"' in data, "413 without a JSON message: %r" % data[:300])

        assert_eq(api.config(), before, "entities after the 413")


# ---------------------------------------------------------------- DB-less


def test_db_less_entity_writes_are_405_and_post_config_still_works():
    with gateway() as (w, b):  # no weir.store
        api = Admin(w)
        calls = [("POST", "/services", {"name": "x", "url": "http://127.0.0.1:1"}),
                 ("PUT", "/services/x", {"url": "http://127.0.0.1:1"}),
                 ("PATCH", "/services/echo", {"retries": 1}),
                 ("DELETE", "/services/echo", None),
                 ("POST", "/routes", {"paths": ["/x"], "service": "echo"}),
                 ("POST", "/services/echo/routes", {"paths": ["/x"]}),
                 ("DELETE", "/routes/echo", None),
                 ("POST", "/upstreams", {"name": "u"}),
                 ("POST", "/consumers", {"username": "u"})]
        before = api.config()
        for method, path, body in calls:
            r = api.call(method, path, body)
            assert_eq(r.status, 405, "%s %s without a store" % (method, path), r)
            msg = r.json()["message"]
            check("POST /config" in msg, "405 message does not point to POST /config: %r" % msg)
        assert_eq(api.config(), before, "entities after the refused writes")
        assert_eq(api.ok("GET", "/services/echo")["name"], "echo", "reads work")

        doc = {"_format_version": "3.0", "services": [
            service("new", b.port, path="/n", routes=[route("new", ["/new"])])]}
        r = api.post("/config", doc)
        assert_eq(r.status, 201, "POST /config without a store", r)
        counts = r.json()["entities"]
        assert_eq((counts["services"], counts["routes"]), (1, 1), "entity counts")
        assert_eq(_proxied(w.port, "/new/1")["path"], "/n/1", "the posted route serves")
        _no_route(w.port, "/anything-else")
        assert_eq([s["name"] for s in api.config()["services"]], ["new"], "GET /config")
        check(not any(n.startswith("store") for n in os.listdir(w.tmpdir)),
              "a store file appeared without weir.store")


# ---------------------------------------------------------------- POST /config


def test_post_config_replaces_every_entity_and_answers_counts():
    with gateway(backends=2, store=STORE) as (w, (b1, b2)):
        api = Admin(w)
        api.ok("POST", "/consumers", {"username": "old"})
        status_before = api.status()
        doc = {"_format_version": "3.0",
               "services": [service("a", b2.port, path="/a", routes=[route("a", ["/a"])]),
                            service("b", url="http://pool/b", routes=[route("b", ["/b"])])],
               "upstreams": [{"name": "pool", "targets": [{"target": "127.0.0.1:%d" % b1.port},
                                                          {"target": "127.0.0.1:1", "weight": 0}]}],
               "consumers": [{"username": "new"}]}
        r = api.post("/config", doc)
        assert_eq(r.status, 201, "POST /config", r)
        out = r.json()
        assert_eq({k: out["entities"][k] for k in ("services", "routes", "upstreams", "targets",
                                                   "consumers", "plugins")},
                  {"services": 2, "routes": 2, "upstreams": 1, "targets": 2, "consumers": 1,
                   "plugins": 0}, "entity counts")
        st = api.status()
        assert_eq((out["configuration_version"], out["configuration_hash"]),
                  (st["configuration_version"], st["configuration_hash"]),
                  "version and hash agree with /status")
        assert_eq(out["configuration_version"], status_before["configuration_version"] + 1,
                  "version went up by one")
        check(out["configuration_hash"] != status_before["configuration_hash"], "hash unchanged")
        _no_route(w.port, "/echo-was-on-slash")
        e = _proxied(w.port, "/a/1")
        assert_eq((e["backend"], e["path"]), (b2.addr, "/a/1"), "route a")
        e = _proxied(w.port, "/b/1")
        assert_eq((e["backend"], e["path"]), (b1.addr, "/b/1"), "route b through the upstream")
        assert_eq(api.get("/consumers/old").status, 404, "old consumer replaced")
        assert_eq(api.ok("GET", "/consumers/new")["username"], "new", "new consumer")
        # entity writes go on from there
        api.ok("POST", "/services/a/routes", {"name": "a2", "paths": ["/a2"]})
        assert_eq(_proxied(w.port, "/a2/z")["backend"], b2.addr, "a route added afterwards")
        r = api.post("/config", {"_format_version": "3.0", "weir": {"workers": 2}})
        doc = _schema_error(r)
        assert_eq(list(doc["fields"]), ["weir"], "a weir key is refused")
        assert_eq(api.get("/routes/a2").status, 200, "nothing changed by the refused document")


def test_post_config_is_all_or_nothing():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        api.ok("POST", "/routes", {"name": "kept", "paths": ["/kept"], "service": "echo"})
        before_cfg, before_st = api.config(), api.status()
        with open(w.tmpdir + "/store.json", "rb") as f:
            before_store = f.read()
        routes = [route("n%d" % i, ["/n%d" % i]) for i in range(20)]
        bad_docs = [
            # one bad path among many
            (routes[:7] + [route("bad", ["no-slash"])] + routes[7:], "services[0].routes[7].paths[0]"),
            # two routes with the same match
            (routes + [route("dup", ["/n3"])], None),
            # a duplicate name
            (routes + [route("n5", ["/other"])], None),
        ]
        for rs, field in bad_docs:
            doc = {"_format_version": "3.0",
                   "services": [service("echo", b.port, routes=rs)],
                   "consumers": [{"username": "c"}]}
            r = api.post("/config", doc)
            assert_eq(r.status, 400, "invalid document", r)
            body = r.json()
            check(body.get("fields"), "no fields in %r" % body)
            if field:
                assert_in(field, body["fields"], "field of the bad path", r)
            assert_eq(api.config(), before_cfg, "GET /config after a refused POST /config")
            st = api.status()
            assert_eq((st["configuration_version"], st["configuration_hash"]),
                      (before_st["configuration_version"], before_st["configuration_hash"]),
                      "version and hash")
            # the old routes still serve ("/" catches /n1: check it is still the old route)
            assert_eq(_proxied(w.port, "/kept/1")["path"], "/1", "old route kept")
            assert_eq(_proxied(w.port, "/n1/x")["path"], "/n1/x", "new routes not installed")
            with open(w.tmpdir + "/store.json", "rb") as f:
                assert_eq(f.read(), before_store, "store file after a refused POST /config")
        r = api.post("/config", "{not json")
        assert_eq(r.status, 400, "malformed document", r)
        r = api.call("POST", "/config", "{}", headers={"Content-Type": "text/plain"})
        assert_eq(r.status, 415, "document with the wrong Content-Type", r)
        assert_eq(api.config(), before_cfg, "GET /config at the end")


def _round_trip(api):
    """Posts GET /config's output back (twice) and checks that GET /config stays the same."""
    exported = api.config()
    hash_before = api.status()["configuration_hash"]
    r = api.post("/config", exported)
    assert_eq(r.status, 201, "POST of GET /config's output", r)
    out = r.json()
    assert_eq(api.config(), exported, "GET /config after posting it back")
    assert_eq(out["configuration_hash"], hash_before, "configuration hash")
    r = api.post("/config", exported)
    assert_eq(r.status, 201, "second round trip", r)
    assert_eq(api.config(), exported, "GET /config after the second round trip")
    return out


def test_get_config_round_trips_through_post_config():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        api.ok("POST", "/services", {"name": "s2", "url": "http://127.0.0.1:%d/x" % b.port,
                                     "tags": ["a", "b"], "read_timeout": 1234})
        api.ok("POST", "/services/s2/routes", {"name": "r2", "paths": ["/r2", "~/re/\\d+$"],
                                               "hosts": ["*.example.com"], "methods": ["GET"],
                                               "headers": {"X-V": ["1"]}, "strip_path": False})
        api.ok("POST", "/routes", {"name": "r3", "paths": ["/r3"], "service": "s2"})
        api.ok("POST", "/upstreams", {"name": "pool", "tags": ["u"]})
        api.ok("POST", "/upstreams/pool/targets", {"target": "127.0.0.1:81", "weight": 5})
        api.ok("POST", "/upstreams/pool/targets", {"target": "localhost"})
        api.ok("POST", "/consumers", {"username": "alice", "custom_id": "c1", "tags": ["x"]})
        api.ok("POST", "/consumers", {"custom_id": "c2"})
        out = _round_trip(api)
        assert_eq({k: out["entities"][k] for k in ("services", "routes", "upstreams", "targets",
                                                   "consumers")},
                  {"services": 2, "routes": 3, "upstreams": 1, "targets": 2, "consumers": 2},
                  "entity counts")
        r = get(w.port, "/re/42", headers={"Host": "a.example.com", "X-V": "1"})
        assert_eq((r.status, echo(r)["path"]), (200, "/x/re/42"), "regex route after round trips")


def test_get_config_round_trips_with_an_unnamed_route_and_service():
    # name is optional for routes and services, and POST /routes takes a route without one
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        r = api.ok("POST", "/routes", {"paths": ["/unnamed"], "service": "echo"})
        assert_eq(r["name"], None, "the route has no name")
        s = api.ok("POST", "/services", {"url": "http://127.0.0.1:%d/s" % b.port})
        assert_eq(s["name"], None, "the service has no name")
        _round_trip(api)


# ---------------------------------------------------------------- token


def test_admin_token_guards_every_write():
    with gateway(store=STORE, admin_token=TOKEN) as (w, b):
        api = Admin(w, token=TOKEN)
        writes = [("POST", "/services", {"name": "x", "url": "http://127.0.0.1:1"}),
                  ("PUT", "/services/x", {"url": "http://127.0.0.1:1"}),
                  ("PATCH", "/services/echo", {"retries": 1}),
                  ("DELETE", "/routes/echo", None),
                  ("POST", "/services/echo/routes", {"paths": ["/x"]}),
                  ("POST", "/config", {"_format_version": "3.0"})]
        before = api.config()
        for bad in ("", "wrong-token-0123456789abc", TOKEN + "x", TOKEN[:-1]):
            for method, path, body in writes:
                hs = {"Authorization": "Bearer " + bad} if bad else {}
                r = http(method, api.port, path, body=json.dumps(body) if body else None,
                         headers=dict(hs, **{"Content-Type": JSON}))
                assert_eq(r.status, 401, "%s %s with token %r" % (method, path, bad), r)
                assert_eq(r.json(), {"message": "missing or invalid admin token"}, "401 body")
        r = http("POST", api.port, "/services", body=json.dumps(writes[0][2]),
                 headers={"Content-Type": JSON, "Authorization": TOKEN})
        assert_eq(r.status, 401, "token without Bearer", r)
        assert_eq(api.config(), before, "nothing changed by unauthorized writes")
        assert_eq(_proxied(w.port, "/still")["path"], "/still", "route still there")
        for method, path, body in writes[:5]:
            r = api.call(method, path, body)
            check(r.status in (200, 201, 204), "%s %s with the token: %s" % (method, path,
                                                                          r.status), r)
        _no_route(w.port, "/still")
        assert_eq(_proxied(w.port, "/x/1")["path"], "/1", "route created with the token")
        assert_eq(api.post("/config", {"_format_version": "3.0"}).status, 201,
                  "POST /config with the token")


# ---------------------------------------------------------------- live changes under load


@timeout(30)
def test_routes_added_under_proxy_load_serve_at_once_and_fail_no_request():
    def make(port):
        return base_config(port, workers=2, store=STORE, services=[
            service("echo", port, routes=[route("steady", ["/steady"])])])
    with gateway(make_config=make) as (w, b):
        api = Admin(w)
        stop = threading.Event()
        results = []  # per thread: [ok, failures (list of str)]

        def load(idx):
            ok, bad = 0, []
            conn = None
            while not stop.is_set():
                try:
                    if conn is None:
                        conn = Conn(w.port, timeout=5)
                    r = conn.request("GET", "/steady/%d/%d" % (idx, ok))
                    if r.status != 200 or json.loads(r.body)["path"] != "/%d/%d" % (idx, ok):
                        bad.append("status %s body %r" % (r.status, r.body[:200]))
                        if len(bad) > 20:
                            break
                    else:
                        ok += 1
                    if (r.header("connection") or "").lower() == "close":
                        conn.close()
                        conn = None
                except Exception as exc:  # a reset, a timeout, a closed connection
                    bad.append("%s: %s" % (type(exc).__name__, exc))
                    if conn:
                        conn.close()
                    conn = None
                    if len(bad) > 20:
                        break
            if conn:
                conn.close()
            results.append((ok, bad))

        threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(4)]
        start = time.monotonic()
        for t in threads:
            t.start()
        try:
            for i in range(100):
                path = "/new%03d" % i
                r = get(w.port, path + "/x")
                assert_eq(r.status, 404, "%s before its route" % path, r)
                r = api.post("/routes", {"name": "new%03d" % i, "paths": [path],
                                         "service": "echo"})
                assert_eq(r.status, 201, "POST route %d" % i, r)
                r = get(w.port, path + "/x")
                assert_eq(r.status, 200, "%s right after its 201" % path, r)
                assert_eq(echo(r)["path"], "/x", "%s: path at the backend" % path)
            while time.monotonic() - start < 3.0:
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert_eq(len(results), 4, "load threads that finished")
        failures = [f for _, bad in results for f in bad]
        check(not failures, "%d proxied requests failed, e.g.:\n  %s" % (
            len(failures), "\n  ".join(failures[:10])))
        total = sum(ok for ok, _ in results)
        check(total >= 200, "too few proxied requests to mean anything: %d" % total)
        assert_eq(len(api.all("/routes")), 101, "routes at the end")


def _thread_sched(pid, name):
    """(policy, nice) of the thread of weir process `pid` whose name is `name`, or None."""
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
        if comm == name:
            return int(fields[38]), int(fields[16])  # policy (41), nice (19)
    return None


def test_admin_writes_compile_on_an_idle_priority_thread_unless_told_low():
    SCHED_OTHER, SCHED_IDLE = 0, 5
    for setting, want in ((None, (SCHED_IDLE, None)), ("idle", (SCHED_IDLE, None)),
                          ("low", (SCHED_OTHER, 10))):
        b = start_backend()
        cfg = base_config(b.port, store=STORE)
        if setting:
            cfg["weir"]["admin_compile_priority"] = setting
        w = start_weir(cfg)
        try:
            api = Admin(w)
            # a write goes through the compile thread, then serves
            api.ok("POST", "/routes", {"name": "n", "paths": ["/n"], "service": "echo"})
            assert_eq(echo(get(w.port, "/n/x"))["path"], "/x", "route added (%s)" % setting)
            sched = _thread_sched(w.pid, "weir compile")
            check(sched is not None, "no 'weir compile' thread (%s)" % setting)
            assert_eq(sched[0], want[0], "scheduling policy of the compile thread (%s)" % setting)
            if want[1] is not None:
                assert_eq(sched[1], want[1], "nice level of the compile thread (%s)" % setting)
            assert_eq(_thread_sched(w.pid, "weir")[0], SCHED_OTHER, "the control thread's policy")
        finally:
            w.stop()
            b.stop()
    cfg = base_config(9, admin_compile_priority="fast")
    rc, out, err = run_weir(["-t", "-c", write_config_file(cfg)])
    check(rc != 0, "weir -t accepted admin_compile_priority \"fast\"")
    check('weir.admin_compile_priority: must be "idle" or "low"' in err, err)
