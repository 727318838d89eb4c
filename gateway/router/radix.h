/* radix: a compressed radix tree over bytes, mapping byte-string keys to values.
 *
 * The router keeps one tree per host (and one for host-less routes) and asks
 * it for every stored key that is a prefix of a request path, longest first.
 * A lookup follows one edge per node, so its cost depends on the length of the
 * looked-up string, never on how many keys the tree holds.
 *
 * Ownership: the tree copies keys (edge labels live inside their nodes, so a
 * lookup reads one node per edge). Values are the caller's: trees never free
 * them. Trees belong to a pool, which frees them all at once.
 *
 * Life cycle: radix_create() trees in a pool and radix_insert() their keys,
 * then radix_pool_freeze() (which packs every tree's nodes for faster lookups
 * and forbids further inserts), then look up.
 *
 * Cost: a pool of any number of trees and keys takes O(log n) allocations to
 * build, not one per node or per tree: nodes come from chunks that freezing
 * replaces by one block for all trees, and radix_pool_free() is O(log n) too.
 * (The router keeps one tree per host: 10,000 hosts are 10,000 trees.)
 *
 * Threads: building (radix_create, radix_insert, radix_pool_freeze) needs one
 * owner; once frozen, the lookup functions may be called from any number of
 * threads at once. */
#ifndef WEIR_RADIX_H
#define WEIR_RADIX_H

#include <stddef.h>

struct radix_pool;
struct radix_tree;
struct radix_node;

/* Returns an empty pool; aborts when out of memory (as every function here). */
struct radix_pool *radix_pool_create(void);
/* Frees the pool and all its trees (frozen or not); values are left alone. */
void radix_pool_free(struct radix_pool *p);

/* Returns an empty tree of pool p. Aborts after radix_pool_freeze(). */
struct radix_tree *radix_create(struct radix_pool *p);
/* Returns the value slot of `key` (creating its node; a new slot holds NULL).
 * The slot stays valid until the next radix_insert() or radix_pool_freeze().
 * Aborts after radix_pool_freeze(). */
void **radix_insert(struct radix_tree *t, const char *key, size_t len);
/* Copies the nodes of every tree of the pool into one block laid out for
 * lookups (node, its children's first bytes and pointers side by side). Every
 * non-NULL value v becomes map(v, ctx) when map is not NULL, so that a caller
 * may store placeholders while inserting and give the final values here,
 * without another pass over the trees. */
void radix_pool_freeze(struct radix_pool *p, void *(*map)(void *value, void *ctx), void *ctx);

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
