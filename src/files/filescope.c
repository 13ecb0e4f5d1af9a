/* filescope.c - see filescope.h. The rules live here once, in C for single entries and
 * as SQL for listings and the change feed, so that both say the same. */
#include <stdlib.h>
#include <string.h>

#include "files/filescope.h"
#include "util/buf.h"
#include "util/path.h"

void filescope_free_folders(char **folders)
{
    if (!folders)
        return;
    for (char **f = folders; *f; f++)
        free(*f);
    free(folders);
}

int filescope_parse_folders(const char *csv, char ***out, size_t *n, struct err *err)
{
    char *copy = xstrdup(csv ? csv : ""), *save = NULL;
    int rc = FERRY_OK;
    *n = 0;
    *out = xcalloc(1, sizeof(char *));
    for (char *item = strtok_r(copy, ",", &save); item && rc == FERRY_OK;
         item = strtok_r(NULL, ",", &save)) {
        char *end = item + strlen(item), *clean = NULL;
        while (*item == ' ' || *item == '/')
            item++;
        while (end > item && (end[-1] == ' ' || end[-1] == '/'))
            *--end = '\0';
        if (!*item)
            continue;
        struct err why = {0};
        if (path_clean_relative(item, &clean, &why) != FERRY_OK) {
            rc = err_set(err, ERR_INVALID, "shared-folder '%s': %s", item, why.msg);
            break;
        }
        *out = xrealloc(*out, (*n + 2) * sizeof(char *));
        (*out)[(*n)++] = clean;
        (*out)[*n] = NULL;
    }
    free(copy);
    if (rc != FERRY_OK) {
        filescope_free_folders(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

bool filescope_is_shared(const char *const *shared, size_t n_shared, const char *path)
{
    for (size_t i = 0; i < n_shared; i++) {
        size_t len = strlen(shared[i]);
        if (!strncmp(path, shared[i], len) && path[len] == '/')
            return true;
    }
    return false;
}

const char *filescope_owner_of(const char *const *shared, size_t n_shared, const char *user_id,
                               const char *path)
{
    if (!user_id || !*user_id || filescope_is_shared(shared, n_shared, path))
        return NULL;
    return user_id;
}

const char *filescope_owner(const struct filescope *s, const char *path)
{
    return filescope_owner_of(s->shared, s->n_shared, s->user_id, path);
}

bool filescope_sees(const struct filescope *s, const char *owner, const char *path)
{
    if (s->admin)
        return true;
    bool shared = filescope_is_shared(s->shared, s->n_shared, path);
    if (!owner)
        return shared;
    return !shared && s->user_id && !strcmp(owner, s->user_id);
}

char *filescope_key(const char *owner, const char *path)
{
    if (!owner)
        return xstrdup(path);
    return xasprintf("/%zu:%s/%s", strlen(owner), owner, path);
}

/* text as an SQL string literal (quotes doubled; both dialects read it the same). */
static void put_literal(struct buf *b, const char *text)
{
    buf_puts(b, "'");
    for (const char *p = text; *p; p++) {
        buf_append(b, p, 1);
        if (*p == '\'')
            buf_append(b, p, 1);
    }
    buf_puts(b, "'");
}

/* Whether alias.path lies in a shared folder, as SQL. substr and length count
 * characters on both dialects, and need no wildcards escaped as LIKE would. */
static void put_shared(struct buf *b, const struct filescope *s, const char *alias)
{
    if (!s->n_shared) {
        buf_puts(b, "1 = 0");
        return;
    }
    buf_puts(b, "(");
    for (size_t i = 0; i < s->n_shared; i++) {
        char *prefix = xasprintf("%s/", s->shared[i]);
        buf_printf(b, "%ssubstr(%s.path, 1, length(", i ? " OR " : "", alias);
        put_literal(b, prefix);
        buf_puts(b, ")) = ");
        put_literal(b, prefix);
        free(prefix);
    }
    buf_puts(b, ")");
}

char *filescope_shared_sql(const struct filescope *s, const char *alias)
{
    struct buf b;
    buf_init(&b);
    put_shared(&b, s, alias);
    return buf_steal(&b);
}

char *filescope_sql(const struct filescope *s, const char *alias)
{
    return filescope_sql_bound(s, alias, NULL);
}

char *filescope_sql_bound(const struct filescope *s, const char *alias, const char *user_ref)
{
    struct buf b;
    if (!s || s->admin)
        return xstrdup("1 = 1");
    buf_init(&b);
    buf_puts(&b, "(");
    if (s->user_id && *s->user_id) {
        buf_printf(&b, "(%s.owner = ", alias);
        if (user_ref)
            buf_puts(&b, user_ref);
        else
            put_literal(&b, s->user_id);
        buf_puts(&b, " AND NOT ");
        put_shared(&b, s, alias);
        buf_puts(&b, ") OR ");
    }
    buf_printf(&b, "(%s.owner IS NULL AND ", alias);
    put_shared(&b, s, alias);
    buf_puts(&b, "))");
    return buf_steal(&b);
}
