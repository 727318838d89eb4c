#include "tls/ocsp_staple.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

/* Larger than any real response (a few KiB with the responder's certificate): a bound on what a
 * mistaken path (a log, an image) makes us read. */
#define OCSP_FILE_MAX (1 << 20)

struct ocsp_staple {
    unsigned char *der; /* the response as read, sent as it is */
    int len;
    time_t next_update; /* 0: the response has no nextUpdate */
    atomic_bool expiry_logged;
    char *file;
};

static int staple_index = -1;
static pthread_once_t staple_index_once = PTHREAD_ONCE_INIT;

static void make_staple_index(void) {
    staple_index = X509_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (staple_index < 0) abort();
}

static void say(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *buf, size_t len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* The whole file, at most OCSP_FILE_MAX bytes; NULL with errno's reason in err. */
static unsigned char *read_file(const char *file, long *len, char *err, size_t err_len) {
    FILE *f = fopen(file, "rb");
    if (!f) {
        say(err, err_len, "cannot read the OCSP response %s: %s", file, strerror(errno));
        return NULL;
    }
    unsigned char *buf = malloc(OCSP_FILE_MAX + 1);
    if (!buf) abort();
    size_t n = fread(buf, 1, OCSP_FILE_MAX + 1, f);
    bool bad = ferror(f);
    fclose(f);
    if (bad || n > OCSP_FILE_MAX) {
        say(err, err_len, "cannot read the OCSP response %s: %s", file,
            bad ? "read error" : "larger than 1 MiB");
        free(buf);
        return NULL;
    }
    *len = (long)n;
    return buf;
}

/* The issuer of `cert` among `chain` (a self-signed certificate is its own), or NULL. */
static X509 *find_issuer(X509 *cert, STACK_OF(X509) * chain) {
    for (int i = 0; chain && i < sk_X509_num(chain); i++)
        if (X509_check_issued(sk_X509_value(chain, i), cert) == X509_V_OK)
            return sk_X509_value(chain, i);
    return X509_check_issued(cert, cert) == X509_V_OK ? cert : NULL;
}

static bool same_bytes(const ASN1_OCTET_STRING *s, const unsigned char *p, unsigned int len) {
    return s && (unsigned int)ASN1_STRING_length(s) == len &&
           memcmp(ASN1_STRING_get0_data(s), p, len) == 0;
}

/* Is this single response about `cert`? RFC 6960's CertID: the serial number, the hash of the
 * issuer's name (the certificate's issuer field) and, when we have the issuer, of its key. */
static bool single_is_for(OCSP_SINGLERESP *single, X509 *cert, X509 *issuer) {
    ASN1_OCTET_STRING *name_hash, *key_hash;
    ASN1_OBJECT *md_oid;
    ASN1_INTEGER *serial;
    if (!OCSP_id_get0_info(&name_hash, &md_oid, &key_hash, &serial,
                           (OCSP_CERTID *)OCSP_SINGLERESP_get0_id(single)))
        return false;
    if (ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(cert)) != 0) return false;
    const EVP_MD *md = EVP_get_digestbyobj(md_oid);
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!md || X509_NAME_digest(X509_get_issuer_name(cert), md, h, &n) != 1 ||
        !same_bytes(name_hash, h, n))
        return false;
    if (!issuer) return true;
    return X509_pubkey_digest(issuer, md, h, &n) == 1 && same_bytes(key_hash, h, n);
}

static time_t generalized_time(const ASN1_GENERALIZEDTIME *t) {
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
    return timegm(&tm);
}

/* Checks the parsed response; fills st->next_update. 1: staple it, 0: valid but not stapled
 * (warning), -1: an error. */
static int check_response(OCSP_RESPONSE *resp, X509 *cert, STACK_OF(X509) * chain,
                          struct ocsp_staple *st, const char *file, char *err, size_t err_len,
                          char *warning, size_t warning_len) {
    int status = OCSP_response_status(resp);
    if (status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        say(err, err_len, "the OCSP response %s is not successful (responseStatus %s)", file,
            OCSP_response_status_str(status));
        return -1;
    }
    OCSP_BASICRESP *basic = OCSP_response_get1_basic(resp);
    if (!basic) {
        say(err, err_len, "the OCSP response %s is not a basic OCSP response", file);
        return -1;
    }
    X509 *issuer = find_issuer(cert, chain);
    OCSP_SINGLERESP *single = NULL;
    for (int i = 0; i < OCSP_resp_count(basic) && !single; i++)
        if (single_is_for(OCSP_resp_get0(basic, i), cert, issuer))
            single = OCSP_resp_get0(basic, i);
    if (!single) {
        char name[256];
        X509_NAME_oneline(X509_get_subject_name(cert), name, sizeof name);
        say(err, err_len, "the OCSP response %s is not for the certificate %s (serial number%s)",
            file, name, issuer ? " and issuer" : " and issuer name");
        OCSP_BASICRESP_free(basic);
        return -1;
    }
    int reason;
    ASN1_GENERALIZEDTIME *revoked_at, *this_update, *next_update;
    int cert_status =
        OCSP_single_get0_status(single, &reason, &revoked_at, &this_update, &next_update);
    int rc = 1;
    /* No leeway for nextUpdate, so that the load and the handshakes (status_cb) agree on when
     * the response expires; 5 minutes for a responder's clock a little ahead of ours. */
    time_t soon = time(NULL) + 300;
    if (next_update && X509_cmp_current_time(next_update) < 0) {
        say(warning, warning_len,
            "the OCSP response %s has expired (nextUpdate passed); it is not stapled until the "
            "file is renewed and the configuration reloaded",
            file);
        rc = 0;
    } else if (!this_update || X509_cmp_time(this_update, &soon) > 0) {
        say(warning, warning_len,
            "the OCSP response %s is not valid yet (thisUpdate ahead); it is not stapled until "
            "the configuration is reloaded",
            file);
        rc = 0;
    } else if (cert_status != V_OCSP_CERTSTATUS_GOOD) {
        say(warning, warning_len,
            "the OCSP response %s says the certificate is %s; stapled as it is", file,
            OCSP_cert_status_str(cert_status));
    }
    st->next_update = generalized_time(next_update);
    OCSP_BASICRESP_free(basic);
    return rc;
}

struct ocsp_staple *ocsp_staple_load(const char *file, X509 *cert, STACK_OF(X509) * chain,
                                     bool *failed, char *err, size_t err_len, char *warning,
                                     size_t warning_len) {
    err[0] = warning[0] = '\0';
    *failed = true;
    long len = 0;
    unsigned char *der = read_file(file, &len, err, err_len);
    if (!der) return NULL;
    const unsigned char *p = der;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, len);
    if (!resp || p != der + len) {
        say(err, err_len, "%s is not a DER-encoded OCSP response", file);
        OCSP_RESPONSE_free(resp);
        free(der);
        ERR_clear_error();
        return NULL;
    }
    struct ocsp_staple *st = calloc(1, sizeof *st);
    if (!st) abort();
    int rc = check_response(resp, cert, chain, st, file, err, err_len, warning, warning_len);
    OCSP_RESPONSE_free(resp);
    ERR_clear_error();
    if (rc <= 0) {
        *failed = rc < 0;
        free(st);
        free(der);
        return NULL;
    }
    *failed = false;
    st->der = der;
    st->len = (int)len;
    st->file = strdup(file);
    if (!st->file) abort();
    atomic_init(&st->expiry_logged, false);
    return st;
}

void ocsp_staple_free(struct ocsp_staple *st) {
    if (!st) return;
    free(st->der);
    free(st->file);
    free(st);
}

void ocsp_staple_attach(X509 *cert, struct ocsp_staple *st) {
    pthread_once(&staple_index_once, make_staple_index);
    X509_set_ex_data(cert, staple_index, st);
}

/* OpenSSL calls this (server side) only when the client sent status_request, after it chose the
 * certificate: SSL_get_certificate() is the one being served. OpenSSL frees the copy it is given.
 */
static int status_cb(SSL *ssl, void *arg) {
    (void)arg;
    X509 *cert = SSL_get_certificate(ssl);
    struct ocsp_staple *st = cert ? X509_get_ex_data(cert, staple_index) : NULL;
    if (!st) return SSL_TLSEXT_ERR_NOACK;
    if (st->next_update && time(NULL) > st->next_update) {
        if (!atomic_exchange(&st->expiry_logged, true))
            log_warn("the OCSP response %s has expired (nextUpdate passed); no longer stapled "
                     "until the file is renewed and the configuration reloaded",
                     st->file);
        return SSL_TLSEXT_ERR_NOACK;
    }
    unsigned char *copy = OPENSSL_malloc((size_t)st->len);
    if (!copy) return SSL_TLSEXT_ERR_NOACK;
    memcpy(copy, st->der, (size_t)st->len);
    if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, st->len) != 1) {
        OPENSSL_free(copy);
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

void ocsp_staple_enable(SSL_CTX *ctx) {
    pthread_once(&staple_index_once, make_staple_index);
    SSL_CTX_set_tlsext_status_cb(ctx, status_cb);
}
