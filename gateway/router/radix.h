/* radix: a compressed radix tree over bytes, mapping byte-string keys to values.
 *
 * The router keeps one tree per host (and one for host-less routes) and asks
 * it for every stored key that is a prefix of a request path, longest first.
 * A lookup follows one edge per node, so its cost depends on the length of the
 * looked-up string, never on how many keys the tree holds.
 *
 * Ownership: the tree copies keys (edge labels live inside their nodes, so a
 * lookup reads one node per edge). Values are the caller's: the tree never
 * frees them.
 *
 * Life cycle: radix_insert() the keys, then radix_freeze() (which packs the
 * nodes for faster lookups and forbids further inserts), then look up.
 *
 * Cost: building takes O(log n) allocations for n keys, not one per node:
 * nodes come from chunks that radix_freeze() replaces by one block, so a
 * frozen tree is two allocations and radix_free() is O(1).
 *
 * Threads: building (radix_insert, radix_freeze) needs one owner; once frozen,
 * the lookup functions may be called from any number of threads at once. */
#ifndef WEIR_RADIX_H
#define WEIR_RADIX_H

#include <stddef.h>

struct radix_tree;
struct radix_node;

/* Returns an empty tree; aborts when out of memory. */
struct radix_tree *radix_create(void);
/* Frees the tree (frozen or not); values are left alone. */
void radix_free(struct radix_tree *t);

/* Returns the value slot of `key` (creating its node; a new slot holds NULL).
 * The slot stays valid until the next radix_insert() or radix_freeze().
 * Aborts after radix_freeze(). */
void **radix_insert(struct radix_tree *t, const char *key, size_t len);
/* Copies all nodes into one block laid out for lookups (node, its children's
 * first bytes and pointers side by side). Every non-NULL value v becomes
 * map(v, ctx) when map is not NULL, so that a caller may store placeholders
 * while inserting and give the final values here, without another pass over
 * the tree. */
void radix_freeze(struct radix_tree *t, void *(*map)(void *value, void *ctx), void *ctx);

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
