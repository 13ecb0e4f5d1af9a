/* main.c - the ferry command: `ferry serve` runs the server; `ferry token ...` manages
 * API tokens straight in the database (with the server running or not). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/dirsync.h"
#include "api/files.h"
#include "api/phoenix.h"
#include "sites/siteimport.h"
#include "sites/sites.h"
#include "jobs/jobs.h"
#include "app.h"
#include "cli/cli.h"
#include "config.h"
#include "ops/metrics.h"
#include "auth/tokens.h"
#include "sync/purge.h"
#include "sync/watch.h"
#include "http/server.h"
#include "http/waiter.h"
#include "util/timeutil.h"

#define ADMIN_TOKEN_FILE "admin.token"
#define ADMIN_TOKEN_CLAIM "admin_token_created"

static void usage(FILE *out)
{
    fprintf(out,
            "ferry %s - a sync server\n\n"
            "usage:\n"
            "  ferry serve [options]             run the server\n"
            "  ferry token create --role admin|user|device --name NAME\n"
            "                     [--user ID] [--device ID] [--expires-in SECONDS]\n"
            "                     [--tables a,b] [options]\n"
            "  ferry token list [options]\n"
            "  ferry token revoke ID [options]\n"
            "  ferry sites list | show ID | settings [--incoming-mode M] [--password P]\n"
            "  ferry sites create --name NAME --url URL [--password P] [--allowed a,b]\n"
            "                     [--excluded c,d] [options]\n"
            "  ferry sites approve|deny|suspend|reactivate|revoke|verify|delete ID [options]\n"
            "  ferry sites pull ID --tables a,b [--strategy skip|overwrite|merge|append]\n"
            "                     [--incremental] [options]\n"
            "  ferry sites transfers ID [options]\n"
            "  ferry --version | --help\n\n"
            "options (flags override FERRY_* variables, which override the config file):\n",
            FERRY_VERSION);
    config_print_help(out);
}

int cli_fail(const struct err *err)
{
    fprintf(stderr, "ferry: %s\n", err->msg);
    return 1;
}

/* Creates DIR and its parents (like mkdir -p), private to the owner. */
static int make_dirs(const char *dir, struct err *err)
{
    char *path = xstrdup(dir);
    int rc = FERRY_OK;
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            rc = err_set(err, ERR_INVALID, "cannot create %s: %s", path, strerror(errno));
            break;
        }
        *p = saved;
        if (!saved)
            break;
    }
    free(path);
    return rc;
}

int cli_open_store(struct config *cfg, int pool, struct store **st, struct err *err)
{
    if (make_dirs(cfg->data_dir, err) != FERRY_OK)
        return FERRY_ERR;
    char *url = config_db_url(cfg);
    int rc = store_open(url, pool, st, err);
    free(url);
    return rc;
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
        struct token_spec spec = {.role = "admin", .name = "initial admin"};
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

/* Waits for SIGINT/SIGTERM (blocked in every thread, so only sigwait sees them). */
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

static void graceful_stop(struct app *app, struct server *srv, const sigset_t *set)
{
    int64_t deadline = time_mono_us() + app->cfg->shutdown_timeout * 1000000LL;
    fprintf(stderr, "{\"level\":\"info\",\"msg\":\"shutting down\",\"inFlight\":%d}\n",
            atomic_load(&app->in_flight));
    server_quiesce(srv);
    waiter_release_all(); /* long-polls answer now, with what they have */
    while (atomic_load(&app->in_flight) > 0 && time_mono_us() < deadline) {
        if (wait_signal(set, 50) > 0) {
            fprintf(stderr, "{\"level\":\"warn\",\"msg\":\"second signal: exiting now\"}\n");
            _exit(2);
        }
    }
    if (atomic_load(&app->in_flight) > 0) {
        /* long work in a request (a directory sync) stops between files and answers */
        atomic_store(&app->stopping, true);
        for (int i = 0; i < 40 && atomic_load(&app->in_flight) > 0; i++)
            wait_signal(set, 50);
    }
    if (atomic_load(&app->in_flight) > 0)
        fprintf(stderr, "{\"level\":\"warn\",\"msg\":\"shutdown timeout: %d requests cut\"}\n",
                atomic_load(&app->in_flight));
    waiter_release_all(); /* libmicrohttpd may not stop with a connection still parked */
}

static void on_log_moved(void *ctx, int64_t head)
{
    (void)ctx;
    waiter_changed(head);
}

static void on_tick(void *ctx)
{
    (void)ctx;
    waiter_tick();
}

static int load_tables(struct app *app, struct err *err)
{
    enum conflict_policy def;
    if (tables_parse_policy(app->cfg->default_conflict_policy, &def) != FERRY_OK)
        return err_set(err, ERR_INVALID,
                       "default-conflict-policy must be overwrite, skip, merge or manual");
    if (tables_load(app->store, app->cfg->allowed_tables, app->cfg->conflict_policy, def,
                    &app->synced, err) != FERRY_OK ||
        tables_add_files(app->store, &app->synced, err) != FERRY_OK)
        return FERRY_ERR;
    for (size_t i = 0; i < app->synced.n; i++)
        if (!app->synced.tables[i].builtin) /* the files namespace is always there */
            fprintf(stderr,
                    "{\"level\":\"info\",\"msg\":\"syncing table\",\"table\":\"%s\","
                    "\"primaryKey\":\"%s\",\"policy\":\"%s\"}\n",
                    app->synced.tables[i].name,
                    app->synced.tables[i].cols[app->synced.tables[i].pk].name,
                    tables_policy_name(app->synced.tables[i].policy));
    return FERRY_OK;
}

static void housekeeping(struct store_conn *c, void *ctx)
{
    struct app *app = ctx;
    struct filesys_swept swept;
    filesys_housekeeping(app->files, c, app->cfg->tombstone_retention * 1000, &swept);
}

/* The blob store and the folder of unfinished uploads, under the data folder. */
static int open_files(struct app *app, struct err *err)
{
    if (filesys_open(app->cfg->data_dir, app->store, app->cfg->blob_grace, &app->files, err) !=
            FERRY_OK ||
        filesys_recover(app->files, err) != FERRY_OK)
        return FERRY_ERR;
    /* file-root: folders directory sync may name; each must exist */
    char *roots = xstrdup(app->cfg->file_roots ? app->cfg->file_roots : ""), *save = NULL;
    for (char *r = strtok_r(roots, ":", &save); r; r = strtok_r(NULL, ":", &save)) {
        struct stat st;
        if (r[0] != '/' || stat(r, &st) != 0 || !S_ISDIR(st.st_mode)) {
            err_set(err, ERR_INVALID,
                    "file-root '%s' must be an existing folder given by its absolute path", r);
            free(roots);
            return FERRY_ERR;
        }
        app->file_roots = xrealloc(app->file_roots, (app->n_file_roots + 1) * sizeof(char *));
        app->file_roots[app->n_file_roots++] = xstrdup(r);
    }
    free(roots);
    return FERRY_OK;
}

/* The job worker, for every kind of job; jobs a stopped server left unfinished run
 * again. */
static int start_jobs(struct app *app, struct err *err)
{
    struct job_kind kinds[] = {dirsync_job_kind(app), siteimport_job_kind(&app->site_env)};
    return jobs_worker_start(app->store, kinds, 2, &app->jobs, err);
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

static int cmd_serve(int argc, char **argv)
{
    struct config cfg;
    struct err err = {0};
    struct app app = {0};
    struct server *srv = NULL;
    struct watch *watch = NULL;
    struct purger *purger = NULL;
    struct site_healer *healer = NULL;
    char *secret = NULL;
    char *public_url = NULL;
    sigset_t set;
    int rc = 1;

    if (argc > 0 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (config_load(&cfg, argc, argv, &err) != FERRY_OK) {
        config_cleanup(&cfg);
        return cli_fail(&err);
    }
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);                /* a closed terminal stops ferry gracefully too */
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread starts */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a file over the size limit is a write error (507), not death */

    app.cfg = &cfg;
    app.started_ms = time_now_ms();
    /* the site-to-site routes' paths depend on --sites-prefix */
    const struct route_table **tables = xcalloc(api_n_tables + 1, sizeof(*tables));
    memcpy(tables, api_tables, api_n_tables * sizeof(*tables));
    tables[api_n_tables] = phoenix_routes(cfg.sites_prefix);
    app.tables = tables;
    app.n_tables = api_n_tables + 1;
    app.rate = ratelimit_new(cfg.rate_limit, 60);
    app.auth_fail = ratelimit_new(cfg.auth_fail_limit, 60);
    public_url = cfg.public_url ? xstrdup(cfg.public_url) : xasprintf("http://%s", cfg.listen);
    app.site_env = (struct siteops_env){
        .public_url = public_url,
        .client = {.allow_private = cfg.sites_allow_private, .timeout_s = cfg.sites_timeout},
    };
    siteclient_global_init();
    /* The pool has a connection for each HTTP thread, one each for the change watcher,
     * the purger, the job worker, its heartbeat and the site healer, so no background task
     * waits behind requests. */
    if (cli_open_store(&cfg, (int)cfg.threads + 5, &app.store, &err) != FERRY_OK ||
        first_admin_token(app.store, cfg.data_dir, &secret, &err) != FERRY_OK ||
        load_tables(&app, &err) != FERRY_OK || open_files(&app, &err) != FERRY_OK ||
        apply_site_settings(&app, &err) != FERRY_OK ||
        watch_start(app.store, on_log_moved, on_tick, NULL, &watch, &err) != FERRY_OK ||
        purger_start(app.store, cfg.purge_interval, cfg.tombstone_retention * 1000, housekeeping,
                     &app, &purger, &err) != FERRY_OK ||
        start_jobs(&app, &err) != FERRY_OK ||
        siteops_healer_start(app.store, &app.site_env, cfg.sites_verify_interval, &healer, &err) !=
            FERRY_OK ||
        server_start(&app, &srv, &err) != FERRY_OK) {
        cli_fail(&err);
        goto out;
    }
    printf("ferry %s listening on http://%.*s:%d (%s)\n", FERRY_VERSION,
           (int)(strrchr(cfg.listen, ':') - cfg.listen), cfg.listen, server_port(srv),
           store_dialect_name(app.store));
    if (secret)
        printf("admin token (shown once, also in %s/%s): %s\n", cfg.data_dir, ADMIN_TOKEN_FILE,
               secret);
    fflush(stdout);

    wait_signal(&set, -1);
    graceful_stop(&app, srv, &set);
    rc = 0;
out:
    server_stop(srv);
    siteops_healer_stop(healer);
    jobs_worker_stop(app.jobs);
    watch_stop(watch);
    purger_stop(purger);
    tables_cleanup(&app.synced);
    phoenix_routes_free();
    free(tables);
    free(public_url);
    siteclient_global_cleanup();
    filesys_close(app.files);
    for (size_t i = 0; i < app.n_file_roots; i++)
        free(app.file_roots[i]);
    free(app.file_roots);
    store_close(app.store);
    ratelimit_free(app.rate);
    ratelimit_free(app.auth_fail);
    metrics_cleanup();
    free(secret);
    config_cleanup(&cfg);
    if (rc == 0)
        fprintf(stderr, "{\"level\":\"info\",\"msg\":\"stopped\"}\n");
    return rc;
}

/* Token subcommands take their own flags first; the rest are config options. */
struct token_args {
    const char *role, *name, *user, *device, *expires_in, *tables, *id;
    char **rest;
    int n_rest;
};

static int parse_token_args(int argc, char **argv, struct token_args *a, struct err *err)
{
    static const char *own[] = {"--role",   "--name",       "--user",
                                "--device", "--expires-in", "--tables"};
    a->rest = xcalloc((size_t)argc + 1, sizeof(char *));
    for (int i = 0; i < argc; i++) {
        int which = -1;
        for (int k = 0; k < 6; k++)
            if (!strcmp(argv[i], own[k]))
                which = k;
        if (which < 0) {
            if (argv[i][0] != '-' && !a->id) {
                a->id = argv[i];
                continue;
            }
            a->rest[a->n_rest++] = argv[i];
            if (argv[i][0] == '-' && !strchr(argv[i], '=') && i + 1 < argc && argv[i + 1][0] != '-')
                a->rest[a->n_rest++] = argv[++i];
            continue;
        }
        if (i + 1 >= argc)
            return err_set(err, ERR_INVALID, "%s needs a value", argv[i]);
        const char **slot[] = {&a->role,   &a->name,       &a->user,
                               &a->device, &a->expires_in, &a->tables};
        *slot[which] = argv[++i];
    }
    return FERRY_OK;
}

static int token_create(struct store_conn *c, const struct token_args *a, struct err *err)
{
    struct token_spec spec = {a->role, a->name, a->user, a->device, 0, a->tables};
    char *secret = NULL, id[40];
    if (!a->role || !a->name)
        return err_set(err, ERR_INVALID, "token create needs --role and --name");
    if (a->expires_in) {
        char *end;
        long long s = strtoll(a->expires_in, &end, 10);
        if (*end || s <= 0)
            return err_set(err, ERR_INVALID, "--expires-in must be a number of seconds");
        spec.expires_at = time_now_ms() + s * 1000;
    }
    if (tokens_create(c, &spec, &secret, id, err) != FERRY_OK)
        return FERRY_ERR;
    printf("%s\n", secret);
    fprintf(stderr, "created token %s (role %s); it is shown only this once\n", id, a->role);
    free(secret);
    return FERRY_OK;
}

static int token_list(struct store_conn *c, struct err *err)
{
    json_t *list = NULL;
    if (tokens_list(c, NULL, &list, err) != FERRY_OK)
        return FERRY_ERR;
    char *text = json_dumps(list, JSON_INDENT(2));
    printf("%s\n", text ? text : "[]");
    free(text);
    json_decref(list);
    return FERRY_OK;
}

static int cmd_token(int argc, char **argv)
{
    struct config cfg = {0};
    struct err err = {0};
    struct token_args a = {0};
    struct store *st = NULL;
    struct store_conn *c = NULL;
    int rc = FERRY_ERR;

    if (argc < 1 || !strcmp(argv[0], "--help")) {
        usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    const char *verb = argv[0];
    if (parse_token_args(argc - 1, argv + 1, &a, &err) != FERRY_OK ||
        config_load(&cfg, a.n_rest, a.rest, &err) != FERRY_OK ||
        cli_open_store(&cfg, 1, &st, &err) != FERRY_OK || store_acquire(st, &c, &err) != FERRY_OK)
        goto out;
    if (!strcmp(verb, "create"))
        rc = token_create(c, &a, &err);
    else if (!strcmp(verb, "list"))
        rc = token_list(c, &err);
    else if (!strcmp(verb, "revoke") && a.id)
        rc = tokens_revoke(c, a.id, &err);
    else
        err_set(&err, ERR_INVALID, "unknown token command '%s' (create, list, revoke ID)", verb);
    if (rc == FERRY_OK && !strcmp(verb, "revoke"))
        fprintf(stderr, "revoked token %s\n", a.id);
out:
    store_release(c);
    store_close(st);
    config_cleanup(&cfg);
    free(a.rest);
    return rc == FERRY_OK ? 0 : cli_fail(&err);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("ferry %s\n", FERRY_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "serve"))
        return cmd_serve(argc - 2, argv + 2);
    if (!strcmp(argv[1], "token"))
        return cmd_token(argc - 2, argv + 2);
    if (!strcmp(argv[1], "sites"))
        return cmd_sites(argc - 2, argv + 2);
    fprintf(stderr, "ferry: unknown command '%s' (see ferry --help)\n", argv[1]);
    return 2;
}
