/* fuzz_json.c - JSON request bodies (src/util/jsonutil.c) as every surface receives
 * them, and the conversions of their values to columns (src/sync/values.c, also what
 * PhoenixKit keys and pull-data cursors go through). The scan's value count must be
 * exact for every document jansson accepts: it is the cap that stands before jansson. */
#include "fuzz.h"
#include "sync/values.h"
#include "util/jsonutil.h"

static size_t count(json_t *v)
{
    size_t n = 1;
    const char *key;
    json_t *member;
    size_t i;
    if (json_is_array(v))
        json_array_foreach(v, i, member) n += count(member);
    else if (json_is_object(v))
        json_object_foreach(v, key, member) n += count(member);
    return n;
}

/* Every value, as every kind of column, and as a primary key. */
static void convert(json_t *v, int depth)
{
    struct err err = {0};
    for (int kind = KIND_INTEGER; kind <= KIND_BLOB; kind++) {
        struct owned_val out = {{0}, NULL};
        char *text = NULL;
        if (values_from_json((enum col_kind)kind, v, &out, &err) == FERRY_OK)
            values_release(&out);
        if (values_pk_text((enum col_kind)kind, v, &text, &err) == FERRY_OK)
            free(text);
    }
    const char *key;
    json_t *member;
    size_t i;
    if (depth > 3)
        return;
    if (json_is_array(v))
        json_array_foreach(v, i, member) convert(member, depth + 1);
    else if (json_is_object(v))
        json_object_foreach(v, key, member) convert(member, depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *doc = NULL;
    struct err err = {0};
    int depth;
    size_t values;
    jsonutil_scan((const char *)data, size, &depth, &values);
    if (jsonutil_parse_capped((const char *)data, size, 32, 100000, &doc, &err) != FERRY_OK)
        return 0;
    if (count(doc) != values)
        abort(); /* the cap would count wrong */
    const char *s = NULL;
    int64_t n = 0;
    bool b = false;
    json_t *sub = NULL;
    jsonutil_get_string(doc, "table", false, &s, &err);
    jsonutil_get_int(doc, "limit", false, &n, &err);
    jsonutil_get_bool(doc, "replace", false, &b, &err);
    jsonutil_get_array(doc, "operations", false, &sub, &err);
    jsonutil_get_object(doc, "data", false, &sub, &err);
    free(jsonutil_to_string(doc));
    convert(doc, 0);
    json_decref(doc);
    return 0;
}
