/* schema_keywords.c: checking an instance against a compiled schema, one function per keyword
 * family. Error messages are what admin API clients and `weir -t` users read, so they say what
 * was expected in plain words and name the field path, never the schema location. */
#include "config/schema_internal.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct schema_ctx {
    const struct schema *s;
    struct errlist *errs; /* NULL: only the verdict matters, stop at the first problem */
    pcre2_match_data *md; /* per schema_validate() call, so one schema serves many threads */
};

static bool schema_check(const struct schema_ctx *c, const json_t *sch, const json_t *inst,
                         const struct schema_path *at, unsigned idepth, unsigned rdepth);

static bool schema_fail(const struct schema_ctx *c, const struct schema_path *at, const char *fmt,
                        ...) __attribute__((format(printf, 3, 4)));

static bool schema_fail(const struct schema_ctx *c, const struct schema_path *at, const char *fmt,
                        ...) {
    va_list ap;
    va_start(ap, fmt);
    schema_vreport(c->errs, at, fmt, ap);
    va_end(ap);
    return false;
}

/* Compact JSON for messages; 15 digits so that 0.1 reads as 0.1. */
static const char *schema_dump(const json_t *v, char *buf, size_t size) {
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    snprintf(buf, size, "%s", s ? s : "?");
    free(s);
    return buf;
}

/* Collects a keyword's verdict; in verdict-only mode the first failure ends the check. */
#define SCHEMA_STEP(expr)                                                                          \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            ok = false;                                                                            \
            if (!c->errs) return false;                                                            \
        }                                                                                          \
    } while (0)

/* ---------------------------------------------------------------------------------------------
 * type, enum, const */

/* libm-free helpers: the gateway links without -lm. Doubles at or beyond 2^52 are integers. */
static bool schema_double_is_integral(double d) {
    if (!isfinite(d)) return false;
    if (d >= 4503599627370496.0 || d <= -4503599627370496.0) return true;
    return (double)(long long)d == d;
}

static double schema_distance_to_integer(double q) {
    if (q >= 4503599627370496.0 || q <= -4503599627370496.0) return 0;
    double r = (double)(long long)(q + (q >= 0 ? 0.5 : -0.5));
    return q > r ? q - r : r - q;
}

static bool schema_is_integer(const json_t *v) {
    if (json_is_integer(v)) return true;
    /* 1.0 is an integer, as the spec says */
    return json_is_real(v) && schema_double_is_integral(json_real_value(v));
}

static bool schema_type_is(const char *name, const json_t *v) {
    switch (name[0]) {
    case 'n':
        return !strcmp(name, "null") ? json_is_null(v) : json_is_number(v);
    case 'b':
        return json_is_boolean(v);
    case 'o':
        return json_is_object(v);
    case 'a':
        return json_is_array(v);
    case 's':
        return json_is_string(v);
    case 'i':
        return schema_is_integer(v);
    default:
        return false;
    }
}

static const char *schema_type_phrase(const char *name) {
    static const char *const names[][2] = {
        {"null", "null"},          {"boolean", "a boolean"}, {"object", "an object"},
        {"array", "an array"},     {"number", "a number"},   {"string", "a string"},
        {"integer", "an integer"},
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(name, names[i][0])) return names[i][1];
    return name;
}

static bool schema_check_type(const struct schema_ctx *c, const json_t *type, const json_t *inst,
                              const struct schema_path *at) {
    if (json_is_string(type)) {
        if (schema_type_is(json_string_value(type), inst)) return true;
        return schema_fail(c, at, "expected %s", schema_type_phrase(json_string_value(type)));
    }
    char msg[256] = "";
    size_t len = 0, n = json_array_size(type);
    for (size_t i = 0; i < n; i++) {
        const char *name = json_string_value(json_array_get(type, i));
        if (!name) continue;
        if (schema_type_is(name, inst)) return true;
        len += (size_t)snprintf(msg + len, len < sizeof msg ? sizeof msg - len : 0, "%s%s",
                                i == 0       ? ""
                                : i + 1 == n ? " or "
                                             : ", ",
                                schema_type_phrase(name));
        if (len >= sizeof msg) len = sizeof msg - 1;
    }
    return schema_fail(c, at, "expected %s", msg);
}

static bool schema_check_enum(const struct schema_ctx *c, const json_t *values, const json_t *inst,
                              const struct schema_path *at) {
    if (!json_is_array(values)) return true;
    for (size_t i = 0; i < json_array_size(values); i++)
        if (schema_json_equal(json_array_get(values, i), inst, 0)) return true;
    if (!c->errs) return false;
    if (json_array_size(values) == 0) return schema_fail(c, at, "value not allowed");
    char msg[400] = "", one[200];
    size_t len = 0;
    for (size_t i = 0; i < json_array_size(values); i++) {
        schema_dump(json_array_get(values, i), one, sizeof one);
        if (len + strlen(one) + 8 > sizeof msg) {
            snprintf(msg + len, sizeof msg - len, ", ...");
            break;
        }
        len += (size_t)snprintf(msg + len, sizeof msg - len, "%s%s", i ? ", " : "", one);
    }
    return schema_fail(c, at, "expected one of: %s", msg);
}

/* ---------------------------------------------------------------------------------------------
 * numbers */

static int schema_num_cmp(const json_t *a, const json_t *b) {
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return (x > y) - (x < y);
    }
    double x = json_number_value(a), y = json_number_value(b);
    return (x > y) - (x < y);
}

static bool schema_is_multiple(const json_t *x, const json_t *m) {
    if (json_is_integer(x) && json_is_integer(m)) {
        json_int_t d = json_integer_value(m);
        return d <= 0 || json_integer_value(x) % d == 0;
    }
    double dm = json_number_value(m);
    if (!(dm > 0)) return true; /* an invalid schema value constrains nothing */
    double q = json_number_value(x) / dm;
    if (!isfinite(q)) return false;
    /* 0.0075 / 0.0001 is 74.99999999999999 in binary floating point: accept a quotient within a
     * few units in the last place of an integer, which no genuine non-multiple comes close to. */
    return schema_distance_to_integer(q) <= (q >= 0 ? q : -q) * 8 * DBL_EPSILON;
}

static bool schema_check_number(const struct schema_ctx *c, const json_t *sch, const json_t *inst,
                                const struct schema_path *at) {
    bool ok = true;
    char num[64];
    const json_t *v;
    if (json_is_number(v = json_object_get(sch, "minimum")) && schema_num_cmp(inst, v) < 0)
        SCHEMA_STEP(schema_fail(c, at, "must be at least %s", schema_dump(v, num, sizeof num)));
    if (json_is_number(v = json_object_get(sch, "maximum")) && schema_num_cmp(inst, v) > 0)
        SCHEMA_STEP(schema_fail(c, at, "must be at most %s", schema_dump(v, num, sizeof num)));
    if (json_is_number(v = json_object_get(sch, "exclusiveMinimum")) &&
        schema_num_cmp(inst, v) <= 0)
        SCHEMA_STEP(schema_fail(c, at, "must be greater than %s", schema_dump(v, num, sizeof num)));
    if (json_is_number(v = json_object_get(sch, "exclusiveMaximum")) &&
        schema_num_cmp(inst, v) >= 0)
        SCHEMA_STEP(schema_fail(c, at, "must be less than %s", schema_dump(v, num, sizeof num)));
    if (json_is_number(v = json_object_get(sch, "multipleOf")) && !schema_is_multiple(inst, v))
        SCHEMA_STEP(
            schema_fail(c, at, "must be a multiple of %s", schema_dump(v, num, sizeof num)));
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * strings */

static size_t schema_utf8_length(const char *s, size_t bytes) {
    size_t n = 0;
    for (size_t i = 0; i < bytes; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

static bool schema_check_string(const struct schema_ctx *c, const json_t *sch, const json_t *inst,
                                const struct schema_node *node, const struct schema_path *at) {
    bool ok = true;
    const char *str = json_string_value(inst);
    size_t bytes = json_string_length(inst);
    const json_t *min = json_object_get(sch, "minLength"), *max = json_object_get(sch, "maxLength");
    if (json_is_number(min) || json_is_number(max)) {
        double len = (double)schema_utf8_length(str, bytes);
        if (json_is_number(min) && len < json_number_value(min))
            SCHEMA_STEP(schema_fail(c, at, "must be at least %.0f character%s long",
                                    json_number_value(min),
                                    json_number_value(min) == 1 ? "" : "s"));
        if (json_is_number(max) && len > json_number_value(max))
            SCHEMA_STEP(schema_fail(c, at, "must be at most %.0f character%s long",
                                    json_number_value(max),
                                    json_number_value(max) == 1 ? "" : "s"));
    }
    if (node && node->pattern && !schema_regex_search(node->pattern, str, bytes, c->md)) {
        /* A long pattern tells an operator nothing; the schema's errorMessage should say more. */
        const char *pattern = json_string_value(json_object_get(sch, "pattern"));
        if (schema_utf8_length(pattern, strlen(pattern)) > SCHEMA_PATTERN_SHOWN_MAX)
            SCHEMA_STEP(schema_fail(c, at, "does not match the expected format"));
        else
            SCHEMA_STEP(schema_fail(c, at, "does not match pattern %s", pattern));
    }
    /* "format" is an annotation in 2020-12; Weir asserts one format, "regex", with PCRE2 (the
     * engine plugins match with), so a bad regex in a plugin config is a config error. */
    const char *format = json_string_value(json_object_get(sch, "format"));
    if (format && !strcmp(format, "regex")) {
        int err;
        PCRE2_SIZE offset;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)str, bytes, PCRE2_UTF, &err, &offset, NULL);
        if (re) {
            pcre2_code_free(re);
        } else {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            SCHEMA_STEP(schema_fail(c, at, "must be a regular expression: %s at offset %zu",
                                    (const char *)msg, (size_t)offset));
        }
    }
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * arrays */

static bool schema_check_array(const struct schema_ctx *c, const json_t *sch, const json_t *inst,
                               const struct schema_path *at, unsigned idepth, unsigned rdepth) {
    bool ok = true;
    size_t n = json_array_size(inst);
    const json_t *v;
    const json_t *prefix = json_object_get(sch, "prefixItems");
    size_t nprefix = json_array_size(prefix);
    for (size_t i = 0; i < n && i < nprefix; i++) {
        struct schema_path p = {.up = at, .index = i};
        SCHEMA_STEP(schema_check(c, json_array_get(prefix, i), json_array_get(inst, i), &p,
                                 idepth + 1, rdepth + 1));
    }
    const json_t *items = json_object_get(sch, "items");
    if (json_is_false(items) && n > nprefix) {
        SCHEMA_STEP(schema_fail(c, at, "expected at most %zu items", nprefix));
    } else if (items) {
        for (size_t i = nprefix; i < n; i++) {
            struct schema_path p = {.up = at, .index = i};
            SCHEMA_STEP(
                schema_check(c, items, json_array_get(inst, i), &p, idepth + 1, rdepth + 1));
        }
    }
    if ((v = json_object_get(sch, "contains"))) {
        struct schema_ctx quiet = *c;
        quiet.errs = NULL;
        size_t hits = 0;
        for (size_t i = 0; i < n; i++) {
            struct schema_path p = {.up = at, .index = i};
            hits += schema_check(&quiet, v, json_array_get(inst, i), &p, idepth + 1, rdepth + 1);
        }
        const json_t *mn = json_object_get(sch, "minContains");
        const json_t *mx = json_object_get(sch, "maxContains");
        double least = json_is_number(mn) ? json_number_value(mn) : 1;
        if ((double)hits < least)
            SCHEMA_STEP(schema_fail(c, at, "expected at least %.0f item%s matching \"contains\"",
                                    least, least == 1 ? "" : "s"));
        if (json_is_number(mx) && (double)hits > json_number_value(mx))
            SCHEMA_STEP(schema_fail(c, at, "expected at most %.0f items matching \"contains\"",
                                    json_number_value(mx)));
    }
    if (json_is_number(v = json_object_get(sch, "minItems")) && (double)n < json_number_value(v))
        SCHEMA_STEP(schema_fail(c, at, "expected at least %.0f item%s", json_number_value(v),
                                json_number_value(v) == 1 ? "" : "s"));
    if (json_is_number(v = json_object_get(sch, "maxItems")) && (double)n > json_number_value(v))
        SCHEMA_STEP(schema_fail(c, at, "expected at most %.0f item%s", json_number_value(v),
                                json_number_value(v) == 1 ? "" : "s"));
    if (json_is_true(json_object_get(sch, "uniqueItems"))) {
        /* quadratic, but arrays in configuration are short and the check is exact */
        for (size_t i = 0; i < n; i++) {
            for (size_t j = i + 1; j < n; j++) {
                if (!schema_json_equal(json_array_get(inst, i), json_array_get(inst, j), 0))
                    continue;
                SCHEMA_STEP(schema_fail(
                    c, at, "expected unique items (items %zu and %zu are equal)", i, j));
                i = j = n; /* one report is enough */
            }
        }
    }
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * objects */

static bool schema_check_object(const struct schema_ctx *c, const json_t *sch, const json_t *inst,
                                const struct schema_node *node, const struct schema_path *at,
                                unsigned idepth, unsigned rdepth) {
    bool ok = true;
    const json_t *v;
    const char *k;
    json_t *val;

    v = json_object_get(sch, "required");
    for (size_t i = 0; i < json_array_size(v); i++) {
        const char *name = json_string_value(json_array_get(v, i));
        struct schema_path p = {.up = at, .key = name};
        if (name && !json_object_get(inst, name))
            SCHEMA_STEP(schema_fail(c, &p, "required field missing"));
    }
    const json_t *props = json_object_get(sch, "properties");
    const json_t *extra = json_object_get(sch, "additionalProperties");
    size_t npp = node ? node->npp : 0;
    if (json_is_object(props) || npp || extra) {
        json_object_foreach((json_t *)inst, k, val) {
            struct schema_path p = {.up = at, .key = k};
            bool known = false;
            const json_t *sub = json_is_object(props) ? json_object_get(props, k) : NULL;
            if (sub) {
                known = true;
                SCHEMA_STEP(schema_check(c, sub, val, &p, idepth + 1, rdepth + 1));
            }
            for (size_t i = 0; i < npp; i++) {
                if (!schema_regex_search(node->pp[i].re, k, strlen(k), c->md)) continue;
                known = true;
                SCHEMA_STEP(schema_check(c, node->pp[i].schema, val, &p, idepth + 1, rdepth + 1));
            }
            if (known || !extra) continue;
            if (json_is_false(extra))
                SCHEMA_STEP(schema_fail(c, &p, "unknown field"));
            else
                SCHEMA_STEP(schema_check(c, extra, val, &p, idepth + 1, rdepth + 1));
        }
    }
    if ((v = json_object_get(sch, "propertyNames"))) {
        struct schema_ctx quiet = *c;
        quiet.errs = NULL;
        /* With an errorMessage the name's own field reports it, as the loader does; without,
         * the object reports the name, since a name has no path of its own. */
        const json_t *message = json_object_get(v, "errorMessage");
        json_object_foreach((json_t *)inst, k, val) {
            json_t *name = json_string(k);
            bool good = schema_check(&quiet, v, name, at, idepth + 1, rdepth + 1);
            json_decref(name);
            struct schema_path p = {.up = at, .key = k};
            if (!good && json_is_string(message))
                SCHEMA_STEP(schema_fail(c, &p, "%s", json_string_value(message)));
            else if (!good)
                SCHEMA_STEP(schema_fail(c, at, "invalid field name \"%s\"", k));
        }
    }
    double size = (double)json_object_size(inst);
    if (json_is_number(v = json_object_get(sch, "minProperties")) && size < json_number_value(v))
        SCHEMA_STEP(schema_fail(c, at, "expected at least %.0f field%s", json_number_value(v),
                                json_number_value(v) == 1 ? "" : "s"));
    if (json_is_number(v = json_object_get(sch, "maxProperties")) && size > json_number_value(v))
        SCHEMA_STEP(schema_fail(c, at, "expected at most %.0f field%s", json_number_value(v),
                                json_number_value(v) == 1 ? "" : "s"));
    if (json_is_object(v = json_object_get(sch, "dependentRequired"))) {
        const json_t *deps;
        json_object_foreach((json_t *)v, k, deps) {
            if (!json_object_get(inst, k)) continue;
            for (size_t i = 0; i < json_array_size(deps); i++) {
                const char *name = json_string_value(json_array_get(deps, i));
                struct schema_path p = {.up = at, .key = name};
                if (name && !json_object_get(inst, name))
                    SCHEMA_STEP(
                        schema_fail(c, &p, "required field missing (because \"%s\" is set)", k));
            }
        }
    }
    if (json_is_object(v = json_object_get(sch, "dependentSchemas"))) {
        const json_t *sub;
        json_object_foreach((json_t *)v, k, sub) {
            if (json_object_get(inst, k))
                SCHEMA_STEP(schema_check(c, sub, inst, at, idepth, rdepth + 1));
        }
    }
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * in-place applicators: allOf, anyOf, oneOf, not, if/then/else */

static bool schema_check_logic(const struct schema_ctx *c, const json_t *sch, const json_t *inst,
                               const struct schema_path *at, unsigned idepth, unsigned rdepth) {
    bool ok = true;
    struct schema_ctx quiet = *c;
    quiet.errs = NULL;
    const json_t *v;
    if (json_is_array(v = json_object_get(sch, "allOf"))) {
        for (size_t i = 0; i < json_array_size(v); i++)
            SCHEMA_STEP(schema_check(c, json_array_get(v, i), inst, at, idepth, rdepth + 1));
    }
    if (json_is_array(v = json_object_get(sch, "anyOf"))) {
        bool any = false;
        for (size_t i = 0; i < json_array_size(v) && !any; i++)
            any = schema_check(&quiet, json_array_get(v, i), inst, at, idepth, rdepth + 1);
        if (!any) SCHEMA_STEP(schema_fail(c, at, "does not match any of the allowed alternatives"));
    }
    if (json_is_array(v = json_object_get(sch, "oneOf"))) {
        size_t hits = 0;
        for (size_t i = 0; i < json_array_size(v) && hits < 2; i++)
            hits += schema_check(&quiet, json_array_get(v, i), inst, at, idepth, rdepth + 1);
        if (hits == 0)
            SCHEMA_STEP(schema_fail(c, at, "does not match any of the allowed alternatives"));
        else if (hits > 1)
            SCHEMA_STEP(schema_fail(c, at,
                                    "matches more than one alternative, expected exactly "
                                    "one"));
    }
    if ((v = json_object_get(sch, "not")) && schema_check(&quiet, v, inst, at, idepth, rdepth + 1))
        SCHEMA_STEP(schema_fail(c, at, "must not match the schema in \"not\""));
    if ((v = json_object_get(sch, "if"))) {
        const json_t *branch = schema_check(&quiet, v, inst, at, idepth, rdepth + 1)
                                   ? json_object_get(sch, "then")
                                   : json_object_get(sch, "else");
        if (branch) SCHEMA_STEP(schema_check(c, branch, inst, at, idepth, rdepth + 1));
    }
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * one schema object */

/* Every keyword of one schema object (an object, not a boolean) against `inst`. */
static bool schema_check_keywords(const struct schema_ctx *c, const json_t *sch, const json_t *inst,
                                  const struct schema_path *at, unsigned idepth, unsigned rdepth) {
    bool ok = true;
    const json_t *v;
    const struct schema_node *node = schema_node_find(c->s, sch);
    /* A wrong type makes every other keyword moot; one message says it all. */
    if ((v = json_object_get(sch, "type")) && !schema_check_type(c, v, inst, at)) return false;
    if (node && node->ref) SCHEMA_STEP(schema_check(c, node->ref, inst, at, idepth, rdepth + 1));
    if ((v = json_object_get(sch, "enum"))) SCHEMA_STEP(schema_check_enum(c, v, inst, at));
    if ((v = json_object_get(sch, "const")) && !schema_json_equal(v, inst, 0)) {
        char want[256];
        SCHEMA_STEP(schema_fail(c, at, "expected %s", schema_dump(v, want, sizeof want)));
    }
    if (json_is_number(inst))
        SCHEMA_STEP(schema_check_number(c, sch, inst, at));
    else if (json_is_string(inst))
        SCHEMA_STEP(schema_check_string(c, sch, inst, node, at));
    else if (json_is_array(inst))
        SCHEMA_STEP(schema_check_array(c, sch, inst, at, idepth, rdepth));
    else if (json_is_object(inst))
        SCHEMA_STEP(schema_check_object(c, sch, inst, node, at, idepth, rdepth));
    SCHEMA_STEP(schema_check_logic(c, sch, inst, at, idepth, rdepth));
    return ok;
}

static bool schema_check(const struct schema_ctx *c, const json_t *sch, const json_t *inst,
                         const struct schema_path *at, unsigned idepth, unsigned rdepth) {
    if (json_is_true(sch)) return true;
    if (json_is_false(sch)) return schema_fail(c, at, "value not allowed");
    if (!json_is_object(sch)) return true; /* compilation rejects these; be lenient anyway */
    if (idepth > SCHEMA_MAX_DEPTH)
        return schema_fail(c, at, "nested too deeply (more than %d levels)", SCHEMA_MAX_DEPTH);
    if (rdepth > SCHEMA_MAX_RECURSION)
        return schema_fail(c, at, "schema recursion too deep (circular $ref?)");

    /* Weir's "errorMessage": one message of the schema's author replaces whatever the keywords
     * inside this object would say. The verdict is the same either way, so the quiet check that
     * decides it stops at the first problem. */
    const json_t *message = json_object_get(sch, "errorMessage");
    if (json_is_string(message) && c->errs) {
        struct schema_ctx quiet = *c;
        quiet.errs = NULL;
        if (schema_check_keywords(&quiet, sch, inst, at, idepth, rdepth)) return true;
        return schema_fail(c, at, "%s", json_string_value(message));
    }
    return schema_check_keywords(c, sch, inst, at, idepth, rdepth);
}

bool schema_validate_at(const struct schema *s, const json_t *instance, const char *base,
                        struct errlist *errs) {
    if (!instance) {
        if (errs) errlist_addf(errs, base, "expected a value");
        return false;
    }
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) abort();
    struct schema_ctx c = {.s = s, .errs = errs, .md = md};
    size_t before = errs ? errs->n : 0;
    /* the base is one segment rendered as written */
    struct schema_path root = {.key = base};
    bool ok = schema_check(&c, s->doc, instance, base && *base ? &root : NULL, 0, 0);
    pcre2_match_data_free(md);
    /* Every failing path reports; this only guards the promise "invalid means a message". */
    if (!ok && errs && errs->n == before) errlist_addf(errs, base, "invalid value");
    return ok;
}

bool schema_validate(const struct schema *s, const json_t *instance, struct errlist *errs) {
    return schema_validate_at(s, instance, NULL, errs);
}
