/* remote.c - the client commands beside `ferry sync`, all on libferry: `ferry login URL`
 * (checks the token, stores server and token for the others), `ferry push DB` / `ferry
 * pull DB` (one half of a sync, a JSON line out), `ferry conflicts` and `ferry resolve ID
 * --keep server|client` (the server's conflict API, JSON out). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/clientconf.h"
#include "cli/progress.h"
#include "cli/remote.h"
#include "ferry/client.h"

#include <curl/curl.h>

/* --watch and --device, for the commands that set a->follow */
static int follow_option(const struct cli_command *cmd, int opt, struct remote_args *a)
{
    if (!a->follow)
        return cli_usage_error(cmd, "--watch and --device are not options of this command");
    if (opt == 'd') {
        a->device = optarg;
        return -1;
    }
    char *end;
    long s = strtol(optarg, &end, 10);
    if (*end || s < 1 || s > 86400)
        return cli_usage_error(cmd, "--watch takes a number of seconds from 1 to 86400");
    a->watch_s = (int)s;
    return -1;
}

int remote_parse(const struct cli_command *cmd, int argc, char **argv, int min, int max,
                 struct remote_args *a)
{
    static const struct option options[] = {
        {"url", required_argument, NULL, 'u'},    {"token", required_argument, NULL, 't'},
        {"cacert", required_argument, NULL, 'c'}, {"status", required_argument, NULL, 's'},
        {"keep", required_argument, NULL, 'k'},   {"help", no_argument, NULL, 'h'},
        {"json", no_argument, NULL, 'j'},         {"watch", required_argument, NULL, 'w'},
        {"device", required_argument, NULL, 'd'}, {NULL, 0, NULL, 0},
    };
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc + 1, argv - 1, "", options, NULL)) != -1) {
        if (opt == 'h') {
            cmd->usage(stdout);
            return CLI_OK;
        }
        if (opt == '?')
            return CLI_USAGE;
        if (opt == 'j') {
            a->json = true;
            continue;
        }
        if (opt == 'w' || opt == 'd') {
            int rc = follow_option(cmd, opt, a);
            if (rc >= 0)
                return rc;
            continue;
        }
        const char **slot = opt == 'u'   ? &a->url
                            : opt == 't' ? &a->token
                            : opt == 'c' ? &a->ca_file
                            : opt == 's' ? &a->status
                                         : &a->keep;
        *slot = optarg;
    }
    int left = argc + 1 - optind;
    if (left < min || left > max)
        return cli_usage_error(cmd, left < min ? "missing argument" : "unexpected argument");
    a->arg = left > 0 ? argv[optind - 1] : NULL;
    a->arg2 = left > 1 ? argv[optind] : NULL;
    return -1;
}

static int parse(const struct cli_command *cmd, int argc, char **argv, bool want_arg,
                 struct remote_args *a)
{
    return remote_parse(cmd, argc, argv, want_arg, want_arg, a);
}

int remote_settings(const struct cli_command *cmd, const struct remote_args *a,
                    struct client_conf *c, struct ferry_client_options *o)
{
    clientconf_resolve(c, a->url, a->token, a->ca_file);
    if (!c->url || !c->token) {
        fprintf(stderr,
                "ferry %s: no server: run 'ferry login URL', or give --url and --token"
                " (or FERRY_URL and FERRY_TOKEN)\n",
                cmd->name);
        return CLI_USAGE;
    }
    o->url = c->url;
    o->token = c->token;
    o->ca_file = c->ca_file;
    o->device_id = a->device ? a->device : getenv("FERRY_DEVICE");
    return -1;
}

/* Sends one request and prints the JSON answer; a refusal is printed as the server
 * said it, on stderr. */
static int request(const struct cli_command *cmd, const struct ferry_client_options *o,
                   const char *method, const char *path, const char *body)
{
    char why[512], *answer = NULL;
    long status = 0;
    int rc = CLI_FAILED;
    if (ferry_request(o, method, path, body, &status, &answer, why, sizeof(why)) !=
        FERRY_CLIENT_OK) {
        fprintf(stderr, "ferry %s: %s\n", cmd->name, why);
        return CLI_FAILED;
    }
    json_t *doc = json_loads(answer, JSON_DECODE_ANY, NULL);
    if (status >= 200 && status < 300) {
        if (doc)
            cli_print_json(doc);
        rc = CLI_OK;
    } else {
        json_t *e = json_object_get(doc, "error");
        const char *msg = json_string_value(json_object_get(doc, "details"));
        if (!msg)
            msg = json_string_value(json_object_get(doc, "message"));
        if (!msg && json_is_object(e))
            msg = json_string_value(json_object_get(e, "message"));
        fprintf(stderr, "ferry %s: HTTP %ld: %s\n", cmd->name, status, msg ? msg : answer);
    }
    json_decref(doc);
    free(answer);
    return rc;
}

static void login_usage(FILE *out)
{
    fprintf(out, "usage: ferry login [--token TOKEN] [--cacert FILE] URL\n\n"
                 "Checks the token against the server at URL and stores both in\n"
                 "~/.config/ferry/client.conf (mode 0600) for the other client commands;\n"
                 "FERRY_URL and FERRY_TOKEN override it. The token comes from --token,\n"
                 "FERRY_TOKEN or the first line of standard input.\n"
                 "Exit status: 0 stored, 1 refused or failed, 2 usage error.\n");
}

static char *token_from_stdin(void)
{
    char line[8192];
    if (isatty(STDIN_FILENO))
        fprintf(stderr, "token: ");
    if (!fgets(line, sizeof(line), stdin))
        return NULL;
    line[strcspn(line, "\r\n")] = '\0';
    return *line ? xstrdup(line) : NULL;
}

static int run_login(int argc, char **argv)
{
    struct remote_args a = {0};
    int rc = parse(&cli_login, argc, argv, true, &a);
    if (rc >= 0)
        return rc;
    struct client_conf c = {xstrdup(a.arg), NULL, a.ca_file ? xstrdup(a.ca_file) : NULL};
    const char *env = getenv("FERRY_TOKEN");
    c.token = a.token ? xstrdup(a.token) : env && *env ? xstrdup(env) : token_from_stdin();
    struct ferry_client_options o = {.url = c.url, .token = c.token, .ca_file = c.ca_file};
    char why[512], *answer = NULL, *path = NULL;
    long status = 0;
    rc = CLI_FAILED;
    if (!c.token)
        rc = cli_usage_error(&cli_login, "no token given");
    else if (ferry_request(&o, "GET", "/api/v1/sync/conflicts", NULL, &status, &answer, why,
                           sizeof(why)) != FERRY_CLIENT_OK)
        fprintf(stderr, "ferry login: %s\n", why);
    else if (status == 401)
        fprintf(stderr, "ferry login: the server refused the token (HTTP 401)\n");
    else if (clientconf_save(&c, why, sizeof(why)) != 0)
        fprintf(stderr, "ferry login: %s\n", why);
    else {
        path = clientconf_path();
        printf("logged in to %s (saved in %s)\n", c.url, path);
        rc = CLI_OK;
    }
    free(path);
    free(answer);
    clientconf_free(&c);
    return rc;
}

const struct cli_command cli_login = {"login", "store a server and token for the client commands",
                                      run_login, login_usage};

/* --- push and pull: one half of a sync ----------------------------------------------- */

static void push_usage(FILE *out)
{
    fprintf(out, "usage: ferry push [--url URL] [--token TOKEN] [--cacert FILE] DB\n\n"
                 "Pushes the rows changed in the replica DB (see 'ferry sync') and pulls\n"
                 "nothing. Prints one JSON line: pushed, conflicts, cursor, ...\n"
                 "Exit status: 0 pushed, 1 failed, 2 usage error.\n");
}

static void pull_usage(FILE *out)
{
    fprintf(out, "usage: ferry pull [--url URL] [--token TOKEN] [--cacert FILE] DB\n\n"
                 "Pulls every remote change into the replica DB and acknowledges it; local\n"
                 "changes stay unpushed. Prints one JSON line: pulled, skipped, cursor, ...\n"
                 "Exit status: 0 pulled, 1 failed, 2 usage error.\n");
}

static int half_sync(const struct cli_command *cmd, int argc, char **argv,
                     int (*half)(ferry_replica *, struct ferry_sync_stats *))
{
    struct remote_args a = {0};
    struct client_conf c = {0};
    struct ferry_client_options o = {0};
    struct ferry_sync_stats s;
    ferry_replica *r = NULL;
    char why[512];
    int rc = parse(cmd, argc, argv, true, &a);
    if (rc < 0)
        rc = remote_settings(cmd, &a, &c, &o);
    if (rc < 0 && ferry_replica_open(a.arg, &o, &r, why, sizeof(why)) != FERRY_CLIENT_OK) {
        fprintf(stderr, "ferry %s: %s\n", cmd->name, why);
        rc = CLI_FAILED;
    }
    if (rc < 0 && half(r, &s) != FERRY_CLIENT_OK) {
        fprintf(stderr, "ferry %s: %s\n", cmd->name, ferry_replica_error(r));
        rc = CLI_FAILED;
    }
    if (rc < 0) {
        cli_print_sync_stats(&s);
        rc = CLI_OK;
    }
    ferry_replica_close(r);
    clientconf_free(&c);
    return rc;
}

static int run_push(int argc, char **argv)
{
    return half_sync(&cli_push, argc, argv, ferry_push);
}

static int run_pull(int argc, char **argv)
{
    return half_sync(&cli_pull, argc, argv, ferry_pull);
}

const struct cli_command cli_push = {"push", "push a replica's local changes", run_push,
                                     push_usage};
const struct cli_command cli_pull = {"pull", "pull remote changes into a replica", run_pull,
                                     pull_usage};

/* --- conflicts ----------------------------------------------------------------------- */

static void conflicts_usage(FILE *out)
{
    fprintf(out, "usage: ferry conflicts [--status open|resolved|all] [--url URL] [--token T]\n\n"
                 "Prints the conflicts of the token's user as JSON (the server's\n"
                 "GET /api/v1/sync/conflicts): id, table, rowId, serverData, clientData, ...\n"
                 "Exit status: 0 listed, 1 failed, 2 usage error.\n");
}

static void resolve_usage(FILE *out)
{
    fprintf(out, "usage: ferry resolve --keep server|client [--url URL] [--token T] ID\n\n"
                 "Resolves conflict ID on the server: --keep server leaves the server's row,\n"
                 "--keep client writes the row the device pushed. Every replica gets the\n"
                 "result with its next sync. Prints the server's answer as JSON.\n"
                 "Exit status: 0 resolved, 1 refused or failed, 2 usage error.\n");
}

static int run_conflicts(int argc, char **argv)
{
    struct remote_args a = {0};
    struct client_conf c = {0};
    struct ferry_client_options o = {0};
    int rc = parse(&cli_conflicts, argc, argv, false, &a);
    if (rc < 0 && a.status && strcmp(a.status, "open") && strcmp(a.status, "resolved") &&
        strcmp(a.status, "all"))
        rc = cli_usage_error(&cli_conflicts, "--status takes open, resolved or all");
    if (rc < 0)
        rc = remote_settings(&cli_conflicts, &a, &c, &o);
    if (rc < 0) {
        char *path = xasprintf("/api/v1/sync/conflicts?status=%s", a.status ? a.status : "open");
        rc = request(&cli_conflicts, &o, "GET", path, NULL);
        free(path);
    }
    clientconf_free(&c);
    return rc;
}

static int run_resolve(int argc, char **argv)
{
    struct remote_args a = {0};
    struct client_conf c = {0};
    struct ferry_client_options o = {0};
    int rc = parse(&cli_resolve, argc, argv, true, &a);
    if (rc < 0 && (!a.keep || (strcmp(a.keep, "server") && strcmp(a.keep, "client"))))
        rc = cli_usage_error(&cli_resolve, "--keep server or --keep client is required");
    if (rc < 0 && (strchr(a.arg, '/') || strchr(a.arg, '?') || !*a.arg))
        rc = cli_usage_error(&cli_resolve, "not a conflict id: %s", a.arg);
    if (rc < 0)
        rc = remote_settings(&cli_resolve, &a, &c, &o);
    if (rc < 0) {
        char *path = xasprintf("/api/v1/sync/conflicts/%s/resolve", a.arg);
        rc = request(&cli_resolve, &o, "POST", path,
                     !strcmp(a.keep, "server") ? "{\"resolution\":\"keep_server\"}"
                                               : "{\"resolution\":\"take_client\"}");
        free(path);
    }
    clientconf_free(&c);
    return rc;
}

const struct cli_command cli_conflicts = {"conflicts", "list the conflicts of your pushes",
                                          run_conflicts, conflicts_usage};
const struct cli_command cli_resolve = {"resolve", "resolve a conflict (keep server or client)",
                                        run_resolve, resolve_usage};

/* --- files ------------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

void remote_catch_interrupts(void)
{
    signal(SIGINT, on_interrupt);
    signal(SIGTERM, on_interrupt);
}

bool remote_interrupted(void)
{
    return interrupted != 0;
}

static int on_progress(void *ctx, int64_t done, int64_t total)
{
    progress_update(ctx, done, total, false);
    return interrupted;
}

/* Ends a transfer's progress and says how it went: done (a JSON line on stdout, with
 * "bytes"), interrupted (how to resume) or why it failed. Returns the exit code. */
static int transfer_end(const struct cli_command *cmd, int rc, struct progress *p, const char *why,
                        json_t *done)
{
    if (rc == FERRY_CLIENT_OK) {
        p->items_done = 1;
        progress_update(p, p->last_total, p->last_total, true);
    }
    progress_end(p);
    if (rc == FERRY_CLIENT_OK) {
        json_object_set_new(done, "bytes", json_integer(p->last_total));
        json_dumpf(done, stdout, JSON_COMPACT);
        fputc('\n', stdout);
    } else if (interrupted) {
        fprintf(stderr, "ferry %s: interrupted; run the same command again to resume\n", cmd->name);
    } else {
        fprintf(stderr, "ferry %s: %s\n", cmd->name, why);
    }
    json_decref(done);
    return rc == FERRY_CLIENT_OK ? CLI_OK : CLI_FAILED;
}

static void download_usage(FILE *out)
{
    fprintf(out, "usage: ferry download [--json] [--url URL] [--token T] PATH [FILE]\n\n"
                 "Downloads the file at PATH on the server to FILE (default: PATH's last\n"
                 "segment), through FILE.part: an interrupted download (Ctrl-C, a lost\n"
                 "connection) resumes where it stopped when run again. The content is\n"
                 "checked against the server's SHA-256 before FILE is written. Progress: a\n"
                 "bar on a terminal, JSON lines otherwise (--json forces them).\n"
                 "Exit status: 0 downloaded, 1 failed or interrupted, 2 usage error.\n");
}

static int run_download(int argc, char **argv)
{
    struct remote_args a = {0};
    struct client_conf c = {0};
    struct ferry_client_options o = {0};
    struct progress p;
    char why[512];
    int rc = remote_parse(&cli_download, argc, argv, 1, 2, &a);
    if (rc < 0)
        rc = remote_settings(&cli_download, &a, &c, &o);
    if (rc >= 0) {
        clientconf_free(&c);
        return rc;
    }
    const char *slash = strrchr(a.arg, '/'), *file = a.arg2 ? a.arg2 : slash ? slash + 1 : a.arg;
    char *what = xasprintf("download %s", a.arg);
    remote_catch_interrupts();
    progress_start(&p, what, a.json, 1);
    rc = ferry_download(&o, a.arg, file, on_progress, &p, why, sizeof(why));
    rc = transfer_end(&cli_download, rc, &p, why,
                      json_pack("{s:s, s:s, s:s}", "event", "done", "path", a.arg, "file", file));
    free(what);
    clientconf_free(&c);
    return rc;
}

static void ls_usage(FILE *out)
{
    fprintf(out, "usage: ferry ls [--url URL] [--token T] [PREFIX]\n\n"
                 "Lists the files on the server (under PREFIX) as JSON: the server's\n"
                 "GET /api/v1/files answer (path, size, sha256, version, ...).\n"
                 "Exit status: 0 listed, 1 failed, 2 usage error.\n");
}

static int run_ls(int argc, char **argv)
{
    struct remote_args a = {0};
    struct client_conf c = {0};
    struct ferry_client_options o = {0};
    int rc = remote_parse(&cli_ls, argc, argv, 0, 1, &a);
    if (rc < 0)
        rc = remote_settings(&cli_ls, &a, &c, &o);
    if (rc < 0) {
        char *prefix = a.arg ? curl_easy_escape(NULL, a.arg, 0) : NULL;
        char *path = xasprintf("/api/v1/files?limit=1000%s%s", prefix ? "&prefix=" : "",
                               prefix ? prefix : "");
        rc = request(&cli_ls, &o, "GET", path, NULL);
        curl_free(prefix);
        free(path);
    }
    clientconf_free(&c);
    return rc;
}

static void upload_usage(FILE *out)
{
    fprintf(out, "usage: ferry upload [--json] [--url URL] [--token T] FILE PATH\n\n"
                 "Uploads FILE to PATH on the server with tus, in checksummed 1 MiB parts.\n"
                 "An interrupted upload (Ctrl-C, a lost connection) resumes where the server\n"
                 "has it when the same command runs again (state in ~/.local/state/ferry).\n"
                 "The server's SHA-256 is checked at the end. Progress: a bar on a terminal,\n"
                 "JSON lines otherwise (--json forces them).\n"
                 "Exit status: 0 uploaded, 1 failed or interrupted, 2 usage error.\n");
}

static int run_upload(int argc, char **argv)
{
    struct remote_args a = {0};
    struct client_conf c = {0};
    struct ferry_client_options o = {0};
    struct progress p;
    char why[512];
    int rc = remote_parse(&cli_upload, argc, argv, 2, 2, &a);
    if (rc < 0)
        rc = remote_settings(&cli_upload, &a, &c, &o);
    char *state = rc < 0 ? clientconf_upload_state(a.arg, a.arg2) : NULL;
    if (rc < 0 && !state)
        rc = cli_usage_error(&cli_upload, "neither HOME nor XDG_STATE_HOME is set");
    if (rc >= 0) {
        clientconf_free(&c);
        return rc;
    }
    char *what = xasprintf("upload %s", a.arg2);
    remote_catch_interrupts();
    progress_start(&p, what, a.json, 1);
    rc = ferry_upload(&o, a.arg, a.arg2, state, on_progress, &p, why, sizeof(why));
    rc = transfer_end(&cli_upload, rc, &p, why,
                      json_pack("{s:s, s:s, s:s}", "event", "done", "file", a.arg, "path", a.arg2));
    free(what);
    free(state);
    clientconf_free(&c);
    return rc == FERRY_CLIENT_OK ? CLI_OK : CLI_FAILED;
}

const struct cli_command cli_upload = {"upload", "upload a file (tus, resumable, verified)",
                                       run_upload, upload_usage};
const struct cli_command cli_download = {"download", "download a file (resumable, verified)",
                                         run_download, download_usage};
const struct cli_command cli_ls = {"ls", "list the files on the server", run_ls, ls_usage};
