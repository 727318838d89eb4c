/* tls_upstream: the client side of TLS to https upstreams (services of protocol "https").
 *
 * tls_upstream_build() makes one OpenSSL client context per distinct TLS setting of the
 * config's https services (tls_verify, tls_verify_depth, ca_certificates, client_certificate):
 * TLS 1.2 and 1.3, ALPN http/1.1, peer verification when tls_verify (default true), trust in the
 * service's ca_certificates entities or else the system bundle, the client_certificate's
 * certificate and key for mutual TLS. Each context carries a digest of everything it was made
 * from: the keep-alive pool keys TLS connections by (address, server name, digest), so a plain
 * and a TLS connection, or connections made under different trust, never mix, and a
 * configuration change that leaves a service's settings alone keeps its pooled connections.
 *
 * Client sessions are kept for resumption: the context is in client session cache mode with an
 * external store (tls_conn.c takes the session OpenSSL reports; the pool keeps the newest per
 * key).
 *
 * Lifetime: built on the control thread by snapshot_build() and freed with the snapshot; an
 * SSL object holds its own reference on its context, so a connection in the pool outlives the
 * snapshot that made it. */
#ifndef WEIR_TLS_UPSTREAM_H
#define WEIR_TLS_UPSTREAM_H

#include "config/config.h"
#include "core/errlist.h"

struct ssl_ctx_st;

struct tls_upstream_ctx {
    struct ssl_ctx_st *ctx;
    unsigned char digest[32]; /* SHA-256 of the settings and PEM texts it was made from */
};

struct tls_upstreams;

/* NULL when the config has no https service (nothing to free), or on errors (in errs: an unknown
 * ca_certificates or client_certificate id, a PEM that does not load); *failed tells which. */
struct tls_upstreams *tls_upstream_build(const struct config *cfg, struct errlist *errs,
                                         bool *failed);
void tls_upstream_free(struct tls_upstreams *tu);
/* The context for service index i (cfg->services[i]), NULL for a plain service. */
const struct tls_upstream_ctx *tls_upstream_for(const struct tls_upstreams *tu, size_t i);

#endif
