/* dirsync.h - the job kind that runs seed 003's directory-sync sessions. */
#ifndef FERRY_API_DIRSYNC_H
#define FERRY_API_DIRSYNC_H

#include "jobs/jobs.h"
#include "ferry.h"

struct app;

/* The job kind that runs directory-sync sessions (for app->jobs). */
struct job_kind dirsync_job_kind(const struct app *app);

#endif
