/* jsonutil.h - request-body parsing on top of jansson: a nesting-depth cap, error messages
 * that say what was wrong and where, and typed field getters. */
#ifndef FERRY_JSON_H
#define FERRY_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ferry.h"

/* Parses len bytes as one JSON value. Refuses nesting deeper than max_depth and
 * duplicate object keys. On failure *out is NULL and err (ERR_INVALID) names the line
 * and column. The caller owns *out. */
int jsonutil_parse(const char *data, size_t len, int max_depth, json_t **out, struct err *err);

/* As jsonutil_parse, and refuses (ERR_TOO_LARGE, 413) a document of more than max_values
 * values before building any of them. */
int jsonutil_parse_capped(const char *data, size_t len, int max_depth, size_t max_values,
                          json_t **out, struct err *err);

/* The deepest nesting in data and an upper bound on its number of values (exact when
 * data is valid JSON), found without allocating. Exposed for tests. */
void jsonutil_scan(const char *data, size_t len, int *depth, size_t *values);

/* Depth of the deepest array/object nesting in data (strings are skipped). Exposed for
 * tests. jansson's own limit is a compile-time constant of 2048, far above what a
 * request needs, so ferry checks its configured limit with this scan before parsing. */
int jsonutil_depth(const char *data, size_t len);

/* Field getters. Each returns FERRY_OK when the field has the wanted type, or when it
 * is absent (or null) and not required (then *out keeps its value). Otherwise ERR_INVALID
 * with a message naming the field, e.g. "field 'limit' must be an integer". */
int jsonutil_get_string(json_t *obj, const char *key, bool required, const char **out,
                        struct err *err);
int jsonutil_get_int(json_t *obj, const char *key, bool required, int64_t *out, struct err *err);
int jsonutil_get_bool(json_t *obj, const char *key, bool required, bool *out, struct err *err);
int jsonutil_get_array(json_t *obj, const char *key, bool required, json_t **out, struct err *err);
int jsonutil_get_object(json_t *obj, const char *key, bool required, json_t **out, struct err *err);

/* "an integer", "a string", ... for messages. */
const char *jsonutil_type_name(const json_t *v);

/* Serialises compactly; the caller frees the string. */
char *jsonutil_to_string(const json_t *value);

#endif
