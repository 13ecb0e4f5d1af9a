/* dirsync.h - EonaCat.Sync's directory sync surface: the job kind that runs its sessions and
 * the state its requests share. */
#ifndef FERRY_API_DIRSYNC_H
#define FERRY_API_DIRSYNC_H

#include "jobs/jobs.h"
#include "ferry.h"

struct app;

/* The job kind that runs directory-sync sessions (for app->jobs). */
struct job_kind apidirsync_job_kind(const struct app *app);

/* The surface's state (how many syncs run inside requests), held by the app as
 * app->dirsync from routes_init() on. */
struct apidirsync;
struct apidirsync *apidirsync_new(void);
void apidirsync_free(struct apidirsync *ds);

#endif
