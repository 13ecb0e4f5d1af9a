/* path.c - see path.h. realpath(3) resolves the part of a path that exists; the rest
 * (a file about to be created) is checked lexically, so a path is judged the same way
 * whether or not its last components exist yet. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/path.h"

int path_clean_relative(const char *rel, char **out, struct err *err)
{
    struct buf b;
    size_t len = strlen(rel);

    *out = NULL;
    if (len == 0)
        return err_set(err, ERR_INVALID, "path is empty");
    if (len > PATH_MAX_LEN)
        return err_set(err, ERR_INVALID, "path is longer than %d bytes", PATH_MAX_LEN);
    if (rel[0] == '/')
        return err_set(err, ERR_INVALID, "path must be relative, not '%.200s'", rel);
    for (const char *p = rel; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return err_set(err, ERR_INVALID, "path contains a control character");
        if (*p == '\\')
            return err_set(err, ERR_INVALID, "path contains a backslash");
    }
    buf_init(&b);
    for (const char *seg = rel; *seg;) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        if (n == 2 && seg[0] == '.' && seg[1] == '.') {
            buf_cleanup(&b);
            return err_set(err, ERR_INVALID, "path must not contain '..'");
        }
        if (n > 0 && !(n == 1 && seg[0] == '.')) {
            if (b.len)
                buf_append(&b, "/", 1);
            buf_append(&b, seg, n);
        }
        seg += n;
        while (*seg == '/')
            seg++;
    }
    if (!b.len) {
        buf_cleanup(&b);
        return err_set(err, ERR_INVALID, "path names no file");
    }
    *out = buf_steal(&b);
    return FERRY_OK;
}

bool path_within(const char *root, const char *path)
{
    size_t n = strlen(root);
    if (n > 1 && root[n - 1] == '/')
        n--;
    if (strncmp(root, path, n) != 0)
        return false;
    return path[n] == '\0' || path[n] == '/' || (n == 1 && root[0] == '/');
}

/* Resolves the longest existing prefix of abs (which is absolute and has no ".."
 * segments) with realpath and appends the rest unchanged. */
static int resolve_existing(const char *abs, char **out, struct err *err)
{
    char *work = xstrdup(abs), resolved[PATH_MAX];
    int rc = FERRY_ERR;

    for (;;) {
        if (realpath(work, resolved)) {
            const char *rest = abs + strlen(work); /* "" or "/x/y": not yet existing */
            bool at_root = strcmp(resolved, "/") == 0;
            *out = xasprintf("%s%s", at_root && *rest ? "" : resolved, rest);
            rc = FERRY_OK;
            break;
        }
        if (errno != ENOENT) {
            err_set(err, ERR_FORBIDDEN, "cannot resolve path: %s", strerror(errno));
            break;
        }
        char *slash = strrchr(work, '/');
        if (!slash || slash == work) {
            err_set(err, ERR_NOT_FOUND, "no part of the path exists");
            break;
        }
        *slash = '\0';
    }
    free(work);
    return rc;
}

int path_confine(const char *root, const char *rel, char **out, struct err *err)
{
    char *clean = NULL, *joined = NULL, *real_root = NULL, *resolved = NULL;
    char buf[PATH_MAX];
    int rc = FERRY_ERR;

    *out = NULL;
    if (path_clean_relative(rel, &clean, err) != FERRY_OK)
        goto out;
    if (!realpath(root, buf)) {
        err_set(err, ERR_INTERNAL, "root %s is not usable: %s", root, strerror(errno));
        goto out;
    }
    real_root = xstrdup(buf);
    joined = xasprintf("%s/%s", real_root, clean);
    if (resolve_existing(joined, &resolved, err) != FERRY_OK)
        goto out;
    if (!path_within(real_root, resolved)) {
        err_set(err, ERR_FORBIDDEN, "path leads outside its root");
        goto out;
    }
    *out = resolved;
    resolved = NULL;
    rc = FERRY_OK;
out:
    free(clean);
    free(joined);
    free(real_root);
    free(resolved);
    return rc;
}

int path_in_roots(const char *const *roots, size_t n_roots, const char *abs_path, char **out,
                  struct err *err)
{
    char *clean = NULL, *resolved = NULL, buf[PATH_MAX];
    int rc = FERRY_ERR;

    *out = NULL;
    if (abs_path[0] != '/')
        return err_set(err, ERR_INVALID, "path must be absolute: '%.200s'", abs_path);
    if (strcmp(abs_path, "/") != 0 && path_clean_relative(abs_path + 1, &clean, err) != FERRY_OK)
        return FERRY_ERR;
    char *normal = xasprintf("/%s", clean ? clean : "");
    if (resolve_existing(normal, &resolved, err) != FERRY_OK)
        goto out;
    for (size_t i = 0; i < n_roots; i++) {
        if (realpath(roots[i], buf) && path_within(buf, resolved)) {
            *out = resolved;
            resolved = NULL;
            rc = FERRY_OK;
            goto out;
        }
    }
    err_set(err, ERR_FORBIDDEN, "'%.200s' is outside the configured file roots", abs_path);
out:
    free(normal);
    free(clean);
    free(resolved);
    return rc;
}
