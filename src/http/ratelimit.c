/* ratelimit.c - see ratelimit.h. Buckets live in an open-addressing table guarded by one
 * mutex; the critical section is a few arithmetic operations. Full buckets are dropped
 * when the table grows, so idle keys cost nothing for long. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "http/ratelimit.h"

struct bucket {
    char *key;
    double tokens;
    int64_t last_us;
};

struct ratelimit {
    pthread_mutex_t lock;
    int64_t limit;
    double per_us; /* refill rate in requests per microsecond */
    struct bucket *slots;
    size_t cap, count;
};

struct ratelimit *ratelimit_new(int64_t limit, int64_t period_s)
{
    struct ratelimit *rl = xcalloc(1, sizeof(*rl));
    pthread_mutex_init(&rl->lock, NULL);
    rl->limit = limit;
    rl->per_us = limit > 0 ? (double)limit / ((double)period_s * 1e6) : 0;
    rl->cap = 256;
    rl->slots = xcalloc(rl->cap, sizeof(*rl->slots));
    return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (!rl)
        return;
    for (size_t i = 0; i < rl->cap; i++)
        free(rl->slots[i].key);
    free(rl->slots);
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

int64_t ratelimit_limit(const struct ratelimit *rl)
{
    return rl->limit;
}

static size_t hash_key(const char *s)
{
    size_t h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h;
}

static void refill(struct ratelimit *rl, struct bucket *b, int64_t now_us)
{
    if (now_us > b->last_us) {
        b->tokens += (double)(now_us - b->last_us) * rl->per_us;
        if (b->tokens > (double)rl->limit)
            b->tokens = (double)rl->limit;
        b->last_us = now_us;
    }
}

static void place(struct bucket *slots, size_t cap, struct bucket b)
{
    size_t i = hash_key(b.key) & (cap - 1);
    while (slots[i].key)
        i = (i + 1) & (cap - 1);
    slots[i] = b;
}

/* Doubles the table, dropping buckets that have refilled completely: a full bucket is
 * the same as no bucket. */
static void grow(struct ratelimit *rl, int64_t now_us)
{
    size_t cap = rl->cap * 2, count = 0;
    struct bucket *slots = xcalloc(cap, sizeof(*slots));
    for (size_t i = 0; i < rl->cap; i++) {
        struct bucket *b = &rl->slots[i];
        if (!b->key)
            continue;
        refill(rl, b, now_us);
        if (b->tokens >= (double)rl->limit) {
            free(b->key);
            continue;
        }
        place(slots, cap, *b);
        count++;
    }
    free(rl->slots);
    rl->slots = slots;
    rl->cap = cap;
    rl->count = count;
}

static struct bucket *find(struct ratelimit *rl, const char *key, int64_t now_us, bool create)
{
    size_t i = hash_key(key) & (rl->cap - 1);
    for (; rl->slots[i].key; i = (i + 1) & (rl->cap - 1))
        if (strcmp(rl->slots[i].key, key) == 0)
            return &rl->slots[i];
    if (!create)
        return NULL;
    if ((rl->count + 1) * 2 > rl->cap) {
        grow(rl, now_us);
        return find(rl, key, now_us, true);
    }
    rl->slots[i] = (struct bucket){xstrdup(key), (double)rl->limit, now_us};
    rl->count++;
    return &rl->slots[i];
}

struct rl_result ratelimit_take(struct ratelimit *rl, const char *key, int64_t now_us)
{
    struct rl_result r = {.allowed = true, .limit = rl->limit, .remaining = rl->limit};
    if (rl->limit <= 0)
        return r;
    pthread_mutex_lock(&rl->lock);
    struct bucket *b = find(rl, key, now_us, true);
    refill(rl, b, now_us);
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        r.remaining = (int64_t)b->tokens;
    } else {
        r.allowed = false;
        r.remaining = 0;
        double wait_s = (1.0 - b->tokens) / rl->per_us / 1e6;
        r.retry_after = (int64_t)ceil(wait_s);
        if (r.retry_after < 1)
            r.retry_after = 1;
    }
    pthread_mutex_unlock(&rl->lock);
    return r;
}

bool ratelimit_exhausted(struct ratelimit *rl, const char *key, int64_t now_us)
{
    bool exhausted = false;
    if (rl->limit <= 0)
        return false;
    pthread_mutex_lock(&rl->lock);
    struct bucket *b = find(rl, key, now_us, false);
    if (b) {
        refill(rl, b, now_us);
        exhausted = b->tokens < 1.0;
    }
    pthread_mutex_unlock(&rl->lock);
    return exhausted;
}

struct limiter {
    struct ratelimit *rl;
    struct limiter *next;
};

struct ratelimit_set {
    pthread_mutex_t lock;
    int64_t period_s;
    struct limiter *limiters; /* few: one per distinct limit in use */
};

struct ratelimit_set *ratelimit_set_new(int64_t period_s)
{
    struct ratelimit_set *set = xcalloc(1, sizeof(*set));
    pthread_mutex_init(&set->lock, NULL);
    set->period_s = period_s;
    return set;
}

void ratelimit_set_free(struct ratelimit_set *set)
{
    if (!set)
        return;
    while (set->limiters) {
        struct limiter *next = set->limiters->next;
        ratelimit_free(set->limiters->rl);
        free(set->limiters);
        set->limiters = next;
    }
    pthread_mutex_destroy(&set->lock);
    free(set);
}

struct ratelimit *ratelimit_set_for(struct ratelimit_set *set, int64_t limit)
{
    pthread_mutex_lock(&set->lock);
    struct limiter *l = set->limiters;
    while (l && l->rl->limit != limit)
        l = l->next;
    if (!l) {
        l = xcalloc(1, sizeof(*l));
        l->rl = ratelimit_new(limit, set->period_s);
        l->next = set->limiters;
        set->limiters = l;
    }
    pthread_mutex_unlock(&set->lock);
    return l->rl;
}
