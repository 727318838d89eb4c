#!/usr/bin/env python3
"""TLS passthrough benchmark: Weir against nginx (stream, ssl_preread) and HAProxy (mode tcp,
req.ssl_sni), each with one worker, in front of one TLS backend, in one run.

    wrk ──TLS, SNI "localhost"──► proxy (reads the SNI, relays bytes) ──► backend nginx (TLS)

For each proxy, two loads from wrk over loopback (8 s each after a 2 s warm-up):
  * keep-alive: 50 connections sending requests over long-lived TLS sessions (relaying cost);
  * new connections: every request on a new connection ("Connection: close"), so each one is a
    full TLS handshake through the proxy (accept, ClientHello read, upstream connect, relay).
It prints requests/s and the proxy's CPU time per request (utime+stime from /proc), and Weir's
figures as ratios to nginx's and HAProxy's measured in the same run.

Usage: python3 bench/passthrough.py [--duration S] [--weir build/gateway/weir]
Needs nginx (with the stream module), haproxy, wrk and openssl on PATH."""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BACKEND, NGINX, HAPROXY, WEIR, WEIR_ADMIN, WEIR_HTTP = 18280, 18281, 18282, 18283, 18284, 18285


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("port %d did not open" % port)


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def tree(pid):
    out = [pid]
    try:
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        for k in kids.split():
            out += tree(int(k))
    except OSError:
        pass
    return out


def wrk(port, seconds, close):
    args = ["wrk", "-t1", "-c50" if not close else "-c20", "-d%ds" % seconds]
    if close:
        args += ["-H", "Connection: close"]
    args.append("https://localhost:%d/" % port)
    out = subprocess.run(args, capture_output=True, text=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (float(m.group(1)) if m else 0.0, int(total.group(1)) if total else 0,
            (errors.group(1) if errors else "") + (" non-2xx %s" % non2xx.group(1) if non2xx else ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--weir", default=os.path.join(os.path.dirname(__file__), "..", "build",
                                                   "gateway", "weir"))
    args = ap.parse_args()
    for cmd in ("nginx", "haproxy", "wrk", "openssl"):
        if not shutil.which(cmd):
            raise SystemExit("passthrough.py: %s not found" % cmd)
    tmp = tempfile.mkdtemp(prefix="weir-pt-bench.")
    os.chmod(tmp, 0o755)
    procs = []

    def start(name, argv):
        p = subprocess.Popen(argv, stdout=open(os.path.join(tmp, name + ".out"), "w"),
                             stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", tmp + "/k.pem", "-out",
                        tmp + "/c.pem", "-days", "1", "-subj", "/CN=localhost"],
                       check=True, capture_output=True)
        modules = "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n"
        common = "daemon off; master_process on; worker_processes 1; error_log %s/%%s.err;\n" \
                 "pid %s/%%s.pid; events { worker_connections 4096; }\n" % (tmp, tmp)
        with open(tmp + "/backend.conf", "w") as f:
            f.write(common % ("backend", "backend") + """
http { access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  client_body_temp_path %(t)s; proxy_temp_path %(t)s; fastcgi_temp_path %(t)s;
  uwsgi_temp_path %(t)s; scgi_temp_path %(t)s;
  server { listen 127.0.0.1:%(p)d ssl; ssl_certificate %(t)s/c.pem;
    ssl_certificate_key %(t)s/k.pem; ssl_session_tickets on;
    location / { return 200 "hello from backend\\n"; } } }
""" % {"t": tmp, "p": BACKEND})
        with open(tmp + "/nginx.conf", "w") as f:
            f.write(modules + common % ("nginx", "nginx") + """
stream { map $ssl_preread_server_name $up { localhost 127.0.0.1:%d; default 127.0.0.1:1; }
  server { listen 127.0.0.1:%d; ssl_preread on; proxy_pass $up; } }
""" % (BACKEND, NGINX))
        with open(tmp + "/haproxy.cfg", "w") as f:
            f.write("""global
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend pt
  bind 127.0.0.1:%d
  tcp-request inspect-delay 5s
  tcp-request content accept if { req_ssl_hello_type 1 }
  use_backend b if { req.ssl_sni -i localhost }
backend b
  server s 127.0.0.1:%d
""" % (HAPROXY, BACKEND))
        with open(tmp + "/weir.json", "w") as f:
            f.write("""{"_format_version": "3.0",
 "weir": {"proxy_listen": ["127.0.0.1:%d"], "admin_listen": ["127.0.0.1:%d"],
          "stream_listen": ["127.0.0.1:%d"], "workers": 1, "access_log": "off",
          "log_level": "warn"},
 "services": [{"name": "b", "url": "tcp://127.0.0.1:%d",
               "routes": [{"protocols": ["tls_passthrough"], "snis": ["localhost"]}]}]}
""" % (WEIR_HTTP, WEIR_ADMIN, WEIR, BACKEND))
        start("backend", ["nginx", "-c", tmp + "/backend.conf", "-p", tmp])
        wait_port(BACKEND)
        runs = [("nginx", NGINX, ["nginx", "-c", tmp + "/nginx.conf", "-p", tmp]),
                ("haproxy", HAPROXY, ["haproxy", "-f", tmp + "/haproxy.cfg"]),
                ("weir", WEIR, [args.weir, "-c", tmp + "/weir.json"])]
        results = {}
        for name, port, argv in runs:
            p = start(name, argv)
            wait_port(port)
            for close in (False, True):
                wrk(port, 2, close)  # warm-up
                pids = tree(p.pid)
                before = cpu_ticks(pids)
                rps, total, errs = wrk(port, args.duration, close)
                used = cpu_ticks(pids) - before
                us = used * 1e6 / os.sysconf("SC_CLK_TCK") / total if total else 0
                results[(name, close)] = (rps, us, errs)
            p.send_signal(signal.SIGTERM)
            p.wait(10)
        print("%-8s %-16s %12s %14s  %s" % ("proxy", "load", "req/s", "CPU us/req", "errors"))
        for (name, close), (rps, us, errs) in results.items():
            print("%-8s %-16s %12.0f %14.1f  %s" % (name, "new connections" if close else
                                                    "keep-alive", rps, us, errs or "-"))
        for close in (False, True):
            w = results[("weir", close)]
            for peer in ("nginx", "haproxy"):
                o = results[(peer, close)]
                print("weir/%s %s: req/s %.2fx, CPU per request %.2fx" % (
                    peer, "new connections" if close else "keep-alive",
                    w[0] / o[0] if o[0] else 0, w[1] / o[1] if o[1] else 0))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        if os.environ.get("KEEP"):
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
