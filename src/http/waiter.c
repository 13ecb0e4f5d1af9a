/* waiter.c - see waiter.h. The parked list (one entry per open long-poll) is guarded by
 * one mutex, which also guards the last head seen, so parking and waking cannot cross.
 * Each entry keeps what the scans need beside the request (its deadline, a 128-bit summary
 * of its wake keys), so that a scan of 10,000 entries reads one small array instead of
 * 10,000 scattered requests. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "http/waiter.h"
#include "util/timeutil.h"

/* Two bits per wake key, one in each word, from different bits of the mixed key: a move
 * whose keys share a bit with a request's in both words is checked key by key: about one
 * in 200 of the requests it does not concern (bench/http/longpoll.sh), where one word of
 * unmixed bits let one in ten through. */
struct summary {
    uint64_t a, b;
};

struct parked {
    struct request *req;
    int64_t deadline;       /* req->wait_deadline */
    struct summary summary; /* of its wake keys; every bit: woken by any move */
};

struct waiter {
    pthread_mutex_t lock;
    struct parked *parked;
    size_t n, cap;
    int64_t head;
    int64_t peeked_ms; /* when the parked sockets were last checked for a gone client */
    bool stopping;     /* after waiter_release_all: nothing parks any more */
};

struct waiter *waiter_open(void)
{
    struct waiter *w = xcalloc(1, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
    w->head = -1;
    return w;
}

void waiter_close(struct waiter *w)
{
    if (!w)
        return;
    pthread_mutex_destroy(&w->lock);
    free(w->parked);
    free(w);
}

static void wake(struct request *req, bool expired)
{
    req->wait_expired = expired;
    MHD_resume_connection(req->conn);
}

/* A move whose keys share no bit with a request's cannot concern it. The keys are FNV-1a
 * hashes (sync/watch.c), whose high bits barely change with the last bytes ("u1", "u2"...):
 * they are mixed first (MurmurHash3's finalizer). */
static struct summary summary_of(const uint64_t *keys, size_t n_keys)
{
    struct summary s = {0, 0};
    if (!keys)
        return (struct summary){UINT64_MAX, UINT64_MAX};
    for (size_t i = 0; i < n_keys; i++) {
        uint64_t x = keys[i];
        x = (x ^ (x >> 33)) * 0xff51afd7ed558ccdULL;
        x = (x ^ (x >> 33)) * 0xc4ceb9fe1a85ec53ULL;
        x ^= x >> 33;
        s.a |= 1ULL << (x >> 58);
        s.b |= 1ULL << (x & 63);
    }
    return s;
}

static bool overlaps(struct summary x, struct summary y)
{
    return (x.a & y.a) && (x.b & y.b);
}

void waiter_park(struct waiter *w, struct request *req, int64_t seen_head)
{
    MHD_suspend_connection(req->conn);
    pthread_mutex_lock(&w->lock);
    if (w->stopping || w->head > seen_head || time_now_ms() >= req->wait_deadline) {
        bool expired = w->stopping || time_now_ms() >= req->wait_deadline;
        if (!expired)
            req->woke_head = w->head;
        pthread_mutex_unlock(&w->lock);
        wake(req, expired);
        return;
    }
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 16;
        w->parked = xrealloc(w->parked, w->cap * sizeof(*w->parked));
    }
    w->parked[w->n++] =
        (struct parked){req, req->wait_deadline,
                        summary_of(req->n_wait_keys ? req->wait_keys : NULL, req->n_wait_keys)};
    pthread_mutex_unlock(&w->lock);
}

/* How often parked sockets are checked for clients that went away. */
#define PEEK_INTERVAL_MS 1000

/* Whether the client of a parked request has closed its end. MHD does not watch a
 * suspended connection, so without this an abandoned long-poll holds its connection
 * slot (and counts against its address) until its deadline. */
static bool client_gone(struct request *req)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    char byte;
    if (!info)
        return false;
    ssize_t n = recv(info->connect_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Wakes the parked requests that match (all, or those past their deadline, or whose
 * client is gone, checked once a PEEK_INTERVAL_MS). */
static void wake_where(struct waiter *w, bool all, bool expired_flag)
{
    int64_t now = time_now_ms();
    pthread_mutex_lock(&w->lock);
    bool peek = !all && now - w->peeked_ms >= PEEK_INTERVAL_MS;
    if (peek)
        w->peeked_ms = now;
    size_t kept = 0;
    for (size_t i = 0; i < w->n; i++) {
        struct parked *p = &w->parked[i];
        bool due = now >= p->deadline || (peek && client_gone(p->req));
        if (all || due)
            wake(p->req, expired_flag || due);
        else
            w->parked[kept++] = *p;
    }
    w->n = kept;
    pthread_mutex_unlock(&w->lock);
}

static int by_head(const void *a, const void *b)
{
    int64_t x = (*(struct request *const *)a)->wait_head;
    int64_t y = (*(struct request *const *)b)->wait_head;
    return (x > y) - (x < y);
}

void waiter_wait_keys(struct request *req, const uint64_t *keys, size_t n_keys)
{
    req->n_wait_keys = n_keys <= HTTP_WAIT_KEYS ? n_keys : 0;
    memcpy(req->wait_keys, keys, req->n_wait_keys * sizeof(*keys));
}

static bool has_key(const uint64_t *keys, size_t n, uint64_t key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (keys[mid] == key)
            return true;
        if (keys[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Whether a move with keys (NULL: unknown) concerns req. */
static bool concerns(const struct request *req, const uint64_t *keys, size_t n_keys)
{
    if (!keys || req->n_wait_keys == 0)
        return true;
    for (size_t i = 0; i < req->n_wait_keys; i++)
        if (has_key(keys, n_keys, req->wait_keys[i]))
            return true;
    return false;
}

void waiter_changed(struct waiter *w, int64_t head, const uint64_t *keys, size_t n_keys)
{
    size_t kept = 0, n_woken = 0;
    struct request **woken = NULL;
    struct summary summary = summary_of(keys, n_keys);
    pthread_mutex_lock(&w->lock);
    /* Moves come from the watcher and from writers (watch_wake), not in order: the head
     * never goes back, or a request parking after a newer move would miss it. */
    if (head > w->head)
        w->head = head;
    /* The concerned requests leave the list; the rest stay parked, in their order. A
     * request that read at head or later has seen the move already (a writer woke it, it
     * answered and parked again before the watcher told the same move). */
    for (size_t i = 0; i < w->n; i++) {
        struct request *req = w->parked[i].req;
        if (!overlaps(w->parked[i].summary, summary) || (keys && req->wait_head >= head) ||
            !concerns(req, keys, n_keys)) {
            w->parked[kept++] = w->parked[i];
            continue;
        }
        if (!woken)
            woken = xmalloc((w->n - i) * sizeof(*woken));
        req->woke_head = head;
        woken[n_woken++] = req;
    }
    w->n = kept;
    /* in the order of what they saw, so that readers of one page run together and the
     * first one's page (sync/feedshare.h) answers the rest */
    if (n_woken > 1)
        qsort(woken, n_woken, sizeof(*woken), by_head);
    for (size_t i = 0; i < n_woken; i++)
        wake(woken[i], false);
    pthread_mutex_unlock(&w->lock);
    free(woken);
}

void waiter_tick(struct waiter *w)
{
    wake_where(w, false, false);
}

void waiter_release_all(struct waiter *w)
{
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_mutex_unlock(&w->lock);
    wake_where(w, true, true);
}
