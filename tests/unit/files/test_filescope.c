/* test_filescope.c - who sees which file entries (files/filescope.c): shared folders as
 * configured, the namespace a path names, entry keys, and the SQL condition run on a
 * real SQLite database against the C rules for the same rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "files/filescope.h"

static void test_parse_folders(void **state)
{
    (void)state;
    char **f = NULL;
    size_t n = 0;
    struct err err = {0};
    assert_int_equal(filescope_parse_folders(" /team/ ,, public,a//b/./c ", &f, &n, &err),
                     FERRY_OK);
    assert_int_equal(n, 3);
    assert_string_equal(f[0], "team");
    assert_string_equal(f[1], "public");
    assert_string_equal(f[2], "a/b/c");
    assert_null(f[3]);
    filescope_free_folders(f);
    assert_int_equal(filescope_parse_folders(NULL, &f, &n, &err), FERRY_OK);
    assert_int_equal(n, 0);
    assert_null(f[0]);
    filescope_free_folders(f);
    assert_int_equal(filescope_parse_folders("ok,../up", &f, &n, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_non_null(strstr(err.msg, "../up"));
    assert_null(f);
    filescope_free_folders(NULL);
}

static const char *const shared[] = {"team", "a/b"};

static void test_owner_and_visibility(void **state)
{
    (void)state;
    struct filescope anna = {"anna", false, shared, 2}, admin = {"", true, shared, 2};
    assert_true(filescope_is_shared(shared, 2, "team/x"));
    assert_true(filescope_is_shared(shared, 2, "a/b/c/d"));
    assert_false(filescope_is_shared(shared, 2, "team"));
    assert_false(filescope_is_shared(shared, 2, "teamwork/x"));
    assert_false(filescope_is_shared(shared, 2, "a/bc"));
    assert_string_equal(filescope_owner(&anna, "notes.txt"), "anna");
    assert_null(filescope_owner(&anna, "team/plan.txt"));
    assert_null(filescope_owner(&admin, "notes.txt")); /* an admin without a user id */
    assert_true(filescope_sees(&anna, "anna", "notes.txt"));
    assert_false(filescope_sees(&anna, "bob", "notes.txt"));
    assert_true(filescope_sees(&anna, NULL, "team/plan.txt"));
    assert_false(filescope_sees(&anna, NULL, "old.txt"));         /* common, not shared */
    assert_false(filescope_sees(&anna, "anna", "team/plan.txt")); /* hidden by the folder */
    assert_true(filescope_sees(&admin, "bob", "notes.txt"));
    assert_true(filescope_sees(&admin, NULL, "old.txt"));
}

static void test_keys(void **state)
{
    (void)state;
    char *k = filescope_key(NULL, "docs/a");
    assert_string_equal(k, "docs/a");
    free(k);
    k = filescope_key("anna", "docs/a");
    assert_string_equal(k, "/4:anna/docs/a");
    free(k);
    /* an owner holding '/' cannot make another owner's key */
    char *one = filescope_key("a/b", "c"), *two = filescope_key("a", "b/c");
    assert_string_not_equal(one, two);
    free(one);
    free(two);
}

static const struct {
    const char *owner, *path;
} rows[] = {{"anna", "notes.txt"}, {"bob", "notes.txt"}, {NULL, "team/plan.txt"},
            {NULL, "old.txt"},     {"anna", "team/x"},   {NULL, "te'am/q"},
            {"o'neil", "n.txt"},   {NULL, "teamwork/y"}};
#define N_ROWS (sizeof(rows) / sizeof(rows[0]))

/* The rows the condition of scope picks are those filescope_sees allows; bound: the user
 * as the parameter ?1 (filescope_sql_bound), else as a literal. */
static void check_condition(sqlite3 *db, const struct filescope *scope, bool bound)
{
    char *cond = bound ? filescope_sql_bound(scope, "f", "?1") : filescope_sql(scope, "f");
    char *sql = xasprintf("SELECT rowid FROM f WHERE %s", cond);
    sqlite3_stmt *st = NULL;
    bool seen[N_ROWS] = {0};
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (bound && scope->user_id && *scope->user_id && !scope->admin) {
        assert_null(strstr(cond, scope->user_id)); /* one text for every user */
        sqlite3_bind_text(st, 1, scope->user_id, -1, SQLITE_STATIC);
    }
    while (sqlite3_step(st) == SQLITE_ROW)
        seen[sqlite3_column_int(st, 0) - 1] = true;
    sqlite3_finalize(st);
    for (size_t i = 0; i < N_ROWS; i++)
        assert_int_equal(seen[i], filescope_sees(scope, rows[i].owner, rows[i].path));
    free(sql);
    free(cond);
}

/* The SQL condition picks exactly the rows filescope_sees allows, quotes and all. */
static void test_sql_matches_the_rules(void **state)
{
    (void)state;
    static const char *const odd[] = {"te'am", "team"};
    const struct filescope scopes[] = {
        {"anna", false, odd, 2}, {"o'neil", false, odd, 2}, {"bob", false, NULL, 0},
        {"", false, odd, 2},     {"", true, odd, 2},
    };
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE f (owner TEXT, path TEXT)", NULL, NULL, NULL),
                     SQLITE_OK);
    for (size_t i = 0; i < N_ROWS; i++) {
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(db, "INSERT INTO f VALUES (?, ?)", -1, &st, NULL);
        if (rows[i].owner)
            sqlite3_bind_text(st, 1, rows[i].owner, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, rows[i].path, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);
    }
    for (size_t s = 0; s < sizeof(scopes) / sizeof(scopes[0]); s++) {
        check_condition(db, &scopes[s], false);
        check_condition(db, &scopes[s], true);
    }
    char *all = filescope_sql(NULL, "f");
    assert_string_equal(all, "1 = 1");
    free(all);
    sqlite3_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_folders),
        cmocka_unit_test(test_owner_and_visibility),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_sql_matches_the_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
