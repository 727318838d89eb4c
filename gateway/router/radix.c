/* radix: compressed radix tree over bytes (see radix.h for the contract).
 *
 * A lookup reads one node per edge, and on a large tree almost every one of
 * those reads is a cache miss; the layout is chosen to keep that to about one
 * per edge. Each node carries its edge label inline and an array of its
 * children's first bytes, so choosing the next edge never touches the other
 * children. radix_pool_freeze() then copies the nodes into one block, each
 * node followed by its first bytes and child pointers. */
#include "router/radix.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct radix_node {
    struct radix_node *parent;
    void *value;
    /* first[i] is the first byte of children[i]'s label (siblings never share
     * one); children are in no particular order. */
    unsigned char *first;
    struct radix_node **children;
    size_t key_len;                    /* bytes from the root to the end of this label */
    uint32_t label_len;                /* 0 only for the root */
    uint16_t n_children, cap_children; /* at most 256: one per byte value */
    char label[];                      /* the edge from the parent */
};

/* Memory carved from chunks and freed all at once: O(log n) calls to malloc
 * for n blocks. A pool has two: `build` for nodes and child arrays (a child
 * array that grows leaves its old copy behind, at most as much again), freed
 * by radix_pool_freeze(), and `trees` for the tree structs, which live as
 * long as the pool. */
struct radix_chunk {
    struct radix_chunk *next;
    size_t size;
    /* bytes follow, 8-byte aligned (the header is 16 bytes) */
};

struct radix_mem {
    struct radix_chunk *chunks;
    char *next, *end; /* the free part of the newest chunk */
};

#define RADIX_FIRST_CHUNK 1024
#define RADIX_MAX_CHUNK (256 * 1024)

struct radix_tree {
    struct radix_node *root; /* the empty key */
    struct radix_pool *pool;
    struct radix_tree *next_in_pool;
    size_t frozen_size; /* bytes freezing will need, kept up to date by inserts */
};

struct radix_pool {
    struct radix_tree *trees; /* every tree, newest first */
    struct radix_mem build, tree_mem;
    char *frozen; /* after radix_pool_freeze(): every tree's nodes, in one block */
};

static void radix_fail(int line, const char *what) {
    fprintf(stderr, "%s:%d: %s\n", __FILE__, line, what);
    abort();
}

static size_t radix_align8(size_t n) {
    return (n + 7) & ~(size_t)7;
}

/* Frozen layout of one node: the node with its label, then its first bytes,
 * then its child pointers, each part 8-byte aligned. */
static size_t radix_frozen_size(const struct radix_node *n) {
    return radix_align8(sizeof *n + n->label_len) + radix_align8(n->n_children) +
           n->n_children * sizeof(struct radix_node *);
}

static void *radix_mem_alloc(struct radix_mem *m, size_t size) {
    size = radix_align8(size);
    if ((size_t)(m->end - m->next) < size) {
        size_t chunk = m->chunks ? m->chunks->size * 2 : RADIX_FIRST_CHUNK;
        if (chunk > RADIX_MAX_CHUNK) chunk = RADIX_MAX_CHUNK;
        if (chunk < size) chunk = size;
        struct radix_chunk *c = malloc(sizeof *c + chunk);
        if (!c) radix_fail(__LINE__, "out of memory");
        c->next = m->chunks;
        c->size = chunk;
        m->chunks = c;
        m->next = (char *)(c + 1);
        m->end = m->next + chunk;
    }
    void *p = m->next;
    m->next += size;
    return p;
}

static void radix_mem_free(struct radix_mem *m) {
    while (m->chunks) {
        struct radix_chunk *c = m->chunks;
        m->chunks = c->next;
        free(c);
    }
    m->next = m->end = NULL;
}

static struct radix_node *radix_node_new(struct radix_tree *t, const char *label, size_t label_len,
                                         size_t key_len) {
    if (label_len > UINT32_MAX) radix_fail(__LINE__, "key too long");
    struct radix_node *n = radix_mem_alloc(&t->pool->build, sizeof *n + label_len);
    *n = (struct radix_node){.label_len = (uint32_t)label_len, .key_len = key_len};
    if (label_len) memcpy(n->label, label, label_len);
    t->frozen_size += radix_frozen_size(n);
    return n;
}

struct radix_pool *radix_pool_create(void) {
    struct radix_pool *p = calloc(1, sizeof *p);
    if (!p) radix_fail(__LINE__, "out of memory");
    return p;
}

struct radix_tree *radix_create(struct radix_pool *p) {
    if (p->frozen) radix_fail(__LINE__, "radix_create() after radix_pool_freeze()");
    struct radix_tree *t = radix_mem_alloc(&p->tree_mem, sizeof *t);
    *t = (struct radix_tree){.pool = p, .next_in_pool = p->trees};
    p->trees = t;
    t->root = radix_node_new(t, NULL, 0, 0);
    return t;
}

/* The child whose label starts with byte c, or NULL. A plain loop: the array
 * is short and already in cache once the node is. */
static struct radix_node *radix_child(const struct radix_node *n, unsigned char c, size_t *index) {
    for (size_t i = 0; i < n->n_children; i++) {
        if (n->first[i] == c) {
            *index = i;
            return n->children[i];
        }
    }
    return NULL;
}

static void radix_add_child(struct radix_tree *t, struct radix_node *parent,
                            struct radix_node *child) {
    t->frozen_size -= radix_frozen_size(parent);
    if (parent->n_children == parent->cap_children) {
        /* One block: cap child pointers, then cap first bytes. */
        size_t cap = parent->cap_children ? parent->cap_children * 2u : 2u;
        if (cap > 256) cap = 256;
        struct radix_node **children =
            radix_mem_alloc(&t->pool->build, cap * (sizeof *children + 1));
        unsigned char *first = (unsigned char *)(children + cap);
        if (parent->n_children) {
            memcpy(children, parent->children, parent->n_children * sizeof *children);
            memcpy(first, parent->first, parent->n_children);
        }
        parent->children = children;
        parent->first = first;
        parent->cap_children = (uint16_t)cap;
    }
    parent->children[parent->n_children] = child;
    parent->first[parent->n_children] = (unsigned char)child->label[0];
    parent->n_children++;
    child->parent = parent;
    t->frozen_size += radix_frozen_size(parent);
}

void **radix_insert(struct radix_tree *t, const char *key, size_t len) {
    if (t->pool->frozen) radix_fail(__LINE__, "radix_insert() after radix_pool_freeze()");
    struct radix_node *node = t->root;
    size_t pos = 0;
    while (pos < len) {
        size_t at;
        struct radix_node *child = radix_child(node, (unsigned char)key[pos], &at);
        if (!child) {
            struct radix_node *leaf = radix_node_new(t, key + pos, len - pos, len);
            radix_add_child(t, node, leaf);
            return &leaf->value;
        }
        size_t max = child->label_len < len - pos ? child->label_len : len - pos;
        size_t common = 1; /* the first byte matched when choosing the child */
        while (common < max && child->label[common] == key[pos + common])
            common++;
        if (common < child->label_len) {
            /* The key leaves (or ends inside) this edge: split it so that the
             * shared part becomes a node of its own. The new node takes the
             * child's place in the parent, as its first byte is the same. */
            struct radix_node *mid =
                radix_node_new(t, child->label, common, node->key_len + common);
            mid->parent = node;
            node->children[at] = mid;
            t->frozen_size -= radix_frozen_size(child);
            child->label_len -= (uint32_t)common;
            memmove(child->label, child->label + common, child->label_len);
            t->frozen_size += radix_frozen_size(child);
            radix_add_child(t, mid, child);
            child = mid;
        }
        node = child;
        pos += common;
    }
    return &node->value;
}

/* ---- freezing ----------------------------------------------------------- */

/* Moves one node to `to`. Parents are moved before their children: the
 * node's parent pointer already names the moved parent (rewritten below when
 * the parent moved), and the node fills in its own slot there. */
static struct radix_node *radix_freeze_node(struct radix_tree *t, char *to,
                                            struct radix_node *old) {
    struct radix_node *n = (struct radix_node *)to;
    memcpy(n, old, sizeof *n + old->label_len);
    n->first = (unsigned char *)n + radix_align8(sizeof *n + old->label_len);
    n->children = (struct radix_node **)(n->first + radix_align8(old->n_children));
    n->cap_children = n->n_children;
    if (n->n_children) memcpy(n->first, old->first, n->n_children);
    for (size_t i = 0; i < old->n_children; i++)
        old->children[i]->parent = n;
    if (n->parent) {
        /* Not radix_child(): the slot being filled is still unset. */
        struct radix_node *p = n->parent;
        size_t at = 0;
        while (at < p->n_children && p->first[at] != (unsigned char)n->label[0])
            at++;
        if (at == p->n_children) radix_fail(__LINE__, "frozen child missing from its parent");
        p->children[at] = n;
    } else {
        t->root = n;
    }
    return n;
}

/* A growing stack of nodes: key lengths come from the config, so recursion
 * depth would not be bounded by anything we control. */
struct radix_stack {
    struct radix_node **items;
    size_t top, cap;
};

/* Copies t's nodes to `to` (t->frozen_size bytes), depth-first: a node is
 * moved before its children, which are pushed from the old copy. */
static void radix_freeze_tree(struct radix_tree *t, char *to, struct radix_stack *st,
                              void *(*map)(void *value, void *ctx), void *ctx) {
    size_t used = 0;
    st->top = 0;
    st->items[st->top++] = t->root;
    while (st->top > 0) {
        struct radix_node *old = st->items[--st->top];
        if (st->top + old->n_children > st->cap) {
            while (st->top + old->n_children > st->cap)
                st->cap *= 2;
            struct radix_node **items = realloc(st->items, st->cap * sizeof *items);
            if (!items) radix_fail(__LINE__, "out of memory");
            st->items = items;
        }
        for (size_t i = 0; i < old->n_children; i++)
            st->items[st->top++] = old->children[i];
        size_t size = radix_frozen_size(old);
        struct radix_node *n = radix_freeze_node(t, to + used, old);
        used += size;
        if (n->value && map) n->value = map(n->value, ctx);
    }
    if (used != t->frozen_size) radix_fail(__LINE__, "frozen size miscounted");
}

void radix_pool_freeze(struct radix_pool *p, void *(*map)(void *value, void *ctx), void *ctx) {
    if (p->frozen) return;
    size_t total = 0;
    for (struct radix_tree *t = p->trees; t; t = t->next_in_pool)
        total += t->frozen_size;
    p->frozen = malloc(total ? total : 1);
    if (!p->frozen) radix_fail(__LINE__, "out of memory");
    struct radix_stack st = {malloc(64 * sizeof *st.items), 0, 64};
    if (!st.items) radix_fail(__LINE__, "out of memory");
    size_t at = 0;
    for (struct radix_tree *t = p->trees; t; t = t->next_in_pool) {
        radix_freeze_tree(t, p->frozen + at, &st, map, ctx);
        at += t->frozen_size;
    }
    free(st.items);
    radix_mem_free(&p->build);
}

void radix_pool_free(struct radix_pool *p) {
    if (!p) return;
    radix_mem_free(&p->build);
    radix_mem_free(&p->tree_mem);
    free(p->frozen);
    free(p);
}

/* ---- lookups ------------------------------------------------------------ */

/* Aligned to a cache line: the request path's hottest loop is here, and its
 * speed moved by 10% with the placement the code above happened to give it
 * (bench/router_scale.c, 10 routes). */
__attribute__((aligned(64))) const struct radix_node *
radix_longest_prefix(const struct radix_tree *t, const char *s, size_t len) {
    const struct radix_node *node = t->root;
    const struct radix_node *best = node->value ? node : NULL;
    size_t pos = 0;
    while (pos < len) {
        size_t at;
        const struct radix_node *child = radix_child(node, (unsigned char)s[pos], &at);
        if (!child || child->label_len > len - pos ||
            memcmp(child->label, s + pos, child->label_len) != 0)
            break;
        pos += child->label_len;
        node = child;
        if (node->value) best = node;
    }
    return best;
}

const struct radix_node *radix_shorter(const struct radix_node *n) {
    for (n = n->parent; n; n = n->parent)
        if (n->value) return n;
    return NULL;
}

void *radix_value(const struct radix_node *n) {
    return n->value;
}

size_t radix_key_len(const struct radix_node *n) {
    return n->key_len;
}
