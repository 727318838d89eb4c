/* Unit tests for shared_dict, the storage behind weir.shared.<name>: what each operation returns,
 * TTLs on an injected clock, LRU eviction and its accounting against a model, binary keys, and
 * worker threads hammering one dictionary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/shared_dict.h"

#define OVERHEAD SHARED_DICT_ENTRY_OVERHEAD

/* A clock the tests move by hand, so TTL tests never sleep. */
struct fake_clock {
    int64_t ns;
};

static int64_t fake_now(void *arg) {
    return ((struct fake_clock *)arg)->ns;
}

static void advance(struct fake_clock *c, double seconds) {
    c->ns += (int64_t)(seconds * 1e9);
}

static struct shared_dict *new_dict(size_t capacity, struct fake_clock *clock) {
    struct shared_dict *d = shared_dict_new("test", 4, capacity);
    assert_non_null(d);
    if (clock) {
        clock->ns = 1000000000; /* not zero: expiry 0 means "never" */
        shared_dict_set_clock(d, fake_now, clock);
    }
    return d;
}

static struct sd_value str_value(const char *s) {
    return (struct sd_value){.type = SD_STRING, .str = s, .len = strlen(s)};
}

static struct sd_value num_value(double n) {
    return (struct sd_value){.type = SD_NUMBER, .number = n};
}

static int set_str(struct shared_dict *d, const char *k, const char *v, double ttl,
                   bool *forcible) {
    struct sd_value val = str_value(v);
    return shared_dict_set(d, k, strlen(k), &val, ttl, forcible);
}

static int set_num(struct shared_dict *d, const char *k, double n, double ttl) {
    struct sd_value val = num_value(n);
    return shared_dict_set(d, k, strlen(k), &val, ttl, NULL);
}

/* The value under k; strings are copied into `buf` (64 bytes) by the dictionary. */
static struct sd_value get(struct shared_dict *d, const char *k, char *buf) {
    struct sd_value out;
    assert_int_equal(shared_dict_get(d, k, strlen(k), &out, buf, 64), 0);
    assert_null(out.heap);
    return out;
}

static void assert_string(struct shared_dict *d, const char *k, const char *expected) {
    char buf[64];
    struct sd_value v = get(d, k, buf);
    assert_int_equal(v.type, SD_STRING);
    assert_int_equal(v.len, strlen(expected));
    assert_memory_equal(v.str, expected, v.len);
}

static void assert_number(struct shared_dict *d, const char *k, double expected) {
    char buf[64];
    struct sd_value v = get(d, k, buf);
    assert_int_equal(v.type, SD_NUMBER);
    assert_true(v.number == expected);
}

static void assert_nil(struct shared_dict *d, const char *k) {
    char buf[64];
    assert_int_equal(get(d, k, buf).type, SD_NIL);
}

static size_t entry_size(const char *k, size_t vlen) {
    return OVERHEAD + strlen(k) + vlen;
}

/* ---------------------------------------------------------------- operations and types */

static void test_get_of_absent_key_is_nil(void **state) {
    struct shared_dict *d = new_dict(4096, NULL);
    assert_nil(d, "missing");
    assert_int_equal(shared_dict_free_space(d), 4096);
    shared_dict_free(d);
}

static void test_set_and_get_each_type_with_flags(void **state) {
    struct shared_dict *d = new_dict(4096, NULL);
    char buf[64];
    struct sd_value t = {.type = SD_BOOLEAN, .boolean = true, .flags = 7};
    struct sd_value f = {.type = SD_BOOLEAN, .boolean = false};
    struct sd_value n = {.type = SD_NUMBER, .number = -2.5, .flags = 0xffffffffu};
    struct sd_value s = {.type = SD_STRING, .str = "hello", .len = 5, .flags = 42};
    struct sd_value e = {.type = SD_STRING, .str = "", .len = 0};
    assert_int_equal(shared_dict_set(d, "t", 1, &t, 0, NULL), 0);
    assert_int_equal(shared_dict_set(d, "f", 1, &f, 0, NULL), 0);
    assert_int_equal(shared_dict_set(d, "n", 1, &n, 0, NULL), 0);
    assert_int_equal(shared_dict_set(d, "s", 1, &s, 0, NULL), 0);
    assert_int_equal(shared_dict_set(d, "e", 1, &e, 0, NULL), 0);

    struct sd_value v = get(d, "t", buf);
    assert_int_equal(v.type, SD_BOOLEAN);
    assert_true(v.boolean);
    assert_int_equal(v.flags, 7);
    v = get(d, "f", buf);
    assert_int_equal(v.type, SD_BOOLEAN);
    assert_false(v.boolean);
    assert_int_equal(v.flags, 0);
    v = get(d, "n", buf);
    assert_int_equal(v.type, SD_NUMBER);
    assert_true(v.number == -2.5);
    assert_int_equal(v.flags, 0xffffffffu);
    v = get(d, "s", buf);
    assert_int_equal(v.type, SD_STRING);
    assert_int_equal(v.len, 5);
    assert_memory_equal(v.str, "hello", 5);
    assert_ptr_equal(v.str, buf);
    assert_int_equal(v.flags, 42);
    v = get(d, "e", buf);
    assert_int_equal(v.type, SD_STRING);
    assert_int_equal(v.len, 0);
    assert_non_null(v.str);
    assert_int_equal(shared_dict_get(d, "e", 1, &v, NULL, 0), 0); /* no buffer needed */
    assert_int_equal(v.type, SD_STRING);
    assert_int_equal(v.len, 0);
    assert_non_null(v.str);
    assert_null(v.heap);

    assert_int_equal(shared_dict_free_space(d), 4096 - 5 * (OVERHEAD + 1) - 5);
    shared_dict_free(d);
}

static void test_set_overwrites_value_type_and_accounting(void **state) {
    struct shared_dict *d = new_dict(4096, NULL);
    assert_int_equal(set_str(d, "k", "a long string value", 0, NULL), 0);
    assert_int_equal(shared_dict_free_space(d), 4096 - entry_size("k", 19));
    assert_int_equal(set_num(d, "k", 3, 0), 0);
    assert_number(d, "k", 3);
    assert_int_equal(shared_dict_free_space(d), 4096 - entry_size("k", 0));
    shared_dict_free(d);
}

static void test_set_nil_deletes(void **state) {
    struct shared_dict *d = new_dict(4096, NULL);
    struct sd_value nil = {.type = SD_NIL};
    assert_int_equal(set_str(d, "k", "v", 0, NULL), 0);
    assert_int_equal(shared_dict_set(d, "k", 1, &nil, 0, NULL), 0);
    assert_nil(d, "k");
    assert_int_equal(shared_dict_free_space(d), 4096);
    assert_int_equal(shared_dict_set(d, "absent", 6, &nil, 0, NULL), 0);
    shared_dict_free(d);
}

static void test_delete_removes_key_and_absent_key_is_not_an_error(void **state) {
    struct shared_dict *d = new_dict(4096, NULL);
    assert_int_equal(set_str(d, "k", "v", 0, NULL), 0);
    assert_int_equal(shared_dict_delete(d, "k", 1), 0);
    assert_nil(d, "k");
    assert_int_equal(shared_dict_delete(d, "k", 1), 0);
    assert_int_equal(shared_dict_free_space(d), 4096);
    shared_dict_free(d);
}

static void test_keys_must_be_1_to_65535_bytes(void **state) {
    struct shared_dict *d = new_dict(200000, NULL);
    struct sd_value v = num_value(1), out;
    double r;
    char *key = malloc(SHARED_DICT_KEY_MAX + 1);
    assert_non_null(key);
    memset(key, 'k', SHARED_DICT_KEY_MAX + 1);
    assert_int_equal(shared_dict_set(d, "", 0, &v, 0, NULL), SD_EEMPTYKEY);
    assert_int_equal(shared_dict_get(d, "", 0, &out, NULL, 0), SD_EEMPTYKEY);
    assert_int_equal(shared_dict_incr(d, "", 0, 1, true, 0, 0, &r, NULL), SD_EEMPTYKEY);
    assert_int_equal(shared_dict_delete(d, "", 0), SD_EEMPTYKEY);
    assert_int_equal(shared_dict_set(d, key, SHARED_DICT_KEY_MAX + 1, &v, 0, NULL), SD_EKEYTOOLONG);
    assert_int_equal(shared_dict_get(d, key, SHARED_DICT_KEY_MAX + 1, &out, NULL, 0),
                     SD_EKEYTOOLONG);
    assert_int_equal(shared_dict_set(d, key, SHARED_DICT_KEY_MAX, &v, 0, NULL), 0);
    assert_int_equal(shared_dict_get(d, key, SHARED_DICT_KEY_MAX, &out, NULL, 0), 0);
    assert_int_equal(out.type, SD_NUMBER);
    assert_true(out.number == 1);
    free(key);
    shared_dict_free(d);
}

static void test_negative_or_nan_ttl_is_bad_ttl(void **state) {
    struct shared_dict *d = new_dict(4096, NULL);
    double r;
    assert_int_equal(set_num(d, "k", 1, -1), SD_EBADTTL);
    assert_int_equal(set_num(d, "k", 1, NAN), SD_EBADTTL);
    assert_int_equal(set_num(d, "k", 1, INFINITY), SD_EBADTTL);
    assert_int_equal(shared_dict_incr(d, "k", 1, 1, true, 0, -0.5, &r, NULL), SD_EBADTTL);
    assert_nil(d, "k");
    shared_dict_free(d);
}

static void test_errors_read_like_openresty(void **state) {
    assert_string_equal(shared_dict_strerror(SD_ENOMEM), "no memory");
    assert_string_equal(shared_dict_strerror(SD_EEXISTS), "exists");
    assert_string_equal(shared_dict_strerror(SD_ENOTFOUND), "not found");
    assert_string_equal(shared_dict_strerror(SD_ENOTNUMBER), "not a number");
    assert_string_equal(shared_dict_strerror(SD_EEMPTYKEY), "empty key");
    assert_string_equal(shared_dict_strerror(SD_EKEYTOOLONG), "key too long");
    assert_string_equal(shared_dict_strerror(SD_EBADTTL), "bad ttl");
}

static void test_get_copies_a_string_too_big_for_the_buffer_to_the_heap(void **state) {
    struct shared_dict *d = new_dict(4096, NULL);
    char big[1000];
    memset(big, 'x', sizeof big);
    struct sd_value v = {.type = SD_STRING, .str = big, .len = sizeof big}, out;
    char buf[16];
    assert_int_equal(shared_dict_set(d, "k", 1, &v, 0, NULL), 0);
    assert_int_equal(shared_dict_get(d, "k", 1, &out, buf, sizeof buf), 0);
    assert_non_null(out.heap);
    assert_ptr_equal(out.str, out.heap);
    assert_int_equal(out.len, sizeof big);
    assert_memory_equal(out.str, big, sizeof big);
    free(out.heap);
    assert_int_equal(shared_dict_get(d, "k", 1, &out, NULL, 0), 0);
    assert_non_null(out.heap);
    free(out.heap);
    shared_dict_free(d);
}

static void test_keys_values_and_names_are_binary(void **state) {
    struct shared_dict *d = shared_dict_new("a\0b", 3, 4096);
    assert_non_null(d);
    size_t name_len;
    const char *name = shared_dict_name(d, &name_len);
    assert_int_equal(name_len, 3);
    assert_memory_equal(name, "a\0b", 3);
    assert_int_equal(shared_dict_capacity(d), 4096);

    struct sd_value v1 = {.type = SD_STRING, .str = "x\0y\0", .len = 4};
    struct sd_value v2 = {.type = SD_STRING, .str = "\0", .len = 1};
    assert_int_equal(shared_dict_set(d, "k\0a", 3, &v1, 0, NULL), 0);
    assert_int_equal(shared_dict_set(d, "k\0b", 3, &v2, 0, NULL), 0);
    char buf[64];
    struct sd_value out;
    assert_int_equal(shared_dict_get(d, "k\0a", 3, &out, buf, sizeof buf), 0);
    assert_int_equal(out.len, 4);
    assert_memory_equal(out.str, "x\0y\0", 4);
    assert_int_equal(shared_dict_get(d, "k\0b", 3, &out, buf, sizeof buf), 0);
    assert_int_equal(out.len, 1);
    assert_memory_equal(out.str, "\0", 1);
    assert_nil(d, "k"); /* a prefix up to the NUL is another key */
    assert_int_equal(shared_dict_delete(d, "k\0a", 3), 0);
    assert_int_equal(shared_dict_get(d, "k\0a", 3, &out, buf, sizeof buf), 0);
    assert_int_equal(out.type, SD_NIL);
    assert_int_equal(shared_dict_get(d, "k\0b", 3, &out, buf, sizeof buf), 0);
    assert_int_equal(out.type, SD_STRING);
    shared_dict_free(d);
}

/* ---------------------------------------------------------------- TTL */

static void test_entry_expires_after_its_ttl(void **state) {
    struct fake_clock clock;
    struct shared_dict *d = new_dict(4096, &clock);
    assert_int_equal(set_str(d, "k", "v", 1.5, NULL), 0);
    advance(&clock, 1.499);
    assert_string(d, "k", "v");
    advance(&clock, 0.001);
    assert_nil(d, "k");
    shared_dict_free(d);
}

static void test_expired_entry_is_removed_when_read(void **state) {
    struct fake_clock clock;
    struct shared_dict *d = new_dict(4096, &clock);
    assert_int_equal(set_str(d, "k", "v", 1, NULL), 0);
    advance(&clock, 2);
    assert_int_equal(shared_dict_free_space(d), 4096 - entry_size("k", 1)); /* still held */
    assert_nil(d, "k");
    assert_int_equal(shared_dict_free_space(d), 4096);
    shared_dict_free(d);
}

static void test_ttl_zero_never_expires(void **state) {
    struct fake_clock clock;
    struct shared_dict *d = new_dict(4096, &clock);
    assert_int_equal(set_str(d, "k", "v", 0, NULL), 0);
    advance(&clock, 1e9);
    assert_string(d, "k", "v");
    shared_dict_free(d);
}

static void test_set_replaces_the_ttl(void **state) {
    struct fake_clock clock;
    struct shared_dict *d = new_dict(4096, &clock);
    assert_int_equal(set_str(d, "k", "v", 1, NULL), 0);
    assert_int_equal(set_str(d, "k", "w", 0, NULL), 0);
    advance(&clock, 10);
    assert_string(d, "k", "w");
    assert_int_equal(set_str(d, "k", "x", 3, NULL), 0);
    advance(&clock, 3);
    assert_nil(d, "k");
    shared_dict_free(d);
}

/* ---------------------------------------------------------------- add and replace */

static void test_add_fails_with_exists_on_a_live_key(void **state) {
    struct shared_dict *d = new_dict(4096, NULL);
    struct sd_value a = str_value("first"), b = str_value("second");
    assert_int_equal(shared_dict_add(d, "k", 1, &a, 0, NULL), 0);
    assert_int_equal(shared_dict_add(d, "k", 1, &b, 0, NULL), SD_EEXISTS);
    assert_string(d, "k", "first");
    assert_int_equal(shared_dict_set(d, "k", 1, &b, 0, NULL), 0); /* set overwrites */
    assert_string(d, "k", "second");
    struct sd_value nil = {.type = SD_NIL};
    assert_int_equal(shared_dict_add(d, "k", 1, &nil, 0, NULL), SD_EEXISTS);
    assert_string(d, "k", "second");
    shared_dict_free(d);
}

static void test_add_succeeds_over_an_expired_key(void **state) {
    struct fake_clock clock;
    struct shared_dict *d = new_dict(4096, &clock);
    struct sd_value a = str_value("old"), b = str_value("new");
    assert_int_equal(shared_dict_add(d, "k", 1, &a, 1, NULL), 0);
    advance(&clock, 1);
    assert_int_equal(shared_dict_add(d, "k", 1, &b, 0, NULL), 0);
    assert_string(d, "k", "new");
    assert_int_equal(shared_dict_free_space(d), 4096 - entry_size("k", 3));
    shared_dict_free(d);
}

static void test_replace_needs_a_live_key(void **state) {
    struct fake_clock clock;
    struct shared_dict *d = new_dict(4096, &clock);
    struct sd_value a = str_value("a"), b = str_value("b");
    assert_int_equal(shared_dict_store(d, SD_STORE_REPLACE, true, "k", 1, &a, 0, NULL),
                     SD_ENOTFOUND);
    assert_nil(d, "k");
    assert_int_equal(set_str(d, "k", "x", 1, NULL), 0);
    assert_int_equal(shared_dict_store(d, SD_STORE_REPLACE, true, "k", 1, &a, 0, NULL), 0);
    assert_string(d, "k", "a");
    assert_int_equal(set_str(d, "k", "x", 1, NULL), 0);
    advance(&clock, 1);
    assert_int_equal(shared_dict_store(d, SD_STORE_REPLACE, true, "k", 1, &b, 0, NULL),
                     SD_ENOTFOUND);
    assert_nil(d, "k");
    shared_dict_free(d);
}

/* ---------------------------------------------------------------- incr */

static void test_incr_adds_to_an_existing_number(void **state) {
    struct shared_dict *d = new_dict(4096, NULL);
    double r = 0;
    assert_int_equal(set_num(d, "n", 10, 0), 0);
    assert_int_equal(shared_dict_incr(d, "n", 1, 5, false, 0, 0, &r, NULL), 0);
    assert_true(r == 15);
    assert_int_equal(shared_dict_incr(d, "n", 1, -20, false, 0, 0, &r, NULL), 0);
    assert_true(r == -5);
    assert_int_equal(shared_dict_incr(d, "n", 1, 0.25, false, 0, 0, &r, NULL), 0);
    assert_true(r == -4.75);
    assert_number(d, "n", -4.75);
    shared_dict_free(d);
}

static void test_incr_of_an_absent_key_without_init_is_not_found(void **state) {
    struct shared_dict *d = new_dict(4096, NULL);
    double r = 99;
    assert_int_equal(shared_dict_incr(d, "n", 1, 1, false, 0, 0, &r, NULL), SD_ENOTFOUND);
    assert_true(r == 99);
    assert_nil(d, "n");
    shared_dict_free(d);
}

static void test_incr_with_init_starts_from_init_with_init_ttl(void **state) {
    struct fake_clock clock;
    struct shared_dict *d = new_dict(4096, &clock);
    double r = 0;
    bool forcible = true;
    assert_int_equal(shared_dict_incr(d, "n", 1, 2, true, 10, 5, &r, &forcible), 0);
    assert_true(r == 12);
    assert_false(forcible);
    assert_int_equal(shared_dict_free_space(d), 4096 - entry_size("n", 0));
    /* Present now: init and init_ttl are ignored, the TTL is kept. */
    advance(&clock, 3);
    assert_int_equal(shared_dict_incr(d, "n", 1, 1, true, 100, 0, &r, NULL), 0);
    assert_true(r == 13);
    advance(&clock, 2);
    assert_nil(d, "n");
    assert_int_equal(shared_dict_incr(d, "n", 1, 1, true, 0, 0, &r, NULL), 0);
    assert_true(r == 1);
    advance(&clock, 1e6);
    assert_number(d, "n", 1);
    shared_dict_free(d);
}

static void test_incr_of_an_expired_key_is_not_found_without_init(void **state) {
    struct fake_clock clock;
    struct shared_dict *d = new_dict(4096, &clock);
    double r;
    assert_int_equal(set_num(d, "n", 1, 1), 0);
    advance(&clock, 1);
    assert_int_equal(shared_dict_incr(d, "n", 1, 1, false, 0, 0, &r, NULL), SD_ENOTFOUND);
    assert_int_equal(shared_dict_free_space(d), 4096);
    shared_dict_free(d);
}

static void test_incr_of_a_string_or_boolean_is_not_a_number(void **state) {
    struct shared_dict *d = new_dict(4096, NULL);
    struct sd_value b = {.type = SD_BOOLEAN, .boolean = true};
    double r = 99;
    assert_int_equal(set_str(d, "s", "12", 0, NULL), 0);
    assert_int_equal(shared_dict_set(d, "b", 1, &b, 0, NULL), 0);
    assert_int_equal(shared_dict_incr(d, "s", 1, 1, false, 0, 0, &r, NULL), SD_ENOTNUMBER);
    assert_int_equal(shared_dict_incr(d, "s", 1, 1, true, 0, 0, &r, NULL), SD_ENOTNUMBER);
    assert_int_equal(shared_dict_incr(d, "b", 1, 1, true, 0, 0, &r, NULL), SD_ENOTNUMBER);
    assert_true(r == 99);
    assert_string(d, "s", "12");
    shared_dict_free(d);
}

/* ---------------------------------------------------------------- eviction */

/* Room for exactly three entries with a one-byte key and a one-byte string. */
#define THREE (3 * (OVERHEAD + 2))

static void test_lru_evicts_the_least_recently_used_entry(void **state) {
    struct shared_dict *d = new_dict(THREE, NULL);
    bool forcible = true;
    assert_int_equal(set_str(d, "a", "1", 0, &forcible), 0);
    assert_false(forcible);
    assert_int_equal(set_str(d, "b", "2", 0, NULL), 0);
    assert_int_equal(set_str(d, "c", "3", 0, NULL), 0);
    assert_int_equal(shared_dict_free_space(d), 0);
    assert_string(d, "a", "1"); /* recency now, most recent first: a c b */
    assert_int_equal(set_str(d, "d", "4", 0, &forcible), 0);
    assert_true(forcible); /* b went: d a c */
    assert_nil(d, "b");
    double r;
    assert_int_equal(set_num(d, "c", 0, 0), 0); /* c is now a number: c d a */
    assert_int_equal(shared_dict_incr(d, "c", 1, 1, false, 0, 0, &r, NULL), 0);
    assert_int_equal(set_str(d, "e", "5", 0, &forcible), 0); /* a went: e c d */
    assert_true(forcible);
    assert_nil(d, "a");
    assert_string(d, "d", "4");
    assert_number(d, "c", 1);
    assert_string(d, "e", "5");
    assert_int_equal(shared_dict_free_space(d), THREE - 2 * (OVERHEAD + 2) - (OVERHEAD + 1));
    shared_dict_free(d);
}

static void test_a_big_value_evicts_as_many_entries_as_it_needs(void **state) {
    struct shared_dict *d = new_dict(THREE, NULL);
    assert_int_equal(set_str(d, "a", "1", 0, NULL), 0);
    assert_int_equal(set_str(d, "b", "2", 0, NULL), 0);
    assert_int_equal(set_str(d, "c", "3", 0, NULL), 0);
    char big[OVERHEAD + 3];
    memset(big, 'x', sizeof big);
    struct sd_value v = {.type = SD_STRING, .str = big, .len = sizeof big};
    bool forcible = false;
    assert_int_equal(shared_dict_set(d, "z", 1, &v, 0, &forcible), 0);
    assert_true(forcible);
    assert_nil(d, "a");
    assert_nil(d, "b");
    assert_string(d, "c", "3");
    assert_int_equal(shared_dict_free_space(d), 0);
    shared_dict_free(d);
}

static void test_expired_entries_are_evicted_without_forcible(void **state) {
    struct fake_clock clock;
    struct shared_dict *d = new_dict(THREE, &clock);
    assert_int_equal(set_str(d, "a", "1", 1, NULL), 0);
    assert_int_equal(set_str(d, "b", "2", 1, NULL), 0);
    assert_int_equal(set_str(d, "c", "3", 0, NULL), 0);
    advance(&clock, 1);
    bool forcible = true;
    assert_int_equal(set_str(d, "d", "4", 0, &forcible), 0);
    assert_false(forcible);
    /* Both expired entries at the cold end went, though one would have made room. */
    assert_int_equal(shared_dict_free_space(d), THREE - 2 * (OVERHEAD + 2));
    assert_string(d, "c", "3");
    assert_string(d, "d", "4");
    shared_dict_free(d);
}

static void test_a_value_larger_than_capacity_fails_without_evicting(void **state) {
    struct shared_dict *d = new_dict(THREE, NULL);
    assert_int_equal(set_str(d, "a", "1", 0, NULL), 0);
    assert_int_equal(set_str(d, "b", "2", 0, NULL), 0);
    char big[THREE];
    memset(big, 'x', sizeof big);
    struct sd_value v = {.type = SD_STRING, .str = big, .len = THREE - OVERHEAD};
    bool forcible = true;
    assert_int_equal(shared_dict_set(d, "z", 1, &v, 0, &forcible), SD_ENOMEM);
    assert_false(forcible);
    v.len = SIZE_MAX; /* no overflow in the size computation */
    assert_int_equal(shared_dict_set(d, "z", 1, &v, 0, &forcible), SD_ENOMEM);
    assert_string(d, "a", "1");
    assert_string(d, "b", "2");
    assert_nil(d, "z");
    assert_int_equal(shared_dict_free_space(d), OVERHEAD + 2);
    /* Exactly the capacity fits, evicting everything else. */
    v.len = THREE - OVERHEAD - 1;
    assert_int_equal(shared_dict_set(d, "z", 1, &v, 0, &forcible), 0);
    assert_true(forcible);
    assert_int_equal(shared_dict_free_space(d), 0);
    assert_nil(d, "a");
    shared_dict_free(d);
}

static void test_safe_store_fails_rather_than_evict_a_live_entry(void **state) {
    struct fake_clock clock;
    struct shared_dict *d = new_dict(THREE, &clock);
    struct sd_value v = str_value("4");
    assert_int_equal(set_str(d, "a", "1", 0, NULL), 0);
    assert_int_equal(set_str(d, "b", "2", 0, NULL), 0);
    assert_int_equal(set_str(d, "c", "3", 5, NULL), 0);
    bool forcible = true;
    assert_int_equal(shared_dict_store(d, SD_STORE_SET, false, "d", 1, &v, 0, &forcible),
                     SD_ENOMEM);
    assert_false(forcible);
    assert_int_equal(shared_dict_store(d, SD_STORE_ADD, false, "d", 1, &v, 0, &forcible),
                     SD_ENOMEM);
    /* Overwriting in place needs no more room. */
    assert_int_equal(shared_dict_store(d, SD_STORE_SET, false, "a", 1, &v, 0, &forcible), 0);
    assert_string(d, "b", "2");
    assert_string(d, "a", "4"); /* recency: a b c */
    /* An expired entry at the cold end may go. */
    advance(&clock, 5);
    assert_int_equal(shared_dict_store(d, SD_STORE_SET, false, "d", 1, &v, 0, &forcible), 0);
    assert_false(forcible);
    assert_string(d, "d", "4");
    assert_nil(d, "c");
    shared_dict_free(d);
}

static void test_incr_with_init_evicts_to_make_room(void **state) {
    struct shared_dict *d = new_dict(THREE, NULL);
    assert_int_equal(set_str(d, "a", "1", 0, NULL), 0);
    assert_int_equal(set_str(d, "b", "2", 0, NULL), 0);
    assert_int_equal(set_str(d, "c", "3", 0, NULL), 0);
    double r;
    bool forcible = false;
    assert_int_equal(shared_dict_incr(d, "n", 1, 1, true, 0, 0, &r, &forcible), 0);
    assert_true(forcible);
    assert_true(r == 1);
    assert_nil(d, "a");
    assert_int_equal(shared_dict_free_space(d), 1);
    shared_dict_free(d);
}

/* ---------------------------------------------------------------- accounting against a model */

#define MODEL_KEYS 24
#define MODEL_CAPACITY 2048

/* What the dictionary should hold: a value and a recency stamp per key. */
struct model_entry {
    bool present;
    bool is_number;
    double number;
    char str[200];
    size_t len;
    uint64_t used_at;
};

struct model {
    struct model_entry e[MODEL_KEYS];
    uint64_t tick;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static size_t model_size(const struct model *m, int i) {
    return OVERHEAD + 3 + (m->e[i].is_number ? 0 : m->e[i].len);
}

static size_t model_used(const struct model *m) {
    size_t used = 0;
    for (int i = 0; i < MODEL_KEYS; i++)
        if (m->e[i].present) used += model_size(m, i);
    return used;
}

/* Evicts least recently used keys other than `keep` until `need` more bytes fit, as the
 * dictionary must. */
static bool model_make_room(struct model *m, size_t need, int keep) {
    bool forced = false;
    for (;;) {
        size_t used = model_used(m) - (m->e[keep].present ? model_size(m, keep) : 0);
        if (MODEL_CAPACITY - used >= need) return forced;
        int victim = -1;
        for (int i = 0; i < MODEL_KEYS; i++)
            if (i != keep && m->e[i].present &&
                (victim < 0 || m->e[i].used_at < m->e[victim].used_at))
                victim = i;
        assert_true(victim >= 0);
        m->e[victim].present = false;
        forced = true;
    }
}

static void test_accounting_matches_a_model_after_random_operations(void **state) {
    struct shared_dict *d = new_dict(MODEL_CAPACITY, NULL);
    struct model m = {0};
    char key[4], payload[200];
    for (int step = 0; step < 20000; step++) {
        int i = (int)(rng() % MODEL_KEYS);
        snprintf(key, sizeof key, "k%02d", i);
        struct model_entry *me = &m.e[i];
        int op = (int)(rng() % 5);
        bool forcible = false;
        double r;
        if (op == 0 || op == 1) { /* set or add a string */
            size_t len = rng() % sizeof payload;
            memset(payload, 'a' + (int)(rng() % 26), len);
            struct sd_value v = {.type = SD_STRING, .str = payload, .len = len};
            int rc = op == 0 ? shared_dict_set(d, key, 3, &v, 0, &forcible)
                             : shared_dict_add(d, key, 3, &v, 0, &forcible);
            if (op == 1 && me->present) {
                assert_int_equal(rc, SD_EEXISTS);
            } else {
                assert_int_equal(rc, 0);
                if (me->present) me->used_at = ++m.tick; /* kept from eviction */
                size_t need = OVERHEAD + 3 + len;
                assert_int_equal(forcible, model_make_room(&m, need, i));
                *me = (struct model_entry){.present = true, .len = len, .used_at = ++m.tick};
                memcpy(me->str, payload, len);
            }
        } else if (op == 2) { /* incr with init */
            int rc = shared_dict_incr(d, key, 3, 1, true, 0, 0, &r, &forcible);
            if (me->present && !me->is_number) {
                assert_int_equal(rc, SD_ENOTNUMBER);
            } else if (me->present) {
                assert_int_equal(rc, 0);
                me->number += 1;
                assert_true(r == me->number);
                me->used_at = ++m.tick;
            } else {
                assert_int_equal(rc, 0);
                assert_int_equal(forcible, model_make_room(&m, OVERHEAD + 3, i));
                *me = (struct model_entry){
                    .present = true, .is_number = true, .number = 1, .used_at = ++m.tick};
                assert_true(r == 1);
            }
        } else if (op == 3) { /* get */
            struct sd_value out;
            char buf[64];
            assert_int_equal(shared_dict_get(d, key, 3, &out, buf, sizeof buf), 0);
            if (!me->present) {
                assert_int_equal(out.type, SD_NIL);
            } else if (me->is_number) {
                assert_int_equal(out.type, SD_NUMBER);
                assert_true(out.number == me->number);
            } else {
                assert_int_equal(out.type, SD_STRING);
                assert_int_equal(out.len, me->len);
                assert_memory_equal(out.str, me->str, me->len);
            }
            if (me->present) me->used_at = ++m.tick;
            free(out.heap);
        } else { /* delete */
            assert_int_equal(shared_dict_delete(d, key, 3), 0);
            me->present = false;
        }
        size_t used = model_used(&m);
        assert_true(used <= MODEL_CAPACITY);
        assert_int_equal(shared_dict_free_space(d), MODEL_CAPACITY - used);
    }
    shared_dict_free(d);
}

/* ---------------------------------------------------------------- threads */

#define THREADS 4
#define INCRS 10000

static void *incr_worker(void *arg) {
    struct shared_dict *d = arg;
    for (int i = 0; i < INCRS; i++) {
        double r;
        if (shared_dict_incr(d, "hits", 4, 1, true, 0, 0, &r, NULL) != 0) return "incr failed";
    }
    return NULL;
}

static void test_concurrent_incr_of_one_key_loses_no_update(void **state) {
    struct shared_dict *d = new_dict(4096, NULL);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, incr_worker, d), 0);
    for (int i = 0; i < THREADS; i++) {
        void *err;
        assert_int_equal(pthread_join(t[i], &err), 0);
        assert_null(err);
    }
    assert_number(d, "hits", THREADS * INCRS);
    shared_dict_free(d);
}

struct mixed_arg {
    struct shared_dict *d;
    uint64_t seed;
};

/* Random set/get/add/incr/delete on a key space that overflows the capacity; every string
 * written is its key repeated, so a read can check it got an intact value. */
static void *mixed_worker(void *arg) {
    struct mixed_arg *a = arg;
    uint64_t s = a->seed;
    char key[16], val[256], buf[64];
    for (int i = 0; i < 20000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        int klen = snprintf(key, sizeof key, "key%u", (unsigned)(s % 500));
        size_t len = (s >> 16) % sizeof val;
        for (size_t j = 0; j < len; j++)
            val[j] = key[j % (size_t)klen];
        struct sd_value v = {.type = SD_STRING, .str = val, .len = len}, out;
        double r;
        switch ((s >> 32) % 6) {
        case 0:
        case 1:
            if (shared_dict_set(a->d, key, (size_t)klen, &v, (s >> 40) % 2 ? 0.001 : 0, NULL))
                return "set failed";
            break;
        case 2:
            if (shared_dict_get(a->d, key, (size_t)klen, &out, buf, sizeof buf)) return "get";
            if (out.type == SD_STRING)
                for (size_t j = 0; j < out.len; j++)
                    if (out.str[j] != key[j % (size_t)klen]) return "torn value";
            free(out.heap);
            break;
        case 3: {
            int rc = shared_dict_add(a->d, key, (size_t)klen, &v, 0, NULL);
            if (rc && rc != SD_EEXISTS) return "add failed";
            break;
        }
        case 4: {
            int rc = shared_dict_incr(a->d, key, (size_t)klen, 1, true, 0, 0, &r, NULL);
            if (rc && rc != SD_ENOTNUMBER) return "incr failed";
            break;
        }
        default:
            shared_dict_delete(a->d, key, (size_t)klen);
        }
        if (shared_dict_free_space(a->d) > shared_dict_capacity(a->d)) return "over capacity";
    }
    return NULL;
}

static void test_concurrent_mixed_operations_stay_consistent(void **state) {
    struct shared_dict *d = new_dict(16384, NULL);
    pthread_t t[THREADS];
    struct mixed_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct mixed_arg){.d = d, .seed = 0x1234567ULL * (uint64_t)(i + 1)};
        assert_int_equal(pthread_create(&t[i], NULL, mixed_worker, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        void *err;
        assert_int_equal(pthread_join(t[i], &err), 0);
        if (err) fail_msg("%s", (const char *)err);
    }
    shared_dict_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_of_absent_key_is_nil),
        cmocka_unit_test(test_set_and_get_each_type_with_flags),
        cmocka_unit_test(test_set_overwrites_value_type_and_accounting),
        cmocka_unit_test(test_set_nil_deletes),
        cmocka_unit_test(test_delete_removes_key_and_absent_key_is_not_an_error),
        cmocka_unit_test(test_keys_must_be_1_to_65535_bytes),
        cmocka_unit_test(test_negative_or_nan_ttl_is_bad_ttl),
        cmocka_unit_test(test_errors_read_like_openresty),
        cmocka_unit_test(test_get_copies_a_string_too_big_for_the_buffer_to_the_heap),
        cmocka_unit_test(test_keys_values_and_names_are_binary),
        cmocka_unit_test(test_entry_expires_after_its_ttl),
        cmocka_unit_test(test_expired_entry_is_removed_when_read),
        cmocka_unit_test(test_ttl_zero_never_expires),
        cmocka_unit_test(test_set_replaces_the_ttl),
        cmocka_unit_test(test_add_fails_with_exists_on_a_live_key),
        cmocka_unit_test(test_add_succeeds_over_an_expired_key),
        cmocka_unit_test(test_replace_needs_a_live_key),
        cmocka_unit_test(test_incr_adds_to_an_existing_number),
        cmocka_unit_test(test_incr_of_an_absent_key_without_init_is_not_found),
        cmocka_unit_test(test_incr_with_init_starts_from_init_with_init_ttl),
        cmocka_unit_test(test_incr_of_an_expired_key_is_not_found_without_init),
        cmocka_unit_test(test_incr_of_a_string_or_boolean_is_not_a_number),
        cmocka_unit_test(test_lru_evicts_the_least_recently_used_entry),
        cmocka_unit_test(test_a_big_value_evicts_as_many_entries_as_it_needs),
        cmocka_unit_test(test_expired_entries_are_evicted_without_forcible),
        cmocka_unit_test(test_a_value_larger_than_capacity_fails_without_evicting),
        cmocka_unit_test(test_safe_store_fails_rather_than_evict_a_live_entry),
        cmocka_unit_test(test_incr_with_init_evicts_to_make_room),
        cmocka_unit_test(test_accounting_matches_a_model_after_random_operations),
        cmocka_unit_test(test_concurrent_incr_of_one_key_loses_no_update),
        cmocka_unit_test(test_concurrent_mixed_operations_stay_consistent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
