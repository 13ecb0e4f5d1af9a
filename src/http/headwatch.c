/* headwatch.c - see headwatch.h. Owns the list of open connections awaiting a request
 * head and the thread that cuts the overdue ones. A connection is cut with shutdown(),
 * never close(): its descriptor stays libmicrohttpd's, which sees the end of the stream
 * and closes it. The closing notification takes the entry off the list under the same
 * lock before libmicrohttpd closes the descriptor, so a reused descriptor is never cut. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "ferry.h"
#include "http/headwatch.h"
#include "util/timeutil.h"

struct watched {
    struct headwatch *hw;
    int fd;
    /* Written by the connection's request, without the lock: a request costs no lock */
    atomic_int_least64_t since_us; /* the head is due by since_us + limit */
    atomic_bool busy;              /* a request is in progress */
    bool cut;
    struct watched *prev, *next;
};

struct headwatch {
    int64_t limit_us;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool done;
    struct watched *head;
    pthread_t thread;
};

static void cut_overdue(struct headwatch *hw, int64_t now_us)
{
    for (struct watched *w = hw->head; w; w = w->next)
        if (!w->cut && !atomic_load(&w->busy) &&
            now_us - atomic_load(&w->since_us) > hw->limit_us) {
            shutdown(w->fd, SHUT_RDWR);
            w->cut = true;
        }
}

static void *watch_main(void *arg)
{
    struct headwatch *hw = arg;
    pthread_mutex_lock(&hw->lock);
    while (!hw->done) {
        struct timespec until = time_after_ms(CLOCK_REALTIME, 500);
        pthread_cond_timedwait(&hw->wake, &hw->lock, &until);
        if (!hw->done)
            cut_overdue(hw, time_mono_us());
    }
    pthread_mutex_unlock(&hw->lock);
    return NULL;
}

struct headwatch *headwatch_new(int64_t limit_s)
{
    struct headwatch *hw = xcalloc(1, sizeof(*hw));
    hw->limit_us = limit_s * 1000000;
    pthread_mutex_init(&hw->lock, NULL);
    pthread_cond_init(&hw->wake, NULL);
    if (pthread_create(&hw->thread, NULL, watch_main, hw) != 0) {
        pthread_mutex_destroy(&hw->lock);
        pthread_cond_destroy(&hw->wake);
        free(hw);
        return NULL;
    }
    return hw;
}

void headwatch_free(struct headwatch *hw)
{
    if (!hw)
        return;
    pthread_mutex_lock(&hw->lock);
    hw->done = true;
    pthread_cond_signal(&hw->wake);
    pthread_mutex_unlock(&hw->lock);
    pthread_join(hw->thread, NULL);
    while (hw->head) { /* none once the daemon has stopped; freed all the same */
        struct watched *w = hw->head;
        hw->head = w->next;
        free(w);
    }
    pthread_mutex_destroy(&hw->lock);
    pthread_cond_destroy(&hw->wake);
    free(hw);
}

static void track(struct headwatch *hw, struct MHD_Connection *conn, void **socket_context)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info)
        return;
    struct watched *w = xcalloc(1, sizeof(*w));
    w->hw = hw;
    w->fd = info->connect_fd;
    atomic_init(&w->since_us, time_mono_us());
    atomic_init(&w->busy, false);
    pthread_mutex_lock(&hw->lock);
    w->next = hw->head;
    if (hw->head)
        hw->head->prev = w;
    hw->head = w;
    pthread_mutex_unlock(&hw->lock);
    *socket_context = w;
}

static void untrack(struct watched *w)
{
    struct headwatch *hw = w->hw;
    pthread_mutex_lock(&hw->lock);
    if (w->prev)
        w->prev->next = w->next;
    else
        hw->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    pthread_mutex_unlock(&hw->lock);
    free(w);
}

void headwatch_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                      enum MHD_ConnectionNotificationCode code)
{
    struct headwatch *hw = cls;
    if (!hw)
        return;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        track(hw, conn, socket_context);
    else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        untrack(*socket_context);
        *socket_context = NULL;
    }
}

static void set_busy(struct MHD_Connection *conn, bool busy)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct watched *w = info ? info->socket_context : NULL;
    if (!w)
        return;
    /* since first: the watch never sees a request that just ended with its old start */
    atomic_store(&w->since_us, time_mono_us());
    atomic_store(&w->busy, busy);
}

void headwatch_head_done(struct MHD_Connection *conn)
{
    set_busy(conn, true);
}

void headwatch_request_done(struct MHD_Connection *conn)
{
    set_busy(conn, false);
}
