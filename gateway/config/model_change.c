#include "config/model_change.h"

#include <stdio.h>
#include <string.h>

#include "config/model.h"

/* The splice taking array a to array b, or NULL when they hold the same entities. */
static json_t *splice_of(enum entity_kind k, const json_t *a, const json_t *b) {
    size_t na = json_array_size(a), nb = json_array_size(b), pre = 0, suf = 0;
    while (pre < na && pre < nb && json_array_get(a, pre) == json_array_get(b, pre))
        pre++;
    while (suf < na - pre && suf < nb - pre &&
           json_array_get(a, na - 1 - suf) == json_array_get(b, nb - 1 - suf))
        suf++;
    if (pre + suf == na && pre + suf == nb) return NULL;
    json_t *insert = json_array();
    for (size_t i = pre; i < nb - suf; i++)
        json_array_append(insert, json_array_get(b, i));
    return json_pack("{s:s, s:I, s:I, s:o}", "kind", entity_kinds[k].plural, "at", (json_int_t)pre,
                     "remove", (json_int_t)(na - pre - suf), "insert", insert);
}

/* Kind k's entities in the order a load of model_export(model) gives them. The same as the
 * model's for top-level kinds; nested kinds (targets, credentials, snis) are grouped by owner, in
 * the owners' order, which an admin write appending a target need not keep. */
static json_t *load_order(const json_t *model, enum entity_kind k) {
    json_t *items = model_items(model, k);
    json_t *index = model_nested_index(model, k);
    if (!index) return json_incref(items);
    json_t *out = json_array();
    size_t i, j;
    json_t *owner, *pos;
    json_array_foreach(model_items(model, entity_kinds[k].refs[0].kind), i, owner) {
        json_t *mine = json_object_get(index, json_string_value(json_object_get(owner, "id")));
        json_array_foreach(mine, j, pos) {
            json_array_append(out, json_array_get(items, (size_t)json_integer_value(pos)));
        }
    }
    json_decref(index);
    return out;
}

json_t *model_change(const json_t *from, const json_t *to) {
    json_t *splices = json_array();
    for (int k = 0; k < ENTITY_KINDS; k++) {
        if (model_items(from, (enum entity_kind)k) == model_items(to, (enum entity_kind)k))
            continue;
        /* Positions are those of the store's state, which is an export: see load_order(). */
        json_t *a = load_order(from, (enum entity_kind)k), *b = load_order(to, (enum entity_kind)k);
        json_t *sp = splice_of((enum entity_kind)k, a, b);
        json_decref(a);
        json_decref(b);
        if (sp) json_array_append_new(splices, sp);
    }
    if (!json_array_size(splices)) {
        json_decref(splices);
        return NULL;
    }
    return json_pack("{s:o}", "splices", splices);
}

json_t *model_change_apply(const json_t *model, const json_t *record, char *err, size_t errlen) {
    json_t *splices = json_object_get(record, "splices");
    if (!json_is_array(splices)) {
        snprintf(err, errlen, "a change record needs a \"splices\" array");
        return NULL;
    }
    json_t *out = json_copy((json_t *)model);
    size_t i;
    json_t *sp;
    json_array_foreach(splices, i, sp) {
        const char *kind = json_string_value(json_object_get(sp, "kind"));
        int k = kind ? entity_kind_find(kind, false) : -1;
        json_t *at = json_object_get(sp, "at"), *remove = json_object_get(sp, "remove"),
               *insert = json_object_get(sp, "insert");
        json_t *items = k >= 0 ? model_items(out, (enum entity_kind)k) : NULL;
        size_t n = json_array_size(items);
        bool fits = items && json_is_integer(at) && json_is_integer(remove) &&
                    json_is_array(insert) && json_integer_value(at) >= 0 &&
                    json_integer_value(remove) >= 0 && (size_t)json_integer_value(at) <= n &&
                    (size_t)json_integer_value(remove) <= n - (size_t)json_integer_value(at);
        for (size_t j = 0; fits && j < json_array_size(insert); j++)
            fits = json_is_object(json_array_get(insert, j));
        if (!fits) {
            snprintf(err, errlen, "splice %zu does not fit the model (kind %s)", i,
                     kind ? kind : "missing");
            json_decref(out);
            return NULL;
        }
        size_t a = (size_t)json_integer_value(at), r = (size_t)json_integer_value(remove);
        json_t *next = json_array();
        for (size_t j = 0; j < a; j++)
            json_array_append(next, json_array_get(items, j));
        json_array_extend(next, insert);
        for (size_t j = a + r; j < n; j++)
            json_array_append(next, json_array_get(items, j));
        json_object_set_new(out, entity_kinds[k].plural, next);
    }
    return out;
}
