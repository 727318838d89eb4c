#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_fd = 2;
static atomic_int log_min_level = LOG_LEVEL_INFO;

static const char *const level_names[] = {"debug", "info", "notice", "warn", "error"};

const char *log_level_name(enum log_level level) {
    return level_names[level];
}

int log_configure(const char *path, enum log_level level) {
    int fd = 2;
    if (path && strcmp(path, "-") != 0) {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) return -1;
    }
    int old = atomic_exchange(&log_fd, fd);
    /* The old descriptor may be in use by a write in another thread right now;
     * leaking one fd per reload of a changed error_log path is the price of
     * not locking the log. Reloads that keep the path reopen it anyway. */
    (void)old;
    atomic_store(&log_min_level, (int)level);
    return 0;
}

void log_msg(enum log_level level, const char *fmt, ...) {
    if ((int)level < atomic_load_explicit(&log_min_level, memory_order_relaxed)) return;
    char line[2048];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    size_t n = strftime(line, sizeof line, "%Y/%m/%d %H:%M:%S ", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, "[%s] ", level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) return;
    n += (size_t)m;
    if (n > sizeof line - 2) n = sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(atomic_load(&log_fd), line, n);
    (void)w;
}

void log_bug(const char *file, int line, const char *cond) {
    log_err("BUG at %s:%d: %s", file, line, cond);
    abort();
}
