/* admin_entities: Kong's entity endpoints over the running configuration's model.
 *
 * Reads (GET) page through the current snapshot's model with Kong's pagination (`size` 1..1000,
 * default 100; an opaque `offset`; `next`) and `tags` filters ("a,b": all of them; "a/b": any).
 * Writes (POST, PUT, PATCH, DELETE) validate the body against schemas/<kind>.json with the one
 * schema validator, add what a schema cannot check (references, uniqueness), build a new model from
 * shallow copies of the current one, and hand it to admin_commit(): compiled, persisted, published,
 * or nothing changes. Errors are Kong's: 400 schema violation (code 2) with every field at once,
 * 400 foreign key violation (code 4), 409 unique constraint violation (code 5), 404, 415. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "admin/admin.h"
#include "config/model.h"
#include "lua/plugin_catalog.h"
#include "core/paths.h"
#include "core/log.h"
#include "core/uuid.h"
#include "upstream/health.h"

#include <openssl/rand.h>

#define PAGE_DEFAULT 100
#define PAGE_MAX 1000

static const json_t *model(struct admin_state *st) {
    return (*st->snapshot)->config->model;
}

static const char *str(const json_t *e, const char *key) {
    return json_string_value(json_object_get(e, key));
}

static const char *ref_id(const json_t *e, const char *field) {
    return str(json_object_get(e, field), "id");
}

/* ---- errors in Kong's shapes -------------------------------------------------------------------
 */

/* {"code": 2, "name": "schema violation", "message": "...", "fields": {"path": "message"}}:
 * errlist items "path: message" below `prefix` ("routes[3]" when the problem was found in the
 * whole model) become fields relative to the entity. */
void admin_schema_violation(struct admin_response *res, const struct errlist *errs,
                            const char *prefix) {
    json_t *fields = json_object();
    char *summary = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&summary, &len);
    if (!f) abort();
    size_t plen = prefix ? strlen(prefix) : 0;
    for (size_t i = 0; i < errs->n; i++) {
        const char *item = errs->items[i];
        if (plen && !strncmp(item, prefix, plen)) {
            item += plen;
            if (*item == '.') item++;
        }
        const char *sep = strstr(item, ": ");
        char *key = sep ? strndup(item, (size_t)(sep - item)) : strdup("@entity");
        if (!key) abort();
        const char *msg = sep ? sep + 2 : item;
        if (!*key) {
            free(key);
            key = strdup("@entity");
        }
        if (!json_object_get(fields, key)) json_object_set_new(fields, key, json_string(msg));
        fprintf(f, "%s%s: %s", i ? "; " : "", key, msg);
        free(key);
    }
    if (fclose(f) != 0) abort();
    res->status = 400;
    res->json = json_pack(
        "{s:i, s:s, s:o, s:o}", "code", 2, "name", "schema violation", "message",
        json_sprintf("%zu schema violation%s (%s)", errs->n, errs->n == 1 ? "" : "s", summary),
        "fields", fields);
    free(summary);
}

static void unique_violation(struct admin_response *res, const char *field, const json_t *value) {
    char *v = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
    res->status = 409;
    res->json = json_pack("{s:i, s:s, s:o, s:{s:O}}", "code", 5, "name",
                          "unique constraint violation", "message",
                          json_sprintf("UNIQUE violation detected on '{%s=%s}'", field, v ? v : ""),
                          "fields", field, value);
    free(v);
}

static void foreign_key_violation(struct admin_response *res, const char *field, const json_t *ref,
                                  enum entity_kind target) {
    char *v = json_dumps(ref, JSON_ENCODE_ANY | JSON_COMPACT);
    res->status = 400;
    res->json =
        json_pack("{s:i, s:s, s:o, s:{s:O}}", "code", 4, "name", "foreign key violation", "message",
                  json_sprintf("the foreign key '%s' does not reference an existing '%s' entity.",
                               v ? v : "", entity_kinds[target].plural),
                  "fields", field, ref);
    free(v);
}

/* What the API shows for a stored entity: itself, except that a certificate lists the names of
 * its snis, as Kong's does. Returns a new reference. */
static json_t *present(struct admin_state *st, enum entity_kind k, json_t *e) {
    if (k == ENTITY_PLUGIN) {
        /* installing completed the config with its defaults, in the installed model's copy */
        long at = model_find(model(st), k, str(e, "id"), NULL, NULL);
        return json_incref(at >= 0 ? json_array_get(model_items(model(st), k), (size_t)at) : e);
    }
    if (k != ENTITY_CERTIFICATE) return json_incref(e);
    json_t *names = json_array();
    size_t i;
    json_t *sni;
    json_array_foreach(model_items(model(st), ENTITY_SNI), i, sni) {
        if (!strcmp(ref_id(sni, "certificate"), str(e, "id")))
            json_array_append(names, json_object_get(sni, "name"));
    }
    json_t *shown = json_copy(e);
    json_object_set_new(shown, "snis", names);
    return shown;
}

/* ---- tags and pagination ------------------------------------------------------------------------
 */

static bool has_tag(const json_t *tags, const char *tag, size_t len) {
    size_t i;
    json_t *t;
    json_array_foreach(tags, i, t) {
        if (json_string_length(t) == len && !strncmp(json_string_value(t), tag, len)) return true;
    }
    return false;
}

/* Kong's filter: "a,b" needs every tag, "a/b" any of them. */
static bool tags_match(const char *filter, const json_t *tags) {
    if (!filter) return true;
    bool any = strchr(filter, '/') != NULL;
    const char *p = filter;
    for (;;) {
        size_t len = strcspn(p, any ? "/" : ",");
        bool hit = has_tag(tags, p, len);
        if (any && hit) return true;
        if (!any && !hit) return false;
        if (!p[len]) return !any;
        p += len + 1;
    }
}

struct page {
    size_t size, start;
    char *tags;
};

/* Reads size/offset/tags; false (and a 400 in res) when they are invalid. */
static bool page_read(const struct admin_request *req, struct admin_response *res,
                      struct page *pg) {
    pg->size = PAGE_DEFAULT;
    pg->start = 0;
    pg->tags = admin_query_param(req, "tags");
    char *v = admin_query_param(req, "size");
    if (v) {
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        bool ok = *v && !*end && errno == 0 && n >= 1 && n <= PAGE_MAX;
        free(v);
        if (!ok) {
            free(pg->tags);
            admin_error(res, 400, "size: must be an integer from 1 to 1000");
            return false;
        }
        pg->size = (size_t)n;
    }
    v = admin_query_param(req, "offset");
    if (v) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        bool ok = *v && !*end && errno == 0;
        free(v);
        if (!ok) {
            free(pg->tags);
            admin_error(res, 400, "offset: invalid (use the value a previous page returned)");
            return false;
        }
        pg->start = (size_t)n;
    }
    return true;
}

/* One page of the entities of `items` that pass the filters, as
 * {"data": [...], "next": ..., "offset": ...}; `base` is the collection's path. */
static void page_answer(struct admin_state *st, enum entity_kind k, struct admin_response *res,
                        const json_t *items, const struct page *pg, const char *base,
                        const char *owner_field, const char *owner_id) {
    json_t *data = json_array();
    size_t n = json_array_size(items), i;
    /* the offset counts positions in the collection, so a page boundary survives filters */
    for (i = pg->start; i < n && json_array_size(data) < pg->size; i++) {
        json_t *e = json_array_get(items, i);
        if (owner_field &&
            strcasecmp(ref_id(e, owner_field) ? ref_id(e, owner_field) : "", owner_id))
            continue;
        if (!tags_match(pg->tags, json_object_get(e, "tags"))) continue;
        json_array_append_new(data, present(st, k, e));
    }
    res->status = 200;
    if (i < n) {
        char offset[32];
        snprintf(offset, sizeof offset, "%zu", i);
        res->json = json_pack("{s:o, s:o, s:s}", "data", data, "next",
                              json_sprintf("%s?offset=%s&size=%zu%s%s", base, offset, pg->size,
                                           pg->tags ? "&tags=" : "", pg->tags ? pg->tags : ""),
                              "offset", offset);
    } else {
        res->json = json_pack("{s:o, s:n}", "data", data, "next");
    }
    free(pg->tags);
}

/* ---- lookups
 * ------------------------------------------------------------------------------------- */

/* The owner named by the first path parameter of a nested endpoint, or -1 after a 404. */
static long find_owner(struct admin_state *st, const struct admin_endpoint *ep,
                       const struct admin_request *req, struct admin_response *res) {
    long i = model_find(model(st), ep->owner, req->params[0], NULL, NULL);
    if (i < 0) admin_error(res, 404, "Not found");
    return i;
}

static const char *owner_id(struct admin_state *st, const struct admin_endpoint *ep, long owner) {
    return str(json_array_get(model_items(model(st), ep->owner), (size_t)owner), "id");
}

/* The entity the last path parameter names (within its owner for nested paths), or -1. */
static long find_entity(struct admin_state *st, const struct admin_endpoint *ep,
                        const struct admin_request *req, struct admin_response *res, long *owner) {
    *owner = -1;
    if (ep->owner_field) {
        *owner = find_owner(st, ep, req, res);
        if (*owner < 0) return -2;
    }
    const char *key = req->params[req->n_params - 1];
    return model_find(model(st), ep->kind, key, ep->owner_field,
                      ep->owner_field ? owner_id(st, ep, *owner) : NULL);
}

/* ---- reads
 * ---------------------------------------------------------------------------------------- */

void admin_list_entities(struct admin_state *st, const struct admin_request *req,
                         struct admin_response *res) {
    const struct admin_endpoint *ep = req->endpoint;
    struct page pg;
    long owner = -1;
    if (ep->owner_field && (owner = find_owner(st, ep, req, res)) < 0) return;
    if (!page_read(req, res, &pg)) return;
    char base[600];
    if (ep->owner_field)
        snprintf(base, sizeof base, "/%s/%s/%s", entity_kinds[ep->owner].plural, req->params[0],
                 entity_kinds[ep->kind].plural);
    else
        snprintf(base, sizeof base, "/%s", entity_kinds[ep->kind].plural);
    page_answer(st, ep->kind, res, model_items(model(st), ep->kind), &pg, base, ep->owner_field,
                ep->owner_field ? owner_id(st, ep, owner) : NULL);
}

void admin_get_entity(struct admin_state *st, const struct admin_request *req,
                      struct admin_response *res) {
    long owner, i = find_entity(st, req->endpoint, req, res, &owner);
    if (i == -2) return;
    if (i < 0) {
        admin_error(res, 404, "Not found");
        return;
    }
    res->status = 200;
    res->json = present(st, req->endpoint->kind,
                        json_array_get(model_items(model(st), req->endpoint->kind), (size_t)i));
}

/* GET /routes/{r}/service */
void admin_get_route_service(struct admin_state *st, const struct admin_request *req,
                             struct admin_response *res) {
    long r = model_find(model(st), ENTITY_ROUTE, req->params[0], NULL, NULL);
    if (r < 0) {
        admin_error(res, 404, "Not found");
        return;
    }
    json_t *route = json_array_get(model_items(model(st), ENTITY_ROUTE), (size_t)r);
    long s = model_find(model(st), ENTITY_SERVICE, ref_id(route, "service"), NULL, NULL);
    res->status = 200;
    res->json = json_incref(json_array_get(model_items(model(st), ENTITY_SERVICE), (size_t)s));
}

/* The running configuration's upstream with id `uid`, or NULL. */
static const struct upstream *running_upstream(struct admin_state *st, const char *uid) {
    const struct config *c = (*st->snapshot)->config;
    for (size_t i = 0; i < c->n_upstreams; i++)
        if (!strcmp(c->upstreams[i].id, uid)) return &c->upstreams[i];
    return NULL;
}

/* GET /upstreams/{u}/health: each target as the entity, with Kong's "health": HEALTHCHECKS_OFF
 * while the upstream's checks are off, else HEALTHY or UNHEALTHY (upstream/health.h). */
void admin_get_upstream_health(struct admin_state *st, const struct admin_request *req,
                               struct admin_response *res) {
    long u = model_find(model(st), ENTITY_UPSTREAM, req->params[0], NULL, NULL);
    if (u < 0) {
        admin_error(res, 404, "Not found");
        return;
    }
    const char *uid = str(json_array_get(model_items(model(st), ENTITY_UPSTREAM), (size_t)u), "id");
    const struct upstream *up = running_upstream(st, uid);
    json_t *data = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(model_items(model(st), ENTITY_TARGET), i, t) {
        if (strcmp(ref_id(t, "upstream"), uid)) continue;
        const char *health = "HEALTHCHECKS_OFF";
        for (size_t k = 0; up && k < up->n_targets; k++)
            if (!strcmp(up->targets[k].id, str(t, "id")))
                health = health_target_state(up, &up->targets[k]);
        json_t *copy = json_copy(t);
        json_object_set_new(copy, "health", json_string(health));
        json_array_append_new(data, copy);
    }
    res->status = 200;
    res->json =
        json_pack("{s:o, s:n, s:{s:s}}", "data", data, "next", "node_id", "id", st->node_id);
}

/* POST /upstreams/{u}/targets/{t}/healthy and .../unhealthy (Kong): sets the target's health in
 * this node at once and clears its counters; checks then go on from there (an active check may
 * change it back). The target is named by id or by "host:port". Kong answers 204; with the
 * upstream's checks off there is no health to set, which is a 400 here rather than a silent
 * success. */
static void set_target_health(struct admin_state *st, const struct admin_request *req,
                              struct admin_response *res, bool healthy) {
    long u = model_find(model(st), ENTITY_UPSTREAM, req->params[0], NULL, NULL);
    if (u < 0) {
        admin_error(res, 404, "Not found");
        return;
    }
    const char *uid = str(json_array_get(model_items(model(st), ENTITY_UPSTREAM), (size_t)u), "id");
    long t = model_find(model(st), ENTITY_TARGET, req->params[1], "upstream", uid);
    if (t < 0) {
        admin_error(res, 404, "Not found");
        return;
    }
    const char *tid = str(json_array_get(model_items(model(st), ENTITY_TARGET), (size_t)t), "id");
    const struct upstream *up = running_upstream(st, uid);
    for (size_t k = 0; up && k < up->n_targets; k++) {
        if (strcmp(up->targets[k].id, tid)) continue;
        if (!up->targets[k].health) break;
        health_set(up->targets[k].health, healthy);
        log_notice("admin: upstream %s: target %s set %s", up->name, up->targets[k].target,
                   healthy ? "healthy" : "unhealthy");
        res->status = 204;
        return;
    }
    admin_error(res, 400,
                "health checks are off for this upstream (set an active interval or a passive "
                "failure threshold in its healthchecks)");
}

void admin_post_target_healthy(struct admin_state *st, const struct admin_request *req,
                               struct admin_response *res) {
    set_target_health(st, req, res, true);
}

void admin_post_target_unhealthy(struct admin_state *st, const struct admin_request *req,
                                 struct admin_response *res) {
    set_target_health(st, req, res, false);
}

/* /schemas/{plural} serves schemas/{singular}.json, as compiled. */
void admin_get_schema(struct admin_state *st, const struct admin_request *req,
                      struct admin_response *res) {
    (void)st;
    int k = entity_kind_find(req->params[0], false);
    if (k < 0) {
        admin_error(res, 404, "No entity named that");
        return;
    }
    struct errlist errs;
    errlist_init(&errs);
    const struct schema *s = entity_schema((enum entity_kind)k, &errs);
    errlist_free(&errs);
    if (!s) {
        admin_error(res, 500, "schema unavailable");
        return;
    }
    res->status = 200;
    res->json = json_incref((json_t *)schema_document(s));
}

/* /schemas/plugins/{name}: the config schema of an enabled plugin. */
void admin_get_plugin_schema(struct admin_state *st, const struct admin_request *req,
                             struct admin_response *res) {
    const struct plugin_def *p =
        plugin_catalog_find((*st->snapshot)->config->plugins, req->params[0]);
    if (!p) {
        res->status = 404;
        res->json =
            json_pack("{s:o}", "message", json_sprintf("No plugin named '%s'", req->params[0]));
        return;
    }
    res->status = 200;
    res->json = json_incref((json_t *)schema_document(p->schema));
}

/* ---- writes
 * ----------------------------------------------------------------------------------------- */

/* The request body as a JSON object, or NULL after answering 415 or 400. */
json_t *admin_read_json(const struct admin_request *req, struct admin_response *res) {
    if (req->body_len == 0) return json_object(); /* Kong: the schema says what is missing */
    if (!req->content_type || strncasecmp(req->content_type, "application/json", 16) != 0 ||
        (req->content_type[16] && req->content_type[16] != ';' && req->content_type[16] != ' ')) {
        res->status = 415;
        res->json = json_pack("{s:s}", "message", "Content-Type must be application/json");
        return NULL;
    }
    json_error_t jerr;
    json_t *v = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v) {
        res->status = 400;
        res->json = json_pack("{s:o}", "message",
                              json_sprintf("malformed JSON at byte %d (line %d, column %d): %s",
                                           jerr.position, jerr.line, jerr.column, jerr.text));
        return NULL;
    }
    if (!json_is_object(v)) {
        struct errlist errs;
        errlist_init(&errs);
        errlist_addf(&errs, NULL, "expected an object");
        admin_schema_violation(res, &errs, NULL);
        errlist_free(&errs);
        json_decref(v);
        return NULL;
    }
    return v;
}

static bool writes_allowed(struct admin_state *st, const char *verb, enum entity_kind k,
                           struct admin_response *res) {
    if (st->has_store) return true;
    res->status = 405;
    res->json = json_pack(
        "{s:o}", "message",
        json_sprintf("cannot %s '%s' entities when running without a store (weir.store is not "
                     "set); replace the whole configuration with POST /config",
                     verb, entity_kinds[k].plural));
    return false;
}

/* 128 random bits as 32 hex characters. */
static json_t *random_hex(void) {
    unsigned char raw[16];
    char hex[33];
    if (RAND_bytes(raw, sizeof raw) != 1) abort();
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    return json_string(hex);
}

/* Kong generates what a credential leaves out: a key, and an HMAC secret for HS* algorithms. */
static void fill_credential(enum entity_kind k, json_t *e) {
    if (k != ENTITY_JWT_SECRET && k != ENTITY_KEYAUTH_CREDENTIAL) return;
    if (!json_is_string(json_object_get(e, "key"))) json_object_set_new(e, "key", random_hex());
    const char *alg = str(e, "algorithm");
    if (k == ENTITY_JWT_SECRET && alg && alg[0] == 'H' &&
        !json_is_string(json_object_get(e, "secret")))
        json_object_set_new(e, "secret", random_hex());
}

/* Validates `input` (a user's entity) and turns it into the stored entity, references resolved
 * against the current model. Answers 400 and returns NULL on any problem. */
static json_t *prepare(struct admin_state *st, enum entity_kind k, json_t *input,
                       struct admin_response *res) {
    struct errlist errs;
    errlist_init(&errs);
    const struct schema *schema = entity_schema(k, &errs);
    if (schema) schema_validate(schema, input, &errs);
    if (errs.n == 0) entity_check(k, input, "", &errs);
    if (errs.n) {
        admin_schema_violation(res, &errs, NULL);
        errlist_free(&errs);
        return NULL;
    }
    errlist_free(&errs);
    json_t *e = entity_normalize(k, input, (long long)time(NULL));
    fill_credential(k, e);
    for (int r = 0; r < entity_kinds[k].n_refs; r++) {
        const struct entity_ref *ref = &entity_kinds[k].refs[r];
        json_t *given = json_object_get(input, ref->field);
        if (!given || json_is_null(given)) continue;
        char what[300];
        long at = model_resolve_ref(model(st), ref->kind, given, what, sizeof what);
        if (at < 0) {
            foreign_key_violation(res, ref->field, given, ref->kind);
            json_decref(e);
            return NULL;
        }
        json_t *target = json_array_get(model_items(model(st), ref->kind), (size_t)at);
        json_object_set_new(e, ref->field, json_pack("{s:s}", "id", str(target, "id")));
    }
    return e;
}

/* Checks a required reference the body may leave out (a top-level route needs a service). */
static bool required_refs_present(enum entity_kind k, const json_t *e, struct admin_response *res) {
    for (int r = 0; r < entity_kinds[k].n_refs; r++) {
        const struct entity_ref *ref = &entity_kinds[k].refs[r];
        if (ref->required && !ref_id(e, ref->field)) {
            struct errlist errs;
            errlist_init(&errs);
            errlist_addf(&errs, ref->field, "required field missing");
            admin_schema_violation(res, &errs, NULL);
            errlist_free(&errs);
            return false;
        }
    }
    return true;
}

/* A model equal to the current one except that kind k's array is `items`. */
static json_t *model_with(struct admin_state *st, enum entity_kind k, json_t *items) {
    json_t *m = json_copy((json_t *)model(st));
    json_object_set_new(m, entity_kinds[k].plural, items);
    return m;
}

/* Compiles and installs `m`. On failure answers 400 (problems found in the entity at index
 * `at` of kind k are reported as its fields) or 500, and nothing changes. */
static bool install(struct admin_state *st, json_t *m, enum entity_kind k, long at,
                    struct admin_response *res) {
    struct errlist errs;
    errlist_init(&errs);
    enum commit_result r = st->commit(st->commit_ctx, m, &errs);
    if (r == COMMIT_FAILED) {
        res->status = 500;
        res->json = json_pack("{s:s, s:s}", "message", "the change could not be saved", "reason",
                              errs.n ? errs.items[0] : "");
    } else if (r == COMMIT_INVALID) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%s[%ld]", entity_kinds[k].plural, at);
        admin_schema_violation(res, &errs, prefix);
    }
    errlist_free(&errs);
    json_decref(m);
    return r == COMMIT_OK;
}

/* The snis array after certificate `e` gets exactly the names in `names` (null: none); the
 * names it already had keep their sni entities. NULL after a 409 when a name belongs to another
 * certificate or is listed twice. */
static json_t *snis_for(struct admin_state *st, const json_t *e, const json_t *names,
                        struct admin_response *res) {
    const char *cid = str(e, "id");
    json_t *old = model_items(model(st), ENTITY_SNI), *mine = json_object();
    json_t *items = json_array();
    size_t i;
    json_t *sni, *name;
    json_array_foreach(old, i, sni) {
        if (strcmp(ref_id(sni, "certificate"), cid) != 0)
            json_array_append(items, sni);
        else
            json_object_set(mine, str(sni, "name"), sni);
    }
    bool ok = true;
    json_array_foreach(names, i, name) {
        const char *n = json_string_value(name);
        size_t j;
        json_array_foreach(items, j, sni) {
            if (!strcmp(str(sni, "name"), n)) {
                unique_violation(res, "snis", name);
                ok = false;
                break;
            }
        }
        if (!ok) break;
        json_t *kept = json_object_get(mine, n);
        if (kept) {
            json_array_append(items, kept);
            continue;
        }
        json_t *input = json_pack("{s:O}", "name", name);
        json_t *created = entity_normalize(ENTITY_SNI, input, (long long)time(NULL));
        json_decref(input);
        char id[37];
        uuid_v4(id);
        json_object_set_new(created, "id", json_string(id));
        json_object_set_new(created, "certificate", json_pack("{s:s}", "id", cid));
        json_array_append_new(items, created);
    }
    json_decref(mine);
    if (!ok) {
        json_decref(items);
        return NULL;
    }
    return items;
}

/* Inserts or replaces (at index `at`, -1: append) the prepared entity `e` after the uniqueness
 * checks; answers `status` with the stored entity. Takes `e` and `snis` (a certificate's new
 * names, NULL to leave its snis as they are). */
static void store_entity(struct admin_state *st, enum entity_kind k, json_t *e, long at, int status,
                         struct admin_response *res, json_t *snis) {
    json_t *sni_items = NULL;
    if (k == ENTITY_CERTIFICATE && snis) {
        sni_items = snis_for(st, e, snis, res);
        json_decref(snis);
        if (!sni_items) {
            json_decref(e);
            return;
        }
    }
    const char *field = NULL;
    long clash = model_conflict(model(st), k, e, at, &field, st->conflicts);
    if (clash >= 0) {
        json_t *value = json_object_get(e, field);
        if (!strcmp(field, "snis")) {
            json_t *other = json_array_get(model_items(model(st), k), (size_t)clash);
            const char *name = NULL;
            size_t i, j;
            json_t *x, *y;
            json_array_foreach(value, i, x) {
                json_array_foreach(json_object_get(other, "snis"), j, y) {
                    if (!name && json_equal(x, y)) name = json_string_value(x);
                }
            }
            res->status = 409;
            res->json =
                json_pack("{s:i, s:s, s:o, s:{s:s}}", "code", 5, "name",
                          "unique constraint violation", "message",
                          json_sprintf("sni \"%s\" is already used by tls_passthrough route %s",
                                       name ? name : "", str(other, "id")),
                          "fields", "snis", name ? name : "");
        } else if (!strcmp(field, "paths")) {
            json_t *other = json_array_get(model_items(model(st), k), (size_t)clash);
            res->status = 409;
            res->json = json_pack(
                "{s:i, s:s, s:o, s:{s:s}}", "code", 5, "name", "unique constraint violation",
                "message",
                json_sprintf("route %s already matches the same paths, hosts, methods and headers",
                             str(other, "id")),
                "fields", "id", str(other, "id"));
        } else {
            unique_violation(res, field, value ? value : json_null());
        }
        json_decref(e);
        json_decref(sni_items);
        return;
    }
    json_t *items = json_copy(model_items(model(st), k));
    if (at < 0) {
        at = (long)json_array_size(items);
        json_array_append(items, e);
    } else {
        json_array_set(items, (size_t)at, e);
    }
    json_t *next = model_with(st, k, items);
    if (sni_items) json_object_set_new(next, entity_kinds[ENTITY_SNI].plural, sni_items);
    if (install(st, next, k, at, res)) {
        res->status = status;
        res->json = present(st, k, e); /* the model installed is now the current one */
    }
    json_decref(e);
}

/* Sets the owner reference of a nested endpoint into `input` (after validation: a target's schema
 * has no `upstream`, since nesting implies it). */
static void set_owner(struct admin_state *st, const struct admin_endpoint *ep, long owner,
                      json_t *e) {
    json_object_set_new(e, ep->owner_field, json_pack("{s:s}", "id", owner_id(st, ep, owner)));
}

/* prepare() for a created or upserted entity, plus what it still needs: its owner from the
 * path, its required references, an id. Takes `input`. A certificate's snis shorthand (input
 * only, so gone from the prepared entity) comes back in *snis. NULL after answering. */
static json_t *prepare_new(struct admin_state *st, const struct admin_endpoint *ep, long owner,
                           json_t *input, json_t **snis, struct admin_response *res) {
    *snis = ep->kind == ENTITY_CERTIFICATE ? json_incref(json_object_get(input, "snis")) : NULL;
    json_t *e = prepare(st, ep->kind, input, res);
    json_decref(input);
    if (e && ep->owner_field) set_owner(st, ep, owner, e);
    if (e && !required_refs_present(ep->kind, e, res)) {
        json_decref(e);
        e = NULL;
    }
    if (!e) {
        json_decref(*snis);
        *snis = NULL;
        return NULL;
    }
    if (!str(e, "id")) {
        char id[37];
        uuid_v4(id);
        json_object_set_new(e, "id", json_string(id));
    }
    return e;
}

void admin_create_entity(struct admin_state *st, const struct admin_request *req,
                         struct admin_response *res) {
    const struct admin_endpoint *ep = req->endpoint;
    if (!writes_allowed(st, "create", ep->kind, res)) return;
    long owner = -1;
    if (ep->owner_field && (owner = find_owner(st, ep, req, res)) < 0) return;
    json_t *input = admin_read_json(req, res);
    if (!input) return;
    if (ep->owner_field) json_object_del(input, ep->owner_field); /* the path says it */
    json_t *snis;
    json_t *e = prepare_new(st, ep, owner, input, &snis, res);
    if (!e) return;
    store_entity(st, ep->kind, e, -1, 201, res, snis);
}

/* The stored entity as input again: what PATCH merges into and validates. */
static json_t *as_input(enum entity_kind k, const json_t *stored) {
    json_t *in = json_copy((json_t *)stored);
    /* a nested kind's schema has no field for its owner: the path says it */
    if (entity_kinds[k].nest_key) json_object_del(in, entity_kinds[k].refs[0].field);
    return in;
}

void admin_update_entity(struct admin_state *st, const struct admin_request *req,
                         struct admin_response *res) {
    const struct admin_endpoint *ep = req->endpoint;
    if (!writes_allowed(st, "update", ep->kind, res)) return;
    long owner, at = find_entity(st, ep, req, res, &owner);
    if (at == -2) return;
    if (at < 0) {
        admin_error(res, 404, "Not found");
        return;
    }
    json_t *body = admin_read_json(req, res);
    if (!body) return;
    const json_t *stored = json_array_get(model_items(model(st), ep->kind), (size_t)at);
    json_t *input = as_input(ep->kind, stored);
    if (ep->kind == ENTITY_SERVICE && json_object_get(body, "url")) {
        /* url stands for these four together */
        static const char *const parts[] = {"protocol", "host", "port", "path"};
        for (size_t i = 0; i < 4; i++)
            json_object_del(input, parts[i]);
    }
    if (ep->owner_field) json_object_del(body, ep->owner_field);
    json_t *snis =
        ep->kind == ENTITY_CERTIFICATE ? json_incref(json_object_get(body, "snis")) : NULL;
    json_object_update(input, body);
    json_object_del(input, "updated_at");
    json_object_set(input, "id", json_object_get(stored, "id")); /* ids never change */
    json_decref(body);
    json_t *e = prepare(st, ep->kind, input, res);
    json_decref(input);
    if (!e) {
        json_decref(snis);
        return;
    }
    if (entity_kinds[ep->kind].nest_key) {
        const char *field = entity_kinds[ep->kind].refs[0].field;
        json_object_set(e, field, json_object_get(stored, field));
    }
    json_object_set(e, "created_at", json_object_get(stored, "created_at"));
    store_entity(st, ep->kind, e, at, 200, res, snis);
}

void admin_upsert_entity(struct admin_state *st, const struct admin_request *req,
                         struct admin_response *res) {
    const struct admin_endpoint *ep = req->endpoint;
    if (!writes_allowed(st, "update", ep->kind, res)) return;
    long owner, at = find_entity(st, ep, req, res, &owner);
    if (at == -2) return;
    json_t *input = admin_read_json(req, res);
    if (!input) return;
    const char *key = req->params[req->n_params - 1];
    const json_t *stored =
        at >= 0 ? json_array_get(model_items(model(st), ep->kind), (size_t)at) : NULL;
    if (ep->owner_field) json_object_del(input, ep->owner_field);
    /* The path names the entity: by id, or by its endpoint key (Kong's upsert by name). */
    if (stored)
        json_object_set(input, "id", json_object_get(stored, "id"));
    else if (uuid_valid(key))
        json_object_set_new(input, "id", json_string(key));
    if (!uuid_valid(key) && entity_kinds[ep->kind].endpoint_key)
        json_object_set_new(input, entity_kinds[ep->kind].endpoint_key, json_string(key));
    json_object_del(input, "created_at");
    json_object_del(input, "updated_at");
    json_t *snis;
    json_t *e = prepare_new(st, ep, owner, input, &snis, res);
    if (!e) return;
    if (stored) json_object_set(e, "created_at", json_object_get(stored, "created_at"));
    store_entity(st, ep->kind, e, at, 200, res, snis);
}

/* Marks entity `i` of kind k and, through owner references, everything it owns. */
static void mark_owned(const json_t *m, enum entity_kind k, size_t i, bool *dead[ENTITY_KINDS]) {
    dead[k][i] = true;
    const char *id = str(json_array_get(model_items(m, k), i), "id");
    for (int other = 0; other < ENTITY_KINDS; other++) {
        for (int r = 0; r < entity_kinds[other].n_refs; r++) {
            const struct entity_ref *ref = &entity_kinds[other].refs[r];
            if (ref->kind != k || !ref->owner) continue;
            size_t j;
            json_t *e;
            json_array_foreach(model_items(m, other), j, e) {
                if (!dead[other][j] && ref_id(e, ref->field) && !strcmp(ref_id(e, ref->field), id))
                    mark_owned(m, other, j, dead);
            }
        }
    }
}

void admin_delete_entity(struct admin_state *st, const struct admin_request *req,
                         struct admin_response *res) {
    const struct admin_endpoint *ep = req->endpoint;
    if (!writes_allowed(st, "delete", ep->kind, res)) return;
    long owner, at = find_entity(st, ep, req, res, &owner);
    if (at == -2) return;
    if (at < 0) { /* Kong: deleting what is not there succeeds */
        res->status = 204;
        return;
    }
    const json_t *m = model(st);
    char *cascade = admin_query_param(req, "cascade");
    bool cascading = cascade && !strcmp(cascade, "true");
    free(cascade);
    bool *dead[ENTITY_KINDS];
    for (int k = 0; k < ENTITY_KINDS; k++)
        dead[k] = calloc(json_array_size(model_items(m, k)) + 1, sizeof(bool));
    mark_owned(m, ep->kind, (size_t)at, dead);
    /* Entities that need what is deleted (routes of a service) block it, unless cascading. */
    const char *id = str(json_array_get(model_items(m, ep->kind), (size_t)at), "id");
    json_t *blockers = json_array();
    const char *blocker_kind = NULL;
    for (int other = 0; other < ENTITY_KINDS; other++) {
        for (int r = 0; r < entity_kinds[other].n_refs; r++) {
            const struct entity_ref *ref = &entity_kinds[other].refs[r];
            if (ref->kind != ep->kind || ref->owner) continue;
            size_t j;
            json_t *e;
            json_array_foreach(model_items(m, other), j, e) {
                if (dead[other][j] || !ref_id(e, ref->field) || strcmp(ref_id(e, ref->field), id))
                    continue;
                if (cascading) {
                    mark_owned(m, other, j, dead);
                } else {
                    json_array_append_new(blockers, json_string(str(e, "id")));
                    blocker_kind = entity_kinds[other].plural;
                }
            }
        }
    }
    if (json_array_size(blockers)) {
        res->status = 400;
        res->json = json_pack(
            "{s:i, s:s, s:o, s:{s:s, s:O}}", "code", 4, "name", "foreign key violation", "message",
            json_sprintf("an existing '%s' entity references this '%s' entity (delete them first, "
                         "or add ?cascade=true)",
                         blocker_kind, entity_kinds[ep->kind].plural),
            "fields", "@referenced_by", blocker_kind, "ids", blockers);
    } else {
        json_t *next = json_copy((json_t *)m);
        for (int k = 0; k < ENTITY_KINDS; k++) {
            json_t *items = json_array();
            size_t j;
            json_t *e;
            json_array_foreach(model_items(m, k), j, e) {
                if (!dead[k][j]) json_array_append(items, e);
            }
            json_object_set_new(next, entity_kinds[k].plural, items);
        }
        if (install(st, next, ep->kind, -1, res)) res->status = 204;
    }
    json_decref(blockers);
    for (int k = 0; k < ENTITY_KINDS; k++)
        free(dead[k]);
}
