/* parents.h - the parent rows a push's foreign keys will lock (PostgreSQL): for each
 * foreign key of a synced table, the statement that takes those locks beforehand with
 * NOWAIT, so that a push holding the change log's lock never waits for a row. */
#ifndef FERRY_PARENTS_H
#define FERRY_PARENTS_H

#include <stddef.h>

#include "ferry.h"
#include "store/store.h"

struct parent_key {
    /* SELECT 1 FROM parent p JOIN unnest($1::text[], ...) u ON ... FOR KEY SHARE OF p
     * NOWAIT: $k is a PostgreSQL array literal of the k-th key column's values, as text. */
    char *lock_sql;
    int *cols; /* the referencing columns, as indexes of the table's columns */
    size_t n_cols;
};

struct parent_keys {
    struct parent_key *keys;
    size_t n;
};

/* Reads the foreign keys of table quoted (a quoted identifier) whose columns are names[0..n)
 * from PostgreSQL's catalog. SQLite: none (its writers are one at a time anyway). */
int parents_load(struct store_conn *c, const char *quoted, const char *const *names, size_t n,
                 struct parent_keys *out, struct err *err);
void parents_cleanup(struct parent_keys *keys);

#endif
