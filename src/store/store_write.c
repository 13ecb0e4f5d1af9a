/* store_write.c - write transactions that return only once durable (store_write), with
 * SQLite's group commit: the store's queue of writers waiting for the next transaction and
 * the one thread leading it. Also the list parameter (store_list_*), one bound value that
 * holds a whole set of keys, so a lookup of a batch's rows is one statement. */
#include "store/store_internal.h"
#include "util/buf.h"

/* One writer waiting in the queue; it lives on the waiting thread's stack. */
struct write_item {
    store_write_fn fn;
    void *ctx;
    struct err err;
    int rc;
    bool done;
    struct write_item *next;
};

/* A group holds at most this many writers, so the first of them waits for a bounded
 * number of others. */
#define GROUP_MAX 64

void store_group_init(struct store_group *g)
{
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->done, NULL);
    g->head = g->tail = NULL;
    g->leading = false;
    g->commits = g->writes = 0;
}

void store_group_cleanup(struct store_group *g)
{
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->done);
}

/* Runs one writer inside its own savepoint of the open transaction. A failure rolls back
 * only its writes; FERRY_ERR means the transaction itself is lost (SQLite rolls a whole
 * transaction back on some errors, I/O and out-of-memory among them). */
static int run_in_savepoint(struct store_conn *conn, struct write_item *it, struct err *err)
{
    it->err = (struct err){0};
    if (store_exec(conn, "SAVEPOINT ferry_group", err) != FERRY_OK)
        return FERRY_ERR;
    it->rc = it->fn(conn, it->ctx, &it->err);
    if (conn->open_rows) {
        conn->st->ops->rows_free(conn->open_rows);
        conn->open_rows = NULL;
    }
    if (it->rc != FERRY_OK && !it->err.code)
        err_set(&it->err, ERR_INTERNAL, "write failed");
    if (it->rc == FERRY_OK)
        return store_exec(conn, "RELEASE ferry_group", err);
    return store_exec(conn, "ROLLBACK TO ferry_group; RELEASE ferry_group", err);
}

static void count(struct store *st, size_t writes)
{
    pthread_mutex_lock(&st->group.lock);
    st->group.commits++;
    st->group.writes += writes;
    pthread_mutex_unlock(&st->group.lock);
}

void store_write_stats(struct store *st, uint64_t *commits, uint64_t *writes)
{
    pthread_mutex_lock(&st->group.lock);
    *commits = st->group.commits;
    *writes = st->group.writes;
    pthread_mutex_unlock(&st->group.lock);
}

/* Runs a group on conn in one transaction, with one COMMIT. */
static void run_group(struct store_conn *conn, struct write_item **group, size_t n)
{
    struct err err = {0};
    if (store_begin(conn, &err) != FERRY_OK)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (run_in_savepoint(conn, group[i], &err) != FERRY_OK)
            goto fail;
    if (store_commit(conn, &err) != FERRY_OK)
        goto fail;
    size_t n_ok = 0;
    for (size_t i = 0; i < n; i++)
        n_ok += group[i]->rc == FERRY_OK;
    count(conn->st, n_ok);
    return;
fail:
    store_rollback(conn);
    for (size_t i = 0; i < n; i++) {
        group[i]->rc = FERRY_ERR;
        group[i]->err = err;
    }
}

/* Takes up to GROUP_MAX writers off the queue, in arrival order. */
static size_t take_group(struct store_group *g, struct write_item **group)
{
    size_t n = 0;
    while (g->head && n < GROUP_MAX) {
        group[n++] = g->head;
        g->head = g->head->next;
    }
    if (!g->head)
        g->tail = NULL;
    return n;
}

static int group_write(struct store_conn *conn, store_write_fn fn, void *ctx, struct err *err)
{
    struct store_group *g = &conn->st->group;
    struct write_item me = {.fn = fn, .ctx = ctx};
    struct write_item *group[GROUP_MAX];

    pthread_mutex_lock(&g->lock);
    if (g->tail)
        g->tail->next = &me;
    else
        g->head = &me;
    g->tail = &me;
    /* Wait while another thread leads a group; when it is done, either this writer was
     * in it, or one of those left in the queue leads the next group. */
    while (!me.done && g->leading)
        pthread_cond_wait(&g->done, &g->lock);
    if (!me.done) {
        g->leading = true;
        size_t n = take_group(g, group);
        pthread_mutex_unlock(&g->lock);
        run_group(conn, group, n);
        pthread_mutex_lock(&g->lock);
        for (size_t i = 0; i < n; i++)
            group[i]->done = true;
        g->leading = false;
        pthread_cond_broadcast(&g->done);
    }
    pthread_mutex_unlock(&g->lock);
    if (me.rc != FERRY_OK)
        *err = me.err;
    return me.rc;
}

int store_write(struct store_conn *conn, store_write_fn fn, void *ctx, struct err *err)
{
    int rc = FERRY_ERR;
    if (conn->in_txn)
        return err_set(err, ERR_INTERNAL, "transaction already open");
    if (conn->st->dialect == STORE_SQLITE)
        return group_write(conn, fn, ctx, err);
    if (store_begin(conn, err) != FERRY_OK)
        return FERRY_ERR;
    if (fn(conn, ctx, err) == FERRY_OK && (rc = store_commit(conn, err)) == FERRY_OK)
        count(conn->st, 1);
    store_rollback(conn);
    return rc;
}

/* --- list parameters ----------------------------------------------------------------- */

char *store_list_match(const struct store_conn *conn, const char *column, int param)
{
    if (conn->st->dialect == STORE_POSTGRES)
        return xasprintf("%s = ANY(CAST($%d AS TEXT[]))", column, param);
    return xasprintf("%s IN (SELECT value FROM json_each($%d))", column, param);
}

/* Appends s quoted: PostgreSQL's array element quoting, or a JSON string. */
static void add_quoted(struct buf *b, const char *s, bool json)
{
    buf_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (json && *p < 0x20)
            buf_printf(b, "\\u%04x", *p);
        else {
            if (*p == '"' || *p == '\\')
                buf_puts(b, "\\");
            buf_append(b, p, 1);
        }
    }
    buf_puts(b, "\"");
}

char *store_list_text(const struct store_conn *conn, const char *const *items, size_t n)
{
    bool json = conn->st->dialect != STORE_POSTGRES;
    struct buf b;
    buf_init(&b);
    buf_puts(&b, json ? "[" : "{");
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_puts(&b, ",");
        add_quoted(&b, items[i], json);
    }
    buf_puts(&b, json ? "]" : "}");
    return buf_steal(&b);
}
