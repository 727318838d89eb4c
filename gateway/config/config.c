#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config_build.h"
#include "config/config_fields.h"
#include "config/entity.h"
#include "config/model.h"
#include "config/schema.h"
#include "core/paths.h"
#include "lua/plugin_catalog.h"
#include "router/regex_set.h"

#define CONFIG_MAX_FILE_BYTES (64L * 1024 * 1024)

static char *sha256_hex(const char *text, size_t len) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL) != 1) abort();
    char *hex = field_xcalloc(mdlen * 2 + 1, 1);
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}

/* Addresses `prev` resolved, by "host:port", for config_build to reuse. */
static struct resolved_addr *previous_addresses(const struct config *prev, json_t **index) {
    size_t n = prev->n_services;
    for (size_t u = 0; u < prev->n_upstreams; u++)
        n += prev->upstreams[u].n_targets;
    struct resolved_addr *out = field_alloc_array(n, sizeof *out);
    *index = json_object();
    size_t k = 0;
    char key[FIELD_HOST_MAX + 16];
    for (size_t i = 0; i < prev->n_services; i++) {
        const struct service *s = &prev->services[i];
        if (s->upstream || !s->addrlen) continue;
        snprintf(key, sizeof key, "%s:%d", s->host, s->port);
        out[k] = (struct resolved_addr){.addr = s->addr, .len = s->addrlen};
        json_object_set_new(*index, key, json_integer((json_int_t)k++));
    }
    for (size_t u = 0; u < prev->n_upstreams; u++) {
        for (size_t t = 0; t < prev->upstreams[u].n_targets; t++) {
            const struct upstream_target *tg = &prev->upstreams[u].targets[t];
            if (!tg->addrlen) continue;
            snprintf(key, sizeof key, "%s:%d", tg->host, tg->port);
            out[k] = (struct resolved_addr){.addr = tg->addr, .len = tg->addrlen};
            json_object_set_new(*index, key, json_integer((json_int_t)k++));
        }
    }
    return out;
}

/* Server settings from `weir` plus the entities of `model` (a reference is taken). */
static struct config *assemble(const json_t *weir, const char *base_dir, json_t *model,
                               const json_t *origins, const struct config *prev,
                               struct errlist *errs) {
    size_t before = errs->n;
    struct config *c = field_xcalloc(1, sizeof *c);
    c->weir_json = weir ? json_deep_copy(weir) : NULL;
    c->base_dir = field_xstrdup(base_dir);
    c->model = json_incref(model);
    config_weir_read(c->weir_json, base_dir, &c->weir, errs); /* strings borrowed from it */
    /* Plugins are loaded (and their code checked) with the server settings; an admin change
     * keeps the catalogue of the config it starts from. */
    if (prev && prev->plugins && errs->n == before)
        c->plugins = plugin_catalog_retain(prev->plugins);
    else if (errs->n == before)
        c->plugins =
            plugin_catalog_load(paths_data_dir(), c->weir.plugin_paths, c->weir.n_plugin_paths,
                                c->weir.plugins, c->weir.n_plugins, errs);
    if (c->plugins && errs->n == before) {
        /* plugin configs complete with their defaults: the model the config holds may then be
         * a new one (the caller's is never written) */
        json_t *m = plugin_catalog_apply(c->plugins, c->model, origins, errs);
        if (m) {
            json_decref(c->model);
            c->model = m;
        }
    }
    struct build b = {.c = c, .origins = origins, .errs = errs};
    struct resolved_addr *addrs = prev ? previous_addresses(prev, &b.prev_index) : NULL;
    b.prev_addrs = addrs;
    b.prev = prev;
    config_build_entities(&b);
    free(addrs);
    json_decref(b.prev_index);
    if (errs->n != before) {
        config_free(c);
        return NULL;
    }
    c->loaded_at = (long long)time(NULL);
    return c;
}

/* The entities without created_at and updated_at: the same entities hash the same whenever and
 * from whichever copy of a file they were loaded (entities without timestamps get the file's
 * mtime or the load time), which is what lets two nodes compare what they run. */
const char *config_hash(struct config *c) {
    if (!c->hash) {
        json_t *doc = json_array();
        for (int k = 0; k < ENTITY_KINDS; k++) {
            json_t *list = json_array(), *e;
            size_t i;
            json_array_foreach(model_items(c->model, (enum entity_kind)k), i, e) {
                json_t *copy = json_copy(e); /* shallow: only the two keys are dropped */
                json_object_del(copy, "created_at");
                json_object_del(copy, "updated_at");
                json_array_append_new(list, copy);
            }
            json_array_append_new(doc, list);
        }
        char *dump = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
        if (!dump) abort();
        c->hash = sha256_hex(dump, strlen(dump));
        free(dump);
        json_decref(doc);
    }
    return c->hash;
}

json_t *config_parse(const char *text, size_t len, struct errlist *errs) {
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        errlist_addf(errs, NULL, "line %d column %d (byte %zu): %s", jerr.line, jerr.column,
                     (size_t)jerr.position, jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        errlist_addf(errs, NULL, "the configuration must be a JSON object");
        json_decref(root);
        return NULL;
    }
    return root;
}

json_t *config_model_from_doc(const json_t *doc, long long stamp, json_t **origins,
                              struct errlist *errs) {
    const struct schema *declarative = entity_declarative_schema(errs);
    if (!declarative || !schema_validate(declarative, doc, errs)) return NULL;
    return model_from_declarative(doc, stamp, origins, errs);
}

static struct config *load_text(const char *text, size_t len, const char *base_dir, long long stamp,
                                struct errlist *errs) {
    json_t *root = config_parse(text, len, errs);
    if (!root) return NULL;
    json_t *origins = NULL;
    json_t *model = config_model_from_doc(root, stamp, &origins, errs);
    struct config *c = NULL;
    if (model) c = assemble(json_object_get(root, "weir"), base_dir, model, origins, NULL, errs);
    json_decref(model);
    json_decref(origins);
    json_decref(root);
    return c;
}

struct config *config_with_model(const struct config *base, json_t *model, struct errlist *errs) {
    struct config *c = assemble(base->weir_json, base->base_dir, model, NULL, base, errs);
    if (c && base->source_path) c->source_path = field_xstrdup(base->source_path);
    if (c) c->regexes_seed = regex_set_retain(base->regexes);
    return c;
}

struct config *config_load_string(const char *json, size_t len, const char *base_dir,
                                  struct errlist *errs) {
    char *cwd = NULL, *base;
    if (!base_dir || base_dir[0] != '/') {
        cwd = getcwd(NULL, 0);
        if (!cwd) {
            errlist_addf(errs, NULL, "cannot find the current directory: %s", strerror(errno));
            return NULL;
        }
    }
    base = cwd ? field_resolve_path(cwd, base_dir ? base_dir : "") : field_xstrdup(base_dir);
    free(cwd);
    size_t blen = strlen(base);
    if (blen > 1 && base[blen - 1] == '/') base[blen - 1] = '\0';
    struct config *c = load_text(json, len, base, (long long)time(NULL), errs);
    free(base);
    return c;
}

static char *read_file(const char *path, size_t *len, long long *mtime, struct errlist *errs) {
    FILE *f = fopen(path, "rb");
    struct stat st;
    char *buf = NULL;
    if (!f || fstat(fileno(f), &st) != 0) {
        errlist_addf(errs, path, "%s", strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        errlist_addf(errs, path, "not a regular file");
    } else if (st.st_size > CONFIG_MAX_FILE_BYTES) {
        errlist_addf(errs, path, "larger than %ld bytes", CONFIG_MAX_FILE_BYTES);
    } else {
        *mtime = (long long)st.st_mtime;
        buf = field_xcalloc((size_t)st.st_size + 1, 1);
        *len = fread(buf, 1, (size_t)st.st_size, f);
        if (ferror(f)) {
            errlist_addf(errs, path, "%s", strerror(errno));
            free(buf);
            buf = NULL;
        }
    }
    if (f) fclose(f);
    return buf;
}

struct config *config_load_file(const char *path, struct errlist *errs) {
    char *abs = realpath(path, NULL);
    if (!abs) {
        errlist_addf(errs, path, "%s", strerror(errno));
        return NULL;
    }
    size_t len = 0;
    long long mtime = 0;
    char *text = read_file(abs, &len, &mtime, errs);
    struct config *c = NULL;
    if (text) {
        char *dir = field_xstrdup(abs);
        char *slash = strrchr(dir, '/');
        slash[slash == dir ? 1 : 0] = '\0';
        /* Entities without timestamps are stamped with the file's mtime, not the load time: the
         * same file then always gives the same export and hash, across reloads and restarts. */
        c = load_text(text, len, dir, mtime, errs);
        free(dir);
        free(text);
    }
    if (c)
        c->source_path = abs;
    else
        free(abs);
    return c;
}

void config_free(struct config *c) {
    if (!c) return;
    struct weir_settings *w = &c->weir;
    free(w->proxy_listen);
    free(w->admin_listen);
    free(w->stream_listen);
    free(w->trusted_ips);
    free(w->access_log);
    free(w->error_log);
    free(w->admin_token);
    free(w->ssl_cert);
    free(w->ssl_cert_key);
    free(w->ssl_ocsp_response_file);
    free(w->ssl_ciphers);
    free(w->ssl_client_ca);
    free(w->store_path);
    field_strings_free(w->plugins, w->n_plugins);
    field_strings_free(w->plugin_paths, w->n_plugin_paths);
    plugin_catalog_release(c->plugins);
    json_decref(c->model);
    json_decref(c->weir_json);
    free(c->base_dir);
    /* strings are the model's (config.h); only the arrays and computed strings are ours */
    for (size_t i = 0; i < c->n_services; i++) {
        free(c->services[i].host_header);
        free(c->services[i].tags);
        free(c->services[i].ca_certificates);
    }
    arena_free(&c->route_mem); /* every route's lists, headers and source path */
    regex_set_release(c->regexes);
    regex_set_release(c->regexes_seed);
    for (size_t u = 0; u < c->n_upstreams; u++) {
        struct upstream *up = &c->upstreams[u];
        for (size_t t = 0; t < up->n_targets; t++)
            free(up->targets[t].host);
        free(up->targets);
        free(up->tags);
    }
    free(c->services);
    free(c->routes);
    free(c->upstreams);
    free(c->plugin_instances);
    free(c->plugin_defs);
    free(c->source_path);
    free(c->hash);
    free(c);
}

static bool cidr_contains(const struct cidr *c, const uint8_t *addr) {
    int full = c->prefix_len / 8, rest = c->prefix_len % 8;
    if (memcmp(c->addr, addr, (size_t)full) != 0) return false;
    if (rest == 0) return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (addr[full] & mask);
}

bool config_ip_trusted(const struct weir_settings *w, const struct sockaddr *addr) {
    uint8_t v4[4], v6[16];
    bool has_v4 = false, has_v6 = false;
    if (addr->sa_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, addr, sizeof sin);
        memcpy(v4, &sin.sin_addr, 4);
        has_v4 = true;
    } else if (addr->sa_family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, addr, sizeof sin6);
        memcpy(v6, &sin6.sin6_addr, 16);
        has_v6 = true;
        /* a dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d */
        if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
            memcpy(v4, v6 + 12, 4);
            has_v4 = true;
        }
    }
    for (size_t i = 0; i < w->n_trusted_ips; i++) {
        const struct cidr *c = &w->trusted_ips[i];
        if ((c->family == AF_INET && has_v4 && cidr_contains(c, v4)) ||
            (c->family == AF_INET6 && has_v6 && cidr_contains(c, v6)))
            return true;
    }
    return false;
}
