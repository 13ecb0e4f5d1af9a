/* sync_fixture.h - a store of either backend with four synced user tables (one per
 * conflict policy) and small helpers to push and read the feed, for the unit tests of the
 * record-sync modules. Each test file runs its tests once per backend. */
#ifndef FERRY_SYNC_FIXTURE_H
#define FERRY_SYNC_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include "store_fixture.h"
#include "sync/feed.h"
#include "sync/push.h"
#include "sync/tables.h"

struct sync_fixture {
    struct store_fixture store;
    struct synced_set set;
};

#define SYNC_SCHEMA                                                                                \
    "CREATE TABLE notes (id TEXT PRIMARY KEY, title TEXT, body TEXT, n INTEGER);"                  \
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL, qty INTEGER);"               \
    "CREATE TABLE keep (id TEXT PRIMARY KEY, title TEXT);"                                         \
    "CREATE TABLE merged (id TEXT PRIMARY KEY, title TEXT, body TEXT);"

static inline int sync_fixture_close(void **state)
{
    struct sync_fixture *f = *state;
    if (!f)
        return 0;
    tables_cleanup(&f->set);
    store_fixture_close(&f->store);
    free(f);
    *state = NULL;
    return 0;
}

/* cmocka runs no teardown after a failed setup: a failure cleans up here. */
static inline int sync_fixture_open(void **state, const char *name, enum store_dialect dialect)
{
    struct sync_fixture *f = xcalloc(1, sizeof(*f));
    struct err err = {0};
    *state = f;
    if (store_fixture_open_as(&f->store, name, dialect) != 0) {
        sync_fixture_close(state);
        return -1;
    }
    if (store_exec(f->store.c, SYNC_SCHEMA, &err) != FERRY_OK ||
        tables_load(f->store.st, "notes,orders,keep,merged", "orders=manual,keep=skip,merged=merge",
                    NULL, POLICY_OVERWRITE, &f->set, &err) != FERRY_OK) {
        fprintf(stderr, "sync fixture: %s\n", err.msg);
        sync_fixture_close(state);
        return -1;
    }
    return 0;
}

/* The backend of the group being run (see SYNC_RUN_BOTH). */
static enum store_dialect sync_dialect = STORE_SQLITE;

static inline int sync_fixture_setup(void **state)
{
    return sync_fixture_open(state, "sync", sync_dialect);
}

/* Pushes ops (JSON text of the array) as device (NULL: none) with per-operation results
 * when results; returns push_apply's rc, the answer in *out (may be NULL) and err. */
static inline int sync_push(struct sync_fixture *f, const char *device, const char *ops_json,
                            bool results, json_t **out, struct err *err)
{
    json_t *ops = json_loads(ops_json, 0, NULL);
    json_t *answer = NULL;
    bool replayed = false;
    assert_non_null(ops);
    struct push_request r = {
        .origin = device ? device : "test",
        .device_id = device,
        .user_id = "alice",
        .want_results = results,
        .ops = ops,
    };
    int rc = push_apply(f->store.c, &f->set, &r, &answer, &replayed, err);
    json_decref(ops);
    if (out)
        *out = answer;
    else
        json_decref(answer);
    return rc;
}

/* As sync_push, failing the test unless it succeeds. */
static inline void sync_push_ok(struct sync_fixture *f, const char *device, const char *ops_json)
{
    struct err err = {0};
    if (sync_push(f, device, ops_json, true, NULL, &err) != FERRY_OK)
        fail_msg("push %s: %s", ops_json, err.msg);
}

/* One integer the query answers (-1 for no row). */
static inline int64_t sync_int(struct sync_fixture *f, const char *sql)
{
    struct err err = {0};
    int64_t v = -1;
    bool found = false;
    if (store_query_int(f->store.c, sql, NULL, 0, &v, &found, &err) != FERRY_OK)
        fail_msg("%s: %s", sql, err.msg);
    return found ? v : -1;
}

/* The feed of every table after cursor (leaving out device's own changes). */
static inline json_t *sync_feed(struct sync_fixture *f, int64_t cursor, const char *device,
                                int limit, struct feed_page *page)
{
    const struct synced_table *tables[8];
    struct err err = {0};
    for (size_t i = 0; i < f->set.n; i++)
        tables[i] = &f->set.tables[i];
    struct feed_query q = {.tables = tables,
                           .n_tables = f->set.n,
                           .cursor = cursor,
                           .limit = limit,
                           .exclude_device = device};
    if (feed_read(f->store.c, &q, page, &err) != FERRY_OK)
        fail_msg("feed_read: %s", err.msg);
    return page->changes;
}

/* Runs a test group once on SQLite and once on PostgreSQL. */
#define SYNC_RUN_BOTH(tests)                                                                       \
    ((sync_dialect = STORE_SQLITE), cmocka_run_group_tests_name("sqlite", tests, NULL, NULL)) +    \
        ((sync_dialect = STORE_POSTGRES),                                                          \
         cmocka_run_group_tests_name("postgres", tests, NULL, NULL))

/* A test with a fresh store and synced tables of the group's backend. */
#define SYNC_TEST(fn) cmocka_unit_test_setup_teardown(fn, sync_fixture_setup, sync_fixture_close)

#endif
