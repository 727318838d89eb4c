#include "http/head_check.h"

#include <limits.h>
#include <string.h>

/* Byte classes, one table lookup per byte on the hot loops. */
enum {
    C_TCHAR = 1, /* RFC 9110 token character */
    C_VCHAR = 2, /* visible ASCII 0x21-0x7E */
    C_FIELD = 4, /* field-value / reason-phrase byte: HT, SP, VCHAR, obs-text */
    C_HEX = 8,   /* chunk-size digit */
    C_CTL = 16,  /* 0x00-0x1F and DEL, except HT: never allowed in chunk lines */
};

/* The table is built from these constant expressions so it stays ISO C (no
 * range designators) and cannot drift from the RFC definitions. */
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')
#define IS_ALPHA(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define IS_TCHAR(c)                                                                                \
    (IS_DIGIT(c) || IS_ALPHA(c) || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' ||         \
     (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' ||          \
     (c) == '^' || (c) == '_' || (c) == '`' || (c) == '|' || (c) == '~')
#define IS_VCHAR(c) ((c) >= 0x21 && (c) <= 0x7E)
#define IS_HEX(c) (IS_DIGIT(c) || ((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F'))
#define IS_CTL(c) (((c) < 0x20 && (c) != '\t') || (c) == 0x7F)
#define CLASS_OF(c)                                                                                \
    ((IS_TCHAR(c) ? C_TCHAR : 0) | (IS_VCHAR(c) ? C_VCHAR : 0) |                                   \
     (IS_VCHAR(c) || (c) >= 0x80 || (c) == ' ' || (c) == '\t' ? C_FIELD : 0) |                     \
     (IS_HEX(c) ? C_HEX : 0) | (IS_CTL(c) ? C_CTL : 0))
#define CLASS_ROW(r)                                                                               \
    CLASS_OF(r + 0), CLASS_OF(r + 1), CLASS_OF(r + 2), CLASS_OF(r + 3), CLASS_OF(r + 4),           \
        CLASS_OF(r + 5), CLASS_OF(r + 6), CLASS_OF(r + 7), CLASS_OF(r + 8), CLASS_OF(r + 9),       \
        CLASS_OF(r + 10), CLASS_OF(r + 11), CLASS_OF(r + 12), CLASS_OF(r + 13), CLASS_OF(r + 14),  \
        CLASS_OF(r + 15)

static const unsigned char byte_class[256] = {
    CLASS_ROW(0x00), CLASS_ROW(0x10), CLASS_ROW(0x20), CLASS_ROW(0x30),
    CLASS_ROW(0x40), CLASS_ROW(0x50), CLASS_ROW(0x60), CLASS_ROW(0x70),
    CLASS_ROW(0x80), CLASS_ROW(0x90), CLASS_ROW(0xA0), CLASS_ROW(0xB0),
    CLASS_ROW(0xC0), CLASS_ROW(0xD0), CLASS_ROW(0xE0), CLASS_ROW(0xF0),
};

static bool has_class(unsigned char c, unsigned cls) {
    return (byte_class[c] & cls) != 0;
}

bool head_is_token(const char *s, size_t len) {
    if (len == 0) return false;
    for (size_t i = 0; i < len; i++)
        if (!has_class((unsigned char)s[i], C_TCHAR)) return false;
    return true;
}

bool head_is_field_value(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (has_class((unsigned char)s[i], C_CTL)) return false;
    return true;
}

/* ---- message head ---------------------------------------------------- */

/* Where the scan stands: the state names the byte expected next. */
enum scan_state {
    S_START,   /* first byte of the message (or after a leading empty line) */
    S_LEAD_LF, /* CR of an empty line before the request line seen */
    S_METHOD,
    S_TARGET_START, /* the single SP after the method seen */
    S_TARGET,
    S_VERSION_H, /* S_VERSION_H .. S_VERSION_MINOR are contiguous: "HTTP/x.y" */
    S_VERSION_T1,
    S_VERSION_T2,
    S_VERSION_P,
    S_VERSION_SLASH,
    S_VERSION_MAJOR,
    S_VERSION_DOT,
    S_VERSION_MINOR,
    S_VERSION_END, /* after the version: CR (request) or SP (response) */
    S_STATUS_1,
    S_STATUS_2,
    S_STATUS_3,
    S_STATUS_END, /* after the status code: SP, or CR when there is no reason */
    S_REASON,
    S_START_LINE_LF, /* CR ending the start line seen */
    S_FIELD_START,   /* beginning of a field line or of the final empty line */
    S_FIELD_NAME,
    S_FIELD_VALUE,
    S_FIELD_LF, /* CR ending a field line seen */
    S_END_LF,   /* CR of the final empty line seen */
    S_DONE,
    S_COUNT,
};

/* The cursor in *scanned packs the byte offset reached with the state the scan
 * was in there, so a resumed call neither rescans nor rebuilds the state of a
 * half-read line; the API has no other place to keep it. */
#define CURSOR_STATE_BITS 5
#define CURSOR_STATE_MASK (((size_t)1 << CURSOR_STATE_BITS) - 1)
#define CURSOR_MAX_OFFSET (SIZE_MAX >> CURSOR_STATE_BITS)

_Static_assert(S_COUNT <= 1 << CURSOR_STATE_BITS, "scan states must fit the cursor");

static size_t cursor_make(size_t offset, enum scan_state st) {
    return offset << CURSOR_STATE_BITS | (size_t)st;
}

/* Field lines in a complete head, for a head that was scanned over several
 * calls: LF ends every line, and every LF has been checked to follow a CR. */
static int count_fields(const char *buf, size_t head_len, bool is_request) {
    size_t lines = 0;
    const char *p = buf, *end = buf + head_len;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        lines++;
        p++;
    }
    size_t skipped = 0; /* leading empty lines, requests only */
    if (is_request)
        while (skipped * 2 + 1 < head_len && buf[skipped * 2] == '\r')
            skipped++;
    size_t fields = lines - skipped - 2; /* minus the start line and the final empty line */
    return fields > INT_MAX ? INT_MAX : (int)fields;
}

static enum head_status head_bad(const char *why, const char **reason) {
    *reason = why;
    return HEAD_BAD;
}

enum head_status head_check(const char *buf, size_t len, bool is_request, size_t *scanned,
                            size_t *head_len, int *n_fields, const char **reason) {
    const unsigned char *b = (const unsigned char *)buf;
    size_t p = *scanned >> CURSOR_STATE_BITS;
    enum scan_state st = (enum scan_state)(*scanned & CURSOR_STATE_MASK);
    bool resumed = *scanned != 0;
    int fields = 0; /* fields seen by this call; a resumed call recounts at the end */
    const char *start_line_bad = is_request ? "invalid request line" : "invalid status line";
    const char *why = NULL;

    *reason = NULL;
    *head_len = 0;
    *n_fields = 0;
    if (st >= S_COUNT || p > len) return head_bad("invalid scan cursor", reason);
    if (len > CURSOR_MAX_OFFSET) return head_bad("head too large", reason);

    while (st != S_DONE && p < len) {
        unsigned char c = b[p];
        if (c == '\n' && st != S_LEAD_LF && st != S_START_LINE_LF && st != S_FIELD_LF &&
            st != S_END_LF) {
            why = "bare LF in head";
            break;
        }
        switch (st) {
        case S_START:
            if (is_request && c == '\r') {
                /* RFC 9112 2.2: ignore empty lines before a request line. */
                st = S_LEAD_LF;
            } else if (is_request && has_class(c, C_TCHAR)) {
                st = S_METHOD;
            } else if (!is_request) {
                st = S_VERSION_H;
                continue; /* the byte is the "H" of "HTTP/" */
            } else {
                why = start_line_bad;
            }
            break;
        case S_LEAD_LF:
            if (c == '\n')
                st = S_START;
            else
                why = "bare CR in head";
            break;
        case S_METHOD:
            while (p < len && has_class(b[p], C_TCHAR))
                p++;
            if (p == len) continue;
            if (b[p] == ' ')
                st = S_TARGET_START;
            else if (b[p] != '\n')
                why = start_line_bad;
            else
                continue;
            break;
        case S_TARGET_START:
            if (has_class(c, C_VCHAR))
                st = S_TARGET;
            else
                why = start_line_bad; /* empty target, or two SPs */
            break;
        case S_TARGET:
            while (p < len && has_class(b[p], C_VCHAR))
                p++;
            if (p == len) continue;
            if (b[p] == ' ')
                st = S_VERSION_H;
            else if (b[p] != '\n')
                why = start_line_bad;
            else
                continue;
            break;
        case S_VERSION_H:
        case S_VERSION_T1:
        case S_VERSION_T2:
        case S_VERSION_P:
        case S_VERSION_SLASH:
        case S_VERSION_MAJOR:
        case S_VERSION_DOT:
        case S_VERSION_MINOR: {
            int i = (int)st - S_VERSION_H;
            bool ok = i < 5    ? c == (unsigned char)"HTTP/"[i]
                      : i == 6 ? c == '.'
                               : c >= '0' && c <= '9';
            if (!ok) {
                why = start_line_bad;
            } else if (i == 7 && b[p - 2] != '1') {
                /* well-formed, but only HTTP/1.x is spoken here; 1.2+ reads as 1.1 */
                why = "unsupported HTTP version";
            } else {
                st++;
            }
            break;
        }
        case S_VERSION_END:
            if (is_request && c == '\r')
                st = S_START_LINE_LF;
            else if (!is_request && c == ' ')
                st = S_STATUS_1;
            else
                why = start_line_bad;
            break;
        case S_STATUS_1:
        case S_STATUS_2:
        case S_STATUS_3:
            if (c >= '0' && c <= '9')
                st++;
            else
                why = start_line_bad;
            break;
        case S_STATUS_END:
            /* "HTTP/1.1 200\r\n" is tolerated: the reason phrase is optional in
             * practice even though its preceding SP is not in the grammar. */
            if (c == ' ')
                st = S_REASON;
            else if (c == '\r')
                st = S_START_LINE_LF;
            else
                why = start_line_bad;
            break;
        case S_REASON:
            while (p < len && has_class(b[p], C_FIELD))
                p++;
            if (p == len) continue;
            if (b[p] == '\r')
                st = S_START_LINE_LF;
            else if (b[p] != '\n')
                why = "invalid character in reason phrase";
            else
                continue;
            break;
        case S_START_LINE_LF:
        case S_FIELD_LF:
            if (c != '\n') {
                why = "bare CR in head";
                break;
            }
            if (st == S_FIELD_LF) fields++;
            st = S_FIELD_START;
            break;
        case S_FIELD_START:
            if (c == '\r')
                st = S_END_LF;
            else if (c == ' ' || c == '\t')
                why = "obs-fold in header field";
            else if (c == ':')
                why = "empty header field name";
            else if (has_class(c, C_TCHAR))
                st = S_FIELD_NAME;
            else
                why = "invalid character in header field name";
            break;
        case S_FIELD_NAME:
            while (p < len && has_class(b[p], C_TCHAR))
                p++;
            if (p == len) continue;
            c = b[p];
            if (c == ':')
                st = S_FIELD_VALUE;
            else if (c == ' ' || c == '\t')
                why = "whitespace before colon";
            else if (c == '\r')
                why = "header field without colon";
            else if (c != '\n')
                why = "invalid character in header field name";
            else
                continue;
            break;
        case S_FIELD_VALUE:
            while (p < len && has_class(b[p], C_FIELD))
                p++;
            if (p == len) continue;
            if (b[p] == '\r')
                st = S_FIELD_LF;
            else if (b[p] != '\n')
                why = "invalid character in header value";
            else
                continue;
            break;
        case S_END_LF:
            if (c == '\n')
                st = S_DONE;
            else
                why = "bare CR in head";
            break;
        case S_DONE:
        case S_COUNT:
            break; /* unreachable: the loop stops at S_DONE, the cursor check refuses S_COUNT */
        }
        if (why) break;
        p++;
    }

    /* On error the cursor points at the offending byte, so calling again
     * reports the same error without rescanning. */
    *scanned = cursor_make(p, st);
    if (why) return head_bad(why, reason);
    if (st != S_DONE) return HEAD_INCOMPLETE;
    *head_len = p;
    *n_fields = resumed ? count_fields(buf, p, is_request) : fields;
    return HEAD_COMPLETE;
}

bool head_parse_content_length(const char *v, size_t len, uint64_t *out) {
    const uint64_t limit = (uint64_t)INT64_MAX; /* off_t and signed arithmetic downstream */
    uint64_t n = 0;
    if (len == 0) return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < '0' || c > '9') return false;
        unsigned d = c - '0';
        if (n > (limit - d) / 10) return false;
        n = n * 10 + d;
    }
    *out = n;
    return true;
}

/* ---- chunked body ---------------------------------------------------- */

#define CHUNK_MAX_SIZE_DIGITS 15 /* 2^60 - 1: cannot overflow uint64_t */

void chunk_check_init(struct chunk_check *c) {
    c->state = CHUNK_SIZE_START;
    c->remaining = 0;
    c->size_digits = 0;
    c->last_chunk = false;
}

static int hex_digit(unsigned char c) {
    if (c <= '9') return c - '0';
    return (c | 0x20) - 'a' + 10;
}

static size_t chunk_fail(struct chunk_check *c, const char *why, const char **reason) {
    c->state = CHUNK_ERROR;
    *reason = why;
    return (size_t)-1;
}

size_t chunk_check_feed(struct chunk_check *c, const char *buf, size_t len, const char **reason) {
    const unsigned char *b = (const unsigned char *)buf;
    size_t i = 0;

    if (c->state == CHUNK_ERROR) return chunk_fail(c, "chunked body already refused", reason);
    while (i < len && c->state != CHUNK_DONE) {
        unsigned char ch = b[i];
        switch (c->state) {
        case CHUNK_SIZE_START:
            if (!has_class(ch, C_HEX)) return chunk_fail(c, "missing chunk size", reason);
            c->remaining = (uint64_t)hex_digit(ch);
            c->size_digits = 1;
            c->state = CHUNK_SIZE;
            break;
        case CHUNK_SIZE:
            /* size_digits turns negative once BWS follows the digits: from then
             * on only more BWS and ";" may come. "1 2" is size 1 with junk to
             * http-parser but 12 or an error to other parsers. */
            if (c->size_digits > 0 && has_class(ch, C_HEX)) {
                if (++c->size_digits > CHUNK_MAX_SIZE_DIGITS)
                    return chunk_fail(c, "chunk size too long", reason);
                c->remaining = c->remaining << 4 | (uint64_t)hex_digit(ch);
            } else if (ch == ';') {
                c->state = CHUNK_EXT;
            } else if (ch == ' ' || ch == '\t') {
                if (c->size_digits > 0) c->size_digits = -c->size_digits;
            } else if (ch == '\n') {
                return chunk_fail(c, "bare LF in chunk size line", reason);
            } else if (ch == '\r') {
                if (c->size_digits < 0) return chunk_fail(c, "whitespace after chunk size", reason);
                c->state = CHUNK_SIZE_LF;
            } else if ((ch == 'x' || ch == 'X') && c->size_digits == 1 && c->remaining == 0) {
                return chunk_fail(c, "chunk size with 0x prefix", reason);
            } else {
                return chunk_fail(c, "invalid chunk size", reason);
            }
            break;
        case CHUNK_EXT:
            /* Extensions are ignored, so their inner syntax does not matter;
             * what matters is that the line cannot end early or ambiguously. */
            if (ch == '\r')
                c->state = CHUNK_SIZE_LF;
            else if (ch == '\n')
                return chunk_fail(c, "bare LF in chunk size line", reason);
            else if (has_class(ch, C_CTL))
                return chunk_fail(c, "control character in chunk extension", reason);
            break;
        case CHUNK_SIZE_LF:
            if (ch != '\n') return chunk_fail(c, "bare CR in chunk size line", reason);
            if (c->remaining == 0) {
                c->last_chunk = true;
                c->state = CHUNK_TRAILER_START;
            } else {
                c->state = CHUNK_DATA;
            }
            break;
        case CHUNK_DATA: {
            size_t avail = len - i;
            size_t take = c->remaining < avail ? (size_t)c->remaining : avail;
            c->remaining -= take;
            i += take;
            if (c->remaining == 0) c->state = CHUNK_DATA_CR;
            continue;
        }
        case CHUNK_DATA_CR:
            if (ch != '\r') return chunk_fail(c, "chunk data longer than declared", reason);
            c->state = CHUNK_DATA_LF;
            break;
        case CHUNK_DATA_LF:
            if (ch != '\n') return chunk_fail(c, "chunk data not followed by CRLF", reason);
            c->state = CHUNK_SIZE_START;
            break;
        case CHUNK_TRAILER_START:
            if (ch == '\r') {
                c->state = CHUNK_END_LF;
                break;
            }
            if (ch == ' ' || ch == '\t') return chunk_fail(c, "obs-fold in trailer field", reason);
            c->state = CHUNK_TRAILER;
            continue; /* check the byte as part of the line */
        case CHUNK_TRAILER:
            if (ch == '\r')
                c->state = CHUNK_TRAILER_LF;
            else if (ch == '\n')
                return chunk_fail(c, "bare LF in trailer", reason);
            else if (has_class(ch, C_CTL))
                return chunk_fail(c, "control character in trailer", reason);
            break;
        case CHUNK_TRAILER_LF:
            if (ch != '\n') return chunk_fail(c, "bare CR in trailer", reason);
            c->state = CHUNK_TRAILER_START;
            break;
        case CHUNK_END_LF:
            if (ch != '\n') return chunk_fail(c, "bare CR after last chunk", reason);
            c->state = CHUNK_DONE;
            break;
        case CHUNK_DONE:
        case CHUNK_ERROR:
            break; /* unreachable: handled before and by the loop condition */
        }
        i++;
    }
    return i;
}
