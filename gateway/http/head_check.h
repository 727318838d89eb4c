/* head_check: strict checks on raw HTTP/1.1 message bytes that http-parser
 * 2.9.4 (built non-strict by Debian) lets through.
 *
 * RFC 9112 asks a proxy to refuse ambiguous framing because two parsers that
 * disagree on where a message ends enable request smuggling. Weir therefore
 * scans every message head before http-parser sees it, and checks the framing
 * of chunked bodies byte by byte beside http-parser. Pure functions/state
 * machines with no allocation; any thread. */
#ifndef WEIR_HEAD_CHECK_H
#define WEIR_HEAD_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum head_status {
    HEAD_INCOMPLETE = 0, /* no blank line yet: read more (caller enforces size/time) */
    HEAD_COMPLETE,       /* a well-formed head ends at *head_len */
    HEAD_BAD,            /* malformed: *reason says why (400 for requests, 502 for responses) */
};

/* Scans buf[0..len) for a complete head (start line + fields + CRLF CRLF).
 * Refuses: bare LF or bare CR anywhere, NUL and other control bytes (HT is
 * allowed inside field values), obs-fold (a field line starting with SP/HT,
 * including before the first field), whitespace between field name and
 * colon, empty or non-token field names, a field line without a colon.
 * For requests (is_request) the request line must be
 * "token SP target SP HTTP/1.x" with a visible-ASCII target; for responses
 * "HTTP/1.x SP 3DIGIT SP reason" (the SP before an empty reason may be
 * missing). A well-formed "HTTP/d.d" with a major other than 1 is refused as
 * "unsupported HTTP version"; 1.2 to 1.9 are accepted (read as 1.1). Empty
 * lines (CRLF) before a request line are skipped (RFC 9112 2.2) and are part
 * of *head_len.
 * `scanned` (in/out) is an opaque cursor, not a byte count: it packs the
 * offset reached with the scanner's state, so a call after more bytes arrive
 * looks only at the new ones, even when a CR and its LF arrive in different
 * calls. Start it at 0, pass it back unchanged while buf keeps the same bytes
 * (it may grow or move), and reset it to 0 for the next message.
 * On HEAD_COMPLETE sets *head_len (up to and including the final CRLF CRLF)
 * and *n_fields (field lines, not the final empty line; it need not be kept
 * between calls); both are 0 otherwise. *reason is a static string on
 * HEAD_BAD, NULL otherwise. */
enum head_status head_check(const char *buf, size_t len, bool is_request, size_t *scanned,
                            size_t *head_len, int *n_fields, const char **reason);

/* Validates a Content-Length value: one or more DIGITs only (no sign, space,
 * "0x", list, empty; leading zeros are fine), at most 2^63 - 1. Returns true
 * and sets *out; leaves *out alone on false. */
bool head_parse_content_length(const char *v, size_t len, uint64_t *out);

/* A field name as head_check() accepts one: a non-empty RFC 9110 token. */
bool head_is_token(const char *s, size_t len);
/* A field value as head_check() accepts one: no control bytes but HT (so no CR, LF or NUL). */
bool head_is_field_value(const char *s, size_t len);

/* Chunked body framing checker, fed the same bytes as http-parser after the
 * head. Refuses: chunk sizes that are empty, non-hex, prefixed ("0x"), longer
 * than 15 hex digits (overflow); a chunk-size line or trailer line with bare
 * CR/LF or control bytes; chunk data not followed by exactly CRLF (a chunk
 * longer than declared). SP/HT may follow the size only before ";"
 * ("5 ;x" is fine, "5 " and "5 5" are not); extensions are skipped but may not
 * hold control bytes other than HT; a trailer line may not start with SP/HT
 * (obs-fold). Once CHUNK_DONE, feeding consumes nothing (returns 0: the bytes
 * belong to the next message); CHUNK_ERROR is sticky. */
enum chunk_state {
    CHUNK_SIZE_START,
    CHUNK_SIZE,
    CHUNK_EXT,
    CHUNK_SIZE_LF,
    CHUNK_DATA,
    CHUNK_DATA_CR,
    CHUNK_DATA_LF,
    CHUNK_TRAILER_START,
    CHUNK_TRAILER,
    CHUNK_TRAILER_LF,
    CHUNK_END_LF,
    CHUNK_DONE,
    CHUNK_ERROR,
};
struct chunk_check {
    enum chunk_state state;
    uint64_t remaining; /* bytes of chunk data left */
    int size_digits;    /* size digits read; negated once SP/HT follows them */
    bool last_chunk;
};
void chunk_check_init(struct chunk_check *c);
/* Consumes up to len bytes. Returns the number consumed: it stops right after
 * the final CRLF of the body (state CHUNK_DONE), or returns (size_t)-1 with
 * state CHUNK_ERROR and *reason set on a framing error. */
size_t chunk_check_feed(struct chunk_check *c, const char *buf, size_t len, const char **reason);

#endif
