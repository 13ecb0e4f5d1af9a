/* test_dbrows.c - database sync's rows: the type map between SQLite and PostgreSQL, values
 * bound by the target column's affinity, and key ordering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dbsync/dbrows.h"

static void expect_map(const char *decl, enum store_dialect from, enum store_dialect to,
                       const char *want)
{
    char *got = dbrows_map_type(decl, from, to);
    assert_string_equal(got, want);
    free(got);
}

static void test_map_types(void **state)
{
    (void)state;
    expect_map("INTEGER", STORE_SQLITE, STORE_POSTGRES, "bigint");
    expect_map("varchar(40)", STORE_SQLITE, STORE_POSTGRES, "text");
    expect_map("BOOLEAN", STORE_SQLITE, STORE_POSTGRES, "boolean");
    expect_map("BLOB", STORE_SQLITE, STORE_POSTGRES, "bytea");
    expect_map("DOUBLE", STORE_SQLITE, STORE_POSTGRES, "double precision");
    expect_map("NUMERIC(10,2)", STORE_SQLITE, STORE_POSTGRES, "numeric");
    expect_map("DATETIME", STORE_SQLITE, STORE_POSTGRES, "timestamp");
    expect_map("TIMESTAMPTZ", STORE_SQLITE, STORE_POSTGRES, "timestamp with time zone");
    expect_map("", STORE_SQLITE, STORE_POSTGRES, "bytea");
    expect_map("bigint", STORE_POSTGRES, STORE_SQLITE, "INTEGER");
    expect_map("boolean", STORE_POSTGRES, STORE_SQLITE, "BOOLEAN");
    expect_map("bytea", STORE_POSTGRES, STORE_SQLITE, "BLOB");
    expect_map("numeric(10,2)", STORE_POSTGRES, STORE_SQLITE, "NUMERIC");
    expect_map("timestamp with time zone", STORE_POSTGRES, STORE_SQLITE, "TIMESTAMPTZ");
    expect_map("interval", STORE_POSTGRES, STORE_SQLITE, "TEXT");
    expect_map("uuid", STORE_POSTGRES, STORE_SQLITE, "TEXT");
    expect_map("jsonb", STORE_POSTGRES, STORE_SQLITE, "TEXT");
    expect_map("numeric(10,2)", STORE_POSTGRES, STORE_POSTGRES, "numeric(10,2)");
}

static struct store_val bind(const char *text, const char *decl, enum store_dialect to)
{
    static struct dbval v;
    v = (struct dbval){SV_TEXT, (char *)text, strlen(text)};
    return dbrows_bind(&v, decl, to);
}

static void test_bind(void **state)
{
    (void)state;
    struct dbval null = {SV_NULL, "", 0}, blob = {SV_BLOB, "\x01\x00", 2};
    assert_int_equal(dbrows_bind(&null, "text", STORE_SQLITE).type, SV_NULL);
    assert_int_equal(dbrows_bind(&blob, "text", STORE_POSTGRES).type, SV_BLOB);
    assert_int_equal(bind("12", "bigint", STORE_POSTGRES).type, SV_TEXT); /* PG converts */
    struct store_val v = bind("12", "INTEGER", STORE_SQLITE);
    assert_int_equal(v.type, SV_INT);
    assert_int_equal(v.i, 12);
    v = bind("t", "BOOLEAN", STORE_SQLITE);
    assert_int_equal(v.type, SV_INT);
    assert_int_equal(v.i, 1);
    assert_int_equal(bind("f", "INTEGER", STORE_SQLITE).i, 0);
    v = bind("12.50", "NUMERIC", STORE_SQLITE);
    assert_int_equal(v.type, SV_REAL);
    assert_true(v.d == 12.5);
    assert_int_equal(bind("3", "REAL", STORE_SQLITE).type, SV_REAL);
    assert_int_equal(bind("12", "TEXT", STORE_SQLITE).type, SV_TEXT);
    assert_int_equal(bind("2024-01-02 03:04:05", "TIMESTAMP", STORE_SQLITE).type, SV_TEXT);
    assert_int_equal(bind("99999999999999999999", "INTEGER", STORE_SQLITE).type, SV_REAL);
}

static void test_key_order(void **state)
{
    (void)state;
    assert_true(dbrows_key_cmp("9", "10", true) < 0);
    assert_true(dbrows_key_cmp("-1", "0", true) < 0);
    assert_true(dbrows_key_cmp("10", "9", false) < 0);
    assert_true(dbrows_key_cmp("B", "a", false) < 0);
    assert_int_equal(dbrows_key_cmp("x", "x", false), 0);
    assert_true(dbrows_is_int_type("bigint") && dbrows_is_int_type("INTEGER"));
    assert_false(dbrows_is_int_type("text"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_types),
        cmocka_unit_test(test_bind),
        cmocka_unit_test(test_key_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
