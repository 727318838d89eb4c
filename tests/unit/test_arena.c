/* Specification of the arena (core/arena.h): copies and blocks that stay put until
 * arena_free(), blocks aligned for any object, and a limit that is never passed. */
#include <setjmp.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/arena.h"

static void test_dup_copies_and_terminates(void **state) {
    (void)state;
    struct arena a = {0};
    char *d = arena_dup(&a, "hello world", 5);
    assert_non_null(d);
    assert_string_equal(d, "hello");
    arena_free(&a);
    assert_null(a.chunks);
    assert_int_equal(a.total, 0);
}

/* Odd-sized strings between blocks must not misalign the blocks, and nothing handed out may
 * move or be overwritten as the arena grows past many chunks. */
static void test_alloc_is_aligned_and_blocks_stay_put(void **state) {
    (void)state;
    struct arena a = {0};
    enum { N = 5000 };
    static size_t *blocks[N];
    static char *strs[N];
    for (size_t i = 0; i < N; i++) {
        char s[32];
        int n = snprintf(s, sizeof s, "s%zu", i * 7919);
        strs[i] = arena_dup(&a, s, (size_t)n);
        blocks[i] = arena_alloc(&a, (i % 5 + 1) * sizeof(size_t));
        assert_non_null(blocks[i]);
        assert_int_equal((uintptr_t)blocks[i] % alignof(max_align_t), 0);
        for (size_t k = 0; k < i % 5 + 1; k++)
            blocks[i][k] = i * 10 + k;
    }
    assert_true(a.total > 100 * 1024); /* it did grow over several chunks */
    for (size_t i = 0; i < N; i++) {
        char s[32];
        snprintf(s, sizeof s, "s%zu", i * 7919);
        assert_string_equal(strs[i], s);
        for (size_t k = 0; k < i % 5 + 1; k++)
            assert_int_equal(blocks[i][k], i * 10 + k);
    }
    arena_free(&a);
}

static void test_alloc_of_a_large_block_gets_a_chunk_of_its_own(void **state) {
    (void)state;
    struct arena a = {0};
    assert_non_null(arena_alloc(&a, 8));
    unsigned char *big = arena_alloc(&a, 1 << 20);
    assert_non_null(big);
    memset(big, 0xab, 1 << 20);
    assert_true(a.total >= 1 << 20);
    unsigned char *after = arena_alloc(&a, 16);
    assert_non_null(after);
    assert_true(after < big || after >= big + (1 << 20));
    arena_free(&a);
}

static void test_limit_is_never_passed(void **state) {
    (void)state;
    struct arena a = {.limit = 4096};
    size_t got = 0;
    while (arena_alloc(&a, 100))
        got += 100;
    assert_true(got >= 3000); /* most of the limit is usable */
    assert_true(a.total <= a.limit);
    (void)arena_dup(&a, "x", 1); /* may still fit; must not pass the limit */
    assert_true(a.total <= a.limit);
    arena_free(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dup_copies_and_terminates),
        cmocka_unit_test(test_alloc_is_aligned_and_blocks_stay_put),
        cmocka_unit_test(test_alloc_of_a_large_block_gets_a_chunk_of_its_own),
        cmocka_unit_test(test_limit_is_never_passed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
