/* dirsync.c - see dirsync.h. The source is scanned first (for the totals that progress
 * is measured against), then walked in path order, copying what changed; the target is
 * scanned last when entries the source lacks are to be removed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "files/dirsync.h"
#include "util/buf.h"
#include "util/crashpoint.h"
#include "util/crypto.h"
#include "util/timeutil.h"

#define COPY_BUF (256 * 1024)
#define BATCH_FILES 256
#define BATCH_BYTES (256LL * 1024 * 1024)
/* Up to this many copies in a batch are flushed one by one (fdatasync); more, with one
 * syncfs, which also flushes whatever else on the file system is waiting, so it pays
 * only when the batch is large. */
#define FLUSH_EACH_MAX 64
/* A batch is also flushed once its first copy has waited this long: a copy counts in the
 * progress only once it is in place and on disk, so the progress stays this fresh. */
#define BATCH_AGE_US (100 * 1000)
#define TMP_PREFIX ".ferry-tmp-"
/* A temporary copy whose process is gone and that nobody wrote for this long was left by
 * a crash: the next sync removes it. (The age guards copies of another server sharing
 * the folder, whose process ids mean nothing here.) */
#define TMP_STALE_S 300
/* Files are copied by this many threads at once: per-file work is mostly system calls
 * on the file system's metadata, which run side by side (rsync, too, is three processes
 * in a pipeline). */
#define WORKERS 4
#define GROUP_MAX 256

enum kind { K_FILE, K_DIR, K_LINK };

struct entry {
    char *rel;
    enum kind kind;
    char *link_target; /* for a file reached through a link: the file's own path */
    int64_t size;
    struct timespec mtime;
    mode_t mode;
};

struct entries {
    struct entry *v;
    size_t n, cap;
};

struct pending { /* a finished copy waiting for the batch's syncfs and its rename */
    char *parent, *tmp, *base;
    int64_t size; /* the source's, for the progress */
    char sha[65]; /* the source's SHA-256 when verifying */
    int failed;   /* errno of a failed flush: not renamed */
};

/* What all workers share. Everything but the counters and the result's arrays is
 * read-only while they run; those two are guarded by lock. */
struct sync {
    const struct dirsync_options *o;
    struct dirsync_result *r;
    int src, dst; /* the two roots */
    const struct entries *files;
    /* Work is handed out by folder: group g is files[groups[g]] up to groups[g + 1], the
     * files of one folder (at most GROUP_MAX), so workers create files in different
     * folders and do not queue on one folder's lock. */
    size_t *groups, n_groups;
    atomic_size_t next; /* the next group a worker takes */
    atomic_int_fast64_t copied, unchanged, conflicts, bytes_copied, files_done, bytes_done;
    char **blocked; /* source folders the target has something else in place of */
    size_t n_blocked;
    char **unread; /* source folders that could not be read */
    size_t n_unread;
    pthread_mutex_t lock;
    struct dirsync_progress totals; /* files_total and bytes_total */
};

/* One copying thread's own state. */
struct worker {
    struct sync *s;
    int index;
    unsigned tmp_counter;
    struct pending *pend;
    size_t n_pend;
    int64_t pend_bytes;
    int64_t pend_since_us; /* when the batch's first copy was queued */
    char *cached_rel;      /* the target folder last opened, and its descriptor */
    int cached_fd;
    char *buf;
};

/* --- paths beneath a root ----------------------------------------------------------- */

/* Opens rel beneath root; symbolic links are followed only when links is true, and then
 * only while they stay beneath root. */
static int open_beneath(int root, const char *rel, int flags, bool links)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | (links ? 0 : RESOLVE_NO_SYMLINKS),
    };
    long fd;
    do
        fd = syscall(SYS_openat2, root, *rel ? rel : ".", &how, sizeof(how));
    while (fd < 0 && (errno == EINTR || errno == EAGAIN));
    return (int)fd;
}

static void add_error(struct sync *s, const char *rel, const char *what)
{
    char *text = xasprintf("%s: %s", *rel ? rel : ".", what);
    json_t *t = json_string(text);
    pthread_mutex_lock(&s->lock);
    json_array_append_new(s->r->errors, t ? t : json_string("(a path that is not UTF-8): error"));
    pthread_mutex_unlock(&s->lock);
    free(text);
}

static char *join(const char *dir, const char *name)
{
    return *dir ? xasprintf("%s/%s", dir, name) : xstrdup(name);
}

/* Splits rel into its folder (newly allocated, "" at the top) and its last name. */
static char *parent_of(const char *rel, const char **base)
{
    const char *slash = strrchr(rel, '/');
    *base = slash ? slash + 1 : rel;
    return slash ? xstrndup(rel, (size_t)(slash - rel)) : xstrdup("");
}

static bool excluded(const struct dirsync_options *o, const char *rel, const char *name)
{
    if (!strncmp(name, TMP_PREFIX, strlen(TMP_PREFIX)))
        return true; /* ferry's own unfinished copies */
    for (size_t i = 0; i < o->n_exclude; i++)
        if (fnmatch(o->exclude[i], name, 0) == 0 || fnmatch(o->exclude[i], rel, 0) == 0)
            return true;
    return false;
}

/* --- scanning ------------------------------------------------------------------------ */

static void push_entry(struct entries *l, struct entry e)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = e;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Where a link at rel (beneath root) leads, as a path beneath root_path, worked out
 * from the link's text: the target is made absolute (relative ones from the link's
 * folder), "." and ".." are collapsed, and what remains must lie under root_path. NULL
 * when it leads outside. Lexical on the link's own text; links further on are left to
 * openat2, which keeps them beneath the root too. */
static char *link_beneath(int root, const char *root_path, const char *rel)
{
    char target[PATH_MAX];
    const char *base;
    char *dir = parent_of(rel, &base);
    int dfd = open_beneath(root, dir, O_RDONLY | O_DIRECTORY, false);
    ssize_t n = dfd >= 0 ? readlinkat(dfd, base, target, sizeof(target) - 1) : -1;
    if (dfd >= 0)
        close(dfd);
    if (n <= 0) {
        free(dir);
        return NULL;
    }
    target[n] = '\0';
    char *joined =
        target[0] == '/' ? xstrdup(target) : xasprintf("%s/%s/%s", root_path, dir, target);
    free(dir);
    struct buf out;
    buf_init(&out);
    for (char *save = NULL, *seg = strtok_r(joined, "/", &save); seg;
         seg = strtok_r(NULL, "/", &save)) {
        if (!strcmp(seg, "."))
            continue;
        if (!strcmp(seg, "..")) {
            char *slash = out.len ? memrchr(out.data, '/', out.len) : NULL;
            out.len = slash ? (size_t)(slash - out.data) : 0;
            continue;
        }
        buf_printf(&out, "/%s", seg);
    }
    free(joined);
    buf_append(&out, "", 1); /* NUL-terminates */
    size_t rl = strlen(root_path);
    char *result = NULL;
    if (!strncmp(out.data, root_path, rl) && out.data[rl] == '/' && out.data[rl + 1])
        result = xstrdup(out.data + rl + 1);
    buf_cleanup(&out);
    return result;
}

/* A symbolic link in the source counts as the file it leads to, when that is a file
 * beneath the source (followed with openat2, so no further link may lead out either);
 * anything else is reported and left out. */
static bool follow_link(struct sync *s, int root, const char *rel, struct entry *e)
{
    struct stat st;
    char *inside = link_beneath(root, s->o->source, rel);
    int fd = inside ? open_beneath(root, inside, O_RDONLY | O_NONBLOCK, true) : -1;
    if (fd < 0) {
        add_error(s, rel,
                  !inside || errno == EXDEV
                      ? "symbolic link leads outside the source folder; not followed"
                      : "symbolic link cannot be followed");
        free(inside);
        return false;
    }
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    close(fd);
    if (!ok) {
        add_error(s, rel, "symbolic link to something other than a file; not followed");
        free(inside);
        return false;
    }
    e->kind = K_FILE;
    e->link_target = inside;
    e->size = st.st_size;
    e->mtime = st.st_mtim;
    e->mode = st.st_mode;
    return true;
}

/* Adds everything under folder dir_rel (depth first, names in order) to out. With
 * is_source, links are followed as follow_link says; otherwise they are entries. */
static void scan(struct sync *s, int root, const char *dir_rel, bool is_source, struct entries *out)
{
    int fd = open_beneath(root, dir_rel, O_RDONLY | O_DIRECTORY, false);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    if (!d) {
        add_error(s, dir_rel, strerror(errno));
        if (fd >= 0)
            close(fd);
        if (is_source) { /* what it holds is unknown: nothing under it may be deleted */
            pthread_mutex_lock(&s->lock);
            s->unread = xrealloc(s->unread, (s->n_unread + 1) * sizeof(*s->unread));
            s->unread[s->n_unread++] = xstrdup(dir_rel);
            pthread_mutex_unlock(&s->lock);
        }
        return;
    }
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        names = xrealloc(names, (n + 1) * sizeof(*names));
        names[n++] = xstrdup(de->d_name);
    }
    if (n)
        qsort(names, n, sizeof(*names), cmp_name);
    size_t first = out->n;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        char *rel = join(dir_rel, names[i]);
        struct entry e = {.rel = rel};
        bool keep = !excluded(s->o, rel, names[i]) &&
                    fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (keep && S_ISLNK(st.st_mode))
            keep = is_source ? follow_link(s, root, rel, &e) : (e.kind = K_LINK, true);
        else if (keep && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
            e = (struct entry){rel,        S_ISDIR(st.st_mode) ? K_DIR : K_FILE,
                               NULL,       st.st_size,
                               st.st_mtim, st.st_mode};
        else if (keep && is_source)
            add_error(s, rel, "not a regular file or folder; skipped"), keep = false;
        if (keep)
            push_entry(out, e);
        else
            free(rel);
        free(names[i]);
    }
    free(names);
    closedir(d);
    size_t last = out->n; /* recursing appends: walk by index */
    for (size_t i = first; i < last; i++)
        if (out->v[i].kind == K_DIR) {
            char *rel = xstrdup(out->v[i].rel);
            scan(s, root, rel, is_source, out);
            free(rel);
        }
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->rel, ((const struct entry *)b)->rel);
}

static void free_entries(struct entries *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].rel);
        free(l->v[i].link_target);
    }
    free(l->v);
}

/* --- the target side ------------------------------------------------------------------ */

/* The target folder rel, opened (cached: files of one folder come together). */
static int target_dir(struct worker *w, const char *rel)
{
    if (w->cached_rel && !strcmp(w->cached_rel, rel))
        return w->cached_fd;
    if (w->cached_fd >= 0)
        close(w->cached_fd);
    free(w->cached_rel);
    w->cached_rel = xstrdup(rel);
    w->cached_fd = open_beneath(w->s->dst, rel, O_RDONLY | O_DIRECTORY, false);
    return w->cached_fd;
}

/* SHA-256 of an open file from its start. */
static int hash_fd(int fd, char *buf, char hex[65])
{
    EVP_MD_CTX *md = crypto_digest_new(EVP_sha256());
    ssize_t n;
    off_t off = 0;
    while ((n = pread(fd, buf, COPY_BUF, off)) > 0) {
        EVP_DigestUpdate(md, buf, (size_t)n);
        off += n;
    }
    crypto_sha256_final_hex(md, hex);
    EVP_MD_CTX_free(md);
    return n < 0 ? -1 : 0;
}

/* Writes the batch's copies to disk; a copy that could not be flushed is marked
 * (failed) and is not renamed into place. */
static void flush_data(struct worker *w)
{
    if (w->n_pend > FLUSH_EACH_MAX) {
        if (syncfs(w->s->dst) != 0)
            for (size_t i = 0; i < w->n_pend; i++)
                w->pend[i].failed = errno;
        return;
    }
    for (size_t i = 0; i < w->n_pend; i++) {
        int dir = target_dir(w, w->pend[i].parent);
        int fd = dir >= 0 ? openat(dir, w->pend[i].tmp, O_WRONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
        if (fd < 0 || fdatasync(fd) != 0)
            w->pend[i].failed = errno ? errno : EIO;
        if (fd >= 0)
            close(fd);
    }
}

/* Counts a file as done in the progress, which a session stores and reports: only once
 * it is settled (in place and on disk, found unchanged, or given up with an error), so
 * that no count reported survives a crash or a restart that the target does not. */
static void settled(struct sync *s, int64_t size)
{
    atomic_fetch_add(&s->files_done, 1);
    atomic_fetch_add(&s->bytes_done, size);
}

/* Writes the batch's renames to disk (the folders that hold them), before the copies
 * count in the progress. The files of a batch come by folder, so this is a few fsyncs,
 * or one syncfs for a large batch, as for the data. */
static void flush_renames(struct worker *w)
{
    if (w->n_pend > FLUSH_EACH_MAX) {
        syncfs(w->s->dst);
        return;
    }
    for (size_t i = 0; i < w->n_pend; i++) {
        if (i > 0 && !strcmp(w->pend[i].parent, w->pend[i - 1].parent))
            continue;
        int dir = target_dir(w, w->pend[i].parent);
        if (dir >= 0)
            fsync(dir);
    }
}

/* Renames the batch's copies into place once their bytes are on disk, so that a crash
 * leaves the old file or the new one, never a torn one; then flushes the renames, so
 * that a copy counted as done stays done. */
static void flush_batch(struct worker *w)
{
    struct sync *s = w->s;
    if (!w->n_pend)
        return;
    flush_data(w);
    for (size_t i = 0; i < w->n_pend; i++) {
        struct pending *p = &w->pend[i];
        int dir = target_dir(w, p->parent);
        char *rel = join(p->parent, p->base), got[65];
        bool ok = dir >= 0 && !p->failed;
        if (p->failed)
            add_error(s, rel, strerror(p->failed));
        if (ok && p->sha[0]) { /* verifyIntegrity: read the copy back */
            int fd = openat(dir, p->tmp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            ok = fd >= 0 && hash_fd(fd, w->buf, got) == 0 && !strcmp(got, p->sha);
            if (fd >= 0)
                close(fd);
            if (!ok)
                add_error(s, rel, "the copy's SHA-256 differs from the source's; not kept");
        }
        CRASH_AT("dirsync.before_rename");
        if (ok && renameat(dir, p->tmp, dir, p->base) != 0) {
            add_error(s, rel, strerror(errno));
            ok = false;
        }
        CRASH_AT("dirsync.after_rename"); /* in place, not yet counted in the progress */
        if (ok)
            atomic_fetch_add(&s->copied, 1);
        else if (dir >= 0)
            unlinkat(dir, p->tmp, 0);
        free(rel);
    }
    flush_renames(w);
    for (size_t i = 0; i < w->n_pend; i++) {
        settled(s, w->pend[i].size);
        free(w->pend[i].parent);
        free(w->pend[i].tmp);
        free(w->pend[i].base);
    }
    w->n_pend = 0;
    w->pend_bytes = 0;
}

/* Copies src_fd's bytes to out_fd; the source hash goes to sha when asked. Returns the
 * bytes copied, or -1 with errno. */
static int64_t copy_bytes(struct worker *w, int src_fd, int out_fd, char *sha)
{
    int64_t total = 0;
    ssize_t n;
    const atomic_bool *stop = w->s->o->stop;
    if (!sha) { /* the kernel copies (and may share extents) without a trip through here */
        while ((n = copy_file_range(src_fd, NULL, out_fd, NULL, 64 << 20, 0)) > 0) {
            total += n;
            if (stop && atomic_load(stop)) {
                errno = EINTR;
                return -1;
            }
        }
        if (n == 0)
            return total;
        if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
            return -1;
    }
    EVP_MD_CTX *md = sha ? crypto_digest_new(EVP_sha256()) : NULL;
    while ((n = read(src_fd, w->buf, COPY_BUF)) > 0) {
        if (stop && atomic_load(stop)) {
            EVP_MD_CTX_free(md);
            errno = EINTR;
            return -1;
        }
        if (md)
            EVP_DigestUpdate(md, w->buf, (size_t)n);
        for (ssize_t done = 0; done < n;) {
            ssize_t k = write(out_fd, w->buf + done, (size_t)(n - done));
            if (k < 0) {
                EVP_MD_CTX_free(md);
                return -1;
            }
            done += k;
        }
        total += n;
    }
    if (md) {
        crypto_sha256_final_hex(md, sha);
        EVP_MD_CTX_free(md);
    }
    return n < 0 ? -1 : total;
}

static bool same_stat(const struct stat *a, const struct stat *b)
{
    return a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
           a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Opens a source file; something swapped in for it since the scan that is not a
 * regular file (a FIFO would block the copy) is refused with EINVAL. */
static int open_source(const struct sync *s, const struct entry *e)
{
    struct stat st;
    int fd = e->link_target ? open_beneath(s->src, e->link_target, O_RDONLY | O_NONBLOCK, true)
                            : open_beneath(s->src, e->rel, O_RDONLY | O_NONBLOCK, false);
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    return fd;
}

/* A new temporary file in dir: named by process, worker and a counter, created with
 * O_EXCL (a name in use, by another server say, is skipped). */
static int open_tmp(struct worker *w, int dir, char tmp[64])
{
    for (int tries = 0; tries < 100; tries++) {
        snprintf(tmp, 64, TMP_PREFIX "%d-%d-%u", (int)getpid(), w->index, w->tmp_counter++);
        int fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

/* What became of one source file: settled now (unchanged, a conflict, or an error),
 * queued in the batch (settled when the batch is flushed), or cut short by a stop (not
 * done: the next run copies it). */
enum outcome { SETTLED, QUEUED, INTERRUPTED };

/* Copies one source file into a temporary file in its target folder and queues it. */
static enum outcome copy_file(struct worker *w, const struct entry *e, int dir, const char *parent,
                              const char *base)
{
    struct sync *s = w->s;
    struct stat before, after;
    char tmp[64];
    struct pending p = {.size = e->size};
    enum outcome res = SETTLED;
    int out = -1, in = open_source(s, e);
    if (in < 0 || fstat(in, &before) != 0) {
        add_error(s, e->rel, strerror(errno));
        goto out;
    }
    if ((out = open_tmp(w, dir, tmp)) < 0) {
        add_error(s, e->rel, strerror(errno));
        goto out;
    }
    int64_t n = copy_bytes(w, in, out, s->o->verify ? p.sha : NULL);
    if (n < 0 && errno == EINTR && s->o->stop && atomic_load(s->o->stop)) {
        res = INTERRUPTED;
    } else if (n < 0) {
        add_error(s, e->rel, strerror(errno));
    } else if (fstat(in, &after) != 0 || !same_stat(&before, &after) || n != before.st_size) {
        add_error(s, e->rel, "changed while it was copied; not copied (sync again)");
    } else {
        struct timespec times[2] = {before.st_atim, before.st_mtim};
        fchmod(out, before.st_mode & 0777); /* never setuid/setgid: the owner is ferry */
        futimens(out, times);
        close(out);
        out = -1;
        p.parent = xstrdup(parent);
        p.tmp = xstrdup(tmp);
        p.base = xstrdup(base);
        if (!w->n_pend)
            w->pend_since_us = time_mono_us();
        w->pend = xrealloc(w->pend, (w->n_pend + 1) * sizeof(*w->pend));
        w->pend[w->n_pend++] = p;
        w->pend_bytes += n;
        atomic_fetch_add(&s->bytes_copied, n);
        res = QUEUED;
        goto out;
    }
    unlinkat(dir, tmp, 0);
out:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return res;
}

/* Whether the target file already holds the source's content. */
static bool unchanged(struct worker *w, const struct entry *e, int dir, const char *base,
                      const struct stat *t)
{
    if (!w->s->o->full_compare)
        return t->st_size == e->size && t->st_mtim.tv_sec == e->mtime.tv_sec &&
               t->st_mtim.tv_nsec == e->mtime.tv_nsec;
    if (t->st_size != e->size)
        return false;
    char a[65], b[65];
    int tf = openat(dir, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int sf = open_source(w->s, e);
    bool same = tf >= 0 && sf >= 0 && hash_fd(tf, w->buf, a) == 0 && hash_fd(sf, w->buf, b) == 0 &&
                !strcmp(a, b);
    if (tf >= 0)
        close(tf);
    if (sf >= 0)
        close(sf);
    return same;
}

static void conflict(struct sync *s, const char *rel, const char *why)
{
    atomic_fetch_add(&s->conflicts, 1);
    json_t *c = json_pack("{s:s, s:s}", "path", rel, "reason", why);
    pthread_mutex_lock(&s->lock);
    json_array_append_new(s->r->conflicts_at,
                          c ? c : json_pack("{s:s, s:s}", "path", "(not UTF-8)", "reason", why));
    pthread_mutex_unlock(&s->lock);
}

/* Whether rel lies under one of the folders in list (or is one, with or_same). */
static bool under_any(char *const *list, size_t n_list, const char *rel, bool or_same)
{
    for (size_t i = 0; i < n_list; i++) {
        size_t n = strlen(list[i]);
        if (n == 0 || (!strncmp(rel, list[i], n) && (rel[n] == '/' || (or_same && !rel[n]))))
            return true;
    }
    return false;
}

static bool is_blocked(const struct sync *s, const char *rel)
{
    return under_any(s->blocked, s->n_blocked, rel, false);
}

/* Removes the temporary copies a killed sync left in the target folder dir (see
 * TMP_STALE_S); they are never scanned, so nothing else would. */
static void sweep_tmp(int dir)
{
    int fd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    time_t now = time(NULL);
    while ((de = readdir(d))) {
        char *end;
        struct stat st;
        if (strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) != 0)
            continue;
        long pid = strtol(de->d_name + strlen(TMP_PREFIX), &end, 10);
        if (pid <= 0 || *end != '-' || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 ||
            errno != ESRCH)
            continue; /* not ours to judge, or its process still runs */
        if (fstatat(dir, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            now - st.st_mtime >= TMP_STALE_S)
            unlinkat(dir, de->d_name, 0);
    }
    closedir(d);
}

/* Makes the target's folders, in path order (parents first), before any file is
 * copied; a folder the target has a file or link in place of blocks its subtree.
 * Existing folders are swept of a killed sync's temporary copies on the way. */
static void make_folders(struct worker *w, const struct entries *src)
{
    struct sync *s = w->s;
    sweep_tmp(s->dst);
    for (size_t i = 0; i < src->n; i++) {
        const struct entry *e = &src->v[i];
        if (e->kind != K_DIR || is_blocked(s, e->rel))
            continue;
        const char *base;
        char *parent = parent_of(e->rel, &base);
        struct stat t;
        int dir = target_dir(w, parent);
        if (dir < 0) {
            add_error(s, e->rel, "its target folder cannot be opened");
        } else if (fstatat(dir, base, &t, AT_SYMLINK_NOFOLLOW) != 0) {
            if (mkdirat(dir, base, (e->mode & 0777) | 0700) != 0)
                add_error(s, e->rel, strerror(errno));
        } else if (S_ISDIR(t.st_mode)) {
            int sub = target_dir(w, e->rel);
            if (sub >= 0)
                sweep_tmp(sub);
        } else {
            conflict(s, e->rel, "the target has a file or link where the source has a folder");
            s->blocked = xrealloc(s->blocked, (s->n_blocked + 1) * sizeof(*s->blocked));
            s->blocked[s->n_blocked++] = xstrdup(e->rel);
        }
        free(parent);
    }
}

static enum outcome sync_file(struct worker *w, const struct entry *e)
{
    struct sync *s = w->s;
    enum outcome res = SETTLED;
    const char *base;
    char *parent = parent_of(e->rel, &base);
    struct stat t;
    int dir = target_dir(w, parent);
    bool exists = dir >= 0 && fstatat(dir, base, &t, AT_SYMLINK_NOFOLLOW) == 0;

    if (dir < 0) {
        add_error(s, e->rel, "its target folder cannot be opened");
    } else if (exists && !S_ISREG(t.st_mode)) {
        conflict(s, e->rel, "the target has a folder or link where the source has a file");
    } else if (exists && unchanged(w, e, dir, base, &t)) {
        atomic_fetch_add(&s->unchanged, 1);
    } else if (exists &&
               (t.st_mtim.tv_sec > e->mtime.tv_sec ||
                (t.st_mtim.tv_sec == e->mtime.tv_sec && t.st_mtim.tv_nsec > e->mtime.tv_nsec))) {
        conflict(s, e->rel, "the target is newer than the source");
    } else {
        res = copy_file(w, e, dir, parent, base);
    }
    free(parent);
    return res;
}

static void worker_init(struct worker *w, struct sync *s, int index)
{
    memset(w, 0, sizeof(*w));
    w->s = s;
    w->index = index;
    w->cached_fd = -1;
    w->buf = xmalloc(COPY_BUF);
}

static void worker_cleanup(struct worker *w)
{
    free(w->pend);
    free(w->cached_rel);
    free(w->buf);
    if (w->cached_fd >= 0)
        close(w->cached_fd);
}

static void report(struct sync *s)
{
    struct dirsync_progress p = s->totals;
    p.files_done = atomic_load(&s->files_done);
    p.bytes_done = atomic_load(&s->bytes_done);
    s->o->progress(s->o->ctx, &p);
}

/* Splits the sorted entries into groups by folder (see struct sync). */
static void make_groups(struct sync *s, const struct entries *src)
{
    s->groups = xmalloc((src->n + 1) * sizeof(*s->groups));
    s->n_groups = 0;
    size_t start = 0;
    for (size_t i = 0; i <= src->n; i++) {
        const char *a = i < src->n ? strrchr(src->v[i].rel, '/') : NULL;
        const char *b = i > start ? strrchr(src->v[i - 1].rel, '/') : NULL;
        size_t la = a ? (size_t)(a - src->v[i].rel) : 0;
        size_t lb = b ? (size_t)(b - src->v[i - 1].rel) : 0;
        bool same =
            i < src->n && i > start && la == lb && !strncmp(src->v[i].rel, src->v[i - 1].rel, la);
        if (i > start && (!same || i - start >= GROUP_MAX)) {
            s->groups[s->n_groups++] = start;
            start = i;
        }
    }
    s->groups[s->n_groups] = src->n;
}

/* Takes groups of files off the shared list until none is left. The first worker (the caller's
 * thread) also reports progress, so the callback runs on one thread only. */
static void *work(void *arg)
{
    struct worker *w = arg;
    struct sync *s = w->s;
    for (;;) {
        size_t g = atomic_fetch_add(&s->next, 1);
        if (g >= s->n_groups || (s->o->stop && atomic_load(s->o->stop)))
            break;
        for (size_t i = s->groups[g]; i < s->groups[g + 1]; i++) {
            const struct entry *e = &s->files->v[i];
            if (s->o->stop && atomic_load(s->o->stop))
                break; /* the rest of the group stays for the next run */
            if (e->kind != K_FILE || is_blocked(s, e->rel))
                continue;
            if (sync_file(w, e) == SETTLED)
                settled(s, e->size);
            if (w->n_pend >= BATCH_FILES || w->pend_bytes >= BATCH_BYTES ||
                (w->n_pend && time_mono_us() - w->pend_since_us >= BATCH_AGE_US))
                flush_batch(w);
            if (w->index == 0 && s->o->progress)
                report(s);
        }
    }
    flush_batch(w);
    return NULL;
}

/* Removes target entries that the source lacks, children before their folder. */
static void delete_missing(struct worker *w, const struct entries *src, int64_t *deleted)
{
    struct sync *s = w->s;
    struct entries dst = {0};
    scan(s, s->dst, "", false, &dst);
    if (dst.n)
        qsort(dst.v, dst.n, sizeof(*dst.v), cmp_entry);
    for (size_t i = dst.n; i-- > 0;) {
        const struct entry *e = &dst.v[i];
        struct entry key = {.rel = e->rel};
        if (src->n && bsearch(&key, src->v, src->n, sizeof(*src->v), cmp_entry))
            continue;
        if (under_any(s->unread, s->n_unread, e->rel, true))
            continue; /* its source folder could not be read: not known to be gone */
        const char *base;
        char *parent = parent_of(e->rel, &base);
        int dir = target_dir(w, parent);
        if (dir < 0 || unlinkat(dir, base, e->kind == K_DIR ? AT_REMOVEDIR : 0) != 0)
            add_error(s, e->rel, strerror(errno));
        else
            (*deleted)++;
        free(parent);
    }
    free_entries(&dst);
}

/* Opens folder path (absolute, resolved) beneath root (the configured file root that
 * holds it) without following any link on the way, so that a component swapped for a
 * link since the path was checked cannot lead out. With create, a missing last
 * component is made (its parent must exist). */
static int open_under_root(const char *root, const char *path, bool create)
{
    int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC), fd = -1, e = 0;
    const char *rel = path + strlen(root);
    if (rfd < 0)
        return -1;
    while (*rel == '/')
        rel++;
    if (create && *rel) {
        const char *base;
        char *parent = parent_of(rel, &base);
        int pfd = open_beneath(rfd, parent, O_RDONLY | O_DIRECTORY, false);
        if (pfd >= 0 && mkdirat(pfd, base, 0700) != 0 && errno != EEXIST)
            e = errno;
        if (pfd < 0)
            e = errno;
        if (pfd >= 0)
            close(pfd);
        free(parent);
    }
    if (!e && (fd = open_beneath(rfd, rel, O_RDONLY | O_DIRECTORY, false)) < 0)
        e = errno;
    close(rfd);
    errno = e;
    return fd;
}

int dirsync_run(const struct dirsync_options *o, struct dirsync_result *r, struct err *err)
{
    struct sync s = {.o = o, .r = r, .src = -1, .dst = -1};
    struct entries src = {0};
    struct worker w[WORKERS];
    pthread_t threads[WORKERS];
    int started = 1;
    memset(r, 0, sizeof(*r));
    s.src = open_under_root(o->source_root, o->source, false);
    if (s.src < 0)
        return err_set(err, errno == ENOENT ? ERR_NOT_FOUND : ERR_INVALID,
                       "source folder %s cannot be opened: %s", o->source, strerror(errno));
    s.dst = open_under_root(o->target_root, o->target, true);
    if (s.dst < 0) {
        close(s.src);
        return err_set(err, ERR_INVALID, "target folder %s cannot be created or opened: %s",
                       o->target, strerror(errno));
    }
    r->errors = json_array();
    r->conflicts_at = json_array();
    pthread_mutex_init(&s.lock, NULL);
    scan(&s, s.src, "", true, &src);
    if (src.n)
        qsort(src.v, src.n, sizeof(*src.v), cmp_entry);
    for (size_t i = 0; i < src.n; i++)
        if (src.v[i].kind == K_FILE) {
            s.totals.files_total++;
            s.totals.bytes_total += src.v[i].size;
        }
    s.files = &src;
    make_groups(&s, &src);
    for (int i = 0; i < WORKERS; i++)
        worker_init(&w[i], &s, i);
    make_folders(&w[0], &src);
    for (int i = 1; i < WORKERS; i++)
        if (pthread_create(&threads[i], NULL, work, &w[i]) == 0)
            started = i + 1;
        else
            break; /* fewer threads: the others share the work */
    work(&w[0]);
    for (int i = 1; i < started; i++)
        pthread_join(threads[i], NULL);
    if (o->stop && atomic_load(o->stop))
        add_error(&s, "", "interrupted: the server is stopping");
    if (o->progress) /* all that is counted is settled: also true when stopped */
        report(&s);
    if (o->delete_missing && !(o->stop && atomic_load(o->stop)))
        delete_missing(&w[0], &src, &r->deleted);
    r->copied = atomic_load(&s.copied);
    r->unchanged = atomic_load(&s.unchanged);
    r->conflicts = atomic_load(&s.conflicts);
    r->bytes_copied = atomic_load(&s.bytes_copied);
    for (int i = 0; i < WORKERS; i++)
        worker_cleanup(&w[i]);
    for (size_t i = 0; i < s.n_blocked; i++)
        free(s.blocked[i]);
    free(s.blocked);
    for (size_t i = 0; i < s.n_unread; i++)
        free(s.unread[i]);
    free(s.unread);
    free_entries(&src);
    free(s.groups);
    pthread_mutex_destroy(&s.lock);
    close(s.src);
    close(s.dst);
    return FERRY_OK;
}
