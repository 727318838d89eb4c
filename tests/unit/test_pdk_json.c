/* weir.json and the jansson <-> Lua conversions, run in a real LuaJIT state. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "lua/pdk_json.h"

static int setup(void **state) {
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_newtable(L);
    pdk_json_push_module(L);
    lua_setfield(L, -2, "json");
    lua_setglobal(L, "weir");
    *state = L;
    return 0;
}

static int teardown(void **state) {
    lua_close(*state);
    return 0;
}

/* Runs Lua code that asserts what it expects; fails the test with Lua's message otherwise. */
static void lua_ok(void **state, const char *code) {
    lua_State *L = *state;
    if (luaL_dostring(L, code) != 0) fail_msg("%s", lua_tostring(L, -1));
}

static void lua_fails(void **state, const char *code, const char *message) {
    lua_State *L = *state;
    assert_int_not_equal(luaL_dostring(L, code), 0);
    const char *got = lua_tostring(L, -1);
    if (!strstr(got, message)) fail_msg("error %s does not contain %s", got, message);
    lua_pop(L, 1);
}

/* Checks that encoding the Lua expression gives exactly `expected`. */
static void encodes_as(void **state, const char *expression, const char *expected) {
    lua_State *L = *state;
    char code[1024];
    snprintf(code, sizeof code, "local s, err = weir.json.encode(%s) return s or err", expression);
    if (luaL_dostring(L, code) != 0) fail_msg("%s", lua_tostring(L, -1));
    if (strcmp(lua_tostring(L, -1), expected) != 0)
        fail_msg("%s encodes as %s, expected %s", expression, lua_tostring(L, -1), expected);
    lua_pop(L, 1);
}

/* Checks that encoding the Lua expression fails with an error containing `message`. */
static void refuses(void **state, const char *expression, const char *message) {
    lua_State *L = *state;
    char code[1024];
    snprintf(code, sizeof code,
             "local s, err = weir.json.encode(%s)\n"
             "assert(s == nil, 'encoded as ' .. tostring(s))\n"
             "return err",
             expression);
    if (luaL_dostring(L, code) != 0) fail_msg("%s", lua_tostring(L, -1));
    const char *got = lua_tostring(L, -1);
    if (!got || !strstr(got, message)) fail_msg("error %s does not contain %s", got, message);
    lua_pop(L, 1);
}

static void test_decode_maps_every_json_type(void **state) {
    lua_ok(state, "local v = weir.json.decode("
                  "'{\"o\":{\"k\":1},\"a\":[1,2],\"s\":\"x\",\"n\":-2.5,\"t\":true,\"f\":false,"
                  "\"z\":null}')\n"
                  "assert(type(v.o) == 'table' and v.o.k == 1)\n"
                  "assert(#v.a == 2 and v.a[1] == 1 and v.a[2] == 2)\n"
                  "assert(getmetatable(v.a) == weir.json.array_mt)\n"
                  "assert(getmetatable(v.o) == nil)\n"
                  "assert(v.s == 'x' and v.n == -2.5 and v.t == true and v.f == false)\n"
                  "assert(v.z == weir.json.null)\n"
                  "assert(weir.json.decode('\"top\"') == 'top')\n"
                  "assert(weir.json.decode('3') == 3)\n"
                  "assert(weir.json.decode(' true ') == true)\n");
}

static void test_every_type_round_trips(void **state) {
    encodes_as(state, "{}", "{}");
    encodes_as(state, "{1, 2}", "[1,2]");
    encodes_as(state, "{k = 'v'}", "{\"k\":\"v\"}");
    encodes_as(state, "'s'", "\"s\"");
    encodes_as(state, "-7", "-7");
    encodes_as(state, "true", "true");
    encodes_as(state, "false", "false");
    encodes_as(state, "weir.json.null", "null");
    encodes_as(state, "nil", "null");
    lua_ok(state, "for _, text in ipairs({'{\"a\":[1,\"b\",true,false,null,{},[]]}', '[]', '{}',"
                  "                      '\"\"', '0', '-1.25', 'true', 'null'}) do\n"
                  "  local again = weir.json.encode(weir.json.decode(text))\n"
                  "  assert(again == text, text .. ' came back as ' .. again)\n"
                  "end\n");
}

static void test_nested_structures_round_trip(void **state) {
    lua_ok(state, "local v = {users = {{name = 'ann', tags = {'a', 'b'}},"
                  "                    {name = 'bob', tags = setmetatable({}, weir.json.array_mt),"
                  "                     meta = {deep = {deeper = {1, {2, {3}}}}}}}}\n"
                  "local back = weir.json.decode(weir.json.encode(v))\n"
                  "assert(back.users[1].name == 'ann' and back.users[1].tags[2] == 'b')\n"
                  "assert(#back.users[2].tags == 0)\n"
                  "assert(back.users[2].meta.deep.deeper[2][2][1] == 3)\n"
                  "assert(weir.json.encode(back.users[2].meta) == "
                  "'{\"deep\":{\"deeper\":[1,[2,[3]]]}}')\n");
}

static void test_empty_table_encodes_as_object(void **state) {
    encodes_as(state, "{}", "{}");
    encodes_as(state, "{list = {}}", "{\"list\":{}}");
}

static void test_array_mt_makes_empty_table_an_array(void **state) {
    encodes_as(state, "setmetatable({}, weir.json.array_mt)", "[]");
    encodes_as(state, "weir.json.empty_array", "[]");
    encodes_as(state, "{list = weir.json.empty_array}", "{\"list\":[]}");
    encodes_as(state, "weir.json.decode('{\"a\":[]}')", "{\"a\":[]}");
    encodes_as(state, "setmetatable({1, 2}, weir.json.array_mt)", "[1,2]");
}

static void test_array_mt_is_one_table_per_state(void **state) {
    lua_State *L = *state;
    pdk_json_push_module(L);
    lua_setglobal(L, "json2");
    lua_ok(state, "assert(json2.array_mt == weir.json.array_mt)\n"
                  "assert(json2.null == weir.json.null)\n"
                  "assert(getmetatable(json2.decode('[]')) == weir.json.array_mt)\n"
                  "assert(weir.json.encode(setmetatable({}, json2.array_mt)) == '[]')\n");
    lua_getfield(L, LUA_REGISTRYINDEX, PDK_JSON_ARRAY_MT);
    lua_getglobal(L, "json2");
    lua_getfield(L, -1, "array_mt");
    assert_true(lua_rawequal(L, -1, -3));
    lua_pop(L, 3);
}

static void test_null_sentinel_both_ways(void **state) {
    lua_ok(state, "local null = weir.json.null\n"
                  "assert(type(null) == 'userdata')\n"
                  "assert(weir.json.decode('null') == null)\n"
                  "local v = weir.json.decode('[null, 1, null]')\n"
                  "assert(#v == 3 and v[1] == null and v[3] == null)\n"
                  "assert(weir.json.encode({a = null}) == '{\"a\":null}')\n"
                  "assert(weir.json.encode({1, null, 3}) == '[1,null,3]')\n");
}

static void test_integers_stay_integers_and_reals_keep_their_digits(void **state) {
    encodes_as(state, "1", "1");
    encodes_as(state, "1.5", "1.5");
    encodes_as(state, "2^53", "9007199254740992");
    encodes_as(state, "-2^63", "-9223372036854775808");
    encodes_as(state, "2^63", "9.223372036854776e18");
    encodes_as(state, "0.1", "0.1");
    encodes_as(state, "1e300", "1e300");
    encodes_as(state, "-0.0", "0");
    lua_ok(state,
           "for _, x in ipairs({1/3, 0.1 + 0.2, 2^-1074, 123456.789e-3, 2^53 + 2}) do\n"
           "  assert(weir.json.decode(weir.json.encode(x)) == x, x)\n"
           "end\n"
           "assert(weir.json.decode('9007199254740993') == 2^53)\n"
           "assert(weir.json.decode('123456789012345678901234567890') == 1.2345678901234568e29)\n");
}

static void test_strings_are_binary_safe(void **state) {
    encodes_as(state, "'a\\0b'", "\"a\\u0000b\"");
    encodes_as(state, "{['k\\0ey'] = 1}", "{\"k\\u0000ey\":1}");
    lua_ok(state, "assert(weir.json.decode('\"a\\\\u0000b\"') == 'a\\0b')\n"
                  "local all = {}\n"
                  "for i = 0, 127 do all[#all + 1] = string.char(i) end\n"
                  "all = table.concat(all)\n"
                  "assert(weir.json.decode(weir.json.encode(all)) == all)\n"
                  "local key = all:sub(2)\n"
                  "assert(weir.json.decode(weir.json.encode({[key] = all}))[key] == all)\n"
                  "-- jansson keeps object keys as C strings: a NUL in a key decodes to an error\n"
                  "local v, err = weir.json.decode('{\"a\\\\u0000b\":1}')\n"
                  "assert(v == nil and err:find('NUL byte in object key'), err)\n");
}

static void test_unicode_passes_through(void **state) {
    encodes_as(state, "'caf\\195\\169'", "\"caf\xc3\xa9\"");
    encodes_as(state, "{['\\226\\130\\172'] = '\\240\\159\\152\\128'}",
               "{\"\xe2\x82\xac\":\"\xf0\x9f\x98\x80\"}");
    lua_ok(state, "assert(weir.json.decode('\"\\\\u00e9\"') == '\\195\\169')\n"
                  "assert(weir.json.decode('\"\\\\ud83d\\\\ude00\"') == '\\240\\159\\152\\128')\n");
}

static void test_invalid_utf8_is_refused(void **state) {
    refuses(state, "'\\255'", "not UTF-8");
    refuses(state, "{s = 'ok\\192\\128'}", "not UTF-8");                  /* overlong NUL */
    refuses(state, "{['\\237\\160\\128'] = 1}", "key that is not UTF-8"); /* surrogate */
    lua_ok(state, "local v, err = weir.json.decode('\"\\255\"')\n"
                  "assert(v == nil and err:find('unable to decode byte 0xff'), err)\n");
}

static void test_cycle_is_refused(void **state) {
    refuses(state, "(function() local t = {} t.self = t return t end)()", "contains itself");
    refuses(state, "(function() local a, b = {}, {} a[1] = b b[1] = a return a end)()",
            "contains itself");
    /* the same table twice side by side is not a cycle */
    encodes_as(state, "(function() local t = {1} return {t, t} end)()", "[[1],[1]]");
}

static void test_function_thread_and_userdata_are_refused(void **state) {
    refuses(state, "print", "cannot encode a function");
    refuses(state, "{f = function() end}", "cannot encode a function");
    refuses(state, "coroutine.create(print)", "cannot encode a thread");
    refuses(state, "io.stdout", "cannot encode a userdata");
    refuses(state, "{newproxy(true)}", "cannot encode a userdata");
}

static void test_nan_and_infinity_are_refused(void **state) {
    refuses(state, "0/0", "NaN or infinity");
    refuses(state, "{x = math.huge}", "NaN or infinity");
    refuses(state, "{-math.huge}", "NaN or infinity");
}

static void test_holes_are_null_but_excessively_sparse_arrays_are_refused(void **state) {
    encodes_as(state, "{1, nil, 3}", "[1,null,3]");
    encodes_as(state, "{[10] = 1}", "[null,null,null,null,null,null,null,null,null,1]");
    encodes_as(state, "{[3] = 'c', [6] = 'f', [1] = 'a'}", "[\"a\",null,\"c\",null,null,\"f\"]");
    refuses(state, "{[11] = 1}", "excessively sparse array");
    refuses(state, "{[1e9] = 1}", "excessively sparse array");
}

static void test_mixed_keys_encode_as_an_object_with_string_keys(void **state) {
    lua_ok(state, "local v = weir.json.decode(weir.json.encode({10, 20, x = 1, [1.5] = 'h'}))\n"
                  "assert(v['1'] == 10 and v['2'] == 20 and v.x == 1 and v['1.5'] == 'h')\n"
                  "assert(getmetatable(v) == nil)\n");
    encodes_as(state, "{[0] = 'zero'}", "{\"0\":\"zero\"}");
    encodes_as(state, "{[-1] = 'minus'}", "{\"-1\":\"minus\"}");
    refuses(state, "{[true] = 1}", "table key of type boolean");
    refuses(state, "{[{}] = 1}", "table key of type table");
}

static void test_tables_are_read_without_metamethods(void **state) {
    encodes_as(state, "setmetatable({}, {__index = function() return 1 end, __len = 5})", "{}");
    encodes_as(state, "setmetatable({a = 1}, {__pairs = error})", "{\"a\":1}");
}

static void test_nesting_deeper_than_100_tables_is_refused(void **state) {
    lua_ok(state,
           "local function nest(n) local t = {} for _ = 2, n do t = {t} end return t end\n"
           "local s = assert(weir.json.encode(nest(100)))\n"
           "assert(s == string.rep('[', 99) .. '{}' .. string.rep(']', 99))\n"
           "local v, err = weir.json.encode(nest(101))\n"
           "assert(v == nil and err == 'cannot encode tables nested deeper than 100', err)\n");
}

static void test_bad_json_reports_line_and_column(void **state) {
    lua_ok(state, "local v, err = weir.json.decode('{\"a\":\\n tru}')\n"
                  "assert(v == nil)\n"
                  "assert(err:find('at line 2 column 4', 1, true), err)\n"
                  "v, err = weir.json.decode('')\n"
                  "assert(v == nil and err:find('at line 1'), err)\n"
                  "v, err = weir.json.decode('{\"a\" 1}')\n"
                  "assert(v == nil and err:find('line 1 column'), err)\n");
}

static void test_trailing_garbage_is_refused(void **state) {
    lua_ok(state, "local v, err = weir.json.decode('[1,2] x')\n"
                  "assert(v == nil and err:find('end of file expected'), err)\n"
                  "v, err = weir.json.decode('{} {}')\n"
                  "assert(v == nil, 'two documents accepted')\n"
                  "assert(weir.json.decode('[1] \\n\\t') ~= nil)\n");
}

static void test_decode_refuses_json_deeper_than_the_parser_allows(void **state) {
    lua_ok(state,
           "local v, err = weir.json.decode(string.rep('[', 3000) .. string.rep(']', 3000))\n"
           "assert(v == nil and err:find('depth'), err)\n"
           "local deep = string.rep('[', 2000) .. string.rep(']', 2000)\n"
           "assert(type(weir.json.decode(deep)) == 'table')\n");
}

static void test_duplicate_keys_last_one_wins(void **state) {
    lua_ok(state, "assert(weir.json.decode('{\"a\":1,\"a\":2}').a == 2)\n");
}

static void test_wrong_argument_types_raise_errors(void **state) {
    lua_fails(state, "weir.json.decode({})", "bad argument #1 to 'decode' (string expected");
    lua_fails(state, "weir.json.decode()", "bad argument #1 to 'decode' (string expected");
    lua_fails(state, "weir.json.encode()", "bad argument #1 to 'encode' (value expected)");
}

static void test_from_lua_reports_errors_in_the_caller_buffer(void **state) {
    lua_State *L = *state;
    int top = lua_gettop(L);
    char err[64];
    assert_int_equal(luaL_dostring(L, "return {ok = {1, 2.5, 'x'}}"), 0);
    json_t *v = pdk_json_from_lua(L, -1, err, sizeof err);
    assert_non_null(v);
    json_t *expected = json_pack("{s:[i,f,s]}", "ok", 1, 2.5, "x");
    assert_true(json_equal(v, expected));
    json_decref(v);
    json_decref(expected);
    lua_pop(L, 1);

    assert_int_equal(luaL_dostring(L, "return {a = {b = print}}"), 0);
    assert_null(pdk_json_from_lua(L, -1, err, sizeof err));
    assert_string_equal(err, "cannot encode a function");
    char tiny[8];
    assert_null(pdk_json_from_lua(L, -1, tiny, sizeof tiny));
    assert_string_equal(tiny, "cannot ");
    assert_null(pdk_json_from_lua(L, -1, NULL, 0));
    lua_pop(L, 1);
    assert_int_equal(lua_gettop(L), top);
}

static void test_push_builds_lua_values_from_jansson(void **state) {
    lua_State *L = *state;
    json_t *v = json_pack("{s:[i,f,b,n,s#],s:{},s:[]}", "list", 42, 0.5, 1, "a\0b", (size_t)3,
                          "object", "array");
    pdk_json_push(L, v);
    json_decref(v);
    lua_setglobal(L, "pushed");
    lua_ok(state, "local l = pushed.list\n"
                  "assert(l[1] == 42 and l[2] == 0.5 and l[3] == true)\n"
                  "assert(l[4] == weir.json.null and l[5] == 'a\\0b')\n"
                  "assert(weir.json.encode(pushed.object) == '{}')\n"
                  "assert(weir.json.encode(pushed.array) == '[]')\n");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_decode_maps_every_json_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_type_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_structures_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_table_encodes_as_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_array_mt_makes_empty_table_an_array, setup, teardown),
        cmocka_unit_test_setup_teardown(test_array_mt_is_one_table_per_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_sentinel_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integers_stay_integers_and_reals_keep_their_digits,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_strings_are_binary_safe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unicode_passes_through, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_utf8_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cycle_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_function_thread_and_userdata_are_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_nan_and_infinity_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_holes_are_null_but_excessively_sparse_arrays_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mixed_keys_encode_as_an_object_with_string_keys, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tables_are_read_without_metamethods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nesting_deeper_than_100_tables_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_json_reports_line_and_column, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trailing_garbage_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_refuses_json_deeper_than_the_parser_allows,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_keys_last_one_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_argument_types_raise_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_from_lua_reports_errors_in_the_caller_buffer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_push_builds_lua_values_from_jansson, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
