/* log: the error log, with levels.
 *
 * One line per message: "2026/11/26 15:00:00 [warn] <message>". Lines are
 * formatted into a stack buffer and written with one write(2) so lines from
 * several threads never interleave. Callable from any thread. The log level
 * and destination are set at start and on reload (log_configure). */
#ifndef WEIR_LOG_H
#define WEIR_LOG_H

#include "config/config.h"

/* `path` NULL or "-" means stderr. Returns 0, or -1 with errno set when the
 * file cannot be opened (the previous destination is kept). */
int log_configure(const char *path, enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *log_level_name(enum log_level level);

#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LEVEL_NOTICE, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_err(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

/* Impossible states abort with file and line (HAProxy's BUG_ON). */
#define WEIR_BUG_ON(cond)                                                                          \
    do {                                                                                           \
        if (cond) log_bug(__FILE__, __LINE__, #cond);                                              \
    } while (0)
_Noreturn void log_bug(const char *file, int line, const char *cond);

#endif
