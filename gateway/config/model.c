#include "config/model.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config_fields.h"
#include "core/uuid.h"

json_t *model_new(void) {
    json_t *m = json_object();
    for (int k = 0; k < ENTITY_KINDS; k++)
        json_object_set_new(m, entity_kinds[k].plural, json_array());
    return m;
}

json_t *model_items(const json_t *model, enum entity_kind k) {
    return json_object_get(model, entity_kinds[k].plural);
}

const char *model_origin(const json_t *origins, enum entity_kind k, size_t i, char *buf,
                         size_t len) {
    json_t *o = json_array_get(json_object_get(origins, entity_kinds[k].plural), i);
    const char *path = json_string_value(json_object_get(o, "path"));
    if (path) return path;
    snprintf(buf, len, "%s[%zu]", entity_kinds[k].plural, i);
    return buf;
}

static const char *str(const json_t *e, const char *key) {
    return json_string_value(json_object_get(e, key));
}

static const char *ref_id(const json_t *e, const char *field) {
    return str(json_object_get(e, field), "id");
}

/* ---- one entity ------------------------------------------------------------------------------ */

static bool input_only(enum entity_kind k, const char *key) {
    for (int i = 0; i < 4 && entity_kinds[k].input_only[i]; i++)
        if (!strcmp(entity_kinds[k].input_only[i], key)) return true;
    /* nested children of the declarative form */
    if (k == ENTITY_SERVICE && !strcmp(key, "routes")) return true;
    for (int c = 0; c < ENTITY_KINDS; c++)
        if (entity_kinds[c].nest_key && entity_kinds[c].refs[0].kind == k &&
            !strcmp(entity_kinds[c].nest_key, key))
            return true;
    return false;
}

static void lower_strings(json_t *arr, bool upper) {
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        char *s = field_xstrdup(json_string_value(v));
        json_array_set_new(arr, i, json_string(upper ? field_upper(s) : field_lower(s)));
        free(s);
    }
}

static void set_lower(json_t *e, const char *key) {
    const char *v = str(e, key);
    if (!v) return;
    char *s = field_lower(field_xstrdup(v));
    json_object_set_new(e, key, json_string(s));
    free(s);
}

/* "host:port" with the host lower-cased (IPv6 in brackets) and Kong's default port 8000. */
static char *target_normalize(const char *target) {
    char host[FIELD_HOST_MAX];
    int port = 0;
    bool bracketed;
    if (field_host_port_split(target, host, &port, &bracketed)) return field_xstrdup(target);
    field_lower(host);
    bool v6 = strchr(host, ':') != NULL;
    size_t len = strlen(host) + 16;
    char *out = field_xcalloc(len, 1);
    snprintf(out, len, "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port ? port : 8000);
    return out;
}

static void service_split_url(json_t *e, const char *url) {
    struct url_parts u;
    if (field_url_split(url, &u)) return; /* the schema's pattern admits only valid URLs */
    json_object_set_new(e, "protocol", json_string(u.protocol));
    json_object_set_new(e, "host", json_string(u.host));
    if (u.port)
        json_object_set_new(e, "port", json_integer(u.port));
    else if (!strcmp(u.protocol, "https"))
        json_object_set_new(e, "port", json_integer(443)); /* as Kong does for an https url */
    if (u.path) json_object_set_new(e, "path", json_string(u.path));
    field_url_parts_free(&u);
}

static void service_host_normalize(json_t *e) {
    const char *h = str(e, "host");
    if (!h) return;
    char host[FIELD_HOST_MAX];
    if (!field_host_check(h, host)) json_object_set_new(e, "host", json_string(host));
}

static void route_normalize(json_t *e) {
    lower_strings(json_object_get(e, "hosts"), false);
    lower_strings(json_object_get(e, "snis"), false);
    lower_strings(json_object_get(e, "methods"), true);
    json_t *headers = json_object_get(e, "headers");
    if (json_is_object(headers)) {
        json_t *lowered = json_object();
        const char *name;
        json_t *values;
        json_object_foreach(headers, name, values) {
            char *l = field_lower(field_xstrdup(name));
            json_object_set(lowered, l, values); /* entity_check refused case-duplicates */
            free(l);
        }
        json_object_set_new(e, "headers", lowered);
    }
}

/* The first certificate of a PEM text, or NULL. */
static X509 *read_cert(const char *pem) {
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    ERR_clear_error();
    return x;
}

/* SHA-256 of the first certificate's DER form, as Kong's cert_digest. */
static bool cert_digest(const char *pem, char out[65]) {
    X509 *x = read_cert(pem);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    bool ok = x && X509_digest(x, EVP_sha256(), md, &len) == 1 && len == 32;
    for (unsigned int i = 0; ok && i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    X509_free(x);
    return ok;
}

/* A certificate and its key: both parse and belong together. Returns the key's type or 0. */
static int check_pair(const char *cert_pem, const char *key_pem, const char *cert_field,
                      const char *key_field, const char *path, struct errlist *errs) {
    X509 *x = read_cert(cert_pem);
    BIO *bio = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    int type = 0;
    if (!x) field_error(errs, path, cert_field, "not a valid PEM certificate");
    if (!key)
        field_error(errs, path, key_field,
                    "not a valid PEM private key (encrypted keys are not supported)");
    if (x && key) {
        if (X509_check_private_key(x, key) == 1)
            type = EVP_PKEY_get_base_id(key);
        else
            field_error(errs, path, key_field, "does not match %s", cert_field);
    }
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(key);
    return type;
}

static void check_certificate(const json_t *input, const char *path, struct errlist *errs) {
    const char *cert = str(input, "cert"), *key = str(input, "key");
    const char *cert_alt = str(input, "cert_alt"), *key_alt = str(input, "key_alt");
    int type = cert && key ? check_pair(cert, key, "cert", "key", path, errs) : 0;
    int alt =
        cert_alt && key_alt ? check_pair(cert_alt, key_alt, "cert_alt", "key_alt", path, errs) : 0;
    /* the alternate certificate exists to offer the other key type (Kong's rule) */
    if (type && alt && type == alt)
        field_error(errs, path, "cert_alt",
                    "must have a different key type than cert (e.g. "
                    "ECDSA next to RSA)");
}

static void check_ca_certificate(const json_t *input, const char *path, struct errlist *errs) {
    const char *pem = str(input, "cert");
    if (!pem) return;
    X509 *x = read_cert(pem);
    if (!x) {
        field_error(errs, path, "cert", "not a valid PEM certificate");
        return;
    }
    if (X509_check_ca(x) < 1)
        field_error(errs, path, "cert", "not a CA certificate (basic constraints CA:TRUE)");
    X509_free(x);
    char digest[65];
    const char *given = str(input, "cert_digest");
    if (given && cert_digest(pem, digest) && strcmp(given, digest) != 0)
        field_error(errs, path, "cert_digest", "does not match cert (its SHA-256 is %s)", digest);
}

/* A JWT credential's public key must parse and suit its algorithm (RS*: RSA, ES*: EC), so a bad
 * key is refused when it is stored, not when the first token arrives. */
static void check_jwt_key(const json_t *input, const char *path, struct errlist *errs) {
    const char *pem = str(input, "rsa_public_key"), *alg = str(input, "algorithm");
    if (!pem) return;
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *key = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    ERR_clear_error();
    if (!key) {
        field_error(errs, path, "rsa_public_key", "not a valid PEM public key");
        return;
    }
    int type = EVP_PKEY_get_base_id(key);
    if (alg && alg[0] == 'R' && type != EVP_PKEY_RSA)
        field_error(errs, path, "rsa_public_key", "must be an RSA key for %s", alg);
    if (alg && alg[0] == 'E' && type != EVP_PKEY_EC)
        field_error(errs, path, "rsa_public_key", "must be an EC key for %s", alg);
    EVP_PKEY_free(key);
}

bool entity_check(enum entity_kind k, const json_t *input, const char *path, struct errlist *errs) {
    size_t before = errs->n;
    if (k == ENTITY_JWT_SECRET) check_jwt_key(input, path, errs);
    if (k == ENTITY_CERTIFICATE) check_certificate(input, path, errs);
    if (k == ENTITY_CA_CERTIFICATE) check_ca_certificate(input, path, errs);
    if (k == ENTITY_SERVICE) {
        /* a tcp service relays bytes: there is no request path to prefix */
        const char *url = str(input, "url"), *proto = str(input, "protocol");
        bool tcp = (proto && !strcmp(proto, "tcp")) || (url && !strncasecmp(url, "tcp://", 6));
        if (tcp && str(input, "path"))
            field_error(errs, path, "path", "not allowed with protocol \"tcp\"");
        if (tcp && url && strchr(url + 6, '/'))
            field_error(errs, path, "url", "a tcp:// URL has no path");
    }
    if (k == ENTITY_ROUTE) {
        const char *name, *other;
        json_t *values, *v2;
        json_object_foreach(json_object_get(input, "headers"), name, values) {
            json_object_foreach(json_object_get(input, "headers"), other, v2) {
                if (other == name) break;
                if (!strcasecmp(other, name)) {
                    char p[FIELD_PATH_MAX];
                    field_path(p, path, "headers");
                    field_error(errs, p, name, "listed twice (names are case-insensitive)");
                    break;
                }
            }
        }
    }
    return errs->n == before;
}

json_t *entity_normalize(enum entity_kind k, const json_t *input, long long now) {
    const struct schema *schema = entity_schema(k, NULL);
    json_t *e = json_object();
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)input, key, v) {
        if (input_only(k, key) || json_is_null(v)) continue;
        json_object_set_new(e, key, json_deep_copy(v));
    }
    if (k == ENTITY_SERVICE && str(input, "url")) service_split_url(e, str(input, "url"));

    json_t *full = schema ? schema_apply_defaults(schema, e) : json_incref(e);
    json_decref(e);
    e = full;
    /* every field, in the schema's order (id first), null when unset */
    json_t *props = schema ? json_object_get(schema_document(schema), "properties") : NULL;
    json_t *ordered = json_object();
    json_object_foreach(props, key, v) {
        if (input_only(k, key)) continue;
        json_t *given = json_object_get(e, key);
        json_object_set(ordered, key, given ? given : json_null());
    }
    for (int r = 0; r < entity_kinds[k].n_refs; r++) {
        const char *field = entity_kinds[k].refs[r].field;
        json_t *given = json_object_get(e, field);
        if (!json_object_get(ordered, field))
            json_object_set(ordered, field, given ? given : json_null());
    }
    json_decref(e);
    e = ordered;

    set_lower(e, "id");
    switch (k) {
    case ENTITY_SERVICE:
        service_host_normalize(e);
        break;
    case ENTITY_ROUTE:
        route_normalize(e);
        break;
    case ENTITY_UPSTREAM:
        set_lower(e, "name");
        break;
    case ENTITY_TARGET:
        if (str(e, "target")) {
            char *t = target_normalize(str(e, "target"));
            json_object_set_new(e, "target", json_string(t));
            free(t);
        }
        break;
    case ENTITY_CA_CERTIFICATE: {
        char digest[65];
        if (str(e, "cert") && cert_digest(str(e, "cert"), digest))
            json_object_set_new(e, "cert_digest", json_string(digest));
        break;
    }
    default:
        break;
    }
    if (!json_is_integer(json_object_get(e, "created_at")))
        json_object_set_new(e, "created_at", json_integer(now));
    if (!json_is_integer(json_object_get(e, "updated_at")))
        json_object_set_new(e, "updated_at", json_integer(now));
    return e;
}

static void write_list(FILE *f, const char *label, const json_t *arr) {
    fprintf(f, "\n%s", label);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) fprintf(f, "\t%s", json_string_value(v));
}

bool entity_derive_id(enum entity_kind k, const json_t *e, char out[37], const char **derived) {
    const char *type = entity_kinds[k].name;
    const char *name = str(e, entity_kinds[k].endpoint_key ? entity_kinds[k].endpoint_key : "");
    *derived = "name";
    if (k != ENTITY_TARGET && name) {
        uuid_v5(type, name, out);
        return true;
    }
    *derived = "key";
    char *key = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&key, &len);
    if (!f) abort();
    bool ok = true;
    switch (k) {
    case ENTITY_SERVICE: {
        /* the host as stored (IPv6 without brackets), as ids have always been derived */
        const char *path = str(e, "path");
        fprintf(f, "%s://%s:%lld%s", str(e, "protocol"), str(e, "host"),
                json_integer_value(json_object_get(e, "port")), path ? path : "");
        break;
    }
    case ENTITY_ROUTE: {
        const char *sid = ref_id(e, "service");
        if (!sid) {
            ok = false;
            break;
        }
        fputs(sid, f);
        write_list(f, "paths", json_object_get(e, "paths"));
        write_list(f, "hosts", json_object_get(e, "hosts"));
        write_list(f, "methods", json_object_get(e, "methods"));
        const char *hname;
        json_t *values;
        json_object_foreach(json_object_get(e, "headers"), hname, values)
            write_list(f, hname, values);
        break;
    }
    case ENTITY_TARGET:
        if (!ref_id(e, "upstream")) {
            ok = false;
            break;
        }
        fprintf(f, "%s\n%s", ref_id(e, "upstream"), str(e, "target"));
        break;
    case ENTITY_CONSUMER:
        ok = str(e, "custom_id") != NULL;
        fprintf(f, "custom_id:%s", str(e, "custom_id") ? str(e, "custom_id") : "");
        break;
    case ENTITY_PLUGIN: /* one instance per name and scope: that pair names it */
        fprintf(f, "%s\n%s\n%s\n%s", str(e, "name"),
                ref_id(e, "service") ? ref_id(e, "service") : "",
                ref_id(e, "route") ? ref_id(e, "route") : "",
                ref_id(e, "consumer") ? ref_id(e, "consumer") : "");
        break;
    case ENTITY_CERTIFICATE: /* the certificate itself names it */
    case ENTITY_CA_CERTIFICATE: {
        char digest[65];
        ok = str(e, "cert") && cert_digest(str(e, "cert"), digest);
        if (ok) fputs(digest, f);
        break;
    }
    default:
        ok = false;
        break;
    }
    if (fclose(f) != 0) abort();
    if (ok) uuid_v5(type, key, out);
    free(key);
    return ok;
}

/* ---- lookups -----------------------------------------------------------------------------------
 */

static bool key_matches(enum entity_kind k, const json_t *e, const char *key) {
    if (!strcasecmp(str(e, "id") ? str(e, "id") : "", key)) return true;
    const char *field = entity_kinds[k].endpoint_key;
    const char *v = field ? str(e, field) : NULL;
    if (!v) return false;
    if (k == ENTITY_UPSTREAM) return !strcasecmp(v, key);
    if (k == ENTITY_TARGET) {
        char *t = target_normalize(key);
        bool same = !strcmp(v, t);
        free(t);
        return same;
    }
    return !strcmp(v, key);
}

long model_find(const json_t *model, enum entity_kind k, const char *key, const char *owner_field,
                const char *owner_id) {
    size_t i;
    json_t *e;
    /* an id wins over a name that happens to look like an id */
    json_array_foreach(model_items(model, k), i, e) {
        if (owner_field &&
            strcasecmp(ref_id(e, owner_field) ? ref_id(e, owner_field) : "", owner_id))
            continue;
        if (str(e, "id") && !strcasecmp(str(e, "id"), key)) return (long)i;
    }
    json_array_foreach(model_items(model, k), i, e) {
        if (owner_field &&
            strcasecmp(ref_id(e, owner_field) ? ref_id(e, owner_field) : "", owner_id))
            continue;
        if (key_matches(k, e, key)) return (long)i;
    }
    return -1;
}

long model_resolve_ref(const json_t *model, enum entity_kind k, const json_t *ref, char *what,
                       size_t what_len) {
    const char *id = NULL, *name = NULL, *either = json_string_value(ref);
    if (json_is_object(ref)) {
        id = str(ref, "id");
        name = str(ref, entity_kinds[k].endpoint_key ? entity_kinds[k].endpoint_key : "name");
        if (!name) name = str(ref, "name");
    }
    long found = -1;
    if (id || (either && uuid_valid(either))) {
        size_t i;
        json_t *e;
        json_array_foreach(model_items(model, k), i, e) {
            if (!strcasecmp(str(e, "id"), id ? id : either)) {
                found = (long)i;
                break;
            }
        }
    }
    if (found < 0 && !id && (name || either)) {
        const char *field = entity_kinds[k].endpoint_key;
        size_t i;
        json_t *e;
        json_array_foreach(model_items(model, k), i, e) {
            const char *v = field ? str(e, field) : NULL;
            if (v && !strcmp(v, name ? name : either)) {
                found = (long)i;
                break;
            }
        }
    }
    if (found < 0)
        snprintf(what, what_len, "no %s %s \"%s\"", entity_kinds[k].name,
                 id     ? "with id"
                 : name ? "named"
                        : "with name or id",
                 id       ? id
                 : name   ? name
                 : either ? either
                          : "");
    return found;
}

/* ---- uniqueness --------------------------------------------------------------------------------
 */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void write_sorted(FILE *f, const char *label, const json_t *arr) {
    size_t n = json_array_size(arr);
    const char **v = field_alloc_array(n, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = json_string_value(json_array_get(arr, i));
    if (n) qsort(v, n, sizeof *v, cmp_str);
    fprintf(f, "%s", label);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "\t%s", v[i]);
    fputc('\n', f);
    free(v);
}

/* What two routes that match exactly the same requests have in common (order-independent). */
static char *route_match_key(const json_t *e) {
    char *key = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&key, &len);
    if (!f) abort();
    write_sorted(f, "p", json_object_get(e, "paths"));
    write_sorted(f, "h", json_object_get(e, "hosts"));
    write_sorted(f, "m", json_object_get(e, "methods"));
    json_t *headers = json_object_get(e, "headers");
    size_t n = json_object_size(headers), i = 0;
    const char **names = field_alloc_array(n, sizeof *names);
    const char *name;
    json_t *values;
    json_object_foreach(headers, name, values) names[i++] = name;
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (i = 0; i < n; i++) {
        fprintf(f, "H%s", names[i]);
        write_sorted(f, "", json_object_get(headers, names[i]));
    }
    free(names);
    if (fclose(f) != 0) abort();
    return key;
}

/* The composite key of entities of kind k that must differ, or NULL; the caller frees it. */
static char *composite_key(enum entity_kind k, const json_t *e, const char **field) {
    char *key = NULL;
    switch (k) {
    case ENTITY_TARGET:
        *field = "target";
        if (!ref_id(e, "upstream") || !str(e, "target")) return NULL;
        if (asprintf(&key, "%s\n%s", ref_id(e, "upstream"), str(e, "target")) < 0) abort();
        return key;
    case ENTITY_ROUTE:
        *field = "paths";
        /* tls_passthrough routes have only snis, and no name may repeat (route_sni_clash) */
        return json_array_size(json_object_get(e, "snis")) ? NULL : route_match_key(e);
    case ENTITY_PLUGIN:
        *field = "name";
        if (asprintf(&key, "%s\n%s\n%s\n%s", str(e, "name") ? str(e, "name") : "",
                     ref_id(e, "service") ? ref_id(e, "service") : "",
                     ref_id(e, "route") ? ref_id(e, "route") : "",
                     ref_id(e, "consumer") ? ref_id(e, "consumer") : "") < 0)
            abort();
        return key;
    default:
        return NULL;
    }
}

static char *unique_value(enum entity_kind k, const json_t *e, const char *field) {
    const char *v = str(e, field);
    if (!v) return NULL;
    char *s = field_xstrdup(v);
    return k == ENTITY_UPSTREAM ? field_lower(s) : s; /* upstream names are host names */
}

/* Two arrays of strings (or nulls) holding the same set of values. */
static bool same_set(const json_t *a, const json_t *b) {
    size_t na = json_array_size(a), nb = json_array_size(b);
    for (size_t i = 0; i < na; i++) {
        bool found = false;
        for (size_t j = 0; j < nb && !found; j++)
            found = json_equal(json_array_get(a, i), json_array_get(b, j));
        if (!found) return false;
    }
    for (size_t j = 0; j < nb; j++) {
        bool found = false;
        for (size_t i = 0; i < na && !found; i++)
            found = json_equal(json_array_get(a, i), json_array_get(b, j));
        if (!found) return false;
    }
    return true;
}

/* The first of route a's snis that route b also has, or NULL. Names are lower case (normalised). */
static const char *route_sni_clash(const json_t *a, const json_t *b) {
    size_t i, j;
    json_t *x, *y;
    json_array_foreach(json_object_get(a, "snis"), i, x) {
        json_array_foreach(json_object_get(b, "snis"), j, y) {
            if (!strcmp(json_string_value(x), json_string_value(y))) return json_string_value(x);
        }
    }
    return NULL;
}

/* What model_conflict compares of one entity, looked up once: borrowed from the entity, which
 * the cache keeps alive through its reference to the kind's array. */
struct conflict_row {
    const json_t *entity;
    const char *id;
    const char *unique[3];
    const json_t *paths; /* routes */
    const char *path0;   /* a route's first path: a quick "not the same paths" */
    const json_t *snis;  /* routes with snis */
};

/* a and b (either may be NULL) equal, case-insensitively when `nocase`; the first byte decides
 * most comparisons without a call. */
static inline bool same_str(const char *a, const char *b, bool nocase) {
    if (!a || !b) return false;
    if (!nocase) return a[0] == b[0] && !strcmp(a, b);
    return (a[0] | 0x20) == (b[0] | 0x20) && !strcasecmp(a, b);
}

struct model_conflict_cache {
    struct {
        json_t *items; /* a reference: the array the rows describe */
        struct conflict_row *rows;
    } kinds[ENTITY_KINDS];
};

struct model_conflict_cache *model_conflict_cache_new(void) {
    struct model_conflict_cache *c = calloc(1, sizeof *c);
    if (!c) abort();
    return c;
}

void model_conflict_cache_free(struct model_conflict_cache *c) {
    if (!c) return;
    for (int k = 0; k < ENTITY_KINDS; k++) {
        json_decref(c->kinds[k].items);
        free(c->kinds[k].rows);
    }
    free(c);
}

static void conflict_row_fill(enum entity_kind k, const json_t *e, struct conflict_row *r) {
    r->entity = e;
    r->id = str(e, "id");
    for (int u = 0; u < 3; u++)
        r->unique[u] = entity_kinds[k].unique[u] ? str(e, entity_kinds[k].unique[u]) : NULL;
    r->paths = k == ENTITY_ROUTE ? json_object_get(e, "paths") : NULL;
    r->path0 = json_string_value(json_array_get(r->paths, 0));
    json_t *snis = k == ENTITY_ROUTE ? json_object_get(e, "snis") : NULL;
    r->snis = json_array_size(snis) ? e : NULL;
}

/* The rows of kind k's array `items`. A new array mostly shares its entities with the last one
 * (admin changes make shallow copies), in the same order: the rows of its common prefix and
 * suffix are copied, and only the entities in between looked up. */
static const struct conflict_row *conflict_rows(struct model_conflict_cache *c, enum entity_kind k,
                                               json_t *items) {
    if (c->kinds[k].items == items) return c->kinds[k].rows;
    size_t n = json_array_size(items), old_n = json_array_size(c->kinds[k].items), pre = 0,
           suf = 0;
    const struct conflict_row *old = c->kinds[k].rows;
    while (pre < n && pre < old_n && old[pre].entity == json_array_get(items, pre))
        pre++;
    while (suf < n - pre && suf < old_n - pre &&
           old[old_n - 1 - suf].entity == json_array_get(items, n - 1 - suf))
        suf++;
    struct conflict_row *rows = malloc((n ? n : 1) * sizeof *rows);
    if (!rows) abort();
    if (pre) memcpy(rows, old, pre * sizeof *rows);
    for (size_t i = pre; i < n - suf; i++)
        conflict_row_fill(k, json_array_get(items, i), &rows[i]);
    if (suf) memcpy(rows + n - suf, old + old_n - suf, suf * sizeof *rows);
    json_decref(c->kinds[k].items);
    free(c->kinds[k].rows);
    c->kinds[k].items = json_incref(items);
    c->kinds[k].rows = rows;
    return rows;
}

long model_conflict(const json_t *model, enum entity_kind k, const json_t *entity, long self,
                    const char **field, struct model_conflict_cache *cache) {
    const struct entity_kind_info *info = &entity_kinds[k];
    struct model_conflict_cache *own = cache ? NULL : model_conflict_cache_new();
    const struct conflict_row *rows = conflict_rows(cache ? cache : own, k, model_items(model, k));
    struct conflict_row mine;
    conflict_row_fill(k, entity, &mine);
    const char *cfield = NULL;
    char *ckey = composite_key(k, entity, &cfield);
    long found = -1;
    size_t n = json_array_size(model_items(model, k));
    for (size_t i = 0; i < n && found < 0; i++) {
        const struct conflict_row *r = &rows[i];
        if ((long)i == self) continue;
        if (same_str(mine.id, r->id, true)) {
            *field = "id";
            found = (long)i;
            break;
        }
        for (int u = 0; u < 3 && info->unique[u] && found < 0; u++) {
            /* upstream names are host names */
            if (same_str(mine.unique[u], r->unique[u], k == ENTITY_UPSTREAM)) {
                *field = info->unique[u];
                found = (long)i;
            }
        }
        if (found >= 0) break;
        if (mine.snis && r->snis && route_sni_clash(mine.snis, r->snis)) {
            *field = "snis";
            found = (long)i;
            break;
        }
        if (ckey) {
            /* most routes differ in their paths: skip building their keys */
            if (k == ENTITY_ROUTE) {
                /* the same set has r's first path among mine */
                bool listed = !r->path0;
                size_t j;
                json_t *p;
                json_array_foreach(mine.paths, j, p) {
                    if (!listed) listed = same_str(json_string_value(p), r->path0, false);
                }
                if (!listed || !same_set(mine.paths, r->paths)) continue;
            }
            const char *f2;
            char *other = composite_key(k, r->entity, &f2);
            bool same = other && !strcmp(other, ckey);
            free(other);
            if (same) {
                *field = cfield;
                found = (long)i;
            }
        }
    }
    free(ckey);
    model_conflict_cache_free(own);
    return found;
}

struct keyed {
    char *key;
    size_t index;
};

static int keyed_cmp(const void *a, const void *b) {
    const struct keyed *x = a, *y = b;
    int d = strcmp(x->key, y->key);
    return d ? d : (x->index < y->index ? -1 : x->index > y->index);
}

static const char *derived_of(const json_t *origins, enum entity_kind k, size_t i) {
    json_t *o = json_array_get(json_object_get(origins, entity_kinds[k].plural), i);
    return json_string_value(json_object_get(o, "derived"));
}

/* Sorts (key, index) pairs and reports each entity whose key repeats an earlier one's. */
static void report_repeats(const json_t *origins, enum entity_kind k, struct keyed *v, size_t n,
                           const char *field, struct errlist *errs) {
    if (n) qsort(v, n, sizeof *v, keyed_cmp);
    size_t first = 0;
    for (size_t j = 0; j < n; j++) {
        if (j == 0 || strcmp(v[j].key, v[j - 1].key) != 0) {
            first = j;
            continue;
        }
        char b1[64], b2[64];
        const char *later = model_origin(origins, k, v[j].index, b1, sizeof b1);
        const char *orig = model_origin(origins, k, v[first].index, b2, sizeof b2);
        const char *dl = derived_of(origins, k, v[j].index),
                   *df = derived_of(origins, k, v[first].index);
        if (!strcmp(field, "id") && dl && df && !strcmp(dl, df)) {
            /* both derived from their names: the name clash is reported; from their keys: */
            if (!strcmp(dl, "key") && k == ENTITY_SERVICE)
                errlist_addf(errs, later,
                             "has the same url as %s; give one of them a name or an id", orig);
            continue;
        }
        if (!strcmp(field, "paths"))
            errlist_addf(errs, later,
                         "matches exactly the same paths, hosts, methods and headers as %s", orig);
        else if (!strcmp(field, "target") && k == ENTITY_TARGET)
            field_error(errs, later, "target", "the same host and port as %s", orig);
        else
            field_error(errs, later, field, "\"%s\" is already used by %s",
                        strchr(v[j].key, '\n') ? strchr(v[j].key, '\n') + 1 : v[j].key, orig);
    }
    for (size_t j = 0; j < n; j++)
        free(v[j].key);
}

static void check_unique(const json_t *model, const json_t *origins, enum entity_kind k,
                         struct errlist *errs) {
    json_t *items = model_items(model, k);
    size_t n = json_array_size(items), m;
    struct keyed *v = field_alloc_array(n, sizeof *v);
    size_t i;
    json_t *e;

    m = 0;
    json_array_foreach(items, i, e) v[m++] = (struct keyed){field_xstrdup(str(e, "id")), i};
    report_repeats(origins, k, v, m, "id", errs);
    for (int u = 0; u < 3 && entity_kinds[k].unique[u]; u++) {
        m = 0;
        json_array_foreach(items, i, e) {
            char *val = unique_value(k, e, entity_kinds[k].unique[u]);
            if (val) v[m++] = (struct keyed){val, i};
        }
        report_repeats(origins, k, v, m, entity_kinds[k].unique[u], errs);
    }
    if (k == ENTITY_ROUTE) {
        /* a server name picks one tls_passthrough route: each may appear once in all */
        size_t total = 0;
        json_array_foreach(items, i, e) total += json_array_size(json_object_get(e, "snis"));
        struct keyed *s = field_alloc_array(total, sizeof *s);
        m = 0;
        json_array_foreach(items, i, e) {
            size_t j, start = m;
            json_t *name;
            json_array_foreach(json_object_get(e, "snis"), j, name) {
                bool repeated = false; /* listed twice by this route: harmless */
                for (size_t t = start; t < m && !repeated; t++)
                    repeated = !strcmp(s[t].key, json_string_value(name));
                if (!repeated) s[m++] = (struct keyed){field_xstrdup(json_string_value(name)), i};
            }
        }
        report_repeats(origins, k, s, m, "snis", errs);
        free(s);
    }
    const char *field = NULL;
    m = 0;
    json_array_foreach(items, i, e) {
        char *key = composite_key(k, e, &field);
        if (key) v[m++] = (struct keyed){key, i};
    }
    if (field) report_repeats(origins, k, v, m, field, errs);
    free(v);
}

static void check_refs(const json_t *model, const json_t *origins, enum entity_kind k,
                       struct errlist *errs) {
    const struct entity_kind_info *info = &entity_kinds[k];
    if (!info->n_refs) return;
    /* ids of each referenced kind, sorted, for O(log n) lookups */
    size_t i;
    json_t *e;
    for (int r = 0; r < info->n_refs; r++) {
        json_t *targets = model_items(model, info->refs[r].kind);
        size_t n = json_array_size(targets);
        const char **ids = field_alloc_array(n, sizeof *ids);
        for (size_t t = 0; t < n; t++)
            ids[t] = str(json_array_get(targets, t), "id");
        if (n) qsort(ids, n, sizeof *ids, cmp_str);
        json_array_foreach(model_items(model, k), i, e) {
            const char *id = ref_id(e, info->refs[r].field);
            char buf[64];
            if (!id) {
                if (info->refs[r].required)
                    field_error(errs, model_origin(origins, k, i, buf, sizeof buf),
                                info->refs[r].field, "required");
                continue;
            }
            if (!n || !bsearch(&id, ids, n, sizeof *ids, cmp_str))
                field_error(errs, model_origin(origins, k, i, buf, sizeof buf), info->refs[r].field,
                            "no %s with id \"%s\"", entity_kinds[info->refs[r].kind].name, id);
        }
        free(ids);
    }
}

bool model_check(const json_t *model, const json_t *origins, struct errlist *errs) {
    size_t before = errs->n;
    for (int k = 0; k < ENTITY_KINDS; k++) {
        check_unique(model, origins, k, errs);
        check_refs(model, origins, k, errs);
    }
    return errs->n == before;
}

/* ---- the declarative form ----------------------------------------------------------------------
 */

struct flattener {
    json_t *model, *origins;
    long long now;
    struct errlist *errs;
};

/* Normalises `input` (at `path`), gives it an id, appends it. Returns the stored entity. */
static json_t *add_entity(struct flattener *fl, enum entity_kind k, const json_t *input,
                          const char *path, const char *owner_field, const char *owner_id,
                          bool derive_id) {
    entity_check(k, input, path, fl->errs);
    json_t *e = entity_normalize(k, input, fl->now);
    if (owner_field) json_object_set_new(e, owner_field, json_pack("{s:s}", "id", owner_id));
    const char *derived = NULL;
    if (!str(e, "id") && derive_id) {
        char id[37];
        if (!entity_derive_id(k, e, id, &derived)) uuid_v4(id);
        json_object_set_new(e, "id", json_string(id));
    }
    json_array_append_new(model_items(fl->model, k), e);
    json_array_append_new(json_object_get(fl->origins, entity_kinds[k].plural),
                          json_pack("{s:s, s:s?, s:b}", "path", path, "derived", derived, "url",
                                    k == ENTITY_SERVICE && str(input, "url")));
    return e;
}

static void path_index(char out[FIELD_PATH_MAX], const char *parent, const char *key, size_t i) {
    char p[FIELD_PATH_MAX];
    field_path(p, parent, key);
    field_index_path(out, p, i);
}

/* A route's "service" as written; nested routes may only name their own service. */
static void route_service(struct flattener *fl, json_t *route, const json_t *input,
                          const char *path, const json_t *owner) {
    const json_t *ref = json_object_get(input, "service");
    char what[512];
    if (owner) {
        if (ref && !json_is_null(ref)) {
            json_t *one = json_array();
            json_array_append(one, (json_t *)owner);
            json_t *m = json_pack("{s:o}", "services", one);
            if (model_resolve_ref(m, ENTITY_SERVICE, ref, what, sizeof what) < 0)
                field_error(fl->errs, path, "service",
                            "must be absent or name the enclosing service");
            json_decref(m);
        }
        json_object_set_new(route, "service", json_pack("{s:s}", "id", str(owner, "id")));
        return;
    }
    long s = model_resolve_ref(fl->model, ENTITY_SERVICE, ref, what, sizeof what);
    if (s < 0) {
        field_error(fl->errs, path, "service", "%s", what);
        return;
    }
    json_t *svc = json_array_get(model_items(fl->model, ENTITY_SERVICE), (size_t)s);
    json_object_set_new(route, "service", json_pack("{s:s}", "id", str(svc, "id")));
}

/* Plugins nested in an entity, queued until every entity they may name exists:
 * [input, path, owner field or null, owner entity or null]. */
static void queue_plugins(json_t *pending, const json_t *input, const char *path,
                          const char *owner_field, json_t *owner) {
    size_t j;
    json_t *child;
    char cpath[FIELD_PATH_MAX];
    json_array_foreach(json_object_get(input, "plugins"), j, child) {
        path_index(cpath, path, "plugins", j);
        json_array_append_new(pending,
                              json_pack("[O, s, s?, O?]", child, cpath, owner_field, owner));
    }
}

/* A plugin's scopes: the owner it is nested in (naming another one is an error) and whatever it
 * names itself, by name or id, resolved to {"id": ...}. Then its id, derived from name and scope
 * when absent (the same file gives the same ids). */
static void add_plugin(struct flattener *fl, const json_t *input, const char *path,
                       const char *owner_field, const json_t *owner) {
    json_t *e = add_entity(fl, ENTITY_PLUGIN, input, path, NULL, NULL, false);
    json_t *origin = json_array_get(json_object_get(fl->origins, "plugins"),
                                    json_array_size(model_items(fl->model, ENTITY_PLUGIN)) - 1);
    for (int r = 0; r < entity_kinds[ENTITY_PLUGIN].n_refs; r++) {
        const struct entity_ref *ref = &entity_kinds[ENTITY_PLUGIN].refs[r];
        const json_t *given = json_object_get(input, ref->field);
        char what[512];
        long at = -1;
        if (given && !json_is_null(given)) {
            at = model_resolve_ref(fl->model, ref->kind, given, what, sizeof what);
            if (at < 0) field_error(fl->errs, path, ref->field, "%s", what);
        }
        if (owner_field && !strcmp(owner_field, ref->field)) {
            if (at >= 0 &&
                strcmp(str(json_array_get(model_items(fl->model, ref->kind), (size_t)at), "id"),
                       str(owner, "id")) != 0)
                field_error(fl->errs, path, ref->field, "must be absent or name the enclosing %s",
                            entity_kinds[ref->kind].name);
            json_object_set_new(e, ref->field, json_pack("{s:s}", "id", str(owner, "id")));
        } else if (at >= 0) {
            json_t *target = json_array_get(model_items(fl->model, ref->kind), (size_t)at);
            json_object_set_new(e, ref->field, json_pack("{s:s}", "id", str(target, "id")));
        } else {
            json_object_set_new(e, ref->field, json_null());
        }
    }
    if (str(e, "id")) return;
    char id[37];
    const char *derived = NULL;
    if (!entity_derive_id(ENTITY_PLUGIN, e, id, &derived)) uuid_v4(id);
    json_object_set_new(e, "id", json_string(id));
    json_object_set_new(origin, "derived", derived ? json_string(derived) : json_null());
}

/* Routes get their ids last: an unnamed route's id includes its service's id. */
static void route_id(json_t *route, json_t *origin) {
    if (str(route, "id")) return;
    char id[37];
    const char *derived = NULL;
    if (!entity_derive_id(ENTITY_ROUTE, route, id, &derived)) uuid_v4(id);
    json_object_set_new(route, "id", json_string(id));
    json_object_set_new(origin, "derived", derived ? json_string(derived) : json_null());
}

json_t *model_from_declarative(const json_t *doc, long long now, json_t **origins,
                               struct errlist *errs) {
    struct flattener fl = {model_new(), model_new(), now, errs};
    size_t before = errs->n, i, j;
    json_t *v, *child;
    char path[FIELD_PATH_MAX], cpath[FIELD_PATH_MAX];

    /* services first (routes name them), nested routes remembered with their owner */
    json_t *pending = json_array(); /* [route input, path, owner service or null] */
    json_t *plugins = json_array(); /* queue_plugins() */
    json_array_foreach(json_object_get(doc, "services"), i, v) {
        field_index_path(path, "services", i);
        json_t *svc = add_entity(&fl, ENTITY_SERVICE, v, path, NULL, NULL, true);
        queue_plugins(plugins, v, path, "service", svc);
        json_array_foreach(json_object_get(v, "routes"), j, child) {
            path_index(cpath, path, "routes", j);
            json_array_append_new(pending, json_pack("[O, s, O]", child, cpath, svc));
        }
    }
    json_array_foreach(json_object_get(doc, "routes"), i, v) {
        field_index_path(path, "routes", i);
        json_array_append_new(pending, json_pack("[O, s, n]", v, path));
    }
    json_array_foreach(pending, i, v) {
        json_t *input = json_array_get(v, 0), *owner = json_array_get(v, 2);
        const char *rpath = json_string_value(json_array_get(v, 1));
        json_t *route = add_entity(&fl, ENTITY_ROUTE, input, rpath, NULL, NULL, false);
        json_t *origin = json_array_get(json_object_get(fl.origins, "routes"),
                                        json_array_size(model_items(fl.model, ENTITY_ROUTE)) - 1);
        route_service(&fl, route, input, rpath, json_is_null(owner) ? NULL : owner);
        route_id(route, origin);
        queue_plugins(plugins, input, rpath, "route", route);
    }
    json_decref(pending);

    json_array_foreach(json_object_get(doc, "upstreams"), i, v) {
        field_index_path(path, "upstreams", i);
        json_t *up = add_entity(&fl, ENTITY_UPSTREAM, v, path, NULL, NULL, true);
        json_array_foreach(json_object_get(v, "targets"), j, child) {
            path_index(cpath, path, "targets", j);
            add_entity(&fl, ENTITY_TARGET, child, cpath, "upstream", str(up, "id"), true);
        }
    }
    json_array_foreach(json_object_get(doc, "consumers"), i, v) {
        field_index_path(path, "consumers", i);
        json_t *consumer = add_entity(&fl, ENTITY_CONSUMER, v, path, NULL, NULL, true);
        queue_plugins(plugins, v, path, "consumer", consumer);
        static const enum entity_kind creds[] = {ENTITY_JWT_SECRET, ENTITY_KEYAUTH_CREDENTIAL};
        for (size_t c = 0; c < 2; c++) {
            json_array_foreach(json_object_get(v, entity_kinds[creds[c]].nest_key), j, child) {
                path_index(cpath, path, entity_kinds[creds[c]].nest_key, j);
                /* the admin API generates missing keys and secrets; a file must say them, or
                 * every reload would hand out new credentials */
                if (!json_is_string(json_object_get(child, "key")))
                    field_error(errs, cpath, "key", "required in a declarative file");
                if (creds[c] == ENTITY_JWT_SECRET &&
                    !json_is_string(json_object_get(child, "secret")) &&
                    !json_is_string(json_object_get(child, "rsa_public_key")))
                    field_error(errs, cpath, "secret",
                                "required in a declarative file (or give rsa_public_key)");
                add_entity(&fl, creds[c], child, cpath, "consumer", str(consumer, "id"), true);
            }
        }
    }
    json_array_foreach(json_object_get(doc, "ca_certificates"), i, v) {
        field_index_path(path, "ca_certificates", i);
        add_entity(&fl, ENTITY_CA_CERTIFICATE, v, path, NULL, NULL, true);
    }
    json_array_foreach(json_object_get(doc, "certificates"), i, v) {
        field_index_path(path, "certificates", i);
        json_t *cert = add_entity(&fl, ENTITY_CERTIFICATE, v, path, NULL, NULL, true);
        json_array_foreach(json_object_get(v, "snis"), j, child) {
            path_index(cpath, path, "snis", j);
            /* a bare name, as Kong's admin API takes it, or an sni object as exported */
            json_t *sni =
                json_is_string(child) ? json_pack("{s:O}", "name", child) : json_incref(child);
            add_entity(&fl, ENTITY_SNI, sni, cpath, "certificate", str(cert, "id"), true);
            json_decref(sni);
        }
    }
    json_array_foreach(json_object_get(doc, "snis"), i, v) {
        field_index_path(path, "snis", i);
        char what[512];
        long c = model_resolve_ref(fl.model, ENTITY_CERTIFICATE, json_object_get(v, "certificate"),
                                   what, sizeof what);
        if (c < 0) {
            field_error(errs, path, "certificate", "%s", what);
            continue;
        }
        json_t *cert = json_array_get(model_items(fl.model, ENTITY_CERTIFICATE), (size_t)c);
        add_entity(&fl, ENTITY_SNI, v, path, "certificate", str(cert, "id"), true);
    }

    json_array_foreach(json_object_get(doc, "plugins"), i, v) {
        field_index_path(path, "plugins", i);
        json_array_append_new(plugins, json_pack("[O, s, n, n]", v, path));
    }
    json_array_foreach(plugins, i, v) {
        json_t *owner = json_array_get(v, 3);
        add_plugin(&fl, json_array_get(v, 0), json_string_value(json_array_get(v, 1)),
                   json_string_value(json_array_get(v, 2)), json_is_null(owner) ? NULL : owner);
    }
    json_decref(plugins);

    if (errs->n == before) model_check(fl.model, fl.origins, errs);
    if (errs->n != before) {
        json_decref(fl.model);
        json_decref(fl.origins);
        return NULL;
    }
    if (origins)
        *origins = fl.origins;
    else
        json_decref(fl.origins);
    return fl.model;
}

static json_t *without(const json_t *e, const char *field) {
    json_t *c = json_copy((json_t *)e);
    json_object_del(c, field);
    return c;
}

json_t *model_nested_index(const json_t *model, enum entity_kind k) {
    if (!entity_kinds[k].nest_key) return NULL;
    const char *field = entity_kinds[k].refs[0].field;
    json_t *index = json_object();
    size_t i;
    json_t *e;
    json_array_foreach(model_items(model, k), i, e) {
        json_t *list = json_object_get(index, ref_id(e, field));
        if (!list) json_object_set_new(index, ref_id(e, field), list = json_array());
        json_array_append_new(list, json_integer((json_int_t)i));
    }
    return index;
}

json_t *model_export(const json_t *model) {
    json_t *doc = json_pack("{s:s}", "_format_version", "3.0");
    /* owner id -> its nested entities (without the owner field), per nested kind */
    json_t *nested[ENTITY_KINDS] = {0};
    for (int k = 0; k < ENTITY_KINDS; k++) {
        json_t *index = model_nested_index(model, k);
        if (!index) continue;
        nested[k] = json_object();
        const char *owner;
        json_t *positions;
        json_object_foreach(index, owner, positions) {
            json_t *list = json_array();
            size_t j;
            json_t *pos;
            json_array_foreach(positions, j, pos) {
                json_t *child =
                    json_array_get(model_items(model, k), (size_t)json_integer_value(pos));
                json_array_append_new(list, without(child, entity_kinds[k].refs[0].field));
            }
            json_object_set_new(nested[k], owner, list);
        }
        json_decref(index);
    }
    for (int k = 0; k < ENTITY_KINDS; k++) {
        json_t *items = model_items(model, k);
        if (entity_kinds[k].nest_key || !json_array_size(items)) continue;
        json_t *out = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(items, i, e) {
            json_t *copy = NULL;
            for (int c = 0; c < ENTITY_KINDS; c++) {
                if (!nested[c] || entity_kinds[c].refs[0].kind != (enum entity_kind)k) continue;
                json_t *children = json_object_get(nested[c], str(e, "id"));
                if (!children) continue;
                if (!copy) copy = json_copy(e);
                json_object_set(copy, entity_kinds[c].nest_key, children);
            }
            json_array_append_new(out, copy ? copy : json_incref(e));
        }
        json_object_set_new(doc, entity_kinds[k].plural, out);
    }
    for (int k = 0; k < ENTITY_KINDS; k++)
        json_decref(nested[k]);
    return doc;
}
