/* pull.h - the pages of one pull, fetched ahead: each page is requested in a thread on a
 * connection of its own as soon as the cursor it starts from is known (read from the end
 * of the previous page's text, before that text is parsed), and parsed there, so the
 * server's work, the parsing and the applying of three pages overlap. At most
 * PULL_AHEAD pages wait beyond the one being applied. */
#ifndef FERRY_CLIENT_PULL_H
#define FERRY_CLIENT_PULL_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "client/page.h"
#include "client/replica.h"

#define PULL_AHEAD 2

struct pull;

/* Starts fetching the pages from cursor (resync: includeOwn, as from 0). NULL when no
 * connection could be made (the reason recorded on r). */
struct pull *pull_start(ferry_replica *r, int64_t cursor, bool resync);

/* The next page in order: FERRY_CLIENT_OK with *status and, the caller's, *page (a 200's
 * page) or *answer (another status's answer; NULL when it had no JSON), or the failure
 * (recorded on r). */
int pull_next(struct pull *p, long *status, json_t **answer, struct fc_page **page);

/* Whether the page pull_next gives next is here (or pull_next would not wait for it),
 * after waiting up to wait_ms for it. */
bool pull_ready(struct pull *p, int wait_ms);

/* Says the page pull_next gave last was applied, so fetching may run further ahead, and
 * frees it. */
void pull_applied(struct pull *p, struct fc_page *page);

/* Stops the fetches under way, waits for their threads and frees p. NULL is allowed. */
void pull_end(struct pull *p);

#endif
