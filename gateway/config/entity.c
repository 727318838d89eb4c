#include "config/entity.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/paths.h"

/* clang-format off */
const struct entity_kind_info entity_kinds[ENTITY_KINDS] = {
    [ENTITY_SERVICE] = {"service", "services", "name", {"name"}, {{0}}, 0, {"url", "plugins"}},
    [ENTITY_ROUTE] = {"route", "routes", "name", {"name"},
                      {{"service", ENTITY_SERVICE, true, false}}, 1, {"plugins"}},
    [ENTITY_UPSTREAM] = {"upstream", "upstreams", "name", {"name"}, {{0}}, 0, {0}},
    [ENTITY_TARGET] = {"target", "targets", "target", {0},
                       {{"upstream", ENTITY_UPSTREAM, true, true}}, 1, {0}, "targets"},
    [ENTITY_CONSUMER] = {"consumer", "consumers", "username", {"username", "custom_id"},
                         {{0}}, 0, {"plugins"}},
    [ENTITY_PLUGIN] = {"plugin", "plugins", NULL, {0},
                       {{"service", ENTITY_SERVICE, false, true},
                        {"route", ENTITY_ROUTE, false, true},
                        {"consumer", ENTITY_CONSUMER, false, true}}, 3, {0}},
    [ENTITY_CERTIFICATE] = {"certificate", "certificates", NULL, {0}, {{0}}, 0, {"snis"}},
    [ENTITY_SNI] = {"sni", "snis", "name", {"name"},
                    {{"certificate", ENTITY_CERTIFICATE, true, true}}, 1, {0}, "snis"},
    [ENTITY_CA_CERTIFICATE] = {"ca_certificate", "ca_certificates", NULL, {"cert_digest"}, {{0}},
                               0, {0}},
    [ENTITY_JWT_SECRET] = {"jwt_secret", "jwt_secrets", "key", {"key"},
                           {{"consumer", ENTITY_CONSUMER, true, true}}, 1, {0}, "jwt_secrets"},
    [ENTITY_KEYAUTH_CREDENTIAL] = {"keyauth_credential", "keyauth_credentials", "key", {"key"},
                                   {{"consumer", ENTITY_CONSUMER, true, true}}, 1, {0},
                                   "keyauth_credentials"},
};
/* clang-format on */

int entity_kind_find(const char *name, bool singular) {
    for (int k = 0; k < ENTITY_KINDS; k++)
        if (!strcmp(singular ? entity_kinds[k].name : entity_kinds[k].plural, name)) return k;
    return -1;
}

static struct {
    pthread_once_t once;
    struct schema *kinds[ENTITY_KINDS], *declarative, *weir;
    struct errlist errs; /* why loading failed; empty on success */
} registry = {.once = PTHREAD_ONCE_INIT};

static struct schema *load_one(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/schemas/%s.json", dir, name);
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        errlist_addf(&registry.errs, path, "line %d column %d: %s", jerr.line, jerr.column,
                     jerr.text);
        return NULL;
    }
    struct errlist errs;
    errlist_init(&errs);
    struct schema *s = schema_compile(doc, &errs);
    for (size_t i = 0; i < errs.n; i++)
        errlist_addf(&registry.errs, path, "%s", errs.items[i]);
    errlist_free(&errs);
    json_decref(doc);
    return s;
}

static void registry_load(void) {
    errlist_init(&registry.errs);
    const char *dir = paths_data_dir();
    for (int k = 0; k < ENTITY_KINDS; k++)
        registry.kinds[k] = load_one(dir, entity_kinds[k].name);
    registry.declarative = load_one(dir, "declarative");
    registry.weir = load_one(dir, "weir");
}

/* On failure, copies the reasons into errs (every caller gets the whole story). */
static bool registry_ready(struct errlist *errs) {
    pthread_once(&registry.once, registry_load);
    if (registry.errs.n == 0) return true;
    for (size_t i = 0; errs && i < registry.errs.n; i++)
        errlist_addf(errs, NULL, "cannot load schema %s", registry.errs.items[i]);
    return false;
}

const struct schema *entity_schema(enum entity_kind k, struct errlist *errs) {
    return registry_ready(errs) ? registry.kinds[k] : NULL;
}

const struct schema *entity_declarative_schema(struct errlist *errs) {
    return registry_ready(errs) ? registry.declarative : NULL;
}

const struct schema *entity_weir_schema(struct errlist *errs) {
    return registry_ready(errs) ? registry.weir : NULL;
}
