/* cli/serve.c - `ferry serve`: builds the running server's shared state (app.h), starts
 * the background tasks and the HTTP server, and stops them in order on SIGINT/SIGTERM.
 * SIGHUP reopens the log file and reloads the TLS certificate. Owns the first-start admin
 * token. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/routes.h"
#include "api/dbsync.h"
#include "api/backup.h"
#include "api/dirsync.h"
#include "api/files.h"
#include "app.h"
#include "auth/tokens.h"
#include "cli/cli.h"
#include "http/auth.h"
#include "http/server.h"
#include "http/tls.h"
#include "http/waiter.h"
#include "jobs/jobs.h"
#include "ops/metrics.h"
#include "sites/siteimport.h"
#include "sites/sites.h"
#include "sync/feedshare.h"
#include "sync/purge.h"
#include "sync/watch.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "webhooks/dispatch.h"

#define ADMIN_TOKEN_FILE "admin.token"
#define ADMIN_TOKEN_CLAIM "admin_token_created"

/* Everything `ferry serve` starts, so that one function can stop it all. */
struct serve {
    struct config cfg;
    struct app app;
    struct server *srv;
    struct tls *tls; /* NULL: plain HTTP */
    struct watch *watch;
    struct purger *purger;
    struct site_healer *healer;
    struct dispatcher *webhooks; /* delivers the webhook outbox */
    char *secret;                /* the first admin token, on the first start only */
    char *public_url;
};

static void usage(FILE *out)
{
    fprintf(out, "usage: ferry serve [settings]\n\n"
                 "Runs the sync server until SIGINT or SIGTERM (SIGHUP reopens --log-file and\n"
                 "reloads --tls-cert and --tls-key).\n\n"
                 "settings (flags override FERRY_* variables, which override the config "
                 "file):\n");
    config_print_help(out);
}

static int write_secret_file(const char *path, const char *secret, struct err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_set(err, ERR_INVALID, "cannot write %s: %s", path, strerror(errno));
    size_t len = strlen(secret);
    bool ok = fchmod(fd, 0600) == 0 && write(fd, secret, len) == (ssize_t)len &&
              write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    close(fd);
    if (!ok)
        return err_set(err, ERR_INVALID, "cannot write %s: %s", path, strerror(errno));
    return FERRY_OK;
}

/* On the first start against a database, makes an admin token, writes it to
 * DATA_DIR/admin.token and returns it in *secret (NULL on later starts). The claim row
 * in ferry_meta makes this happen once even when several nodes start together. */
static int first_admin_token(struct store *st, const char *data_dir, char **secret, struct err *err)
{
    struct store_conn *c = NULL;
    int64_t claimed = 0;
    char id[40], now[32];
    int rc = FERRY_ERR;

    *secret = NULL;
    time_iso8601(time_now_ms(), 0, now);
    struct store_val v[] = {sv_text(ADMIN_TOKEN_CLAIM), sv_text(now)};
    if (store_acquire(st, &c, err) != FERRY_OK ||
        store_run(c,
                  "INSERT INTO ferry_meta(key, value) VALUES ($1, $2)"
                  " ON CONFLICT (key) DO NOTHING",
                  v, 2, &claimed, err) != FERRY_OK)
        goto out;
    if (claimed) {
        struct token_spec spec = {.role = TOKEN_ROLE_ADMIN, .name = "initial admin"};
        char *path = xasprintf("%s/%s", data_dir, ADMIN_TOKEN_FILE);
        if (tokens_create(c, &spec, secret, id, err) != FERRY_OK ||
            write_secret_file(path, *secret, err) != FERRY_OK) {
            struct err ignored;
            store_run(c, "DELETE FROM ferry_meta WHERE key = $1", v, 1, NULL, &ignored);
            free(*secret);
            *secret = NULL;
            free(path);
            goto out;
        }
        free(path);
    }
    rc = FERRY_OK;
out:
    store_release(c);
    return rc;
}

/* Waits for a signal of set (blocked in every thread, so only sigwait sees them);
 * 0 when timeout_ms (>= 0) passes first. */
static int wait_signal(const sigset_t *set, int timeout_ms)
{
    if (timeout_ms < 0) {
        int sig = 0;
        sigwait(set, &sig);
        return sig;
    }
    struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
    int sig = sigtimedwait(set, NULL, &ts);
    return sig > 0 ? sig : 0;
}

/* SIGHUP: logrotate has moved the log file; write to a new one at the same path. A
 * renewed certificate is served from the next handshake on; a bad one is not taken. */
static void hangup(struct tls *tls)
{
    struct err err = {0};
    bool changed = false;
    if (log_reopen(&err) == FERRY_OK)
        log_info("log_reopened", json_pack("{s:s}", "msg", "log file reopened"));
    else
        log_error("log_reopen_failed", json_pack("{s:s}", "msg", err.msg));
    err = (struct err){0};
    if (tls && tls_reload(tls, &changed, &err) != FERRY_OK)
        log_error("tls_reload_failed",
                  json_pack("{s:s, s:s}", "msg", "kept the TLS certificate served so far", "error",
                            err.msg));
}

/* Waits for a stopping signal, handling each SIGHUP meanwhile. */
static void wait_stop_signal(struct tls *tls, const sigset_t *set)
{
    while (wait_signal(set, -1) == SIGHUP)
        hangup(tls);
}

/* Waits up to timeout_ms; a second stopping signal exits at once. */
static void wait_or_exit(struct tls *tls, const sigset_t *set, int timeout_ms)
{
    int sig = wait_signal(set, timeout_ms);
    if (sig == SIGHUP) {
        hangup(tls);
    } else if (sig > 0) {
        log_warn("second_signal", json_pack("{s:s}", "msg", "second signal: exiting now"));
        _exit(2);
    }
}

static void graceful_stop(struct serve *s, const sigset_t *set)
{
    struct app *app = &s->app;
    int64_t deadline = time_mono_us() + app->cfg->shutdown_timeout * 1000000LL;
    log_info("shutdown", json_pack("{s:s, s:i}", "msg", "shutting down", "inFlight",
                                   atomic_load(&app->in_flight)));
    server_quiesce(s->srv);
    waiter_release_all(app->waiter); /* long-polls answer now, with what they have */
    while (atomic_load(&app->in_flight) > 0 && time_mono_us() < deadline)
        wait_or_exit(s->tls, set, 50);
    if (atomic_load(&app->in_flight) > 0) {
        /* long work in a request (a directory sync) stops between files and answers */
        atomic_store(&app->stopping, true);
        for (int i = 0; i < 40 && atomic_load(&app->in_flight) > 0; i++)
            wait_signal(set, 50);
    }
    int cut = atomic_load(&app->in_flight);
    if (cut > 0) {
        char msg[64];
        snprintf(msg, sizeof(msg), "shutdown timeout: %d requests cut", cut);
        log_warn("shutdown_timeout", json_pack("{s:s, s:i}", "msg", msg, "cut", cut));
    }
    waiter_release_all(app->waiter); /* libmicrohttpd may not stop with a connection still parked */
}

static void on_log_moved(void *waiter, const struct watch_move *move)
{
    waiter_changed(waiter, move->head, move->keys, move->n_keys);
}

static void on_tick(void *waiter)
{
    waiter_tick(waiter);
}

static int load_tables(struct app *app, struct err *err)
{
    enum conflict_policy def;
    if (tables_parse_policy(app->cfg->default_conflict_policy, &def) != FERRY_OK)
        return err_set(err, ERR_INVALID,
                       "default-conflict-policy must be overwrite, skip, merge or manual");
    if (tables_load(app->store, app->cfg->allowed_tables, app->cfg->conflict_policy,
                    app->cfg->sync_rules, def, &app->synced, err) != FERRY_OK ||
        tables_add_files(app->store, &app->synced, err) != FERRY_OK)
        return FERRY_ERR;
    for (size_t i = 0; i < app->synced.n; i++) {
        const struct synced_table *t = &app->synced.tables[i];
        if (!t->builtin) /* the files namespace is always there */
            log_info("syncing_table", json_pack("{s:s, s:s, s:s, s:s}", "msg", "syncing table",
                                                "table", t->name, "primaryKey", t->cols[t->pk].name,
                                                "policy", tables_policy_name(t->policy)));
    }
    return FERRY_OK;
}

static void housekeeping(struct store_conn *c, void *ctx)
{
    struct app *app = ctx;
    struct filesys_swept swept;
    filesys_housekeeping(app->files, c, app->cfg->tombstone_retention * 1000, &swept);
}

/* file-root: folders directory sync may name; each must exist. */
static int add_file_roots(struct app *app, struct err *err)
{
    char *roots = xstrdup(app->cfg->file_roots ? app->cfg->file_roots : ""), *save = NULL;
    int rc = FERRY_OK;
    for (char *r = strtok_r(roots, ":", &save); r; r = strtok_r(NULL, ":", &save)) {
        struct stat st;
        if (r[0] != '/' || stat(r, &st) != 0 || !S_ISDIR(st.st_mode)) {
            rc = err_set(err, ERR_INVALID,
                         "file-root '%s' must be an existing folder given by its absolute path", r);
            break;
        }
        app->file_roots = xrealloc(app->file_roots, (app->n_file_roots + 1) * sizeof(char *));
        app->file_roots[app->n_file_roots++] = xstrdup(r);
    }
    free(roots);
    return rc;
}

/* The files subsystem (blobs and unfinished uploads, under the data folder), with what a
 * crash left to complete. */
static int open_files(struct app *app, struct err *err)
{
    const struct config *cfg = app->cfg;
    struct filesys_settings s = {
        .data_dir = cfg->data_dir,
        .blob_grace_s = cfg->blob_grace,
        .shared_folders = cfg->shared_folders,
        .blob_store = cfg->blob_store,
        .blob_download = cfg->blob_download,
        .cloud = {.s3_endpoint = cfg->s3_endpoint,
                  .s3_region = cfg->s3_region,
                  .s3_access_key_id = cfg->s3_access_key_id,
                  .s3_secret_access_key = cfg->s3_secret_access_key,
                  .part_size = (uint64_t)cfg->cloud_part_size,
                  .timeout_s = (long)cfg->cloud_timeout,
                  .stop = &app->stopping},
    };
    if (filesys_open(&s, app->store, &app->files, err) != FERRY_OK ||
        filesys_recover(app->files, err) != FERRY_OK)
        return FERRY_ERR;
    return add_file_roots(app, err);
}

/* The job worker, for every kind of job; jobs a stopped server left unfinished run
 * again. */
static int start_jobs(struct app *app, struct err *err)
{
    struct job_kind kinds[] = {apidirsync_job_kind(app), siteimport_job_kind(&app->site_env),
                               apidbsync_job_kind(app), apibackup_job_kind(app)};
    return jobs_worker_start(app->store, kinds, sizeof(kinds) / sizeof(kinds[0]), &app->jobs, err);
}

/* --sites-incoming-mode and --sites-password, when given, become the stored settings
 * (which the admin API changes later). */
static int apply_site_settings(struct app *app, struct err *err)
{
    const struct config *cfg = app->cfg;
    struct store_conn *c = NULL;
    const char *prefix = cfg->sites_prefix;
    size_t n = strlen(prefix);
    if (n && (prefix[0] != '/' || prefix[n - 1] == '/' || strchr(prefix, '{')))
        return err_set(err, ERR_INVALID,
                       "sites-prefix must be empty or start with / and not end with one");
    if (!cfg->sites_incoming_mode && !cfg->sites_password)
        return FERRY_OK;
    if (store_acquire(app->store, &c, err) != FERRY_OK)
        return FERRY_ERR;
    int rc = sites_settings_set(c, cfg->sites_incoming_mode, cfg->sites_password, err);
    store_release(c);
    return rc;
}

/* The parts of app that need no I/O: routes, limiters, the site client's options. */
static void init_app(struct serve *s)
{
    struct app *app = &s->app;
    const struct config *cfg = &s->cfg;
    app->cfg = &s->cfg;
    app->started_ms = time_now_ms();
    routes_init(app);
    app->rate = ratelimit_new(cfg->rate_limit, 60);
    app->auth_fail = ratelimit_new(cfg->auth_fail_limit, 60);
    app->metrics = metrics_open();
    app->waiter = waiter_open();
    app->feedshare = feedshare_new();
    s->public_url = cfg->public_url
                        ? xstrdup(cfg->public_url)
                        : xasprintf("%s://%s", cfg->tls_cert ? "https" : "http", cfg->listen);
    app->site_env = (struct siteops_env){
        .public_url = s->public_url,
        .client = {.allow_private = cfg->sites_allow_private, .timeout_s = cfg->sites_timeout},
    };
    siteclient_global_init();
}

static int start_webhooks(struct serve *s, struct err *err)
{
    const struct config *cfg = &s->cfg;
    struct dispatch_options o = {.retry_base_ms = cfg->webhook_retry_base,
                                 .retry_max_ms = cfg->webhook_retry_max,
                                 .timeout_s = (long)cfg->webhook_timeout,
                                 .disable_after = cfg->webhook_disable_after,
                                 .allow_private = cfg->webhook_allow_private,
                                 .retention_ms = cfg->tombstone_retention * 1000};
    return dispatch_start(s->app.store, &o, s->app.metrics, &s->webhooks, err);
}

/* The pool has a connection for each HTTP thread, one each for the change watcher, the
 * purger, the job worker, its heartbeat and the site healer, and two the webhook
 * deliveries share (held only to claim and to record), so no background task waits
 * behind requests. */
static int start(struct serve *s, struct err *err)
{
    struct app *app = &s->app;
    const struct config *cfg = &s->cfg;
    /* the certificate first: a wrong one stops ferry before anything is created */
    bool https = cfg->tls_cert && *cfg->tls_cert;
    if ((https &&
         tls_open(cfg->tls_cert, cfg->tls_key, cfg->tls_min_version, &s->tls, err) != FERRY_OK) ||
        auth_jwt_open(cfg, &app->jwt, err) != FERRY_OK ||
        proxies_parse(cfg->trusted_proxies, cfg->forwarded_header, &app->proxies, err) !=
            FERRY_OK ||
        cli_open_store(cfg, (int)cfg->threads + 7, true, &app->store, err) != FERRY_OK ||
        first_admin_token(app->store, cfg->data_dir, &s->secret, err) != FERRY_OK ||
        load_tables(app, err) != FERRY_OK || open_files(app, err) != FERRY_OK ||
        apply_site_settings(app, err) != FERRY_OK)
        return FERRY_ERR;
    if (watch_start(app->store, on_log_moved, on_tick, app->waiter, &s->watch, err) != FERRY_OK ||
        purger_start(app->store, cfg->purge_interval, cfg->tombstone_retention * 1000, housekeeping,
                     app, &s->purger, err) != FERRY_OK ||
        start_jobs(app, err) != FERRY_OK ||
        siteops_healer_start(app->store, &app->site_env, cfg->sites_verify_interval, &s->healer,
                             err) != FERRY_OK ||
        start_webhooks(s, err) != FERRY_OK)
        return FERRY_ERR;
    app->watch = s->watch;
    return server_start(app, s->tls, &s->srv, err);
}

/* The start-up lines: on stdout for whoever started ferry, and in the log. */
static void announce(struct serve *s)
{
    const struct config *cfg = &s->cfg;
    int host_len = (int)(strrchr(cfg->listen, ':') - cfg->listen);
    const char *dialect = store_dialect_name(s->app.store);
    const char *scheme = s->tls ? "https" : "http";
    printf("ferry %s listening on %s://%.*s:%d (%s)\n", FERRY_VERSION, scheme, host_len,
           cfg->listen, server_port(s->srv), dialect);
    if (s->secret)
        printf("admin token (shown once, also in %s/%s): %s\n", cfg->data_dir, ADMIN_TOKEN_FILE,
               s->secret);
    fflush(stdout);
    char *address = xasprintf("%.*s:%d", host_len, cfg->listen, server_port(s->srv));
    log_info("listening",
             json_pack("{s:s, s:s, s:s, s:s, s:s}", "msg", "listening", "address", address,
                       "scheme", scheme, "store", dialect, "version", FERRY_VERSION));
    free(address);
}

static void stop(struct serve *s)
{
    struct app *app = &s->app;
    server_stop(s->srv);
    tls_close(s->tls); /* after the server: no handshake can be using a pair */
    siteops_healer_stop(s->healer);
    dispatch_stop(s->webhooks);
    jobs_worker_stop(app->jobs);
    watch_stop(s->watch);
    purger_stop(s->purger);
    tables_cleanup(&app->synced);
    routes_cleanup(app);
    free(s->public_url);
    auth_jwt_close(app->jwt);
    proxies_free(app->proxies);
    siteclient_global_cleanup();
    filesys_close(app->files);
    for (size_t i = 0; i < app->n_file_roots; i++)
        free(app->file_roots[i]);
    free(app->file_roots);
    store_close(app->store);
    ratelimit_free(app->rate);
    ratelimit_free(app->auth_fail);
    metrics_close(app->metrics);
    waiter_close(app->waiter);
    feedshare_free(app->feedshare);
    free(s->secret);
}

/* Signals are blocked in every thread (before any starts) and taken by sigwait. */
static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a file over the size limit is a write error (507), not death */
}

static int run(int argc, char **argv)
{
    struct serve s = {0};
    struct config_args args;
    struct err err = {0};
    sigset_t set;
    int rc = cli_parse(&cli_serve, argc, argv, NULL, 0, &args, &s.cfg);
    if (rc >= 0)
        goto done;
    if (args.n_positional) {
        rc = cli_usage_error(&cli_serve, "unexpected argument '%s'", args.positional[0]);
        goto done;
    }
    rc = CLI_FAILED;
    if (cli_open_log(&s.cfg, true, &err) != FERRY_OK) {
        cli_fail(&err);
        goto done;
    }
    block_signals(&set);
    init_app(&s);
    if (start(&s, &err) != FERRY_OK) {
        cli_fail(&err);
        if (s.cfg.log_file) /* stderr has it already */
            log_error("start_failed", json_pack("{s:s}", "msg", err.msg));
    } else {
        announce(&s);
        wait_stop_signal(s.tls, &set);
        graceful_stop(&s, &set);
        rc = CLI_OK;
    }
    stop(&s);
    if (rc == CLI_OK)
        log_info("stopped", json_pack("{s:s}", "msg", "stopped"));
    log_close();
done:
    config_args_cleanup(&args);
    config_cleanup(&s.cfg);
    return rc;
}

const struct cli_command cli_serve = {"serve", "run the server", run, usage};
