/* test_settle.c - unit tests for src/sync/settle.c: on PostgreSQL a change gets its seq
 * as it is written, with no lock; the head (what readers may read up to) stays below a
 * seq drawn by a transaction still running, even when higher seqs committed, and reaches
 * them once it ends, so a reader never skips it; marks come from transactions of their
 * own, and old ones are dropped. On SQLite the head is the newest seq at once. */
#include <string.h>
#include <unistd.h>

#include "sync/settle.h"
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

static int64_t head_of(struct store_conn *c)
{
    struct err err = {0};
    int64_t head = -1;
    if (feed_head(c, &head, &err) != FERRY_OK)
        fail_msg("feed_head: %s", err.msg);
    return head;
}

static int64_t settled(struct store_conn *c, int64_t target, int timeout_ms)
{
    struct err err = {0};
    int64_t head = -1;
    if (settle_to(c, target, timeout_ms, &head, &err) != FERRY_OK)
        fail_msg("settle_to: %s", err.msg);
    return head;
}

static void test_a_change_has_its_seq_as_written(void **state)
{
    struct sync_fixture *f = *state;
    int64_t before = sync_int(f, "SELECT COALESCE(MAX(seq), 0) FROM ferry_changes");
    run(f->store.c, "INSERT INTO notes(id) VALUES ('a'); INSERT INTO notes(id) VALUES ('b')");
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_changes WHERE seq IS NULL"), 0);
    int64_t a = sync_int(f, "SELECT seq FROM ferry_changes WHERE pk = 'a'");
    int64_t b = sync_int(f, "SELECT seq FROM ferry_changes WHERE pk = 'b'");
    assert_true(a > before && b > a); /* in write order */
    assert_int_equal(settled(f->store.c, b, 1000), b);
    assert_int_equal(head_of(f->store.c), b);
    /* a change of a row gets a new seq and the next version */
    run(f->store.c, "UPDATE notes SET title = 'x' WHERE id = 'a'");
    assert_true(sync_int(f, "SELECT seq FROM ferry_changes WHERE pk = 'a' AND version = 2") > b);
}

/* The transaction that drew first commits last: the head stays below its seq while it
 * runs (whatever committed above it), so a reader's cursor never passes it. */
static void test_the_head_waits_for_a_transaction_that_drew_first(void **state)
{
    struct sync_fixture *f = *state;
    struct store_conn *other = NULL;
    struct err err = {0};
    if (!pg(f))
        return;
    assert_int_equal(store_acquire(f->store.st, &other, &err), FERRY_OK);
    run(other, "BEGIN; INSERT INTO notes(id) VALUES ('early')");
    run(f->store.c, "INSERT INTO notes(id) VALUES ('late')");
    int64_t late = sync_int(f, "SELECT seq FROM ferry_changes WHERE pk = 'late'");
    /* the wait ends at its timeout, below early's seq (late - 1 at most) */
    int64_t head = settled(f->store.c, late, 100);
    assert_true(head < late);
    struct feed_page page;
    json_t *changes = sync_feed(f, 0, NULL, 100, &page);
    assert_true(page.next_cursor < late);
    for (size_t i = 0; i < json_array_size(changes); i++)
        assert_string_not_equal(
            json_string_value(json_object_get(json_array_get(changes, i), "id")), "late");
    json_decref(changes);
    int64_t cursor = page.next_cursor;
    run(other, "COMMIT");
    store_release(other);
    /* now both, the early one first, from the cursor the reader kept */
    changes = sync_feed(f, cursor, NULL, 100, &page);
    assert_int_equal(json_array_size(changes), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(changes, 0), "id")),
                        "early");
    assert_string_equal(json_string_value(json_object_get(json_array_get(changes, 1), "id")),
                        "late");
    assert_int_equal(page.next_cursor, late);
    json_decref(changes);
}

/* A mark's transaction id must come after its read of the sequence: a transaction that
 * has written (and so has its id already) cannot write one. */
static void test_a_mark_needs_a_transaction_of_its_own(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    if (!pg(f))
        return;
    assert_int_equal(store_begin(f->store.c, &err), FERRY_OK);
    run(f->store.c, "INSERT INTO notes(id) VALUES ('m')");
    assert_int_equal(store_exec(f->store.c, "SELECT ferry_mark()", &err), FERRY_ERR);
    assert_non_null(strstr(err.msg, "transaction of its own"));
    store_rollback(f->store.c);
    run(f->store.c, "SELECT ferry_mark()"); /* alone it may */
}

/* The watcher marks what other programs committed, and drops the marks every snapshot
 * has passed but the newest. */
static void test_the_watcher_marks_and_prunes(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    if (!pg(f))
        return;
    for (int i = 0; i < 5; i++)
        run(f->store.c, "SELECT ferry_mark()");
    run(f->store.c, "INSERT INTO notes(id) VALUES ('w')");
    int64_t w = sync_int(f, "SELECT seq FROM ferry_changes WHERE pk = 'w'");
    assert_true(head_of(f->store.c) < w);
    assert_int_equal(settle_watch(f->store.c, &err), FERRY_OK);
    assert_int_equal(head_of(f->store.c), w);
    /* all but the newest (and one an autovacuum ANALYZE of another test's database may
     * hold back meanwhile: the prune goes by the cluster's oldest transaction; it runs
     * at most every 2 s) */
    for (int tries = 0; tries < 4 && sync_int(f, "SELECT COUNT(*) FROM ferry_marks") > 2; tries++) {
        sleep(2);
        assert_int_equal(settle_watch(f->store.c, &err), FERRY_OK);
    }
    assert_true(sync_int(f, "SELECT COUNT(*) FROM ferry_marks") <= 2);
    assert_int_equal(sync_int(f, "SELECT MAX(s) FROM ferry_marks"), w);
}

/* A scope exit takes the seq of the entry that left the scope, as it is written. */
static void test_scope_exits_get_their_entry_seq(void **state)
{
    struct sync_fixture *f = *state;
    run(f->store.c, "INSERT INTO ferry_changes(tbl, pk, version, deleted, updated_at, scope)"
                    " VALUES ('t', 'k', 1, 0, 0, 'anna')");
    run(f->store.c, "UPDATE ferry_changes SET scope = 'bob' WHERE pk = 'k'");
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM ferry_scope_exits x JOIN ferry_changes c"
                                 " ON c.tbl = x.tbl AND c.pk = x.pk AND c.seq = x.seq"
                                 " WHERE x.scope = 'anna'"),
                     1);
}

/* A sequence an operator gave a cache (whose sessions number below marks written
 * meanwhile) is set back to CACHE 1; a role that may not alter it gets a clear refusal. */
static void test_a_cached_sequence_is_repaired_or_refused(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    if (!pg(f)) {
        assert_int_equal(settle_check_sequence(f->store.c, &err), FERRY_OK);
        return;
    }
    const char *cache = "SELECT seqcache FROM pg_sequence"
                        " WHERE seqrelid = 'ferry_change_seq'::regclass";
    assert_int_equal(settle_check_sequence(f->store.c, &err), FERRY_OK);
    assert_int_equal(sync_int(f, cache), 1);
    run(f->store.c, "ALTER SEQUENCE ferry_change_seq CACHE 20");
    assert_int_equal(settle_check_sequence(f->store.c, &err), FERRY_OK);
    assert_int_equal(sync_int(f, cache), 1);
    run(f->store.c, "ALTER SEQUENCE ferry_change_seq CACHE 20");
    run(f->store.c, "DROP ROLE IF EXISTS ferry_a19_reader; CREATE ROLE ferry_a19_reader;"
                    " SET ROLE ferry_a19_reader");
    int rc = settle_check_sequence(f->store.c, &err);
    run(f->store.c, "RESET ROLE; DROP ROLE ferry_a19_reader");
    assert_int_equal(rc, FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_non_null(strstr(err.msg, "has CACHE 20"));
    assert_non_null(strstr(err.msg, "ALTER SEQUENCE ferry_change_seq CACHE 1"));
    assert_int_equal(sync_int(f, cache), 20);
    run(f->store.c, "ALTER SEQUENCE ferry_change_seq CACHE 1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        SYNC_TEST(test_a_change_has_its_seq_as_written),
        SYNC_TEST(test_the_head_waits_for_a_transaction_that_drew_first),
        SYNC_TEST(test_a_mark_needs_a_transaction_of_its_own),
        SYNC_TEST(test_the_watcher_marks_and_prunes),
        SYNC_TEST(test_scope_exits_get_their_entry_seq),
        SYNC_TEST(test_a_cached_sequence_is_repaired_or_refused),
    };
    return SYNC_RUN_BOTH(tests);
}
