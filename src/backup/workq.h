/* workq.h - the list of work the threads of one backup run share (archive's files to
 * read, restore's files to write): items handed out in order, each once, until none is
 * left, one failed, or the run is asked to stop; the first failure is kept. */
#ifndef FERRY_BACKUP_WORKQ_H
#define FERRY_BACKUP_WORKQ_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "ferry.h"

struct workq {
    pthread_mutex_t lock;
    size_t next, n;
    bool (*wanted)(void *ctx, size_t i); /* whether item i is work (else skipped) */
    void *ctx;
    const atomic_bool *stop; /* may be NULL */
    bool failed;
    struct err first_err;
};

void workq_init(struct workq *q, size_t n, bool (*wanted)(void *ctx, size_t i), void *ctx,
                const atomic_bool *stop);
void workq_destroy(struct workq *q);

/* The next item to work on, or -1 when none is left (or an item failed, or stop is set). */
long workq_take(struct workq *q);

/* Records an item's failure (the first one is kept); no item is handed out after it. */
void workq_fail(struct workq *q, const struct err *err);

/* Whether stop was set. */
bool workq_stopped(const struct workq *q);

/* After the threads: the first failure, else ERR_UNAVAILABLE with stopped_msg when the run
 * was stopped, else FERRY_OK. */
int workq_result(struct workq *q, const char *stopped_msg, struct err *err);

#endif
