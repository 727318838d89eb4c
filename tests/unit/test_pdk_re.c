/* weir.re from Lua: OpenResty's ngx.re functions, options and results over PCRE2, run in a real
 * LuaJIT state. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "lua/pdk_re.h"

static lua_State *new_state(void) {
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    pdk_re_push(L);
    lua_setglobal(L, "re");
    lua_pushinteger(L, PDK_RE_CACHE_ENTRIES);
    lua_setglobal(L, "CACHE_ENTRIES");
    return L;
}

static int setup(void **state) {
    *state = new_state();
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

/* ---- match ---- */

static void test_match_returns_whole_match_and_numbered_groups(void **state) {
    lua_ok(state, "local m = re.match('GET /users/42 HTTP', '/(\\\\w+)/(\\\\d+)')\n"
                  "assert(m[0] == '/users/42' and m[1] == 'users' and m[2] == '42')\n"
                  "assert(m[3] == nil and #m == 2)\n");
}

static void test_match_without_a_match_returns_nil(void **state) {
    lua_ok(state, "local m, err = re.match('abc', '\\\\d')\n"
                  "assert(m == nil and err == nil)\n"
                  "assert(select('#', re.match('abc', '\\\\d')) == 1)\n");
}

static void test_match_gives_named_groups_by_name_and_number(void **state) {
    lua_ok(state, "local m = re.match('2024-05', '(?<year>\\\\d+)-(?<month>\\\\d+)')\n"
                  "assert(m.year == '2024' and m[1] == '2024')\n"
                  "assert(m.month == '05' and m[2] == '05')\n");
}

static void test_unmatched_group_is_false(void **state) {
    lua_ok(state, "local m = re.match('b', '(a)|(?<bee>b)|(?<sea>c)')\n"
                  "assert(m[0] == 'b' and m[1] == false and m[2] == 'b' and m[3] == false)\n"
                  "assert(m.bee == 'b' and m.sea == false)\n");
}

static void test_match_fills_the_given_result_table(void **state) {
    lua_ok(state, "local t = {}\n"
                  "local m = re.match('ab', '(a)(b)', nil, nil, t)\n"
                  "assert(m == t and t[0] == 'ab' and t[1] == 'a' and t[2] == 'b')\n");
}

/* ---- init ---- */

static void test_init_is_a_one_based_start(void **state) {
    lua_ok(state, "assert(re.match('abcabc', 'abc', nil, 2)[0] == 'abc')\n"
                  "local from, to = re.find('abcabc', 'abc', nil, 2)\n"
                  "assert(from == 4 and to == 6)\n"
                  "assert(re.match('abc', 'a', nil, 2) == nil)\n"
                  "from, to = re.find('abc', 'a', nil, 0); assert(from == 1 and to == 1)\n"
                  "from, to = re.find('abc', 'a', nil, -5); assert(from == 1 and to == 1)\n"
                  "from, to = re.find('abc', '$', nil, 4); assert(from == 4 and to == 3)\n");
}

static void test_init_past_the_end_is_an_error(void **state) {
    lua_ok(state, "local m, err = re.match('abc', 'a', nil, 5)\n"
                  "assert(m == nil and err == 'bad offset value', err)\n");
}

static void test_init_may_be_an_openresty_ctx_table(void **state) {
    lua_ok(state, "local ctx = {pos = 2}\n"
                  "local from, to = re.find('abcabc', 'abc', nil, ctx)\n"
                  "assert(from == 4 and to == 6 and ctx.pos == 7)\n"
                  "assert(re.match('abcabc', 'abc', nil, ctx) == nil and ctx.pos == 7)\n"
                  "ctx = {}\n"
                  "assert(re.match('xab', 'a', nil, ctx)[0] == 'a' and ctx.pos == 3)\n");
}

/* ---- find ---- */

static void test_find_returns_positions_of_the_whole_match(void **state) {
    lua_ok(state, "local from, to, err = re.find('hello world', 'o w')\n"
                  "assert(from == 5 and to == 7 and err == nil)\n"
                  "assert(re.find('hello', 'z') == nil)\n"
                  "assert(select('#', re.find('hello', 'z')) == 1)\n"
                  "from, to = re.find('abc', 'x*'); assert(from == 1 and to == 0)\n");
}

static void test_find_returns_positions_of_capture_nth(void **state) {
    lua_ok(state, "local s, p = 'ab12', '([a-z]+)(\\\\d+)'\n"
                  "local from, to = re.find(s, p, nil, nil, 2); assert(from == 3 and to == 4)\n"
                  "from, to = re.find(s, p, nil, nil, 1); assert(from == 1 and to == 2)\n"
                  "from, to = re.find(s, p, nil, nil, 0); assert(from == 1 and to == 4)\n"
                  "from, to = re.find(s, p, nil, nil, -1); assert(from == 1 and to == 4)\n"
                  "local a, b, err = re.find(s, p, nil, nil, 3)\n"
                  "assert(a == nil and b == nil and err == 'nth out of bound')\n"
                  "a, b, err = re.find('a', '(a)|(b)', nil, nil, 2)\n"
                  "assert(a == nil and b == nil and err == nil)\n");
}

/* ---- gmatch ---- */

static void test_gmatch_iterates_every_match(void **state) {
    lua_ok(state, "local got = {}\n"
                  "for m in re.gmatch('k1=v1; k2=v2', '(?<k>\\\\w+)=(\\\\w+)') do\n"
                  "  got[#got + 1] = m.k .. ':' .. m[2] .. ':' .. m[0]\n"
                  "end\n"
                  "assert(#got == 2 and got[1] == 'k1:v1:k1=v1' and got[2] == 'k2:v2:k2=v2')\n"
                  "local it = re.gmatch('a', 'a')\n"
                  "assert(it()[0] == 'a' and it() == nil and it() == nil)\n"
                  "it = re.gmatch('abc', '\\\\d'); assert(it() == nil)\n");
}

static void test_gmatch_advances_past_empty_matches(void **state) {
    lua_ok(state, "local got = {}\n"
                  "for m in re.gmatch('abc', 'x*') do got[#got + 1] = '[' .. m[0] .. ']' end\n"
                  "assert(table.concat(got) == '[][][][]', table.concat(got))\n"
                  "got = {}\n"
                  "for m in re.gmatch('aaa', 'a*') do got[#got + 1] = '[' .. m[0] .. ']' end\n"
                  "assert(table.concat(got) == '[aaa][]', table.concat(got))\n");
}

static void test_gmatch_iterator_survives_eviction_of_its_regex(void **state) {
    lua_ok(state, "local it = re.gmatch('a1b2c3', '[a-z]\\\\d')\n"
                  "assert(it()[0] == 'a1')\n"
                  "for i = 1, CACHE_ENTRIES + 10 do assert(re.find('q' .. i, 'q' .. i)) end\n"
                  "collectgarbage(); collectgarbage()\n"
                  "assert(it()[0] == 'b2' and it()[0] == 'c3' and it() == nil)\n");
}

/* ---- sub and gsub ---- */

static void test_sub_replaces_the_first_match_only(void **state) {
    lua_ok(state, "local s, n = re.sub('a1b2', '\\\\d', '#')\n"
                  "assert(s == 'a#b2' and n == 1)\n");
}

static void test_gsub_replaces_every_match(void **state) {
    lua_ok(state, "local s, n, err = re.gsub('a1b2c3', '\\\\d', '#')\n"
                  "assert(s == 'a#b#c#' and n == 3 and err == nil)\n");
}

static void test_replacing_without_a_match_returns_the_subject_and_zero(void **state) {
    lua_ok(state, "local s, n = re.gsub('abc', '\\\\d', '#')\n"
                  "assert(s == 'abc' and n == 0)\n"
                  "s, n = re.sub('abc', '\\\\d', function() error('not called') end)\n"
                  "assert(s == 'abc' and n == 0)\n");
}

static void test_template_expands_numbered_and_named_groups(void **state) {
    lua_ok(state, "local s = re.gsub('hello world', '(?<first>\\\\w+) (\\\\w+)',\n"
                  "                  '$2 $1 ${first}! $first, ${2}x $0 ${0}')\n"
                  "assert(s == 'world hello hello! hello, worldx hello world hello world', s)\n"
                  "assert(re.sub('ab', '(a)(b)', '$2$1$2') == 'bab')\n"
                  "assert(re.sub('ab', '(a)', '$10') == 'b')  -- $10 is group 10\n"
                  "assert(re.sub('ab', '(a)', '${1}0') == 'a0b')\n");
}

static void test_template_double_dollar_is_a_literal_dollar(void **state) {
    lua_ok(state, "assert(re.gsub('5', '\\\\d', '$$$0.00') == '$5.00')\n"
                  "assert(re.gsub('x', 'x', '$$1') == '$1')\n");
}

static void test_template_group_that_did_not_match_is_empty(void **state) {
    lua_ok(state, "assert(re.sub('a', '(a)|(b)', '[$2]') == '[]')\n"
                  "assert(re.sub('a', '(a)|(?<bee>b)', '[${bee}]') == '[]')\n"
                  "assert(re.sub('a', 'a', '[$9]') == '[]')\n");
}

static void test_bad_template_is_an_error_even_without_a_match(void **state) {
    lua_ok(state, "for _, t in ipairs({'$', 'x$', '${1', '${}', '$-', '${1a}', '${nope}',\n"
                  "                      '$nope'}) do\n"
                  "  local s, n, err = re.gsub('abc', '(?<b>b)', t)\n"
                  "  assert(s == nil and n == nil, t)\n"
                  "  assert(err == 'failed to compile the replacement template', err)\n"
                  "  s, n, err = re.sub('zzz', '(?<b>b)', t)\n"
                  "  assert(s == nil and err == 'failed to compile the replacement template')\n"
                  "end\n");
}

static void test_function_replacement_gets_the_captures(void **state) {
    lua_ok(state, "local s, n = re.gsub('a1 b2', '(?<letter>[a-z])(\\\\d)', function(m)\n"
                  "  return m[2] .. m.letter .. '(' .. m[0] .. ')'\n"
                  "end)\n"
                  "assert(s == '1a(a1) 2b(b2)' and n == 2, s)\n"
                  "s = re.gsub('a b', '\\\\w', function(m) return 7 end)\n"
                  "assert(s == '7 7')\n");
}

static void test_function_replacement_must_return_a_string(void **state) {
    lua_fails(state, "re.gsub('abc', 'b', function() return nil end)",
              "replacement function returned nil (string expected)");
    lua_fails(state, "re.gsub('abc', 'b', function() error('boom') end)", "boom");
}

static void test_function_replacement_may_use_weir_re_itself(void **state) {
    /* 40 groups: more than fit inline, and enough to grow the shared match data in the middle
     * of the outer gsub */
    lua_ok(state, "local big = ('(x)'):rep(40)\n"
                  "local s, n = re.gsub('a1 b2', '([a-z])(\\\\d)', function(m)\n"
                  "  local inner = re.match(('x'):rep(40), big)\n"
                  "  assert(inner[40] == 'x' and inner[41] == nil)\n"
                  "  assert(re.gsub('zz', 'z', 'y') == 'yy')\n"
                  "  return m[2] .. m[1]\n"
                  "end)\n"
                  "assert(s == '1a 2b' and n == 2, s)\n");
}

static void test_gsub_advances_past_empty_matches(void **state) {
    lua_ok(state, "local s, n = re.gsub('abc', 'x*', '-')\n"
                  "assert(s == '-a-b-c-' and n == 4, s)\n"
                  "s, n = re.gsub('aaa', 'a*', '-'); assert(s == '--' and n == 2, s)\n"
                  "s, n = re.gsub('', 'x*', '-'); assert(s == '-' and n == 1, s)\n"
                  "s, n = re.gsub('ab', '', '-'); assert(s == '-a-b-' and n == 3, s)\n"
                  "s, n = re.sub('abc', 'x*', '-'); assert(s == '-abc' and n == 1, s)\n");
}

/* ---- options ---- */

static void test_option_a_anchors_at_the_start(void **state) {
    lua_ok(state, "assert(re.match('xab', 'ab', 'a') == nil)\n"
                  "assert(re.match('abx', 'ab', 'a')[0] == 'ab')\n"
                  "local from, to = re.find('xab', 'ab', 'a', 2); assert(from == 2 and to == 3)\n"
                  "assert(re.gsub('aab', 'a', '-', 'a') == '--b')\n");
}

static void test_option_i_ignores_case(void **state) {
    lua_ok(state, "assert(re.match('HeLLo', 'hello') == nil)\n"
                  "assert(re.match('HeLLo', 'hello', 'i')[0] == 'HeLLo')\n");
}

static void test_option_m_makes_anchors_match_at_lines(void **state) {
    lua_ok(state, "assert(re.match('a\\nb', '^b$') == nil)\n"
                  "assert(re.match('a\\nb', '^b$', 'm')[0] == 'b')\n");
}

static void test_option_s_makes_dot_match_newline(void **state) {
    lua_ok(state, "assert(re.match('a\\nb', 'a.b') == nil)\n"
                  "assert(re.match('a\\nb', 'a.b', 's')[0] == 'a\\nb')\n");
}

static void test_option_x_ignores_pattern_whitespace_and_comments(void **state) {
    lua_ok(state, "assert(re.match('ab', 'a b # letters') == nil)\n"
                  "assert(re.match('ab', 'a b # letters', 'x')[0] == 'ab')\n");
}

static void test_option_u_matches_utf8_characters(void **state) {
    lua_ok(state, "assert(re.match('h\\xc3\\xa9llo', '^h.llo$') == nil)\n"
                  "assert(re.match('h\\xc3\\xa9llo', '^h.llo$', 'u')[0] == 'h\\xc3\\xa9llo')\n"
                  "local from, to = re.find('\\xc3\\xa9t\\xc3\\xa9', 't', 'u')\n"
                  "assert(from == 3 and to == 3)  -- positions stay in bytes\n");
}

static void test_option_u_rejects_invalid_utf8(void **state) {
    lua_ok(state, "local m, err = re.match('a\\xffb', 'b', 'u')\n"
                  "assert(m == nil and err:find('UTF-8 error', 1, true), err)\n"
                  "local s, n, err2 = re.gsub('a\\xffb', 'b', 'c', 'u')\n"
                  "assert(s == nil and n == nil and err2:find('UTF-8 error', 1, true))\n");
}

static void test_option_U_skips_the_utf8_check(void **state) {
    lua_ok(state, "local m, err = re.match('\\xff h\\xc3\\xa9llo', 'h.llo', 'U')\n"
                  "assert(m[0] == 'h\\xc3\\xa9llo', err)\n"
                  "assert(re.match('\\xff', '.', 'U') == nil)  -- invalid bytes never match\n");
}

static void test_option_D_collects_duplicate_names(void **state) {
    lua_ok(state, "local m = re.match('ab', '(?<n>a)(?<n>b)', 'D')\n"
                  "assert(m.n[1] == 'a' and m.n[2] == 'b' and #m.n == 2)\n"
                  "m = re.match('b', '(?<n>a)|(?<n>b)', 'D')\n"
                  "assert(#m.n == 1 and m.n[1] == 'b' and m[1] == false)\n"
                  "assert(re.sub('b', '(?<n>a)|(?<n>b)', '[${n}]', 'D') == '[b]')\n"
                  "local m2, err = re.match('ab', '(?<n>a)(?<n>b)')\n"
                  "assert(m2 == nil and err:find('two named subpatterns have the same name'))\n");
}

static void test_option_J_accepts_javascript_escapes(void **state) {
    lua_ok(state, "assert(re.match('A', '\\\\u0041') == nil)\n"
                  "assert(re.match('A', '\\\\u0041', 'J')[0] == 'A')\n");
}

static void test_options_j_and_o_are_accepted(void **state) {
    lua_ok(state, "assert(re.match('a', 'a', 'jo')[0] == 'a')\n"
                  "assert(re.gsub('aa', 'a', 'b', 'oj') == 'bb')\n");
}

static void test_unknown_option_raises_an_error_naming_it(void **state) {
    lua_fails(state, "re.match('a', 'a', 'jz')", "unknown flag \"z\" (flags \"jz\")");
    lua_fails(state, "re.gsub('a', 'a', 'b', 'd')", "unknown flag \"d\"");
}

static void test_utf8_mode_advances_empty_matches_by_character(void **state) {
    lua_ok(state, "local s, n = re.gsub('h\\xc3\\xa9', '', '-', 'u')\n"
                  "assert(s == '-h-\\xc3\\xa9-' and n == 3, s)\n"
                  "s, n = re.gsub('\\xc3\\xa9', '', '-')\n"
                  "assert(s == '-\\xc3-\\xa9-' and n == 3)  -- bytes without u\n"
                  "local got = 0\n"
                  "for m in re.gmatch('\\xc3\\xa9\\xc3\\xa9', 'x*', 'u') do got = got + 1 end\n"
                  "assert(got == 3)\n");
}

/* ---- errors and limits ---- */

static void test_compile_error_names_the_regex_and_offset(void **state) {
    lua_ok(state, "local m, err = re.match('x', 'a(bc')\n"
                  "assert(m == nil)\n"
                  "assert(err == 'pcre2_compile() failed: missing closing parenthesis in \"a(bc\" "
                  "at offset 4', err)\n"
                  "local from, to, err2 = re.find('x', 'a(bc')\n"
                  "assert(from == nil and to == nil and err2 == err)\n"
                  "local it, err3 = re.gmatch('x', 'a(bc'); assert(it == nil and err3 == err)\n"
                  "local s, n, err4 = re.gsub('x', 'a(bc', '')\n"
                  "assert(s == nil and n == nil and err4 == err)\n"
                  "s, n, err4 = re.sub('x', 'a(bc', function() end)\n"
                  "assert(s == nil and n == nil and err4 == err)\n");
}

static void test_catastrophic_backtracking_returns_an_error_quickly(void **state) {
    lua_ok(state, "local subject = ('a'):rep(30) .. 'b'\n"
                  "local started = os.clock()\n"
                  "local m, err = re.match(subject, '(a+)+$')\n"
                  "assert(m == nil and err == 'match limit exceeded', err)\n"
                  "local s, n, err2 = re.gsub(subject, '(a+)+$', '')\n"
                  "assert(s == nil and n == nil and err2 == 'match limit exceeded')\n"
                  "local it = re.gmatch(subject, '(a+)+$')\n"
                  "local m3, err3 = it()\n"
                  "assert(m3 == nil and err3 == 'match limit exceeded' and it() == nil)\n"
                  "assert(os.clock() - started < 2, os.clock() - started)\n");
}

static void test_deep_pattern_fits_the_jit_stack(void **state) {
    /* pcre2's default 32K JIT stack gives up on 10,000 characters of this */
    lua_ok(state, "local m, err = re.match(('ab'):rep(5000), '^(a|b)*$')\n"
                  "assert(m and #m[0] == 10000 and m[1] == 'b', err)\n");
}

static void test_too_deep_pattern_returns_an_error(void **state) {
    lua_ok(state, "local m, err = re.match(('ab'):rep(50000), '^(a|b)*$')\n"
                  "assert(m == nil, 'matched')\n"
                  "assert(err == 'JIT stack limit reached'  -- the interpreter, without JIT:\n"
                  "       or err == 'matching depth limit exceeded', err)\n");
}

static void test_subjects_and_regexes_are_binary_safe(void **state) {
    lua_ok(state, "assert(re.match('a\\0b\\0c', 'b\\0c')[0] == 'b\\0c')\n"
                  "local from, to = re.find('a\\0b', 'b'); assert(from == 3 and to == 3)\n"
                  "assert(re.gsub('a\\0b\\0', '\\0', '-') == 'a-b-')\n"
                  "assert(re.gsub('a\\0b', 'b', '$0\\0') == 'a\\0b\\0')\n"
                  "local m, err = re.match('x', '(\\0')\n"
                  "assert(err:find('in \"(\\0\" at offset 2', 1, true), err)\n");
}

static void test_bad_argument_types_raise_errors(void **state) {
    lua_fails(state, "re.match({}, 'a')", "bad argument #1");
    lua_fails(state, "re.match('a')", "bad argument #2");
    lua_fails(state, "re.match('a', 'a', {})", "bad argument #3");
    lua_fails(state, "re.match('a', 'a', nil, 'x')", "number or table expected");
    lua_fails(state, "re.match('a', 'a', nil, nil, 'x')", "bad argument #5");
    lua_fails(state, "re.find('a', 'a', nil, nil, 'x')", "bad argument #5");
    lua_fails(state, "re.gmatch(nil, 'a')", "bad argument #1");
    lua_fails(state, "re.gsub('a', 'a', {})", "string or function expected");
    lua_fails(state, "re.sub('a', 'a')", "string or function expected");
    lua_ok(state, "assert(re.match(123, '2')[0] == '2' and re.gsub(12, 1, 3) == '32')\n");
}

/* ---- the cache ---- */

static void test_cache_evicts_the_least_recently_used_beyond_its_bound(void **state) {
    /* looks into the cache: the functions' upvalue, whose environment maps key -> regex, the key
     * being 8 bytes of options then the pattern */
    lua_ok(state, "local _, cache = debug.getupvalue(re.match, 1)\n"
                  "local function patterns()\n"
                  "  local set, n = {}, 0\n"
                  "  for k in pairs(debug.getfenv(cache)) do set[k:sub(9)] = true; n = n + 1 end\n"
                  "  return set, n\n"
                  "end\n"
                  "assert(re.match('keep', '^keep$'))\n"
                  "for i = 1, CACHE_ENTRIES + 100 do\n"
                  "  local m = re.match('p' .. i, '^p' .. i .. '$')\n"
                  "  assert(m[0] == 'p' .. i)\n"
                  "  assert(re.match('keep', '^keep$')[0] == 'keep')  -- stays recent\n"
                  "end\n"
                  "local set, n = patterns()\n"
                  "assert(n == CACHE_ENTRIES, n)\n"
                  "assert(set['^keep$'] and set['^p' .. (CACHE_ENTRIES + 100) .. '$'])\n"
                  "assert(not set['^p1$'] and not set['^p101$'] and set['^p102$'])\n"
                  "collectgarbage(); collectgarbage()\n"
                  "for i = 1, 200 do\n"
                  "  assert(re.match('p' .. i, '^p' .. i .. '$')[0] == 'p' .. i)\n"
                  "  assert(re.match('p' .. i .. 'x', '^p' .. i .. '$') == nil)\n"
                  "end\n"
                  "assert(select(2, patterns()) == CACHE_ENTRIES)\n");
}

static void test_cache_keys_on_options_too(void **state) {
    lua_ok(state, "assert(re.match('A', 'a') == nil)\n"
                  "assert(re.match('A', 'a', 'i')[0] == 'A')\n"
                  "assert(re.match('A', 'a') == nil)\n"
                  "assert(re.match('A', 'a', 'ji')[0] == 'A')\n");
}

static void test_lua_close_frees_cached_regexes(void **state) {
    /* LeakSanitizer or valgrind report anything this leaves behind */
    (void)state;
    lua_State *L = new_state();
    if (luaL_dostring(L, "for i = 1, CACHE_ENTRIES + 50 do re.find('x', 'x' .. i, 'u') end\n"
                         "live = re.gmatch('aaa', 'a')\n"
                         "assert(live())\n"
                         "re.gsub('ab', '(a)', function(m) return m[1] end)\n"
                         "assert(re.match(('x'):rep(40), ('(x)'):rep(40)))\n") != 0)
        fail_msg("%s", lua_tostring(L, -1));
    lua_close(L);
}

int main(void) {
#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        TEST(test_match_returns_whole_match_and_numbered_groups),
        TEST(test_match_without_a_match_returns_nil),
        TEST(test_match_gives_named_groups_by_name_and_number),
        TEST(test_unmatched_group_is_false),
        TEST(test_match_fills_the_given_result_table),
        TEST(test_init_is_a_one_based_start),
        TEST(test_init_past_the_end_is_an_error),
        TEST(test_init_may_be_an_openresty_ctx_table),
        TEST(test_find_returns_positions_of_the_whole_match),
        TEST(test_find_returns_positions_of_capture_nth),
        TEST(test_gmatch_iterates_every_match),
        TEST(test_gmatch_advances_past_empty_matches),
        TEST(test_gmatch_iterator_survives_eviction_of_its_regex),
        TEST(test_sub_replaces_the_first_match_only),
        TEST(test_gsub_replaces_every_match),
        TEST(test_replacing_without_a_match_returns_the_subject_and_zero),
        TEST(test_template_expands_numbered_and_named_groups),
        TEST(test_template_double_dollar_is_a_literal_dollar),
        TEST(test_template_group_that_did_not_match_is_empty),
        TEST(test_bad_template_is_an_error_even_without_a_match),
        TEST(test_function_replacement_gets_the_captures),
        TEST(test_function_replacement_must_return_a_string),
        TEST(test_function_replacement_may_use_weir_re_itself),
        TEST(test_gsub_advances_past_empty_matches),
        TEST(test_option_a_anchors_at_the_start),
        TEST(test_option_i_ignores_case),
        TEST(test_option_m_makes_anchors_match_at_lines),
        TEST(test_option_s_makes_dot_match_newline),
        TEST(test_option_x_ignores_pattern_whitespace_and_comments),
        TEST(test_option_u_matches_utf8_characters),
        TEST(test_option_u_rejects_invalid_utf8),
        TEST(test_option_U_skips_the_utf8_check),
        TEST(test_option_D_collects_duplicate_names),
        TEST(test_option_J_accepts_javascript_escapes),
        TEST(test_options_j_and_o_are_accepted),
        TEST(test_unknown_option_raises_an_error_naming_it),
        TEST(test_utf8_mode_advances_empty_matches_by_character),
        TEST(test_compile_error_names_the_regex_and_offset),
        TEST(test_catastrophic_backtracking_returns_an_error_quickly),
        TEST(test_deep_pattern_fits_the_jit_stack),
        TEST(test_too_deep_pattern_returns_an_error),
        TEST(test_subjects_and_regexes_are_binary_safe),
        TEST(test_bad_argument_types_raise_errors),
        TEST(test_cache_evicts_the_least_recently_used_beyond_its_bound),
        TEST(test_cache_keys_on_options_too),
        TEST(test_lua_close_frees_cached_regexes),
    };
#undef TEST
    return cmocka_run_group_tests(tests, NULL, NULL);
}
