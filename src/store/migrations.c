/* migrations.c - ferry's own tables, one entry per schema version, with the SQL for
 * each dialect side by side so the two stay in step. Append only: a released
 * migration is never edited. Times are milliseconds since the Unix epoch (BIGINT). */
#include "store/store_internal.h"

/* The change log. seq is the table's own key and is never reused, even after a purge:
 * on SQLite MAX(seq) + 1 (the purge leaves a placeholder entry at the head it removed);
 * on PostgreSQL a sequence, drawn as entries are written (since migration 16; readers
 * stop at a safe head, sync/settle.h). */
#define CHANGES_SQLITE                                                                             \
    "CREATE TABLE ferry_changes ("                                                                 \
    " seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, pk TEXT NOT NULL,"                               \
    " version BIGINT NOT NULL,"                                                                    \
    " deleted INTEGER NOT NULL DEFAULT 0, updated_at BIGINT NOT NULL, device_id TEXT,"             \
    " UNIQUE (tbl, pk));"
#define CHANGES_PG                                                                                 \
    "CREATE SEQUENCE ferry_change_seq;"                                                            \
    "CREATE TABLE ferry_changes ("                                                                 \
    " seq BIGINT PRIMARY KEY DEFAULT nextval('ferry_change_seq'), tbl TEXT NOT NULL,"              \
    " pk TEXT NOT NULL, version BIGINT NOT NULL,"                                                  \
    " deleted INTEGER NOT NULL DEFAULT 0, updated_at BIGINT NOT NULL, device_id TEXT,"             \
    " UNIQUE (tbl, pk));"

/* The rest of the record-sync tables: the same text is valid on both dialects. */
#define CHANGELOG_SQL                                                                              \
    "CREATE TABLE ferry_writer (id INTEGER PRIMARY KEY CHECK (id = 1), device_id TEXT,"            \
    " horizon BIGINT NOT NULL DEFAULT 0);"                                                         \
    "INSERT INTO ferry_writer(id, device_id, horizon) VALUES (1, NULL, 0);"                        \
    "CREATE TABLE ferry_synced ("                                                                  \
    " tbl TEXT PRIMARY KEY, signature TEXT NOT NULL, installed_at BIGINT NOT NULL);"               \
    "CREATE TABLE ferry_field_versions ("                                                          \
    " tbl TEXT NOT NULL, pk TEXT NOT NULL, col TEXT NOT NULL, version BIGINT NOT NULL,"            \
    " PRIMARY KEY (tbl, pk, col));"                                                                \
    "CREATE TABLE ferry_devices ("                                                                 \
    " id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,"                             \
    " platform TEXT, app_version TEXT, cursor BIGINT NOT NULL DEFAULT 0, tables TEXT,"             \
    " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, last_seen_at BIGINT);"               \
    "CREATE INDEX ferry_devices_user ON ferry_devices(user_id);"                                   \
    "CREATE TABLE ferry_batches ("                                                                 \
    " origin TEXT NOT NULL, batch_id TEXT NOT NULL, status INTEGER NOT NULL,"                      \
    " response TEXT NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (origin, batch_id));"        \
    "CREATE TABLE ferry_conflicts ("                                                               \
    " id TEXT PRIMARY KEY, tbl TEXT NOT NULL, pk TEXT NOT NULL, device_id TEXT,"                   \
    " user_id TEXT, action TEXT NOT NULL, base_version BIGINT, server_version BIGINT NOT NULL,"    \
    " server_data TEXT, client_data TEXT, fields TEXT, status TEXT NOT NULL,"                      \
    " resolution TEXT, created_at BIGINT NOT NULL, resolved_at BIGINT, resolved_by TEXT);"         \
    "CREATE INDEX ferry_conflicts_status ON ferry_conflicts(status, created_at);"

/* Tokens and users: the same text is valid on both dialects. */
#define AUTH_SQL                                                                                   \
    "CREATE TABLE ferry_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"                         \
    "CREATE TABLE ferry_users ("                                                                   \
    " id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at BIGINT NOT NULL);"                       \
    "CREATE TABLE ferry_tokens ("                                                                  \
    " id TEXT PRIMARY KEY,"                                                                        \
    " name TEXT NOT NULL,"                                                                         \
    " role TEXT NOT NULL CHECK (role IN ('admin', 'user', 'device')),"                             \
    " user_id TEXT, device_id TEXT,"                                                               \
    " token_hash TEXT NOT NULL UNIQUE,"                                                            \
    " prefix TEXT NOT NULL,"                                                                       \
    " created_at BIGINT NOT NULL, expires_at BIGINT, last_used_at BIGINT,"                         \
    " revoked_at BIGINT, tables TEXT);"                                                            \
    "CREATE INDEX ferry_tokens_user ON ferry_tokens(user_id);"

/* Files (DESIGN.md section 2): file entries, which the change feed shows as the
 * "files" namespace; upload sessions (Pinakes' chunked uploads and tus) and the chunks
 * they have received; and jobs (directory sync and other long work) with their
 * progress. The same text is valid on both dialects. */
#define FILES_SQL                                                                                  \
    "CREATE TABLE ferry_files ("                                                                   \
    " path TEXT PRIMARY KEY, size BIGINT NOT NULL, sha256 TEXT NOT NULL,"                          \
    " version BIGINT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, updated_at BIGINT NOT NULL);"   \
    "CREATE INDEX ferry_files_sha256 ON ferry_files(sha256);"                                      \
    "CREATE TABLE ferry_uploads ("                                                                 \
    " id TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('chunked', 'tus')),"                 \
    " path TEXT, size BIGINT NOT NULL, sha256 TEXT, chunk_size BIGINT NOT NULL,"                   \
    " chunk_count BIGINT NOT NULL, received BIGINT NOT NULL DEFAULT 0, metadata TEXT,"             \
    " user_id TEXT, device_id TEXT, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,"       \
    " completing_at BIGINT, completed_at BIGINT, result TEXT);"                                    \
    "CREATE INDEX ferry_uploads_expiry ON ferry_uploads(expires_at);"                              \
    "CREATE TABLE ferry_upload_chunks ("                                                           \
    " upload_id TEXT NOT NULL, idx BIGINT NOT NULL, size BIGINT NOT NULL,"                         \
    " sha256 TEXT NOT NULL, PRIMARY KEY (upload_id, idx));"                                        \
    "CREATE TABLE ferry_jobs ("                                                                    \
    " id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, user_id TEXT,"                \
    " source TEXT, target TEXT, params TEXT, message TEXT,"                                        \
    " bytes_done BIGINT NOT NULL DEFAULT 0, bytes_total BIGINT NOT NULL DEFAULT 0,"                \
    " items_done BIGINT NOT NULL DEFAULT 0, items_total BIGINT NOT NULL DEFAULT 0,"                \
    " result TEXT, created_at BIGINT NOT NULL, started_at BIGINT, completed_at BIGINT,"            \
    " heartbeat_at BIGINT, closed INTEGER NOT NULL DEFAULT 0);"                                    \
    "CREATE INDEX ferry_jobs_status ON ferry_jobs(status, created_at);"

/* Site-to-site connections (PhoenixKit's protocol, PhoenixKit) and their transfers.
 * token_hash is the bearer credential PhoenixKit sends; lookup is SHA-256 of it, the
 * indexed key, so that a lookup's timing says nothing about a stored hash. */
#define SITES_SQL                                                                                  \
    "CREATE TABLE ferry_sites ("                                                                   \
    " id TEXT PRIMARY KEY, name TEXT NOT NULL,"                                                    \
    " direction TEXT NOT NULL CHECK (direction IN ('sender', 'receiver')),"                        \
    " site_url TEXT NOT NULL, token_hash TEXT NOT NULL, lookup TEXT NOT NULL,"                     \
    " status TEXT NOT NULL CHECK (status IN"                                                       \
    " ('pending', 'active', 'suspended', 'revoked', 'expired')),"                                  \
    " allowed_tables TEXT, excluded_tables TEXT, expires_at BIGINT,"                               \
    " max_records BIGINT NOT NULL DEFAULT 10000, rate_limit BIGINT NOT NULL DEFAULT 60,"           \
    " ip_allowlist TEXT, default_strategy TEXT NOT NULL DEFAULT 'skip',"                           \
    " records_sent BIGINT NOT NULL DEFAULT 0, bytes_sent BIGINT NOT NULL DEFAULT 0,"               \
    " requests BIGINT NOT NULL DEFAULT 0, last_connected_at BIGINT, last_transfer_at BIGINT,"      \
    " remote_ip TEXT, user_agent TEXT, reachable INTEGER NOT NULL DEFAULT 1,"                      \
    " failures BIGINT NOT NULL DEFAULT 0, next_check_at BIGINT, approved_at BIGINT,"               \
    " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,"                                     \
    " UNIQUE (site_url, direction));"                                                              \
    "CREATE INDEX ferry_sites_lookup ON ferry_sites(lookup);"                                      \
    "CREATE TABLE ferry_site_transfers ("                                                          \
    " id TEXT PRIMARY KEY, site_id TEXT NOT NULL, job_id TEXT, tbl TEXT NOT NULL,"                 \
    " strategy TEXT NOT NULL, status TEXT NOT NULL,"                                               \
    " records BIGINT NOT NULL DEFAULT 0, created BIGINT NOT NULL DEFAULT 0,"                       \
    " updated BIGINT NOT NULL DEFAULT 0, skipped BIGINT NOT NULL DEFAULT 0,"                       \
    " failed BIGINT NOT NULL DEFAULT 0, deleted BIGINT NOT NULL DEFAULT 0,"                        \
    " bytes BIGINT NOT NULL DEFAULT 0,"                                                            \
    " last_key TEXT, since_seq BIGINT, started_at BIGINT NOT NULL, completed_at BIGINT,"           \
    " error TEXT);"                                                                                \
    "CREATE INDEX ferry_site_transfers_site ON ferry_site_transfers(site_id, started_at);"

/* Leases that hold across processes and nodes (files/leases.c), and the blobs an upload
 * is about to name: recorded before the blob is put in place and removed in the
 * transaction that commits its file entry, so that collection never takes it between. */
#define CLAIMS_SQL                                                                                 \
    "CREATE TABLE ferry_leases ("                                                                  \
    " name TEXT PRIMARY KEY, owner TEXT NOT NULL, token TEXT NOT NULL,"                            \
    " expires_at BIGINT NOT NULL);"                                                                \
    "CREATE TABLE ferry_blob_claims ("                                                             \
    " upload_id TEXT NOT NULL, sha256 TEXT NOT NULL, created_at BIGINT NOT NULL,"                  \
    " PRIMARY KEY (upload_id, sha256));"                                                           \
    "CREATE INDEX ferry_blob_claims_sha256 ON ferry_blob_claims(sha256);"

/* Sync rules (docs/sync-rules.md): each change's scope value (the rule column of the row
 * as changed; NULL for tables without an owner or claim rule) with an index only those
 * rows carry; exits, which tell the old scope that a row left it (the log keeps one entry
 * per row, so the old value needs its own record); each table's rule and resync point;
 * a device's own resync point (its token's attributes changed); ferry tokens'
 * attributes, which claim rules read. The same text is valid on both dialects. */
#define RULES_SQL                                                                                  \
    "ALTER TABLE ferry_changes ADD COLUMN scope TEXT;"                                             \
    "CREATE INDEX ferry_changes_scope ON ferry_changes(tbl, scope, seq)"                           \
    " WHERE scope IS NOT NULL;"                                                                    \
    "CREATE TABLE ferry_scope_exits ("                                                             \
    " tbl TEXT NOT NULL, pk TEXT NOT NULL, scope TEXT NOT NULL, seq BIGINT NOT NULL,"              \
    " PRIMARY KEY (tbl, pk, scope));"                                                              \
    "CREATE INDEX ferry_scope_exits_seq ON ferry_scope_exits(tbl, scope, seq);"                    \
    "ALTER TABLE ferry_synced ADD COLUMN rule TEXT NOT NULL DEFAULT '';"                           \
    "ALTER TABLE ferry_synced ADD COLUMN resync_seq BIGINT NOT NULL DEFAULT 0;"                    \
    "ALTER TABLE ferry_devices ADD COLUMN resync_seq BIGINT NOT NULL DEFAULT 0;"                   \
    "ALTER TABLE ferry_tokens ADD COLUMN attrs TEXT;"

/* A row's log entry whose scope value changes (an update moved the row to another owner,
 * or a key deleted by one owner is made again by another) leaves an exit for the old
 * value at the entry's new seq. One trigger on the log covers every table and every
 * writer, and costs nothing for a new key (no entry to update). */
#define EXITS_SQLITE                                                                               \
    "CREATE TRIGGER ferry_changes_exit AFTER UPDATE OF scope ON ferry_changes"                     \
    " WHEN OLD.scope IS NOT NULL AND OLD.scope IS NOT NEW.scope BEGIN"                             \
    " INSERT INTO ferry_scope_exits(tbl, pk, scope, seq)"                                          \
    " VALUES (OLD.tbl, OLD.pk, OLD.scope, NEW.seq)"                                                \
    " ON CONFLICT(tbl, pk, scope) DO UPDATE SET seq = excluded.seq; END;"
#define EXITS_PG                                                                                   \
    "CREATE FUNCTION ferry_scope_exit() RETURNS trigger LANGUAGE plpgsql AS $ferry$\n"             \
    "BEGIN\n"                                                                                      \
    "  INSERT INTO ferry_scope_exits(tbl, pk, scope, seq)"                                         \
    " VALUES (OLD.tbl, OLD.pk, OLD.scope, NEW.seq)\n"                                              \
    "    ON CONFLICT (tbl, pk, scope) DO UPDATE SET seq = EXCLUDED.seq;\n"                         \
    "  RETURN NULL;\n"                                                                             \
    "END $ferry$;"                                                                                 \
    "CREATE TRIGGER ferry_changes_exit AFTER UPDATE OF scope ON ferry_changes FOR EACH ROW"        \
    " WHEN (OLD.scope IS NOT NULL AND OLD.scope IS DISTINCT FROM NEW.scope)"                       \
    " EXECUTE FUNCTION ferry_scope_exit();"
/* Owners of file entries (issue 11): an entry belongs to a namespace, a user's (owner =
 * the user id) or the common one (owner NULL: shared folders, and every entry from before
 * owners, which admins alone then see until a shared folder covers it). The key is the
 * path in the common namespace, so existing entries and their change-log keys stay as
 * they were (files/filescope.h). The table is rebuilt because its primary key changes;
 * the capture triggers go with the old table and are installed anew at start. */
#define FILE_OWNERS_SQL                                                                            \
    "CREATE TABLE ferry_files_owned ("                                                             \
    " file_key TEXT PRIMARY KEY, owner TEXT, path TEXT NOT NULL, size BIGINT NOT NULL,"            \
    " sha256 TEXT NOT NULL, version BIGINT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,"          \
    " updated_at BIGINT NOT NULL);"                                                                \
    "INSERT INTO ferry_files_owned(file_key, owner, path, size, sha256, version, deleted,"         \
    " updated_at) SELECT path, NULL, path, size, sha256, version, deleted, updated_at"             \
    " FROM ferry_files;"                                                                           \
    "DROP TABLE ferry_files;"                                                                      \
    "ALTER TABLE ferry_files_owned RENAME TO ferry_files;"                                         \
    "CREATE INDEX ferry_files_sha256 ON ferry_files(sha256);"                                      \
    "CREATE INDEX ferry_files_owner ON ferry_files(owner, path);"                                  \
    "CREATE INDEX ferry_files_path ON ferry_files(path);"
/* Webhooks (webhooks/): subscriptions with their signing secret (kept readable, as
 * HMAC needs it) and consecutive failures; events as sent (the exact body, so every
 * attempt signs the same bytes); the outbox, one row per (event, subscription), whose
 * claim columns let one node at a time attempt a delivery; and every attempt's outcome. */
#define WEBHOOKS_SQL                                                                               \
    "CREATE TABLE ferry_webhooks ("                                                                \
    " id TEXT PRIMARY KEY, url TEXT NOT NULL, events TEXT NOT NULL, description TEXT,"             \
    " secret TEXT NOT NULL, enabled INTEGER NOT NULL DEFAULT 1, failures BIGINT NOT NULL DEFAULT " \
    "0,"                                                                                           \
    " retry_at BIGINT, disabled_at BIGINT, disabled_reason TEXT, created_by TEXT,"                 \
    " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);"                                    \
    "CREATE TABLE ferry_webhook_events ("                                                          \
    " id TEXT PRIMARY KEY, type TEXT NOT NULL, payload TEXT NOT NULL, created_at BIGINT NOT "      \
    "NULL);"                                                                                       \
    "CREATE TABLE ferry_webhook_deliveries ("                                                      \
    " event_id TEXT NOT NULL, webhook_id TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN"     \
    " ('pending', 'delivered', 'failed')), attempts BIGINT NOT NULL DEFAULT 0,"                    \
    " next_attempt_at BIGINT NOT NULL, claim_owner TEXT, claim_token TEXT, claimed_until BIGINT,"  \
    " last_status BIGINT, last_error TEXT, delivered_at BIGINT, created_at BIGINT NOT NULL,"       \
    " PRIMARY KEY (event_id, webhook_id));"                                                        \
    "CREATE INDEX ferry_webhook_deliveries_due ON ferry_webhook_deliveries(status, "               \
    "next_attempt_at);"                                                                            \
    "CREATE INDEX ferry_webhook_deliveries_hook ON ferry_webhook_deliveries(webhook_id, "          \
    "created_at);"                                                                                 \
    "CREATE TABLE ferry_webhook_attempts ("                                                        \
    " event_id TEXT NOT NULL, webhook_id TEXT NOT NULL, attempt BIGINT NOT NULL,"                  \
    " at BIGINT NOT NULL, status BIGINT, ok INTEGER NOT NULL, duration_ms BIGINT NOT NULL,"        \
    " error TEXT, response TEXT, PRIMARY KEY (event_id, webhook_id, attempt));"

/* Database sync (dbsync/): per pair of databases and table, what each row looked like on
 * both sides after the last sync (hashes), so a second sync of an unchanged pair copies
 * nothing and a row changed in the target since is seen; the rows a sync is writing
 * (staged until the target commits); and the conflicts found. */
#define DBSYNC_SQL                                                                                 \
    "CREATE TABLE ferry_dbsync_pairs ("                                                            \
    " id TEXT PRIMARY KEY, source TEXT NOT NULL, target TEXT NOT NULL, tbl TEXT NOT NULL,"         \
    " last_sync_at BIGINT, UNIQUE (source, target, tbl));"                                         \
    "CREATE TABLE ferry_dbsync_rows ("                                                             \
    " pair_id TEXT NOT NULL, row_key TEXT NOT NULL, source_hash TEXT NOT NULL,"                    \
    " target_hash TEXT NOT NULL, PRIMARY KEY (pair_id, row_key));"                                 \
    "CREATE TABLE ferry_dbsync_staged ("                                                           \
    " run_id TEXT NOT NULL, pair_id TEXT NOT NULL, row_key TEXT NOT NULL,"                         \
    " source_hash TEXT, target_hash TEXT, PRIMARY KEY (run_id, pair_id, row_key));"                \
    "CREATE TABLE ferry_dbsync_conflicts ("                                                        \
    " pair_id TEXT NOT NULL, row_key TEXT NOT NULL, source_row TEXT, target_row TEXT,"             \
    " resolution TEXT NOT NULL, job_id TEXT, detected_at BIGINT NOT NULL,"                         \
    " PRIMARY KEY (pair_id, row_key));"

/* Writes without a global lock (PostgreSQL; until migration 16): a capture trigger records a
 * change as pending (seq NULL, wseq its place in write order) and the promoter gives
 * committed pending entries their seq, one promoter at a time, so seq order stays commit
 * order without writers waiting for each other. seq keeps a unique index (the feed's walk);
 * the pending entries have their own. ferry_head holds the newest seq promoted: MAX(seq)
 * would move back while the newest entry is pending again. SQLite keeps its schema. */
#define PENDING_PG                                                                                 \
    "ALTER TABLE ferry_changes DROP CONSTRAINT ferry_changes_pkey;"                                \
    "ALTER TABLE ferry_changes ALTER COLUMN seq DROP DEFAULT, ALTER COLUMN seq DROP NOT NULL;"     \
    "CREATE UNIQUE INDEX ferry_changes_seq ON ferry_changes(seq);"                                 \
    "CREATE SEQUENCE ferry_change_wseq;"                                                           \
    "ALTER TABLE ferry_changes ADD COLUMN wseq BIGINT DEFAULT nextval('ferry_change_wseq');"       \
    "CREATE INDEX ferry_changes_pending ON ferry_changes(wseq) WHERE seq IS NULL;"                 \
    "ALTER TABLE ferry_scope_exits ALTER COLUMN seq DROP NOT NULL;"                                \
    "CREATE TABLE ferry_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL);"        \
    "INSERT INTO ferry_head SELECT 1, COALESCE(MAX(seq), 0) FROM ferry_changes;"

/* PostgreSQL: each change-log entry's top-level transaction id (txid_current()), which
 * the capture triggers fill, so a push numbered its own entries (until 16) also when a
 * user's trigger wrote them inside a subtransaction, whose xmin is another xid. Entries
 * from before have none, and the promoter takes them as before (by xmin, or after commit).
 * The pending entries' index leads with it: a push finds its own entries by key, instead of
 * walking every pending entry's index entry, dead ones included (each numbered entry leaves
 * one until a vacuum, so in a stream of pushes each push's walk grew with all before it). */
#define TXID_PG                                                                                    \
    "ALTER TABLE ferry_changes ADD COLUMN txid BIGINT;"                                            \
    "DROP INDEX ferry_changes_pending;"                                                            \
    "CREATE INDEX ferry_changes_pending ON ferry_changes(txid, wseq) WHERE seq IS NULL;"

/* PostgreSQL: every change-log entry is numbered as it is written, with no lock (a
 * sequence), and readers see the log up to a safe head instead (sync/settle.h): the seq
 * of a mark (x, s) that says every transaction with an id from x on draws seqs above s,
 * taken from the newest mark whose x the reader's snapshot has passed. ferry_mark() writes
 * one: the sequence's last value read first, then a transaction id assigned after the
 * read, so it must run in a transaction of its own. The pending entries left by older
 * triggers are numbered first, under the old promoters' lock and with every writer shut
 * out, so the first mark covers them; the pending machinery (wseq, ferry_head) goes, and
 * the roles other programs write with, which drew from wseq's sequence, may draw seqs.
 * A mark commits without waiting for its WAL flush: one lost in a crash is only an older
 * head (the next settle writes another), and the changes it covers were committed by
 * their own transactions, durably, before any reader could pass over them. */
#define MARKS_PG                                                                                   \
    "LOCK TABLE ferry_changes IN ACCESS EXCLUSIVE MODE;"                                           \
    "SELECT pg_advisory_xact_lock(1717924466, 1);"                                                 \
    "WITH p AS (UPDATE ferry_changes c SET seq = n.seq FROM ("                                     \
    " SELECT o.tbl, o.pk, nextval('ferry_change_seq') AS seq FROM ("                               \
    " SELECT tbl, pk FROM ferry_changes WHERE seq IS NULL ORDER BY wseq) o) n"                     \
    " WHERE c.tbl = n.tbl AND c.pk = n.pk RETURNING c.tbl, c.pk, c.seq)"                           \
    " UPDATE ferry_scope_exits x SET seq = p.seq FROM p"                                           \
    " WHERE x.tbl = p.tbl AND x.pk = p.pk AND x.seq IS NULL;"                                      \
    "DELETE FROM ferry_scope_exits WHERE seq IS NULL;"                                             \
    "ALTER TABLE ferry_changes ALTER COLUMN seq SET DEFAULT nextval('ferry_change_seq');"          \
    "DO $ferry$ DECLARE g oid; BEGIN FOR g IN SELECT DISTINCT (aclexplode(relacl)).grantee"        \
    " FROM pg_class WHERE relname = 'ferry_change_wseq' AND relacl IS NOT NULL LOOP"               \
    " EXECUTE 'GRANT USAGE ON SEQUENCE ferry_change_seq TO '"                                      \
    " || CASE WHEN g = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g)) END; END LOOP;"        \
    " END $ferry$;"                                                                                \
    "DROP INDEX ferry_changes_pending;"                                                            \
    "ALTER TABLE ferry_changes DROP COLUMN wseq;"                                                  \
    "DROP SEQUENCE ferry_change_wseq;"                                                             \
    "DROP TABLE ferry_head;"                                                                       \
    "CREATE TABLE ferry_marks (x BIGINT NOT NULL, s BIGINT NOT NULL);"                             \
    "CREATE INDEX ferry_marks_x ON ferry_marks(x, s);"                                             \
    "INSERT INTO ferry_marks SELECT 0, CASE WHEN is_called THEN last_value"                        \
    " ELSE last_value - 1 END FROM ferry_change_seq;"                                              \
    "CREATE FUNCTION ferry_mark() RETURNS bigint LANGUAGE plpgsql AS $ferry$\n"                    \
    "DECLARE drawn bigint; prior bigint; mine bigint;\n"                                           \
    "BEGIN\n"                                                                                      \
    "  IF pg_current_xact_id_if_assigned() IS NOT NULL THEN\n"                                     \
    "    RAISE EXCEPTION 'ferry_mark() must run in a transaction of its own';\n"                   \
    "  END IF;\n"                                                                                  \
    "  SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END INTO drawn\n"            \
    "    FROM ferry_change_seq;\n"                                                                 \
    "  SELECT s INTO prior FROM ferry_marks ORDER BY x DESC LIMIT 1;\n"                            \
    "  mine := pg_current_xact_id()::text::bigint;\n"                                              \
    "  INSERT INTO ferry_marks(x, s) VALUES (mine, GREATEST(drawn, COALESCE(prior, 0)));\n"        \
    "  PERFORM pg_notify('ferry_changes', '');\n"                                                  \
    "  RETURN drawn;\n"                                                                            \
    "END $ferry$;"

/* Cloud sessions (cloud/treesync.c): per pair of a folder and a cloud location, each file's
 * size, modification time and object etag as of its last transfer, so an Incremental
 * session skips what did not change on either side; and the objects ferry has stored in
 * each provider, whose sizes are the metrics' cloudStorageUsage. */
#define CLOUDSYNC_SQL                                                                              \
    "CREATE TABLE ferry_cloudsync_entries ("                                                       \
    " pair_id TEXT NOT NULL, path TEXT NOT NULL, size BIGINT NOT NULL, mtime_ns BIGINT NOT NULL,"  \
    " etag TEXT NOT NULL, PRIMARY KEY (pair_id, path));"                                           \
    "CREATE TABLE ferry_cloud_objects ("                                                           \
    " provider TEXT NOT NULL, container TEXT NOT NULL, obj_key TEXT NOT NULL,"                     \
    " size BIGINT NOT NULL, PRIMARY KEY (provider, container, obj_key));"

const struct migration store_migrations[] = {
    /* 1: users, tokens and ferry's key-value settings */
    {1, AUTH_SQL, AUTH_SQL},
    /* 2: the change log and record sync (DESIGN.md section 2); portable SQL */
    {2, CHANGES_SQLITE CHANGELOG_SQL, CHANGES_PG CHANGELOG_SQL},
    /* 3: files, upload sessions and jobs */
    {3, FILES_SQL, FILES_SQL},
    /* 4: site-to-site connections and transfers */
    {4, SITES_SQL, SITES_SQL},
    /* 5: leases and blob claims */
    {5, CLAIMS_SQL, CLAIMS_SQL},
    /* 6: sync rules: scope values in the change log, exits, token attributes */
    {6, RULES_SQL EXITS_SQLITE, RULES_SQL EXITS_PG},
    /* 7: owners of file entries */
    {7, FILE_OWNERS_SQL, FILE_OWNERS_SQL},
    /* 8: webhook subscriptions, events, the delivery outbox and its attempts */
    {8, WEBHOOKS_SQL, WEBHOOKS_SQL},
    /* 11: database sync's per-pair state and conflicts */
    {11, DBSYNC_SQL, DBSYNC_SQL},
    /* 12: PostgreSQL: pending change-log entries, promoted in commit order */
    {12, "", PENDING_PG},
    /* 14: cloud sessions' per-pair state and the objects stored per provider */
    {14, CLOUDSYNC_SQL, CLOUDSYNC_SQL},
    /* 15: PostgreSQL: change-log entries record their top-level transaction */
    {15, "", TXID_PG},
    /* 16: PostgreSQL: entries numbered as written; readers stop at the marks' safe head */
    {16, "", MARKS_PG},
};

const size_t store_n_migrations = sizeof(store_migrations) / sizeof(store_migrations[0]);
