/* weir.base64, weir.sha256, weir.hmac and weir.uuid from Lua, checked against the published test
 * vectors, run in a real LuaJIT state. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

#include "lua/pdk_codec.h"

static int setup(void **state) {
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_newtable(L);
    lua_pushinteger(L, 1); /* something above the table, so a negative index is tested */
    pdk_codec_register(L, -2);
    lua_pop(L, 1);
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

static void test_base64_matches_rfc4648_vectors(void **state) {
    lua_ok(state, "local b = weir.base64\n"
                  "for plain, coded in pairs({[''] = '', f = 'Zg==', fo = 'Zm8=', foo = 'Zm9v',\n"
                  "    foob = 'Zm9vYg==', fooba = 'Zm9vYmE=', foobar = 'Zm9vYmFy'}) do\n"
                  "  assert(b.encode(plain) == coded, plain)\n"
                  "  assert(b.decode(coded) == plain, coded)\n"
                  "  local url = coded:gsub('=', '')\n"
                  "  assert(b.encode_url(plain) == url, plain)\n"
                  "  assert(b.decode_url(url) == plain, url)\n"
                  "end\n");
}

static void test_base64_is_binary_safe(void **state) {
    lua_ok(state, "local all = {}\n"
                  "for i = 0, 255 do all[#all + 1] = string.char(i) end\n"
                  "all = table.concat(all)\n"
                  "for n = 0, 6 do\n"
                  "  local s = all:sub(1, n) .. all\n"
                  "  assert(weir.base64.decode(weir.base64.encode(s)) == s)\n"
                  "  assert(weir.base64.decode_url(weir.base64.encode_url(s)) == s)\n"
                  "end\n"
                  "assert(weir.base64.encode('\\0') == 'AA==')\n"
                  "assert(weir.base64.decode('AAAA') == '\\0\\0\\0')\n");
}

static void test_base64_url_uses_its_alphabet_without_padding(void **state) {
    lua_ok(state, "assert(weir.base64.encode('\\xfb\\xff') == '+/8=')\n"
                  "assert(weir.base64.encode_url('\\xfb\\xff') == '-_8')\n"
                  "assert(weir.base64.decode_url('-_8') == '\\xfb\\xff')\n"
                  "assert(weir.base64.decode('+/8=') == '\\xfb\\xff')\n");
}

static void test_base64_decode_url_accepts_padding_or_none(void **state) {
    lua_ok(state, "assert(weir.base64.decode_url('Zg==') == 'f')\n"
                  "assert(weir.base64.decode_url('Zg') == 'f')\n"
                  "assert(weir.base64.decode_url('Zm8=') == 'fo')\n"
                  "assert(weir.base64.decode_url('Zm8') == 'fo')\n");
}

static void test_base64_decode_refuses_invalid_input(void **state) {
    lua_ok(state, "local function refused(f, s)\n"
                  "  local v, err = f(s)\n"
                  "  assert(v == nil and err == 'invalid base64', s)\n"
                  "end\n"
                  "local d, u = weir.base64.decode, weir.base64.decode_url\n"
                  "for _, s in ipairs({'Zg', 'Zm8', 'Zg=', 'Z', 'Zm9v\\n', ' Zm9v', 'Zm 9v',\n"
                  "    'Zm9v!A==', '-_8=', 'Zg===', 'Z===', '====', '=Zg=', 'Zg==Zg==',\n"
                  "    'Zh==', 'Zm9=', 'Zm9v\\0'}) do refused(d, s) end\n"
                  "for _, s in ipairs({'Z', 'Zg=', 'Zm9vY', '+/8', 'Zg===', 'Zh', 'Zm9',\n"
                  "    'Zm9v=', '=', 'Zm9v.'}) do refused(u, s) end\n");
}

static void test_sha256_matches_nist_vectors(void **state) {
    lua_ok(state,
           "assert(weir.sha256('') == "
           "'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')\n"
           "assert(weir.sha256('abc') == "
           "'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')\n"
           "assert(weir.sha256('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq') == "
           "'248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1')\n");
}

static void test_sha256_encodings(void **state) {
    lua_ok(state, "local hex = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'\n"
                  "assert(weir.sha256('abc', 'hex') == hex)\n"
                  "assert(weir.sha256('abc', nil) == hex)\n"
                  "assert(weir.sha256('abc', 'base64') == "
                  "'ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=')\n"
                  "local raw = weir.sha256('abc', 'raw')\n"
                  "assert(#raw == 32)\n"
                  "assert((raw:gsub('.', function(c) return ('%02x'):format(c:byte()) end)) == "
                  "hex)\n");
}

static void test_sha256_is_binary_safe(void **state) {
    lua_ok(state, "assert(weir.sha256('a\\0b') ~= weir.sha256('a'))\n"
                  "assert(weir.sha256('\\0') == "
                  "'6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d')\n");
}

static void test_hmac_matches_rfc4231_vectors(void **state) {
    lua_ok(state, "local cases = {\n"
                  "  {string.rep('\\x0b', 20), 'Hi There'},\n"
                  "  {'Jefe', 'what do ya want for nothing?'},\n"
                  "  {string.rep('\\xaa', 20), string.rep('\\xdd', 50)},\n"
                  "  {string.rep('\\xaa', 131), 'Test Using Larger Than Block-Size Key - Hash Key "
                  "First'},\n"
                  "}\n"
                  "local expected = {\n"
                  "  sha256 = {\n"
                  "    'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',\n"
                  "    '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',\n"
                  "    '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe',\n"
                  "    '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54'},\n"
                  "  sha384 = {\n"
                  "    'afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c'\n"
                  "      .. 'faea9ea9076ede7f4af152e8b2fa9cb6',\n"
                  "    'af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e'\n"
                  "      .. '8e2240ca5e69e2c78b3239ecfab21649',\n"
                  "    '88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b'\n"
                  "      .. '2a5ab39dc13814b94e3ab6e101a34f27',\n"
                  "    '4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6'\n"
                  "      .. '0c2ef6ab4030fe8296248df163f44952'},\n"
                  "  sha512 = {\n"
                  "    '87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde'\n"
                  "      .. 'daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854',\n"
                  "    '164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554'\n"
                  "      .. '9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737',\n"
                  "    'fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39'\n"
                  "      .. 'bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb',\n"
                  "    '80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352'\n"
                  "      .. '6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598'},\n"
                  "}\n"
                  "for algorithm, digests in pairs(expected) do\n"
                  "  for i, case in ipairs(cases) do\n"
                  "    local got = weir.hmac(algorithm, case[1], case[2])\n"
                  "    assert(got == digests[i], algorithm .. ' case ' .. i .. ': ' .. got)\n"
                  "  end\n"
                  "end\n");
}

static void test_hmac_sha1_matches_rfc2202_vectors(void **state) {
    lua_ok(state, "local function check(key, data, hex)\n"
                  "  assert(weir.hmac('sha1', key, data) == hex, hex)\n"
                  "end\n"
                  "check(string.rep('\\x0b', 20), 'Hi There', "
                  "'b617318655057264e28bc0b6fb378c8ef146be00')\n"
                  "check('Jefe', 'what do ya want for nothing?', "
                  "'effcdf6ae5eb2fa2d27416d5f184df9c259a7c79')\n"
                  "check(string.rep('\\xaa', 20), string.rep('\\xdd', 50), "
                  "'125d7342b9ac11cd91a39af48aa17b4f63f175d3')\n"
                  "check(string.rep('\\xaa', 80), 'Test Using Larger Than Block-Size Key - Hash "
                  "Key First', 'aa4ae5e15272d00e95705637ce8a3b55ed402112')\n");
}

static void test_hmac_encodings(void **state) {
    lua_ok(state, "local k, d = 'Jefe', 'what do ya want for nothing?'\n"
                  "local hex = '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'\n"
                  "assert(weir.hmac('sha256', k, d, 'hex') == hex)\n"
                  "assert(weir.hmac('sha256', k, d, 'base64') == "
                  "'W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=')\n"
                  "local raw = weir.hmac('sha256', k, d, 'raw')\n"
                  "assert(#raw == 32 and raw:byte(1) == 0x5b and raw:byte(32) == 0x43)\n"
                  "assert(#weir.hmac('sha1', k, d, 'raw') == 20)\n"
                  "assert(#weir.hmac('sha384', k, d, 'raw') == 48)\n"
                  "assert(#weir.hmac('sha512', k, d, 'raw') == 64)\n");
}

static void test_hmac_accepts_empty_key_and_binary_data(void **state) {
    lua_ok(state, "assert(weir.hmac('sha256', '', '') == "
                  "'b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad')\n"
                  "assert(weir.hmac('sha256', 'k\\0a', 'x') ~= weir.hmac('sha256', 'k', 'x'))\n"
                  "assert(weir.hmac('sha256', 'k', 'x\\0y') ~= weir.hmac('sha256', 'k', 'x'))\n");
}

static void test_hmac_refuses_unknown_algorithm(void **state) {
    lua_fails(state, "weir.hmac('md5', 'k', 'd')", "bad argument #1 to 'hmac' (algorithm must be");
    lua_fails(state, "weir.hmac('SHA256', 'k', 'd')", "bad argument #1 to 'hmac'");
    lua_fails(state, "weir.hmac('sha256', 'k', 'd', 'HEX')",
              "bad argument #4 to 'hmac' (encoding must be \"hex\", \"base64\" or \"raw\")");
}

static void test_uuid_is_a_lowercase_v4(void **state) {
    lua_ok(state,
           "for _ = 1, 100 do\n"
           "  local id = weir.uuid()\n"
           "  assert(#id == 36, id)\n"
           "  assert(id:match('^[0-9a-f]+%-[0-9a-f]+%-4[0-9a-f]+%-[89ab][0-9a-f]+%-[0-9a-f]+$'"
           "), id)\n"
           "  assert(id:match('^' .. ('%x'):rep(8) .. '%-' .. ('%x'):rep(4) .. '%-'"
           " .. ('%x'):rep(4) .. '%-' .. ('%x'):rep(4) .. '%-' .. ('%x'):rep(12) .. '$'), id)\n"
           "end\n");
}

static void test_uuid_is_unique_over_1000_calls(void **state) {
    lua_ok(state, "local seen = {}\n"
                  "for _ = 1, 1000 do\n"
                  "  local id = weir.uuid()\n"
                  "  assert(not seen[id], 'repeated ' .. id)\n"
                  "  seen[id] = true\n"
                  "end\n");
}

static void test_wrong_argument_types_name_the_argument(void **state) {
    lua_fails(state, "weir.base64.encode({})", "bad argument #1 to 'encode' (string expected");
    lua_fails(state, "weir.base64.decode()", "bad argument #1 to 'decode' (string expected");
    lua_fails(state, "weir.base64.encode_url(nil)",
              "bad argument #1 to 'encode_url' (string expected");
    lua_fails(state, "weir.base64.decode_url(true)",
              "bad argument #1 to 'decode_url' (string expected");
    lua_fails(state, "weir.sha256()", "bad argument #1 to 'sha256' (string expected");
    lua_fails(state, "weir.sha256('x', 'hexadecimal')", "bad argument #2 to 'sha256' (encoding");
    lua_fails(state, "weir.sha256('x', {})", "bad argument #2 to 'sha256' (string expected");
    lua_fails(state, "weir.hmac('sha256', nil, 'd')", "bad argument #2 to 'hmac' (string expected");
    lua_fails(state, "weir.hmac('sha256', 'k')", "bad argument #3 to 'hmac' (string expected");
    lua_fails(state, "weir.hmac(nil, 'k', 'd')", "bad argument #1 to 'hmac' (string expected");
    /* numbers are strings to Lua's string functions, as in OpenResty */
    lua_ok(state, "assert(weir.base64.encode(12) == 'MTI=')\n");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_base64_matches_rfc4648_vectors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base64_is_binary_safe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base64_url_uses_its_alphabet_without_padding, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_base64_decode_url_accepts_padding_or_none, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_base64_decode_refuses_invalid_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sha256_matches_nist_vectors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sha256_encodings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sha256_is_binary_safe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hmac_matches_rfc4231_vectors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hmac_sha1_matches_rfc2202_vectors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hmac_encodings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hmac_accepts_empty_key_and_binary_data, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hmac_refuses_unknown_algorithm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uuid_is_a_lowercase_v4, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uuid_is_unique_over_1000_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_argument_types_name_the_argument, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
