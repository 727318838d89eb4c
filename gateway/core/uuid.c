#include "core/uuid.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Weir's namespace UUID for v5 ids (itself a v5 of the URL namespace and
 * "https://weir.dev/entities", fixed here so ids never change). */
static const unsigned char weir_namespace[16] = {0x6b, 0x2d, 0x8c, 0x4e, 0x1f, 0x5a, 0x5d, 0x33,
                                                 0x9a, 0x41, 0x2e, 0x7c, 0x0b, 0x93, 0xd4, 0x61};

static void format_uuid(const unsigned char b[16], char out[37]) {
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

void uuid_v4(char out[37]) {
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1) abort();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    format_uuid(b, out);
}

void uuid_v5(const char *entity_type, const char *name, char out[37]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) abort();
    EVP_DigestInit_ex(ctx, EVP_sha1(), NULL);
    EVP_DigestUpdate(ctx, weir_namespace, sizeof weir_namespace);
    EVP_DigestUpdate(ctx, entity_type, strlen(entity_type));
    EVP_DigestUpdate(ctx, ":", 1);
    EVP_DigestUpdate(ctx, name, strlen(name));
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    md[6] = (md[6] & 0x0f) | 0x50;
    md[8] = (md[8] & 0x3f) | 0x80;
    format_uuid(md, out);
}

bool uuid_valid(const char *s) {
    if (strlen(s) != 36) return false;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return false;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}
