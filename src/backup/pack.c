/* pack.c - pack files, their index files and the in-memory index (see pack.h). All
 * integers in index files are little-endian. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>
#include <zstd.h>

#include "backup/fsio.h"
#include "backup/pack.h"
#include "backup/seal.h"
#include "util/crashpoint.h"
#include "util/crypto.h"

#define ENTRY_LEN 53 /* hash 32, offset 8, stored 4, raw 4, flags 1 */
#define ZSTD_LEVEL 3
#define MAX_INDEX_FILE (256u * 1024 * 1024)
#define SAMPLE_LEN (64u * 1024) /* compressibility is judged on this much first */
#define MAX_CLOSING 4           /* full packs waiting for their sync before appends wait */

/* --- the in-memory index --------------------------------------------------------------- */

void pack_index_init(struct pack_index *ix)
{
    memset(ix, 0, sizeof(*ix));
}

void pack_index_cleanup(struct pack_index *ix)
{
    free(ix->packs);
    free(ix->refs);
    free(ix->slots);
    memset(ix, 0, sizeof(*ix));
}

static size_t slot_of(const uint8_t hash[32], size_t n_slots)
{
    uint64_t h;
    memcpy(&h, hash, sizeof(h));
    return (size_t)(h & (n_slots - 1));
}

static void rehash(struct pack_index *ix)
{
    size_t n = ix->n_slots ? ix->n_slots * 2 : 1024;
    free(ix->slots);
    ix->slots = xcalloc(n, sizeof(uint32_t));
    ix->n_slots = n;
    for (size_t i = 0; i < ix->n_refs; i++) {
        size_t s = slot_of(ix->refs[i].hash, n);
        while (ix->slots[s])
            s = (s + 1) & (n - 1);
        ix->slots[s] = (uint32_t)(i + 1);
    }
}

const struct chunk_ref *pack_index_find(const struct pack_index *ix, const uint8_t hash[32])
{
    if (!ix->n_slots)
        return NULL;
    for (size_t s = slot_of(hash, ix->n_slots); ix->slots[s]; s = (s + 1) & (ix->n_slots - 1)) {
        const struct chunk_ref *r = &ix->refs[ix->slots[s] - 1];
        if (!memcmp(r->hash, hash, 32))
            return r;
    }
    return NULL;
}

static uint32_t pack_number(struct pack_index *ix, const char *pack_id)
{
    if (ix->n_packs && !strcmp(ix->packs[ix->n_packs - 1], pack_id))
        return (uint32_t)(ix->n_packs - 1);
    if (ix->n_packs == ix->cap_packs) {
        ix->cap_packs = ix->cap_packs ? ix->cap_packs * 2 : 64;
        ix->packs = xrealloc(ix->packs, ix->cap_packs * sizeof(*ix->packs));
    }
    snprintf(ix->packs[ix->n_packs], PACK_ID_LEN + 1, "%s", pack_id);
    return (uint32_t)ix->n_packs++;
}

const struct chunk_ref *pack_index_add(struct pack_index *ix, const char *pack_id,
                                       const struct chunk_ref *ref)
{
    const struct chunk_ref *known = pack_index_find(ix, ref->hash);
    if (known)
        return known;
    if ((ix->n_refs + 1) * 2 > ix->n_slots)
        rehash(ix);
    if (ix->n_refs == ix->cap_refs) {
        ix->cap_refs = ix->cap_refs ? ix->cap_refs * 2 : 1024;
        ix->refs = xrealloc(ix->refs, ix->cap_refs * sizeof(*ix->refs));
    }
    struct chunk_ref *r = &ix->refs[ix->n_refs];
    *r = *ref;
    if (pack_id) /* else a claim: its pack is PACK_PENDING */
        r->pack = pack_number(ix, pack_id);
    size_t s = slot_of(r->hash, ix->n_slots);
    while (ix->slots[s])
        s = (s + 1) & (ix->n_slots - 1);
    ix->slots[s] = (uint32_t)++ix->n_refs;
    return r;
}

bool pack_index_claim(struct pack_index *ix, const uint8_t hash[32])
{
    if (pack_index_find(ix, hash))
        return false;
    struct chunk_ref claim = {.pack = PACK_PENDING};
    memcpy(claim.hash, hash, 32);
    pack_index_add(ix, NULL, &claim);
    return true;
}

void pack_index_place(struct pack_index *ix, const char *pack_id, const struct chunk_ref *ref)
{
    struct chunk_ref *r = (struct chunk_ref *)pack_index_find(ix, ref->hash);
    if (!r)
        r = (struct chunk_ref *)pack_index_add(ix, pack_id, ref);
    *r = *ref;
    r->pack = pack_number(ix, pack_id);
}

/* --- names ----------------------------------------------------------------------------- */

char *pack_path(const char *repo, const char *pack_id)
{
    return xasprintf("%s/packs/%.2s/%s.pack", repo, pack_id, pack_id);
}

char *pack_index_path(const char *repo, const char *pack_id)
{
    return xasprintf("%s/index/%s.idx", repo, pack_id);
}

void pack_hex(const uint8_t hash[32], char out[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[hash[i] >> 4];
        out[2 * i + 1] = digits[hash[i] & 15];
    }
    out[64] = 0;
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int pack_unhex(const char *hex, uint8_t hash[32])
{
    for (int i = 0; i < 32; i++) {
        int hi = nibble(hex[2 * i]), lo = hi < 0 ? -1 : nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return FERRY_ERR;
        hash[i] = (uint8_t)(hi << 4 | lo);
    }
    return hex[64] ? FERRY_ERR : FERRY_OK;
}

static bool valid_pack_id(const char *id, size_t len)
{
    if (len != PACK_ID_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (nibble(id[i]) < 0)
            return false;
    return true;
}

/* --- index files ----------------------------------------------------------------------- */

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

int pack_index_write(const char *repo, const uint8_t *key, const char *pack_id,
                     const struct chunk_ref *refs, size_t n, struct err *err)
{
    size_t plain_len = 12 + n * ENTRY_LEN;
    uint8_t *plain = xmalloc(plain_len);
    uint8_t *sealed = xmalloc(seal_stored_len(key, plain_len));
    char ad[64];
    memcpy(plain, PACK_INDEX_MAGIC, 8);
    put_le(plain + 8, n, 4);
    for (size_t i = 0; i < n; i++) {
        uint8_t *e = plain + 12 + i * ENTRY_LEN;
        memcpy(e, refs[i].hash, 32);
        put_le(e + 32, refs[i].offset, 8);
        put_le(e + 40, refs[i].stored_len, 4);
        put_le(e + 44, refs[i].raw_len, 4);
        e[48] = refs[i].flags;
        memset(e + 49, 0, 4);
    }
    snprintf(ad, sizeof(ad), "index:%s", pack_id);
    size_t sealed_len = seal_encrypt(key, ad, strlen(ad), plain, plain_len, sealed);
    char *path = pack_index_path(repo, pack_id);
    int rc = fsio_write_atomic(path, sealed, sealed_len, err);
    free(path);
    free(plain);
    free(sealed);
    return rc;
}

int pack_index_read(const char *repo, const uint8_t *key, const char *pack_id,
                    struct chunk_ref **refs, size_t *n, struct err *err)
{
    int rc = FERRY_ERR;
    char *path = pack_index_path(repo, pack_id);
    uint8_t *sealed = NULL, *plain = NULL;
    size_t sealed_len = 0;
    char ad[64];
    if (fsio_read_all(path, MAX_INDEX_FILE, &sealed, &sealed_len, err) != FERRY_OK)
        goto out;
    plain = xmalloc(sealed_len + 1);
    snprintf(ad, sizeof(ad), "index:%s", pack_id);
    long plain_len = seal_decrypt(key, ad, strlen(ad), sealed, sealed_len, plain);
    if (plain_len < 12 || memcmp(plain, PACK_INDEX_MAGIC, 8) != 0 ||
        (size_t)plain_len != 12 + get_le(plain + 8, 4) * ENTRY_LEN) {
        err_set(err, ERR_INTERNAL, "the index file %s is damaged or was made with another key",
                path);
        goto out;
    }
    *n = get_le(plain + 8, 4);
    *refs = xcalloc(*n ? *n : 1, sizeof(struct chunk_ref));
    for (size_t i = 0; i < *n; i++) {
        const uint8_t *e = plain + 12 + i * ENTRY_LEN;
        memcpy((*refs)[i].hash, e, 32);
        (*refs)[i].offset = get_le(e + 32, 8);
        (*refs)[i].stored_len = (uint32_t)get_le(e + 40, 4);
        (*refs)[i].raw_len = (uint32_t)get_le(e + 44, 4);
        (*refs)[i].flags = e[48];
    }
    rc = FERRY_OK;
out:
    free(path);
    free(sealed);
    free(plain);
    return rc;
}

static void add_bad(char ***bad, size_t *n_bad, const char *name)
{
    *bad = xrealloc(*bad, (*n_bad + 1) * sizeof(char *));
    (*bad)[(*n_bad)++] = xstrdup(name);
}

int pack_index_load(const char *repo, const uint8_t *key, struct pack_index *ix, char ***bad,
                    size_t *n_bad, struct err *err)
{
    char *dir_path = xasprintf("%s/index", repo);
    DIR *dir = opendir(dir_path);
    int rc = FERRY_ERR;
    struct dirent *de;
    if (!dir) {
        err_set(err, ERR_INTERNAL, "cannot read %s: %s", dir_path, strerror(errno));
        goto out;
    }
    while ((de = readdir(dir))) {
        size_t len = strlen(de->d_name);
        if (len != PACK_ID_LEN + 4 || strcmp(de->d_name + PACK_ID_LEN, ".idx") ||
            !valid_pack_id(de->d_name, PACK_ID_LEN))
            continue;
        char id[PACK_ID_LEN + 1];
        struct chunk_ref *refs = NULL;
        size_t n = 0;
        snprintf(id, sizeof(id), "%.*s", PACK_ID_LEN, de->d_name);
        if (pack_index_read(repo, key, id, &refs, &n, err) != FERRY_OK) {
            if (!bad)
                goto out;
            add_bad(bad, n_bad, id);
            continue;
        }
        for (size_t i = 0; i < n; i++)
            pack_index_add(ix, id, &refs[i]);
        free(refs);
    }
    rc = FERRY_OK;
out:
    if (dir)
        closedir(dir);
    free(dir_path);
    return rc;
}

int pack_list(const char *repo, char ***ids, size_t *n, struct err *err)
{
    *ids = NULL;
    *n = 0;
    for (int i = 0; i < 256; i++) {
        char *sub = xasprintf("%s/packs/%02x", repo, i);
        DIR *dir = opendir(sub);
        struct dirent *de;
        free(sub);
        if (!dir) {
            if (errno == ENOENT)
                continue;
            return err_set(err, ERR_INTERNAL, "cannot read the packs of %s: %s", repo,
                           strerror(errno));
        }
        while ((de = readdir(dir))) {
            size_t len = strlen(de->d_name);
            if (len == PACK_ID_LEN + 5 && !strcmp(de->d_name + PACK_ID_LEN, ".pack") &&
                valid_pack_id(de->d_name, PACK_ID_LEN))
                add_bad(ids, n, de->d_name);
        }
        closedir(dir);
    }
    for (size_t i = 0; i < *n; i++)
        (*ids)[i][PACK_ID_LEN] = 0;
    return FERRY_OK;
}

/* --- writing --------------------------------------------------------------------------- */

struct pack_sealer {
    const uint8_t *key;
    uint8_t *zbuf, *sbuf; /* compressed and sealed bytes of one chunk */
    size_t zcap, scap;
    ZSTD_CCtx *zctx;
};

/* A pack being filled, then (full) on its way to the repository: synced, then its index
 * written. Appenders take their room in it under the writer's lock and copy their bytes
 * in outside it; the last one out of a full pack hands it to the syncer. */
struct open_pack {
    int fd;
    char id[PACK_ID_LEN + 1];
    uint64_t size; /* taken so far, by appends done or under way */
    struct chunk_ref *entries;
    size_t n_entries, cap_entries;
    int writing;            /* appends still copying their bytes in */
    bool full, failed;      /* no more room / a copy failed: never indexed, an orphan */
    struct open_pack *next; /* in the syncer's queue */
};

/* Full packs are made durable by a thread of the writer's own, so appending goes on
 * meanwhile (a pack's fsync and its index's cost milliseconds, which appenders holding
 * their lock would otherwise wait out). */
struct syncer {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* the queue changed */
    pthread_t thread;
    bool started, quit, failed;
    struct open_pack *head, *tail;
    size_t queued;
    struct err err; /* the first failure */
};

struct pack_writer {
    const char *repo;
    const uint8_t *key;
    struct pack_index *ix;
    pthread_mutex_t lock;       /* cur, and the counts of the packs being filled */
    struct open_pack *cur;      /* NULL when no pack is open */
    struct pack_sealer *sealer; /* for pack_writer_add */
    struct syncer sync;
};

static void grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap < need) {
        *cap = need;
        *buf = xrealloc(*buf, need);
    }
}

struct pack_sealer *pack_sealer_new(const uint8_t *key)
{
    struct pack_sealer *s = xcalloc(1, sizeof(*s));
    s->key = key;
    s->zctx = ZSTD_createCCtx();
    if (!s->zctx)
        abort(); /* ferry.h: out of memory aborts */
    ZSTD_CCtx_setParameter(s->zctx, ZSTD_c_compressionLevel, ZSTD_LEVEL);
    return s;
}

void pack_sealer_free(struct pack_sealer *s)
{
    if (!s)
        return;
    free(s->zbuf);
    free(s->sbuf);
    ZSTD_freeCCtx(s->zctx);
    free(s);
}

/* Whether zstd saves at least 1/32 of len bytes; *z holds the compressed length. */
static bool compresses(struct pack_sealer *s, const uint8_t *data, size_t len, size_t *z)
{
    *z = ZSTD_compress2(s->zctx, s->zbuf, s->zcap, data, len);
    return !ZSTD_isError(*z) && *z < len - len / 32;
}

void pack_sealer_seal(struct pack_sealer *s, const uint8_t hash[32], const uint8_t *data,
                      size_t len, struct chunk_ref *ref, const uint8_t **stored)
{
    const uint8_t *body = data;
    size_t body_len = len, z = 0;
    memset(ref, 0, sizeof(*ref));
    grow(&s->zbuf, &s->zcap, ZSTD_compressBound(len));
    /* Keep the compressed form only where it helps: incompressible chunks (media,
     * archives) are stored as they are and cost nothing to read back. A large chunk is
     * judged on a sample first, so random bytes are not compressed in vain. */
    bool worth = len < 2 * SAMPLE_LEN || compresses(s, data, SAMPLE_LEN, &z);
    if (worth && compresses(s, data, len, &z)) {
        body = s->zbuf;
        body_len = z;
        ref->flags |= PACK_FLAG_ZSTD;
    }
    grow(&s->sbuf, &s->scap, seal_stored_len(s->key, body_len));
    memcpy(ref->hash, hash, 32);
    ref->raw_len = (uint32_t)len;
    ref->stored_len = (uint32_t)seal_encrypt(s->key, hash, 32, body, body_len, s->sbuf);
    *stored = s->sbuf;
}

struct pack_writer *pack_writer_new(const char *repo, const uint8_t *key, struct pack_index *ix)
{
    struct pack_writer *w = xcalloc(1, sizeof(*w));
    w->repo = repo;
    w->key = key;
    w->ix = ix;
    w->sealer = pack_sealer_new(key);
    pthread_mutex_init(&w->lock, NULL);
    pthread_mutex_init(&w->sync.lock, NULL);
    pthread_cond_init(&w->sync.cond, NULL);
    return w;
}

static void free_pack(struct open_pack *p)
{
    if (p->fd >= 0)
        close(p->fd);
    free(p->entries);
    free(p);
}

/* Makes one full pack durable, then writes its index: only then does it hold chunks. A
 * pack one of whose copies failed stays an orphan (that append reported the failure). */
static int finish(const struct pack_writer *w, struct open_pack *p, struct err *err)
{
    int rc = FERRY_ERR;
    char *path = pack_path(w->repo, p->id);
    if (p->failed) {
        rc = FERRY_OK;
        goto out;
    }
    if (fsync(p->fd) != 0) {
        err_set(err, ERR_INTERNAL, "cannot sync %s: %s", path, strerror(errno));
        goto out;
    }
    if (fsio_sync_dir(path, 0, err) != FERRY_OK)
        goto out;
    CRASH_AT("backup_pack_written"); /* a durable pack without an index: an orphan */
    rc = pack_index_write(w->repo, w->key, p->id, p->entries, p->n_entries, err);
out:
    free_pack(p);
    free(path);
    return rc;
}

static void *syncing_thread(void *arg)
{
    struct pack_writer *w = arg;
    struct syncer *sy = &w->sync;
    pthread_mutex_lock(&sy->lock);
    for (;;) {
        while (!sy->head && !sy->quit)
            pthread_cond_wait(&sy->cond, &sy->lock);
        if (!sy->head)
            break;
        struct open_pack *p = sy->head;
        struct err err = {0};
        sy->head = p->next;
        sy->tail = sy->head ? sy->tail : NULL;
        pthread_mutex_unlock(&sy->lock);
        int rc = finish(w, p, &err);
        pthread_mutex_lock(&sy->lock);
        if (rc != FERRY_OK && !sy->failed) {
            sy->failed = true;
            sy->err = err;
        }
        sy->queued--;
        pthread_cond_broadcast(&sy->cond);
    }
    pthread_mutex_unlock(&sy->lock);
    return NULL;
}

/* Hands a full pack, all of whose bytes are in, to the syncer (done here when it has no
 * thread), waiting while MAX_CLOSING packs already wait, so memory and unsynced bytes
 * stay bounded. */
static int close_pack(struct pack_writer *w, struct open_pack *p, struct err *err)
{
    struct syncer *sy = &w->sync;
    pthread_mutex_lock(&sy->lock);
    if (!sy->started)
        sy->started = pthread_create(&sy->thread, NULL, syncing_thread, w) == 0;
    if (!sy->started) {
        pthread_mutex_unlock(&sy->lock);
        return finish(w, p, err);
    }
    while (sy->queued >= MAX_CLOSING && !sy->failed)
        pthread_cond_wait(&sy->cond, &sy->lock);
    if (sy->tail)
        sy->tail->next = p;
    else
        sy->head = p;
    sy->tail = p;
    sy->queued++;
    pthread_cond_broadcast(&sy->cond);
    int rc = sy->failed ? err_set(err, sy->err.code, "%s", sy->err.msg) : FERRY_OK;
    pthread_mutex_unlock(&sy->lock);
    return rc;
}

/* Waits until every handed-over pack is durable and indexed; its first failure, if any. */
static int drain(struct pack_writer *w, struct err *err)
{
    struct syncer *sy = &w->sync;
    pthread_mutex_lock(&sy->lock);
    while (sy->queued)
        pthread_cond_wait(&sy->cond, &sy->lock);
    int rc = sy->failed ? err_set(err, sy->err.code, "%s", sy->err.msg) : FERRY_OK;
    pthread_mutex_unlock(&sy->lock);
    return rc;
}

void pack_writer_free(struct pack_writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->sync.lock);
    w->sync.quit = true;
    pthread_cond_broadcast(&w->sync.cond);
    pthread_mutex_unlock(&w->sync.lock);
    if (w->sync.started)
        pthread_join(w->sync.thread, NULL); /* after what it holds is done */
    pthread_mutex_destroy(&w->sync.lock);
    pthread_cond_destroy(&w->sync.cond);
    pthread_mutex_destroy(&w->lock);
    if (w->cur)
        free_pack(w->cur);
    pack_sealer_free(w->sealer);
    free(w);
}

static struct open_pack *open_pack(struct pack_writer *w, struct err *err)
{
    struct open_pack *p = xcalloc(1, sizeof(*p));
    crypto_random_hex(p->id, PACK_ID_LEN / 2);
    char *dir = xasprintf("%s/packs/%.2s", w->repo, p->id);
    char *path = pack_path(w->repo, p->id);
    p->fd = -1;
    if (fsio_mkdirs(dir, 0700, err) != FERRY_OK)
        goto out;
    p->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (p->fd < 0) {
        err_set(err, ERR_INTERNAL, "cannot create %s: %s", path, strerror(errno));
        goto out;
    }
    if (fsio_write_all(p->fd, PACK_MAGIC, 8, err) != FERRY_OK)
        goto out;
    p->size = 8;
    free(dir);
    free(path);
    return p;
out:
    free_pack(p);
    free(dir);
    free(path);
    return NULL;
}

static int pwrite_all(int fd, const uint8_t *data, size_t len, uint64_t offset, struct err *err)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, data, len, (off_t)offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return err_set(err, errno == ENOSPC ? ERR_STORAGE_FULL : ERR_INTERNAL,
                           "cannot write a pack: %s", strerror(errno ? errno : EIO));
        data += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return FERRY_OK;
}

/* Takes room for one chunk in the open pack (opening one when none is) and notes it there
 * (and in the writer's index, if any); a pack that is full takes no more. Under w->lock. */
static struct open_pack *take_room(struct pack_writer *w, struct chunk_ref *ref, char *pack_id,
                                   struct err *err)
{
    if (!w->cur && !(w->cur = open_pack(w, err)))
        return NULL;
    struct open_pack *p = w->cur;
    ref->offset = p->size;
    p->size += ref->stored_len;
    if (p->n_entries == p->cap_entries) {
        p->cap_entries = p->cap_entries ? p->cap_entries * 2 : 256;
        p->entries = xrealloc(p->entries, p->cap_entries * sizeof(*p->entries));
    }
    p->entries[p->n_entries++] = *ref;
    if (w->ix)
        pack_index_add(w->ix, p->id, ref);
    if (pack_id)
        memcpy(pack_id, p->id, PACK_ID_LEN + 1);
    p->writing++;
    if (p->size >= PACK_TARGET_SIZE) {
        p->full = true;
        w->cur = NULL;
    }
    return p;
}

/* Appends one chunk's stored bytes: its room is taken under the lock, its bytes copied in
 * outside it, so appenders on several threads do not wait for each other's copies. The
 * last appender out of a full pack hands it over. */
static int append(struct pack_writer *w, struct chunk_ref *ref, const uint8_t *stored,
                  char *pack_id, struct err *err)
{
    pthread_mutex_lock(&w->lock);
    struct open_pack *p = take_room(w, ref, pack_id, err);
    pthread_mutex_unlock(&w->lock);
    if (!p)
        return FERRY_ERR;
    int rc = pwrite_all(p->fd, stored, ref->stored_len, ref->offset, err);
    pthread_mutex_lock(&w->lock);
    p->failed |= rc != FERRY_OK;
    bool last_out = --p->writing == 0 && p->full;
    pthread_mutex_unlock(&w->lock);
    struct err close_err = {0};
    if (last_out && close_pack(w, p, &close_err) != FERRY_OK && rc == FERRY_OK)
        rc = err_set(err, close_err.code, "%s", close_err.msg);
    return rc;
}

int pack_writer_add(struct pack_writer *w, const uint8_t hash[32], const uint8_t *data, size_t len,
                    uint64_t *stored, struct err *err)
{
    struct chunk_ref ref;
    const uint8_t *bytes = NULL;
    pack_sealer_seal(w->sealer, hash, data, len, &ref, &bytes);
    *stored = ref.stored_len;
    return append(w, &ref, bytes, NULL, err);
}

int pack_writer_copy(struct pack_writer *w, const struct chunk_ref *ref, const uint8_t *stored,
                     struct err *err)
{
    struct chunk_ref copy = *ref;
    return append(w, &copy, stored, NULL, err);
}

int pack_writer_append(struct pack_writer *w, struct chunk_ref *ref, const uint8_t *stored,
                       char *pack_id, struct err *err)
{
    return append(w, ref, stored, pack_id, err);
}

int pack_writer_flush(struct pack_writer *w, struct err *err)
{
    pthread_mutex_lock(&w->lock);
    struct open_pack *p = w->cur;
    w->cur = NULL;
    if (p)
        p->full = true;
    bool idle = p && p->writing == 0; /* else its last appender hands it over */
    pthread_mutex_unlock(&w->lock);
    if (idle && close_pack(w, p, err) != FERRY_OK)
        return FERRY_ERR;
    return drain(w, err);
}

/* --- reading --------------------------------------------------------------------------- */

struct pack_reader {
    const char *repo;
    const uint8_t *key;
    const struct pack_index *ix;
    int fd;
    uint32_t fd_pack;
    uint8_t *sbuf, *pbuf, *dbuf; /* stored, plain (maybe compressed), decompressed */
    size_t scap, pcap, dcap;
    ZSTD_DCtx *dctx;
};

struct pack_reader *pack_reader_new(const char *repo, const uint8_t *key,
                                    const struct pack_index *ix)
{
    struct pack_reader *r = xcalloc(1, sizeof(*r));
    r->repo = repo;
    r->key = key;
    r->ix = ix;
    r->fd = -1;
    r->dctx = ZSTD_createDCtx();
    if (!r->dctx)
        abort();
    return r;
}

void pack_reader_free(struct pack_reader *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    free(r->sbuf);
    free(r->pbuf);
    free(r->dbuf);
    ZSTD_freeDCtx(r->dctx);
    free(r);
}

int pack_reader_stored(struct pack_reader *r, const struct chunk_ref *ref, const uint8_t **stored,
                       struct err *err)
{
    const char *id = r->ix->packs[ref->pack];
    if (r->fd < 0 || r->fd_pack != ref->pack) {
        if (r->fd >= 0)
            close(r->fd);
        char *path = pack_path(r->repo, id);
        r->fd = open(path, O_RDONLY | O_CLOEXEC);
        free(path);
        if (r->fd < 0)
            return err_set(err, ERR_INTERNAL, "pack %s is missing: %s", id, strerror(errno)),
                   PACK_DAMAGED;
        r->fd_pack = ref->pack;
    }
    grow(&r->sbuf, &r->scap, ref->stored_len);
    ssize_t n = pread(r->fd, r->sbuf, ref->stored_len, (off_t)ref->offset);
    if (n != (ssize_t)ref->stored_len)
        return err_set(err, ERR_INTERNAL, "pack %s is truncated", id), PACK_DAMAGED;
    *stored = r->sbuf;
    return FERRY_OK;
}

int pack_reader_chunk(struct pack_reader *r, const struct chunk_ref *ref, const uint8_t **data,
                      struct err *err)
{
    const uint8_t *stored = NULL;
    const char *id = r->ix->packs[ref->pack];
    int rc = pack_reader_stored(r, ref, &stored, err);
    if (rc != FERRY_OK)
        return rc;
    grow(&r->pbuf, &r->pcap, ref->stored_len);
    long plain = seal_decrypt(r->key, ref->hash, 32, stored, ref->stored_len, r->pbuf);
    if (plain < 0)
        return err_set(err, ERR_INTERNAL, "pack %s: a chunk at offset %llu is damaged", id,
                       (unsigned long long)ref->offset),
               PACK_DAMAGED;
    const uint8_t *raw = r->pbuf;
    if (ref->flags & PACK_FLAG_ZSTD) {
        grow(&r->dbuf, &r->dcap, ref->raw_len ? ref->raw_len : 1);
        size_t n = ZSTD_decompressDCtx(r->dctx, r->dbuf, ref->raw_len, r->pbuf, (size_t)plain);
        if (ZSTD_isError(n) || n != ref->raw_len)
            return err_set(err, ERR_INTERNAL, "pack %s: a chunk at offset %llu does not decompress",
                           id, (unsigned long long)ref->offset),
                   PACK_DAMAGED;
        raw = r->dbuf;
    } else if ((size_t)plain != ref->raw_len) {
        return err_set(err, ERR_INTERNAL, "pack %s: a chunk at offset %llu has the wrong length",
                       id, (unsigned long long)ref->offset),
               PACK_DAMAGED;
    }
    uint8_t digest[32];
    SHA256(raw, ref->raw_len, digest);
    if (memcmp(digest, ref->hash, 32) != 0)
        return err_set(err, ERR_INTERNAL, "pack %s: a chunk at offset %llu does not match its hash",
                       id, (unsigned long long)ref->offset),
               PACK_DAMAGED;
    *data = raw;
    return FERRY_OK;
}
