/* promote.h - on PostgreSQL, gives pending change-log entries their seq in commit order.
 * Capture triggers record a change with seq NULL ("pending"), so writers to synced tables
 * never wait for each other (migration 12); the promoter numbers committed pending entries
 * one promoter at a time (an advisory lock, across processes and nodes). On SQLite, whose
 * triggers draw seq under the database's one write lock, every call here does nothing. */
#ifndef FERRY_PROMOTE_H
#define FERRY_PROMOTE_H

#include <stdbool.h>

#include "ferry.h"
#include "store/store.h"

/* Gives every committed pending entry (and the scope exits it left) the next seq, in
 * write order. Outside a transaction it runs in one of its own. Inside one (a push, at
 * its end) it first runs the transaction's deferred constraint checks (SET CONSTRAINTS ALL
 * IMMEDIATE), then numbers only the transaction's own entries (those whose txid is its
 * top-level transaction id, so its subtransactions' too; other programs' committed
 * ones are left to the next promoter outside a transaction: the listener's, a read's) and
 * holds the promoters' lock until that transaction ends, so the caller should commit
 * promptly. Entries whose row another running transaction is changing again are left for
 * the promoter after it.
 * Why this keeps the feed whole: promoters hold one lock to their commit, and each takes
 * its snapshot after the one before committed, so every seq drawn is above every seq
 * committed before it; a reader that sees seq N therefore sees every seq below N. */
int promote_run(struct store_conn *c, struct err *err);

/* promote_run when the log holds committed pending entries (one indexed read otherwise):
 * for readers, so that other programs' writes appear even where no listener promotes. */
int promote_pending(struct store_conn *c, struct err *err);

/* Inside a write transaction that must draw a seq itself (a resync mark): takes the
 * promoters' lock, held to the transaction's end, so its seq is in commit order too. */
int promote_lock(struct store_conn *c, struct err *err);

/* Inside a push's transaction, before it writes (its rows locked, its checks done): takes
 * the promoters' lock, held to the transaction's end, and sets ferry.numbered (to the
 * transaction's id, which the triggers check), so the capture triggers number each entry
 * as they write it (one write per entry instead of a pending write and a numbering
 * update) - unless one of `tables` (SQL string literals, comma-separated) has a trigger
 * that could wait on other transactions under the lock (a user's trigger, a deferred
 * constraint); then nothing happens, and promote_run numbers the entries at the end as
 * before. The lock is waited for however long the queue; `then` is SQL run after it (the
 * caller's lock_timeout). */
int promote_claim(struct store_conn *c, const char *tables, const char *then, struct err *err);

#endif
