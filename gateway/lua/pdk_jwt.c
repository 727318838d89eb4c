#include "lua/pdk_jwt.h"

#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <lauxlib.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lua/pdk_json.h"

#define TOKEN_META "weir.jwt.token"

enum key_kind { KEY_SECRET, KEY_RSA, KEY_EC };

struct jws_alg {
    const char *name;
    enum key_kind kind;
    const char *curve; /* KEY_EC: the one curve the algorithm is defined on (RFC 7518 3.4) */
};

/* "none" is deliberately absent: no credential can ask for an unsigned token. */
static const struct jws_alg algs[] = {
    {"HS256", KEY_SECRET, NULL},
    {"HS384", KEY_SECRET, NULL},
    {"HS512", KEY_SECRET, NULL},
    {"RS256", KEY_RSA, NULL},
    {"RS384", KEY_RSA, NULL},
    {"RS512", KEY_RSA, NULL},
    {"ES256", KEY_EC, SN_X9_62_prime256v1},
    {"ES384", KEY_EC, SN_secp384r1},
    {"ES512", KEY_EC, SN_secp521r1},
};

static const struct jws_alg *find_alg(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++)
        if (strlen(algs[i].name) == len && memcmp(algs[i].name, name, len) == 0) return &algs[i];
    return NULL;
}

/* A parsed token lives in a userdata so that a Lua error (out of memory while pushing the
 * result) cannot leak the JSON values: the collector releases them. */
struct token {
    json_t *header, *claims;
    size_t signing_input_len; /* "<header>.<payload>": up to the second dot */
    size_t signature_pad;     /* trailing '=' of the signature segment */
    size_t signature_len;
    unsigned char bytes[]; /* scratch for each segment in turn; ends holding the signature */
};

static int token_gc(lua_State *L) {
    struct token *t = luaL_checkudata(L, 1, TOKEN_META);
    json_decref(t->header);
    json_decref(t->claims);
    t->header = t->claims = NULL;
    return 0;
}

static int base64url_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Decodes one base64url segment into out, which has room for len / 4 * 3 + 2 bytes. Returns the
 * decoded length, or -1 unless the text is the one encoding of its bytes: padding may be there
 * or not, but it must be complete, and the bits past the last byte must be zero (otherwise
 * several texts decode to the same signature). */
static ptrdiff_t base64url_decode(const char *in, size_t len, unsigned char *out, size_t *pad) {
    *pad = 0;
    while (*pad < 2 && len > 0 && in[len - 1] == '=')
        len--, (*pad)++;
    if ((*pad && (len + *pad) % 4 != 0) || len % 4 == 1) return -1;
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int v = base64url_value((unsigned char)in[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) return -1;
    return (ptrdiff_t)n;
}

/* Duplicate keys are refused so that no other parser (libjwt's, the plugin's) can read a
 * different "alg" or "sub" than this one did. NUL in strings is refused as libjwt does. */
static json_t *parse_object(const unsigned char *text, size_t len) {
    json_error_t error;
    json_t *v = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &error);
    if (v && !json_is_object(v)) {
        json_decref(v);
        return NULL;
    }
    return v;
}

/* Splits and parses token into a struct token left on the stack top. Returns NULL with a reason
 * in *err when the token is malformed (the userdata is left for the collector). */
static struct token *parse_token(lua_State *L, const char *token, size_t len, const char **err) {
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    const char *end = token + len;
    if (!dot2 || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1))) {
        *err = "malformed token";
        return NULL;
    }
    struct {
        const char *text;
        size_t len;
    } seg[3] = {{token, (size_t)(dot1 - token)},
                {dot1 + 1, (size_t)(dot2 - dot1 - 1)},
                {dot2 + 1, (size_t)(end - dot2 - 1)}};
    size_t longest = 0;
    for (int i = 0; i < 3; i++)
        if (seg[i].len > longest) longest = seg[i].len;

    struct token *t = lua_newuserdata(L, sizeof *t + longest / 4 * 3 + 2);
    memset(t, 0, sizeof *t);
    luaL_getmetatable(L, TOKEN_META);
    lua_setmetatable(L, -2);
    t->signing_input_len = (size_t)(dot2 - token);

    size_t pad;
    ptrdiff_t n = base64url_decode(seg[0].text, seg[0].len, t->bytes, &pad);
    if (n < 0) {
        *err = "invalid base64 in header";
        return NULL;
    }
    if (!(t->header = parse_object(t->bytes, (size_t)n))) {
        *err = "header is not a JSON object";
        return NULL;
    }
    n = base64url_decode(seg[1].text, seg[1].len, t->bytes, &pad);
    if (n < 0) {
        *err = "invalid base64 in payload";
        return NULL;
    }
    if (!(t->claims = parse_object(t->bytes, (size_t)n))) {
        *err = "payload is not a JSON object";
        return NULL;
    }
    n = base64url_decode(seg[2].text, seg[2].len, t->bytes, &t->signature_pad);
    if (n < 0) {
        *err = "invalid base64 in signature";
        return NULL;
    }
    t->signature_len = (size_t)n;
    return t;
}

static int fail(lua_State *L, const char *err) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

/* A public key or certificate PEM must never ask for a pass phrase: OpenSSL's default callback
 * would read one from the terminal, blocking the worker. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata) {
    (void)buf, (void)size, (void)rwflag, (void)userdata;
    return -1;
}

/* The key in a PEM "PUBLIC KEY" or, failing that, "CERTIFICATE" block, or NULL. */
static EVP_PKEY *read_public_key(const char *pem, size_t len) {
    if (len > INT_MAX) return NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *key = bio ? PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (!key && (bio = BIO_new_mem_buf(pem, (int)len))) {
        X509 *cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
        BIO_free(bio);
        if (cert) key = X509_get_pubkey(cert);
        X509_free(cert);
    }
    /* Failed reads leave errors queued on this thread, where the next TLS call would find them. */
    ERR_clear_error();
    return key;
}

/* libjwt 1.10 refuses a key of the wrong type or curve too, but with the EINVAL it returns for a
 * bad signature: checking here lets a misconfigured credential say "invalid key". */
static bool key_fits(EVP_PKEY *key, const struct jws_alg *alg) {
    if (alg->kind == KEY_RSA) return EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA;
    char group[64];
    return EVP_PKEY_get_base_id(key) == EVP_PKEY_EC &&
           EVP_PKEY_get_group_name(key, group, sizeof group, NULL) &&
           strcmp(group, alg->curve) == 0;
}

/* The credential's key as libjwt 1.10 wants it: a "PUBLIC KEY" PEM (it reads no certificates).
 * Returns a malloc'ed copy with its length in *out_len, or NULL when the key is unusable. */
static char *public_key_pem(const char *pem, size_t len, const struct jws_alg *alg,
                            size_t *out_len) {
    EVP_PKEY *key = read_public_key(pem, len);
    if (!key) return NULL;
    char *copy = NULL;
    BIO *out = key_fits(key, alg) ? BIO_new(BIO_s_mem()) : NULL;
    if (out && PEM_write_bio_PUBKEY(out, key)) {
        char *data;
        long n = BIO_get_mem_data(out, &data);
        if (n > 0 && (copy = malloc((size_t)n + 1))) {
            memcpy(copy, data, (size_t)n);
            copy[n] = '\0';
            *out_len = (size_t)n;
        }
    }
    BIO_free(out);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return copy;
}

/* The signature check proper. Calls nothing that can raise a Lua error, so everything it
 * allocates is released before it returns. Returns NULL when the signature is good. */
static const char *check_signature(const struct token *t, const char *token, size_t token_len,
                                   const char *key, size_t key_len, const struct jws_alg *alg) {
    char *pem = NULL;
    if (alg->kind == KEY_SECRET) {
        /* libjwt 1.10 given an empty key verifies nothing and returns success. */
        if (key_len == 0 || key_len > INT_MAX) return "invalid key";
    } else {
        if (!(pem = public_key_pem(key, key_len, alg, &key_len))) return "invalid key";
        key = pem;
    }
    /* libjwt 1.10 refuses a padded signature segment; the padding is not signed, so drop it. */
    size_t len = token_len - t->signature_pad;
    char *copy = malloc(len + 1);
    if (!copy) {
        free(pem);
        return "out of memory";
    }
    memcpy(copy, token, len);
    copy[len] = '\0';
    jwt_t *jwt = NULL;
    int rc = jwt_decode(&jwt, copy, (const unsigned char *)key, (int)key_len);
    jwt_free(jwt);
    /* libjwt leaves OpenSSL errors queued when it cannot read a key, which read_public_key has
     * ruled out; whatever else a failed check might queue must not reach the next TLS call. */
    ERR_clear_error();
    free(copy);
    free(pem);
    if (rc == ENOMEM) return "out of memory";
    return rc == 0 ? NULL : "bad signature";
}

static bool is_jwt_typ(const json_t *typ) {
    const char *s = json_string_value(typ);
    return s && json_string_length(typ) == 3 && (s[0] | 0x20) == 'j' && (s[1] | 0x20) == 'w' &&
           (s[2] | 0x20) == 't';
}

/* What the token's header must say before its signature is worth checking. */
static const char *check_header(const json_t *header, const struct jws_alg *alg) {
    const json_t *token_alg = json_object_get(header, "alg");
    if (!json_is_string(token_alg) || strcmp(json_string_value(token_alg), alg->name) != 0)
        return "algorithm mismatch";
    /* libjwt refuses any other typ; saying so beats a misleading "bad signature". */
    const json_t *typ = json_object_get(header, "typ");
    if (typ && !is_jwt_typ(typ)) return "unsupported token type";
    /* RFC 7515 4.1.11: a recipient must refuse extensions it does not understand (all of them). */
    if (json_object_get(header, "crit")) return "unsupported critical header";
    return NULL;
}

static int jwt_decode_lua(lua_State *L) {
    size_t len;
    const char *token = luaL_checklstring(L, 1, &len);
    const char *err;
    struct token *t = parse_token(L, token, len, &err);
    if (!t) return fail(L, err);
    lua_createtable(L, 0, 4);
    pdk_json_push(L, t->header);
    lua_setfield(L, -2, "header");
    pdk_json_push(L, t->claims);
    lua_setfield(L, -2, "claims");
    lua_pushlstring(L, (const char *)t->bytes, t->signature_len);
    lua_setfield(L, -2, "signature");
    lua_pushlstring(L, token, t->signing_input_len);
    lua_setfield(L, -2, "signing_input");
    return 1;
}

static int jwt_verify_lua(lua_State *L) {
    size_t len, key_len, alg_len;
    const char *token = luaL_checklstring(L, 1, &len);
    const char *key = luaL_checklstring(L, 2, &key_len);
    const char *alg_name = luaL_checklstring(L, 3, &alg_len);
    const struct jws_alg *alg = find_alg(alg_name, alg_len);
    if (!alg) return fail(L, "unsupported algorithm");
    const char *err;
    struct token *t = parse_token(L, token, len, &err);
    if (!t) return fail(L, err);
    if ((err = check_header(t->header, alg))) return fail(L, err);
    if ((err = check_signature(t, token, len, key, key_len, alg))) return fail(L, err);
    pdk_json_push(L, t->claims);
    pdk_json_push(L, t->header);
    return 2;
}

void pdk_jwt_push(lua_State *L) {
    if (luaL_newmetatable(L, TOKEN_META)) {
        lua_pushcfunction(L, token_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, jwt_decode_lua);
    lua_setfield(L, -2, "decode");
    lua_pushcfunction(L, jwt_verify_lua);
    lua_setfield(L, -2, "verify");
}
