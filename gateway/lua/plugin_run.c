#include "lua/plugin_run.h"

#include <event2/buffer.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/worker.h"
#include "http/client_conn.h"
#include "http/error_response.h"
#include "lua/plugin_catalog.h"
#include "lua/plugin_chain.h"
#include "upstream/proxy.h"

/* ---- header lists ---------------------------------------------------------------------------- */

static char *dupn(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) abort();
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void hlist_add(struct hlist *l, const char *name, size_t nlen, const char *value, size_t vlen) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v) abort();
    }
    l->v[l->n++] = (struct hfield){name, value, nlen, vlen};
}

size_t hlist_clear(struct hlist *l, const char *name, size_t nlen) {
    size_t kept = 0, removed = 0;
    for (size_t i = 0; i < l->n; i++) {
        struct hfield *f = &l->v[i];
        if (f->nlen == nlen && !strncasecmp(f->name, name, nlen))
            removed++;
        else
            l->v[kept++] = *f;
    }
    l->n = kept;
    return removed;
}

const struct hfield *hlist_find(const struct hlist *l, const char *name, size_t nlen) {
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].nlen == nlen && !strncasecmp(l->v[i].name, name, nlen)) return &l->v[i];
    return NULL;
}

void hlist_free(struct hlist *l) {
    free(l->v);
    memset(l, 0, sizeof *l);
}

const char *plugin_run_copy(lua_State *L, struct plugin_run *run, const char *s, size_t n,
                            const char *what) {
    const char *d = arena_dup(&run->strings, s, n);
    if (!d)
        luaL_error(L, "%s: this request's header changes passed %d bytes", what,
                   PLUGIN_RUN_EDIT_LIMIT);
    return d;
}

void plugin_run_hlist_add(lua_State *L, struct plugin_run *run, struct hlist *l, const char *name,
                          size_t nlen, const char *value, size_t vlen, const char *what) {
    const char *n = plugin_run_copy(L, run, name, nlen, what);
    hlist_add(l, n, nlen, plugin_run_copy(L, run, value, vlen, what), vlen);
}

/* ---- the run --------------------------------------------------------------------------------- */

static const char *phase_name(unsigned phase) {
    switch (phase) {
    case PLUGIN_REWRITE:
        return "rewrite";
    case PLUGIN_ACCESS:
        return "access";
    case PLUGIN_RESPONSE:
        return "response";
    default:
        return "log";
    }
}

static const struct config *config_of(const struct plugin_run *run) {
    return run->c->req.snap->config;
}

static size_t instance_index(const struct plugin_run *run, const struct plugin_instance *p) {
    return (size_t)(p - config_of(run)->plugin_instances);
}

static const struct plugin_def *def_of(const struct plugin_run *run, size_t i) {
    return config_of(run)->plugin_defs[instance_index(run, run->chain[i])];
}

static void task_done(struct lua_task *t, enum lua_task_result r);
static void advance(struct plugin_run *run);

struct plugin_run *plugin_run_current(lua_State *L, const char *what) {
    struct lua_task *t = lua_task_current(L);
    if (!t || !t->for_request) luaL_error(L, "%s: only while a plugin runs for a request", what);
    return t->owner;
}

/* The answer for a plugin error: Kong's body, the details only in the error log. */
static void set_error_response(struct plugin_run *run) {
    struct client_conn *c = run->c;
    char body[512];
    size_t n =
        error_body_json(body, sizeof body, "An unexpected error occurred", c->req.request_id);
    free(run->body);
    run->body = dupn(body, n < sizeof body ? n : sizeof body - 1);
    run->body_len = strlen(run->body);
    run->status = 500;
    run->source = SOURCE_ERROR;
    hlist_free(&run->exit_headers);
    hlist_add(&run->exit_headers, "Content-Type", 12, "application/json; charset=utf-8", 31);
}

static void log_plugin_error(struct plugin_run *run, const char *plugin, const char *phase,
                             const char *msg) {
    run->vm->errors++;
    metrics_plugin_error(run->c->worker->metrics, plugin ? plugin : "", phase);
    log_err("plugin %s failed in the %s phase (request %s): %s", plugin, phase,
            run->c->req.request_id, msg);
}

/* Consumer-scoped instances apply once a plugin identified the consumer: resolve the chain for
 * them and go on after the current plugin, skipping what already ran. */
static void rechain_for_consumer(struct plugin_run *run) {
    const struct config *cfg = config_of(run);
    const struct route *route = run->c->req.match.route;
    size_t cap = cfg->n_plugin_instances;
    const struct plugin_instance **chain = calloc(cap ? cap : 1, sizeof *chain);
    bool *done = calloc(cap ? cap : 1, sizeof *done);
    if (!chain || !done) abort();
    size_t n = plugin_chain_resolve(cfg->plugin_instances, cap, route->id, route->service->id,
                                    run->consumer_id, chain, cap);
    /* the plugin that just ran decides where the new chain goes on */
    const struct plugin_instance *current = run->chain[run->next - 1];
    size_t next = n;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < run->next; j++)
            if (!strcmp(chain[i]->name, run->chain[j]->name)) done[i] = true;
        if (next == n &&
            (chain[i]->priority < current->priority || (chain[i]->priority == current->priority &&
                                                        strcmp(chain[i]->name, current->name) > 0)))
            next = i;
    }
    free(run->own_chain);
    free(run->done_access);
    run->own_chain = run->chain = chain;
    run->done_access = done;
    run->n = n;
    run->next = next;
}

/* Calls chain entry i's method for the current phase. */
static enum lua_task_result call(struct plugin_run *run, size_t i) {
    struct lua_vm *vm = run->vm;
    const struct plugin_def *def = def_of(run, i);
    const char *phase = phase_name(run->phase);
    run->task.plugin = def->name;
    run->instance = run->chain[i];
    run->task.phase = phase;
    run->task.may_wait = run->phase != PLUGIN_LOG;
    int which = run->phase == PLUGIN_REWRITE    ? 0
                : run->phase == PLUGIN_ACCESS   ? 1
                : run->phase == PLUGIN_RESPONSE ? 2
                                                : 3;
    if (!lua_vm_push_plugin(vm, run->c->req.snap, instance_index(run, run->chain[i]), which)) {
        free(run->task.error);
        run->task.error = strdup("the plugin's handler could not be loaded (see the error log)");
        return LUA_TASK_ERROR;
    }
    return lua_task_call(&run->task, 2); /* method(handler, conf) */
}

/* Handles how a call ended; false when the run must not go on from here (it answered). */
static bool after_call(struct plugin_run *run, enum lua_task_result r) {
    switch (r) {
    case LUA_TASK_OK:
        if (run->phase == PLUGIN_ACCESS && run->consumer_id && !run->own_chain &&
            config_of(run)->plugins_by_consumer)
            rechain_for_consumer(run);
        return true;
    case LUA_TASK_EXIT:
        /* exit stops the rewrite and access phases; the response phase still runs */
        run->finished_early = true;
        run->in_response = true;
        run->phase = PLUGIN_RESPONSE;
        run->next = 0;
        return true;
    case LUA_TASK_ERROR:
    default:
        log_plugin_error(run, run->task.plugin, run->task.phase, run->task.error);
        set_error_response(run);
        if (run->phase == PLUGIN_RESPONSE) {
            /* the response plugins were changing is gone: answer the error as it is */
            proxy_abort(run->c);
            run->resp_status = 0;
            run->next = run->n;
            return true;
        }
        run->finished_early = true;
        run->in_response = true;
        run->phase = PLUGIN_RESPONSE;
        run->next = 0;
        return true;
    case LUA_TASK_WAITING:
        return false;
    }
}

static void task_done(struct lua_task *t, enum lua_task_result r) {
    struct plugin_run *run = t->owner;
    if (after_call(run, r)) advance(run);
}

/* Sends the run's own response (exit or error) as plugins left it. */
static void send_own_response(struct plugin_run *run) {
    struct client_conn *c = run->c;
    struct request *r = &c->req;
    int status = run->resp_status ? run->resp_status : run->status;
    struct bytebuf *b = &c->resp_out;
    b->len = 0;
    char line[128];
    int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, http_reason_phrase(status));
    bytebuf_append(b, line, (size_t)n);
    bool no_body = r->is_head || status == 204 || status == 304 || status < 200;
    struct hlist fields = {0};
    plugin_run_response_fields(run, &run->exit_headers, &fields);
    for (size_t i = 0; i < fields.n; i++) {
        const struct hfield *f = &fields.v[i];
        bytebuf_append(b, f->name, f->nlen);
        bytebuf_append(b, ": ", 2);
        bytebuf_append(b, f->value, f->vlen);
        bytebuf_append(b, "\r\n", 2);
    }
    hlist_free(&fields);
    if (status != 204 && !(status < 200)) {
        n = snprintf(line, sizeof line, "Content-Length: %zu\r\n", run->body_len);
        bytebuf_append(b, line, (size_t)n);
    }
    bytebuf_append(b, "X-Request-ID: ", 14);
    bytebuf_append(b, r->request_id, r->request_id_len);
    bytebuf_append(b, "\r\nServer: weir\r\n", 16);
    /* the request body was never read: the connection cannot carry another request */
    if (!r->body_done) c->close_after = true;
    if (c->close_after || c->eof || c->worker->stopping)
        bytebuf_append(b, "Connection: close\r\n", 19);
    bytebuf_append(b, "\r\n", 2);
    struct evbuffer *out = conn_output(c->conn);
    evbuffer_add(out, b->data, b->len);
    r->bytes_sent += b->len;
    if (!no_body && run->body_len) {
        evbuffer_add(out, run->body, run->body_len);
        r->bytes_sent += run->body_len;
    }
    r->status = status;
    r->response_started = true;
    client_response_done(c);
}

/* Runs the current phase's methods from run->next on; moves to the next phase when done. */
static void advance(struct plugin_run *run) {
    for (;;) {
        unsigned phase = run->phase;
        size_t i = run->next;
        while (i < run->n && (!(def_of(run, i)->phases & phase) ||
                              (phase == PLUGIN_ACCESS && run->done_access && run->done_access[i])))
            i++;
        if (i < run->n) {
            run->next = i + 1;
            enum lua_task_result r = call(run, i);
            if (!after_call(run, r)) return; /* waiting: task_done() goes on */
            continue;
        }
        if (phase == PLUGIN_REWRITE) {
            run->phase = PLUGIN_ACCESS;
            run->next = 0;
            continue;
        }
        struct client_conn *c = run->c;
        run->task.plugin = NULL;
        run->instance = NULL;
        if (phase == PLUGIN_ACCESS) {
            run->phase = 0;
            proxy_start(c);
            return;
        }
        /* the response phase is over */
        run->phase = 0;
        if (run->finished_early || run->source != SOURCE_SERVICE)
            send_own_response(run);
        else
            proxy_response_continue(c);
        return;
    }
}

bool plugin_run_request(struct client_conn *c, const struct route_chain *chain) {
    struct lua_vm *vm = worker_lua_vm(c->worker);
    if (!vm) {
        client_send_error(c, 500, "An unexpected error occurred", !c->req.body_done);
        return true;
    }
    struct plugin_run *run = calloc(1, sizeof *run);
    if (!run) abort();
    run->strings.limit = PLUGIN_RUN_EDIT_LIMIT;
    run->c = c;
    run->vm = vm;
    run->chain = chain->insts;
    run->n = chain->n;
    run->ctx_ref = run->consumer_ref = run->credential_ref = LUA_NOREF;
    lua_task_init(&run->task, vm, run, task_done);
    run->task.for_request = true;
    vm->users++;
    c->run = run;
    /* The client connection keeps being read: body bytes wait in its buffer (bounded by its
     * watermark) until the upstream exchange starts or a plugin reads the body, and a client
     * that leaves is noticed at once (its request, and what a plugin waits for, is cancelled).
     * No epoll change per request. */
    run->phase = PLUGIN_REWRITE;
    run->next = 0;
    advance(run);
    return true;
}

bool plugin_run_gateway_error(struct client_conn *c, int status, const char *body, size_t len) {
    struct plugin_run *run = c->run;
    /* not while a phase runs (a body read that failed: the request just ends), not twice */
    if (run->phase || run->in_response) return false;
    bool any = false;
    for (size_t i = 0; i < run->n && !any; i++)
        any = def_of(run, i)->phases & PLUGIN_RESPONSE;
    if (!any) return false;
    free(run->body);
    run->body = dupn(body, len);
    run->body_len = len;
    run->status = status;
    run->source = SOURCE_ERROR;
    hlist_free(&run->exit_headers);
    hlist_add(&run->exit_headers, "Content-Type", 12, "application/json; charset=utf-8", 31);
    run->finished_early = true;
    run->in_response = true;
    run->phase = PLUGIN_RESPONSE;
    run->next = 0;
    advance(run);
    return true;
}

bool plugin_run_response(struct client_conn *c) {
    struct plugin_run *run = c->run;
    if (!run) return false;
    bool any = false;
    for (size_t i = 0; i < run->n && !any; i++)
        any = def_of(run, i)->phases & PLUGIN_RESPONSE;
    if (!any) return false;
    run->in_response = true;
    run->source = SOURCE_SERVICE;
    run->phase = PLUGIN_RESPONSE;
    run->next = 0;
    advance(run);
    return true;
}

void plugin_run_log(struct client_conn *c) {
    struct plugin_run *run = c->run;
    if (!run) return;
    run->phase = PLUGIN_LOG;
    for (size_t i = 0; i < run->n; i++) {
        if (!(def_of(run, i)->phases & PLUGIN_LOG)) continue;
        run->next = i + 1;
        enum lua_task_result r = call(run, i);
        if (r == LUA_TASK_ERROR)
            log_plugin_error(run, run->task.plugin, "log", run->task.error);
        else if (r == LUA_TASK_EXIT)
            log_plugin_error(run, run->task.plugin, "log",
                             "weir.response.exit() after the response was sent");
    }
    run->phase = 0;
}

static void append(char **buf, size_t *len, size_t *cap, const char *data, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t want = *cap ? *cap : 4096;
        while (want < *len + n + 1)
            want *= 2;
        *buf = realloc(*buf, want);
        if (!*buf) abort();
        *cap = want;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
}

void plugin_run_body_append(struct client_conn *c, const char *data, size_t len) {
    struct plugin_run *run = c->run;
    append(&run->req_body, &run->req_body_len, &run->req_body_cap, data, len);
}

void plugin_run_body_done(struct client_conn *c) {
    struct plugin_run *run = c->run;
    run->body_read = true;
    if (!run->req_body) append(&run->req_body, &run->req_body_len, &run->req_body_cap, "", 0);
    struct lua_task *t = run->body_waiter;
    run->body_waiter = NULL;
    if (t) lua_task_wake(t, run->body_push, run);
}

const char *plugin_run_upstream_body(const struct client_conn *c, size_t *len) {
    const struct plugin_run *run = c->run;
    if (!run) return NULL;
    if (run->up_body_set) {
        *len = run->up_body_len;
        return run->up_body ? run->up_body : "";
    }
    if (run->body_read) {
        *len = run->req_body_len;
        return run->req_body;
    }
    return NULL;
}

bool plugin_run_buffers_response(const struct client_conn *c) {
    const struct plugin_run *run = c->run;
    for (size_t i = 0; run && i < run->n; i++) {
        const struct plugin_def *def = def_of(run, i);
        if (!(def->phases & PLUGIN_RESPONSE) || def->buffer_response == BUFFER_NEVER) continue;
        if (def->buffer_response == BUFFER_ALWAYS ||
            lua_vm_plugin_buffers_response(run->vm, c->req.snap,
                                           instance_index(run, run->chain[i])))
            return true;
    }
    return false;
}

bool plugin_run_response_body(struct client_conn *c, const char *data, size_t len) {
    struct plugin_run *run = c->run;
    long long limit = config_of(run)->weir.lua_response_buffer_limit;
    if ((long long)(run->resp_body_len + len) > limit) return false;
    append(&run->resp_body, &run->resp_body_len, &run->resp_body_cap, data, len);
    return true;
}

const char *plugin_run_buffered_body(const struct client_conn *c, size_t *len) {
    const struct plugin_run *run = c->run;
    *len = run->resp_body_len;
    return run->resp_body ? run->resp_body : "";
}

void plugin_run_free(struct client_conn *c) {
    struct plugin_run *run = c->run;
    if (!run) return;
    c->run = NULL;
    lua_task_finish(&run->task);
    lua_State *L = run->vm->L;
    luaL_unref(L, LUA_REGISTRYINDEX, run->ctx_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, run->consumer_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, run->credential_ref);
    free(run->own_chain);
    free(run->done_access);
    free(run->body);
    free(run->req_body);
    free(run->body_mime);
    free(run->up_body);
    free(run->resp_body);
    hlist_free(&run->exit_headers);
    free(run->up_method);
    free(run->up_path);
    free(run->up_query);
    hlist_free(&run->up_headers);
    free(run->up_host);
    free(run->resp_ops);
    arena_free(&run->strings);
    run->vm->users--;
    worker_lua_vm_released(c->worker, run->vm);
    free(run);
}

void plugin_run_response_fields(const struct plugin_run *run, const struct hlist *base,
                                struct hlist *out) {
    for (size_t i = 0; i < base->n; i++)
        hlist_add(out, base->v[i].name, base->v[i].nlen, base->v[i].value, base->v[i].vlen);
    for (size_t i = 0; i < run->n_resp_ops; i++) {
        const struct resp_op *op = &run->resp_ops[i];
        if (op->kind != RESP_ADD) hlist_clear(out, op->name, op->nlen);
        if (op->kind != RESP_CLEAR) hlist_add(out, op->name, op->nlen, op->value, op->vlen);
    }
}

void plugin_run_upstream_fields(const struct client_conn *c, struct hlist *out) {
    const struct upstream_side *up = &c->up;
    for (size_t i = 0; i < up->n_headers; i++) {
        const struct http_header *h = &up->headers[i];
        if (h->drop || header_is_hop_by_hop(h->kind) || h->kind == HDR_CONTENT_LENGTH ||
            h->kind == HDR_X_REQUEST_ID || h->kind == HDR_VIA)
            continue;
        hlist_add(out, h->name, h->name_len, h->value, h->value_len);
    }
}
