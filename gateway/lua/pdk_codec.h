/* pdk_codec: the encoding and hashing helpers of the PDK (weir.base64, weir.sha256, weir.hmac,
 * weir.uuid), the pieces plugins need for auth headers, signatures and request ids.
 *
 * pdk_codec_register() sets on the table at stack index `weir_index` (normally `weir`):
 *   base64.encode(s)      -> standard alphabet, padded (RFC 4648 §4)
 *   base64.decode(s)      -> string | nil, "invalid base64"; padding required
 *   base64.encode_url(s)  -> URL alphabet (RFC 4648 §5), no padding
 *   base64.decode_url(s)  -> string | nil, "invalid base64"; padding optional
 *   sha256(data, encoding?)               -> digest
 *   hmac(algorithm, key, data, encoding?) -> digest; algorithm "sha1", "sha256", "sha384" or
 *                                            "sha512"
 *   uuid()                -> random lowercase UUIDv4, e.g. "1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b"
 * encoding is "hex" (the default, lowercase), "base64" (standard, padded) or "raw" (bytes).
 * Decoding is strict, so every string has exactly one accepted encoding (which matters when
 * signatures are compared): no whitespace, '=' only as final padding, and the unused bits of
 * the last character must be zero. Strings are binary-safe throughout. Wrong argument types
 * and unknown algorithms or encodings raise Lua errors naming the argument.
 *
 * The functions keep no state and may be registered into any number of lua_States. */
#ifndef WEIR_PDK_CODEC_H
#define WEIR_PDK_CODEC_H

#include <lua.h>

void pdk_codec_register(lua_State *L, int weir_index);

#endif
