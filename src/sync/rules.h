/* rules.h - sync rules: per synced table, who may read and write its rows (shared,
 * owner:COLUMN, claim:NAME:COLUMN, read-only). Parsing the configured rules, and what a
 * caller's scope value is for a table. The SQL that applies a rule lives with the query
 * it narrows (feed.c, push.c, conflicts.c); the capture triggers record each change's
 * scope value (tables.c). */
#ifndef FERRY_RULES_H
#define FERRY_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include "ferry.h"

enum rule_kind {
    RULE_NONE,     /* no rule configured: every credential allowed the table (as before) */
    RULE_SHARED,   /* the same, said explicitly */
    RULE_OWNER,    /* the column holds the owning user id */
    RULE_CLAIM,    /* the column equals a claim of the credential */
    RULE_READONLY, /* everyone reads; only admins (and other programs) write */
};

struct sync_rule {
    enum rule_kind kind;
    char *column; /* owner and claim rules: the column compared */
    char *claim;  /* claim rules: the claim's name */
};

/* Longest scope value (a user id or a claim's value). */
#define RULES_VALUE_MAX 256

/* Who is asking, as plain strings: the domain never sees a request. */
struct rules_caller {
    bool admin;          /* admins read and write every row */
    const char *user_id; /* "" or NULL when the credential has no user */
    /* Copies claim `name` of the credential into out; FERRY_ERR when it has none. */
    int (*claim)(const void *ctx, const char *name, char *out, size_t n);
    const void *ctx;
};

/* Parses one rule ("shared", "owner:user_id", "claim:tenant_id:tenant", "read-only").
 * ERR_INVALID with a message naming the rule otherwise. Release with rules_cleanup. */
int rules_parse(const char *text, struct sync_rule *out, struct err *err);
void rules_cleanup(struct sync_rule *r);

/* Checks a configured list "t=rule,u=rule" (every item TABLE=RULE, each rule valid,
 * no table twice). */
int rules_check_list(const char *list, struct err *err);

/* Finds table's rule in the list; RULE_NONE when the list has none for it. */
int rules_find(const char *list, const char *table, struct sync_rule *out, struct err *err);

/* The table named by each item of the list, one by one: calls fn(ctx, table) and stops at
 * the first failure (for start-up's "unknown table" check). */
int rules_each_table(const char *list, int (*fn)(void *ctx, const char *table, struct err *err),
                     void *ctx, struct err *err);

/* The rule as configuration writes it ("owner:user_id"); "" for RULE_NONE. Caller frees. */
char *rules_text(const struct sync_rule *r);

/* Whether the rule narrows rows to a scope value (owner and claim rules). */
bool rules_scoped(const struct sync_rule *r);

/* What caller may see of a table under rule r. */
enum rules_reach {
    REACH_ALL,   /* every row */
    REACH_VALUE, /* rows whose scope value is value */
    REACH_NONE,  /* no row (a claim rule, and the credential lacks the claim) */
};
/* value must hold RULES_VALUE_MAX bytes; it is set for REACH_VALUE. A NULL caller is
 * unrestricted (ferry's own work: resolutions by admins, site imports). */
enum rules_reach rules_reach(const struct sync_rule *r, const struct rules_caller *caller,
                             char *value);

/* Whether caller may write rows of a table under rule r at all (read-only refuses all
 * but admins). */
bool rules_may_write(const struct sync_rule *r, const struct rules_caller *caller);

#endif
