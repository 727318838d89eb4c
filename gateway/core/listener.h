/* listener: listening sockets.
 *
 * Every worker opens its own SO_REUSEPORT socket per listen address so the
 * kernel spreads connections without a shared accept lock. The main thread
 * opens one set first to report start-up errors (port in use, bad address)
 * as one clear line before any worker starts. */
#ifndef WEIR_LISTENER_H
#define WEIR_LISTENER_H

#include <stddef.h>

#include "config/config.h"

/* Returns a non-blocking listening fd, or -1 with a message in err. */
int listener_open(const struct listen_addr *a, char *err, size_t errlen);

#endif
