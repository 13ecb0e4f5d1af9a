/* client.c - the load generator of bench/push_pull (libcurl + jansson + pthreads).
 *
 *   client push --kind ferry|pouch --url URL[,URL...] [--token T1,T2,...] [--rows N] [--batch N]
 *               [--clients N] [--batch-id] [--pids PID,...] [--label NAME]
 *   client pull --kind ferry|pouch --url URL [--token T] [--page N] [--expect N]
 *               [--stream] [--pids PID,...] [--label NAME]
 *   client freeport
 *
 * push: builds every request body before the clock starts, then N threads (one curl
 * handle each, keep-alive) take batches from a shared counter until all are sent; with
 * several URLs (several ferry nodes on one database) client i sends to URL i mod n.
 * pull: one client pages from the start (ferry: cursor 0 / next_cursor / has_more;
 * pouch: since=0 / last_seq, until a page leaves it where it was) until the feed is
 * exhausted, counting rows; pages are parsed on a second thread while the next is fetched.
 * --stream (or STREAM=1 in the environment) asks ferry for streamed pages ("stream":true,
 * pages of up to 100,000).
 *
 * Prints one line "RESULT key=value ..." on stdout: wall time, ops (HTTP requests), rows,
 * latency percentiles, the client's own CPU time (user+sys, all threads) and the CPU time
 * of each process tree given with --pids, so a run shows who used the 2 cores.
 * Any non-2xx answer or transport error is counted and the first few are printed on
 * stderr exactly as received; the exit status is 1 when there was any. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_ERRORS_SHOWN 5

/* ferry: the legacy push (/sync/push); report: the Pinakes report (/api/v1/sync/report),
 * which answers per operation; pouch: pouchdb-server's _bulk_docs. */
enum kind { KIND_FERRY, KIND_REPORT, KIND_POUCH };

struct opts {
    const char *mode, *url, *label;
    enum kind kind;
    char **tokens;
    int n_tokens;
    char **urls; /* --url split at commas; url is the first */
    int n_urls;
    long rows, batch, clients, page, expect;
    bool batch_id;
    bool stream; /* pull: ask ferry for streamed pages */
    int pids[16];
    int n_pids;
};

struct buf {
    char *p;
    size_t len, cap;
};

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("client: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            die("out of memory");
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    buf_add(b, tmp, (size_t)n);
}

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    buf_add(ctx, data, size * n);
    return size * n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* CPU ticks of one process from /proc/PID/stat: utime+stime, plus cutime+cstime when
 * with_children (children that already exited and were waited for). Also its ppid. */
static long long proc_ticks(int pid, bool with_children, int *ppid)
{
    char path[64], line[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = 0;
    char *p = strrchr(line, ')'); /* the command name may hold spaces */
    if (!p)
        return -1;
    long long v[20] = {0};
    int i = 0;
    char state;
    p += 2;
    if (sscanf(p, "%c", &state) != 1)
        return -1;
    p = strchr(p, ' ');
    while (p && i < 16) {
        v[i++] = strtoll(p + 1, &p, 10);
    }
    /* after state: ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
     * stime cutime cstime -> indexes 0..13 */
    if (ppid)
        *ppid = (int)v[0];
    long long t = v[10] + v[11];
    if (with_children)
        t += v[12] + v[13];
    return t;
}

/* CPU seconds of a process tree: the root with its reaped children, plus every live
 * descendant (one level of /proc scanning per generation). */
static double tree_cpu_s(int root)
{
    long long total = proc_ticks(root, true, NULL);
    if (total < 0)
        return -1;
    int frontier[4096], nf = 1, next[4096];
    frontier[0] = root;
    for (int depth = 0; depth < 4 && nf > 0; depth++) {
        int nn = 0;
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            int pid = atoi(e->d_name), ppid = 0;
            if (pid <= 0)
                continue;
            long long t = proc_ticks(pid, false, &ppid);
            for (int k = 0; k < nf; k++)
                if (t >= 0 && ppid == frontier[k]) {
                    total += t;
                    if (nn < 4096)
                        next[nn++] = pid;
                    break;
                }
        }
        if (d)
            closedir(d);
        memcpy(frontier, next, nn * sizeof(int));
        nf = nn;
    }
    return (double)total / sysconf(_SC_CLK_TCK);
}

/* --- errors ----------------------------------------------------------------------- */

static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static long n_errors;

static void report_error(const char *what, long status, const char *body)
{
    pthread_mutex_lock(&err_lock);
    if (++n_errors <= MAX_ERRORS_SHOWN)
        fprintf(stderr, "client: ERROR %s: HTTP %ld: %s\n", what, status, body ? body : "");
    pthread_mutex_unlock(&err_lock);
}

/* --- HTTP ------------------------------------------------------------------------- */

struct conn {
    CURL *h;
    struct curl_slist *headers;
    struct buf resp;
};

static void conn_init(struct conn *c, const char *token)
{
    c->h = curl_easy_init();
    if (!c->h)
        die("curl_easy_init failed");
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    c->headers = curl_slist_append(c->headers, "Expect:"); /* no 100-continue round trip */
    if (token && *token) {
        char auth[512];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        c->headers = curl_slist_append(c->headers, auth);
    }
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &c->resp);
    curl_easy_setopt(c->h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT, 600L);
    curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
}

static void conn_free(struct conn *c)
{
    curl_slist_free_all(c->headers);
    curl_easy_cleanup(c->h);
    free(c->resp.p);
}

/* One request; body NULL means GET. Returns the HTTP status (0 on transport error),
 * with the answer in c->resp. */
static long conn_do(struct conn *c, const char *url, const char *body, size_t len)
{
    c->resp.len = 0;
    if (c->resp.p)
        c->resp.p[0] = 0;
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    if (body) {
        curl_easy_setopt(c->h, CURLOPT_POST, 1L);
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else {
        curl_easy_setopt(c->h, CURLOPT_HTTPGET, 1L);
    }
    CURLcode rc = curl_easy_perform(c->h);
    if (rc != CURLE_OK) {
        report_error(url, 0, curl_easy_strerror(rc));
        return 0;
    }
    long status = 0;
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* --- latency stats ---------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, long n, double p)
{
    if (n == 0)
        return 0;
    long i = (long)(p * (n - 1) + 0.5);
    return v[i];
}

struct cpu_mark {
    double wall, self, pids[16], busy, iowait;
};

/* Machine-wide busy and iowait CPU seconds from /proc/stat, so that a run shows how much
 * CPU went to processes other than the client and the servers (the 2 cores are shared). */
static void machine_cpu(double *busy, double *iowait)
{
    unsigned long long u = 0, n = 0, sy = 0, id = 0, io = 0, irq = 0, sirq = 0, st = 0;
    FILE *f = fopen("/proc/stat", "r");
    *busy = *iowait = 0;
    if (!f)
        return;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &u, &n, &sy, &id, &io, &irq, &sirq,
               &st) == 8) {
        double hz = (double)sysconf(_SC_CLK_TCK);
        *busy = (u + n + sy + irq + sirq + st) / hz;
        *iowait = io / hz;
    }
    fclose(f);
}

/* Takes the wall clock last at the start of a phase and first at its end, so that
 * scanning /proc is not timed. */
static void mark(struct cpu_mark *m, const struct opts *o, bool start)
{
    if (!start)
        m->wall = now_s();
    m->self = self_cpu_s();
    for (int i = 0; i < o->n_pids; i++)
        m->pids[i] = tree_cpu_s(o->pids[i]);
    machine_cpu(&m->busy, &m->iowait);
    if (start)
        m->wall = now_s();
}

static void print_result(const struct opts *o, const char *phase, long ops, long rows,
                         const struct cpu_mark *a, const struct cpu_mark *b, double *lat,
                         long n_lat, long extra_bytes)
{
    double wall = b->wall - a->wall;
    qsort(lat, n_lat, sizeof(double), cmp_double);
    printf("RESULT label=%s phase=%s ops=%ld rows=%ld wall_s=%.3f ops_s=%.1f rows_s=%.1f"
           " p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f max_ms=%.2f client_cpu_s=%.3f"
           " client_cpu_pct=%.1f bytes=%ld errors=%ld",
           o->label, phase, ops, rows, wall, ops / wall, rows / wall, pct(lat, n_lat, 0.50),
           pct(lat, n_lat, 0.95), pct(lat, n_lat, 0.99), n_lat ? lat[n_lat - 1] : 0,
           b->self - a->self, 100 * (b->self - a->self) / wall, extra_bytes, n_errors);
    double ours = b->self - a->self;
    for (int i = 0; i < o->n_pids; i++) {
        printf(" cpu_%d_s=%.3f", i, b->pids[i] - a->pids[i]);
        ours += b->pids[i] - a->pids[i];
    }
    /* other: busy CPU of the whole machine not spent by the client or the listed servers */
    double other = (b->busy - a->busy) - ours;
    printf(" machine_busy_s=%.3f other_cpu_s=%.3f iowait_s=%.3f\n", b->busy - a->busy,
           other < 0 ? 0 : other, b->iowait - a->iowait);
    fflush(stdout);
}

/* --- push ------------------------------------------------------------------------- */

struct push_job {
    const struct opts *o;
    char **bodies;
    size_t *lens;
    long n_batches;
    long next; /* shared counter */
    pthread_mutex_t lock;
    double *lat;
    long rows_ok;
};

struct worker {
    struct push_job *job;
    int id;
};

static void *push_worker(void *arg)
{
    struct worker *w = arg;
    struct push_job *j = w->job;
    struct conn c = {0};
    conn_init(&c, j->o->n_tokens ? j->o->tokens[w->id % j->o->n_tokens] : NULL);
    for (;;) {
        pthread_mutex_lock(&j->lock);
        long i = j->next++;
        pthread_mutex_unlock(&j->lock);
        if (i >= j->n_batches)
            break;
        double t0 = now_s();
        long status = conn_do(&c, j->o->urls[w->id % j->o->n_urls], j->bodies[i], j->lens[i]);
        j->lat[i] = (now_s() - t0) * 1000;
        bool ok = status >= 200 && status < 300;
        /* pouchdb's _bulk_docs answers 201 with per-document errors inside */
        if (ok && j->o->kind == KIND_POUCH && strstr(c.resp.p ? c.resp.p : "", "\"error\""))
            ok = false;
        if (ok && j->o->kind == KIND_FERRY && !strstr(c.resp.p ? c.resp.p : "", "\"success\":true"))
            ok = false;
        if (ok && j->o->kind == KIND_REPORT && !strstr(c.resp.p ? c.resp.p : "", "\"applied\""))
            ok = false;
        if (!ok && status != 0) {
            char what[64];
            snprintf(what, sizeof(what), "push batch %ld", i);
            report_error(what, status, c.resp.p);
        }
        if (ok) {
            pthread_mutex_lock(&j->lock);
            j->rows_ok += j->o->batch;
            pthread_mutex_unlock(&j->lock);
        }
    }
    conn_free(&c);
    return NULL;
}

/* Row i of the data set: the same rows for every target. */
static void row_fields(long i, char *id, char *customer, long *total)
{
    sprintf(id, "s%07ld", i);
    sprintf(customer, "C%04ld", i % 5000);
    *total = (i * 7919) % 100000;
}

static int do_push(const struct opts *o)
{
    long n_batches = (o->rows + o->batch - 1) / o->batch;
    struct push_job j = {.o = o, .n_batches = n_batches};
    pthread_mutex_init(&j.lock, NULL);
    j.bodies = xmalloc(n_batches * sizeof(char *));
    j.lens = xmalloc(n_batches * sizeof(size_t));
    j.lat = xmalloc(n_batches * sizeof(double));
    long bytes = 0;
    for (long b = 0; b < n_batches; b++) {
        struct buf body = {0};
        long first = b * o->batch, last = first + o->batch;
        if (last > o->rows)
            last = o->rows;
        if (o->kind == KIND_FERRY) {
            buf_printf(&body, "{\"device_id\":\"bench-%ld\",", b % o->clients);
            if (o->batch_id)
                buf_printf(&body, "\"batch_id\":\"%s-b%ld\",", o->label, b);
            buf_printf(&body, "\"operations\":[");
        } else if (o->kind == KIND_REPORT) {
            buf_printf(&body, "{");
            if (o->batch_id)
                buf_printf(&body, "\"batchId\":\"%s-b%ld\",", o->label, b);
            buf_printf(&body, "\"operations\":[");
        } else {
            buf_printf(&body, "{\"docs\":[");
        }
        for (long i = first; i < last; i++) {
            char id[32], cust[32];
            long total;
            row_fields(i, id, cust, &total);
            if (o->kind == KIND_REPORT) /* other keys than the legacy push's: same table */
                id[0] = 'r';
            if (o->kind != KIND_POUCH)
                buf_printf(&body,
                           "%s{\"table\":\"sales\",\"action\":\"insert\",\"data\":{\"id\":\"%s\","
                           "\"customer_id\":\"%s\",\"total\":%ld}}",
                           i > first ? "," : "", id, cust, total);
            else
                buf_printf(&body, "%s{\"_id\":\"%s\",\"customer_id\":\"%s\",\"total\":%ld}",
                           i > first ? "," : "", id, cust, total);
        }
        buf_printf(&body, "]}");
        j.bodies[b] = body.p;
        j.lens[b] = body.len;
        bytes += body.len;
    }
    pthread_t th[64];
    struct worker w[64];
    struct cpu_mark a, z;
    mark(&a, o, true);
    for (int t = 0; t < o->clients; t++) {
        w[t] = (struct worker){&j, t};
        pthread_create(&th[t], NULL, push_worker, &w[t]);
    }
    for (int t = 0; t < o->clients; t++)
        pthread_join(th[t], NULL);
    mark(&z, o, false);
    print_result(o, "push", n_batches, j.rows_ok, &a, &z, j.lat, n_batches, bytes);
    for (long b = 0; b < n_batches; b++)
        free(j.bodies[b]);
    free(j.bodies);
    free(j.lens);
    free(j.lat);
    return n_errors ? 1 : 0;
}

/* --- pull ------------------------------------------------------------------------- */

/* The pull is pipelined, as a real client's would be (libferry fetches the next page
 * while it applies one): the fetching thread finds the page's cursor by a scan of the
 * body's tail, since the cursor is its last key (ferry: "next_cursor", "has_more"; pouch:
 * "last_seq"), and asks for the next page at once; a parsing thread parses each whole
 * page with jansson, counts its rows and checks that the cursor it finds is the one the
 * fetcher used. A page whose check fails is an error like any other. */

#define PULL_QUEUE 4

struct page_item {
    struct buf body;
    long status;
    json_int_t cursor; /* ferry: the next_cursor the fetcher used */
    bool more;         /* the fetcher's has_more */
    char since[256];   /* pouch: the last_seq the fetcher used */
};

struct page_queue {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct page_item items[PULL_QUEUE];
    int head, count;
    bool done;
    enum kind kind;
    long rows;
};

/* The last occurrence of key in b, the position just after it, or NULL. */
static const char *last_key(const struct buf *b, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = b->len >= n ? b->len - n + 1 : 0; i-- > 0;)
        if (!memcmp(b->p + i, key, n))
            return b->p + i + n;
    return NULL;
}

/* The fetcher's scan: the cursor and whether more pages follow; false when absent. */
static bool scan_cursor(enum kind kind, const struct buf *b, struct page_item *it,
                        const char *since)
{
    if (kind == KIND_FERRY) {
        const char *at = last_key(b, "\"next_cursor\":");
        if (!at)
            return false;
        it->cursor = strtoll(at, NULL, 10);
        it->more = strstr(at, "\"has_more\":true") != NULL;
        return true;
    }
    const char *at = last_key(b, "\"last_seq\":");
    if (!at)
        return false;
    size_t n = strcspn(at, ",}");
    if (*at == '"') { /* a string: up to its closing quote */
        const char *q = strchr(at + 1, '"');
        if (!q)
            return false;
        at++;
        n = (size_t)(q - at);
    }
    snprintf(it->since, sizeof(it->since), "%.*s", (int)n, at);
    it->more = strcmp(it->since, since) != 0; /* ends with a page that does not move it */
    return true;
}

/* The parser's check of one page: rows counted, the fetcher's cursor confirmed. */
static void check_page(struct page_queue *q, struct page_item *it)
{
    json_error_t jerr;
    json_t *doc = json_loadb(it->body.p, it->body.len, 0, &jerr);
    if (!doc) {
        report_error("pull (bad JSON)", it->status, jerr.text);
        return;
    }
    if (q->kind == KIND_FERRY) {
        json_t *next = json_object_get(doc, "next_cursor");
        q->rows += (long)json_array_size(json_object_get(json_object_get(doc, "data"), "sales"));
        if (!json_is_integer(next) || json_integer_value(next) != it->cursor ||
            json_is_true(json_object_get(doc, "has_more")) != it->more)
            report_error("pull (cursor scan disagrees with the parse)", it->status, it->body.p);
    } else {
        json_t *last = json_object_get(doc, "last_seq");
        char seq[256] = "";
        if (json_is_integer(last))
            snprintf(seq, sizeof(seq), "%" JSON_INTEGER_FORMAT, json_integer_value(last));
        else if (json_is_string(last))
            snprintf(seq, sizeof(seq), "%s", json_string_value(last));
        q->rows += (long)json_array_size(json_object_get(doc, "results"));
        if (strcmp(seq, it->since) != 0)
            report_error("pull (last_seq scan disagrees with the parse)", it->status, it->body.p);
    }
    json_decref(doc);
}

static void *parse_pages(void *arg)
{
    struct page_queue *q = arg;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (!q->count && !q->done)
            pthread_cond_wait(&q->cond, &q->lock);
        if (!q->count)
            break;
        struct page_item *it = &q->items[q->head];
        pthread_mutex_unlock(&q->lock);
        check_page(q, it);
        pthread_mutex_lock(&q->lock);
        q->head = (q->head + 1) % PULL_QUEUE;
        q->count--;
        pthread_cond_broadcast(&q->cond);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

/* Hands the body in c->resp to the parser (swapping buffers); waits while the queue is full. */
static void queue_page(struct page_queue *q, struct conn *c, const struct page_item *scan)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == PULL_QUEUE)
        pthread_cond_wait(&q->cond, &q->lock);
    struct page_item *it = &q->items[(q->head + q->count) % PULL_QUEUE];
    struct buf spare = it->body;
    *it = *scan;
    it->body = c->resp;
    c->resp = spare;
    q->count++;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

/* Asks for the page after cursor/since; the answer is in c->resp. */
static long ask_page(const struct opts *o, struct conn *c, json_int_t cursor, const char *since)
{
    char url[2048], body[256];
    if (o->kind == KIND_FERRY) {
        int n =
            snprintf(body, sizeof(body),
                     "{\"tables\":[\"sales\"],\"limit\":%ld,\"cursor\":%" JSON_INTEGER_FORMAT "%s}",
                     o->page, cursor, o->stream ? ",\"stream\":true" : "");
        return conn_do(c, o->url, body, (size_t)n);
    }
    char *esc = curl_easy_escape(c->h, since, 0);
    snprintf(url, sizeof(url), "%s?include_docs=true&limit=%ld&since=%s", o->url, o->page, esc);
    curl_free(esc);
    return conn_do(c, url, NULL, 0);
}

/* Fetches pages until the feed ends, queueing each; returns the number of requests. */
static long fetch_pages(const struct opts *o, struct conn *c, struct page_queue *q, double **lat,
                        long *bytes)
{
    long cap = 1024, n_lat = 0;
    struct page_item scan = {.cursor = 0, .since = "0"};
    for (;;) {
        double t0 = now_s();
        long status = ask_page(o, c, scan.cursor, scan.since);
        if (n_lat == cap) {
            cap *= 2;
            *lat = realloc(*lat, cap * sizeof(double));
        }
        (*lat)[n_lat++] = (now_s() - t0) * 1000;
        *bytes += c->resp.len;
        if (status < 200 || status >= 300) {
            if (status)
                report_error("pull", status, c->resp.p);
            break;
        }
        json_int_t before = scan.cursor;
        char since[256];
        snprintf(since, sizeof(since), "%s", scan.since);
        if (!scan_cursor(o->kind, &c->resp, &scan, since)) {
            report_error("pull (no cursor in the answer)", status, c->resp.p);
            break;
        }
        if (o->kind == KIND_FERRY && scan.more && scan.cursor == before) {
            report_error("pull (cursor did not move)", status, c->resp.p);
            break;
        }
        scan.status = status;
        queue_page(q, c, &scan);
        if (!scan.more)
            break;
    }
    return n_lat;
}

static int do_pull(const struct opts *o)
{
    struct conn c = {0};
    conn_init(&c, o->n_tokens ? o->tokens[0] : NULL);
    long bytes = 0;
    double *lat = xmalloc(1024 * sizeof(double));
    struct page_queue q = {.kind = o->kind};
    pthread_mutex_init(&q.lock, NULL);
    pthread_cond_init(&q.cond, NULL);
    struct cpu_mark a, z;
    pthread_t parser;
    mark(&a, o, true);
    if (pthread_create(&parser, NULL, parse_pages, &q) != 0)
        die("cannot start the parsing thread");
    long n_lat = fetch_pages(o, &c, &q, &lat, &bytes);
    pthread_mutex_lock(&q.lock);
    q.done = true;
    pthread_cond_broadcast(&q.cond);
    pthread_mutex_unlock(&q.lock);
    pthread_join(parser, NULL);
    mark(&z, o, false);
    if (o->expect > 0 && q.rows != o->expect) {
        char msg[128];
        snprintf(msg, sizeof(msg), "pulled %ld rows, expected %ld", q.rows, o->expect);
        report_error("pull (row count)", 200, msg);
    }
    print_result(o, "pull", n_lat, q.rows, &a, &z, lat, n_lat, bytes);
    for (int i = 0; i < PULL_QUEUE; i++)
        free(q.items[i].body.p);
    pthread_cond_destroy(&q.cond);
    pthread_mutex_destroy(&q.lock);
    conn_free(&c);
    free(lat);
    return n_errors ? 1 : 0;
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(s, (struct sockaddr *)&a, &len) != 0)
        die("cannot find a free port: %s", strerror(errno));
    printf("%d\n", ntohs(a.sin_port));
    close(s);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = {.label = "run", .rows = 100000, .batch = 500, .clients = 4, .page = 1000};
    char *tokens = NULL;
    if (argc < 2)
        die("usage: client push|pull|freeport [options]");
    o.mode = argv[1];
    o.stream = getenv("STREAM") && !strcmp(getenv("STREAM"), "1");
    if (strcmp(o.mode, "freeport") == 0)
        return free_port();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED()                                                                                     \
    do {                                                                                           \
        if (!v)                                                                                    \
            die("%s needs a value", a);                                                            \
        i++;                                                                                       \
    } while (0)
        if (!strcmp(a, "--kind")) {
            NEED();
            if (!strcmp(v, "ferry"))
                o.kind = KIND_FERRY;
            else if (!strcmp(v, "report"))
                o.kind = KIND_REPORT;
            else if (!strcmp(v, "pouch"))
                o.kind = KIND_POUCH;
            else
                die("--kind ferry|report|pouch");
        } else if (!strcmp(a, "--url")) {
            NEED();
            o.url = v;
        } else if (!strcmp(a, "--label")) {
            NEED();
            o.label = v;
        } else if (!strcmp(a, "--token")) {
            NEED();
            tokens = strdup(v);
        } else if (!strcmp(a, "--rows")) {
            NEED();
            o.rows = atol(v);
        } else if (!strcmp(a, "--batch")) {
            NEED();
            o.batch = atol(v);
        } else if (!strcmp(a, "--clients")) {
            NEED();
            o.clients = atol(v);
        } else if (!strcmp(a, "--page")) {
            NEED();
            o.page = atol(v);
        } else if (!strcmp(a, "--expect")) {
            NEED();
            o.expect = atol(v);
        } else if (!strcmp(a, "--stream")) {
            o.stream = true;
        } else if (!strcmp(a, "--batch-id")) {
            o.batch_id = true;
        } else if (!strcmp(a, "--pids")) {
            NEED();
            char *s = strdup(v), *save = NULL;
            for (char *t = strtok_r(s, ",", &save); t && o.n_pids < 16;
                 t = strtok_r(NULL, ",", &save))
                o.pids[o.n_pids++] = atoi(t);
            free(s);
        } else {
            die("unknown option %s", a);
        }
    }
    if (!o.url)
        die("--url is required");
    if (o.clients < 1 || o.clients > 64 || o.batch < 1 || o.rows < 1 || o.page < 1)
        die("bad --clients/--batch/--rows/--page");
    o.urls = xmalloc(64 * sizeof(char *));
    char *url_list = strdup(o.url), *url_save = NULL;
    for (char *u = strtok_r(url_list, ",", &url_save); u && o.n_urls < 64;
         u = strtok_r(NULL, ",", &url_save))
        o.urls[o.n_urls++] = u;
    if (!o.n_urls)
        die("--url is required");
    o.url = o.urls[0];
    if (tokens) {
        o.tokens = xmalloc(64 * sizeof(char *));
        char *save = NULL;
        for (char *t = strtok_r(tokens, ",", &save); t && o.n_tokens < 64;
             t = strtok_r(NULL, ",", &save))
            o.tokens[o.n_tokens++] = t;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc;
    if (!strcmp(o.mode, "push"))
        rc = do_push(&o);
    else if (!strcmp(o.mode, "pull"))
        rc = do_pull(&o);
    else
        die("unknown mode %s", o.mode);
    curl_global_cleanup();
    return rc;
}
