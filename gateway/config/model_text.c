#include "config/model_text.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/model.h"

struct cached {
    json_t *entity; /* a reference: the key, kept alive while cached */
    char *text;
    size_t len;
    uint64_t seen; /* the export that last used it */
};

struct model_text_cache {
    struct cached *slots; /* open addressing; entity NULL = empty */
    size_t cap, used;
    uint64_t export_no;
    size_t last_len; /* the previous export's size: the next buffer starts that big */
};

/* The output: one buffer sized from the previous export, so a 5 MB export is one copy. */
struct out {
    char *p;
    size_t len, cap;
};

static void out_put(struct out *o, const char *s, size_t n) {
    if (o->len + n + 1 > o->cap) {
        o->cap = (o->len + n + 1) * 2;
        o->p = realloc(o->p, o->cap);
        if (!o->p) abort();
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void out_str(struct out *o, const char *s) {
    out_put(o, s, strlen(s));
}

struct model_text_cache *model_text_cache_new(void) {
    struct model_text_cache *c = calloc(1, sizeof *c);
    if (!c) abort();
    return c;
}

static void drop(struct cached *e) {
    json_decref(e->entity);
    free(e->text);
    memset(e, 0, sizeof *e);
}

void model_text_cache_free(struct model_text_cache *c) {
    if (!c) return;
    for (size_t i = 0; i < c->cap; i++)
        if (c->slots[i].entity) drop(&c->slots[i]);
    free(c->slots);
    free(c);
}

static size_t slot_of(const struct model_text_cache *c, const json_t *e) {
    uintptr_t h = (uintptr_t)e;
    h ^= h >> 17;
    h *= (uintptr_t)0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 29)) & (c->cap - 1);
}

static void grow(struct model_text_cache *c) {
    struct cached *old = c->slots;
    size_t old_cap = c->cap;
    c->cap = c->cap ? c->cap * 2 : 1024;
    c->slots = calloc(c->cap, sizeof *c->slots);
    if (!c->slots) abort();
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].entity) continue;
        size_t j = slot_of(c, old[i].entity);
        while (c->slots[j].entity)
            j = (j + 1) & (c->cap - 1);
        c->slots[j] = old[i];
    }
    free(old);
}

/* The cached text of `e` (without `drop_field`, for targets nested in their upstream). */
static const struct cached *text_of(struct model_text_cache *c, json_t *e, const char *drop_field) {
    if ((c->used + 1) * 2 > c->cap) grow(c);
    size_t j = slot_of(c, e);
    while (c->slots[j].entity && c->slots[j].entity != e)
        j = (j + 1) & (c->cap - 1);
    struct cached *slot = &c->slots[j];
    if (!slot->entity) {
        json_t *shown = e;
        if (drop_field) {
            shown = json_copy(e);
            json_object_del(shown, drop_field);
        }
        slot->text = json_dumps(shown, JSON_COMPACT);
        if (!slot->text) abort();
        if (drop_field) json_decref(shown);
        slot->len = strlen(slot->text);
        slot->entity = json_incref(e);
        c->used++;
    }
    slot->seen = c->export_no;
    return slot;
}

/* Removes entries the last export did not use (backward-shift deletion keeps probing valid). */
static void sweep(struct model_text_cache *c) {
    for (size_t i = 0; i < c->cap; i++) {
        if (!c->slots[i].entity || c->slots[i].seen == c->export_no) continue;
        drop(&c->slots[i]);
        c->used--;
        size_t hole = i, k = (i + 1) & (c->cap - 1);
        while (c->slots[k].entity) {
            size_t home = slot_of(c, c->slots[k].entity);
            /* move k into the hole when its home is not cyclically in (hole, k] */
            bool movable = hole <= k ? (home <= hole || home > k) : (home <= hole && home > k);
            if (movable) {
                c->slots[hole] = c->slots[k];
                memset(&c->slots[k], 0, sizeof c->slots[k]);
                hole = k;
            }
            k = (k + 1) & (c->cap - 1);
        }
        if (hole != i) i--; /* slot i was refilled: look at it again */
    }
}

static void put(struct out *o, const struct cached *t) {
    out_put(o, t->text, t->len);
}

char *model_export_text(const json_t *model, struct model_text_cache *c, size_t *len) {
    c->export_no++;
    struct out o = {malloc(c->last_len + 4096), 0, c->last_len + 4096}, *f = &o;
    if (!o.p) abort();
    out_str(f, "{\"_format_version\":\"3.0\"");
    /* nested kinds (targets, credentials): owner id -> positions, as model_export nests them */
    json_t *nested[ENTITY_KINDS] = {0};
    size_t i;
    json_t *e;
    for (int k = 0; k < ENTITY_KINDS; k++)
        nested[k] = model_nested_index(model, (enum entity_kind)k);
    for (int k = 0; k < ENTITY_KINDS; k++) {
        json_t *items = model_items(model, (enum entity_kind)k);
        if (entity_kinds[k].nest_key || !json_array_size(items)) continue;
        out_str(f, ",\"");
        out_str(f, entity_kinds[k].plural);
        out_str(f, "\":[");
        json_array_foreach(items, i, e) {
            if (i) out_put(f, ",", 1);
            const struct cached *t = text_of(c, e, NULL);
            const char *id = json_string_value(json_object_get(e, "id"));
            /* "{...}" becomes "{...,"targets":[...]}" for each kind nested in this one */
            bool open = false;
            for (int ck = 0; ck < ENTITY_KINDS; ck++) {
                if (!nested[ck] || entity_kinds[ck].refs[0].kind != (enum entity_kind)k) continue;
                json_t *mine = json_object_get(nested[ck], id);
                if (!json_array_size(mine)) continue;
                if (!open) out_put(f, t->text, t->len - 1);
                open = true;
                out_str(f, ",\"");
                out_str(f, entity_kinds[ck].nest_key);
                out_str(f, "\":[");
                size_t j;
                json_t *pos;
                json_t *children = model_items(model, (enum entity_kind)ck);
                json_array_foreach(mine, j, pos) {
                    if (j) out_put(f, ",", 1);
                    put(f, text_of(c, json_array_get(children, (size_t)json_integer_value(pos)),
                                   entity_kinds[ck].refs[0].field));
                }
                out_put(f, "]", 1);
            }
            if (open)
                out_put(f, "}", 1);
            else
                put(f, t);
        }
        out_put(f, "]", 1);
    }
    out_put(f, "}", 1);
    for (int k = 0; k < ENTITY_KINDS; k++)
        json_decref(nested[k]);
    o.p[o.len] = '\0';
    sweep(c);
    c->last_len = o.len;
    *len = o.len;
    return o.p;
}
