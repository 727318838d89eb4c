/* radix: a compressed radix tree over bytes, mapping byte-string keys to values.
 *
 * The router keeps one tree per host (and one for host-less routes) and asks
 * it for every stored key that is a prefix of a request path, longest first.
 * A lookup follows one edge per node, so its cost depends on the length of the
 * looked-up string, never on how many keys the tree holds.
 *
 * Ownership: the tree copies keys (edge labels live inside their nodes, so a
 * lookup reads one node per edge). Values are the caller's; radix_free()
 * hands each one to a callback.
 *
 * Life cycle: radix_insert() the keys, optionally radix_freeze() (which packs
 * the nodes for faster lookups and forbids further inserts), then look up.
 *
 * Threads: building (radix_insert, radix_foreach, radix_freeze) needs one
 * owner; once built, the lookup functions may be called from any number of
 * threads at once. */
#ifndef WEIR_RADIX_H
#define WEIR_RADIX_H

#include <stddef.h>

struct radix_tree;
struct radix_node;

/* Returns an empty tree; aborts when out of memory. */
struct radix_tree *radix_create(void);
/* Frees the tree, calling free_value (if not NULL) on every non-NULL value. */
void radix_free(struct radix_tree *t, void (*free_value)(void *value));

/* Returns the value slot of `key` (creating its node; a new slot holds NULL).
 * The slot stays valid until the next radix_insert() or radix_freeze().
 * Aborts after radix_freeze(). */
void **radix_insert(struct radix_tree *t, const char *key, size_t len);
/* Copies all nodes into one block laid out for lookups (node, its children's
 * first bytes and pointers side by side). Values are kept as they are. */
void radix_freeze(struct radix_tree *t);

/* Calls fn on every non-NULL value, in no particular order (used to finish
 * the values once all keys are in). */
void radix_foreach(struct radix_tree *t, void (*fn)(void *value, void *ctx), void *ctx);

/* The node of the longest stored key (with a non-NULL value) that is a prefix
 * of s[0..len), or NULL when there is none. */
const struct radix_node *radix_longest_prefix(const struct radix_tree *t, const char *s,
                                              size_t len);
/* The node of the next shorter stored key that is a prefix of the same
 * string, or NULL: walking radix_longest_prefix() and then radix_shorter()
 * visits every stored prefix of a string, longest first. */
const struct radix_node *radix_shorter(const struct radix_node *n);
void *radix_value(const struct radix_node *n);
/* Length of the node's full key (from the root). */
size_t radix_key_len(const struct radix_node *n);

#endif
