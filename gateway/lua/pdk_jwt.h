/* pdk_jwt: weir.jwt, JSON Web Tokens (RFC 7519, JWS compact form) for plugins such as jwt auth.
 *
 *   decode(token) -> {header =, claims =, signature =, signing_input =} | nil, err
 *       Splits and parses without verifying anything: for looking at a token (say, its "kid" or
 *       "iss" to find the credential) before trusting it. signature is the raw bytes,
 *       signing_input the "<header>.<payload>" text the signature covers.
 *   verify(token, key, alg) -> claims, header | nil, err
 *       alg is the algorithm the credential is for, never one read from the token: HS256, HS384,
 *       HS512 (key: the secret, any bytes, not empty), RS256, RS384, RS512 (key: PEM RSA public
 *       key or certificate), ES256, ES384, ES512 (key: PEM EC public key or certificate on
 *       P-256, P-384, P-521 respectively). The token's header must name exactly that alg, so a
 *       token cannot pick a weaker check than its credential (HS256 "signed" with an RSA public
 *       key used as the HMAC secret); "none" is never accepted.
 *
 * verify checks the signature and nothing else: exp, nbf, iat, iss, aud and the like are the
 * caller's to check in the claims it gets back. It does refuse what it cannot honour: a "crit"
 * header (no JWS extension is understood) and a "typ" other than "JWT" (libjwt refuses those).
 * A certificate is only a container for its public key: its validity, issuer and dates are not
 * checked.
 *
 * Tokens are strict: exactly three base64url segments (padding tolerated, "+", "/" and stray
 * bits are not); header and payload are JSON objects without duplicate keys, so the alg checked
 * here is the alg every other parser reads. JSON becomes Lua values through pdk_json_push()
 * (null is weir.json.null). Errors are fixed short strings that never quote the token:
 *   "malformed token", "invalid base64 in header" / "payload" / "signature",
 *   "header is not a JSON object", "payload is not a JSON object", "unsupported algorithm",
 *   "algorithm mismatch", "unsupported token type", "unsupported critical header",
 *   "invalid key", "bad signature", "out of memory".
 * Arguments of the wrong Lua type raise errors. Keys are parsed on every call (nothing is cached).
 *
 * The functions keep no state between calls: any worker's lua_State may use them, each from the
 * thread that owns it. */
#ifndef WEIR_PDK_JWT_H
#define WEIR_PDK_JWT_H

#include <lua.h>

/* Pushes the weir.jwt table. */
void pdk_jwt_push(lua_State *L);

#endif
