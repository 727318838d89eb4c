#include "core/paths.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *paths_data_dir(void) {
    static char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        size_t src_len = strlen(WEIR_SRCDIR);
        if (strncmp(exe, WEIR_SRCDIR, src_len) == 0 && exe[src_len] == '/') return WEIR_SRCDIR;
    }
    return WEIR_DATADIR;
}
