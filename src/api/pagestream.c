/* pagestream.c - see pagestream.h. Owns the streams' count in struct app and the life of
 * a stream in flight: its feed read, the store connection it holds, its place. */
#include <stdlib.h>

#include "api/pagestream.h"
#include "store/store.h"
#include "util/log.h"

/* A streamed page in flight: the feed's read and the store connection it holds. */
struct page_stream {
    struct feed_stream *fs;
    struct store_conn *db;
    struct app *app;
    pagestream_tail_fn *tail;
};

bool pagestream_take(struct app *app)
{
    int size = 0, in_use = 0;
    store_pool_stats(app->store, &size, &in_use);
    if (atomic_fetch_add(&app->streams, 1) < (size > 1 ? size / 2 : 1))
        return true;
    atomic_fetch_sub(&app->streams, 1);
    return false;
}

void pagestream_give(struct app *app)
{
    atomic_fetch_sub(&app->streams, 1);
}

static int fill_page(void *ctx, struct buf *out)
{
    struct page_stream *ps = ctx;
    struct err err = {0};
    int step = feed_stream_next(ps->fs, out, PAGESTREAM_CHUNK, &err);
    if (step == 0)
        ps->tail(out, feed_stream_page(ps->fs));
    else if (step < 0) /* the client sees a cut answer and asks again */
        log_write(LOG_LEVEL_ERROR, "changes_stream_failed", json_pack("{s:s}", "msg", err.msg));
    return step;
}

static void end_page(void *ctx)
{
    struct page_stream *ps = ctx;
    feed_stream_free(ps->fs);
    store_release(ps->db);
    pagestream_give(ps->app);
    free(ps);
}

int pagestream_send(struct request *req, struct feed_stream *fs, struct buf *text,
                    pagestream_tail_fn *tail, struct feed_text *page, bool *streamed,
                    struct err *err)
{
    int step = feed_stream_next(fs, text, PAGESTREAM_CHUNK, err);
    *streamed = false;
    if (step == 1) {
        struct page_stream *ps = xcalloc(1, sizeof(*ps));
        *ps = (struct page_stream){fs, req->db, req->app, tail};
        req->db = NULL;
        http_reply_stream(req, HTTP_OK, "application/json", text, fill_page, end_page, ps);
        *streamed = true;
        return FERRY_OK;
    }
    if (step == 0)
        *page = *feed_stream_page(fs);
    feed_stream_free(fs);
    return step == 0 ? FERRY_OK : FERRY_ERR;
}
