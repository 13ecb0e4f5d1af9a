/* store_fixture.h - a real SQLite store in a fresh temporary directory, for the unit
 * tests of modules that need one (store, tokens). Header-only: the tests are one file
 * each. */
#ifndef FERRY_STORE_FIXTURE_H
#define FERRY_STORE_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "store/store.h"

struct store_fixture {
    char dir[64];
    char url[128];
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

/* Releases the connection, closes the store and removes its files and directory. */
static inline void store_fixture_close(struct store_fixture *f)
{
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
