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
};

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

static void put(FILE *f, const struct cached *t) {
    fwrite(t->text, 1, t->len, f);
}

char *model_export_text(const json_t *model, struct model_text_cache *c, size_t *len) {
    c->export_no++;
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    if (!f) abort();
    fputs("{\"_format_version\":\"3.0\"", f);
    /* nested kinds (targets, credentials): owner id -> positions, as model_export nests them */
    json_t *nested[ENTITY_KINDS] = {0};
    size_t i;
    json_t *e;
    for (int k = 0; k < ENTITY_KINDS; k++) {
        if (!entity_kinds[k].nest_key) continue;
        nested[k] = json_object();
        json_array_foreach(model_items(model, (enum entity_kind)k), i, e) {
            const char *owner = json_string_value(
                json_object_get(json_object_get(e, entity_kinds[k].refs[0].field), "id"));
            json_t *list = json_object_get(nested[k], owner);
            if (!list) json_object_set_new(nested[k], owner, list = json_array());
            json_array_append_new(list, json_integer((json_int_t)i));
        }
    }
    for (int k = 0; k < ENTITY_KINDS; k++) {
        json_t *items = model_items(model, (enum entity_kind)k);
        if (entity_kinds[k].nest_key || !json_array_size(items)) continue;
        fprintf(f, ",\"%s\":[", entity_kinds[k].plural);
        json_array_foreach(items, i, e) {
            if (i) fputc(',', f);
            const struct cached *t = text_of(c, e, NULL);
            const char *id = json_string_value(json_object_get(e, "id"));
            /* "{...}" becomes "{...,"targets":[...]}" for each kind nested in this one */
            bool open = false;
            for (int ck = 0; ck < ENTITY_KINDS; ck++) {
                if (!nested[ck] || entity_kinds[ck].refs[0].kind != (enum entity_kind)k) continue;
                json_t *mine = json_object_get(nested[ck], id);
                if (!json_array_size(mine)) continue;
                if (!open) fwrite(t->text, 1, t->len - 1, f);
                open = true;
                fprintf(f, ",\"%s\":[", entity_kinds[ck].nest_key);
                size_t j;
                json_t *pos;
                json_t *children = model_items(model, (enum entity_kind)ck);
                json_array_foreach(mine, j, pos) {
                    if (j) fputc(',', f);
                    put(f, text_of(c, json_array_get(children, (size_t)json_integer_value(pos)),
                                   entity_kinds[ck].refs[0].field));
                }
                fputc(']', f);
            }
            if (open)
                fputc('}', f);
            else
                put(f, t);
        }
        fputc(']', f);
    }
    fputc('}', f);
    for (int k = 0; k < ENTITY_KINDS; k++)
        json_decref(nested[k]);
    if (fclose(f) != 0) abort();
    sweep(c);
    *len = n;
    return out;
}
