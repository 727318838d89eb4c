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
        /* Uninstalled: the executable sits in the build tree (in or out of
         * the source tree); the data files are in the source tree. */
        const char *trees[] = {WEIR_BUILDDIR, WEIR_SRCDIR};
        for (size_t i = 0; i < sizeof trees / sizeof trees[0]; i++) {
            size_t len = strlen(trees[i]);
            if (strncmp(exe, trees[i], len) == 0 && exe[len] == '/') return WEIR_SRCDIR;
        }
    }
    return WEIR_DATADIR;
}
