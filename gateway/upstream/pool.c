#include "upstream/pool.h"

#include <event2/buffer.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct pool_conn {
    struct pool_conn *prev, *next; /* within its key's list, newest first */
    struct pool_key *key;
    struct conn *conn;
};

struct pool_key {
    struct pool_key *next_key;
    struct sockaddr_storage addr;
    socklen_t len;
    struct pool_conn *head, *tail;
    int count;
    bool tls;
    unsigned char digest[32];
    char *name;
    SSL_SESSION *session;
};

#define POOL_BUCKETS 256
/* TLS keys are never freed before the pool, and with preserve_host their server name is the
 * client's Host: past this many, new names get neither pooling nor resumption. */
#define POOL_MAX_TLS_KEYS 1024

struct pool {
    struct event_base *base;
    int max_idle;
    int idle_timeout_ms;
    int n_tls_keys;
    struct pool_key *buckets[POOL_BUCKETS];
};

static unsigned addr_hash(const struct sockaddr *a, socklen_t len) {
    const unsigned char *b = (const unsigned char *)a;
    unsigned h = 2166136261u;
    for (socklen_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 16777619u;
    return h % POOL_BUCKETS;
}

static bool key_tls_equal(const struct pool_key *k, const struct pool_tls *tls) {
    if (!tls) return !k->tls;
    return k->tls && memcmp(k->digest, tls->digest, sizeof k->digest) == 0 &&
           strcmp(k->name, tls->name) == 0;
}

static struct pool_key *key_find(struct pool *p, const struct sockaddr *a, socklen_t len,
                                 const struct pool_tls *tls, int create) {
    unsigned h = addr_hash(a, len);
    for (struct pool_key *k = p->buckets[h]; k; k = k->next_key)
        if (k->len == len && memcmp(&k->addr, a, len) == 0 && key_tls_equal(k, tls)) return k;
    if (!create || (tls && p->n_tls_keys >= POOL_MAX_TLS_KEYS)) return NULL;
    struct pool_key *k = calloc(1, sizeof *k);
    if (!k) abort();
    memcpy(&k->addr, a, len);
    k->len = len;
    if (tls) {
        k->tls = true;
        memcpy(k->digest, tls->digest, sizeof k->digest);
        k->name = strdup(tls->name);
        if (!k->name) abort();
        p->n_tls_keys++;
    }
    k->next_key = p->buckets[h];
    p->buckets[h] = k;
    return k;
}

static void unlink_conn(struct pool_conn *c) {
    struct pool_key *k = c->key;
    if (c->prev)
        c->prev->next = c->next;
    else
        k->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        k->tail = c->prev;
    k->count--;
}

static void close_conn(struct pool_conn *c) {
    unlink_conn(c);
    conn_free(c->conn);
    free(c);
}

/* Anything happening on an idle connection ends it: the server closed it, sent
 * bytes nobody asked for, or the idle timeout fired. */
static void idle_read_cb(struct conn *conn, void *arg) {
    (void)conn;
    close_conn(arg);
}

static void idle_event_cb(struct conn *conn, short what, void *arg) {
    (void)conn;
    (void)what;
    close_conn(arg);
}

struct pool *pool_new(struct event_base *base, int max_idle, int idle_timeout_ms) {
    struct pool *p = calloc(1, sizeof *p);
    if (!p) abort();
    p->base = base;
    p->max_idle = max_idle;
    p->idle_timeout_ms = idle_timeout_ms;
    return p;
}

struct conn *pool_acquire(struct pool *p, const struct sockaddr *addr, socklen_t len,
                          const struct pool_tls *tls) {
    struct pool_key *k = key_find(p, addr, len, tls, 0);
    if (!k || !k->head) return NULL;
    struct pool_conn *c = k->head;
    struct conn *conn = c->conn;
    unlink_conn(c);
    free(c);
    /* Reading stays enabled and the idle timeout armed (no epoll or timer
     * change); the caller installs its callbacks and timeouts before
     * control returns to the loop. */
    conn_setcb(conn, NULL, NULL, NULL, NULL);
    return conn;
}

void pool_release(struct pool *p, const struct sockaddr *addr, socklen_t len,
                  const struct pool_tls *tls, struct conn *conn) {
    if (p->max_idle <= 0 || evbuffer_get_length(conn_input(conn)) != 0) {
        conn_free(conn);
        return;
    }
    struct pool_key *k = key_find(p, addr, len, tls, 1);
    if (!k) {
        conn_free(conn);
        return;
    }
    if (k->count >= p->max_idle) close_conn(k->tail);
    struct pool_conn *c = calloc(1, sizeof *c);
    if (!c) abort();
    c->key = k;
    c->conn = conn;
    c->next = k->head;
    if (k->head) k->head->prev = c;
    k->head = c;
    if (!k->tail) k->tail = c;
    k->count++;
    struct timeval tv = {p->idle_timeout_ms / 1000, (p->idle_timeout_ms % 1000) * 1000};
    conn_setcb(conn, idle_read_cb, NULL, idle_event_cb, c);
    conn_set_timeouts(conn, &tv, NULL);
    conn_read_enable(conn);
}

SSL_SESSION *pool_session(struct pool *p, const struct sockaddr *addr, socklen_t len,
                          const struct pool_tls *tls) {
    struct pool_key *k = key_find(p, addr, len, tls, 0);
    return k ? k->session : NULL;
}

void pool_save_session(struct pool *p, const struct sockaddr *addr, socklen_t len,
                       const struct pool_tls *tls, SSL_SESSION *session) {
    if (!session) return;
    struct pool_key *k = key_find(p, addr, len, tls, 1);
    if (!k) {
        SSL_SESSION_free(session);
        return;
    }
    SSL_SESSION_free(k->session);
    k->session = session;
}

void pool_close_all(struct pool *p) {
    for (int i = 0; i < POOL_BUCKETS; i++)
        for (struct pool_key *k = p->buckets[i]; k; k = k->next_key)
            while (k->head)
                close_conn(k->head);
}

void pool_free(struct pool *p) {
    if (!p) return;
    pool_close_all(p);
    for (int i = 0; i < POOL_BUCKETS; i++) {
        struct pool_key *k = p->buckets[i];
        while (k) {
            struct pool_key *next = k->next_key;
            SSL_SESSION_free(k->session);
            free(k->name);
            free(k);
            k = next;
        }
    }
    free(p);
}
