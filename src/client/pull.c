/* pull.c - see pull.h. Owns the fetch threads of one pull and the pages they hold until
 * pull_next hands them over. Page k is fetched on peer connection k % FC_PEERS: a fetch
 * waits until at most PULL_AHEAD pages are unapplied before it, so page k + FC_PEERS
 * starts only after page k was handed over (its thread joined), and no connection is
 * ever used by two threads at once. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/pull.h"
#include "client/transport.h"
#include "ferry.h"
#include "util/timeutil.h"

#define SYNC_PATH "/api/v1/sync"
/* Pages are asked for streamed (the server writes them as it reads them, so it may send
 * up to page_size changes at once), cut at this many bytes so an answer stays far under
 * the transport's cap whatever the rows. A server that refuses (400: too old to know
 * stream=true) is asked for plain pages of at most PLAIN_PAGE_MAX from then on. */
#define STREAM_PAGE_BYTES (8 * 1024 * 1024)
#define PLAIN_PAGE_MAX 1000

struct page_fetch {
    struct pull *pull;
    int64_t index, cursor;
    pthread_t thread;
    json_t *answer;       /* an answer other than a page, parsed by fc_http */
    struct fc_page *page; /* a 200's page, parsed by on_answer */
    long status;
    int rc;
    bool done;               /* the thread has finished (under pull.lock) */
    struct page_fetch *next; /* the page after, started from this one's text (or NULL) */
};

struct pull {
    ferry_replica *r;
    bool resync;
    pthread_mutex_t lock;
    pthread_cond_t moved;
    int64_t applied; /* pages applied */
    bool cancel;     /* fetches not yet begun give up */
    struct page_fetch *head;
};

/* The cursor at the end of a page's text when it ends as ferry writes a page with more
 * after it: ...,"cursor":N,"hasMore":true}. -1 otherwise (then the next page is asked for
 * once this one is parsed). */
static int64_t tail_cursor(const char *body, size_t len)
{
    static const char end[] = ",\"hasMore\":true}", key[] = "\"cursor\":";
    size_t n = sizeof(end) - 1, k = sizeof(key) - 1;
    while (len && isspace((unsigned char)body[len - 1]))
        len--;
    if (len < n + k + 1 || memcmp(body + len - n, end, n) != 0)
        return -1;
    const char *digits_end = body + len - n, *digits = digits_end;
    while (digits > body && isdigit((unsigned char)digits[-1]) && digits_end - digits < 19)
        digits--;
    if (digits == digits_end || (size_t)(digits - body) < k || memcmp(digits - k, key, k) != 0)
        return -1;
    return strtoll(digits, NULL, 10);
}

static void *run_fetch(void *arg);

/* Starts fetching page index from cursor in a thread; NULL when no thread could start. */
static struct page_fetch *launch(struct pull *p, int64_t index, int64_t cursor)
{
    struct page_fetch *f = xcalloc(1, sizeof(*f));
    *f = (struct page_fetch){.pull = p, .index = index, .cursor = cursor};
    if (pthread_create(&f->thread, NULL, run_fetch, f) != 0) {
        free(f);
        return NULL;
    }
    return f;
}

/* fc_http's hook: the next page is asked for as soon as this one's text is here, then
 * the text is read as a page (not a whole page: fc_http parses it, and it is asked for
 * again). */
static bool on_answer(void *ctx, const char *body, size_t len)
{
    struct page_fetch *f = ctx;
    int64_t cursor = tail_cursor(body, len);
    pthread_mutex_lock(&f->pull->lock);
    bool cancel = f->pull->cancel;
    pthread_mutex_unlock(&f->pull->lock);
    if (cursor >= 0 && !f->next && !cancel)
        f->next = launch(f->pull, f->index + 1, cursor);
    fc_page_free(f->page);
    f->page = fc_page_parse(body, len);
    return f->page != NULL;
}

/* The changes call for the page from cursor. From 0 (a new replica, a resync) the
 * device's own rows count too: the replica may not have them. */
static char *page_path(const ferry_replica *r, int64_t cursor, bool own, bool plain)
{
    int limit = plain && r->page_size > PLAIN_PAGE_MAX ? PLAIN_PAGE_MAX : r->page_size;
    char stream[64] = "";
    if (!plain)
        snprintf(stream, sizeof(stream), "&stream=true&maxBytes=%d", STREAM_PAGE_BYTES);
    return xasprintf(SYNC_PATH "/changes?cursor=%lld&limit=%d%s%s%s%s", (long long)cursor, limit,
                     stream, own ? "&includeOwn=true" : "", r->device_id ? "&deviceId=" : "",
                     r->device_id ? r->device_id : "");
}

/* Tells pull_ready that f's thread is done with it. */
static void finished(struct page_fetch *f)
{
    pthread_mutex_lock(&f->pull->lock);
    f->done = true;
    pthread_cond_broadcast(&f->pull->moved);
    pthread_mutex_unlock(&f->pull->lock);
}

static void *run_fetch(void *arg)
{
    struct page_fetch *f = arg;
    struct pull *p = f->pull;
    ferry_replica *r = p->r, *conn = r->peers[f->index % FC_PEERS];
    char *path = NULL;
    pthread_mutex_lock(&p->lock);
    while (!p->cancel && f->index - p->applied > PULL_AHEAD)
        pthread_cond_wait(&p->moved, &p->lock);
    bool cancel = p->cancel;
    pthread_mutex_unlock(&p->lock);
    if (cancel) {
        f->rc = FERRY_CLIENT_EINVAL;
        finished(f);
        return NULL;
    }
    conn->on_answer = on_answer;
    conn->on_answer_ctx = f;
    /* A 200 whose body is not a whole page (a connection closed right after the headers
     * reads as an empty body, a streamed page cut short does not parse) is asked for
     * again, as fc_http does with one cut short. */
    for (int attempt = 0; attempt < r->max_attempts; attempt++) {
        bool plain = __atomic_load_n(&r->plain_pages, __ATOMIC_RELAXED);
        free(path);
        path = page_path(r, f->cursor, f->cursor == 0 || p->resync, plain);
        json_decref(f->answer);
        fc_page_free(f->page);
        f->answer = NULL;
        f->page = NULL;
        f->rc = fc_http(conn, "GET", path, NULL, &f->status, &f->answer);
        if (f->rc == FERRY_CLIENT_OK && f->status == 400 && !plain) {
            __atomic_store_n(&r->plain_pages, true, __ATOMIC_RELAXED);
            continue;
        }
        if (f->rc != FERRY_CLIENT_OK || f->status != 200 || f->page)
            break;
        f->rc = fc_fail(conn, FERRY_CLIENT_ENETWORK, "GET %s: not a whole page", path);
    }
    conn->on_answer = NULL;
    free(path);
    finished(f);
    return NULL;
}

/* Waits for f and every page started after it, and frees them. */
static void drop_chain(struct pull *p, struct page_fetch *f)
{
    pthread_mutex_lock(&p->lock);
    p->cancel = true;
    pthread_cond_broadcast(&p->moved);
    pthread_mutex_unlock(&p->lock);
    while (f) {
        pthread_join(f->thread, NULL);
        struct page_fetch *next = f->next;
        json_decref(f->answer);
        fc_page_free(f->page);
        free(f);
        f = next;
    }
    pthread_mutex_lock(&p->lock);
    p->cancel = false;
    pthread_mutex_unlock(&p->lock);
}

struct pull *pull_start(ferry_replica *r, int64_t cursor, bool resync)
{
    struct pull *p = xcalloc(1, sizeof(*p));
    p->r = r;
    p->resync = resync;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->moved, NULL);
    bool ready = true; /* the connections are made here, before any thread runs */
    for (int i = 0; ready && i < FC_PEERS; i++)
        ready = fc_peer(r, i) != NULL;
    if (ready && !(p->head = launch(p, 0, cursor)))
        fc_fail(r, FERRY_CLIENT_ELOCAL, "pull: cannot start a thread");
    if (!p->head) {
        pull_end(p);
        return NULL;
    }
    return p;
}

/* Makes sure the page after f (whose answer is page) is the one its cursor starts. */
static void chain_next(struct pull *p, struct page_fetch *f, const struct fc_page *page)
{
    bool more = page->has_more;
    int64_t cursor = page->cursor;
    if (f->next && (!more || f->next->cursor != cursor)) {
        drop_chain(p, f->next); /* started from text that did not parse the same */
        f->next = NULL;
    }
    if (more && !f->next)
        f->next = launch(p, f->index + 1, cursor);
}

int pull_next(struct pull *p, long *status, json_t **answer, struct fc_page **page)
{
    struct page_fetch *f = p->head;
    int rc;
    *answer = NULL;
    *page = NULL;
    if (!f)
        return fc_fail(p->r, FERRY_CLIENT_ELOCAL, "pull: cannot start a thread");
    pthread_join(f->thread, NULL);
    p->head = NULL;
    rc = f->rc;
    if (rc != FERRY_CLIENT_OK)
        fc_fail(p->r, rc, "%s", p->r->peers[f->index % FC_PEERS]->error);
    if (rc == FERRY_CLIENT_OK && f->status == 200)
        chain_next(p, f, f->page);
    if (rc == FERRY_CLIENT_OK && f->status == 200)
        p->head = f->next;
    else
        drop_chain(p, f->next);
    *status = f->status;
    *answer = f->answer;
    *page = f->page;
    free(f);
    return rc;
}

bool pull_ready(struct pull *p, int wait_ms)
{
    struct timespec until = time_after_ms(CLOCK_REALTIME, wait_ms);
    pthread_mutex_lock(&p->lock);
    while (p->head && !p->head->done)
        if (pthread_cond_timedwait(&p->moved, &p->lock, &until) != 0)
            break;
    bool ready = !p->head || p->head->done;
    pthread_mutex_unlock(&p->lock);
    return ready;
}

void pull_applied(struct pull *p, struct fc_page *page)
{
    pthread_mutex_lock(&p->lock);
    p->applied++;
    pthread_cond_broadcast(&p->moved);
    pthread_mutex_unlock(&p->lock);
    fc_page_free(page); /* a few blocks: no longer worth handing to another thread */
}

void pull_end(struct pull *p)
{
    if (!p)
        return;
    drop_chain(p, p->head);
    pthread_cond_destroy(&p->moved);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
