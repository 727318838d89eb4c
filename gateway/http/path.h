/* path: request-target path normalisation (RFC 3986 section 6.2.2).
 *
 * path_normalize() decodes percent-escapes of unreserved characters
 * (ALPHA DIGIT "-" "." "_" "~"), upper-cases the hex digits of every other
 * escape, and removes "." and ".." segments. It refuses (returns -1) a path
 * that does not start with "/", a malformed escape ("%zz", "%4"), an encoded
 * NUL ("%00"), any byte outside RFC 3986 pchar/"/" (spaces, controls, 8-bit
 * bytes must arrive escaped), and ".." segments that would climb above "/".
 * Routing and the upstream both see the normalised path. Pure function. */
#ifndef WEIR_PATH_H
#define WEIR_PATH_H

#include <stddef.h>

/* `out` must hold at least `len` + 1 bytes (normalising never grows a path)
 * and may be `in` itself (normalising in place); on success writes a
 * NUL-terminated path, stores its length and returns 0; on -1 the contents
 * of `out` are unspecified. Unreserved escapes are decoded before dot-segment
 * removal ("/a/%2e%2e/b" -> "/b"), while "%2F" stays encoded and never splits
 * a segment. A trailing "/" is kept ("/a/." and "/a/b/.." give "/a/");
 * repeated slashes are kept ("/a//b"), and a ".." after them removes the empty
 * segment between them ("/a//../b" -> "/a/b", as RFC 3986 5.2.4 does). */
int path_normalize(const char *in, size_t len, char *out, size_t *out_len);

/* Joins a service path and the rest of a request path with exactly one "/"
 * between them (Kong's path_handling "v0"): ("/v1", "/7") -> "/v1/7",
 * ("/v1/", "/7") -> "/v1/7", ("/v1", "") -> "/v1", (NULL or "", "") -> "/",
 * (NULL, "/x") -> "/x", ("/v1", "x") -> "/v1/x". Writes at most `cap` bytes
 * including the NUL; returns the length, or -1 if it does not fit. Only the
 * seam is merged: ("/v1/", "//x") -> "/v1//x", and ("/v1/", "") -> "/v1/".
 * `out` must not overlap the inputs. */
int path_join(const char *service_path, const char *rest, size_t rest_len, char *out, size_t cap);

#endif
