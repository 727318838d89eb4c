/* model_text: model_export() as JSON text, re-encoding only the entities that changed.
 *
 * Every admin change stores the whole entity set; at 10,000 routes encoding it from scratch takes
 * about 90 ms, nearly all of it spent on entities the change did not touch. Entities are immutable
 * and shared between successive models, so their compact text can be kept, keyed by the entity
 * object's address; the cache holds a reference to each entity it keeps, so an address is never
 * reused while cached. After each export, entities no longer in the model leave the cache.
 * The text is equal, as JSON, to json_dumps(model_export(model)). Control thread only. */
#ifndef WEIR_MODEL_TEXT_H
#define WEIR_MODEL_TEXT_H

#include <jansson.h>
#include <stddef.h>

struct model_text_cache;

struct model_text_cache *model_text_cache_new(void);
void model_text_cache_free(struct model_text_cache *c);

/* The export of `model` as compact JSON; the caller frees it. *len gets its length. */
char *model_export_text(const json_t *model, struct model_text_cache *c, size_t *len);

#endif
