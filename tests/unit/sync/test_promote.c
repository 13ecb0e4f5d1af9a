/* test_promote.c - unit tests for src/sync/promote.c: on PostgreSQL a change is pending
 * (seq NULL) until promoted, promotion follows commit order even when a transaction that
 * wrote first commits last, an entry being written again waits for the next promoter,
 * a transaction numbers only its own entries (its subtransactions' too, by the top-level
 * transaction id each entry records), and the scope exits an entry left share its
 * seq; the feed numbers what it reads. On
 * SQLite every change has its seq at once and promoting does nothing. */
#include "sync/promote.h"
#include "sync/sync_fixture.h"

static bool pg(struct sync_fixture *f)
{
    return store_conn_dialect(f->store.c) == STORE_POSTGRES;
}

static void run(struct store_conn *c, const char *sql)
{
    struct err err = {0};
    if (store_exec(c, sql, &err) != FERRY_OK)
        fail_msg("%s: %s", sql, err.msg);
}

static void promote(struct store_conn *c)
{
    struct err err = {0};
    if (promote_run(c, &err) != FERRY_OK)
        fail_msg("promote_run: %s", err.msg);
}

static void test_a_change_is_pending_until_promoted(void **state)
{
    struct sync_fixture *f = *state;
    int64_t head = sync_int(f, "SELECT COALESCE(MAX(seq), 0) FROM ferry_changes");
    run(f->store.c, "INSERT INTO notes(id) VALUES ('a'); INSERT INTO notes(id) VALUES ('b')");
    if (!pg(f)) { /* SQLite numbers each change as it is written */
        assert_int_equal(sync_int(f, "SELECT seq FROM ferry_changes WHERE pk = 'b'"), head + 2);
        promote(f->store.c);
        return;
    }
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE seq IS NULL"), 2);
    assert_int_equal(sync_int(f, "SELECT COALESCE(MAX(seq), 0) FROM ferry_changes"), head);
    promote(f->store.c);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE seq IS NULL"), 0);
    /* in write order */
    assert_int_equal(sync_int(f, "SELECT seq FROM ferry_changes WHERE pk = 'a'"), head + 1);
    assert_int_equal(sync_int(f, "SELECT seq FROM ferry_changes WHERE pk = 'b'"), head + 2);
    /* a change of a numbered row is pending again, with the next version */
    run(f->store.c, "UPDATE notes SET title = 'x' WHERE id = 'a'");
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE pk = 'a'"
                                 " AND seq IS NULL AND version = 2"),
                     1);
    promote(f->store.c);
    assert_int_equal(sync_int(f, "SELECT seq FROM ferry_changes WHERE pk = 'a'"), head + 3);
    /* the newest entry pending again: the head stays (a cursor it gave stays valid) */
    run(f->store.c, "UPDATE notes SET title = 'y' WHERE id = 'a'");
    struct err err = {0};
    int64_t now = 0;
    assert_int_equal(feed_head(f->store.c, &now, &err), FERRY_OK);
    assert_int_equal(now, head + 3);
}

/* The transaction that wrote first commits last: its change is numbered after the one
 * that committed first, so a reader that saw that one never skips it. */
static void test_promotion_follows_commit_order(void **state)
{
    struct sync_fixture *f = *state;
    struct store_conn *other = NULL;
    struct err err = {0};
    if (!pg(f))
        return;
    assert_int_equal(store_acquire(f->store.st, &other, &err), FERRY_OK);
    run(other, "BEGIN; INSERT INTO notes(id) VALUES ('early')");
    run(f->store.c, "INSERT INTO notes(id) VALUES ('late')");
    promote(f->store.c);
    int64_t late = sync_int(f, "SELECT seq FROM ferry_changes WHERE pk = 'late'");
    assert_true(late > 0);
    /* the reader's cursor moves on to late; early is not there yet, in any form */
    struct feed_page page;
    json_t *changes = sync_feed(f, 0, NULL, 100, &page);
    assert_int_equal(page.next_cursor, late);
    json_decref(changes);
    run(other, "COMMIT");
    store_release(other);
    changes = sync_feed(f, late, NULL, 100, &page); /* the feed promotes what it finds */
    assert_int_equal(json_array_size(changes), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(changes, 0), "id")),
                        "early");
    assert_true(json_integer_value(json_object_get(json_array_get(changes, 0), "seq")) > late);
    json_decref(changes);
}

/* An entry whose row a running transaction writes again is left to the promoter after
 * its commit (SKIP LOCKED), and the promoter does not wait for it. */
static void test_an_entry_being_written_again_waits_for_its_commit(void **state)
{
    struct sync_fixture *f = *state;
    struct store_conn *other = NULL;
    struct err err = {0};
    if (!pg(f))
        return;
    run(f->store.c, "INSERT INTO notes(id) VALUES ('r'); INSERT INTO notes(id) VALUES ('s')");
    assert_int_equal(store_acquire(f->store.st, &other, &err), FERRY_OK);
    run(other, "BEGIN; UPDATE notes SET title = 'again' WHERE id = 'r'");
    promote(f->store.c);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE pk = 'r'"
                                 " AND seq IS NULL"),
                     1);
    int64_t s = sync_int(f, "SELECT seq FROM ferry_changes WHERE pk = 's'");
    run(other, "COMMIT");
    store_release(other);
    promote(f->store.c);
    assert_true(sync_int(f, "SELECT seq FROM ferry_changes WHERE pk = 'r' AND version = 2") > s);
}

/* Inside a transaction (a push, at its end) the promoter numbers only that transaction's
 * entries, in write order: another program's committed pending entry is left to the
 * promoter after it, which numbers it above them, so commit order still holds. */
static void test_a_transaction_numbers_only_its_own(void **state)
{
    struct sync_fixture *f = *state;
    struct store_conn *other = NULL;
    struct err err = {0};
    if (!pg(f))
        return;
    assert_int_equal(store_acquire(f->store.st, &other, &err), FERRY_OK);
    run(other, "INSERT INTO notes(id) VALUES ('theirs')"); /* committed, pending */
    assert_int_equal(store_begin(f->store.c, &err), FERRY_OK);
    run(f->store.c,
        "INSERT INTO notes(id) VALUES ('mine1'); INSERT INTO notes(id) VALUES ('mine2')");
    promote(f->store.c);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE pk = 'theirs'"
                                 " AND seq IS NULL"),
                     1);
    int64_t one = sync_int(f, "SELECT seq FROM ferry_changes WHERE pk = 'mine1'");
    int64_t two = sync_int(f, "SELECT seq FROM ferry_changes WHERE pk = 'mine2'");
    assert_true(one > 0 && two == one + 1);
    assert_int_equal(store_commit(f->store.c, &err), FERRY_OK);
    int64_t head = 0;
    assert_int_equal(feed_head(f->store.c, &head, &err), FERRY_OK);
    assert_int_equal(head, two);
    store_release(other);
    promote(f->store.c);
    assert_true(sync_int(f, "SELECT seq FROM ferry_changes WHERE pk = 'theirs'") > two);
}

/* A user's trigger on notes that logs each new note in keep inside an EXCEPTION block: a
 * subtransaction, so keep's entry has another xmin than the note's. */
#define USER_TRIGGER                                                                               \
    "CREATE FUNCTION mirror() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"                        \
    " BEGIN INSERT INTO keep(id) VALUES (NEW.id || '-k');"                                         \
    " EXCEPTION WHEN unique_violation THEN NULL; END; RETURN NULL; END $$;"                        \
    "CREATE TRIGGER mirror AFTER INSERT ON notes FOR EACH ROW EXECUTE FUNCTION mirror();"

#define MINE "pk IN ('top', 'top-k', 'saved', 'saved-k', 'gone', 'gone-k')"

/* What a transaction wrote in its subtransactions (a user trigger's EXCEPTION block, a
 * SAVEPOINT released) is its own: numbered by its promoter, in one run with the rest; what
 * a subtransaction rolled back is not there to number. */
static void test_a_transaction_numbers_what_its_subtransactions_wrote(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    if (!pg(f))
        return;
    run(f->store.c, USER_TRIGGER);
    int64_t head = sync_int(f, "SELECT seq FROM ferry_head");
    assert_int_equal(store_begin(f->store.c, &err), FERRY_OK);
    run(f->store.c, "INSERT INTO notes(id) VALUES ('top');"
                    "SAVEPOINT s; INSERT INTO notes(id) VALUES ('saved'); RELEASE SAVEPOINT s;"
                    "SAVEPOINT t; INSERT INTO notes(id) VALUES ('gone'); ROLLBACK TO SAVEPOINT t");
    /* four entries, written by four transaction ids (the top one and three subtransactions) */
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE " MINE), 4);
    assert_int_equal(sync_int(f, "SELECT COUNT(DISTINCT xmin::text) FROM ferry_changes"
                                 " WHERE " MINE),
                     4);
    promote(f->store.c);
    assert_int_equal(
        sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE " MINE " AND seq IS NULL"), 0);
    assert_int_equal(sync_int(f, "SELECT MIN(seq) FROM ferry_changes WHERE " MINE), head + 1);
    assert_int_equal(sync_int(f, "SELECT MAX(seq) FROM ferry_changes WHERE " MINE), head + 4);
    assert_int_equal(store_commit(f->store.c, &err), FERRY_OK);
    assert_int_equal(sync_int(f, "SELECT seq FROM ferry_head"), head + 4);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE pk LIKE 'gone%'"), 0);
}

/* A push whose row a user's trigger mirrors in a subtransaction: the push numbers both
 * entries itself, and its answer's cursor covers them, so the feed after it is empty. */
static void test_a_push_numbers_its_user_triggers_writes(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    json_t *answer = NULL;
    struct feed_page page;
    if (!pg(f))
        return;
    run(f->store.c, USER_TRIGGER);
    int64_t head = sync_int(f, "SELECT seq FROM ferry_head");
    assert_int_equal(sync_push(f, "dev1",
                               "[{\"table\":\"notes\",\"action\":\"insert\","
                               "\"data\":{\"id\":\"pushed\",\"title\":\"t\"}}]",
                               false, &answer, &err),
                     FERRY_OK);
    int64_t cursor = json_integer_value(json_object_get(answer, "cursor"));
    json_decref(answer);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE seq IS NULL"), 0);
    assert_int_equal(cursor, head + 2);
    assert_int_equal(sync_int(f, "SELECT seq FROM ferry_changes WHERE pk = 'pushed-k'") > head, 1);
    json_t *changes = sync_feed(f, head, NULL, 100, &page);
    assert_int_equal(json_array_size(changes), 2);
    assert_int_equal(page.next_cursor, cursor);
    json_decref(changes);
    changes = sync_feed(f, cursor, NULL, 100, &page);
    assert_int_equal(json_array_size(changes), 0);
    json_decref(changes);
}

/* A push to tables without triggers of the user's own takes the promoters' lock before it
 * writes, and its entries are numbered as they are written (never pending: no wseq), in
 * write order, with the head and the answer's cursor on the last; one to a table with a
 * user trigger (which could wait on others under the lock) writes them pending as before. */
static void test_a_push_numbers_its_entries_as_it_writes_them(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    json_t *answer = NULL;
    if (!pg(f))
        return;
    int64_t head = sync_int(f, "SELECT seq FROM ferry_head");
    assert_int_equal(sync_push(f, "dev1",
                               "[{\"table\":\"orders\",\"action\":\"insert\","
                               "\"data\":{\"id\":1,\"item\":\"a\"}},"
                               "{\"table\":\"keep\",\"action\":\"insert\","
                               "\"data\":{\"id\":\"k\"}},"
                               "{\"table\":\"orders\",\"action\":\"insert\","
                               "\"data\":{\"id\":2,\"item\":\"b\"}}]",
                               false, &answer, &err),
                     FERRY_OK);
    assert_int_equal(json_integer_value(json_object_get(answer, "cursor")), head + 3);
    json_decref(answer);
    assert_int_equal(sync_int(f,
                              "SELECT COUNT(*) FROM ferry_changes WHERE tbl IN ('orders', 'keep')"
                              " AND wseq IS NULL AND seq > 0"),
                     3);
    assert_int_equal(sync_int(f, "SELECT seq FROM ferry_changes WHERE tbl = 'orders' AND pk = '2'"),
                     head + 3);
    assert_int_equal(sync_int(f, "SELECT seq FROM ferry_head"), head + 3);
    /* again with a user trigger on orders: pending first, numbered at the end */
    run(f->store.c,
        "CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RETURN NULL; END $$;"
        "CREATE TRIGGER noop AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION noop()");
    sync_push_ok(f, "dev1",
                 "[{\"table\":\"orders\",\"action\":\"insert\","
                 "\"data\":{\"id\":3,\"item\":\"c\"}}]");
    assert_int_equal(sync_int(f,
                              "SELECT COUNT(*) FROM ferry_changes WHERE tbl = 'orders' AND pk = '3'"
                              " AND wseq IS NOT NULL AND seq = (SELECT seq FROM ferry_head)"),
                     1);
}

/* An entry from before migration 15 (no txid) that the transaction wrote itself is still
 * its own (by xmin). */
static void test_an_entry_without_txid_is_numbered_by_its_writer(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    if (!pg(f))
        return;
    assert_int_equal(store_begin(f->store.c, &err), FERRY_OK);
    run(f->store.c, "INSERT INTO ferry_changes(tbl, pk, version, deleted, updated_at)"
                    " VALUES ('notes', 'old', 1, 0, 0)");
    promote(f->store.c);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE pk = 'old'"
                                 " AND txid IS NULL AND seq IS NOT NULL"),
                     1);
    assert_int_equal(store_commit(f->store.c, &err), FERRY_OK);
}

/* A scope exit written with its entry gets the entry's seq at promotion. */
static void test_scope_exits_get_their_entry_seq(void **state)
{
    struct sync_fixture *f = *state;
    if (!pg(f))
        return;
    run(f->store.c, "INSERT INTO ferry_changes(tbl, pk, version, deleted, updated_at, scope)"
                    " VALUES ('t', 'k', 1, 0, 0, 'anna')");
    promote(f->store.c);
    run(f->store.c, "UPDATE ferry_changes SET seq = NULL, scope = 'bob' WHERE pk = 'k'");
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_scope_exits WHERE seq IS NULL"), 1);
    promote(f->store.c);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_scope_exits x JOIN ferry_changes c"
                                 " ON c.tbl = x.tbl AND c.pk = x.pk AND c.seq = x.seq"
                                 " WHERE x.scope = 'anna'"),
                     1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        SYNC_TEST(test_a_change_is_pending_until_promoted),
        SYNC_TEST(test_promotion_follows_commit_order),
        SYNC_TEST(test_an_entry_being_written_again_waits_for_its_commit),
        SYNC_TEST(test_a_transaction_numbers_only_its_own),
        SYNC_TEST(test_a_transaction_numbers_what_its_subtransactions_wrote),
        SYNC_TEST(test_a_push_numbers_its_user_triggers_writes),
        SYNC_TEST(test_a_push_numbers_its_entries_as_it_writes_them),
        SYNC_TEST(test_an_entry_without_txid_is_numbered_by_its_writer),
        SYNC_TEST(test_scope_exits_get_their_entry_seq),
    };
    return SYNC_RUN_BOTH(tests);
}
