/* ocsp_staple: an OCSP response read from a file and stapled to the handshakes of one certificate
 * (nginx's ssl_stapling_file; docs/tls.md "OCSP stapling").
 *
 * ocsp_staple_load() reads a DER OCSP response (what `openssl ocsp -respout` writes) and checks it
 * against the certificate it will be stapled to. Errors (the caller fails the configuration):
 * the file cannot be read, is not a DER OCSP response, its responseStatus is not "successful", it
 * is not a basic response, or none of its single responses is for this certificate (serial number
 * and issuer name hash; the issuer key hash too when the issuer is in the chain). The response's
 * signature is not verified here: as with nginx, the client verifies what it is stapled. A response
 * outside its validity (nextUpdate passed, or thisUpdate in the future, 5 minutes of leeway) is not
 * an error, since files age on their own: it is not stapled and the load says why in `warning`.
 * A "revoked" or "unknown" certificate status is stapled as it is (the client decides; nginx does
 * the same) and also reported in `warning`.
 *
 * ocsp_staple_attach() ties a staple to its X509 (ex_data); the context's status callback,
 * installed by ocsp_staple_enable(), finds it from the certificate the handshake chose, so
 * cert_alt pairs and SNI-selected certificates each staple their own response. OpenSSL calls the
 * callback only for a client that sent status_request; a staple whose nextUpdate has passed since
 * it was loaded is no longer sent (logged once).
 *
 * Ownership: the caller owns the staple and frees it after the last connection that may use its
 * certificate (tls_server: with the server). The callback runs on worker threads and only reads. */
#ifndef WEIR_OCSP_STAPLE_H
#define WEIR_OCSP_STAPLE_H

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>

struct ocsp_staple;

/* Loads `file` for `cert` (issued by one of `chain`, or by an issuer not sent). Returns the staple;
 * or NULL with `*failed` true and the reason in `err` (an error), or NULL with `*failed` false and
 * the reason in `warning` (not stapled). A staple returned may also come with a warning (revoked,
 * unknown). `err` and `warning` are set to "" when there is nothing to say. */
struct ocsp_staple *ocsp_staple_load(const char *file, X509 *cert, STACK_OF(X509) * chain,
                                     bool *failed, char *err, size_t err_len, char *warning,
                                     size_t warning_len);
void ocsp_staple_free(struct ocsp_staple *st);
/* From now on handshakes serving `cert` staple `st` (NULL: none). */
void ocsp_staple_attach(X509 *cert, struct ocsp_staple *st);
/* Installs the status callback on a server context. */
void ocsp_staple_enable(SSL_CTX *ctx);

#endif
