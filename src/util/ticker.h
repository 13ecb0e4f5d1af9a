/* ticker.h - a background thread that runs a function every interval until stopped: the
 * purger and the site healer. Stopping wakes the thread at once and waits for a run in
 * progress to end; the function can ask ticker_stopping() to end a long run early. */
#ifndef FERRY_TICKER_H
#define FERRY_TICKER_H

#include <stdbool.h>
#include <stdint.h>

#include "ferry.h"

struct ticker;

/* Runs fn(ctx) every interval_s seconds, the first time after one interval. *out is NULL
 * (and nothing runs) when interval_s <= 0. name is for the error message. */
int ticker_start(const char *name, int64_t interval_s, void (*fn)(struct ticker *t, void *ctx),
                 void *ctx, struct ticker **out, struct err *err);

/* Whether ticker_stop has been called (for fn, between steps of a long run). */
bool ticker_stopping(struct ticker *t);

/* Stops and frees the ticker; ticker_stop(NULL) does nothing. */
void ticker_stop(struct ticker *t);

#endif
