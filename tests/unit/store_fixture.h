/* store_fixture.h - a real store for the unit tests of modules that need one: SQLite in a
 * fresh temporary directory, or a fresh database on the PostgreSQL server named by
 * FERRY_TEST_PG_URL (`make unit` starts one; without it the PostgreSQL tests fail, never
 * skip). Header-only: the tests are one file each. */
#ifndef FERRY_STORE_FIXTURE_H
#define FERRY_STORE_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"

struct store_fixture {
    char dir[64];
    char url[512];
    char pg_admin[512]; /* the server's URL, to drop the database again; "" for SQLite */
    char pg_db[64];
    struct store *st;
    struct store_conn *c;
};

/* Opens the store (migrations applied) and takes one connection; 0 on success. */
static inline int store_fixture_open(struct store_fixture *f, const char *name)
{
    struct err err = {0};
    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-test-%s-XXXXXX", name);
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->url, sizeof(f->url), "sqlite:%s/ferry.db", f->dir);
    if (store_open(f->url, 2, &f->st, &err) != FERRY_OK) {
        fprintf(stderr, "store_open: %s\n", err.msg);
        return -1;
    }
    return store_acquire(f->st, &f->c, &err) == FERRY_OK ? 0 : -1;
}

/* Runs one statement on the PostgreSQL server's admin database; 0 on success. */
static inline int store_fixture_pg_admin(const char *url, const char *sql)
{
    struct err err = {0};
    struct store *st = NULL;
    struct store_conn *c = NULL;
    int rc = -1;
    if (store_open(url, 1, &st, &err) == FERRY_OK && store_acquire(st, &c, &err) == FERRY_OK &&
        store_exec(c, sql, &err) == FERRY_OK)
        rc = 0;
    if (rc)
        fprintf(stderr, "%s: %s\n", sql, err.msg);
    store_release(c);
    store_close(st);
    return rc;
}

/* Opens a fresh database on the PostgreSQL server of FERRY_TEST_PG_URL; 0 on success. */
static inline int store_fixture_open_pg(struct store_fixture *f, const char *name)
{
    static int counter;
    struct err err = {0};
    const char *admin = getenv("FERRY_TEST_PG_URL");
    if (!admin || !*admin) {
        fprintf(stderr, "FERRY_TEST_PG_URL is not set: run the unit tests with `make unit`, "
                        "which starts a PostgreSQL server for them\n");
        return -1;
    }
    const char *slash = strrchr(admin, '/');
    if (!slash || slash - admin < 12)
        return -1;
    snprintf(f->pg_admin, sizeof(f->pg_admin), "%s", admin);
    snprintf(f->pg_db, sizeof(f->pg_db), "ferry_unit_%s_%d_%d", name, (int)getpid(), ++counter);
    snprintf(f->url, sizeof(f->url), "%.*s/%s", (int)(slash - admin), admin, f->pg_db);
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->pg_db);
    if (store_fixture_pg_admin(admin, sql) != 0)
        return -1;
    if (store_open(f->url, 2, &f->st, &err) != FERRY_OK) {
        fprintf(stderr, "store_open: %s\n", err.msg);
        return -1;
    }
    return store_acquire(f->st, &f->c, &err) == FERRY_OK ? 0 : -1;
}

/* Opens the store of the given dialect (migrations applied); 0 on success. */
static inline int store_fixture_open_as(struct store_fixture *f, const char *name,
                                        enum store_dialect dialect)
{
    memset(f, 0, sizeof(*f));
    return dialect == STORE_POSTGRES ? store_fixture_open_pg(f, name) : store_fixture_open(f, name);
}

/* Releases the connection, closes the store and removes its files and directory (or
 * drops its PostgreSQL database). */
static inline void store_fixture_close(struct store_fixture *f)
{
    if (f->pg_db[0]) {
        char sql[128];
        store_release(f->c);
        store_close(f->st);
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", f->pg_db);
        store_fixture_pg_admin(f->pg_admin, sql);
        return;
    }
    static const char *const files[] = {"ferry.db", "ferry.db-wal", "ferry.db-shm",
                                        "ferry.db-journal"};
    char path[160];
    store_release(f->c);
    store_close(f->st);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", f->dir, files[i]);
        unlink(path);
    }
    rmdir(f->dir);
}

#endif
