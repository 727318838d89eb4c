/* redis_client: an asynchronous Redis client on a worker's event loop (hiredis underneath).
 *
 * A redis_pool belongs to one event_base and is used only on the thread that runs that base.
 * It holds targets, one per (host, port, username, password, db, pool name); a target keeps up to
 * `pool_size` connections and many callers share each of them: commands are pipelined (written
 * as they come, answered in order), so nobody waits for a free connection. A command goes to
 * the target's least busy connection; a new connection is opened only when every open one has
 * commands in flight and the caller's pool_size allows one more.
 *
 * Connections open on demand. Host names are resolved without blocking the loop (evdns; the
 * first IPv4 address wins, else the first IPv6 one), "unix:/path" is a Unix socket, and the
 * resolve plus the TCP connect are bounded by the opening command's timeout. A new connection
 * first sends AUTH (with a password, and a Redis 6 ACL username when given) and SELECT (with a db
 * other than 0), pipelined ahead of the commands that made it open; if either fails, the connection
 * is dropped. A dropped or failed connection answers every command on it with the reason, and the
 * next command opens a new one: nothing is retried, since a command that was sent may have run.
 *
 * Every command has a timeout. When it passes, the caller is answered "timeout" and the reply
 * that arrives later is read and discarded, so the connection stays in step. If the connection
 * has answered nothing at all since the command was sent, the server is taken to be stalled or
 * gone (a dead peer may never send a reset) and the connection is dropped, answering the
 * commands behind it with "timeout" too; otherwise it is kept for the others.
 *
 * Bounds: REDIS_MAX_PENDING commands per connection, replies of at most REDIS_MAX_REPLY bytes
 * (a larger one drops its connection: the stream cannot be resynchronised), REDIS_MAX_TARGETS
 * targets per pool (the least recently used target that no caller waits on is closed to make
 * room) and REDIS_MAX_POOL_SIZE connections per target.
 *
 * Commands that would change the state every sharer of a connection sees, or break the one
 * reply per command order that pipelining relies on (MULTI, SELECT, SUBSCRIBE, MONITOR, CLIENT
 * REPLY, ...), are refused: see redis_command_refusal(). Blocking commands (BLPOP, WAIT, ...)
 * are allowed but hold up the commands pipelined behind them on their connection; give such
 * callers their own pool name. */
#ifndef WEIR_REDIS_CLIENT_H
#define WEIR_REDIS_CLIENT_H

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stddef.h>

#define REDIS_MAX_PENDING 10000
#define REDIS_MAX_REPLY (16 * 1024 * 1024)
#define REDIS_MAX_TARGETS 64
#define REDIS_MAX_POOL_SIZE 64
#define REDIS_DEFAULT_POOL_SIZE 4

struct redis_pool;
struct redis_cmd;

/* Where a caller's commands go and how long each may take. The strings are copied by the pool
 * when it first sees the target; the caller keeps its own. */
struct redis_client {
    const char *host;      /* name, IPv4 or IPv6 address, or "unix:/path/to/socket" */
    int port;              /* ignored for a Unix socket */
    const char *username;  /* NULL: AUTH <password> (the default user); else AUTH <user> <pw> */
    const char *password;  /* NULL: no AUTH */
    int db;                /* 0: no SELECT */
    const char *pool_name; /* NULL, or a name that keeps these connections apart */
    int pool_size;         /* connections this caller lets the target open, 1..MAX_POOL_SIZE */
    int timeout_ms;        /* for each command, and for a connection the command opens */
};

/* The answer to one command: the reply (possibly an error reply, REDIS_REPLY_ERROR), or reply
 * NULL and err saying why there is none ("timeout", "connect failed: Connection refused",
 * "connection lost: Server closed the connection", "AUTH failed: WRONGPASS ...", "reply too
 * large", "closed"...). Both are valid only during the call. */
typedef void (*redis_reply_fn)(void *arg, const redisReply *reply, const char *err);

struct redis_pool *redis_pool_new(struct event_base *base);
/* Closes every connection; commands still waiting are answered "closed" first. Not from inside
 * a reply callback. */
void redis_pool_free(struct redis_pool *p);

/* Sends argv (binary-safe, argvlen[i] bytes each) to cl's target. Returns a handle; fn(arg, ...)
 * is then called exactly once from the event loop, never before this returns, unless the
 * command is cancelled first. Returns NULL when the command cannot start (refused command,
 * too many pending commands or targets, a connection that failed at once): *err then says why,
 * valid until the next call on this pool, and fn is never called. */
struct redis_cmd *redis_command(struct redis_pool *p, const struct redis_client *cl, int argc,
                                const char **argv, const size_t *argvlen, redis_reply_fn fn,
                                void *arg, const char **err);

/* The caller no longer wants the answer: fn will not be called. The handle is invalid after
 * this (and after fn was called). A reply still on its way is read and discarded. */
void redis_command_cancel(struct redis_cmd *cmd);

/* Why a command cannot run on a shared connection, or NULL when it can. */
const char *redis_command_refusal(int argc, const char **argv, const size_t *argvlen);

#endif
