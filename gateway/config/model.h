/* model: the configuration's entities as JSON, flat, in Kong's output shape.
 *
 * A model is a JSON object with one array per entity kind, keyed by the kind's plural
 * ("services", "routes", ...), in creation order. Each entity is complete: every field of its
 * schema except input-only ones (a service's `url`) is present, null when unset; references are
 * {"id": ...}; ids are lower-case UUIDs; `created_at`/`updated_at` are Unix seconds; hosts and
 * upstream names are lower-cased, methods upper-cased, header names lower-cased, a target is
 * "host:port". The admin API serves these objects as they are, the store persists model_export()
 * of them, and config_build() compiles them into struct config.
 *
 * Every input passes the schema validator first (declarative.json for a whole file,
 * schemas/<kind>.json for one entity); the functions here assume valid shapes and add the rules a
 * schema cannot state: ids derived for entities without one, references resolved, uniqueness
 * across entities. Pure data on jansson values; the caller owns what it gets and must not change a
 * model another thread may read (changes build a new model from shallow copies).
 *
 * Origins say where each entity came from, for messages: an object with one array per kind
 * (parallel to the model's) of {"path": "services[0].routes[1]", "derived": "name"|"key"|null}.
 * Without origins an entity is named "<plural>[<index>]". */
#ifndef WEIR_MODEL_H
#define WEIR_MODEL_H

#include <jansson.h>
#include <stdbool.h>

#include "config/entity.h"
#include "core/errlist.h"

/* An empty model: every kind present with an empty array. */
json_t *model_new(void);
/* The array of one kind (borrowed). */
json_t *model_items(const json_t *model, enum entity_kind k);

/* Flattens a declarative document that passed declarative.json into a model (origins into
 * *origins when not NULL). Entities without created_at/updated_at get `now`. Returns NULL with
 * every problem in errs (unresolved references, duplicates). */
json_t *model_from_declarative(const json_t *doc, long long now, json_t **origins,
                               struct errlist *errs);

/* The stored form of one entity that passed schemas/<kind>.json: input-only fields split or
 * dropped, null members given their defaults, absent fields null, values normalised, timestamps
 * filled from `now` when unset. References are copied as given (resolve them with
 * model_resolve_ref). Returns a new object. */
json_t *entity_normalize(enum entity_kind k, const json_t *input, long long now);

/* Rules inside one input entity that its schema cannot state (a route's header names must differ
 * case-insensitively); problems are reported under `path` ("" for the entity itself). */
bool entity_check(enum entity_kind k, const json_t *input, const char *path, struct errlist *errs);

/* The deterministic UUIDv5 an entity gets without an id (from its name, or from what it matches
 * on); false when the entity has nothing to derive one from (then a random id is given).
 * `derived` says which ("name" or "key"). */
bool entity_derive_id(enum entity_kind k, const json_t *entity, char out[37], const char **derived);

/* Index of the entity of kind k whose id (or endpoint key: name, username, target) is `key`,
 * within the entities whose `owner_field` is {"id": owner_id} when owner_field is set; -1. */
long model_find(const json_t *model, enum entity_kind k, const char *key, const char *owner_field,
                const char *owner_id);

/* Resolves a reference as written in input ("name-or-id", {"id": ...} or {"name": ...}) to the
 * referenced entity's index, or -1 (with what was looked for in `what`, e.g. `named "x"`). */
long model_resolve_ref(const json_t *model, enum entity_kind k, const json_t *ref, char *what,
                       size_t what_len);

/* Checks the whole model: ids unique per kind, unique fields unique, composite keys (a target's
 * host:port within its upstream; a route's paths+hosts+methods+headers), every reference pointing
 * at an existing entity. Every problem goes to errs, named through origins. */
bool model_check(const json_t *model, const json_t *origins, struct errlist *errs);

/* What model_conflict() looked up in the entities of the models it checked, kept so that the next
 * check, on a model sharing most entities with the last (an admin write's), looks up only the new
 * ones: at 10,000 routes that is the difference between comparing C strings and 50,000 JSON
 * member lookups per write. Holds references to the arrays it describes. One owner; not
 * thread-safe. */
struct model_conflict_cache;
struct model_conflict_cache *model_conflict_cache_new(void);
void model_conflict_cache_free(struct model_conflict_cache *c);

/* A unique-key clash of `entity` (kind k) with another entity than the one at index `self`
 * (-1: none): returns the other's index and sets *field to the clashing field ("name", "id",
 * "target", "paths", "snis"); -1 when there is none. `cache` may be NULL. */
long model_conflict(const json_t *model, enum entity_kind k, const json_t *entity, long self,
                    const char **field, struct model_conflict_cache *cache);

/* For a nested kind (targets, credentials, snis): owner id -> the positions of its entities in
 * model_items(model, k), in order, as the declarative form nests them. NULL for other kinds. */
json_t *model_nested_index(const json_t *model, enum entity_kind k);

/* The model as a declarative document ("_format_version" "3.0"; routes top-level naming their
 * service by id; targets nested in their upstream): what GET /config answers, what the store
 * writes, and what model_from_declarative() reads back unchanged. */
json_t *model_export(const json_t *model);

/* "<plural>[<index>]" or the origin path of entity i of kind k. */
const char *model_origin(const json_t *origins, enum entity_kind k, size_t i, char *buf,
                         size_t len);

#endif
