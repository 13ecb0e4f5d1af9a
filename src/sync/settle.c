/* settle.c - see settle.h. Each check is one round trip: the head, the newest committed
 * entry and the newest mark's seq, read in one snapshot. */
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "sync/settle.h"
#include "util/log.h"
#include "util/timeutil.h"

#define STEP_SQL                                                                                   \
    "SELECT COALESCE(" SETTLE_HEAD_PG ", 0), (SELECT MAX(seq) FROM ferry_changes),"                \
    " (SELECT s FROM ferry_marks ORDER BY x DESC LIMIT 1)"

/* The old marks go: each reader takes the newest mark its snapshot has passed, and a
 * snapshot taken from now on has passed the one this statement's snapshot has by its
 * plain xmin (the cluster's oldest running transaction, which never moves back; the
 * head's own test, SETTLE_XMIN_PG, passes over other databases' and so lies at or above
 * it, but may count one again that has ended meanwhile). */
#define PRUNE_SQL                                                                                  \
    "DELETE FROM ferry_marks WHERE x < (SELECT x FROM ferry_marks WHERE x <="                      \
    " pg_snapshot_xmin(pg_current_snapshot())::text::bigint ORDER BY x DESC LIMIT 1)"

#define PRUNE_EVERY_US (2 * 1000 * 1000)
/* The checks while waiting: soon at first (the transactions in the way are mostly pushes
 * a few milliseconds from their commit), then less often, so that a long transaction in
 * the way costs each waiting request a dozen checks, not hundreds. */
#define POLL_FIRST_US 200
#define POLL_MAX_US 8000
/* At most this many waits at once in a process: each holds a worker thread and a
 * connection, and a transaction left open makes every read and push wait its full time,
 * so cheap requests could tie up all of them. The others answer the head reached, which
 * is always safe (a later read brings the rest). */
#define WAITERS_MAX 4

static _Atomic int waiters;

struct step {
    int64_t head, top, marked; /* marked: the newest mark's seq */
};

static int read_step(struct store_conn *c, struct step *s, struct err *err)
{
    struct store_rows *rows = NULL;
    int rc = store_query(c, STEP_SQL, NULL, 0, &rows, err);
    int more = rc == FERRY_OK ? store_rows_next(rows, err) : -1;
    if (more == 1) {
        s->head = store_rows_int(rows, 0);
        s->top = store_rows_isnull(rows, 1) ? 0 : store_rows_int(rows, 1);
        s->marked = store_rows_isnull(rows, 2) ? 0 : store_rows_int(rows, 2);
    }
    store_rows_free(rows);
    if (more == 0)
        return err_set(err, ERR_INTERNAL, "the change log's head could not be read");
    return more == 1 ? FERRY_OK : FERRY_ERR;
}

static int write_mark(struct store_conn *c, struct err *err)
{
    return store_exec(c, "SELECT ferry_mark()", err);
}

static void pause_poll(int64_t *us)
{
    struct timespec ts = {0, (long)*us * 1000L};
    nanosleep(&ts, NULL);
    *us = *us * 2 > POLL_MAX_US ? POLL_MAX_US : *us * 2;
}

static bool take_slot(void)
{
    int n = atomic_load(&waiters);
    while (n < WAITERS_MAX)
        if (atomic_compare_exchange_weak(&waiters, &n, n + 1))
            return true;
    return false;
}

/* settle_to; a negative target is the newest committed entry of the first check. With
 * mark_first (a writer that drew seqs the marks cannot cover yet) the mark is written
 * before the first check, which saves a round trip. *slot: whether it holds a wait's
 * slot (taken before its first pause; without one it answers the head it read). */
static int settle_steps(struct store_conn *c, int64_t target, int timeout_ms, bool mark_first,
                        int64_t *head, bool *slot, struct err *err)
{
    int64_t deadline = time_mono_us() + (int64_t)timeout_ms * 1000, poll = POLL_FIRST_US;
    bool wrote = mark_first;
    struct step s;
    if (mark_first && write_mark(c, err) != FERRY_OK)
        return FERRY_ERR;
    for (;;) {
        if (read_step(c, &s, err) != FERRY_OK)
            return FERRY_ERR;
        if (target < 0)
            target = s.top;
        *head = s.head;
        if (s.head >= target)
            return FERRY_OK;
        /* one mark of its own at most: a later one covers nothing more of the target */
        if (s.marked < target && !wrote) {
            if (write_mark(c, err) != FERRY_OK)
                return FERRY_ERR;
            wrote = true;
            continue;
        }
        if (time_mono_us() >= deadline || (!*slot && !(*slot = take_slot())))
            return FERRY_OK;
        pause_poll(&poll);
    }
}

static int settle(struct store_conn *c, int64_t target, int timeout_ms, bool mark_first,
                  int64_t *head, struct err *err)
{
    bool slot = false;
    int rc = settle_steps(c, target, timeout_ms, mark_first, head, &slot, err);
    if (slot)
        atomic_fetch_sub(&waiters, 1);
    return rc;
}

int settle_to(struct store_conn *c, int64_t target, int timeout_ms, int64_t *head, struct err *err)
{
    int64_t ignored = 0;
    bool found = false;
    head = head ? head : &ignored;
    if (store_conn_dialect(c) == STORE_POSTGRES)
        return settle(c, target, timeout_ms, false, head, err);
    /* feed_head's SQLite query: feed.c calls settle.c, so calling back would be a cycle */
    *head = 0;
    return store_query_int(c, "SELECT COALESCE(MAX(seq), 0) FROM ferry_changes", NULL, 0, head,
                           &found, err);
}

int settle_written(struct store_conn *c, int64_t drawn, int timeout_ms, int64_t *head,
                   struct err *err)
{
    if (store_conn_dialect(c) != STORE_POSTGRES)
        return settle_to(c, drawn, timeout_ms, head, err);
    return settle(c, drawn, timeout_ms, true, head, err);
}

int settle_reader(struct store_conn *c, int timeout_ms, struct err *err)
{
    if (store_conn_dialect(c) != STORE_POSTGRES || store_in_txn(c))
        return FERRY_OK;
    return settle_to(c, -1, timeout_ms, NULL, err);
}

int settle_watch(struct store_conn *c, struct err *err)
{
    static _Atomic int64_t pruned_at;
    struct step s;
    if (store_conn_dialect(c) != STORE_POSTGRES)
        return FERRY_OK;
    if (read_step(c, &s, err) != FERRY_OK)
        return FERRY_ERR;
    if (s.top > s.head && s.marked < s.top && write_mark(c, err) != FERRY_OK)
        return FERRY_ERR;
    int64_t now = time_mono_us(), last = atomic_load(&pruned_at);
    if (now - last < PRUNE_EVERY_US || !atomic_compare_exchange_strong(&pruned_at, &last, now))
        return FERRY_OK;
    /* a cache an operator gives the sequence while ferry runs goes too; when it cannot,
     * the watcher goes on (its reconnects would not help): the warning says what to run */
    struct err seq_err = {0};
    if (settle_check_sequence(c, &seq_err) != FERRY_OK)
        log_warn("change_seq_cache", json_pack("{s:s}", "msg", seq_err.msg));
    return store_exec(c, PRUNE_SQL, err);
}

/* The mark's argument needs each draw to come from the sequence itself: with CACHE n a
 * session hands out seqs it fetched earlier, below a mark written meanwhile, which readers
 * would already have passed (a skip). */
int settle_check_sequence(struct store_conn *c, struct err *err)
{
    int64_t cache = 1;
    bool found = false;
    if (store_conn_dialect(c) != STORE_POSTGRES)
        return FERRY_OK;
    if (store_query_int(c,
                        "SELECT seqcache FROM pg_sequence"
                        " WHERE seqrelid = 'ferry_change_seq'::regclass",
                        NULL, 0, &cache, &found, err) != FERRY_OK)
        return FERRY_ERR;
    if (!found || cache <= 1)
        return FERRY_OK;
    /* ALTER SEQUENCE waits for every transaction that drew from it, and every draw
     * queues behind it meanwhile: never for long */
    if (store_begin(c, err) != FERRY_OK ||
        store_exec(c, "SET LOCAL lock_timeout = '200ms'", err) != FERRY_OK ||
        store_exec(c, "ALTER SEQUENCE ferry_change_seq CACHE 1", err) != FERRY_OK ||
        store_commit(c, err) != FERRY_OK) {
        store_rollback(c);
        char why[sizeof(err->msg)];
        snprintf(why, sizeof(why), "%s", err->msg);
        return err_set(err, ERR_INVALID,
                       "sequence ferry_change_seq has CACHE %lld, which lets the feed skip"
                       " changes; ferry could not set it to 1 (%s): run ALTER SEQUENCE"
                       " ferry_change_seq CACHE 1 as its owner",
                       (long long)cache, why);
    }
    log_warn("change_seq_cache_repaired",
             json_pack("{s:s, s:I}", "msg",
                       "ferry_change_seq had a CACHE above 1, which lets the feed skip changes;"
                       " set back to 1 (restart other programs' sessions that wrote meanwhile)",
                       "cache", (json_int_t)cache));
    return FERRY_OK;
}
