/* sitedata.h - what a sender site serves to a receiver over PhoenixKit's protocol: the
 * tables a connection may see, their schemas, and their rows, encoded as PhoenixKit
 * encodes them (dates and times as ISO-8601, decimals as strings, bytes that are not
 * UTF-8 as {"__phoenix_kit_binary__": base64}). Rows come in primary-key order, a page
 * at a time, so a table of any size can be read whole. */
#ifndef FERRY_SITEDATA_H
#define FERRY_SITEDATA_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "sites/sites.h"
#include "ferry.h"
#include "store/store.h"

/* The key PhoenixKit wraps non-UTF-8 binaries in. */
#define PHOENIX_BINARY_KEY "__phoenix_kit_binary__"

/* [{name, row_count, size_bytes}] of the tables s may see: the database's own tables but
 * ferry's (ferry_*), allowed and not excluded by the connection. */
int sitedata_tables(struct store_conn *c, const struct site *s, json_t **out, struct err *err);

/* {table_name, columns:[{column_name, data_type, is_nullable, column_default,
 * character_maximum_length, primary_key}]}; ERR_NOT_FOUND "Table not found" for a table
 * s may not see or that does not exist. */
int sitedata_schema(struct store_conn *c, const struct site *s, const char *table, json_t **out,
                    struct err *err);

struct records_query {
    const char *table;
    int64_t limit, offset;
    json_t *ids;               /* array of keys, or NULL */
    json_t *id_start, *id_end; /* inclusive bounds, or NULL */
};

/* Rows for table-records, in primary-key order: ids wins over the range. */
int sitedata_records(struct store_conn *c, const struct site *s, const struct records_query *q,
                     json_t **out, struct err *err);

/* One page for pull-data: up to limit rows with keys after `after` (NULL: from the
 * start). *next_after is the last key when more may follow, else JSON null. A table
 * without a single-column primary key is paged by position instead: `after` and
 * *next_after are then {"offset": n}. */
int sitedata_pull(struct store_conn *c, const struct site *s, const char *table, int64_t limit,
                  json_t *after, json_t **rows, json_t **next_after, struct err *err);

/* Whether s may see table at all (a valid name, not ferry's own, allowed, not
 * excluded). */
bool sitedata_visible(const struct site *s, const char *table);

/* A column value as PhoenixKit sends it. */
json_t *sitedata_value(const struct store_table *t, size_t col, const struct store_rows *rows,
                       int at);

#endif
