/* dbrows.h - rows as database sync moves them: copied out of a result (so a page of them
 * outlives the query), hashed the same way on every sync, converted to what the target's
 * column takes, and column types mapped between SQLite and PostgreSQL. */
#ifndef FERRY_DBROWS_H
#define FERRY_DBROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "store/store.h"

/* A value: SV_NULL, SV_BLOB (bytes), or SV_TEXT (the database's text for it). */
struct dbval {
    enum store_type type;
    char *bytes; /* NUL-terminated for text */
    size_t len;
};

struct dbrow {
    struct dbval *vals;
    size_t n_vals;
    const char *key; /* the primary key's text (vals[key_col].bytes) */
    char hash[65];   /* SHA-256 of the values, in column order */
};

/* Copies the current row of rows (n columns); key_col is the primary key's column. */
void dbrows_copy(struct store_rows *rows, int n, int key_col, struct dbrow *out);
void dbrows_clear(struct dbrow *row);
/* A copy of row that owns its values. */
void dbrows_dup(const struct dbrow *row, struct dbrow *out);

/* The row as a JSON object of column name -> string or null (blobs in base64). */
json_t *dbrows_json(const struct dbrow *row, char *const *names);

/* Orders two keys as both databases' ORDER BY does (numerically for integer keys, by
 * bytes otherwise). */
int dbrows_key_cmp(const char *a, const char *b, bool int_key);

/* The value v bound for a column of declared type decl in a database of dialect to; the
 * result may point into v. */
struct store_val dbrows_bind(const struct dbval *v, const char *decl, enum store_dialect to);

/* The declared type for a column of type decl (from dialect from) in dialect to. Returns
 * a newly allocated string. */
char *dbrows_map_type(const char *decl, enum store_dialect from, enum store_dialect to);

/* True when a column of this declared type holds integers (the key's ordering). */
bool dbrows_is_int_type(const char *decl);

#endif
