/* file_io: the two POSIX steps every durable file write in the store needs.
 * errno is left set on failure, for the caller's message. */
#ifndef WEIR_STORE_FILE_IO_H
#define WEIR_STORE_FILE_IO_H

#include <stddef.h>

/* write() until all `len` bytes are written: regular files may write short (a full disk part way
 * through returns the bytes written first, then ENOSPC on the next call). 0, or -1. */
int file_write_all(int fd, const char *p, size_t len);

/* Reads what `fd` holds from its offset to the end into a new NUL-terminated buffer (*out, the
 * caller's; *len bytes). fstat's size is only a hint (someone else may be writing): the read
 * goes on up to one byte past `max`, and more than `max` bytes is -1 with errno EFBIG. 0, or -1
 * with errno. */
int file_read_all(int fd, size_t max, char **out, size_t *len);

/* fsync a directory so that entries created or renamed in it survive a power loss; the file's
 * own fsync does not cover its name. 0, or -1. */
int file_fsync_dir(const char *dir);

#endif
