/* test_locations.c - named locations: parsing NAME=KIND:TARGET lists, and resolving the
 * connection strings database sync takes (URLs, ADO.NET key=value, names) against them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dbsync/locations.h"

static const char *const CONFIG =
    "System1=folder:/srv/a, main=postgres://app:secret@db.example:6543/shop?sslmode=require,"
    "local=postgresql://postgres@127.0.0.1/ferry,lite=sqlite:/tmp/ferry-test-lite.db,"
    "bucket=s3:backups/ferry,blobs=azure:container/p,disk=local:/srv/cloud";

static void test_parse(void **state)
{
    (void)state;
    struct locations l;
    struct err err = {0};
    assert_int_equal(locations_parse(CONFIG, &l, &err), FERRY_OK);
    assert_int_equal(l.n, 7);
    assert_int_equal(locations_find(&l, "System1")->kind, LOC_FOLDER);
    assert_string_equal(locations_find(&l, "System1")->target, "/srv/a");
    /* database locations keep their whole store URL */
    assert_string_equal(locations_find(&l, "lite")->target, "sqlite:/tmp/ferry-test-lite.db");
    assert_int_equal(locations_find(&l, "local")->kind, LOC_POSTGRES);
    assert_true(locations_is_cloud(locations_find(&l, "bucket")->kind));
    assert_true(locations_is_cloud(locations_find(&l, "disk")->kind));
    assert_true(locations_is_database(locations_find(&l, "main")->kind));
    assert_null(locations_find(&l, "System2"));
    locations_cleanup(&l);
    assert_int_equal(locations_parse(NULL, &l, &err), FERRY_OK);
    assert_int_equal(l.n, 0);
    assert_int_equal(locations_parse(" , ", &l, &err), FERRY_OK);
    assert_int_equal(l.n, 0);
}

static void test_parse_refuses(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "noequals",  "=folder:/a",   "a b=folder:/a", "x=ftp:/a",      "x=folder",
        "x=folder:", "x=folder:rel", "x=local:rel",   "x=postgres:/a", "x=folder:/a,x=folder:/b",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct locations l;
        struct err err = {0};
        assert_int_equal(locations_parse(bad[i], &l, &err), FERRY_ERR);
        assert_int_equal(err.code, ERR_INVALID);
        assert_int_equal(l.n, 0);
    }
}

static void expect_resolves(const struct locations *l, const char *conn, const char *name)
{
    const struct location *loc = NULL;
    struct err err = {0};
    if (locations_resolve_db(l, conn, &loc, &err) != FERRY_OK)
        fail_msg("%s: %s", conn, err.msg);
    assert_string_equal(loc->name, name);
}

static void expect_refused(const struct locations *l, const char *conn, enum err_code code)
{
    const struct location *loc = NULL;
    struct err err = {0};
    assert_int_equal(locations_resolve_db(l, conn, &loc, &err), FERRY_ERR);
    assert_int_equal(err.code, code);
    assert_null(strstr(err.msg, "secret")); /* a password is never echoed */
    assert_null(loc);
}

static void test_resolve(void **state)
{
    (void)state;
    struct locations l;
    assert_int_equal(locations_parse(CONFIG, &l, NULL), FERRY_OK);
    expect_resolves(&l, "main", "main");
    expect_resolves(&l, "postgres://other:pw@DB.example:6543/shop", "main");
    expect_resolves(&l, "Host=db.example;Port=6543;Database=shop;Username=x;Password=secret",
                    "main");
    expect_resolves(&l, "Server=localhost;Database=ferry;", "local");
    expect_resolves(&l, "host = ::1 ; database = ferry", "local");
    expect_resolves(&l, "postgres:///ferry?host=/var/run/postgresql", "local");
    expect_resolves(&l, "sqlite:/tmp/ferry-test-lite.db", "lite");
    expect_resolves(&l, "sqlite:///tmp/../tmp/ferry-test-lite.db", "lite");
    expect_resolves(&l, "Data Source=/tmp/ferry-test-lite.db", "lite");
    expect_refused(&l, "Server=db.example;Database=shop;", ERR_FORBIDDEN); /* port 5432 */
    expect_refused(&l, "Host=elsewhere;Port=6543;Database=shop;Password=secret", ERR_FORBIDDEN);
    expect_refused(&l, "postgres://a:secret@db.example:6543/other", ERR_FORBIDDEN);
    expect_refused(&l, "sqlite:/tmp/ferry-test-other.db", ERR_FORBIDDEN);
    expect_refused(&l, "System1", ERR_INVALID); /* a folder, not a database */
    expect_refused(&l, "nothing", ERR_INVALID);
    expect_refused(&l, "Host=db.example;Password=secret", ERR_INVALID);
    expect_refused(&l, "Host=db.example;junk;Database=x", ERR_INVALID);
    locations_cleanup(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_refuses),
        cmocka_unit_test(test_resolve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
