"""weir.redis from plugin code: commands and their Lua values, eval with its NOSCRIPT fallback,
error replies, pipelining of concurrent requests on one shared connection, timeouts (slow,
silent and unreachable servers), a server that stops and comes back, AUTH and SELECT, the reply
size bound, and clients that leave while their command waits. Each test starts its own
redis-server on a free port and a gateway whose plugin talks to it; the probe plugin runs the
commands of the X-Redis request header (JSON) and answers with what each returned."""

import json
import os
import queue
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time

import harness
from harness import (assert_eq, base_config, check, echo, free_port, gateway, get, http,
                     make_tmpdir, wait_port)
from test_plugin_runtime import handler, plugin_tree

REDIS_SERVER = "/usr/bin/redis-server"


# ---------------------------------------------------------------- redis-server and a RESP client

class RedisError(Exception):
    pass


class Redis:
    """A minimal blocking RESP client, for setting up and checking what the plugins did."""

    def __init__(self, port, password=None, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        if password:
            self.call("AUTH", password)

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self):
        line = self.file.readline()
        if not line:
            raise RedisError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.file.read(n + 2)[:-2].decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RedisError("bad reply %r" % line)

    def close(self):
        self.file.close()
        self.sock.close()


class RedisServer:
    """A redis-server of our own on 127.0.0.1:<port> (no persistence); .stop() and .start()
    again on the same port."""

    def __init__(self, password=None, unixsocket=False):
        self.port = free_port()
        self.password = password
        self.dir = make_tmpdir("redis")
        # a socket path must fit in sun_path (108 bytes): a short directory of its own
        self.unixsocket = None
        if unixsocket:
            self.sockdir = tempfile.mkdtemp(prefix="weir-redis-")
            self.unixsocket = os.path.join(self.sockdir, "redis.sock")
        self.proc = None
        self.start()
        harness._live.append(self)

    def start(self):
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--enable-debug-command", "local"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.unixsocket:
            args += ["--unixsocket", self.unixsocket, "--unixsocketperm", "700"]
        self.log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        if not wait_port(self.port, 10.0, proc=self.proc):
            raise harness.TestFailure("redis-server did not start on port %d" % self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self.unixsocket:
            shutil.rmtree(self.sockdir, ignore_errors=True)

    def client(self):
        return Redis(self.port, self.password)

    def call(self, *args):
        r = self.client()
        try:
            return r.call(*args)
        finally:
            r.close()

    def sleep_in_background(self, seconds):
        """DEBUG SLEEP from another connection: the whole server stalls for `seconds`."""
        t = threading.Thread(target=self.call, args=("DEBUG", "SLEEP", str(seconds)))
        t.start()
        time.sleep(0.05)  # the server is asleep once the command has arrived
        return t


class SilentServer:
    """Accepts connections and never answers (a peer that is up but stuck)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self):
        self.sock.close()
        for c in self.accepted:
            c.close()


class DelayProxy:
    """Forwards TCP to 127.0.0.1:<target> and delivers every chunk `delay` seconds after it was
    read, both ways, in order, without waiting for the previous one to be answered: each round
    trip through it costs 2 * delay, however many are in flight. Counts connections."""

    def __init__(self, target, delay):
        self.target, self.delay = target, delay
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            server = socket.create_connection(("127.0.0.1", self.target))
            for src, dst in ((client, server), (server, client)):
                q = queue.Queue()
                threading.Thread(target=self._read, args=(src, q), daemon=True).start()
                threading.Thread(target=self._write, args=(dst, q), daemon=True).start()

    def _read(self, src, q):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            q.put((time.monotonic() + self.delay, data))
            if not data:
                return

    def _write(self, dst, q):
        while True:
            due, data = q.get()
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- the plugins

# Runs the commands of the X-Redis header, [["INCR", "k"], ["eval", script, keys, args], ...],
# on one client made from the plugin's config, and answers a JSON array with, for each,
# {value = what came back, err = the error, null = whether value is weir.redis.null,
#  ms = how long it took}.
PROBE = handler(1000, """
function P:access(conf)
  local opts = {}
  for k, v in pairs(conf) do opts[k] = v end
  opts.host = opts.host or "127.0.0.1"
  local red = weir.redis.connect(opts)
  local cmds = weir.json.decode(weir.request.get_header("X-Redis") or "[]")
  local out = {}
  for i, c in ipairs(cmds) do
    local start = weir.time.monotonic_ms()
    local v, err
    if c[1] == "eval" then
      v, err = red:eval(c[2], c[3], c[4])
    else
      v, err = red:call(unpack(c))
    end
    out[i] = { value = v, err = err, null = (v == weir.redis.null),
               ms = weir.time.monotonic_ms() - start }
  end
  return weir.response.exit(200, out)
end
""")

# The spec's counter: INCR per request in the access phase, the count as a response header.
COUNTER = handler(1000, """
function P:access(conf)
  local red = weir.redis.connect{ host = "127.0.0.1", port = conf.port }
  local n, err = red:call("INCR", "hits")
  if not n then return weir.response.exit(503, { err = err }) end
  weir.ctx.plugin.hits = n
end
function P:response(conf)
  weir.response.set_header("X-Hits", string.format("%d", weir.ctx.plugin.hits))
end
""")


def redis_gateway(conf, plugin=PROBE, **weir):
    """A gateway running `plugin` with config `conf` on every route."""
    root = plugin_tree({"probe": plugin})

    def make(port):
        cfg = base_config(port, plugins=["bundled", "probe"], plugin_paths=[root], **weir)
        cfg["plugins"] = [{"name": "probe", "config": conf}]
        return cfg
    return gateway(make)


def run(w, *cmds, timeout=10.0):
    """Sends the commands through the probe; returns (its results, seconds taken)."""
    start = time.monotonic()
    r = get(w.port, "/", headers={"X-Redis": json.dumps(cmds)}, timeout=timeout)
    took = time.monotonic() - start
    assert_eq(r.status, 200, "status", r)
    return r.json(), took


def one(w, *cmd, **kw):
    """The single result of one command."""
    return run(w, list(cmd), **kw)[0][0]


def value(w, *cmd):
    res = one(w, *cmd)
    check("err" not in res, "%r failed: %r" % (cmd, res))
    return res.get("value")


# ---------------------------------------------------------------- commands and replies

def test_incr_per_request_counts_in_a_response_header():
    red = RedisServer()
    with redis_gateway({"port": red.port}, plugin=COUNTER) as (w, b):
        for n in (1, 2, 3):
            r = get(w.port, "/")
            assert_eq(r.status, 200, "status", r)
            assert_eq(r.header("X-Hits"), str(n), "count after %d requests" % n)
            echo(r)  # proxied to the backend as usual
        assert_eq(red.call("GET", "hits"), "3", "the value in redis")
    red.stop()


def test_replies_become_strings_numbers_tables_and_weir_redis_null():
    red = RedisServer()
    with redis_gateway({"port": red.port}) as (w, b):
        res, _ = run(w, ["SET", "k", "v"], ["GET", "k"], ["GET", "missing"], ["INCR", "n"],
                     ["RPUSH", "list", "a", 2, 3.5], ["LRANGE", "list", 0, -1],
                     ["HSET", "h", "f", "x"], ["HMGET", "h", "f", "nope"], ["PING"])
        assert_eq(res[0], {"value": "OK", "null": False, "ms": res[0]["ms"]}, "status reply")
        assert_eq(res[1]["value"], "v", "bulk string")
        assert_eq((res[2].get("value"), res[2]["null"]), (None, True), "nil bulk is weir.redis.null")
        assert_eq(res[3]["value"], 1, "integer")
        assert_eq(res[4]["value"], 3, "numbers are sent as arguments")
        assert_eq(res[5]["value"], ["a", "2", "3.5"], "array; 2 went as \"2\", 3.5 as \"3.5\"")
        assert_eq(res[7]["value"], ["x", None], "nil inside an array")
        assert_eq(res[8]["value"], "PONG", "status reply")
    red.stop()


def test_an_error_reply_reaches_the_plugin_as_nil_and_the_message():
    red = RedisServer()
    red.call("SET", "text", "abc")
    with redis_gateway({"port": red.port}) as (w, b):
        res, _ = run(w, ["INCR", "text"], ["LPUSH", "text", "x"], ["NOSUCHCOMMAND"], ["GET", "text"])
        check("value" not in res[0] and res[0]["err"].startswith("ERR value is not an integer"),
              "INCR on text: %r" % res[0])
        check(res[1]["err"].startswith("WRONGTYPE"), "wrong type: %r" % res[1])
        check(res[2]["err"].startswith("ERR unknown command"), "unknown command: %r" % res[2])
        assert_eq(res[3]["value"], "abc", "the connection goes on after errors")
    red.stop()


def test_commands_that_would_change_a_shared_connection_are_refused():
    red = RedisServer()
    with redis_gateway({"port": red.port}) as (w, b):
        res, _ = run(w, ["MULTI"], ["select", "2"], ["SUBSCRIBE", "ch"], ["PSUBSCRIBE", "c*"],
                     ["MONITOR"], ["CLIENT", "REPLY", "OFF"], ["AUTH", "x"], ["SET", "k", "1"],
                     ["GET", "k"])
        for i, word in enumerate(["transactions", "SELECT", "pub/sub", "pub/sub", "MONITOR",
                                  "CLIENT REPLY", "AUTH"]):
            check("value" not in res[i] and word in res[i]["err"], "refused: %r" % res[i])
        assert_eq(res[8]["value"], "1", "db 0, one reply per command: nothing was sent")
    red.stop()


def test_connect_rejects_an_unknown_option_with_a_lua_error():
    red = RedisServer()
    with redis_gateway({"port": red.port, "timout": 100}) as (w, b):
        r = get(w.port, "/", headers={"X-Redis": "[]"})
        assert_eq(r.status, 500, "a plugin error", r)
        harness.wait_until(lambda: "unknown option 'timout'" in w.stderr_text(), 3,
                           what="the error in the log")
    red.stop()


# ---------------------------------------------------------------- eval

def test_eval_runs_a_script_with_keys_and_args():
    red = RedisServer()
    script = ("redis.call('SET', KEYS[1], ARGV[1]) "
              "return {redis.call('GET', KEYS[1]), #KEYS, #ARGV, tonumber(ARGV[2]) + 1, "
              "{ARGV[3]}, redis.error_reply('boom')}")
    with redis_gateway({"port": red.port}) as (w, b):
        res = one(w, "eval", script, ["ek"], ["hello", 41, "x"])
        value_ = res["value"]
        assert_eq(value_[:5], ["hello", 1, 3, 42, ["x"]], "values, nested tables, numbers", res)
        assert_eq(value_[5][0], False, "an error inside an array is {false, message}")
        check("boom" in value_[5][1], "the nested error's message: %r" % value_)
        assert_eq(red.call("GET", "ek"), "hello", "the script ran on the server")
        res = one(w, "eval", "return redis.call('INCR', KEYS[1])", ["ek"])
        check(res["err"].startswith("ERR"), "an error in a script is nil, err: %r" % res)
    red.stop()


def eval_calls(red):
    stats = red.call("INFO", "commandstats")
    for line in stats.splitlines():
        if line.startswith("cmdstat_eval:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def test_eval_sends_evalsha_and_falls_back_to_eval_once_after_script_flush():
    red = RedisServer()
    script = "return redis.call('INCR', KEYS[1])"
    with redis_gateway({"port": red.port}) as (w, b):
        assert_eq(value(w, "eval", script, ["c"]), 1, "first run: EVALSHA, NOSCRIPT, then EVAL")
        assert_eq(eval_calls(red), 1, "EVAL sent once")
        assert_eq(value(w, "eval", script, ["c"]), 2, "second run")
        assert_eq(eval_calls(red), 1, "the server knew the script: EVALSHA alone")
        red.call("SCRIPT", "FLUSH")
        assert_eq(value(w, "eval", script, ["c"]), 3, "after SCRIPT FLUSH")
        assert_eq(eval_calls(red), 2, "NOSCRIPT again: one more EVAL")
        assert_eq(value(w, "eval", script, ["c"]), 4, "and EVALSHA works again")
        assert_eq(eval_calls(red), 2, "no more EVAL")
    red.stop()


# ---------------------------------------------------------------- pipelining and concurrency

def concurrently(n, fn):
    results = [None] * n

    def run_one(i):
        results[i] = fn()
    threads = [threading.Thread(target=run_one, args=(i,)) for i in range(n)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.monotonic() - start


@harness.timeout(60)
def test_fifty_concurrent_requests_pipeline_on_one_connection_and_count_exactly_fifty():
    red = RedisServer()
    proxy = DelayProxy(red.port, 0.2)  # every round trip takes 0.4 s
    with redis_gateway({"port": proxy.port, "pool_size": 1, "timeout": 10000}, workers=1) as (w, b):
        results, took = concurrently(
            50, lambda: get(w.port, "/", headers={"X-Redis": '[["INCR", "k"]]'}, timeout=30))
        assert_eq(sorted(r.status for r in results), [200] * 50, "all succeeded")
        counts = sorted(r.json()[0]["value"] for r in results)
        assert_eq(counts, list(range(1, 51)), "each request saw its own count")
        assert_eq(red.call("GET", "k"), "50", "the final value")
        assert_eq(proxy.connections, 1, "one connection to redis")
        # one command at a time would need 50 round trips, 20 s
        check(took < 3.0, "50 pipelined requests took %.2fs" % took)
    proxy.close()
    red.stop()


def test_fifty_concurrent_requests_all_succeed_with_the_default_pool():
    red = RedisServer()
    with redis_gateway({"port": red.port}, workers=1) as (w, b):
        results, _ = concurrently(
            50, lambda: get(w.port, "/", headers={"X-Redis": '[["INCR", "k"], ["GET", "k"]]'}))
        for r in results:
            res = r.json()
            check(res[0]["value"] >= 1 and int(res[1]["value"]) >= res[0]["value"],
                  "INCR then GET in order: %r" % res)
        assert_eq(red.call("GET", "k"), "50", "the final value")
        clients = [line for line in red.call("CLIENT", "LIST").splitlines()]
        check(len(clients) <= 1 + 4, "at most pool_size (4) connections: %d" % (len(clients) - 1))
    red.stop()


# ---------------------------------------------------------------- timeouts and failures

def test_a_slow_command_times_out_promptly_and_the_late_reply_is_discarded():
    red = RedisServer()
    red.call("SET", "k", "before")
    with redis_gateway({"port": red.port, "timeout": 200}) as (w, b):
        assert_eq(value(w, "GET", "k"), "before", "warm: a connection exists")
        sleeper = red.sleep_in_background(0.8)
        res, took = run(w, ["GET", "k"])
        assert_eq(res[0].get("err"), "timeout", "the result", res)
        check(took < 0.6, "answered after %.2fs (timeout 0.2 s)" % took)
        sleeper.join()
        red.call("SET", "k", "after")
        for _ in range(3):
            assert_eq(value(w, "GET", "k"), "after", "later commands get their own replies")
    red.stop()


def test_a_server_that_accepts_but_never_answers_times_out_each_command():
    silent = SilentServer()
    with redis_gateway({"port": silent.port, "timeout": 300}) as (w, b):
        for _ in range(3):
            res, took = run(w, ["GET", "k"])
            assert_eq(res[0].get("err"), "timeout", "the result", res)
            check(took < 1.0, "answered after %.2fs (timeout 0.3 s)" % took)
    silent.close()


def test_an_unreachable_server_fails_within_the_connect_timeout():
    # A listener whose accept queue is full: the SYN goes unanswered, as for a host that is down
    # without a reset.
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    port = full.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    time.sleep(0.2)
    with redis_gateway({"port": port, "timeout": 300}) as (w, b):
        for _ in range(2):
            res, took = run(w, ["PING"])
            assert_eq(res[0].get("err"), "timeout", "the result", res)
            check(took < 1.0, "answered after %.2fs (timeout 0.3 s)" % took)
    for s in fillers:
        s.close()
    full.close()


def test_a_stopped_redis_fails_fast_and_calls_work_again_after_it_restarts():
    red = RedisServer()
    with redis_gateway({"port": red.port, "timeout": 1000}) as (w, b):
        assert_eq(value(w, "SET", "k", "1"), "OK", "up")
        red.stop()
        for _ in range(3):
            res, took = run(w, ["GET", "k"])
            check("value" not in res[0] and res[0]["err"], "an error while down: %r" % res)
            check(took < 1.5, "answered after %.2fs (timeout 1 s)" % took)
        red.start()
        harness.wait_until(lambda: "value" in one(w, "SET", "k", "2"), 5,
                           what="a command to succeed after the restart")
        assert_eq(value(w, "GET", "k"), "2", "the restarted server answers")
    red.stop()


def test_a_reply_over_the_size_limit_fails_and_the_next_commands_work():
    red = RedisServer()
    r = red.client()
    r.call("SET", "big", b"x" * (16 * 1024 * 1024 + 1))
    r.call("RPUSH", "many", *(["y" * 100] * 200000))  # 200k elements, ~30 MB as objects
    r.close()
    with redis_gateway({"port": red.port, "timeout": 5000}) as (w, b):
        res = one(w, "GET", "big")
        check("value" not in res and "reply too large" in res["err"], "big bulk: %r" % res)
        res = one(w, "LRANGE", "many", 0, -1)
        check("value" not in res and "reply too large" in res["err"], "big array: %r" % res)
        assert_eq(value(w, "STRLEN", "big"), 16 * 1024 * 1024 + 1, "the next command works")
    red.stop()


# ---------------------------------------------------------------- AUTH, SELECT, addresses

def test_auth_and_select_are_sent_on_new_connections():
    red = RedisServer(password="s3cret")
    with redis_gateway({"port": red.port, "password": "s3cret", "db": 3}) as (w, b):
        assert_eq(value(w, "SET", "where", "db3"), "OK", "authenticated")
        r = red.client()
        assert_eq(r.call("SELECT", 3), "OK", "select")
        assert_eq(r.call("GET", "where"), "db3", "the key is in db 3")
        r.close()
    with redis_gateway({"port": red.port, "password": "wrong"}) as (w, b):
        res = one(w, "GET", "where")
        check("value" not in res and res["err"].startswith("AUTH failed: WRONGPASS"),
              "a wrong password: %r" % res)
    with redis_gateway({"port": red.port}) as (w, b):
        res = one(w, "GET", "where")
        check(res["err"].startswith("NOAUTH"), "no password: %r" % res)
    red.stop()


def test_an_acl_username_is_sent_with_the_password():
    red = RedisServer(password="admin-pw")
    r = red.client()
    assert_eq(r.call("ACL", "SETUSER", "limiter", "on", ">limiter-pw", "~rl:*", "+@all"), "OK",
              "an ACL user that may only touch rl:* keys")
    r.close()
    with redis_gateway({"port": red.port, "username": "limiter", "password": "limiter-pw"}) as (w, b):
        assert_eq(value(w, "INCR", "rl:a"), 1, "authenticated as limiter")
        res = one(w, "SET", "other", "x")
        check("NOPERM" in (res.get("err") or ""), "the ACL applies, so this is limiter: %r" % res)
        assert_eq(value(w, "ACL", "WHOAMI"), "limiter", "whoami")
    with redis_gateway({"port": red.port, "username": "limiter", "password": "wrong"}) as (w, b):
        res = one(w, "GET", "rl:a")
        check(res.get("err", "").startswith("AUTH failed: WRONGPASS"), "a wrong password: %r" % res)
    with redis_gateway({"port": red.port, "username": "limiter"}) as (w, b):
        r = get(w.port, "/", headers={"X-Redis": "[]"})
        assert_eq(r.status, 500, "a username without a password is a plugin error", r)
        check("a username needs a password" in w.stderr_text(), w.stderr_text())
    red.stop()


def test_a_host_name_is_resolved_and_a_unix_socket_works():
    red = RedisServer(unixsocket=True)
    red.call("SET", "k", "v")
    with redis_gateway({"host": "localhost", "port": red.port}) as (w, b):
        assert_eq(value(w, "GET", "k"), "v", "localhost")
    with redis_gateway({"host": "unix:" + red.unixsocket}) as (w, b):
        assert_eq(value(w, "GET", "k"), "v", "unix socket")
    with redis_gateway({"host": "no-such-host.invalid", "port": red.port, "timeout": 2000}) as (w, b):
        res, took = run(w, ["GET", "k"])
        check("value" not in res[0] and res[0]["err"], "an unknown name: %r" % res)
        check(took < 3.0, "answered after %.2fs" % took)
    red.stop()


# ---------------------------------------------------------------- clients that leave

def reset_after(port, headers, delay):
    """Sends a request, waits `delay`, then resets the connection (SO_LINGER 0)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    head = "GET / HTTP/1.1\r\nHost: x\r\n" + "".join("%s: %s\r\n" % kv for kv in headers.items())
    s.sendall((head + "\r\n").encode())
    time.sleep(delay)
    s.close()


def test_clients_that_leave_while_their_command_waits_leave_the_gateway_serving():
    red = RedisServer()
    red.call("SET", "k", "v")
    with redis_gateway({"port": red.port, "timeout": 3000}, workers=1) as (w, b):
        assert_eq(value(w, "GET", "k"), "v", "warm")
        for _ in range(3):
            sleeper = red.sleep_in_background(0.5)
            threads = [threading.Thread(target=reset_after,
                                        args=(w.port, {"X-Redis": '[["GET", "k"], ["GET", "k"]]'},
                                              0.1)) for _ in range(10)]
            for t in threads:
                t.start()
            res, _ = run(w, ["GET", "k"])  # waits behind the sleep with the leavers
            assert_eq(res[0].get("value"), "v", "a client that stays gets its reply")
            for t in threads:
                t.join()
            sleeper.join()
        assert_eq(value(w, "GET", "k"), "v", "still serving")
        check(w.alive(), "the gateway is running")
    red.stop()


def test_stopping_the_gateway_while_commands_wait_cancels_them_cleanly():
    # The shutdown timeout ends the requests still waiting on the sleeping server: their waits
    # are cancelled, then the worker's connections to redis are closed.
    red = RedisServer()
    with redis_gateway({"port": red.port, "timeout": 5000}, workers=1,
                       limits={"shutdown_timeout": 300}) as (w, b):
        assert_eq(value(w, "SET", "k", "v"), "OK", "warm")
        sleeper = red.sleep_in_background(2.0)
        results = []

        def waiting_request():
            try:
                results.append(get(w.port, "/", headers={"X-Redis": '[["GET", "k"]]'}, timeout=5))
            except OSError as e:
                results.append(e)
        threads = [threading.Thread(target=waiting_request) for _ in range(5)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        start = time.monotonic()
        status = w.stop()
        took = time.monotonic() - start
        assert_eq(status, 0, "exit status")
        check(took < 1.5, "stopped after %.2fs, before the server woke up" % took)
        for t in threads:
            t.join()
        check(not any(getattr(r, "status", None) == 200 for r in results),
              "no request got an answer: %r" % results)
        sleeper.join()
    red.stop()
