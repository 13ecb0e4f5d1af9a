/* values.h - JSON values to and from columns of synced tables. A column's declared
 * type decides what JSON it accepts and how its value is written in the change feed,
 * the same way on SQLite (which would store anything in any column) and PostgreSQL. */
#ifndef FERRY_VALUES_H
#define FERRY_VALUES_H

#include <stdbool.h>

#include <jansson.h>

#include "ferry.h"
#include "store/store.h"
#include "util/buf.h"

enum col_kind {
    KIND_INTEGER,   /* int, integer, bigint, smallint, serial... */
    KIND_REAL,      /* real, double, float */
    KIND_NUMERIC,   /* numeric, decimal: exact, written as a string */
    KIND_BOOLEAN,   /* boolean, bool */
    KIND_TEXT,      /* text, varchar, char, clob, and types ferry does not know */
    KIND_DATE,      /* date: "YYYY-MM-DD" */
    KIND_TIMESTAMP, /* timestamp, datetime, timestamptz: ISO-8601 */
    KIND_TIME,      /* time: "HH:MM[:SS[.fff]]" */
    KIND_UUID,
    KIND_JSON, /* json, jsonb: any JSON value */
    KIND_BLOB, /* blob, bytea: base64 in JSON */
};

/* Classifies a declared type (lower case, as store_table_info gives it). */
enum col_kind values_kind_of(const char *decl_type);
const char *values_kind_name(enum col_kind kind);
/* The kind's one-word label in schemas: "integer", "real", "numeric", "boolean", "text",
 * "date", "timestamp", "time", "uuid", "json" or "blob". */
const char *values_kind_label(enum col_kind kind);

/* A bound value that may own memory (text made from JSON, decoded blobs). */
struct owned_val {
    struct store_val val;
    char *owned;
};

/* Converts a JSON value for a column of the given kind. JSON null gives SQL NULL. On a
 * value that does not fit, ERR_INVALID with a message "expected ..., got ..." (the caller
 * adds table, row and column). Release with values_release(). */
int values_from_json(enum col_kind kind, json_t *value, struct owned_val *out, struct err *err);
void values_release(struct owned_val *v);

/* The JSON for column col of the current row. */
json_t *values_to_json(enum col_kind kind, const struct store_rows *rows, int col);

/* Appends the same value as JSON text to b (util/jsonw.h) and returns true; appends
 * nothing and returns false for text that is not UTF-8, where values_to_json gives NULL. */
bool values_write_json(struct buf *b, enum col_kind kind, const struct store_rows *rows, int col);

/* The canonical text of a primary-key value, as ferry keys its change log: integers in
 * decimal, text as is. ERR_INVALID for any other JSON type. Caller frees. */
int values_pk_text(enum col_kind kind, json_t *value, char **out, struct err *err);

#endif
