"""harness: helpers for Weir's end-to-end tests.

The tests start the real `weir` binary ($WEIR_BIN, default <repo>/gateway/weir) and real echo
backends (examples/demo_backend.py) on loopback, and assert what a client sees. Everything a test
starts is registered here and stopped when the test process exits, whatever happens; tests also
stop what they start in `finally` blocks.

Main entry points:
  free_port(), start_backend(port=None) -> Backend, start_weir(config) -> Weir,
  base_config(backend_port, **overrides), service(...), route(...),
  raw(port, data, timeout) -> RawBytes, parse_response(data) -> Response,
  Conn(port) (a raw keep-alive client connection), http(method, port, path, ...),
  and the assertion helpers assert_eq, assert_status, assert_header, assert_gateway_error, ...
"""

import atexit
import contextlib
import difflib
import hashlib
import http.client as httpclient
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BACKEND_SCRIPT = os.path.join(REPO, "examples", "demo_backend.py")

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
NO_ROUTE_MESSAGE = "no Route matched with those values"

# The same deterministic data the backend generates for ?bytes=N.
BLOCK_SIZE = 65536
BLOCK = bytes(((i * 31) ^ (i >> 8) ^ (i >> 13)) & 0xFF for i in range(BLOCK_SIZE))


class Skip(Exception):
    """Raised by a test that cannot run here; the runner reports it as SKIP, not as a failure."""


class TestFailure(AssertionError):
    pass


def timeout(seconds):
    """Decorator: the runner's per-test time limit for this test (default 30 s)."""
    def mark(fn):
        fn.timeout = seconds
        return fn
    return mark


def weir_bin():
    return os.environ.get("WEIR_BIN") or os.path.join(REPO, "gateway", "weir")


# ---------------------------------------------------------------- process registry and temp dirs

_live = []          # objects with .stop(), stopped at exit in reverse order
_session_tmp = None


def _tmp_root():
    global _session_tmp
    root = os.environ.get("WEIR_E2E_TMP")
    if root:
        os.makedirs(root, exist_ok=True)
        return root
    if _session_tmp is None:
        _session_tmp = tempfile.mkdtemp(prefix="weir-e2e-")
    return _session_tmp


def make_tmpdir(prefix):
    return tempfile.mkdtemp(prefix=prefix + "-", dir=_tmp_root())


# Sanitizer findings (ASan, LSan, UBSan) in the stderr of every weir this
# process stopped; tests/run.py fails a test that leaves any behind.
SANITIZER_REPORTS = []
_SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", ": runtime error: ")


def _scan_for_sanitizer_reports(stderr_path):
    try:
        with open(stderr_path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return
    for line in text.splitlines():
        if any(m in line for m in _SANITIZER_MARKERS):
            SANITIZER_REPORTS.append("%s: %s" % (stderr_path, line.strip()))
            return


def stop_all():
    while _live:
        obj = _live.pop()
        try:
            obj.stop()
        except Exception:
            pass


def _at_exit():
    stop_all()
    if _session_tmp and not os.environ.get("WEIR_E2E_KEEP"):
        shutil.rmtree(_session_tmp, ignore_errors=True)


atexit.register(_at_exit)


def _sigterm(signum, frame):
    raise SystemExit(128 + signum)


if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _sigterm)


_given_ports = set()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now (never the same one twice)."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in _given_ports:
            _given_ports.add(port)
            return port
    raise RuntimeError("no free port")


def wait_port(port, timeout=10.0, host="127.0.0.1", proc=None):
    """True once host:port accepts a connection; False on timeout or if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def wait_until(fn, timeout=3.0, interval=0.02, what="condition"):
    """Polls fn() until it returns a true value, which is returned; raises TestFailure on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TestFailure("timed out after %.1fs waiting for %s (last value: %r)" % (timeout, what, last))
        time.sleep(interval)


def _tail(path, lines=30):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


# ---------------------------------------------------------------- backend

class Backend:
    """A demo_backend.py process. .port, .addr ("127.0.0.1:port"), .stats(), .stop()."""

    def __init__(self, port=None, small_buffers=False):
        self.tmpdir = make_tmpdir("backend")
        self.stderr_path = os.path.join(self.tmpdir, "backend.stderr")
        args = [sys.executable, BACKEND_SCRIPT, "--host", "127.0.0.1", "--port", str(port or 0)]
        if small_buffers:
            args.append("--small-buffers")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr)
        _live.append(self)
        line = b""
        deadline = time.monotonic() + 10
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("demo backend did not start: %s" % _tail(self.stderr_path))
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                b = os.read(self.proc.stdout.fileno(), 1)
                if not b:
                    continue
                line += b
        m = re.match(rb"listening on ([\d.]+):(\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError("unexpected backend banner %r" % line)
        self.port = int(m.group(2))
        self.addr = "127.0.0.1:%d" % self.port

    def stats(self):
        """{"requests", "connections", "open_connections"} straight from the backend."""
        c = httpclient.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            c.request("GET", "/__stats")
            return json.loads(c.getresponse().read())
        finally:
            c.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            self.proc.stdout.close()
        except Exception:
            pass
        self._stderr.close()
        if self in _live:
            _live.remove(self)


class TlsServer:
    """A threaded TLS server on 127.0.0.1 for backends written in Python: binds, accepts, counts
    connections and calls self.serve(raw_socket, n) on a thread per connection (n counts from 1).
    Subclasses set self.ctx (an ssl.SSLContext) before calling TlsServer.__init__ and do the
    handshake themselves in serve(). `rcvbuf`: a receive buffer for the listening socket,
    inherited by accepted ones."""

    def __init__(self, rcvbuf=None):
        self.lock = threading.Lock()
        self.connections = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
            threading.Thread(target=self.serve, args=(s, n), daemon=True).start()

    def serve(self, raw, n):
        raise NotImplementedError

    def stop(self):
        self.stopped = True
        self.sock.close()


def start_backend(port=None, small_buffers=False):
    return Backend(port, small_buffers)


# ---------------------------------------------------------------- config

def service(name, backend_port=None, path="", routes=(), url=None, **fields):
    """A service dict: url http://127.0.0.1:<backend_port><path> unless `url` is given."""
    s = {"name": name, "url": url or "http://127.0.0.1:%d%s" % (backend_port, path)}
    s.update(fields)
    s["routes"] = list(routes)
    return s


def route(name, paths=None, **fields):
    r = {"name": name}
    if paths is not None:
        r["paths"] = list(paths)
    r.update(fields)
    return r


def base_config(backend_port, **overrides):
    """A complete config: one service "echo" -> 127.0.0.1:<backend_port>, route "echo" on "/".

    Overrides: services=/routes=/upstreams= replace those lists; limits={...} merges into
    weir.limits; weir={...} merges into weir; any other key is set in the weir object
    (workers=2, trusted_ips=[...], ...)."""
    tmp = make_tmpdir("weir")
    weir = {
        "proxy_listen": ["127.0.0.1:%d" % free_port()],
        "admin_listen": ["127.0.0.1:%d" % free_port()],
        "workers": 1,
        "access_log": os.path.join(tmp, "access.log"),
        "log_level": "info",
    }
    cfg = {"_format_version": "3.0", "weir": weir}
    if backend_port is not None:
        cfg["services"] = [service("echo", backend_port, routes=[route("echo", ["/"])])]
    for key, value in overrides.items():
        if key in ("services", "routes", "upstreams"):
            cfg[key] = value
        elif key == "limits":
            weir.setdefault("limits", {}).update(value)
        elif key == "weir":
            weir.update(value)
        else:
            weir[key] = value
    return cfg


def write_config_file(cfg, name="config.json"):
    """Writes a config (dict, or text as is) to a new temporary directory; returns the path."""
    path = os.path.join(make_tmpdir("cfg"), name)
    with open(path, "w") as f:
        f.write(cfg if isinstance(cfg, str) else json.dumps(cfg, indent=2))
    return path


def _listen_port(cfg):
    spec = cfg["weir"]["proxy_listen"][0].split()[0]  # without Kong's flags ("ssl")
    host, _, port = spec.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    return host, int(port)


# ---------------------------------------------------------------- weir

class Weir:
    """A running weir process started on a JSON config file in its own temp dir."""

    def __init__(self, config, extra_args=(), tmpdir=None, wait=True, config_text=None):
        self.config = config
        if tmpdir is None:
            log = (config or {}).get("weir", {}).get("access_log") if isinstance(config, dict) else None
            if log and os.path.isabs(log) and os.path.dirname(log).startswith(_tmp_root()):
                tmpdir = os.path.dirname(log)
            else:
                tmpdir = make_tmpdir("weir")
        self.tmpdir = tmpdir
        self.config_path = os.path.join(tmpdir, "weir.json")
        self.write_config(config_text if config_text is not None else config)
        self.stdout_path = os.path.join(tmpdir, "weir.stdout")
        self.stderr_path = os.path.join(tmpdir, "weir.stderr")
        binary = weir_bin()
        if not os.access(binary, os.X_OK):
            raise TestFailure("weir binary not found or not executable: %s (set WEIR_BIN)" % binary)
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([binary, "-c", self.config_path] + list(extra_args),
                                     stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
                                     cwd=tmpdir, env=weir_env())
        self.pid = self.proc.pid
        _live.append(self)
        self.host, self.port = _listen_port(config) if isinstance(config, dict) else (None, None)
        if wait:
            if not wait_port(self.port, 10.0, self.host, self.proc):
                rc = self.proc.poll()
                self.stop()
                raise TestFailure("weir did not accept connections on %s:%d within 10 s (%s)\n"
                                  "--- weir stderr ---\n%s" % (
                                      self.host, self.port,
                                      "exited with %s" % rc if rc is not None else "still running",
                                      self.stderr_text()[-4000:]))

    def write_config(self, cfg):
        text = cfg if isinstance(cfg, str) else json.dumps(cfg, indent=2)
        if isinstance(cfg, dict):
            self.config = cfg
        try:
            with open(self.config_path) as f:
                if f.read() == text:
                    # the same file (a restart on the same config): its mtime, which stamps
                    # entities that carry no timestamps, stays
                    return
        except OSError:
            pass
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)
        if isinstance(cfg, dict):
            self.config = cfg

    def reload(self, cfg):
        """Writes a new config file and sends SIGHUP."""
        self.write_config(cfg)
        self.send_signal(signal.SIGHUP)

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def alive(self):
        return self.proc.poll() is None

    def wait(self, timeout):
        """Exit status, or None if still running after `timeout` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        """SIGTERM, wait up to 10 s, then SIGKILL. Returns the exit status."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self._out, self._err):
            try:
                f.close()
            except Exception:
                pass
        if self in _live:
            _live.remove(self)
        if not getattr(self, "_scanned", False):
            self._scanned = True
            _scan_for_sanitizer_reports(self.stderr_path)
        return self.proc.returncode

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stdout_text(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def access_log_path(self):
        log = self.config["weir"].get("access_log")
        if not log:
            return None
        return log if os.path.isabs(log) else os.path.join(self.tmpdir, log)

    def access_log_lines(self):
        """Every access log line parsed as JSON (a line that is not JSON raises TestFailure)."""
        path = self.access_log_path()
        try:
            with open(path, "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return []
        out = []
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                raise TestFailure("access log line is not JSON: %r" % line)
        return out

    def rss_kb(self):
        """VmRSS of the weir process in kB (None once it is gone)."""
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None


def start_weir(config, extra_args=(), **kw):
    return Weir(config, extra_args, **kw)


@contextlib.contextmanager
def gateway(make_config=None, backends=1, small_buffers=False, **overrides):
    """Starts `backends` echo backends, then weir on make_config(*backend_ports) or, without
    make_config, on base_config(first backend port, **overrides). Yields (weir, backend) for
    one backend, (weir, [backends]) for several; stops everything afterwards."""
    started = []
    try:
        for _ in range(backends):
            started.append(start_backend(small_buffers=small_buffers))
        ports = [b.port for b in started]
        if make_config is not None:
            cfg = make_config(*ports)
        else:
            cfg = base_config(ports[0] if ports else None, **overrides)
        w = start_weir(cfg)
        try:
            yield w, (started[0] if backends == 1 else started)
        finally:
            w.stop()
    finally:
        for b in started:
            b.stop()


def weir_env():
    """The environment weir runs in. Under AddressSanitizer a small quarantine keeps freed
    stream buffers from counting as resident memory in the bounded-memory tests (an ASAN_OPTIONS
    that already sets quarantine_size_mb wins); other builds ignore the variable."""
    env = dict(os.environ)
    asan = env.get("ASAN_OPTIONS", "")
    if "quarantine_size_mb" not in asan:
        env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "quarantine_size_mb=8"
    return env


def run_weir(args, timeout=10):
    """Runs weir with `args` to completion: (exit status, stdout, stderr) as text."""
    binary = weir_bin()
    if not os.access(binary, os.X_OK):
        raise TestFailure("weir binary not found or not executable: %s (set WEIR_BIN)" % binary)
    p = subprocess.run([binary] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout, env=weir_env())
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


# ---------------------------------------------------------------- raw HTTP client side

class RawBytes(bytes):
    """Bytes read from a socket; .closed tells whether the server closed (EOF or reset)."""
    closed = False


def raw(port, data, timeout=3.0, host="127.0.0.1", shut_wr=False, pause=0.0):
    """Sends `data` (bytes, or a list of pieces sent `pause` seconds apart) and returns everything
    read until the server closes the connection or `timeout` seconds pass without it closing."""
    s = socket.create_connection((host, port), timeout=5)
    out = bytearray()
    closed = False
    try:
        pieces = data if isinstance(data, (list, tuple)) else [data]
        for i, piece in enumerate(pieces):
            if i and pause:
                time.sleep(pause)
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
        if shut_wr:
            s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
    finally:
        s.close()
    r = RawBytes(bytes(out))
    r.closed = closed
    return r


class Response:
    """One parsed HTTP response. .status, .reason, .version, .headers [(name, value)], .body,
    .complete (False when the connection ended before the declared end of the body),
    .interim (1xx responses received before this one), .raw_head."""

    def __init__(self):
        self.status = None
        self.reason = ""
        self.version = ""
        self.headers = []
        self.body = b""
        self.complete = False
        self.interim = []
        self.raw_head = b""
        self.chunked = False

    def header(self, name):
        """The value of header `name`; several occurrences are joined with ", "; None if absent."""
        vals = self.headers_named(name)
        return ", ".join(vals) if vals else None

    def headers_named(self, name):
        name = name.lower()
        return [v for (n, v) in self.headers if n.lower() == name]

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise TestFailure("response body is not JSON:\n%s" % describe(self))

    def __repr__(self):
        return "<Response %s %s, %d body bytes%s>" % (self.status, self.reason, len(self.body),
                                                       "" if self.complete else ", INCOMPLETE")


class _Short(Exception):
    """The connection ended (or the data ran out) before the message did."""


class _Source:
    def __init__(self, sock=None, data=b"", deadline=None):
        self.buf = bytearray(data)
        self.sock = sock
        self.eof = sock is None
        self.deadline = deadline

    def more(self):
        if self.eof:
            return False
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out reading response")
            self.sock.settimeout(left)
        try:
            d = self.sock.recv(65536)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def read_until(self, delim, limit=1 << 20):
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                return out
            start = max(0, len(self.buf) - len(delim) + 1)
            if len(self.buf) > limit or not self.more():
                raise _Short()

    def read_upto(self, n):
        if not self.buf and not self.more():
            return b""
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def _read_message(src, head_request=False, sink=None):
    """Reads one response from src. Returns None if the source ended before any byte."""
    r = Response()
    while src.buf[:2] == b"\r\n":
        del src.buf[:2]
    if not src.buf and not src.more():
        return None
    try:
        head = src.read_until(b"\r\n\r\n")
    except _Short:
        r.raw_head = bytes(src.buf)
        del src.buf[:]
        return r
    r.raw_head = head
    lines = head[:-4].split(b"\r\n")
    m = re.match(rb"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
    if not m:
        return r
    r.version = m.group(1).decode()
    r.status = int(m.group(2))
    r.reason = (m.group(3) or b"").decode("latin-1")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        r.headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    body = bytearray()

    def take(data):
        if sink is not None:
            sink(data)
        else:
            body.extend(data)

    if head_request or 100 <= r.status < 200 or r.status in (204, 304):
        r.complete = True
        return r
    te = (r.header("transfer-encoding") or "").lower()
    cl = r.header("content-length")
    try:
        if "chunked" in te:
            r.chunked = True
            while True:
                line = src.read_until(b"\r\n", 4096)
                size = int(line.split(b";")[0].strip() or b"x", 16)
                if size == 0:
                    while src.read_until(b"\r\n", 65536) != b"\r\n":
                        pass
                    break
                left = size
                while left:
                    d = src.read_upto(min(left, 65536))
                    if not d:
                        raise _Short()
                    take(d)
                    left -= len(d)
                if src.read_until(b"\r\n", 2) != b"\r\n":
                    raise _Short()
            r.complete = True
        elif cl is not None:
            left = int(cl)
            while left:
                d = src.read_upto(min(left, 65536))
                if not d:
                    raise _Short()
                take(d)
                left -= len(d)
            r.complete = True
        else:
            while True:
                d = src.read_upto(65536)
                if not d:
                    break
                take(d)
            r.complete = True       # close-delimited: complete by definition
    except (_Short, ValueError):
        r.complete = False
    r.body = bytes(body)
    return r


def parse_responses(data, head_request=False):
    """Every response in `data` (1xx included), in order."""
    src = _Source(data=data)
    out = []
    while True:
        r = _read_message(src, head_request)
        if r is None:
            return out
        out.append(r)
        if r.status is None or not r.complete or r.status == 101:
            return out


def parse_response(data, head_request=False):
    """The first final (non-1xx) response in `data`, with .interim the 1xx before it.
    Returns None if `data` holds no response at all."""
    rs = parse_responses(data, head_request)
    interim = []
    for r in rs:
        if r.status is not None and 100 <= r.status < 200 and r.status != 101:
            interim.append(r)
            continue
        r.interim = interim
        return r
    if interim:
        r = Response()
        r.interim = interim
        return r
    return None


def build_request(method="GET", path="/", headers=None, body=b"", version="HTTP/1.1",
                  host="example.test"):
    """Request bytes. `headers` is a list of (name, value) or a dict; Host is added first unless
    host is None or headers set it; Content-Length is added for a non-empty body unless the
    headers frame it already."""
    hs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {n.lower() for n, _ in hs}
    if host is not None and "host" not in names:
        hs.insert(0, ("Host", host))
    if isinstance(body, str):
        body = body.encode()
    if body and "content-length" not in names and "transfer-encoding" not in names:
        hs.append(("Content-Length", str(len(body))))
    head = "%s %s %s\r\n" % (method, path, version)
    head += "".join("%s: %s\r\n" % (n, v) for n, v in hs)
    return head.encode("latin-1") + b"\r\n" + body


class Conn:
    """A raw client connection to the gateway that reads responses one by one (keep-alive,
    pipelining, interim responses)."""

    def __init__(self, port, timeout=5.0, host="127.0.0.1", rcvbuf=None):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.src = _Source(sock=self.sock)
        self.local_port = self.sock.getsockname()[1]

    def send(self, data):
        self.sock.sendall(data)

    def read_response(self, head_request=False, timeout=None, sink=None):
        """The next response (1xx included). Raises TestFailure if the connection closes before
        any byte of it or nothing arrives within the timeout."""
        self.src.deadline = time.monotonic() + (timeout or self.timeout)
        try:
            r = _read_message(self.src, head_request, sink)
        except socket.timeout:
            raise TestFailure("no complete response within %.1fs (got so far: %r)" % (
                timeout or self.timeout, bytes(self.src.buf[:300])))
        if r is None:
            raise TestFailure("connection closed before a response")
        return r

    def read_final(self, head_request=False, timeout=None, sink=None):
        """The next final response, with .interim holding the 1xx responses before it."""
        interim = []
        while True:
            r = self.read_response(head_request, timeout, sink)
            if r.status is not None and 100 <= r.status < 200 and r.status != 101:
                interim.append(r)
                continue
            r.interim = interim
            return r

    def request(self, method="GET", path="/", headers=None, body=b"", version="HTTP/1.1",
                host="example.test", timeout=None):
        self.send(build_request(method, path, headers, body, version, host))
        return self.read_final(method == "HEAD", timeout)

    def wait_closed(self, timeout=3.0):
        """True if the server closes (EOF or reset) within `timeout`; extra bytes go to .extra."""
        self.extra = bytes(self.src.buf)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            if not d:
                return True
            self.extra += d

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class HttpResult:
    """What http() returns: .status, .reason, .headers [(name, value)], .body, .header(), .json()."""

    def __init__(self, resp, body):
        self.status = resp.status
        self.reason = resp.reason
        self.headers = list(resp.getheaders())
        self.body = body
        self.complete = True
        self.interim = []
        self.version = "HTTP/1.1" if resp.version == 11 else "HTTP/1.0"

    header = Response.header
    headers_named = Response.headers_named
    json = Response.json

    def __repr__(self):
        return "<HttpResult %s %s>" % (self.status, self.reason)


def http(method, port, path, headers=None, body=None, timeout=10.0, host="127.0.0.1"):
    """One request on a new connection via http.client (which adds Host and
    Accept-Encoding: identity)."""
    c = httpclient.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=dict(headers or {}))
        resp = c.getresponse()
        return HttpResult(resp, resp.read())
    finally:
        c.close()


def get(port, path, **kw):
    return http("GET", port, path, **kw)


# ---------------------------------------------------------------- echo (what the backend saw)

class Echo(dict):
    """The backend's JSON report of a request, with header helpers."""

    def header(self, name):
        vals = self.headers_named(name)
        return ", ".join(vals) if vals else None

    def headers_named(self, name):
        name = name.lower()
        return [v for (n, v) in self["headers"] if n.lower() == name]

    def header_names(self):
        return [n.lower() for (n, _) in self["headers"]]


def echo(resp):
    """The backend's report from a response, failing clearly if the response is not one."""
    if resp.status is None:
        raise TestFailure("no response:\n%s" % describe(resp))
    try:
        obj = json.loads(resp.body)
    except ValueError:
        raise TestFailure("expected the backend's JSON echo, got:\n%s" % describe(resp))
    if not isinstance(obj, dict) or "conn_id" not in obj:
        raise TestFailure("expected the backend's JSON echo, got:\n%s" % describe(resp))
    return Echo(obj)


def generated_sha256(n):
    h = hashlib.sha256()
    full, rest = divmod(n, BLOCK_SIZE)
    for _ in range(full):
        h.update(BLOCK)
    h.update(BLOCK[:rest])
    return h.hexdigest()


# ---------------------------------------------------------------- assertions

def describe(resp, body_limit=600):
    """A readable dump of a response for failure messages."""
    if resp is None:
        return "  (no response at all)"
    if isinstance(resp, (bytes, bytearray)):
        return "  raw: %r" % bytes(resp[:body_limit])
    lines = []
    for i in getattr(resp, "interim", []) or []:
        lines.append("  (interim) %s %s %s" % (i.version, i.status, i.reason))
    if resp.status is None:
        lines.append("  (no parsable status line) raw head: %r" % getattr(resp, "raw_head", b"")[:300])
        return "\n".join(lines)
    lines.append("  %s %s %s" % (resp.version, resp.status, resp.reason))
    for n, v in resp.headers:
        lines.append("  %s: %s" % (n, v))
    body = resp.body
    text = body[:body_limit].decode("utf-8", "replace")
    lines.append("  (body, %d bytes%s) %s%s" % (len(body), "" if getattr(resp, "complete", True)
                                               else ", INCOMPLETE", text,
                                               "..." if len(body) > body_limit else ""))
    return "\n".join(lines)


def _pretty(v):
    if isinstance(v, (dict, list)):
        return json.dumps(v, indent=2, sort_keys=True, default=str)
    return repr(v)


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg, context=None):
    if not cond:
        if context is not None:
            msg += "\n" + (describe(context) if not isinstance(context, str) else context)
        raise TestFailure(msg)


def assert_eq(actual, expected, what="value", context=None):
    if actual == expected:
        return
    msg = "%s: expected %r, got %r" % (what, expected, actual)
    if isinstance(actual, (dict, list)) and isinstance(expected, (dict, list)):
        diff = difflib.unified_diff(_pretty(expected).splitlines(), _pretty(actual).splitlines(),
                                    "expected", "actual", lineterm="")
        msg = "%s differs:\n%s" % (what, "\n".join(diff))
    if context is not None:
        msg += "\n" + (context if isinstance(context, str) else describe(context))
    raise TestFailure(msg)


def assert_in(item, container, what="value", context=None):
    if item not in container:
        msg = "%s: %r not in %r" % (what, item, container)
        if context is not None:
            msg += "\n" + (context if isinstance(context, str) else describe(context))
        raise TestFailure(msg)


def assert_status(resp, status, what="status"):
    if resp is None:
        raise TestFailure("%s: expected %s, got no response at all" % (what, status))
    ok = resp.status in status if isinstance(status, (tuple, list, set)) else resp.status == status
    if not ok:
        raise TestFailure("%s: expected %s, got %s\n%s" % (what, status, resp.status, describe(resp)))


def assert_header(resp, name, expected):
    actual = resp.header(name)
    if actual != expected:
        raise TestFailure("header %s: expected %r, got %r\n%s" % (name, expected, actual,
                                                                describe(resp)))


def assert_no_header(resp, name):
    actual = resp.header(name)
    if actual is not None:
        raise TestFailure("header %s should be absent, got %r\n%s" % (
            name, actual, resp if isinstance(resp, Echo) else describe(resp)))


def assert_gateway_error(resp, status, message=None):
    """A gateway-made error: `status` and a JSON body {"message": ..., "request_id": ...}."""
    assert_status(resp, status)
    try:
        obj = json.loads(resp.body)
    except ValueError:
        raise TestFailure("gateway error body is not JSON\n%s" % describe(resp))
    if not isinstance(obj, dict) or not isinstance(obj.get("message"), str) or not obj["message"]:
        raise TestFailure("gateway error body lacks a \"message\" string\n%s" % describe(resp))
    if not isinstance(obj.get("request_id"), str) or not obj["request_id"]:
        raise TestFailure("gateway error body lacks a \"request_id\" string\n%s" % describe(resp))
    if "backend_error" in obj or "conn_id" in obj:
        raise TestFailure("this response came from the backend, not the gateway\n%s" % describe(resp))
    if message is not None and obj["message"] != message:
        raise TestFailure("gateway error message: expected %r, got %r\n%s" % (
            message, obj["message"], describe(resp)))
    return obj


def assert_raw_gateway_error(data, status, message=None, closed=None):
    """Parses raw bytes and checks for one gateway error; closed=True also requires that the
    server closed the connection (and sent nothing after the error)."""
    rs = parse_responses(data)
    if not rs:
        raise TestFailure("expected a %d gateway error, got no response (closed=%s)" % (
            status, getattr(data, "closed", "?")))
    obj = assert_gateway_error(rs[0], status, message)
    if closed is not None:
        if closed and not getattr(data, "closed", False):
            raise TestFailure("expected the gateway to close the connection after the %d\n%s" % (
                status, describe(rs[0])))
        if closed and len(rs) > 1:
            raise TestFailure("expected nothing after the %d, got another response:\n%s" % (
                status, describe(rs[1])))
    return obj
