/* dirsync.c - see dirsync.h. The source is scanned first (for the totals that progress
 * is measured against), then walked in path order, copying what changed; the target is
 * scanned last when entries the source lacks are to be removed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "engine/dirsync.h"
#include "util/crypto.h"

#define COPY_BUF (256 * 1024)
#define BATCH_FILES 1024
#define BATCH_BYTES (256LL * 1024 * 1024)
/* Up to this many copies in a batch are flushed one by one (fdatasync); more, with one
 * syncfs, which also flushes whatever else on the file system is waiting, so it pays
 * only when the batch is large. */
#define FLUSH_EACH_MAX 64
#define TMP_PREFIX ".ferry-tmp-"

enum kind { K_FILE, K_DIR, K_LINK };

struct entry {
    char *rel;
    enum kind kind;
    bool via_link; /* a file reached through a symbolic link inside the source */
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
    char sha[65]; /* the source's SHA-256 when verifying */
};

struct sync {
    const struct dirsync_options *o;
    struct dirsync_result *r;
    int src, dst; /* the two roots */
    struct pending *pend;
    size_t n_pend;
    int64_t pend_bytes;
    char *cached_rel; /* the target folder last opened, and its descriptor */
    int cached_fd;
    struct dirsync_progress prog;
    char *blocked; /* a source folder the target has a file in place of */
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
    json_array_append_new(s->r->errors, t ? t : json_string("(a path that is not UTF-8): error"));
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

/* A symbolic link in the source counts as the file it leads to, when that is a file
 * beneath the source; anything else is reported and left out. */
static bool follow_link(struct sync *s, int root, const char *rel, struct entry *e)
{
    struct stat st;
    int fd = open_beneath(root, rel, O_RDONLY | O_NONBLOCK, true);
    if (fd < 0) {
        add_error(s, rel, errno == EXDEV ? "symbolic link leads outside the source folder; "
                                           "not followed"
                                         : "symbolic link cannot be followed");
        return false;
    }
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    close(fd);
    if (!ok) {
        add_error(s, rel, "symbolic link to something other than a file; not followed");
        return false;
    }
    e->kind = K_FILE;
    e->via_link = true;
    e->size = st.st_size;
    e->mtime = st.st_mtim;
    e->mode = st.st_mode;
    return true;
}

/* Adds everything under folder dir_rel (depth first, names in order) to out. With
 * is_source, links are followed as follow_link says; otherwise they are entries. */
static void scan(struct sync *s, int root, const char *dir_rel, bool is_source,
                 struct entries *out)
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
        return;
    }
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        names = xrealloc(names, (n + 1) * sizeof(*names));
        names[n++] = xstrdup(de->d_name);
    }
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
            e = (struct entry){rel, S_ISDIR(st.st_mode) ? K_DIR : K_FILE, false, st.st_size,
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
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].rel);
    free(l->v);
}

/* --- the target side ------------------------------------------------------------------ */

/* The target folder rel, opened (cached: files of one folder come together). */
static int target_dir(struct sync *s, const char *rel)
{
    if (s->cached_rel && !strcmp(s->cached_rel, rel))
        return s->cached_fd;
    if (s->cached_fd >= 0)
        close(s->cached_fd);
    free(s->cached_rel);
    s->cached_rel = xstrdup(rel);
    s->cached_fd = open_beneath(s->dst, rel, O_RDONLY | O_DIRECTORY, false);
    return s->cached_fd;
}

static void hash_hex(EVP_MD_CTX *md, char hex[65])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(md, d, &len);
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

/* SHA-256 of an open file from its start. */
static int hash_fd(int fd, char *buf, char hex[65])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ssize_t n;
    off_t off = 0;
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        abort();
    while ((n = pread(fd, buf, COPY_BUF, off)) > 0) {
        EVP_DigestUpdate(md, buf, (size_t)n);
        off += n;
    }
    hash_hex(md, hex);
    EVP_MD_CTX_free(md);
    return n < 0 ? -1 : 0;
}

/* Writes the batch's copies to disk. */
static void flush_data(struct sync *s)
{
    if (s->n_pend > FLUSH_EACH_MAX) {
        syncfs(s->dst);
        return;
    }
    for (size_t i = 0; i < s->n_pend; i++) {
        int dir = target_dir(s, s->pend[i].parent);
        int fd = dir >= 0 ? openat(dir, s->pend[i].tmp, O_WRONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
        if (fd >= 0) {
            fdatasync(fd);
            close(fd);
        }
    }
}

/* Renames the batch's copies into place once their bytes are on disk, so that a crash
 * leaves the old file or the new one, never a torn one. The folders are not flushed
 * after the renames: a rename lost to a crash leaves the old file, which the next sync
 * copies again (rsync flushes nothing at all). */
static void flush_batch(struct sync *s)
{
    if (!s->n_pend)
        return;
    flush_data(s);
    for (size_t i = 0; i < s->n_pend; i++) {
        struct pending *p = &s->pend[i];
        int dir = target_dir(s, p->parent);
        char *rel = join(p->parent, p->base), got[65];
        bool ok = dir >= 0;
        if (ok && p->sha[0]) { /* verifyIntegrity: read the copy back */
            int fd = openat(dir, p->tmp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            ok = fd >= 0 && hash_fd(fd, s->buf, got) == 0 && !strcmp(got, p->sha);
            if (fd >= 0)
                close(fd);
            if (!ok)
                add_error(s, rel, "the copy's SHA-256 differs from the source's; not kept");
        }
        if (ok && renameat(dir, p->tmp, dir, p->base) != 0) {
            add_error(s, rel, strerror(errno));
            ok = false;
        }
        if (ok) {
            s->r->copied++;
        } else if (dir >= 0) {
            unlinkat(dir, p->tmp, 0);
        }
        free(rel);
        free(p->parent);
        free(p->tmp);
        free(p->base);
    }
    s->n_pend = 0;
    s->pend_bytes = 0;
}

/* Copies src_fd's bytes to out_fd; the source hash goes to sha when asked. Returns the
 * bytes copied, or -1 with errno. */
static int64_t copy_bytes(struct sync *s, int src_fd, int out_fd, char *sha)
{
    int64_t total = 0;
    ssize_t n;
    if (!sha) { /* the kernel copies (and may share extents) without a trip through here */
        while ((n = copy_file_range(src_fd, NULL, out_fd, NULL, 1 << 30, 0)) > 0)
            total += n;
        if (n == 0)
            return total;
        if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
            return -1;
    }
    EVP_MD_CTX *md = NULL;
    if (sha) {
        md = EVP_MD_CTX_new();
        if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
            abort();
    }
    while ((n = read(src_fd, s->buf, COPY_BUF)) > 0) {
        if (md)
            EVP_DigestUpdate(md, s->buf, (size_t)n);
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out_fd, s->buf + done, (size_t)(n - done));
            if (w < 0) {
                EVP_MD_CTX_free(md);
                return -1;
            }
            done += w;
        }
        total += n;
    }
    if (md) {
        hash_hex(md, sha);
        EVP_MD_CTX_free(md);
    }
    return n < 0 ? -1 : total;
}

static bool same_stat(const struct stat *a, const struct stat *b)
{
    return a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
           a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Copies one source file into a temporary file in its target folder and queues it. */
static void copy_file(struct sync *s, const struct entry *e, int dir, const char *parent,
                      const char *base)
{
    struct stat before, after;
    char tmp[48], rnd[17];
    struct pending p = {0};
    int out = -1, in = open_beneath(s->src, e->rel, O_RDONLY, e->via_link);
    if (in < 0 || fstat(in, &before) != 0) {
        add_error(s, e->rel, strerror(errno));
        goto out;
    }
    crypto_random_hex(rnd, 8);
    snprintf(tmp, sizeof(tmp), TMP_PREFIX "%s", rnd);
    out = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
        add_error(s, e->rel, strerror(errno));
        goto out;
    }
    int64_t n = copy_bytes(s, in, out, s->o->verify ? p.sha : NULL);
    if (n < 0) {
        add_error(s, e->rel, strerror(errno));
    } else if (fstat(in, &after) != 0 || !same_stat(&before, &after) || n != before.st_size) {
        add_error(s, e->rel, "changed while it was copied; not copied (sync again)");
    } else {
        struct timespec times[2] = {before.st_atim, before.st_mtim};
        fchmod(out, before.st_mode & 07777);
        futimens(out, times);
        sync_file_range(out, 0, 0, SYNC_FILE_RANGE_WRITE); /* start writing it out now */
        close(out);
        out = -1;
        p.parent = xstrdup(parent);
        p.tmp = xstrdup(tmp);
        p.base = xstrdup(base);
        s->pend = xrealloc(s->pend, (s->n_pend + 1) * sizeof(*s->pend));
        s->pend[s->n_pend++] = p;
        s->pend_bytes += n;
        s->r->bytes_copied += n;
        goto out;
    }
    unlinkat(dir, tmp, 0);
out:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
}

/* Whether the target file already holds the source's content. */
static bool unchanged(struct sync *s, const struct entry *e, int dir, const char *base,
                      const struct stat *t)
{
    if (!s->o->full_compare)
        return t->st_size == e->size && t->st_mtim.tv_sec == e->mtime.tv_sec &&
               t->st_mtim.tv_nsec == e->mtime.tv_nsec;
    if (t->st_size != e->size)
        return false;
    char a[65], b[65];
    int tf = openat(dir, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int sf = open_beneath(s->src, e->rel, O_RDONLY, e->via_link);
    bool same = tf >= 0 && sf >= 0 && hash_fd(tf, s->buf, a) == 0 &&
                hash_fd(sf, s->buf, b) == 0 && !strcmp(a, b);
    if (tf >= 0)
        close(tf);
    if (sf >= 0)
        close(sf);
    return same;
}

static bool is_blocked(const struct sync *s, const char *rel)
{
    size_t n = s->blocked ? strlen(s->blocked) : 0;
    return n && !strncmp(rel, s->blocked, n) && rel[n] == '/';
}

static void conflict(struct sync *s, const char *rel, const char *why)
{
    s->r->conflicts++;
    json_t *c = json_pack("{s:s, s:s}", "path", rel, "reason", why);
    json_array_append_new(s->r->conflicts_at,
                          c ? c : json_pack("{s:s, s:s}", "path", "(not UTF-8)", "reason", why));
}

static void sync_entry(struct sync *s, const struct entry *e)
{
    const char *base;
    char *parent = parent_of(e->rel, &base);
    struct stat t;
    int dir = target_dir(s, parent);
    bool exists = dir >= 0 && fstatat(dir, base, &t, AT_SYMLINK_NOFOLLOW) == 0;

    if (dir < 0) {
        add_error(s, e->rel, "its target folder cannot be opened");
    } else if (e->kind == K_DIR) {
        if (!exists && mkdirat(dir, base, (e->mode & 07777) | 0700) != 0)
            add_error(s, e->rel, strerror(errno));
        else if (exists && !S_ISDIR(t.st_mode)) {
            conflict(s, e->rel, "the target has a file or link where the source has a folder");
            free(s->blocked);
            s->blocked = xstrdup(e->rel);
        }
    } else if (exists && !S_ISREG(t.st_mode)) {
        conflict(s, e->rel, "the target has a folder or link where the source has a file");
    } else if (exists && unchanged(s, e, dir, base, &t)) {
        s->r->unchanged++;
    } else if (exists && (t.st_mtim.tv_sec > e->mtime.tv_sec ||
                          (t.st_mtim.tv_sec == e->mtime.tv_sec &&
                           t.st_mtim.tv_nsec > e->mtime.tv_nsec))) {
        conflict(s, e->rel, "the target is newer than the source");
    } else {
        copy_file(s, e, dir, parent, base);
    }
    free(parent);
}

/* Removes target entries that the source lacks, children before their folder. */
static void delete_missing(struct sync *s, const struct entries *src)
{
    struct entries dst = {0};
    scan(s, s->dst, "", false, &dst);
    qsort(dst.v, dst.n, sizeof(*dst.v), cmp_entry);
    for (size_t i = dst.n; i-- > 0;) {
        const struct entry *e = &dst.v[i];
        struct entry key = {.rel = e->rel};
        if (bsearch(&key, src->v, src->n, sizeof(*src->v), cmp_entry))
            continue;
        const char *base;
        char *parent = parent_of(e->rel, &base);
        int dir = target_dir(s, parent);
        if (dir < 0 || unlinkat(dir, base, e->kind == K_DIR ? AT_REMOVEDIR : 0) != 0)
            add_error(s, e->rel, strerror(errno));
        else
            s->r->deleted++;
        free(parent);
    }
    free_entries(&dst);
}

int dirsync_run(const struct dirsync_options *o, struct dirsync_result *r, struct err *err)
{
    struct sync s = {.o = o, .r = r, .src = -1, .dst = -1, .cached_fd = -1};
    struct entries src = {0};
    memset(r, 0, sizeof(*r));
    r->errors = json_array();
    r->conflicts_at = json_array();
    s.src = open(o->source, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s.src < 0)
        return err_set(err, errno == ENOENT ? ERR_NOT_FOUND : ERR_INVALID,
                       "source folder %s cannot be opened: %s", o->source, strerror(errno));
    if (mkdir(o->target, 0700) != 0 && errno != EEXIST) {
        close(s.src);
        return err_set(err, ERR_INVALID, "target folder %s cannot be created: %s", o->target,
                       strerror(errno));
    }
    s.dst = open(o->target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s.dst < 0) {
        close(s.src);
        return err_set(err, ERR_INVALID, "target folder %s cannot be opened: %s", o->target,
                       strerror(errno));
    }
    s.buf = xmalloc(COPY_BUF);
    scan(&s, s.src, "", true, &src);
    qsort(src.v, src.n, sizeof(*src.v), cmp_entry);
    for (size_t i = 0; i < src.n; i++)
        if (src.v[i].kind == K_FILE) {
            s.prog.files_total++;
            s.prog.bytes_total += src.v[i].size;
        }
    for (size_t i = 0; i < src.n; i++) {
        const struct entry *e = &src.v[i];
        if (o->stop && atomic_load(o->stop)) {
            add_error(&s, "", "interrupted: the server is stopping");
            break;
        }
        if (is_blocked(&s, e->rel))
            continue;
        sync_entry(&s, e);
        if (s.n_pend >= BATCH_FILES || s.pend_bytes >= BATCH_BYTES)
            flush_batch(&s);
        if (e->kind == K_FILE) {
            s.prog.files_done++;
            s.prog.bytes_done += e->size;
            if (o->progress)
                o->progress(o->ctx, &s.prog);
        }
    }
    flush_batch(&s);
    if (o->delete_missing && !(o->stop && atomic_load(o->stop)))
        delete_missing(&s, &src);
    free_entries(&src);
    free(s.pend);
    free(s.blocked);
    free(s.cached_rel);
    free(s.buf);
    if (s.cached_fd >= 0)
        close(s.cached_fd);
    close(s.src);
    close(s.dst);
    return FERRY_OK;
}
