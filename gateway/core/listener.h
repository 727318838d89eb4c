/* listener: listening sockets.
 *
 * Every worker opens its own SO_REUSEPORT socket per listen address so the
 * kernel spreads connections without a shared accept lock. The main thread
 * probes every address first to report start-up errors (port in use, bad
 * address) as one clear line before any worker starts. */
#ifndef WEIR_LISTENER_H
#define WEIR_LISTENER_H

#include <stddef.h>

#include "config/config.h"

/* Returns a non-blocking SO_REUSEPORT listening fd, or -1 with a message
 * in err. */
int listener_open(const struct listen_addr *a, char *err, size_t errlen);
/* Binds and closes a socket without SO_REUSEPORT: fails (-1, message in
 * err) when any other socket holds the address, including another process
 * that set SO_REUSEPORT, which listener_open() alone would silently join
 * (two gateways sharing a port by accident). */
int listener_probe(const struct listen_addr *a, char *err, size_t errlen);

#endif
