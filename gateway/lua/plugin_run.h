/* plugin_run: the plugins of one request, phase by phase.
 *
 * After routing, client_conn hands a request whose route has a chain (config/snapshot.h) to
 * plugin_run_request(). The run calls each plugin's rewrite, then access method, in chain order,
 * one lua_task call at a time (a call that waits suspends the run; the worker goes on). Then it
 * either starts the upstream exchange (proxy_start) with the changes plugins made to the
 * upstream request, or, when a plugin called weir.response.exit() or raised an error, answers
 * itself. The response phase runs when the upstream's response head arrives (proxy hands over
 * through plugin_run_response()) or before the run's own answer; the log phase runs after the
 * last byte was queued, synchronously (waiting is refused there, as in OpenResty's log phase).
 *
 * Once an access-phase plugin identified a consumer (weir.client.authenticate) and the config
 * has consumer-scoped instances, the chain is resolved again for that consumer: plugins after
 * the current one in the new chain run, those already run do not run twice.
 *
 * A run belongs to its client_conn (c->run) and is freed with the request or the connection;
 * freeing cancels what a suspended task waits for. Worker thread only. */
#ifndef WEIR_PLUGIN_RUN_H
#define WEIR_PLUGIN_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config/snapshot.h"
#include "core/arena.h"
#include "lua/lua_task.h"

struct client_conn;
struct plugin_instance;

/* A header list: what plugins made of the upstream request's or the response's fields. It owns
 * only its array: the strings are borrowed (the run's arena, a message head, static text) and
 * must outlive it. */
struct hfield {
    const char *name, *value;
    size_t nlen, vlen;
};
struct hlist {
    struct hfield *v;
    size_t n, cap;
};
void hlist_add(struct hlist *l, const char *name, size_t nlen, const char *value, size_t vlen);
/* Removes every field named `name` (case-insensitive); returns how many. */
size_t hlist_clear(struct hlist *l, const char *name, size_t nlen);
const struct hfield *hlist_find(const struct hlist *l, const char *name, size_t nlen);
void hlist_free(struct hlist *l);

/* What plugins' header edits of one request may copy (names and values, the client's fields
 * once edited): a bound on the run's arena. */
#define PLUGIN_RUN_EDIT_LIMIT (1024 * 1024)

enum response_source { SOURCE_SERVICE, SOURCE_EXIT, SOURCE_ERROR };

struct plugin_run {
    struct client_conn *c;
    struct lua_vm *vm;
    struct lua_task task;
    const struct plugin_instance **chain;
    size_t n;
    const struct plugin_instance **own_chain; /* a consumer's chain (freed with the run) */
    bool *done_access;                        /* per chain entry: access already ran */
    unsigned phase;                           /* enum plugin_phase bit running now */
    const struct plugin_instance *instance;   /* the instance whose method runs, or NULL */
    size_t next;                              /* chain position of the next call */
    int ctx_ref;                              /* {[1] = shared, [plugin] = its own} */
    int consumer_ref, credential_ref;         /* weir.client.authenticate() */
    const char *consumer_id;                  /* points into consumer_ref's table while set */
    char consumer_id_buf[40];
    bool finished_early; /* exit or error in rewrite/access: the upstream is never called */
    bool in_response;    /* the response phase is running (or ran) */

    /* The response when the run answers itself (exit or error). */
    enum response_source source;
    int status;
    char *body;
    size_t body_len;
    struct hlist exit_headers;

    /* The upstream request as plugins changed it (NULL / unset: as the client sent it). */
    char *up_method;
    char *up_path;
    char *up_query;
    bool up_query_set;
    bool up_headers_set; /* up_headers replaces the client's forwarded fields */
    struct hlist up_headers;
    char *up_host; /* the Host field, when a plugin set it */

    /* The request body, read for a plugin (weir.request.get_raw_body): once read it is what
     * the upstream gets (with Content-Length), unless a plugin replaced it (up_body). */
    struct lua_task *body_waiter;               /* a task waiting for the body to be read */
    int (*body_push)(lua_State *co, void *arg); /* pushes what the waiter returns (arg: run) */
    char *body_mime;                            /* get_body's media type argument */
    bool body_read;
    char *req_body;
    size_t req_body_len, req_body_cap;
    char *up_body; /* weir.service.request.set_raw_body(); up_body_set says it is set */
    size_t up_body_len;
    bool up_body_set;

    /* The upstream response body, for plugins with BUFFER_RESPONSE (resp_body_set: replaced). */
    bool buffering_response;
    char *resp_body;
    size_t resp_body_len, resp_body_cap;
    bool resp_body_set;

    struct sockaddr_storage target; /* weir.service.set_target(), when target_len > 0 */
    socklen_t target_len;

    /* The response as plugins change it, in any phase before it is sent: the status, and
     * header edits applied in order to whatever the response's fields are. */
    int resp_status; /* 0: unchanged */
    struct resp_op *resp_ops;
    size_t n_resp_ops, cap_resp_ops;

    struct arena strings; /* the copies the header lists and edits point at */
};

enum resp_op_kind { RESP_SET, RESP_ADD, RESP_CLEAR };
struct resp_op {
    enum resp_op_kind kind;
    const char *name, *value; /* in the run's arena; value NULL for RESP_CLEAR */
    size_t nlen, vlen;
};

/* s[0..n) copied into the run's arena; a Lua error naming `what` once the request's copies
 * pass PLUGIN_RUN_EDIT_LIMIT. */
const char *plugin_run_copy(lua_State *L, struct plugin_run *run, const char *s, size_t n,
                            const char *what);
/* hlist_add() of copies (plugin_run_copy). */
void plugin_run_hlist_add(lua_State *L, struct plugin_run *run, struct hlist *l, const char *name,
                          size_t nlen, const char *value, size_t vlen, const char *what);

/* The response's fields after plugins' edits: `base` (the upstream's or the run's own) with
 * run->resp_ops applied, into `out` (which the caller frees). */
void plugin_run_response_fields(const struct plugin_run *run, const struct hlist *base,
                                struct hlist *out);
/* The upstream response's fields a client may see (hop-by-hop and framing fields left out), as
 * the base of plugin_run_response_fields(). */
void plugin_run_upstream_fields(const struct client_conn *c, struct hlist *out);
/* Shared by the PDK bindings (pdk_service.c): header checks. */
const char *pdk_check_header(lua_State *L, int idx, size_t *n, bool request, const char *what);
const char *pdk_check_header_value(lua_State *L, int idx, size_t *n, const char *what);

/* Starts the plugins of a routed request whose route has a chain; the run then continues the
 * request itself (upstream or its own response). Returns false when the chain has no rewrite or
 * access method and no response/log method either, i.e. nothing to do: call proxy_start(). */
bool plugin_run_request(struct client_conn *c, const struct route_chain *chain);
/* The upstream's final response head is parsed: true when plugins run first, then the run calls
 * proxy_response_continue(c); false: go on now. */
bool plugin_run_response(struct client_conn *c);
/* Request body bytes read for a waiting plugin, then the end of the body. */
void plugin_run_body_append(struct client_conn *c, const char *data, size_t len);
void plugin_run_body_done(struct client_conn *c);
/* The body the upstream request carries instead of the client's stream, or NULL. */
const char *plugin_run_upstream_body(const struct client_conn *c, size_t *len);
/* True when a plugin of the chain buffers the response (BUFFER_RESPONSE): the upstream body is
 * then collected with plugin_run_response_body() before plugin_run_response(). */
bool plugin_run_buffers_response(const struct client_conn *c);
/* Appends upstream body bytes; false when they pass weir.lua.response_buffer_limit. */
bool plugin_run_response_body(struct client_conn *c, const char *data, size_t len);
/* The response body to send after a buffered response phase. */
const char *plugin_run_buffered_body(const struct client_conn *c, size_t *len);
/* A response Weir makes itself (502, 504, ...) after the plugins' access phase: true when the
 * response phase runs first (the run then sends it); false: send it now. */
bool plugin_run_gateway_error(struct client_conn *c, int status, const char *body, size_t len);
/* After the response's last byte was queued. */
void plugin_run_log(struct client_conn *c);
/* Frees the request's run (cancelling a wait). Safe when there is none. */
void plugin_run_free(struct client_conn *c);

/* For PDK functions: the run of the request whose plugin is running; raises a Lua error outside
 * one (a timer, module load). `what` names the function for that message. */
struct plugin_run *plugin_run_current(lua_State *L, const char *what);

#endif
