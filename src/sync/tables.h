/* tables.h - the synced tables: which tables are allow-listed, their columns and primary
 * key as the database describes them, their conflict policy, and the change-capture
 * triggers that record every insert, update and delete in ferry_changes. */
#ifndef FERRY_TABLES_H
#define FERRY_TABLES_H

#include <stdbool.h>
#include <stddef.h>

#include "sync/parents.h"
#include "sync/rowwrite.h"
#include "sync/rules.h"
#include "sync/values.h"
#include "ferry.h"
#include "store/store.h"

enum conflict_policy {
    POLICY_OVERWRITE, /* last writer wins */
    POLICY_SKIP,      /* the server keeps its row */
    POLICY_MERGE,     /* field level: a field changed on both sides is a conflict */
    POLICY_MANUAL,    /* the server keeps its row and records a conflict */
};

struct synced_column {
    char *name;
    char *quoted;
    enum col_kind kind;
    bool not_null;
    bool required; /* NOT NULL without a default: an insert must give it */
};

struct synced_table {
    char *name;     /* as devices see it, and as the change log records it */
    char *sql_name; /* the table in the database (ferry_files for the files namespace) */
    char *quoted;   /* sql_name quoted */
    char *literal;  /* the name as an SQL string literal, for trigger bodies */
    struct synced_column *cols;
    size_t n_cols;
    size_t pk; /* index of the primary-key column */
    enum conflict_policy policy;
    char *pk_cast;   /* ferry_changes.pk ("c.pk") in the key's own type, e.g. CAST(c.pk AS ...) */
    bool builtin;    /* ferry's own namespace (files): read-only to pushes, not on cloud-sync-api */
    int deleted_col; /* a column that marks a row deleted while keeping it; -1: none */
    struct rowwrite_table rw;   /* how pushes' statements name it */
    struct parent_keys parents; /* its foreign keys, for pushes to lock first (PostgreSQL) */
    struct sync_rule rule;      /* who may read and write its rows (RULE_NONE: everyone) */
    int rule_col;               /* owner and claim rules: the column's index; -1 otherwise */
    /* A device whose cursor is above 0 and below this seq must pull again from 0: the
     * table's rule changed at that point (0: never). */
    int64_t resync_seq;
};

/* The name of the files namespace in the change feed (DESIGN.md section 2). */
#define FILES_NAMESPACE "files"

struct synced_set {
    struct synced_table *tables;
    size_t n;
};

/* Parses "a,b,c", "t=merge,u=manual" and the sync rules "t=owner:user_id,u=shared" into
 * the set, checks every table against the database (it must exist and have a
 * single-column primary key of an integer or text type; a rule's column must exist and a
 * rule must name a synced table), installs the capture triggers where missing, and
 * records existing rows of a newly synced table in the change log so the feed starts
 * complete. A table whose rule differs from the one stored gets its change log's scope
 * values recomputed and a resync point (resync_seq). On failure err names the table and
 * the reason; nothing is left half-installed for that table. */
int tables_load(struct store *st, const char *list, const char *policies, const char *rules,
                enum conflict_policy default_policy, struct synced_set *out, struct err *err);
void tables_cleanup(struct synced_set *set);

/* Adds the files namespace (the table ferry_files, seen as "files") to the set and
 * installs its capture triggers. */
int tables_add_files(struct store *st, struct synced_set *set, struct err *err);

const struct synced_table *tables_find(const struct synced_set *set, const char *name);
/* Column index by name, -1 when the table has none of that name. */
int tables_column(const struct synced_table *t, const char *name);

/* Inside a write transaction, takes the row lock on ferry_writer on PostgreSQL (SQLite's
 * write transaction already holds the database's): it orders the few ferry writers that
 * read before they write outside the pushes' per-key locks (file entries, purge, trigger
 * installs, resync marks). Capture triggers and pushes do not take it, so other
 * programs' writes never wait for it (settle.h says how readers stay in commit order). */
int changelog_lock(struct store_conn *c, struct err *err);

/* Inside a write transaction, names the device whose change the next writes are (NULL:
 * no device). SQLite's triggers read it from ferry_writer, so set it back to NULL before
 * commit; PostgreSQL's setting ends with the transaction. */
int changelog_set_device(struct store_conn *c, const char *device, struct err *err);

/* Inside a write transaction holding the change log's lock: moves the log's head on by
 * one (a placeholder entry no feed shows) and gives its seq: a device whose cursor is
 * below it must resync, and one that pulls again from 0 ends at or above it (on
 * PostgreSQL once the head has reached it: settle.h). */
int changelog_resync_mark(struct store_conn *c, int64_t *seq, struct err *err);

/* Marks devices for a resync at seq (from changelog_resync_mark): the one named by
 * device_id, else the devices of user_id, else (both NULL) every device that may sync
 * table. Their next feed read from a cursor above 0 and below seq answers "resync
 * required" (feed.c). Inside the caller's transaction. */
int changelog_resync_devices(struct store_conn *c, int64_t seq, const char *device_id,
                             const char *user_id, const char *table, struct err *err);

int tables_parse_policy(const char *name, enum conflict_policy *out);
const char *tables_policy_name(enum conflict_policy policy);

#endif
