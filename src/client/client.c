/* client.c - libferry's public functions (ferry/client.h): opening a replica, and the
 * sync round: push the outbox in batches, pull by cursor, acknowledge, rebuild on 410. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/replica.h"
#include "client/transport.h"
#include "ferry.h"

#define SYNC_PATH "/api/v1/sync"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_start(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int load_replica_id(ferry_replica *r)
{
    sqlite3_stmt *st = NULL;
    int rc = FERRY_CLIENT_ELOCAL;
    if (sqlite3_prepare_v2(r->db, "SELECT replica_id FROM ferry_client_state WHERE id = 1", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        r->replica_id = xstrdup((const char *)sqlite3_column_text(st, 0));
        rc = FERRY_CLIENT_OK;
    }
    sqlite3_finalize(st);
    return rc == FERRY_CLIENT_OK ? rc : fc_fail(r, rc, "replica: cannot read its id");
}

static int open_db(ferry_replica *r, const char *path)
{
    if (sqlite3_open_v2(path, &r->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK)
        return fc_fail(r, FERRY_CLIENT_ELOCAL, "cannot open %s: %s", path,
                       r->db ? sqlite3_errmsg(r->db) : "out of memory");
    /* WAL lets the app read while libferry writes; the busy timeout waits for the app's
     * own write transactions rather than failing. */
    sqlite3_busy_timeout(r->db, 10000);
    return fc_exec(r, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
}

static int take_options(ferry_replica *r, const struct ferry_client_options *o)
{
    if (!o || !o->url || !*o->url || !o->token || !*o->token)
        return fc_fail(r, FERRY_CLIENT_EINVAL, "the server URL and a token are required");
    if (strncmp(o->url, "http://", 7) != 0 && strncmp(o->url, "https://", 8) != 0)
        return fc_fail(r, FERRY_CLIENT_EINVAL,
                       "the server URL must start with http:// or https://");
    r->url = xstrdup(o->url);
    size_t len = strlen(r->url);
    while (len && r->url[len - 1] == '/')
        r->url[--len] = '\0';
    r->token = xstrdup(o->token);
    r->ca_file = o->ca_file ? xstrdup(o->ca_file) : NULL;
    for (const char *p = o->device_id; p && *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", *p))
            return fc_fail(r, FERRY_CLIENT_EINVAL, "not a device id: %s", o->device_id);
    r->device_id = o->device_id && *o->device_id ? xstrdup(o->device_id) : NULL;
    r->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000;
    r->max_attempts = o->max_attempts > 0 ? o->max_attempts : 6;
    r->batch_size = o->batch_size > 0 ? o->batch_size : 500;
    r->page_size = o->page_size > 0 ? o->page_size : FC_PAGE_SIZE;
    r->poll_s = o->poll_s > 0 ? o->poll_s : 25;
    return FERRY_CLIENT_OK;
}

/* The schema the server last sent, kept in the replica (NULL when there is none). */
static json_t *saved_schema(ferry_replica *r)
{
    sqlite3_stmt *st = NULL;
    json_t *schema = NULL;
    if (sqlite3_prepare_v2(r->db, "SELECT body FROM ferry_client_schema WHERE id = 1", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        schema = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
    sqlite3_finalize(st);
    return schema;
}

/* Sets the replica up from the server's schema, kept for opening offline: a replica set
 * up once opens without the server (the app sells, writes, reads; ferry_sync then fails
 * with FERRY_CLIENT_ENETWORK until the server is back). */
static int fetch_schema(ferry_replica *r)
{
    json_t *answer = NULL;
    long status = 0;
    int rc = fc_http(r, "GET", SYNC_PATH "/schema", NULL, &status, &answer);
    if (rc == FERRY_CLIENT_ENETWORK || (rc == FERRY_CLIENT_OK && status >= 500)) {
        json_t *saved = saved_schema(r);
        if (saved) {
            json_decref(answer);
            answer = saved;
            rc = FERRY_CLIENT_OK;
            status = 0; /* set up from the saved copy: nothing to save */
        }
    }
    if (rc == FERRY_CLIENT_OK && status != 200 && status != 0)
        rc = fc_fail(r, FERRY_CLIENT_ESERVER, "GET schema: HTTP %ld: %s", status,
                     fc_answer_message(answer));
    if (rc == FERRY_CLIENT_OK)
        rc = fc_replica_setup(r, answer);
    if (rc == FERRY_CLIENT_OK && status == 200) {
        char *text = json_dumps(answer, JSON_COMPACT);
        rc = fc_run_text(r, "INSERT OR REPLACE INTO ferry_client_schema(id, body) VALUES (1, ?)",
                         text, NULL);
        free(text);
    }
    json_decref(answer);
    return rc;
}

ferry_replica *fc_bare_open(const struct ferry_client_options *opts, int *rc)
{
    ferry_replica *r = xcalloc(1, sizeof(*r));
    pthread_once(&curl_once, curl_start);
    if ((*rc = take_options(r, opts)) == FERRY_CLIENT_OK && !(r->curl = curl_easy_init()))
        *rc = fc_fail(r, FERRY_CLIENT_ENETWORK, "libcurl failed");
    return r;
}

ferry_replica *fc_peer(ferry_replica *r, int i)
{
    if (r->peers[i])
        return r->peers[i];
    struct ferry_client_options o = {.url = r->url,
                                     .token = r->token,
                                     .ca_file = r->ca_file,
                                     .timeout_ms = r->timeout_ms,
                                     .max_attempts = r->max_attempts,
                                     .device_id = r->device_id};
    int rc;
    ferry_replica *peer = fc_bare_open(&o, &rc);
    if (rc != FERRY_CLIENT_OK) {
        fc_fail(r, rc, "%s", peer->error);
        ferry_replica_close(peer);
        return NULL;
    }
    peer->owner = r;
    return r->peers[i] = peer;
}

int ferry_request(const struct ferry_client_options *opts, const char *method, const char *path,
                  const char *body, long *status, char **answer, char *errbuf, unsigned errlen)
{
    json_t *doc = NULL, *reply = NULL;
    int rc;
    ferry_replica *r = fc_bare_open(opts, &rc);

    *answer = NULL;
    if (rc == FERRY_CLIENT_OK && (!method || !path || *path != '/'))
        rc = fc_fail(r, FERRY_CLIENT_EINVAL, "a method and a path starting with / are required");
    if (rc == FERRY_CLIENT_OK && body && !(doc = json_loads(body, JSON_DECODE_ANY, NULL)))
        rc = fc_fail(r, FERRY_CLIENT_EINVAL, "the body is not JSON");
    if (rc == FERRY_CLIENT_OK) {
        rc = fc_http(r, method, path, doc, status, &reply);
        if (rc == FERRY_CLIENT_EAUTH)
            rc = FERRY_CLIENT_OK;
    }
    if (rc == FERRY_CLIENT_OK)
        *answer = reply ? json_dumps(reply, JSON_COMPACT | JSON_ENCODE_ANY) : xstrdup("");
    else if (errbuf && errlen)
        snprintf(errbuf, errlen, "%s", r->error);
    json_decref(doc);
    json_decref(reply);
    ferry_replica_close(r);
    return rc;
}

int ferry_replica_open(const char *path, const struct ferry_client_options *opts,
                       ferry_replica **out, char *errbuf, unsigned errlen)
{
    ferry_replica *r = xcalloc(1, sizeof(*r));
    int rc = FERRY_CLIENT_EINVAL;

    *out = NULL;
    pthread_once(&curl_once, curl_start);
    if (!path)
        rc = fc_fail(r, FERRY_CLIENT_EINVAL, "a replica path is required");
    else if ((rc = take_options(r, opts)) == FERRY_CLIENT_OK && (rc = open_db(r, path)) == 0) {
        r->curl = curl_easy_init();
        rc = r->curl ? fetch_schema(r) : fc_fail(r, FERRY_CLIENT_ENETWORK, "libcurl failed");
        if (rc == FERRY_CLIENT_OK)
            rc = load_replica_id(r);
    }
    if (rc == FERRY_CLIENT_OK) {
        *out = r;
        return rc;
    }
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "%s", r->error);
    ferry_replica_close(r);
    return rc;
}

void ferry_replica_close(ferry_replica *r)
{
    if (!r)
        return;
    ferry_stop(r);
    for (int i = 0; i < FC_PEERS; i++)
        ferry_replica_close(r->peers[i]);
    fc_cache_free(r);
    for (int i = 0; i < r->n_tables; i++) {
        struct fc_table *t = &r->tables[i];
        for (int k = 0; k < t->n_cols; k++) {
            free(t->cols[k].name);
            free(t->cols[k].quoted);
            free(t->cols[k].type);
        }
        free(t->cols);
        free(t->name);
        free(t->quoted);
    }
    free(r->tables);
    if (r->curl)
        curl_easy_cleanup(r->curl);
    sqlite3_close(r->db);
    free(r->url);
    free(r->token);
    free(r->ca_file);
    free(r->device_id);
    free(r->replica_id);
    free(r);
}

const char *ferry_replica_error(const ferry_replica *r)
{
    return r ? r->error : "no replica";
}

int64_t ferry_pending(ferry_replica *r)
{
    sqlite3_stmt *st = NULL;
    int64_t n = FERRY_CLIENT_ELOCAL;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT COUNT(*) FROM (SELECT DISTINCT tbl, pk FROM"
                           " ferry_client_outbox)",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    else
        fc_fail(r, FERRY_CLIENT_ELOCAL, "replica: %s", sqlite3_errmsg(r->db));
    sqlite3_finalize(st);
    return n;
}
