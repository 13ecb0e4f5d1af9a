/* test_feed.c - unit tests for src/sync/feed.c on SQLite and PostgreSQL: the latest state
 * of each changed row in seq order, pages, a device's own changes left out, tombstones,
 * cursors from the future, and the purge horizon. */
#include "sync/sync_fixture.h"

static const char *str_of(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void test_pages_in_seq_order(void **state)
{
    struct sync_fixture *f = *state;
    struct feed_page page = {0};
    int64_t head = 0;
    struct err err = {0};
    sync_push_ok(f, "phone",
                 "[{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"a\","
                 "\"title\":\"t\",\"n\":1}},{\"table\":\"orders\",\"action\":\"insert\","
                 "\"data\":{\"id\":3,\"item\":\"x\"}}]");
    sync_push_ok(f, "tablet",
                 "[{\"table\":\"notes\",\"action\":\"update\",\"data\":{\"id\":\"a\","
                 "\"title\":\"u\"}},{\"table\":\"notes\",\"action\":\"insert\","
                 "\"data\":{\"id\":\"b\"}}]");
    assert_int_equal(feed_head(f->store.c, &head, &err), FERRY_OK);
    assert_int_equal(head, 4);

    /* a row changed twice appears once, at its latest seq, with its current data */
    json_t *ch = sync_feed(f, 0, NULL, 10, &page);
    assert_int_equal(json_array_size(ch), 3);
    json_t *first = json_array_get(ch, 0), *a = json_array_get(ch, 1);
    assert_int_equal(json_integer_value(json_object_get(first, "id")), 3);
    assert_string_equal(str_of(a, "id"), "a");
    assert_int_equal(json_integer_value(json_object_get(a, "version")), 2);
    assert_string_equal(str_of(json_object_get(a, "data"), "title"), "u");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(a, "data"), "n")), 1);
    /* the tablet's partial update of a row it never received is no device's own */
    assert_true(json_is_null(json_object_get(a, "deviceId")));
    assert_false(page.has_more);
    assert_int_equal(page.next_cursor, 4);
    json_decref(ch);

    /* pages of one */
    ch = sync_feed(f, 0, NULL, 1, &page);
    assert_int_equal(json_array_size(ch), 1);
    assert_true(page.has_more);
    int64_t next = page.next_cursor;
    json_decref(ch);
    ch = sync_feed(f, next, NULL, 1, &page);
    assert_string_equal(str_of(json_array_get(ch, 0), "id"), "a");
    json_decref(ch);

    /* the tablet's own changes are left out, but the cursor passes them */
    ch = sync_feed(f, 0, "tablet", 10, &page);
    assert_int_equal(json_array_size(ch), 2);
    assert_string_equal(str_of(json_array_get(ch, 1), "id"), "a");
    assert_int_equal(page.next_cursor, 4);
    json_decref(ch);
}

static void test_tombstones_and_cursors(void **state)
{
    struct sync_fixture *f = *state;
    struct feed_page page = {0};
    struct err err = {0};
    int64_t cursor = -1;
    sync_push_ok(f, "phone",
                 "[{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"a\"}}]");
    sync_push_ok(f, "phone",
                 "[{\"table\":\"notes\",\"action\":\"delete\",\"data\":{\"id\":\"a\"}}]");
    json_t *ch = sync_feed(f, 0, NULL, 10, &page);
    json_t *gone = json_array_get(ch, 0);
    assert_int_equal(json_array_size(ch), 1);
    assert_true(json_is_true(json_object_get(gone, "deleted")));
    assert_string_equal(str_of(gone, "op"), "delete");
    assert_true(json_is_null(json_object_get(gone, "data")));
    json_decref(ch);

    const struct synced_table *t = tables_find(&f->set, "notes");
    struct feed_query q = {.tables = &t, .n_tables = 1, .cursor = 99, .limit = 10};
    assert_int_equal(feed_read(f->store.c, &q, &page, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);

    assert_int_equal(feed_parse_cursor("12", &cursor, &err), FERRY_OK);
    assert_int_equal(cursor, 12);
    assert_int_equal(feed_parse_cursor("-1", &cursor, &err), FERRY_ERR);
    assert_int_equal(feed_parse_cursor("1.5", &cursor, &err), FERRY_ERR);
    assert_int_equal(feed_parse_cursor("", &cursor, &err), FERRY_OK); /* none: from the start */
    assert_int_equal(cursor, 0);

    json_t *row = NULL;
    assert_int_equal(feed_row(f->store.c, t, "a", &row, &err), FERRY_OK);
    assert_null(row);
    int64_t horizon = -1;
    assert_int_equal(feed_horizon(f->store.c, &horizon, &err), FERRY_OK);
    assert_int_equal(horizon, 0);
}

static void test_behind_the_horizon_is_gone(void **state)
{
    struct sync_fixture *f = *state;
    struct feed_page page = {0};
    struct err err = {0};
    sync_push_ok(f, "phone",
                 "[{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"a\"}},"
                 "{\"table\":\"notes\",\"action\":\"insert\",\"data\":{\"id\":\"b\"}}]");
    assert_int_equal(store_exec(f->store.c, "UPDATE ferry_writer SET horizon = 2", &err), FERRY_OK);
    const struct synced_table *t = tables_find(&f->set, "notes");
    struct feed_query q = {.tables = &t, .n_tables = 1, .cursor = 1, .limit = 10};
    assert_int_equal(feed_read(f->store.c, &q, &page, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_GONE);
    q.cursor = 0; /* a full resync is always possible */
    assert_int_equal(feed_read(f->store.c, &q, &page, &err), FERRY_OK);
    assert_int_equal(json_array_size(page.changes), 2);
    json_decref(page.changes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        SYNC_TEST(test_pages_in_seq_order),
        SYNC_TEST(test_tombstones_and_cursors),
        SYNC_TEST(test_behind_the_horizon_is_gone),
    };
    return SYNC_RUN_BOTH(tests);
}
