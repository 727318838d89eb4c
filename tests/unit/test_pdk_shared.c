/* weir.shared from Lua: OpenResty's ngx.shared.DICT methods and return values over the C
 * dictionaries, run in a real LuaJIT state. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

#include "lua/pdk_shared.h"

struct fixture {
    lua_State *L;
    struct shared_dict *dicts[2];
};

static int setup(void **state) {
    static struct fixture f;
    f.dicts[0] = shared_dict_new("counters", 8, 64 * 1024);
    f.dicts[1] = shared_dict_new("tiny", 4, 3 * (SHARED_DICT_ENTRY_OVERHEAD + 8));
    f.L = luaL_newstate();
    luaL_openlibs(f.L);
    pdk_shared_push(f.L, f.dicts, 2);
    lua_setglobal(f.L, "shared");
    *state = &f;
    return 0;
}

static int teardown(void **state) {
    struct fixture *f = *state;
    lua_close(f->L);
    shared_dict_free(f->dicts[0]);
    shared_dict_free(f->dicts[1]);
    return 0;
}

/* Runs Lua code that asserts what it expects; fails the test with Lua's message otherwise. */
static void lua_ok(void **state, const char *code) {
    struct fixture *f = *state;
    if (luaL_dostring(f->L, code) != 0) fail_msg("%s", lua_tostring(f->L, -1));
}

static void lua_fails(void **state, const char *code, const char *message) {
    struct fixture *f = *state;
    assert_int_not_equal(luaL_dostring(f->L, code), 0);
    const char *got = lua_tostring(f->L, -1);
    if (!strstr(got, message)) fail_msg("error %s does not contain %s", got, message);
    lua_pop(f->L, 1);
}

static void test_get_and_set_every_type(void **state) {
    lua_ok(state, "local d = shared.counters\n"
                  "assert(d:name() == 'counters')\n"
                  "local ok, err, forcible = d:set('s', 'a\\0b')\n"
                  "assert(ok == true and err == nil and forcible == false)\n"
                  "assert(d:get('s') == 'a\\0b')\n"
                  "d:set('n', 1.5); assert(d:get('n') == 1.5)\n"
                  "d:set('t', true); assert(d:get('t') == true)\n"
                  "d:set('f', false); assert(d:get('f') == false)\n"
                  "assert(d:get('missing') == nil)\n"
                  "d:set(7, 'seven'); assert(d:get('7') == 'seven')\n"
                  "d:set('long', string.rep('x', 1000)); assert(#d:get('long') == 1000)\n"
                  "d:set('s', nil); assert(d:get('s') == nil)\n");
}

static void test_flags_come_back_with_the_value(void **state) {
    lua_ok(state, "local d = shared.counters\n"
                  "d:set('flagged', 'v', 0, 42)\n"
                  "local v, flags = d:get('flagged')\n"
                  "assert(v == 'v' and flags == 42)\n"
                  "d:set('plain', 'v')\n"
                  "assert(select('#', d:get('plain')) == 1)\n");
}

static void test_add_replace_and_delete(void **state) {
    lua_ok(state, "local d = shared.counters\n"
                  "d:delete('k')\n"
                  "assert(d:add('k', 1) == true)\n"
                  "local ok, err = d:add('k', 2)\n"
                  "assert(ok == false and err == 'exists' and d:get('k') == 1)\n"
                  "assert(d:replace('k', 3) == true and d:get('k') == 3)\n"
                  "local ok2, err2 = d:replace('nope', 1)\n"
                  "assert(ok2 == false and err2 == 'not found')\n"
                  "assert(select('#', d:delete('k')) == 0 and d:get('k') == nil)\n");
}

static void test_incr(void **state) {
    lua_ok(state, "local d = shared.counters\n"
                  "local v, err = d:incr('hits', 1)\n"
                  "assert(v == nil and err == 'not found')\n"
                  "v, err = d:incr('hits', 1, 0)\n"
                  "assert(v == 1 and err == nil)\n"
                  "assert(d:incr('hits', 10) == 11 and d:incr('hits', -0.5) == 10.5)\n"
                  "d:set('str', 'x')\n"
                  "v, err = d:incr('str', 1)\n"
                  "assert(v == nil and err == 'not a number')\n");
}

static void test_eviction_is_reported_and_safe_set_refuses(void **state) {
    /* "tiny" holds three entries of 8 bytes of key+value */
    lua_ok(state, "local d = shared.tiny\n"
                  "assert(d:set('a', 'aaaaaaa') and d:set('b', 'bbbbbbb') and d:set('c', "
                  "'ccccccc'))\n"
                  "local ok, err, forcible = d:safe_set('d', 'ddddddd')\n"
                  "assert(ok == false and err == 'no memory' and forcible == false)\n"
                  "assert(d:get('a') == 'aaaaaaa')  -- now the most recent: b goes first\n"
                  "ok, err, forcible = d:set('d', 'ddddddd')\n"
                  "assert(ok == true and forcible == true)\n"
                  "assert(d:get('b') == nil and d:get('a') == 'aaaaaaa')\n"
                  "assert(d:free_space() < d:capacity())\n");
}

static void test_bad_arguments_raise_errors(void **state) {
    lua_fails(state, "shared.counters:set({}, 1)", "key must be a string");
    lua_fails(state, "shared.counters:set('k', {})", "bad value type");
    lua_fails(state, "shared.counters:set('k', 1, -1)", "bad ttl");
    lua_fails(state, "shared.counters.get('k')", "weir.shared.dict expected");
    lua_fails(state, "getmetatable(shared.counters).__index = nil",
              "attempt to index a string value");
    lua_ok(state, "assert(getmetatable(shared.counters) == 'weir.shared dictionary')");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_and_set_every_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flags_come_back_with_the_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_replace_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eviction_is_reported_and_safe_set_refuses, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments_raise_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
