/* sni_map: which certificate a TLS client's server name (SNI) selects.
 *
 * Built once per configuration snapshot from the `snis` entities (name -> certificate index), then
 * read-only: any number of threads may call sni_map_lookup() at once. A lookup tries the exact
 * name, then the wildcard of its parent domain ("*.example.com" matches "api.example.com" but
 * neither "example.com" nor "a.b.example.com", one label as in RFC 6125 6.4.3); names compare
 * case-insensitively. -1 means no entry: the caller serves its default certificate.
 *
 * Pure data, no OpenSSL: unit-tested in tests/unit/test_sni_map.c. */
#ifndef WEIR_SNI_MAP_H
#define WEIR_SNI_MAP_H

#include <stdbool.h>
#include <stddef.h>

struct sni_map;

struct sni_map *sni_map_new(void);
/* Adds `name` (a host name or "*." followed by a domain, as sni.json allows) for certificate
 * `value` (>= 0). False when the name is already there (the first one stays). */
bool sni_map_add(struct sni_map *m, const char *name, int value);
/* Sorts what was added; call once, before the first lookup. */
void sni_map_seal(struct sni_map *m);
/* The certificate for server name `name` (len bytes, any case), or -1. */
int sni_map_lookup(const struct sni_map *m, const char *name, size_t len);
size_t sni_map_size(const struct sni_map *m);
void sni_map_free(struct sni_map *m);

#endif
