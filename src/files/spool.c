/* spool.c - see spool.h. Hashing is OpenSSL's incremental SHA-256. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "files/spool.h"
#include "util/crypto.h"

struct spool {
    char *tmp_path;
    int fd;
    EVP_MD_CTX *md;
    uint64_t size;
};

int spool_io_error(struct err *err, const char *what, const char *path)
{
    int e = errno;
    bool full = e == ENOSPC || e == EDQUOT || e == EFBIG;
    return err_set(err, full ? ERR_STORAGE_FULL : ERR_INTERNAL, "%s %s: %s", what, path,
                   strerror(e));
}

int spool_new(const char *dir, struct spool **out, struct err *err)
{
    struct spool *s = xcalloc(1, sizeof(*s));
    s->tmp_path = xasprintf("%s/.spool-XXXXXX", dir);
    s->fd = mkostemp(s->tmp_path, O_CLOEXEC);
    *out = NULL;
    if (s->fd < 0) {
        int rc = spool_io_error(err, "cannot create", s->tmp_path);
        free(s->tmp_path);
        free(s);
        return rc;
    }
    s->md = crypto_digest_new(EVP_sha256());
    *out = s;
    return FERRY_OK;
}

int spool_write(struct spool *s, const void *data, size_t len, struct err *err)
{
    const char *p = data;
    EVP_DigestUpdate(s->md, data, len);
    while (len > 0) {
        ssize_t n = write(s->fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return spool_io_error(err, "cannot write", s->tmp_path);
        p += n;
        len -= (size_t)n;
        s->size += (uint64_t)n;
    }
    return FERRY_OK;
}

uint64_t spool_size(const struct spool *s)
{
    return s->size;
}

void spool_hash(const struct spool *s, char hex[65])
{
    EVP_MD_CTX *copy = EVP_MD_CTX_new();
    if (!copy || EVP_MD_CTX_copy_ex(copy, s->md) != 1)
        abort();
    crypto_sha256_final_hex(copy, hex);
    EVP_MD_CTX_free(copy);
}

void spool_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static void spool_free(struct spool *s)
{
    if (s->fd >= 0)
        close(s->fd);
    EVP_MD_CTX_free(s->md);
    free(s->tmp_path);
    free(s);
}

int spool_keep(struct spool *s, const char *final_path, struct err *err)
{
    int rc = FERRY_OK;
    if (fsync(s->fd) != 0)
        rc = spool_io_error(err, "cannot flush", s->tmp_path);
    else if (rename(s->tmp_path, final_path) != 0)
        rc = spool_io_error(err, "cannot rename to", final_path);
    if (rc != FERRY_OK) {
        unlink(s->tmp_path);
    } else {
        char *dir = xstrdup(final_path);
        spool_sync_dir(dirname(dir));
        free(dir);
    }
    spool_free(s);
    return rc;
}

void spool_discard(struct spool *s)
{
    if (!s)
        return;
    unlink(s->tmp_path);
    spool_free(s);
}
