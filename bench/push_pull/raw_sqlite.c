/* raw_sqlite.c - the raw limit for bench/push_pull: the same rows inserted straight
 * through libsqlite3 in one process, no HTTP, no JSON, with ferry's durability (WAL,
 * synchronous=FULL, one transaction per batch).
 *
 *   raw_sqlite DB [--rows N] [--batch N] [--label NAME] [--no-create]
 *
 * Without --no-create it creates sales(id TEXT PRIMARY KEY, customer_id TEXT,
 * total INTEGER); with it the table must exist (e.g. a copy of ferry's schema, capture
 * triggers included). Prints one "RESULT key=value ..." line like client.c. */
#define _GNU_SOURCE
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void check(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "raw_sqlite: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    long rows = 100000, batch = 500;
    const char *label = "raw", *path = NULL;
    bool create = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rows") && i + 1 < argc)
            rows = atol(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atol(argv[++i]);
        else if (!strcmp(argv[i], "--label") && i + 1 < argc)
            label = argv[++i];
        else if (!strcmp(argv[i], "--no-create"))
            create = false;
        else if (!path && argv[i][0] != '-')
            path = argv[i];
        else {
            fprintf(stderr,
                    "usage: raw_sqlite DB [--rows N] [--batch N] [--label L] [--no-create]\n");
            return 2;
        }
    }
    if (!path || rows < 1 || batch < 1) {
        fprintf(stderr, "usage: raw_sqlite DB [--rows N] [--batch N] [--label L] [--no-create]\n");
        return 2;
    }
    sqlite3 *db;
    sqlite3_stmt *ins;
    check(NULL, sqlite3_open(path, &db), "open");
    check(db, sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", 0, 0, 0),
          "pragmas");
    if (create)
        check(db,
              sqlite3_exec(db,
                           "CREATE TABLE sales(id TEXT PRIMARY KEY, customer_id TEXT,"
                           " total INTEGER)",
                           0, 0, 0),
              "create table");
    check(db,
          sqlite3_prepare_v2(db, "INSERT INTO sales(id, customer_id, total) VALUES (?1, ?2, ?3)",
                             -1, &ins, NULL),
          "prepare");
    long n_batches = (rows + batch - 1) / batch;
    double *lat = malloc(n_batches * sizeof(double));
    double c0 = cpu_s(), t0 = now_s();
    for (long b = 0; b < n_batches; b++) {
        double s = now_s();
        check(db, sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0), "begin");
        for (long i = b * batch; i < rows && i < (b + 1) * batch; i++) {
            char id[32], cust[32];
            /* the same rows as client.c's row_fields() */
            sprintf(id, "s%07ld", i);
            sprintf(cust, "C%04ld", i % 5000);
            sqlite3_bind_text(ins, 1, id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(ins, 2, cust, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(ins, 3, (i * 7919) % 100000);
            check(db, sqlite3_step(ins), "insert");
            sqlite3_reset(ins);
        }
        check(db, sqlite3_exec(db, "COMMIT", 0, 0, 0), "commit");
        lat[b] = (now_s() - s) * 1000;
    }
    double wall = now_s() - t0, cpu = cpu_s() - c0;
    sqlite3_finalize(ins);
    sqlite3_close(db);
    qsort(lat, n_batches, sizeof(double), cmp_double);
#define P(p) lat[(long)((p) * (n_batches - 1) + 0.5)]
    printf("RESULT label=%s phase=push ops=%ld rows=%ld wall_s=%.3f ops_s=%.1f rows_s=%.1f"
           " p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f max_ms=%.2f client_cpu_s=%.3f"
           " client_cpu_pct=%.1f bytes=0 errors=0\n",
           label, n_batches, rows, wall, n_batches / wall, rows / wall, P(0.50), P(0.95), P(0.99),
           lat[n_batches - 1], cpu, 100 * cpu / wall);
    free(lat);
    return 0;
}
