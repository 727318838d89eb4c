#include "redis/redis_client.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <hiredis/async.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/fmt.h"
#include "core/log.h"

/* Redis's own default limit on one bulk argument (proto-max-bulk-len); it also keeps the
 * formatted command's length within hiredis's int. */
#define MAX_COMMAND_BYTES (512 * 1024 * 1024)
#define UNIX_PREFIX "unix:"
#define KEEPALIVE_IDLE_S 60
#define KEEPALIVE_INTERVAL_S 15
#define KEEPALIVE_COUNT 4

struct redis_cmd {
    struct redis_conn *conn;
    struct redis_cmd *next; /* in conn->queue until the connection has a hiredis context */
    char *wire;             /* the formatted command (in this allocation), until hiredis has it */
    size_t wire_len;
    redis_reply_fn fn; /* NULL once answered or cancelled */
    void *arg;
    struct event *timer;      /* the caller's timeout; NULL once detached */
    uint64_t answered_before; /* conn->answered when the command was submitted */
    bool sent;                /* hiredis holds it and calls on_reply exactly once */
    bool internal;            /* AUTH or SELECT: no caller waits on it */
};

struct redis_conn {
    struct redis_pool *pool;
    struct redis_target *target; /* NULL once unlinked: dying, picked for nothing new */
    struct redis_conn *next;
    redisAsyncContext *ac;       /* NULL while the host name is being resolved */
    struct event *rev, *wev;     /* read and write readiness, switched by hiredis's hooks */
    struct event *flush;         /* writes queued output at the end of this loop iteration */
    struct event *connect_timer; /* until the TCP connection is up */
    struct evdns_getaddrinfo_request *dns;
    struct redis_cmd *queue, **queue_tail; /* waiting for the hiredis context */
    redisReplyObjectFunctions *builders;   /* hiredis's own, wrapped by counted_builders */
    size_t in_flight;   /* submitted and not yet answered, cancelled ones included */
    size_t callers;     /* of those, the ones a caller still waits on */
    uint64_t answered;  /* replies received */
    size_t reply_bytes; /* memory of the reply being parsed */
    bool opening;       /* inside conn_open: a failure is reported by its return value */
    bool failed, dropping, connected;
    char reason[192]; /* why the connection is going away */
};

struct redis_target {
    struct redis_pool *pool;
    struct redis_target *prev, *next; /* most recently used first */
    char *host, *username, *password, *pool_name;
    int port, db;
    struct redis_conn *conns;
    int n_conns;
};

struct redis_pool {
    struct event_base *base;
    struct evdns_base *dns; /* made for the first host name that is not an address */
    struct redis_target *targets, *oldest;
    int n_targets;
    struct redis_conn *flushing; /* the connection on_flush is writing, if any */
    char error[256];             /* redis_command's *err */
};

static void conn_drop(struct redis_conn *c, const char *reason);

static struct timeval tv_of_ms(int ms) {
    if (ms < 1) ms = 1;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* redis_command()'s early answer: *err points into the pool until its next call. */
static void fail(struct redis_pool *p, const char **err, const char *msg) {
    snprintf(p->error, sizeof p->error, "%s", msg);
    *err = p->error;
}

/* ---- commands --------------------------------------------------------------------------- */

static void cmd_free(struct redis_cmd *cmd) {
    if (cmd->timer) event_free(cmd->timer);
    free(cmd);
}

/* Takes the caller off the command: its callback will not be called (again). */
static void cmd_detach(struct redis_cmd *cmd) {
    if (cmd->fn && !cmd->internal && cmd->conn) cmd->conn->callers--;
    cmd->fn = NULL;
    if (cmd->timer) event_free(cmd->timer);
    cmd->timer = NULL;
}

static void queue_remove(struct redis_conn *c, struct redis_cmd *cmd) {
    struct redis_cmd **p = &c->queue;
    while (*p != cmd)
        p = &(*p)->next;
    *p = cmd->next;
    if (c->queue_tail == &cmd->next) c->queue_tail = p;
}

/* hiredis's callback for every command it was given: once with the reply, or with NULL when the
 * connection is torn down first. The reply is freed by hiredis when this returns. */
static void on_reply(redisAsyncContext *ac, void *r, void *privdata) {
    struct redis_cmd *cmd = privdata;
    struct redis_conn *c = ac->data;
    redisReply *reply = r;
    c->in_flight--;
    if (reply) {
        c->answered++;
    } else if (c->target) {
        /* hiredis is tearing the connection down (read error, EOF, protocol error): take it
         * out of the target first, so that callers woken below open a new one */
        if (!c->reason[0])
            snprintf(c->reason, sizeof c->reason, "%s: %s",
                     c->connected ? "connection lost" : "connect failed",
                     c->ac->c.errstr[0] ? c->ac->c.errstr : "closed");
        conn_drop(c, c->reason);
    }
    redis_reply_fn fn = cmd->fn;
    void *arg = cmd->arg;
    cmd_detach(cmd);
    free(cmd);
    /* c lives until hiredis's cleanup hook, which runs after every callback */
    if (fn) fn(arg, reply, reply ? NULL : c->reason);
}

/* Hands the command to hiredis, which formats nothing more: it appends the bytes and asks for
 * write readiness. Only a connection that is going away refuses, and those are never picked. */
static void conn_send(struct redis_conn *c, struct redis_cmd *cmd) {
    int rc = redisAsyncFormattedCommand(c->ac, on_reply, cmd, cmd->wire, cmd->wire_len);
    WEIR_BUG_ON(rc != REDIS_OK);
    cmd->wire = NULL;
    cmd->sent = true;
}

static void conn_submit(struct redis_conn *c, struct redis_cmd *cmd) {
    cmd->conn = c;
    cmd->answered_before = c->answered;
    c->in_flight++;
    if (!cmd->internal) c->callers++;
    if (c->ac) {
        conn_send(c, cmd);
        return;
    }
    cmd->next = NULL;
    *c->queue_tail = cmd;
    c->queue_tail = &cmd->next;
}

/* The command in RESP, as hiredis's redisFormatCommandArgv() writes it, but in the command's own
 * allocation and without that function's sprintf per length (a twentieth of a policy route's
 * instructions). */
static struct redis_cmd *cmd_new(int argc, const char **argv, const size_t *argvlen) {
    size_t len = 1 + 20 + 2;
    for (int i = 0; i < argc; i++)
        len += 1 + 20 + 2 + argvlen[i] + 2;
    struct redis_cmd *cmd = malloc(sizeof *cmd + len);
    if (!cmd) abort();
    memset(cmd, 0, sizeof *cmd);
    char *p = (char *)(cmd + 1);
    cmd->wire = p;
    *p++ = '*';
    p += fmt_u64(p, (uint64_t)argc);
    *p++ = '\r';
    *p++ = '\n';
    for (int i = 0; i < argc; i++) {
        *p++ = '$';
        p += fmt_u64(p, argvlen[i]);
        *p++ = '\r';
        *p++ = '\n';
        memcpy(p, argv[i], argvlen[i]);
        p += argvlen[i];
        *p++ = '\r';
        *p++ = '\n';
    }
    cmd->wire_len = (size_t)(p - cmd->wire);
    return cmd;
}

/* The caller's timeout. The command stays where it is (hiredis will read its reply and drop
 * it); only a connection that has not answered anything since it was sent is dropped. */
static void on_timeout(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct redis_cmd *cmd = arg;
    struct redis_conn *c = cmd->conn;
    redis_reply_fn fn = cmd->fn;
    void *fn_arg = cmd->arg;
    bool stalled = c->answered == cmd->answered_before;
    cmd_detach(cmd);
    if (!cmd->sent) {
        queue_remove(c, cmd);
        c->in_flight--;
        cmd_free(cmd);
    }
    if (stalled) conn_drop(c, "timeout");
    fn(fn_arg, NULL, "timeout");
}

/* ---- reply size ------------------------------------------------------------------------- */

/* hiredis builds each reply object through these; counting what they allocate bounds the memory
 * of one reply (a huge array of small elements never sits in the read buffer as a whole). The
 * root object of a reply (no parent) starts a new count. */
static bool charge(const redisReadTask *task, size_t bytes) {
    struct redis_conn *c = task->privdata;
    if (!task->parent) c->reply_bytes = 0;
    if (bytes > REDIS_MAX_REPLY - c->reply_bytes) {
        snprintf(c->reason, sizeof c->reason, "reply too large (over %d bytes)", REDIS_MAX_REPLY);
        return false; /* hiredis fails the read ("out of memory") and tears the connection down */
    }
    c->reply_bytes += bytes;
    return true;
}

static struct redis_conn *task_conn(const redisReadTask *task) {
    return task->privdata;
}

static void *build_string(const redisReadTask *task, char *str, size_t len) {
    if (!charge(task, sizeof(redisReply) + len + 1)) return NULL;
    return task_conn(task)->builders->createString(task, str, len);
}

static void *build_array(const redisReadTask *task, int elements) {
    if (!charge(task, sizeof(redisReply) + (size_t)elements * sizeof(redisReply *))) return NULL;
    return task_conn(task)->builders->createArray(task, elements);
}

static void *build_integer(const redisReadTask *task, long long value) {
    if (!charge(task, sizeof(redisReply))) return NULL;
    return task_conn(task)->builders->createInteger(task, value);
}

static void *build_nil(const redisReadTask *task) {
    if (!charge(task, sizeof(redisReply))) return NULL;
    return task_conn(task)->builders->createNil(task);
}

static redisReplyObjectFunctions counted_builders = {build_string, build_array, build_integer,
                                                     build_nil, freeReplyObject};

/* ---- hiredis on libevent ---------------------------------------------------------------- */

/* Our own adapter rather than hiredis's adapters/libevent.h: the read hook is where the bytes of
 * an incomplete reply can be bounded, and the cleanup hook is where a connection is freed. */
static void on_readable(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct redis_conn *c = arg;
    const redisReader *r = c->ac->c.reader;
    /* hiredis keeps a bulk string's bytes in its buffer until the whole string is there; each
     * read adds at most 16 KiB, so checking before each read bounds the buffer */
    if (r->len - r->pos > REDIS_MAX_REPLY) {
        char why[64];
        snprintf(why, sizeof why, "reply too large (over %d bytes)", REDIS_MAX_REPLY);
        conn_drop(c, why);
        return;
    }
    redisAsyncHandleRead(c->ac); /* may free c */
}

static void on_writable(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct redis_conn *c = arg;
    redisAsyncHandleWrite(c->ac); /* may free c */
}

/* Commands submitted during one loop iteration (many requests' EVALSHAs) go out in one write at
 * its end, without asking epoll first: on a connected socket the kernel nearly always takes
 * them. Only what it does not take waits for write readiness (hook_add_write, while flushing). */
static void on_flush(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct redis_conn *c = arg;
    struct redis_pool *pool = c->pool;
    pool->flushing = c;
    redisAsyncHandleWrite(c->ac); /* may free c */
    pool->flushing = NULL;
}

static void hook_add_read(void *arg) {
    struct redis_conn *c = arg;
    event_add(c->rev, NULL);
}

static void hook_del_read(void *arg) {
    struct redis_conn *c = arg;
    event_del(c->rev);
}

static void hook_add_write(void *arg) {
    struct redis_conn *c = arg;
    if (c->connected && c->pool->flushing != c)
        event_active(c->flush, EV_WRITE, 0); /* once per iteration: an active event stays so */
    else
        event_add(c->wev, NULL); /* connecting, or the socket was full */
}

static void hook_del_write(void *arg) {
    struct redis_conn *c = arg;
    event_del(c->wev);
}

static void conn_unlink(struct redis_conn *c) {
    struct redis_target *t = c->target;
    if (!t) return;
    for (struct redis_conn **p = &t->conns; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    t->n_conns--;
    c->target = NULL;
}

static void conn_free(struct redis_conn *c) {
    conn_unlink(c);
    if (c->rev) event_free(c->rev);
    if (c->wev) event_free(c->wev);
    if (c->flush) event_free(c->flush);
    if (c->connect_timer) event_free(c->connect_timer);
    free(c);
}

/* The last thing hiredis does with a context before freeing it: every callback has run. */
static void hook_cleanup(void *arg) {
    conn_free(arg);
}

/* ---- connections ------------------------------------------------------------------------ */

/* Takes the connection out of its target and ends it: every command on it is answered with
 * `reason` (queued ones here, the ones hiredis holds through on_reply). May run callers'
 * callbacks before returning; c must not be used afterwards. */
static void conn_drop(struct redis_conn *c, const char *reason) {
    if (c->dropping) return;
    c->dropping = true;
    if (reason != c->reason) snprintf(c->reason, sizeof c->reason, "%s", reason);
    conn_unlink(c);
    if (c->connect_timer) event_free(c->connect_timer);
    c->connect_timer = NULL;
    if (c->ac) {
        /* at once, or after the reply callback that is running; hook_cleanup frees c */
        redisAsyncFree(c->ac);
        return;
    }
    if (c->dns) evdns_getaddrinfo_cancel(c->dns); /* its callback sees EVUTIL_EAI_CANCEL */
    c->dns = NULL;
    char why[sizeof c->reason];
    memcpy(why, c->reason, sizeof why);
    struct redis_cmd *q = c->queue;
    for (struct redis_cmd *cmd = q; cmd; cmd = cmd->next)
        cmd->conn = NULL;
    conn_free(c);
    while (q) {
        struct redis_cmd *next = q->next;
        redis_reply_fn fn = q->fn;
        void *arg = q->arg;
        bool internal = q->internal; /* AUTH, SELECT: their arg is the freed c */
        cmd_free(q);
        if (fn && !internal) fn(arg, NULL, why);
        q = next;
    }
}

/* A failure while conn_open() runs is reported by its return value, not through callbacks
 * (redis_command() never answers before it returns). */
static void conn_fail(struct redis_conn *c, const char *why) {
    snprintf(c->reason, sizeof c->reason, "%s", why);
    if (c->opening)
        c->failed = true;
    else
        conn_drop(c, c->reason);
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    conn_drop(arg, "timeout");
}

/* A peer that vanishes while the connection is idle is noticed within about two minutes, not
 * kept forever. Ours rather than redisEnableKeepAlive(), which fails the whole connection when
 * an option is refused; here a refused option only costs the early notice. */
static void keep_alive(int fd) {
    int on = 1, idle = KEEPALIVE_IDLE_S, interval = KEEPALIVE_INTERVAL_S, count = KEEPALIVE_COUNT;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

static void on_connect(const redisAsyncContext *ac, int status) {
    struct redis_conn *c = ac->data;
    if (c->connect_timer) event_free(c->connect_timer);
    c->connect_timer = NULL;
    if (status != REDIS_OK) {
        /* hiredis tears it down next and answers what is in flight through on_reply */
        snprintf(c->reason, sizeof c->reason, "connect failed: %s", ac->c.errstr);
        return;
    }
    c->connected = true;
    if (ac->c.connection_type == REDIS_CONN_TCP) keep_alive(ac->c.fd);
}

/* AUTH and SELECT failures end the connection: every command behind them would fail too. */
static void setup_replied(struct redis_conn *c, const char *what, const redisReply *reply) {
    if (!reply || reply->type != REDIS_REPLY_ERROR) return;
    char why[sizeof c->reason];
    snprintf(why, sizeof why, "%s failed: %s", what, reply->str);
    conn_drop(c, why);
}

static void auth_replied(void *arg, const redisReply *reply, const char *err) {
    (void)err;
    setup_replied(arg, "AUTH", reply);
}

static void select_replied(void *arg, const redisReply *reply, const char *err) {
    (void)err;
    setup_replied(arg, "SELECT", reply);
}

/* AUTH [user] password, SELECT db: at most three arguments. */
static void submit_internal(struct redis_conn *c, int argc, const char **argv, redis_reply_fn fn) {
    size_t lens[3];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    struct redis_cmd *cmd = cmd_new(argc, argv, lens);
    cmd->internal = true;
    cmd->fn = fn;
    cmd->arg = c;
    conn_submit(c, cmd);
}

static void conn_setup(struct redis_conn *c, const struct redis_target *t) {
    if (t->password && t->username) {
        const char *argv[] = {"AUTH", t->username, t->password};
        submit_internal(c, 3, argv, auth_replied);
    } else if (t->password) {
        const char *argv[] = {"AUTH", t->password};
        submit_internal(c, 2, argv, auth_replied);
    }
    if (t->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", t->db);
        const char *argv[] = {"SELECT", db};
        submit_internal(c, 2, argv, select_replied);
    }
}

static bool is_unix(const char *host) {
    return strncmp(host, UNIX_PREFIX, strlen(UNIX_PREFIX)) == 0;
}

static bool is_address(const char *host) {
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Starts the non-blocking connect to `addr` (an address or a Unix path) and sends what was
 * queued while the name was being resolved. */
static void conn_connect(struct redis_conn *c, const char *addr) {
    struct redis_target *t = c->target;
    redisAsyncContext *ac = is_unix(addr) ? redisAsyncConnectUnix(addr + strlen(UNIX_PREFIX))
                                          : redisAsyncConnect(addr, t->port);
    if (!ac) abort(); /* out of memory */
    if (ac->err) {
        char why[sizeof c->reason];
        snprintf(why, sizeof why, "connect failed: %s", ac->errstr);
        redisAsyncFree(ac);
        conn_fail(c, why);
        return;
    }
    c->ac = ac;
    ac->data = c;
    c->builders = ac->c.reader->fn;
    ac->c.reader->fn = &counted_builders;
    ac->c.reader->privdata = c;
    struct event_base *base = c->pool->base;
    /* Persistent: hiredis re-adds the read event after every read, which for a one-shot event
     * was an epoll_ctl DEL and ADD per reply batch. */
    c->rev = event_new(base, ac->c.fd, EV_READ | EV_PERSIST, on_readable, c);
    c->wev = event_new(base, ac->c.fd, EV_WRITE, on_writable, c);
    c->flush = event_new(base, -1, 0, on_flush, c);
    if (!c->rev || !c->wev || !c->flush) abort();
    ac->ev.data = c;
    ac->ev.addRead = hook_add_read;
    ac->ev.delRead = hook_del_read;
    ac->ev.addWrite = hook_add_write;
    ac->ev.delWrite = hook_del_write;
    ac->ev.cleanup = hook_cleanup;
    redisAsyncSetConnectCallback(ac, on_connect); /* waits for write readiness: connected */
    struct redis_cmd *q = c->queue;
    c->queue = NULL;
    c->queue_tail = &c->queue;
    while (q) {
        struct redis_cmd *next = q->next;
        q->next = NULL;
        conn_send(c, q);
        q = next;
    }
}

/* IPv4 first: a name like "localhost" often has both, and servers often listen on IPv4 only. */
static bool first_address(const struct evutil_addrinfo *res, char *out, size_t n) {
    for (int pass = 0; pass < 2; pass++) {
        int family = pass == 0 ? AF_INET : AF_INET6;
        for (const struct evutil_addrinfo *ai = res; ai; ai = ai->ai_next) {
            if (ai->ai_family != family) continue;
            const void *a = family == AF_INET
                                ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                                : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
            return evutil_inet_ntop(family, a, out, n) != NULL;
        }
    }
    return false;
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg) {
    if (result == EVUTIL_EAI_CANCEL) return; /* conn_drop() cancelled it and freed the conn */
    struct redis_conn *c = arg;
    c->dns = NULL;
    char addr[INET6_ADDRSTRLEN];
    bool found = result == 0 && first_address(res, addr, sizeof addr);
    if (res) evutil_freeaddrinfo(res);
    if (!found) {
        char why[sizeof c->reason];
        snprintf(why, sizeof why, "resolve %s failed: %s", c->target->host,
                 result ? evutil_gai_strerror(result) : "no address");
        conn_fail(c, why);
        return;
    }
    conn_connect(c, addr);
}

static void conn_resolve(struct redis_conn *c) {
    struct redis_pool *p = c->pool;
    if (!p->dns)
        p->dns = evdns_base_new(p->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                             EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!p->dns) {
        conn_fail(c, "resolve failed: no DNS resolver");
        return;
    }
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    /* NULL when answered at once (an /etc/hosts name, an error): on_resolved has run */
    c->dns = evdns_getaddrinfo(p->dns, c->target->host, NULL, &hints, on_resolved, c);
}

/* A new connection of t, with AUTH and SELECT submitted. NULL (with *err) when it failed at
 * once; later failures answer the commands submitted to it. */
static struct redis_conn *conn_open(struct redis_target *t, int timeout_ms, const char **err) {
    struct redis_pool *p = t->pool;
    struct redis_conn *c = calloc(1, sizeof *c);
    if (!c) abort();
    c->pool = p;
    c->target = t;
    c->queue_tail = &c->queue;
    c->next = t->conns;
    t->conns = c;
    t->n_conns++;
    c->connect_timer = evtimer_new(p->base, on_connect_timeout, c);
    if (!c->connect_timer) abort();
    struct timeval tv = tv_of_ms(timeout_ms);
    evtimer_add(c->connect_timer, &tv);
    c->opening = true;
    if (is_unix(t->host) || is_address(t->host))
        conn_connect(c, t->host);
    else
        conn_resolve(c);
    c->opening = false;
    if (c->failed) {
        fail(p, err, c->reason);
        conn_drop(c, c->reason); /* nothing submitted yet: answers nobody */
        return NULL;
    }
    conn_setup(c, t);
    return c;
}

/* The least busy connection, or NULL when a new one should be opened: none is idle and the
 * caller's pool size allows another. */
static struct redis_conn *conn_pick(const struct redis_target *t, int pool_size) {
    struct redis_conn *best = NULL;
    for (struct redis_conn *c = t->conns; c; c = c->next)
        if (!best || c->in_flight < best->in_flight) best = c;
    if (best && best->in_flight == 0) return best;
    if (t->n_conns < pool_size) return NULL;
    return best;
}

/* ---- targets ---------------------------------------------------------------------------- */

static bool same_string(const char *a, const char *b) {
    return a && b ? strcmp(a, b) == 0 : a == b;
}

static char *dup_or_null(const char *s) {
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) abort();
    return d;
}

static size_t target_callers(const struct redis_target *t) {
    size_t n = 0;
    for (const struct redis_conn *c = t->conns; c; c = c->next)
        n += c->callers;
    return n;
}

static void target_unlist(struct redis_target *t) {
    struct redis_pool *p = t->pool;
    if (t->prev)
        t->prev->next = t->next;
    else
        p->targets = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        p->oldest = t->prev;
    t->prev = t->next = NULL;
}

static void target_list_first(struct redis_target *t) {
    struct redis_pool *p = t->pool;
    t->next = p->targets;
    if (p->targets) p->targets->prev = t;
    p->targets = t;
    if (!p->oldest) p->oldest = t;
}

static void target_free(struct redis_target *t) {
    while (t->conns)
        conn_drop(t->conns, "closed");
    target_unlist(t);
    t->pool->n_targets--;
    free(t->host);
    free(t->username);
    free(t->password);
    free(t->pool_name);
    free(t);
}

static struct redis_target *target_get(struct redis_pool *p, const struct redis_client *cl,
                                       const char **err) {
    for (struct redis_target *t = p->targets; t; t = t->next) {
        if (t->port == cl->port && t->db == cl->db && same_string(t->host, cl->host) &&
            same_string(t->username, cl->username) && same_string(t->password, cl->password) &&
            same_string(t->pool_name, cl->pool_name)) {
            target_unlist(t);
            target_list_first(t);
            return t;
        }
    }
    if (p->n_targets >= REDIS_MAX_TARGETS) {
        struct redis_target *victim = p->oldest;
        while (victim && target_callers(victim) > 0)
            victim = victim->prev;
        if (!victim) {
            fail(p, err, "too many redis targets");
            return NULL;
        }
        target_free(victim); /* nobody waits on it: no callback runs */
    }
    struct redis_target *t = calloc(1, sizeof *t);
    if (!t) abort();
    t->pool = p;
    t->host = dup_or_null(cl->host);
    t->username = dup_or_null(cl->username);
    t->password = dup_or_null(cl->password);
    t->pool_name = dup_or_null(cl->pool_name);
    t->port = cl->port;
    t->db = cl->db;
    target_list_first(t);
    p->n_targets++;
    return t;
}

/* ---- the interface ---------------------------------------------------------------------- */

struct redis_pool *redis_pool_new(struct event_base *base) {
    struct redis_pool *p = calloc(1, sizeof *p);
    if (!p) abort();
    p->base = base;
    return p;
}

void redis_pool_free(struct redis_pool *p) {
    if (!p) return;
    while (p->targets)
        target_free(p->targets);
    if (p->dns) evdns_base_free(p->dns, 1);
    free(p);
}

static bool name_is(const char *name, size_t n, const char *word) {
    return n == strlen(word) && strncasecmp(name, word, n) == 0;
}

const char *redis_command_refusal(int argc, const char **argv, const size_t *argvlen) {
    if (argc < 1) return "no command given";
    const char *name = argv[0];
    size_t n = argvlen[0];
    /* hiredis matches command names as "name\r\n" prefixes: a name with CR or LF could pass
     * for one of those below */
    if (memchr(name, '\r', n) || memchr(name, '\n', n)) return "bad command name";
    /* hiredis itself reads these (a leading P or not) and from then on pairs replies with
     * callbacks differently: on a shared connection that would hand replies to the wrong
     * callers, or to none */
    size_t p = n > 0 && (name[0] == 'p' || name[0] == 'P') ? 1 : 0;
    if (name_is(name + p, n - p, "subscribe") || name_is(name + p, n - p, "unsubscribe") ||
        name_is(name, n, "ssubscribe") || name_is(name, n, "sunsubscribe"))
        return "pub/sub cannot run on a shared connection";
    if (name_is(name + p, n - p, "monitor")) return "MONITOR cannot run on a shared connection";
    static const char *const transactions[] = {"multi", "exec", "discard", "watch", "unwatch"};
    for (size_t i = 0; i < sizeof transactions / sizeof *transactions; i++)
        if (name_is(name, n, transactions[i]))
            return "transactions cannot run on a shared connection: use eval";
    if (name_is(name, n, "select"))
        return "SELECT cannot run on a shared connection: use the db option";
    if (name_is(name, n, "auth") || name_is(name, n, "hello"))
        return "AUTH and HELLO cannot run on a shared connection: use the password option";
    static const char *const others[] = {"quit", "reset", "sync", "psync"};
    for (size_t i = 0; i < sizeof others / sizeof *others; i++)
        if (name_is(name, n, others[i]))
            return "QUIT, RESET, SYNC and PSYNC cannot run on a shared connection";
    /* CLIENT REPLY OFF|SKIP: replies would stop matching commands */
    if (name_is(name, n, "client") && argc > 1 && name_is(argv[1], argvlen[1], "reply"))
        return "CLIENT REPLY cannot run on a shared connection";
    return NULL;
}

struct redis_cmd *redis_command(struct redis_pool *p, const struct redis_client *cl, int argc,
                                const char **argv, const size_t *argvlen, redis_reply_fn fn,
                                void *arg, const char **err) {
    const char *refusal = redis_command_refusal(argc, argv, argvlen);
    if (refusal) {
        fail(p, err, refusal);
        return NULL;
    }
    size_t bytes = 0;
    for (int i = 0; i < argc; i++) {
        bytes += argvlen[i];
        if (bytes > MAX_COMMAND_BYTES) {
            fail(p, err, "command too large");
            return NULL;
        }
    }
    struct redis_target *t = target_get(p, cl, err);
    if (!t) return NULL;
    int pool_size = cl->pool_size < 1 ? 1 : cl->pool_size;
    if (pool_size > REDIS_MAX_POOL_SIZE) pool_size = REDIS_MAX_POOL_SIZE;
    struct redis_conn *c = conn_pick(t, pool_size);
    if (!c) {
        c = conn_open(t, cl->timeout_ms, err);
        if (!c) return NULL;
    } else if (c->in_flight >= REDIS_MAX_PENDING) {
        fail(p, err, "too many pending commands");
        return NULL;
    }
    struct redis_cmd *cmd = cmd_new(argc, argv, argvlen);
    cmd->fn = fn;
    cmd->arg = arg;
    cmd->timer = evtimer_new(p->base, on_timeout, cmd);
    if (!cmd->timer) abort();
    struct timeval tv = tv_of_ms(cl->timeout_ms);
    evtimer_add(cmd->timer, &tv);
    conn_submit(c, cmd);
    return cmd;
}

void redis_command_cancel(struct redis_cmd *cmd) {
    cmd_detach(cmd);
    if (cmd->sent) return; /* hiredis still holds it: on_reply frees it */
    struct redis_conn *c = cmd->conn;
    queue_remove(c, cmd);
    c->in_flight--;
    cmd_free(cmd);
}
