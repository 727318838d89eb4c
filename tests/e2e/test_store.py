"""The store (weir.store, type "file"): every accepted admin change is on disk before the answer,
entities come back after a clean restart and after kill -9 (no acknowledged change lost, the file
always valid JSON), an empty store is seeded from the config file and then wins over it, one
process per store, and DB-less POST /config lasts only until a reload."""

import copy
import json
import os
import signal
import stat
import threading
import time

from harness import (NO_ROUTE_MESSAGE, assert_eq, assert_gateway_error, base_config, check, echo,
                     free_port, gateway, get, make_tmpdir, route, run_weir, service,
                     start_backend, start_weir, timeout, wait_port, wait_until, write_config_file)
from test_admin_write import STORE, Admin


def store_path(w):
    return os.path.join(w.tmpdir, "store.json")


def read_store(path):
    with open(path, "rb") as f:
        data = f.read()
    try:
        return json.loads(data)
    except ValueError as exc:
        raise AssertionError("the store %s is not valid JSON (%s): %r" % (path, exc, data[:300]))


def restart(w):
    """Stops weir cleanly (exit 0) and starts it again on the same config and directory."""
    rc = w.stop()
    assert_eq(rc, 0, "exit status of the clean stop", w.stderr_text()[-2000:])
    return start_weir(w.config, tmpdir=w.tmpdir)


def _populate(api, port):
    api.ok("POST", "/services", {"name": "orders", "url": "http://127.0.0.1:%d/v1" % port,
                                 "tags": ["a"]})
    api.ok("POST", "/services/orders/routes", {"name": "orders", "paths": ["/orders"]})
    api.ok("POST", "/upstreams", {"name": "pool"})
    api.ok("POST", "/upstreams/pool/targets", {"target": "127.0.0.1:%d" % port, "weight": 10})
    api.ok("POST", "/services", {"name": "pooled", "url": "http://pool/p"})
    api.ok("POST", "/routes", {"name": "pooled", "paths": ["/pooled"], "service": "pooled"})
    api.ok("POST", "/consumers", {"username": "alice", "custom_id": "c1"})
    api.ok("PATCH", "/services/orders", {"retries": 1})
    api.ok("DELETE", "/routes/echo")


def test_every_accepted_change_is_in_the_store_before_the_answer():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        path = store_path(w)
        assert_eq(read_store(path), api.config(), "store seeded at start")
        steps = [("POST", "/services", {"name": "s", "url": "http://127.0.0.1:%d" % b.port}),
                 ("POST", "/routes", {"name": "r", "paths": ["/r"], "service": "s"}),
                 ("PATCH", "/routes/r", {"paths": ["/r2"]}),
                 ("PUT", "/consumers/bob", {"custom_id": "b"}),
                 ("POST", "/upstreams", {"name": "u"}),
                 ("POST", "/upstreams/u/targets", {"target": "127.0.0.1:1"}),
                 ("DELETE", "/upstreams/u", None),
                 ("DELETE", "/services/s?cascade=true", None),
                 ("POST", "/config", {"_format_version": "3.0", "services": [
                     service("only", b.port, routes=[route("only", ["/only"])])]})]
        for method, p, body in steps:
            r = api.call(method, p, body)
            check(r.status in (200, 201, 204), "%s %s: %s" % (method, p, r.status), r)
            # read the file before anything else reaches weir
            on_disk = read_store(path)
            assert_eq(on_disk, api.config(), "store right after %s %s" % (method, p))
        assert_eq([s["name"] for s in read_store(path)["services"]], ["only"], "final store")
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert_eq(oct(mode), oct(0o600), "store file mode")
        left = [n for n in os.listdir(w.tmpdir) if n.startswith("store.json.tmp")]
        assert_eq(left, [], "temporary files left next to the store")
        # a refused change does not touch the file
        with open(path, "rb") as f:
            before = f.read()
        assert_eq(api.post("/routes", {"name": "x", "paths": ["bad"], "service": "only"}).status,
                  400, "invalid route")
        with open(path, "rb") as f:
            assert_eq(f.read(), before, "store after a refused change")


def test_entities_survive_a_clean_restart_with_their_ids_and_timestamps():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        _populate(api, b.port)
        before = api.config()
        hash_before = api.status()["configuration_hash"]
        w2 = restart(w)
        try:
            api2 = Admin(w2)
            assert_eq(api2.config(), before, "GET /config after the restart")
            assert_eq(api2.status()["configuration_hash"], hash_before, "configuration hash")
            check("entities are kept in the store" in w2.stderr_text(),
                  "no store notice:\n" + w2.stderr_text())
            e = echo(get(w2.port, "/orders/1"))
            assert_eq((e["backend"], e["path"]), (b.addr, "/v1/1"), "created route after restart")
            e = echo(get(w2.port, "/pooled/1"))
            assert_eq((e["backend"], e["path"]), (b.addr, "/p/1"), "upstream after restart")
            assert_gateway_error(get(w2.port, "/"), 404, NO_ROUTE_MESSAGE)  # the deleted route
            # and writes go on after the restart
            api2.ok("POST", "/routes", {"name": "later", "paths": ["/later"], "service": "orders"})
            assert_eq(echo(get(w2.port, "/later/2"))["path"], "/v1/2", "route added after restart")
            after = api2.config()
        finally:
            w2.stop()
        w3 = start_weir(w.config, tmpdir=w.tmpdir)
        try:
            assert_eq(Admin(w3).config(), after, "GET /config after a second restart")
        finally:
            w3.stop()


def test_an_empty_store_is_seeded_from_the_file_then_the_store_wins():
    b = start_backend()
    try:
        cfg = base_config(b.port, store=STORE, services=[
            service("filesvc", b.port, path="/file", routes=[route("fileroute", ["/f"])])])
        w = start_weir(cfg)
        path = store_path(w)
        try:
            api = Admin(w)
            seeded = read_store(path)
            assert_eq([s["name"] for s in seeded["services"]], ["filesvc"], "seeded services")
            assert_eq(seeded, api.config(), "the seeded store is what runs")
            api.ok("POST", "/routes", {"name": "api", "paths": ["/api"], "service": "filesvc"})
            api.ok("PATCH", "/services/filesvc", {"path": "/patched"})
            before = api.config()
        finally:
            w.stop()
        # the file now says something else: the store wins, the file gives only settings
        cfg2 = copy.deepcopy(cfg)
        cfg2["services"] = [service("other", b.port, routes=[route("other", ["/other"])])]
        cfg2["weir"]["log_level"] = "debug"
        w = start_weir(cfg2, tmpdir=w.tmpdir)
        try:
            api = Admin(w)
            assert_eq(api.config(), before, "entities after restarting with another file")
            assert_gateway_error(get(w.port, "/other/x"), 404, NO_ROUTE_MESSAGE)
            assert_eq(echo(get(w.port, "/f/x"))["path"], "/patched/x", "stored route")
            assert_eq(echo(get(w.port, "/api/x"))["path"], "/patched/x", "route added by API")
            assert_eq(read_store(path), before, "store not overwritten by the file")
            # a reload (SIGHUP) reads the file's settings, not its entities
            version = api.status()["configuration_version"]
            w.send_signal(signal.SIGHUP)
            wait_until(lambda: api.status()["configuration_version"] > version, 5,
                       what="the reload")
            assert_eq(api.config(), before, "entities after SIGHUP")
            assert_gateway_error(get(w.port, "/other/x"), 404, NO_ROUTE_MESSAGE)
            assert_eq(echo(get(w.port, "/api/x"))["path"], "/patched/x", "after SIGHUP")
        finally:
            w.stop()
    finally:
        b.stop()


def test_post_config_is_persisted_across_a_restart():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        doc = {"_format_version": "3.0",
               "services": [service("posted", b.port, path="/p", routes=[route("posted", ["/p"])])],
               "consumers": [{"username": "carol"}]}
        assert_eq(api.post("/config", doc).status, 201, "POST /config")
        before = api.config()
        w2 = restart(w)
        try:
            api2 = Admin(w2)
            assert_eq(api2.config(), before, "entities after the restart")
            assert_eq(echo(get(w2.port, "/p/1"))["path"], "/p/1", "posted route")
            assert_gateway_error(get(w2.port, "/x"), 404, NO_ROUTE_MESSAGE)
        finally:
            w2.stop()


def test_an_unnamed_route_and_service_survive_a_restart():
    # POST /routes and /services accept entities without a name (name is optional)
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        s = api.ok("POST", "/services", {"url": "http://127.0.0.1:%d/anon" % b.port})
        r = api.ok("POST", "/routes", {"paths": ["/anon"], "service": s["id"]})
        assert_eq((s["name"], r["name"]), (None, None), "no names")
        before = api.config()
        rc = w.stop()
        assert_eq(rc, 0, "clean stop")
        w2 = start_weir(w.config, tmpdir=w.tmpdir, wait=False)
        try:
            ok = wait_port(w2.port, 10.0, w2.host, w2.proc)
            check(ok, "weir did not start again on its own store (exit %s):\n%s" % (
                w2.proc.poll(), w2.stderr_text()[-2000:]))
            assert_eq(Admin(w2).config(), before, "entities after the restart")
            assert_eq(echo(get(w2.port, "/anon/1"))["path"], "/anon/1", "unnamed route serves")
        finally:
            w2.stop()


@timeout(30)
def test_kill_9_during_a_burst_of_writes_loses_no_acknowledged_change():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        api.ok("DELETE", "/routes/echo")
        acked, errors, unexpected = [], [], []
        done = threading.Event()

        def burst():
            i = 0
            try:
                while i < 5000:
                    name = "k%04d" % i
                    try:
                        r = api.post("/routes", {"name": name, "paths": ["/" + name],
                                                 "service": "echo"})
                    except Exception as exc:  # weir died under this request
                        errors.append((name, exc))
                        return
                    if r.status != 201:
                        unexpected.append((name, r.status, r.body[:200]))
                        return
                    acked.append(name)
                    i += 1
            finally:
                done.set()

        t = threading.Thread(target=burst, daemon=True)
        t.start()
        wait_until(lambda: len(acked) >= 40 or done.is_set(), 10, what="40 acknowledged routes")
        w.proc.send_signal(signal.SIGKILL)
        w.proc.wait(5)
        t.join(10)
        check(not unexpected, "a POST was refused during the burst: %r" % unexpected)
        check(errors, "the burst did not notice weir dying (acked %d)" % len(acked))
        check(len(acked) >= 40, "too few routes acknowledged before the kill: %d" % len(acked))
        w.stop()
        path = store_path(w)
        stored = [r["name"] for r in read_store(path)["routes"]]
        in_flight = errors[0][0]
        missing = [n for n in acked if n not in stored]
        check(not missing, "acknowledged routes missing from the store after kill -9: %r" % missing)
        extra = set(stored) - set(acked)
        check(extra <= {in_flight}, "unexpected routes in the store: %r" % sorted(extra))

        w2 = start_weir(w.config, tmpdir=w.tmpdir)
        try:
            api2 = Admin(w2)
            names = [r["name"] for r in api2.all("/routes")]
            missing = [n for n in acked if n not in names]
            check(not missing, "acknowledged routes missing after restart: %r" % missing)
            check(set(names) - set(acked) <= {in_flight},
                  "routes nobody created: %r" % sorted(set(names) - set(acked)))
            assert_eq(names[:len(acked)], acked, "routes in creation order")
            assert_eq(echo(get(w2.port, "/%s/x" % acked[-1]))["path"], "/x",
                      "last acknowledged route serves")
            left = [n for n in os.listdir(w.tmpdir) if n.startswith("store.json.tmp")]
            assert_eq(left, [], "stale temporary files after the restart")
            # still writable
            api2.ok("POST", "/routes", {"name": "after", "paths": ["/after"], "service": "echo"})
            assert_eq(read_store(path)["routes"][-1]["name"], "after", "write after restart")
        finally:
            w2.stop()


def test_a_second_process_on_the_same_store_is_refused():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        api.ok("POST", "/consumers", {"username": "first"})
        path = store_path(w)
        with open(path, "rb") as f:
            before = f.read()
        cfg2 = copy.deepcopy(w.config)
        cfg2["weir"]["proxy_listen"] = ["127.0.0.1:%d" % free_port()]
        cfg2["weir"]["admin_listen"] = ["127.0.0.1:%d" % free_port()]
        cfg2["weir"]["access_log"] = os.path.join(make_tmpdir("second"), "access.log")
        cfg2["weir"]["store"] = {"type": "file", "path": path}
        cfg2["services"] = [service("second", b.port, routes=[route("second", ["/"])])]
        cfg2_path = write_config_file(cfg2)
        rc, out, err = run_weir(["-c", cfg2_path], timeout=10)
        check(rc != 0, "a second weir started on the same store:\n%s" % (out + err))
        check("another process holds the store" in err, "no clear message:\n%s" % (out + err))
        with open(path, "rb") as f:
            assert_eq(f.read(), before, "store after the refused second process")
        # the first one is unaffected
        api.ok("POST", "/consumers", {"username": "still-first"})
        assert_eq(read_store(path), api.config(), "store of the first process")
        cfg_after = api.config()
        assert_eq(w.stop(), 0, "first process stops cleanly")
        # with the first gone, the store is free and holds the first one's entities
        w2 = start_weir(cfg2)
        try:
            assert_eq(Admin(w2).config(), cfg_after, "the second process runs on the store")
        finally:
            w2.stop()


def test_store_path_absolute_with_missing_directories():
    base = make_tmpdir("store-abs")
    path = os.path.join(base, "a", "b", "weir.json")
    with gateway(store={"type": "file", "path": path}) as (w, b):
        api = Admin(w)
        check(os.path.isfile(path), "store not created at %s" % path)
        api.ok("POST", "/consumers", {"username": "abs"})
        assert_eq(read_store(path), api.config(), "store content")
        check(not os.path.exists(store_path(w)), "a store appeared next to the config")


def test_db_less_post_config_lasts_until_a_reload_and_a_restart():
    with gateway() as (w, b):  # no weir.store
        api = Admin(w)
        file_cfg = api.config()
        doc = {"_format_version": "3.0", "services": [
            service("mem", b.port, path="/mem", routes=[route("mem", ["/mem"])])]}
        assert_eq(api.post("/config", doc).status, 201, "POST /config")
        assert_eq(echo(get(w.port, "/mem/1"))["path"], "/mem/1", "posted route")
        assert_gateway_error(get(w.port, "/x"), 404, NO_ROUTE_MESSAGE)
        version = api.status()["configuration_version"]
        w.send_signal(signal.SIGHUP)
        wait_until(lambda: api.status()["configuration_version"] > version, 5, what="the reload")
        # entities the file gives no timestamps are stamped with its mtime, not the load time,
        # so the export is the same after any reload or restart (even one a second later)
        mtime = int(os.stat(w.config_path).st_mtime)
        assert_eq({(r["created_at"], r["updated_at"]) for r in file_cfg["routes"]},
                  {(mtime, mtime)}, "timestamps of the file's routes")
        assert_eq(api.config(), file_cfg, "entities after SIGHUP: the file's again")
        assert_eq(echo(get(w.port, "/x"))["path"], "/x", "the file's route after SIGHUP")
        assert_eq(api.post("/config", doc).status, 201, "POST /config again")
        w2 = restart(w)
        try:
            assert_eq(Admin(w2).config(), file_cfg, "entities after a restart: the file's")
            check(not any(n.startswith("store") for n in os.listdir(w.tmpdir)),
                  "a store file appeared without weir.store")
        finally:
            w2.stop()
