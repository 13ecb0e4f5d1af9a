/* promote.c - see promote.h. The promoter is one round trip: a statement taking the lock
 * and one numbering the entries, sent together (READ COMMITTED gives the second statement
 * a snapshot taken after the lock was granted, so it sees the previous promoter's work). */
#include <stdlib.h>

#include "sync/promote.h"

/* The promoters' lock, in the two-key space of advisory locks ("ferr", 1), apart from the
 * one-key space of the pushes' per-row locks (push.c). */
#define PROMOTE_LOCK "SELECT pg_advisory_xact_lock(1717924466, 1);"
#define NO_TIMEOUT "SET LOCAL lock_timeout = 0;"
#define DEFERRED_NOW "SET CONSTRAINTS ALL IMMEDIATE;"

/* Numbers the pending entries in write order (wseq), gives the scope exits each one left
 * the same seq, and moves the head (ferry_head) to the newest. FOR UPDATE SKIP LOCKED: an entry
 * whose row a running transaction is writing again is pending again when it commits, and the
 * promoter after that commit takes it; waiting for it here would hold every other promotion back.
 */
#define PROMOTE_SQL                                                                                \
    "WITH p AS (UPDATE ferry_changes c SET seq = n.seq FROM ("                                     \
    " SELECT o.tbl, o.pk, nextval('ferry_change_seq') AS seq FROM ("                               \
    " SELECT tbl, pk FROM ferry_changes WHERE seq IS NULL ORDER BY wseq"                           \
    " FOR UPDATE SKIP LOCKED) o) n WHERE c.tbl = n.tbl AND c.pk = n.pk"                            \
    " RETURNING c.tbl, c.pk, c.seq),"                                                              \
    " x AS (UPDATE ferry_scope_exits x SET seq = p.seq FROM p"                                     \
    " WHERE x.tbl = p.tbl AND x.pk = p.pk AND x.seq IS NULL RETURNING 1)"                          \
    " UPDATE ferry_head SET seq = (SELECT MAX(seq) FROM p) WHERE id = 1"                           \
    " AND EXISTS (SELECT 1 FROM p);"

/* The newest seq this transaction's capture triggers drew as they wrote (promote_claim;
 * NULL for none): set transaction-locally by the triggers, so a draw rolled back (a failed
 * try of a push) never moves the head. */
#define DRAWN "NULLIF(current_setting('ferry.drawn', true), '')::bigint"

/* A writer's own entries: those its transaction wrote, by the top-level transaction id
 * the capture trigger recorded (txid), which a subtransaction shares (a user's trigger
 * writing another synced table in an EXCEPTION block; xmin would be the subtransaction's
 * xid there); entries from before migration 15 have none and are matched by xmin. Both
 * are keys of the pending entries' index (txid, wseq), so the scan reads the transaction's
 * own entries only, not every pending entry's dead index entries since the last vacuum. It locks
 * nothing and waits for no one: no other transaction can hold a version this one made, so
 * each is updated where the scan found it (ctid: a TID scan, not a second walk of the key
 * index; about a fifth less CPU for 500 entries). */
#define PROMOTE_OWN_SQL                                                                            \
    "WITH p AS (UPDATE ferry_changes c SET seq = n.seq FROM ("                                     \
    " SELECT o.id, nextval('ferry_change_seq') AS seq FROM ("                                      \
    " SELECT ctid AS id FROM ferry_changes WHERE seq IS NULL"                                      \
    " AND (txid = txid_current_if_assigned() OR (txid IS NULL"                                     \
    " AND xmin = pg_current_xact_id_if_assigned()::xid)) ORDER BY wseq) o) n"                      \
    " WHERE c.ctid = n.id RETURNING c.tbl, c.pk, c.seq),"                                          \
    " x AS (UPDATE ferry_scope_exits x SET seq = p.seq FROM p"                                     \
    " WHERE x.tbl = p.tbl AND x.pk = p.pk AND x.seq IS NULL RETURNING 1)"                          \
    " UPDATE ferry_head SET seq = GREATEST(seq, (SELECT MAX(seq) FROM p), " DRAWN                  \
    ") WHERE id = 1;"

/* promote_claim: the promoters' lock and ferry.numbered, unless one of the tables has a
 * trigger that is neither ferry's capture nor a foreign key's immediate check. Those
 * (a user's trigger, a deferred constraint) may wait on anything, and would then hold
 * every other push back while this one holds the lock. ferry.numbered holds the
 * transaction's own id, which the triggers compare with theirs: another program that set
 * it (to '1', say) would draw seqs without the lock, below those of a push committing
 * before it, which a reader's cursor then passes for good; its entries stay pending. */
#define CLAIM_SQL                                                                                  \
    NO_TIMEOUT                                                                                     \
    "SELECT pg_advisory_xact_lock(1717924466, 1),"                                                 \
    " set_config('ferry.numbered', txid_current()::text, true)"                                    \
    " WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger tg"                                    \
    " JOIN pg_catalog.pg_class r ON r.oid = tg.tgrelid"                                            \
    " JOIN pg_catalog.pg_namespace s ON s.oid = r.relnamespace"                                    \
    " WHERE s.nspname = current_schema() AND r.relname IN (%s)"                                    \
    " AND NOT (tg.tgname LIKE 'ferry\\_capture\\_%%' OR (tg.tgisinternal AND NOT tg.tgdeferrable"  \
    " AND tg.tgfoid::regproc::text ~ '^\"?RI_FKey_(check|noaction|restrict)_')));%s"

int promote_run(struct store_conn *c, struct err *err)
{
    if (store_conn_dialect(c) != STORE_POSTGRES)
        return FERRY_OK;
    /* In a transaction, whatever its commit would run first runs before the lock is
     * taken (deferred constraint checks and triggers may wait for other transactions,
     * within the caller's lock_timeout); then the promoters' lock is waited for in turn,
     * however long the queue. One round trip either way. A transaction numbers only its
     * own entries: scanning and locking every other pending entry under the lock made
     * each push's turn several times longer (bench/push_pull NODES), and what other
     * programs committed is the listener's to number. */
    return store_exec(c,
                      store_in_txn(c) ? DEFERRED_NOW NO_TIMEOUT PROMOTE_LOCK PROMOTE_OWN_SQL
                                      : PROMOTE_LOCK PROMOTE_SQL,
                      err);
}

int promote_pending(struct store_conn *c, struct err *err)
{
    int64_t pending = 0;
    bool found = false;
    if (store_conn_dialect(c) != STORE_POSTGRES || store_in_txn(c))
        return FERRY_OK;
    if (store_query_int(c,
                        "SELECT COUNT(*) FROM (SELECT 1 FROM ferry_changes"
                        " WHERE seq IS NULL LIMIT 1) p",
                        NULL, 0, &pending, &found, err) != FERRY_OK)
        return FERRY_ERR;
    return pending ? promote_run(c, err) : FERRY_OK;
}

int promote_lock(struct store_conn *c, struct err *err)
{
    if (store_conn_dialect(c) != STORE_POSTGRES)
        return FERRY_OK;
    return store_exec(c, PROMOTE_LOCK, err);
}

int promote_claim(struct store_conn *c, const char *tables, const char *then, struct err *err)
{
    if (store_conn_dialect(c) != STORE_POSTGRES)
        return FERRY_OK;
    char *sql = xasprintf(CLAIM_SQL, tables, then);
    int rc = store_exec(c, sql, err);
    free(sql);
    return rc;
}
