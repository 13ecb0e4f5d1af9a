/* watch.c - see watch.h. On PostgreSQL the watcher is also where changes are promoted
 * (promote.h) when a NOTIFY says another program or node committed some. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "sync/feed.h"
#include "sync/promote.h"
#include "sync/watch.h"
#include "util/timeutil.h"

#define POLL_MS 20         /* SQLite: how often the counter is read */
#define LISTEN_WAIT_MS 100 /* PostgreSQL: longest wait for a NOTIFY before a read */
#define RETRY_MS 500       /* after a database error */
#define PROMOTE_EVERY_MS 50

struct watch {
    pthread_t thread;
    atomic_bool stop;
    struct store *st;
    void (*on_change)(void *ctx, int64_t head);
    void (*on_tick)(void *ctx);
    void *ctx;
};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Runs until stopped or until the connection fails (then the caller reconnects). */
static void watch_on(struct watch *w, struct store_conn *c, int64_t *last)
{
    struct err err = {0};
    bool listening = store_listen(c, "ferry_changes", &err) == FERRY_OK;
    int64_t promoted_at = 0;
    while (!atomic_load(&w->stop)) {
        int64_t head = 0;
        if (listening) {
            if (store_wait_notify(c, LISTEN_WAIT_MS, &err) < 0)
                return;
        } else {
            sleep_ms(POLL_MS);
        }
        /* Number what other programs committed since (promote.h) before reading the
         * head, so the waiters woken below find the changes that woke them. Pushes number
         * their own, and under a stream of them the check would run per NOTIFY: at most
         * every PROMOTE_EVERY_MS (a change it leaves wakes the waiters one loop later). */
        int64_t now = time_mono_us();
        if (now - promoted_at >= PROMOTE_EVERY_MS * 1000) {
            promoted_at = now;
            if (promote_pending(c, &err) != FERRY_OK)
                return;
        }
        if (feed_head(c, &head, &err) != FERRY_OK)
            return;
        if (head != *last) {
            *last = head;
            w->on_change(w->ctx, head);
        }
        w->on_tick(w->ctx);
    }
}

static void *watch_main(void *arg)
{
    struct watch *w = arg;
    int64_t last = -1;
    while (!atomic_load(&w->stop)) {
        struct store_conn *c = NULL;
        struct err err = {0};
        if (store_acquire(w->st, &c, &err) == FERRY_OK) {
            watch_on(w, c, &last);
            /* The connection goes back to the pool: it must not keep collecting
             * notifications nobody reads (a broken one is reopened anyway). */
            if (store_conn_dialect(c) == STORE_POSTGRES)
                store_exec(c, "UNLISTEN *", &err);
        }
        store_release(c);
        if (!atomic_load(&w->stop)) {
            w->on_tick(w->ctx);
            sleep_ms(RETRY_MS);
        }
    }
    return NULL;
}

int watch_start(struct store *st, void (*on_change)(void *ctx, int64_t head),
                void (*on_tick)(void *ctx), void *ctx, struct watch **out, struct err *err)
{
    struct watch *w = xcalloc(1, sizeof(*w));
    w->st = st;
    w->on_change = on_change;
    w->on_tick = on_tick;
    w->ctx = ctx;
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        free(w);
        return err_set(err, ERR_INTERNAL, "cannot start the change watcher");
    }
    *out = w;
    return FERRY_OK;
}

void watch_stop(struct watch *w)
{
    if (!w)
        return;
    atomic_store(&w->stop, true);
    pthread_join(w->thread, NULL);
    free(w);
}
