"""Upgrade: a WebSocket handshake through the gateway, then bytes tunnelled both ways."""

import base64
import hashlib
import os
import socket
import threading
import time

from harness import (Conn, assert_eq, assert_header, assert_status, check, echo, gateway,
                     parse_response)

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def handshake(port, path="/ws"):
    """Opens a socket and performs the handshake; returns (socket, response, leftover bytes)."""
    key = base64.b64encode(os.urandom(16)).decode()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(("GET %s HTTP/1.1\r\nHost: ws.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        d = s.recv(65536)
        if not d:
            break
        data += d
    head, sep, rest = data.partition(b"\r\n\r\n")
    r = parse_response(head + sep)
    expected = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
    return s, r, rest, expected


def recv_exact(s, n, already=b""):
    buf = bytearray(already)
    while len(buf) < n:
        d = s.recv(min(65536, n - len(buf)))
        if not d:
            break
        buf += d
    return bytes(buf)


def test_websocket_handshake_and_echo_through_the_gateway():
    with gateway() as (w, b):
        s, r, rest, accept = handshake(w.port)
        try:
            assert_status(r, 101)
            assert_header(r, "Sec-WebSocket-Accept", accept)
            assert_eq((r.header("upgrade") or "").lower(), "websocket", "Upgrade header", r)
            check("upgrade" in (r.header("connection") or "").lower(), "Connection: Upgrade missing", r)
            for msg in (b"hello", b"\x81\x05frame", bytes(range(256))):
                s.sendall(msg)
                got = recv_exact(s, len(msg), rest)
                rest = b""
                assert_eq(got, msg, "echoed bytes")
        finally:
            s.close()


def test_websocket_tunnel_carries_a_megabyte_each_way_concurrently():
    with gateway() as (w, b):
        s, r, rest, accept = handshake(w.port)
        try:
            assert_status(r, 101)
            payload = os.urandom(1024 * 1024)
            errors = []

            def writer():
                try:
                    for i in range(0, len(payload), 16384):
                        s.sendall(payload[i:i + 16384])
                except OSError as e:
                    errors.append(e)
            t = threading.Thread(target=writer, daemon=True)
            t.start()
            s.settimeout(10)
            got = recv_exact(s, len(payload), rest)
            t.join(10)
            check(not errors, "writing to the tunnel failed: %r" % errors)
            assert_eq(len(got), len(payload), "bytes echoed")
            check(got == payload, "echoed bytes differ")
        finally:
            s.close()


def test_closing_the_client_side_closes_the_tunnel():
    with gateway() as (w, b):
        s, r, rest, accept = handshake(w.port)
        assert_status(r, 101)
        s.sendall(b"x")
        recv_exact(s, 1, rest)
        s.close()
        deadline = time.monotonic() + 3
        while b.stats()["open_connections"] > 1:
            check(time.monotonic() < deadline, "the backend side of the tunnel stayed open after the "
                  "client closed")
            time.sleep(0.05)
        with Conn(w.port) as c:
            assert_eq(echo(c.request("GET", "/after"))["path"], "/after", "a plain request afterwards")
