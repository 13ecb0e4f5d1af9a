/* settle.h - on PostgreSQL, where the change log is safe to read up to (its head).
 * Writers never wait for each other: each entry gets its seq from a sequence as it is
 * written (no lock), so a seq can commit after a higher one was read. Readers therefore
 * stop at a head below which every seq is final, committed or never to be: the seq s of a
 * mark (x, s) in ferry_marks, which says that every transaction whose id is x or later
 * draws seqs above s (ferry_mark() reads the sequence, then takes a transaction id of its
 * own: ids are handed out in order, and a writer draws only after it has its id). A
 * reader's snapshot has passed x when its xmin (the oldest transaction still running) is
 * x or later; every transaction running then has an id from x on, so draws above s. The
 * head is the s of the newest mark so passed, read in the reader's own statement
 * (SETTLE_HEAD_PG). Marks are written after commits: by a push before it answers (so its
 * cursor covers its own changes), by a reader that sees committed entries above the head,
 * and by the watcher when a NOTIFY says another program committed some. On SQLite, whose
 * writers draw seq under the database's one write lock, the head is MAX(seq) and nothing
 * here waits. */
#ifndef FERRY_SETTLE_H
#define FERRY_SETTLE_H

#include <stdbool.h>

#include "ferry.h"
#include "store/store.h"

/* The oldest transaction of this database running in the statement's snapshot (its
 * xmin, when nothing else runs; the snapshot's end when none of this database runs).
 * Transaction ids are the cluster's, so another database's transaction (an idle session
 * left open, a long batch) would hold the head back too: one that the activity view,
 * read after the snapshot, shows in another database is passed over, and so is another
 * database's prepared transaction (which has no session: left prepared, it would stop
 * the feed until resolved). One neither shows (ended meanwhile, or hidden from a role
 * without pg_read_all_stats) counts. */
#define SETTLE_XMIN_PG                                                                             \
    "(SELECT CASE WHEN pg_snapshot_xmin(n.c) = pg_snapshot_xmax(n.c) THEN pg_snapshot_xmin(n.c)"   \
    " ELSE COALESCE((SELECT MIN(t) FROM pg_snapshot_xip(n.c) t WHERE xid(t) NOT IN"                \
    " (SELECT a.backend_xid FROM pg_stat_get_activity(NULL) a WHERE a.backend_xid IS NOT NULL"     \
    " AND a.datid <> (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()))"      \
    " AND xid(t) NOT IN (SELECT p.transaction FROM pg_prepared_xacts p"                            \
    " WHERE p.database <> current_database())),"                                                   \
    " pg_snapshot_xmax(n.c)) END FROM (SELECT pg_current_snapshot() AS c) n)::text::bigint"

/* The head, as an expression of the statement that reads the log (PostgreSQL). */
#define SETTLE_HEAD_PG                                                                             \
    "(SELECT m.s FROM ferry_marks m WHERE m.x <= " SETTLE_XMIN_PG " ORDER BY m.x DESC LIMIT 1)"

/* Outside a transaction: waits up to timeout_ms until the head reaches `target` (when
 * negative: the newest committed entry's seq), writing a mark when none covers it yet,
 * and gives the head it reached in *head unless NULL (below target when a transaction
 * older than the mark still runs at the timeout). On SQLite the head is the log's newest
 * seq at once. */
int settle_to(struct store_conn *c, int64_t target, int timeout_ms, int64_t *head, struct err *err);

/* settle_to for a writer that has just committed seqs up to `drawn`, which no mark
 * covers yet: writes its mark first (one round trip less). */
int settle_written(struct store_conn *c, int64_t drawn, int timeout_ms, int64_t *head,
                   struct err *err);

/* For readers outside a transaction: settle_to the newest committed entry, so that what
 * committed before the read is in it (another program's writes, whose writers leave no
 * mark). Up to timeout_ms behind a transaction older than the mark; then the read is of
 * what is safe so far, and the watcher's marks bring in the rest. */
int settle_reader(struct store_conn *c, int timeout_ms, struct err *err);

/* For the watcher: writes a mark when committed entries lie above the head and no mark
 * covers them, without waiting; at most every few seconds it also drops the marks older
 * than the newest one every snapshot has passed. */
int settle_watch(struct store_conn *c, struct err *err);

/* At start and every few seconds in settle_watch (PostgreSQL): sets ferry_change_seq's
 * CACHE back to 1 when an operator raised it (a cached draw breaks the marks' argument),
 * or fails with what to run. */
int settle_check_sequence(struct store_conn *c, struct err *err);

#endif
