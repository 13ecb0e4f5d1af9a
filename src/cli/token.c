/* cli/token.c - `ferry token create|list|revoke`: API tokens managed straight in the
 * database (with the server running or not). The secret of a new token is printed once,
 * on stdout; everything else said goes to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/tokens.h"
#include "cli/cli.h"
#include "util/timeutil.h"

enum {
    OPT_ROLE = 'r',
    OPT_NAME = 'n',
    OPT_USER = 'u',
    OPT_DEVICE = 'd',
    OPT_EXPIRES = 'e',
    OPT_TABLES = 't',
    OPT_ATTR = 'a'
};

static const struct option own_options[] = {
    {"role", required_argument, NULL, OPT_ROLE},
    {"name", required_argument, NULL, OPT_NAME},
    {"user", required_argument, NULL, OPT_USER},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"expires-in", required_argument, NULL, OPT_EXPIRES},
    {"tables", required_argument, NULL, OPT_TABLES},
    {"attr", required_argument, NULL, OPT_ATTR},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: ferry token create --role admin|user|device --name NAME [--user ID]\n"
                 "                          [--device ID] [--expires-in SECONDS] [--tables a,b]\n"
                 "                          [--attr NAME=VALUE]...\n"
                 "       ferry token list\n"
                 "       ferry token revoke ID\n\n"
                 "Manages API tokens straight in the database, with the server running or not.\n"
                 "The database must exist (ferry serve creates it). create prints the secret on\n"
                 "stdout, once; list prints JSON, never a secret.\n\n"
                 "  --role ROLE          admin, user or device\n"
                 "  --name NAME          a name to recognise the token by\n"
                 "  --user ID            the user a user or device token acts for\n"
                 "  --device ID          the device a device token belongs to (registered if new)\n"
                 "  --expires-in SECONDS lifetime (default: no expiry)\n"
                 "  --tables a,b         synced tables the token may use (default: all)\n"
                 "  --attr NAME=VALUE    an attribute the sync rules' claim rules read, e.g.\n"
                 "                       --attr tenant_id=acme (repeatable)\n\n"
                 "Which database: --data-dir DIR, --db URL, --config FILE and the FERRY_*\n"
                 "variables, as for ferry serve (any of its settings is accepted; see\n"
                 "ferry serve --help).\n");
}

struct token_args {
    const char *verb, *id;
    struct token_spec spec;
    const char *expires_in;
    bool role_given;
    json_t *attrs; /* --attr NAME=VALUE, gathered */
    char *attrs_text;
};

/* Adds one --attr NAME=VALUE (the value a string) to t->attrs. */
static int add_attr(struct token_args *t, const char *v)
{
    const char *eq = strchr(v, '=');
    if (!eq || eq == v)
        return cli_usage_error(&cli_token, "--attr must be NAME=VALUE, not '%s'", v);
    if (!t->attrs)
        t->attrs = json_object();
    char *name = xasprintf("%.*s", (int)(eq - v), v);
    json_object_set_new(t->attrs, name, json_string(eq + 1));
    free(name);
    return -1;
}

/* Checks the command line's shape (a usage error, exit 2) before anything is opened. */
static int check_args(const struct config_args *a, struct token_args *t)
{
    const struct cli_command *cmd = &cli_token;
    if (a->n_positional < 1)
        return cli_usage_error(cmd, "which command: create, list or revoke ID?");
    t->verb = a->positional[0];
    bool create = !strcmp(t->verb, "create"), revoke = !strcmp(t->verb, "revoke");
    if (!create && !revoke && strcmp(t->verb, "list") != 0)
        return cli_usage_error(cmd, "unknown command '%s' (create, list or revoke ID)", t->verb);
    if (a->n_positional != (revoke ? 2u : 1u))
        return cli_usage_error(cmd,
                               revoke ? "revoke needs one token id" : "unexpected argument '%s'",
                               a->positional[a->n_positional - 1]);
    t->id = revoke ? a->positional[1] : NULL;
    if (!create && a->n_own)
        return cli_usage_error(cmd, "--%s applies to token create only", a->own[0].name);
    for (size_t i = 0; i < a->n_own; i++) {
        const char *v = a->own[i].value;
        switch (a->own[i].val) {
        case OPT_ROLE:
            t->spec.role = tokens_parse_role(v);
            t->role_given = true;
            break;
        case OPT_NAME:
            t->spec.name = v;
            break;
        case OPT_USER:
            t->spec.user_id = v;
            break;
        case OPT_DEVICE:
            t->spec.device_id = v;
            break;
        case OPT_EXPIRES:
            t->expires_in = v;
            break;
        case OPT_TABLES:
            t->spec.tables = v;
            break;
        case OPT_ATTR:
            if (add_attr(t, v) >= 0)
                return CLI_USAGE;
            break;
        }
    }
    if (t->attrs) {
        t->attrs_text = json_dumps(t->attrs, JSON_COMPACT);
        t->spec.attrs = t->attrs_text;
    }
    if (create && (!t->role_given || !t->spec.name))
        return cli_usage_error(cmd, "token create needs --role and --name");
    if (t->expires_in) {
        char *end;
        long long s = strtoll(t->expires_in, &end, 10);
        if (*end || end == t->expires_in || s <= 0)
            return cli_usage_error(cmd, "--expires-in must be a number of seconds, not '%s'",
                                   t->expires_in);
        t->spec.expires_at = time_now_ms() + s * 1000;
    }
    struct err err = {0};
    if (create && tokens_check(&t->spec, time_now_ms(), &err) != FERRY_OK)
        return cli_usage_error(cmd, "%s", err.msg);
    return -1;
}

static int token_create(struct store_conn *c, const struct token_args *t, struct err *err)
{
    char *secret = NULL, id[40];
    if (tokens_create(c, &t->spec, &secret, id, err) != FERRY_OK)
        return FERRY_ERR;
    printf("%s\n", secret);
    fprintf(stderr, "created token %s (role %s); it is shown only this once\n", id,
            tokens_role_name(t->spec.role));
    free(secret);
    return FERRY_OK;
}

static int token_list(struct store_conn *c, struct err *err)
{
    json_t *list = NULL;
    if (tokens_list(c, NULL, &list, err) != FERRY_OK)
        return FERRY_ERR;
    cli_print_json(list);
    json_decref(list);
    return FERRY_OK;
}

static int token_revoke(struct store_conn *c, const struct token_args *t, struct err *err)
{
    if (tokens_revoke(c, t->id, err) != FERRY_OK)
        return FERRY_ERR;
    fprintf(stderr, "revoked token %s\n", t->id);
    return FERRY_OK;
}

static int run(int argc, char **argv)
{
    struct config cfg;
    struct config_args a;
    struct token_args t = {0};
    struct err err = {0};
    struct store *st = NULL;
    struct store_conn *c = NULL;
    int rc = cli_parse(&cli_token, argc, argv, own_options,
                       sizeof(own_options) / sizeof(own_options[0]), &a, &cfg);
    if (rc >= 0 || (rc = check_args(&a, &t)) >= 0)
        goto out;
    int done = FERRY_ERR;
    if (cli_open_store(&cfg, 1, false, &st, &err) == FERRY_OK &&
        store_acquire(st, &c, &err) == FERRY_OK) {
        if (!strcmp(t.verb, "create"))
            done = token_create(c, &t, &err);
        else if (!strcmp(t.verb, "list"))
            done = token_list(c, &err);
        else
            done = token_revoke(c, &t, &err);
    }
    rc = done == FERRY_OK ? CLI_OK : cli_fail(&err);
out:
    store_release(c);
    store_close(st);
    config_cleanup(&cfg);
    config_args_cleanup(&a);
    json_decref(t.attrs);
    free(t.attrs_text);
    return rc;
}

const struct cli_command cli_token = {"token", "create, list and revoke API tokens", run, usage};
