/* admin: the admin API server, on the control thread.
 *
 * Listens on weir.admin_listen (loopback unless an admin_token is set: the
 * config loader refuses anything else), parses requests with the proxy's
 * strict head checks and http-parser, requires `Authorization: Bearer
 * <admin_token>` on every request whenever a token is set (compared in
 * constant time), bounds request size (admin_limits below) and open
 * connections so a flood of admin calls cannot starve the proxy, and
 * answers JSON. Handlers live in admin_*.c, one file per endpoint family,
 * and see the world through struct admin_state.
 *
 * Control thread only: the admin event loop is the control thread's. */
#ifndef WEIR_ADMIN_H
#define WEIR_ADMIN_H

#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/entity.h"
#include "config/snapshot.h"

#define ADMIN_MAX_HEAD_BYTES (32 * 1024)
#define ADMIN_MAX_BODY_BYTES (16 * 1024 * 1024)
#define ADMIN_MAX_CONNECTIONS 256

struct worker;

/* What installing a new entity model came to. */
enum commit_result {
    COMMIT_OK,      /* compiled, persisted (with a store), published to every worker */
    COMMIT_INVALID, /* the model does not compile (errs: "<plural>[<i>].<field>: message") */
    COMMIT_FAILED   /* the store could not save it (errs: the reason); nothing changed */
};

/* Installs `model` (the caller keeps its reference) as the running configuration. */
typedef enum commit_result (*admin_commit_fn)(void *ctx, json_t *model, struct errlist *errs);

/* What the handlers may look at; owned by server.c's control state. */
struct admin_state {
    admin_commit_fn commit;
    void *commit_ctx;
    bool has_store; /* false: DB-less, entity writes are 405 (POST /config still works) */
    struct snapshot **snapshot; /* the current snapshot (control's reference) */
    uint64_t *config_version;
    struct worker **workers;
    int n_workers;
    char node_id[37];
    struct timespec started;
    struct model_conflict_cache *conflicts; /* admin_start() to admin_stop() (config/model.h) */
    /* Runs a write (anything but GET and HEAD) as fn(arg), returning when it is done: the server
     * puts them on its compile thread (core/idle_runner.h), whose CPU the workers always win.
     * NULL: on the calling thread. */
    void (*run_write)(void *commit_ctx, void (*fn)(void *arg), void *arg);
};

/* What an entity endpoint serves: a kind, maybe nested under an owner
 * ("/upstreams/{u}/targets": kind target, owner upstream, owner_field "upstream"). */
struct admin_endpoint {
    enum entity_kind kind;
    enum entity_kind owner;
    const char *owner_field; /* NULL when not nested */
};

struct admin_request {
    const char *method;
    const struct admin_endpoint *endpoint; /* entity endpoints only */
    const char *content_type;              /* NULL when absent */
    char *path;                            /* percent-decoded, without the query */
    char *query;                           /* raw, NULL when absent */
    const char *body;
    size_t body_len;
    /* Path segments matched by "{}" in the route pattern, in order
     * ("/services/{}/routes" on "/services/orders/routes": "orders"). */
    char params[2][256];
    int n_params;
};

/* A handler fills either `json` (owned, sent with application/json) or
 * `text` (owned, sent with text_type), and the status. */
struct admin_response {
    int status;
    json_t *json;
    char *text;
    const char *text_type;
};

struct admin;

/* Opens every admin_listen address on `base`. Returns NULL with a message in
 * err when one cannot be opened. With no admin_listen, returns an admin that
 * listens nowhere. */
struct admin *admin_start(struct event_base *base, struct admin_state *state,
                          const struct weir_settings *settings, char *err, size_t errlen);
/* The token may change on reload; listeners do not (restart). */
void admin_settings_changed(struct admin *a, const struct weir_settings *settings);
void admin_stop(struct admin *a);

/* Helpers for handlers. */
void admin_error(struct admin_response *res, int status, const char *message);
/* The value of query parameter `name` (percent-decoded into a new string the
 * caller frees), or NULL. */
char *admin_query_param(const struct admin_request *req, const char *name);

/* The request body as a JSON object, or NULL after answering 415 (not application/json) or 400
 * (malformed, with the byte offset; not an object). An empty body is {}. */
json_t *admin_read_json(const struct admin_request *req, struct admin_response *res);
/* 400 in Kong's schema-violation shape from "path: message" problems; paths starting with
 * `prefix` (when set) are made relative to it. */
void admin_schema_violation(struct admin_response *res, const struct errlist *errs,
                            const char *prefix);

/* Endpoint families (admin_info.c, admin_debug.c). */
void admin_get_root(struct admin_state *st, const struct admin_request *req,
                    struct admin_response *res);
void admin_get_status(struct admin_state *st, const struct admin_request *req,
                      struct admin_response *res);
void admin_get_metrics(struct admin_state *st, const struct admin_request *req,
                       struct admin_response *res);
void admin_get_config(struct admin_state *st, const struct admin_request *req,
                      struct admin_response *res);
void admin_get_debug_match(struct admin_state *st, const struct admin_request *req,
                           struct admin_response *res);
void admin_post_config(struct admin_state *st, const struct admin_request *req,
                       struct admin_response *res);
/* Entities (admin_entities.c): one implementation for every kind, driven by req->endpoint. */
void admin_list_entities(struct admin_state *st, const struct admin_request *req,
                         struct admin_response *res);
void admin_get_entity(struct admin_state *st, const struct admin_request *req,
                      struct admin_response *res);
void admin_create_entity(struct admin_state *st, const struct admin_request *req,
                         struct admin_response *res);
void admin_update_entity(struct admin_state *st, const struct admin_request *req,
                         struct admin_response *res);
void admin_upsert_entity(struct admin_state *st, const struct admin_request *req,
                         struct admin_response *res);
void admin_delete_entity(struct admin_state *st, const struct admin_request *req,
                         struct admin_response *res);
void admin_get_route_service(struct admin_state *st, const struct admin_request *req,
                             struct admin_response *res);
void admin_get_upstream_health(struct admin_state *st, const struct admin_request *req,
                               struct admin_response *res);
/* Kong's POST /upstreams/{u}/targets/{t}/healthy and /unhealthy: 204, 404, or 400 when the
 * upstream's health checks are off. */
void admin_post_target_healthy(struct admin_state *st, const struct admin_request *req,
                               struct admin_response *res);
void admin_post_target_unhealthy(struct admin_state *st, const struct admin_request *req,
                                 struct admin_response *res);
void admin_get_schema(struct admin_state *st, const struct admin_request *req,
                      struct admin_response *res);
void admin_get_plugin_schema(struct admin_state *st, const struct admin_request *req,
                             struct admin_response *res);

#endif
