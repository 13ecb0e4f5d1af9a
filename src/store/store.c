/* store.c - the backend-independent half of the store: opening by URL, the connection
 * pool, dispatch to the backend, the prepared-statement cache and the migrations
 * runner. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"
#include "util/timeutil.h"

static int run_migrations(struct store *st, struct err *err);

static int parse_url(const char *url, enum store_dialect *dialect, char **target, struct err *err)
{
    if (strncmp(url, "sqlite:", 7) == 0) {
        const char *path = url + 7;
        if (strncmp(path, "//", 2) == 0) /* sqlite:///abs/path */
            path += 2;
        if (!*path)
            return err_set(err, ERR_INVALID, "database URL '%s' names no file", url);
        *dialect = STORE_SQLITE;
        *target = xstrdup(path);
        return FERRY_OK;
    }
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        *dialect = STORE_POSTGRES;
        *target = xstrdup(url);
        return FERRY_OK;
    }
    (void)url; /* never echoed: it may hold a password */
    return err_set(err, ERR_INVALID, "database URL must start with sqlite: or postgres://");
}

static int open_store(const char *url, int pool_size, bool foreign, struct store **out,
                      struct err *err)
{
    int rc = FERRY_ERR;
    struct store *st = xcalloc(1, sizeof(*st));
    struct store_conn *conn = NULL;

    *out = NULL;
    pthread_mutex_init(&st->lock, NULL);
    pthread_mutex_init(&st->writer, NULL);
    store_group_init(&st->group);
    pthread_cond_init(&st->freed, NULL);
    if (parse_url(url, &st->dialect, &st->target, err) != FERRY_OK)
        goto out;
    st->ops = st->dialect == STORE_SQLITE ? &store_sqlite_ops : &store_pg_ops;
    st->foreign = foreign;
    st->pool_size = pool_size < 1 ? 1 : pool_size;
    st->conns = xcalloc((size_t)st->pool_size, sizeof(*st->conns));
    for (int i = 0; i < st->pool_size; i++)
        st->conns[i].st = st;

    /* Open one connection now so a bad URL fails at start-up, not at the first request. */
    if (store_acquire(st, &conn, err) != FERRY_OK)
        goto out;
    store_release(conn);
    if (!foreign && run_migrations(st, err) != FERRY_OK)
        goto out;
    *out = st;
    st = NULL;
    rc = FERRY_OK;
out:
    store_close(st);
    return rc;
}

int store_open(const char *url, int pool_size, struct store **out, struct err *err)
{
    return open_store(url, pool_size, false, out, err);
}

int store_open_foreign(const char *url, int pool_size, struct store **out, struct err *err)
{
    return open_store(url, pool_size, true, out, err);
}

void store_close(struct store *st)
{
    if (!st)
        return;
    for (int i = 0; st->conns && i < st->pool_size; i++) {
        struct store_conn *c = &st->conns[i];
        if (c->handle) {
            st->ops->clear_cache(c);
            st->ops->disconnect(c->handle);
        }
    }
    free(st->conns);
    free(st->target);
    pthread_mutex_destroy(&st->lock);
    pthread_mutex_destroy(&st->writer);
    store_group_cleanup(&st->group);
    pthread_cond_destroy(&st->freed);
    free(st);
}

enum store_dialect store_dialect(const struct store *st)
{
    return st->dialect;
}

enum store_dialect store_conn_dialect(const struct store_conn *conn)
{
    return conn->st->dialect;
}

const char *store_dialect_name(const struct store *st)
{
    return st->ops->name;
}

int store_schema_version(struct store *st)
{
    return st->schema_version;
}

int store_acquire(struct store *st, struct store_conn **out, struct err *err)
{
    struct store_conn *c = NULL;

    *out = NULL;
    pthread_mutex_lock(&st->lock);
    while (st->in_use == st->pool_size)
        pthread_cond_wait(&st->freed, &st->lock);
    /* Prefer a connection that is already open. */
    for (int i = 0; i < st->pool_size && !c; i++)
        if (!st->conns[i].busy && st->conns[i].handle)
            c = &st->conns[i];
    for (int i = 0; i < st->pool_size && !c; i++)
        if (!st->conns[i].busy)
            c = &st->conns[i];
    c->busy = true;
    st->in_use++;
    pthread_mutex_unlock(&st->lock);

    if (c->handle && !st->ops->healthy(c->handle)) {
        st->ops->clear_cache(c);
        st->ops->disconnect(c->handle);
        c->handle = NULL;
    }
    if (!c->handle && st->ops->connect(st, &c->handle, err) != FERRY_OK) {
        c->handle = NULL;
        store_release(c);
        return FERRY_ERR;
    }
    *out = c;
    return FERRY_OK;
}

void store_release(struct store_conn *conn)
{
    if (!conn)
        return;
    struct store *st = conn->st;
    if (conn->open_rows) {
        st->ops->rows_free(conn->open_rows);
        conn->open_rows = NULL;
    }
    store_rollback(conn);
    pthread_mutex_lock(&st->lock);
    conn->busy = false;
    st->in_use--;
    pthread_cond_signal(&st->freed);
    pthread_mutex_unlock(&st->lock);
}

void store_pool_stats(struct store *st, int *size, int *in_use)
{
    pthread_mutex_lock(&st->lock);
    *size = st->pool_size;
    *in_use = st->in_use;
    pthread_mutex_unlock(&st->lock);
}

int store_ping(struct store *st, struct err *err)
{
    struct store_conn *c = NULL;
    int64_t one = 0;
    bool found = false;
    int rc = FERRY_ERR;

    if (store_acquire(st, &c, err) != FERRY_OK)
        goto out;
    rc = store_query_int(c, "SELECT 1", NULL, 0, &one, &found, err);
out:
    store_release(c);
    return rc;
}

static void release_writer(struct store_conn *conn)
{
    if (conn->holds_writer) {
        conn->holds_writer = false;
        pthread_mutex_unlock(&conn->st->writer);
    }
}

int store_begin(struct store_conn *conn, struct err *err)
{
    bool sqlite = conn->st->dialect == STORE_SQLITE;
    if (conn->in_txn)
        return err_set(err, ERR_INTERNAL, "transaction already open");
    if (!sqlite) {
        /* READ COMMITTED takes no snapshot at BEGIN: it can wait for the first statement
         * and travel with it, saving a round trip per transaction. */
        conn->begin_pending = true;
        conn->begin_read = false;
        conn->in_txn = true;
        return FERRY_OK;
    }
    pthread_mutex_lock(&conn->st->writer);
    conn->holds_writer = true;
    if (conn->st->ops->exec(conn, "BEGIN IMMEDIATE", err) != FERRY_OK) {
        release_writer(conn);
        return FERRY_ERR;
    }
    conn->in_txn = true;
    return FERRY_OK;
}

int store_begin_read(struct store_conn *conn, struct err *err)
{
    if (conn->in_txn)
        return err_set(err, ERR_INTERNAL, "transaction already open");
    if (conn->st->dialect != STORE_SQLITE) {
        /* A REPEATABLE READ snapshot is taken by the first statement, not by BEGIN: the
         * BEGIN can travel with that statement (store_pg.c), a round trip less a read. */
        conn->begin_pending = true;
        conn->begin_read = true;
        conn->in_txn = true;
        return FERRY_OK;
    }
    if (conn->st->ops->exec(conn, "BEGIN DEFERRED", err) != FERRY_OK)
        return FERRY_ERR;
    conn->in_txn = true;
    return FERRY_OK;
}

int store_commit(struct store_conn *conn, struct err *err)
{
    if (!conn->in_txn)
        return err_set(err, ERR_INTERNAL, "no transaction to commit");
    if (conn->begin_pending) { /* nothing was sent: nothing to commit */
        conn->begin_pending = false;
        conn->in_txn = false;
        return FERRY_OK;
    }
    int rc = conn->st->ops->exec(conn, "COMMIT", err);
    if (rc != FERRY_OK) {
        store_rollback(conn);
        return rc;
    }
    conn->in_txn = false;
    release_writer(conn);
    return FERRY_OK;
}

void store_rollback(struct store_conn *conn)
{
    struct err ignored;
    if (!conn || !conn->in_txn)
        return;
    if (conn->begin_pending) {
        conn->begin_pending = false;
        conn->in_txn = false;
        return;
    }
    if (conn->open_rows) {
        conn->st->ops->rows_free(conn->open_rows);
        conn->open_rows = NULL;
    }
    conn->st->ops->exec(conn, "ROLLBACK", &ignored);
    conn->in_txn = false;
    release_writer(conn);
}

bool store_in_txn(const struct store_conn *conn)
{
    return conn->in_txn;
}

int store_exec(struct store_conn *conn, const char *sql, struct err *err)
{
    return conn->st->ops->exec(conn, sql, err);
}

int store_query(struct store_conn *conn, const char *sql, const struct store_val *params,
                size_t n_params, struct store_rows **out, struct err *err)
{
    int64_t changes = 0;
    if (out)
        *out = NULL;
    if (conn->open_rows)
        return err_set(err, ERR_INTERNAL, "previous result on this connection not freed");
    int rc = conn->st->ops->query(conn, sql, params, n_params, out, &changes, err);
    if (rc == FERRY_OK && out)
        conn->open_rows = *out;
    return rc;
}

int store_run(struct store_conn *conn, const char *sql, const struct store_val *params,
              size_t n_params, int64_t *changes, struct err *err)
{
    int64_t n = 0;
    if (conn->open_rows)
        return err_set(err, ERR_INTERNAL, "previous result on this connection not freed");
    /* A write outside a transaction queues with the other writers of this process,
     * rather than sleeping in SQLite's busy handler behind a long push. */
    bool queue = conn->st->dialect == STORE_SQLITE && !conn->in_txn;
    if (queue)
        pthread_mutex_lock(&conn->st->writer);
    int rc = conn->st->ops->query(conn, sql, params, n_params, NULL, &n, err);
    if (queue)
        pthread_mutex_unlock(&conn->st->writer);
    if (changes)
        *changes = n;
    return rc;
}

int store_query_int(struct store_conn *conn, const char *sql, const struct store_val *params,
                    size_t n_params, int64_t *value, bool *found, struct err *err)
{
    struct store_rows *rows = NULL;
    int rc = FERRY_ERR;
    int step;

    *found = false;
    if (store_query(conn, sql, params, n_params, &rows, err) != FERRY_OK)
        goto out;
    step = conn->st->ops->rows_next(rows, err);
    if (step < 0)
        goto out;
    if (step == 1 && !conn->st->ops->rows_isnull(rows, 0)) {
        const char *text = conn->st->ops->rows_text(rows, 0);
        *value = text ? strtoll(text, NULL, 10) : 0;
        *found = true;
    }
    rc = FERRY_OK;
out:
    if (rows) {
        conn->st->ops->rows_free(rows);
        conn->open_rows = NULL;
    }
    return rc;
}

int store_table_info(struct store_conn *conn, const char *table, struct store_table **out,
                     struct err *err)
{
    *out = NULL;
    return conn->st->ops->table_info(conn, table, out, err);
}

void store_table_free(struct store_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_cols; i++) {
        free(t->cols[i].name);
        free(t->cols[i].decl_type);
        free(t->cols[i].default_expr);
    }
    free(t->cols);
    free(t->name);
    free(t);
}

int store_list_tables(struct store_conn *conn, char ***names, size_t *n, struct err *err)
{
    *names = NULL;
    *n = 0;
    return conn->st->ops->list_tables(conn, names, n, err);
}

int store_listen(struct store_conn *conn, const char *channel, struct err *err)
{
    if (!conn->st->ops->wait_notify)
        return err_set(err, ERR_UNAVAILABLE, "%s has no notifications", conn->st->ops->name);
    char *quoted = store_quote_ident(channel);
    char *sql = xasprintf("LISTEN %s", quoted);
    int rc = store_exec(conn, sql, err);
    free(sql);
    free(quoted);
    return rc;
}

int store_wait_notify(struct store_conn *conn, int timeout_ms, struct err *err)
{
    if (!conn->st->ops->wait_notify)
        return err_set(err, ERR_UNAVAILABLE, "%s has no notifications", conn->st->ops->name);
    return conn->st->ops->wait_notify(conn, timeout_ms, err);
}

char *store_quote_ident(const char *ident)
{
    size_t len = strlen(ident), quotes = 0;
    for (size_t i = 0; i < len; i++)
        quotes += ident[i] == '"';
    char *out = xmalloc(len + quotes + 3), *p = out;
    *p++ = '"';
    for (size_t i = 0; i < len; i++) {
        if (ident[i] == '"')
            *p++ = '"';
        *p++ = ident[i];
    }
    *p++ = '"';
    *p = '\0';
    return out;
}

/* --- rows: thin dispatch through the rows_head every backend's rows struct begins with */

#define ROWS_OPS(rows) (((const struct rows_head *)(rows))->conn->st->ops)

int store_rows_next(struct store_rows *rows, struct err *err)
{
    return ROWS_OPS(rows)->rows_next(rows, err);
}
int store_rows_ncols(const struct store_rows *rows)
{
    return ROWS_OPS(rows)->rows_ncols(rows);
}
const char *store_rows_name(const struct store_rows *rows, int col)
{
    return ROWS_OPS(rows)->rows_name(rows, col);
}
bool store_rows_isnull(const struct store_rows *rows, int col)
{
    return ROWS_OPS(rows)->rows_isnull(rows, col);
}
const char *store_rows_text(const struct store_rows *rows, int col)
{
    return ROWS_OPS(rows)->rows_text(rows, col);
}
int64_t store_rows_int(const struct store_rows *rows, int col)
{
    return ROWS_OPS(rows)->rows_int(rows, col);
}
double store_rows_real(const struct store_rows *rows, int col)
{
    return ROWS_OPS(rows)->rows_real(rows, col);
}
const void *store_rows_blob(const struct store_rows *rows, int col, size_t *len)
{
    return ROWS_OPS(rows)->rows_blob(rows, col, len);
}
enum store_type store_rows_type(const struct store_rows *rows, int col)
{
    return ROWS_OPS(rows)->rows_type(rows, col);
}
void store_rows_free(struct store_rows *rows)
{
    if (!rows)
        return;
    struct store_conn *c = ((struct rows_head *)rows)->conn;
    if (c->open_rows == rows)
        c->open_rows = NULL;
    c->st->ops->rows_free(rows);
}

/* --- migrations ------------------------------------------------------------------ */

static int current_version(struct store_conn *c, int *version, struct err *err)
{
    int64_t v = 0;
    bool found = false;
    if (store_query_int(c, "SELECT MAX(version) FROM ferry_schema_version", NULL, 0, &v, &found,
                        err) != FERRY_OK)
        return FERRY_ERR;
    *version = found ? (int)v : 0;
    return FERRY_OK;
}

/* Whether migration version is recorded as applied. */
static int applied(struct store_conn *c, int version, bool *out, struct err *err)
{
    struct store_val v = sv_int(version);
    int64_t n = 0;
    bool found = false;
    if (store_query_int(c, "SELECT COUNT(*) FROM ferry_schema_version WHERE version = $1", &v, 1,
                        &n, &found, err) != FERRY_OK)
        return FERRY_ERR;
    *out = n > 0;
    return FERRY_OK;
}

/* Applies each migration the database has not recorded, in the list's order, each in its
 * own transaction that records its version. Recorded versions are a set, not a high-water
 * mark: branches developed side by side add migrations with numbers below ones already
 * applied elsewhere, and each must still run once. Two nodes starting at once on one
 * PostgreSQL database race on the version row's primary key: the loser's transaction
 * fails, it finds the version recorded and carries on. */
static int run_migrations(struct store *st, struct err *err)
{
    struct store_conn *c = NULL;
    int rc = FERRY_ERR, version = 0;

    if (store_acquire(st, &c, err) != FERRY_OK)
        goto out;
    /* PostgreSQL's CREATE TABLE IF NOT EXISTS can still fail when two nodes run it at
     * the same moment (a unique violation in its catalog); the second try sees the
     * table. */
    for (int attempt = 0;; attempt++) {
        if (store_exec(c,
                       "CREATE TABLE IF NOT EXISTS ferry_schema_version ("
                       " version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
                       err) == FERRY_OK)
            break;
        if (attempt == 2)
            goto out;
    }
    for (size_t i = 0; i < store_n_migrations; i++) {
        const struct migration *m = &store_migrations[i];
        struct err step_err = {0};
        bool done = false;
        for (int attempt = 0; attempt < 3; attempt++) {
            if (applied(c, m->version, &done, err) != FERRY_OK)
                goto out;
            if (done)
                break;
            const char *sql = st->dialect == STORE_SQLITE ? m->sqlite_sql : m->pg_sql;
            struct store_val v[] = {sv_int(m->version), sv_int(time_now_ms())};
            if (store_begin(c, &step_err) == FERRY_OK &&
                store_exec(c, sql, &step_err) == FERRY_OK &&
                store_run(c,
                          "INSERT INTO ferry_schema_version(version, applied_at)"
                          " VALUES ($1, $2)",
                          v, 2, NULL, &step_err) == FERRY_OK &&
                store_commit(c, &step_err) == FERRY_OK)
                break;
            store_rollback(c);
        }
        if (applied(c, m->version, &done, err) != FERRY_OK)
            goto out;
        if (!done) {
            err_set(err, ERR_DATABASE, "migration %d failed: %s", m->version, step_err.msg);
            goto out;
        }
    }
    if (current_version(c, &version, err) != FERRY_OK)
        goto out;
    st->schema_version = version;
    rc = FERRY_OK;
out:
    store_release(c);
    return rc;
}

/* --- prepared-statement cache ------------------------------------------------------ */

struct cache_slot {
    char *sql;
    void *stmt;
};

struct stmt_cache {
    struct cache_slot *slots;
    size_t cap, count;
    void (*finalize)(void *stmt, void *ctx);
    void *ctx;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

struct stmt_cache *stmt_cache_new(void (*finalize)(void *stmt, void *ctx), void *ctx)
{
    struct stmt_cache *c = xcalloc(1, sizeof(*c));
    c->cap = 64;
    c->slots = xcalloc(c->cap, sizeof(*c->slots));
    c->finalize = finalize;
    c->ctx = ctx;
    return c;
}

void *stmt_cache_get(struct stmt_cache *c, const char *sql)
{
    for (size_t i = hash_str(sql) & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        if (!c->slots[i].sql)
            return NULL;
        if (strcmp(c->slots[i].sql, sql) == 0)
            return c->slots[i].stmt;
    }
}

static void insert_slot(struct cache_slot *slots, size_t cap, char *sql, void *stmt)
{
    size_t i = hash_str(sql) & (cap - 1);
    while (slots[i].sql)
        i = (i + 1) & (cap - 1);
    slots[i].sql = sql;
    slots[i].stmt = stmt;
}

void stmt_cache_put(struct stmt_cache *c, const char *sql, void *stmt)
{
    if ((c->count + 1) * 2 > c->cap) {
        size_t cap = c->cap * 2;
        struct cache_slot *slots = xcalloc(cap, sizeof(*slots));
        for (size_t i = 0; i < c->cap; i++)
            if (c->slots[i].sql)
                insert_slot(slots, cap, c->slots[i].sql, c->slots[i].stmt);
        free(c->slots);
        c->slots = slots;
        c->cap = cap;
    }
    insert_slot(c->slots, c->cap, xstrdup(sql), stmt);
    c->count++;
}

size_t stmt_cache_count(const struct stmt_cache *c)
{
    return c->count;
}

void stmt_cache_free(struct stmt_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->cap; i++) {
        if (c->slots[i].sql) {
            c->finalize(c->slots[i].stmt, c->ctx);
            free(c->slots[i].sql);
        }
    }
    free(c->slots);
    free(c);
}
