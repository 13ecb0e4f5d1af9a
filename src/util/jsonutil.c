/* jsonutil.c - see jsonutil.h. */
#include <stdlib.h>
#include <string.h>

#include "util/jsonutil.h"

int jsonutil_depth(const char *data, size_t len)
{
    int depth = 0, max = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                max = depth;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return max;
}

int jsonutil_parse(const char *data, size_t len, int max_depth, json_t **out, struct err *err)
{
    json_error_t jerr;
    *out = NULL;
    if (len == 0)
        return err_set(err, ERR_INVALID, "request body is empty; a JSON value was expected");
    if (jsonutil_depth(data, len) > max_depth)
        return err_set(err, ERR_INVALID, "JSON nesting is deeper than the limit of %d", max_depth);
    *out = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!*out)
        return err_set(err, ERR_INVALID, "malformed JSON at line %d, column %d: %s", jerr.line,
                       jerr.column, jerr.text);
    return FERRY_OK;
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
