/* rowjson.c - see rowjson.h. */
#include <stdlib.h>
#include <string.h>

#include "sync/rowjson.h"
#include "util/timeutil.h"

json_t *rowjson_text(const struct store_rows *rows, int col)
{
    return store_rows_isnull(rows, col) ? json_null() : json_string(store_rows_text(rows, col));
}

json_t *rowjson_time(const struct store_rows *rows, int col)
{
    char iso[32];
    if (store_rows_isnull(rows, col))
        return json_null();
    time_iso8601(store_rows_int(rows, col), 0, iso);
    return json_string(iso);
}

json_t *rowjson_parsed(const struct store_rows *rows, int col)
{
    if (store_rows_isnull(rows, col))
        return json_null();
    json_t *v = json_loads(store_rows_text(rows, col), JSON_DECODE_ANY, NULL);
    return v ? v : json_null();
}

json_t *rowjson_list(const struct store_rows *rows, int col)
{
    if (store_rows_isnull(rows, col))
        return json_null();
    json_t *arr = json_array();
    char *copy = xstrdup(store_rows_text(rows, col)), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(arr, json_string(t));
    free(copy);
    return arr;
}
