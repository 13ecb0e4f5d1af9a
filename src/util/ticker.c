/* ticker.c - see ticker.h. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "util/ticker.h"
#include "util/timeutil.h"

struct ticker {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_bool stop;
    int64_t interval_s;
    void (*fn)(struct ticker *t, void *ctx);
    void *ctx;
};

static void *ticker_main(void *arg)
{
    struct ticker *t = arg;
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        struct timespec until = time_after_ms(CLOCK_REALTIME, t->interval_s * 1000);
        while (!t->stop && pthread_cond_timedwait(&t->wake, &t->lock, &until) == 0)
            ;
        if (t->stop)
            break;
        pthread_mutex_unlock(&t->lock);
        t->fn(t, t->ctx);
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

int ticker_start(const char *name, int64_t interval_s, void (*fn)(struct ticker *t, void *ctx),
                 void *ctx, struct ticker **out, struct err *err)
{
    *out = NULL;
    if (interval_s <= 0)
        return FERRY_OK;
    struct ticker *t = xcalloc(1, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->wake, NULL);
    t->interval_s = interval_s;
    t->fn = fn;
    t->ctx = ctx;
    if (pthread_create(&t->thread, NULL, ticker_main, t) != 0) {
        pthread_mutex_destroy(&t->lock);
        pthread_cond_destroy(&t->wake);
        free(t);
        return err_set(err, ERR_INTERNAL, "cannot start the %s thread", name);
    }
    *out = t;
    return FERRY_OK;
}

bool ticker_stopping(struct ticker *t)
{
    return atomic_load(&t->stop);
}

void ticker_stop(struct ticker *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stop = true;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->wake);
    free(t);
}
