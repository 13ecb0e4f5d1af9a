/* background.c - ferry_start/ferry_stop: a thread that syncs, long-polls the feed for
 * remote changes (ended early by a local commit or a stop), and syncs again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/replica.h"
#include "client/transport.h"
#include "ferry.h"

#define RETRY_FIRST_S 1
#define RETRY_MAX_S 30

/* Sleeps seconds, in short steps so that a stop is noticed at once. */
static void idle(ferry_replica *r, int seconds)
{
    struct timespec step = {0, 50 * 1000000L};
    for (int i = 0; i < seconds * 20 && !r->stop; i++)
        nanosleep(&step, NULL);
}

static void *background(void *arg)
{
    ferry_replica *r = arg;
    int wait_s = RETRY_FIRST_S;
    while (!r->stop) {
        struct ferry_sync_stats s;
        fc_snapshot_local(r);
        int rc = ferry_sync(r, &s);
        if (r->stop)
            break;
        if (r->round_fn)
            r->round_fn(r->round_ctx, rc, &s);
        if (rc == FERRY_CLIENT_OK) {
            wait_s = RETRY_FIRST_S;
            fc_wait_changes(r, s.cursor);
        } else {
            idle(r, wait_s);
            wait_s = wait_s * 2 > RETRY_MAX_S ? RETRY_MAX_S : wait_s * 2;
        }
    }
    return NULL;
}

int ferry_start(ferry_replica *r, ferry_round_fn fn, void *ctx)
{
    if (!r || r->running)
        return r ? fc_fail(r, FERRY_CLIENT_EINVAL, "background mode is already on")
                 : FERRY_CLIENT_EINVAL;
    r->round_fn = fn;
    r->round_ctx = ctx;
    r->stop = 0;
    if (pthread_create(&r->thread, NULL, background, r) != 0)
        return fc_fail(r, FERRY_CLIENT_ELOCAL, "cannot start the background thread");
    r->running = true;
    return FERRY_CLIENT_OK;
}

int ferry_stop(ferry_replica *r)
{
    if (!r || !r->running)
        return FERRY_CLIENT_OK;
    r->stop = 1;
    pthread_join(r->thread, NULL);
    r->running = false;
    r->stop = 0;
    return FERRY_CLIENT_OK;
}
