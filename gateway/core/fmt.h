/* fmt: number formatting and time arithmetic for the request path.
 *
 * snprintf showed up in the proxy's profile (a locale-aware, varargs
 * formatter per header line); these write plain decimal or hex digits into
 * a caller's buffer and return the length. Pure; any thread. */
#ifndef WEIR_FMT_H
#define WEIR_FMT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Milliseconds elapsed since t0 (CLOCK_MONOTONIC), for latencies. */
static inline double clock_ms_since(const struct timespec *t0) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

/* `out` needs 20 bytes for any uint64_t. No NUL is written. */
static inline size_t fmt_u64(char *out, uint64_t v) {
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* Lower-case hex; `out` needs 16 bytes. No NUL is written. */
static inline size_t fmt_hex(char *out, uint64_t v) {
    static const char digits[] = "0123456789abcdef";
    char tmp[16];
    size_t n = 0;
    do {
        tmp[n++] = digits[v & 15];
        v >>= 4;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

#endif
