#include "tls/client_hello.h"

#include <stdbool.h>
#include <string.h>

#define RECORD_HEADER 5
#define RECORD_HANDSHAKE 22
#define RECORD_MAX_PAYLOAD 16384 /* RFC 8446 5.1: 2^14 */
#define HANDSHAKE_CLIENT_HELLO 1
#define EXT_SERVER_NAME 0
#define NAME_TYPE_HOST 0

/* A bounds-checked reader over the joined handshake message. */
struct reader {
    const uint8_t *p;
    size_t left;
    bool bad;
};

static unsigned take(struct reader *r, size_t n) {
    if (r->bad || r->left < n) {
        r->bad = true;
        return 0;
    }
    unsigned v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | r->p[i];
    r->p += n;
    r->left -= n;
    return v;
}

/* A sub-reader over the next `n` bytes (a length-prefixed vector), which `r` skips. */
static struct reader sub(struct reader *r, size_t n) {
    struct reader s = {r->p, n, r->bad || r->left < n};
    if (s.bad) {
        r->bad = true;
        return s;
    }
    r->p += n;
    r->left -= n;
    return s;
}

static bool host_name_valid(const uint8_t *name, size_t len) {
    if (len == 0 || len > CLIENT_HELLO_SNI_MAX) return false;
    if (name[0] == '.' || name[len - 1] == '.') return false; /* RFC 6066: no trailing dot */
    for (size_t i = 0; i < len; i++) {
        uint8_t c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.';
        if (!ok) return false;
        if (c == '.' && name[i + 1] == '.') return false; /* an empty label */
    }
    return true;
}

/* The server_name extension's body (RFC 6066 3). */
static enum client_hello_result server_name(struct reader ext, struct client_hello *out) {
    struct reader list = sub(&ext, take(&ext, 2));
    if (ext.bad || ext.left || list.left == 0) return CLIENT_HELLO_MALFORMED;
    while (list.left) {
        unsigned type = take(&list, 1);
        struct reader name = sub(&list, take(&list, 2));
        if (list.bad) return CLIENT_HELLO_MALFORMED;
        if (type != NAME_TYPE_HOST) continue;
        if (!host_name_valid(name.p, name.left)) return CLIENT_HELLO_MALFORMED;
        for (size_t i = 0; i < name.left; i++) {
            char c = (char)name.p[i];
            out->sni[i] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
        }
        out->sni_len = name.left;
        out->sni[out->sni_len] = '\0';
        return CLIENT_HELLO_SNI;
    }
    return CLIENT_HELLO_NO_SNI;
}

/* The ClientHello body (RFC 8446 4.1.2; TLS 1.0-1.2's has the same layout). */
static enum client_hello_result hello_body(struct reader r, struct client_hello *out) {
    take(&r, 2);                    /* legacy_version */
    take(&r, 32);                   /* random */
    unsigned sid_len = take(&r, 1); /* legacy_session_id */
    if (sid_len > 32) return CLIENT_HELLO_MALFORMED;
    sub(&r, sid_len);
    unsigned suites = take(&r, 2);
    if (suites < 2 || suites % 2) return CLIENT_HELLO_MALFORMED;
    sub(&r, suites);
    unsigned compressions = take(&r, 1);
    if (compressions < 1) return CLIENT_HELLO_MALFORMED;
    sub(&r, compressions);
    if (r.bad) return CLIENT_HELLO_MALFORMED;
    if (r.left == 0) return CLIENT_HELLO_NO_SNI; /* TLS 1.2 allows a hello without extensions */
    struct reader exts = sub(&r, take(&r, 2));
    if (r.bad || r.left) return CLIENT_HELLO_MALFORMED;
    enum client_hello_result found = CLIENT_HELLO_NO_SNI;
    bool seen_sni = false;
    while (exts.left) {
        unsigned type = take(&exts, 2);
        struct reader ext = sub(&exts, take(&exts, 2));
        if (exts.bad) return CLIENT_HELLO_MALFORMED;
        if (type != EXT_SERVER_NAME) continue;
        if (seen_sni) return CLIENT_HELLO_MALFORMED; /* RFC 8446 4.2: one of each type */
        seen_sni = true;
        found = server_name(ext, out);
        if (found == CLIENT_HELLO_MALFORMED) return found;
    }
    return found;
}

enum client_hello_result client_hello_parse(const uint8_t *data, size_t len,
                                            struct client_hello *out) {
    /* The handshake message, joined from the records' fragments. */
    uint8_t msg[CLIENT_HELLO_MAX_BYTES];
    size_t msg_len = 0, pos = 0;
    memset(out, 0, sizeof *out);
    if (len > CLIENT_HELLO_MAX_BYTES) len = CLIENT_HELLO_MAX_BYTES;
    for (;;) {
        /* The first bytes decide early that plain text is not TLS: no waiting for more. */
        if (pos < len && data[pos] != RECORD_HANDSHAKE) return CLIENT_HELLO_MALFORMED;
        if (pos + 1 < len && data[pos + 1] != 3) return CLIENT_HELLO_MALFORMED;
        if (len - pos < RECORD_HEADER) break;
        size_t rec = (size_t)data[pos + 3] << 8 | data[pos + 4];
        if (rec == 0 || rec > RECORD_MAX_PAYLOAD) return CLIENT_HELLO_MALFORMED;
        if (len - pos - RECORD_HEADER < rec) {
            /* a partial record: take what there is to check the message's first bytes early */
            size_t part = len - pos - RECORD_HEADER;
            memcpy(msg + msg_len, data + pos + RECORD_HEADER, part);
            msg_len += part;
            pos = len;
            break;
        }
        memcpy(msg + msg_len, data + pos + RECORD_HEADER, rec);
        msg_len += rec;
        pos += RECORD_HEADER + rec;
        if (msg_len >= 4) {
            size_t body = (size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3];
            if (4 + body <= msg_len) {
                /* another message after the hello in the same record is not allowed before
                 * the server's reply (RFC 8446 5.1: no interleaving at a key change) */
                if (msg[0] != HANDSHAKE_CLIENT_HELLO || 4 + body != msg_len)
                    return CLIENT_HELLO_MALFORMED;
                struct reader r = {msg + 4, body, false};
                out->bytes = pos;
                return hello_body(r, out);
            }
        }
        if (pos == len) break;
    }
    if (msg_len >= 1 && msg[0] != HANDSHAKE_CLIENT_HELLO) return CLIENT_HELLO_MALFORMED;
    if (msg_len >= 4) {
        size_t body = (size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3];
        /* even with one record header per 2^14 bytes it cannot fit */
        if (4 + body + RECORD_HEADER > CLIENT_HELLO_MAX_BYTES) return CLIENT_HELLO_TOO_LARGE;
    }
    return len >= CLIENT_HELLO_MAX_BYTES ? CLIENT_HELLO_TOO_LARGE : CLIENT_HELLO_NEED_MORE;
}

const char *client_hello_result_name(enum client_hello_result r) {
    switch (r) {
    case CLIENT_HELLO_NEED_MORE:
        return "need-more";
    case CLIENT_HELLO_SNI:
        return "sni";
    case CLIENT_HELLO_NO_SNI:
        return "no-sni";
    case CLIENT_HELLO_MALFORMED:
        return "malformed";
    case CLIENT_HELLO_TOO_LARGE:
        return "too-large";
    }
    return "?";
}
