/* jobs.c - see jobs.h. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jobs/jobs.h"
#include "util/crashpoint.h"
#include "util/crypto.h"
#include "util/timeutil.h"
#include "webhooks/webhooks.h"

#define JOB_COLS                                                                                   \
    "id, kind, status, user_id, source, target, params, message, result, bytes_done,"              \
    " bytes_total, items_done, items_total, created_at, started_at, completed_at, closed"

static char *dup_col(const struct store_rows *rows, int col)
{
    return store_rows_isnull(rows, col) ? NULL : xstrdup(store_rows_text(rows, col));
}

static int64_t int_col(const struct store_rows *rows, int col)
{
    return store_rows_isnull(rows, col) ? 0 : store_rows_int(rows, col);
}

void jobs_clear(struct job *j)
{
    free(j->kind);
    free(j->status);
    free(j->user_id);
    free(j->source);
    free(j->target);
    free(j->params);
    free(j->message);
    free(j->result);
    memset(j, 0, sizeof(*j));
}

int jobs_create(struct store_conn *c, const char *kind, const char *user_id, const char *source,
                const char *target, const char *params, bool run_here, char id[40], struct err *err)
{
    int64_t now = time_now_ms();
    char hex[33];
    crypto_random_hex(hex, 16);
    snprintf(id, 40, "job_%s", hex);
    struct store_val v[] = {
        sv_text(id),      sv_text(kind),   sv_text(run_here ? "running" : "pending"),
        sv_text(user_id), sv_text(source), sv_text(target),
        sv_text(params),  sv_int(now),     run_here ? sv_int(now) : sv_null()};
    return store_run(c,
                     "INSERT INTO ferry_jobs(id, kind, status, user_id, source, target, params,"
                     " message, created_at, started_at, heartbeat_at)"
                     " VALUES ($1, $2, $3, $4, $5, $6, $7, 'waiting to start', $8, $9, $9)",
                     v, 9, NULL, err);
}

int jobs_get(struct store_conn *c, const char *id, struct job *j, bool *found, struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v = sv_text(id);
    int step = -1;
    *found = false;
    if (store_query(c, "SELECT " JOB_COLS " FROM ferry_jobs WHERE id = $1", &v, 1, &rows, err) ==
            FERRY_OK &&
        (step = store_rows_next(rows, err)) == 1) {
        jobs_clear(j);
        snprintf(j->id, sizeof(j->id), "%s", store_rows_text(rows, 0));
        j->kind = dup_col(rows, 1);
        j->status = dup_col(rows, 2);
        j->user_id = dup_col(rows, 3);
        j->source = dup_col(rows, 4);
        j->target = dup_col(rows, 5);
        j->params = dup_col(rows, 6);
        j->message = dup_col(rows, 7);
        j->result = dup_col(rows, 8);
        j->bytes_done = int_col(rows, 9);
        j->bytes_total = int_col(rows, 10);
        j->items_done = int_col(rows, 11);
        j->items_total = int_col(rows, 12);
        j->created_at = int_col(rows, 13);
        j->started_at = int_col(rows, 14);
        j->completed_at = int_col(rows, 15);
        j->closed = int_col(rows, 16) != 0;
        *found = true;
    }
    store_rows_free(rows);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

int jobs_progress(struct store_conn *c, const char *id, int64_t bytes_done, int64_t bytes_total,
                  int64_t items_done, int64_t items_total, const char *message, struct err *err)
{
    struct store_val v[] = {sv_text(id),          sv_int(bytes_done),  sv_int(bytes_total),
                            sv_int(items_done),   sv_int(items_total), sv_text(message),
                            sv_int(time_now_ms())};
    return store_run(c,
                     "UPDATE ferry_jobs SET bytes_done = $2, bytes_total = $3, items_done = $4,"
                     " items_total = $5, message = $6, heartbeat_at = $7 WHERE id = $1",
                     v, 7, NULL, err);
}

int jobs_finish(struct store_conn *c, const char *id, bool ok, const char *result,
                const char *message, struct err *err)
{
    struct store_val v[] = {sv_text(id), sv_text(ok ? "completed" : "failed"), sv_text(result),
                            sv_text(message), sv_int(time_now_ms())};
    struct job j = {0};
    bool found = false;
    jobs_get(c, id, &j, &found, NULL); /* what ran, for its webhook event */
    enum webhook_event e = webhooks_job_event(j.kind, j.params, ok);
    int rc = webhooks_change(c,
                             "UPDATE ferry_jobs SET status = $2, result = $3, message = $4,"
                             " completed_at = $5, heartbeat_at = $5 WHERE id = $1",
                             v, 5, NULL, e,
                             e < WEBHOOK_N_EVENTS ? webhooks_job_data(id, j.kind, j.source,
                                                                      j.target, ok, result, message)
                                                  : NULL,
                             err);
    jobs_clear(&j);
    return rc;
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static void label(struct buf *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            buf_append(out, "\\", 1);
        if (*v == '\n')
            buf_puts(out, "\\n");
        else
            buf_append(out, v, 1);
    }
}

int jobs_prometheus(struct store_conn *c, struct buf *out, struct err *err)
{
    struct store_rows *rows = NULL;
    int step;
    if (store_query(c,
                    "SELECT kind, status, COUNT(*) FROM ferry_jobs"
                    " WHERE status IN ('pending', 'running') GROUP BY kind, status ORDER BY 1, 2",
                    NULL, 0, &rows, err) != FERRY_OK)
        return FERRY_ERR;
    buf_puts(out, "# HELP ferry_jobs Jobs waiting or running on any node, by kind.\n"
                  "# TYPE ferry_jobs gauge\n");
    while ((step = store_rows_next(rows, err)) == 1) {
        buf_puts(out, "ferry_jobs{kind=\"");
        label(out, store_rows_text(rows, 0));
        buf_printf(out, "\",status=\"%s\"} %lld\n", store_rows_text(rows, 1),
                   (long long)store_rows_int(rows, 2));
    }
    store_rows_free(rows);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

bool jobs_progress_due(int64_t *last_ms, bool final)
{
    int64_t now = time_now_ms();
    if (!final && now - *last_ms < 100)
        return false;
    *last_ms = now;
    return true;
}

int jobs_purge(struct store_conn *c, int64_t before, int64_t *removed, struct err *err)
{
    struct store_val v = sv_int(before);
    return store_run(c,
                     "DELETE FROM ferry_jobs WHERE status IN ('completed', 'failed')"
                     " AND completed_at < $1",
                     &v, 1, removed, err);
}

int jobs_close(struct store_conn *c, const char *id, struct err *err)
{
    struct store_val v = sv_text(id);
    int64_t changed = 0;
    if (store_run(c,
                  "UPDATE ferry_jobs SET closed = 1 WHERE id = $1"
                  " AND status IN ('completed', 'failed')",
                  &v, 1, &changed, err) != FERRY_OK)
        return FERRY_ERR;
    return changed ? FERRY_OK : err_set(err, ERR_CONFLICT, "the session is still in progress");
}

/* --- the worker ---------------------------------------------------------------------- */

#define MAX_KINDS 8

struct job_worker {
    struct store *st;
    struct job_kind kinds[MAX_KINDS];
    size_t n_kinds;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_bool stop;
    bool kicked;
};

/* Takes the oldest pending job (after putting dead ones back); false when none. The
 * conditional UPDATE makes the claim safe between several servers. */
static bool claim(struct job_worker *w, struct store_conn *c, char id[40])
{
    int64_t now = time_now_ms(), claimed = 0;
    struct store_val v[MAX_KINDS + 1];
    struct store_rows *rows = NULL;
    char in[64] = "";
    size_t n = 0;
    for (size_t i = 0; i < w->n_kinds; i++) {
        v[n++] = sv_text(w->kinds[i].kind);
        snprintf(in + strlen(in), sizeof(in) - strlen(in), "%s$%zu", i ? ", " : "", n);
    }
    v[n] = sv_int(now - JOB_STALE_MS);
    char *requeue = xasprintf("UPDATE ferry_jobs SET status = 'pending', message = 'restarting"
                              " after an interruption' WHERE kind IN (%s)"
                              " AND status = 'running' AND heartbeat_at < $%zu",
                              in, n + 1);
    char *next = xasprintf("SELECT id FROM ferry_jobs WHERE kind IN (%s) AND status = 'pending'"
                           " ORDER BY created_at LIMIT 1",
                           in);
    store_run(c, requeue, v, n + 1, NULL, NULL);
    bool found =
        store_query(c, next, v, n, &rows, NULL) == FERRY_OK && store_rows_next(rows, NULL) == 1;
    if (found)
        snprintf(id, 40, "%s", store_rows_text(rows, 0));
    store_rows_free(rows);
    free(requeue);
    free(next);
    if (!found)
        return false;
    struct store_val u[] = {sv_text(id), sv_int(now)};
    store_run(c,
              "UPDATE ferry_jobs SET status = 'running', started_at = $2, heartbeat_at = $2,"
              " message = 'started' WHERE id = $1 AND status = 'pending'",
              u, 2, &claimed, NULL);
    return claimed == 1;
}

/* Beats a running job's heart every HEARTBEAT_MS on its own pooled connection, so that a
 * job busy with one long step (a big file) is not taken for dead. */
struct job_heartbeat {
    struct store *st;
    char id[40];
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool done, failed;
};

#define HEARTBEAT_MS 2000

static void *heartbeat_main(void *arg)
{
    struct job_heartbeat *h = arg;
    pthread_mutex_lock(&h->lock);
    while (!h->done) {
        struct timespec until = time_after_ms(CLOCK_REALTIME, HEARTBEAT_MS);
        if (pthread_cond_timedwait(&h->wake, &h->lock, &until) == 0 || h->done)
            continue;
        pthread_mutex_unlock(&h->lock);
        struct store_conn *c = NULL;
        struct store_val v[] = {sv_text(h->id), sv_int(time_now_ms())};
        if (store_acquire(h->st, &c, NULL) == FERRY_OK)
            store_run(c, "UPDATE ferry_jobs SET heartbeat_at = $2 WHERE id = $1", v, 2, NULL, NULL);
        store_release(c);
        pthread_mutex_lock(&h->lock);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

struct job_heartbeat *jobs_heartbeat_start(struct store *st, const char *id)
{
    struct job_heartbeat *h = xcalloc(1, sizeof(*h));
    h->st = st;
    snprintf(h->id, sizeof(h->id), "%s", id);
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->wake, NULL);
    if (pthread_create(&h->thread, NULL, heartbeat_main, h) != 0)
        h->failed = true; /* no beats: progress updates still beat */
    return h;
}

void jobs_heartbeat_stop(struct job_heartbeat *h)
{
    pthread_mutex_lock(&h->lock);
    h->done = true;
    pthread_cond_signal(&h->wake);
    pthread_mutex_unlock(&h->lock);
    if (!h->failed)
        pthread_join(h->thread, NULL);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->wake);
    free(h);
}

static void run_one(struct job_worker *w, struct store_conn *c, const char *id)
{
    struct job j = {0};
    struct err err = {0};
    bool found = false;
    char *result = NULL, *message = NULL;
    if (jobs_get(c, id, &j, &found, &err) != FERRY_OK || !found) {
        if (found || err.code != ERR_NONE) /* cannot be read: it would be claimed forever */
            jobs_finish(c, id, false, NULL, err.msg, NULL);
        return;
    }
    struct job_heartbeat *beat = jobs_heartbeat_start(w->st, id);
    const struct job_kind *kind = NULL;
    for (size_t i = 0; i < w->n_kinds; i++)
        if (!strcmp(w->kinds[i].kind, j.kind))
            kind = &w->kinds[i];
    int rc = kind->run(kind->ctx, c, &j, &w->stop, &result, &message, &err);
    jobs_heartbeat_stop(beat);
    if (w->stop) {
        /* interrupted: left running; it starts again once its heartbeat is stale */
    } else if (rc == FERRY_OK) {
        jobs_finish(c, id, true, result, message ? message : "completed", NULL);
        CRASH_AT("jobs.after_finish"); /* the completion on record, nothing after it yet */
    } else {
        jobs_finish(c, id, false, NULL, err.msg, NULL);
    }
    free(result);
    free(message);
    jobs_clear(&j);
}

static void *worker_main(void *arg)
{
    struct job_worker *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        pthread_mutex_unlock(&w->lock);
        struct store_conn *c = NULL;
        char id[40];
        bool ran = false;
        if (store_acquire(w->st, &c, NULL) == FERRY_OK) {
            if (claim(w, c, id)) {
                run_one(w, c, id);
                ran = true;
            }
            store_release(c);
        }
        pthread_mutex_lock(&w->lock);
        if (ran || w->kicked) {
            w->kicked = false;
            continue;
        }
        /* dead jobs of other servers are noticed within a few seconds */
        struct timespec until = time_after_ms(CLOCK_REALTIME, 2000);
        while (!w->stop && !w->kicked && pthread_cond_timedwait(&w->wake, &w->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int jobs_worker_start(struct store *st, const struct job_kind *kinds, size_t n,
                      struct job_worker **out, struct err *err)
{
    if (n > MAX_KINDS)
        return err_set(err, ERR_INTERNAL, "%zu job kinds; the worker takes at most %d", n,
                       MAX_KINDS);
    struct job_worker *w = xcalloc(1, sizeof(*w));
    w->st = st;
    for (size_t i = 0; i < n; i++)
        w->kinds[w->n_kinds++] = kinds[i];
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        free(w);
        *out = NULL;
        return err_set(err, ERR_INTERNAL, "cannot start the job worker");
    }
    *out = w;
    return FERRY_OK;
}

void jobs_worker_kick(struct job_worker *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->kicked = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

void jobs_worker_stop(struct job_worker *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    free(w);
}
