#include "core/errlist.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void errlist_init(struct errlist *e) {
    e->items = NULL;
    e->n = e->cap = 0;
}

void errlist_addf(struct errlist *e, const char *path, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    size_t len = strlen(msg) + (path ? strlen(path) : 0) + 3;
    char *item = malloc(len);
    if (!item) abort();
    if (path && *path)
        snprintf(item, len, "%s: %s", path, msg);
    else
        snprintf(item, len, "%s", msg);
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 8;
        e->items = realloc(e->items, e->cap * sizeof *e->items);
        if (!e->items) abort();
    }
    e->items[e->n++] = item;
}

void errlist_free(struct errlist *e) {
    for (size_t i = 0; i < e->n; i++)
        free(e->items[i]);
    free(e->items);
    errlist_init(e);
}
