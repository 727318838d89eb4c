"""The bundled request-transformer and response-transformer plugins (issue 5): Kong's configs
(remove, rename, replace, add, append on headers, query and JSON/form bodies; replace.uri and
http_method; response headers and JSON keys with json_types), Kong's order of operations, bodies
re-encoded with a correct Content-Length, bodies of other types untouched, and $(...) templates and
headers Weir writes itself refused at config time. Real gateway, real backends."""

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import (assert_eq, base_config, check, echo, gateway, get, http, route, service)
from test_admin_write import STORE, Admin


def rt(config):
    return {"name": "request-transformer", "config": config}


def rst(config):
    return {"name": "response-transformer", "config": config}


# ------------------------------------------------------------------ request-transformer

REQ_ROUTES = {
    "/h": {"remove": {"headers": ["X-Remove", "x-absent"]},
           "rename": {"headers": ["X-Old:X-New", "X-Missing:X-Never"]},
           "replace": {"headers": ["X-Rep:replaced", "X-Not-There:nope"]},
           "add": {"headers": ["X-Add:added", "X-Keep:not-used", "X-Remove:re-added"]},
           "append": {"headers": ["X-App:second", "X-App-New:only", "X-Time:12:30"]}},
    "/q": {"remove": {"querystring": ["gone"]},
           "rename": {"querystring": ["old:new", "missing:never"]},
           "replace": {"querystring": ["rep:R", "absent:nope"]},
           "add": {"querystring": ["add:a b&c", "keep:no"]},
           "append": {"querystring": ["app:2", "fresh:x"]}},
    "/b": {"remove": {"body": ["gone"]},
           "rename": {"body": ["old:new", "missing:never"]},
           "replace": {"body": ["rep:R", "absent:nope"]},
           "add": {"body": ["add:ä b&c=d", "keep:no"]},
           "append": {"body": ["app:2", "fresh:x"]}},
    "/add-only": {"add": {"body": ["k:v"]}},
    "/m": {"http_method": "PUT"},
    "/get": {"http_method": "GET", "add": {"querystring": ["extra:1"]}},
    "/uri": {"replace": {"uri": "/fixed/path"}, "add": {"querystring": ["z:1"]}},
    "/order": {"remove": {"headers": ["X-A"], "querystring": ["a"]},
               "rename": {"headers": ["X-B:X-A"], "querystring": ["b:a"]},
               "replace": {"headers": ["X-A:replaced"], "querystring": ["a:replaced"]},
               "add": {"headers": ["X-A:added", "X-C:added"], "querystring": ["a:added"]},
               "append": {"headers": ["X-A:appended"], "querystring": ["a:appended"]}},
}


def req_config(port):
    cfg = base_config(port)
    routes = cfg["services"][0]["routes"]
    for i, (path, conf) in enumerate(REQ_ROUTES.items()):
        routes.append(route("rt%d" % i, [path], strip_path=False, plugins=[rt(conf)]))
    cfg["services"].append(service("api", port, path="/api", routes=[
        route("strip", ["/strip"], strip_path=True, plugins=[rt({"replace": {"uri": "/v2/x"}})])]))
    return cfg


def test_request_headers_remove_rename_replace_add_append():
    with gateway(req_config) as (w, b):
        r = http("GET", w.port, "/h", headers=[
            ("X-Remove", "secret"), ("X-Old", "o1"), ("X-Rep", "before"), ("X-Keep", "mine"),
            ("X-App", "first"), ("X-Other", "untouched")])
        e = echo(r)
        assert_eq(e.header("x-remove"), "re-added", "removed, then added back (Kong's order)")
        assert_eq((e.header("x-old"), e.header("x-new")), (None, "o1"), "renamed")
        assert_eq(e.header("x-never"), None, "renaming an absent header adds nothing")
        assert_eq(e.header("x-rep"), "replaced", "replaced")
        assert_eq(e.header("x-not-there"), None, "replace only replaces present headers")
        assert_eq(e.header("x-add"), "added", "added")
        assert_eq(e.header("x-keep"), "mine", "add does not overwrite")
        assert_eq(e.headers_named("x-app"), ["first", "second"], "appended as a second field")
        assert_eq(e.header("x-app-new"), "only", "append to an absent header adds it")
        assert_eq(e.header("x-time"), "12:30", "the value is everything after the first colon")
        assert_eq(e.header("x-other"), "untouched", "other headers pass")
        # case-insensitive names, and a repeated header renamed with all its fields
        e = echo(http("GET", w.port, "/h", headers=[("x-old", "a"), ("X-OLD", "b")]))
        assert_eq(e.headers_named("x-new"), ["a", "b"], "every field renamed")


def test_request_querystring_remove_rename_replace_add_append():
    with gateway(req_config) as (w, b):
        e = echo(get(w.port, "/q?gone=1&old=o&rep=1&keep=k&app=1&other=a+b"))
        got = e["query"].split("&")
        assert_eq(got, ["rep=R", "keep=k", "app=1", "app=2", "other=a%20b", "new=o",
                        "add=a%20b%26c", "fresh=x"], "query after the operations, order kept")
        # a changed query is re-encoded: + and %41 are decoded, then encoded canonically
        e = echo(get(w.port, "/q?keep=1&add=x+y&app=%41"))
        assert_eq(e["query"], "keep=1&add=x%20y&app=A&app=2&fresh=x", "re-encoded")
        # only append/add ran: bare names stay bare
        e = echo(get(w.port, "/q?flag&add=1&app=1"))
        assert_eq(e["query"], "flag&add=1&app=1&app=2&keep=no&fresh=x", "bare names kept")
    with gateway(lambda p: _one_route(p, rt({"remove": {"querystring": ["nothing"]}}))) as (w, b):
        e = echo(get(w.port, "/x?a=1+2&b=%41"))
        assert_eq(e["query"], "a=1+2&b=%41", "untouched query keeps its encoding")


def _one_route(port, plugin, **route_fields):
    cfg = base_config(port)
    cfg["services"][0]["routes"][0]["plugins"] = [plugin]
    cfg["services"][0]["routes"][0].update(route_fields)
    return cfg


def body_seen(e):
    check(e["framing"] == "content-length", "the body is sent with a Content-Length", str(e))
    assert_eq(int(e.header("content-length")), e["body_bytes"], "Content-Length matches the body")
    return e["body"].encode("latin-1").decode("utf-8")  # the backend reports bytes as latin-1


def test_request_json_body_operations():
    with gateway(req_config) as (w, b):
        doc = {"gone": 1, "old": {"n": [1, 2]}, "rep": 5, "keep": "k", "app": "1",
               "arr": [], "nested": {"gone": 1}}
        e = echo(http("POST", w.port, "/b", body=json.dumps(doc),
                      headers={"Content-Type": "application/json; charset=utf-8"}))
        got = json.loads(body_seen(e))
        assert_eq(got, {"new": {"n": [1, 2]}, "rep": "R", "keep": "k", "app": ["1", "2"],
                        "arr": [], "nested": {"gone": 1}, "add": "ä b&c=d", "fresh": "x"},
                  "JSON after the operations (top-level keys only; [] stays an array)")
        # append to an array adds an element
        e = echo(http("POST", w.port, "/b", body='{"app": ["a"]}',
                      headers={"Content-Type": "application/vnd.api+json"}))
        assert_eq(json.loads(body_seen(e))["app"], ["a", "2"], "+json type, appended to array")
        # an empty JSON body gets the added fields
        e = echo(http("POST", w.port, "/add-only", body=b"",
                      headers={"Content-Type": "application/json"}))
        assert_eq(json.loads(body_seen(e)), {"k": "v"}, "empty body")
        # an array, invalid JSON, and other types go as they came
        for ctype, body in [("application/json", b'[{"gone": 1}]'),
                            ("application/json", b'{"gone": 1'),
                            ("text/plain", b'{"gone": 1}'),
                            ("multipart/form-data; boundary=XX",
                             b'--XX\r\nContent-Disposition: form-data; name="gone"\r\n\r\n1\r\n--XX--\r\n')]:
            e = echo(http("POST", w.port, "/b", body=body, headers={"Content-Type": ctype}))
            assert_eq(e["body"].encode(), body, "untouched: %s %r" % (ctype, body))
        # no Content-Type: untouched
        e = echo(http("POST", w.port, "/b", body=b'{"gone": 1}'))
        assert_eq(e["body"], '{"gone": 1}', "no Content-Type")


def test_request_form_body_operations():
    with gateway(req_config) as (w, b):
        e = echo(http("POST", w.port, "/b", body="gone=1&old=o&rep=1&keep=k&app=1&other=a+b",
                      headers={"Content-Type": "application/x-www-form-urlencoded"}))
        assert_eq(body_seen(e).split("&"),
                  ["rep=R", "keep=k", "app=1", "app=2", "other=a%20b", "new=o",
                   "add=%C3%A4%20b%26c%3Dd", "fresh=x"], "form after the operations")


def test_request_method_and_uri():
    with gateway(req_config) as (w, b):
        e = echo(http("POST", w.port, "/m", body="{}", headers={"Content-Type": "application/json"}))
        assert_eq((e["method"], e["body"]), ("PUT", "{}"), "method changed, body kept")
        # to GET: a form body's fields join the query (Kong), then the query operations run
        e = echo(http("POST", w.port, "/get?a=0", body="a=1&b=2",
                      headers={"Content-Type": "application/x-www-form-urlencoded"}))
        assert_eq((e["method"], e["query"]), ("GET", "a=0&a=1&b=2&extra=1"), "form to query")
        e = echo(get(w.port, "/uri/anything?q=1"))
        assert_eq((e["path"], e["query"]), ("/fixed/path", "q=1&z=1"), "replace.uri")
        # replace.uri is the whole path: the route's strip_path and the service path are replaced
        e = echo(get(w.port, "/strip/zzz"))
        assert_eq(e["path"], "/v2/x", "replace.uri on a strip_path route of a service with a path")


def test_request_operations_run_in_kongs_order():
    with gateway(req_config) as (w, b):
        e = echo(http("GET", w.port, "/order?a=1&b=2", headers=[("X-A", "1"), ("X-B", "2")]))
        # remove a; rename b -> a; replace a; add a (present: skipped); append a
        assert_eq(e.headers_named("x-a"), ["replaced", "appended"], "headers")
        assert_eq(e.header("x-b"), None, "renamed away")
        assert_eq(e.header("x-c"), "added", "added")
        assert_eq(e["query"], "a=replaced&a=appended", "query")


def test_request_transformer_config_errors():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        cases = [
            ({"add": {"headers": ["X-User:$(headers.x_user)"]}}, "$(...) templates are not supported"),
            ({"append": {"querystring": ["a:$(query_params.b)"]}}, "$(...) templates are not supported"),
            ({"replace": {"uri": "/$(uri_captures.x)"}}, "$(...) templates are not supported"),
            ({"add": {"headers": ["Content-Length:5"]}}, "names a header Weir writes itself"),
            ({"remove": {"headers": ["x-forwarded-for"]}}, "names a header Weir writes itself"),
            ({"rename": {"headers": ["X-A:Via"]}}, "renames to a header Weir writes itself"),
            ({"add": {"headers": ["No Colon"]}}, "must be \"name:value\""),
            ({"add": {"body": ["novalue:"]}}, "must be \"name:value\""),
            ({"rename": {"querystring": ["a"]}}, "must be \"old:new\""),
            ({"http_method": "post"}, "config.http_method"),
            ({"replace": {"uri": "relative"}}, "config.replace.uri"),
            ({"remove": {"cookies": []}}, "config.remove"),
        ]
        for conf, want in cases:
            r = api.post("/routes/echo/plugins", rt(conf))
            assert_eq(r.status, 400, "refused: %r" % conf, r)
            check(want in r.json()["message"], "%r: no %r in the answer" % (conf, want), r)
        # a Kong entry with every field loads unchanged and gets the defaults
        kong = {"http_method": "POST",
                "remove": {"headers": ["x-a"], "querystring": ["q"], "body": ["f"]},
                "rename": {"headers": ["x-b:x-c"], "querystring": ["q1:q2"], "body": ["f1:f2"]},
                "replace": {"headers": ["x-d:1"], "querystring": ["q3:3"], "body": ["f3:3"],
                            "uri": "/new"},
                "add": {"headers": ["x-e:1"], "querystring": ["q4:4"], "body": ["f4:4"]},
                "append": {"headers": ["x-f:1"], "querystring": ["q5:5"], "body": ["f5:5"]}}
        stored = api.ok("POST", "/routes/echo/plugins", rt(kong))["config"]
        assert_eq(stored, kong, "stored as given")
        r = api.ok("PATCH", "/plugins/" + api.ok("GET", "/plugins")["data"][0]["id"],
                   {"config": {}})
        assert_eq(r["config"]["add"], {"headers": [], "querystring": [], "body": []}, "defaults")
        assert_eq(r["config"]["http_method"], None, "http_method default")
