/* watch.h - a background thread that notices new changes in the log, whoever made them
 * (this node, another node, another program), and tells a callback. On PostgreSQL it
 * LISTENs for the capture trigger's NOTIFY; on SQLite, where no notification crosses
 * processes, it polls the one-row seq counter, which costs a page read. */
#ifndef FERRY_WATCH_H
#define FERRY_WATCH_H

#include <stdint.h>

#include "ferry.h"
#include "store/store.h"

struct watch;

/* on_change(ctx, head) runs on the watch thread when the newest seq moves; on_tick(ctx)
 * runs after every wait (a few times a second at least), for deadlines. */
int watch_start(struct store *st, void (*on_change)(void *ctx, int64_t head),
                void (*on_tick)(void *ctx), void *ctx, struct watch **out, struct err *err);
/* Stops and joins the thread. watch_stop(NULL) does nothing. */
void watch_stop(struct watch *w);

#endif
