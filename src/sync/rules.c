/* rules.c - see rules.h. Rules are parsed once at start-up; at request time a rule and
 * a caller give one scope value, which the queries bind as a parameter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/rules.h"
#include "util/buf.h"

/* A column or claim name: letters, digits, _ and - (claims such as "org-id"). */
static bool valid_name(const char *s)
{
    if (!*s || strlen(s) > 128)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return false;
    return true;
}

static int bad_rule(const char *text, struct err *err)
{
    return err_set(err, ERR_INVALID,
                   "sync rule '%.100s' must be shared, owner:COLUMN, claim:NAME:COLUMN or"
                   " read-only",
                   text);
}

int rules_parse(const char *text, struct sync_rule *out, struct err *err)
{
    memset(out, 0, sizeof(*out));
    if (!strcmp(text, "shared")) {
        out->kind = RULE_SHARED;
        return FERRY_OK;
    }
    if (!strcmp(text, "read-only")) {
        out->kind = RULE_READONLY;
        return FERRY_OK;
    }
    if (!strncmp(text, "owner:", 6)) {
        if (!valid_name(text + 6))
            return bad_rule(text, err);
        out->kind = RULE_OWNER;
        out->column = xstrdup(text + 6);
        return FERRY_OK;
    }
    if (!strncmp(text, "claim:", 6)) {
        const char *colon = strchr(text + 6, ':');
        if (!colon)
            return bad_rule(text, err);
        char *claim = xasprintf("%.*s", (int)(colon - text - 6), text + 6);
        if (!valid_name(claim) || !valid_name(colon + 1)) {
            free(claim);
            return bad_rule(text, err);
        }
        out->kind = RULE_CLAIM;
        out->claim = claim;
        out->column = xstrdup(colon + 1);
        return FERRY_OK;
    }
    return bad_rule(text, err);
}

void rules_cleanup(struct sync_rule *r)
{
    if (!r)
        return;
    free(r->column);
    free(r->claim);
    memset(r, 0, sizeof(*r));
}

/* Calls fn for each "table=rule" item of list, trimmed; stops at the first failure. */
static int each_item(const char *list,
                     int (*fn)(void *ctx, const char *table, const char *rule, struct err *err),
                     void *ctx, struct err *err)
{
    char *copy = xstrdup(list ? list : ""), *save = NULL;
    int rc = FERRY_OK;
    for (char *item = strtok_r(copy, ",", &save); item && rc == FERRY_OK;
         item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ')
            item++;
        char *end = item + strlen(item);
        while (end > item && end[-1] == ' ')
            *--end = '\0';
        if (!*item)
            continue;
        char *eq = strchr(item, '=');
        if (!eq || eq == item) {
            rc = err_set(err, ERR_INVALID, "sync rule '%.100s' must be TABLE=RULE", item);
            break;
        }
        *eq = '\0';
        rc = fn(ctx, item, eq + 1, err);
    }
    free(copy);
    return rc;
}

struct seen {
    char **tables;
    size_t n;
};

static int check_item(void *ctx, const char *table, const char *rule, struct err *err)
{
    struct seen *s = ctx;
    struct sync_rule r;
    if (rules_parse(rule, &r, err) != FERRY_OK) {
        char msg[sizeof(err->msg)];
        snprintf(msg, sizeof(msg), "%s", err->msg);
        return err_set(err, ERR_INVALID, "table '%.100s': %s", table, msg);
    }
    rules_cleanup(&r);
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->tables[i], table))
            return err_set(err, ERR_INVALID, "table '%.100s' has two sync rules", table);
    s->tables = xrealloc(s->tables, (s->n + 1) * sizeof(*s->tables));
    s->tables[s->n++] = xstrdup(table);
    return FERRY_OK;
}

int rules_check_list(const char *list, struct err *err)
{
    struct seen s = {0};
    int rc = each_item(list, check_item, &s, err);
    for (size_t i = 0; i < s.n; i++)
        free(s.tables[i]);
    free(s.tables);
    return rc;
}

struct finding {
    const char *table;
    struct sync_rule *out;
};

static int find_item(void *ctx, const char *table, const char *rule, struct err *err)
{
    struct finding *f = ctx;
    if (strcmp(table, f->table) != 0)
        return FERRY_OK;
    rules_cleanup(f->out);
    return rules_parse(rule, f->out, err);
}

int rules_find(const char *list, const char *table, struct sync_rule *out, struct err *err)
{
    struct finding f = {table, out};
    memset(out, 0, sizeof(*out));
    return each_item(list, find_item, &f, err);
}

struct naming {
    int (*fn)(void *ctx, const char *table, struct err *err);
    void *ctx;
};

static int name_item(void *ctx, const char *table, const char *rule, struct err *err)
{
    struct naming *n = ctx;
    (void)rule;
    return n->fn(n->ctx, table, err);
}

int rules_each_table(const char *list, int (*fn)(void *ctx, const char *table, struct err *err),
                     void *ctx, struct err *err)
{
    struct naming n = {fn, ctx};
    return each_item(list, name_item, &n, err);
}

char *rules_text(const struct sync_rule *r)
{
    switch (r->kind) {
    case RULE_SHARED:
        return xstrdup("shared");
    case RULE_READONLY:
        return xstrdup("read-only");
    case RULE_OWNER:
        return xasprintf("owner:%s", r->column);
    case RULE_CLAIM:
        return xasprintf("claim:%s:%s", r->claim, r->column);
    default:
        return xstrdup("");
    }
}

bool rules_scoped(const struct sync_rule *r)
{
    return r->kind == RULE_OWNER || r->kind == RULE_CLAIM;
}

enum rules_reach rules_reach(const struct sync_rule *r, const struct rules_caller *caller,
                             char *value)
{
    value[0] = '\0';
    if (!rules_scoped(r) || !caller || caller->admin)
        return REACH_ALL;
    if (r->kind == RULE_OWNER) {
        if (!caller->user_id || !*caller->user_id || strlen(caller->user_id) >= RULES_VALUE_MAX)
            return REACH_NONE;
        snprintf(value, RULES_VALUE_MAX, "%s", caller->user_id);
        return REACH_VALUE;
    }
    if (!caller->claim || caller->claim(caller->ctx, r->claim, value, RULES_VALUE_MAX) != FERRY_OK)
        return REACH_NONE;
    return REACH_VALUE;
}

bool rules_may_write(const struct sync_rule *r, const struct rules_caller *caller)
{
    return r->kind != RULE_READONLY || !caller || caller->admin;
}
