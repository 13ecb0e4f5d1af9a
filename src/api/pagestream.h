/* pagestream.h - a feed page sent while it is read (sync/feed.h's streams), for the
 * surfaces that stream pages (Pinakes changes, cloud-sync-api pull): the stream's place
 * among the store connections, its parts and its end. */
#ifndef FERRY_API_PAGESTREAM_H
#define FERRY_API_PAGESTREAM_H

#include <stdbool.h>

#include "app.h"
#include "http/http.h"
#include "sync/feed.h"
#include "util/buf.h"

/* A streamed page may be this long: it is written to the socket as its rows are read,
 * PAGESTREAM_CHUNK bytes at a time, so it is never whole in memory. */
#define PAGESTREAM_MAX_LIMIT 100000
#define PAGESTREAM_CHUNK (64 * 1024)

/* A streamed page holds a store connection for as long as its client takes to read it,
 * so at most half the pool is held by streams: slow readers cannot take every
 * connection. pagestream_take takes a place (false: none free; the caller answers a
 * plain page); pagestream_give gives back one taken for a page that did not stream (a
 * stream that did gives its own back when it ends). */
bool pagestream_take(struct app *app);
void pagestream_give(struct app *app);

/* Writes the end of the answer after the page's text. */
typedef void pagestream_tail_fn(struct buf *out, const struct feed_text *page);

/* Sends the page of fs (opened on req->db; taken, also on failure): its first
 * PAGESTREAM_CHUNK bytes appended to text, and when more follow, the whole answer (text,
 * the rest as it is read, tail) sent as a stream that takes req->db and the place taken,
 * *streamed set. Otherwise the page is whole in text (the caller appends the tail and
 * replies) and *page holds its counts. A failure after the first byte closes the
 * connection (a cut answer is never valid JSON); one before is the caller's error. */
int pagestream_send(struct request *req, struct feed_stream *fs, struct buf *text,
                    pagestream_tail_fn *tail, struct feed_text *page, bool *streamed,
                    struct err *err);

#endif
