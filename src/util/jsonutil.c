/* jsonutil.c - see jsonutil.h. */
#include <stdlib.h>
#include <string.h>

#include "util/jsonutil.h"

/* Deeper than this the scan stops tracking containers; jansson itself refuses nesting
 * beyond 2048, so such a document is refused either way. */
#define SCAN_STACK 4096

/* One pass over the text, before jansson allocates anything: the deepest nesting, and an
 * upper bound on the number of values (exact for valid JSON). jansson has no option to cap
 * the values it builds, and a 10 MB body of "[{},{},...]" costs it hundreds of MB, so the
 * count is taken here: every value but the first follows '[' or ',' in an array, or ':'
 * in an object. */
void jsonutil_scan(const char *data, size_t len, int *depth_out, size_t *values_out)
{
    unsigned char in_array[SCAN_STACK / 8] = {0};
    int depth = 0, max = 0;
    size_t values = len ? 1 : 0;
    char last = 0; /* the last structural character, '"' after a string */
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false, last = '"';
            continue;
        }
        bool array = depth > 0 && depth <= SCAN_STACK &&
                     (in_array[(depth - 1) / 8] >> ((depth - 1) % 8) & 1);
        switch (c) {
        case '"':
            in_string = true;
            continue;
        case '[':
        case '{':
            if (++depth > max)
                max = depth;
            if (depth <= SCAN_STACK) {
                unsigned char bit = (unsigned char)(1u << ((depth - 1) % 8));
                if (c == '[')
                    in_array[(depth - 1) / 8] |= bit, values++;
                else
                    in_array[(depth - 1) / 8] &= (unsigned char)~bit;
            }
            break;
        case ']':
            if (last == '[' && values > 1)
                values--; /* an empty array: nothing followed its '[' */
            /* fall through */
        case '}':
            if (depth > 0) /* more closing than opening: malformed, jansson refuses it */
                depth--;
            break;
        case ',':
            values += array;
            break;
        case ':':
            values++;
            break;
        case ' ':
        case '\t':
        case '\r':
        case '\n':
            continue;
        }
        last = c;
    }
    *depth_out = max;
    *values_out = values;
}

int jsonutil_depth(const char *data, size_t len)
{
    int depth;
    size_t values;
    jsonutil_scan(data, len, &depth, &values);
    return depth;
}

int jsonutil_parse_capped(const char *data, size_t len, int max_depth, size_t max_values,
                          json_t **out, struct err *err)
{
    json_error_t jerr;
    int depth;
    size_t values;
    *out = NULL;
    if (len == 0)
        return err_set(err, ERR_INVALID, "request body is empty; a JSON value was expected");
    jsonutil_scan(data, len, &depth, &values);
    if (depth > max_depth)
        return err_set(err, ERR_INVALID, "JSON nesting is deeper than the limit of %d", max_depth);
    if (values > max_values)
        return err_set(err, ERR_TOO_LARGE, "JSON body has more than the limit of %zu values",
                       max_values);
    *out = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!*out)
        return err_set(err, ERR_INVALID, "malformed JSON at line %d, column %d: %s", jerr.line,
                       jerr.column, jerr.text);
    return FERRY_OK;
}

int jsonutil_parse(const char *data, size_t len, int max_depth, json_t **out, struct err *err)
{
    return jsonutil_parse_capped(data, len, max_depth, SIZE_MAX, out, err);
}

const char *jsonutil_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* Finds key in obj; FERRY_OK with *v NULL when absent/null and optional. */
static int lookup(json_t *obj, const char *key, bool required, json_t **v, struct err *err)
{
    *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (*v && json_is_null(*v))
        *v = NULL;
    if (!*v && required)
        return err_set(err, ERR_INVALID, "field '%s' is required", key);
    return FERRY_OK;
}

static int wrong_type(const char *key, const char *want, const json_t *v, struct err *err)
{
    return err_set(err, ERR_INVALID, "field '%s' must be %s, not %s", key, want,
                   jsonutil_type_name(v));
}

int jsonutil_get_string(json_t *obj, const char *key, bool required, const char **out,
                        struct err *err)
{
    json_t *v;
    if (lookup(obj, key, required, &v, err) != FERRY_OK)
        return FERRY_ERR;
    if (!v)
        return FERRY_OK;
    if (!json_is_string(v))
        return wrong_type(key, "a string", v, err);
    *out = json_string_value(v);
    return FERRY_OK;
}

int jsonutil_get_int(json_t *obj, const char *key, bool required, int64_t *out, struct err *err)
{
    json_t *v;
    if (lookup(obj, key, required, &v, err) != FERRY_OK)
        return FERRY_ERR;
    if (!v)
        return FERRY_OK;
    if (!json_is_integer(v))
        return wrong_type(key, "an integer", v, err);
    *out = json_integer_value(v);
    return FERRY_OK;
}

int jsonutil_get_bool(json_t *obj, const char *key, bool required, bool *out, struct err *err)
{
    json_t *v;
    if (lookup(obj, key, required, &v, err) != FERRY_OK)
        return FERRY_ERR;
    if (!v)
        return FERRY_OK;
    if (!json_is_boolean(v))
        return wrong_type(key, "a boolean", v, err);
    *out = json_is_true(v);
    return FERRY_OK;
}

int jsonutil_get_array(json_t *obj, const char *key, bool required, json_t **out, struct err *err)
{
    json_t *v;
    if (lookup(obj, key, required, &v, err) != FERRY_OK)
        return FERRY_ERR;
    if (!v)
        return FERRY_OK;
    if (!json_is_array(v))
        return wrong_type(key, "an array", v, err);
    *out = v;
    return FERRY_OK;
}

int jsonutil_get_object(json_t *obj, const char *key, bool required, json_t **out, struct err *err)
{
    json_t *v;
    if (lookup(obj, key, required, &v, err) != FERRY_OK)
        return FERRY_ERR;
    if (!v)
        return FERRY_OK;
    if (!json_is_object(v))
        return wrong_type(key, "an object", v, err);
    *out = v;
    return FERRY_OK;
}

char *jsonutil_to_string(const json_t *value)
{
    char *s = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s)
        abort(); /* jansson fails only on allocation; see ferry.h's policy */
    return s;
}
