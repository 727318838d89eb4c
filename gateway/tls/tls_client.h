/* tls_client: the client side of TLS for outbound connections (upstream/http_client.c uses it),
 * so that its users see a bufferevent and never call OpenSSL themselves.
 *
 * A tls_client holds one SSL_CTX, created on first use (tls_client_ready): TLS 1.2 or later,
 * peers verified against the system CA bundle. Each connection may turn verification off, or
 * verify against the CAs of its own file instead (tls_client_ca): those stores are loaded on
 * first use (a short blocking read, once per tls_client and file) and kept, up to
 * TLS_CLIENT_MAX_CA_FILES, the oldest dropped for a new one. A connection verifies the name it
 * was asked for (hostname or IP address, no partial wildcards) and sends it as SNI when it is a
 * name (RFC 6066 3).
 *
 * One tls_client per owner, used only on the owner's thread; nothing here takes a lock. Errors
 * are returned as text for the caller to report; tls_client_ready() and tls_client_ca() leave
 * OpenSSL's error queue empty. */
#ifndef WEIR_TLS_CLIENT_H
#define WEIR_TLS_CLIENT_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>

#define TLS_CLIENT_MAX_CA_FILES 8

struct tls_client;
/* The CA store of one file (an X509_STORE), reference counted: a connection being set up holds
 * one, so the cache may drop it meanwhile. */
struct tls_ca;

/* log_name names the user in log lines ("weir.http"); it must outlive the tls_client. Creates
 * no SSL_CTX yet. */
struct tls_client *tls_client_new(const char *log_name);
/* Frees the context and the cached CA stores (connections made from them keep what they use). */
void tls_client_free(struct tls_client *tc);

/* Creates the context on the first call (a failure to load the system CAs is only logged:
 * verification then fails); true when there is one, else false with the reason in why. */
bool tls_client_ready(struct tls_client *tc, char *why, size_t n);

/* The store of the CA file at path, loaded on first use; the caller owns the returned reference
 * (tls_client_ca_release). NULL with the reason in why when the file cannot be loaded. */
struct tls_ca *tls_client_ca(struct tls_client *tc, const char *path, char *why, size_t n);
void tls_client_ca_release(struct tls_ca *ca);

/* A bufferevent on the connected socket fd that runs the client handshake at once; it owns fd
 * (closed when it is freed) and reports the handshake's end with BEV_EVENT_CONNECTED, a failure
 * with BEV_EVENT_ERROR or BEV_EVENT_EOF. host is the name or IP address to verify (and send as
 * SNI when a name); verify false accepts any certificate; ca (may be NULL: the system CAs) is
 * what to verify against, the caller keeping its own reference. A peer closing without
 * close_notify is an end of stream, not an error: the caller's framing tells a complete message
 * from a cut one. Call tls_client_ready() first. */
struct bufferevent *tls_client_bufferevent(struct tls_client *tc, struct event_base *base, int fd,
                                           const char *host, bool host_is_ip, bool verify,
                                           struct tls_ca *ca);

/* The first OpenSSL error a tls_client_bufferevent() recorded, as text, or NULL when there is
 * none; every recorded error is taken off its queue. Use the text at once (it may be strerror's).
 */
const char *tls_client_take_error(struct bufferevent *bev);
/* Why the peer's certificate was refused ("certificate has expired"...), or NULL when it was not
 * (or nothing was verified yet). */
const char *tls_client_verify_error(struct bufferevent *bev);

#endif
