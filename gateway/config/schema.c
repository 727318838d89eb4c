/* schema.c: compiling a JSON Schema document (regexes, $id/$anchor/$ref resolution) and applying
 * defaults. The keyword checks themselves live in schema_keywords.c. */
#include "config/schema_internal.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PCRE2's JIT reads ahead in the subject, which memcheck reports as use of uninitialised memory
 * (PCRE2 only silences that when built with --enable-valgrind). Under valgrind the interpreter
 * is used instead, so that valgrind runs stay clean and meaningful. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define SCHEMA_UNDER_VALGRIND() RUNNING_ON_VALGRIND
#endif
#endif
#ifndef SCHEMA_UNDER_VALGRIND
#define SCHEMA_UNDER_VALGRIND() 0
#endif

/* Base URI of a document without a root "$id". Any absolute URI works: it only has to let
 * relative references resolve, and a reference that leaves the document is an error anyway. */
#define SCHEMA_DEFAULT_BASE "weir:/schema.json"

static void *schema_xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) abort();
    return p;
}

static char *schema_xstrndup(const char *s, size_t n) {
    char *d = schema_xrealloc(NULL, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* ---------------------------------------------------------------------------------------------
 * Node map: schema object address -> compiled facts. Every walked object is present (node may be
 * NULL), which doubles as the "already walked" set during compilation. */

static size_t schema_ptr_hash(const void *p) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static struct schema_slot *schema_slot_find(const struct schema *s, const json_t *key) {
    if (!s->cap) return NULL;
    size_t mask = s->cap - 1;
    for (size_t i = schema_ptr_hash(key) & mask;; i = (i + 1) & mask) {
        if (s->slots[i].key == key) return &s->slots[i];
        if (!s->slots[i].key) return NULL;
    }
}

/* Returns false when `key` was already present. */
static bool schema_slot_insert(struct schema *s, const json_t *key) {
    if (schema_slot_find(s, key)) return false;
    if ((s->n + 1) * 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 64;
        struct schema_slot *old = s->slots;
        size_t ocap = s->cap;
        s->slots = calloc(ncap, sizeof *s->slots);
        if (!s->slots) abort();
        s->cap = ncap;
        for (size_t i = 0; i < ocap; i++) {
            if (!old[i].key) continue;
            size_t j = schema_ptr_hash(old[i].key) & (ncap - 1);
            while (s->slots[j].key)
                j = (j + 1) & (ncap - 1);
            s->slots[j] = old[i];
        }
        free(old);
    }
    size_t mask = s->cap - 1, i = schema_ptr_hash(key) & mask;
    while (s->slots[i].key)
        i = (i + 1) & mask;
    s->slots[i].key = key;
    s->slots[i].node = NULL;
    s->n++;
    return true;
}

static struct schema_node *schema_node_ensure(struct schema *s, const json_t *obj) {
    struct schema_slot *slot = schema_slot_find(s, obj);
    if (!slot) {
        schema_slot_insert(s, obj);
        slot = schema_slot_find(s, obj);
    }
    if (!slot->node) {
        slot->node = calloc(1, sizeof *slot->node);
        if (!slot->node) abort();
    }
    return slot->node;
}

const struct schema_node *schema_node_find(const struct schema *s, const json_t *obj) {
    const struct schema_slot *slot = schema_slot_find(s, obj);
    return slot ? slot->node : NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Shared helpers */

bool schema_regex_search(const pcre2_code *re, const char *str, size_t len, pcre2_match_data *md) {
    int rc = pcre2_match(re, (PCRE2_SPTR)str, len, 0, 0, md, NULL);
    /* The JIT runs on a 32 KiB stack, which a repeated group outgrows on long strings (a URL
     * path's "(?:[...]|%XX)*" at about 1,400 bytes): the interpreter keeps its backtracking on
     * the heap, bounded by PCRE2's 20 MB heap limit, and answers. */
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(re, (PCRE2_SPTR)str, len, 0, PCRE2_NO_JIT, md, NULL);
    /* Any other PCRE2 failure (match or heap limit, bad UTF-8 from a hand-built string) counts as
     * no match: rejecting is the safe side for a validator. */
    return rc >= 0;
}

bool schema_json_equal(const json_t *a, const json_t *b, unsigned depth) {
    if (depth > SCHEMA_MAX_DEPTH) return false;
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return json_number_value(a) == json_number_value(b);
    }
    if (json_typeof(a) != json_typeof(b)) return false;
    switch (json_typeof(a)) {
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b)) return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!schema_json_equal(json_array_get(a, i), json_array_get(b, i), depth + 1))
                return false;
        return true;
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b)) return false;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v) {
            const json_t *w = json_object_get(b, k);
            if (!w || !schema_json_equal(v, w, depth + 1)) return false;
        }
        return true;
    }
    default:
        return true; /* true, false, null: same type is enough */
    }
}

void schema_path_render(const struct schema_path *p, char *buf, size_t size) {
    const struct schema_path *segs[SCHEMA_MAX_DEPTH + 16];
    size_t n = 0, len = 0;
    bool truncated = false;
    for (; p; p = p->up) {
        if (n == sizeof segs / sizeof *segs) {
            truncated = true; /* keep the innermost segments, they say the most */
            memmove(segs, segs + 1, (n - 1) * sizeof *segs);
            n--;
        }
        segs[n++] = p;
    }
    buf[0] = '\0';
    if (truncated) len += (size_t)snprintf(buf, size, "...");
    for (size_t i = n; i-- > 0 && len < size;) {
        const struct schema_path *s = segs[i];
        if (s->key)
            len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? "." : "", s->key);
        else
            len += (size_t)snprintf(buf + len, size - len, "[%zu]", s->index);
    }
}

/* ---------------------------------------------------------------------------------------------
 * URI references (RFC 3986 section 5), enough to resolve "$id" and "$ref" against a base. */

struct schema_uri {
    char *scheme, *authority, *path, *query, *fragment; /* NULL when absent; path never NULL */
};

static void schema_uri_parse(const char *s, struct schema_uri *u) {
    memset(u, 0, sizeof *u);
    const char *p = s;
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')) {
        const char *q = p;
        while (*q && (strchr("+-.", *q) || (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
                      (*q >= '0' && *q <= '9')))
            q++;
        if (*q == ':') {
            u->scheme = schema_xstrndup(p, (size_t)(q - p));
            p = q + 1;
        }
    }
    if (p[0] == '/' && p[1] == '/') {
        size_t n = strcspn(p + 2, "/?#");
        u->authority = schema_xstrndup(p + 2, n);
        p += 2 + n;
    }
    size_t n = strcspn(p, "?#");
    u->path = schema_xstrndup(p, n);
    p += n;
    if (*p == '?') {
        n = strcspn(p + 1, "#");
        u->query = schema_xstrndup(p + 1, n);
        p += 1 + n;
    }
    if (*p == '#') u->fragment = schema_xstrndup(p + 1, strlen(p + 1));
}

static void schema_uri_clear(struct schema_uri *u) {
    free(u->scheme);
    free(u->authority);
    free(u->path);
    free(u->query);
    free(u->fragment);
}

/* RFC 3986 5.2.4. Scribbles on `in` (callers pass a scratch copy); returns a new string. */
static char *schema_remove_dots(char *in) {
    char *out = schema_xrealloc(NULL, strlen(in) + 1);
    size_t o = 0;
    while (*in) {
        if (!strncmp(in, "../", 3))
            in += 3;
        else if (!strncmp(in, "./", 2))
            in += 2;
        else if (!strncmp(in, "/./", 3))
            in += 2;
        else if (!strcmp(in, "/."))
            in[1] = '\0';
        else if (!strncmp(in, "/../", 4) || !strcmp(in, "/..")) {
            in += 3;
            if (!*in)
                *--in = '/';
            else
                in[0] = '/';
            while (o > 0 && out[--o] != '/') {
            }
        } else if (!strcmp(in, ".") || !strcmp(in, "..")) {
            break;
        } else {
            size_t n = strcspn(in + 1, "/") + 1;
            memcpy(out + o, in, n);
            o += n;
            in += n;
        }
    }
    out[o] = '\0';
    return out;
}

static char *schema_uri_resolve(const char *base, const char *ref) {
    struct schema_uri b, r, t = {0};
    schema_uri_parse(base, &b);
    schema_uri_parse(ref, &r);
    char *tmp = NULL;
    if (r.scheme) {
        t.scheme = r.scheme;
        t.authority = r.authority;
        t.path = tmp = schema_xstrndup(r.path, strlen(r.path));
        t.query = r.query;
    } else {
        t.scheme = b.scheme;
        if (r.authority) {
            t.authority = r.authority;
            t.path = tmp = schema_xstrndup(r.path, strlen(r.path));
            t.query = r.query;
        } else {
            t.authority = b.authority;
            if (!*r.path) {
                t.path = tmp = schema_xstrndup(b.path, strlen(b.path));
                t.query = r.query ? r.query : b.query;
            } else {
                if (r.path[0] == '/') {
                    t.path = tmp = schema_xstrndup(r.path, strlen(r.path));
                } else {
                    /* merge: the base path up to its last '/', then the reference */
                    const char *slash = strrchr(b.path, '/');
                    size_t keep = slash ? (size_t)(slash - b.path) + 1 : 0;
                    bool root = b.authority && !*b.path;
                    tmp = schema_xrealloc(NULL, keep + strlen(r.path) + 2);
                    sprintf(tmp, "%s%.*s%s", root ? "/" : "", (int)keep, b.path, r.path);
                    t.path = tmp;
                }
                t.query = r.query;
            }
        }
    }
    char *path = schema_remove_dots(t.path);
    size_t len = strlen(path) + 8 + (t.scheme ? strlen(t.scheme) : 0) +
                 (t.authority ? strlen(t.authority) : 0) + (t.query ? strlen(t.query) : 0) +
                 (r.fragment ? strlen(r.fragment) : 0);
    char *out = schema_xrealloc(NULL, len);
    snprintf(out, len, "%s%s%s%s%s%s%s%s%s", t.scheme ? t.scheme : "", t.scheme ? ":" : "",
             t.authority ? "//" : "", t.authority ? t.authority : "", path, t.query ? "?" : "",
             t.query ? t.query : "", r.fragment ? "#" : "", r.fragment ? r.fragment : "");
    free(path);
    free(tmp);
    schema_uri_clear(&b);
    schema_uri_clear(&r);
    return out;
}

/* ---------------------------------------------------------------------------------------------
 * Compilation */

struct schema_ident {
    char *uri; /* absolute resource URI, or "resource#anchor" */
    const json_t *node;
    const char *base; /* the resource URI (for anchors: the part before '#') */
};

struct schema_refsite {
    const json_t *node;
    char *uri;   /* absolute */
    char *where; /* schema location, for errors */
};

struct schema_compiler {
    struct schema *s;
    struct errlist *errs;
    bool failed;
    struct schema_ident *ids;
    size_t nids, capids;
    struct schema_refsite *refs;
    size_t nrefs, caprefs;
};

static void schema_compile_error(struct schema_compiler *c, const struct schema_path *at,
                                 const char *fmt, ...) __attribute__((format(printf, 3, 4)));

void schema_vreport(struct errlist *errs, const struct schema_path *at, const char *fmt,
                    va_list ap) {
    if (!errs) return;
    char path[512], msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    schema_path_render(at, path, sizeof path);
    errlist_addf(errs, path, "%s", msg);
}

static void schema_compile_error(struct schema_compiler *c, const struct schema_path *at,
                                 const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    schema_vreport(c->errs, at, fmt, ap);
    va_end(ap);
    c->failed = true;
}

static void schema_add_ident(struct schema_compiler *c, char *uri, const json_t *node) {
    if (c->nids == c->capids) {
        c->capids = c->capids ? c->capids * 2 : 16;
        c->ids = schema_xrealloc(c->ids, c->capids * sizeof *c->ids);
    }
    c->ids[c->nids++] = (struct schema_ident){.uri = uri, .node = node};
}

static const json_t *schema_find_ident(const struct schema_compiler *c, const char *uri) {
    for (size_t i = 0; i < c->nids; i++)
        if (!strcmp(c->ids[i].uri, uri)) return c->ids[i].node;
    return NULL;
}

/* ECMA-262 (JSON Schema's regex dialect) spells Unicode categories long ("\\p{Letter}",
 * "\\p{gc=Lu}"); PCRE2 before 10.43 knows only the short names, so translate those. */
static const char *const schema_gc_names[][2] = {
    {"Letter", "L"},
    {"Cased_Letter", "L&"},
    {"Uppercase_Letter", "Lu"},
    {"Lowercase_Letter", "Ll"},
    {"Titlecase_Letter", "Lt"},
    {"Modifier_Letter", "Lm"},
    {"Other_Letter", "Lo"},
    {"Mark", "M"},
    {"Combining_Mark", "M"},
    {"Nonspacing_Mark", "Mn"},
    {"Spacing_Mark", "Mc"},
    {"Enclosing_Mark", "Me"},
    {"Number", "N"},
    {"Decimal_Number", "Nd"},
    {"digit", "Nd"},
    {"Letter_Number", "Nl"},
    {"Other_Number", "No"},
    {"Punctuation", "P"},
    {"punct", "P"},
    {"Connector_Punctuation", "Pc"},
    {"Dash_Punctuation", "Pd"},
    {"Open_Punctuation", "Ps"},
    {"Close_Punctuation", "Pe"},
    {"Initial_Punctuation", "Pi"},
    {"Final_Punctuation", "Pf"},
    {"Other_Punctuation", "Po"},
    {"Symbol", "S"},
    {"Math_Symbol", "Sm"},
    {"Currency_Symbol", "Sc"},
    {"Modifier_Symbol", "Sk"},
    {"Other_Symbol", "So"},
    {"Separator", "Z"},
    {"Space_Separator", "Zs"},
    {"Line_Separator", "Zl"},
    {"Paragraph_Separator", "Zp"},
    {"Other", "C"},
    {"Control", "Cc"},
    {"cntrl", "Cc"},
    {"Format", "Cf"},
    {"Surrogate", "Cs"},
    {"Private_Use", "Co"},
    {"Unassigned", "Cn"},
};

static char *schema_regex_translate(const char *pat) {
    size_t len = strlen(pat), o = 0;
    char *out = schema_xrealloc(NULL, len + 1); /* translations only ever shorten */
    for (size_t i = 0; i < len;) {
        if (pat[i] == '\\' && (pat[i + 1] == 'p' || pat[i + 1] == 'P') && pat[i + 2] == '{') {
            const char *name = pat + i + 3, *end = strchr(name, '}');
            if (end) {
                size_t n = (size_t)(end - name);
                const char *eq = memchr(name, '=', n);
                if (eq) { /* gc=X, General_Category=X, sc=X, Script=X: PCRE2 takes X alone */
                    n -= (size_t)(eq + 1 - name);
                    name = eq + 1;
                }
                const char *repl = NULL;
                for (size_t k = 0; k < sizeof schema_gc_names / sizeof *schema_gc_names; k++)
                    if (strlen(schema_gc_names[k][0]) == n &&
                        !memcmp(schema_gc_names[k][0], name, n))
                        repl = schema_gc_names[k][1];
                o += (size_t)sprintf(out + o, "\\%c{%.*s}", pat[i + 1],
                                     (int)(repl ? strlen(repl) : n), repl ? repl : name);
                i = (size_t)(end - pat) + 1;
                continue;
            }
        }
        if (pat[i] == '\\' && pat[i + 1]) out[o++] = pat[i++];
        out[o++] = pat[i++];
    }
    out[o] = '\0';
    return out;
}

static pcre2_code *schema_regex_compile(struct schema_compiler *c, const char *pattern,
                                        const struct schema_path *at) {
    int code;
    PCRE2_SIZE offset;
    /* ECMA-262 "$" matches only at the very end; PCRE2's default also matches before a final
     * newline. */
    char *translated = schema_regex_translate(pattern);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)translated, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_DOLLAR_ENDONLY, &code, &offset, NULL);
    free(translated);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        schema_compile_error(c, at, "invalid regex at offset %zu: %s", (size_t)offset,
                             (const char *)msg);
        return NULL;
    }
    if (!SCHEMA_UNDER_VALGRIND())
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* without JIT the interpreter works */
    return re;
}

static void schema_walk(struct schema_compiler *c, const json_t *sch, const char *base,
                        const struct schema_path *at, unsigned depth);

static void schema_walk_child(struct schema_compiler *c, const json_t *sch, const char *base,
                              const struct schema_path *at, const char *key, unsigned depth) {
    struct schema_path p = {.up = at, .key = key};
    schema_walk(c, sch, base, &p, depth);
}

static const char *const schema_single_keys[] = {"additionalProperties",
                                                 "items",
                                                 "contains",
                                                 "propertyNames",
                                                 "not",
                                                 "if",
                                                 "then",
                                                 "else",
                                                 "unevaluatedItems",
                                                 "unevaluatedProperties",
                                                 "contentSchema"};
static const char *const schema_array_keys[] = {"allOf", "anyOf", "oneOf", "prefixItems"};
static const char *const schema_map_keys[] = {"properties", "patternProperties", "$defs",
                                              "definitions", "dependentSchemas"};
static const char *const schema_type_names[] = {"null",   "boolean", "object", "array",
                                                "number", "string",  "integer"};

static void schema_check_type(struct schema_compiler *c, const json_t *type,
                              const struct schema_path *at) {
    const json_t *one = type;
    size_t n = json_is_array(type) ? json_array_size(type) : 1;
    for (size_t i = 0; i < n; i++) {
        if (json_is_array(type)) one = json_array_get(type, i);
        bool known = false;
        for (size_t k = 0; json_is_string(one) && k < 7; k++)
            known |= !strcmp(json_string_value(one), schema_type_names[k]);
        if (!known)
            schema_compile_error(c, at, "unknown type %s",
                                 json_is_string(one) ? json_string_value(one) : "(not a string)");
    }
}

static void schema_walk(struct schema_compiler *c, const json_t *sch, const char *base,
                        const struct schema_path *at, unsigned depth) {
    if (json_is_boolean(sch)) return;
    if (!json_is_object(sch)) {
        schema_compile_error(c, at, "expected a schema (an object or a boolean)");
        return;
    }
    if (depth > SCHEMA_MAX_RECURSION) {
        schema_compile_error(c, at, "schema nested too deeply");
        return;
    }
    if (!schema_slot_insert(c->s, sch)) return; /* already walked (shared or $ref'd) */

    char *own = NULL;
    const json_t *v = json_object_get(sch, "$id");
    if (json_is_string(v)) {
        own = schema_uri_resolve(base, json_string_value(v));
        char *hash = strchr(own, '#'); /* "$id" may end in an empty fragment */
        if (hash) *hash = '\0';
        schema_add_ident(c, schema_xstrndup(own, strlen(own)), sch);
        base = own;
    }
    const char *anchor_keys[] = {"$anchor", "$dynamicAnchor"};
    for (size_t i = 0; i < 2; i++) {
        v = json_object_get(sch, anchor_keys[i]);
        if (!json_is_string(v)) continue;
        size_t len = strlen(base) + json_string_length(v) + 2;
        char *uri = schema_xrealloc(NULL, len);
        snprintf(uri, len, "%s#%s", base, json_string_value(v));
        if (!schema_find_ident(c, uri))
            schema_add_ident(c, uri, sch);
        else
            free(uri);
    }
    v = json_object_get(sch, "$ref");
    if (v) {
        struct schema_path p = {.up = at, .key = "$ref"};
        if (!json_is_string(v)) {
            schema_compile_error(c, &p, "expected a string");
        } else {
            if (c->nrefs == c->caprefs) {
                c->caprefs = c->caprefs ? c->caprefs * 2 : 16;
                c->refs = schema_xrealloc(c->refs, c->caprefs * sizeof *c->refs);
            }
            char where[512];
            schema_path_render(&p, where, sizeof where);
            c->refs[c->nrefs++] =
                (struct schema_refsite){.node = sch,
                                        .uri = schema_uri_resolve(base, json_string_value(v)),
                                        .where = schema_xstrndup(where, strlen(where))};
        }
    }
    v = json_object_get(sch, "type");
    if (v) schema_check_type(c, v, &(struct schema_path){.up = at, .key = "type"});
    v = json_object_get(sch, "errorMessage");
    if (v && !json_is_string(v))
        schema_compile_error(c, &(struct schema_path){.up = at, .key = "errorMessage"},
                             "expected a string");
    v = json_object_get(sch, "pattern");
    if (json_is_string(v)) {
        pcre2_code *re =
            schema_regex_compile(c, json_string_value(v), &(struct schema_path){at, "pattern", 0});
        if (re) schema_node_ensure(c->s, sch)->pattern = re;
    }
    v = json_object_get(sch, "patternProperties");
    if (json_object_size(v)) {
        struct schema_node *node = schema_node_ensure(c->s, sch);
        node->pp = schema_xrealloc(NULL, json_object_size(v) * sizeof *node->pp);
        struct schema_path pp = {.up = at, .key = "patternProperties"};
        const char *k;
        json_t *sub;
        json_object_foreach((json_t *)v, k, sub) {
            pcre2_code *re = schema_regex_compile(c, k, &(struct schema_path){&pp, k, 0});
            if (re) node->pp[node->npp++] = (struct schema_pattern_prop){k, re, sub};
        }
    }

    for (size_t i = 0; i < sizeof schema_single_keys / sizeof *schema_single_keys; i++) {
        v = json_object_get(sch, schema_single_keys[i]);
        if (v) schema_walk_child(c, v, base, at, schema_single_keys[i], depth + 1);
    }
    for (size_t i = 0; i < sizeof schema_array_keys / sizeof *schema_array_keys; i++) {
        v = json_object_get(sch, schema_array_keys[i]);
        if (!v) continue;
        struct schema_path p = {.up = at, .key = schema_array_keys[i]};
        if (!json_is_array(v)) {
            schema_compile_error(c, &p, "expected an array of schemas");
            continue;
        }
        for (size_t j = 0; j < json_array_size(v); j++) {
            struct schema_path item = {.up = &p, .index = j};
            schema_walk(c, json_array_get(v, j), base, &item, depth + 1);
        }
    }
    for (size_t i = 0; i < sizeof schema_map_keys / sizeof *schema_map_keys; i++) {
        v = json_object_get(sch, schema_map_keys[i]);
        if (!v) continue;
        struct schema_path p = {.up = at, .key = schema_map_keys[i]};
        if (!json_is_object(v)) {
            schema_compile_error(c, &p, "expected an object of schemas");
            continue;
        }
        const char *k;
        json_t *sub;
        json_object_foreach((json_t *)v, k, sub) schema_walk_child(c, sub, base, &p, k, depth + 1);
    }
    free(own);
}

static int schema_hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Follows a JSON pointer taken from a URI fragment: %XX-decoded first, then ~1 and ~0. */
static const json_t *schema_pointer(const json_t *root, const char *frag) {
    const json_t *cur = root;
    const char *p = frag;
    while (*p == '/' && cur) {
        p++;
        size_t n = strcspn(p, "/");
        char *tok = schema_xrealloc(NULL, n + 1);
        size_t t = 0;
        for (size_t i = 0; i < n; i++) {
            if (p[i] == '%' && i + 2 < n && schema_hexval(p[i + 1]) >= 0 &&
                schema_hexval(p[i + 2]) >= 0) {
                tok[t++] = (char)(schema_hexval(p[i + 1]) * 16 + schema_hexval(p[i + 2]));
                i += 2;
            } else {
                tok[t++] = p[i];
            }
        }
        size_t w = 0;
        for (size_t i = 0; i < t; i++) {
            if (tok[i] == '~' && i + 1 < t && (tok[i + 1] == '0' || tok[i + 1] == '1'))
                tok[w++] = tok[++i] == '0' ? '~' : '/';
            else
                tok[w++] = tok[i];
        }
        tok[w] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur) && w > 0 && strspn(tok, "0123456789") == w &&
                   (w == 1 || tok[0] != '0')) {
            cur = json_array_get(cur, strtoul(tok, NULL, 10));
        } else {
            cur = NULL;
        }
        free(tok);
        p += n;
    }
    return *p ? NULL : cur;
}

static void schema_resolve_refs(struct schema_compiler *c) {
    /* Walking a $ref target can append further ref sites, hence the index loop. */
    for (size_t i = 0; i < c->nrefs; i++) {
        const json_t *site = c->refs[i].node;
        char *uri = c->refs[i].uri;
        struct schema_path where = {.key = c->refs[i].where};
        char *hash = strchr(uri, '#');
        char *frag = hash ? hash + 1 : NULL;
        if (hash) *hash = '\0';
        const json_t *resource = schema_find_ident(c, uri);
        const json_t *target = NULL;
        if (!resource) {
            schema_compile_error(
                c, &where, "cannot resolve \"%s\" (remote references are not supported)", uri);
        } else if (!frag || !*frag) {
            target = resource;
        } else if (*frag == '/') {
            target = schema_pointer(resource, frag);
        } else {
            *hash = '#';
            target = schema_find_ident(c, uri);
            *hash = '\0';
        }
        if (resource && !target) {
            *hash = '#';
            schema_compile_error(c, &where, "\"%s\" points to nothing in this document", uri);
            *hash = '\0';
        }
        if (!target) continue;
        if (!schema_slot_find(c->s, target)) {
            /* a pointer into a place the walk did not visit (e.g. an unknown keyword) */
            struct schema_path p = {.key = c->refs[i].where};
            schema_walk(c, target, uri, &p, 0);
        }
        schema_node_ensure(c->s, site)->ref = target;
    }
}

struct schema *schema_compile(json_t *doc, struct errlist *errs) {
    struct schema *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->doc = json_incref(doc);
    struct schema_compiler c = {.s = s, .errs = errs};
    schema_add_ident(&c, schema_xstrndup(SCHEMA_DEFAULT_BASE, strlen(SCHEMA_DEFAULT_BASE)), doc);
    schema_walk(&c, doc, SCHEMA_DEFAULT_BASE, NULL, 0);
    schema_resolve_refs(&c);
    for (size_t i = 0; i < c.nids; i++)
        free(c.ids[i].uri);
    free(c.ids);
    for (size_t i = 0; i < c.nrefs; i++) {
        free(c.refs[i].uri);
        free(c.refs[i].where);
    }
    free(c.refs);
    if (c.failed) {
        schema_free(s);
        return NULL;
    }
    return s;
}

const json_t *schema_document(const struct schema *s) {
    return s->doc;
}

void schema_free(struct schema *s) {
    if (!s) return;
    for (size_t i = 0; i < s->cap; i++) {
        struct schema_node *n = s->slots[i].node;
        if (!n) continue;
        if (n->pattern) pcre2_code_free(n->pattern);
        for (size_t j = 0; j < n->npp; j++)
            pcre2_code_free(n->pp[j].re);
        free(n->pp);
        free(n);
    }
    free(s->slots);
    json_decref(s->doc);
    free(s);
}

/* ---------------------------------------------------------------------------------------------
 * Defaults */

/* The "default" a property schema declares, looking through a chain of $refs. */
static const json_t *schema_find_default(const struct schema *s, const json_t *sch) {
    for (unsigned hops = 0; json_is_object(sch) && hops < 32; hops++) {
        const json_t *def = json_object_get(sch, "default");
        if (def) return def;
        const struct schema_node *n = schema_node_find(s, sch);
        sch = n ? n->ref : NULL;
    }
    return NULL;
}

static void schema_defaults(const struct schema *s, const json_t *sch, json_t *inst,
                            pcre2_match_data *md, unsigned depth) {
    if (!json_is_object(sch) || depth > SCHEMA_MAX_RECURSION) return;
    const struct schema_node *node = schema_node_find(s, sch);
    if (node && node->ref) schema_defaults(s, node->ref, inst, md, depth + 1);
    const json_t *all = json_object_get(sch, "allOf");
    for (size_t i = 0; i < json_array_size(all); i++)
        schema_defaults(s, json_array_get(all, i), inst, md, depth + 1);

    if (json_is_object(inst)) {
        const json_t *props = json_object_get(sch, "properties");
        const char *k;
        json_t *sub;
        if (json_is_object(props)) {
            json_object_foreach((json_t *)props, k, sub) {
                json_t *have = json_object_get(inst, k);
                const json_t *def;
                if (!have && (def = schema_find_default(s, sub)))
                    json_object_set_new(inst, k, json_deep_copy(def));
                if ((have = json_object_get(inst, k))) schema_defaults(s, sub, have, md, depth + 1);
            }
        }
        const json_t *extra = json_object_get(sch, "additionalProperties");
        size_t npp = node ? node->npp : 0;
        if (!npp && !json_is_object(extra)) return;
        json_t *val;
        json_object_foreach(inst, k, val) {
            if (json_is_object(props) && json_object_get(props, k)) continue;
            bool matched = false;
            for (size_t i = 0; i < npp; i++) {
                if (!schema_regex_search(node->pp[i].re, k, strlen(k), md)) continue;
                matched = true;
                schema_defaults(s, node->pp[i].schema, val, md, depth + 1);
            }
            if (!matched) schema_defaults(s, extra, val, md, depth + 1);
        }
    } else if (json_is_array(inst)) {
        const json_t *prefix = json_object_get(sch, "prefixItems");
        const json_t *items = json_object_get(sch, "items");
        for (size_t i = 0; i < json_array_size(inst); i++) {
            const json_t *isch = i < json_array_size(prefix) ? json_array_get(prefix, i) : items;
            schema_defaults(s, isch, json_array_get(inst, i), md, depth + 1);
        }
    }
}

json_t *schema_apply_defaults(const struct schema *s, const json_t *instance) {
    json_t *out = json_deep_copy(instance);
    if (!out) return NULL;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) abort();
    schema_defaults(s, s->doc, out, md, 0);
    pcre2_match_data_free(md);
    return out;
}
