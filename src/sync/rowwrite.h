/* rowwrite.h - the one write path for rows of user tables: the SQL of an insert (one row
 * or a bulk run, with or without an upsert), an update and a delete, used by pushes
 * (sync/push.c) and site imports (sites/siteimport.c) alike. Parameters are numbered
 * from $1 in the order each function states; the caller binds and runs the text. */
#ifndef FERRY_ROWWRITE_H
#define FERRY_ROWWRITE_H

#include <stdbool.h>
#include <stddef.h>

/* A table as the statements name it. */
struct rowwrite_table {
    char *quoted; /* the table */
    char **cols;  /* every column, quoted, in the table's order */
    size_t n_cols;
    int key; /* the single-column key's index, -1: none */
    /* PostgreSQL: each column's type as a cast names it (NULL where it cannot be named
     * safely), for the statements whose parameters get no type from their place; NULL
     * for SQLite, whose parameters need none. */
    char **types;
};

/* Fills t for the table and column names given (quoting them); rowwrite_table_free
 * releases what it holds. */
void rowwrite_table_init(struct rowwrite_table *t, const char *table, const char *const *cols,
                         size_t n_cols, int key);
void rowwrite_table_free(struct rowwrite_table *t);
/* Sets the columns' types (as format_type writes them, one per column), for
 * rowwrite_update_many on PostgreSQL. */
void rowwrite_table_types(struct rowwrite_table *t, const char *const *types);

/* What an insert does with a row whose key exists. */
enum rowwrite_existing {
    ROWWRITE_FAIL,    /* nothing said: the database refuses it */
    ROWWRITE_NOTHING, /* leaves it (ON CONFLICT DO NOTHING) */
    ROWWRITE_UPDATE,  /* sets the given columns but the key (an upsert) */
};

/* INSERT of `rows` rows of the columns at the indexes cols[0..n); parameters row by row,
 * each row's in the order of cols. ROWWRITE_NOTHING and ROWWRITE_UPDATE need the key.
 * Caller frees. */
char *rowwrite_insert(const struct rowwrite_table *t, const int *cols, size_t n, size_t rows,
                      enum rowwrite_existing existing);

/* UPDATE of the columns at cols[0..n) of the row whose key is $1; the values are $2... in
 * the order of cols. Caller frees. */
char *rowwrite_update(const struct rowwrite_table *t, const int *cols, size_t n);

/* UPDATE of `rows` rows at once: the columns at cols[1..n) of each row whose key (cols[0]
 * is the key's index) is given; parameters row by row, each row's in the order of cols.
 * NULL where a column's type cannot be named (PostgreSQL), so the caller updates row by
 * row. Caller frees. */
char *rowwrite_update_many(const struct rowwrite_table *t, const int *cols, size_t n, size_t rows);

/* DELETE of the rows whose keys are $1..$rows. Caller frees. */
char *rowwrite_delete_many(const struct rowwrite_table *t, size_t rows);

/* " RETURNING" the key as text, for a statement on the table (qualified, as an UPDATE
 * ... FROM needs). Caller frees. */
char *rowwrite_returning_key(const struct rowwrite_table *t);

/* DELETE of the row whose key is $1. Caller frees. */
char *rowwrite_delete(const struct rowwrite_table *t);

/* PostgreSQL only: locks the rows whose keys are in the array $1 (FOR UPDATE when
 * deleting, else FOR NO KEY UPDATE, in key order), failing with SQLSTATE 55P03 at once
 * where another transaction holds a conflicting lock. Caller frees. */
char *rowwrite_lock(const struct rowwrite_table *t, bool deleting);

#endif
