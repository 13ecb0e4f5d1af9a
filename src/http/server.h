/* server.h - starting and stopping the HTTP server. */
#ifndef FERRY_SERVER_H
#define FERRY_SERVER_H

#include "ferry.h"

struct app;
struct server;
struct tls;

/* Starts listening on app->cfg->listen with MHD's thread pool; over HTTPS with the
 * pair of tls (tls.h) when it is not NULL. tls must outlive the server. */
int server_start(struct app *app, struct tls *tls, struct server **out, struct err *err);
/* The bound port (useful with port 0). */
int server_port(const struct server *srv);
/* Stops accepting new connections; requests in progress carry on. */
void server_quiesce(struct server *srv);
/* Closes every connection and stops the threads. server_stop(NULL) does nothing. */
void server_stop(struct server *srv);

#endif
