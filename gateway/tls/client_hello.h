/* client_hello: the server name (SNI) of a TLS ClientHello, read without decrypting anything.
 *
 * TLS passthrough (tls/passthrough.h) routes a connection by the name the client asks for before
 * any byte reaches a backend. client_hello_parse() is given everything the client has sent so far
 * (from the first byte) and says whether that is enough: the ClientHello may arrive split across
 * reads and its handshake message may span several TLS records (RFC 8446 5.1: a record carries at
 * most 2^14 bytes, and a handshake message may be fragmented across records); the parser joins
 * the fragments, up to CLIENT_HELLO_MAX_BYTES of input in all.
 *
 * The result is:
 *  - CLIENT_HELLO_NEED_MORE: a prefix of a well-formed ClientHello; read more (while under the
 *    bound: the caller stops at CLIENT_HELLO_MAX_BYTES, see CLIENT_HELLO_TOO_LARGE).
 *  - CLIENT_HELLO_SNI: complete, with a server_name extension naming a host (out->sni, lower
 *    case, without a trailing dot, RFC 6066 3: a DNS host name of letters, digits, "-", "_" and
 *    dots, at most 253 characters).
 *  - CLIENT_HELLO_NO_SNI: complete and well-formed, but without a host_name server name.
 *  - CLIENT_HELLO_MALFORMED: not a TLS ClientHello (plain text, an SSLv2 hello, another record
 *    or handshake type first, lengths that do not add up, a server name that is not a host name).
 *  - CLIENT_HELLO_TOO_LARGE: the ClientHello does not end within CLIENT_HELLO_MAX_BYTES.
 * out->bytes is then the length of the records holding the ClientHello.
 *
 * Pure: no allocation, no I/O, any thread. Unit-tested in tests/unit/test_client_hello.c. */
#ifndef WEIR_CLIENT_HELLO_H
#define WEIR_CLIENT_HELLO_H

#include <stddef.h>
#include <stdint.h>

/* Bytes a client may send before its ClientHello is complete (records and their headers). A
 * ClientHello is typically 200-2,000 bytes (post-quantum key shares included); 16 KiB is one full
 * record, and what nginx's ssl_preread and HAProxy's tcp-request inspect-delay buffers allow. */
#define CLIENT_HELLO_MAX_BYTES 16384
#define CLIENT_HELLO_SNI_MAX 253

enum client_hello_result {
    CLIENT_HELLO_NEED_MORE,
    CLIENT_HELLO_SNI,
    CLIENT_HELLO_NO_SNI,
    CLIENT_HELLO_MALFORMED,
    CLIENT_HELLO_TOO_LARGE,
};

struct client_hello {
    char sni[CLIENT_HELLO_SNI_MAX + 1]; /* NUL-terminated, lower case; "" without one */
    size_t sni_len;
    size_t bytes; /* input bytes the ClientHello's records took (when complete) */
};

enum client_hello_result client_hello_parse(const uint8_t *data, size_t len,
                                            struct client_hello *out);
/* A name for the result, for logs ("need-more", "sni", "no-sni", "malformed", "too-large"). */
const char *client_hello_result_name(enum client_hello_result r);

#endif
