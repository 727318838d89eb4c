#include "tls/tls_client.h"

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct ca_file {
    char *path;
    X509_STORE *store;
};

struct tls_client {
    const char *log_name;
    SSL_CTX *ctx; /* the first tls_client_ready() */
    struct ca_file cas[TLS_CLIENT_MAX_CA_FILES];
    size_t n_cas;
};

/* A struct tls_ca is an X509_STORE under an opaque name, which keeps OpenSSL out of callers. */
static X509_STORE *ca_store(struct tls_ca *ca) {
    return (X509_STORE *)(void *)ca;
}

static const char *ssl_error_text(unsigned long e) {
    if (e && ERR_SYSTEM_ERROR(e)) return strerror(ERR_GET_REASON(e)); /* errno, e.g. ENOENT */
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown error";
}

struct tls_client *tls_client_new(const char *log_name) {
    struct tls_client *tc = calloc(1, sizeof *tc);
    if (!tc) abort();
    tc->log_name = log_name;
    return tc;
}

void tls_client_free(struct tls_client *tc) {
    SSL_CTX_free(tc->ctx);
    for (size_t i = 0; i < tc->n_cas; i++) {
        free(tc->cas[i].path);
        X509_STORE_free(tc->cas[i].store);
    }
    free(tc);
}

bool tls_client_ready(struct tls_client *tc, char *why, size_t n) {
    if (tc->ctx) return true;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(why, n, "%s", ssl_error_text(ERR_get_error()));
        ERR_clear_error();
        return false;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_set_default_verify_paths(ctx) != 1)
        log_warn("%s: cannot load the system CA certificates: %s", tc->log_name,
                 ssl_error_text(ERR_peek_error()));
    ERR_clear_error();
    tc->ctx = ctx;
    return true;
}

/* The cached store of path, or a new one that may push the oldest out. */
static X509_STORE *ca_lookup(struct tls_client *tc, const char *path, char *why, size_t n) {
    for (size_t i = 0; i < tc->n_cas; i++)
        if (strcmp(tc->cas[i].path, path) == 0) return tc->cas[i].store;
    X509_STORE *s = X509_STORE_new();
    if (!s) abort();
    if (X509_STORE_load_file(s, path) != 1) {
        snprintf(why, n, "%s", ssl_error_text(ERR_peek_error())); /* the cause */
        ERR_clear_error();
        X509_STORE_free(s);
        return NULL;
    }
    if (tc->n_cas == TLS_CLIENT_MAX_CA_FILES) {
        free(tc->cas[0].path);
        X509_STORE_free(tc->cas[0].store); /* connections being set up hold their own */
        memmove(&tc->cas[0], &tc->cas[1], (TLS_CLIENT_MAX_CA_FILES - 1) * sizeof tc->cas[0]);
        tc->n_cas--;
    }
    tc->cas[tc->n_cas].path = strdup(path);
    if (!tc->cas[tc->n_cas].path) abort();
    tc->cas[tc->n_cas++].store = s;
    return s;
}

struct tls_ca *tls_client_ca(struct tls_client *tc, const char *path, char *why, size_t n) {
    X509_STORE *s = ca_lookup(tc, path, why, n);
    if (!s) return NULL;
    if (X509_STORE_up_ref(s) != 1) abort();
    return (struct tls_ca *)(void *)s;
}

void tls_client_ca_release(struct tls_ca *ca) {
    X509_STORE_free(ca_store(ca));
}

static SSL *ssl_new(struct tls_client *tc, const char *host, bool host_is_ip, bool verify,
                    struct tls_ca *ca) {
    WEIR_BUG_ON(!tc->ctx);
    SSL *ssl = SSL_new(tc->ctx);
    if (!ssl) abort();
    /* SNI takes names only (RFC 6066 3) */
    if (!host_is_ip) SSL_set_tlsext_host_name(ssl, host);
    if (!verify) {
        SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
        return ssl;
    }
    SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (host_is_ip)
        X509_VERIFY_PARAM_set1_ip_asc(param, host);
    else
        X509_VERIFY_PARAM_set1_host(param, host, 0);
    if (ca) SSL_set1_verify_cert_store(ssl, ca_store(ca));
    return ssl;
}

struct bufferevent *tls_client_bufferevent(struct tls_client *tc, struct event_base *base, int fd,
                                           const char *host, bool host_is_ip, bool verify,
                                           struct tls_ca *ca) {
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(base, fd, ssl_new(tc, host, host_is_ip, verify, ca),
                                       BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) abort();
    /* Many servers close without close_notify; framing (Content-Length, chunked) still tells
     * a complete body from a cut one. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

const char *tls_client_take_error(struct bufferevent *bev) {
    unsigned long first = 0, e;
    while ((e = bufferevent_get_openssl_error(bev)) != 0)
        if (!first) first = e;
    return first ? ssl_error_text(first) : NULL;
}

const char *tls_client_verify_error(struct bufferevent *bev) {
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    return v != X509_V_OK ? X509_verify_cert_error_string(v) : NULL;
}
