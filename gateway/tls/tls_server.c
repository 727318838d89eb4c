#include "tls/tls_server.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/model.h"
#include "config/config_fields.h"
#include "core/log.h"
#include "tls/ocsp_staple.h"
#include "tls/sni_map.h"

/* One certificate with its key and chain, as the handshake installs it. */
struct tls_pair {
    X509 *cert;
    STACK_OF(X509) * chain; /* intermediates, may be empty */
    EVP_PKEY *key;
    struct ocsp_staple *staple; /* NULL: nothing stapled */
};

/* A certificates entity: its pair and, when set, the alternate pair (another key type). */
struct tls_cert {
    struct tls_pair pairs[2];
    int n_pairs;
};

struct tls_server {
    atomic_int refs;
    SSL_CTX *ctx; /* holds the default certificate */
    struct tls_cert *certs;
    size_t n_certs;
    struct sni_map *snis;
    bool reject_unknown_sni;
    struct ocsp_staple *default_staple; /* weir.ssl_ocsp_response_file, for the ctx's cert */
};

/* Session ticket keys, process-wide: the current key seals new tickets, the previous one still
 * opens tickets it sealed (and asks for a renewed ticket). tls_ticket_keys_rotate() makes a new
 * current key; a ticket therefore lives between one and two rotation periods. Handshakes on every
 * worker read the ring under the read lock; only the control thread's rotation writes. */
struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

static struct {
    pthread_rwlock_t lock;
    struct ticket_key keys[2]; /* [0] current, [1] previous when n == 2 */
    int n;
} ticket_ring = {.lock = PTHREAD_RWLOCK_INITIALIZER};
static pthread_once_t ticket_ring_once = PTHREAD_ONCE_INIT;

static void new_ticket_key(struct ticket_key *k) {
    if (RAND_bytes((unsigned char *)k, sizeof *k) != 1) abort();
}

static void make_first_ticket_key(void) {
    new_ticket_key(&ticket_ring.keys[0]);
    ticket_ring.n = 1;
}

void tls_ticket_keys_rotate(void) {
    pthread_once(&ticket_ring_once, make_first_ticket_key);
    struct ticket_key fresh;
    new_ticket_key(&fresh);
    pthread_rwlock_wrlock(&ticket_ring.lock);
    ticket_ring.keys[1] = ticket_ring.keys[0];
    ticket_ring.keys[0] = fresh;
    ticket_ring.n = 2;
    pthread_rwlock_unlock(&ticket_ring.lock);
    OPENSSL_cleanse(&fresh, sizeof fresh);
}

/* OpenSSL's ticket key callback: AES-256-CBC and HMAC-SHA256 keyed from the ring (RFC 5077's
 * recommended construction, as OpenSSL's own default). Returns 1 (use), 2 (use and issue a new
 * ticket: sealed with the previous key), 0 (unknown key: full handshake), -1 (failure). */
static int ticket_key_cb(SSL *ssl, unsigned char name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *cipher, EVP_MAC_CTX *mac, int enc) {
    (void)ssl;
    struct ticket_key k;
    int rc = 1;
    pthread_rwlock_rdlock(&ticket_ring.lock);
    if (enc) {
        k = ticket_ring.keys[0];
    } else {
        rc = 0;
        for (int i = 0; i < ticket_ring.n && !rc; i++)
            if (memcmp(name, ticket_ring.keys[i].name, sizeof k.name) == 0) {
                k = ticket_ring.keys[i];
                rc = i == 0 ? 1 : 2;
            }
    }
    pthread_rwlock_unlock(&ticket_ring.lock);
    if (!rc) return 0;
    if (enc) {
        if (RAND_bytes(iv, 16) != 1) return -1;
        memcpy(name, k.name, sizeof k.name);
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof k.hmac),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    int ok = EVP_CipherInit_ex(cipher, EVP_aes_256_cbc(), NULL, k.aes, iv, enc) == 1 &&
             EVP_MAC_CTX_set_params(mac, params) == 1;
    OPENSSL_cleanse(&k, sizeof k);
    return ok ? rc : -1;
}

static const char *ssl_error_text(void) {
    unsigned long e = ERR_peek_last_error();
    if (e && ERR_SYSTEM_ERROR(e)) return strerror(ERR_GET_REASON(e));
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown error";
}

static void pair_free(struct tls_pair *p) {
    X509_free(p->cert);
    if (p->chain) sk_X509_pop_free(p->chain, X509_free);
    EVP_PKEY_free(p->key);
    ocsp_staple_free(p->staple);
}

/* A PEM certificate (then its chain) and key from entity fields; false when either fails to
 * parse or they do not match (the model checked them already: this guards the impossible). */
static bool pair_from_pem(const char *cert_pem, const char *key_pem, struct tls_pair *out) {
    memset(out, 0, sizeof *out);
    BIO *bio = BIO_new_mem_buf(cert_pem, -1);
    out->cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    out->chain = sk_X509_new_null();
    X509 *x;
    while (out->cert && out->chain && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
        sk_X509_push(out->chain, x);
    BIO_free(bio);
    bio = BIO_new_mem_buf(key_pem, -1);
    out->key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    bool ok = out->cert && out->chain && out->key && X509_check_private_key(out->cert, out->key);
    ERR_clear_error(); /* the chain loop ends on a "no start line" */
    if (!ok) pair_free(out);
    return ok;
}

/* Chooses the certificate for the client's SNI before the server's first flight. Runs on the
 * worker thread inside the handshake; installs the entity's pairs in place of the default. */
static int select_certificate(SSL *ssl, void *arg) {
    struct tls_server *ts = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || !ts->n_certs) return 1;
    int i = sni_map_lookup(ts->snis, name, strlen(name));
    if (i < 0) return 1;
    const struct tls_cert *c = &ts->certs[i];
    SSL_certs_clear(ssl);
    for (int p = 0; p < c->n_pairs; p++)
        if (SSL_use_cert_and_key(ssl, c->pairs[p].cert, c->pairs[p].key, c->pairs[p].chain, 1) != 1)
            return 0;
    return 1;
}

/* weir.ssl_reject_unknown_sni: a name that selects no certificate ends the handshake. */
static int check_server_name(SSL *ssl, int *alert, void *arg) {
    struct tls_server *ts = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!ts->reject_unknown_sni || !name) return SSL_TLSEXT_ERR_OK;
    if (ts->n_certs && sni_map_lookup(ts->snis, name, strlen(name)) >= 0) return SSL_TLSEXT_ERR_OK;
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static const unsigned char alpn_protocols[] = "\x08http/1.1";

/* ALPN: http/1.1 when the client offers it; otherwise no ALPN at all (RFC 7301 allows the
 * server to ignore the extension), and the client's first request shows what it speaks. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl, (void)arg;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, alpn_protocols, sizeof alpn_protocols - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *new_context(const struct weir_settings *ws, struct tls_server *ts,
                            struct errlist *errs) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        errlist_addf(errs, "weir", "cannot create a TLS context: %s", ssl_error_text());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Writes take what fits and may be retried from a moved buffer (an evbuffer's pullup);
     * idle keep-alive connections give their 34 KiB of record buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* Read what the socket holds in one read(), not a record header and then its body: a new
     * connection's ClientHello, then the client's Finished with its first request, each cost one
     * read instead of two to seven (nginx sets it too). conn.c reads until OpenSSL wants more
     * from the socket, so nothing read ahead waits for an edge that will not come. */
    SSL_CTX_set_read_ahead(ctx, 1);
    if (SSL_CTX_set_cipher_list(ctx, ws->ssl_ciphers) != 1)
        errlist_addf(errs, "weir.ssl_ciphers", "no usable cipher in \"%s\": %s", ws->ssl_ciphers,
                     ssl_error_text());
    ERR_clear_error();
    static const unsigned char sid_ctx[] = "weir";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, 20480);
    pthread_once(&ticket_ring_once, make_first_ticket_key);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    SSL_CTX_set_cert_cb(ctx, select_certificate, ts);
    SSL_CTX_set_tlsext_servername_callback(ctx, check_server_name);
    SSL_CTX_set_tlsext_servername_arg(ctx, ts);
    ocsp_staple_enable(ctx);
    return ctx;
}

/* weir.ssl_verify_client: ask for (and verify) client certificates chaining to ssl_client_ca. */
static void load_client_ca(SSL_CTX *ctx, const struct weir_settings *ws, struct errlist *errs) {
    if (ws->ssl_verify_client == SSL_VERIFY_CLIENT_OFF || !ws->ssl_client_ca) return;
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ws->ssl_client_ca);
    if (!names || SSL_CTX_load_verify_locations(ctx, ws->ssl_client_ca, NULL) != 1) {
        errlist_addf(errs, "weir.ssl_client_ca", "cannot load the CA certificates %s: %s",
                     ws->ssl_client_ca, names ? ssl_error_text() : "no certificate in the file");
        if (names) sk_X509_NAME_pop_free(names, X509_NAME_free);
        ERR_clear_error();
        return;
    }
    /* Sessions are resumed only under the same client certificate policy: a session made
     * while no certificate was required must not skip a check required now (nginx does the
     * same). The session id context is a digest of the mode and the CAs' names. */
    unsigned char sid[32];
    unsigned int sid_len = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
    unsigned char mode_byte = (unsigned char)ws->ssl_verify_client;
    ok = ok && EVP_DigestUpdate(md, "weir", 4) == 1 && EVP_DigestUpdate(md, &mode_byte, 1) == 1;
    for (int i = 0; ok && i < sk_X509_NAME_num(names); i++) {
        unsigned char *der = NULL;
        int n = i2d_X509_NAME(sk_X509_NAME_value(names, i), &der);
        ok = n > 0 && EVP_DigestUpdate(md, der, (size_t)n) == 1;
        OPENSSL_free(der);
    }
    ok = ok && EVP_DigestFinal_ex(md, sid, &sid_len) == 1;
    EVP_MD_CTX_free(md);
    if (!ok) abort();
    SSL_CTX_set_session_id_context(ctx, sid, sid_len);
    SSL_CTX_set_client_CA_list(ctx, names); /* takes names */
    int mode = SSL_VERIFY_PEER;
    if (ws->ssl_verify_client == SSL_VERIFY_CLIENT_REQUIRED)
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, NULL);
    ERR_clear_error();
}

/* An OCSP response file for `cert`: an error goes to errs under `path`, a response that is valid
 * but not stapled (expired) or notable (revoked) is logged as a warning (tls/ocsp_staple.h). */
static struct ocsp_staple *load_staple(const char *file, X509 *cert, STACK_OF(X509) * chain,
                                       const char *path, struct errlist *errs) {
    char err[512], warning[512];
    bool failed;
    struct ocsp_staple *st =
        ocsp_staple_load(file, cert, chain, &failed, err, sizeof err, warning, sizeof warning);
    if (failed) errlist_addf(errs, path, "%s", err);
    if (warning[0]) log_warn("%s: %s", path, warning);
    if (st) ocsp_staple_attach(cert, st);
    return st;
}

/* weir.ssl_cert and ssl_cert_key onto the context, each problem naming its file. */
static void load_default(struct tls_server *ts, SSL_CTX *ctx, const struct weir_settings *ws,
                         struct errlist *errs) {
    if (SSL_CTX_use_certificate_chain_file(ctx, ws->ssl_cert) != 1) {
        errlist_addf(errs, "weir.ssl_cert", "cannot load the certificate %s: %s", ws->ssl_cert,
                     ssl_error_text());
    } else if (SSL_CTX_use_PrivateKey_file(ctx, ws->ssl_cert_key, SSL_FILETYPE_PEM) != 1) {
        errlist_addf(errs, "weir.ssl_cert_key", "cannot load the private key %s: %s",
                     ws->ssl_cert_key, ssl_error_text());
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        errlist_addf(errs, "weir.ssl_cert_key",
                     "the private key %s does not match the "
                     "certificate %s",
                     ws->ssl_cert_key, ws->ssl_cert);
    } else if (ws->ssl_ocsp_response_file) {
        STACK_OF(X509) *chain = NULL;
        SSL_CTX_get0_chain_certs(ctx, &chain);
        ts->default_staple = load_staple(ws->ssl_ocsp_response_file, SSL_CTX_get0_certificate(ctx),
                                         chain, "weir.ssl_ocsp_response_file", errs);
    }
    ERR_clear_error();
}

static const char *field(const json_t *e, const char *key) {
    return json_string_value(json_object_get(e, key));
}

/* A certificate entity's ocsp_response_file (for cert) and ocsp_response_file_alt (for
 * cert_alt), relative paths against the configuration file's directory. */
static void load_entity_staples(struct tls_cert *tc, const json_t *c, const char *cert_id,
                                const char *base_dir, struct errlist *errs) {
    static const char *const keys[2] = {"ocsp_response_file", "ocsp_response_file_alt"};
    for (int p = 0; p < tc->n_pairs; p++) {
        const char *v = field(c, keys[p]);
        if (!v) continue;
        char path[128];
        snprintf(path, sizeof path, "certificates(%s).%s", cert_id, keys[p]);
        char *file = field_resolve_path(base_dir, v);
        tc->pairs[p].staple = load_staple(file, tc->pairs[p].cert, tc->pairs[p].chain, path, errs);
        free(file);
    }
}

/* The certificates that some sni names, in model order, and the map from names to them. */
static void load_entities(struct tls_server *ts, const json_t *model, const char *base_dir,
                          struct errlist *errs) {
    const json_t *certs = model_items(model, ENTITY_CERTIFICATE);
    const json_t *snis = model_items(model, ENTITY_SNI);
    ts->snis = sni_map_new();
    if (!json_array_size(snis)) {
        sni_map_seal(ts->snis);
        return;
    }
    /* certificate id -> its slot in ts->certs, filled on first use by an sni */
    json_t *slot_of = json_object();
    ts->certs = calloc(json_array_size(certs), sizeof *ts->certs);
    if (!ts->certs || !slot_of) abort();
    size_t i;
    json_t *sni;
    json_array_foreach(snis, i, sni) {
        const char *name = field(sni, "name");
        const char *cert_id = field(json_object_get(sni, "certificate"), "id");
        if (!name || !cert_id) continue;
        json_t *slot = json_object_get(slot_of, cert_id);
        if (!slot) {
            long at = model_find(model, ENTITY_CERTIFICATE, cert_id, NULL, NULL);
            const json_t *c = at >= 0 ? json_array_get(certs, (size_t)at) : NULL;
            struct tls_cert *tc = &ts->certs[ts->n_certs];
            if (!c || !pair_from_pem(field(c, "cert"), field(c, "key"), &tc->pairs[0])) {
                errlist_addf(errs, "certificates", "certificate %s cannot be loaded", cert_id);
                continue;
            }
            tc->n_pairs = 1;
            if (field(c, "cert_alt") && field(c, "key_alt")) {
                if (!pair_from_pem(field(c, "cert_alt"), field(c, "key_alt"), &tc->pairs[1]))
                    errlist_addf(errs, "certificates", "certificate %s: cert_alt cannot be loaded",
                                 cert_id);
                else
                    tc->n_pairs = 2;
            }
            load_entity_staples(tc, c, cert_id, base_dir, errs);
            slot = json_integer((json_int_t)ts->n_certs++);
            json_object_set_new(slot_of, cert_id, slot);
        }
        sni_map_add(ts->snis, name, (int)json_integer_value(slot));
    }
    json_decref(slot_of);
    sni_map_seal(ts->snis);
}

static void server_free(struct tls_server *ts) {
    SSL_CTX_free(ts->ctx);
    for (size_t i = 0; i < ts->n_certs; i++)
        for (int p = 0; p < ts->certs[i].n_pairs; p++)
            pair_free(&ts->certs[i].pairs[p]);
    free(ts->certs);
    sni_map_free(ts->snis);
    ocsp_staple_free(ts->default_staple);
    free(ts);
}

struct tls_server *tls_server_build(const struct config *cfg, struct errlist *errs) {
    const struct weir_settings *ws = &cfg->weir;
    size_t before = errs->n;
    struct tls_server *ts = calloc(1, sizeof *ts);
    if (!ts) abort();
    atomic_init(&ts->refs, 1);
    ts->reject_unknown_sni = ws->ssl_reject_unknown_sni;
    ts->ctx = new_context(ws, ts, errs);
    if (ts->ctx && ws->ssl_cert && ws->ssl_cert_key) load_default(ts, ts->ctx, ws, errs);
    if (ts->ctx) load_client_ca(ts->ctx, ws, errs);
    load_entities(ts, cfg->model, cfg->base_dir, errs);
    if (errs->n > before) {
        server_free(ts);
        return NULL;
    }
    return ts;
}

void tls_server_retain(struct tls_server *ts) {
    atomic_fetch_add_explicit(&ts->refs, 1, memory_order_relaxed);
}

void tls_server_release(struct tls_server *ts) {
    if (!ts) return;
    if (atomic_fetch_sub_explicit(&ts->refs, 1, memory_order_acq_rel) != 1) return;
    server_free(ts);
}

size_t tls_server_n_certificates(const struct tls_server *ts) {
    return ts->n_certs;
}

struct ssl_ctx_st *tls_server_ssl_ctx(struct tls_server *ts) {
    return ts->ctx;
}
