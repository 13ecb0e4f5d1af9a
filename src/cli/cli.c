/* cli/cli.c - what every subcommand shares: parsing its command line into its own
 * options and the settings, the one-line errors with their exit codes, and opening the
 * store (creating it only for `ferry serve`). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"

int cli_usage_error(const struct cli_command *cmd, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "ferry %s: %s (see 'ferry %s --help')\n", cmd->name, msg, cmd->name);
    return CLI_USAGE;
}

int cli_fail(const struct err *err)
{
    char line[sizeof(err->msg)];
    size_t n = 0;
    /* libpq's messages span lines ("...failed: Connection refused\n\tIs the server...") */
    for (const char *p = err->msg; *p && n < sizeof(line) - 1; p++) {
        bool blank = *p == '\n' || *p == '\r' || *p == '\t' || *p == ' ';
        if (blank && (n == 0 || line[n - 1] == ' '))
            continue;
        line[n++] = blank ? ' ' : *p;
    }
    while (n > 0 && line[n - 1] == ' ')
        n--;
    line[n] = '\0';
    fprintf(stderr, "ferry: %s\n", line);
    return CLI_FAILED;
}

int cli_parse(const struct cli_command *cmd, int argc, char **argv, const struct option *own,
              size_t n_own, struct config_args *a, struct config *cfg)
{
    struct err err = {0};
    memset(cfg, 0, sizeof(*cfg));
    if (config_parse_args(argc, argv, own, n_own, a, &err) != FERRY_OK)
        return cli_usage_error(cmd, "%s", err.msg);
    if (a->help) {
        cmd->usage(stdout);
        return CLI_OK;
    }
    if (config_load_args(cfg, a, &err) != FERRY_OK)
        return cli_usage_error(cmd, "%s", err.msg);
    return -1;
}

int cli_make_dirs(const char *dir, struct err *err)
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

/* The data folder exists (made if missing) and ferry can create files in it. Checked
 * by trying, since permission bits do not tell (root, read-only mounts, ACLs). */
static int writable_data_dir(const char *dir, struct err *err)
{
    struct stat st;
    if (cli_make_dirs(dir, err) != FERRY_OK)
        return FERRY_ERR;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return err_set(err, ERR_INVALID, "data folder %s is not a folder", dir);
    char *probe = xasprintf("%s/.ferry-write-test-XXXXXX", dir);
    int fd = mkstemp(probe);
    int saved = errno;
    if (fd >= 0) {
        close(fd);
        unlink(probe);
    }
    free(probe);
    if (fd < 0)
        return err_set(err, ERR_INVALID, "data folder %s is not writable: %s", dir,
                       strerror(saved));
    return FERRY_OK;
}

/* The SQLite file a database URL names, or NULL for PostgreSQL (see store_open). */
static const char *sqlite_path(const char *url)
{
    if (strncmp(url, "sqlite:", 7) != 0)
        return NULL;
    return strncmp(url + 7, "//", 2) == 0 ? url + 9 : url + 7;
}

/* Commands other than serve must not create a database by mistake (a mistyped
 * --data-dir would otherwise get an empty one). */
static int existing_database(const struct config *cfg, const char *url, struct err *err)
{
    struct stat st;
    const char *path = sqlite_path(url);
    if (!path || !*path)
        return FERRY_OK; /* PostgreSQL: connecting fails for a database that is not there */
    bool default_db = !cfg->db_url || !*cfg->db_url;
    if (default_db && (stat(cfg->data_dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        return err_set(err, ERR_NOT_FOUND,
                       "data folder %s does not exist (give the server's --data-dir)",
                       cfg->data_dir);
    if (stat(path, &st) != 0)
        return err_set(err, ERR_NOT_FOUND,
                       "no database at %s (ferry serve creates it; give the server's --data-dir "
                       "or --db)",
                       path);
    return FERRY_OK;
}

int cli_open_store(const struct config *cfg, int pool, bool create, struct store **st,
                   struct err *err)
{
    char *url = config_db_url(cfg);
    int rc = FERRY_ERR;
    *st = NULL;
    int usable = create ? writable_data_dir(cfg->data_dir, err) : existing_database(cfg, url, err);
    if (usable != FERRY_OK)
        goto out;
    rc = store_open(url, pool, st, err);
out:
    free(url);
    return rc;
}

void cli_print_json(json_t *v)
{
    char *text = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
    printf("%s\n", text ? text : "null");
    free(text);
}
