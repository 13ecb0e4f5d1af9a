/* store_pg.c - the PostgreSQL backend behind store.h, over libpq. One PGconn per pooled
 * connection; each statement is prepared once per connection under a generated name and
 * cached by its SQL text. Results arrive whole, in text format, and are walked by index. */
#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>
#include <poll.h>

#include "store/store_internal.h"
#include "util/log.h"

/* Type OIDs, fixed since forever; catalog/pg_type_d.h is a server header, so they are
 * spelt out here. */
#define PG_OID_BOOL 16
#define PG_OID_BYTEA 17
#define PG_OID_INT8 20
#define PG_OID_INT2 21
#define PG_OID_INT4 23
#define PG_OID_FLOAT4 700
#define PG_OID_FLOAT8 701

/* The wire protocol counts bind parameters in 16 bits. */
#define MAX_PARAMS 65535

/* Room for any int64 in decimal or any double as "%.17g". */
#define NUM_TEXT_LEN 32

/* An unescaped bytea value of the current row, kept until the row changes. */
struct pg_blob {
    unsigned char *bytes; /* from PQunescapeBytea, released with PQfreemem */
    size_t len;
};

struct pg_rows {
    struct rows_head head;
    PGresult *res;
    int row;               /* current row, -1 before the first */
    struct pg_blob *blobs; /* one slot per column */
};

/* The parameter arrays libpq wants, built from store_vals. Numbers travel as text in
 * num; blobs travel in binary format so their bytes need no escaping. */
struct pg_params {
    const char **values;
    int *lengths;
    int *formats;
    char (*num)[NUM_TEXT_LEN];
};

/* libpq's messages end in a newline (sometimes more); the error record wants none. */
static int trimmed_len(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    return n > INT_MAX ? INT_MAX : (int)n;
}

/* Maps a failed result to an error: SQLSTATE class 23 (integrity constraint) is a
 * conflict, class 22 (data exception) an invalid value, 53100 a full disk, 55P03 (a
 * NOWAIT lock not available) unavailable, the rest a database error. what (when not NULL)
 * prefixes the server's primary message. res may be NULL (libpq out of memory). */
static int pg_error(PGconn *pg, const PGresult *res, const char *what, struct err *err)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    enum err_code kind = ERR_DATABASE;

    if (!msg && res && *PQresultErrorMessage(res))
        msg = PQresultErrorMessage(res);
    if (!msg && *PQerrorMessage(pg))
        msg = PQerrorMessage(pg);
    if (!msg) /* a result status nobody asked for, such as COPY IN */
        msg = res ? PQresStatus(PQresultStatus(res)) : "out of memory";
    if (state && strncmp(state, "23", 2) == 0)
        kind = ERR_CONFLICT;
    else if (state && strcmp(state, "53100") == 0)
        kind = ERR_STORAGE_FULL;
    else if (state && strcmp(state, "55P03") == 0)
        kind = ERR_UNAVAILABLE; /* lock_not_available: a NOWAIT lock another transaction holds */
    else if (state && strncmp(state, "22", 2) == 0)
        kind = ERR_INVALID; /* data exception: a value that does not fit its column */
    if (!what)
        return err_set(err, kind, "%.*s", trimmed_len(msg), msg);
    return err_set(err, kind, "%s: %.*s", what, trimmed_len(msg), msg);
}

/* client_min_messages keeps NOTICEs away, but WARNINGs (ROLLBACK outside a transaction,
 * for one) still come, and libpq's default processor would print them to stderr. */
static void discard_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static int pg_connect(struct store *st, void **handle, struct err *err)
{
    PGconn *pg = PQconnectdb(st->target);
    PGresult *res = NULL;
    int rc = FERRY_ERR;

    /* Never name st->target in a message: the URL may carry a password. */
    if (!pg) {
        err_set(err, ERR_DATABASE, "cannot connect to PostgreSQL: out of memory");
        goto out;
    }
    if (PQstatus(pg) != CONNECTION_OK) {
        const char *msg = PQerrorMessage(pg);
        err_set(err, ERR_DATABASE, "cannot connect to PostgreSQL: %.*s", trimmed_len(msg), msg);
        goto out;
    }
    PQsetNoticeProcessor(pg, discard_notice, NULL);
    /* ferry's statements are prepared once per connection and run with all kinds of
     * values; the generic plan (an index walk for the feed's "seq > $1 ... LIMIT $2") is
     * the right one, and the first five custom plans PostgreSQL would try cost a full
     * scan each. Literals that ferry writes into SQL itself (filescope.c's owners and
     * shared folders) double their quotes and nothing else: that is the whole escaping
     * only with standard_conforming_strings on, which a database or role can turn off
     * (then a backslash in a user id ends the literal), so it is set here. */
    res = PQexec(pg, "SET client_min_messages = warning; SET plan_cache_mode = force_generic_plan;"
                     " SET standard_conforming_strings = on");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        pg_error(pg, res, "cannot configure PostgreSQL connection", err);
        goto out;
    }
    *handle = pg;
    pg = NULL;
    rc = FERRY_OK;
out:
    PQclear(res);
    PQfinish(pg);
    return rc;
}

static void pg_disconnect(void *handle)
{
    PQfinish(handle);
}

static bool pg_healthy(void *handle)
{
    return PQstatus(handle) == CONNECTION_OK;
}

/* PostgreSQL answers COMMIT of a transaction that an earlier error aborted with the tag
 * ROLLBACK and no error. The caller asked for its changes to be kept; they were not. */
static bool commit_rolled_back(const char *sql, PGresult *res)
{
    return strncasecmp(sql, "COMMIT", 6) == 0 && strcmp(PQcmdStatus(res), "ROLLBACK") == 0;
}

/* The BEGIN a pending transaction starts with: a read's takes one snapshot for all its
 * statements (store_begin_read), a write's is READ COMMITTED (store_begin). */
static const char *begin_sql(const struct store_conn *conn)
{
    return conn->begin_read ? "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY" : "BEGIN";
}

static int pg_exec(struct store_conn *conn, const char *sql, struct err *err)
{
    /* a pending BEGIN goes first in the same simple query (one round trip) */
    char *with_begin = conn->begin_pending ? xasprintf("%s; %s", begin_sql(conn), sql) : NULL;
    conn->begin_pending = false;
    PGresult *res = PQexec(conn->handle, with_begin ? with_begin : sql);
    free(with_begin);
    ExecStatusType status = PQresultStatus(res);
    int rc = FERRY_OK;

    /* An empty string runs nothing, as it does on SQLite. */
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY)
        rc = pg_error(conn->handle, res, NULL, err);
    else if (commit_rolled_back(sql, res))
        rc = err_set(err, ERR_DATABASE,
                     "commit failed: the transaction had been aborted by an earlier error");
    PQclear(res);
    return rc;
}

static void pg_clear_cache(struct store_conn *conn);

static void free_name(void *stmt, void *ctx)
{
    (void)ctx;
    free(stmt);
}

static void params_cleanup(struct pg_params *p)
{
    free(p->values);
    free(p->lengths);
    free(p->formats);
    free(p->num);
}

/* Fills one slot of p from v. */
static int set_param(struct pg_params *p, size_t i, const struct store_val *v, struct err *err)
{
    switch (v->type) {
    case SV_INT:
        snprintf(p->num[i], NUM_TEXT_LEN, "%" PRId64, v->i);
        p->values[i] = p->num[i];
        break;
    case SV_REAL:
        snprintf(p->num[i], NUM_TEXT_LEN, "%.17g", v->d);
        p->values[i] = p->num[i];
        break;
    case SV_TEXT:
        p->values[i] = v->s;
        break;
    case SV_BLOB:
        if (v->len > INT_MAX)
            return err_set(err, ERR_TOO_LARGE, "blob parameter %zu too large (%zu bytes)", i + 1,
                           v->len);
        p->values[i] = v->s ? v->s : ""; /* a NULL value would bind SQL NULL */
        p->lengths[i] = (int)v->len;
        p->formats[i] = 1;
        break;
    default:
        p->values[i] = NULL;
    }
    return FERRY_OK;
}

static int params_init(struct pg_params *p, const struct store_val *params, size_t n,
                       struct err *err)
{
    *p = (struct pg_params){0};
    if (n > MAX_PARAMS)
        return err_set(err, ERR_INTERNAL, "statement has %zu parameters, at most %d allowed", n,
                       MAX_PARAMS);
    p->values = xcalloc(n, sizeof(*p->values));
    p->lengths = xcalloc(n, sizeof(*p->lengths));
    p->formats = xcalloc(n, sizeof(*p->formats));
    p->num = xcalloc(n, sizeof(*p->num));
    for (size_t i = 0; i < n; i++)
        if (set_param(p, i, &params[i], err) != FERRY_OK)
            return FERRY_ERR;
    return FERRY_OK;
}

/* Finds sql's server-side statement in the connection's cache, preparing it on a miss.
 * A failed prepare leaves nothing behind on either side, so nothing is cached. */
static int prepare(struct store_conn *conn, const char *sql, const char **name, struct err *err)
{
    char *stmt;
    PGresult *res;

    if (conn->cache && stmt_cache_count(conn->cache) >= STMT_CACHE_MAX) {
        /* the server keeps prepared statements too: drop them with the cache */
        PQclear(PQexec(conn->handle, "DEALLOCATE ALL"));
        stmt_cache_free(conn->cache);
        conn->cache = NULL;
    }
    if (!conn->cache)
        conn->cache = stmt_cache_new(free_name, NULL);
    stmt = stmt_cache_get(conn->cache, sql);
    if (!stmt) {
        stmt = xasprintf("ferry_s%" PRIu64, conn->next_stmt++);
        res = PQprepare(conn->handle, stmt, sql, 0, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            pg_error(conn->handle, res, "cannot prepare statement", err);
            PQclear(res);
            free(stmt);
            return FERRY_ERR;
        }
        PQclear(res);
        stmt_cache_put(conn->cache, sql, stmt);
    }
    *name = stmt;
    return FERRY_OK;
}

static struct store_rows *rows_new(struct store_conn *conn, PGresult *res)
{
    struct pg_rows *rows = xcalloc(1, sizeof(*rows));
    rows->head.conn = conn;
    rows->res = res;
    rows->row = -1;
    rows->blobs = xcalloc((size_t)PQnfields(res), sizeof(*rows->blobs));
    return (struct store_rows *)rows;
}

/* A statement whose result columns changed under it (ALTER TABLE behind SELECT *) fails
 * with 0A000 "cached plan must not change result type" for as long as it lives. */
static bool plan_changed(const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return state && strcmp(state, "0A000") == 0;
}

/* A statement matching a list of keys (= ANY($n), store_list_match's = ANY(CAST($n ...)))
 * is planned for each run (unnamed) instead of prepared once: its generic plan (see
 * pg_connect) guesses ten keys and, made while the table was new and empty, is kept until
 * an ANALYZE of the table, so a sequential scan stays as the table grows.
 * Pushes of 500 new rows into a fresh table then spent up to half a second each reading
 * it whole to lock rows that were not there (bench/push_pull NODES, auto_explain). */
static bool planned_per_run(const char *sql)
{
    return strstr(sql, "= ANY($") || strstr(sql, "= ANY(CAST($");
}

/* Sends the statement: the prepared one called name, or sql planned for this run. */
static int send_statement(PGconn *pg, const char *name, const char *sql, const struct pg_params *p,
                          int n_params)
{
    return name ? PQsendQueryPrepared(pg, name, n_params, p->values, p->lengths, p->formats, 0)
                : PQsendQueryParams(pg, sql, n_params, NULL, p->values, p->lengths, p->formats, 0);
}

static PGresult *exec_statement(PGconn *pg, const char *name, const char *sql,
                                const struct pg_params *p, int n_params)
{
    return name ? PQexecPrepared(pg, name, n_params, p->values, p->lengths, p->formats, 0)
                : PQexecParams(pg, sql, n_params, NULL, p->values, p->lengths, p->formats, 0);
}

/* Runs the statement (send_statement) after a BEGIN, both in one pipeline: one round trip.
 * Returns the statement's result, or BEGIN's when that failed. */
static PGresult *exec_after_begin(PGconn *pg, const char *begin_text, const char *name,
                                  const char *sql, const struct pg_params *p, int n_params)
{
    PGresult *begin = NULL, *res = NULL, *extra;
    if (PQenterPipelineMode(pg) != 1) { /* not expected: the connection is idle */
        PQclear(PQexec(pg, begin_text));
        return exec_statement(pg, name, sql, p, n_params);
    }
    if (PQsendQueryParams(pg, begin_text, 0, NULL, NULL, NULL, NULL, 0) == 1 &&
        send_statement(pg, name, sql, p, n_params) == 1 && PQpipelineSync(pg) == 1) {
        /* each query's results end with NULL; the sync point's result comes last */
        begin = PQgetResult(pg);
        PQclear(PQgetResult(pg));
        res = PQgetResult(pg);
        PQclear(PQgetResult(pg));
        while ((extra = PQgetResult(pg)) && PQresultStatus(extra) != PGRES_PIPELINE_SYNC)
            PQclear(extra);
        PQclear(extra);
    }
    PQexitPipelineMode(pg);
    if (begin && PQresultStatus(begin) != PGRES_COMMAND_OK) {
        PQclear(res);
        return begin;
    }
    PQclear(begin);
    return res;
}

/* Prepares (or finds) sql and runs it into *res. On a changed plan the cache goes (the
 * cache cannot drop one entry; the abandoned names die with the connection) and, when
 * no transaction was lost with the error, the statement is prepared and run again. */
static int run_prepared(struct store_conn *conn, const char *sql, const struct pg_params *p,
                        int n_params, PGresult **res, struct err *err)
{
    const char *name = NULL;
    ExecStatusType status;

    for (int attempt = 0;; attempt++) {
        if (!planned_per_run(sql) && prepare(conn, sql, &name, err) != FERRY_OK)
            return FERRY_ERR;
        bool begin = conn->begin_pending;
        conn->begin_pending = false;
        *res = begin ? exec_after_begin(conn->handle, begin_sql(conn), name, sql, p, n_params)
                     : exec_statement(conn->handle, name, sql, p, n_params);
        status = PQresultStatus(*res);
        if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
            return FERRY_OK;
        if (!plan_changed(*res))
            break;
        pg_clear_cache(conn);
        if (attempt > 0 || PQtransactionStatus(conn->handle) != PQTRANS_IDLE)
            break;
        PQclear(*res);
        *res = NULL;
    }
    return pg_error(conn->handle, *res, "statement failed", err);
}

static int pg_query(struct store_conn *conn, const char *sql, const struct store_val *params,
                    size_t n_params, struct store_rows **out, int64_t *changes, struct err *err)
{
    struct pg_params p;
    PGresult *res = NULL;
    int rc = FERRY_ERR;

    if (params_init(&p, params, n_params, err) != FERRY_OK ||
        run_prepared(conn, sql, &p, (int)n_params, &res, err) != FERRY_OK)
        goto out;
    if (out) {
        *out = rows_new(conn, res);
        res = NULL;
    } else if (changes) {
        *changes = strtoll(PQcmdTuples(res), NULL, 10); /* "" when not applicable */
    }
    rc = FERRY_OK;
out:
    PQclear(res);
    params_cleanup(&p);
    return rc;
}

static void free_blobs(struct pg_rows *rows)
{
    int n = PQnfields(rows->res);
    for (int i = 0; i < n; i++) {
        PQfreemem(rows->blobs[i].bytes);
        rows->blobs[i] = (struct pg_blob){0};
    }
}

static int pg_rows_next(struct store_rows *r, struct err *err)
{
    struct pg_rows *rows = (struct pg_rows *)r;
    (void)err; /* the whole result is already here; nothing can fail now */
    free_blobs(rows);
    if (rows->row < PQntuples(rows->res))
        rows->row++;
    return rows->row < PQntuples(rows->res) ? 1 : 0;
}

static int pg_rows_ncols(const struct store_rows *r)
{
    return PQnfields(((const struct pg_rows *)r)->res);
}

static const char *pg_rows_name(const struct store_rows *r, int col)
{
    return PQfname(((const struct pg_rows *)r)->res, col);
}

static bool pg_rows_isnull(const struct store_rows *r, int col)
{
    const struct pg_rows *rows = (const struct pg_rows *)r;
    return PQgetisnull(rows->res, rows->row, col) != 0; /* 1 out of range, too */
}

static const char *pg_rows_text(const struct store_rows *r, int col)
{
    const struct pg_rows *rows = (const struct pg_rows *)r;
    if (pg_rows_isnull(r, col))
        return NULL;
    return PQgetvalue(rows->res, rows->row, col);
}

/* Numbers arrive as text; booleans as "t"/"f", read as 1/0. */
static int64_t pg_rows_int(const struct store_rows *r, int col)
{
    const char *t = pg_rows_text(r, col);
    if (!t)
        return 0;
    if (t[0] == 't' && t[1] == '\0')
        return 1;
    return strtoll(t, NULL, 10);
}

/* PostgreSQL 12 and later print floats with the shortest text that reads back exactly. */
static double pg_rows_real(const struct store_rows *r, int col)
{
    const char *t = pg_rows_text(r, col);
    return t ? strtod(t, NULL) : 0.0;
}

/* bytea arrives hex-escaped in text format; the unescaped bytes are kept per column
 * until the next row, so two columns of one row can be read side by side. */
static const void *pg_rows_blob(const struct store_rows *r, int col, size_t *len)
{
    struct pg_rows *rows = (struct pg_rows *)r; /* blobs is a cache, not visible state */
    const char *text = pg_rows_text(r, col);
    struct pg_blob *blob;

    *len = 0;
    if (!text)
        return NULL;
    if (PQftype(rows->res, col) != PG_OID_BYTEA) {
        *len = (size_t)PQgetlength(rows->res, rows->row, col);
        return text;
    }
    blob = &rows->blobs[col];
    if (!blob->bytes) {
        blob->bytes = PQunescapeBytea((const unsigned char *)text, &blob->len);
        if (!blob->bytes) { /* only fails to allocate: ferry's policy, see ferry.h */
            log_fatal("out_of_memory", "out of memory unescaping bytea");
            abort();
        }
    }
    *len = blob->len;
    return blob->bytes;
}

/* PostgreSQL knows the type of a column, not of a value: bool and numeric stay text,
 * since their text ("t", "1.50") is not what an SV_INT or SV_REAL reader expects. */
static enum store_type pg_rows_type(const struct store_rows *r, int col)
{
    if (pg_rows_isnull(r, col))
        return SV_NULL;
    switch (PQftype(((const struct pg_rows *)r)->res, col)) {
    case PG_OID_INT2:
    case PG_OID_INT4:
    case PG_OID_INT8:
        return SV_INT;
    case PG_OID_FLOAT4:
    case PG_OID_FLOAT8:
        return SV_REAL;
    case PG_OID_BYTEA:
        return SV_BLOB;
    case PG_OID_BOOL:
    default:
        return SV_TEXT;
    }
}

static void pg_rows_free(struct store_rows *r)
{
    struct pg_rows *rows = (struct pg_rows *)r;
    if (!rows)
        return;
    free_blobs(rows);
    free(rows->blobs);
    PQclear(rows->res);
    free(rows);
}

static char *lower_dup(const char *s)
{
    char *out = xstrdup(s ? s : "");
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return out;
}

static int pg_table_info(struct store_conn *conn, const char *table, struct store_table **out,
                         struct err *err)
{
    /* Tables and views in the current schema, as SQLite's pragma_table_info would find
     * them; the name is bound, never spliced. */
    static const char sql[] =
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull::int,"
        " EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid"
        "  AND i.indisprimary AND a.attnum = ANY (i.indkey))::int,"
        " (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '')::int,"
        " pg_catalog.pg_get_expr(d.adbin, d.adrelid)"
        " FROM pg_catalog.pg_attribute a"
        " JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
        " LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relname = $1"
        "  AND c.relkind IN ('r', 'p', 'v') AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attnum";
    struct store_rows *rows = NULL;
    struct store_table *t = xcalloc(1, sizeof(*t));
    struct store_val arg = sv_text(table);
    int rc = FERRY_ERR, step;
    size_t cap = 0;

    t->name = xstrdup(table);
    if (store_query(conn, sql, &arg, 1, &rows, err) != FERRY_OK)
        goto out;
    while ((step = store_rows_next(rows, err)) == 1) {
        if (t->n_cols == cap) {
            cap = cap ? cap * 2 : 8;
            t->cols = xrealloc(t->cols, cap * sizeof(*t->cols));
        }
        struct store_column *c = &t->cols[t->n_cols++];
        c->name = xstrdup(store_rows_text(rows, 0));
        c->decl_type = lower_dup(store_rows_text(rows, 1));
        c->not_null = store_rows_int(rows, 2) != 0;
        c->primary_key = store_rows_int(rows, 3) != 0;
        c->has_default = store_rows_int(rows, 4) != 0;
        c->default_expr = store_rows_isnull(rows, 5) ? NULL : xstrdup(store_rows_text(rows, 5));
        t->n_pk += c->primary_key;
    }
    if (step < 0)
        goto out;
    if (t->n_cols == 0) {
        err_set(err, ERR_NOT_FOUND, "table '%s' does not exist", table);
        goto out;
    }
    *out = t;
    t = NULL;
    rc = FERRY_OK;
out:
    store_rows_free(rows);
    store_table_free(t);
    return rc;
}

static int pg_list_tables(struct store_conn *conn, char ***names, size_t *n, struct err *err)
{
    /* Partitions are part of their parent table, not tables of their own. */
    static const char sql[] = "SELECT c.relname FROM pg_catalog.pg_class c"
                              " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                              " WHERE n.nspname = current_schema()"
                              " AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
                              " AND c.relname NOT LIKE 'ferry\\_%' ESCAPE '\\'"
                              " ORDER BY c.relname";
    struct store_rows *rows = NULL;
    size_t cap = 0;
    int step;

    if (store_query(conn, sql, NULL, 0, &rows, err) != FERRY_OK)
        return FERRY_ERR;
    while ((step = store_rows_next(rows, err)) == 1) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *names = xrealloc(*names, cap * sizeof(**names));
        }
        (*names)[(*n)++] = xstrdup(store_rows_text(rows, 0));
    }
    store_rows_free(rows);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

/* Only the names are freed: the server drops its statements with the connection, and
 * a name is never reused on a connection that stays open (see store_conn.next_stmt). */
static void pg_clear_cache(struct store_conn *conn)
{
    stmt_cache_free(conn->cache);
    conn->cache = NULL;
}

/* Waits on the connection's socket for a NOTIFY (after the caller ran LISTEN). */
static int pg_wait_notify(struct store_conn *conn, int timeout_ms, struct err *err)
{
    PGconn *pg = conn->handle;
    PGnotify *n;
    int got = 0;
    struct pollfd pfd = {.fd = PQsocket(pg), .events = POLLIN};

    if (!PQconsumeInput(pg))
        return pg_error(pg, NULL, "listening failed", err);
    if ((n = PQnotifies(pg)) != NULL) { /* one was already buffered */
        PQfreemem(n);
        got = 1;
    } else if (poll(&pfd, 1, timeout_ms) > 0 && !PQconsumeInput(pg)) {
        return pg_error(pg, NULL, "listening failed", err);
    }
    while ((n = PQnotifies(pg)) != NULL) {
        PQfreemem(n);
        got = 1;
    }
    return got;
}

const struct store_ops store_pg_ops = {
    .wait_notify = pg_wait_notify,
    .name = "postgres",
    .connect = pg_connect,
    .disconnect = pg_disconnect,
    .healthy = pg_healthy,
    .exec = pg_exec,
    .query = pg_query,
    .rows_next = pg_rows_next,
    .rows_ncols = pg_rows_ncols,
    .rows_name = pg_rows_name,
    .rows_isnull = pg_rows_isnull,
    .rows_text = pg_rows_text,
    .rows_int = pg_rows_int,
    .rows_real = pg_rows_real,
    .rows_blob = pg_rows_blob,
    .rows_type = pg_rows_type,
    .rows_free = pg_rows_free,
    .table_info = pg_table_info,
    .list_tables = pg_list_tables,
    .clear_cache = pg_clear_cache,
};
