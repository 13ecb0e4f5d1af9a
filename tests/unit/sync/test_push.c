/* test_push.c - unit tests for src/sync/push.c on SQLite and PostgreSQL: a batch applies
 * all or nothing, is answered once per batch id, respects the credential's scope and the
 * tables' conflict policies, marks a change as a device's own only when the device
 * holds the row as written, and never waits for a row another transaction holds. */
#include <pthread.h>
#include <time.h>

#include "sync/sync_fixture.h"

#define INT_OF(o, k) json_integer_value(json_object_get(o, k))

static void test_applies_and_answers(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    json_t *ans = NULL;
    assert_int_equal(sync_push(f, "phone",
                               "[{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"a\","
                               "\"title\":\"t\"}},{\"table\":\"orders\",\"action\":\"upsert\","
                               "\"data\":{\"id\":7,\"item\":\"x\",\"qty\":2}}]",
                               true, &ans, &err),
                     FERRY_OK);
    assert_int_equal(INT_OF(ans, "applied"), 2);
    assert_int_equal(INT_OF(ans, "cursor"), 2);
    json_t *r0 = json_array_get(json_object_get(ans, "results"), 0);
    assert_string_equal(json_string_value(json_object_get(r0, "status")), "applied");
    assert_int_equal(INT_OF(r0, "version"), 1);
    json_decref(ans);
    assert_int_equal(sync_int(f, "SELECT qty FROM orders WHERE id = 7"), 2);
    /* the same insert again changes nothing; a different one is a conflict */
    assert_int_equal(sync_push(f, "phone",
                               "[{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"a\","
                               "\"title\":\"t\"}}]",
                               true, &ans, &err),
                     FERRY_OK);
    assert_int_equal(INT_OF(ans, "unchanged"), 1);
    json_decref(ans);
    assert_int_equal(sync_push(f, "phone",
                               "[{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"a\","
                               "\"title\":\"other\"}}]",
                               true, NULL, &err),
                     FERRY_ERR);
    assert_int_equal(err.code, ERR_CONFLICT);
}

static void test_all_or_nothing(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    static const char *const bad[] = {
        "[{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"a\"}},"
        "{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"b\",\"colour\":1}}]",
        "[{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"a\"}},"
        "{\"table\":\"orders\",\"action\":\"insert\",\"data\":{\"id\":1}}]",
        "[{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"a\"}},"
        "{\"table\":\"nope\",\"action\":\"insert\",\"data\":{\"id\":\"b\"}}]",
        "[{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"a\"}},"
        "{\"table\":\"notes\",\"action\":\"remove\",\"data\":{\"id\":\"b\"}}]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        assert_int_equal(sync_push(f, "phone", bad[i], true, NULL, &err), FERRY_ERR);
        assert_int_equal(err.code, ERR_INVALID);
        assert_non_null(strstr(err.msg, "operations[1]"));
    }
    /* a failure inside the transaction undoes the operations before it */
    memset(&err, 0, sizeof(err));
    assert_int_equal(
        sync_push(f, "phone",
                  "[{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"a\"}},"
                  "{\"table\":\"notes\",\"action\":\"update\",\"data\":{\"id\":\"zz\","
                  "\"title\":\"x\"}}]",
                  true, NULL, &err),
        FERRY_ERR);
    assert_int_equal(err.code, ERR_NOT_FOUND);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM notes"), 0);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes"), 0);
}

static void test_batch_id_answered_once(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    json_t *ops = json_loads("[{\"table\":\"notes\",\"action\":\"upsert\",\"data\":{\"id\":\"a\","
                             "\"n\":1}}]",
                             0, NULL);
    struct push_request r = {
        .origin = "device:phone", .batch_id = "b1", .device_id = "phone", .ops = ops};
    json_t *first = NULL, *again = NULL;
    bool replayed = true;
    assert_int_equal(push_apply(f->store.c, &f->set, &r, &first, &replayed, &err), FERRY_OK);
    assert_false(replayed);
    assert_int_equal(push_apply(f->store.c, &f->set, &r, &again, &replayed, &err), FERRY_OK);
    assert_true(replayed);
    assert_true(json_equal(first, again));
    assert_int_equal(sync_int(f, "SELECT version FROM ferry_changes WHERE pk = 'a'"), 1);
    json_decref(first);
    json_decref(again);
    json_decref(ops);
}

static void test_scope_and_builtin(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    json_t *ops = json_loads(
        "[{\"table\":\"orders\",\"action\":\"insert\",\"data\":{\"id\":1,\"item\":\"x\"}}]", 0,
        NULL);
    struct push_request r = {.origin = "t", .scope = "notes,keep", .ops = ops};
    json_t *ans = NULL;
    bool replayed = false;
    assert_int_equal(push_apply(f->store.c, &f->set, &r, &ans, &replayed, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_FORBIDDEN);
    assert_true(push_scope_allows("notes,keep", "keep"));
    assert_false(push_scope_allows("notes,keep", "note"));
    assert_true(push_scope_allows(NULL, "anything"));
    json_decref(ops);
}

static void test_policies(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    json_t *ans = NULL;
    sync_push_ok(f, "phone",
                 "[{\"table\":\"keep\",\"action\":\"insert\",\"data\":{\"id\":\"k\"}},"
                 "{\"table\":\"orders\",\"action\":\"insert\",\"data\":{\"id\":1,"
                 "\"item\":\"i\"}}]");
    sync_push_ok(
        f, "tablet",
        "[{\"table\":\"keep\",\"action\":\"update\",\"data\":{\"id\":\"k\",\"title\":\"t\"}},"
        "{\"table\":\"orders\",\"action\":\"update\",\"data\":{\"id\":1,\"qty\":5}}]");
    /* the phone's edits are based on version 1: skip keeps the server's row, manual records
     * a conflict and keeps it too */
    assert_int_equal(sync_push(f, "phone",
                               "[{\"table\":\"keep\",\"action\":\"update\",\"base_version\":1,"
                               "\"data\":{\"id\":\"k\",\"title\":\"p\"}},{\"table\":\"orders\","
                               "\"action\":\"update\",\"base_version\":1,\"data\":{\"id\":1,"
                               "\"qty\":9}}]",
                               true, &ans, &err),
                     FERRY_OK);
    assert_int_equal(INT_OF(ans, "skipped"), 1);
    assert_int_equal(json_array_size(json_object_get(ans, "conflicts")), 1);
    json_decref(ans);
    assert_int_equal(sync_int(f, "SELECT qty FROM orders WHERE id = 1"), 5);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM keep WHERE title = 't'"), 1);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_conflicts WHERE status = 'open'"), 1);
}

/* Issue 10 item 6: a partial write that re-creates a row another device deleted, unseen by
 * the pushing device, is no device's own change (its feed must bring the row). */
static void test_partial_recreate_is_not_own(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    sync_push_ok(f, "phone",
                 "[{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"a\","
                 "\"title\":\"t\",\"body\":\"b\",\"n\":1},\"base_version\":null},"
                 "{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"c\","
                 "\"title\":\"t\",\"body\":\"b\",\"n\":1}}]");
    sync_push_ok(f, "tablet",
                 "[{\"table\":\"notes\",\"action\":\"delete\",\"data\":{\"id\":\"a\"}},"
                 "{\"table\":\"notes\",\"action\":\"delete\",\"data\":{\"id\":\"c\"}}]");
    sync_push_ok(f, "phone",
                 "[{\"table\":\"notes\",\"action\":\"upsert\",\"data\":{\"id\":\"a\","
                 "\"title\":\"t2\"}}]");
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE pk = 'a'"
                                 " AND device_id IS NULL"),
                     1);
    /* the same through a bulk run (no per-operation results) */
    assert_int_equal(sync_push(f, "phone",
                               "[{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"c\","
                               "\"title\":\"t\"}},{\"table\":\"notes\",\"action\":\"insert\","
                               "\"data\":{\"id\":\"d\",\"title\":\"t\"}}]",
                               false, NULL, &err),
                     FERRY_OK);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE pk = 'c'"
                                 " AND device_id IS NULL"),
                     1);
    /* a new row, and a whole row, stay the device's own */
    sync_push_ok(f, "phone",
                 "[{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"e\"}},"
                 "{\"table\":\"notes\",\"action\":\"upsert\",\"data\":{\"id\":\"a\","
                 "\"title\":\"w\",\"body\":\"w\",\"n\":2}}]");
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE pk IN ('a', 'e')"
                                 " AND device_id = 'phone'"),
                     2);
}

/* Another transaction holding a row (PostgreSQL): a push never waits for it while it holds
 * the writer lock, where an outside write of that row would wait for the push; it starts
 * over until the row is free, and answers 503 with nothing applied when it stays held. */
struct row_holder {
    struct store_conn *c;
    int hold_ms;
};

static void *hold_then_commit(void *arg)
{
    struct row_holder *h = arg;
    struct timespec ts = {.tv_sec = h->hold_ms / 1000, .tv_nsec = (h->hold_ms % 1000) * 1000000L};
    struct err err = {0};
    nanosleep(&ts, NULL);
    store_commit(h->c, &err);
    return NULL;
}

static void test_locked_row_is_waited_for_outside_the_writer_lock(void **state)
{
    struct sync_fixture *f = *state;
    struct store_conn *other = NULL;
    struct err err = {0};
    json_t *ans = NULL;
    if (sync_dialect != STORE_POSTGRES)
        return; /* SQLite has no row locks: its one writer holds the whole database */
    json_t *ops = json_loads("[{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"b\"}},"
                             "{\"table\":\"notes\",\"action\":\"update\",\"data\":{\"id\":\"a\","
                             "\"title\":\"new\"}}]",
                             0, NULL);
    struct push_request r = {
        .origin = "device:phone", .batch_id = "locked", .device_id = "phone", .ops = ops};
    bool replayed = true;
    assert_int_equal(sync_push(f, "phone",
                               "[{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":"
                               "\"a\",\"title\":\"old\"}}]",
                               false, NULL, &err),
                     FERRY_OK);
    assert_int_equal(store_acquire(f->store.st, &other, &err), FERRY_OK);
    assert_int_equal(store_begin(other, &err), FERRY_OK);
    assert_int_equal(
        store_run(other, "SELECT 1 FROM notes WHERE id = 'a' FOR SHARE", NULL, 0, NULL, &err),
        FERRY_OK);
    /* held throughout: 503, and no trace of any attempt (the batch id's claim included) */
    assert_int_equal(push_apply(f->store.c, &f->set, &r, &ans, &replayed, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_UNAVAILABLE);
    assert_non_null(strstr(err.msg, "locked by other transactions"));
    assert_null(ans);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM notes"), 1);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes"), 1);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_batches"), 0);
    /* freed while the push retries: applied once, then answered from the batch id */
    pthread_t th;
    struct row_holder h = {other, 300};
    assert_int_equal(pthread_create(&th, NULL, hold_then_commit, &h), 0);
    memset(&err, 0, sizeof(err));
    assert_int_equal(push_apply(f->store.c, &f->set, &r, &ans, &replayed, &err), FERRY_OK);
    pthread_join(th, NULL);
    assert_false(replayed);
    assert_int_equal(INT_OF(ans, "applied"), 2);
    json_decref(ans);
    assert_int_equal(push_apply(f->store.c, &f->set, &r, &ans, &replayed, &err), FERRY_OK);
    assert_true(replayed);
    json_decref(ans);
    assert_int_equal(sync_int(f, "SELECT version FROM ferry_changes WHERE pk = 'a'"), 2);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes"), 2);
    /* keys that need quoting inside the lock statement's array */
    assert_int_equal(sync_push(f, "phone",
                               "[{\"table\":\"notes\",\"action\":\"upsert\",\"data\":{\"id\":"
                               "\"q\\\"{,}\\\\x\"}},{\"table\":\"notes\",\"action\":\"update\","
                               "\"data\":{\"id\":\"q\\\"{,}\\\\x\",\"n\":1}}]",
                               false, NULL, &err),
                     FERRY_OK);
    assert_int_equal(sync_int(f, "SELECT n FROM notes WHERE id = 'q\"{,}\\x'"), 1);
    /* a foreign-key check's lock (FOR KEY SHARE) does not hold an update back */
    assert_int_equal(store_begin(other, &err), FERRY_OK);
    assert_int_equal(
        store_run(other, "SELECT 1 FROM notes WHERE id = 'a' FOR KEY SHARE", NULL, 0, NULL, &err),
        FERRY_OK);
    assert_int_equal(sync_push(f, "phone",
                               "[{\"table\":\"notes\",\"action\":\"update\",\"data\":{\"id\":"
                               "\"a\",\"n\":2}}]",
                               false, NULL, &err),
                     FERRY_OK);
    store_rollback(other);
    assert_int_equal(sync_int(f, "SELECT n FROM notes WHERE id = 'a'"), 2);
    store_release(other);
    json_decref(ops);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        SYNC_TEST(test_applies_and_answers),
        SYNC_TEST(test_all_or_nothing),
        SYNC_TEST(test_batch_id_answered_once),
        SYNC_TEST(test_scope_and_builtin),
        SYNC_TEST(test_policies),
        SYNC_TEST(test_partial_recreate_is_not_own),
        SYNC_TEST(test_locked_row_is_waited_for_outside_the_writer_lock),
    };
    return SYNC_RUN_BOTH(tests);
}
