/* mirror.c - ferry_mirror(): a local folder kept equal to the server's files under a
 * prefix, from the files namespace of the change feed. Owns the folder's state database
 * (dir/.ferry-mirror/state.db: the feed cursor, the files the feed wants, the files
 * written) and the partial downloads beside it; every write under the folder goes
 * through paths opened segment by segment without following symbolic links. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/replica.h"
#include "client/transport.h"
#include "ferry.h"

#define STATE_DIR ".ferry-mirror"
#define MAX_PATH_LEN 4096
#define MAX_PASSES 3  /* feed re-reads when files change on the server during a run */
#define MAX_WAIT_S 60 /* the server's longest long poll */

/* wanted: what the feed says each path holds (path relative to the folder); have: what
 * this folder got, with the size and time the file had when written, so that a file
 * changed or removed locally is noticed and fetched again. */
static const char STATE_SQL[] =
    "CREATE TABLE IF NOT EXISTS mirror_state ("
    " id INTEGER PRIMARY KEY CHECK (id = 1), cursor INTEGER NOT NULL DEFAULT 0,"
    " resync INTEGER NOT NULL DEFAULT 0, prefix TEXT NOT NULL, url TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS mirror_wanted ("
    " path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL,"
    " deleted INTEGER NOT NULL, seen INTEGER NOT NULL DEFAULT 1) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS mirror_have ("
    " path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL,"
    " mtime_ns INTEGER NOT NULL) WITHOUT ROWID;";

struct job {
    char *path, *sha;
    int64_t size;
};

struct mirror {
    ferry_replica *r; /* a bare handle whose db is the state database */
    int dirfd;
    char *dir, *prefix; /* prefix without slashes at its ends; "" for all */
    ferry_mirror_fn fn;
    void *ctx;
    struct ferry_mirror_stats *stats;
    struct job *jobs;
    size_t n_jobs;
    int64_t files_done, files_total, bytes_base, bytes_total;
    const char *current;
    int stale; /* files that changed on the server while this pass fetched them */
};

/* --- paths under the folder -------------------------------------------------------- */

/* Whether rel can be a file under the folder: relative, no empty, "." or ".." segment,
 * not under the state folder. The server cleans paths too; this does not rely on it. */
static bool safe_rel(const char *rel)
{
    size_t len = strlen(rel);
    if (!len || len > MAX_PATH_LEN || rel[0] == '/' || rel[len - 1] == '/')
        return false;
    if (!strcmp(rel, STATE_DIR) || !strncmp(rel, STATE_DIR "/", sizeof(STATE_DIR)))
        return false;
    for (const char *seg = rel; seg; seg = strchr(seg, '/') ? strchr(seg, '/') + 1 : NULL) {
        size_t n = strcspn(seg, "/");
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && !strncmp(seg, "..", 2)))
            return false;
    }
    return true;
}

/* Opens the folder that holds rel's last segment, walking from dirfd one segment at a
 * time with O_NOFOLLOW (a symbolic link in the way fails: nothing is ever written
 * through one), making missing folders when create. *leaf points into rel. */
static int open_parent(int dirfd, const char *rel, bool create, const char **leaf)
{
    char *copy = xstrdup(rel), *seg = copy, *slash;
    int fd = dup(dirfd);
    while (fd >= 0 && (slash = strchr(seg, '/'))) {
        *slash = '\0';
        int next = openat(fd, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && create && mkdirat(fd, seg, 0777) == 0)
            next = openat(fd, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int saved = errno;
        close(fd);
        errno = saved;
        fd = next;
        seg = slash + 1;
    }
    *leaf = rel + (seg - copy);
    free(copy);
    return fd;
}

/* Removes the folders of rel that the removal of its file left empty. */
static void prune_parents(int dirfd, const char *rel)
{
    char *copy = xstrdup(rel), *slash;
    while ((slash = strrchr(copy, '/'))) {
        *slash = '\0';
        const char *leaf;
        int fd = open_parent(dirfd, copy, false, &leaf);
        bool removed = fd >= 0 && unlinkat(fd, leaf, AT_REMOVEDIR) == 0;
        if (fd >= 0)
            close(fd);
        if (!removed)
            break;
    }
    free(copy);
}

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* --- the state database ------------------------------------------------------------ */

static int open_state(struct mirror *m)
{
    ferry_replica *r = m->r;
    char *folder = xasprintf("%s/" STATE_DIR, m->dir), *db = xasprintf("%s/state.db", folder);
    struct stat st;
    int rc = FERRY_CLIENT_OK;
    if (mkdir(folder, 0700) != 0 && errno != EEXIST)
        rc = fc_fail(r, FERRY_CLIENT_ELOCAL, "cannot make %s: %s", folder, strerror(errno));
    else if (lstat(folder, &st) != 0 || !S_ISDIR(st.st_mode))
        rc = fc_fail(r, FERRY_CLIENT_ELOCAL, "%s is not a folder", folder);
    else if (sqlite3_open_v2(db, &r->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW,
                             NULL) != SQLITE_OK) /* a link planted there leads outside */
        rc = fc_fail(r, FERRY_CLIENT_ELOCAL, "cannot open %s: %s", db,
                     r->db ? sqlite3_errmsg(r->db) : "out of memory");
    if (rc == FERRY_CLIENT_OK) {
        sqlite3_busy_timeout(r->db, 10000);
        rc = fc_exec(r, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
    }
    if (rc == FERRY_CLIENT_OK)
        rc = fc_exec(r, STATE_SQL);
    if (rc == FERRY_CLIENT_OK)
        rc = fc_run_text(r, "INSERT OR IGNORE INTO mirror_state(id, prefix, url) VALUES (1, ?, ?)",
                         m->prefix, r->url);
    free(folder);
    free(db);
    return rc;
}

/* A folder mirrors one prefix: its state says which. Reached through another address
 * (or another server), the feed is read again from 0 as after a 410: what that server
 * does not send is gone. */
static int check_origin(struct mirror *m)
{
    sqlite3_stmt *st = fc_prepare(m->r, "SELECT prefix, url FROM mirror_state WHERE id = 1");
    int rc = st ? FERRY_CLIENT_OK : FERRY_CLIENT_ELOCAL;
    bool moved = false;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        const char *prefix = (const char *)sqlite3_column_text(st, 0);
        moved = strcmp((const char *)sqlite3_column_text(st, 1), m->r->url) != 0;
        if (strcmp(prefix, m->prefix))
            rc = fc_fail(m->r, FERRY_CLIENT_EINVAL,
                         "%s mirrors '%s': mirror '%s' into another folder", m->dir, prefix,
                         m->prefix);
    }
    sqlite3_finalize(st);
    if (rc == FERRY_CLIENT_OK && moved)
        rc = fc_exec(m->r, "UPDATE mirror_wanted SET seen = 0;"
                           "UPDATE mirror_state SET cursor = 0, resync = 1 WHERE id = 1;");
    if (rc == FERRY_CLIENT_OK && moved)
        rc = fc_run_text(m->r, "UPDATE mirror_state SET url = ? WHERE id = 1", m->r->url, NULL);
    return rc;
}

static int state_int(struct mirror *m, const char *column, int64_t *value)
{
    char *sql = xasprintf("SELECT %s FROM mirror_state WHERE id = 1", column);
    sqlite3_stmt *st = fc_prepare(m->r, sql);
    int rc = FERRY_CLIENT_ELOCAL;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        *value = sqlite3_column_int64(st, 0);
        rc = FERRY_CLIENT_OK;
    }
    sqlite3_finalize(st);
    free(sql);
    return rc == FERRY_CLIENT_OK ? rc : fc_fail(m->r, rc, "mirror state: cannot read %s", column);
}

/* --- the feed ---------------------------------------------------------------------- */

/* The path under the folder of a server path, or NULL when it is not under the prefix. */
static const char *relative(const struct mirror *m, const char *path)
{
    size_t n = strlen(m->prefix);
    if (!n)
        return path;
    return !strncmp(path, m->prefix, n) && path[n] == '/' ? path + n + 1 : NULL;
}

static int record_change(struct mirror *m, json_t *c)
{
    const char *path = json_string_value(json_object_get(c, "id")), *rel;
    const char *table = json_string_value(json_object_get(c, "table"));
    json_t *data = json_object_get(c, "data");
    const char *sha = json_string_value(json_object_get(data, "sha256"));
    bool deleted = json_is_true(json_object_get(c, "deleted"));
    if (!table || strcmp(table, "files") || !path || !(rel = relative(m, path)))
        return FERRY_CLIENT_OK;
    if (!deleted && !fc_is_sha256(sha))
        return fc_fail(m->r, FERRY_CLIENT_ESERVER, "the feed's entry of %s has no sha256", path);
    sqlite3_stmt *st = fc_prepare(
        m->r, "INSERT INTO mirror_wanted(path, sha256, size, deleted) VALUES (?, ?, ?, ?)"
              " ON CONFLICT (path) DO UPDATE SET sha256 = excluded.sha256,"
              " size = excluded.size, deleted = excluded.deleted, seen = 1");
    if (!st)
        return FERRY_CLIENT_ELOCAL;
    sqlite3_bind_text(st, 1, rel, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, sha ? sha : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, json_integer_value(json_object_get(data, "size")));
    sqlite3_bind_int(st, 4, deleted);
    return fc_finish(m->r, st);
}

/* Records one page of the feed and the cursor after it, in one transaction; the last
 * page of a resync marks every path the server did not send again as deleted. */
static int record_page(struct mirror *m, json_t *page, bool resync)
{
    json_t *c;
    size_t i;
    int rc = fc_exec(m->r, "BEGIN IMMEDIATE");
    json_array_foreach(json_object_get(page, "changes"), i, c)
    {
        if (rc == FERRY_CLIENT_OK)
            rc = record_change(m, c);
    }
    char *sql = xasprintf("UPDATE mirror_state SET cursor = %lld WHERE id = 1",
                          (long long)json_integer_value(json_object_get(page, "cursor")));
    if (rc == FERRY_CLIENT_OK)
        rc = fc_exec(m->r, sql);
    free(sql);
    if (rc == FERRY_CLIENT_OK && resync && !json_is_true(json_object_get(page, "hasMore")))
        rc = fc_exec(m->r, "UPDATE mirror_wanted SET deleted = 1 WHERE seen = 0;"
                           "UPDATE mirror_state SET resync = 0 WHERE id = 1;");
    if (rc == FERRY_CLIENT_OK)
        rc = fc_exec(m->r, "COMMIT");
    if (rc != FERRY_CLIENT_OK)
        sqlite3_exec(m->r->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Reads the feed from the folder's cursor to its end. A 410 (the cursor is older than the
 * server's purge) reads it again from 0: paths not sent again are gone. */
static int read_feed(struct mirror *m)
{
    ferry_replica *r = m->r;
    for (int gone = 0;;) {
        int64_t cursor = 0, resync = 0;
        json_t *page = NULL;
        long status = 0;
        int rc = state_int(m, "cursor", &cursor);
        if (rc == FERRY_CLIENT_OK)
            rc = state_int(m, "resync", &resync);
        char *path = xasprintf("/api/v1/sync/changes?cursor=%lld&limit=1000&tables=files"
                               "&includeOwn=true%s%s",
                               (long long)cursor, r->device_id ? "&deviceId=" : "",
                               r->device_id ? r->device_id : "");
        if (rc == FERRY_CLIENT_OK)
            rc = fc_http(r, "GET", path, NULL, &status, &page);
        free(path);
        if (rc == FERRY_CLIENT_OK && status == 410 && !gone++) {
            json_decref(page);
            rc = fc_exec(r, "UPDATE mirror_wanted SET seen = 0;"
                            "UPDATE mirror_state SET cursor = 0, resync = 1 WHERE id = 1;");
            if (rc != FERRY_CLIENT_OK)
                return rc;
            continue;
        }
        if (rc == FERRY_CLIENT_OK && status != 200)
            rc = fc_fail(r, FERRY_CLIENT_ESERVER, "changes: HTTP %ld: %s", status,
                         fc_answer_message(page));
        else if (rc == FERRY_CLIENT_OK && !fc_is_page(page))
            rc = fc_fail(r, FERRY_CLIENT_ENETWORK, "changes: not a whole page (run again)");
        if (rc == FERRY_CLIENT_OK)
            rc = record_page(m, page, resync != 0);
        bool more = rc == FERRY_CLIENT_OK && json_is_true(json_object_get(page, "hasMore"));
        json_decref(page);
        if (rc != FERRY_CLIENT_OK || !more)
            return rc;
    }
}

/* --- removing ---------------------------------------------------------------------- */

/* Removes rel's file (a symbolic link there is removed itself, never followed). */
static int remove_file(struct mirror *m, const char *rel)
{
    const char *leaf;
    int fd = open_parent(m->dirfd, rel, false, &leaf), rc = FERRY_CLIENT_OK;
    if (fd >= 0 && unlinkat(fd, leaf, 0) != 0 && errno != ENOENT)
        rc = fc_fail(m->r, FERRY_CLIENT_ELOCAL, "cannot remove %s/%s: %s", m->dir, rel,
                     strerror(errno));
    if (fd >= 0)
        close(fd);
    if (rc == FERRY_CLIENT_OK)
        prune_parents(m->dirfd, rel);
    if (rc == FERRY_CLIENT_OK)
        rc = fc_run_text(m->r, "DELETE FROM mirror_have WHERE path = ?", rel, NULL);
    m->stats->removed += rc == FERRY_CLIENT_OK;
    return rc;
}

static int remove_deleted(struct mirror *m)
{
    sqlite3_stmt *st = fc_prepare(m->r, "SELECT path FROM mirror_have WHERE path IN"
                                        " (SELECT path FROM mirror_wanted WHERE deleted = 1)");
    int rc = st ? FERRY_CLIENT_OK : FERRY_CLIENT_ELOCAL, step;
    char **paths = NULL;
    size_t n = 0;
    while (st && (step = sqlite3_step(st)) == SQLITE_ROW) {
        paths = xrealloc(paths, (n + 1) * sizeof(*paths));
        paths[n++] = xstrdup((const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < n; i++) {
        if (rc == FERRY_CLIENT_OK)
            rc = remove_file(m, paths[i]);
        free(paths[i]);
    }
    free(paths);
    return rc;
}

/* --- downloading ------------------------------------------------------------------- */

/* Whether the folder already has this content at rel, as this mirror wrote it. */
static bool up_to_date(struct mirror *m, const char *rel, const char *sha)
{
    sqlite3_stmt *st = fc_prepare(m->r, "SELECT size, mtime_ns FROM mirror_have"
                                        " WHERE path = ? AND sha256 = ?");
    bool same = false;
    if (st) {
        sqlite3_bind_text(st, 1, rel, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, sha, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            const char *leaf;
            struct stat fs;
            int fd = open_parent(m->dirfd, rel, false, &leaf);
            same = fd >= 0 && fstatat(fd, leaf, &fs, AT_SYMLINK_NOFOLLOW) == 0 &&
                   S_ISREG(fs.st_mode) && fs.st_size == sqlite3_column_int64(st, 0) &&
                   mtime_ns(&fs) == sqlite3_column_int64(st, 1);
            if (fd >= 0)
                close(fd);
        }
    }
    sqlite3_finalize(st);
    return same;
}

static void free_jobs(struct mirror *m)
{
    for (size_t i = 0; i < m->n_jobs; i++) {
        free(m->jobs[i].path);
        free(m->jobs[i].sha);
    }
    free(m->jobs);
    m->jobs = NULL;
    m->n_jobs = 0;
}

/* The files to download: wanted, and not in the folder as wanted. */
static int plan(struct mirror *m)
{
    sqlite3_stmt *st = fc_prepare(m->r, "SELECT path, sha256, size FROM mirror_wanted"
                                        " WHERE deleted = 0 ORDER BY path");
    if (!st)
        return FERRY_CLIENT_ELOCAL;
    free_jobs(m);
    m->files_total = m->bytes_total = 0;
    m->stats->files = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *rel = (const char *)sqlite3_column_text(st, 0);
        const char *sha = (const char *)sqlite3_column_text(st, 1);
        m->stats->files++;
        if (up_to_date(m, rel, sha))
            continue;
        m->jobs = xrealloc(m->jobs, (m->n_jobs + 1) * sizeof(*m->jobs));
        m->jobs[m->n_jobs++] =
            (struct job){xstrdup(rel), xstrdup(sha), sqlite3_column_int64(st, 2)};
        m->files_total++;
        m->bytes_total += sqlite3_column_int64(st, 2);
    }
    return fc_finish(m->r, st);
}

static int on_bytes(void *ctx, int64_t done, int64_t total)
{
    struct mirror *m = ctx;
    (void)total;
    return m->fn ? m->fn(m->ctx, m->current, m->files_done, m->files_total, m->bytes_base + done,
                         m->bytes_total)
                 : 0;
}

/* Moves the verified part to rel, in one rename, and records what was written. */
static int place(struct mirror *m, const struct job *j, const char *part)
{
    const char *leaf;
    struct stat fs;
    int fd = open_parent(m->dirfd, j->path, true, &leaf), rc = FERRY_CLIENT_OK;
    if (fd < 0 || renameat(AT_FDCWD, part, fd, leaf) != 0 ||
        fstatat(fd, leaf, &fs, AT_SYMLINK_NOFOLLOW) != 0) {
        /* a file where the path needs a folder, or the reverse: the server's namespace
         * has both, a folder cannot */
        bool clash = errno == ENOTDIR || errno == EISDIR || errno == ELOOP || errno == EEXIST ||
                     errno == ENOTEMPTY;
        rc = clash ? FERRY_CLIENT_OK
                   : fc_fail(m->r, FERRY_CLIENT_ELOCAL, "cannot write %s/%s: %s", m->dir, j->path,
                             strerror(errno));
        m->stats->skipped += clash;
        unlink(part);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    close(fd);
    sqlite3_stmt *st = fc_prepare(m->r, "INSERT OR REPLACE INTO mirror_have(path, sha256, size,"
                                        " mtime_ns) VALUES (?, ?, ?, ?)");
    if (!st)
        return FERRY_CLIENT_ELOCAL;
    sqlite3_bind_text(st, 1, j->path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, j->sha, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, fs.st_size);
    sqlite3_bind_int64(st, 4, mtime_ns(&fs));
    rc = fc_finish(m->r, st);
    m->stats->downloaded += rc == FERRY_CLIENT_OK;
    return rc;
}

static int download_one(struct mirror *m, const struct job *j)
{
    if (!safe_rel(j->path)) {
        m->stats->skipped++;
        return FERRY_CLIENT_OK;
    }
    char *server = *m->prefix ? xasprintf("%s/%s", m->prefix, j->path) : xstrdup(j->path);
    /* parts are named by content: a resume continues the same bytes whatever the path */
    char *part = xasprintf("%s/" STATE_DIR "/%s.part", m->dir, j->sha);
    m->current = j->path;
    int rc = fc_fetch_file(m->r, server, part, j->sha, j->size, on_bytes, m);
    if (rc == FERRY_CLIENT_ESERVER && !m->r->stop) {
        /* gone or changed since the feed said so: the feed tells what it is now */
        unlink(part);
        m->stale++;
        rc = FERRY_CLIENT_OK;
    } else if (rc == FERRY_CLIENT_OK) {
        rc = place(m, j, part);
        m->stats->bytes += j->size;
    }
    m->files_done++;
    m->bytes_base += j->size;
    free(server);
    free(part);
    return rc;
}

/* One pass: the feed read to its end, deleted files removed, the others fetched. */
static int pass(struct mirror *m)
{
    int rc = read_feed(m);
    if (rc == FERRY_CLIENT_OK)
        rc = remove_deleted(m);
    if (rc == FERRY_CLIENT_OK)
        rc = plan(m);
    m->files_done = m->bytes_base = 0;
    m->stale = 0;
    for (size_t i = 0; rc == FERRY_CLIENT_OK && i < m->n_jobs; i++)
        rc = download_one(m, &m->jobs[i]);
    if (m->r->stop)
        rc = fc_fail(m->r, FERRY_CLIENT_EINVAL, "mirror: stopped (run again to resume)");
    if (rc == FERRY_CLIENT_OK && m->fn)
        m->fn(m->ctx, NULL, m->files_done, m->files_total, m->bytes_base, m->bytes_total);
    return rc;
}

static char *trim_prefix(const char *prefix)
{
    const char *start = prefix ? prefix : "";
    while (*start == '/')
        start++;
    char *out = xstrdup(start);
    for (size_t n = strlen(out); n && out[n - 1] == '/';)
        out[--n] = '\0';
    return out;
}

int ferry_mirror(const struct ferry_client_options *opts, const char *dir, const char *prefix,
                 ferry_mirror_fn fn, void *ctx, struct ferry_mirror_stats *stats, char *errbuf,
                 unsigned errlen)
{
    struct ferry_mirror_stats local;
    struct mirror m = {.fn = fn, .ctx = ctx, .stats = stats ? stats : &local, .dirfd = -1};
    int rc;
    memset(m.stats, 0, sizeof(*m.stats));
    m.r = fc_bare_open(opts, &rc);
    if (rc == FERRY_CLIENT_OK && (!dir || !*dir))
        rc = fc_fail(m.r, FERRY_CLIENT_EINVAL, "a folder is required");
    if (rc == FERRY_CLIENT_OK) {
        m.dir = xstrdup(dir);
        m.prefix = trim_prefix(prefix);
        if (mkdir(dir, 0777) != 0 && errno != EEXIST)
            rc = fc_fail(m.r, FERRY_CLIENT_ELOCAL, "cannot make %s: %s", dir, strerror(errno));
        else if ((m.dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
            rc = fc_fail(m.r, FERRY_CLIENT_ELOCAL, "cannot open %s: %s", dir, strerror(errno));
    }
    if (rc == FERRY_CLIENT_OK && (rc = open_state(&m)) == FERRY_CLIENT_OK)
        rc = check_origin(&m);
    for (int i = 0; rc == FERRY_CLIENT_OK && i < MAX_PASSES; i++)
        if ((rc = pass(&m)) == FERRY_CLIENT_OK && !m.stale)
            break;
    if (rc == FERRY_CLIENT_OK && m.stale)
        rc =
            fc_fail(m.r, FERRY_CLIENT_ESERVER,
                    "%d file(s) kept changing on the server during the mirror; run again", m.stale);
    if (rc == FERRY_CLIENT_OK)
        rc = state_int(&m, "cursor", &m.stats->cursor);
    if (rc != FERRY_CLIENT_OK && errbuf && errlen)
        snprintf(errbuf, errlen, "%s", m.r->error);
    free_jobs(&m);
    if (m.dirfd >= 0)
        close(m.dirfd);
    free(m.dir);
    free(m.prefix);
    ferry_replica_close(m.r);
    return rc;
}

/* One long poll of the feed's files namespace: the server answers at once when a file
 * changed after cursor, else parks the request until one does or wait_s pass. A 410 (the
 * cursor is purged) ends the wait too: the next ferry_mirror() reads the feed again. 1
 * when something changed, 0 when the time passed. */
int ferry_mirror_wait(const struct ferry_client_options *opts, int64_t cursor, int wait_s,
                      int (*stop)(void *ctx), void *ctx, char *errbuf, unsigned errlen)
{
    int rc;
    ferry_replica *r = fc_bare_open(opts, &rc);
    json_t *answer = NULL;
    long status = 0;
    if (rc == FERRY_CLIENT_OK && wait_s <= 0)
        rc = fc_fail(r, FERRY_CLIENT_EINVAL, "the wait must be at least 1 second");
    if (rc == FERRY_CLIENT_OK) {
        wait_s = wait_s > MAX_WAIT_S ? MAX_WAIT_S : wait_s;
        r->stop_fn = stop;
        r->stop_ctx = ctx;
        r->timeout_ms += wait_s * 1000L; /* the parked time is not a slow server */
        char *path = xasprintf("/api/v1/sync/changes?cursor=%lld&limit=1&tables=files"
                               "&includeOwn=true&wait=%d%s%s",
                               (long long)cursor, wait_s, r->device_id ? "&deviceId=" : "",
                               r->device_id ? r->device_id : "");
        rc = fc_http(r, "GET", path, NULL, &status, &answer);
        free(path);
    }
    if (rc == FERRY_CLIENT_OK && status != 200 && status != 410)
        rc = fc_fail(r, FERRY_CLIENT_ESERVER, "changes: HTTP %ld: %s", status,
                     fc_answer_message(answer));
    else if (rc == FERRY_CLIENT_OK)
        rc = status == 410 || json_array_size(json_object_get(answer, "changes")) > 0;
    if (rc != FERRY_CLIENT_OK && stop && stop(ctx))
        rc = fc_fail(r, FERRY_CLIENT_EINVAL, "mirror: stopped (run again to resume)");
    if (rc != FERRY_CLIENT_OK && errbuf && errlen)
        snprintf(errbuf, errlen, "%s", r->error);
    json_decref(answer);
    ferry_replica_close(r);
    return rc;
}
