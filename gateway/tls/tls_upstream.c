#include "tls/tls_upstream.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/model.h"
#include "tls/tls_conn.h"

struct tls_upstreams {
    struct tls_upstream_ctx *ctxs; /* distinct contexts */
    size_t n_ctxs;
    const struct tls_upstream_ctx **by_service; /* [cfg->n_services] */
    size_t n_services;
};

static const char *ssl_error_text(void) {
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown error";
}

/* The entity's field, from the model (ids compared in lower case, as the model stores them). */
static const char *entity_field(const json_t *model, enum entity_kind k, const char *id,
                                const char *key) {
    char low[64];
    size_t n = strlen(id);
    if (n >= sizeof low) return NULL;
    for (size_t i = 0; i <= n; i++)
        low[i] = (char)((id[i] >= 'A' && id[i] <= 'Z') ? id[i] + 32 : id[i]);
    long at = model_find(model, k, low, NULL, NULL);
    if (at < 0) return NULL;
    return json_string_value(
        json_object_get(json_array_get(model_items(model, k), (size_t)at), key));
}

static void digest_add(EVP_MD_CTX *md, const char *s) {
    size_t n = s ? strlen(s) + 1 : 0; /* with its NUL: "ab"+"c" differs from "a"+"bc" */
    if (n)
        EVP_DigestUpdate(md, s, n);
    else
        EVP_DigestUpdate(md, "\xff", 1);
}

/* The service's settings and the PEM texts they name, hashed; false (with errors) when an id
 * names nothing. */
static bool settings_digest(const struct config *cfg, const struct service *s, const char *path,
                            unsigned char out[32], struct errlist *errs) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) abort();
    char num[32];
    snprintf(num, sizeof num, "%d:%d:%zu", s->tls_verify, s->tls_verify_depth,
             s->n_ca_certificates);
    digest_add(md, num);
    bool ok = true;
    for (size_t i = 0; i < s->n_ca_certificates; i++) {
        const char *pem =
            entity_field(cfg->model, ENTITY_CA_CERTIFICATE, s->ca_certificates[i], "cert");
        if (!pem) {
            errlist_addf(errs, path, "ca_certificates: no ca_certificate with id %s",
                         s->ca_certificates[i]);
            ok = false;
        }
        digest_add(md, pem);
    }
    if (s->client_certificate) {
        const char *cert =
            entity_field(cfg->model, ENTITY_CERTIFICATE, s->client_certificate, "cert");
        const char *key =
            entity_field(cfg->model, ENTITY_CERTIFICATE, s->client_certificate, "key");
        if (!cert || !key) {
            errlist_addf(errs, path, "client_certificate: no certificate with id %s",
                         s->client_certificate);
            ok = false;
        }
        digest_add(md, cert);
        digest_add(md, key);
    } else {
        digest_add(md, NULL);
    }
    unsigned int len = 0;
    EVP_DigestFinal_ex(md, out, &len);
    EVP_MD_CTX_free(md);
    return ok;
}

static bool add_cas(SSL_CTX *ctx, const char *pem) {
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (!bio) abort();
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int n = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
        X509_STORE_add_cert(store, x);
        X509_free(x);
        n++;
    }
    BIO_free(bio);
    ERR_clear_error(); /* the end of the PEM text, or a duplicate */
    return n > 0;
}

static bool use_client_cert(SSL_CTX *ctx, const char *cert, const char *key) {
    BIO *bio = BIO_new_mem_buf(cert, -1);
    if (!bio) abort();
    bool ok = false;
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (x && SSL_CTX_use_certificate(ctx, x) == 1) {
        ok = true;
        X509 *ca;
        while ((ca = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
            if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) X509_free(ca);
    }
    X509_free(x);
    BIO_free(bio);
    ERR_clear_error();
    if (!ok) return false;
    bio = BIO_new_mem_buf(key, -1);
    if (!bio) abort();
    EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ok = k && SSL_CTX_use_PrivateKey(ctx, k) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(k);
    ERR_clear_error();
    return ok;
}

static SSL_CTX *new_client_context(const struct config *cfg, const struct service *s,
                                   const char *path, struct errlist *errs) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        errlist_addf(errs, path, "cannot create a TLS context: %s", ssl_error_text());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_RELEASE_BUFFERS);
    tls_conn_client_ctx_setup(ctx);
    SSL_CTX_set_verify(ctx, s->tls_verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (s->tls_verify_depth >= 0) SSL_CTX_set_verify_depth(ctx, s->tls_verify_depth);
    bool ok = true;
    if (s->n_ca_certificates) {
        for (size_t i = 0; i < s->n_ca_certificates; i++) {
            const char *pem =
                entity_field(cfg->model, ENTITY_CA_CERTIFICATE, s->ca_certificates[i], "cert");
            if (pem && !add_cas(ctx, pem)) {
                errlist_addf(errs, path, "ca_certificates: ca_certificate %s cannot be loaded",
                             s->ca_certificates[i]);
                ok = false;
            }
        }
    } else if (s->tls_verify && SSL_CTX_set_default_verify_paths(ctx) != 1) {
        ERR_clear_error(); /* no system bundle: every verification fails, with its reason */
    }
    if (s->client_certificate) {
        const char *cert =
            entity_field(cfg->model, ENTITY_CERTIFICATE, s->client_certificate, "cert");
        const char *key =
            entity_field(cfg->model, ENTITY_CERTIFICATE, s->client_certificate, "key");
        if (cert && key && !use_client_cert(ctx, cert, key)) {
            errlist_addf(errs, path, "client_certificate: certificate %s cannot be loaded",
                         s->client_certificate);
            ok = false;
        }
    }
    if (!ok) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

void tls_upstream_free(struct tls_upstreams *tu) {
    if (!tu) return;
    for (size_t i = 0; i < tu->n_ctxs; i++)
        SSL_CTX_free(tu->ctxs[i].ctx);
    free(tu->ctxs);
    free(tu->by_service);
    free(tu);
}

struct tls_upstreams *tls_upstream_build(const struct config *cfg, struct errlist *errs,
                                         bool *failed) {
    *failed = false;
    size_t n_tls = 0;
    for (size_t i = 0; i < cfg->n_services; i++)
        n_tls += cfg->services[i].tls;
    if (!n_tls) return NULL;
    struct tls_upstreams *tu = calloc(1, sizeof *tu);
    if (!tu) abort();
    tu->ctxs = calloc(n_tls, sizeof *tu->ctxs);
    tu->by_service = calloc(cfg->n_services, sizeof *tu->by_service);
    if (!tu->ctxs || !tu->by_service) abort();
    tu->n_services = cfg->n_services;
    size_t *which = calloc(cfg->n_services, sizeof *which);
    if (!which) abort();
    for (size_t i = 0; i < cfg->n_services; i++) {
        const struct service *s = &cfg->services[i];
        if (!s->tls) continue;
        char path[160];
        snprintf(path, sizeof path, "services (%s)", s->name ? s->name : s->id);
        unsigned char d[32];
        if (!settings_digest(cfg, s, path, d, errs)) {
            *failed = true;
            continue;
        }
        size_t k = 0;
        while (k < tu->n_ctxs && memcmp(tu->ctxs[k].digest, d, sizeof d) != 0)
            k++;
        if (k == tu->n_ctxs) {
            SSL_CTX *ctx = new_client_context(cfg, s, path, errs);
            if (!ctx) {
                *failed = true;
                continue;
            }
            tu->ctxs[k].ctx = ctx;
            memcpy(tu->ctxs[k].digest, d, sizeof d);
            tu->n_ctxs++;
        }
        which[i] = k + 1;
    }
    /* by_service points into ctxs, complete now */
    for (size_t i = 0; i < cfg->n_services; i++)
        if (which[i]) tu->by_service[i] = &tu->ctxs[which[i] - 1];
    free(which);
    if (*failed) {
        tls_upstream_free(tu);
        return NULL;
    }
    return tu;
}

const struct tls_upstream_ctx *tls_upstream_for(const struct tls_upstreams *tu, size_t i) {
    return tu && i < tu->n_services ? tu->by_service[i] : NULL;
}
