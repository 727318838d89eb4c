"""Operations: SIGHUP reloads the config file without dropping anything; SIGTERM drains."""

import copy
import signal
import socket
import threading
import time

from harness import (NO_ROUTE_MESSAGE, Conn, assert_eq, assert_gateway_error, assert_status,
                     base_config, check, echo, gateway, route, service, timeout)


def config_with_paths(bp, paths, **overrides):
    return base_config(bp, services=[service("s", bp, routes=[route("r", paths)])], **overrides)


def status_of(port, path):
    with Conn(port) as c:
        return c.request("GET", path).status


def test_sighup_with_a_changed_file_applies_to_new_requests():
    with gateway(lambda bp: config_with_paths(bp, ["/old"])) as (w, b):
        assert_eq(status_of(w.port, "/old"), 200, "status of /old before the reload")
        with Conn(w.port) as c:
            assert_gateway_error(c.request("GET", "/new"), 404, NO_ROUTE_MESSAGE)
        cfg = copy.deepcopy(w.config)
        cfg["services"][0]["routes"] = [route("r", ["/new"])]
        w.reload(cfg)
        deadline = time.monotonic() + 3
        while status_of(w.port, "/new") != 200:
            check(time.monotonic() < deadline, "the reloaded config was not in effect after 3s")
            time.sleep(0.05)
        assert_eq(status_of(w.port, "/old"), 404, "status of a route removed by the reload")
        check(w.alive(), "weir died")


def test_sighup_keeps_in_flight_requests_and_open_connections():
    with gateway(lambda bp: config_with_paths(bp, ["/"])) as (w, b):
        idle = Conn(w.port)
        assert_status(idle.request("GET", "/before"), 200)
        result = {}

        def slow():
            try:
                with Conn(w.port, timeout=10) as c:
                    result["r"] = c.request("GET", "/slow?delay_ms=1000")
            except Exception as e:
                result["error"] = e
        t = threading.Thread(target=slow, daemon=True)
        t.start()
        time.sleep(0.3)
        cfg = copy.deepcopy(w.config)
        cfg["services"][0]["routes"].append(route("extra", ["/extra"]))
        w.reload(cfg)
        t.join(10)
        check("error" not in result, "the in-flight request failed: %r" % result.get("error"))
        assert_status(result.get("r"), 200, "in-flight request across the reload")
        r = idle.request("GET", "/after")
        assert_eq(echo(r)["path"], "/after", "a request on a connection opened before the reload")
        idle.close()


def test_sighup_with_an_invalid_file_keeps_the_running_config():
    with gateway(lambda bp: config_with_paths(bp, ["/kept"])) as (w, b):
        good = copy.deepcopy(w.config)
        for bad in ('{"_format_version": "3.0", "services": [ {', 
                    '{"_format_version": "3.0", "services": [{"name": "x", "url": 12, "bogus": true}]}'):
            before = len(w.stderr_text())
            w.write_config(bad)
            w.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            check(w.alive(), "weir exited on SIGHUP with an invalid file")
            assert_eq(status_of(w.port, "/kept"), 200, "a route of the running config")
            deadline = time.monotonic() + 2
            while len(w.stderr_text()) <= before:
                check(time.monotonic() < deadline, "nothing was logged about the invalid file")
                time.sleep(0.05)
        w.write_config(good)


@timeout(45)
def test_sighup_under_load_fails_no_request():
    def config(bp):
        return config_with_paths(bp, ["/"], workers=2)
    with gateway(config) as (w, b):
        stop = threading.Event()
        lock = threading.Lock()
        stats = {"ok": 0, "failed": []}

        def record(ok, what=None):
            with lock:
                if ok:
                    stats["ok"] += 1
                else:
                    stats["failed"].append(what)

        def keepalive_client(n):
            c = None
            try:
                c = Conn(w.port, timeout=5)
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        if i % 3 == 0:
                            r = c.request("POST", "/ka%d" % n, body=b"x" * 1000)
                        else:
                            r = c.request("GET", "/ka%d?i=%d" % (n, i))
                        record(r.status == 200, "status %s" % r.status)
                    except Exception as e:
                        record(False, "keep-alive client: %r" % e)
                        c.close()
                        c = Conn(w.port, timeout=5)
            finally:
                if c:
                    c.close()

        def fresh_client(n):
            while not stop.is_set():
                try:
                    with Conn(w.port, timeout=5) as c:
                        r = c.request("GET", "/fresh%d" % n, headers=[("Connection", "close")])
                    record(r.status == 200, "status %s" % r.status)
                except Exception as e:
                    record(False, "new-connection client: %r" % e)

        threads = [threading.Thread(target=keepalive_client, args=(i,), daemon=True) for i in range(2)]
        threads += [threading.Thread(target=fresh_client, args=(i,), daemon=True) for i in range(2)]
        for t in threads:
            t.start()
        base = copy.deepcopy(w.config)
        for i in range(5):
            time.sleep(0.4)
            cfg = copy.deepcopy(base)
            cfg["services"][0]["routes"].append(route("extra%d" % i, ["/extra%d" % i]))
            w.reload(cfg)
        time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(10)
        check(w.alive(), "weir died during the reloads")
        check(not stats["failed"], "%d of %d requests failed during 5 reloads: %r" % (
            len(stats["failed"]), len(stats["failed"]) + stats["ok"], stats["failed"][:10]))
        check(stats["ok"] > 50, "only %d requests completed in 2s" % stats["ok"])
        assert_eq(status_of(w.port, "/extra4"), 200, "status of the route added by the last reload")


def connection_refused(port):
    """True when a connection to port is refused; else what happened instead (for the report)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
    except ConnectionRefusedError:
        return True
    except OSError as e:
        return "connect failed: %r" % e
    s.close()
    return "accepted"


def test_sigterm_lets_the_in_flight_request_finish_then_exits_0():
    with gateway(lambda bp: config_with_paths(bp, ["/"], limits={"shutdown_timeout": 10000})) as (w, b):
        result = {}

        def slow():
            try:
                with Conn(w.port, timeout=10) as c:
                    result["r"] = c.request("GET", "/slow?delay_ms=1500")
            except Exception as e:
                result["error"] = e
        t = threading.Thread(target=slow, daemon=True)
        t.start()
        time.sleep(0.3)
        w.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        refused, attempts = False, []
        while time.monotonic() - sent < 1.0:
            outcome = connection_refused(w.port)
            if outcome is True:
                refused = True
                break
            attempts.append("%.3fs %s" % (time.monotonic() - sent, outcome))
            time.sleep(0.05)
        check(refused, "new connections were still accepted 1s after SIGTERM: %s" % attempts)
        t.join(10)
        check("error" not in result, "the in-flight request failed: %r" % result.get("error"))
        assert_status(result.get("r"), 200, "the in-flight request")
        assert_eq(echo(result["r"])["path"], "/slow", "path")
        rc = w.wait(5)
        assert_eq(rc, 0, "weir's exit status after draining")


def test_sigterm_exits_0_within_shutdown_timeout_even_with_a_request_still_running():
    with gateway(lambda bp: config_with_paths(bp, ["/"], limits={"shutdown_timeout": 1000})) as (w, b):
        c = Conn(w.port, timeout=15)
        c.send(b"GET /?delay_ms=10000 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        start = time.monotonic()
        w.send_signal(signal.SIGTERM)
        rc = w.wait(5)
        took = time.monotonic() - start
        c.close()
        check(rc is not None, "weir still running 5s after SIGTERM with shutdown_timeout 1s")
        assert_eq(rc, 0, "exit status")
        check(took >= 0.5, "weir exited after %.2fs, without waiting for the in-flight request" % took)


def test_sigterm_with_only_idle_connections_exits_promptly():
    with gateway(lambda bp: config_with_paths(bp, ["/"], limits={"shutdown_timeout": 8000})) as (w, b):
        idle = Conn(w.port)
        assert_status(idle.request("GET", "/"), 200)
        start = time.monotonic()
        w.send_signal(signal.SIGTERM)
        rc = w.wait(5)
        took = time.monotonic() - start
        idle.close()
        check(rc is not None and took < 2.0, "weir took %s to exit with only an idle keep-alive "
              "connection open (no request in flight)" % ("%.2fs" % took if rc is not None else ">5s"))
        assert_eq(rc, 0, "exit status")
