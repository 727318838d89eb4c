/* model_change: what one admin write changed in the model, as a record the store journals.
 *
 * A change is a list of splices, one per entity kind whose array changed:
 *   {"splices": [{"kind": "routes", "at": 10000, "remove": 0, "insert": [{...route...}]}]}
 * meaning: in that kind's array, remove `remove` entities at index `at` and insert these there.
 * Successive models share their unchanged entities (model.h), so the splice is found by
 * comparing addresses: the common prefix and suffix of the two arrays are kept, the middle is
 * replaced. One created, replaced or deleted entity gives a record of that entity alone; a
 * cascade or a certificate's snis may span more, never less than what changed.
 *
 * Positions count in the order a load of the store's state gives (a model read back from
 * model_export()), which for targets, credentials and snis groups them by owner: replaying the
 * records on the stored state gives what storing model_export() of the last model would have. Pure
 * data on jansson values; the caller owns what it gets. */
#ifndef WEIR_MODEL_CHANGE_H
#define WEIR_MODEL_CHANGE_H

#include <jansson.h>
#include <stddef.h>

/* The record taking `from` to `to`; NULL when no kind's array differs. */
json_t *model_change(const json_t *from, const json_t *to);

/* `model` with `record` applied: a new model sharing the untouched entities. NULL when the record
 * does not fit the model (an unknown kind, a range outside the array, an insert that is not an
 * array of objects), with the reason in `err`. The entities inserted are taken as they are: the
 * caller checks the result as it checks any loaded model. */
json_t *model_change_apply(const json_t *model, const json_t *record, char *err, size_t errlen);

#endif
