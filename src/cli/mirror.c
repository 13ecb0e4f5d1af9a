/* mirror.c - `ferry mirror DIR [PREFIX]`: keeps a local folder equal to the server's files
 * (under PREFIX) with ferry_mirror(), once or --watch; progress as a bar on a terminal or
 * JSON lines, one JSON line per round. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/progress.h"
#include "cli/remote.h"

struct mirror_view {
    struct progress p;
    char what[512];
    const char *dir;
};

static int on_mirror(void *ctx, const char *path, int64_t files_done, int64_t files_total,
                     int64_t bytes_done, int64_t bytes_total)
{
    struct mirror_view *v = ctx;
    snprintf(v->what, sizeof(v->what), "mirror %s", path ? path : v->dir);
    v->p.items_done = (int)files_done;
    v->p.items_total = (int)files_total;
    progress_update(&v->p, bytes_done, bytes_total, path == NULL);
    return remote_interrupted();
}

static void print_round(const struct ferry_mirror_stats *s)
{
    printf("{\"event\":\"done\",\"downloaded\":%lld,\"removed\":%lld,\"files\":%lld,"
           "\"skipped\":%lld,\"bytes\":%lld,\"cursor\":%lld}\n",
           (long long)s->downloaded, (long long)s->removed, (long long)s->files,
           (long long)s->skipped, (long long)s->bytes, (long long)s->cursor);
    fflush(stdout);
}

/* One round; CLI_OK or CLI_FAILED, the reason on stderr; *cursor where the folder is. */
static int round_once(const struct remote_args *a, const struct ferry_client_options *o,
                      int64_t *cursor)
{
    struct mirror_view v = {.dir = a->arg};
    struct ferry_mirror_stats s;
    char why[512];
    snprintf(v.what, sizeof(v.what), "mirror %s", a->arg);
    progress_start(&v.p, v.what, a->json, 0);
    int rc = ferry_mirror(o, a->arg, a->arg2, on_mirror, &v, &s, why, sizeof(why));
    if (v.p.last_total >= 0)
        progress_end(&v.p);
    if (rc == FERRY_CLIENT_OK) {
        print_round(&s);
        *cursor = s.cursor;
    } else if (remote_interrupted())
        fprintf(stderr, "ferry mirror: interrupted; run the same command again to resume\n");
    else
        fprintf(stderr, "ferry mirror: %s\n", why);
    return rc == FERRY_CLIENT_OK ? CLI_OK : CLI_FAILED;
}

static void mirror_usage(FILE *out)
{
    fprintf(out, "usage: ferry mirror [--watch SECONDS] [--json] [--url URL] [--token T]\n"
                 "                    [--cacert FILE] [--device ID] DIR [PREFIX]\n\n"
                 "Makes the folder DIR equal to the files on the server (under PREFIX: PREFIX/a/b\n"
                 "becomes DIR/a/b), from the files namespace of the change feed: new and changed\n"
                 "files are downloaded (resumed with Range requests, SHA-256 checked, renamed\n"
                 "into place), files deleted on the server are removed, and files changed or\n"
                 "removed in DIR are downloaded again. Files the server never had are left alone.\n"
                 "Nothing is written outside DIR (symbolic links are never followed). The state\n"
                 "is kept in DIR/.ferry-mirror, so a rerun after Ctrl-C or a lost connection goes\n"
                 "on where it stopped.\n"
                 "  --watch SECONDS  stay on until Ctrl-C: wait on the server's feed (one long\n"
                 "                   poll of up to SECONDS, at most 60) and mirror again as\n"
                 "                   soon as a file changes; after a failure, again in SECONDS\n"
                 "  --json           JSON lines even on a terminal\n"
                 "Progress: a bar on a terminal, JSON lines otherwise; then one JSON line per\n"
                 "round: downloaded, removed, files, skipped, bytes, cursor.\n"
                 "Exit status: 0 mirrored, 1 failed or interrupted, 2 usage error.\n");
}

static int stop_asked(void *ctx)
{
    (void)ctx;
    return remote_interrupted();
}

/* Between rounds of --watch: parked on the feed (one long poll after another, nothing
 * else) until a file changes, or, after a failed round or wait, SECONDS of pause so a
 * server away is not hammered. */
static void between_rounds(const struct remote_args *a, const struct ferry_client_options *o,
                           int round_rc, int64_t cursor)
{
    char why[512];
    int rc = FERRY_CLIENT_OK;
    while (round_rc == CLI_OK && rc == FERRY_CLIENT_OK && !remote_interrupted())
        rc = ferry_mirror_wait(o, cursor, a->watch_s, stop_asked, NULL, why, sizeof(why));
    if (round_rc == CLI_OK && rc > 0)
        return;
    if (round_rc == CLI_OK && !remote_interrupted())
        fprintf(stderr, "ferry mirror: %s\n", why);
    for (int i = 0; !remote_interrupted() && i < a->watch_s * 10; i++)
        usleep(100000);
}

static int run_mirror(int argc, char **argv)
{
    struct remote_args a = {.follow = true};
    struct client_conf c = {0};
    struct ferry_client_options o = {0};
    int rc = remote_parse(&cli_mirror, argc, argv, 1, 2, &a);
    if (rc < 0)
        rc = remote_settings(&cli_mirror, &a, &c, &o);
    if (rc < 0) {
        remote_catch_interrupts();
        /* with --watch a failed round (the server away, a file in use) is tried again */
        int64_t cursor = 0;
        do {
            rc = round_once(&a, &o, &cursor);
            if (a.watch_s && !remote_interrupted())
                between_rounds(&a, &o, rc, cursor);
        } while (a.watch_s && !remote_interrupted());
    }
    clientconf_free(&c);
    return rc;
}

const struct cli_command cli_mirror = {"mirror", "keep a folder equal to the server's files",
                                       run_mirror, mirror_usage};
