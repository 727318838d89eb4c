/* config_build: struct config from a checked model; internal to config/ (config.c and the
 * entity builder). See config_build.c. */
#ifndef WEIR_CONFIG_BUILD_H
#define WEIR_CONFIG_BUILD_H

#include <jansson.h>

#include "config/config.h"
#include "config/model.h"

/* An address resolved by an earlier config, reused for the same "host:port". */
struct resolved_addr {
    char *key;
    struct sockaddr_storage addr;
    socklen_t len;
};

struct build {
    struct config *c;      /* c->model is set; the entity arrays are filled */
    const json_t *origins; /* may be NULL */
    struct errlist *errs;
    const struct resolved_addr *prev_addrs;
    json_t *prev_index;        /* "host:port" -> index into prev_addrs; NULL: resolve everything */
    const struct config *prev; /* routes built from the same model objects are copied from it */
    json_t *upstream_names;    /* internal */
};

void config_build_entities(struct build *b);

/* Reads the validated `weir` object (NULL: every default) into w; relative paths resolve against
 * base_dir. Cross-field rules the schema cannot state (listeners that overlap, a non-loopback
 * admin listener without a token) go to errs. */
void config_weir_read(const json_t *weir, const char *base_dir, struct weir_settings *w,
                      struct errlist *errs);

#endif
