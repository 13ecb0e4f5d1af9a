/* jobs.c - `ferry jobs watch ID`: follows a job on the server (a site import, a backup, a
 * directory sync session) until it ends: a bar on a terminal, JSON lines otherwise; the
 * exit status says how the job ended. An admin's token reads /api/v1/admin/jobs/{id},
 * a user's token the user's own sessions at /api/v1/sync/session/{id}/status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/progress.h"
#include "cli/remote.h"

#define POLL_MS 250

/* A job's state in one shape, from either answer. */
struct job_state {
    const char *status; /* pending, running, completed, failed */
    const char *message;
    json_int_t items_done, items_total, bytes_done, bytes_total;
    json_t *result;
};

static json_int_t field(json_t *doc, const char *admin_key, const char *session_key)
{
    json_t *v = json_object_get(doc, admin_key);
    return json_integer_value(v ? v : json_object_get(doc, session_key));
}

static void read_state(json_t *doc, struct job_state *s)
{
    s->status = json_string_value(json_object_get(doc, "status"));
    if (s->status && !strcmp(s->status, "in-progress"))
        s->status = "running";
    s->message = json_string_value(json_object_get(doc, "message"));
    s->items_done = field(doc, "items_done", "filesDone");
    s->items_total = field(doc, "items_total", "filesTotal");
    s->bytes_done = field(doc, "bytes_done", "bytesDone");
    s->bytes_total = field(doc, "bytes_total", "bytesTotal");
    s->result = json_object_get(doc, "result");
}

/* GETs the job; *session says which route (switched to the session route when the admin
 * route is not the caller's). The answer's JSON, or NULL with the reason on stderr. */
static json_t *fetch(const struct ferry_client_options *o, const char *id, bool *session)
{
    for (;;) {
        char why[512], *answer = NULL;
        long status = 0;
        char *path = *session ? xasprintf("/api/v1/sync/session/%s/status", id)
                              : xasprintf("/api/v1/admin/jobs/%s", id);
        int rc = ferry_request(o, "GET", path, NULL, &status, &answer, why, sizeof(why));
        free(path);
        json_t *doc = rc == FERRY_CLIENT_OK ? json_loads(answer, 0, NULL) : NULL;
        free(answer);
        if (rc == FERRY_CLIENT_OK && status == 403 && !*session) {
            json_decref(doc);
            *session = true;
            continue;
        }
        if (rc != FERRY_CLIENT_OK)
            fprintf(stderr, "ferry jobs: %s\n", why);
        else if (status != 200)
            fprintf(stderr, "ferry jobs: HTTP %ld: %s\n", status,
                    status == 404 ? "no such job" : "the server refused");
        if (rc == FERRY_CLIENT_OK && status == 200 && doc)
            return doc;
        json_decref(doc);
        return NULL;
    }
}

static void show(struct progress *p, const char *id, const struct job_state *s, bool changed)
{
    if (p->tty) {
        p->counts = s->bytes_total <= 0;
        p->items_done = (int)s->items_done;
        p->items_total = (int)s->items_total;
        progress_update(p, p->counts ? s->items_done : s->bytes_done,
                        p->counts ? s->items_total : s->bytes_total, false);
        return;
    }
    if (!changed)
        return;
    json_t *line = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "event", "progress", "id", id,
                             "status", s->status, "items", s->items_done, "itemsTotal",
                             s->items_total, "bytes", s->bytes_done, "bytesTotal", s->bytes_total);
    json_dumpf(line, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    fflush(stdout);
    json_decref(line);
}

/* Prints how the job ended; the exit code. */
static int finish(struct progress *p, const char *id, const struct job_state *s)
{
    bool ok = !strcmp(s->status, "completed");
    if (p->tty) {
        p->counts = s->bytes_total <= 0;
        p->items_done = (int)s->items_done;
        p->items_total = (int)s->items_total;
        int64_t done = p->counts ? s->items_done : s->bytes_done;
        int64_t total = p->counts ? s->items_total : s->bytes_total;
        if (ok && total <= 0) /* a job with nothing to count is done all the same */
            done = total = 1;
        progress_update(p, done, total, true);
        progress_end(p);
    }
    json_t *line = json_pack("{s:s, s:s, s:s, s:s?, s:O?}", "event", "done", "id", id, "status",
                             s->status, "message", s->message, "result", s->result);
    json_dumpf(line, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    json_decref(line);
    if (!ok)
        fprintf(stderr, "ferry jobs: job %s failed: %s\n", id,
                s->message ? s->message : "no reason given");
    return ok ? CLI_OK : CLI_FAILED;
}

static int watch(const struct remote_args *a, const struct ferry_client_options *o)
{
    struct progress p;
    char *what = xasprintf("job %s", a->arg2), *last = NULL;
    bool session = false;
    int rc = -1;
    progress_start(&p, what, a->json, 0);
    remote_catch_interrupts();
    while (rc < 0) {
        json_t *doc = fetch(o, a->arg2, &session);
        struct job_state s;
        if (!doc) {
            rc = CLI_FAILED;
            break;
        }
        read_state(doc, &s);
        char *now = xasprintf("%s %lld %lld", s.status ? s.status : "?", (long long)s.items_done,
                              (long long)s.bytes_done);
        if (!s.status) {
            fprintf(stderr, "ferry jobs: the server's answer has no status\n");
            rc = CLI_FAILED;
        } else if (!strcmp(s.status, "completed") || !strcmp(s.status, "failed")) {
            rc = finish(&p, a->arg2, &s);
        } else {
            show(&p, a->arg2, &s, !last || strcmp(last, now));
        }
        free(last);
        last = now;
        json_decref(doc);
        for (int i = 0; rc < 0 && i < POLL_MS / 50 && !remote_interrupted(); i++)
            usleep(50000);
        if (rc < 0 && remote_interrupted()) {
            if (p.tty)
                progress_end(&p);
            fprintf(stderr, "ferry jobs: interrupted; the job goes on on the server\n");
            rc = CLI_FAILED;
        }
    }
    free(last);
    free(what);
    return rc;
}

static void jobs_usage(FILE *out)
{
    fprintf(out, "usage: ferry jobs watch [--json] [--url URL] [--token T] [--cacert FILE] ID\n\n"
                 "Follows job ID on the server (a site import, a backup, a directory sync\n"
                 "session) until it ends: a bar on a terminal (bytes or items, rate, ETA),\n"
                 "JSON lines otherwise (--json forces them), each time its progress changes;\n"
                 "then one JSON line: status, message, result. An admin token follows any\n"
                 "job, a user's token the user's own sessions.\n"
                 "Exit status: 0 the job completed, 1 it failed (its message on stderr), the\n"
                 "server refused or Ctrl-C, 2 usage error.\n");
}

static int run_jobs(int argc, char **argv)
{
    struct remote_args a = {0};
    struct client_conf c = {0};
    struct ferry_client_options o = {0};
    int rc = remote_parse(&cli_jobs, argc, argv, 2, 2, &a);
    if (rc < 0 && strcmp(a.arg, "watch"))
        rc = cli_usage_error(&cli_jobs, "unknown subcommand '%s' (there is: watch)", a.arg);
    if (rc < 0 && (!*a.arg2 || strpbrk(a.arg2, "/?#%")))
        rc = cli_usage_error(&cli_jobs, "not a job id: %s", a.arg2);
    if (rc < 0)
        rc = remote_settings(&cli_jobs, &a, &c, &o);
    if (rc < 0)
        rc = watch(&a, &o);
    clientconf_free(&c);
    return rc;
}

const struct cli_command cli_jobs = {"jobs", "follow a job on the server (jobs watch ID)", run_jobs,
                                     jobs_usage};
