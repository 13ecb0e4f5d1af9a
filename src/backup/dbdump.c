/* dbdump.c - see dbdump.h. SQLite's backup API copies pages under a read transaction, so
 * the copy is one consistent state even while the server writes; pg_dump does the same
 * with a repeatable-read snapshot. */
#include <errno.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <sqlite3.h>

#include "backup/dbdump.h"

extern char **environ;

static int sqlite_copy(const char *path, const char *dest, struct err *err)
{
    sqlite3 *src = NULL, *dst = NULL;
    int rc = FERRY_ERR;
    if (sqlite3_open_v2(path, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        err_set(err, ERR_DATABASE, "cannot open the database %s: %s", path, sqlite3_errmsg(src));
        goto out;
    }
    if (sqlite3_open(dest, &dst) != SQLITE_OK) {
        err_set(err, ERR_INTERNAL, "cannot create %s", dest);
        goto out;
    }
    sqlite3_busy_timeout(src, 10000);
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b) {
        err_set(err, ERR_DATABASE, "cannot copy the database: %s", sqlite3_errmsg(dst));
        goto out;
    }
    int step = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    if (step != SQLITE_DONE) {
        err_set(err, ERR_DATABASE, "cannot copy the database: %s", sqlite3_errstr(step));
        goto out;
    }
    rc = FERRY_OK;
out:
    sqlite3_close(src);
    sqlite3_close(dst);
    return rc;
}

static int pg_dump(const char *url, const char *dest, struct err *err)
{
    char *argv[] = {"pg_dump",  "--format=custom", "--file", (char *)dest,
                    "--dbname", (char *)url,       NULL};
    pid_t pid;
    int status = 0;
    if (posix_spawnp(&pid, "pg_dump", NULL, NULL, argv, environ) != 0)
        return err_set(err, ERR_INTERNAL, "cannot run pg_dump: %s", strerror(errno));
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return err_set(err, ERR_DATABASE, "pg_dump failed (its message is above)");
    return FERRY_OK;
}

int dbdump_write(const char *url, const char *dir, struct err *err)
{
    int rc = FERRY_ERR;
    char *dest = NULL;
    if (!strncmp(url, "sqlite:", 7)) {
        dest = xasprintf("%s/ferry.db", dir);
        rc = sqlite_copy(url + 7, dest, err);
    } else if (!strncmp(url, "postgres://", 11) || !strncmp(url, "postgresql://", 13)) {
        dest = xasprintf("%s/ferry.pgdump", dir);
        rc = pg_dump(url, dest, err);
    } else {
        rc = err_set(err, ERR_INVALID,
                     "cannot back up this kind of database (sqlite: or postgres://)");
    }
    free(dest);
    return rc;
}
