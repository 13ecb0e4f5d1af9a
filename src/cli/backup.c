/* cli/backup.c - `ferry backup create|versions|restore|prune|check|repair|password`
 * against a repository folder, with or without a running server. Progress goes to stderr:
 * a bar on a terminal, JSON lines otherwise; results go to stdout as JSON. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backup/archive.h"
#include "backup/check.h"
#include "backup/dbdump.h"
#include "backup/prune.h"
#include "backup/repo.h"
#include "backup/restore.h"
#include "cli/cli.h"
#include "util/timeutil.h"

enum {
    OPT_FULL = 'F',
    OPT_DESC = 'd',
    OPT_PASSWORD_FILE = 'p',
    OPT_PLAINTEXT = 'P',
    OPT_DATABASE = 'D',
    OPT_KEEP_LAST = 'l',
    OPT_KEEP_DAILY = 'y',
    OPT_KEEP_WEEKLY = 'w',
    OPT_KEEP_MONTHLY = 'm',
    OPT_RETENTION = 'r',
    OPT_QUICK = 'q',
    OPT_NEW_PASSWORD = 'n',
    OPT_NO_PROGRESS = 'N',
};

static const struct option own_options[] = {
    {"full", no_argument, NULL, OPT_FULL},
    {"description", required_argument, NULL, OPT_DESC},
    {"password-file", required_argument, NULL, OPT_PASSWORD_FILE},
    {"insecure-no-encryption", no_argument, NULL, OPT_PLAINTEXT},
    {"database", no_argument, NULL, OPT_DATABASE},
    {"keep-last", required_argument, NULL, OPT_KEEP_LAST},
    {"keep-daily", required_argument, NULL, OPT_KEEP_DAILY},
    {"keep-weekly", required_argument, NULL, OPT_KEEP_WEEKLY},
    {"keep-monthly", required_argument, NULL, OPT_KEEP_MONTHLY},
    {"retention-days", required_argument, NULL, OPT_RETENTION},
    {"quick", no_argument, NULL, OPT_QUICK},
    {"new-password-file", required_argument, NULL, OPT_NEW_PASSWORD},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ferry backup create REPO SOURCE [--full] [--description TEXT]\n"
            "       ferry backup create REPO --database [--description TEXT]\n"
            "       ferry backup versions REPO\n"
            "       ferry backup restore REPO VERSION|latest|TIME TARGET\n"
            "       ferry backup prune REPO [--keep-last N] [--keep-daily N] [--keep-weekly N]\n"
            "                               [--keep-monthly N] [--retention-days N]\n"
            "       ferry backup check REPO [--quick]\n"
            "       ferry backup repair REPO\n"
            "       ferry backup password REPO --new-password-file FILE\n\n"
            "Versioned, deduplicated, encrypted backups of a folder into a repository folder\n"
            "(made by the first create). Works with the server running or stopped; runs on one\n"
            "repository wait for each other. Results are JSON on stdout; progress goes to\n"
            "stderr (a bar on a terminal, JSON lines otherwise, none with --no-progress).\n\n"
            "  --full                   re-read every file (default: only those whose size,\n"
            "                           mtime or inode changed since the last version)\n"
            "  --description TEXT       a note kept with the version\n"
            "  --database               back up ferry's own database (--db/--data-dir) instead\n"
            "                           of a folder: a consistent online copy\n"
            "  --password-file FILE     the repository password (first line); else\n"
            "                           FERRY_BACKUP_PASSWORD, else --backup-password-file\n"
            "  --insecure-no-encryption create a plaintext repository\n"
            "  --keep-last N ...        prune: keep the newest N, the newest of each of the last\n"
            "                           N days/weeks/months, or all of the last N days; the\n"
            "                           newest version is always kept\n"
            "  --quick                  check: do not read every chunk, only the structure\n"
            "  TIME                     ISO 8601 (2024-01-15T10:30:00Z): the newest version\n"
            "                           made at or before it\n"
            "Exit status: 0 done, 1 failed (check: damage found), 2 usage error.\n");
}

struct backup_args {
    const char *verb, *repo, *source, *version, *target, *description;
    const char *password_file, *new_password_file;
    bool full, plaintext, database, quick, no_progress;
    struct prune_policy policy;
};

static int count_arg(const char *name, const char *v, int *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || end == v || n < 0 || n > 1000000)
        return cli_usage_error(&cli_backup, "--%s must be a count, not '%s'", name, v);
    *out = (int)n;
    return -1;
}

static int own_option(const struct config_hit *hit, struct backup_args *b)
{
    switch (hit->val) {
    case OPT_FULL:
        b->full = true;
        break;
    case OPT_DESC:
        b->description = hit->value;
        break;
    case OPT_PASSWORD_FILE:
        b->password_file = hit->value;
        break;
    case OPT_PLAINTEXT:
        b->plaintext = true;
        break;
    case OPT_DATABASE:
        b->database = true;
        break;
    case OPT_QUICK:
        b->quick = true;
        break;
    case OPT_NO_PROGRESS:
        b->no_progress = true;
        break;
    case OPT_NEW_PASSWORD:
        b->new_password_file = hit->value;
        break;
    case OPT_KEEP_LAST:
        return count_arg(hit->name, hit->value, &b->policy.keep_last);
    case OPT_KEEP_DAILY:
        return count_arg(hit->name, hit->value, &b->policy.keep_daily);
    case OPT_KEEP_WEEKLY:
        return count_arg(hit->name, hit->value, &b->policy.keep_weekly);
    case OPT_KEEP_MONTHLY:
        return count_arg(hit->name, hit->value, &b->policy.keep_monthly);
    case OPT_RETENTION:
        return count_arg(hit->name, hit->value, &b->policy.retention_days);
    }
    return -1;
}

/* How many positional arguments each verb takes after REPO. */
static int verb_args(const char *verb, bool database)
{
    static const struct {
        const char *verb;
        int n;
    } verbs[] = {{"create", 1}, {"versions", 0}, {"restore", 2}, {"prune", 0},
                 {"check", 0},  {"repair", 0},   {"password", 0}};
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (!strcmp(verb, verbs[i].verb))
            return database && !strcmp(verb, "create") ? 0 : verbs[i].n;
    return -1;
}

static int check_args(const struct config_args *a, struct backup_args *b)
{
    b->policy = (struct prune_policy){-1, -1, -1, -1, -1};
    for (size_t i = 0; i < a->n_own; i++) {
        int rc = own_option(&a->own[i], b);
        if (rc >= 0)
            return rc;
    }
    if (a->n_positional < 1)
        return cli_usage_error(&cli_backup, "which command: create, versions, restore, prune, "
                                            "check, repair or password?");
    b->verb = a->positional[0];
    int n = verb_args(b->verb, b->database);
    if (n < 0)
        return cli_usage_error(&cli_backup, "unknown command '%s'", b->verb);
    if (a->n_positional != (size_t)n + 2)
        return cli_usage_error(&cli_backup, "backup %s takes REPO%s", b->verb,
                               n == 2   ? " VERSION TARGET"
                               : n == 1 ? " SOURCE"
                                        : "");
    b->repo = a->positional[1];
    if (!strcmp(b->verb, "create"))
        b->source = n ? a->positional[2] : NULL;
    if (n == 2) {
        b->version = a->positional[2];
        b->target = a->positional[3];
    }
    if (!strcmp(b->verb, "password") && !b->new_password_file)
        return cli_usage_error(&cli_backup, "backup password needs --new-password-file");
    return -1;
}

/* The repository password: --password-file, FERRY_BACKUP_PASSWORD, the setting. */
static int password(const struct backup_args *b, const struct config *cfg, char **out,
                    struct err *err)
{
    const char *env = getenv("FERRY_BACKUP_PASSWORD");
    *out = NULL;
    if (b->password_file)
        return repo_read_password_file(b->password_file, out, err);
    if (env && *env) {
        *out = xstrdup(env);
        return FERRY_OK;
    }
    if (cfg->backup_password_file)
        return repo_read_password_file(cfg->backup_password_file, out, err);
    return FERRY_OK;
}

/* --- progress ------------------------------------------------------------------------- */

struct bar {
    bool tty, off;
    int64_t start_us;
};

static void human(double bytes, char *out, size_t cap)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) {
        bytes /= 1024;
        u++;
    }
    snprintf(out, cap, "%.1f %s", bytes, units[u]);
}

static void show_progress(void *ctx, const struct repo_progress *p)
{
    struct bar *bar = ctx;
    double secs = (double)(time_mono_us() - bar->start_us) / 1e6;
    double rate = secs > 0 ? (double)p->bytes_done / secs : 0;
    double eta = rate > 0 && p->bytes_total > p->bytes_done
                     ? (double)(p->bytes_total - p->bytes_done) / rate
                     : 0;
    if (bar->off)
        return;
    if (!bar->tty) {
        fprintf(stderr,
                "{\"bytesDone\":%llu,\"bytesTotal\":%llu,\"filesDone\":%llu,\"filesTotal\":%llu,"
                "\"bytesPerSecond\":%.0f,\"etaSeconds\":%.0f}\n",
                (unsigned long long)p->bytes_done, (unsigned long long)p->bytes_total,
                (unsigned long long)p->files_done, (unsigned long long)p->files_total, rate, eta);
        return;
    }
    char done[32], total[32], speed[32];
    human((double)p->bytes_done, done, sizeof(done));
    human((double)p->bytes_total, total, sizeof(total));
    human(rate, speed, sizeof(speed));
    int pct = p->bytes_total ? (int)(100.0 * (double)p->bytes_done / (double)p->bytes_total) : 100;
    fprintf(stderr, "\r\033[K%3d%%  %s / %s  %llu/%llu files  %s/s  ETA %d:%02d", pct, done, total,
            (unsigned long long)p->files_done, (unsigned long long)p->files_total, speed,
            (int)eta / 60, (int)eta % 60);
}

static void end_progress(const struct bar *bar)
{
    if (bar->tty && !bar->off)
        fputc('\n', stderr);
}

/* --- the commands --------------------------------------------------------------------- */

static int do_create(struct repo *r, const struct backup_args *b, const struct config *cfg,
                     struct bar *bar, struct err *err)
{
    struct archive_options o = {.source = b->source,
                                .full = b->full,
                                .description = b->description,
                                .feed_cursor = -1,
                                .progress = show_progress,
                                .progress_ctx = bar};
    struct snapshot s;
    char tmp[] = "/tmp/ferry-db-XXXXXX";
    char *url = NULL;
    int rc = FERRY_ERR;
    if (b->database) {
        if (!mkdtemp(tmp))
            return err_set(err, ERR_INTERNAL, "cannot make a temporary folder");
        url = config_db_url(cfg);
        if (dbdump_write(url, tmp, err) != FERRY_OK)
            goto out;
        o.source = tmp;
        o.full = true;
        o.description = b->description ? b->description : "ferry database";
    }
    if (archive_create(r, &o, &s, err) != FERRY_OK)
        goto out;
    end_progress(bar);
    json_t *j = snapshot_created_json(&s);
    cli_print_json(j);
    json_decref(j);
    snapshot_clear(&s);
    rc = FERRY_OK;
out:
    if (b->database) {
        char *db = xasprintf("%s/ferry.db", tmp), *dump = xasprintf("%s/ferry.pgdump", tmp);
        unlink(db);
        unlink(dump);
        rmdir(tmp);
        free(db);
        free(dump);
    }
    free(url);
    return rc;
}

static int do_versions(struct repo *r, struct err *err)
{
    struct snapshot *list = NULL;
    size_t n = 0;
    if (repo_lock(r, false, REPO_LOCK_WAIT_MS, err) != FERRY_OK ||
        snapshot_list(r->path, r->key, &list, &n, err) != FERRY_OK)
        return FERRY_ERR;
    repo_unlock(r);
    json_t *versions = json_array();
    for (size_t i = n; i-- > 0;) /* newest first */
        json_array_append_new(versions, snapshot_summary_json(&list[i]));
    json_t *j = json_pack("{s:o, s:I}", "versions", versions, "totalCount", (json_int_t)n);
    cli_print_json(j);
    json_decref(j);
    snapshot_list_free(list, n);
    return FERRY_OK;
}

static int do_restore(struct repo *r, const struct backup_args *b, struct bar *bar, struct err *err)
{
    char id[37];
    int64_t at = INT64_MAX, created = 0;
    struct restore_options o = {.version_id = b->version,
                                .target = b->target,
                                .progress = show_progress,
                                .progress_ctx = bar};
    struct restore_result res;
    bool by_time = !strcmp(b->version, "latest") || time_parse_iso8601(b->version, &at) == 0;
    if (by_time) {
        if (restore_pick(r, at, id, &created, err) != FERRY_OK)
            return FERRY_ERR;
        o.version_id = id;
    }
    int rc = restore_run(r, &o, &res, err);
    end_progress(bar);
    json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:O}", "versionId", o.version_id, "restorePath",
                          b->target, "fileCount", (json_int_t)res.files, "totalSize",
                          (json_int_t)res.bytes, "damagedFiles", res.damaged);
    if (rc == FERRY_OK || json_array_size(res.damaged))
        cli_print_json(j);
    json_decref(j);
    restore_result_cleanup(&res);
    return rc;
}

static int do_prune(struct repo *r, const struct backup_args *b, struct err *err)
{
    struct prune_result res;
    int rc = prune_run(r, &b->policy, time_now_ms(), &res, err);
    if (rc == FERRY_OK) {
        json_t *j = json_pack("{s:I, s:I, s:I, s:O}", "deletedCount", (json_int_t)res.deleted,
                              "keptCount", (json_int_t)res.kept, "freedBytes",
                              (json_int_t)res.freed_bytes, "deletedVersions", res.deleted_ids);
        cli_print_json(j);
        json_decref(j);
    }
    prune_result_cleanup(&res);
    return rc;
}

/* check and repair: the report on stdout; damage found is a failure (exit 1). */
static int do_check(struct repo *r, const struct backup_args *b, struct err *err)
{
    struct check_report rep;
    check_report_init(&rep);
    int rc = !strcmp(b->verb, "repair") ? check_repair(r, &rep, err)
                                        : check_run(r, !b->quick, &rep, err);
    if (rc == FERRY_OK) {
        json_t *j = check_report_json(&rep);
        cli_print_json(j);
        json_decref(j);
        if (!check_report_ok(&rep))
            rc = err_set(err, ERR_INTERNAL, "the repository %s is damaged: %s", r->path,
                         json_string_value(json_array_get(rep.problems, 0)));
    }
    check_report_cleanup(&rep);
    return rc;
}

static int do_password(struct repo *r, const struct backup_args *b, struct err *err)
{
    char *pw = NULL;
    int rc = FERRY_ERR;
    if (repo_read_password_file(b->new_password_file, &pw, err) == FERRY_OK &&
        repo_lock(r, true, REPO_LOCK_WAIT_MS, err) == FERRY_OK)
        rc = repo_change_password(r, pw, err);
    if (rc == FERRY_OK)
        fprintf(stderr, "the password of %s is changed\n", r->path);
    free(pw);
    return rc;
}

static int dispatch(const struct backup_args *b, const struct config *cfg, struct err *err)
{
    struct repo *r = NULL;
    char *pw = NULL;
    struct bar bar = {
        .tty = isatty(STDERR_FILENO), .off = b->no_progress, .start_us = time_mono_us()};
    int rc = FERRY_ERR;
    bool create = !strcmp(b->verb, "create");
    if (password(b, cfg, &pw, err) != FERRY_OK ||
        repo_open(b->repo, pw, create, b->plaintext, &r, err) != FERRY_OK)
        goto out;
    if (create)
        rc = do_create(r, b, cfg, &bar, err);
    else if (!strcmp(b->verb, "versions"))
        rc = do_versions(r, err);
    else if (!strcmp(b->verb, "restore"))
        rc = do_restore(r, b, &bar, err);
    else if (!strcmp(b->verb, "prune"))
        rc = do_prune(r, b, err);
    else if (!strcmp(b->verb, "password"))
        rc = do_password(r, b, err);
    else
        rc = do_check(r, b, err);
out:
    repo_close(r);
    free(pw);
    return rc;
}

static int run(int argc, char **argv)
{
    struct config cfg;
    struct config_args a;
    struct backup_args b = {0};
    struct err err = {0};
    int rc = cli_parse(&cli_backup, argc, argv, own_options,
                       sizeof(own_options) / sizeof(own_options[0]), &a, &cfg);
    if (rc >= 0 || (rc = check_args(&a, &b)) >= 0)
        goto out;
    rc = dispatch(&b, &cfg, &err) == FERRY_OK ? CLI_OK : cli_fail(&err);
out:
    config_cleanup(&cfg);
    config_args_cleanup(&a);
    return rc;
}

const struct cli_command cli_backup = {"backup", "versioned, deduplicated, encrypted backups", run,
                                       usage};
