/* journal: the change records a file store appends between two full writes of its state.
 *
 * Rewriting the whole state for every admin change costs what the state weighs (5 MB and about
 * 17 ms at 10,000 routes, most of it the kernel allocating and flushing a new file), while a
 * change is a few hundred bytes. So the file store writes its state in full only now and then,
 * and in between appends each change, as one record, to "<state path>.journal"; a load returns
 * the state and the records to replay on it.
 *
 * Format, one line each, so an operator can read it:
 *   weir-journal 1 <state bytes> <state crc32, 8 hex digits>\n      the header: which state
 *   <crc32 of the record, 8 hex digits> <record: compact JSON>\n    one per append
 * The header binds the records to one state file: after a full write the store starts a new
 * journal, and if a crash comes between the two, the old journal's header no longer matches the
 * state (which already holds its records), so it is ignored. A record is durable once
 * journal_append() returns (fdatasync). Only the last record can be torn (one writer, appends
 * only); a load drops a torn or checksum-failing last line and cuts it off before the next
 * append, but a bad line before the last means the file was damaged: an error, never a silent
 * loss of the records after it.
 *
 * Not thread-safe: one owner, the store. Errors are appended to `errs`, naming the file. */
#ifndef WEIR_STORE_JOURNAL_H
#define WEIR_STORE_JOURNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/errlist.h"

struct journal;

/* The identity of a state: its size and the crc32 of its bytes. */
struct journal_base {
    size_t len;
    uint32_t crc;
};

struct journal_base journal_base_of(const char *text, size_t len);

/* A journal for the state at `state_path` (it lives at "<state_path>.journal"); nothing is
 * opened yet. */
struct journal *journal_new(const char *state_path);
void journal_free(struct journal *j);

/* Reads the records that apply to the state `base` into *records (a new array, possibly empty).
 * A missing journal or one for another state has none. Returns 0, or -1 on a damaged journal. */
int journal_read(struct journal *j, struct journal_base base, json_t **records,
                 struct errlist *errs);

/* Starts an empty journal for the state `base` (written to a temporary file, fsynced, renamed,
 * directory fsynced), replacing any other. The state must be durable first. */
int journal_reset(struct journal *j, struct journal_base base, struct errlist *errs);

/* Appends one record (`record`: `len` bytes of compact JSON, no newline). Needs a journal_read()
 * or journal_reset() before, for the current state. Returns 0 once durable; on -1 the record is
 * not in the journal (a partial write is cut off; if even that fails, appends are refused until
 * the next journal_reset()). */
int journal_append(struct journal *j, const char *record, size_t len, struct errlist *errs);

/* Bytes of records in the journal. */
size_t journal_size(const struct journal *j);

#endif
