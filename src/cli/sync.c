/* sync.c - `ferry sync DB`: syncs a local SQLite replica with a server through libferry,
 * once (or --watch: again every few seconds until interrupted). A new or empty file gets
 * the synced tables from the server's schema. Server and token from --url/--token or
 * FERRY_URL/FERRY_TOKEN. Prints one JSON line per round. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/clientconf.h"
#include "cli/progress.h"
#include "ferry/client.h"

struct sync_args {
    const char *url, *token, *ca_file, *db, *device;
    int watch_s; /* 0: once */
    bool json;   /* progress as JSON lines on stdout */
};

/* A sync's progress: rows pushed and pulled, on a terminal as one line redrawn in place,
 * with --json as JSON lines; Ctrl-C stops the sync between pages. */
struct sync_view {
    struct progress p;
    bool json, drawn;
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static int on_progress(void *ctx, int64_t pushed, int64_t pulled)
{
    struct sync_view *v = ctx;
    if (v->p.tty) {
        v->p.counts = true;
        progress_update(&v->p, pushed + pulled, -1, false);
        v->drawn = true;
    } else if (v->json) {
        printf("{\"event\":\"progress\",\"pushed\":%lld,\"pulled\":%lld}\n", (long long)pushed,
               (long long)pulled);
        fflush(stdout);
    }
    return stopping;
}

static void sync_usage(FILE *out)
{
    fprintf(out, "usage: ferry sync [--url URL] [--token TOKEN] [--cacert FILE] [--device ID]\n"
                 "                  [--watch SECONDS] [--json] DB\n\n"
                 "Syncs the SQLite replica DB with a ferry server: pushes the rows changed in DB\n"
                 "since the last sync, pulls every other change and acknowledges it. DB is made\n"
                 "when missing, with the tables the token syncs. Writes to DB with any SQLite\n"
                 "program are captured by triggers (tables ferry_client_* hold the state).\n"
                 "  --url URL        the server (default $FERRY_URL, then 'ferry login')\n"
                 "  --token TOKEN    a device token or JWT (default $FERRY_TOKEN, then login)\n"
                 "  --cacert FILE    PEM certificates to trust for HTTPS\n"
                 "  --device ID      with a user token or JWT: the registered device this\n"
                 "                   replica is (default $FERRY_DEVICE)\n"
                 "  --watch SECONDS  sync again every SECONDS until Ctrl-C\n"
                 "  --json           progress as JSON lines (pushed, pulled) before each result\n"
                 "Prints one JSON line per sync: pushed, conflicts, pulled, skipped, cursor,\n"
                 "resynced. On a terminal the rows done are counted on stderr as they go; Ctrl-C\n"
                 "stops between pages and a rerun goes on.\n"
                 "Exit status: 0 synced, 1 failed or stopped, 2 usage error.\n");
}

static int parse_args(int argc, char **argv, struct sync_args *a)
{
    static const struct option options[] = {
        {"url", required_argument, NULL, 'u'},    {"token", required_argument, NULL, 't'},
        {"cacert", required_argument, NULL, 'c'}, {"watch", required_argument, NULL, 'w'},
        {"device", required_argument, NULL, 'd'}, {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc + 1, argv - 1, "u:t:c:w:d:h", options, NULL)) != -1) {
        if (opt == 'h') {
            sync_usage(stdout);
            return CLI_OK;
        }
        if (opt == '?')
            return CLI_USAGE;
        if (opt == 'j')
            a->json = true;
        else if (opt == 'u')
            a->url = optarg;
        else if (opt == 't')
            a->token = optarg;
        else if (opt == 'c')
            a->ca_file = optarg;
        else if (opt == 'd')
            a->device = optarg;
        else if (opt == 'w' && (a->watch_s = atoi(optarg)) < 1) {
            fprintf(stderr, "ferry sync: --watch takes a number of seconds >= 1\n");
            return CLI_USAGE;
        }
    }
    if (argc + 1 - optind != 1) {
        fprintf(stderr, "ferry sync: expected one DB argument (see ferry sync --help)\n");
        return CLI_USAGE;
    }
    a->db = argv[optind - 1];
    return -1;
}

void cli_print_sync_stats(const struct ferry_sync_stats *s)
{
    printf("{\"pushed\":%lld,\"conflicts\":%lld,\"pulled\":%lld,\"skipped\":%lld,"
           "\"cursor\":%lld,\"resynced\":%s}\n",
           (long long)s->pushed, (long long)s->conflicts, (long long)s->pulled,
           (long long)s->skipped, (long long)s->cursor, s->resynced ? "true" : "false");
    fflush(stdout);
}

static int run_sync(int argc, char **argv)
{
    struct sync_args a = {0};
    struct ferry_client_options o = {0};
    ferry_replica *r = NULL;
    char why[512];
    int rc = parse_args(argc, argv, &a);

    if (rc >= 0)
        return rc;
    struct client_conf c = {0};
    clientconf_resolve(&c, a.url, a.token, a.ca_file);
    if (!c.url || !c.token) {
        fprintf(stderr, "ferry sync: no server: run 'ferry login URL', or give --url and"
                        " --token (or FERRY_URL and FERRY_TOKEN)\n");
        clientconf_free(&c);
        return CLI_USAGE;
    }
    o.url = c.url;
    o.token = c.token;
    o.ca_file = c.ca_file;
    o.device_id = a.device ? a.device : getenv("FERRY_DEVICE");
    rc = ferry_replica_open(a.db, &o, &r, why, sizeof(why));
    clientconf_free(&c);
    if (rc != FERRY_CLIENT_OK) {
        fprintf(stderr, "ferry sync: %s\n", why);
        return CLI_FAILED;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    rc = CLI_OK;
    struct sync_view v = {.json = a.json};
    char *what = xasprintf("sync %s", a.db);
    ferry_set_progress_handler(r, on_progress, &v);
    do {
        struct ferry_sync_stats s;
        progress_start(&v.p, what, a.json, 0);
        v.drawn = false;
        int done = ferry_sync(r, &s);
        if (v.drawn) { /* the last count, which the redraw rate may have skipped */
            progress_update(&v.p, v.p.last_done, -1, true);
            progress_end(&v.p);
        }
        if (done != FERRY_CLIENT_OK) {
            fprintf(stderr, "ferry sync: %s\n", ferry_replica_error(r));
            rc = CLI_FAILED;
        } else {
            cli_print_sync_stats(&s);
        }
        for (int i = 0; a.watch_s && !stopping && i < a.watch_s * 10; i++)
            usleep(100000);
    } while (a.watch_s && !stopping && rc == CLI_OK);
    free(what);
    ferry_replica_close(r);
    return rc;
}

const struct cli_command cli_sync = {"sync", "sync a local SQLite replica with a server", run_sync,
                                     sync_usage};
