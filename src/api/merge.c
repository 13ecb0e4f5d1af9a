/* merge.c - EonaCat.Sync's POST /api/v1/merge/files: a 3-way merge of three files named by
 * path (baseFile, sourceFile, targetFile, under the configured file roots) or given
 * inline (baseContent, sourceContent, targetContent), with a favor for conflicts and an
 * optional outputFile the result is written to. The merge itself is merge/merge.c. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "app.h"
#include "merge/merge.h"
#include "util/jsonutil.h"
#include "util/path.h"

/* One side of the merge: its text, and the buffer holding it when it was read from a
 * file (inline text stays in the request's JSON). */
struct side {
    struct merge_text text;
    char *owned;
};

/* Resolves a path named by the request: under a file root, never in ferry's data folder. */
static int confine(const struct app *app, const char *path, char **out, struct err *err)
{
    char data[PATH_MAX];
    if (!app->n_file_roots)
        return err_set(err, ERR_FORBIDDEN,
                       "no file roots are configured (--file-root), so no file may be named");
    if (path_in_roots((const char *const *)app->file_roots, app->n_file_roots, path, out, err) !=
        FERRY_OK)
        return FERRY_ERR;
    if (realpath(app->cfg->data_dir, data) && path_within(data, *out)) {
        free(*out);
        *out = NULL;
        return err_set(err, ERR_FORBIDDEN, "files in ferry's own data folder cannot be merged");
    }
    return FERRY_OK;
}

/* Reads side `name` ("base", "source", "target") from nameFile or nameContent. */
static int read_side(struct request *req, json_t *body, const char *name, struct side *s,
                     struct err *err)
{
    char file_key[32], content_key[32];
    const char *path = NULL, *content = NULL;
    char *resolved = NULL;
    int rc;

    snprintf(file_key, sizeof(file_key), "%sFile", name);
    snprintf(content_key, sizeof(content_key), "%sContent", name);
    if (jsonutil_get_string(body, file_key, false, &path, err) != FERRY_OK ||
        jsonutil_get_string(body, content_key, false, &content, err) != FERRY_OK)
        return FERRY_ERR;
    if (!path == !content)
        return err_set(err, ERR_INVALID, "give exactly one of '%s' and '%s'", file_key,
                       content_key);
    if (content) {
        s->text.data = content;
        s->text.len = json_string_length(json_object_get(body, content_key));
        return merge_check_text(&s->text, content_key, err);
    }
    if (confine(req->app, path, &resolved, err) != FERRY_OK)
        return FERRY_ERR;
    rc = merge_read_file(resolved, file_key, &s->owned, &s->text.len, err);
    s->text.data = s->owned;
    free(resolved);
    return rc;
}

/* Writes the merged text to outputFile when the request names one. */
static int write_output(struct request *req, json_t *body, const struct merge_result *r,
                        struct err *err)
{
    const char *path = NULL;
    char *resolved = NULL;
    if (jsonutil_get_string(body, "outputFile", false, &path, err) != FERRY_OK)
        return FERRY_ERR;
    if (!path)
        return FERRY_OK;
    if (confine(req->app, path, &resolved, err) != FERRY_OK)
        return FERRY_ERR;
    int rc = merge_write_file(resolved, r->merged, r->merged_len, err);
    free(resolved);
    return rc;
}

static int merge_files(struct request *req, struct err *err)
{
    struct side base = {0}, source = {0}, target = {0};
    struct merge_result r = {0};
    enum merge_favor favor = MERGE_FAVOR_SOURCE; /* the seed's example resolves to source */
    const char *favor_name = NULL, *output = NULL;
    char *text = NULL;
    size_t text_len = 0;
    int rc = FERRY_ERR;
    json_t *body = http_json_object(req);

    if (!body)
        return FERRY_OK;
    /* Fields are checked before any file is read, so a bad request costs no reading. */
    if (jsonutil_get_string(body, "favor", false, &favor_name, err) != FERRY_OK ||
        (favor_name && merge_favor_parse(favor_name, &favor, err) != FERRY_OK) ||
        jsonutil_get_string(body, "outputFile", false, &output, err) != FERRY_OK ||
        read_side(req, body, "base", &base, err) != FERRY_OK ||
        read_side(req, body, "source", &source, err) != FERRY_OK ||
        read_side(req, body, "target", &target, err) != FERRY_OK ||
        merge_texts(&base.text, &source.text, &target.text, favor, &r, err) != FERRY_OK ||
        merge_check_answer(&r, err) != FERRY_OK || write_output(req, body, &r, err) != FERRY_OK)
        goto out;
    text = merge_result_dump(&r, favor, &text_len);
    http_reply_text(req, 200, "application/json", text, text_len);
    rc = FERRY_OK;
out:
    free(text);
    merge_result_cleanup(&r);
    free(base.owned);
    free(source.owned);
    free(target.owned);
    return rc;
}

static const struct route routes[] = {
    {M_POST, "/api/v1/merge/files", merge_files, ROLE_ADMIN | ROLE_USER, SURFACE_V1, ROUTE_JSON,
     NULL},
};

const struct route_table api_merge_routes = {routes, sizeof(routes) / sizeof(routes[0])};
