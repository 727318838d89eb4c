/* uuid: random (v4) and name-based (v5, SHA-1) UUIDs as 36-char strings.
 *
 * v5 ids make entities without an `id` deterministic: every node loading the
 * same declarative file derives the same ids. Thread-safe. */
#ifndef WEIR_UUID_H
#define WEIR_UUID_H

#include <stdbool.h>
#include <stddef.h>

/* out must hold 37 bytes. */
void uuid_v4(char out[37]);
/* UUIDv5 in Weir's namespace of "<entity_type>:<name>". */
void uuid_v5(const char *entity_type, const char *name, char out[37]);
bool uuid_valid(const char *s);

#endif
