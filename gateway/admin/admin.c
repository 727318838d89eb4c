#include "admin/admin.h"

#include "config/model.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <event2/buffer.h>
#include <event2/listener.h>
#include <http_parser.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config/model.h"
#include "core/conn.h"
#include "core/listener.h"
#include "core/log.h"
#include "http/error_response.h"
#include "http/head_check.h"

struct admin_conn;

struct admin {
    struct event_base *base;
    struct admin_state *state;
    struct evconnlistener **listeners;
    size_t n_listeners;
    char *token;      /* NULL: no token required */
    bool needs_token; /* a listener is off loopback */
    struct admin_conn *conns;
    size_t n_conns;
};

struct admin_conn {
    struct admin *admin;
    struct admin_conn *prev, *next;
    struct conn *conn;
    struct event *deferred; /* closes outside the connection's callbacks */
    struct event *timer;    /* idle / head timeout */
    http_parser parser;
    size_t head_scanned;
    bool in_body;
    bool close_after;
    bool closing;
    /* The request being read. */
    char *url;
    size_t url_len;
    char *authorization;
    size_t authorization_len;
    char *content_type;
    size_t content_type_len;
    bool last_was_value;
    char *header_name;
    size_t header_name_len;
    struct evbuffer *body;
    bool message_done;
};

#define ADMIN_IDLE_TIMEOUT_MS 60000

/* ---- connection lifetime ------------------------------------------------ */

static void admin_conn_destroy(struct admin_conn *ac) {
    struct admin *a = ac->admin;
    if (ac->prev)
        ac->prev->next = ac->next;
    else
        a->conns = ac->next;
    if (ac->next) ac->next->prev = ac->prev;
    a->n_conns--;
    conn_free(ac->conn);
    event_free(ac->deferred);
    event_free(ac->timer);
    evbuffer_free(ac->body);
    free(ac->url);
    free(ac->authorization);
    free(ac->header_name);
    free(ac->content_type);
    free(ac);
}

static void deferred_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    admin_conn_destroy(arg);
}

static void admin_conn_close(struct admin_conn *ac) {
    if (ac->closing) return;
    ac->closing = true;
    conn_read_disable(ac->conn);
    event_active(ac->deferred, 0, 0);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    admin_conn_close(arg);
}

static void arm_timer(struct admin_conn *ac) {
    struct timeval tv = {ADMIN_IDLE_TIMEOUT_MS / 1000, 0};
    evtimer_add(ac->timer, &tv);
}

/* ---- responses ------------------------------------------------------------- */

void admin_error(struct admin_response *res, int status, const char *message) {
    res->status = status;
    json_decref(res->json);
    res->json = json_pack("{s:s}", "message", message);
}

static void send_response(struct admin_conn *ac, struct admin_response *res) {
    char *body = NULL;
    size_t body_len = 0;
    const char *type = "application/json; charset=utf-8";
    if (res->json) {
        body = json_dumps(res->json, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!body) abort();
        body_len = strlen(body);
    } else if (res->text) {
        body = res->text;
        res->text = NULL;
        body_len = strlen(body);
        type = res->text_type;
    }
    struct evbuffer *out = conn_output(ac->conn);
    if (res->status == 204) /* no body and, per RFC 9110, no Content-Length */
        evbuffer_add_printf(out, "HTTP/1.1 204 No Content\r\nServer: weir\r\n%s\r\n",
                            ac->close_after ? "Connection: close\r\n" : "");
    else
        evbuffer_add_printf(out,
                            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                            "Server: weir\r\n%s\r\n",
                            res->status, http_reason_phrase(res->status), type, body_len,
                            ac->close_after ? "Connection: close\r\n" : "");
    if (res->status == 204) body_len = 0;
    if (body_len && ac->parser.method != HTTP_HEAD) evbuffer_add(out, body, body_len);
    free(body);
    json_decref(res->json);
    free(res->text);
}

static void respond_error(struct admin_conn *ac, int status, const char *message) {
    struct admin_response res = {0};
    admin_error(&res, status, message);
    send_response(ac, &res);
}

/* ---- request parsing -------------------------------------------------------- */

static int on_url(http_parser *p, const char *at, size_t len) {
    struct admin_conn *ac = p->data;
    ac->url = realloc(ac->url, ac->url_len + len + 1);
    if (!ac->url) abort();
    memcpy(ac->url + ac->url_len, at, len);
    ac->url_len += len;
    ac->url[ac->url_len] = '\0';
    return 0;
}

static void append(char **s, size_t *n, const char *at, size_t len) {
    *s = realloc(*s, *n + len + 1);
    if (!*s) abort();
    memcpy(*s + *n, at, len);
    *n += len;
    (*s)[*n] = '\0';
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
    struct admin_conn *ac = p->data;
    if (ac->last_was_value) ac->header_name_len = 0;
    ac->last_was_value = false;
    append(&ac->header_name, &ac->header_name_len, at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
    struct admin_conn *ac = p->data;
    bool first = !ac->last_was_value;
    ac->last_was_value = true;
    if (ac->header_name_len == 13 && strncasecmp(ac->header_name, "authorization", 13) == 0) {
        if (first && ac->authorization_len) return -1; /* two Authorization headers */
        append(&ac->authorization, &ac->authorization_len, at, len);
    } else if (ac->header_name_len == 12 && strncasecmp(ac->header_name, "content-type", 12) == 0) {
        if (first && ac->content_type_len) return -1; /* two Content-Type headers */
        append(&ac->content_type, &ac->content_type_len, at, len);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
    struct admin_conn *ac = p->data;
    if (evbuffer_get_length(ac->body) + len > ADMIN_MAX_BODY_BYTES) return -1;
    evbuffer_add(ac->body, at, len);
    return 0;
}

static int on_message_complete(http_parser *p) {
    struct admin_conn *ac = p->data;
    ac->message_done = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings admin_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static int hex_value(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes [s, s+n) into a new string; NULL on a bad escape or NUL. */
static char *percent_decode(const char *s, size_t n, bool plus_is_space) {
    char *out = malloc(n + 1);
    if (!out) abort();
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n) {
                free(out);
                return NULL;
            }
            int h = hex_value(s[i + 1]), l = hex_value(s[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else if (plus_is_space && s[i] == '+') {
            out[o++] = ' ';
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

char *admin_query_param(const struct admin_request *req, const char *name) {
    if (!req->query) return NULL;
    size_t name_len = strlen(name);
    const char *p = req->query;
    while (*p) {
        const char *end = strchr(p, '&');
        if (!end) end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *key_end = eq ? eq : end;
        if ((size_t)(key_end - p) == name_len && strncmp(p, name, name_len) == 0)
            return eq ? percent_decode(eq + 1, (size_t)(end - eq - 1), true) : strdup("");
        p = *end ? end + 1 : end;
    }
    return NULL;
}

/* ---- dispatch --------------------------------------------------------------- */

typedef void (*admin_handler)(struct admin_state *, const struct admin_request *,
                              struct admin_response *);

struct admin_route {
    const char *path;
    admin_handler get, post, put, patch, del;
    struct admin_endpoint endpoint; /* entity endpoints */
};

/* A collection and its members, as Kong serves them; nested under an owner when given. */
#define COLLECTION(path, kind)                                                                     \
    {path, admin_list_entities, admin_create_entity, NULL, NULL, NULL, {kind, 0, NULL}}, {         \
        path "/{}", admin_get_entity, NULL, admin_upsert_entity, admin_update_entity,              \
            admin_delete_entity, {                                                                 \
            kind, 0, NULL                                                                          \
        }                                                                                          \
    }
#define NESTED(path, kind, owner, field)                                                           \
    {path, admin_list_entities, admin_create_entity, NULL, NULL, NULL, {kind, owner, field}}, {    \
        path "/{}", admin_get_entity, NULL, admin_upsert_entity, admin_update_entity,              \
            admin_delete_entity, {                                                                 \
            kind, owner, field                                                                     \
        }                                                                                          \
    }

static const struct admin_route admin_routes[] = {
    {"/", admin_get_root, NULL, NULL, NULL, NULL, {0}},
    {"/status", admin_get_status, NULL, NULL, NULL, NULL, {0}},
    {"/config", admin_get_config, admin_post_config, NULL, NULL, NULL, {0}},
    {"/metrics", admin_get_metrics, NULL, NULL, NULL, NULL, {0}},
    {"/debug/match", admin_get_debug_match, NULL, NULL, NULL, NULL, {0}},
    COLLECTION("/services", ENTITY_SERVICE),
    NESTED("/services/{}/routes", ENTITY_ROUTE, ENTITY_SERVICE, "service"),
    NESTED("/services/{}/plugins", ENTITY_PLUGIN, ENTITY_SERVICE, "service"),
    COLLECTION("/routes", ENTITY_ROUTE),
    {"/routes/{}/service", admin_get_route_service, NULL, NULL, NULL, NULL, {0}},
    NESTED("/routes/{}/plugins", ENTITY_PLUGIN, ENTITY_ROUTE, "route"),
    COLLECTION("/upstreams", ENTITY_UPSTREAM),
    NESTED("/upstreams/{}/targets", ENTITY_TARGET, ENTITY_UPSTREAM, "upstream"),
    {"/upstreams/{}/health", admin_get_upstream_health, NULL, NULL, NULL, NULL, {0}},
    {"/upstreams/{}/targets/{}/healthy", NULL, admin_post_target_healthy, NULL, NULL, NULL, {0}},
    {"/upstreams/{}/targets/{}/unhealthy",
     NULL,
     admin_post_target_unhealthy,
     NULL,
     NULL,
     NULL,
     {0}},
    COLLECTION("/consumers", ENTITY_CONSUMER),
    NESTED("/consumers/{}/plugins", ENTITY_PLUGIN, ENTITY_CONSUMER, "consumer"),
    NESTED("/consumers/{}/jwt", ENTITY_JWT_SECRET, ENTITY_CONSUMER, "consumer"),
    NESTED("/consumers/{}/key-auth", ENTITY_KEYAUTH_CREDENTIAL, ENTITY_CONSUMER, "consumer"),
    {"/jwts", admin_list_entities, NULL, NULL, NULL, NULL, {ENTITY_JWT_SECRET, 0, NULL}},
    {"/jwts/{}", admin_get_entity, NULL, NULL, NULL, NULL, {ENTITY_JWT_SECRET, 0, NULL}},
    {"/key-auths",
     admin_list_entities,
     NULL,
     NULL,
     NULL,
     NULL,
     {ENTITY_KEYAUTH_CREDENTIAL, 0, NULL}},
    {"/key-auths/{}",
     admin_get_entity,
     NULL,
     NULL,
     NULL,
     NULL,
     {ENTITY_KEYAUTH_CREDENTIAL, 0, NULL}},
    COLLECTION("/plugins", ENTITY_PLUGIN),
    COLLECTION("/certificates", ENTITY_CERTIFICATE),
    NESTED("/certificates/{}/snis", ENTITY_SNI, ENTITY_CERTIFICATE, "certificate"),
    COLLECTION("/snis", ENTITY_SNI),
    COLLECTION("/ca_certificates", ENTITY_CA_CERTIFICATE),
    {"/schemas/plugins/{}", admin_get_plugin_schema, NULL, NULL, NULL, NULL, {0}},
    {"/schemas/{}", admin_get_schema, NULL, NULL, NULL, NULL, {0}},
};

/* Matches `path` against a pattern whose "{}" segments match any one
 * non-empty segment, collecting them into req->params. */
static bool route_matches(const char *pattern, const char *path, struct admin_request *req) {
    req->n_params = 0;
    while (*pattern && *path) {
        if (pattern[0] == '{' && pattern[1] == '}') {
            const char *end = strchr(path, '/');
            size_t len = end ? (size_t)(end - path) : strlen(path);
            if (len == 0 || len >= sizeof req->params[0] || req->n_params == 2) return false;
            memcpy(req->params[req->n_params], path, len);
            req->params[req->n_params++][len] = '\0';
            pattern += 2;
            path += len;
            continue;
        }
        if (*pattern != *path) return false;
        pattern++;
        path++;
    }
    return *pattern == '\0' && *path == '\0';
}

/* Constant-time comparison of the presented bearer token. */
static bool token_ok(const struct admin *a, const struct admin_conn *ac) {
    if (!a->token) return true;
    const char *v = ac->authorization;
    if (!v || ac->authorization_len < 7 || strncasecmp(v, "Bearer ", 7) != 0) return false;
    v += 7;
    size_t n = strlen(v), want = strlen(a->token);
    /* Compare equal-length buffers so the time does not depend on where
     * they differ; the length check itself reveals only the length. */
    return n == want && CRYPTO_memcmp(v, a->token, n) == 0;
}

/* A write handler call, for admin_state.run_write. */
struct write_job {
    admin_handler handler;
    struct admin_state *st;
    const struct admin_request *req;
    struct admin_response *res;
};

static void run_write_job(void *arg) {
    struct write_job *j = arg;
    j->handler(j->st, j->req, j->res);
}

static void handle_request(struct admin_conn *ac) {
    struct admin *a = ac->admin;
    struct admin_response res = {0};
    if (!token_ok(a, ac)) {
        admin_error(&res, 401, "missing or invalid admin token");
        send_response(ac, &res);
        return;
    }
    const char *method = http_method_str(ac->parser.method);
    char *q = ac->url ? strchr(ac->url, '?') : NULL;
    size_t path_len = q ? (size_t)(q - ac->url) : ac->url_len;
    char *path = ac->url && ac->url[0] == '/' ? percent_decode(ac->url, path_len, false) : NULL;
    if (!path) {
        respond_error(ac, 400, "malformed request target");
        return;
    }
    /* "/status/" and "/status" are the same resource, as in Kong. */
    size_t plen = strlen(path);
    while (plen > 1 && path[plen - 1] == '/')
        path[--plen] = '\0';
    size_t body_len = evbuffer_get_length(ac->body);
    struct admin_request req = {
        .method = method,
        .path = path,
        .query = q ? q + 1 : NULL,
        .body = body_len ? (const char *)evbuffer_pullup(ac->body, -1) : NULL,
        .body_len = body_len,
    };
    const struct admin_route *route = NULL;
    for (size_t i = 0; i < sizeof admin_routes / sizeof admin_routes[0] && !route; i++)
        if (route_matches(admin_routes[i].path, path, &req)) route = &admin_routes[i];
    admin_handler handler = NULL;
    if (route) {
        req.endpoint = &route->endpoint;
        req.content_type = ac->content_type;
        switch (ac->parser.method) {
        case HTTP_GET:
        case HTTP_HEAD:
            handler = route->get;
            break;
        case HTTP_POST:
            handler = route->post;
            break;
        case HTTP_PUT:
            handler = route->put;
            break;
        case HTTP_PATCH:
            handler = route->patch;
            break;
        case HTTP_DELETE:
            handler = route->del;
            break;
        default:
            break;
        }
    }
    if (!route) {
        admin_error(&res, 404, "Not found");
    } else if (!handler) {
        admin_error(&res, 405, "Method not allowed");
    } else if (a->state->run_write && ac->parser.method != HTTP_GET &&
               ac->parser.method != HTTP_HEAD) {
        struct write_job job = {handler, a->state, &req, &res};
        a->state->run_write(a->state->commit_ctx, run_write_job, &job);
    } else {
        handler(a->state, &req, &res);
    }
    /* A credential's key can be the last path segment: log the route, not the key. */
    size_t plen_route = route ? strlen(route->path) : 0;
    bool secret_in_path = route && plen_route >= 2 && !strcmp(route->path + plen_route - 2, "{}") &&
                          (route->endpoint.kind == ENTITY_JWT_SECRET ||
                           route->endpoint.kind == ENTITY_KEYAUTH_CREDENTIAL);
    log_info("admin: %s %s -> %d", method, secret_in_path ? route->path : path, res.status);
    free(path);
    send_response(ac, &res);
}

static void reset_request(struct admin_conn *ac) {
    free(ac->url);
    ac->url = NULL;
    ac->url_len = 0;
    free(ac->authorization);
    ac->authorization = NULL;
    ac->authorization_len = 0;
    free(ac->content_type);
    ac->content_type = NULL;
    ac->content_type_len = 0;
    ac->header_name_len = 0;
    ac->last_was_value = false;
    evbuffer_drain(ac->body, evbuffer_get_length(ac->body));
    ac->message_done = false;
    ac->in_body = false;
    ac->head_scanned = 0;
}

/* Reads the head (strictly checked), then the body through http-parser. */
static void process_input(struct admin_conn *ac) {
    struct evbuffer *in = conn_input(ac->conn);
    while (!ac->closing && evbuffer_get_length(in) > 0) {
        if (!ac->in_body) {
            size_t avail = evbuffer_get_length(in);
            size_t scan = avail < ADMIN_MAX_HEAD_BYTES ? avail : ADMIN_MAX_HEAD_BYTES;
            const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)scan);
            size_t head_len = 0;
            int n_fields = 0;
            const char *why = NULL;
            enum head_status hs =
                head_check(buf, scan, true, &ac->head_scanned, &head_len, &n_fields, &why);
            if (hs == HEAD_INCOMPLETE) {
                if (scan < ADMIN_MAX_HEAD_BYTES) return;
                ac->close_after = true;
                respond_error(ac, 431, "request header fields too large");
                return;
            }
            if (hs == HEAD_BAD) {
                ac->close_after = true;
                respond_error(ac, 400, why);
                return;
            }
            http_parser_init(&ac->parser, HTTP_REQUEST);
            ac->parser.data = ac;
            ac->in_body = true;
        }
        struct evbuffer_iovec vec;
        if (evbuffer_peek(in, -1, NULL, &vec, 1) < 1) return;
        if (HTTP_PARSER_ERRNO(&ac->parser) == HPE_PAUSED) http_parser_pause(&ac->parser, 0);
        size_t parsed =
            http_parser_execute(&ac->parser, &admin_settings, vec.iov_base, vec.iov_len);
        enum http_errno err = HTTP_PARSER_ERRNO(&ac->parser);
        evbuffer_drain(in, parsed);
        if (err != HPE_OK && err != HPE_PAUSED) {
            ac->close_after = true;
            if (err == HPE_CB_body)
                respond_error(ac, 413, "request body too large");
            else
                respond_error(ac, 400, http_errno_description(err));
            return;
        }
        if (!ac->message_done) continue;
        if (!http_should_keep_alive(&ac->parser)) ac->close_after = true;
        handle_request(ac);
        reset_request(ac);
        if (ac->close_after) return;
    }
}

static void read_cb(struct conn *conn, void *arg) {
    (void)conn;
    struct admin_conn *ac = arg;
    arm_timer(ac);
    process_input(ac);
    if (ac->close_after) {
        conn_read_disable(ac->conn);
        conn_shutdown_write(ac->conn);
        if (evbuffer_get_length(conn_output(ac->conn)) == 0) admin_conn_close(ac);
    }
}

static void write_cb(struct conn *conn, void *arg) {
    struct admin_conn *ac = arg;
    if (ac->close_after && evbuffer_get_length(conn_output(conn)) == 0) admin_conn_close(ac);
}

static void event_cb(struct conn *conn, short what, void *arg) {
    (void)conn;
    (void)what;
    admin_conn_close(arg);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *peer,
                      int peerlen, void *arg) {
    (void)l;
    (void)peer;
    (void)peerlen;
    struct admin *a = arg;
    if (a->n_conns >= ADMIN_MAX_CONNECTIONS) {
        close(fd);
        return;
    }
    struct admin_conn *ac = calloc(1, sizeof *ac);
    if (!ac) abort();
    ac->admin = a;
    ac->conn = conn_new(a->base, fd);
    ac->deferred = event_new(a->base, -1, 0, deferred_cb, ac);
    ac->timer = evtimer_new(a->base, timer_cb, ac);
    ac->body = evbuffer_new();
    ac->next = a->conns;
    if (a->conns) a->conns->prev = ac;
    a->conns = ac;
    a->n_conns++;
    conn_setcb(ac->conn, read_cb, write_cb, event_cb, ac);
    conn_set_watermarks(ac->conn, ADMIN_MAX_HEAD_BYTES + 64 * 1024, 0);
    conn_read_enable(ac->conn);
    arm_timer(ac);
}

struct admin *admin_start(struct event_base *base, struct admin_state *state,
                          const struct weir_settings *settings, char *err, size_t errlen) {
    struct admin *a = calloc(1, sizeof *a);
    if (!a) abort();
    a->base = base;
    a->state = state;
    state->conflicts = model_conflict_cache_new();
    a->token = settings->admin_token ? strdup(settings->admin_token) : NULL;
    a->n_listeners = settings->n_admin_listen;
    a->listeners = calloc(a->n_listeners ? a->n_listeners : 1, sizeof *a->listeners);
    for (size_t i = 0; i < settings->n_admin_listen; i++) {
        const char *h = settings->admin_listen[i].host;
        if (strncmp(h, "127.", 4) != 0 && strcmp(h, "::1") != 0) a->needs_token = true;
        if (listener_probe(&settings->admin_listen[i], err, errlen) != 0) {
            admin_stop(a);
            return NULL;
        }
        int fd = listener_open(&settings->admin_listen[i], err, errlen);
        if (fd < 0) {
            admin_stop(a);
            return NULL;
        }
        a->listeners[i] = evconnlistener_new(base, accept_cb, a,
                                             LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
        if (!a->listeners[i]) {
            snprintf(err, errlen, "cannot listen on %s:%d", settings->admin_listen[i].host,
                     settings->admin_listen[i].port);
            close(fd);
            admin_stop(a);
            return NULL;
        }
    }
    return a;
}

void admin_settings_changed(struct admin *a, const struct weir_settings *settings) {
    /* Listeners only change on restart, so a reload that drops the token
     * while a non-loopback listener is open keeps the old one. */
    if (!settings->admin_token && a->needs_token) {
        log_warn("reload: admin_token removed while the admin API listens off loopback; "
                 "keeping the current token until restart");
        return;
    }
    if (a->token) OPENSSL_cleanse(a->token, strlen(a->token));
    free(a->token);
    a->token = settings->admin_token ? strdup(settings->admin_token) : NULL;
}

void admin_stop(struct admin *a) {
    if (!a) return;
    for (size_t i = 0; i < a->n_listeners; i++)
        if (a->listeners[i]) evconnlistener_free(a->listeners[i]);
    while (a->conns)
        admin_conn_destroy(a->conns);
    free(a->listeners);
    model_conflict_cache_free(a->state->conflicts);
    a->state->conflicts = NULL;
    if (a->token) OPENSSL_cleanse(a->token, strlen(a->token));
    free(a->token);
    free(a);
}
