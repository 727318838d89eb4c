#!/usr/bin/env python3
"""admin_changes: what a route change costs Weir, next to an nginx reload.

Issue 3: "From the admin answer to the route serving traffic takes under 50 ms
at 10,000 routes, and a change never costs a latency spike on traffic that
does not use it." This measures both, and the same for nginx (config file +
`nginx -s reload`) in the same run, in front of the same backend:

  wrk -c50 ──► Weir  127.0.0.1:18091 (admin 18092) ──┐
               nginx 127.0.0.1:18093               ──┴─► backend nginx 127.0.0.1:18090

Each proxy has one worker and ROUTES prefix routes /p<i> plus /steady. Per proxy:
  1. baseline: wrk --latency on /steady (warm-up, then DURATION);
  2. under changes: the same wrk run while a loop adds one route at a time
     (Weir: POST /services/bench/routes; nginx: append a `location` and run
     `nginx -s reload`) and, after each, polls the new path on the proxy until
     it answers 200, recording the lag.
See bench/README.md ("Admin changes under load") for how to read the output.

Usage: bench/admin_changes.py [--routes N] [--rounds N] [--pause-ms MS] [--only weir|nginx] ...
Env:   ROUTES=10000 DURATION=10s WARMUP=3s CONNECTIONS=50 THREADS=1 TASKSET=0 PAUSE_MS=0 ROUNDS=1
       PROXY_CPU=0 LOAD_CPU=1 WEIR_BIN=<skip the build, use this binary>
Python 3 standard library only. Exit status: 0 measured, 1 failed, 2 usage.
"""

import argparse
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKEND_PORT = 18090
WEIR_PORT = 18091
WEIR_ADMIN_PORT = 18092
NGINX_PORT = 18093
PORTS = (BACKEND_PORT, WEIR_PORT, WEIR_ADMIN_PORT, NGINX_PORT)
BACKEND_BODY = b"hello from backend\n"
SERVICE = "bench"
POLL_TIMEOUT_S = 10.0  # a new route not serving after this counts as a failed change


class BenchError(Exception):
    pass


def log(msg):
    print(msg, flush=True)


# ------------------------------------------------------------------ processes

class Procs:
    """Every long-running process started here, each in its own session (so
    Ctrl-C in the terminal reaches only this script, which then stops them)
    and stopped by its process group id: an nginx master with its workers."""

    def __init__(self):
        self.procs = []
        self.files = []

    def spawn(self, argv, logpath, cpu=None):
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + list(argv)
        out = open(logpath, "wb")
        self.files.append(out)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p, grace=5.0):
        if p not in self.procs:
            return
        for sig, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(p.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if p.poll() is not None and not group_alive(p.pid):
                    break
                time.sleep(0.05)
            else:
                continue
            break
        try:
            p.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        self.procs.remove(p)

    def stop_all(self):
        for p in list(reversed(self.procs)):
            self.stop(p)
        for f in self.files:
            f.close()
        self.files = []


def group_alive(pgid):
    """True while a live (non-zombie) process is in process group pgid."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rfind(")") + 2:].split()
        # fields[0] is the state, fields[2] the process group
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def thread_ticks(pgid):
    """{(pid, tid): (thread name, utime+stime ticks)} for every thread of every
    process in process group pgid."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
            if st[st.rfind(")") + 2:].split()[2] != str(pgid):
                continue
            for t in os.listdir("/proc/%s/task" % d):
                with open("/proc/%s/task/%s/stat" % (d, t)) as f:
                    ts = f.read()
                name = ts[ts.index("(") + 1:ts.rfind(")")]
                fields = ts[ts.rfind(")") + 2:].split()
                out[(d, t)] = (name, int(fields[11]) + int(fields[12]))
        except (OSError, IndexError, ValueError):
            continue
    return out


def cpu_by_thread(pgid, before, after):
    """CPU seconds per thread between two thread_ticks(pgid): "<name> main"
    for the group leader's main thread (Weir's control thread, nginx's master),
    "<name> thread <tid>" for other threads (Weir's workers), "<name> pid <pid>"
    for other processes (nginx's workers). Threads and processes that exited in
    between are lost, as nginx workers retired by a reload."""
    hz = os.sysconf("SC_CLK_TCK")
    res = {}
    for (pid, tid), (name, t) in after.items():
        d = t - before.get((pid, tid), (name, 0))[1]
        if pid != tid:
            label = "%s thread %s" % (name, tid)
        elif pid == str(pgid):
            label = "%s main" % name
        else:
            label = "%s pid %s" % (name, pid)
        res[label] = res.get(label, 0) + d / hz
    return {k: round(v, 2) for k, v in sorted(res.items())}


def port_busy(port):
    s = socket.socket()
    s.settimeout(0.5)
    try:
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        pass
    finally:
        s.close()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()[-n:]
    except OSError:
        return ""
    return "\n".join("    | " + line for line in lines)


# ---------------------------------------------------------------------- HTTP

class Client:
    """One keep-alive HTTP/1.1 connection; reconnects after a connection error."""

    def __init__(self, port, timeout=5.0):
        self.port = port
        self.timeout = timeout
        self.conn = None
        self.reconnects = 0

    def request(self, method, path, body=None, headers=None):
        """(status, body bytes); raises OSError/HTTPException after one retry."""
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.close()
                return r.status, data
            except (OSError, http.client.HTTPException):
                self.close()
                self.reconnects += 1
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def wait_body(name, proc, port, path, logpath, timeout=60.0):
    """Waits until GET path on port answers the backend's body."""
    deadline = time.monotonic() + timeout
    last = "none"
    c = Client(port, timeout=1.0)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError("%s exited during start-up (status %s)\n%s" % (name, proc.returncode, tail(logpath)))
        try:
            st, body = c.request("GET", path)
            if st == 200 and body == BACKEND_BODY:
                c.close()
                return
            last = "%d %r" % (st, body[:80])
        except (OSError, http.client.HTTPException) as e:
            last = str(e)
        time.sleep(0.1)
    c.close()
    raise BenchError("%s: no backend body from 127.0.0.1:%d%s after %.0f s (last answer: %s)\n%s"
                     % (name, port, path, timeout, last, tail(logpath)))


# ---------------------------------------------------------------------- wrk

def to_ms(v):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", v)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}[m.group(2)]


def parse_wrk(text):
    r = {}
    for line in text.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "Latency" and len(f) >= 4 and "max_ms" not in r:
            r["avg_ms"], r["max_ms"] = to_ms(f[1]), to_ms(f[3])
        elif f[0] in ("50%", "75%", "90%", "99%") and len(f) >= 2:
            r["p" + f[0][:-1] + "_ms"] = to_ms(f[1])
        elif "requests in" in line:
            r["requests"] = int(f[0])
        elif f[0] == "Requests/sec:":
            r["rps"] = float(f[1])
        elif line.strip().startswith("Socket errors:"):
            m = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", line)
            if m:
                r["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            r["non_2xx_3xx"] = int(f[-1])
    for k in ("p50_ms", "p99_ms", "max_ms", "rps", "requests"):
        if r.get(k) is None:
            raise BenchError("could not parse wrk's output (no %s):\n%s" % (k, text))
    r.setdefault("socket_errors", {"connect": 0, "read": 0, "write": 0, "timeout": 0})
    r.setdefault("non_2xx_3xx", 0)
    r["errors"] = sum(r["socket_errors"].values()) + r["non_2xx_3xx"]
    return r


def percentile(values, p):
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def summary(values):
    return {"n": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values) if values else None}


def add_change_summaries(w):
    ch = w["changes"]
    w["call_ms"] = summary([x["call_ms"] for x in ch])
    w["lag_ms"] = summary([x["lag_ms"] for x in ch])
    w["total_ms"] = summary([x["total_ms"] for x in ch])
    w["served_on_first_poll"] = sum(1 for x in ch if x["polls"] == 1)


def median(values):
    s = sorted(v for v in values if v is not None)
    if not s:
        return None
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def combine(runs):
    """One phase over several rounds: wrk figures as medians, errors and
    changes summed (the change summaries are over every change of every round)."""
    if len(runs) == 1:
        return runs[0]
    w = {k: median([r[k] for r in runs]) for k in ("p50_ms", "p99_ms", "max_ms", "rps", "cpu_us_per_req")}
    w["proxy_cpu_s"] = {n: median([r["proxy_cpu_s"].get(n, 0) for r in runs])
                        for n in sorted({n for r in runs for n in r["proxy_cpu_s"]})}
    w["errors"] = sum(r["errors"] for r in runs)
    w["non_2xx_3xx"] = sum(r["non_2xx_3xx"] for r in runs)
    w["socket_errors"] = {k: sum(r["socket_errors"][k] for r in runs) for k in runs[0]["socket_errors"]}
    if "changes" in runs[0]:
        w["changes"] = [x for r in runs for x in r["changes"]]
        w["failed_changes"] = [x for r in runs for x in r["failed_changes"]]
        w["proxy_poll_reconnects"] = sum(r["proxy_poll_reconnects"] for r in runs)
        add_change_summaries(w)
    return w


# ------------------------------------------------------------------- change loops

class ChangeLoop(threading.Thread):
    """Makes changes one after another until stopped; each: the change call
    (timed), then GET of the new path on the proxy until 200 (the lag)."""

    def __init__(self, name, proxy_port, t_origin, pause_s, k_start):
        super().__init__(name="changes-" + name, daemon=True)
        self.pause_s = pause_s
        self.stop_ev = threading.Event()
        self.proxy = Client(proxy_port)
        self.t_origin = t_origin
        self.changes = []   # one dict per change that served
        self.failures = []  # changes that did not
        self.k = k_start  # change k adds /n<k>/: unique over rounds
        self.fatal = None

    def make_change(self, k):
        """Applies change k; returns (ok, detail). Subclasses."""
        raise NotImplementedError

    def run(self):
        try:
            while not self.stop_ev.is_set():
                k = self.k
                self.k += 1
                path = "/n%d/" % k
                t0 = time.monotonic()
                ok, detail = self.make_change(k)
                t1 = time.monotonic()
                if not ok:
                    self.failures.append({"k": k, "at_s": t0 - self.t_origin, "call_ms": (t1 - t0) * 1e3,
                                          "detail": detail})
                    if len(self.failures) >= 20:
                        self.fatal = "20 changes failed; last: %s" % detail
                        return
                    time.sleep(0.05)
                    continue
                polls, statuses, served = 0, {}, None
                while time.monotonic() - t1 < POLL_TIMEOUT_S:
                    polls += 1
                    try:
                        st, _ = self.proxy.request("GET", path)
                    except (OSError, http.client.HTTPException) as e:
                        st = "error: %s" % e.__class__.__name__
                    statuses[str(st)] = statuses.get(str(st), 0) + 1
                    if st == 200:
                        served = time.monotonic()
                        break
                    if polls > 1:
                        time.sleep(0.001)
                if served is None:
                    self.failures.append({"k": k, "at_s": t0 - self.t_origin, "call_ms": (t1 - t0) * 1e3,
                                          "detail": "not serving after %.0f s: %s" % (POLL_TIMEOUT_S, statuses)})
                    continue
                self.changes.append({"k": k, "at_s": round(t0 - self.t_origin, 4),
                                     "call_ms": round((t1 - t0) * 1e3, 3),
                                     "lag_ms": round((served - t1) * 1e3, 3),
                                     "total_ms": round((served - t0) * 1e3, 3),
                                     "polls": polls, "statuses": statuses, "detail": detail})
                if self.pause_s:
                    self.stop_ev.wait(self.pause_s)
        except Exception as e:  # reported by the main thread
            self.fatal = "%s: %s" % (e.__class__.__name__, e)
        finally:
            self.proxy.close()
            self.close()

    def close(self):
        pass


class WeirChanges(ChangeLoop):
    def __init__(self, t_origin, pause_s, k_start):
        super().__init__("weir", WEIR_PORT, t_origin, pause_s, k_start)
        self.admin = Client(WEIR_ADMIN_PORT, timeout=30.0)

    def make_change(self, k):
        body = json.dumps({"name": "n%d" % k, "paths": ["/n%d/" % k]})
        try:
            st, data = self.admin.request("POST", "/services/%s/routes" % SERVICE, body=body,
                                          headers={"Content-Type": "application/json"})
        except (OSError, http.client.HTTPException) as e:
            return False, "admin POST failed: %s: %s" % (e.__class__.__name__, e)
        if st != 201:
            return False, "admin POST answered %d: %s" % (st, data[:200].decode("utf-8", "replace"))
        return True, None

    def close(self):
        self.admin.close()


class NginxChanges(ChangeLoop):
    def __init__(self, t_origin, pause_s, k_start, nginx):
        super().__init__("nginx", NGINX_PORT, t_origin, pause_s, k_start)
        self.nginx = nginx

    def make_change(self, k):
        with open(self.nginx["locations"], "a") as f:
            f.write("location /n%d/ { proxy_pass http://backend; }\n" % k)
        r = subprocess.run(self.nginx["reload_argv"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        if r.returncode != 0:
            return False, "nginx -s reload exited %d: %s" % (r.returncode, r.stdout.decode("utf-8", "replace")[-300:])
        return True, None


# ------------------------------------------------------------------- the bench

class Bench:
    def __init__(self, args):
        self.a = args
        self.procs = Procs()
        self.tmp = None
        self.taskset = args.taskset
        self.results = {}

    def cpu(self, which):
        if not self.taskset:
            return None
        return self.a.proxy_cpu if which == "proxy" else self.a.load_cpu

    # -------------------------------------------------------------- nginx configs
    def nginx_common(self, d):
        return ("daemon off;\nworker_processes 1;\nworker_rlimit_nofile 16384;\n"
                "pid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
                "events { worker_connections 8192; }\n" % (d, d))

    def nginx_temp_paths(self, d):
        return "".join("    %s_temp_path %s/%s;\n" % (t, d, t)
                       for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))

    def start_backend(self):
        d = os.path.join(self.tmp, "backend")
        os.makedirs(d)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(self.nginx_common(d))
            f.write("http {\n    access_log off;\n%s"
                    "    keepalive_requests 1000000;\n    keepalive_timeout 300s;\n"
                    "    server {\n        listen 127.0.0.1:%d;\n"
                    "        location / { return 200 \"hello from backend\\n\"; }\n    }\n}\n"
                    % (self.nginx_temp_paths(d), BACKEND_PORT))
        logpath = os.path.join(d, "stdout.log")
        p = self.procs.spawn(["nginx", "-e", os.path.join(d, "error.log"), "-p", d, "-c", conf], logpath,
                             self.cpu("load"))
        wait_body("backend", p, BACKEND_PORT, "/steady", os.path.join(d, "error.log"), timeout=10)
        self.backend = p

    def start_nginx(self):
        d = os.path.join(self.tmp, "nginx")
        os.makedirs(d)
        conf = os.path.join(d, "nginx.conf")
        locations = os.path.join(d, "locations.conf")
        with open(locations, "w") as f:
            f.write("location /steady { proxy_pass http://backend; }\n")
            for i in range(self.a.routes):
                f.write("location /p%d { proxy_pass http://backend; }\n" % i)
        with open(conf, "w") as f:
            f.write(self.nginx_common(d))
            f.write("http {\n    access_log off;\n%s"
                    "    keepalive_requests 1000000;\n    keepalive_timeout 300s;\n"
                    "    upstream backend {\n        server 127.0.0.1:%d;\n        keepalive 64;\n"
                    "        keepalive_requests 1000000;\n        keepalive_timeout 300s;\n    }\n"
                    "    server {\n        listen 127.0.0.1:%d;\n"
                    "        proxy_http_version 1.1;\n        proxy_set_header Connection \"\";\n"
                    "        location / { return 404; }\n"
                    "        include %s;\n    }\n}\n"
                    % (self.nginx_temp_paths(d), BACKEND_PORT, NGINX_PORT, locations))
        err = os.path.join(d, "error.log")
        argv = ["nginx", "-e", err, "-p", d, "-c", conf]
        t0 = time.monotonic()
        p = self.procs.spawn(argv, os.path.join(d, "stdout.log"), self.cpu("proxy"))
        wait_body("nginx", p, NGINX_PORT, "/steady", err)
        start_s = time.monotonic() - t0
        self.nginx = {"proc": p, "locations": locations, "error_log": err,
                      "reload_argv": argv + ["-s", "reload"]}
        return p, err, start_s

    # --------------------------------------------------------------------- weir
    def build_weir(self):
        if os.environ.get("WEIR_BIN"):
            b = os.environ["WEIR_BIN"]
        else:
            logpath = os.path.join(self.tmp, "weir-build.log")
            log("== building weir with ./setup.sh build (log: %s)" % logpath)
            with open(logpath, "wb") as f:
                rc = subprocess.call(["./setup.sh", "build"], cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
            if rc != 0:
                raise BenchError("weir: build failed\n%s" % tail(logpath))
            b = None
            with open(logpath) as f:
                for line in f:
                    if line.startswith("setup: built "):
                        b = line[len("setup: built "):].strip()
            if not b:
                raise BenchError("weir: the build named no binary\n%s" % tail(logpath))
        if not os.access(b, os.X_OK):
            raise BenchError("weir: %s is not an executable" % b)
        return b

    def start_weir(self, binary):
        d = os.path.join(self.tmp, "weir")
        os.makedirs(d)
        routes = [{"name": "steady", "paths": ["/steady"]}]
        routes += [{"name": "p%d" % i, "paths": ["/p%d" % i]} for i in range(self.a.routes)]
        cfg = {"_format_version": "3.0",
               "weir": {"proxy_listen": ["127.0.0.1:%d" % WEIR_PORT],
                        "admin_listen": ["127.0.0.1:%d" % WEIR_ADMIN_PORT],
                        "workers": 1, "access_log": "off", "log_level": "warn",
                        "store": {"type": "file", "path": os.path.join(d, "store.json")}},
               "services": [{"name": SERVICE, "url": "http://127.0.0.1:%d" % BACKEND_PORT,
                             "routes": routes}]}
        conf = os.path.join(d, "weir.json")
        with open(conf, "w") as f:
            json.dump(cfg, f)
        logpath = os.path.join(d, "weir.log")
        t0 = time.monotonic()
        p = self.procs.spawn([binary, "-c", conf], logpath, self.cpu("proxy"))
        wait_body("weir", p, WEIR_PORT, "/steady", logpath)
        start_s = time.monotonic() - t0
        return p, logpath, start_s

    # ---------------------------------------------------------------------- wrk
    def wrk(self, port, duration, outpath, proxy=None):
        """Runs wrk on /steady; with proxy (a Popen), also the proxy's CPU
        seconds per thread name over the run."""
        argv = ["wrk", "-t%d" % self.a.threads, "-c%d" % self.a.connections, "-d%s" % duration,
                "--latency", "http://127.0.0.1:%d/steady" % port]
        before = thread_ticks(proxy.pid) if proxy else None
        p = self.procs.spawn(argv, outpath, self.cpu("load"))
        p.wait()
        after = thread_ticks(proxy.pid) if proxy else None
        self.procs.stop(p)
        with open(outpath) as f:
            text = f.read()
        if p.returncode != 0:
            raise BenchError("wrk exited %d:\n%s" % (p.returncode, text))
        w = parse_wrk(text)
        if proxy:
            w["proxy_cpu_s"] = cpu_by_thread(proxy.pid, before, after)
            w["cpu_us_per_req"] = (round(sum(w["proxy_cpu_s"].values()) / w["requests"] * 1e6, 2)
                                   if w["requests"] else None)
        return w

    def check_routes(self, name, port):
        c = Client(port)
        for path, want in (("/p%d" % (self.a.routes - 1), 200), ("/n0/", 404)):
            st, _ = c.request("GET", path)
            if st != want:
                raise BenchError("%s: GET %s answered %d, expected %d" % (name, path, st, want))
        c.close()

    def measure_round(self, name, port, proc, logpath, make_loop, rnd, phases):
        """One baseline and one under-changes run against one proxy, in the order given."""
        res = {}
        for phase in phases:
            log("-- %s %s%s: warm-up %s, then wrk %s%s"
                % (name, phase, ", round %d/%d" % (rnd, self.a.rounds) if self.a.rounds > 1 else "",
                   self.a.warmup, self.a.duration, " while changing routes" if phase == "changes" else ""))
            self.wrk(port, self.a.warmup, os.path.join(self.tmp, "wrk-%s-%s-warmup.txt" % (name, phase)))
            loop = None
            t_origin = time.monotonic()
            if phase == "changes":
                loop = make_loop(t_origin, self.a.pause_ms / 1000.0, self.next_k[name])
                loop.start()
            try:
                w = self.wrk(port, self.a.duration, os.path.join(self.tmp, "wrk-%s-%s.txt" % (name, phase)),
                             proxy=proc)
            finally:
                wall = time.monotonic() - t_origin
                if loop is not None:
                    loop.stop_ev.set()
                    loop.join(timeout=POLL_TIMEOUT_S + 35)
            if proc.poll() is not None:
                raise BenchError("%s died during the %s run (status %s)\n%s"
                                 % (name, phase, proc.returncode, tail(logpath)))
            w["wall_s"] = round(wall, 3)
            res[phase] = w
            line = ("   p50 %.3f ms  p99 %.3f ms  max %.3f ms  %.0f req/s  errors %d"
                    % (w["p50_ms"], w["p99_ms"], w["max_ms"], w["rps"], w["errors"]))
            if loop is not None:
                if loop.is_alive():
                    raise BenchError("%s: the change loop did not stop" % name)
                if loop.fatal:
                    raise BenchError("%s: the change loop failed: %s" % (name, loop.fatal))
                self.next_k[name] = loop.k
                ch = loop.changes
                w["changes"] = ch
                w["failed_changes"] = loop.failures
                w["proxy_poll_reconnects"] = loop.proxy.reconnects
                add_change_summaries(w)
                line += ("  changes %d (failed %d), call p50 %.1f ms, lag p50 %.1f ms"
                         % (len(ch), len(loop.failures), w["call_ms"]["p50"] or 0, w["lag_ms"]["p50"] or 0))
            log(line)
            log("   %s CPU seconds by thread: %s" % (name, ", ".join("%s %.2f" % kv for kv in w["proxy_cpu_s"].items())))
        return res

    # ---------------------------------------------------------------------- run
    def run(self):
        a = self.a
        for tool in ("wrk", "nginx") + (("taskset",) if self.taskset else ()):
            if shutil.which(tool) is None:
                raise BenchError("%s is not installed (bench/run.sh installs wrk and nginx)" % tool)
        busy = [p for p in PORTS if port_busy(p)]
        if busy:
            raise BenchError("127.0.0.1:%s already in use; stop whatever listens there"
                             % ",".join(map(str, busy)))
        self.tmp = tempfile.mkdtemp(prefix="weir-changes.")
        os.chmod(self.tmp, 0o755)  # nginx workers drop to 'nobody' when started as root
        if self.taskset:
            os.sched_setaffinity(0, {a.load_cpu})  # this script and its change loops are load
        busy_pct = cpu_busy_percent()
        self.results = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "commit": git_head(), "machine": machine(), "busy_before_pct": busy_pct,
            "params": {"routes": a.routes, "duration": a.duration, "warmup": a.warmup,
                       "connections": a.connections, "threads": a.threads, "taskset": self.taskset,
                       "proxy_cpu": a.proxy_cpu, "load_cpu": a.load_cpu, "pause_ms": a.pause_ms,
                       "rounds": a.rounds},
            "nginx_version": subprocess.run(["nginx", "-v"], stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT).stdout.decode().strip(),
            "proxies": {}}
        log("Weir admin changes under load, %s; commit %s; %s; CPUs busy before start: %s%%"
            % (self.results["date"], self.results["commit"], self.results["machine"], busy_pct))
        log("routes: %d; changes: %s; wrk -t%d -c%d -d%s (warm-up %s) --latency on /steady; pinning: %s"
            % (a.routes, "%g ms apart" % a.pause_ms if a.pause_ms else "back to back",
               a.threads, a.connections, a.duration, a.warmup,
               "proxy CPU %d, wrk+backend+change loop CPU %d" % (a.proxy_cpu, a.load_cpu)
               if self.taskset else "none"))
        if busy_pct > 15:
            log("warning: the CPUs were %s%% busy before the run: figures will be noisier" % busy_pct)
        binary = self.build_weir() if "weir" in a.only else None
        self.start_backend()
        log("backend: nginx on 127.0.0.1:%d" % BACKEND_PORT)
        # Both proxies stay up for the whole run (an idle one costs nothing), so
        # rounds can alternate between them and share the machine's moods.
        targets = {}
        if "weir" in a.only:
            p, logpath, start_s = self.start_weir(binary)
            log("weir: 127.0.0.1:%d (admin %d), %d routes, serving %.2f s after start"
                % (WEIR_PORT, WEIR_ADMIN_PORT, a.routes + 1, start_s))
            self.check_routes("weir", WEIR_PORT)
            targets["weir"] = (WEIR_PORT, p, logpath, WeirChanges, start_s)
        if "nginx" in a.only:
            p, err, start_s = self.start_nginx()
            log("nginx: 127.0.0.1:%d, %d locations, serving %.2f s after start"
                % (NGINX_PORT, a.routes + 1, start_s))
            self.check_routes("nginx", NGINX_PORT)
            targets["nginx"] = (NGINX_PORT, p, err, lambda t, pause, k: NginxChanges(t, pause, k, self.nginx),
                                start_s)
        names = [n for n in ("weir", "nginx") if n in targets]
        self.next_k = {n: 0 for n in names}
        rounds = {n: [] for n in names}
        for rnd in range(1, a.rounds + 1):
            # rotate the proxies and alternate the phases' order from round to round
            order = names[(rnd - 1) % len(names):] + names[:(rnd - 1) % len(names)]
            phases = ("baseline", "changes") if rnd % 2 else ("changes", "baseline")
            for n in order:
                port, p, logpath, make_loop, _ = targets[n]
                log("")
                rounds[n].append(self.measure_round(n, port, p, logpath, make_loop, rnd, phases))
        for n in names:
            port, p, logpath, make_loop, start_s = targets[n]
            self.procs.stop(p, grace=15)
            r = {"start_s": round(start_s, 3), "rounds": rounds[n],
                 "baseline": combine([x["baseline"] for x in rounds[n]]),
                 "changes": combine([x["changes"] for x in rounds[n]]),
                 "log_tail": tail(logpath, 30)}
            self.results["proxies"][n] = r
        self.procs.stop(self.backend)
        self.report()

    def report(self):
        P = self.results["proxies"]
        names = [n for n in ("weir", "nginx") if n in P]

        def fmt(v, spec="%.2f"):
            return "n/a" if v is None else spec % v

        def ratio(x, y):
            return None if x is None or y in (None, 0) else x / y

        rows = []
        add = rows.append
        add(("wrk on /steady", [""] * len(names)))
        for key, label in (("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms")):
            add(("  %s baseline" % label, [fmt(P[n]["baseline"][key], "%.3f") for n in names]))
            add(("  %s under changes" % label, [fmt(P[n]["changes"][key], "%.3f") for n in names]))
        add(("  p99 under/baseline", [fmt(ratio(P[n]["changes"]["p99_ms"], P[n]["baseline"]["p99_ms"]))
                                      for n in names]))
        add(("  max under/baseline", [fmt(ratio(P[n]["changes"]["max_ms"], P[n]["baseline"]["max_ms"]))
                                      for n in names]))
        if self.a.rounds > 1:
            add(("  p99 under/baseline, rounds", [" ".join(fmt(ratio(x["changes"]["p99_ms"], x["baseline"]["p99_ms"]))
                                                         for x in P[n]["rounds"]) for n in names]))
        add(("  req/s baseline", ["%.0f" % P[n]["baseline"]["rps"] for n in names]))
        add(("  req/s under changes", ["%.0f" % P[n]["changes"]["rps"] for n in names]))
        add(("  CPU us/req baseline", [fmt(P[n]["baseline"]["cpu_us_per_req"]) for n in names]))
        add(("  CPU us/req under changes", [fmt(P[n]["changes"]["cpu_us_per_req"]) for n in names]))
        add(("  errors baseline/under", ["%d / %d" % (P[n]["baseline"]["errors"], P[n]["changes"]["errors"])
                                         for n in names]))
        add(("changes", [""] * len(names)))
        add(("  applied (failed)", ["%d (%d)" % (len(P[n]["changes"]["changes"]),
                                                 len(P[n]["changes"]["failed_changes"])) for n in names]))
        for key, label in (("call_ms", "call ms"), ("lag_ms", "lag ms"), ("total_ms", "total ms")):
            add(("  %s p50/p99/max" % label,
                 ["%s / %s / %s" % tuple(fmt(P[n]["changes"][key][q], "%.1f") for q in ("p50", "p99", "max"))
                  for n in names]))
        add(("  served on first poll", ["%d/%d" % (P[n]["changes"]["served_on_first_poll"],
                                                   len(P[n]["changes"]["changes"])) for n in names]))
        width = [max(len(r[1][i]) for r in rows + [("", names)]) + 2 for i in range(len(names))]
        out = [""]
        if self.a.rounds > 1:
            out.append("medians of %d rounds (errors, changes: totals)" % self.a.rounds)
        out += ["%-28s" % "" + "".join("%*s" % (w, n) for w, n in zip(width, names))]
        for label, vals in rows:
            out.append("%-28s" % label + "".join("%*s" % (w, v) for w, v in zip(width, vals)))
        if len(names) == 2:
            out.append("")
            out.append("weir/nginx under changes:  p99 %s   max %s   req/s %s" % (
                fmt(ratio(P["weir"]["changes"]["p99_ms"], P["nginx"]["changes"]["p99_ms"])),
                fmt(ratio(P["weir"]["changes"]["max_ms"], P["nginx"]["changes"]["max_ms"])),
                fmt(ratio(P["weir"]["changes"]["rps"], P["nginx"]["changes"]["rps"]))))
        out.append("")
        out.append("call:  weir: the admin POST, request to 201; nginx: append a location, run nginx -s reload")
        out.append("lag:   from the call's end (201 read; reload command exited) to the new path's first 200")
        out.append("total: call + lag")
        out.append("CPU us/req: the proxy's CPU time (every thread and process) over the run / requests wrk completed")
        for n in names:
            for phase in ("baseline", "changes"):
                out.append("%s CPU s by thread, %s: %s" % (n, phase, ", ".join(
                    "%s %.2f" % kv for kv in P[n][phase]["proxy_cpu_s"].items())))
        for n in names:
            w = P[n]["changes"]
            for phase in ("baseline", "changes"):
                if P[n][phase]["errors"]:
                    out.append("errors in %s %s: %s, non-2xx/3xx %d" % (n, phase, P[n][phase]["socket_errors"],
                                                                        P[n][phase]["non_2xx_3xx"]))
            if w["failed_changes"]:
                out.append("failed changes in %s: %s" % (n, "; ".join(
                    "#%d at %.2f s: %s" % (f["k"], f["at_s"], f["detail"]) for f in w["failed_changes"][:5])))
            if n == "weir" and w["changes"] and w["lag_ms"]["max"] is not None:
                late = [x for x in w["changes"] if x["polls"] > 1]
                if late:
                    out.append("weir: %d changes were not served on the first request after the 201" % len(late))
            if w["proxy_poll_reconnects"]:
                out.append("%s: the polling connection was reconnected %d times" % (n, w["proxy_poll_reconnects"]))
        text = "\n".join(out)
        log(text)
        self.results["table"] = text
        resdir = os.path.join(REPO, "bench", "results")
        os.makedirs(resdir, exist_ok=True)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
        path = os.path.join(resdir, "admin_changes-%d-%s.json" % (self.a.routes, stamp))
        with open(path, "w") as f:
            json.dump(self.results, f, indent=1)
        shutil.copyfile(path, os.path.join(resdir, "admin_changes-latest.json"))
        log("\nsaved: %s (and bench/results/admin_changes-latest.json)" % os.path.relpath(path, REPO))

    def cleanup(self):
        self.procs.stop_all()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def cpu_busy_percent():
    def read():
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]
    a = read()
    time.sleep(1)
    b = read()
    d = [y - x for x, y in zip(a, b)]
    total = sum(d)
    return round(100 * (total - d[3] - d[4]) / total) if total else 0


def git_head():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL).stdout.decode().strip() or "none"
    except OSError:
        return "none"


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%d CPUs, %s %s, %s" % (os.cpu_count() or 0, os.uname().sysname, os.uname().release, model)


def parse_args(argv):
    env = os.environ.get
    p = argparse.ArgumentParser(description="Route changes under load: Weir's admin API next to nginx -s reload "
                                            "(see bench/README.md).")
    p.add_argument("--routes", type=int, default=int(env("ROUTES", "10000")), help="routes at start (ROUTES, 10000)")
    p.add_argument("--duration", default=env("DURATION", "10s"), help="measured wrk run (DURATION, 10s)")
    p.add_argument("--warmup", default=env("WARMUP", "3s"), help="wrk warm-up before each run (WARMUP, 3s)")
    p.add_argument("--connections", type=int, default=int(env("CONNECTIONS", "50")), help="wrk connections (50)")
    p.add_argument("--threads", type=int, default=int(env("THREADS", "1")), help="wrk threads (1)")
    p.add_argument("--taskset", action="store_true", default=env("TASKSET", "0") == "1",
                   help="pin the proxy to PROXY_CPU and wrk, backend and the change loop to LOAD_CPU (TASKSET=1)")
    p.add_argument("--proxy-cpu", type=int, default=int(env("PROXY_CPU", "0")))
    p.add_argument("--load-cpu", type=int, default=int(env("LOAD_CPU", "1")))
    p.add_argument("--rounds", type=int, default=int(env("ROUNDS", "1")),
                   help="rounds (ROUNDS, 1): the proxies alternate, the table gives medians")
    p.add_argument("--pause-ms", type=float, default=float(env("PAUSE_MS", "0")),
                   help="pause after each change has served (PAUSE_MS, 0: back to back)")
    p.add_argument("--only", action="append", default=None, metavar="weir|nginx",
                   help="measure only these (repeatable or comma-separated)")
    a = p.parse_args(argv)
    only = []
    for o in a.only or ["weir,nginx"]:
        for n in o.split(","):
            if n not in ("weir", "nginx"):
                p.error("--only: unknown name %r (weir, nginx)" % n)
            only.append(n)
    a.only = only
    if a.pause_ms < 0:
        p.error("--pause-ms must not be negative")
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    if a.routes < 1:
        p.error("--routes must be at least 1")
    for d in (a.duration, a.warmup):
        if not re.fullmatch(r"[0-9]+[smh]?", d):
            p.error("durations are wrk's syntax (10s, 1m), not %r" % d)
    return a


def main(argv):
    try:
        args = parse_args(argv)
    except ValueError as e:  # a non-number in ROUTES and friends
        print("admin_changes.py: %s" % e, file=sys.stderr)
        return 2
    bench = Bench(args)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        bench.run()
        return 0
    except BenchError as e:
        print("admin_changes.py: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nadmin_changes.py: interrupted", file=sys.stderr)
        return 130
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # let the clean-up finish
            signal.signal(s, signal.SIG_IGN)
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
