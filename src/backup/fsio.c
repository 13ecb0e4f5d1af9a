/* fsio.c - see fsio.h. Every error names the file and the system's reason. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/fsio.h"

int fsio_write_all(int fd, const void *data, size_t len, struct err *err)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return err_set(err, errno == ENOSPC ? ERR_STORAGE_FULL : ERR_INTERNAL,
                           "cannot write: %s", strerror(errno ? errno : EIO));
        p += n;
        len -= (size_t)n;
    }
    return FERRY_OK;
}

int fsio_sync_dir(const char *path, int is_dir, struct err *err)
{
    char *copy = xstrdup(path);
    const char *dir = is_dir ? copy : dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    int rc = FERRY_OK;
    if (fd < 0 || fsync(fd) != 0)
        rc = err_set(err, ERR_INTERNAL, "cannot sync the folder %s: %s", dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(copy);
    return rc;
}

int fsio_write_atomic(const char *path, const void *data, size_t len, struct err *err)
{
    int rc = FERRY_ERR;
    char *tmp = xasprintf("%s.tmp-%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        err_set(err, ERR_INTERNAL, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (fsio_write_all(fd, data, len, err) != FERRY_OK)
        goto out;
    if (fsync(fd) != 0) {
        err_set(err, ERR_INTERNAL, "cannot sync %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, path) != 0) {
        err_set(err, ERR_INTERNAL, "cannot rename %s: %s", tmp, strerror(errno));
        goto out;
    }
    rc = fsio_sync_dir(path, 0, err);
out:
    if (fd >= 0)
        close(fd);
    if (rc != FERRY_OK)
        unlink(tmp);
    free(tmp);
    return rc;
}

int fsio_read_all(const char *path, size_t max, uint8_t **out, size_t *len, struct err *err)
{
    int rc = FERRY_ERR;
    struct stat st;
    uint8_t *data = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_set(err, errno == ENOENT ? ERR_NOT_FOUND : ERR_INTERNAL, "cannot open %s: %s", path,
                strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0 || (size_t)st.st_size > max) {
        err_set(err, ERR_INVALID, "%s is larger than %zu bytes", path, max);
        goto out;
    }
    data = xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            err_set(err, ERR_INTERNAL, "cannot read %s: %s", path, strerror(n < 0 ? errno : EIO));
            goto out;
        }
        got += (size_t)n;
    }
    data[got] = 0;
    *out = data;
    *len = got;
    data = NULL;
    rc = FERRY_OK;
out:
    if (fd >= 0)
        close(fd);
    free(data);
    return rc;
}

int fsio_mkdirs(const char *dir, unsigned mode, struct err *err)
{
    char *copy = xstrdup(dir);
    int rc = FERRY_OK;
    for (char *p = copy + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(copy, mode) != 0 && errno != EEXIST) {
            rc = err_set(err, ERR_INTERNAL, "cannot make the folder %s: %s", copy, strerror(errno));
            break;
        }
        *p = saved;
        if (!saved)
            break;
    }
    free(copy);
    return rc;
}
