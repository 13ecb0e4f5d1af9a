/* archive.c - see archive.h. Files are cut one by one (a chunk never spans two files), so
 * an unchanged file always yields the same chunks whatever changed around it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "backup/archive.h"
#include "backup/check.h"
#include "backup/chunker.h"
#include "backup/pack.h"
#include "backup/workq.h"
#include "util/crashpoint.h"
#include "util/crypto.h"
#include "util/timeutil.h"

#define READ_BUF (2 * CHUNKER_MAX)
#define PROGRESS_EVERY_US 200000
#define MAX_DEPTH 512
#define XATTR_MAX (64u * 1024) /* Linux's limit on one value, and on a name list */

/* The files seen with more than one link: (device, inode) -> the entry that holds the
 * bytes, so the other names become hard links to it. Open addressing. */
struct inode_slot {
    dev_t dev;
    ino_t ino;
    size_t entry; /* 0: free; else 1 + the entry's index */
};

struct inode_map {
    struct inode_slot *slots;
    size_t n, cap;
};

struct run {
    struct repo *repo;
    const struct archive_options *o;
    struct snapshot *snap;
    const struct snapshot *parent;     /* the folder's previous version, or NULL */
    struct snapshot parent_snap;       /* its whole manifest */
    const struct snap_entry **by_path; /* parent's entries sorted by path */
    struct pack_index ix;
    struct pack_writer *writer; /* shared: its appends copy their bytes outside its lock */
    bool *need_read; /* per entry: the file is read (else it keeps the parent's chunks) */
    dev_t repo_dev;
    ino_t repo_ino;
    struct inode_map links;
    struct workq files; /* the files to read */
    /* The reading threads share what is below, under lock: the index and the progress. */
    pthread_mutex_t lock;
    struct repo_progress progress;
    int64_t last_report_us;
};

/* What one reading thread owns. */
struct reader {
    struct run *run;
    struct pack_sealer *sealer;
    uint8_t *buf;
};

static void report(struct run *run, bool force)
{
    int64_t now = time_mono_us();
    if (!run->o->progress || (!force && now - run->last_report_us < PROGRESS_EVERY_US))
        return;
    run->last_report_us = now;
    run->o->progress(run->o->progress_ctx, &run->progress);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted names in folder abs; *dir_fd stays open for the *at() calls on them. */
static int list_dir(const char *abs, char ***names, size_t *n, int *dir_fd, struct err *err)
{
    *dir_fd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int copy = *dir_fd < 0 ? -1 : dup(*dir_fd);
    DIR *dir = copy < 0 ? NULL : fdopendir(copy);
    struct dirent *de;
    *names = NULL;
    *n = 0;
    if (!dir) {
        if (copy >= 0)
            close(copy);
        return err_set(err, ERR_INVALID, "cannot read the folder %s: %s", abs, strerror(errno));
    }
    while ((de = readdir(dir))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        *names = xrealloc(*names, (*n + 1) * sizeof(char *));
        (*names)[(*n)++] = xstrdup(de->d_name);
    }
    closedir(dir);
    if (*n)
        qsort(*names, *n, sizeof(char *), by_name);
    return FERRY_OK;
}

static void fill_entry(struct snap_entry *e, const struct stat *st)
{
    e->mode = st->st_mode & 07777;
    e->uid = st->st_uid;
    e->gid = st->st_gid;
    e->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    e->size = S_ISREG(st->st_mode) ? (uint64_t)st->st_size : 0;
    e->inode = st->st_ino;
}

static struct inode_slot *inode_find(struct inode_map *m, dev_t dev, ino_t ino)
{
    size_t i = ((uint64_t)ino * 0x9e3779b97f4a7c15ULL ^ (uint64_t)dev) & (m->cap - 1);
    while (m->slots[i].entry && !(m->slots[i].dev == dev && m->slots[i].ino == ino))
        i = (i + 1) & (m->cap - 1);
    return &m->slots[i];
}

/* The entry already holding this inode's bytes (1 + index), or 0 after noting entry as
 * its holder. */
static size_t inode_seen(struct inode_map *m, const struct stat *st, size_t entry)
{
    if ((m->n + 1) * 2 > m->cap) {
        struct inode_map bigger = {xcalloc(m->cap ? m->cap * 2 : 256, sizeof(*m->slots)), m->n,
                                   m->cap ? m->cap * 2 : 256};
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].entry)
                *inode_find(&bigger, m->slots[i].dev, m->slots[i].ino) = m->slots[i];
        free(m->slots);
        *m = bigger;
    }
    struct inode_slot *slot = inode_find(m, st->st_dev, st->st_ino);
    if (slot->entry)
        return slot->entry;
    *slot = (struct inode_slot){st->st_dev, st->st_ino, entry + 1};
    m->n++;
    return 0;
}

/* Keeps the extended attributes of abs that this process may read (none where the
 * filesystem has none). */
static void read_xattrs(struct snap_entry *e, const char *abs)
{
    char names[XATTR_MAX];
    ssize_t n = llistxattr(abs, names, sizeof(names));
    uint8_t *value = n > 0 ? xmalloc(XATTR_MAX) : NULL;
    for (ssize_t at = 0; at < n; at += (ssize_t)strlen(names + at) + 1) {
        ssize_t len = lgetxattr(abs, names + at, value, XATTR_MAX);
        if (len >= 0)
            snapshot_add_xattr(e, names + at, value, (size_t)len);
    }
    free(value);
}

static int walk(struct run *run, const char *abs, const char *rel, int depth, struct err *err);

/* Adds one directory entry (and, for a folder, what it holds). */
/* name lies in the folder dir_fd (relative calls: no path to resolve again each time). */
static int walk_one(struct run *run, int dir_fd, const char *name, const char *abs, const char *rel,
                    int depth, struct err *err)
{
    struct stat st;
    if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT
                   ? FERRY_OK /* gone meanwhile */
                   : err_set(err, ERR_INVALID, "cannot read %s: %s", abs, strerror(errno));
    if (S_ISDIR(st.st_mode) && st.st_dev == run->repo_dev && st.st_ino == run->repo_ino)
        return FERRY_OK; /* the repository itself lies in the source: never back it up */
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
        return FERRY_OK; /* devices, sockets and pipes hold no data to keep */
    struct snap_entry *e = snapshot_add(run->snap);
    size_t holder = S_ISREG(st.st_mode) && st.st_nlink > 1
                        ? inode_seen(&run->links, &st, (size_t)(e - run->snap->entries))
                        : 0;
    e->path = xstrdup(rel);
    fill_entry(e, &st);
    if (holder) { /* another name of a file already taken: stored as a link to it */
        e->type = SNAP_HARDLINK;
        e->target = xstrdup(run->snap->entries[holder - 1].path);
        return FERRY_OK;
    }
    read_xattrs(e, abs);
    if (S_ISREG(st.st_mode)) {
        e->type = SNAP_FILE;
        run->progress.files_total++;
    } else if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlinkat(dir_fd, name, target, sizeof(target) - 1);
        if (n < 0)
            return err_set(err, ERR_INVALID, "cannot read the link %s: %s", abs, strerror(errno));
        target[n] = 0;
        e->type = SNAP_SYMLINK;
        e->target = xstrdup(target);
    } else {
        e->type = SNAP_DIR;
        return walk(run, abs, rel, depth + 1, err);
    }
    return FERRY_OK;
}

static int walk(struct run *run, const char *abs, const char *rel, int depth, struct err *err)
{
    char **names = NULL;
    size_t n = 0;
    int rc = FERRY_ERR, dir_fd = -1;
    if (depth > MAX_DEPTH)
        return err_set(err, ERR_INVALID, "%s is nested deeper than %d folders", abs, MAX_DEPTH);
    if (list_dir(abs, &names, &n, &dir_fd, err) != FERRY_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        char *child_abs = xasprintf("%s/%s", abs, names[i]);
        char *child_rel = *rel ? xasprintf("%s/%s", rel, names[i]) : xstrdup(names[i]);
        int one = walk_one(run, dir_fd, names[i], child_abs, child_rel, depth, err);
        free(child_abs);
        free(child_rel);
        if (one != FERRY_OK)
            goto out;
    }
    rc = FERRY_OK;
out:
    if (dir_fd >= 0)
        close(dir_fd);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static int entry_by_path(const void *key, const void *elem)
{
    return strcmp((const char *)key, (*(const struct snap_entry *const *)elem)->path);
}

static int entries_by_path(const void *a, const void *b)
{
    return strcmp((*(const struct snap_entry *const *)a)->path,
                  (*(const struct snap_entry *const *)b)->path);
}

static const struct snap_entry *parent_entry(const struct run *run, const char *path)
{
    if (!run->parent)
        return NULL;
    const struct snap_entry **found =
        bsearch(path, run->by_path, run->parent->n_entries, sizeof(*run->by_path), entry_by_path);
    return found ? *found : NULL;
}

/* Stores a chunk unless the repository has it. The thread that claims it (under the lock,
 * so two threads never store the same chunk) seals and appends it outside the lock (the
 * writer copies the bytes in outside its own); only its place in the index is set under
 * the lock again. */
static int store_chunk(struct reader *rd, struct snap_entry *e, const uint8_t *data, size_t len,
                       struct err *err)
{
    struct run *run = rd->run;
    uint8_t hash[32];
    struct chunk_ref ref;
    const uint8_t *stored = NULL;
    char pack_id[PACK_ID_LEN + 1];
    int rc = FERRY_OK;
    SHA256(data, len, hash);
    pthread_mutex_lock(&run->lock);
    bool mine = pack_index_claim(&run->ix, hash);
    pthread_mutex_unlock(&run->lock);
    if (mine) {
        pack_sealer_seal(rd->sealer, hash, data, len, &ref, &stored);
        rc = pack_writer_append(run->writer, &ref, stored, pack_id, err);
        pthread_mutex_lock(&run->lock);
        if (rc == FERRY_OK)
            pack_index_place(&run->ix, pack_id, &ref);
        run->snap->added_bytes += ref.stored_len;
        pthread_mutex_unlock(&run->lock);
    }
    e->chunks = xrealloc(e->chunks, (e->n_chunks + 1) * 32);
    memcpy(e->chunks[e->n_chunks++], hash, 32);
    return rc;
}

static int open_source(const char *abs, struct err *err)
{
    int fd = open(abs, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM) /* O_NOATIME only for the file's owner */
        fd = open(abs, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        err_set(err, ERR_INVALID, "cannot read %s: %s", abs, strerror(errno));
    return fd;
}

/* Fills the buffer from fd behind what is left of it (from *start to *end). */
static int refill(int fd, uint8_t *buf, size_t *start, size_t *end, bool *eof, const char *abs,
                  struct err *err)
{
    memmove(buf, buf + *start, *end - *start);
    *end -= *start;
    *start = 0;
    while (*end < READ_BUF && !*eof) {
        ssize_t n = read(fd, buf + *end, READ_BUF - *end);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return err_set(err, ERR_INVALID, "cannot read %s: %s", abs, strerror(errno));
        *eof = n == 0;
        *end += (size_t)n;
    }
    return FERRY_OK;
}

static void add_progress(struct run *run, uint64_t bytes, uint64_t files, const char *current)
{
    pthread_mutex_lock(&run->lock);
    run->progress.bytes_done += bytes;
    run->progress.files_done += files;
    run->progress.current = current;
    report(run, false);
    pthread_mutex_unlock(&run->lock);
}

/* Cuts one file into chunks and stores the new ones; e->size becomes what was read. */
static int read_file(struct reader *rd, const char *abs, struct snap_entry *e, struct err *err)
{
    int fd = open_source(abs, err);
    size_t start = 0, end = 0;
    uint64_t total = 0;
    bool eof = false;
    int rc = FERRY_ERR;
    if (fd < 0)
        return FERRY_ERR;
    for (;;) {
        if (end - start < CHUNKER_MAX && !eof &&
            refill(fd, rd->buf, &start, &end, &eof, abs, err) != FERRY_OK)
            goto out;
        if (start == end)
            break;
        size_t cut = chunker_cut(rd->buf + start, end - start, eof);
        if (store_chunk(rd, e, rd->buf + start, cut, err) != FERRY_OK)
            goto out;
        start += cut;
        total += cut;
        add_progress(rd->run, cut, 0, e->path);
    }
    e->size = total;
    rc = FERRY_OK;
out:
    close(fd);
    return rc;
}

/* Whether a file can keep its earlier chunks unread: same size, mtime and inode, and
 * every chunk still in the repository (after a repair dropped damaged ones, the next
 * run reads the file again and so heals the older versions too). */
static bool unchanged(const struct run *run, const struct snap_entry *old,
                      const struct snap_entry *e)
{
    if (!old || old->type != SNAP_FILE || old->size != e->size || old->mtime_ns != e->mtime_ns ||
        old->inode != e->inode)
        return false;
    for (size_t i = 0; i < old->n_chunks; i++)
        if (!pack_index_find(&run->ix, old->chunks[i]))
            return false;
    return true;
}

static bool same_chunks(const struct snap_entry *old, const struct snap_entry *e)
{
    return old && old->type == SNAP_FILE && old->n_chunks == e->n_chunks &&
           (!e->n_chunks || !memcmp(old->chunks, e->chunks, e->n_chunks * 32));
}

static bool same_link(const struct snap_entry *old, const struct snap_entry *e)
{
    return old && old->type == SNAP_HARDLINK && !strcmp(old->target, e->target);
}

static bool needs_reading(void *ctx, size_t i)
{
    return ((const struct run *)ctx)->need_read[i];
}

static void *reading_thread(void *arg)
{
    struct reader *rd = arg;
    struct run *run = rd->run;
    for (long i; (i = workq_take(&run->files)) >= 0;) {
        struct snap_entry *e = &run->snap->entries[i];
        struct err err = {0};
        char *abs = xasprintf("%s/%s", run->snap->source, e->path);
        if (read_file(rd, abs, e, &err) != FERRY_OK)
            workq_fail(&run->files, &err);
        free(abs);
        add_progress(run, 0, 1, NULL);
    }
    return NULL;
}

/* Reads the files that need it on a few threads: reading, hashing, compressing and
 * encrypting overlap, and the cores share the work. */
static int read_files(struct run *run, struct err *err)
{
    int n = repo_threads();
    struct reader readers[REPO_MAX_THREADS];
    workq_init(&run->files, run->snap->n_entries, needs_reading, run, run->o->stop);
    for (int t = 0; t < n; t++)
        readers[t] = (struct reader){run, pack_sealer_new(run->repo->key), xmalloc(READ_BUF)};
    repo_parallel(reading_thread, readers, sizeof(readers[0]), n);
    for (int t = 0; t < n; t++) {
        pack_sealer_free(readers[t].sealer);
        free(readers[t].buf);
    }
    int rc = workq_result(&run->files, "the backup was stopped", err);
    workq_destroy(&run->files);
    return rc;
}

static int store_files(struct run *run, struct err *err)
{
    struct snapshot *s = run->snap;
    run->need_read = xcalloc(s->n_entries + 1, sizeof(bool));
    for (size_t i = 0; i < s->n_entries; i++) {
        struct snap_entry *e = &s->entries[i];
        const struct snap_entry *old = parent_entry(run, e->path);
        if (e->type != SNAP_FILE)
            continue;
        run->need_read[i] = run->o->full || !unchanged(run, old, e);
        if (run->need_read[i]) {
            run->progress.bytes_total += e->size;
            continue;
        }
        e->n_chunks = old->n_chunks;
        e->chunks = xmalloc((e->n_chunks ? e->n_chunks : 1) * 32);
        memcpy(e->chunks, old->chunks, e->n_chunks * 32);
        run->progress.files_done++;
    }
    if (read_files(run, err) != FERRY_OK)
        return FERRY_ERR;
    for (size_t i = 0; i < s->n_entries; i++) {
        const struct snap_entry *e = &s->entries[i];
        if (e->type != SNAP_FILE && e->type != SNAP_HARDLINK)
            continue;
        s->file_count++;
        s->total_size += e->size;
        if (e->type == SNAP_FILE ? run->need_read[i] && !same_chunks(parent_entry(run, e->path), e)
                                 : !same_link(parent_entry(run, e->path), e))
            snapshot_add_changed(s, e->path);
    }
    report(run, true);
    return FERRY_OK;
}

static void new_version_id(char out[37])
{
    uint8_t b[16];
    crypto_random(b, sizeof(b));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* a version 4 (random) UUID */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

/* The newest version of the same folder, which an incremental run compares against. */
static const struct snapshot *find_parent(const struct snapshot *list, size_t n, const char *source)
{
    for (size_t i = n; i-- > 0;)
        if (list[i].source && !strcmp(list[i].source, source))
            return &list[i];
    return NULL;
}

static int prepare(struct run *run, const char *source, struct snapshot *list, size_t n,
                   struct err *err)
{
    struct snapshot *s = run->snap;
    const struct snapshot *previous = find_parent(list, n, source);
    if (previous) {
        if (snapshot_load(run->repo->path, run->repo->key, previous->id, &run->parent_snap, err) !=
            FERRY_OK)
            return FERRY_ERR;
        run->parent = &run->parent_snap;
        run->by_path = xmalloc((run->parent->n_entries + 1) * sizeof(*run->by_path));
        for (size_t i = 0; i < run->parent->n_entries; i++)
            run->by_path[i] = &run->parent->entries[i];
        if (run->parent->n_entries)
            qsort(run->by_path, run->parent->n_entries, sizeof(*run->by_path), entries_by_path);
    }
    new_version_id(s->id);
    s->created_ms = time_now_ms();
    s->source = xstrdup(source);
    s->description = run->o->description ? xstrdup(run->o->description) : NULL;
    s->feed_cursor = run->o->feed_cursor;
    s->full = run->o->full || !run->parent;
    s->parent = run->parent ? xstrdup(run->parent->id) : NULL;
    return FERRY_OK;
}

/* The source is walked on a thread of its own while the repository's indexes, its list of
 * versions and the parent's manifest load: the walk needs none of them, and it touches
 * only the manifest's entries, the hard links and progress.files_total (prepare touches
 * neither). */
struct walker {
    struct run *run;
    const char *source;
    pthread_t thread;
    bool started, done;
    int rc;
    struct err err;
};

static void *walking_thread(void *arg)
{
    struct walker *w = arg;
    w->rc = walk(w->run, w->source, "", 0, &w->err);
    return NULL;
}

/* Starts the walk (it runs in finish_walk when no thread can be had), after noting where
 * the repository is, so that the walk leaves it out. */
static int start_walk(struct walker *w, struct run *run, const char *source, struct err *err)
{
    struct stat st;
    *w = (struct walker){.run = run, .source = source, .rc = FERRY_ERR};
    if (stat(run->repo->path, &st) != 0)
        return err_set(err, ERR_INTERNAL, "cannot read %s: %s", run->repo->path, strerror(errno));
    run->repo_dev = st.st_dev;
    run->repo_ino = st.st_ino;
    w->started = pthread_create(&w->thread, NULL, walking_thread, w) == 0;
    return FERRY_OK;
}

/* Waits for the walk to end; its result. */
static int finish_walk(struct walker *w, struct err *err)
{
    if (!w->done) {
        if (w->started)
            pthread_join(w->thread, NULL);
        else
            walking_thread(w);
        w->done = true;
    }
    return w->rc == FERRY_OK ? FERRY_OK : err_set(err, w->err.code, "%s", w->err.msg);
}

int archive_create(struct repo *r, const struct archive_options *o, struct snapshot *out,
                   struct err *err)
{
    struct walker walker = {0};
    struct run run = {.repo = r, .o = o, .snap = out};
    pthread_mutex_init(&run.lock, NULL);
    struct snapshot *list = NULL;
    size_t n = 0;
    struct stat st;
    char source[PATH_MAX];
    int rc = FERRY_ERR;
    memset(out, 0, sizeof(*out));
    pack_index_init(&run.ix);
    if (!realpath(o->source, source) || stat(source, &st) != 0 || !S_ISDIR(st.st_mode)) {
        err_set(err, ERR_INVALID, "the source %s is not a folder", o->source);
        goto out;
    }
    if (repo_lock(r, true, REPO_LOCK_WAIT_MS, err) != FERRY_OK ||
        start_walk(&walker, &run, source, err) != FERRY_OK ||
        check_remove_leftovers(r, NULL, err) != FERRY_OK ||
        pack_index_load(r->path, r->key, &run.ix, NULL, NULL, err) != FERRY_OK ||
        snapshot_list(r->path, r->key, &list, &n, err) != FERRY_OK ||
        prepare(&run, source, list, n, err) != FERRY_OK || finish_walk(&walker, err) != FERRY_OK)
        goto out;
    run.writer = pack_writer_new(r->path, r->key, NULL);
    if (store_files(&run, err) != FERRY_OK || pack_writer_flush(run.writer, err) != FERRY_OK)
        goto out;
    CRASH_AT("backup_create_before_snapshot"); /* chunks stored, no version yet */
    rc = snapshot_save(r->path, r->key, out, err);
out:
    if (walker.started && !walker.done) /* failed meanwhile: the walk ends before the frees */
        pthread_join(walker.thread, NULL);
    if (rc != FERRY_OK)
        snapshot_clear(out);
    pack_writer_free(run.writer);
    pack_index_cleanup(&run.ix);
    free(run.need_read);
    free(run.links.slots);
    snapshot_clear(&run.parent_snap);
    pthread_mutex_destroy(&run.lock);
    free(run.by_path);
    snapshot_list_free(list, n);
    repo_unlock(r);
    return rc;
}
