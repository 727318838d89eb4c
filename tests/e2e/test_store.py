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
import zlib

from harness import (NO_ROUTE_MESSAGE, assert_eq, assert_gateway_error, base_config, check, echo,
                     free_port, gateway, get, make_tmpdir, route, run_weir, service,
                     start_backend, start_weir, timeout, wait_port, wait_until, write_config_file)
from test_admin_write import STORE, Admin


def store_path(w):
    return os.path.join(w.tmpdir, "store.json")


# Kinds the declarative form nests in an owner: kind -> (owner kind, the reference field).
NESTED = {"targets": ("upstreams", "upstream"), "snis": ("certificates", "certificate"),
          "jwt_secrets": ("consumers", "consumer"),
          "keyauth_credentials": ("consumers", "consumer")}


def flatten(doc):
    """A declarative doc as the store's flat model: nested kinds pulled out, in load order
    (grouped by owner, in the owners' order), each with its owner reference."""
    flat = {k: v for k, v in doc.items() if k != "_format_version"}
    for kind, (owners_kind, field) in NESTED.items():
        children = []
        for owner in flat.get(owners_kind, []):
            for c in owner.pop(kind, []):
                c = dict(c)
                c[field] = {"id": owner["id"]}
                children.append(c)
        flat[kind] = children
    return flat


def nest(flat):
    """The inverse of flatten(): the declarative doc an export gives (no empty arrays)."""
    doc = {"_format_version": "3.0"}
    for kind, items in flat.items():
        if kind not in NESTED and items:
            doc[kind] = items
    for kind, (owners_kind, field) in NESTED.items():
        by_id = {o["id"]: o for o in doc.get(owners_kind, [])}
        for c in flat.get(kind, []):
            check(c[field]["id"] in by_id, "%s %s names a missing owner" % (kind, c.get("id")))
            by_id[c[field]["id"]].setdefault(kind, []).append(
                {k: v for k, v in c.items() if k != field})
    return doc


def apply_splice(flat, sp):
    """One splice of a journal record (gateway/config/model_change.h) on a flat model."""
    kind, at, remove, insert = sp["kind"], sp["at"], sp["remove"], sp["insert"]
    items = flat.setdefault(kind, [])
    check(0 <= at <= len(items) and at + remove <= len(items), "splice out of range: %r" % sp)
    items[at:at + remove] = insert


def read_store(path):
    """The state a restart would load: the state file, with the journal's records replayed on it
    when the journal's header names this state (gateway/store/journal.h), read independently of
    weir's own code. A torn last record is dropped; any other damage fails the test."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise AssertionError("the store %s is not valid JSON (%s): %r" % (path, exc, data[:300]))
    try:
        with open(path + ".journal", "rb") as f:
            journal = f.read()
    except FileNotFoundError:
        return doc
    lines = journal.split(b"\n")
    header = b"weir-journal 1 %d %08x" % (len(data), zlib.crc32(data))
    if lines[0] != header:
        check(lines[0].startswith(b"weir-journal 1 "), "journal header %r" % lines[0][:100])
        return doc  # another state's journal: its records are in this state already
    flat = flatten(doc)
    records = lines[1:-1]  # whole lines; lines[-1] is b"" or a torn last append
    for n, line in enumerate(records):
        try:
            good = line[8:9] == b" " and int(line[:8], 16) == zlib.crc32(line[9:])
        except ValueError:
            good = False
        if not good:
            check(n == len(records) - 1 and lines[-1] == b"",
                  "damaged journal record %d before the last: %r" % (n + 1, line[:200]))
            break
        for sp in json.loads(line[9:])["splices"]:
            apply_splice(flat, sp)
    return nest(flat)


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


def _journal_lines(path):
    with open(path + ".journal", "rb") as f:
        return f.read().split(b"\n")


def _kill_9(w):
    w.proc.send_signal(signal.SIGKILL)
    w.proc.wait(5)
    w.stop()


def test_journalled_changes_come_back_after_kill_9_in_order_and_are_folded_at_start():
    """Changes between two full writes live in store.json.journal; targets and credentials of
    different owners created in turn interleave in weir's memory but load grouped by owner:
    after kill -9 and a restart every list comes back in the same order."""
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        path = store_path(w)
        for u in ("u1", "u2"):
            api.ok("POST", "/upstreams", {"name": u})
        for c in ("ann", "bob"):
            api.ok("POST", "/consumers", {"username": c})
        for i in range(6):
            api.ok("POST", "/upstreams/u%d/targets" % (1 + i % 2),
                   {"target": "127.0.0.1:%d" % (2000 + i), "weight": 10 + i})
            api.ok("POST", "/consumers/%s/key-auth" % ("ann", "bob")[i % 2], {"key": "k%d" % i})
        api.ok("DELETE", "/upstreams/u1/targets/127.0.0.1:2002")
        api.ok("PATCH", "/upstreams/u2/targets/127.0.0.1:2003", {"weight": 99})
        api.ok("DELETE", "/consumers/ann")  # and its credentials
        api.ok("POST", "/services", {"name": "pooled", "url": "http://u2/p"})
        api.ok("POST", "/routes", {"name": "pooled", "paths": ["/pooled"], "service": "pooled"})
        lines = _journal_lines(path)
        check(len(lines) > 20, "the changes were not journalled: %d lines" % len(lines))
        assert_eq(read_store(path), api.config(), "the state with the journal replayed")
        before = api.config()
        lists = {p: [t["id"] for t in api.all(p)]
                 for p in ("/upstreams/u2/targets", "/upstreams/u1/targets",
                           "/consumers/bob/key-auth")}
        assert_eq(len(lists["/upstreams/u2/targets"]), 3, "u2's targets")
        _kill_9(w)
        w2 = start_weir(w.config, tmpdir=w.tmpdir)
        try:
            api2 = Admin(w2)
            assert_eq(api2.config(), before, "GET /config after kill -9 and a restart")
            for p, ids in lists.items():
                assert_eq([t["id"] for t in api2.all(p)], ids, "%s in order" % p)
            check("journalled changes replayed" in w2.stderr_text(),
                  "no replay notice:\n" + w2.stderr_text()[-2000:])
            # folded: the state file holds everything, the journal only its header
            assert_eq(_journal_lines(path)[1:], [b""], "journal after the restart")
            with open(path, "rb") as f:
                assert_eq(json.loads(f.read()), before, "state file after the restart")
            api2.ok("POST", "/upstreams/u2/targets", {"target": "127.0.0.1:%d" % b.port})
            assert_eq(read_store(path), api2.config(), "a change after the restart")
        finally:
            w2.stop()


def test_a_torn_last_journal_record_is_dropped_and_a_damaged_one_refuses_to_start():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        path = store_path(w)
        api.ok("POST", "/consumers", {"username": "kept"})
        api.ok("POST", "/consumers", {"username": "also-kept"})
        acked = api.config()
        _kill_9(w)
        # a crash in the middle of an append leaves part of a line
        with open(path + ".journal", "ab") as f:
            f.write(b'0badc0de {"splices":[{"kind":"consumers","at":2,"rem')
        w2 = start_weir(w.config, tmpdir=w.tmpdir)
        try:
            assert_eq(Admin(w2).config(), acked, "entities after a torn last record")
            Admin(w2).ok("POST", "/consumers", {"username": "third"})
            acked = Admin(w2).config()
        finally:
            _kill_9(w2)
        # damage inside a record that others follow: never a silent loss
        lines = _journal_lines(path)
        check(len(lines) >= 3, "expected a journalled record: %r" % lines)
        with open(path + ".journal", "ab") as f:
            f.write(b"00000000 {}\n")  # a second record, so the damaged one is not the last
        data = open(path + ".journal", "rb").read()
        i = data.index(b"third")
        with open(path + ".journal", "r+b") as f:
            f.seek(i)
            f.write(b"THIRD")
        rc, out, err = run_weir(["-c", w.config_path], timeout=10)
        check(rc != 0, "weir started on a damaged journal:\n%s" % (out + err))
        check("store.json.journal: line 2 is damaged" in err, "no clear message:\n%s" % err)
