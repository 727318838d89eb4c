"""The bundled url-rewrite plugin (issue 5): ordered PCRE2 rules on the upstream path as the route
delivered it (after strip_path and the service path), captures ($1..$9, ${N}, ${name}), $host,
$query and $$ in templates, query keep/drop/template, last and chaining, redirects without an
upstream call, and invalid regexes and templates refused at config time (admin API and config
file) with PCRE2's message and offset. Real gateway, real echo backend."""

import copy

from harness import (assert_eq, base_config, check, echo, gateway, get, route, run_weir,
                     service, write_config_file)
from test_admin_write import STORE, Admin


def rw(*rules):
    return {"name": "url-rewrite", "config": {"rules": list(rules)}}


def make(port):
    """Routes, each with its own url-rewrite instance:
    /basic      numbered captures, query kept
    /pub        strip_path route of service "api" whose path is /api (the rules see /api/...)
    /chain      non-last rules chain, a last rule ends the list
    /q          query drop / template / $query / $host / $$ / encoding
    /redir      redirects"""
    cfg = base_config(port)
    echo_routes = cfg["services"][0]["routes"]
    echo_routes.append(route("basic", ["/basic"], strip_path=False, plugins=[rw(
        {"match": r"^/basic/users/(\d+)/(\w+)$", "replace": "/v2/u/$1/${2}/$0"},
        {"match": r"^/basic/(?i)CASE/(?<name>[a-z]+)(/opt)?$", "replace": "/named/${name}($2)"},
    )]))
    echo_routes.append(route("chain", ["/chain"], strip_path=False, plugins=[rw(
        {"match": r"^/chain/a/(.*)$", "replace": "/chain/b/$1", "last": False,
         "query": "$query&step=a"},
        {"match": r"^/chain/b/(.*)$", "replace": "/chain/c/$1", "last": False},
        {"match": r"^/chain/c/stop$", "replace": "/stopped"},
        {"match": r"^/chain/c/(.*)$", "replace": "/done/$1"},
        {"match": r"^/done/(.*)$", "replace": "/never/$1"},
        {"match": r"^/chain/first/", "replace": "/first"},
        {"match": r"^/chain/first/", "replace": "/second"},
    )]))
    echo_routes.append(route("q", ["/q"], strip_path=False, plugins=[rw(
        {"match": r"^/q/drop$", "replace": "/dropped", "query": "drop"},
        {"match": r"^/q/keep$", "replace": "/kept", "query": "keep"},
        {"match": r"^/q/tmpl/(\d+)$", "replace": "/t", "query": "id=$1&$query"},
        {"match": r"^/q/host$", "replace": "/h/$host", "query": "h=$host"},
        {"match": r"^/q/dollar/(\d+)$", "replace": "/price/$$1/$1$$", "query": "cost=$$$1"},
        {"match": r"^/q/enc/(.*)$", "replace": "/e", "query": "v=$1 x#y"},
        {"match": r"^/q/empty$", "replace": "/empty", "query": "$2"},
        {"match": r"^/q/noslash/(\w+)$", "replace": "$1"},
    )]))
    echo_routes.append(route("redir", ["/redir"], strip_path=False, plugins=[rw(
        {"match": r"^/redir/old/(.*)$", "replace": "/new/$1", "redirect": 301},
        {"match": r"^/redir/temp$", "replace": "/t", "redirect": 302, "query": "drop"},
        {"match": r"^/redir/307$", "replace": "/t307", "redirect": 307, "query": "a=$host"},
        {"match": r"^/redir/chain/(.*)$", "replace": "/redir/moved/$1", "last": False},
        {"match": r"^/redir/moved/(.*)$", "replace": "/final/$1 x", "redirect": 308},
    )]))
    cfg["services"].append(service("api", port, path="/api", routes=[
        route("pub", ["/pub"], strip_path=True, plugins=[rw(
            {"match": r"^/api/items/(?<id>\d+)$", "replace": "/api/v2/items/${id}"},
            {"match": r"^/pub/", "replace": "/never"},
        )]),
        route("keep", ["/nostrip"], strip_path=False),
    ]))
    return cfg


def seen(port, path, **kw):
    r = get(port, path, **kw)
    assert_eq(r.status, 200, "status of " + path, r)
    e = echo(r)
    return e["path"], e["query"]


# What the upstream is asked for: (group, what, request path, request headers or None,
# (upstream path, upstream query)).
REWRITES = [
    # numbered captures, ${N} and $0; the query is kept by default
    ("captures", "numbered captures", "/basic/users/42/profile?x=1&y=2", None,
     ("/v2/u/42/profile//basic/users/42/profile", "x=1&y=2")),
    # named capture, inline caseless, an optional group that did not take part is empty
    ("captures", "named, unset group", "/basic/case/bob", None, ("/named/bob()", "")),
    ("captures", "caseless, set group", "/basic/CASE/bob/opt", None, ("/named/bob(/opt)", "")),
    ("captures", "no rule matches: the request is untouched", "/basic/other?z=1", None,
     ("/basic/other", "z=1")),
    # strip_path and the service path apply before the rules: they see /api/items/7
    ("route", "after strip_path", "/pub/items/7?k=v", None, ("/api/v2/items/7", "k=v")),
    ("route", "route result when nothing matches", "/pub/other", None, ("/api/other", "")),
    ("route", "the plugin is scoped to its routes: the service's other route is untouched",
     "/nostrip/items/7", None, ("/api/nostrip/items/7", "")),
    # a -> b (non-last, adds step=a), b -> c (non-last), c/x -> /done/x (last): /never unused
    ("last and chaining", "chained to a last rule", "/chain/a/x?q=1", None,
     ("/done/x", "q=1&step=a")),
    ("last and chaining", "the first last rule wins", "/chain/a/stop", None,
     ("/stopped", "&step=a")),
    ("last and chaining", "entering mid-chain", "/chain/b/y", None, ("/done/y", "")),
    # two rules match; the first (last by default) ends the list
    ("last and chaining", "first matching rule with last", "/chain/first/z", None,
     ("/first", "")),
    ("query", "drop", "/q/drop?a=1", None, ("/dropped", "")),
    ("query", "keep", "/q/keep?a=1&a=2", None, ("/kept", "a=1&a=2")),
    ("query", "template with $1 and $query", "/q/tmpl/9?a=1", None, ("/t", "id=9&a=1")),
    ("query", "$query empty", "/q/tmpl/9", None, ("/t", "id=9&")),
    ("query", "$host: the client's host, lower case, without the port", "/q/host",
     {"Host": "Shop.Example.com:8080"}, ("/h/shop.example.com", "h=shop.example.com")),
    ("query", "$$ is a literal $", "/q/dollar/5", None, ("/price/$1/5$", "cost=$5")),
    # bytes a query cannot carry are percent-encoded
    ("query", "encoded query", "/q/enc/%C3%A9", None, ("/e", "v=%C3%A9%20x%23y")),
    # a template that expands to nothing sends no query
    ("query", "empty template", "/q/empty?a=1", None, ("/empty", "")),
    # a result without a leading / gets one
    ("query", "leading slash", "/q/noslash/abc", None, ("/abc", "")),
]


def test_rules_rewrite_path_and_query_with_captures_chaining_and_templates():
    with gateway(make) as (w, b):
        for group, what, path, headers, want in REWRITES:
            assert_eq(seen(w.port, path, headers=headers), want,
                      "%s, %s: GET %s" % (group, what, path))


# Redirects: (what, request path, request headers or None, status, Location).
REDIRECTS = [
    ("301, Location keeps the query", "/redir/old/a/b?x=1", None, 301, "/new/a/b?x=1"),
    ("302 with the query dropped", "/redir/temp?x=1", None, 302, "/t"),
    ("307 template", "/redir/307?x=1", {"Host": "h.example"}, 307, "/t307?a=h.example"),
    # a non-last rule feeds a redirect rule; the Location path is percent-encoded
    ("308 chained", "/redir/chain/z?k=1", None, 308, "/final/z%20x?k=1"),
]


def test_redirects_answer_with_location_and_no_upstream_call():
    with gateway(make) as (w, b):
        p = w.port
        before = b.stats()["requests"]
        for what, path, headers, status, location in REDIRECTS:
            r = get(p, path, headers=headers)
            assert_eq((r.status, r.header("Location")), (status, location),
                      "%s: GET %s" % (what, path), r)
        assert_eq(b.stats()["requests"], before, "the upstream was never called")
        # a path no redirect rule matches goes upstream unchanged
        assert_eq(seen(p, "/redir/else"), ("/redir/else", ""), "no redirect")


BAD_REGEX = {"match": "^/(a", "replace": "/x"}


def test_invalid_regexes_and_templates_are_refused_by_the_admin_api():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        r = api.post("/routes/echo/plugins", rw(BAD_REGEX))
        assert_eq(r.status, 400, "bad regex", r)
        msg = r.body.decode()
        check("config.rules[0].match" in msg and "missing closing parenthesis at offset 4" in msg,
              "the field, PCRE2's message and offset", r)
        r = api.post("/routes/echo/plugins", rw({"match": "^/a", "replace": "/$foo"}))
        assert_eq(r.status, 400, "bad replace template", r)
        check("config.rules[0].replace" in r.body.decode() and "$$ for a literal $" in
              r.body.decode(), "template message", r)
        r = api.post("/routes/echo/plugins", rw({"match": "^/a", "replace": "/", "query": "${x"}))
        assert_eq(r.status, 400, "bad query template", r)
        for bad_rule, what in [({"match": "^/a", "replace": "/", "redirect": 303}, "303"),
                               ({"match": "^/a"}, "no replace"),
                               ({"match": "^/a", "replace": "/", "extra": 1}, "unknown field"),
                               ({"match": "^/a", "replace": "/", "last": "yes"}, "last type")]:
            r = api.post("/routes/echo/plugins", rw(bad_rule))
            assert_eq(r.status, 400, what, r)
        r = api.post("/routes/echo/plugins", {"name": "url-rewrite", "config": {"rules": []}})
        assert_eq(r.status, 400, "no rules", r)
        # the stored config shows the defaults
        ok = api.ok("POST", "/routes/echo/plugins", rw({"match": "^/a/(.*)", "replace": "/b/$1"}))
        assert_eq(ok["config"]["rules"][0],
                  {"match": "^/a/(.*)", "replace": "/b/$1", "query": "keep", "redirect": None,
                   "last": True}, "defaults")
        assert_eq(seen(w.port, "/a/x"), ("/b/x", ""), "added through the admin API")


def test_invalid_regexes_are_refused_in_the_config_file():
    cfg = base_config(1)
    cfg["services"][0]["routes"][0]["plugins"] = [rw({"match": "^/ok", "replace": "/"})]
    rc, out, err = run_weir(["-t", "-c", write_config_file(cfg)])
    assert_eq(rc, 0, "a good file passes weir -t", out + err)
    bad = copy.deepcopy(cfg)
    bad["services"][0]["routes"][0]["plugins"][0]["config"]["rules"].append(
        {"match": "[z-a]", "replace": "/"})
    rc, out, err = run_weir(["-t", "-c", write_config_file(bad)])
    check(rc != 0, "weir -t accepted a bad regex: " + out + err)
    check("rules[1].match" in err and "range out of order in character class at offset 3" in err,
          "PCRE2's message and offset: " + err)
