"""The command line: -t (validate), -v, -h, start-up errors, the embedded default config."""

import json
import os
import re
import socket
import subprocess

from harness import (start_weir, write_config_file, REPO, Skip, assert_eq, base_config, check, free_port, make_tmpdir, route,
                     run_weir, service, wait_port, weir_bin)


def write(cfg, name="config.json"):
    return write_config_file(cfg, name)


def field_error(text, dotted):
    """True if `text` has a line reporting "<dotted path>: <message>". Indices may be written
    [0] or .0 ("services[0].url" / "services.0.url")."""
    pattern = re.escape(dotted).replace(r"\[", "(?:\\[|\\.)").replace(r"\]", "\\]?")
    return re.search(r"(^|[\s'\"`])" + pattern + r":\s*\S", text, re.M) is not None


def good_config():
    return base_config(free_port(), services=[
        service("orders", free_port(), path="/v1", connect_timeout=2000, read_timeout=10000,
                write_timeout=10000, retries=2,
                routes=[route("orders", ["/api/orders"], methods=["GET", "POST"],
                              hosts=["api.example.com", "*.example.org"], strip_path=True,
                              preserve_host=False)]),
        service("users", url="http://users-pool", routes=[route("users", ["~/users/\\d+"], regex_priority=5)]),
    ], upstreams=[{"name": "users-pool", "targets": [{"target": "127.0.0.1:9002", "weight": 100},
                                                      {"target": "127.0.0.1:9003", "weight": 50}]}],
        trusted_ips=["127.0.0.1/32"], limits={"max_header_bytes": 32768, "max_headers": 100,
                                              "max_body_bytes": 10485760, "header_timeout": 10000,
                                              "keepalive_timeout": 60000, "max_connections": 10000,
                                              "shutdown_timeout": 10000})


def test_check_mode_accepts_a_good_config():
    rc, out, err = run_weir(["-t", "-c", write(good_config())])
    assert_eq(rc, 0, "exit status of weir -t on a good file", out + err)


def test_check_mode_accepts_the_kong_shaped_example_of_the_issue():
    cfg = {"_format_version": "3.0",
           "weir": {"proxy_listen": ["127.0.0.1:8000"], "admin_listen": ["127.0.0.1:8001"], "workers": 2,
                    "trusted_ips": ["127.0.0.1/32"], "access_log": "logs/access.log", "error_log": "-",
                    "log_level": "info",
                    "limits": {"max_header_bytes": 32768, "max_headers": 100, "max_body_bytes": 10485760,
                               "header_timeout": 10000, "keepalive_timeout": 60000,
                               "max_connections": 10000, "shutdown_timeout": 10000}},
           "services": [{"name": "orders", "url": "http://127.0.0.1:9001/v1", "connect_timeout": 2000,
                         "read_timeout": 10000, "write_timeout": 10000, "retries": 2,
                         "routes": [{"name": "orders", "paths": ["/api/orders"], "methods": ["GET", "POST"],
                                     "hosts": ["api.example.com", "*.example.org"], "strip_path": True,
                                     "preserve_host": False}]}],
           "upstreams": [{"name": "users-pool", "targets": [{"target": "127.0.0.1:9002", "weight": 100},
                                                             {"target": "127.0.0.1:9003", "weight": 50}]}]}
    rc, out, err = run_weir(["-t", "-c", write(cfg)])
    assert_eq(rc, 0, "exit status of weir -t on the issue's example", out + err)


def test_check_mode_lists_every_problem_with_its_field_path():
    cfg = good_config()
    cfg["bogus_top"] = 1
    cfg["weir"]["workers"] = "two"
    cfg["weir"]["limits"]["max_headers"] = "many"
    cfg["services"][0]["bogus_field"] = True
    cfg["services"][0]["retries"] = "often"
    cfg["services"][0]["routes"][0]["strip_path"] = "yes"
    cfg["upstreams"][0]["targets"][1]["weight"] = "heavy"
    rc, out, err = run_weir(["-t", "-c", write(cfg)])
    text = out + err
    assert_eq(rc, 1, "exit status of weir -t on a bad file", text)
    for path in ("bogus_top", "weir.workers", "weir.limits.max_headers", "services[0].bogus_field",
                 "services[0].retries", "services[0].routes[0].strip_path",
                 "upstreams[0].targets[1].weight"):
        check(field_error(text, path), "no \"%s: message\" line in weir -t output:\n%s" % (path, text))


def test_check_mode_requires_format_version_3():
    for value in (None, "1.1", 3):
        cfg = good_config()
        if value is None:
            del cfg["_format_version"]
        else:
            cfg["_format_version"] = value
        rc, out, err = run_weir(["-t", "-c", write(cfg)])
        assert_eq(rc, 1, "exit status with _format_version %r" % value, out + err)
        check("_format_version" in out + err, "the error does not name _format_version:\n%s" % (out + err))


def test_check_mode_rejects_kong_fields_weir_does_not_support():
    cfg = good_config()
    cfg["upstreams"][0]["client_certificate"] = {"id": "8d2b0f4e-4f6a-4e0b-9d6b-1d1f0f3c2a11"}
    rc, out, err = run_weir(["-t", "-c", write(cfg)])
    assert_eq(rc, 1, "exit status", out + err)
    check(field_error(out + err, "upstreams[0].client_certificate"),
          "the unsupported field is not named:\n%s" % (out + err))


def test_check_mode_rejects_a_service_naming_unknown_tls_entities():
    cfg = good_config()
    cfg["services"][0]["client_certificate"] = {"id": "8d2b0f4e-4f6a-4e0b-9d6b-1d1f0f3c2a11"}
    cfg["services"][0]["ca_certificates"] = ["9d2b0f4e-4f6a-4e0b-9d6b-1d1f0f3c2a11"]
    rc, out, err = run_weir(["-t", "-c", write(cfg)])
    assert_eq(rc, 1, "exit status", out + err)
    for field in ("client_certificate", "ca_certificates"):
        check(field_error(out + err, "services[0]." + field),
              "the dangling %s is not named:\n%s" % (field, out + err))


def test_check_mode_rejects_bad_values():
    cases = [("weir.proxy_listen[0]", lambda c: c["weir"].__setitem__("proxy_listen", ["nonsense"])),
             ("weir.trusted_ips[0]", lambda c: c["weir"].__setitem__("trusted_ips", ["300.1.1.1/40"])),
             ("services[0].routes[0].paths[0]",
              lambda c: c["services"][0]["routes"][0].__setitem__("paths", ["~/bad(regex"])),
             ("services[0].url", lambda c: c["services"][0].__setitem__("url", "ftp://x")),
             ("routes[0].service", lambda c: c.__setitem__("routes", [{"name": "t", "paths": ["/t"],
                                                                       "service": "no-such-service"}]))]
    for path, mutate in cases:
        cfg = good_config()
        mutate(cfg)
        rc, out, err = run_weir(["-t", "-c", write(cfg)])
        assert_eq(rc, 1, "exit status for a bad %s" % path, out + err)
        # an element may be reported as the element ("x.paths[0]") or as its list ("x.paths")
        whole = re.sub(r"\[\d+\]$", "", path)
        check(field_error(out + err, path) or field_error(out + err, whole),
              "no \"%s: message\" line:\n%s" % (path, out + err))


def test_check_mode_rejects_invalid_json():
    rc, out, err = run_weir(["-t", "-c", write('{"_format_version": "3.0",')])
    assert_eq(rc, 1, "exit status", out + err)
    check((out + err).strip(), "no message for invalid JSON")


def test_version_flag():
    with open(os.path.join(REPO, "configure.ac")) as f:
        version = re.search(r"AC_INIT\(\[weir\],\s*\[([^\]]+)\]", f.read()).group(1)
    rc, out, err = run_weir(["-v"])
    assert_eq(rc, 0, "exit status of weir -v", out + err)
    check(version in out + err, "weir -v does not print %s:\n%s" % (version, out + err))


def test_help_flag():
    rc, out, err = run_weir(["-h"])
    text = out + err
    assert_eq(rc, 0, "exit status of weir -h", text)
    for opt in ("-c", "-t", "-v", "-h"):
        check(opt in text, "weir -h does not mention %s:\n%s" % (opt, text))


def error_lines(text):
    return [l for l in text.splitlines() if l.strip()]


def test_port_in_use_gives_one_clear_line_and_a_non_zero_exit():
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        cfg = base_config(free_port(), proxy_listen=["127.0.0.1:%d" % port])
        try:
            rc, out, err = run_weir(["-c", write(cfg)], timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError("weir kept running although its port %d is in use" % port)
    finally:
        blocker.close()
    text = out + err
    check(rc != 0, "weir exited 0 although its port is in use:\n%s" % text)
    mentions = [l for l in error_lines(text) if str(port) in l]
    check(len(mentions) == 1, "expected one line naming port %d, got:\n%s" % (port, text))
    check(re.search(r"in use|EADDRINUSE", mentions[0], re.I), "the line does not say the address is "
          "in use: %r" % mentions[0])


def test_unreadable_config_file_gives_one_clear_line_and_a_non_zero_exit():
    missing = os.path.join(make_tmpdir("cli"), "does-not-exist.json")
    for args in (["-c", missing], ["-t", "-c", missing]):
        rc, out, err = run_weir(args, timeout=10)
        text = out + err
        check(rc != 0, "weir %s exited 0:\n%s" % (" ".join(args), text))
        lines = [l for l in error_lines(text) if "does-not-exist.json" in l]
        check(len(lines) == 1, "expected one line naming the file, got:\n%s" % text)
    directory = make_tmpdir("cli")
    rc, out, err = run_weir(["-c", directory], timeout=10)
    check(rc != 0, "weir -c <a directory> exited 0:\n%s" % (out + err))


def test_invalid_config_at_start_exits_non_zero_naming_the_field():
    cfg = base_config(free_port())
    cfg["services"][0]["retries"] = "often"
    rc, out, err = run_weir(["-c", write(cfg)], timeout=10)
    check(rc != 0, "weir started on an invalid file")
    check(field_error(out + err, "services[0].retries"), "the field is not named:\n%s" % (out + err))


def test_without_c_runs_the_embedded_default_on_port_8000():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 8000))
    except OSError:
        raise Skip("port 8000 is busy here")
    finally:
        s.close()
    tmp = make_tmpdir("default")
    with open(os.path.join(tmp, "weir.stderr"), "wb") as errf:
        p = subprocess.Popen([weir_bin()], cwd=tmp, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
        try:
            check(wait_port(8000, 10, proc=p), "weir with no arguments did not listen on 127.0.0.1:8000")
            s = socket.create_connection(("127.0.0.1", 8000), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            s.settimeout(5)
            try:
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    data += d
            finally:
                s.close()
            check(re.match(rb"HTTP/1\.1 \d{3} ", data), "no HTTP response on port 8000: %r" % data[:200])
        finally:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_check_mode_accepts_a_minimal_config_everything_else_defaulted():
    rc, out, err = run_weir(["-t", "-c", write({"_format_version": "3.0"})])
    assert_eq(rc, 0, "exit status for {\"_format_version\": \"3.0\"}", out + err)
    cfg = {"_format_version": "3.0", "services": [{"url": "http://127.0.0.1:9", "routes": [{"paths": ["/"]}]}]}
    rc, out, err = run_weir(["-t", "-c", write(cfg)])
    assert_eq(rc, 0, "exit status for a service and route without names", out + err)


def test_check_mode_accepts_kong_entity_fields():
    cfg = {"_format_version": "3.0",
           "services": [{"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "name": "kong-style",
                         "protocol": "http", "host": "127.0.0.1", "port": 9001, "path": "/v1",
                         "tags": ["team-a"], "enabled": True,
                         "routes": [{"id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "name": "r1",
                                     "paths": ["/r1"], "protocols": ["http", "https"],
                                     "tags": ["x"], "regex_priority": 0, "strip_path": True,
                                     "preserve_host": False, "methods": ["GET"],
                                     "headers": {"x-version": ["v1"]}}]}],
           "upstreams": [{"name": "pool", "tags": ["t"], "targets": [{"target": "127.0.0.1:9002"}]}]}
    rc, out, err = run_weir(["-t", "-c", write(cfg)])
    assert_eq(rc, 0, "exit status for Kong-shaped entities", out + err)


def test_a_second_weir_on_the_same_port_refuses_to_start():
    # Weir's own listeners use SO_REUSEPORT, which would let a second gateway silently share the
    # port (and half the traffic); start-up must refuse it like any other port in use.
    port = free_port()
    cfg = base_config(free_port(), proxy_listen=["127.0.0.1:%d" % port])
    first = start_weir(cfg)
    try:
        rc, out, err = run_weir(["-c", write(cfg)], timeout=10)
        text = out + err
        check(rc != 0, "a second weir on port %d exited %s:\n%s" % (port, rc, text))
        mentions = [l for l in error_lines(text) if str(port) in l]
        check(len(mentions) == 1 and re.search(r"in use", mentions[0], re.I),
              "expected one line saying port %d is in use, got:\n%s" % (port, text))
        check(first.alive(), "the first weir died")
    finally:
        first.stop()


def _data_directory(text):
    m = re.search(r"^data directory: (.*)$", text, re.M)
    check(m, "weir -v does not name its data directory:\n%s" % text)
    return m.group(1).strip()


def test_uninstalled_binary_finds_its_data_in_the_source_tree():
    rc, out, err = run_weir(["-v"])
    assert_eq(rc, 0, "exit status of weir -v", out + err)
    assert_eq(os.path.realpath(_data_directory(out)), os.path.realpath(REPO), "data directory")


def test_installed_binary_finds_its_data_under_the_prefix():
    builddir = os.path.dirname(os.path.dirname(os.path.abspath(weir_bin())))
    if not os.path.exists(os.path.join(builddir, "Makefile")):
        raise Skip("no Makefile beside %s" % weir_bin())
    dest = make_tmpdir("install")
    p = subprocess.run(["make", "-s", "install", "DESTDIR=" + dest], cwd=builddir,
                       capture_output=True, timeout=120)
    assert_eq(p.returncode, 0, "make install", p.stderr.decode("utf-8", "replace"))
    bins = [os.path.join(r, f) for r, _, fs in os.walk(dest) for f in fs if f == "weir"]
    check(len(bins) == 1, "make install did not install one weir binary: %s" % bins)
    p = subprocess.run([bins[0], "-v"], capture_output=True, timeout=10)
    data = _data_directory(p.stdout.decode())
    check(data.endswith("/share/weir"), "installed data directory is %r" % data)
    for sub in ("schemas", "plugins", "lua"):
        check(os.path.isdir(dest + data + "/" + sub), "%s/ is not installed under %s" % (sub, data))
