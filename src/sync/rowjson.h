/* rowjson.h - a result column as a JSON value, for the engine's JSON views of its own
 * tables (tokens, devices, conflicts). */
#ifndef FERRY_ROWJSON_H
#define FERRY_ROWJSON_H

#include <jansson.h>

#include "store/store.h"

/* The column's text, or null. */
json_t *rowjson_text(const struct store_rows *rows, int col);
/* A millisecond timestamp column as ISO-8601 text, or null. */
json_t *rowjson_time(const struct store_rows *rows, int col);
/* A column holding JSON text, parsed (null when NULL or unparsable). */
json_t *rowjson_parsed(const struct store_rows *rows, int col);
/* A column holding a comma list ("a,b") as an array of strings, or null. */
json_t *rowjson_list(const struct store_rows *rows, int col);

#endif
