#include "http/path.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>

static const char HEX_UPPER[] = "0123456789ABCDEF";

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* RFC 3986 unreserved: the only escapes that are decoded, because decoding
 * them can never change how the path is split or interpreted. */
static bool is_unreserved(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* pchar minus "%" (handled separately) and "/" (the segment separator). */
static bool is_raw_pchar(unsigned char c) {
    static const char others[] = "!$&'()*+,;=:@"; /* sub-delims, ":" and "@" */
    return is_unreserved(c) || memchr(others, c, sizeof others - 1) != NULL;
}

/* The segment out[seg..o) has just ended. Returns the new output length with
 * "." and ".." applied, or (size_t)-1 when ".." would climb above "/".
 * out[seg - 1] is always the "/" that opened the segment. */
static size_t end_segment(char *out, size_t seg, size_t o) {
    size_t n = o - seg;
    if (n == 1 && out[seg] == '.') return seg;
    if (n == 2 && out[seg] == '.' && out[seg + 1] == '.') {
        if (seg == 1) return (size_t)-1; /* only the root "/" precedes it */
        /* Drop the previous segment but keep its opening "/". Each output byte is
         * stepped over at most once here before being dropped, so the whole
         * normalisation stays linear. */
        size_t p = seg - 1;
        while (out[p - 1] != '/')
            p--;
        return p;
    }
    return o;
}

int path_normalize(const char *in, size_t len, char *out, size_t *out_len) {
    if (len == 0 || in[0] != '/') return -1;

    /* Invariant that makes in-place use (out == in) safe: the write index o
     * never passes the read index i, and an escape's hex digits are read before
     * anything is written for it. */
    size_t o = 0;
    out[o++] = '/';
    size_t seg = 1; /* where the current segment starts in out */

    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '/') {
            size_t end = end_segment(out, seg, o);
            if (end == (size_t)-1) return -1;
            if (end < o) {
                /* "." or ".." went: the "/" left before it separates what follows */
                o = end;
            } else {
                out[o++] = '/';
            }
            seg = o;
        } else if (c == '%') {
            if (len - i < 3) return -1;
            int hi = hex_value((unsigned char)in[i + 1]);
            int lo = hex_value((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            unsigned char v = (unsigned char)(hi << 4 | lo);
            if (v == 0) return -1;
            i += 2;
            if (is_unreserved(v)) {
                /* decoded before dot-segment removal, so "%2e%2e" is ".." */
                out[o++] = (char)v;
            } else {
                out[o++] = '%';
                out[o++] = HEX_UPPER[v >> 4];
                out[o++] = HEX_UPPER[v & 15];
            }
        } else if (is_raw_pchar(c)) {
            out[o++] = (char)c;
        } else {
            return -1;
        }
    }

    /* A final "." or ".." leaves the trailing "/" in place: "/a/." -> "/a/". */
    size_t end = end_segment(out, seg, o);
    if (end == (size_t)-1) return -1;
    o = end;
    out[o] = '\0';
    *out_len = o;
    return 0;
}

int path_join(const char *service_path, const char *rest, size_t rest_len, char *out, size_t cap) {
    /* No service path means the upstream root, which also yields "/" for an
     * empty rest and a single "/" before a relative rest. */
    const char *base = service_path && *service_path ? service_path : "/";
    size_t base_len = strlen(base);
    bool base_slash = base[base_len - 1] == '/';
    bool rest_slash = rest_len > 0 && rest[0] == '/';
    bool add_slash = false;

    if (rest_len > 0) {
        if (base_slash && rest_slash)
            base_len--; /* one of the two "/" goes */
        else if (!base_slash && !rest_slash)
            add_slash = true;
    }

    size_t total = base_len + (add_slash ? 1 : 0) + rest_len;
    if (total >= cap || total > INT_MAX) return -1;
    memcpy(out, base, base_len);
    if (add_slash) out[base_len] = '/';
    if (rest_len > 0) memcpy(out + base_len + (add_slash ? 1 : 0), rest, rest_len);
    out[total] = '\0';
    return (int)total;
}
