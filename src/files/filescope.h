/* filescope.h - who sees which file entries. Every entry lives in one namespace: a user's
 * own (owner = the user id: private to that user's credentials, all of its tokens,
 * devices and JWTs) or the common one (owner NULL): paths under a configured shared
 * folder, entries from before files had owners, and those an admin credential without a
 * user id wrote. Paths under a shared folder always name the common namespace, so every
 * user reads and writes the same file there; a common entry outside every shared folder
 * is seen by admins only. Admins see every namespace. */
#ifndef FERRY_FILESCOPE_H
#define FERRY_FILESCOPE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "ferry.h"

struct filescope {
    const char *user_id; /* the caller's user; "" or NULL for none */
    bool admin;
    const char *const *shared; /* shared folders as clean relative paths ("team/docs") */
    size_t n_shared;
};

/* Parses a comma-separated list of shared folders (path prefixes; surrounding slashes
 * and spaces ignored) into clean relative paths. *out is NULL-terminated; free it with
 * filescope_free_folders(). ERR_INVALID naming a folder that is not a relative path. */
int filescope_parse_folders(const char *csv, char ***out, size_t *n, struct err *err);
void filescope_free_folders(char **folders);

/* Whether path lies in one of the shared folders. */
bool filescope_is_shared(const char *const *shared, size_t n_shared, const char *path);

/* The namespace that path names for a writer with user_id ("" or NULL for none): NULL
 * (common) under a shared folder or without a user, else user_id. */
const char *filescope_owner_of(const char *const *shared, size_t n_shared, const char *user_id,
                               const char *path);

/* The namespace path names for s (see filescope_owner_of). */
const char *filescope_owner(const struct filescope *s, const char *path);

/* Whether s may see an entry of namespace owner (NULL: common) at path. */
bool filescope_sees(const struct filescope *s, const char *owner, const char *path);

/* The entry's primary key in ferry_files: the path itself in the common namespace (so
 * entries from before owners keep their keys), "/<length of owner>:<owner>/<path>" in a
 * user's (a clean path never starts with '/', and the length keeps it unambiguous). The
 * caller frees it. */
char *filescope_key(const char *owner, const char *path);

/* An SQL condition that holds for the ferry_files rows (alias.owner, alias.path) s may
 * see: an index-friendly test of the owner, with the shared folders and the user as
 * quoted literals. NULL s: every row. The caller frees it. */
char *filescope_sql(const struct filescope *s, const char *alias);

/* filescope_sql with the user written as user_ref (a placeholder such as "$4", which the
 * caller binds to s->user_id when s has a user) instead of a literal: one statement text
 * for every user, so that one prepared statement serves them all. */
char *filescope_sql_bound(const struct filescope *s, const char *alias, const char *user_ref);

/* Whether alias.path lies in a shared folder, as SQL (literals quoted; "1 = 0" when
 * there are none). The caller frees it. */
char *filescope_shared_sql(const struct filescope *s, const char *alias);

/* What devices see of a change in the files namespace: its id is the entry's path (this
 * column's value), and this column, the table's internal key, is left out of its data. */
#define FILESCOPE_ID_COLUMN "path"
#define FILESCOPE_HIDDEN_COLUMN "file_key"

#endif
