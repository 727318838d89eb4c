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

#include "config/snapshot.h"

#define ADMIN_MAX_HEAD_BYTES (32 * 1024)
#define ADMIN_MAX_BODY_BYTES (16 * 1024 * 1024)
#define ADMIN_MAX_CONNECTIONS 256

struct worker;

/* What the handlers may look at; owned by main.c's control state. */
struct admin_state {
    struct snapshot **snapshot; /* the current snapshot (control's reference) */
    uint64_t *config_version;
    struct worker **workers;
    int n_workers;
    char node_id[37];
    struct timespec started;
};

struct admin_request {
    const char *method;
    char *path;  /* percent-decoded, without the query */
    char *query; /* raw, NULL when absent */
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
/* Entities, read-only from the running snapshot (admin_entities.c). */
void admin_list_services(struct admin_state *st, const struct admin_request *req,
                         struct admin_response *res);
void admin_get_service(struct admin_state *st, const struct admin_request *req,
                       struct admin_response *res);
void admin_list_routes(struct admin_state *st, const struct admin_request *req,
                       struct admin_response *res);
void admin_get_route(struct admin_state *st, const struct admin_request *req,
                     struct admin_response *res);
void admin_list_service_routes(struct admin_state *st, const struct admin_request *req,
                               struct admin_response *res);
void admin_get_route_service(struct admin_state *st, const struct admin_request *req,
                             struct admin_response *res);
void admin_list_upstreams(struct admin_state *st, const struct admin_request *req,
                          struct admin_response *res);
void admin_get_upstream(struct admin_state *st, const struct admin_request *req,
                        struct admin_response *res);
void admin_list_upstream_targets(struct admin_state *st, const struct admin_request *req,
                                 struct admin_response *res);
void admin_get_schema(struct admin_state *st, const struct admin_request *req,
                      struct admin_response *res);

#endif
