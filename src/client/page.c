/* page.c - see page.h. Owns the yajl callbacks that read a feed page into flat arrays: a
 * change is one struct, its data's values one array shared by the page, every string one
 * copy in a few large blocks, so a page is a handful of allocations instead of dozens per
 * row. Keys the feed may add later are skipped, as the jansson reader ignored them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "client/page.h"
#include "ferry.h"

#define BLOCK_SIZE 65536

struct fc_block {
    struct fc_block *next;
    size_t used, cap;
    char data[];
};

enum top_key { TOP_OTHER, TOP_CHANGES, TOP_CURSOR, TOP_HAS_MORE };
enum change_key { CK_OTHER, CK_TABLE, CK_ID, CK_OP, CK_VERSION, CK_DELETED, CK_DATA };

struct parse {
    struct fc_page *pg;
    size_t cap_changes, cap_values;
    int depth;    /* 1: the page, 2: "changes", 3: a change, 4: its data */
    int skip;     /* containers open inside a value that is skipped or copied as text */
    yajl_gen gen; /* copying a nested value of data (skip > 0) */
    enum top_key top;
    enum change_key key;
    const char *col;
    bool changes_seen, cursor_ok, more_ok;
};

static char *copy(struct fc_page *pg, const char *s, size_t len)
{
    struct fc_block *b = pg->blocks;
    if (!b || b->cap - b->used < len + 1) {
        size_t cap = len + 1 > BLOCK_SIZE ? len + 1 : BLOCK_SIZE;
        b = xmalloc(sizeof(*b) + cap);
        *b = (struct fc_block){.next = pg->blocks, .cap = cap};
        pg->blocks = b;
    }
    char *out = b->data + b->used;
    memcpy(out, s, len);
    out[len] = '\0';
    b->used += len + 1;
    return out;
}

static const char *copy_int(struct fc_page *pg, int64_t i)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%lld", (long long)i);
    return copy(pg, num, (size_t)n);
}

static struct fc_change *change(struct parse *p)
{
    return &p->pg->changes[p->pg->n_changes - 1];
}

static void add_change(struct parse *p)
{
    struct fc_page *pg = p->pg;
    if (pg->n_changes == p->cap_changes) {
        p->cap_changes = p->cap_changes ? p->cap_changes * 2 : 1024;
        pg->changes = xrealloc(pg->changes, p->cap_changes * sizeof(*pg->changes));
    }
    pg->changes[pg->n_changes++] = (struct fc_change){.first = pg->n_values};
}

static bool add_value(struct parse *p, struct fc_value v)
{
    struct fc_page *pg = p->pg;
    if (pg->n_values == p->cap_values) {
        p->cap_values = p->cap_values ? p->cap_values * 2 : 4096;
        pg->values = xrealloc(pg->values, p->cap_values * sizeof(*pg->values));
    }
    v.col = p->col;
    pg->values[pg->n_values++] = v;
    change(p)->n++;
    return true;
}

/* A scalar at the page's, a change's or its data's level (the skip cases are handled). */
static int scalar(struct parse *p, struct fc_value v)
{
    if (p->depth == 1 && p->top == TOP_CHANGES) {
        p->changes_seen = false;
    } else if (p->depth == 1 && p->top == TOP_CURSOR) {
        p->cursor_ok = v.kind == FC_INT;
        p->pg->cursor = v.i;
    } else if (p->depth == 1 && p->top == TOP_HAS_MORE) {
        p->more_ok = v.kind == FC_TRUE || v.kind == FC_FALSE;
        p->pg->has_more = v.kind == FC_TRUE;
    } else if (p->depth == 2) {
        add_change(p); /* not an object: a change of no table, skipped */
    } else if (p->depth == 3) {
        struct fc_change *c = change(p);
        bool text = v.kind == FC_STRING;
        if (p->key == CK_TABLE)
            c->table = text ? v.s : NULL;
        else if (p->key == CK_OP)
            c->op = text ? v.s : NULL;
        else if (p->key == CK_ID)
            c->pk = text ? v.s : v.kind == FC_INT ? copy_int(p->pg, v.i) : NULL;
        else if (p->key == CK_VERSION)
            c->version = v.kind == FC_INT ? v.i : 0;
        else if (p->key == CK_DELETED)
            c->deleted = v.kind == FC_TRUE;
        else if (p->key == CK_DATA)
            c->has_data = false;
    } else if (p->depth == 4) {
        return add_value(p, v);
    }
    return 1;
}

/* Inside a skipped or copied value: keeps count of its containers, copies it when p->gen
 * is on, and stores the copy as the column's value when its last container closes. */
static int nested(struct parse *p, yajl_gen_status st, int opened)
{
    if (st != yajl_gen_status_ok)
        return 0;
    p->skip += opened;
    if (p->skip > 0 || !p->gen)
        return 1;
    const unsigned char *text;
    size_t len;
    yajl_gen_get_buf(p->gen, &text, &len);
    struct fc_value v = {.kind = FC_NESTED, .len = len};
    v.s = copy(p->pg, (const char *)text, len);
    yajl_gen_free(p->gen);
    p->gen = NULL;
    return add_value(p, v);
}

#define GEN(call) (p->gen ? (call) : yajl_gen_status_ok)

static int on_null(void *ctx)
{
    struct parse *p = ctx;
    if (p->skip)
        return nested(p, GEN(yajl_gen_null(p->gen)), 0);
    return scalar(p, (struct fc_value){.kind = FC_NULL});
}

static int on_boolean(void *ctx, int b)
{
    struct parse *p = ctx;
    if (p->skip)
        return nested(p, GEN(yajl_gen_bool(p->gen, b)), 0);
    return scalar(p, (struct fc_value){.kind = b ? FC_TRUE : FC_FALSE});
}

/* A number as jansson reads one: an integer unless it has a fraction or an exponent (an
 * integer out of range fails the page, as in jansson). */
static int on_number(void *ctx, const char *text, size_t len)
{
    struct parse *p = ctx;
    if (p->skip)
        return nested(p, GEN(yajl_gen_number(p->gen, text, len)), 0);
    char num[64];
    if (len >= sizeof(num))
        return 0; /* longer than any int64 or double ferry writes */
    memcpy(num, text, len);
    num[len] = '\0';
    struct fc_value v = {.kind = FC_INT};
    char *end;
    errno = 0;
    if (strpbrk(num, ".eE")) {
        v.kind = FC_REAL;
        v.d = strtod(num, &end);
    } else {
        v.i = strtoll(num, &end, 10);
    }
    if (errno == ERANGE || *end)
        return 0;
    return scalar(p, v);
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    struct parse *p = ctx;
    if (p->skip)
        return nested(p, GEN(yajl_gen_string(p->gen, s, len)), 0);
    struct fc_value v = {.kind = FC_STRING, .len = len};
    v.s = copy(p->pg, (const char *)s, len);
    return scalar(p, v);
}

static int on_key(void *ctx, const unsigned char *s, size_t len)
{
    struct parse *p = ctx;
    const char *k = (const char *)s;
#define IS(name) (len == sizeof(name) - 1 && !memcmp(k, name, len))
    if (p->skip)
        return nested(p, GEN(yajl_gen_string(p->gen, s, len)), 0);
    if (p->depth == 1)
        p->top = IS("changes")   ? TOP_CHANGES
                 : IS("cursor")  ? TOP_CURSOR
                 : IS("hasMore") ? TOP_HAS_MORE
                                 : TOP_OTHER;
    else if (p->depth == 3)
        p->key = IS("table")     ? CK_TABLE
                 : IS("id")      ? CK_ID
                 : IS("op")      ? CK_OP
                 : IS("version") ? CK_VERSION
                 : IS("deleted") ? CK_DELETED
                 : IS("data")    ? CK_DATA
                                 : CK_OTHER;
    else if (p->depth == 4)
        p->col = copy(p->pg, k, len);
#undef IS
    return 1;
}

/* An object or array opens: one the page's shape expects goes a level down, a value of
 * data is copied as JSON text, anything else is skipped. */
static int on_open(struct parse *p, bool map)
{
    if (p->skip)
        return nested(p, GEN(map ? yajl_gen_map_open(p->gen) : yajl_gen_array_open(p->gen)), 1);
    bool down = (p->depth == 0 && map) || (p->depth == 1 && !map && p->top == TOP_CHANGES) ||
                (p->depth == 2 && map) || (p->depth == 3 && map && p->key == CK_DATA);
    if (p->depth == 1 && p->top == TOP_CHANGES)
        p->changes_seen = !map;
    if (p->depth == 2)
        add_change(p);
    if (p->depth == 3 && p->key == CK_DATA) {
        struct fc_change *c = change(p);
        c->has_data = map;
        c->first = p->pg->n_values;
        c->n = 0;
    }
    if (down) {
        p->depth++;
        return 1;
    }
    if (p->depth == 4) {
        p->gen = yajl_gen_alloc(NULL);
        if (!p->gen)
            return 0;
        return nested(p, map ? yajl_gen_map_open(p->gen) : yajl_gen_array_open(p->gen), 1);
    }
    p->skip = 1;
    return 1;
}

static int on_start_map(void *ctx)
{
    return on_open(ctx, true);
}

static int on_start_array(void *ctx)
{
    return on_open(ctx, false);
}

static int on_close(void *ctx)
{
    struct parse *p = ctx;
    if (p->skip)
        return nested(p, GEN(yajl_gen_map_close(p->gen)), -1);
    p->depth--;
    return 1;
}

static int on_close_array(void *ctx)
{
    struct parse *p = ctx;
    if (p->skip)
        return nested(p, GEN(yajl_gen_array_close(p->gen)), -1);
    p->depth--;
    return 1;
}

static const yajl_callbacks CALLBACKS = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_key,
    .yajl_end_map = on_close,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_close_array,
};

struct fc_page *fc_page_parse(const char *body, size_t len)
{
    struct fc_page *pg = xcalloc(1, sizeof(*pg));
    struct parse p = {.pg = pg};
    yajl_handle h = yajl_alloc(&CALLBACKS, NULL, &p);
    bool ok = h && yajl_parse(h, (const unsigned char *)body, len) == yajl_status_ok &&
              yajl_complete_parse(h) == yajl_status_ok;
    if (h)
        yajl_free(h);
    if (p.gen)
        yajl_gen_free(p.gen);
    if (!ok || !p.changes_seen || !p.cursor_ok || !p.more_ok) {
        fc_page_free(pg);
        return NULL;
    }
    return pg;
}

void fc_page_free(struct fc_page *pg)
{
    if (!pg)
        return;
    for (struct fc_block *b = pg->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(pg->changes);
    free(pg->values);
    free(pg);
}

json_t *fc_value_json(const struct fc_value *v)
{
    switch (v->kind) {
    case FC_FALSE:
        return json_false();
    case FC_TRUE:
        return json_true();
    case FC_INT:
        return json_integer(v->i);
    case FC_REAL:
        return json_real(v->d);
    case FC_STRING:
        return json_stringn(v->s, v->len);
    case FC_NESTED:
        return json_loadb(v->s, v->len, JSON_DECODE_ANY, NULL);
    default:
        return json_null();
    }
}

json_t *fc_change_data(const struct fc_page *pg, const struct fc_change *c)
{
    json_t *data = json_object();
    for (size_t i = c->first; i < c->first + c->n; i++)
        json_object_set_new(data, pg->values[i].col, fc_value_json(&pg->values[i]));
    return data;
}
