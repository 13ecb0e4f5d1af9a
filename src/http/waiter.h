/* waiter.h - long-polls: requests parked (MHD-suspended) until the change log moves or
 * their deadline passes; a request says what it waits for (wake keys, sync/watch.h) and
 * a move of the log that carries none of them leaves it parked. The change watcher calls
 * waiter_changed and waiter_tick; a woken request runs its handler again. */
#ifndef FERRY_WAITER_H
#define FERRY_WAITER_H

#include <stdbool.h>
#include <stdint.h>

#include "http/http.h"

/* The parked requests; the app opens one and holds it. */
struct waiter;
struct waiter *waiter_open(void);
/* Frees it (after waiter_release_all and the server's stop); NULL does nothing. */
void waiter_close(struct waiter *w);

/* Parks req (the server calls this when a handler asked to wait). seen_head is the
 * newest seq the handler saw: when the log has already moved past it, req is woken at
 * once, so no change slips between the handler's read and the park. */
void waiter_park(struct waiter *w, struct request *req, int64_t seen_head);

/* What req waits for, before it is parked: keys (up to HTTP_WAIT_KEYS; more, or none,
 * and every move of the log wakes it). */
void waiter_wait_keys(struct request *req, const uint64_t *keys, size_t n_keys);

/* The log moved to head: wake the parked requests that wait for one of keys (sorted), or
 * every one when keys is NULL. */
void waiter_changed(struct waiter *w, int64_t head, const uint64_t *keys, size_t n_keys);

/* Wakes parked requests whose deadline has passed, marking them expired. */
void waiter_tick(struct waiter *w);

/* Wakes every parked request as expired, and from now on wakes a request at once
 * instead of parking it (shutdown). */
void waiter_release_all(struct waiter *w);

#endif
