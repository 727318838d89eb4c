/* The official JSON-Schema-Test-Suite (draft 2020-12) for every keyword the validator supports:
 * one cmocka test per file, failing with the description of each case that disagrees with the
 * suite's "valid". Cases that need documents from outside the schema (remote refs, the draft
 * meta-schema) are skipped and counted, as are cases that exercise keywords Weir does not
 * implement (unevaluated*, $dynamicRef); both counts are printed so that nothing hides. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/schema.h"
#include "core/errlist.h"

#ifndef WEIR_SRCDIR
#define WEIR_SRCDIR "."
#endif

static const char *const suite_files[] = {
    "type.json",
    "enum.json",
    "const.json",
    "properties.json",
    "required.json",
    "additionalProperties.json",
    "patternProperties.json",
    "items.json",
    "prefixItems.json",
    "minItems.json",
    "maxItems.json",
    "uniqueItems.json",
    "minLength.json",
    "maxLength.json",
    "pattern.json",
    "minimum.json",
    "maximum.json",
    "exclusiveMinimum.json",
    "exclusiveMaximum.json",
    "multipleOf.json",
    "minProperties.json",
    "maxProperties.json",
    "allOf.json",
    "anyOf.json",
    "oneOf.json",
    "not.json",
    "if-then-else.json",
    "dependentRequired.json",
    "dependentSchemas.json",
    "propertyNames.json",
    "contains.json",
    "minContains.json",
    "maxContains.json",
    "ref.json",
    "defs.json",
    "anchor.json",
    "boolean_schema.json",
    "default.json",
    "infinite-loop-detection.json",
    "refRemote.json",
};
#define SUITE_NFILES (sizeof suite_files / sizeof *suite_files)

static char suite_dir[4096];
static unsigned long n_passed, n_failed, n_skipped_remote, n_skipped_unsupported;

static const char *suite_directory(void) {
    const char *env = getenv("WEIR_SCHEMA_SUITE");
    if (env && *env) return env;
    return WEIR_SRCDIR "/../shared/testdata/json-schema-test-suite/draft2020-12";
}

/* True when any object in `v` has one of the keys Weir deliberately does not implement. */
static bool uses_unsupported_keyword(const json_t *v) {
    static const char *const keys[] = {"unevaluatedProperties", "unevaluatedItems", "$dynamicRef"};
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (uses_unsupported_keyword(json_array_get(v, i))) return true;
    } else if (json_is_object(v)) {
        const char *k;
        json_t *sub;
        json_object_foreach((json_t *)v, k, sub) {
            for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
                if (!strcmp(k, keys[i])) return true;
            if (uses_unsupported_keyword(sub)) return true;
        }
    }
    return false;
}

/* A compile failure counts as "needs a remote document" only when every error says so: any
 * other compile error is a real failure. */
static bool failed_only_on_remote_refs(const struct errlist *errs) {
    if (errs->n == 0) return false;
    for (size_t i = 0; i < errs->n; i++)
        if (!strstr(errs->items[i], "remote references are not supported")) return false;
    return true;
}

static void run_suite_file(void **state) {
    const char *name = *state;
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", suite_dir, name);
    json_error_t jerr;
    json_t *groups = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    if (!groups) fail_msg("cannot load %s: %s (line %d)", path, jerr.text, jerr.line);
    assert_true(json_is_array(groups));

    unsigned failures = 0;
    size_t gi;
    json_t *group;
    json_array_foreach(groups, gi, group) {
        const char *gdesc = json_string_value(json_object_get(group, "description"));
        json_t *tests = json_object_get(group, "tests");
        json_t *doc = json_object_get(group, "schema");
        size_t ntests = json_array_size(tests);
        if (uses_unsupported_keyword(doc)) {
            printf("  skip %s: %s (unsupported keyword)\n", name, gdesc);
            n_skipped_unsupported += ntests;
            continue;
        }
        struct errlist errs;
        errlist_init(&errs);
        struct schema *s = schema_compile(doc, &errs);
        if (!s) {
            if (failed_only_on_remote_refs(&errs)) {
                printf("  skip %s: %s (%s)\n", name, gdesc, errs.items[0]);
                n_skipped_remote += ntests;
            } else {
                for (size_t i = 0; i < errs.n; i++)
                    print_error("  %s / (compile) %s\n", gdesc, errs.items[i]);
                n_failed += ntests;
                failures += (unsigned)ntests;
            }
            errlist_free(&errs);
            continue;
        }
        size_t ti;
        json_t *test;
        json_array_foreach(tests, ti, test) {
            const char *tdesc = json_string_value(json_object_get(test, "description"));
            json_t *data = json_object_get(test, "data");
            bool want = json_is_true(json_object_get(test, "valid"));
            struct errlist verrs;
            errlist_init(&verrs);
            bool got = schema_validate(s, data, &verrs);
            bool quick = schema_validate(s, data, NULL);
            /* the verdict-only mode must agree, and "invalid" must come with a message */
            bool good = got == want && quick == got && (got ? verrs.n == 0 : verrs.n > 0);
            if (good) {
                n_passed++;
            } else {
                n_failed++;
                failures++;
                print_error("  FAIL %s: %s / %s (expected %s, got %s%s%s)\n", name, gdesc, tdesc,
                            want ? "valid" : "invalid", got ? "valid" : "invalid",
                            verrs.n ? ": " : "", verrs.n ? verrs.items[0] : "");
            }
            errlist_free(&verrs);
        }
        schema_free(s);
    }
    json_decref(groups);
    if (failures) fail_msg("%s: %u case(s) failed", name, failures);
}

static void suite_directory_exists(void **state) {
    DIR *d = opendir(suite_dir);
    if (!d) fail_msg("JSON-Schema-Test-Suite not found at %s", suite_dir);
    closedir(d);
}

int main(void) {
    snprintf(suite_dir, sizeof suite_dir, "%s", suite_directory());
    struct CMUnitTest tests[SUITE_NFILES + 1];
    tests[0] =
        (struct CMUnitTest){"suite_directory_exists", suite_directory_exists, NULL, NULL, NULL};
    for (size_t i = 0; i < SUITE_NFILES; i++)
        tests[i + 1] =
            (struct CMUnitTest){suite_files[i], run_suite_file, NULL, NULL, (void *)suite_files[i]};
    int rc = _cmocka_run_group_tests("schema_suite", tests, SUITE_NFILES + 1, NULL, NULL);
    printf("schema suite: %lu passed, %lu failed, %lu skipped (remote refs)\n", n_passed, n_failed,
           n_skipped_remote);
    printf("schema suite: %lu skipped (unsupported keywords: unevaluated*, $dynamicRef)\n",
           n_skipped_unsupported);
    return rc;
}
