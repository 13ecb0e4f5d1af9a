/* store_internal.h - what a backend implements behind store.h. Shared by store.c (the
 * pool, dispatch and migrations runner) and the two backends; nothing else includes it. */
#ifndef FERRY_STORE_INTERNAL_H
#define FERRY_STORE_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "store/store.h"

struct store_ops {
    const char *name;
    /* Opens one connection to st->target. */
    int (*connect)(struct store *st, void **handle, struct err *err);
    void (*disconnect)(void *handle);
    /* True while the connection is usable (PostgreSQL: CONNECTION_OK). */
    bool (*healthy)(void *handle);
    int (*exec)(struct store_conn *conn, const char *sql, struct err *err);
    /* Prepares (or finds in the connection's cache) and runs sql. When out is NULL the
     * statement runs to completion and *changes gets the rows changed. */
    int (*query)(struct store_conn *conn, const char *sql, const struct store_val *params,
                 size_t n_params, struct store_rows **out, int64_t *changes, struct err *err);
    int (*rows_next)(struct store_rows *rows, struct err *err);
    int (*rows_ncols)(const struct store_rows *rows);
    const char *(*rows_name)(const struct store_rows *rows, int col);
    bool (*rows_isnull)(const struct store_rows *rows, int col);
    const char *(*rows_text)(const struct store_rows *rows, int col);
    int64_t (*rows_int)(const struct store_rows *rows, int col);
    double (*rows_real)(const struct store_rows *rows, int col);
    const void *(*rows_blob)(const struct store_rows *rows, int col, size_t *len);
    enum store_type (*rows_type)(const struct store_rows *rows, int col);
    void (*rows_free)(struct store_rows *rows);
    int (*table_info)(struct store_conn *conn, const char *table, struct store_table **out,
                      struct err *err);
    int (*list_tables)(struct store_conn *conn, char ***names, size_t *n, struct err *err);
    /* Waits up to timeout_ms for a notification on a channel the connection LISTENs
     * to: 1 when one came, 0 on timeout. NULL where the backend has none (SQLite). */
    int (*wait_notify)(struct store_conn *conn, int timeout_ms, struct err *err);
    /* Drops every cached prepared statement (after a reconnect). */
    void (*clear_cache)(struct store_conn *conn);
};

struct store_conn {
    struct store *st;
    void *handle; /* sqlite3 * or PGconn * */
    void *cache;  /* backend's prepared-statement cache */
    bool in_txn;
    /* PostgreSQL: store_begin (or store_begin_read: begin_read) was called and BEGIN not
     * yet sent; it goes with the next statement, in one round trip (store_pg.c). */
    bool begin_pending;
    bool begin_read;
    bool holds_writer;            /* SQLite: this connection holds the store's writer mutex */
    bool busy;                    /* handed out by store_acquire */
    struct store_rows *open_rows; /* result not yet freed, if any */
    /* PostgreSQL: the next server-side statement name. It only grows, so a name is never
     * reused on a connection even after its cache was cleared while it stayed open. */
    uint64_t next_stmt;
};

/* SQLite's group commit (store_write.c): writers queue here while one thread runs a
 * group of them in one transaction. */
struct write_item;
struct store_group {
    pthread_mutex_t lock;
    pthread_cond_t done;            /* a group was committed or rolled back */
    struct write_item *head, *tail; /* waiting for the next group, in arrival order */
    bool leading;                   /* a thread is running a group */
    uint64_t commits, writes;       /* for store_write_stats */
};
void store_group_init(struct store_group *g);
void store_group_cleanup(struct store_group *g);

struct store {
    enum store_dialect dialect;
    const struct store_ops *ops;
    char *target; /* file path (SQLite) or conninfo URL (PostgreSQL) */
    bool foreign; /* another program's database: its file's settings stay as they are */
    pthread_mutex_t lock;
    pthread_cond_t freed;
    struct store_conn *conns;
    int pool_size;
    int in_use;
    int schema_version;
    /* SQLite allows one writer per database. Writers in this process queue on this
     * mutex and are woken in turn, instead of sleeping in SQLite's busy handler. */
    pthread_mutex_t writer;
    struct store_group group;
};

/* Every backend's rows struct begins with this, so store.c can dispatch and can clear
 * the connection's open_rows when the rows are freed. */
struct rows_head {
    struct store_conn *conn;
};

extern const struct store_ops store_sqlite_ops;
extern const struct store_ops store_pg_ops;

/* One migration: the same version number for both dialects, each with its own SQL. */
struct migration {
    int version;
    const char *sqlite_sql;
    const char *pg_sql;
};
extern const struct migration store_migrations[];
extern const size_t store_n_migrations;

/* A small cache of prepared statements keyed by SQL text, one per connection. Open
 * addressing over a power-of-two table; the backend supplies the finaliser. */
struct stmt_cache;
/* Statements a connection keeps prepared. Requests choose the SQL's shape (the columns a
 * push names), so the cache is bounded: when full it is emptied and refills with what is
 * in use. */
#define STMT_CACHE_MAX 256
struct stmt_cache *stmt_cache_new(void (*finalize)(void *stmt, void *ctx), void *ctx);
void *stmt_cache_get(struct stmt_cache *c, const char *sql);
/* Takes ownership of stmt; the key is copied. */
void stmt_cache_put(struct stmt_cache *c, const char *sql, void *stmt);
size_t stmt_cache_count(const struct stmt_cache *c);
void stmt_cache_free(struct stmt_cache *c);

#endif
