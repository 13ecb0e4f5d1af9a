/* restore.c - see restore.h. Entries come in the manifest's order, in which a folder
 * precedes what it holds; every folder on the way is made a real folder (a symlink in its
 * place is removed), so no write can follow a link out of the target. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "backup/fsio.h"
#include "backup/pack.h"
#include "backup/restore.h"
#include "backup/snapshot.h"
#include "backup/workq.h"
#include "util/timeutil.h"

#define PROGRESS_EVERY_US 200000
#define HOLE_BLOCK 65536 /* zeros this long (aligned) become a hole */

struct run {
    struct repo *repo;
    const struct restore_options *o;
    const struct snapshot *snap;
    const char *target;
    struct pack_index ix;
    bool as_root;
    struct workq files; /* the files to write: item k is entry order[k] */
    size_t *order;
    /* The writing threads share what is below, under lock. */
    pthread_mutex_t lock;
    struct restore_result *res;
    struct repo_progress progress;
    int64_t last_report_us;
};

/* What one writing thread owns. */
struct writer {
    struct run *run;
    struct pack_reader *reader;
};

void restore_result_cleanup(struct restore_result *res)
{
    json_decref(res->damaged);
    memset(res, 0, sizeof(*res));
}

static void report(struct run *run, bool force)
{
    int64_t now = time_mono_us();
    if (!run->o->progress || (!force && now - run->last_report_us < PROGRESS_EVERY_US))
        return;
    run->last_report_us = now;
    run->o->progress(run->o->progress_ctx, &run->progress);
}

static struct timespec to_timespec(int64_t ns)
{
    struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
    if (ts.tv_nsec < 0) {
        ts.tv_sec--;
        ts.tv_nsec += 1000000000;
    }
    return ts;
}

/* Clears the way for an entry: whatever is at abs that is not a folder goes. */
static int make_room(const char *abs, bool want_dir, struct err *err)
{
    struct stat st;
    if (lstat(abs, &st) != 0)
        return FERRY_OK;
    if (S_ISDIR(st.st_mode)) {
        if (want_dir)
            return FERRY_OK;
        return err_set(err, ERR_CONFLICT, "cannot restore %s: a folder is in the way", abs);
    }
    if (unlink(abs) != 0)
        return err_set(err, ERR_INTERNAL, "cannot replace %s: %s", abs, strerror(errno));
    return FERRY_OK;
}

/* Extended attributes where the filesystem and this process's rights allow (a user.*
 * name on a symlink, or trusted.* when not root, is refused: skipped). Through fd when
 * it is open, else on abs itself. */
static void set_xattrs(int fd, const char *abs, const struct snap_entry *e)
{
    for (size_t i = 0; i < e->n_xattrs; i++) {
        const struct snap_xattr *x = &e->xattrs[i];
        if (fd >= 0)
            (void)!fsetxattr(fd, x->name, x->value, x->len, 0);
        else
            (void)!lsetxattr(abs, x->name, x->value, x->len, 0);
    }
}

static bool all_zero(const uint8_t *data, size_t len)
{
    return len == 0 || (data[0] == 0 && !memcmp(data, data + 1, len - 1));
}

/* Writes a chunk's bytes, seeking over blocks of zeros so sparse files stay sparse
 * (*hole_at_end says whether the last block was skipped: then ftruncate gives the file its
 * length). Runs of data blocks go out in one write each. */
static int write_sparse(int fd, const uint8_t *data, size_t len, bool *hole_at_end, struct err *err)
{
    size_t pos = 0;
    while (pos < len) {
        size_t n = len - pos < HOLE_BLOCK ? len - pos : HOLE_BLOCK;
        if (all_zero(data + pos, n)) {
            if (lseek(fd, (off_t)n, SEEK_CUR) < 0)
                return err_set(err, ERR_INTERNAL, "cannot seek: %s", strerror(errno));
            pos += n;
            *hole_at_end = true;
            continue;
        }
        size_t end = pos + n;
        while (end < len) {
            size_t m = len - end < HOLE_BLOCK ? len - end : HOLE_BLOCK;
            if (all_zero(data + end, m))
                break;
            end += m;
        }
        if (fsio_write_all(fd, data + pos, end - pos, err) != FERRY_OK)
            return FERRY_ERR;
        pos = end;
        *hole_at_end = false;
    }
    return FERRY_OK;
}

static void damaged(struct run *run, const char *path, const char *why)
{
    pthread_mutex_lock(&run->lock);
    json_array_append_new(run->res->damaged, json_pack("{s:s, s:s}", "path", path, "error", why));
    pthread_mutex_unlock(&run->lock);
}

static void add_progress(struct run *run, uint64_t bytes, const char *current)
{
    pthread_mutex_lock(&run->lock);
    run->progress.bytes_done += bytes;
    run->progress.current = current;
    report(run, false);
    pthread_mutex_unlock(&run->lock);
}

/* Writes one file's chunks; a damaged chunk makes it a damaged file (not an error). */
static int write_chunks(struct writer *w, int fd, const struct snap_entry *e, struct err *err)
{
    struct run *run = w->run;
    uint64_t written = 0;
    bool hole_at_end = false;
    for (size_t c = 0; c < e->n_chunks; c++) {
        const struct chunk_ref *ref = pack_index_find(&run->ix, e->chunks[c]);
        const uint8_t *data = NULL;
        struct err chunk_err = {0};
        if (!ref || pack_reader_chunk(w->reader, ref, &data, &chunk_err) != FERRY_OK) {
            damaged(run, e->path, ref ? chunk_err.msg : "a chunk is missing from the repository");
            return FERRY_OK;
        }
        if (write_sparse(fd, data, ref->raw_len, &hole_at_end, err) != FERRY_OK)
            return FERRY_ERR;
        written += ref->raw_len;
        add_progress(run, ref->raw_len, e->path);
    }
    if ((hole_at_end || written != e->size) && ftruncate(fd, (off_t)e->size) != 0)
        return err_set(err, ERR_INTERNAL, "cannot size %s: %s", e->path, strerror(errno));
    return FERRY_OK;
}

static int restore_file(struct writer *w, const char *abs, const struct snap_entry *e,
                        struct err *err)
{
    struct run *run = w->run;
    /* Into an empty target (the common case) the file is simply made; whatever is in its
     * place (a symlink too: O_EXCL follows none) is cleared away first. */
    int fd = open(abs, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        if (make_room(abs, false, err) != FERRY_OK)
            return FERRY_ERR;
        fd = open(abs, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    }
    int rc = FERRY_ERR;
    if (fd < 0)
        return err_set(err, ERR_INTERNAL, "cannot create %s: %s", abs, strerror(errno));
    if (write_chunks(w, fd, e, err) != FERRY_OK)
        goto out;
    if (run->as_root && fchown(fd, e->uid, e->gid) != 0)
        (void)0;            /* owners where permitted: a foreign uid may not exist here */
    set_xattrs(fd, abs, e); /* after the bytes: writing may clear security.capability */
    struct timespec times[2] = {to_timespec(e->mtime_ns), to_timespec(e->mtime_ns)};
    if (fchmod(fd, e->mode) != 0 || futimens(fd, times) != 0) {
        err_set(err, ERR_INTERNAL, "cannot set the mode or time of %s: %s", abs, strerror(errno));
        goto out;
    }
    pthread_mutex_lock(&run->lock);
    run->res->files++;
    run->res->bytes += e->size;
    run->progress.files_done++;
    pthread_mutex_unlock(&run->lock);
    rc = FERRY_OK;
out:
    close(fd);
    return rc;
}

static int restore_symlink(struct run *run, const char *abs, const struct snap_entry *e,
                           struct err *err)
{
    if (make_room(abs, false, err) != FERRY_OK)
        return FERRY_ERR;
    if (symlink(e->target, abs) != 0)
        return err_set(err, ERR_INTERNAL, "cannot make the link %s: %s", abs, strerror(errno));
    if (run->as_root && lchown(abs, e->uid, e->gid) != 0)
        (void)0;
    set_xattrs(-1, abs, e);
    struct timespec times[2] = {to_timespec(e->mtime_ns), to_timespec(e->mtime_ns)};
    utimensat(AT_FDCWD, abs, times, AT_SYMLINK_NOFOLLOW);
    return FERRY_OK;
}

/* Another name of a file restored before (its entry comes earlier): linked, never copied.
 * The name must lead to a regular file of the restore (the folders on the way are the
 * restore's own, and no symlink is made yet). */
static int restore_hardlink(struct run *run, const char *target, const char *abs,
                            const struct snap_entry *e, struct err *err)
{
    char *to = xasprintf("%s/%s", target, e->target);
    struct stat st;
    int rc = FERRY_ERR;
    if (lstat(to, &st) != 0 || !S_ISREG(st.st_mode)) {
        err_set(err, ERR_INTERNAL, "cannot link %s: %s is not a restored file", abs, e->target);
        goto out;
    }
    if (make_room(abs, false, err) != FERRY_OK)
        goto out;
    if (link(to, abs) != 0) {
        err_set(err, ERR_INTERNAL, "cannot link %s to %s: %s", abs, to, strerror(errno));
        goto out;
    }
    run->res->files++;
    run->res->bytes += (uint64_t)st.st_size;
    rc = FERRY_OK;
out:
    free(to);
    return rc;
}

static int restore_dir(const char *abs, struct err *err)
{
    if (make_room(abs, true, err) != FERRY_OK)
        return FERRY_ERR;
    if (mkdir(abs, 0700) != 0 && errno != EEXIST)
        return err_set(err, ERR_INTERNAL, "cannot make the folder %s: %s", abs, strerror(errno));
    return FERRY_OK;
}

/* Folders get their modes and times last, once nothing is written into them any more. */
static void finish_dirs(struct run *run, const char *target, const struct snapshot *s)
{
    for (size_t i = s->n_entries; i-- > 0;) {
        const struct snap_entry *e = &s->entries[i];
        if (e->type != SNAP_DIR)
            continue;
        char *abs = xasprintf("%s/%s", target, e->path);
        struct timespec times[2] = {to_timespec(e->mtime_ns), to_timespec(e->mtime_ns)};
        if (run->as_root && lchown(abs, e->uid, e->gid) != 0)
            (void)0;
        set_xattrs(-1, abs, e);
        chmod(abs, e->mode);
        utimensat(AT_FDCWD, abs, times, AT_SYMLINK_NOFOLLOW);
        free(abs);
    }
}

static bool stopped(const struct run *run)
{
    return run->o->stop && atomic_load(run->o->stop);
}

static bool any_item(void *ctx, size_t i)
{
    (void)ctx;
    (void)i;
    return true;
}

/* The files in the order the threads take them: from n_parts far-apart parts of the
 * manifest in turn. A folder's files lie together in the manifest, so the threads create
 * files in different folders at once, instead of queueing on one folder's lock in the
 * kernel (where a file system that scans for a free inode holds it for long). */
static size_t interleave(const struct snapshot *s, size_t n_parts, size_t **order)
{
    size_t n = 0, *files = xmalloc((s->n_entries + 1) * sizeof(size_t));
    for (size_t i = 0; i < s->n_entries; i++)
        if (s->entries[i].type == SNAP_FILE)
            files[n++] = i;
    size_t part_len = (n + n_parts - 1) / n_parts, k = 0;
    *order = xmalloc((n + 1) * sizeof(size_t));
    for (size_t at = 0; at < part_len; at++)
        for (size_t p = 0; p < n_parts; p++)
            if (p * part_len + at < n)
                (*order)[k++] = files[p * part_len + at];
    free(files);
    return n;
}

static void *writing_thread(void *arg)
{
    struct writer *w = arg;
    struct run *run = w->run;
    for (long k; (k = workq_take(&run->files)) >= 0;) {
        struct err err = {0};
        const struct snap_entry *e = &run->snap->entries[run->order[k]];
        char *abs = xasprintf("%s/%s", run->target, e->path);
        if (restore_file(w, abs, e, &err) != FERRY_OK)
            workq_fail(&run->files, &err);
        free(abs);
    }
    return NULL;
}

/* Writes the files on a few threads (reading packs, decrypting, decompressing, hashing
 * and writing overlap, and the cores share the work). */
static int restore_files(struct run *run, struct err *err)
{
    int n = repo_threads();
    struct writer writers[REPO_MAX_THREADS];
    size_t n_files = interleave(run->snap, (size_t)n, &run->order);
    workq_init(&run->files, n_files, any_item, run, run->o->stop);
    for (int t = 0; t < n; t++)
        writers[t] =
            (struct writer){run, pack_reader_new(run->repo->path, run->repo->key, &run->ix)};
    repo_parallel(writing_thread, writers, sizeof(writers[0]), n);
    for (int t = 0; t < n; t++)
        pack_reader_free(writers[t].reader);
    int rc = workq_result(&run->files, "the restore was stopped", err);
    workq_destroy(&run->files);
    free(run->order);
    run->order = NULL;
    return rc;
}

/* One pass of the entries of one type (folders, hard links or symlinks). */
static int restore_pass(struct run *run, const char *target, enum snap_type type, struct err *err)
{
    const struct snapshot *s = run->snap;
    for (size_t i = 0; i < s->n_entries; i++) {
        const struct snap_entry *e = &s->entries[i];
        if (e->type != type)
            continue;
        if (stopped(run))
            return err_set(err, ERR_UNAVAILABLE, "the restore was stopped");
        char *abs = xasprintf("%s/%s", target, e->path);
        int rc = type == SNAP_DIR        ? restore_dir(abs, err)
                 : type == SNAP_HARDLINK ? restore_hardlink(run, target, abs, e, err)
                                         : restore_symlink(run, abs, e, err);
        free(abs);
        if (rc != FERRY_OK)
            return FERRY_ERR;
    }
    return FERRY_OK;
}

/* Folders first (so every file's folder exists), then files, then their other names (hard
 * links), then symlinks (so none is there to be followed while files are written), then
 * the folders' modes and times. */
static int restore_entries(struct run *run, const char *target, const struct snapshot *s,
                           struct err *err)
{
    if (restore_pass(run, target, SNAP_DIR, err) != FERRY_OK ||
        restore_files(run, err) != FERRY_OK ||
        restore_pass(run, target, SNAP_HARDLINK, err) != FERRY_OK ||
        restore_pass(run, target, SNAP_SYMLINK, err) != FERRY_OK)
        return FERRY_ERR;
    run->res->entries = s->n_entries;
    finish_dirs(run, target, s);
    return FERRY_OK;
}

static int damage_error(const struct restore_result *res, struct err *err)
{
    size_t n = json_array_size(res->damaged);
    const char *first = json_string_value(json_object_get(json_array_get(res->damaged, 0), "path"));
    const char *why = json_string_value(json_object_get(json_array_get(res->damaged, 0), "error"));
    return err_set(err, ERR_INTERNAL, "%zu file(s) could not be restored whole, first %s (%s)", n,
                   first, why);
}

int restore_run(struct repo *r, const struct restore_options *o, struct restore_result *res,
                struct err *err)
{
    struct run run = {.repo = r, .o = o, .res = res, .as_root = geteuid() == 0};
    pthread_mutex_init(&run.lock, NULL);
    struct snapshot s = {0};
    char *target = NULL;
    int rc = FERRY_ERR;
    memset(res, 0, sizeof(*res));
    res->damaged = json_array();
    pack_index_init(&run.ix);
    if (repo_lock(r, false, REPO_LOCK_WAIT_MS, err) != FERRY_OK ||
        snapshot_load(r->path, r->key, o->version_id, &s, err) != FERRY_OK ||
        pack_index_load(r->path, r->key, &run.ix, NULL, NULL, err) != FERRY_OK ||
        fsio_mkdirs(o->target, 0700, err) != FERRY_OK)
        goto out;
    if (!(target = realpath(o->target, NULL))) {
        err_set(err, ERR_INVALID, "cannot restore into %s: %s", o->target, strerror(errno));
        goto out;
    }
    for (size_t i = 0; i < s.n_entries; i++)
        if (s.entries[i].type == SNAP_FILE) {
            run.progress.bytes_total += s.entries[i].size;
            run.progress.files_total++;
        }
    run.snap = &s;
    run.target = target;
    if (restore_entries(&run, target, &s, err) != FERRY_OK)
        goto out;
    run.progress.current = NULL;
    report(&run, true);
    rc = json_array_size(res->damaged) ? damage_error(res, err) : FERRY_OK;
out:
    pack_index_cleanup(&run.ix);
    pthread_mutex_destroy(&run.lock);
    snapshot_clear(&s);
    free(target);
    repo_unlock(r);
    return rc;
}

int restore_pick(struct repo *r, int64_t at_ms, char id[37], int64_t *created_ms, struct err *err)
{
    struct snapshot *list = NULL;
    size_t n = 0;
    int rc = FERRY_ERR;
    if (repo_lock(r, false, REPO_LOCK_WAIT_MS, err) != FERRY_OK ||
        snapshot_list(r->path, r->key, &list, &n, err) != FERRY_OK)
        goto out;
    for (size_t i = n; i-- > 0;)
        if (list[i].created_ms <= at_ms) {
            snprintf(id, 37, "%s", list[i].id);
            *created_ms = list[i].created_ms;
            rc = FERRY_OK;
            goto out;
        }
    err_set(err, ERR_NOT_FOUND, "no backup version was made at or before that time");
out:
    snapshot_list_free(list, n);
    repo_unlock(r);
    return rc;
}
