#!/usr/bin/env python3
"""demo_backend.py: a small threaded HTTP/1.1 echo backend for Weir's demos and tests.

It speaks HTTP/1.1 over raw sockets with its own minimal, strict parser, so the
tests control (and can check) every byte that crosses the wire. One thread per
connection; keep-alive; Content-Length and chunked request bodies are streamed
and hashed, never held in memory.

Usage: demo_backend.py [--host 127.0.0.1] [--port 9080] [--small-buffers]

For each request it answers a JSON object:
  {"method", "path", "query", "version", "headers": [[name, value], ...] (received order),
   "body_bytes", "body_sha256", "body" (text when <= 4096 bytes, else null),
   "framing" ("content-length" | "chunked" | "none"), "trailers",
   "conn_id", "conn_requests", "backend": "host:port"}

Query parameters change what it does:
  status=NNN            answer with this status (204, 304 and 1xx have no body)
  delay_ms=N            wait before answering
  read_delay_ms=N       wait before reading the request body
  chunked=1             answer with Transfer-Encoding: chunked
  bytes=N               answer N bytes of deterministic data (a 64 KiB block repeated), streamed,
                        with X-Body-Sha256 giving its SHA-256
  close=1               send "Connection: close" and close after the response
  eof=1                 no Content-Length / chunked: the body ends when the connection closes
  cut=1                 declare more than is sent (Content-Length, or chunked without the last
                        chunk), then close
  drop=1                answer normally (keep-alive) and then close the connection silently
  header_name=/header_value=   add a response header (may repeat, paired in order)
  hop=1                 add hop-by-hop response headers (Connection naming X-Resp-Hop,
                        X-Resp-Hop, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade)
  no_response=1         read the request, then close without answering
  early_hints=1         send "103 Early Hints" with a Link header before the final response
  bad=NAME              send a malformed response (see BAD_RESPONSES) and close
The path /ws performs a WebSocket handshake (101 with Sec-WebSocket-Accept) and then echoes
raw bytes until the peer closes. GET /__stats answers {"requests", "connections",
"open_connections"} about this backend (not counted as a request). HEAD gets the headers of
the equivalent GET. It prints "listening on host:port" once ready.
"""

import argparse
import base64
import hashlib
import itertools
import json
import re
import socket
import threading
import time
import urllib.parse

BLOCK_SIZE = 65536
BLOCK = bytes(((i * 31) ^ (i >> 8) ^ (i >> 13)) & 0xFF for i in range(BLOCK_SIZE))
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 256 * 1024
MAX_LINE = 8192
BARE_LF = re.compile(rb"(?<!\r)\n")

TOKEN_CHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

REASONS = {
    100: "Continue", 101: "Switching Protocols", 103: "Early Hints", 200: "OK", 201: "Created",
    202: "Accepted", 204: "No Content", 206: "Partial Content", 301: "Moved Permanently",
    302: "Found", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
    413: "Content Too Large", 418: "I'm a teapot", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}

# Malformed responses for bad=NAME: each is the complete byte string sent before closing.
BAD_RESPONSES = {
    "cl_te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "two_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "bad_cl": b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
    "obs_fold": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Folded: a\r\n b\r\n\r\nhello",
    "bare_lf": b"HTTP/1.1 200 OK\r\nContent-Length: 5\nX-A: b\r\n\r\nhello",
    "bare_cr": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: a\rb\r\n\r\nhello",
    "nul": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: a\x00b\r\n\r\nhello",
    "ws_colon": b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello",
    "bad_chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "long_chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
    "bad_status": b"HTTP/1.1 2x0 OK\r\nContent-Length: 5\r\n\r\nhello",
    "garbage": b"this is not http\r\n\r\n",
    "te_gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
}


_hash_cache = {}
_hash_lock = threading.Lock()


def generated_sha256(n):
    """SHA-256 of the first n bytes of BLOCK repeated (cached: cheap after the first call)."""
    with _hash_lock:
        if n in _hash_cache:
            return _hash_cache[n]
    h = hashlib.sha256()
    full, rest = divmod(n, BLOCK_SIZE)
    for _ in range(full):
        h.update(BLOCK)
    h.update(BLOCK[:rest])
    digest = h.hexdigest()
    with _hash_lock:
        _hash_cache[n] = digest
    return digest


class BadRequest(Exception):
    def __init__(self, reason, status=400):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class PeerClosed(Exception):
    pass


class Reader:
    """Buffered reads from a socket; never holds more than one head or one block."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self):
        data = self.sock.recv(BLOCK_SIZE)
        if not data:
            raise PeerClosed()
        self.buf += data

    def read_head(self):
        """Returns the head (request line + fields, ending with one CRLF) or None on a clean EOF."""
        while True:
            # RFC 9112 2.2: ignore at least one empty line before the request line.
            while self.buf.startswith(b"\r\n"):
                del self.buf[:2]
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[:end + 2])
                del self.buf[:end + 4]
                return head
            if BARE_LF.search(self.buf):
                raise BadRequest("bare LF in head")
            if len(self.buf) > MAX_HEAD:
                raise BadRequest("head too large", 431)
            try:
                self._fill()
            except PeerClosed:
                if not self.buf:
                    return None
                raise

    def read_line(self):
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[:end + 2]
                if b"\n" in line or b"\r" in line:
                    raise BadRequest("bare CR or LF in chunk line")
                return line
            if len(self.buf) > MAX_LINE:
                raise BadRequest("line too long")
            self._fill()

    def read_some(self, limit):
        """Up to `limit` bytes (at least one)."""
        if not self.buf:
            self._fill()
        n = min(limit, len(self.buf))
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data


def check_field_bytes(data, what):
    for b in data:
        if b == 0x09:
            continue
        if b < 0x20 or b == 0x7F:
            raise BadRequest("control byte 0x%02x in %s" % (b, what))


def parse_fields(lines):
    """Strictly parses field lines; returns [(name, value), ...] as str (latin-1)."""
    fields = []
    for line in lines:
        if not line:
            raise BadRequest("empty field line")
        if line[0] in (0x20, 0x09):
            raise BadRequest("obs-fold or whitespace before field")
        colon = line.find(b":")
        if colon <= 0:
            raise BadRequest("field line without name or colon")
        name = line[:colon]
        if any(b not in TOKEN_CHARS for b in name):
            raise BadRequest("invalid field name %r" % name)
        value = line[colon + 1:].strip(b" \t")
        check_field_bytes(value, "field value")
        fields.append((name.decode("latin-1"), value.decode("latin-1")))
    return fields


def parse_request_head(head):
    if b"\x00" in head:
        raise BadRequest("NUL in head")
    lines = head[:-2].split(b"\r\n")
    for line in lines:
        if b"\r" in line or b"\n" in line:
            raise BadRequest("bare CR or LF in head")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise BadRequest("malformed request line")
    method, target, version = parts
    if not method or any(b not in TOKEN_CHARS for b in method):
        raise BadRequest("bad method")
    if not target or any(b <= 0x20 or b >= 0x7F for b in target):
        raise BadRequest("bad request target")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise BadRequest("bad version", 505)
    fields = parse_fields(lines[1:])
    return method.decode(), target.decode("latin-1"), version.decode(), fields


def field_values(fields, name):
    name = name.lower()
    return [v for (n, v) in fields if n.lower() == name]


def connection_tokens(fields):
    toks = set()
    for v in field_values(fields, "connection"):
        for t in v.split(","):
            t = t.strip().lower()
            if t:
                toks.add(t)
    return toks


def body_framing(version, fields):
    """Returns ("none"|"content-length"|"chunked", length)."""
    te = field_values(fields, "transfer-encoding")
    cl = field_values(fields, "content-length")
    if te and cl:
        raise BadRequest("both Content-Length and Transfer-Encoding")
    if te:
        if version == "HTTP/1.0":
            raise BadRequest("Transfer-Encoding on HTTP/1.0")
        codings = [c.strip().lower() for c in ",".join(te).split(",")]
        if codings != ["chunked"]:
            raise BadRequest("Transfer-Encoding other than chunked", 501)
        return "chunked", None
    if cl:
        if len(cl) > 1:
            raise BadRequest("several Content-Length fields")
        v = cl[0]
        if not v or not v.isdigit() or not v.isascii() or len(v) > 18:
            raise BadRequest("malformed Content-Length")
        return "content-length", int(v)
    return "none", 0


class Backend:
    def __init__(self, host, port, small_buffers=False):
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if small_buffers:
            # Small kernel buffers make back-pressure (or its absence) visible upstream.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 * 1024)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 128 * 1024)
        self.sock.bind((host, port))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.name = "%s:%d" % (host, self.port)
        self.conn_ids = itertools.count(1)
        self.lock = threading.Lock()
        self.requests = 0
        self.connections = 0
        self.open_connections = 0

    def serve_forever(self):
        while True:
            conn, addr = self.sock.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=self.handle, args=(conn, addr), daemon=True)
            t.start()

    def stats(self):
        with self.lock:
            return {"requests": self.requests, "connections": self.connections,
                    "open_connections": self.open_connections}

    def handle(self, conn, addr):
        with self.lock:
            self.connections += 1
            self.open_connections += 1
        conn_id = next(self.conn_ids)
        reader = Reader(conn)
        n_requests = 0
        try:
            while True:
                try:
                    head = reader.read_head()
                    if head is None:
                        return
                    method, target, version, fields = parse_request_head(head)
                    framing, length = body_framing(version, fields)
                    path, _, query = target.partition("?")
                    params = urllib.parse.parse_qsl(query, keep_blank_values=True)
                    q = dict(params)
                    if path == "/__stats" and method == "GET":
                        self.send_json(conn, 200, self.stats(), keep_alive=True)
                        continue
                    n_requests += 1
                    with self.lock:
                        self.requests += 1
                    host_values = field_values(fields, "host")
                    if version == "HTTP/1.1" and len(host_values) != 1:
                        raise BadRequest("HTTP/1.1 request without exactly one Host")
                    expects = [v.lower() for v in field_values(fields, "expect")]
                    if "100-continue" in expects and version == "HTTP/1.1" and framing != "none" \
                            and length != 0:
                        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    if q.get("read_delay_ms"):
                        time.sleep(int(q["read_delay_ms"]) / 1000.0)
                    body_info = self.read_body(reader, framing, length)
                except BadRequest as e:
                    self.send_json(conn, e.status, {"backend_error": e.reason,
                                                    "backend": self.name}, keep_alive=False)
                    return
                tokens = connection_tokens(fields)
                keep_alive = "close" not in tokens and (version == "HTTP/1.1" or "keep-alive" in tokens)
                info = {
                    "method": method, "path": path, "query": query, "version": version,
                    "headers": [[n, v] for (n, v) in fields],
                    "conn_id": conn_id, "conn_requests": n_requests, "backend": self.name,
                }
                info.update(body_info)
                if not self.respond(conn, reader, method, path, q, params, fields, info, keep_alive):
                    return
        except (PeerClosed, ConnectionError, OSError):
            return
        finally:
            with self.lock:
                self.open_connections -= 1
            try:
                conn.close()
            except OSError:
                pass

    def read_body(self, reader, framing, length):
        h = hashlib.sha256()
        total = 0
        small = bytearray()
        trailers = []
        if framing == "content-length":
            remaining = length
            while remaining:
                data = reader.read_some(min(remaining, BLOCK_SIZE))
                remaining -= len(data)
                total += len(data)
                h.update(data)
                if len(small) <= 4096:
                    small += data
        elif framing == "chunked":
            while True:
                line = reader.read_line()
                size_text = line.split(b";", 1)[0]
                if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text) \
                        or len(size_text) > 15:
                    raise BadRequest("bad chunk size %r" % line)
                size = int(size_text, 16)
                if size == 0:
                    break
                remaining = size
                while remaining:
                    data = reader.read_some(min(remaining, BLOCK_SIZE))
                    remaining -= len(data)
                    total += len(data)
                    h.update(data)
                    if len(small) <= 4096:
                        small += data
                if reader.read_exact(2) != b"\r\n":
                    raise BadRequest("chunk data not followed by CRLF")
            while True:
                line = reader.read_line()
                if not line:
                    break
                trailers.append(line)
            trailers = [[n, v] for (n, v) in parse_fields(trailers)]
        return {"body_bytes": total, "body_sha256": h.hexdigest(),
                "body": small.decode("latin-1") if total <= 4096 else None,
                "framing": framing, "trailers": trailers}

    @staticmethod
    def send_json(conn, status, obj, keep_alive):
        body = json.dumps(obj).encode()
        head = "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
            status, REASONS.get(status, "Status"), len(body))
        if not keep_alive:
            head += "Connection: close\r\n"
        conn.sendall(head.encode() + b"\r\n" + body)

    def respond(self, conn, reader, method, path, q, params, fields, info, keep_alive):
        """Sends the response; returns False when the connection must close."""
        if path == "/ws":
            return self.websocket(conn, reader, fields, info)
        if q.get("no_response") == "1":
            return False
        if q.get("delay_ms"):
            time.sleep(int(q["delay_ms"]) / 1000.0)
        if q.get("bad") is not None:
            conn.sendall(BAD_RESPONSES[q["bad"]])
            return False
        if q.get("early_hints") == "1":
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n")
        status = int(q.get("status", "200"))
        chunked = q.get("chunked") == "1"
        cut = q.get("cut") == "1"
        eof = q.get("eof") == "1"
        if q.get("close") == "1" or cut or eof:
            keep_alive = False
        no_body = status in (204, 304) or 100 <= status < 200

        if "bytes" in q:
            n = int(q["bytes"])
            body = None
            ctype = "application/octet-stream"
            extra = [("X-Body-Sha256", generated_sha256(n))]
        else:
            body = json.dumps(info).encode()
            n = len(body)
            ctype = "application/json"
            extra = []
        lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status"))]
        if not no_body:
            lines.append("Content-Type: " + ctype)
            if eof:
                pass
            elif chunked:
                lines.append("Transfer-Encoding: chunked")
            else:
                lines.append("Content-Length: %d" % (n + 1000 if cut else n))
        for name, value in extra:
            lines.append("%s: %s" % (name, value))
        names = [v for (k, v) in params if k == "header_name"]
        values = [v for (k, v) in params if k == "header_value"]
        for name, value in zip(names, values):
            lines.append("%s: %s" % (name, value))
        if q.get("hop") == "1":
            lines += ["Connection: X-Resp-Hop" + ("" if keep_alive else ", close"), "X-Resp-Hop: 1",
                      "Keep-Alive: timeout=5", "Proxy-Connection: keep-alive", "TE: trailers",
                      "Trailer: X-Trailer", "Upgrade: h2c", "X-Resp-Normal: 1"]
        elif not keep_alive:
            lines.append("Connection: close")
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if method == "HEAD" or no_body:
            return keep_alive and q.get("drop") != "1"

        to_send = n // 2 if cut else n
        if body is not None:
            pieces = [body[:to_send]]
        else:
            pieces = self.generated_pieces(to_send)
        for piece in pieces:
            if not piece:
                continue
            if chunked:
                conn.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                conn.sendall(piece)
        if cut:
            return False
        if chunked:
            conn.sendall(b"0\r\n\r\n")
        if q.get("drop") == "1":
            return False
        return keep_alive

    @staticmethod
    def generated_pieces(n):
        full, rest = divmod(n, BLOCK_SIZE)
        for _ in range(full):
            yield BLOCK
        if rest:
            yield BLOCK[:rest]

    def websocket(self, conn, reader, fields, info):
        upgrade = [v.lower() for v in field_values(fields, "upgrade")]
        keys = field_values(fields, "sec-websocket-key")
        if "websocket" not in upgrade or "upgrade" not in connection_tokens(fields) or len(keys) != 1:
            self.send_json(conn, 400, {"backend_error": "not a WebSocket handshake",
                                       "received": info}, keep_alive=False)
            return False
        accept = base64.b64encode(hashlib.sha1(keys[0].encode() + WS_GUID).digest()).decode()
        conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
        if reader.buf:
            conn.sendall(bytes(reader.buf))
            reader.buf.clear()
        while True:
            data = conn.recv(BLOCK_SIZE)
            if not data:
                return False
            conn.sendall(data)


def main():
    ap = argparse.ArgumentParser(description="HTTP/1.1 echo backend for Weir")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9080)
    ap.add_argument("--small-buffers", action="store_true",
                    help="small kernel socket buffers (makes back-pressure observable)")
    args = ap.parse_args()
    backend = Backend(args.host, args.port, args.small_buffers)
    print("listening on %s" % backend.name, flush=True)
    try:
        backend.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
