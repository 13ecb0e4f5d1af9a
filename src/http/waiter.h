/* waiter.h - long-polls: requests parked (MHD-suspended) until the change log moves or
 * their deadline passes. The change watcher calls waiter_changed and waiter_tick; a
 * woken request runs its handler again. */
#ifndef FERRY_WAITER_H
#define FERRY_WAITER_H

#include <stdbool.h>
#include <stdint.h>

#include "http/http.h"

/* Parks req (the server calls this when a handler asked to wait). seen_head is the
 * newest seq the handler saw: when the log has already moved past it, req is woken at
 * once, so no change slips between the handler's read and the park. */
void waiter_park(struct request *req, int64_t seen_head);

/* The log moved to head: wake every parked request. */
void waiter_changed(int64_t head);

/* Wakes parked requests whose deadline has passed, marking them expired. */
void waiter_tick(void);

/* Wakes every parked request as expired, and from now on wakes a request at once
 * instead of parking it (shutdown). */
void waiter_release_all(void);

#endif
