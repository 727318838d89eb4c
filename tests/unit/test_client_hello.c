/* Specification of the ClientHello reader behind TLS passthrough: the server name from real
 * ClientHellos (captured from `openssl s_client`), however the bytes are split, and a clear
 * verdict for everything that is not a ClientHello. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tls/client_hello.h"

/* `openssl s_client -servername DB.Example.com` (OpenSSL 3.0, TLS 1.3 hello) */
static const uint8_t tls13_sni[] = {
    0x16, 0x03, 0x01, 0x01, 0x3b, 0x01, 0x00, 0x01, 0x37, 0x03, 0x03, 0x80, 0x0c, 0xa6, 0x88, 0xf2,
    0x0a, 0xcc, 0x82, 0xb8, 0x96, 0x9e, 0xfd, 0x16, 0xf6, 0xaf, 0xe9, 0xb0, 0x05, 0x91, 0xef, 0xc0,
    0xc7, 0x45, 0x5a, 0xb4, 0x18, 0x6c, 0xb5, 0x6b, 0xa2, 0xe6, 0x68, 0x20, 0xf3, 0x39, 0x5e, 0x78,
    0xc9, 0x42, 0x7c, 0xe6, 0xa9, 0xd7, 0x03, 0x4a, 0x97, 0x0f, 0x83, 0x82, 0xc3, 0x6a, 0x40, 0x40,
    0x67, 0xae, 0xbd, 0x05, 0x9a, 0xce, 0xfc, 0x91, 0x6d, 0xe9, 0xfc, 0x36, 0x00, 0x3e, 0x13, 0x02,
    0x13, 0x03, 0x13, 0x01, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa,
    0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23, 0xc0, 0x27,
    0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d,
    0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0xb0,
    0x00, 0x00, 0x00, 0x13, 0x00, 0x11, 0x00, 0x00, 0x0e, 0x44, 0x42, 0x2e, 0x45, 0x78, 0x61, 0x6d,
    0x70, 0x6c, 0x65, 0x2e, 0x63, 0x6f, 0x6d, 0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00,
    0x0a, 0x00, 0x16, 0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, 0x01,
    0x00, 0x01, 0x01, 0x01, 0x02, 0x01, 0x03, 0x01, 0x04, 0x00, 0x23, 0x00, 0x00, 0x00, 0x16, 0x00,
    0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06,
    0x03, 0x08, 0x07, 0x08, 0x08, 0x08, 0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08,
    0x06, 0x04, 0x01, 0x05, 0x01, 0x06, 0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05,
    0x02, 0x06, 0x02, 0x00, 0x2b, 0x00, 0x09, 0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03, 0x01,
    0x00, 0x2d, 0x00, 0x02, 0x01, 0x01, 0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20,
    0x1a, 0x58, 0x4e, 0xfe, 0x3a, 0xb2, 0x6f, 0xa1, 0x6a, 0x2f, 0xce, 0x90, 0x2c, 0xff, 0x52, 0xce,
    0xa2, 0x16, 0x54, 0x8a, 0xcd, 0x6d, 0xf6, 0xbb, 0x84, 0x9e, 0x15, 0xab, 0xe7, 0x81, 0x7d, 0x35,
};
/* `openssl s_client -tls1_2 -servername api.internal.example.com` */
static const uint8_t tls12_sni[] = {
    0x16, 0x03, 0x01, 0x00, 0xd8, 0x01, 0x00, 0x00, 0xd4, 0x03, 0x03, 0xb3, 0x46, 0xac, 0x8b, 0xbd,
    0xa7, 0xd1, 0x8c, 0xed, 0xe8, 0xf2, 0xeb, 0xf3, 0x35, 0xdc, 0xf2, 0x01, 0xc7, 0x42, 0x0b, 0x0e,
    0x57, 0x33, 0xbf, 0x97, 0xb5, 0x30, 0xda, 0x48, 0x35, 0xaf, 0x30, 0x00, 0x00, 0x38, 0xc0, 0x2c,
    0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa, 0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e,
    0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23, 0xc0, 0x27, 0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14,
    0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c,
    0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0x73, 0x00, 0x00, 0x00, 0x1d, 0x00, 0x1b,
    0x00, 0x00, 0x18, 0x61, 0x70, 0x69, 0x2e, 0x69, 0x6e, 0x74, 0x65, 0x72, 0x6e, 0x61, 0x6c, 0x2e,
    0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x63, 0x6f, 0x6d, 0x00, 0x0b, 0x00, 0x04, 0x03,
    0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x0c, 0x00, 0x0a, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00,
    0x19, 0x00, 0x18, 0x00, 0x23, 0x00, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00,
    0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08,
    0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01, 0x06,
    0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02,
};
/* `openssl s_client -noservername` */
static const uint8_t no_sni[] = {
    0x16, 0x03, 0x01, 0x01, 0x24, 0x01, 0x00, 0x01, 0x20, 0x03, 0x03, 0xd2, 0xfb, 0xe2, 0x16, 0xf9,
    0xc1, 0x44, 0x17, 0xb8, 0xe1, 0xc1, 0x9a, 0x75, 0x76, 0xcf, 0x34, 0xc3, 0x40, 0x9e, 0x6b, 0x68,
    0xb1, 0xac, 0xf8, 0x76, 0x13, 0xb0, 0x88, 0x6a, 0x71, 0x8c, 0x64, 0x20, 0xc5, 0x8b, 0xed, 0x43,
    0x38, 0x04, 0x56, 0x68, 0x5b, 0x0a, 0xf5, 0xa9, 0x99, 0xa1, 0x13, 0x5a, 0x06, 0xf6, 0xce, 0x30,
    0xd9, 0x9f, 0x20, 0xb4, 0x8f, 0x62, 0x2c, 0x79, 0xce, 0xed, 0x72, 0xdd, 0x00, 0x3e, 0x13, 0x02,
    0x13, 0x03, 0x13, 0x01, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa,
    0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23, 0xc0, 0x27,
    0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d,
    0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0x99,
    0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x16, 0x00, 0x14, 0x00, 0x1d,
    0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, 0x01, 0x00, 0x01, 0x01, 0x01, 0x02, 0x01, 0x03,
    0x01, 0x04, 0x00, 0x23, 0x00, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x0d,
    0x00, 0x2a, 0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08, 0x09,
    0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01, 0x06, 0x01,
    0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02, 0x00, 0x2b, 0x00, 0x09,
    0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03, 0x01, 0x00, 0x2d, 0x00, 0x02, 0x01, 0x01, 0x00,
    0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, 0x12, 0xde, 0xa8, 0x54, 0x75, 0x18, 0xb2,
    0x97, 0x2b, 0xe0, 0x26, 0xca, 0xfe, 0x1f, 0x40, 0xed, 0x21, 0xbd, 0x5e, 0xb3, 0x6d, 0x03, 0x44,
    0xb7, 0xeb, 0x72, 0x1f, 0x95, 0x20, 0x5f, 0xdc, 0x75,
};

static enum client_hello_result parse(const uint8_t *p, size_t n, struct client_hello *h) {
    return client_hello_parse(p, n, h);
}

/* Re-frames the handshake message of the one-record hello `in` into records of at most `frag`
 * payload bytes. Returns the new length; `out` must be large enough. */
static size_t reframe(const uint8_t *in, size_t in_len, size_t frag, uint8_t *out) {
    const uint8_t *msg = in + 5;
    size_t msg_len = in_len - 5, o = 0;
    for (size_t off = 0; off < msg_len; off += frag) {
        size_t n = msg_len - off < frag ? msg_len - off : frag;
        out[o++] = 22;
        out[o++] = 3;
        out[o++] = 1;
        out[o++] = (uint8_t)(n >> 8);
        out[o++] = (uint8_t)n;
        memcpy(out + o, msg + off, n);
        o += n;
    }
    return o;
}

/* A ClientHello built from parts: `sni` (NULL: no server_name extension) and a padding
 * extension (RFC 7685) of `padding` bytes, as one handshake message of `*msg_len` bytes. */
static uint8_t *build_hello(const char *sni, size_t padding, size_t *msg_len) {
    size_t sni_len = sni ? strlen(sni) : 0;
    size_t ext_len = (sni ? 4 + 2 + 3 + sni_len : 0) + 4 + padding;
    size_t body = 2 + 32 + 1 + 2 + 2 + 2 + 2 + ext_len;
    uint8_t *m = calloc(1, 4 + body), *p = m;
    *p++ = 1;
    *p++ = (uint8_t)(body >> 16), *p++ = (uint8_t)(body >> 8), *p++ = (uint8_t)body;
    *p++ = 3, *p++ = 3;
    p += 32;                                      /* random */
    *p++ = 0;                                     /* session id */
    *p++ = 0, *p++ = 2, *p++ = 0x13, *p++ = 0x01; /* one suite */
    *p++ = 1, *p++ = 0;                           /* null compression */
    *p++ = (uint8_t)(ext_len >> 8), *p++ = (uint8_t)ext_len;
    if (sni) {
        *p++ = 0, *p++ = 0;
        *p++ = (uint8_t)((sni_len + 5) >> 8), *p++ = (uint8_t)(sni_len + 5);
        *p++ = (uint8_t)((sni_len + 3) >> 8), *p++ = (uint8_t)(sni_len + 3);
        *p++ = 0;
        *p++ = (uint8_t)(sni_len >> 8), *p++ = (uint8_t)sni_len;
        memcpy(p, sni, sni_len);
        p += sni_len;
    }
    *p++ = 0, *p++ = 21, *p++ = (uint8_t)(padding >> 8), *p++ = (uint8_t)padding;
    p += padding;
    *msg_len = (size_t)(p - m);
    return m;
}

/* The message `m` framed into records of `frag` bytes; returns the length. */
static size_t frame(const uint8_t *m, size_t m_len, size_t frag, uint8_t *out) {
    uint8_t *tmp = malloc(m_len + 5);
    memcpy(tmp + 5, m, m_len);
    size_t n = reframe(tmp, m_len + 5, frag, out);
    free(tmp);
    return n;
}

static void test_tls13_hello_gives_its_server_name_lower_cased(void **state) {
    (void)state;
    struct client_hello h;
    assert_int_equal(parse(tls13_sni, sizeof tls13_sni, &h), CLIENT_HELLO_SNI);
    assert_string_equal(h.sni, "db.example.com");
    assert_int_equal(h.sni_len, 14);
    assert_int_equal(h.bytes, sizeof tls13_sni);
}

static void test_tls12_hello_gives_its_server_name(void **state) {
    (void)state;
    struct client_hello h;
    assert_int_equal(parse(tls12_sni, sizeof tls12_sni, &h), CLIENT_HELLO_SNI);
    assert_string_equal(h.sni, "api.internal.example.com");
}

static void test_hello_without_server_name_is_no_sni(void **state) {
    (void)state;
    struct client_hello h;
    assert_int_equal(parse(no_sni, sizeof no_sni, &h), CLIENT_HELLO_NO_SNI);
    assert_string_equal(h.sni, "");
}

static void test_every_prefix_needs_more(void **state) {
    (void)state;
    struct client_hello h;
    for (size_t n = 0; n < sizeof tls13_sni; n++)
        assert_int_equal(parse(tls13_sni, n, &h), CLIENT_HELLO_NEED_MORE);
    for (size_t n = 0; n < sizeof no_sni; n++)
        assert_int_equal(parse(no_sni, n, &h), CLIENT_HELLO_NEED_MORE);
}

static void test_bytes_after_the_hello_are_not_counted(void **state) {
    (void)state;
    uint8_t buf[sizeof tls13_sni + 10];
    memcpy(buf, tls13_sni, sizeof tls13_sni);
    memset(buf + sizeof tls13_sni, 0x17, 10); /* e.g. early data records */
    struct client_hello h;
    assert_int_equal(parse(buf, sizeof buf, &h), CLIENT_HELLO_SNI);
    assert_int_equal(h.bytes, sizeof tls13_sni);
}

static void test_hello_fragmented_across_many_records(void **state) {
    (void)state;
    static const size_t frags[] = {1, 2, 7, 64, 100, 300};
    for (size_t f = 0; f < sizeof frags / sizeof frags[0]; f++) {
        uint8_t buf[8 * sizeof tls13_sni];
        size_t n = reframe(tls13_sni, sizeof tls13_sni, frags[f], buf);
        struct client_hello h;
        assert_int_equal(parse(buf, n, &h), CLIENT_HELLO_SNI);
        assert_string_equal(h.sni, "db.example.com");
        assert_int_equal(h.bytes, n);
        /* and every prefix of the records is a prefix */
        for (size_t k = 0; k < n; k++)
            assert_int_equal(parse(buf, k, &h), CLIENT_HELLO_NEED_MORE);
    }
}

static void test_large_hello_over_several_records_within_the_bound(void **state) {
    (void)state;
    size_t m_len;
    uint8_t *m = build_hello("big.example.com", 12000, &m_len);
    uint8_t *buf = malloc(m_len + 64);
    size_t n = frame(m, m_len, 4096, buf);
    assert_true(n <= CLIENT_HELLO_MAX_BYTES);
    struct client_hello h;
    assert_int_equal(parse(buf, n, &h), CLIENT_HELLO_SNI);
    assert_string_equal(h.sni, "big.example.com");
    assert_int_equal(parse(buf, n - 1, &h), CLIENT_HELLO_NEED_MORE);
    free(buf);
    free(m);
}

static void test_hello_longer_than_the_bound_is_too_large(void **state) {
    (void)state;
    size_t m_len;
    uint8_t *m = build_hello("big.example.com", 20000, &m_len);
    uint8_t *buf = malloc(m_len + 64);
    size_t n = frame(m, m_len, 16384, buf);
    struct client_hello h;
    /* known as soon as the handshake header announces the length */
    assert_int_equal(parse(buf, 9, &h), CLIENT_HELLO_TOO_LARGE);
    assert_int_equal(parse(buf, n, &h), CLIENT_HELLO_TOO_LARGE);
    free(buf);
    free(m);
    /* a sender of endless tiny records reaches the bound without announcing anything large */
    m = build_hello("x.example.com", 9000, &m_len);
    buf = malloc(m_len * 6 + 64);
    n = frame(m, m_len, 1, buf);
    assert_true(n > CLIENT_HELLO_MAX_BYTES);
    assert_int_equal(parse(buf, CLIENT_HELLO_MAX_BYTES - 1, &h), CLIENT_HELLO_NEED_MORE);
    assert_int_equal(parse(buf, CLIENT_HELLO_MAX_BYTES, &h), CLIENT_HELLO_TOO_LARGE);
    assert_int_equal(parse(buf, n, &h), CLIENT_HELLO_TOO_LARGE);
    free(buf);
    free(m);
}

static void test_plain_text_is_malformed_at_once(void **state) {
    (void)state;
    struct client_hello h;
    assert_int_equal(parse((const uint8_t *)"G", 1, &h), CLIENT_HELLO_MALFORMED);
    const char *get = "GET / HTTP/1.1\r\nHost: db.example.com\r\n\r\n";
    assert_int_equal(parse((const uint8_t *)get, strlen(get), &h), CLIENT_HELLO_MALFORMED);
    const uint8_t sslv2[] = {0x80, 0x2e, 0x01, 0x00, 0x02};
    assert_int_equal(parse(sslv2, sizeof sslv2, &h), CLIENT_HELLO_MALFORMED);
    const uint8_t not_v3[] = {0x16, 0x02};
    assert_int_equal(parse(not_v3, sizeof not_v3, &h), CLIENT_HELLO_MALFORMED);
}

static void test_other_records_and_messages_are_malformed(void **state) {
    (void)state;
    struct client_hello h;
    uint8_t buf[sizeof tls13_sni];
    memcpy(buf, tls13_sni, sizeof buf);
    buf[0] = 0x17; /* application data */
    assert_int_equal(parse(buf, sizeof buf, &h), CLIENT_HELLO_MALFORMED);
    memcpy(buf, tls13_sni, sizeof buf);
    buf[5] = 2; /* a ServerHello */
    assert_int_equal(parse(buf, 6, &h), CLIENT_HELLO_MALFORMED);
    assert_int_equal(parse(buf, sizeof buf, &h), CLIENT_HELLO_MALFORMED);
    const uint8_t empty_record[] = {0x16, 0x03, 0x01, 0x00, 0x00};
    assert_int_equal(parse(empty_record, sizeof empty_record, &h), CLIENT_HELLO_MALFORMED);
    const uint8_t huge_record[] = {0x16, 0x03, 0x01, 0x48, 0x01};
    assert_int_equal(parse(huge_record, sizeof huge_record, &h), CLIENT_HELLO_MALFORMED);
}

static void test_lengths_that_do_not_add_up_are_malformed(void **state) {
    (void)state;
    struct client_hello h;
    uint8_t buf[sizeof tls13_sni];
    /* the hello claims fewer bytes than its record holds */
    memcpy(buf, tls13_sni, sizeof buf);
    buf[8] = (uint8_t)(buf[8] - 1);
    assert_int_equal(parse(buf, sizeof buf, &h), CLIENT_HELLO_MALFORMED);
    /* a session id longer than 32 bytes */
    memcpy(buf, tls13_sni, sizeof buf);
    buf[5 + 4 + 2 + 32] = 33;
    assert_int_equal(parse(buf, sizeof buf, &h), CLIENT_HELLO_MALFORMED);
    /* the extensions' length runs past the message */
    size_t m_len;
    uint8_t *m = build_hello("a.example.com", 0, &m_len);
    m[4 + 2 + 32 + 1 + 2 + 2 + 2] = 0xff;
    uint8_t out[512];
    size_t n = frame(m, m_len, 16384, out);
    assert_int_equal(parse(out, n, &h), CLIENT_HELLO_MALFORMED);
    free(m);
    /* flipping any single length byte of the real hello never crashes or reads out of bounds
     * (ASan checks the latter); every answer is one of the verdicts */
    for (size_t i = 0; i < sizeof tls13_sni; i++) {
        memcpy(buf, tls13_sni, sizeof buf);
        buf[i] ^= 0xff;
        enum client_hello_result r = parse(buf, sizeof buf, &h);
        assert_true(r <= CLIENT_HELLO_TOO_LARGE);
    }
}

static void test_server_names_that_are_not_host_names_are_malformed(void **state) {
    (void)state;
    static const char *const bad[] = {"db.example.com.",    "db..example.com", "db example.com",
                                      "db.example.com\x01", ".example.com",    "db/x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t m_len;
        uint8_t *m = build_hello(bad[i], 0, &m_len);
        uint8_t out[512];
        size_t n = frame(m, m_len, 16384, out);
        struct client_hello h;
        assert_int_equal(parse(out, n, &h), CLIENT_HELLO_MALFORMED);
        free(m);
    }
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    size_t m_len;
    uint8_t *m = build_hello(longname, 0, &m_len);
    uint8_t out[1024];
    size_t n = frame(m, m_len, 16384, out);
    struct client_hello h;
    assert_int_equal(parse(out, n, &h), CLIENT_HELLO_MALFORMED);
    free(m);
}

static void test_hello_without_extensions_is_no_sni(void **state) {
    (void)state;
    /* TLS 1.2 (RFC 5246 7.4.1.2) lets a ClientHello end after the compression methods */
    uint8_t m[4 + 41] = {1, 0, 0, 41, 3, 3}; /* version, then 32 bytes of random */
    uint8_t *p = m + 4 + 2 + 32;
    *p++ = 0;                                  /* session id */
    *p++ = 0, *p++ = 2, *p++ = 0, *p++ = 0x2f; /* one suite */
    *p++ = 1, *p++ = 0;                        /* null compression, and the end */
    assert_int_equal(p - m, sizeof m);
    uint8_t out[64];
    size_t n = frame(m, sizeof m, 16384, out);
    struct client_hello h;
    assert_int_equal(parse(out, n, &h), CLIENT_HELLO_NO_SNI);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls13_hello_gives_its_server_name_lower_cased),
        cmocka_unit_test(test_tls12_hello_gives_its_server_name),
        cmocka_unit_test(test_hello_without_server_name_is_no_sni),
        cmocka_unit_test(test_every_prefix_needs_more),
        cmocka_unit_test(test_bytes_after_the_hello_are_not_counted),
        cmocka_unit_test(test_hello_fragmented_across_many_records),
        cmocka_unit_test(test_large_hello_over_several_records_within_the_bound),
        cmocka_unit_test(test_hello_longer_than_the_bound_is_too_large),
        cmocka_unit_test(test_plain_text_is_malformed_at_once),
        cmocka_unit_test(test_other_records_and_messages_are_malformed),
        cmocka_unit_test(test_lengths_that_do_not_add_up_are_malformed),
        cmocka_unit_test(test_server_names_that_are_not_host_names_are_malformed),
        cmocka_unit_test(test_hello_without_extensions_is_no_sni),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
