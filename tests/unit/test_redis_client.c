/* Unit tests for redis_client against a fake Redis on the same event loop: the commands refused
 * on shared connections, pipelining in order on one connection, timeouts (a late reply is
 * discarded, a silent connection is dropped), cancellation, and the bounds (pending commands,
 * targets, reply size). The fake answers each command with its last argument, or holds its
 * replies until the test releases them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "redis/redis_client.h"

/* ---- a fake Redis ---------------------------------------------------------------------------- */

#define FAKE_MAX_CONNS (REDIS_MAX_TARGETS + 8)
#define FAKE_IN 65536

struct fake_conn {
    struct fake *f;
    int fd;
    struct event *ev;
    char in[FAKE_IN];
    size_t in_len;
    char **held; /* replies not written yet (hold mode) */
    size_t n_held, cap_held;
};

struct fake {
    struct event_base *base;
    int fd, port;
    struct event *accept_ev;
    struct fake_conn *conns[FAKE_MAX_CONNS];
    int accepted;
    bool hold;          /* keep replies until fake_release() */
    const char *canned; /* raw reply to every command, instead of its last argument */
    size_t commands;    /* commands parsed, AUTH and SELECT included */
};

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

static char *reply_for(struct fake *f, const char *name, size_t name_len, const char *last,
                       size_t last_len) {
    char *r;
    if ((name_len == 6 && !strncasecmp(name, "select", 6)) ||
        (name_len == 4 && !strncasecmp(name, "auth", 4))) {
        r = strdup("+OK\r\n");
    } else if (f->canned) {
        r = strdup(f->canned);
    } else {
        r = malloc(last_len + 32);
        int n = sprintf(r, "$%zu\r\n", last_len);
        memcpy(r + n, last, last_len);
        memcpy(r + n + last_len, "\r\n", 3);
    }
    assert_non_null(r);
    return r;
}

/* One command from the front of c->in (arrays of bulk strings only): its reply, or NULL. */
static char *parse_one(struct fake_conn *c) {
    char *p = c->in, *end = c->in + c->in_len;
    char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return NULL;
    assert_int_equal(*p, '*');
    int argc = atoi(p + 1);
    p = nl + 1;
    const char *name = NULL, *last = NULL;
    size_t name_len = 0, last_len = 0;
    for (int i = 0; i < argc; i++) {
        nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
        if (!nl) return NULL;
        size_t len = (size_t)atol(p + 1);
        p = nl + 1;
        if ((size_t)(end - p) < len + 2) return NULL;
        if (i == 0) name = p, name_len = len;
        last = p, last_len = len;
        p += len + 2;
    }
    char *r = reply_for(c->f, name, name_len, last, last_len);
    c->f->commands++;
    c->in_len = (size_t)(end - p);
    memmove(c->in, p, c->in_len);
    return r;
}

static void fake_readable(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    struct fake_conn *c = arg;
    ssize_t n = read(fd, c->in + c->in_len, sizeof c->in - c->in_len);
    if (n <= 0) {
        event_del(c->ev);
        return;
    }
    c->in_len += (size_t)n;
    char *r;
    while ((r = parse_one(c))) {
        if (!c->f->hold) {
            write_all(c->fd, r, strlen(r));
            free(r);
            continue;
        }
        if (c->n_held == c->cap_held) {
            c->cap_held = c->cap_held ? 2 * c->cap_held : 64;
            c->held = realloc(c->held, c->cap_held * sizeof *c->held);
            assert_non_null(c->held);
        }
        c->held[c->n_held++] = r;
    }
}

static void fake_accept(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    struct fake *f = arg;
    int cfd = accept(fd, NULL, NULL);
    if (cfd < 0) return;
    assert_true(f->accepted < FAKE_MAX_CONNS);
    struct fake_conn *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->f = f;
    c->fd = cfd;
    c->ev = event_new(f->base, cfd, EV_READ | EV_PERSIST, fake_readable, c);
    event_add(c->ev, NULL);
    f->conns[f->accepted++] = c;
}

static void fake_start(struct fake *f, struct event_base *base) {
    memset(f, 0, sizeof *f);
    f->base = base;
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->fd, 256), 0);
    socklen_t len = sizeof sa;
    getsockname(f->fd, (struct sockaddr *)&sa, &len);
    f->port = ntohs(sa.sin_port);
    f->accept_ev = event_new(base, f->fd, EV_READ | EV_PERSIST, fake_accept, f);
    event_add(f->accept_ev, NULL);
}

/* Writes the first n held replies of connection i (all with n < 0). */
static void fake_release(struct fake *f, int i, long n) {
    struct fake_conn *c = f->conns[i];
    size_t k = n < 0 || (size_t)n > c->n_held ? c->n_held : (size_t)n;
    for (size_t j = 0; j < k; j++) {
        write_all(c->fd, c->held[j], strlen(c->held[j]));
        free(c->held[j]);
    }
    memmove(c->held, c->held + k, (c->n_held - k) * sizeof *c->held);
    c->n_held -= k;
}

static void fake_stop(struct fake *f) {
    for (int i = 0; i < f->accepted; i++) {
        struct fake_conn *c = f->conns[i];
        event_free(c->ev);
        close(c->fd);
        for (size_t j = 0; j < c->n_held; j++)
            free(c->held[j]);
        free(c->held);
        free(c);
    }
    event_free(f->accept_ev);
    close(f->fd);
}

/* ---- the loop and the answers ---------------------------------------------------------------- */

struct answer {
    int calls;
    int type; /* REDIS_REPLY_*, or 0 for no reply */
    char text[128];
    int order; /* when it came, among all answers */
};

static int answers_seen;

static void record(void *arg, const redisReply *reply, const char *err) {
    struct answer *a = arg;
    a->calls++;
    a->order = answers_seen++;
    a->type = reply ? reply->type : 0;
    snprintf(a->text, sizeof a->text, "%s", reply ? (reply->str ? reply->str : "") : err);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Runs the loop until *flag is set or `ms` pass; a ticker keeps EVLOOP_ONCE from blocking. */
static void run_for(struct event_base *base, const int *flag, int ms) {
    double end = now_ms() + ms;
    while ((!flag || !*flag) && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
}

static void tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)arg;
}

struct env {
    struct event_base *base;
    struct event *ticker;
    struct fake fake;
    struct redis_pool *pool;
    struct redis_client cl;
};

static int setup(void **state) {
    struct env *e = calloc(1, sizeof *e);
    e->base = event_base_new();
    e->ticker = event_new(e->base, -1, EV_PERSIST, tick, NULL);
    struct timeval tv = {0, 5000};
    event_add(e->ticker, &tv);
    fake_start(&e->fake, e->base);
    e->pool = redis_pool_new(e->base);
    e->cl = (struct redis_client){
        .host = "127.0.0.1", .port = e->fake.port, .pool_size = 1, .timeout_ms = 1000};
    answers_seen = 0;
    *state = e;
    return 0;
}

static int teardown(void **state) {
    struct env *e = *state;
    redis_pool_free(e->pool);
    fake_stop(&e->fake);
    event_free(e->ticker);
    event_base_free(e->base);
    free(e);
    return 0;
}

/* Frees the pool, which answers every command still waiting "closed", and makes a new one. */
static void close_pool(struct env *e) {
    redis_pool_free(e->pool);
    e->pool = redis_pool_new(e->base);
}

static struct redis_cmd *send1(struct env *e, const char *name, const char *arg, struct answer *a) {
    const char *argv[] = {name, arg};
    size_t lens[] = {strlen(name), strlen(arg)};
    const char *err = NULL;
    struct redis_cmd *cmd = redis_command(e->pool, &e->cl, 2, argv, lens, record, a, &err);
    if (!cmd) snprintf(a->text, sizeof a->text, "%s", err);
    return cmd;
}

/* ---- refused commands ------------------------------------------------------------------------ */

static const char *refusal(const char *a0, const char *a1) {
    const char *argv[] = {a0, a1};
    size_t lens[] = {strlen(a0), a1 ? strlen(a1) : 0};
    return redis_command_refusal(a1 ? 2 : 1, argv, lens);
}

static void test_commands_that_change_a_shared_connection_are_refused(void **state) {
    (void)state;
    const char *refused[] = {"MULTI",        "exec",      "Watch",      "SELECT",     "auth",
                             "HELLO",        "SUBSCRIBE", "psubscribe", "ssubscribe", "UNSUBSCRIBE",
                             "punsubscribe", "MONITOR",   "pmonitor",   "QUIT",       "reset"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        assert_non_null(refusal(refused[i], NULL));
    assert_non_null(refusal("CLIENT", "reply"));
    assert_non_null(refusal("monitor\r\nGET", NULL)); /* hiredis would see MONITOR */
    const char *allowed[] = {"GET", "SET", "EVAL", "ping", "pfadd", "publish", "CLIENT", "BLPOP"};
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++)
        assert_null(refusal(allowed[i], "x"));
    assert_null(refusal("CLIENT", "LIST"));
}

/* ---- pipelining ------------------------------------------------------------------------------ */

static void test_commands_are_pipelined_on_one_connection_and_answered_in_order(void **state) {
    struct env *e = *state;
    struct answer a[200] = {{0}};
    e->fake.hold = true; /* nothing answered until all 200 are in flight */
    for (int i = 0; i < 200; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        assert_non_null(send1(e, "ECHO", v, &a[i]));
    }
    run_for(e->base, NULL, 100);
    assert_int_equal(e->fake.accepted, 1);
    assert_int_equal(e->fake.commands, 200);
    assert_int_equal(a[0].calls, 0);
    fake_release(&e->fake, 0, -1);
    run_for(e->base, &a[199].calls, 2000);
    for (int i = 0; i < 200; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        assert_int_equal(a[i].calls, 1);
        assert_string_equal(a[i].text, v);
        assert_int_equal(a[i].order, i);
    }
}

static void test_a_busy_connection_makes_the_next_command_open_another(void **state) {
    struct env *e = *state;
    e->cl.pool_size = 2;
    e->fake.hold = true;
    struct answer a[3] = {{0}};
    send1(e, "ECHO", "a", &a[0]);
    send1(e, "ECHO", "b", &a[1]); /* the first has one in flight: a second connection */
    send1(e, "ECHO", "c", &a[2]); /* pool_size 2 reached: pipelined on the least busy */
    run_for(e->base, NULL, 100);
    assert_int_equal(e->fake.accepted, 2);
    assert_int_equal(e->fake.commands, 3);
    close_pool(e); /* the answers live on this stack */
    assert_string_equal(a[2].text, "closed");
}

/* ---- timeouts and cancellation --------------------------------------------------------------- */

static void test_a_timed_out_reply_is_discarded_and_the_connection_kept(void **state) {
    struct env *e = *state;
    e->fake.hold = true;
    struct answer slow = {0}, quick = {0}, after = {0};
    send1(e, "ECHO", "first", &slow); /* timeout 1000 ms */
    e->cl.timeout_ms = 100;
    send1(e, "ECHO", "second", &quick);
    run_for(e->base, NULL, 50);
    fake_release(&e->fake, 0, 1); /* the connection answers, but not "second" */
    run_for(e->base, &quick.calls, 1000);
    assert_string_equal(slow.text, "first");
    assert_int_equal(quick.type, 0);
    assert_string_equal(quick.text, "timeout");
    fake_release(&e->fake, 0, -1); /* second's reply comes late */
    e->cl.timeout_ms = 1000;
    e->fake.hold = false;
    send1(e, "ECHO", "third", &after);
    run_for(e->base, &after.calls, 1000);
    assert_string_equal(after.text, "third"); /* not "second": the late reply was dropped */
    assert_int_equal(quick.calls, 1);
    assert_int_equal(e->fake.accepted, 1);
}

static void test_a_connection_silent_since_the_command_was_sent_is_dropped(void **state) {
    struct env *e = *state;
    e->fake.hold = true;
    struct answer waiting = {0}, timed_out = {0}, next = {0};
    send1(e, "ECHO", "a", &waiting); /* 1000 ms */
    e->cl.timeout_ms = 100;
    send1(e, "ECHO", "b", &timed_out);
    run_for(e->base, &timed_out.calls, 1000);
    assert_string_equal(timed_out.text, "timeout");
    assert_int_equal(waiting.calls, 1); /* answered at once: its connection is gone */
    assert_string_equal(waiting.text, "timeout");
    e->fake.hold = false;
    send1(e, "ECHO", "c", &next);
    run_for(e->base, &next.calls, 1000);
    assert_string_equal(next.text, "c");
    assert_int_equal(e->fake.accepted, 2);
}

static void test_a_cancelled_command_is_never_answered(void **state) {
    struct env *e = *state;
    e->fake.hold = true;
    struct answer gone = {0}, kept = {0};
    struct redis_cmd *cmd = send1(e, "ECHO", "gone", &gone);
    send1(e, "ECHO", "kept", &kept);
    run_for(e->base, NULL, 50);
    redis_command_cancel(cmd);
    fake_release(&e->fake, 0, -1);
    run_for(e->base, &kept.calls, 1000);
    assert_int_equal(gone.calls, 0);
    assert_string_equal(kept.text, "kept");
}

static void test_a_refused_connection_is_an_error_not_a_hang(void **state) {
    struct env *e = *state;
    int fd = socket(AF_INET, SOCK_STREAM, 0); /* a port nobody listens on */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    e->cl.port = ntohs(sa.sin_port);
    close(fd);
    struct answer a = {0};
    if (send1(e, "GET", "k", &a)) run_for(e->base, &a.calls, 1000);
    assert_non_null(strstr(a.text, "connect failed"));
}

/* ---- bounds ---------------------------------------------------------------------------------- */

static void test_pending_commands_per_connection_are_bounded(void **state) {
    struct env *e = *state;
    e->fake.hold = true;
    e->cl.timeout_ms = 60000;
    static struct answer a[REDIS_MAX_PENDING + 1];
    memset(a, 0, sizeof a);
    for (int i = 0; i < REDIS_MAX_PENDING; i++)
        assert_non_null(send1(e, "ECHO", "x", &a[i]));
    assert_null(send1(e, "ECHO", "x", &a[REDIS_MAX_PENDING]));
    assert_string_equal(a[REDIS_MAX_PENDING].text, "too many pending commands");
    close_pool(e);
    for (int i = 0; i < REDIS_MAX_PENDING; i++) {
        assert_int_equal(a[i].calls, 1);
        assert_string_equal(a[i].text, "closed");
    }
}

static void test_targets_are_bounded_and_idle_ones_make_room(void **state) {
    struct env *e = *state;
    static struct answer a[REDIS_MAX_TARGETS + 2];
    memset(a, 0, sizeof a);
    char names[REDIS_MAX_TARGETS + 2][16];
    e->fake.hold = true;
    for (int i = 0; i < REDIS_MAX_TARGETS; i++) {
        snprintf(names[i], sizeof names[i], "p%d", i);
        e->cl.pool_name = names[i];
        assert_non_null(send1(e, "ECHO", "x", &a[i]));
    }
    e->cl.pool_name = "one more";
    assert_null(send1(e, "ECHO", "x", &a[REDIS_MAX_TARGETS]));
    assert_string_equal(a[REDIS_MAX_TARGETS].text, "too many redis targets");
    /* once their commands are answered, nobody waits on them: the oldest makes room */
    run_for(e->base, NULL, 200);
    assert_int_equal(e->fake.accepted, REDIS_MAX_TARGETS);
    for (int i = 0; i < e->fake.accepted; i++)
        fake_release(&e->fake, i, -1);
    run_for(e->base, &a[REDIS_MAX_TARGETS - 1].calls, 1000);
    run_for(e->base, NULL, 50);
    e->fake.hold = false;
    assert_non_null(send1(e, "ECHO", "y", &a[REDIS_MAX_TARGETS + 1]));
    run_for(e->base, &a[REDIS_MAX_TARGETS + 1].calls, 1000);
    assert_string_equal(a[REDIS_MAX_TARGETS + 1].text, "y");
}

static void test_a_reply_over_the_limit_drops_the_connection(void **state) {
    struct env *e = *state;
    struct answer a = {0}, b = {0};
    e->fake.canned = "*1000000000\r\n"; /* refused before anything is allocated */
    send1(e, "LRANGE", "k", &a);
    run_for(e->base, &a.calls, 1000);
    assert_non_null(strstr(a.text, "reply too large"));
    e->fake.canned = NULL;
    send1(e, "ECHO", "fine", &b);
    run_for(e->base, &b.calls, 1000);
    assert_string_equal(b.text, "fine");
    assert_int_equal(e->fake.accepted, 2);
}

static void test_auth_and_select_go_first_on_a_new_connection(void **state) {
    struct env *e = *state;
    e->cl.password = "pw";
    e->cl.db = 2;
    struct answer a = {0};
    send1(e, "ECHO", "hi", &a);
    run_for(e->base, &a.calls, 1000);
    assert_string_equal(a.text, "hi");
    assert_int_equal(e->fake.commands, 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commands_that_change_a_shared_connection_are_refused),
        cmocka_unit_test_setup_teardown(
            test_commands_are_pipelined_on_one_connection_and_answered_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_busy_connection_makes_the_next_command_open_another,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_timed_out_reply_is_discarded_and_the_connection_kept,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_connection_silent_since_the_command_was_sent_is_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_cancelled_command_is_never_answered, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_refused_connection_is_an_error_not_a_hang, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pending_commands_per_connection_are_bounded, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_targets_are_bounded_and_idle_ones_make_room, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_reply_over_the_limit_drops_the_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_auth_and_select_go_first_on_a_new_connection, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
