/* feedshare.h - feed pages shared by identical reads: when a change wakes many long-polls
 * that ask the same question (the same statement and parameters: tables, scope, cursor,
 * limit), the first to run reads and writes the page and the others are answered from
 * its text. A page is kept with the head it was read at and handed only to a reader that
 * needs no newer one (feed_query.share_head). */
#ifndef FERRY_FEEDSHARE_H
#define FERRY_FEEDSHARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* One page's text (the comma-separated change objects) and what the feed says of it. */
struct feedshare_page {
    const char *text;
    size_t len;
    size_t n;
    int64_t next_cursor;
    bool has_more;
    int64_t head;
};

struct feedshare;

/* A table of recent pages (a few dozen, small ones only); the app opens one and holds
 * it. Safe to use from any thread. */
struct feedshare *feedshare_new(void);
/* Frees it; NULL does nothing. */
void feedshare_free(struct feedshare *s);

/* When a page for key read at a head >= min_head is kept, appends its text to out, fills
 * *page (page->text then points into out) and returns true. */
bool feedshare_get(struct feedshare *s, const char *key, size_t key_len, int64_t min_head,
                   struct buf *out, struct feedshare_page *page);

/* Keeps a copy of page for key (replacing an older page of the same slot; too large a
 * page is not kept). */
void feedshare_put(struct feedshare *s, const char *key, size_t key_len,
                   const struct feedshare_page *page);

#endif
