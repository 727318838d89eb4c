/* tls_server: the server side of TLS termination, one per configuration snapshot.
 *
 * tls_server_build() turns a config's TLS settings and certificates into an OpenSSL context:
 * TLS 1.2 and 1.3 only, weir.ssl_ciphers in the server's order, ALPN http/1.1, a session cache
 * and session tickets. The default certificate is weir.ssl_cert/ssl_cert_key (read from their
 * files here, so a problem names the file); every `certificates` entity (cert/key, and
 * cert_alt/key_alt for a second key type) is selected by its `snis` during the handshake
 * (exact name, then "*." wildcard, then the default: tls/sni_map.h), or, with
 * weir.ssl_reject_unknown_sni, an unknown name is refused with an unrecognized_name alert.
 * OCSP response files (weir.ssl_ocsp_response_file, an entity's ocsp_response_file and
 * ocsp_response_file_alt) are read here too and stapled per certificate (tls/ocsp_staple.h).
 *
 * Session tickets are sealed with process-wide keys, so that a ticket issued by one worker, or
 * under an older snapshot, resumes on any worker under any later one (workers are threads of
 * one process). The control thread rotates them (tls_ticket_keys_rotate, every
 * weir.ssl_session_ticket_key_rotation); the previous key still opens tickets, so a ticket lives
 * one to two periods. The session cache (stateful resumption, TLS 1.2 clients without tickets)
 * belongs to the snapshot's context and starts empty after a configuration change.
 *
 * Lifetime: built on the control thread (snapshot_build), reference counted (atomic) because
 * each TLS connection holds one from accept to close: a connection keeps the certificates it
 * started its handshake with while newer snapshots replace the server. The last release frees
 * it on whatever thread drops it. */
#ifndef WEIR_TLS_SERVER_H
#define WEIR_TLS_SERVER_H

#include "config/config.h"
#include "core/errlist.h"

struct tls_server;
struct ssl_ctx_st;

/* NULL with every problem in errs (a file that cannot be read, a key that does not match its
 * certificate, an unusable cipher list). The caller owns the one reference returned. */
struct tls_server *tls_server_build(const struct config *cfg, struct errlist *errs);
void tls_server_retain(struct tls_server *ts);
void tls_server_release(struct tls_server *ts);
/* Certificates selectable by SNI (entities with at least one sni). */
size_t tls_server_n_certificates(const struct tls_server *ts);
/* Makes a new current session ticket key; the current one becomes the previous, the previous is
 * forgotten (tickets it sealed no longer resume). Any thread; the server's control loop calls it
 * on a timer. */
void tls_ticket_keys_rotate(void);
/* For tls_conn.c: the context new connections are made from (borrowed). */
struct ssl_ctx_st *tls_server_ssl_ctx(struct tls_server *ts);

#endif
