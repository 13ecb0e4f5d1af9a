/* cli/sites.c - `ferry sites ...`: the admin API's site-connection operations from the
 * command line, straight on the database (with the server running or not) and the
 * remote sites. `pull` runs the import here and now and prints its report. Answers are
 * printed as JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "sites/siteclient.h"
#include "sites/siteimport.h"
#include "sites/siteops.h"
#include "sites/sites.h"

struct sites_args {
    const char *name, *url, *password, *tables, *strategy, *mode, *allowed, *excluded, *id;
    bool incremental;
    char **rest;
    int n_rest;
};

static int parse(int argc, char **argv, struct sites_args *a, struct err *err)
{
    static const char *own[] = {"--name",     "--url",           "--password", "--tables",
                                "--strategy", "--incoming-mode", "--allowed",  "--excluded"};
    const char **slots[] = {&a->name,     &a->url,  &a->password, &a->tables,
                            &a->strategy, &a->mode, &a->allowed,  &a->excluded};
    a->rest = xcalloc((size_t)argc + 1, sizeof(char *));
    for (int i = 0; i < argc; i++) {
        int which = -1;
        for (int k = 0; k < 8; k++)
            if (!strcmp(argv[i], own[k]))
                which = k;
        if (!strcmp(argv[i], "--incremental")) {
            a->incremental = true;
        } else if (which >= 0) {
            if (i + 1 >= argc)
                return err_set(err, ERR_INVALID, "%s needs a value", argv[i]);
            *slots[which] = argv[++i];
        } else if (argv[i][0] != '-' && !a->id) {
            a->id = argv[i];
        } else {
            a->rest[a->n_rest++] = argv[i];
            if (argv[i][0] == '-' && !strchr(argv[i], '=') && i + 1 < argc && argv[i + 1][0] != '-')
                a->rest[a->n_rest++] = argv[++i];
        }
    }
    return FERRY_OK;
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

static void print(json_t *v)
{
    char *text = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
    printf("%s\n", text ? text : "null");
    free(text);
}

static int need_id(const struct sites_args *a, const char *verb, struct err *err)
{
    return a->id ? FERRY_OK : err_set(err, ERR_INVALID, "sites %s needs a connection id", verb);
}

static int run(struct store *st, struct store_conn *c, const struct siteops_env *env,
               const char *verb, const struct sites_args *a, json_t **out, struct err *err)
{
    static const char *actions[] = {"approve", "deny", "suspend", "reactivate", "revoke"};
    if (!strcmp(verb, "list"))
        return sites_list(c, out, err);
    if (!strcmp(verb, "settings")) {
        struct site_settings set = {0};
        if (sites_settings_set(c, a->mode, a->password, err) != FERRY_OK ||
            sites_settings_get(c, &set, err) != FERRY_OK)
            return FERRY_ERR;
        *out = json_pack("{s:s, s:b}", "incoming_mode", sites_mode_name(set.mode), "password_set",
                         set.password_hash != NULL);
        sites_settings_clear(&set);
        return FERRY_OK;
    }
    if (!strcmp(verb, "create")) {
        json_t *body = json_pack("{s:s?, s:s?, s:s?}", "name", a->name, "url", a->url, "password",
                                 a->password);
        if (a->allowed)
            json_object_set_new(body, "allowed_tables", list_json(a->allowed));
        if (a->excluded)
            json_object_set_new(body, "excluded_tables", list_json(a->excluded));
        int rc = siteops_create(c, env, body, out, err);
        json_decref(body);
        return rc;
    }
    if (need_id(a, verb, err) != FERRY_OK)
        return FERRY_ERR;
    if (!strcmp(verb, "show")) {
        struct site s = {0};
        bool found = false;
        if (sites_get(c, a->id, &s, &found, err) != FERRY_OK)
            return FERRY_ERR;
        if (found)
            *out = sites_json(&s);
        sites_clear(&s);
        return found ? FERRY_OK : err_set(err, ERR_NOT_FOUND, "no site connection '%s'", a->id);
    }
    for (size_t i = 0; i < 5; i++)
        if (!strcmp(verb, actions[i]))
            return siteops_action(c, env, a->id, verb, out, err);
    if (!strcmp(verb, "verify"))
        return siteops_verify(c, env, a->id, out, err);
    if (!strcmp(verb, "delete"))
        return siteops_delete(c, env, a->id, out, err);
    if (!strcmp(verb, "transfers"))
        return siteimport_transfers(c, a->id, out, err);
    if (!strcmp(verb, "pull")) {
        char job[40];
        json_t *tables = list_json(a->tables ? a->tables : "");
        int rc =
            siteimport_start(c, a->id, tables, a->strategy, a->incremental, true, NULL, job, err);
        json_decref(tables);
        if (rc == FERRY_OK)
            rc = siteimport_run_now(st, c, env, job, err);
        if (rc == FERRY_OK)
            rc = siteimport_transfers(c, a->id, out, err);
        return rc;
    }
    return err_set(err, ERR_INVALID, "unknown sites command '%s' (see ferry --help)", verb);
}

int cmd_sites(int argc, char **argv)
{
    struct config cfg = {0};
    struct err err = {0};
    struct sites_args a = {0};
    struct store *st = NULL;
    struct store_conn *c = NULL;
    json_t *out = NULL;
    char *public_url = NULL;
    int rc = FERRY_ERR;

    if (argc < 1 || !strcmp(argv[0], "--help")) {
        fprintf(argc < 1 ? stderr : stdout, "usage: ferry sites COMMAND (see ferry --help)\n");
        return argc < 1 ? 2 : 0;
    }
    siteclient_global_init();
    if (parse(argc - 1, argv + 1, &a, &err) != FERRY_OK ||
        config_load(&cfg, a.n_rest, a.rest, &err) != FERRY_OK ||
        cli_open_store(&cfg, 2, &st, &err) != FERRY_OK || store_acquire(st, &c, &err) != FERRY_OK)
        goto out;
    public_url = cfg.public_url ? xstrdup(cfg.public_url) : xasprintf("http://%s", cfg.listen);
    struct siteops_env env = {
        .public_url = public_url,
        .client = {.allow_private = cfg.sites_allow_private, .timeout_s = cfg.sites_timeout},
    };
    rc = run(st, c, &env, argv[0], &a, &out, &err);
    if (rc == FERRY_OK)
        print(out);
out:
    json_decref(out);
    store_release(c);
    store_close(st);
    config_cleanup(&cfg);
    free(public_url);
    free(a.rest);
    siteclient_global_cleanup();
    return rc == FERRY_OK ? 0 : cli_fail(&err);
}
