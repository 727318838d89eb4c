#include "core/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define ACCESS_LOG_BUFFER_LIMIT (4u << 20)

struct access_log_buffer {
    pthread_mutex_t lock;
    char *data;
    size_t len, cap;
    unsigned long dropped;
};

struct access_log {
    int fd;
    bool owns_fd;
    int n_workers;
    struct access_log_buffer *buffers;
    pthread_t writer;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    bool stop;
};

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            log_err("access log write failed: %s", strerror(errno));
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Swaps each worker's buffer for an empty one and writes it out. */
static void flush_buffers(struct access_log *l) {
    for (int i = 0; i < l->n_workers; i++) {
        struct access_log_buffer *b = &l->buffers[i];
        pthread_mutex_lock(&b->lock);
        char *data = b->data;
        size_t len = b->len;
        unsigned long dropped = b->dropped;
        b->data = NULL;
        b->len = b->cap = 0;
        b->dropped = 0;
        pthread_mutex_unlock(&b->lock);
        if (len) write_all(l->fd, data, len);
        free(data);
        if (dropped) log_warn("access log fell behind: %lu lines dropped", dropped);
    }
}

static void *writer_main(void *arg) {
    struct access_log *l = arg;
    pthread_mutex_lock(&l->stop_lock);
    while (!l->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&l->stop_cond, &l->stop_lock, &ts);
        pthread_mutex_unlock(&l->stop_lock);
        flush_buffers(l);
        pthread_mutex_lock(&l->stop_lock);
    }
    pthread_mutex_unlock(&l->stop_lock);
    flush_buffers(l);
    return NULL;
}

struct access_log *access_log_open(const char *path, int n_workers) {
    if (!path) return NULL;
    int fd = 1;
    bool owns = false;
    if (strcmp(path, "-") != 0) {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) return NULL;
        owns = true;
    }
    struct access_log *l = calloc(1, sizeof *l);
    if (!l) abort();
    l->fd = fd;
    l->owns_fd = owns;
    l->n_workers = n_workers;
    l->buffers = calloc((size_t)n_workers, sizeof *l->buffers);
    if (!l->buffers) abort();
    for (int i = 0; i < n_workers; i++)
        pthread_mutex_init(&l->buffers[i].lock, NULL);
    pthread_mutex_init(&l->stop_lock, NULL);
    pthread_cond_init(&l->stop_cond, NULL);
    if (pthread_create(&l->writer, NULL, writer_main, l) != 0) abort();
    return l;
}

void access_log_write(struct access_log *l, int worker, const char *line, size_t len) {
    if (!l) return;
    struct access_log_buffer *b = &l->buffers[worker];
    pthread_mutex_lock(&b->lock);
    if (b->len + len + 1 > ACCESS_LOG_BUFFER_LIMIT) {
        b->dropped++;
    } else {
        if (b->len + len + 1 > b->cap) {
            size_t cap = b->cap ? b->cap * 2 : 16384;
            while (cap < b->len + len + 1)
                cap *= 2;
            b->data = realloc(b->data, cap);
            if (!b->data) abort();
            b->cap = cap;
        }
        memcpy(b->data + b->len, line, len);
        b->data[b->len + len] = '\n';
        b->len += len + 1;
    }
    pthread_mutex_unlock(&b->lock);
}

void access_log_close(struct access_log *l) {
    if (!l) return;
    pthread_mutex_lock(&l->stop_lock);
    l->stop = true;
    pthread_cond_signal(&l->stop_cond);
    pthread_mutex_unlock(&l->stop_lock);
    pthread_join(l->writer, NULL);
    for (int i = 0; i < l->n_workers; i++)
        pthread_mutex_destroy(&l->buffers[i].lock);
    free(l->buffers);
    if (l->owns_fd) close(l->fd);
    pthread_mutex_destroy(&l->stop_lock);
    pthread_cond_destroy(&l->stop_cond);
    free(l);
}
