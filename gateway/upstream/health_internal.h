/* health_internal: the registry behind upstream/health.h, shared with the active checker
 * (upstream/health_checker.c). Everything here is under health_registry.lock except each
 * entry's health word. */
#ifndef WEIR_HEALTH_INTERNAL_H
#define WEIR_HEALTH_INTERNAL_H

#include <pthread.h>
#include <sys/socket.h>

#include "upstream/health.h"
#include "upstream/health_config.h"

/* One configuration's view of an entry: the settings and the address its probes use. */
struct health_binding {
    const struct config *owner;
    struct health_config *cfg; /* a reference */
    char *upstream;            /* the upstream's name, for logs */
    char *target;              /* "host:port" as written */
    char *host;
    int port;
    struct sockaddr_storage addr; /* resolved at load time, as the balancer uses it */
    socklen_t addrlen;
    struct health_binding *next;
};

/* The entries of one upstream id: Kong's `concurrency` bounds the probes of an upstream. */
struct health_group {
    char *id;
    int refs;      /* entries */
    int in_flight; /* probes */
    struct health_group *prev, *next;
};

struct health_registry {
    pthread_mutex_t lock;
    struct health_target *head;
    struct health_group *groups;
    size_t n_entries;
    /* Lookups for health_attach() (tens of thousands of targets must not cost a quadratic scan):
     * entry key -> entry, upstream id -> group, as JSON integers holding the pointer. */
    struct json_t *entry_index, *group_index;
};
extern struct health_registry health_registry;

/* Under the lock: drops one reference (a binding's or a probe's); frees the entry, and its group
 * when empty, at zero. */
void health_entry_release_locked(struct health_target *h);

#endif
