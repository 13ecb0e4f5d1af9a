/* path.h - confining paths that come from requests to configured roots: no "..", no
 * absolute escapes, no NUL or control bytes, and no symlink that leads out. */
#ifndef FERRY_PATH_H
#define FERRY_PATH_H

#include <stdbool.h>
#include <stddef.h>

#include "ferry.h"

#define PATH_MAX_LEN 4096

/* Normalises a relative path from a request: collapses "//" and "." segments and
 * refuses "..", a leading "/", backslashes, control bytes and an empty result.
 * *out is newly allocated ("a/b/c"). ERR_INVALID says what was wrong. */
int path_clean_relative(const char *rel, char **out, struct err *err);

/* True when path equals root or lies under it (component-wise: /data is not under
 * /dat). Both must be absolute and normalised. */
bool path_within(const char *root, const char *path);

/* Joins root and a request's relative path and checks the result stays under root
 * even after symlinks are resolved (for the part of the path that exists). *out is the
 * absolute path under root's real path. ERR_FORBIDDEN when it would escape. */
int path_confine(const char *root, const char *rel, char **out, struct err *err);

/* Checks an absolute path named by a request (EonaCat.Sync's sourceDirectory and the like)
 * against a list of roots, resolving symlinks of the existing part. *out is the
 * resolved absolute path. ERR_FORBIDDEN when it is under none of them. */
int path_in_roots(const char *const *roots, size_t n_roots, const char *abs_path, char **out,
                  struct err *err);

#endif
