/* mock_upstream: the HTTP server `weir plugin test` points its service at, so that plugin specs
 * need no backend of their own.
 *
 * It listens on 127.0.0.1 at a port the kernel picks and answers every request with 200 and a
 * JSON echo of what it received:
 *   {"method": "GET", "path": "/a%20b", "query": "x=1", "headers": [["Host", "..."], ...],
 *    "body": "..."}
 * path and query are raw (as sent, query "" when there is none), headers keep their order and
 * spelling, body is the request body as a string (null, with "body_base64" instead, when it is not
 * UTF-8). Two paths change the answer, so specs can test how plugins see upstream failures and
 * timeouts (the echo is still the body):
 *   /status/<code>   answer with <code> (200..599)
 *   /delay/<ms>      answer after <ms> milliseconds (at most 60000)
 * Methods: those libevent's evhttp knows (GET, POST, HEAD, PUT, DELETE, OPTIONS, TRACE, PATCH);
 * any other gets 405 from evhttp.
 *
 * The server runs on a thread of its own, with its own event loop, from mock_upstream_start() to
 * mock_upstream_stop(); both are called from one (any) other thread. */
#ifndef WEIR_MOCK_UPSTREAM_H
#define WEIR_MOCK_UPSTREAM_H

#include <stddef.h>

struct mock_upstream;

/* Listening and running once this returns. NULL with a message in err. */
struct mock_upstream *mock_upstream_start(char *err, size_t errlen);
int mock_upstream_port(const struct mock_upstream *m);
/* Answers requests still delayed, stops the thread and frees everything. */
void mock_upstream_stop(struct mock_upstream *m);

#endif
