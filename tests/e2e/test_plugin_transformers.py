"""The bundled request-transformer and response-transformer plugins (issue 5): Kong's configs
(remove, rename, replace, add, append on headers, query and JSON/form bodies; replace.uri and
http_method; response headers and JSON keys with json_types), Kong's order of operations, bodies
re-encoded with a correct Content-Length, bodies of other types untouched, and $(...) templates and
headers Weir writes itself refused at config time. Real gateway, real backends."""

import gzip
import zlib
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


# ------------------------------------------------------------------ response-transformer

JSON_DOC = {"gone": 1, "old": {"n": [1]}, "rep": 5, "keep": "k", "app": "1", "arr": [],
            "flag": False, "nested": {"gone": 1}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        path = self.path.split("?")[0]
        headers = [("X-Got-Accept-Encoding", self.headers.get("Accept-Encoding", "-"))]
        ctype = "application/json"
        if path.endswith("/json"):
            body = json.dumps(JSON_DOC).encode()
        elif path.endswith("/problem"):
            ctype, body = "application/problem+json", b'{"gone": 1, "title": "t"}'
        elif path.endswith("/text"):
            ctype, body = "text/plain", b'{"gone": 1}'
        elif path.endswith("/array"):
            body = b'[{"gone": 1}]'
        elif path.endswith("/invalid"):
            body = b'{"gone": 1'
        elif path.endswith("/gzip"):
            body = gzip.compress(b'{"gone": 1, "kept": 2}')
            headers.append(("Content-Encoding", "gzip"))
        elif path.endswith("/deflate"):
            body = zlib.compress(b'{"gone": 1, "kept": 2}')
            headers.append(("Content-Encoding", "deflate"))
        elif path.endswith("/br"):
            body = b"not really brotli"
            headers.append(("Content-Encoding", "br"))
        elif path.endswith("/badgzip"):
            body = b"\x1f\x8bnot gzip at all"
            headers.append(("Content-Encoding", "gzip"))
        else:  # /headers
            body = b"{}"
            headers += [("X-Remove", "r"), ("X-Old", "o1"), ("X-Old", "o2"), ("X-Rep", "before"),
                        ("X-Keep", "mine"), ("X-App", "first")]
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for n, v in headers:
            self.send_header(n, v)
        self.end_headers()
        self.wfile.write(body)


class JsonBackend:
    def __enter__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


RESP_ROUTES = {
    "/rh": {"remove": {"headers": ["X-Remove", "x-absent"]},
            "rename": {"headers": ["X-Old:X-New", "X-Missing:X-Never"]},
            "replace": {"headers": ["X-Rep:replaced", "X-Not-There:nope"]},
            "add": {"headers": ["X-Add:added", "X-Keep:not-used", "X-Remove:re-added"]},
            "append": {"headers": ["X-App:second", "X-App-New:only"]}},
    "/rj": {"remove": {"json": ["gone"]},
            "rename": {"json": ["old:new", "missing:never"]},
            "replace": {"json": ["rep:R", "absent:nope", "flag:true"],
                        "json_types": ["string", "string", "boolean"]},
            "add": {"json": ["num:42", "bool:false", "str:s:1", "bad:abc", "keep:no"],
                    "json_types": ["number", "boolean", "string", "number"]},
            "append": {"json": ["app:2", "fresh:x", "arr:7"],
                       "json_types": ["string", "string", "number"]}},
}
RESP_ROUTES["/rj"]["add"]["headers"] = ["X-Json:1"]


def resp_config(port):
    cfg = base_config(port)
    cfg["services"] = [service("json", port, routes=[
        route("r%d" % i, [path], strip_path=False, plugins=[rst(conf)])
        for i, (path, conf) in enumerate(RESP_ROUTES.items())])]
    return cfg


def test_response_headers_remove_rename_replace_add_append():
    with JsonBackend() as jb, gateway(lambda *_: resp_config(jb.port), backends=0) as (w, _):
        r = get(w.port, "/rh/headers")
        assert_eq(r.status, 200, "status", r)
        assert_eq(r.header("X-Remove"), "re-added", "removed, then added back")
        assert_eq((r.header("X-Old"), r.headers_named("X-New")), (None, ["o1", "o2"]),
                  "renamed with every field")
        assert_eq(r.header("X-Never"), None, "absent header not renamed")
        assert_eq((r.header("X-Rep"), r.header("X-Not-There")), ("replaced", None), "replace")
        assert_eq((r.header("X-Add"), r.header("X-Keep")), ("added", "mine"), "add")
        assert_eq(r.headers_named("X-App"), ["first", "second"], "append")
        assert_eq(r.header("X-App-New"), "only", "append to an absent header")
        assert_eq(r.body, b"{}", "the body passes")
        # header operations only: the upstream's Accept-Encoding is not touched
        assert_eq(r.header("X-Got-Accept-Encoding"), "identity", "http.client's own value")
        r = get(w.port, "/rh/headers", headers={"Accept-Encoding": "gzip"})
        assert_eq(r.header("X-Got-Accept-Encoding"), "gzip", "not changed without json ops")


def test_response_json_operations_and_json_types():
    with JsonBackend() as jb, gateway(lambda *_: resp_config(jb.port), backends=0) as (w, _):
        r = get(w.port, "/rj/json")
        assert_eq(r.status, 200, "status", r)
        assert_eq(int(r.header("Content-Length")), len(r.body), "Content-Length of the new body")
        assert_eq(json.loads(r.body),
                  {"new": {"n": [1]}, "rep": "R", "keep": "k", "app": ["1", "2"], "arr": [7],
                   "flag": True, "nested": {"gone": 1}, "num": 42, "bool": False, "str": "s:1",
                   "fresh": "x"},
                  "JSON after the operations (bad:abc is not a number: skipped)")
        assert_eq(r.header("X-Json"), "1", "header operations of the same instance")
        r = get(w.port, "/rj/problem")
        assert_eq(json.loads(r.body)["title"], "t", "+json type")
        check("gone" not in json.loads(r.body), "+json transformed", r)
        # non-JSON types, arrays and invalid JSON pass unchanged
        for path, body in [("/rj/text", b'{"gone": 1}'), ("/rj/array", b'[{"gone": 1}]'),
                           ("/rj/invalid", b'{"gone": 1')]:
            r = get(w.port, path)
            assert_eq((r.status, r.body), (200, body), path, r)
            assert_eq(int(r.header("Content-Length")), len(body), path + " Content-Length")


def test_response_json_ops_change_gzip_and_deflate_bodies_and_keep_their_encoding():
    with JsonBackend() as jb, gateway(lambda *_: resp_config(jb.port), backends=0) as (w, _):
        r = get(w.port, "/rj/json", headers={"Accept-Encoding": "gzip, br"})
        assert_eq(r.header("X-Got-Accept-Encoding"), "gzip, br", "Accept-Encoding untouched")
        check("gone" not in json.loads(r.body), "transformed", r)
        r = get(w.port, "/rj/gzip", headers={"Accept-Encoding": "gzip"})
        assert_eq(r.header("Content-Encoding"), "gzip", "still gzip", r)
        doc = json.loads(gzip.decompress(r.body))
        check("gone" not in doc and doc.get("kept") == 2, "the gzip body was transformed: %r" % doc)
        assert_eq(int(r.header("Content-Length")), len(r.body), "its new length")
        r = get(w.port, "/rj/deflate")
        assert_eq(r.header("Content-Encoding"), "deflate", "still deflate", r)
        doc = json.loads(zlib.decompress(r.body))
        check("gone" not in doc and doc.get("kept") == 2, "the deflate body was transformed")
        r = get(w.port, "/rj/br")
        assert_eq((r.header("Content-Encoding"), r.body), ("br", b"not really brotli"),
                  "another encoding passes unchanged")
        r = get(w.port, "/rj/badgzip")
        assert_eq(r.body, b"\x1f\x8bnot gzip at all", "a broken gzip body passes unchanged")
        check("a gzip body is passed on unchanged: not gzip or zlib data" in w.stderr_text(),
              w.stderr_text())


def test_response_transformer_config_errors():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        cases = [
            ({"add": {"json": ["a:$(headers.x)"]}}, "$(...) templates are not supported"),
            ({"add": {"headers": ["X-A:$(x)"]}}, "$(...) templates are not supported"),
            ({"remove": {"headers": ["Content-Length"]}}, "names a header Weir writes itself"),
            ({"add": {"headers": ["Transfer-Encoding:chunked"]}}, "names a header Weir writes"),
            ({"add": {"json_types": ["integer"]}}, "config.add.json_types[0]"),
            ({"add": {"json": ["novalue"]}}, "must be \"name:value\""),
            ({"remove": {"querystring": []}}, "config.remove"),
        ]
        for conf, want in cases:
            r = api.post("/routes/echo/plugins", rst(conf))
            assert_eq(r.status, 400, "refused: %r" % conf, r)
            check(want in r.json()["message"], "%r: no %r in the answer" % (conf, want), r)
        kong = {"remove": {"headers": ["x-a"], "json": ["a"]},
                "rename": {"headers": ["x-b:x-c"], "json": ["b:c"]},
                "replace": {"headers": ["x-d:1"], "json": ["d:1"], "json_types": ["number"]},
                "add": {"headers": ["x-e:1"], "json": ["e:true"], "json_types": ["boolean"]},
                "append": {"headers": ["x-f:1"], "json": ["f:1"], "json_types": ["string"]}}
        stored = api.ok("POST", "/routes/echo/plugins", rst(kong))["config"]
        assert_eq(stored, kong, "a Kong entry is stored as given")
        # and it runs on the echo backend's JSON body
        r = get(w.port, "/x")
        doc = json.loads(r.body)
        assert_eq((doc.get("e"), doc.get("f"), r.header("x-e")), (True, "1", "1"), "applied", r)


# ------------------------------------------------------------------ together with url-rewrite

def test_transformers_with_url_rewrite_and_on_a_plugin_exit():
    def make(port):
        cfg = base_config(port)
        routes = cfg["services"][0]["routes"]
        routes.append(route("combo", ["/combo"], strip_path=False, plugins=[
            {"name": "url-rewrite", "config": {"rules": [
                {"match": "^/combo/moved$", "replace": "/elsewhere", "redirect": 302},
                {"match": "^/combo/(.*)$", "replace": "/v2/$1", "query": "$query&from=rw"}]}},
            rt({"rename": {"querystring": ["from:source"]}, "add": {"querystring": ["x:1"]}}),
            rst({"add": {"headers": ["X-Transformed:yes"]}, "remove": {"json": ["conn_id"]}})]))
        return cfg
    with gateway(make) as (w, b):
        r = get(w.port, "/combo/items?a=1")
        e = json.loads(r.body)  # the echo, without the key the response-transformer removed
        # request-transformer (access) sees the query url-rewrite (rewrite) produced
        assert_eq((e["path"], e["query"]), ("/v2/items", "a=1&source=rw&x=1"), "chained")
        assert_eq(r.header("X-Transformed"), "yes", "response header")
        check("conn_id" not in json.loads(r.body), "JSON key removed from the echo", r)
        # a redirect answered by url-rewrite still gets the response-transformer's headers
        r = get(w.port, "/combo/moved")
        assert_eq((r.status, r.header("Location"), r.header("X-Transformed")),
                  (302, "/elsewhere", "yes"), "exit response transformed", r)


def test_request_headers_see_what_earlier_plugins_set():
    # a plugin of higher priority (as jwt or key-auth would) sets X-Consumer-ID and clears
    # X-Secret; request-transformer's add/rename see the upstream request as it left it
    from test_plugin_runtime import handler, plugin_tree
    root = plugin_tree({"setter": handler(2000, """
function P:access(conf)
  weir.service.request.set_header("X-Consumer-ID", "c-1")
  weir.service.request.clear_header("X-Secret")
end""")})

    def make(port):
        cfg = base_config(port, plugins=["bundled", "setter"], plugin_paths=[root])
        cfg["services"][0]["routes"][0]["plugins"] = [
            {"name": "setter"},
            rt({"add": {"headers": ["X-Consumer-ID:anonymous", "X-Secret:fresh"]},
                "rename": {"headers": ["X-Consumer-ID:X-Who"]}})]
        return cfg
    with gateway(make) as (w, b):
        e = echo(get(w.port, "/", headers={"X-Secret": "from-client"}))
        assert_eq(e.header("x-who"), "c-1", "rename saw the header the earlier plugin set")
        assert_eq(e.header("x-consumer-id"), "anonymous",
                  "renamed away, then added (Kong's order: rename before add)")
        assert_eq(e.header("x-secret"), "fresh", "cleared by the earlier plugin, so added")


def test_response_body_is_buffered_only_for_instances_with_json_operations():
    def make(port):
        cfg = base_config(port, lua={"response_buffer_limit": 4096})
        cfg["services"][0]["routes"] = [
            route("hdr", ["/hdr"], plugins=[rst({"add": {"headers": ["X-Added:1"]}})]),
            route("json", ["/json"], plugins=[rst({"remove": {"json": ["secret"]}})])]
        return cfg
    with gateway(make) as (w, b):
        r = get(w.port, "/hdr?bytes=20000")
        assert_eq((r.status, len(r.body), r.header("X-Added")), (200, 20000, "1"),
                  "header operations only: the body streams, past the buffer limit")
        r = get(w.port, "/json?bytes=20000")
        assert_eq(r.status, 502, "JSON operations: the body is collected, so the limit applies")
