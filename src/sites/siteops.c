/* siteops.c - see siteops.h. The token is sent once, in register-connection; every later
 * call names the connection by its hash, and neither is ever logged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sites/siteops.h"
#include "sites/sites.h"
#include "util/url.h"
#include "util/ticker.h"
#include "util/timeutil.h"
#include "util/log.h"

/* Unreachable remotes are tried again after 30 s, doubling to at most an hour. */
#define BACKOFF_FIRST_MS 30000
#define BACKOFF_MAX_MS 3600000

static int load(struct store_conn *c, const char *id, struct site *s, struct err *err)
{
    bool found = false;
    if (sites_get(c, id, s, &found, err) != FERRY_OK)
        return FERRY_ERR;
    return found ? FERRY_OK : err_set(err, ERR_NOT_FOUND, "no site connection '%s'", id);
}

/* One log line per call to another site. The connection is named by the first 8
 * characters of its token hash: enough to tell connections apart, never the credential. */
static void log_call(const char *action, const char *url, const char *hash,
                     const struct site_call *call)
{
    json_t *line = json_pack("{s:s, s:s, s:s, s:s, s:i, s:s}", "msg", "site call", "action", action,
                             "site", url, "connection", "", "status", call->status, "error",
                             call->status == 200 ? "" : call->error);
    if (!line)
        return; /* a URL or message that is not UTF-8: not worth a crash */
    char prefix[9];
    snprintf(prefix, sizeof(prefix), "%.8s", hash);
    json_object_set_new(line, "connection", json_string(prefix));
    log_write(call->status == 200 ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, "site_call", line);
}

static json_t *with_remote(const struct site *s, bool mirrored, const struct site_call *call)
{
    json_t *o = sites_json(s);
    json_object_set_new(o, "mirrored", json_boolean(mirrored));
    if (!mirrored)
        json_object_set_new(o, "remote_error",
                            json_string(call->error[0] ? call->error : "no answer"));
    return o;
}

/* Calls action with the connection's identity; true when the remote answered 200. */
static bool mirror(const struct siteops_env *env, const struct site *s, const char *action,
                   const char *status, struct site_call *call)
{
    struct err ignored = {0};
    json_t *body =
        json_pack("{s:s, s:s}", "sender_url", env->public_url, "auth_token_hash", s->token_hash);
    if (status)
        json_object_set_new(body, "status", json_string(status));
    int rc = siteclient_call(&env->client, s->site_url, action, body, call, &ignored);
    json_decref(body);
    log_call(action, s->site_url, s->token_hash, call);
    if (rc != FERRY_OK || call->status != 200)
        return false;
    /* the remote may keep its own status (a receiver cannot lift a sender's suspension) */
    const char *kept = json_string_value(json_object_get(call->body, "status"));
    if (status && kept && strcmp(kept, status) != 0) {
        snprintf(call->error, sizeof(call->error), "the remote kept its status '%.40s'", kept);
        return false;
    }
    return true;
}

int siteops_create(struct store_conn *c, const struct siteops_env *env, json_t *body, json_t **out,
                   struct err *err)
{
    struct site s = {0};
    struct site_call call = {0};
    char token[64], hash[65];
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *url = json_string_value(json_object_get(body, "url"));
    const char *password = json_string_value(json_object_get(body, "password"));
    int rc = FERRY_ERR;
    *out = NULL;
    if (!name || !*name || !url || !*url)
        return err_set(err, ERR_INVALID, "fields 'name' and 'url' are required strings");
    if (!url_parse_http(url, NULL))
        return err_set(err, ERR_INVALID, "field 'url' must be an http or https URL");
    sites_new_token(token, hash);
    json_t *reg = json_pack("{s:s, s:s, s:s}", "sender_url", env->public_url, "connection_name",
                            name, "auth_token", token);
    if (password)
        json_object_set_new(reg, "password", json_string(password));
    int called = siteclient_call(&env->client, url, "register-connection", reg, &call, err);
    json_decref(reg);
    log_call("register-connection", url, hash, &call);
    if (called != FERRY_OK)
        goto out;
    if (call.status != 200) {
        err_set(err, ERR_BAD_GATEWAY, "the remote refused the connection (status %d): %s",
                call.status, call.error[0] ? call.error : "no reason given");
        goto out;
    }
    const char *remote = json_string_value(json_object_get(call.body, "connection_status"));
    s.name = xstrdup(name);
    s.direction = SITE_SENDER;
    s.site_url = xstrdup(url);
    s.token_hash = xstrdup(hash);
    s.status = remote && !strcmp(remote, "pending") ? SITE_PENDING : SITE_ACTIVE;
    json_t *settings = json_deep_copy(body);
    json_object_del(settings, "name");
    json_object_del(settings, "url");
    json_object_del(settings, "password");
    if (sites_create(c, &s, err) != FERRY_OK) {
        /* the remote has it now: take it back there, or its verify would find it */
        struct site_call undo = {0};
        mirror(env, &s, "delete-connection", NULL, &undo);
        json_decref(undo.body);
        json_decref(settings);
        goto out;
    }
    bool ok = sites_update(c, s.id, settings, err) == FERRY_OK;
    json_decref(settings);
    if (!ok || load(c, s.id, &s, err) != FERRY_OK) {
        bool found;
        struct site_call undo = {0};
        mirror(env, &s, "delete-connection", NULL, &undo);
        json_decref(undo.body);
        sites_delete(c, s.id, &found, NULL);
        goto out;
    }
    *out = sites_json(&s);
    json_object_set_new(*out, "remote", json_incref(call.body));
    rc = FERRY_OK;
out:
    json_decref(call.body);
    sites_clear(&s);
    return rc;
}

int siteops_action(struct store_conn *c, const struct siteops_env *env, const char *id,
                   const char *action, json_t **out, struct err *err)
{
    static const struct {
        const char *action;
        enum site_status to;
        int from;      /* the status it must have (enum site_status), or -1: any */
        bool receiver; /* only a receiver */
    } rules[] = {
        {"approve", SITE_ACTIVE, SITE_PENDING, true},
        {"deny", SITE_REVOKED, SITE_PENDING, true},
        {"suspend", SITE_SUSPENDED, SITE_ACTIVE, false},
        {"reactivate", SITE_ACTIVE, SITE_SUSPENDED, false},
        {"revoke", SITE_REVOKED, -1, false},
    };
    struct site s = {0};
    struct site_call call = {0};
    size_t k = 0;
    int rc = FERRY_ERR;
    *out = NULL;
    while (k < 5 && strcmp(rules[k].action, action) != 0)
        k++;
    if (k == 5)
        return err_set(err, ERR_INVALID,
                       "action must be approve, deny, suspend, reactivate, "
                       "revoke, verify or pull");
    if (load(c, id, &s, err) != FERRY_OK)
        return FERRY_ERR;
    if (rules[k].receiver && s.direction != SITE_RECEIVER) {
        err_set(err, ERR_CONFLICT, "only an incoming (receiver) connection can be %s",
                !strcmp(action, "approve") ? "approved" : "denied");
        goto out;
    }
    if ((rules[k].from >= 0 && (int)s.status != rules[k].from) || s.status == SITE_REVOKED) {
        err_set(err, ERR_CONFLICT, "the connection is %s; %s needs it %s",
                sites_status_name(s.status), action,
                rules[k].from >= 0 ? sites_status_name((enum site_status)rules[k].from)
                                   : "not revoked");
        goto out;
    }
    int set = !strcmp(action, "approve") ? sites_approve(c, id, err)
                                         : sites_set_status(c, id, rules[k].to, err);
    if (set != FERRY_OK || load(c, id, &s, err) != FERRY_OK)
        goto out;
    bool mirrored;
    if (!strcmp(action, "approve")) {
        /* the sender's side becomes active when its receiver asks for its status */
        struct err ignored = {0};
        json_t *body = json_pack("{s:s, s:s}", "receiver_url", env->public_url, "auth_token_hash",
                                 s.token_hash);
        mirrored = siteclient_call(&env->client, s.site_url, "get-connection-status", body, &call,
                                   &ignored) == FERRY_OK &&
                   call.status == 200;
        json_decref(body);
    } else {
        mirrored = mirror(env, &s, "update-status", sites_status_name(rules[k].to), &call);
    }
    *out = with_remote(&s, mirrored, &call);
    rc = FERRY_OK;
out:
    json_decref(call.body);
    sites_clear(&s);
    return rc;
}

int siteops_delete(struct store_conn *c, const struct siteops_env *env, const char *id,
                   json_t **out, struct err *err)
{
    struct site s = {0};
    struct site_call call = {0};
    bool found = false;
    *out = NULL;
    if (load(c, id, &s, err) != FERRY_OK)
        return FERRY_ERR;
    /* the remote that misses this (offline) heals later: its verify gets a 404 */
    bool mirrored = mirror(env, &s, "delete-connection", NULL, &call) || call.status == 404;
    int rc = sites_delete(c, id, &found, err);
    if (rc == FERRY_OK) {
        *out = json_pack("{s:s, s:b}", "id", id, "deleted", 1);
        json_object_set_new(*out, "mirrored", json_boolean(mirrored));
        if (!mirrored)
            json_object_set_new(*out, "remote_error",
                                json_string(call.error[0] ? call.error : "no answer"));
    }
    json_decref(call.body);
    sites_clear(&s);
    return rc;
}

static int64_t backoff_ms(int64_t failures)
{
    int64_t ms = BACKOFF_FIRST_MS;
    for (int64_t i = 0; i < failures && ms < BACKOFF_MAX_MS; i++)
        ms *= 2;
    return ms < BACKOFF_MAX_MS ? ms : BACKOFF_MAX_MS;
}

int siteops_verify(struct store_conn *c, const struct siteops_env *env, const char *id,
                   json_t **out, struct err *err)
{
    struct site s = {0};
    struct site_call call = {0};
    struct err ignored = {0};
    bool receiver;
    int rc = FERRY_ERR;
    *out = NULL;
    if (load(c, id, &s, err) != FERRY_OK)
        return FERRY_ERR;
    receiver = s.direction == SITE_RECEIVER;
    if (receiver && s.status == SITE_PENDING) {
        /* asking the sender for its status would make its side active: only this site's
         * approval may start that */
        *out = sites_json(&s);
        json_object_set_new(*out, "result", json_string("pending"));
        rc = FERRY_OK;
        goto out;
    }
    /* a sender asks whether its receiver still has the connection; a receiver asks the
     * sender for the connection's status, and takes it over */
    json_t *body = receiver ? json_pack("{s:s, s:s}", "receiver_url", env->public_url,
                                        "auth_token_hash", s.token_hash)
                            : json_pack("{s:s, s:s}", "sender_url", env->public_url,
                                        "auth_token_hash", s.token_hash);
    int called = siteclient_call(&env->client, s.site_url,
                                 receiver ? "get-connection-status" : "verify-connection", body,
                                 &call, &ignored);
    json_decref(body);
    log_call(receiver ? "get-connection-status" : "verify-connection", s.site_url, s.token_hash,
             &call);
    int64_t now = time_now_ms();
    /* Only the remote's own "no such connection" deletes this side: a 404 for a path
     * it does not serve (a wrong prefix, another program) proves nothing. */
    const char *why = json_string_value(json_object_get(call.body, "error"));
    bool gone = called == FERRY_OK && call.status == 404 &&
                ((why && !strcmp(why, "Connection not found")) ||
                 json_is_false(json_object_get(call.body, "exists")));
    if (gone) {
        bool found;
        if (sites_delete(c, id, &found, err) != FERRY_OK)
            goto out;
        *out = json_pack("{s:s, s:s}", "id", id, "result", "deleted");
    } else if (called == FERRY_OK && call.status == 200) {
        enum site_status remote;
        bool known = sites_parse_status(json_string_value(json_object_get(call.body, "status")),
                                        &remote) == FERRY_OK;
        /* a receiver follows the sender's status, except that only this site's admin
         * approves a pending connection, and a revoked one stays revoked */
        if (receiver && known && remote != s.status && s.status != SITE_PENDING &&
            s.status != SITE_REVOKED && remote != SITE_PENDING &&
            (remote != SITE_ACTIVE || s.approved_at))
            sites_set_status(c, id, remote, NULL);
        if (sites_reachability(c, id, true, now + BACKOFF_FIRST_MS * 10, err) != FERRY_OK ||
            load(c, id, &s, err) != FERRY_OK)
            goto out;
        *out = sites_json(&s);
        json_object_set_new(*out, "result", json_string("exists"));
    } else {
        if (sites_reachability(c, id, false, now + backoff_ms(s.failures), err) != FERRY_OK ||
            load(c, id, &s, err) != FERRY_OK)
            goto out;
        *out = sites_json(&s);
        json_object_set_new(*out, "result", json_string("unreachable"));
        json_object_set_new(*out, "remote_error",
                            json_string(call.error[0] ? call.error : "no answer"));
    }
    rc = FERRY_OK;
out:
    json_decref(call.body);
    sites_clear(&s);
    return rc;
}

/* --- the healer --------------------------------------------------------------------- */

struct site_healer {
    struct ticker *ticker;
    struct store *st;
    struct siteops_env env;
};

/* Verifies the connections that are due, between stops. */
static void heal_due(struct ticker *t, void *arg)
{
    struct site_healer *h = arg;
    struct store_conn *c = NULL;
    struct store_rows *rows = NULL;
    char **ids = NULL;
    size_t n = 0;
    struct store_val v = sv_int(time_now_ms());
    if (store_acquire(h->st, &c, NULL) != FERRY_OK)
        return;
    if (store_query(c,
                    "SELECT id FROM ferry_sites WHERE status <> 'revoked'"
                    " AND (next_check_at IS NULL OR next_check_at <= $1) LIMIT 100",
                    &v, 1, &rows, NULL) == FERRY_OK)
        while (store_rows_next(rows, NULL) == 1) {
            ids = xrealloc(ids, (n + 1) * sizeof(*ids));
            ids[n++] = xstrdup(store_rows_text(rows, 0));
        }
    store_rows_free(rows);
    for (size_t i = 0; i < n; i++) {
        json_t *out = NULL;
        if (!ticker_stopping(t)) /* stopping: the rest waits for the next start */
            siteops_verify(c, &h->env, ids[i], &out, NULL);
        json_decref(out);
        free(ids[i]);
    }
    free(ids);
    store_release(c);
}

int siteops_healer_start(struct store *st, const struct siteops_env *env, int64_t interval_s,
                         struct site_healer **out, struct err *err)
{
    struct site_healer *h = xcalloc(1, sizeof(*h));
    *out = NULL;
    h->st = st;
    h->env = *env;
    if (ticker_start("site healer", interval_s, heal_due, h, &h->ticker, err) != FERRY_OK ||
        !h->ticker) {
        free(h);
        return err->code == ERR_NONE ? FERRY_OK : FERRY_ERR;
    }
    *out = h;
    return FERRY_OK;
}

void siteops_healer_stop(struct site_healer *h)
{
    if (!h)
        return;
    ticker_stop(h->ticker);
    free(h);
}
