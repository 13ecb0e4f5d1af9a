/* watch.c - see watch.h. On PostgreSQL the watcher also writes the mark that brings
 * other programs' committed changes under the head (settle.h) when a NOTIFY says some
 * were committed. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sync/feed.h"
#include "sync/settle.h"
#include "sync/rules.h"
#include "sync/watch.h"
#include "util/timeutil.h"

#define POLL_MS 20         /* SQLite: how often the counter is read */
#define LISTEN_WAIT_MS 100 /* PostgreSQL: longest wait for a NOTIFY before a read */
#define RETRY_MS 500       /* after a database error */
#define SETTLE_EVERY_MS 50
/* A longer jump of the head is not read for its keys: every waiter is woken instead. */
#define KEYS_READ_MAX_SEQS 20000
#define KEYS_MAX 512 /* more distinct (table, scope) pairs in one move: wake everyone */

struct watch {
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t lock; /* guards poked, with cond */
    pthread_cond_t cond;
    bool poked;
    struct store *st;
    void (*on_change)(void *ctx, const struct watch_move *move);
    void (*on_tick)(void *ctx);
    void *ctx;
};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Sleeps up to ms, or until watch_poke. */
static void wait_poke(struct watch *w, int ms)
{
    struct timespec until = time_after_ms(CLOCK_MONOTONIC, ms);
    pthread_mutex_lock(&w->lock);
    while (!w->poked && !atomic_load(&w->stop))
        if (pthread_cond_timedwait(&w->cond, &w->lock, &until) == ETIMEDOUT)
            break;
    w->poked = false;
    pthread_mutex_unlock(&w->lock);
}

void watch_poke(struct watch *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->poked = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* A wake key: FNV-1a over a kind byte, the table and the scope value. 'T': any change
 * of the table; 'S': a change in one scope value of it. Two keys that collide only wake
 * a reader for nothing. */
static uint64_t key_of(char kind, const char *table, const char *scope)
{
    uint64_t hash = 1469598103934665603ULL;
    hash = (hash ^ (unsigned char)kind) * 1099511628211ULL;
    for (const char *p = table; *p; p++)
        hash = (hash ^ (unsigned char)*p) * 1099511628211ULL;
    hash = (hash ^ 0xffu) * 1099511628211ULL; /* no byte of a name: ends the table */
    for (const char *p = scope ? scope : ""; *p; p++)
        hash = (hash ^ (unsigned char)*p) * 1099511628211ULL;
    return hash;
}

size_t watch_keys_of(const struct feed_query *q, uint64_t keys[WATCH_MAX_KEYS])
{
    size_t n = 0;
    for (size_t i = 0; i < q->n_tables; i++) {
        char value[RULES_VALUE_MAX];
        const struct synced_table *t = q->tables[i];
        enum rules_reach reach = rules_reach(&t->rule, q->caller, value);
        if (reach == REACH_NONE)
            continue;
        if (n == WATCH_MAX_KEYS)
            return 0;
        keys[n++] = reach == REACH_ALL ? key_of('T', t->name, NULL) : key_of('S', t->name, value);
    }
    return n;
}

static int by_value(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* A writer's keys beyond this many are not worth sorting: the watcher wakes their readers. */
#define WAKE_MAX_KEYS 64

static void wake_key(struct watch_wake *k, uint64_t key)
{
    for (size_t i = 0; i < k->n_keys; i++)
        if (k->keys[i] == key)
            return;
    if (k->n_keys == WAKE_MAX_KEYS) {
        k->unknown = true;
        return;
    }
    if (k->n_keys == k->cap) {
        k->cap = k->cap ? k->cap * 2 : 4;
        k->keys = xrealloc(k->keys, k->cap * sizeof(*k->keys));
    }
    k->keys[k->n_keys++] = key;
}

void watch_wake_add(struct watch_wake *k, const char *table, const char *scope)
{
    wake_key(k, key_of('T', table, NULL));
    if (scope)
        wake_key(k, key_of('S', table, scope));
}

void watch_wake(struct watch *w, struct watch_wake *k)
{
    if (w && !k->unknown && k->n_keys > 0 && k->head > 0) {
        qsort(k->keys, k->n_keys, sizeof(*k->keys), by_value);
        struct watch_move move = {k->head, k->keys, k->n_keys};
        w->on_change(w->ctx, &move);
    }
    free(k->keys);
    *k = (struct watch_wake){0};
}

/* The tables and scope values of the changes in (from, to]: each entry's, and every
 * value its row ever left (its exits, shown as deletes to those scopes' readers). An entry
 * that moved above `to` meanwhile is read with the next move, with its exits whatever
 * their seq (an exit's seq may lie in this move while its entry is read in the next);
 * an older exit of the row only wakes its readers for nothing. */
static const char KEYS_SQL[] =
    "SELECT tbl, scope FROM ferry_changes WHERE seq > $1 AND seq <= $2"
    " UNION SELECT x.tbl, x.scope FROM ferry_changes c JOIN ferry_scope_exits x"
    " ON x.tbl = c.tbl AND x.pk = c.pk WHERE c.seq > $1 AND c.seq <= $2"
    " LIMIT $3";

/* Reads the wake keys of the move (from, to] into *keys (sorted); *keys stays NULL when
 * every waiter should be woken. */
static int move_keys(struct store_conn *c, int64_t from, int64_t to, uint64_t **keys, size_t *n,
                     struct err *err)
{
    struct store_val v[3] = {sv_int(from), sv_int(to), sv_int(KEYS_MAX + 1)};
    struct store_rows *rows = NULL;
    uint64_t *out = NULL;
    size_t count = 0, n_rows = 0;
    int step, rc = FERRY_ERR;
    bool resync = false;

    *keys = NULL;
    *n = 0;
    if (from < 0 || to - from > KEYS_READ_MAX_SEQS)
        return FERRY_OK;
    if (store_query(c, KEYS_SQL, v, 3, &rows, err) != FERRY_OK)
        goto out;
    out = xmalloc(2 * (KEYS_MAX + 1) * sizeof(*out));
    while ((step = store_rows_next(rows, err)) == 1) {
        const char *table = store_rows_text(rows, 0);
        n_rows++;
        /* a resync mark (table '', changelog_resync_mark) names no table: the devices it
         * sends back to cursor 0 are told by their next read (410), so all must read */
        resync = resync || !*table;
        out[count++] = key_of('T', table, NULL);
        if (!store_rows_isnull(rows, 1))
            out[count++] = key_of('S', table, store_rows_text(rows, 1));
    }
    if (step != 0)
        goto out;
    rc = FERRY_OK;
    /* nothing to read, a resync mark, or more than the statement returned (cut short) */
    if (n_rows == 0 || n_rows > KEYS_MAX || resync)
        goto out;
    qsort(out, count, sizeof(*out), by_value);
    *keys = out;
    *n = count;
    out = NULL;
out:
    store_rows_free(rows);
    free(out);
    return rc;
}

/* Tells the callback that the log moved from *last to head, with the move's keys. */
static int report_move(struct watch *w, struct store_conn *c, int64_t *last, int64_t head,
                       struct err *err)
{
    uint64_t *keys = NULL;
    size_t n_keys = 0;
    if (move_keys(c, *last, head, &keys, &n_keys, err) != FERRY_OK)
        return FERRY_ERR;
    *last = head;
    struct watch_move move = {head, keys, n_keys};
    w->on_change(w->ctx, &move);
    free(keys);
    return FERRY_OK;
}

/* Runs until stopped or until the connection fails (then the caller reconnects). */
static void watch_on(struct watch *w, struct store_conn *c, int64_t *last)
{
    struct err err = {0};
    bool listening = store_listen(c, "ferry_changes", &err) == FERRY_OK;
    int64_t settled_at = 0;
    while (!atomic_load(&w->stop)) {
        int64_t head = 0;
        if (listening) {
            if (store_wait_notify(c, LISTEN_WAIT_MS, &err) < 0)
                return;
        } else {
            wait_poke(w, POLL_MS);
        }
        /* The head first: a push brings the head over its own changes before it
         * answers (its mark's NOTIFY is what woke this loop), so its waiters are woken
         * before anything else runs here. */
        if (feed_head(c, &head, &err) != FERRY_OK ||
            (head != *last && report_move(w, c, last, head, &err) != FERRY_OK))
            return;
        /* Then a mark for what other programs committed (settle.h); the head moves when it
         * commits, and its NOTIFY brings the next loop. Under a stream of pushes the check
         * would run per NOTIFY: at most every SETTLE_EVERY_MS. */
        int64_t now = time_mono_us();
        if (store_conn_dialect(c) == STORE_POSTGRES && now - settled_at >= SETTLE_EVERY_MS * 1000) {
            settled_at = now;
            if (settle_watch(c, &err) != FERRY_OK)
                return;
        }
        w->on_tick(w->ctx);
    }
}

static void *watch_main(void *arg)
{
    struct watch *w = arg;
    int64_t last = -1;
    while (!atomic_load(&w->stop)) {
        struct store_conn *c = NULL;
        struct err err = {0};
        if (store_acquire(w->st, &c, &err) == FERRY_OK) {
            watch_on(w, c, &last);
            /* The connection goes back to the pool: it must not keep collecting
             * notifications nobody reads (a broken one is reopened anyway). */
            if (store_conn_dialect(c) == STORE_POSTGRES)
                store_exec(c, "UNLISTEN *", &err);
        }
        store_release(c);
        if (!atomic_load(&w->stop)) {
            w->on_tick(w->ctx);
            sleep_ms(RETRY_MS);
        }
    }
    return NULL;
}

int watch_start(struct store *st, void (*on_change)(void *ctx, const struct watch_move *move),
                void (*on_tick)(void *ctx), void *ctx, struct watch **out, struct err *err)
{
    struct watch *w = xcalloc(1, sizeof(*w));
    w->st = st;
    w->on_change = on_change;
    w->on_tick = on_tick;
    w->ctx = ctx;
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return err_set(err, ERR_INTERNAL, "cannot start the change watcher");
    }
    *out = w;
    return FERRY_OK;
}

void watch_stop(struct watch *w)
{
    if (!w)
        return;
    atomic_store(&w->stop, true);
    watch_poke(w);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
