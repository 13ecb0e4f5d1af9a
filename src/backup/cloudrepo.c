/* cloudrepo.c - see cloudrepo.h. Owns the mapping between a repository's files and the
 * keys PREFIX + the same relative path, and the order in which they go up and away. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/cloudrepo.h"
#include "backup/fsio.h"
#include "backup/pack.h"
#include "backup/snapshot.h"
#include "cloud/usage.h"
#include "util/crashpoint.h"

#define MAX_FILES 10000000

/* The kinds of a repository's files, in the order push sends them. */
enum kind { K_NONE = -1, K_CONFIG, K_PACK, K_INDEX, K_SNAPSHOT, N_KINDS };

struct file {
    char *rel;
    uint64_t size;
    enum kind kind;
};

struct files {
    struct file *v;
    size_t n, cap;
};

static void files_free(struct files *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].rel);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static int cmp_rel(const void *a, const void *b)
{
    return strcmp(((const struct file *)a)->rel, ((const struct file *)b)->rel);
}

static const struct file *find(const struct files *l, const char *rel)
{
    struct file key = {.rel = (char *)rel};
    return l->n ? bsearch(&key, l->v, l->n, sizeof(*l->v), cmp_rel) : NULL;
}

/* A name of letters, digits and '-' (a pack id, a UUID) followed by ext. */
static bool id_name(const char *s, size_t len, const char *ext)
{
    size_t n_ext = strlen(ext);
    if (len <= n_ext || len > 128 || memcmp(s + len - n_ext, ext, n_ext) != 0)
        return false;
    for (size_t i = 0; i < len - n_ext; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
            return false;
    return true;
}

/* What rel is in a repository; K_NONE for anything else (temporary files, the lock, a
 * damaged manifest, a name that is not a repository's), which never moves. */
static enum kind kind_of(const char *rel)
{
    if (!strcmp(rel, "config"))
        return K_CONFIG;
    if (!strncmp(rel, "index/", 6) && id_name(rel + 6, strlen(rel + 6), ".idx"))
        return K_INDEX;
    if (!strncmp(rel, "snapshots/", 10) && id_name(rel + 10, strlen(rel + 10), ".snap"))
        return K_SNAPSHOT;
    if (!strncmp(rel, "packs/", 6) && strlen(rel) > 9 && isalnum((unsigned char)rel[6]) &&
        isalnum((unsigned char)rel[7]) && rel[8] == '/' &&
        id_name(rel + 9, strlen(rel + 9), ".pack"))
        return K_PACK;
    return K_NONE;
}

static int add(struct files *l, const char *rel, uint64_t size)
{
    enum kind k = kind_of(rel);
    if (k == K_NONE)
        return FERRY_OK;
    if (l->n == MAX_FILES)
        return FERRY_ERR;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = (struct file){xstrdup(rel), size, k};
    return FERRY_OK;
}

/* --- the two listings --------------------------------------------------------------- */

struct listing {
    const char *prefix;
    struct files *out;
};

static int add_object(void *ctx, const struct cloud_object *o)
{
    struct listing *l = ctx;
    return add(l->out, o->key + strlen(l->prefix), o->size);
}

static void list_folder(const char *dir, const char *sub, struct files *out)
{
    char *path = *sub ? xasprintf("%s/%s", dir, sub) : xstrdup(dir);
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        struct stat st;
        char *rel = *sub ? xasprintf("%s/%s", sub, de->d_name) : xstrdup(de->d_name);
        char *full = xasprintf("%s/%s", dir, rel);
        if (de->d_name[0] != '.' && lstat(full, &st) == 0) {
            if (S_ISREG(st.st_mode))
                add(out, rel, (uint64_t)st.st_size);
            else if (S_ISDIR(st.st_mode) && (!*sub || !strcmp(sub, "packs")))
                list_folder(dir, rel, out); /* packs/XX/ under packs/, the rest at depth 1 */
        }
        free(full);
        free(rel);
    }
    if (d)
        closedir(d);
    free(path);
}

static int list_both(struct cloudrepo *cr, struct files *remote, struct files *local,
                     struct err *err)
{
    struct listing l = {cr->prefix, remote};
    if (fsio_mkdirs(cr->dir, 0700, err) != FERRY_OK ||
        cloud_list(cr->cloud, cr->prefix, add_object, &l, err) != FERRY_OK)
        return FERRY_ERR;
    list_folder(cr->dir, "", local);
    if (remote->n == MAX_FILES || local->n == MAX_FILES)
        return err_set(err, ERR_INTERNAL, "the repository has more than %d files", MAX_FILES);
    if (remote->n)
        qsort(remote->v, remote->n, sizeof(*remote->v), cmp_rel);
    if (local->n)
        qsort(local->v, local->n, sizeof(*local->v), cmp_rel);
    return FERRY_OK;
}

/* --- one file ----------------------------------------------------------------------- */

struct sink {
    int fd;
    struct err *err;
    uint64_t written;
};

static int write_part(void *ctx, const void *data, size_t len)
{
    struct sink *s = ctx;
    s->written += len;
    return fsio_write_all(s->fd, data, len, s->err);
}

/* Fetches rel into a temporary file beside it, then renames it into place. */
static int fetch(struct cloudrepo *cr, const char *rel, struct err *err)
{
    char *path = xasprintf("%s/%s", cr->dir, rel);
    char *tmp = xasprintf("%s.tmp-%d", path, (int)getpid());
    char *key = xasprintf("%s%s", cr->prefix, rel);
    char *parent = xstrdup(path);
    *strrchr(parent, '/') = '\0';
    struct sink s = {-1, err, 0};
    int rc = FERRY_ERR;
    if (fsio_mkdirs(parent, 0700, err) != FERRY_OK)
        goto out;
    s.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s.fd < 0) {
        err_set(err, ERR_INTERNAL, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (cloud_get(cr->cloud, key, NULL, NULL, write_part, &s, err) != FERRY_OK)
        goto out;
    if (fsync(s.fd) != 0 || rename(tmp, path) != 0) {
        err_set(err, ERR_INTERNAL, "cannot store %s: %s", path, strerror(errno));
        goto out;
    }
    rc = fsio_sync_dir(path, 0, err);
    cr->bytes_down += s.written;
    cr->files_down++;
out:
    if (s.fd >= 0)
        close(s.fd);
    if (rc != FERRY_OK)
        unlink(tmp);
    free(parent);
    free(key);
    free(tmp);
    free(path);
    return rc;
}

/* Sends rel; an interrupted upload of a large pack continues from its parts. */
static int send(struct cloudrepo *cr, const struct file *f, struct err *err)
{
    char *path = xasprintf("%s/%s", cr->dir, f->rel);
    char *key = xasprintf("%s%s", cr->prefix, f->rel);
    struct cloud_put_result res;
    struct stat st;
    int rc = FERRY_ERR, fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 || fstat(fd, &st) != 0) {
        err_set(err, ERR_INTERNAL, "cannot read %s: %s", path, strerror(errno));
        goto out;
    }
    /* content-named files never change; config may (a new password), so its date counts */
    char *fingerprint = xasprintf("backup\n%s\n%lld\n%lld.%ld", key, (long long)st.st_size,
                                  (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    struct cloud_source src = {fd, (uint64_t)st.st_size, fingerprint, NULL, NULL};
    rc = cloud_put(cr->cloud, key, &src, NULL, &res, err);
    free(fingerprint);
    if (rc == FERRY_OK)
        rc = cloudusage_stored(cr->db, cloud_kind(cr->cloud), cr->container, key,
                               (uint64_t)st.st_size, err);
    if (rc == FERRY_OK) {
        cr->bytes_up += (uint64_t)st.st_size;
        cr->files_up++;
        CRASH_AT("backup_cloud_sent");
    }
out:
    if (fd >= 0)
        close(fd);
    free(key);
    free(path);
    return rc;
}

static int delete_remote(struct cloudrepo *cr, const struct file *f, struct err *err)
{
    char *key = xasprintf("%s%s", cr->prefix, f->rel);
    int rc = cloud_delete(cr->cloud, key, err);
    if (rc == FERRY_OK)
        rc = cloudusage_removed(cr->db, cloud_kind(cr->cloud), cr->container, key, err);
    if (rc == FERRY_OK)
        cr->files_removed++;
    free(key);
    return rc;
}

static void tick(struct cloudrepo *cr)
{
    if (cr->tick)
        cr->tick(cr->ctx);
}

static int fence(struct cloudrepo *cr, struct err *err)
{
    return cr->fence ? cr->fence(cr->ctx, err) : FERRY_OK;
}

/* --- pull and push ------------------------------------------------------------------ */

/* Lists both sides and hands them to step. */
static int on_both(struct cloudrepo *cr,
                   int (*step)(struct cloudrepo *, const struct files *, const struct files *,
                               unsigned, struct err *),
                   unsigned arg, struct err *err)
{
    struct files remote = {0}, local = {0};
    int rc = list_both(cr, &remote, &local, err);
    if (rc == FERRY_OK)
        rc = step(cr, &remote, &local, arg, err);
    files_free(&remote);
    files_free(&local);
    return rc;
}

static int pull(struct cloudrepo *cr, const struct files *remote, const struct files *local,
                unsigned what, struct err *err)
{
    for (size_t i = 0; i < local->n; i++)
        if (!find(remote, local->v[i].rel)) { /* gone from the cloud (a prune elsewhere) */
            char *path = xasprintf("%s/%s", cr->dir, local->v[i].rel);
            unlink(path);
            free(path);
        }
    for (size_t i = 0; i < remote->n; i++) {
        const struct file *f = &remote->v[i], *have = find(local, f->rel);
        bool wanted = f->kind == K_CONFIG || f->kind == K_SNAPSHOT ||
                      (f->kind == K_INDEX && (what & CLOUDREPO_INDEX)) ||
                      (f->kind == K_PACK && (what & CLOUDREPO_PACKS));
        if (!wanted || (have && have->size == f->size))
            continue;
        if (fetch(cr, f->rel, err) != FERRY_OK)
            return FERRY_ERR;
        tick(cr);
    }
    return FERRY_OK;
}

/* Whether the cache still has the index of pack f (packs/XX/ID.pack: index/ID.idx): then
 * the pack is in use, merely not fetched. */
static bool indexed(const struct files *local, const struct file *f)
{
    const char *id = f->rel + 9; /* after "packs/XX/" */
    char *rel = xasprintf("index/%.*s.idx", (int)(strlen(id) - 5), id);
    bool found = find(local, rel) != NULL;
    free(rel);
    return found;
}

static int push(struct cloudrepo *cr, const struct files *remote, const struct files *local,
                unsigned remove, struct err *err)
{
    for (int k = K_CONFIG; k < N_KINDS; k++)
        for (size_t i = 0; i < local->n; i++) {
            const struct file *f = &local->v[i], *there = find(remote, f->rel);
            if ((int)f->kind != k || (there && there->size == f->size))
                continue;
            if (fence(cr, err) != FERRY_OK || send(cr, f, err) != FERRY_OK)
                return FERRY_ERR;
            tick(cr);
        }
    for (int k = K_SNAPSHOT; remove && k > K_CONFIG; k--)
        for (size_t i = 0; i < remote->n; i++) {
            const struct file *f = &remote->v[i];
            if ((int)f->kind != k || find(local, f->rel) || (k == K_PACK && indexed(local, f)))
                continue;
            if (fence(cr, err) != FERRY_OK || delete_remote(cr, f, err) != FERRY_OK)
                return FERRY_ERR;
            tick(cr);
        }
    return FERRY_OK;
}

int cloudrepo_fetch_packs(struct cloudrepo *cr, const struct pack_index *ix, const bool *needed,
                          struct err *err)
{
    for (size_t p = 0; p < ix->n_packs; p++) {
        struct stat st;
        char *rel = xasprintf("packs/%.2s/%s.pack", ix->packs[p], ix->packs[p]);
        char *path = xasprintf("%s/%s", cr->dir, rel);
        int rc = needed[p] && stat(path, &st) != 0 ? fetch(cr, rel, err) : FERRY_OK;
        free(path);
        free(rel);
        if (rc != FERRY_OK)
            return FERRY_ERR;
        tick(cr);
    }
    return FERRY_OK;
}

int cloudrepo_pull_version(struct cloudrepo *cr, const uint8_t *key, const char *id,
                           struct err *err)
{
    struct snapshot s = {0};
    struct pack_index ix;
    bool *needed = NULL;
    int rc = FERRY_ERR;
    pack_index_init(&ix);
    if (snapshot_load(cr->dir, key, id, &s, err) != FERRY_OK ||
        pack_index_load(cr->dir, key, &ix, NULL, NULL, err) != FERRY_OK)
        goto out;
    needed = xcalloc(ix.n_packs + 1, sizeof(*needed));
    for (size_t i = 0; i < s.n_entries; i++)
        for (size_t c = 0; c < s.entries[i].n_chunks; c++) {
            const struct chunk_ref *ref = pack_index_find(&ix, s.entries[i].chunks[c]);
            if (ref) /* a chunk without one is damage, which the restore reports */
                needed[ref->pack] = true;
        }
    rc = cloudrepo_fetch_packs(cr, &ix, needed, err);
out:
    free(needed);
    pack_index_cleanup(&ix);
    snapshot_clear(&s);
    return rc;
}

int cloudrepo_pull(struct cloudrepo *cr, unsigned what, struct err *err)
{
    return on_both(cr, pull, what, err);
}

int cloudrepo_push(struct cloudrepo *cr, bool remove, struct err *err)
{
    return on_both(cr, push, remove, err);
}
