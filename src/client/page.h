/* page.h - one page of the feed (GET /api/v1/sync/changes) as flat C arrays, parsed with
 * yajl's streaming parser: no JSON tree per row (building and freeing jansson's trees was
 * more than half of an initial sync's CPU time). */
#ifndef FERRY_CLIENT_PAGE_H
#define FERRY_CLIENT_PAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

enum fc_kind { FC_NULL, FC_FALSE, FC_TRUE, FC_INT, FC_REAL, FC_STRING, FC_NESTED };

/* A column's value in a change's data: FC_NESTED (an object or array) is its JSON text. */
struct fc_value {
    const char *col;
    enum fc_kind kind;
    int64_t i;
    double d;
    const char *s; /* FC_STRING, FC_NESTED: NUL-terminated; len excludes the NUL */
    size_t len;
};

/* One element of "changes" as apply_change reads it (NULL / 0 / false where absent). */
struct fc_change {
    const char *table, *pk, *op;
    int64_t version;
    bool deleted;
    bool has_data; /* "data" was an object: values[first .. first + n) */
    size_t first, n;
};

struct fc_page {
    int64_t cursor;
    bool has_more;
    size_t n_changes, n_values;
    struct fc_change *changes;
    struct fc_value *values;
    struct fc_block *blocks; /* the strings */
};

/* The page in body, or NULL when body is not a whole page (changes an array, cursor an
 * integer, hasMore a boolean), as fc_is_page says of a parsed answer. */
struct fc_page *fc_page_parse(const char *body, size_t len);

void fc_page_free(struct fc_page *page);

/* A change's data as a JSON object (for the rare paths that keep it as JSON). */
json_t *fc_change_data(const struct fc_page *page, const struct fc_change *c);

/* A value as jansson reads it (a new reference). */
json_t *fc_value_json(const struct fc_value *v);

#endif
