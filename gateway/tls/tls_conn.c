#include "tls/tls_conn.h"

#include <errno.h>
#include <pthread.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "tls/tls_server.h"

struct tls_conn {
    SSL *ssl;
    struct tls_server *server;
    int fd;
    bool peeked;          /* the first byte was looked at */
    bool established;     /* the handshake finished */
    bool failed;          /* a fatal error: no close_notify may follow */
    bool notified;        /* close_notify was sent */
    bool client;          /* connecting to an upstream */
    bool drained;         /* the socket's last read was short or would block */
    SSL_SESSION *session; /* client: the newest session the server gave */
    char error[160];
};

/* Largest record payload: what one SSL_write turns into one record. */
#define TLS_RECORD_MAX 16384

/* The socket BIO's reads: one that returned less than asked (or nothing) emptied the socket, so
 * a caller on edge-triggered events may stop reading once OpenSSL holds nothing either, instead
 * of a last read that fails with EAGAIN on every request. */
static long note_socket_read(BIO *b, int oper, const char *argp, size_t len, int argi, long argl,
                             int ret, size_t *processed) {
    (void)argp, (void)argi, (void)argl;
    if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
        struct tls_conn *t = (struct tls_conn *)BIO_get_callback_arg(b);
        t->drained = ret <= 0 || (processed && *processed < len);
    }
    return ret;
}

static void watch_socket_reads(struct tls_conn *t) {
    BIO *rb = SSL_get_rbio(t->ssl);
    BIO_set_callback_arg(rb, (char *)t);
    BIO_set_callback_ex(rb, note_socket_read);
}

bool tls_conn_read_drained(const struct tls_conn *t) {
    return t->drained && !SSL_has_pending(t->ssl);
}

struct tls_conn *tls_conn_new(struct tls_server *ts, int fd) {
    SSL *ssl = SSL_new(tls_server_ssl_ctx(ts));
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    struct tls_conn *t = calloc(1, sizeof *t);
    if (!t) abort();
    t->ssl = ssl;
    t->fd = fd;
    t->server = ts;
    watch_socket_reads(t);
    tls_server_retain(ts);
    return t;
}

static int client_session_index = -1;

/* OpenSSL reports each new client session (TLS 1.3: each ticket, after the handshake): keep the
 * newest. Returning 1 takes the reference. */
static int new_client_session(SSL *ssl, SSL_SESSION *sess) {
    struct tls_conn *t = SSL_get_ex_data(ssl, client_session_index);
    if (!t) return 0;
    SSL_SESSION_free(t->session);
    t->session = sess;
    return 1;
}

static pthread_once_t client_session_once = PTHREAD_ONCE_INIT;

static void make_client_session_index(void) {
    client_session_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

void tls_conn_client_ctx_setup(SSL_CTX *ctx) {
    /* before any connection is made with a client context: the index is set by then */
    pthread_once(&client_session_once, make_client_session_index);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_client_session);
}

struct tls_conn *tls_conn_new_client(SSL_CTX *ctx, int fd, const char *name, SSL_SESSION *session) {
    SSL *ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_connect_state(ssl);
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    if (is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(param, name); /* no SNI for an address (RFC 6066) */
    } else {
        SSL_set_tlsext_host_name(ssl, name);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        X509_VERIFY_PARAM_set1_host(param, name, 0);
    }
    if (session) SSL_set_session(ssl, session);
    ERR_clear_error();
    struct tls_conn *t = calloc(1, sizeof *t);
    if (!t) abort();
    t->ssl = ssl;
    t->fd = fd;
    t->client = true;
    watch_socket_reads(t);
    t->peeked = true;
    SSL_set_ex_data(ssl, client_session_index, t);
    return t;
}

SSL_SESSION *tls_conn_take_session(struct tls_conn *t) {
    SSL_SESSION *s = t->session;
    t->session = NULL;
    if (s && !SSL_SESSION_is_resumable(s)) {
        SSL_SESSION_free(s);
        s = NULL;
    }
    return s;
}

bool tls_conn_session_reused(const struct tls_conn *t) {
    return SSL_session_reused(t->ssl) == 1;
}

void tls_conn_free(struct tls_conn *t, bool notify) {
    if (!t) return;
    if (notify) tls_conn_close_notify(t);
    if (t->client) SSL_set_ex_data(t->ssl, client_session_index, NULL);
    SSL_SESSION_free(t->session);
    SSL_free(t->ssl);
    tls_server_release(t->server);
    free(t);
}

/* Maps a failed call's result to what the caller waits for, recording fatal errors. */
static enum tls_io failure(struct tls_conn *t, int ret) {
    int err = SSL_get_error(t->ssl, ret);
    switch (err) {
    case SSL_ERROR_WANT_READ:
        return TLS_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TLS_IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        /* close_notify, or (SSL_OP_IGNORE_UNEXPECTED_EOF) a TCP end of stream */
        ERR_clear_error();
        return TLS_IO_CLOSED;
    case SSL_ERROR_SYSCALL: {
        int e = errno;
        t->failed = true;
        unsigned long q = ERR_get_error();
        if (q)
            snprintf(t->error, sizeof t->error, "%s", ERR_reason_error_string(q));
        else if (ret == 0 || e == 0)
            snprintf(t->error, sizeof t->error, "connection closed by the %s",
                     t->client ? "server" : "client");
        else
            snprintf(t->error, sizeof t->error, "%s", strerror(e));
        ERR_clear_error();
        return TLS_IO_ERROR;
    }
    default: {
        t->failed = true;
        unsigned long q = ERR_get_error();
        const char *r = q ? ERR_reason_error_string(q) : NULL;
        const char *name = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
        if (ERR_GET_LIB(q) == ERR_LIB_SSL && ERR_GET_REASON(q) == SSL_R_CALLBACK_FAILED && name)
            /* the server name callback refused it (tls_server.c) */
            snprintf(t->error, sizeof t->error,
                     "unknown server name \"%.100s\" (weir.ssl_reject_unknown_sni)", name);
        else if (ERR_GET_LIB(q) == ERR_LIB_SSL &&
                 ERR_GET_REASON(q) == SSL_R_CERTIFICATE_VERIFY_FAILED)
            /* the chain or the name did not check out: say which way */
            snprintf(t->error, sizeof t->error, "%s: %s", r,
                     X509_verify_cert_error_string(SSL_get_verify_result(t->ssl)));
        else
            snprintf(t->error, sizeof t->error, "%s", r ? r : "TLS error");
        ERR_clear_error();
        return TLS_IO_ERROR;
    }
    }
}

/* A TLS connection starts with a handshake record (0x16); an HTTP request line starts with a
 * method, upper-case letters. Anything else is left to OpenSSL to refuse. */
static enum tls_io peek_first_byte(struct tls_conn *t) {
    unsigned char b;
    ssize_t n = recv(t->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return TLS_IO_WANT_READ;
        t->failed = true;
        snprintf(t->error, sizeof t->error, "%s", strerror(errno));
        return TLS_IO_ERROR;
    }
    if (n == 0) {
        t->failed = true;
        snprintf(t->error, sizeof t->error, "connection closed before the handshake");
        return TLS_IO_CLOSED;
    }
    t->peeked = true;
    if (b >= 'A' && b <= 'Z') {
        t->failed = true;
        snprintf(t->error, sizeof t->error, "plain HTTP request on a TLS port");
        return TLS_IO_PLAIN_HTTP;
    }
    return TLS_IO_DONE;
}

enum tls_io tls_conn_handshake(struct tls_conn *t) {
    if (!t->peeked) {
        enum tls_io r = peek_first_byte(t);
        if (r != TLS_IO_DONE) return r;
    }
    int ret = SSL_do_handshake(t->ssl);
    if (ret == 1) {
        t->established = true;
        return TLS_IO_DONE;
    }
    return failure(t, ret);
}

enum tls_io tls_conn_read(struct tls_conn *t, void *buf, size_t len, size_t *got) {
    *got = 0;
    size_t n = 0;
    int ret = SSL_read_ex(t->ssl, buf, len, &n);
    if (ret == 1) {
        *got = n;
        return TLS_IO_DONE;
    }
    return failure(t, ret);
}

enum tls_io tls_conn_write(struct tls_conn *t, const void *buf, size_t len, size_t *put) {
    *put = 0;
    size_t n = 0;
    int ret = SSL_write_ex(t->ssl, buf, len < TLS_RECORD_MAX ? len : TLS_RECORD_MAX, &n);
    if (ret == 1) {
        *put = n;
        return TLS_IO_DONE;
    }
    return failure(t, ret);
}

void tls_conn_close_notify(struct tls_conn *t) {
    if (t->notified || t->failed || !t->established) return;
    t->notified = true;
    SSL_shutdown(t->ssl); /* one non-blocking try; a full socket loses it, which is allowed */
    ERR_clear_error();
}

const char *tls_conn_error(const struct tls_conn *t) {
    return t->error[0] ? t->error : "TLS error";
}

const char *tls_conn_protocol(const struct tls_conn *t) {
    return SSL_get_version(t->ssl);
}

const char *tls_conn_cipher(const struct tls_conn *t) {
    return SSL_get_cipher_name(t->ssl);
}

bool tls_conn_client_cert(const struct tls_conn *t, char *subject, size_t subject_len,
                          char fingerprint[65]) {
    X509 *x = SSL_get0_peer_certificate(t->ssl);
    if (!x || SSL_get_verify_result(t->ssl) != X509_V_OK || subject_len == 0) return false;
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio) abort();
    X509_NAME_print_ex(bio, X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
    int n = BIO_read(bio, subject, (int)(subject_len - 1));
    subject[n > 0 ? n : 0] = '\0';
    BIO_free(bio);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (X509_digest(x, EVP_sha256(), md, &len) != 1 || len != 32) {
        ERR_clear_error();
        return false;
    }
    static const char hex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < len; i++) {
        fingerprint[2 * i] = hex[md[i] >> 4];
        fingerprint[2 * i + 1] = hex[md[i] & 15];
    }
    fingerprint[64] = '\0';
    return true;
}

const char *tls_conn_server_name(const struct tls_conn *t) {
    return SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
}
