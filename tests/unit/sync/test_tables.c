/* test_tables.c - unit tests for src/sync/tables.c on SQLite and PostgreSQL: loading the
 * synced set (columns, keys, policies), refusing tables that cannot be synced, recording
 * rows that were there first, and the capture triggers logging every writer's changes,
 * ferry's (with their device) and other programs' (with none). */
#include "sync/sync_fixture.h"

static void test_describes_the_tables(void **state)
{
    struct sync_fixture *f = *state;
    const struct synced_table *t = tables_find(&f->set, "orders");
    assert_non_null(t);
    assert_null(tables_find(&f->set, "nope"));
    assert_int_equal(t->n_cols, 3);
    assert_string_equal(t->cols[t->pk].name, "id");
    assert_int_equal(tables_column(t, "qty"), 2);
    assert_int_equal(tables_column(t, "colour"), -1);
    assert_true(t->cols[1].required);
    assert_false(t->cols[2].required);
    assert_int_equal(t->policy, POLICY_MANUAL);
    assert_int_equal(tables_find(&f->set, "notes")->policy, POLICY_OVERWRITE);
    assert_int_equal(tables_find(&f->set, "merged")->policy, POLICY_MERGE);

    enum conflict_policy p;
    assert_int_equal(tables_parse_policy("skip", &p), FERRY_OK);
    assert_int_equal(p, POLICY_SKIP);
    assert_string_equal(tables_policy_name(p), "skip");
    assert_int_not_equal(tables_parse_policy("whatever", &p), FERRY_OK);
}

static void test_refuses_what_cannot_sync(void **state)
{
    struct sync_fixture *f = *state;
    struct synced_set set = {0};
    struct err err = {0};
    assert_int_equal(store_exec(f->store.c,
                                "CREATE TABLE twokeys (a INTEGER, b INTEGER, PRIMARY KEY (a, b));"
                                "CREATE TABLE nokey (a INTEGER)",
                                &err),
                     FERRY_OK);
    static const char *const lists[] = {"missing", "twokeys", "nokey", "notes,missing"};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        memset(&err, 0, sizeof(err));
        assert_int_equal(
            tables_load(f->store.st, lists[i], NULL, NULL, POLICY_OVERWRITE, &set, &err),
            FERRY_ERR);
        assert_true(err.msg[0] != '\0');
        tables_cleanup(&set);
    }
    memset(&err, 0, sizeof(err));
    assert_int_equal(
        tables_load(f->store.st, "notes", "notes=sometimes", NULL, POLICY_OVERWRITE, &set, &err),
        FERRY_ERR);
    tables_cleanup(&set);
}

static void test_rows_there_first_are_logged(void **state)
{
    struct sync_fixture *f = *state;
    struct synced_set set = {0};
    struct err err = {0};
    assert_int_equal(store_exec(f->store.c,
                                "CREATE TABLE later (id INTEGER PRIMARY KEY, v TEXT);"
                                "INSERT INTO later VALUES (1, 'a'), (2, 'b')",
                                &err),
                     FERRY_OK);
    assert_int_equal(tables_load(f->store.st, "later", NULL, NULL, POLICY_OVERWRITE, &set, &err),
                     FERRY_OK);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE tbl = 'later'"), 2);
    tables_cleanup(&set);
    /* loading again (a restart) logs nothing twice */
    assert_int_equal(tables_load(f->store.st, "later", NULL, NULL, POLICY_OVERWRITE, &set, &err),
                     FERRY_OK);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE tbl = 'later'"), 2);
    tables_cleanup(&set);
}

static void test_triggers_capture_every_writer(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    /* another program's writes: no device */
    assert_int_equal(store_exec(f->store.c,
                                "INSERT INTO notes(id, title) VALUES ('x', 'a');"
                                "UPDATE notes SET title = 'b' WHERE id = 'x'",
                                &err),
                     FERRY_OK);
    assert_int_equal(sync_int(f, "SELECT version FROM ferry_changes WHERE pk = 'x'"), 2);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE pk = 'x'"
                                 " AND device_id IS NULL"),
                     1);
    /* ferry's writes carry the device named for the transaction */
    assert_int_equal(store_begin(f->store.c, &err), FERRY_OK);
    assert_int_equal(changelog_lock(f->store.c, &err), FERRY_OK);
    assert_int_equal(changelog_set_device(f->store.c, "phone", &err), FERRY_OK);
    assert_int_equal(store_exec(f->store.c, "DELETE FROM notes WHERE id = 'x'", &err), FERRY_OK);
    assert_int_equal(changelog_set_device(f->store.c, NULL, &err), FERRY_OK);
    assert_int_equal(store_commit(f->store.c, &err), FERRY_OK);
    assert_int_equal(sync_int(f, "SELECT deleted FROM ferry_changes WHERE pk = 'x'"), 1);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE pk = 'x'"
                                 " AND device_id = 'phone'"),
                     1);
    /* a key changed by an update leaves a tombstone under the old key */
    assert_int_equal(store_exec(f->store.c,
                                "INSERT INTO notes(id) VALUES ('k1');"
                                "UPDATE notes SET id = 'k2' WHERE id = 'k1'",
                                &err),
                     FERRY_OK);
    assert_int_equal(sync_int(f, "SELECT deleted FROM ferry_changes WHERE pk = 'k1'"), 1);
    assert_int_equal(sync_int(f, "SELECT deleted FROM ferry_changes WHERE pk = 'k2'"), 0);
    /* seq follows commit order */
    assert_int_equal(sync_int(f, "SELECT MAX(seq) FROM ferry_changes"),
                     sync_int(f, "SELECT seq FROM ferry_changes WHERE pk = 'k2'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        SYNC_TEST(test_describes_the_tables),
        SYNC_TEST(test_refuses_what_cannot_sync),
        SYNC_TEST(test_rows_there_first_are_logged),
        SYNC_TEST(test_triggers_capture_every_writer),
    };
    return SYNC_RUN_BOTH(tests);
}
