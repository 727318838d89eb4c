"""The access log: one JSON object per request with the documented fields."""

import os
import time

from harness import (UUID_RE, Conn, assert_eq, assert_status, base_config, check, echo, gateway,
                     route, service, wait_until)

FIELDS = ["time", "request_id", "client_ip", "method", "path", "status", "bytes_sent", "route",
          "service", "upstream_addr", "upstream_status", "latency_ms", "upstream_latency_ms"]


def names_entity(value, name):
    """An entity in the log is named by its name or by its (UUID) id."""
    return value == name or (isinstance(value, str) and bool(UUID_RE.match(value))) or \
        (isinstance(value, dict) and (value.get("name") == name or "id" in value))


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def test_access_log_has_one_json_line_per_request_with_every_field():
    def config(bp):
        return base_config(bp, services=[service("logsvc", bp, routes=[route("logroute", ["/log"])])])
    with gateway(config) as (w, b):
        responses = []
        with Conn(w.port) as c:
            responses.append(c.request("GET", "/log/a"))
            responses.append(c.request("POST", "/log/b?delay_ms=200", body=b"12345"))
            responses.append(c.request("GET", "/log/c?status=503"))
        for r in responses:
            echo(r)
        lines = wait_until(lambda: len(w.access_log_lines()) >= 3 and w.access_log_lines(), 3,
                           what="3 access log lines")
        assert_eq(len(lines), 3, "access log lines", str(lines))
        for entry, r, method, path, status in zip(lines, responses, ["GET", "POST", "GET"],
                                                  ["/log/a", "/log/b", "/log/c"], [200, 200, 503]):
            missing = [f for f in FIELDS if f not in entry]
            check(not missing, "access log entry lacks %s: %r" % (missing, entry))
            assert_eq(entry["method"], method, "method", str(entry))
            check(entry["path"] == path or str(entry["path"]).startswith(path + "?"),
                  "path %r, expected %r (with or without the query)" % (entry["path"], path))
            assert_eq(entry["status"], status, "status", str(entry))
            assert_eq(entry["upstream_status"], status, "upstream_status", str(entry))
            assert_eq(entry["request_id"], r.header("x-request-id"), "request_id vs X-Request-ID", str(entry))
            assert_eq(entry["client_ip"], "127.0.0.1", "client_ip", str(entry))
            assert_eq(entry["upstream_addr"], b.addr, "upstream_addr", str(entry))
            check(names_entity(entry["route"], "logroute"), "route %r" % entry["route"])
            check(names_entity(entry["service"], "logsvc"), "service %r" % entry["service"])
            check(is_number(entry["bytes_sent"]) and entry["bytes_sent"] >= len(r.body),
                  "bytes_sent %r for a %d-byte body" % (entry["bytes_sent"], len(r.body)))
            check(is_number(entry["latency_ms"]) and entry["latency_ms"] >= 0, "latency_ms %r" % entry["latency_ms"])
            check(is_number(entry["upstream_latency_ms"]) and 0 <= entry["upstream_latency_ms"] <= entry["latency_ms"] + 1,
                  "upstream_latency_ms %r (latency_ms %r)" % (entry["upstream_latency_ms"], entry["latency_ms"]))
            check(entry["time"] not in (None, "", 0), "time %r" % entry["time"])
        check(lines[1]["latency_ms"] >= 190 and lines[1]["upstream_latency_ms"] >= 190,
              "a request delayed 200 ms upstream logged latency_ms %r, upstream_latency_ms %r"
              % (lines[1]["latency_ms"], lines[1]["upstream_latency_ms"]))


def test_access_log_records_gateway_errors():
    with gateway(lambda bp: base_config(bp, services=[service("s", bp, routes=[route("r", ["/only"])])])) as (w, b):
        with Conn(w.port) as c:
            r = c.request("GET", "/missing")
        assert_status(r, 404)
        lines = wait_until(w.access_log_lines, 3, what="an access log line")
        e = lines[-1]
        assert_eq((e.get("method"), e.get("path"), e.get("status")), ("GET", "/missing", 404),
                  "method, path, status", str(e))
        assert_eq(e.get("request_id"), r.header("x-request-id"), "request_id", str(e))
        check(e.get("upstream_status") in (None, 0, "", "-"), "upstream_status of a 404 that never "
              "went upstream: %r" % e.get("upstream_status"))


def test_relative_access_log_path_resolves_against_the_config_file_directory():
    def config(bp):
        return base_config(bp, access_log="relative-access.log")
    with gateway(config) as (w, b):
        with Conn(w.port) as c:
            assert_status(c.request("GET", "/rel"), 200)
        path = os.path.join(os.path.dirname(w.config_path), "relative-access.log")
        wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 3,
                   what="%s to be written" % path)


def test_error_log_goes_to_the_configured_file_at_the_configured_level():
    import signal
    with gateway(lambda bp: base_config(bp, error_log="error.log", log_level="info")) as (w, b):
        path = os.path.join(w.tmpdir, "error.log")
        wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 3,
                   what="start-up messages in error.log at level info")
    with gateway(lambda bp: base_config(bp, error_log="error.log", log_level="error")) as (w, b):
        path = os.path.join(w.tmpdir, "error.log")
        with Conn(w.port) as c:
            assert_status(c.request("GET", "/"), 200)
        time.sleep(0.3)
        size = os.path.getsize(path) if os.path.exists(path) else 0
        with open(path, "rb") if size else open(os.devnull, "rb") as f:
            assert_eq(size, 0, "bytes in error.log at level error after a clean start and a request",
                      f.read().decode("utf-8", "replace"))
        w.write_config('{"_format_version": "3.0", "services": [ {')
        w.send_signal(signal.SIGHUP)
        wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 3,
                   what="the invalid reload logged at level error")
