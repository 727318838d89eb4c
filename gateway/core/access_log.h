/* access_log: one JSON object per request, written off the worker thread.
 *
 * Workers append formatted lines to their own buffer (struct
 * access_log_buffer, one per worker, guarded by a lock only the writer
 * thread also takes); a writer thread swaps the buffers out every 100 ms and
 * writes them, so a slow disk never blocks a worker. Each worker's buffer is
 * bounded (4 MiB): when the writer falls that far behind, lines are dropped
 * and counted, and the count is reported in the error log. */
#ifndef WEIR_ACCESS_LOG_H
#define WEIR_ACCESS_LOG_H

#include <stddef.h>

struct access_log;

/* path "-" = stdout, NULL = disabled (returns NULL without error).
 * Returns NULL and sets errno when the file cannot be opened. */
struct access_log *access_log_open(const char *path, int n_workers);
/* Appends one line (without the newline) for `worker`. */
void access_log_write(struct access_log *l, int worker, const char *line, size_t len);
/* Flushes what is buffered and stops the writer thread. */
void access_log_close(struct access_log *l);

#endif
