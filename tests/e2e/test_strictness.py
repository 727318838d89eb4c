"""Strictness (RFC 9112 as asked of a proxy): malformed or ambiguous requests are refused with a
gateway error (400 unless said), the connection is closed, and nothing after the bad message
(here a second, "smuggled" request) reaches the backend. Upstream responses with the same faults
become 502. Each case is sent as raw bytes; each is its own test (test_rejects_<case>)."""

import time

from harness import (Conn, assert_eq, assert_gateway_error, assert_raw_gateway_error,
                     assert_status, check, describe, echo, gateway, parse_response, raw)

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def req(head_lines, body=b"", request_line=b"POST / HTTP/1.1"):
    return request_line + b"\r\n" + b"".join(l + b"\r\n" for l in head_lines) + b"\r\n" + body


# (name, raw request, expected status, body_error): body_error cases are found in the body,
# after the head may legitimately have been forwarded, so the backend may have seen the head.
CASES = [
    # framing: Content-Length and Transfer-Encoding
    ("content_length_and_transfer_encoding",
     req([b"Host: x", b"Content-Length: 6", b"Transfer-Encoding: chunked"], b"0\r\n\r\n"), 400, False),
    ("transfer_encoding_and_content_length",
     req([b"Host: x", b"Transfer-Encoding: chunked", b"Content-Length: 5"], b"0\r\n\r\n"), 400, False),
    ("two_different_content_lengths",
     req([b"Host: x", b"Content-Length: 5", b"Content-Length: 6"], b"hello!"), 400, False),
    ("two_equal_content_lengths",
     req([b"Host: x", b"Content-Length: 5", b"Content-Length: 5"], b"hello"), 400, False),
    ("content_length_list", req([b"Host: x", b"Content-Length: 5, 5"], b"hello"), 400, False),
    ("content_length_plus_sign", req([b"Host: x", b"Content-Length: +5"], b"hello"), 400, False),
    ("content_length_minus_sign", req([b"Host: x", b"Content-Length: -5"], b"hello"), 400, False),
    ("content_length_inner_space", req([b"Host: x", b"Content-Length: 1 0"], b"0123456789"), 400, False),
    ("content_length_hex", req([b"Host: x", b"Content-Length: 0x5"], b"hello"), 400, False),
    ("content_length_empty", req([b"Host: x", b"Content-Length: "], b""), 400, False),
    ("content_length_letters", req([b"Host: x", b"Content-Length: 5a"], b"hello"), 400, False),
    ("transfer_encoding_gzip_501", req([b"Host: x", b"Transfer-Encoding: gzip"], b"hello"), 501, False),
    ("transfer_encoding_gzip_chunked_501",
     req([b"Host: x", b"Transfer-Encoding: gzip, chunked"], b"5\r\nhello\r\n0\r\n\r\n"), 501, False),
    ("transfer_encoding_unknown_501", req([b"Host: x", b"Transfer-Encoding: foo"], b"hello"), 501, False),
    ("transfer_encoding_chunked_twice",
     req([b"Host: x", b"Transfer-Encoding: chunked, chunked"], b"5\r\nhello\r\n0\r\n\r\n"), 400, False),
    ("transfer_encoding_two_fields",
     req([b"Host: x", b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
         b"5\r\nhello\r\n0\r\n\r\n"), 400, False),
    ("transfer_encoding_on_http10",
     req([b"Host: x", b"Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\n\r\n",
         b"POST / HTTP/1.0"), 400, False),
    # chunked body framing
    ("chunk_size_not_hex", req([b"Host: x", b"Transfer-Encoding: chunked"], b"zz\r\nhello\r\n0\r\n\r\n"), 400, True),
    ("chunk_size_0x_prefix", req([b"Host: x", b"Transfer-Encoding: chunked"], b"0x5\r\nhello\r\n0\r\n\r\n"), 400, True),
    ("chunk_size_negative", req([b"Host: x", b"Transfer-Encoding: chunked"], b"-5\r\nhello\r\n0\r\n\r\n"), 400, True),
    ("chunk_size_plus", req([b"Host: x", b"Transfer-Encoding: chunked"], b"+5\r\nhello\r\n0\r\n\r\n"), 400, True),
    ("chunk_size_empty", req([b"Host: x", b"Transfer-Encoding: chunked"], b"\r\nhello\r\n0\r\n\r\n"), 400, True),
    ("chunk_size_leading_space", req([b"Host: x", b"Transfer-Encoding: chunked"], b" 5\r\nhello\r\n0\r\n\r\n"), 400, True),
    ("chunk_size_overflow", req([b"Host: x", b"Transfer-Encoding: chunked"],
                                b"10000000000000005\r\nhello\r\n0\r\n\r\n"), 400, True),
    ("chunk_size_bare_lf", req([b"Host: x", b"Transfer-Encoding: chunked"], b"5\nhello\r\n0\r\n\r\n"), 400, True),
    ("chunk_longer_than_declared",
     req([b"Host: x", b"Transfer-Encoding: chunked"], b"3\r\nhello\r\n0\r\n\r\n"), 400, True),
    ("chunk_data_without_crlf",
     req([b"Host: x", b"Transfer-Encoding: chunked"], b"5\r\nhelloXY0\r\n\r\n"), 400, True),
    # field syntax
    ("whitespace_before_colon", req([b"Host: x", b"X-Foo : bar", b"Content-Length: 0"]), 400, False),
    ("whitespace_before_colon_in_host", req([b"Host : x", b"Content-Length: 0"]), 400, False),
    ("tab_before_colon", req([b"Host: x", b"Content-Length\t: 0"]), 400, False),
    ("whitespace_before_first_field", req([b" X-Foo: a", b"Host: x", b"Content-Length: 0"]), 400, False),
    ("obs_fold_space", req([b"Host: x", b"X-Foo: a", b" b", b"Content-Length: 0"]), 400, False),
    ("obs_fold_tab", req([b"Host: x", b"X-Foo: a", b"\tb", b"Content-Length: 0"]), 400, False),
    ("nul_in_value", req([b"Host: x", b"X-Foo: a\x00b", b"Content-Length: 0"]), 400, False),
    ("nul_in_name", req([b"Host: x", b"X-F\x00o: a", b"Content-Length: 0"]), 400, False),
    ("bare_cr_in_value", req([b"Host: x", b"X-Foo: a\rb", b"Content-Length: 0"]), 400, False),
    ("bare_lf_in_value", req([b"Host: x", b"X-Foo: a\nX-Bar: b", b"Content-Length: 0"]), 400, False),
    ("bare_lf_line_endings", b"GET / HTTP/1.1\nHost: x\nContent-Length: 0\n\n", 400, False),
    ("bare_lf_after_request_line", b"GET / HTTP/1.1\nHost: x\r\nContent-Length: 0\r\n\r\n", 400, False),
    ("control_byte_in_value", req([b"Host: x", b"X-Foo: a\x01b", b"Content-Length: 0"]), 400, False),
    ("escape_byte_in_value", req([b"Host: x", b"X-Foo: a\x1bb", b"Content-Length: 0"]), 400, False),
    ("del_in_value", req([b"Host: x", b"X-Foo: a\x7fb", b"Content-Length: 0"]), 400, False),
    ("space_in_field_name", req([b"Host: x", b"X Foo: a", b"Content-Length: 0"]), 400, False),
    ("empty_field_name", req([b"Host: x", b": a", b"Content-Length: 0"]), 400, False),
    ("field_without_colon", req([b"Host: x", b"XFoo", b"Content-Length: 0"]), 400, False),
    ("non_token_field_name", req([b"Host: x", b"X(Foo): a", b"Content-Length: 0"]), 400, False),
    # Host
    ("missing_host_http11", req([b"Content-Length: 0"]), 400, False),
    ("duplicate_host", req([b"Host: x", b"Host: x", b"Content-Length: 0"]), 400, False),
    ("different_hosts", req([b"Host: a.example", b"Host: b.example", b"Content-Length: 0"]), 400, False),
    ("host_with_space", req([b"Host: a b", b"Content-Length: 0"]), 400, False),
    ("host_with_slash", req([b"Host: a/b", b"Content-Length: 0"]), 400, False),
    ("host_with_userinfo", req([b"Host: user@a.example", b"Content-Length: 0"]), 400, False),
    # request line and target
    ("target_without_slash", req([b"Host: x"], request_line=b"GET abc HTTP/1.1"), 400, False),
    ("target_with_space", req([b"Host: x"], request_line=b"GET /a b HTTP/1.1"), 400, False),
    ("target_with_control_byte", req([b"Host: x"], request_line=b"GET /a\x01b HTTP/1.1"), 400, False),
    ("target_with_8bit_byte", req([b"Host: x"], request_line=b"GET /caf\xe9 HTTP/1.1"), 400, False),
    ("target_bad_escape", req([b"Host: x"], request_line=b"GET /a%zz HTTP/1.1"), 400, False),
    ("target_truncated_escape", req([b"Host: x"], request_line=b"GET /a%4 HTTP/1.1"), 400, False),
    ("target_encoded_nul", req([b"Host: x"], request_line=b"GET /a%00b HTTP/1.1"), 400, False),
    ("request_line_double_space", req([b"Host: x"], request_line=b"GET  / HTTP/1.1"), 400, False),
    ("request_line_empty_target", req([b"Host: x"], request_line=b"GET  HTTP/1.1"), 400, False),
    ("request_line_trailing_space", req([b"Host: x"], request_line=b"GET / HTTP/1.1 "), 400, False),
    ("request_line_bad_version", req([b"Host: x"], request_line=b"GET / HTTX/1.1"), 400, False),
    ("request_line_bad_method", req([b"Host: x"], request_line=b"G(T / HTTP/1.1"), 400, False),
]


def check_rejected(raw_request, status, body_error):
    with gateway() as (w, b):
        data = raw(w.port, raw_request + SMUGGLED, timeout=3.0)
        assert_raw_gateway_error(data, status, closed=True)
        time.sleep(0.1)
        seen = b.stats()["requests"]
        allowed = 1 if body_error else 0
        check(seen <= allowed, "the backend received %d request(s) (at most %d allowed): the gateway "
              "forwarded a message it should have refused" % (seen, allowed))
        check(w.alive(), "weir died")


def _make(raw_request, status, body_error):
    def test():
        check_rejected(raw_request, status, body_error)
    return test


for _name, _raw, _status, _body_error in CASES:
    _fn = _make(_raw, _status, _body_error)
    _fn.__name__ = "test_rejects_" + _name
    _fn.__qualname__ = _fn.__name__
    _fn.__doc__ = "%r -> %d" % (_raw, _status)
    globals()[_fn.__name__] = _fn
del _fn


# ---------------------------------------------------------------- what must still pass

def test_accepts_tab_inside_a_field_value():
    with gateway() as (w, b):
        data = raw(w.port, req([b"Host: x", b"X-Foo: a\tb", b"Content-Length: 0", b"Connection: close"]))
        r = parse_response(data)
        assert_status(r, 200)
        assert_eq(echo(r).headers_named("x-foo"), ["a\tb"], "X-Foo at the upstream")


def test_accepts_optional_whitespace_around_field_values():
    # RFC 9110 5.5: leading and trailing OWS (SP / HTAB) is not part of a field value.
    with gateway() as (w, b):
        for value in (b"5", b" 5", b"5 ", b"  5  ", b"\t5", b"5\t", b"\t5 \t"):
            data = raw(w.port, req([b"Host:x", b"Content-Length:" + value, b"Connection: close"], b"hello"))
            r = parse_response(data)
            assert_status(r, 200, "status for Content-Length:%r" % value)
            assert_eq(echo(r)["body_bytes"], 5, "body size for Content-Length:%r" % value)
        for value in (b"v", b"  v  ", b"\tv\t", b" \t v \t "):
            data = raw(w.port, req([b"Host: x", b"X-Foo:" + value, b"Connection: close"]))
            r = parse_response(data)
            assert_status(r, 200, "status for X-Foo:%r" % value)
            assert_eq(echo(r).headers_named("x-foo"), ["v"], "X-Foo at the upstream for X-Foo:%r" % value)


def test_accepts_http10_without_host():
    with gateway() as (w, b):
        data = raw(w.port, b"GET /ten HTTP/1.0\r\n\r\n")
        r = parse_response(data)
        assert_status(r, 200)
        assert_eq(echo(r)["path"], "/ten", "upstream path")
        check(data.closed, "an HTTP/1.0 request without keep-alive must be answered then closed")


def test_accepts_a_valid_chunked_request_with_extensions_and_trailers():
    with gateway() as (w, b):
        body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        data = raw(w.port, req([b"Host: x", b"Transfer-Encoding: chunked", b"Connection: close"], body))
        r = parse_response(data)
        assert_status(r, 200)
        e = echo(r)
        assert_eq((e["body_bytes"], e["body"]), (11, "hello world"), "body at the upstream")


def test_accepts_an_empty_line_before_the_request_line():
    with gateway() as (w, b):
        data = raw(w.port, b"\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert_status(parse_response(data), 200)


# ---------------------------------------------------------------- upstream responses -> 502

UPSTREAM_HEAD_FAULTS = ["cl_te", "two_cl", "bad_cl", "obs_fold", "bare_lf", "bare_cr", "nul",
                        "ws_colon", "bad_status", "garbage"]


def _make_upstream(name):
    def test():
        with gateway() as (w, b):
            with Conn(w.port) as c:
                r = c.request("GET", "/?bad=" + name)
            assert_gateway_error(r, 502)
            check(w.alive(), "weir died")
            with Conn(w.port) as c:
                assert_status(c.request("GET", "/"), 200, "the next request")
    return test


for _name in UPSTREAM_HEAD_FAULTS:
    _fn = _make_upstream(_name)
    _fn.__name__ = "test_upstream_response_with_fault_%s_is_502" % _name
    _fn.__qualname__ = _fn.__name__
    globals()[_fn.__name__] = _fn
del _fn


def test_upstream_response_with_bad_chunk_framing_never_reaches_the_client_whole():
    # The fault is in the body: the head may already be on its way to the client, so the client
    # gets either a 502 or a response cut short on a closed connection - never one that looks whole.
    for name in ("bad_chunk", "long_chunk"):
        with gateway() as (w, b):
            data = raw(w.port, b"GET /?bad=%s HTTP/1.1\r\nHost: x\r\n\r\n" % name.encode(), timeout=3)
            r = parse_response(data)
            if r is not None and r.status == 502:
                assert_gateway_error(r, 502)
            else:
                check(data.closed, "bad=%s: the connection should be closed" % name)
                check(r is None or not r.complete,
                      "bad=%s: the client got a response that looks whole:\n%s" % (name, describe(r)))
