/* errlist: an ordered list of "path.to.field: message" problems.
 *
 * Config loading and validation collect every problem instead of stopping at
 * the first, so that `weir -t` and SIGHUP report them all together. The list
 * owns its strings; errlist_free() releases them. Not thread-safe: one owner. */
#ifndef WEIR_ERRLIST_H
#define WEIR_ERRLIST_H

#include <stddef.h>

struct errlist {
    char **items;
    size_t n, cap;
};

void errlist_init(struct errlist *e);
/* Appends "<path>: <formatted message>"; an empty or NULL path omits the prefix. */
void errlist_addf(struct errlist *e, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void errlist_free(struct errlist *e);

#endif
