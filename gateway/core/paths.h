/* paths: where the binary finds schemas/, plugins/ and lua/.
 *
 * Run uninstalled (the executable lives inside the source/build tree) it uses
 * the source tree; installed, it uses the install prefix's data directory
 * ($prefix/share/weir). Computed once at start; read-only afterwards. */
#ifndef WEIR_PATHS_H
#define WEIR_PATHS_H

/* Returns the directory holding schemas/, plugins/ and lua/. */
const char *paths_data_dir(void);

#endif
