/* pos.c - a small offline point-of-sale till on libferry. The till keeps a local SQLite
 * replica of two synced tables: stock (what head office stocks, at what price) and sales
 * (one row per sale, keyed by a random id, so two tills never write the same row).
 * Selling is plain SQL on the replica and works offline; libferry's triggers record each
 * sale, and `pos DB sync` pushes them and pulls every other till's, so all tills agree
 * on what is left: a stock row's quantity less every sale of it.
 *
 *   pos DB sync             sync with the server (FERRY_URL, FERRY_TOKEN[, FERRY_DEVICE])
 *   pos DB sell ITEM QTY    ring up a sale (no server needed once DB has synced)
 *   pos DB stock            one line per item: item, left, price in cents
 *   pos DB total            the number of sales and their total in cents, over all tills
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/client.h>
#include <sqlite3.h>

static int usage(void)
{
    fprintf(stderr, "usage: pos DB sync | pos DB sell ITEM QTY | pos DB stock | pos DB total\n");
    return 2;
}

static int sync_till(const char *db)
{
    struct ferry_client_options o = {.url = getenv("FERRY_URL"),
                                     .token = getenv("FERRY_TOKEN"),
                                     .device_id = getenv("FERRY_DEVICE")};
    struct ferry_sync_stats s;
    ferry_replica *r = NULL;
    char why[512];
    int rc = 1;
    if (ferry_replica_open(db, &o, &r, why, sizeof(why)) != FERRY_CLIENT_OK) {
        fprintf(stderr, "pos: %s\n", why);
        return 1;
    }
    if (ferry_sync(r, &s) != FERRY_CLIENT_OK) {
        /* nothing is lost: the sales stay in the outbox for the next sync */
        fprintf(stderr, "pos: sync failed: %s\n", ferry_replica_error(r));
    } else {
        printf("synced: %lld sale(s) sent, %lld change(s) received\n", (long long)s.pushed,
               (long long)s.pulled);
        rc = 0;
    }
    ferry_replica_close(r);
    return rc;
}

/* How many of item are left as this till knows it, or -1 when it is not stocked. */
static long long left(sqlite3 *db, const char *item)
{
    sqlite3_stmt *st = NULL;
    long long n = -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT qty - (SELECT COALESCE(SUM(qty), 0) FROM sales"
                           " WHERE item = stock.item) FROM stock WHERE item = ?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, item, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return n;
}

static int sell(sqlite3 *db, const char *till, const char *item, long long qty)
{
    sqlite3_stmt *st = NULL;
    int rc = 1;
    /* IMMEDIATE: two sales on one till cannot both take the last item */
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto out;
    long long have = left(db, item);
    if (have < 0) {
        fprintf(stderr, "pos: no item %s in stock (sync first?)\n", item);
        goto out;
    }
    if (have < qty) {
        fprintf(stderr, "pos: only %lld %s left\n", have, item);
        goto out;
    }
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO sales(id, till, item, qty, price_cents, sold_at)"
                           " SELECT ?1 || '-' || lower(hex(randomblob(8))), ?1, item, ?3,"
                           " price_cents * ?3, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
                           " FROM stock WHERE item = ?2",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, till, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, item, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, qty);
    if (sqlite3_step(st) == SQLITE_DONE && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == 0) {
        printf("sold %lld %s; %lld left\n", qty, item, have - qty);
        rc = 0;
    }
out:
    if (rc)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    if (rc && sqlite3_errcode(db) != SQLITE_OK)
        fprintf(stderr, "pos: %s\n", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}

static int print_rows(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "pos: %s (sync first?)\n", sqlite3_errmsg(db));
        return 1;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(st); i++)
            printf("%s%s", i ? " " : "", (const char *)sqlite3_column_text(st, i));
        printf("\n");
    }
    sqlite3_finalize(st);
    return 0;
}

/* The till's name: POS_TILL, or the replica's file name. */
static const char *till_name(const char *path)
{
    const char *env = getenv("POS_TILL"), *slash = strrchr(path, '/');
    return env && *env ? env : slash ? slash + 1 : path;
}

int main(int argc, char **argv)
{
    sqlite3 *db = NULL;
    int rc;
    if (argc < 3)
        return usage();
    if (!strcmp(argv[2], "sync"))
        return argc == 3 ? sync_till(argv[1]) : usage();
    if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fprintf(stderr, "pos: cannot open %s: run 'pos %s sync' once first\n", argv[1], argv[1]);
        sqlite3_close(db);
        return 1;
    }
    sqlite3_busy_timeout(db, 5000);
    if (!strcmp(argv[2], "sell") && argc == 5 && atoll(argv[4]) > 0)
        rc = sell(db, till_name(argv[1]), argv[3], atoll(argv[4]));
    else if (!strcmp(argv[2], "stock") && argc == 3)
        rc = print_rows(db, "SELECT item, qty - (SELECT COALESCE(SUM(qty), 0) FROM sales"
                            " WHERE item = stock.item), price_cents FROM stock ORDER BY item");
    else if (!strcmp(argv[2], "total") && argc == 3)
        rc = print_rows(db, "SELECT COUNT(*), COALESCE(SUM(price_cents), 0) FROM sales");
    else
        rc = usage();
    sqlite3_close(db);
    return rc;
}
