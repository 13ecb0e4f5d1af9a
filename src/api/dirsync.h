/* dirsync.h - starting the worker that runs seed 003's directory-sync sessions. */
#ifndef FERRY_API_DIRSYNC_H
#define FERRY_API_DIRSYNC_H

#include "ferry.h"

struct app;

/* Starts app->dirsync; sessions that a stopped server left unfinished run again. */
int dirsync_worker_start(struct app *app, struct err *err);

#endif
