#include "lua/pdk_codec.h"

#include <lauxlib.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/uuid.h"

/* ---- base64 -------------------------------------------------------------------------------- */

static const char base64_standard[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char base64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Built in a luaL_Buffer rather than malloc'd: a Lua error (out of memory) then leaks nothing. */
static void add_base64(luaL_Buffer *b, const unsigned char *s, size_t len, const char *alphabet,
                       bool pad) {
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t n = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        luaL_addchar(b, alphabet[n >> 18]);
        luaL_addchar(b, alphabet[n >> 12 & 63]);
        luaL_addchar(b, alphabet[n >> 6 & 63]);
        luaL_addchar(b, alphabet[n & 63]);
    }
    size_t rest = len - i;
    if (rest == 0) return;
    uint32_t n = (uint32_t)s[i] << 16 | (rest == 2 ? (uint32_t)s[i + 1] << 8 : 0);
    luaL_addchar(b, alphabet[n >> 18]);
    luaL_addchar(b, alphabet[n >> 12 & 63]);
    if (rest == 2)
        luaL_addchar(b, alphabet[n >> 6 & 63]);
    else if (pad)
        luaL_addchar(b, '=');
    if (pad) luaL_addchar(b, '=');
}

/* The value of c in the alphabet, or -1. */
static int base64_value(unsigned char c, bool url) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == (url ? '-' : '+')) return 62;
    if (c == (url ? '_' : '/')) return 63;
    return -1;
}

/* Pushes the bytes s encodes and returns true, or returns false when s is not the canonical
 * encoding of anything (the caller then pushes its error above whatever the buffer left). */
static bool push_base64_decoded(lua_State *L, const unsigned char *s, size_t len, bool url) {
    size_t n = len;
    if (n > 0 && s[n - 1] == '=') n--;
    if (n > 0 && s[n - 1] == '=') n--;
    bool padded = n != len;
    if ((padded || !url) && len % 4 != 0) return false;
    /* one character carries 6 bits: never a whole byte */
    if (n % 4 == 1) return false;

    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        int c0 = base64_value(s[i], url), c1 = base64_value(s[i + 1], url);
        int c2 = base64_value(s[i + 2], url), c3 = base64_value(s[i + 3], url);
        if ((c0 | c1 | c2 | c3) < 0) return false;
        uint32_t v = (uint32_t)c0 << 18 | (uint32_t)c1 << 12 | (uint32_t)c2 << 6 | (uint32_t)c3;
        luaL_addchar(&b, (char)(v >> 16));
        luaL_addchar(&b, (char)(v >> 8 & 0xff));
        luaL_addchar(&b, (char)(v & 0xff));
    }
    if (n - i >= 2) {
        bool three = n - i == 3;
        int c0 = base64_value(s[i], url), c1 = base64_value(s[i + 1], url);
        int c2 = three ? base64_value(s[i + 2], url) : 0;
        if ((c0 | c1 | c2) < 0) return false;
        uint32_t v = (uint32_t)c0 << 18 | (uint32_t)c1 << 12 | (uint32_t)c2 << 6;
        /* bits past the last whole byte must be zero, or "QR==" would also mean "A" */
        if (v & (three ? 0xff : 0xffff)) return false;
        luaL_addchar(&b, (char)(v >> 16));
        if (three) luaL_addchar(&b, (char)(v >> 8 & 0xff));
    }
    luaL_pushresult(&b);
    return true;
}

static int encode(lua_State *L, const char *alphabet, bool pad) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    add_base64(&b, (const unsigned char *)s, len, alphabet, pad);
    luaL_pushresult(&b);
    return 1;
}

static int decode(lua_State *L, bool url) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    if (push_base64_decoded(L, (const unsigned char *)s, len, url)) return 1;
    lua_pushnil(L);
    lua_pushliteral(L, "invalid base64");
    return 2;
}

static int base64_encode(lua_State *L) {
    return encode(L, base64_standard, true);
}
static int base64_decode(lua_State *L) {
    return decode(L, false);
}
static int base64_encode_url(lua_State *L) {
    return encode(L, base64_url, false);
}
static int base64_decode_url(lua_State *L) {
    return decode(L, true);
}

/* ---- digests ------------------------------------------------------------------------------- */

enum encoding { ENCODING_HEX, ENCODING_BASE64, ENCODING_RAW };

static enum encoding check_encoding(lua_State *L, int idx) {
    const char *name = luaL_optstring(L, idx, "hex");
    if (strcmp(name, "hex") == 0) return ENCODING_HEX;
    if (strcmp(name, "base64") == 0) return ENCODING_BASE64;
    if (strcmp(name, "raw") == 0) return ENCODING_RAW;
    luaL_argerror(L, idx, "encoding must be \"hex\", \"base64\" or \"raw\"");
    return ENCODING_HEX; /* not reached: luaL_argerror raises */
}

static int push_digest(lua_State *L, const unsigned char *md, size_t len, enum encoding encoding) {
    switch (encoding) {
    case ENCODING_HEX: {
        static const char digits[] = "0123456789abcdef";
        char hex[2 * EVP_MAX_MD_SIZE];
        for (size_t i = 0; i < len; i++) {
            hex[2 * i] = digits[md[i] >> 4];
            hex[2 * i + 1] = digits[md[i] & 15];
        }
        lua_pushlstring(L, hex, 2 * len);
        break;
    }
    case ENCODING_BASE64: {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        add_base64(&b, md, len, base64_standard, true);
        luaL_pushresult(&b);
        break;
    }
    case ENCODING_RAW:
        lua_pushlstring(L, (const char *)md, len);
        break;
    }
    return 1;
}

static int codec_sha256(lua_State *L) {
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    enum encoding encoding = check_encoding(L, 2);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len;
    if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1)
        return luaL_error(L, "sha256: OpenSSL failed");
    return push_digest(L, md, md_len, encoding);
}

static const EVP_MD *check_hmac_algorithm(lua_State *L, int idx) {
    const char *name = luaL_checkstring(L, idx);
    if (strcmp(name, "sha1") == 0) return EVP_sha1();
    if (strcmp(name, "sha256") == 0) return EVP_sha256();
    if (strcmp(name, "sha384") == 0) return EVP_sha384();
    if (strcmp(name, "sha512") == 0) return EVP_sha512();
    luaL_argerror(L, idx, "algorithm must be \"sha1\", \"sha256\", \"sha384\" or \"sha512\"");
    return NULL; /* not reached: luaL_argerror raises */
}

static int codec_hmac(lua_State *L) {
    const EVP_MD *algorithm = check_hmac_algorithm(L, 1);
    size_t key_len, data_len;
    const char *key = luaL_checklstring(L, 2, &key_len);
    const unsigned char *data = (const unsigned char *)luaL_checklstring(L, 3, &data_len);
    enum encoding encoding = check_encoding(L, 4);
    if (key_len > INT_MAX) luaL_argerror(L, 2, "key too long");
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len;
    if (!HMAC(algorithm, key, (int)key_len, data, data_len, md, &md_len))
        return luaL_error(L, "hmac: OpenSSL failed");
    return push_digest(L, md, md_len, encoding);
}

/* ---- uuid ---------------------------------------------------------------------------------- */

static int codec_uuid(lua_State *L) {
    char id[37];
    uuid_v4(id);
    lua_pushlstring(L, id, 36);
    return 1;
}

/* ---- registration -------------------------------------------------------------------------- */

static const luaL_Reg base64_functions[] = {
    {"encode", base64_encode},
    {"decode", base64_decode},
    {"encode_url", base64_encode_url},
    {"decode_url", base64_decode_url},
    {NULL, NULL},
};

static const luaL_Reg weir_functions[] = {
    {"sha256", codec_sha256},
    {"hmac", codec_hmac},
    {"uuid", codec_uuid},
    {NULL, NULL},
};

static void set_functions(lua_State *L, int table, const luaL_Reg *functions) {
    for (; functions->name; functions++) {
        lua_pushcfunction(L, functions->func);
        lua_setfield(L, table, functions->name);
    }
}

void pdk_codec_register(lua_State *L, int weir_index) {
    if (weir_index < 0 && weir_index > LUA_REGISTRYINDEX)
        weir_index = lua_gettop(L) + weir_index + 1;
    luaL_checkstack(L, 2, "registering weir codecs");
    lua_createtable(L, 0, 4);
    set_functions(L, lua_gettop(L), base64_functions);
    lua_setfield(L, weir_index, "base64");
    set_functions(L, weir_index, weir_functions);
}
