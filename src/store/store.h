/* store.h - the one storage interface. Two implementations sit behind it, each a whole
 * file: store_sqlite.c (embedded default) and store_pg.c (PostgreSQL, libpq). Engine
 * code is written once against this header and knows nothing of either backend.
 *
 * SQL passed to this interface uses PostgreSQL-style numbered parameters ($1, $2, ...);
 * the SQLite backend rewrites them to ?1, ?2. Values are always bound, never spliced.
 * Identifiers that come from outside must be checked against store_table_info() and
 * quoted with store_quote_ident(). */
#ifndef FERRY_STORE_H
#define FERRY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry.h"

enum store_dialect {
    STORE_SQLITE,
    STORE_POSTGRES,
};

enum store_type {
    SV_NULL,
    SV_INT,
    SV_REAL,
    SV_TEXT,
    SV_BLOB,
};

/* A bound parameter. Text and blob point at memory the caller keeps alive for the call. */
struct store_val {
    enum store_type type;
    int64_t i;
    double d;
    const char *s; /* text (NUL-terminated) or blob bytes */
    size_t len;    /* blob length */
};

static inline struct store_val sv_null(void)
{
    return (struct store_val){.type = SV_NULL};
}
static inline struct store_val sv_int(int64_t i)
{
    return (struct store_val){.type = SV_INT, .i = i};
}
static inline struct store_val sv_real(double d)
{
    return (struct store_val){.type = SV_REAL, .d = d};
}
/* NULL text binds as SQL NULL. */
static inline struct store_val sv_text(const char *s)
{
    return s ? (struct store_val){.type = SV_TEXT, .s = s} : sv_null();
}
static inline struct store_val sv_blob(const void *p, size_t len)
{
    return (struct store_val){.type = SV_BLOB, .s = p, .len = len};
}

struct store;      /* a database: a pool of connections */
struct store_conn; /* one connection, used by one thread at a time */
struct store_rows; /* the result of one query, read row by row */

/* Column of a table, as the database's own catalog describes it. */
struct store_column {
    char *name;
    char *decl_type; /* declared type as written, lower case ("text", "integer", ...) */
    bool not_null;
    bool primary_key;
    bool has_default;   /* the database fills it when an INSERT leaves it out */
    char *default_expr; /* the default as the catalog writes it, or NULL */
};

struct store_table {
    char *name;
    struct store_column *cols;
    size_t n_cols;
    size_t n_pk; /* number of primary-key columns */
};

/* Opens the database named by url: "sqlite:PATH" or "postgres://..." /
 * "postgresql://...". pool_size bounds the number of open connections. Runs ferry's
 * migrations for the dialect before returning. On failure *out is NULL and err says
 * why. The caller owns the store and releases it with store_close(). */
int store_open(const char *url, int pool_size, struct store **out, struct err *err);

/* Opens another program's database as store_open does, without ferry's migrations
 * (database sync reads and writes user tables there and nothing else) and without
 * changing what the file keeps: an SQLite file keeps its journal mode (ferry's own
 * database is switched to WAL, which is persistent). */
int store_open_foreign(const char *url, int pool_size, struct store **out, struct err *err);

/* Closes every connection. Waits for none: call it after the last user released its
 * connection. store_close(NULL) does nothing. */
void store_close(struct store *st);

enum store_dialect store_dialect(const struct store *st);
enum store_dialect store_conn_dialect(const struct store_conn *conn);
const char *store_dialect_name(const struct store *st);

/* Takes a connection from the pool, waiting while all are in use. The connection is
 * the caller's until store_release(). A connection found broken is reopened. */
int store_acquire(struct store *st, struct store_conn **out, struct err *err);

/* Returns a connection to the pool. A transaction still open is rolled back first.
 * store_release(NULL) does nothing. */
void store_release(struct store_conn *conn);

/* Pool gauges for /metrics. */
void store_pool_stats(struct store *st, int *size, int *in_use);

/* Cheap liveness check (SELECT 1) on a pooled connection. */
int store_ping(struct store *st, struct err *err);

/* Transactions. store_begin starts a write transaction (SQLite: BEGIN IMMEDIATE, so a
 * writer waits for the lock at the start rather than failing at the first write). On
 * commit the data is durable. store_rollback on a connection with no open transaction
 * does nothing, so it can sit unconditionally on an exit path. */
int store_begin(struct store_conn *conn, struct err *err);
int store_commit(struct store_conn *conn, struct err *err);
/* Starts a read-only transaction whose queries all see one snapshot (SQLite: a deferred
 * transaction; PostgreSQL: REPEATABLE READ). End it with store_rollback. */
int store_begin_read(struct store_conn *conn, struct err *err);
void store_rollback(struct store_conn *conn);
bool store_in_txn(const struct store_conn *conn);

/* Runs fn(c, ctx, err) inside a write transaction and returns once that transaction is
 * committed, so durable, or rolled back. fn must not begin, commit or roll back; it gets
 * the connection to write on, which may be another thread's: on SQLite, writers arriving
 * while a commit is in flight share the next transaction (group commit), each inside its
 * own SAVEPOINT on the connection of the thread leading the group, so a failing fn rolls
 * back only its own writes, and one COMMIT (one fsync) serves them all. PostgreSQL: BEGIN,
 * fn and COMMIT on conn. FERRY_OK only when fn succeeded and its writes are committed;
 * otherwise err is fn's error, or the transaction's. */
typedef int (*store_write_fn)(struct store_conn *c, void *ctx, struct err *err);
int store_write(struct store_conn *conn, store_write_fn fn, void *ctx, struct err *err);
/* Transactions store_write committed, and writers they held (more writers than commits:
 * group commit at work), since the store opened. */
void store_write_stats(struct store *st, uint64_t *commits, uint64_t *writes);

/* A list of texts bound as one parameter, so a statement matches a whole set of keys
 * whatever its size: store_list_match gives SQL true where column is one of the texts in
 * parameter $param (PostgreSQL: = ANY of a text array; SQLite: IN json_each of a JSON
 * array), store_list_text that parameter's value. Both return text the caller frees. */
char *store_list_match(const struct store_conn *conn, const char *column, int param);
char *store_list_text(const struct store_conn *conn, const char *const *items, size_t n);

/* Runs one or more statements without parameters or results (DDL, migrations). */
int store_exec(struct store_conn *conn, const char *sql, struct err *err);

/* Runs one parameterised statement. The prepared statement is cached on the
 * connection, keyed by the SQL text, so repeated calls skip the parse. When out is not
 * NULL the caller receives the result and must store_rows_free() it before the next
 * query on this connection; when out is NULL the statement is run to completion.
 * *changes (when not NULL) gets the number of rows changed. */
int store_query(struct store_conn *conn, const char *sql, const struct store_val *params,
                size_t n_params, struct store_rows **out, struct err *err);

/* Runs a statement that changes rows and reports how many it changed. */
int store_run(struct store_conn *conn, const char *sql, const struct store_val *params,
              size_t n_params, int64_t *changes, struct err *err);

/* Advances to the next row: 1 when a row is there, 0 at the end, FERRY_ERR on error. */
int store_rows_next(struct store_rows *rows, struct err *err);
int store_rows_ncols(const struct store_rows *rows);
const char *store_rows_name(const struct store_rows *rows, int col);
bool store_rows_isnull(const struct store_rows *rows, int col);
/* Text of the column, NULL for SQL NULL. Valid until the next store_rows_next(). */
const char *store_rows_text(const struct store_rows *rows, int col);
int64_t store_rows_int(const struct store_rows *rows, int col);
double store_rows_real(const struct store_rows *rows, int col);
/* Bytes of a blob (or text) column; *len gets the length. Valid until the next row. */
const void *store_rows_blob(const struct store_rows *rows, int col, size_t *len);
/* The storage class of the value in this row (SQLite keeps one per value; PostgreSQL
 * reports the column type). */
enum store_type store_rows_type(const struct store_rows *rows, int col);
void store_rows_free(struct store_rows *rows);

/* Convenience: runs a query expected to return at most one row with one column.
 * *found is false when there was no row. */
int store_query_int(struct store_conn *conn, const char *sql, const struct store_val *params,
                    size_t n_params, int64_t *value, bool *found, struct err *err);

/* Reads a table's columns and primary key from the catalog. Returns FERRY_ERR with
 * ERR_NOT_FOUND when the table does not exist. Free with store_table_free(). */
int store_table_info(struct store_conn *conn, const char *table, struct store_table **out,
                     struct err *err);
void store_table_free(struct store_table *t);

/* Lists user tables (ferry's own tables excluded). Caller frees each name and the array. */
int store_list_tables(struct store_conn *conn, char ***names, size_t *n, struct err *err);

/* Returns a newly allocated, double-quoted identifier ("a""b" for a"b). */
char *store_quote_ident(const char *ident);

/* Subscribes the connection to a notification channel (PostgreSQL LISTEN). Returns
 * ERR_UNAVAILABLE where the backend has no notifications (SQLite): poll instead. */
int store_listen(struct store_conn *conn, const char *channel, struct err *err);
/* Waits up to timeout_ms for a notification: 1 when one came, 0 on timeout. */
int store_wait_notify(struct store_conn *conn, int timeout_ms, struct err *err);

/* Current schema version (highest migration applied). */
int store_schema_version(struct store *st);

#endif
