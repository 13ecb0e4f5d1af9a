/* tables.c - see tables.h. The capture triggers are the heart of change capture: they
 * run inside the writer's transaction, whoever the writer is. On SQLite (one writer at a
 * time) they give each change the next seq, so seq order is commit order; on PostgreSQL
 * they draw it from a sequence without waiting for other writers, and readers stop at a
 * head below which every seq is final (settle.h). Either way a reader that has seen seq N
 * has seen every change below it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/settle.h"
#include "sync/rowwrite.h"
#include "sync/tables.h"
#include "util/buf.h"
#include "util/crypto.h"
#include "util/strlist.h"
#include "util/timeutil.h"

/* Bumped when the trigger text changes, so existing installs are replaced. */
#define TRIGGER_VERSION 15

/* How long an install waits for the rows its backfill recorded to reach the feed's head
 * (settle.h) behind transactions older than it. */
#define SETTLE_INSTALL_MS 2000

/* Milliseconds since the epoch in SQLite's own SQL: triggers run in other programs too,
 * so they may use only built-in functions. */
#define SQLITE_NOW_MS "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"

static const struct {
    const char *name;
    enum conflict_policy policy;
} policy_names[] = {
    {"overwrite", POLICY_OVERWRITE},
    {"skip", POLICY_SKIP},
    {"merge", POLICY_MERGE},
    {"manual", POLICY_MANUAL},
};

int tables_parse_policy(const char *name, enum conflict_policy *out)
{
    for (size_t i = 0; i < 4; i++)
        if (!strcmp(policy_names[i].name, name)) {
            *out = policy_names[i].policy;
            return FERRY_OK;
        }
    return FERRY_ERR;
}

const char *tables_policy_name(enum conflict_policy policy)
{
    return policy_names[policy].name;
}

static char *sql_literal(const char *s)
{
    struct buf b;
    buf_init(&b);
    buf_append(&b, "'", 1);
    for (; *s; s++) {
        if (*s == '\'')
            buf_append(&b, "'", 1);
        buf_append(&b, s, 1);
    }
    buf_append(&b, "'", 1);
    return buf_steal(&b);
}

/* --- SQLite triggers ------------------------------------------------------------ */

/* The change-log entry for key expression key (NEW."id" or OLD."id"), when `when`
 * holds. A new key's entry takes the rowid SQLite gives a new row, MAX(seq) + 1; a known
 * key's entry moves to MAX(seq) + 1. The purge never lowers MAX(seq) (it leaves a
 * placeholder at the purged head, purge.c), so no seq is handed out twice. */
static void sqlite_log_change(struct buf *b, const struct synced_table *t, const char *key,
                              const char *scope, int deleted, const char *when)
{
    buf_printf(b,
               "INSERT INTO ferry_changes(tbl, pk, version, deleted, updated_at, device_id, scope)"
               " SELECT %s, CAST(%s AS TEXT), 1, %d, " SQLITE_NOW_MS ","
               " w.device_id, %s FROM ferry_writer w WHERE w.id = 1%s"
               " ON CONFLICT(tbl, pk) DO UPDATE SET"
               " seq = (SELECT MAX(seq) FROM ferry_changes) + 1,"
               " version = ferry_changes.version + 1, deleted = %d,"
               " updated_at = excluded.updated_at, device_id = excluded.device_id,"
               " scope = excluded.scope;\n",
               t->literal, key, deleted, scope, when, deleted);
}

/* The scope value of row `which` (NEW or OLD) as the change log records it: the rule's
 * column as text, or NULL for a table whose rule narrows nothing. Caller frees. */
static char *scope_expr(const struct synced_table *t, const char *which)
{
    if (t->rule_col < 0)
        return xstrdup("NULL");
    return xasprintf("CAST(%s.%s AS TEXT)", which, t->cols[t->rule_col].quoted);
}

/* For merge tables: the version at which each changed column last changed. */
static void sqlite_field_versions(struct buf *b, const struct synced_table *t, bool is_update)
{
    const char *pk = t->cols[t->pk].quoted;
    for (size_t i = 0; i < t->n_cols; i++) {
        char *col = sql_literal(t->cols[i].name);
        buf_printf(b,
                   "INSERT INTO ferry_field_versions(tbl, pk, col, version)"
                   " SELECT %s, CAST(NEW.%s AS TEXT), %s, (SELECT version FROM ferry_changes"
                   " WHERE tbl = %s AND pk = CAST(NEW.%s AS TEXT)) WHERE 1",
                   t->literal, pk, col, t->literal, pk);
        if (is_update)
            buf_printf(b, " AND (OLD.%s IS NOT NEW.%s OR OLD.%s IS NOT NEW.%s)", t->cols[i].quoted,
                       t->cols[i].quoted, pk, pk);
        buf_puts(b, " ON CONFLICT(tbl, pk, col) DO UPDATE SET version = excluded.version;\n");
        free(col);
    }
}

static char *object_name(const char *what, const struct synced_table *t)
{
    char *name = xasprintf("ferry_%s_%s", what, t->name);
    char *quoted = store_quote_ident(name);
    free(name);
    return quoted;
}

static char *sqlite_trigger_sql(const struct synced_table *t)
{
    struct buf b;
    const char *pk = t->cols[t->pk].quoted;
    bool merge = t->policy == POLICY_MERGE;
    char *key_moved = xasprintf(" AND OLD.%s IS NOT NEW.%s", pk, pk);
    char *new_key = xasprintf("NEW.%s", pk), *old_key = xasprintf("OLD.%s", pk);
    char *ins = object_name("ins", t), *upd = object_name("upd", t), *del = object_name("del", t);
    char *new_scope = scope_expr(t, "NEW"), *old_scope = scope_expr(t, "OLD");

    buf_init(&b);
    buf_printf(&b,
               "DROP TRIGGER IF EXISTS %s;\nDROP TRIGGER IF EXISTS %s;\n"
               "DROP TRIGGER IF EXISTS %s;\n",
               ins, upd, del);

    buf_printf(&b, "CREATE TRIGGER %s AFTER INSERT ON %s BEGIN\n", ins, t->quoted);
    sqlite_log_change(&b, t, new_key, new_scope, 0, "");
    if (merge)
        sqlite_field_versions(&b, t, false);
    buf_puts(&b, "END;\n");

    buf_printf(&b, "CREATE TRIGGER %s AFTER UPDATE ON %s BEGIN\n", upd, t->quoted);
    sqlite_log_change(&b, t, old_key, old_scope, 1, key_moved); /* a changed key deletes the old */
    sqlite_log_change(&b, t, new_key, new_scope, 0, "");
    if (merge)
        sqlite_field_versions(&b, t, true);
    buf_puts(&b, "END;\n");

    buf_printf(&b, "CREATE TRIGGER %s AFTER DELETE ON %s BEGIN\n", del, t->quoted);
    sqlite_log_change(&b, t, old_key, old_scope, 1, "");
    buf_puts(&b, "END;\n");
    free(key_moved);
    free(new_scope);
    free(old_scope);
    free(new_key);
    free(old_key);
    free(ins);
    free(upd);
    free(del);
    return buf_steal(&b);
}

/* --- PostgreSQL triggers ----------------------------------------------------------- */

/* Statement-level triggers with transition tables: one INSERT ... SELECT logs all the
 * rows a statement changed, instead of a PL/pgSQL call per row. Each entry gets its seq
 * from the sequence as it is written and takes no lock beyond its own log row, whose lock
 * follows the data row's (only the writer of a row writes its entry), so version stays
 * exact and writers to synced tables never wait for one another; readers stop at the
 * safe head (settle.h). txid_current() gives the transaction its id before it draws,
 * which the head's marks rely on, and is recorded with each entry. The newest seq the
 * transaction drew goes to ferry.drawn (transaction-local like the entries: gone if they
 * are rolled back), where a push finds the cursor of its answer.
 * ferry's own writes set ferry.device for their transaction; writes from elsewhere leave
 * it unset. */

/* Logs the keys of `rows` (new_rows or old_rows, filtered by `where`) as changed. */
static void pg_log_rows(struct buf *b, const struct synced_table *t, const char *rows, int deleted,
                        const char *where)
{
    char *scope = t->rule_col < 0 ? xstrdup("NULL")
                                  : xasprintf("ferry_r.%s::text", t->cols[t->rule_col].quoted);
    buf_printf(b,
               "  INSERT INTO ferry_changes AS c (seq, tbl, pk, version, deleted, updated_at,"
               " device_id, scope, txid)\n"
               "    SELECT nextval('ferry_change_seq'),\n"
               "      %s, ferry_r.%s::text, 1, %d, now_ms, dev, %s, xact FROM %s ferry_r%s\n"
               "    ON CONFLICT (tbl, pk) DO UPDATE SET seq = EXCLUDED.seq,\n"
               "      version = c.version + 1, deleted = %d, updated_at = EXCLUDED.updated_at,\n"
               "      device_id = EXCLUDED.device_id, scope = EXCLUDED.scope,"
               " txid = EXCLUDED.txid;\n"
               "  IF FOUND THEN\n"
               "    PERFORM set_config('ferry.drawn', currval('ferry_change_seq')::text, true);\n"
               "  END IF;\n",
               t->literal, t->cols[t->pk].quoted, deleted, scope, rows, where, deleted);
    free(scope);
}

/* For merge tables: the version at which each changed column (every column of a new
 * key) last changed. */
static void pg_field_versions(struct buf *b, const struct synced_table *t, bool is_update)
{
    const char *pk = t->cols[t->pk].quoted;
    buf_printf(
        b,
        "  INSERT INTO ferry_field_versions AS f (tbl, pk, col, version)\n"
        "    SELECT %s, ferry_n.%s::text, e.key, ferry_c.version FROM new_rows ferry_n\n"
        "    JOIN ferry_changes ferry_c ON ferry_c.tbl = %s AND ferry_c.pk = ferry_n.%s::text\n",
        t->literal, pk, t->literal, pk);
    if (is_update)
        buf_printf(b, "    LEFT JOIN old_rows ferry_o ON ferry_o.%s = ferry_n.%s\n", pk, pk);
    buf_puts(b, "    CROSS JOIN LATERAL jsonb_each(to_jsonb(ferry_n)) e\n");
    if (is_update)
        buf_printf(b,
                   "    WHERE ferry_o.%s IS NULL OR (to_jsonb(ferry_o) -> e.key) IS DISTINCT FROM "
                   "e.value\n",
                   pk);
    buf_puts(b, "    ON CONFLICT (tbl, pk, col) DO UPDATE SET version = EXCLUDED.version;\n");
}

static char *pg_function_sql(const struct synced_table *t, const char *fn, const char *event)
{
    struct buf b;
    const char *pk = t->cols[t->pk].quoted;
    bool merge = t->policy == POLICY_MERGE;
    buf_init(&b);
    buf_printf(&b,
               "CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $ferry$\n"
               "DECLARE\n"
               "  dev text := NULLIF(current_setting('ferry.device', true), '');\n"
               "  now_ms bigint := (extract(epoch from clock_timestamp()) * 1000)::bigint;\n"
               "  xact bigint := txid_current();\n"
               "BEGIN\n",
               fn);
    if (!strcmp(event, "ins")) {
        pg_log_rows(&b, t, "new_rows", 0, "");
        if (merge)
            pg_field_versions(&b, t, false);
    } else if (!strcmp(event, "upd")) {
        /* keys that an update changed are gone: tombstones first */
        char *gone = xasprintf(" WHERE NOT EXISTS (SELECT 1 FROM new_rows ferry_n"
                               " WHERE ferry_n.%s = ferry_r.%s)",
                               pk, pk);
        pg_log_rows(&b, t, "old_rows", 1, gone);
        pg_log_rows(&b, t, "new_rows", 0, "");
        if (merge)
            pg_field_versions(&b, t, true);
        free(gone);
    } else if (!strcmp(event, "del")) {
        pg_log_rows(&b, t, "old_rows", 1, "");
    } else {
        /* TRUNCATE fires no row triggers and has no transition table: before it runs,
         * every row still there is logged as deleted */
        pg_log_rows(&b, t, t->quoted, 1, "");
    }
    buf_puts(&b, "  PERFORM pg_notify('ferry_changes', '');\n"
                 "  RETURN NULL;\n"
                 "END $ferry$;\n");
    return buf_steal(&b);
}

/* PostgreSQL cuts names at 63 bytes, so two long table names could share functions
 * named after them; the functions are named by a hash of the table's name instead. */
static char *pg_function_name(const struct synced_table *t, const char *event)
{
    char hash[65];
    crypto_sha256_hex(t->name, strlen(t->name), hash);
    return xasprintf("ferry_capture_%.16s_%s", hash, event);
}

static char *pg_trigger_sql(const struct synced_table *t)
{
    static const struct {
        const char *event, *when, *refs;
    } events[] = {
        {"ins", "AFTER INSERT", " REFERENCING NEW TABLE AS new_rows"},
        {"upd", "AFTER UPDATE", " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"},
        {"del", "AFTER DELETE", " REFERENCING OLD TABLE AS old_rows"},
        {"trunc", "BEFORE TRUNCATE", ""},
    };
    struct buf b;
    buf_init(&b);
    /* triggers of earlier versions; ferry_capture_lock (up to version 10) took
     * ferry_writer's row lock, which made every writer wait for every other */
    buf_printf(&b,
               "DROP TRIGGER IF EXISTS ferry_capture ON %s;\n"
               "DROP TRIGGER IF EXISTS ferry_notify ON %s;\n"
               "DROP TRIGGER IF EXISTS ferry_capture_lock ON %s;\n",
               t->quoted, t->quoted, t->quoted);
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        char *fn = pg_function_name(t, events[i].event);
        char *function = pg_function_sql(t, fn, events[i].event);
        buf_puts(&b, function);
        buf_printf(&b,
                   "DROP TRIGGER IF EXISTS ferry_capture_%s ON %s;\n"
                   "CREATE TRIGGER ferry_capture_%s %s ON %s%s"
                   " FOR EACH STATEMENT EXECUTE FUNCTION %s();\n",
                   events[i].event, t->quoted, events[i].event, events[i].when, t->quoted,
                   events[i].refs, fn);
        free(fn);
        free(function);
    }
    return buf_steal(&b);
}

/* --- loading ------------------------------------------------------------------------- */

int changelog_lock(struct store_conn *c, struct err *err)
{
    if (store_conn_dialect(c) != STORE_POSTGRES)
        return FERRY_OK; /* SQLite's BEGIN IMMEDIATE already holds the database's lock */
    return store_run(c, "SELECT 1 FROM ferry_writer WHERE id = 1 FOR UPDATE", NULL, 0, NULL, err);
}

int changelog_set_device(struct store_conn *c, const char *device, struct err *err)
{
    struct store_val v = sv_text(device ? device : "");
    if (store_conn_dialect(c) == STORE_POSTGRES)
        return store_run(c, "SELECT set_config('ferry.device', $1, true)", &v, 1, NULL, err);
    return store_run(c, "UPDATE ferry_writer SET device_id = $1 WHERE id = 1",
                     device ? &v : &(struct store_val){.type = SV_NULL}, 1, NULL, err);
}

int changelog_resync_mark(struct store_conn *c, int64_t *seq, struct err *err)
{
    bool pg = store_conn_dialect(c) == STORE_POSTGRES, found = false;
    struct store_val now = sv_int(time_now_ms());
    /* The placeholder's table '' is no synced table's name, so no feed shows it, and it is
     * no tombstone, so the purge leaves it. On PostgreSQL the transaction takes its id
     * before it draws the seq, as the head's marks require (settle.h). */
    if (pg && store_exec(c, "SELECT txid_current()", err) != FERRY_OK)
        return FERRY_ERR;
    if (store_run(c,
                  pg ? "INSERT INTO ferry_changes(seq, tbl, pk, version, deleted, updated_at)"
                       " VALUES (nextval('ferry_change_seq'), '', 'resync', 0, 0, $1)"
                       " ON CONFLICT (tbl, pk) DO UPDATE"
                       " SET seq = excluded.seq, updated_at = excluded.updated_at"
                     : "INSERT INTO ferry_changes(tbl, pk, version, deleted, updated_at)"
                       " VALUES ('', 'resync', 0, 0, $1) ON CONFLICT (tbl, pk) DO UPDATE"
                       " SET seq = (SELECT MAX(seq) FROM ferry_changes) + 1,"
                       " updated_at = excluded.updated_at",
                  &now, 1, NULL, err) != FERRY_OK)
        return FERRY_ERR;
    return store_query_int(c, "SELECT seq FROM ferry_changes WHERE tbl = '' AND pk = 'resync'",
                           NULL, 0, seq, &found, err);
}

int changelog_resync_devices(struct store_conn *c, int64_t seq, const char *device_id,
                             const char *user_id, const char *table, struct err *err)
{
    struct store_val v[] = {sv_int(seq), sv_text(device_id ? device_id
                                                 : user_id ? user_id
                                                           : table)};
    const char *sql = device_id ? "UPDATE ferry_devices SET resync_seq = $1 WHERE id = $2"
                      : user_id ? "UPDATE ferry_devices SET resync_seq = $1 WHERE user_id = $2"
                                : "UPDATE ferry_devices SET resync_seq = $1 WHERE tables IS NULL"
                                  " OR ',' || tables || ',' LIKE '%,' || $2 || ',%'";
    return store_run(c, sql, v, 2, NULL, err);
}

static char *signature_of(const struct synced_table *t)
{
    struct buf b;
    buf_init(&b);
    char *rule = rules_text(&t->rule);
    buf_printf(&b, "v%d;pk=%s;merge=%d;rule=%s;cols=", TRIGGER_VERSION, t->cols[t->pk].name,
               t->policy == POLICY_MERGE, rule);
    free(rule);
    for (size_t i = 0; i < t->n_cols; i++)
        buf_printf(&b, "%s%s", i ? "," : "", t->cols[i].name);
    return buf_steal(&b);
}

/* Records rows that exist before the table was first synced, each with its own seq, so a
 * device pulling from cursor 0 sees the whole table. */
static int backfill(struct store_conn *c, const struct synced_table *t, struct err *err)
{
    char *scope = t->rule_col < 0 ? xstrdup("NULL")
                                  : xasprintf("CAST(t.%s AS TEXT)", t->cols[t->rule_col].quoted);
    char *sql = xasprintf(
        "INSERT INTO ferry_changes(tbl, pk, version, deleted, updated_at, device_id, scope)"
        " SELECT CAST($1 AS TEXT), src.k, 1, 0, $2, NULL, src.s"
        " FROM (SELECT CAST(t.%s AS TEXT) AS k, %s AS s FROM %s t) src"
        " WHERE NOT EXISTS (SELECT 1 FROM ferry_changes c"
        " WHERE c.tbl = CAST($1 AS TEXT) AND c.pk = src.k) ORDER BY src.k",
        t->cols[t->pk].quoted, scope, t->quoted);
    struct store_val v[] = {sv_text(t->name), sv_int(time_now_ms())};
    int rc = store_run(c, sql, v, 2, NULL, err);
    free(sql);
    free(scope);
    return rc;
}

/* The part of a rule that decides which rows a credential reads: a change of it (and
 * only that) sends devices back to cursor 0. */
static char *read_fingerprint(const struct sync_rule *r)
{
    return rules_scoped(r) ? rules_text(r) : xstrdup("");
}

/* After the table's rule changed: the change log's scope values follow the new rule, the
 * exits (of the old rule, and those the recomputation itself left: ferry_changes_exit)
 * go, and the log gets a resync point (t->resync_seq). */
static int rescope(struct store_conn *c, struct synced_table *t, struct err *err)
{
    struct store_val name = sv_text(t->name);
    char *sql =
        t->rule_col < 0
            ? xstrdup("UPDATE ferry_changes SET scope = NULL WHERE tbl = $1")
            : xasprintf("UPDATE ferry_changes AS c SET scope = (SELECT CAST(t.%s AS TEXT)"
                        " FROM %s t WHERE t.%s = %s) WHERE c.tbl = $1",
                        t->cols[t->rule_col].quoted, t->quoted, t->cols[t->pk].quoted, t->pk_cast);
    int rc = store_run(c, sql, &name, 1, NULL, err);
    if (rc == FERRY_OK)
        rc = store_run(c, "DELETE FROM ferry_scope_exits WHERE tbl = $1", &name, 1, NULL, err);
    if (rc == FERRY_OK)
        rc = changelog_resync_mark(c, &t->resync_seq, err);
    if (rc == FERRY_OK)
        rc = changelog_resync_devices(c, t->resync_seq, NULL, NULL, t->name, err);
    free(sql);
    return rc;
}

/* Whether all of the table's capture triggers exist: a table rebuilt by hand (copied,
 * dropped, renamed back) keeps its name but loses them. */
static int triggers_present(struct store_conn *c, const struct synced_table *t, bool *present,
                            struct err *err)
{
    bool pg = store_conn_dialect(c) == STORE_POSTGRES;
    char *ins = xasprintf("ferry_ins_%s", t->name), *upd = xasprintf("ferry_upd_%s", t->name),
         *del = xasprintf("ferry_del_%s", t->name);
    struct store_val v[] = {sv_text(t->sql_name), sv_text(ins), sv_text(upd), sv_text(del)};
    int64_t n = 0;
    bool found = false;
    int rc = store_query_int(
        c,
        pg ? "SELECT COUNT(*) FROM pg_catalog.pg_trigger tg"
             " JOIN pg_catalog.pg_class r ON r.oid = tg.tgrelid"
             " JOIN pg_catalog.pg_namespace s ON s.oid = r.relnamespace"
             " WHERE s.nspname = current_schema() AND r.relname = $1"
             " AND tg.tgname IN ('ferry_capture_ins', 'ferry_capture_upd', 'ferry_capture_del',"
             " 'ferry_capture_trunc')"
           : "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = $1"
             " AND name IN ($2, $3, $4)",
        v, pg ? 1 : 4, &n, &found, err);
    *present = n == (pg ? 4 : 3);
    free(ins);
    free(upd);
    free(del);
    return rc;
}

/* What ferry_synced holds for the table: whether its signature is the current one,
 * whether the rule's read part changed (a table synced before), and its resync point. */
static int stored_state(struct store_conn *c, struct synced_table *t, const char *signature,
                        bool *current, bool *rule_changed, struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val name = sv_text(t->name);
    int step = FERRY_ERR;
    *current = *rule_changed = false;
    if (store_query(c, "SELECT signature, rule, resync_seq FROM ferry_synced WHERE tbl = $1", &name,
                    1, &rows, err) == FERRY_OK &&
        (step = store_rows_next(rows, err)) == 1) {
        struct sync_rule old = {0};
        struct err ignored = {0};
        *current = !strcmp(store_rows_text(rows, 0), signature);
        /* a stored rule this version cannot read counts as changed */
        bool readable = rules_parse(store_rows_text(rows, 1), &old, &ignored) == FERRY_OK ||
                        !*store_rows_text(rows, 1);
        char *was = read_fingerprint(&old), *now = read_fingerprint(&t->rule);
        *rule_changed = !readable || strcmp(was, now) != 0;
        t->resync_seq = store_rows_int(rows, 2);
        rules_cleanup(&old);
        free(was);
        free(now);
    }
    store_rows_free(rows);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

static int install(struct store_conn *c, struct synced_table *t, struct err *err)
{
    bool pg = store_conn_dialect(c) == STORE_POSTGRES;
    char *signature = signature_of(t), *sql = NULL, *rule = rules_text(&t->rule);
    int rc = FERRY_ERR;
    bool current = false, rule_changed = false, present = false;

    if (stored_state(c, t, signature, &current, &rule_changed, err) != FERRY_OK)
        goto out;
    if (current && triggers_present(c, t, &present, err) != FERRY_OK)
        goto out;
    if (current && present) {
        rc = FERRY_OK;
        goto out;
    }
    sql = pg ? pg_trigger_sql(t) : sqlite_trigger_sql(t);
    if (store_begin(c, err) != FERRY_OK || changelog_lock(c, err) != FERRY_OK ||
        store_exec(c, sql, err) != FERRY_OK || backfill(c, t, err) != FERRY_OK ||
        (rule_changed && rescope(c, t, err) != FERRY_OK))
        goto out;
    struct store_val v[] = {sv_text(t->name), sv_text(signature), sv_int(time_now_ms()),
                            sv_text(rule), sv_int(t->resync_seq)};
    if (store_run(c,
                  "INSERT INTO ferry_synced(tbl, signature, installed_at, rule, resync_seq)"
                  " VALUES ($1, $2, $3, $4, $5)"
                  " ON CONFLICT (tbl) DO UPDATE SET signature = excluded.signature,"
                  " installed_at = excluded.installed_at, rule = excluded.rule,"
                  " resync_seq = excluded.resync_seq",
                  v, 5, NULL, err) != FERRY_OK ||
        store_commit(c, err) != FERRY_OK)
        goto out;
    /* the rows backfill recorded, in the feed before ferry goes on */
    rc = settle_to(c, -1, SETTLE_INSTALL_MS, NULL, err);
out:
    store_rollback(c);
    free(signature);
    free(sql);
    free(rule);
    return rc;
}

/* The columns' types, for pushes' statements whose parameters need a cast (PostgreSQL). */
static void set_types(struct rowwrite_table *rw, const struct store_table *info)
{
    const char **types = xcalloc(info->n_cols ? info->n_cols : 1, sizeof(*types));
    for (size_t i = 0; i < info->n_cols; i++)
        types[i] = info->cols[i].decl_type;
    rowwrite_table_types(rw, types);
    free(types);
}

static int describe(struct store_conn *c, const char *name, const char *sql_name,
                    enum conflict_policy policy, struct synced_table *t, struct err *err)
{
    struct store_table *info = NULL;
    int rc = FERRY_ERR;

    memset(t, 0, sizeof(*t));
    t->name = xstrdup(name);
    t->sql_name = xstrdup(sql_name);
    t->quoted = store_quote_ident(sql_name);
    t->literal = sql_literal(name);
    t->policy = policy;
    t->deleted_col = -1;
    t->rule_col = -1;
    if (store_table_info(c, sql_name, &info, err) != FERRY_OK)
        goto out;
    if (info->n_pk != 1) {
        err_set(err, ERR_INVALID, "table '%s' must have a single-column primary key (it has %zu)",
                name, info->n_pk);
        goto out;
    }
    t->n_cols = info->n_cols;
    t->cols = xcalloc(info->n_cols, sizeof(*t->cols));
    for (size_t i = 0; i < info->n_cols; i++) {
        struct synced_column *col = &t->cols[i];
        col->name = xstrdup(info->cols[i].name);
        col->quoted = store_quote_ident(col->name);
        col->kind = values_kind_of(info->cols[i].decl_type);
        col->not_null = info->cols[i].not_null || info->cols[i].primary_key;
        col->required = col->not_null && !info->cols[i].has_default;
        if (info->cols[i].primary_key)
            t->pk = i;
    }
    const char **names = xcalloc(t->n_cols, sizeof(*names));
    for (size_t i = 0; i < t->n_cols; i++)
        names[i] = t->cols[i].name;
    rowwrite_table_init(&t->rw, sql_name, names, t->n_cols, (int)t->pk);
    if (store_conn_dialect(c) == STORE_POSTGRES)
        set_types(&t->rw, info);
    int parents_rc = parents_load(c, t->quoted, names, t->n_cols, &t->parents, err);
    free(names);
    if (parents_rc != FERRY_OK)
        goto out;
    enum col_kind pk_kind = t->cols[t->pk].kind;
    if (pk_kind != KIND_INTEGER && pk_kind != KIND_TEXT && pk_kind != KIND_UUID) {
        err_set(err, ERR_INVALID, "table '%s': primary key '%s' must be an integer or text column",
                name, t->cols[t->pk].name);
        goto out;
    }
    /* Compare the table's key column with the change log's text key in the key's own
     * type, so the lookup uses the table's primary-key index. */
    if (pk_kind == KIND_INTEGER)
        t->pk_cast = xasprintf("CAST(c.pk AS %s)",
                               store_conn_dialect(c) == STORE_POSTGRES ? "BIGINT" : "INTEGER");
    else if (pk_kind == KIND_UUID && store_conn_dialect(c) == STORE_POSTGRES)
        t->pk_cast = xstrdup("CAST(c.pk AS UUID)");
    else
        t->pk_cast = xstrdup("c.pk");
    rc = FERRY_OK;
out:
    store_table_free(info);
    return rc;
}

static int find_policy(const char *policies, const char *table, enum conflict_policy def,
                       enum conflict_policy *out, struct err *err)
{
    *out = def;
    if (!policies || !*policies)
        return FERRY_OK;
    char *copy = xstrdup(policies), *save = NULL;
    int rc = FERRY_OK;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ')
            item++;
        char *eq = strchr(item, '=');
        if (!eq) {
            rc = err_set(err, ERR_INVALID, "conflict policy '%s' must be TABLE=POLICY", item);
            break;
        }
        *eq = '\0';
        if (strcmp(item, table) != 0)
            continue;
        if (tables_parse_policy(eq + 1, out) != FERRY_OK) {
            rc = err_set(err, ERR_INVALID,
                         "table '%s': conflict policy must be overwrite, skip, merge or manual",
                         table);
            break;
        }
    }
    free(copy);
    return rc;
}

/* Gives t the configured rule, checking its column exists. */
static int attach_rule(const char *rules, struct synced_table *t, struct err *err)
{
    if (rules_find(rules, t->name, &t->rule, err) != FERRY_OK)
        return FERRY_ERR;
    if (!rules_scoped(&t->rule))
        return FERRY_OK;
    t->rule_col = tables_column(t, t->rule.column);
    if (t->rule_col < 0)
        return err_set(err, ERR_INVALID, "sync rule names column '%s', which the table lacks",
                       t->rule.column);
    return FERRY_OK;
}

static int rule_table_synced(void *ctx, const char *table, struct err *err)
{
    const char *list = ctx;
    return strlist_has(list, table)
               ? FERRY_OK
               : err_set(err, ERR_INVALID,
                         "sync rule for table '%.100s': the table is not synced (allowed-tables)",
                         table);
}

int tables_load(struct store *st, const char *list, const char *policies, const char *rules,
                enum conflict_policy default_policy, struct synced_set *out, struct err *err)
{
    struct store_conn *c = NULL;
    char *copy = xstrdup(list ? list : ""), *save = NULL;
    int rc = FERRY_ERR;

    memset(out, 0, sizeof(*out));
    if (rules_check_list(rules, err) != FERRY_OK ||
        rules_each_table(rules, rule_table_synced, copy, err) != FERRY_OK)
        goto out;
    if (store_acquire(st, &c, err) != FERRY_OK || settle_check_sequence(c, err) != FERRY_OK)
        goto out;
    for (char *name = strtok_r(copy, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        while (*name == ' ')
            name++;
        char *end = name + strlen(name);
        while (end > name && end[-1] == ' ')
            *--end = '\0';
        if (!*name || tables_find(out, name))
            continue;
        if (!strncmp(name, "ferry_", 6)) {
            err_set(err, ERR_INVALID, "table '%s': ferry's own tables cannot be synced", name);
            goto out;
        }
        if (!strcmp(name, FILES_NAMESPACE)) {
            err_set(err, ERR_INVALID,
                    "table '%s': the name is taken by ferry's files namespace; rename the table",
                    name);
            goto out;
        }
        enum conflict_policy policy;
        if (find_policy(policies, name, default_policy, &policy, err) != FERRY_OK)
            goto out;
        out->tables = xrealloc(out->tables, (out->n + 1) * sizeof(*out->tables));
        struct synced_table *t = &out->tables[out->n++];
        if (describe(c, name, name, policy, t, err) != FERRY_OK ||
            attach_rule(rules, t, err) != FERRY_OK || install(c, t, err) != FERRY_OK) {
            char reason[sizeof(err->msg)];
            snprintf(reason, sizeof(reason), "%s", err->msg);
            err_set(err, err->code, "cannot sync table '%s': %s", name, reason);
            goto out;
        }
    }
    rc = FERRY_OK;
out:
    store_release(c);
    free(copy);
    if (rc != FERRY_OK)
        tables_cleanup(out);
    return rc;
}

int tables_add_files(struct store *st, struct synced_set *set, struct err *err)
{
    struct store_conn *c = NULL;
    if (store_acquire(st, &c, err) != FERRY_OK)
        return FERRY_ERR;
    set->tables = xrealloc(set->tables, (set->n + 1) * sizeof(*set->tables));
    struct synced_table *t = &set->tables[set->n++];
    int rc = describe(c, FILES_NAMESPACE, "ferry_files", POLICY_OVERWRITE, t, err);
    if (rc == FERRY_OK) {
        t->builtin = true;
        t->deleted_col = tables_column(t, "deleted");
        rc = install(c, t, err);
    }
    store_release(c);
    return rc;
}

void tables_cleanup(struct synced_set *set)
{
    for (size_t i = 0; i < set->n; i++) {
        struct synced_table *t = &set->tables[i];
        parents_cleanup(&t->parents);
        for (size_t k = 0; k < t->n_cols; k++) {
            free(t->cols[k].name);
            free(t->cols[k].quoted);
        }
        free(t->cols);
        free(t->name);
        free(t->sql_name);
        free(t->quoted);
        free(t->literal);
        free(t->pk_cast);
        rules_cleanup(&t->rule);
        rowwrite_table_free(&t->rw);
    }
    free(set->tables);
    set->tables = NULL;
    set->n = 0;
}

const struct synced_table *tables_find(const struct synced_set *set, const char *name)
{
    for (size_t i = 0; i < set->n; i++)
        if (!strcmp(set->tables[i].name, name))
            return &set->tables[i];
    return NULL;
}

int tables_column(const struct synced_table *t, const char *name)
{
    for (size_t i = 0; i < t->n_cols; i++)
        if (!strcmp(t->cols[i].name, name))
            return (int)i;
    return -1;
}
