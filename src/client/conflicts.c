/* conflicts.c - the conflicts a replica's pushes caused: delivered to the app's handler
 * once each (ferry_client_conflicts.delivered), and resolved through the server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/replica.h"
#include "client/transport.h"
#include "ferry.h"

void ferry_set_conflict_handler(ferry_replica *r, ferry_conflict_fn fn, void *ctx)
{
    r->conflict_fn = fn;
    r->conflict_ctx = ctx;
}

static int mark_delivered(ferry_replica *r, const char *id)
{
    return fc_run_text(r, "UPDATE ferry_client_conflicts SET delivered = 1 WHERE id = ?", id, NULL);
}

int fc_deliver_conflicts(ferry_replica *r)
{
    if (!r->conflict_fn)
        return FERRY_CLIENT_OK;
    sqlite3_stmt *st = fc_prepare(r, "SELECT id, tbl, pk, body FROM ferry_client_conflicts"
                                     " WHERE delivered = 0 ORDER BY rowid");
    int rc = st ? FERRY_CLIENT_OK : FERRY_CLIENT_ELOCAL;
    while (rc == FERRY_CLIENT_OK && sqlite3_step(st) == SQLITE_ROW) {
        struct ferry_conflict c = {
            .id = (const char *)sqlite3_column_text(st, 0),
            .table = (const char *)sqlite3_column_text(st, 1),
            .row_id = (const char *)sqlite3_column_text(st, 2),
            .details = (const char *)sqlite3_column_text(st, 3),
        };
        r->conflict_fn(r->conflict_ctx, &c);
        rc = mark_delivered(r, c.id);
    }
    sqlite3_finalize(st);
    return rc;
}

/* A conflict id goes into a URL path: ferry's ids are cf_ and hex digits. */
static bool plain_id(const char *id)
{
    if (!id || !*id || strlen(id) > 64)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return false;
    return true;
}

int ferry_resolve(ferry_replica *r, const char *conflict_id, enum ferry_keep keep)
{
    if (!r)
        return FERRY_CLIENT_EINVAL;
    r->error[0] = '\0';
    if (!plain_id(conflict_id))
        return fc_fail(r, FERRY_CLIENT_EINVAL, "not a conflict id: %s",
                       conflict_id ? conflict_id : "(null)");
    if (keep != FERRY_KEEP_SERVER && keep != FERRY_KEEP_CLIENT)
        return fc_fail(r, FERRY_CLIENT_EINVAL, "keep must be FERRY_KEEP_SERVER or _CLIENT");
    char *path = xasprintf("/api/v1/sync/conflicts/%s/resolve", conflict_id);
    json_t *body =
        json_pack("{s:s}", "resolution", keep == FERRY_KEEP_SERVER ? "keep_server" : "take_client");
    json_t *answer = NULL;
    long status = 0;
    int rc = fc_http(r, "POST", path, body, &status, &answer);
    if (rc == FERRY_CLIENT_OK && status != 200)
        rc = fc_fail(r, FERRY_CLIENT_ESERVER, "resolve %s: HTTP %ld: %s", conflict_id, status,
                     fc_answer_message(answer));
    if (rc == FERRY_CLIENT_OK)
        rc = fc_run_text(r, "UPDATE ferry_client_conflicts SET status = 'resolved' WHERE id = ?",
                         conflict_id, NULL);
    json_decref(answer);
    json_decref(body);
    free(path);
    return rc;
}
