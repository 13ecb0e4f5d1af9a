/* watch.h - a background thread that notices new changes in the log, whoever made them
 * (this node, another node, another program), and tells a callback which tables and
 * scope values they touched, so that only the long-polls they concern are woken. On
 * PostgreSQL it LISTENs for the capture trigger's NOTIFY; on SQLite, where no notification
 * crosses processes, it polls the one-row seq counter, and a write of this process pokes
 * it (watch_poke) so that its waiters need not wait for the next poll. */
#ifndef FERRY_WATCH_H
#define FERRY_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include "ferry.h"
#include "store/store.h"

struct watch;
struct feed_query;

/* What the log moved by: the newest seq, and the wake keys (watch_keys_of) of the changes
 * since the last call, sorted; keys NULL when they are not known (the first call, a
 * jump too long to read, a move with no entry to read): wake every waiter. */
struct watch_move {
    int64_t head;
    const uint64_t *keys;
    size_t n_keys;
};

/* on_change(ctx, move) runs on the watch thread when the newest seq moves (and on a
 * writer's thread, from watch_wake: it must be thread-safe); on_tick(ctx)
 * runs after every wait (a few times a second at least), for deadlines. */
int watch_start(struct store *st, void (*on_change)(void *ctx, const struct watch_move *move),
                void (*on_tick)(void *ctx), void *ctx, struct watch **out, struct err *err);
/* Stops and joins the thread. watch_stop(NULL) does nothing. */
void watch_stop(struct watch *w);

/* Something was committed in this process: look now, not at the next poll (SQLite; on
 * PostgreSQL the NOTIFY arrives with the commit). Any thread; NULL does nothing. */
void watch_poke(struct watch *w);

/* What a write this process committed touched, gathered by the writer while it still knows
 * (watch_wake_add) and handed to watch_wake once committed: its waiters are then woken by
 * the writer's thread, without waiting for the watcher's round trips (the watcher still
 * reports the move, for the other nodes and for whatever the writer could not tell, such
 * as changes the user's own triggers or cascades made). */
struct watch_wake {
    int64_t head;   /* the newest seq once committed */
    uint64_t *keys; /* wake keys so far (watch_wake_add) */
    size_t n_keys, cap;
    bool unknown; /* the writer cannot tell every key: no early wake */
};

/* Adds the keys of a change of table: any change of it, and one in scope value `scope`
 * when not NULL (the value its row has before and after the change). */
void watch_wake_add(struct watch_wake *k, const char *table, const char *scope);

/* Wakes this process's waiters that the committed write concerns (on the calling thread),
 * unless it is unknown or empty; then frees the keys (also when w is NULL). */
void watch_wake(struct watch *w, struct watch_wake *k);

/* The most wake keys a reader carries; a reader of more gets none (woken by every move). */
#define WATCH_MAX_KEYS 16

/* Fills keys with what a feed read by q waits for: per table it reads, any change of the
 * table when it reads every row, else changes in its scope value (sync/rules.h).
 * Returns how many (a move carrying any of them concerns the reader), or 0 when they do
 * not fit: then every move does. */
size_t watch_keys_of(const struct feed_query *q, uint64_t keys[WATCH_MAX_KEYS]);

#endif
