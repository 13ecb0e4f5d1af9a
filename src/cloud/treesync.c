/* treesync.c - see treesync.h. Owns the walk of the folder, the listing of the prefix, the
 * per-pair records (ferry_cloudsync_entries) and the partial files of downloads. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloud/treesync.h"
#include "cloud/usage.h"
#include "util/crashpoint.h"
#include "util/crypto.h"
#include "util/path.h"

#define MAX_DEPTH 64
#define MAX_ENTRIES 1000000 /* files in one run, on either side */
#define PART_MARK ".ferry-part-"
#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#define HASH_BUF (256 * 1024)
#define SHA_META "sha256" /* the object metadata holding the file's SHA-256 */

struct entry {
    char *rel;
    uint64_t size;
    int64_t mtime_ns; /* local files */
    char *etag;       /* objects */
};

struct entries {
    struct entry *v;
    size_t n, cap;
};

struct run {
    struct store_conn *c;
    const struct treesync_options *o;
    struct treesync_result *r;
    char pair[33];
    int folder_fd;
    struct treesync_progress p;
    struct entries local, remote; /* each sorted by rel */
    bool too_many;
    bool scan_incomplete;    /* a folder of the walk could not be read: the list lacks files */
    const struct entry *cur; /* the file being transferred, for progress within it */
    int64_t cur_base;        /* bytes_done before it */
    uint64_t cur_moved;      /* its bytes moved so far (a resumed download's included) */
};

static void entries_free(struct entries *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].rel);
        free(l->v[i].etag);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static void push(struct run *s, struct entries *l, struct entry e)
{
    if (l->n == MAX_ENTRIES) {
        s->too_many = true;
        free(e.rel);
        free(e.etag);
        return;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = e;
}

static int cmp_rel(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->rel, ((const struct entry *)b)->rel);
}

static const struct entry *find(const struct entries *l, const char *rel)
{
    struct entry key = {.rel = (char *)rel};
    if (!l->n)
        return NULL;
    return bsearch(&key, l->v, l->n, sizeof(*l->v), cmp_rel);
}

static void add_error(struct run *s, const char *rel, const char *what)
{
    json_array_append_new(s->r->errors, json_sprintf("%s: %s", rel, what));
}

static bool excluded(const struct treesync_options *o, const char *rel)
{
    const char *slash = strrchr(rel, '/'), *name = slash ? slash + 1 : rel;
    for (size_t i = 0; i < o->n_exclude; i++)
        if (fnmatch(o->exclude[i], name, 0) == 0 || fnmatch(o->exclude[i], rel, 0) == 0)
            return true;
    return false;
}

static void report(struct run *s, const char *current)
{
    s->p.current = current;
    if (s->o->progress)
        s->o->progress(s->o->ctx, &s->p);
}

/* Bytes of the current file moved (up or down): status shows motion within a large file.
 * A part sent again after a failure counts again, so the count stops at the file's size. */
static void moved(void *ctx, uint64_t n)
{
    struct run *s = ctx;
    if (!s->cur)
        return;
    s->cur_moved += n;
    uint64_t upto = s->cur_moved < s->cur->size ? s->cur_moved : s->cur->size;
    s->p.bytes_done = s->cur_base + (int64_t)upto;
    report(s, s->cur->rel);
}

/* --- the pair's records ------------------------------------------------------------- */

struct record {
    bool found;
    uint64_t size;
    int64_t mtime_ns;
    char etag[130];
};

static int record_get(struct run *s, const char *rel, struct record *rec, struct err *err)
{
    struct store_val v[] = {sv_text(s->pair), sv_text(rel)};
    struct store_rows *rows = NULL;
    memset(rec, 0, sizeof(*rec));
    if (store_query(s->c,
                    "SELECT size, mtime_ns, etag FROM ferry_cloudsync_entries"
                    " WHERE pair_id = $1 AND path = $2",
                    v, 2, &rows, err) != FERRY_OK)
        return FERRY_ERR;
    int got = store_rows_next(rows, err);
    if (got == 1) {
        rec->found = true;
        rec->size = (uint64_t)store_rows_int(rows, 0);
        rec->mtime_ns = store_rows_int(rows, 1);
        snprintf(rec->etag, sizeof(rec->etag), "%s", store_rows_text(rows, 2));
    }
    store_rows_free(rows);
    return got < 0 ? FERRY_ERR : FERRY_OK;
}

static int record_put(struct run *s, const char *rel, const struct stat *st, const char *etag,
                      struct err *err)
{
    struct store_val v[] = {sv_text(s->pair), sv_text(rel), sv_int((int64_t)st->st_size),
                            sv_int((int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec),
                            sv_text(etag)};
    return store_run(s->c,
                     "INSERT INTO ferry_cloudsync_entries(pair_id, path, size, mtime_ns, etag)"
                     " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (pair_id, path) DO UPDATE SET"
                     " size = excluded.size, mtime_ns = excluded.mtime_ns, etag = excluded.etag",
                     v, 5, NULL, err);
}

static int record_drop(struct run *s, const char *rel, struct err *err)
{
    struct store_val v[] = {sv_text(s->pair), sv_text(rel)};
    return store_run(s->c, "DELETE FROM ferry_cloudsync_entries WHERE pair_id = $1 AND path = $2",
                     v, 2, NULL, err);
}

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* --- the two sides ------------------------------------------------------------------ */

/* Collects the regular files under dir_fd; links and special files are left out. */
static void scan(struct run *s, int dir_fd, const char *dir_rel, int depth)
{
    int fd = dup(dir_fd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;
    if (!d) {
        if (fd >= 0)
            close(fd);
        add_error(s, *dir_rel ? dir_rel : ".", "the folder cannot be read");
        s->scan_incomplete = true;
        return;
    }
    while ((de = readdir(d)) && !s->too_many) {
        struct stat st;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
            strstr(de->d_name, PART_MARK) || fstatat(dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW))
            continue;
        char *rel = *dir_rel ? xasprintf("%s/%s", dir_rel, de->d_name) : xstrdup(de->d_name);
        if (excluded(s->o, rel) || (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))) {
            free(rel);
        } else if (S_ISDIR(st.st_mode)) {
            int sub = depth < MAX_DEPTH ? openat(dir_fd, de->d_name, DIR_FLAGS) : -1;
            if (sub >= 0) {
                scan(s, sub, rel, depth + 1);
                close(sub);
            } else {
                add_error(s, rel, "the folder cannot be opened (too deep, or a link)");
                s->scan_incomplete = true;
            }
            free(rel);
        } else {
            push(s, &s->local, (struct entry){rel, (uint64_t)st.st_size, mtime_ns(&st), NULL});
        }
    }
    closedir(d);
}

static int add_object(void *ctx, const struct cloud_object *o)
{
    struct run *s = ctx;
    const char *rel = o->key + strlen(s->o->prefix);
    char *clean = NULL;
    if (!*rel || rel[strlen(rel) - 1] == '/') /* a folder marker, not a file */
        return FERRY_OK;
    if (path_clean_relative(rel, &clean, NULL) != FERRY_OK || strcmp(clean, rel) != 0) {
        if (!s->o->upload)
            add_error(s, rel, "not a safe relative path: not downloaded");
        free(clean);
        return FERRY_OK;
    }
    if (!s->o->upload && excluded(s->o, clean)) {
        free(clean);
        return FERRY_OK;
    }
    push(s, &s->remote,
         (struct entry){clean, o->size, o->modified_ms * 1000000, xstrdup(o->etag ? o->etag : "")});
    return s->too_many ? FERRY_ERR : FERRY_OK;
}

/* Opens the folder holding rel beneath root_fd, one component at a time, without
 * following links; create makes the missing ones. *base is rel's last component. */
static int open_parent(int root_fd, const char *rel, bool create, const char **base)
{
    char *copy = xstrdup(rel), *save = NULL, *next;
    int fd = dup(root_fd);
    const char *slash = strrchr(rel, '/');
    *base = slash ? slash + 1 : rel;
    if (slash)
        copy[slash - rel] = '\0';
    for (char *part = slash ? strtok_r(copy, "/", &save) : NULL; part && fd >= 0; part = next) {
        next = strtok_r(NULL, "/", &save);
        if (create)
            (void)mkdirat(fd, part, 0755); /* EEXIST is fine; openat tells the rest */
        int sub = openat(fd, part, DIR_FLAGS);
        close(fd);
        fd = sub;
    }
    free(copy);
    return fd;
}

/* A provider's failure (or the server stopping) ends the run; anything else is the file's. */
static bool fatal(const struct err *err)
{
    return err->code == ERR_CLOUD || err->code == ERR_UNAVAILABLE || err->code == ERR_DATABASE;
}

/* --- integrity --------------------------------------------------------------------- */

/* SHA-256 of the whole of fd, read with pread (its offset stays where it was). */
static int hash_fd(int fd, char out[65])
{
    EVP_MD_CTX *md = crypto_digest_new(EVP_sha256());
    char *buf = xmalloc(HASH_BUF);
    off_t at = 0;
    ssize_t n;
    while ((n = pread(fd, buf, HASH_BUF, at)) > 0)
        at += n, EVP_DigestUpdate(md, buf, (size_t)n);
    crypto_sha256_final_hex(md, out);
    EVP_MD_CTX_free(md);
    free(buf);
    return n < 0 ? FERRY_ERR : FERRY_OK;
}

static int hash_bytes(void *ctx, const void *data, size_t len)
{
    return EVP_DigestUpdate(ctx, data, len) == 1 ? FERRY_OK : FERRY_ERR;
}

/* Checks an upload by reading the object back and hashing what the provider returns. Not
 * what the provider reports: an S3 multipart etag and any Azure etag are no hash of the
 * content, and the "sha256" metadata is only what ferry itself sent, so reading the bytes
 * is the one check of what is stored that holds for every provider (at the cost of a
 * second transfer of the file). */
static int read_back(struct run *s, const char *key, const char *want, struct err *err)
{
    char got[65];
    EVP_MD_CTX *md = crypto_digest_new(EVP_sha256());
    int rc = cloud_get(s->o->cloud, key, NULL, NULL, hash_bytes, md, err);
    crypto_sha256_final_hex(md, got);
    EVP_MD_CTX_free(md);
    if (rc == FERRY_OK && strcmp(got, want) != 0)
        rc = err_set(err, ERR_INTERNAL,
                     "integrity check failed: the stored object's SHA-256 is %s, the file's %s",
                     got, want);
    return rc;
}

/* The SHA-256 an object was uploaded with (its "sha256" metadata) into want. */
static int recorded_sha(struct run *s, const char *key, char want[65], struct err *err)
{
    struct cloud_object head;
    if (cloud_head(s->o->cloud, key, &head, err) != FERRY_OK)
        return FERRY_ERR;
    const char *v = json_string_value(json_object_get(head.metadata, SHA_META));
    int rc = v && strlen(v) == 64
                 ? FERRY_OK
                 : err_set(err, ERR_INTERNAL,
                           "cannot be verified: the object carries no SHA-256 (metadata '" SHA_META
                           "', which ferry's uploads record); not downloaded");
    if (rc == FERRY_OK)
        memcpy(want, v, 65);
    cloud_object_cleanup(&head);
    return rc;
}

/* --- upload ------------------------------------------------------------------------- */

static bool upload_unchanged(struct run *s, const struct entry *e, struct err *err, int *rc)
{
    struct record rec;
    const struct entry *obj = find(&s->remote, e->rel);
    *rc = record_get(s, e->rel, &rec, err);
    return *rc == FERRY_OK && rec.found && rec.size == e->size && rec.mtime_ns == e->mtime_ns &&
           obj && obj->size == e->size && !strcmp(obj->etag, rec.etag);
}

/* Sends one file with its SHA-256 as metadata (and with verify, reads it back). */
static int send_file(struct run *s, const char *key, int fd, const struct stat *st,
                     struct cloud_put_result *res, struct err *err)
{
    char sha[65];
    char *fingerprint = xasprintf("%s\n%s\n%lld\n%lld", s->pair, key, (long long)st->st_size,
                                  (long long)mtime_ns(st));
    struct cloud_source src = {fd, (uint64_t)st->st_size, fingerprint, moved, s};
    json_t *meta = NULL;
    int rc = hash_fd(fd, sha) == FERRY_OK
                 ? FERRY_OK
                 : err_set(err, ERR_INTERNAL, "cannot be read: %s", strerror(errno));
    if (rc == FERRY_OK) {
        meta = json_pack("{s:s}", SHA_META, sha);
        rc = cloud_put(s->o->cloud, key, &src, meta, res, err);
    }
    if (rc == FERRY_OK && s->o->verify)
        rc = read_back(s, key, sha, err);
    json_decref(meta);
    free(fingerprint);
    return rc;
}

static int put_file(struct run *s, const char *rel, int fd, const struct stat *st, struct err *err)
{
    struct cloud_put_result res;
    struct stat after;
    char *key = xasprintf("%s%s", s->o->prefix, rel);
    int rc = send_file(s, key, fd, st, &res, err);
    if (rc != FERRY_OK) {
        if (!fatal(err)) {
            add_error(s, rel, err->msg);
            rc = FERRY_OK;
        }
    } else if (fstat(fd, &after) != 0 || after.st_size != st->st_size ||
               mtime_ns(&after) != mtime_ns(st)) {
        add_error(s, rel, "changed while it was uploaded: uploaded again on the next run");
    } else if (record_put(s, rel, st, res.etag, err) != FERRY_OK ||
               cloudusage_stored(s->c, cloud_kind(s->o->cloud), s->o->container, key,
                                 (uint64_t)st->st_size, err) != FERRY_OK) {
        rc = FERRY_ERR;
    } else {
        s->r->copied++;
        s->r->bytes += st->st_size;
        s->r->parts_resumed += res.parts_resumed;
        CRASH_AT("treesync_uploaded");
    }
    free(key);
    return rc;
}

static int upload_one(struct run *s, const struct entry *e, struct err *err)
{
    const char *base;
    struct stat st;
    int rc = FERRY_OK, parent, fd = -1;
    if (s->o->incremental && upload_unchanged(s, e, err, &rc)) {
        s->r->unchanged++;
        return FERRY_OK;
    }
    if (rc != FERRY_OK)
        return FERRY_ERR;
    parent = open_parent(s->folder_fd, e->rel, false, &base);
    if (parent >= 0)
        fd = openat(parent, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        add_error(s, e->rel, "cannot be read");
    else
        rc = put_file(s, e->rel, fd, &st, err);
    if (fd >= 0)
        close(fd);
    if (parent >= 0)
        close(parent);
    return rc;
}

/* --- download ----------------------------------------------------------------------- */

struct sink {
    int fd;
    struct run *s;
    uint64_t left; /* bytes the object has still to send: its listed size less the part's */
    bool over;     /* it sent more */
};

static int write_fd(void *ctx, const void *data, size_t len)
{
    struct sink *k = ctx;
    /* a server sending past the size of the version asked for (If-Match) is broken or
     * hostile: its bytes end the download before they fill the disk */
    if (len > k->left) {
        k->over = true;
        return FERRY_ERR;
    }
    k->left -= len;
    moved(k->s, len);
    for (size_t done = 0; done < len;) {
        ssize_t n = write(k->fd, (const char *)data + done, len - done);
        if (n <= 0)
            return FERRY_ERR;
        done += (size_t)n;
    }
    CRASH_AT("treesync_download_write");
    return FERRY_OK;
}

static bool download_unchanged(struct run *s, const struct entry *o, struct err *err, int *rc)
{
    struct record rec;
    struct stat st;
    const char *base;
    *rc = record_get(s, o->rel, &rec, err);
    if (*rc != FERRY_OK || !rec.found || strcmp(rec.etag, o->etag) != 0)
        return false;
    int parent = open_parent(s->folder_fd, o->rel, false, &base);
    bool same = parent >= 0 && fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISREG(st.st_mode) && (uint64_t)st.st_size == rec.size &&
                mtime_ns(&st) == rec.mtime_ns;
    if (parent >= 0)
        close(parent);
    return same;
}

/* Another run of the pair (another job, another node) may be fetching the same object
 * into the same partial file, and both appending made one file of both copies: only the
 * holder of its lock writes it, and a partial file renamed meanwhile (the other run's
 * complete file now) is not written again. */
static int claim_part(int parent, const char *part, int fd, struct err *err)
{
    struct stat held, named;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0)
        return err_set(err, ERR_CONFLICT, "another run is downloading it");
    if (fstat(fd, &held) != 0 || fstatat(parent, part, &named, AT_SYMLINK_NOFOLLOW) != 0 ||
        held.st_ino != named.st_ino || held.st_dev != named.st_dev)
        return err_set(err, ERR_CONFLICT, "another run has just downloaded it");
    return FERRY_OK;
}

/* Whether the complete partial file has the SHA-256 want (NULL: not checked); when not,
 * it is dropped, so the next run fetches the object afresh. */
static int check_sha(int fd, int parent, const char *part, const char *want, struct err *err)
{
    char got[65];
    if (!want)
        return FERRY_OK;
    if (hash_fd(fd, got) != FERRY_OK)
        return err_set(err, ERR_INTERNAL, "cannot be read back: %s", strerror(errno));
    if (!strcmp(got, want))
        return FERRY_OK;
    unlinkat(parent, part, 0);
    return err_set(err, ERR_INTERNAL,
                   "integrity check failed: the downloaded bytes' SHA-256 is %s, the object "
                   "was uploaded with %s; not stored",
                   got, want);
}

/* Fetches what the partial file lacks, checks it against want (NULL: no check), then gives
 * it the object's date and its name. */
static int fetch(struct run *s, const struct entry *o, int parent, const char *base,
                 const char *part, const char *want, struct stat *st, struct err *err)
{
    struct sink k = {
        openat(parent, part, O_RDWR | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0644), s, 0,
        false};
    int rc = FERRY_ERR;
    if (k.fd < 0 || fstat(k.fd, st) != 0) {
        err_set(err, ERR_INTERNAL, "cannot be written: %s", strerror(errno));
        goto out;
    }
    if (claim_part(parent, part, k.fd, err) != FERRY_OK)
        goto out;
    uint64_t resumed = (uint64_t)st->st_size <= o->size ? (uint64_t)st->st_size : 0;
    if (!resumed && st->st_size && ftruncate(k.fd, 0) != 0) {
        err_set(err, ERR_INTERNAL, "cannot be written: %s", strerror(errno));
        goto out;
    }
    struct cloud_range rest = {resumed, 0};
    k.left = o->size - resumed;
    s->r->bytes_resumed += (int64_t)resumed;
    moved(s, resumed);
    char *key = xasprintf("%s%s", s->o->prefix, o->rel);
    rc = resumed < o->size ? cloud_get(s->o->cloud, key, &rest, o->etag, write_fd, &k, err)
                           : FERRY_OK;
    free(key);
    if (rc != FERRY_OK) {
        if (k.over)
            err_set(err, ERR_INTERNAL,
                    "the provider sent more than the object's %llu bytes: not stored",
                    (unsigned long long)o->size);
        if (err->code == ERR_PRECONDITION || k.over) /* this partial is useless */
            unlinkat(parent, part, 0);
        goto out;
    }
    if ((rc = check_sha(k.fd, parent, part, want, err)) != FERRY_OK)
        goto out;
    struct timespec times[2] = {{0, UTIME_NOW},
                                {o->mtime_ns / 1000000000, (long)(o->mtime_ns % 1000000000)}};
    if (fsync(k.fd) != 0 || futimens(k.fd, times) != 0 || fstat(k.fd, st) != 0 ||
        renameat(parent, part, parent, base) != 0)
        rc = err_set(err, ERR_INTERNAL, "cannot be stored: %s", strerror(errno));
out:
    if (k.fd >= 0)
        close(k.fd);
    return rc;
}

/* The SHA-256 to check o's download against; FERRY_ERR when there is none, with *rc
 * FERRY_OK when that is the file's problem (reported) and FERRY_ERR when the provider's. */
static int expected_sha(struct run *s, const struct entry *o, char want[65], struct err *err,
                        int *rc)
{
    char *key = xasprintf("%s%s", s->o->prefix, o->rel);
    int got = recorded_sha(s, key, want, err);
    free(key);
    *rc = got == FERRY_OK || !fatal(err) ? FERRY_OK : FERRY_ERR;
    if (got != FERRY_OK && *rc == FERRY_OK)
        add_error(s, o->rel, err->msg);
    return got;
}

static int download_one(struct run *s, const struct entry *o, struct err *err)
{
    const char *base;
    struct stat st;
    char h[65], want[65];
    int rc = FERRY_OK;
    if (s->o->incremental && download_unchanged(s, o, err, &rc)) {
        s->r->unchanged++;
        return FERRY_OK;
    }
    if (rc != FERRY_OK)
        return FERRY_ERR;
    if (s->o->verify && expected_sha(s, o, want, err, &rc) != FERRY_OK)
        return rc;
    int parent = open_parent(s->folder_fd, o->rel, true, &base);
    if (parent < 0) {
        add_error(s, o->rel, "its folder cannot be made (a file or link is in the way)");
        return FERRY_OK;
    }
    char *text = xasprintf("%s\n%s", o->rel, o->etag);
    crypto_sha256_hex(text, strlen(text), h);
    char *part = xasprintf(PART_MARK "%.16s", h);
    if (fetch(s, o, parent, base, part, s->o->verify ? want : NULL, &st, err) != FERRY_OK) {
        if (!fatal(err))
            add_error(s, o->rel, err->msg);
        else
            rc = FERRY_ERR;
    } else if (record_put(s, o->rel, &st, o->etag, err) != FERRY_OK) {
        rc = FERRY_ERR;
    } else {
        s->r->copied++;
        s->r->bytes += st.st_size;
    }
    free(part);
    free(text);
    close(parent);
    return rc;
}

/* --- deleteMissingInTarget ------------------------------------------------------------ */

/* Whether rel, or a folder above it, is excluded (an excluded folder is left alone whole). */
static bool excluded_within(const struct treesync_options *o, const char *rel)
{
    char *copy = xstrdup(rel), *slash;
    bool hit = excluded(o, copy);
    while (!hit && (slash = strrchr(copy, '/'))) {
        *slash = '\0';
        hit = excluded(o, copy);
    }
    free(copy);
    return hit;
}

/* Whether rel lies in a folder another location owns (o->spare). */
static bool spared(const struct treesync_options *o, const char *rel)
{
    for (size_t i = 0; i < o->n_spare; i++) {
        size_t n = strlen(o->spare[i]);
        if (!strncmp(rel, o->spare[i], n) && (rel[n] == '/' || !rel[n]))
            return true;
    }
    return false;
}

/* Removes the target's rel: the object PREFIX + rel, or the file beneath the folder
 * (opened one component at a time without following links, so nothing outside goes). */
static int remove_one(struct run *s, const char *rel, struct err *err)
{
    int rc = FERRY_OK;
    if (s->o->upload) {
        char *key = xasprintf("%s%s", s->o->prefix, rel);
        rc = cloud_delete(s->o->cloud, key, err);
        if (rc == FERRY_OK)
            rc = cloudusage_removed(s->c, cloud_kind(s->o->cloud), s->o->container, key, err);
        free(key);
    } else {
        const char *base;
        int parent = open_parent(s->folder_fd, rel, false, &base);
        if (parent < 0 || unlinkat(parent, base, 0) != 0)
            rc = err_set(err, ERR_INTERNAL, "cannot be deleted: %s", strerror(errno));
        if (parent >= 0)
            close(parent);
    }
    if (rc == FERRY_OK && (rc = record_drop(s, rel, err)) == FERRY_OK)
        s->r->deleted++;
    if (rc != FERRY_OK && !fatal(err)) {
        add_error(s, rel, err->msg);
        rc = FERRY_OK;
    }
    return rc;
}

static int delete_missing(struct run *s, struct err *err)
{
    const struct entries *source = s->o->upload ? &s->local : &s->remote;
    const struct entries *target = s->o->upload ? &s->remote : &s->local;
    if (s->o->upload && s->scan_incomplete) {
        add_error(s, ".", "the folder could not be read in full: nothing deleted in the target");
        return FERRY_OK;
    }
    for (size_t i = 0; i < target->n; i++) {
        const char *rel = target->v[i].rel;
        if (s->o->stop && atomic_load(s->o->stop))
            return err_set(err, ERR_UNAVAILABLE, "the server is stopping: the session ended early");
        if (!find(source, rel) && !excluded_within(s->o, rel) && !spared(s->o, rel) &&
            remove_one(s, rel, err) != FERRY_OK)
            return FERRY_ERR;
    }
    return FERRY_OK;
}

/* --- the run ------------------------------------------------------------------------ */

static int open_folder(const struct treesync_options *o, struct err *err)
{
    if (!o->upload) { /* the folder is confined already: what is made lies under a root */
        char *p = xstrdup(o->folder);
        for (char *sl = strchr(p + 1, '/'); sl; sl = strchr(sl + 1, '/')) {
            *sl = '\0';
            mkdir(p, 0755);
            *sl = '/';
        }
        mkdir(p, 0755);
        free(p);
    }
    int fd = open(o->folder, DIR_FLAGS);
    if (fd < 0)
        err_set(err, o->upload ? ERR_NOT_FOUND : ERR_INTERNAL, "the folder %s cannot be opened: %s",
                o->upload ? "to upload" : "to download into", strerror(errno));
    return fd;
}

static int transfer_all(struct run *s, const struct entries *todo, struct err *err)
{
    for (size_t i = 0; i < todo->n; i++) {
        const struct entry *e = &todo->v[i];
        if (s->o->stop && atomic_load(s->o->stop))
            return err_set(err, ERR_UNAVAILABLE, "the server is stopping: the session ended early");
        report(s, e->rel);
        s->cur = e;
        s->cur_base = s->p.bytes_done;
        s->cur_moved = 0;
        int rc = s->o->upload ? upload_one(s, e, err) : download_one(s, e, err);
        s->cur = NULL;
        if (rc != FERRY_OK)
            return FERRY_ERR;
        s->p.files_done++;
        s->p.bytes_done = s->cur_base + (int64_t)e->size;
        report(s, NULL);
    }
    return FERRY_OK;
}

int treesync_run(struct store_conn *c, const struct treesync_options *o, struct treesync_result *r,
                 struct err *err)
{
    struct run s = {.c = c, .o = o, .r = r, .folder_fd = -1};
    char h[65];
    int rc = FERRY_ERR;
    memset(r, 0, sizeof(*r));
    r->errors = json_array();
    /* the records belong to the folder and the place, whichever way a run goes */
    char *id = xasprintf("%s\n%s\n%s\n%s", cloud_provider_name(cloud_kind(o->cloud)),
                         o->container ? o->container : "", o->prefix, o->folder);
    crypto_sha256_hex(id, strlen(id), h);
    snprintf(s.pair, sizeof(s.pair), "%.32s", h);
    free(id);
    if ((s.folder_fd = open_folder(o, err)) < 0 ||
        (cloud_list(o->cloud, o->prefix, add_object, &s, err) != FERRY_OK && !s.too_many))
        goto out;
    if (o->upload || o->delete_missing)
        scan(&s, s.folder_fd, "", 0);
    if (s.too_many) {
        err_set(err, ERR_INVALID, "more than %d files: split the session", MAX_ENTRIES);
        goto out;
    }
    if (s.remote.n)
        qsort(s.remote.v, s.remote.n, sizeof(*s.remote.v), cmp_rel);
    if (s.local.n)
        qsort(s.local.v, s.local.n, sizeof(*s.local.v), cmp_rel);
    const struct entries *todo = o->upload ? &s.local : &s.remote;
    s.p.files_total = (int64_t)todo->n;
    for (size_t i = 0; i < todo->n; i++)
        s.p.bytes_total += (int64_t)todo->v[i].size;
    report(&s, NULL);
    rc = transfer_all(&s, todo, err);
    if (rc == FERRY_OK && o->delete_missing)
        rc = delete_missing(&s, err);
out:
    if (s.folder_fd >= 0)
        close(s.folder_fd);
    entries_free(&s.local);
    entries_free(&s.remote);
    return rc;
}
