/* headwatch.h - the deadline for request heads. libmicrohttpd times only silence: a client
 * that trickles its request head a byte at a time (slowloris) is never silent, and holds
 * its connection slot until the head fills the header limit. The head watch shuts down a
 * connection whose next request head has not arrived within the limit of the connection's
 * opening or of its previous answer; a request in progress (a long-poll included) is
 * never cut here. */
#ifndef FERRY_HTTP_HEADWATCH_H
#define FERRY_HTTP_HEADWATCH_H

#include <stdint.h>

#include <microhttpd.h>

struct headwatch;

/* Starts the watch (its thread checks the deadlines twice a second). NULL when the thread
 * cannot start; every function below then does nothing. Free with headwatch_free() once
 * the daemon has stopped. */
struct headwatch *headwatch_new(int64_t limit_s);
void headwatch_free(struct headwatch *hw);

/* MHD_OPTION_NOTIFY_CONNECTION's callback; cls is the watch. */
void headwatch_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                      enum MHD_ConnectionNotificationCode code);

/* A request's head has arrived on conn: no deadline until its answer is done. */
void headwatch_head_done(struct MHD_Connection *conn);

/* conn's request is done: its next head is due within the limit from now. */
void headwatch_request_done(struct MHD_Connection *conn);

#endif
