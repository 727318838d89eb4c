/* weir.jwt from Lua, run in a real LuaJIT state. Every token and key comes from tools independent
 * of Weir (PyJWT and the openssl CLI): tests/unit/fixtures/jwt/generate.sh made them, and its
 * README says which file is what. Hand-written segments below say what they decode to. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>
#include <openssl/err.h>
#include <string.h>

#include "lua/pdk_json.h"
#include "lua/pdk_jwt.h"

#define FIXTURES WEIR_SRCDIR "/tests/unit/fixtures/jwt/"

/* Globals every test can use: jwt, json, fixture(name), SECRET, refused(err, ...), and
 * segments(token) -> header, payload, signature. */
static const char prelude[] =
    "FIXTURES = ...\n"
    "function fixture(name)\n"
    "  local f = assert(io.open(FIXTURES .. name, 'rb'))\n"
    "  local s = f:read('*a'); f:close()\n"
    "  if name:match('%.jwt$') then s = s:gsub('%s+$', '') end\n"
    "  return s\n"
    "end\n"
    "SECRET = 'weir-test-secret-0123456789abcdef-0123456789abcdef-0123456789ab'\n"
    "function refused(expected, value, err)\n"
    "  assert(value == nil, 'expected ' .. expected .. ', got a value')\n"
    "  assert(err == expected, 'expected ' .. expected .. ', got ' .. tostring(err))\n"
    "end\n"
    "function segments(token) return token:match('^([^.]*)%.([^.]*)%.([^.]*)$') end\n";

static int setup(void **state) {
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    pdk_jwt_push(L);
    lua_setglobal(L, "jwt");
    pdk_json_push_module(L);
    lua_setglobal(L, "json");
    if (luaL_loadstring(L, prelude) != 0) return -1;
    lua_pushstring(L, FIXTURES);
    if (lua_pcall(L, 1, 0, 0) != 0) return -1;
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

static void test_verify_accepts_hmac_tokens(void **state) {
    lua_ok(state,
           "for _, alg in ipairs{'HS256', 'HS384', 'HS512'} do\n"
           "  local claims, header = jwt.verify(fixture(alg:lower() .. '.jwt'), SECRET, alg)\n"
           "  assert(claims, alg .. ' refused: ' .. tostring(header))\n"
           "  assert(claims.sub == 'alice' and header.alg == alg)\n"
           "end\n");
}

static void test_verify_accepts_rsa_tokens(void **state) {
    lua_ok(state, "local key = fixture('rsa_public.pem')\n"
                  "for _, alg in ipairs{'RS256', 'RS384', 'RS512'} do\n"
                  "  local claims, header = jwt.verify(fixture(alg:lower() .. '.jwt'), key, alg)\n"
                  "  assert(claims, alg .. ' refused: ' .. tostring(header))\n"
                  "  assert(claims.sub == 'alice' and header.alg == alg)\n"
                  "end\n");
}

static void test_verify_accepts_ecdsa_tokens(void **state) {
    lua_ok(state, "for _, alg in ipairs{'ES256', 'ES384', 'ES512'} do\n"
                  "  local key = fixture('ec' .. alg:sub(3) .. '_public.pem')\n"
                  "  local claims, header = jwt.verify(fixture(alg:lower() .. '.jwt'), key, alg)\n"
                  "  assert(claims, alg .. ' refused: ' .. tostring(header))\n"
                  "  assert(claims.sub == 'alice' and header.alg == alg)\n"
                  "end\n");
}

static void test_verify_accepts_a_certificate_as_key(void **state) {
    lua_ok(state, "assert(jwt.verify(fixture('rs256.jwt'), fixture('rsa_cert.pem'), 'RS256'))\n"
                  "assert(jwt.verify(fixture('es256.jwt'), fixture('ec256_cert.pem'), 'ES256'))\n");
}

static void test_claims_become_lua_values(void **state) {
    lua_ok(state, "local c = jwt.verify(fixture('hs256.jwt'), SECRET, 'HS256')\n"
                  "assert(c.iss == 'weir-tests' and c.n == 42 and c.admin == false)\n"
                  "assert(#c.roles == 2 and c.roles[1] == 'a' and c.roles[2] == 'b')\n"
                  "assert(c.nested.k == 'v')\n"
                  "assert(c.nothing == json.null)\n");
}

static void test_verify_does_not_check_claims(void **state) {
    /* exp is 1 (1970): checking it is the plugin's job */
    lua_ok(state, "local c = jwt.verify(fixture('hs256_expired.jwt'), SECRET, 'HS256')\n"
                  "assert(c and c.exp == 1)\n");
}

static void test_wrong_secret_is_a_bad_signature(void **state) {
    lua_ok(state, "refused('bad signature', jwt.verify(fixture('hs256.jwt'), SECRET .. 'x', "
                  "'HS256'))\n"
                  "refused('bad signature', jwt.verify(fixture('hs512.jwt'), 'other', 'HS512'))\n");
}

static void test_wrong_public_key_is_a_bad_signature(void **state) {
    lua_ok(state, "refused('bad signature', jwt.verify(fixture('rs256.jwt'), "
                  "fixture('rsa_other_public.pem'), 'RS256'))\n"
                  "refused('bad signature', jwt.verify(fixture('es256.jwt'), "
                  "fixture('ec256_other_public.pem'), 'ES256'))\n");
    /* libjwt's failed checks leave nothing on OpenSSL's per-thread error queue either. */
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_tampered_payload_is_a_bad_signature(void **state) {
    /* eyJzdWIiOiJtYWxsb3J5In0 is base64url('{"sub":"mallory"}') */
    lua_ok(state, "for _, case in ipairs{{'hs256.jwt', SECRET, 'HS256'},\n"
                  "                      {'rs256.jwt', fixture('rsa_public.pem'), 'RS256'},\n"
                  "                      {'es256.jwt', fixture('ec256_public.pem'), 'ES256'}} do\n"
                  "  local h, _, s = segments(fixture(case[1]))\n"
                  "  local forged = h .. '.eyJzdWIiOiJtYWxsb3J5In0.' .. s\n"
                  "  refused('bad signature', jwt.verify(forged, case[2], case[3]))\n"
                  "end\n");
}

static void test_tampered_signature_is_a_bad_signature(void **state) {
    lua_ok(state, "local h, p, s = segments(fixture('hs256.jwt'))\n"
                  "local flipped = (s:sub(1, 1) == 'A' and 'B' or 'A') .. s:sub(2)\n"
                  "refused('bad signature', jwt.verify(h .. '.' .. p .. '.' .. flipped, SECRET, "
                  "'HS256'))\n"
                  "refused('bad signature', jwt.verify(h .. '.' .. p .. '.', SECRET, 'HS256'))\n");
}

static void test_token_alg_must_equal_the_credential_alg(void **state) {
    lua_ok(state, "refused('algorithm mismatch', jwt.verify(fixture('hs256.jwt'), SECRET, "
                  "'HS512'))\n"
                  "refused('algorithm mismatch', jwt.verify(fixture('rs512.jwt'), "
                  "fixture('rsa_public.pem'), 'RS256'))\n"
                  "refused('algorithm mismatch', jwt.verify(fixture('es256.jwt'), "
                  "fixture('rsa_public.pem'), 'RS256'))\n");
}

static void test_hs256_token_keyed_with_the_rsa_public_key_is_refused(void **state) {
    /* The algorithm-confusion attack: the token's HMAC secret is the credential's public PEM. */
    lua_ok(state,
           "refused('algorithm mismatch', jwt.verify(fixture('hs256_rsa_public_as_secret.jwt'),"
           " fixture('rsa_public.pem'), 'RS256'))\n");
}

static void test_alg_none_is_refused(void **state) {
    lua_ok(state, "local token = fixture('none.jwt')\n"
                  "refused('algorithm mismatch', jwt.verify(token, SECRET, 'HS256'))\n"
                  "refused('unsupported algorithm', jwt.verify(token, SECRET, 'none'))\n"
                  "refused('unsupported algorithm', jwt.verify(token, '', 'none'))\n");
}

static void test_unknown_algorithm_is_unsupported(void **state) {
    lua_ok(state, "for _, alg in ipairs{'PS256', 'hs256', 'HS256 ', 'HS256\\0', ''} do\n"
                  "  refused('unsupported algorithm', jwt.verify(fixture('hs256.jwt'), SECRET, "
                  "alg))\n"
                  "end\n");
}

static void test_typ_other_than_jwt_is_refused(void **state) {
    lua_ok(state, "refused('unsupported token type', jwt.verify(fixture('hs256_typ_at_jwt.jwt'), "
                  "SECRET, 'HS256'))\n");
}

static void test_critical_header_extensions_are_refused(void **state) {
    lua_ok(state, "refused('unsupported critical header', jwt.verify(fixture('hs256_crit.jwt'), "
                  "SECRET, 'HS256'))\n");
}

static void test_token_needs_exactly_three_segments(void **state) {
    lua_ok(state, "local token = fixture('hs256.jwt')\n"
                  "local h, p, s = segments(token)\n"
                  "for _, bad in ipairs{h .. '.' .. p, token .. '.', token .. '.' .. s, '', "
                  "h} do\n"
                  "  refused('malformed token', jwt.decode(bad))\n"
                  "  refused('malformed token', jwt.verify(bad, SECRET, 'HS256'))\n"
                  "end\n");
}

static void test_bad_base64_is_reported_per_segment(void **state) {
    lua_ok(state, "local h, p, s = segments(fixture('hs256.jwt'))\n"
                  "local function join(a, b, c) return a .. '.' .. b .. '.' .. c end\n"
                  "refused('invalid base64 in header', jwt.decode(join('!' .. h, p, s)))\n"
                  "refused('invalid base64 in payload', jwt.decode(join(h, p .. '+', s)))\n"
                  "refused('invalid base64 in signature', jwt.decode(join(h, p, s .. '*')))\n"
                  "refused('invalid base64 in signature', jwt.verify(join(h, p, s:sub(1, 42) .. "
                  "'\\0'), SECRET, 'HS256'))\n"
                  /* a length no encoding has, and stray bits after the last byte ('ex' and 'ew'
                   * would both be '{') */
                  "refused('invalid base64 in signature', jwt.decode(join(h, p, 'AAAAA')))\n"
                  "refused('invalid base64 in header', jwt.decode(join('ex', p, s)))\n");
}

static void test_base64_padding_is_tolerated(void **state) {
    /* HS256's 32-byte signature takes one '=', ES256's 64 bytes two. eyJhIjoxfQ== is
     * base64url('{"a":1}') with its padding. */
    lua_ok(state, "assert(jwt.verify(fixture('hs256.jwt') .. '=', SECRET, 'HS256'))\n"
                  "assert(jwt.verify(fixture('es256.jwt') .. '==', fixture('ec256_public.pem'), "
                  "'ES256'))\n"
                  "refused('invalid base64 in signature', jwt.decode(fixture('hs256.jwt') .. "
                  "'==='))\n"
                  "local t = assert(jwt.decode('eyJhbGciOiJIUzI1NiJ9.eyJhIjoxfQ==.'))\n"
                  "assert(t.claims.a == 1)\n");
}

static void test_header_and_payload_must_be_json_objects(void **state) {
    /* eyJhbGciOiJIUzI1NiJ9 = {"alg":"HS256"}, WzFd = [1], NDI = 42, ew = {, and the last header
     * is {"alg":"HS256","alg":"none"}: a duplicate key other parsers could read either way */
    lua_ok(state, "local h = 'eyJhbGciOiJIUzI1NiJ9'\n"
                  "refused('header is not a JSON object', jwt.decode('WzFd.' .. h .. '.'))\n"
                  "refused('header is not a JSON object', jwt.decode('ew.' .. h .. '.'))\n"
                  "refused('payload is not a JSON object', jwt.decode(h .. '.NDI.'))\n"
                  "refused('payload is not a JSON object', jwt.decode(h .. '.WzFd.'))\n"
                  "refused('payload is not a JSON object', jwt.decode(h .. '..'))\n"
                  "refused('header is not a JSON object', jwt.decode("
                  "'eyJhbGciOiJIUzI1NiIsImFsZyI6Im5vbmUifQ.' .. h .. '.'))\n");
}

static void test_decode_returns_header_claims_signature_and_signing_input(void **state) {
    lua_ok(state, "local token = fixture('es256.jwt')\n"
                  "local t = assert(jwt.decode(token))\n"
                  "assert(t.header.alg == 'ES256' and t.header.typ == 'JWT')\n"
                  "assert(t.claims.sub == 'alice' and t.claims.nested.k == 'v')\n"
                  "local h, p = segments(token)\n"
                  "assert(t.signing_input == h .. '.' .. p)\n"
                  "assert(#t.signature == 64)  -- ES256: r and s, 32 bytes each\n");
}

static void test_decode_does_not_verify(void **state) {
    lua_ok(state, "local t = assert(jwt.decode(fixture('none.jwt')))\n"
                  "assert(t.header.alg == 'none' and t.signature == '' and t.claims.sub == "
                  "'alice')\n");
}

static void test_binary_secret_with_nul_bytes(void **state) {
    /* Every byte counts, those after a NUL too. (Not trailing NULs: HMAC pads short keys with
     * zeros, so the secret's final NUL cannot be told apart from its absence.) */
    lua_ok(state, "local token = fixture('hs256_binary_secret.jwt')\n"
                  "assert(jwt.verify(token, '\\0\\1bin\\0secret\\255\\0', 'HS256'))\n"
                  "refused('bad signature', jwt.verify(token, '\\0\\1bin\\1secret\\255\\0', "
                  "'HS256'))\n"
                  "refused('bad signature', jwt.verify(token, '\\0\\1bin', 'HS256'))\n");
}

static void test_empty_secret_is_an_invalid_key(void **state) {
    /* libjwt 1.10 given no key skips verification, so this must not reach it */
    lua_ok(state, "refused('invalid key', jwt.verify(fixture('hs256.jwt'), '', 'HS256'))\n");
}

static void test_unparsable_pem_is_an_invalid_key(void **state) {
    lua_ok(state, "local token = fixture('rs256.jwt')\n"
                  "for _, key in ipairs{'', 'not a pem', SECRET,\n"
                  "    '-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\\n',\n"
                  "    fixture('rsa_public.pem'):sub(1, 200),\n"
                  "    '-----BEGIN PUBLIC KEY-----\\nProc-Type: 4,ENCRYPTED\\n'\n"
                  "      .. 'DEK-Info: AES-128-CBC,00000000000000000000000000000000\\n\\n'\n"
                  "      .. 'AAAA\\n-----END PUBLIC KEY-----\\n'} do\n"
                  "  refused('invalid key', jwt.verify(token, key, 'RS256'))\n"
                  "end\n");
    /* The failed reads leave nothing on OpenSSL's per-thread error queue for TLS to trip on. */
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_key_of_another_type_or_curve_is_an_invalid_key(void **state) {
    lua_ok(state, "refused('invalid key', jwt.verify(fixture('rs256.jwt'), "
                  "fixture('ec256_public.pem'), 'RS256'))\n"
                  "refused('invalid key', jwt.verify(fixture('es256.jwt'), "
                  "fixture('rsa_public.pem'), 'ES256'))\n"
                  "refused('invalid key', jwt.verify(fixture('es256.jwt'), "
                  "fixture('ec384_public.pem'), 'ES256'))\n"
                  "refused('invalid key', jwt.verify(fixture('es512.jwt'), "
                  "fixture('ec256_public.pem'), 'ES512'))\n");
}

static void test_arguments_of_the_wrong_type_raise_errors(void **state) {
    lua_fails(state, "jwt.decode(nil)", "bad argument #1 to 'decode'");
    lua_fails(state, "jwt.verify(fixture('hs256.jwt'), nil, 'HS256')",
              "bad argument #2 to 'verify'");
    lua_fails(state, "jwt.verify(fixture('hs256.jwt'), SECRET)", "bad argument #3 to 'verify'");
}

int main(void) {
#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        TEST(test_verify_accepts_hmac_tokens),
        TEST(test_verify_accepts_rsa_tokens),
        TEST(test_verify_accepts_ecdsa_tokens),
        TEST(test_verify_accepts_a_certificate_as_key),
        TEST(test_claims_become_lua_values),
        TEST(test_verify_does_not_check_claims),
        TEST(test_wrong_secret_is_a_bad_signature),
        TEST(test_wrong_public_key_is_a_bad_signature),
        TEST(test_tampered_payload_is_a_bad_signature),
        TEST(test_tampered_signature_is_a_bad_signature),
        TEST(test_token_alg_must_equal_the_credential_alg),
        TEST(test_hs256_token_keyed_with_the_rsa_public_key_is_refused),
        TEST(test_alg_none_is_refused),
        TEST(test_unknown_algorithm_is_unsupported),
        TEST(test_typ_other_than_jwt_is_refused),
        TEST(test_critical_header_extensions_are_refused),
        TEST(test_token_needs_exactly_three_segments),
        TEST(test_bad_base64_is_reported_per_segment),
        TEST(test_base64_padding_is_tolerated),
        TEST(test_header_and_payload_must_be_json_objects),
        TEST(test_decode_returns_header_claims_signature_and_signing_input),
        TEST(test_decode_does_not_verify),
        TEST(test_binary_secret_with_nul_bytes),
        TEST(test_empty_secret_is_an_invalid_key),
        TEST(test_unparsable_pem_is_an_invalid_key),
        TEST(test_key_of_another_type_or_curve_is_an_invalid_key),
        TEST(test_arguments_of_the_wrong_type_raise_errors),
    };
#undef TEST
    return cmocka_run_group_tests(tests, NULL, NULL);
}
