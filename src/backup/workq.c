/* workq.c - see workq.h. */
#include "backup/workq.h"

void workq_init(struct workq *q, size_t n, bool (*wanted)(void *ctx, size_t i), void *ctx,
                const atomic_bool *stop)
{
    *q = (struct workq){.n = n, .wanted = wanted, .ctx = ctx, .stop = stop};
    pthread_mutex_init(&q->lock, NULL);
}

void workq_destroy(struct workq *q)
{
    pthread_mutex_destroy(&q->lock);
}

bool workq_stopped(const struct workq *q)
{
    return q->stop && atomic_load(q->stop);
}

long workq_take(struct workq *q)
{
    long i = -1;
    pthread_mutex_lock(&q->lock);
    while (q->next < q->n && !q->wanted(q->ctx, q->next))
        q->next++;
    if (q->next < q->n && !q->failed && !workq_stopped(q))
        i = (long)q->next++;
    pthread_mutex_unlock(&q->lock);
    return i;
}

void workq_fail(struct workq *q, const struct err *err)
{
    pthread_mutex_lock(&q->lock);
    if (!q->failed) {
        q->failed = true;
        q->first_err = *err;
    }
    pthread_mutex_unlock(&q->lock);
}

int workq_result(struct workq *q, const char *stopped_msg, struct err *err)
{
    if (q->failed)
        return err_set(err, q->first_err.code, "%s", q->first_err.msg);
    if (workq_stopped(q))
        return err_set(err, ERR_UNAVAILABLE, "%s", stopped_msg);
    return FERRY_OK;
}
