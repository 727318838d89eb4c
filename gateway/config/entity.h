/* entity: the kinds of configuration entity and the schemas that define them.
 *
 * One table names every kind (service, route, upstream, target, consumer, plugin, certificate,
 * sni, ca_certificate, jwt_secret, keyauth_credential) with its plural (the admin API path and the
 * declarative key), the field an admin path may use instead of the id (`name`, `username`, ...),
 * and its references to other entities. Each kind's JSON Schema is schemas/<kind>.json; the whole
 * declarative file is schemas/declarative.json. They are compiled once, on first use, from the data
 * directory (paths_data_dir()); after that they are immutable and any thread may use them. When
 * they cannot be read, every call reports the same error: a missing or broken schema is a start-up
 * error, never a silently skipped check. */
#ifndef WEIR_ENTITY_H
#define WEIR_ENTITY_H

#include <stdbool.h>

#include "config/schema.h"
#include "core/errlist.h"

enum entity_kind {
    ENTITY_SERVICE,
    ENTITY_ROUTE,
    ENTITY_UPSTREAM,
    ENTITY_TARGET,
    ENTITY_CONSUMER,
    ENTITY_PLUGIN,
    ENTITY_CERTIFICATE,
    ENTITY_SNI,
    ENTITY_CA_CERTIFICATE,
    ENTITY_JWT_SECRET,
    ENTITY_KEYAUTH_CREDENTIAL,
    ENTITY_KINDS
};

/* A field of an entity that holds {"id": ...} of another entity. */
struct entity_ref {
    const char *field;     /* "service" */
    enum entity_kind kind; /* what it points at */
    bool required;         /* a route needs its service; a plugin's scopes are optional */
    bool owner;            /* deleting the target deletes this entity (targets of an upstream) */
};

struct entity_kind_info {
    const char *name;   /* "service": schema file and messages */
    const char *plural; /* "services": admin path, declarative and model key */
    /* Field an admin path may name instead of the id ("name"), NULL when only ids. */
    const char *endpoint_key;
    /* Fields that must be unique among entities of this kind (besides id), NULL-terminated. */
    const char *unique[3];
    struct entity_ref refs[3];
    int n_refs;
    /* Input-only fields: accepted by the schema, never stored ("url" is split). */
    const char *input_only[4];
    /* Set for kinds that live inside their owner (refs[0]) in the declarative form: the owner's
     * array holding them ("targets" in an upstream). Their own schema has no field for the
     * owner: nesting, or the admin path, says which it is. */
    const char *nest_key;
};

extern const struct entity_kind_info entity_kinds[ENTITY_KINDS];

/* The kind whose plural (or singular when `singular`) is `name`, or -1. */
int entity_kind_find(const char *name, bool singular);

/* The compiled schema of one kind / of the declarative file; NULL with the reason in errs when
 * the schema files could not be loaded. */
const struct schema *entity_schema(enum entity_kind k, struct errlist *errs);
const struct schema *entity_declarative_schema(struct errlist *errs);
/* The compiled schema of the `weir` server settings object. */
const struct schema *entity_weir_schema(struct errlist *errs);

#endif
