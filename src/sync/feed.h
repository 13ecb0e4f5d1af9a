/* feed.h - the change feed: the latest state of every row changed since a cursor, in
 * seq order, with row data read from the live tables (tombstones carry the key only). */
#ifndef FERRY_FEED_H
#define FERRY_FEED_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "files/filescope.h"
#include "sync/feedshare.h"
#include "sync/tables.h"
#include "util/buf.h"

struct feed_query {
    const struct synced_table *const *tables; /* which tables, in any order */
    size_t n_tables;
    int64_t cursor; /* changes with seq > cursor */
    int limit;
    /* Once the changes written reach this many bytes, the page ends at the next change
     * (hasMore as if the limit were reached). 0: no budget. */
    size_t max_bytes;
    const char *exclude_device; /* leave out this device's own changes; NULL: keep all */
    /* Whose feed: rows of tables with an owner or claim rule narrowed to the caller's
     * scope value, rows that left it shown as deletes. NULL: every row (admins). */
    const struct rules_caller *caller;
    /* The device reading, whose pending resync (feed_resync_check) is checked; NULL: none. */
    const char *device_id;
    /* The files the reader may see in the files namespace (files/filescope.h); NULL:
     * every file. */
    const struct filescope *files;
    /* Pages shared between identical reads (sync/feedshare.h): a page another reader read
     * at a head >= share_head may answer this one, and this one's is offered to others.
     * NULL: the read is this caller's own. */
    struct feedshare *share;
    int64_t share_head;
    /* The read follows a move of the log that woke it (a long-poll): it skips the check
     * for other programs' pending entries (feed_read_text). */
    bool woken;
};

struct feed_page {
    json_t *changes;     /* array of change objects, owned */
    int64_t next_cursor; /* where the next request starts */
    bool has_more;
    int64_t head; /* the newest seq in the database at read time */
};

/* A page written as JSON text straight from the rows (util/jsonw.h), into buffers the
 * caller owns and may have started: the change objects as feed_read gives them, or
 * cloud-sync-api's grouping by table. */
enum feed_shape {
    FEED_CHANGES,  /* change objects, comma-separated, appended to *changes */
    FEED_BY_TABLE, /* per table i of the query: its rows' data appended to data[i] (null for
                      a row that is gone), the keys of deleted rows to deleted[i]; each a
                      comma-separated list */
};

struct feed_text {
    enum feed_shape shape;
    struct buf *changes;        /* FEED_CHANGES */
    struct buf *data, *deleted; /* FEED_BY_TABLE: q->n_tables buffers each */
    size_t n;                   /* changes written */
    int64_t next_cursor;
    bool has_more;
    int64_t head;
};

/* feed_read, writing the page into out's buffers; out's counts and cursors are set.
 * On failure the buffers may hold part of a page. */
int feed_read_text(struct store_conn *c, const struct feed_query *q, struct feed_text *out,
                   struct err *err);

/* A page written while it is sent: feed_stream_open reads as feed_read_text does up to
 * the first row (its errors are feed_read's), then each feed_stream_next appends changes
 * (comma-separated, as FEED_CHANGES) to changes until it grew by want bytes: 1 while more
 * may follow, 0 once the page is whole (feed_stream_page then gives its counts and
 * cursor), -1 on failure (*err says why; what was written is not a whole page). The
 * stream holds c and its read snapshot until feed_stream_free (the caller releases c
 * after). On an open that fails the caller still frees *out. Never shared (q->share). */
struct feed_stream;
int feed_stream_open(struct store_conn *c, const struct feed_query *q, struct feed_stream **out,
                     struct err *err);
int feed_stream_next(struct feed_stream *fs, struct buf *changes, size_t want, struct err *err);
/* feed_stream_open for cloud-sync-api's grouping (FEED_BY_TABLE, no byte budget): its
 * feed_stream_next calls write {table: [rows], ...}, then between, then {table: [keys],
 * ...}, in q->tables' order, each list as feed_read_text's data[i] and deleted[i]. The
 * page's end is found when it opens (one walk over the log alone), and the rows are read
 * per table in the same snapshot. */
int feed_stream_by_table(struct store_conn *c, const struct feed_query *q, const char *between,
                         struct feed_stream **out, struct err *err);
const struct feed_text *feed_stream_page(const struct feed_stream *fs);
void feed_stream_free(struct feed_stream *fs);

/* Reads one page in one snapshot. ERR_INVALID for a cursor from the future; ERR_GONE
 * when cursor > 0 is older than the tombstone purge horizon, or the device has a resync
 * pending (its rules or attributes changed) and reads from below its resync point: it
 * must resync from 0, which clears the pending resync. The caller frees page->changes. */
int feed_read(struct store_conn *c, const struct feed_query *q, struct feed_page *page,
              struct err *err);

/* The purge horizon: the highest seq of a purged tombstone (0 before any purge). */
int feed_horizon(struct store_conn *c, int64_t *horizon, struct err *err);

/* The newest seq (0 for an empty log). */
int feed_head(struct store_conn *c, int64_t *head, struct err *err);

/* Parses a cursor given as text: a decimal seq >= 0. */
int feed_parse_cursor(const char *text, int64_t *cursor, struct err *err);

/* One row's current data as a JSON object (NULL when the row does not exist). */
int feed_row(struct store_conn *c, const struct synced_table *t, const char *pk, json_t **out,
             struct err *err);

#endif
