/* test_store.c - unit tests for src/store (store.c and the SQLite backend) against a
 * real database in a temporary directory, plus the prepared-statement cache. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/store.h"
#include "store/store_internal.h"

#include "store_fixture.h"

static int setup(void **state)
{
    struct store_fixture *f = xcalloc(1, sizeof(*f));
    if (store_fixture_open(f, "store") != 0)
        return -1;
    struct err err = {0};
    if (store_exec(f->c,
                   "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL,"
                   " score REAL, data BLOB, extra);",
                   &err) != FERRY_OK) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct store_fixture *f = *state;
    store_fixture_close(f);
    free(f);
    return 0;
}

static int64_t count(struct store_conn *c, const char *sql)
{
    int64_t n = -1;
    bool found = false;
    struct err err = {0};
    if (store_query_int(c, sql, NULL, 0, &n, &found, &err) != FERRY_OK)
        fail_msg("%s: %s", sql, err.msg);
    assert_true(found);
    return n;
}

static void run_ok(struct store_conn *c, const char *sql, const struct store_val *params, size_t n,
                   int64_t want_changes)
{
    struct err err = {0};
    int64_t changes = -1;
    if (store_run(c, sql, params, n, &changes, &err) != FERRY_OK)
        fail_msg("%s: %s", sql, err.msg);
    assert_int_equal(changes, want_changes);
}

/* --- open, exec ------------------------------------------------------------------ */

static void test_open_and_migrations(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    int size = -1, in_use = -1;

    assert_int_equal(store_dialect(f->st), STORE_SQLITE);
    assert_string_equal(store_dialect_name(f->st), "sqlite");
    assert_int_equal(store_schema_version(f->st), store_migrations[store_n_migrations - 1].version);
    assert_int_equal(count(f->c, "SELECT MAX(version) FROM ferry_schema_version"),
                     store_migrations[store_n_migrations - 1].version);
    store_pool_stats(f->st, &size, &in_use);
    assert_int_equal(size, 2);
    assert_int_equal(in_use, 1);
    assert_int_equal(store_ping(f->st, &err), FERRY_OK);
    store_pool_stats(f->st, &size, &in_use);
    assert_int_equal(in_use, 1);

    /* Opening again finds the migrations applied and applies nothing twice. */
    struct store *again = NULL;
    assert_int_equal(store_open(f->url, 1, &again, &err), FERRY_OK);
    assert_int_equal(store_schema_version(again), store_migrations[store_n_migrations - 1].version);
    store_close(again);
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM ferry_schema_version"),
                     (int64_t)store_n_migrations);
}

static void test_open_bad_url(void **state)
{
    (void)state;
    struct store *st = (struct store *)&st;
    struct err err = {0};

    /* The URL is not echoed: it may hold a password. */
    assert_int_equal(store_open("mysql://root:hunter2@localhost/db", 1, &st, &err), FERRY_ERR);
    assert_null(st);
    assert_int_equal(err.code, ERR_INVALID);
    assert_string_equal(err.msg, "database URL must start with sqlite: or postgres://");

    assert_int_equal(store_open("sqlite:", 1, &st, &err), FERRY_ERR);
    assert_null(st);
    assert_string_equal(err.msg, "database URL 'sqlite:' names no file");

    assert_int_equal(store_open("sqlite:/nonexistent-dir/x/ferry.db", 1, &st, &err), FERRY_ERR);
    assert_null(st);
    assert_int_equal(err.code, ERR_DATABASE);
    assert_non_null(strstr(err.msg, "cannot open SQLite database /nonexistent-dir/x/ferry.db"));
    store_close(NULL);
}

static void test_exec(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};

    assert_int_equal(store_exec(f->c,
                                "CREATE TABLE a (x INTEGER); CREATE TABLE b (y TEXT);"
                                " INSERT INTO a VALUES (1), (2);",
                                &err),
                     FERRY_OK);
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM a"), 2);
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM b"), 0);

    assert_int_equal(store_exec(f->c, "CREATE TABLE notes (x)", &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_DATABASE);
    assert_string_equal(err.msg, "table notes already exists");

    assert_int_equal(store_exec(f->c, "SELEKT 1", &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_DATABASE);
    assert_string_equal(err.msg, "near \"SELEKT\": syntax error");
}

/* --- values ---------------------------------------------------------------------- */

static void test_value_round_trip(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    struct store_rows *rows = NULL;
    const unsigned char blob[] = {0x00, 0x01, 0x00, 0xff, 0x00};
    /* Exactly representable in 15 digits; full precision is test_real_precision's. */
    const double third = 0.15625;

    struct store_val row1[] = {sv_int(INT64_MAX), sv_text("héllo 'quoted' \"text\""),
                               sv_real(third), sv_blob(blob, sizeof(blob)), sv_null()};
    run_ok(f->c, "INSERT INTO notes (id, title, score, data, extra) VALUES ($1,$2,$3,$4,$5)", row1,
           5, 1);
    struct store_val row2[] = {sv_int(INT64_MIN), sv_text(""), sv_real(-2.5), sv_blob("", 0),
                               sv_text(NULL)};
    run_ok(f->c, "INSERT INTO notes (id, title, score, data, extra) VALUES ($1,$2,$3,$4,$5)", row2,
           5, 1);

    assert_int_equal(store_query(f->c,
                                 "SELECT id, title, score, data, extra FROM notes ORDER BY id DESC",
                                 NULL, 0, &rows, &err),
                     FERRY_OK);
    assert_int_equal(store_rows_ncols(rows), 5);
    assert_string_equal(store_rows_name(rows, 0), "id");
    assert_string_equal(store_rows_name(rows, 4), "extra");

    assert_int_equal(store_rows_next(rows, &err), 1);
    assert_int_equal(store_rows_type(rows, 0), SV_INT);
    assert_true(store_rows_int(rows, 0) == INT64_MAX);
    assert_int_equal(store_rows_type(rows, 1), SV_TEXT);
    assert_string_equal(store_rows_text(rows, 1), "héllo 'quoted' \"text\"");
    assert_int_equal(store_rows_type(rows, 2), SV_REAL);
    assert_true(store_rows_real(rows, 2) == third);
    assert_int_equal(store_rows_type(rows, 3), SV_BLOB);
    size_t len = 0;
    const void *bytes = store_rows_blob(rows, 3, &len);
    assert_int_equal(len, sizeof(blob));
    assert_memory_equal(bytes, blob, sizeof(blob));
    assert_int_equal(store_rows_type(rows, 4), SV_NULL);
    assert_true(store_rows_isnull(rows, 4));
    assert_null(store_rows_text(rows, 4));
    assert_int_equal(store_rows_int(rows, 4), 0);
    assert_false(store_rows_isnull(rows, 0));

    assert_int_equal(store_rows_next(rows, &err), 1);
    assert_true(store_rows_int(rows, 0) == INT64_MIN);
    assert_false(store_rows_isnull(rows, 1)); /* '' is not NULL */
    assert_string_equal(store_rows_text(rows, 1), "");
    assert_true(store_rows_real(rows, 2) == -2.5);
    assert_int_equal(store_rows_type(rows, 3), SV_BLOB);
    store_rows_blob(rows, 3, &len);
    assert_int_equal(len, 0);
    assert_true(store_rows_isnull(rows, 4)); /* sv_text(NULL) binds NULL */

    assert_int_equal(store_rows_next(rows, &err), 0);
    store_rows_free(rows);
}

/* A REAL must come back bit for bit, not through 15 significant digits. */
static void test_real_precision(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    struct store_rows *rows = NULL;
    const double values[] = {0.1 + 0.2, M_PI, 1e300, -1.0 / 7.0, 5e-324, 123456789.123456789};

    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        struct store_val v = sv_real(values[i]);
        assert_int_equal(store_query(f->c, "SELECT $1", &v, 1, &rows, &err), FERRY_OK);
        assert_int_equal(store_rows_next(rows, &err), 1);
        assert_int_equal(store_rows_type(rows, 0), SV_REAL);
        double back = store_rows_real(rows, 0);
        store_rows_free(rows);
        if (back != values[i])
            fail_msg("REAL %.17g came back as %.17g", values[i], back);
    }
}

static void test_params_in_literals(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    struct store_rows *rows = NULL;
    struct store_val v[] = {sv_text("x"), sv_int(7)};

    /* '$1' inside a literal stays text; only the bare $1 and $2 are parameters. */
    assert_int_equal(
        store_query(f->c, "SELECT '$1', $1, 'it''s $2', $2 AS \"col$1\"", v, 2, &rows, &err),
        FERRY_OK);
    assert_int_equal(store_rows_next(rows, &err), 1);
    assert_string_equal(store_rows_text(rows, 0), "$1");
    assert_string_equal(store_rows_text(rows, 1), "x");
    assert_string_equal(store_rows_text(rows, 2), "it's $2");
    assert_int_equal(store_rows_int(rows, 3), 7);
    assert_string_equal(store_rows_name(rows, 3), "col$1");
    store_rows_free(rows);

    /* A literal only: no parameters at all. */
    assert_int_equal(store_query(f->c, "SELECT '$1'", NULL, 0, &rows, &err), FERRY_OK);
    assert_int_equal(store_rows_next(rows, &err), 1);
    assert_string_equal(store_rows_text(rows, 0), "$1");
    store_rows_free(rows);

    /* Parameters used twice, out of order, and past 9. */
    struct store_val many[11];
    for (int i = 0; i < 11; i++)
        many[i] = sv_int(100 + i);
    assert_int_equal(store_query(f->c, "SELECT $11, $2, $1 + $1, $10", many, 11, &rows, &err),
                     FERRY_OK);
    assert_int_equal(store_rows_next(rows, &err), 1);
    assert_int_equal(store_rows_int(rows, 0), 110);
    assert_int_equal(store_rows_int(rows, 1), 101);
    assert_int_equal(store_rows_int(rows, 2), 200);
    assert_int_equal(store_rows_int(rows, 3), 109);
    store_rows_free(rows);
}

static void test_param_count_mismatch(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    struct store_rows *rows = (struct store_rows *)&rows;
    struct store_val v = sv_int(1);

    assert_int_equal(store_query(f->c, "SELECT $1, $2", &v, 1, &rows, &err), FERRY_ERR);
    assert_null(rows);
    assert_int_equal(err.code, ERR_INTERNAL);
    assert_string_equal(err.msg, "statement wants 2 parameters, got 1");

    assert_int_equal(store_run(f->c, "DELETE FROM notes", &v, 1, NULL, &err), FERRY_ERR);
    assert_string_equal(err.msg, "statement wants 0 parameters, got 1");

    /* The connection is still usable. */
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM notes"), 0);
}

static void test_prepare_and_step_errors(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    struct store_val v[] = {sv_int(1), sv_null()};

    assert_int_equal(store_run(f->c, "INSERT INTO nowhere VALUES ($1)", v, 1, NULL, &err),
                     FERRY_ERR);
    assert_int_equal(err.code, ERR_DATABASE);
    assert_string_equal(err.msg, "cannot prepare statement: no such table: nowhere");

    assert_int_equal(
        store_run(f->c, "INSERT INTO notes (id, title) VALUES ($1, $2)", v, 2, NULL, &err),
        FERRY_ERR);
    assert_int_equal(err.code, ERR_CONFLICT);
    assert_string_equal(err.msg, "statement failed: NOT NULL constraint failed: notes.title");

    struct store_val dup[] = {sv_int(1), sv_text("t")};
    run_ok(f->c, "INSERT INTO notes (id, title) VALUES ($1, $2)", dup, 2, 1);
    assert_int_equal(
        store_run(f->c, "INSERT INTO notes (id, title) VALUES ($1, $2)", dup, 2, NULL, &err),
        FERRY_ERR);
    assert_int_equal(err.code, ERR_CONFLICT);
    assert_string_equal(err.msg, "statement failed: UNIQUE constraint failed: notes.id");
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM notes"), 1);
}

static void test_run_changes(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};

    for (int i = 1; i <= 3; i++) {
        struct store_val v[] = {sv_int(i), sv_text("t")};
        run_ok(f->c, "INSERT INTO notes (id, title) VALUES ($1, $2)", v, 2, 1);
    }
    run_ok(f->c, "UPDATE notes SET score = 1.5", NULL, 0, 3);
    struct store_val gt = sv_int(1);
    run_ok(f->c, "UPDATE notes SET title = 'u' WHERE id > $1", &gt, 1, 2);
    struct store_val none = sv_int(99);
    run_ok(f->c, "DELETE FROM notes WHERE id = $1", &none, 1, 0);
    run_ok(f->c, "DELETE FROM notes WHERE id > $1", &gt, 1, 2);
    /* changes may be NULL. */
    assert_int_equal(store_run(f->c, "DELETE FROM notes", NULL, 0, NULL, &err), FERRY_OK);
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM notes"), 0);
}

static void test_query_int(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    int64_t value = 42;
    bool found = true;
    struct store_val v[] = {sv_int(5), sv_text("five")};

    run_ok(f->c, "INSERT INTO notes (id, title) VALUES ($1, $2)", v, 2, 1);
    assert_int_equal(store_query_int(f->c, "SELECT id FROM notes WHERE title = $1", &v[1], 1,
                                     &value, &found, &err),
                     FERRY_OK);
    assert_true(found);
    assert_int_equal(value, 5);

    value = 42;
    assert_int_equal(
        store_query_int(f->c, "SELECT id FROM notes WHERE id = 6", NULL, 0, &value, &found, &err),
        FERRY_OK);
    assert_false(found);
    assert_int_equal(value, 42);

    assert_int_equal(store_query_int(f->c, "SELECT score FROM notes WHERE id = 5", NULL, 0, &value,
                                     &found, &err),
                     FERRY_OK);
    assert_false(found); /* a NULL is no value */

    assert_int_equal(store_query_int(f->c, "SELECT nope FROM notes", NULL, 0, &value, &found, &err),
                     FERRY_ERR);
    assert_false(found);
    assert_string_equal(err.msg, "cannot prepare statement: no such column: nope");
}

/* --- one result at a time -------------------------------------------------------- */

static void test_second_query_while_rows_open(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    struct store_rows *rows = NULL, *other = (struct store_rows *)&other;
    int64_t value = 0;
    bool found = true;

    assert_int_equal(store_query(f->c, "SELECT 1 UNION ALL SELECT 2", NULL, 0, &rows, &err),
                     FERRY_OK);
    assert_int_equal(store_rows_next(rows, &err), 1);

    assert_int_equal(store_query(f->c, "SELECT 3", NULL, 0, &other, &err), FERRY_ERR);
    assert_null(other);
    assert_int_equal(err.code, ERR_INTERNAL);
    assert_string_equal(err.msg, "previous result on this connection not freed");

    memset(&err, 0, sizeof(err));
    assert_int_equal(store_run(f->c, "DELETE FROM notes", NULL, 0, NULL, &err), FERRY_ERR);
    assert_string_equal(err.msg, "previous result on this connection not freed");

    memset(&err, 0, sizeof(err));
    assert_int_equal(store_query_int(f->c, "SELECT 4", NULL, 0, &value, &found, &err), FERRY_ERR);
    assert_false(found);
    assert_string_equal(err.msg, "previous result on this connection not freed");

    /* The open result is unharmed and can be read to the end. */
    assert_int_equal(store_rows_int(rows, 0), 1);
    assert_int_equal(store_rows_next(rows, &err), 1);
    assert_int_equal(store_rows_int(rows, 0), 2);
    assert_int_equal(store_rows_next(rows, &err), 0);
    store_rows_free(rows);

    assert_int_equal(store_query_int(f->c, "SELECT 4", NULL, 0, &value, &found, &err), FERRY_OK);
    assert_int_equal(value, 4);
    store_rows_free(NULL);
}

static void test_same_sql_reopened(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    struct store_rows *rows = NULL;
    struct store_val v = sv_int(1);

    /* The cached statement is reset when the result is freed halfway. */
    for (int round = 0; round < 3; round++) {
        assert_int_equal(store_query(f->c, "SELECT $1 UNION ALL SELECT 2", &v, 1, &rows, &err),
                         FERRY_OK);
        assert_int_equal(store_rows_next(rows, &err), 1);
        assert_int_equal(store_rows_int(rows, 0), 1);
        store_rows_free(rows);
    }
}

static void test_release_frees_open_rows(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    struct store_conn *c2 = NULL;
    struct store_rows *rows = NULL;

    assert_int_equal(store_acquire(f->st, &c2, &err), FERRY_OK);
    assert_ptr_not_equal(c2, f->c);
    assert_int_equal(store_query(c2, "SELECT 1", NULL, 0, &rows, &err), FERRY_OK);
    assert_int_equal(store_rows_next(rows, &err), 1);
    store_release(c2); /* frees rows: no leak under ASan */

    assert_int_equal(store_acquire(f->st, &c2, &err), FERRY_OK);
    assert_int_equal(count(c2, "SELECT 5"), 5);
    store_release(c2);
    store_release(NULL);
}

/* --- transactions ---------------------------------------------------------------- */

static void test_transactions(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    struct store_conn *other = NULL;
    struct store_val a[] = {sv_int(1), sv_text("kept")};
    struct store_val b[] = {sv_int(2), sv_text("dropped")};

    assert_int_equal(store_acquire(f->st, &other, &err), FERRY_OK);

    assert_false(store_in_txn(f->c));
    assert_int_equal(store_begin(f->c, &err), FERRY_OK);
    assert_true(store_in_txn(f->c));
    run_ok(f->c, "INSERT INTO notes (id, title) VALUES ($1, $2)", a, 2, 1);
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM notes"), 1);
    assert_int_equal(count(other, "SELECT COUNT(*) FROM notes"), 0); /* not yet visible */
    assert_int_equal(store_commit(f->c, &err), FERRY_OK);
    assert_false(store_in_txn(f->c));
    assert_int_equal(count(other, "SELECT COUNT(*) FROM notes"), 1);

    assert_int_equal(store_begin(f->c, &err), FERRY_OK);
    run_ok(f->c, "INSERT INTO notes (id, title) VALUES ($1, $2)", b, 2, 1);
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM notes"), 2);
    store_rollback(f->c);
    assert_false(store_in_txn(f->c));
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM notes"), 1);
    assert_int_equal(count(other, "SELECT COUNT(*) FROM notes WHERE title = 'kept'"), 1);

    /* A rollback with rows still open frees them. */
    struct store_rows *rows = NULL;
    assert_int_equal(store_begin(f->c, &err), FERRY_OK);
    run_ok(f->c, "INSERT INTO notes (id, title) VALUES ($1, $2)", b, 2, 1);
    assert_int_equal(store_query(f->c, "SELECT id FROM notes", NULL, 0, &rows, &err), FERRY_OK);
    assert_int_equal(store_rows_next(rows, &err), 1);
    store_rollback(f->c);
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM notes"), 1);

    /* Releasing a connection in a transaction rolls it back. */
    assert_int_equal(store_begin(other, &err), FERRY_OK);
    run_ok(other, "INSERT INTO notes (id, title) VALUES ($1, $2)", b, 2, 1);
    store_release(other);
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM notes"), 1);
}

static void test_transaction_misuse(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};

    /* No transaction: rollback does nothing, commit is an error. */
    store_rollback(f->c);
    store_rollback(NULL);
    assert_false(store_in_txn(f->c));
    assert_int_equal(store_commit(f->c, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INTERNAL);
    assert_string_equal(err.msg, "no transaction to commit");

    /* Autocommit still works after the no-op rollback. */
    struct store_val v[] = {sv_int(1), sv_text("t")};
    run_ok(f->c, "INSERT INTO notes (id, title) VALUES ($1, $2)", v, 2, 1);
    store_rollback(f->c);
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM notes"), 1);

    assert_int_equal(store_begin(f->c, &err), FERRY_OK);
    assert_int_equal(store_begin(f->c, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INTERNAL);
    assert_string_equal(err.msg, "transaction already open");
    assert_true(store_in_txn(f->c));
    store_rollback(f->c);
    assert_false(store_in_txn(f->c));
}

/* --- catalog --------------------------------------------------------------------- */

static void test_table_info(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    struct store_table *t = NULL;

    assert_int_equal(store_table_info(f->c, "notes", &t, &err), FERRY_OK);
    assert_string_equal(t->name, "notes");
    assert_int_equal(t->n_cols, 5);
    assert_int_equal(t->n_pk, 1);
    static const struct {
        const char *name, *type;
        bool not_null, pk;
    } want[] = {
        {"id", "integer", false, true},  {"title", "text", true, false},
        {"score", "real", false, false}, {"data", "blob", false, false},
        {"extra", "", false, false},
    };
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(t->cols[i].name, want[i].name);
        assert_string_equal(t->cols[i].decl_type, want[i].type);
        assert_int_equal(t->cols[i].not_null, want[i].not_null);
        assert_int_equal(t->cols[i].primary_key, want[i].pk);
    }
    store_table_free(t);

    assert_int_equal(store_exec(f->c,
                                "CREATE TABLE Pairs (a TEXT NOT NULL, b INTEGER,"
                                " v VarChar(20), w BIGINT, PRIMARY KEY (b, a))",
                                &err),
                     FERRY_OK);
    assert_int_equal(store_table_info(f->c, "Pairs", &t, &err), FERRY_OK);
    assert_int_equal(t->n_cols, 4);
    assert_int_equal(t->n_pk, 2);
    assert_string_equal(t->cols[0].name, "a");
    assert_true(t->cols[0].primary_key);
    assert_true(t->cols[0].not_null);
    assert_string_equal(t->cols[1].decl_type, "integer");
    assert_true(t->cols[1].primary_key);
    assert_string_equal(t->cols[2].decl_type, "varchar(20)");
    assert_false(t->cols[2].primary_key);
    assert_string_equal(t->cols[3].decl_type, "bigint");
    store_table_free(t);
    store_table_free(NULL);
}

static void test_table_info_missing(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    struct store_table *t = (struct store_table *)&t;

    assert_int_equal(store_table_info(f->c, "nope", &t, &err), FERRY_ERR);
    assert_null(t);
    assert_int_equal(err.code, ERR_NOT_FOUND);
    assert_string_equal(err.msg, "table 'nope' does not exist");

    /* A hostile name is a bound value, not SQL. */
    t = (struct store_table *)&t;
    assert_int_equal(store_table_info(f->c, "notes'); DROP TABLE notes; --", &t, &err), FERRY_ERR);
    assert_null(t);
    assert_int_equal(err.code, ERR_NOT_FOUND);
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM notes"), 0);
}

static void test_list_tables(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    char **names = NULL;
    size_t n = 99;

    assert_int_equal(store_exec(f->c,
                                "CREATE TABLE ferryboat (x); CREATE TABLE Zeta (x);"
                                " CREATE TABLE counters (id INTEGER PRIMARY KEY AUTOINCREMENT);"
                                " INSERT INTO counters DEFAULT VALUES;",
                                &err),
                     FERRY_OK);
    assert_int_equal(store_list_tables(f->c, &names, &n, &err), FERRY_OK);
    /* ferry_* (ferry_meta, ferry_users, ferry_tokens, ferry_schema_version) and sqlite_*
     * (sqlite_sequence) are left out; ferryboat is not ferry's. Binary order. */
    static const char *const want[] = {"Zeta", "counters", "ferryboat", "notes"};
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(names[i], want[i]);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static void test_quote_ident(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"a\"b", "\"a\"\"b\""},
        {"plain", "\"plain\""},
        {"", "\"\""},
        {"\"", "\"\"\"\""},
        {"\"\"", "\"\"\"\"\"\""},
        {"with space", "\"with space\""},
        {"semi;colon'", "\"semi;colon'\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *q = store_quote_ident(cases[i].in);
        assert_string_equal(q, cases[i].want);
        free(q);
    }
}

static void test_quoted_ident_in_sql(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    char *q = store_quote_ident("we\"ird $1");
    char *sql = xasprintf("CREATE TABLE %s (v)", q);
    assert_int_equal(store_exec(f->c, sql, &err), FERRY_OK);
    free(sql);

    /* $1 inside a quoted identifier is not a parameter. */
    struct store_val v = sv_int(3);
    sql = xasprintf("INSERT INTO %s (v) VALUES ($1)", q);
    run_ok(f->c, sql, &v, 1, 1);
    free(sql);

    struct store_table *t = NULL;
    assert_int_equal(store_table_info(f->c, "we\"ird $1", &t, &err), FERRY_OK);
    assert_string_equal(t->name, "we\"ird $1");
    store_table_free(t);
    free(q);
}

/* --- prepared-statement cache ---------------------------------------------------- */

struct finalized {
    size_t calls;
    uintptr_t sum;
};

static void count_finalize(void *stmt, void *ctx)
{
    struct finalized *fin = ctx;
    fin->calls++;
    fin->sum += (uintptr_t)stmt;
}

static void test_stmt_cache(void **state)
{
    (void)state;
    struct finalized fin = {0};
    struct stmt_cache *c = stmt_cache_new(count_finalize, &fin);
    char sql[64];

    assert_int_equal(stmt_cache_count(c), 0);
    assert_null(stmt_cache_get(c, "SELECT 1"));

    stmt_cache_put(c, "SELECT 1", (void *)(uintptr_t)1);
    assert_int_equal(stmt_cache_count(c), 1);
    assert_ptr_equal(stmt_cache_get(c, "SELECT 1"), (void *)(uintptr_t)1);
    assert_null(stmt_cache_get(c, "SELECT 2"));
    assert_null(stmt_cache_get(c, "SELECT 1 "));

    /* Many entries force the table to grow several times (it starts at 64 slots). The
     * key is copied: the buffer is reused for every put. */
    for (uintptr_t i = 2; i <= 1000; i++) {
        snprintf(sql, sizeof(sql), "SELECT %lu", (unsigned long)i);
        stmt_cache_put(c, sql, (void *)i);
    }
    assert_int_equal(stmt_cache_count(c), 1000);
    uintptr_t want_sum = 0;
    for (uintptr_t i = 1; i <= 1000; i++) {
        snprintf(sql, sizeof(sql), "SELECT %lu", (unsigned long)i);
        assert_ptr_equal(stmt_cache_get(c, sql), (void *)i);
        want_sum += i;
    }
    assert_null(stmt_cache_get(c, "SELECT 1001"));
    assert_null(stmt_cache_get(c, ""));
    assert_int_equal(fin.calls, 0);

    /* Freeing finalises every statement exactly once. */
    stmt_cache_free(c);
    assert_int_equal(fin.calls, 1000);
    assert_int_equal(fin.sum, want_sum);
    stmt_cache_free(NULL);
}

static void test_connection_caches_statements(void **state)
{
    struct store_fixture *f = *state;
    struct store_val v = sv_int(1);

    assert_int_equal(count(f->c, "SELECT 1"), 1);
    size_t before = stmt_cache_count(f->c->cache);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(count(f->c, "SELECT 1"), 1);
        run_ok(f->c, "DELETE FROM notes WHERE id = $1", &v, 1, 0);
    }
    assert_int_equal(stmt_cache_count(f->c->cache), before + 1);

    char sql[64];
    for (int i = 0; i < 100; i++) {
        snprintf(sql, sizeof(sql), "SELECT %d", 1000 + i);
        assert_int_equal(count(f->c, sql), 1000 + i);
    }
    assert_int_equal(stmt_cache_count(f->c->cache), before + 101);
    /* Every one is still found and still works after the growth. */
    for (int i = 0; i < 100; i++) {
        snprintf(sql, sizeof(sql), "SELECT %d", 1000 + i);
        assert_non_null(stmt_cache_get(f->c->cache, sql));
        assert_int_equal(count(f->c, sql), 1000 + i);
    }
    assert_int_equal(stmt_cache_count(f->c->cache), before + 101);
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_open_and_migrations),
        cmocka_unit_test(test_open_bad_url),
        TEST(test_exec),
        TEST(test_value_round_trip),
        TEST(test_real_precision),
        TEST(test_params_in_literals),
        TEST(test_param_count_mismatch),
        TEST(test_prepare_and_step_errors),
        TEST(test_run_changes),
        TEST(test_query_int),
        TEST(test_second_query_while_rows_open),
        TEST(test_same_sql_reopened),
        TEST(test_release_frees_open_rows),
        TEST(test_transactions),
        TEST(test_transaction_misuse),
        TEST(test_table_info),
        TEST(test_table_info_missing),
        TEST(test_list_tables),
        TEST(test_quote_ident),
        TEST(test_quoted_ident_in_sql),
        cmocka_unit_test(test_stmt_cache),
        TEST(test_connection_caches_statements),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
