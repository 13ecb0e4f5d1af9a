/* replica.h - libferry's state (struct ferry_replica) and the local side of a replica:
 * libferry's own tables, the synced tables and their capture triggers, the outbox, and
 * applying remote changes without capturing them again. */
#ifndef FERRY_CLIENT_REPLICA_H
#define FERRY_CLIENT_REPLICA_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sqlite3.h>

#include "ferry/client.h"

/* Connections the pull fetches ahead on (pull.c: one per page in flight). */
#define FC_PEERS 3
/* Changes asked for per page by default (streamed pages, pull.c): larger pages cost the
 * same instructions (callgrind: 2.873 G at 1,000, 2.880 G at 10,000 per 100,000 rows)
 * and the first one takes longer to arrive. */
#define FC_PAGE_SIZE 1000

struct fc_column {
    char *name, *quoted;
    char *type; /* the server's label: integer, real, numeric, boolean, text, ..., blob */
};

struct fc_table {
    char *name, *quoted;
    struct fc_column *cols;
    int n_cols;
    int pk; /* index of the primary-key column */
};

struct ferry_replica {
    sqlite3 *db;
    CURL *curl;
    char *url, *token, *ca_file, *device_id;
    long timeout_ms;
    int max_attempts, batch_size, page_size;
    char *replica_id; /* a random id of this replica, the prefix of its batch ids */
    struct fc_table *tables;
    int n_tables;
    char error[512];
    int poll_s;
    /* statements of the per-row hot path, prepared once (the pull applies many rows) */
    sqlite3_stmt *st_pending, *st_version, *st_any;
    sqlite3_stmt **st_upsert, **st_delete; /* per table: a whole row, a key */
    ferry_conflict_fn conflict_fn;
    void *conflict_ctx;
    ferry_sync_progress_fn progress_fn;
    void *progress_ctx;
    _Atomic int cancel;    /* the progress handler asked to stop the call under way */
    int64_t pushed_before; /* ferry_sync's pushes, for the progress of its pull */
    /* background mode (background.c) */
    pthread_t thread;
    bool running;
    ferry_round_fn round_fn;
    void *round_ctx;
    _Atomic int stop;     /* asks every exchange and wait to give up */
    bool watch_local;     /* a long poll also ends on a local commit */
    int64_t data_version; /* PRAGMA data_version when the long poll began */
    int64_t checked_ms;   /* when it was last compared */
    /* The pull fetches and parses pages ahead on connections of their own, in threads,
     * while this one applies the page it has (pull.c): peers are those connections (no
     * replica file), owner the handle a peer belongs to (whose stop it obeys). */
    struct ferry_replica *peers[FC_PEERS], *owner;
    /* Called by fc_http with a 200 answer's text before it is parsed (pull.c's hook);
     * true: the hook took the answer over (read it as a page), fc_http parses nothing. */
    bool (*on_answer)(void *ctx, const char *body, size_t len);
    bool plain_pages; /* the server refused streamed pages (pull.c); atomic */
    void *on_answer_ctx;
    /* asked often during an exchange or a back-off (ferry_mirror_wait): non-zero stops */
    int (*stop_fn)(void *ctx);
    void *stop_ctx;
};

/* Whether r (or the handle it belongs to) was asked to stop. */
static inline bool fc_stopping(const ferry_replica *r)
{
    return r->stop || r->cancel || (r->owner && (r->owner->stop || r->owner->cancel)) ||
           (r->stop_fn && r->stop_fn(r->stop_ctx));
}

/* A handle without a replica (for single requests): options taken, libcurl ready; *rc
 * says whether that worked (the handle is returned either way, for its error). */
ferry_replica *fc_bare_open(const struct ferry_client_options *opts, int *rc);

/* r's extra connection number i (< FC_PEERS), made on first use; NULL and the reason
 * recorded on failure. */
ferry_replica *fc_peer(ferry_replica *r, int i);

/* path with each segment percent-encoded, the slashes kept (the caller frees it). */
char *fc_escape_path(CURL *c, const char *path);

/* Downloads the file at path (size bytes, SHA-256 sha in hex) into part, resuming what
 * part holds, and checks the SHA-256 (download.c). FERRY_CLIENT_ESERVER when the server no
 * longer has that content (404, another SHA-256: part is then dropped or useless). */
int fc_fetch_file(ferry_replica *r, const char *path, const char *part, const char *sha,
                  int64_t size, ferry_progress_fn fn, void *ctx);

/* Records a failure on r and returns status. */
int fc_fail(ferry_replica *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Runs SQL on the replica; FERRY_CLIENT_ELOCAL with the reason on failure. */
int fc_exec(ferry_replica *r, const char *sql);

/* Sets the replica up from the server's schema answer ({"tables":[...]}): libferry's
 * tables, the synced tables (created when missing, checked otherwise) and triggers. */
int fc_replica_setup(ferry_replica *r, json_t *schema);

/* Drops the capture triggers of every synced table, and makes them again. Only inside
 * libferry's own write transaction (which no other connection sees, and whose writes
 * the triggers would skip anyway): a bulk load then costs no trigger check per row. */
int fc_capture_off(ferry_replica *r);
int fc_capture_on(ferry_replica *r);

const struct fc_table *fc_table_find(const ferry_replica *r, const char *name);

/* Binds the key text (as the feed gives it) as the key column's type. */
void fc_bind_key(sqlite3_stmt *st, int idx, const struct fc_table *t, const char *key);

/* The row of t whose key is key as a JSON object of its columns, or NULL when there is
 * none (*status says whether reading failed). */
json_t *fc_row_json(ferry_replica *r, const struct fc_table *t, const char *key, int *status);

/* Writes a remote row (an upsert of data) or removes it (data NULL), capture off. */
int fc_apply_row(ferry_replica *r, const struct fc_table *t, const char *key, json_t *data);

struct fc_page;
struct fc_change;

/* The same for a change of a page (c NULL: a delete), bound straight from the page. */
int fc_apply_change(ferry_replica *r, const struct fc_table *t, const char *key,
                    const struct fc_page *pg, const struct fc_change *c);

/* Reads and writes libferry's one-row state: the cursor and the resync flag. */
int fc_state_get(ferry_replica *r, const char *column, int64_t *value);
int fc_state_set(ferry_replica *r, const char *column, int64_t value);

/* The statement in *slot, prepared from sql the first time and reset for reuse (NULL
 * and the reason recorded on failure). */
sqlite3_stmt *fc_cached(ferry_replica *r, sqlite3_stmt **slot, const char *sql);

/* Steps a cached statement to its end and resets it. */
int fc_step_reset(ferry_replica *r, sqlite3_stmt *st);

/* Finalizes the cached statements. */
void fc_cache_free(ferry_replica *r);

/* Prepares sql (NULL and the reason recorded on failure). */
sqlite3_stmt *fc_prepare(ferry_replica *r, const char *sql);

/* Runs st (bound by the caller; NULL: a failed prepare) to its end and finalizes it. */
int fc_finish(ferry_replica *r, sqlite3_stmt *st);

/* Runs sql with up to two text parameters (NULL: not bound). */
int fc_run_text(ferry_replica *r, const char *sql, const char *a, const char *b);

/* Records the server's version of a row, the base_version of its next push. */
int fc_set_version(ferry_replica *r, const char *tbl, const char *pk, int64_t version);

/* Whether the row has local changes in the outbox. */
bool fc_has_pending(ferry_replica *r, const char *tbl, const char *pk);

/* Whether the outbox has any entry (true when that cannot be read). */
bool fc_outbox_any(ferry_replica *r);

/* Runs body(r, ctx) in one write transaction with capture off. */
int fc_in_apply_txn(ferry_replica *r, int (*body)(ferry_replica *, void *), void *ctx);

/* Ends a transaction of applied changes (its "applying" mark set): clears the mark and
 * commits when rc is FERRY_CLIENT_OK, else (or when that fails) rolls back; returns the
 * outcome. */
int fc_apply_end(ferry_replica *r, int rc);

/* Calls the conflict handler for the conflicts not yet delivered (conflicts.c). */
int fc_deliver_conflicts(ferry_replica *r);

/* Tells the progress handler (when set) how far the call is; a stop it asks for is
 * noted in r->cancel. */
void fc_progress(ferry_replica *r, const struct ferry_sync_stats *stats);

/* Pushes the outbox in batches (push.c). */
int fc_push_all(ferry_replica *r, struct ferry_sync_stats *stats);

#endif
