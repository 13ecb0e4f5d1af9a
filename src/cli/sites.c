/* cli/sites.c - `ferry sites ...`: the admin API's site-connection operations from the
 * command line, straight on the database (with the server running or not) and the
 * remote sites. `pull` runs the import here and now and prints its report. Answers are
 * printed as JSON. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "sites/siteclient.h"
#include "sites/siteimport.h"
#include "sites/siteops.h"
#include "sites/sites.h"

enum {
    OPT_NAME = 1,
    OPT_URL,
    OPT_PASSWORD,
    OPT_TABLES,
    OPT_STRATEGY,
    OPT_MODE,
    OPT_ALLOWED,
    OPT_EXCLUDED,
    OPT_INCREMENTAL,
};

static const struct option own_options[] = {
    {"name", required_argument, NULL, OPT_NAME},
    {"url", required_argument, NULL, OPT_URL},
    {"password", required_argument, NULL, OPT_PASSWORD},
    {"tables", required_argument, NULL, OPT_TABLES},
    {"strategy", required_argument, NULL, OPT_STRATEGY},
    {"incoming-mode", required_argument, NULL, OPT_MODE},
    {"allowed", required_argument, NULL, OPT_ALLOWED},
    {"excluded", required_argument, NULL, OPT_EXCLUDED},
    {"incremental", no_argument, NULL, OPT_INCREMENTAL},
};

#define BIT(opt) (1u << (opt))

/* Each command, whether it names a connection, and the options it takes. */
static const struct verb {
    const char *name;
    bool needs_id;
    unsigned options;
} verbs[] = {
    {"list", false, 0},
    {"settings", false, BIT(OPT_MODE) | BIT(OPT_PASSWORD)},
    {"create", false,
     BIT(OPT_NAME) | BIT(OPT_URL) | BIT(OPT_PASSWORD) | BIT(OPT_ALLOWED) | BIT(OPT_EXCLUDED)},
    {"show", true, 0},
    {"approve", true, 0},
    {"deny", true, 0},
    {"suspend", true, 0},
    {"reactivate", true, 0},
    {"revoke", true, 0},
    {"verify", true, 0},
    {"delete", true, 0},
    {"transfers", true, 0},
    {"pull", true, BIT(OPT_TABLES) | BIT(OPT_STRATEGY) | BIT(OPT_INCREMENTAL)},
};

struct sites_args {
    const char *name, *url, *password, *tables, *strategy, *mode, *allowed, *excluded, *id;
    const char *verb;
    bool incremental;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ferry sites list\n"
            "       ferry sites show ID\n"
            "       ferry sites settings [--incoming-mode MODE] [--password P]\n"
            "       ferry sites create --name NAME --url URL [--password P] [--allowed a,b]\n"
            "                          [--excluded c,d]\n"
            "       ferry sites approve|deny|suspend|reactivate|revoke|verify|delete ID\n"
            "       ferry sites pull ID --tables a,b [--strategy skip|overwrite|merge|append]\n"
            "                          [--incremental]\n"
            "       ferry sites transfers ID\n\n"
            "Site-to-site connections (PhoenixKit), straight on the database, with the\n"
            "server running or not; calls to the remote site are made from here. pull runs\n"
            "the import now and prints its transfers. Answers are JSON on stdout. The\n"
            "database must exist (ferry serve creates it).\n\n"
            "  --incoming-mode MODE auto_accept, require_approval, require_password or deny_all\n"
            "  --password P         the password (settings: the one remote sites must give;\n"
            "                       create: the one the remote site asks of us)\n"
            "  --name NAME, --url URL  the connection's name and the remote site's URL\n"
            "  --allowed a,b, --excluded c,d  tables the remote site may or may not pull\n"
            "  --tables a,b         tables to pull\n"
            "  --strategy S         how pulled rows meet existing ones (default: the site's)\n"
            "  --incremental        pull only rows changed since the last pull\n\n"
            "Which database and how remote sites are called: --data-dir, --db, --config,\n"
            "--public-url, --sites-timeout, --sites-allow-private and the FERRY_* variables,\n"
            "as for ferry serve (see ferry serve --help).\n");
}

static const struct verb *find_verb(const char *name)
{
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (!strcmp(verbs[i].name, name))
            return &verbs[i];
    return NULL;
}

static void take(struct sites_args *s, int val, const char *value)
{
    const char **slots[] = {
        [OPT_NAME] = &s->name,       [OPT_URL] = &s->url,           [OPT_PASSWORD] = &s->password,
        [OPT_TABLES] = &s->tables,   [OPT_STRATEGY] = &s->strategy, [OPT_MODE] = &s->mode,
        [OPT_ALLOWED] = &s->allowed, [OPT_EXCLUDED] = &s->excluded};
    if (val == OPT_INCREMENTAL)
        s->incremental = true;
    else
        *slots[val] = value;
}

/* Checks the command line's shape (a usage error, exit 2) before anything is opened. */
static int check_args(const struct config_args *a, struct sites_args *s)
{
    const struct cli_command *cmd = &cli_sites;
    if (a->n_positional < 1)
        return cli_usage_error(cmd, "which command? (list, show ID, create, pull ID, ...)");
    const struct verb *v = find_verb(a->positional[0]);
    if (!v)
        return cli_usage_error(cmd, "unknown command '%s'", a->positional[0]);
    s->verb = v->name;
    if (v->needs_id && a->n_positional < 2)
        return cli_usage_error(cmd, "sites %s needs a connection id", v->name);
    if (a->n_positional > (v->needs_id ? 2u : 1u))
        return cli_usage_error(cmd, "unexpected argument '%s'", a->positional[a->n_positional - 1]);
    s->id = v->needs_id ? a->positional[1] : NULL;
    for (size_t i = 0; i < a->n_own; i++) {
        if (!(v->options & BIT(a->own[i].val)))
            return cli_usage_error(cmd, "sites %s takes no --%s", v->name, a->own[i].name);
        take(s, a->own[i].val, a->own[i].value);
    }
    return -1;
}

/* "a,b" as a JSON array of strings. */
static json_t *list_json(const char *list)
{
    json_t *arr = json_array();
    char *copy = xstrdup(list), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(arr, json_string(t));
    free(copy);
    return arr;
}

static int settings(struct store_conn *c, const struct sites_args *a, json_t **out, struct err *err)
{
    struct site_settings set = {0};
    if (sites_settings_set(c, a->mode, a->password, err) != FERRY_OK ||
        sites_settings_get(c, &set, err) != FERRY_OK)
        return FERRY_ERR;
    *out = json_pack("{s:s, s:b}", "incoming_mode", sites_mode_name(set.mode), "password_set",
                     set.password_hash != NULL);
    sites_settings_clear(&set);
    return FERRY_OK;
}

static int create(struct store_conn *c, const struct siteops_env *env, const struct sites_args *a,
                  json_t **out, struct err *err)
{
    json_t *body =
        json_pack("{s:s?, s:s?, s:s?}", "name", a->name, "url", a->url, "password", a->password);
    if (a->allowed)
        json_object_set_new(body, "allowed_tables", list_json(a->allowed));
    if (a->excluded)
        json_object_set_new(body, "excluded_tables", list_json(a->excluded));
    int rc = siteops_create(c, env, body, out, err);
    json_decref(body);
    return rc;
}

static int show(struct store_conn *c, const struct sites_args *a, json_t **out, struct err *err)
{
    struct site s = {0};
    bool found = false;
    if (sites_get(c, a->id, &s, &found, err) != FERRY_OK)
        return FERRY_ERR;
    if (found)
        *out = sites_json(&s);
    sites_clear(&s);
    return found ? FERRY_OK : err_set(err, ERR_NOT_FOUND, "no site connection '%s'", a->id);
}

static int pull(struct store *st, struct store_conn *c, const struct siteops_env *env,
                const struct sites_args *a, json_t **out, struct err *err)
{
    char job[40];
    json_t *tables = list_json(a->tables ? a->tables : "");
    int rc = siteimport_start(c, a->id, tables, a->strategy, a->incremental, true, NULL, job, err);
    json_decref(tables);
    if (rc == FERRY_OK)
        rc = siteimport_run_now(st, c, env, job, err);
    if (rc == FERRY_OK)
        rc = siteimport_transfers(c, a->id, out, err);
    return rc;
}

/* Runs the (checked) command; its answer goes to *out. */
static int dispatch(struct store *st, struct store_conn *c, const struct siteops_env *env,
                    const struct sites_args *a, json_t **out, struct err *err)
{
    static const char *actions[] = {"approve", "deny", "suspend", "reactivate", "revoke"};
    const char *verb = a->verb;
    for (size_t i = 0; i < 5; i++)
        if (!strcmp(verb, actions[i]))
            return siteops_action(c, env, a->id, verb, out, err);
    if (!strcmp(verb, "list"))
        return sites_list(c, out, err);
    if (!strcmp(verb, "settings"))
        return settings(c, a, out, err);
    if (!strcmp(verb, "create"))
        return create(c, env, a, out, err);
    if (!strcmp(verb, "show"))
        return show(c, a, out, err);
    if (!strcmp(verb, "verify"))
        return siteops_verify(c, env, a->id, out, err);
    if (!strcmp(verb, "delete"))
        return siteops_delete(c, env, a->id, out, err);
    if (!strcmp(verb, "transfers"))
        return siteimport_transfers(c, a->id, out, err);
    return pull(st, c, env, a, out, err);
}

static int run(int argc, char **argv)
{
    struct config cfg;
    struct config_args args;
    struct sites_args a = {0};
    struct err err = {0};
    struct store *st = NULL;
    struct store_conn *c = NULL;
    json_t *out = NULL;
    char *public_url = NULL;
    int rc = cli_parse(&cli_sites, argc, argv, own_options,
                       sizeof(own_options) / sizeof(own_options[0]), &args, &cfg);
    if (rc >= 0 || (rc = check_args(&args, &a)) >= 0)
        goto done;
    siteclient_global_init();
    public_url = cfg.public_url ? xstrdup(cfg.public_url) : xasprintf("http://%s", cfg.listen);
    struct siteops_env env = {
        .public_url = public_url,
        .client = {.allow_private = cfg.sites_allow_private, .timeout_s = cfg.sites_timeout},
    };
    if (cli_open_store(&cfg, 2, false, &st, &err) == FERRY_OK &&
        store_acquire(st, &c, &err) == FERRY_OK &&
        dispatch(st, c, &env, &a, &out, &err) == FERRY_OK) {
        cli_print_json(out);
        rc = CLI_OK;
    } else {
        rc = cli_fail(&err);
    }
    json_decref(out);
    store_release(c);
    store_close(st);
    free(public_url);
    siteclient_global_cleanup();
done:
    config_cleanup(&cfg);
    config_args_cleanup(&args);
    return rc;
}

const struct cli_command cli_sites = {"sites", "manage site-to-site connections and imports", run,
                                      usage};
