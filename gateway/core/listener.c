#include "core/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int make_socket(const struct listen_addr *a, bool reuseport, char *err, size_t errlen);

int listener_open(const struct listen_addr *a, char *err, size_t errlen) {
    return make_socket(a, true, err, errlen);
}

int listener_probe(const struct listen_addr *a, char *err, size_t errlen) {
    int fd = make_socket(a, false, err, errlen);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

static int make_socket(const struct listen_addr *a, bool reuseport, char *err, size_t errlen) {
    struct sockaddr_storage ss;
    socklen_t sslen;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, a->host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)a->port);
        sslen = sizeof *sin;
    } else if (inet_pton(AF_INET6, a->host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)a->port);
        sslen = sizeof *sin6;
    } else {
        snprintf(err, errlen, "cannot listen on %s:%d: not a numeric address", a->host, a->port);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", a->host, a->port, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, 4096) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", a->host, a->port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}
